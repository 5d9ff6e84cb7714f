/* Cutouts around candidates: one FITS file with three cubes (NEW, REF, DIFF),
 * plane k the size x size box centred on candidate k's pixel, NaN off the
 * image, written atomically. */
#include <fitsio.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void clred_cutout_plane(const clred_image *img, const clred_candidate *c, size_t size, float *out)
{
    long cx = lround(c->x), cy = lround(c->y), half = (long)(size / 2);
    for (long j = 0; j < (long)size; j++)
        for (long i = 0; i < (long)size; i++) {
            long x = cx - half + i, y = cy - half + j;
            int in = x >= 0 && y >= 0 && x < (long)img->width && y < (long)img->height;
            out[(size_t)j * size + (size_t)i] = in ? img->sci[(size_t)y * img->width + (size_t)x] : NAN;
        }
}

clred_status clred_cutouts_write(const char *path, const clred_image *new_img, const clred_image *ref,
                                 const clred_image *diff, const clred_candidate *list, size_t n, size_t size,
                                 int overwrite)
{
    if (size == 0 || size % 2 == 0 || size > 1023)
        return clred_fail(CLRED_ERR_USAGE, "cutouts: size must be odd, 1..1023 px, got %zu", size);
    const clred_image *imgs[3] = {new_img, ref, diff};
    static const char *const names[3] = {"NEW", "REF", "DIFF"};
    for (int k = 0; k < 3; k++)
        if (!imgs[k] || !imgs[k]->sci)
            return clred_fail(CLRED_ERR_USAGE, "cutouts: no %s image", names[k]);
    CLRED_TRY(clred_output_check(path, NULL, 0, overwrite));
    char tmp[PATH_MAX];
    CLRED_TRY(clred_atomic_temp_name(path, tmp, sizeof tmp));
    float *plane = malloc(size * size * sizeof *plane);
    if (!plane)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu px cutout", size);
    fitsfile *f;
    int status = 0;
    fits_create_file(&f, tmp, &status);
    if (status) {
        free(plane);
        fits_clear_errmsg();
        return clred_fail(CLRED_ERR_IO, "%s: cannot create", path);
    }
    /* an empty primary HDU, then the three cubes */
    fits_create_img(f, FLOAT_IMG, 0, NULL, &status);
    long ncand = (long)n;
    fits_update_key(f, TLONG, "NCAND", &ncand, "candidates (planes per cube)", &status);
    for (int k = 0; k < 3 && !status; k++) {
        long naxes[3] = {(long)size, (long)size, n ? (long)n : 1};
        fits_create_img(f, FLOAT_IMG, 3, naxes, &status);
        fits_update_key(f, TSTRING, "EXTNAME", (void *)names[k], NULL, &status);
        for (size_t c = 0; c < n && !status; c++) {
            clred_cutout_plane(imgs[k], &list[c], size, plane);
            long fpix[3] = {1, 1, (long)c + 1};
            fits_write_pix(f, TFLOAT, fpix, (LONGLONG)(size * size), plane, &status);
        }
    }
    int close_status = 0;
    fits_close_file(f, &close_status);
    free(plane);
    if (status || close_status) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status ? status : close_status, text);
        fits_clear_errmsg();
        remove(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing the cutouts failed (%s)", path, text);
    }
    return clred_atomic_commit(tmp, path);
}
