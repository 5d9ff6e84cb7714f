/* clred calibrate: overscan, trim, bias, dark, flat, gain; variance and mask. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calib_options.h"

#define CMD "calibrate"

static void help(void)
{
    printf("usage: clred calibrate [options] raw... -o OUT\n\n"
           "Calibrates raw frames on the OpenCL device. Saturation is flagged on the raw values,\n"
           "the overscan is subtracted and the frame trimmed, then one kernel computes\n"
           "  sci = (raw - overscan - bias - dark * EXPTIME) / flat\n"
           "  var = ((max(signal, 0) * gain + readnoise^2) / gain^2 + var_bias + EXPTIME^2 var_dark)\n"
           "        / flat^2 + sci^2 var_flat / flat^2      (ADU^2; signal = raw - overscan - bias - dark t)\n"
           "and the mask: SATURATED, the masters' masks, BAD from --bpm, NO_DATA (NaN) where the\n"
           "flat is not positive or a value is not finite. Outputs are MEF files: SCI, VAR, MASK,\n"
           "with a HISTORY card for each step. The masters are uploaded once for all frames.\n\n"
           "masters:\n"
           "  --bias FILE           master bias (clred master-bias)\n"
           "  --dark FILE           master dark per second (clred master-dark); needs EXPTIME\n"
           "  --flat FILE           master flat (clred master-flat)\n"
           "  --bpm FILE            bad-pixel map: nonzero pixels (or its MASK plane) are BAD\n"
           "  --exptime T           exposure time in s for every frame (default: header EXPTIME)\n"
           "  --electrons           output in electrons (sci * gain, var * gain^2; GAIN becomes 1)\n\n"
           "%s\n%s"
           "  --suffix SUF          write each output beside its input with SUF before the extension\n"
           "                        (raw.fits -> rawSUF.fits)\n"
           "  --planes LIST         the planes written: all (default: SCI, VAR, MASK) or a comma list\n"
           "                        of sci, var, mask that includes sci (--planes sci: SCI alone, a\n"
           "                        plain image, as a script writing only the science array does)\n\n"
           "Frames stream: the next ones are read and the finished ones written on their own\n"
           "threads while the device calibrates.\n"
           "With one raw frame, -o names the output file. With several, -o names an existing\n"
           "directory (outputs keep the input file names) or --suffix names them. If any frame\n"
           "fails, the outputs already written by this run are removed.\n\n"
           "examples (CAFOS: 16-bit data without GAIN/SATURATE keywords):\n"
           "  clred calibrate --bias mbias.fits --flat mflat_V.fits --saturation 65535 \\\n"
           "      --gain 1.43 --readnoise 7.4 cafos/science/NGC2420/V/uamA_0031.fits -o ngc2420_V_31.fits\n"
           "  mkdir cal && clred calibrate --bias mbias.fits --flat mflat_V.fits --electrons \\\n"
           "      cafos/science/NGC2420/V/uamA_003[123].fits -o cal\n"
           "  clred calibrate --overscan fit --overscan-order 2 saao/a8280271.fits -o a8280271_cal.fits\n\n"
           "exit status: 0 ok, 1 bad input file, 2 usage, 3 device failure.\n",
           calib_options_help, common_options_help);
}

static int is_directory(const char *path)
{
    struct stat sb;
    return path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The output name of an input: its file name (no HDU selector, no .fz),
 * with the suffix before the extension, in dir (or beside the input). */
static void output_name(const char *input, const char *dir, const char *suffix, char *out, size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", input);
    size_t n = strlen(path);
    if (n && path[n - 1] == ']') {
        char *b = strrchr(path, '[');
        if (b)
            *b = '\0';
    }
    if (ends_with(path, ".fz"))
        path[strlen(path) - 3] = '\0';
    const char *ext = ".fits";
    static const char *known[] = {".fits", ".fit", ".fts", ".npy"};
    for (size_t i = 0; i < 4; i++)
        if (ends_with(path, known[i])) {
            if (i < 3)
                ext = known[i];
            path[strlen(path) - strlen(known[i])] = '\0';
            break;
        }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (dir)
        snprintf(out, size, "%s/%s%s%s", dir, base, suffix ? suffix : "", ext);
    else
        snprintf(out, size, "%s%s%s", path, suffix ? suffix : "", ext);
}

/* "all" or a comma list of sci, var, mask that includes sci. */
static int parse_planes(const char *text, unsigned *planes)
{
    if (strcmp(text, "all") == 0) {
        *planes = CLRED_WRITE_ALL;
        return 1;
    }
    static const char *names[] = {"sci", "var", "mask"};
    static const unsigned bits[] = {CLRED_WRITE_SCI, CLRED_WRITE_VAR, CLRED_WRITE_MASK};
    unsigned p = 0;
    const char *s = text;
    for (;;) {
        size_t n = strcspn(s, ",");
        int found = 0;
        for (int i = 0; i < 3; i++)
            if (n == strlen(names[i]) && strncmp(s, names[i], n) == 0) {
                p |= bits[i];
                found = 1;
            }
        if (!found)
            return 0;
        if (!s[n])
            break;
        s += n + 1;
    }
    if (!(p & CLRED_WRITE_SCI))
        return 0;
    *planes = p;
    return 1;
}

