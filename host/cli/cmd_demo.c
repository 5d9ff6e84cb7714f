/* clred demo: simulates a night, reduces it with the night recipe (clred run:
 * master bias, dark and flat, calibration) and a sigma-clipped stack, and compares what it
 * recovered with the simulator's truth, each number against a tolerance
 * derived from counting statistics. Exit 0 only if every check passes. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "cli.h"

#define CMD "demo"

static void help(void)
{
    printf("usage: clred demo [--dir DIR] [--seed N] [--size WxH] [--device D] [--json] [--keep]\n\n"
           "Simulates a raw night (clred simulate), reduces it with the night recipe (clred run,\n"
           "without cosmic-ray removal and background subtraction; products in DIR/reduced) and\n"
           "compares the result with the\n"
           "simulation's truth: master bias against the true bias (RMS against readnoise/sqrt(N)),\n"
           "the dark current and hot pixels from the master dark, the master flat against the\n"
           "true flat (RMS against the photon noise of the flats), saturation flags after\n"
           "calibration, the science frames' shifts by phase correlation against the true\n"
           "dithers, and a sigma-clipped stack of the science frames: its sky noise against\n"
           "the single frames' over sqrt(N), and the cosmic rays it rejected. The stack is left\n"
           "unaligned so that its pixels map one to one onto the frames' truth; only sky pixels\n"
           "are measured on it (clred combine --align stacks aligned frames).\n\n"
           "options:\n"
           "  --dir DIR      simulate into DIR (kept); default a temporary directory, removed\n"
           "                 at the end unless --keep\n"
           "  --overwrite    replace an earlier simulation in a non-empty DIR\n"
           "  --seed N       simulation seed [1]\n"
           "  --size WxH     frame size [512x512]\n"
           "  --device D     OpenCL device index or name (default: CLRED_DEVICE, else first GPU)\n"
           "  --json         print the checks as JSON on stdout\n"
           "  --keep         keep the temporary directory and say where it is\n\n"
           "Exit status: 0 every recovered number is within its tolerance, 1 one is not (or an\n"
           "input could not be read), 2 usage, 3 device failure.\n\n"
           "example:\n"
           "  clred demo --size 256x256 --seed 3 --json\n");
}

/* ------------------------------------------------------------- checks */

typedef struct {
    const char *name, *unit, *basis;
    double value, expected, lo, hi;
    int pass;
} demo_check;

typedef struct {
    demo_check items[16];
    size_t n;
} demo_report;

static void add_check(demo_report *r, const char *name, const char *unit, double value, double expected, double lo,
                      double hi, const char *basis)
{
    if (r->n >= sizeof r->items / sizeof *r->items)
        return;
    r->items[r->n++] = (demo_check){name, unit, basis, value, expected, lo, hi, value >= lo && value <= hi};
}

/* ------------------------------------------------------------- truth */

/* dir/name into out (4096 bytes); 0 if it does not fit. */
static int join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, 4096, "%s/%s", dir, name);
    return n > 0 && n < 4096;
}

typedef struct {
    char file[64];
    int kind; /* 0 bias, 1 dark, 2 flat, 3 science, 4 epoch 2 */
    double dx, dy, fwhm, lamp, exptime;
    size_t ncr;
    int *cr_xy;     /* x, y pairs */
    double *cr_e;   /* deposited e- */
} demo_frame;

typedef struct {
    size_t width, height;
    double gain, readnoise, ceiling, dark_current, dark_exptime;
    int nbias, ndark, nflat, nscience;
    double *stars; /* x, y, flux */
    size_t nstars;
    int *hot; /* x, y */
    size_t nhot;
    demo_frame *frames;
    size_t nframes;
    clred_image bias, dark, flat; /* truth images */
} demo_truth;

static void truth_free(demo_truth *t)
{
    for (size_t i = 0; i < t->nframes; i++) {
        free(t->frames[i].cr_xy);
        free(t->frames[i].cr_e);
    }
    free(t->frames);
    free(t->stars);
    free(t->hot);
    clred_image_free(&t->bias);
    clred_image_free(&t->dark);
    clred_image_free(&t->flat);
    memset(t, 0, sizeof *t);
}

static int kind_code(const char *k)
{
    static const char *names[] = {"bias", "dark", "flat", "science", "epoch2"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(k, names[i]))
            return i;
    return -1;
}

static double num_at(const clred_json *arr, size_t i) { return clred_json_num(clred_json_at(arr, i), NAN); }

static int load_frame(demo_frame *f, const clred_json *j)
{
    snprintf(f->file, sizeof f->file, "%s", clred_json_str(clred_json_get(j, "file")));
    f->kind = kind_code(clred_json_str(clred_json_get(j, "kind")));
    f->dx = clred_json_num(clred_json_get(j, "dx"), 0);
    f->dy = clred_json_num(clred_json_get(j, "dy"), 0);
    f->fwhm = clred_json_num(clred_json_get(j, "fwhm"), 0);
    f->lamp = clred_json_num(clred_json_get(j, "lamp_e"), 0);
    f->exptime = clred_json_num(clred_json_get(j, "exptime"), 0);
    const clred_json *crs = clred_json_get(j, "cosmic_rays");
    size_t n = 0;
    for (size_t k = 0; crs && k < crs->count; k++) {
        const clred_json *pix = clred_json_get(clred_json_at(crs, k), "pixels");
        n += pix ? pix->count : 0;
    }
    f->cr_xy = malloc((n ? n : 1) * 2 * sizeof *f->cr_xy);
    f->cr_e = malloc((n ? n : 1) * sizeof *f->cr_e);
    if (!f->cr_xy || !f->cr_e || !*f->file || f->kind < 0)
        return 0;
    for (size_t k = 0; crs && k < crs->count; k++) {
        const clred_json *pix = clred_json_get(clred_json_at(crs, k), "pixels");
        for (size_t i = 0; pix && i < pix->count; i++) {
            const clred_json *p = clred_json_at(pix, i);
            f->cr_xy[2 * f->ncr] = (int)num_at(p, 0);
            f->cr_xy[2 * f->ncr + 1] = (int)num_at(p, 1);
            f->cr_e[f->ncr++] = num_at(p, 2);
        }
    }
    return 1;
}

