/* clred_stack_dev / clred_stack_files on simulated frames with known dithers:
 * - the measured shifts (phase correlation) and the star transforms against
 *   the simulator's dithers;
 * - the stack's stars at their true positions on the reference grid with
 *   their true flux;
 * - the stack equal, bit for bit, to the host chain it orchestrates
 *   (clred_measure_shifts -> clred_resample_onto_grid -> clred_combine_images),
 *   which is what `clred combine --align` gave before the recipe existed;
 * - clred_stack_files equal to clred_stack_dev on the same frames, with the
 *   reference's header and a HISTORY card per file;
 * - a frame without stars fails star matching and alignment.failed names it;
 *   bad requests are usage errors.
 * The frames are the simulator's raw frames calibrated with its true bias,
 * dark and flat (no cosmic rays), 200x160, four of them: small for POCL. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "simulate.h"

#define NFRAMES 4

/* A science frame in e- (bias, dark and flat removed with the truth), with
 * its variance (Poisson of the expectation and read noise, through the flat)
 * and SATURATED where the raw value hit the ceiling. FRAMEID names it. */
static void calibrated_frame(const clred_sim_truth *t, size_t fi, clred_image *img)
{
    const clred_sim_frame *f = &t->frames[fi];
    size_t n = t->width * t->height;
    double *e = malloc(n * sizeof *e);
    uint16_t *adu = malloc(n * sizeof *adu);
    clred_sim_expected(t, fi, e);
    clred_sim_render(t, fi, e, adu);
    CHECK_OK(clred_image_alloc(img, t->width, t->height, 1, 1));
    const double *flat = clred_sim_flat_of(t, f);
    double g = t->opts.gain, rn = t->opts.readnoise;
    for (size_t i = 0; i < n; i++) {
        img->sci[i] = (float)(((adu[i] - t->bias[i]) * g - t->dark[i] * f->exptime) / flat[i]);
        img->var[i] = (float)((e[i] + rn * rn) / (flat[i] * flat[i]));
        img->mask[i] = adu[i] >= t->ceiling ? CLRED_MASK_SATURATED : 0;
    }
    img->header = clred_header_new();
    CHECK_OK(clred_header_set_double(img->header, "FRAMEID", (double)fi, "test frame"));
    free(e);
    free(adu);
}

/* The device result on the host (image and ncontrib). */
static void download_result(const clred_combine_dev_result *d, clred_combine_result *r)
{
    memset(r, 0, sizeof *r);
    CHECK_OK(clred_dimage_download(d->image, &r->image));
    clred_image nc;
    CHECK_OK(clred_dimage_download(d->ncontrib, &nc));
    r->ncontrib = nc.sci;
    nc.sci = NULL;
    clred_image_free(&nc);
}

static int same_planes(const clred_combine_result *a, const clred_combine_result *b)
{
    size_t n = a->image.width * a->image.height;
    return a->image.width == b->image.width && a->image.height == b->image.height &&
           !memcmp(a->image.sci, b->image.sci, n * sizeof(float)) &&
           !memcmp(a->image.var, b->image.var, n * sizeof(float)) &&
           !memcmp(a->image.mask, b->image.mask, n * sizeof(uint16_t)) &&
           !memcmp(a->ncontrib, b->ncontrib, n * sizeof(float));
}

