/* Seed sweep of AL and ZOGY on simulated pairs with one PSF over the field,
 * run by hand outside CI (built beside the tests, not registered with
 * ctest): per seed, each method's clean false candidates (no MASKED or EDGE
 * flag: what a broker keeps), its completeness at S/N >= 8 and DMTN-006's
 * expectation, with the sums at the end. The scoring is the tests' own
 * (pair_truth.c); test_al's and test_zogy's with_sources run one seed each.
 *
 *   sweep_pairs [first last [moffat|gaussian ref_fwhm new_fwhm [thresh]]]
 *
 *   sweep_pairs vary [first last [ref_depth]]
 *
 *   sweep_pairs blocks [first last [moffat|gaussian ref_fwhm new_fwhm]]
 *
 * The sky left in each method's difference: per seed, the median of
 * D / sigma in each 32 x 32 block (unmasked pixels away from the transients,
 * pair_block_medians):
 * the worst block, where it is, and the blocks' mean and spread. A pair
 * rendered so that a PSF-matched subtraction can null it leaves medians
 * within their noise (about 0.05-0.1: D's pixels are correlated).
 *
 * A PSF varying over the field instead (FWHM +30 % across x, +15 % across
 * y, stars only): the robust spread of AL's decorrelated D / sigma in each
 * quadrant, and DETECT's, 1 where the decorrelation fits the local kernel
 * (ref_depth: the reference's depth, default the simulator's; 1 makes its
 * noise as large as the new image's, where decorrelation matters most).
 *
 * Defaults: seeds 1-20, Moffat 3.5 -> 4.5 (test_al's first case), candidates
 * at |score| >= 5. A lower threshold (4: about 70 times DMTN-006's count at
 * 5) gives enough false peaks to compare with the expectation per seed. Run with
 * the tests' environment (CLRED_CACHE_DIR, POCL_CACHE_DIR). For experiments:
 * SWEEP_STAMP (the PSF stamps' half size in FWHM, clred_pair_opts.psf_stamp_fwhm),
 * SWEEP_SATDISC (score only beyond this many px from saturated pixels,
 * pair_exclude_saturated), SWEEP_ZOGY_GROW (ZOGY's grow), SWEEP_HOLECF=0 (the
 * hole check without the pair made again without its holes:
 * pair_score_candidates_holes) and SWEEP_BRIGHT=0
 * (candidates in saturated stars' wings not flagged: by default they are,
 * clred_candidates_bright, as clred subtract does, and are then not clean). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pair_truth.h"

typedef struct {
    size_t false_clean, found, bright, found_bright;
    double expect;
} sweep_line;

/* holes 0: the pair made again without its template holes (the simulator
 * draws them last, on their own stream: nothing else changes). */
static clred_pair make_pair(uint64_t seed, clred_psf_kind kind, double ref_fwhm, double new_fwhm, int holes)
{
    clred_pair_opts po = pair_sources_opts(seed, kind, ref_fwhm, new_fwhm);
    if (!holes)
        po.nholes = 0;
    if (getenv("SWEEP_STAMP")) /* the PSF stamps' half size in FWHM (default 4) */
        po.psf_stamp_fwhm = atof(getenv("SWEEP_STAMP"));
    clred_pair p;
    CHECK_OK(clred_simulate_pair(&po, &p));
    return p;
}

static double thresh = 5.0;

