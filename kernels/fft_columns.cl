/* The 2-D FFT's passes on CPU devices (host/rt/fft.c, VkFFT backend): in
 * place, on the half spectrum's layout (rows of pitch floats, ncols =
 * nx / 2 + 1 complex bins), for power-of-two lengths and, at the end, for
 * lengths with the factors 2, 3, 5 and 7 (mixed radix).
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

/* ---- Mixed radix: lengths 2^a 3^b 5^c 7^d that are not powers of two
 * (the sizes clred_fft_good_size pads to), the same work-item shapes as
 * above, values in split form throughout (the column pass splits its 8
 * interleaved columns on the way in). host/rt/fft.c passes tw[k] =
 * e^{2 pi i k / n} for every k < n and order: order[k] for k < n the slot
 * where bin k ends up, then the nf radices (4, 2, 3, 5, 7), first stage first.
 * Decimation in frequency in place: the stage of radix r on blocks of
 * span = r h values takes x[j + q h] (q < r) of each block to
 * y_p = sum_q x[j + q h] e^{sign 2 pi i p q / r}, times e^{sign 2 pi i p j / span},
 * into x[j + p h]; the odd radices pair p with r - p (cosine and sine
 * sums of x_q + x_{r-q} and x_q - x_{r-q}). */

/* i v in split form */
inline float16 imul_split(float16 v)
{
    return (float16)(-v.hi, v.lo);
}

/* v e^{sign 2 pi i k / n} */
inline float16 turn(float16 v, global const float2 *tw, int k, float sign)
{
    float2 w = tw[k];
    w.y *= sign;
    return cmul_split(v, w);
}

inline void mixed_dif(local float16 *x, const int n, global const float2 *tw, global const int *radix, const int nf,
                      const float sign)
{
    /* cos and sin of 2 pi k / 5 and 2 pi k / 7 */
    const float c51 = 0.309016994374947f, c52 = -0.809016994374947f, s51 = 0.951056516295154f,
                s52 = 0.587785252292473f;
    const float c71 = 0.623489801858734f, c72 = -0.222520933956314f, c73 = -0.900968867902419f,
                s71 = 0.781831482468030f, s72 = 0.974927912181824f, s73 = 0.433883739117558f;
    int span = n;
    for (int s = 0; s < nf; s++) {
        const int r = radix[s], h = span / r, ts = n / span;
        for (int blk = 0; blk < n; blk += span)
            for (int j = 0; j < h; j++) {
                local float16 *v = x + blk + j;
                const int k = j * ts;
                if (r == 4) {
                    float16 a0 = v[0], a1 = v[h], a2 = v[2 * h], a3 = v[3 * h];
                    float16 s02 = a0 + a2, d02 = a0 - a2, s13 = a1 + a3, d13 = sign * imul_split(a1 - a3);
                    v[0] = s02 + s13;
                    v[h] = turn(d02 + d13, tw, k, sign);
                    v[2 * h] = turn(s02 - s13, tw, 2 * k, sign);
                    v[3 * h] = turn(d02 - d13, tw, 3 * k, sign);
                } else if (r == 2) {
                    float16 a0 = v[0], a1 = v[h];
                    v[0] = a0 + a1;
                    v[h] = turn(a0 - a1, tw, k, sign);
                } else if (r == 3) {
                    float16 a0 = v[0], a = v[h] + v[2 * h], b = v[h] - v[2 * h];
                    float16 t = a0 - 0.5f * a, u = (sign * 0.866025403784439f) * imul_split(b);
                    v[0] = a0 + a;
                    v[h] = turn(t + u, tw, k, sign);
                    v[2 * h] = turn(t - u, tw, 2 * k, sign);
                } else if (r == 5) {
                    float16 a0 = v[0], a1 = v[h] + v[4 * h], b1 = v[h] - v[4 * h], a2 = v[2 * h] + v[3 * h],
                            b2 = v[2 * h] - v[3 * h];
                    float16 c1 = a0 + c51 * a1 + c52 * a2, u1 = sign * imul_split(s51 * b1 + s52 * b2);
                    float16 c2 = a0 + c52 * a1 + c51 * a2, u2 = sign * imul_split(s52 * b1 - s51 * b2);
                    v[0] = a0 + a1 + a2;
                    v[h] = turn(c1 + u1, tw, k, sign);
                    v[2 * h] = turn(c2 + u2, tw, 2 * k, sign);
                    v[3 * h] = turn(c2 - u2, tw, 3 * k, sign);
                    v[4 * h] = turn(c1 - u1, tw, 4 * k, sign);
                } else { /* 7 */
                    float16 a0 = v[0], a1 = v[h] + v[6 * h], b1 = v[h] - v[6 * h], a2 = v[2 * h] + v[5 * h],
                            b2 = v[2 * h] - v[5 * h], a3 = v[3 * h] + v[4 * h], b3 = v[3 * h] - v[4 * h];
                    float16 c1 = a0 + c71 * a1 + c72 * a2 + c73 * a3, u1 = sign * imul_split(s71 * b1 + s72 * b2 + s73 * b3);
                    float16 c2 = a0 + c72 * a1 + c73 * a2 + c71 * a3, u2 = sign * imul_split(s72 * b1 - s73 * b2 - s71 * b3);
                    float16 c3 = a0 + c73 * a1 + c71 * a2 + c72 * a3, u3 = sign * imul_split(s73 * b1 - s71 * b2 + s72 * b3);
                    v[0] = a0 + a1 + a2 + a3;
                    v[h] = turn(c1 + u1, tw, k, sign);
                    v[2 * h] = turn(c2 + u2, tw, 2 * k, sign);
                    v[3 * h] = turn(c3 + u3, tw, 3 * k, sign);
                    v[4 * h] = turn(c3 - u3, tw, 4 * k, sign);
                    v[5 * h] = turn(c2 - u2, tw, 5 * k, sign);
                    v[6 * h] = turn(c1 - u1, tw, 6 * k, sign);
                }
            }
        span = h;
    }
}


