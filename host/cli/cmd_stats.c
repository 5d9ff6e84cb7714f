/* clred stats: sigma-clipped statistics of images or a region of them. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred stats [options] file...\n\n"
           "Sigma-clipped statistics of each image, computed on the OpenCL device: mean, median,\n"
           "std, MAD, min and max of the pixels kept, with the numbers of pixels kept, rejected\n"
           "and invalid (NaN, infinite or masked in a clred MASK plane), and the iterations run.\n"
           "Clipping follows astropy.stats.sigma_clipped_stats (cenfunc median, stdfunc std):\n"
           "each iteration keeps centre - low*spread <= x <= centre + high*spread until nothing\n"
           "changes or --iters is reached; std is the population std (ddof=0); mad is raw\n"
           "(multiply by 1.4826 for a sigma). The median and MAD are exact.\n\n"
           "options:\n"
           "  --region X0:X1,Y0:Y1  only pixels X0 <= x < X1, Y0 <= y < Y1 (0-based, half-open)\n"
           "  --section '[x1:x2,y1:y2]'  the same as a FITS section (1-based, inclusive)\n"
           "  --sigma S             both clipping thresholds, in units of the spread (default 3)\n"
           "  --sigma-low S         lower threshold (default 3)\n"
           "  --sigma-high S        upper threshold (default 3)\n"
           "  --iters N             at most N clipping iterations; 0 = no clipping (default 5)\n"
           "  --mad                 spread = 1.4826 * MAD instead of the std\n"
           "  --mean-centre         centre on the mean instead of the median\n"
           "  --json                one JSON object on stdout (non-finite values as null)\n"
           "  --quality             also the frame's quality: seeing FWHM (px, and arcsec with a WCS),\n"
           "                        ellipticity, sky level and noise, stars detected, MAGZP and the\n"
           "                        5-sigma limiting magnitude in a radius-FWHM aperture (with MAGZP),\n"
           "                        astrometric RMS (ASTRRMS)\n"
           "  --device N|NAME       OpenCL device (default: CLRED_DEVICE, else first GPU, else CPU)\n"
           "  -h, --help            this text\n\n"
           "Files are FITS (an HDU may be selected: 'file.fits[1]') or .npy. An image with no\n"
           "usable pixel is reported with npix 0 and NaN (JSON null) statistics.\n\n"
           "example:\n"
           "  clred stats --section '[101:900,51:950]' --sigma 3 --iters 10 bias.fits\n"
           "  clred stats --json --mad --region 0:512,0:512 flat1.fits flat2.fits\n"
           "  clred stats --quality --json stack.fits\n\n"
           "exit status: 0 ok, 1 bad input file, 2 usage, 3 device failure.\n");
}

/* Parses "X0:X1,Y0:Y1" (0-based, half-open). */
static int parse_region(const char *text, clred_stats_opts *o)
{
    unsigned long long v[4];
    const char *p = text;
    static const char seps[4] = {':', ',', ':', '\0'};
    for (int i = 0; i < 4; i++) {
        char *end;
        if (*p < '0' || *p > '9')
            return 0;
        errno = 0;
        v[i] = strtoull(p, &end, 10);
        if (errno || *end != seps[i] || v[i] > SIZE_MAX / 2)
            return 0;
        p = end + (i < 3);
    }
    if (v[0] >= v[1] || v[2] >= v[3])
        return 0;
    o->x0 = (size_t)v[0], o->x1 = (size_t)v[1], o->y0 = (size_t)v[2], o->y1 = (size_t)v[3];
    return 1;
}

static void json_number(double v)
{
    if (isfinite(v))
        printf("%.17g", v);
    else
        printf("null");
}

static void json_quality(const clred_frame_quality *q)
{
    const double vals[] = {q->fwhm, q->fwhm_arcsec, q->ellipticity, q->sky, q->sky_noise, q->zeropoint,
                           q->limit_mag, q->astrom_rms};
    const char *names[] = {"fwhm", "fwhm_arcsec", "ellipticity", "sky", "sky_noise", "zeropoint", "limit_mag",
                           "astrom_rms"};
    printf(", \"quality\": {\"nstars\": %zu", q->nstars);
    for (int k = 0; k < 8; k++) {
        printf(", \"%s\": ", names[k]);
        json_number(vals[k]);
    }
    printf("}");
}

