/* clred cube on the PAPYRUS cubes (skipped without ../shared/data):
 * - ID_109 closed loop with the ID_110 dark: the saturated raw pixels are
 *   reported (14-bit ceiling 16383, inferred from the data, margin 1%), and the
 *   shift-and-add master has a higher peak and a smaller FWHM than the plain sum;
 *   peak and centroid shifts agree;
 * - ORCA_478 open loop with the ORCA_494 dark cube: the tip-tilt is measured
 *   and the shift-and-add FWHM is smaller than the plain sum's. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static void closed_loop(clred_ctx *ctx)
{
    char cube[1024], dark[1024]; /* harness_data returns one buffer: copy */
    snprintf(cube, sizeof cube, "%s", harness_data("papyrus/ID_109_closed_loop.fits"));
    snprintf(dark, sizeof dark, "%s", harness_data("papyrus/ID_110_dark.fits"));
    clred_cube_opts o = clred_cube_defaults();
    clred_cube_result r, rc;
    CHECK_OK(clred_cube_reduce_files(ctx, cube, dark, &o, &r));
    if (harness_failures)
        return;
    printf("ID_109: ceiling %g from %g: %zu saturated values in %zu pixels (%zu bad); plain peak %.1f FWHM %.3f, "
           "SAA peak %.1f FWHM %.3f, tip-tilt %.3f px; flat %d (%.3g, %.3g sigma)\n",
           r.ceiling, r.threshold, r.nsaturated, r.nsaturated_pixels, r.nsaturated_bad, r.plain_peak, r.plain_fwhm,
           r.master_peak, r.master_fwhm, r.tiptilt_rms, r.flatness.flat, r.flatness.corner_departure,
           r.flatness.mesh_departure);
    CHECK(r.ceiling_source == CLRED_CEILING_ADC);
    CHECK_NEAR(r.ceiling, 16383, 0);
    CHECK(r.nsaturated > 0);
    for (size_t f = 0; f < r.nframes; f++)
        CHECK_NEAR(r.frames[f].raw_max, 16378, 0);
    CHECK(r.master_peak > r.plain_peak);
    CHECK(r.master_fwhm < r.plain_fwhm);
    CHECK(r.tiptilt_rms > 0.05 && r.tiptilt_rms < 1.0);
    CHECK(r.nframes == 10 && r.width == 640 && r.height == 512);
    o.align = CLRED_ALIGN_CENTROID;
    CHECK_OK(clred_cube_reduce_files(ctx, cube, dark, &o, &rc));
    if (!harness_failures) {
        /* two estimators of the same small tip-tilt: within 0.2 px per frame */
        for (size_t f = 0; f < r.nframes; f++) {
            CHECK_NEAR(rc.frames[f].dx, r.frames[f].dx, 0.2);
            CHECK_NEAR(rc.frames[f].dy, r.frames[f].dy, 0.2);
        }
        CHECK(rc.master_peak > rc.plain_peak && rc.master_fwhm < rc.plain_fwhm);
    }
    clred_cube_result_free(&rc);
    clred_cube_result_free(&r);
}

static void open_loop(clred_ctx *ctx)
{
    char cube[1024], dark[1024]; /* harness_data returns one buffer: copy */
    snprintf(cube, sizeof cube, "%s", harness_data("papyrus/ORCA_478_open_loop.fits"));
    snprintf(dark, sizeof dark, "%s", harness_data("papyrus/ORCA_494_dark.fits"));
    clred_cube_opts o = clred_cube_defaults();
    clred_cube_result r;
    CHECK_OK(clred_cube_reduce_files(ctx, cube, dark, &o, &r));
    if (harness_failures)
        return;
    printf("ORCA_478: tip-tilt rms x %.3f y %.3f total %.3f px; plain peak %.1f FWHM %.3f, SAA peak %.1f FWHM %.3f; "
           "%zu saturated\n",
           r.tiptilt_rms_x, r.tiptilt_rms_y, r.tiptilt_rms, r.plain_peak, r.plain_fwhm, r.master_peak, r.master_fwhm,
           r.nsaturated);
    CHECK(r.nframes == 50 && r.width == 250 && r.height == 250);
    CHECK(r.tiptilt_rms > 1.0);
    CHECK(r.master_fwhm < r.plain_fwhm);
    CHECK(r.master_peak > r.plain_peak);
    clred_cube_result_free(&r);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    closed_loop(ctx);
    open_loop(ctx);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
