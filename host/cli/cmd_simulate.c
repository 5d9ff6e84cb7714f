/* clred simulate: writes a simulated raw night with its truth. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void help(void)
{
    clred_sim_opts d = clred_sim_defaults();
    printf("usage: clred simulate -o DIR [options]\n\n"
           "Writes a simulated raw night into DIR: bias, dark, flat, science and second-epoch\n"
           "frames as uint16 FITS through one detector model (flat, dark, bias, gain, read\n"
           "noise, Poisson noise, saturation, cosmic rays), and its truth: truth.json (every\n"
           "option, the detector, hot pixels, stars, transients, per-frame dither, seeing,\n"
           "sky and cosmic rays), truth_flat.fits, truth_bias.fits, truth_dark.fits.\n"
           "The same options and seed give the same bytes.\n\n"
           "options (defaults in brackets):\n"
           "  -o, --output DIR        output directory (created; a non-empty one needs --overwrite)\n"
           "  --seed N                random seed [%llu]\n"
           "  --size WxH              frame size in pixels [%zux%zu]\n"
           "  --nbias N, --ndark N, --nflat N, --nscience N, --nepoch2 N\n"
           "                          frames of each kind [%d, %d, %d, %d, %d]\n"
           "  --gain G                e-/ADU [%g]\n"
           "  --readnoise E           e- [%g]\n"
           "  --bias-level ADU        [%g]\n"
           "  --dark-current R        e-/s/pixel [%g]\n"
           "  --dark-exptime S        s [%g]\n"
           "  --science-exptime S     s [%g]\n"
           "  --sky R                 e-/s/pixel [%g]\n"
           "  --nstars N              [%d]\n"
           "  --dither PX             largest dither offset [%g]\n"
           "  --ntransients N         sources new or brightened in epoch 2 [%d]\n"
           "  --saturation ADU        [%g]\n"
           "  --cosmic-rate R         cosmic rays per pixel per second [%g]\n"
           "  --filters F1,F2,..      filters, each with its own flats, flat field and sky; flat,\n"
           "                          science, short and epoch-2 counts are per filter [%s]\n"
           "  --nshort N              science frames per filter at --short-exptime, after the long ones [%d]\n"
           "  --short-exptime S       s [%g]\n"
           "  --pixel-scale AS        arcsec per pixel of the science frames' TAN WCS; 0 = no WCS [%g]\n"
           "  --sip PX                SIP distortion, about PX pixels at the corners [%g]\n"
           "  --overwrite             replace the simulation in a non-empty DIR\n"
           "  --json                  print a JSON summary on stdout\n\n"
           "example:\n"
           "  clred simulate -o night --seed 7 --size 256x256 --nscience 4\n"
           "  clred simulate -o survey --size 128x128 --filters g,r --nscience 3 --nshort 2\n",
           (unsigned long long)d.seed, d.width, d.height, d.nbias, d.ndark, d.nflat, d.nscience, d.nepoch2, d.gain,
           d.readnoise, d.bias_level, d.dark_current, d.dark_exptime, d.science_exptime, d.sky, d.nstars, d.dither,
           d.ntransients, d.saturation, d.cosmic_rate, d.filters, d.nshort, d.short_exptime,
           d.pixel_scale, d.sip);
}

/* "512x384" */
static int parse_size(const char *text, size_t *w, size_t *h)
{
    char *end;
    errno = 0;
    unsigned long a = strtoul(text, &end, 10);
    if (end == text || (*end != 'x' && *end != 'X') || errno)
        return 0;
    const char *second = end + 1;
    unsigned long b = strtoul(second, &end, 10);
    if (end == second || *end || errno || *text == '-' || *second == '-')
        return 0;
    *w = a;
    *h = b;
    return 1;
}

static int parse_seed(const char *text, uint64_t *seed)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (end == text || *end || errno || *text == '-')
        return 0;
    *seed = v;
    return 1;
}

