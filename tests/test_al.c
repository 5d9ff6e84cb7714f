/* Alard-Lupton subtraction (host/steps/alard_lupton.c, al_basis.c, al_fit.c,
 * kernels/al.cl):
 *  - the basis, the stamps' normal equations (device), the solution (host)
 *    and the spatially varying convolution (device) against the
 *    double-precision reference in tests/reference/al_ref.c;
 *  - on simulated pairs with their truth: D / sigma after decorrelation in
 *    sky has standard deviation 1 +- 0.05; completeness >= 95 % at S/N >= 8;
 *    PSF fluxes of the injected sources unbiased within their errors; fading
 *    sources negative; no candidate on the template's NaN holes; false
 *    candidates within 3x DMTN-006's expectation; both ways round (the
 *    reference convolved, or the new image when it is sharper);
 *  - the sky of D re-fitted (refit_sky, kernels al_sky_samples and
 *    al_sky_correct) against the same estimate in double. */
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"
#include "al_ref.h"
#include "fft.h"
#include "harness.h"
#include "pair_truth.h"
#include "stats_ref.h"

static void download(const clred_dimage *d, clred_image *img)
{
    memset(img, 0, sizeof *img);
    CHECK_OK(clred_dimage_download(d, img));
}

static int usable(const clred_image *img, size_t i)
{
    return isfinite(img->sci[i]) && !(img->mask && (img->mask[i] & CLRED_MASK_UNUSABLE));
}

/* usable() of every pixel, as the references take it (malloc'd; NULL when out of memory). */
static unsigned char *usable_map(const clred_image *img)
{
    size_t n = img->width * img->height;
    unsigned char *ok = malloc(n);
    for (size_t i = 0; ok && i < n; i++)
        ok[i] = (unsigned char)usable(img, i);
    return ok;
}

/* Sum of the stamps' chi^2 for a solution (laid out as al_ref_solve's) under equations S. */
static double chi2_of(const double *coef, const double *S, int ns, const int *cx, const int *cy, size_t w, size_t h,
                      int nbasis, int ko, int bo)
{
    int nv = nbasis + 2, nk = (ko + 1) * (ko + 2) / 2, nbg = (bo + 1) * (bo + 2) / 2;
    double *c = malloc((size_t)nv * sizeof *c), total = 0;
    for (int s = 0; s < ns; s++) {
        double xs = 2.0 * cx[s] / (double)(w - 1) - 1, ys = 2.0 * cy[s] / (double)(h - 1) - 1, p[10];
        int n = 0;
        for (int d = 0; d <= 3; d++)
            for (int j = 0; j <= d; j++)
                p[n++] = pow(xs, d - j) * pow(ys, j);
        c[0] = coef[0];
        for (int b = 1; b < nbasis; b++) {
            c[b] = 0;
            for (int l = 0; l < nk; l++)
                c[b] += coef[1 + (b - 1) * nk + l] * p[l];
        }
        c[nbasis] = 0;
        for (int m = 0; m < nbg; m++)
            c[nbasis] += coef[1 + (nbasis - 1) * nk + m] * p[m];
        const double *M = S + (size_t)s * nv * nv;
        double x2 = M[nv * nv - 1];
        for (int a = 0; a <= nbasis; a++) {
            x2 -= 2 * c[a] * M[a * nv + nv - 1];
            for (int b = 0; b <= nbasis; b++)
                x2 += c[a] * c[b] * M[a * nv + b];
        }
        total += x2;
    }
    free(c);
    return total;
}

/* A 144 x 144 pair of 60 stars, Gaussian PSFs 3 -> 4 px: the stamp tests' field. */
static clred_pair_opts small_gaussian_pair(unsigned seed)
{
    clred_pair_opts po = clred_pair_defaults();
    po.width = po.height = 144;
    po.psf_kind = CLRED_PSF_GAUSSIAN;
    po.ref_fwhm = 3.0;
    po.new_fwhm = 4.0;
    po.nstars = 60;
    po.seed = seed;
    return po;
}

/* The fitted pixels each stamp's chi^2 takes (al_stamp_dots_dev's nfit,
 * counted on the device from the weights) against the reference's count
 * of the pixels it weights above 0, on stamps of a pair with unusable
 * pixels planted away from their stars: a variance NaN, 0 and negative
 * where the mask says nothing (var_I + var_T; I's VAR, then T's), I's value NaN, a T
 * pixel flagged a cosmic ray beyond the fitted box and one NaN at the
 * footprint's corner, the border; one with a NaN in its core (not used:
 * none) and a clean one (all). The counts are also checked against what
 * each plant takes out, so that the reference and the device agreeing on
 * a wrong rule (the box's count, the mask alone) fails too. */
static void stamp_counts(clred_ctx *ctx)
{
    clred_pair_opts po = small_gaussian_pair(12);
    po.nholes = 0; /* the unusable pixels are planted where the counts below say */
    po.ncosmics = 0;
    po.nsaturated = 0;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    const size_t w = 144, h = 144;
    const int hw = 6, r = 6, core = 4, box = (2 * r + 1) * (2 * r + 1);
    double sig[3] = {0.7 * 1.2, 1.5 * 1.2, 3.0 * 1.2};
    int deg[3] = {6, 4, 2};
    enum { NS = 7 };
    int cx[NS] = {30, 72, 114, 30, 11, 114, 72}, cy[NS] = {30, 30, 30, 72, 100, 114, 114};
    /* every stamp's footprint starts usable in both (the border's aside) */
    for (int s = 0; s < NS; s++)
        for (int y = cy[s] - r - hw; y <= cy[s] + r + hw; y++)
            for (int x = cx[s] - r - hw; x <= cx[s] + r + hw; x++)
                if (x >= 0) {
                    size_t i = (size_t)y * w + (size_t)x;
                    CHECK_MSG(usable(&p.ref, i) && usable(&p.new_img, i),
                              "stamp %d at (%d, %d): (%d, %d) unusable before the plants", s, cx[s], cy[s], x, y);
                }
#define AT(img, plane, s, dx, dy) (img).plane[(size_t)(cy[s] + (dy)) * w + (size_t)(cx[s] + (dx))]
    /* 0: I's variance NaN, and such that var_I + var_T is 0 and -1, at three
     * fitted pixels (unmasked): 3 out */
    AT(p.new_img, var, 0, 3, -4) = NAN;
    AT(p.new_img, var, 0, -5, 2) = -AT(p.ref, var, 0, -5, 2);
    AT(p.new_img, var, 0, 6, 6) = -AT(p.ref, var, 0, 6, 6) - 1.0f;
    /* 1: I NaN 5 px from the star (past the core): 1 out; T a cosmic ray at
     * (r + hw, 0), beyond the fitted box: the 13 fitted pixels of column r out */
    AT(p.new_img, sci, 1, -5, -5) = NAN;
    AT(p.ref, mask, 1, r + hw, 0) |= CLRED_MASK_COSMIC_RAY;
    /* 2: T's variance NaN at a fitted pixel: 1 out; T NaN at the footprint's
     * corner (-r - hw + 1, r + hw - 1): the 2 x 2 fitted pixels within hw of it out */
    AT(p.ref, var, 2, 2, 1) = NAN;
    AT(p.ref, sci, 2, -r - hw + 1, r + hw - 1) = NAN;
    /* 3: I NaN 3 px from the star (in the core): not used, no pixel fitted */
    AT(p.new_img, sci, 3, 2, -3) = NAN;
    /* 4: the footprint reaches 1 px past the left border: column -r out */
    /* 5, 6: clean: the whole box */
#undef AT
    const int expect[NS] = {box - 3, box - 14, box - 5, 0, box - (2 * r + 1), box, box};
    clred_dimage *dn, *dr;
    CHECK_OK(clred_dimage_upload(ctx, &p.new_img, &dn));
    CHECK_OK(clred_dimage_upload(ctx, &p.ref, &dr));
    const float tlev = 300.0f, ilev = 310.0f;
    al_side ti = {dr, tlev, 1.0f, -INFINITY, INFINITY}, ii = {dn, ilev, 1.0f, -INFINITY, INFINITY};
    al_basis b;
    CHECK_OK(al_basis_build(3, sig, deg, hw, &b));
    int nbr, nv = b.nbasis + 2;
    double *rb = al_ref_basis(3, sig, deg, hw, &nbr);
    double *dots = malloc((size_t)NS * nv * nv * sizeof *dots), *R = malloc((size_t)nv * nv * sizeof *R);
    int nbad[NS], nfit[NS];
    CHECK_OK(al_stamp_dots_dev(ctx, &ti, &ii, CLRED_MASK_UNUSABLE, &b, r, core, cx, cy, NS, dots, nbad, nfit));
    unsigned char *t_ok = usable_map(&p.ref), *i_ok = usable_map(&p.new_img);
    for (int s = 0; s < NS; s++) {
        /* a stamp with an unusable pixel in its core is not used: its weights are all 0 */
        int rfit = nbad[s] > 0 ? 0
                               : al_ref_stamp_masked(p.ref.sci, p.ref.var, 0, tlev, t_ok, p.new_img.sci, p.new_img.var,
                                                     0, ilev, i_ok, w, h, rb, nbr, hw, r, cx[s], cy[s], R);
        printf("stamp %d at (%d, %d): nbad %d, %d fitted pixels (reference %d, planted %d)\n", s, cx[s], cy[s],
               nbad[s], nfit[s], rfit, expect[s]);
        /* counts of the same weights: exact */
        CHECK_MSG(nfit[s] == rfit && rfit == expect[s], "stamp %d: %d fitted pixels, reference %d, planted %d", s,
                  nfit[s], rfit, expect[s]);
    }
    CHECK(nbad[3] > 0 && nbad[0] == 0 && nbad[1] < 0 && nbad[2] < 0 && nbad[4] < 0);
    free(t_ok);
    free(i_ok);
    free(dots);
    free(R);
    free(rb);
    al_basis_free(&b);
    clred_dimage_free(dn);
    clred_dimage_free(dr);
    clred_pair_free(&p);
}

