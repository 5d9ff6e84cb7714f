/* PSF models and simulated pairs: an off-centre Gaussian array recentred
 * (centroid within 0.02 px of the centre, unit sum, FWHM within 3 %); a FITS
 * round trip; the model measured from a simulated image against the true PSF
 * (FWHM within 5 %, every pixel within 5 % of the peak: each star's sky is
 * the median of an annulus 21-27 px out, which the simulated field's other
 * stars and galaxies raise by 1-15 e- over the true 300, i.e. a few % of a
 * 21 x 21 stamp's flux, and the median of ~15 stamps has a noise of 1-2 %
 * of the peak per pixel; measured 4.2 %); simulated pairs are
 * deterministic, their truth S/N is what a PSF fit on the noiseless source
 * gives, and bad options are usage errors; the PSF model's error estimate
 * (clred_psf_model_error) and its wing profile (clred_psf_wing_error)
 * against the error injected into a model, computed in plain double
 * precision from the truth; a varying fit's leverage (clred_psf_leverage)
 * against leave-one-out refits in double; the paired comparison of two
 * models' held-out errors (clred_psf_paired_median) against a plain
 * reference; the variation of two models over the field as ZOGY's tiles
 * see it (clred_psf_pair_variation) against a double reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "psf_internal.h"

static void centroid(const clred_psf *p, double *cx, double *cy, double *sum)
{
    double sx = 0, sy = 0, s = 0;
    for (size_t j = 0; j < p->size; j++)
        for (size_t i = 0; i < p->size; i++) {
            double v = p->data[j * p->size + i];
            sx += v * (double)i;
            sy += v * (double)j;
            s += v;
        }
    *cx = sx / s;
    *cy = sy / s;
    *sum = s;
}

static void from_array(void)
{
    enum { N = 41 };
    float a[N * N];
    double sig = 2.0, x0 = 20.3, y0 = 19.6;
    for (int j = 0; j < N; j++)
        for (int i = 0; i < N; i++)
            a[j * N + i] = (float)exp(-0.5 * ((i - x0) * (i - x0) + (j - y0) * (j - y0)) / (sig * sig));
    clred_psf p;
    CHECK_OK(clred_psf_from_array(a, N, N, 25, &p));
    CHECK(p.size == 25);
    double cx, cy, s;
    centroid(&p, &cx, &cy, &s);
    CHECK_NEAR(s, 1.0, 1e-5);
    /* bicubic resampling of a 2 px sigma Gaussian moves its centroid by < 0.01 px */
    CHECK_NEAR(cx, 12.0, 0.02);
    CHECK_NEAR(cy, 12.0, 0.02);
    CHECK_NEAR(p.fwhm, 2.3548 * sig, 0.03 * 2.3548 * sig);
    CHECK(p.ellipticity < 0.02);

    const char *dir = harness_tmpdir("test_psf");
    char path[4096];
    snprintf(path, sizeof path, "%s/psf.fits", dir);
    /* written without a wing profile, read back without one */
    CHECK_OK(clred_psf_write(path, &p, 1));
    clred_psf q;
    CHECK_OK(clred_psf_read(path, 0, &q));
    CHECK(q.wing_ring_px == 0 && q.model_err == 0);
    clred_psf_free(&q);
    /* as a measured model's: the shape error kept as PSFERR, the wing profile
     * as PSFWRING and PSFWEn (a header card holds 12 significant digits:
     * 1e-12 of values below 0.004) */
    p.model_err = 0.0123;
    p.wing_ring_px = 1.0;
    for (int r = 0; r < CLRED_PSF_WING_RINGS; r++)
        p.wing_err[r] = r < 3 ? 0.0 : 0.004 / (r + 1);
    CHECK_OK(clred_psf_write(path, &p, 1));
    CHECK_OK(clred_psf_read(path, 0, &q));
    CHECK(q.size == p.size);
    CHECK_NEAR(q.model_err, 0.0123, 1e-12);
    CHECK(q.wing_ring_px == 1.0);
    for (int r = 0; r < CLRED_PSF_WING_RINGS; r++)
        CHECK_NEAR(q.wing_err[r], p.wing_err[r], 1e-14);
    double worst = 0;
    for (size_t i = 0; q.data && i < q.size * q.size; i++)
        worst = fmax(worst, fabs(q.data[i] - p.data[i]));
    CHECK(worst < 1e-7);
    clred_psf_free(&q);
    clred_psf_free(&p);

    /* even sizes of the largest cut, empty and non-finite arrays are refused */
    CHECK(clred_psf_from_array(a, N, N, 24, &p) == CLRED_ERR_USAGE);
    a[5] = NAN;
    CHECK(clred_psf_from_array(a, N, N, 25, &p) == CLRED_ERR_INPUT);
    float zero[9] = {0};
    CHECK(clred_psf_from_array(zero, 3, 3, 0, &p) == CLRED_ERR_INPUT);
}

