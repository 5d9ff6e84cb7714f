/* Source detection: the matched filter and threshold against a double
 * reference, labelling against breadth-first search, moments of synthetic
 * Gaussian stars against the truth and a double reference, completeness on a
 * noisy field, deblending, flags for edges, masks, NaN and saturation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"
#include "sources_ref.h"

/* Point-sampled elliptical Gaussian: semi-axes sa, sb (sigma), angle th (deg). */
static void add_star(float *img, size_t w, size_t h, double x, double y, double flux, double sa, double sb,
                     double th_deg)
{
    double th = th_deg * M_PI / 180, c = cos(th), s = sin(th);
    double cxx = sa * sa * c * c + sb * sb * s * s, cyy = sa * sa * s * s + sb * sb * c * c;
    double cxy = (sa * sa - sb * sb) * s * c, det = cxx * cyy - cxy * cxy;
    double norm = flux / (2 * M_PI * sqrt(det));
    long r = (long)ceil(8 * sa);
    for (long py = (long)y - r; py <= (long)y + r; py++)
        for (long px = (long)x - r; px <= (long)x + r; px++) {
            if (px < 0 || py < 0 || px >= (long)w || py >= (long)h)
                continue;
            double dx = px - x, dy = py - y;
            double q = (cyy * dx * dx - 2 * cxy * dx * dy + cxx * dy * dy) / det;
            img[py * (long)w + px] += (float)(norm * exp(-0.5 * q));
        }
}

static void add_noise(harness_rng *rng, clred_image *img, double sky, double sigma)
{
    for (size_t i = 0; i < img->width * img->height; i++)
        img->sci[i] += (float)(sky + sigma * harness_normal(rng));
}

/* ------------------------------------------------ filter and threshold */

/* The library's filter passes: rows (background subtracted on the fly) then
 * columns with the threshold, which also lists the detected pixels. With
 * rms_map NULL the RMS is the scalar rms_value (the row pass then stores one
 * plane and the column pass takes the constant sums). */
static void run_filter(clred_ctx *ctx, const clred_image *img, const float *rms_map, float rms_value, double fwhm,
                       double thresh, float *filtered, uint32_t *labels, double *norm2_out)
{
    size_t n = img->width * img->height;
    cl_mem sci, mask, rms, dummy, kern, fbuf, lbuf, list, count;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, n * 4, img->sci, &sci, "sci"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, n * 2, img->mask, &mask, "mask"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, rms_map ? n * 4 : 4, rms_map, &rms, "rms"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, 4, NULL, &dummy, "dummy"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, n * 4, NULL, &fbuf, "filtered"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, n * 4, NULL, &lbuf, "labels"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, n * 4, NULL, &list, "list"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, 4, NULL, &count, "count"));
    cl_kernel k;
    cl_int one = 1, zero = 0, use_rms = rms_map != NULL;
    cl_ushort ignore = CLRED_MASK_UNUSABLE;
    cl_float bv = 100.0f, rv = rms_value;
    cl_uint nlist = 0;
    CHECK_OK(clred_upload(ctx, count, 0, 4, &nlist));
    /* the same filter the library builds: K(i, j) = g(i) g(j), unit sum,
     * half-width ceil(1.5 fwhm); sqrt(sum K^2) = sum g^2 */
    cl_int hw = (cl_int)ceil(1.5 * fwhm), size = 2 * hw + 1;
    float *gv = malloc((size_t)size * sizeof *gv);
    double s = fwhm / 2.3548200450309493, sum = 0, sum2 = 0;
    for (int i = -hw; i <= hw; i++)
        sum += exp(-0.5 * i * i / (s * s));
    for (int i = -hw; i <= hw; i++) {
        double v = exp(-0.5 * i * i / (s * s)) / sum;
        gv[i + hw] = (float)v;
        sum2 += v * v;
    }
    *norm2_out = sum2;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, (size_t)size * 4, gv, &kern, "g"));
    /* sum K and sum K^2 rms^2 of a whole window, which the host passes */
    double gs = 0, gs2 = 0;
    for (int i = 0; i < size; i++) {
        gs += gv[i];
        gs2 += (double)gv[i] * gv[i];
    }
    cl_float sk_full = (cl_float)(gs * gs), sv_full = (cl_float)(gs2 * gs2 * rms_value * rms_value);
    free(gv);
    /* row sums at a pitch past the width, as the library lays them out */
    cl_int pitch = (cl_int)img->width + 5;
    cl_mem rows[2];
    for (int i = 0; i < 2; i++)
        CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, (size_t)pitch * img->height * 4, NULL, &rows[i], "row sums"));
    cl_int w = (cl_int)img->width, h = (cl_int)img->height;
    cl_float snr = (cl_float)(thresh / sum2);
    /* sizes not multiples of any work-group: exact global sizes (groups of
     * the context's vector width along x) */
    size_t g2[2] = {clred_vector_groups(ctx, img->width), img->height};
#define FILTER_PIXEL_ARGS                                                                                          \
    CLRED_ARG(sci), CLRED_ARG(mask), CLRED_ARG(one), CLRED_ARG(ignore), CLRED_ARG(dummy), CLRED_ARG(zero),         \
        CLRED_ARG(bv), CLRED_ARG(rms), CLRED_ARG(use_rms), CLRED_ARG(rv)
    CHECK_OK(clred_kernel(ctx, "sources", NULL, "filter_rows", &k));
    CHECK_OK(clred_args(k, "filter_rows", FILTER_PIXEL_ARGS, CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(kern),
                        CLRED_ARG(hw), CLRED_ARG(pitch), CLRED_ARG(rows[0]), CLRED_ARG(rows[1]), (size_t)0));
    CHECK_OK(clred_run(ctx, k, "filter_rows", 2, g2, NULL));
    CHECK_OK(clred_kernel(ctx, "sources", NULL, "filter_cols", &k));
    CHECK_OK(clred_args(k, "filter_cols", FILTER_PIXEL_ARGS, CLRED_ARG(rows[0]), CLRED_ARG(rows[1]), CLRED_ARG(w),
                        CLRED_ARG(h), CLRED_ARG(kern), CLRED_ARG(hw), CLRED_ARG(pitch), CLRED_ARG(sk_full),
                        CLRED_ARG(sv_full),
                        CLRED_ARG(snr), CLRED_ARG(fbuf),
                        CLRED_ARG(lbuf), CLRED_ARG(list), CLRED_ARG(count), (size_t)0));
