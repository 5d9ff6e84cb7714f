#include "al_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double *al_ref_basis(int ngauss, const double *sigmas, const int *deg, int hw, int *nbasis)
{
    int ks = 2 * hw + 1, nb = 0;
    for (int k = 0; k < ngauss; k++)
        nb += (deg[k] + 1) * (deg[k] + 2) / 2;
    double *img = calloc((size_t)nb * ks * ks, sizeof *img);
    double *fu = malloc((size_t)ks * sizeof *fu), *fv = malloc((size_t)ks * sizeof *fv);
    double *b0 = malloc((size_t)ks * ks * sizeof *b0);
    int q = 0;
    for (int k = 0; k < ngauss; k++)
        for (int d = 0; d <= deg[k]; d++)
            for (int j = 0; j <= d; j++, q++) {
                int i = d - j;
                double nu = 0, nv = 0, su = 0, sv = 0;
                for (int u = -hw; u <= hw; u++) {
                    double g = exp(-0.5 * u * u / (sigmas[k] * sigmas[k]));
                    fu[u + hw] = g * pow((double)u / hw, i);
                    fv[u + hw] = g * pow((double)u / hw, j);
                    nu += fu[u + hw] * fu[u + hw];
                    nv += fv[u + hw] * fv[u + hw];
                    su += fu[u + hw];
                    sv += fv[u + hw];
                }
                /* each axis' factor: G_0 alone to unit sum, any other to unit L2 norm */
                double scu = (k == 0 && i == 0) ? 1.0 / su : 1.0 / sqrt(nu);
                double scv = (k == 0 && j == 0) ? 1.0 / sv : 1.0 / sqrt(nv);
                double sum = 0;
                for (int v = 0; v < ks; v++)
                    for (int u = 0; u < ks; u++) {
                        double val = fu[u] * scu * fv[v] * scv;
                        img[((size_t)q * ks + v) * ks + u] = val;
                        sum += val;
                    }
                if (q == 0)
                    memcpy(b0, img, (size_t)ks * ks * sizeof *b0);
                else if (i % 2 == 0 && j % 2 == 0)
                    for (int t = 0; t < ks * ks; t++)
                        img[(size_t)q * ks * ks + t] -= sum * b0[t];
            }
    free(fu);
    free(fv);
    free(b0);
    *nbasis = nb;
    return img;
}


/* S = the weighted dot products of the nv vectors of npix values (rows of vec). */
static void weighted_dots(const double *vec, const double *wt, int nv, int npix, double *S)
{
    for (int a = 0; a < nv; a++)
        for (int b = a; b < nv; b++) {
            double acc = 0;
            for (int p = 0; p < npix; p++)
                acc += wt[p] * vec[(size_t)a * npix + p] * vec[(size_t)b * npix + p];
            S[a * nv + b] = S[b * nv + a] = acc;
        }
}
void al_ref_stamp(const float *t, const float *tvar, double tvar0, double tlev, const float *i, const float *ivar,
                  double ivar0, double ilev, size_t w, const double *basis, int nbasis, int hw, int r, int cx, int cy,
                  double *S)
{
    int fw = 2 * r + 1, npix = fw * fw, nv = nbasis + 2, ks = 2 * hw + 1;
    double *vec = calloc((size_t)nv * npix, sizeof *vec), *wt = malloc((size_t)npix * sizeof *wt);
    for (int p = 0; p < npix; p++) {
        int x = cx - r + p % fw, y = cy - r + p / fw;
        size_t o = (size_t)y * w + (size_t)x;
        for (int b = 0; b < nbasis; b++) {
            double acc = 0;
            for (int v = -hw; v <= hw; v++)
                for (int u = -hw; u <= hw; u++) {
                    size_t s = (size_t)(y - v) * w + (size_t)(x - u);
                    double tv = isfinite(t[s]) ? t[s] - tlev : 0.0;
                    acc += basis[((size_t)b * ks + v + hw) * ks + u + hw] * tv;
                }
            vec[(size_t)b * npix + p] = acc;
        }
        vec[(size_t)nbasis * npix + p] = 1.0;
        vec[(size_t)(nbasis + 1) * npix + p] = i[o] - ilev;
        double var = (ivar ? ivar[o] : ivar0) + (tvar ? tvar[o] : tvar0);
        wt[p] = var > 0 ? 1.0 / var : 0.0;
    }
    weighted_dots(vec, wt, nv, npix, S);
    free(vec);
    free(wt);
}

