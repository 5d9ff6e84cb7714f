/* Alard-Lupton: the kernel fit's own error at each candidate.
 *
 * The kernel is fitted to a few tens of stars; its coefficients carry the
 * statistical error of that fit (the inverse of the normal equations), and
 * where the kernel varies over the field the error grows away from the
 * stamps. On the difference it shows as a residual proportional to the
 * convolved image: invisible on the sky, several sigma of DETECT in the
 * wings of a bright star. DETECT's noise counts only the pixels' variance,
 * so such a residual reads as a detection. This is the AL analogue of ZOGY's
 * astrometric and flux-scaling noise terms (Zackay et al. 2016, sec. 3.3):
 * the error of the matching propagated to the score.
 *
 * At a candidate (x, y) DETECT = N / den with N = sum_q g(q) D(x + q), g the
 * correlation filter that takes D to DETECT's numerator (P' when D is not
 * decorrelated; P' * phi when it is, phi even) and den^2 = sum_q P'(q)^2
 * VAR'(x + q). D depends on unknown u (basis b, spatial monomial l) through
 * -P_l(p) (B_b * T)(p) / norm, so
 *   dDETECT / da_u = -sum_q g(q) P_l(x + q) (B_b * T)(x + q) / (norm den)
 * and the kernel's share of DETECT's variance is h^T C h, C the unknowns'
 * covariance (times the fit's chi^2 per pixel where that is above 1: the
 * stamps' residuals beyond their noise are the model's error, which the
 * statistical covariance alone leaves out). A candidate whose score no
 * longer reaches the threshold once that variance is added to DETECT's unit
 * one, |score| / sqrt(1 + s^2) < thresh, is flagged CLRED_CAND_KERNEL:
 * nothing is dropped. Left out: the kernel sum's effect through norm (D / a
 * at a residual of D, second order) and phi's and den's dependence on the
 * kernel (likewise). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"

void al_kerr_free(clred_al_kerr *k)
{
    if (!k)
        return;
    free(k->filt);
    free(k->fx);
    free(k->fy);
    free(k->bsum);
    free(k->cov);
    free(k->g);
    free(k->p2);
    free(k);
}

/* The smallest half size whose square window holds all but AL_KERR_TAIL of
 * sum g^2 (g: size x size, centred). */
static int trim_half(const double *g, int size)
{
    int h = size / 2;
    double total = 0;
    for (int i = 0; i < size * size; i++)
        total += g[i] * g[i];
    double out = 0;
    for (int r = h; r > 0; r--) {
        double ring = 0;
        for (int j = -r; j <= r; j++)
            for (int i = -r; i <= r; i++)
                if (abs(i) == r || abs(j) == r) {
                    double v = g[(size_t)(j + h) * size + (size_t)(i + h)];
                    ring += v * v;
                }
        if (out + ring > AL_KERR_TAIL * total)
            return r;
        out += ring;
    }
    return 0;
}

/* The centred (2 r + 1)^2 window of a size x size image. */
static double *window(const double *img, int size, int r)
{
    int h = size / 2, n = 2 * r + 1;
    double *out = malloc((size_t)n * n * sizeof *out);
    if (out)
        for (int j = -r; j <= r; j++)
            for (int i = -r; i <= r; i++)
                out[(size_t)(j + r) * n + (size_t)(i + r)] = img[(size_t)(j + h) * size + (size_t)(i + h)];
    return out;
}

