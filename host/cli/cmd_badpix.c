/* clred badpix: a bad-pixel map from master darks and flats. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred badpix [--dark MDARK] [--flat MFLAT] -o BPM [options]\n\n"
           "Flags hot and cold pixels (beyond k robust sigma of a local median), non-finite\n"
           "pixels, and with --saturation saturated pixels and their bleed trails along the\n"
           "columns. The output's SCI is 1 where a pixel is bad and 0 elsewhere, its MASK\n"
           "plane carries the BAD / SATURATED bits: usable as the bad-pixel mask of every step.\n\n"
           "options:\n"
           "  --dark FILE           master dark (hot and dead pixels)\n"
           "  --flat FILE           master flat (cold and hot pixels)\n"
           "  -o, --output FILE     bad-pixel mask\n"
           "  --hot-sigma X         threshold above the local median (5)\n"
           "  --cold-sigma X        threshold below the local median (5)\n"
           "  --window N            local median window, 3, 5 or 7 (5)\n"
           "  --saturation X        saturation level of the frames; 0 = none (0)\n"
           "  --bleed-frac X        bleed trails continue above X * saturation (0.5)\n"
           "  --device N|NAME       OpenCL device\n"
           "  --json                summary on stdout\n"
           "  --overwrite           replace an existing output\n\n"
           "example:\n"
           "  clred badpix --dark mdark.fits --flat mflat.fits -o bpm.fits --json\n");
}

enum { OPT_DARK = 256, OPT_FLAT, OPT_HOT, OPT_COLD, OPT_WINDOW, OPT_SAT, OPT_BLEED, OPT_DEVICE, OPT_JSON,
       OPT_OVERWRITE };

typedef struct {
    const char *dark, *flat, *output, *device;
    int json, overwrite;
    clred_badpix_opts o;
} badpix_args;

static int parse(int argc, char **argv, badpix_args *a)
{
    static const struct option opts[] = {
        {"dark", required_argument, 0, OPT_DARK},     {"flat", required_argument, 0, OPT_FLAT},
        {"output", required_argument, 0, 'o'},        {"hot-sigma", required_argument, 0, OPT_HOT},
        {"cold-sigma", required_argument, 0, OPT_COLD}, {"window", required_argument, 0, OPT_WINDOW},
        {"saturation", required_argument, 0, OPT_SAT}, {"bleed-frac", required_argument, 0, OPT_BLEED},
        {"device", required_argument, 0, OPT_DEVICE}, {"json", no_argument, 0, OPT_JSON},
        {"overwrite", no_argument, 0, OPT_OVERWRITE}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case OPT_DARK: a->dark = optarg; break;
        case OPT_FLAT: a->flat = optarg; break;
        case 'o': a->output = optarg; break;
        case OPT_HOT: ok = cli_parse_double("badpix", "--hot-sigma", optarg, &a->o.hot_sigma); break;
        case OPT_COLD: ok = cli_parse_double("badpix", "--cold-sigma", optarg, &a->o.cold_sigma); break;
        case OPT_WINDOW: ok = cli_parse_int("badpix", "--window", optarg, &a->o.window); break;
        case OPT_SAT: ok = cli_parse_double("badpix", "--saturation", optarg, &a->o.saturation); break;
        case OPT_BLEED: ok = cli_parse_double("badpix", "--bleed-frac", optarg, &a->o.bleed_frac); break;
        case OPT_DEVICE: a->device = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_OVERWRITE: a->overwrite = 1; break;
        case 'h': help(); return -1;
        default: return cli_usage_error("badpix", "unknown option");
        }
        if (!ok)
            return EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage_error("badpix", "unexpected argument '%s' (frames go with --dark / --flat)", argv[optind]);
    if (!a->dark && !a->flat)
        return cli_usage_error("badpix", "give a master dark (--dark) and/or a master flat (--flat)");
    if (!a->output)
        return cli_usage_error("badpix", "no output given (-o FILE)");
    return EXIT_OK;
}

int cmd_badpix(int argc, char **argv)
{
    badpix_args a;
    memset(&a, 0, sizeof a);
    a.o = clred_badpix_defaults();
    int rc = parse(argc, argv, &a);
    if (rc < 0)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;
    const char *inputs[2] = {a.dark ? a.dark : a.flat, a.flat ? a.flat : a.dark};
    clred_status s = clred_output_check(a.output, inputs, 2, a.overwrite);
    if (s != CLRED_OK)
        return cli_fail("badpix", s);

    const char *paths[2] = {a.dark, a.flat};
    const char *kinds[2] = {"dark", "flat"};
    clred_image frames[2];
    memset(frames, 0, sizeof frames);
    for (int i = 0; i < 2; i++) {
        if (!paths[i])
            continue;
        if ((s = clred_image_read_2d(paths[i], &frames[i])) != CLRED_OK) {
            clred_image_free(&frames[0]);
            return cli_fail("badpix", s);
        }
    }
    if (a.dark && a.flat &&
        (frames[0].width != frames[1].width || frames[0].height != frames[1].height)) {
        fprintf(stderr, "clred badpix: the dark %s is %zu x %zu but the flat %s is %zu x %zu\n", a.dark,
                frames[0].width, frames[0].height, a.flat, frames[1].width, frames[1].height);
        clred_image_free(&frames[0]);
        clred_image_free(&frames[1]);
        return EXIT_BAD_INPUT;
    }
    const clred_image *first = a.dark ? &frames[0] : &frames[1];
    clred_image out;
    clred_badpix_info info[2];
    memset(info, 0, sizeof info);
    s = clred_image_alloc(&out, first->width, first->height, 0, 1);
    clred_ctx *ctx = NULL;
    rc = s == CLRED_OK ? cli_open("badpix", a.device, &ctx) : cli_fail("badpix", s);
    for (int i = 0; rc == EXIT_OK && i < 2; i++) {
        if (!paths[i])
            continue;
        s = clred_find_bad_pixels(ctx, &frames[i], &a.o, out.mask, &info[i]);
        if (s != CLRED_OK)
            rc = cli_fail("badpix", s);
    }
    if (ctx)
        clred_ctx_destroy(ctx);
    size_t nbad = 0;
    if (rc == EXIT_OK) {
        for (size_t i = 0; i < out.width * out.height; i++) {
            out.sci[i] = out.mask[i] ? 1.0f : 0.0f;
            nbad += out.mask[i] != 0;
        }
        char hist[300];
        snprintf(hist, sizeof hist,
                 "clred badpix: dark=%s flat=%s hot_sigma=%g cold_sigma=%g window=%d saturation=%g bleed_frac=%g; "
                 "%zu bad pixels",
                 a.dark ? a.dark : "none", a.flat ? a.flat : "none", a.o.hot_sigma, a.o.cold_sigma, a.o.window,
                 a.o.saturation, a.o.bleed_frac, nbad);
        if (!(out.header = clred_header_new()))
            s = CLRED_ERR_MEMORY;
        if (s == CLRED_OK)
            s = clred_header_add_history(out.header, hist);
        if (s == CLRED_OK)
            s = clred_image_write(a.output, &out, a.overwrite);
        if (s != CLRED_OK)
            rc = cli_fail("badpix", s);
    }
    if (rc == EXIT_OK && a.json) {
        printf("{\"output\": ");
        cli_json_string(stdout, a.output);
        printf(", \"width\": %zu, \"height\": %zu, \"bad_pixels\": %zu", out.width, out.height, nbad);
        for (int i = 0; i < 2; i++)
            if (paths[i]) {
                printf(", \"%s\": {\"file\": ", kinds[i]);
                cli_json_string(stdout, paths[i]);
                printf(", \"hot\": %zu, \"cold\": %zu, \"saturated\": %zu, \"bleed\": %zu}", info[i].nhot,
                       info[i].ncold, info[i].nsaturated, info[i].nbleed);
            }
        printf("}\n");
    } else if (rc == EXIT_OK) {
        fprintf(stderr, "clred badpix: %zu bad pixels -> %s\n", nbad, a.output);
    }
    clred_image_free(&out);
    clred_image_free(&frames[0]);
    clred_image_free(&frames[1]);
    return rc;
}