static void measured(clred_ctx *ctx)
{
    clred_pair_opts po = clred_pair_defaults();
    po.seed = 9;
    po.nstars = 40;
    po.ntransients = 0;
    clred_pair pair;
    CHECK_OK(clred_simulate_pair(&po, &pair));
    clred_psf_opts o = clred_psf_defaults();
    o.size = 21;
    o.saturation = po.saturation;
    clred_psf m;
    CHECK_OK(clred_psf_model_measure(ctx, &pair.new_img, &o, &m));
    printf("measured PSF: %zu stars, FWHM %.3f (true %.3f), ellipticity %.3f\n", m.nstars, m.fwhm, pair.new_psf.fwhm,
           m.ellipticity);
    CHECK(m.nstars >= 5);
    CHECK_NEAR(m.fwhm, po.new_fwhm, 0.05 * po.new_fwhm);
    CHECK(m.ellipticity < 0.05);
    /* the true PSF's centre 21 x 21, renormalised, against the model */
    size_t ts = pair.new_psf.size, off = (ts - 21) / 2;
    double tsum = 0, peak = 0, worst = 0;
    for (size_t j = 0; j < 21; j++)
        for (size_t i = 0; i < 21; i++)
            tsum += pair.new_psf.data[(j + off) * ts + i + off];
    for (size_t j = 0; j < 21; j++)
        for (size_t i = 0; i < 21; i++) {
            double t = pair.new_psf.data[(j + off) * ts + i + off] / tsum;
            peak = fmax(peak, t);
            worst = fmax(worst, fabs(m.data[j * 21 + i] - t));
        }
    printf("measured PSF: largest pixel difference %.4f of the peak; peak %.5f (true %.5f)\n", worst / peak,
           m.data[10 * 21 + 10], pair.new_psf.data[(10 + off) * ts + 10 + off] / tsum);
    CHECK(worst <= 0.05 * peak);

    /* the device path gives the same model */
    clred_dimage *d;
    CHECK_OK(clred_dimage_upload(ctx, &pair.new_img, &d));
    clred_psf md;
    CHECK_OK(clred_psf_model_measure_dev(ctx, d, &o, &md));
    CHECK(md.size == m.size && md.nstars == m.nstars);
    double dd = 0;
    for (size_t i = 0; md.data && i < 21 * 21; i++)
        dd = fmax(dd, fabs(md.data[i] - m.data[i]));
    CHECK(dd < 1e-6);
    clred_psf_free(&md);
    clred_dimage_free(d);

    clred_psf_free(&m); /* the refused call below clears m first */
    o.size = 20;
    CHECK(clred_psf_model_measure(ctx, &pair.new_img, &o, &m) == CLRED_ERR_USAGE);
    clred_psf_free(&m);
    clred_pair_free(&pair);
}

static void pairs(void)
{
    clred_pair_opts po = clred_pair_defaults();
    po.width = 128;
    po.height = 96;
    po.nholes = 2;
    po.shift_x = 0.4;
    clred_pair a, b;
    CHECK_OK(clred_simulate_pair(&po, &a));
    CHECK_OK(clred_simulate_pair(&po, &b));
    size_t n = 128 * 96;
    CHECK(memcmp(a.new_img.sci, b.new_img.sci, n * sizeof(float)) == 0);
    CHECK(memcmp(a.ref.mask, b.ref.mask, n * sizeof(uint16_t)) == 0);
    CHECK(a.ntransients == b.ntransients && a.ntransients > 0);
    /* The truth S/N: a PSF fit of the noiseless source in the new image's
     * background noise is |flux| sqrt(sum P^2) / sigma, P the whole profile
     * (the images hold it all; flux is the source's total). The stamp handed
     * out is its core scaled to unit sum, so P = stamp * f, f the core's
     * share of the flux: at most 1, at least the share inside the circle the
     * stamp holds, 1 - (1 + R^2 / a^2)^(1 - beta) for the Moffat (R the
     * stamp's half size, a its scale), 0.9968 here. */
    double sp2 = 0, sig = sqrt(po.sky + po.readnoise * po.readnoise);
    for (size_t i = 0; i < a.new_psf.size * a.new_psf.size; i++)
        sp2 += (double)a.new_psf.data[i] * a.new_psf.data[i];
    double R = (double)(a.new_psf.size / 2), am = po.new_fwhm / (2.0 * sqrt(pow(2.0, 1.0 / po.moffat_beta) - 1.0));
    double fmin_core = 1.0 - pow(1.0 + R * R / (am * am), 1.0 - po.moffat_beta);
    for (size_t k = 0; k < a.ntransients; k++) {
        double stamp_snr = fabs(a.transients[k].flux) * sqrt(sp2) / sig;
        CHECK_MSG(a.transients[k].snr <= stamp_snr * (1 + 1e-9) && a.transients[k].snr >= fmin_core * stamp_snr,
                  "transient %zu: S/N %.6f, the stamp's %.6f (core share at least %.4f)", k, a.transients[k].snr,
                  stamp_snr, fmin_core);
    }
    /* the reference is ref_depth times deeper; the holes are NaN and NO_DATA */
    size_t h = (size_t)lround(a.hole_xy[1]) * 128 + (size_t)lround(a.hole_xy[0]);
    CHECK(isnan(a.ref.sci[h]) && (a.ref.mask[h] & CLRED_MASK_NO_DATA));
    CHECK_NEAR(a.ref.var[5 * 128 + 64] * po.ref_depth, a.new_img.var[5 * 128 + 64], 0.2 * a.new_img.var[5 * 128 + 64]);
    size_t ncr = 0;
    for (size_t i = 0; i < n; i++)
        ncr += (a.new_img.mask[i] & CLRED_MASK_COSMIC_RAY) != 0;
    CHECK(ncr >= (size_t)po.ncosmics);
    clred_pair_free(&a);
    clred_pair_free(&b);

    po.ref_fwhm = 0.5;
    CHECK(clred_simulate_pair(&po, &a) == CLRED_ERR_USAGE);
    po = clred_pair_defaults();
    po.nsaturated = po.nstars + 1;
    CHECK(clred_simulate_pair(&po, &a) == CLRED_ERR_USAGE);
}