enum {
    OPT_SEED = 256, OPT_SIZE, OPT_NBIAS, OPT_NDARK, OPT_NFLAT, OPT_NSCIENCE, OPT_NEPOCH2, OPT_GAIN, OPT_READNOISE,
    OPT_BIAS_LEVEL, OPT_DARK_CURRENT, OPT_DARK_EXPTIME, OPT_SCIENCE_EXPTIME, OPT_SKY, OPT_NSTARS, OPT_DITHER,
    OPT_NTRANSIENTS, OPT_SATURATION, OPT_COSMIC_RATE, OPT_FILTERS, OPT_NSHORT, OPT_SHORT_EXPTIME, OPT_PIXEL_SCALE, OPT_SIP, OPT_OVERWRITE,
    OPT_JSON
};

/* One option into o; 0 after a usage error was printed. */
static int apply_option(int c, const char *arg, clred_sim_opts *o)
{
    const char *cmd = "simulate";
    switch (c) {
    case OPT_SEED:
        if (!parse_seed(arg, &o->seed)) {
            cli_usage_error(cmd, "--seed expects a non-negative integer, got '%s'", arg);
            return 0;
        }
        return 1;
    case OPT_SIZE:
        if (!parse_size(arg, &o->width, &o->height)) {
            cli_usage_error(cmd, "--size expects WxH, e.g. 512x512, got '%s'", arg);
            return 0;
        }
        return 1;
    case OPT_NBIAS: return cli_parse_int(cmd, "--nbias", arg, &o->nbias);
    case OPT_NDARK: return cli_parse_int(cmd, "--ndark", arg, &o->ndark);
    case OPT_NFLAT: return cli_parse_int(cmd, "--nflat", arg, &o->nflat);
    case OPT_NSCIENCE: return cli_parse_int(cmd, "--nscience", arg, &o->nscience);
    case OPT_NEPOCH2: return cli_parse_int(cmd, "--nepoch2", arg, &o->nepoch2);
    case OPT_GAIN: return cli_parse_double(cmd, "--gain", arg, &o->gain);
    case OPT_READNOISE: return cli_parse_double(cmd, "--readnoise", arg, &o->readnoise);
    case OPT_BIAS_LEVEL: return cli_parse_double(cmd, "--bias-level", arg, &o->bias_level);
    case OPT_DARK_CURRENT: return cli_parse_double(cmd, "--dark-current", arg, &o->dark_current);
    case OPT_DARK_EXPTIME: return cli_parse_double(cmd, "--dark-exptime", arg, &o->dark_exptime);
    case OPT_SCIENCE_EXPTIME: return cli_parse_double(cmd, "--science-exptime", arg, &o->science_exptime);
    case OPT_SKY: return cli_parse_double(cmd, "--sky", arg, &o->sky);
    case OPT_NSTARS: return cli_parse_int(cmd, "--nstars", arg, &o->nstars);
    case OPT_DITHER: return cli_parse_double(cmd, "--dither", arg, &o->dither);
    case OPT_NTRANSIENTS: return cli_parse_int(cmd, "--ntransients", arg, &o->ntransients);
    case OPT_SATURATION: return cli_parse_double(cmd, "--saturation", arg, &o->saturation);
    case OPT_COSMIC_RATE: return cli_parse_double(cmd, "--cosmic-rate", arg, &o->cosmic_rate);
    case OPT_FILTERS: o->filters = arg; return 1;
    case OPT_NSHORT: return cli_parse_int(cmd, "--nshort", arg, &o->nshort);
    case OPT_SHORT_EXPTIME: return cli_parse_double(cmd, "--short-exptime", arg, &o->short_exptime);
    case OPT_PIXEL_SCALE: return cli_parse_double(cmd, "--pixel-scale", arg, &o->pixel_scale);
    case OPT_SIP: return cli_parse_double(cmd, "--sip", arg, &o->sip);
    }
    cli_usage_error(cmd, "unknown option");
    return 0;
}

