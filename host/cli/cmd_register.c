/* clred register: measures the translation of each frame against a reference
 * by phase correlation, or (--method stars) a similarity or affine transform
 * from matched stars, and writes the aligned frames, or only the table of
 * measured transforms. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char *CMD = "register";

static void help(void)
{
    printf("usage: clred register [options] FRAME... (-o OUTDIR | --table FILE)\n\n"
           "Measures each frame's shift against a reference by phase correlation\n"
           "(apodised cross-power spectrum, sub-pixel peak by the upsampled DFT) and\n"
           "resamples the frames onto the reference. A FRAME may be a cube: each of\n"
           "its planes is a frame. Aligned frames are written to OUTDIR as\n"
           "<name>_reg.fits (cubes: <name>_NNN_reg.fits) with VAR and MASK planes.\n\n"
           "With --method stars, frames that also rotate or change scale (other nights,\n"
           "other telescopes) are matched by their stars instead: the brightest stars\n"
           "of each frame are detected, matched by triangle shapes and a similarity\n"
           "(or affine) transform is fitted; the table then gives that transform.\n\n"
           "Signs, one convention for both methods: (dx, dy) is where a frame's content sits\n"
           "relative to the reference (a star at reference pixel (x, y) is at (x + dx, y + dy)\n"
           "in the frame; for star matching, measured at the frame's centre). The transform\n"
           "a..f maps frame pixels onto the reference: x' = a x + b y + c, y' = d x + e y + f,\n"
           "so a pure shift has c = -dx, f = -dy.\n\n"
           "options:\n"
           "  -o, --output DIR      directory for the aligned frames (created if needed)\n"
           "  --table FILE          write the measured transforms: CSV, or JSON if FILE ends in .json\n"
           "  --ref N|median        reference: frame N (0-based, default 0) or the stack's median\n"
           "                        (median: phase correlation only)\n"
           "  --interp NAME         nearest, bilinear, bicubic, lanczos3 (default) or fourier\n"
           "                        (fourier: phase correlation only)\n"
           "  --method NAME         phasecorr (default) or stars\n"
           "phase correlation:\n"
           "  --region X1:X2,Y1:Y2  correlate only this region (FITS 1-based, inclusive)\n"
           "  --box X,Y,SIZE        correlate a SIZE px box around (X, Y) (0-based), e.g. a star\n"
           "  --precision PX        sub-pixel step (default 0.01; 1 = whole pixels)\n"
           "  --window NAME         none, hann or tukey (default)\n"
           "  --phase               pure phase correlation instead of cross-correlation\n"
           "  --max-shift PX        ignore peaks further than PX from zero\n"
           "  --fft NAME            clfft or vkfft (default: CLRED_FFT, else the faster built in)\n"
           "stars:\n"
           "  --model NAME          similarity (default: scale, rotation, shift) or affine\n"
           "  --max-stars N         brightest stars matched per frame (default 50)\n"
           "  --thresh SIGMA        star detection threshold in background RMS (default 5)\n"
           "  --radius PX           a star matches within this distance (default 2)\n"
           "  --min-matches N       fewest matched stars accepted (default max(6, 25 %% of the stars))\n"
           "  --mirror              accept a mirrored frame (refused by default)\n"
           "  --overwrite           replace existing outputs\n"
           "  --json                summary on stdout as JSON\n"
           "  --device N|NAME       OpenCL device\n\n"
           "examples:\n"
           "  clred register --ref median --interp lanczos3 sci_*.fits -o aligned/ --table shifts.csv\n"
           "  clred register --method stars night1.fits night2.fits -o aligned/ --table transforms.csv\n");
}

static int parse_region(const char *text, clred_phasecorr_opts *o)
{
    long x1, x2, y1, y2;
    char tail;
    if (sscanf(text, "%ld:%ld,%ld:%ld%c", &x1, &x2, &y1, &y2, &tail) != 4 || x1 < 1 || y1 < 1 || x2 < x1 || y2 < y1)
        return cli_usage_error(CMD, "--region expects X1:X2,Y1:Y2 (1-based, inclusive), got '%s'", text), 0;
    o->x0 = (size_t)(x1 - 1);
    o->x1 = (size_t)x2;
    o->y0 = (size_t)(y1 - 1);
    o->y1 = (size_t)y2;
    return 1;
}

static int parse_box(const char *text, clred_phasecorr_opts *o)
{
    double x, y;
    long size;
    char tail;
    if (sscanf(text, "%lf,%lf,%ld%c", &x, &y, &size, &tail) != 3 || size < 4)
        return cli_usage_error(CMD, "--box expects X,Y,SIZE with SIZE >= 4, got '%s'", text), 0;
    o->box_x = x;
    o->box_y = y;
    o->box_size = (size_t)size;
    return 1;
}

/* OUTDIR/<name>_reg.fits, or <name>_NNN_reg.fits for a plane of a cube. */
static void output_name(const char *dir, const cli_frame *f, char *out, size_t size)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", f->path);
    char *bracket = strchr(copy, '[');
    if (bracket)
        *bracket = 0;
    char *base = basename(copy);
    char *dot = strstr(base, ".fits");
    if (!dot)
        dot = strstr(base, ".fit");
    if (!dot)
        dot = strrchr(base, '.');
    if (dot)
        *dot = 0;
    if (f->cube)
        snprintf(out, size, "%s/%s_%03zu_reg.fits", dir, base, f->frame);
    else
        snprintf(out, size, "%s/%s_reg.fits", dir, base);
}

