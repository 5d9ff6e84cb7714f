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
           "       clred background IMAGE --constant [--corner N] [-o BKG] [--subtract OUT]\n\n"
           "Mesh background like SExtractor/SEP: per box a 3-sigma clipped mode, a median filter\n"
           "over the mesh and a bicubic spline to full resolution; the same for the RMS.\n"
           "With --constant, reports the 3-sigma clipped means of the four N x N corners and how far the\n"
           "field departs from flat (largest corner difference in units of the pixel noise),\n"
           "with a verdict; -o then writes the constant level.\n\n"
           "options:\n"
           "  -o, --output FILE     background map\n"
           "  --rms FILE            RMS map\n"
           "  --subtract FILE       the image minus the background (VAR and MASK kept)\n"
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
           "  clred background ID_110_dark.fits --constant --corner 50 --json\n");
}

typedef struct {
    const char *input, *output, *rms, *subtract, *device;
    int json, overwrite, constant, corner;
    double flat_limit;
    clred_bkg_opts o;
} bkg_args;

enum { OPT_RMS = 256, OPT_SUB, OPT_BOX, OPT_FILTER, OPT_MASKSRC, OPT_CONST, OPT_CORNER, OPT_FLAT, OPT_DEVICE,
       OPT_JSON, OPT_OVERWRITE };

static int parse(int argc, char **argv, bkg_args *a)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},   {"rms", required_argument, 0, OPT_RMS},
        {"subtract", required_argument, 0, OPT_SUB}, {"box", required_argument, 0, OPT_BOX},
        {"filter", required_argument, 0, OPT_FILTER}, {"mask-sources", no_argument, 0, OPT_MASKSRC},
        {"constant", no_argument, 0, OPT_CONST}, {"corner", required_argument, 0, OPT_CORNER},
        {"flat-limit", required_argument, 0, OPT_FLAT}, {"device", required_argument, 0, OPT_DEVICE},
        {"json", no_argument, 0, OPT_JSON},      {"overwrite", no_argument, 0, OPT_OVERWRITE},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    int c, box;
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
        case 'h': help(); return -1;
        default: return cli_usage_error("background", "unknown option");
        }
        if (!ok)
            return EXIT_USAGE;
    }
    if (optind >= argc)
        return cli_usage_error("background", "no input image given");
    if (optind + 1 < argc)
        return cli_usage_error("background", "one input image expected, got '%s' too", argv[optind + 1]);
    a->input = argv[optind];
    if (!a->output && !a->constant && !a->rms && !a->subtract)
        return cli_usage_error("background", "no output given (-o FILE, --rms FILE or --subtract FILE)");
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

static int run_mesh(const bkg_args *a, clred_image *img)
{
    clred_ctx *ctx = NULL;
    int rc = cli_open("background", a->device, &ctx);
    if (rc != EXIT_OK)
        return rc;
    clred_image bkg, rms;
    clred_bkg_info info;
    cli_progress("background: %zu x %zu in %d x %d boxes", img->width, img->height, a->o.box_w, a->o.box_h);
    clred_status s = clred_background(ctx, img, &a->o, &bkg, &rms, &info);
    clred_ctx_destroy(ctx);
    cli_progress_done();
    if (s != CLRED_OK)
        return cli_fail("background", s);
    char hist[240];
    snprintf(hist, sizeof hist,
             "clred background: box %dx%d filter %dx%d clip %g mask_sources %d; global %.6g rms %.6g",
             a->o.box_w, a->o.box_h, a->o.filter_w, a->o.filter_h, a->o.clip_sigma, a->o.mask_sources,
             info.global_back, info.global_rms);
    if (a->output)
        s = write_map(a->output, img, bkg.sci, hist, a->overwrite);
    if (s == CLRED_OK && a->rms)
        s = write_map(a->rms, img, rms.sci, hist, a->overwrite);
    if (s == CLRED_OK && a->subtract) {
        for (size_t i = 0; i < img->width * img->height; i++)
            img->sci[i] -= bkg.sci[i];
        if (!img->header && !(img->header = clred_header_new()))
            s = CLRED_ERR_MEMORY;
        if (s == CLRED_OK)
            s = clred_header_add_history(img->header, hist);
        if (s == CLRED_OK)
            s = clred_image_write(a->subtract, img, a->overwrite);
    }
    clred_image_free(&bkg);
    clred_image_free(&rms);
    if (s != CLRED_OK)
        return cli_fail("background", s);
    if (a->json) {
        printf("{\"input\": ");
        cli_json_string(stdout, a->input);
        printf(", \"mode\": \"mesh\", \"width\": %zu, \"height\": %zu, \"box\": [%d, %d], \"filter\": [%d, %d], "
               "\"mesh\": [%zu, %zu], \"filled_boxes\": %zu, \"source_pixels_masked\": %zu, \"global_back\": %.9g, "
               "\"global_rms\": %.9g}\n",
               img->width, img->height, a->o.box_w, a->o.box_h, a->o.filter_w, a->o.filter_h, info.mesh_w,
               info.mesh_h, info.nfilled, info.nmasked_sources, info.global_back, info.global_rms);
    } else {
        fprintf(stderr, "clred background: %zu x %zu mesh, global background %.6g, rms %.6g\n", info.mesh_w,
                info.mesh_h, info.global_back, info.global_rms);
    }
    return EXIT_OK;
}

int cmd_background(int argc, char **argv)
{
    bkg_args a;
    memset(&a, 0, sizeof a);
    a.o = clred_bkg_defaults();
    a.corner = 50;
    a.flat_limit = 1.0;
    int rc = parse(argc, argv, &a);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    const char *outs[3] = {a.output, a.rms, a.subtract};
    for (int i = 0; i < 3; i++) {
        if (!outs[i])
            continue;
        clred_status s = clred_output_check(outs[i], &a.input, 1, a.overwrite);
        if (s != CLRED_OK)
            return cli_fail("background", s);
        for (int j = 0; j < i; j++)
            if (outs[j] && strcmp(outs[i], outs[j]) == 0)
                return cli_usage_error("background", "%s is given for two outputs", outs[i]);
    }
    clred_image img;
    clred_status s = clred_image_read_2d(a.input, &img);
    if (s != CLRED_OK)
        return cli_fail("background", s);
    rc = a.constant ? run_constant(&a, &img) : run_mesh(&a, &img);
    clred_image_free(&img);
    return rc;
}
