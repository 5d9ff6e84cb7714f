/* Proxy pixels (CUTE): unusable pixels found on the host (a median per dark
 * frame), the exhaustive search on the device (kernels/proxy.cl), and the
 * background and final frames of a science frame from the match. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clred_proxy_opts clred_proxy_defaults(void)
{
    clred_proxy_opts o;
    memset(&o, 0, sizeof o);
    o.method = CLRED_PROXY_MEDIAN;
    o.window = 0;
    o.fill_value = NAN;
    o.hot_sigma = 10.0;
    return o;
}

void clred_proxy_match_free(clred_proxy_match *m)
{
    if (!m)
        return;
    free(m->proxy);
    free(m->median);
    free(m->std);
    free(m->msr);
    free(m->unusable);
    memset(m, 0, sizeof *m);
}

static int missing(float v, double fill) { return !isfinite(v) || (!isnan(fill) && (double)v == fill); }

/* unusable[i]: 2 missing in a dark, 1 hot in every dark (above the dark's
 * median + hot_sigma * 1.4826 MAD), else 0. */
static clred_status find_unusable(const clred_image *darks, size_t n, const clred_proxy_opts *o, uint8_t *unusable)
{
    size_t np = darks[0].width * darks[0].height;
    float *tmp = malloc(np * sizeof *tmp);
    uint8_t *hot_all = malloc(np);
    if (!tmp || !hot_all) {
        free(tmp), free(hot_all);
        return clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
    }
    memset(hot_all, 1, np);
    memset(unusable, 0, np);
    for (size_t f = 0; f < n; f++) {
        size_t k = 0;
        for (size_t i = 0; i < np; i++)
            if (!missing(darks[f].sci[i], o->fill_value))
                tmp[k++] = darks[f].sci[i];
        double med = k ? clred_median_inplace(tmp, k) : NAN;
        for (size_t i = 0; i < k; i++)
            tmp[i] = fabsf(tmp[i] - (float)med);
        double mad = k ? clred_median_inplace(tmp, k) : NAN;
        double limit = med + o->hot_sigma * 1.482602218505602 * mad;
        for (size_t i = 0; i < np; i++) {
            float v = darks[f].sci[i];
            if (missing(v, o->fill_value))
                unusable[i] = 2;
            hot_all[i] &= (double)v > limit;
        }
    }
    for (size_t i = 0; i < np; i++)
        if (!unusable[i] && hot_all[i])
            unusable[i] = 1;
    free(tmp), free(hot_all);
    return CLRED_OK;
}

/* The search's device state. */
typedef struct {
    cl_mem spec, spec_x, cand, cand_x, cand_idx, k1, k2, idx, med, sd, msr, limit;
} proxy_bufs;

static void bufs_release(proxy_bufs *b)
{
    cl_mem *all[] = {&b->spec, &b->spec_x, &b->cand, &b->cand_x, &b->cand_idx, &b->k1,
                     &b->k2,   &b->idx,    &b->med,  &b->sd,     &b->msr, &b->limit};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clred_release(all[i]);
}

/* The pixels' T dark values, pixel-major with stride tp (>= T; the pads
 * are 0), and their columns and indices. */
static void pack(const clred_image *darks, size_t T, size_t tp, const size_t *pix, size_t n, float *series, int *xs,
                 int *idx)
{
    size_t w = darks[0].width;
    for (size_t k = 0; k < n; k++) {
        for (size_t t = 0; t < tp; t++)
            series[k * tp + t] = t < T ? darks[t].sci[pix[k]] : 0.0f;
        xs[k] = (int)(pix[k] % w);
        if (idx)
            idx[k] = (int)pix[k];
    }
}

