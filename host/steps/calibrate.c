/* Science calibration: the masters are checked and uploaded once (a
 * calibrator), then each raw frame is uploaded whole, its overscan estimated
 * on the device, and one fused kernel writes the trimmed SCI, VAR and MASK. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "calibrate.h"

enum { M_BIAS, M_BIAS_VAR, M_BIAS_MASK, M_DARK, M_DARK_VAR, M_DARK_MASK, M_FLAT, M_FLAT_VAR, M_FLAT_MASK, M_BPM,
       M_COUNT };

struct clred_calibrator {
    clred_ctx *ctx;
    clred_calib_opts opts;
    size_t width, height; /* the masters' shape (0 when there is no master) */
    cl_mem masters[M_COUNT];
    cl_uint have;
    char bias_name[256], dark_name[256], flat_name[256], bpm_name[256];
    /* work buffers, reused while frames keep their size */
    cl_mem raw, overscan, sci, var, mask;
    size_t raw_pixels, overscan_rows, out_pixels;
};

clred_calib_opts clred_calib_defaults(void)
{
    clred_calib_opts o;
    memset(&o, 0, sizeof o);
    o.overscan = CLRED_OVERSCAN_AUTO;
    o.overscan_order = 3;
    o.use_header_sections = 1;
    o.gain = 0;
    o.readnoise = -1;
    o.saturation = 0;
    o.exptime = -1;
    o.flat_floor = 0.2;
    return o;
}

/* ------------------------------------------------------------- masters */

static void copy_name(char *dst, size_t size, const char *name, const char *fallback)
{
    snprintf(dst, size, "%s", name && *name ? name : fallback);
}

static clred_status check_master_shape(clred_calibrator *cal, const clred_image *m, const char *name,
                                       const char **first_name)
{
    if (!m->sci && !m->mask)
        return clred_fail(CLRED_ERR_USAGE, "%s: the image has no pixels", name);
    if (cal->width == 0) {
        cal->width = m->width;
        cal->height = m->height;
        *first_name = name;
        return CLRED_OK;
    }
    if (m->width != cal->width || m->height != cal->height)
        return clred_fail(CLRED_ERR_INPUT, "%s is %zu x %zu but %s is %zu x %zu: the masters must have one shape", name,
                          m->width, m->height, *first_name ? *first_name : "the first master", cal->width,
                          cal->height);
    return CLRED_OK;
}

static clred_status upload_plane(clred_calibrator *cal, int slot, const void *data, size_t elem, const char *what)
{
    return clred_buffer(cal->ctx, CL_MEM_READ_ONLY, cal->width * cal->height * elem, data, &cal->masters[slot],
                        what);
}

/* A master's SCI, VAR and MASK, with the flags that say which exist. */
static clred_status upload_master(clred_calibrator *cal, const clred_image *m, int slot, cl_uint flag,
                                  cl_uint var_flag, cl_uint mask_flag, const char *what)
{
    CLRED_TRY(upload_plane(cal, slot, m->sci, sizeof(float), what));
    cal->have |= flag;
    if (m->var) {
        CLRED_TRY(upload_plane(cal, slot + 1, m->var, sizeof(float), what));
        cal->have |= var_flag;
    }
    if (m->mask) {
        CLRED_TRY(upload_plane(cal, slot + 2, m->mask, sizeof(uint16_t), what));
        cal->have |= mask_flag;
    }
    return CLRED_OK;
}

/* A flat must be positive wherever it is not already flagged NO_DATA (the
 * floor of clred_master_flat sets those to NaN); anything else means a wrong
 * file or a broken flat, unless the user overrides, when they become NO_DATA. */
static clred_status check_flat(const clred_image *flat, const char *name, int override)
{
    if (!flat->sci)
        return clred_fail(CLRED_ERR_INPUT, "%s: the flat has no SCI plane", name);
    size_t n = flat->width * flat->height, bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        float f = flat->sci[i];
        if (isfinite(f) && f <= 0.0f && !(flat->mask && (flat->mask[i] & CLRED_MASK_NO_DATA))) {
            if (bad++ == 0)
                first = i;
        }
    }
    if (bad && !override)
        return clred_fail(CLRED_ERR_INPUT,
                          "%s: %zu flat pixels are zero or negative (first at x=%zu, y=%zu, value %g); a flat must "
                          "be positive (override to flag them NO_DATA)",
                          name, bad, first % flat->width, first / flat->width, (double)flat->sci[first]);
    return CLRED_OK;
}

