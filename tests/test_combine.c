/* clred_combine_images against the double-precision reference (tests/reference/
 * combine_ref.c): every method x rejection, N = 1..4, 20 and 65+ (the general
 * kernel), NaN, masks, fully masked and fully clipped pixels, weights, scaling,
 * VAR planes, tied values, the forced general kernel, banding under a tiny
 * memory limit, and float accumulation.
 *
 * Tolerances. Inputs are float32 and the kernel accumulates in double, like the
 * reference, so sums agree to ~1e-15 and the only visible error is the final
 * rounding to float32 (6e-8 relative; scaled values are float32 in both, by
 * definition). So values are checked to 1e-6 relative (+1e-6 absolute),
 * variances to 1e-5 relative (a difference of squares loses a few more bits
 * before the float32 rounding), counts and masks exactly. With
 * float accumulation (CLRED_FLOAT_ACCUM=1) sums of 20 values carry ~N * 6e-8
 * relative error: 2e-5 relative on values, 1e-3 on variances, and a clipping
 * decision may flip for a value within ~1e-4 of a threshold, so up to 0.5% of
 * pixels may differ in their counts there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "combine_ref.h"
#include "harness.h"
#include "internal.h"

#define W 37
#define H 23

typedef struct {
    int nan;        /* some values NaN */
    int masks;      /* mask planes with BAD and harmless bits */
    int var;        /* VAR planes */
    int ties;       /* integer values: many ties */
    int outliers;   /* cosmic-ray-like high values and some low ones */
    int levels;     /* frames at different levels (for scaling) */
} stack_kind;

static clred_image *make_stack(size_t n, size_t w, size_t h, stack_kind k, uint64_t seed)
{
    clred_image *fr = calloc(n, sizeof *fr);
    harness_rng rng = {seed};
    for (size_t f = 0; f < n; f++) {
        clred_image_alloc(&fr[f], w, h, k.var, k.masks);
        double level = k.levels ? 800.0 + 40.0 * (double)f : 1000.0;
        double gain = k.levels ? 1.0 + 0.05 * (double)(f % 5) : 1.0;
        for (size_t i = 0; i < w * h; i++) {
            double v = level + 10.0 * gain * harness_normal(&rng);
            double u = harness_uniform(&rng);
            if (k.outliers && u < 0.03)
                v += 400.0 + 100.0 * harness_uniform(&rng);
            else if (k.outliers && u < 0.04)
                v -= 300.0;
            if (k.ties)
                v = floor(v / 4.0);
            if (k.nan && harness_uniform(&rng) < 0.02)
                v = NAN;
            fr[f].sci[i] = (float)v;
            if (k.var)
                fr[f].var[i] = (float)(50.0 + 100.0 * harness_uniform(&rng) + (f % 3));
            if (k.masks) {
                double m = harness_uniform(&rng);
                fr[f].mask[i] = m < 0.03 ? CLRED_MASK_BAD : m < 0.06 ? CLRED_MASK_INTERPOLATED : 0;
                if (i % w == 3) /* a column masked in every frame: no data */
                    fr[f].mask[i] |= CLRED_MASK_SATURATED;
            }
        }
    }
    return fr;
}

static void free_stack(clred_image *fr, size_t n)
{
    for (size_t f = 0; f < n; f++)
        clred_image_free(&fr[f]);
    free(fr);
}

typedef struct {
    double sci_rel, var_rel;
    double max_count_mismatch; /* fraction of pixels whose counts/mask may differ */
} tolerance;

static const tolerance tol_double = {1e-6, 1e-5, 0.0};
static const tolerance tol_float = {2e-5, 1e-3, 0.005};

static int close_to(double got, double want, double rel)
{
    if (isnan(got) || isnan(want))
        return isnan(got) && isnan(want);
    return fabs(got - want) <= rel * fabs(want) + 1e-6;
}