#undef FILTER_PIXEL_ARGS
    CHECK_OK(clred_run(ctx, k, "filter_cols", 2, g2, NULL));
    for (int i = 0; i < 2; i++)
        clred_release(&rows[i]);
    CHECK_OK(clred_download(ctx, fbuf, 0, n * 4, filtered));
    CHECK_OK(clred_download(ctx, lbuf, 0, n * 4, labels));
    CHECK_OK(clred_download(ctx, count, 0, 4, &nlist));
    /* the list holds exactly the detected pixels, each once */
    uint32_t *lv = malloc((nlist ? nlist : 1) * sizeof *lv);
    unsigned char *seen = calloc(n, 1);
    if (nlist)
        CHECK_OK(clred_download(ctx, list, 0, nlist * 4, lv));
    size_t non = 0, bad = 0;
    for (size_t i = 0; i < n; i++)
        non += labels[i] != 0;
    for (cl_uint i = 0; i < nlist; i++) {
        bad += lv[i] >= n || seen[lv[i]] || labels[lv[i]] == 0;
        if (lv[i] < n)
            seen[lv[i]] = 1;
    }
    CHECK_MSG(nlist == non && bad == 0, "detected-pixel list: %u entries, %zu detected, %zu wrong", nlist, non, bad);
    free(lv);
    free(seen);
    cl_mem all[] = {sci, mask, rms, dummy, kern, fbuf, lbuf, list, count};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clred_release(&all[i]);
}

static void test_filter(clred_ctx *ctx, harness_rng *rng)
{
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 67, 53, 0, 1));
    add_star(img.sci, 67, 53, 20.3, 30.7, 800, 1.3, 1.1, 30);
    add_star(img.sci, 67, 53, 1.0, 50.0, 500, 1.3, 1.3, 0);
    add_noise(rng, &img, 100, 5);
    float *rms = malloc(67 * 53 * sizeof *rms);
    for (size_t i = 0; i < 67 * 53; i++)
        rms[i] = (float)(4.0 + 2.0 * (double)(i % 67) / 67.0); /* a varying RMS map */
    img.sci[30 * 67 + 20] = NAN;                                /* NaN in the star */
    img.mask[31 * 67 + 21] = CLRED_MASK_COSMIC_RAY;
    for (size_t y = 0; y < 53; y++) /* a fully masked block: filtered NaN inside */
        for (size_t x = 50; x < 67; x++)
            if (y > 10 && y < 30)
                img.mask[y * 67 + x] = CLRED_MASK_NO_DATA;
    size_t n = 67 * 53;
    float *filtered = malloc(n * sizeof *filtered);
    uint32_t *labels = malloc(n * sizeof *labels);
    double norm2;
    double *d = malloc(n * sizeof *d), *r = malloc(n * sizeof *r), *rf = malloc(n * sizeof *rf),
           *rs = malloc(n * sizeof *rs);
    /* an RMS map, then a scalar RMS: there the row pass keeps one plane and
     * the windows that meet the NaN, the masked pixels or the edges are
     * recomputed from the pixels */
    for (int scalar = 0; scalar < 2; scalar++) {
        run_filter(ctx, &img, scalar ? NULL : rms, 5.0f, 3.0, 1.5, filtered, labels, &norm2);
        for (size_t i = 0; i < n; i++) {
            d[i] = (isfinite(img.sci[i]) && !(img.mask[i] & CLRED_MASK_UNUSABLE)) ? (double)img.sci[i] - 100.0 : NAN;
            r[i] = scalar ? 5.0 : rms[i];
        }
        double rnorm2;
        ref_matched_filter(d, r, 67, 53, 3.0, rf, rs, &rnorm2);
        CHECK_NEAR(norm2, rnorm2, 1e-7);
        int bad_f = 0, bad_l = 0, ndet = 0;
        double cut = 1.5 / rnorm2;
        for (size_t i = 0; i < n; i++) {
            /* float pixels and kernel weights (rel. 6e-8) summed over 121 terms in
             * acc_t: 1e-5 of the noise level bounds the difference */
            if (!((isnan(rf[i]) && isnan(filtered[i])) || fabs(filtered[i] - rf[i]) <= 1e-5 * (fabs(rf[i]) + 5.0)))
                bad_f++;
            int ref_on = !isnan(rs[i]) && rs[i] >= cut;
            /* pixels within float rounding of the threshold may go either way */
            if (ref_on != (labels[i] != 0) && !(fabs(rs[i] - cut) < 1e-4 * cut))
                bad_l++;
            if (labels[i] && labels[i] != i + 1)
                bad_l++;
            ndet += ref_on;
        }
        CHECK_MSG(bad_f == 0, "%d filtered pixels differ from the reference", bad_f);
        CHECK_MSG(bad_l == 0, "%d thresholded pixels differ from the reference", bad_l);
        CHECK(ndet > 20);                         /* the stars are detected */
        CHECK(isnan(filtered[20 * 67 + 60]));     /* inside the masked block */
        CHECK(!isnan(filtered[30 * 67 + 20]));    /* a NaN pixel is filled by its neighbours */
    }
    free(d), free(r), free(rf), free(rs), free(filtered), free(labels), free(rms);
    clred_image_free(&img);
}

