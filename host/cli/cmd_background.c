/* clred background: mesh background and RMS maps, background subtraction,
 * and a corner check of whether a constant background will do. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred background IMAGE -o BKG [options]\n"
           "       clred background IMAGE --constant [--corner N] [-o BKG] [--subtract OUT]\n"
           "       clred background SUBTRACTED --restore MODEL -o OUT\n"
           "       clred background --pixel-stats BKG... [--mean FILE] [--std FILE]\n\n"
           "Mesh background like SExtractor/SEP: per box a 3-sigma clipped mode, a median filter\n"
           "over the mesh and a bicubic spline to full resolution; the same for the RMS.\n"
           "With --constant, reports the 3-sigma clipped means of the four N x N corners and how far the\n"
           "field departs from flat (largest corner difference in units of the pixel noise),\n"
           "with a verdict; -o then writes the constant level.\n\n"
           "options:\n"
           "  -o, --output FILE     background map\n"
           "  --rms FILE            RMS map\n"
           "  --subtract FILE       the image minus the background (VAR and MASK kept)\n"
           "  --model FILE          the background model product (mesh, rms mesh, settings; see --model-map)\n"
           "  --model-map           also put the full-resolution map in the model product (BKGMAP)\n"
           "  --restore MODEL       add MODEL back to IMAGE (a background-subtracted frame): -o gets the original\n"
           "  --bins N              histogram bins of the map statistics (50)\n"
           "  --hist-png FILE       the histogram of the background map as a PNG\n"
           "  --png FILE            quick-look PNG of the background map\n"
           "  --stretch S           zscale (default) or asinh for --png\n"
           "  --pixel-stats         per-pixel mean and std of many backgrounds (maps or model products)\n"
           "  --mean FILE, --std FILE  the --pixel-stats images\n"
           "  --box N               box size in pixels (64)\n"
           "  --filter N            median filter over the mesh, odd, in boxes (3)\n"
           "  --mask-sources        second pass with pixels above bkg + 3 rms (grown 2 px) masked\n"
           "  --constant            corner check instead of the mesh\n"
           "  --corner N            corner region size for --constant (50)\n"
           "  --flat-limit X        verdict 'flat' below X noise units (default 1)\n"
           "  --device N|NAME       OpenCL device\n"
           "  --json                summary on stdout\n"
           "  --overwrite           replace existing outputs\n\n"
           "examples:\n"
           "  clred background sci.fits -o bkg.fits --rms rms.fits --subtract sub.fits --box 64\n"
           "  clred background ID_110_dark.fits --constant --corner 50 --json\n"
           "  clred background sci.fits --subtract sub.fits --model sub_bkg.fits --hist-png hist.png --json\n"
           "  clred background sub.fits --restore sub_bkg.fits -o sci_again.fits\n"
           "  clred background --pixel-stats v*_bkg.fits --mean mean.fits --std std.fits\n");
}

typedef struct {
    const char *input, *output, *rms, *subtract, *device;
    const char *model, *restore, *hist_png, *png, *mean, *std;
    const char *const *inputs;
    size_t ninputs;
    int json, overwrite, constant, corner, model_map, bins, pixel_stats;
    clred_stretch stretch;
    double flat_limit;
    clred_bkg_opts o;
} bkg_args;

enum { OPT_RMS = 256, OPT_SUB, OPT_BOX, OPT_FILTER, OPT_MASKSRC, OPT_CONST, OPT_CORNER, OPT_FLAT, OPT_DEVICE,
       OPT_JSON, OPT_OVERWRITE, OPT_MODEL, OPT_MODEL_MAP, OPT_RESTORE, OPT_BINS, OPT_HIST_PNG, OPT_PNG, OPT_STRETCH,
       OPT_PIXEL_STATS, OPT_MEAN, OPT_STD };

static int parse(int argc, char **argv, bkg_args *a)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},   {"rms", required_argument, 0, OPT_RMS},
        {"subtract", required_argument, 0, OPT_SUB}, {"box", required_argument, 0, OPT_BOX},
        {"filter", required_argument, 0, OPT_FILTER}, {"mask-sources", no_argument, 0, OPT_MASKSRC},
        {"constant", no_argument, 0, OPT_CONST}, {"corner", required_argument, 0, OPT_CORNER},
        {"flat-limit", required_argument, 0, OPT_FLAT}, {"device", required_argument, 0, OPT_DEVICE},
        {"json", no_argument, 0, OPT_JSON},      {"overwrite", no_argument, 0, OPT_OVERWRITE},
        {"model", required_argument, 0, OPT_MODEL}, {"model-map", no_argument, 0, OPT_MODEL_MAP},
        {"restore", required_argument, 0, OPT_RESTORE}, {"bins", required_argument, 0, OPT_BINS},
        {"hist-png", required_argument, 0, OPT_HIST_PNG}, {"png", required_argument, 0, OPT_PNG},
        {"stretch", required_argument, 0, OPT_STRETCH}, {"pixel-stats", no_argument, 0, OPT_PIXEL_STATS},
        {"mean", required_argument, 0, OPT_MEAN}, {"std", required_argument, 0, OPT_STD},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    static const char *const stretches[] = {"zscale", "asinh"};
    int c, box, choice;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case 'o': a->output = optarg; break;
        case OPT_RMS: a->rms = optarg; break;
        case OPT_SUB: a->subtract = optarg; break;
        case OPT_BOX:
            ok = cli_parse_int("background", "--box", optarg, &box);
            a->o.box_w = a->o.box_h = box;
            break;
        case OPT_FILTER:
            ok = cli_parse_int("background", "--filter", optarg, &box);
            a->o.filter_w = a->o.filter_h = box;
            break;
        case OPT_MASKSRC: a->o.mask_sources = 1; break;
        case OPT_CONST: a->constant = 1; break;
        case OPT_CORNER: ok = cli_parse_int("background", "--corner", optarg, &a->corner); break;
        case OPT_FLAT: ok = cli_parse_double("background", "--flat-limit", optarg, &a->flat_limit); break;
        case OPT_DEVICE: a->device = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_OVERWRITE: a->overwrite = 1; break;
        case OPT_MODEL: a->model = optarg; break;
        case OPT_MODEL_MAP: a->model_map = 1; break;
        case OPT_RESTORE: a->restore = optarg; break;
        case OPT_BINS: ok = cli_parse_int("background", "--bins", optarg, &a->bins); break;
        case OPT_HIST_PNG: a->hist_png = optarg; break;
        case OPT_PNG: a->png = optarg; break;
        case OPT_STRETCH:
            ok = cli_parse_choice("background", "--stretch", optarg, stretches, 2, &choice);
            a->stretch = (clred_stretch)choice;
            break;
        case OPT_PIXEL_STATS: a->pixel_stats = 1; break;
        case OPT_MEAN: a->mean = optarg; break;
        case OPT_STD: a->std = optarg; break;
        case 'h': help(); return -1;
        default: return cli_usage_error("background", "unknown option");
        }
        if (!ok)
            return EXIT_USAGE;
    }
    if (optind >= argc)
        return cli_usage_error("background", "no input image given");
    a->inputs = (const char *const *)argv + optind;
    a->ninputs = (size_t)(argc - optind);
    a->input = argv[optind];
    if (a->bins < 1 || a->bins > 1 << 20)
        return cli_usage_error("background", "--bins must be within 1..1048576 (got %d)", a->bins);
    if (a->pixel_stats) {
        if (!a->mean && !a->std)
            return cli_usage_error("background", "--pixel-stats needs --mean FILE or --std FILE");
        if (a->output || a->rms || a->subtract || a->model || a->restore || a->constant || a->png || a->hist_png)
            return cli_usage_error("background", "--pixel-stats takes only --mean and --std outputs");
        return EXIT_OK;
    }
    if ((a->mean || a->std))
        return cli_usage_error("background", "--mean and --std belong to --pixel-stats");
    if (optind + 1 < argc)
        return cli_usage_error("background", "one input image expected, got '%s' too", argv[optind + 1]);
    if (a->restore) {
        if (!a->output)
            return cli_usage_error("background", "--restore needs -o FILE for the restored frame");
        if (a->rms || a->subtract || a->model || a->constant || a->png || a->hist_png)
            return cli_usage_error("background", "--restore takes only -o");
        return EXIT_OK;
    }
    if (!a->output && !a->constant && !a->rms && !a->subtract && !a->model && !a->png && !a->hist_png && !a->json)
        return cli_usage_error("background", "no output given (-o FILE, --rms FILE, --subtract FILE, --model FILE, "
                                             "--png FILE, --hist-png FILE or --json)");
    if (a->constant && (a->model || a->png || a->hist_png))
        return cli_usage_error("background", "--model, --png and --hist-png need the mesh background, not --constant");
    if (a->model_map && !a->model)
        return cli_usage_error("background", "--model-map needs --model FILE");
    if (a->constant && a->rms)
        return cli_usage_error("background", "--rms needs the mesh background, not --constant");
    if (a->corner < 1)
        return cli_usage_error("background", "--corner must be positive (got %d)", a->corner);
    if (!(a->flat_limit > 0))
        return cli_usage_error("background", "--flat-limit must be positive (got %g)", a->flat_limit);
    return EXIT_OK;
}

typedef struct {
    const char *name;
    double mean, std;
    size_t npix;
} corner_stat;

/* 3-sigma clipped mean and std of the usable pixels of one corner region
 * (iterated until nothing changes), so a hot pixel or a star in a corner does
 * not decide the verdict. */
