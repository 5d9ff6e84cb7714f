/* ZOGY in double precision on the host, by plain DFTs on the same padded
 * grid as the device (the padded size fixes the kernels' frequency sampling),
 * for tests/test_zogy.c. */
#ifndef ZOGY_REF_H
#define ZOGY_REF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t w, h, nx, ny;
    const float *n, *r;          /* images */
    const float *vn, *vr;        /* variance planes (NULL: s2n / s2r everywhere) */
    const uint16_t *mn, *mr;     /* masks (may be NULL) */
    uint16_t ignore;
    double bkg_n, bkg_r, s2n, s2r, fn, fr, sx2, sy2;
    double en2, er2;             /* squared PSF-model errors: V(S) += en2 S_N^2 + er2 S_R^2 */
    const double *wing_n, *wing_r; /* the PSFs' wing errors in rings of ring_px (nrings; NULL: none):
                                    V(S) += S_N^2 * K_n + S_R^2 * K_r (cyclic), K(d) = wing[lround(|d| /
                                    ring_px)]^2 / A for |d| > core and |dx|, |dy| <= the PSF's half size, A
                                    a point source's sum of (S_N / its peak)^2 */
    size_t nrings;
    double ring_px_n, ring_px_r, core_n, core_r;
    const double *vnn, *vrr, *vnr; /* the PSFs' variation moments on vgrid_n x vgrid_n nodes at (gx0 + i gdx,
                                    gy0 + j gdy), node (i, j) at j vgrid_n + i (NULL: none): V(S) +=
                                    S_N^2 vnn - 2 S_N S_R vnr + S_R^2 vrr, each interpolated bilinearly,
                                    constant beyond the outer nodes */
    size_t vgrid_n;
    double gx0, gy0, gdx, gdy;
    double d_off;                /* constant taken off D (F_D d_off off S) */
    const float *pn, *pr;        /* PSFs, odd sizes */
    size_t sn, sr;
} zogy_ref_in;

typedef struct {
    double *diff, *diff_var, *scorr, *flux, *flux_var; /* w * h each, NaN where filled */
    double f_d, f_s;
} zogy_ref_out;

/* Allocates the output planes (free with zogy_ref_free). Returns 0 on success. */
int zogy_ref(const zogy_ref_in *in, zogy_ref_out *out);
void zogy_ref_free(zogy_ref_out *out);

#endif
