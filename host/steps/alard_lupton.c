/* Alard-Lupton PSF-matched subtraction (Alard & Lupton 1998; Alard 2000),
 * HOTPANTS' way: which image to convolve, the basis scaled to the seeing,
 * stamps on bright isolated stars with kernel-sum and figure-of-merit
 * rejection (al_fit.c), then the spatially varying convolution on the
 * device (the kernel evaluated per block), the variance through K^2, masks
 * grown by the kernel's footprint, and optionally Rubin's decorrelation
 * (DMTN-021) of the difference through the FFT layer. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"
#include "fft.h"

clred_al_opts clred_al_defaults(void)
{
    clred_al_opts o;
    memset(&o, 0, sizeof o);
    o.ngauss = 3;
    o.gauss_scale[0] = 0.7;
    o.gauss_scale[1] = 1.5;
    o.gauss_scale[2] = 3.0;
    o.gauss_deg[0] = 6;
    o.gauss_deg[1] = 4;
    o.gauss_deg[2] = 2;
    o.kernel_order = 2;
    o.select_order = 1;
    o.bg_order = 1;
    o.convolve = CLRED_AL_CONVOLVE_AUTO;
    o.normalize = CLRED_AL_NORM_REF;
    o.t_lower = o.i_lower = -INFINITY;
    o.t_upper = o.i_upper = INFINITY;
    o.ignore_bits = CLRED_MASK_UNUSABLE;
    o.fit_ignore_bits = CLRED_MASK_NOFIT;
    o.subtract_background = 1;
    o.max_stamps = 150;
    o.stamp_snr = 10;
    o.ksum_clip = 3;
    o.fom_clip = 3;
    o.max_iters = 3;
    o.block = 16;
    o.kernel_grid = 3;
    o.backend = CLRED_FFT_DEFAULT;
    o.sky_refit = 1;
    return o;
}

void clred_al_result_free(clred_al_result *r)
{
    if (!r)
        return;
    clred_dimage_free(r->diff);
    clred_dimage_free(r->conv);
    clred_dimage_free(r->score);
    clred_dimage_free(r->decorr);
    clred_dimage_free(r->detect);
    clred_psf_free(&r->psf_diff);
    al_kerr_free(r->kernel_error);
    free(r->terms);
    free(r->kernel_images);
    free(r->kernel_x);
    free(r->kernel_y);
    memset(r, 0, sizeof *r);
}

static double robust_sigma(float *v, size_t n, double *median)
{
    double med = clred_median_inplace(v, n);
    for (size_t i = 0; i < n; i++)
        v[i] = fabsf(v[i] - (float)med);
    if (median)
        *median = med;
    return 1.4826 * clred_median_inplace(v, n);
}

/* The median of an image (its level) and its background noise: sqrt of the
 * VAR plane's median where there is one, else 1.4826 MAD. */
static clred_status level_and_noise(const clred_dimage *img, uint16_t ignore, const char *what, double *level,
                                    double *sigma)
{
    size_t npix = clred_dimage_pixels(img), stride = npix > 262144 ? npix / 262144 : 1, n;
    float *v;
    CLRED_TRY(clred_dimage_samples(img, 0, 0, img->width, img->height, stride, ignore, &v, &n));
    if (n < 16) {
        free(v);
        return clred_fail(CLRED_ERR_INPUT, "Alard-Lupton: the %s image has %zu usable pixels", what, n);
    }
    *sigma = robust_sigma(v, n, level);
    free(v);
    if (clred_dimage_var(img)) {
        clred_dimage view = *img;
        view.plane[CLRED_PLANE_SCI] = clred_dimage_var(img);
        CLRED_TRY(clred_dimage_samples(&view, 0, 0, img->width, img->height, stride, ignore, &v, &n));
        if (n > 0)
            *sigma = sqrt(fmax(clred_median_inplace(v, n), 0.0));
        free(v);
    }
    if (!(*sigma > 0))
        return clred_fail(CLRED_ERR_INPUT, "Alard-Lupton: the %s image's background noise is %g (a constant image?)",
                          what, *sigma);
    return CLRED_OK;
}

/* A blended star or one whose windowed moments failed still centres a
 * stamp (the fit takes whatever the box holds); saturated, masked or edge
 * ones do not. */
#define STAMP_REJECT (CLRED_SRC_SATURATED | CLRED_SRC_EDGE | CLRED_SRC_MASKED)

/* The half-size of a stamp's core, which an unusable pixel must not reach
 * (al_stamp_dots_dev): half the broader image's FWHM, at least 2 px: the
 * star's peak, without which the stamp says little about the kernel.
 * Unusable pixels further out only take the fitted pixels they reach out of
 * the fit. A core of the whole FWHM cost a sparse field a quarter of its
 * stamps (a cosmic ray, a hole's or a saturated star's grown mask within
 * hw + FWHM of the star) and 2 px more of border each side; with a varying
 * PSF, stamps are what pins the kernel between and beyond them (the seed
 * sweep in tests/sweep_al_varying.c). */
static int stamp_core(double fwhm) { return fwhm > 4 ? (int)ceil(0.5 * fwhm) : 2; }

/* Stamp centres: sources of the reference (see STAMP_REJECT) with S/N >= stamp_snr,
 * the brightest source of their fitted box (a fainter neighbour is fitted
 * with the star, by the same kernel: it does not bias the fit, and a rule
 * that dropped stars with a neighbour of half their flux lost a fifth of a
 * sparse field's stamps; a brighter one would be the stamp), far enough from
 * the border for the core and the kernel (the fitted pixels whose sums
 * reach past the border are left out of the fit: al_stamp_dots_dev), so
 * that the kernel near the edges and corners, where it varies most, is fitted
 * rather than extrapolated; the brightest few of each cell of a grid, so
 * that the spatial terms see the whole image, among the stars whose core
 * no unusable or fit-masked pixel reaches (al_stamp_check_dev on ti and
 * ii, before the choice: a star the fit would drop must not take its
 * cell's place, as HOTPANTS moves on to the region's next star). */
static clred_status pick_stamps(clred_ctx *ctx, const clred_dimage *ref, double fwhm, const clred_al_opts *o, int hw,
                                int r, int core, const al_side *ti, const al_side *ii, int **cx, int **cy, size_t *ns)
{
    clred_detect_opts d = clred_detect_defaults();
    d.fwhm = fwhm > 1 ? fwhm : 1;
    d.ignore_bits = o->ignore_bits | o->fit_ignore_bits; /* a star on them is MASKED: no stamp */
    clred_source *src = NULL;
    size_t n = 0;
    clred_status st = clred_detect_sources_dev(ctx, ref, NULL, NULL, NAN, 0.0, &d, &src, &n);
    if (st != CLRED_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", clred_last_error());
        return clred_fail(st, "Alard-Lupton: no stamps: the stars off the unusable%s pixels could not be found: %s",
                          o->fit_ignore_bits ? " and fit-masked" : "", why);
    }
    size_t w = ref->width, h = ref->height;
    int edge = core + hw + 1;
    int grid = (int)(fmin((double)w, (double)h) / (2.0 * (r + hw)));
    grid = grid < 1 ? 1 : grid > 10 ? 10 : grid;
    size_t per = (size_t)((o->max_stamps + grid * grid - 1) / (grid * grid));
    per = per < 1 ? 1 : per;
    size_t *cnt = calloc((size_t)grid * grid, sizeof *cnt);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    *cx = malloc((n ? n : 1) * sizeof **cx);
    *cy = malloc((n ? n : 1) * sizeof **cy);
    *ns = 0;
    if (!cnt || !idx || !*cx || !*cy) {
        free(cnt);
        free(idx);
        free(src);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu sources", n);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const clred_source *s = &src[i];
        if ((s->flags & STAMP_REJECT) || !(s->flux_err > 0) || s->flux / s->flux_err < o->stamp_snr)
            continue;
        if (s->x < edge || s->y < edge || s->x > (double)w - 1 - edge || s->y > (double)h - 1 - edge)
            continue;
        int alone = 1;
        for (size_t j = 0; j < n && alone; j++)
            alone = j == i || fabs(src[j].x - s->x) > r || fabs(src[j].y - s->y) > r || src[j].flux < s->flux;
        if (alone)
            idx[m++] = i;
    }
    /* brightest first */
    for (size_t a = 1; a < m; a++)
        for (size_t b = a; b > 0 && src[idx[b]].flux > src[idx[b - 1]].flux; b--) {
            size_t t = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = t;
        }
    /* the candidates' cores checked (in *cx, *cy for the while) */
    int *nbad = malloc((m ? m : 1) * sizeof *nbad);
    for (size_t a = 0; a < m; a++) {
        (*cx)[a] = (int)lround(src[idx[a]].x);
        (*cy)[a] = (int)lround(src[idx[a]].y);
    }
    clred_status cs = nbad ? al_stamp_check_dev(ctx, ti, ii, o->ignore_bits | o->fit_ignore_bits, hw, r, core, *cx,
                                                *cy, m, nbad)
                           : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu stamps", m);
    if (cs != CLRED_OK) {
        free(nbad);
        free(cnt);
        free(idx);
        free(src);
        return cs;
    }
    for (size_t a = 0; a < m; a++) {
        const clred_source *s = &src[idx[a]];
        if (nbad[a] > 0)
            continue;
        int gx = (int)(s->x * grid / (double)w), gy = (int)(s->y * grid / (double)h);
        gx = gx >= grid ? grid - 1 : gx;
        gy = gy >= grid ? grid - 1 : gy;
        if (cnt[gy * grid + gx] >= per)
            continue;
        cnt[gy * grid + gx]++;
        (*cx)[*ns] = (int)lround(s->x);
        (*cy)[*ns] = (int)lround(s->y);
        (*ns)++;
    }
    free(nbad);
    free(cnt);
    free(idx);
    free(src);
    return CLRED_OK;
}