/* A 25 x 25 unit-sum Moffat (beta 3, FWHM 4 px) into t, plus a fraction mix
 * of a Gaussian of sigma 4 px (wider wings), renormalised. */
#define ME_N 25
static void moffat_stamp(double mix, double *t)
{
    double alpha = 4.0 / (2.0 * sqrt(pow(2.0, 1.0 / 3.0) - 1.0)), s = 0, sg = 0;
    double g[ME_N * ME_N];
    for (int y = 0; y < ME_N; y++)
        for (int x = 0; x < ME_N; x++) {
            double r2 = (x - 12) * (x - 12) + (y - 12) * (y - 12);
            t[y * ME_N + x] = pow(1.0 + r2 / (alpha * alpha), -3.0);
            g[y * ME_N + x] = exp(-0.5 * r2 / 16.0);
            s += t[y * ME_N + x];
            sg += g[y * ME_N + x];
        }
    for (int p = 0; p < ME_N * ME_N; p++)
        t[p] = (1.0 - mix) * t[p] / s + mix * g[p] / sg;
}

/* (m * (t - m))(dx, dy): the residual t - m filtered with the model m at one lag */
static double filtered_residual_ref(const double *t, const double *m, int dx, int dy)
{
    double c = 0;
    for (int y = 0; y < ME_N; y++)
        for (int x = 0; x < ME_N; x++) {
            int u = x - dx, w = y - dy;
            if (u >= 0 && w >= 0 && u < ME_N && w < ME_N)
                c += m[w * ME_N + u] * (t[y * ME_N + x] - m[y * ME_N + x]);
        }
    return c;
}

/* The reference: the RMS of (m * (t - m))(d) over |d| <= lag px, over (m * m)(0). */
static double model_error_ref(const double *t, const double *m, double lag)
{
    double mm = 0, ss = 0;
    size_t k = 0;
    for (int p = 0; p < ME_N * ME_N; p++)
        mm += m[p] * m[p];
    for (int dy = -12; dy <= 12; dy++)
        for (int dx = -12; dx <= 12; dx++) {
            if (dx * dx + dy * dy > lag * lag)
                continue;
            double c = filtered_residual_ref(t, m, dx, dy);
            ss += c * c;
            k++;
        }
    return sqrt(ss / (double)k) / mm;
}

/* The wing reference: ring k's RMS of (m * (t - m))(d) over the lags with
 * |d| > core and lround(|d|) = k, over (m * m)(0) (0 for a ring without lags). */
static double wing_error_ref(const double *t, const double *m, double core, int k)
{
    double mm = 0, ss = 0;
    size_t nl = 0;
    for (int p = 0; p < ME_N * ME_N; p++)
        mm += m[p] * m[p];
    for (int dy = -12; dy <= 12; dy++)
        for (int dx = -12; dx <= 12; dx++) {
            double r = sqrt((double)(dx * dx + dy * dy));
            if (r <= core || r > 12 || lround(r) != k)
                continue;
            double c = filtered_residual_ref(t, m, dx, dy);
            ss += c * c;
            nl++;
        }
    return nl ? sqrt(ss / (double)nl) / mm : 0.0;
}

