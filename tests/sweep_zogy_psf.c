/* Seed sweep of ZOGY alone on the simulated pair with the true or measured
 * PSFs, run by hand (built with the tests, never registered with ctest):
 * separates what measured PSFs and tiles do to the false candidates.
 *
 *   sweep_zogy_psf [FIRST LAST]      (seeds, default 1 8)
 *
 * ZP_ORDER: -1 the pair's true PSFs (default), -2 the true PSFs cut to
 * ZP_SIZE (default 25) px, 0|1|2 PSFs measured on each image with that
 * order (ZP_SIZE: the model's size; ZP_SELECT=0: that order as given,
 * not the one up to it chosen by held-out prediction); ZP_TILE: zogy tile_size (0 =
 * default); ZP_GRAD: the FWHM gradient (x: 0.3 GRAD, y: 0.15 GRAD; default
 * 0); ZP_HYBRID=R (order 0): the measured models' pixels beyond R px
 * replaced by the truth's (-R: within R px), to tell core from wing
 * errors; ZP_RADIAL: the models' error ring by ring; ZP_WING: their wing
 * error profile, estimate against the truth; ZP_NOWING: without it in
 * S_corr; ZP_BRIGHT: candidates in saturated stars' wings flagged
 * (clred_candidates_bright, as clred subtract does); ZP_EPS: a fixed
 * PSF-model error in S_corr for both images (clred_zogy_opts psf_err_n/r);
 * ZP_VARY=1: the models' variation over a tile in V(S) (psf_variation);
 * ZP_FIELD: on a 3 x 3 grid, each model's error against the truth there,
 * evaluated there and at the centre, its noise gain there (g,
 * clred_psf_noise_gain) and the pair's variation moments (ZP_FIELDWING: and
 * the evaluated model's wing error ring by ring, truth / its estimate there). Prints
 * per seed the clean false candidates against DMTN-006's expectation,
 * completeness at S/N >= 8, S_corr's robust spread and the measured PSF's
 * distance from the truth at the centre. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "pair_truth.h"
#include "psf_internal.h"

static double env_num(const char *name, double dflt)
{
    const char *v = getenv(name);
    return v ? atof(v) : dflt;
}

/* sum |measured - true| over the centre PSF's pixels (both unit sum) */
static double psf_l1(const clred_psf *m, const clred_psf *t)
{
    clred_psf e;
    if (clred_psf_eval(m, m->x0, m->y0, &e) != CLRED_OK)
        return NAN;
    double d = 0;
    int hm = (int)e.size / 2, ht = (int)t->size / 2;
    for (int y = -ht; y <= ht; y++)
        for (int x = -ht; x <= ht; x++) {
            double a = (abs(x) <= hm && abs(y) <= hm) ? e.data[(y + hm) * (int)e.size + x + hm] : 0.0;
            d += fabs(a - t->data[(y + ht) * (int)t->size + x + ht]);
        }
    clred_psf_free(&e);
    return d;
}

/* Gaussian-windowed (sigma 1.5 px) centroid offset and second moment of the centre PSF */
static void psf_moments(const clred_psf *m, double *cx, double *cy, double *m2)
{
    clred_psf e;
    *cx = *cy = *m2 = NAN;
    if (clred_psf_eval(m, m->x0, m->y0, &e) != CLRED_OK)
        return;
    int h = (int)e.size / 2;
    double s = 0, sx = 0, sy = 0, sr = 0;
    for (int y = -h; y <= h; y++)
        for (int x = -h; x <= h; x++) {
            double v = e.data[(y + h) * (int)e.size + x + h], w = exp(-0.5 * (x * x + y * y) / (2.0 * 2.0));
            s += v * w;
            sx += v * w * x;
            sy += v * w * y;
            sr += v * w * (x * x + y * y);
        }
    *cx = sx / s;
    *cy = sy / s;
    *m2 = sr / s;
    clred_psf_free(&e);
}

/* The model's error as clred_psf_model_error defines it, measured against
 * the truth (cut to the model's size, noiseless, no leave-one-out) at lags
 * out to r FWHM: what the estimate from the stamps is after. */
