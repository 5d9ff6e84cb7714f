/* Mesh background and RMS (kernels/background.cl): per-box clipped
 * statistics on the device, box filling and the mesh median filter on the
 * host (the mesh is tiny), the bicubic spline to full resolution on the device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "background.h"

clred_bkg_opts clred_bkg_defaults(void)
{
    clred_bkg_opts o;
    memset(&o, 0, sizeof o);
    o.box_w = o.box_h = 64;
    o.filter_w = o.filter_h = 3;
    o.clip_sigma = 3.0;
    o.max_iters = 100;
    o.min_good_frac = 0.5;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    o.mask_sources = 0;
    o.source_sigma = 3.0;
    o.source_grow = 2;
    return o;
}

static clred_status check_opts(size_t width, size_t height, const clred_bkg_opts *o)
{
    if (width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "background: no image given");
    if (width > 1u << 30 || height > 1u << 30 || width * height > 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "background: %zu x %zu image is too large", width, height);
    if (o->box_w < 1 || o->box_h < 1 || (size_t)o->box_w * (size_t)o->box_h > (1u << 24))
        return clred_fail(CLRED_ERR_USAGE, "background: box size %d x %d must be positive and at most 2^24 pixels",
                          o->box_w, o->box_h);
    if (o->filter_w < 1 || o->filter_h < 1 || !(o->filter_w & 1) || !(o->filter_h & 1))
        return clred_fail(CLRED_ERR_USAGE, "background: mesh filter %d x %d must be odd and positive", o->filter_w,
                          o->filter_h);
    if (!(o->clip_sigma > 0) || o->max_iters < 0 || !(o->min_good_frac >= 0 && o->min_good_frac <= 1))
        return clred_fail(CLRED_ERR_USAGE,
                          "background: clip_sigma (%g) must be positive, max_iters (%d) not negative, "
                          "min_good_frac (%g) within [0, 1]",
                          o->clip_sigma, o->max_iters, o->min_good_frac);
    if (o->mask_sources && (!(o->source_sigma > 0) || o->source_grow < 0 || o->source_grow > 64))
        return clred_fail(CLRED_ERR_USAGE, "background: source_sigma (%g) must be positive, source_grow (%d) in 0..64",
                          o->source_sigma, o->source_grow);
    return CLRED_OK;
}

typedef struct {
    int nx, ny;
    double *back, *sigma; /* nx * ny */
    int *npix;
} mesh;

static void mesh_free(mesh *m)
{
    free(m->back);
    free(m->sigma);
    free(m->npix);
    memset(m, 0, sizeof *m);
}

/* Boxes without enough pixels take the mean of the valid boxes nearest to
 * them (SEP's rule). */
