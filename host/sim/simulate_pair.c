/* Simulated pairs for difference imaging: a reference (deep, one seeing) and
 * a new image (another seeing, optionally shifted by a sub-pixel amount) of
 * one field of stars and galaxies, with point sources that appear (in the new
 * image) or fade (present in the reference only) at known S/N, cosmic rays,
 * saturated stars and NaN holes. The images are calibrated frames in e-, sky
 * included, with their true noise variance and a mask; the truth lists the
 * injected sources. Pure C, deterministic from the seed. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "simulate.h"

#define PI 3.14159265358979323846
#define SUB 5  /* sub-samples per pixel axis when integrating a profile */
#define HOLE 6 /* side of the reference's NaN holes, px */

/* Random streams of the pair, one per part, so that e.g. more transients do not move the stars. */
enum { STREAM_STARS = 101, STREAM_GALAXIES, STREAM_TRANSIENTS, STREAM_NOISE_REF, STREAM_NOISE_NEW, STREAM_COSMICS,
       STREAM_HOLES };

clred_pair_opts clred_pair_defaults(void)
{
    clred_pair_opts o;
    memset(&o, 0, sizeof o);
    o.seed = 1;
    o.width = o.height = 256;
    o.psf_kind = CLRED_PSF_MOFFAT;
    o.moffat_beta = 3.0;
    o.ref_fwhm = 3.5;
    o.new_fwhm = 4.5;
    o.sky = 300.0;
    o.readnoise = 5.0;
    o.ref_depth = 9.0;
    o.nstars = 80;
    o.ngalaxies = 12;
    o.ntransients = 40;
    o.snr_min = 3.0;
    o.snr_max = 50.0;
    o.fading_fraction = 0.25;
    o.ncosmics = 10;
    o.nsaturated = 2;
    o.saturation = 60000.0;
    o.nholes = 0;
    o.psf_stamp_fwhm = 4.0;
    return o;
}

static clred_status check_opts(const clred_pair_opts *o)
{
    if (o->width < 64 || o->height < 64 || o->width > 16384 || o->height > 16384)
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: size %zux%zu outside 64..16384", o->width, o->height);
    if (!(o->ref_fwhm >= 1.0 && o->ref_fwhm <= 20.0 && o->new_fwhm >= 1.0 && o->new_fwhm <= 20.0))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: FWHM %g / %g px outside 1..20", o->ref_fwhm, o->new_fwhm);
    if (o->psf_kind == CLRED_PSF_MOFFAT && !(o->moffat_beta > 1.5 && o->moffat_beta < 20))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: Moffat beta %g outside (1.5, 20)", o->moffat_beta);
    if (!(fabs(o->fwhm_grad_x) <= 1.0) || !(fabs(o->fwhm_grad_y) <= 1.0))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: FWHM gradients %g, %g outside [-1, 1]", o->fwhm_grad_x,
                          o->fwhm_grad_y);
    if (!(fabs(o->fwhm_grad_x) + fabs(o->fwhm_grad_y) < 1.5))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: FWHM gradients %g, %g leave no FWHM at a corner",
                          o->fwhm_grad_x, o->fwhm_grad_y);
    if (!(o->psf_stamp_fwhm >= 2.0 && o->psf_stamp_fwhm <= 12.0))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: PSF stamp half size %g FWHM outside 2..12",
                          o->psf_stamp_fwhm);
    if (o->psf_kind != CLRED_PSF_MOFFAT && o->psf_kind != CLRED_PSF_GAUSSIAN)
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: unknown PSF kind %d", (int)o->psf_kind);
    if (!(o->sky >= 0 && o->readnoise >= 0 && o->sky + o->readnoise > 0))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: sky %g and read noise %g must be >= 0, not both 0", o->sky,
                          o->readnoise);
    if (!(o->ref_depth > 0))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: reference depth %g must be > 0", o->ref_depth);
    if (!(fabs(o->shift_x) <= 8 && fabs(o->shift_y) <= 8))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: shift (%g, %g) beyond 8 px", o->shift_x, o->shift_y);
    if (o->nstars < 0 || o->ngalaxies < 0 || o->ntransients < 0 || o->ncosmics < 0 || o->nsaturated < 0 ||
        o->nholes < 0 || o->nsaturated > o->nstars)
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: negative counts, or more saturated stars than stars");
    if (!(o->snr_min > 0 && o->snr_max >= o->snr_min))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: S/N range [%g, %g] is empty", o->snr_min, o->snr_max);
    if (!(o->fading_fraction >= 0 && o->fading_fraction <= 1))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: fading fraction %g outside [0, 1]", o->fading_fraction);
    if (!(o->saturation > o->sky))
        return clred_fail(CLRED_ERR_USAGE, "simulated pair: saturation %g must exceed the sky %g", o->saturation, o->sky);
    return CLRED_OK;
}

