/* clred combine: stack frames (files or cubes) with rejection, on the device. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred combine [options] inputs... -o out.fits\n\n"
           "Combines frames (2-D images, or every frame of a cube) pixel by pixel on the\n"
           "device, reading them in bands of rows so the stack need not fit in memory.\n\n"
           "  --method M        mean (default), median, sum, min, max\n"
           "                    sum = mean of the kept values x number of frames\n"
           "  --reject R        none (default), sigclip, minmax, winsorized, percentile\n"
           "  --sigma S         clipping threshold, both sides (default 3)\n"
           "  --sigma-low S, --sigma-high S   separate thresholds\n"
           "  --iters N         clipping rounds at most (default 10; 0 = until nothing changes)\n"
           "  --centre C        clipping centre: median (default) or mean\n"
           "  --spread S        clipping spread: std (default) or mad (1.4826 x MAD)\n"
           "  --nlow N, --nhigh N        minmax: drop N lowest / highest (default 1, 1)\n"
           "  --pct-low P, --pct-high P  percentile: keep between (default 10, 90)\n"
           "  --scale S         none (default), mult or add: to the first frame's median;\n"
           "                    stars: by the fluxes of the stars the frames share with\n"
           "                    the first (transparency, unbiased by the sky level;\n"
           "                    frames must be aligned or use --align)\n"
           "  --weights w1,w2,...        one positive weight per frame (mean and sum)\n"
           "  --rejected-map    also write an NREJECT extension\n"
           "\nalignment (frames are then held in memory):\n"
           "  --align           find each frame's transform onto the reference and\n"
           "                    resample it there before combining\n"
           "  --align-by M      phasecorr (default): shifts by phase correlation;\n"
           "                    stars: similarity or affine transforms from matched stars\n"
           "                    (frames that also rotate or change scale)\n"
           "  --model M         stars: similarity (default) or affine\n"
           "  --ref N|median    reference: frame N, counted from 0 over all inputs\n"
           "                    (default 0), or the median of the stack (phasecorr only)\n"
           "  --grid G          reference (default): the reference's pixels;\n"
           "                    union: every frame's footprint (NCONTRIB shows coverage)\n"
           "  --interp NAME     nearest, bilinear, bicubic, lanczos3 (default) or fourier\n"
           "  --precision P     sub-pixel step of the shift measurement (default 0.01 px)\n"
           "\nbackgrounds (frames are then held in memory):\n"
           "  --match-background  match every frame's background to a reference before combining\n"
           "                    (after resampling with --align): the difference, measured on a\n"
           "                    coarse mesh, fitted and added\n"
           "  --match-order N   polynomial order 0..3 of the fit (default 1); -1 = the mesh itself\n"
           "  --match-box N     mesh box in pixels (default 64)\n"
           "  --match-ref N     reference frame (default: the one whose background is the median)\n"
           "  --final-background F  estimate the stack's own background (larger boxes, sources\n"
           "                    masked, negative allowed), subtract it and write it to F as a\n"
           "                    model product (clred background --restore F adds it back)\n"
           "  --final-box N     box of the final background (default 256)\n"
           "\n"
           "  -o, --output F    output MEF: SCI, VAR, MASK, NCONTRIB [, NREJECT]\n"
           "  --overwrite       replace an existing output\n"
           "  --device D        OpenCL device index or name\n"
           "  --json            print a JSON summary on stdout\n\n"
           "example:\n"
           "  clred combine --method median --reject sigclip --sigma 3 flat_*.fits -o master.fits\n"
           "  clred combine --align --grid union --reject sigclip cal_*.fits -o stack.fits\n"
           "  clred combine --match-background --final-background stack_bkg.fits sub_*.fits -o stack.fits\n");
}

/* "1,2.5,3" -> weights; the count is checked against the frames later. */
static int parse_weights(const char *text, double **weights, size_t *count)
{
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    double *w = malloc(n * sizeof *w);
    if (!w)
        return 0;
    const char *p = text;
    for (size_t i = 0; i < n; i++) {
        char *end;
        w[i] = strtod(p, &end);
        if (end == p || (*end != ',' && *end != '\0')) {
            free(w);
            return 0;
        }
        p = end + 1;
    }
    *weights = w;
    *count = n;
    return 1;
}

