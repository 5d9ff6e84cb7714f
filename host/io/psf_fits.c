/* PSF files: a constant PSF as a 2-D image, a varying one as the cube of its
 * basis images with the polynomials' order, centre and scale in the header
 * (a plain 2-D PSF file stays valid: it is order 0). */
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psf_internal.h"

/* A measured model's errors, written by clred_psf_write: its shape error
 * (PSFERR) and its wing-error profile (rings of PSFWRING px, PSFWE1 ...);
 * ZOGY counts both in S_corr's variance, so a model saved and read again
 * must subtract as it did when measured. A file from elsewhere has none
 * (0), and a profile with a ring missing or out of range counts as none. */
typedef struct {
    double model_err, ring_px, wing[CLRED_PSF_WING_RINGS];
} psf_error_keys;

static void wing_key(int ring, char key[16], char comment[48])
{
    snprintf(key, 16, "PSFWE%d", ring + 1);
    snprintf(comment, 48, "wing error in ring %d, of the filtered peak", ring + 1);
}

static psf_error_keys error_keys_read(const clred_header *h)
{
    psf_error_keys k;
    memset(&k, 0, sizeof k);
    double e = NAN, ring = NAN;
    clred_header_get_double(h, "PSFERR", &e);
    k.model_err = isfinite(e) && e >= 0 && e < 1 ? e : 0.0;
    if (!clred_header_get_double(h, "PSFWRING", &ring) || !(ring > 0 && ring < 1e3))
        return k;
    for (int r = 0; r < CLRED_PSF_WING_RINGS; r++) {
        char key[16], comment[48];
        wing_key(r, key, comment);
        double v = NAN;
        if (!clred_header_get_double(h, key, &v) || !(v >= 0 && v < 1)) {
            memset(k.wing, 0, sizeof k.wing);
            return k;
        }
        k.wing[r] = v;
    }
    k.ring_px = ring;
    return k;
}

static void error_keys_apply(const psf_error_keys *k, clred_psf *psf)
{
    psf->model_err = k->model_err;
    psf->wing_ring_px = k->ring_px;
    memcpy(psf->wing_err, k->wing, sizeof psf->wing_err);
}