static int read_truth_image(const char *dir, const char *name, const demo_truth *t, clred_image *img)
{
    char path[4096];
    if (!join(path, dir, name)) {
        fprintf(stderr, "clred demo: %s/%s: path too long\n", dir, name);
        return EXIT_BAD_INPUT;
    }
    clred_status s = clred_image_read(path, 0, img);
    if (s != CLRED_OK)
        return cli_fail(CMD, s);
    if (img->width != t->width || img->height != t->height) {
        fprintf(stderr, "clred demo: %s is %zux%zu, truth.json says %zux%zu\n", path, img->width, img->height,
                t->width, t->height);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

/* The simulator's truth, read back as any user would: truth.json and the
 * truth images. */
static int load_truth(const char *dir, demo_truth *t)
{
    memset(t, 0, sizeof *t);
    char path[4096], err[256];
    if (!join(path, dir, "truth.json")) {
        fprintf(stderr, "clred demo: %s: path too long\n", dir);
        return EXIT_BAD_INPUT;
    }
    clred_json *j = clred_json_parse_file(path, err, sizeof err);
    if (!j) {
        fprintf(stderr, "clred demo: %s: %s\n", path, err);
        return EXIT_BAD_INPUT;
    }
    const clred_json *o = clred_json_get(j, "options"), *d = clred_json_get(j, "detector");
    t->width = (size_t)clred_json_num(clred_json_get(j, "width"), 0);
    t->height = (size_t)clred_json_num(clred_json_get(j, "height"), 0);
    t->gain = clred_json_num(clred_json_get(d, "gain_e_per_adu"), NAN);
    t->readnoise = clred_json_num(clred_json_get(d, "readnoise_e"), NAN);
    t->ceiling = clred_json_num(clred_json_get(d, "saturation_adu"), NAN);
    t->dark_current = clred_json_num(clred_json_get(d, "dark_current_e_per_s"), NAN);
    t->dark_exptime = clred_json_num(clred_json_get(o, "dark_exptime"), NAN);
    t->nbias = (int)clred_json_num(clred_json_get(o, "nbias"), 0);
    t->ndark = (int)clred_json_num(clred_json_get(o, "ndark"), 0);
    t->nflat = (int)clred_json_num(clred_json_get(o, "nflat"), 0);
    t->nscience = (int)clred_json_num(clred_json_get(o, "nscience"), 0);
    const clred_json *stars = clred_json_get(j, "stars"), *hot = clred_json_get(j, "hot_pixels");
    const clred_json *frames = clred_json_get(j, "frames");
    int ok = t->width && t->height && t->gain > 0 && stars && hot && frames;
    if (ok) {
        t->nstars = stars->count;
        t->nhot = hot->count;
        t->nframes = frames->count;
        t->stars = malloc((t->nstars ? t->nstars : 1) * 3 * sizeof *t->stars);
        t->hot = malloc((t->nhot ? t->nhot : 1) * 2 * sizeof *t->hot);
        t->frames = calloc(t->nframes ? t->nframes : 1, sizeof *t->frames);
        ok = t->stars && t->hot && t->frames;
    }
    for (size_t i = 0; ok && i < t->nstars; i++)
        for (size_t k = 0; k < 3; k++)
            t->stars[3 * i + k] = num_at(clred_json_at(stars, i), k);
    for (size_t i = 0; ok && i < t->nhot; i++)
        for (size_t k = 0; k < 2; k++)
            t->hot[2 * i + k] = (int)num_at(clred_json_at(hot, i), k);
    for (size_t i = 0; ok && i < t->nframes; i++)
        ok = load_frame(&t->frames[i], clred_json_at(frames, i));
    clred_json_free(j);
    if (!ok) {
        truth_free(t);
        fprintf(stderr, "clred demo: %s: missing or malformed members (not written by clred simulate?)\n", path);
        return EXIT_BAD_INPUT;
    }
    int rc = read_truth_image(dir, "truth_bias.fits", t, &t->bias);
    if (rc == EXIT_OK)
        rc = read_truth_image(dir, "truth_dark.fits", t, &t->dark);
    if (rc == EXIT_OK)
        rc = read_truth_image(dir, "truth_flat.fits", t, &t->flat);
    if (rc != EXIT_OK)
        truth_free(t);
    return rc;
}

/* Paths of the frames of one kind (malloc'd array of malloc'd strings). */
static char **frame_paths(const char *dir, const demo_truth *t, int kind, size_t *n)
{
    char **paths = calloc(t->nframes + 1, sizeof *paths);
    *n = 0;
    for (size_t i = 0; paths && i < t->nframes; i++)
        if (t->frames[i].kind == kind) {
            size_t len = strlen(dir) + strlen(t->frames[i].file) + 2;
            paths[*n] = malloc(len);
            if (paths[*n])
                snprintf(paths[(*n)++], len, "%s/%s", dir, t->frames[i].file);
        }
    return paths;
}

static void free_paths(char **paths, size_t n)
{
    for (size_t i = 0; paths && i < n; i++)
        free(paths[i]);
    free(paths);
}

/* --------------------------------------------------------- statistics */

/* The k-th smallest of v (reordered; Hoare's selection, median-of-three
 * pivots). The checks take medians of a few 100k values each: sorting them
 * (qsort) was a third of a second of a cold demo's serial tail. */
static double select_kth(double *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return v[k];
}

static double median_of(double *v, size_t n)
{
    if (!n)
        return NAN;
    size_t k = n / 2;
    double upper = select_kth(v, n, k);
    if (n % 2)
        return upper;
    /* the values below k are the lower half: its largest is the other middle */
    double lower = v[0];
    for (size_t i = 1; i < k; i++)
        lower = v[i] > lower ? v[i] : lower;
    return 0.5 * (lower + upper);
}

/* Pixel noise of img over the sky mask from differences of horizontal
 * neighbours (1.4826 MAD / sqrt 2): blind to the sky's gradient and to the
 * flat's large-scale shape, and robust to the odd cosmic ray. b (optional)
 * is subtracted first. */
static double neighbour_noise(const float *a, const float *b, const unsigned char *sky, size_t w, size_t h)
{
    double *d = malloc(w * h * sizeof *d);
    size_t n = 0;
    for (size_t y = 0; d && y < h; y++)
        for (size_t x = 0; x + 1 < w; x++) {
            size_t i = y * w + x;
            if (!sky[i] || !sky[i + 1])
                continue;
            double v = (double)a[i + 1] - a[i];
            if (b)
                v -= (double)b[i + 1] - b[i];
            if (isfinite(v))
                d[n++] = v;
        }
    double med = median_of(d, n);
    for (size_t i = 0; i < n; i++)
        d[i] = fabs(d[i] - med);
    double mad = median_of(d, n);
    free(d);
    return 1.4826 * mad / sqrt(2.0);
}

/* Sky pixels: away from every star in every science frame of epoch 1 (the
 * radius where a star falls below ~4 e- per pixel, a tenth of the sky noise),
 * from hot pixels and from the edges. */
static unsigned char *sky_mask(const demo_truth *t)
{
    size_t w = t->width, h = t->height;
    unsigned char *sky = malloc(w * h);
    if (!sky)
        return NULL;
    for (size_t y = 0; y < h; y++)
        for (size_t x = 0; x < w; x++)
            sky[y * w + x] = x >= 2 && y >= 2 && x + 2 < w && y + 2 < h;
    for (size_t i = 0; i < t->nhot; i++)
        sky[(size_t)t->hot[2 * i + 1] * w + (size_t)t->hot[2 * i]] = 0;
    for (size_t f = 0; f < t->nframes; f++) {
        const demo_frame *fr = &t->frames[f];
        if (fr->kind != 3)
            continue;
        double alpha = fr->fwhm / (2.0 * sqrt(pow(2.0, 1.0 / 3.0) - 1.0));
        double peak_per_flux = 2.0 / (M_PI * alpha * alpha);
        for (size_t s = 0; s < t->nstars; s++) {
            double x = t->stars[3 * s] + fr->dx, y = t->stars[3 * s + 1] + fr->dy, flux = t->stars[3 * s + 2];
            double r = alpha * sqrt(fmax(0.0, cbrt(flux * peak_per_flux / 4.0) - 1.0)) + 2.0;
            for (long j = (long)floor(y - r); j <= (long)ceil(y + r); j++)
                for (long i = (long)floor(x - r); i <= (long)ceil(x + r); i++)
                    if (i >= 0 && j >= 0 && i < (long)w && j < (long)h && hypot(i - x, j - y) <= r)
                        sky[(size_t)j * w + (size_t)i] = 0;
        }
    }
    return sky;
}

/* How much median-centred, MAD-spread 3-sigma clipping (iterated until
 * nothing changes, at most 10 times: the combine settings used here) widens
 * the noise of a mean of n Gaussian values: a Monte Carlo with a fixed seed.
 * Small stacks lose good values to a low MAD (about 1.16 at n = 5, 1.11 at
 * n = 8). */
static double clip_inflation(size_t n)
{
    if (n < 2)
        return 1.0;
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    double v[64], d[64], sum2 = 0;
    const int trials = 20000;
    n = n > 64 ? 64 : n;
    for (int t = 0; t < trials; t++) {
        for (size_t i = 0; i < n; i += 2) {
            double u[2];
            for (int k = 0; k < 2; k++) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                u[k] = ((double)((state * 2685821657736338717ULL) >> 11) + 0.5) / 9007199254740992.0;
            }
            double r = sqrt(-2 * log(u[0]));
            v[i] = r * cos(2 * M_PI * u[1]);
            if (i + 1 < n)
                v[i + 1] = r * sin(2 * M_PI * u[1]);
        }
        size_t m = n;
        for (int it = 0; it < 10; it++) {
            memcpy(d, v, m * sizeof *d);
            double med = median_of(d, m);
            for (size_t i = 0; i < m; i++)
                d[i] = fabs(v[i] - med);
            double spread = 1.4826 * median_of(d, m);
            size_t kept = 0;
            for (size_t i = 0; i < m; i++)
                if (fabs(v[i] - med) <= 3 * spread)
                    v[kept++] = v[i];
            if (kept == m || kept < 2)
                break;
            m = kept;
        }
        double mean = 0;
        for (size_t i = 0; i < m; i++)
            mean += v[i] / (double)m;
        sum2 += mean * mean;
    }
    return sqrt(sum2 / trials * (double)n);
}

/* ------------------------------------------------------------ masters */

typedef struct {
    clred_image bias, dark, flat;
} demo_masters;

static double rms_diff(const float *a, const float *b, size_t n, double *mean_out)
{
    double s = 0, s2 = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        if (!isfinite(d))
            continue;
        s += d;
        s2 += d * d;
        m++;
    }
    if (mean_out)
        *mean_out = m ? s / (double)m : NAN;
    return m ? sqrt(s2 / (double)m) : NAN;
}