/* A 144 x 144 pair (Gaussian PSFs 3 -> 4 px), kernel half-width 6, a fitted box of 6. */
static void against_reference(clred_ctx *ctx)
{
    clred_pair_opts po = small_gaussian_pair(11);
    po.ntransients = 10;
    po.nholes = 2;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    const size_t w = 144, h = 144;
    const int hw = 6, r = 6;
    double sig[3] = {0.7 * 1.2, 1.5 * 1.2, 3.0 * 1.2};
    int deg[3] = {6, 4, 2};

    /* basis: float filters against the definition in double */
    al_basis b;
    CHECK_OK(al_basis_build(3, sig, deg, hw, &b));
    int nbr;
    double *rb = al_ref_basis(3, sig, deg, hw, &nbr);
    CHECK(nbr == b.nbasis && nbr == 49);
    int ks = 2 * hw + 1, nt = ks * ks;
    double eb = 0, peak = 0;
    for (int i = 0; i < nbr * nt; i++) {
        eb = fmax(eb, fabs(b.images[i] - rb[i]));
        peak = fmax(peak, fabs(rb[i]));
    }
    printf("basis: worst %.3g of peak %.3g\n", eb, peak);
    CHECK(eb <= 1e-6 * peak);

    /* stamps: the brightest clean star peak of each of 3 x 3 cells, and one on a template hole */
    enum { NS = 12 };
    int cx[NS], cy[NS];
    for (int i = 0; i < 9; i++) {
        float best = -INFINITY;
        cx[i] = 24 + (i % 3) * 48;
        cy[i] = 24 + (i / 3) * 48;
        for (int y = (i / 3) * 48; y < (i / 3 + 1) * 48; y++)
            for (int x = (i % 3) * 48; x < (i % 3 + 1) * 48; x++) {
                if (x < r + hw || y < r + hw || x >= (int)w - r - hw || y >= (int)h - r - hw)
                    continue;
                float v = p.ref.sci[(size_t)y * w + (size_t)x];
                if (!(v > best))
                    continue;
                int clean = 1;
                for (int yy = y - r - hw; yy <= y + r + hw && clean; yy++)
                    for (int xx = x - r - hw; xx <= x + r + hw && clean; xx++)
                        clean = usable(&p.ref, (size_t)yy * w + (size_t)xx) && usable(&p.new_img, (size_t)yy * w + (size_t)xx);
                if (clean) {
                    best = v;
                    cx[i] = x;
                    cy[i] = y;
                }
            }
    }
    cx[9] = (int)lround(p.hole_xy[0]);
    cy[9] = (int)lround(p.hole_xy[1]);
    CHECK(cx[9] >= r + hw && cy[9] >= r + hw && cx[9] < (int)w - r - hw && cy[9] < (int)h - r - hw);
    /* a stamp with the hole beyond its core's reach (core 4: the 6 x 6 hole's
     * nearest pixel 11 px away, past hw + core = 10, within r + hw), and one
     * whose footprint reaches past the left border: both used, the fitted
     * pixels whose sums reach the hole or the border weighted out */
    const int core = 4;
    int hx = (int)lround(p.hole_xy[0]), hy = (int)lround(p.hole_xy[1]);
    cx[10] = hx + 13 <= (int)w - 1 - r - hw ? hx + 13 : hx - 14;
    cy[10] = hy;
    cx[11] = core + hw + 1;
    cy[11] = (int)h / 2;
    clred_dimage *dn, *dr;
    CHECK_OK(clred_dimage_upload(ctx, &p.new_img, &dn));
    CHECK_OK(clred_dimage_upload(ctx, &p.ref, &dr));
    const float tlev = 300.0f, ilev = 310.0f;
    al_side ti = {dr, tlev, 1.0f, -INFINITY, INFINITY}, ii = {dn, ilev, 1.0f, -INFINITY, INFINITY};
    int nv = b.nbasis + 2;
    double *dots = malloc((size_t)NS * nv * nv * sizeof *dots), *rdots = malloc((size_t)NS * nv * nv * sizeof *rdots);
    int nbad[NS], nfit[NS];
    CHECK_OK(al_stamp_dots_dev(ctx, &ti, &ii, CLRED_MASK_UNUSABLE, &b, r, core, cx, cy, NS, dots, nbad, nfit));
    unsigned char *t_ok = usable_map(&p.ref), *i_ok = usable_map(&p.new_img);
    double ed = 0, edm = 0;
    for (int s = 0; s < NS; s++) {
        if (s >= 10) {
            /* the masked stamps */
            double *R = rdots + (size_t)s * nv * nv;
            const double *S = dots + (size_t)s * nv * nv;
            int rfit = al_ref_stamp_masked(p.ref.sci, p.ref.var, 0, tlev, t_ok, p.new_img.sci, p.new_img.var, 0, ilev,
                                           i_ok, w, h, rb, nbr, hw, r, cx[s], cy[s], R);
            CHECK_MSG(nbad[s] < 0, "stamp %d at (%d, %d): nbad %d, expected < 0 (unusable pixels away from the core)", s,
                      cx[s], cy[s], nbad[s]);
            CHECK_MSG(nfit[s] == rfit && rfit < (2 * r + 1) * (2 * r + 1), "stamp %d: %d fitted pixels, reference %d",
                      s, nfit[s], rfit);
            for (int a = 0; a < nv; a++)
                for (int c = 0; c < nv; c++)
                    edm = fmax(edm, fabs(S[a * nv + c] - R[a * nv + c]) / sqrt(R[a * nv + a] * R[c * nv + c]));
            continue;
        }
        al_ref_stamp(p.ref.sci, p.ref.var, 0, tlev, p.new_img.sci, p.new_img.var, 0, ilev, w, rb, nbr, hw, r, cx[s],
                     cy[s], rdots + (size_t)s * nv * nv);
        int bad = 0;
        for (int y = cy[s] - r - hw; y <= cy[s] + r + hw; y++)
            for (int x = cx[s] - r - hw; x <= cx[s] + r + hw; x++)
                bad += !usable(&p.ref, (size_t)y * w + (size_t)x);
        CHECK_MSG((nbad[s] > 0) == (bad > 0), "stamp %d: %d unusable pixels on the device, %d in the reference", s,
                  nbad[s], bad);
        /* the clean stamps fit their whole box (the simulator's variance is positive); one not used, none */
        CHECK_MSG(nfit[s] == (bad ? 0 : (2 * r + 1) * (2 * r + 1)), "stamp %d (%d unusable pixels): %d fitted pixels",
                  s, bad, nfit[s]);
        if (bad)
            continue;
        const double *S = dots + (size_t)s * nv * nv, *R = rdots + (size_t)s * nv * nv;
        for (int a = 0; a < nv; a++)
            for (int c = 0; c < nv; c++)
                ed = fmax(ed, fabs(S[a * nv + c] - R[a * nv + c]) / sqrt(R[a * nv + a] * R[c * nv + c]));
    }
    CHECK(nbad[9] > 0);
    printf("normal equations of the masked stamps: worst %.3g of sqrt(S_aa S_bb)\n", edm);
    CHECK(edm <= 1e-4);
    free(t_ok);
    free(i_ok);
    /* The device sums in float the ~26 products of each of two separable
     * passes (relative error ~ 26 eps = 1.5e-6 of the absolute sums, which
     * are within ~10x of the vectors' norms on sky-subtracted data) and the
     * dot products in acc_t: 1e-4 of sqrt(S_aa S_bb) bounds that with margin. */
    printf("normal equations: worst %.3g of sqrt(S_aa S_bb)\n", ed);
    CHECK(ed <= 1e-4);

    /* the solution: the library's solver and the reference's Cholesky on the
     * same (reference) equations, then the library's on the device's */
    int use[NS], ko = 1, bo = 1;
    for (int s = 0; s < NS; s++)
        use[s] = s < 9;
    int nunk = al_nunknowns(nbr, ko, bo);
    double *c_lib = malloc((size_t)nunk * sizeof(double)), *c_ref = malloc((size_t)nunk * sizeof(double)),
           *c_dev = malloc((size_t)nunk * sizeof(double));
    CHECK_OK(al_solve(rdots, NS, use, cx, cy, w, h, nbr, ko, bo, c_lib, NULL));
    CHECK(al_ref_solve(rdots, 9, cx, cy, w, h, nbr, ko, bo, AL_RIDGE, c_ref) == 0);
    double *c_ls = malloc((size_t)nunk * sizeof(double));
    CHECK(al_ref_solve(rdots, 9, cx, cy, w, h, nbr, ko, bo, 0.0, c_ls) == 0);
    CHECK_OK(al_solve(dots, NS, use, cx, cy, w, h, nbr, ko, bo, c_dev, NULL));
    double *k1 = malloc((size_t)nt * sizeof(double)), *k2 = malloc((size_t)nt * sizeof(double)),
           *k3 = malloc((size_t)nt * sizeof(double));
    double es = 0, edv = 0, kp = 0;
    for (int s = 0; s < 9; s++) {
        al_ref_kernel(c_lib, rb, nbr, hw, ko, cx[s], cy[s], w, h, k1);
        al_ref_kernel(c_ref, rb, nbr, hw, ko, cx[s], cy[s], w, h, k2);
        al_ref_kernel(c_dev, rb, nbr, hw, ko, cx[s], cy[s], w, h, k3);
        for (int t = 0; t < nt; t++) {
            es = fmax(es, fabs(k1[t] - k2[t]));
            edv = fmax(edv, fabs(k3[t] - k2[t]));
            kp = fmax(kp, fabs(k2[t]));
        }
    }
    /* Same equations, two solvers in double: the kernels agree to the
     * system's conditioning times eps (1e-6 of the peak). The device's
     * equations differ by < 1e-6 relative, but the Gaussian x polynomial
     * basis is so far from orthogonal that this moves the coefficients
     * along directions the data barely constrain (the ridge bounds them):
     * what must agree is the fit, i.e. the chi^2 under the reference's
     * equations, to 1e-4 of it (its own noise is sqrt(2 / npix) = 4 % of
     * it), and the kernel to 1 % of its peak. */
    double x2_ls = chi2_of(c_ls, rdots, 9, cx, cy, w, h, nbr, ko, bo);
    double x2_ref = chi2_of(c_ref, rdots, 9, cx, cy, w, h, nbr, ko, bo);
    printf("ridge: chi^2 %.6f, without %.6f\n", x2_ref, x2_ls);
    free(c_ls);
    double x2_dev = chi2_of(c_dev, rdots, 9, cx, cy, w, h, nbr, ko, bo);
    printf("solution: solvers differ by %.3g of a kernel peak %.3g; chi^2 %.6f (reference), %.6f (from the device's "
           "equations; the kernel moved by %.3g)\n",
           es, kp, x2_ref, x2_dev, edv);
    CHECK(es <= 1e-6 * kp);
    CHECK(x2_dev >= x2_ref * (1 - 1e-9));
    CHECK(x2_dev - x2_ref <= 1e-4 * x2_ref);
    CHECK(edv <= 1e-2 * kp);

    /* the whole subtraction, then its convolution against the reference's from the returned terms: with
     * a spatially varying kernel (order 1, one kernel per 16 x 16 block), then with a constant one (order 0,
     * one block for the image) and CONV and SCORE not made */
    for (int ko_run = 1; ko_run >= 0; ko_run--) {
        clred_al_opts o = clred_al_defaults();
        o.half_width = hw;
        o.fit_half = r;
        o.kernel_order = ko_run;
        o.select_order = 0; /* the order asked for is what is checked here */
        o.bg_order = 1;
        o.block = 16;
        o.omit_planes = ko_run == 0 ? CLRED_AL_WRITE_CONV | CLRED_AL_WRITE_SCORE : 0;
        if (ko_run == 0)
            o.sky_refit = 0; /* which reads SCORE (made all the same then): here SCORE is not made at all */
        clred_al_result a;
        CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a));
        CHECK(a.convolved_ref == 1);
        printf("subtraction: %zu of %zu stamps, orders %d/%d, ksum %.5f, fom %.3f\n", a.nstamps_used, a.nstamps,
               a.kernel_order, a.bg_order, a.ksum, a.fom);
        CHECK(a.kernel_order == ko_run); /* as asked: 26 stamps are enough for order 1 */
        CHECK((a.conv == NULL) == (ko_run == 0) && (a.score == NULL) == (ko_run == 0));
        if (ko_run == 0) {
            /* the planes not made change nothing else: D, VAR, MASK and the score's spread as with them */
            clred_al_result full;
            o.omit_planes = 0;
            CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &full));
            CHECK(full.conv && full.score);
            clred_image d0, d1;
            download(a.diff, &d0);
            download(full.diff, &d1);
            size_t np = w * h;
            CHECK(memcmp(d0.sci, d1.sci, np * sizeof(float)) == 0 && memcmp(d0.var, d1.var, np * sizeof(float)) == 0 &&
                  memcmp(d0.mask, d1.mask, np * sizeof(uint16_t)) == 0);
            printf("planes left out: score std %.9g, with them %.9g\n", a.score_std, full.score_std);
            CHECK(isfinite(a.score_std) && a.score_std == full.score_std);
            clred_image_free(&d0);
            clred_image_free(&d1);
            clred_al_result_free(&full);
        }
        CHECK_NEAR(a.ksum, 1.0, 0.03);
        clred_image d;
        download(a.diff, &d);
        double *coef = malloc(a.nterms * sizeof *coef), *kk = malloc((size_t)nt * sizeof *kk);
        double sub_sig[3] = {0, 0, 0};
        for (size_t u = 0; u < a.nterms; u++) {
            coef[u] = a.terms[u].coeff;
            if (a.terms[u].gauss >= 0)
                sub_sig[a.terms[u].gauss] = a.terms[u].sigma;
        }
        /* the basis of the subtraction: sigmas scaled to its matching sigma */
        CHECK_NEAR(sub_sig[0] / 0.7, a.sigma_match, 1e-9);
        free(rb);
        rb = al_ref_basis(3, sub_sig, deg, hw, &nbr);
        double worst = 0, worst_var = 0;
        size_t nan_mismatch = 0, compared = 0;
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                size_t i = y * w + x;
                int inside = (int)x >= hw && (int)y >= hw && (int)x < (int)w - hw && (int)y < (int)h - hw;
                int clean = inside && usable(&p.new_img, i);
                for (int v = -hw; clean && v <= hw; v++)
                    for (int u = -hw; clean && u <= hw; u++)
                        clean = usable(&p.ref, (y - v) * w + x - u);
                if (clean != (int)isfinite(d.sci[i]))
                    nan_mismatch++;
                if (!clean || (x * 7 + y * 3) % 5 != 0)
                    continue;
                double bx = fmin((double)(x / 16) * 16 + 7.5, (double)w - 1), by = fmin((double)(y / 16) * 16 + 7.5, (double)h - 1);
                al_ref_kernel(coef, rb, nbr, hw, a.kernel_order, bx, by, w, h, kk);
                double c, cv, as;
                al_ref_convolve(kk, hw, p.ref.sci, p.ref.var, 0, a.bkg_ref, w, (int)x, (int)y, &c, &cv, &as);
                double xs = 2.0 * x / (w - 1) - 1, ys = 2.0 * y / (h - 1) - 1, bg = 0;
                for (size_t u = 0; u < a.nterms; u++)
                    if (a.terms[u].gauss < 0)
                        bg += a.terms[u].coeff * pow(xs, a.terms[u].sx) * pow(ys, a.terms[u].sy);
                double norm = a.photnorm_scale;
                double dref = (p.new_img.sci[i] - a.bkg_new - c - bg) / norm;
                double vref = (p.new_img.var[i] + cv) / (norm * norm);
                /* float sums of 169 products: ~sqrt(169) eps = 8e-7 of the sum of their magnitudes
                 * (13 eps = 1e-5 at worst); 2e-6 of it, plus 1e-4 sigma for the rounding of D itself */
                double tol = 2e-6 * (as + fabs(p.new_img.sci[i]) + fabs(bg)) / norm + 1e-4 * sqrt(vref);
                worst = fmax(worst, fabs(d.sci[i] - dref) / tol);
                /* float sums (1e-6 of VAR) and the kernel's outer rings left out of sum K^2 var_T: at most
                 * AL_VAR_TAIL sum K^2 times the largest var_T under the footprint */
                double sk2 = 0, vmax = 0;
                for (int v = -hw; v <= hw; v++)
                    for (int u = -hw; u <= hw; u++) {
                        sk2 += kk[(v + hw) * ks + u + hw] * kk[(v + hw) * ks + u + hw];
                        vmax = fmax(vmax, p.ref.var[(y - v) * w + x - u]);
                    }
                double vtol = 1e-6 * vref + AL_VAR_TAIL * sk2 * vmax / (norm * norm);
                worst_var = fmax(worst_var, fabs(d.var[i] - vref) / vtol);
                compared++;
            }
        printf("convolution: %zu pixels, worst %.3g of the tolerance, variance %.3g of its tolerance, NaN pattern mismatches %zu\n",
               compared, worst, worst_var, nan_mismatch);
        CHECK(compared > 1000);
        CHECK(worst <= 1.0);
        CHECK(worst_var <= 1.0);
        CHECK(nan_mismatch == 0);
        /* the kernel images are the solution's at their positions */
        al_ref_kernel(coef, rb, nbr, hw, a.kernel_order, a.kernel_x[4], a.kernel_y[4], w, h, kk);
        double ek = 0;
        for (int t = 0; t < nt; t++)
            ek = fmax(ek, fabs(a.kernel_images[4 * (size_t)nt + t] - kk[t]));
        CHECK(a.kernel_grid == 3 && a.ksize == (size_t)ks);
        CHECK(ek <= 1e-5 * kp);

        free(coef);
        free(kk);
        clred_image_free(&d);
        clred_al_result_free(&a);
    }
    free(k1);
    free(k2);
    free(k3);
    free(c_lib);
    free(c_ref);
    free(c_dev);
    free(dots);
    free(rdots);
    free(rb);
    al_basis_free(&b);
    clred_dimage_free(dn);
    clred_dimage_free(dr);
    clred_pair_free(&p);
}

