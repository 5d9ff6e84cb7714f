/* The night simulator's model: random streams, the detector (bias, dark, flat),
 * the star field, transients, per-frame conditions and cosmic rays, and the
 * rendering of a frame through the detector. Pure C, deterministic from the seed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "simulate.h"

#define PI 3.14159265358979323846

/* ------------------------------------------------------------ random */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void clred_sim_rng_init(clred_sim_rng *r, uint64_t seed, uint64_t tag, uint64_t index)
{
    uint64_t x = seed;
    uint64_t a = splitmix64(&x);
    x = a ^ (tag * 0xD1B54A32D192ED03ULL);
    uint64_t b = splitmix64(&x);
    x = b ^ (index * 0x8CB92BA72F3D8DD7ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0;
}

static uint64_t rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

static uint64_t xoshiro_next(clred_sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double clred_sim_uniform(clred_sim_rng *r) { return (double)(xoshiro_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static double uniform_in(clred_sim_rng *r, double lo, double hi) { return lo + (hi - lo) * clred_sim_uniform(r); }

double clred_sim_normal(clred_sim_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = clred_sim_uniform(r), u2 = clred_sim_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    double rad = sqrt(-2.0 * log(u1));
    r->spare = rad * sin(2.0 * PI * u2);
    r->has_spare = 1;
    return rad * cos(2.0 * PI * u2);
}

double clred_sim_poisson(clred_sim_rng *r, double mean)
{
    if (!(mean > 0))
        return 0;
    if (mean < 30) {
        double limit = exp(-mean), p = 1.0;
        int k = -1;
        do {
            k++;
            p *= clred_sim_uniform(r);
        } while (p > limit);
        return k;
    }
    double v = floor(mean + sqrt(mean) * clred_sim_normal(r) + 0.5);
    return v < 0 ? 0 : v;
}

/* Streams, one per part of the night. */
enum { TAG_DETECTOR = 1, TAG_STARS, TAG_TRANSIENTS, TAG_FILTER_FLAT, TAG_FRAME = 10, TAG_NOISE = 20 };

/* Per filter: the sky relative to the first filter's and the vignetting
 * depth of its flat (the first filter's is the single-filter night's 0.4). */
static const double filter_sky_scale[CLRED_SIM_MAX_FILTERS] = {1.0, 1.6, 0.7, 2.2, 1.3, 0.9, 1.9, 1.1};
static const double filter_vignetting[CLRED_SIM_MAX_FILTERS] = {0.40, 0.32, 0.46, 0.28, 0.36, 0.44, 0.30, 0.38};

/* -------------------------------------------------------------- names */

const char *clred_sim_kind_name(clred_sim_kind k)
{
    static const char *names[] = {"bias", "dark", "flat", "science", "epoch2"};
    return names[k];
}

const char *clred_sim_imagetyp(clred_sim_kind k)
{
    static const char *names[] = {"BIAS", "DARK", "FLAT", "OBJECT", "OBJECT"};
    return names[k];
}

static const char *file_prefix(clred_sim_kind k)
{
    static const char *names[] = {"bias", "dark", "flat", "sci", "epoch2"};
    return names[k];
}

/* --------------------------------------------------------------- PSF */

static double moffat_alpha(double fwhm) { return fwhm / (2.0 * sqrt(pow(2.0, 1.0 / CLRED_SIM_MOFFAT_BETA) - 1.0)); }

double clred_sim_moffat(double r, double fwhm)
{
    double a = moffat_alpha(fwhm);
    double q = 1.0 / (1.0 + r * r / (a * a));
    return (CLRED_SIM_MOFFAT_BETA - 1.0) / (PI * a * a) * q * q * q; /* beta = 3 */
}

/* ---------------------------------------------------------- options */

static int filter_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

clred_status clred_sim_parse_filters(const char *filters, char names[CLRED_SIM_MAX_FILTERS][16], int *n)
{
    *n = 0;
    if (!filters || !*filters)
        filters = "R";
    const char *p = filters;
    for (;;) {
        size_t len = 0;
        while (p[len] && p[len] != ',')
            len++;
        if (len == 0 || len > 15)
            return clred_fail(CLRED_ERR_USAGE, "simulate: filters '%s': each name must have 1 to 15 characters",
                              filters);
        for (size_t i = 0; i < len; i++)
            if (!filter_char_ok(p[i]))
                return clred_fail(CLRED_ERR_USAGE, "simulate: filters '%s': names may use letters, digits, '-' "
                                                   "and '.' only (they become file names)",
                                  filters);
        if (*n == CLRED_SIM_MAX_FILTERS)
            return clred_fail(CLRED_ERR_USAGE, "simulate: filters '%s': at most %d filters", filters,
                              CLRED_SIM_MAX_FILTERS);
        memcpy(names[*n], p, len);
        names[*n][len] = '\0';
        for (int k = 0; k < *n; k++)
            if (!strcmp(names[k], names[*n]))
                return clred_fail(CLRED_ERR_USAGE, "simulate: filters '%s': '%s' appears twice", filters, names[k]);
        (*n)++;
        if (!p[len])
            return CLRED_OK;
        p += len + 1;
    }
}

clred_status clred_sim_check_opts(const clred_sim_opts *o)
{
    if (!o)
        return clred_fail(CLRED_ERR_USAGE, "simulate: no options given");
    char names[CLRED_SIM_MAX_FILTERS][16];
    int nfilters;
    CLRED_TRY(clred_sim_parse_filters(o->filters, names, &nfilters));
    if (o->nshort < 0 || o->nscience + o->nshort > 999)
        return clred_fail(CLRED_ERR_USAGE, "simulate: nshort (%d) must be >= 0 and nscience + nshort <= 999",
                          o->nshort);
    if (!(o->pixel_scale >= 0) || o->pixel_scale > 3600 || !(o->sip >= 0) || o->sip > 50)
        return clred_fail(CLRED_ERR_USAGE, "simulate: pixel scale %g arcsec must be in [0, 3600] and SIP distortion %g px in [0, 50]",
                          o->pixel_scale, o->sip);
    if (!(o->short_exptime > 0))
        return clred_fail(CLRED_ERR_USAGE, "simulate: short exposure time must be > 0 (got %g)", o->short_exptime);
    if (o->width < 16 || o->height < 16 || o->width > 16384 || o->height > 16384)
        return clred_fail(CLRED_ERR_USAGE, "simulate: size %zux%zu is outside 16x16 .. 16384x16384", o->width,
                          o->height);
    if (o->nbias < 0 || o->ndark < 0 || o->nflat < 0 || o->nscience < 0 || o->nepoch2 < 0 || o->nbias > 999 ||
        o->ndark > 999 || o->nflat > 999 || o->nscience > 999 || o->nepoch2 > 999)
        return clred_fail(CLRED_ERR_USAGE, "simulate: frame counts must be 0 .. 999 (bias %d, dark %d, flat %d, "
                                           "science %d, epoch2 %d)",
                          o->nbias, o->ndark, o->nflat, o->nscience, o->nepoch2);
    if (!(o->gain > 0) || !(o->readnoise >= 0) || !(o->dark_current >= 0) || !(o->sky >= 0) ||
        !(o->cosmic_rate >= 0) || !(o->cosmic_rate < 1e-2))
        return clred_fail(CLRED_ERR_USAGE, "simulate: gain must be > 0 and read noise, dark current, sky >= 0, "
                                           "cosmic rate in [0, 0.01) (got %g, %g, %g, %g, %g)",
                          o->gain, o->readnoise, o->dark_current, o->sky, o->cosmic_rate);
    if (!(o->dark_exptime > 0) || !(o->science_exptime > 0))
        return clred_fail(CLRED_ERR_USAGE, "simulate: exposure times must be > 0 (dark %g, science %g)",
                          o->dark_exptime, o->science_exptime);
    if (!(o->bias_level >= 0) || !(o->saturation > o->bias_level + 1000) || !(o->saturation <= 65535))
        return clred_fail(CLRED_ERR_USAGE, "simulate: need 0 <= bias level (%g) and bias + 1000 < saturation (%g) "
                                           "<= 65535",
                          o->bias_level, o->saturation);
    double smaller = (double)(o->width < o->height ? o->width : o->height);
    if (!(o->dither >= 0) || o->dither > smaller / 8)
        return clred_fail(CLRED_ERR_USAGE, "simulate: dither %g px must be in [0, %g] (1/8 of the smaller side)",
                          o->dither, smaller / 8);
    if (o->nstars < 0 || o->nstars > 1000000 || o->ntransients < 0 || o->ntransients > 10000)
        return clred_fail(CLRED_ERR_USAGE, "simulate: nstars (%d) must be 0 .. 1000000 and ntransients (%d) "
                                           "0 .. 10000",
                          o->nstars, o->ntransients);
    return CLRED_OK;
}

/* ---------------------------------------------------------- detector */

static void make_bias(clred_sim_truth *t, clred_sim_rng *r)
{
    size_t w = t->width, h = t->height;
    /* Fixed per-column offsets (amplifier pattern) and a 1 ADU ramp up the rows. */
    for (size_t x = 0; x < w; x++)
        t->column_offset[x] = 1.5 * clred_sim_normal(r);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
            t->bias[y * w + x] = t->opts.bias_level + t->column_offset[x] + ((double)y / (double)h - 0.5);
}

static clred_status make_dark(clred_sim_truth *t, clred_sim_rng *r)
{
    size_t n = t->width * t->height;
    for (size_t i = 0; i < n; i++)
        t->dark[i] = t->opts.dark_current;
    size_t nhot = (size_t)(5e-4 * (double)n);
    if (nhot < 3)
        nhot = 3;
    t->hot = calloc(nhot, sizeof *t->hot);
    if (!t->hot)
        return clred_fail(CLRED_ERR_MEMORY, "simulate: cannot allocate %zu hot pixels", nhot);
    for (size_t k = 0; k < nhot; k++) {
        size_t i;
        do
            i = (size_t)(clred_sim_uniform(r) * (double)n);
        while (t->dark[i] != t->opts.dark_current);
        /* 1 to 50 e-/s, log-uniform: warm to hot. */
        double rate = pow(10.0, uniform_in(r, 0.0, 1.7));
        t->dark[i] = rate;
        t->hot[k] = (clred_sim_hot_pixel){(int)(i % t->width), (int)(i / t->width), rate};
    }
    t->nhot = nhot;
    return CLRED_OK;
}

/* Filter k's flat (into t->flat + k * w * h): vignetting of depth
 * t->vignetting[k], dust donuts, a tilt (tx, ty: fractional change across the
 * frame; zero for the first filter) and the 1% pixel response. */
static void make_flat(clred_sim_truth *t, clred_sim_rng *r, int k, double tx, double ty)
{
    size_t w = t->width, h = t->height;
    double *flat = t->flat + (size_t)k * w * h, depth_v = t->vignetting[k];
    double cx = 0.5 * (double)(w - 1), cy = 0.5 * (double)(h - 1);
    double rc2 = cx * cx + cy * cy;
    double smaller = (double)(w < h ? w : h);
    int ndust = smaller >= 64 ? 2 : 1;
    double dx[2], dy[2], dr[2], dw[2], depth[2];
    for (int d = 0; d < ndust; d++) {
        dr[d] = fmax(3.0, uniform_in(r, 0.03, 0.06) * smaller);
        dw[d] = fmax(1.0, 0.35 * dr[d]);
        dx[d] = uniform_in(r, 2 * dr[d], (double)w - 2 * dr[d]);
        dy[d] = uniform_in(r, 2 * dr[d], (double)h - 2 * dr[d]);
        depth[d] = uniform_in(r, 0.05, 0.12);
    }
    double sum = 0;
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++) {
            double rx = (double)x - cx, ry = (double)y - cy;
            /* Vignetting: quadratic fall-off to 1 - depth_v (60% for the first filter) in the corners. */
            double v = 1.0 - depth_v * (rx * rx + ry * ry) / rc2;
            if (k > 0)
                v *= 1.0 + tx * rx / (double)w + ty * ry / (double)h;
            for (int d = 0; d < ndust; d++) {
                double ddx = (double)x - dx[d], ddy = (double)y - dy[d];
                double rd = sqrt(ddx * ddx + ddy * ddy), u = (rd - dr[d]) / dw[d];
                /* An out-of-focus dust grain: a dark ring around a lighter centre. */
                v *= 1.0 - depth[d] * exp(-0.5 * u * u) - 0.3 * depth[d] / (1.0 + exp(u * 3.0));
            }
            v *= 1.0 + 0.01 * clred_sim_normal(r); /* pixel-to-pixel sensitivity */
            flat[y * w + x] = v;
            sum += v;
        }
    double mean = sum / (double)(w * h);
    for (size_t i = 0; i < w * h; i++)
        flat[i] /= mean;
}

/* ---------------------------------------------------------- the field */

/* Flux (e- per science exposure) at which the peak pixel of a star saturates
 * in the worst seeing (4 px) on the least sensitive pixel: above it, a star
 * saturates in every frame. */
static double saturating_flux(const clred_sim_truth *t)
{
    /* The first filter's flat only, so that its frames are the single-filter
     * night's; the 1.5x margin of the saturating stars covers the other
     * filters' deeper vignetting (corners at 54% instead of 60%). */
    double fmin = 1e300;
    for (size_t i = 0; i < t->width * t->height; i++)
        fmin = fmin < t->flat[i] ? fmin : t->flat[i];
    double room_e = (t->ceiling - t->opts.bias_level) * t->opts.gain;
    return room_e / (clred_sim_moffat(0.0, 4.0) * fmin);
}

static clred_status make_stars(clred_sim_truth *t, clred_sim_rng *r)
{
    size_t n = (size_t)t->opts.nstars;
    t->nstars = n;
    if (!n)
        return CLRED_OK;
    t->stars = calloc(n, sizeof *t->stars);
    if (!t->stars)
        return clred_fail(CLRED_ERR_MEMORY, "simulate: cannot allocate %zu stars", n);
    double w = (double)t->width, h = (double)t->height, m = t->opts.dither + 6.0;
    double fsat = saturating_flux(t);
    /* A few stars always saturate, well inside every frame, so that every
     * night exercises saturation. */
    size_t nsat = n / 100 > 0 ? n / 100 : 1;
    double inner = t->opts.dither + 12.0;
    /* N(>F) ~ F^-0.5 from 1000 e- to twice the saturating flux. */
    double a = 0.5, lo = pow(1000.0, -a), hi = pow(2.0 * fsat, -a);
    for (size_t i = 0; i < n; i++) {
        clred_sim_star *s = &t->stars[i];
        if (i < nsat) {
            s->x = uniform_in(r, inner, w - 1 - inner);
            s->y = uniform_in(r, inner, h - 1 - inner);
            s->flux = fsat * uniform_in(r, 1.5, 4.0);
        } else {
            s->x = uniform_in(r, -m, w - 1 + m);
            s->y = uniform_in(r, -m, h - 1 + m);
            s->flux = pow(lo - clred_sim_uniform(r) * (lo - hi), -1.0 / a);
        }
    }
    t->nsaturating = nsat;
    return CLRED_OK;
}

static int clear_of_stars(const clred_sim_truth *t, double x, double y, double radius)
{
    for (size_t i = 0; i < t->nstars; i++) {
        double dx = t->stars[i].x - x, dy = t->stars[i].y - y;
        if (t->stars[i].flux > 2000 && dx * dx + dy * dy < radius * radius)
            return 0;
    }
    return 1;
}

static clred_status make_transients(clred_sim_truth *t, clred_sim_rng *r)
{
    size_t n = (size_t)t->opts.ntransients;
    t->ntransients = n;
    if (!n)
        return CLRED_OK;
    t->transients = calloc(n, sizeof *t->transients);
    if (!t->transients)
        return clred_fail(CLRED_ERR_MEMORY, "simulate: cannot allocate %zu transients", n);
    double w = (double)t->width, h = (double)t->height, m = t->opts.dither + 8.0;
    double fsat = saturating_flux(t);
    double flux_max = fmin(3e5, 0.25 * fsat);
    for (size_t k = 0; k < n; k++) {
        clred_sim_transient *tr = &t->transients[k];
        long star = -1;
        if (k % 2 == 1) {
            /* Brighten an existing, unsaturated, interior star. */
            for (int tries = 0; tries < 200 && star < 0 && t->nstars > t->nsaturating; tries++) {
                size_t i = t->nsaturating + (size_t)(clred_sim_uniform(r) * (double)(t->nstars - t->nsaturating));
                const clred_sim_star *s = &t->stars[i];
                if (s->flux > 5e3 && s->flux < 0.1 * fsat && s->x > m && s->x < w - 1 - m && s->y > m &&
                    s->y < h - 1 - m)
                    star = (long)i;
            }
        }
        if (star >= 0) {
            const clred_sim_star *s = &t->stars[star];
            *tr = (clred_sim_transient){0, star, s->x, s->y, fmax(2e4, s->flux * uniform_in(r, 1.0, 3.0))};
            continue;
        }
        double x = 0, y = 0;
        for (int tries = 0; tries < 100; tries++) {
            x = uniform_in(r, m, w - 1 - m);
            y = uniform_in(r, m, h - 1 - m);
            if (clear_of_stars(t, x, y, 10.0))
                break;
        }
        *tr = (clred_sim_transient){1, -1, x, y, uniform_in(r, 2e4, flux_max > 2e4 ? flux_max : 2e4)};
    }
    return CLRED_OK;
}

/* ------------------------------------------------------- cosmic rays */

typedef struct {
    clred_sim_cr_pixel *pix;
    size_t n, cap;
} pixel_list;

static int deposit(pixel_list *l, const clred_sim_truth *t, double fx, double fy, double e)
{
    long x = lround(fx), y = lround(fy);
    if (x < 0 || y < 0 || x >= (long)t->width || y >= (long)t->height || !(e > 0))
        return 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->pix[i].x == x && l->pix[i].y == y) {
            l->pix[i].electrons += e;
            return 0;
        }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        clred_sim_cr_pixel *p = realloc(l->pix, cap * sizeof *p);
        if (!p)
            return -1;
        l->pix = p;
        l->cap = cap;
    }
    l->pix[l->n++] = (clred_sim_cr_pixel){(int)x, (int)y, e};
    return 0;
}

/* Tracks (oblique muons: a straight line of charge) and blobs (a spot with a
 * few lit neighbours), with charge well above any sky. */
static int one_cosmic_ray(pixel_list *l, const clred_sim_truth *t, clred_sim_rng *r)
{
    double x = uniform_in(r, -0.5, (double)t->width - 0.5), y = uniform_in(r, -0.5, (double)t->height - 0.5);
    int err = 0;
    if (clred_sim_uniform(r) < 0.5) {
        double len = uniform_in(r, 2.0, 12.0), ang = uniform_in(r, 0.0, PI);
        double dedx = uniform_in(r, 400.0, 1600.0), step = 0.2;
        for (double s = 0; s <= len && !err; s += step)
            err = deposit(l, t, x + s * cos(ang), y + s * sin(ang), dedx * step * uniform_in(r, 0.5, 1.5));
    } else {
        double e0 = uniform_in(r, 1500.0, 15000.0);
        err = deposit(l, t, x, y, e0);
        static const int nb[4][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}};
        for (int k = 0; k < 4 && !err; k++)
            if (clred_sim_uniform(r) < 0.6)
                err = deposit(l, t, round(x) + nb[k][0], round(y) + nb[k][1], e0 * uniform_in(r, 0.1, 0.4));
    }
    return err;
}