/* The bad-pixel map: its mask plane, else its nonzero (or NaN) pixels. */
static clred_status upload_bpm(clred_calibrator *cal, const clred_image *bpm)
{
    size_t n = cal->width * cal->height;
    if (bpm->mask)
        CLRED_TRY(upload_plane(cal, M_BPM, bpm->mask, sizeof(uint16_t), "bad-pixel map"));
    else {
        uint16_t *m = malloc(n * sizeof *m);
        if (!m)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory reading the bad-pixel map");
        for (size_t i = 0; i < n; i++)
            m[i] = bpm->sci[i] != 0.0f; /* NaN != 0 too */
        clred_status st = upload_plane(cal, M_BPM, m, sizeof(uint16_t), "bad-pixel map");
        free(m);
        CLRED_TRY(st);
    }
    cal->have |= CAL_BPM;
    return CLRED_OK;
}

static clred_status load_masters(clred_calibrator *cal, const clred_masters *m)
{
    const char *first = NULL;
    if (m->bias)
        CLRED_TRY(check_master_shape(cal, m->bias, cal->bias_name, &first));
    if (m->dark)
        CLRED_TRY(check_master_shape(cal, m->dark, cal->dark_name, &first));
    if (m->flat)
        CLRED_TRY(check_master_shape(cal, m->flat, cal->flat_name, &first));
    if (m->bad_pixels)
        CLRED_TRY(check_master_shape(cal, m->bad_pixels, cal->bpm_name, &first));
    if (m->bias && !m->bias->sci)
        return clred_fail(CLRED_ERR_INPUT, "%s: the bias has no SCI plane", cal->bias_name);
    if (m->dark && !m->dark->sci)
        return clred_fail(CLRED_ERR_INPUT, "%s: the dark has no SCI plane", cal->dark_name);
    if (m->flat)
        CLRED_TRY(check_flat(m->flat, cal->flat_name, cal->opts.override_checks));
    if (m->bias)
        CLRED_TRY(upload_master(cal, m->bias, M_BIAS, CAL_BIAS, CAL_BIAS_VAR, CAL_BIAS_MASK, "master bias"));
    if (m->dark)
        CLRED_TRY(upload_master(cal, m->dark, M_DARK, CAL_DARK, CAL_DARK_VAR, CAL_DARK_MASK, "master dark"));
    if (m->flat)
        CLRED_TRY(upload_master(cal, m->flat, M_FLAT, CAL_FLAT, CAL_FLAT_VAR, CAL_FLAT_MASK, "master flat"));
    if (m->bad_pixels)
        CLRED_TRY(upload_bpm(cal, m->bad_pixels));
    return CLRED_OK;
}

clred_status clred_calibrator_create(clred_ctx *ctx, const clred_masters *masters, const clred_calib_opts *opts,
                                     clred_calibrator **out)
{
    *out = NULL;
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "calibrate: no device context");
    clred_calibrator *cal = calloc(1, sizeof *cal);
    if (!cal)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory creating a calibrator");
    cal->ctx = ctx;
    cal->opts = opts ? *opts : clred_calib_defaults();
    clred_masters none = {0};
    if (!masters)
        masters = &none;
    copy_name(cal->bias_name, sizeof cal->bias_name, masters->bias_name, "master bias");
    copy_name(cal->dark_name, sizeof cal->dark_name, masters->dark_name, "master dark");
    copy_name(cal->flat_name, sizeof cal->flat_name, masters->flat_name, "master flat");
    copy_name(cal->bpm_name, sizeof cal->bpm_name, masters->bad_pixels_name, "bad-pixel map");
    clred_status st = load_masters(cal, masters);
    if (st != CLRED_OK) {
        clred_calibrator_free(cal);
        return st;
    }
    *out = cal;
    return CLRED_OK;
}