/* Standard deviation of the usable values of the score. */
static double score_std(const clred_image *sc)
{
    double s = 0, s2 = 0;
    size_t n = 0;
    for (size_t i = 0; i < sc->width * sc->height; i++) {
        if (!isfinite(sc->sci[i]) || (sc->mask && (sc->mask[i] & (CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE))))
            continue;
        s += sc->sci[i];
        s2 += (double)sc->sci[i] * sc->sci[i];
        n++;
    }
    double m = s / (double)n;
    return sqrt(s2 / (double)n - m * m);
}

/* One 1-D DFT pass in double over n points, stride st, count lines of it
 * apart by dist: out[k] = sum_j in[j] e^{sign 2 pi i j k / n}. */
static void dft_lines(double complex *a, int n, size_t st, int count, size_t dist, int sign)
{
    double complex *w = malloc((size_t)n * sizeof *w), *t = malloc((size_t)n * sizeof *t);
    for (int m = 0; m < n; m++)
        w[m] = cexp(sign * 2.0 * M_PI * I * m / n);
    for (int c = 0; c < count; c++) {
        double complex *x = a + (size_t)c * dist;
        for (int k = 0; k < n; k++) {
            double complex acc = 0;
            for (int j = 0, q = 0; j < n; j++, q = q + k >= n ? q + k - n : q + k) /* q = j k mod n */
                acc += x[(size_t)j * st] * w[q];
            t[k] = acc;
        }
        for (int k = 0; k < n; k++)
            x[(size_t)k * st] = t[k];
    }
    free(w);
    free(t);
}