static clred_status make_cosmic_rays(const clred_sim_truth *t, clred_sim_frame *f, clred_sim_rng *r)
{
    double mean = t->opts.cosmic_rate * (double)(t->width * t->height) * f->exptime;
    size_t n = (size_t)clred_sim_poisson(r, mean);
    if (!n)
        return CLRED_OK;
    f->crs = calloc(n, sizeof *f->crs);
    pixel_list all = {0};
    if (!f->crs)
        return clred_fail(CLRED_ERR_MEMORY, "simulate: cannot allocate %zu cosmic rays", n);
    size_t kept = 0;
    for (size_t k = 0; k < n; k++) {
        pixel_list one = {0};
        int err = one_cosmic_ray(&one, t, r);
        while (!err && all.n + one.n > all.cap) {
            size_t cap = all.cap ? 2 * all.cap : 256;
            clred_sim_cr_pixel *p = realloc(all.pix, cap * sizeof *p);
            if (!p)
                err = -1;
            else {
                all.pix = p;
                all.cap = cap;
            }
        }
        if (err) {
            free(one.pix);
            free(all.pix);
            return clred_fail(CLRED_ERR_MEMORY, "simulate: out of memory for cosmic rays of %s", f->name);
        }
        if (!one.n)
            continue;
        clred_sim_cosmic_ray *cr = &f->crs[kept++];
        cr->first = all.n;
        cr->count = one.n;
        cr->x0 = cr->x1 = one.pix[0].x;
        cr->y0 = cr->y1 = one.pix[0].y;
        for (size_t i = 0; i < one.n; i++) {
            const clred_sim_cr_pixel *p = &one.pix[i];
            cr->x0 = p->x < cr->x0 ? p->x : cr->x0;
            cr->x1 = p->x > cr->x1 ? p->x : cr->x1;
            cr->y0 = p->y < cr->y0 ? p->y : cr->y0;
            cr->y1 = p->y > cr->y1 ? p->y : cr->y1;
            all.pix[all.n++] = *p;
        }
        free(one.pix);
    }
    f->ncrs = kept;
    f->cr_pixels = all.pix;
    f->ncr_pixels = all.n;
    return CLRED_OK;
}

