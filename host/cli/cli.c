#include "cli.h"
#include "json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_exit_code(clred_status s)
{
    switch (s) {
    case CLRED_OK: return EXIT_OK;
    case CLRED_ERR_INPUT:
    case CLRED_ERR_IO: return EXIT_BAD_INPUT;
    case CLRED_ERR_USAGE: return EXIT_USAGE;
    case CLRED_ERR_DEVICE:
    case CLRED_ERR_MEMORY: return EXIT_DEVICE;
    }
    return EXIT_DEVICE;
}

int cli_fail(const char *cmd, clred_status s)
{
    cli_progress_done();
    fprintf(stderr, "clred %s: %s\n", cmd, clred_last_error());
    return cli_exit_code(s);
}

int cli_fail_on(const char *cmd, const char *path, clred_status s)
{
    const char *msg = clred_last_error();
    if (!path || strstr(msg, path))
        return cli_fail(cmd, s);
    cli_progress_done();
    fprintf(stderr, "clred %s: %s: %s\n", cmd, path, msg);
    return cli_exit_code(s);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    cli_progress_done();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "clred %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'clred %s --help')\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_open(const char *cmd, const char *device, clred_ctx **ctx)
{
    clred_status s = clred_ctx_create(device, ctx);
    return s == CLRED_OK ? EXIT_OK : cli_fail(cmd, s);
}

static int progress_shown;

static int progress_enabled(void)
{
    const char *e = getenv("CLRED_PROGRESS");
    if (e)
        return *e && *e != '0';
    return isatty(2);
}

void cli_progress(const char *fmt, ...)
{
    if (!progress_enabled())
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    fflush(stderr);
    va_end(ap);
    progress_shown = 1;
}

void cli_progress_done(void)
{
    if (progress_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        progress_shown = 0;
    }
}

int cli_parse_double(const char *cmd, const char *opt, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno) {
        cli_usage_error(cmd, "%s expects a number, got '%s'", opt, text);
        return 0;
    }
    *out = v;
    return 1;
}

int cli_parse_int(const char *cmd, const char *opt, const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < -2147483647L || v > 2147483647L) {
        cli_usage_error(cmd, "%s expects an integer, got '%s'", opt, text);
        return 0;
    }
    *out = (int)v;
    return 1;
}

void cli_json_string(FILE *f, const char *s) { clred_json_quote(f, s); }

/* clred_file_info_read, printing the failure (the message names the file). */
static int read_info(const char *cmd, const char *path, clred_file_info *info)
{
    clred_status s = clred_file_info_read(path, info);
    return s == CLRED_OK ? EXIT_OK : cli_fail_on(cmd, path, s);
}

int cli_check_inputs(const char *cmd, const char *const *paths, size_t npaths)
{
    int rc = EXIT_OK;
    for (size_t i = 0; i < npaths && rc == EXIT_OK; i++) {
        clred_file_info info;
        rc = read_info(cmd, paths[i], &info);
    }
    return rc;
}

int cli_list_frames(const char *cmd, const char *const *paths, size_t npaths, cli_frame **frames, size_t *n)
{
    cli_frame *list = NULL;
    size_t count = 0;
    *frames = NULL;
    *n = 0;
    for (size_t i = 0; i < npaths; i++) {
        clred_file_info info;
        int rc = read_info(cmd, paths[i], &info);
        if (rc != EXIT_OK) {
            free(list);
            return rc;
        }
        cli_frame *grown = realloc(list, (count + info.nframes) * sizeof *list);
        if (!grown) {
            free(list);
            fprintf(stderr, "clred %s: out of memory listing %zu frames\n", cmd, count + info.nframes);
            return EXIT_BAD_INPUT;
        }
        list = grown;
        for (size_t f = 0; f < info.nframes; f++)
            list[count++] = (cli_frame){paths[i], f, info.nframes > 1};
    }
    *frames = list;
    *n = count;
    return EXIT_OK;
}

int cli_read_frames(const char *cmd, const cli_frame *frames, size_t n, clred_image **images)
{
    clred_image *list = calloc(n ? n : 1, sizeof *list);
    if (!list) {
        fprintf(stderr, "clred %s: out of memory for %zu frames\n", cmd, n);
        return EXIT_BAD_INPUT;
    }
    for (size_t i = 0; i < n; i++) {
        clred_status s = clred_image_read(frames[i].path, frames[i].frame, &list[i]);
        if (s != CLRED_OK) {
            cli_free_images(list, i);
            return cli_fail(cmd, s);
        }
    }
    *images = list;
    return EXIT_OK;
}

void cli_free_images(clred_image *images, size_t n)
{
    for (size_t i = 0; images && i < n; i++)
        clred_image_free(&images[i]);
    free(images);
}

const char *const cli_interp_names[5] = {"nearest", "bilinear", "bicubic", "lanczos3", "fourier"};

int cli_parse_interp(const char *cmd, const char *text, clred_interp *out)
{
    for (int i = 0; i < 5; i++)
        if (!strcmp(text, cli_interp_names[i])) {
            *out = (clred_interp)i;
            return 1;
        }
    cli_usage_error(cmd, "--interp expects nearest, bilinear, bicubic, lanczos3 or fourier, got '%s'", text);
    return 0;
}

int cli_parse_choice(const char *cmd, const char *opt, const char *text, const char *const *names, int count, int *out)
{
    for (int i = 0; i < count; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 1;
        }
    char list[256] = "";
    for (int i = 0; i < count; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? (i + 1 < count ? ", " : " or ") : "",
                 names[i]);
    cli_usage_error(cmd, "%s expects %s, got '%s'", opt, list, text);
    return 0;
}

int cli_parse_ref(const char *cmd, const char *text, long *ref)
{
    if (!strcmp(text, "median")) {
        *ref = -1;
        return 1;
    }
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || v < 0) {
        cli_usage_error(cmd, "--ref expects a frame index >= 0 or 'median', got '%s'", text);
        return 0;
    }
    *ref = v;
    return 1;
}

int cli_check_nonnegative(const char *cmd, const char *path, const char *what, const clred_image *img)
{
    size_t n = img->width * img->height, bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (img->sci[i] < 0.0f && bad++ == 0)
            first = i;
    if (!bad)
        return EXIT_OK;
    cli_progress_done();
    fprintf(stderr, "clred %s: %s: %zu pixels of the %s are negative (first at x=%zu, y=%zu, value %g); a %s cannot be\n",
            cmd, path, bad, what, first % img->width, first / img->width, (double)img->sci[first], what);
    return EXIT_BAD_INPUT;
}