/* Read noise in ADU with the rounding of the raw values to integers. */
static double adu_noise(const demo_truth *t)
{
    double r = t->readnoise / t->gain;
    return sqrt(r * r + 1.0 / 12.0);
}

static void check_bias(demo_report *r, const demo_truth *t, const clred_image *mb)
{
    size_t n = t->width * t->height;
    double mean, rms = rms_diff(mb->sci, t->bias.sci, n, &mean);
    double expected = adu_noise(t) / sqrt(t->nbias);
    /* The RMS over n pixels is good to 1/sqrt(2n) relative: 5% is > 5 sigma
     * at 128x128. */
    add_check(r, "master_bias_rms", "ADU", rms, expected, 0.95 * expected, 1.05 * expected,
              "RMS(master bias - true bias) vs readnoise/gain/sqrt(nbias), within 5%");
    double tol = 5 * expected / sqrt((double)n) + 0.05;
    add_check(r, "master_bias_offset", "ADU", mean, 0, -tol, tol,
              "mean(master bias - true bias), within 5 sigma + 0.05 ADU");
}

static int check_dark(demo_report *r, clred_ctx *ctx, const demo_truth *t, const clred_image *md)
{
    size_t w = t->width, n = w * t->height;
    /* The dark current: clipped mean of the master dark (per second, ADU)
     * over the pixels that are not hot. */
    clred_image masked = *md;
    masked.var = NULL;
    masked.header = NULL;
    masked.mask = calloc(n, sizeof *masked.mask);
    if (!masked.mask)
        return EXIT_DEVICE;
    for (size_t i = 0; i < t->nhot; i++)
        masked.mask[(size_t)t->hot[2 * i + 1] * w + (size_t)t->hot[2 * i]] = CLRED_MASK_BAD;
    clred_stats_opts so = clred_stats_defaults();
    clred_stats st;
    clred_status s = clred_image_stats(ctx, &masked, &so, &st);
    free(masked.mask);
    if (s != CLRED_OK)
        return cli_fail(CMD, s);
    double td = t->dark_exptime, var_adu = adu_noise(t) * adu_noise(t);
    double pix_sigma = sqrt(t->dark_current * td + var_adu * t->gain * t->gain * (1 + 1.0 / t->nbias)) /
                       sqrt(t->ndark) / td; /* e-/s, one pixel of the master */
    double dc = st.mean * t->gain, tol = 5 * pix_sigma / sqrt((double)st.npix) + 0.03 * t->dark_current;
    add_check(r, "dark_current", "e-/s", dc, t->dark_current, t->dark_current - tol, t->dark_current + tol,
              "clipped mean of the master dark without hot pixels; 5 sigma + 3% (Poisson skew under clipping)");

    /* Hot pixels: above 0.5 e-/s, which is > 20 sigma of a master pixel at
     * the defaults and below the weakest hot pixel (1 e-/s). */
    double threshold = 0.5;
    size_t found = 0, recovered = 0;
    for (size_t i = 0; i < n; i++)
        found += md->sci[i] * t->gain > threshold;
    for (size_t i = 0; i < t->nhot; i++)
        recovered += md->sci[(size_t)t->hot[2 * i + 1] * w + (size_t)t->hot[2 * i]] * t->gain > threshold;
    add_check(r, "hot_pixels_recovered", "pixels", (double)recovered, (double)t->nhot, (double)t->nhot,
              (double)t->nhot, "true hot pixels above 0.5 e-/s in the master dark: all of them");
    double spurious = (double)(found - recovered), allowed = fmax(2.0, 0.05 * (double)t->nhot);
    add_check(r, "hot_pixels_spurious", "pixels", spurious, 0, 0, allowed,
              "other pixels above 0.5 e-/s (cosmic rays the clipping missed): at most 5% of the hot ones or 2");
    return EXIT_OK;
}

