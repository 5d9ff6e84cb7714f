/* The night's background products on a small simulated night (96 x 96, 2
 * science frames, no cosmic-ray step): each background/<frame>.fits is a
 * model product (mesh, RMS mesh, interpolation settings) and restoring it
 * on calibrated/<frame>.fits gives the calibrated frame of the same night
 * run without background subtraction to float32 rounding; with [stack]
 * final_background the stack is the one without it less the product's map,
 * and the product is in the manifest. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char *path_of(const char *dir, const char *name)
{
    static char buf[4][2200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static clred_status night(clred_ctx *ctx, const char *const *inputs, size_t n, const char *out, int background,
                          int final_background)
{
    clred_night_opts o = clred_night_defaults();
    o.cosmic = 0;
    o.quality = 0;
    o.background = background;
    o.coadd_background = final_background;
    o.coadd_bkg_opts.box_w = o.coadd_bkg_opts.box_h = 32; /* a 96-px stack: 3 x 3 boxes */
    o.bkg_opts.box_w = o.bkg_opts.box_h = 32;
    o.stream = 0;
    o.overwrite = 1; /* the test directory outlives a run: every product made anew */
    clred_night_report rep;
    clred_status st = clred_night_run(ctx, inputs, n, out, &o, &rep);
    clred_night_report_free(&rep);
    return st;
}

/* |a - b| within the rounding of one float32 addition and subtraction of
 * values of size |a| + |bkg|: (x - b) + b may differ from x by 2 ulp of the
 * larger operand. */
static size_t count_off(const float *a, const float *b, const float *bkg, size_t n, double *worst)
{
    size_t off = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) {
            off += isnan(a[i]) != isnan(b[i]);
            continue;
        }
        double scale = fabs((double)b[i]) + fabs((double)bkg[i]) + 1e-30;
        double e = fabs((double)a[i] - (double)b[i]) / (scale * 0x1p-24);
        *worst = fmax(*worst, e);
        off += e > 2.0;
    }
    return off;
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    const char *tmp = harness_tmpdir("test_night_bkg");
    char raw[1024], with[1024], without[1024];
    snprintf(raw, sizeof raw, "%s/raw", tmp);
    snprintf(with, sizeof with, "%s/with", tmp);
    snprintf(without, sizeof without, "%s/without", tmp);
    clred_sim_opts so = clred_sim_defaults();
    so.width = so.height = 96;
    so.nbias = so.ndark = so.nflat = 2;
    so.nscience = 2;
    so.nepoch2 = 0;
    so.nstars = 15;
    so.seed = 4;
    CHECK_OK(clred_simulate(&so, raw, 1));
    /* the simulator's file names: bias_001.fits ... (sorted as a directory is) */
    const char *kinds[] = {"bias_001", "bias_002", "dark_001", "dark_002", "flat_001", "flat_002", "sci_001", "sci_002"};
    char *inputs[8];
    for (size_t i = 0; i < 8; i++) {
        inputs[i] = malloc(1100);
        snprintf(inputs[i], 1100, "%s/%s.fits", raw, kinds[i]);
    }
    CHECK_OK(night(ctx, (const char *const *)inputs, 8, without, 0, 0));
    CHECK_OK(night(ctx, (const char *const *)inputs, 8, with, 1, 0));

    for (int f = 1; f <= 2; f++) {
        char name[64];
        snprintf(name, sizeof name, "calibrated/sci_%03d.fits", f);
        clred_image sub, ref, back;
        CHECK_OK(clred_image_read(path_of(with, name), 0, &sub));
        CHECK_OK(clred_image_read(path_of(without, name), 0, &ref));
        snprintf(name, sizeof name, "background/sci_%03d.fits", f);
        CHECK(clred_bkg_model_is_product(path_of(with, name)));
        clred_bkg_model m;
        CHECK_OK(clred_bkg_model_read(path_of(with, name), &m));
        CHECK_OK(clred_background_read(ctx, path_of(with, name), &back));
        if (!sub.sci || !ref.sci || !m.back || !back.sci)
            return harness_finish();
        CHECK(m.width == 96 && m.height == 96 && m.box_w == 32 && m.mesh_w == 3);
        /* the background was not nothing: the simulated sky (15 e-/s x 120 s) */
        CHECK(m.global_back > 100);
        CHECK_OK(clred_bkg_model_restore(ctx, &m, &sub));
        double worst;
        size_t off = count_off(sub.sci, ref.sci, back.sci, 96 * 96, &worst);
        fprintf(stderr, "sci_%03d: restored vs unsubtracted: %zu pixels off, worst %.2f ulp of |x| + |b|\n", f, off,
                worst);
        CHECK_MSG(off == 0, "%zu pixels differ by more than float32 rounding", off);
        clred_image_free(&sub);
        clred_image_free(&ref);
        clred_image_free(&back);
        clred_bkg_model_free(&m);
    }

    /* the final background: the same night with it (only the stack and its
     * background are redone), stack_before - stack_after = the map */
    const char *stack_name = NULL;
    char stack_file[256] = "", bkg_file[256] = "";
    clred_image before, after, map;
    /* the stack's name: the object and the filter in lower case (night_plan.c's safe_name) */
    snprintf(stack_file, sizeof stack_file, "stacks/SIMFIELD_r.fits");
    snprintf(bkg_file, sizeof bkg_file, "stacks/SIMFIELD_r_bkg.fits");
    stack_name = stack_file;
    CHECK_OK(clred_image_read(path_of(with, stack_name), 0, &before));
    CHECK_OK(night(ctx, (const char *const *)inputs, 8, with, 1, 1));
    CHECK_OK(clred_image_read(path_of(with, stack_name), 0, &after));
    CHECK(clred_bkg_model_is_product(path_of(with, bkg_file)));
    CHECK_OK(clred_background_read(ctx, path_of(with, bkg_file), &map));
    if (before.sci && after.sci && map.sci) {
        size_t off = 0, finite = 0;
        for (size_t i = 0; i < 96 * 96; i++) {
            if (isnan(before.sci[i]) || isnan(after.sci[i])) {
                off += isnan(before.sci[i]) != isnan(after.sci[i]);
                continue;
            }
            finite++;
            /* after = fl(before - map): exact to half an ulp of after */
            double d = (double)before.sci[i] - (double)after.sci[i] - (double)map.sci[i];
            off += fabs(d) > 0.5 * 0x1p-23 * fabs((double)after.sci[i]) + 1e-30;
        }
        fprintf(stderr, "final background: %zu of %zu pixels off\n", off, finite);
        CHECK(finite > 96 * 96 / 2 && off == 0);
    }
    /* in the manifest */
    FILE *mf = fopen(path_of(with, "manifest.json"), "r");
    CHECK(mf != NULL);
    if (mf) {
        char *text = calloc(1, 1 << 20);
        size_t len = fread(text, 1, (1 << 20) - 1, mf);
        fclose(mf);
        CHECK(len > 0 && strstr(text, "SIMFIELD_r_bkg.fits") && strstr(text, "coadd background") &&
              strstr(text, "final_background"));
        free(text);
    }
    clred_image_free(&before);
    clred_image_free(&after);
    clred_image_free(&map);
    for (size_t i = 0; i < 8; i++)
        free(inputs[i]);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
