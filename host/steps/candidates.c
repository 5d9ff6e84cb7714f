/* Transient candidates on a difference image: the extrema of the score image
 * (S_corr, or D / sigma) found on the device (kernels/zogy.cl zogy_peaks),
 * then measured on the host on the difference: PSF-fit and aperture flux,
 * centroid, shape, the counts real/bogus classifiers use (nneg, nbad,
 * sumrat), dipole lobes, the edge distance and the mask under the peak. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clred_cand_opts clred_cand_defaults(void)
{
    clred_cand_opts o;
    memset(&o, 0, sizeof o);
    o.thresh = 5.0;
    o.both_signs = 1;
    o.ap_radius = 0.0;
    o.reject_bits = CLRED_MASK_UNUSABLE;
    o.max_candidates = 100000;
    return o;
}

typedef struct {
    const clred_image *d;
    const float *score;
    const clred_psf *psf;
    const clred_cand_opts *o;
    double ap_radius;
    double ap_frac; /* the PSF's flux inside the aperture: the aperture correction */
} measure_ctx;

/* A device image's planes readable on the host: mapped in place where the
 * device shares host memory (no copy of tens of MB into fresh pages), else
 * downloaded. */
typedef struct {
    const clred_dimage *d;
    void *map[CLRED_NPLANES];
    int mapped;
    clred_image img;
} host_planes;

static clred_status host_planes_get(const clred_dimage *d, host_planes *h)
{
    memset(h, 0, sizeof *h);
    h->d = d;
    if (!d->ctx->unified_memory)
        return clred_dimage_download(d, &h->img);
    CLRED_TRY(clred_dimage_map_read(d, h->map));
    h->mapped = 1;
    h->img.width = d->width;
    h->img.height = d->height;
    h->img.sci = h->map[CLRED_PLANE_SCI];
    h->img.var = h->map[CLRED_PLANE_VAR];
    h->img.mask = h->map[CLRED_PLANE_MASK];
    return CLRED_OK;
}

static void host_planes_release(host_planes *h)
{
    if (h->mapped)
        clred_dimage_unmap(h->d, h->map);
    else
        clred_image_free(&h->img);
    memset(h, 0, sizeof *h);
}

static double encircled(const clred_psf *p, double r)
{
    long h = (long)(p->size / 2);
    double s = 0;
    for (long j = -h; j <= h; j++)
        for (long i = -h; i <= h; i++)
            s += clred_circle_pixel_overlap(0, 0, r, (double)i, (double)j) * p->data[(size_t)(j + h) * p->size + (size_t)(i + h)];
    return s;
}

static int usable(const clred_image *d, size_t i, uint16_t bits)
{
    return isfinite(d->sci[i]) && (!d->mask || !(d->mask[i] & bits)) && (!d->var || (isfinite(d->var[i]) && d->var[i] > 0));
}

/* What the 5 x 5 box around the peak gives: the start of the position fit
 * (flux-weighted centroid of the peak's sign), nneg and sumrat (nbad, the
 * mask's bits and MASKED come later, from measure_unusable). */
static void measure_box(const measure_ctx *m, size_t pix, clred_candidate *c)
{
    const clred_image *d = m->d;
    long w = (long)d->width, h = (long)d->height, px = (long)(pix % d->width), py = (long)(pix / d->width);
    double sc = m->score[pix], sign = sc >= 0 ? 1.0 : -1.0;
    memset(c, 0, sizeof *c);
    c->score = sc;
    c->isdiffpos = sc >= 0;
    c->ra = c->dec = c->ref_dist = c->ref_flux = NAN; /* clred_candidates_context fills them */
    double sum = 0, sumabs = 0, wx = 0, wy = 0, ws = 0;
    for (long j = py - 2; j <= py + 2; j++)
        for (long i = px - 2; i <= px + 2; i++) {
            if (i < 0 || j < 0 || i >= w || j >= h)
                continue;
            size_t q = (size_t)j * (size_t)w + (size_t)i;
            if (!usable(d, q, m->o->reject_bits))
                continue;
            double v = d->sci[q];
            sum += v;
            sumabs += fabs(v);
            if (v * sign < 0)
                c->nneg++;
            double wt = fmax(v * sign, 0);
            wx += wt * (double)i;
            wy += wt * (double)j;
            ws += wt;
        }
    c->x = ws > 0 ? wx / ws : (double)px;
    c->y = ws > 0 ? wy / ws : (double)py;
    /* the centroid never leaves the peak's pixel by more than a pixel */
    if (fabs(c->x - (double)px) > 1 || fabs(c->y - (double)py) > 1) {
        c->x = (double)px;
        c->y = (double)py;
    }
    c->sumrat = sumabs > 0 ? sign * sum / sumabs : 0;
}