/* The Fourier step's FFT plan, made on a thread while the stamps, the fit
 * and the convolution run: making it (VkFFT's kernels built) is host work
 * of a few tenths of a second on POCL. Nothing else touches the context's
 * plan cache until plan_ahead_join. */
typedef struct {
    clred_ctx *ctx;
    clred_fft_backend backend;
    size_t nx, ny;
    pthread_t thread;
    int started;
} plan_ahead;

static void *plan_ahead_run(void *arg)
{
    plan_ahead *p = arg;
    clred_fft_plan *plan;
    /* a failure is left for the Fourier step, which asks the cache again and reports it */
    if (clred_fft_plan_cached(p->ctx, p->backend, p->nx, p->ny, 1, &plan) != CLRED_OK)
        clred_clear_error();
    return NULL;
}

static void plan_ahead_join(plan_ahead *p)
{
    if (p->started)
        pthread_join(p->thread, NULL);
    p->started = 0;
}

/* The padded FFT size of the Fourier step: the image plus the larger of the kernel and the PSF. */
static void fourier_size(size_t w, size_t h, int ks, int psize, size_t *nx, size_t *ny)
{
    size_t pad = (size_t)(ks > psize ? ks : psize);
    *nx = clred_fft_good_size(w + pad);
    *ny = clred_fft_good_size(h + pad);
}

typedef struct {
    clred_ctx *ctx;
    size_t w, h;
    plan_ahead plan;
    al_side ti, ii;
    al_basis basis;
    int r, ko, bo;
    double *coef;
    int *cx, *cy, *use, *nbad, *nfit;
    double *dots, *chi2;
    size_t ns;
} al_state;