/* ---- PSF profiles: unit integral over the plane. Sources are rendered with
 * the whole profile (out to where it falls below a cut far under either
 * image's noise, render_half), so each image holds its source's whole flux
 * and the two images differ by a convolution, as a PSF-matched subtraction
 * assumes; cutting both at a few FWHM would leave the wider PSF's image
 * short of more of its wings (a bright star's ring in the difference). The
 * PSF stamps handed out are the cores, scaled to unit sum, as a measured PSF
 * would be. */

typedef struct {
    clred_psf_kind kind;
    double fwhm, beta;
    double stamp_fwhm;   /* the stamp's half size in FWHM (clred_pair_opts.psf_stamp_fwhm) */
    double inv_a2, norm; /* profile(r) = norm * f(r^2 inv_a2) */
    int half;            /* the PSF stamp's half size */
    double stamp_sum;    /* the profile's sum over the centred stamp: the stamp is divided by it */
} profile;

static double profile_raw(const profile *p, double dx, double dy)
{
    double q = (dx * dx + dy * dy) * p->inv_a2;
    if (p->kind == CLRED_PSF_GAUSSIAN)
        return p->norm * exp(-0.5 * q);
    return p->norm * pow(1.0 + q, -p->beta);
}

/* Mean of the profile over pixel (dx, dy) +- 0.5, by SUB x SUB samples. */
static double profile_pixel(const profile *p, double dx, double dy)
{
    double s = 0;
    for (int j = 0; j < SUB; j++)
        for (int i = 0; i < SUB; i++)
            s += profile_raw(p, dx + (i + 0.5) / SUB - 0.5, dy + (j + 0.5) / SUB - 0.5);
    return s / (SUB * SUB);
}

/* The profile's shape alone (what rendering a source needs); stamp_sum is
 * left NaN: only profile_init's stamps divide by it. */
static void profile_shape(profile *p, clred_psf_kind kind, double fwhm, double beta, double stamp_fwhm)
{
    p->kind = kind;
    p->fwhm = fwhm;
    p->beta = beta;
    p->stamp_fwhm = stamp_fwhm;
    if (kind == CLRED_PSF_GAUSSIAN) {
        double sigma = fwhm / 2.3548200450309493;
        p->inv_a2 = 1.0 / (sigma * sigma);
        p->norm = 1.0 / (2 * PI * sigma * sigma);
    } else {
        double a = fwhm / (2.0 * sqrt(pow(2.0, 1.0 / beta) - 1.0));
        p->inv_a2 = 1.0 / (a * a);
        p->norm = (beta - 1.0) / (PI * a * a);
    }
    p->half = (int)ceil(stamp_fwhm * fwhm);
    p->stamp_sum = NAN;
}

/* The profile and its sum over the centred stamp (the PSF files' scale). */
static void profile_init(profile *p, clred_psf_kind kind, double fwhm, double beta, double stamp_fwhm)
{
    profile_shape(p, kind, fwhm, beta, stamp_fwhm);
    double s = 0;
    for (int j = -p->half; j <= p->half; j++)
        for (int i = -p->half; i <= p->half; i++)
            s += profile_pixel(p, i, j);
    p->stamp_sum = s;
}

/* The profile's half size out to which a source of this flux is rendered:
 * where |flux| times the profile falls below cut (e- per pixel), never
 * inside the stamp; the image's diagonal at most. */
static int render_half(const profile *p, double flux, double cut, size_t w, size_t h)
{
    double k = fabs(flux) * p->norm / cut, r = 0;
    if (k > 1)
        r = p->kind == CLRED_PSF_GAUSSIAN ? sqrt(2.0 * log(k) / p->inv_a2)
                                          : sqrt((pow(k, 1.0 / p->beta) - 1.0) / p->inv_a2);
    r = fmin(r, hypot((double)w, (double)h));
    return (int)fmax((double)p->half, ceil(r) + 1.0);
}