typedef struct {
    const char *bias, *dark, *flat, *bpm, *output, *suffix, *device;
    int json, overwrite;
    unsigned planes;
    clred_calib_opts opts;
} options;

/* Returns -1 to go on, else an exit code. */
static int parse(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        CALIB_LONG_OPTIONS, COMMON_LONG_OPTIONS,
        {"bias", required_argument, 0, CO_BIAS}, {"dark", required_argument, 0, CO_DARK},
        {"flat", required_argument, 0, CO_FLAT}, {"bpm", required_argument, 0, CO_BPM},
        {"exptime", required_argument, 0, CO_EXPTIME}, {"electrons", no_argument, 0, CO_ELECTRONS},
        {"suffix", required_argument, 0, CO_SUFFIX}, {"planes", required_argument, 0, CO_PLANES},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->opts = clred_calib_defaults();
    o->planes = CLRED_WRITE_ALL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        int r = calib_option(CMD, c, optarg, &o->opts);
        if (r < 0)
            return EXIT_USAGE;
        if (r > 0)
            continue;
        switch (c) {
        case 'h': help(); return EXIT_OK;
        case 'o': o->output = optarg; break;
        case CO_OVERWRITE: o->overwrite = 1; break;
        case CO_JSON: o->json = 1; break;
        case CO_DEVICE: o->device = optarg; break;
        case CO_BIAS: o->bias = optarg; break;
        case CO_DARK: o->dark = optarg; break;
        case CO_FLAT: o->flat = optarg; break;
        case CO_BPM: o->bpm = optarg; break;
        case CO_SUFFIX: o->suffix = optarg; break;
        case CO_PLANES:
            if (!parse_planes(optarg, &o->planes))
                return cli_usage_error(CMD, "--planes takes all or a comma list of sci, var, mask with sci, not '%s'",
                                       optarg);
            break;
        case CO_ELECTRONS: o->opts.to_electrons = 1; break;
        case CO_EXPTIME:
            if (!cli_parse_double(CMD, "--exptime", optarg, &o->opts.exptime))
                return EXIT_USAGE;
            if (!(o->opts.exptime >= 0))
                return cli_usage_error(CMD, "--exptime must be zero or more");
            break;
        default: return cli_usage_error(CMD, "unknown option or missing value in '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error(CMD, "no raw frame given");
    if (!o->output && !o->suffix)
        return cli_usage_error(CMD, "no output: give -o FILE (or -o DIR / --suffix for several frames)");
    if (o->suffix && (!*o->suffix || strchr(o->suffix, '/')))
        return cli_usage_error(CMD, "--suffix must be a non-empty name part without '/'");
    if (o->output && o->suffix && !is_directory(o->output))
        return cli_usage_error(CMD, "--suffix goes with -o DIR or no -o, not with an output file");
    if (argc - optind > 1 && o->output && !is_directory(o->output))
        return cli_usage_error(CMD, "%d raw frames: -o must name an existing directory (or use --suffix)",
                               argc - optind);
    return -1;
}

/* Output names for every raw frame, checked before any work. */
static int plan_outputs(const options *o, char **raws, size_t n, char ***outputs)
{
    char **out = calloc(n, sizeof *out);
    const char **inputs = calloc(n + 4, sizeof *inputs);
    if (!out || !inputs) {
        free(out), free(inputs);
        return cli_usage_error(CMD, "out of memory");
    }
    size_t ni = 0;
    for (size_t i = 0; i < n; i++)
        inputs[ni++] = raws[i];
    const char *masters[] = {o->bias, o->dark, o->flat, o->bpm};
    for (int i = 0; i < 4; i++)
        if (masters[i])
            inputs[ni++] = masters[i];
    int rc = EXIT_OK;
    for (size_t i = 0; i < n && rc == EXIT_OK; i++) {
        char name[4096];
        if (o->output && !is_directory(o->output))
            snprintf(name, sizeof name, "%s", o->output);
        else
            output_name(raws[i], o->output, o->suffix, name, sizeof name);
        out[i] = strdup(name);
        for (size_t j = 0; j < i && out[i]; j++)
            if (strcmp(out[j], out[i]) == 0)
                rc = cli_usage_error(CMD, "%s and %s would both be written to %s", raws[j], raws[i], out[i]);
        clred_status s = out[i] ? clred_output_check(out[i], inputs, ni, o->overwrite) : CLRED_ERR_MEMORY;
        if (rc == EXIT_OK && s != CLRED_OK)
            rc = cli_fail(CMD, s);
    }
    free(inputs);
    *outputs = out;
    return rc;
}

typedef struct {
    clred_image bias, dark, flat, bpm;
} master_images;

static int load_masters(const options *o, master_images *m, clred_masters *cm)
{
    memset(m, 0, sizeof *m);
    memset(cm, 0, sizeof *cm);
    const char *paths[] = {o->bias, o->dark, o->flat, o->bpm};
    clred_image *imgs[] = {&m->bias, &m->dark, &m->flat, &m->bpm};
    for (int i = 0; i < 4; i++)
        if (paths[i] && cli_read_master(CMD, paths[i], imgs[i]) != EXIT_OK)
            return EXIT_BAD_INPUT;
    cm->bias = o->bias ? &m->bias : NULL;
    cm->dark = o->dark ? &m->dark : NULL;
    cm->flat = o->flat ? &m->flat : NULL;
    cm->bad_pixels = o->bpm ? &m->bpm : NULL;
    cm->bias_name = o->bias, cm->dark_name = o->dark, cm->flat_name = o->flat, cm->bad_pixels_name = o->bpm;
    return EXIT_OK;
}

static void free_masters(master_images *m)
{
    clred_image_free(&m->bias);
    clred_image_free(&m->dark);
    clred_image_free(&m->flat);
    clred_image_free(&m->bpm);
}

typedef struct {
    size_t width, height, saturated, no_data, bad;
    int counted; /* 0 when the MASK plane is not written (--planes): the counts are null */
} frame_summary;

static void summarise(const clred_image *img, frame_summary *s)
{
    memset(s, 0, sizeof *s);
    s->width = img->width, s->height = img->height;
    if (!img->mask)
        return;
    s->counted = 1;
    for (size_t i = 0; i < img->width * img->height; i++) {
        s->saturated += (img->mask[i] & CLRED_MASK_SATURATED) != 0;
        s->no_data += (img->mask[i] & CLRED_MASK_NO_DATA) != 0;
        s->bad += (img->mask[i] & CLRED_MASK_BAD) != 0;
    }
}

static void print_json(char **raws, char **outputs, const frame_summary *fs, size_t n, clred_ctx *ctx)
{
    printf("{\"command\": \"calibrate\", \"frames\": [");
    for (size_t i = 0; i < n; i++) {
        printf("%s\n  {\"input\": ", i ? "," : "");
        cli_json_string(stdout, raws[i]);
        printf(", \"output\": ");
        cli_json_string(stdout, outputs[i]);
        printf(", \"width\": %zu, \"height\": %zu", fs[i].width, fs[i].height);
        if (fs[i].counted)
            printf(", \"saturated\": %zu, \"no_data\": %zu, \"bad\": %zu}", fs[i].saturated, fs[i].no_data, fs[i].bad);
        else
            printf(", \"saturated\": null, \"no_data\": null, \"bad\": null}");
    }
    printf("\n ], ");
    cli_json_device(ctx);
    printf("}\n");
}

typedef struct {
    char **raws;
    size_t n;
    frame_summary *fs;
} progress;

static void frame_done(void *user, size_t i, const clred_image *calibrated)
{
    progress *p = user;
    cli_progress("calibrate: %s (%zu/%zu)", p->raws[i], i + 1, p->n);
    summarise(calibrated, &p->fs[i]);
}

/* Calibrates and writes every frame (clred_calibrate_files: the outputs
 * appear together at the end, so a failure or an interrupt leaves none). */
static int run_frames(const options *o, clred_calibrator *cal, char **raws, char **outputs, size_t n,
                      frame_summary *fs)
{
    progress p = {raws, n, fs};
    clred_calib_files_opts fo = clred_calib_files_defaults();
    fo.planes = o->planes;
    fo.overwrite = o->overwrite;
    fo.on_frame = frame_done;
    fo.user = &p;
    clred_status s = clred_calibrate_files(cal, (const char *const *)raws, (const char *const *)outputs, n, &fo);
    cli_progress_done();
    return s == CLRED_OK ? EXIT_OK : cli_fail(CMD, s);
}

int cmd_calibrate(int argc, char **argv)
{
    options o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    char **raws = argv + optind;
    size_t n = (size_t)(argc - optind);
    char **outputs = NULL;
    frame_summary *fs = calloc(n, sizeof *fs);
    rc = fs ? plan_outputs(&o, raws, n, &outputs) : cli_usage_error(CMD, "out of memory");
    clred_ctx *ctx = NULL;
    master_images mi;
    clred_masters cm;
    memset(&mi, 0, sizeof mi);
    if (rc == EXIT_OK)
        rc = load_masters(&o, &mi, &cm);
    if (rc == EXIT_OK)
        rc = cli_check_inputs(CMD, (const char *const *)raws, n);
    if (rc == EXIT_OK)
        rc = cli_open(CMD, o.device, &ctx);
    clred_calibrator *cal = NULL;
    if (rc == EXIT_OK) {
        clred_status s = clred_calibrator_create(ctx, &cm, &o.opts, &cal);
        if (s != CLRED_OK)
            rc = cli_fail(CMD, s);
    }
    free_masters(&mi); /* the calibrator holds them on the device */
    if (rc == EXIT_OK)
        rc = run_frames(&o, cal, raws, outputs, n, fs);
    if (rc == EXIT_OK && o.json)
        print_json(raws, outputs, fs, n, ctx);
    clred_calibrator_free(cal);
    clred_ctx_destroy(ctx);
    for (size_t i = 0; outputs && i < n; i++)
        free(outputs[i]);
    free(outputs);
    free(fs);
    return rc;
}
