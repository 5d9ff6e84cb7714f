/* The night simulator's model (simulate_model.c), shared with simulate.c and
 * the simulator's tests; not part of the public API.
 *
 * Coordinates are 0-based with pixel centres at integers: pixel (i, j) covers
 * [i - 0.5, i + 0.5) x [j - 0.5, j + 0.5). Star positions are on the "field"
 * grid, which is the detector grid of an undithered frame; a frame dithered by
 * (dx, dy) sees a star at (x + dx, y + dy). */
#ifndef CLRED_SIMULATE_H
#define CLRED_SIMULATE_H

#include "internal.h"
#include "wcs_internal.h"

/* ---- deterministic random numbers: xoshiro256** seeded through splitmix64 */

typedef struct {
    uint64_t s[4];
    double spare; /* second Box-Muller value */
    int has_spare;
} clred_sim_rng;

/* A stream for (seed, tag, index): every part of the night draws from its own
 * stream, so e.g. adding science frames does not change the star field. */
void clred_sim_rng_init(clred_sim_rng *r, uint64_t seed, uint64_t tag, uint64_t index);
double clred_sim_uniform(clred_sim_rng *r); /* [0, 1) */
double clred_sim_normal(clred_sim_rng *r);  /* N(0, 1) */
/* Poisson deviate: exact (multiplication method) below mean 30, else the
 * normal approximation rounded to an integer, where its skew is < 0.2. */
double clred_sim_poisson(clred_sim_rng *r, double mean);

/* ---- the truth */

typedef enum { CLRED_SIM_BIAS = 0, CLRED_SIM_DARK, CLRED_SIM_FLAT, CLRED_SIM_SCIENCE, CLRED_SIM_EPOCH2 } clred_sim_kind;

#define CLRED_SIM_MOFFAT_BETA 3.0
#define CLRED_SIM_FLAT_EXPTIME 5.0

typedef struct {
    double x, y, flux; /* field position; total flux in e- per science exposure */
} clred_sim_star;

typedef struct {
    int x, y;
    double rate; /* e-/s */
} clred_sim_hot_pixel;

typedef struct {
    int new_source;    /* 1: a new source; 0: an existing star brightened */
    long star;         /* index of the brightened star, -1 for a new source */
    double x, y, flux; /* field position; added flux in e- per exposure */
} clred_sim_transient;

typedef struct {
    int x, y;
    double electrons; /* deposited charge */
} clred_sim_cr_pixel;

typedef struct {
    size_t first, count; /* its pixels in the frame's cr_pixels */
    int x0, y0, x1, y1;  /* bounding box, inclusive */
} clred_sim_cosmic_ray;

typedef struct {
    clred_sim_kind kind;
    int index;         /* within its kind, over all filters (it keys the frame's random streams) */
    int filter;        /* index into the truth's filters; 0 for bias and dark (which have FILTER NONE) */
    int number;        /* 1-based, within its kind and filter: the NNN of the file name */
    char name[48];     /* file name, e.g. "sci_003.fits", "sci_g_003.fits" */
    char date_obs[32]; /* ISO 8601 */
    double exptime;    /* s */
    int epoch;         /* 1 or 2 (science), 0 for calibrations */
    double dx, dy;     /* dither (science) */
    double fwhm;       /* seeing, px (science) */
    double sky;        /* mean sky, e-/s/pixel (science) */
    double sky_gx, sky_gy; /* sky gradient: fractional change across the full width / height */
    double lamp;       /* flat illumination, e- per pixel before the flat (flats) */
    clred_sim_cosmic_ray *crs;
    size_t ncrs;
    clred_sim_cr_pixel *cr_pixels;
    size_t ncr_pixels;
} clred_sim_frame;

