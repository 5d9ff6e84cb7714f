/* Background models as products: evaluation on any rows, subtraction and
 * restoration, the FITS product, statistics of a map, and the per-pixel
 * mean and std of many maps (kernels/background.cl). */
#include <fitsio.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "background.h"
#include "stats.h"

static clred_status check_model(const clred_bkg_model *m)
{
    if (!m || !m->back || !m->rms || m->width == 0 || m->height == 0 || m->mesh_w == 0 || m->mesh_h == 0 ||
        m->box_w < 1 || m->box_h < 1)
        return clred_fail(CLRED_ERR_USAGE, "background model: empty or incomplete model");
    if (m->width > 1u << 30 || m->height > 1u << 30 || m->width * m->height > 0xffffffffu)
        return clred_fail(CLRED_ERR_USAGE, "background model: %zu x %zu image is too large", m->width, m->height);
    if (m->mesh_w != (m->width + (size_t)m->box_w - 1) / (size_t)m->box_w ||
        m->mesh_h != (m->height + (size_t)m->box_h - 1) / (size_t)m->box_h)
        return clred_fail(CLRED_ERR_INPUT,
                          "background model: a %zu x %zu mesh does not match %zu x %zu pixels in %d x %d boxes",
                          m->mesh_w, m->mesh_h, m->width, m->height, m->box_w, m->box_h);
    return CLRED_OK;
}

clred_status clred_bkg_model_eval(clred_ctx *ctx, const clred_bkg_model *m, size_t y0, size_t nrows, float *bkg,
                                  float *rms)
{
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "background model: no device context");
    CLRED_TRY(check_model(m));
    if (y0 > m->height || nrows > m->height - y0)
        return clred_fail(CLRED_ERR_USAGE, "background model: rows %zu..%zu are outside its %zu rows", y0, y0 + nrows,
                          m->height);
    if (nrows == 0)
        return CLRED_OK;
    size_t bytes = nrows * m->width * sizeof(float);
    cl_mem b = NULL, r = NULL;
    clred_status st = clred_pool_take(ctx, bytes, "background rows", &b);
    if (st == CLRED_OK)
        st = clred_pool_take(ctx, bytes, "background rms rows", &r);
    if (st == CLRED_OK)
        st = clred_bkg_eval_into(ctx, m, y0, nrows, b, r);
    if (st == CLRED_OK && bkg)
        st = clred_download(ctx, b, 0, bytes, bkg);
    if (st == CLRED_OK && rms)
        st = clred_download(ctx, r, 0, bytes, rms);
    if (st == CLRED_OK)
        st = clred_sync(ctx); /* the pooled buffers go back only once the kernels are done */
    clred_pool_give(ctx, &b, bytes);
    clred_pool_give(ctx, &r, bytes);
    return st;
}

clred_status clred_bkg_model_eval_dev(clred_ctx *ctx, const clred_bkg_model *m, clred_dimage **bkg,
                                      clred_dimage **rms)
{
    if (bkg)
        *bkg = NULL;
    if (rms)
        *rms = NULL;
    if (!ctx)
        return clred_fail(CLRED_ERR_USAGE, "background model: no device context");
    CLRED_TRY(check_model(m));
    clred_dimage *maps[2] = {NULL, NULL};
    clred_status st = clred_dimage_new(ctx, m->width, m->height, 0, 0, &maps[0]);
    if (st == CLRED_OK)
        st = clred_dimage_new(ctx, m->width, m->height, 0, 0, &maps[1]);
    if (st == CLRED_OK)
        st = clred_bkg_eval_into(ctx, m, 0, m->height, clred_dimage_sci(maps[0]), clred_dimage_sci(maps[1]));
    if (st != CLRED_OK || !bkg)
        clred_dimage_free(maps[0]);
    if (st != CLRED_OK || !rms)
        clred_dimage_free(maps[1]);
    if (st != CLRED_OK)
        return st;
    if (bkg)
        *bkg = maps[0];
    if (rms)
        *rms = maps[1];
    return CLRED_OK;
}

