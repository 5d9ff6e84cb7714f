/* clred zeropoint: photometric zero point against a reference catalog. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred zeropoint IMAGE --ref CATALOG [-o OUTPUT.fits] [options]\n\n"
           "Detects stars, measures them in circular apertures, pairs them with a reference\n"
           "catalog (CSV or FITS table: RA, Dec, magnitude, optionally a colour) through the\n"
           "image's WCS and fits mag_cat = -2.5 log10(flux) + MAGZP (+ c colour) with sigma\n"
           "clipping. Reports MAGZP, its error, the scatter, the stars used and the 5-sigma\n"
           "limiting magnitude in the aperture; -o writes the image with MAGZP, MAGZPERR and\n"
           "MAGLIM in its header. The image needs a WCS (clred astrometry).\n\n"
           "  --ref FILE            reference catalog (required)\n"
           "  --mag-column NAME     magnitude column (default: mag, phot_g_mean_mag, ...)\n"
           "  --colour-term         also fit a colour coefficient (catalog column colour or bp_rp)\n"
           "  --radius R            aperture radius in pixels (default 5)\n"
           "  --annulus IN,OUT      background annulus (default 8,12)\n"
           "  --match-radius AS     pairing radius in arcsec (default 1)\n"
           "  --mag-range MIN,MAX   catalog magnitudes used\n"
           "  --min-snr S           leave out stars measured below this S/N (default 10)\n"
           "  --psf FILE|measure    PSF magnitudes (PSF fit with the PSF image FILE, or one\n"
           "                        measured from the image) instead of aperture magnitudes;\n"
           "                        the limit is then a PSF fit's\n"
           "  --psf-size N          largest size of the PSF read (odd; default uncut)\n"
           "  -o, --output FILE     the image with the zero point in its header\n"
           "  --overwrite           replace an existing output\n"
           "  --device D            OpenCL device (index or name)\n"
           "  --json                print a JSON summary on stdout\n\n"
           "example:\n"
           "  clred zeropoint sci_001.wcs.fits --ref gaia.csv --mag-column phot_g_mean_mag --radius 6\n");
}

int cmd_zeropoint(int argc, char **argv)
{
    enum { O_REF = 256, O_MAG, O_COLOUR, O_RADIUS, O_ANNULUS, O_MATCH, O_RANGE, O_SNR, O_OVERWRITE, O_DEVICE, O_JSON, O_PSF,
           O_PSF_SIZE };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"ref", required_argument, 0, O_REF},
                                         {"mag-column", required_argument, 0, O_MAG},
                                         {"colour-term", no_argument, 0, O_COLOUR},
                                         {"color-term", no_argument, 0, O_COLOUR},
                                         {"radius", required_argument, 0, O_RADIUS},
                                         {"annulus", required_argument, 0, O_ANNULUS},
                                         {"match-radius", required_argument, 0, O_MATCH},
                                         {"mag-range", required_argument, 0, O_RANGE},
                                         {"min-snr", required_argument, 0, O_SNR},
                                         {"overwrite", no_argument, 0, O_OVERWRITE},
                                         {"device", required_argument, 0, O_DEVICE},
                                         {"json", no_argument, 0, O_JSON},
                                         {"psf", required_argument, 0, O_PSF},
                                         {"psf-size", required_argument, 0, O_PSF_SIZE},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "zeropoint", *output = NULL, *refpath = NULL, *mag = NULL, *device = NULL, *psfpath = NULL;
    int overwrite = 0, json = 0, c, psf_size = 0;
    clred_zeropoint_opts o = clred_zeropoint_defaults();
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case O_REF: refpath = optarg; break;
        case O_MAG: mag = optarg; break;
        case O_COLOUR: o.colour_term = 1; break;
        case O_RADIUS:
            if (!cli_parse_double(cmd, "--radius", optarg, &o.phot.radius)) return EXIT_USAGE;
            break;
        case O_ANNULUS:
            if (sscanf(optarg, "%lf,%lf", &o.phot.annulus_in, &o.phot.annulus_out) != 2)
                return cli_usage_error(cmd, "--annulus expects IN,OUT in pixels, got '%s'", optarg);
            break;
        case O_MATCH:
            if (!cli_parse_double(cmd, "--match-radius", optarg, &o.match_radius_arcsec)) return EXIT_USAGE;
            break;
        case O_RANGE:
            if (sscanf(optarg, "%lf,%lf", &o.mag_min, &o.mag_max) != 2)
                return cli_usage_error(cmd, "--mag-range expects MIN,MAX, got '%s'", optarg);
            break;
        case O_SNR:
            if (!cli_parse_double(cmd, "--min-snr", optarg, &o.min_snr)) return EXIT_USAGE;
            break;
        case O_OVERWRITE: overwrite = 1; break;
        case O_DEVICE: device = optarg; break;
        case O_JSON: json = 1; break;
        case O_PSF: psfpath = optarg; break;
        case O_PSF_SIZE:
            if (!cli_parse_int(cmd, "--psf-size", optarg, &psf_size)) return EXIT_USAGE;
            if (psf_size < 0 || (psf_size > 0 && (psf_size % 2 == 0 || psf_size < 3)))
                return cli_usage_error(cmd, "--psf-size must be odd and >= 3");
            break;
        case 'h': help(); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "no input image");
    if (optind + 1 < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
    const char *input = argv[optind];
    if (!refpath)
        return cli_usage_error(cmd, "no reference catalog: give --ref CATALOG (CSV or FITS table)");
    if (psf_size && !psfpath)
        return cli_usage_error(cmd, "--psf-size needs --psf");
    clred_status st;
    if (output) {
        const char *inputs[3] = {input, refpath, psfpath ? psfpath : input};
        st = clred_output_check(output, inputs, 3, overwrite);
        if (st != CLRED_OK)
            return cli_fail(cmd, st);
    }
    clred_image img = {0};
    clred_refcat ref = {0};
    clred_ctx *ctx = NULL;
    clred_zeropoint_result r;
    memset(&r, 0, sizeof r);
    clred_psf psf = {0};
    st = clred_refcat_read(refpath, mag, &ref);
    if (st == CLRED_OK && psfpath && !strcmp(psfpath, "measure"))
        o.psf_measure = 1;
    else if (st == CLRED_OK && psfpath) {
        st = clred_psf_read(psfpath, (size_t)psf_size, &psf);
        o.psf = &psf;
    }
    if (st == CLRED_OK)
        st = clred_image_read(input, 0, &img);
    if (st != CLRED_OK) {
        int rc = cli_fail(cmd, st);
        clred_refcat_free(&ref);
        clred_psf_free(&psf);
        return rc;
    }
    int rc = cli_open(cmd, device, &ctx);
    if (rc == EXIT_OK) {
        st = clred_zeropoint(ctx, &img, &ref, &o, &r);
        if (st == CLRED_OK && output)
            st = clred_image_write(output, &img, overwrite);
        rc = st == CLRED_OK ? EXIT_OK : cli_fail(cmd, st);
    }
    if (rc == EXIT_OK && json) {
        printf("{\"input\": ");
        cli_json_string(stdout, input);
        printf(", \"magzp\": %.6f, \"magzp_err\": %.6f, \"colour\": %.6f, \"colour_err\": %.6f, \"rms\": %.6f, "
               "\"nmatched\": %zu, \"nused\": %zu, \"sky_rms\": %.6g, \"fwhm\": %.4f, \"limit_mag\": %.4f, "
               "\"magnitudes\": \"%s\"}\n",
               r.zp, r.zp_err, r.colour, r.colour_err, r.rms, r.nmatched, r.nused, r.sky_rms, r.fwhm, r.limit_mag,
               r.psf ? "psf" : "aperture");
    } else if (rc == EXIT_OK)
        printf("%s: MAGZP %.4f +- %.4f (rms %.3f mag, %zu of %zu stars), 5-sigma limit %.2f mag%s%s\n", input, r.zp,
               r.zp_err, r.rms, r.nused, r.nmatched, r.limit_mag, output ? " -> " : "", output ? output : "");
    clred_image_free(&img);
    clred_refcat_free(&ref);
    clred_psf_free(&psf);
    clred_ctx_destroy(ctx);
    return rc;
}
