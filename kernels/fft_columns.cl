/* The 2-D FFT's passes on CPU devices (host/rt/fft.c, VkFFT backend): in
 * place, on the half spectrum's layout (rows of pitch floats, ncols =
 * nx / 2 + 1 complex bins), for power-of-two lengths.
 *
 * Why not VkFFT's own kernels on a CPU: they run large work-groups (16 x 256
 * for the columns) that exchange every stage through local memory at
 * barriers, which a CPU OpenCL runtime executes as loops over the
 * work-items with their live values spilled at each barrier. Here one
 * work-item (a work-group of one) owns 8 columns, or 8 rows, copies them
 * into local memory, contiguous, and runs the whole transform itself on
 * float16 vectors: no barriers, and the block stays in the core's cache
 * for every stage. Radix-2 decimation in frequency, the middle stages two
 * at a time (four values per read and write of local memory). */

/* v * w for 8 interleaved complex values and one complex factor. */
inline float16 cmul8(float16 v, float2 w)
{
    const float16 alt = (float16)(-1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f,
                                  1.0f, -1.0f, 1.0f);
    return v * w.x + v.s1032547698badcfe * (alt * w.y);
}

inline float2 cmul1(float2 v, float2 w)
{
    return (float2)(v.x * w.x - v.y * w.y, v.x * w.y + v.y * w.x);
}

inline int bit_reverse(int i, int bits)
{
    int r = 0;
    for (int b = 0; b < bits; b++) {
        r = (r << 1) | (i & 1);
        i >>= 1;
    }
    return r;
}

/* The longest column this kernel transforms (host/rt/fft.c checks). */
#define FFT_COLUMNS_MAX 4096

/* Radix-2 decimation in frequency on n values in x (natural order in,
 * bit-reversed out): the plain form, for the single columns of the tail. */
#define DIF_PASSES(x, n, tw, sign, T, MUL)                                                                            \
    for (int h = (n) >> 1, ts = 1; h >= 1; h >>= 1, ts <<= 1)                                                        \
        for (int blk = 0; blk < (n); blk += 2 * h)                                                                   \
            for (int j = 0; j < h; j++) {                                                                            \
                float2 w = (tw)[j * ts];                                                                             \
                w.y *= (sign);                                                                                       \
                int ia = blk + j, ib = ia + h;                                                                       \
                T a = x[ia], b = x[ib];                                                                              \
                x[ia] = a + b;                                                                                       \
                x[ib] = MUL(a - b, w);                                                                               \
            }

/* Transforms columns 8 g .. 8 g + 7 (fewer at the right edge) of batch
 * get_global_id(1): sum_k x[k] e^{sign 2 pi i j k / n}, times scale.
 * tw[k] = e^{2 pi i k / n} for k < n / 2 (sign -1: its conjugate).
 * Run with work-groups of one work-item: the column block is copied into
 * local memory, contiguous, where every stage runs in the core's cache,
 * then copied back in natural order with the scale applied; the first and
 * last stages run during the two copies. */