static void state_free(al_state *s)
{
    plan_ahead_join(&s->plan);
    al_basis_free(&s->basis);
    free(s->coef);
    free(s->cx);
    free(s->cy);
    free(s->use);
    free(s->nbad);
    free(s->nfit);
    free(s->dots);
    free(s->chi2);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median and 1.4826 MAD of the used stamps' values */
static void robust_of(const double *v, const int *use, size_t n, double *med, double *sig)
{
    double *t = malloc((n ? n : 1) * sizeof *t);
    size_t m = 0;
    if (!t) {
        *med = NAN;
        *sig = NAN;
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (use[i] && isfinite(v[i]))
            t[m++] = v[i];
    if (m == 0) {
        *med = *sig = NAN;
        free(t);
        return;
    }
    qsort(t, m, sizeof *t, cmp_double);
    *med = m % 2 ? t[m / 2] : 0.5 * (t[m / 2 - 1] + t[m / 2]);
    for (size_t i = 0; i < m; i++)
        t[i] = fabs(t[i] - *med);
    qsort(t, m, sizeof *t, cmp_double);
    *sig = 1.4826 * (m % 2 ? t[m / 2] : 0.5 * (t[m / 2 - 1] + t[m / 2]));
    free(t);
}

/* The kernel's spatial order, at most the one allowed, that best predicts
 * stamps left out of the fit (5-fold cross-validation). A spatial variation
 * the stamps do not support (few stamps, or PSF wings no Gaussian basis
 * follows, which each star's fit absorbs differently) makes the kernel
 * wrong away from them, and its residuals around every bright star become
 * candidates. */
static void choose_kernel_order(al_state *s, size_t nuse)
{
    int nb = s->basis.nbasis, folds = nuse < 5 ? (int)nuse : 5, best = s->ko;
    size_t train = nuse - (nuse + (size_t)folds - 1) / (size_t)folds;
    double best_cv = INFINITY;
    for (int ko = 0; ko <= s->ko && train >= 3 * (size_t)al_nterms(ko); ko++) {
        double cv;
        if (al_cv_chi2(s->dots, s->ns, s->use, s->cx, s->cy, s->w, s->h, nb, ko, s->bo, folds, &cv) != CLRED_OK) {
            clred_clear_error(); /* a fold too poor for this order: not a candidate */
            continue;
        }
        if (cv < best_cv) {
            best_cv = cv;
            best = ko;
        }
    }
    s->ko = best;
}

/* The fit with HOTPANTS' rejections: stamps whose own constant-kernel sum
 * is an outlier go first (a variable star, a bad stamp), then rounds of the
 * global fit dropping stamps whose chi^2 is an outlier against its noise
 * plus the model error the stamps share (al_stamp_outliers; a rule on chi^2
 * per pixel with a spread of at least 10 % of the median, to spare bright
 * stars, kept stamps holding a transient). */
static clred_status fit(al_state *s, const clred_al_opts *o, clred_al_result *out)
{
    int nb = s->basis.nbasis, nv = nb + 2;
    size_t ns = s->ns;
    double *ks = calloc(ns ? ns : 1, sizeof *ks);
    if (!(s->chi2 = calloc(ns ? ns : 1, sizeof *s->chi2)) || !ks) {
        free(ks);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the fit");
    }
    size_t nuse = 0;
    for (size_t i = 0; i < ns; i++) {
        ks[i] = NAN;
        /* a stamp without a fitted pixel says nothing (and has no chi^2 per pixel) */
        s->use[i] = s->nbad[i] <= 0 && s->nfit[i] > 0 &&
                    al_stamp_ksum(s->dots + i * (size_t)nv * nv, nb, &ks[i]) == CLRED_OK;
        nuse += s->use[i];
    }
    clred_clear_error();
    double med, sig;
    robust_of(ks, s->use, ns, &med, &sig);
    for (size_t i = 0; i < ns && sig > 0; i++)
        if (s->use[i] && fabs(ks[i] - med) > o->ksum_clip * sig) {
            s->use[i] = 0;
            nuse--;
        }
    free(ks);
    /* before the figure-of-merit rounds, which judge stamps by the order's fit */
    if (o->select_order && s->ko > 0 && nuse >= 2)
        choose_kernel_order(s, nuse);
    for (int it = 0;; it++) {
        /* Each spatial term of each basis function needs several stamps to
         * pin it: with few stamps the orders come down (HOTPANTS' defaults
         * assume hundreds of stamps), down to a constant kernel and background. */
        while (s->ko > 0 && nuse < 3 * (size_t)al_nterms(s->ko))
            s->ko--;
        while (s->bo > 0 && nuse < 3 * (size_t)al_nterms(s->bo))
            s->bo--;
        if (nuse < 2)
            return clred_fail(CLRED_ERR_INPUT,
                              "Alard-Lupton: %zu usable stamps of %zu: at least 2 isolated stars are needed (lower the "
                              "stamp S/N)",
                              nuse, ns);
        free(s->coef);
        if (!(s->coef = calloc((size_t)al_nunknowns(nb, s->ko, s->bo), sizeof *s->coef)))
            return clred_fail(CLRED_ERR_MEMORY, "out of memory for the fit");
        CLRED_TRY(al_solve(s->dots, ns, s->use, s->cx, s->cy, s->w, s->h, nb, s->ko, s->bo, s->coef, s->chi2));
        if (it >= o->max_iters)
            break;
        /* stamps whose chi^2 the noise and the fit's common model error do not
         * explain (al_stamp_outliers): a variable, a transient, a fading
         * source or a blend in the box, never a star for its brightness */
        double *signal = malloc(ns * sizeof *signal), *nu = malloc(ns * sizeof *nu), f0, e2;
        int *drop = malloc(ns * sizeof *drop);
        if (!signal || !nu || !drop) {
            free(signal);
            free(nu);
            free(drop);
            return clred_fail(CLRED_ERR_MEMORY, "out of memory");
        }
        for (size_t i = 0; i < ns; i++) {
            signal[i] = s->use[i] ? al_stamp_signal(s->dots + i * (size_t)nv * nv, s->coef, nb, s->ko, s->cx[i],
                                                    s->cy[i], s->w, s->h)
                                  : NAN;
            nu[i] = s->nfit[i];
        }
        size_t dropped = 0;
        clred_status st = al_stamp_outliers(s->chi2, signal, nu, s->use, ns, o->fom_clip, drop, &f0, &e2, &dropped);
        for (size_t i = 0; st == CLRED_OK && i < ns; i++)
            if (drop[i])
                s->use[i] = 0;
        free(signal);
        free(nu);
        free(drop);
        if (st != CLRED_OK)
            return st;
        nuse -= dropped;
        if (dropped == 0)
            break;
    }
    double sum = 0;
    for (size_t i = 0; i < ns; i++)
        if (s->use[i])
            sum += s->chi2[i] / s->nfit[i]; /* over the box's pixel count a stamp with some left out reads low */
    out->nstamps = ns;
    out->nstamps_used = nuse;
    out->fom = sum / (double)nuse;
    out->ksum = s->coef[0];
    out->kernel_order = s->ko;
    out->bg_order = s->bo;
    return CLRED_OK;
}

static void side_args(const al_side *s, cl_mem *sci, cl_mem *var, cl_mem *mask, int *flags)
{
    *sci = clred_dimage_sci(s->img);
    *var = clred_dimage_var(s->img) ? clred_dimage_var(s->img) : *sci;
    *mask = clred_dimage_mask(s->img) ? clred_dimage_mask(s->img) : *sci;
    *flags = (clred_dimage_var(s->img) ? 1 : 0) | (clred_dimage_mask(s->img) ? 2 : 0);
}

/* The kernel's spatial components K_l = sum_b a_{b,l} B_b (K_0 with basis
 * 0's constant term), in double: kernel(x, y) = sum_l P_l(x, y) K_l. */
static clred_status spatial_components(const al_state *s, double **out)
{
    int nb = s->basis.nbasis, nk = al_nterms(s->ko), nt = s->basis.ksize * s->basis.ksize;
    double *kl = calloc((size_t)nk * nt, sizeof *kl);
    if (!kl)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel");
    for (int t = 0; t < nt; t++)
        kl[t] = s->coef[0] * s->basis.images[t];
    for (int b = 1; b < nb; b++)
        for (int l = 0; l < nk; l++) {
            double c = s->coef[1 + (size_t)(b - 1) * nk + l];
            const double *img = s->basis.images + (size_t)b * nt;
            double *dst = kl + (size_t)l * nt;
            for (int t = 0; t < nt; t++)
                dst[t] += c * img[t];
        }
    *out = kl;
    return CLRED_OK;
}

static void kernel_from(const al_state *s, const double *kl, double x, double y, double *k)
{
    int nk = al_nterms(s->ko), nt = s->basis.ksize * s->basis.ksize;
    double p[10];
    al_poly(s->ko, x, y, s->w, s->h, p);
    /* term by term, so the inner loop runs over contiguous taps (it vectorises; the host does this for
     * every block) */
    for (int t = 0; t < nt; t++)
        k[t] = p[0] * kl[t];
    for (int l = 1; l < nk; l++) {
        const double *src = kl + (size_t)l * nt;
        double pl = p[l];
        for (int t = 0; t < nt; t++)
            k[t] += pl * src[t];
    }
}

/* The per-block kernels (on the device, from the spatial components) and the convolution into out's planes. */
static clred_status convolve(al_state *s, const clred_al_opts *o, float sign, float norm, clred_al_result *out)
{
    clred_ctx *ctx = s->ctx;
    int B = o->block > 0 ? o->block : 16, nb = s->basis.nbasis, ntaps = s->basis.ksize * s->basis.ksize;
    /* A constant kernel (order 0) is one block, not tens of MB of copies of it. D is unchanged, to the
     * bit where the block is a multiple of 8 (the default): the 8-px runs and row pairs of al_convolve
     * never straddle such blocks, so every pixel takes the same path. */
    if (s->ko == 0)
        B = (int)(s->w > s->h ? s->w : s->h);
    int nbx = (int)((s->w + B - 1) / B), nby = (int)((s->h + B - 1) / B), nblocks = nbx * nby;
    double *kl = NULL;
    float bg[6] = {0, 0, 0, 0, 0, 0};
    int nk = al_nterms(s->ko), nbg = al_nterms(s->bo);
    for (int m = 0; m < nbg; m++)
        bg[m] = (float)s->coef[1 + (size_t)(nb - 1) * nk + m];
    /* the spatial components and each block's polynomial weights (small); the blocks' kernels (nblocks x
     * ntaps, tens of MB) are made on the device */
    float *klf = malloc((size_t)nk * ntaps * sizeof *klf), *poly = malloc((size_t)nblocks * nk * sizeof *poly);
    size_t kbytes = (size_t)nblocks * ntaps * sizeof(float), vbytes = (size_t)nblocks * sizeof(cl_int);
    cl_mem c_kern = NULL, c_bg = NULL, c_vhw = NULL, c_kl = NULL, c_poly = NULL;
    clred_status st = CLRED_OK;
    if (!klf || !poly) {
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %d kernel blocks", nblocks);
        goto done;
    }
    if ((st = spatial_components(s, &kl)) != CLRED_OK)
        goto done;
    for (size_t t = 0; t < (size_t)nk * ntaps; t++)
        klf[t] = (float)kl[t];
    for (int by = 0; by < nby; by++)
        for (int bx = 0; bx < nbx; bx++) {
            double x = fmin(bx * B + 0.5 * (B - 1), (double)s->w - 1), y = fmin(by * B + 0.5 * (B - 1), (double)s->h - 1);
            double p[10];
            al_poly(s->ko, x, y, s->w, s->h, p);
            for (int l = 0; l < nk; l++)
                poly[((size_t)by * nbx + bx) * nk + l] = (float)p[l];
        }
    cl_mem_flags ro = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    st = clred_buffer(ctx, ro, (size_t)nk * ntaps * sizeof *klf, klf, &c_kl, "AL kernel components");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, (size_t)nblocks * nk * sizeof *poly, poly, &c_poly, "AL block polynomials");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, sizeof bg, bg, &c_bg, "AL background");
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, kbytes, "AL block kernels", &c_kern);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, vbytes, "AL variance half-widths", &c_vhw);
    cl_kernel k;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_block_kernels", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_block_kernels", CLRED_ARG(c_kl), CLRED_ARG(c_poly), CLRED_ARG(nk), CLRED_ARG(ntaps),
                        CLRED_ARG(nblocks), CLRED_ARG(c_kern), (size_t)0);
    size_t gk[2] = {(size_t)ntaps, (size_t)nblocks};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_block_kernels", 2, gk);
    float tail = (float)AL_VAR_TAIL;
    int khw = s->basis.hw;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_block_var_hw", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_block_var_hw", CLRED_ARG(c_kern), CLRED_ARG(khw), CLRED_ARG(nblocks), CLRED_ARG(tail),
                        CLRED_ARG(c_vhw), (size_t)0);
    size_t gv = (size_t)nblocks;
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_block_var_hw", 1, &gv);
    /* The four scratch planes are taken at the Fourier step's plane size where it follows: given back to
     * the pool here, they are its planes there, not fresh memory (page faults on POCL) */
    size_t npix = s->w * s->h, fbytes = npix * sizeof(float), ubytes = npix * sizeof(cl_uint);
    if (s->plan.nx) {
        size_t fourier_bytes = clred_fft_bytes(s->plan.nx, s->plan.ny, 1);
        fbytes = fbytes > fourier_bytes ? fbytes : fourier_bytes;
        ubytes = fbytes;
    }
    cl_mem tz = NULL, vz = NULL, bad = NULL, tmp = NULL;
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, fbytes, "AL T plane", &tz);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, fbytes, "AL T variance plane", &vz);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, ubytes, "AL unusable-T flags", &bad);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, ubytes, "AL unusable-T flags", &tmp);
    cl_mem tsci, tvar, tmask, isci, ivar, imask;
    int tflags, iflags, width = (int)s->w, height = (int)s->h, hw = s->basis.hw;
    side_args(&s->ti, &tsci, &tvar, &tmask, &tflags);
    side_args(&s->ii, &isci, &ivar, &imask, &iflags);
    cl_ushort ig = o->ignore_bits;
    cl_uint n = (cl_uint)npix;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_prep", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_prep", CLRED_ARG(tsci), CLRED_ARG(tvar), CLRED_ARG(tmask), CLRED_ARG(tflags),
                        CLRED_ARG(s->ti.level), CLRED_ARG(s->ti.var0), CLRED_ARG(s->ti.lo), CLRED_ARG(s->ti.hi),
                        CLRED_ARG(ig), CLRED_ARG(n), CLRED_ARG(tz), CLRED_ARG(vz), CLRED_ARG(bad), (size_t)0);
    size_t g1 = npix, g8[2] = {(s->w + 7) / 8, s->h};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_prep", 1, &g1);
    /* the footprint's OR as two 1-D passes: bad -> tmp along rows, tmp -> bad along columns */
    for (int pass = 0; pass < 2 && st == CLRED_OK; pass++) {
        int dx = pass == 0, dy = pass == 1;
        cl_mem in = pass == 0 ? bad : tmp, outp = pass == 0 ? tmp : bad;
        st = clred_kernel(ctx, "al", NULL, "al_grow", &k);
        if (st == CLRED_OK)
            st = clred_args(k, "al_grow", CLRED_ARG(in), CLRED_ARG(width), CLRED_ARG(height), CLRED_ARG(hw),
                            CLRED_ARG(dx), CLRED_ARG(dy), CLRED_ARG(outp), (size_t)0);
        if (st == CLRED_OK)
            st = clred_run_tiled(ctx, k, "al_grow", 2, g8);
    }
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_convolve", &k);
    if (st == CLRED_OK) {
        cl_mem dsci = clred_dimage_sci(out->diff), dvar = clred_dimage_var(out->diff),
               dmask = clred_dimage_mask(out->diff);
        /* planes not made: the kernel skips them (any buffer stands in) */
        int planes = (out->conv ? 1 : 0) | (out->score ? 2 : 0);
        cl_mem conv = out->conv ? clred_dimage_sci(out->conv) : dsci,
               score = out->score ? clred_dimage_sci(out->score) : dsci,
               smask = out->score ? clred_dimage_mask(out->score) : dmask;
        st = clred_args(k, "al_convolve", CLRED_ARG(tz), CLRED_ARG(vz), CLRED_ARG(bad), CLRED_ARG(tmask),
                        CLRED_ARG(tflags), CLRED_ARG(isci), CLRED_ARG(ivar), CLRED_ARG(imask), CLRED_ARG(iflags),
                        CLRED_ARG(s->ii.level), CLRED_ARG(s->ii.var0), CLRED_ARG(s->ii.lo), CLRED_ARG(s->ii.hi),
                        CLRED_ARG(ig), CLRED_ARG(width), CLRED_ARG(height), CLRED_ARG(c_kern), CLRED_ARG(hw),
                        CLRED_ARG(c_vhw), CLRED_ARG(B), CLRED_ARG(nbx), CLRED_ARG(c_bg), CLRED_ARG(sign), CLRED_ARG(norm),
                        CLRED_ARG(dsci), CLRED_ARG(dvar), CLRED_ARG(dmask), CLRED_ARG(planes), CLRED_ARG(conv),
                        CLRED_ARG(score), CLRED_ARG(smask), (size_t)0);
    }
    /* 8 pixels of two rows per work-item */
    size_t g[2] = {(s->w + 7) / 8, (s->h + 1) / 2};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_convolve", 2, g);
    /* the kernels may still run: the buffers are released after the queue is done with them */
    if (st == CLRED_OK)
        st = clred_sync(ctx);
    else
        clred_sync(ctx);
    if (tz)
        clred_pool_give(ctx, &tz, fbytes);
    if (vz)
        clred_pool_give(ctx, &vz, fbytes);
    if (bad)
        clred_pool_give(ctx, &bad, ubytes);
    if (tmp)
        clred_pool_give(ctx, &tmp, ubytes);
