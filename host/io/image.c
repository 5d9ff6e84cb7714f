/* Host images: allocation of the SCI, VAR and MASK planes. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Planes are page aligned: a device that shares host memory (POCL, an
 * integrated GPU) then uses them in place (CL_MEM_USE_HOST_PTR) without a
 * shadow copy. */
#define PLANE_ALIGN 4096

/* zero = 0 for a plane that is overwritten whole next (a file read, a
 * download): zeroing it first would write every byte twice, and most of a
 * read's time went into it. */
static clred_status alloc_plane(void **plane, size_t count, size_t elem, int zero)
{
    size_t bytes = (count ? count : 1) * elem;
    *plane = count && bytes / count != elem ? NULL : aligned_alloc(PLANE_ALIGN, clred_round_up(bytes, PLANE_ALIGN));
    if (*plane && zero)
        memset(*plane, 0, bytes);
    if (!*plane)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory allocating a %zu-pixel image plane", count);
    return CLRED_OK;
}

static clred_status image_alloc(clred_image *img, size_t width, size_t height, int zero)
{
    memset(img, 0, sizeof *img);
    if (width == 0 || height == 0)
        return clred_fail(CLRED_ERR_USAGE, "image of zero size (%zu x %zu)", width, height);
    img->width = width;
    img->height = height;
    return alloc_plane((void **)&img->sci, width * height, sizeof(float), zero);
}

static clred_status add_planes(clred_image *img, int with_var, int with_mask, int zero)
{
    clred_status st = CLRED_OK;
    if (with_var && !img->var)
        st = alloc_plane((void **)&img->var, img->width * img->height, sizeof(float), zero);
    if (st == CLRED_OK && with_mask && !img->mask)
        st = alloc_plane((void **)&img->mask, img->width * img->height, sizeof(uint16_t), zero);
    return st;
}

clred_status clred_image_alloc(clred_image *img, size_t width, size_t height, int with_var, int with_mask)
{
    clred_status st = image_alloc(img, width, height, 1);
    if (st == CLRED_OK)
        st = add_planes(img, with_var, with_mask, 1);
    if (st != CLRED_OK)
        clred_image_free(img);
    return st;
}

clred_status clred_image_alloc_unset(clred_image *img, size_t width, size_t height)
{
    return image_alloc(img, width, height, 0);
}

clred_status clred_image_add_planes_unset(clred_image *img, int with_var, int with_mask)
{
    return add_planes(img, with_var, with_mask, 0);
}

clred_status clred_image_add_var(clred_image *img)
{
    return add_planes(img, 1, 0, 1);
}

clred_status clred_image_add_mask(clred_image *img)
{
    return add_planes(img, 0, 1, 1);
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