/* The model's core as a stamp: unit sum. */
static clred_status profile_stamp(const profile *p, clred_psf *psf)
{
    size_t n = (size_t)(2 * p->half + 1);
    memset(psf, 0, sizeof *psf);
    if (!(psf->data = malloc(n * n * sizeof *psf->data)))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu px PSF", n);
    psf->size = n;
    for (int j = -p->half; j <= p->half; j++)
        for (int i = -p->half; i <= p->half; i++)
            psf->data[(size_t)(j + p->half) * n + (size_t)(i + p->half)] = (float)(profile_pixel(p, i, j) / p->stamp_sum);
    psf->fwhm = p->fwhm;
    psf->ellipticity = 0.0;
    return CLRED_OK;
}

double clred_pair_fwhm_at(const clred_pair_opts *o, double fwhm, double x, double y)
{
    double u = o->width > 1 ? x / (double)(o->width - 1) - 0.5 : 0.0;
    double v = o->height > 1 ? y / (double)(o->height - 1) - 0.5 : 0.0;
    return fwhm * (1.0 + o->fwhm_grad_x * u + o->fwhm_grad_y * v);
}

/* The profile at (x, y) to render a source with: base's own unless the
 * FWHM varies over the field (then its shape only: a source is rendered from
 * the profile itself, never from a stamp, so its stamp sum, 5x5 samples per
 * pixel of the stamp, was a third of the simulator's time with a gradient). */
static void profile_at(const clred_pair_opts *o, const profile *base, double x, double y, profile *out)
{
    if (o->fwhm_grad_x == 0 && o->fwhm_grad_y == 0)
        *out = *base;
    else
        profile_shape(out, base->kind, clred_pair_fwhm_at(o, base->fwhm, x, y), base->beta, base->stamp_fwhm);
}

/* Adds flux (e-) of a point source at (x, y), rendered out to render_half. */
static void add_point(double *img, size_t w, size_t h, const profile *p, double x, double y, double flux, double cut)
{
    long cx = lround(x), cy = lround(y), half = render_half(p, flux, cut, w, h);
    for (long j = cy - half; j <= cy + half; j++) {
        if (j < 0 || j >= (long)h)
            continue;
        for (long i = cx - half; i <= cx + half; i++)
            if (i >= 0 && i < (long)w)
                img[(size_t)j * w + (size_t)i] += flux * profile_pixel(p, (double)i - x, (double)j - y);
    }
}

typedef struct {
    double x, y, flux, scale, q, theta; /* exponential disk: scale length, axis ratio, angle */
} galaxy;

/* Adds a galaxy: its exponential disk integrated over each pixel, convolved
 * with the PSF (both on the pixel grid) out to render_half of its flux. */
static clred_status add_galaxy(double *img, size_t w, size_t h, const profile *p, const galaxy *g, double cut)
{
    int gh = (int)ceil(7.0 * g->scale), ph = render_half(p, g->flux, cut, w, h), bh = gh + ph;
    size_t gn = (size_t)(2 * gh + 1), pn = (size_t)(2 * ph + 1);
    double *disk = calloc(gn * gn, sizeof *disk), *kern = malloc(pn * pn * sizeof *kern);
    if (!disk || !kern) {
        free(disk);
        free(kern);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a simulated galaxy");
    }
    long cx = lround(g->x), cy = lround(g->y);
    double c = cos(g->theta), s = sin(g->theta), total = 0;
    for (int j = -gh; j <= gh; j++)
        for (int i = -gh; i <= gh; i++) {
            double v = 0;
            for (int sj = 0; sj < SUB; sj++)
                for (int si = 0; si < SUB; si++) {
                    double dx = (double)(cx + i) + (si + 0.5) / SUB - 0.5 - g->x;
                    double dy = (double)(cy + j) + (sj + 0.5) / SUB - 0.5 - g->y;
                    double u = c * dx + s * dy, v2 = (-s * dx + c * dy) / g->q;
                    v += exp(-sqrt(u * u + v2 * v2) / g->scale);
                }
            disk[(size_t)(j + gh) * gn + (size_t)(i + gh)] = v;
            total += v;
        }
    for (int j = -ph; j <= ph; j++)
        for (int i = -ph; i <= ph; i++)
            kern[(size_t)(j + ph) * pn + (size_t)(i + ph)] = profile_pixel(p, i, j);
    for (int j = -bh; j <= bh; j++) {
        long y = cy + j;
        if (y < 0 || y >= (long)h)
            continue;
        for (int i = -bh; i <= bh; i++) {
            long x = cx + i;
            if (x < 0 || x >= (long)w)
                continue;
            /* the kernel taps whose disk pixel exists (|j - kj|, |i - ki|
             * <= gh), in increasing kj, ki: the same sum in the same order as
             * testing every tap, without visiting the others */
            int kj0 = j - gh > -ph ? j - gh : -ph, kj1 = j + gh < ph ? j + gh : ph;
            int ki0 = i - gh > -ph ? i - gh : -ph, ki1 = i + gh < ph ? i + gh : ph;
            double v = 0;
            for (int kj = kj0; kj <= kj1; kj++) {
                const double *krow = kern + (size_t)(kj + ph) * pn + ph, *drow = disk + (size_t)(j - kj + gh) * gn + gh;
                for (int ki = ki0; ki <= ki1; ki++)
                    v += krow[ki] * drow[i - ki];
            }
            img[(size_t)y * w + (size_t)x] += g->flux * v / total;
        }
    }
    free(disk);
    free(kern);
    return CLRED_OK;
}