static int in_box(long i, long j, long cx, long cy)
{
    return labs(i - cx) <= 2 && labs(j - cy) <= 2;
}

/* nbad, the mask's bits and MASKED over the union of the 5 x 5 boxes around
 * the score's peak and around the fitted position (each pixel once; one
 * outside the image counts as unusable). Both, because a mask moves either:
 * beside a hole the matched filter finds less of the source and its peak
 * moves away from the hole (by 2 px for an S/N 11.5 source 0.6 px from one
 * in sweep_al_varying's seed 13), while a fit that follows the source there
 * leaves the peak's box clean; and a fit can run off a peak that sits on
 * one. Called after psf_fluxes, once the position is fitted. */
static void measure_unusable(const measure_ctx *m, size_t pix, clred_candidate *c)
{
    const clred_image *d = m->d;
    long w = (long)d->width, h = (long)d->height, px = (long)(pix % d->width), py = (long)(pix / d->width);
    long fx = lround(c->x), fy = lround(c->y);
    c->nbad = 0;
    c->mask_bits = 0;
    for (long j = (py < fy ? py : fy) - 2; j <= (py > fy ? py : fy) + 2; j++)
        for (long i = (px < fx ? px : fx) - 2; i <= (px > fx ? px : fx) + 2; i++) {
            if (!in_box(i, j, px, py) && !in_box(i, j, fx, fy))
                continue;
            if (i < 0 || j < 0 || i >= w || j >= h) {
                c->nbad++;
                continue;
            }
            size_t q = (size_t)j * (size_t)w + (size_t)i;
            if (d->mask)
                c->mask_bits |= d->mask[q];
            c->nbad += !usable(d, q, m->o->reject_bits);
        }
    if (c->nbad > 0)
        c->flags |= CLRED_CAND_MASKED;
}

/* Around the candidate's (fitted) position: the aperture sum; lobes and
 * second moments within 2 apertures; the edge distance (the PSF fit comes
 * from clred_psf_photometry_dev, see psf_fluxes). */
static void measure_aperture(const measure_ctx *m, clred_candidate *c)
{
    const clred_image *d = m->d;
    long w = (long)d->width, h = (long)d->height, px = lround(c->x), py = lround(c->y);
    double sign = c->isdiffpos ? 1.0 : -1.0;
    long half = (long)(m->psf->size / 2);
    double ap = 0, apv = 0, pos = 0, neg = 0, mxx = 0, myy = 0, mxy = 0, mw = 0;
    double rlobe = 2.0 * m->ap_radius;
    long reach = half > (long)ceil(rlobe) + 1 ? half : (long)ceil(rlobe) + 1;
    for (long j = py - reach; j <= py + reach; j++)
        for (long i = px - reach; i <= px + reach; i++) {
            if (i < 0 || j < 0 || i >= w || j >= h)
                continue;
            size_t q = (size_t)j * (size_t)w + (size_t)i;
            if (!usable(d, q, m->o->reject_bits))
                continue;
            double v = d->sci[q], var = d->var ? d->var[q] : 1.0, dx = (double)i - c->x, dy = (double)j - c->y;
            double a = clred_circle_pixel_overlap(c->x, c->y, m->ap_radius, (double)i, (double)j);
            ap += a * v;
            apv += a * a * var;
            /* lobes and moments from pixels beyond 2 and 1 sigma: a sum of the
             * noise's negative (positive) half alone would be far from 0 */
            double r = hypot(dx, dy), sd = d->var ? sqrt(var) : 0.0;
            if (r <= rlobe) {
                if (v > 2 * sd)
                    pos += v;
                else if (v < -2 * sd)
                    neg += v;
            }
            if (r <= m->ap_radius && v * sign > sd) {
                double wt = v * sign;
                mxx += wt * dx * dx;
                myy += wt * dy * dy;
                mxy += wt * dx * dy;
                mw += wt;
            }
        }
    c->ap_flux = ap / m->ap_frac;
    c->ap_flux_err = sqrt(apv) / m->ap_frac;
    c->lobe_pos = pos;
    c->lobe_neg = neg;
    double own = sign > 0 ? pos : -neg, other = sign > 0 ? -neg : pos;
    if (own > 0 && other > 0.5 * own)
        c->flags |= CLRED_CAND_DIPOLE;
    if (mw > 0) {
        mxx /= mw;
        myy /= mw;
        mxy /= mw;
        double tr = 0.5 * (mxx + myy), det = sqrt(fmax(0.25 * (mxx - myy) * (mxx - myy) + mxy * mxy, 0));
        double a2 = tr + det, b2 = fmax(tr - det, 1e-6);
        c->fwhm = 2.3548 * sqrt(0.5 * (a2 + b2));
        c->elongation = sqrt(a2 / b2);
    } else {
        c->fwhm = NAN;
        c->elongation = NAN;
    }
    c->edge_dist = fmin(fmin(c->x, c->y), fmin((double)(w - 1) - c->x, (double)(h - 1) - c->y));
    if (c->edge_dist < (double)half)
        c->flags |= CLRED_CAND_EDGE;
}

