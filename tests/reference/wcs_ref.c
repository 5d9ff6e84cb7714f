#include "wcs_ref.h"

#include <math.h>

static double tpv_poly(const double *pv, double x, double y)
{
    double r = sqrt(x * x + y * y);
    return pv[0] + pv[1] * x + pv[2] * y + pv[3] * r + pv[4] * x * x + pv[5] * x * y + pv[6] * y * y +
           pv[7] * x * x * x + pv[8] * x * x * y + pv[9] * x * y * y + pv[10] * y * y * y;
}

void ref_wcs_pix2sky(const ref_wcs *w, double x, double y, double *ra, double *dec)
{
    double u = x + 1.0 - w->crpix[0], v = y + 1.0 - w->crpix[1];
    double fu = u, fv = v;
    for (int p = 0; p <= w->sip_order; p++)
        for (int q = 0; p + q <= w->sip_order; q++) {
            fu += w->a[p][q] * pow(u, p) * pow(v, q);
            fv += w->b[p][q] * pow(u, p) * pow(v, q);
        }
    double xi = w->cd[0] * fu + w->cd[1] * fv, eta = w->cd[2] * fu + w->cd[3] * fv;
    if (w->tpv) {
        /* TPV: the second axis swaps the roles of x and y. */
        double nx = tpv_poly(w->pv1, xi, eta), ny = tpv_poly(w->pv2, eta, xi);
        xi = nx;
        eta = ny;
    }
    const double d2r = M_PI / 180.0;
    xi *= d2r;
    eta *= d2r;
    double a0 = w->crval[0] * d2r, d0 = w->crval[1] * d2r;
    double den = cos(d0) - eta * sin(d0);
    double a = a0 + atan2(xi, den);
    double d = atan2(eta * cos(d0) + sin(d0), sqrt(xi * xi + den * den));
    *ra = fmod(a / d2r + 720.0, 360.0);
    *dec = d / d2r;
}

double ref_sky_distance(double ra1, double dec1, double ra2, double dec2)
{
    const double d2r = M_PI / 180.0;
    double s1 = sin((dec2 - dec1) * d2r / 2), s2 = sin((ra2 - ra1) * d2r / 2);
    double h = s1 * s1 + cos(dec1 * d2r) * cos(dec2 * d2r) * s2 * s2;
    return 2 * asin(sqrt(h)) / d2r * 3600.0;
}