done:
    if (c_kern)
        clred_pool_give(ctx, &c_kern, kbytes);
    if (c_vhw)
        clred_pool_give(ctx, &c_vhw, vbytes);
    clred_release(&c_bg);
    clred_release(&c_kl);
    clred_release(&c_poly);
    free(klf);
    free(poly);
    free(kl);
    return st;
}

/* The kernel's image at (x, y). */
static clred_status kernel_image(const al_state *s, double x, double y, float *img)
{
    int nt = s->basis.ksize * s->basis.ksize;
    double *kl, *k = malloc((size_t)nt * sizeof *k);
    if (!k)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory");
    clred_status st = spatial_components(s, &kl);
    if (st == CLRED_OK) {
        kernel_from(s, kl, x, y, k);
        for (int t = 0; t < nt; t++)
            img[t] = (float)k[t];
        free(kl);
    }
    free(k);
    return st;
}

static clred_status solution_products(al_state *s, const clred_al_opts *o, clred_al_result *out)
{
    int nb = s->basis.nbasis, nk = al_nterms(s->ko), nbg = al_nterms(s->bo), g = o->kernel_grid > 0 ? o->kernel_grid : 1;
    size_t nt = (size_t)s->basis.ksize * s->basis.ksize;
    out->nterms = (size_t)al_nunknowns(nb, s->ko, s->bo);
    out->terms = calloc(out->nterms, sizeof *out->terms);
    out->kernel_grid = g;
    out->ksize = (size_t)s->basis.ksize;
    out->kernel_images = malloc((size_t)g * g * nt * sizeof(float));
    out->kernel_x = malloc((size_t)g * g * sizeof(double));
    out->kernel_y = malloc((size_t)g * g * sizeof(double));
    if (!out->terms || !out->kernel_images || !out->kernel_x || !out->kernel_y)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel solution");
    int sxs[10], sys[10];
    for (int d = 0, n = 0; d <= 3; d++)
        for (int j = 0; j <= d; j++, n++) {
            sxs[n] = d - j;
            sys[n] = j;
        }
    for (size_t u = 0; u < out->nterms; u++) {
        clred_al_term *t = &out->terms[u];
        t->coeff = s->coef[u];
        if (u == 0) {
            t->gauss = 0;
            t->sigma = s->basis.sigma[0];
        } else if (u < 1 + (size_t)(nb - 1) * nk) {
            int b = 1 + (int)(u - 1) / nk, l = (int)(u - 1) % nk;
            t->gauss = s->basis.gauss[b];
            t->sigma = s->basis.sigma[t->gauss];
            t->deg_u = s->basis.du[b];
            t->deg_v = s->basis.dv[b];
            t->sx = sxs[l];
            t->sy = sys[l];
        } else {
            int m = (int)(u - 1 - (size_t)(nb - 1) * nk);
            t->gauss = -1;
            t->sx = sxs[m];
            t->sy = sys[m];
        }
    }
    (void)nbg;
    for (int j = 0; j < g; j++)
        for (int i = 0; i < g; i++) {
            double x = (i + 0.5) * (double)s->w / g - 0.5, y = (j + 0.5) * (double)s->h / g - 0.5;
            out->kernel_x[j * g + i] = x;
            out->kernel_y[j * g + i] = y;
            CLRED_TRY(kernel_image(s, x, y, out->kernel_images + (size_t)(j * g + i) * nt));
        }
    return CLRED_OK;
}

/* unit[m] = e^{-2 pi i m / n}, m < n, in double (interleaved re, im). */
static double *unit_roots(size_t n)
{
    double *w = malloc(2 * n * sizeof *w);
    for (size_t m = 0; w && m < n; m++) {
        double a = -2.0 * M_PI * (double)m / (double)n;
        w[2 * m] = cos(a);
        w[2 * m + 1] = sin(a);
    }
    return w;
}

/* The row transforms al_small_spectrum sums (kernels/al.cl): rows[v][fx] =
 * sum_u img(u, v) e^{-2 pi i fx (u - h) / nx} for fx < nxh, in double
 * (unit: unit_roots(nx)), stored as floats, real and imaginary parts apart,
 * rows of rpitch (the bins past nxh 0). */
static void small_rows(const float *img, int size, const double *unit, size_t nx, size_t nxh, size_t rpitch,
                       float *re, float *im)
{
    int h = size / 2; /* 2h + 1 rows (an even size's missing last row and column are 0) */
    for (int v = 0; v <= 2 * h; v++)
        for (size_t fx = 0; fx < rpitch; fx++) {
            double sr = 0, si = 0;
            for (int u = 0; u < size && v < size && fx < nxh; u++) {
                long long m = ((long long)fx * (u - h)) % (long long)nx;
                size_t q = (size_t)(m < 0 ? m + (long long)nx : m);
                double a = img[v * size + u];
                sr += a * unit[2 * q];
                si += a * unit[2 * q + 1];
            }
            re[(size_t)v * rpitch + fx] = (float)sr;
            im[(size_t)v * rpitch + fx] = (float)si;
        }
}

/* tw[fy][j + th] = e^{-2 pi i fy j / ny}, |j| <= th (unit: unit_roots(ny)). */
static void column_twiddles(const double *unit, size_t ny, int th, cl_float2 *tw)
{
    for (size_t fy = 0; fy < ny; fy++)
        for (int j = -th; j <= th; j++) {
            long long m = ((long long)fy * j) % (long long)ny;
            size_t q = (size_t)(m < 0 ? m + (long long)ny : m);
            tw[fy * (size_t)(2 * th + 1) + (size_t)(j + th)].s[0] = (float)unit[2 * q];
            tw[fy * (size_t)(2 * th + 1) + (size_t)(j + th)].s[1] = (float)unit[2 * q + 1];
        }
}

/* The sky's variance of the difference al_unpad writes (its VAR' away from
 * sources): what al_var_pad takes off. */
static double sky_variance(const al_state *s, float ksum, float norm)
{
    double ksum2 = (double)ksum * ksum;
    return ((double)s->ii.var0 + ksum2 * (double)s->ti.var0) / ((double)norm * norm);
}

/* P'^2 (from P', pw: psize^2) as gy(v) gx(u), its best separable
 * approximation (rank 1, by power iteration; P' is near circular and this
 * holds 99.96 % of a Moffat's P'^2 energy, its sum within 1.4 %), cut at the
 * radius r (<= psize / 2) past which both fall below AL_DETVAR_CUT of their
 * peaks, then scaled to the sum of P'^2. It filters only VAR' less the sky's,
 * so an error of a percent is a percent of the stars' excess. g: gx, then gy,
 * 2 r + 1 taps each (room for 2 psize). */
