/* Overscan and trim: where they are (options, else BIASSEC/TRIMSEC from the
 * header), the per-row overscan level on the device, and the polynomial fit
 * along the rows on the host (a few hundred values, in double). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h"

/* ---------------------------------------------------------------- sections */

void cal_section_format(const clred_section *s, char *out, size_t size)
{
    snprintf(out, size, "[%zu:%zu,%zu:%zu]", s->x0 + 1, s->x1, s->y0 + 1, s->y1);
}

static int section_inside(const clred_section *s, size_t width, size_t height)
{
    return s->x1 > s->x0 && s->y1 > s->y0 && s->x1 <= width && s->y1 <= height;
}

static int sections_overlap(const clred_section *a, const clred_section *b)
{
    return a->x0 < b->x1 && b->x0 < a->x1 && a->y0 < b->y1 && b->y0 < a->y1;
}

/* A section from an option (must be valid) or the header card key (ignored,
 * with a note, when it does not describe a region of this frame: CAFOS, for
 * one, writes full-detector coordinates that are not sections of the file). */
static clred_status pick_section(const clred_image *raw, const char *name, const clred_calib_opts *opts,
                                 const clred_section *option, const char *key, clred_section *out, int *from_header,
                                 char *note, size_t note_size)
{
    memset(out, 0, sizeof *out);
    *from_header = 0;
    if (option->set) {
        if (!section_inside(option, raw->width, raw->height)) {
            char text[96];
            cal_section_format(option, text, sizeof text);
            return clred_fail(CLRED_ERR_USAGE, "%s: %s %s lies outside the %zu x %zu frame", name, key, text,
                              raw->width, raw->height);
        }
        *out = *option;
        return CLRED_OK;
    }
    char text[80];
    if (!opts->use_header_sections || !clred_header_get_string(raw->header, key, text, sizeof text))
        return CLRED_OK;
    clred_section s;
    if (clred_section_parse(text, &s) != CLRED_OK) {
        clred_clear_error(); /* a header card we ignore is no failure */
        size_t used = strlen(note);
        snprintf(note + used, note_size - used, "%sheader %s '%s' ignored (not a section [x1:x2,y1:y2])",
                 used ? "; " : "", key, text);
    } else if (!section_inside(&s, raw->width, raw->height)) {
        size_t used = strlen(note);
        snprintf(note + used, note_size - used, "%sheader %s '%s' ignored (outside the %zu x %zu frame)",
                 used ? "; " : "", key, text, raw->width, raw->height);
    } else {
        *out = s;
        *from_header = 1;
    }
    return CLRED_OK;
}

static const char *mode_name(clred_overscan_mode m)
{
    switch (m) {
    case CLRED_OVERSCAN_NONE: return "none";
    case CLRED_OVERSCAN_MEAN: return "mean";
    case CLRED_OVERSCAN_MEDIAN: return "median";
    case CLRED_OVERSCAN_FIT: return "fit";
    case CLRED_OVERSCAN_AUTO: return "auto";
    }
    return "?";
}

