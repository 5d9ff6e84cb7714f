/* Regular samples of an image region, for levels the host computes from a
 * subsample (a median fill value, a clipped global background). Sample j is
 * the region's pixel k = j * stride in raster order; a pixel that is not
 * finite or has a mask bit in ignore becomes NaN, so the host, keeping the
 * finite samples in order, holds exactly the values a scan of host arrays
 * with the same stride would. */
kernel void gather_samples(global const float *sci, global const ushort *mask, const int has_mask, const ushort ignore,
                           const ulong src_width, const ulong x0, const ulong y0, const ulong w, const ulong stride,
                           const ulong count, global float *out)
{
    ulong j = get_global_id(0);
    if (j >= count)
        return;
    ulong k = j * stride;
    ulong i = (y0 + k / w) * src_width + x0 + k % w;
    float v = sci[i];
    bool ok = isfinite(v) && !(has_mask && (mask[i] & ignore));
    out[j] = ok ? v : NAN;
}
