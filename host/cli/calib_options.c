/* Options shared by clred calibrate and the master-* subcommands. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib_options.h"

const char calib_options_help[] =
    "overscan and trim (raw frames):\n"
    "  --overscan MODE       none, mean (one sigma-clipped mean of the whole overscan),\n"
    "                        median (per row, across the overscan columns), fit (per-row\n"
    "                        medians fitted by a polynomial along the rows) or auto (default:\n"
    "                        median when a BIASSEC is known, else none)\n"
    "  --overscan-order N    polynomial order for 'fit' (default 3, at most 9)\n"
    "  --biassec '[x1:x2,y1:y2]'  overscan columns (FITS 1-based, inclusive; default: header BIASSEC)\n"
    "  --trimsec '[x1:x2,y1:y2]'  region kept (default: header TRIMSEC, else the whole frame)\n"
    "  --no-header-sections  ignore BIASSEC/TRIMSEC in the headers\n"
    "detector:\n"
    "  --gain G              e-/ADU (default: header GAIN, else 1)\n"
    "  --readnoise R         e- (default: header RDNOISE or READNOIS, else 0)\n"
    "  --saturation S        ADU on the raw values, flagged SATURATED before any arithmetic\n"
    "                        (default: header SATURATE, else no flagging)\n"
    "  --override            accept exposure-time and frame-type mismatches and a flat with\n"
    "                        zero or negative pixels (flagged NO_DATA)\n";

const char combine_options_help[] =
    "combining:\n"
    "  --method M            mean, median, sum, min or max\n"
    "  --reject R            none, sigclip, minmax, winsorized or percentile\n"
    "  --sigma S             both clipping thresholds (default 3); --sigma-low, --sigma-high\n"
    "  --iters N             clipping iterations (default 10; 0 = until nothing changes)\n";

const char common_options_help[] =
    "output:\n"
    "  -o, --output FILE     the output (MEF: SCI, VAR, MASK)\n"
    "  --overwrite           replace an existing output\n"
    "  --json                a JSON summary on stdout\n"
    "  --device N|NAME       OpenCL device (default: CLRED_DEVICE, else first GPU, else CPU)\n"
    "  -h, --help            this text\n";

static int section_option(const char *cmd, const char *opt, const char *arg, clred_section *s)
{
    if (clred_section_parse(arg, s) != CLRED_OK) {
        cli_usage_error(cmd, "%s: %s", opt, clred_last_error());
        return -1;
    }
    return 1;
}

static int double_option(const char *cmd, const char *opt, const char *arg, double *v, int positive)
{
    if (!cli_parse_double(cmd, opt, arg, v))
        return -1;
    if (!isfinite(*v) || (positive ? !(*v > 0) : !(*v >= 0))) {
        cli_usage_error(cmd, "%s must be %s, got '%s'", opt, positive ? "positive" : "zero or more", arg);
        return -1;
    }
    return 1;
}

int calib_option(const char *cmd, int c, const char *arg, clred_calib_opts *o)
{
    switch (c) {
    case CO_OVERSCAN: {
        static const char *names[] = {"none", "mean", "median", "fit", "auto"};
        for (int i = 0; i < 5; i++)
            if (strcmp(arg, names[i]) == 0) {
                o->overscan = (clred_overscan_mode)i;
                return 1;
            }
        cli_usage_error(cmd, "--overscan expects none, mean, median, fit or auto, got '%s'", arg);
        return -1;
    }
    case CO_ORDER:
        if (!cli_parse_int(cmd, "--overscan-order", arg, &o->overscan_order))
            return -1;
        if (o->overscan_order < 0 || o->overscan_order > 9) {
            cli_usage_error(cmd, "--overscan-order must be 0 to 9, got %d", o->overscan_order);
            return -1;
        }
        return 1;
    case CO_BIASSEC: return section_option(cmd, "--biassec", arg, &o->biassec);
    case CO_TRIMSEC: return section_option(cmd, "--trimsec", arg, &o->trimsec);
    case CO_NO_HEADER_SECTIONS: o->use_header_sections = 0; return 1;
    case CO_GAIN: return double_option(cmd, "--gain", arg, &o->gain, 1);
    case CO_READNOISE: return double_option(cmd, "--readnoise", arg, &o->readnoise, 0);
    case CO_SATURATION: return double_option(cmd, "--saturation", arg, &o->saturation, 1);
    case CO_OVERRIDE: o->override_checks = 1; return 1;
    default: return 0;
    }
}

int combine_option(const char *cmd, int c, const char *arg, clred_combine_opts *o)
{
    switch (c) {
    case CO_METHOD: {
        static const char *names[] = {"mean", "median", "sum", "min", "max"};
        for (int i = 0; i < 5; i++)
            if (strcmp(arg, names[i]) == 0) {
                o->method = (clred_combine_method)i;
                return 1;
            }
        cli_usage_error(cmd, "--method expects mean, median, sum, min or max, got '%s'", arg);
        return -1;
    }
    case CO_REJECT: {
        static const char *names[] = {"none", "sigclip", "minmax", "winsorized", "percentile"};
        for (int i = 0; i < 5; i++)
            if (strcmp(arg, names[i]) == 0) {
                o->reject = (clred_reject_method)i;
                return 1;
            }
        cli_usage_error(cmd, "--reject expects none, sigclip, minmax, winsorized or percentile, got '%s'", arg);
        return -1;
    }
    case CO_SIGMA:
        if (double_option(cmd, "--sigma", arg, &o->sigma_lower, 1) < 0)
            return -1;
        o->sigma_upper = o->sigma_lower;
        return 1;
    case CO_SIGMA_LOW: return double_option(cmd, "--sigma-low", arg, &o->sigma_lower, 1);
    case CO_SIGMA_HIGH: return double_option(cmd, "--sigma-high", arg, &o->sigma_upper, 1);
    case CO_ITERS:
        if (!cli_parse_int(cmd, "--iters", arg, &o->max_iters))
            return -1;
        if (o->max_iters < 0) {
            cli_usage_error(cmd, "--iters must be >= 0");
            return -1;
        }
        return 1;
    default: return 0;
    }
}

int cli_read_master(const char *cmd, const char *path, clred_image *img)
{
    clred_status s = clred_image_read_2d(path, img);
    return s == CLRED_OK ? EXIT_OK : cli_fail(cmd, s);
}

static void json_number(double v)
{
    if (isfinite(v))
        printf("%.10g", v);
    else
        printf("null");
}

void cli_json_device(clred_ctx *ctx)
{
    clred_timing t;
    clred_ctx_timing(ctx, &t);
    printf("\"device\": ");
    cli_json_string(stdout, clred_ctx_device(ctx)->name);
    printf(", \"kernel_s\": %.6f, \"upload_bytes\": %llu, \"download_bytes\": %llu", t.kernel_s,
           (unsigned long long)t.upload_bytes, (unsigned long long)t.download_bytes);
}

int cli_write_master(const char *cmd, clred_ctx *ctx, const char *path, const clred_image *img, int overwrite,
                     clred_stats *st)
{
    clred_stats_opts so = clred_stats_defaults();
    clred_status s = clred_image_stats(ctx, img, &so, st);
    if (s == CLRED_OK)
        s = clred_image_write(path, img, overwrite);
    return s == CLRED_OK ? EXIT_OK : cli_fail(cmd, s);
}

void cli_master_json(const char *cmd, const char *output, char **inputs, size_t n, const clred_image *img,
                     const clred_stats *st, clred_ctx *ctx)
{
    printf("{\"command\": ");
    cli_json_string(stdout, cmd);
    printf(", \"output\": ");
    cli_json_string(stdout, output);
    printf(", \"inputs\": [");
    for (size_t i = 0; i < n; i++) {
        printf("%s", i ? ", " : "");
        cli_json_string(stdout, inputs[i]);
    }
    printf("], \"width\": %zu, \"height\": %zu, \"median\": ", img->width, img->height);
    json_number(st->median);
    printf(", \"mean\": ");
    json_number(st->mean);
    printf(", \"std\": ");
    json_number(st->std);
    size_t nodata = 0, flagged = 0;
    for (size_t i = 0; img->mask && i < img->width * img->height; i++) {
        nodata += (img->mask[i] & CLRED_MASK_NO_DATA) != 0;
        flagged += img->mask[i] != 0;
    }
    printf(", \"flagged\": %zu, \"no_data\": %zu, ", flagged, nodata);
    cli_json_device(ctx);
    printf("}\n");
}

/* ------------------------------------------------------- master commands */