int al_ref_stamp_masked(const float *t, const float *tvar, double tvar0, double tlev, const unsigned char *t_ok,
                        const float *i, const float *ivar, double ivar0, double ilev, const unsigned char *i_ok,
                        size_t w, size_t h, const double *basis, int nbasis, int hw, int r, int cx, int cy, double *S)
{
    int fw = 2 * r + 1, npix = fw * fw, nv = nbasis + 2, ks = 2 * hw + 1;
    double *vec = calloc((size_t)nv * npix, sizeof *vec), *wt = calloc((size_t)npix, sizeof *wt);
    int nfit = 0;
    for (int p = 0; p < npix; p++) {
        long x = cx - r + p % fw, y = cy - r + p / fw;
        int ok = x - hw >= 0 && y - hw >= 0 && x + hw < (long)w && y + hw < (long)h && i_ok[(size_t)y * w + (size_t)x];
        for (long v = y - hw; ok && v <= y + hw; v++)
            for (long u = x - hw; ok && u <= x + hw; u++)
                ok = t_ok[(size_t)v * w + (size_t)u];
        if (!ok)
            continue; /* weight 0, vectors 0 */
        size_t o = (size_t)y * w + (size_t)x;
        for (int b = 0; b < nbasis; b++) {
            double acc = 0;
            for (int v = -hw; v <= hw; v++)
                for (int u = -hw; u <= hw; u++)
                    acc += basis[((size_t)b * ks + v + hw) * ks + u + hw] * (t[(size_t)(y - v) * w + (size_t)(x - u)] - tlev);
            vec[(size_t)b * npix + p] = acc;
        }
        vec[(size_t)nbasis * npix + p] = 1.0;
        vec[(size_t)(nbasis + 1) * npix + p] = i[o] - ilev;
        double var = (ivar ? ivar[o] : ivar0) + (tvar ? tvar[o] : tvar0);
        wt[p] = var > 0 ? 1.0 / var : 0.0;
        nfit += wt[p] > 0;
    }
    weighted_dots(vec, wt, nv, npix, S);
    free(vec);
    free(wt);
    return nfit;
}

int al_ref_poly(int order, double x, double y, size_t w, size_t h, double *p)
{
    double xs = 2.0 * x / (double)(w - 1) - 1.0, ys = 2.0 * y / (double)(h - 1) - 1.0;
    int n = 0;
    for (int d = 0; d <= order; d++)
        for (int j = 0; j <= d; j++)
            p[n++] = pow(xs, d - j) * pow(ys, j);
    return n;
}