static clred_status search(clred_ctx *ctx, const clred_image *darks, size_t T, const size_t *spix, size_t S,
                           const size_t *cpix, size_t C, const clred_proxy_opts *o, clred_proxy_match *m)
{
    int np = 8;
    while ((size_t)np < T)
        np <<= 1;
    /* the series' stride: T rounded up to the kernel's vector width */
    size_t vw = (size_t)ctx->vector_width, tp = (T + vw - 1) / vw * vw;
    enum { TILE = 32 };
    char options[96];
    snprintf(options, sizeof options, "-D NT=%zu -D TP=%zu -D NP=%d -D TILE=%d", T, tp, np, (int)TILE);
    float *spec = malloc(S * tp * sizeof *spec), *cand = malloc(C * tp * sizeof *cand);
    int *sx = malloc(S * sizeof *sx), *cx = malloc(C * sizeof *cx), *ci = malloc(C * sizeof *ci);
    const clred_device_info *dev = clred_ctx_device(ctx);
    /* slices of the candidates, so that a device has work-items enough
     * (a GPU wants ~10^5 in flight; a CPU a few per core) */
    size_t target = dev->is_gpu ? 1024 * (size_t)(dev->compute_units + 1) : 64 * (size_t)(dev->compute_units + 1);
    size_t nslices = (target + S - 1) / S, max_slices = (C + TILE - 1) / TILE;
    if (nslices > max_slices)
        nslices = max_slices;
    if (nslices < 1)
        nslices = 1;
    size_t slice_len = (C + nslices - 1) / nslices;
    slice_len = (slice_len + TILE - 1) / TILE * TILE;
    nslices = (C + slice_len - 1) / slice_len;
    size_t nout = nslices * S;
    double *k1 = malloc(S * sizeof *k1), *med = malloc(S * sizeof *med), *sd = malloc(S * sizeof *sd),
           *msr = malloc(S * sizeof *msr);
    int *idx = malloc(S * sizeof *idx);
    proxy_bufs b;
    memset(&b, 0, sizeof b);
    clred_status st = spec && cand && sx && cx && ci && k1 && med && sd && msr && idx
                          ? CLRED_OK
                          : clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory for %zu x %zu series", S + C, T);
    if (st == CLRED_OK) {
        pack(darks, T, tp, spix, S, spec, sx, NULL);
        pack(darks, T, tp, cpix, C, cand, cx, ci);
    }
    const cl_mem_flags ro = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, S * tp * sizeof *spec, spec, &b.spec, "spectral series");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, S * sizeof *sx, sx, &b.spec_x, "spectral columns");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, C * tp * sizeof *cand, cand, &b.cand, "candidate series");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, C * sizeof *cx, cx, &b.cand_x, "candidate columns");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, C * sizeof *ci, ci, &b.cand_idx, "candidate indices");
    cl_mem *outs[] = {&b.k1, &b.k2, &b.med, &b.sd, &b.msr};
    for (size_t i = 0; i < 5 && st == CLRED_OK; i++)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, nout * sizeof(double), NULL, outs[i], "proxy scores");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, nout * sizeof(int), NULL, &b.idx, "proxy indices");
    cl_kernel k;
    int iS = (int)S, iC = (int)C, method = (int)o->method, window = o->window, ilen = (int)slice_len,
        ins = (int)nslices;
    size_t local[2] = {dev->max_work_group >= 64 ? 64 : dev->max_work_group, 1};
    size_t global[2] = {clred_round_up(S, local[0]), nslices};
    /* A tie tolerance takes two passes: the smallest |median| of each
     * spectral pixel, then the smallest std among the candidates within the
     * tolerance of it. */
    int passes = o->method == CLRED_PROXY_MEDIAN && o->tie_tolerance > 0 ? 2 : 1;
    double *limit = passes == 2 ? malloc(S * sizeof *limit) : NULL;
    if (st == CLRED_OK && passes == 2 && !limit)
        st = clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, S * sizeof(double), NULL, &b.limit, "proxy limits");
    for (int pass = 0; pass < passes && st == CLRED_OK; pass++) {
        int use_limit = pass == 1;
        if (use_limit) {
            st = clred_download(ctx, b.k1, 0, S * sizeof(double), limit);
            if (st == CLRED_OK)
                st = clred_sync(ctx);
            for (size_t j = 0; st == CLRED_OK && j < S; j++)
                limit[j] = limit[j] + o->tie_tolerance; /* INFINITY stays: no candidate */
            if (st == CLRED_OK)
                st = clred_upload(ctx, b.limit, 0, S * sizeof(double), limit);
        }
        if (st == CLRED_OK)
            st = clred_kernel(ctx, "proxy", options, "proxy_match", &k);
        if (st == CLRED_OK)
            st = clred_args(k, "proxy_match", CLRED_ARG(b.spec), CLRED_ARG(b.spec_x), CLRED_ARG(iS),
                            CLRED_ARG(b.cand), CLRED_ARG(b.cand_x), CLRED_ARG(b.cand_idx), CLRED_ARG(iC),
                            CLRED_ARG(method), CLRED_ARG(window), CLRED_ARG(ilen), CLRED_ARG(use_limit),
                            CLRED_ARG(b.limit), CLRED_ARG(b.k1), CLRED_ARG(b.k2), CLRED_ARG(b.idx), CLRED_ARG(b.med),
                            CLRED_ARG(b.sd), CLRED_ARG(b.msr), CLRED_LOCAL(TILE * tp * sizeof(float)), (size_t)0);
        if (st == CLRED_OK)
            st = clred_run(ctx, k, "proxy_match", 2, global, local);
        if (st == CLRED_OK && nslices > 1) {
            st = clred_kernel(ctx, "proxy", options, "proxy_reduce", &k);
            if (st == CLRED_OK)
                st = clred_args(k, "proxy_reduce", CLRED_ARG(iS), CLRED_ARG(ins), CLRED_ARG(b.k1), CLRED_ARG(b.k2),
                                CLRED_ARG(b.idx), CLRED_ARG(b.med), CLRED_ARG(b.sd), CLRED_ARG(b.msr), (size_t)0);
            size_t g = S;
            if (st == CLRED_OK)
                st = clred_run_tiled(ctx, k, "proxy_reduce", 1, &g);
        }
    }
    free(limit);
    if (st == CLRED_OK)
        st = clred_download(ctx, b.k1, 0, S * sizeof(double), k1);
    if (st == CLRED_OK)
        st = clred_download(ctx, b.idx, 0, S * sizeof(int), idx);
    if (st == CLRED_OK)
        st = clred_download(ctx, b.med, 0, S * sizeof(double), med);
    if (st == CLRED_OK)
        st = clred_download(ctx, b.sd, 0, S * sizeof(double), sd);
    if (st == CLRED_OK)
        st = clred_download(ctx, b.msr, 0, S * sizeof(double), msr);
    if (st == CLRED_OK)
        st = clred_sync(ctx);
    for (size_t j = 0; st == CLRED_OK && j < S; j++) {
        size_t p = spix[j];
        if (!isfinite(k1[j]) || idx[j] < 0)
            continue; /* no candidate (an empty window) */
        m->proxy[p] = idx[j];
        m->median[p] = o->method == CLRED_PROXY_MEDIAN ? med[j] : NAN;
        m->std[p] = sd[j];
        m->msr[p] = msr[j];
        m->nmatched++;
    }
    bufs_release(&b);
    free(spec), free(cand), free(sx), free(cx), free(ci), free(k1), free(med), free(sd), free(msr), free(idx);
    return st;
}