static sweep_line score_of(clred_ctx *ctx, const clred_pair *p, const clred_al_result *al, const clred_dimage *score,
                           const clred_dimage *diff, const clred_psf *psf, uint16_t skip, const char *what,
                           const clred_image *holeless)
{
    clred_candidate *c = NULL;
    size_t nc = 0;
    sweep_line s = {0};
    clred_image sc;
    memset(&sc, 0, sizeof sc);
    clred_cand_opts co = clred_cand_defaults();
    co.thresh = thresh;
    CHECK_OK(clred_find_candidates_dev(ctx, score, diff, psf, &co, &c, &nc));
    /* saturated stars' wings flagged, as clred subtract does; SWEEP_BRIGHT=0: not */
    if (!getenv("SWEEP_BRIGHT") || atoi(getenv("SWEEP_BRIGHT")))
        CHECK_OK(clred_candidates_bright(&p->new_img, &p->new_psf, c, nc));
    /* AL's kernel-error flag, as clred subtract sets it; SWEEP_KERR=0: not */
    if (al && (!getenv("SWEEP_KERR") || atoi(getenv("SWEEP_KERR"))))
        CHECK_OK(clred_al_candidates_kernel(al, &p->new_img, &p->ref, thresh, c, nc));
    CHECK_OK(clred_dimage_download(score, &sc));
    if (getenv("SWEEP_SATDISC")) /* score a fixed area: nothing within this many px of a saturated pixel */
        nc = pair_exclude_saturated(p, atof(getenv("SWEEP_SATDISC")), &sc, c, nc);
    pair_score r = pair_score_candidates_holes(p, c, nc, &sc, skip, what, holeless, thresh);
    s.false_clean = r.false_clean;
    s.found = r.found;
    s.bright = r.bright;
    s.found_bright = r.found_bright;
    s.expect = pair_expected_false(sc.width, sc.height, psf->fwhm, thresh);
    free(c);
    clred_image_free(&sc);
    return s;
}

static void al_run(clred_ctx *ctx, const clred_pair *p, clred_al_result *a)
{
    clred_al_opts o = clred_al_defaults();
    o.decorrelate = 1;
    o.normalize = CLRED_AL_NORM_NEW;
    CHECK_OK(clred_subtract_al(ctx, &p->new_img, &p->ref, &p->new_psf, &p->ref_psf, &o, a));
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
static sweep_line run_al(clred_ctx *ctx, const clred_pair *p, const clred_pair *p0)
{
    clred_al_result a;
    clred_image s0 = al_score(ctx, p0);
    al_run(ctx, p, &a);
    sweep_line s = score_of(ctx, p, &a, a.detect, a.decorr, &a.psf_diff, CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE,
                            "AL D/sigma", p0 ? &s0 : NULL);
    clred_al_result_free(&a);
    clred_image_free(&s0);
    return s;
}

static void zogy_run(clred_ctx *ctx, const clred_pair *p, clred_zogy_result *z)
{
    clred_zogy_opts zo = clred_zogy_defaults();
    if (getenv("SWEEP_ZOGY_GROW")) /* one growth for every unusable pixel, whatever the stamps' size */
        zo.grow = atoi(getenv("SWEEP_ZOGY_GROW"));
    CHECK_OK(clred_subtract_zogy(ctx, &p->new_img, &p->ref, &p->new_psf, &p->ref_psf, &zo, z));
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

static sweep_line run_zogy(clred_ctx *ctx, const clred_pair *p, const clred_pair *p0)
{
    clred_zogy_result z;
    clred_image s0 = zogy_score(ctx, p0);
    zogy_run(ctx, p, &z);
    sweep_line s = score_of(ctx, p, NULL, z.scorr, z.diff, &z.pd, CLRED_MASK_UNUSABLE, "ZOGY S_corr", p0 ? &s0 : NULL);
    clred_zogy_result_free(&z);
    clred_image_free(&s0);
    return s;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* 1.4826 MAD of the usable values of sc in [x0, x1) x [y0, y1). */
static double robust_spread(const clred_image *sc, size_t x0, size_t x1, size_t y0, size_t y1)
{
    float *v = malloc((x1 - x0) * (y1 - y0) * sizeof *v);
    size_t n = 0;
    for (size_t y = y0; y < y1; y++)
        for (size_t x = x0; x < x1; x++) {
            size_t i = y * sc->width + x;
            if (isfinite(sc->sci[i]) && !(sc->mask && (sc->mask[i] & (CLRED_MASK_UNUSABLE | CLRED_MASK_EDGE))))
                v[n++] = sc->sci[i];
        }
    if (n < 10) {
        free(v);
        return NAN;
    }
    qsort(v, n, sizeof *v, cmp_float);
    float med = v[n / 2];
    for (size_t i = 0; i < n; i++)
        v[i] = fabsf(v[i] - med);
    qsort(v, n, sizeof *v, cmp_float);
    double s = 1.4826 * v[n / 2];
    free(v);
    return s;
}

static int sweep_vary(clred_ctx *ctx, int first, int last, double ref_depth)
{
    double sum[8] = {0}, sum2[8] = {0};
    int n = 0;
    for (int seed = first; seed <= last; seed++) {
        clred_pair_opts po = clred_pair_defaults();
        po.ngalaxies = po.ntransients = po.ncosmics = po.nsaturated = 0;
        po.nstars = 50;
        po.seed = (uint64_t)seed;
        po.fwhm_grad_x = 0.3;
        po.fwhm_grad_y = 0.15;
        if (ref_depth > 0)
            po.ref_depth = ref_depth;
        clred_pair p;
        CHECK_OK(clred_simulate_pair(&po, &p));
        clred_al_opts o = clred_al_defaults();
        o.decorrelate = 1;
        clred_al_result a;
        CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, &o, &a));
        clred_image sc;
        memset(&sc, 0, sizeof sc);
        CHECK_OK(clred_dimage_download(a.score, &sc));
        clred_image de;
        memset(&de, 0, sizeof de);
        CHECK_OK(clred_dimage_download(a.detect, &de));
        size_t hw = sc.width / 2, hh = sc.height / 2;
        double q[8];
        for (int k = 0; k < 8; k++) {
            const clred_image *im = k < 4 ? &sc : &de;
            int c = k % 4;
            q[k] = robust_spread(im, c % 2 ? hw : 0, c % 2 ? sc.width : hw, c / 2 ? hh : 0, c / 2 ? sc.height : hh);
        }
        printf("SEED %2d  kernel order %d  spread by quadrant (x0y0 x1y0 x0y1 x1y1): D/sigma %.3f %.3f %.3f %.3f, "
               "DETECT %.3f %.3f %.3f %.3f\n",
               seed, a.kernel_order, q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]);
        for (int k = 0; k < 8; k++)
            sum[k] += q[k], sum2[k] += q[k] * q[k];
        n++;
        clred_image_free(&de);
        clred_image_free(&sc);
        clred_al_result_free(&a);
        clred_pair_free(&p);
    }
    printf("MEAN seeds %d-%d  spread by quadrant, D/sigma then DETECT:", first, last);
    for (int k = 0; k < 8; k++)
        printf(" %.3f +- %.3f", sum[k] / n, sqrt(fmax(sum2[k] / n - sum[k] * sum[k] / n / n, 0)));
    printf("\n");
    clred_ctx_destroy(ctx);
    return harness_finish();
}

