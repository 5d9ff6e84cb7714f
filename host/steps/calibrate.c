/* Science calibration: the masters are checked once and used on the device
 * (a calibrator: device images the caller keeps, or host masters uploaded
 * once into device images it owns); each raw frame on the device has its
 * overscan estimated there, and one fused kernel writes a new device image's
 * trimmed SCI, VAR and MASK. The host functions borrow the raw frame (no copy
 * where the device shares host memory), calibrate it so and download. */
#include <float.h>
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
    cl_mem masters[M_COUNT]; /* the masters' planes, used in place (not released here) */
    clred_dimage *owned[3];  /* bias, dark, flat uploaded by clred_calibrator_create */
    cl_mem bpm;              /* a BAD map made from a bad-pixel image's pixels (owned) */
    cl_uint have;
    char bias_name[256], dark_name[256], flat_name[256], bpm_name[256];
    cl_mem overscan; /* per-row overscan levels, reused while frames keep their height */
    size_t overscan_rows;
    /* bias, dark, flat: max |VAR| over the pixels the master's MASK does not
     * call NO_DATA (+inf where one is not finite), for the SCI-only kernel;
     * scanned once at the first SCI-only frame, as the flat is checked once:
     * masters used in place must not change while the calibrator lives */
    float var_bound[3];
    int var_bound_known;
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

static clred_status check_master_shape(clred_calibrator *cal, size_t width, size_t height, const char *name,
                                       const char **first_name)
{
    if (cal->width == 0) {
        cal->width = width;
        cal->height = height;
        *first_name = name;
        return CLRED_OK;
    }
    if (width != cal->width || height != cal->height)
        return clred_fail(CLRED_ERR_INPUT, "%s is %zu x %zu but %s is %zu x %zu: the masters must have one shape", name,
                          width, height, *first_name ? *first_name : "the first master", cal->width, cal->height);
    return CLRED_OK;
}

/* A flat must be positive wherever it is not already flagged NO_DATA (the
 * floor of clred_master_flat sets those to NaN); anything else means a wrong
 * file or a broken flat, unless the user overrides, when they become NO_DATA. */
static clred_status check_flat(const float *sci, const uint16_t *mask, size_t width, size_t height, const char *name,
                               int override)
{
    size_t n = width * height, bad = 0, first = 0, usable = 0;
    for (size_t i = 0; i < n; i++) {
        float f = sci[i];
        if (isfinite(f) && f <= 0.0f && !(mask && (mask[i] & CLRED_MASK_NO_DATA))) {
            if (bad++ == 0)
                first = i;
        }
        usable += isfinite(f) && f > 0.0f;
    }
    /* A flat with no usable pixel (all NaN) would flag every science pixel
     * NO_DATA: a wrong file, not a flat. */
    if (!usable)
        return clred_fail(CLRED_ERR_INPUT, "%s: the flat has no finite positive pixel (all NaN or not positive)",
                          name);
    if (bad && !override)
        return clred_fail(CLRED_ERR_INPUT,
                          "%s: %zu flat pixels are zero or negative (first at x=%zu, y=%zu, value %g); a flat must "
                          "be positive (override to flag them NO_DATA)",
                          name, bad, first % width, first / width, (double)sci[first]);
    return CLRED_OK;
}

/* The same check on a flat on the device: where the device shares host
 * memory its planes are mapped and read in place (no copy into fresh
 * pages); elsewhere they come to the host once. */
