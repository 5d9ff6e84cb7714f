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
 * VAR'(x + q), VAR' that image's variance plane (DETECT's own noise,
 * detect_variance, is the same sum over P'^2's separable cut, with unusable
 * pixels at the sky's variance where this leaves them out). D depends on unknown u (basis b, spatial monomial l) through
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
 * kernel (likewise).
 *
 * The spatial monomials are polynomials of degree ko, so P_l(x + q) =
 * sum_m c_lm(x) q^m over the monomials m of the offset, and
 *   sum_q g(q) P_l(x + q) (B_b * T)(x + q) = sum_m c_lm(x) sum_r T(x + r) G_bm(r)
 * with G_bm(r) = sum_q g(q) q^m B_b(q - r), made once per subtraction: a
 * candidate then costs nbasis x nterms dot products over T's cutout. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"

void al_kerr_free(clred_al_kerr *k)
{
    if (!k)
        return;
    free(k->cov);
    free(k->gm);
    free(k->p2);
    free(k);
}

/* the degrees (a in x, c in y) of al_poly's monomial l: by degree d, then c = 0..d */
static void monomial_degrees(int l, int *a, int *c)
{
    int d = 0;
    while ((d + 1) * (d + 2) / 2 <= l)
        d++;
    *c = l - d * (d + 1) / 2;
    *a = d - *c;
}

static double binomial(int n, int r)
{
    double c = 1;
    for (int i = 1; i <= r; i++)
        c = c * (n - r + i) / i;
    return c;
}

/* G_{b,m} (struct clred_al_kerr) from the cut g ((2 gh + 1)^2), by the
 * basis's separable filters: the row pass with each filter, then the
 * column pass per basis, each but basis 0 less bsum_b times basis 0's. */
