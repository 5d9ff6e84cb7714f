/* clred cube: adaptive-optics cube reduction — dark subtraction, saturation
 * report, background flatness, hot/cold pixel repair, shift-and-add beside
 * the plain sum, per-frame table. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *CMD = "cube";

static void help(void)
{
    printf("usage: clred cube CUBE [--dark DARK] [-o MASTER] [--plain PLAIN] [--table TABLE.csv] [options]\n\n"
           "Reduces an adaptive-optics cube (NAXIS3 >= 2 frames): subtracts the dark (an image, or a cube\n"
           "median-combined first) from every frame; counts saturated raw pixels per frame; checks that the\n"
           "background is flat (corners and a coarse mesh of the dark-subtracted temporal median, in pixel\n"
           "sigmas); finds hot and cold pixels in the dark and hot, cold and noisy pixels from the cube's\n"
           "per-pixel temporal median / MAD, and repairs them from their neighbours (saturated pixels are\n"
           "flagged SATURATED in the masks, never repaired); then shift-and-adds the frames and makes the\n"
           "plain stack beside it, reporting the peak and FWHM of both.\n\n"
           "Alignment: peak follows the brightest pixel (in open loop, the brightest speckle: classic\n"
           "shift-and-add, which builds a sharp core); centroid with a box as wide as the seeing halo\n"
           "(e.g. --box 101) or phasecorr (whole frame) follow the motion of the whole image instead.\n\n"
           "Saturation: a raw value >= CEILING - MARGIN counts as saturated. CEILING is --saturation, else the\n"
           "SATURATE keyword, else 2^b - 1 for the smallest ADC depth b (8..16) that holds the raw maximum\n"
           "(14-bit: 16383); MARGIN defaults to 1%% of the ceiling (164 ADU at 16383), where an ADC clips a\n"
           "few ADU short of full scale and the response is no longer linear.\n\n"
           "options:\n"
           "  --dark FILE           dark image or cube with the cube's camera settings\n"
           "  -o, --output FILE     shift-and-add master (SCI, VAR, MASK)\n"
           "  --plain FILE          the plain (unshifted) stack\n"
           "  --table FILE          per-frame table, CSV: frame, dx, dy, x, y, peak, raw_max, nsaturated,\n"
           "                        background, noise\n"
           "  --align MODE          peak (default), centroid, phasecorr or none (the plain sum)\n"
           "  --integer             whole-pixel shifts, pixels moved without interpolation\n"
           "  --ref first|median    align on frame 0 (default) or the median position / frame (phasecorr\n"
           "                        in open loop: use median, one speckled frame is a poor reference)\n"
           "  --box N               centroid box side (default 15)\n"
           "  --interp NAME         bilinear, bicubic, lanczos3 (default) or fourier for sub-pixel shifts\n"
           "  --stack NAME          sum (default), mean or median\n"
           "  --saturation ADU      raw ceiling (see above)\n"
           "  --margin ADU          saturated from ceiling - margin (default 1%% of the ceiling)\n"
           "  --hot-sigma X         hot pixels, dark and temporal (default 5)\n"
           "  --cold-sigma X        cold pixels (default 5)\n"
           "  --no-temporal         no bad pixels from the temporal statistics\n"
           "  --no-repair           flag bad pixels without repairing them\n"
           "  --corner N            corner regions of the flatness check (default 50)\n"
           "  --mesh N              boxes across the flatness mesh (default 4)\n"
           "  --flat-limit X        flat below X pixel sigmas (default 1)\n"
           "  --compare             show plain sum and shift-and-add side by side (text summary)\n"
           "  --json                summary on stdout as JSON\n"
           "  --device N|NAME       OpenCL device\n"
           "  --overwrite           replace existing outputs\n\n"
           "example:\n"
           "  clred cube ID_109_closed_loop.fits --dark ID_110_dark.fits --saturation 16383 --align centroid \\\n"
           "      -o master.fits --plain plain.fits --table frames.csv --compare\n");
}

typedef struct {
    const char *input, *dark, *output, *plain, *table, *device;
    int json, overwrite, compare;
    clred_cube_opts o;
} cube_args;

enum { OPT_DARK = 256, OPT_PLAIN, OPT_TABLE, OPT_ALIGN, OPT_INTEGER, OPT_REF, OPT_BOX, OPT_INTERP, OPT_STACK,
       OPT_SAT, OPT_MARGIN, OPT_HOT, OPT_COLD, OPT_NOTEMP, OPT_NOREPAIR, OPT_CORNER, OPT_MESH, OPT_FLAT,
       OPT_COMPARE, OPT_JSON, OPT_DEVICE, OPT_OVERWRITE };

static int pick(const char *opt, const char *text, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (names[i] && !strcmp(text, names[i])) {
            *out = i;
            return 1;
        }
    cli_usage_error(CMD, "unknown %s '%s'", opt, text);
    return 0;
}

static int parse_value(int c, const char *arg, cube_args *a)
{
    static const char *aligns[] = {"none", "peak", "centroid", "phasecorr"};
    static const char *interps[] = {NULL, "bilinear", "bicubic", "lanczos3", "fourier"};
    static const char *stacks[] = {"mean", "median", "sum"};
    static const char *refs[] = {"first", "median"};
    clred_cube_opts *o = &a->o;
    int v = 0, ok = 1;
    switch (c) {
    case 'o': a->output = arg; break;
    case OPT_DARK: a->dark = arg; break;
    case OPT_PLAIN: a->plain = arg; break;
    case OPT_TABLE: a->table = arg; break;
    case OPT_ALIGN: ok = pick("--align", arg, aligns, 4, &v), o->align = (clred_align_mode)v; break;
    case OPT_INTEGER: o->integer_shifts = 1; break;
    case OPT_REF: ok = pick("--ref", arg, refs, 2, &o->reference_median); break;
    case OPT_BOX: ok = cli_parse_int(CMD, "--box", arg, &o->centroid_box); break;
    case OPT_INTERP: ok = pick("--interp", arg, interps, 5, &v), o->interp = (clred_interp)v; break;
    case OPT_STACK: ok = pick("--stack", arg, stacks, 3, &v), o->stack = (clred_combine_method)v; break;
    case OPT_SAT: ok = cli_parse_double(CMD, "--saturation", arg, &o->saturation); break;
    case OPT_MARGIN: ok = cli_parse_double(CMD, "--margin", arg, &o->saturation_margin); break;
    case OPT_HOT: ok = cli_parse_double(CMD, "--hot-sigma", arg, &o->hot_sigma); break;
    case OPT_COLD: ok = cli_parse_double(CMD, "--cold-sigma", arg, &o->cold_sigma); break;
    case OPT_NOTEMP: o->temporal_badpix = 0; break;
    case OPT_NOREPAIR: o->repair = 0; break;
    case OPT_CORNER: ok = cli_parse_int(CMD, "--corner", arg, &o->corner); break;
    case OPT_MESH: ok = cli_parse_int(CMD, "--mesh", arg, &o->mesh); break;
    case OPT_FLAT: ok = cli_parse_double(CMD, "--flat-limit", arg, &o->flat_limit); break;
    case OPT_COMPARE: a->compare = 1; break;
    case OPT_JSON: a->json = 1; break;
    case OPT_DEVICE: a->device = arg; break;
    case OPT_OVERWRITE: a->overwrite = 1; break;
    default: return cli_usage_error(CMD, "unknown option (see 'clred cube --help')");
    }
    return ok ? EXIT_OK : EXIT_USAGE;
}

static int parse(int argc, char **argv, cube_args *a)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},     {"dark", required_argument, 0, OPT_DARK},
        {"plain", required_argument, 0, OPT_PLAIN}, {"table", required_argument, 0, OPT_TABLE},
        {"align", required_argument, 0, OPT_ALIGN}, {"integer", no_argument, 0, OPT_INTEGER},
        {"ref", required_argument, 0, OPT_REF},     {"box", required_argument, 0, OPT_BOX},
        {"interp", required_argument, 0, OPT_INTERP}, {"stack", required_argument, 0, OPT_STACK},
        {"saturation", required_argument, 0, OPT_SAT}, {"margin", required_argument, 0, OPT_MARGIN},
        {"hot-sigma", required_argument, 0, OPT_HOT}, {"cold-sigma", required_argument, 0, OPT_COLD},
        {"no-temporal", no_argument, 0, OPT_NOTEMP}, {"no-repair", no_argument, 0, OPT_NOREPAIR},
        {"corner", required_argument, 0, OPT_CORNER}, {"mesh", required_argument, 0, OPT_MESH},
        {"flat-limit", required_argument, 0, OPT_FLAT}, {"compare", no_argument, 0, OPT_COMPARE},
        {"json", no_argument, 0, OPT_JSON},         {"device", required_argument, 0, OPT_DEVICE},
        {"overwrite", no_argument, 0, OPT_OVERWRITE}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return -1;
        }
        if (c == '?')
            return cli_usage_error(CMD, "unknown option (see 'clred cube --help')");
        int rc = parse_value(c, optarg, a);
        if (rc != EXIT_OK)
            return rc;
    }
    if (optind >= argc)
        return cli_usage_error(CMD, "no input cube given");
    if (optind + 1 < argc)
        return cli_usage_error(CMD, "one input cube expected, got '%s' too", argv[optind + 1]);
    a->input = argv[optind];
    if (a->o.saturation_margin < 0 && a->o.saturation_margin != -1.0)
        return cli_usage_error(CMD, "--margin must not be negative (got %g)", a->o.saturation_margin);
    if (a->o.saturation < 0)
        return cli_usage_error(CMD, "--saturation must be positive (got %g)", a->o.saturation);
    return EXIT_OK;
}

static int check_outputs(const cube_args *a)
{
    const char *inputs[2] = {a->input, a->dark};
    const char *outs[3] = {a->output, a->plain, a->table};
    for (int i = 0; i < 3; i++) {
        if (!outs[i])
            continue;
        clred_status s = clred_output_check(outs[i], inputs, a->dark ? 2 : 1, a->overwrite);
        if (s != CLRED_OK)
            return cli_fail(CMD, s);
        for (int j = 0; j < i; j++)
            if (outs[j] && !strcmp(outs[i], outs[j]))
                return cli_usage_error(CMD, "%s is given for two outputs", outs[i]);
    }
    return EXIT_OK;
}

static const char *ceiling_source(clred_ceiling_source s)
{
    return s == CLRED_CEILING_OPTION ? "option" : s == CLRED_CEILING_HEADER ? "SATURATE keyword" : "ADC depth";
}

static const char *align_names[] = {"none", "peak", "centroid", "phasecorr"};

static void print_json(const cube_args *a, const clred_cube_result *r, double seconds)
{
    const clred_cube_flatness *fl = &r->flatness;
    printf("{\"input\": ");
    cli_json_string(stdout, a->input);
    printf(", \"dark\": ");
    if (a->dark)
        cli_json_string(stdout, a->dark);
    else
        printf("null");
    printf(", \"frames\": %zu, \"width\": %zu, \"height\": %zu, \"align\": \"%s\", \"integer\": %s, ", r->nframes,
           r->width, r->height, align_names[a->o.align], a->o.integer_shifts ? "true" : "false");
    printf("\"saturation\": {\"ceiling\": %.9g, \"source\": \"%s\", \"level\": %.9g, \"values\": %zu, \"pixels\": %zu, "
           "\"pixels_also_bad\": %zu}, ",
           r->ceiling, ceiling_source(r->ceiling_source), r->threshold, r->nsaturated, r->nsaturated_pixels,
           r->nsaturated_bad);
    printf("\"bad_pixels\": {\"hot_dark\": %zu, \"cold_dark\": %zu, \"hot_temporal\": %zu, \"cold_temporal\": %zu, "
           "\"noisy_temporal\": %zu, \"repaired_per_frame\": %zu}, ",
           r->nhot_dark, r->ncold_dark, r->nhot_temporal, r->ncold_temporal, r->nnoisy_temporal, r->nrepaired);
    printf("\"background\": {\"corner\": %zu, \"corner_means\": [%.6g, %.6g, %.6g, %.6g], \"noise\": %.6g, "
           "\"corner_departure_sigma\": %.4g, \"mesh\": [%zu, %zu], \"mesh_min\": %.6g, \"mesh_max\": %.6g, "
           "\"mesh_departure_sigma\": %.4g, \"flat\": %s}, ",
           fl->corner, fl->corner_mean[0], fl->corner_mean[1], fl->corner_mean[2], fl->corner_mean[3], fl->noise,
           fl->corner_departure, fl->mesh_w, fl->mesh_h, fl->mesh_min, fl->mesh_max, fl->mesh_departure,
           fl->flat ? "true" : "false");
    printf("\"tiptilt_rms\": {\"x\": %.6g, \"y\": %.6g, \"total\": %.6g}, ", r->tiptilt_rms_x, r->tiptilt_rms_y,
           r->tiptilt_rms);
    printf("\"plain\": {\"peak\": %.9g, \"fwhm\": %.6g, \"x\": %.6g, \"y\": %.6g}, ", r->plain_peak, r->plain_fwhm,
           r->plain_x, r->plain_y);
    printf("\"shift_and_add\": {\"peak\": %.9g, \"fwhm\": %.6g, \"x\": %.6g, \"y\": %.6g}, ", r->master_peak,
           r->master_fwhm, r->master_x, r->master_y);
    printf("\"peak_gain\": %.6g, \"fwhm_ratio\": %.6g, \"seconds\": %.3f, \"per_frame\": [",
           r->master_peak / r->plain_peak, r->master_fwhm / r->plain_fwhm, seconds);
    for (size_t i = 0; i < r->nframes; i++) {
        const clred_cube_frame *f = &r->frames[i];
        printf("%s{\"frame\": %zu, \"dx\": %.6g, \"dy\": %.6g, \"peak\": %.6g, \"nsaturated\": %zu, "
               "\"background\": %.6g}",
               i ? ", " : "", i, f->dx, f->dy, f->peak, f->nsaturated, f->background);
    }
    printf("]}\n");
}

static void print_text(const cube_args *a, const clred_cube_result *r, double seconds)
{
    const clred_cube_flatness *fl = &r->flatness;
    printf("%s: %zu frames of %zu x %zu, dark %s\n", a->input, r->nframes, r->width, r->height,
           a->dark ? a->dark : "none");
    printf("saturation: ceiling %g (%s), counted from %g: %zu values in %zu pixels (%zu of them also bad)%s\n",
           r->ceiling, ceiling_source(r->ceiling_source), r->threshold, r->nsaturated, r->nsaturated_pixels,
           r->nsaturated_bad, r->nsaturated ? " -- flagged SATURATED in the masks" : "");
    printf("bad pixels: dark hot %zu cold %zu; temporal hot %zu cold %zu noisy %zu; %zu repaired per frame\n",
           r->nhot_dark, r->ncold_dark, r->nhot_temporal, r->ncold_temporal, r->nnoisy_temporal, r->nrepaired);
    printf("background: corners (%zu px) %.6g %.6g %.6g %.6g, noise %.4g: %.3g sigma; mesh %zu x %zu %.6g..%.6g: "
           "%.3g sigma -> %s\n",
           fl->corner, fl->corner_mean[0], fl->corner_mean[1], fl->corner_mean[2], fl->corner_mean[3], fl->noise,
           fl->corner_departure, fl->mesh_w, fl->mesh_h, fl->mesh_min, fl->mesh_max, fl->mesh_departure,
           fl->flat ? "flat" : "NOT flat");
    printf("tip-tilt rms (%s): x %.4g y %.4g total %.4g px\n", align_names[a->o.align], r->tiptilt_rms_x,
           r->tiptilt_rms_y, r->tiptilt_rms);
    if (a->compare) {
        printf("%-14s %14s %10s\n", "", "peak", "FWHM px");
        printf("%-14s %14.6g %10.4g\n", "plain sum", r->plain_peak, r->plain_fwhm);
        printf("%-14s %14.6g %10.4g\n", "shift-and-add", r->master_peak, r->master_fwhm);
        printf("gain: peak x%.4g, FWHM x%.4g\n", r->master_peak / r->plain_peak, r->master_fwhm / r->plain_fwhm);
    } else {
        printf("shift-and-add: peak %.6g FWHM %.4g px (plain: peak %.6g FWHM %.4g px)\n", r->master_peak,
               r->master_fwhm, r->plain_peak, r->plain_fwhm);
    }
    printf("%.2f s\n", seconds);
}

static clred_status write_outputs(const cube_args *a, clred_cube_result *r)
{
    clred_status s = CLRED_OK;
    if (a->output)
        s = clred_image_write(a->output, &r->master, a->overwrite);
    if (s == CLRED_OK && a->plain)
        s = clred_image_write(a->plain, &r->plain, a->overwrite);
    if (s == CLRED_OK && a->table)
        s = clred_cube_table_write(a->table, r, a->overwrite);
    return s;
}

int cmd_cube(int argc, char **argv)
{
    cube_args a;
    memset(&a, 0, sizeof a);
    a.o = clred_cube_defaults();
    int rc = parse(argc, argv, &a);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    if ((rc = check_outputs(&a)) != EXIT_OK)
        return rc;
    clred_ctx *ctx = NULL;
    if ((rc = cli_open(CMD, a.device, &ctx)) != EXIT_OK)
        return rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cli_progress("cube: %s", a.input);
    clred_cube_result r;
    clred_status s = clred_cube_reduce_files(ctx, a.input, a.dark, &a.o, &r);
    clred_ctx_destroy(ctx);
    cli_progress_done();
    if (s != CLRED_OK)
        return cli_fail(CMD, s);
    s = write_outputs(&a, &r);
    if (s != CLRED_OK) {
        /* no partial output: what was written before the failure goes */
        const char *outs[3] = {a.output, a.plain, a.table};
        for (int i = 0; i < 3; i++)
            if (outs[i] && !a.overwrite)
                remove(outs[i]);
        clred_cube_result_free(&r);
        return cli_fail(CMD, s);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (a.json)
        print_json(&a, &r, seconds);
    else
        print_text(&a, &r, seconds);
    clred_cube_result_free(&r);
    return EXIT_OK;
}