/* A filter file's kernel through filter_2d against the double reference. */
static void run_filter_2d(clred_ctx *ctx, const clred_image *img, const float *rms_map, const float *kern, int kw,
                          int kh, int renorm, float snr, float *filtered, uint32_t *labels)
{
    size_t n = img->width * img->height;
    cl_mem sci, mask, rms, dummy, kb, fbuf, lbuf, list, count;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, n * 4, img->sci, &sci, "sci"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, n * 2, img->mask, &mask, "mask"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, n * 4, rms_map, &rms, "rms"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, 4, NULL, &dummy, "dummy"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, (size_t)(kw * kh) * 4, (void *)kern, &kb, "kernel"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, n * 4, NULL, &fbuf, "filtered"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, n * 4, NULL, &lbuf, "labels"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, n * 4, NULL, &list, "list"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, 4, NULL, &count, "count"));
    cl_uint nlist = 0;
    CHECK_OK(clred_upload(ctx, count, 0, 4, &nlist));
    cl_kernel k;
    cl_int one = 1, zero = 0, w = (cl_int)img->width, h = (cl_int)img->height, ckw = kw, ckh = kh, rn = renorm;
    cl_ushort ignore = CLRED_MASK_UNUSABLE;
    cl_float bv = 100.0f, rv = 0.0f;
    size_t g2[2] = {img->width, img->height};
    CHECK_OK(clred_kernel(ctx, "sources", NULL, "filter_2d", &k));
    CHECK_OK(clred_args(k, "filter_2d", CLRED_ARG(sci), CLRED_ARG(mask), CLRED_ARG(one), CLRED_ARG(ignore),
                        CLRED_ARG(dummy), CLRED_ARG(zero), CLRED_ARG(bv), CLRED_ARG(rms), CLRED_ARG(one), CLRED_ARG(rv),
                        CLRED_ARG(w), CLRED_ARG(h), CLRED_ARG(kb), CLRED_ARG(ckw), CLRED_ARG(ckh), CLRED_ARG(rn),
                        CLRED_ARG(snr), CLRED_ARG(fbuf), CLRED_ARG(lbuf), CLRED_ARG(list), CLRED_ARG(count), (size_t)0));
    CHECK_OK(clred_run(ctx, k, "filter_2d", 2, g2, NULL));
    CHECK_OK(clred_download(ctx, fbuf, 0, n * 4, filtered));
    CHECK_OK(clred_download(ctx, lbuf, 0, n * 4, labels));
    CHECK_OK(clred_download(ctx, count, 0, 4, &nlist));
    size_t non = 0;
    for (size_t i = 0; i < n; i++)
        non += labels[i] != 0;
    CHECK_MSG(nlist == non, "filter_2d listed %u of %zu detected pixels", nlist, non);
    cl_mem all[] = {sci, mask, rms, dummy, kb, fbuf, lbuf, list, count};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clred_release(&all[i]);
}

static void test_filter_file(clred_ctx *ctx, harness_rng *rng)
{
    /* the parser: comments, blank lines, CRLF, a trailing comment on a row */
    const char *good = "# SExtractor style\nCONV NORM\n# 3x3 all-ground, FWHM 2\n1 2 1\r\n\n2 4 2 # centre\n1 2 1\n";
    clred_conv_filter f;
    CHECK_OK(clred_conv_filter_parse(good, strlen(good), "good.conv", &f));
    CHECK(f.width == 3 && f.height == 3 && f.normalize == 1 && f.k && f.k[4] == 4.0f && f.k[5] == 2.0f);
    clred_conv_filter_free(&f);
    const char *bad[] = {"", "# only a comment\n", "CONV NORM\n", "CONV SOMETIMES\n1\n", "1 2 1\n",
                         "CONV NORM\n1 2 1\n2 4\n1 2 1\n", "CONV NORM\n1 2\n3 4\n", "CONV NORM\n1 x 1\n",
                         "CONV NORM\n1 nan 1\n", "CONV NORM\n0 0 0\n", "CONV NORM\n-1 -2 -1\n",
                         "CONV NONORM\n1e400\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_MSG(clred_conv_filter_parse(bad[i], strlen(bad[i]), "bad.conv", &f) == CLRED_ERR_INPUT,
                  "malformed filter %zu accepted", i);
        CHECK_MSG(strstr(clred_last_error(), "bad.conv") != NULL && !strchr(clred_last_error(), '\n'),
                  "filter %zu: message '%s' does not name the file on one line", i, clred_last_error());
        CHECK(f.k == NULL);
    }
    CHECK(clred_conv_filter_read("/nonexistent/x.conv", &f) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "/nonexistent/x.conv") != NULL);

    /* filter_2d against the reference: a NORM kernel (scaled to unit sum as
     * the library does) and an asymmetric NONORM one, which also tells the
     * rows' order */
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 41, 33, 0, 1));
    add_star(img.sci, 41, 33, 12.3, 15.7, 800, 1.3, 1.1, 30);
    add_star(img.sci, 41, 33, 39.0, 2.0, 500, 1.3, 1.3, 0);
    add_noise(rng, &img, 100, 5);
    size_t n = 41 * 33;
    float *rms = malloc(n * sizeof *rms), *filtered = malloc(n * sizeof *filtered);
    uint32_t *labels = malloc(n * sizeof *labels);
    double *d = malloc(n * sizeof *d), *r = malloc(n * sizeof *r), *rf = malloc(n * sizeof *rf),
           *rs = malloc(n * sizeof *rs);
    for (size_t i = 0; i < n; i++)
        rms[i] = (float)(4.0 + 2.0 * (double)(i % 41) / 41.0);
    img.sci[15 * 41 + 12] = NAN;
    img.mask[16 * 41 + 13] = CLRED_MASK_COSMIC_RAY;
    for (size_t y = 20; y < 30; y++)
        for (size_t x = 30; x < 41; x++)
            img.mask[y * 41 + x] = CLRED_MASK_NO_DATA;
    for (size_t i = 0; i < n; i++) {
        d[i] = (isfinite(img.sci[i]) && !(img.mask[i] & CLRED_MASK_UNUSABLE)) ? (double)img.sci[i] - 100.0 : NAN;
        r[i] = rms[i];
    }
    const float k3[9] = {1 / 16.f, 2 / 16.f, 1 / 16.f, 2 / 16.f, 4 / 16.f, 2 / 16.f, 1 / 16.f, 2 / 16.f, 1 / 16.f};
    float k5[15];
    for (int i = 0; i < 15; i++) /* 5 wide, 3 high, no symmetry */
        k5[i] = (float)(i % 5 == 2 ? 3.0 : (i < 5 ? -0.5 : 0.25 * (i % 5)));
    const float *ks[2] = {k3, k5};
    const int kws[2] = {3, 5}, khs[2] = {3, 3};
    for (int c = 0; c < 2; c++) {
        double kd[15], s2 = 0;
        for (int i = 0; i < kws[c] * khs[c]; i++) {
            kd[i] = ks[c][i];
            s2 += kd[i] * kd[i];
        }
        double cut = 1.5 / sqrt(s2);
        run_filter_2d(ctx, &img, rms, ks[c], kws[c], khs[c], c == 0, (float)cut, filtered, labels);
        ref_filter_2d(d, r, 41, 33, kd, kws[c], khs[c], c == 0, rf, rs);
        int bad_f = 0, bad_l = 0, ndet = 0;
        for (size_t i = 0; i < n; i++) {
            /* float pixels, weights and sums of at most 15 terms: 1e-5 of the noise level */
            if (!((isnan(rf[i]) && isnan(filtered[i])) || fabs(filtered[i] - rf[i]) <= 1e-5 * (fabs(rf[i]) + 5.0)))
                bad_f++;
            int ref_on = !isnan(rs[i]) && rs[i] >= cut;
            if ((ref_on != (labels[i] != 0) && !(fabs(rs[i] - cut) < 1e-4 * cut)) || (labels[i] && labels[i] != i + 1))
                bad_l++;
            ndet += ref_on;
        }
        CHECK_MSG(bad_f == 0, "filter %d: %d filtered pixels differ from the reference", c, bad_f);
        CHECK_MSG(bad_l == 0, "filter %d: %d thresholded pixels differ from the reference", c, bad_l);
        CHECK_MSG(ndet > 5, "filter %d: %d pixels detected", c, ndet);
        CHECK(isnan(filtered[25 * 41 + 36])); /* inside the masked block */
    }
    free(rms), free(filtered), free(labels), free(d), free(r), free(rf), free(rs);
    clred_image_free(&img);
}