kernel void fft_columns(global float *buf, const int ncols, const int n, const int log2n, const int pitch,
                        const int batch_floats, global const float2 *tw, const float sign, const float scale)
{
    local float16 x8[FFT_COLUMNS_MAX];
    int c0 = 8 * (int)get_global_id(0);
    if (c0 >= ncols)
        return;
    global float *base = buf + (size_t)get_global_id(1) * (size_t)batch_floats + 2 * (size_t)c0;
    size_t p = (size_t)pitch;
    if (c0 + 8 <= ncols) {
        /* The first stage (h = n / 2) on the way in. */
        int h = n >> 1, ts = 1;
        for (int j = 0; j < h; j++) {
            float16 a = vload16(0, base + (size_t)j * p), b = vload16(0, base + (size_t)(j + h) * p);
            float2 w = tw[j];
            w.y *= sign;
            x8[j] = a + b;
            x8[j + h] = cmul8(a - b, w);
        }
        h >>= 1;
        ts <<= 1;
        /* The middle stages two at a time (h and h / 2): four values per
         * read and write of local memory instead of two. */
        for (; h >= 4; h >>= 2, ts <<= 2)
            for (int blk = 0; blk < n; blk += 2 * h)
                for (int j = 0; j < h / 2; j++) {
                    int i0 = blk + j, i1 = i0 + h / 2, i2 = i0 + h, i3 = i2 + h / 2;
                    float2 w1 = tw[j * ts], w2 = tw[(j + h / 2) * ts], w3 = tw[2 * j * ts];
                    w1.y *= sign;
                    w2.y *= sign;
                    w3.y *= sign;
                    float16 a0 = x8[i0], a1 = x8[i1], a2 = x8[i2], a3 = x8[i3];
                    float16 b0 = a0 + a2, b2 = cmul8(a0 - a2, w1), b1 = a1 + a3, b3 = cmul8(a1 - a3, w2);
                    x8[i0] = b0 + b1;
                    x8[i1] = cmul8(b0 - b1, w3);
                    x8[i2] = b2 + b3;
                    x8[i3] = cmul8(b2 - b3, w3);
                }
        if (h == 2)
            for (int blk = 0; blk < n; blk += 4)
                for (int j = 0; j < 2; j++) {
                    float2 w = tw[j * ts];
                    w.y *= sign;
                    float16 a = x8[blk + j], b = x8[blk + j + 2];
                    x8[blk + j] = a + b;
                    x8[blk + j + 2] = cmul8(a - b, w);
                }
        /* The last stage (h = 1, factor 1) on the way out, into natural
         * order: rows i and i + n / 2 are the pair at bit_reverse(i), even. */
        if (n == 2) {
            vstore16(x8[0] * scale, 0, base);
            vstore16(x8[1] * scale, 0, base + p);
            return;
        }
        for (int i = 0; i < n / 2; i++) {
            int m = bit_reverse(i, log2n);
            float16 a = x8[m], b = x8[m + 1];
            vstore16((a + b) * scale, 0, base + (size_t)i * p);
            vstore16((a - b) * scale, 0, base + (size_t)(i + n / 2) * p);
        }
        return;
    }
    /* The last few columns, one at a time. */
    local float2 *x1 = (local float2 *)x8;
    for (int c = 0; c < ncols - c0; c++) {
        global float *col = base + 2 * c;
        for (int i = 0; i < n; i++)
            x1[i] = vload2(0, col + (size_t)i * p);
        DIF_PASSES(x1, n, tw, sign, float2, cmul1)
        for (int i = 0; i < n; i++)
            vstore2(x1[bit_reverse(i, log2n)] * scale, 0, col + (size_t)i * p);
    }
}

/* ---- The row pass for power-of-two row lengths nx = 2 m: 8 rows per
 * work-item, held in local memory transposed (one float16 per complex
 * index: lo = the 8 rows' real parts, hi = their imaginary parts), so that
 * the same stages as the column pass run on whole vectors. A real row of
 * nx values is transformed as m complex values z[k] = x[2k] + i x[2k+1]
 * and then split into its half spectrum (and the reverse for the inverse). */

/* The longest half row (m = nx / 2) fft_rows_* transform (host/rt/fft.c checks). */
#define FFT_ROWS_MAX 4096

/* v * w for 8 complex values in split form and one complex factor. */
inline float16 cmul_split(float16 v, float2 w)
{
    return (float16)(v.lo * w.x - v.hi * w.y, v.lo * w.y + v.hi * w.x);
}

/* All stages of a radix-2 DIF of n values in local memory (bit-reversed
 * out), the middle ones two at a time. */
#define LOCAL_DIF(x, n, tw, sign, MUL)                                                                               \
    {                                                                                                                \
        int h_ = (n) >> 1, ts_ = 1;                                                                                  \
        for (; h_ >= 2; h_ >>= 2, ts_ <<= 2)                                                                         \
            for (int blk = 0; blk < (n); blk += 2 * h_)                                                              \
                for (int j = 0; j < h_ / 2; j++) {                                                                   \
                    int i0 = blk + j, i1 = i0 + h_ / 2, i2 = i0 + h_, i3 = i2 + h_ / 2;                             \
                    float2 w1 = (tw)[j * ts_], w2 = (tw)[(j + h_ / 2) * ts_], w3 = (tw)[2 * j * ts_];              \
                    w1.y *= (sign);                                                                                  \
                    w2.y *= (sign);                                                                                  \
                    w3.y *= (sign);                                                                                  \
                    float16 a0 = x[i0], a1 = x[i1], a2 = x[i2], a3 = x[i3];                                          \
                    float16 b0 = a0 + a2, b2 = MUL(a0 - a2, w1), b1 = a1 + a3, b3 = MUL(a1 - a3, w2);                \
                    x[i0] = b0 + b1;                                                                                 \
                    x[i1] = MUL(b0 - b1, w3);                                                                        \
                    x[i2] = b2 + b3;                                                                                 \
                    x[i3] = MUL(b2 - b3, w3);                                                                        \
                }                                                                                                    \
        if (h_ == 1)                                                                                                 \
            for (int i = 0; i < (n); i += 2) {                                                                       \
                float16 a = x[i], b = x[i + 1];                                                                      \
                x[i] = a + b;                                                                                        \
                x[i + 1] = a - b;                                                                                    \
            }                                                                                                        \
    }