static corner_stat corner_region(const clred_image *img, const char *name, size_t x0, size_t y0, size_t n)
{
    corner_stat c = {name, NAN, NAN, 0};
    double lo = -INFINITY, hi = INFINITY;
    for (int it = 0; it < 20; it++) {
        double sum = 0, sum2 = 0;
        size_t count = 0;
        for (size_t y = y0; y < y0 + n && y < img->height; y++)
            for (size_t x = x0; x < x0 + n && x < img->width; x++) {
                size_t i = y * img->width + x;
                double v = img->sci[i];
                if (!isfinite(v) || (img->mask && (img->mask[i] & CLRED_MASK_UNUSABLE)) || v < lo || v > hi)
                    continue;
                sum += v;
                sum2 += v * v;
                count++;
            }
        if (count < 2 || count == c.npix)
            break;
        c.npix = count;
        c.mean = sum / (double)count;
        double var = (sum2 - sum * c.mean) / (double)(count - 1);
        c.std = var > 0 ? sqrt(var) : 0.0;
        lo = c.mean - 3 * c.std;
        hi = c.mean + 3 * c.std;
    }
    return c;
}

/* Writes one float plane with the input's header and a HISTORY card. */
static clred_status write_map(const char *path, const clred_image *like, const float *data, const char *history,
                              int overwrite)
{
    clred_image out;
    memset(&out, 0, sizeof out);
    out.width = like->width;
    out.height = like->height;
    out.sci = (float *)data;
    out.header = like->header ? clred_header_copy(like->header) : clred_header_new();
    if (!out.header)
        return CLRED_ERR_MEMORY;
    clred_status s = clred_header_add_history(out.header, history);
    if (s == CLRED_OK)
        s = clred_image_write(path, &out, overwrite);
    clred_header_free(out.header);
    return s;
}

