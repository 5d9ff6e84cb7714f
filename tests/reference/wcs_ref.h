/* Plain double-precision world coordinates for the WCS tests: a TAN
 * projection with SIP (pixel-side) or TPV (sky-side, up to cubic) distortion,
 * written straight from the FITS papers, independent of wcslib. */
#ifndef CLRED_WCS_REF_H
#define CLRED_WCS_REF_H

typedef struct {
    double crval[2];   /* deg */
    double crpix[2];   /* 1-based, as in the header */
    double cd[4];      /* CD1_1, CD1_2, CD2_1, CD2_2 */
    int sip_order;     /* 0 = none */
    double a[6][6], b[6][6];
    int tpv;           /* 1: pv1[0..10], pv2[0..10] apply */
    double pv1[11], pv2[11];
} ref_wcs;

/* 0-based pixel (x, y) -> (ra, dec) in degrees. */
void ref_wcs_pix2sky(const ref_wcs *w, double x, double y, double *ra, double *dec);
/* Angular distance in arcsec. */
double ref_sky_distance(double ra1, double dec1, double ra2, double dec2);

#endif