static void print_json(char **files, const clred_stats *st, const clred_frame_quality *q, size_t n,
                       const clred_stats_opts *o, const char *device)
{
    printf("{\"device\": ");
    cli_json_string(stdout, device);
    printf(", \"options\": {\"sigma_lower\": %.17g, \"sigma_upper\": %.17g, \"max_iters\": %d, \"centre\": \"%s\", "
           "\"spread\": \"%s\", \"region\": ",
           o->sigma_lower, o->sigma_upper, o->max_iters, o->centre_mean ? "mean" : "median",
           o->spread_mad ? "mad" : "std");
    if (o->x1)
        printf("[%zu, %zu, %zu, %zu]", o->x0, o->x1, o->y0, o->y1);
    else
        printf("null");
    printf("},\n \"files\": [");
    for (size_t i = 0; i < n; i++) {
        printf("%s\n  {\"file\": ", i ? "," : "");
        cli_json_string(stdout, files[i]);
        const double vals[] = {st[i].mean, st[i].median, st[i].std, st[i].mad, st[i].min, st[i].max};
        const char *names[] = {"mean", "median", "std", "mad", "min", "max"};
        for (int k = 0; k < 6; k++) {
            printf(", \"%s\": ", names[k]);
            json_number(vals[k]);
        }
        printf(", \"npix\": %zu, \"rejected\": %zu, \"invalid\": %zu, \"iterations\": %d", st[i].npix,
               st[i].nrejected, st[i].ninvalid, st[i].iterations);
        if (q)
            json_quality(&q[i]);
        printf("}");
    }
    printf("\n]}\n");
}

static void print_quality(char **files, const clred_frame_quality *q, size_t n)
{
    printf("\n%-8s %-8s %-8s %-7s %-12s %-12s %-8s %-8s %-8s  %s\n", "fwhm", "fwhm\"", "ellip", "nstars", "sky",
           "sky_noise", "magzp", "maglim", "astrms\"", "file");
    for (size_t i = 0; i < n; i++)
        printf("%-8.3f %-8.3f %-8.3f %-7zu %-12.6g %-12.6g %-8.3f %-8.3f %-8.3f  %s\n", q[i].fwhm, q[i].fwhm_arcsec,
               q[i].ellipticity, q[i].nstars, q[i].sky, q[i].sky_noise, q[i].zeropoint, q[i].limit_mag,
               q[i].astrom_rms, files[i]);
}

static void print_table(char **files, const clred_stats *st, size_t n)
{
    printf("%-14s %-14s %-12s %-12s %-12s %-12s %10s %9s %9s %5s  %s\n", "mean", "median", "std", "mad", "min", "max",
           "npix", "rejected", "invalid", "iters", "file");
    for (size_t i = 0; i < n; i++)
        printf("%-14.8g %-14.8g %-12.6g %-12.6g %-12.8g %-12.8g %10zu %9zu %9zu %5d  %s\n", st[i].mean, st[i].median,
               st[i].std, st[i].mad, st[i].min, st[i].max, st[i].npix, st[i].nrejected, st[i].ninvalid,
               st[i].iterations, files[i]);
}

enum { OPT_REGION = 256, OPT_SECTION, OPT_SIGMA, OPT_SIGMA_LOW, OPT_SIGMA_HIGH, OPT_ITERS, OPT_MAD, OPT_MEAN,
       OPT_JSON, OPT_DEVICE, OPT_QUALITY };

