/* Real data: statistics of a CAFOS bias frame (1024x1024, uint16 with BZERO)
 * on the device against the double-precision reference. Skips (77) when
 * ../shared/data is absent. Tolerances as in test_stats.c: median, MAD, min,
 * max and counts exact; mean and std 1e-9 relative (double partial sums over
 * 1e6 terms lose ~1e-10 relative at worst). Integer data is the hard case for
 * the even-count median: long runs of equal keys. */
#include <math.h>
#include <stdio.h>

#include "harness.h"
#include "internal.h"
#include "stats_ref.h"

static void check(clred_ctx *ctx, const char *what, const clred_image *img, const clred_stats_opts *o)
{
    clred_stats got, ref;
    clred_ctx_timing_reset(ctx);
    double t0 = clred_now();
    CHECK_OK(clred_image_stats(ctx, img, o, &got));
    double t1 = clred_now();
    clred_timing tm;
    clred_ctx_timing(ctx, &tm);
    CHECK(stats_ref(img->sci, img->mask, img->width, img->height, o, &ref) == 0);
    double t2 = clred_now();
    fprintf(stderr, "%s: mean %.6f median %.1f std %.6f mad %.1f min %.0f max %.0f npix %zu rejected %zu iters %d "
                    "(device %.3f s of which kernels %.3f s, reference %.3f s)\n",
            what, got.mean, got.median, got.std, got.mad, got.min, got.max, got.npix, got.nrejected, got.iterations,
            t1 - t0, tm.kernel_s, t2 - t1);
    double tol = 1e-9 * (fabs(ref.mean) + ref.std);
    CHECK_MSG(got.npix == ref.npix && got.nrejected == ref.nrejected && got.ninvalid == ref.ninvalid,
              "%s: counts %zu/%zu/%zu, reference %zu/%zu/%zu", what, got.npix, got.nrejected, got.ninvalid, ref.npix,
              ref.nrejected, ref.ninvalid);
    CHECK_MSG(got.iterations == ref.iterations, "%s: iterations %d, reference %d", what, got.iterations,
              ref.iterations);
    CHECK_MSG(got.median == ref.median && got.mad == ref.mad, "%s: median/mad %.17g/%.17g, reference %.17g/%.17g",
              what, got.median, got.mad, ref.median, ref.mad);
    CHECK_MSG(got.min == ref.min && got.max == ref.max, "%s: min/max differ", what);
    CHECK_NEAR(got.mean, ref.mean, tol);
    CHECK_NEAR(got.std, ref.std, tol);
}

int main(void)
{
    const char *path = harness_data("cafos/calib/bias/uamA_0001.fits");
    clred_image img;
    CHECK_OK(clred_image_read(path, 0, &img));
    CHECK(img.width == 1024 && img.height == 1024);
    clred_ctx *ctx = harness_ctx();
    if (!ctx->use_double) {
        printf("SKIP: %s has no fp64; the exact comparisons here assume double accumulation\n", ctx->info.name);
        clred_ctx_destroy(ctx);
        return 77;
    }
    clred_stats_opts o = clred_stats_defaults();
    check(ctx, "bias, defaults", &img, &o);
    o.spread_mad = 1;
    check(ctx, "bias, mad spread", &img, &o);
    o = clred_stats_defaults();
    o.x0 = 100, o.x1 = 901, o.y0 = 50, o.y1 = 950;
    check(ctx, "bias, region", &img, &o);
    clred_image_free(&img);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
