/* Seed sweep of test_al's varying_psf pair, run by hand (built with the
 * tests, never registered with ctest: it takes minutes and asserts nothing
 * beyond pair_score_candidates' per-candidate checks). For each seed it
 * subtracts the pair (Moffat PSF, FWHM +30 % across x and +15 % across y in
 * both images, six template holes) by Alard-Lupton with test_al's options and
 * by ZOGY (with the true PSFs of the field's centre, or measured PSF models:
 * zogy()), and prints per method the clean false candidates (no
 * unusable pixel near, not at the edge), completeness at S/N >= 8 and
 * fading sources found negative, and the sums against DMTN-006's
 * Gaussian-noise expectation (tests/pair_truth.c pair_expected_false).
 *
 *   sweep_al_varying [FIRST LAST]      (seeds, default 1 16)
 *
 * with CLRED_CACHE_DIR and POCL_CACHE_DIR set as for the tests (SWEEP_*
 * variables change AL's options: env_opts; SWEEP_SATDIST=1 adds
 * saturated_distances' lines; SWEEP_PROFILE=1 prints DETECT's profile by
 * distance to saturated pixels, saturated_profile (SWEEP_PROFILE=zogy: ZOGY's
 * S_corr); SWEEP_HOLECF=0 judges the hole check without the pair made again
 * without its holes (pair_score_candidates_holes); SWEEP_HOLEPROFILE=1 prints
 * what the holes did to S_corr by distance from them (hole_profile);
 * SWEEP_NOZOGY=1 skips
 * ZOGY; SWEEP_STAMP, SWEEP_SATDISC, SWEEP_ZOGY_GROW and SWEEP_BRIGHT as in sweep_pairs). The
 * unmatched candidates are listed (pair_score_candidates) under each seed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pair_truth.h"

typedef struct {
    size_t false_clean, found, bright, fading, fading_neg, found_bright;
    double expect;
} tally;

static void add(tally *t, const pair_score *r, double expect)
{
    t->false_clean += r->false_clean;
    t->found += r->found;
    t->bright += r->bright;
    t->fading += r->fading;
    t->fading_neg += r->fading_neg;
    t->found_bright += r->found_bright;
    t->expect += expect;
}

/* With SWEEP_SATDIST=1: each candidate without an unusable pixel near, its distance to the nearest saturated
 * pixel of either image and how many lie within 40 px (to tell saturated stars' wings from other residuals). */
static void saturated_distances(const clred_pair *p, const clred_candidate *c, size_t nc, size_t w, size_t h)
{
    const uint16_t *ms[2] = {p->new_img.mask, p->ref.mask};
    for (size_t k = 0; k < nc; k++) {
        if (c[k].mask_bits & (CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE))
            continue;
        double best = INFINITY;
        size_t nsat = 0;
        for (int m = 0; m < 2; m++)
            for (size_t y = 0; ms[m] && y < h; y++)
                for (size_t x = 0; x < w; x++)
                    if (ms[m][y * w + x] & CLRED_MASK_SATURATED) {
                        double d = hypot((double)x - c[k].x, (double)y - c[k].y);
                        best = fmin(best, d);
                        nsat += d < 40;
                    }
        printf("  clean candidate (%.1f, %.1f) score %.1f: nearest saturated pixel %.1f px, %zu within 40 px\n",
               c[k].x, c[k].y, c[k].score, best, nsat);
    }
}

/* With SWEEP_PROFILE=1: DETECT's median, 16/84 % quantiles, mean and rms by distance to the nearest saturated
 * pixel of either image, in 2-px annuli summed over the seeds, over pixels no mask leaves out. A residual ring
 * around bright stars (a kernel cut too short, say) shows as a median above 0 at a fixed distance whatever the
 * masked area is; the median, because transients and other stars' residuals dominate the mean and rms. */
enum { PROF_BINS = 40 };
enum { PROF_H = 400 }; /* a histogram of DETECT per annulus, 0.05 wide over [-10, 10) */
static double prof_n[PROF_BINS], prof_s[PROF_BINS], prof_ss[PROF_BINS], prof_hi[PROF_BINS];
static double prof_hist[PROF_BINS][PROF_H];