/* Compares a device result with the reference; returns the number of bad pixels. */
static size_t compare(const clred_combine_result *r, const combine_ref_result *ref, size_t npix, tolerance tol,
                      const char *what)
{
    size_t bad_values = 0, bad_counts = 0;
    for (size_t p = 0; p < npix; p++) {
        int counts_ok = r->ncontrib[p] == ref->ncontrib[p] && r->image.mask[p] == ref->mask[p] &&
                        (!r->nrejected || r->nrejected[p] == ref->nrejected[p]);
        if (!counts_ok) {
            if (bad_counts++ < 3 && tol.max_count_mismatch == 0.0)
                fprintf(stderr, "%s: pixel %zu ncontrib %g/%g mask %u/%u\n", what, p, r->ncontrib[p],
                        ref->ncontrib[p], r->image.mask[p], ref->mask[p]);
            continue;
        }
        if (!close_to(r->image.sci[p], ref->sci[p], tol.sci_rel) ||
            !close_to(r->image.var[p], ref->var[p], tol.var_rel)) {
            if (bad_values++ < 3)
                fprintf(stderr, "%s: pixel %zu sci %.9g/%.9g var %.9g/%.9g (n=%g)\n", what, p, r->image.sci[p],
                        ref->sci[p], r->image.var[p], ref->var[p], ref->ncontrib[p]);
        }
    }
    CHECK_MSG(bad_values == 0, "%s: %zu of %zu pixels differ from the reference", what, bad_values, npix);
    CHECK_MSG((double)bad_counts <= tol.max_count_mismatch * (double)npix,
              "%s: %zu of %zu pixels differ in counts or mask", what, bad_counts, npix);
    return bad_values + bad_counts;
}

static void check_against_reference(clred_ctx *ctx, const clred_image *fr, size_t n, const clred_combine_opts *o,
                                    tolerance tol, const char *what)
{
    clred_combine_result r;
    combine_ref_result ref;
    clred_status st = clred_combine_images(ctx, fr, n, o, &r);
    CHECK_MSG(st == CLRED_OK, "%s: %s", what, clred_last_error());
    if (st != CLRED_OK)
        return;
    CHECK(combine_ref_images(fr, n, o, &ref) == 0);
    compare(&r, &ref, fr[0].width * fr[0].height, tol, what);
    if (o->scale != CLRED_SCALE_NONE) {
        CHECK(r.scales != NULL);
        for (size_t f = 0; r.scales && f < n; f++)
            CHECK_NEAR(r.scales[f], ref.scales[f], 1e-12 * fabs(ref.scales[f]) + 1e-9);
    } else {
        CHECK(r.scales == NULL);
    }
    combine_ref_free(&ref);
    clred_combine_result_free(&r);
}

static const char *method_names[] = {"mean", "median", "sum", "min", "max"};
static const char *reject_names[] = {"none", "sigclip", "minmax", "winsorized", "percentile"};

/* Every method with every rejection for one stack. */
static void all_methods(clred_ctx *ctx, const clred_image *fr, size_t n, clred_combine_opts base, tolerance tol,
                        const char *label)
{
    for (int m = 0; m <= CLRED_COMBINE_MAX; m++)
        for (int j = 0; j <= CLRED_REJECT_PERCENTILE; j++) {
            clred_combine_opts o = base;
            o.method = (clred_combine_method)m;
            o.reject = (clred_reject_method)j;
            o.want_rejected_map = 1;
            char what[160];
            snprintf(what, sizeof what, "%s N=%zu %s/%s", label, n, method_names[m], reject_names[j]);
            check_against_reference(ctx, fr, n, &o, tol, what);
        }
}

/* Every method x rejection on stacks of the given depths (1..4: NMAX=8; 9:
 * 16; 20: 32; 40: 64; 65: the general kernel). */
static void test_counts_of_frames(clred_ctx *ctx, const size_t *counts, size_t ncounts)
{
    stack_kind k = {.nan = 1, .masks = 1, .outliers = 1};
    for (size_t i = 0; i < ncounts; i++) {
        size_t n = counts[i];
        clred_image *fr = make_stack(n, W, H, k, 100 + n);
        all_methods(ctx, fr, n, clred_combine_defaults(), tol_double, "nan+mask+outliers");
        free_stack(fr, n);
    }
}