static clred_status fill_boxes(mesh *m, size_t *nfilled)
{
    int n = m->nx * m->ny;
    int *valid = malloc((size_t)n * sizeof *valid);
    if (!valid)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the background mesh");
    int nvalid = 0;
    for (int b = 0; b < n; b++)
        nvalid += (valid[b] = m->npix[b] > 0);
    if (nvalid == 0) {
        free(valid);
        return clred_fail(CLRED_ERR_INPUT, "background: none of the %d x %d boxes has enough usable pixels", m->nx,
                          m->ny);
    }
    *nfilled = 0;
    for (int b = 0; b < n; b++) {
        if (valid[b])
            continue;
        int bx = b % m->nx, by = b / m->nx;
        long best = -1;
        double sb = 0, ss = 0;
        int count = 0;
        for (int c = 0; c < n; c++) {
            if (!valid[c])
                continue;
            long dx = c % m->nx - bx, dy = c / m->nx - by, d = dx * dx + dy * dy;
            if (best < 0 || d < best) {
                best = d;
                sb = ss = 0;
                count = 0;
            }
            if (d == best) {
                sb += m->back[c];
                ss += m->sigma[c];
                count++;
            }
        }
        m->back[b] = sb / count;
        m->sigma[b] = ss / count;
        (*nfilled)++;
    }
    free(valid);
    return CLRED_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return (n & 1) ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The filter's half-width at mesh index i: shrunk symmetrically near the
 * edges. SEP cuts the window instead, which biases the edge boxes on a
 * gradient (a corner median of a plane is off by most of a box's slope); a
 * symmetric window keeps a linear gradient exact. */
static int window_half(int half, int i, int n)
{
    int r = half;
    if (r > i)
        r = i;
    if (r > n - 1 - i)
        r = n - 1 - i;
    return r;
}

/* Median filter of the mesh. */
static clred_status filter_mesh(double *a, int nx, int ny, int fw, int fh)
{
    if (fw == 1 && fh == 1)
        return CLRED_OK;
    double *out = malloc((size_t)nx * ny * sizeof *out), *win = malloc((size_t)fw * fh * sizeof *win);
    if (!out || !win) {
        free(out);
        free(win);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory filtering the background mesh");
    }
    for (int y = 0; y < ny; y++)
        for (int x = 0; x < nx; x++) {
            int rx = window_half(fw / 2, x, nx), ry = window_half(fh / 2, y, ny);
            size_t k = 0;
            for (int yy = y - ry; yy <= y + ry; yy++)
                for (int xx = x - rx; xx <= x + rx; xx++)
                    win[k++] = a[yy * nx + xx];
            out[y * nx + x] = median_of(win, k);
        }
    memcpy(a, out, (size_t)nx * ny * sizeof *a);
    free(out);
    free(win);
    return CLRED_OK;
}

/* Second derivatives of the natural cubic spline on unit spacing through
 * n values y[0], y[stride], ... (zero at both ends; Thomas algorithm). */
static void spline_d2(const double *y, int n, int stride, double *d2, double *work)
{
    for (int i = 0; i < n; i++)
        d2[i * stride] = 0.0;
    if (n < 3)
        return;
    /* rows i = 1..n-2: d2[i-1] + 4 d2[i] + d2[i+1] = 6 (y[i+1] - 2 y[i] + y[i-1]) */
    double *c = work, *r = work + n;
    for (int i = 1; i < n - 1; i++) {
        double rhs = 6.0 * (y[(i + 1) * stride] - 2.0 * y[i * stride] + y[(i - 1) * stride]);
        double diag = 4.0 - (i > 1 ? c[i - 1] : 0.0);
        c[i] = 1.0 / diag;
        r[i] = (rhs - (i > 1 ? r[i - 1] : 0.0)) / diag;
    }
    d2[(n - 2) * stride] = r[n - 2];
    for (int i = n - 3; i >= 1; i--)
        d2[i * stride] = r[i] - c[i] * d2[(i + 1) * stride];
}

/* The four planes bkg_interp needs: mesh, d2 along y, d2 along x, and d2
 * along y of d2 along x. */
static clred_status spline_planes(const double *a, int nx, int ny, float *planes)
{
    size_t n = (size_t)nx * ny;
    double *d2y = calloc(n, sizeof *d2y), *d2x = calloc(n, sizeof *d2x), *d2xy = calloc(n, sizeof *d2xy);
    double *work = malloc(2 * (size_t)(nx > ny ? nx : ny) * sizeof *work);
    if (!d2y || !d2x || !d2xy || !work) {
        free(d2y), free(d2x), free(d2xy), free(work);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the background spline");
    }
    for (int x = 0; x < nx; x++)
        spline_d2(a + x, ny, nx, d2y + x, work);
    for (int y = 0; y < ny; y++)
        spline_d2(a + (size_t)y * nx, nx, 1, d2x + (size_t)y * nx, work);
    for (int x = 0; x < nx; x++)
        spline_d2(d2x + x, ny, nx, d2xy + x, work);
    for (size_t i = 0; i < n; i++) {
        planes[i] = (float)a[i];
        planes[n + i] = (float)d2y[i];
        planes[2 * n + i] = (float)d2x[i];
        planes[3 * n + i] = (float)d2xy[i];
    }
    free(d2y), free(d2x), free(d2xy), free(work);
    return CLRED_OK;
}

/* One run: img, mask (NULL when absent) and the two maps are the device
 * images' planes, not owned; the rest are this run's temporaries. */
typedef struct {
    clred_ctx *ctx;
    int w, h;
    const clred_bkg_opts *o;
    cl_mem img, mask, bkg_map, rms_map;
    cl_mem mask2, scratch, back, sigma, npix;
    size_t scratch_bytes;
    clred_bkg_model model; /* the last pass's */
} bkg_state;

void clred_bkg_model_free(clred_bkg_model *m)
{
    if (!m)
        return;
    free(m->back);
    free(m->rms);
    memset(m, 0, sizeof *m);
}

static void state_release(bkg_state *s)
{
    clred_pool_give(s->ctx, &s->scratch, s->scratch_bytes);
    clred_pool_give(s->ctx, &s->mask2, (size_t)s->w * s->h * sizeof(uint16_t));
    cl_mem *all[] = {&s->back, &s->sigma, &s->npix};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clred_release(all[i]);
}

/* Boxes per launch of bkg_box_stats: each needs a scratch slot of two
 * words per box pixel (the sort keys and the radix sort's other buffer), and
 * the scratch must fit one buffer and a quarter of the memory budget. Beyond
 * 64 boxes per compute unit a bigger launch gains nothing, while on a CPU
 * every scratch page is a page fault on first touch. */
static size_t boxes_per_launch(const bkg_state *s, size_t nbox)
{
    uint64_t slot = 2 * (uint64_t)s->o->box_w * (uint64_t)s->o->box_h * sizeof(cl_uint);
    uint64_t cap = clred_ctx_max_alloc(s->ctx), quarter = clred_ctx_budget(s->ctx) / 4;
    if (quarter < cap)
        cap = quarter;
    uint64_t chunk = cap / slot, enough = 64 * (uint64_t)(clred_ctx_device(s->ctx)->compute_units + 1);
    if (chunk > enough)
        chunk = enough;
    if (chunk < 1)
        chunk = 1;
    return chunk < nbox ? (size_t)chunk : nbox;
}

/* Per-box statistics on the device into m (allocated here). */
static clred_status box_stats(bkg_state *s, cl_mem mask, int have_mask, uint16_t ignore, mesh *m)
{
    const clred_bkg_opts *o = s->o;
    m->nx = (s->w + o->box_w - 1) / o->box_w;
    m->ny = (s->h + o->box_h - 1) / o->box_h;
    int nbox = m->nx * m->ny;
    m->back = malloc((size_t)nbox * sizeof *m->back);
    m->sigma = malloc((size_t)nbox * sizeof *m->sigma);
    m->npix = malloc((size_t)nbox * sizeof *m->npix);
    float *fb = malloc((size_t)nbox * 2 * sizeof *fb);
    if (!m->back || !m->sigma || !m->npix || !fb) {
        free(fb);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %d x %d background mesh", m->nx, m->ny);
    }
    size_t chunk = boxes_per_launch(s, (size_t)nbox);
    clred_status st = CLRED_OK;
    /* Pooled: on a CPU device a fresh buffer pays a page fault per page on
     * first touch, every call. */
    if (!s->scratch) {
        s->scratch_bytes = chunk * 2 * (size_t)o->box_w * o->box_h * sizeof(cl_uint);
        st = clred_pool_take(s->ctx, s->scratch_bytes, "background box scratch", &s->scratch);
    }
    if (st == CLRED_OK && !s->back)
        st = clred_buffer(s->ctx, CL_MEM_READ_WRITE, (size_t)nbox * sizeof(float), NULL, &s->back, "box levels");
    if (st == CLRED_OK && !s->sigma)
        st = clred_buffer(s->ctx, CL_MEM_READ_WRITE, (size_t)nbox * sizeof(float), NULL, &s->sigma, "box rms");
    if (st == CLRED_OK && !s->npix)
        st = clred_buffer(s->ctx, CL_MEM_READ_WRITE, (size_t)nbox * sizeof(int), NULL, &s->npix, "box counts");
    cl_kernel k;
    if (st == CLRED_OK)
        st = clred_kernel(s->ctx, "background", NULL, "bkg_box_stats", &k);
    cl_ushort ig = ignore;
    float clip = (float)o->clip_sigma, frac = (float)o->min_good_frac;
    for (int first = 0; st == CLRED_OK && first < nbox; first += (int)chunk) {
        cl_int nslots = nbox - first < (int)chunk ? nbox - first : (int)chunk;
        st = clred_args(k, "bkg_box_stats", CLRED_ARG(s->img), CLRED_ARG(mask), CLRED_ARG(have_mask), CLRED_ARG(ig),
                        CLRED_ARG(s->w), CLRED_ARG(s->h), CLRED_ARG(o->box_w), CLRED_ARG(o->box_h),
                        CLRED_ARG(m->nx), CLRED_ARG(m->ny), CLRED_ARG(clip), CLRED_ARG(o->max_iters),
                        CLRED_ARG(frac), CLRED_ARG(first), CLRED_ARG(nslots), CLRED_ARG(s->scratch),
                        CLRED_ARG(s->back), CLRED_ARG(s->sigma), CLRED_ARG(s->npix), (size_t)0);
        if (st == CLRED_OK)
            st = clred_run_items(s->ctx, k, "bkg_box_stats", (size_t)nslots);
    }
    if (st == CLRED_OK)
        st = clred_download(s->ctx, s->back, 0, (size_t)nbox * sizeof(float), fb);
    if (st == CLRED_OK)
        st = clred_download(s->ctx, s->sigma, 0, (size_t)nbox * sizeof(float), fb + nbox);
    if (st == CLRED_OK)
        st = clred_download(s->ctx, s->npix, 0, (size_t)nbox * sizeof(int), m->npix);
    for (int b = 0; st == CLRED_OK && b < nbox; b++) {
        m->back[b] = fb[b];
        m->sigma[b] = fb[nbox + b];
    }
    free(fb);
    return st;
}

/* The spline of both mesh planes to rows [y0, y0 + nrows) of the
 * full-resolution maps (bkg_map and rms_map hold nrows * width): bkg_rows
 * down the mesh columns at every row, then bkg_interp across. The mesh is
 * float32 (the model's), so a model read back from its product evaluates to
 * the same maps bit for bit. */
clred_status clred_bkg_eval_into(clred_ctx *ctx, const clred_bkg_model *m, size_t y0, size_t nrows, cl_mem bkg_map,
                                 cl_mem rms_map)
{
    /* Rows per work-item of bkg_interp: enough to share the column's weights,
     * few enough to leave every device many work-items. */
    const int band = 4;
    int nx = (int)m->mesh_w, ny = (int)m->mesh_h, w = (int)m->width, n = (int)nrows, first = (int)y0;
    size_t nbox = m->mesh_w * m->mesh_h;
    if (nrows == 0)
        return CLRED_OK;
    double *mesh = calloc(nbox, sizeof *mesh);
    float *planes = malloc(8 * nbox * sizeof *planes);
    if (!planes || !mesh) {
        free(mesh), free(planes);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the background spline");
    }
    for (size_t i = 0; i < nbox; i++)
        mesh[i] = m->back[i];
    clred_status st = spline_planes(mesh, nx, ny, planes);
    for (size_t i = 0; i < nbox; i++)
        mesh[i] = m->rms[i];
    if (st == CLRED_OK)
        st = spline_planes(mesh, nx, ny, planes + 4 * nbox);
    free(mesh);
    cl_mem p = NULL, rows = NULL;
    size_t rows_bytes = nrows * m->mesh_w * sizeof(cl_float4);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, rows_bytes, "background rows", &rows);
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY, 8 * nbox * sizeof(float), planes, &p, "spline planes");
    free(planes);
    cl_kernel k;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "background", NULL, "bkg_rows", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "bkg_rows", CLRED_ARG(p), CLRED_ARG(rows), CLRED_ARG(first), CLRED_ARG(n),
                        CLRED_ARG(m->box_h), CLRED_ARG(nx), CLRED_ARG(ny), (size_t)0);
    size_t grows[2] = {(size_t)nx, nrows};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "bkg_rows", 2, grows);
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "background", NULL, "bkg_interp", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "bkg_interp", CLRED_ARG(rows), CLRED_ARG(bkg_map), CLRED_ARG(rms_map), CLRED_ARG(w),
                        CLRED_ARG(n), CLRED_ARG(m->box_w), CLRED_ARG(nx), CLRED_ARG(band), (size_t)0);
    size_t global[2] = {m->width, (nrows + (size_t)band - 1) / (size_t)band};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "bkg_interp", 2, global);
    clred_release(&p);
    clred_pool_give(ctx, &rows, rows_bytes);
    return st;
}