static void check_flat(demo_report *r, const demo_truth *t, const clred_image *mf)
{
    size_t n = t->width * t->height;
    double *ratio = malloc(n * sizeof *ratio), lamp = 0;
    if (!ratio)
        return;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        double q = (double)mf->sci[i] / t->flat.sci[i];
        if (isfinite(q))
            ratio[m++] = q;
    }
    int nl = 0;
    for (size_t f = 0; f < t->nframes; f++)
        if (t->frames[f].kind == 2) {
            lamp += t->frames[f].lamp;
            nl++;
        }
    lamp /= nl ? nl : 1;
    /* Master and truth may be normalised differently (mean, median, region):
     * compare shapes. */
    double *tmp = malloc(m * sizeof *tmp);
    memcpy(tmp, ratio, m * sizeof *tmp);
    double med = median_of(tmp, m);
    free(tmp);
    double s2 = 0, want2 = 0, var_adu = adu_noise(t) * adu_noise(t), g2 = t->gain * t->gain;
    for (size_t i = 0; i < m; i++)
        s2 += (ratio[i] / med - 1) * (ratio[i] / med - 1);
    for (size_t i = 0; i < n; i++) {
        /* Per flat frame: Poisson of lamp * flat, read noise, and the master
         * bias's noise; nflat frames averaged. */
        double e = lamp * t->flat.sci[i];
        want2 += (e + var_adu * g2 * (1 + 1.0 / t->nbias)) / (e * e) / t->nflat;
    }
    free(ratio);
    double rms = sqrt(s2 / (double)m), want = sqrt(want2 / (double)n) * clip_inflation((size_t)t->nflat);
    add_check(r, "master_flat_rms", "", rms, want, 0.9 * want, 1.1 * want,
              "RMS(master flat / true flat - 1) vs photon noise of the flats / sqrt(nflat), times the "
              "clipping's noise inflation; within 10%");
}