/* 2-D DFT of an nx x ny row-major grid (sign -1 forward, +1 inverse, unscaled). */
static void dft2(double complex *a, int nx, int ny, int sign)
{
    dft_lines(a, nx, 1, ny, (size_t)nx, sign);
    dft_lines(a, ny, (size_t)nx, nx, 1, sign);
}

/* A small centred image (odd size) around the origin of an nx x ny grid. */
static void wrap_small(const float *img, int size, int nx, int ny, double complex *g)
{
    int h = size / 2;
    memset(g, 0, (size_t)nx * ny * sizeof *g);
    for (int v = -h; v <= h; v++)
        for (int u = -h; u <= h; u++)
            g[(size_t)((v + ny) % ny) * nx + (size_t)((u + nx) % nx)] = img[(v + h) * size + u + h];
}

/* A (size^2, row v, column u) as gy(v) gx(u): the rank-1 term of its SVD
 * (power iteration), both positive at the centre, cut at the radius past
 * which both fall below 1e-4 of their largest, gx scaled so the product sums
 * to A's sum; taps outside the radius 0. Returns the radius. */
static int rank1_taps(const double *A, int size, double *gx, double *gy)
{
    int h = size / 2;
    double sum = 0, mx = 0, my = 0;
    for (int i = 0; i < size * size; i++)
        sum += A[i];
    for (int i = 0; i < size; i++)
        gx[i] = 1;
    for (int it = 0; it < 200; it++) {
        double ny2 = 0, nx2 = 0;
        for (int v = 0; v < size; v++) {
            gy[v] = 0;
            for (int u = 0; u < size; u++)
                gy[v] += A[v * size + u] * gx[u];
            ny2 += gy[v] * gy[v];
        }
        for (int v = 0; v < size; v++)
            gy[v] /= sqrt(ny2);
        for (int u = 0; u < size; u++) {
            gx[u] = 0;
            for (int v = 0; v < size; v++)
                gx[u] += A[v * size + u] * gy[v];
            nx2 += gx[u] * gx[u];
        }
        for (int u = 0; u < size; u++)
            gx[u] /= sqrt(nx2);
    }
    double sx = gx[h] < 0 ? -1 : 1, sy = gy[h] < 0 ? -1 : 1;
    for (int i = 0; i < size; i++) {
        gx[i] *= sx;
        gy[i] *= sy;
        mx = fmax(mx, fabs(gx[i]));
        my = fmax(my, fabs(gy[i]));
    }
    int r = 0;
    for (int t = 1; t <= h; t++)
        if (fabs(gx[h - t]) > 1e-4 * mx || fabs(gx[h + t]) > 1e-4 * mx || fabs(gy[h - t]) > 1e-4 * my ||
            fabs(gy[h + t]) > 1e-4 * my)
            r = t;
    double su = 0, sv = 0;
    for (int t = -h; t <= h; t++) {
        if (abs(t) > r)
            gx[h + t] = gy[h + t] = 0;
        su += gx[h + t];
        sv += gy[h + t];
    }
    for (int i = 0; i < size; i++)
        gx[i] *= sum / (su * sv);
    return r;
}

/* The decorrelation and the detection image (alard_lupton.c's fourier: the
 * padded grid, K at the centre, DMTN-021's phi, P' = P * phi, the matched
 * filter over the square root of its variance, VAR' correlated with P'^2's
 * separable approximation) in double with plain DFTs and sums, against the
 * device's DECORR and DETECT. */
static void fourier_against_reference(const clred_pair *p, const clred_al_result *a)
{
    const clred_psf *pin = a->convolved_ref ? &p->new_psf : &p->ref_psf;
    size_t w = p->new_img.width, h = p->new_img.height;
    int ks = (int)a->ksize, ps = (int)pin->size, g = a->kernel_grid;
    int pad = ks > ps ? ks : ps, nx = (int)clred_fft_good_size(w + (size_t)pad),
        ny = (int)clred_fft_good_size(h + (size_t)pad);
    const float *kc = a->kernel_images + (size_t)((g / 2) * g + g / 2) * ks * ks;
    CHECK(g % 2 == 1 && fabs(a->kernel_x[(g / 2) * g + g / 2] - 0.5 * (w - 1)) < 1e-9);
    clred_image d, dc, de;
    download(a->diff, &d);
    download(a->decorr, &dc);
    download(a->detect, &de);
    size_t n = (size_t)nx * ny;
    double complex *D = calloc(n, sizeof *D), *K = malloc(n * sizeof *K), *P = malloc(n * sizeof *P),
                   *F = malloc(n * sizeof *F);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            float v = d.sci[y * w + x];
            D[y * (size_t)nx + x] = isfinite(v) ? v : 0.0;
        }
    wrap_small(kc, ks, nx, ny, K);
    wrap_small(pin->data, ps, nx, ny, P);
    dft2(D, nx, ny, -1);
    dft2(K, nx, ny, -1);
    dft2(P, nx, ny, -1);
    double s2i = a->convolved_ref ? a->sigma_new * a->sigma_new : a->sigma_ref * a->sigma_ref;
    double s2t = a->convolved_ref ? a->sigma_ref * a->sigma_ref : a->sigma_new * a->sigma_new;
    for (size_t i = 0; i < n; i++) {
        double kk = creal(K[i]) * creal(K[i]) + cimag(K[i]) * cimag(K[i]);
        double phi = sqrt((s2i + a->ksum * a->ksum * s2t) / (s2i + kk * s2t));
        D[i] *= phi;
        P[i] *= phi;
        F[i] = D[i] * conj(P[i]);
    }
    dft2(D, nx, ny, 1);
    dft2(F, nx, ny, 1);
    dft2(P, nx, ny, 1);
    int ph = ps / 2;
    double *p2 = malloc((size_t)ps * ps * sizeof *p2), sp2 = 0;
    for (int v = -ph; v <= ph; v++)
        for (int u = -ph; u <= ph; u++) {
            double q = creal(P[(size_t)((v + ny) % ny) * nx + (size_t)((u + nx) % nx)]) / (double)n;
            p2[(v + ph) * ps + u + ph] = q * q;
            sp2 += q * q;
        }
    /* the filter's variance: VAR' less the sky's v0 (0 where D is not usable) correlated with gy(v) gx(u), P'^2's
     * rank-1 approximation cut where both fall below 1e-4 of their peaks and scaled to sum P'^2, plus v0 sum P'^2 */
    double *gx = malloc((size_t)ps * sizeof *gx), *gy = malloc((size_t)ps * sizeof *gy);
    int gr = rank1_taps(p2, ps, gx, gy);
    double v0 = (s2i + a->ksum * a->ksum * s2t) / (a->photnorm_scale * a->photnorm_scale);
    double *W = calloc(w * h, sizeof *W), *T = calloc(w * h, sizeof *T), *V = calloc(w * h, sizeof *V);
    for (size_t i = 0; i < w * h; i++)
        W[i] = isfinite(d.sci[i]) && dc.var[i] > 0 ? dc.var[i] - v0 : 0.0;
    for (long y = 0; y < (long)h; y++)
        for (long x = 0; x < (long)w; x++)
            for (int t = -gr; t <= gr; t++)
                if (x + t >= 0 && x + t < (long)w)
                    T[y * w + x] += gx[ph + t] * W[y * w + x + t];
    for (long y = 0; y < (long)h; y++)
        for (long x = 0; x < (long)w; x++) {
            for (int t = -gr; t <= gr; t++)
                if (y + t >= 0 && y + t < (long)h)
                    V[y * w + x] += gy[ph + t] * T[(y + t) * w + x];
            V[y * w + x] += v0 * sp2;
        }
    /* errors relative to the noise: D' has sigma ~ sqrt(VAR), DETECT is in sigma */
    double worst_d = 0, worst_s = 0;
    size_t nmis = 0, ncmp = 0;
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            size_t i = y * w + x, q = y * (size_t)nx + x;
            if (!isfinite(d.sci[i])) {
                nmis += isfinite(dc.sci[i]) || isfinite(de.sci[i]);
                continue;
            }
            double var = dc.var[i];
            if (!(var > 0))
                continue;
            double rd = creal(D[q]) / (double)n, rs = creal(F[q]) / (double)n / sqrt(V[i]);
            worst_d = fmax(worst_d, fabs(dc.sci[i] - rd) / sqrt(var));
            worst_s = fmax(worst_s, fabs(de.sci[i] - rs));
            ncmp++;
        }
    printf("decorrelation vs double DFTs (%d x %d grid, %zu px): DECORR worst %.3g sigma, DETECT worst %.3g sigma, "
           "%zu NaN mismatches\n",
           nx, ny, ncmp, worst_d, worst_s, nmis);
    /* float spectra and transforms over ~1e5 points: errors of order 1e-7 (float epsilon) times log2 of the
     * points times the largest |D| (bright stars' residuals, tens of sigma): ~1e-5 sigma at most; measured
     * 1.3e-6. s2t off by 1 % in phi moved DECORR by 4e-4 sigma, P^ unconjugated moved DETECT by 2e-3 sigma. */
    CHECK(ncmp > w * h / 2);
    CHECK(worst_d <= 1e-4);
    CHECK(worst_s <= 1e-4);
    CHECK(nmis == 0);
    free(D);
    free(K);
    free(P);
    free(F);
    free(W);
    free(T);
    free(V);
    free(gx);
    free(gy);
    free(p2);
    clred_image_free(&d);
    clred_image_free(&dc);
    clred_image_free(&de);
}