/* img's SCI +-= the model's map on the device (arith.cl add / subtract). */
static clred_status apply(clred_ctx *ctx, const clred_bkg_model *m, clred_image *img, const char *kernel)
{
    if (!ctx || !img || !img->sci)
        return clred_fail(CLRED_ERR_USAGE, "background model: no device context or image");
    CLRED_TRY(check_model(m));
    if (img->width != m->width || img->height != m->height)
        return clred_fail(CLRED_ERR_INPUT, "background model of %zu x %zu pixels for a %zu x %zu image", m->width,
                          m->height, img->width, img->height);
    clred_image view = {img->width, img->height, img->sci, NULL, NULL, NULL};
    clred_dimage *d = NULL, *map = NULL;
    clred_status st = clred_dimage_borrow(ctx, &view, &d);
    if (st == CLRED_OK)
        st = clred_bkg_model_eval_dev(ctx, m, &map, NULL);
    cl_kernel k;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "arith", NULL, kernel, &k);
    cl_mem a = d ? clred_dimage_sci(d) : NULL, b = map ? clred_dimage_sci(map) : NULL;
    cl_uint n = (cl_uint)(img->width * img->height);
    if (st == CLRED_OK)
        st = clred_args(k, kernel, CLRED_ARG(a), CLRED_ARG(b), CLRED_ARG(n), (size_t)0);
    size_t global = n;
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, kernel, 1, &global);
    if (st == CLRED_OK)
        st = clred_dimage_sync_borrowed(d);
    clred_dimage_free(map);
    clred_dimage_free(d);
    return st;
}

clred_status clred_bkg_model_subtract(clred_ctx *ctx, const clred_bkg_model *m, clred_image *img)
{
    return apply(ctx, m, img, "subtract");
}

clred_status clred_bkg_model_restore(clred_ctx *ctx, const clred_bkg_model *m, clred_image *img)
{
    return apply(ctx, m, img, "add");
}

clred_status clred_background_read(clred_ctx *ctx, const char *path, clred_image *out)
{
    memset(out, 0, sizeof *out);
    if (!clred_bkg_model_is_product(path))
        return clred_image_read(path, 0, out);
    clred_bkg_model m;
    CLRED_TRY(clred_bkg_model_read(path, &m));
    clred_status s = clred_image_alloc(out, m.width, m.height, 0, 0);
    if (s == CLRED_OK && !(out->header = clred_header_new()))
        s = clred_fail(CLRED_ERR_MEMORY, "out of memory reading %s", path);
    if (s == CLRED_OK)
        s = clred_bkg_model_eval(ctx, &m, 0, m.height, out->sci, NULL);
    clred_bkg_model_free(&m);
    if (s != CLRED_OK)
        clred_image_free(out);
    return s;
}

/* ------------------------------------------------------------ the product */

static clred_status fits_fail(int status, const char *path, const char *doing)
{
    char text[FLEN_STATUS] = "";
    fits_get_errstatus(status, text);
    fits_clear_errmsg();
    return clred_fail(CLRED_ERR_INPUT, "%s: %s: %s", path, doing, text);
}

