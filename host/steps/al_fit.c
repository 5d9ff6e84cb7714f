/* Alard-Lupton fit: the stamps' basis convolutions and normal equations on
 * the device (kernels/al.cl: a separable row pass, a column pass, the
 * weighted dot products), the global system assembled and solved on the
 * host in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"

/* a (n x n, symmetric) scaled to a unit diagonal (d: the scales), AL_RIDGE
 * added, and replaced by its Cholesky factor in the lower triangle. */
static clred_status cholesky_scaled(double *a, int n, double *d)
{
    /* Scaled to a unit diagonal, then a ridge of AL_RIDGE added: the
     * Gaussian x polynomial basis is far from orthogonal, so the system has
     * directions that the data (and the float equations, good to ~1e-6)
     * barely constrain; without the ridge they take huge cancelling
     * coefficients that float kernels cannot hold. */
    for (int i = 0; i < n; i++) {
        double v = a[(size_t)i * n + i];
        d[i] = v > 0 ? 1.0 / sqrt(v) : 0.0;
    }
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++)
            a[(size_t)i * n + j] *= d[i] * d[j];
        a[(size_t)i * n + i] += d[i] > 0 ? AL_RIDGE : 1.0;
    }
    for (int j = 0; j < n; j++) {
        double s = a[(size_t)j * n + j];
        for (int k = 0; k < j; k++)
            s -= a[(size_t)j * n + k] * a[(size_t)j * n + k];
        if (!(s > 0))
            return clred_fail(CLRED_ERR_INPUT, "Alard-Lupton: the normal equations are not positive definite "
                                               "(unknown %d of %d)", j, n);
        s = sqrt(s);
        a[(size_t)j * n + j] = s;
        for (int i = j + 1; i < n; i++) {
            double t = a[(size_t)i * n + j];
            for (int k = 0; k < j; k++)
                t -= a[(size_t)i * n + k] * a[(size_t)j * n + k];
            a[(size_t)i * n + j] = t / s;
        }
    }
    return CLRED_OK;
}