static int run_constant(const bkg_args *a, clred_image *img)
{
    size_t n = (size_t)a->corner;
    if (n > img->width || n > img->height) {
        fprintf(stderr, "clred background: %zu x %zu corners do not fit the %zu x %zu image\n", n, n, img->width,
                img->height);
        return EXIT_USAGE;
    }
    corner_stat c[4] = {corner_region(img, "bottom-left", 0, 0, n),
                        corner_region(img, "bottom-right", img->width - n, 0, n),
                        corner_region(img, "top-left", 0, img->height - n, n),
                        corner_region(img, "top-right", img->width - n, img->height - n, n)};
    double lo = INFINITY, hi = -INFINITY, level = 0, stds[4];
    int ngood = 0;
    for (int i = 0; i < 4; i++) {
        if (c[i].npix < 2)
            continue;
        lo = fmin(lo, c[i].mean);
        hi = fmax(hi, c[i].mean);
        level += c[i].mean;
        stds[ngood++] = c[i].std;
    }
    if (ngood < 2) {
        fprintf(stderr, "clred background: fewer than two corners have usable pixels\n");
        return EXIT_BAD_INPUT;
    }
    level /= ngood;
    /* the pixel noise: the median of the corners' standard deviations, so one
     * corner with a star does not set it */
    for (int i = 1; i < ngood; i++)
        for (int j = i; j > 0 && stds[j - 1] > stds[j]; j--) {
            double t = stds[j];
            stds[j] = stds[j - 1];
            stds[j - 1] = t;
        }
    double noise = (ngood & 1) ? stds[ngood / 2] : 0.5 * (stds[ngood / 2 - 1] + stds[ngood / 2]);
    double departure = noise > 0 ? (hi - lo) / noise : (hi > lo ? INFINITY : 0.0);
    int flat = departure < a->flat_limit;
    const char *verdict = flat ? "flat: a constant background is adequate"
                               : "not flat: the corners differ by more than the noise allows; use the mesh background";

    clred_status s = CLRED_OK;
    char hist[200];
    snprintf(hist, sizeof hist, "clred background --constant: level %.6g from %zu px corners, departure %.3g sigma",
             level, n, departure);
    if (a->output || a->subtract) {
        size_t np = img->width * img->height;
        float *map = malloc(np * sizeof *map);
        if (!map)
            return cli_fail("background", CLRED_ERR_MEMORY);
        for (size_t i = 0; i < np; i++)
            map[i] = (float)level;
        if (a->output)
            s = write_map(a->output, img, map, hist, a->overwrite);
        if (s == CLRED_OK && a->subtract) {
            for (size_t i = 0; i < np; i++)
                img->sci[i] -= map[i];
            if (!img->header && !(img->header = clred_header_new()))
                s = CLRED_ERR_MEMORY;
            if (s == CLRED_OK)
                s = clred_header_add_history(img->header, hist);
            if (s == CLRED_OK)
                s = clred_image_write(a->subtract, img, a->overwrite);
        }
        free(map);
        if (s != CLRED_OK)
            return cli_fail("background", s);
    }
    if (a->json) {
        printf("{\"input\": ");
        cli_json_string(stdout, a->input);
        printf(", \"mode\": \"constant\", \"corner\": %zu, \"corners\": [", n);
        for (int i = 0; i < 4; i++)
            printf("%s{\"name\": \"%s\", \"mean\": %.9g, \"std\": %.9g, \"npix\": %zu}", i ? ", " : "", c[i].name,
                   c[i].mean, c[i].std, c[i].npix);
        printf("], \"level\": %.9g, \"noise\": %.9g, \"max_difference\": %.9g, \"departure_sigma\": %.6g, "
               "\"flat\": %s, \"verdict\": ",
               level, noise, hi - lo, departure, flat ? "true" : "false");
        cli_json_string(stdout, verdict);
        printf("}\n");
    } else {
        for (int i = 0; i < 4; i++)
            printf("%-12s mean %12.6g  std %10.4g  (%zu px)\n", c[i].name, c[i].mean, c[i].std, c[i].npix);
        printf("level %.6g, noise %.4g, largest corner difference %.4g = %.3g sigma\n%s\n", level, noise, hi - lo,
               departure, verdict);
    }
    return EXIT_OK;
}

