/* Square and separable median filters (clred_median_filter; L.A.Cosmic's
 * medians), a family of their own: a caller that only filters (the cube
 * recipe) builds these, not the whole of L.A.Cosmic, and the filters'
 * scalar variant (VW=1, a GPU's) is built without the rest.
 *
 * Borders: like astroscrappy, a filter of half-width r copies its input in
 * the r-pixel border, where the window would leave the image. */

#include "lib_sort.cl"
#include "lib_vec.cl"
#include "lib_store.cl"
#include "lib_median.cl"

/* ---- square median filters: out = median of the (2r+1)^2 window.
 * A work-item filters VW neighbouring pixels of a row with vector
 * compare-exchanges; a group of VW pixels that touches the border or the
 * image's end goes pixel by pixel (copy in the border, insertion sort inside:
 * the same median, and few such pixels). */

/* One pixel of a filter whose window is v[0..n) gathered by the caller. */
inline float border_or_median(global const float *in, const int w, const int x, const int y, const bool border,
                              float *v, const int n)
{
    if (border)
        return in[y * w + x];
    clred_sort(v, n);
    return v[n / 2];
}

#define SQUARE_MEDIAN_KERNEL(NAME, R, N)                                                      \
    kernel void NAME(global const float *in, global float *out, const int w, const int h)    \
    {                                                                                         \
        const int x0 = get_global_id(0) * VW, y = get_global_id(1);                           \
        if (x0 >= w || y >= h)                                                                \
            return;                                                                           \
        if (y < R || y >= h - R || x0 < R || x0 + VW > w - R) {                               \
            for (int x = x0; x < min(x0 + VW, w); x++) {                                      \
                const bool border = x < R || y < R || x >= w - R || y >= h - R;               \
                float s[N];                                                                   \
                int k = 0;                                                                    \
                for (int dy = -R; dy <= R && !border; dy++)                                   \
                    for (int dx = -R; dx <= R; dx++)                                          \
                        s[k++] = in[(y + dy) * w + x + dx];                                   \
                out[y * w + x] = border_or_median(in, w, x, y, border, s, N);                 \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        vecf v[N];                                                                            \
        int k = 0;                                                                            \
        for (int dy = -R; dy <= R; dy++)                                                      \
            for (int dx = -R; dx <= R; dx++)                                                  \
                v[k++] = VEC_LOAD(in + (y + dy) * w + x0 + dx);                               \
        MEDIAN##N##_NETWORK(v);                                                               \
        VSTORE_WHOLE(v[MEDIAN##N##_AT], out + y * w + x0);                                       \
    }

SQUARE_MEDIAN_KERNEL(median_3x3, 1, 9)
SQUARE_MEDIAN_KERNEL(median_5x5, 2, 25)
SQUARE_MEDIAN_KERNEL(median_7x7, 3, 49)

/* ---- separable medians (astroscrappy's sepmedfilt): rows first, then columns.
 * The row pass copies its input within R of the left/right edges; the column
 * pass writes the original image (orig) in the whole R-pixel border. VW
 * pixels per work-item, as the square filters. */

#define SEPARABLE_MEDIAN_KERNELS(NAME, R, N)                                                  \
    kernel void NAME##_rows(global const float *in, global float *out, const int w, const int h) \
    {                                                                                         \
        const int x0 = get_global_id(0) * VW, y = get_global_id(1);                           \
        if (x0 >= w || y >= h)                                                                \
            return;                                                                           \
        if (x0 < R || x0 + VW > w - R) {                                                      \
            for (int x = x0; x < min(x0 + VW, w); x++) {                                      \
                const bool border = x < R || x >= w - R;                                      \
                float s[N];                                                                   \
                for (int d = -R; d <= R && !border; d++)                                      \
                    s[d + R] = in[y * w + x + d];                                             \
                out[y * w + x] = border_or_median(in, w, x, y, border, s, N);                 \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        vecf v[N];                                                                            \
        for (int d = -R; d <= R; d++)                                                         \
            v[d + R] = VEC_LOAD(in + y * w + x0 + d);                                         \
        MEDIAN##N##_NETWORK(v);                                                               \
        VSTORE_WHOLE(v[MEDIAN##N##_AT], out + y * w + x0);                                       \
    }                                                                                         \
    kernel void NAME##_cols(global const float *rows, global const float *orig, global float *out, \
                            const int w, const int h)                                         \
    {                                                                                         \
        const int x0 = get_global_id(0) * VW, y = get_global_id(1);                           \
        if (x0 >= w || y >= h)                                                                \
            return;                                                                           \
        if (y < R || y >= h - R || x0 < R || x0 + VW > w - R) {                               \
            for (int x = x0; x < min(x0 + VW, w); x++) {                                      \
                const bool border = x < R || y < R || x >= w - R || y >= h - R;               \
                float s[N];                                                                   \
                for (int d = -R; d <= R && !border; d++)                                      \
                    s[d + R] = rows[(y + d) * w + x];                                         \
                out[y * w + x] = border_or_median(orig, w, x, y, border, s, N);               \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        vecf v[N];                                                                            \
        for (int d = -R; d <= R; d++)                                                         \
            v[d + R] = VEC_LOAD(rows + (y + d) * w + x0);                                     \
        MEDIAN##N##_NETWORK(v);                                                               \
        VSTORE_WHOLE(v[MEDIAN##N##_AT], out + y * w + x0);                                       \
    }

SEPARABLE_MEDIAN_KERNELS(sepmedian_5, 2, 5)
SEPARABLE_MEDIAN_KERNELS(sepmedian_7, 3, 7)
SEPARABLE_MEDIAN_KERNELS(sepmedian_9, 4, 9)