clred_status clred_proxy_match_pixels(clred_ctx *ctx, const clred_image *darks, size_t ndarks,
                                      const uint8_t *spectral, const clred_proxy_opts *opts, clred_proxy_match *out)
{
    memset(out, 0, sizeof *out);
    clred_proxy_opts o = opts ? *opts : clred_proxy_defaults();
    if (!ctx || !darks || !spectral)
        return clred_fail(CLRED_ERR_USAGE, "proxy: no context, darks or spectral region given");
    if (ndarks < 2 || ndarks > 128)
        return clred_fail(CLRED_ERR_USAGE, "proxy: %zu dark frames given; 2 to 128 are needed", ndarks);
    if (o.method != CLRED_PROXY_MEDIAN && o.method != CLRED_PROXY_LSQ)
        return clred_fail(CLRED_ERR_USAGE, "proxy: unknown method %d", (int)o.method);
    if (!(o.tie_tolerance >= 0))
        return clred_fail(CLRED_ERR_USAGE, "proxy: tie tolerance %g must not be negative", o.tie_tolerance);
    if (o.window < 0 || !(o.hot_sigma > 0))
        return clred_fail(CLRED_ERR_USAGE, "proxy: window (%d) must not be negative and hot_sigma (%g) positive",
                          o.window, o.hot_sigma);
    if (!clred_ctx_device(ctx)->has_double)
        return clred_fail(CLRED_ERR_DEVICE, "proxy: %s has no double precision, which the scores need",
                          clred_ctx_device(ctx)->name);
    size_t w = darks[0].width, h = darks[0].height, np = w * h;
    for (size_t i = 0; i < ndarks; i++)
        if (!darks[i].sci || darks[i].width != w || darks[i].height != h)
            return clred_fail(CLRED_ERR_INPUT, "proxy: dark %zu is %zu x %zu, dark 0 %zu x %zu", i, darks[i].width,
                              darks[i].height, w, h);
    if (np == 0 || np > 0x7fffffff)
        return clred_fail(CLRED_ERR_USAGE, "proxy: %zu x %zu frames are out of range", w, h);
    out->width = w;
    out->height = h;
    out->ndarks = ndarks;
    out->proxy = malloc(np * sizeof *out->proxy);
    out->median = malloc(np * sizeof *out->median);
    out->std = malloc(np * sizeof *out->std);
    out->msr = malloc(np * sizeof *out->msr);
    out->unusable = malloc(np);
    size_t *spix = malloc(np * sizeof *spix), *cpix = malloc(np * sizeof *cpix), S = 0, C = 0;
    clred_status st = out->proxy && out->median && out->std && out->msr && out->unusable && spix && cpix
                          ? CLRED_OK
                          : clred_fail(CLRED_ERR_MEMORY, "proxy: out of memory");
    if (st == CLRED_OK)
        st = find_unusable(darks, ndarks, &o, out->unusable);
    for (size_t i = 0; st == CLRED_OK && i < np; i++) {
        out->proxy[i] = -1;
        out->median[i] = out->std[i] = out->msr[i] = NAN;
        if (spectral[i])
            out->nspectral++;
        if (out->unusable[i])
            continue;
        if (spectral[i])
            spix[S++] = i;
        else
            cpix[C++] = i;
    }
    out->ncandidates = C;
    if (st == CLRED_OK && S > 0 && C == 0)
        st = clred_fail(CLRED_ERR_INPUT, "proxy: no usable non-spectral pixel to be a proxy");
    if (st == CLRED_OK && S > 0)
        st = search(ctx, darks, ndarks, spix, S, cpix, C, &o, out);
    free(spix), free(cpix);
    if (st != CLRED_OK)
        clred_proxy_match_free(out);
    return st;
}