static void test_clipping_options(clred_ctx *ctx)
{
    stack_kind k = {.nan = 1, .outliers = 1};
    clred_image *fr = make_stack(20, W, H, k, 7);
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEAN;
    const int centres[] = {0, 1, 0, 1}, spreads[] = {0, 0, 1, 1};
    for (int r = CLRED_REJECT_SIGCLIP; r <= CLRED_REJECT_WINSORIZED; r += 2)
        for (int c = 0; c < 4; c++) {
            o.reject = (clred_reject_method)r;
            o.centre_mean = centres[c];
            o.spread_mad = spreads[c];
            o.sigma_lower = 2.0;
            o.sigma_upper = 2.5;
            o.max_iters = c == 3 ? 0 : 1 + c;
            char what[120];
            snprintf(what, sizeof what, "%s centre=%d mad=%d iters=%d", reject_names[r], o.centre_mean,
                     o.spread_mad, o.max_iters);
            check_against_reference(ctx, fr, 20, &o, tol_double, what);
        }
    o = clred_combine_defaults();
    o.reject = CLRED_REJECT_MINMAX;
    o.nlow = 3;
    o.nhigh = 0;
    check_against_reference(ctx, fr, 20, &o, tol_double, "minmax 3/0");
    o.reject = CLRED_REJECT_PERCENTILE;
    o.pct_low = 25;
    o.pct_high = 60;
    check_against_reference(ctx, fr, 20, &o, tol_double, "percentile 25/60");
    free_stack(fr, 20);
}

/* Integer values tie often: weights and variances must follow the frame
 * each kept value came from, with ties ordered by frame (depths 3, 20, 66). */
static void test_weights_variance_ties(clred_ctx *ctx, size_t n)
{
    stack_kind k = {.var = 1, .ties = 1, .outliers = 1, .masks = 1};
    clred_image *fr = make_stack(n, W, H, k, 300 + n);
    double *weights = malloc(n * sizeof *weights);
    for (size_t f = 0; f < n; f++)
        weights[f] = 0.5 + (double)(f % 7) * 0.25;
    clred_combine_opts o = clred_combine_defaults();
    all_methods(ctx, fr, n, o, tol_double, "var+ties");
    o.weights = weights;
    all_methods(ctx, fr, n, o, tol_double, "var+ties+weights");
    free(weights);
    free_stack(fr, n);
}

/* Weights without VAR planes: variance from the scatter; bad weights. */
static void test_weights_scatter(clred_ctx *ctx)
{
    stack_kind k2 = {.outliers = 1};
    clred_image *fr = make_stack(9, W, H, k2, 11);
    double weights[9] = {1, 2, 3, 1, 2, 3, 1, 2, 3};
    clred_combine_opts o = clred_combine_defaults();
    o.weights = weights;
    all_methods(ctx, fr, 9, o, tol_double, "weights");
    /* Bad weights are usage errors naming the weight. */
    weights[4] = -1;
    clred_combine_result r;
    CHECK(clred_combine_images(ctx, fr, 9, &o, &r) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "weight 4") != NULL);
    free_stack(fr, 9);
}

static void test_scaling(clred_ctx *ctx)
{
    stack_kind k = {.nan = 1, .levels = 1, .var = 1, .outliers = 1};
    clred_image *fr = make_stack(8, W, H, k, 21);
    clred_combine_opts o = clred_combine_defaults();
    o.scale = CLRED_SCALE_MULTIPLICATIVE;
    all_methods(ctx, fr, 8, o, tol_double, "mult-scale");
    o.scale = CLRED_SCALE_ADDITIVE;
    all_methods(ctx, fr, 8, o, tol_double, "add-scale");
    /* A frame whose median is 0 cannot be scaled multiplicatively. */
    for (size_t i = 0; i < W * H; i++)
        fr[3].sci[i] = (float)((double)i - (double)(W * H - 1) / 2.0);
    o.scale = CLRED_SCALE_MULTIPLICATIVE;
    clred_combine_result r;
    CHECK(clred_combine_images(ctx, fr, 8, &o, &r) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "frame 3") != NULL);
    free_stack(fr, 8);
}