/* Writes the table atomically (a signal or a failure leaves nothing). */
static int write_table(const char *path, int overwrite, const cli_frame *frames, const clred_shift *shifts, size_t n,
                       const char *ref_text)
{
    clred_text_output *t = NULL;
    clred_status st = clred_text_open(path, overwrite, &t);
    if (st != CLRED_OK)
        return cli_fail(CMD, st);
    FILE *f = clred_text_stream(t);
    size_t len = strlen(path);
    int json = len > 5 && !strcmp(path + len - 5, ".json");
    if (json) {
        fprintf(f, "{\"reference\": ");
        cli_json_string(f, ref_text);
        fprintf(f, ", \"frames\": [");
        for (size_t i = 0; i < n; i++) {
            fprintf(f, "%s\n  {\"file\": ", i ? "," : "");
            cli_json_string(f, frames[i].path);
            fprintf(f, ", \"frame\": %zu, \"dx\": %.5f, \"dy\": %.5f, \"psr\": %.3f, "
                       "\"transform\": [1, 0, %.5f, 0, 1, %.5f]}",
                    frames[i].frame, shifts[i].dx, shifts[i].dy, shifts[i].psr, -shifts[i].dx, -shifts[i].dy);
        }
        fprintf(f, "\n]}\n");
    } else {
        fprintf(f, "file,frame,dx,dy,psr,a,b,c,d,e,f\n");
        for (size_t i = 0; i < n; i++)
            fprintf(f, "%s,%zu,%.5f,%.5f,%.3f,1,0,%.5f,0,1,%.5f\n", frames[i].path, frames[i].frame, shifts[i].dx,
                    shifts[i].dy, shifts[i].psr, -shifts[i].dx, -shifts[i].dy);
    }
    st = clred_text_close(t, 1);
    return st == CLRED_OK ? EXIT_OK : cli_fail(CMD, st);
}

/* The library says which frame of the stack failed ("frame N: ..."): the
 * message names that frame's file instead. */
static int fail_naming_frame(clred_status s, const cli_frame *frames, size_t n)
{
    const char *msg = clred_last_error();
    size_t i = 0;
    int used = 0;
    if (sscanf(msg, "frame %zu: %n", &i, &used) == 1 && used > 0 && i < n) {
        cli_progress_done();
        fprintf(stderr, "clred %s: %s[%zu]: %s\n", CMD, frames[i].path, frames[i].frame, msg + used);
        return cli_exit_code(s);
    }
    return cli_fail(CMD, s);
}

static const char *model_name(clred_match_model m)
{
    return m == CLRED_MATCH_AFFINE ? "affine" : "similarity";
}

/* A star-matched frame's offset in phase correlation's convention: a star at
 * reference pixel q is at q + d in the frame, d = p - T(p) at the frame's centre p. */
