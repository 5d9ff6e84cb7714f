/* Compiling a night's later kernels ahead, in a helper process
 * (clred_compile_ahead_pays in clred.h says why a process and not a thread).
 *
 * The parent (clred demo before it simulates, clred run once its night is
 * planned) starts `clred __compile-ahead`. The helper simulates a small night of its own at the same frame
 * size and runs, on it, the library calls the night makes after masters and
 * calibration, in the order the night meets them: the frame-quality metrics
 * of a calibrated frame, then registration and resampling onto the
 * reference. The same calls at the same frame size launch the same kernels
 * with the same work-group shapes, so POCL writes exactly the work-group
 * functions the parent will ask for into the shared disk cache; the parent's
 * first launch of a shape waits for a helper compiling it (programs.c), so
 * nothing is compiled twice. Nothing the helper computes is kept: only
 * POCL's cache and clred's markers carry anything to the parent. clred demo
 * starts two, one per part (quality, alignment), so that the two chains of
 * compiles run beside each other and beside the parent's; a helper whose
 * programs the parent's build-ahead thread has not reached yet builds them
 * itself (the alignment helper does, paying the compiler's start-up on the
 * core that the parent's start-up leaves idle). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

#include "cli.h"

#define CMD "__compile-ahead"

static volatile sig_atomic_t stop_asked;

static void ask_stop(int sig)
{
    (void)sig;
    stop_asked = 1;
}

/* The marker name of the helper's work for frames of w x h: the parts it
 * does are in it, so a night that skips one does not mark the other done. */
static void work_name(char *out, size_t size, size_t w, size_t h, int quality, int align)
{
    snprintf(out, size, "night %s%s%s %zux%zu", quality ? "quality" : "", quality && align ? "+" : "",
             align ? "alignment" : "", w, h);
}

pid_t cli_compile_ahead_start(const clred_ctx *ctx, const char *device, size_t w, size_t h, int quality, int align)
{
    char what[96], size[64];
    work_name(what, sizeof what, w, h, quality, align);
    if ((!quality && !align) || !clred_compile_ahead_pays(ctx, what))
        return -1;
    snprintf(size, sizeof size, "%zux%zu", w, h);
    char name[] = "clred", cmd[] = CMD, size_opt[] = "--size", device_opt[] = "--device", dev[256];
    char no_quality[] = "--no-quality", no_align[] = "--no-align";
    snprintf(dev, sizeof dev, "%s", device ? device : "");
    char *argv[8] = {name, cmd, size_opt, size};
    size_t argc = 4;
    if (!quality)
        argv[argc++] = no_quality;
    if (!align)
        argv[argc++] = no_align;
    if (device) {
        argv[argc++] = device_opt;
        argv[argc++] = dev;
    }
    argv[argc] = NULL;
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return -1;
    /* the helper says nothing: its stdout and stderr go nowhere */
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    extern char **environ;
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

void cli_compile_ahead_finish(pid_t pid)
{
    if (pid <= 0)
        return;
    /* Asked to stop, the helper ends after the call it is in, so a compile
     * is never cut off halfway (POCL renames finished files into its cache,
     * but would leave its temporaries). */
    kill(pid, SIGTERM);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* Removes the helper's simulated night: every file of its own directory. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* A raw frame dressed as a calibrated one (variance and mask planes, as
 * calibration gives them), so the calls take the calibrated frames' paths. */
static clred_status read_as_calibrated(const char *dir, const char *name, clred_image *img)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    clred_status st = clred_image_read(p, 0, img);
    if (st == CLRED_OK && !img->var)
        st = clred_image_add_var(img);
    if (st == CLRED_OK && !img->mask)
        st = clred_image_add_mask(img);
    for (size_t i = 0; st == CLRED_OK && i < img->width * img->height; i++)
        img->var[i] = img->sci[i] > 1.0f ? img->sci[i] : 1.0f;
    return st;
}

/* The night's calls after calibration, in its order, those asked for only;
 * stops early when asked. */
static clred_status night_calls(clred_ctx *ctx, clred_image *frames, int quality, int align)
{
    clred_night_opts no = clred_night_defaults();
    clred_frame_quality q;
    clred_status st = quality ? clred_measure_quality(ctx, &frames[0], &q) : CLRED_OK;
    if (st != CLRED_OK || stop_asked || !align)
        return st;
    clred_shift shifts[2];
    st = clred_measure_shifts(ctx, frames, 2, 0, &no.stack.popts, shifts);
    if (st != CLRED_OK || stop_asked)
        return st;
    clred_transform to_ref[2];
    for (size_t i = 0; i < 2; i++)
        to_ref[i] = clred_transform_translation(-shifts[i].dx, -shifts[i].dy);
    clred_image aligned[2];
    memset(aligned, 0, sizeof aligned);
    st = clred_resample_onto_grid(ctx, frames, 2, to_ref, no.stack.grid, &no.stack.ropts, aligned, NULL);
    clred_image_free(&aligned[0]);
    clred_image_free(&aligned[1]);
    return st;
}

int cmd_compile_ahead(int argc, char **argv)
{
    const char *device = NULL;
    size_t w = 0, h = 0;
    int quality = 1, align = 1;
    static const struct option longopts[] = {{"size", required_argument, 0, 's'},
                                             {"device", required_argument, 0, 'd'},
                                             {"no-quality", no_argument, 0, 'q'},
                                             {"no-align", no_argument, 0, 'a'},
                                             {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        if (c == 's' && sscanf(optarg, "%zux%zu", &w, &h) == 2)
            continue;
        if (c == 'q' || c == 'a') {
            *(c == 'q' ? &quality : &align) = 0;
            continue;
        }
        if (c == 'd') {
            device = optarg;
            continue;
        }
        return EXIT_USAGE;
    }
    if (w == 0 || h == 0)
        return EXIT_USAGE;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ask_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
#ifdef __linux__
    /* a parent that dies without reaping it stops it too (one that died
     * before this line leaves it to finish its few calls alone) */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif

    clred_ctx *ctx = NULL;
    if (clred_ctx_create(device, &ctx) != CLRED_OK)
        return EXIT_DEVICE;
    clred_night_plan plan = {.width = w, .height = h, .quality = quality, .align = align};
    clred_night_use_programs(ctx, &plan);
    char dir[4096];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/clred-ahead-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        clred_ctx_destroy(ctx);
        return EXIT_BAD_INPUT;
    }
    clred_sim_opts so = clred_sim_defaults();
    so.width = w;
    so.height = h;
    so.nbias = so.ndark = so.nflat = 0; /* the night's calibration is the parent's to compile */
    so.nscience = 2;
    so.nepoch2 = 0;
    clred_image frames[2];
    memset(frames, 0, sizeof frames);
    clred_status st = clred_simulate(&so, dir, 0);
    if (st == CLRED_OK)
        st = read_as_calibrated(dir, "sci_001.fits", &frames[0]);
    if (st == CLRED_OK)
        st = read_as_calibrated(dir, "sci_002.fits", &frames[1]);
    remove_dir(dir);
    if (st == CLRED_OK && !stop_asked)
        st = night_calls(ctx, frames, quality, align);
    if (st == CLRED_OK && !stop_asked) {
        char what[96];
        work_name(what, sizeof what, w, h, quality, align);
        clred_compile_ahead_done(ctx, what);
    }
    clred_image_free(&frames[0]);
    clred_image_free(&frames[1]);
    clred_ctx_destroy(ctx);
    return st == CLRED_OK ? EXIT_OK : cli_exit_code(st);
}