/* ------------------------------------------------------------ labelling */

/* Labels by the device as the library makes them: label_union over the list
 * of detected pixels, then each listed pixel's root from gather_detected.
 * The library's filter_cols lists them in no particular order; here in
 * raster order (order 0), reversed (1) or shuffled (2). */
static void device_labels(clred_ctx *ctx, const unsigned char *on, size_t w, size_t h, int order, uint32_t *labels)
{
    size_t n = w * h;
    for (size_t i = 0; i < n; i++)
        labels[i] = on[i] ? (uint32_t)(i + 1) : 0u;
    uint32_t *lv = malloc(n * sizeof *lv), *gl = malloc(n * sizeof *gl);
    cl_uint nlist = 0;
    for (size_t i = 0; i < n; i++)
        if (on[order == 1 ? n - 1 - i : i])
            lv[nlist++] = (uint32_t)(order == 1 ? n - 1 - i : i);
    harness_rng shuffle = {(uint64_t)n}; /* its own stream: the other tests' noise stays as it was */
    for (cl_uint i = nlist; order == 2 && i > 1; i--) {
        cl_uint j = (cl_uint)(harness_uniform(&shuffle) * i) % i, t = lv[i - 1];
        lv[i - 1] = lv[j];
        lv[j] = t;
    }
    cl_mem lbuf, list, filt, rms, out_label, out_f, out_rms;
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, n * 4, labels, &lbuf, "labels"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, n * 4, lv, &list, "list"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, n * 4, NULL, &filt, "filtered"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_READ_ONLY, 4, NULL, &rms, "rms"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_WRITE_ONLY, n * 4, NULL, &out_label, "labels out"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_WRITE_ONLY, n * 4, NULL, &out_f, "values out"));
    CHECK_OK(clred_buffer(ctx, CL_MEM_WRITE_ONLY, n * 4, NULL, &out_rms, "rms out"));
    cl_kernel k;
    cl_int cw = (cl_int)w, ch = (cl_int)h, use_rms = 0;
    cl_float rv = 1.0f;
    size_t g = nlist;
    if (nlist) {
        CHECK_OK(clred_kernel(ctx, "sources", NULL, "label_union", &k));
        CHECK_OK(clred_args(k, "label_union", CLRED_ARG(lbuf), CLRED_ARG(list), CLRED_ARG(nlist), CLRED_ARG(cw),
                            CLRED_ARG(ch), (size_t)0));
        CHECK_OK(clred_run(ctx, k, "label_union", 1, &g, NULL));
        CHECK_OK(clred_kernel(ctx, "sources", NULL, "gather_detected", &k));
        CHECK_OK(clred_args(k, "gather_detected", CLRED_ARG(list), CLRED_ARG(nlist), CLRED_ARG(lbuf), CLRED_ARG(filt),
                            CLRED_ARG(rms), CLRED_ARG(use_rms), CLRED_ARG(rv), CLRED_ARG(out_label), CLRED_ARG(out_f),
                            CLRED_ARG(out_rms), (size_t)0));
        CHECK_OK(clred_run(ctx, k, "gather_detected", 1, &g, NULL));
        CHECK_OK(clred_download(ctx, out_label, 0, nlist * 4, gl));
        /* clear_listed then leaves the whole label map zero */
        CHECK_OK(clred_kernel(ctx, "sources", NULL, "clear_listed", &k));
        CHECK_OK(clred_args(k, "clear_listed", CLRED_ARG(list), CLRED_ARG(nlist), CLRED_ARG(lbuf), (size_t)0));
        CHECK_OK(clred_run(ctx, k, "clear_listed", 1, &g, NULL));
        uint32_t *cleared = malloc(n * sizeof *cleared);
        CHECK_OK(clred_download(ctx, lbuf, 0, n * 4, cleared));
        size_t left = 0;
        for (size_t i = 0; i < n; i++)
            left += cleared[i] != 0;
        CHECK_MSG(left == 0, "clear_listed left %zu of %zu pixels nonzero", left, n);
        free(cleared);
    }
    for (cl_uint i = 0; i < nlist; i++)
        labels[lv[i]] = gl[i];
    free(lv), free(gl);
    cl_mem all[] = {lbuf, list, filt, rms, out_label, out_f, out_rms};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clred_release(&all[i]);
}

static void test_labels(clred_ctx *ctx, harness_rng *rng)
{
    const size_t shapes[][2] = {{1, 1}, {2, 1}, {1, 2}, {3, 3}, {61, 47}, {61, 47}, {200, 150}, {40, 40}};
    const double density[] = {1.0, 1.0, 1.0, 0.5, 0.4, 0.6, 0.45, -1};
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        size_t w = shapes[c][0], h = shapes[c][1], n = w * h;
        unsigned char *on = calloc(n, 1);
        if (density[c] >= 0) {
            for (size_t i = 0; i < n; i++)
                on[i] = harness_uniform(rng) < density[c];
        } else {
            /* a serpentine: even rows on, joined at alternate ends, one long
             * component whose root label must travel its whole length */
            for (size_t y = 0; y < h; y++)
                for (size_t x = 0; x < w; x++)
                    on[y * w + x] = (y % 2 == 0) || (y % 4 == 1 && x == w - 1) || (y % 4 == 3 && x == 0);
        }
        uint32_t *dev = malloc(n * sizeof *dev), *ref = malloc(n * sizeof *ref);
        ref_label(on, w, h, ref);
        for (int order = 0; order <= 2; order++) {
            device_labels(ctx, on, w, h, order, dev);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++)
                bad += dev[i] != ref[i];
            CHECK_MSG(bad == 0, "labels %zu x %zu (list order %d): %zu pixels differ from the reference", w, h, order,
                      bad);
        }
        free(on), free(dev), free(ref);
    }
}