static void p2_separable(const float *pw, int psize, float *g, int *r_out)
{
    int n = psize, h = psize / 2;
    double *a = malloc((size_t)n * n * sizeof *a), *u = malloc(2 * (size_t)n * sizeof *u), *v = u + n;
    if (!a || !u) { /* the centre's tap only: VAR'(x) sum P'^2, the variance used before */
        double s2 = 0;
        for (int i = 0; i < n * n; i++)
            s2 += (double)pw[i] * pw[i];
        g[0] = (float)s2;
        g[1] = 1.0f;
        *r_out = 0;
        free(a);
        free(u);
        return;
    }
    double sum = 0;
    for (int i = 0; i < n * n; i++) {
        a[i] = (double)pw[i] * pw[i];
        sum += a[i];
    }
    for (int i = 0; i < n; i++)
        v[i] = 1.0;
    double sigma = 0;
    for (int it = 0; it < 100; it++) { /* u = A v / |A v|, v = A^T u (|v| = sigma) */
        double nu = 0, nv = 0;
        for (int j = 0; j < n; j++) {
            double t = 0;
            for (int i = 0; i < n; i++)
                t += a[(size_t)j * n + i] * v[i];
            u[j] = t;
            nu += t * t;
        }
        nu = sqrt(nu);
        for (int j = 0; j < n; j++)
            u[j] /= nu;
        for (int i = 0; i < n; i++) {
            double t = 0;
            for (int j = 0; j < n; j++)
                t += a[(size_t)j * n + i] * u[j];
            v[i] = t;
            nv += t * t;
        }
        sigma = sqrt(nv);
        for (int i = 0; i < n; i++)
            v[i] /= sigma;
    }
    double su = u[h] < 0 ? -1 : 1, sv = v[h] < 0 ? -1 : 1, mu = 0, mv = 0;
    for (int i = 0; i < n; i++) {
        u[i] *= su;
        v[i] *= sv;
        mu = fmax(mu, fabs(u[i]));
        mv = fmax(mv, fabs(v[i]));
    }
    int r = 0;
    for (int t = 1; t <= h; t++)
        if (fabs(u[h - t]) > AL_DETVAR_CUT * mu || fabs(u[h + t]) > AL_DETVAR_CUT * mu ||
            fabs(v[h - t]) > AL_DETVAR_CUT * mv || fabs(v[h + t]) > AL_DETVAR_CUT * mv)
            r = t;
    double gu = 0, gv = 0;
    for (int t = -r; t <= r; t++) {
        gu += u[h + t];
        gv += v[h + t];
    }
    double scale = gu * gv != 0 ? sum / (gu * gv) : 0;
    for (int t = -r; t <= r; t++) {
        g[t + r] = (float)(v[h + t] * scale); /* gx: along u, the columns of pw */
        g[2 * r + 1 + t + r] = (float)u[h + t]; /* gy: along v, its rows */
    }
    *r_out = r;
    free(a);
    free(u);
}

/* The matched filter's variance less sky_variance x sum P'^2 into plane
 * (rows of pitch floats): VAR' less the sky's over the usable pixels
 * correlated with P'^2 (pw, psize^2) as p2_separable gives it (al_var_pad,
 * then al_var_pass along rows and columns). Were DETECT divided by
 * sqrt(VAR'(x) sum P'^2), the centre pixel's variance, a lobe beside a bright
 * star would be measured against the sky's noise while the filter sums the
 * star's source noise: over seeds 1-20 of test_al's pair, 21 peaks past 4
 * sigma within 12 px of stars against 5.9 expected (14 with this). */
static clred_status detect_variance(al_state *s, int dec, float ksum, float norm, cl_mem dsci, cl_mem dvar,
                                    const float *pw, int psize, int pitch, cl_mem plane)
{
    clred_ctx *ctx = s->ctx;
    float *g = malloc(2 * (size_t)psize * sizeof *g);
    int r = 0;
    if (!g)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the detection variance");
    p2_separable(pw, psize, g, &r);
    cl_mem gbuf[2] = {NULL, NULL}, tmp = NULL;
    size_t bytes = (size_t)pitch * s->h * sizeof(float), gbytes = (size_t)(2 * r + 1) * sizeof *g;
    clred_status st = CLRED_OK;
    for (int a = 0; a < 2 && st == CLRED_OK; a++)
        st = clred_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, gbytes, g + (size_t)a * (2 * r + 1), &gbuf[a],
                          "AL P'^2 taps");
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, bytes, "AL detection variance", &tmp);
    cl_kernel k;
    cl_mem isci, ivar, imask, tsci, tvar, tmask;
    int iflags, tflags, iw = (int)s->w, ih = (int)s->h;
    side_args(&s->ii, &isci, &ivar, &imask, &iflags);
    side_args(&s->ti, &tsci, &tvar, &tmask, &tflags);
    float v0 = (float)sky_variance(s, ksum, norm);
    size_t gi[2] = {s->w, s->h};
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_var_pad", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_var_pad", CLRED_ARG(dsci), CLRED_ARG(dvar), CLRED_ARG(ivar), CLRED_ARG(iflags),
                        CLRED_ARG(s->ii.var0), CLRED_ARG(tvar), CLRED_ARG(tflags), CLRED_ARG(s->ti.var0),
                        CLRED_ARG(ksum), CLRED_ARG(norm), CLRED_ARG(dec), CLRED_ARG(v0), CLRED_ARG(iw), CLRED_ARG(ih),
                        CLRED_ARG(pitch), CLRED_ARG(plane), (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_var_pad", 2, gi);
    for (int pass = 0; pass < 2 && st == CLRED_OK; pass++) {
        int dx = pass == 0, dy = pass == 1;
        cl_mem in = pass == 0 ? plane : tmp, outp = pass == 0 ? tmp : plane;
        cl_mem gp = gbuf[pass];
        if (st == CLRED_OK)
            st = clred_kernel(ctx, "al", NULL, "al_var_pass", &k);
        if (st == CLRED_OK)
            st = clred_args(k, "al_var_pass", CLRED_ARG(in), CLRED_ARG(iw), CLRED_ARG(ih), CLRED_ARG(pitch),
                            CLRED_ARG(gp), CLRED_ARG(r), CLRED_ARG(dx), CLRED_ARG(dy), CLRED_ARG(outp), (size_t)0);
        size_t g8[2] = {(s->w + 7) / 8, s->h};
        if (st == CLRED_OK)
            st = clred_run_tiled(ctx, k, "al_var_pass", 2, g8);
    }
    /* No wait: the queue is in order, so whoever takes tmp from the pool next
     * uses it after these passes; the taps were copied at creation and the
     * queued kernels hold their own references to the buffers. */
    if (tmp)
        clred_pool_give(ctx, &tmp, bytes);
    clred_release(&gbuf[0]);
    clred_release(&gbuf[1]);
    free(g);
    return st;
}

/* The kernel fit's error as clred_al_candidates_kernel propagates it
 * (al_kerr.c): the covariance of the solution's kernel unknowns, scaled by
 * the fit's chi^2 per pixel where that is above 1 (Birge's ratio: the
 * stamps' residuals beyond their noise are the model's error, and the same
 * share of it is assumed elsewhere), and DETECT's filter. */
static clred_status kernel_error_model(const al_state *s, const clred_al_opts *o, clred_al_result *out,
                                       const float *pw, int psize, const float *kimg, int dec, float norm)
{
    int nk = 1 + (s->basis.nbasis - 1) * al_nterms(s->ko);
    double *cov = malloc((size_t)nk * nk * sizeof *cov);
    if (!cov)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the kernel's covariance");
    clred_status st = al_kernel_covariance(s->dots, s->ns, s->use, s->cx, s->cy, s->w, s->h, s->basis.nbasis, s->ko,
                                           s->bo, cov);
    al_kerr_frame f = {s->w, s->h, s->ti.level, norm, fmax(1.0, out->fom), s->ti.lo, s->ti.hi, o->ignore_bits};
    if (st == CLRED_OK)
        st = al_kerr_create(&s->basis, cov, s->ko, pw, psize, kimg, s->ii.var0, s->ti.var0, out->ksum, dec, &f,
                            &out->kernel_error);
    free(cov);
    return st;
}

/* Through the FFT layer: DMTN-021's decorrelation (when asked), D' = D * phi
 * with phi^ = sqrt((s2i + ksum^2 s2t) / (s2i + |K^|^2 s2t)), the kernel K taken
 * at the image's centre; the PSF of D' is P' = P * phi; and the detection
 * image: D' filtered with P' over sqrt(VAR' sum P'^2). */
