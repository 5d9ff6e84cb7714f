/* PSF-fit photometry: one work-item per source (the "primary"), which fits
 * itself together with its close neighbours (a list made on the host) and a
 * constant local sky, weighted by the variance plane, over the union of the
 * discs of radius fit_radius around every member's start position. The PSF
 * is a pixel grid (unit sum; a varying one the sum of its basis planes
 * weighted by the member's polynomial terms) evaluated at sub-pixel offsets by Keys' bicubic
 * (a = -0.5) interpolation, whose derivatives give the position terms of the
 * linearised (Gauss-Newton) iterations. Only the primary's results are
 * written; a neighbour is reported by its own work-item. */

/* must equal CLRED_SRC_* in include/clred.h */
#define SRC_EDGE 0x02u
#define SRC_MASKED 0x04u
#define SRC_BLENDED 0x08u
#define SRC_PSF_FAILED 0x40u
#define SRC_PSF_FIXED 0x80u

/* must equal PSF_MAX_GROUP in host/steps/psfphot.c */
#define MAXG 6
#define MAXP (1 + 3 * MAXG)

/* Output layout per source (floats); must equal Q_* in host/steps/psfphot.c. */
#define Q_DX 0
#define Q_DY 1
#define Q_XERR 2
#define Q_YERR 3
#define Q_FLUX 4
#define Q_FERR 5
#define Q_SKY 6
#define Q_CHI2 7
#define Q_NPIX 8
#define Q_FLAGS 9
#define Q_NOUT 10

/* Keys' cubic weight at t and its derivative. */
inline acc_t keys_w(acc_t t)
{
    acc_t a = fabs(t);
    if (a < 1)
        return (1.5 * a - 2.5) * a * a + 1;
    if (a < 2)
        return ((-0.5 * a + 2.5) * a - 4) * a + 2;
    return 0;
}

inline acc_t keys_dw(acc_t t)
{
    acc_t a = fabs(t), s = t < 0 ? -1 : 1;
    if (a < 1)
        return s * (4.5 * a - 5) * a;
    if (a < 2)
        return s * ((-1.5 * a + 5) * a - 4);
    return 0;
}

/* Most terms of a varying PSF (1, u, v, u^2, u v, v^2); must equal
 * CLRED_PSF_MAX_TERMS in host/steps/psf_internal.h */
#define MAXT 6

/* A member's terms at (x, y): poly = (x0, y0, 1 / xscale, 1 / yscale). */
inline void psf_terms(int nt, float4 poly, acc_t x, acc_t y, acc_t *c)
{
    acc_t u = (x - poly.x) * poly.z, v = (y - poly.y) * poly.w;
    c[0] = 1;
    c[1] = u;
    c[2] = v;
    c[3] = u * u;
    c[4] = u * v;
    c[5] = v * v;
    for (int k = nt; k < MAXT; k++)
        c[k] = 0;
}

/* The PSF at offset (dx, dy) from its centre, and its derivatives with
 * respect to dx and dy; 0 outside the grid. The PSF is the sum over the nt
 * basis planes (size^2 each) weighted by the member's terms c. */
inline acc_t psf_eval(global const float *psf, int size, int nt, const acc_t *c, acc_t dx, acc_t dy, acc_t *ddx,
                      acc_t *ddy)
{
    const int plane = size * size;
    acc_t ctr = size / 2, x = dx + ctr, y = dy + ctr;
    int ix = (int)floor(x), iy = (int)floor(y);
    acc_t fx = x - ix, fy = y - iy;
    acc_t wx[4], dwx[4], wy[4], dwy[4];
    for (int k = 0; k < 4; k++) {
        /* weight of grid point ix + k - 1 at x: w(x - grid) */
        wx[k] = keys_w(fx - (k - 1));
        dwx[k] = keys_dw(fx - (k - 1));
        wy[k] = keys_w(fy - (k - 1));
        dwy[k] = keys_dw(fy - (k - 1));
    }
    acc_t v = 0, vx = 0, vy = 0;
    for (int j = 0; j < 4; j++) {
        int yy = iy + j - 1;
        if (yy < 0 || yy >= size)
            continue;
        acc_t row = 0, rowd = 0;
        for (int i = 0; i < 4; i++) {
            int xx = ix + i - 1;
            if (xx < 0 || xx >= size)
                continue;
            acc_t p = 0;
            for (int k = 0; k < nt; k++)
                p += c[k] * psf[k * plane + yy * size + xx];
            row += wx[i] * p;
            rowd += dwx[i] * p;
        }
        v += wy[j] * row;
        vx += wy[j] * rowd;
        vy += dwy[j] * row;
    }
    *ddx = vx;
    *ddy = vy;
    return v;
}