static double oracle_err(const clred_psf *m, const clred_psf *t, double r)
{
    clred_psf tc;
    if (clred_psf_from_array(t->data, t->size, t->size, m->size, &tc) != CLRED_OK)
        return NAN;
    size_t n2 = m->size * m->size;
    float *v = calloc(n2, sizeof *v);
    double loo = 0, vb = 0;
    double e = tc.size == m->size ? clred_psf_model_error(tc.data, v, &vb, m->data, 0, &loo, 1, 1, m->size, r * m->fwhm)
                                  : NAN;
    free(v);
    clred_psf_free(&tc);
    return e;
}

/* The wing profile as clred_psf_wing_error defines it, against the truth
 * (as oracle_err), printed ring by ring next to the model's estimate. */
static void truth_wing(const clred_psf *m, const clred_psf *t, double *rings)
{
    clred_psf tc;
    if (clred_psf_from_array(t->data, t->size, t->size, m->size, &tc) != CLRED_OK)
        return;
    size_t n2 = m->size * m->size;
    float *v = calloc(n2, sizeof *v);
    double loo = 0, vb = 0;
    if (tc.size == m->size)
        clred_psf_wing_error(tc.data, v, &vb, m->data, 0, &loo, 1, 1, m->size, fmax(1.0, m->fwhm), 1.0, rings);
    free(v);
    clred_psf_free(&tc);
}

static void oracle_wing(const clred_psf *m, const clred_psf *t)
{
    double rings[CLRED_PSF_WING_RINGS] = {0};
    truth_wing(m, t, rings);
    printf("\n   wing est/truth:");
    for (int k = 2; k < 14; k++)
        printf(" %d:%.4f/%.4f", k, m->wing_err[k], rings[k]);
    printf("\n");
}

/* Unfitted (unit sums) filtered error: max and RMS over |d| <= r px of (m * (t - m))(d) / (m * m)(0), and its max relative to (m * m)(d) */
static void oracle_raw(const clred_psf *m, const clred_psf *t, double r)
{
    clred_psf tc;
    if (clred_psf_from_array(t->data, t->size, t->size, m->size, &tc) != CLRED_OK || tc.size != m->size)
        return;
    int n = (int)m->size, L = (int)r;
    double mm0 = 0, mx = 0, ss = 0, mxl = 0;
    size_t k = 0;
    for (int p = 0; p < n * n; p++)
        mm0 += (double)m->data[p] * m->data[p];
    for (int dy = -L; dy <= L; dy++)
        for (int dx = -L; dx <= L; dx++) {
            if (dx * dx + dy * dy > r * r)
                continue;
            double c = 0, cm = 0;
            for (int y = 0; y < n; y++)
                for (int x = 0; x < n; x++) {
                    int u = x - dx, w = y - dy;
                    if (u < 0 || w < 0 || u >= n || w >= n)
                        continue;
                    c += m->data[w * n + u] * ((double)tc.data[y * n + x] - m->data[y * n + x]);
                    cm += m->data[w * n + u] * m->data[y * n + x];
                }
            mx = fmax(mx, fabs(c) / mm0);
            mxl = fmax(mxl, fabs(c) / cm);
            ss += c * c / (mm0 * mm0);
            k++;
        }
    printf(" raw(r=%g) max %.4f rms %.4f maxlocal %.3f", r, mx, sqrt(ss / (double)k), mxl);
    clred_psf_free(&tc);
}


/* The true PSFs at (x, y): a small starless pair whose centre FWHM is
 * po's at (x, y) (the simulator's PSFs are the centre's). */
static int truth_at(const clred_pair_opts *po, double x, double y, clred_pair *t)
{
    clred_pair_opts o = *po;
    o.new_fwhm = clred_pair_fwhm_at(po, po->new_fwhm, x, y);
    o.ref_fwhm = clred_pair_fwhm_at(po, po->ref_fwhm, x, y);
    o.fwhm_grad_x = o.fwhm_grad_y = 0;
    o.width = o.height = 64;
    o.nstars = o.ngalaxies = o.ntransients = o.ncosmics = o.nsaturated = o.nholes = 0;
    return clred_simulate_pair(&o, t) == CLRED_OK;
}

