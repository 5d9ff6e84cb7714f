/* clred sources: detect and measure sources, write a FITS table and/or CSV. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred sources IMAGE -o CATALOG.fits [--csv CATALOG.csv] [options]\n\n"
           "Detects sources above a threshold after matched filtering with a Gaussian of the\n"
           "seeing, splits touching peaks and measures windowed centroids, second moments\n"
           "(a, b, theta, FWHM, ellipticity), peak, isophotal flux and flags (1 saturated,\n"
           "2 edge, 4 masked, 8 blended, 16 moments failed). Coordinates are 0-based pixels.\n"
           "The catalog header has SEEING: the median FWHM of unflagged round bright sources.\n\n"
           "  -o, --output FILE     FITS binary table catalog\n"
           "      --csv FILE        CSV catalog (with or instead of -o)\n"
           "      --thresh T        threshold in units of the per-pixel background RMS, applied\n"
           "                        to the filtered image (default 1.5)\n"
           "      --minarea N       minimum pixels per source (default 5)\n"
           "      --fwhm F          FWHM of the matched filter in pixels (default 3; 0 = none)\n"
           "      --filter FILE     SExtractor filter file (.conv: CONV NORM or CONV NONORM, then\n"
           "                        one row per line) instead of the Gaussian of --fwhm\n"
           "      --deblend-nthresh N  SExtractor's DEBLEND_NTHRESH: levels between the threshold and\n"
           "                        a peak at which touching sources are told apart (default 32)\n"
           "      --deblend-mincont C  SExtractor's DEBLEND_MINCONT: least flux fraction of a split\n"
           "                        branch (default 0.005; 1 = no deblending)\n"
           "      --deblend C       with --deblend-nthresh 0, the older contrast rule (default 0.2);\n"
           "                        0 = no deblending\n"
           "      --clean-param P   SExtractor's CLEAN_PARAM: Moffat index of the wing model that\n"
           "                        merges detections in a brighter source's wings (default 1)\n"
           "      --no-clean        keep such detections\n"
           "      --saturation L    flag pixels at or above L as saturated (default: mask bit only)\n"
           "      --bkg FILE        background image (default: global sigma-clipped median)\n"
           "      --rms FILE        background RMS image (default: global sigma-clipped std)\n"
           "      --segmentation FILE  write the segmentation map (source number per pixel)\n"
           "      --overwrite       replace existing outputs\n"
           "      --device D        OpenCL device (index or name)\n"
           "      --json            print a JSON summary on stdout\n\n"
           "example:\n"
           "  clred sources sci_001.fits -o sci_001.cat.fits --csv sci_001.cat.csv --fwhm 3.5\n");
}

typedef struct {
    const char *input, *output, *csv, *bkg_path, *rms_path, *seg_path, *device, *filter_path;
    clred_detect_opts detect;
    int json, overwrite;
} sources_args;

static int parse_args(int argc, char **argv, sources_args *a)
{
    enum { O_CSV = 256, O_THRESH, O_MINAREA, O_FWHM, O_DEBLEND, O_SAT, O_BKG, O_RMS, O_SEG, O_OVERWRITE, O_DEVICE,
           O_JSON, O_FILTER, O_NTHRESH, O_MINCONT, O_CLEAN_PARAM, O_NO_CLEAN };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"csv", required_argument, 0, O_CSV},
                                         {"thresh", required_argument, 0, O_THRESH},
                                         {"minarea", required_argument, 0, O_MINAREA},
                                         {"fwhm", required_argument, 0, O_FWHM},
                                         {"filter", required_argument, 0, O_FILTER},
                                         {"deblend", required_argument, 0, O_DEBLEND},
                                         {"deblend-nthresh", required_argument, 0, O_NTHRESH},
                                         {"deblend-mincont", required_argument, 0, O_MINCONT},
                                         {"clean-param", required_argument, 0, O_CLEAN_PARAM},
                                         {"no-clean", no_argument, 0, O_NO_CLEAN},
                                         {"saturation", required_argument, 0, O_SAT},
                                         {"bkg", required_argument, 0, O_BKG},
                                         {"rms", required_argument, 0, O_RMS},
                                         {"segmentation", required_argument, 0, O_SEG},
                                         {"overwrite", no_argument, 0, O_OVERWRITE},
                                         {"device", required_argument, 0, O_DEVICE},
                                         {"json", no_argument, 0, O_JSON},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->detect = clred_detect_defaults();
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': a->output = optarg; break;
        case O_CSV: a->csv = optarg; break;
        case O_THRESH:
            if (!cli_parse_double("sources", "--thresh", optarg, &a->detect.thresh)) return EXIT_USAGE;
            break;
        case O_MINAREA:
            if (!cli_parse_int("sources", "--minarea", optarg, &a->detect.minarea)) return EXIT_USAGE;
            break;
        case O_FWHM:
            if (!cli_parse_double("sources", "--fwhm", optarg, &a->detect.fwhm)) return EXIT_USAGE;
            break;
        case O_DEBLEND:
            if (!cli_parse_double("sources", "--deblend", optarg, &a->detect.deblend_contrast)) return EXIT_USAGE;
            break;
        case O_NTHRESH:
            if (!cli_parse_int("sources", "--deblend-nthresh", optarg, &a->detect.deblend_nthresh)) return EXIT_USAGE;
            break;
        case O_MINCONT:
            if (!cli_parse_double("sources", "--deblend-mincont", optarg, &a->detect.deblend_mincont))
                return EXIT_USAGE;
            break;
        case O_CLEAN_PARAM:
            if (!cli_parse_double("sources", "--clean-param", optarg, &a->detect.clean_param)) return EXIT_USAGE;
            break;
        case O_NO_CLEAN: a->detect.clean = 0; break;
        case O_SAT:
            if (!cli_parse_double("sources", "--saturation", optarg, &a->detect.saturation)) return EXIT_USAGE;
            break;
        case O_FILTER: a->filter_path = optarg; break;
        case O_BKG: a->bkg_path = optarg; break;
        case O_RMS: a->rms_path = optarg; break;
        case O_SEG: a->seg_path = optarg; break;
        case O_OVERWRITE: a->overwrite = 1; break;
        case O_DEVICE: a->device = optarg; break;
        case O_JSON: a->json = 1; break;
        case 'h': help(); return -1;
        default: return cli_usage_error("sources", "unknown option");
        }
    }
    if (optind >= argc)
        return cli_usage_error("sources", "no input image");
    if (optind + 1 < argc)
        return cli_usage_error("sources", "unexpected argument '%s'", argv[optind + 1]);
    a->input = argv[optind];
    if (!a->output && !a->csv)
        return cli_usage_error("sources", "no output: give -o CATALOG.fits and/or --csv CATALOG.csv");
    if (!(a->detect.thresh > 0))
        return cli_usage_error("sources", "--thresh must be positive");
    if (a->detect.minarea < 1)
        return cli_usage_error("sources", "--minarea must be at least 1");
    if (!(a->detect.fwhm >= 0) || a->detect.fwhm > 50)
        return cli_usage_error("sources", "--fwhm must be in [0, 50]");
    if (!(a->detect.deblend_contrast >= 0) || a->detect.deblend_contrast >= 1)
        return cli_usage_error("sources", "--deblend must be in [0, 1)");
    if (a->detect.deblend_nthresh < 0 || a->detect.deblend_nthresh > 1024)
        return cli_usage_error("sources", "--deblend-nthresh must be in [0, 1024]");
    if (!(a->detect.deblend_mincont >= 0) || a->detect.deblend_mincont > 1)
        return cli_usage_error("sources", "--deblend-mincont must be in [0, 1]");
    if (!(a->detect.clean_param > 0) || a->detect.clean_param > 100)
        return cli_usage_error("sources", "--clean-param must be in (0, 100]");
    return EXIT_OK;
}

/* Outputs are distinct, are not inputs and (without --overwrite) do not exist. */
static int check_outputs(const sources_args *a)
{
    const char *inputs[3] = {a->input, a->bkg_path ? a->bkg_path : a->input, a->rms_path ? a->rms_path : a->input};
    const char *outs[3] = {a->output, a->csv, a->seg_path};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (outs[i] && outs[j] && strcmp(outs[i], outs[j]) == 0)
                return cli_usage_error("sources", "%s is named for two outputs", outs[i]);
    for (int i = 0; i < 3; i++)
        if (outs[i]) {
            clred_status st = clred_output_check(outs[i], inputs, 3, a->overwrite);
            if (st != CLRED_OK)
                return cli_fail("sources", st);
        }
    return EXIT_OK;
}

