/* Deterministic synthetic frames for the benchmarks: a CCD-like stack of raw
 * frames (bias + dark current + flat-fielded sky and stars + noise + cosmic
 * rays) with the matching masters, a pair of frames shifted by a known
 * sub-pixel offset and a single frame with cosmic rays. clred and the peers
 * read these same files. */
#include <errno.h>
#include <fitsio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

#define STAR_RADIUS 6
#define STAR_SIGMA 1.5
#define GAIN 1.0       /* e-/ADU */
#define READNOISE 5.0  /* e- */
#define SKY_RATE 3.0   /* e-/s/pixel */
#define DARK_RATE 0.05 /* e-/s/pixel */
#define SHIFT_X 3.3    /* the moving frame of the pair, relative to the reference */
#define SHIFT_Y -2.6

typedef struct { uint64_t s; } rng;

static double uniform(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (double)((r->s * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

static double normal(rng *r)
{
    double u1 = uniform(r), u2 = uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

typedef struct {
    double x, y, flux; /* flux in e- per second of exposure */
} star;

typedef struct {
    size_t size;
    double *bias, *dark, *flat, *sky; /* per pixel; dark and sky per second */
    star *stars;
    size_t nstars;
} scene;

static void scene_free(scene *s)
{
    free(s->bias);
    free(s->dark);
    free(s->flat);
    free(s->sky);
    free(s->stars);
}

static clred_status scene_make(scene *s, size_t size, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->size = size;
    size_t n = size * size;
    s->bias = malloc(n * sizeof *s->bias);
    s->dark = malloc(n * sizeof *s->dark);
    s->flat = malloc(n * sizeof *s->flat);
    s->sky = malloc(n * sizeof *s->sky);
    s->nstars = n / 4000 + 10;
    s->stars = malloc(s->nstars * sizeof *s->stars);
    if (!s->bias || !s->dark || !s->flat || !s->sky || !s->stars) {
        scene_free(s);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu x %zu scene", size, size);
    }
    rng r = {seed * 0x9E3779B97F4A7C15ULL + 1};
    double flat_sum = 0.0, c = 0.5 * (double)size;
    for (size_t y = 0; y < size; y++)
        for (size_t x = 0; x < size; x++) {
            size_t i = y * size + x;
            double dx = ((double)x - c) / c, dy = ((double)y - c) / c;
            s->bias[i] = 1000.0 + 3.0 * sin(0.05 * (double)x) + 2.0 * normal(&r);
            s->dark[i] = uniform(&r) < 0.001 ? 2.0 + 10.0 * uniform(&r) : DARK_RATE;
            s->flat[i] = (1.0 - 0.08 * (dx * dx + dy * dy)) * (1.0 + 0.01 * normal(&r));
            s->sky[i] = SKY_RATE * (1.0 + 0.2 * (double)x / (double)size);
            flat_sum += s->flat[i];
        }
    /* Normalised to a mean of one, so that dividing by it is the same whether
     * a tool normalises the flat again (ccdproc does) or not. */
    double mean = flat_sum / (double)n;
    for (size_t i = 0; i < n; i++)
        s->flat[i] /= mean;
    for (size_t k = 0; k < s->nstars; k++) {
        s->stars[k].x = uniform(&r) * (double)size;
        s->stars[k].y = uniform(&r) * (double)size;
        s->stars[k].flux = 20.0 * pow(10.0, 2.0 * uniform(&r)); /* 20 .. 2000 e-/s */
    }
    return CLRED_OK;
}

/* Adds the stars, shifted by (sx, sy), times t seconds into e (e- per pixel). */
static void add_stars(const scene *s, double *e, double t, double sx, double sy)
{
    const double norm = 1.0 / (6.283185307179586 * STAR_SIGMA * STAR_SIGMA);
    long size = (long)s->size;
    for (size_t k = 0; k < s->nstars; k++) {
        double cx = s->stars[k].x + sx, cy = s->stars[k].y + sy;
        long x0 = (long)floor(cx) - STAR_RADIUS, y0 = (long)floor(cy) - STAR_RADIUS;
        for (long y = y0; y <= y0 + 2 * STAR_RADIUS; y++) {
            if (y < 0 || y >= size)
                continue;
            for (long x = x0; x <= x0 + 2 * STAR_RADIUS; x++) {
                if (x < 0 || x >= size)
                    continue;
                double ddx = (double)x - cx, ddy = (double)y - cy;
                e[(size_t)y * s->size + (size_t)x] +=
                    t * s->stars[k].flux * norm * exp(-(ddx * ddx + ddy * ddy) / (2.0 * STAR_SIGMA * STAR_SIGMA));
            }
        }
    }
}

/* A fraction of the pixels hit by a cosmic ray of a few thousand e-. */
static void add_cosmics(double *e, size_t n, double fraction, rng *r)
{
    size_t count = (size_t)((double)n * fraction) + 1;
    for (size_t k = 0; k < count; k++) {
        size_t i = (size_t)(uniform(r) * (double)n);
        if (i >= n)
            i = n - 1;
        e[i] += 1000.0 + 4000.0 * uniform(r);
    }
}

static clred_status write_plane(const char *path, const double *v, size_t size, clred_header *h)
{
    clred_image img;
    CLRED_TRY(clred_image_alloc(&img, size, size, 0, 0));
    for (size_t i = 0; i < size * size; i++)
        img.sci[i] = (float)v[i];
    img.header = h;
    clred_status st = clred_image_write(path, &img, 1);
    img.header = NULL;
    clred_image_free(&img);
    return st;
}

/* A raw frame as a CCD's controller writes it: unsigned 16-bit integers
 * (BITPIX 16, BZERO 32768), for the calibration files-in benchmark. */
static clred_status write_u16(const char *path, const double *v, size_t size, const char *imagetyp, double exptime)
{
    uint16_t *a = malloc(size * size * sizeof *a);
    if (!a)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory writing %s", path);
    for (size_t i = 0; i < size * size; i++)
        a[i] = (uint16_t)(v[i] < 0 ? 0 : v[i] > 65535 ? 65535 : floor(v[i] + 0.5));
    char name[BENCH_PATH + 2];
    snprintf(name, sizeof name, "!%s", path);
    fitsfile *f = NULL;
    int status = 0;
    long naxes[2] = {(long)size, (long)size};
    double gain = GAIN, rn = READNOISE;
    fits_create_file(&f, name, &status);
    fits_create_img(f, USHORT_IMG, 2, naxes, &status);
    fits_write_key(f, TSTRING, "IMAGETYP", (void *)imagetyp, "synthetic benchmark frame", &status);
    fits_write_key(f, TDOUBLE, "EXPTIME", &exptime, "s", &status);
    fits_write_key(f, TDOUBLE, "GAIN", &gain, "e-/ADU", &status);
    fits_write_key(f, TDOUBLE, "RDNOISE", &rn, "e-", &status);
    fits_write_img(f, TUSHORT, 1, (LONGLONG)size * (LONGLONG)size, a, &status);
    int close_status = 0;
    if (f)
        fits_close_file(f, &close_status);
    free(a);
    if (status || close_status)
        return clred_fail(CLRED_ERR_IO, "%s: cfitsio error %d writing a 16-bit raw frame", path,
                          status ? status : close_status);
    return CLRED_OK;
}

static clred_status header_with(clred_header **h, const char *imagetyp, double exptime)
{
    *h = clred_header_new();
    if (!*h)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a header");
    CLRED_TRY(clred_header_set_string(*h, "IMAGETYP", imagetyp, "synthetic benchmark frame"));
    CLRED_TRY(clred_header_set_double(*h, "EXPTIME", exptime, "s"));
    CLRED_TRY(clred_header_set_double(*h, "GAIN", GAIN, "e-/ADU"));
    CLRED_TRY(clred_header_set_double(*h, "RDNOISE", READNOISE, "e-"));
    return CLRED_OK;
}

/* Raw frame i: what a CCD reads for sky and stars through the flat, plus dark
 * current, bias, shot and read noise and cosmic rays, in ADU. */
static void raw_frame(const scene *s, double t, double *e, rng *r)
{
    size_t n = s->size * s->size;
    for (size_t i = 0; i < n; i++)
        e[i] = s->sky[i] * t;
    add_stars(s, e, t, 0.0, 0.0);
    add_cosmics(e, n, 2e-4, r);
    for (size_t i = 0; i < n; i++) {
        double signal = e[i] * s->flat[i] + s->dark[i] * t;
        double sigma = sqrt(signal + READNOISE * READNOISE);
        e[i] = s->bias[i] + (signal + sigma * normal(r)) / GAIN;
    }
}

/* A calibrated-looking frame in e-: sky and stars, shifted by (sx, sy), with noise. */
static void sky_frame(const scene *s, double t, double sx, double sy, double cosmic_fraction, double *e, rng *r)
{
    size_t n = s->size * s->size;
    for (size_t i = 0; i < n; i++)
        e[i] = s->sky[i] * t;
    add_stars(s, e, t, sx, sy);
    if (cosmic_fraction > 0)
        add_cosmics(e, n, cosmic_fraction, r);
    for (size_t i = 0; i < n; i++)
        e[i] += sqrt(e[i] + READNOISE * READNOISE) * normal(r);
}

static clred_status make_dir(const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return clred_fail(CLRED_ERR_IO, "%s: cannot create the directory (%s)", dir, strerror(errno));
    return CLRED_OK;
}

static clred_status generate_all(const char *dir, const bench_gen_opts *o, const scene *s, double *e)
{
    char path[BENCH_PATH];
    clred_header *h = NULL;
    rng r = {o->seed * 0xD1B54A32D192ED03ULL + 7};
    clred_status st = CLRED_OK;

    for (size_t f = 0; f < o->depth && st == CLRED_OK; f++) {
        raw_frame(s, o->exptime, e, &r);
        snprintf(path, sizeof path, "%s/raw_%03zu.fits", dir, f);
        st = header_with(&h, "object", o->exptime);
        if (st == CLRED_OK)
            st = write_plane(path, e, o->size, h);
        clred_header_free(h);
        h = NULL;
        if (st == CLRED_OK && f < BENCH_RAW16_FRAMES) {
            snprintf(path, sizeof path, "%s/rawu16_%03zu.fits", dir, f);
            st = write_u16(path, e, o->size, "object", o->exptime);
        }
    }
    struct {
        const char *name, *type;
        const double *v;
    } masters[] = {{"bias.fits", "bias", s->bias}, {"dark.fits", "dark", s->dark}, {"flat.fits", "flat", s->flat}};
    for (size_t m = 0; m < 3 && st == CLRED_OK; m++) {
        bench_dir_path(dir, masters[m].name, path, sizeof path);
        /* The dark is per second (clred's convention), hence EXPTIME 1. */
        st = header_with(&h, masters[m].type, m == 0 ? 0.0 : 1.0);
        if (st == CLRED_OK)
            st = write_plane(path, masters[m].v, o->size, h);
        clred_header_free(h);
        h = NULL;
    }
    if (st == CLRED_OK) {
        sky_frame(s, o->exptime, 0.0, 0.0, 0.0, e, &r);
        bench_dir_path(dir, "pair_ref.fits", path, sizeof path);
        st = header_with(&h, "object", o->exptime);
        if (st == CLRED_OK)
            st = write_plane(path, e, o->size, h);
        clred_header_free(h);
    }
    if (st == CLRED_OK) {
        sky_frame(s, o->exptime, SHIFT_X, SHIFT_Y, 0.0, e, &r);
        bench_dir_path(dir, "pair_mov.fits", path, sizeof path);
        st = header_with(&h, "object", o->exptime);
        if (st == CLRED_OK)
            st = clred_header_set_double(h, "SHIFTX", SHIFT_X, "true x offset from pair_ref, pixels");
        if (st == CLRED_OK)
            st = clred_header_set_double(h, "SHIFTY", SHIFT_Y, "true y offset from pair_ref, pixels");
        if (st == CLRED_OK)
            st = write_plane(path, e, o->size, h);
        clred_header_free(h);
    }
    if (st == CLRED_OK) {
        sky_frame(s, o->exptime, 0.0, 0.0, 5e-4, e, &r);
        bench_dir_path(dir, "single.fits", path, sizeof path);
        st = header_with(&h, "object", o->exptime);
        if (st == CLRED_OK)
            st = write_plane(path, e, o->size, h);
        clred_header_free(h);
    }
    return st;
}

clred_status bench_generate(const char *dir, const bench_gen_opts *o)
{
    if (o->size < 16 || o->depth < 1)
        return clred_fail(CLRED_ERR_USAGE, "gen: size %zu and depth %zu: need size >= 16 and depth >= 1", o->size,
                          o->depth);
    CLRED_TRY(make_dir(dir));
    scene s;
    CLRED_TRY(scene_make(&s, o->size, o->seed));
    double *e = malloc(o->size * o->size * sizeof *e);
    if (!e) {
        scene_free(&s);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a %zu x %zu frame", o->size, o->size);
    }
    clred_status st = generate_all(dir, o, &s, e);
    free(e);
    scene_free(&s);
    return st;
}