void clred_calibrator_free(clred_calibrator *cal)
{
    if (!cal)
        return;
    for (int i = 0; i < M_COUNT; i++)
        clred_release(&cal->masters[i]);
    clred_release(&cal->raw);
    clred_release(&cal->overscan);
    clred_release(&cal->sci);
    clred_release(&cal->var);
    clred_release(&cal->mask);
    free(cal);
}

/* ----------------------------------------------------------- parameters */

typedef struct {
    double gain, readnoise, saturation, exptime;
    const char *gain_from, *readnoise_from, *saturation_from;
} frame_params;

static clred_status resolve_params(const clred_calibrator *cal, const clred_image *raw, const char *name,
                                   frame_params *p)
{
    const clred_calib_opts *o = &cal->opts;
    memset(p, 0, sizeof *p);
    p->gain = 1.0;
    p->gain_from = "default";
    if (o->gain > 0) {
        p->gain = o->gain;
        p->gain_from = "option";
    } else if (o->gain < 0) {
        return clred_fail(CLRED_ERR_USAGE, "gain %g: must be positive (0 = GAIN from the header)", o->gain);
    } else if (clred_header_get_double(raw->header, "GAIN", &p->gain)) {
        if (!(p->gain > 0))
            return clred_fail(CLRED_ERR_INPUT, "%s: GAIN = %g in the header; give a positive gain", name, p->gain);
        p->gain_from = "GAIN";
    }
    p->readnoise = 0.0;
    p->readnoise_from = "default";
    if (o->readnoise >= 0) {
        p->readnoise = o->readnoise;
        p->readnoise_from = "option";
    } else if (clred_header_get_double(raw->header, "RDNOISE", &p->readnoise)) {
        p->readnoise_from = "RDNOISE";
    } else if (clred_header_get_double(raw->header, "READNOIS", &p->readnoise)) {
        p->readnoise_from = "READNOIS";
    }
    if (!(p->readnoise >= 0) || !isfinite(p->readnoise))
        return clred_fail(CLRED_ERR_INPUT, "%s: read noise %g is not a non-negative number", name, p->readnoise);
    p->saturation = 0.0;
    p->saturation_from = "none";
    if (o->saturation > 0) {
        p->saturation = o->saturation;
        p->saturation_from = "option";
    } else if (o->saturation == 0 && clred_header_get_double(raw->header, "SATURATE", &p->saturation) &&
               p->saturation > 0) {
        p->saturation_from = "SATURATE";
    } else {
        p->saturation = 0.0;
    }
    p->exptime = NAN;
    if (o->exptime >= 0)
        p->exptime = o->exptime;
    else if (!clred_header_get_double(raw->header, "EXPTIME", &p->exptime))
        p->exptime = NAN;
    if ((cal->have & CAL_DARK) && !(p->exptime >= 0))
        return clred_fail(CLRED_ERR_INPUT, "%s: no EXPTIME in the header; it is needed to scale the dark %s", name,
                          cal->dark_name);
    return CLRED_OK;
}

/* ---------------------------------------------------------- work buffers */

static clred_status ensure_buffer(clred_ctx *ctx, cl_mem *buf, size_t *have, size_t need, size_t elem,
                                  cl_mem_flags flags, const char *what)
{
    if (*buf && *have >= need)
        return CLRED_OK;
    clred_release(buf);
    *have = 0;
    CLRED_TRY(clred_buffer(ctx, flags, need * elem, NULL, buf, what));
    *have = need;
    return CLRED_OK;
}

/* SCI, VAR and MASK of the output, grown together. */
static clred_status ensure_outputs(clred_calibrator *cal, size_t pixels)
{
    if (cal->sci && cal->out_pixels >= pixels)
        return CLRED_OK;
    clred_release(&cal->sci);
    clred_release(&cal->var);
    clred_release(&cal->mask);
    cal->out_pixels = 0;
    CLRED_TRY(clred_buffer(cal->ctx, CL_MEM_READ_WRITE, pixels * sizeof(float), NULL, &cal->sci, "calibrated SCI"));
    CLRED_TRY(clred_buffer(cal->ctx, CL_MEM_READ_WRITE, pixels * sizeof(float), NULL, &cal->var, "calibrated VAR"));
    CLRED_TRY(
        clred_buffer(cal->ctx, CL_MEM_READ_WRITE, pixels * sizeof(uint16_t), NULL, &cal->mask, "calibrated MASK"));
    cal->out_pixels = pixels;
    return CLRED_OK;
}

