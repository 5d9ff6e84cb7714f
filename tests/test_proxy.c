/* Proxy pixels on a small CUTE-like simulated set: the device search
 * (median and least-squares methods, exhaustive and windowed) against an
 * exhaustive double-precision reference (same proxies, same scores), the
 * true twins found, and the final frames recovering the injected spectrum
 * within its noise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The definition in clred.h, pair by pair: residuals in float32, scores in
 * double, lexicographic keys, lowest index on ties. */
/* With a tie tolerance tol > 0 (MEDIAN), two passes: the smallest |median|,
 * then among |median| <= it + tol the smallest std (k1 reported as the
 * chosen |median|). */
static void reference(const clred_cute_sim *s, const clred_proxy_match *m, clred_proxy_method method, int window,
                      double tol, int64_t *proxy, double *k1_out, double *k2_out)
{
    size_t w = m->width, np = w * m->height, T = m->ndarks;
    float r[128];
    for (size_t p = 0; p < np; p++) {
        proxy[p] = -1;
        k1_out[p] = k2_out[p] = NAN;
        if (!s->spectral[p] || m->unusable[p])
            continue;
        double b1 = INFINITY, b2 = INFINITY, limit = INFINITY, chosen = NAN;
        int64_t best = -1;
        for (int pass = tol > 0 ? 0 : 1; pass < 2; pass++)
        for (size_t c = 0; c < np; c++) {
            if (s->spectral[c] || m->unusable[c])
                continue;
            if (window > 0 && labs((long)(c % w) - (long)(p % w)) > window)
                continue;
            double s1 = 0, s2 = 0;
            for (size_t t = 0; t < T; t++) {
                r[t] = s->darks[t].sci[p] - s->darks[t].sci[c];
                s1 += r[t];
                s2 += (double)r[t] * r[t];
            }
            double msr = s2 / (double)T, mean = s1 / (double)T, sd = sqrt(fmax(msr - mean * mean, 0)), k1, k2;
            if (method == CLRED_PROXY_MEDIAN) {
                qsort(r, T, sizeof *r, cmp_float);
                k1 = fabs(0.5 * ((double)r[(T - 1) / 2] + (double)r[T / 2]));
                k2 = sd;
            } else {
                k1 = msr;
                k2 = 0;
            }
            if (pass == 0) { /* the smallest |median| */
                limit = fmin(limit, k1);
                continue;
            }
            double kk = k1;
            if (tol > 0) {
                if (k1 > limit + tol)
                    continue;
                kk = 0;
            }
            if (kk < b1 || (kk == b1 && k2 < b2)) { /* ascending c: the lowest index wins ties */
                b1 = kk, b2 = k2, best = (int64_t)c, chosen = k1;
            }
        }
        proxy[p] = best;
        k1_out[p] = tol > 0 ? chosen : b1;
        k2_out[p] = b2;
    }
}

static clred_cute_sim_opts small_opts(void)
{
    clred_cute_sim_opts o = clred_cute_sim_defaults();
    o.width = 64;
    o.height = 24;
    o.ndarks = 12;
    o.nscience = 2;
    o.ngroups = 24;
    o.spectral_half = 5;
    o.sigma = 1.5;
    o.split_max = 4;
    o.peak = 300;
    o.hot_fraction = 0.01;
    o.missing_fraction = 0.01;
    o.cosmic_fraction = 0.002;
    o.seed = 7;
    return o;
}