static void star_offset(const clred_match_result *r, const clred_image *img, double *dx, double *dy)
{
    const double *m = r->transform.m;
    double cx = 0.5 * ((double)img->width - 1), cy = 0.5 * ((double)img->height - 1);
    *dx = cx - (m[0] * cx + m[1] * cy + m[2]);
    *dy = cy - (m[3] * cx + m[4] * cy + m[5]);
}

/* One frame's star-matched transform as JSON members (table and summary). */
static void json_match(FILE *f, const clred_match_result *r, const clred_image *img)
{
    const double *m = r->transform.m;
    double dx, dy;
    star_offset(r, img, &dx, &dy);
    fprintf(f, ", \"nmatched\": %zu, \"rms\": %.4f, \"scale\": %.7f, \"rotation\": %.5f, \"dx\": %.5f, "
               "\"dy\": %.5f, \"mirrored\": %s, \"transform\": [%.9g, %.9g, %.6f, %.9g, %.9g, %.6f]",
            r->nmatched, r->rms, r->scale, r->rotation_deg, dx, dy, r->mirrored ? "true" : "false", m[0], m[1], m[2],
            m[3], m[4], m[5]);
}

/* The star-matched transforms, written like write_table. */
static int write_star_table(const char *path, int overwrite, const cli_frame *frames, const clred_match_result *res,
                            const clred_image *images, size_t n, const char *ref_text, clred_match_model model)
{
    clred_text_output *t = NULL;
    clred_status st = clred_text_open(path, overwrite, &t);
    if (st != CLRED_OK)
        return cli_fail(CMD, st);
    FILE *f = clred_text_stream(t);
    size_t len = strlen(path);
    if (len > 5 && !strcmp(path + len - 5, ".json")) {
        fprintf(f, "{\"reference\": ");
        cli_json_string(f, ref_text);
        fprintf(f, ", \"method\": \"stars\", \"model\": \"%s\", \"frames\": [", model_name(model));
        for (size_t i = 0; i < n; i++) {
            fprintf(f, "%s\n  {\"file\": ", i ? "," : "");
            cli_json_string(f, frames[i].path);
            fprintf(f, ", \"frame\": %zu", frames[i].frame);
            json_match(f, &res[i], &images[i]);
            fprintf(f, "}");
        }
        fprintf(f, "\n]}\n");
    } else {
        fprintf(f, "file,frame,nmatched,rms,scale,rotation,dx,dy,a,b,c,d,e,f\n");
        for (size_t i = 0; i < n; i++) {
            const double *m = res[i].transform.m;
            double dx, dy;
            star_offset(&res[i], &images[i], &dx, &dy);
            fprintf(f, "%s,%zu,%zu,%.4f,%.7f,%.5f,%.5f,%.5f,%.9g,%.9g,%.6f,%.9g,%.9g,%.6f\n", frames[i].path,
                    frames[i].frame, res[i].nmatched, res[i].rms, res[i].scale, res[i].rotation_deg, dx, dy, m[0],
                    m[1], m[2], m[3], m[4], m[5]);
        }
    }
    st = clred_text_close(t, 1);
    return st == CLRED_OK ? EXIT_OK : cli_fail(CMD, st);
}

typedef struct {
    const char *outdir, *table, *device, *ref_text;
    long ref_index;
    int overwrite, json;
    int stars;                 /* --method stars */
    const char *pc_only, *stars_only; /* an option of the other method, for the usage error */
    clred_phasecorr_opts popts;
    clred_resample_opts ropts;
    clred_match_opts mopts;
    clred_detect_opts dopts;
} reg_args;