/* -------------------------------------------------------------- moments */

typedef struct {
    double x, y, flux, fwhm, e, theta;
} star;

static const clred_source *nearest(const clred_source *list, size_t n, double x, double y, double maxd)
{
    const clred_source *best = NULL;
    double bd = maxd * maxd;
    for (size_t i = 0; i < n; i++) {
        double d2 = (list[i].x - x) * (list[i].x - x) + (list[i].y - y) * (list[i].y - y);
        if (d2 <= bd) {
            bd = d2;
            best = &list[i];
        }
    }
    return best;
}

static double angle_diff(double a, double b)
{
    double d = fmod(a - b, 180.0);
    if (d > 90) d -= 180;
    if (d < -90) d += 180;
    return fabs(d);
}

static void test_moments(clred_ctx *ctx, harness_rng *rng)
{
    const star stars[] = {{30.3, 30.6, 40000, 3.0, 0.0, 0},    {80.7, 28.2, 30000, 3.0, 0.2, 30},
                          {130.1, 31.9, 50000, 4.5, 0.4, -60}, {170.5, 30.5, 40000, 2.5, 0.1, 80},
                          {30.8, 90.4, 40000, 6.0, 0.3, 10},   {85.2, 95.7, 60000, 3.5, 0.0, 0},
                          {135.6, 89.9, 40000, 3.0, 0.5, 45},  {170.2, 100.3, 50000, 5.0, 0.25, -20}};
    size_t ns = sizeof stars / sizeof *stars;
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 200, 150, 0, 0));
    for (size_t k = 0; k < ns; k++) {
        /* fwhm = 2.3548 sqrt((a^2 + b^2) / 2) with b = (1 - e) a */
        double q = 1 - stars[k].e;
        double a = stars[k].fwhm / 2.3548200450309493 / sqrt(0.5 * (1 + q * q));
        add_star(img.sci, 200, 150, stars[k].x, stars[k].y, stars[k].flux, a, a * q, stars[k].theta);
    }
    add_noise(rng, &img, 100, 2.0);
    clred_detect_opts o = clred_detect_defaults();
    int32_t *seg = calloc(200 * 150, sizeof *seg);
    o.segmentation = seg;
    clred_source *list;
    size_t n;
    CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 2.0, &o, &list, &n));
    CHECK_MSG(n == ns, "%zu sources detected, %zu stars", n, ns);
    double *d = malloc(200 * 150 * sizeof *d);
    for (size_t i = 0; i < 200 * 150; i++)
        d[i] = img.sci[i] - 100.0;
    for (size_t k = 0; k < ns; k++) {
        const clred_source *s = nearest(list, n, stars[k].x, stars[k].y, 2.0);
        CHECK_MSG(s != NULL, "star %zu at (%.1f, %.1f) not found", k, stars[k].x, stars[k].y);
        if (!s)
            continue;
        /* the truth: noise of sigma 2 on a peak of >= 200 moves these little */
        CHECK_MSG(s->flags == 0, "star %zu has flags %u", k, s->flags);
        CHECK_NEAR(s->x, stars[k].x, 0.02);
        CHECK_NEAR(s->y, stars[k].y, 0.02);
        CHECK_MSG(fabs(s->fwhm / stars[k].fwhm - 1) < 0.02, "star %zu: FWHM %.4f, true %.4f", k, s->fwhm,
                  stars[k].fwhm);
        CHECK_NEAR(s->ellipticity, stars[k].e, 0.02);
        if (stars[k].e > 0.05)
            CHECK_MSG(angle_diff(s->theta, stars[k].theta) < 2.0, "star %zu: theta %.2f, true %.2f", k, s->theta,
                      stars[k].theta);
        /* isophotal flux: most of the star's light lies above 1.5 sigma */
        CHECK_MSG(s->flux > 0.9 * stars[k].flux && s->flux < 1.02 * stars[k].flux, "star %zu: flux %.1f of %.1f", k,
                  s->flux, stars[k].flux);
        /* the same image through the double reference of the windowed moments */
        int32_t label = seg[(size_t)lround(stars[k].y) * 200 + (size_t)lround(stars[k].x)];
        double rx = NAN, ry = NAN, rxx = NAN, ryy = NAN, rxy = NAN;
        CHECK(label > 0 && ref_adaptive_moments(d, 200, 150, seg, label, stars[k].x + 0.3, stars[k].y - 0.2, 2.0, &rx,
                                                &ry, &rxx, &ryy, &rxy));
        double rfwhm = 2.3548200450309493 * sqrt(0.5 * (rxx + ryy));
        CHECK_NEAR(s->fwhm, rfwhm, 1e-3 * rfwhm);
        /* the reported position is SExtractor's windowed centroid with the
         * window sigma from these moments; both stop at steps below 1e-4 px */
        double wx = NAN, wy = NAN;
        CHECK(ref_winpos(d, 200, 150, seg, label, rx, ry, sqrt(0.5 * (rxx + ryy)), &wx, &wy));
        CHECK_NEAR(s->x, wx, 1e-3);
        CHECK_NEAR(s->y, wy, 1e-3);
    }
    double seeing;
    size_t nused;
    clred_sources_seeing(list, n, &seeing, &nused);
    /* one star's true ellipticity is 0.5, the cut itself: noise puts it on either side */
    CHECK_MSG(nused == ns || nused == ns - 1, "seeing from %zu of %zu stars", nused, ns);
    CHECK(seeing > 3.0 && seeing < 4.6);
    /* the segmentation map marks each source's pixels with its index + 1 */
    size_t count1 = 0;
    for (size_t i = 0; i < 200 * 150; i++)
        count1 += seg[i] == 1;
    CHECK(count1 == list[0].npix);
    free(list);
    free(seg);
    free(d);
    clred_image_free(&img);
}

/* The windowed centroids' scatter about the true positions of bright stars:
 * 36 stars of FWHM 3 (S/N 200 to 2000 of the total flux) at random subpixel
 * positions, noise 5. The photon-noise limit is ~sigma sqrt(2) / (S/N), 0.009
 * px at S/N 200 and 0.001 at 2000: the RMS must stay below 0.005 px. */