static double poly_at(const double *c, int nt, double xs, double ys)
{
    double p[6] = {1, xs, ys, xs * xs, xs * ys, ys * ys}, v = 0;
    for (int u = 0; u < nt; u++)
        v += c[u] * p[u];
    return v;
}

/* The sky re-fit (alard_lupton.c refit_sky) in double from the difference
 * before it (D as returned plus what it took off): the samples, their
 * source mask on |D / sigma|, the cells' clipped medians, the polynomial by
 * least squares (normal equations, Gaussian elimination), AL_SKY_ROUNDS
 * rounds. Returns the polynomial's terms in delta (bg_order 1: 3). */
static void sky_refit_ref(const clred_image *d, const double *taken, int nt, double fwhm, double *delta)
{
    size_t w = d->width, h = d->height;
    int step = (int)floor(sqrt((double)(w * h) / AL_SKY_SAMPLES));
    step = step < 1 ? 1 : step;
    int nsx = (int)(w / (size_t)step), nsy = (int)(h / (size_t)step), reach = (int)ceil(AL_SKY_REACH * fwhm);
    int cells = nt == 1 ? 1 : AL_SKY_CELLS;
    double *pre = malloc(w * h * sizeof *pre), *cur = malloc(w * h * sizeof *cur), *vals = malloc((size_t)nsx * nsy * sizeof *vals);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
            pre[y * w + x] = d->sci[y * w + x] + poly_at(taken, nt, 2.0 * x / (w - 1) - 1, 2.0 * y / (h - 1) - 1);
    for (int u = 0; u < 6; u++)
        delta[u] = 0;
    for (int round = 0; round < AL_SKY_ROUNDS; round++) {
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++) {
                double dl = poly_at(delta, nt, 2.0 * x / (w - 1) - 1, 2.0 * y / (h - 1) - 1);
                cur[y * w + x] = (pre[y * w + x] - dl) / sqrt(d->var[y * w + x]);
            }
        double lev[AL_SKY_CELLS * AL_SKY_CELLS], cx[AL_SKY_CELLS * AL_SKY_CELLS], cy[AL_SKY_CELLS * AL_SKY_CELLS],
            cw[AL_SKY_CELLS * AL_SKY_CELLS];
        int ncell = 0;
        for (int cj = 0; cj < cells; cj++)
            for (int ci = 0; ci < cells; ci++) {
                int i0 = ci * nsx / cells, i1 = (ci + 1) * nsx / cells, j0 = cj * nsy / cells, j1 = (cj + 1) * nsy / cells;
                size_t n = 0;
                for (int j = j0; j < j1; j++)
                    for (int i = i0; i < i1; i++) {
                        int x = i * step + step / 2, y = j * step + step / 2, ok = 1;
                        size_t o = (size_t)y * w + (size_t)x;
                        if (!isfinite(pre[o]) || (d->mask[o] & (CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE)))
                            continue;
                        for (int yy = y - reach < 0 ? 0 : y - reach; yy <= y + reach && yy < (int)h && ok; yy += 2)
                            for (int xx = x - reach < 0 ? 0 : x - reach; xx <= x + reach && xx < (int)w; xx += 2)
                                if (fabs(cur[(size_t)yy * w + (size_t)xx]) > AL_SKY_SCORE) {
                                    ok = 0;
                                    break;
                                }
                        if (ok)
                            vals[n++] = pre[o] - poly_at(delta, nt, 2.0 * x / (w - 1) - 1, 2.0 * y / (h - 1) - 1);
                    }
                if (n < AL_SKY_MIN_SAMPLES)
                    continue;
                double med = stats_ref_median(vals, n), *dev = malloc(n * sizeof *dev);
                for (size_t k = 0; k < n; k++)
                    dev[k] = fabs(vals[k] - med);
                double lim = 3.0 * 1.4826 * stats_ref_median(dev, n);
                size_t m = 0;
                for (size_t k = 0; k < n; k++)
                    if (fabs(vals[k] - med) <= lim)
                        dev[m++] = vals[k];
                lev[ncell] = m > n / 2 ? stats_ref_median(dev, m) : med;
                free(dev);
                cx[ncell] = 0.5 * (i0 + i1) * step;
                cy[ncell] = 0.5 * (j0 + j1) * step;
                cw[ncell] = (double)n;
                ncell++;
            }
        int k = nt;
        while (k > 1 && ncell < 2 * k)
            k = k == 6 ? 3 : 1;
        double a[6][7] = {{0}};
        for (int c = 0; c < ncell; c++) {
            double xs = 2.0 * cx[c] / (w - 1) - 1, ys = 2.0 * cy[c] / (h - 1) - 1, p[6] = {1, xs, ys, xs * xs, xs * ys, ys * ys};
            for (int u = 0; u < k; u++) {
                a[u][k] += cw[c] * p[u] * lev[c];
                for (int v = 0; v < k; v++)
                    a[u][v] += cw[c] * p[u] * p[v];
            }
        }
        for (int u = 0; u < k; u++)
            for (int r = u + 1; r < k; r++) {
                double f = a[r][u] / a[u][u];
                for (int v = u; v <= k; v++)
                    a[r][v] -= f * a[u][v];
            }
        for (int u = k - 1; u >= 0; u--) {
            double v = a[u][k];
            for (int q = u + 1; q < k; q++)
                v -= a[u][q] * a[q][k];
            a[u][k] = v / a[u][u];
            delta[u] += a[u][k];
        }
    }
    free(pre);
    free(cur);
    free(vals);
}

/* Sky: stars only (they make the stamps; their residuals count with their
 * own photon noise in VAR); D / sigma of the decorrelated difference over
 * every usable pixel. */
static void sky(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.ngalaxies = po.ntransients = po.ncosmics = po.nsaturated = 0;
    po.nstars = 50;
    po.seed = 5;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_al_opts o = clred_al_defaults();
    o.decorrelate = 1;
    clred_al_result a;
    CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a));
    clred_image sc;
    download(a.score, &sc);
    double s1 = score_std(&sc);
    printf("sky: std of decorrelated D / sigma %.4f (robust %.4f), ksum %.4f, %zu of %zu stamps, PSF FWHM %.2f -> %.2f\n",
           s1, a.score_std, a.ksum, a.nstamps_used, a.nstamps, p.new_psf.fwhm, a.psf_diff.fwhm);
    CHECK_NEAR(s1, 1.0, 0.05);
    /* the sky re-fit against sky_refit_ref from the difference before it: the samples it kept differ at
     * most where float and double put |D / sigma| on either side of AL_SKY_SCORE, which moves a cell's
     * median by ~1e-4 sigma; the polynomial's terms agree to 1e-3 sigma of D */
    clred_image dd;
    download(a.diff, &dd);
    int nt = (a.bg_order + 1) * (a.bg_order + 2) / 2;
    double dref[6], sig = sqrt(a.sigma_new * a.sigma_new + a.sigma_ref * a.sigma_ref), esky = 0;
    sky_refit_ref(&dd, a.sky_refit, nt, a.convolved_ref ? p.new_psf.fwhm : p.ref_psf.fwhm, dref);
    for (int u = 0; u < 6; u++)
        esky = fmax(esky, fabs(dref[u] - a.sky_refit[u]) / sig);
    printf("sky re-fit: %.4f %+.4f xs %+.4f ys taken off D, the reference's differ by %.2g sigma at most\n",
           a.sky_refit[0], a.sky_refit[1], a.sky_refit[2], esky);
    CHECK(esky <= 1e-3);
    CHECK(a.sky_refit[0] != 0.0);
    clred_image_free(&dd);
    CHECK(a.decorr != NULL);
    if (a.decorr)
        fourier_against_reference(&p, &a);
    clred_image_free(&sc);
    clred_al_result_free(&a);
    clred_pair_free(&p);
}

/* The flags clred subtract sets after finding AL's candidates (difference.c):
 * BRIGHT in saturated stars' wings, then KERNEL where the kernel fit's own
 * error explains the score; the false candidates counted are then those a
 * broker keeps, as tests/sweep_pairs counts them. */
