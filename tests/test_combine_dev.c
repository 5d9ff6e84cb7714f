/* clred_combine_dev against clred_combine_images, bit for bit: several methods
 * and rejections, VAR and MASK planes (some frames without a mask), weights,
 * scaling and the rejected-count map; in one band and in many (a memory
 * limit); with zero-copy frames and with CLRED_NO_ZERO_COPY=1 (a second
 * context, where host images under a small limit take the banded host path).
 * Every path runs the same kernels on the same values, so the only tolerance
 * is none. The values themselves are checked against the double reference by
 * test_combine, which goes through clred_combine_images, now a wrapper over
 * clred_combine_dev. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define W 37
#define H 23
#define N 5

static void make_stack(clred_image *fr, int with_var, int with_mask, uint64_t seed)
{
    harness_rng rng = {seed};
    for (size_t f = 0; f < N; f++) {
        /* frame 1 has no mask: its band is cleared in the stack */
        clred_image_alloc(&fr[f], W, H, with_var, with_mask && f != 1);
        fr[f].header = clred_header_new();
        clred_header_set_double(fr[f].header, "FRAMENO", (double)f, NULL);
        for (size_t i = 0; i < W * H; i++) {
            double v = 900.0 + 40.0 * (double)f + 10.0 * harness_normal(&rng);
            double u = harness_uniform(&rng);
            if (u < 0.04)
                v += 500.0;
            else if (u < 0.06)
                v = NAN;
            fr[f].sci[i] = (float)v;
            if (fr[f].var)
                fr[f].var[i] = (float)(50.0 + 100.0 * harness_uniform(&rng));
            if (fr[f].mask && harness_uniform(&rng) < 0.05)
                fr[f].mask[i] = harness_uniform(&rng) < 0.5 ? CLRED_MASK_BAD : CLRED_MASK_DETECTED;
        }
    }
}

static int same_bits(const void *a, const void *b, size_t bytes) { return a && b && memcmp(a, b, bytes) == 0; }

static int same_header(const clred_header *a, const clred_header *b)
{
    if (clred_header_count(a) != clred_header_count(b))
        return 0;
    for (size_t i = 0; i < clred_header_count(a); i++)
        if (strcmp(clred_header_card(a, i), clred_header_card(b, i)) != 0)
            return 0;
    return 1;
}

static void check_same(const clred_combine_result *a, const clred_combine_result *b, const char *what)
{
    size_t n = W * H;
    CHECK_MSG(same_bits(a->image.sci, b->image.sci, n * 4), "%s: SCI differs", what);
    CHECK_MSG(same_bits(a->image.var, b->image.var, n * 4), "%s: VAR differs", what);
    CHECK_MSG(same_bits(a->image.mask, b->image.mask, n * 2), "%s: MASK differs", what);
    CHECK_MSG(same_bits(a->ncontrib, b->ncontrib, n * 4), "%s: NCONTRIB differs", what);
    CHECK_MSG((!a->nrejected && !b->nrejected) || same_bits(a->nrejected, b->nrejected, n * 4),
              "%s: rejected counts differ", what);
    CHECK_MSG((!a->scales && !b->scales) || same_bits(a->scales, b->scales, N * sizeof(double)),
              "%s: scales differ", what);
    CHECK_MSG(same_header(a->image.header, b->image.header), "%s: headers differ", what);
}