/* Diagnostic (ZP_FIELD): on a 3 x 3 grid over the field, the model's error
 * (oracle_err, 1 FWHM) against the truth there, for the model evaluated
 * there and for the one at the field's centre (what a single tile uses). */
static void field_errors(const clred_pair_opts *po, const clred_psf *m, int ref)
{
    double cx = 0.5 * (double)(po->width - 1), cy = 0.5 * (double)(po->height - 1);
    clred_psf mc;
    if (clred_psf_eval(m, cx, cy, &mc) != CLRED_OK)
        return;
    printf("\n   %s field err (at / centre's):", ref ? "ref" : "new");
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 3; i++) {
            double x = (0.125 + 0.375 * i) * (double)(po->width - 1), y = (0.125 + 0.375 * j) * (double)(po->height - 1);
            clred_pair t;
            clred_psf me;
            if (!truth_at(po, x, y, &t))
                continue;
            if (clred_psf_eval(m, x, y, &me) == CLRED_OK) {
                const clred_psf *tp = ref ? &t.ref_psf : &t.new_psf;
                me.fwhm = mc.fwhm = m->fwhm;
                printf(" (%3.0f,%3.0f) %.4f/%.4f g %.2f", x, y, oracle_err(&me, tp, 1.0), oracle_err(&mc, tp, 1.0),
                       clred_psf_noise_gain(m, x, y));
                if (getenv("ZP_FIELDWING")) {
                    double rings[CLRED_PSF_WING_RINGS] = {0};
                    if (m->order > 0)
                        clred_psf_analytic_wings(&me);
                    truth_wing(&me, tp, rings);
                    printf("\n     wing truth/est:");
                    for (int k = 2; k < 12; k++)
                        printf(" %d:%.4f/%.4f", k, rings[k], me.wing_err[k]);
                    printf("\n");
                }
                clred_psf_free(&me);
            }
            clred_pair_free(&t);
        }
    clred_psf_free(&mc);
}

static void print_psf(const char *what, const clred_psf *m, const clred_psf *t)
{
    double cx, cy, m2, tx, ty, t2;
    psf_moments(m, &cx, &cy, &m2);
    psf_moments(t, &tx, &ty, &t2);
    if (getenv("ZP_RADIAL")) {
        clred_psf e;
        if (clred_psf_eval(m, m->x0, m->y0, &e) == CLRED_OK) {
            double ring[20] = {0}, tring[20] = {0};
            int hm = (int)e.size / 2, ht = (int)t->size / 2;
            for (int y = -hm; y <= hm; y++)
                for (int x = -hm; x <= hm; x++) {
                    int r = (int)lround(sqrt(x * x + y * y));
                    if (r < 20 && abs(x) <= ht && abs(y) <= ht) {
                        ring[r] += e.data[(y + hm) * (int)e.size + x + hm];
                        tring[r] += t->data[(y + ht) * (int)t->size + x + ht];
                    }
                }
            printf("\n   %s ring (meas-true)/true:", what);
            for (int r = 0; r < 14; r++)
                printf(" %+.3f", (ring[r] - tring[r]) / tring[r]);
            printf("\n");
            clred_psf_free(&e);
        }
    }
    if (m->order == 0)
        printf("  %s: eps est %.4f truth(1 FWHM) %.4f truth(2.5 FWHM) %.4f", what, m->model_err, oracle_err(m, t, 1.0),
               oracle_err(m, t, 2.5));
    if (getenv("ZP_WING"))
        oracle_wing(m, t);
    if (m->order == 0 && getenv("ZP_ORACLE")) {
        oracle_raw(m, t, 0.0);
        oracle_raw(m, t, 3.0);
        oracle_raw(m, t, 10.0);
    }
    printf("  %s: order %d n %zu size %zu fwhm %.3f/%.3f L1 %.4f dc (%+.3f %+.3f) m2 %.3f/%.3f", what, m->order,
           m->nstars, m->size, m->fwhm, t->fwhm, psf_l1(m, t), cx - tx, cy - ty, m2, t2);
}

