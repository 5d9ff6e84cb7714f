/* clred subtract, clred candidates, clred simulate-pair: difference imaging. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- clred subtract */

static void subtract_help(void)
{
    printf("usage: clred subtract NEW REF -o DIFF.fits [options]\n\n"
           "ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016) of a reference from a\n"
           "new image on the same pixel grid, on the OpenCL device. DIFF.fits holds SCI (the\n"
           "difference D / F_D in the new image's flux units), VAR, MASK (inputs' bits grown;\n"
           "NO_DATA where either input was NaN or masked), SCORR (S_corr, in sigma: the\n"
           "detection statistic with source-noise and astrometric terms), FLUX (the PSF flux\n"
           "of a point source at each pixel) and FLUXVAR. PSFs are read or measured from\n"
           "isolated stars. Candidates: peaks of |S_corr| >= --thresh, both signs.\n\n"
           "  -o, --output FILE       the difference (MEF)\n"
           "      --method M          zogy (default) or al (Alard-Lupton PSF matching, HOTPANTS-like)\n"
           "      --new-psf F, --ref-psf F     PSF images (default: measured from each image)\n"
           "      --psf-size N        odd: the largest PSF read / the size measured (default: uncut / 25)\n"
           "      --psf-order N       measured PSFs vary over the image as polynomials of order N\n"
           "                          at most (0-2, default 0; each image's the order that best\n"
           "                          predicts its stars left out of the fit; zogy takes them at\n"
           "                          each tile's centre)\n"
           "      --psf-variation     with --psf-order: S_corr's variance also counts how far the models\n"
           "                          vary over a tile (fewer false candidates where the seeing varies,\n"
           "                          some transients on galaxies lost; off by default)\n"
           "      --new-noise F, --ref-noise F 1-sigma noise images (become VAR)\n"
           "      --new-mask F, --ref-mask F   nonzero pixels are flagged BAD and left out\n"
           "      --fn F, --fr F      flux zero points (default 1, 1)\n"
           "      --astrom-sigma S    registration noise in px, both axes (default 0)\n"
           "      --psf-err E         the PSF models' relative error counted in S_corr's variance, both\n"
           "                          images (default: each measured model's estimate, core and wings,\n"
           "                          0 for PSF files; E is a constant error without the wings, 0 turns\n"
           "                          it off); the diff's PSFERRN / PSFERRR / PSFWING* say what was used\n"
           "      --no-background     the inputs are background-subtracted already\n"
           "      --grow N            grow unusable pixels by N px in the masks (default: the PSF FWHM)\n"
           "      --renormalize       divide S_corr (AL: DETECT) by its robust std (noise the VAR planes\n"
           "                          understate, e.g. the correlated noise of resampled mosaics)\n"
           "      --tile N            tiles of N px cores (default: the whole image when it fits the device)\n"
           "      --thresh T          candidate threshold on |S_corr| (default 5)\n"
           "      --positive-only     no fading (negative) candidates\n"
           "      --candidates FILE   candidate catalog: .csv, .json or a FITS table\n"
           "      --cutouts FILE      63 x 63 cutouts of new, reference and difference (one MEF)\n"
           "      --alerts DIR        one alert packet per candidate, DIR/<candid>.avro, in ZTF's Avro\n"
           "                          schema (v3.3 subset) with gzipped FITS cutouts; magnitudes from\n"
           "                          MAGZP (default 25), jd from MJD-OBS/DATE-OBS\n"
           "      --psf-out FILE      the difference's PSF P_D\n"
           "      --overwrite         replace existing outputs\n"
           "      --device D          OpenCL device (index or name)\n"
           "      --json              print a JSON summary on stdout\n\n"
           "Alard-Lupton (--method al): DIFF.fits holds SCI (D = new - matched reference),\n"
           "VAR (both inputs' variances through the kernel), MASK (grown by the kernel),\n"
           "DETECT (the PSF-matched S/N) and with --decorrelate DECORR and DECORRVAR; KSUM,\n"
           "CONVOL and PHOTNORM in the header. PSFs (given or measured) set the seeing.\n"
           "Candidates: peaks of |DETECT| >= --thresh.\n"
           "      --planes LIST       the planes written after SCI, VAR and MASK: a comma list of\n"
           "                          conv (CONV, the convolved image), score (SCORE, D / sigma per\n"
           "                          pixel), detect, decorr (DECORR and DECORRVAR), or all, or none\n"
           "                          (default detect,decorr)\n"
           "      --convolve t|i|auto which image is convolved: t the reference, i the new image,\n"
           "                          auto the sharper one (default; HOTPANTS -c)\n"
           "      --normalize t|i     the difference in the reference's (t, default) or the new\n"
           "                          image's (i) photometric system (HOTPANTS -n)\n"
           "      --ng \"N D1 S1 ...\"  N Gaussians, each a degree and a sigma in units of the matching\n"
           "                          sigma (default \"3 6 0.7 4 1.5 2 3.0\"; HOTPANTS -ng)\n"
           "      --hw N              kernel half-width, px (default 3 x the larger FWHM; HOTPANTS -r)\n"
           "      --rss N             half-size of a stamp's fitted box (default: the kernel's; -rss)\n"
           "      --ko N, --bgo N     spatial orders of the kernel (0..3, default 2) and of the\n"
           "                          differential background (0..2, default 1); the kernel's is\n"
           "                          the one up to N that best predicts stamps left out of the fit\n"
           "      --ko-fixed          the kernel's spatial order is --ko's (HOTPANTS' -ko)\n"
           "      --bg-stamps         keep the differential background the stamps' fit gives (HOTPANTS);\n"
           "                          by default it is re-fitted on the difference's own sky\n"
           "      --tl V --tu V --il V --iu V  valid ranges of the reference (t) and new image (i)\n"
           "      --max-stamps N      stamps on isolated stars (default 150)\n"
           "      --fit-mask F        an image on the pair's grid whose nonzero pixels are left out of\n"
           "                          the kernel's fit (no stamp on them, nothing fitted that reads\n"
           "                          them) but subtracted and searched as any; flagged NOFIT\n"
           "      --fit-only F        the other way round: only F's nonzero pixels are fitted (the\n"
           "                          convention of SFFT's masked images)\n"
           "      --decorrelate       also the decorrelated difference (Rubin DMTN-021); the score\n"
           "                          and the candidates then use it\n"
           "      --kernel-out FILE   the kernel solution: kernel images on a 3 x 3 grid and a table\n\n"
           "example:\n"
           "  clred simulate-pair -o pair\n"
           "  clred subtract pair/new.fits pair/ref.fits -o diff.fits --new-psf pair/new_psf.fits \\\n"
           "      --ref-psf pair/ref_psf.fits --candidates cands.csv --cutouts cutouts.fits\n");
}