/* 24 stars of the truth (fluxes 2e4 to 1e6 e-, sky 100 e- per pixel, its
 * level known to 0.5 e-) as unit-sum noisy stamps with their variances;
 * with contaminate 1, the brightest but one carries a neighbour of 30 % of
 * its flux 7 px out (not masked); with 2, every star a neighbour of 1 % of
 * its flux 6-10 px out, each at another angle (a field's faint sources).
 * The model's estimated error against the error injected (the reference
 * from the noiseless truth); with rings, also its wing profile (rings of
 * 1 px beyond 4 px). */
static double model_error_case(const double *truth, const double *model, int contaminate, int no_noise,
                               harness_rng *rng, double *rings)
{
    enum { NS = 24 };
    static float stamps[NS * ME_N * ME_N], vars[NS * ME_N * ME_N], mf[ME_N * ME_N];
    double vb[NS], loo[NS], sky = 100.0, dsky = 0.5;
    for (int p = 0; p < ME_N * ME_N; p++)
        mf[p] = (float)model[p];
    for (int i = 0; i < NS; i++) {
        double f = 2e4 * pow(50.0, (double)i / (NS - 1)), s = 0;
        float *st = stamps + (size_t)i * ME_N * ME_N, *v = vars + (size_t)i * ME_N * ME_N;
        for (int y = 0; y < ME_N; y++)
            for (int x = 0; x < ME_N; x++) {
                int p = y * ME_N + x;
                double e = f * truth[p];
                if (contaminate == 1 && i == NS - 2 && x + 7 < ME_N)
                    e += 0.3 * f * truth[p + 7];
                if (contaminate == 2) {
                    double a = 2.39996 * i, d = 6.0 + 4.0 * (double)(i % 5) / 4.0; /* golden angles */
                    int u = x + (int)lround(d * cos(a)), w = y + (int)lround(d * sin(a));
                    if (u >= 0 && w >= 0 && u < ME_N && w < ME_N)
                        e += 0.01 * f * truth[w * ME_N + u];
                }
                v[p] = (float)(sky + e);
                st[p] = (float)(e + sqrt(sky + e) * harness_normal(rng));
            }
        double off = dsky * harness_normal(rng); /* the sky level's error, every pixel alike */
        for (int p = 0; p < ME_N * ME_N; p++) {
            st[p] = (float)(st[p] - off);
            s += st[p];
        }
        for (int p = 0; p < ME_N * ME_N; p++) {
            st[p] = (float)(st[p] / s);
            v[p] = (float)(v[p] / (s * s));
        }
        vb[i] = dsky * dsky / (s * s);
        if (no_noise) { /* the noise not taken off: what the estimate would be without its noise model */
            vb[i] = 0;
            memset(v, 0, ME_N * ME_N * sizeof *v);
        }
        loo[i] = 0.0; /* the model is not made of these stamps */
    }
    if (rings)
        CHECK(clred_psf_wing_error(stamps, vars, vb, mf, 0, loo, 1, NS, ME_N, 4.0, 1.0, rings) == NS);
    return clred_psf_model_error(stamps, vars, vb, mf, 0, loo, 1, NS, ME_N, 4.0);
}

/* The error of a model against the stars it is used on, as a ZOGY S_N sees
 * it. A perfect model: the residuals are noise, which the estimate takes
 * off (its own scatter: the brightest stars' filtered noise, ~3e-4 of the
 * peak, over a few dozen lags and stars; 0.001 is 3x that). A model 3 or 10
 * % mixed with a wider Gaussian: the estimate within 25 % of the injected
 * error's (noise and the stamps' own-sum normalisation; measured 2-4 %). A
 * star with a 30 % neighbour in its stamp: outvoted by the median (it alone
 * would give ~0.1). */
static void model_error(void)
{
    static double truth[ME_N * ME_N], model[ME_N * ME_N];
    harness_rng rng = {12345};
    moffat_stamp(0.0, truth);
    double e0 = model_error_case(truth, truth, 0, 0, &rng, NULL), e0c = model_error_case(truth, truth, 1, 0, &rng, NULL);
    double en = model_error_case(truth, truth, 0, 1, &rng, NULL);
    printf("model error: perfect model %.5f, with a contaminated star %.5f, without the noise model %.5f\n", e0, e0c,
           en);
    CHECK(en > 2 * e0 + 1e-4); /* the noise model is what takes the residuals' noise off */
    CHECK(e0 >= 0 && e0 < 0.001);
    CHECK(e0c >= 0 && e0c < 0.001);
    const double mixes[] = {0.03, 0.1};
    for (int k = 0; k < 2; k++) {
        moffat_stamp(mixes[k], model);
        double ref = model_error_ref(truth, model, 4.0), est = model_error_case(truth, model, 0, 0, &rng, NULL),
               estc = model_error_case(truth, model, 1, 0, &rng, NULL);
        printf("model error: %.0f %% wider Gaussian mixed in: reference %.5f, estimate %.5f, with a contaminated star "
               "%.5f\n",
               100 * mixes[k], ref, est, estc);
        CHECK(ref > 0.002);
        CHECK(fabs(est / ref - 1) < 0.25);
        CHECK(fabs(estc / ref - 1) < 0.25);
    }
}