/* Diagnostic: m's pixels replaced by t's within (inner) or beyond radius r, renormalised. */
static void hybrid(clred_psf *m, const clred_psf *t, double r, int inner)
{
    int hm = (int)m->size / 2, ht = (int)t->size / 2;
    double s = 0;
    for (int y = -hm; y <= hm; y++)
        for (int x = -hm; x <= hm; x++) {
            float *v = &m->data[(y + hm) * (int)m->size + x + hm];
            if ((sqrt(x * x + y * y) < r) == inner && abs(x) <= ht && abs(y) <= ht)
                *v = t->data[(y + ht) * (int)t->size + x + ht];
            s += *v;
        }
    for (size_t i = 0; i < m->size * m->size; i++)
        m->data[i] = (float)(m->data[i] / s);
}

/* Diagnostic: each candidate more than 6 px from every transient, with the
 * brightest reference pixel (less its median) within 20 px and its distance:
 * is it a bright star's ring, and how far out? */
static void near_stars(const clred_pair *p, const clred_candidate *c, size_t nc)
{
    const clred_image *r = &p->ref;
    for (size_t k = 0; k < nc; k++) {
        double dmin = 1e9;
        for (size_t t = 0; t < p->ntransients; t++)
            dmin = fmin(dmin, hypot(p->transients[t].x - c[k].x, p->transients[t].y - c[k].y));
        if (dmin < 6)
            continue;
        double best = -1e30, bd = 0;
        for (long j = lround(c[k].y) - 20; j <= lround(c[k].y) + 20; j++)
            for (long i = lround(c[k].x) - 20; i <= lround(c[k].x) + 20; i++) {
                if (i < 0 || j < 0 || i >= (long)r->width || j >= (long)r->height)
                    continue;
                double v = r->sci[(size_t)j * r->width + (size_t)i], d = hypot((double)i - c[k].x, (double)j - c[k].y);
                if (d <= 20 && isfinite(v) && v > best) {
                    best = v;
                    bd = d;
                }
            }
        printf("  NEAR score %+.1f star peak %.0f at %.1f px\n", c[k].score, best - 300, bd);
    }
}

