/* Host images: allocation of the SCI, VAR and MASK planes. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Planes are page aligned: a device that shares host memory (POCL, an
 * integrated GPU) then uses them in place (CL_MEM_USE_HOST_PTR) without a
 * shadow copy. */
#define PLANE_ALIGN 4096

static clred_status alloc_plane(void **plane, size_t count, size_t elem)
{
    size_t bytes = (count ? count : 1) * elem;
    *plane = count && bytes / count != elem ? NULL : aligned_alloc(PLANE_ALIGN, clred_round_up(bytes, PLANE_ALIGN));
    if (*plane)
        memset(*plane, 0, bytes);
    if (!*plane)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory allocating a %zu-pixel image plane", count);
    return CLRED_OK;
}

clred_status clred_image_alloc(clred_image *img, size_t width, size_t height, int with_var, int with_mask)
{
    memset(img, 0, sizeof *img);
    if (width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "image of zero size (%zu x %zu)", width, height);
    img->width = width;
    img->height = height;
    clred_status st = alloc_plane((void **)&img->sci, width * height, sizeof(float));
    if (st == CLRED_OK && with_var)
        st = clred_image_add_var(img);
    if (st == CLRED_OK && with_mask)
        st = clred_image_add_mask(img);
    if (st != CLRED_OK)
        clred_image_free(img);
    return st;
}

clred_status clred_image_add_var(clred_image *img)
{
    if (img->var)
        return CLRED_OK;
    return alloc_plane((void **)&img->var, img->width * img->height, sizeof(float));
}

clred_status clred_image_add_mask(clred_image *img)
{
    if (img->mask)
        return CLRED_OK;
    return alloc_plane((void **)&img->mask, img->width * img->height, sizeof(uint16_t));
}

void clred_image_free(clred_image *img)
{
    if (!img)
        return;
    free(img->sci);
    free(img->var);
    free(img->mask);
    clred_header_free(img->header);
    memset(img, 0, sizeof *img);
}
