/* The Alard-Lupton kernel basis: Gaussians times polynomials (Alard & Lupton
 * 1998), separable, with the first function of unit sum and the rest of
 * zero sum (HOTPANTS' convention: the kernel sum is then the first
 * coefficient alone). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "al.h"

void al_basis_free(al_basis *b)
{
    if (!b)
        return;
    free(b->filt);
    free(b->fx);
    free(b->fy);
    free(b->gauss);
    free(b->du);
    free(b->dv);
    free(b->sigma);
    free(b->bsum);
    free(b->images);
    memset(b, 0, sizeof *b);
}

int al_poly(int order, double x, double y, size_t w, size_t h, double *p)
{
    double xs = w > 1 ? 2.0 * x / (double)(w - 1) - 1.0 : 0.0, ys = h > 1 ? 2.0 * y / (double)(h - 1) - 1.0 : 0.0;
    int n = 0;
    for (int d = 0; d <= order; d++)
        for (int j = 0; j <= d; j++)
            p[n++] = pow(xs, d - j) * pow(ys, j);
    return n;
}

clred_status al_basis_build(int ngauss, const double *sigmas, const int *deg, int hw, al_basis *b)
{
    memset(b, 0, sizeof *b);
    if (ngauss < 1 || ngauss > CLRED_AL_MAX_GAUSS || hw < 1)
        return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: %d Gaussians, half-width %d", ngauss, hw);
    int nfilt = 0, nbasis = 0;
    for (int k = 0; k < ngauss; k++) {
        if (deg[k] < 0 || deg[k] > 10 || !(sigmas[k] > 0))
            return clred_fail(CLRED_ERR_USAGE, "Alard-Lupton: Gaussian %d: sigma %g, degree %d", k, sigmas[k], deg[k]);
        nfilt += deg[k] + 1;
        nbasis += (deg[k] + 1) * (deg[k] + 2) / 2;
    }
    int ks = 2 * hw + 1;
    b->hw = hw;
    b->ksize = ks;
    b->nfilt = nfilt;
    b->nbasis = nbasis;
    b->filt = calloc((size_t)nfilt * ks, sizeof *b->filt);
    b->fx = calloc((size_t)nbasis, sizeof(int));
    b->fy = calloc((size_t)nbasis, sizeof(int));
    b->gauss = calloc((size_t)nbasis, sizeof(int));
    b->du = calloc((size_t)nbasis, sizeof(int));
    b->dv = calloc((size_t)nbasis, sizeof(int));
    b->sigma = calloc((size_t)ngauss, sizeof(double));
    b->bsum = calloc((size_t)nbasis, sizeof(float));
    b->images = calloc((size_t)nbasis * ks * ks, sizeof(double));
    if (!b->filt || !b->fx || !b->fy || !b->gauss || !b->du || !b->dv || !b->sigma || !b->bsum || !b->images) {
        al_basis_free(b);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the Alard-Lupton basis");
    }
    /* filters: Gaussian k, power i at index first[k] + i; in double for the
     * host's kernel images, rounded to float for the device's stamps */
    double *dfilt = malloc((size_t)nfilt * ks * sizeof *dfilt);
    if (!dfilt) {
        al_basis_free(b);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the Alard-Lupton basis");
    }
    int f = 0, bi = 0;
    for (int k = 0; k < ngauss; k++) {
        b->sigma[k] = sigmas[k];
        int first = f;
        for (int i = 0; i <= deg[k]; i++, f++) {
            double norm = 0, sum = 0;
            double *tmp = malloc((size_t)ks * sizeof *tmp);
            if (!tmp) {
                free(dfilt);
                al_basis_free(b);
                return clred_fail(CLRED_ERR_MEMORY, "out of memory for the Alard-Lupton basis");
            }
            for (int u = -hw; u <= hw; u++) {
                double v = exp(-0.5 * u * u / (sigmas[k] * sigmas[k])) * pow((double)u / hw, i);
                tmp[u + hw] = v;
                norm += v * v;
                sum += v;
            }
            double scale = (k == 0 && i == 0) ? 1.0 / sum : 1.0 / sqrt(norm);
            for (int u = 0; u < ks; u++) {
                dfilt[(size_t)f * ks + u] = tmp[u] * scale;
                b->filt[(size_t)f * ks + u] = (float)(tmp[u] * scale);
            }
            free(tmp);
        }
        for (int d = 0; d <= deg[k]; d++)
            for (int j = 0; j <= d; j++, bi++) {
                b->gauss[bi] = k;
                b->du[bi] = d - j;
                b->dv[bi] = j;
                b->fx[bi] = first + d - j;
                b->fy[bi] = first + j;
            }
    }
    /* the images: basis 0, then each less its sum times basis 0 */
    double *bs = malloc((size_t)nbasis * sizeof *bs);
    if (!bs) {
        free(dfilt);
        al_basis_free(b);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the Alard-Lupton basis");
    }
    for (int q = 0; q < nbasis; q++) {
        double sum = 0;
        for (int v = 0; v < ks; v++)
            for (int u = 0; u < ks; u++)
                sum += dfilt[(size_t)b->fx[q] * ks + u] * dfilt[(size_t)b->fy[q] * ks + v];
        /* odd powers sum to 0 exactly; their float sums' rounding is left alone */
        bs[q] = (q == 0 || b->du[q] % 2 || b->dv[q] % 2) ? 0.0 : sum;
        b->bsum[q] = (float)bs[q];
        for (int v = 0; v < ks; v++)
            for (int u = 0; u < ks; u++) {
                double val = dfilt[(size_t)b->fx[q] * ks + u] * dfilt[(size_t)b->fy[q] * ks + v];
                if (q > 0)
                    val -= bs[q] * dfilt[(size_t)b->fx[0] * ks + u] * dfilt[(size_t)b->fy[0] * ks + v];
                b->images[((size_t)q * ks + v) * ks + u] = val;
            }
    }
    free(bs);
    free(dfilt);
    return CLRED_OK;
}
