/* The Alard-Lupton kernel solution as one FITS file: the kernel images at a
 * grid of positions (a cube in the primary HDU, the positions and KSUM,
 * CONVOL and PHOTNORM in its header) and the solution's terms as a binary
 * table (EXTNAME SOLUTION). */
#include <fitsio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

clred_status clred_al_kernel_write(const char *path, const clred_al_result *r, int overwrite)
{
    if (!r || !r->kernel_images || !r->terms)
        return clred_fail(CLRED_ERR_USAGE, "%s: no Alard-Lupton solution to write", path);
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
    size_t ng = (size_t)r->kernel_grid * (size_t)r->kernel_grid;
    long naxes[3] = {(long)r->ksize, (long)r->ksize, (long)ng};
    fits_create_img(f, FLOAT_IMG, 3, naxes, &status);
    fits_write_img(f, TFLOAT, 1, (LONGLONG)(r->ksize * r->ksize * ng), r->kernel_images, &status);
    double ksum = r->ksum;
    int grid = r->kernel_grid;
    fits_write_key(f, TDOUBLE, "KSUM", &ksum, "kernel sum", &status);
    fits_write_key(f, TSTRING, "CONVOL", (void *)(r->convolved_ref ? "TEMPLATE" : "IMAGE"), "image convolved", &status);
    double pn = r->photnorm_scale;
    fits_write_key(f, TDOUBLE, "PHOTNORM", &pn, "the difference was divided by this", &status);
    fits_write_key(f, TINT, "KGRID", &grid, "kernel images: KGRID x KGRID positions", &status);
    for (size_t i = 0; i < ng && i < 999; i++) {
        char kx[16], ky[16];
        snprintf(kx, sizeof kx, "KX%03zu", i);
        snprintf(ky, sizeof ky, "KY%03zu", i);
        fits_write_key(f, TDOUBLE, kx, &r->kernel_x[i], "x of kernel plane (0-based px)", &status);
        fits_write_key(f, TDOUBLE, ky, &r->kernel_y[i], "y of kernel plane (0-based px)", &status);
    }
    char *ttype[] = {"GAUSS", "DEG_U", "DEG_V", "SX", "SY", "SIGMA", "COEFF"};
    char *tform[] = {"1J", "1J", "1J", "1J", "1J", "1D", "1D"};
    char *tunit[] = {"", "", "", "", "", "pix", ""};
    LONGLONG n = (LONGLONG)r->nterms;
    fits_create_tbl(f, BINARY_TBL, n, 7, ttype, tform, tunit, "SOLUTION", &status);
    int *iv = malloc((r->nterms ? r->nterms : 1) * sizeof *iv);
    double *dv = malloc((r->nterms ? r->nterms : 1) * sizeof *dv);
    if (!iv || !dv) {
        free(iv);
        free(dv);
        fits_close_file(f, &status);
        clred_atomic_discard(tmp);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory");
    }
    for (int c = 0; c < 5; c++) {
        for (size_t i = 0; i < r->nterms; i++) {
            const clred_al_term *t = &r->terms[i];
            iv[i] = c == 0 ? t->gauss : c == 1 ? t->deg_u : c == 2 ? t->deg_v : c == 3 ? t->sx : t->sy;
        }
        fits_write_col(f, TINT, c + 1, 1, 1, n, iv, &status);
    }
    for (size_t i = 0; i < r->nterms; i++)
        dv[i] = r->terms[i].sigma;
    fits_write_col(f, TDOUBLE, 6, 1, 1, n, dv, &status);
    for (size_t i = 0; i < r->nterms; i++)
        dv[i] = r->terms[i].coeff;
    fits_write_col(f, TDOUBLE, 7, 1, 1, n, dv, &status);
    free(iv);
    free(dv);
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