static void saturated_profile(const clred_pair *p, const clred_image *sc)
{
    size_t w = sc->width, h = sc->height, ns = 0;
    const uint16_t *ms[2] = {p->new_img.mask, p->ref.mask};
    size_t *sx = malloc(w * h * sizeof *sx), *sy = malloc(w * h * sizeof *sy);
    if (!sx || !sy)
        ns = w = h = 0; /* out of memory: this seed adds nothing */
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
            if ((ms[0] && (ms[0][y * w + x] & CLRED_MASK_SATURATED)) ||
                (ms[1] && (ms[1][y * w + x] & CLRED_MASK_SATURATED))) {
                sx[ns] = x;
                sy[ns++] = y;
            }
    for (size_t y = 0; ns && y < h; y++)
        for (size_t x = 0; x < w; x++) {
            float v = sc->sci[y * w + x];
            if (!isfinite(v) || (sc->mask && (sc->mask[y * w + x] & (CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE))))
                continue;
            double d2 = INFINITY;
            for (size_t k = 0; k < ns; k++) {
                double dx = (double)x - (double)sx[k], dy = (double)y - (double)sy[k];
                d2 = fmin(d2, dx * dx + dy * dy);
            }
            int b = (int)(sqrt(d2) / 2);
            if (b >= PROF_BINS)
                continue;
            prof_n[b]++;
            prof_s[b] += v;
            prof_ss[b] += (double)v * v;
            prof_hi[b] += fabs(v) > 4;
            int hb = (int)floor((v + 10.0) / 0.05);
            prof_hist[b][hb < 0 ? 0 : hb >= PROF_H ? PROF_H - 1 : hb]++;
        }
    free(sx);
    free(sy);
}

static double prof_quantile(int b, double q)
{
    double c = 0;
    for (int k = 0; k < PROF_H; k++)
        if ((c += prof_hist[b][k]) >= q * prof_n[b])
            return -10.0 + 0.05 * (k + 0.5);
    return 10.0;
}

static void print_profile(void)
{
    for (int b = 0; b < PROF_BINS; b++)
        if (prof_n[b] > 0)
            printf("PROFILE %2d-%2d px: n %8.0f  median %+.3f  q16 %+.3f  q84 %+.3f  mean %+.3f  rms %.3f  |D|>4 "
                   "%.5f\n",
                   2 * b, 2 * b + 2, prof_n[b], prof_quantile(b, 0.5), prof_quantile(b, 0.16), prof_quantile(b, 0.84),
                   prof_s[b] / prof_n[b], sqrt(prof_ss[b] / prof_n[b]), prof_hi[b] / prof_n[b]);
}

/* With SWEEP_HOLEPROFILE=1 (and the holeless pair, SWEEP_HOLECF not 0): what
 * the template's holes did to ZOGY's S_corr, |S_corr - S_corr without holes|
 * by Chebyshev distance in px from the nearest hole (1-29), histograms of
 * 0.01 up to 100, split by whether that hole was put on a star (the
 * simulator puts the even-numbered ones on stars). */
enum { HP_D = 30, HP_H = 10000 };
static double hp_hist[2][HP_D][HP_H], hp_max[2][HP_D];

static void hole_profile(const clred_pair *p, const clred_image *sc, const clred_image *s0)
{
    size_t w = sc->width, h = sc->height;
    for (size_t j = 0; j < h; j++)
        for (size_t i = 0; i < w; i++) {
            long best = HP_D, star = 0;
            for (size_t k = 0; k < p->nholes; k++) {
                const double *b = &p->hole_box[4 * k];
                double dx = fmax(fmax(b[0] - (double)i, (double)i - b[2]), 0),
                       dy = fmax(fmax(b[1] - (double)j, (double)j - b[3]), 0);
                long d = dx > 0 || dy > 0 ? lround(fmax(dx, dy) + 0.5) : 0; /* 0 on the hole, 1 next to it */
                if (d < best) {
                    best = d;
                    star = k % 2 == 0;
                }
            }
            double dd = fabs((double)sc->sci[j * w + i] - (double)s0->sci[j * w + i]);
            if (best < 1 || best >= HP_D || !isfinite(dd))
                continue;
            long bin = lround(floor(dd / 0.01));
            hp_hist[star][best][bin < HP_H ? bin : HP_H - 1]++;
            hp_max[star][best] = fmax(hp_max[star][best], dd);
        }
}