static clred_status check_flat_dev(const clred_dimage *flat, const char *name, int override)
{
    if (flat->ctx->unified_memory) {
        void *map[CLRED_NPLANES];
        CLRED_TRY(clred_dimage_map_read(flat, map));
        clred_status st = check_flat(map[CLRED_PLANE_SCI], map[CLRED_PLANE_MASK], flat->width, flat->height, name,
                                     override);
        clred_dimage_unmap(flat, map);
        return st;
    }
    size_t n = clred_dimage_pixels(flat);
    float *sci = malloc(n * sizeof *sci);
    uint16_t *mask = clred_dimage_mask(flat) ? malloc(n * sizeof *mask) : NULL;
    clred_status st = CLRED_OK;
    if (!sci || (clred_dimage_mask(flat) && !mask))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory checking the flat %s", name);
    if (st == CLRED_OK)
        st = clred_download(flat->ctx, clred_dimage_sci(flat), 0, n * sizeof *sci, sci);
    if (st == CLRED_OK && mask)
        st = clred_download(flat->ctx, clred_dimage_mask(flat), 0, n * sizeof *mask, mask);
    if (st == CLRED_OK)
        st = check_flat(sci, mask, flat->width, flat->height, name, override);
    free(sci);
    free(mask);
    return st;
}

/* The BAD map from a bad-pixel image's pixels: nonzero (or NaN) = BAD. */
static clred_status bpm_from_pixels(clred_calibrator *cal, const float *sci)
{
    size_t n = cal->width * cal->height;
    uint16_t *m = malloc(n * sizeof *m);
    if (!m)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory reading the bad-pixel map");
    for (size_t i = 0; i < n; i++)
        m[i] = sci[i] != 0.0f; /* NaN != 0 too */
    clred_status st = clred_buffer(cal->ctx, CL_MEM_READ_ONLY, n * sizeof *m, m, &cal->bpm, "bad-pixel map");
    free(m);
    CLRED_TRY(st);
    cal->masters[M_BPM] = cal->bpm;
    cal->have |= CAL_BPM;
    return CLRED_OK;
}

static clred_status bpm_from_dev(clred_calibrator *cal, const clred_dimage *bpm)
{
    if (clred_dimage_mask(bpm)) {
        cal->masters[M_BPM] = clred_dimage_mask(bpm);
        cal->have |= CAL_BPM;
        return CLRED_OK;
    }
    size_t n = clred_dimage_pixels(bpm);
    float *sci = malloc(n * sizeof *sci);
    if (!sci)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory reading the bad-pixel map");
    clred_status st = clred_download(cal->ctx, clred_dimage_sci(bpm), 0, n * sizeof *sci, sci);
    if (st == CLRED_OK)
        st = bpm_from_pixels(cal, sci);
    free(sci);
    return st;
}

/* A master's SCI, VAR and MASK planes, with the flags that say which exist. */
static void attach(clred_calibrator *cal, const clred_dimage *m, int slot, cl_uint flag, cl_uint var_flag,
                   cl_uint mask_flag)
{
    cal->masters[slot] = clred_dimage_sci(m);
    cal->have |= flag;
    if (clred_dimage_var(m)) {
        cal->masters[slot + 1] = clred_dimage_var(m);
        cal->have |= var_flag;
    }
    if (clred_dimage_mask(m)) {
        cal->masters[slot + 2] = clred_dimage_mask(m);
        cal->have |= mask_flag;
    }
}

/* Checks and attaches masters on the device; the flat is checked here unless
 * the caller checked its host copy already. */
static clred_status attach_masters(clred_calibrator *cal, const clred_masters_dev *m, int flat_checked)
{
    const char *first = NULL;
    const clred_dimage *all[4] = {m->bias, m->dark, m->flat, m->bad_pixels};
    const char *names[4] = {cal->bias_name, cal->dark_name, cal->flat_name, cal->bpm_name};
    for (int i = 0; i < 4; i++) {
        if (!all[i])
            continue;
        if (all[i]->ctx != cal->ctx)
            return clred_fail(CLRED_ERR_USAGE, "%s: a device image of another context", names[i]);
        CLRED_TRY(check_master_shape(cal, all[i]->width, all[i]->height, names[i], &first));
    }
    if (m->flat && !flat_checked)
        CLRED_TRY(check_flat_dev(m->flat, cal->flat_name, cal->opts.override_checks));
    if (m->bias)
        attach(cal, m->bias, M_BIAS, CAL_BIAS, CAL_BIAS_VAR, CAL_BIAS_MASK);
    if (m->dark)
        attach(cal, m->dark, M_DARK, CAL_DARK, CAL_DARK_VAR, CAL_DARK_MASK);
    if (m->flat)
        attach(cal, m->flat, M_FLAT, CAL_FLAT, CAL_FLAT_VAR, CAL_FLAT_MASK);
    if (m->bad_pixels)
        CLRED_TRY(bpm_from_dev(cal, m->bad_pixels));
    return CLRED_OK;
}