int al_ref_solve(const double *S, size_t ns, const int *cx, const int *cy, size_t w, size_t h, int nbasis, int ko,
                 int bo, double ridge, double *coef)
{
    int nk = (ko + 1) * (ko + 2) / 2, nbg = (bo + 1) * (bo + 2) / 2, n = 1 + (nbasis - 1) * nk + nbg, nv = nbasis + 2;
    double *a = calloc((size_t)n * n, sizeof *a), *rhs = calloc((size_t)n, sizeof *rhs);
    double *f = malloc((size_t)n * sizeof *f);
    int *vec = malloc((size_t)n * sizeof *vec);
    for (size_t s = 0; s < ns; s++) {
        double pk[10], pb[6];
        al_ref_poly(ko, cx[s], cy[s], w, h, pk);
        al_ref_poly(bo, cx[s], cy[s], w, h, pb);
        for (int u = 0; u < n; u++) {
            if (u == 0) {
                vec[u] = 0;
                f[u] = 1;
            } else if (u <= (nbasis - 1) * nk) {
                vec[u] = 1 + (u - 1) / nk;
                f[u] = pk[(u - 1) % nk];
            } else {
                vec[u] = nbasis;
                f[u] = pb[u - 1 - (nbasis - 1) * nk];
            }
        }
        const double *M = S + s * (size_t)nv * nv;
        for (int u = 0; u < n; u++) {
            rhs[u] += f[u] * M[vec[u] * nv + nv - 1];
            for (int v = 0; v < n; v++)
                a[(size_t)u * n + v] += f[u] * f[v] * M[vec[u] * nv + vec[v]];
        }
    }
    /* the library's definition of the solution: scaled to a unit diagonal, a ridge of `ridge` */
    double *dg = malloc((size_t)n * sizeof *dg);
    for (int i = 0; i < n; i++)
        dg[i] = a[(size_t)i * n + i] > 0 ? 1.0 / sqrt(a[(size_t)i * n + i]) : 0.0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++)
            a[(size_t)i * n + j] *= dg[i] * dg[j];
        a[(size_t)i * n + i] += dg[i] > 0 ? ridge : 1.0;
        rhs[i] *= dg[i];
    }
    /* Cholesky a = L L^T, in place in the lower triangle */
    int ok = 0;
    for (int j = 0; j < n && ok == 0; j++) {
        double d = a[(size_t)j * n + j];
        for (int k = 0; k < j; k++)
            d -= a[(size_t)j * n + k] * a[(size_t)j * n + k];
        if (!(d > 0)) {
            ok = -1;
            break;
        }
        d = sqrt(d);
        a[(size_t)j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = a[(size_t)i * n + j];
            for (int k = 0; k < j; k++)
                s -= a[(size_t)i * n + k] * a[(size_t)j * n + k];
            a[(size_t)i * n + j] = s / d;
        }
    }
    if (ok == 0) {
        for (int i = 0; i < n; i++) {
            double s = rhs[i];
            for (int k = 0; k < i; k++)
                s -= a[(size_t)i * n + k] * rhs[k];
            rhs[i] = s / a[(size_t)i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) {
            double s = rhs[i];
            for (int k = i + 1; k < n; k++)
                s -= a[(size_t)k * n + i] * rhs[k];
            rhs[i] = s / a[(size_t)i * n + i];
        }
        for (int i = 0; i < n; i++)
            coef[i] = rhs[i] * dg[i];
    }
    free(dg);
    free(a);
    free(rhs);
    free(f);
    free(vec);
    return ok;
}

void al_ref_kernel(const double *coef, const double *basis, int nbasis, int hw, int ko, double x, double y, size_t w,
                   size_t h, double *k)
{
    int ks = 2 * hw + 1, nk = (ko + 1) * (ko + 2) / 2;
    double p[10];
    al_ref_poly(ko, x, y, w, h, p);
    for (int t = 0; t < ks * ks; t++)
        k[t] = coef[0] * basis[t];
    for (int b = 1; b < nbasis; b++) {
        double c = 0;
        for (int l = 0; l < nk; l++)
            c += coef[1 + (size_t)(b - 1) * nk + l] * p[l];
        for (int t = 0; t < ks * ks; t++)
            k[t] += c * basis[(size_t)b * ks * ks + t];
    }
}

void al_ref_convolve(const double *k, int hw, const float *t, const float *tvar, double tvar0, double tlev, size_t w,
                     int x, int y, double *c, double *cv, double *abs_sum)
{
    int ks = 2 * hw + 1;
    double acc = 0, vacc = 0, as = 0;
    for (int v = -hw; v <= hw; v++)
        for (int u = -hw; u <= hw; u++) {
            size_t s = (size_t)(y - v) * w + (size_t)(x - u);
            double kk = k[(v + hw) * ks + u + hw];
            acc += kk * (t[s] - tlev);
            as += fabs(kk * (t[s] - tlev));
            vacc += kk * kk * (tvar ? tvar[s] : tvar0);
        }
    *c = acc;
    *cv = vacc;
    *abs_sum = as;
}