static double hp_quantile(int star, int d, double q)
{
    double n = 0, c = 0;
    for (int k = 0; k < HP_H; k++)
        n += hp_hist[star][d][k];
    for (int k = 0; k < HP_H; k++)
        if ((c += hp_hist[star][d][k]) >= q * n)
            return 0.01 * (k + 1);
    return NAN;
}

static void print_hole_profile(void)
{
    for (int d = 1; d < HP_D; d++) {
        printf("HOLES %2d px:", d);
        for (int star = 1; star >= 0; star--)
            printf("  %s |dS_corr| q50 %.2f q90 %.2f q99 %.2f max %.2f", star ? "on stars" : "elsewhere",
                   hp_quantile(star, d, 0.5), hp_quantile(star, d, 0.9), hp_quantile(star, d, 0.99), hp_max[star][d]);
        printf("\n");
    }
}

static void score_of(clred_ctx *ctx, const clred_pair *p, const clred_al_result *al, const clred_dimage *score,
                     const clred_dimage *diff, const clred_psf *pd, const char *what, const clred_image *holeless,
                     pair_score *r, double *expect)
{
    clred_candidate *c = NULL;
    size_t nc = 0;
    CHECK_OK(clred_find_candidates_dev(ctx, score, diff, pd, NULL, &c, &nc));
    /* saturated stars' wings flagged, as clred subtract does; SWEEP_BRIGHT=0: not */
    if (!getenv("SWEEP_BRIGHT") || atoi(getenv("SWEEP_BRIGHT")))
        CHECK_OK(clred_candidates_bright(&p->new_img, &p->new_psf, c, nc));
    /* AL's kernel-error flag, as clred subtract sets it; SWEEP_KERR=0: not */
    if (al && (!getenv("SWEEP_KERR") || atoi(getenv("SWEEP_KERR"))))
        CHECK_OK(clred_al_candidates_kernel(al, &p->new_img, &p->ref, 5.0, c, nc));
    clred_image sc;
    CHECK_OK(clred_dimage_download(score, &sc));
    if (getenv("SWEEP_SATDISC")) /* score a fixed area: nothing within this many px of a saturated pixel */
        nc = pair_exclude_saturated(p, atof(getenv("SWEEP_SATDISC")), &sc, c, nc);
    *r = pair_score_candidates_holes(p, c, nc, &sc, CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE, what, holeless, 5.0);
    *expect = pair_expected_false(sc.width, sc.height, pd->fwhm, 5.0);
    if (getenv("SWEEP_SATDIST"))
        saturated_distances(p, c, nc, sc.width, sc.height);
    const char *prof = getenv("SWEEP_PROFILE"); /* "zogy": ZOGY's S_corr instead of AL's DETECT */
    if (prof && strcmp(what, strcmp(prof, "zogy") == 0 ? "ZOGY S_corr" : "AL DETECT") == 0)
        saturated_profile(p, &sc);
    free(c);
    clred_image_free(&sc);
}

/* Overrides for experiments: SWEEP_KO (kernel_order), SWEEP_SELECT
 * (select_order), SWEEP_SNR (stamp_snr), SWEEP_STAMPS (max_stamps), SWEEP_FOM (fom_clip), SWEEP_BLOCK (block); SWEEP_NSTARS, SWEEP_NTRANSIENTS and SWEEP_NHOLES set the
 * pair's. */
static void env_opts(clred_al_opts *o)
{
    const char *v;
    if ((v = getenv("SWEEP_KO")))
        o->kernel_order = atoi(v);
    if ((v = getenv("SWEEP_SELECT")))
        o->select_order = atoi(v);
    if ((v = getenv("SWEEP_SNR")))
        o->stamp_snr = atof(v);
    if ((v = getenv("SWEEP_BLOCK")))
        o->block = atoi(v);
    if ((v = getenv("SWEEP_FOM")))
        o->fom_clip = atof(v);
    if ((v = getenv("SWEEP_HW")))
        o->half_width = atoi(v);
    if ((v = getenv("SWEEP_GWIDE"))) /* the widest Gaussian's scale (default 3) */
        o->gauss_scale[o->ngauss - 1] = atof(v);
    if ((v = getenv("SWEEP_FITHALF")))
        o->fit_half = atoi(v);
    if ((v = getenv("SWEEP_STAMPS")))
        o->max_stamps = atoi(v);
}