static clred_status new_calibrator(clred_ctx *ctx, const clred_calib_opts *opts, const char *bias_name,
                                   const char *dark_name, const char *flat_name, const char *bpm_name,
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
    copy_name(cal->bias_name, sizeof cal->bias_name, bias_name, "master bias");
    copy_name(cal->dark_name, sizeof cal->dark_name, dark_name, "master dark");
    copy_name(cal->flat_name, sizeof cal->flat_name, flat_name, "master flat");
    copy_name(cal->bpm_name, sizeof cal->bpm_name, bpm_name, "bad-pixel map");
    *out = cal;
    return CLRED_OK;
}

clred_status clred_calibrator_create_dev(clred_ctx *ctx, const clred_masters_dev *masters,
                                         const clred_calib_opts *opts, clred_calibrator **out)
{
    *out = NULL;
    clred_masters_dev none = {0};
    if (!masters)
        masters = &none;
    clred_calibrator *cal;
    CLRED_TRY(new_calibrator(ctx, opts, masters->bias_name, masters->dark_name, masters->flat_name,
                             masters->bad_pixels_name, &cal));
    clred_status st = attach_masters(cal, masters, 0);
    if (st != CLRED_OK) {
        clred_calibrator_free(cal);
        return st;
    }
    *out = cal;
    return CLRED_OK;
}

/* Host masters: checked on the host, uploaded once into device images the
 * calibrator owns, then attached as on the device path. */
static clred_status load_masters(clred_calibrator *cal, const clred_masters *m)
{
    const clred_image *all[4] = {m->bias, m->dark, m->flat, m->bad_pixels};
    const char *names[4] = {cal->bias_name, cal->dark_name, cal->flat_name, cal->bpm_name};
    const char *first = NULL;
    for (int i = 0; i < 4; i++) {
        if (!all[i])
            continue;
        if (!all[i]->sci && !all[i]->mask)
            return clred_fail(CLRED_ERR_USAGE, "%s: the image has no pixels", names[i]);
        CLRED_TRY(check_master_shape(cal, all[i]->width, all[i]->height, names[i], &first));
    }
    if (m->bias && !m->bias->sci)
        return clred_fail(CLRED_ERR_INPUT, "%s: the bias has no SCI plane", cal->bias_name);
    if (m->dark && !m->dark->sci)
        return clred_fail(CLRED_ERR_INPUT, "%s: the dark has no SCI plane", cal->dark_name);
    if (m->flat && !m->flat->sci)
        return clred_fail(CLRED_ERR_INPUT, "%s: the flat has no SCI plane", cal->flat_name);
    if (m->flat)
        CLRED_TRY(check_flat(m->flat->sci, m->flat->mask, m->flat->width, m->flat->height, cal->flat_name,
                             cal->opts.override_checks));
    for (int i = 0; i < 3; i++) {
        if (!all[i])
            continue;
        /* the planes only: the calibrator has no use for the header */
        clred_image planes = *all[i];
        planes.header = NULL;
        CLRED_TRY(clred_dimage_upload(cal->ctx, &planes, &cal->owned[i]));
    }
    clred_masters_dev dev = {cal->owned[0], cal->owned[1], cal->owned[2], NULL, NULL, NULL, NULL, NULL};
    CLRED_TRY(attach_masters(cal, &dev, 1));
    if (m->bad_pixels) {
        if (m->bad_pixels->mask) {
            CLRED_TRY(clred_buffer(cal->ctx, CL_MEM_READ_ONLY, cal->width * cal->height * sizeof(uint16_t),
                                   m->bad_pixels->mask, &cal->bpm, "bad-pixel map"));
            cal->masters[M_BPM] = cal->bpm;
            cal->have |= CAL_BPM;
        } else {
            CLRED_TRY(bpm_from_pixels(cal, m->bad_pixels->sci));
        }
    }
    return CLRED_OK;
}