static size_t total_frames(const char *const *paths, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        clred_file_info info;
        if (clred_file_info_read(paths[i], &info) == CLRED_OK)
            total += info.nframes;
    }
    return total;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mean_of(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : 0.0;
}

enum {
    OPT_METHOD = 256, OPT_REJECT, OPT_SIGMA, OPT_SIGMA_LOW, OPT_SIGMA_HIGH, OPT_ITERS, OPT_CENTRE, OPT_SPREAD,
    OPT_NLOW, OPT_NHIGH, OPT_PCT_LOW, OPT_PCT_HIGH, OPT_SCALE, OPT_WEIGHTS, OPT_REJMAP, OPT_DEVICE, OPT_JSON,
    OPT_OVERWRITE, OPT_ALIGN, OPT_ALIGN_BY, OPT_MODEL, OPT_REF, OPT_GRID, OPT_INTERP, OPT_PRECISION,
    OPT_MATCH_BKG, OPT_MATCH_ORDER, OPT_MATCH_BOX, OPT_MATCH_REF, OPT_FINAL_BKG, OPT_FINAL_BOX
};

/* What the background options did, for the JSON summary. */
typedef struct {
    const clred_bkgmatch_result *match; /* NULL without --match-background */
    const clred_bkg_model *final;        /* NULL without --final-background */
} bkg_summary;

static void print_bkg_json(const bkg_summary *b, size_t nframes)
{
    if (b->match && b->match->offset) {
        printf(", \"background_match\": {\"ref\": %ld, \"offsets\": [", b->match->ref_index);
        for (size_t i = 0; i < nframes; i++)
            printf("%s%.6g", i ? ", " : "", b->match->offset[i]);
        printf("], \"fit_rms\": [");
        for (size_t i = 0; i < nframes; i++)
            printf("%s%.6g", i ? ", " : "", b->match->fit_rms[i]);
        printf("]}");
    }
    if (b->final)
        printf(", \"final_background\": {\"global\": %.9g, \"global_rms\": %.9g, \"mesh\": [%zu, %zu]}",
               b->final->global_back, b->final->global_rms, b->final->mesh_w, b->final->mesh_h);
}