/* x = L^-T L^-1 x in place, L the factor cholesky_scaled left in a's lower triangle */
static void cholesky_solve(const double *a, int n, double *x)
{
    for (int i = 0; i < n; i++) {
        double s = x[i];
        for (int k = 0; k < i; k++)
            s -= a[(size_t)i * n + k] * x[k];
        x[i] = s / a[(size_t)i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = x[i];
        for (int k = i + 1; k < n; k++)
            s -= a[(size_t)k * n + i] * x[k];
        x[i] = s / a[(size_t)i * n + i];
    }
}

clred_status al_linsolve(double *a, double *rhs, int n)
{
    double *d = malloc((size_t)n * sizeof *d);
    if (!d)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory");
    clred_status st = cholesky_scaled(a, n, d);
    if (st == CLRED_OK) {
        for (int i = 0; i < n; i++)
            rhs[i] *= d[i];
        cholesky_solve(a, n, rhs);
        for (int i = 0; i < n; i++)
            rhs[i] *= d[i];
    }
    free(d);
    return st;
}

/* Unknown u's vector (0..nbasis: a basis, nbasis: the constant) and its spatial factor at a stamp. */
typedef struct {
    int nbasis, nk, nb, n;
    double pk[10], pb[6];
} layout;

static void layout_at(layout *l, int nbasis, int ko, int bo, double x, double y, size_t w, size_t h)
{
    l->nbasis = nbasis;
    l->nk = al_poly(ko, x, y, w, h, l->pk);
    l->nb = al_poly(bo, x, y, w, h, l->pb);
    l->n = 1 + (nbasis - 1) * l->nk + l->nb;
}

static inline void unknown(const layout *l, int u, int *vec, double *f)
{
    if (u == 0) {
        *vec = 0;
        *f = 1.0;
    } else if (u < 1 + (l->nbasis - 1) * l->nk) {
        *vec = 1 + (u - 1) / l->nk;
        *f = l->pk[(u - 1) % l->nk];
    } else {
        *vec = l->nbasis;
        *f = l->pb[u - 1 - (l->nbasis - 1) * l->nk];
    }
}

void al_coef_at(const double *coef, int nbasis, int kernel_order, double x, double y, size_t w, size_t h, double *cb)
{
    double p[10];
    int nk = al_poly(kernel_order, x, y, w, h, p);
    cb[0] = coef[0];
    for (int b = 1; b < nbasis; b++) {
        double s = 0;
        for (int l = 0; l < nk; l++)
            s += coef[1 + (size_t)(b - 1) * nk + l] * p[l];
        cb[b] = s;
    }
}

/* The global system of the stamps in use[] (a: n x n, both triangles; rhs: n;
 * vec, fac: scratch of n), zeroed first. */
static void normal_equations(const double *dots, size_t ns, const int *use, const int *cx, const int *cy, size_t w,
                             size_t h, int nbasis, int kernel_order, int bg_order, int *vec, double *fac, double *a,
                             double *rhs)
{
    int nv = nbasis + 2, n = al_nunknowns(nbasis, kernel_order, bg_order);
    memset(a, 0, (size_t)n * n * sizeof *a);
    memset(rhs, 0, (size_t)n * sizeof *rhs);
    layout l;
    for (size_t s = 0; s < ns; s++) {
        if (!use[s])
            continue;
        const double *S = dots + s * (size_t)nv * nv;
        layout_at(&l, nbasis, kernel_order, bg_order, cx[s], cy[s], w, h);
        for (int u = 0; u < n; u++)
            unknown(&l, u, &vec[u], &fac[u]);
        for (int u = 0; u < n; u++) {
            rhs[u] += fac[u] * S[(size_t)vec[u] * nv + nv - 1];
            for (int v = u; v < n; v++)
                a[(size_t)u * n + v] += fac[u] * fac[v] * S[(size_t)vec[u] * nv + vec[v]];
        }
    }
    for (int u = 0; u < n; u++)
        for (int v = 0; v < u; v++)
            a[(size_t)u * n + v] = a[(size_t)v * n + u];
}

clred_status al_kernel_covariance(const double *dots, size_t ns, const int *use, const int *cx, const int *cy,
                                  size_t w, size_t h, int nbasis, int kernel_order, int bg_order, double *cov)
{
    int n = al_nunknowns(nbasis, kernel_order, bg_order), nk = 1 + (nbasis - 1) * al_nterms(kernel_order);
    double *a = malloc((size_t)n * n * sizeof *a), *rhs = malloc((size_t)n * sizeof *rhs),
           *fac = malloc((size_t)n * sizeof *fac), *d = malloc((size_t)n * sizeof *d);
    int *vec = malloc((size_t)n * sizeof *vec);
    clred_status st = a && rhs && fac && d && vec ? CLRED_OK
                                                  : clred_fail(CLRED_ERR_MEMORY, "out of memory for %d unknowns", n);
    if (st == CLRED_OK) {
        normal_equations(dots, ns, use, cx, cy, w, h, nbasis, kernel_order, bg_order, vec, fac, a, rhs);
        st = cholesky_scaled(a, n, d);
    }
    /* column j of the inverse, of which the kernel's rows are kept, of the
     * same scaled, ridged system the solution came from: a direction the
     * stamps leave free has the variance the ridge bounds it to (1 /
     * AL_RIDGE in the scaled unknowns), as the solution there has the
     * value the ridge gives it */
    for (int j = 0; j < nk && st == CLRED_OK; j++) {
        for (int i = 0; i < n; i++)
            rhs[i] = i == j ? d[j] : 0.0;
        cholesky_solve(a, n, rhs);
        for (int i = 0; i < nk; i++)
            cov[(size_t)i * nk + j] = rhs[i] * d[i];
    }
    free(a);
    free(rhs);
    free(fac);
    free(d);
    free(vec);
    return st;
}

clred_status al_solve(const double *dots, size_t ns, const int *use, const int *cx, const int *cy, size_t w, size_t h,
                      int nbasis, int kernel_order, int bg_order, double *coef, double *chi2)
{
    int nv = nbasis + 2, n = al_nunknowns(nbasis, kernel_order, bg_order);
    double *a = calloc((size_t)n * n, sizeof *a), *rhs = calloc((size_t)n, sizeof *rhs);
    int *vec = malloc((size_t)n * sizeof *vec);
    double *fac = malloc((size_t)n * sizeof *fac);
    if (!a || !rhs || !vec || !fac) {
        free(a);
        free(rhs);
        free(vec);
        free(fac);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %d Alard-Lupton unknowns", n);
    }
    normal_equations(dots, ns, use, cx, cy, w, h, nbasis, kernel_order, bg_order, vec, fac, a, rhs);
    layout l;
    clred_status st = al_linsolve(a, rhs, n);
    if (st == CLRED_OK) {
        memcpy(coef, rhs, (size_t)n * sizeof *coef);
        for (size_t s = 0; chi2 && s < ns; s++) {
            const double *S = dots + s * (size_t)nv * nv;
            layout_at(&l, nbasis, kernel_order, bg_order, cx[s], cy[s], w, h);
            double c[64 + 2];
            double *cv = nv <= 66 ? c : malloc((size_t)nv * sizeof *cv);
            if (!cv) {
                st = clred_fail(CLRED_ERR_MEMORY, "out of memory");
                break;
            }
            for (int k = 0; k < nv; k++)
                cv[k] = 0;
            for (int u = 0; u < n; u++) {
                int vv;
                double f;
                unknown(&l, u, &vv, &f);
                cv[vv] += coef[u] * f;
            }
            /* chi^2 = I.I - 2 c.(V.I) + c.M.c over the kernel and background vectors */
            double x2 = S[(size_t)(nv - 1) * nv + nv - 1];
            for (int p = 0; p < nv - 1; p++) {
                x2 -= 2 * cv[p] * S[(size_t)p * nv + nv - 1];
                for (int q = 0; q < nv - 1; q++)
                    x2 += cv[p] * cv[q] * S[(size_t)p * nv + q];
            }
            chi2[s] = x2;
            if (cv != c)
                free(cv);
        }
    }
    free(a);
    free(rhs);
    free(vec);
    free(fac);
    return st;
}

clred_status al_cv_chi2(const double *dots, size_t ns, const int *use, const int *cx, const int *cy, size_t w,
                        size_t h, int nbasis, int kernel_order, int bg_order, int folds, double *cv)
{
    int n = al_nunknowns(nbasis, kernel_order, bg_order);
    int *train = malloc(ns * sizeof *train);
    double *coef = malloc((size_t)n * sizeof *coef), *chi2 = malloc(ns * sizeof *chi2);
    if (!train || !coef || !chi2) {
        free(train);
        free(coef);
        free(chi2);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the cross-validation");
    }
    clred_status st = CLRED_OK;
    *cv = 0;
    for (int f = 0; f < folds && st == CLRED_OK; f++) {
        /* fold f holds out every folds-th used stamp, so that each fold
         * samples the whole field rather than one part of it */
        size_t k = 0;
        for (size_t i = 0; i < ns; i++) {
            train[i] = use[i] && (int)(k % (size_t)folds) != f;
            k += use[i] != 0;
        }
        st = al_solve(dots, ns, train, cx, cy, w, h, nbasis, kernel_order, bg_order, coef, chi2);
        for (size_t i = 0; i < ns && st == CLRED_OK; i++)
            if (use[i] && !train[i])
                *cv += chi2[i];
    }
    free(train);
    free(coef);
    free(chi2);
    return st;
}

double al_stamp_signal(const double *dots_s, const double *coef, int nbasis, int kernel_order, double x, double y,
                       size_t w, size_t h)
{
    int nv = nbasis + 2;
    double cb[64], *c = nbasis <= 64 ? cb : malloc((size_t)nbasis * sizeof *c);
    if (!c)
        return NAN;
    al_coef_at(coef, nbasis, kernel_order, x, y, w, h, c);
    double s = 0;
    for (int p = 0; p < nbasis; p++)
        for (int q = 0; q < nbasis; q++)
            s += c[p] * c[q] * dots_s[(size_t)p * nv + q];
    if (c != cb)
        free(c);
    return s;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* the median of v (n > 0; v is sorted) */
static double median_of(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* a stamp that takes part in the chi^2 model (al.h) */
static int outlier_usable(const double *chi2, const double *signal, const double *nu, const int *use, size_t i)
{
    return use[i] && isfinite(chi2[i]) && isfinite(signal[i]) && nu[i] > 0 && isfinite(nu[i]);
}

/* Why a model error: the stamps' chi^2 per pixel grows with their stars'
 * brightness where the kernel cannot match them exactly (PSFs that a
 * compact basis does not map onto each other, a kernel varying faster than
 * its spatial order), so a rule on chi^2 per pixel alone must either clip
 * the brightest stars or tolerate a spread so wide (10 % of the median was
 * the floor here) that a stamp holding a transient, a variable or a fading
 * source, whose excess is a point source's S/N^2 spread over the stamp's
 * hundreds of pixels, passes: on simulated pairs with a transient per few
 * stamps, such stamps bent the kernel's wings and left false candidates in
 * bright stars' wings (tests/sweep_pairs, seeds 26 and 37). Modelled as
 * noise (f0: the weights' scale) plus a share e2 of each star's S/N^2, the
 * fit's error common to all stars, a stamp is judged by the chi^2 test's own
 * spread: 2 nu f0^2 from the noise, 4 f0 e2 signal from the noise against
 * the model's residual (the cross term of (n + m)^2). Theil-Sen, not least
 * squares: the brightest stamps have the leverage, and one of them
 * contaminated must not set e2.
 * nu is per stamp, the pixels that enter its chi^2: unusable pixels away
 * from the star, a variance that is not positive, the border take fitted
 * pixels out, and they add nothing to chi^2. Judged against the box's pixel
 * count, such a stamp reads low by f0 per pixel lost, enough to hide a
 * transient's excess (so it was never dropped), and many of them pulled
 * f0's median intercept down. The fit is per pixel, chi2 / nu = f0 + e2
 * signal / nu (the model divided by nu_s, exact), so that the pairs'
 * slopes do not take the stamps' differences in nu for a model error. */
clred_status al_stamp_outliers(const double *chi2, const double *signal, const double *nu, const int *use, size_t ns,
                               double clip, int *drop, double *f0, double *e2, size_t *ndrop)
{
    size_t n = 0;
    *ndrop = 0;
    for (size_t i = 0; i < ns; i++) {
        drop[i] = 0;
        n += outlier_usable(chi2, signal, nu, use, i);
    }
    *f0 = 1.0;
    *e2 = 0.0;
    if (n < 2)
        return CLRED_OK;
    size_t npair = n * (n - 1) / 2; /* >= n for n >= 3; the intercepts need n */
    double *v = malloc((npair > n ? npair : n) * sizeof *v);
    if (!v)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu stamps' chi^2 model", n);
    size_t m = 0;
    for (size_t i = 0; i < ns; i++) {
        if (!outlier_usable(chi2, signal, nu, use, i))
            continue;
        double xi = signal[i] / nu[i], yi = chi2[i] / nu[i];
        for (size_t j = i + 1; j < ns; j++) {
            if (!outlier_usable(chi2, signal, nu, use, j))
                continue;
            double xj = signal[j] / nu[j], yj = chi2[j] / nu[j];
            if (xi != xj)
                v[m++] = (yj - yi) / (xj - xi);
        }
    }
    double slope = m ? fmax(median_of(v, m), 0.0) : 0.0;
    m = 0;
    for (size_t i = 0; i < ns; i++)
        if (outlier_usable(chi2, signal, nu, use, i))
            v[m++] = (chi2[i] - slope * signal[i]) / nu[i];
    double f = median_of(v, m);
    free(v);
    if (!(f > 0))
        return CLRED_OK;
    *f0 = f;
    *e2 = slope;
    for (size_t i = 0; i < ns; i++) {
        if (!outlier_usable(chi2, signal, nu, use, i))
            continue;
        double excess = chi2[i] - f * nu[i] - slope * signal[i];
        double sd = sqrt(2.0 * nu[i] * f * f + 4.0 * f * slope * fmax(signal[i], 0.0));
        if (excess > clip * sd) {
            drop[i] = 1;
            (*ndrop)++;
        }
    }
    return CLRED_OK;
}

clred_status al_stamp_ksum(const double *S, int nbasis, double *ksum)
{
    int nv = nbasis + 2, n = nbasis + 1;
    double *a = malloc((size_t)n * n * sizeof *a), *rhs = malloc((size_t)n * sizeof *rhs);
    if (!a || !rhs) {
        free(a);
        free(rhs);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory");
    }
    for (int u = 0; u < n; u++) {
        rhs[u] = S[(size_t)u * nv + nv - 1];
        for (int v = 0; v < n; v++)
            a[(size_t)u * n + v] = S[(size_t)u * nv + v];
    }
    clred_status st = al_linsolve(a, rhs, n);
    *ksum = st == CLRED_OK ? rhs[0] : NAN;
    free(a);
    free(rhs);
    return st;
}

static clred_status set_side_args(cl_mem *sci, cl_mem *var, cl_mem *mask, int *flags, const al_side *s)
{
    *sci = clred_dimage_sci(s->img);
    *var = clred_dimage_var(s->img) ? clred_dimage_var(s->img) : *sci;
    *mask = clred_dimage_mask(s->img) ? clred_dimage_mask(s->img) : *sci;
    *flags = (clred_dimage_var(s->img) ? 1 : 0) | (clred_dimage_mask(s->img) ? 2 : 0);
    return CLRED_OK;
}

/* al_stamp_check over the ns centres in c_centre into c_bad (al.h: nbad). */
static clred_status run_stamp_check(clred_ctx *ctx, const al_side *ti, const al_side *ii, uint16_t ignore, int hw,
                                    int r, int core, cl_mem c_centre, size_t ns, cl_mem c_bad)
{
    cl_mem tsci, tvar, tmask, isci, ivar, imask;
    int tflags, iflags, ins = (int)ns, width = (int)ti->img->width, height = (int)ti->img->height;
    set_side_args(&tsci, &tvar, &tmask, &tflags, ti);
    set_side_args(&isci, &ivar, &imask, &iflags, ii);
    cl_ushort ig = ignore;
    float ilo = ii->lo, ihi = ii->hi, tlo = ti->lo, thi = ti->hi;
    cl_kernel k;
    CLRED_TRY(clred_kernel(ctx, "al", NULL, "al_stamp_check", &k));
    CLRED_TRY(clred_args(k, "al_stamp_check", CLRED_ARG(isci), CLRED_ARG(imask), CLRED_ARG(iflags), CLRED_ARG(ilo),
                         CLRED_ARG(ihi), CLRED_ARG(tsci), CLRED_ARG(tmask), CLRED_ARG(tflags), CLRED_ARG(tlo),
                         CLRED_ARG(thi), CLRED_ARG(ig), CLRED_ARG(width), CLRED_ARG(height), CLRED_ARG(c_centre),
                         CLRED_ARG(ins), CLRED_ARG(hw), CLRED_ARG(r), CLRED_ARG(core), CLRED_ARG(c_bad), (size_t)0));
    size_t g1 = ns;
    return clred_run_tiled(ctx, k, "al_stamp_check", 1, &g1);
}

clred_status al_stamp_check_dev(clred_ctx *ctx, const al_side *ti, const al_side *ii, uint16_t ignore, int hw, int r,
                                int core, const int *cx, const int *cy, size_t ns, int *nbad)
{
    if (ns == 0)
        return CLRED_OK;
    cl_int *centre = malloc(ns * 2 * sizeof *centre);
    if (!centre)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu stamps", ns);
    for (size_t s = 0; s < ns; s++) {
        centre[2 * s] = cx[s];
        centre[2 * s + 1] = cy[s];
    }
    cl_mem c_centre = NULL, c_bad = NULL;
    clred_status st = clred_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, ns * 2 * sizeof(cl_int), centre,
                                   &c_centre, "AL stamp centres");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, ns * sizeof(cl_int), NULL, &c_bad, "AL stamp checks");
    if (st == CLRED_OK)
        st = run_stamp_check(ctx, ti, ii, ignore, hw, r, core, c_centre, ns, c_bad);
    if (st == CLRED_OK)
        st = clred_download(ctx, c_bad, 0, ns * sizeof(cl_int), nbad);
    clred_release(&c_centre);
    clred_release(&c_bad);
    free(centre);
    return st;
}

clred_status al_stamp_dots_dev(clred_ctx *ctx, const al_side *ti, const al_side *ii, uint16_t ignore,
                               const al_basis *b, int r, int core, const int *cx, const int *cy, size_t ns,
                               double *dots, int *nbad, int *nfit)
{
    if (ns == 0)
        return CLRED_OK;
    int nv = b->nbasis + 2, npairs = nv * (nv + 1) / 2, hw = b->hw, fw = 2 * r + 1, fh = 2 * r + 2 * hw + 1;
    int width = (int)ti->img->width, height = (int)ti->img->height, ins = (int)ns, nfilt = b->nfilt,
        nbasis = b->nbasis;
    cl_int *centre = malloc(ns * 2 * sizeof *centre), *pairs = malloc((size_t)npairs * 2 * sizeof *pairs),
           *bf = malloc((size_t)nbasis * 2 * sizeof *bf);
    size_t acc = ctx->use_double ? sizeof(double) : sizeof(float);
    void *host_dots = malloc(ns * (size_t)npairs * acc);
    cl_mem c_centre = NULL, c_filt = NULL, c_bf = NULL, c_bsum = NULL, c_pairs = NULL, c_rows = NULL, c_conv = NULL,
           c_dots = NULL, c_bad = NULL, c_wt = NULL, c_nfit = NULL;
    clred_status st = CLRED_OK;
    if (!centre || !pairs || !bf || !host_dots) {
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu stamps", ns);
        goto done;
    }
    for (size_t s = 0; s < ns; s++) {
        centre[2 * s] = cx[s];
        centre[2 * s + 1] = cy[s];
    }
    for (int p = 0, q = 0; p < nv; p++)
        for (int o = p; o < nv; o++, q++) {
            pairs[2 * q] = p;
            pairs[2 * q + 1] = o;
        }
    for (int k = 0; k < nbasis; k++) {
        bf[2 * k] = b->fx[k];
        bf[2 * k + 1] = b->fy[k];
    }
    size_t rows_bytes = ns * (size_t)nfilt * fh * fw * sizeof(float);
    size_t conv_bytes = ns * (size_t)nv * fw * fw * sizeof(float), wt_bytes = ns * (size_t)fw * fw * sizeof(float);
    cl_mem_flags ro = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    st = clred_buffer(ctx, ro, ns * 2 * sizeof(cl_int), centre, &c_centre, "AL stamp centres");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, (size_t)nfilt * b->ksize * sizeof(float), b->filt, &c_filt, "AL filters");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, (size_t)nbasis * 2 * sizeof(cl_int), bf, &c_bf, "AL basis filters");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, (size_t)nbasis * sizeof(float), b->bsum, &c_bsum, "AL basis sums");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, (size_t)npairs * 2 * sizeof(cl_int), pairs, &c_pairs, "AL pairs");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, rows_bytes, NULL, &c_rows, "AL stamp rows");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, conv_bytes, NULL, &c_conv, "AL stamp convolutions");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, wt_bytes, NULL, &c_wt, "AL stamp weights");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_WRITE_ONLY, ns * (size_t)npairs * acc, NULL, &c_dots, "AL stamp dots");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_READ_WRITE, ns * sizeof(cl_int), NULL, &c_bad, "AL stamp checks");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_WRITE_ONLY, ns * sizeof(cl_int), NULL, &c_nfit, "AL stamp pixel counts");
    if (st != CLRED_OK)
        goto done;

    cl_mem tsci, tvar, tmask, isci, ivar, imask;
    int tflags, iflags;
    set_side_args(&tsci, &tvar, &tmask, &tflags, ti);
    set_side_args(&isci, &ivar, &imask, &iflags, ii);
    cl_ushort ig = ignore;
    cl_kernel k;
    float ilo = ii->lo, ihi = ii->hi, tlo = ti->lo, thi = ti->hi, tlev = ti->level, ilev = ii->level,
          tv0 = ti->var0, iv0 = ii->var0;
    st = run_stamp_check(ctx, ti, ii, ignore, hw, r, core, c_centre, ns, c_bad);
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_stamp_rows", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_stamp_rows", CLRED_ARG(tsci), CLRED_ARG(tmask), CLRED_ARG(tflags), CLRED_ARG(tlo),
                        CLRED_ARG(thi), CLRED_ARG(ig), CLRED_ARG(tlev), CLRED_ARG(width), CLRED_ARG(height),
                        CLRED_ARG(c_centre),
                        CLRED_ARG(c_bad), CLRED_ARG(ins), CLRED_ARG(c_filt), CLRED_ARG(nfilt), CLRED_ARG(hw),
                        CLRED_ARG(r), CLRED_ARG(c_rows), (size_t)0);
    size_t g3[2] = {(size_t)fw, (size_t)fh * ns * (size_t)nfilt};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_stamp_rows", 2, g3);
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_stamp_cols", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_stamp_cols", CLRED_ARG(c_rows), CLRED_ARG(c_filt), CLRED_ARG(nfilt), CLRED_ARG(c_bf),
                        CLRED_ARG(nbasis), CLRED_ARG(ins), CLRED_ARG(hw), CLRED_ARG(r), CLRED_ARG(c_conv), (size_t)0);
    size_t gc[2] = {(size_t)fw * fw, (size_t)nbasis * ns};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_stamp_cols", 2, gc);
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_stamp_finish", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_stamp_finish", CLRED_ARG(c_conv), CLRED_ARG(c_bsum), CLRED_ARG(nbasis), CLRED_ARG(ins),
                        CLRED_ARG(c_centre), CLRED_ARG(r), CLRED_ARG(isci), CLRED_ARG(ivar), CLRED_ARG(iflags),
                        CLRED_ARG(iv0), CLRED_ARG(ilev), CLRED_ARG(tvar), CLRED_ARG(tflags), CLRED_ARG(tv0),
                        CLRED_ARG(width), CLRED_ARG(height), CLRED_ARG(imask), CLRED_ARG(ilo), CLRED_ARG(ihi), CLRED_ARG(tsci),
                        CLRED_ARG(tmask), CLRED_ARG(tlo), CLRED_ARG(thi), CLRED_ARG(ig), CLRED_ARG(hw), CLRED_ARG(c_bad),
                        CLRED_ARG(c_wt), (size_t)0);
    size_t gf[2] = {(size_t)fw * fw, ns};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_stamp_finish", 2, gf);
    int npix = fw * fw;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_stamp_dots", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_stamp_dots", CLRED_ARG(c_conv), CLRED_ARG(c_wt), CLRED_ARG(nv), CLRED_ARG(npix),
                        CLRED_ARG(ins), CLRED_ARG(c_pairs), CLRED_ARG(npairs), CLRED_ARG(c_dots),
                        CLRED_ARG(c_nfit), (size_t)0);
    size_t gd[2] = {(size_t)npairs + 1, ns}; /* the last work-item of a stamp counts its fitted pixels */
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_stamp_dots", 2, gd);
    if (st == CLRED_OK)
        st = clred_download(ctx, c_dots, 0, ns * (size_t)npairs * acc, host_dots);
    if (st == CLRED_OK)
        st = clred_download(ctx, c_bad, 0, ns * sizeof(cl_int), nbad);
    if (st == CLRED_OK)
        st = clred_download(ctx, c_nfit, 0, ns * sizeof(cl_int), nfit);
    if (st == CLRED_OK)
        for (size_t s = 0; s < ns; s++) {
            double *S = dots + s * (size_t)nv * nv;
            for (int p = 0, q = 0; p < nv; p++)
                for (int o = p; o < nv; o++, q++) {
                    size_t i = s * (size_t)npairs + q;
                    double v = acc == sizeof(double) ? ((double *)host_dots)[i] : (double)((float *)host_dots)[i];
                    S[(size_t)p * nv + o] = S[(size_t)o * nv + p] = v;
                }
        }
done:
    clred_release(&c_centre);
    clred_release(&c_filt);
    clred_release(&c_bf);
    clred_release(&c_bsum);
    clred_release(&c_pairs);
    clred_release(&c_rows);
    clred_release(&c_conv);
    clred_release(&c_dots);
    clred_release(&c_bad);
    clred_release(&c_wt);
    clred_release(&c_nfit);
    free(centre);
    free(pairs);
    free(bf);
    free(host_dots);
    return st;
}