static void test_centroid_scatter(clred_ctx *ctx, harness_rng *rng)
{
    enum { NSTAR = 36 };
    double s = 3.0 / 2.3548200450309493, sigma = 5.0, tx[NSTAR], ty[NSTAR];
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 240, 240, 0, 0));
    for (int k = 0; k < NSTAR; k++) {
        tx[k] = 20 + 40 * (k % 6) + harness_uniform(rng);
        ty[k] = 20 + 40 * (k / 6) + harness_uniform(rng);
        double snr = 200 * exp(harness_uniform(rng) * log(10.0));
        add_star(img.sci, 240, 240, tx[k], ty[k], snr * sigma * sqrt(4 * M_PI) * s, s, s, 0);
    }
    add_noise(rng, &img, 100, sigma);
    clred_source *list;
    size_t n;
    CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, sigma, NULL, &list, &n));
    double sum2 = 0;
    int found = 0;
    for (int k = 0; k < NSTAR; k++) {
        const clred_source *m = nearest(list, n, tx[k], ty[k], 1.0);
        if (!m)
            continue;
        found++;
        sum2 += (m->x - tx[k]) * (m->x - tx[k]) + (m->y - ty[k]) * (m->y - ty[k]);
    }
    double rms = found ? sqrt(sum2 / (2.0 * found)) : INFINITY;
    fprintf(stderr, "windowed centroids: %d stars, RMS %.4f px per axis about the truth\n", found, rms);
    CHECK_MSG(found == NSTAR, "%d of %d bright stars found", found, NSTAR);
    CHECK_MSG(rms <= 0.005, "centroid RMS %.4f px about the truth", rms);
    free(list);
    clred_image_free(&img);
}

/* -------------------------------------------------------- completeness */

static void test_completeness(clred_ctx *ctx, harness_rng *rng)
{
    enum { NSTAR = 70 };
    double sigma = 10.0, s = 3.0 / 2.3548200450309493;
    star stars[NSTAR];
    size_t ns = 0;
    int found_total = 0, total = 0, false_total = 0;
    for (int field = 0; field < 2; field++) {
        clred_image img;
        CHECK_OK(clred_image_alloc(&img, 200, 150, 0, 0));
        ns = 0;
        while (ns < NSTAR / 2) {
            double x = 4 + harness_uniform(rng) * 192, y = 4 + harness_uniform(rng) * 142;
            int ok = 1;
            for (size_t k = 0; k < ns; k++)
                if (hypot(stars[k].x - x, stars[k].y - y) < 10)
                    ok = 0;
            if (!ok)
                continue;
            /* S/N of the total flux with optimal (PSF) weighting: flux / (sigma sqrt(4 pi s^2)),
             * drawn log-uniformly between 10 and 200 */
            double snr = 10 * exp(harness_uniform(rng) * log(20.0));
            stars[ns] = (star){x, y, snr * sigma * sqrt(4 * M_PI) * s, 3.0, 0, 0};
            add_star(img.sci, 200, 150, x, y, stars[ns].flux, s, s, 0);
            ns++;
        }
        add_noise(rng, &img, 500, sigma);
        clred_source *list;
        size_t n;
        /* background and RMS estimated from the image */
        CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, NAN, 0, NULL, &list, &n));
        unsigned char *used = calloc(n ? n : 1, 1);
        for (size_t k = 0; k < ns; k++) {
            const clred_source *m = nearest(list, n, stars[k].x, stars[k].y, 1.5);
            if (m) {
                found_total++;
                used[m - list] = 1;
            } else {
                fprintf(stderr, "missed star at (%.1f, %.1f) S/N %.1f\n", stars[k].x, stars[k].y,
                        stars[k].flux / (sigma * sqrt(4 * M_PI) * s));
            }
        }
        for (size_t i = 0; i < n; i++)
            false_total += !used[i];
        total += (int)ns;
        free(used);
        free(list);
        clred_image_free(&img);
    }
    fprintf(stderr, "completeness: %d of %d stars above S/N 10, %d unmatched detections\n", found_total, total,
            false_total);
    CHECK_MSG(found_total >= 0.98 * total, "only %d of %d stars above S/N 10 detected", found_total, total);
    /* 1.5 sigma per pixel is ~6.6 sigma of the filtered noise: false detections are rare */
    CHECK_MSG(false_total <= 3, "%d detections match no star", false_total);
}

/* ---------------------------------------------------- deblending, flags */

static void test_deblend_and_flags(clred_ctx *ctx, harness_rng *rng)
{
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 120, 90, 0, 1));
    double s = 3.0 / 2.3548200450309493;
    add_star(img.sci, 120, 90, 40.0, 40.0, 20000, s, s, 0); /* a touching pair, 6 px apart */
    add_star(img.sci, 120, 90, 46.0, 41.0, 12000, s, s, 0);
    add_star(img.sci, 120, 90, 0.6, 60.0, 8000, s, s, 0);  /* at the left edge */
    add_star(img.sci, 120, 90, 90.0, 20.0, 8000, s, s, 0); /* NaN near its centre */
    add_star(img.sci, 120, 90, 90.0, 70.0, 8000, s, s, 0); /* saturated by the mask bit */
    add_star(img.sci, 120, 90, 60.0, 75.0, 30000, s, s, 0); /* saturated by level */
    add_noise(rng, &img, 100, 3.0);
    img.sci[20 * 120 + 91] = NAN;
    img.mask[70 * 120 + 90] = CLRED_MASK_SATURATED;
    clred_detect_opts o = clred_detect_defaults();
    o.saturation = 2000.0; /* only the 30000 star reaches it: its peak is ~100 + 30000 / 10.2 */
    clred_source *list;
    size_t n;
    CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 3.0, &o, &list, &n));
    CHECK_MSG(n == 6, "%zu sources, expected 6", n);
    const clred_source *a = nearest(list, n, 40, 40, 1), *b = nearest(list, n, 46, 41, 1);
    CHECK(a && b && a != b);
    if (a && b) {
        CHECK(a->flags & CLRED_SRC_BLENDED);
        CHECK(b->flags & CLRED_SRC_BLENDED);
        CHECK(a->flux > b->flux);
    }
    const clred_source *e = nearest(list, n, 0.6, 60, 1.5);
    CHECK(e && (e->flags & CLRED_SRC_EDGE));
    const clred_source *m = nearest(list, n, 90, 20, 1);
    CHECK(m && (m->flags & CLRED_SRC_MASKED) && !(m->flags & CLRED_SRC_SATURATED));
    const clred_source *sm = nearest(list, n, 90, 70, 1);
    CHECK(sm && (sm->flags & CLRED_SRC_SATURATED));
    const clred_source *sl = nearest(list, n, 60, 75, 1);
    CHECK(sl && (sl->flags & CLRED_SRC_SATURATED) && !(sl->flags & CLRED_SRC_MASKED));
    free(list);
    /* no deblending: the pair is one source */
    o.deblend_contrast = 0;
    CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 3.0, &o, &list, &n));
    CHECK_MSG(n == 5, "%zu sources without deblending, expected 5", n);
    free(list);
    /* a minimum area larger than any star: nothing */
    o.minarea = 5000;
    CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 3.0, &o, &list, &n));
    CHECK(n == 0 && list == NULL);
    /* bad options name the parameter */
    o = clred_detect_defaults();
    o.thresh = -1;
    CHECK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 3.0, &o, &list, &n) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "thresh") != NULL);
    clred_image_free(&img);

    /* fully masked and tiny images: no sources and no error when the levels are given */
    CHECK_OK(clred_image_alloc(&img, 37, 29, 0, 1));
    for (size_t i = 0; i < 37 * 29; i++)
        img.mask[i] = CLRED_MASK_BAD;
    CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 0.0, 1.0, NULL, &list, &n));
    CHECK(n == 0);
    /* without levels, the global estimate fails with a message */
    CHECK(clred_detect_sources(ctx, &img, NULL, NULL, NAN, 0.0, NULL, &list, &n) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "usable") != NULL);
    clred_image_free(&img);
    const size_t tiny[][2] = {{1, 1}, {2, 1}, {2, 2}, {3, 5}};
    for (size_t t = 0; t < 4; t++) {
        CHECK_OK(clred_image_alloc(&img, tiny[t][0], tiny[t][1], 0, 0));
        img.sci[0] = 1000;
        o = clred_detect_defaults();
        o.minarea = 1;
        CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 0.0, 1.0, &o, &list, &n));
        CHECK_MSG(n == 1, "%zu x %zu image: %zu sources, expected 1", tiny[t][0], tiny[t][1], n);
        if (n == 1)
            CHECK(list[0].flags & CLRED_SRC_EDGE);
        free(list);
        clred_image_free(&img);
    }
}