/* Device frames -> clred_combine_dev -> downloaded as a host result. */
static clred_status combine_on_device(clred_ctx *ctx, const clred_image *fr, const clred_combine_opts *o,
                                      clred_combine_result *out)
{
    memset(out, 0, sizeof *out);
    clred_dimage *d[N] = {0};
    clred_status st = CLRED_OK;
    for (size_t f = 0; f < N && st == CLRED_OK; f++)
        st = clred_dimage_upload(ctx, &fr[f], &d[f]);
    clred_combine_dev_result r;
    memset(&r, 0, sizeof r);
    if (st == CLRED_OK)
        st = clred_combine_dev(ctx, (const clred_dimage *const *)d, N, o, &r);
    if (st == CLRED_OK) {
        CHECK(clred_dimage_width(r.image) == W && clred_dimage_height(r.image) == H);
        CHECK((r.nrejected != NULL) == (o->want_rejected_map != 0));
        st = clred_dimage_download(r.image, &out->image);
    }
    if (st == CLRED_OK) {
        clred_image nc, nr;
        memset(&nr, 0, sizeof nr);
        st = clred_dimage_download(r.ncontrib, &nc);
        if (st == CLRED_OK && r.nrejected)
            st = clred_dimage_download(r.nrejected, &nr);
        out->ncontrib = nc.sci, nc.sci = NULL;
        out->nrejected = nr.sci, nr.sci = NULL;
        clred_image_free(&nc);
        clred_image_free(&nr);
        out->scales = r.scales, r.scales = NULL;
        out->bands = r.bands;
    }
    clred_combine_dev_result_free(&r);
    for (size_t f = 0; f < N; f++)
        clred_dimage_free(d[f]);
    return st;
}

typedef struct {
    const char *name;
    clred_combine_method method;
    clred_reject_method reject;
    int spread_mad, weights, scale, rejected_map;
} combine_case;

static const combine_case cases[] = {
    {"mean", CLRED_COMBINE_MEAN, CLRED_REJECT_NONE, 0, 0, 0, 0},
    {"median", CLRED_COMBINE_MEDIAN, CLRED_REJECT_NONE, 0, 0, 0, 1},
    {"mean sigclip", CLRED_COMBINE_MEAN, CLRED_REJECT_SIGCLIP, 0, 0, 0, 1},
    {"median minmax", CLRED_COMBINE_MEDIAN, CLRED_REJECT_MINMAX, 0, 0, 0, 0},
    {"sum sigclip weights", CLRED_COMBINE_SUM, CLRED_REJECT_SIGCLIP, 0, 1, 0, 1},
    {"mean winsorized mad", CLRED_COMBINE_MEAN, CLRED_REJECT_WINSORIZED, 1, 0, 0, 0},
    {"max percentile scaled", CLRED_COMBINE_MAX, CLRED_REJECT_PERCENTILE, 0, 0, 1, 1},
};

static clred_combine_opts opts_for(const combine_case *c)
{
    static const double weights[N] = {1.0, 2.0, 0.5, 1.5, 1.0};
    clred_combine_opts o = clred_combine_defaults();
    o.method = c->method;
    o.reject = c->reject;
    o.spread_mad = c->spread_mad;
    o.weights = c->weights ? weights : NULL;
    o.scale = c->scale ? CLRED_SCALE_MULTIPLICATIVE : CLRED_SCALE_NONE;
    o.want_rejected_map = c->rejected_map;
    return o;
}

/* The same bits however bands cut the image: limits from 8 KB to 160 KB
 * give bands of one row to all 23, so the vector kernel's vectors take other
 * pixels (a lane's bits once depended on its neighbours' NaNs), and the
 * padded pitch of the band's stacks (stack_pitch) changes with its length.
 * Under the smallest limits one row does not fit: a refusal, not a result. */
static void band_cuts(clred_ctx *ctx, const clred_image *fr, const clred_combine_opts *o,
                      const clred_combine_result *host, const char *what)
{
    size_t counts = 0, last = 0;
    for (size_t kb = 8; kb <= 160; kb += 3) {
        clred_combine_result banded;
        clred_ctx_set_memory_limit(ctx, kb * 1024);
        clred_status st = combine_on_device(ctx, fr, o, &banded);
        CHECK_MSG(st == CLRED_OK || st == CLRED_ERR_DEVICE, "%s, limit %zu KB: %s", what, kb, clred_last_error());
        if (st == CLRED_OK) {
            char label[200];
            snprintf(label, sizeof label, "%s, limit %zu KB (%zu bands)", what, kb, banded.bands);
            check_same(host, &banded, label);
            counts += banded.bands != last;
            last = banded.bands;
        }
        clred_combine_result_free(&banded);
    }
    CHECK_MSG(counts >= 5, "%s: the limits gave %zu band counts", what, counts);
}