clred_status cal_resolve_geometry(const clred_image *raw, const char *name, const clred_calib_opts *opts,
                                  cal_geometry *g)
{
    memset(g, 0, sizeof *g);
    g->order = opts->overscan_order;
    if (opts->overscan < CLRED_OVERSCAN_NONE || opts->overscan > CLRED_OVERSCAN_AUTO)
        return clred_fail(CLRED_ERR_USAGE, "unknown overscan mode %d", (int)opts->overscan);
    clred_section bias;
    CLRED_TRY(pick_section(raw, name, opts, &opts->biassec, "BIASSEC", &bias, &g->biassec_from_header, g->note,
                           sizeof g->note));
    CLRED_TRY(pick_section(raw, name, opts, &opts->trimsec, "TRIMSEC", &g->trimsec, &g->trimsec_from_header,
                           g->note, sizeof g->note));
    if (!g->trimsec.set)
        g->trimsec = (clred_section){0, raw->width, 0, raw->height, 1};

    g->mode = opts->overscan;
    if (g->mode == CLRED_OVERSCAN_AUTO)
        g->mode = bias.set ? CLRED_OVERSCAN_MEDIAN : CLRED_OVERSCAN_NONE;
    if (g->mode == CLRED_OVERSCAN_NONE)
        return CLRED_OK;
    if (!bias.set)
        return clred_fail(CLRED_ERR_USAGE, "%s: overscan '%s' needs an overscan region: give one (--biassec) or a "
                          "header BIASSEC%s%s", name, mode_name(g->mode), g->note[0] ? "; " : "", g->note);
    g->biassec = bias;
    char btext[96], ttext[96];
    cal_section_format(&bias, btext, sizeof btext);
    cal_section_format(&g->trimsec, ttext, sizeof ttext);
    /* sections from the header make a bad file, from options a bad command */
    clred_status bad = g->biassec_from_header || g->trimsec_from_header ? CLRED_ERR_INPUT : CLRED_ERR_USAGE;
    if (sections_overlap(&bias, &g->trimsec))
        return clred_fail(bad, "%s: the overscan %s overlaps the kept region %s (a TRIMSEC or --trimsec must "
                          "exclude it)", name, btext, ttext);
    if (g->mode != CLRED_OVERSCAN_MEAN) {
        if (bias.x1 - bias.x0 > CAL_OVERSCAN_MAX)
            return clred_fail(bad,
                              "%s: the overscan %s is %zu columns wide; per-row estimates take at most %d "
                              "(use overscan 'mean' or a narrower section)",
                              name, btext, bias.x1 - bias.x0, CAL_OVERSCAN_MAX);
        if (bias.y0 > g->trimsec.y0 || bias.y1 < g->trimsec.y1)
            return clred_fail(bad,
                              "%s: the overscan %s does not cover the rows of the kept region %s; per-row "
                              "overscan needs every kept row (or use overscan 'mean')",
                              name, btext, ttext);
    }
    if (g->mode == CLRED_OVERSCAN_FIT) {
        if (g->order < 0 || g->order > 9)
            return clred_fail(CLRED_ERR_USAGE, "overscan polynomial order %d: choose 0 to 9", g->order);
        if ((size_t)g->order >= bias.y1 - bias.y0)
            return clred_fail(bad, "%s: an order-%d overscan fit needs more than %zu rows", name,
                              g->order, bias.y1 - bias.y0);
    }
    return CLRED_OK;
}

/* ------------------------------------------------------- polynomial fit */

/* Least squares by modified Gram-Schmidt QR of the Vandermonde matrix in a
 * variable scaled to [-1, 1], so the order-9 basis stays well conditioned. */
clred_status cal_poly_fit_eval(const double *y, size_t n, int order, const char *name, double *out)
{
    size_t m = 0, first = n, last = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(y[i])) {
            m++;
            if (first == n)
                first = i;
            last = i;
        }
    size_t k = (size_t)order + 1;
    if (m < k)
        return clred_fail(CLRED_ERR_INPUT, "%s: an order-%d overscan fit needs %zu finite rows, found %zu", name,
                          order, k, m);
    double centre = 0.5 * ((double)first + (double)last);
    double half = last > first ? 0.5 * ((double)last - (double)first) : 1.0;
    double *q = malloc(m * k * sizeof *q), *b = malloc(m * sizeof *b), *r = calloc(k * k, sizeof *r);
    double *c = malloc(k * sizeof *c);
    if (!q || !b || !r || !c) {
        free(q), free(b), free(r), free(c);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory fitting the overscan");
    }
    size_t row = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i]))
            continue;
        double u = ((double)i - centre) / half, p = 1.0;
        for (size_t j = 0; j < k; j++, p *= u)
            q[row * k + j] = p;
        b[row++] = y[i];
    }
    clred_status st = CLRED_OK;
    for (size_t j = 0; j < k && st == CLRED_OK; j++) {
        for (size_t l = 0; l < j; l++) {
            double d = 0;
            for (size_t i = 0; i < m; i++)
                d += q[i * k + l] * q[i * k + j];
            r[l * k + j] = d;
            for (size_t i = 0; i < m; i++)
                q[i * k + j] -= d * q[i * k + l];
        }
        double norm = 0;
        for (size_t i = 0; i < m; i++)
            norm += q[i * k + j] * q[i * k + j];
        norm = sqrt(norm);
        if (!(norm > 1e-12 * sqrt((double)m)))
            st = clred_fail(CLRED_ERR_INPUT, "%s: the overscan rows do not determine an order-%d fit", name, order);
        r[j * k + j] = norm;
        for (size_t i = 0; i < m && st == CLRED_OK; i++)
            q[i * k + j] /= norm;
    }
    if (st == CLRED_OK) {
        /* c = R^-1 Q^T b */
        for (size_t j = 0; j < k; j++) {
            double d = 0;
            for (size_t i = 0; i < m; i++)
                d += q[i * k + j] * b[i];
            c[j] = d;
        }
        for (size_t j = k; j-- > 0;) {
            for (size_t l = j + 1; l < k; l++)
                c[j] -= r[j * k + l] * c[l];
            c[j] /= r[j * k + j];
        }
        for (size_t i = 0; i < n; i++) {
            double u = ((double)i - centre) / half, v = 0;
            for (size_t j = k; j-- > 0;)
                v = v * u + c[j];
            out[i] = v;
        }
    }
    free(q), free(b), free(r), free(c);
    return st;
}