static void print_blocks(const clred_pair *p, const char *what, const clred_dimage *diff)
{
    clred_image d;
    memset(&d, 0, sizeof d);
    CHECK_OK(clred_dimage_download(diff, &d));
    double worst, wx, wy, mean, sd;
    size_t nb = pair_block_medians(p, &d, 32, &worst, &wx, &wy, &mean, &sd);
    printf("  %s: %zu blocks, median D/sigma worst %+.3f at (%.0f, %.0f), mean %+.3f sd %.3f\n", what, nb, worst, wx,
           wy, mean, sd);
    clred_image_free(&d);
}

static int sweep_blocks(clred_ctx *ctx, int first, int last, clred_psf_kind kind, double ref_fwhm, double new_fwhm)
{
    for (int seed = first; seed <= last; seed++) {
        clred_pair p = make_pair((uint64_t)seed, kind, ref_fwhm, new_fwhm, 1);
        printf("SEED %2d\n", seed);
        clred_al_result a;
        CHECK_OK(clred_subtract_al(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, NULL, &a));
        print_blocks(&p, "AL  ", a.diff);
        clred_al_result_free(&a);
        clred_zogy_result z;
        CHECK_OK(clred_subtract_zogy(ctx, &p.new_img, &p.ref, &p.new_psf, &p.ref_psf, NULL, &z));
        print_blocks(&p, "ZOGY", z.diff);
        clred_zogy_result_free(&z);
        fflush(stdout);
        clred_pair_free(&p);
    }
    clred_ctx_destroy(ctx);
    return harness_finish();
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "blocks"))
        return sweep_blocks(harness_ctx(), argc > 3 ? atoi(argv[2]) : 1, argc > 3 ? atoi(argv[3]) : 5,
                            argc > 4 && !strcmp(argv[4], "gaussian") ? CLRED_PSF_GAUSSIAN : CLRED_PSF_MOFFAT,
                            argc > 6 ? atof(argv[5]) : 3.5, argc > 6 ? atof(argv[6]) : 4.5);
    if (argc > 1 && !strcmp(argv[1], "vary"))
        return sweep_vary(harness_ctx(), argc > 3 ? atoi(argv[2]) : 1, argc > 3 ? atoi(argv[3]) : 20,
                          argc > 4 ? atof(argv[4]) : 0.0);
    int first = argc > 2 ? atoi(argv[1]) : 1, last = argc > 2 ? atoi(argv[2]) : 20;
    clred_psf_kind kind = argc > 3 && !strcmp(argv[3], "gaussian") ? CLRED_PSF_GAUSSIAN : CLRED_PSF_MOFFAT;
    double ref_fwhm = argc > 5 ? atof(argv[4]) : 3.5, new_fwhm = argc > 5 ? atof(argv[5]) : 4.5;
    thresh = argc > 6 ? atof(argv[6]) : 5.0;
    clred_ctx *ctx = harness_ctx();
    sweep_line al_sum = {0}, zo_sum = {0};
    size_t al_images = 0, zo_images = 0;
    for (int seed = first; seed <= last; seed++) {
        clred_pair p = make_pair((uint64_t)seed, kind, ref_fwhm, new_fwhm, 1), p0;
        /* SWEEP_HOLECF=0: any candidate near a hole counts as its (pair_score_candidates_holes) */
        int cf = p.nholes > 0 && (!getenv("SWEEP_HOLECF") || atoi(getenv("SWEEP_HOLECF")));
        if (cf)
            p0 = make_pair((uint64_t)seed, kind, ref_fwhm, new_fwhm, 0);
        printf("seed %d:\n", seed);
        sweep_line a = run_al(ctx, &p, cf ? &p0 : NULL), z = run_zogy(ctx, &p, cf ? &p0 : NULL);
        printf("SEED %2d  AL false %zu complete %zu/%zu (%zu flagged BRIGHT) expect %.3f | ZOGY false %zu complete "
               "%zu/%zu (%zu BRIGHT) expect %.3f\n",
               seed, a.false_clean, a.found, a.bright, a.found_bright, a.expect, z.false_clean, z.found, z.bright,
               z.found_bright, z.expect);
        fflush(stdout);
        al_images += a.false_clean > 0;
        zo_images += z.false_clean > 0;
        al_sum.false_clean += a.false_clean, al_sum.found += a.found, al_sum.bright += a.bright;
        zo_sum.false_clean += z.false_clean, zo_sum.found += z.found, zo_sum.bright += z.bright;
        al_sum.found_bright += a.found_bright, zo_sum.found_bright += z.found_bright;
        al_sum.expect += a.expect, zo_sum.expect += z.expect;
        clred_pair_free(&p);
        if (cf)
            clred_pair_free(&p0);
    }
    printf("TOTAL seeds %d-%d  AL %zu clean false in %zu images (expected %.2f, 3x %.2f), complete %zu/%zu (%zu "
           "flagged BRIGHT) | ZOGY %zu in %zu images (expected %.2f), complete %zu/%zu (%zu BRIGHT)\n",
           first, last, al_sum.false_clean, al_images, al_sum.expect, 3 * al_sum.expect, al_sum.found, al_sum.bright,
           al_sum.found_bright, zo_sum.false_clean, zo_images, zo_sum.expect, zo_sum.found, zo_sum.bright,
           zo_sum.found_bright);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
