/* CLRED_CAND_MASKED, nbad and mask_bits of clred_find_candidates_dev
 * against a plain C count written here from the definition: the unusable
 * pixels (mask bits in CLRED_MASK_UNUSABLE, or off the image) of the union of
 * the 5 x 5 boxes around the score's peak pixel and around the fitted
 * position. The case that matters: a source beside a hole whose score peak
 * sits 5 px away from it (as a mask moves a matched filter's peak), so the
 * peak's box is clean and only the fitted position's box holds the hole; the
 * same fading (its position fitted too). A clean source and a fitted box off
 * the image's edge are checked likewise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { W = 64, H = 64, PSZ = 25 };

static float psf_data[PSZ * PSZ];

/* Gaussian, FWHM 5 px: the fit may move up to one FWHM from its start, so it
 * reaches a source 4 px from the peak. */
static void make_psf(clred_psf *p)
{
    double sig = 5.0 / 2.3548, s = 0;
    for (int j = 0; j < PSZ; j++)
        for (int i = 0; i < PSZ; i++) {
            double r2 = (i - PSZ / 2) * (i - PSZ / 2) + (j - PSZ / 2) * (j - PSZ / 2);
            s += psf_data[j * PSZ + i] = (float)exp(-0.5 * r2 / (sig * sig));
        }
    for (int k = 0; k < PSZ * PSZ; k++)
        psf_data[k] = (float)(psf_data[k] / s);
    CHECK_OK(clred_psf_from_array(psf_data, PSZ, PSZ, 0, p));
}

static void add_source(clred_image *d, double x0, double y0, double flux)
{
    double sig = 5.0 / 2.3548;
    for (int j = 0; j < H; j++)
        for (int i = 0; i < W; i++) {
            double r2 = (i - x0) * (i - x0) + (j - y0) * (j - y0);
            d->sci[j * W + i] += (float)(flux * exp(-0.5 * r2 / (sig * sig)) / (2 * M_PI * sig * sig));
        }
}

static int in_box(long i, long j, long cx, long cy)
{
    return labs(i - cx) <= 2 && labs(j - cy) <= 2;
}

/* The reference: every pixel of the bounding square of both boxes, counted
 * once if it lies in either. */
static void reference(const clred_image *d, long px, long py, double x, double y, int *nbad, unsigned *bits)
{
    long fx = lround(x), fy = lround(y);
    *nbad = 0;
    *bits = 0;
    for (long j = -10; j < H + 10; j++)
        for (long i = -10; i < W + 10; i++) {
            if (!in_box(i, j, px, py) && !in_box(i, j, fx, fy))
                continue;
            if (i < 0 || j < 0 || i >= W || j >= H) {
                (*nbad)++;
                continue;
            }
            *bits |= d->mask[j * W + i];
            *nbad += (d->mask[j * W + i] & CLRED_MASK_UNUSABLE) != 0;
        }
}

/* One candidate: a score image 0 but for a spike of +-20 (the sign of
 * the difference's source) at (px, py), the difference d. Returns the
 * candidate (the one expected). */
static clred_candidate one_candidate(clred_ctx *ctx, const clred_image *d, const clred_psf *psf, long px, long py,
                                     double sign)
{
    clred_image sc;
    CHECK_OK(clred_image_alloc(&sc, W, H, 0, 0));
    memset(sc.sci, 0, sizeof(float) * W * H);
    sc.sci[py * W + px] = (float)(20 * sign);
    clred_dimage *ds = NULL, *dd = NULL;
    CHECK_OK(clred_dimage_upload(ctx, &sc, &ds));
    CHECK_OK(clred_dimage_upload(ctx, d, &dd));
    clred_candidate *c = NULL, out;
    size_t n = 0;
    CHECK_OK(clred_find_candidates_dev(ctx, ds, dd, psf, NULL, &c, &n));
    CHECK_MSG(n == 1, "peak (%ld, %ld): %zu candidates, expected 1", px, py, n);
    memset(&out, 0, sizeof out);
    if (n >= 1)
        out = c[0];
    free(c);
    clred_dimage_free(ds);
    clred_dimage_free(dd);
    clred_image_free(&sc);
    return out;
}