/* ------------------------------------------------------- device estimates */

static clred_status row_medians(clred_ctx *ctx, cl_mem raw, size_t width, const clred_section *b, cl_mem out)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "calibrate", NULL, "overscan_row_median", &k));
    cl_uint w = (cl_uint)width, bx0 = (cl_uint)b->x0, bx1 = (cl_uint)b->x1, by0 = (cl_uint)b->y0,
            by1 = (cl_uint)b->y1;
    CLRED_TRY(clred_args(k, "overscan_row_median", CLRED_ARG(raw), CLRED_ARG(w), CLRED_ARG(bx0), CLRED_ARG(bx1),
                         CLRED_ARG(by0), CLRED_ARG(by1), CLRED_ARG(out), (size_t)0));
    size_t global = b->y1 - b->y0;
    return clred_run_tiled(ctx, k, "overscan_row_median", 1, &global);
}

/* Count, mean and population std of the overscan values within [lo, hi]:
 * per-row partial sums on the device, added in double here. */
static clred_status clipped_pass(clred_ctx *ctx, cl_kernel k, cl_mem raw, size_t width, const clred_section *b,
                                 cl_mem sums, void *host_sums, float lo, float hi, double centre, double *n_out,
                                 double *mean, double *std)
{
    cl_uint w = (cl_uint)width, bx0 = (cl_uint)b->x0, bx1 = (cl_uint)b->x1, by0 = (cl_uint)b->y0,
            by1 = (cl_uint)b->y1;
    float c = (float)centre;
    CLRED_TRY(clred_args(k, "overscan_row_sums", CLRED_ARG(raw), CLRED_ARG(w), CLRED_ARG(bx0), CLRED_ARG(bx1),
                         CLRED_ARG(by0), CLRED_ARG(by1), CLRED_ARG(lo), CLRED_ARG(hi), CLRED_ARG(c),
                         CLRED_ARG(sums), (size_t)0));
    size_t rows = b->y1 - b->y0;
    CLRED_TRY(clred_run_tiled(ctx, k, "overscan_row_sums", 1, &rows));
    size_t elem = ctx->use_double ? sizeof(double) : sizeof(float);
    CLRED_TRY(clred_download(ctx, sums, 0, 3 * rows * elem, host_sums));
    double n = 0, s = 0, s2 = 0;
    for (size_t i = 0; i < 3 * rows; i += 3) {
        const double *d = host_sums;
        const float *f = host_sums;
        n += ctx->use_double ? d[i] : f[i];
        s += ctx->use_double ? d[i + 1] : f[i + 1];
        s2 += ctx->use_double ? d[i + 2] : f[i + 2];
    }
    /* the centre the kernel subtracted is the float-rounded one */
    double shift = n > 0 ? s / n : NAN;
    *n_out = n;
    *mean = (double)c + shift;
    *std = n > 0 ? sqrt(fmax(s2 / n - shift * shift, 0.0)) : NAN;
    return CLRED_OK;
}