/* The varying model in a cube of nterms planes (written by clred_psf_write). */
static clred_status read_varying(const char *path, const clred_file_info *info, size_t max_size, clred_psf *psf)
{
    clred_image img;
    CLRED_TRY(clred_image_read(path, 0, &img));
    double order = NAN, x0 = NAN, y0 = NAN, xs = NAN, ys = NAN;
    clred_header_get_double(img.header, "PSFORDER", &order);
    clred_header_get_double(img.header, "PSFX0", &x0);
    clred_header_get_double(img.header, "PSFY0", &y0);
    clred_header_get_double(img.header, "PSFXSCL", &xs);
    clred_header_get_double(img.header, "PSFYSCL", &ys);
    psf_error_keys errors = error_keys_read(img.header);
    clred_image_free(&img);
    int ord = order == 1 ? 1 : order == 2 ? 2 : 0;
    size_t nt = clred_psf_nterms(ord), n = info->width;
    if (!ord || info->nframes != nt)
        return clred_fail(CLRED_ERR_INPUT, "%s: a PSF cube of %zu planes needs PSFORDER 1 (3 planes) or 2 (6), got %g",
                          path, info->nframes, order);
    if (!isfinite(x0) || !isfinite(y0) || !(xs > 0) || !(ys > 0))
        return clred_fail(CLRED_ERR_INPUT, "%s: a PSF cube needs PSFX0, PSFY0 and PSFXSCL, PSFYSCL > 0", path);
    if (info->width != info->height || n % 2 == 0 || n < 3)
        return clred_fail(CLRED_ERR_INPUT, "%s: PSF planes of %zu x %zu px are not square and odd", path, info->width,
                          info->height);
    size_t half = n / 2;
    if (max_size && max_size < n)
        half = max_size / 2;
    size_t m = 2 * half + 1, off = n / 2 - half;
    memset(psf, 0, sizeof *psf);
    psf->basis = malloc(nt * m * m * sizeof *psf->basis);
    psf->data = malloc(m * m * sizeof *psf->data);
    if (!psf->basis || !psf->data) {
        clred_psf_free(psf);
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory for the PSF", path);
    }
    for (size_t k = 0; k < nt; k++) {
        clred_status st = clred_image_read(path, k, &img);
        if (st != CLRED_OK) {
            clred_psf_free(psf);
            return st;
        }
        for (size_t j = 0; j < m; j++)
            for (size_t i = 0; i < m; i++) {
                float v = img.sci[(j + off) * n + i + off];
                psf->basis[(k * m + j) * m + i] = v;
                if (!isfinite(v)) {
                    clred_image_free(&img);
                    clred_psf_free(psf);
                    return clred_fail(CLRED_ERR_INPUT, "%s: PSF plane %zu, pixel (%zu, %zu) is not finite", path, k,
                                      i + off, j + off);
                }
            }
        clred_image_free(&img);
    }
    /* a cut (or a file written elsewhere) may not keep the sums at (1, 0, ...): restore them */
    double s0 = 0;
    for (size_t p = 0; p < m * m; p++)
        s0 += psf->basis[p];
    if (!(s0 > 0)) {
        clred_psf_free(psf);
        return clred_fail(CLRED_ERR_INPUT, "%s: the PSF's constant plane sums to %g, not > 0", path, s0);
    }
    for (size_t k = 0; k < nt; k++) {
        double sk = 0;
        for (size_t p = 0; p < m * m; p++)
            sk += psf->basis[k * m * m + p] / s0;
        for (size_t p = 0; p < m * m; p++)
            psf->basis[k * m * m + p] = (float)(psf->basis[k * m * m + p] / s0 - (k ? sk * psf->basis[p] : 0.0));
    }
    memcpy(psf->data, psf->basis, m * m * sizeof *psf->data);
    psf->size = m;
    psf->order = ord;
    psf->nterms = nt;
    psf->x0 = x0;
    psf->y0 = y0;
    psf->xscale = xs;
    psf->yscale = ys;
    error_keys_apply(&errors, psf);
    clred_psf_shape(psf);
    return clred_psf_corners(psf);
}

clred_status clred_psf_read(const char *path, size_t max_size, clred_psf *psf)
{
    memset(psf, 0, sizeof *psf);
    clred_file_info info;
    CLRED_TRY(clred_file_info_read(path, &info));
    if (info.nframes > 1)
        return read_varying(path, &info, max_size, psf);
    clred_image img;
    CLRED_TRY(clred_image_read(path, 0, &img));
    clred_status st = clred_psf_from_array(img.sci, img.width, img.height, max_size, psf);
    if (st == CLRED_OK) {
        psf_error_keys errors = error_keys_read(img.header);
        error_keys_apply(&errors, psf);
    }
    clred_image_free(&img);
    if (st != CLRED_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", clred_last_error());
        return clred_fail(st, "%s: %s", path, msg);
    }
    return CLRED_OK;
}

#define MODEL_ERR_COMMENT "model's shape error, of a star's filtered peak"
#define WING_RING_COMMENT "px per ring of the wing-error profile PSFWEn"

static clred_status write_constant(const char *path, const clred_psf *psf, int overwrite)
{
    clred_image img;
    memset(&img, 0, sizeof img);
    img.width = img.height = psf->size;
    img.sci = psf->data;
    if (!(img.header = clred_header_new()))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a header");
    clred_status st = clred_header_set_double(img.header, "PSFFWHM", psf->fwhm, "FWHM, px");
    if (st == CLRED_OK)
        st = clred_header_set_double(img.header, "PSFELLIP", psf->ellipticity, "1 - b/a");
    if (st == CLRED_OK)
        st = clred_header_set_double(img.header, "PSFNSTAR", (double)psf->nstars, "stars averaged");
    if (st == CLRED_OK)
        st = clred_header_set_double(img.header, "PSFERR", psf->model_err, MODEL_ERR_COMMENT);
    if (st == CLRED_OK && psf->wing_ring_px > 0) {
        st = clred_header_set_double(img.header, "PSFWRING", psf->wing_ring_px, WING_RING_COMMENT);
        for (int r = 0; st == CLRED_OK && r < CLRED_PSF_WING_RINGS; r++) {
            char key[16], comment[48];
            wing_key(r, key, comment);
            st = clred_header_set_double(img.header, key, psf->wing_err[r], comment);
        }
    }
    if (st == CLRED_OK)
        st = clred_image_write(path, &img, overwrite);
    clred_header_free(img.header);
    return st;
}

