/* clred astrometry: fit a TAN-SIP WCS to a reference catalog and write the
 * image with it. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred astrometry IMAGE --ref CATALOG -o OUTPUT.fits [options]\n\n"
           "Detects stars, matches them to a reference catalog (CSV with a header line, or a\n"
           "FITS table, with RA and Dec in degrees and a magnitude; e.g. a Gaia extract) with\n"
           "the triangle matcher, fits a TAN projection with SIP distortion with sigma\n"
           "clipping and writes the image with that WCS (CD, A/B and AP/BP, ASTRRMS,\n"
           "ASTRNSTR). It starts from the image's WCS, or from --centre and --scale. A match\n"
           "that is not credible (too few stars, RMS above --max-rms) is refused (exit 1).\n\n"
           "  --ref FILE            reference catalog (required)\n"
           "  --mag-column NAME     magnitude column (default: mag, phot_g_mean_mag, ...)\n"
           "  --sip-order N         SIP order, 2..8; 0 = plain TAN (default 3)\n"
           "  --centre RA,DEC       start from this field centre (degrees) ...\n"
           "  --scale AS            ... and this pixel scale (arcsec per pixel)\n"
           "  --max-rms PX          refuse a fit with a larger RMS (default 0.5)\n"
           "  --min-stars N         refuse a fit with fewer stars (default 10)\n"
           "  --thresh T            star detection threshold (default 3)\n"
           "  -o, --output FILE     the image with its new WCS\n"
           "  --overwrite           replace an existing output\n"
           "  --device D            OpenCL device (index or name)\n"
           "  --json                print a JSON summary on stdout\n\n"
           "example:\n"
           "  clred astrometry sci_001.fits --ref gaia.csv -o sci_001.wcs.fits --sip-order 3\n"
           "  clred astrometry raw.fits --ref gaia.fits --centre 114.92,21.53 --scale 0.53 -o raw.wcs.fits\n");
}

int cmd_astrometry(int argc, char **argv)
{
    enum { O_REF = 256, O_MAG, O_SIP, O_CENTRE, O_SCALE, O_MAXRMS, O_MINSTARS, O_THRESH, O_OVERWRITE, O_DEVICE, O_JSON };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"ref", required_argument, 0, O_REF},
                                         {"mag-column", required_argument, 0, O_MAG},
                                         {"sip-order", required_argument, 0, O_SIP},
                                         {"centre", required_argument, 0, O_CENTRE},
                                         {"center", required_argument, 0, O_CENTRE},
                                         {"scale", required_argument, 0, O_SCALE},
                                         {"max-rms", required_argument, 0, O_MAXRMS},
                                         {"min-stars", required_argument, 0, O_MINSTARS},
                                         {"thresh", required_argument, 0, O_THRESH},
                                         {"overwrite", no_argument, 0, O_OVERWRITE},
                                         {"device", required_argument, 0, O_DEVICE},
                                         {"json", no_argument, 0, O_JSON},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "astrometry", *output = NULL, *refpath = NULL, *mag = NULL, *device = NULL;
    int overwrite = 0, json = 0, c, min_stars = 10;
    clred_astrometry_opts o = clred_astrometry_defaults();
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case O_REF: refpath = optarg; break;
        case O_MAG: mag = optarg; break;
        case O_SIP:
            if (!cli_parse_int(cmd, "--sip-order", optarg, &o.sip_order)) return EXIT_USAGE;
            break;
        case O_CENTRE:
            if (sscanf(optarg, "%lf,%lf", &o.ra, &o.dec) != 2)
                return cli_usage_error(cmd, "--centre expects RA,DEC in degrees, got '%s'", optarg);
            break;
        case O_SCALE:
            if (!cli_parse_double(cmd, "--scale", optarg, &o.pixel_scale)) return EXIT_USAGE;
            break;
        case O_MAXRMS:
            if (!cli_parse_double(cmd, "--max-rms", optarg, &o.max_rms_px)) return EXIT_USAGE;
            break;
        case O_MINSTARS:
            if (!cli_parse_int(cmd, "--min-stars", optarg, &min_stars)) return EXIT_USAGE;
            break;
        case O_THRESH:
            if (!cli_parse_double(cmd, "--thresh", optarg, &o.dopts.thresh)) return EXIT_USAGE;
            break;
        case O_OVERWRITE: overwrite = 1; break;
        case O_DEVICE: device = optarg; break;
        case O_JSON: json = 1; break;
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
    if (!output)
        return cli_usage_error(cmd, "no output: give -o OUTPUT.fits");
    if (!!isfinite(o.ra) != !!isfinite(o.pixel_scale))
        return cli_usage_error(cmd, "--centre and --scale go together");
    if (min_stars < 3)
        return cli_usage_error(cmd, "--min-stars must be at least 3");
    o.min_stars = (size_t)min_stars;
    const char *inputs[2] = {input, refpath};
    clred_status st = clred_output_check(output, inputs, 2, overwrite);
    if (st != CLRED_OK)
        return cli_fail(cmd, st);

    clred_image img = {0};
    clred_refcat ref = {0};
    clred_ctx *ctx = NULL;
    clred_astrometry_result r;
    memset(&r, 0, sizeof r);
    st = clred_refcat_read(refpath, mag, &ref);
    if (st == CLRED_OK)
        st = clred_image_read(input, 0, &img);
    if (st != CLRED_OK) {
        int rc = cli_fail(cmd, st);
        clred_refcat_free(&ref);
        return rc;
    }
    int rc = cli_open(cmd, device, &ctx);
    if (rc == EXIT_OK) {
        st = clred_astrometry(ctx, &img, &ref, &o, &r);
        if (st == CLRED_OK)
            st = clred_image_write(output, &img, overwrite);
        rc = st == CLRED_OK ? EXIT_OK : cli_fail(cmd, st);
    }
    if (rc == EXIT_OK && json) {
        printf("{\"input\": ");
        cli_json_string(stdout, input);
        printf(", \"output\": ");
        cli_json_string(stdout, output);
        printf(", \"ndetected\": %zu, \"nref\": %zu, \"nmatched\": %zu, \"nused\": %zu, \"rms_arcsec\": %.6f, "
               "\"rms_px\": %.6f, \"pixel_scale\": %.6f, \"rotation_deg\": %.4f, \"mirrored\": %s, \"sip_order\": %d}\n",
               r.ndetected, r.nref, r.nmatched, r.nused, r.rms_arcsec, r.rms_px, r.pixel_scale, r.rotation_deg,
               r.mirrored ? "true" : "false", r.sip_order);
    } else if (rc == EXIT_OK)
        printf("%s: TAN%s order %d from %zu of %zu stars, RMS %.4f arcsec (%.4f px), %.5f arcsec/px -> %s\n", input,
               r.sip_order ? "-SIP" : "", r.sip_order, r.nused, r.ndetected, r.rms_arcsec, r.rms_px, r.pixel_scale,
               output);
    clred_image_free(&img);
    clred_refcat_free(&ref);
    clred_ctx_destroy(ctx);
    return rc;
}