clred_status clred_calibrator_create(clred_ctx *ctx, const clred_masters *masters, const clred_calib_opts *opts,
                                     clred_calibrator **out)
{
    *out = NULL;
    clred_masters none = {0};
    if (!masters)
        masters = &none;
    clred_calibrator *cal;
    CLRED_TRY(new_calibrator(ctx, opts, masters->bias_name, masters->dark_name, masters->flat_name,
                             masters->bad_pixels_name, &cal));
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
    for (int i = 0; i < 3; i++)
        clred_dimage_free(cal->owned[i]);
    clred_release(&cal->bpm);
    clred_release(&cal->overscan);
    free(cal);
}

/* ----------------------------------------------------------- parameters */

typedef struct {
    double gain, readnoise, saturation, exptime;
    const char *gain_from, *readnoise_from, *saturation_from;
} frame_params;

static clred_status resolve_params(const clred_calibrator *cal, const clred_header *header, const char *name,
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
    } else if (clred_header_get_double(header, "GAIN", &p->gain)) {
        if (!(p->gain > 0))
            return clred_fail(CLRED_ERR_INPUT, "%s: GAIN = %g in the header; give a positive gain", name, p->gain);
        p->gain_from = "GAIN";
    }
    p->readnoise = 0.0;
    p->readnoise_from = "default";
    if (o->readnoise >= 0) {
        p->readnoise = o->readnoise;
        p->readnoise_from = "option";
    } else if (clred_header_get_double(header, "RDNOISE", &p->readnoise)) {
        p->readnoise_from = "RDNOISE";
    } else if (clred_header_get_double(header, "READNOIS", &p->readnoise)) {
        p->readnoise_from = "READNOIS";
    }
    if (!(p->readnoise >= 0) || !isfinite(p->readnoise))
        return clred_fail(CLRED_ERR_INPUT, "%s: read noise %g is not a non-negative number", name, p->readnoise);
    p->saturation = 0.0;
    p->saturation_from = "none";
    if (o->saturation > 0) {
        p->saturation = o->saturation;
        p->saturation_from = "option";
    } else if (o->saturation == 0 && clred_header_get_double(header, "SATURATE", &p->saturation) &&
               p->saturation > 0) {
        p->saturation_from = "SATURATE";
    } else {
        p->saturation = 0.0;
    }
    p->exptime = NAN;
    if (o->exptime >= 0)
        p->exptime = o->exptime;
    else if (!clred_header_get_double(header, "EXPTIME", &p->exptime))
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

/* ------------------------------------------------------ SCI-only bounds */

/* max |var| over the pixels not flagged NO_DATA; +inf if any is not finite. */
static float plane_var_bound(const float *var, const uint16_t *mask, size_t n)
{
    float most = 0.0f;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float a = (mask && (mask[i] & CLRED_MASK_NO_DATA)) ? 0.0f : fabsf(var[i]);
        bad |= !(a <= FLT_MAX);
        most = a > most ? a : most;
    }
    return bad ? INFINITY : most;
}