/* Known answers that do not rely on the reference. */
static void test_known_values(clred_ctx *ctx)
{
    float a[] = {1, 5, NAN, 2}, b[] = {2, NAN, NAN, 4}, c[] = {9, 6, NAN, 1}, d[] = {4, 7, NAN, 3};
    float *planes[] = {a, b, c, d};
    clred_image fr[4];
    for (int f = 0; f < 4; f++) {
        clred_image_alloc(&fr[f], 4, 1, 0, 0);
        memcpy(fr[f].sci, planes[f], sizeof a);
    }
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEDIAN;
    clred_combine_result r;
    CHECK_OK(clred_combine_images(ctx, fr, 4, &o, &r));
    CHECK_NEAR(r.image.sci[0], 3.0, 0);  /* {1,2,4,9}: mean of 2 and 4 */
    CHECK_NEAR(r.image.sci[1], 6.0, 0);  /* {5,6,7} */
    CHECK(isnan(r.image.sci[2]) && r.image.mask[2] == CLRED_MASK_NO_DATA && r.ncontrib[2] == 0);
    CHECK_NEAR(r.image.sci[3], 2.5, 0);
    CHECK_NEAR(r.ncontrib[1], 3, 0);
    clred_combine_result_free(&r);
    o.method = CLRED_COMBINE_SUM; /* mean * N: the NaN in pixel 1 does not lower the sum */
    CHECK_OK(clred_combine_images(ctx, fr, 4, &o, &r));
    CHECK_NEAR(r.image.sci[0], 16.0, 1e-5);
    CHECK_NEAR(r.image.sci[1], 24.0, 1e-5);
    clred_combine_result_free(&r);
    o.method = CLRED_COMBINE_MEAN;
    o.reject = CLRED_REJECT_MINMAX;
    o.nlow = 2;
    o.nhigh = 1;
    o.want_rejected_map = 1;
    CHECK_OK(clred_combine_images(ctx, fr, 4, &o, &r));
    CHECK_NEAR(r.image.sci[0], 4.0, 1e-6);
    CHECK(isnan(r.image.sci[1]) && r.image.mask[1] == (CLRED_MASK_NO_DATA | CLRED_MASK_CLIPPED));
    CHECK_NEAR(r.nrejected[1], 3, 0);
    CHECK(r.image.header != NULL);
    double ncombine = 0;
    CHECK(clred_header_get_double(r.image.header, "NCOMBINE", &ncombine) && ncombine == 4);
    clred_combine_result_free(&r);
    for (int f = 0; f < 4; f++)
        clred_image_free(&fr[f]);
}

static int identical(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((isnan(a[i]) && isnan(b[i])) || a[i] == b[i]))
            return 0;
    return 1;
}

static int same_result(const clred_combine_result *a, const clred_combine_result *b, size_t npix)
{
    return identical(a->image.sci, b->image.sci, npix) && identical(a->image.var, b->image.var, npix) &&
           identical(a->ncontrib, b->ncontrib, npix) && memcmp(a->image.mask, b->image.mask, npix * 2) == 0 &&
           (!a->nrejected || identical(a->nrejected, b->nrejected, npix));
}

/* The general kernel, forced for small N, gives the private kernel's bits;
 * so does the fast kernel, which only larger stacks take unless forced
 * (CLRED_COMBINE_FAST); and so does the private key array's other form
 * (CLRED_COMBINE_INDEXED_KEYS: keys in registers, a GPU's, or read at their
 * ranks, a CPU's), checked at NMAX=8 only: its code is the same at every
 * NMAX but the network, which this device's form checks at each. */