void clred_pair_free(clred_pair *p)
{
    if (!p)
        return;
    clred_image_free(&p->ref);
    clred_image_free(&p->new_img);
    clred_psf_free(&p->ref_psf);
    clred_psf_free(&p->new_psf);
    free(p->transients);
    free(p->cosmic_xy);
    free(p->hole_xy);
    free(p->hole_box);
    memset(p, 0, sizeof *p);
}

typedef struct {
    double x, y, flux;
} point;

/* A position at least `margin` px inside the field and `clear` px from every
 * listed point; 0 when 200 tries found none (the last try is left in x, y). */
static int place(clred_sim_rng *r, size_t w, size_t h, double margin, const point *avoid, size_t navoid, double clear,
                 double *x, double *y)
{
    for (int tries = 0; tries < 200; tries++) {
        *x = margin + clred_sim_uniform(r) * ((double)w - 1 - 2 * margin);
        *y = margin + clred_sim_uniform(r) * ((double)h - 1 - 2 * margin);
        int ok = 1;
        for (size_t k = 0; k < navoid && ok; k++)
            ok = hypot(*x - avoid[k].x, *y - avoid[k].y) >= clear;
        if (ok)
            return 1;
    }
    return 0;
}

/* Noise, saturation and the mask: sci = expected + N(0, var). */
static void finish_image(clred_image *img, const double *expected, double var_scale, double readnoise,
                         double saturation, clred_sim_rng *r)
{
    size_t n = img->width * img->height;
    for (size_t i = 0; i < n; i++) {
        double var = (fmax(expected[i], 0.0) + readnoise * readnoise) * var_scale;
        double v = expected[i] + sqrt(var) * clred_sim_normal(r);
        img->var[i] = (float)var;
        if (v >= saturation) {
            v = saturation;
            img->mask[i] |= CLRED_MASK_SATURATED;
        }
        img->sci[i] = (float)v;
    }
}

static clred_status set_header(clred_image *img, const clred_pair_opts *o, double fwhm, int is_ref)
{
    if (!(img->header = clred_header_new()))
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a header");
    CLRED_TRY(clred_header_set_string(img->header, "IMAGETYP", "OBJECT", "simulated pair"));
    CLRED_TRY(clred_header_set_string(img->header, "SIMROLE", is_ref ? "REFERENCE" : "NEW", "role in the pair"));
    CLRED_TRY(clred_header_set_double(img->header, "SIMFWHM", fwhm, "PSF FWHM, px"));
    CLRED_TRY(clred_header_set_double(img->header, "SIMSKY", o->sky, "sky, e- per pixel"));
    CLRED_TRY(clred_header_set_double(img->header, "SIMSEED", (double)o->seed, "random seed"));
    CLRED_TRY(clred_header_set_double(img->header, "SATURATE", o->saturation, "e-"));
    if (!is_ref) {
        CLRED_TRY(clred_header_set_double(img->header, "SIMDX", o->shift_x, "field shift against the reference, px"));
        CLRED_TRY(clred_header_set_double(img->header, "SIMDY", o->shift_y, "field shift against the reference, px"));
    }
    return CLRED_OK;
}