/* The global level (selection, not sorting) against the sorted reference:
 * the same values kept each round, so the same median; the mean and the
 * deviation are float pixels summed in double in another order (1e-9). */
static void test_global_level(harness_rng *rng)
{
    const size_t shapes[][2] = {{3, 1}, {4, 1}, {37, 29}, {64, 64}, {101, 77}};
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        clred_image img;
        size_t w = shapes[c][0], h = shapes[c][1], n = w * h;
        CHECK_OK(clred_image_alloc(&img, w, h, 0, 0));
        double *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) {
            double u = harness_uniform(rng);
            /* sky with 10% bright outliers and repeated values */
            img.sci[i] = (float)(u < 0.1 ? 1000 + 500 * u : (c == 3 ? floor(100 + 5 * harness_normal(rng))
                                                                     : 100 + 5 * harness_normal(rng)));
            v[i] = img.sci[i];
        }
        double lv, sd, rl, rs;
        CHECK_OK(clred_global_background(&img, 0, &lv, &sd));
        CHECK(ref_clipped_level(v, n, &rl, &rs));
        CHECK_MSG(lv == rl, "%zu x %zu: level %.9g, reference %.9g", w, h, lv, rl);
        CHECK_NEAR(sd, rs, 1e-9 * (rs + 1));
        free(v);
        clred_image_free(&img);
    }
}

/* Multi-threshold deblending (SExtractor's DEBLEND_NTHRESH 32, MINCONT 0.005)
 * on close pairs of FWHM-3 stars, one pair or single star per 50 x 50 cell:
 * pairs at 1.5-3 FWHM with flux ratios 1-10 whose secondary maximum drops
 * to the saddle by more than the levels' spacing (~16 % here) are split
 * (with the 3 x 3 filter of SExtractor's default.conv for the closest and
 * the most unequal: the FWHM-3 Gaussian leaves no secondary maximum there),
 * single stars from S/N 18 to 18000 are not. Shallower saddles split or not
 * by where the levels fall, as in SExtractor. */