int cmd_stats(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"region", required_argument, 0, OPT_REGION},   {"section", required_argument, 0, OPT_SECTION},
        {"sigma", required_argument, 0, OPT_SIGMA},     {"sigma-low", required_argument, 0, OPT_SIGMA_LOW},
        {"sigma-high", required_argument, 0, OPT_SIGMA_HIGH}, {"iters", required_argument, 0, OPT_ITERS},
        {"mad", no_argument, 0, OPT_MAD},               {"mean-centre", no_argument, 0, OPT_MEAN},
        {"json", no_argument, 0, OPT_JSON},             {"device", required_argument, 0, OPT_DEVICE},
        {"quality", no_argument, 0, OPT_QUALITY},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    clred_stats_opts o = clred_stats_defaults();
    int json = 0, have_region = 0, quality = 0;
    const char *device = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': help(); return EXIT_OK;
        case OPT_REGION:
            if (have_region++)
                return cli_usage_error("stats", "give one --region or --section");
            if (!parse_region(optarg, &o))
                return cli_usage_error("stats", "--region expects X0:X1,Y0:Y1 with X0 < X1 and Y0 < Y1 "
                                                "(0-based, half-open), got '%s'", optarg);
            break;
        case OPT_SECTION: {
            if (have_region++)
                return cli_usage_error("stats", "give one --region or --section");
            clred_section s;
            if (clred_section_parse(optarg, &s) != CLRED_OK)
                return cli_usage_error("stats", "--section: %s", clred_last_error());
            o.x0 = s.x0, o.x1 = s.x1, o.y0 = s.y0, o.y1 = s.y1;
            break;
        }
        case OPT_SIGMA:
            if (!cli_parse_double("stats", "--sigma", optarg, &o.sigma_lower))
                return EXIT_USAGE;
            o.sigma_upper = o.sigma_lower;
            break;
        case OPT_SIGMA_LOW:
            if (!cli_parse_double("stats", "--sigma-low", optarg, &o.sigma_lower))
                return EXIT_USAGE;
            break;
        case OPT_SIGMA_HIGH:
            if (!cli_parse_double("stats", "--sigma-high", optarg, &o.sigma_upper))
                return EXIT_USAGE;
            break;
        case OPT_ITERS:
            if (!cli_parse_int("stats", "--iters", optarg, &o.max_iters))
                return EXIT_USAGE;
            break;
        case OPT_MAD: o.spread_mad = 1; break;
        case OPT_MEAN: o.centre_mean = 1; break;
        case OPT_JSON: json = 1; break;
        case OPT_QUALITY: quality = 1; break;
        case OPT_DEVICE: device = optarg; break;
        default:
            return cli_usage_error("stats", "unknown option or missing value in '%s'", argv[optind - 1]);
        }
    }
    if (!(o.sigma_lower >= 0 && isfinite(o.sigma_lower)) || !(o.sigma_upper >= 0 && isfinite(o.sigma_upper)))
        return cli_usage_error("stats", "sigma thresholds must be finite and >= 0");
    if (o.max_iters < 0)
        return cli_usage_error("stats", "--iters must be >= 0");
    if (optind >= argc)
        return cli_usage_error("stats", "no input file");

    size_t nfiles = (size_t)(argc - optind);
    char **files = argv + optind;
    int rc = cli_check_inputs("stats", (const char *const *)files, nfiles);
    if (rc != EXIT_OK)
        return rc;
    clred_stats *results = calloc(nfiles, sizeof *results);
    clred_frame_quality *q = quality ? calloc(nfiles, sizeof *q) : NULL;
    if (!results || (quality && !q))
        return cli_usage_error("stats", "out of memory");
    clred_ctx *ctx = NULL;
    rc = cli_open("stats", device, &ctx);
    /* Every file is measured before anything is printed, so a bad file leaves no partial table or JSON. */
    for (size_t i = 0; rc == EXIT_OK && i < nfiles; i++) {
        cli_progress("stats: %s (%zu/%zu)", files[i], i + 1, nfiles);
        clred_image img = {0};
        clred_status s = clred_image_read_2d(files[i], &img);
        if (s == CLRED_OK) {
            s = clred_image_stats(ctx, &img, &o, &results[i]);
            if (s == CLRED_OK && q)
                s = clred_measure_quality(ctx, &img, &q[i]);
            if (s != CLRED_OK) {
                /* Name the file: the library's message names only the region or device. */
                fprintf(stderr, "clred stats: %s: %s\n", files[i], clred_last_error());
                rc = cli_exit_code(s);
            }
        } else {
            rc = cli_fail("stats", s);
        }
        clred_image_free(&img);
    }
    cli_progress_done();
    if (rc == EXIT_OK) {
        if (json)
            print_json(files, results, q, nfiles, &o, clred_ctx_device(ctx)->name);
        else
            print_table(files, results, nfiles);
        if (!json && q)
            print_quality(files, q, nfiles);
    }
    clred_ctx_destroy(ctx);
    free(results);
    free(q);
    return rc;
}