static clred_status run_fused(clred_calibrator *cal, const clred_image *raw, const cal_geometry *g,
                              const frame_params *p, cl_uint have, float out_scale)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(cal->ctx, "calibrate", NULL, "calibrate_frame", &k));
    cl_uint raw_width = (cl_uint)raw->width, x0 = (cl_uint)g->trimsec.x0, y0 = (cl_uint)g->trimsec.y0;
    cl_uint width = (cl_uint)(g->trimsec.x1 - g->trimsec.x0), height = (cl_uint)(g->trimsec.y1 - g->trimsec.y0);
    float gain = (float)p->gain, rn2 = (float)(p->readnoise * p->readnoise);
    float t = (cal->have & CAL_DARK) ? (float)p->exptime : 0.0f, sat = (float)p->saturation;
    cl_mem os = (have & CAL_OVERSCAN) ? cal->overscan : NULL;
    cl_mem *m = cal->masters;
    CLRED_TRY(clred_args(k, "calibrate_frame", CLRED_ARG(cal->raw), CLRED_ARG(raw_width), CLRED_ARG(os),
                         CLRED_ARG(x0), CLRED_ARG(y0), CLRED_ARG(width), CLRED_ARG(height), CLRED_ARG(m[M_BIAS]),
                         CLRED_ARG(m[M_BIAS_VAR]), CLRED_ARG(m[M_BIAS_MASK]), CLRED_ARG(m[M_DARK]),
                         CLRED_ARG(m[M_DARK_VAR]), CLRED_ARG(m[M_DARK_MASK]), CLRED_ARG(m[M_FLAT]),
                         CLRED_ARG(m[M_FLAT_VAR]), CLRED_ARG(m[M_FLAT_MASK]), CLRED_ARG(m[M_BPM]), CLRED_ARG(have),
                         CLRED_ARG(gain), CLRED_ARG(rn2), CLRED_ARG(t), CLRED_ARG(sat), CLRED_ARG(out_scale),
                         CLRED_ARG(cal->sci), CLRED_ARG(cal->var), CLRED_ARG(cal->mask), (size_t)0));
    size_t global[2] = {width, height};
    return clred_run(cal->ctx, k, "calibrate_frame", 2, global, NULL);
}

/* -------------------------------------------------------------- header */

static int card_is(const char *card, const char *key)
{
    size_t n = strlen(key);
    return strncmp(card, key, n) == 0 && (card[n] == ' ' || card[n] == '=');
}

/* A copy of the raw header without the sections that described the
 * untrimmed frame (they would be wrong for the output). */
static clred_header *output_header(const clred_header *raw, int trimmed, int overscan_done)
{
    clred_header *h = clred_header_new();
    if (!h)
        return NULL;
    for (size_t i = 0; i < clred_header_count(raw); i++) {
        const char *c = clred_header_card(raw, i);
        if ((trimmed || overscan_done) && card_is(c, "BIASSEC"))
            continue;
        if (trimmed && (card_is(c, "TRIMSEC") || card_is(c, "DATASEC")))
            continue;
        if (clred_header_append_card(h, c) != CLRED_OK) {
            clred_header_free(h);
            return NULL;
        }
    }
    return h;
}

static clred_status add_history(clred_header *h, const char *fmt, ...) CLRED_PRINTF(2, 3);
static clred_status add_history(clred_header *h, const char *fmt, ...)
{
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return clred_header_add_history(h, text);
}

static const char *mode_text(clred_overscan_mode m)
{
    return m == CLRED_OVERSCAN_MEAN ? "clipped mean" : m == CLRED_OVERSCAN_MEDIAN ? "row median" : "row-median fit";
}