clred_status clred_bkg_model_write(const char *path, const clred_bkg_model *m, const float *full,
                                   const clred_header *header, int overwrite)
{
    CLRED_TRY(check_model(m));
    CLRED_TRY(clred_output_check(path, NULL, 0, overwrite));
    char tmp[PATH_MAX];
    CLRED_TRY(clred_atomic_temp_name(path, tmp, sizeof tmp));
    fitsfile *f;
    int status = 0;
    if (fits_create_file(&f, tmp, &status)) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status, text);
        fits_clear_errmsg();
        return clred_fail(CLRED_ERR_IO, "%s: cannot create (%s)", path, text);
    }
    long mesh[2] = {(long)m->mesh_w, (long)m->mesh_h}, img[2] = {(long)m->width, (long)m->height};
    long fpixel[2] = {1, 1};
    long iw = (long)m->width, ih = (long)m->height;
    int bw = m->box_w, bh = m->box_h, fw = m->filter_w, fh = m->filter_h;
    double gb = m->global_back, gr = m->global_rms;
    fits_create_img(f, FLOAT_IMG, 2, mesh, &status);
    fits_update_key(f, TSTRING, "EXTNAME", "BKGMESH", "background mesh (box levels)", &status);
    fits_update_key(f, TLONG, "BKGIMW", &iw, "width of the image modelled", &status);
    fits_update_key(f, TLONG, "BKGIMH", &ih, "height of the image modelled", &status);
    fits_update_key(f, TINT, "BKGBOXW", &bw, "box width in pixels", &status);
    fits_update_key(f, TINT, "BKGBOXH", &bh, "box height in pixels", &status);
    fits_update_key(f, TINT, "BKGFILTW", &fw, "mesh median filter width in boxes", &status);
    fits_update_key(f, TINT, "BKGFILTH", &fh, "mesh median filter height in boxes", &status);
    fits_update_key(f, TSTRING, "BKGINTRP", "NATURAL_BICUBIC", "spline through box centres (i+0.5)*box-0.5",
                    &status);
    fits_update_key(f, TDOUBLE, "BKGGLOB", &gb, "median of the background mesh", &status);
    fits_update_key(f, TDOUBLE, "BKGGRMS", &gr, "median of the rms mesh", &status);
    for (size_t i = 0; header && i < clred_header_count(header) && !status; i++) {
        char card[FLEN_CARD];
        snprintf(card, sizeof card, "%s", clred_header_card(header, i));
        size_t n = strlen(card);
        while (n > 8 && card[n - 1] == ' ')
            card[--n] = '\0';
        if (strncmp(card, "EXTNAME", 7) != 0 && strncmp(card, "BKG", 3) != 0)
            fits_write_record(f, card, &status);
    }
    fits_write_pix(f, TFLOAT, fpixel, (LONGLONG)(m->mesh_w * m->mesh_h), m->back, &status);
    fits_create_img(f, FLOAT_IMG, 2, mesh, &status);
    fits_update_key(f, TSTRING, "EXTNAME", "BKGRMS", "background rms mesh", &status);
    fits_write_pix(f, TFLOAT, fpixel, (LONGLONG)(m->mesh_w * m->mesh_h), m->rms, &status);
    if (full) {
        fits_create_img(f, FLOAT_IMG, 2, img, &status);
        fits_update_key(f, TSTRING, "EXTNAME", "BKGMAP", "the model evaluated on the image grid", &status);
        fits_write_pix(f, TFLOAT, fpixel, (LONGLONG)(m->width * m->height), (void *)full, &status);
    }
    int close_status = 0;
    fits_close_file(f, &close_status);
    if (status || close_status) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status ? status : close_status, text);
        fits_clear_errmsg();
        remove(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing the background model failed (%s)", path, text);
    }
    return clred_atomic_commit(tmp, path);
}

int clred_bkg_model_is_product(const char *path)
{
    fitsfile *f;
    int status = 0;
    if (fits_open_file(&f, path, READONLY, &status)) {
        fits_clear_errmsg();
        return 0;
    }
    char extname[FLEN_VALUE] = "";
    int yes = !fits_read_key(f, TSTRING, "EXTNAME", extname, NULL, &status) && strcmp(extname, "BKGMESH") == 0;
    status = 0;
    fits_close_file(f, &status);
    fits_clear_errmsg();
    return yes;
}

static clred_status read_mesh(fitsfile *f, const char *path, const char *extname, const clred_bkg_model *m,
                              float *out)
{
    int status = 0, bitpix, naxis;
    long naxes[2] = {0, 0}, fpixel[2] = {1, 1};
    if (fits_movnam_hdu(f, IMAGE_HDU, (char *)extname, 0, &status))
        return fits_fail(status, path, extname);
    fits_get_img_param(f, 2, &bitpix, &naxis, naxes, &status);
    if (status || naxis != 2 || (size_t)naxes[0] != m->mesh_w || (size_t)naxes[1] != m->mesh_h)
        return clred_fail(CLRED_ERR_INPUT, "%s: %s is not a %zu x %zu mesh", path, extname, m->mesh_w, m->mesh_h);
    if (fits_read_pix(f, TFLOAT, fpixel, (LONGLONG)(m->mesh_w * m->mesh_h), NULL, out, NULL, &status))
        return fits_fail(status, path, extname);
    return CLRED_OK;
}