static void al_run(clred_ctx *ctx, const clred_pair *p, clred_al_result *a)
{
    clred_al_opts o = clred_al_defaults();
    o.decorrelate = 1;
    o.normalize = CLRED_AL_NORM_NEW;
    env_opts(&o);
    clred_status st = clred_subtract_al(ctx, &p->new_img, &p->ref, &p->new_psf, &p->ref_psf, &o, a);
    CHECK_OK(st);
    if (st != CLRED_OK)
        exit(harness_finish());
}

/* AL's DETECT of p, downloaded (the hole check's score of the pair without holes; p NULL: an empty image). */
static clred_image al_score(clred_ctx *ctx, const clred_pair *p)
{
    clred_image score;
    memset(&score, 0, sizeof score);
    clred_al_result a;
    if (!p)
        return score; /* no pair without holes: the distance-only check */
    al_run(ctx, p, &a);
    CHECK_OK(clred_dimage_download(a.detect, &score));
    clred_al_result_free(&a);
    return score;
}

/* p0: the same pair without holes (NULL: none), whose score judges the hole check. */
static void al(clred_ctx *ctx, const clred_pair *p, const clred_pair *p0, pair_score *r, double *expect, int *order,
               size_t *nused)
{
    clred_al_result a;
    clred_image s0 = al_score(ctx, p0);
    al_run(ctx, p, &a);
    score_of(ctx, p, &a, a.detect, a.decorr, &a.psf_diff, "AL DETECT", p0 ? &s0 : NULL, r, expect);
    clred_image_free(&s0);
    *order = a.kernel_order;
    *nused = a.nstamps_used;
    clred_al_result_free(&a);
}

/* ZOGY with the pair's true PSFs (the field's centre's: one PSF each, as a
 * user without a PSF model runs it), or with SWEEP_ZOGY_ORDER=1|2 with PSF
 * models of that order measured on each image, evaluated per 64-px tile. */
static void zogy_run(clred_ctx *ctx, const clred_pair *p, clred_zogy_result *z)
{
    int order = getenv("SWEEP_ZOGY_ORDER") ? atoi(getenv("SWEEP_ZOGY_ORDER")) : 0;
    clred_psf pn = {0}, pr = {0};
    clred_zogy_opts zo = clred_zogy_defaults();
    if (order > 0) {
        clred_psf_opts po = clred_psf_defaults();
        po.order = order; /* lowered by the measurement where the stars are too few */
        po.saturation = 60000;
        CHECK_OK(clred_psf_model_measure(ctx, &p->new_img, &po, &pn));
        CHECK_OK(clred_psf_model_measure(ctx, &p->ref, &po, &pr));
        zo.tile_size = 64;
    }
    if (getenv("SWEEP_ZOGY_GROW")) /* one growth for every unusable pixel, whatever the stamps' size */
        zo.grow = atoi(getenv("SWEEP_ZOGY_GROW"));
    clred_status st = clred_subtract_zogy(ctx, &p->new_img, &p->ref, order > 0 ? &pn : &p->new_psf,
                                          order > 0 ? &pr : &p->ref_psf, &zo, z);
    CHECK_OK(st);
    if (st != CLRED_OK)
        exit(harness_finish());
    clred_psf_free(&pn);
    clred_psf_free(&pr);
}

/* ZOGY's S_corr of p, downloaded (p NULL: an empty image). */
static clred_image zogy_score(clred_ctx *ctx, const clred_pair *p)
{
    clred_image score;
    memset(&score, 0, sizeof score);
    clred_zogy_result z;
    if (!p)
        return score; /* no pair without holes: the distance-only check */
    zogy_run(ctx, p, &z);
    CHECK_OK(clred_dimage_download(z.scorr, &score));
    clred_zogy_result_free(&z);
    return score;
}

static void zogy(clred_ctx *ctx, const clred_pair *p, const clred_pair *p0, pair_score *r, double *expect)
{
    clred_zogy_result z;
    clred_image s0 = zogy_score(ctx, p0);
    zogy_run(ctx, p, &z);
    score_of(ctx, p, NULL, z.scorr, z.diff, &z.pd, "ZOGY S_corr", p0 ? &s0 : NULL, r, expect);
    if (p0 && getenv("SWEEP_HOLEPROFILE")) {
        clred_image sc;
        CHECK_OK(clred_dimage_download(z.scorr, &sc));
        hole_profile(p, &sc, &s0);
        clred_image_free(&sc);
    }
    clred_zogy_result_free(&z);
    clred_image_free(&s0);
}