/* ------------------------------------------------------------ frames */

/* "2026-03-14T18:00:00" plus seconds. */
static void iso_date(char *out, size_t size, int day_offset, double seconds)
{
    struct tm base = {0};
    base.tm_year = 2026 - 1900;
    base.tm_mon = 2;
    base.tm_mday = 14 + day_offset;
    base.tm_hour = 18;
    time_t t0 = timegm(&base) + (time_t)seconds;
    struct tm tm;
    gmtime_r(&t0, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
}

/* One frame: kind, filter, its index within the kind (its random streams),
 * its number within kind and filter (the file name), exposure and start time
 * (seconds after 18:00 of the night's day). */
typedef struct {
    clred_sim_kind kind;
    int filter, index, number;
    double exptime, start;
} frame_plan;

static clred_status make_frame(clred_sim_truth *t, clred_sim_frame *f, const frame_plan *p)
{
    const clred_sim_opts *o = &t->opts;
    clred_sim_rng r;
    clred_sim_rng_init(&r, o->seed, TAG_FRAME + (uint64_t)p->kind, (uint64_t)p->index);
    f->kind = p->kind;
    f->index = p->index;
    f->filter = p->filter;
    f->number = p->number;
    f->exptime = p->exptime;
    int by_filter = t->nfilters > 1 && p->kind != CLRED_SIM_BIAS && p->kind != CLRED_SIM_DARK;
    if (by_filter)
        snprintf(f->name, sizeof f->name, "%s_%s_%03d.fits", file_prefix(p->kind), t->filter_names[p->filter],
                 p->number);
    else
        snprintf(f->name, sizeof f->name, "%s_%03d.fits", file_prefix(p->kind), p->number);
    if (p->kind == CLRED_SIM_FLAT)
        f->lamp = 22000.0 * o->gain * uniform_in(&r, 0.97, 1.03);
    if (p->kind == CLRED_SIM_SCIENCE || p->kind == CLRED_SIM_EPOCH2) {
        f->epoch = p->kind == CLRED_SIM_SCIENCE ? 1 : 2;
        f->dx = uniform_in(&r, -o->dither, o->dither);
        f->dy = uniform_in(&r, -o->dither, o->dither);
        f->fwhm = uniform_in(&r, 2.5, 4.0);
        f->sky = o->sky * t->sky_scale[p->filter] * uniform_in(&r, 0.95, 1.10);
        /* Moonlight or twilight: a few percent across the frame. */
        f->sky_gx = uniform_in(&r, -0.04, 0.04);
        f->sky_gy = uniform_in(&r, -0.04, 0.04);
    }
    iso_date(f->date_obs, sizeof f->date_obs, p->kind == CLRED_SIM_EPOCH2 ? 30 : 0, p->start);
    if (f->exptime > 0)
        CLRED_TRY(make_cosmic_rays(t, f, &r));
    return CLRED_OK;
}

/* The night's schedule: biases, darks, then each filter's flats, then each
 * filter's science frames (long, then short), and the same on the second
 * epoch's night. With one filter and no short exposures it is the
 * single-filter night of earlier versions, frame for frame. */
static clred_status make_frames(clred_sim_truth *t)
{
    const clred_sim_opts *o = &t->opts;
    int nf = t->nfilters;
    size_t n = (size_t)o->nbias + (size_t)o->ndark +
               (size_t)nf * ((size_t)o->nflat + (size_t)o->nscience + (size_t)o->nshort + (size_t)o->nepoch2);
    t->frames = calloc(n ? n : 1, sizeof *t->frames);
    if (!t->frames)
        return clred_fail(CLRED_ERR_MEMORY, "simulate: cannot allocate %zu frames", n);
    t->nframes = n;
    size_t f = 0;
    frame_plan p;
    for (int i = 0; i < o->nbias; i++) {
        p = (frame_plan){CLRED_SIM_BIAS, 0, i, i + 1, 0.0, i * 20.0};
        CLRED_TRY(make_frame(t, &t->frames[f++], &p));
    }
    for (int i = 0; i < o->ndark; i++) {
        p = (frame_plan){CLRED_SIM_DARK, 0, i, i + 1, o->dark_exptime, 600 + i * (o->dark_exptime + 20)};
        CLRED_TRY(make_frame(t, &t->frames[f++], &p));
    }
    double flat_start = 600 + o->ndark * (o->dark_exptime + 20), flat_cadence = CLRED_SIM_FLAT_EXPTIME + 20;
    for (int k = 0, index = 0; k < nf; k++)
        for (int i = 0; i < o->nflat; i++, index++) {
            p = (frame_plan){CLRED_SIM_FLAT, k, index, i + 1, CLRED_SIM_FLAT_EXPTIME,
                             flat_start + index * flat_cadence};
            CLRED_TRY(make_frame(t, &t->frames[f++], &p));
        }
    for (int kind = CLRED_SIM_SCIENCE; kind <= CLRED_SIM_EPOCH2; kind++) {
        int nlong = kind == CLRED_SIM_SCIENCE ? o->nscience : o->nepoch2;
        int nshort = kind == CLRED_SIM_SCIENCE ? o->nshort : 0;
        double clock = 3 * 3600.0;
        for (int k = 0, index = 0; k < nf; k++)
            for (int i = 0; i < nlong + nshort; i++, index++) {
                double exptime = i < nlong ? o->science_exptime : o->short_exptime;
                p = (frame_plan){(clred_sim_kind)kind, k, index, i + 1, exptime, clock};
                CLRED_TRY(make_frame(t, &t->frames[f++], &p));
                clock += exptime + 30;
            }
    }
    return CLRED_OK;
}

/* ------------------------------------------------------------- truth */

void clred_sim_truth_free(clred_sim_truth *t)
{
    if (!t)
        return;
    free(t->bias);
    free(t->column_offset);
    free(t->dark);
    free(t->flat);
    free(t->hot);
    free(t->stars);
    free(t->transients);
    for (size_t i = 0; i < t->nframes; i++) {
        free(t->frames[i].crs);
        free(t->frames[i].cr_pixels);
    }
    free(t->frames);
    memset(t, 0, sizeof *t);
}

clred_status clred_sim_truth_build(const clred_sim_opts *o, clred_sim_truth *t)
{
    memset(t, 0, sizeof *t);
    CLRED_TRY(clred_sim_check_opts(o));
    t->opts = *o;
    t->width = o->width;
    t->height = o->height;
    t->ceiling = floor(o->saturation < 65535 ? o->saturation : 65535);
    CLRED_TRY(clred_sim_parse_filters(o->filters, t->filter_names, &t->nfilters));
    for (int k = 0; k < t->nfilters; k++) {
        t->sky_scale[k] = filter_sky_scale[k];
        t->vignetting[k] = filter_vignetting[k];
    }
    size_t n = t->width * t->height;
    t->bias = malloc(n * sizeof *t->bias);
    t->column_offset = malloc(t->width * sizeof *t->column_offset);
    t->dark = malloc(n * sizeof *t->dark);
    t->flat = malloc((size_t)t->nfilters * n * sizeof *t->flat);
    if (!t->bias || !t->column_offset || !t->dark || !t->flat) {
        clred_sim_truth_free(t);
        return clred_fail(CLRED_ERR_MEMORY, "simulate: cannot allocate the %zux%zu detector model", t->width,
                          t->height);
    }
    clred_sim_rng r;
    clred_sim_rng_init(&r, o->seed, TAG_DETECTOR, 0);
    make_bias(t, &r);
    make_flat(t, &r, 0, 0.0, 0.0);
    clred_status s = make_dark(t, &r);
    /* Further filters' flats from their own streams, after the detector's, so
     * the first filter's night is the single-filter one. */
    for (int k = 1; k < t->nfilters && s == CLRED_OK; k++) {
        clred_sim_rng fr;
        clred_sim_rng_init(&fr, o->seed, TAG_FILTER_FLAT, (uint64_t)k);
        double tx = uniform_in(&fr, -0.06, 0.06), ty = uniform_in(&fr, -0.06, 0.06);
        make_flat(t, &fr, k, tx, ty);
    }
    if (s == CLRED_OK) {
        clred_sim_rng_init(&r, o->seed, TAG_STARS, 0);
        s = make_stars(t, &r);
    }
    if (s == CLRED_OK) {
        clred_sim_rng_init(&r, o->seed, TAG_TRANSIENTS, 0);
        s = make_transients(t, &r);
    }
    if (s == CLRED_OK)
        s = make_frames(t);
    if (s != CLRED_OK)
        clred_sim_truth_free(t);
    return s;
}

/* ---------------------------------------------------------- rendering */

/* Adds a Moffat star of total flux (e-) at (x, y) into img, integrating each
 * pixel by sub-sampling where the profile is steep. Pixels where the star
 * adds less than 0.2 e- are left out: that loses < 0.1% of the flux. */
static void add_star(double *img, size_t w, size_t h, double x, double y, double flux, double fwhm)
{
    if (!(flux > 0))
        return;
    double a = moffat_alpha(fwhm);
    double peak = flux * clred_sim_moffat(0.0, fwhm);
    double radius = a * sqrt(fmax(0.0, cbrt(peak / 0.2) - 1.0));
    radius = fmax(radius, 3.0 * fwhm);
    long x0 = (long)floor(x - radius), x1 = (long)ceil(x + radius);
    long y0 = (long)floor(y - radius), y1 = (long)ceil(y + radius);
    if (x1 < 0 || y1 < 0 || x0 >= (long)w || y0 >= (long)h)
        return;
    x0 = x0 < 0 ? 0 : x0;
    y0 = y0 < 0 ? 0 : y0;
    x1 = x1 >= (long)w ? (long)w - 1 : x1;
    y1 = y1 >= (long)h ? (long)h - 1 : y1;
    double norm = flux * (CLRED_SIM_MOFFAT_BETA - 1.0) / (PI * a * a), inv_a2 = 1.0 / (a * a);
    for (long j = y0; j <= y1; j++)
        for (long i = x0; i <= x1; i++) {
            double ddx = (double)i - x, ddy = (double)j - y;
            double d = sqrt(ddx * ddx + ddy * ddy);
            if (d > radius + 1)
                continue;
            int ns = d < 2 * fwhm ? 7 : d < 4 * fwhm ? 3 : 1;
            double sum = 0;
            for (int sy = 0; sy < ns; sy++) {
                double py = ddy + ((sy + 0.5) / ns - 0.5);
                for (int sx = 0; sx < ns; sx++) {
                    double px = ddx + ((sx + 0.5) / ns - 0.5);
                    double q = 1.0 / (1.0 + (px * px + py * py) * inv_a2);
                    sum += q * q * q;
                }
            }
            img[(size_t)j * w + (size_t)i] += norm * sum / (ns * ns);
        }
}

static void add_sky(double *img, const clred_sim_truth *t, const clred_sim_frame *f)
{
    size_t w = t->width, h = t->height;
    double level = f->sky * f->exptime;
    double cx = 0.5 * (double)(w - 1), cy = 0.5 * (double)(h - 1);
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
            img[y * w + x] += level * (1.0 + f->sky_gx * ((double)x - cx) / (double)w +
                                       f->sky_gy * ((double)y - cy) / (double)h);
}

const double *clred_sim_flat_of(const clred_sim_truth *t, const clred_sim_frame *f)
{
    return t->flat + (size_t)f->filter * t->width * t->height;
}

void clred_sim_expected(const clred_sim_truth *t, size_t fi, double *e)
{
    const clred_sim_frame *f = &t->frames[fi];
    const double *flat = clred_sim_flat_of(t, f);
    size_t w = t->width, h = t->height, n = w * h;
    for (size_t i = 0; i < n; i++)
        e[i] = f->kind == CLRED_SIM_FLAT ? f->lamp : 0.0;
    if (f->kind == CLRED_SIM_SCIENCE || f->kind == CLRED_SIM_EPOCH2) {
        add_sky(e, t, f);
        double scale = f->exptime / t->opts.science_exptime;
        for (size_t s = 0; s < t->nstars; s++)
            add_star(e, w, h, t->stars[s].x + f->dx, t->stars[s].y + f->dy, t->stars[s].flux * scale, f->fwhm);
        if (f->kind == CLRED_SIM_EPOCH2)
            for (size_t k = 0; k < t->ntransients; k++) {
                const clred_sim_transient *tr = &t->transients[k];
                add_star(e, w, h, tr->x + f->dx, tr->y + f->dy, tr->flux * scale, f->fwhm);
            }
    }
    for (size_t i = 0; i < n; i++)
        e[i] = e[i] * flat[i] + t->dark[i] * f->exptime;
    /* Cosmic rays deposit charge in the silicon: no flat field applies. */
    for (size_t i = 0; i < f->ncr_pixels; i++) {
        const clred_sim_cr_pixel *p = &f->cr_pixels[i];
        e[(size_t)p->y * w + (size_t)p->x] += p->electrons;
    }
}

void clred_sim_render(const clred_sim_truth *t, size_t fi, const double *e, uint16_t *adu)
{
    const clred_sim_frame *f = &t->frames[fi];
    clred_sim_rng r;
    clred_sim_rng_init(&r, t->opts.seed, TAG_NOISE + (uint64_t)f->kind, (uint64_t)f->index);
    double g = t->opts.gain, rn = t->opts.readnoise;
    size_t n = t->width * t->height;
    for (size_t i = 0; i < n; i++) {
        double charge = clred_sim_poisson(&r, e[i]) + rn * clred_sim_normal(&r);
        double v = floor(t->bias[i] + charge / g + 0.5);
        adu[i] = (uint16_t)(v < 0 ? 0 : v > t->ceiling ? t->ceiling : v);
    }
}
