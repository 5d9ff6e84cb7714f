#include "al_kerr_ref.h"
#include "al_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void al_kerr_ref_covariance(const double *dots, size_t ns, const int *use, const int *cx, const int *cy, size_t w,
                            size_t h, int nbasis, int ko, int bo, double *cov)
{
    int nv = nbasis + 2, tk = (ko + 1) * (ko + 2) / 2, tb = (bo + 1) * (bo + 2) / 2;
    int nk = 1 + (nbasis - 1) * tk, n = nk + tb;
    double *a = calloc((size_t)n * 2 * n, sizeof *a);
    int *vec = malloc((size_t)n * sizeof *vec);
    double *fac = malloc((size_t)n * sizeof *fac), pk[16], pb[16];
    for (size_t s = 0; s < ns; s++) {
        if (!use[s])
            continue;
        al_ref_poly(ko, cx[s], cy[s], w, h, pk);
        al_ref_poly(bo, cx[s], cy[s], w, h, pb);
        vec[0] = 0;
        fac[0] = 1;
        for (int b = 1; b < nbasis; b++)
            for (int l = 0; l < tk; l++) {
                vec[1 + (b - 1) * tk + l] = b;
                fac[1 + (b - 1) * tk + l] = pk[l];
            }
        for (int l = 0; l < tb; l++) {
            vec[nk + l] = nbasis;
            fac[nk + l] = pb[l];
        }
        const double *S = dots + s * (size_t)nv * nv;
        for (int u = 0; u < n; u++)
            for (int v = 0; v < n; v++)
                a[(size_t)u * 2 * n + v] += fac[u] * fac[v] * S[(size_t)vec[u] * nv + vec[v]];
    }
    for (int u = 0; u < n; u++)
        a[(size_t)u * 2 * n + n + u] = 1.0;
    /* Gauss-Jordan on [A | 1] */
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(a[(size_t)r * 2 * n + c]) > fabs(a[(size_t)piv * 2 * n + c]))
                piv = r;
        for (int k = 0; k < 2 * n && piv != c; k++) {
            double t = a[(size_t)c * 2 * n + k];
            a[(size_t)c * 2 * n + k] = a[(size_t)piv * 2 * n + k];
            a[(size_t)piv * 2 * n + k] = t;
        }
        double d = a[(size_t)c * 2 * n + c];
        for (int k = 0; k < 2 * n; k++)
            a[(size_t)c * 2 * n + k] /= d;
        for (int r = 0; r < n; r++) {
            double f = a[(size_t)r * 2 * n + c];
            if (r == c || f == 0)
                continue;
            for (int k = 0; k < 2 * n; k++)
                a[(size_t)r * 2 * n + k] -= f * a[(size_t)c * 2 * n + k];
        }
    }
    for (int i = 0; i < nk; i++)
        for (int j = 0; j < nk; j++)
            cov[(size_t)i * nk + j] = a[(size_t)i * 2 * n + n + j];
    free(a);
    free(vec);
    free(fac);
}

double al_kerr_ref_sigma(const double *images, int nbasis, int ks, int ko, const double *cov, const double *g,
                         int gsize, const double *p2, int psize, const double *t, const float *var, size_t w,
                         size_t h, double norm, double scale, long x, long y, double *cs)
{
    int hw = ks / 2, gh = gsize / 2, tk = (ko + 1) * (ko + 2) / 2, nk = 1 + (nbasis - 1) * tk;
    double *hv = calloc((size_t)nk, sizeof *hv), *w2 = calloc((size_t)nk, sizeof *w2), pk[16], g2 = 0;
    for (int qy = -gh; qy <= gh; qy++)
        for (int qx = -gh; qx <= gh; qx++) {
            long px = x + qx, py = y + qy;
            double gq = g[(size_t)(qy + gh) * gsize + (size_t)(qx + gh)];
            g2 += gq * gq;
            al_ref_poly(ko, (double)px, (double)py, w, h, pk);
            for (int b = 0; b < nbasis; b++) {
                double wb = 0;
                for (int v = -hw; v <= hw; v++)
                    for (int u = -hw; u <= hw; u++) {
                        long tx = px - u, ty = py - v;
                        if (tx < 0 || ty < 0 || tx >= (long)w || ty >= (long)h)
                            continue;
                        wb += images[((size_t)b * ks + (size_t)(v + hw)) * ks + (size_t)(u + hw)] *
                              t[(size_t)ty * w + (size_t)tx];
                    }
                if (b == 0) {
                    hv[0] += gq * wb;
                    w2[0] += wb * wb;
                } else
                    for (int l = 0; l < tk; l++) {
                        hv[1 + (b - 1) * tk + l] += gq * pk[l] * wb;
                        w2[1 + (b - 1) * tk + l] += pk[l] * wb * pk[l] * wb;
                    }
            }
        }
    int ph = psize / 2;
    double den2 = 0;
    for (int j = -ph; j <= ph; j++)
        for (int i = -ph; i <= ph; i++) {
            long xx = x + i, yy = y + j;
            if (xx < 0 || yy < 0 || xx >= (long)w || yy >= (long)h)
                continue;
            double v = var[(size_t)yy * w + (size_t)xx];
            if (v > 0)
                den2 += p2[(size_t)(j + ph) * psize + (size_t)(i + ph)] * v;
        }
    double q = 0, qb = 0;
    for (int i = 0; i < nk; i++)
        for (int j = 0; j < nk; j++) {
            q += hv[i] * cov[(size_t)i * nk + j] * hv[j];
            qb += sqrt(g2 * w2[i]) * fabs(cov[(size_t)i * nk + j]) * sqrt(g2 * w2[j]);
        }
    *cs = sqrt(qb * scale / den2) / fabs(norm);
    free(hv);
    free(w2);
    return sqrt(q * scale / den2) / fabs(norm);
}
