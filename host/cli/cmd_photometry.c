/* clred photometry: exact-aperture photometry at given or detected positions. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred photometry IMAGE [--positions POS.csv | --detect] -o PHOT.fits [--csv PHOT.csv] [options]\n\n"
           "Circular-aperture photometry with exact pixel overlap, a local background from\n"
           "the sigma-clipped (3 sigma) median of an annulus, errors from the variance plane\n"
           "(else the annulus scatter; with neither, the image's global background RMS) plus\n"
           "the error of the background, and instrumental\n"
           "magnitudes. Positions are 0-based pixels: a CSV with a header naming columns x and\n"
           "y (or x, y as the first two columns), or the sources detected on the image\n"
           "(--detect, the default). Sources are always detected to put the frame's seeing\n"
           "(median FWHM of good unflagged stars) in the SEEING keyword. Flags: 2 edge,\n"
           "4 masked pixel in the aperture, 32 no background.\n\n"
           "  -o, --output FILE     FITS binary table\n"
           "      --csv FILE        CSV table (with or instead of -o)\n"
           "      --positions FILE  CSV of x, y positions\n"
           "      --detect          photometry at the detected sources (default)\n"
           "      --radius R        aperture radius in pixels (default 5)\n"
           "      --annulus IN,OUT  background annulus radii (default 3 and 5 x the measured\n"
           "                        seeing, at least 8 and 12; 0,0 = none)\n"
           "      --zeropoint Z     magnitude zero point (default 25)\n"
           "      --psf FILE|measure  also PSF-fit photometry (columns PSF_*) with the PSF\n"
           "                        image FILE, or one measured from the image's isolated stars;\n"
           "                        flux, local sky and position fitted together with neighbours\n"
           "                        (PSF_FLAGS: 8 fitted with neighbours, 64 no fit, 128 position\n"
           "                        held at the given one)\n"
           "      --psf-size N      largest PSF size read, or the measured model's size (odd,\n"
           "                        default 25 measured, uncut read)\n"
           "      --psf-order N     with --psf measure: the model varies over the image, each\n"
           "                        pixel a polynomial of order N (0-2, default 0) in x, y at\n"
           "                        most: the order that best predicts the stars left out of\n"
           "                        the fit (a PSF cube FILE varies as read)\n"
           "      --fit-radius R    PSF fit radius in pixels (default 2 x the PSF's FWHM)\n"
           "      --forced          PSF fluxes at the given positions (no position fit)\n"
           "      --thresh T, --minarea N, --fwhm F   detection, as for 'clred sources'\n"
           "      --overwrite       replace existing outputs\n"
           "      --device D        OpenCL device (index or name)\n"
           "      --json            print a JSON summary on stdout\n\n"
           "example:\n"
           "  clred photometry sci_001.fits --positions stars.csv --radius 6 --annulus 10,15 -o phot.fits\n");
}

typedef struct {
    const char *input, *output, *csv, *positions, *device;
    clred_phot_opts phot;
    clred_detect_opts detect;
    const char *psf;
    int psf_size, psf_order;
    clred_psf_phot_opts psfopt;
    int json, overwrite;
    int annulus_given;
} phot_args;

static int parse_annulus(const char *text, double *in, double *out)
{
    char *end;
    *in = strtod(text, &end);
    if (end == text || *end != ',')
        return 0;
    const char *second = end + 1;
    *out = strtod(second, &end);
    return end != second && *end == '\0';
}

static int parse_args(int argc, char **argv, phot_args *a)
{
    enum { O_CSV = 256, O_POS, O_DETECT, O_RADIUS, O_ANNULUS, O_ZP, O_THRESH, O_MINAREA, O_FWHM, O_OVERWRITE,
           O_DEVICE, O_JSON, O_PSF, O_PSF_SIZE, O_FIT_RADIUS, O_FORCED,
           O_PSF_ORDER };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"csv", required_argument, 0, O_CSV},
                                         {"positions", required_argument, 0, O_POS},
                                         {"detect", no_argument, 0, O_DETECT},
                                         {"radius", required_argument, 0, O_RADIUS},
                                         {"annulus", required_argument, 0, O_ANNULUS},
                                         {"zeropoint", required_argument, 0, O_ZP},
                                         {"thresh", required_argument, 0, O_THRESH},
                                         {"minarea", required_argument, 0, O_MINAREA},
                                         {"fwhm", required_argument, 0, O_FWHM},
                                         {"overwrite", no_argument, 0, O_OVERWRITE},
                                         {"device", required_argument, 0, O_DEVICE},
                                         {"json", no_argument, 0, O_JSON},
                                         {"psf", required_argument, 0, O_PSF},
                                         {"psf-size", required_argument, 0, O_PSF_SIZE},
                                         {"psf-order", required_argument, 0, O_PSF_ORDER},
                                         {"fit-radius", required_argument, 0, O_FIT_RADIUS},
                                         {"forced", no_argument, 0, O_FORCED},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->phot = clred_phot_defaults();
    a->detect = clred_detect_defaults();
    a->psfopt = clred_psf_phot_defaults();
    int c, detect = 0, psf_only = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': a->output = optarg; break;
        case O_CSV: a->csv = optarg; break;
        case O_POS: a->positions = optarg; break;
        case O_DETECT: detect = 1; break;
        case O_RADIUS:
            if (!cli_parse_double("photometry", "--radius", optarg, &a->phot.radius)) return EXIT_USAGE;
            break;
        case O_ANNULUS:
            if (!parse_annulus(optarg, &a->phot.annulus_in, &a->phot.annulus_out))
                return cli_usage_error("photometry", "--annulus expects IN,OUT radii, got '%s'", optarg);
            a->annulus_given = 1;
            break;
        case O_ZP:
            if (!cli_parse_double("photometry", "--zeropoint", optarg, &a->phot.zeropoint)) return EXIT_USAGE;
            break;
        case O_THRESH:
            if (!cli_parse_double("photometry", "--thresh", optarg, &a->detect.thresh)) return EXIT_USAGE;
            break;
        case O_MINAREA:
            if (!cli_parse_int("photometry", "--minarea", optarg, &a->detect.minarea)) return EXIT_USAGE;
            break;
        case O_FWHM:
            if (!cli_parse_double("photometry", "--fwhm", optarg, &a->detect.fwhm)) return EXIT_USAGE;
            break;
        case O_OVERWRITE: a->overwrite = 1; break;
        case O_DEVICE: a->device = optarg; break;
        case O_JSON: a->json = 1; break;
        case O_PSF: a->psf = optarg; break;
        case O_PSF_SIZE:
            if (!cli_parse_int("photometry", "--psf-size", optarg, &a->psf_size)) return EXIT_USAGE;
            psf_only = 1;
            break;
        case O_PSF_ORDER:
            if (!cli_parse_int("photometry", "--psf-order", optarg, &a->psf_order)) return EXIT_USAGE;
            psf_only = 1;
            break;
        case O_FIT_RADIUS:
            if (!cli_parse_double("photometry", "--fit-radius", optarg, &a->psfopt.fit_radius)) return EXIT_USAGE;
            psf_only = 1;
            break;
        case O_FORCED: a->psfopt.fit_position = 0; psf_only = 1; break;
        case 'h': help(); return -1;
        default: return cli_usage_error("photometry", "unknown option");
        }
    }
    if (optind >= argc)
        return cli_usage_error("photometry", "no input image");
    if (optind + 1 < argc)
        return cli_usage_error("photometry", "unexpected argument '%s'", argv[optind + 1]);
    a->input = argv[optind];
    if (psf_only && !a->psf)
        return cli_usage_error("photometry", "--psf-size, --psf-order, --fit-radius and --forced need --psf");
    if (a->psf_order < 0 || a->psf_order > 2)
        return cli_usage_error("photometry", "--psf-order must be 0, 1 or 2");
    if (a->psf_order > 0 && strcmp(a->psf, "measure") != 0)
        return cli_usage_error("photometry", "--psf-order needs --psf measure (a PSF file has its own order)");
    if (a->psf_size < 0 || (a->psf_size > 0 && (a->psf_size % 2 == 0 || a->psf_size < 3 || a->psf_size > 4095)))
        return cli_usage_error("photometry", "--psf-size must be odd, 3..4095");
    if (!(a->psfopt.fit_radius >= 0))
        return cli_usage_error("photometry", "--fit-radius must not be negative");
    if (detect && a->positions)
        return cli_usage_error("photometry", "--positions and --detect exclude each other");
    if (!a->output && !a->csv)
        return cli_usage_error("photometry", "no output: give -o PHOT.fits and/or --csv PHOT.csv");
    if (a->output && a->csv && strcmp(a->output, a->csv) == 0)
        return cli_usage_error("photometry", "%s is named for two outputs", a->output);
    if (!(a->phot.radius > 0))
        return cli_usage_error("photometry", "--radius must be positive");
    if (a->phot.annulus_out > a->phot.annulus_in && !(a->phot.annulus_in >= 0))
        return cli_usage_error("photometry", "--annulus radii must not be negative");
    if (a->phot.annulus_out < a->phot.annulus_in)
        return cli_usage_error("photometry", "--annulus: the outer radius %g is below the inner %g",
                               a->phot.annulus_out, a->phot.annulus_in);
    return EXIT_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void json_summary(const phot_args *a, size_t n, size_t nflagged, double seeing, size_t nseeing,
                         const clred_psf *psf, size_t npsf_failed, double aperture_s, double psf_s, clred_ctx *ctx)
{
    clred_timing t;
    clred_ctx_timing(ctx, &t);
    printf("{\"image\": ");
    cli_json_string(stdout, a->input);
    printf(", \"positions\": ");
    if (a->positions)
        cli_json_string(stdout, a->positions);
    else
        printf("\"detected\"");
    printf(", \"n\": %zu, \"nflagged\": %zu, \"radius\": %g, \"annulus\": [%g, %g], \"zeropoint\": %g, \"seeing\": ",
           n, nflagged, a->phot.radius, a->phot.annulus_in, a->phot.annulus_out, a->phot.zeropoint);
    if (isfinite(seeing))
        printf("%.4f", seeing);
    else
        printf("null");
    printf(", \"nseeing\": %zu, \"psf_fwhm\": ", nseeing);
    if (psf && psf->data && isfinite(psf->fwhm))
    {
        printf("%.4f, \"psf_order\": %d, \"psf_ellipticity\": %.4f, \"psf_fwhm_corners\": [", psf->fwhm, psf->order,
               psf->ellipticity);
        for (int c = 0; c < 4; c++) /* NaN where a model does not extrapolate to a corner */
            printf(isfinite(psf->corner_fwhm[c]) ? "%s%.4f" : "%snull", c ? ", " : "", psf->corner_fwhm[c]);
        printf("], \"psf_nstars\": %zu, \"npsf_failed\": %zu, \"psf_s\": %.6f", psf->nstars, npsf_failed, psf_s);
    }
    else
        printf("null");
    printf(", \"catalog\": ");
    if (a->output)
        cli_json_string(stdout, a->output);
    else
        printf("null");
    printf(", \"csv\": ");
    if (a->csv)
        cli_json_string(stdout, a->csv);
    else
        printf("null");
    printf(", \"aperture_s\": %.6f, \"kernel_s\": %.6f}\n", aperture_s, t.kernel_s);
}