static clred_status moment_filters(clred_al_kerr *k, const al_basis *b, const double *g, int gh)
{
    int hw = b->hw, ks = b->ksize, rh = gh + hw, rn = 2 * rh + 1, gn = 2 * gh + 1, nt = al_nterms(k->ko);
    size_t rn2 = (size_t)rn * rn;
    double *gq = malloc((size_t)gn * gn * sizeof *gq), *rows = malloc((size_t)b->nfilt * rn * gn * sizeof *rows);
    k->gm = calloc((size_t)b->nbasis * nt * rn2, sizeof *k->gm);
    if (!gq || !rows || !k->gm) {
        free(gq);
        free(rows);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel's error model");
    }
    for (int m = 0; m < nt; m++) {
        int ea, ec;
        monomial_degrees(m, &ea, &ec);
        for (int j = -gh; j <= gh; j++)
            for (int i = -gh; i <= gh; i++)
                gq[(size_t)(j + gh) * gn + (size_t)(i + gh)] =
                    g[(size_t)(j + gh) * gn + (size_t)(i + gh)] * pow(i, ea) * pow(j, ec);
        /* rows[f](rx, qy) = sum_u f(u) gq(rx + u - hw, qy) */
        for (int f = 0; f < b->nfilt; f++)
            for (int j = 0; j < gn; j++)
                for (int rx = -rh; rx <= rh; rx++) {
                    double s = 0;
                    for (int u = 0; u < ks; u++) {
                        int qx = rx + u - hw;
                        if (qx >= -gh && qx <= gh)
                            s += b->filt[(size_t)f * ks + u] * gq[(size_t)j * gn + (size_t)(qx + gh)];
                    }
                    rows[((size_t)f * gn + j) * rn + (size_t)(rx + rh)] = s;
                }
        /* G_bm(rx, ry) = sum_v fy(v) rows[fx](rx, ry + v - hw) */
        for (int bb = 0; bb < b->nbasis; bb++) {
            double *dst = k->gm + ((size_t)bb * nt + m) * rn2;
            const double *g0 = k->gm + (size_t)m * rn2;
            const float *fl = b->filt + (size_t)b->fy[bb] * ks;
            const double *rp = rows + (size_t)b->fx[bb] * gn * rn;
            for (int ry = -rh; ry <= rh; ry++)
                for (int rx = 0; rx < rn; rx++) {
                    double s = 0;
                    for (int v = 0; v < ks; v++) {
                        int qy = ry + v - hw;
                        if (qy >= -gh && qy <= gh)
                            s += fl[v] * rp[(size_t)(qy + gh) * rn + (size_t)rx];
                    }
                    size_t at = (size_t)(ry + rh) * rn + (size_t)rx;
                    dst[at] = bb == 0 ? s : s - b->bsum[bb] * g0[at];
                }
        }
    }
    free(gq);
    free(rows);
    return CLRED_OK;
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
    double *g = malloc((size_t)gsize * gsize * sizeof *g), *gcut = NULL;
    clred_status st = CLRED_OK;
    if (!k || !pad || !g || !(k->cov = malloc((size_t)nk * nk * sizeof *k->cov)) ||
        !(k->p2 = malloc((size_t)psize * psize * sizeof *k->p2)))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel's error model");
    if (st == CLRED_OK) {
        k->nbasis = b->nbasis;
        k->ko = kernel_order;
        k->nk = nk;
        k->frame = *frame;
        memcpy(k->cov, cov, (size_t)nk * nk * sizeof *k->cov);
        k->ph = psize / 2;
        for (int i = 0; i < psize * psize; i++)
            k->p2[i] = (double)pw[i] * pw[i];
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
        k->rh = k->gh + b->hw;
        gcut = window(g, gsize, k->gh);
        st = gcut ? moment_filters(k, b, gcut, k->gh)
                  : clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel's error model");
    }
    free(pad);
    free(g);
    free(gcut);
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

/* sum a b over n, in four independent sums (they vectorise; one sum's chain of additions would not) */
static double dot4(const double *a, const double *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

size_t al_kerr_work_size(const clred_al_kerr *k)
{
    size_t rn = (size_t)(2 * k->rh + 1), nt = (size_t)al_nterms(k->ko);
    /* T's cutout, the dot products per basis and offset monomial, h */
    return rn * rn + (size_t)k->nbasis * nt + (size_t)k->nk;
}

double al_kerr_sigma(const clred_al_kerr *k, const clred_image *t, const clred_image *dvar, long x, long y,
                     double *work)
{
    int rh = k->rh, rn = 2 * rh + 1, nt = al_nterms(k->ko);
    size_t rn2 = (size_t)rn * rn;
    double *tc = work, *dot = tc + rn2, *hv = dot + (size_t)k->nbasis * nt;
    for (int j = 0; j < rn; j++)
        for (int i = 0; i < rn; i++)
            tc[(size_t)j * rn + i] = t_at(k, t, x - rh + i, y - rh + j);
    /* basis 0 is constant over the field: its monomial 1 alone */
    for (int b = 0; b < k->nbasis; b++)
        for (int m = 0; m < (b == 0 ? 1 : nt); m++) {
            dot[(size_t)b * nt + m] = dot4(tc, k->gm + ((size_t)b * nt + m) * rn2, rn2);
        }
    /* P_l(x + q) = prod xs^a ys^c with xs(x + q) = xs(x) + qx 2 / (w - 1): the binomial expansion */
    double xs = 2.0 * (double)x / (double)(k->frame.w - 1) - 1.0, ys = 2.0 * (double)y / (double)(k->frame.h - 1) - 1.0;
    double sx = 2.0 / (double)(k->frame.w - 1), sy = 2.0 / (double)(k->frame.h - 1);
    hv[0] = dot[0];
    for (int l = 0; l < nt; l++) {
        int la, lc;
        monomial_degrees(l, &la, &lc);
        for (int b = 1; b < k->nbasis; b++) {
            double s = 0;
            for (int m = 0; m < nt; m++) {
                int ma, mc;
                monomial_degrees(m, &ma, &mc);
                if (ma > la || mc > lc)
                    continue;
                s += binomial(la, ma) * binomial(lc, mc) * pow(xs, la - ma) * pow(ys, lc - mc) * pow(sx, ma) *
                     pow(sy, mc) * dot[(size_t)b * nt + m];
            }
            hv[1 + (size_t)(b - 1) * nt + l] = s;
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