static clred_status fourier(al_state *s, const clred_al_opts *o, float norm, clred_al_result *out)
{
    clred_ctx *ctx = s->ctx;
    int ks = s->basis.ksize, psize = (int)out->psf_diff.size, phalf = psize / 2;
    size_t nx, ny;
    fourier_size(s->w, s->h, ks, psize, &nx, &ny);
    plan_ahead_join(&s->plan);
    size_t pitch = clred_fft_pitch(nx), bytes = clred_fft_bytes(nx, ny, 1);
    clred_fft_plan *plan;
    CLRED_TRY(clred_fft_plan_cached(ctx, o->backend, nx, ny, 1, &plan));
    size_t nxh = nx / 2 + 1, rpitch = (nxh + 7) / 8 * 8;
    int khalf = ks / 2, th = khalf > phalf ? khalf : phalf;
    size_t kr_n = (size_t)(2 * khalf + 1) * rpitch, pr_n = (size_t)(2 * phalf + 1) * rpitch;
    float *kimg = malloc((size_t)ks * ks * sizeof *kimg), *pw = malloc((size_t)psize * psize * sizeof *pw);
    double *unit_x = unit_roots(nx), *unit_y = unit_roots(ny);
    /* the kernel's rows, real then imaginary parts, then the PSF's likewise */
    float *rows = malloc(2 * (kr_n + pr_n) * sizeof *rows);
    cl_float2 *tw = malloc(ny * (size_t)(2 * th + 1) * sizeof *tw);
    cl_mem dplane = NULL, kplane = NULL, pplane = NULL, rbuf = NULL, twbuf = NULL, pwbuf = NULL;
    clred_status st = CLRED_OK;
    if (!kimg || !pw || !unit_x || !unit_y || !rows || !tw)
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory for the Fourier step");
    if (st == CLRED_OK)
        st = kernel_image(s, 0.5 * (s->w - 1), 0.5 * (s->h - 1), kimg);
    /* K^ and P^ from their small images directly (al_small_spectrum), not by two forward FFTs of the plane */
    if (st == CLRED_OK) {
        small_rows(kimg, ks, unit_x, nx, nxh, rpitch, rows, rows + kr_n);
        small_rows(out->psf_diff.data, psize, unit_x, nx, nxh, rpitch, rows + 2 * kr_n, rows + 2 * kr_n + pr_n);
        column_twiddles(unit_y, ny, th, tw);
    }
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, bytes, "AL Fourier plane", &dplane);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, bytes, "AL Fourier plane", &kplane);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, bytes, "AL Fourier plane", &pplane);
    cl_mem_flags ro = CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR;
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, 2 * (kr_n + pr_n) * sizeof *rows, rows, &rbuf, "AL kernel and PSF rows");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, ro, ny * (size_t)(2 * th + 1) * sizeof *tw, tw, &twbuf, "AL column twiddles");
    if (st == CLRED_OK)
        st = clred_buffer(ctx, CL_MEM_WRITE_ONLY, (size_t)psize * psize * sizeof(float), NULL, &pwbuf, "AL PSF'");
    if (st == CLRED_OK && o->decorrelate)
        st = clred_dimage_like(out->diff, 1, 1, 1, &out->decorr);
    if (st == CLRED_OK)
        st = clred_dimage_like(out->diff, 0, 1, 1, &out->detect);
    cl_kernel k;
    int iw = (int)s->w, ih = (int)s->h, ip = (int)pitch, inx = (int)nx, iny = (int)ny;
    cl_mem dsci = clred_dimage_sci(out->diff), dvar = clred_dimage_var(out->diff);
    size_t gp[2] = {pitch, ny};
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_pad", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_pad", CLRED_ARG(dsci), CLRED_ARG(iw), CLRED_ARG(ih), CLRED_ARG(ip), CLRED_ARG(iny),
                        CLRED_ARG(dplane), (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_pad", 2, gp);
    if (st == CLRED_OK)
        st = clred_fft_forward(ctx, plan, dplane);
    float s2i = s->ii.var0, s2t = s->ti.var0, ksum = (float)out->ksum;
    int dec = o->decorrelate ? 1 : 0, inxh = (int)nxh, irp = (int)rpitch;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_fourier", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_fourier", CLRED_ARG(dplane), CLRED_ARG(kplane), CLRED_ARG(pplane), CLRED_ARG(inxh),
                        CLRED_ARG(iny), CLRED_ARG(rbuf), CLRED_ARG(khalf), CLRED_ARG(phalf), CLRED_ARG(irp),
                        CLRED_ARG(twbuf), CLRED_ARG(th),
                        CLRED_ARG(s2i), CLRED_ARG(s2t), CLRED_ARG(ksum), CLRED_ARG(dec), (size_t)0);
    size_t gb[2] = {(nxh + 7) / 8, ny};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_fourier", 2, gb);
    if (st == CLRED_OK && dec)
        st = clred_fft_inverse(ctx, plan, dplane);
    if (st == CLRED_OK)
        st = clred_fft_inverse(ctx, plan, kplane);
    if (st == CLRED_OK)
        st = clred_fft_inverse(ctx, plan, pplane);
    /* P' (the PSF's window of it) for sum P'^2 and the candidates' fits */
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "zogy", NULL, "zogy_unwrap", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "zogy_unwrap", CLRED_ARG(pplane), CLRED_ARG(ip), CLRED_ARG(inx), CLRED_ARG(iny),
                        CLRED_ARG(phalf), CLRED_ARG(pwbuf), (size_t)0);
    size_t gu[2] = {(size_t)psize, (size_t)psize};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "zogy_unwrap", 2, gu);
    if (st == CLRED_OK)
        st = clred_download(ctx, pwbuf, 0, (size_t)psize * psize * sizeof(float), pw);
    double sp2 = 0;
    for (int i = 0; st == CLRED_OK && i < psize * psize; i++)
        sp2 += (double)pw[i] * pw[i];
    if (st == CLRED_OK && dec) {
        clred_psf dp;
        if (out->psf_diff.order > 0)
            st = al_decorrelated_psf_model(&out->psf_diff, pw, kimg, ks, s2i, s2t, ksum, &dp);
        else
            st = clred_psf_from_array(pw, (size_t)psize, (size_t)psize, 0, &dp);
        if (st == CLRED_OK) {
            clred_psf_free(&out->psf_diff);
            out->psf_diff = dp;
        }
    }
    if (st == CLRED_OK)
        st = kernel_error_model(s, o, out, pw, psize, kimg, dec, norm);
    if (st == CLRED_OK)
        st = detect_variance(s, dec, ksum, norm, dsci, dvar, pw, psize, ip, pplane);
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_unpad", &k);
    if (st == CLRED_OK) {
        cl_mem isci, ivar, imask, tsci, tvar, tmask;
        int iflags, tflags;
        side_args(&s->ii, &isci, &ivar, &imask, &iflags);
        side_args(&s->ti, &tsci, &tvar, &tmask, &tflags);
        cl_mem osci = dec ? clred_dimage_sci(out->decorr) : dsci, ovar = dec ? clred_dimage_var(out->decorr) : dsci,
               det = clred_dimage_sci(out->detect), score = out->score ? clred_dimage_sci(out->score) : det;
        int with_score = out->score != NULL;
        float v_base = (float)(sky_variance(s, ksum, norm) * sp2);
        st = clred_args(k, "al_unpad", CLRED_ARG(dplane), CLRED_ARG(kplane), CLRED_ARG(pplane), CLRED_ARG(v_base),
                        CLRED_ARG(ip), CLRED_ARG(dsci), CLRED_ARG(dvar), CLRED_ARG(ivar), CLRED_ARG(iflags),
                        CLRED_ARG(s->ii.var0), CLRED_ARG(tvar), CLRED_ARG(tflags), CLRED_ARG(s->ti.var0),
                        CLRED_ARG(ksum), CLRED_ARG(norm), CLRED_ARG(dec), CLRED_ARG(iw), CLRED_ARG(ih),
                        CLRED_ARG(osci), CLRED_ARG(ovar), CLRED_ARG(with_score), CLRED_ARG(score), CLRED_ARG(det),
                        (size_t)0);
    }
    size_t gi[2] = {s->w, s->h};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_unpad", 2, gi);
    size_t mbytes = s->w * s->h * sizeof(cl_ushort);
    if (st == CLRED_OK && dec)
        st = clred_copy(ctx, clred_dimage_mask(out->diff), clred_dimage_mask(out->decorr), mbytes);
    if (st == CLRED_OK)
        st = clred_copy(ctx, clred_dimage_mask(out->diff), clred_dimage_mask(out->detect), mbytes);
    if (st == CLRED_OK)
        st = clred_sync(ctx);
    free(kimg);
    free(pw);
    free(unit_x);
    free(unit_y);
    free(rows);
    free(tw);
    clred_release(&rbuf);
    clred_release(&twbuf);
    clred_release(&pwbuf);
    if (dplane)
        clred_pool_give(ctx, &dplane, bytes);
    if (kplane)
        clred_pool_give(ctx, &kplane, bytes);
    if (pplane)
        clred_pool_give(ctx, &pplane, bytes);
    return st;
}

/* The median of v after values beyond 3 x 1.4826 MAD of it are left out (v is reordered). */
static double clipped_median(float *v, size_t n)
{
    double med = clred_median_inplace(v, n);
    float *t = malloc(n * sizeof *t);
    if (!t)
        return med;
    for (size_t i = 0; i < n; i++)
        t[i] = fabsf(v[i] - (float)med);
    double lim = 3.0 * 1.4826 * clred_median_inplace(t, n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(v[i] - med) <= lim)
            t[m++] = v[i];
    if (m > n / 2)
        med = clred_median_inplace(t, m);
    free(t);
    return med;
}

/* The difference's sky, re-fitted. The stamps' fit pins the differential
 * background only in boxes around bright stars, where a constant trades
 * against the kernel's wide components and against whatever else the boxes
 * hold that only one image has (a transient, a variable neighbour): on the
 * simulated Moffat pairs the sky of D came out offset by up to -0.15 sigma
 * per pixel, with gradients of the same size across the field. The
 * PSF-matched filter sums that over the PSF's ~45 effective pixels, i.e. up
 * to -1 sigma in DETECT, enough to turn noise near -5 sigma into fading
 * candidates. The level is measured where it is defined, on D's own sky: D
 * sampled on a grid, a sample dropped when |D / sigma| passes AL_SKY_SCORE
 * within AL_SKY_REACH FWHMs of it (sources' wings would pull a median up: 45
 * transients in 256^2 moved it by +1 e-), a clipped median in each cell of a
 * grid, a polynomial of the background's order through the cells; that is
 * taken off D (and the score) and put into the background of the solution
 * and of CONV, before the decorrelation and DETECT are made from D. */