static int near_other_star(const clred_sim_truth *t, size_t s, double radius)
{
    for (size_t k = 0; k < t->nstars; k++) {
        if (k == s || t->stars[k].flux < 1000)
            continue;
        if (hypot(t->stars[k].x - t->stars[s].x, t->stars[k].y - t->stars[s].y) < radius)
            return 1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of the finite pixels in the annulus [r0, r1) around (x, y). */
static double annulus_median(const clred_image *img, double x, double y, double r0, double r1)
{
    size_t cap = (size_t)(4 * r1 * r1 + 16), n = 0;
    double *v = malloc(cap * sizeof *v);
    for (long j = (long)floor(y - r1); j <= (long)ceil(y + r1); j++)
        for (long i = (long)floor(x - r1); i <= (long)ceil(x + r1); i++) {
            double r = hypot((double)i - x, (double)j - y);
            if (r < r0 || r >= r1 || i < 0 || j < 0 || i >= (long)img->width || j >= (long)img->height)
                continue;
            float p = img->sci[(size_t)j * img->width + (size_t)i];
            if (isfinite(p) && n < cap)
                v[n++] = p;
        }
    qsort(v, n, sizeof *v, cmp_double);
    double m = n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : NAN;
    free(v);
    return m;
}

/* Moffat (beta 3) flux fraction inside radius r for a FWHM. */
static double moffat_enclosed(double r, double fwhm)
{
    double a = fwhm / (2.0 * sqrt(pow(2.0, 1.0 / 3.0) - 1.0));
    double q = 1.0 + r * r / (a * a);
    return 1.0 - 1.0 / (q * q);
}

/* The stack's isolated, unsaturated bright stars: a Gaussian-weighted
 * centroid (as tests/test_simulate.c: noise <= 0.05 px at these fluxes) at
 * the true position within 0.1 px, and the aperture flux (radius 10 px,
 * annulus median background) equal to the true flux times the mean enclosed
 * fraction of the frames' seeing, within 5 sigma (from the stack's VAR) plus
 * 1.5% for the faint neighbours and the pixelised aperture. */
static void check_stack_stars(const clred_sim_truth *t, const size_t *fi, size_t ref, const clred_image *stack)
{
    size_t w = stack->width, h = stack->height, measured = 0;
    const clred_sim_frame *rf = &t->frames[fi[ref]];
    double margin = t->opts.dither * 2 + 14;
    for (size_t s = t->nsaturating; s < t->nstars; s++) {
        const clred_sim_star *st = &t->stars[s];
        double x = st->x + rf->dx, y = st->y + rf->dy;
        if (st->flux < 4e4 || st->flux > 4e5 || x < margin || y < margin || x > (double)w - 1 - margin ||
            y > (double)h - 1 - margin || near_other_star(t, s, 14))
            continue;
        double sig = 3.0 / 2.3548, xc = x + 0.6, yc = y - 0.4;
        double bg = annulus_median(stack, x, y, 12, 18);
        for (int it = 0; it < 30; it++) {
            double sw = 0, sx = 0, sy = 0;
            for (long j = (long)yc - 8; j <= (long)yc + 8; j++)
                for (long i = (long)xc - 8; i <= (long)xc + 8; i++) {
                    double dx = (double)i - xc, dy = (double)j - yc;
                    double wt = exp(-(dx * dx + dy * dy) / (2 * sig * sig)) *
                                (stack->sci[(size_t)j * w + (size_t)i] - bg);
                    sw += wt;
                    sx += wt * dx;
                    sy += wt * dy;
                }
            xc += 2 * sx / sw;
            yc += 2 * sy / sw;
        }
        CHECK_MSG(hypot(xc - x, yc - y) < 0.1, "star %zu in the stack at (%.3f, %.3f), truth (%.3f, %.3f)", s, xc,
                  yc, x, y);
        double r = 10, sum = 0, var = 0, frac = 0;
        size_t npix = 0;
        for (long j = (long)floor(y - r); j <= (long)ceil(y + r); j++)
            for (long i = (long)floor(x - r); i <= (long)ceil(x + r); i++)
                if (hypot((double)i - x, (double)j - y) <= r) {
                    sum += stack->sci[(size_t)j * w + (size_t)i] - bg;
                    var += stack->var[(size_t)j * w + (size_t)i];
                    npix++;
                }
        for (size_t k = 0; k < NFRAMES; k++)
            frac += moffat_enclosed(sqrt((double)npix / M_PI), t->frames[fi[k]].fwhm) / NFRAMES;
        double want = st->flux * frac, sigma = sqrt(var);
        CHECK_MSG(fabs(sum - want) < 5 * sigma + 0.015 * want, "star %zu: %.0f e- in the stack, expected %.0f +- %.0f",
                  s, sum, want, sigma);
        measured++;
    }
    CHECK_MSG(measured >= 3, "only %zu stars were isolated enough to measure", measured);
}

/* The host chain the recipe orchestrates, for the bit-for-bit comparison. */
static void host_chain(clred_ctx *ctx, const clred_image *frames, const clred_stack_opts *o,
                       clred_combine_result *out)
{
    clred_shift shifts[NFRAMES];
    clred_transform to_ref[NFRAMES];
    clred_image aligned[NFRAMES];
    CHECK_OK(clred_measure_shifts(ctx, frames, NFRAMES, o->ref_index, &o->popts, shifts));
    for (size_t i = 0; i < NFRAMES; i++)
        to_ref[i] = clred_transform_translation(-shifts[i].dx, -shifts[i].dy);
    CHECK_OK(clred_resample_onto_grid(ctx, frames, NFRAMES, to_ref, o->grid, &o->ropts, aligned, NULL));
    CHECK_OK(clred_combine_images(ctx, aligned, NFRAMES, &o->copts, out));
    for (size_t i = 0; i < NFRAMES; i++)
        clred_image_free(&aligned[i]);
}

static int has_history(const clred_header *h, const char *text)
{
    for (size_t i = 0; i < clred_header_count(h); i++) {
        const char *c = clred_header_card(h, i);
        if (!strncmp(c, "HISTORY", 7) && strstr(c, text))
            return 1;
    }
    return 0;
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    clred_sim_opts so = clred_sim_defaults();
    so.seed = 4242;
    so.width = 200;
    so.height = 160;
    so.nbias = so.ndark = so.nflat = so.nepoch2 = 0;
    so.nscience = NFRAMES;
    so.nstars = 90;
    so.ntransients = 0;
    so.dither = 5;
    so.cosmic_rate = 0;
    clred_sim_truth t;
    CHECK_OK(clred_sim_truth_build(&so, &t));
    size_t fi[NFRAMES];
    clred_image frames[NFRAMES];
    clred_dimage *dev[NFRAMES];
    for (size_t k = 0; k < NFRAMES; k++) {
        fi[k] = k; /* only science frames were simulated */
        CHECK(t.frames[k].kind == CLRED_SIM_SCIENCE);
        calibrated_frame(&t, k, &frames[k]);
        CHECK_OK(clred_dimage_upload(ctx, &frames[k], &dev[k]));
    }
    const clred_dimage *const *cdev = (const clred_dimage *const *)dev;

    /* ---- phase correlation, reference frame 1, mean combine */
    clred_stack_opts o = clred_stack_defaults();
    o.ref_index = 1;
    clred_combine_dev_result dr;
    clred_alignment al;
    CHECK_OK(clred_stack_dev(ctx, cdev, NFRAMES, &o, &dr, &al));
    CHECK(al.n == NFRAMES && al.failed == -1 && al.shifts && !al.matches);
    /* Whole-frame correlation of this field is off by up to 0.1 px in y
     * (stars entering and leaving the frame with the dither, seeing from 2.5
     * to 4 px; `clred register` gives the same on the raw frames), so 0.15 px:
     * the recipe's own mistakes (the wrong reference, a sign flip, integer
     * shifts of continuous dithers) miss by far more, and the bit-for-bit
     * comparison with the host chain below checks the rest. */
    for (size_t k = 0; k < NFRAMES && al.shifts; k++) {
        double tdx = t.frames[k].dx - t.frames[1].dx, tdy = t.frames[k].dy - t.frames[1].dy;
        CHECK_MSG(hypot(al.shifts[k].dx - tdx, al.shifts[k].dy - tdy) < 0.15,
                  "frame %zu: shift (%.3f, %.3f), dither difference (%.3f, %.3f)", k, al.shifts[k].dx,
                  al.shifts[k].dy, tdx, tdy);
        CHECK(al.to_ref[k].m[2] == -al.shifts[k].dx && al.to_ref[k].m[5] == -al.shifts[k].dy);
    }
    CHECK(al.geometry.width == so.width && al.geometry.height == so.height);
    clred_combine_result got, want;
    download_result(&dr, &got);
    check_stack_stars(&t, fi, 1, &got.image);
    /* The reference's header, the combine's NCOMBINE and HISTORY per step. */
    double v;
    CHECK(clred_header_get_double(got.image.header, "FRAMEID", &v) && v == 1);
    CHECK(clred_header_get_double(got.image.header, "NCOMBINE", &v) && v == NFRAMES);
    CHECK(has_history(got.image.header, "clred combine:"));
    CHECK(has_history(got.image.header, "clred align: frame 3 dx="));
    CHECK(has_history(got.image.header, "by=phasecorr ref=frame 1 interp=lanczos3 grid=reference"));
    memset(&want, 0, sizeof want);
    host_chain(ctx, frames, &o, &want);
    CHECK_MSG(same_planes(&got, &want), "clred_stack_dev differs from the host chain");
    clred_combine_result_free(&want);
    clred_combine_result_free(&got);
    clred_alignment_free(&al);
    clred_combine_dev_result_free(&dr);

    /* ---- the same from files: equal to the device call, HISTORY names files */
    char paths[NFRAMES][4200];
    const char *pp[NFRAMES];
    for (size_t k = 0; k < NFRAMES; k++) {
        snprintf(paths[k], sizeof paths[k], "%s/frame_%zu.fits", harness_tmpdir("test_stack"), k);
        CHECK_OK(clred_image_write(paths[k], &frames[k], 1));
        pp[k] = paths[k];
    }
    o.grid = CLRED_GRID_UNION;
    o.copts.method = CLRED_COMBINE_MEDIAN;
    o.copts.want_rejected_map = 1;
    clred_combine_result fr;
    CHECK_OK(clred_stack_files(ctx, pp, NFRAMES, &o, &fr, &al));
    CHECK_OK(clred_stack_dev(ctx, cdev, NFRAMES, &o, &dr, NULL));
    download_result(&dr, &want);
    CHECK_MSG(same_planes(&fr, &want), "clred_stack_files differs from clred_stack_dev");
    CHECK(fr.nrejected != NULL);
    /* The union grid holds every dither: larger than a frame by the spread. */
    CHECK(al.geometry.width > so.width && al.geometry.height > so.height);
    CHECK(fr.image.width == al.geometry.width && fr.image.height == al.geometry.height);
    CHECK(has_history(fr.image.header, "clred align: frame_2.fits[0] dx="));
    CHECK(clred_header_get_double(fr.image.header, "FRAMEID", &v) && v == 1);
    clred_combine_result_free(&want);
    clred_combine_result_free(&fr);
    clred_alignment_free(&al);
    clred_combine_dev_result_free(&dr);

    /* ---- star matching: the transforms undo the dithers */
    o = clred_stack_defaults();
    o.method = CLRED_REGISTER_STARS;
    CHECK_OK(clred_stack_dev(ctx, cdev, NFRAMES, &o, &dr, &al));
    CHECK(al.matches && !al.shifts && al.failed == -1);
    /* 0.15 px: 7-14 matched stars with ~0.1 px centroid residuals. */
    for (size_t k = 0; k < NFRAMES && al.matches; k++) {
        const double *m = al.to_ref[k].m;
        double cx = 100, cy = 80, x = m[0] * cx + m[1] * cy + m[2], y = m[3] * cx + m[4] * cy + m[5];
        double tdx = t.frames[k].dx - t.frames[0].dx, tdy = t.frames[k].dy - t.frames[0].dy;
        CHECK_MSG(hypot(x - (cx - tdx), y - (cy - tdy)) < 0.15, "frame %zu: the centre maps to (%.3f, %.3f), "
                  "expected (%.3f, %.3f)", k, x, y, cx - tdx, cy - tdy);
    }
    download_result(&dr, &got);
    check_stack_stars(&t, fi, 0, &got.image);
    CHECK(has_history(got.image.header, "by=stars ref=frame 0"));
    clred_combine_result_free(&got);
    clred_alignment_free(&al);
    clred_combine_dev_result_free(&dr);

    /* ---- a frame without stars cannot be matched: failed names it */
    clred_image blank;
    CHECK_OK(clred_image_alloc(&blank, so.width, so.height, 0, 0));
    harness_rng rng = {99};
    for (size_t i = 0; i < so.width * so.height; i++)
        blank.sci[i] = (float)(1800 + 40 * harness_normal(&rng));
    clred_dimage *saved = dev[2];
    CHECK_OK(clred_dimage_upload(ctx, &blank, &dev[2]));
    clred_status st = clred_stack_dev(ctx, cdev, NFRAMES, &o, &dr, &al);
    CHECK(st == CLRED_ERR_INPUT);
    CHECK_MSG(al.failed == 2, "failed = %ld, expected frame 2", al.failed);
    CHECK_MSG(strstr(clred_last_error(), "frame 2") != NULL, "message: %s", clred_last_error());
    CHECK(dr.image == NULL);
    clred_alignment_free(&al);
    clred_dimage_free(dev[2]);
    dev[2] = saved;
    clred_image_free(&blank);

    /* ---- bad requests */
    o = clred_stack_defaults();
    o.ref_index = NFRAMES;
    CHECK(clred_stack_dev(ctx, cdev, NFRAMES, &o, &dr, &al) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "there are 4 frames") != NULL);
    CHECK(clred_stack_files(ctx, pp, NFRAMES, &o, &fr, NULL) == CLRED_ERR_USAGE);
    o = clred_stack_defaults();
    o.ropts.interp = CLRED_INTERP_FOURIER;
    o.grid = CLRED_GRID_UNION;
    CHECK(clred_stack_dev(ctx, cdev, NFRAMES, &o, &dr, NULL) == CLRED_ERR_USAGE);
    o = clred_stack_defaults();
    o.method = CLRED_REGISTER_STARS;
    o.ref_index = -1;
    CHECK(clred_stack_dev(ctx, cdev, NFRAMES, &o, &dr, NULL) == CLRED_ERR_USAGE);
    CHECK(clred_stack_dev(ctx, cdev, 0, NULL, &dr, NULL) == CLRED_ERR_USAGE);
    clred_dimage *small;
    CHECK_OK(clred_dimage_create(ctx, 64, 64, 0, 0, &small));
    const clred_dimage *mixed[2] = {dev[0], small};
    CHECK(clred_stack_dev(ctx, mixed, 2, NULL, &dr, NULL) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "frame 1") != NULL);
    clred_dimage_free(small);
    const char *missing[2] = {pp[0], "/nonexistent/frame.fits"};
    CHECK(clred_stack_files(ctx, missing, 2, NULL, &fr, NULL) != CLRED_OK);

    for (size_t k = 0; k < NFRAMES; k++) {
        clred_dimage_free(dev[k]);
        clred_image_free(&frames[k]);
        remove(paths[k]);
    }
    clred_sim_truth_free(&t);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