clred_status al_kerr_create(const al_basis *b, const double *cov, int kernel_order, const float *pw, int psize,
                            const float *kimg, double s2i, double s2t, double ksum, int decorrelated,
                            const al_kerr_frame *frame, clred_al_kerr **out)
{
    *out = NULL;
    clred_al_kerr *k = calloc(1, sizeof *k);
    int ks = b->ksize, nk = 1 + (b->nbasis - 1) * al_nterms(kernel_order);
    /* g = P' * phi reaches phi's width (the kernel's) past P' */
    int gsize = decorrelated ? psize + ks - 1 : psize;
    float *pad = calloc((size_t)gsize * gsize, sizeof *pad);
    double *g = malloc((size_t)gsize * gsize * sizeof *g), *p2 = malloc((size_t)psize * psize * sizeof *p2);
    clred_status st = CLRED_OK;
    if (!k || !pad || !g || !p2)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel's error model");
    if (st == CLRED_OK) {
        k->nbasis = b->nbasis;
        k->ko = kernel_order;
        k->ks = ks;
        k->hw = b->hw;
        k->nfilt = b->nfilt;
        k->nk = nk;
        k->frame = *frame;
        k->filt = malloc((size_t)b->nfilt * ks * sizeof *k->filt);
        k->fx = malloc((size_t)b->nbasis * sizeof *k->fx);
        k->fy = malloc((size_t)b->nbasis * sizeof *k->fy);
        k->bsum = malloc((size_t)b->nbasis * sizeof *k->bsum);
        k->cov = malloc((size_t)nk * nk * sizeof *k->cov);
        if (!k->filt || !k->fx || !k->fy || !k->bsum || !k->cov)
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel's error model");
    }
    if (st == CLRED_OK) {
        memcpy(k->filt, b->filt, (size_t)b->nfilt * ks * sizeof *k->filt);
        memcpy(k->fx, b->fx, (size_t)b->nbasis * sizeof *k->fx);
        memcpy(k->fy, b->fy, (size_t)b->nbasis * sizeof *k->fy);
        memcpy(k->bsum, b->bsum, (size_t)b->nbasis * sizeof *k->bsum);
        memcpy(k->cov, cov, (size_t)nk * nk * sizeof *k->cov);
        int off = (gsize - psize) / 2;
        for (int j = 0; j < psize; j++)
            for (int i = 0; i < psize; i++)
                pad[(size_t)(j + off) * gsize + (size_t)(i + off)] = pw[(size_t)j * psize + i];
        if (decorrelated)
            st = al_through_phi(pad, gsize, kimg, ks, s2i, s2t, ksum, g);
        else
            for (int i = 0; i < gsize * gsize; i++)
                g[i] = pad[i];
    }
    if (st == CLRED_OK) {
        k->gh = trim_half(g, gsize);
        k->g = window(g, gsize, k->gh);
        k->ph = psize / 2;
        for (int i = 0; i < psize * psize; i++)
            p2[i] = (double)pw[i] * pw[i];
        k->p2 = p2;
        p2 = NULL;
        if (!k->g)
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel's error model");
    }
    free(pad);
    free(g);
    free(p2);
    if (st != CLRED_OK)
        al_kerr_free(k);
    else
        *out = k;
    return st;
}

/* T less its level where the fit used it, 0 elsewhere (off the image too) */
static double t_at(const clred_al_kerr *k, const clred_image *t, long x, long y)
{
    if (x < 0 || y < 0 || (size_t)x >= t->width || (size_t)y >= t->height)
        return 0.0;
    size_t i = (size_t)y * t->width + (size_t)x;
    float v = t->sci[i];
    if (!isfinite(v) || v < k->frame.lo || v > k->frame.hi || (t->mask && (t->mask[i] & k->frame.ignore)))
        return 0.0;
    return (double)v - k->frame.level;
}

size_t al_kerr_work_size(const clred_al_kerr *k)
{
    size_t gn = (size_t)(2 * k->gh + 1), rows = gn + (size_t)(2 * k->hw);
    /* T's cutout, the row pass per filter, W_0, one basis image, the spatial terms per pixel, h */
    return rows * rows + (size_t)k->nfilt * rows * gn + 2 * gn * gn + gn * gn * (size_t)al_nterms(k->ko) +
           (size_t)k->nk;
}

