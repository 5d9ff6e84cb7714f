/* clred run: a night in one command (clred_night_run). Parses the options
 * and an INI configuration (libinih), prints progress on stderr and a
 * summary (text or --json) on stdout. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli.h"
#include "run_config.h"

#define CMD "run"

static void help(void)
{
    printf("usage: clred run [options] (DIR | FILE...) -o OUTDIR\n\n"
           "Reduces a night: classifies every raw frame by its header, builds the master bias, a\n"
           "master dark per exposure time (per second) and a master flat per filter, calibrates\n"
           "each science frame, removes its cosmic rays, subtracts its background (kept as a model),\n"
           "and aligns and stacks the frames of each (object, filter). A directory means every\n"
           "FITS file in it (sorted). Products (atomically written):\n"
           "  OUTDIR/masters/{bias,dark_<t>s,flat_<filter>}.fits, OUTDIR/calibrated/<frame>.fits,\n"
           "  OUTDIR/background/<frame>.fits, OUTDIR/stacks/<object>_<filter>.fits, and\n"
           "  OUTDIR/manifest.json: inputs (size, mtime), outputs, parameters, version, timings,\n"
           "  what was skipped and why.\n"
           "A frame that cannot be read is named on stderr and left out (--strict: exit 1, nothing\n"
           "written). A rerun skips the products whose inputs and parameters are unchanged.\n\n"
           "options:\n"
           "  -o OUTDIR        output directory (created)\n"
           "  --config FILE    INI settings (keys below)\n"
           "  --strict         an unreadable or unclassifiable frame is fatal\n"
           "  --shard I/N      only groups g with g %% N == I - 1 (masters, then (object, filter)\n"
           "                   stacks, sorted): N runs of one night share the work\n"
           "  --overwrite      rebuild every product, ignoring the previous manifest\n"
           "  --trace FILE     Chrome trace JSON of reads, transfers, kernels and writes\n"
           "  --json           summary as JSON on stdout\n"
           "  --device D       OpenCL device index or name\n\n"
           "configuration (INI; [section] key = value, defaults in brackets):\n"
           "  [keywords]   type = IMAGETYP,OBSTYPE   exptime = EXPTIME,EXPOSURE\n"
           "               filter = FILTER,INSFLNAM  object = OBJECT\n"
           "               (comma-separated, the first present wins; type values: bias/zero,\n"
           "               dark, flat/flatfield/dome flat/sky flat, object/science/light)\n"
           "  [calibrate]  overscan = auto|none|mean|median|fit [auto]   gain = e-/ADU [0: GAIN, else 1]\n"
           "               readnoise = e- [-1: RDNOISE]   saturation = ADU [0: SATURATE; <0 none]\n"
           "               flat_floor = [0.2]   override_checks = true|false [false]\n"
           "  [cosmic]     enabled = true|false [true]   sigclip = [4.5]   sigfrac = [0.3]\n"
           "               objlim = [5]   max_iters = [4]   sepmed = true|false [false]\n"
           "  [background] enabled = true|false [true]   box = px [64]   filter = boxes [3]\n"
           "               mask_sources = true|false [false]   save_map = true|false [false]\n"
           "               (background/<frame>.fits is the model: mesh, RMS mesh, interpolation;\n"
           "               save_map adds the full map; clred background CAL --restore BKG gives\n"
           "               back the unsubtracted frame)\n"
           "  [stack]      register = shifts|stars [shifts]   ref = index [0]\n"
           "               interp = nearest|bilinear|bicubic|lanczos3|fourier [lanczos3]\n"
           "               grid = reference|union [reference]   method = mean|median|sum [mean]\n"
           "               reject = none|sigclip|minmax [sigclip]   sigma = [3]\n"
           "               spread = mad|std [mad]   scale = none|additive|multiplicative|stars [additive]\n"
           "               match_background = true|false [false] (sky matched to a reference frame\n"
           "               before combining)   match_order = -1..3 [1; -1 = mesh]   match_box = px [64]\n"
           "               final_background = true|false [false] (the stack's own background, maybe\n"
           "               negative, subtracted and kept in stacks/<object>_<filter>_bkg.fits with its\n"
           "               full map)   final_box = px [256]\n"
           "  [quality]    enabled = true|false [true] (each science frame's seeing, ellipticity, sky,\n"
           "               stars, zero point and limiting magnitude into the manifest); limits that\n"
           "               leave a frame out of its stack [none]: max_fwhm = px  max_ellipticity =\n"
           "               max_sky_noise =  min_stars =  min_limit_mag =  max_astrom_rms = arcsec\n"
           "  [run]        strict = true|false [false]   read_ahead = frames [2]\n"
           "               stream = true|false [true] (reader and writer threads)\n"
           "  [subtract]   reference = FITS [none: no subtraction]   method = zogy|al [zogy]\n"
           "               ref_psf = FITS [measured]   ref_noise = FITS   ref_mask = FITS\n"
           "               fit_mask = FITS or fit_only = FITS (method = al, on the reference's grid:\n"
           "               as clred subtract --fit-mask / --fit-only)\n"
           "               psf_size = odd px [25]   threshold = sigma [5]   positive_only = true|false\n"
           "               [false]   renormalize = true|false [false]   astrom_sigma = px [0]\n"
           "               psf_err = fraction [the measured PSF's estimate]\n"
           "               tile = px [0: whole image when it fits]   alerts = true|false [false]:\n"
           "               ZTF Avro alert packets in OUTDIR/difference/<object>_<filter>_alerts/\n"
           "               (each stack is registered onto the reference by star matching,\n"
           "               resampled onto its grid and subtracted as `clred subtract` does, its PSF\n"
           "               measured: OUTDIR/difference/<object>_<filter>{_aligned,,_candidates}\n"
           "               .fits/.fits/.csv; a stack that cannot be subtracted is reported, not fatal)\n\n"
           "Exit status: 0 ok, 1 bad input, 2 usage, 3 device failure.\n\n"
           "examples:\n"
           "  clred simulate -o night --size 256x256 && clred run night -o reduced --trace run.json\n"
           "  clred run --config cafos.ini ../shared/data/cafos/*/*.fits -o cafos   # saturation = 65535\n"
           "  clred run night -o reduced --shard 1/2 & clred run night -o reduced --shard 2/2\n");
}