int main(int argc, char **argv)
{
    unsigned first = argc > 2 ? (unsigned)atoi(argv[1]) : 1, last = argc > 2 ? (unsigned)atoi(argv[2]) : 8;
    int order = (int)env_num("ZP_ORDER", -1);
    size_t tile = (size_t)env_num("ZP_TILE", 0);
    double grad = env_num("ZP_GRAD", 0);
    clred_ctx *ctx = harness_ctx();
    size_t tf = 0, tfound = 0, tbright = 0;
    double texp = 0;
    for (unsigned seed = first; seed <= last; seed++) {
        clred_pair_opts po = pair_sources_opts(seed, CLRED_PSF_MOFFAT, 3.5, 4.5);
        po.fwhm_grad_x = 0.3 * grad;
        po.fwhm_grad_y = 0.15 * grad;
        clred_pair p;
        CHECK_OK(clred_simulate_pair(&po, &p));
        clred_psf pn = {0}, pr = {0};
        if (order >= 0) {
            clred_psf_opts pso = clred_psf_defaults();
            pso.order = order;
            pso.select_order = (int)env_num("ZP_SELECT", 1);
            pso.saturation = po.saturation;
            pso.size = (size_t)env_num("ZP_SIZE", (double)pso.size);
            CHECK_OK(clred_psf_model_measure(ctx, &p.new_img, &pso, &pn));
            CHECK_OK(clred_psf_model_measure(ctx, &p.ref, &pso, &pr));
        }
        if (order >= 0 && getenv("ZP_TRUEWING")) { /* the wing profiles from the truth */
            truth_wing(&pn, &p.new_psf, pn.wing_err);
            truth_wing(&pr, &p.ref_psf, pr.wing_err);
            pn.wing_ring_px = pr.wing_ring_px = 1.0;
        }
        if (getenv("ZP_NOWING")) /* the models' constant error only, without their wing profiles */
            pn.wing_ring_px = pr.wing_ring_px = 0;
        if (order == 0 && getenv("ZP_HYBRID")) {
            double r = env_num("ZP_HYBRID", 6);
            hybrid(&pn, &p.new_psf, fabs(r), r < 0);
            hybrid(&pr, &p.ref_psf, fabs(r), r < 0);
        }
        if (order == -2) { /* the true PSFs cut to ZP_SIZE and renormalised */
            CHECK_OK(clred_psf_from_array(p.new_psf.data, p.new_psf.size, p.new_psf.size, (size_t)env_num("ZP_SIZE", 25), &pn));
            CHECK_OK(clred_psf_from_array(p.ref_psf.data, p.ref_psf.size, p.ref_psf.size, (size_t)env_num("ZP_SIZE", 25), &pr));
            order = 0;
        }
        clred_zogy_opts zo = clred_zogy_defaults();
        zo.tile_size = tile;
        zo.psf_variation = (int)env_num("ZP_VARY", 0); /* the models' variation over a tile in V(S) */
        if (getenv("ZP_EPS")) /* a fixed PSF-model error for both images instead of the models' own */
            zo.psf_err_n = zo.psf_err_r = env_num("ZP_EPS", 0);
        clred_zogy_result z;
        CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, order >= 0 ? &pn : &p.new_psf,
                                     order >= 0 ? &pr : &p.ref_psf, &zo, &z));
        clred_candidate *c = NULL;
        size_t nc = 0;
        CHECK_OK(clred_find_candidates_dev(ctx, z.scorr, z.diff, &z.pd, NULL, &c, &nc));
        if (getenv("ZP_BRIGHT")) /* saturated stars' wings flagged, as clred subtract does */
            CHECK_OK(clred_candidates_bright(&p.new_img, order >= 0 ? &pn : &p.new_psf, c, nc));
        clred_image sc;
        CHECK_OK(clred_dimage_download(z.scorr, &sc));
        pair_score r = pair_score_candidates(&p, c, nc, &sc, CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE, "S_corr");
        if (getenv("ZP_NEAR"))
            near_stars(&p, c, nc);
        double e = pair_expected_false(sc.width, sc.height, z.pd.fwhm, 5.0);
        printf("SEED %2u false %2zu (exp %.3f) found %2zu/%2zu scorr_sd %.3f ntiles %zu eps %.4f %.4f", seed,
               r.false_clean, e, r.found, r.bright, z.scorr_scale, z.ntiles, z.psf_err_n, z.psf_err_r);
        printf(" wing %.4f %.4f", z.wing_err_n, z.wing_err_r);
        if (order >= 0 && getenv("ZP_FIELD")) {
            printf(" eps %.4f %.4f", pn.model_err, pr.model_err);
            field_errors(&po, &pn, 0);
            field_errors(&po, &pr, 1);
            double xy[18], vnn[9], vrr[9], vnr[9], c = 0.5 * (double)(po.width - 1);
            for (int k = 0; k < 9; k++) {
                xy[2 * k] = (0.125 + 0.375 * (k % 3)) * (double)(po.width - 1);
                xy[2 * k + 1] = (0.125 + 0.375 * (k / 3)) * (double)(po.height - 1);
            }
            if (clred_psf_pair_variation(&pn, &pr, c, c, xy, 9, vnn, vrr, vnr)) {
                printf("\n   variation sqrt(vnn) sqrt(vrr) pair:");
                for (int k = 0; k < 9; k++)
                    printf(" %.4f %.4f %.4f |", sqrt(vnn[k]), sqrt(vrr[k]), sqrt(fmax(vnn[k] - 2 * vnr[k] + vrr[k], 0)));
            }
            printf("\n");
        }
        if (order >= 0) {
            print_psf("new", &pn, &p.new_psf);
            print_psf("ref", &pr, &p.ref_psf);
        }
        printf("\n");
        fflush(stdout);
        tf += r.false_clean;
        tfound += r.found;
        tbright += r.bright;
        texp += e;
        free(c);
        clred_image_free(&sc);
        clred_zogy_result_free(&z);
        clred_psf_free(&pn);
        clred_psf_free(&pr);
        clred_pair_free(&p);
        order = (int)env_num("ZP_ORDER", -1);
    }
    printf("TOTAL order %d tile %zu grad %g: false %zu (expected %.3f), found %zu/%zu\n", order, tile, grad, tf, texp,
           tfound, tbright);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