/* The wing profile (clred_psf_wing_error) against its reference, rings 4
 * (beyond the 4 px core) to 12 (the stamp's half size). A perfect model:
 * the rings are noise, taken off (< 2e-4; measured 0); without the noise
 * model the same stars give 0.9-1.6e-3, so that cannot go silently. A
 * model 10 % mixed with a wider Gaussian (wing errors 1.3-5.5e-3): each
 * ring within 10 % (+ 2e-4 near ring 5's zero crossing) of the reference
 * (measured 0-3 %), also with one star's 30 % neighbour. Every star with
 * a 1 % neighbour 6-10 px out, each at another angle: a perfect model's
 * rings 8-12 stay below 1e-3 (measured 1-5e-4) because the median is taken
 * lag by lag, where most stars are clean; a median over each star's ring
 * mean gives 1.4-2.7e-3 there (every star's ring holds its neighbour). With
 * the 10 % model, rings 7-12 within 25 % (measured 2-9 %); the inner ones
 * take the neighbours' cores. */
static void wing_case(const double *truth, const double *model, int contaminate, int no_noise, harness_rng *rng,
                      double *est, double *ref)
{
    double rings[CLRED_PSF_WING_RINGS];
    model_error_case(truth, model, contaminate, no_noise, rng, rings);
    for (int k = 0; k < CLRED_PSF_WING_RINGS; k++) {
        est[k] = rings[k];
        ref[k] = wing_error_ref(truth, model, 4.0, k);
    }
}

static void wing_error(void)
{
    static double truth[ME_N * ME_N], model[ME_N * ME_N];
    double est[CLRED_PSF_WING_RINGS], ref[CLRED_PSF_WING_RINGS];
    harness_rng rng = {777};
    moffat_stamp(0.0, truth);
    const char *what[] = {"clean", "one contaminated star", "every star contaminated", "no noise model"};
    for (int mix = 0; mix < 2; mix++) {
        moffat_stamp(mix ? 0.1 : 0.0, model);
        for (int c = 0; c < 4; c++) {
            wing_case(truth, model, c < 3 ? c : 0, c == 3, &rng, est, ref);
            printf("wing error, %s model, %s: ring est/ref", mix ? "10 % wider" : "perfect", what[c]);
            for (int k = 3; k <= 12; k++)
                printf(" %d:%.5f/%.5f", k, est[k], ref[k]);
            printf("\n");
            for (int k = 4; k <= 12; k++) {
                if (c == 0 && !mix)
                    CHECK(est[k] < 2e-4);
                if (c == 3 && !mix && k >= 6)
                    CHECK(est[k] > 5e-4);
                if (c == 2 && !mix && k >= 8)
                    CHECK(est[k] < 1e-3);
                if (c <= 1 && mix)
                    CHECK(fabs(est[k] - ref[k]) < 0.1 * ref[k] + 2e-4);
                if (c == 2 && mix && k >= 7)
                    CHECK(fabs(est[k] / ref[k] - 1) < 0.25);
            }
        }
    }
}

/* Solves the n x n a x = b in place (Gaussian elimination, partial pivoting). */
static void solve_ref(double *a, double *b, int n)
{
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[r * n + c]) > fabs(a[piv * n + c]))
                piv = r;
        for (int k = 0; k < n; k++) {
            double t = a[c * n + k];
            a[c * n + k] = a[piv * n + k];
            a[piv * n + k] = t;
        }
        double t = b[c];
        b[c] = b[piv];
        b[piv] = t;
        for (int r = c + 1; r < n; r++) {
            double f = a[r * n + c] / a[c * n + c];
            for (int k = c; k < n; k++)
                a[r * n + k] -= f * a[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        for (int k = r + 1; k < n; k++)
            b[r] -= a[r * n + k] * b[k];
        b[r] /= a[r * n + r];
    }
}

/* Star j's residual against the weighted least-squares fit of the values y
 * on the terms t (nt each) of all the stars but skip (-1: none). */
static double refit_residual(const double *t, const double *y, const double *wt, int nst, int nt, int skip, int j)
{
    double a[CLRED_PSF_MAX_TERMS * CLRED_PSF_MAX_TERMS] = {0}, b[CLRED_PSF_MAX_TERMS] = {0};
    for (int i = 0; i < nst; i++)
        if (i != skip)
            for (int k = 0; k < nt; k++) {
                b[k] += wt[i] * y[i] * t[i * nt + k];
                for (int l = 0; l < nt; l++)
                    a[k * nt + l] += wt[i] * t[i * nt + k] * t[i * nt + l];
            }
    solve_ref(a, b, nt);
    double m = 0;
    for (int k = 0; k < nt; k++)
        m += t[j * nt + k] * b[k];
    return y[j] - m;
}