static clred_status refit_sky(al_state *s, double fwhm, float sign, float norm, clred_al_result *out)
{
    clred_ctx *ctx = s->ctx;
    int cells = s->bo == 0 ? 1 : AL_SKY_CELLS, nt = al_nterms(s->bo);
    int step = (int)floor(sqrt((double)(s->w * s->h) / AL_SKY_SAMPLES));
    step = step < 1 ? 1 : step;
    int nsx = (int)(s->w / (size_t)step), nsy = (int)(s->h / (size_t)step), width = (int)s->w, height = (int)s->h;
    int reach = (int)ceil(AL_SKY_REACH * fwhm);
    size_t nsamp = (size_t)nsx * nsy;
    float *v = malloc(nsamp * sizeof *v);
    cl_mem c_samp = NULL, c_delta = NULL;
    cl_kernel k;
    if (!v)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu sky samples", nsamp);
    clred_status st = clred_pool_take(ctx, nsamp * sizeof(float), "AL sky samples", &c_samp);
    float thr = AL_SKY_SCORE;
    cl_mem dsci = clred_dimage_sci(out->diff), dmask = clred_dimage_mask(out->diff),
           score = clred_dimage_sci(out->score);
    cl_ushort ig = CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_sky_samples", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "al_sky_samples", CLRED_ARG(dsci), CLRED_ARG(dmask), CLRED_ARG(ig), CLRED_ARG(score),
                        CLRED_ARG(thr), CLRED_ARG(reach), CLRED_ARG(width), CLRED_ARG(height),
                        CLRED_ARG(step), CLRED_ARG(nsx), CLRED_ARG(nsy), CLRED_ARG(c_samp), (size_t)0);
    size_t gs[2] = {(size_t)nsx, (size_t)nsy};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_sky_samples", 2, gs);
    if (st == CLRED_OK)
        st = clred_download(ctx, c_samp, 0, nsamp * sizeof(float), v);
    if (c_samp)
        clred_pool_give(ctx, &c_samp, nsamp * sizeof(float));
    if (st != CLRED_OK) {
        free(v);
        return st;
    }
    double lev[AL_SKY_CELLS * AL_SKY_CELLS], cxs[AL_SKY_CELLS * AL_SKY_CELLS], cys[AL_SKY_CELLS * AL_SKY_CELLS],
        cw[AL_SKY_CELLS * AL_SKY_CELLS];
    int ncell = 0;
    float *cv = malloc(nsamp * sizeof *cv);
    if (!cv) {
        free(v);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu sky samples", nsamp);
    }
    for (int cj = 0; cj < cells; cj++)
        for (int ci = 0; ci < cells; ci++) {
            int i0 = ci * nsx / cells, i1 = (ci + 1) * nsx / cells, j0 = cj * nsy / cells, j1 = (cj + 1) * nsy / cells;
            size_t n = 0;
            for (int j = j0; j < j1; j++)
                for (int i = i0; i < i1; i++)
                    if (!isnan(v[(size_t)j * nsx + i]))
                        cv[n++] = v[(size_t)j * nsx + i];
            if (n < AL_SKY_MIN_SAMPLES)
                continue;
            lev[ncell] = clipped_median(cv, n);
            cxs[ncell] = (0.5 * (i0 + i1)) * step;
            cys[ncell] = (0.5 * (j0 + j1)) * step;
            cw[ncell] = (double)n;
            ncell++;
        }
    free(v);
    free(cv);
    /* a polynomial needs more cells than terms to be a fit rather than an interpolation */
    while (nt > 1 && ncell < 2 * nt)
        nt = nt == 6 ? 3 : 1;
    if (ncell == 0)
        return CLRED_OK; /* no sky to measure it on: the stamps' background stands */
    double a[36] = {0}, rhs[6] = {0}, p[10];
    int order = nt == 6 ? 2 : nt == 3 ? 1 : 0;
    for (int c = 0; c < ncell; c++) {
        al_poly(order, cxs[c], cys[c], s->w, s->h, p);
        for (int u = 0; u < nt; u++) {
            rhs[u] += cw[c] * p[u] * lev[c];
            for (int q = 0; q < nt; q++)
                a[u * nt + q] += cw[c] * p[u] * p[q];
        }
    }
    CLRED_TRY(al_linsolve(a, rhs, nt));
    /* D = sign (I - level - K*T - bg) / norm: D - delta needs bg + sign norm delta */
    int nb = s->basis.nbasis, nk = al_nterms(s->ko);
    float delta[6] = {0, 0, 0, 0, 0, 0};
    for (int u = 0; u < nt; u++) {
        delta[u] = (float)rhs[u]; /* float on the device, as the background polynomial */
        s->coef[1 + (size_t)(nb - 1) * nk + u] += (double)sign * norm * rhs[u];
    }
    for (int u = 0; u < nt; u++)
        out->sky_refit[u] += rhs[u];
    float sn = sign * norm;
    st = clred_buffer(ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof delta, delta, &c_delta, "AL sky correction");
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "al", NULL, "al_sky_correct", &k);
    if (st == CLRED_OK) {
        /* CONV when it is made (any buffer stands in otherwise: the kernel skips it) */
        int with_conv = out->conv != NULL;
        cl_mem conv = out->conv ? clred_dimage_sci(out->conv) : dsci, dvar = clred_dimage_var(out->diff);
        st = clred_args(k, "al_sky_correct", CLRED_ARG(c_delta), CLRED_ARG(sn), CLRED_ARG(width), CLRED_ARG(height),
                        CLRED_ARG(dsci), CLRED_ARG(dvar), CLRED_ARG(with_conv), CLRED_ARG(conv), CLRED_ARG(score),
                        (size_t)0);
    }
    size_t g[2] = {s->w, s->h};
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "al_sky_correct", 2, g);
    /* c_delta is read by the enqueued kernel: released after it ran */
    if (st == CLRED_OK)
        st = clred_sync(ctx);
    clred_release(&c_delta);
    return st;
}

/* The robust spread of SCORE, from its plane or, where it was not made, from
 * the same samples of the difference it divides (DECORR when decorrelated,
 * else D) and its VAR: SCORE's mask is D's, its pixels v / sqrt(VAR) where
 * both are usable and VAR > 0, as al_convolve and al_unpad make them. */
static clred_status score_spread(clred_al_result *out)
{
    const clred_dimage *sc = out->score ? out->score : out->decorr ? out->decorr : out->diff;
    size_t npix = clred_dimage_pixels(sc), stride = npix > 262144 ? npix / 262144 : 1, n;
    uint16_t ignore = CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE;
    float *v;
    if (out->score) {
        CLRED_TRY(clred_dimage_samples(sc, 0, 0, sc->width, sc->height, stride, ignore, &v, &n));
    } else {
        clred_dimage var = *sc;
        float *vv;
        var.plane[CLRED_PLANE_SCI] = clred_dimage_var(sc);
        CLRED_TRY(clred_dimage_samples_at(sc, 0, 0, sc->width, sc->height, stride, ignore, &v, &n));
        clred_status st = clred_dimage_samples_at(&var, 0, 0, sc->width, sc->height, stride, ignore, &vv, &n);
        if (st != CLRED_OK) {
            free(v);
            return st;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!isnan(v[i]) && vv[i] > 0.0f)
                v[m++] = v[i] / sqrtf(vv[i]);
        n = m;
        free(vv);
    }
    out->score_std = n > 16 ? robust_sigma(v, n, NULL) : NAN;
    free(v);
    return CLRED_OK;
}

static clred_status check(const clred_dimage *n, const clred_dimage *r, const clred_psf *pn, const clred_psf *pr,
                          const clred_al_opts *o, double *fn, double *fr)
{
    if (!n || !r)
        return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: no %s image", n ? "reference" : "new");
    if (n->width != r->width || n->height != r->height)
        return clred_fail(CLRED_ERR_INPUT,
                          "Alard-Lupton: the new image is %zu x %zu, the reference %zu x %zu (align them first)",
                          n->width, n->height, r->width, r->height);
    *fn = o->fwhm_new > 0 ? o->fwhm_new : (pn && pn->data ? pn->fwhm : 0);
    *fr = o->fwhm_ref > 0 ? o->fwhm_ref : (pr && pr->data ? pr->fwhm : 0);
    if (!(*fn > 0 && *fr > 0))
        return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: the seeing of both images is needed (PSFs or FWHMs)");
    if (o->ngauss < 1 || o->ngauss > CLRED_AL_MAX_GAUSS)
        return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: %d Gaussians (1..%d)", o->ngauss, CLRED_AL_MAX_GAUSS);
    if (o->kernel_order < 0 || o->kernel_order > 3 || o->bg_order < 0 || o->bg_order > 2)
        return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: kernel order %d (0..3), background order %d (0..2)",
                          o->kernel_order, o->bg_order);
    if (o->half_width < 0 || o->fit_half < 0 || o->max_stamps < 1 || o->block < 0)
        return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: negative half-width, fit size or block, or no stamps");
    if (!(o->t_lower <= o->t_upper && o->i_lower <= o->i_upper))
        return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: empty valid range");
    return CLRED_OK;
}

/* A varying model is kept whole: the difference's PSF varies as it does
 * (al_decorrelated_psf_model carries it through the decorrelation). */
static clred_status copy_psf(const clred_psf *p, clred_psf *out)
{
    if (!p || !p->data)
        return CLRED_OK;
    if (p->order > 0 && p->basis)
        return clred_psf_copy(p, out);
    return clred_psf_from_array(p->data, p->size, p->size, 0, out);
}