static clred_status build(const clred_pair_opts *o, clred_pair *out, double *e_ref, double *e_new)
{
    size_t w = o->width, h = o->height;
    profile pr, pn;
    profile_init(&pr, o->psf_kind, o->ref_fwhm, o->moffat_beta, o->psf_stamp_fwhm);
    profile_init(&pn, o->psf_kind, o->new_fwhm, o->moffat_beta, o->psf_stamp_fwhm);
    CLRED_TRY(profile_stamp(&pr, &out->ref_psf));
    CLRED_TRY(profile_stamp(&pn, &out->new_psf));
    CLRED_TRY(clred_image_alloc(&out->ref, w, h, 1, 1));
    CLRED_TRY(clred_image_alloc(&out->new_img, w, h, 1, 1));
    CLRED_TRY(set_header(&out->ref, o, o->ref_fwhm, 1));
    CLRED_TRY(set_header(&out->new_img, o, o->new_fwhm, 0));
    for (size_t i = 0; i < w * h; i++)
        e_ref[i] = e_new[i] = o->sky;

    size_t nstars = (size_t)o->nstars, ngal = (size_t)o->ngalaxies, ntr = (size_t)o->ntransients;
    point *pts = calloc(nstars + ngal + ntr + 1, sizeof *pts);
    galaxy *gals = calloc(ngal + 1, sizeof *gals);
    out->transients = calloc(ntr + 1, sizeof *out->transients);
    out->cosmic_xy = calloc(2 * (size_t)o->ncosmics + 1, sizeof *out->cosmic_xy);
    out->hole_xy = calloc(2 * (size_t)o->nholes + 1, sizeof *out->hole_xy);
    out->hole_box = calloc(4 * (size_t)o->nholes + 1, sizeof *out->hole_box);
    if (!pts || !gals || !out->transients || !out->cosmic_xy || !out->hole_xy || !out->hole_box) {
        free(pts);
        free(gals);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the simulated pair's sources");
    }
    size_t npts = 0;
    clred_status st = CLRED_OK;
    double sigma_n = sqrt(o->sky + o->readnoise * o->readnoise);
    /* Where sources' profiles are cut: a hundredth of the quieter image's sky noise. */
    double cut = 0.01 * sigma_n / sqrt(fmax(o->ref_depth, 1.0));
    /* The flux that makes a star saturate: its peak pixel at 3x the level. */
    double peak_frac = profile_pixel(&pr, 0, 0);
    clred_sim_rng r;
    clred_sim_rng_init(&r, o->seed, STREAM_STARS, 0);
    for (size_t s = 0; s < nstars; s++) {
        double x, y;
        place(&r, w, h, 4.0, pts, npts, 3.0, &x, &y);
        double flux = (int)s < o->nsaturated ? 3.0 * o->saturation / peak_frac
                                             : pow(10.0, 3.0 + 2.5 * clred_sim_uniform(&r)) * sigma_n / 10.0;
        pts[npts++] = (point){x, y, flux};
        profile lr, ln;
        profile_at(o, &pr, x, y, &lr);
        profile_at(o, &pn, x + o->shift_x, y + o->shift_y, &ln);
        add_point(e_ref, w, h, &lr, x, y, flux, cut);
        add_point(e_new, w, h, &ln, x + o->shift_x, y + o->shift_y, flux, cut);
    }
    clred_sim_rng_init(&r, o->seed, STREAM_GALAXIES, 0);
    for (size_t g = 0; g < ngal && st == CLRED_OK; g++) {
        galaxy *G = &gals[g];
        place(&r, w, h, 12.0, pts, npts, 12.0, &G->x, &G->y);
        G->scale = 1.5 + 2.5 * clred_sim_uniform(&r);
        G->q = 0.4 + 0.6 * clred_sim_uniform(&r);
        G->theta = PI * clred_sim_uniform(&r);
        G->flux = pow(10.0, 2.5 + 1.2 * clred_sim_uniform(&r)) * sigma_n; /* cores below saturation */
        pts[npts++] = (point){G->x, G->y, G->flux};
        galaxy Gn = *G;
        Gn.x += o->shift_x;
        Gn.y += o->shift_y;
        profile lr, ln;
        profile_at(o, &pr, G->x, G->y, &lr);
        profile_at(o, &pn, Gn.x, Gn.y, &ln);
        st = add_galaxy(e_ref, w, h, &lr, G, cut);
        if (st == CLRED_OK)
            st = add_galaxy(e_new, w, h, &ln, &Gn, cut);
    }
    /* Transients: the S/N is that of a PSF fit with the true profile in the
     * new image's background noise (sum P^2 over the stamp: the wings beyond
     * it, where P is under 1e-4 of its peak, add nothing that shows). */
    double sum_p2 = 0;
    for (int j = -pn.half; j <= pn.half; j++)
        for (int i = -pn.half; i <= pn.half; i++)
            sum_p2 += profile_pixel(&pn, i, j) * profile_pixel(&pn, i, j);
    clred_sim_rng_init(&r, o->seed, STREAM_TRANSIENTS, 0);
    for (size_t k = 0; k < ntr; k++) {
        clred_pair_transient *t = &out->transients[out->ntransients];
        double x, y;
        /* every third on a galaxy of its own, the others clear of everything placed */
        int on_gal = k % 3 == 1 && k / 3 < ngal;
        if (on_gal) {
            const galaxy *G = &gals[k / 3];
            double a = 2 * PI * clred_sim_uniform(&r), d = 0.5 * G->scale * clred_sim_uniform(&r);
            x = G->x + d * cos(a);
            y = G->y + d * sin(a);
        } else if (!place(&r, w, h, 10.0, pts, npts, 10.0, &x, &y)) {
            continue; /* the field is full: fewer transients than asked */
        }
        double snr = o->snr_min + (o->snr_max - o->snr_min) * clred_sim_uniform(&r);
        double flux = snr * sigma_n / sqrt(sum_p2);
        int fading = clred_sim_uniform(&r) < o->fading_fraction;
        pts[npts++] = (point){x, y, flux};
        profile lp;
        if (fading) {
            profile_at(o, &pr, x, y, &lp);
            add_point(e_ref, w, h, &lp, x, y, flux, cut);
        } else {
            profile_at(o, &pn, x + o->shift_x, y + o->shift_y, &lp);
            add_point(e_new, w, h, &lp, x + o->shift_x, y + o->shift_y, flux, cut);
        }
        *t = (clred_pair_transient){x + o->shift_x, y + o->shift_y, fading ? -flux : flux, snr, on_gal};
        out->ntransients++;
    }
    free(gals);

    clred_sim_rng_init(&r, o->seed, STREAM_NOISE_REF, 0);
    finish_image(&out->ref, e_ref, 1.0 / o->ref_depth, o->readnoise, o->saturation, &r);
    clred_sim_rng_init(&r, o->seed, STREAM_NOISE_NEW, 0);
    finish_image(&out->new_img, e_new, 1.0, o->readnoise, o->saturation, &r);

    /* Cosmic rays in the new image, flagged as a cosmic-ray step would: 1 to 4 pixels, away from the transients. */
    clred_sim_rng_init(&r, o->seed, STREAM_COSMICS, 0);
    for (int c = 0; c < o->ncosmics; c++) {
        double x, y;
        place(&r, w, h, 3.0, pts + nstars + ngal, out->ntransients, 8.0, &x, &y);
        long cx = lround(x), cy = lround(y);
        int len = 1 + (int)(4 * clred_sim_uniform(&r)), horiz = clred_sim_uniform(&r) < 0.5;
        for (int k = 0; k < len; k++) {
            long px = cx + (horiz ? k : 0), py = cy + (horiz ? 0 : k);
            if (px >= (long)w || py >= (long)h)
                continue;
            size_t i = (size_t)py * w + (size_t)px;
            out->new_img.sci[i] += (float)(2000.0 + 18000.0 * clred_sim_uniform(&r));
            out->new_img.mask[i] |= CLRED_MASK_COSMIC_RAY;
        }
        out->cosmic_xy[2 * c] = (double)cx;
        out->cosmic_xy[2 * c + 1] = (double)cy;
    }
    out->ncosmics = (size_t)o->ncosmics;
    /* NaN holes (HOLE x HOLE) in the reference, half of them on stars, where a
     * difference would show the star as a false source unless masked. */
    clred_sim_rng_init(&r, o->seed, STREAM_HOLES, 0);
    for (int k = 0; k < o->nholes; k++) {
        double x, y;
        if (k % 2 == 0 && nstars > (size_t)o->nsaturated) {
            const point *s = &pts[(size_t)o->nsaturated + (size_t)(clred_sim_uniform(&r) * (double)(nstars - (size_t)o->nsaturated))];
            x = s->x;
            y = s->y;
        } else {
            place(&r, w, h, 8.0, NULL, 0, 0, &x, &y);
        }
        long x0 = lround(x) - HOLE / 2, y0 = lround(y) - HOLE / 2;
        for (long j = y0; j < y0 + HOLE; j++)
            for (long i = x0; i < x0 + HOLE; i++)
                if (i >= 0 && j >= 0 && i < (long)w && j < (long)h) {
                    size_t p = (size_t)j * w + (size_t)i;
                    out->ref.sci[p] = NAN;
                    out->ref.mask[p] |= CLRED_MASK_NO_DATA;
                }
        out->hole_xy[2 * k] = x;
        out->hole_xy[2 * k + 1] = y;
        double *box = &out->hole_box[4 * k];
        box[0] = (double)x0 - 0.5;
        box[1] = (double)y0 - 0.5;
        box[2] = (double)(x0 + HOLE) - 0.5;
        box[3] = (double)(y0 + HOLE) - 0.5;
    }
    out->nholes = (size_t)o->nholes;
    free(pts);
    return st;
}