static void test_general_path_identical(clred_ctx *ctx, const size_t *counts, size_t ncounts)
{
    stack_kind k = {.nan = 1, .masks = 1, .outliers = 1, .var = 1, .ties = 1};
    for (size_t i = 0; i < ncounts; i++) {
        size_t n = counts[i];
        clred_image *fr = make_stack(n, W, H, k, 500 + n);
        for (int m = 0; m <= CLRED_COMBINE_MAX; m++)
            for (int j = 0; j <= CLRED_REJECT_PERCENTILE; j++)
                for (int mad = 0; mad <= 1; mad++) {
                    clred_combine_opts o = clred_combine_defaults();
                    o.method = (clred_combine_method)m;
                    o.reject = (clred_reject_method)j;
                    o.spread_mad = mad;
                    o.want_rejected_map = 1;
                    clred_combine_result a, b, c, d;
                    unsetenv("CLRED_COMBINE_GENERAL");
                    CHECK_OK(clred_combine_images(ctx, fr, n, &o, &a));
                    setenv("CLRED_COMBINE_GENERAL", "1", 1);
                    CHECK_OK(clred_combine_images(ctx, fr, n, &o, &b));
                    unsetenv("CLRED_COMBINE_GENERAL");
                    setenv("CLRED_COMBINE_FAST", "1", 1);
                    CHECK_OK(clred_combine_images(ctx, fr, n, &o, &c));
                    unsetenv("CLRED_COMBINE_FAST");
                    CHECK_MSG(same_result(&a, &b, W * H), "general kernel differs: N=%zu %s/%s mad=%d", n,
                              method_names[m], reject_names[j], mad);
                    CHECK_MSG(same_result(&a, &c, W * H), "fast kernel differs: N=%zu %s/%s mad=%d", n,
                              method_names[m], reject_names[j], mad);
                    if (n <= 8) {
                        /* the other form than this device's */
                        setenv("CLRED_COMBINE_INDEXED_KEYS", clred_ctx_device(ctx)->is_cpu ? "0" : "1", 1);
                        CHECK_OK(clred_combine_images(ctx, fr, n, &o, &d));
                        unsetenv("CLRED_COMBINE_INDEXED_KEYS");
                        CHECK_MSG(same_result(&a, &d, W * H), "keys in registers differ: N=%zu %s/%s mad=%d", n,
                                  method_names[m], reject_names[j], mad);
                        clred_combine_result_free(&d);
                    }
                    clred_combine_result_free(&a);
                    clred_combine_result_free(&b);
                    clred_combine_result_free(&c);
                }
        free_stack(fr, n);
    }
}

/* Tiny memory limits force many bands, down to one row: same bits. */
static void test_banding(clred_ctx *ctx)
{
    const size_t n = 20, w = 61, h = 45;
    stack_kind k = {.nan = 1, .masks = 1, .outliers = 1, .var = 1};
    clred_image *fr = make_stack(n, w, h, k, 77);
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEDIAN;
    o.reject = CLRED_REJECT_SIGCLIP;
    o.want_rejected_map = 1;
    clred_combine_result whole, part;
    CHECK_OK(clred_combine_images(ctx, fr, n, &o, &whole));
    CHECK(whole.bands == 1);
    int saw_one_row = 0, saw_several = 0;
    /* The whole stack is ~220 KB; these limits are far below it. */
    const uint64_t limits[] = {120000, 40000, 20000, 12000, 9000, 7000};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        clred_ctx_set_memory_limit(ctx, limits[i]);
        clred_status st = clred_combine_images(ctx, fr, n, &o, &part);
        if (st != CLRED_OK) {
            /* Below one row's worth the error must say so. */
            CHECK(st == CLRED_ERR_DEVICE && strstr(clred_last_error(), "one row") != NULL);
            continue;
        }
        CHECK_MSG(same_result(&whole, &part, w * h), "limit %llu (%zu bands) changes the result",
                  (unsigned long long)limits[i], part.bands);
        saw_one_row |= part.bands == h;
        saw_several |= part.bands > 1 && part.bands < h;
        clred_combine_result_free(&part);
    }
    CHECK(saw_one_row);
    CHECK(saw_several);
    clred_ctx_set_memory_limit(ctx, 1000);
    CHECK(clred_combine_images(ctx, fr, n, &o, &part) == CLRED_ERR_DEVICE);
    clred_ctx_set_memory_limit(ctx, 0);
    clred_combine_result_free(&whole);
    free_stack(fr, n);
}

static void test_bad_input(clred_ctx *ctx)
{
    clred_image fr[2];
    clred_image_alloc(&fr[0], 5, 4, 0, 0);
    clred_image_alloc(&fr[1], 5, 3, 0, 0);
    clred_combine_result r;
    CHECK(clred_combine_images(ctx, fr, 2, NULL, &r) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "frame 1") != NULL);
    CHECK(clred_combine_images(ctx, fr, 0, NULL, &r) == CLRED_ERR_INPUT);
    clred_combine_opts o = clred_combine_defaults();
    o.pct_low = 80;
    o.pct_high = 20;
    CHECK(clred_combine_images(ctx, fr, 1, &o, &r) == CLRED_ERR_USAGE);
    o = clred_combine_defaults();
    o.sigma_upper = 0;
    CHECK(clred_combine_images(ctx, fr, 1, &o, &r) == CLRED_ERR_USAGE);
    clred_image_free(&fr[0]);
    clred_image_free(&fr[1]);
}