/* clred_psf_leverage: a star's residual against the fit of all, over 1 -
 * h, is its residual against the fit refitted without it (the identity the
 * model error's leave-one-out factor rests on), for orders 0-2 on 14
 * unevenly weighted stars, and a constant model's h is w / sum w. The
 * reference refits in double by a separate solver: the two agree to
 * rounding (terms within [-1, 1], a well-conditioned 6 x 6 system: 1e-12
 * of the residuals' scale; 1e-9 leaves room for the elimination). */
static void leverage(void)
{
    enum { NS = 14 };
    double sx[NS], sy[NS], wt[NS], y[NS], h[NS], t[NS * CLRED_PSF_MAX_TERMS], wsum = 0;
    unsigned s = 12345;
    for (int i = 0; i < NS; i++) {
        s = s * 1103515245u + 12345u;
        sx[i] = 100.0 * (double)(s >> 8) / 16777216.0;
        s = s * 1103515245u + 12345u;
        sy[i] = 80.0 * (double)(s >> 8) / 16777216.0;
        s = s * 1103515245u + 12345u;
        wt[i] = 1.0 + 200.0 * (double)(s >> 8) / 16777216.0;
        s = s * 1103515245u + 12345u;
        y[i] = 0.05 + 0.01 * sx[i] / 100.0 - 0.02 * sy[i] * sy[i] / 6400.0 + 0.003 * ((double)(s >> 8) / 16777216.0 - 0.5);
        wsum += wt[i];
    }
    float basis[1] = {0};
    for (int order = 0; order <= 2; order++) {
        clred_psf p = {0};
        p.order = order;
        p.nterms = clred_psf_nterms(order);
        p.basis = order > 0 ? basis : NULL;
        p.x0 = 50;
        p.y0 = 40;
        p.xscale = 50;
        p.yscale = 40;
        int nt = (int)p.nterms;
        for (int i = 0; i < NS; i++) {
            double ti[CLRED_PSF_MAX_TERMS];
            CHECK(clred_psf_terms(&p, sx[i], sy[i], ti) == (size_t)nt);
            memcpy(t + i * nt, ti, (size_t)nt * sizeof *ti);
        }
        CHECK(clred_psf_leverage(&p, sx, sy, wt, NS, h));
        double scale = 0;
        for (int j = 0; j < NS; j++)
            scale = fmax(scale, fabs(refit_residual(t, y, wt, NS, nt, j, j)));
        for (int j = 0; j < NS; j++) {
            double r = refit_residual(t, y, wt, NS, nt, -1, j), loo = refit_residual(t, y, wt, NS, nt, j, j);
            CHECK(h[j] > 0 && h[j] < 1);
            CHECK_NEAR(r / (1.0 - h[j]), loo, 1e-9 * scale);
            if (order == 0)
                CHECK_NEAR(h[j], wt[j] / wsum, 1e-12);
        }
    }
    /* three stars on a line do not constrain an order-1 fit's terms */
    clred_psf p = {0};
    p.order = 1;
    p.nterms = 3;
    p.basis = basis;
    p.xscale = p.yscale = 1;
    double lx[3] = {0, 1, 2}, ly[3] = {0, 1, 2};
    CHECK(!clred_psf_leverage(&p, lx, ly, wt, 3, h));
}

/* The reference for clred_psf_paired_median: the stars with all three
 * values, sorted by key (ties by index), the first half (all below 6), the
 * median of their differences by a plain sort. */
typedef struct {
    double key, d;
    size_t i;
} pm_star;

static int pm_cmp_key(const void *a, const void *b)
{
    const pm_star *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : (x->i > y->i) - (x->i < y->i);
}

static int pm_cmp_d(const void *a, const void *b)
{
    double x = ((const pm_star *)a)->d, y = ((const pm_star *)b)->d;
    return (x > y) - (x < y);
}

static double paired_median_ref(const double *xa, const double *xb, const double *key, size_t n)
{
    pm_star st[64];
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(xa[i]) && isfinite(xb[i]) && isfinite(key[i]))
            st[m++] = (pm_star){key[i], xa[i] - xb[i], i};
    if (m == 0)
        return NAN;
    qsort(st, m, sizeof *st, pm_cmp_key);
    size_t h = m < 6 ? m : (m + 1) / 2;
    qsort(st, h, sizeof *st, pm_cmp_d);
    return h % 2 ? st[h / 2].d : 0.5 * (st[h / 2 - 1].d + st[h / 2].d);
}