/* Every case on one context; the first context's results are the reference
 * for the second's (ref[i] NULL-filled on the first pass). */
static void run_context(clred_ctx *ctx, const char *label, clred_combine_result ref[][2])
{
    for (int planes = 0; planes < 2; planes++) {
        clred_image fr[N];
        make_stack(fr, planes, planes, 77 + (uint64_t)planes);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            char what[160];
            clred_combine_opts o = opts_for(&cases[i]);
            clred_combine_result host, dev, banded, host_banded;
            clred_ctx_set_memory_limit(ctx, 0);
            snprintf(what, sizeof what, "%s, %s, %s", label, cases[i].name, planes ? "VAR+MASK" : "SCI only");
            CHECK_OK(clred_combine_images(ctx, fr, N, &o, &host));
            CHECK_OK(combine_on_device(ctx, fr, &o, &dev));
            CHECK_MSG(host.bands == 1 && dev.bands == 1, "%s: %zu and %zu bands", what, host.bands, dev.bands);
            check_same(&host, &dev, what);
            /* bands: the kernel writes band buffers, copied into the result
             * on the device (dev) or downloaded (host frames that do not fit
             * a device of its own memory) */
            clred_ctx_set_memory_limit(ctx, (planes ? 96 : 56) * 1024);
            CHECK_OK(combine_on_device(ctx, fr, &o, &banded));
            CHECK_MSG(banded.bands > 1, "%s: %zu band under the limit", what, banded.bands);
            check_same(&host, &banded, what);
            band_cuts(ctx, fr, &o, &host, what);
            clred_ctx_set_memory_limit(ctx, (planes ? 48 : 32) * 1024);
            CHECK_OK(clred_combine_images(ctx, fr, N, &o, &host_banded));
            CHECK_MSG(host_banded.bands > 1, "%s: %zu band under the limit", what, host_banded.bands);
            check_same(&host, &host_banded, what);
            clred_ctx_set_memory_limit(ctx, 0);
            if (ref[i][planes].image.sci)
                check_same(&ref[i][planes], &host, what);
            else
                ref[i][planes] = host, memset(&host, 0, sizeof host);
            clred_combine_result_free(&host);
            clred_combine_result_free(&dev);
            clred_combine_result_free(&banded);
            clred_combine_result_free(&host_banded);
        }
        for (size_t f = 0; f < N; f++)
            clred_image_free(&fr[f]);
    }
}

static void check_errors(clred_ctx *ctx)
{
    clred_dimage *a, *b;
    clred_combine_dev_result r;
    CHECK_OK(clred_dimage_create(ctx, W, H, 0, 0, &a));
    CHECK_OK(clred_dimage_create(ctx, W + 1, H, 0, 0, &b));
    const clred_dimage *frames[2] = {a, b};
    CHECK(clred_combine_dev(ctx, frames, 2, NULL, &r) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "frame 1") != NULL);
    CHECK(r.image == NULL);
    CHECK(clred_combine_dev(ctx, frames, 0, NULL, &r) == CLRED_ERR_INPUT);
    frames[1] = NULL;
    CHECK(clred_combine_dev(ctx, frames, 2, NULL, &r) == CLRED_ERR_USAGE);
    clred_dimage_free(a);
    clred_dimage_free(b);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    static clred_combine_result ref[sizeof cases / sizeof *cases][2];
    run_context(ctx, "zero-copy", ref);
    check_errors(ctx);
    clred_ctx_destroy(ctx);
    setenv("CLRED_NO_ZERO_COPY", "1", 1);
    ctx = harness_ctx();
    run_context(ctx, "no zero-copy", ref);
    clred_ctx_destroy(ctx);
    unsetenv("CLRED_NO_ZERO_COPY");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int p = 0; p < 2; p++)
            clred_combine_result_free(&ref[i][p]);
    return harness_finish();
}