static void print_stats_json(const clred_map_stats *st)
{
    printf("\"stats\": {\"min\": %.9g, \"max\": %.9g, \"mean\": %.9g, \"median\": %.9g, \"std\": %.9g, "
           "\"npix\": %zu, \"nan_count\": %zu, \"histogram\": {\"lo\": %.9g, \"hi\": %.9g, \"counts\": [",
           st->min, st->max, st->mean, st->median, st->std, st->npix, st->nnan, st->min, st->max);
    for (size_t b = 0; b < st->nbins; b++)
        printf("%s%zu", b ? ", " : "", st->counts[b]);
    printf("]}}");
}

/* The products of the mesh background: maps, subtracted frame, model, PNGs. */
static clred_status write_mesh_products(const bkg_args *a, clred_image *img, const clred_bkg_model *m,
                                        const float *bkg, const float *rms, const clred_map_stats *st,
                                        const char *hist)
{
    clred_status s = CLRED_OK;
    if (a->output)
        s = write_map(a->output, img, bkg, hist, a->overwrite);
    if (s == CLRED_OK && a->rms)
        s = write_map(a->rms, img, rms, hist, a->overwrite);
    if (s == CLRED_OK && a->model)
        s = clred_bkg_model_write(a->model, m, a->model_map ? bkg : NULL, NULL, a->overwrite);
    if (s == CLRED_OK && a->png)
        s = clred_png_write(a->png, bkg, img->width, img->height, a->stretch, a->overwrite);
    if (s == CLRED_OK && a->hist_png)
        s = clred_histogram_png(a->hist_png, st, 0, 0, a->overwrite);
    if (s == CLRED_OK && a->subtract) {
        for (size_t i = 0; i < img->width * img->height; i++)
            img->sci[i] -= bkg[i];
        if (!img->header && !(img->header = clred_header_new()))
            s = CLRED_ERR_MEMORY;
        if (s == CLRED_OK)
            s = clred_header_add_history(img->header, hist);
        if (s == CLRED_OK && a->model) {
            char line[200];
            snprintf(line, sizeof line, "background model (add it back to restore): %s", a->model);
            s = clred_header_add_history(img->header, line);
        }
        if (s == CLRED_OK)
            s = clred_image_write(a->subtract, img, a->overwrite);
    }
    return s;
}