static void flag_as_subtract(const clred_pair *p, const clred_al_result *a, clred_candidate *c, size_t nc)
{
    CHECK_OK(clred_candidates_bright(&p->new_img, &p->new_psf, c, nc));
    CHECK_OK(clred_al_candidates_kernel(a, &p->new_img, &p->ref, 5.0, c, nc));
}

/* Candidates against the truth (as test_zogy's with_sources). */
static void with_sources(clred_ctx *ctx, uint64_t seed, double ref_fwhm, double new_fwhm, clred_psf_kind kind,
                         int expect_conv_ref)
{
    clred_pair_opts po = pair_sources_opts(seed, kind, ref_fwhm, new_fwhm);
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_al_opts o = clred_al_defaults();
    o.decorrelate = 1;
    o.normalize = CLRED_AL_NORM_NEW; /* fluxes in the new image's e-, as the truth */
    clred_al_result a;
    CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a));
    CHECK(a.convolved_ref == expect_conv_ref);
    clred_candidate *c = NULL;
    size_t nc = 0;
    CHECK_OK(clred_find_candidates_dev(ctx, a.detect, a.decorr, &a.psf_diff, NULL, &c, &nc));
    flag_as_subtract(&p, &a, c, nc);
    clred_image sc;
    download(a.score, &sc);
    pair_score r = pair_score_candidates(&p, c, nc, &sc, CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE, "D/sigma");
    printf("seed %llu fwhm %.1f -> %.1f (%s convolved, ksum %.4f, %zu of %zu stamps, orders %d/%d): %zu candidates, "
           "completeness %zu / %zu at S/N >= 8, fading %zu / %zu negative, %zu unmatched, flux pull %.2f +- %.2f over "
           "%zu\n",
           (unsigned long long)seed, ref_fwhm, new_fwhm, a.convolved_ref ? "reference" : "new image", a.ksum,
           a.nstamps_used, a.nstamps, a.kernel_order, a.bg_order, nc, r.found, r.bright, r.fading_neg, r.fading,
           r.false_pos, r.pull_mean, r.pull_sd, r.used);
    CHECK(r.bright >= 20);
    CHECK((double)r.found >= 0.95 * (double)r.bright);
    CHECK(r.fading_neg == r.fading);
    CHECK(r.used >= 15);
    CHECK(fabs(r.pull_mean) <= 3.0 * r.pull_sd / sqrt((double)r.used) + 0.1);
    CHECK(r.pull_sd > 0.6 && r.pull_sd < 1.6);
    /* One PSF over the field: the cross-validated spatial order is 0 (an
     * order fitted to these ~20 stamps followed the Moffat wings star by star
     * and left 21 false candidates around bright stars in seed 3). The false
     * positives are DMTN-006's Gaussian-noise expectation's, as for ZOGY:
     * the stamps' differential background left D's sky 0.05-0.15 sigma low,
     * and DETECT 0.4-1 sigma low, which made fading candidates of noise near
     * -5 and pushed a saturated star's wing past +5; it is re-fitted on D's
     * own sky (clred_al_opts.sky_refit). Seeds 1-20 (tests/sweep_pairs, run
     * by hand): 9 clean false candidates in 6 images before that, 3 in 3
     * after; since candidates are matched by their PSF-fitted position's
     * error (pair_truth.c), 2 in 2 (0.42 expected, ZOGY 1): seed 12's -5.4
     * of noise 11 px from a fading transient (S/N 36), which ZOGY finds too,
     * and seed 16's 5.1 in empty sky. At |DETECT| >= 4, where the count is
     * 70 times larger, the same seeds give 30 clean false candidates against
     * DMTN-006's 30.4 (ZOGY 40): AL's false positives are Gaussian noise's,
     * and 2 where 0.42 are expected happens 7 % of the time (Poisson). Since
     * the pair renders the whole Moffat (simulate_pair.c), 4 in 4 at 5 (ZOGY
     * 1): seeds 5 and 13 add a 5.1-6.0 peak 15-20 px from a saturated star,
     * the ring just outside its grown mask where the reference's wings,
     * convolved, fall short of the new image's (pair_truth.c's sky check).
     * With stamps as the brightest source of their box (pick_stamps), 5 in 5:
     * this seed's is a 5.0 peak 12-15 px from a 30 000 e- star, in that ring.
     * AL's rate at 5 is thus short of DMTN-006's 3x (1.27 in 20 images) by
     * the Moffat wings a compact kernel cannot make; one image's 3x (0.06)
     * would forbid even one peak of noise, so the bound here is one. The
     * Gaussian 4.0 -> 3.0 pair: 0 at 5 (0.73 expected), 27 at 4 (52.6).
     * Below 5 sigma, peaks past 4 within 12 px of stars: 21
     * with DETECT over the centre pixel's variance, 14 over the filter's own
     * (5.9 expected). The stars' residual shifts are 0.003 px (57 isolated
     * stars, noise taken off): an astrometric variance term adds nothing.
     * The lobes in bright stars' wings were not the kernel's reach, though:
     * stamps holding one of the 45 transients (a fading one, on a galaxy,
     * even chosen as a stamp's source) bent the kernel's wings (seed 26:
     * kernel centroid 0.054 px, sum 1.0049; without transients 0.009 px,
     * 0.9978, and its -7.8 lobe gone), and the chi^2-per-pixel rule kept
     * them. Judged by the chi^2 test with the fit's common model error
     * (al_stamp_outliers), with BRIGHT and KERNEL flagged as clred subtract
     * flags them: seeds 1-20 2 -> 1 clean false (seed 16's 5.1 in empty
     * sky), 21-60 3 -> 0, completeness 668 / 669 and 1349 -> 1350 / 1358. */
    double expect = pair_expected_false(sc.width, sc.height, a.psf_diff.fwhm, 5.0);
    printf("  %zu false candidates without a flag (expected %.2g)\n", r.false_clean, expect);
    CHECK(a.kernel_order == 0);
    CHECK(r.false_clean <= 1);
    pair_check_sky(&p, a.diff, "AL D");
    free(c);
    clred_image_free(&sc);
    clred_al_result_free(&a);
    clred_pair_free(&p);
}

/* Transients beside bright stars are still found: DETECT's variance holds
 * the stars' source noise under the filter (alard_lupton.c's
 * detect_variance), which lowers a lobe's significance there and would lower
 * a real source's as much if it were overdone. Point sources of S/N 20 (in
 * the sky's noise) 6 px from the brightest isolated unsaturated stars of
 * seed 3's pair: over seeds 1-20, 167 of 174 such sources were found, as
 * many as with the centre pixel's variance. */
/* Adds a point source of this flux with the stamp ps centred on pixel (cx, cy)
 * to img, with its Poisson noise (rng: a 64-bit LCG state). */
static void inject_point(clred_image *img, const clred_psf *ps, double flux, int cx, int cy, uint64_t *rng)
{
    int W = (int)img->width, H = (int)img->height, ph = (int)ps->size / 2;
    for (int j = -ph; j <= ph; j++)
        for (int i = -ph; i <= ph; i++) {
            size_t q = (size_t)(cy + j) * W + (size_t)(cx + i);
            if (cx + i < 0 || cy + j < 0 || cx + i >= W || cy + j >= H)
                continue;
            double f = flux * ps->data[(size_t)(j + ph) * ps->size + (size_t)(i + ph)], u[2];
            for (int k = 0; k < 2; k++) {
                *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
                u[k] = ((double)(*rng >> 11) + 0.5) / 9007199254740992.0;
            }
            double g = sqrt(-2 * log(u[0])) * cos(2 * M_PI * u[1]);
            img->sci[q] += (float)(f + g * sqrt(f));
            img->var[q] += (float)f;
        }
}

/* A pixel of a saturated star in img: the first in raster order (-1, -1 without one). */
static void first_saturated(const clred_image *img, int *sx, int *sy)
{
    *sx = *sy = -1;
    for (size_t q = 0; q < img->width * img->height && *sx < 0; q++)
        if (img->mask[q] & CLRED_MASK_SATURATED)
            *sx = (int)(q % img->width), *sy = (int)(q / img->width);
}

