/* clred lightcurve: forced photometry of fixed targets on a series of images. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred lightcurve IMAGE... --targets TARGETS.csv (-o LC.fits | --csv LC.csv) [options]\n\n"
           "Forced aperture photometry of the targets on every image (direct, or difference\n"
           "images with --difference), one row per target and image: TARGET, IMAGE, MJD (mid-\n"
           "exposure: MJD-OBS, else DATE-OBS, plus half of EXPTIME), X, Y, FLUX, FLUX_ERR (from\n"
           "the VAR plane, else the annulus), MAG, MAG_ERR (with the image's MAGZP, else\n"
           "--zeropoint) and FLAGS. TARGETS.csv has a header line with columns x, y (0-based\n"
           "pixels, the same on every image) or ra, dec (degrees, placed through each image's\n"
           "WCS), and optionally ref_flux: the target's flux on the reference, added back on\n"
           "difference images so that FLUX is the total flux.\n\n"
           "  --targets FILE        the targets (required)\n"
           "  --difference          the images are differences: no background annulus\n"
           "  --radius R            aperture radius in pixels (default 5)\n"
           "  --annulus IN,OUT      background annulus for direct images (default 8,12)\n"
           "  --zeropoint Z         magnitude zero point when an image has no MAGZP (default 25)\n"
           "  --psf FILE|measure    forced PSF photometry instead of apertures: the PSF image\n"
           "                        FILE, or one measured on each (direct) image; a local sky\n"
           "                        is fitted on direct images, none on differences\n"
           "  --psf-size N          largest size of the PSF read (odd; default uncut)\n"
           "  --fit-radius R        PSF fit radius in pixels (default 2 x the PSF's FWHM)\n"
           "  -o, --output FILE     FITS table\n"
           "  --csv FILE            CSV table\n"
           "  --overwrite           replace existing outputs\n"
           "  --device D            OpenCL device (index or name)\n"
           "  --json                print a JSON summary on stdout\n\n"
           "example:\n"
           "  clred lightcurve diff_*.fits --difference --targets event.csv --radius 4 --csv event_lc.csv\n");
}

int cmd_lightcurve(int argc, char **argv)
{
    enum { O_TARGETS = 256, O_DIFF, O_RADIUS, O_ANNULUS, O_ZP, O_CSV, O_OVERWRITE, O_DEVICE, O_JSON, O_PSF, O_PSF_SIZE,
           O_FIT_RADIUS };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"targets", required_argument, 0, O_TARGETS},
                                         {"difference", no_argument, 0, O_DIFF},
                                         {"radius", required_argument, 0, O_RADIUS},
                                         {"annulus", required_argument, 0, O_ANNULUS},
                                         {"zeropoint", required_argument, 0, O_ZP},
                                         {"csv", required_argument, 0, O_CSV},
                                         {"overwrite", no_argument, 0, O_OVERWRITE},
                                         {"device", required_argument, 0, O_DEVICE},
                                         {"json", no_argument, 0, O_JSON},
                                         {"psf", required_argument, 0, O_PSF},
                                         {"psf-size", required_argument, 0, O_PSF_SIZE},
                                         {"fit-radius", required_argument, 0, O_FIT_RADIUS},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "lightcurve", *output = NULL, *csv = NULL, *tpath = NULL, *device = NULL, *psfpath = NULL;
    int overwrite = 0, json = 0, c, psf_size = 0;
    clred_lightcurve_opts o = clred_lightcurve_defaults();
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case O_TARGETS: tpath = optarg; break;
        case O_DIFF: o.difference = 1; break;
        case O_RADIUS:
            if (!cli_parse_double(cmd, "--radius", optarg, &o.phot.radius)) return EXIT_USAGE;
            break;
        case O_ANNULUS:
            if (sscanf(optarg, "%lf,%lf", &o.phot.annulus_in, &o.phot.annulus_out) != 2)
                return cli_usage_error(cmd, "--annulus expects IN,OUT in pixels, got '%s'", optarg);
            o.difference_annulus = 1;
            break;
        case O_ZP:
            if (!cli_parse_double(cmd, "--zeropoint", optarg, &o.phot.zeropoint)) return EXIT_USAGE;
            break;
        case O_CSV: csv = optarg; break;
        case O_OVERWRITE: overwrite = 1; break;
        case O_DEVICE: device = optarg; break;
        case O_JSON: json = 1; break;
        case O_PSF: psfpath = optarg; break;
        case O_PSF_SIZE:
            if (!cli_parse_int(cmd, "--psf-size", optarg, &psf_size)) return EXIT_USAGE;
            if (psf_size < 0 || (psf_size > 0 && (psf_size % 2 == 0 || psf_size < 3)))
                return cli_usage_error(cmd, "--psf-size must be odd and >= 3");
            break;
        case O_FIT_RADIUS:
            if (!cli_parse_double(cmd, "--fit-radius", optarg, &o.psf_fit_radius)) return EXIT_USAGE;
            if (!(o.psf_fit_radius > 0))
                return cli_usage_error(cmd, "--fit-radius must be > 0");
            break;
        case 'h': help(); return EXIT_OK;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "no input images");
    if (!tpath)
        return cli_usage_error(cmd, "no targets: give --targets TARGETS.csv (columns x, y or ra, dec)");
    if (!output && !csv)
        return cli_usage_error(cmd, "no output: give -o LC.fits and/or --csv LC.csv");
    if (!(o.phot.radius > 0))
        return cli_usage_error(cmd, "--radius must be > 0");
    if ((psf_size || o.psf_fit_radius > 0) && !psfpath)
        return cli_usage_error(cmd, "--psf-size and --fit-radius need --psf");
    int measure_psf = psfpath && !strcmp(psfpath, "measure");
    if (measure_psf && o.difference)
        return cli_usage_error(cmd, "--psf measure needs direct images: give the PSF of the differences");
    const char *const *paths = (const char *const *)argv + optind;
    size_t n = (size_t)(argc - optind);
    const char *outs[2] = {output, csv};
    if (output && csv && !strcmp(output, csv))
        return cli_usage_error(cmd, "%s is named for two outputs", output);
    const char **inputs = malloc((n + 1) * sizeof *inputs);
    if (!inputs)
        return cli_usage_error(cmd, "out of memory");
    memcpy(inputs, paths, n * sizeof *inputs);
    inputs[n] = tpath;
    for (int k = 0; k < 2; k++) {
        /* the PSF file is an input too: it takes the place of the targets in a second check */
        clred_status st = outs[k] ? clred_output_check(outs[k], inputs, n + 1, overwrite) : CLRED_OK;
        if (st == CLRED_OK && outs[k] && psfpath && !measure_psf) {
            inputs[n] = psfpath;
            st = clred_output_check(outs[k], inputs, n + 1, overwrite);
            inputs[n] = tpath;
        }
        if (st != CLRED_OK) {
            free(inputs);
            return cli_fail(cmd, st);
        }
    }
    free(inputs);
    clred_lc_targets t;
    int sky = 0;
    clred_psf psf = {0};
    clred_status st = clred_lc_targets_read(tpath, &t, &sky);
    if (st == CLRED_OK && psfpath && !measure_psf) {
        st = clred_psf_read(psfpath, (size_t)psf_size, &psf);
        o.psf = &psf;
    }
    o.psf_measure = measure_psf;
    if (st != CLRED_OK) {
        clred_lc_targets_free(&t);
        return cli_fail(cmd, st);
    }
    o.sky = sky;
    clred_ctx *ctx = NULL;
    clred_lc_point *p = NULL;
    size_t np = 0;
    int rc = cli_open(cmd, device, &ctx);
    if (rc == EXIT_OK) {
        st = clred_lightcurve_files(ctx, paths, n, &t, &o, &p, &np);
        if (st == CLRED_OK)
            st = clred_lc_write(output, csv, p, np, overwrite);
        rc = st == CLRED_OK ? EXIT_OK : cli_fail(cmd, st);
    }
    if (rc == EXIT_OK) {
        size_t flagged = 0;
        for (size_t i = 0; i < np; i++)
            flagged += p[i].flags != 0;
        if (json)
            printf("{\"images\": %zu, \"targets\": %zu, \"points\": %zu, \"flagged\": %zu, \"sky\": %s}\n", n, t.n, np,
                   flagged, sky ? "true" : "false");
        else
            printf("lightcurve: %zu targets on %zu images: %zu points (%zu flagged)\n", t.n, n, np, flagged);
    }
    free(p);
    clred_psf_free(&psf);
    clred_lc_targets_free(&t);
    clred_ctx_destroy(ctx);
    return rc;
}