static int run_mesh(const bkg_args *a, clred_image *img)
{
    clred_ctx *ctx = NULL;
    int rc = cli_open("background", a->device, &ctx);
    if (rc != EXIT_OK)
        return rc;
    size_t n = img->width * img->height;
    float *bkg = malloc(n * sizeof *bkg), *rms = malloc(n * sizeof *rms);
    clred_bkg_model m;
    clred_bkg_info info;
    clred_map_stats st;
    memset(&m, 0, sizeof m);
    memset(&st, 0, sizeof st);
    cli_progress("background: %zu x %zu in %d x %d boxes", img->width, img->height, a->o.box_w, a->o.box_h);
    clred_status s = bkg && rms ? CLRED_OK : CLRED_ERR_MEMORY;
    if (s == CLRED_OK)
        s = clred_background_model(ctx, img, &a->o, &m, &info);
    if (s == CLRED_OK)
        s = clred_bkg_model_eval(ctx, &m, 0, img->height, bkg, rms);
    if (s == CLRED_OK)
        s = clred_map_stats_compute(ctx, bkg, img->width, img->height, (size_t)a->bins, &st);
    clred_ctx_destroy(ctx);
    cli_progress_done();
    char hist[240];
    snprintf(hist, sizeof hist,
             "clred background: box %dx%d filter %dx%d clip %g mask_sources %d; global %.6g rms %.6g",
             a->o.box_w, a->o.box_h, a->o.filter_w, a->o.filter_h, a->o.clip_sigma, a->o.mask_sources,
             info.global_back, info.global_rms);
    if (s == CLRED_OK)
        s = write_mesh_products(a, img, &m, bkg, rms, &st, hist);
    free(bkg);
    free(rms);
    clred_bkg_model_free(&m);
    if (s != CLRED_OK) {
        clred_map_stats_free(&st);
        return cli_fail("background", s);
    }
    if (a->json) {
        printf("{\"input\": ");
        cli_json_string(stdout, a->input);
        printf(", \"mode\": \"mesh\", \"width\": %zu, \"height\": %zu, \"box\": [%d, %d], \"filter\": [%d, %d], "
               "\"mesh\": [%zu, %zu], \"filled_boxes\": %zu, \"source_pixels_masked\": %zu, \"global_back\": %.9g, "
               "\"global_rms\": %.9g, ",
               img->width, img->height, a->o.box_w, a->o.box_h, a->o.filter_w, a->o.filter_h, info.mesh_w,
               info.mesh_h, info.nfilled, info.nmasked_sources, info.global_back, info.global_rms);
        print_stats_json(&st);
        printf("}\n");
    } else {
        fprintf(stderr, "clred background: %zu x %zu mesh, global background %.6g, rms %.6g\n", info.mesh_w,
                info.mesh_h, info.global_back, info.global_rms);
        fprintf(stderr, "map: min %.6g max %.6g mean %.6g median %.6g std %.4g, %zu NaN\n", st.min, st.max, st.mean,
                st.median, st.std, st.nnan);
    }
    clred_map_stats_free(&st);
    return EXIT_OK;
}