typedef struct {
    const char *positional[3];
    int npos;
    const char *output, *device;
    clred_subtract_job job;
    int json;
} sub_args;

enum { S_METHOD = 256, S_NEW_PSF, S_REF_PSF, S_PSF_SIZE, S_PSF_ORDER, S_NEW_NOISE, S_REF_NOISE, S_NEW_MASK, S_REF_MASK, S_FN, S_FR,
       S_ASTROM, S_PSF_ERR, S_NO_BKG, S_GROW, S_THRESH, S_POSITIVE, S_CANDS, S_CUTOUTS, S_PSF_OUT, S_OVERWRITE, S_DEVICE, S_JSON,
       S_NEW, S_REF, S_RENORM, S_TILE, S_CONVOLVE, S_NORMALIZE, S_NG, S_HW, S_RSS, S_KO, S_KOFIXED, S_BGSTAMPS, S_BGO, S_TL, S_TU,
       S_IL, S_IU, S_MAXSTAMPS, S_DECORR, S_KOUT, S_ALERTS, S_PLANES, S_PSF_VARIATION, S_FIT_MASK, S_FIT_ONLY };

static const struct option sub_opts[] = {{"output", required_argument, 0, 'o'},
                                         {"method", required_argument, 0, S_METHOD},
                                         {"new-psf", required_argument, 0, S_NEW_PSF},
                                         {"ref-psf", required_argument, 0, S_REF_PSF},
                                         {"psf", required_argument, 0, S_NEW_PSF},
                                         {"psf-size", required_argument, 0, S_PSF_SIZE},
                                         {"psf-order", required_argument, 0, S_PSF_ORDER},
                                         {"psf-variation", no_argument, 0, S_PSF_VARIATION},
                                         {"new-noise", required_argument, 0, S_NEW_NOISE},
                                         {"ref-noise", required_argument, 0, S_REF_NOISE},
                                         {"new-mask", required_argument, 0, S_NEW_MASK},
                                         {"ref-mask", required_argument, 0, S_REF_MASK},
                                         {"fit-mask", required_argument, 0, S_FIT_MASK},
                                         {"fit-only", required_argument, 0, S_FIT_ONLY},
                                         {"fn", required_argument, 0, S_FN},
                                         {"fr", required_argument, 0, S_FR},
                                         {"astrom-sigma", required_argument, 0, S_ASTROM},
                                         {"psf-err", required_argument, 0, S_PSF_ERR},
                                         {"no-background", no_argument, 0, S_NO_BKG},
                                         {"grow", required_argument, 0, S_GROW},
                                         {"renormalize", no_argument, 0, S_RENORM},
                                         {"tile", required_argument, 0, S_TILE},
                                         {"thresh", required_argument, 0, S_THRESH},
                                         {"positive-only", no_argument, 0, S_POSITIVE},
                                         {"candidates", required_argument, 0, S_CANDS},
                                         {"cutouts", required_argument, 0, S_CUTOUTS},
                                         {"alerts", required_argument, 0, S_ALERTS},
                                         {"psf-out", required_argument, 0, S_PSF_OUT},
                                         {"new", required_argument, 0, S_NEW},
                                         {"ref", required_argument, 0, S_REF},
                                         {"overwrite", no_argument, 0, S_OVERWRITE},
                                         {"device", required_argument, 0, S_DEVICE},
                                         {"json", no_argument, 0, S_JSON},
                                         {"convolve", required_argument, 0, S_CONVOLVE},
                                         {"normalize", required_argument, 0, S_NORMALIZE},
                                         {"ng", required_argument, 0, S_NG},
                                         {"hw", required_argument, 0, S_HW},
                                         {"rss", required_argument, 0, S_RSS},
                                         {"ko", required_argument, 0, S_KO},
                                         {"ko-fixed", no_argument, 0, S_KOFIXED},
                                         {"bg-stamps", no_argument, 0, S_BGSTAMPS},
                                         {"bgo", required_argument, 0, S_BGO},
                                         {"tl", required_argument, 0, S_TL},
                                         {"tu", required_argument, 0, S_TU},
                                         {"il", required_argument, 0, S_IL},
                                         {"iu", required_argument, 0, S_IU},
                                         {"max-stamps", required_argument, 0, S_MAXSTAMPS},
                                         {"decorrelate", no_argument, 0, S_DECORR},
                                         {"kernel-out", required_argument, 0, S_KOUT},
                                         {"planes", required_argument, 0, S_PLANES},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};