/* PSF fit of each candidate on the difference (whose background is 0: no
 * sky), weighted by its variance, the position fitted from the box's
 * centroid: the one PSF fit of clred_psf_photometry_dev; the flux, its S/N
 * and the position's error follow from it. The position is fitted because
 * the score's peak need not be the source's: beside a mask, the matched
 * filter counts the masked pixels at the sky's variance and finds less of
 * the source there, so its peak moves away from the mask, while a fit over
 * the usable pixels alone is not biased by it; and the fit's covariance gives
 * the position an error to match it by. (In test_al's seed 19 an S/N 6.8
 * source 2.4 px from a mask peaked 2.9 px off and was fitted 2.4 px off, 4
 * sigma: the rest is a positive residual under it, +0.3 sigma a pixel over
 * that part of the field in ZOGY's difference too.) A fit that runs further
 * than the PSF's FWHM has left the peak's source and is held at the
 * centroid, as is one of a |flux| below 3 sigma. */
static clred_status psf_fluxes(clred_ctx *ctx, const clred_dimage *diff, const clred_psf *psf,
                               const clred_cand_opts *o, clred_candidate *c, size_t n)
{
    if (n == 0)
        return CLRED_OK;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    clred_psf_phot *f = malloc(n * sizeof *f);
    clred_status st = x && y && f ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu candidates", n);
    for (size_t i = 0; i < n && st == CLRED_OK; i++)
        x[i] = c[i].x, y[i] = c[i].y;
    clred_psf_phot_opts po = clred_psf_phot_defaults();
    po.fit_radius = (double)(psf->size / 2);
    po.fit_sky = 0;
    po.fit_position = 1;
    po.max_shift = fmax(psf->fwhm, 1.0);
    po.group_radius = -1;
    po.ignore_bits = o->reject_bits;
    if (st == CLRED_OK)
        st = clred_psf_photometry_dev(ctx, diff, psf, x, y, n, &po, f);
    double sig = fmax(psf->fwhm, 1.0) / 2.3548;
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        c[i].flux = f[i].flux;
        c[i].flux_err = f[i].flux_err;
        c[i].snr = f[i].flux_err > 0 ? fabs(f[i].flux) / f[i].flux_err : 0;
        if (!(f[i].flags & (CLRED_SRC_PSF_FIXED | CLRED_SRC_PSF_FAILED)) && isfinite(f[i].x_err)) {
            c[i].x = f[i].x;
            c[i].y = f[i].y;
            c[i].x_err = f[i].x_err;
            c[i].y_err = f[i].y_err;
        } else
            c[i].x_err = c[i].y_err = c[i].snr > 0 ? sig / c[i].snr : NAN;
    }
    free(x), free(y), free(f);
    return st;
}

static int by_score(const void *a, const void *b)
{
    const clred_candidate *x = a, *y = b;
    double u = fabs(x->score), v = fabs(y->score);
    if (u != v)
        return u > v ? -1 : 1;
    if (x->y != y->y)
        return x->y < y->y ? -1 : 1;
    return x->x < y->x ? -1 : x->x > y->x;
}