static clred_status var_bounds(clred_calibrator *cal)
{
    static const int slot[3] = {M_BIAS, M_DARK, M_FLAT};
    size_t n = cal->width * cal->height;
    for (int k = 0; k < 3; k++) {
        cal->var_bound[k] = INFINITY;
        cl_mem var = cal->masters[slot[k] + 1], mask = cal->masters[slot[k] + 2];
        if (!var)
            continue;
        cl_int err = CL_SUCCESS, err2 = CL_SUCCESS;
        void *v = clEnqueueMapBuffer(cal->ctx->queue, var, CL_TRUE, CL_MAP_READ, 0, n * sizeof(float), 0, NULL, NULL,
                                     &err);
        void *m = (mask && err == CL_SUCCESS)
                      ? clEnqueueMapBuffer(cal->ctx->queue, mask, CL_TRUE, CL_MAP_READ, 0, n * sizeof(uint16_t), 0,
                                           NULL, NULL, &err2)
                      : NULL;
        if (err == CL_SUCCESS && err2 == CL_SUCCESS)
            cal->var_bound[k] = plane_var_bound(v, m, n);
        if (m)
            clEnqueueUnmapMemObject(cal->ctx->queue, mask, m, 0, NULL, NULL);
        if (v && err == CL_SUCCESS)
            clEnqueueUnmapMemObject(cal->ctx->queue, var, v, 0, NULL, NULL);
        if (err != CL_SUCCESS || err2 != CL_SUCCESS)
            return clred_fail_cl(err != CL_SUCCESS ? err : err2, "reading a master's VAR for the SCI-only calibration");
    }
    cal->var_bound_known = 1;
    return CLRED_OK;
}

static clred_status run_fused(clred_calibrator *cal, const clred_dimage *raw, const cal_geometry *g,
                              const frame_params *p, cl_uint have, float out_scale, clred_dimage *out)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(cal->ctx, "calibrate", NULL, "calibrate_frame", &k));
    cl_uint raw_width = (cl_uint)raw->width, x0 = (cl_uint)g->trimsec.x0, y0 = (cl_uint)g->trimsec.y0;
    cl_uint width = (cl_uint)(g->trimsec.x1 - g->trimsec.x0), height = (cl_uint)(g->trimsec.y1 - g->trimsec.y0);
    float gain = (float)p->gain, rn2 = (float)(p->readnoise * p->readnoise);
    float t = (cal->have & CAL_DARK) ? (float)p->exptime : 0.0f, sat = (float)p->saturation;
    cl_mem os = (have & CAL_OVERSCAN) ? cal->overscan : NULL;
    cl_mem *m = cal->masters;
    cl_mem in = clred_dimage_sci(raw), sci = clred_dimage_sci(out), var = clred_dimage_var(out),
           mask = clred_dimage_mask(out);
    CLRED_TRY(clred_args(k, "calibrate_frame", CLRED_ARG(in), CLRED_ARG(raw_width), CLRED_ARG(os),
                         CLRED_ARG(x0), CLRED_ARG(y0), CLRED_ARG(width), CLRED_ARG(height), CLRED_ARG(m[M_BIAS]),
                         CLRED_ARG(m[M_BIAS_VAR]), CLRED_ARG(m[M_BIAS_MASK]), CLRED_ARG(m[M_DARK]),
                         CLRED_ARG(m[M_DARK_VAR]), CLRED_ARG(m[M_DARK_MASK]), CLRED_ARG(m[M_FLAT]),
                         CLRED_ARG(m[M_FLAT_VAR]), CLRED_ARG(m[M_FLAT_MASK]), CLRED_ARG(m[M_BPM]), CLRED_ARG(have),
                         CLRED_ARG(gain), CLRED_ARG(rn2), CLRED_ARG(t), CLRED_ARG(sat), CLRED_ARG(out_scale),
                         CLRED_ARG(cal->var_bound[0]), CLRED_ARG(cal->var_bound[1]), CLRED_ARG(cal->var_bound[2]),
                         CLRED_ARG(sci), CLRED_ARG(var), CLRED_ARG(mask), (size_t)0));
    size_t global[2] = {clred_line_groups(cal->ctx, width), height};
    return clred_run_rows(cal->ctx, k, "calibrate_frame", global);
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