/* --planes: all, none or a comma list of conv, score, detect, decorr. */
static int parse_al_planes(const char *arg, unsigned *planes)
{
    if (strcmp(arg, "all") == 0) {
        *planes = CLRED_AL_WRITE_ALL;
        return 1;
    }
    if (strcmp(arg, "none") == 0) {
        *planes = 0;
        return 1;
    }
    static const char *const names[] = {"conv", "score", "detect", "decorr"};
    static const unsigned bits[] = {CLRED_AL_WRITE_CONV, CLRED_AL_WRITE_SCORE, CLRED_AL_WRITE_DETECT,
                                    CLRED_AL_WRITE_DECORR};
    unsigned got = 0;
    const char *p = arg;
    while (*p) {
        size_t n = strcspn(p, ",");
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (strlen(names[i]) == n && strncmp(p, names[i], n) == 0)
                k = i;
        if (k < 0)
            return 0;
        got |= bits[k];
        p += n;
        if (*p == ',' && *++p == '\0')
            return 0;
    }
    if (!got)
        return 0;
    *planes = got;
    return 1;
}

/* Shared by subtract and candidates; cmd names the command in messages. */
static int parse(const char *cmd, int argc, char **argv, sub_args *a, const char **new_opt, const char **ref_opt,
                 void (*help)(void))
{
    memset(a, 0, sizeof *a);
    a->job = clred_subtract_job_defaults();
    int c, ival, planes_given = 0;
    double d;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", sub_opts, NULL)) != -1) {
        switch (c) {
        case 'o': a->output = optarg; break;
        case S_METHOD: {
            static const char *const methods[] = {"zogy", "al"};
            int m;
            if (!cli_parse_choice(cmd, "--method", optarg, methods, 2, &m)) return EXIT_USAGE;
            a->job.method = m == 1 ? CLRED_DIFF_AL : CLRED_DIFF_ZOGY;
            break;
        }
        case S_CONVOLVE: {
            static const char *const conv[] = {"auto", "t", "i"};
            int m;
            if (!cli_parse_choice(cmd, "--convolve", optarg, conv, 3, &m)) return EXIT_USAGE;
            a->job.al.convolve = m == 1 ? CLRED_AL_CONVOLVE_REF : m == 2 ? CLRED_AL_CONVOLVE_NEW : CLRED_AL_CONVOLVE_AUTO;
            break;
        }
        case S_NORMALIZE: {
            static const char *const norm[] = {"t", "i"};
            int m;
            if (!cli_parse_choice(cmd, "--normalize", optarg, norm, 2, &m)) return EXIT_USAGE;
            a->job.al.normalize = m == 1 ? CLRED_AL_NORM_NEW : CLRED_AL_NORM_REF;
            break;
        }
        case S_NG: {
            /* "N D1 S1 D2 S2 ..." as HOTPANTS -ng */
            char *end;
            const char *p = optarg;
            long n = strtol(p, &end, 10);
            if (end == p || n < 1 || n > CLRED_AL_MAX_GAUSS)
                return cli_usage_error(cmd, "--ng: N Gaussians (1..%d), then a degree and a sigma each", CLRED_AL_MAX_GAUSS);
            a->job.al.ngauss = (int)n;
            for (long k = 0; k < n; k++) {
                p = end;
                long dg = strtol(p, &end, 10);
                if (end == p || dg < 0 || dg > 10)
                    return cli_usage_error(cmd, "--ng: degree %ld of '%s' missing or not in 0..10", k + 1, optarg);
                p = end;
                double sg = strtod(p, &end);
                if (end == p || !(sg > 0))
                    return cli_usage_error(cmd, "--ng: sigma %ld of '%s' missing or not positive", k + 1, optarg);
                a->job.al.gauss_deg[k] = (int)dg;
                a->job.al.gauss_scale[k] = sg;
            }
            while (*end == ' ')
                end++;
            if (*end)
                return cli_usage_error(cmd, "--ng: unexpected '%s'", end);
            break;
        }
        case S_HW:
            if (!cli_parse_int(cmd, "--hw", optarg, &a->job.al.half_width)) return EXIT_USAGE;
            if (a->job.al.half_width < 1 || a->job.al.half_width > 100)
                return cli_usage_error(cmd, "--hw must be 1..100");
            break;
        case S_RSS:
            if (!cli_parse_int(cmd, "--rss", optarg, &a->job.al.fit_half)) return EXIT_USAGE;
            if (a->job.al.fit_half < 1 || a->job.al.fit_half > 100)
                return cli_usage_error(cmd, "--rss must be 1..100");
            break;
        case S_KO:
            if (!cli_parse_int(cmd, "--ko", optarg, &a->job.al.kernel_order)) return EXIT_USAGE;
            if (a->job.al.kernel_order < 0 || a->job.al.kernel_order > 3)
                return cli_usage_error(cmd, "--ko must be 0..3");
            break;
        case S_KOFIXED: a->job.al.select_order = 0; break;
        case S_BGSTAMPS: a->job.al.sky_refit = 0; break;
        case S_BGO:
            if (!cli_parse_int(cmd, "--bgo", optarg, &a->job.al.bg_order)) return EXIT_USAGE;
            if (a->job.al.bg_order < 0 || a->job.al.bg_order > 2)
                return cli_usage_error(cmd, "--bgo must be 0..2");
            break;
        case S_TL:
            if (!cli_parse_double(cmd, "--tl", optarg, &a->job.al.t_lower)) return EXIT_USAGE;
            break;
        case S_TU:
            if (!cli_parse_double(cmd, "--tu", optarg, &a->job.al.t_upper)) return EXIT_USAGE;
            break;
        case S_IL:
            if (!cli_parse_double(cmd, "--il", optarg, &a->job.al.i_lower)) return EXIT_USAGE;
            break;
        case S_IU:
            if (!cli_parse_double(cmd, "--iu", optarg, &a->job.al.i_upper)) return EXIT_USAGE;
            break;
        case S_MAXSTAMPS:
            if (!cli_parse_int(cmd, "--max-stamps", optarg, &a->job.al.max_stamps)) return EXIT_USAGE;
            if (a->job.al.max_stamps < 1)
                return cli_usage_error(cmd, "--max-stamps must be positive");
            break;
        case S_DECORR: a->job.al.decorrelate = 1; break;
        case S_KOUT: a->job.kernel_out = optarg; break;
        case S_PLANES:
            planes_given = 1;
            if (!parse_al_planes(optarg, &a->job.al_planes))
                return cli_usage_error(cmd, "--planes takes all, none or a comma list of conv, score, detect, decorr, "
                                            "not '%s'",
                                       optarg);
            break;
        case S_NEW_PSF: a->job.new_psf = optarg; break;
        case S_REF_PSF: a->job.ref_psf = optarg; break;
        case S_PSF_ORDER:
            if (!cli_parse_int(cmd, "--psf-order", optarg, &ival)) return EXIT_USAGE;
            if (ival < 0 || ival > 2)
                return cli_usage_error(cmd, "--psf-order must be 0, 1 or 2");
            a->job.psf.order = ival;
            break;
        case S_PSF_VARIATION: a->job.zogy.psf_variation = 1; break;
        case S_PSF_SIZE:
            if (!cli_parse_int(cmd, "--psf-size", optarg, &ival)) return EXIT_USAGE;
            if (ival < 0 || (ival > 0 && (ival % 2 == 0 || ival < 5)))
                return cli_usage_error(cmd, "--psf-size must be odd and >= 5");
            a->job.psf_size = (size_t)ival;
            if (ival > 0)
                a->job.psf.size = (size_t)ival;
            break;
        case S_NEW_NOISE: a->job.new_noise = optarg; break;
        case S_REF_NOISE: a->job.ref_noise = optarg; break;
        case S_NEW_MASK: a->job.new_mask = optarg; break;
        case S_REF_MASK: a->job.ref_mask = optarg; break;
        case S_FIT_MASK:
        case S_FIT_ONLY:
            if (a->job.fit_mask)
                return cli_usage_error(cmd, "give one fit mask: --fit-mask or --fit-only");
            a->job.fit_mask = optarg;
            a->job.fit_mask_selects = c == S_FIT_ONLY;
            break;
        case S_FN:
            if (!cli_parse_double(cmd, "--fn", optarg, &a->job.zogy.fn)) return EXIT_USAGE;
            break;
        case S_FR:
            if (!cli_parse_double(cmd, "--fr", optarg, &a->job.zogy.fr)) return EXIT_USAGE;
            break;
        case S_ASTROM:
            if (!cli_parse_double(cmd, "--astrom-sigma", optarg, &d)) return EXIT_USAGE;
            a->job.zogy.astrom_sigma_x = a->job.zogy.astrom_sigma_y = d;
            break;
        case S_PSF_ERR:
            if (!cli_parse_double(cmd, "--psf-err", optarg, &d)) return EXIT_USAGE;
            if (!(d >= 0 && d < 1))
                return cli_usage_error(cmd, "--psf-err must be in [0, 1) (a fraction of a star's signal)");
            a->job.zogy.psf_err_n = a->job.zogy.psf_err_r = d;
            break;
        case S_NO_BKG: a->job.zogy.subtract_background = 0; break;
        case S_RENORM: a->job.zogy.renormalize = 1; break;
        case S_TILE:
            if (!cli_parse_int(cmd, "--tile", optarg, &ival)) return EXIT_USAGE;
            if (ival != 0 && ival < 64)
                return cli_usage_error(cmd, "--tile must be 0 (automatic) or at least 64 px");
            a->job.zogy.tile_size = (size_t)ival;
            break;
        case S_GROW:
            if (!cli_parse_int(cmd, "--grow", optarg, &a->job.zogy.grow)) return EXIT_USAGE;
            if (a->job.zogy.grow < 0 || a->job.zogy.grow > 200)
                return cli_usage_error(cmd, "--grow must be 0..200");
            break;
        case S_THRESH:
            if (!cli_parse_double(cmd, "--thresh", optarg, &a->job.cand.thresh)) return EXIT_USAGE;
            break;
        case S_POSITIVE: a->job.cand.both_signs = 0; break;
        case S_CANDS: a->job.candidates = optarg; break;
        case S_CUTOUTS: a->job.cutouts = optarg; break;
        case S_ALERTS: a->job.alerts = optarg; break;
        case S_PSF_OUT: a->job.psf_out = optarg; break;
        case S_NEW:
            if (!new_opt) return cli_usage_error(cmd, "unknown option --new");
            *new_opt = optarg;
            break;
        case S_REF:
            if (!ref_opt) return cli_usage_error(cmd, "unknown option --ref");
            *ref_opt = optarg;
            break;
        case S_OVERWRITE: a->job.overwrite = 1; break;
        case S_DEVICE: a->device = optarg; break;
        case S_JSON: a->json = 1; break;
        case 'h': help(); return -1;
        default: return cli_usage_error(cmd, "unknown option");
        }
    }
    for (; optind < argc; optind++) {
        if (a->npos >= 3)
            return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
        a->positional[a->npos++] = argv[optind];
    }
    if (!(a->job.cand.thresh > 0))
        return cli_usage_error(cmd, "--thresh must be positive");
    if (!(a->job.zogy.fn > 0 && a->job.zogy.fr > 0))
        return cli_usage_error(cmd, "--fn and --fr must be positive");
    if (!(a->job.zogy.astrom_sigma_x >= 0 && a->job.zogy.astrom_sigma_x < 10))
        return cli_usage_error(cmd, "--astrom-sigma must be in [0, 10)");
    if (!(a->job.al.t_lower <= a->job.al.t_upper) || !(a->job.al.i_lower <= a->job.al.i_upper))
        return cli_usage_error(cmd, "--tl/--tu and --il/--iu must give non-empty ranges");
    if (a->job.kernel_out && a->job.method != CLRED_DIFF_AL)
        return cli_usage_error(cmd, "--kernel-out needs --method al");
    if (a->job.fit_mask && a->job.method != CLRED_DIFF_AL)
        return cli_usage_error(cmd, "--fit-mask and --fit-only need --method al (ZOGY fits no kernel)");
    if (planes_given && a->job.method != CLRED_DIFF_AL)
        return cli_usage_error(cmd, "--planes needs --method al");
    /* the ZOGY switches that mean the same for AL */
    a->job.al.subtract_background = a->job.zogy.subtract_background;
    a->job.al.ignore_bits = a->job.zogy.ignore_bits;
    return EXIT_OK;
}