clred_status clred_simulate_pair(const clred_pair_opts *opts, clred_pair *out)
{
    clred_pair_opts d = clred_pair_defaults();
    const clred_pair_opts *o = opts ? opts : &d;
    memset(out, 0, sizeof *out);
    CLRED_TRY(check_opts(o));
    size_t n = o->width * o->height;
    double *e_ref = malloc(n * sizeof *e_ref), *e_new = malloc(n * sizeof *e_new);
    clred_status st = e_ref && e_new ? build(o, out, e_ref, e_new)
                                     : clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu x %zu pair", o->width, o->height);
    free(e_ref);
    free(e_new);
    if (st != CLRED_OK)
        clred_pair_free(out);
    return st;
}

static clred_status write_truth(const char *path, const clred_pair *p)
{
    char tmp[PATH_MAX];
    FILE *f;
    CLRED_TRY(clred_atomic_open(path, 1, tmp, sizeof tmp, &f));
    fprintf(f, "x,y,flux,snr,on_galaxy\n");
    for (size_t i = 0; i < p->ntransients; i++) {
        const clred_pair_transient *t = &p->transients[i];
        fprintf(f, "%.4f,%.4f,%.3f,%.3f,%d\n", t->x, t->y, t->flux, t->snr, t->on_galaxy);
    }
    return clred_atomic_close(f, tmp, path);
}