/* ------------------------------------------------------------- inputs */

static int is_fits_name(const char *n)
{
    size_t len = strlen(n);
    static const char *ext[] = {".fits", ".fit", ".fts", ".fits.fz", ".fits.gz"};
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        size_t e = strlen(ext[i]);
        if (len > e && !strcasecmp(n + len - e, ext[i]))
            return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The FITS files of a directory, sorted (malloc'd strings appended to *list). */
static int list_dir(const char *dir, char ***list, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "clred run: %s: cannot open the directory (%s)\n", dir, strerror(errno));
        return EXIT_BAD_INPUT;
    }
    size_t first = *n;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !is_fits_name(e->d_name))
            continue;
        char **l = realloc(*list, (*n + 1) * sizeof *l);
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!l || !(l[*n] = malloc(len))) {
            closedir(d);
            if (l)
                *list = l;
            fprintf(stderr, "clred run: out of memory\n");
            return EXIT_BAD_INPUT;
        }
        *list = l;
        snprintf(l[(*n)++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(*list + first, *n - first, sizeof **list, cmp_str);
    return EXIT_OK;
}

static void progress_line(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "clred run: %s\n", line);
}

/* ------------------------------------------------------------- summary */

static void print_json(const clred_night_report *r, const char *outdir)
{
    printf("{\"outdir\": ");
    cli_json_string(stdout, outdir);
    printf(", \"inputs\": %zu, \"bias\": %zu, \"dark\": %zu, \"flat\": %zu, \"science\": %zu, "
           "\"groups\": %zu, \"groups_here\": %zu, \"written\": %zu, \"skipped\": %zu, \"manifest\": ",
           r->ninputs, r->nbias, r->ndark, r->nflat, r->nscience, r->ngroups, r->ngroups_here, r->nwritten,
           r->nskipped);
    cli_json_string(stdout, r->manifest ? r->manifest : "");
    printf(",\n \"left_out\": [");
    for (size_t i = 0; i < r->nleft_out; i++) {
        printf("%s{\"path\": ", i ? ", " : "");
        cli_json_string(stdout, r->left_out[i].path);
        printf(", \"reason\": ");
        cli_json_string(stdout, r->left_out[i].reason);
        printf("}");
    }
    printf("],\n \"products\": [");
    for (size_t i = 0; i < r->nproducts; i++) {
        printf("%s\n  {\"path\": ", i ? "," : "");
        cli_json_string(stdout, r->products[i].path);
        printf(", \"what\": ");
        cli_json_string(stdout, r->products[i].what);
        printf(", \"written\": %s}", r->products[i].written ? "true" : "false");
    }
    printf("],\n \"seconds\": {\"classify\": %.3f, \"masters\": %.3f, \"science\": %.3f, \"stacks\": %.3f, "
           "\"difference\": %.3f, \"read\": %.3f, \"write\": %.3f, \"wall\": %.3f},\n",
           r->stage_s[CLRED_NIGHT_CLASSIFY], r->stage_s[CLRED_NIGHT_MASTERS], r->stage_s[CLRED_NIGHT_SCIENCE],
           r->stage_s[CLRED_NIGHT_STACKS], r->stage_s[CLRED_NIGHT_DIFFERENCE], r->read_s, r->write_s, r->wall_s);
    printf(" \"device\": {\"uploads\": %llu, \"downloads\": %llu, \"kernels\": %llu, \"kernel_s\": %.3f, "
           "\"upload_bytes\": %llu, \"download_bytes\": %llu,\n  \"image_uploads\": %llu, \"image_downloads\": %llu, "
           "\"frames_in\": %zu, \"products_out\": %zu, \"image_uploads_per_frame\": %.3f, "
           "\"image_downloads_per_product\": %.3f, \"stacks_read_back\": %zu}}\n",
           (unsigned long long)r->timing.uploads, (unsigned long long)r->timing.downloads,
           (unsigned long long)r->timing.kernels, r->timing.kernel_s, (unsigned long long)r->timing.upload_bytes,
           (unsigned long long)r->timing.download_bytes, (unsigned long long)r->image_uploads,
           (unsigned long long)r->image_downloads, r->frames_in, r->products_out,
           r->frames_in ? (double)r->image_uploads / r->frames_in : 0.0,
           r->products_out ? (double)r->image_downloads / r->products_out : 0.0, r->stacks_read_back);
}