/* The PSF's autocorrelation A(d) = sum_q P(q) P(q + d) / sum_q P(q)^2: a
 * matched-filter score (AL's DETECT, ZOGY's S_corr) of a point source of
 * score S reads S A(d) at offset d from it. Kept per integer offset
 * |dx|, |dy| < size, each summed when first asked for (NaN until then), so
 * a large PSF costs only the offsets its candidates' pairs use. */
typedef struct {
    const clred_psf *p;
    long n, side;
    double a0;
    double *a; /* side x side, row-major */
} autocorr;

static double autocorr_sum(const clred_psf *p, long n, long dx, long dy)
{
    double s = 0;
    for (long y = dy > 0 ? 0 : -dy; y < n && y + dy < n; y++)
        for (long x = dx > 0 ? 0 : -dx; x < n && x + dx < n; x++)
            s += (double)p->data[y * n + x] * (double)p->data[(y + dy) * n + x + dx];
    return s;
}

/* 1 when the table is allocated and the PSF holds light (a0 > 0). */
static int autocorr_init(autocorr *ac, const clred_psf *p)
{
    ac->p = p;
    ac->n = (long)p->size;
    ac->side = 2 * ac->n - 1;
    ac->a0 = autocorr_sum(p, ac->n, 0, 0);
    ac->a = malloc((size_t)(ac->side * ac->side) * sizeof *ac->a);
    for (long i = 0; ac->a && i < ac->side * ac->side; i++)
        ac->a[i] = NAN;
    return ac->a != NULL && ac->a0 > 0;
}

static double autocorr_int(autocorr *ac, long dx, long dy)
{
    if (labs(dx) >= ac->n || labs(dy) >= ac->n)
        return 0;
    double *v = &ac->a[(dy + ac->n - 1) * ac->side + dx + ac->n - 1];
    if (isnan(*v))
        *v = autocorr_sum(ac->p, ac->n, dx, dy) / ac->a0;
    return *v;
}

/* A(dx, dy) between the integer offsets, bilinear. */
static double autocorr_at(autocorr *ac, double dx, double dy)
{
    long x0 = (long)floor(dx), y0 = (long)floor(dy);
    double tx = dx - (double)x0, ty = dy - (double)y0;
    return (1 - ty) * ((1 - tx) * autocorr_int(ac, x0, y0) + tx * autocorr_int(ac, x0 + 1, y0)) +
           ty * ((1 - tx) * autocorr_int(ac, x0, y0 + 1) + tx * autocorr_int(ac, x0 + 1, y0 + 1));
}

/* Parents of one candidate that clred_candidates_deblend solves for at
 * once: more brighter neighbours within a PSF's reach than this is a
 * crowded field, where the nearest-found ones are kept. */
#define DEBLEND_MAX_PARENTS 32

/* The candidate's own score f_0 from the scores s of it (index 0) and its
 * parents: s = M f with M_ab the PSF's autocorrelation between a and b (a
 * point source of own score f_b adds f_b M_ab to the score at a; M_aa = 1),
 * solved by Gaussian elimination with partial pivoting (M is a correlation
 * matrix, positive definite unless two peaks coincide: then the solution is
 * the plain subtraction s_0 - sum M_0b s_b). */
static double own_score(autocorr *ac, const clred_candidate *c, const size_t *idx, size_t k)
{
    double m[DEBLEND_MAX_PARENTS + 1][DEBLEND_MAX_PARENTS + 2];
    for (size_t a = 0; a < k; a++) {
        for (size_t b = 0; b < k; b++)
            m[a][b] = a == b ? 1.0 : autocorr_at(ac, c[idx[b]].x - c[idx[a]].x, c[idx[b]].y - c[idx[a]].y);
        m[a][k] = c[idx[a]].score;
    }
    double plain = m[0][k];
    for (size_t b = 1; b < k; b++)
        plain -= m[0][b] * c[idx[b]].score;
    for (size_t col = 0; col < k; col++) {
        size_t piv = col;
        for (size_t r = col + 1; r < k; r++)
            if (fabs(m[r][col]) > fabs(m[piv][col]))
                piv = r;
        if (fabs(m[piv][col]) < 1e-6)
            return plain;
        for (size_t j = 0; j <= k; j++) {
            double t = m[col][j];
            m[col][j] = m[piv][j];
            m[piv][j] = t;
        }
        for (size_t r = 0; r < k; r++)
            if (r != col) {
                double f = m[r][col] / m[col][col];
                for (size_t j = col; j <= k; j++)
                    m[r][j] -= f * m[col][j];
            }
    }
    return m[0][k] / m[0][0];
}