static clred_status write_segmentation(const char *path, const int32_t *seg, size_t w, size_t h, int overwrite)
{
    clred_image img;
    clred_status st = clred_image_alloc(&img, w, h, 0, 0);
    if (st != CLRED_OK)
        return st;
    for (size_t i = 0; i < w * h; i++)
        img.sci[i] = (float)seg[i];
    img.header = clred_header_new();
    if (img.header)
        clred_header_add_history(img.header, "clred sources: segmentation, source NUMBER per pixel, 0 = none");
    st = clred_image_write(path, &img, overwrite);
    clred_image_free(&img);
    return st;
}

int cmd_sources(int argc, char **argv)
{
    sources_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    rc = check_outputs(&a);
    if (rc != EXIT_OK)
        return rc;
    clred_status st;

    clred_image img = {0}, bkg = {0}, rms = {0};
    clred_ctx *ctx = NULL;
    clred_source *list = NULL;
    clred_header *hdr = NULL;
    int32_t *seg = NULL;
    size_t n = 0;
    double level = NAN, sd = 0;
    clred_conv_filter filter = {0};
    /* the filter first: a malformed one fails before the frame is read */
    st = a.filter_path ? clred_conv_filter_read(a.filter_path, &filter) : CLRED_OK;
    if (st == CLRED_OK && a.filter_path)
        a.detect.filter = &filter;
    if (st == CLRED_OK)
        st = clred_image_read_2d(a.input, &img);
    if (st == CLRED_OK && a.bkg_path)
        st = clred_image_read_2d(a.bkg_path, &bkg);
    if (st == CLRED_OK && a.rms_path)
        st = clred_image_read_2d(a.rms_path, &rms);
    if (st != CLRED_OK) {
        rc = cli_fail("sources", st);
        goto done;
    }
    if (!a.bkg_path || !a.rms_path)
        st = clred_global_background(&img, a.detect.ignore_bits, &level, &sd);
    if (st != CLRED_OK) {
        rc = cli_fail_on("sources", a.input, st);
        goto done;
    }
    if (a.rms_path && (rc = cli_check_nonnegative("sources", a.rms_path, "background RMS", &rms)) != EXIT_OK)
        goto done;
    if (!a.rms_path && !(sd > 0)) {
        fprintf(stderr, "clred sources: %s: the background RMS is zero; give --rms\n", a.input);
        rc = EXIT_BAD_INPUT;
        goto done;
    }
    rc = cli_open("sources", a.device, &ctx);
    if (rc != EXIT_OK)
        goto done;
    if (a.seg_path && !(seg = malloc(img.width * img.height * sizeof *seg))) {
        rc = cli_fail("sources", CLRED_ERR_MEMORY);
        goto done;
    }
    a.detect.segmentation = seg;
    cli_progress("detecting sources in %s", a.input);
    st = clred_detect_sources(ctx, &img, a.bkg_path ? &bkg : NULL, a.rms_path ? &rms : NULL, level, sd, &a.detect,
                              &list, &n);
    cli_progress_done();
    double seeing;
    size_t nseeing;
    clred_sources_seeing(list, n, &seeing, &nseeing);
    hdr = clred_header_new();
    if (st == CLRED_OK && !hdr)
        st = CLRED_ERR_MEMORY;
    if (st == CLRED_OK) {
        char hist[512];
        clred_header_set_string(hdr, "IMAGE", a.input, "image the sources were detected on");
        st = clred_header_copy_wcs(hdr, img.header);
        clred_header_set_double(hdr, "NSOURCES", (double)n, "sources detected");
        if (isfinite(seeing))
            clred_header_set_double(hdr, "SEEING", seeing, "[pix] median FWHM of good unflagged stars");
        clred_header_set_double(hdr, "NSEEING", (double)nseeing, "stars used for SEEING");
        clred_header_set_double(hdr, "THRESH", a.detect.thresh, "threshold per pixel RMS, filtered image");
        clred_header_set_double(hdr, "MINAREA", a.detect.minarea, "minimum pixels per source");
        if (a.filter_path)
            clred_header_set_string(hdr, "FILTER", a.filter_path, "detection filter file");
        else
            clred_header_set_double(hdr, "FILTFWHM", a.detect.fwhm, "[pix] FWHM of the matched filter");
        clred_header_set_string(hdr, "PIXORIG", "0", "X, Y are 0-based, pixel centres on integers");
        snprintf(hist, sizeof hist,
                 "clred sources: thresh=%g minarea=%d fwhm=%g filter=%s deblend=%g nthresh=%d mincont=%g clean=%s "
                 "saturation=%g bkg=%s rms=%s",
                 a.detect.thresh, a.detect.minarea, a.detect.fwhm, a.filter_path ? a.filter_path : "gaussian",
                 a.detect.deblend_contrast, a.detect.deblend_nthresh, a.detect.deblend_mincont,
                 a.detect.clean ? "yes" : "no", a.detect.saturation, a.bkg_path ? a.bkg_path : "global",
                 a.rms_path ? a.rms_path : "global");
        clred_header_add_history(hdr, hist);
        if (st == CLRED_OK)
            st = clred_sources_write(a.output, a.csv, list, n, hdr, a.overwrite);
    }
    if (st == CLRED_OK && a.seg_path) {
        st = write_segmentation(a.seg_path, seg, img.width, img.height, a.overwrite);
        if (st != CLRED_OK) {
            if (a.output)
                remove(a.output);
            if (a.csv)
                remove(a.csv);
        }
    }
    if (st != CLRED_OK) {
        rc = cli_fail("sources", st);
        goto done;
    }
    if (a.json) {
        clred_timing t;
        clred_ctx_timing(ctx, &t);
        printf("{\"image\": ");
        cli_json_string(stdout, a.input);
        printf(", \"nsources\": %zu, \"seeing\": ", n);
        if (isfinite(seeing))
            printf("%.4f", seeing);
        else
            printf("null");
        printf(", \"nseeing\": %zu, \"background\": ", nseeing);
        if (a.bkg_path)
            cli_json_string(stdout, a.bkg_path);
        else
            printf("%.6g", level);
        printf(", \"rms\": ");
        if (a.rms_path)
            cli_json_string(stdout, a.rms_path);
        else
            printf("%.6g", sd);
        printf(", \"catalog\": ");
        if (a.output)
            cli_json_string(stdout, a.output);
        else
            printf("null");
        printf(", \"csv\": ");
        if (a.csv)
            cli_json_string(stdout, a.csv);
        else
            printf("null");
        printf(", \"kernel_s\": %.6f}\n", t.kernel_s);
    } else {
        fprintf(stderr, "clred sources: %zu sources in %s", n, a.input);
        if (isfinite(seeing))
            fprintf(stderr, ", seeing %.2f px from %zu stars", seeing, nseeing);
        fprintf(stderr, "\n");
    }
    rc = EXIT_OK;
done:
    clred_conv_filter_free(&filter);
    free(list);
    free(seg);
    clred_header_free(hdr);
    clred_image_free(&img);
    clred_image_free(&bkg);
    clred_image_free(&rms);
    clred_ctx_destroy(ctx);
    return rc;
}