static void check_method(clred_ctx *ctx, const clred_cute_sim *s, clred_proxy_method method, int window, double tol)
{
    const clred_cute_sim_opts *so = &s->opts;
    size_t np = so->width * so->height;
    clred_proxy_opts o = clred_proxy_defaults();
    o.method = method;
    o.window = window;
    o.tie_tolerance = tol;
    clred_proxy_match m;
    CHECK_OK(clred_proxy_match_pixels(ctx, s->darks, so->ndarks, s->spectral, &o, &m));
    if (!m.proxy)
        return;
    int64_t *rp = malloc(np * sizeof *rp);
    double *r1 = malloc(np * sizeof *r1), *r2 = malloc(np * sizeof *r2);
    reference(s, &m, method, window, tol, rp, r1, r2);
    if (tol > 0) {
        /* the tolerance must matter here, or this check shows nothing */
        int64_t *exact = malloc(np * sizeof *exact);
        double *e1 = malloc(np * sizeof *e1), *e2 = malloc(np * sizeof *e2);
        reference(s, &m, method, window, 0, exact, e1, e2);
        size_t changed = 0;
        for (size_t p = 0; p < np; p++)
            changed += exact[p] != rp[p];
        fprintf(stderr, "tie tolerance %g: %zu proxies other than with exact ties\n", tol, changed);
        CHECK(changed > 0);
        free(exact), free(e1), free(e2);
    }
    size_t differ = 0, score_differ = 0, twins = 0, with_twin = 0, hot = 0, missing = 0;
    for (size_t p = 0; p < np; p++) {
        hot += m.unusable[p] == 1;
        missing += m.unusable[p] == 2;
        differ += m.proxy[p] != rp[p];
        if (rp[p] < 0 || m.proxy[p] != rp[p])
            continue;
        /* scores equal bit for bit: the same operations on integer ADU */
        double k1 = method == CLRED_PROXY_MEDIAN ? fabs(m.median[p]) : m.msr[p];
        double k2 = method == CLRED_PROXY_MEDIAN ? m.std[p] : 0;
        score_differ += k1 != r1[p] || k2 != r2[p];
        /* a true twin: a usable non-spectral pixel of the same group (in the window) */
        int has = 0;
        for (size_t c = 0; c < np && !has; c++)
            has = !s->spectral[c] && !m.unusable[c] && s->group[c] == s->group[p] &&
                  (window <= 0 || labs((long)(c % so->width) - (long)(p % so->width)) <= window);
        with_twin += has;
        twins += has && s->group[m.proxy[p]] == s->group[p];
    }
    fprintf(stderr, "%s%s%s: %zu of %zu spectral pixels matched, %zu of %zu with a twin got one; %zu hot, %zu missing\n",
            method == CLRED_PROXY_MEDIAN ? "median" : "lsq", window ? " (window)" : "", tol > 0 ? " (tie tolerance)" : "",
            m.nmatched, m.nspectral,
            twins, with_twin, hot, missing);
    CHECK_MSG(differ == 0, "%zu proxies differ from the reference", differ);
    CHECK_MSG(score_differ == 0, "%zu scores differ from the reference", score_differ);
    /* hot and missing pixels were injected: the simulator's 1 % each */
    CHECK(hot > 0 && missing > 0);
    size_t nhot_true = 0;
    for (size_t p = 0; p < np; p++)
        nhot_true += s->hot[p];
    CHECK_MSG(hot >= nhot_true * 9 / 10, "only %zu of %zu hot pixels found", hot, nhot_true);
    /* groups are 10 ADU apart against 2.8 ADU of residual noise: twins win
     * nearly always (a wrong group's temperature term may tie its median) */
    CHECK_MSG(twins >= with_twin * 95 / 100, "only %zu of %zu spectral pixels got a true twin", twins, with_twin);

    if (method == CLRED_PROXY_MEDIAN && window == 0 && tol == 0) {
        /* final frames: exactly sci - sci[proxy]; where the proxy is a twin,
         * the spectrum within its noise (read noise twice, photon noise) */
        double sum = 0, sum2 = 0;
        size_t n = 0, bad = 0;
        for (size_t k = 0; k < so->nscience; k++) {
            clred_image bkg, fin;
            CHECK_OK(clred_proxy_background(ctx, &m, &s->science[k], s->spectral, &bkg, &fin));
            if (!bkg.sci)
                continue;
            const float *sci = s->science[k].sci;
            for (size_t p = 0; p < np; p++) {
                float expect_b = m.proxy[p] >= 0 ? sci[m.proxy[p]] : s->spectral[p] ? NAN : sci[p];
                float expect_f = sci[p] - expect_b;
                bad += !((bkg.sci[p] == expect_b || (isnan(expect_b) && isnan(bkg.sci[p]))) &&
                         (fin.sci[p] == expect_f || (isnan(expect_f) && isnan(fin.sci[p]))));
                if (m.proxy[p] < 0 || s->group[m.proxy[p]] != s->group[p] || !isfinite(fin.sci[p]))
                    continue;
                double truth = s->truth_spectrum[p], sig = sqrt(2 * so->read_noise * so->read_noise + truth + 1.0 / 6);
                double z = (fin.sci[p] - truth) / sig;
                if (fabs(z) > 6)
                    continue; /* a cosmic ray in the pixel or its proxy */
                sum += z;
                sum2 += z * z;
                n++;
            }
            clred_image_free(&bkg);
            clred_image_free(&fin);
        }
        double mean = sum / (double)n, rms = sqrt(sum2 / (double)n);
        fprintf(stderr, "final frames: %zu pixels, (final - spectrum) / noise: mean %.3f, rms %.3f\n", n, mean, rms);
        CHECK_MSG(bad == 0, "%zu background or final pixels differ from sci - sci[proxy]", bad);
        /* n ~ 700: the mean of unit normals is within 0.15 (4 sigma); the rms
         * within 15 % (integer rounding of both pixels is in the noise) */
        CHECK_MSG(n > 300 && fabs(mean) < 0.15 && fabs(rms - 1) < 0.15,
                  "final frames off the spectrum: mean %.3f rms %.3f over %zu pixels", mean, rms, n);
        char path[512];
        snprintf(path, sizeof path, "%s/match.csv", harness_tmpdir("test_proxy"));
        CHECK_OK(clred_proxy_match_write_csv(path, &m, s->spectral, 1));
    }
    free(rp), free(r1), free(r2);
    clred_proxy_match_free(&m);
}