/* The pass's mesh (already float32 values) as the run's model. */
static clred_status keep_model(bkg_state *s, const mesh *m, const clred_bkg_info *info)
{
    clred_bkg_model_free(&s->model);
    clred_bkg_model *o = &s->model;
    size_t nbox = (size_t)m->nx * m->ny;
    o->back = malloc(nbox * sizeof *o->back);
    o->rms = malloc(nbox * sizeof *o->rms);
    if (!o->back || !o->rms) {
        clred_bkg_model_free(o);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the background model");
    }
    for (size_t i = 0; i < nbox; i++) {
        o->back[i] = (float)m->back[i];
        o->rms[i] = (float)m->sigma[i];
    }
    o->width = (size_t)s->w;
    o->height = (size_t)s->h;
    o->box_w = s->o->box_w;
    o->box_h = s->o->box_h;
    o->filter_w = s->o->filter_w;
    o->filter_h = s->o->filter_h;
    o->mesh_w = (size_t)m->nx;
    o->mesh_h = (size_t)m->ny;
    o->global_back = info->global_back;
    o->global_rms = info->global_rms;
    return CLRED_OK;
}

/* Statistics, filling, filtering and the two maps for one pass. */
static clred_status one_pass(bkg_state *s, cl_mem mask, int have_mask, uint16_t ignore, clred_bkg_info *info)
{
    mesh m;
    memset(&m, 0, sizeof m);
    clred_status st = box_stats(s, mask, have_mask, ignore, &m);
    size_t nfilled = 0;
    if (st == CLRED_OK)
        st = fill_boxes(&m, &nfilled);
    if (st == CLRED_OK)
        st = filter_mesh(m.back, m.nx, m.ny, s->o->filter_w, s->o->filter_h);
    if (st == CLRED_OK)
        st = filter_mesh(m.sigma, m.nx, m.ny, s->o->filter_w, s->o->filter_h);
    if (st == CLRED_OK) {
        size_t nbox = (size_t)m.nx * m.ny;
        /* the model holds float32 meshes: round here, so the maps are the
         * model's evaluation */
        for (size_t i = 0; i < nbox; i++) {
            m.back[i] = (float)m.back[i];
            m.sigma[i] = (float)m.sigma[i];
        }
        double *tmp = malloc(nbox * sizeof *tmp);
        if (!tmp) {
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory for the background mesh");
        } else {
            memcpy(tmp, m.back, nbox * sizeof *tmp);
            info->global_back = median_of(tmp, nbox);
            memcpy(tmp, m.sigma, nbox * sizeof *tmp);
            info->global_rms = median_of(tmp, nbox);
            free(tmp);
        }
        info->mesh_w = (size_t)m.nx;
        info->mesh_h = (size_t)m.ny;
        info->nfilled = nfilled;
    }
    if (st == CLRED_OK)
        st = keep_model(s, &m, info);
    if (st == CLRED_OK)
        st = clred_bkg_eval_into(s->ctx, &s->model, 0, (size_t)s->h, s->bkg_map, s->rms_map);
    mesh_free(&m);
    return st;
}