static void check_case(clred_ctx *ctx, const clred_image *d, const clred_psf *psf, long px, long py, double x0,
                       double y0, double flux, int expect_masked)
{
    clred_candidate c = one_candidate(ctx, d, psf, px, py, flux > 0 ? 1.0 : -1.0);
    /* the fit has to reach the source for the case to test the fitted box:
     * noise-free, it lands within a few 0.01 px; 0.3 px leaves room for the
     * PSF's sampling while keeping lround's pixel */
    CHECK_MSG(fabs(c.x - x0) < 0.3 && fabs(c.y - y0) < 0.3, "peak (%ld, %ld): fitted (%.3f, %.3f), source (%.1f, %.1f)",
              px, py, c.x, c.y, x0, y0);
    int nbad;
    unsigned bits;
    reference(d, px, py, c.x, c.y, &nbad, &bits);
    CHECK_MSG(c.nbad == nbad, "peak (%ld, %ld), fitted (%.2f, %.2f): nbad %d, reference %d", px, py, c.x, c.y, c.nbad,
              nbad);
    CHECK_MSG(c.mask_bits == bits, "peak (%ld, %ld): mask bits 0x%x, reference 0x%x", px, py, c.mask_bits, bits);
    CHECK_MSG(!!(c.flags & CLRED_CAND_MASKED) == (nbad > 0), "peak (%ld, %ld): flags 0x%x, reference nbad %d", px, py,
              c.flags, nbad);
    CHECK_MSG(!!(c.flags & CLRED_CAND_MASKED) == expect_masked, "peak (%ld, %ld): MASKED %d, expected %d", px, py,
              !!(c.flags & CLRED_CAND_MASKED), expect_masked);
}

static void new_diff(clred_image *d)
{
    CHECK_OK(clred_image_alloc(d, W, H, 1, 1));
    for (size_t k = 0; k < (size_t)W * H; k++) {
        d->sci[k] = 0;
        d->var[k] = 1;
        d->mask[k] = 0;
    }
}

/* The hole case: a source of this flux at (32, 32), NO_DATA (values 0)
 * from column 33 on. */
static void hole_case(clred_image *d, double flux)
{
    new_diff(d);
    add_source(d, 32, 32, flux);
    for (int j = 0; j < H; j++)
        for (int i = 33; i < W; i++) {
            d->sci[j * W + i] = 0;
            d->mask[j * W + i] = CLRED_MASK_NO_DATA;
        }
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    clred_psf psf;
    make_psf(&psf);
    clred_image d;

    /* A hole (NO_DATA, values 0) from column 33 on; the source at (32, 32),
     * 1 px from it; the score's peak at (28, 32), 5 px from the hole: its box
     * (26..30) is clean, the fitted position's (30..34) holds it. */
    hole_case(&d, 400);
    check_case(ctx, &d, &psf, 28, 32, 32, 32, 400, 1);
    clred_image_free(&d);

    /* The same fading (negative flux, score -20): its position is fitted as
     * well (|flux| is significant), so its box holds the hole too. */
    hole_case(&d, -400);
    check_case(ctx, &d, &psf, 28, 32, 32, 32, -400, 1);
    clred_image_free(&d);

    /* The same source without the hole: nothing unusable in either box (an
     * INTERPOLATED pixel there is usable: in mask_bits, not in nbad). */
    new_diff(&d);
    add_source(&d, 32, 32, 400);
    d.mask[32 * W + 33] = CLRED_MASK_INTERPOLATED;
    check_case(ctx, &d, &psf, 28, 32, 32, 32, 400, 0);
    clred_image_free(&d);

    /* A source 1 px from the image's edge, the score's peak 4 px in (peaks
     * are found only where their box is inside the image): the fitted
     * position's box leaves the image (5 pixels off it), the peak's does not. */
    new_diff(&d);
    add_source(&d, 1, 32, 400);
    check_case(ctx, &d, &psf, 5, 32, 1, 32, 400, 1);
    clred_image_free(&d);

    clred_psf_free(&psf);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