/* The profile fits recover the injected trace: a 200 x 40 set (trace sigma
 * 1.2, split growing to 4.8 px), matched by least squares, the per-pixel
 * median of its final frames fitted per 25 columns. Single Gaussian: the
 * centre within 0.1 px everywhere (the profile is symmetric). Double: where
 * the split is at least 2 sigma (resolved), both centres within 0.25 px and
 * the width within 10 % (the median of 3 noisy frames, ~25 columns of photon
 * noise); the ratio-tied fits of the final frames keep a2 / a1 fixed. */
static void test_trace_fits(clred_ctx *ctx)
{
    clred_cute_sim_opts so = clred_cute_sim_defaults();
    so.width = 200, so.height = 40, so.ndarks = 8, so.nscience = 3, so.ngroups = 80;
    so.sigma = 1.2, so.split_max = 4.8, so.spectral_half = 6, so.centre = 20, so.seed = 11;
    clred_cute_sim s;
    CHECK_OK(clred_cute_simulate(&so, &s));
    clred_proxy_opts po = clred_proxy_defaults();
    po.method = CLRED_PROXY_LSQ;
    clred_proxy_match m;
    CHECK_OK(clred_proxy_match_pixels(ctx, s.darks, so.ndarks, s.spectral, &po, &m));
    size_t np = so.width * so.height;
    clred_image fin[3], med;
    CHECK_OK(clred_image_alloc(&med, so.width, so.height, 0, 0));
    for (size_t k = 0; k < 3; k++)
        CHECK_OK(clred_proxy_background(ctx, &m, &s.science[k], s.spectral, NULL, &fin[k]));
    for (size_t i = 0; i < np && fin[0].sci && fin[1].sci && fin[2].sci; i++) {
        float v[3] = {fin[0].sci[i], fin[1].sci[i], fin[2].sci[i]};
        qsort(v, 3, sizeof *v, cmp_float);
        med.sci[i] = isnan(v[0]) || isnan(v[1]) || isnan(v[2]) ? NAN : v[1];
    }
    clred_trace_fit f, tied;
    CHECK_OK(clred_trace_fit_frame(&med, 25, NULL, &f));
    CHECK(f.nbins == 8);
    double ratio[8];
    size_t resolved = 0;
    for (size_t b = 0; b < f.nbins; b++) {
        const clred_trace_bin *t = &f.bins[b];
        double xm = 0.5 * (double)(t->x0 + t->x1 - 1), split = so.split_max * xm / (double)(so.width - 1);
        CHECK_MSG(t->ok_single && fabs(t->mu - so.centre) < 0.1, "bin %zu: single centre %.3f", b, t->mu);
        ratio[b] = t->amp2 / t->amp1;
        if (split < 2 * so.sigma)
            continue;
        resolved++;
        CHECK_MSG(t->ok_double && fabs(t->mu1 - (so.centre - split / 2)) < 0.25 &&
                      fabs(t->mu2 - (so.centre + split / 2)) < 0.25 && fabs(t->sigma2 / so.sigma - 1) < 0.1,
                  "bin %zu: double %.3f %.3f width %.3f, truth %.3f %.3f width %.3f", b, t->mu1, t->mu2, t->sigma2,
                  so.centre - split / 2, so.centre + split / 2, so.sigma);
    }
    CHECK(resolved >= 3);
    CHECK_OK(clred_trace_fit_frame(&fin[0], 25, ratio, &tied));
    for (size_t b = 0; b < tied.nbins && b < 8; b++)
        if (tied.bins[b].ok_double) {
            double r = tied.bins[b].mu1 <= tied.bins[b].mu2 ? tied.bins[b].amp2 / tied.bins[b].amp1
                                                             : tied.bins[b].amp1 / tied.bins[b].amp2;
            CHECK_MSG(fabs(r - ratio[b]) < 1e-9 * fabs(ratio[b]) || fabs(1 / r - ratio[b]) < 1e-9 * fabs(ratio[b]),
                      "bin %zu: tied ratio %.6f, median frame's %.6f", b, r, ratio[b]);
        }
    /* infill: the empty (no proxy, missing) and negative spectral pixels
     * take the tied fit's model; it is a bin's mean profile, so columns in
     * the simulated absorption lines (4 lines of ~2 columns, depth 60 %)
     * may leave it by more than 3 sigma: at least 85 % are within 3 sigma
     * of the truth */
    size_t nfill = 0, within = 0, counted = 0;
    clred_image before;
    CHECK_OK(clred_image_alloc(&before, so.width, so.height, 0, 0));
    memcpy(before.sci, fin[0].sci, np * sizeof *before.sci);
    CHECK_OK(clred_trace_fit_infill(&fin[0], &tied, s.spectral, &nfill));
    for (size_t i = 0; i < np; i++) {
        if (!s.spectral[i] || (isfinite(before.sci[i]) && before.sci[i] >= 0))
            continue;
        counted++;
        double truth = s.truth_spectrum[i], sig = sqrt(2 * so.read_noise * so.read_noise + truth + 1.0 / 6);
        within += fabs(fin[0].sci[i] - truth) <= 3 * sig;
    }
    fprintf(stderr, "infill: %zu pixels, %zu within 3 sigma of the truth\n", nfill, within);
    CHECK(nfill == counted && nfill > 10);
    CHECK_MSG(within >= counted * 85 / 100, "only %zu of %zu infilled pixels within 3 sigma", within, counted);
    clred_image_free(&before);
    clred_trace_fit_free(&f);
    clred_trace_fit_free(&tied);
    for (size_t k = 0; k < 3; k++)
        clred_image_free(&fin[k]);
    clred_image_free(&med);
    clred_proxy_match_free(&m);
    clred_cute_sim_free(&s);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    if (!clred_ctx_device(ctx)->has_double) {
        fprintf(stderr, "SKIP: the device has no double precision\n");
        clred_ctx_destroy(ctx);
        return 77;
    }
    clred_cute_sim_opts so = small_opts();
    clred_cute_sim s;
    CHECK_OK(clred_cute_simulate(&so, &s));
    check_method(ctx, &s, CLRED_PROXY_MEDIAN, 0, 0);
    check_method(ctx, &s, CLRED_PROXY_LSQ, 0, 0);
    check_method(ctx, &s, CLRED_PROXY_MEDIAN, 6, 0);
    /* a tolerance of 1 ADU: medians of integer residuals are multiples of
     * 0.5, so it joins the next two levels to the ties */
    check_method(ctx, &s, CLRED_PROXY_MEDIAN, 0, 1.0);
    /* bad input */
    clred_proxy_match m;
    CHECK(clred_proxy_match_pixels(ctx, s.darks, 1, s.spectral, NULL, &m) == CLRED_ERR_USAGE);
    clred_proxy_opts bad = clred_proxy_defaults();
    bad.tie_tolerance = -1;
    CHECK(clred_proxy_match_pixels(ctx, s.darks, so.ndarks, s.spectral, &bad, &m) == CLRED_ERR_USAGE);
    s.darks[1].width--;
    CHECK(clred_proxy_match_pixels(ctx, s.darks, so.ndarks, s.spectral, NULL, &m) == CLRED_ERR_INPUT);
    s.darks[1].width++;
    clred_cute_sim_free(&s);
    test_trace_fits(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