/* conj(v) in split form */
inline float16 conj_split(float16 v)
{
    return (float16)(v.lo, -v.hi);
}

/* -i v in split form */
inline float16 mul_minus_i(float16 v)
{
    return (float16)(v.hi, -v.lo);
}

/* Forward real-to-complex along rows 8 g .. 8 g + 7 of the nrows rows (all
 * batches): row r's first nx = 2 m floats become its bins 0 .. m. tw[k] =
 * e^{2 pi i k / m} (k < m / 2), twr[k] = e^{2 pi i k / nx} (k <= m / 2). */
kernel void fft_rows_r2c(global float *buf, const int nrows, const int m, const int log2m, const int pitch,
                         global const float2 *tw, global const float2 *twr)
{
    local float16 z[FFT_ROWS_MAX];
    local float *zf = (local float *)z;
    int r0 = 8 * (int)get_global_id(0);
    if (r0 >= nrows)
        return;
    int rows = min(8, nrows - r0);
    for (int r = 0; r < 8; r++) {
        global const float *row = buf + (size_t)(r0 + min(r, rows - 1)) * (size_t)pitch;
        for (int k = 0; k < m; k++) {
            float2 v = vload2(k, row);
            zf[16 * k + r] = v.x;
            zf[16 * k + 8 + r] = v.y;
        }
    }
    LOCAL_DIF(z, m, tw, -1.0f, cmul_split)
    /* X[k] = E + e^{-2 pi i k / nx} O with E = (Z[k] + conj Z[m - k]) / 2,
     * O = -i (Z[k] - conj Z[m - k]) / 2, for k and m - k together. */
    for (int k = 0; k <= m / 2; k++) {
        int kc = k == 0 ? 0 : m - k;
        float16 zk = z[bit_reverse(k, log2m)], zc = conj_split(z[bit_reverse(kc, log2m)]);
        float16 e = 0.5f * (zk + zc), o = mul_minus_i(0.5f * (zk - zc));
        float2 w = twr[k];
        w.y = -w.y;
        float16 xk = e + cmul_split(o, w);
        /* X[m - k] = conj E - conj(e^{-2 pi i k / nx}) conj O (E, O of a
         * real row's even and odd samples are Hermitian; W^{m - k} = -conj W^k). */
        float16 xc = conj_split(e) - cmul_split(conj_split(o), (float2)(w.x, -w.y));
        int kk = k == 0 ? m : m - k;
        float a[16], b[16];
        vstore16(xk, 0, a);
        vstore16(xc, 0, b);
        for (int r = 0; r < rows; r++) {
            global float *row = buf + (size_t)(r0 + r) * (size_t)pitch;
            vstore2((float2)(a[r], a[8 + r]), k, row);
            vstore2((float2)(b[r], b[8 + r]), kk, row);
        }
    }
}

/* The inverse of fft_rows_r2c, times scale (1 / m: the exact inverse). */
kernel void fft_rows_c2r(global float *buf, const int nrows, const int m, const int log2m, const int pitch,
                         global const float2 *tw, global const float2 *twr, const float scale)
{
    local float16 z[FFT_ROWS_MAX + 1];
    local float *zf = (local float *)z;
    int r0 = 8 * (int)get_global_id(0);
    if (r0 >= nrows)
        return;
    int rows = min(8, nrows - r0);
    for (int r = 0; r < 8; r++) {
        global const float *row = buf + (size_t)(r0 + min(r, rows - 1)) * (size_t)pitch;
        for (int k = 0; k <= m; k++) {
            float2 v = vload2(k, row);
            zf[16 * k + r] = v.x;
            zf[16 * k + 8 + r] = v.y;
        }
    }
    /* Z[k] = A + i B with A = (X[k] + conj X[m - k]) / 2 and
     * B = e^{2 pi i k / nx} (X[k] - conj X[m - k]) / 2, the spectra of the
     * even and odd samples; Z[m - k] = conj A + i conj B. In place, a pair
     * at a time. */
    for (int k = 0; k <= m / 2; k++) {
        int kc = m - k;
        float16 p = z[k], q = conj_split(z[kc]);
        float16 a = 0.5f * (p + q), b = cmul_split(0.5f * (p - q), twr[k]);
        z[k] = a - mul_minus_i(b);
        if (k > 0)
            z[kc] = conj_split(a) - mul_minus_i(conj_split(b));
    }
    LOCAL_DIF(z, m, tw, 1.0f, cmul_split)
    for (int n = 0; n < m; n++) {
        float a[16];
        vstore16(z[bit_reverse(n, log2m)] * scale, 0, a);
        for (int r = 0; r < rows; r++)
            vstore2((float2)(a[r], a[8 + r]), n, buf + (size_t)(r0 + r) * (size_t)pitch);
    }
}
