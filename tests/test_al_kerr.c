/* Alard-Lupton's kernel-error model (host/steps/al_kerr.c, al_fit.c
 * al_kernel_covariance) against the double-precision definitions in
 * tests/reference/al_kerr_ref.c: the covariance of the kernel's unknowns,
 * DETECT's error from it at chosen pixels (with and without decorrelation,
 * near bright sources, masked and out-of-range pixels and the edge), the
 * CLRED_CAND_KERNEL flag that follows, and bad input. Host only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"
#include "al_kerr_ref.h"
#include "al_local_ref.h"
#include "harness.h"

static uint64_t rng = 88172645463325252ull;

static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(void) { return sqrt(-2.0 * log(uniform())) * cos(2.0 * M_PI * uniform()); }

/* A random positive definite n x n matrix: G G^T / m over m > n random columns. */
static void random_spd(int n, int m, double *a)
{
    double *g = malloc((size_t)n * m * sizeof *g);
    for (int i = 0; i < n * m; i++)
        g[i] = gauss();
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < m; k++)
                s += g[(size_t)i * m + k] * g[(size_t)j * m + k];
            a[(size_t)i * n + j] = s / m;
        }
    free(g);
}

static void covariance_case(void)
{
    enum { NB = 4, NV = NB + 2, NS = 30, KO = 1, BO = 1 };
    size_t w = 200, h = 150;
    double *dots = malloc((size_t)NS * NV * NV * sizeof *dots);
    int cx[NS], cy[NS], use[NS];
    for (int s = 0; s < NS; s++) {
        random_spd(NV, 3 * NV, dots + (size_t)s * NV * NV);
        cx[s] = (int)(uniform() * (double)w);
        cy[s] = (int)(uniform() * (double)h);
        use[s] = s % 7 != 3;
    }
    int nk = 1 + (NB - 1) * al_nterms(KO);
    double *cov = malloc((size_t)nk * nk * sizeof *cov), *ref = malloc((size_t)nk * nk * sizeof *ref);
    CHECK_OK(al_kernel_covariance(dots, NS, use, cx, cy, w, h, NB, KO, BO, cov));
    al_kerr_ref_covariance(dots, NS, use, cx, cy, w, h, NB, KO, BO, ref);
    double err = 0, big = 0;
    for (int i = 0; i < nk * nk; i++) {
        err = fmax(err, fabs(cov[i] - ref[i]));
        big = fmax(big, fabs(ref[i]));
    }
    printf("covariance: %d unknowns, max |C - C_ref| = %.2e of max |C_ref| %.3g\n", nk, err / big, big);
    /* The library solves the scaled system with AL_RIDGE (1e-6) on its unit
     * diagonal, the reference inverts the plain one: that moves the inverse by
     * about 1e-6 times the scaled matrix's condition number (tens to hundreds
     * for these random Gram matrices of 26 stamps), so 1e-3 of the largest
     * entry bounds it with room, while any wrong unknown's layout or
     * spatial factor changes entries by O(1). */
    CHECK_MSG(err <= 1e-3 * big, "covariance off by %.2e of its largest entry", err / big);
    free(dots);
    free(cov);
    free(ref);
}

/* A centred, unit-sum Gaussian of size x size. */
static void gaussian_image(int size, double sigma, double sum, float *img)
{
    int hh = size / 2;
    double s = 0;
    for (int j = -hh; j <= hh; j++)
        for (int i = -hh; i <= hh; i++)
            s += exp(-0.5 * (i * i + j * j) / (sigma * sigma));
    for (int j = -hh; j <= hh; j++)
        for (int i = -hh; i <= hh; i++)
            img[(size_t)(j + hh) * size + (size_t)(i + hh)] =
                (float)(sum * exp(-0.5 * (i * i + j * j) / (sigma * sigma)) / s);
}

typedef struct {
    long x, y;
    const char *what;
} point;