/* --------------------------------------------------------------- stack */

static void check_saturation(demo_report *r, const demo_truth *t, const clred_image *raw, const clred_image *cal,
                             size_t nframes)
{
    size_t n = t->width * t->height, at_ceiling = 0, flagged = 0;
    for (size_t k = 0; k < nframes; k++)
        for (size_t i = 0; i < n; i++) {
            at_ceiling += raw[k].sci[i] >= t->ceiling;
            flagged += cal[k].mask && (cal[k].mask[i] & CLRED_MASK_SATURATED);
        }
    add_check(r, "saturation_flags", "pixels", (double)flagged, (double)at_ceiling, (double)at_ceiling,
              (double)at_ceiling, "calibrated pixels flagged SATURATED = raw pixels at the ceiling, exactly");
}

/* A cosmic ray (>= 500 e-, on sky) counts as rejected when the stack stays
 * below half of what it would add to the mean (>= 21 ADU at the defaults):
 * the stack then equals the mean of the other frames to their noise / N
 * (~4 ADU), far below that half. */
static void check_cosmic_rays(demo_report *r, const demo_truth *t, const clred_image *cal, const demo_frame **fr,
                              size_t nf, const clred_combine_result *res, const unsigned char *sky, size_t *ntested)
{
    const float *stack = res->image.sci;
    size_t w = t->width, n = w * t->height, tried = 0, rejected = 0;
    unsigned char *hit = calloc(n, 1);
    if (!hit)
        return;
    for (size_t k = 0; k < nf; k++)
        for (size_t c = 0; c < fr[k]->ncr; c++)
            hit[(size_t)fr[k]->cr_xy[2 * c + 1] * w + (size_t)fr[k]->cr_xy[2 * c]]++;
    for (size_t k = 0; k < nf; k++)
        for (size_t c = 0; c < fr[k]->ncr; c++) {
            size_t i = (size_t)fr[k]->cr_xy[2 * c + 1] * w + (size_t)fr[k]->cr_xy[2 * c];
            if (fr[k]->cr_e[c] < 500 || !sky[i] || hit[i] != 1 || !isfinite(stack[i]))
                continue;
            /* The mean of the other frames, with the stack's sky offsets. */
            double ref = 0;
            for (size_t j = 0; j < nf; j++)
                ref += j == k ? 0 : (cal[j].sci[i] + (res->scales ? res->scales[j] : 0)) / (double)(nf - 1);
            double adds = fr[k]->cr_e[c] / (t->gain * t->flat.sci[i]) / (double)nf;
            tried++;
            rejected += stack[i] - ref < 0.5 * adds;
        }
    free(hit);
    *ntested = tried;
    /* Fewer than 5 tested pixels would make the fraction meaningless: NaN fails. */
    double frac = tried >= 5 ? (double)rejected / (double)tried : NAN;
    add_check(r, "cosmic_rays_rejected", "fraction", frac, 1, 0.95, 1,
              "cosmic-ray pixels (>= 500 e-, on sky, at least 5) rejected by the clipped stack: at least 95%");
}

/* Sky noise of the stack against the frames': independent noise averages
 * down as 1/sqrt(N), what the frames share (master bias, dark, flat) does
 * not. Both parts are measured: the frames' differences hold only the
 * independent part. */
static void check_stack_noise(demo_report *r, const demo_truth *t, const clred_image *cal, size_t nf,
                              const float *stack, const unsigned char *sky, double *single_out, double *stack_out)
{
    size_t w = t->width, h = t->height;
    double total = 0, indep = 0;
    for (size_t k = 0; k < nf; k++) {
        double s = neighbour_noise(cal[k].sci, NULL, sky, w, h);
        total += s * s / (double)nf;
        if (nf > 1) {
            double d = neighbour_noise(cal[k].sci, cal[(k + 1) % nf].sci, sky, w, h);
            indep += d * d / 2 / (double)nf;
        }
    }
    double common = fmax(0.0, total - indep), eta = clip_inflation(nf);
    double want = sqrt(indep * eta * eta / (double)nf + common), got = neighbour_noise(stack, NULL, sky, w, h);
    *single_out = sqrt(total);
    *stack_out = got;
    add_check(r, "stack_sky_noise", "ADU", got, want, 0.9 * want, 1.1 * want,
              "sky noise of the stack vs single-frame noise / sqrt(N) times the clipping's inflation, "
              "plus the masters' shared noise; within 10%");
}

/* ---------------------------------------------------------------- run */

typedef struct {
    const char *dir, *device;
    uint64_t seed;
    size_t width, height;
    int json, keep, overwrite;
} demo_args;