/* Deblending of secondary peaks, as SExtractor splits a footprint and DAOPHOT
 * re-detects on the image with its fitted stars taken off: a peak is an
 * independent detection at the threshold only when what is left of its
 * score, once the light of the brighter independent candidates near it is
 * taken off, still reaches the threshold. A point source of own score f
 * puts f times the PSF's autocorrelation at the offset into a
 * matched-filter score there (the PSF's centre model where it varies), so
 * the scores of the peak and its parents are solved for their own ones
 * together (own_score): a parent's score holds the peak's light too. A
 * peak in a bright transient's wings that needed that light to cross the
 * threshold is flagged CLRED_CAND_BLEND, never dropped; a real second source
 * keeps its own S/N, so it is flagged only where its own S/N is below the
 * threshold. The one level is the detection threshold itself. (Seed 12 of
 * tests/sweep_pairs: ZOGY's -5.4 peak 11 px from a -33 transient is flagged;
 * AL's, -5.5 in DETECT, holds -0.66 of that transient's light and +0.18 of
 * a +26 one's 13 px away, and keeps -5.0 of its own: kept, as noise that
 * deep is DMTN-006's business, not a blend.) The list is sorted by |score|: parents
 * come first, and a flagged peak is no one's parent (its score is mostly its
 * parent's light). Neighbours are looked up in cells of the PSF's size (the
 * autocorrelation's reach), so a crowded list costs no n^2. */
clred_status clred_candidates_deblend(const clred_psf *psf, double thresh, clred_candidate *c, size_t n)
{
    if (!psf || !psf->data || psf->size == 0 || !(thresh > 0) || (n && !c))
        return clred_fail(CLRED_ERR_USAGE, "deblend: a PSF, a threshold > 0 and the candidates are needed");
    double x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (i && fabs(c[i].score) > fabs(c[i - 1].score))
            return clred_fail(CLRED_ERR_USAGE, "deblend: the candidates must be sorted by |score|, largest first");
        if (isfinite(c[i].x) && isfinite(c[i].y))
            x0 = fmin(x0, c[i].x), y0 = fmin(y0, c[i].y), x1 = fmax(x1, c[i].x), y1 = fmax(y1, c[i].y);
    }
    if (n < 2 || !(x1 >= x0))
        return CLRED_OK;
    autocorr ac;
    double cell = (double)(2 * psf->size);
    size_t cw = (size_t)ceil((x1 - x0) / cell) + 2, ch = (size_t)ceil((y1 - y0) / cell) + 2;
    size_t *head = malloc(cw * ch * sizeof *head), *next = malloc(n * sizeof *next);
    int usable_psf = autocorr_init(&ac, psf), ok = usable_psf && head && next;
    for (size_t k = 0; ok && k < cw * ch; k++)
        head[k] = SIZE_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        if (!isfinite(c[i].x) || !isfinite(c[i].y))
            continue;
        long gx = lround((c[i].x - x0) / cell), gy = lround((c[i].y - y0) / cell);
        double sign = c[i].score >= 0 ? 1.0 : -1.0;
        size_t idx[DEBLEND_MAX_PARENTS + 1], k = 1;
        idx[0] = i;
        /* (gx, gy) is the cell corner nearest the candidate: the 2 x 2 cells round it hold every parent
         * within the cell's half, the autocorrelation's reach */
        for (long y = gy - 1; y <= gy; y++)
            for (long x = gx - 1; x <= gx; x++) {
                if (x < 0 || y < 0 || (size_t)x >= cw || (size_t)y >= ch)
                    continue;
                for (size_t j = head[(size_t)y * cw + (size_t)x]; j != SIZE_MAX && k <= DEBLEND_MAX_PARENTS;
                     j = next[j])
                    if (fabs(c[j].score) > fabs(c[i].score) &&
                        autocorr_at(&ac, c[j].x - c[i].x, c[j].y - c[i].y) != 0)
                        idx[k++] = j;
            }
        double own = k > 1 ? own_score(&ac, c, idx, k) : c[i].score;
        if (sign * (c[i].score - own) > 0 && sign * own < thresh) {
            c[i].flags |= CLRED_CAND_BLEND;
            continue;
        }
        size_t at = (size_t)floor((c[i].y - y0) / cell) * cw + (size_t)floor((c[i].x - x0) / cell);
        next[i] = head[at];
        head[at] = i;
    }
    free(ac.a);
    free(head);
    free(next);
    if (!ok && (usable_psf || !ac.a)) /* a PSF of no light explains nothing: then nothing is flagged */
        return clred_fail(CLRED_ERR_MEMORY, "out of memory deblending %zu candidates", n);
    return CLRED_OK;
}