typedef struct {
    const char *bias, *dark, *output, *device;
    int json, overwrite;
    clred_calib_opts opts;
    clred_combine_opts copts;
} master_options;

static int master_parse(const master_spec *spec, int argc, char **argv, master_options *o)
{
    static const struct option longopts[] = {
        CALIB_LONG_OPTIONS, COMBINE_LONG_OPTIONS, COMMON_LONG_OPTIONS,
        {"bias", required_argument, 0, CO_BIAS}, {"dark", required_argument, 0, CO_DARK},
        {"floor", required_argument, 0, CO_FLOOR}, {"region", required_argument, 0, CO_REGION}, {0, 0, 0, 0}};
    const char *cmd = spec->cmd;
    memset(o, 0, sizeof *o);
    o->opts = clred_calib_defaults();
    o->copts = clred_combine_defaults();
    o->copts.method = spec->method;
    o->copts.reject = spec->reject;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        int r = calib_option(cmd, c, optarg, &o->opts);
        if (r == 0)
            r = combine_option(cmd, c, optarg, &o->copts);
        if (r < 0)
            return EXIT_USAGE;
        if (r > 0)
            continue;
        switch (c) {
        case 'h': spec->help(); return EXIT_OK;
        case 'o': o->output = optarg; break;
        case CO_OVERWRITE: o->overwrite = 1; break;
        case CO_JSON: o->json = 1; break;
        case CO_DEVICE: o->device = optarg; break;
        case CO_BIAS:
            if (spec->kind == MASTER_BIAS)
                return cli_usage_error(cmd, "--bias does not apply to a master bias");
            o->bias = optarg;
            break;
        case CO_DARK:
            if (spec->kind != MASTER_FLAT)
                return cli_usage_error(cmd, "--dark applies to master-flat only");
            o->dark = optarg;
            break;
        case CO_FLOOR:
            if (spec->kind != MASTER_FLAT)
                return cli_usage_error(cmd, "--floor applies to master-flat only");
            if (!cli_parse_double(cmd, "--floor", optarg, &o->opts.flat_floor))
                return EXIT_USAGE;
            if (!(o->opts.flat_floor >= 0 && o->opts.flat_floor < 1))
                return cli_usage_error(cmd, "--floor must be in [0, 1), got '%s'", optarg);
            break;
        case CO_REGION:
            if (spec->kind != MASTER_FLAT)
                return cli_usage_error(cmd, "--region applies to master-flat only");
            if (section_option(cmd, "--region", optarg, &o->opts.flat_region) < 0)
                return EXIT_USAGE;
            break;
        default: return cli_usage_error(cmd, "unknown option or missing value in '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "no input frames");
    if (!o->output)
        return cli_usage_error(cmd, "no output file given (-o FILE)");
    return -1;
}

static clred_status build_master(const master_spec *spec, clred_ctx *ctx, const master_options *o,
                                 const char *const *inputs, size_t n, const clred_image *bias,
                                 const clred_image *dark, clred_image *out)
{
    switch (spec->kind) {
    case MASTER_BIAS: return clred_master_bias(ctx, inputs, n, &o->opts, &o->copts, out);
    case MASTER_DARK: return clred_master_dark(ctx, inputs, n, bias, &o->opts, &o->copts, out);
    default: return clred_master_flat(ctx, inputs, n, bias, dark, &o->opts, &o->copts, out);
    }
}

int master_command(const master_spec *spec, int argc, char **argv)
{
    master_options o;
    int rc = master_parse(spec, argc, argv, &o);
    if (rc >= 0)
        return rc;
    const char *cmd = spec->cmd;
    char **inputs = argv + optind;
    size_t n = (size_t)(argc - optind);
    const char **all = calloc(n + 2, sizeof *all);
    if (!all)
        return cli_usage_error(cmd, "out of memory");
    size_t nall = 0;
    for (size_t i = 0; i < n; i++)
        all[nall++] = inputs[i];
    if (o.bias)
        all[nall++] = o.bias;
    if (o.dark)
        all[nall++] = o.dark;
    clred_status s = clred_output_check(o.output, all, nall, o.overwrite);
    free(all);
    if (s != CLRED_OK)
        return cli_fail(cmd, s);

    clred_ctx *ctx = NULL;
    clred_image bias = {0}, dark = {0}, master = {0};
    rc = o.bias ? cli_read_master(cmd, o.bias, &bias) : EXIT_OK;
    if (rc == EXIT_OK && o.dark)
        rc = cli_read_master(cmd, o.dark, &dark);
    if (rc == EXIT_OK)
        rc = cli_check_inputs(cmd, (const char *const *)inputs, n);
    if (rc == EXIT_OK)
        rc = cli_open(cmd, o.device, &ctx);
    if (rc == EXIT_OK) {
        cli_progress("%s: %zu frames", cmd, n);
        s = build_master(spec, ctx, &o, (const char *const *)inputs, n, o.bias ? &bias : NULL,
                         o.dark ? &dark : NULL, &master);
        cli_progress_done();
        if (s != CLRED_OK)
            rc = cli_fail(cmd, s);
    }
    if (rc == EXIT_OK && master.header) {
        char text[600];
        snprintf(text, sizeof text, "clred %s: bias %s, dark %s", cmd, o.bias ? o.bias : "none",
                 o.dark ? o.dark : "none");
        if (spec->kind != MASTER_BIAS && clred_header_add_history(master.header, text) != CLRED_OK)
            rc = cli_fail(cmd, CLRED_ERR_MEMORY);
    }
    clred_stats st;
    if (rc == EXIT_OK)
        rc = cli_write_master(cmd, ctx, o.output, &master, o.overwrite, &st);
    if (rc == EXIT_OK && o.json)
        cli_master_json(cmd, o.output, inputs, n, &master, &st, ctx);
    clred_image_free(&bias);
    clred_image_free(&dark);
    clred_image_free(&master);
    clred_ctx_destroy(ctx);
    return rc;
}