clred_status clred_subtract_al_dev(clred_ctx *ctx, const clred_dimage *new_img, const clred_dimage *ref,
                                   const clred_psf *psf_new, const clred_psf *psf_ref, const clred_al_opts *opts,
                                   clred_al_result *out)
{
    memset(out, 0, sizeof *out);
    clred_al_opts defaults = clred_al_defaults();
    const clred_al_opts *o = opts ? opts : &defaults;
    double fwhm_n = 0, fwhm_r = 0;
    CLRED_TRY(check(new_img, ref, psf_new, psf_ref, o, &fwhm_n, &fwhm_r));
    int conv_ref = o->convolve == CLRED_AL_CONVOLVE_REF ||
                   (o->convolve == CLRED_AL_CONVOLVE_AUTO && fwhm_r <= fwhm_n);
    al_state s;
    memset(&s, 0, sizeof s);
    s.ctx = ctx;
    s.w = new_img->width;
    s.h = new_img->height;
    s.ko = o->kernel_order;
    s.bo = o->bg_order;
    double lev_n, lev_r, sig_n, sig_r;
    clred_status st = level_and_noise(new_img, o->ignore_bits, "new", &lev_n, &sig_n);
    if (st == CLRED_OK)
        st = level_and_noise(ref, o->ignore_bits, "reference", &lev_r, &sig_r);
    if (st != CLRED_OK)
        return st;
    if (!o->subtract_background)
        lev_n = lev_r = 0;
    al_side sn = {new_img, (float)lev_n, (float)(sig_n * sig_n), (float)o->i_lower, (float)o->i_upper};
    al_side sr = {ref, (float)lev_r, (float)(sig_r * sig_r), (float)o->t_lower, (float)o->t_upper};
    s.ti = conv_ref ? sr : sn;
    s.ii = conv_ref ? sn : sr;
    double fwhm_t = conv_ref ? fwhm_r : fwhm_n, fwhm_i = conv_ref ? fwhm_n : fwhm_r;
    double sm = sqrt(fabs(fwhm_i * fwhm_i - fwhm_t * fwhm_t)) / 2.354820045;
    sm = sm > 0.5 ? sm : 0.5;
    int hw = o->half_width > 0 ? o->half_width : (int)ceil(3.0 * fmax(fwhm_n, fwhm_r));
    hw = hw < 3 ? 3 : hw;
    s.r = o->fit_half > 0 ? o->fit_half : hw;
    if ((size_t)(4 * (hw + s.r) + 1) > s.w || (size_t)(4 * (hw + s.r) + 1) > s.h)
        return clred_fail(CLRED_ERR_INPUT,
                          "Alard-Lupton: a %zu x %zu image is too small for a kernel half-width of %d px and stamps "
                          "of %d px",
                          s.w, s.h, hw, 2 * s.r + 1);
    double sig[CLRED_AL_MAX_GAUSS];
    for (int k = 0; k < o->ngauss; k++)
        sig[k] = o->gauss_scale[k] * sm;
    out->convolved_ref = conv_ref;
    out->sigma_match = sm;
    out->bkg_new = lev_n;
    out->bkg_ref = lev_r;
    out->sigma_new = sig_n;
    out->sigma_ref = sig_r;
    st = al_basis_build(o->ngauss, sig, o->gauss_deg, hw, &s.basis);
    const clred_psf *pd = conv_ref ? psf_new : psf_ref;
    if (st == CLRED_OK && pd && pd->data) {
        s.plan.ctx = ctx;
        s.plan.backend = o->backend;
        fourier_size(s.w, s.h, s.basis.ksize, (int)pd->size, &s.plan.nx, &s.plan.ny);
        s.plan.started = pthread_create(&s.plan.thread, NULL, plan_ahead_run, &s.plan) == 0;
    }
    if (st == CLRED_OK)
        st = pick_stamps(ctx, ref, fwhm_r, o, hw, s.r, stamp_core(fwhm_i), &s.ti, &s.ii, &s.cx, &s.cy, &s.ns);
    int nv = s.basis.nbasis + 2;
    if (st == CLRED_OK && s.ns == 0)
        st = clred_fail(CLRED_ERR_INPUT, "Alard-Lupton: no isolated star with S/N >= %g for a stamp", o->stamp_snr);
    if (st == CLRED_OK) {
        s.dots = malloc(s.ns * (size_t)nv * nv * sizeof *s.dots);
        s.nbad = malloc(s.ns * sizeof *s.nbad);
        s.nfit = malloc(s.ns * sizeof *s.nfit);
        s.use = malloc(s.ns * sizeof *s.use);
        if (!s.dots || !s.nbad || !s.nfit || !s.use)
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu stamps", s.ns);
    }
    if (st == CLRED_OK)
        st = al_stamp_dots_dev(ctx, &s.ti, &s.ii, o->ignore_bits | o->fit_ignore_bits, &s.basis, s.r,
                               stamp_core(fwhm_i), s.cx, s.cy, s.ns, s.dots, s.nbad, s.nfit);
    if (st == CLRED_OK)
        st = fit(&s, o, out);
    if (st == CLRED_OK && !(out->ksum > 0))
        st = clred_fail(CLRED_ERR_INPUT, "Alard-Lupton: the kernel sum came out %g", out->ksum);
    /* D in the convolved image's system is divided by the kernel sum */
    int norm_to_t = (o->normalize == CLRED_AL_NORM_REF) == conv_ref;
    float norm = norm_to_t ? (float)out->ksum : 1.0f, sign = conv_ref ? 1.0f : -1.0f;
    out->photnorm_scale = norm;
    if (st == CLRED_OK)
        st = clred_dimage_like(new_img, 1, 1, 1, &out->diff);
    if (st == CLRED_OK && !(o->omit_planes & CLRED_AL_WRITE_CONV))
        st = clred_dimage_like(new_img, 0, 0, 1, &out->conv);
    /* the sky's re-fit reads D / sigma from SCORE: made all the same then */
    if (st == CLRED_OK && (!(o->omit_planes & CLRED_AL_WRITE_SCORE) || o->sky_refit))
        st = clred_dimage_like(new_img, 0, 1, 1, &out->score);
    if (st == CLRED_OK)
        st = convolve(&s, o, sign, norm, out);
    /* a few rounds: an offset large enough to push the score past AL_SKY_SCORE would hide its own sky */
    for (int round = 0; round < AL_SKY_ROUNDS && st == CLRED_OK && o->sky_refit; round++)
        st = refit_sky(&s, fwhm_i, sign, norm, out);
    if (st == CLRED_OK)
        st = copy_psf(conv_ref ? psf_new : psf_ref, &out->psf_diff);
    if (st == CLRED_OK && o->decorrelate && !out->psf_diff.data)
        st = clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: decorrelation needs the PSFs (for the difference's)");
    if (st == CLRED_OK && out->psf_diff.data)
        st = fourier(&s, o, norm, out);
    if (st == CLRED_OK)
        st = solution_products(&s, o, out);
    if (st == CLRED_OK)
        st = score_spread(out);
    if (st == CLRED_OK) {
        clred_header *hd = clred_dimage_header(out->diff);
        st = clred_header_set_string(hd, "DIFFMETH", "AL", "difference imaging method: Alard-Lupton");
        if (st == CLRED_OK)
            st = clred_header_set_string(hd, "CONVOL", conv_ref ? "TEMPLATE" : "IMAGE",
                                         conv_ref ? "the reference was convolved" : "the new image was convolved");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "KSUM", out->ksum, "kernel sum");
        if (st == CLRED_OK)
            st = clred_header_set_string(hd, "PHOTNORM", norm_to_t == conv_ref ? "t" : "i",
                                         "photometric system of the difference (t: reference, i: new)");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALSIGMA", sm, "matching sigma, px");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALHW", hw, "kernel half-width, px");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALKORD", s.ko, "kernel spatial order used");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALBGORD", s.bo, "background spatial order used");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALNSTAMP", (double)out->nstamps_used, "stamps used");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALFOM", out->fom, "mean chi^2 per pixel of the stamps");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALSCSD", out->score_std, "robust std of D / sigma");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALSKYFIT", out->sky_refit[0],
                                         "D's sky re-fitted: level taken off at the centre");
        if (st == CLRED_OK)
            st = clred_header_set_double(hd, "ALDECORR", o->decorrelate ? 1.0 : 0.0, "decorrelated (DMTN-021)");
    }
    state_free(&s);
    if (st != CLRED_OK)
        clred_al_result_free(out);
    return st;
}

clred_status clred_subtract_al(clred_ctx *ctx, const clred_image *new_img, const clred_image *ref,
                               const clred_psf *psf_new, const clred_psf *psf_ref, const clred_al_opts *opts,
                               clred_al_result *out)
{
    memset(out, 0, sizeof *out);
    if (!new_img || !ref || !new_img->sci || !ref->sci)
        return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: no %s image", new_img && new_img->sci ? "reference" : "new");
    clred_dimage *dn = NULL, *dr = NULL;
    clred_status st = clred_dimage_borrow(ctx, new_img, &dn);
    if (st == CLRED_OK)
        st = clred_dimage_borrow(ctx, ref, &dr);
    if (st == CLRED_OK)
        st = clred_subtract_al_dev(ctx, dn, dr, psf_new, psf_ref, opts, out);
    clred_status sync = clred_sync(ctx);
    if (st == CLRED_OK && sync != CLRED_OK) {
        clred_al_result_free(out);
        st = sync;
    }
    clred_dimage_free(dn);
    clred_dimage_free(dr);
    return st;
}