static int run_restore(const bkg_args *a, clred_image *img)
{
    clred_bkg_model m;
    clred_status s = clred_bkg_model_read(a->restore, &m);
    if (s != CLRED_OK)
        return cli_fail("background", s);
    clred_ctx *ctx = NULL;
    int rc = cli_open("background", a->device, &ctx);
    if (rc != EXIT_OK) {
        clred_bkg_model_free(&m);
        return rc;
    }
    s = clred_bkg_model_restore(ctx, &m, img);
    clred_ctx_destroy(ctx);
    clred_bkg_model_free(&m);
    char hist[200];
    snprintf(hist, sizeof hist, "clred background --restore: background model %s added back", a->restore);
    if (s == CLRED_OK && !img->header && !(img->header = clred_header_new()))
        s = CLRED_ERR_MEMORY;
    if (s == CLRED_OK)
        s = clred_header_add_history(img->header, hist);
    if (s == CLRED_OK)
        s = clred_image_write(a->output, img, a->overwrite);
    if (s != CLRED_OK)
        return cli_fail("background", s);
    if (a->json) {
        printf("{\"input\": ");
        cli_json_string(stdout, a->input);
        printf(", \"mode\": \"restore\", \"model\": ");
        cli_json_string(stdout, a->restore);
        printf(", \"output\": ");
        cli_json_string(stdout, a->output);
        printf("}\n");
    }
    return EXIT_OK;
}

static int run_pixel_stats(const bkg_args *a)
{
    clred_ctx *ctx = NULL;
    int rc = cli_open("background", a->device, &ctx);
    if (rc != EXIT_OK)
        return rc;
    clred_image *maps = calloc(a->ninputs, sizeof *maps);
    clred_status s = maps ? CLRED_OK : CLRED_ERR_MEMORY;
    for (size_t i = 0; i < a->ninputs && s == CLRED_OK; i++)
        s = clred_background_read(ctx, a->inputs[i], &maps[i]);
    clred_image mean, std;
    memset(&mean, 0, sizeof mean);
    memset(&std, 0, sizeof std);
    if (s == CLRED_OK)
        s = clred_image_alloc(&mean, maps[0].width, maps[0].height, 0, 0);
    if (s == CLRED_OK)
        s = clred_image_alloc(&std, maps[0].width, maps[0].height, 0, 0);
    if (s == CLRED_OK)
        s = clred_pixel_mean_std(ctx, maps, a->ninputs, mean.sci, std.sci);
    clred_ctx_destroy(ctx);
    char hist[120];
    snprintf(hist, sizeof hist, "clred background --pixel-stats: %zu backgrounds", a->ninputs);
    if (s == CLRED_OK && a->mean)
        s = write_map(a->mean, &maps[0], mean.sci, hist, a->overwrite);
    if (s == CLRED_OK && a->std)
        s = write_map(a->std, &maps[0], std.sci, hist, a->overwrite);
    for (size_t i = 0; maps && i < a->ninputs; i++)
        clred_image_free(&maps[i]);
    free(maps);
    clred_image_free(&mean);
    clred_image_free(&std);
    if (s != CLRED_OK)
        return cli_fail("background", s);
    if (a->json)
        printf("{\"mode\": \"pixel-stats\", \"inputs\": %zu}\n", a->ninputs);
    return EXIT_OK;
}

int cmd_background(int argc, char **argv)
{
    bkg_args a;
    memset(&a, 0, sizeof a);
    a.o = clred_bkg_defaults();
    a.corner = 50;
    a.flat_limit = 1.0;
    a.bins = 50;
    int rc = parse(argc, argv, &a);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    const char *outs[] = {a.output, a.rms, a.subtract, a.model, a.png, a.hist_png, a.mean, a.std};
    const size_t nouts = sizeof outs / sizeof *outs;
    for (size_t i = 0; i < nouts; i++) {
        if (!outs[i])
            continue;
        clred_status s = clred_output_check(outs[i], a.inputs, a.ninputs, a.overwrite);
        if (s == CLRED_OK && a.restore)
            s = clred_output_check(outs[i], &a.restore, 1, a.overwrite);
        if (s != CLRED_OK)
            return cli_fail("background", s);
        for (size_t j = 0; j < i; j++)
            if (outs[j] && strcmp(outs[i], outs[j]) == 0)
                return cli_usage_error("background", "%s is given for two outputs", outs[i]);
    }
    if (a.pixel_stats)
        return run_pixel_stats(&a);
    clred_image img;
    clred_status s = clred_image_read_2d(a.input, &img);
    if (s != CLRED_OK)
        return cli_fail("background", s);
    rc = a.restore ? run_restore(&a, &img) : a.constant ? run_constant(&a, &img) : run_mesh(&a, &img);
    clred_image_free(&img);
    return rc;
}
