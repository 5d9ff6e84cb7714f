/* The one check of a shape read from a file's header, made before anything
 * is allocated for it: a header that lies (an axis of 2^61, a billion frames
 * in a 69 KB file) is refused with the file named instead of wrapping a size
 * or asking for terabytes. */
#include "internal.h"

clred_status clred_shape_check(const char *path, size_t width, size_t height, size_t nframes, size_t elem,
                               unsigned long long available)
{
    if (width == 0 || height == 0 || nframes == 0)
        return clred_fail(CLRED_ERR_INPUT, "%s: the image has zero size (%zu x %zu x %zu)", path, width, height,
                          nframes);
    if (width > CLRED_MAX_AXIS || height > CLRED_MAX_AXIS)
        return clred_fail(CLRED_ERR_INPUT, "%s: the header claims %zu x %zu pixels; at most %zu along an axis are read",
                          path, width, height, CLRED_MAX_AXIS);
    if (nframes > CLRED_MAX_FRAMES)
        return clred_fail(CLRED_ERR_INPUT, "%s: the header claims %zu frames; at most %zu are read", path, nframes,
                          CLRED_MAX_FRAMES);
    size_t pixels, total, bytes;
    if (!clred_size_mul(width, height, &pixels) || pixels > CLRED_MAX_FRAME_PIXELS)
        return clred_fail(CLRED_ERR_INPUT, "%s: the header claims %zu x %zu pixels per frame; at most %zu are read",
                          path, width, height, CLRED_MAX_FRAME_PIXELS);
    if (!clred_size_mul(pixels, nframes, &total) || !clred_size_mul(total, elem, &bytes) || bytes > available)
        return clred_fail(CLRED_ERR_INPUT,
                          "%s: the header claims %zu x %zu x %zu pixels, more than the file holds (truncated or "
                          "damaged)",
                          path, width, height, nframes);
    return CLRED_OK;
}