static clred_status describe(const clred_calibrator *cal, const cal_geometry *g, const frame_params *p,
                             const cal_frame_kind *kind, double level, clred_header *h)
{
    char sec[96];
    if (g->mode != CLRED_OVERSCAN_NONE) {
        cal_section_format(&g->biassec, sec, sizeof sec);
        CLRED_TRY(add_history(h, "clred calibrate: overscan %s of %s (%s)", mode_text(g->mode), sec,
                              g->biassec_from_header ? "BIASSEC" : "option"));
        if (g->mode == CLRED_OVERSCAN_FIT)
            CLRED_TRY(add_history(h, "clred calibrate: overscan fit of order %d", g->order));
        CLRED_TRY(add_history(h, "clred calibrate: overscan mean level %.3f ADU", level));
    }
    if (g->trimsec_from_header || cal->opts.trimsec.set) {
        cal_section_format(&g->trimsec, sec, sizeof sec);
        CLRED_TRY(add_history(h, "clred calibrate: trimmed to %s (%s)", sec,
                              g->trimsec_from_header ? "TRIMSEC" : "option"));
    }
    /* one card per ignored section: HISTORY text is cut every 72 characters */
    for (const char *note = g->note; *note;) {
        const char *end = strstr(note, "; ");
        int len = end ? (int)(end - note) : (int)strlen(note);
        CLRED_TRY(add_history(h, "clred calibrate: %.*s", len, note));
        note += len + (end ? 2 : 0);
    }
    if (cal->have & CAL_BIAS)
        CLRED_TRY(add_history(h, "clred calibrate: bias subtracted: %s", cal->bias_name));
    if (cal->have & CAL_DARK)
        CLRED_TRY(add_history(h, "clred calibrate: dark x %g s subtracted: %s", p->exptime, cal->dark_name));
    if (cal->have & CAL_FLAT)
        CLRED_TRY(add_history(h, "clred calibrate: divided by the flat %s", cal->flat_name));
    if (cal->have & CAL_BPM)
        CLRED_TRY(add_history(h, "clred calibrate: bad pixels from %s", cal->bpm_name));
    CLRED_TRY(add_history(h, "clred calibrate: gain %g e-/ADU (%s), read noise %g e- (%s)", p->gain, p->gain_from,
                          p->readnoise, p->readnoise_from));
    if (p->saturation > 0)
        CLRED_TRY(add_history(h, "clred calibrate: SATURATED where raw >= %g ADU (%s)", p->saturation,
                              p->saturation_from));
    if (kind && kind->no_poisson)
        CLRED_TRY(add_history(h, "clred calibrate: variance without photon noise (bias frame)"));
    if (cal->opts.to_electrons) {
        CLRED_TRY(add_history(h, "clred calibrate: converted to electrons (x %g)", p->gain));
        CLRED_TRY(clred_header_set_double(h, "GAIN", 1.0, "e-/ADU (the data are in electrons)"));
    }
    if (kind && kind->extra_scale != 0 && kind->extra_scale != 1)
        CLRED_TRY(add_history(h, "clred calibrate: scaled by %.9g", kind->extra_scale));
    return clred_header_set_string(h, "BUNIT", cal->opts.to_electrons ? "electron" : "adu", "pixel unit");
}

/* ---------------------------------------------------------------- apply */