static void print_text(const clred_night_report *r)
{
    printf("clred run: %zu frames (%zu bias, %zu dark, %zu flat, %zu science), %zu left out\n", r->ninputs,
           r->nbias, r->ndark, r->nflat, r->nscience, r->nleft_out);
    printf("  %zu groups, %zu in this run; %zu products written, %zu unchanged (skipped)\n", r->ngroups,
           r->ngroups_here, r->nwritten, r->nskipped);
    printf("  %.2f s: classify %.2f, masters %.2f, science %.2f, stacks %.2f, difference %.2f; reading %.2f, "
           "writing %.2f\n",
           r->wall_s, r->stage_s[CLRED_NIGHT_CLASSIFY], r->stage_s[CLRED_NIGHT_MASTERS],
           r->stage_s[CLRED_NIGHT_SCIENCE], r->stage_s[CLRED_NIGHT_STACKS], r->stage_s[CLRED_NIGHT_DIFFERENCE],
           r->read_s, r->write_s);
    printf("  device: %zu images in, %llu copied up; %zu products out, %llu copied down; %llu transfers in all%s\n",
           r->frames_in, (unsigned long long)r->image_uploads, r->products_out,
           (unsigned long long)r->image_downloads,
           (unsigned long long)(r->timing.uploads + r->timing.downloads),
           r->stacks_read_back ? "; some stacks read back from files (device budget)" : "");
    printf("  manifest: %s\n", r->manifest ? r->manifest : "(none)");
}

/* ------------------------------------------------------------- compiling ahead */

typedef struct {
    const clred_ctx *ctx;
    const char *device;
    const clred_night_opts *o;
    pid_t helper; /* -1: none */
} run_ahead;

/* Once the night is planned: a helper compiling the kernels of its later
 * steps that it will use (compile_ahead.c). The helper registers and
 * resamples with the default stack options, so it leaves alignment out of a
 * night whose stacks match stars or interpolate otherwise: those kernels
 * would go unused. */
static void start_ahead(void *user, const clred_night_plan *p)
{
    run_ahead *ra = user;
    clred_stack_opts d = clred_stack_defaults();
    int align = p->align && ra->o->stack.method == d.method && ra->o->stack.ropts.interp == d.ropts.interp;
    if (ra->helper < 0)
        ra->helper = cli_compile_ahead_start(ra->ctx, ra->device, p->width, p->height, p->quality, align);
}

/* ------------------------------------------------------------- main */