/* Where bin k of the half-row transform is: digit-reversed (mixed radix,
 * nf > 0) or bit-reversed. */
#define SLOT(k) (nf > 0 ? order[k] : bit_reverse((k), log2m))

/* Forward real-to-complex along rows 8 g .. 8 g + 7 of the nrows rows (all
 * batches): row r's first nx = 2 m floats become its bins 0 .. m. tw[k] =
 * e^{2 pi i k / m} (k < m / 2), twr[k] = e^{2 pi i k / nx} (k <= m / 2). */
kernel void fft_rows_r2c(global float *buf, const int nrows, const int m, const int log2m, const int pitch,
                         global const float2 *tw, global const float2 *twr, global const int *order, const int nf)
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
    if (nf > 0)
        mixed_dif(z, m, tw, order + m, nf, -1.0f);
    else
        LOCAL_DIF(z, m, tw, -1.0f, cmul_split)
    /* X[k] = E + e^{-2 pi i k / nx} O with E = (Z[k] + conj Z[m - k]) / 2,
     * O = -i (Z[k] - conj Z[m - k]) / 2, for k and m - k together. */
    for (int k = 0; k <= m / 2; k++) {
        int kc = k == 0 ? 0 : m - k;
        float16 zk = z[SLOT(k)], zc = conj_split(z[SLOT(kc)]);
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
                         global const float2 *tw, global const float2 *twr, const float scale, global const int *order,
                         const int nf)
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
    if (nf > 0)
        mixed_dif(z, m, tw, order + m, nf, 1.0f);
    else
        LOCAL_DIF(z, m, tw, 1.0f, cmul_split)
    for (int n = 0; n < m; n++) {
        float a[16];
        vstore16(z[SLOT(n)] * scale, 0, a);
        for (int r = 0; r < rows; r++)
            vstore2((float2)(a[r], a[8 + r]), n, buf + (size_t)(r0 + r) * (size_t)pitch);
    }
}

/* fft_columns for mixed-radix n: columns 8 g .. 8 g + 7 of batch
 * get_global_id(1) (the last block's missing columns are copies of its
 * last, never written back), times scale. */
kernel void fft_columns_mixed(global float *buf, const int ncols, const int n, const int pitch, const int batch_floats,
                              global const float2 *tw, global const int *order, const int nf, const float sign,
                              const float scale)
{
    local float16 x[FFT_COLUMNS_MAX];
    local float *xf = (local float *)x;
    int c0 = 8 * (int)get_global_id(0);
    if (c0 >= ncols)
        return;
    int cols = min(8, ncols - c0);
    global float *base = buf + (size_t)get_global_id(1) * (size_t)batch_floats + 2 * (size_t)c0;
    size_t p = (size_t)pitch;
    if (cols == 8)
        for (int i = 0; i < n; i++) {
            float16 v = vload16(0, base + (size_t)i * p);
            x[i] = (float16)(v.even, v.odd);
        }
    else
        for (int i = 0; i < n; i++)
            for (int c = 0; c < 8; c++) {
                float2 v = vload2(min(c, cols - 1), base + (size_t)i * p);
                xf[16 * i + c] = v.x;
                xf[16 * i + 8 + c] = v.y;
            }
    mixed_dif(x, n, tw, order + n, nf, sign);
    for (int k = 0; k < n; k++) {
        float16 v = x[order[k]] * scale;
        if (cols == 8)
            vstore16(v.s08192a3b4c5d6e7f, 0, base + (size_t)k * p);
        else {
            float a[16];
            vstore16(v, 0, a);
            for (int c = 0; c < cols; c++)
                vstore2((float2)(a[c], a[8 + c]), c, base + (size_t)k * p);
        }
    }
}