double al_kerr_sigma(const clred_al_kerr *k, const clred_image *t, const clred_image *dvar, long x, long y,
                     double *work)
{
    int gh = k->gh, hw = k->hw, ks = k->ks, gn = 2 * gh + 1, rows = gn + 2 * hw;
    int nterms = al_nterms(k->ko);
    size_t gn2 = (size_t)gn * gn;
    double *tc = work, *rowp = tc + (size_t)rows * rows, *w0 = rowp + (size_t)k->nfilt * rows * gn,
           *wb = w0 + gn2, *poly = wb + gn2, *hv = poly + gn2 * (size_t)nterms;
    /* T over (x, y) +- (gh + hw) */
    for (int j = 0; j < rows; j++)
        for (int i = 0; i < rows; i++)
            tc[(size_t)j * rows + i] = t_at(k, t, x - gh - hw + i, y - gh - hw + j);
    /* the row pass: R_f(x - gh + i, row j) = sum_u f(u) T(x - gh + i - (u - hw), row j) */
    for (int f = 0; f < k->nfilt; f++) {
        const float *fl = k->filt + (size_t)f * ks;
        for (int j = 0; j < rows; j++)
            for (int i = 0; i < gn; i++) {
                const double *tr = tc + (size_t)j * rows + i + 2 * hw;
                double s = 0;
                for (int u = 0; u < ks; u++)
                    s += fl[u] * tr[-u];
                rowp[((size_t)f * rows + j) * gn + i] = s;
            }
    }
    for (int j = 0; j < gn; j++)
        for (int i = 0; i < gn; i++)
            al_poly(k->ko, (double)(x - gh + i), (double)(y - gh + j), k->frame.w, k->frame.h,
                    poly + ((size_t)j * gn + i) * nterms);
    memset(hv, 0, (size_t)k->nk * sizeof *hv);
    for (int b = 0; b < k->nbasis; b++) {
        const float *fl = k->filt + (size_t)k->fy[b] * ks;
        const double *rp = rowp + (size_t)k->fx[b] * rows * gn;
        /* B_b * T; B_b is its filters' product less bsum_b B_0 (al_basis_build) */
        double *dst = b == 0 ? w0 : wb;
        for (int j = 0; j < gn; j++)
            for (int i = 0; i < gn; i++) {
                double s = 0;
                /* output row y - gh + j reads rows y - gh + j - (v - hw): row index j + 2 hw - v */
                for (int v = 0; v < ks; v++)
                    s += fl[v] * rp[(size_t)(j + 2 * hw - v) * gn + i];
                dst[(size_t)j * gn + i] = b == 0 ? s : s - k->bsum[b] * w0[(size_t)j * gn + i];
            }
        for (size_t q = 0; q < gn2; q++) {
            double gw = k->g[q] * dst[q];
            if (b == 0) {
                hv[0] += gw;
                continue;
            }
            for (int l = 0; l < nterms; l++)
                hv[1 + (size_t)(b - 1) * nterms + l] += gw * poly[q * nterms + l];
        }
    }
    /* DETECT's noise at (x, y) */
    int ph = k->ph, pn = 2 * ph + 1;
    double den2 = 0;
    for (int j = -ph; j <= ph; j++)
        for (int i = -ph; i <= ph; i++) {
            long xx = x + i, yy = y + j;
            if (xx < 0 || yy < 0 || (size_t)xx >= dvar->width || (size_t)yy >= dvar->height)
                continue;
            float v = dvar->var[(size_t)yy * dvar->width + (size_t)xx];
            if (isfinite(v) && v > 0)
                den2 += k->p2[(size_t)(j + ph) * pn + (size_t)(i + ph)] * v;
        }
    if (!(den2 > 0))
        return NAN;
    double q = 0;
    for (int a = 0; a < k->nk; a++) {
        double s = 0;
        for (int c = 0; c < k->nk; c++)
            s += k->cov[(size_t)a * k->nk + c] * hv[c];
        q += hv[a] * s;
    }
    return sqrt(fmax(q, 0.0) * k->frame.scale / den2) / fabs(k->frame.norm);
}

clred_status al_kerr_flag(const clred_al_kerr *k, const clred_image *t, const clred_image *dvar, double thresh,
                          clred_candidate *list, size_t n)
{
    double *work = malloc(al_kerr_work_size(k) * sizeof *work);
    if (!work)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel's error at the candidates");
    for (size_t i = 0; i < n; i++) {
        double s = al_kerr_sigma(k, t, dvar, lround(list[i].x), lround(list[i].y), work);
        if (isfinite(s) && fabs(list[i].score) / sqrt(1.0 + s * s) < thresh)
            list[i].flags |= CLRED_CAND_KERNEL;
    }
    free(work);
    return CLRED_OK;
}

clred_status clred_al_candidates_kernel(const clred_al_result *al, const clred_image *new_img, const clred_image *ref,
                                        double thresh, clred_candidate *list, size_t n)
{
    if (!al || !new_img || !ref || (n && !list) || !(thresh > 0))
        return clred_fail(CLRED_ERR_USAGE, "clred_al_candidates_kernel: an AL result, both images, a threshold > 0 "
                                           "and the candidates are needed");
    if (!al->kernel_error || n == 0)
        return CLRED_OK; /* no PSFs, so no DETECT and no model: nothing to judge */
    const clred_image *t = al->convolved_ref ? ref : new_img;
    const clred_dimage *dv = al->decorr ? al->decorr : al->diff;
    if (t->width != al->kernel_error->frame.w || t->height != al->kernel_error->frame.h)
        return clred_fail(CLRED_ERR_USAGE, "clred_al_candidates_kernel: a %zu x %zu image for a %zu x %zu subtraction",
                          t->width, t->height, al->kernel_error->frame.w, al->kernel_error->frame.h);
    clred_image var;
    CLRED_TRY(clred_dimage_download(dv, &var));
    clred_status st = var.var ? al_kerr_flag(al->kernel_error, t, &var, thresh, list, n)
                              : clred_fail(CLRED_ERR_USAGE, "clred_al_candidates_kernel: the difference has no VAR");
    clred_image_free(&var);
    return st;
}