int cmd_photometry(int argc, char **argv)
{
    phot_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    const char *inputs[3] = {a.input, a.positions ? a.positions : a.input,
                             a.psf && strcmp(a.psf, "measure") ? a.psf : a.input};
    const char *outs[2] = {a.output, a.csv};
    for (int i = 0; i < 2; i++) {
        clred_status cs = outs[i] ? clred_output_check(outs[i], inputs, 3, a.overwrite) : CLRED_OK;
        if (cs != CLRED_OK)
            return cli_fail("photometry", cs);
    }

    clred_image img = {0};
    clred_ctx *ctx = NULL;
    clred_source *sources = NULL;
    clred_phot *phot = NULL;
    clred_header *hdr = NULL;
    clred_psf model = {0};
    clred_psf_phot *pp = NULL;
    size_t npsf_failed = 0;
    double aperture_s = 0, psf_s = 0; /* wall time of the photometry calls alone (bench/psfphot) */
    double *x = NULL, *y = NULL, level = 0, sd = 0, seeing = NAN;
    size_t n = 0, nsrc = 0, nseeing = 0, nflagged = 0;
    clred_status st = CLRED_OK;
    if (a.positions)
        st = clred_positions_read(a.positions, &x, &y, &n);
    if (st == CLRED_OK)
        st = clred_image_read_2d(a.input, &img);
    if (st == CLRED_OK)
        st = clred_global_background(&img, a.detect.ignore_bits, &level, &sd);
    if (st != CLRED_OK) {
        rc = cli_fail("photometry", st);
        goto done;
    }
    rc = cli_open("photometry", a.device, &ctx);
    if (rc != EXIT_OK)
        goto done;
    cli_progress("detecting sources in %s", a.input);
    /* an image of constant background has no RMS and no sources to detect */
    if (sd > 0)
        st = clred_detect_sources(ctx, &img, NULL, NULL, level, sd, &a.detect, &sources, &nsrc);
    if (st == CLRED_OK)
        clred_sources_seeing(sources, nsrc, &seeing, &nseeing);
    /* A fixed 8-12 px annulus sits in the stars' wings once the seeing is
     * broad: at FWHM 4.8 px on CAFOS it read 1.5-3 RMS high near bright stars
     * and fluxes came out 1.3 % low against SExtractor (bench/compare);
     * 3-5 FWHM brings that to 0.3 %. */
    if (st == CLRED_OK && !a.annulus_given && isfinite(seeing)) {
        a.phot.annulus_in = fmax(a.phot.annulus_in, 3.0 * seeing);
        a.phot.annulus_out = fmax(a.phot.annulus_out, 5.0 * seeing);
    }
    if (st == CLRED_OK && !a.positions) {
        n = nsrc;
        x = malloc((n ? n : 1) * sizeof *x);
        y = malloc((n ? n : 1) * sizeof *y);
        if (!x || !y)
            st = CLRED_ERR_MEMORY;
        for (size_t i = 0; i < n && x && y; i++) {
            x[i] = sources[i].x;
            y[i] = sources[i].y;
        }
    }
    /* Without a VAR plane and without an annulus the errors come from the
     * global background RMS (else they would all be NaN). */
    if (!img.var && !(a.phot.annulus_out > a.phot.annulus_in))
        a.phot.noise_rms = sd > 0 && isfinite(sd) ? sd : 0;
    cli_progress("photometry of %zu positions", n);
    if (st == CLRED_OK && !(phot = calloc(n ? n : 1, sizeof *phot)))
        st = CLRED_ERR_MEMORY;
    double t0 = now_s();
    if (st == CLRED_OK)
        st = clred_aperture_photometry(ctx, &img, x, y, n, &a.phot, phot);
    aperture_s = now_s() - t0;
    if (st == CLRED_OK && a.psf) {
        if (strcmp(a.psf, "measure") == 0) {
            clred_psf_opts po = clred_psf_defaults();
            if (a.psf_size > 0)
                po.size = (size_t)a.psf_size;
            po.order = a.psf_order;
            st = clred_psf_model_measure(ctx, &img, &po, &model);
        } else
            st = clred_psf_read(a.psf, (size_t)a.psf_size, &model);
        /* as the apertures: without a VAR plane the global background RMS weights the fit */
        if (!img.var)
            a.psfopt.noise_rms = sd > 0 && isfinite(sd) ? sd : 0;
        a.psfopt.zeropoint = a.phot.zeropoint;
        if (st == CLRED_OK && !(pp = calloc(n ? n : 1, sizeof *pp)))
            st = CLRED_ERR_MEMORY;
        t0 = now_s();
        if (st == CLRED_OK)
            st = clred_psf_photometry(ctx, &img, &model, x, y, n, &a.psfopt, pp);
        psf_s = now_s() - t0;
        for (size_t i = 0; st == CLRED_OK && i < n; i++)
            npsf_failed += (pp[i].flags & CLRED_SRC_PSF_FAILED) != 0;
    }
    cli_progress_done();
    if (st == CLRED_OK && !(hdr = clred_header_new()))
        st = CLRED_ERR_MEMORY;
    if (st == CLRED_OK) {
        for (size_t i = 0; i < n; i++)
            nflagged += phot[i].flags != 0;
        char hist[512];
        clred_header_set_string(hdr, "IMAGE", a.input, "image measured");
        st = clred_header_copy_wcs(hdr, img.header);
        if (isfinite(seeing))
            clred_header_set_double(hdr, "SEEING", seeing, "[pix] median FWHM of good unflagged stars");
        clred_header_set_double(hdr, "NSEEING", (double)nseeing, "stars used for SEEING");
        clred_header_set_double(hdr, "APERTURE", a.phot.radius, "[pix] aperture radius");
        clred_header_set_double(hdr, "ANN_IN", a.phot.annulus_in, "[pix] background annulus inner radius");
        clred_header_set_double(hdr, "ANN_OUT", a.phot.annulus_out, "[pix] background annulus outer radius");
        clred_header_set_double(hdr, "ZEROPT", a.phot.zeropoint, "MAG = -2.5 log10(FLUX) + ZEROPT");
        clred_header_set_string(hdr, "PIXORIG", "0", "X, Y are 0-based, pixel centres on integers");
        snprintf(hist, sizeof hist, "clred photometry: radius=%g annulus=%g,%g clip=3 zeropoint=%g positions=%s",
                 a.phot.radius, a.phot.annulus_in, a.phot.annulus_out, a.phot.zeropoint,
                 a.positions ? a.positions : "detected");
        clred_header_add_history(hdr, hist);
        if (pp) {
            clred_header_set_string(hdr, "PSFSRC", a.psf, "PSF image, or measured from the image");
            clred_header_set_double(hdr, "PSFFWHM", model.fwhm, "[pix] FWHM of the PSF model");
            clred_header_set_double(hdr, "PSFNSTAR", (double)model.nstars, "stars in the measured PSF (0 = read)");
            clred_header_set_double(hdr, "PSFFITR", a.psfopt.fit_radius, "[pix] PSF fit radius (0 = 2 x FWHM)");
            clred_header_set_string(hdr, "PSFMODE", a.psfopt.fit_position ? "fitted" : "forced",
                                    "PSF positions fitted or held");
        }
        if (st == CLRED_OK)
            st = clred_phot_write_psf(a.output, a.csv, phot, pp, n, hdr, a.overwrite);
    }
    if (st != CLRED_OK) {
        rc = cli_fail("photometry", st);
        goto done;
    }
    if (a.json)
        json_summary(&a, n, nflagged, seeing, nseeing, pp ? &model : NULL, npsf_failed, aperture_s, psf_s, ctx);
    else
        fprintf(stderr, "clred photometry: %zu positions in %s (%zu flagged)\n", n, a.input, nflagged);
    rc = EXIT_OK;
done:
    free(x);
    free(y);
    free(sources);
    free(phot);
    free(pp);
    clred_psf_free(&model);
    clred_header_free(hdr);
    clred_image_free(&img);
    clred_ctx_destroy(ctx);
    return rc;
}