int cmd_simulate(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},
        {"seed", required_argument, 0, OPT_SEED},
        {"size", required_argument, 0, OPT_SIZE},
        {"nbias", required_argument, 0, OPT_NBIAS},
        {"ndark", required_argument, 0, OPT_NDARK},
        {"nflat", required_argument, 0, OPT_NFLAT},
        {"nscience", required_argument, 0, OPT_NSCIENCE},
        {"nepoch2", required_argument, 0, OPT_NEPOCH2},
        {"gain", required_argument, 0, OPT_GAIN},
        {"readnoise", required_argument, 0, OPT_READNOISE},
        {"bias-level", required_argument, 0, OPT_BIAS_LEVEL},
        {"dark-current", required_argument, 0, OPT_DARK_CURRENT},
        {"dark-exptime", required_argument, 0, OPT_DARK_EXPTIME},
        {"science-exptime", required_argument, 0, OPT_SCIENCE_EXPTIME},
        {"sky", required_argument, 0, OPT_SKY},
        {"nstars", required_argument, 0, OPT_NSTARS},
        {"dither", required_argument, 0, OPT_DITHER},
        {"ntransients", required_argument, 0, OPT_NTRANSIENTS},
        {"saturation", required_argument, 0, OPT_SATURATION},
        {"cosmic-rate", required_argument, 0, OPT_COSMIC_RATE},
        {"filters", required_argument, 0, OPT_FILTERS},
        {"nshort", required_argument, 0, OPT_NSHORT},
        {"short-exptime", required_argument, 0, OPT_SHORT_EXPTIME},
        {"pixel-scale", required_argument, 0, OPT_PIXEL_SCALE},
        {"sip", required_argument, 0, OPT_SIP},
        {"overwrite", no_argument, 0, OPT_OVERWRITE},
        {"json", no_argument, 0, OPT_JSON},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    clred_sim_opts o = clred_sim_defaults();
    const char *outdir = NULL;
    int overwrite = 0, json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if (c == 'h') {
            help();
            return EXIT_OK;
        } else if (c == 'o')
            outdir = optarg;
        else if (c == OPT_OVERWRITE)
            overwrite = 1;
        else if (c == OPT_JSON)
            json = 1;
        else if (c == '?')
            return cli_usage_error("simulate", "unknown option or missing value");
        else if (!apply_option(c, optarg, &o))
            return EXIT_USAGE;
    }
    if (optind < argc)
        return cli_usage_error("simulate", "unexpected argument '%s'", argv[optind]);
    if (!outdir)
        return cli_usage_error("simulate", "no output directory given (-o DIR)");

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cli_progress("simulating a %zux%zu night into %s", o.width, o.height, outdir);
    clred_status s = clred_simulate(&o, outdir, overwrite);
    if (s != CLRED_OK)
        return cli_fail("simulate", s);
    cli_progress_done();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    int nfilters = 1;
    for (const char *p = o.filters; p && *p; p++)
        nfilters += *p == ',';
    int nflat = nfilters * o.nflat, nscience = nfilters * (o.nscience + o.nshort), nepoch2 = nfilters * o.nepoch2;
    int nframes = o.nbias + o.ndark + nflat + nscience + nepoch2;
    if (json) {
        printf("{\"outdir\": ");
        cli_json_string(stdout, outdir);
        printf(", \"seed\": %llu, \"width\": %zu, \"height\": %zu, \"frames\": {\"bias\": %d, \"dark\": %d, "
               "\"flat\": %d, \"science\": %d, \"epoch2\": %d}, \"nframes\": %d, \"nstars\": %d, "
               "\"ntransients\": %d, \"nfilters\": %d, \"filters\": ",
               (unsigned long long)o.seed, o.width, o.height, o.nbias, o.ndark, nflat, nscience, nepoch2,
               nframes, o.nstars, o.ntransients, nfilters);
        cli_json_string(stdout, o.filters && *o.filters ? o.filters : "R");
        printf(", \"truth\": \"truth.json\", \"seconds\": %.3f}\n", seconds);
    } else {
        printf("wrote %d frames (%d bias, %d dark, %d flat, %d science, %d epoch 2; filters %s) of %zux%zu and the "
               "truth into %s in %.2f s\n",
               nframes, o.nbias, o.ndark, nflat, nscience, nepoch2, o.filters && *o.filters ? o.filters : "R",
               o.width, o.height, outdir, seconds);
    }
    return EXIT_OK;
}