static int by_index(const void *a, const void *b)
{
    cl_uint x = *(const cl_uint *)a, y = *(const cl_uint *)b;
    return x < y ? -1 : x > y;
}

static clred_status find_peaks(clred_ctx *ctx, const clred_dimage *score, const clred_cand_opts *o, cl_uint **idx,
                               size_t *n)
{
    size_t cap = o->max_candidates;
    cl_mem count = NULL, list = NULL;
    clred_status st = clred_buffer(ctx, CL_MEM_READ_WRITE, sizeof(cl_uint), NULL, &count, "candidate count");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, cap * sizeof(cl_uint), NULL, &list, "candidate list");
    if (st == CLRED_OK)
        st = clred_fill_zero(ctx, count, sizeof(cl_uint));
    cl_kernel k;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "zogy", NULL, "zogy_peaks", &k);
    cl_mem sci = clred_dimage_sci(score), mask = clred_dimage_mask(score) ? clred_dimage_mask(score) : sci;
    int has_mask = clred_dimage_mask(score) != NULL, w = (int)score->width, h = (int)score->height;
    int both = o->both_signs;
    cl_ushort reject = o->reject_bits;
    float thresh = (float)o->thresh;
    cl_uint ucap = (cl_uint)cap;
    if (st == CLRED_OK)
        st = clred_args(k, "zogy_peaks", CLRED_ARG(sci), CLRED_ARG(mask), CLRED_ARG(has_mask), CLRED_ARG(reject),
                        CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(thresh), CLRED_ARG(both), CLRED_ARG(count),
                        CLRED_ARG(list), CLRED_ARG(ucap), (size_t)0);
    size_t g[2] = {score->width, score->height};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "zogy_peaks", 2, g);
    cl_uint total = 0;
    if (st == CLRED_OK)
        st = clred_download(ctx, count, 0, sizeof total, &total);
    size_t m = total < cap ? total : cap;
    *idx = malloc((m ? m : 1) * sizeof **idx);
    if (st == CLRED_OK && !*idx)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu candidates", m);
    if (st == CLRED_OK && m)
        st = clred_download(ctx, list, 0, m * sizeof(cl_uint), *idx);
    clred_release(&count);
    clred_release(&list);
    if (st == CLRED_OK && total > cap)
        st = clred_fail(CLRED_ERR_INPUT,
                        "candidates: %u peaks at |score| >= %g exceed the limit of %zu (a failed subtraction?)", total,
                        o->thresh, cap);
    if (st != CLRED_OK) {
        free(*idx);
        *idx = NULL;
        return st;
    }
    qsort(*idx, m, sizeof **idx, by_index);
    *n = m;
    return CLRED_OK;
}

