/* Element-wise arithmetic on images. */

/* out = a * scale + offset, NaN kept. Used by tests of the runtime itself and
 * by steps that rescale an image in place. */
kernel void scale_offset(global float *a, const float scale, const float offset, const uint n)
{
    size_t i = get_global_id(0);
    if (i < n)
        a[i] = a[i] * scale + offset;
}

/* a -= b element-wise (NaN in either gives NaN): a model, such as a
 * background map, taken out of an image on the device. */
kernel void subtract(global float *a, global const float *b, const uint n)
{
    size_t i = get_global_id(0);
    if (i < n)
        a[i] = a[i] - b[i];
}

/* a += b element-wise: a model, such as a background, put back into an
 * image (the inverse of subtract up to float32 rounding). */
kernel void add(global float *a, global const float *b, const uint n)
{
    size_t i = get_global_id(0);
    if (i < n)
        a[i] = a[i] + b[i];
}

/* Proxy pixels (clred_proxy_background), here rather than in proxy.cl, whose
 * program is specialised to the number of darks that this kernel does not
 * need: bkg = the proxy's value where the pixel has one (proxy >= 0), NaN at
 * unmatched spectral pixels (-2), the pixel's own value elsewhere (-1);
 * final = sci - bkg. */
kernel void proxy_apply(global const float *sci, global const int *proxy, global float *bkg, global float *final,
                        const uint n)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    const int p = proxy[i];
    const float b = p >= 0 ? sci[p] : p == -2 ? NAN : sci[i];
    bkg[i] = b;
    final[i] = sci[i] - b;
}
