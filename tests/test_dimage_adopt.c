/* The runtime pieces the night recipe keeps frames on the device with:
 * clred_dimage_adopt (a host image taken over without a copy where memory
 * is shared, one upload elsewhere), the whole-image transfer counters
 * (ctx->image_uploads / image_downloads), and the device subtraction of a
 * model (kernels/arith.cl subtract) against a double-precision reference.
 * Both paths: zero-copy and CLRED_NO_ZERO_COPY=1. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

/* A frame with awkward values: wide magnitudes, NaN in either operand. */
static void fill(clred_image *img, harness_rng *rng, int which)
{
    size_t n = img->width * img->height;
    for (size_t i = 0; i < n; i++)
        img->sci[i] = (float)(harness_normal(rng) * (i % 5 == 0 ? 1e6 : i % 3 == 0 ? 1e-3 : 300.0));
    img->sci[which ? 7 : 11] = NAN;
    img->sci[which ? 19 : 23] = INFINITY;
}

static void adopt_and_count(clred_ctx *ctx)
{
    harness_rng rng = {11};
    clred_image img, copy;
    CHECK_OK(clred_image_alloc(&img, 97, 13, 1, 1)); /* sizes no work-group divides */
    fill(&img, &rng, 0);
    for (size_t i = 0; i < 97 * 13; i++) {
        img.var[i] = (float)i;
        img.mask[i] = (uint16_t)(i % 4 == 0 ? CLRED_MASK_BAD : 0);
    }
    img.header = clred_header_new();
    CHECK_OK(clred_header_set_double(img.header, "EXPTIME", 12.5, "s"));
    CHECK_OK(clred_image_alloc(&copy, 97, 13, 1, 1));
    memcpy(copy.sci, img.sci, 97 * 13 * sizeof(float));
    memcpy(copy.var, img.var, 97 * 13 * sizeof(float));
    memcpy(copy.mask, img.mask, 97 * 13 * sizeof(uint16_t));
    const float *arrays = img.sci;

    clred_ctx_timing_reset(ctx);
    clred_dimage *d = NULL;
    CHECK_OK(clred_dimage_adopt(ctx, &img, &d));
    CHECK(img.sci == NULL && img.var == NULL && img.mask == NULL && img.header == NULL); /* consumed */
    CHECK(d && clred_dimage_has_var(d) && clred_dimage_has_mask(d));
    double t = 0;
    CHECK(d && clred_header_get_double(clred_dimage_header(d), "EXPTIME", &t) && t == 12.5);
    if (ctx->unified_memory) {
        CHECK(d && d->host[CLRED_PLANE_SCI] == arrays); /* the arrays themselves, no copy */
        CHECK(ctx->image_uploads == 0);
    } else {
        CHECK(ctx->image_uploads == 1);
    }
    clred_image back;
    CHECK_OK(clred_dimage_download(d, &back));
    CHECK(ctx->image_downloads == 1);
    CHECK(memcmp(back.sci, copy.sci, 97 * 13 * sizeof(float)) == 0);
    CHECK(memcmp(back.var, copy.var, 97 * 13 * sizeof(float)) == 0);
    CHECK(memcmp(back.mask, copy.mask, 97 * 13 * sizeof(uint16_t)) == 0);
    /* Writing where memory is shared maps the planes: no transfer. */
    clred_timing tm;
    clred_ctx_timing(ctx, &tm);
    uint64_t downloads = ctx->image_downloads;
    char path[512];
    snprintf(path, sizeof path, "%s/adopted.fits", harness_tmpdir("test_dimage_adopt"));
    CHECK_OK(clred_dimage_write(d, path, 1));
    CHECK(ctx->image_downloads == downloads + (ctx->unified_memory ? 0 : 1));
    clred_ctx_timing_reset(ctx);
    CHECK(ctx->image_uploads == 0 && ctx->image_downloads == 0);

    /* A failed adopt still consumes the image (no SCI plane: a usage error). */
    clred_image empty;
    CHECK_OK(clred_image_alloc(&empty, 4, 4, 1, 0));
    free(empty.sci);
    empty.sci = NULL;
    clred_dimage *e = NULL;
    CHECK(clred_dimage_adopt(ctx, &empty, &e) == CLRED_ERR_USAGE && e == NULL && empty.var == NULL);
    clred_dimage_free(d);
    clred_image_free(&back);
    clred_image_free(&copy);
}

static void subtract(clred_ctx *ctx)
{
    harness_rng rng = {5};
    clred_image a, b;
    CHECK_OK(clred_image_alloc(&a, 97, 13, 1, 0));
    CHECK_OK(clred_image_alloc(&b, 97, 13, 0, 0));
    fill(&a, &rng, 0);
    fill(&b, &rng, 1);
    size_t n = 97 * 13;
    double *ref = malloc(n * sizeof *ref);
    float *var = malloc(n * sizeof *var);
    for (size_t i = 0; i < n; i++) {
        ref[i] = (double)a.sci[i] - (double)b.sci[i];
        a.var[i] = var[i] = (float)i;
    }
    clred_dimage *da = NULL, *db = NULL;
    CHECK_OK(clred_dimage_adopt(ctx, &a, &da));
    CHECK_OK(clred_dimage_adopt(ctx, &b, &db));
    CHECK_OK(clred_dimage_subtract_sci(da, db));
    clred_image out;
    CHECK_OK(clred_dimage_download(da, &out));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        /* One correctly rounded float subtraction: within half an ulp of the
         * exact difference, which the double holds to 2^-53 (both operands
         * are floats); allow one ulp of the result. NaN and infinities as in
         * IEEE arithmetic (inf - inf is NaN). */
        double tol = ldexp(fabs(ref[i]), -23);
        int ok = isnan(ref[i]) ? isnan(out.sci[i])
                 : isinf(ref[i]) ? out.sci[i] == ref[i]
                                 : fabs(out.sci[i] - ref[i]) <= tol;
        bad += !ok;
        if (!ok && bad < 5)
            CHECK_MSG(0, "pixel %zu: difference %.9g, reference %.17g", i, (double)out.sci[i], ref[i]);
    }
    CHECK_MSG(bad == 0, "%zu of %zu differences off", bad, n);
    CHECK(memcmp(out.var, var, n * sizeof(float)) == 0); /* only SCI changes */

    clred_dimage *small = NULL;
    CHECK_OK(clred_dimage_create(ctx, 5, 5, 0, 0, &small));
    CHECK(clred_dimage_subtract_sci(da, small) == CLRED_ERR_USAGE);
    clred_dimage_free(small);
    clred_dimage_free(da);
    clred_dimage_free(db);
    clred_image_free(&out);
    free(ref);
    free(var);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    int shared_memory = ctx->unified_memory;
    adopt_and_count(ctx);
    subtract(ctx);
    clred_ctx_destroy(ctx);
    setenv("CLRED_NO_ZERO_COPY", shared_memory ? "1" : "0", 1);
    ctx = harness_ctx();
    adopt_and_count(ctx);
    subtract(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