static void print_json(const char *output, const clred_combine_result *r, const char *method, const char *reject,
                       const char *scale, double elapsed, const clred_ctx *ctx, const clred_alignment *al,
                       const bkg_summary *bkg)
{
    double ncombine = 0;
    clred_header_get_double(r->image.header, "NCOMBINE", &ncombine);
    size_t npix = r->image.width * r->image.height, nodata = 0;
    for (size_t i = 0; i < npix; i++)
        nodata += (r->image.mask[i] & CLRED_MASK_NO_DATA) != 0;
    printf("{\"output\": ");
    cli_json_string(stdout, output);
    printf(", \"frames\": %.0f, \"width\": %zu, \"height\": %zu, \"method\": \"%s\", \"reject\": \"%s\", "
           "\"scale\": \"%s\", \"seconds\": %.4f, \"bands\": %zu, \"mean_ncontrib\": %.4f, "
           "\"no_data_pixels\": %zu, \"device\": ",
           ncombine, r->image.width, r->image.height, method, reject, scale, elapsed, r->bands,
           mean_of(r->ncontrib, npix), nodata);
    cli_json_string(stdout, clred_ctx_device(ctx)->name);
    if (r->scales) {
        printf(", \"scales\": [");
        for (size_t i = 0; i < (size_t)ncombine; i++)
            printf("%s%.6f", i ? ", " : "", r->scales[i]);
        printf("]");
    }
    if (r->scale_errors) {
        printf(", \"scale_errors\": [");
        for (size_t i = 0; i < (size_t)ncombine; i++)
            printf("%s%.6f", i ? ", " : "", r->scale_errors[i]);
        printf("], \"scale_stars\": [");
        for (size_t i = 0; i < (size_t)ncombine; i++)
            printf("%s%zu", i ? ", " : "", r->scale_stars[i]);
        printf("]");
    }
    if (al->shifts) {
        printf(", \"shifts\": [");
        for (size_t i = 0; i < al->n; i++)
            printf("%s{\"dx\": %.5f, \"dy\": %.5f, \"psr\": %.3f}", i ? ", " : "", al->shifts[i].dx,
                   al->shifts[i].dy, al->shifts[i].psr);
        printf("]");
    }
    if (al->matches) {
        printf(", \"matches\": [");
        for (size_t i = 0; i < al->n; i++)
            printf("%s{\"nmatched\": %zu, \"rms\": %.4f, \"scale\": %.6f, \"rotation_deg\": %.5f}", i ? ", " : "",
                   al->matches[i].nmatched, al->matches[i].rms, al->matches[i].scale, al->matches[i].rotation_deg);
        printf("]");
    }
    if (al->to_ref) {
        printf(", \"transforms\": [");
        for (size_t i = 0; i < al->n; i++) {
            const double *m = al->to_ref[i].m;
            printf("%s[%.6f, %.6f, %.5f, %.6f, %.6f, %.5f]", i ? ", " : "", m[0], m[1], m[2], m[3], m[4], m[5]);
        }
        printf("]");
    }
    print_bkg_json(bkg, (size_t)ncombine);
    printf("}\n");
}