/* clred_psf_paired_median against the plain reference on random held-out
 * errors (some NaN, some keys tied) for 1-40 stars: the same values picked
 * and the same arithmetic, so equal exactly; NaN with no star known. */
static void paired_median(void)
{
    double xa[40], xb[40], key[40], tmp[4 * 40];
    harness_rng rng = {777};
    int bad = 0;
    for (size_t n = 1; n <= 40; n++)
        for (int trial = 0; trial < 20; trial++) {
            for (size_t i = 0; i < n; i++) {
                xa[i] = 1e-4 * harness_normal(&rng);
                xb[i] = 1e-4 * harness_normal(&rng);
                key[i] = floor(8.0 * fabs(harness_normal(&rng))); /* ties among the keys */
                double u = fabs(harness_normal(&rng));
                if (u > 2.0)
                    xa[i] = NAN;
                else if (u > 1.8)
                    key[i] = NAN;
            }
            double got = clred_psf_paired_median(xa, xb, key, n, tmp), want = paired_median_ref(xa, xb, key, n);
            if (!(got == want || (isnan(got) && isnan(want))))
                bad++;
        }
    CHECK_MSG(bad == 0, "paired median: %d of 800 cases differ from the reference", bad);
    xa[0] = NAN;
    CHECK(isnan(clred_psf_paired_median(xa, xb, key, 1, tmp)));
    /* the better half decides: 3 well measured stars better by 1, 3 noisy ones worse by 5 */
    double a[6] = {0, 0, 0, 5, 5, 5}, b[6] = {1, 1, 1, 0, 0, 0}, k[6] = {1, 2, 3, 10, 11, 12};
    CHECK(clred_psf_paired_median(a, b, k, 6, tmp) == -1.0);
}

/* A unit-sum Gaussian of sigma s at (cx + dx, cy + dy) on an n x n stamp, in double. */
static void gauss_stamp(size_t n, double s, double dx, double dy, double *g)
{
    double c = 0.5 * (double)(n - 1), sum = 0;
    for (size_t q = 0; q < n * n; q++) {
        double x = (double)(q % n) - c - dx, y = (double)(q / n) - c - dy;
        g[q] = exp(-0.5 * (x * x + y * y) / (s * s));
        sum += g[q];
    }
    for (size_t q = 0; q < n * n; q++)
        g[q] /= sum;
}

/* An order-2 model over a 200 x 160 image: basis_0 a Gaussian of sigma s0,
 * term k > 0 amp[k] times (a Gaussian of another width and centre less
 * basis_0), so the terms sum to 0. */
static void varying_model(size_t n, double s0, const double *amp, clred_psf *p)
{
    memset(p, 0, sizeof *p);
    size_t n2 = n * n;
    double *g0 = malloc(n2 * sizeof *g0), *g = malloc(n2 * sizeof *g);
    p->size = n;
    p->order = 2;
    p->nterms = 6;
    p->data = malloc(n2 * sizeof *p->data);
    p->basis = malloc(6 * n2 * sizeof *p->basis);
    p->x0 = 99.5;
    p->y0 = 79.5;
    p->xscale = 99.5;
    p->yscale = 79.5;
    p->fwhm = 2.3548 * s0;
    gauss_stamp(n, s0, 0, 0, g0);
    for (size_t q = 0; q < n2; q++)
        p->data[q] = p->basis[q] = (float)g0[q];
    for (int k = 1; k < 6; k++) {
        gauss_stamp(n, s0 * (1.0 + 0.1 * k), 0.2 * (k % 3) - 0.2, 0.1 * (k % 2), g);
        for (size_t q = 0; q < n2; q++)
            p->basis[(size_t)k * n2 + q] = (float)(amp[k] * (g[q] - g0[q]));
    }
    free(g0);
    free(g);
}

/* The model at (x, y) in double from its basis, unit sum (clred_psf_eval's
 * definition, without its float result). */
static void eval_ref(const clred_psf *p, double x, double y, double *m)
{
    size_t n2 = p->size * p->size;
    double t[CLRED_PSF_MAX_TERMS], s = 0;
    size_t nt = clred_psf_terms(p, x, y, t);
    for (size_t q = 0; q < n2; q++) {
        m[q] = 0;
        for (size_t k = 0; k < nt; k++)
            m[q] += t[k] * (p->order > 0 ? p->basis[k * n2 + q] : p->data[q]);
        s += m[q];
    }
    for (size_t q = 0; q < n2; q++)
        m[q] /= s;
}

/* v(d) of clred_psf_pair_variation in double: the full correlation of the
 * centre's model with the difference, by pairs of pixels, at the lags
 * within r, over the centre model's sum of squares. */