static int parse_args(int argc, char **argv, reg_args *a)
{
    enum { O_TABLE = 256, O_REF, O_INTERP, O_REGION, O_BOX, O_PRECISION, O_WINDOW, O_PHASE, O_MAXSHIFT, O_FFT,
           O_OVERWRITE, O_JSON, O_DEVICE, O_METHOD, O_MODEL, O_MAXSTARS, O_THRESH, O_RADIUS, O_MINMATCH, O_MIRROR };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},   {"table", required_argument, 0, O_TABLE},
        {"ref", required_argument, 0, O_REF},    {"interp", required_argument, 0, O_INTERP},
        {"region", required_argument, 0, O_REGION}, {"box", required_argument, 0, O_BOX},
        {"precision", required_argument, 0, O_PRECISION}, {"window", required_argument, 0, O_WINDOW},
        {"phase", no_argument, 0, O_PHASE},      {"max-shift", required_argument, 0, O_MAXSHIFT},
        {"fft", required_argument, 0, O_FFT},    {"overwrite", no_argument, 0, O_OVERWRITE},
        {"json", no_argument, 0, O_JSON},        {"device", required_argument, 0, O_DEVICE},
        {"method", required_argument, 0, O_METHOD}, {"model", required_argument, 0, O_MODEL},
        {"max-stars", required_argument, 0, O_MAXSTARS}, {"thresh", required_argument, 0, O_THRESH},
        {"radius", required_argument, 0, O_RADIUS}, {"min-matches", required_argument, 0, O_MINMATCH},
        {"mirror", no_argument, 0, O_MIRROR},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->ref_text = "0";
    a->popts = clred_phasecorr_defaults();
    a->ropts = clred_resample_defaults();
    a->mopts = clred_match_defaults();
    a->dopts = clred_detect_defaults();
    a->dopts.thresh = 5.0;
    static const char *const windows[] = {"none", "hann", "tukey"};
    static const char *const ffts[] = {"clfft", "vkfft"};
    static const char *const methods[] = {"phasecorr", "stars"};
    static const char *const models[] = {"similarity", "affine"};
    int c, n, choice;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return -1;
        case 'o': a->outdir = optarg; break;
        case O_TABLE: a->table = optarg; break;
        case O_REF:
            a->ref_text = optarg;
            if (!cli_parse_ref(CMD, optarg, &a->ref_index))
                return EXIT_USAGE;
            break;
        case O_INTERP:
            if (!cli_parse_interp(CMD, optarg, &a->ropts.interp))
                return EXIT_USAGE;
            break;
        case O_REGION:
            a->pc_only = "--region";
            if (!parse_region(optarg, &a->popts))
                return EXIT_USAGE;
            break;
        case O_BOX:
            a->pc_only = "--box";
            if (!parse_box(optarg, &a->popts))
                return EXIT_USAGE;
            break;
        case O_PRECISION:
            a->pc_only = "--precision";
            if (!cli_parse_double(CMD, "--precision", optarg, &a->popts.precision))
                return EXIT_USAGE;
            if (!(a->popts.precision > 0))
                return cli_usage_error(CMD, "--precision must be > 0, got '%s'", optarg);
            break;
        case O_WINDOW:
            a->pc_only = "--window";
            if (!cli_parse_choice(CMD, "--window", optarg, windows, 3, &choice))
                return EXIT_USAGE;
            a->popts.window = (clred_window)choice; /* in clred_window order */
            break;
        case O_PHASE: a->popts.phase_only = 1, a->pc_only = "--phase"; break;
        case O_MAXSHIFT:
            a->pc_only = "--max-shift";
            if (!cli_parse_double(CMD, "--max-shift", optarg, &a->popts.max_shift))
                return EXIT_USAGE;
            break;
        case O_FFT:
            a->pc_only = "--fft";
            if (!cli_parse_choice(CMD, "--fft", optarg, ffts, 2, &choice))
                return EXIT_USAGE;
            a->popts.backend = a->ropts.backend = choice ? CLRED_FFT_VKFFT : CLRED_FFT_CLFFT;
            if (!clred_fft_available(a->popts.backend))
                return cli_usage_error(CMD, "--fft %s: that FFT library was not built into clred", optarg);
            break;
        case O_OVERWRITE: a->overwrite = 1; break;
        case O_JSON: a->json = 1; break;
        case O_DEVICE: a->device = optarg; break;
        case O_METHOD:
            if (!cli_parse_choice(CMD, "--method", optarg, methods, 2, &a->stars))
                return EXIT_USAGE;
            break;
        case O_MODEL:
            a->stars_only = "--model";
            if (!cli_parse_choice(CMD, "--model", optarg, models, 2, &choice))
                return EXIT_USAGE;
            a->mopts.model = (clred_match_model)choice; /* in clred_match_model order */
            break;
        case O_MAXSTARS:
            a->stars_only = "--max-stars";
            if (!cli_parse_int(CMD, "--max-stars", optarg, &n))
                return EXIT_USAGE;
            if (n < 3 || n > 1000)
                return cli_usage_error(CMD, "--max-stars must be 3 .. 1000, got '%s'", optarg);
            a->mopts.max_stars = (size_t)n;
            break;
        case O_THRESH:
            a->stars_only = "--thresh";
            if (!cli_parse_double(CMD, "--thresh", optarg, &a->dopts.thresh))
                return EXIT_USAGE;
            if (!(a->dopts.thresh > 0))
                return cli_usage_error(CMD, "--thresh must be > 0, got '%s'", optarg);
            break;
        case O_RADIUS:
            a->stars_only = "--radius";
            if (!cli_parse_double(CMD, "--radius", optarg, &a->mopts.radius))
                return EXIT_USAGE;
            if (!(a->mopts.radius > 0))
                return cli_usage_error(CMD, "--radius must be > 0, got '%s'", optarg);
            break;
        case O_MINMATCH:
            a->stars_only = "--min-matches";
            if (!cli_parse_int(CMD, "--min-matches", optarg, &n))
                return EXIT_USAGE;
            if (n < 3)
                return cli_usage_error(CMD, "--min-matches must be >= 3, got '%s'", optarg);
            a->mopts.min_matches = (size_t)n;
            break;
        case O_MIRROR: a->stars_only = "--mirror", a->mopts.allow_mirror = 1; break;
        default: return cli_usage_error(CMD, "unknown option");
        }
    }
    if (optind >= argc)
        return cli_usage_error(CMD, "no input frames");
    if (!a->outdir && !a->table)
        return cli_usage_error(CMD, "nothing to write: give -o OUTDIR, --table FILE or both");
    if (a->stars && a->pc_only)
        return cli_usage_error(CMD, "%s applies to --method phasecorr only", a->pc_only);
    if (!a->stars && a->stars_only)
        return cli_usage_error(CMD, "%s applies to --method stars only", a->stars_only);
    if (a->stars && a->ref_index < 0)
        return cli_usage_error(CMD, "--method stars needs a reference frame (--ref N), not the median");
    if (a->stars && a->ropts.interp == CLRED_INTERP_FOURIER)
        return cli_usage_error(CMD, "--interp fourier shifts only; --method stars also rotates and scales");
    return EXIT_OK;
}