clred_status cal_apply_dev(clred_calibrator *cal, const clred_dimage *raw, const char *name,
                           const cal_frame_kind *kind, clred_dimage **out)
{
    *out = NULL;
    if (!name || !*name)
        name = "raw frame";
    if (!cal)
        return clred_fail(CLRED_ERR_USAGE, "calibrate: no calibrator");
    if (!raw || !clred_dimage_sci(raw))
        return clred_fail(CLRED_ERR_USAGE, "%s: no pixels to calibrate", name);
    if (raw->ctx != cal->ctx)
        return clred_fail(CLRED_ERR_USAGE, "%s: a device image of another context than the calibrator's", name);
    if (raw->width > 0xffffffu || raw->height > 0xffffffu)
        return clred_fail(CLRED_ERR_USAGE, "%s: %zu x %zu is too large", name, raw->width, raw->height);
    /* the geometry needs the shape and the header only */
    clred_image shape = {raw->width, raw->height, NULL, NULL, NULL, raw->header};
    cal_geometry g;
    CLRED_TRY(cal_resolve_geometry(&shape, name, &cal->opts, &g));
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
    CLRED_TRY(resolve_params(cal, raw->header, name, &p));

    clred_ctx *ctx = cal->ctx;
    cl_uint have = cal->have | ((kind && kind->no_poisson) ? 0u : CAL_POISSON);
    int sci_only = kind && kind->sci_only;
    if (sci_only)
        have |= CAL_SCI_ONLY;
    if (sci_only && !cal->var_bound_known)
        CLRED_TRY(var_bounds(cal));
    double level = NAN;
    if (g.mode != CLRED_OVERSCAN_NONE) {
        float *rows = malloc(raw->height * sizeof *rows);
        if (!rows)
            return clred_fail(CLRED_ERR_MEMORY, "out of memory estimating the overscan of %s", name);
        clred_status st = cal_overscan_rows(ctx, clred_dimage_sci(raw), raw->width, raw->height, &g, name, rows,
                                            &level);
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

    int trimmed = width != raw->width || height != raw->height;
    clred_header *h = output_header(raw->header, trimmed, g.mode != CLRED_OVERSCAN_NONE);
    if (!h)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory copying the header of %s", name);
    clred_status st = describe(cal, &g, &p, kind, level, h);
    clred_dimage *d = NULL;
    if (st == CLRED_OK)
        st = clred_dimage_new(ctx, width, height, !sci_only, !sci_only, &d); /* the kernel writes every pixel */
    if (st == CLRED_OK)
        st = run_fused(cal, raw, &g, &p, have, (float)out_scale, d);
    if (st != CLRED_OK) {
        clred_header_free(h);
        clred_dimage_free(d);
        return st;
    }
    clred_header_free(d->header);
    d->header = h;
    *out = d;
    return CLRED_OK;
}

clred_ctx *cal_ctx(const clred_calibrator *cal) { return cal->ctx; }

clred_status clred_calibrator_apply_dev(clred_calibrator *cal, const clred_dimage *raw, const char *name,
                                        clred_dimage **out)
{
    return cal_apply_dev(cal, raw, name, NULL, out);
}

/* A raw frame in host memory: borrowed, calibrated on the device, downloaded. */
static clred_status apply_host(clred_calibrator *cal, const clred_image *raw, const char *name, clred_image *out)
{
    memset(out, 0, sizeof *out);
    if (!cal)
        return clred_fail(CLRED_ERR_USAGE, "calibrate: no calibrator");
    if (!raw || !raw->sci || raw->width == 0 || raw->height == 0)
        return clred_fail(CLRED_ERR_USAGE, "%s: no pixels to calibrate", name && *name ? name : "raw frame");
    /* SCI and the header are all the calibration reads */
    clred_image sci_only = {raw->width, raw->height, raw->sci, NULL, NULL, raw->header};
    clred_dimage *view = NULL, *d = NULL;
    clred_status st = clred_dimage_borrow(cal->ctx, &sci_only, &view);
    if (st == CLRED_OK)
        st = cal_apply_dev(cal, view, name, NULL, &d);
    if (st == CLRED_OK)
        st = clred_dimage_download(d, out);
    clred_dimage_free(d);
    clred_dimage_free(view);
    return st;
}

clred_status clred_calibrator_apply(clred_calibrator *cal, const clred_image *raw, const char *name,
                                    clred_image *out)
{
    return apply_host(cal, raw, name, out);
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