clred_status clred_bkg_model_read(const char *path, clred_bkg_model *m)
{
    memset(m, 0, sizeof *m);
    fitsfile *f;
    int status = 0;
    if (fits_open_file(&f, path, READONLY, &status))
        return fits_fail(status, path, "opening the background model");
    char extname[FLEN_VALUE] = "";
    long iw = 0, ih = 0, naxes[2] = {0, 0};
    int bitpix, naxis;
    fits_read_key(f, TSTRING, "EXTNAME", extname, NULL, &status);
    if (status || strcmp(extname, "BKGMESH") != 0) {
        status = 0;
        fits_close_file(f, &status);
        fits_clear_errmsg();
        return clred_fail(CLRED_ERR_INPUT, "%s: not a background model (no BKGMESH primary HDU)", path);
    }
    fits_read_key(f, TLONG, "BKGIMW", &iw, NULL, &status);
    fits_read_key(f, TLONG, "BKGIMH", &ih, NULL, &status);
    fits_read_key(f, TINT, "BKGBOXW", &m->box_w, NULL, &status);
    fits_read_key(f, TINT, "BKGBOXH", &m->box_h, NULL, &status);
    fits_read_key(f, TINT, "BKGFILTW", &m->filter_w, NULL, &status);
    fits_read_key(f, TINT, "BKGFILTH", &m->filter_h, NULL, &status);
    fits_read_key(f, TDOUBLE, "BKGGLOB", &m->global_back, NULL, &status);
    fits_read_key(f, TDOUBLE, "BKGGRMS", &m->global_rms, NULL, &status);
    fits_get_img_param(f, 2, &bitpix, &naxis, naxes, &status);
    clred_status st = CLRED_OK;
    if (status)
        st = fits_fail(status, path, "reading the model's settings");
    else if (iw <= 0 || ih <= 0 || naxis != 2)
        st = clred_fail(CLRED_ERR_INPUT, "%s: the background model's image size or mesh is missing", path);
    if (st == CLRED_OK) {
        m->width = (size_t)iw;
        m->height = (size_t)ih;
        m->mesh_w = (size_t)naxes[0];
        m->mesh_h = (size_t)naxes[1];
        m->back = malloc(m->mesh_w * m->mesh_h * sizeof *m->back);
        m->rms = malloc(m->mesh_w * m->mesh_h * sizeof *m->rms);
        if (!m->back || !m->rms)
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory reading %s", path);
    }
    if (st == CLRED_OK)
        st = check_model(m);
    if (st == CLRED_OK)
        st = read_mesh(f, path, "BKGMESH", m, m->back);
    if (st == CLRED_OK)
        st = read_mesh(f, path, "BKGRMS", m, m->rms);
    status = 0;
    fits_close_file(f, &status);
    fits_clear_errmsg();
    if (st != CLRED_OK)
        clred_bkg_model_free(m);
    return st;
}

/* ---------------------------------------------------------- statistics */

void clred_map_stats_free(clred_map_stats *s)
{
    if (!s)
        return;
    free(s->counts);
    memset(s, 0, sizeof *s);
}

clred_status clred_map_stats_compute(clred_ctx *ctx, const float *map, size_t width, size_t height, size_t nbins,
                                     clred_map_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!ctx || !map || width == 0 || height == 0 || nbins == 0 || nbins > 1u << 20)
        return clred_fail(CLRED_ERR_USAGE, "map statistics: need a context, a map and 1 to 2^20 bins");
    /* the exact median, mean and std of the device statistics, unclipped */
    clred_stats_opts so = clred_stats_defaults();
    so.max_iters = 0;
    so.ignore_bits = 0;
    clred_stats s;
    clred_image view = {width, height, (float *)map, NULL, NULL, NULL};
    CLRED_TRY(clred_image_stats(ctx, &view, &so, &s));
    out->min = s.min;
    out->max = s.max;
    out->mean = s.mean;
    out->median = s.median;
    out->std = s.std;
    out->npix = s.npix;
    out->nnan = s.ninvalid;
    out->nbins = nbins;
    out->counts = calloc(nbins, sizeof *out->counts);
    if (!out->counts)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu-bin histogram", nbins);
    /* a histogram of a tiny map is no kernel's work: one host pass */
    double lo = s.min, span = s.max - s.min;
    for (size_t i = 0; s.npix && i < width * height; i++) {
        double v = map[i];
        if (!isfinite(v))
            continue;
        size_t b = span > 0 ? (size_t)((v - lo) / span * (double)nbins) : 0;
        out->counts[b < nbins ? b : nbins - 1]++;
    }
    return CLRED_OK;
}