int cmd_run(int argc, char **argv)
{
    enum { OPT_CONFIG = 256, OPT_STRICT, OPT_SHARD, OPT_TRACE, OPT_JSON, OPT_OVERWRITE, OPT_DEVICE };
    static const struct option longopts[] = {
        {"config", required_argument, 0, OPT_CONFIG}, {"strict", no_argument, 0, OPT_STRICT},
        {"shard", required_argument, 0, OPT_SHARD},   {"trace", required_argument, 0, OPT_TRACE},
        {"json", no_argument, 0, OPT_JSON},           {"overwrite", no_argument, 0, OPT_OVERWRITE},
        {"device", required_argument, 0, OPT_DEVICE}, {"output", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    const char *outdir = NULL, *config = NULL, *trace = NULL, *device = NULL;
    int json = 0, strict = 0, overwrite = 0, c;
    unsigned long shard_i = 1, shard_n = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return EXIT_OK;
        case 'o': outdir = optarg; break;
        case OPT_CONFIG: config = optarg; break;
        case OPT_STRICT: strict = 1; break;
        case OPT_TRACE: trace = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_OVERWRITE: overwrite = 1; break;
        case OPT_DEVICE: device = optarg; break;
        case OPT_SHARD: {
            char extra;
            if (sscanf(optarg, "%lu/%lu%c", &shard_i, &shard_n, &extra) != 2 || shard_n < 1 || shard_i < 1 ||
                shard_i > shard_n || *optarg == '-')
                return cli_usage_error(CMD, "--shard expects I/N with 1 <= I <= N, got '%s'", optarg);
            break;
        }
        default: return cli_usage_error(CMD, "unknown option or missing value (see clred run --help)");
        }
    }
    if (!outdir)
        return cli_usage_error(CMD, "no output directory (-o OUTDIR)");
    if (optind >= argc)
        return cli_usage_error(CMD, "no inputs: a directory or FITS files");

    clred_night_opts o = clred_night_defaults();
    run_config cfg;
    if (config) {
        int rc = run_config_read(config, &o, &cfg);
        if (rc != EXIT_OK)
            return rc;
    } else {
        memset(&cfg, 0, sizeof cfg);
    }
    o.strict |= strict;
    o.overwrite = overwrite;
    o.shard_index = shard_i - 1;
    o.shard_count = shard_n;
    o.progress = progress_line;

    char **inputs = NULL;
    size_t n = 0;
    int rc = EXIT_OK;
    for (int i = optind; i < argc && rc == EXIT_OK; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            rc = list_dir(argv[i], &inputs, &n);
        } else {
            char **l = realloc(inputs, (n + 1) * sizeof *l);
            if (!l || !(l[n] = strdup(argv[i])))
                rc = (fprintf(stderr, "clred run: out of memory\n"), EXIT_BAD_INPUT);
            if (l)
                inputs = l;
            if (rc == EXIT_OK)
                n++;
        }
    }
    if (rc == EXIT_OK && !n)
        rc = (fprintf(stderr, "clred run: no FITS files among the inputs\n"), EXIT_BAD_INPUT);

    clred_ctx *ctx = NULL;
    if (rc == EXIT_OK)
        rc = cli_open(CMD, device, &ctx);
    if (rc == EXIT_OK && trace && clred_ctx_trace_start(ctx) != CLRED_OK)
        rc = cli_fail(CMD, CLRED_ERR_DEVICE);
    clred_night_report report;
    memset(&report, 0, sizeof report);
    run_ahead ra = {ctx, device, &o, -1};
    o.planned = start_ahead;
    o.planned_user = &ra;
    if (rc == EXIT_OK) {
        clred_status st = clred_night_run(ctx, (const char *const *)inputs, n, outdir, &o, &report);
        cli_compile_ahead_finish(ra.helper);
        for (size_t i = 0; i < report.nleft_out; i++)
            fprintf(stderr, "clred run: left out %s: %s\n", report.left_out[i].path, report.left_out[i].reason);
        if (st != CLRED_OK) {
            rc = cli_fail(CMD, st);
        } else {
            if (json)
                print_json(&report, outdir);
            else
                print_text(&report);
        }
        if (trace) {
            clred_status ts = clred_ctx_trace_write(ctx, trace);
            if (ts != CLRED_OK && rc == EXIT_OK)
                rc = cli_fail(CMD, ts);
        }
    }
    clred_night_report_free(&report);
    if (ctx)
        clred_ctx_destroy(ctx);
    for (size_t i = 0; i < n; i++)
        free(inputs[i]);
    free(inputs);
    run_config_free(&cfg);
    return rc;
}
