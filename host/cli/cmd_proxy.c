/* clred proxy: the proxy-pixel background of CUTE-like spectral frames, and
 * the CUTE-like simulator. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred proxy --darks DARKS [--spectral MASK] -o OUTDIR SCIENCE... [options]\n"
           "       clred proxy --simulate DIR [--size WxH] [--ndarks N] [--nscience N] [--seed N]\n\n"
           "Every usable spectral pixel (MASK non-zero) is matched to the non-spectral pixel that behaves\n"
           "the same across the dark frames (its proxy); each science frame's background at a spectral\n"
           "pixel is its proxy's value. Pixels missing in a dark (NaN, or --fill) or hot in every dark are\n"
           "left out. Writes into OUTDIR: match.csv and match.fits (proxy and scores per spectral pixel),\n"
           "background_NNN.fits, final_NNN.fits (science - background), median_science.fits,\n"
           "median_final.fits, fits.csv (single and double Gaussian fits of the cross-dispersion profile\n"
           "per bin of columns: the median final frame, then each final frame with the peak ratio tied\n"
           "to the median's), clean_NNN.fits (final frames with empty and negative spectral pixels infilled\n"
           "from their fits, then L.A.Cosmic) and quick-look PNGs.\n\n"
           "options:\n"
           "  --darks FILE          dark frames (a cube or a 2-D image; repeat for more)\n"
           "  --spectral FILE       the spectral region (non-zero pixels); without it the region is found\n"
           "                        from the trace in the median science frame less the median dark and\n"
           "                        written as OUTDIR/spectral.fits: Gaussian fits per --bin columns, polynomials in x\n"
           "                        for the centre, width and peak separation, and rows within half the\n"
           "                        separation plus K widths of the centre\n"
           "  --region-k K          that half-width in trace widths (5)\n"
           "  --region-order N      degree of those polynomials, 0..3 (2)\n"
           "  --method M            median (default): smallest |median| of the residuals over the darks,\n"
           "                        exact ties by the smallest std, then the lowest pixel index;\n"
           "                        lsq: smallest mean squared residual, then the lowest index\n"
           "  --tie-tolerance T     median method: |medians| within T of the smallest tie, and the\n"
           "                        smallest std among them wins (0: exact ties; a second pass)\n"
           "  --window N            candidates only within N columns (default: all)\n"
           "  --fill V              a value meaning 'not downlinked' besides NaN\n"
           "  --hot-sigma S         hot: above median + S * 1.4826 MAD in every dark (10)\n"
           "  --bin N               columns per fit bin (25)\n"
           "  --readnoise E         read noise for L.A.Cosmic, e- at gain 1 (3)\n"
           "  --no-png              no quick-look PNGs\n"
           "  --simulate DIR        write a CUTE-like set (darks.fits, science.fits, spectral.fits, truth)\n"
           "  --size WxH, --ndarks N, --nscience N, --seed N   the simulation (2048x100, 30, 5, 1);\n"
           "                        a size keeps the proportions of 100 rows (trace sigma 3, split 12,\n"
           "                        31 spectral rows) and >= 64 non-spectral pixels per group\n"
           "  --device D, --json, --overwrite\n\n"
           "example:\n"
           "  clred proxy --simulate sim --size 512x100\n"
           "  clred proxy --darks sim/darks.fits --spectral sim/spectral.fits -o out sim/science.fits --json\n");
}

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0777) == 0 || errno == EEXIST)
        return 1;
    fprintf(stderr, "clred proxy: %s: cannot create the directory (%s)\n", dir, strerror(errno));
    return 0;
}

enum { OPT_DARKS = 256, OPT_SPECTRAL, OPT_METHOD, OPT_WINDOW, OPT_FILL, OPT_HOT, OPT_BIN, OPT_NOPNG, OPT_SIM,
       OPT_SIZE, OPT_NDARKS, OPT_NSCI, OPT_SEED, OPT_DEVICE, OPT_JSON, OPT_OVERWRITE, OPT_RN, OPT_REGION_K,
       OPT_REGION_ORDER, OPT_TIE };

static int simulate(const char *dir, const clred_cute_sim_opts *so, int overwrite, int json)
{
    if (!make_dir(dir))
        return EXIT_BAD_INPUT;
    clred_cute_sim s;
    clred_status st = clred_cute_simulate(so, &s);
    if (st == CLRED_OK)
        st = clred_cute_sim_write(&s, dir, overwrite);
    clred_cute_sim_free(&s);
    if (st != CLRED_OK)
        return cli_fail("proxy", st);
    if (json)
        printf("{\"simulated\": \"%s\", \"width\": %zu, \"height\": %zu, \"ndarks\": %zu, \"nscience\": %zu}\n", dir,
               so->width, so->height, so->ndarks, so->nscience);
    return EXIT_OK;
}

int cmd_proxy(int argc, char **argv)
{
    static const struct option opts[] = {
        {"darks", required_argument, 0, OPT_DARKS},   {"spectral", required_argument, 0, OPT_SPECTRAL},
        {"method", required_argument, 0, OPT_METHOD}, {"window", required_argument, 0, OPT_WINDOW},
        {"fill", required_argument, 0, OPT_FILL},     {"hot-sigma", required_argument, 0, OPT_HOT},
        {"bin", required_argument, 0, OPT_BIN},       {"no-png", no_argument, 0, OPT_NOPNG},
        {"simulate", required_argument, 0, OPT_SIM},  {"size", required_argument, 0, OPT_SIZE},
        {"ndarks", required_argument, 0, OPT_NDARKS}, {"nscience", required_argument, 0, OPT_NSCI},
        {"seed", required_argument, 0, OPT_SEED},     {"device", required_argument, 0, OPT_DEVICE},
        {"json", no_argument, 0, OPT_JSON},           {"overwrite", no_argument, 0, OPT_OVERWRITE},
        {"output", required_argument, 0, 'o'},        {"help", no_argument, 0, 'h'},
        {"readnoise", required_argument, 0, OPT_RN},  {"region-k", required_argument, 0, OPT_REGION_K},
        {"region-order", required_argument, 0, OPT_REGION_ORDER}, {"tie-tolerance", required_argument, 0, OPT_TIE},
        {0, 0, 0, 0}};
    static const char *const methods[] = {"median", "lsq"};
    clred_proxy_run_opts ro = clred_proxy_run_defaults();
    clred_cute_sim_opts so = clred_cute_sim_defaults();
    const char **dark_paths = calloc((size_t)argc + 1, sizeof *dark_paths);
    const char *spectral = NULL, *outdir = NULL, *simdir = NULL, *device = NULL;
    size_t ndark_paths = 0;
    int json = 0, c, ok, choice, v;
    unsigned w, h;
    if (!dark_paths)
        return EXIT_BAD_INPUT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        ok = 1;
        switch (c) {
        case OPT_DARKS: dark_paths[ndark_paths++] = optarg; break;
        case OPT_SPECTRAL: spectral = optarg; break;
        case OPT_METHOD:
            ok = cli_parse_choice("proxy", "--method", optarg, methods, 2, &choice);
            ro.match.method = (clred_proxy_method)choice;
            break;
        case OPT_WINDOW: ok = cli_parse_int("proxy", "--window", optarg, &ro.match.window); break;
        case OPT_FILL: ok = cli_parse_double("proxy", "--fill", optarg, &ro.match.fill_value); break;
        case OPT_HOT: ok = cli_parse_double("proxy", "--hot-sigma", optarg, &ro.match.hot_sigma); break;
        case OPT_BIN:
            ok = cli_parse_int("proxy", "--bin", optarg, &v) && v > 0;
            ro.bin = (size_t)v;
            ro.region.bin = (size_t)v;
            break;
        case OPT_TIE:
            ok = cli_parse_double("proxy", "--tie-tolerance", optarg, &ro.match.tie_tolerance) &&
                 ro.match.tie_tolerance >= 0;
            break;
        case OPT_REGION_K:
            ok = cli_parse_double("proxy", "--region-k", optarg, &ro.region.k) && ro.region.k > 0;
            break;
        case OPT_REGION_ORDER:
            ok = cli_parse_int("proxy", "--region-order", optarg, &ro.region.order) && ro.region.order >= 0 &&
                 ro.region.order <= CLRED_TRACE_REGION_MAX_ORDER;
            break;
        case OPT_NOPNG: ro.png = 0; break;
        case OPT_RN: ok = cli_parse_double("proxy", "--readnoise", optarg, &ro.cosmic.readnoise); break;
        case OPT_SIM: simdir = optarg; break;
        case OPT_SIZE:
            ok = sscanf(optarg, "%ux%u", &w, &h) == 2;
            so.width = w, so.height = h;
            so.centre = -1;
            /* the defaults' proportions: 31 of 100 rows spectral, 64 or more
             * non-spectral pixels per dark-signal group */
            so.spectral_half = h * 15 / 100 > 0 ? h * 15 / 100 : 1;
            so.sigma = 0.03 * h;
            so.split_max = 0.12 * h;
            so.ngroups = ((size_t)w * (h - 2 * so.spectral_half - 1)) / 64;
            so.ngroups = so.ngroups < 4 ? 4 : so.ngroups > 400 ? 400 : so.ngroups;
            break;
        case OPT_NDARKS:
            ok = cli_parse_int("proxy", "--ndarks", optarg, &v) && v > 0;
            so.ndarks = (size_t)v;
            break;
        case OPT_NSCI:
            ok = cli_parse_int("proxy", "--nscience", optarg, &v) && v > 0;
            so.nscience = (size_t)v;
            break;
        case OPT_SEED:
            ok = cli_parse_int("proxy", "--seed", optarg, &v) && v >= 0;
            so.seed = (uint64_t)v;
            break;
        case OPT_DEVICE: device = optarg; break;
        case OPT_JSON: json = 1; break;
        case OPT_OVERWRITE: ro.overwrite = 1; break;
        case 'o': outdir = optarg; break;
        case 'h': help(); free(dark_paths); return EXIT_OK;
        default: free(dark_paths); return cli_usage_error("proxy", "unknown option");
        }
        if (!ok) {
            free(dark_paths);
            return cli_usage_error("proxy", "bad value for %s: '%s'", argv[optind - 1], optarg);
        }
    }
    if (simdir) {
        free(dark_paths);
        if (optind < argc || outdir || spectral)
            return cli_usage_error("proxy", "--simulate takes only the simulation options");
        return simulate(simdir, &so, ro.overwrite, json);
    }
    const char *const *sci_paths = (const char *const *)argv + optind;
    size_t nsci_paths = (size_t)(argc - optind);
    if (!ndark_paths || !outdir || !nsci_paths) {
        free(dark_paths);
        return cli_usage_error("proxy", "needs --darks, -o OUTDIR and science frames");
    }
    cli_frame *df = NULL, *sf = NULL;
    clred_image *darks = NULL, *sci = NULL, mask;
    size_t nd = 0, ns = 0;
    memset(&mask, 0, sizeof mask);
    uint8_t *spec = NULL;
    int rc = cli_list_frames("proxy", dark_paths, ndark_paths, &df, &nd);
    if (rc == EXIT_OK)
        rc = cli_list_frames("proxy", sci_paths, nsci_paths, &sf, &ns);
    if (rc == EXIT_OK)
        rc = cli_read_frames("proxy", df, nd, &darks);
    if (rc == EXIT_OK)
        rc = cli_read_frames("proxy", sf, ns, &sci);
    if (rc == EXIT_OK && spectral) {
        clred_status s = clred_image_read(spectral, 0, &mask);
        if (s != CLRED_OK)
            rc = cli_fail("proxy", s);
        else if (mask.width != darks[0].width || mask.height != darks[0].height) {
            fprintf(stderr, "clred proxy: %s is %zu x %zu, the darks %zu x %zu\n", spectral, mask.width, mask.height,
                    darks[0].width, darks[0].height);
            rc = EXIT_BAD_INPUT;
        }
    }
    if (rc == EXIT_OK && spectral && !(spec = malloc(mask.width * mask.height)))
        rc = EXIT_BAD_INPUT;
    for (size_t i = 0; rc == EXIT_OK && spectral && i < mask.width * mask.height; i++)
        spec[i] = mask.sci[i] != 0 && !isnan(mask.sci[i]);
    if (rc == EXIT_OK && !make_dir(outdir))
        rc = EXIT_BAD_INPUT;
    clred_ctx *ctx = NULL;
    if (rc == EXIT_OK)
        rc = cli_open("proxy", device, &ctx);
    clred_proxy_report rep;
    if (rc == EXIT_OK) {
        clred_status s = clred_proxy_run(ctx, darks, nd, sci, ns, spec, outdir, &ro, &rep);
        if (s != CLRED_OK)
            rc = cli_fail("proxy", s);
    }
    if (rc == EXIT_OK && json)
        printf("{\"output\": \"%s\", \"method\": \"%s\", \"ndarks\": %zu, \"nscience\": %zu, \"spectral\": %zu, "
               "\"matched\": %zu, \"candidates\": %zu, \"hot\": %zu, \"missing\": %zu, \"infilled\": %zu, "
               "\"cosmic\": %zu, \"match_seconds\": %.4f, \"match_cpu_seconds\": %.4f, \"seconds\": %.4f, "
               "\"device\": ",
               outdir, methods[ro.match.method], nd, ns, rep.nspectral, rep.nmatched, rep.ncandidates, rep.nhot,
               rep.nmissing, rep.ninfilled, rep.ncosmic, rep.match_s, rep.match_cpu_s, rep.total_s);
    if (rc == EXIT_OK && json) {
        cli_json_string(stdout, clred_ctx_device(ctx)->name);
        if (rep.region_found) {
            const clred_trace_region *g = &rep.region;
            printf(", \"region\": {\"k\": %.9g, \"order\": %d, \"bins_used\": %zu, \"pixels\": %zu", g->k, g->order,
                   g->nbins_used, g->nspectral);
            const char *names[] = {"centre", "sigma", "split"};
            const double *coefs[] = {g->centre, g->sigma, g->split};
            for (int k = 0; k < 3; k++) {
                printf(", \"%s\": [", names[k]);
                for (int j = 0; j <= g->order; j++)
                    printf("%s%.9g", j ? ", " : "", coefs[k][j]);
                printf("]");
            }
            printf("}");
        }
        printf("}\n");
    }
    if (ctx)
        clred_ctx_destroy(ctx);
    cli_free_images(darks, darks ? nd : 0);
    cli_free_images(sci, sci ? ns : 0);
    clred_image_free(&mask);
    free(spec), free(df), free(sf), free(dark_paths);
    return rc;
}