static void near_stars(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.seed = 3;
    po.ntransients = 0;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    const clred_psf *ps = &p.new_psf;
    int W = (int)p.ref.width, H = (int)p.ref.height;
    double sp2 = 0;
    for (size_t i = 0; i < ps->size * ps->size; i++)
        sp2 += (double)ps->data[i] * ps->data[i];
    double flux = 20.0 * sqrt(po.sky + po.readnoise * po.readnoise) / sqrt(sp2);
    enum { MAXI = 8 };
    double ix[MAXI], iy[MAXI];
    int ninj = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int y = 30; y < H - 30 && ninj < MAXI; y++)
        for (int x = 30; x < W - 30 && ninj < MAXI; x++) {
            float v = p.ref.sci[(size_t)y * W + x] - (float)po.sky;
            if (!(v > 2000 && v < 40000))
                continue;
            int peak = 1; /* the brightest within 12 px, nothing unusable there */
            for (int dy = -12; dy <= 12 && peak; dy++)
                for (int dx = -12; dx <= 12 && peak; dx++) {
                    size_t q = (size_t)(y + dy) * W + (size_t)(x + dx);
                    peak = (!dx && !dy) || (p.ref.sci[q] - (float)po.sky <= v && !p.ref.mask[q] && !p.new_img.mask[q]);
                }
            if (!peak)
                continue;
            double a = 2.4 * ninj; /* directions spread round the stars */
            int cx = x + (int)lround(6 * cos(a)), cy = y + (int)lround(6 * sin(a));
            inject_point(&p.new_img, ps, flux, cx, cy, &rng);
            ix[ninj] = cx;
            iy[ninj] = cy;
            ninj++;
        }
    /* And one in a saturated star's wing ring, 22 px from it toward the
     * image's centre (past AL's grown mask, inside the ring the BRIGHT flag
     * marks): found, and reported with the flag. */
    int sx, sy;
    first_saturated(&p.new_img, &sx, &sy);
    CHECK(sx >= 0);
    double ang = atan2(0.5 * H - sy, 0.5 * W - sx);
    int wx = sx + (int)lround(22 * cos(ang)), wy = sy + (int)lround(22 * sin(ang));
    inject_point(&p.new_img, ps, flux, wx, wy, &rng);
    clred_al_opts o = clred_al_defaults();
    o.decorrelate = 1;
    clred_al_result a;
    CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a));
    clred_candidate *c = NULL;
    size_t nc = 0;
    CHECK_OK(clred_find_candidates_dev(ctx, a.detect, a.decorr, &a.psf_diff, NULL, &c, &nc));
    CHECK_OK(clred_candidates_bright(&p.new_img, &p.new_psf, c, nc));
    CHECK(a.kernel_error != NULL);
    CHECK_OK(clred_al_candidates_kernel(&a, &p.new_img, &p.ref, 5.0, c, nc));
    int found = 0, flagged = 0, kflagged = 0;
    for (int q = 0; q < ninj; q++) {
        int hit = 0, bright = 0, kern = 0;
        for (size_t k = 0; k < nc; k++)
            if (hypot(c[k].x - ix[q], c[k].y - iy[q]) <= 2 && c[k].score >= 5) {
                hit = 1;
                bright |= (c[k].flags & CLRED_CAND_BRIGHT) != 0;
                kern |= (c[k].flags & CLRED_CAND_KERNEL) != 0;
            }
        found += hit;
        flagged += bright;
        kflagged += kern;
    }
    printf("beside stars: %d of %d S/N-20 sources 6 px from bright stars found, %d flagged BRIGHT, %d KERNEL\n",
           found, ninj, flagged, kflagged);
    CHECK(ninj == MAXI);
    CHECK(found >= ninj - 1);
    /* Beside an unsaturated star the BRIGHT flag stays off: it follows the
     * saturated stars' wings only (these 8 lie 68 px or more from one). */
    CHECK(flagged == 0);
    /* Nor is KERNEL set on sources well above the threshold: at S/N 20 it
     * takes the kernel fit's error at the source to reach sqrt((20 / 5)^2 -
     * 1) = 3.9 sigma of DETECT; what it does flag are peaks near 5. */
    CHECK(kflagged == 0);
    int wing_hit = 0;
    for (size_t k = 0; k < nc; k++)
        if (hypot(c[k].x - wx, c[k].y - wy) <= 2 && c[k].score >= 5)
            wing_hit = 1 + ((c[k].flags & CLRED_CAND_BRIGHT) != 0);
    printf("in a saturated star's wings (%d, %d): %s\n", wx, wy,
           wing_hit == 2 ? "found, flagged BRIGHT" : wing_hit ? "found, not flagged" : "missed");
    CHECK(wing_hit == 2);
    free(c);
    clred_al_result_free(&a);
    clred_pair_free(&p);
}

/* A PSF that changes over the field (Moffat, FWHM +30 % across x and +15 %
 * across y, both images), with the template's holes: the cross-validation
 * keeps a varying kernel, and the stamps cover the field. A hole or the
 * border in a stamp's footprint used to cost the whole stamp: 12 of 31 were
 * left, none near the edges, and the kernel extrapolated there left 17
 * false candidates at bright stars. Now such pixels only weigh out the
 * fitted pixels they reach. The stamps were still what limited the kernel
 * (its order-1 model has 148 unknowns): 16 of this seed's ~80 stars were
 * used; a stamp is now the brightest source of its box (a neighbour of
 * half its flux no longer drops it) and only its peak (half the FWHM, not
 * the whole) must be clean: 28 used. Seeds 1-16 run once outside CI
 * (tests/sweep_al_varying): 128 clean false candidates before the
 * weighting, 21 before the stamp rules, 13 after (0 to 3 an image, 0 in
 * this seed), still above DMTN-006's 3x (0.02 per image); the one-PSF
 * pair of the same seeds has 2. What is left are lobes 8-12 px from the
 * brightest stars and, most of it, the wings of saturated stars just past
 * their grown masks (with 20 transients and no holes, where the stamp
 * rules change nothing, 10 -> 11, 10 of the 11): a 5e6 e- star shows a
 * kernel centroid error of 0.02 px, what the order-1 model's 148 unknowns
 * leave from 20-30 stamps (its kernel grid's centroids wander by that in
 * seed 8, whose PSFs are symmetric). The same sweep with 200 stars (45-50
 * stamps) has 2 in 8 images: the fit is short of stamps, not of spatial
 * order (order 2, a ridge on the spatial terms, a spatial order per
 * Gaussian or the varying part restricted to the stamps' principal kernel
 * directions did no better by the sweep). The bounds guard the stamps'
 * gain and this seed's 0, not that goal. */
static void varying_psf(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.seed = 3;
    po.fwhm_grad_x = 0.3;
    po.fwhm_grad_y = 0.15;
    po.ntransients = 45;
    po.nholes = 6;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_al_opts o = clred_al_defaults();
    o.decorrelate = 1;
    o.normalize = CLRED_AL_NORM_NEW;
    clred_al_result a;
    CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a));
    clred_candidate *c = NULL;
    size_t nc = 0;
    CHECK_OK(clred_find_candidates_dev(ctx, a.detect, a.decorr, &a.psf_diff, NULL, &c, &nc));
    flag_as_subtract(&p, &a, c, nc);
    clred_image sc;
    download(a.score, &sc);
    pair_score r = pair_score_candidates(&p, c, nc, &sc, CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE, "D/sigma");
    double expect = pair_expected_false(sc.width, sc.height, a.psf_diff.fwhm, 5.0);
    printf("FWHM gradient 0.3, 0.15: kernel order %d from %zu of %zu stamps, completeness %zu / %zu at S/N >= 8, "
           "fading %zu / %zu negative, %zu false candidates without a flag (expected %.2g)\n",
           a.kernel_order, a.nstamps_used, a.nstamps, r.found, r.bright, r.fading_neg, r.fading, r.false_clean, expect);
    CHECK(a.kernel_order >= 1);
    /* 12, then 16 before, 28 after the stamp rules; then the chi^2 test
     * with the fit's model error (al_stamp_outliers) dropped the stamps whose
     * boxes hold one of the 45 transients, a third of them in this crowded
     * field: 15, with completeness and false candidates as before (the
     * sweep: 2 -> 1 clean false in 16 images). 13 leaves two stamps to
     * another device's rounding at the test's edge. */
    CHECK(a.nstamps_used >= 13);
    CHECK(r.bright >= 20);
    CHECK((double)r.found >= 0.95 * (double)r.bright);
    CHECK(r.fading_neg == r.fading);
    CHECK(r.false_clean <= 1); /* 0 here; 1 for another device's rounding */
    free(c);
    clred_image_free(&sc);
    clred_al_result_free(&a);
    clred_pair_free(&p);
}

/* A pair of pair_sources_opts' Moffat field (FWHM 3.5 -> 4.5 px) without template holes. */
static void moffat_pair(uint64_t seed, clred_pair *p)
{
    clred_pair_opts po = pair_sources_opts(seed, CLRED_PSF_MOFFAT, 3.5, 4.5);
    po.nholes = 0;
    CHECK_OK(clred_simulate_pair(&po, p));
}

/* The stamps' chi^2 per pixel through the whole subtraction when many of
 * their fitted pixels weigh 0: the same pair subtracted as drawn, then with
 * the new image's VAR NaN on every third column of the left half (the mask
 * clean, so the same stars are stamps, with a third of their pixels out
 * of the fit on the left, none on the right). Counted per stamp (nfit),
 * the kept stamps' mean chi^2 per pixel (fom) and how many are kept barely
 * move (here 0.904 and 0.908, 25 and 24 stamps of 49). Over the box's
 * pixel count, the left stamps' chi^2 per pixel reads a third low (fom so
 * computed: 0.877 and 0.714), and the chi^2 model's f0 is pulled down
 * between the two halves' so that right stamps drawn high go (the
 * rejection over the box's count kept 17). */
static void masked_weights(clred_ctx *ctx)
{
    clred_pair p;
    moffat_pair(5, &p);
    clred_al_opts o = clred_al_defaults();
    o.omit_planes = CLRED_AL_WRITE_CONV;
    clred_al_result a, b;
    CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a));
    CHECK(a.convolved_ref == 1); /* the new image is I, whose VAR weighs the fitted pixels */
    size_t w = p.new_img.width, h = p.new_img.height;
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w / 2; x += 3)
            p.new_img.var[y * w + x] = NAN;
    CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &b));
    printf("masked weights: fom %.4f, %zu of %zu stamps kept; with a third of the left half's weights 0: fom %.4f, "
           "%zu of %zu kept\n",
           a.fom, a.nstamps_used, a.nstamps, b.fom, b.nstamps_used, b.nstamps);
    CHECK(a.nstamps == b.nstamps && a.nstamps_used >= 15);
    /* fom: a mean over ~25 stamps of chi^2 per pixel with a spread of
     * sqrt(2 / nu) ~ 6 % each, ~1.2 % for the mean, and the left stamps'
     * fit on other pixels; 5 % holds that and fails the box's 19 % */
    CHECK_NEAR(b.fom, a.fom, 0.05 * a.fom);
    /* a stamp or two may cross the threshold with the fit changed; the
     * box's count lost 8 */
    CHECK_MSG(b.nstamps_used + 3 >= a.nstamps_used, "%zu stamps kept of %zu, %zu with every weight", b.nstamps_used,
              b.nstamps, a.nstamps_used);
    clred_al_result_free(&a);
    clred_al_result_free(&b);
    clred_pair_free(&p);
}