int main(int argc, char **argv)
{
    unsigned first = argc > 2 ? (unsigned)atoi(argv[1]) : 1, last = argc > 2 ? (unsigned)atoi(argv[2]) : 16;
    clred_ctx *ctx = harness_ctx();
    tally ta = {0}, tz = {0};
    for (unsigned seed = first; seed <= last; seed++) {
        clred_pair_opts po = clred_pair_defaults();
        po.seed = seed;
        po.fwhm_grad_x = 0.3;
        po.fwhm_grad_y = 0.15;
        po.ntransients = 45;
        po.nholes = 6;
        if (getenv("SWEEP_GRAD")) /* 0: one PSF, for comparison */
            po.fwhm_grad_x = 2 * (po.fwhm_grad_y = 0.15 * atof(getenv("SWEEP_GRAD")));
        if (getenv("SWEEP_NSTARS")) /* a denser field, for experiments */
            po.nstars = atoi(getenv("SWEEP_NSTARS"));
        if (getenv("SWEEP_NTRANSIENTS"))
            po.ntransients = atoi(getenv("SWEEP_NTRANSIENTS"));
        if (getenv("SWEEP_NHOLES"))
            po.nholes = atoi(getenv("SWEEP_NHOLES"));
        if (getenv("SWEEP_STAMP")) /* the PSF stamps' half size in FWHM (default 4) */
            po.psf_stamp_fwhm = atof(getenv("SWEEP_STAMP"));
        clred_pair p, p0;
        CHECK_OK(clred_simulate_pair(&po, &p));
        /* the same pair without its holes, to tell a candidate the holes made
         * from one beside them (pair_score_candidates_holes); SWEEP_HOLECF=0:
         * any candidate near a hole counts as its */
        int cf = po.nholes > 0 && (!getenv("SWEEP_HOLECF") || atoi(getenv("SWEEP_HOLECF")));
        if (cf) {
            clred_pair_opts po0 = po;
            po0.nholes = 0;
            CHECK_OK(clred_simulate_pair(&po0, &p0));
        }
        pair_score ra, rz;
        double ea, ez;
        int order;
        size_t nused;
        printf("seed %u AL:\n", seed);
        al(ctx, &p, cf ? &p0 : NULL, &ra, &ea, &order, &nused);
        printf("seed %u ZOGY:\n", seed);
        memset(&rz, 0, sizeof rz);
        ez = 0;
        if (!getenv("SWEEP_NOZOGY")) /* AL alone, for AL's experiments */
            zogy(ctx, &p, cf ? &p0 : NULL, &rz, &ez);
        printf("SEED %2u  AL: order %d, %2zu stamps, false %2zu (exp %.3f), found %2zu/%2zu, fading %zu/%zu  |  "
               "ZOGY: false %2zu (exp %.3f), found %2zu/%2zu, fading %zu/%zu\n",
               seed, order, nused, ra.false_clean, ea, ra.found, ra.bright, ra.fading_neg, ra.fading, rz.false_clean,
               ez, rz.found, rz.bright, rz.fading_neg, rz.fading);
        fflush(stdout);
        add(&ta, &ra, ea);
        add(&tz, &rz, ez);
        clred_pair_free(&p);
        if (cf)
            clred_pair_free(&p0);
    }
    printf("TOTAL seeds %u-%u  AL: false %zu (expected %.3f, 3x %.3f), found %zu/%zu (%.1f %%, %zu flagged BRIGHT), "
           "fading %zu/%zu  |  ZOGY: false %zu (expected %.3f), found %zu/%zu (%.1f %%, %zu BRIGHT), fading %zu/%zu\n",
           first, last, ta.false_clean, ta.expect, 3 * ta.expect, ta.found, ta.bright,
           100.0 * (double)ta.found / (double)(ta.bright ? ta.bright : 1), ta.found_bright, ta.fading_neg, ta.fading,
           tz.false_clean, tz.expect, tz.found, tz.bright, 100.0 * (double)tz.found / (double)(tz.bright ? tz.bright : 1),
           tz.found_bright, tz.fading_neg, tz.fading);
    if (getenv("SWEEP_PROFILE"))
        print_profile();
    if (getenv("SWEEP_HOLEPROFILE"))
        print_hole_profile();
    clred_ctx_destroy(ctx);
    return harness_finish();
}