int cmd_combine(int argc, char **argv)
{
    static const char *const methods[] = {"mean", "median", "sum", "min", "max"};
    static const char *const rejects[] = {"none", "sigclip", "minmax", "winsorized", "percentile"};
    static const char *const scales[] = {"none", "mult", "add", "stars"};
    static const char *const centres[] = {"median", "mean"};
    static const char *const spreads[] = {"std", "mad"};
    static const struct option longopts[] = {
        {"method", required_argument, 0, OPT_METHOD},       {"reject", required_argument, 0, OPT_REJECT},
        {"sigma", required_argument, 0, OPT_SIGMA},         {"sigma-low", required_argument, 0, OPT_SIGMA_LOW},
        {"sigma-high", required_argument, 0, OPT_SIGMA_HIGH}, {"iters", required_argument, 0, OPT_ITERS},
        {"centre", required_argument, 0, OPT_CENTRE},       {"spread", required_argument, 0, OPT_SPREAD},
        {"nlow", required_argument, 0, OPT_NLOW},           {"nhigh", required_argument, 0, OPT_NHIGH},
        {"pct-low", required_argument, 0, OPT_PCT_LOW},     {"pct-high", required_argument, 0, OPT_PCT_HIGH},
        {"scale", required_argument, 0, OPT_SCALE},         {"weights", required_argument, 0, OPT_WEIGHTS},
        {"rejected-map", no_argument, 0, OPT_REJMAP},       {"device", required_argument, 0, OPT_DEVICE},
        {"json", no_argument, 0, OPT_JSON},                 {"overwrite", no_argument, 0, OPT_OVERWRITE},
        {"align", no_argument, 0, OPT_ALIGN},               {"ref", required_argument, 0, OPT_REF},
        {"align-by", required_argument, 0, OPT_ALIGN_BY},   {"model", required_argument, 0, OPT_MODEL},
        {"grid", required_argument, 0, OPT_GRID},           {"interp", required_argument, 0, OPT_INTERP},
        {"precision", required_argument, 0, OPT_PRECISION},
        {"match-background", no_argument, 0, OPT_MATCH_BKG}, {"match-order", required_argument, 0, OPT_MATCH_ORDER},
        {"match-box", required_argument, 0, OPT_MATCH_BOX}, {"match-ref", required_argument, 0, OPT_MATCH_REF},
        {"final-background", required_argument, 0, OPT_FINAL_BKG},
        {"final-box", required_argument, 0, OPT_FINAL_BOX},
        {"output", required_argument, 0, 'o'},              {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *cmd = "combine";
    clred_combine_opts o = clred_combine_defaults();
    const char *output = NULL, *device = NULL;
    static const char *const grids[] = {"reference", "union"};
    static const char *const aligners[] = {"phasecorr", "stars"};
    static const char *const models[] = {"similarity", "affine"};
    int json = 0, overwrite = 0, align = 0, c, choice;
    const char *align_only = NULL; /* an alignment option, refused without --align */
    clred_stack_opts so = clred_stack_defaults();
    clred_bkgmatch_opts mo = clred_bkgmatch_defaults();
    clred_bkg_opts fo = clred_coadd_bkg_defaults();
    int match = 0, final_box_given = 0;
    const char *match_only = NULL, *final_bkg = NULL;
    int by_stars = 0;
    double *weights = NULL;
    size_t nweights = 0;
    double sigma;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case 'h': help(); free(weights); return EXIT_OK;
        case 'o': output = optarg; break;
        case OPT_METHOD:
            if ((ok = cli_parse_choice(cmd, "--method", optarg, methods, 5, &choice)))
                o.method = (clred_combine_method)choice;
            break;
        case OPT_REJECT:
            if ((ok = cli_parse_choice(cmd, "--reject", optarg, rejects, 5, &choice)))
                o.reject = (clred_reject_method)choice;
            break;
        case OPT_SCALE:
            if ((ok = cli_parse_choice(cmd, "--scale", optarg, scales, 4, &choice)))
                o.scale = (clred_scale_method)choice;
            break;
        case OPT_CENTRE: ok = cli_parse_choice(cmd, "--centre", optarg, centres, 2, &o.centre_mean); break;
        case OPT_SPREAD: ok = cli_parse_choice(cmd, "--spread", optarg, spreads, 2, &o.spread_mad); break;
        case OPT_SIGMA:
            if ((ok = cli_parse_double(cmd, "--sigma", optarg, &sigma)))
                o.sigma_lower = o.sigma_upper = sigma;
            break;
        case OPT_SIGMA_LOW: ok = cli_parse_double(cmd, "--sigma-low", optarg, &o.sigma_lower); break;
        case OPT_SIGMA_HIGH: ok = cli_parse_double(cmd, "--sigma-high", optarg, &o.sigma_upper); break;
        case OPT_ITERS: ok = cli_parse_int(cmd, "--iters", optarg, &o.max_iters); break;
        case OPT_NLOW: ok = cli_parse_int(cmd, "--nlow", optarg, &o.nlow); break;
        case OPT_NHIGH: ok = cli_parse_int(cmd, "--nhigh", optarg, &o.nhigh); break;
        case OPT_PCT_LOW: ok = cli_parse_double(cmd, "--pct-low", optarg, &o.pct_low); break;
        case OPT_PCT_HIGH: ok = cli_parse_double(cmd, "--pct-high", optarg, &o.pct_high); break;
        case OPT_WEIGHTS:
            free(weights);
            weights = NULL;
            if (!parse_weights(optarg, &weights, &nweights))
                ok = !cli_usage_error(cmd, "--weights expects numbers separated by commas, got '%s'", optarg);
            break;
        case OPT_REJMAP: o.want_rejected_map = 1; break;
        case OPT_ALIGN: align = 1; break;
        case OPT_ALIGN_BY:
            align_only = "--align-by";
            ok = cli_parse_choice(cmd, "--align-by", optarg, aligners, 2, &by_stars);
            break;
        case OPT_MODEL:
            align_only = "--model";
            if ((ok = cli_parse_choice(cmd, "--model", optarg, models, 2, &choice)))
                so.mopts.model = (clred_match_model)choice;
            break;
        case OPT_REF:
            align_only = "--ref";
            ok = cli_parse_ref(cmd, optarg, &so.ref_index);
            break;
        case OPT_GRID:
            align_only = "--grid";
            if ((ok = cli_parse_choice(cmd, "--grid", optarg, grids, 2, &choice)))
                so.grid = (clred_grid)choice;
            break;
        case OPT_INTERP:
            align_only = "--interp";
            ok = cli_parse_interp(cmd, optarg, &so.ropts.interp);
            break;
        case OPT_PRECISION:
            align_only = "--precision";
            ok = cli_parse_double(cmd, "--precision", optarg, &so.popts.precision);
            if (ok && !(so.popts.precision > 0))
                ok = !cli_usage_error(cmd, "--precision must be > 0 px, got %s", optarg);
            break;
        case OPT_MATCH_BKG: match = 1; break;
        case OPT_MATCH_ORDER:
            match_only = "--match-order";
            ok = cli_parse_int(cmd, "--match-order", optarg, &mo.order);
            break;
        case OPT_MATCH_BOX:
            match_only = "--match-box";
            ok = cli_parse_int(cmd, "--match-box", optarg, &mo.box);
            break;
        case OPT_MATCH_REF: {
            int ref = 0;
            match_only = "--match-ref";
            ok = cli_parse_int(cmd, "--match-ref", optarg, &ref);
            mo.ref_index = ref;
            break;
        }
        case OPT_FINAL_BKG: final_bkg = optarg; break;
        case OPT_FINAL_BOX: {
            int box = 0;
            ok = cli_parse_int(cmd, "--final-box", optarg, &box);
            fo.box_w = fo.box_h = box;
            final_box_given = 1;
            break;
        }
        case OPT_DEVICE: device = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_OVERWRITE: overwrite = 1; break;
        default:
            free(weights);
            return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (!ok) {
            free(weights);
            return EXIT_USAGE;
        }
    }
    const char *const *inputs = (const char *const *)argv + optind;
    size_t ninputs = (size_t)(argc - optind);
    if (!output) {
        free(weights);
        return cli_usage_error(cmd, "no output file given (-o FILE)");
    }
    if (ninputs == 0) {
        free(weights);
        return cli_usage_error(cmd, "no input files given");
    }
    if (align_only && !align) {
        free(weights);
        return cli_usage_error(cmd, "%s applies only with --align", align_only);
    }
    if (match_only && !match) {
        free(weights);
        return cli_usage_error(cmd, "%s applies only with --match-background", match_only);
    }
    if (final_box_given && !final_bkg) {
        free(weights);
        return cli_usage_error(cmd, "--final-box applies only with --final-background");
    }
    if (by_stars && so.ref_index < 0) {
        free(weights);
        return cli_usage_error(cmd, "--align-by stars needs a reference frame (--ref N), not the median");
    }
    if (by_stars && so.ropts.interp == CLRED_INTERP_FOURIER) {
        free(weights);
        return cli_usage_error(cmd, "--interp fourier shifts only; --align-by stars also rotates and scales");
    }
    clred_status s = clred_output_check(output, inputs, ninputs, overwrite);
    if (s == CLRED_OK && final_bkg)
        s = clred_output_check(final_bkg, inputs, ninputs, overwrite);
    if (s == CLRED_OK && final_bkg && strcmp(final_bkg, output) == 0) {
        free(weights);
        return cli_usage_error(cmd, "%s is given for both the stack and its final background", output);
    }
    if (s != CLRED_OK) {
        free(weights);
        return cli_fail(cmd, s);
    }
    int rc = cli_check_inputs(cmd, inputs, ninputs);
    if (rc != EXIT_OK) {
        free(weights);
        return rc;
    }
    if (weights) {
        size_t nframes = total_frames(inputs, ninputs);
        if (nframes != nweights) {
            free(weights);
            return cli_usage_error(cmd, "--weights gives %zu weights for %zu frames", nweights, nframes);
        }
        o.weights = weights;
    }
    clred_ctx *ctx;
    rc = cli_open(cmd, device, &ctx);
    if (rc != EXIT_OK) {
        free(weights);
        return rc;
    }
    cli_progress("combining %zu inputs...", ninputs);
    double t0 = now_seconds();
    clred_combine_result r;
    memset(&r, 0, sizeof r);
    clred_alignment al;
    memset(&al, 0, sizeof al);
    clred_bkgmatch_result mr;
    clred_bkg_model final;
    memset(&mr, 0, sizeof mr);
    memset(&final, 0, sizeof final);
    bkg_summary bsum = {NULL, NULL};
    if (align) {
        so.method = by_stars ? CLRED_REGISTER_STARS : CLRED_REGISTER_SHIFTS;
        so.copts = o;
        so.match_background = match;
        so.bkgmatch = mo;
        s = clred_stack_files(ctx, inputs, ninputs, &so, &r, &al);
    } else if (match) {
        cli_frame *frames = NULL;
        clred_image *images = NULL;
        size_t nframes = 0;
        rc = cli_list_frames(cmd, inputs, ninputs, &frames, &nframes);
        if (rc == EXIT_OK)
            rc = cli_read_frames(cmd, frames, nframes, &images);
        if (rc == EXIT_OK) {
            s = clred_match_backgrounds(ctx, images, nframes, &mo, &mr);
            bsum.match = &mr;
            if (s == CLRED_OK)
                s = clred_combine_images(ctx, images, nframes, &o, &r);
            cli_free_images(images, nframes);
        }
        free(frames);
    } else {
        s = clred_combine_files(ctx, inputs, ninputs, &o, &r);
    }
    float *final_map = NULL;
    if (rc == EXIT_OK && s == CLRED_OK && final_bkg) {
        s = clred_coadd_background(ctx, &r.image, &fo, &final, NULL);
        bsum.final = &final;
        final_map = s == CLRED_OK ? malloc(r.image.width * r.image.height * sizeof *final_map) : NULL;
        if (s == CLRED_OK && !final_map)
            s = CLRED_ERR_MEMORY;
        if (s == CLRED_OK)
            s = clred_bkg_model_eval(ctx, &final, 0, final.height, final_map, NULL);
        char line[160];
        snprintf(line, sizeof line, "clred combine: final background (box %d, global %.6g) subtracted: %s",
                 fo.box_w, final.global_back, final_bkg);
        if (s == CLRED_OK)
            s = clred_header_add_history(r.image.header, line);
    }
    double elapsed = now_seconds() - t0;
    if (rc == EXIT_OK && s == CLRED_OK) {
        clred_extra_plane extra[2] = {{"NCONTRIB", r.ncontrib}, {"NREJECT", r.nrejected}};
        s = clred_image_write_with(output, &r.image, extra, r.nrejected ? 2 : 1, overwrite);
    }
    if (rc == EXIT_OK && s == CLRED_OK && final_bkg) {
        s = clred_bkg_model_write(final_bkg, &final, final_map, r.image.header, overwrite);
        if (s != CLRED_OK)
            remove(output); /* the stack without its background would be a partial output */
    }
    free(final_map);
    if (s != CLRED_OK) {
        rc = cli_fail(cmd, s);
    } else if (rc == EXIT_OK) {
        cli_progress_done();
        if (json)
            print_json(output, &r, methods[o.method], rejects[o.reject], scales[o.scale], elapsed, ctx, &al, &bsum);
    }
    clred_alignment_free(&al);
    clred_bkgmatch_result_free(&mr);
    clred_bkg_model_free(&final);
    clred_combine_result_free(&r);
    clred_ctx_destroy(ctx);
    free(weights);
    return rc;
}