static int parse_args(int argc, char **argv, demo_args *a)
{
    enum { OPT_DIR = 256, OPT_SEED, OPT_SIZE, OPT_DEVICE, OPT_JSON, OPT_KEEP, OPT_OVERWRITE };
    static const struct option longopts[] = {{"dir", required_argument, 0, OPT_DIR},
                                             {"seed", required_argument, 0, OPT_SEED},
                                             {"size", required_argument, 0, OPT_SIZE},
                                             {"device", required_argument, 0, OPT_DEVICE},
                                             {"json", no_argument, 0, OPT_JSON},
                                             {"keep", no_argument, 0, OPT_KEEP},
                                             {"overwrite", no_argument, 0, OPT_OVERWRITE},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'h': help(); return -1;
        case OPT_DIR: a->dir = optarg; break;
        case OPT_DEVICE: a->device = optarg; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_KEEP: a->keep = 1; break;
        case OPT_OVERWRITE: a->overwrite = 1; break;
        case OPT_SEED:
            errno = 0;
            a->seed = strtoull(optarg, &end, 0);
            if (end == optarg || *end || errno || *optarg == '-')
                return cli_usage_error(CMD, "--seed expects a non-negative integer, got '%s'", optarg);
            break;
        case OPT_SIZE: {
            unsigned long w = strtoul(optarg, &end, 10), h = 0;
            if (end != optarg && (*end == 'x' || *end == 'X') && *optarg != '-') {
                char *second = end + 1;
                h = strtoul(second, &end, 10);
                if (end == second || *end || *second == '-')
                    h = 0;
            }
            if (w < 64 || h < 64 || w > 8192 || h > 8192)
                return cli_usage_error(CMD, "--size expects WxH from 64x64 to 8192x8192, got '%s'", optarg);
            a->width = w;
            a->height = h;
            break;
        }
        default: return cli_usage_error(CMD, "unknown option or missing value");
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    return EXIT_OK;
}

static void remove_night(const char *dir, const demo_truth *t)
{
    static const char *extra[] = {"truth.json", "truth_bias.fits", "truth_dark.fits", "truth_flat.fits", "stars.csv"};
    char p[4096];
    for (size_t i = 0; i < t->nframes + 5; i++) {
        if (join(p, dir, i < t->nframes ? t->frames[i].file : extra[i - t->nframes]))
            unlink(p);
    }
    rmdir(dir);
}

static void print_report(const demo_report *r, const demo_args *a, const char *dir, const clred_ctx *ctx,
                         double single, double stack, size_t nstack, size_t ncr, double seconds)
{
    int all = 1;
    for (size_t i = 0; i < r->n; i++)
        all &= r->items[i].pass;
    if (a->json) {
        printf("{\"dir\": ");
        cli_json_string(stdout, dir);
        printf(", \"kept\": %s, \"seed\": %llu, \"width\": %zu, \"height\": %zu, \"device\": ",
               a->keep || a->dir ? "true" : "false", (unsigned long long)a->seed, a->width, a->height);
        cli_json_string(stdout, clred_ctx_device(ctx)->name);
        printf(", \"stack\": {\"frames\": %zu, \"aligned\": false, \"single_frame_sky_noise\": %.6g, "
               "\"stack_sky_noise\": %.6g, \"cosmic_ray_pixels_tested\": %zu},\n \"checks\": [",
               nstack, single, stack, ncr);
        for (size_t i = 0; i < r->n; i++) {
            const demo_check *c = &r->items[i];
            printf("%s\n  {\"name\": \"%s\", \"unit\": \"%s\", \"value\": %.6g, \"expected\": %.6g, \"low\": %.6g, "
                   "\"high\": %.6g, \"pass\": %s, \"basis\": ",
                   i ? "," : "", c->name, c->unit, c->value, c->expected, c->lo, c->hi, c->pass ? "true" : "false");
            cli_json_string(stdout, c->basis);
            printf("}");
        }
        printf("\n ], \"pass\": %s, \"seconds\": %.3f}\n", all ? "true" : "false", seconds);
        return;
    }
    printf("clred demo: %zux%zu night, seed %llu, on %s\n", a->width, a->height, (unsigned long long)a->seed,
           clred_ctx_device(ctx)->name);
    for (size_t i = 0; i < r->n; i++) {
        const demo_check *c = &r->items[i];
        printf("  %-4s %-22s %12.6g %-8s expected %-10.6g in [%.6g, %.6g]\n       %s\n", c->pass ? "ok" : "FAIL",
               c->name, c->value, c->unit, c->expected, c->lo, c->hi, c->basis);
    }
    printf("  stack of %zu science frames, sigma-clipped mean, left unaligned to compare pixel by pixel:\n"
           "  stars are smeared by the dithers, so only sky pixels are measured on it;\n"
           "  sky noise %.4g ADU per frame, %.4g ADU in the stack; %zu cosmic-ray pixels tested\n",
           nstack, single, stack, ncr);
    printf("%s: %s in %.1f s%s%s\n", all ? "PASS" : "FAIL", all ? "every check within its tolerance" : "see FAIL above",
           seconds, a->keep || a->dir ? "; frames kept in " : "", a->keep || a->dir ? dir : "");
}

/* Registration: every calibrated frame's shift against the first by phase
 * correlation, against the simulator's dithers. The bar is an RMS
 * error below 0.02 px at good signal; 300 stars at S/N up to a few hundred
 * are that. */
static clred_status check_registration(demo_report *r, clred_ctx *ctx, const clred_image *cal, const demo_frame **fr,
                                       size_t n)
{
    if (n < 2)
        return CLRED_OK;
    clred_shift *sh = calloc(n, sizeof *sh);
    if (!sh)
        return CLRED_ERR_MEMORY;
    clred_status s = clred_measure_shifts(ctx, cal, n, 0, NULL, sh);
    if (s == CLRED_OK) {
        double sum2 = 0.0;
        for (size_t i = 1; i < n; i++) {
            double ex = sh[i].dx - (fr[i]->dx - fr[0]->dx), ey = sh[i].dy - (fr[i]->dy - fr[0]->dy);
            sum2 += ex * ex + ey * ey;
        }
        add_check(r, "registration_rms_error", "px", sqrt(sum2 / (double)(n - 1)), 0.0, 0.0, 0.02,
                  "phase-correlation shifts of the calibrated frames against the true dithers (RMS of the 2-D error)");
    }
    free(sh);
    return s;
}

/* The product of the night recipe of one kind ("master bias", ...), or NULL. */
static const char *product_of(const clred_night_report *nr, const char *what, const char *name)
{
    for (size_t i = 0; i < nr->nproducts; i++) {
        const char *p = nr->products[i].path, *slash = strrchr(p, '/');
        if (!strcmp(nr->products[i].what, what) && (!name || !strcmp(slash ? slash + 1 : p, name)))
            return p;
    }
    return NULL;
}

static clred_status read_product(const clred_night_report *nr, const char *what, const char *name, clred_image *img)
{
    const char *p = product_of(nr, what, name);
    if (!p) {
        fprintf(stderr, "clred demo: the night recipe wrote no %s%s%s\n", what, name ? " " : "", name ? name : "");
        return CLRED_ERR_INPUT;
    }
    return clred_image_read(p, 0, img);
}

/* The night recipe's options for the demo. Cosmic-ray removal and
 * background subtraction are off: the checks measure the combine's
 * rejection of cosmic rays and the calibrated frames' own sky. The frames'
 * quality metrics stay on although no check reads them: the demo's first-run
 * time is issue 14's measure of a night's first run, which computes them. */
static clred_night_opts demo_night_opts(void)
{
    clred_night_opts no = clred_night_defaults();
    no.cosmic = 0;
    no.background = 0;
    return no;
}

/* Reduces the night in dir with the night recipe (clred run) into outdir and
 * fills the report from its products. */
static int reduce(clred_ctx *ctx, const char *dir, const char *outdir, const demo_truth *t, demo_report *r,
                  double *single, double *stack_noise, size_t *nstack, size_t *ncr_tested)
{
    clred_night_opts no = demo_night_opts();
    clred_combine_opts stack = no.stack.copts; /* median-centred MAD clipping, additive scaling */

    size_t nb, nd, nfl, ns;
    char **pb = frame_paths(dir, t, 0, &nb), **pd = frame_paths(dir, t, 1, &nd), **pf = frame_paths(dir, t, 2, &nfl),
         **ps = frame_paths(dir, t, 3, &ns);
    size_t nall = nb + nd + nfl + ns;
    const char **all = calloc(nall + 1, sizeof *all);
    clred_status s = all ? CLRED_OK : CLRED_ERR_MEMORY;
    for (size_t i = 0, k = 0; all && i < 4; i++) {
        char **l = i == 0 ? pb : i == 1 ? pd : i == 2 ? pf : ps;
        size_t m = i == 0 ? nb : i == 1 ? nd : i == 2 ? nfl : ns;
        for (size_t j = 0; j < m; j++)
            all[k++] = l[j];
    }
    clred_night_report nr;
    memset(&nr, 0, sizeof nr);
    int rc = EXIT_OK;
    cli_progress("reducing %zu frames with the night recipe into %s", nall, outdir);
    if (s == CLRED_OK)
        s = clred_night_run(ctx, all, nall, outdir, &no, &nr);
    demo_masters m;
    memset(&m, 0, sizeof m);
    char dark_name[64];
    snprintf(dark_name, sizeof dark_name, "dark_%gs.fits", t->dark_exptime);
    if (s == CLRED_OK)
        s = read_product(&nr, "master bias", NULL, &m.bias);
    if (s == CLRED_OK) {
        check_bias(r, t, &m.bias);
        s = read_product(&nr, "master dark", dark_name, &m.dark);
    }
    if (s == CLRED_OK) {
        rc = check_dark(r, ctx, t, &m.dark);
        s = read_product(&nr, "master flat", NULL, &m.flat);
    }
    clred_image *raw = calloc(ns ? ns : 1, sizeof *raw), *cal = calloc(ns ? ns : 1, sizeof *cal);
    const demo_frame **fr = calloc(ns ? ns : 1, sizeof *fr);
    if (s == CLRED_OK && (!raw || !cal || !fr))
        s = CLRED_ERR_MEMORY;
    if (s == CLRED_OK) {
        check_flat(r, t, &m.flat);
        for (size_t f = 0, k = 0; f < t->nframes; f++)
            if (t->frames[f].kind == 3)
                fr[k++] = &t->frames[f];
        for (size_t k = 0; k < ns && s == CLRED_OK; k++) {
            s = clred_image_read(ps[k], 0, &raw[k]);
            const char *slash = strrchr(ps[k], '/');
            if (s == CLRED_OK)
                s = read_product(&nr, "calibrated", slash ? slash + 1 : ps[k], &cal[k]);
        }
    }
    clred_combine_result res;
    memset(&res, 0, sizeof res);
    if (s == CLRED_OK) {
        check_saturation(r, t, raw, cal, ns);
        cli_progress("registering %zu frames", ns);
        s = check_registration(r, ctx, cal, fr, ns);
    }
    if (s == CLRED_OK) {
        cli_progress("stacking %zu frames", ns);
        s = clred_combine_images(ctx, cal, ns, &stack, &res);
    }
    if (s == CLRED_OK) {
        unsigned char *sky = sky_mask(t);
        if (sky) {
            check_cosmic_rays(r, t, cal, fr, ns, &res, sky, ncr_tested);
            check_stack_noise(r, t, cal, ns, res.image.sci, sky, single, stack_noise);
        }
        free(sky);
        *nstack = ns;
    }
    cli_progress_done();
    if (s != CLRED_OK)
        rc = cli_fail(CMD, s);
    for (size_t k = 0; k < ns; k++) {
        if (raw)
            clred_image_free(&raw[k]);
        if (cal)
            clred_image_free(&cal[k]);
    }
    free(raw);
    free(cal);
    free(fr);
    free(all);
    clred_night_report_free(&nr);
    clred_combine_result_free(&res);
    clred_image_free(&m.bias);
    clred_image_free(&m.dark);
    clred_image_free(&m.flat);
    free_paths(pb, nb);
    free_paths(pd, nd);
    free_paths(pf, nfl);
    free_paths(ps, ns);
    return rc;
}

/* Removes the night recipe's products (outdir/<sub>/<file> and the manifests). */
static void remove_products(const char *outdir)
{
    static const char *subs[] = {"masters", "calibrated", "background", "stacks", ""};
    char p[4400];
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        snprintf(p, sizeof p, "%s/%s", outdir, subs[i]);
        DIR *d = opendir(p);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char f[4800];
            snprintf(f, sizeof f, "%s/%s", p, e->d_name);
            if (e->d_name[0] != '.' || strstr(e->d_name, ".tmp"))
                unlink(f);
        }
        if (d)
            closedir(d);
        if (*subs[i])
            rmdir(p);
    }
    rmdir(outdir);
}