/* In-place Cholesky of the n x n matrix a (row-major, lower triangle used);
 * 0 when not positive definite. */
inline int cholesky(acc_t *a, int n)
{
    for (int j = 0; j < n; j++) {
        acc_t d = a[j * MAXP + j];
        for (int k = 0; k < j; k++)
            d -= a[j * MAXP + k] * a[j * MAXP + k];
        if (!(d > 0))
            return 0;
        d = sqrt(d);
        a[j * MAXP + j] = d;
        for (int i = j + 1; i < n; i++) {
            acc_t s = a[i * MAXP + j];
            for (int k = 0; k < j; k++)
                s -= a[i * MAXP + k] * a[j * MAXP + k];
            a[i * MAXP + j] = s / d;
        }
    }
    return 1;
}

/* Solves L L^T x = b in place (b becomes x). */
inline void chol_solve(const acc_t *l, acc_t *b, int n)
{
    for (int i = 0; i < n; i++) {
        acc_t s = b[i];
        for (int k = 0; k < i; k++)
            s -= l[i * MAXP + k] * b[k];
        b[i] = s / l[i * MAXP + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        acc_t s = b[i];
        for (int k = i + 1; k < n; k++)
            s -= l[k * MAXP + i] * b[k];
        b[i] = s / l[i * MAXP + i];
    }
}

/* Parameters: p[0] sky, p[1 + k] flux of member k, p[1 + G + 2k], p[2 + G + 2k]
 * its position offsets from the primary's integer pixel. */
kernel void psf_photometry(global const float *sci, global const float *var, const int has_var,
                           global const ushort *mask, const int has_mask, const ushort ignore, const int w,
                           const int h, global const float *psf, const int psf_size, const int psf_nterms,
                           const float4 psf_poly, global const int2 *ipos,
                           global const float2 *fpos, global const uint *nb_start, global const uint *nb,
                           const uint n, const float fit_radius, const float core_radius, const int fit_sky,
                           const int fit_pos, const int max_iters, const float max_shift, const float min_snr_pos,
                           const float noise_rms, global float *out)
{
    uint id = get_global_id(0);
    if (id >= n)
        return;
    global float *o = out + (size_t)id * Q_NOUT;
    for (int k = 0; k < Q_NOUT; k++)
        o[k] = NAN;
    o[Q_NPIX] = 0;
    const int ax = ipos[id].x, ay = ipos[id].y;
    if (!isfinite(fpos[id].x) || !isfinite(fpos[id].y)) {
        o[Q_FLAGS] = (float)(SRC_EDGE | SRC_PSF_FAILED);
        return;
    }
    uint flags = 0;
    /* members: the primary first, then its neighbours */
    int G = 1;
    acc_t sx[MAXG], sy[MAXG]; /* start positions relative to (ax, ay) */
    sx[0] = fpos[id].x;
    sy[0] = fpos[id].y;
    for (uint k = nb_start[id]; k < nb_start[id + 1] && G < MAXG; k++) {
        uint m = nb[k];
        if (!isfinite(fpos[m].x) || !isfinite(fpos[m].y))
            continue;
        sx[G] = (acc_t)(ipos[m].x - ax) + fpos[m].x;
        sy[G] = (acc_t)(ipos[m].y - ay) + fpos[m].y;
        G++;
    }
    if (G > 1)
        flags |= SRC_BLENDED;
    /* each member's PSF: the basis combined at its start position */
    acc_t coef[MAXG * MAXT];
    for (int k = 0; k < G; k++)
        psf_terms(psf_nterms, psf_poly, (acc_t)ax + sx[k], (acc_t)ay + sy[k], coef + k * MAXT);
    const int np = 1 + 3 * G;
    const acc_t r2 = (acc_t)fit_radius * fit_radius, c2 = (acc_t)core_radius * core_radius;
    /* bounding box of the fit region (relative), clipped to the image */
    acc_t bx0 = sx[0], bx1 = sx[0], by0 = sy[0], by1 = sy[0];
    for (int k = 1; k < G; k++) {
        bx0 = fmin(bx0, sx[k]), bx1 = fmax(bx1, sx[k]);
        by0 = fmin(by0, sy[k]), by1 = fmax(by1, sy[k]);
    }
    if (ax + sx[0] - fit_radius < -0.5 || ay + sy[0] - fit_radius < -0.5 || ax + sx[0] + fit_radius > w - 0.5 ||
        ay + sy[0] + fit_radius > h - 0.5)
        flags |= SRC_EDGE;
    int x0 = max(ax + (int)floor(bx0 - fit_radius), 0), x1 = min(ax + (int)ceil(bx1 + fit_radius), w - 1);
    int y0 = max(ay + (int)floor(by0 - fit_radius), 0), y1 = min(ay + (int)ceil(by1 + fit_radius), h - 1);

    acc_t p[MAXP], a[MAXP * MAXP], b[MAXP];
    /* a member's position: 0 fitted, 1 fixed (forced mode, or its flux is not
     * significant), 2 fixed (the fit ran further than max_shift) */
    int posfix[MAXG];
    for (int k = 0; k < MAXP; k++)
        p[k] = 0;
    for (int k = 0; k < G; k++) {
        p[1 + G + 2 * k] = sx[k];
        p[2 + G + 2 * k] = sy[k];
        posfix[k] = fit_pos ? 0 : 1;
    }
    const acc_t fallback_w = noise_rms > 0 ? 1 / ((acc_t)noise_rms * noise_rms) : (acc_t)1;
    /* pass 0: fluxes and sky at the start positions (linear: exact in one
     * step); then Gauss-Newton steps with the positions free; the last pass
     * gives chi^2 and the covariance at the final parameters. */
    int npass = fit_pos ? max_iters + 2 : 2, ok = 1, converged = 0, nfree = 0;
    acc_t chi2 = 0;
    int npix = 0;
    for (int pass = 0; pass < npass && ok; pass++) {
        int last = pass == npass - 1 || converged;
        int frozen[MAXP];
        frozen[0] = !fit_sky;
        for (int k = 0; k < G; k++) {
            frozen[1 + k] = 0;
            frozen[1 + G + 2 * k] = frozen[2 + G + 2 * k] = pass == 0 || posfix[k] != 0;
        }
        for (int i = 0; i < np * MAXP; i++)
            a[i] = 0;
        for (int i = 0; i < np; i++)
            b[i] = 0;
        chi2 = 0;
        npix = 0;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                acc_t rx = x - ax, ry = y - ay;
                int in = 0;
                for (int k = 0; k < G && !in; k++) {
                    acc_t dx = rx - sx[k], dy = ry - sy[k];
                    in = dx * dx + dy * dy <= r2;
                }
                if (!in)
                    continue;
                size_t i = (size_t)y * w + x;
                acc_t v = sci[i], pv = has_var ? (acc_t)var[i] : (acc_t)0;
                if (!clred_usable(sci[i], has_mask ? mask[i] : (ushort)0, ignore) ||
                    (has_var && !(pv > 0 && isfinite(pv)))) {
                    acc_t dx = rx - sx[0], dy = ry - sy[0];
                    if (dx * dx + dy * dy <= c2)
                        flags |= SRC_MASKED;
                    continue;
                }
                acc_t wt = has_var ? 1 / pv : fallback_w;
                acc_t jac[MAXP];
                acc_t model = p[0];
                jac[0] = 1;
                for (int k = 0; k < G; k++) {
                    acc_t gx, gy;
                    acc_t pk = psf_eval(psf, psf_size, psf_nterms, coef + k * MAXT, rx - p[1 + G + 2 * k],
                                        ry - p[2 + G + 2 * k], &gx, &gy);
                    model += p[1 + k] * pk;
                    jac[1 + k] = pk;
                    /* the model moves with the member: d/dx_k P(x - x_k) = -P_x */
                    jac[1 + G + 2 * k] = -p[1 + k] * gx;
                    jac[2 + G + 2 * k] = -p[1 + k] * gy;
                }
                for (int k = 0; k < np; k++)
                    if (frozen[k])
                        jac[k] = 0;
                acc_t r = v - model;
                chi2 += wt * r * r;
                npix++;
                for (int k = 0; k < np; k++) {
                    acc_t wj = wt * jac[k];
                    b[k] += wj * r;
                    for (int l = 0; l <= k; l++)
                        a[k * MAXP + l] += wj * jac[l];
                }
            }
        nfree = 0;
        for (int k = 0; k < np; k++) {
            nfree += !frozen[k];
            if (frozen[k]) {
                for (int l = 0; l < np; l++)
                    a[k * MAXP + l] = a[l * MAXP + k] = 0;
                a[k * MAXP + k] = 1;
                b[k] = 0;
            }
        }
        if (npix <= nfree || !cholesky(a, np)) {
            ok = 0;
            break;
        }
        if (last) {
            /* variances of the primary's flux and position: (A^-1)_kk */
            int idx[3] = {1, 1 + G, 2 + G};
            acc_t vv[3];
            for (int q = 0; q < 3; q++) {
                acc_t e[MAXP];
                for (int k = 0; k < np; k++)
                    e[k] = k == idx[q];
                chol_solve(a, e, np);
                vv[q] = frozen[idx[q]] ? (acc_t)NAN : e[idx[q]];
            }
            acc_t dof = npix - nfree;
            /* without a variance plane or a noise level the weights are 1:
             * the errors take the residuals' scatter */
            int known = has_var || noise_rms > 0;
            acc_t scale = known ? (acc_t)1 : chi2 / dof;
            o[Q_DX] = (float)(p[1 + G] - sx[0]);
            o[Q_DY] = (float)(p[2 + G] - sy[0]);
            o[Q_XERR] = (float)sqrt(vv[1] * scale);
            o[Q_YERR] = (float)sqrt(vv[2] * scale);
            o[Q_FLUX] = (float)p[1];
            o[Q_FERR] = (float)sqrt(vv[0] * scale);
            o[Q_SKY] = (float)p[0];
            o[Q_CHI2] = known ? (float)(chi2 / dof) : NAN;
            o[Q_NPIX] = (float)npix;
            break;
        }
        chol_solve(a, b, np);
        if (pass == 0) {
            for (int k = 0; k < np; k++)
                p[k] += b[k];
            /* positions only for members whose flux is significant: a faint
             * one has no position to find, and its derivative vanishes; |flux|,
             * as a fading source on a difference has a significant negative one */
            for (int k = 0; k < G && fit_pos; k++) {
                acc_t e[MAXP];
                for (int l = 0; l < np; l++)
                    e[l] = l == 1 + k;
                chol_solve(a, e, np);
                if (!(fabs(p[1 + k]) >= min_snr_pos * sqrt(fmax(e[1 + k], (acc_t)0))))
                    posfix[k] = 1;
            }
            if (fit_pos && posfix[0])
                flags |= SRC_PSF_FIXED;
            continue;
        }
        acc_t step = 0;
        for (int k = 0; k < G; k++) {
            /* at most half a pixel per iteration: the linearisation holds
             * within the PSF's core */
            acc_t ddx = clamp(b[1 + G + 2 * k], (acc_t)-0.5, (acc_t)0.5);
            acc_t ddy = clamp(b[2 + G + 2 * k], (acc_t)-0.5, (acc_t)0.5);
            b[1 + G + 2 * k] = ddx;
            b[2 + G + 2 * k] = ddy;
            step = fmax(step, fmax(fabs(ddx), fabs(ddy)));
        }
        for (int k = 0; k < np; k++)
            p[k] += b[k];
        for (int k = 0; k < G; k++) {
            acc_t ex = p[1 + G + 2 * k] - sx[k], ey = p[2 + G + 2 * k] - sy[k];
            if (!posfix[k] && ex * ex + ey * ey > (acc_t)max_shift * max_shift) {
                /* ran away: back to the start, fixed from now on */
                p[1 + G + 2 * k] = sx[k];
                p[2 + G + 2 * k] = sy[k];
                posfix[k] = 2;
                if (k == 0)
                    flags |= SRC_PSF_FIXED;
                step = 1; /* not converged: the fluxes follow in the next pass */
            }
        }
        converged = step < 1e-3;
    }
    if (!ok) {
        for (int k = 0; k < Q_NOUT; k++)
            o[k] = NAN;
        o[Q_NPIX] = (float)npix;
        flags |= SRC_PSF_FAILED;
    }
    o[Q_FLAGS] = (float)flags;
}
