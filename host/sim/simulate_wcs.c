/* The simulated field's sky: a TAN projection (with SIP distortion when
 * asked) centred on a fixed field, each frame's WCS moved by its dither, and
 * the star catalog (RA, Dec, magnitude) a reference-catalog fit can use. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "simulate.h"
#include "wcs_internal.h"
#include "wcsfit.h"

void clred_sim_field_wcs(const clred_sim_truth *t, double dx, double dy, clred_tan_sip *s)
{
    memset(s, 0, sizeof *s);
    s->crval[0] = CLRED_SIM_RA;
    s->crval[1] = CLRED_SIM_DEC;
    s->crpix[0] = 0.5 * ((double)t->width - 1.0) + dx;
    s->crpix[1] = 0.5 * ((double)t->height - 1.0) + dy;
    double d = t->opts.pixel_scale / 3600.0, a = CLRED_SIM_ROTATION * M_PI / 180.0;
    s->cd[0] = -d * cos(a);
    s->cd[1] = d * sin(a);
    s->cd[2] = d * sin(a);
    s->cd[3] = d * cos(a);
    if (t->opts.sip > 0) {
        /* A mild pincushion-like cubic with some quadratic tilt: about
         * opts.sip pixels of displacement at the corners. */
        double r = 0.5 * fmax((double)t->width, (double)t->height);
        double c2 = 0.3 * t->opts.sip / (r * r), c3 = 0.35 * t->opts.sip / (r * r * r);
        s->order = 3;
        s->a.c[2][0] = c2, s->a.c[1][1] = -0.5 * c2, s->a.c[0][2] = 0.3 * c2, s->a.c[3][0] = c3, s->a.c[1][2] = c3;
        s->b.c[2][0] = 0.4 * c2, s->b.c[1][1] = c2, s->b.c[0][2] = -0.6 * c2, s->b.c[0][3] = c3, s->b.c[2][1] = c3;
    }
}

clred_status clred_sim_frame_wcs(const clred_sim_truth *t, const clred_sim_frame *f, clred_header *h)
{
    clred_tan_sip s;
    clred_sim_field_wcs(t, f->dx, f->dy, &s);
    CLRED_TRY(clred_tan_sip_fit_inverse(&s, -0.5, -0.5, (double)t->width - 0.5, (double)t->height - 0.5));
    return clred_tan_sip_write(&s, h);
}

double clred_sim_magnitude(const clred_sim_truth *t, double flux)
{
    return -2.5 * log10(flux / t->opts.science_exptime) + CLRED_SIM_ZEROPOINT;
}

clred_status clred_sim_write_stars(const char *path, const clred_sim_truth *t)
{
    clred_tan_sip s;
    clred_sim_field_wcs(t, 0, 0, &s);
    FILE *f = fopen(path, "w");
    if (!f)
        return clred_fail(CLRED_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    fprintf(f, "id,ra,dec,mag,x,y,flux\n");
    for (size_t i = 0; i < t->nstars; i++) {
        const clred_sim_star *st = &t->stars[i];
        double ra, dec;
        clred_tan_sip_pix2sky(&s, st->x, st->y, &ra, &dec);
        fprintf(f, "%zu,%.10f,%.10f,%.5f,%.4f,%.4f,%.3f\n", i + 1, ra, dec, clred_sim_magnitude(t, st->flux), st->x,
                st->y, st->flux);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return clred_fail(CLRED_ERR_IO, "%s: writing failed (disk full?)", path);
    return CLRED_OK;
}