clred_status clred_find_candidates_dev(clred_ctx *ctx, const clred_dimage *score, const clred_dimage *diff,
                                       const clred_psf *psf, const clred_cand_opts *opts, clred_candidate **list,
                                       size_t *n)
{
    clred_cand_opts d = clred_cand_defaults();
    const clred_cand_opts *o = opts ? opts : &d;
    *list = NULL;
    *n = 0;
    if (!score || !diff || !psf || !psf->data)
        return clred_fail(CLRED_ERR_USAGE, "candidates: a score image, a difference and its PSF are needed");
    if (score->width != diff->width || score->height != diff->height)
        return clred_fail(CLRED_ERR_INPUT, "candidates: the score image is %zu x %zu, the difference %zu x %zu",
                          score->width, score->height, diff->width, diff->height);
    if (!(o->thresh > 0) || o->max_candidates == 0 || o->max_candidates > 0x7fffffff || o->ap_radius < 0)
        return clred_fail(CLRED_ERR_USAGE, "candidates: threshold %g must be > 0, the limit 1..2^31, radius >= 0",
                          o->thresh);
    cl_uint *idx;
    size_t m;
    CLRED_TRY(find_peaks(ctx, score, o, &idx, &m));
    /* The measurements read pixels around each peak: the difference and the
     * score come down once (or are read in place). */
    host_planes hd, hs;
    memset(&hd, 0, sizeof hd);
    memset(&hs, 0, sizeof hs);
    clred_status st = host_planes_get(diff, &hd);
    if (st == CLRED_OK)
        st = host_planes_get(score, &hs);
    const clred_image dh = hd.img, sh = hs.img;
    clred_candidate *out = st == CLRED_OK ? calloc(m ? m : 1, sizeof *out) : NULL;
    if (st == CLRED_OK && !out)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu candidates", m);
    if (st == CLRED_OK) {
        measure_ctx mc = {&dh, sh.sci, psf, o, o->ap_radius > 0 ? o->ap_radius : 1.5 * fmax(psf->fwhm, 1.0), 1.0};
        double f = encircled(psf, mc.ap_radius);
        mc.ap_frac = f > 0.05 ? f : 1.0;
        for (size_t i = 0; i < m; i++)
            measure_box(&mc, idx[i], &out[i]);
        st = psf_fluxes(ctx, diff, psf, o, out, m);
        for (size_t i = 0; i < m && st == CLRED_OK; i++) {
            measure_aperture(&mc, &out[i]);
            measure_unusable(&mc, idx[i], &out[i]);
        }
    }
    if (st == CLRED_OK) {
        qsort(out, m, sizeof *out, by_score);
        st = clred_candidates_deblend(psf, o->thresh, out, m);
    }
    if (st == CLRED_OK) {
        *list = out;
        *n = m;
    } else
        free(out);
    free(idx);
    host_planes_release(&hd);
    host_planes_release(&hs);
    return st;
}

/* Reference sources ordered by x, so each candidate looks only at those
 * within its best distance so far along x. */
static int by_x(const void *a, const void *b)
{
    double u = ((const clred_source *)a)->x, v = ((const clred_source *)b)->x;
    return u < v ? -1 : u > v;
}

static void nearest_source(const clred_source *s, size_t m, clred_candidate *c)
{
    size_t lo = 0, hi = m; /* first source with x >= c->x */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid].x < c->x)
            lo = mid + 1;
        else
            hi = mid;
    }
    double best = INFINITY;
    size_t at = m;
    for (size_t i = lo; i < m && s[i].x - c->x < best; i++) {
        double d = hypot(s[i].x - c->x, s[i].y - c->y);
        if (d < best)
            best = d, at = i;
    }
    for (size_t i = lo; i-- > 0 && c->x - s[i].x < best;) {
        double d = hypot(s[i].x - c->x, s[i].y - c->y);
        if (d < best)
            best = d, at = i;
    }
    c->ref_dist = at < m ? best : NAN;
    c->ref_flux = at < m ? s[at].flux : NAN;
}

clred_status clred_candidates_context(const clred_header *header, const clred_source *ref_sources, size_t nref,
                                      clred_candidate *list, size_t n)
{
    if (n && !list)
        return clred_fail(CLRED_ERR_USAGE, "candidates: no list given");
    if (nref && !ref_sources)
        return clred_fail(CLRED_ERR_USAGE, "candidates: %zu reference sources, but no list", nref);
    if (n && header && clred_header_has_wcs(header)) {
        clred_wcs *w;
        CLRED_TRY(clred_wcs_from_header(header, &w));
        double *xy = malloc(4 * n * sizeof *xy);
        if (!xy) {
            clred_wcs_free(w);
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu candidate positions", n);
        }
        for (size_t i = 0; i < n; i++)
            xy[i] = list[i].x, xy[n + i] = list[i].y;
        clred_status st = clred_wcs_pix2sky(w, n, xy, xy + n, xy + 2 * n, xy + 3 * n);
        for (size_t i = 0; st == CLRED_OK && i < n; i++)
            list[i].ra = xy[2 * n + i], list[i].dec = xy[3 * n + i];
        free(xy);
        clred_wcs_free(w);
        CLRED_TRY(st);
    }
    if (!nref || !n)
        return CLRED_OK;
    clred_source *s = malloc(nref * sizeof *s);
    if (!s)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu reference sources", nref);
    memcpy(s, ref_sources, nref * sizeof *s);
    qsort(s, nref, sizeof *s, by_x);
    for (size_t i = 0; i < n; i++)
        nearest_source(s, nref, &list[i]);
    free(s);
    return CLRED_OK;
}