clred_status clred_proxy_background(clred_ctx *ctx, const clred_proxy_match *m, const clred_image *sci,
                                    const uint8_t *spectral, clred_image *bkg, clred_image *final)
{
    if (bkg)
        memset(bkg, 0, sizeof *bkg);
    if (final)
        memset(final, 0, sizeof *final);
    if (!ctx || !m || !m->proxy || !sci || !sci->sci || !spectral)
        return clred_fail(CLRED_ERR_USAGE, "proxy background: no context, match, frame or spectral region");
    if (sci->width != m->width || sci->height != m->height)
        return clred_fail(CLRED_ERR_INPUT, "proxy background: a %zu x %zu frame for a %zu x %zu match", sci->width,
                          sci->height, m->width, m->height);
    size_t np = m->width * m->height;
    int *code = malloc(np * sizeof *code);
    if (!code)
        return clred_fail(CLRED_ERR_MEMORY, "proxy background: out of memory");
    for (size_t i = 0; i < np; i++)
        code[i] = m->proxy[i] >= 0 ? (int)m->proxy[i] : spectral[i] ? -2 : -1;
    clred_image b, f;
    memset(&b, 0, sizeof b);
    memset(&f, 0, sizeof f);
    clred_status st = clred_image_alloc(&b, m->width, m->height, 0, 0);
    if (st == CLRED_OK)
        st = clred_image_alloc(&f, m->width, m->height, 0, 0);
    cl_mem in = NULL, cbuf = NULL, bb = NULL, fb = NULL;
    const cl_mem_flags ro = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, np * sizeof(float), sci->sci, &in, "science frame");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, np * sizeof(int), code, &cbuf, "proxy map");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_WRITE_ONLY, np * sizeof(float), NULL, &bb, "background frame");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_WRITE_ONLY, np * sizeof(float), NULL, &fb, "final frame");
    cl_kernel k;
    cl_uint n = (cl_uint)np;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "arith", NULL, "proxy_apply", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "proxy_apply", CLRED_ARG(in), CLRED_ARG(cbuf), CLRED_ARG(bb), CLRED_ARG(fb), CLRED_ARG(n),
                        (size_t)0);
    size_t global = np;
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "proxy_apply", 1, &global);
    if (st == CLRED_OK)
        st = clred_download(ctx, bb, 0, np * sizeof(float), b.sci);
    if (st == CLRED_OK)
        st = clred_download(ctx, fb, 0, np * sizeof(float), f.sci);
    if (st == CLRED_OK)
        st = clred_sync(ctx);
    clred_release(&in), clred_release(&cbuf), clred_release(&bb), clred_release(&fb);
    free(code);
    if (st == CLRED_OK && bkg)
        *bkg = b;
    else
        clred_image_free(&b);
    if (st == CLRED_OK && final)
        *final = f;
    else
        clred_image_free(&f);
    return st;
}

clred_status clred_proxy_match_write_csv(const char *path, const clred_proxy_match *m, const uint8_t *spectral,
                                         int overwrite)
{
    if (!m || !m->proxy || !spectral)
        return clred_fail(CLRED_ERR_USAGE, "proxy: no match to write");
    char tmp[4096];
    FILE *f;
    CLRED_TRY(clred_atomic_open(path, overwrite, tmp, sizeof tmp, &f));
    fprintf(f, "x,y,proxy_x,proxy_y,median,std,msr\n");
    for (size_t i = 0; i < m->width * m->height; i++) {
        if (!spectral[i])
            continue;
        size_t x = i % m->width, y = i / m->width;
        if (m->proxy[i] < 0) {
            fprintf(f, "%zu,%zu,,,,,\n", x, y);
            continue;
        }
        size_t p = (size_t)m->proxy[i];
        fprintf(f, "%zu,%zu,%zu,%zu,%.17g,%.17g,%.17g\n", x, y, p % m->width, p / m->width, m->median[i], m->std[i],
                m->msr[i]);
    }
    return clred_atomic_close(f, tmp, path);
}