static void sigma_case(int decorrelated, int ko)
{
    enum { W = 90, H = 76, PSIZE = 11, KS = 11 };
    double sig[2] = {1.0, 2.2};
    int deg[2] = {2, 1};
    al_basis b;
    CHECK_OK(al_basis_build(2, sig, deg, KS / 2, &b));
    int nk = 1 + (b.nbasis - 1) * al_nterms(ko);
    double *cov = malloc((size_t)nk * nk * sizeof *cov);
    random_spd(nk, 2 * nk, cov);
    float pw[PSIZE * PSIZE], kimg[KS * KS];
    gaussian_image(PSIZE, 1.5, 1.0, pw);
    gaussian_image(KS, 1.3, 1.2, kimg);
    double s2i = 30, s2t = 10, ksum = 1.2, level = 100;
    al_kerr_frame f = {W, H, level, 1.2, 1.7, -1e30f, 10000.0f, CLRED_MASK_BAD};
    clred_al_kerr *k = NULL;
    CHECK_OK(al_kerr_create(&b, cov, ko, pw, PSIZE, kimg, s2i, s2t, ksum, decorrelated, &f, &k));
    if (!k) {
        al_basis_free(&b);
        free(cov);
        return;
    }
    /* T: sky, noise, stars (one above hi), a masked pixel and a NaN; VAR' random */
    clred_image t, dv;
    CHECK_OK(clred_image_alloc(&t, W, H, 0, 1));
    CHECK_OK(clred_image_alloc(&dv, W, H, 1, 0));
    double stars[4][3] = {{30, 30, 4e4}, {60, 45, 2.5e5}, {8, 70, 1e4}, {75, 12, 6e4}};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double v = level + 5 * gauss();
            for (int s = 0; s < 4; s++) {
                double r2 = (x - stars[s][0]) * (x - stars[s][0]) + (y - stars[s][1]) * (y - stars[s][1]);
                v += stars[s][2] * exp(-0.5 * r2 / 2.25) / (2 * M_PI * 2.25);
            }
            t.sci[(size_t)y * W + x] = (float)v;
            dv.var[(size_t)y * W + x] = (float)(20 + 20 * uniform());
        }
    t.mask[33 * W + 31] = CLRED_MASK_BAD;
    t.sci[28 * W + 29] = NAN;
    /* the reference's T: less the level where usable, 0 elsewhere */
    double *tr = malloc((size_t)W * H * sizeof *tr);
    int above = 0;
    for (size_t i = 0; i < (size_t)W * H; i++) {
        float v = t.sci[i];
        int ok = isfinite(v) && v <= f.hi && !(t.mask[i] & f.ignore);
        above += isfinite(v) && v > f.hi;
        tr[i] = ok ? (double)v - level : 0.0;
    }
    CHECK_MSG(above > 0, "the case should hold pixels above hi (%d)", above);
    /* the reference's g: P' through phi on the grid the reference builds, untrimmed */
    int gsize = decorrelated ? PSIZE + KS - 1 : PSIZE, off = (gsize - PSIZE) / 2;
    float *pad = calloc((size_t)gsize * gsize, sizeof *pad);
    double *g = malloc((size_t)gsize * gsize * sizeof *g), p2[PSIZE * PSIZE];
    for (int j = 0; j < PSIZE; j++)
        for (int i = 0; i < PSIZE; i++)
            pad[(size_t)(j + off) * gsize + (size_t)(i + off)] = pw[j * PSIZE + i];
    if (decorrelated)
        al_local_ref_decorrelate(pad, gsize, kimg, KS, s2i, s2t, ksum, 2 * (gsize + KS), g);
    else
        for (int i = 0; i < gsize * gsize; i++)
            g[i] = pad[i];
    for (int i = 0; i < PSIZE * PSIZE; i++)
        p2[i] = (double)pw[i] * pw[i];
    point pts[] = {{45, 38, "centre"},
                   {64, 45, "4 px from the brightest star"},
                   {30, 33, "beside the masked pixel"},
                   {57, 43, "beside the star above hi"},
                   {2, 3, "at the edge"},
                   {86, 70, "far corner"},
                   {12, 66, "near a faint star"}};
    int npts = (int)(sizeof pts / sizeof pts[0]);
    double *work = malloc(al_kerr_work_size(k) * sizeof *work), sref[16], cs, smin = INFINITY, smax = 0;
    for (int p = 0; p < npts; p++) {
        double s = al_kerr_sigma(k, &t, &dv, pts[p].x, pts[p].y, work);
        sref[p] = al_kerr_ref_sigma(b.images, b.nbasis, KS, ko, cov, g, gsize, p2, PSIZE, tr, dv.var, W, H, f.norm,
                                    f.scale, pts[p].x, pts[p].y, &cs);
        printf("order %d dec %d %-30s sigma %.6g  reference %.6g  (Cauchy-Schwarz bound %.3g)\n", ko, decorrelated,
               pts[p].what, s, sref[p], cs);
        /* The library convolves with the basis's float filters (1e-7
         * relative) and cuts g to the square holding all but AL_KERR_TAIL of
         * sum g^2, which moves sigma by at most sqrt(AL_KERR_TAIL) cs
         * (al_kerr_ref.h); for the reference, phi is built on a grid twice
         * as large (al_local's comparison finds 1e-7 of the peak). 1e-4
         * relative plus that bound covers these; a wrong orientation or
         * basis changes sigma by O(1). */
        double tol = 1e-4 * sref[p] + sqrt(AL_KERR_TAIL) * cs;
        CHECK_MSG(fabs(s - sref[p]) <= tol, "order %d dec %d, %s: sigma %.6g, reference %.6g (tolerance %.3g)", ko,
                  decorrelated, pts[p].what, s, sref[p], tol);
        smin = fmin(smin, sref[p]);
        smax = fmax(smax, sref[p]);
    }
    /* the case exercises the model: the bright star's neighbourhood stands far above the sky */
    CHECK_MSG(smax > 20 * smin, "sigma should range widely over the points (%.3g .. %.3g)", smin, smax);
    /* the flag: each point's score just above and just below thresh sqrt(1 + sigma^2) */
    double thresh = 5.0;
    clred_candidate c[32];
    memset(c, 0, sizeof c);
    for (int p = 0; p < npts; p++)
        for (int side = 0; side < 2; side++) {
            clred_candidate *q = &c[2 * p + side];
            q->x = (double)pts[p].x + 0.2;
            q->y = (double)pts[p].y - 0.3;
            q->score = (side ? -1.0 : 1.0) * thresh * sqrt(1 + sref[p] * sref[p]) * (side ? 1.01 : 0.99);
            q->flags = CLRED_CAND_DIPOLE;
        }
    CHECK_OK(al_kerr_flag(k, &t, &dv, thresh, c, (size_t)(2 * npts)));
    for (int p = 0; p < npts; p++) {
        CHECK_MSG(c[2 * p].flags == (CLRED_CAND_DIPOLE | CLRED_CAND_KERNEL), "dec %d, %s: score 0.99 x the bound "
                  "should be flagged (flags %u)", decorrelated, pts[p].what, c[2 * p].flags);
        CHECK_MSG(c[2 * p + 1].flags == CLRED_CAND_DIPOLE, "dec %d, %s: score 1.01 x the bound should not be "
                  "flagged (flags %u)", decorrelated, pts[p].what, c[2 * p + 1].flags);
    }
    free(work);
    free(pad);
    free(g);
    free(tr);
    clred_image_free(&t);
    clred_image_free(&dv);
    al_kerr_free(k);
    al_basis_free(&b);
    free(cov);
}

static void bad_input(void)
{
    clred_al_result r;
    memset(&r, 0, sizeof r);
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 8, 8, 0, 0));
    clred_candidate c;
    memset(&c, 0, sizeof c);
    c.score = 5.0;
    CHECK(clred_al_candidates_kernel(NULL, &img, &img, 5.0, &c, 1) == CLRED_ERR_USAGE);
    CHECK(clred_al_candidates_kernel(&r, &img, &img, 0.0, &c, 1) == CLRED_ERR_USAGE);
    CHECK(clred_al_candidates_kernel(&r, &img, NULL, 5.0, &c, 1) == CLRED_ERR_USAGE);
    /* no model (no PSFs): nothing flagged */
    CHECK_OK(clred_al_candidates_kernel(&r, &img, &img, 5.0, &c, 1));
    CHECK(c.flags == 0);
    clred_image_free(&img);
}

int main(void)
{
    covariance_case();
    sigma_case(0, 1);
    sigma_case(1, 1);
    sigma_case(1, 2); /* the offsets' monomials to degree 2 */
    bad_input();
    return harness_finish();
}