clred_status clred_simulate_pair_write(const clred_pair_opts *opts, const char *outdir, int overwrite)
{
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST)
        return clred_fail(CLRED_ERR_IO, "%s: cannot create the directory (%s)", outdir, strerror(errno));
    static const char *const names[] = {"ref.fits", "new.fits", "ref_psf.fits", "new_psf.fits", "truth.csv"};
    char paths[5][PATH_MAX];
    for (int i = 0; i < 5; i++) {
        if ((size_t)snprintf(paths[i], sizeof paths[i], "%s/%s", outdir, names[i]) >= sizeof paths[i])
            return clred_fail(CLRED_ERR_USAGE, "%s: output path too long", outdir);
        CLRED_TRY(clred_output_check(paths[i], NULL, 0, overwrite));
    }
    clred_pair p;
    CLRED_TRY(clred_simulate_pair(opts, &p));
    clred_status st = clred_image_write(paths[0], &p.ref, overwrite);
    if (st == CLRED_OK)
        st = clred_image_write(paths[1], &p.new_img, overwrite);
    if (st == CLRED_OK)
        st = clred_psf_write(paths[2], &p.ref_psf, overwrite);
    if (st == CLRED_OK)
        st = clred_psf_write(paths[3], &p.new_psf, overwrite);
    if (st == CLRED_OK)
        st = write_truth(paths[4], &p);
    if (st != CLRED_OK)
        for (int i = 0; i < 5; i++)
            remove(paths[i]);
    clred_pair_free(&p);
    return st;
}