typedef struct {
    clred_sim_opts opts;
    size_t width, height;
    double ceiling;        /* ADU: min(saturation, 65535) */
    double *bias;          /* noiseless bias, ADU */
    double *column_offset; /* per-column part of the bias, ADU */
    double *dark;          /* dark current, e-/s */
    double *flat;          /* nfilters flats of width * height, each normalised to mean 1: filter k's at
                              flat + k * width * height (clred_sim_flat_of) */
    int nfilters;
    char filter_names[CLRED_SIM_MAX_FILTERS][16];
    double sky_scale[CLRED_SIM_MAX_FILTERS];   /* sky of filter k = opts.sky * sky_scale[k] */
    double vignetting[CLRED_SIM_MAX_FILTERS];  /* fractional fall-off to the corners of filter k's flat */
    clred_sim_hot_pixel *hot;
    size_t nhot;
    clred_sim_star *stars;
    size_t nstars;
    size_t nsaturating;    /* stars 0 .. nsaturating-1 are made bright enough to saturate */
    clred_sim_transient *transients;
    size_t ntransients;
    clred_sim_frame *frames;     /* bias, dark, flat, science, epoch 2, in that order; within a kind by
                                    filter, long exposures before short ones */
    size_t nframes;
} clred_sim_truth;

/* Checks the options (a usage error names the bad one). */
clred_status clred_sim_check_opts(const clred_sim_opts *o);
/* Draws the whole truth of a night from o. Free with clred_sim_truth_free. */
clred_status clred_sim_truth_build(const clred_sim_opts *o, clred_sim_truth *t);
void clred_sim_truth_free(clred_sim_truth *t);

/* The flat field a frame sees (its filter's; filter 0's for bias and dark). */
const double *clred_sim_flat_of(const clred_sim_truth *t, const clred_sim_frame *f);
/* Splits opts->filters ("g,r,i"; NULL or "" = "R") into names; a usage error
 * names a bad list. */
clred_status clred_sim_parse_filters(const char *filters, char names[CLRED_SIM_MAX_FILTERS][16], int *n);

/* The noiseless charge of frame f, e- per pixel (width * height doubles):
 * flat * (lamp or sky + stars + transients) + dark * t + cosmic rays. */
void clred_sim_expected(const clred_sim_truth *t, size_t f, double *electrons);
/* The raw frame: Poisson(expected), read noise, gain, bias, rounded and
 * clipped to [0, ceiling]. expected is clred_sim_expected's output. */
void clred_sim_render(const clred_sim_truth *t, size_t f, const double *expected, uint16_t *adu);

/* ---- the sky (simulate_wcs.c): a TAN (+ SIP) WCS centred on (RA, Dec), the
 * field's centre at the frame's centre, the sky turned by ROTATION degrees;
 * magnitudes are -2.5 log10(e- per second) + ZEROPOINT. */
#define CLRED_SIM_RA 150.0
#define CLRED_SIM_DEC 2.2
#define CLRED_SIM_ROTATION 5.0
#define CLRED_SIM_ZEROPOINT 25.0

/* The field's WCS for a frame dithered by (dx, dy) (no inverse polynomials). */
void clred_sim_field_wcs(const clred_sim_truth *t, double dx, double dy, clred_tan_sip *s);
/* Frame f's WCS cards (with SIP's inverse) into h. */
clred_status clred_sim_frame_wcs(const clred_sim_truth *t, const clred_sim_frame *f, clred_header *h);
double clred_sim_magnitude(const clred_sim_truth *t, double flux);
/* stars.csv: id, ra, dec, mag, x, y (field grid), flux (e- per exposure). */
clred_status clred_sim_write_stars(const char *path, const clred_sim_truth *t);

/* Moffat (beta = CLRED_SIM_MOFFAT_BETA) surface brightness per unit flux at radius
 * r (px) for a given FWHM (px). */
double clred_sim_moffat(double r, double fwhm);

const char *clred_sim_kind_name(clred_sim_kind k);  /* "bias", "dark", "flat", "science", "epoch2" */
const char *clred_sim_imagetyp(clred_sim_kind k);   /* BIAS, DARK, FLAT, OBJECT */

#endif