int cmd_subtract(int argc, char **argv)
{
    sub_args a;
    int rc = parse("subtract", argc, argv, &a, NULL, NULL, subtract_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    if (a.npos != 2)
        return cli_usage_error("subtract", "give the new image and the reference (got %d images)", a.npos);
    if (!a.output)
        return cli_usage_error("subtract", "no output: give -o DIFF.fits");
    clred_ctx *ctx;
    rc = cli_open("subtract", a.device, &ctx);
    if (rc != EXIT_OK)
        return rc;
    clred_subtract_report r;
    cli_progress("subtracting %s from %s", a.positional[1], a.positional[0]);
    clred_status st = clred_subtract_files(ctx, a.positional[0], a.positional[1], a.output, &a.job, &r);
    cli_progress_done();
    clred_ctx_destroy(ctx);
    if (st != CLRED_OK)
        return cli_fail("subtract", st);
    if (a.json && a.job.method == CLRED_DIFF_AL) {
        printf("{\"output\": ");
        cli_json_string(stdout, a.output);
        printf(", \"method\": \"al\", \"convolved\": \"%s\", \"ksum\": %.9g, \"stamps\": %zu, \"stamps_used\": %zu, "
               "\"kernel_order\": %d, \"bg_order\": %d, \"fom\": %.4f, \"detect_std\": %.4f, \"sigma_new\": %.9g, "
               "\"sigma_ref\": %.9g, \"background_new\": %.9g, "
               "\"background_ref\": %.9g, \"fwhm_new\": %.4f, \"fwhm_ref\": %.4f, \"fwhm_diff\": %.4f, "
               "\"psf_stars_new\": %zu, \"psf_stars_ref\": %zu, \"candidates\": %zu, \"positive\": %zu, \"seconds\": %.4f}\n",
               r.convolved_ref ? "reference" : "new", r.ksum, r.nstamps, r.nstamps_used, r.kernel_order, r.bg_order,
               r.fom, r.scorr_scale, r.sigma_n, r.sigma_r, r.bkg_n, r.bkg_r, r.fwhm_new, r.fwhm_ref, r.fwhm_diff, r.nstars_new, r.nstars_ref,
               r.ncandidates, r.npositive, r.seconds);
    } else if (a.job.method == CLRED_DIFF_AL) {
        printf("%s: Alard-Lupton, %s convolved, kernel sum %.4f, %zu of %zu stamps, detection std %.3f", a.output,
               r.convolved_ref ? "reference" : "new image", r.ksum, r.nstamps_used, r.nstamps, r.scorr_scale);
        if (a.job.candidates || a.job.cutouts || a.job.alerts)
            printf(", %zu candidates (%zu positive)", r.ncandidates, r.npositive);
        printf(", %.3f s\n", r.seconds);
    } else if (a.json) {
        printf("{\"output\": ");
        cli_json_string(stdout, a.output);
        printf(", \"method\": \"zogy\", \"f_d\": %.9g, \"f_s\": %.9g, \"sigma_new\": %.9g, \"sigma_ref\": %.9g, "
               "\"background_new\": %.9g, \"background_ref\": %.9g, \"d_offset\": %.9g, \"scorr_std\": %.4f, \"fwhm_new\": %.4f, "
               "\"fwhm_ref\": %.4f, \"fwhm_diff\": %.4f, \"psf_stars_new\": %zu, \"psf_stars_ref\": %zu, "
               "\"candidates\": %zu, \"positive\": %zu, \"seconds\": %.4f}\n",
               r.f_d, r.f_s, r.sigma_n, r.sigma_r, r.bkg_n, r.bkg_r, r.d_off, r.scorr_scale, r.fwhm_new, r.fwhm_ref, r.fwhm_diff,
               r.nstars_new, r.nstars_ref, r.ncandidates, r.npositive, r.seconds);
    } else {
        printf("%s: ZOGY, PSF FWHM new %.2f ref %.2f diff %.2f px, noise new %.4g ref %.4g", a.output, r.fwhm_new,
               r.fwhm_ref, r.fwhm_diff, r.sigma_n, r.sigma_r);
        if (a.job.candidates || a.job.cutouts || a.job.alerts)
            printf(", %zu candidates (%zu positive)", r.ncandidates, r.npositive);
        printf(", %.3f s\n", r.seconds);
    }
    return EXIT_OK;
}

/* ---- clred candidates */

static void candidates_help(void)
{
    printf("usage: clred candidates DIFF.fits --psf PD.fits -o CATALOG [options]\n\n"
           "Transient candidates on a difference written by clred subtract (score: its SCORR\n"
           "plane) or any MEF with SCI, VAR and MASK (score: SCI / sqrt(VAR)): peaks of\n"
           "|score| >= --thresh, both signs, measured on SCI with the difference's PSF: PSF\n"
           "and aperture flux, S/N, FWHM, elongation, nneg, nbad, sumrat, dipole lobes, edge\n"
           "distance and mask bits. CATALOG is .csv, .json or a FITS table.\n\n"
           "  -o, --output FILE       the catalog\n"
           "      --psf FILE          the difference's PSF (clred subtract --psf-out)\n"
           "      --new FILE          the new image (cutouts; measures the PSF when --psf is not given)\n"
           "      --ref FILE          the reference (cutouts)\n"
           "      --cutouts FILE      63 x 63 cutouts of new, reference and difference (one MEF)\n"
           "      --alerts DIR        one alert packet per candidate, DIR/<candid>.avro, in ZTF's Avro\n"
           "                          schema (v3.3 subset); cutouts of the images given; magnitudes\n"
           "                          from MAGZP (default 25), jd from MJD-OBS/DATE-OBS\n"
           "      --thresh T          threshold (default 5)\n"
           "      --positive-only     no negative candidates\n"
           "      --overwrite, --device D, --json\n\n"
           "example:\n"
           "  clred candidates diff.fits --psf pd.fits -o cands.json\n");
}

int cmd_candidates(int argc, char **argv)
{
    sub_args a;
    const char *new_path = NULL, *ref_path = NULL;
    int rc = parse("candidates", argc, argv, &a, &new_path, &ref_path, candidates_help);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    if (a.npos != 1)
        return cli_usage_error("candidates", "give one difference image (got %d)", a.npos);
    if (a.output)
        a.job.candidates = a.output;
    if (!a.job.candidates && !a.job.cutouts && !a.job.alerts)
        return cli_usage_error("candidates", "no output: give -o CATALOG, --cutouts FILE and/or --alerts DIR");
    clred_ctx *ctx;
    rc = cli_open("candidates", a.device, &ctx);
    if (rc != EXIT_OK)
        return rc;
    size_t n = 0, npos = 0;
    clred_status st = clred_candidates_files(ctx, a.positional[0], a.job.new_psf, new_path, ref_path, &a.job, &n, &npos);
    clred_ctx_destroy(ctx);
    if (st != CLRED_OK)
        return cli_fail("candidates", st);
    if (a.json) {
        printf("{\"input\": ");
        cli_json_string(stdout, a.positional[0]);
        printf(", \"candidates\": %zu, \"positive\": %zu}\n", n, npos);
    } else {
        printf("%s: %zu candidates (%zu positive)\n", a.positional[0], n, npos);
    }
    return EXIT_OK;
}

/* ---- clred simulate-pair */

static void pair_help(void)
{
    clred_pair_opts d = clred_pair_defaults();
    printf("usage: clred simulate-pair -o DIR [options]\n\n"
           "Writes a simulated pair for difference imaging into DIR: ref.fits and new.fits\n"
           "(calibrated frames in e-, sky included, with VAR and MASK), their true PSFs\n"
           "ref_psf.fits and new_psf.fits, and truth.csv: the injected point sources (x, y in\n"
           "the new image, flux: > 0 appears, < 0 fades; snr: the PSF-fit S/N in the new\n"
           "image's background noise; on_galaxy). Same options and seed, same bytes.\n\n"
           "  -o, --output DIR        output directory (created)\n"
           "  --seed N                [%llu]\n"
           "  --size WxH              [%zux%zu]\n"
           "  --psf gaussian|moffat   [moffat]\n"
           "  --ref-fwhm F, --new-fwhm F  px [%g, %g]\n"
           "  --shift DX,DY           the new image's field shift, px [0,0]\n"
           "  --fwhm-gradient GX,GY   both FWHMs change linearly by these fractions across the\n"
           "                          width and the height (the PSF files are the centre's) [0,0]\n"
           "  --ntransients N         [%d]\n"
           "  --nholes N              NaN patches in the reference [%d]\n"
           "  --overwrite             replace existing files\n",
           (unsigned long long)d.seed, d.width, d.height, d.ref_fwhm, d.new_fwhm, d.ntransients, d.nholes);
}

int cmd_simulate_pair(int argc, char **argv)
{
    enum { P_SEED = 256, P_SIZE, P_PSF, P_REF_FWHM, P_NEW_FWHM, P_SHIFT, P_NTR, P_HOLES, P_OVERWRITE, P_FWHM_GRAD };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"seed", required_argument, 0, P_SEED},
                                         {"size", required_argument, 0, P_SIZE},
                                         {"psf", required_argument, 0, P_PSF},
                                         {"ref-fwhm", required_argument, 0, P_REF_FWHM},
                                         {"new-fwhm", required_argument, 0, P_NEW_FWHM},
                                         {"shift", required_argument, 0, P_SHIFT},
                                         {"fwhm-gradient", required_argument, 0, P_FWHM_GRAD},
                                         {"ntransients", required_argument, 0, P_NTR},
                                         {"nholes", required_argument, 0, P_HOLES},
                                         {"overwrite", no_argument, 0, P_OVERWRITE},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    clred_pair_opts o = clred_pair_defaults();
    const char *out = NULL;
    int overwrite = 0, c, ival;
    static const char *const kinds[] = {"gaussian", "moffat"};
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case P_SEED:
            if (!cli_parse_int("simulate-pair", "--seed", optarg, &ival) || ival < 0)
                return cli_usage_error("simulate-pair", "--seed must be a non-negative integer");
            o.seed = (uint64_t)ival;
            break;
        case P_SIZE: {
            unsigned long w, h;
            char x;
            if (sscanf(optarg, "%lu%c%lu", &w, &x, &h) != 3 || (x != 'x' && x != 'X'))
                return cli_usage_error("simulate-pair", "--size expects WxH, got '%s'", optarg);
            o.width = w;
            o.height = h;
            break;
        }
        case P_PSF: {
            int k;
            if (!cli_parse_choice("simulate-pair", "--psf", optarg, kinds, 2, &k)) return EXIT_USAGE;
            o.psf_kind = k == 0 ? CLRED_PSF_GAUSSIAN : CLRED_PSF_MOFFAT;
            break;
        }
        case P_REF_FWHM:
            if (!cli_parse_double("simulate-pair", "--ref-fwhm", optarg, &o.ref_fwhm)) return EXIT_USAGE;
            break;
        case P_NEW_FWHM:
            if (!cli_parse_double("simulate-pair", "--new-fwhm", optarg, &o.new_fwhm)) return EXIT_USAGE;
            break;
        case P_SHIFT:
            if (sscanf(optarg, "%lf,%lf", &o.shift_x, &o.shift_y) != 2)
                return cli_usage_error("simulate-pair", "--shift expects DX,DY, got '%s'", optarg);
            break;
        case P_FWHM_GRAD:
            if (sscanf(optarg, "%lf,%lf", &o.fwhm_grad_x, &o.fwhm_grad_y) != 2)
                return cli_usage_error("simulate-pair", "--fwhm-gradient expects GX,GY, got '%s'", optarg);
            break;
        case P_NTR:
            if (!cli_parse_int("simulate-pair", "--ntransients", optarg, &o.ntransients)) return EXIT_USAGE;
            break;
        case P_HOLES:
            if (!cli_parse_int("simulate-pair", "--nholes", optarg, &o.nholes)) return EXIT_USAGE;
            break;
        case P_OVERWRITE: overwrite = 1; break;
        case 'h': pair_help(); return EXIT_OK;
        default: return cli_usage_error("simulate-pair", "unknown option");
        }
    }
    if (optind < argc)
        return cli_usage_error("simulate-pair", "unexpected argument '%s'", argv[optind]);
    if (!out)
        return cli_usage_error("simulate-pair", "no output directory: give -o DIR");
    clred_status st = clred_simulate_pair_write(&o, out, overwrite);
    if (st != CLRED_OK)
        return cli_fail("simulate-pair", st);
    printf("%s: ref.fits new.fits ref_psf.fits new_psf.fits truth.csv\n", out);
    return EXIT_OK;
}