static size_t variation_ref(const clred_psf *p, double cx, double cy, double x, double y, double r, double *v)
{
    int n = (int)p->size;
    double *mc = malloc((size_t)(n * n) * sizeof *mc), *mk = malloc((size_t)(n * n) * sizeof *mk), mm = 0;
    eval_ref(p, cx, cy, mc);
    eval_ref(p, x, y, mk);
    for (int q = 0; q < n * n; q++)
        mm += mc[q] * mc[q];
    size_t nl = 0;
    for (int dy = -n; dy <= n; dy++)
        for (int dx = -n; dx <= n; dx++) {
            if (sqrt((double)(dx * dx + dy * dy)) > r)
                continue;
            double c = 0;
            for (int a = 0; a < n * n; a++) {
                int ax = a % n + dx, ay = a / n + dy; /* pixel a of m_c against pixel a + d of the difference */
                if (ax >= 0 && ay >= 0 && ax < n && ay < n)
                    c += mc[a] * (mk[ay * n + ax] - mc[ay * n + ax]);
            }
            v[nl++] = c / mm;
        }
    free(mc);
    free(mk);
    return nl;
}

/* clred_psf_pair_variation against variation_ref at points over the image.
 * The library evaluates the models in float (clred_psf_eval): each pixel
 * is off by ~6e-8 of itself, and the moments are sums of products of
 * differences a few per cent of the model: 1e-4 of each moment (plus 1e-12
 * absolute) holds with room, while a wrong lag disk, normalisation or sign
 * is off by far more. A model against itself (both the same) leaves a
 * static source nothing, a constant one contributes 0 and the centre
 * itself is 0. */
static void pair_variation(void)
{
    const double an[6] = {0, 0.8, -0.5, 0.3, 0.6, -0.4}, ar[6] = {0, -0.6, 0.7, 0.2, -0.3, 0.5};
    clred_psf pn, pr;
    varying_model(17, 1.6, an, &pn);
    varying_model(15, 1.2, ar, &pr);
    double cx = 70.0, cy = 90.0, r = fmax(1.0, fmax(pn.fwhm, pr.fwhm));
    enum { NP = 7 };
    double xy[2 * NP] = {0, 0, 199, 159, 70, 90, 150, 20, 10, 140, 100, 80, 185, 5};
    double vnn[NP], vrr[NP], vnr[NP], bad = 0;
    CHECK(clred_psf_pair_variation(&pn, &pr, cx, cy, xy, NP, vnn, vrr, vnr));
    double *a = malloc(4 * 35 * 35 * sizeof *a), *b = a + 2 * 35 * 35;
    for (int k = 0; k < NP; k++) {
        size_t la = variation_ref(&pn, cx, cy, xy[2 * k], xy[2 * k + 1], r, a);
        size_t lb = variation_ref(&pr, cx, cy, xy[2 * k], xy[2 * k + 1], r, b);
        CHECK(la == lb && la > 0);
        double snn = 0, srr = 0, snr = 0;
        for (size_t l = 0; l < la; l++) {
            snn += a[l] * a[l];
            srr += b[l] * b[l];
            snr += a[l] * b[l];
        }
        double ref[3] = {snn / (double)la, srr / (double)la, snr / (double)la}, got[3] = {vnn[k], vrr[k], vnr[k]};
        for (int m = 0; m < 3; m++)
            bad = fmax(bad, fabs(got[m] - ref[m]) / (1e-12 + 1e-4 * fabs(ref[m])));
    }
    printf("pair variation: worst %.3f of the tolerance; at (0, 0): vnn %.3g vrr %.3g vnr %.3g\n", bad, vnn[0], vrr[0],
           vnr[0]);
    CHECK(bad <= 1.0);
    CHECK(vnn[0] > 1e-4 && vrr[0] > 1e-4); /* the variation is large enough to test */
    CHECK(vnn[2] == 0 && vrr[2] == 0 && vnr[2] == 0);
    /* the same model twice: S_N v - S_R v leaves a static source (S_N = S_R) nothing */
    CHECK(clred_psf_pair_variation(&pn, &pn, cx, cy, xy, NP, vnn, vrr, vnr));
    for (int k = 0; k < NP; k++)
        CHECK(vnn[k] == vrr[k] && vnn[k] == vnr[k]);
    /* a constant reference */
    clred_psf pc = pr;
    pc.order = 0;
    pc.basis = NULL;
    CHECK(clred_psf_pair_variation(&pn, &pc, cx, cy, xy, NP, vnn, vrr, vnr));
    for (int k = 0; k < NP; k++)
        CHECK(vrr[k] == 0 && vnr[k] == 0);
    free(a);
    clred_psf_free(&pn);
    clred_psf_free(&pr);
}

int main(void)
{
    paired_median();
    pair_variation();
    leverage();
    model_error();
    wing_error();
    from_array();
    pairs();
    clred_ctx *ctx = harness_ctx();
    measured(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