static void key_double(fitsfile *f, const char *key, double v, const char *comment, int *status)
{
    if (isfinite(v))
        fits_write_key(f, TDOUBLE, key, &v, comment, status);
}

clred_status clred_psf_write(const char *path, const clred_psf *psf, int overwrite)
{
    if (!psf || !psf->data || psf->size == 0)
        return clred_fail(CLRED_ERR_USAGE, "%s: no PSF to write", path);
    if (psf->order <= 0 || !psf->basis)
        return write_constant(path, psf, overwrite);
    CLRED_TRY(clred_output_check(path, NULL, 0, overwrite));
    char tmp[4096];
    CLRED_TRY(clred_atomic_temp_name(path, tmp, sizeof tmp));
    fitsfile *f = NULL;
    int status = 0;
    if (fits_create_file(&f, tmp, &status)) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status, text);
        fits_clear_errmsg();
        return clred_fail(CLRED_ERR_IO, "%s: cannot create (%s)", path, text);
    }
    long naxes[3] = {(long)psf->size, (long)psf->size, (long)psf->nterms};
    fits_create_img(f, FLOAT_IMG, 3, naxes, &status);
    fits_write_img(f, TFLOAT, 1, (LONGLONG)(psf->size * psf->size * psf->nterms), psf->basis, &status);
    int order = psf->order, nterm = (int)psf->nterms;
    fits_write_key(f, TINT, "PSFORDER", &order, "PSF polynomial order in (x, y)", &status);
    fits_write_key(f, TINT, "PSFNTERM", &nterm, "planes: terms 1, u, v, u^2, u v, v^2", &status);
    key_double(f, "PSFX0", psf->x0, "u = (x - PSFX0) / PSFXSCL, 0-based px", &status);
    key_double(f, "PSFY0", psf->y0, "v = (y - PSFY0) / PSFYSCL, 0-based px", &status);
    key_double(f, "PSFXSCL", psf->xscale, "px", &status);
    key_double(f, "PSFYSCL", psf->yscale, "px", &status);
    key_double(f, "PSFFWHM", psf->fwhm, "FWHM at the centre, px", &status);
    key_double(f, "PSFELLIP", psf->ellipticity, "1 - b/a at the centre", &status);
    double nstars = (double)psf->nstars;
    key_double(f, "PSFNSTAR", nstars, "stars fitted", &status);
    key_double(f, "PSFERR", psf->model_err, MODEL_ERR_COMMENT, &status);
    if (psf->wing_ring_px > 0) {
        key_double(f, "PSFWRING", psf->wing_ring_px, WING_RING_COMMENT, &status);
        for (int r = 0; r < CLRED_PSF_WING_RINGS; r++) {
            char key[16], comment[48];
            wing_key(r, key, comment);
            key_double(f, key, psf->wing_err[r], comment, &status);
        }
    }
    static const char *const where[4] = {"(0, 0)", "(W-1, 0)", "(0, H-1)", "(W-1, H-1)"};
    for (int c = 0; c < 4; c++) {
        char key[16], comment[64];
        snprintf(key, sizeof key, "PSFFWHM%d", c + 1);
        snprintf(comment, sizeof comment, "FWHM at corner %s, px", where[c]);
        key_double(f, key, psf->corner_fwhm[c], comment, &status);
        snprintf(key, sizeof key, "PSFELL%d", c + 1);
        snprintf(comment, sizeof comment, "1 - b/a at corner %s", where[c]);
        key_double(f, key, psf->corner_ellipticity[c], comment, &status);
    }
    int close_status = 0;
    fits_close_file(f, &close_status);
    if (status || close_status) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status ? status : close_status, text);
        fits_clear_errmsg();
        clred_atomic_discard(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: %s", path, text);
    }
    return clred_atomic_commit(tmp, path);
}