/* A fit mask (CLRED_MASK_NOFIT, clred_al_opts.fit_ignore_bits) leaves its
 * pixels out of the kernel's fit exactly as unusable ones are left out (the
 * same stamps, the same kernel), but not out of the difference: the same
 * pair subtracted with a band of columns flagged BAD in both images, then
 * NOFIT. The levels are not estimated (subtract_background and sky_refit
 * off), since those count BAD pixels out and NOFIT ones in. */
static void fit_mask(clred_ctx *ctx)
{
    clred_pair p;
    moffat_pair(7, &p);
    size_t w = p.new_img.width, h = p.new_img.height, x0 = w / 3, x1 = w / 2;
    clred_al_opts o = clred_al_defaults();
    o.subtract_background = 0;
    o.sky_refit = 0;
    o.omit_planes = CLRED_AL_WRITE_CONV;
    clred_al_result all, bad, nofit;
    CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &all));
    uint16_t *keep_n = malloc(w * h * sizeof *keep_n), *keep_r = malloc(w * h * sizeof *keep_r);
    memcpy(keep_n, p.new_img.mask, w * h * sizeof *keep_n);
    memcpy(keep_r, p.ref.mask, w * h * sizeof *keep_r);
    clred_al_result *runs[2] = {&bad, &nofit};
    const uint16_t bits[2] = {CLRED_MASK_BAD, CLRED_MASK_NOFIT};
    for (int k = 0; k < 2; k++) {
        for (size_t y = 0; y < h; y++)
            for (size_t x = x0; x < x1; x++) {
                p.new_img.mask[y * w + x] = (uint16_t)(keep_n[y * w + x] | bits[k]);
                p.ref.mask[y * w + x] = (uint16_t)(keep_r[y * w + x] | bits[k]);
            }
        CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, runs[k]));
    }
    printf("fit mask: %zu of %zu stamps kept without it, %zu of %zu with the band BAD, %zu of %zu with it NOFIT; "
           "ksum %.6f, %.6f, %.6f\n",
           all.nstamps_used, all.nstamps, bad.nstamps_used, bad.nstamps, nofit.nstamps_used, nofit.nstamps, all.ksum,
           bad.ksum, nofit.ksum);
    /* the band took stars away from the stamps, the same ones either way */
    CHECK(bad.nstamps < all.nstamps && nofit.nstamps == bad.nstamps && nofit.nstamps_used == bad.nstamps_used);
    CHECK(nofit.kernel_order == bad.kernel_order && nofit.bg_order == bad.bg_order);
    /* the same fit: the same sums on the device, solved on the host in double */
    CHECK_NEAR(nofit.ksum, bad.ksum, 1e-9 * bad.ksum);
    double kd = 0, kp = 0;
    size_t nk = (size_t)bad.kernel_grid * bad.kernel_grid * bad.ksize * bad.ksize;
    for (size_t i = 0; nofit.kernel_grid == bad.kernel_grid && nofit.ksize == bad.ksize && i < nk; i++) {
        kd = fmax(kd, fabs((double)nofit.kernel_images[i] - bad.kernel_images[i]));
        kp = fmax(kp, fabs((double)bad.kernel_images[i]));
    }
    CHECK_MSG(nofit.kernel_grid == bad.kernel_grid && nofit.ksize == bad.ksize && kd <= 1e-6 * kp,
              "kernel images differ by %g (peak %g)", kd, kp);
    /* the difference: NaN and NO_DATA over the BAD band, whole over the NOFIT one (inside it, past the
     * kernel's reach from its edges), with NOFIT in its mask */
    clred_image db, dn;
    CHECK_OK(clred_dimage_download(bad.diff, &db));
    CHECK_OK(clred_dimage_download(nofit.diff, &dn));
    size_t hw = bad.ksize / 2, nbad_nan = 0, nofit_nan = 0, nofit_flag = 0, inside = 0;
    for (size_t y = hw; y < h - hw; y++)
        for (size_t x = x0 + hw; x < x1 - hw; x++) {
            size_t i = y * w + x;
            if (keep_n[i] || keep_r[i])
                continue; /* the simulator's own flags */
            inside++;
            nbad_nan += !isfinite(db.sci[i]) && (db.mask[i] & CLRED_MASK_NO_DATA);
            nofit_nan += !isfinite(dn.sci[i]) || (dn.mask[i] & CLRED_MASK_UNUSABLE);
            nofit_flag += (dn.mask[i] & CLRED_MASK_NOFIT) != 0;
        }
    CHECK(inside > 1000);
    CHECK_MSG(nbad_nan == inside && nofit_nan == 0 && nofit_flag == inside,
              "%zu pixels in the band: %zu NaN with it BAD; %zu NaN or unusable, %zu NOFIT with it NOFIT", inside,
              nbad_nan, nofit_nan, nofit_flag);
    clred_image_free(&db);
    clred_image_free(&dn);
    free(keep_n);
    free(keep_r);
    clred_al_result_free(&all);
    clred_al_result_free(&bad);
    clred_al_result_free(&nofit);
    clred_pair_free(&p);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Stamps are chosen among the stars whose core is usable: with one stamp a
 * cell (max_stamps the grid's cells) and the new image NaN at the centre of
 * every star of the reference brighter than the median detection, each
 * cell's brightest star is dead, and the cell must take its next one: the
 * stamps chosen are then mostly used (the rejections are the chi^2's and
 * the kernel sum's); choosing the brightest and dropping it after left
 * most cells without a stamp. */
static void dead_cores(clred_ctx *ctx)
{
    clred_pair p;
    moffat_pair(9, &p);
    size_t w = p.new_img.width;
    clred_detect_opts d = clred_detect_defaults();
    d.fwhm = 3.5;
    clred_source *src = NULL;
    size_t n = 0;
    CHECK_OK(clred_detect_sources(ctx, &p.ref, NULL, NULL, NAN, 0.0, &d, &src, &n));
    double *flux = malloc((n ? n : 1) * sizeof *flux);
    for (size_t i = 0; i < n; i++)
        flux[i] = src[i].flux;
    qsort(flux, n, sizeof *flux, cmp_double);
    double median = n ? flux[n / 2] : 0;
    size_t dead = 0;
    for (size_t i = 0; i < n; i++)
        if (src[i].flux > median) {
            p.new_img.sci[(size_t)lround(src[i].y) * w + (size_t)lround(src[i].x)] = NAN;
            dead++;
        }
    clred_al_opts o = clred_al_defaults();
    o.omit_planes = CLRED_AL_WRITE_CONV;
    o.max_stamps = 16; /* a 4 x 4 grid on this pair: one stamp a cell */
    clred_al_result a;
    clred_status st = clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a);
    CHECK_MSG(st == CLRED_OK, "%zu of %zu stars' cores dead: %s", dead, n, st == CLRED_OK ? "" : clred_last_error());
    if (st == CLRED_OK) {
        printf("dead cores: %zu of %zu stars, %zu of %zu stamps used\n", dead, n, a.nstamps_used, a.nstamps);
        /* here 8 of 12 (4 cells have no usable star; the chi^2 and kernel-sum
         * rejections take a third, as on clean pairs); 3 of 16 when the dead
         * stars were chosen */
        CHECK_MSG(a.nstamps_used >= 6 && 2 * a.nstamps_used >= a.nstamps, "%zu of %zu stamps used", a.nstamps_used,
                  a.nstamps);
        clred_al_result_free(&a);
    }
    free(flux);
    free(src);
    clred_pair_free(&p);
}

static void bad_arguments(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.width = po.height = 96;
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    clred_al_result a;
    clred_image small;
    CHECK_OK(clred_image_alloc(&small, 90, 96, 0, 0));
    CHECK(clred_subtract_al(ctx, &small, &p.ref, &p.new_psf, &p.ref_psf, NULL, &a) == CLRED_ERR_INPUT);
    CHECK(clred_subtract_al(ctx, &p.new_img, &p.ref, NULL, NULL, NULL, &a) == CLRED_ERR_USAGE);
    clred_al_opts o = clred_al_defaults();
    o.kernel_order = 4;
    CHECK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a) == CLRED_ERR_USAGE);
    o = clred_al_defaults();
    o.half_width = 30; /* too large for 96 px */
    CHECK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a) == CLRED_ERR_INPUT);
    clred_image_free(&small);
    clred_pair_free(&p);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    if (!clred_fft_available(CLRED_FFT_DEFAULT)) {
        printf("SKIP: no FFT backend built in\n");
        clred_ctx_destroy(ctx);
        return 77;
    }
    against_reference(ctx);
    stamp_counts(ctx);
    sky(ctx);
    with_sources(ctx, 3, 3.5, 4.5, CLRED_PSF_MOFFAT, 1);  /* new image worse: the reference is convolved */
    with_sources(ctx, 4, 4.0, 3.0, CLRED_PSF_GAUSSIAN, 0); /* better: the new image is convolved */
    near_stars(ctx);
    varying_psf(ctx);
    masked_weights(ctx);
    fit_mask(ctx);
    dead_cores(ctx);
    bad_arguments(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