/* The float-accumulation kernels (devices without fp64) against the reference. */
static void test_float_accumulation(clred_ctx *unused)
{
    (void)unused;
    setenv("CLRED_FLOAT_ACCUM", "1", 1);
    clred_ctx *fctx = harness_ctx();
    unsetenv("CLRED_FLOAT_ACCUM");
    stack_kind k = {.nan = 1, .masks = 1, .outliers = 1};
    /* 8 frames: the float programs of one depth (test_combine_vec's float
     * case takes the same), the cheapest to build; the sums' error is smaller
     * than at 20, so the tolerances above hold with room. */
    clred_image *fr = make_stack(8, W, H, k, 900);
    all_methods(fctx, fr, 8, clred_combine_defaults(), tol_float, "float-accum");
    free_stack(fr, 8);
    fr = make_stack(66, W, H, k, 901);
    clred_combine_opts o = clred_combine_defaults();
    o.method = CLRED_COMBINE_MEDIAN;
    o.reject = CLRED_REJECT_SIGCLIP;
    check_against_reference(fctx, fr, 66, &o, tol_float, "float-accum general N=66");
    free_stack(fr, 66);
    clred_ctx_destroy(fctx);
}

/* The parts, one per family of kernel programs (POCL compiles each on a
 * cold cache, 3-10 CPU s): the suite runs each part as a test of its own
 * (tests/CMakeLists.txt), so ctest -j runs them side by side instead of one
 * ~41 CPU s test that ends last. Every part checks its programs in full. */
static void part_nmax8(clred_ctx *ctx)
{
    static const size_t counts[] = {1, 2, 3, 4}, general[] = {1, 2, 5};
    test_known_values(ctx);
    test_bad_input(ctx);
    test_counts_of_frames(ctx, counts, 4);
    test_weights_variance_ties(ctx, 3);
    test_scaling(ctx);
    test_general_path_identical(ctx, general, 3);
}

static void part_nmax16(clred_ctx *ctx)
{
    static const size_t counts[] = {9};
    test_counts_of_frames(ctx, counts, 1);
    test_weights_scatter(ctx);
    /* the NMAX=16 fast kernel, which large 9-16-frame stacks the vector
     * kernel does not take (VAR planes, weights) run on */
    test_general_path_identical(ctx, counts, 1);
}

static void part_nmax32(clred_ctx *ctx)
{
    static const size_t counts[] = {20};
    test_counts_of_frames(ctx, counts, 1);
    test_clipping_options(ctx);
    test_weights_variance_ties(ctx, 20);
    test_general_path_identical(ctx, counts, 1);
    test_banding(ctx);
}

/* 33-64 frames (NMAX=64) and beyond (the general kernel). */
static void part_nmax64(clred_ctx *ctx)
{
    static const size_t counts[] = {40, 65};
    test_counts_of_frames(ctx, counts, 2);
    test_weights_variance_ties(ctx, 66);
}

static const struct {
    const char *name;
    void (*run)(clred_ctx *ctx);
    int own_ctx; /* makes its own contexts */
} parts[] = {
    {"nmax8", part_nmax8, 0},   {"nmax16", part_nmax16, 0},          {"nmax32", part_nmax32, 0},
    {"nmax64", part_nmax64, 0}, {"float", test_float_accumulation, 1},
};

/* test_combine [PART]: one part, or every part. */
int main(int argc, char **argv)
{
    unsetenv("CLRED_COMBINE_GENERAL");
    const size_t nparts = sizeof parts / sizeof *parts;
    int found = 0;
    for (size_t i = 0; i < nparts; i++) {
        if (argc > 1 && strcmp(argv[1], parts[i].name) != 0)
            continue;
        found = 1;
        clred_ctx *ctx = parts[i].own_ctx ? NULL : harness_ctx();
        parts[i].run(ctx);
        if (ctx)
            clred_ctx_destroy(ctx);
    }
    if (!found) {
        fprintf(stderr, "test_combine: no part '%s'\n", argv[1]);
        return 2;
    }
    return harness_finish();
}