static int check_outputs(const reg_args *a, const cli_frame *frames, size_t n, int argc, char **argv)
{
    const char *const *inputs = (const char *const *)argv + optind;
    size_t ninputs = (size_t)(argc - optind);
    if (a->table) {
        clred_status s = clred_output_check(a->table, inputs, ninputs, a->overwrite);
        if (s != CLRED_OK)
            return cli_fail(CMD, s);
    }
    if (!a->outdir)
        return EXIT_OK;
    struct stat sb;
    if (stat(a->outdir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return cli_usage_error(CMD, "-o %s: not a directory", a->outdir);
    for (size_t i = 0; i < n; i++) {
        char path[4400];
        output_name(a->outdir, &frames[i], path, sizeof path);
        clred_status s = clred_output_check(path, inputs, ninputs, a->overwrite);
        if (s != CLRED_OK)
            return cli_fail(CMD, s);
    }
    return EXIT_OK;
}

/* res: the star-matched transforms (NULL for phase correlation, whose
 * resampling already added its HISTORY card). */
static int write_aligned(const reg_args *a, const cli_frame *frames, clred_image *aligned, size_t n,
                         const clred_match_result *res)
{
    if (mkdir(a->outdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "clred %s: cannot create %s: %s\n", CMD, a->outdir, strerror(errno));
        return EXIT_BAD_INPUT;
    }
    for (size_t i = 0; i < n; i++) {
        char path[4400], hist[200];
        output_name(a->outdir, &frames[i], path, sizeof path);
        if (!aligned[i].header)
            aligned[i].header = clred_header_new();
        if (res)
            snprintf(hist, sizeof hist, "clred register: method=stars ref=%s interp=%s model=%s max_stars=%zu thresh=%g "
                     "radius=%g mirror=%d", a->ref_text, cli_interp_names[a->ropts.interp], model_name(a->mopts.model),
                     a->mopts.max_stars, a->dopts.thresh, a->mopts.radius, a->mopts.allow_mirror);
        else
            snprintf(hist, sizeof hist, "clred register: ref=%s interp=%s precision=%g window=%d phase_only=%d",
                     a->ref_text, cli_interp_names[a->ropts.interp], a->popts.precision, (int)a->popts.window, a->popts.phase_only);
        clred_status s = aligned[i].header ? clred_header_add_history(aligned[i].header, hist) : CLRED_ERR_MEMORY;
        if (s == CLRED_OK && res) {
            const double *m = res[i].transform.m;
            snprintf(hist, sizeof hist, "clred register: transform [%.8g %.8g %.5f; %.8g %.8g %.5f] from %zu stars, rms %.3f px",
                     m[0], m[1], m[2], m[3], m[4], m[5], res[i].nmatched, res[i].rms);
            s = clred_header_add_history(aligned[i].header, hist);
        }
        if (s == CLRED_OK)
            s = clred_image_write(path, &aligned[i], a->overwrite);
        if (s != CLRED_OK)
            return cli_fail(CMD, s);
    }
    return EXIT_OK;
}

/* Stars of the reference once, then each frame's stars matched against them;
 * the reference itself gets the identity. Aligned frames when aligned != NULL. */
static int register_stars(clred_ctx *ctx, const reg_args *a, const cli_frame *frames, const clred_image *images,
                          size_t n, clred_match_result *res, clred_image *aligned)
{
    cli_progress("matching stars in %zu frames", n);
    size_t bad = a->ref_index;
    clred_status s = clred_find_transforms(ctx, images, n, a->ref_index, &a->dopts, &a->mopts, res, &bad);
    if (s != CLRED_OK) {
        cli_progress_done();
        fprintf(stderr, "clred %s: %s[%zu]: %s\n", CMD, frames[bad].path, frames[bad].frame, clred_last_error());
        return cli_exit_code(s);
    }
    if (!aligned)
        return EXIT_OK;
    clred_transform *to_ref = malloc(n * sizeof *to_ref);
    if (!to_ref) {
        fprintf(stderr, "clred %s: out of memory\n", CMD);
        return cli_exit_code(CLRED_ERR_MEMORY);
    }
    for (size_t i = 0; i < n; i++)
        to_ref[i] = res[i].transform;
    cli_progress("resampling %zu frames onto the reference", n);
    s = clred_resample_onto_grid(ctx, images, n, to_ref, CLRED_GRID_REFERENCE, &a->ropts, aligned, NULL);
    free(to_ref);
    if (s == CLRED_OK)
        return EXIT_OK;
    cli_progress_done();
    fprintf(stderr, "clred %s: resampling: %s\n", CMD, clred_last_error());
    return cli_exit_code(s);
}

static void print_star_summary(const reg_args *a, const cli_frame *frames, const clred_match_result *res,
                               const clred_image *images, size_t n)
{
    if (a->json) {
        printf("{\"command\": \"register\", \"method\": \"stars\", \"model\": \"%s\", \"reference\": ",
               model_name(a->mopts.model));
        cli_json_string(stdout, a->ref_text);
        printf(", \"frames\": [");
        for (size_t i = 0; i < n; i++) {
            printf("%s\n  {\"file\": ", i ? "," : "");
            cli_json_string(stdout, frames[i].path);
            printf(", \"frame\": %zu", frames[i].frame);
            json_match(stdout, &res[i], &images[i]);
            printf("}");
        }
        printf("\n]}\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double dx, dy;
        star_offset(&res[i], &images[i], &dx, &dy);
        printf("%s[%zu]: rotation %+.4f deg, scale %.6f, dx %+.3f dy %+.3f (%zu stars, rms %.3f px)%s\n",
               frames[i].path, frames[i].frame, res[i].rotation_deg, res[i].scale, dx, dy, res[i].nmatched, res[i].rms,
               res[i].mirrored ? "  mirrored" : "");
    }
}

int cmd_register(int argc, char **argv)
{
    reg_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != EXIT_OK)
        return rc < 0 ? EXIT_OK : rc;
    cli_frame *frames = NULL;
    size_t n = 0;
    if ((rc = cli_list_frames(CMD, (const char *const *)argv + optind, (size_t)(argc - optind), &frames, &n)) !=
        EXIT_OK)
        return rc;
    if (a.ref_index >= (long)n) {
        free(frames);
        return cli_usage_error(CMD, "--ref %ld: there are only %zu frames", a.ref_index, n);
    }
    if ((rc = check_outputs(&a, frames, n, argc, argv)) != EXIT_OK) {
        free(frames);
        return rc;
    }
    clred_image *images = calloc(n, sizeof *images), *aligned = calloc(n, sizeof *aligned);
    clred_shift *shifts = calloc(n, sizeof *shifts);
    clred_match_result *res = calloc(n, sizeof *res);
    clred_ctx *ctx = NULL;
    clred_status s = CLRED_OK;
    if (!images || !aligned || !shifts || !res) {
        fprintf(stderr, "clred %s: out of memory for %zu frames\n", CMD, n);
        rc = cli_exit_code(CLRED_ERR_MEMORY);
        n = 0;
    }
    for (size_t i = 0; i < n && s == CLRED_OK; i++) {
        cli_progress("reading %zu/%zu", i + 1, n);
        s = clred_image_read(frames[i].path, frames[i].frame, &images[i]);
        if (s == CLRED_OK && i > 0 && !a.stars &&
            (images[i].width != images[0].width || images[i].height != images[0].height)) {
            fprintf(stderr, "clred %s: %s[%zu]: %zu x %zu does not match %s[%zu] (%zu x %zu)\n", CMD, frames[i].path,
                    frames[i].frame, images[i].width, images[i].height, frames[0].path, frames[0].frame,
                    images[0].width, images[0].height);
            rc = EXIT_BAD_INPUT;
            break;
        }
    }
    if (s != CLRED_OK)
        rc = cli_fail(CMD, s);
    if (rc == EXIT_OK)
        rc = cli_open(CMD, a.device, &ctx);
    if (rc == EXIT_OK && a.stars) {
        rc = register_stars(ctx, &a, frames, images, n, res, a.outdir ? aligned : NULL);
    } else if (rc == EXIT_OK) {
        cli_progress("registering %zu frames", n);
        if (a.outdir)
            s = clred_align_images(ctx, images, n, a.ref_index, &a.popts, &a.ropts, aligned, shifts);
        else
            s = clred_measure_shifts(ctx, images, n, a.ref_index, &a.popts, shifts);
        if (s != CLRED_OK)
            rc = fail_naming_frame(s, frames, n);
    }
    cli_progress_done();
    if (rc == EXIT_OK && a.table)
        rc = a.stars ? write_star_table(a.table, a.overwrite, frames, res, images, n, a.ref_text, a.mopts.model)
                     : write_table(a.table, a.overwrite, frames, shifts, n, a.ref_text);
    if (rc == EXIT_OK && a.outdir)
        rc = write_aligned(&a, frames, aligned, n, a.stars ? res : NULL);
    if (rc == EXIT_OK && a.stars) {
        print_star_summary(&a, frames, res, images, n);
    } else if (rc == EXIT_OK) {
        if (a.json) {
            printf("{\"command\": \"register\", \"reference\": ");
            cli_json_string(stdout, a.ref_text);
            printf(", \"frames\": [");
            for (size_t i = 0; i < n; i++) {
                printf("%s\n  {\"file\": ", i ? "," : "");
                cli_json_string(stdout, frames[i].path);
                printf(", \"frame\": %zu, \"dx\": %.5f, \"dy\": %.5f, \"psr\": %.3f}", frames[i].frame, shifts[i].dx,
                       shifts[i].dy, shifts[i].psr);
            }
            printf("\n]}\n");
        } else {
            for (size_t i = 0; i < n; i++)
                printf("%s[%zu]: dx %+.3f dy %+.3f (PSR %.1f)%s\n", frames[i].path, frames[i].frame, shifts[i].dx,
                       shifts[i].dy, shifts[i].psr, shifts[i].psr < 10 ? "  low confidence" : "");
        }
    }
    for (size_t i = 0; images && i < n; i++)
        clred_image_free(&images[i]);
    for (size_t i = 0; aligned && i < n; i++)
        clred_image_free(&aligned[i]);
    free(images);
    free(aligned);
    free(shifts);
    free(res);
    free(frames);
    if (ctx)
        clred_ctx_destroy(ctx);
    return rc;
}