/* Pixels of the source mask flagged CLRED_MASK_DETECTED, counted on the
 * device so that only the count comes back. */
static clred_status count_detected(bkg_state *s, size_t n, size_t *nmasked)
{
    /* a few work-items per compute unit's lanes: one atomic each */
    size_t global = 1024 * (size_t)(s->ctx->info.compute_units ? s->ctx->info.compute_units : 1);
    cl_uint count = 0, npix = (cl_uint)n;
    cl_ushort bits = CLRED_MASK_DETECTED;
    cl_mem counter = NULL;
    cl_kernel k;
    clred_status st = clred_pool_take(s->ctx, sizeof count, "a source counter", &counter);
    if (st == CLRED_OK)
        st = clred_fill_zero(s->ctx, counter, sizeof count);
    if (st == CLRED_OK)
        st = clred_kernel(s->ctx, "background", NULL, "bkg_count_bits", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "bkg_count_bits", CLRED_ARG(s->mask2), CLRED_ARG(npix), CLRED_ARG(bits),
                        CLRED_ARG(counter), (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_tiled(s->ctx, k, "bkg_count_bits", 1, &global);
    if (st == CLRED_OK)
        st = clred_download(s->ctx, counter, 0, sizeof count, &count);
    clred_pool_give(s->ctx, &counter, sizeof count);
    *nmasked = count;
    return st;
}

static clred_status mask_sources(bkg_state *s, int have_mask, size_t *nmasked)
{
    size_t n = (size_t)s->w * s->h;
    if (!s->mask2)
        CLRED_TRY(clred_pool_take(s->ctx, n * sizeof(uint16_t), "background source mask", &s->mask2));
    cl_kernel k;
    CLRED_TRY(clred_kernel(s->ctx, "background", NULL, "bkg_mask_sources", &k));
    float nsig = (float)s->o->source_sigma;
    cl_mem mask_arg = s->mask ? s->mask : s->img; /* unread without a mask */
    CLRED_TRY(clred_args(k, "bkg_mask_sources", CLRED_ARG(s->img), CLRED_ARG(s->bkg_map), CLRED_ARG(s->rms_map),
                         CLRED_ARG(mask_arg), CLRED_ARG(have_mask), CLRED_ARG(s->mask2), CLRED_ARG(s->w),
                         CLRED_ARG(s->h), CLRED_ARG(nsig), CLRED_ARG(s->o->source_grow), (size_t)0));
    size_t global[2] = {(size_t)s->w, (size_t)s->h};
    CLRED_TRY(clred_run_tiled(s->ctx, k, "bkg_mask_sources", 2, global));
    return count_detected(s, n, nmasked);
}

/* The maps into bkg_map and rms_map (planes of img's shape). */
static clred_status background_into(clred_ctx *ctx, const clred_dimage *img, const clred_bkg_opts *o,
                                    cl_mem bkg_map, cl_mem rms_map, clred_bkg_info *info, clred_bkg_model *model)
{
    bkg_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.w = (int)img->width;
    s.h = (int)img->height;
    s.o = o;
    s.img = clred_dimage_sci(img);
    s.mask = clred_dimage_mask(img);
    s.bkg_map = bkg_map;
    s.rms_map = rms_map;
    int have_mask = s.mask != NULL;
    /* a buffer the kernels are given but never read without a mask */
    cl_mem mask_arg = have_mask ? s.mask : s.img;
    clred_status st = one_pass(&s, mask_arg, have_mask, o->ignore_bits, info);
    if (st == CLRED_OK && o->mask_sources) {
        st = mask_sources(&s, have_mask, &info->nmasked_sources);
        if (st == CLRED_OK)
            st = one_pass(&s, s.mask2, 1, (uint16_t)(o->ignore_bits | CLRED_MASK_DETECTED), info);
    }
    if (st == CLRED_OK && model) {
        *model = s.model;
        memset(&s.model, 0, sizeof s.model);
    }
    clred_bkg_model_free(&s.model);
    state_release(&s);
    return st;
}

clred_status clred_background_dev(clred_ctx *ctx, const clred_dimage *img, const clred_bkg_opts *opts,
                                  clred_dimage **bkg, clred_dimage **rms, clred_bkg_info *info)
{
    if (bkg)
        *bkg = NULL;
    if (rms)
        *rms = NULL;
    if (!ctx || !img)
        return clred_fail(CLRED_ERR_USAGE, "background: no device context or image");
    if (img->ctx != ctx)
        return clred_fail(CLRED_ERR_USAGE, "background: the device image belongs to another context");
    clred_bkg_opts o = opts ? *opts : clred_bkg_defaults();
    CLRED_TRY(check_opts(img->width, img->height, &o));
    clred_bkg_info local;
    memset(&local, 0, sizeof local);
    /* Both maps are made (the source mask needs both); one not asked for is
     * a temporary. */
    clred_dimage *maps[2] = {NULL, NULL};
    clred_status st = clred_dimage_like(img, 0, 0, 0, &maps[0]);
    if (st == CLRED_OK)
        st = clred_dimage_like(img, 0, 0, 0, &maps[1]);
    if (st == CLRED_OK)
        st = background_into(ctx, img, &o, clred_dimage_sci(maps[0]), clred_dimage_sci(maps[1]), &local, NULL);
    if (st != CLRED_OK || !bkg)
        clred_dimage_free(maps[0]);
    if (st != CLRED_OK || !rms)
        clred_dimage_free(maps[1]);
    if (st != CLRED_OK)
        return st;
    if (bkg)
        *bkg = maps[0];
    if (rms)
        *rms = maps[1];
    if (info)
        *info = local;
    return CLRED_OK;
}

/* Where a host output image's map is computed: on a device that shares host
 * memory, a borrowed view of the (freshly allocated) output itself, so the
 * kernels write straight into it; elsewhere a device plane of that shape. */
static clred_status output_view(clred_ctx *ctx, const clred_dimage *like, clred_image *out, clred_dimage **view)
{
    *view = NULL;
    CLRED_TRY(clred_image_alloc(out, like->width, like->height, 0, 0));
    if (ctx->unified_memory)
        return clred_dimage_borrow(ctx, out, view);
    return clred_dimage_like(like, 0, 0, 0, view);
}

clred_status clred_background(clred_ctx *ctx, const clred_image *img, const clred_bkg_opts *opts,
                              clred_image *bkg, clred_image *rms, clred_bkg_info *info)
{
    clred_bkg_opts o = opts ? *opts : clred_bkg_defaults();
    if (bkg)
        memset(bkg, 0, sizeof *bkg);
    if (rms)
        memset(rms, 0, sizeof *rms);
    if (!img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "background: no image given");
    CLRED_TRY(check_opts(img->width, img->height, &o));
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "background: no device context");
    clred_image view = *img;
    view.var = NULL;    /* not used: not carried to the device */
    view.header = NULL; /* nor the header */
    clred_dimage *d = NULL, *maps[2] = {NULL, NULL};
    clred_image *outs[2] = {bkg, rms};
    clred_bkg_info local;
    memset(&local, 0, sizeof local);
    clred_status st = clred_dimage_borrow(ctx, &view, &d);
    for (int i = 0; i < 2 && st == CLRED_OK; i++) {
        if (outs[i])
            st = output_view(ctx, d, outs[i], &maps[i]);
        else
            st = clred_dimage_like(d, 0, 0, 0, &maps[i]);
    }
    if (st == CLRED_OK)
        st = background_into(ctx, d, &o, clred_dimage_sci(maps[0]), clred_dimage_sci(maps[1]), &local, NULL);
    for (int i = 0; i < 2 && st == CLRED_OK; i++)
        if (outs[i])
            st = clred_dimage_download_into(maps[i], outs[i]);
    /* the views go before the host arrays they stand on */
    clred_dimage_free(maps[0]);
    clred_dimage_free(maps[1]);
    clred_dimage_free(d);
    if (st != CLRED_OK) {
        if (bkg)
            clred_image_free(bkg);
        if (rms)
            clred_image_free(rms);
    } else if (info) {
        *info = local;
    }
    return st;
}

clred_status clred_background_model_dev(clred_ctx *ctx, const clred_dimage *img, const clred_bkg_opts *opts,
                                        clred_bkg_model *model, clred_bkg_info *info)
{
    if (model)
        memset(model, 0, sizeof *model);
    if (!ctx || !img || !model)
        return clred_fail(CLRED_ERR_USAGE, "background model: no device context, image or model given");
    if (img->ctx != ctx)
        return clred_fail(CLRED_ERR_USAGE, "background model: the device image belongs to another context");
    clred_bkg_opts o = opts ? *opts : clred_bkg_defaults();
    CLRED_TRY(check_opts(img->width, img->height, &o));
    clred_bkg_info local;
    memset(&local, 0, sizeof local);
    /* the maps are scratch here (the source mask needs them) */
    clred_dimage *maps[2] = {NULL, NULL};
    clred_status st = clred_dimage_new(ctx, img->width, img->height, 0, 0, &maps[0]);
    if (st == CLRED_OK)
        st = clred_dimage_new(ctx, img->width, img->height, 0, 0, &maps[1]);
    if (st == CLRED_OK)
        st = background_into(ctx, img, &o, clred_dimage_sci(maps[0]), clred_dimage_sci(maps[1]), &local, model);
    clred_dimage_free(maps[0]);
    clred_dimage_free(maps[1]);
    if (st == CLRED_OK && info)
        *info = local;
    return st;
}

clred_status clred_background_model(clred_ctx *ctx, const clred_image *img, const clred_bkg_opts *opts,
                                    clred_bkg_model *model, clred_bkg_info *info)
{
    if (model)
        memset(model, 0, sizeof *model);
    if (!ctx || !img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "background model: no device context or image given");
    clred_image view = *img;
    view.var = NULL;
    view.header = NULL;
    clred_dimage *d = NULL;
    clred_status st = clred_dimage_borrow(ctx, &view, &d);
    if (st == CLRED_OK)
        st = clred_background_model_dev(ctx, d, opts, model, info);
    clred_dimage_free(d);
    return st;
}