int cmd_demo(int argc, char **argv)
{
    demo_args a = {0};
    a.seed = 1;
    a.width = a.height = 512;
    int rc = parse_args(argc, argv, &a);
    if (rc == -1)
        return EXIT_OK;
    if (rc != EXIT_OK)
        return rc;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clred_ctx *ctx = NULL;
    rc = cli_open(CMD, a.device, &ctx);
    if (rc != EXIT_OK)
        return rc;

    char tmpdir[4096];
    const char *dir = a.dir;
    if (!dir) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/clred-demo-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "clred demo: cannot create a temporary directory in %s (%s)\n",
                    base && *base ? base : "/tmp", strerror(errno));
            clred_ctx_destroy(ctx);
            return EXIT_BAD_INPUT;
        }
        dir = tmpdir;
    }
    clred_sim_opts so = clred_sim_defaults();
    so.seed = a.seed;
    so.width = a.width;
    so.height = a.height;
    /* The default star density of a 512x512 frame. */
    so.nstars = (int)fmax(20.0, 300.0 * (double)(a.width * a.height) / (512.0 * 512.0));
    /* A first run compiles the night's kernels while the night is simulated:
     * the programs in this process, the later steps' kernels in two helpers,
     * one for the frames' quality and one for the alignment. Alone, one
     * helper's chain of compiles (quality, then alignment) was the demo's
     * critical path, while this process waited for it at the end; the
     * alignment helper builds its programs itself meanwhile, on the core
     * that the compiler's start-up here leaves idle (compile_ahead.c). */
    pid_t quality_helper = cli_compile_ahead_start(ctx, a.device, a.width, a.height, 1, 0);
    pid_t align_helper = cli_compile_ahead_start(ctx, a.device, a.width, a.height, 0, 1);
    clred_night_opts no = demo_night_opts();
    clred_status s = clred_night_prepare(ctx, &no);
    cli_progress("simulating a %zux%zu night into %s", a.width, a.height, dir);
    if (s == CLRED_OK)
        s = clred_simulate(&so, dir, a.overwrite);
    if (s != CLRED_OK) {
        if (!a.dir)
            rmdir(dir);
        cli_compile_ahead_finish(quality_helper);
        cli_compile_ahead_finish(align_helper);
        clred_ctx_destroy(ctx);
        return cli_fail(CMD, s);
    }
    demo_truth t;
    rc = load_truth(dir, &t);
    demo_report report = {0};
    double single = NAN, stack = NAN;
    size_t nstack = 0, ncr_tested = 0;
    char outdir[4200];
    snprintf(outdir, sizeof outdir, "%s/reduced", dir);
    if (rc == EXIT_OK)
        rc = reduce(ctx, dir, outdir, &t, &report, &single, &stack, &nstack, &ncr_tested);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (rc == EXIT_OK) {
        print_report(&report, &a, dir, ctx, single, stack, nstack, ncr_tested, seconds);
        for (size_t i = 0; i < report.n; i++)
            if (!report.items[i].pass)
                rc = EXIT_BAD_INPUT;
    }
    if (!a.dir && !a.keep) {
        remove_products(outdir);
        remove_night(dir, &t);
    }
    truth_free(&t);
    cli_compile_ahead_finish(quality_helper);
    cli_compile_ahead_finish(align_helper);
    clred_ctx_destroy(ctx);
    return rc;
}