/* The sigma-clipped mean of the whole overscan (CLRED_OVERSCAN_MEAN). The
 * first pass finds the level, so later passes sum small deviations about it
 * (enough precision with float accumulation). */
static clred_status clipped_mean(clred_ctx *ctx, cl_mem raw, size_t width, const clred_section *b,
                                 const char *name, double *level)
{
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "calibrate", NULL, "overscan_row_sums", &k));
    size_t rows = b->y1 - b->y0, elem = ctx->use_double ? sizeof(double) : sizeof(float);
    void *host = malloc(3 * rows * elem);
    if (!host)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory estimating the overscan");
    cl_mem sums;
    clred_status st = clred_buffer(ctx, CL_MEM_WRITE_ONLY, 3 * rows * elem, NULL, &sums, "overscan sums");
    if (st != CLRED_OK) {
        free(host);
        return st;
    }
    double n = 0, mean = NAN, std = NAN;
    st = clipped_pass(ctx, k, raw, width, b, sums, host, -INFINITY, INFINITY, 0.0, &n, &mean, &std);
    if (st == CLRED_OK)
        st = clipped_pass(ctx, k, raw, width, b, sums, host, -INFINITY, INFINITY, mean, &n, &mean, &std);
    for (int it = 0; st == CLRED_OK && n > 0 && it < CAL_OVERSCAN_CLIP_ITERS; it++) {
        float lo = (float)(mean - CAL_OVERSCAN_CLIP_SIGMA * std), hi = (float)(mean + CAL_OVERSCAN_CLIP_SIGMA * std);
        double n2;
        st = clipped_pass(ctx, k, raw, width, b, sums, host, lo, hi, mean, &n2, &mean, &std);
        int settled = n2 == n;
        n = n2;
        if (settled)
            break;
    }
    clred_release(&sums);
    free(host);
    if (st == CLRED_OK && !(n > 0)) {
        char text[96];
        cal_section_format(b, text, sizeof text);
        return clred_fail(CLRED_ERR_INPUT, "%s: the overscan %s has no finite pixel", name, text);
    }
    *level = mean;
    return st;
}

clred_status cal_overscan_rows(clred_ctx *ctx, cl_mem raw, size_t width, size_t height, const cal_geometry *g,
                               const char *name, float *rows, double *level)
{
    for (size_t i = 0; i < height; i++)
        rows[i] = NAN;
    const clred_section *b = &g->biassec;
    if (g->mode == CLRED_OVERSCAN_MEAN) {
        double mean = NAN;
        CLRED_TRY(clipped_mean(ctx, raw, width, b, name, &mean));
        for (size_t i = 0; i < height; i++)
            rows[i] = (float)mean;
        *level = mean;
        return CLRED_OK;
    }
    cl_mem out;
    CLRED_TRY(clred_buffer(ctx, CL_MEM_READ_WRITE, height * sizeof(float), rows, &out, "overscan rows"));
    clred_status st = row_medians(ctx, raw, width, b, out);
    if (st == CLRED_OK)
        st = clred_download(ctx, out, 0, height * sizeof(float), rows);
    clred_release(&out);
    CLRED_TRY(st);
    if (g->mode == CLRED_OVERSCAN_FIT) {
        double *y = calloc(height, sizeof *y), *fit = malloc(height * sizeof *fit);
        if (!y || !fit) {
            free(y), free(fit);
            return clred_fail(CLRED_ERR_MEMORY, "out of memory fitting the overscan");
        }
        /* only the overscan rows take part; the fit is evaluated on every row */
        for (size_t i = 0; i < height; i++)
            y[i] = i >= b->y0 && i < b->y1 ? (double)rows[i] : NAN;
        st = cal_poly_fit_eval(y, height, g->order, name, fit);
        for (size_t i = 0; st == CLRED_OK && i < height; i++)
            rows[i] = (float)fit[i];
        free(y), free(fit);
        CLRED_TRY(st);
    }
    double sum = 0;
    size_t n = 0;
    for (size_t i = g->trimsec.y0; i < g->trimsec.y1; i++)
        if (isfinite(rows[i])) {
            sum += rows[i];
            n++;
        }
    *level = n ? sum / (double)n : NAN;
    return CLRED_OK;
}