clred_status cal_apply_device(clred_calibrator *cal, const clred_image *raw, const char *name,
                              const cal_frame_kind *kind, cal_device_frame *frame, clred_header **header)
{
    if (!name || !*name)
        name = "raw frame";
    if (!raw || !raw->sci || raw->width == 0 || raw->height == 0)
        return clred_fail(CLRED_ERR_USAGE, "%s: no pixels to calibrate", name);
    if (raw->width > 0xffffffu || raw->height > 0xffffffu)
        return clred_fail(CLRED_ERR_USAGE, "%s: %zu x %zu is too large", name, raw->width, raw->height);
    cal_geometry g;
    CLRED_TRY(cal_resolve_geometry(raw, name, &cal->opts, &g));
    size_t width = g.trimsec.x1 - g.trimsec.x0, height = g.trimsec.y1 - g.trimsec.y0;
    if (cal->width && (width != cal->width || height != cal->height)) {
        const char *master = (cal->have & CAL_BIAS)   ? cal->bias_name
                             : (cal->have & CAL_DARK) ? cal->dark_name
                             : (cal->have & CAL_FLAT) ? cal->flat_name
                                                      : cal->bpm_name;
        return clred_fail(CLRED_ERR_INPUT, "%s is %zu x %zu after trimming but %s is %zu x %zu", name, width, height,
                          master, cal->width, cal->height);
    }
    frame_params p;
    CLRED_TRY(resolve_params(cal, raw, name, &p));

    clred_ctx *ctx = cal->ctx;
    size_t raw_pixels = raw->width * raw->height, out_pixels = width * height;
    CLRED_TRY(ensure_buffer(ctx, &cal->raw, &cal->raw_pixels, raw_pixels, sizeof(float), CL_MEM_READ_ONLY,
                            "raw frame"));
    CLRED_TRY(ensure_outputs(cal, out_pixels));
    CLRED_TRY(clred_upload(ctx, cal->raw, 0, raw_pixels * sizeof(float), raw->sci));

    cl_uint have = cal->have | ((kind && kind->no_poisson) ? 0u : CAL_POISSON);
    double level = NAN;
    if (g.mode != CLRED_OVERSCAN_NONE) {
        float *rows = malloc(raw->height * sizeof *rows);
        if (!rows)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory estimating the overscan of %s", name);
        clred_status st = cal_overscan_rows(ctx, cal->raw, raw->width, raw->height, &g, name, rows, &level);
        if (st == CLRED_OK)
            st = ensure_buffer(ctx, &cal->overscan, &cal->overscan_rows, raw->height, sizeof(float),
                               CL_MEM_READ_ONLY, "overscan rows");
        if (st == CLRED_OK)
            st = clred_upload(ctx, cal->overscan, 0, raw->height * sizeof(float), rows);
        free(rows);
        CLRED_TRY(st);
        have |= CAL_OVERSCAN;
    }
    double out_scale = cal->opts.to_electrons ? p.gain : 1.0;
    if (kind && kind->extra_scale != 0)
        out_scale *= kind->extra_scale;
    CLRED_TRY(run_fused(cal, raw, &g, &p, have, (float)out_scale));

    int trimmed = width != raw->width || height != raw->height;
    clred_header *h = output_header(raw->header, trimmed, g.mode != CLRED_OVERSCAN_NONE);
    if (!h)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory copying the header of %s", name);
    clred_status st = describe(cal, &g, &p, kind, level, h);
    if (st != CLRED_OK) {
        clred_header_free(h);
        return st;
    }
    frame->sci = cal->sci;
    frame->var = cal->var;
    frame->mask = cal->mask;
    frame->width = width;
    frame->height = height;
    *header = h;
    return CLRED_OK;
}

clred_status cal_download(clred_ctx *ctx, const cal_device_frame *frame, clred_header *header, clred_image *out)
{
    clred_status st = clred_image_alloc(out, frame->width, frame->height, 1, 1);
    if (st != CLRED_OK) {
        clred_header_free(header);
        return st;
    }
    out->header = header;
    size_t n = frame->width * frame->height;
    st = clred_download(ctx, frame->sci, 0, n * sizeof(float), out->sci);
    if (st == CLRED_OK)
        st = clred_download(ctx, frame->var, 0, n * sizeof(float), out->var);
    if (st == CLRED_OK)
        st = clred_download(ctx, frame->mask, 0, n * sizeof(uint16_t), out->mask);
    if (st != CLRED_OK)
        clred_image_free(out);
    return st;
}

clred_status clred_calibrator_apply(clred_calibrator *cal, const clred_image *raw, const char *name,
                                    clred_image *out)
{
    memset(out, 0, sizeof *out);
    if (!cal)
        return clred_fail(CLRED_ERR_USAGE, "calibrate: no calibrator");
    cal_device_frame frame;
    clred_header *h = NULL;
    CLRED_TRY(cal_apply_device(cal, raw, name, NULL, &frame, &h));
    return cal_download(cal->ctx, &frame, h, out);
}

clred_status clred_calibrate(clred_ctx *ctx, const clred_image *raw, const clred_masters *masters,
                             const clred_calib_opts *opts, clred_image *out)
{
    memset(out, 0, sizeof *out);
    clred_calibrator *cal;
    CLRED_TRY(clred_calibrator_create(ctx, masters, opts, &cal));
    clred_status st = clred_calibrator_apply(cal, raw, NULL, out);
    clred_calibrator_free(cal);
    return st;
}
