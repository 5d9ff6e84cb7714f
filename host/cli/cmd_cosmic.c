/* clred cosmic: L.A.Cosmic cosmic-ray detection and repair. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred cosmic IMAGE -o OUTPUT [options]\n\n"
           "Finds cosmic rays with L.A.Cosmic (van Dokkum 2001, astroscrappy's parameters and\n"
           "steps), repairs them with the median of their unflagged 5x5 neighbours and writes\n"
           "the image with COSMIC_RAY | INTERPOLATED set in its MASK plane.\n\n"
           "options:\n"
           "  -o, --output FILE     output MEF (SCI, VAR if the input has one, MASK)\n"
           "  --sigclip X           Laplacian-to-noise limit (4.5)\n"
           "  --sigfrac X           neighbours need sigfrac * sigclip (0.3)\n"
           "  --objlim X            contrast limit against fine structure (5)\n"
           "  --niter N             iterations (4)\n"
           "  --gain X              e-/ADU (default: GAIN from the header, else 1)\n"
           "  --readnoise X         e- (default: RDNOISE or READNOIS from the header, else 6.5)\n"
           "  --satlevel X          saturation in ADU; 0 = none (default: SATURATE, else 65536)\n"
           "  --bkg FILE[EXT]       sky model, removed while detecting and kept in the output\n"
           "  --var FILE[EXT]       variance in ADU^2, used for the noise model\n"
           "  --sepmed              separable medians (astroscrappy's default) instead of true ones\n"
           "  --device N|NAME       OpenCL device\n"
           "  --json                summary on stdout\n"
           "  --overwrite           replace an existing output\n\n"
           "example:\n"
           "  clred cosmic gmos.fits[SCI] --bkg gmos.fits[SKYFIT] --var gmos.fits[VAR] \\\n"
           "      --gain 1.933 --readnoise 4.24 --sepmed -o clean.fits\n");
}

typedef struct {
    const char *input, *output, *bkg, *var, *device;
    int json, overwrite, have_gain, have_rn, have_sat;
    clred_cosmic_opts o;
} cosmic_args;

enum { OPT_SIGCLIP = 256, OPT_SIGFRAC, OPT_OBJLIM, OPT_NITER, OPT_GAIN, OPT_RN, OPT_SAT, OPT_BKG, OPT_VAR,
       OPT_SEPMED, OPT_DEVICE, OPT_JSON, OPT_OVERWRITE };

static int parse(int argc, char **argv, cosmic_args *a)
{
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},     {"sigclip", required_argument, 0, OPT_SIGCLIP},
        {"sigfrac", required_argument, 0, OPT_SIGFRAC}, {"objlim", required_argument, 0, OPT_OBJLIM},
        {"niter", required_argument, 0, OPT_NITER}, {"gain", required_argument, 0, OPT_GAIN},
        {"readnoise", required_argument, 0, OPT_RN}, {"satlevel", required_argument, 0, OPT_SAT},
        {"bkg", required_argument, 0, OPT_BKG},     {"var", required_argument, 0, OPT_VAR},
        {"sepmed", no_argument, 0, OPT_SEPMED},     {"device", required_argument, 0, OPT_DEVICE},
        {"json", no_argument, 0, OPT_JSON},         {"overwrite", no_argument, 0, OPT_OVERWRITE},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case 'o': a->output = optarg; break;
        case OPT_SIGCLIP: ok = cli_parse_double("cosmic", "--sigclip", optarg, &a->o.sigclip); break;
        case OPT_SIGFRAC: ok = cli_parse_double("cosmic", "--sigfrac", optarg, &a->o.sigfrac); break;
        case OPT_OBJLIM: ok = cli_parse_double("cosmic", "--objlim", optarg, &a->o.objlim); break;
        case OPT_NITER: ok = cli_parse_int("cosmic", "--niter", optarg, &a->o.max_iters); break;
        case OPT_GAIN: ok = a->have_gain = cli_parse_double("cosmic", "--gain", optarg, &a->o.gain); break;
        case OPT_RN: ok = a->have_rn = cli_parse_double("cosmic", "--readnoise", optarg, &a->o.readnoise); break;
        case OPT_SAT: ok = a->have_sat = cli_parse_double("cosmic", "--satlevel", optarg, &a->o.satlevel); break;
        case OPT_BKG: a->bkg = optarg; break;
        case OPT_VAR: a->var = optarg; break;
        case OPT_SEPMED: a->o.sepmed = 1; break;
        case OPT_DEVICE: a->device = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_OVERWRITE: a->overwrite = 1; break;
        case 'h': help(); return -1;
        default: return cli_usage_error("cosmic", "unknown option");
        }
        if (!ok)
            return EXIT_USAGE;
    }
    if (optind >= argc)
        return cli_usage_error("cosmic", "no input image given");
    if (optind + 1 < argc)
        return cli_usage_error("cosmic", "one input image expected, got '%s' too", argv[optind + 1]);
    a->input = argv[optind];
    if (!a->output)
        return cli_usage_error("cosmic", "no output given (-o FILE)");
    return EXIT_OK;
}

/* Reads a plane that must match the image's shape; returns an exit code. */
static int read_plane(const char *path, const clred_image *img, const char *what, clred_image *out)
{
    clred_status s = clred_image_read_2d(path, out);
    if (s != CLRED_OK)
        return cli_fail("cosmic", s);
    if (out->width != img->width || out->height != img->height) {
        fprintf(stderr, "clred cosmic: %s %s is %zu x %zu but the image is %zu x %zu\n", what, path, out->width,
                out->height, img->width, img->height);
        clred_image_free(out);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

/* Header values fill what the command line left unset. */
static void header_defaults(cosmic_args *a, const clred_header *h)
{
    double v;
    if (!a->have_gain && h && clred_header_get_double(h, "GAIN", &v) && v > 0)
        a->o.gain = v;
    if (!a->have_rn && h &&
        ((clred_header_get_double(h, "RDNOISE", &v) || clred_header_get_double(h, "READNOIS", &v)) && v >= 0))
        a->o.readnoise = v;
    if (!a->have_sat && h && clred_header_get_double(h, "SATURATE", &v) && v > 0)
        a->o.satlevel = v;
}

int cmd_cosmic(int argc, char **argv)
{
    cosmic_args a;
    memset(&a, 0, sizeof a);
    a.o = clred_cosmic_defaults();
    int rc = parse(argc, argv, &a);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    const char *inputs[3] = {a.input, a.bkg ? a.bkg : a.input, a.var ? a.var : a.input};
    clred_status s = clred_output_check(a.output, inputs, 3, a.overwrite);
    if (s != CLRED_OK)
        return cli_fail("cosmic", s);

    clred_image img, bkg, var;
    memset(&bkg, 0, sizeof bkg);
    memset(&var, 0, sizeof var);
    s = clred_image_read_2d(a.input, &img);
    if (s != CLRED_OK)
        return cli_fail("cosmic", s);
    header_defaults(&a, img.header);
    if (a.bkg && (rc = read_plane(a.bkg, &img, "sky model", &bkg)) != EXIT_OK) {
        clred_image_free(&img);
        return rc;
    }
    if (a.var && ((rc = read_plane(a.var, &img, "variance", &var)) != EXIT_OK ||
                  (rc = cli_check_nonnegative("cosmic", a.var, "variance", &var)) != EXIT_OK)) {
        clred_image_free(&img);
        clred_image_free(&bkg);
        clred_image_free(&var);
        return rc;
    }
    a.o.bkg = a.bkg ? bkg.sci : NULL;
    a.o.var = a.var ? var.sci : NULL;

    clred_ctx *ctx = NULL;
    rc = cli_open("cosmic", a.device, &ctx);
    clred_cosmic_info info;
    memset(&info, 0, sizeof info);
    if (rc == EXIT_OK) {
        cli_progress("cosmic: %zu x %zu, up to %d iterations", img.width, img.height, a.o.max_iters);
        s = clred_cosmic(ctx, &img, &a.o, &info);
        if (s == CLRED_OK) {
            if (!img.header && !(img.header = clred_header_new()))
                s = CLRED_ERR_MEMORY;
            char hist[300];
            snprintf(hist, sizeof hist,
                     "clred cosmic: L.A.Cosmic sigclip=%g sigfrac=%g objlim=%g niter=%d gain=%g readnoise=%g "
                     "satlevel=%g sepmed=%d bkg=%s var=%s; %zu pixels flagged",
                     a.o.sigclip, a.o.sigfrac, a.o.objlim, a.o.max_iters, a.o.gain, a.o.readnoise, a.o.satlevel,
                     a.o.sepmed, a.bkg ? a.bkg : "none", a.var ? a.var : "none", info.ncosmic);
            if (s == CLRED_OK)
                s = clred_header_add_history(img.header, hist);
        }
        if (s == CLRED_OK)
            s = clred_image_write(a.output, &img, a.overwrite);
        rc = s == CLRED_OK ? EXIT_OK : cli_fail("cosmic", s);
        clred_ctx_destroy(ctx);
    }
    cli_progress_done();
    if (rc == EXIT_OK && a.json) {
        printf("{\"input\": ");
        cli_json_string(stdout, a.input);
        printf(", \"output\": ");
        cli_json_string(stdout, a.output);
        printf(", \"width\": %zu, \"height\": %zu, \"cosmic_pixels\": %zu, \"iterations\": %d, \"sigclip\": %g, "
               "\"sigfrac\": %g, \"objlim\": %g, \"niter\": %d, \"gain\": %g, \"readnoise\": %g, \"satlevel\": %g, "
               "\"sepmed\": %s}\n",
               img.width, img.height, info.ncosmic, info.iterations, a.o.sigclip, a.o.sigfrac, a.o.objlim,
               a.o.max_iters, a.o.gain, a.o.readnoise, a.o.satlevel, a.o.sepmed ? "true" : "false");
    } else if (rc == EXIT_OK) {
        fprintf(stderr, "clred cosmic: %zu cosmic-ray pixels repaired in %d iterations -> %s\n", info.ncosmic,
                info.iterations, a.output);
    }
    clred_image_free(&img);
    clred_image_free(&bkg);
    clred_image_free(&var);
    return rc;
}