static void test_close_pairs(clred_ctx *ctx, harness_rng *rng)
{
    typedef struct {
        double sep, ratio;
        int conv; /* 1: the 3 x 3 filter file */
    } pair;
    const pair pairs[] = {{2.0, 1, 0}, {2.0, 3, 0}, {2.5, 5, 0}, {2.5, 10, 0}, {3.0, 1, 0},
                          {3.0, 10, 0}, {1.5, 1, 1}, {2.0, 5, 1}, {2.0, 10, 1}};
    const double singles[] = {400, 1600, 6400, 25600, 102400, 409600}; /* total flux; S/N 18 to 18000 */
    enum { NP = sizeof pairs / sizeof *pairs, NS = sizeof singles / sizeof *singles, CELL = 50 };
    double s = 3.0 / 2.3548200450309493, bright = 20000;
    const char *conv3 = "CONV NORM\n1 2 1\n2 4 2\n1 2 1\n";
    clred_conv_filter f3;
    CHECK_OK(clred_conv_filter_parse(conv3, strlen(conv3), "default.conv", &f3));
    for (int use_conv = 0; use_conv <= 1; use_conv++) {
        clred_image img;
        size_t w = CELL * 5, h = CELL * 3;
        CHECK_OK(clred_image_alloc(&img, w, h, 0, 0));
        double px[NP][2][2];
        for (size_t k = 0; k < NP; k++) {
            double cx = CELL * (k % 5) + 20.3 + 0.1 * (double)k, cy = CELL * (k / 5) + 24.6;
            double th = 0.4 * (double)k, d = pairs[k].sep * 3.0;
            px[k][0][0] = cx, px[k][0][1] = cy;
            px[k][1][0] = cx + d * cos(th), px[k][1][1] = cy + d * sin(th);
            add_star(img.sci, w, h, px[k][0][0], px[k][0][1], bright, s, s, 0);
            add_star(img.sci, w, h, px[k][1][0], px[k][1][1], bright / pairs[k].ratio, s, s, 0);
        }
        for (size_t k = 0; k < NS; k++)
            add_star(img.sci, w, h, CELL * ((NP + k) % 5) + 25.2, CELL * ((NP + k) / 5) + 24.7, singles[k], s, s, 0);
        add_noise(rng, &img, 100, 5.0);
        clred_detect_opts o = clred_detect_defaults();
        o.filter = use_conv ? &f3 : NULL;
        clred_source *list;
        size_t n;
        CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 5.0, &o, &list, &n));
        for (size_t k = 0; k < NP; k++) {
            if (pairs[k].conv != use_conv && !(use_conv && pairs[k].sep >= 2.0 && pairs[k].ratio <= 3))
                continue;
            size_t inside = 0;
            for (size_t i = 0; i < n; i++)
                inside += (size_t)(list[i].x / CELL) == k % 5 && (size_t)(list[i].y / CELL) == k / 5;
            const clred_source *a = nearest(list, n, px[k][0][0], px[k][0][1], 1.0);
            const clred_source *b = nearest(list, n, px[k][1][0], px[k][1][1], 1.0);
            CHECK_MSG(inside == 2 && a && b && a != b,
                      "pair at %.1f FWHM, flux ratio %g (%s filter): %zu sources, %s", pairs[k].sep, pairs[k].ratio,
                      use_conv ? "3 x 3" : "Gaussian", inside, a && b && a != b ? "both found" : "not split");
            if (a && b && a != b)
                CHECK((a->flags & CLRED_SRC_BLENDED) && (b->flags & CLRED_SRC_BLENDED));
        }
        for (size_t k = 0; k < NS; k++) {
            size_t cell = NP + k, inside = 0;
            for (size_t i = 0; i < n; i++)
                inside += (size_t)(list[i].x / CELL) == cell % 5 && (size_t)(list[i].y / CELL) == cell / 5;
            CHECK_MSG(inside == 1, "single star of flux %g (%s filter): %zu sources", singles[k],
                      use_conv ? "3 x 3" : "Gaussian", inside);
        }
        free(list);
        if (!use_conv) {
            /* for the record: the older contrast rule on the same pairs */
            o.deblend_nthresh = 0;
            CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 5.0, &o, &list, &n));
            size_t split = 0;
            for (size_t k = 0; k < 6; k++) {
                const clred_source *a = nearest(list, n, px[k][0][0], px[k][0][1], 1.0);
                const clred_source *b = nearest(list, n, px[k][1][0], px[k][1][1], 1.0);
                split += a && b && a != b;
            }
            fprintf(stderr, "contrast rule: %zu of 6 pairs split\n", split);
            free(list);
        }
        clred_image_free(&img);
    }
    clred_conv_filter_free(&f3);
}

/* CLEAN: a faint bump inside a very bright star's isophote is deblended as a
 * source of its own without CLEAN and merged into the star with it, fluxes
 * added. */
static void test_clean(clred_ctx *ctx, harness_rng *rng)
{
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 80, 80, 0, 0));
    double s = 3.0 / 2.3548200450309493;
    add_star(img.sci, 80, 80, 40.2, 39.7, 2e6, s, s, 0);
    /* wings: a broad halo as a Moffat-like star has */
    add_star(img.sci, 80, 80, 40.2, 39.7, 2e5, 4 * s, 4 * s, 0);
    add_star(img.sci, 80, 80, 52.0, 41.0, 2e4, s, s, 0);
    add_noise(rng, &img, 100, 5.0);
    clred_detect_opts o = clred_detect_defaults();
    clred_source *list;
    size_t n;
    o.clean = 0;
    CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 5.0, &o, &list, &n));
    CHECK_MSG(n == 2, "without CLEAN: %zu sources, expected the star and the bump", n);
    double total = 0;
    for (size_t i = 0; i < n; i++)
        total += list[i].flux;
    free(list);
    o.clean = 1;
    CHECK_OK(clred_detect_sources(ctx, &img, NULL, NULL, 100.0, 5.0, &o, &list, &n));
    CHECK_MSG(n == 1, "with CLEAN: %zu sources, expected 1", n);
    if (n == 1) {
        CHECK_NEAR(list[0].flux, total, 1e-6 * total);
        CHECK_NEAR(list[0].x, 40.2, 0.05);
    }
    free(list);
    clred_image_free(&img);
}

/* Background and RMS maps are used pixel by pixel. */
static void test_maps(clred_ctx *ctx, harness_rng *rng)
{
    clred_image img, bkg, rms;
    CHECK_OK(clred_image_alloc(&img, 90, 70, 0, 0));
    CHECK_OK(clred_image_alloc(&bkg, 90, 70, 0, 0));
    CHECK_OK(clred_image_alloc(&rms, 90, 70, 0, 0));
    for (size_t i = 0; i < 90 * 70; i++) {
        bkg.sci[i] = (float)(50 + (double)(i % 90)); /* a gradient that a scalar would detect as a source */
        rms.sci[i] = 2.0f;
        img.sci[i] = bkg.sci[i] + (float)(2.0 * harness_normal(rng));
    }
    add_star(img.sci, 90, 70, 45.2, 35.1, 5000, 1.27, 1.27, 0);
    clred_source *list;
    size_t n;
    CHECK_OK(clred_detect_sources(ctx, &img, &bkg, &rms, NAN, 0, NULL, &list, &n));
    CHECK_MSG(n == 1, "%zu sources with background and RMS maps, expected 1", n);
    if (n == 1)
        CHECK_NEAR(list[0].x, 45.2, 0.05);
    free(list);
    clred_image_free(&bkg);
    CHECK_OK(clred_image_alloc(&bkg, 91, 70, 0, 0));
    CHECK(clred_detect_sources(ctx, &img, &bkg, &rms, NAN, 0, NULL, &list, &n) == CLRED_ERR_INPUT);
    clred_image_free(&img);
    clred_image_free(&bkg);
    clred_image_free(&rms);
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    harness_rng rng = {77};
    test_filter(ctx, &rng);
    test_filter_file(ctx, &rng);
    test_labels(ctx, &rng);
    test_moments(ctx, &rng);
    test_completeness(ctx, &rng);
    test_deblend_and_flags(ctx, &rng);
    test_maps(ctx, &rng);
    test_global_level(&rng);
    test_close_pairs(ctx, &rng);
    test_centroid_scatter(ctx, &rng);
    test_clean(ctx, &rng);
    clred_ctx_destroy(ctx);
    /* the float accumulation path: the filter (same tolerance: float sums of
     * 11 terms twice stay within 1e-6) and the moments of the same stars */
    setenv("CLRED_FLOAT_ACCUM", "1", 1);
    ctx = harness_ctx();
    test_filter(ctx, &rng);
    test_moments(ctx, &rng);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