/* ------------------------------------------------- many maps, per pixel */

clred_status clred_pixel_mean_std(clred_ctx *ctx, const clred_image *maps, size_t n, float *mean, float *std)
{
    if (!ctx || !maps || n == 0 || !maps[0].sci || maps[0].width == 0 || maps[0].height == 0)
        return clred_fail(CLRED_ERR_USAGE, "per-pixel mean and std: need a context and at least one map");
    size_t width = maps[0].width, height = maps[0].height;
    for (size_t j = 1; j < n; j++)
        if (!maps[j].sci || maps[j].width != width || maps[j].height != height)
            return clred_fail(CLRED_ERR_INPUT, "per-pixel mean and std: map %zu is %zu x %zu, map 0 %zu x %zu", j,
                              maps[j].width, maps[j].height, width, height);
    if (width * height > 0xffffffffu || n > INT_MAX)
        return clred_fail(CLRED_ERR_USAGE, "per-pixel mean and std: %zu maps of %zu x %zu are too many", n, width,
                          height);
    size_t npix = width * height, bytes = npix * sizeof(float);
    cl_mem acc[3] = {NULL, NULL, NULL};
    clred_status st = CLRED_OK;
    for (int i = 0; i < 3 && st == CLRED_OK; i++)
        st = clred_pool_take(ctx, bytes, "per-pixel moments", &acc[i]);
    cl_kernel k;
    cl_uint count = (cl_uint)npix;
    size_t global = npix;
    for (size_t j = 0; j < n && st == CLRED_OK; j++) {
        clred_image view = {width, height, maps[j].sci, NULL, NULL, NULL};
        clred_dimage *d = NULL;
        int kk = (int)j + 1;
        st = clred_dimage_borrow(ctx, &view, &d);
        cl_mem x = d ? clred_dimage_sci(d) : NULL;
        if (st == CLRED_OK)
            st = clred_kernel(ctx, "background", NULL, "bkg_welford", &k);
        if (st == CLRED_OK)
            st = clred_args(k, "bkg_welford", CLRED_ARG(x), CLRED_ARG(acc[0]), CLRED_ARG(acc[1]), CLRED_ARG(acc[2]),
                            CLRED_ARG(kk), CLRED_ARG(count), (size_t)0);
        if (st == CLRED_OK)
            st = clred_run_tiled(ctx, k, "bkg_welford", 1, &global);
        /* a borrowed view goes once the kernel that reads it is done */
        if (st == CLRED_OK)
            st = clred_sync(ctx);
        clred_dimage_free(d);
    }
    int total = (int)n;
    if (st == CLRED_OK)
        st = clred_kernel(ctx, "background", NULL, "bkg_welford_finish", &k);
    if (st == CLRED_OK)
        st = clred_args(k, "bkg_welford_finish", CLRED_ARG(acc[0]), CLRED_ARG(acc[1]), CLRED_ARG(acc[2]),
                        CLRED_ARG(total), CLRED_ARG(count), (size_t)0);
    if (st == CLRED_OK)
        st = clred_run_tiled(ctx, k, "bkg_welford_finish", 1, &global);
    if (st == CLRED_OK && mean)
        st = clred_download(ctx, acc[1], 0, bytes, mean);
    if (st == CLRED_OK && std)
        st = clred_download(ctx, acc[2], 0, bytes, std);
    if (st == CLRED_OK)
        st = clred_sync(ctx);
    for (int i = 0; i < 3; i++)
        clred_pool_give(ctx, &acc[i], bytes);
    return st;
}
