/* The night simulator: determinism, the output directory rules, and the
 * written frames against the truth in double precision. Tolerances come from
 * counting statistics: a mean over N pixels of noise sigma is good to
 * sigma / sqrt(N), a variance to var * sqrt(2 / (N - 1)); we allow 5 of those
 * (a false alarm about once in 10^6 checks), plus the model terms named where
 * they are used. Small frames (96x80) keep it fast; no OpenCL is needed. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "json.h"
#include "simulate.h"

static char root[4096];

static clred_sim_opts small_opts(uint64_t seed)
{
    clred_sim_opts o = clred_sim_defaults();
    o.seed = seed;
    o.width = 96;
    o.height = 80;
    o.nbias = 3;
    o.ndark = 2;
    o.nflat = 2;
    o.nscience = 2;
    o.nepoch2 = 2;
    o.nstars = 25;
    o.ntransients = 2;
    o.dither = 3;
    o.cosmic_rate = 2e-5; /* ~18 per science frame at this size */
    return o;
}

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(1);
    }
}

/* Pixels of a simulated file as doubles (BZERO applied by the reader). */
static double *read_pixels(const char *dir, const char *name, const clred_sim_truth *t, clred_header **header)
{
    char p[4096];
    path_in(p, sizeof p, dir, name);
    clred_image img;
    clred_status s = clred_image_read(p, 0, &img);
    CHECK_MSG(s == CLRED_OK, "reading %s: %s", p, clred_last_error());
    if (s != CLRED_OK)
        return NULL;
    CHECK(img.width == t->width && img.height == t->height);
    size_t n = t->width * t->height;
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = img.sci[i];
    if (header) {
        *header = img.header;
        img.header = NULL;
    }
    clred_image_free(&img);
    return d;
}

static long file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static int same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            path_in(p, sizeof p, dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* Entries of dir whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix)) && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------ files and rules */

static void test_determinism(const clred_sim_truth *t, const char *a)
{
    char b[4096], c[4096], pa[4096], pb[4096];
    path_in(b, sizeof b, root, "night_b");
    path_in(c, sizeof c, root, "night_c");
    remove_tree(b);
    remove_tree(c);
    clred_sim_opts o = t->opts;
    CHECK_OK(clred_simulate(&o, b, 0));
    o.seed = t->opts.seed + 1;
    CHECK_OK(clred_simulate(&o, c, 0));
    const char *extra[] = {"truth.json", "truth_flat.fits", "truth_bias.fits", "truth_dark.fits", "stars.csv"};
    for (size_t i = 0; i < t->nframes + 5; i++) {
        const char *name = i < t->nframes ? t->frames[i].name : extra[i - t->nframes];
        path_in(pa, sizeof pa, a, name);
        path_in(pb, sizeof pb, b, name);
        CHECK_MSG(file_size(pa) > 0 && same_bytes(pa, pb), "%s differs between two runs with the same seed", name);
        path_in(pb, sizeof pb, c, name);
        CHECK_MSG(file_size(pb) > 0 && !same_bytes(pa, pb), "%s is the same with another seed", name);
    }
    /* Every frame type has a file, and nothing else but the truth. */
    CHECK(count_entries(a, "") == (int)t->nframes + 5);
    remove_tree(b);
    remove_tree(c);
}

static void test_output_rules(const clred_sim_truth *t, const char *a)
{
    clred_sim_opts o = t->opts;
    /* A non-empty directory needs overwrite; the failure changes nothing. */
    char p[4096];
    path_in(p, sizeof p, a, "sci_001.fits");
    long before = file_size(p);
    CHECK(clred_simulate(&o, a, 0) == CLRED_ERR_IO);
    CHECK(strstr(clred_last_error(), "overwrite") != NULL);
    CHECK(file_size(p) == before);

    /* Overwriting with fewer frames removes the old ones, leaves no staging. */
    char d[4096];
    path_in(d, sizeof d, root, "night_d");
    remove_tree(d);
    CHECK_OK(clred_simulate(&o, d, 0));
    o.nscience = 1;
    CHECK_OK(clred_simulate(&o, d, 1));
    path_in(p, sizeof p, d, "sci_002.fits");
    CHECK_MSG(file_size(p) < 0, "a stale sci_002.fits was left after overwriting with one science frame");
    path_in(p, sizeof p, d, "sci_001.fits");
    CHECK(file_size(p) > 0);
    CHECK(count_entries(d, ".clred-sim") == 0);
    CHECK(count_entries(root, "night_d.clred-sim") == 0);
    remove_tree(d);

    /* A parent that does not exist: an I/O error and nothing written. */
    path_in(p, sizeof p, root, "no-such-parent/night");
    CHECK(clred_simulate(&o, p, 0) == CLRED_ERR_IO);
    CHECK(count_entries(root, "no-such-parent") == 0);

    /* Bad options are usage errors that name the option. */
    clred_sim_opts bad = t->opts;
    bad.gain = 0;
    path_in(p, sizeof p, root, "night_bad");
    CHECK(clred_simulate(&bad, p, 0) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "gain") != NULL);
    bad = t->opts;
    bad.saturation = 70000;
    CHECK(clred_simulate(&bad, p, 0) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "saturation") != NULL);
    bad = t->opts;
    bad.width = 4;
    CHECK(clred_simulate(&bad, p, 0) == CLRED_ERR_USAGE);
    CHECK(file_size(p) < 0);
}

static void test_truth_files(const clred_sim_truth *t, const char *dir)
{
    size_t n = t->width * t->height;
    const char *names[] = {"truth_bias.fits", "truth_dark.fits", "truth_flat.fits"};
    const double *want[] = {t->bias, t->dark, t->flat};
    for (int k = 0; k < 3; k++) {
        double *d = read_pixels(dir, names[k], t, NULL);
        if (!d)
            continue;
        double worst = 0;
        for (size_t i = 0; i < n; i++)
            worst = fmax(worst, fabs(d[i] - want[k][i]) / fmax(1.0, fabs(want[k][i])));
        /* float32 storage: relative rounding 2^-24. */
        CHECK_MSG(worst < 1.2e-7, "%s differs from the truth by %g (relative)", names[k], worst);
        free(d);
    }
    /* truth.json holds the same truth, to the 10 digits it is written with. */
    char p[4096], err[256];
    path_in(p, sizeof p, dir, "truth.json");
    clred_json *j = clred_json_parse_file(p, err, sizeof err);
    CHECK_MSG(j != NULL, "truth.json: %s", err);
    if (!j)
        return;
    CHECK(clred_json_num(clred_json_get(j, "seed"), -1) == (double)t->opts.seed);
    const clred_json *opts = clred_json_get(j, "options");
    CHECK(clred_json_num(clred_json_get(opts, "cosmic_rate"), -1) == t->opts.cosmic_rate);
    CHECK(clred_json_num(clred_json_get(opts, "nstars"), -1) == t->opts.nstars);
    const clred_json *stars = clred_json_get(j, "stars");
    CHECK(stars && stars->count == t->nstars);
    for (size_t i = 0; stars && i < stars->count; i++)
        for (int k = 0; k < 3; k++) {
            double want = k == 0 ? t->stars[i].x : k == 1 ? t->stars[i].y : t->stars[i].flux;
            CHECK_NEAR(clred_json_num(clred_json_at(clred_json_at(stars, i), (size_t)k), NAN), want,
                       1e-9 * fmax(1, fabs(want)));
        }
    const clred_json *hot = clred_json_get(j, "hot_pixels");
    CHECK(hot && hot->count == t->nhot);
    const clred_json *tr = clred_json_get(j, "transients");
    CHECK(tr && tr->count == t->ntransients);
    for (size_t i = 0; tr && i < tr->count; i++)
        CHECK_NEAR(clred_json_num(clred_json_get(clred_json_at(tr, i), "flux_e"), NAN), t->transients[i].flux,
                   1e-9 * t->transients[i].flux);
    const clred_json *frames = clred_json_get(j, "frames");
    CHECK(frames && frames->count == t->nframes);
    for (size_t i = 0; frames && i < frames->count; i++) {
        const clred_json *f = clred_json_at(frames, i);
        CHECK(!strcmp(clred_json_str(clred_json_get(f, "file")), t->frames[i].name));
        const clred_json *crs = clred_json_get(f, "cosmic_rays");
        CHECK(crs && crs->count == t->frames[i].ncrs);
        size_t npix = 0;
        for (size_t k = 0; crs && k < crs->count; k++)
            npix += clred_json_get(clred_json_at(crs, k), "pixels")->count;
        CHECK(npix == t->frames[i].ncr_pixels);
        if (t->frames[i].kind == CLRED_SIM_SCIENCE)
            CHECK_NEAR(clred_json_num(clred_json_get(f, "dx"), NAN), t->frames[i].dx, 1e-9);
    }
    clred_json_free(j);
}

/* Headers carry what calibration needs and the true dither. */
static void test_headers(const clred_sim_truth *t, const char *dir)
{
    for (size_t i = 0; i < t->nframes; i++) {
        const clred_sim_frame *f = &t->frames[i];
        clred_header *h = NULL;
        double *d = read_pixels(dir, f->name, t, &h);
        free(d);
        double v;
        char s[80];
        CHECK(clred_header_get_double(h, "EXPTIME", &v) && v == f->exptime);
        CHECK(clred_header_get_double(h, "GAIN", &v) && v == t->opts.gain);
        CHECK(clred_header_get_double(h, "RDNOISE", &v) && v == t->opts.readnoise);
        CHECK(clred_header_get_double(h, "SATURATE", &v) && v == t->ceiling);
        CHECK(clred_header_get_string(h, "IMAGETYP", s, sizeof s) && !strcmp(s, clred_sim_imagetyp(f->kind)));
        CHECK(clred_header_get_string(h, "DATE-OBS", s, sizeof s) && !strcmp(s, f->date_obs));
        CHECK(clred_header_get_string(h, "FILTER", s, sizeof s));
        CHECK(clred_header_get_double(h, "SIMNCR", &v) && v == (double)f->ncrs);
        if (f->kind == CLRED_SIM_SCIENCE || f->kind == CLRED_SIM_EPOCH2) {
            CHECK(clred_header_get_double(h, "SIMDX", &v) && fabs(v - f->dx) < 1e-12);
            CHECK(clred_header_get_double(h, "SIMDY", &v) && fabs(v - f->dy) < 1e-12);
            CHECK(clred_header_get_double(h, "SIMFWHM", &v) && fabs(v - f->fwhm) < 1e-12);
        }
        clred_header_free(h);
    }
    char p[4096];
    path_in(p, sizeof p, dir, t->frames[0].name);
    clred_file_info info;
    CHECK_OK(clred_file_info_read(p, &info));
    CHECK(info.bitpix == 16); /* uint16 is BITPIX 16 with BZERO 32768 */
}

/* ------------------------------------------------------------- detector */

static const clred_sim_frame *frame_of(const clred_sim_truth *t, clred_sim_kind kind, int index, size_t *fi)
{
    for (size_t i = 0; i < t->nframes; i++)
        if (t->frames[i].kind == kind && t->frames[i].index == index) {
            if (fi)
                *fi = i;
            return &t->frames[i];
        }
    return NULL;
}

/* Read noise in ADU including the rounding to integers (uniform, 1/12). */
static double adu_noise_var(const clred_sim_truth *t)
{
    double r = t->opts.readnoise / t->opts.gain;
    return r * r + 1.0 / 12.0;
}

static void test_bias(const clred_sim_truth *t, const char *dir)
{
    size_t w = t->width, h = t->height, n = w * h;
    double var = adu_noise_var(t);
    double *colsum = calloc(w, sizeof *colsum);
    for (int b = 0; b < t->opts.nbias; b++) {
        double *d = read_pixels(dir, frame_of(t, CLRED_SIM_BIAS, b, NULL)->name, t, NULL);
        if (!d)
            continue;
        double s = 0, s2 = 0, level = 0;
        for (size_t i = 0; i < n; i++) {
            double r = d[i] - t->bias[i];
            s += r;
            s2 += r * r;
            level += d[i];
            colsum[i % w] += d[i] - t->opts.bias_level - ((double)(i / w) / (double)h - 0.5);
        }
        double mean = s / (double)n, sample_var = (s2 - s * mean) / (double)(n - 1);
        CHECK_NEAR(mean, 0.0, 5 * sqrt(var / (double)n));
        CHECK_NEAR(sample_var, var, 5 * var * sqrt(2.0 / (double)(n - 1)));
        /* The level: bias_level plus the mean column offset. */
        double mean_offset = 0;
        for (size_t x = 0; x < w; x++)
            mean_offset += t->column_offset[x] / (double)w;
        CHECK_NEAR(level / (double)n, t->opts.bias_level + mean_offset, 5 * sqrt(var / (double)n));
        free(d);
    }
    /* The column pattern is there: column means over rows and frames match the
     * truth's offsets to the noise of a mean of h * nbias pixels. */
    double m = (double)(h * (size_t)t->opts.nbias), rms = 0, spread = 0;
    for (size_t x = 0; x < w; x++) {
        double e = colsum[x] / m - t->column_offset[x];
        rms += e * e / (double)w;
        spread += t->column_offset[x] * t->column_offset[x] / (double)w;
    }
    double expected = var / m;
    CHECK_NEAR(rms, expected, 5 * expected * sqrt(2.0 / (double)w));
    CHECK(spread > 10 * expected); /* the offsets stand out of that noise */
    free(colsum);
}

static int is_cr_pixel(const clred_sim_frame *f, size_t x, size_t y)
{
    for (size_t i = 0; i < f->ncr_pixels; i++)
        if ((size_t)f->cr_pixels[i].x == x && (size_t)f->cr_pixels[i].y == y)
            return 1;
    return 0;
}

/* Dark current from (dark - mean of the bias frames), and the hot pixels. */
static void test_dark(const clred_sim_truth *t, const char *dir)
{
    size_t w = t->width, n = w * t->height;
    double g = t->opts.gain, var_adu = adu_noise_var(t);
    int nb = t->opts.nbias;
    double *bias = calloc(n, sizeof *bias);
    for (int b = 0; b < nb; b++) {
        double *d = read_pixels(dir, frame_of(t, CLRED_SIM_BIAS, b, NULL)->name, t, NULL);
        for (size_t i = 0; d && i < n; i++)
            bias[i] += d[i] / nb;
        free(d);
    }
    const clred_sim_frame *f = frame_of(t, CLRED_SIM_DARK, 0, NULL);
    double *d = read_pixels(dir, f->name, t, NULL);
    if (!d) {
        free(bias);
        return;
    }
    double texp = f->exptime, s = 0;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->dark[i] != t->opts.dark_current || is_cr_pixel(f, i % w, i / w))
            continue;
        s += (d[i] - bias[i]) * g / texp;
        used++;
    }
    /* Per pixel in e-: Poisson D t, the dark frame's read noise and that of
     * the mean bias (var / nb). */
    double var_e = t->opts.dark_current * texp + var_adu * g * g * (1.0 + 1.0 / nb);
    double tol = 5 * sqrt(var_e / (double)used) / texp;
    CHECK_NEAR(s / (double)used, t->opts.dark_current, tol);
    CHECK(tol < 0.2 * t->opts.dark_current); /* the check can tell the dark from zero */

    /* Hot pixels: their rate, unless saturated or hit by a cosmic ray. */
    size_t checked = 0;
    for (size_t k = 0; k < t->nhot; k++) {
        const clred_sim_hot_pixel *hp = &t->hot[k];
        size_t i = (size_t)hp->y * w + (size_t)hp->x;
        if (is_cr_pixel(f, (size_t)hp->x, (size_t)hp->y))
            continue;
        double e = hp->rate * texp;
        if (d[i] >= t->ceiling) {
            CHECK(t->bias[i] + e / g > t->ceiling - 5 * sqrt(e) / g);
            continue;
        }
        CHECK_NEAR((d[i] - bias[i]) * g, e, 5 * sqrt(var_e + e));
        checked++;
    }
    CHECK(checked >= 1);
    free(d);
    free(bias);
}

static void test_flat(const clred_sim_truth *t, const char *dir)
{
    size_t w = t->width, h = t->height, n = w * h;
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += t->flat[i] / (double)n;
    CHECK_NEAR(mean, 1.0, 1e-12);

    /* Vignetting: a 5x5 box in a corner against one at the centre follows
     * 1 - 0.4 (r / r_corner)^2; boxes average the 1% pixel response to 0.2%;
     * 1% allows for the dust rings' far wings. */
    double cx = 0.5 * (double)(w - 1), cy = 0.5 * (double)(h - 1), rc2 = cx * cx + cy * cy;
    double centre = 0, corner = 0;
    for (int j = -2; j <= 2; j++)
        for (int i = -2; i <= 2; i++) {
            centre += t->flat[(size_t)(cy + j) * w + (size_t)(cx + i)] / 25;
            corner += t->flat[(size_t)(2 + j) * w + (size_t)(2 + i)] / 25;
        }
    double r2 = (2 - cx) * (2 - cx) + (2 - cy) * (2 - cy);
    double vc = 1 - 0.4 * ((floor(cx) - cx) * (floor(cx) - cx) + (floor(cy) - cy) * (floor(cy) - cy)) / rc2;
    CHECK_NEAR(corner / centre, (1 - 0.4 * r2 / rc2) / vc, 0.01 * (1 - 0.4 * r2 / rc2) / vc);

    /* A flat frame divided by the lamp level is the flat, to Poisson noise. */
    size_t fi;
    const clred_sim_frame *f = frame_of(t, CLRED_SIM_FLAT, 0, &fi);
    double *d = read_pixels(dir, f->name, t, NULL);
    if (!d)
        return;
    double g = t->opts.gain, var_adu = adu_noise_var(t), chi = 0, chi2 = 0;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_cr_pixel(f, i % w, i / w))
            continue;
        double want = f->lamp * t->flat[i] + t->dark[i] * f->exptime;
        double got = (d[i] - t->bias[i]) * g;
        double c = (got - want) / sqrt(want + var_adu * g * g);
        chi += c;
        chi2 += c * c;
        used++;
    }
    CHECK_NEAR(chi / (double)used, 0.0, 5 / sqrt((double)used));
    CHECK_NEAR(chi2 / (double)used, 1.0, 5 * sqrt(2.0 / (double)used));
    /* ~20-30k ADU at the centre, as dome flats are exposed. */
    double c_adu = d[(size_t)cy * w + (size_t)cx];
    CHECK(c_adu > 20000 && c_adu < 32000);
    free(d);
}

/* Every frame against its noiseless expectation: (data - expected) over the
 * predicted noise has mean 0 and variance 1. This checks the noise model
 * (Poisson, read noise, gain, rounding); the signal is checked by the tests
 * that follow, independently of the renderer. */
static void test_noise_model(const clred_sim_truth *t, const char *dir)
{
    size_t n = t->width * t->height;
    double *e = malloc(n * sizeof *e);
    double g = t->opts.gain, var_adu = adu_noise_var(t);
    for (size_t fi = 0; fi < t->nframes; fi++) {
        double *d = read_pixels(dir, t->frames[fi].name, t, NULL);
        if (!d)
            continue;
        clred_sim_expected(t, fi, e);
        double s = 0, s2 = 0;
        size_t used = 0;
        for (size_t i = 0; i < n; i++) {
            if (d[i] >= t->ceiling || d[i] <= 0)
                continue;
            double c = ((d[i] - t->bias[i]) * g - e[i]) / sqrt(e[i] + var_adu * g * g);
            s += c;
            s2 += c * c;
            used++;
        }
        /* Poisson's excess kurtosis (1 / mean, < 0.1 here) widens the
         * variance's spread by at most 5%; 6 sigma covers it. */
        CHECK_MSG(fabs(s / (double)used) < 5 / sqrt((double)used), "%s: mean normalised residual %g",
                  t->frames[fi].name, s / (double)used);
        CHECK_MSG(fabs(s2 / (double)used - 1) < 6 * sqrt(2.0 / (double)used), "%s: residual variance %g",
                  t->frames[fi].name, s2 / (double)used);
        free(d);
    }
    free(e);
}

/* ------------------------------------------------------------ the sky */

/* Local background in e-, from the median of an annulus. */
static double annulus_median(const double *img, size_t w, size_t h, double x, double y, double r0, double r1)
{
    double *v = malloc((size_t)((2 * r1 + 2) * (2 * r1 + 2)) * sizeof *v);
    size_t m = 0;
    for (long j = (long)floor(y - r1); j <= (long)ceil(y + r1); j++)
        for (long i = (long)floor(x - r1); i <= (long)ceil(x + r1); i++) {
            double r = hypot((double)i - x, (double)j - y);
            if (i >= 0 && j >= 0 && i < (long)w && j < (long)h && r >= r0 && r < r1)
                v[m++] = img[(size_t)j * w + (size_t)i];
        }
    for (size_t a = 1; a < m; a++)
        for (size_t b = a; b > 0 && v[b - 1] > v[b]; b--) {
            double tmp = v[b];
            v[b] = v[b - 1];
            v[b - 1] = tmp;
        }
    double med = m ? (m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2])) : 0;
    free(v);
    return med;
}

/* A science frame in e- before the flat: ((ADU - bias) g - dark t) / flat. */
static double *photons(const clred_sim_truth *t, const char *dir, const clred_sim_frame *f)
{
    double *d = read_pixels(dir, f->name, t, NULL);
    for (size_t i = 0; d && i < t->width * t->height; i++)
        d[i] = ((d[i] - t->bias[i]) * t->opts.gain - t->dark[i] * f->exptime) / clred_sim_flat_of(t, f)[i];
    return d;
}

static int near_other_star(const clred_sim_truth *t, size_t s, double radius)
{
    for (size_t k = 0; k < t->nstars; k++)
        if (k != s && t->stars[k].flux > 0.01 * t->stars[s].flux &&
            hypot(t->stars[k].x - t->stars[s].x, t->stars[k].y - t->stars[s].y) < radius)
            return 1;
    return 0;
}

static int near_cosmic_ray(const clred_sim_frame *f, double x, double y, double radius)
{
    for (size_t i = 0; i < f->ncr_pixels; i++)
        if (hypot(f->cr_pixels[i].x - x, f->cr_pixels[i].y - y) < radius)
            return 1;
    return 0;
}

/* Stars sit at the truth position plus the frame's dither. A Gaussian-weighted
 * centroid (iterated, as SExtractor's windowed positions) converges to the
 * centre of any symmetric profile without the bias of a truncated box. Its
 * noise for these stars (>= 2e4 e-, FWHM <= 4 px, sky ~1800 e-/px) is about
 * FWHM / 2.35 * sqrt(2) / SNR <= 0.05 px; 0.15 px is 3 of those and far below
 * the dithers (up to 3 px) that it tells apart. */
static void test_star_positions(const clred_sim_truth *t, const char *dir)
{
    size_t w = t->width, h = t->height, measured = 0;
    for (int k = 0; k < t->opts.nscience; k++) {
        const clred_sim_frame *f = frame_of(t, CLRED_SIM_SCIENCE, k, NULL);
        double *p = photons(t, dir, f);
        if (!p)
            continue;
        for (size_t s = t->nsaturating; s < t->nstars; s++) {
            const clred_sim_star *st = &t->stars[s];
            double x = st->x + f->dx, y = st->y + f->dy;
            if (st->flux < 2e4 || st->flux > 5e5 || x < 10 || y < 10 || x > (double)w - 11 || y > (double)h - 11 ||
                near_other_star(t, s, 12) || near_cosmic_ray(f, x, y, 8))
                continue;
            double bg = annulus_median(p, w, h, x, y, 3 * f->fwhm, 3 * f->fwhm + 4);
            double sig = f->fwhm / 2.3548, xc = x + 0.7, yc = y - 0.5;
            for (int it = 0; it < 30; it++) {
                double sw = 0, sx = 0, sy = 0;
                for (long j = (long)yc - 8; j <= (long)yc + 8; j++)
                    for (long i = (long)xc - 8; i <= (long)xc + 8; i++) {
                        if (i < 0 || j < 0 || i >= (long)w || j >= (long)h)
                            continue;
                        double dx = (double)i - xc, dy = (double)j - yc;
                        double wt = exp(-(dx * dx + dy * dy) / (2 * sig * sig)) * (p[(size_t)j * w + (size_t)i] - bg);
                        sw += wt;
                        sx += wt * dx;
                        sy += wt * dy;
                    }
                xc += 2 * sx / sw;
                yc += 2 * sy / sw;
            }
            CHECK_MSG(hypot(xc - x, yc - y) < 0.15, "star %zu in %s at (%.3f, %.3f), truth (%.3f, %.3f)", s, f->name,
                      xc, yc, x, y);
            measured++;
        }
        free(p);
    }
    CHECK_MSG(measured >= 2, "only %zu stars were isolated enough to measure", measured);
}

/* Stars made to saturate are flat-topped at exactly the ceiling, and no pixel
 * anywhere exceeds it. */
static void test_saturation(const clred_sim_truth *t, const char *dir)
{
    size_t w = t->width, h = t->height;
    CHECK(t->nsaturating >= 1);
    for (size_t fi = 0; fi < t->nframes; fi++) {
        const clred_sim_frame *f = &t->frames[fi];
        double *d = read_pixels(dir, f->name, t, NULL);
        if (!d)
            continue;
        size_t at_ceiling = 0;
        for (size_t i = 0; i < w * h; i++) {
            CHECK_MSG(d[i] <= t->ceiling && d[i] >= 0, "%s: pixel %zu = %g beyond [0, %g]", f->name, i, d[i],
                      t->ceiling);
            at_ceiling += d[i] == t->ceiling;
        }
        if (f->kind == CLRED_SIM_SCIENCE || f->kind == CLRED_SIM_EPOCH2) {
            CHECK(at_ceiling >= t->nsaturating);
            for (size_t s = 0; s < t->nsaturating; s++) {
                long x = lround(t->stars[s].x + f->dx), y = lround(t->stars[s].y + f->dy);
                CHECK(x >= 0 && y >= 0 && x < (long)w && y < (long)h);
                CHECK_MSG(d[(size_t)y * w + (size_t)x] == t->ceiling, "%s: saturated star %zu peaks at %g, not %g",
                          f->name, s, d[(size_t)y * w + (size_t)x], t->ceiling);
            }
        }
        free(d);
    }
}

/* Cosmic-ray pixels stand out of their neighbourhood in their own frame, and
 * not in the next frame. With >= 1000 e- deposited and the sky's noise
 * ~50 e-, a pixel falls short of half its deposit only on a star's core or a
 * saturated patch: at least 90% must pass. */
static void test_cosmic_rays(const clred_sim_truth *t, const char *dir)
{
    size_t w = t->width, h = t->height;
    for (int k = 0; k < t->opts.nscience; k++) {
        const clred_sim_frame *f = frame_of(t, CLRED_SIM_SCIENCE, k, NULL);
        const clred_sim_frame *other = frame_of(t, CLRED_SIM_SCIENCE, (k + 1) % t->opts.nscience, NULL);
        double *p = read_pixels(dir, f->name, t, NULL);
        double *q = read_pixels(dir, other->name, t, NULL);
        CHECK(f->ncrs >= 3);
        size_t tried = 0, high = 0, high_elsewhere = 0;
        for (size_t i = 0; p && q && i < f->ncr_pixels; i++) {
            const clred_sim_cr_pixel *c = &f->cr_pixels[i];
            if (c->electrons < 1000 || is_cr_pixel(other, (size_t)c->x, (size_t)c->y))
                continue;
            double med_p = annulus_median(p, w, h, c->x, c->y, 2.5, 4.5);
            double med_q = annulus_median(q, w, h, c->x, c->y, 2.5, 4.5);
            size_t idx = (size_t)c->y * w + (size_t)c->x;
            tried++;
            high += p[idx] - med_p > 0.5 * c->electrons / t->opts.gain;
            high_elsewhere += q[idx] - med_q > 0.5 * c->electrons / t->opts.gain;
        }
        CHECK(tried >= 3);
        CHECK_MSG(high >= 0.9 * tried, "%s: %zu of %zu cosmic-ray pixels stand out", f->name, high, tried);
        CHECK_MSG(high_elsewhere <= 0.1 * tried, "%s: %zu of %zu cosmic-ray pixels are also high in %s", f->name,
                  high_elsewhere, tried, other->name);
        free(p);
        free(q);
    }
}

/* Aperture photometry (radius 2 FWHM, annulus sky) of a field position in a
 * science frame, in e-, with its predicted noise. */
static double aperture(const clred_sim_truth *t, const double *p, const clred_sim_frame *f, double fx, double fy,
                       double *model_fraction, double *sigma)
{
    size_t w = t->width, h = t->height;
    double x = fx + f->dx, y = fy + f->dy, r = 2 * f->fwhm;
    double bg = annulus_median(p, w, h, x, y, 3 * f->fwhm, 3 * f->fwhm + 5);
    double sum = 0, frac = 0, var = 0;
    size_t npix = 0;
    for (long j = (long)floor(y - r); j <= (long)ceil(y + r); j++)
        for (long i = (long)floor(x - r); i <= (long)ceil(x + r); i++)
            if (hypot((double)i - x, (double)j - y) <= r) {
                double v = p[(size_t)j * w + (size_t)i];
                sum += v - bg;
                frac += clred_sim_moffat(hypot((double)i - x, (double)j - y), f->fwhm);
                var += fmax(v, 0) + t->opts.readnoise * t->opts.readnoise;
                npix++;
            }
    *model_fraction = frac;
    /* Pixel noise plus the background estimate's (median over ~100 pixels). */
    *sigma = sqrt(var + (double)(npix * npix) * 1.57 * fmax(bg, 1) / 100.0);
    return sum;
}

/* Transients are in epoch 2 only, with the truth's flux. The aperture holds
 * a fraction of the PSF that we take from the analytic profile at pixel
 * centres; that and the faint neighbours (< 2000 e-) allow 5% of the flux
 * on top of 5 sigma. */
static void test_transients(const clred_sim_truth *t, const char *dir)
{
    CHECK(t->ntransients == (size_t)t->opts.ntransients);
    for (size_t k = 0; k < t->ntransients; k++) {
        const clred_sim_transient *tr = &t->transients[k];
        double base = tr->new_source ? 0 : t->stars[tr->star].flux;
        for (int epoch = 1; epoch <= 2; epoch++) {
            int count = epoch == 1 ? t->opts.nscience : t->opts.nepoch2;
            for (int i = 0; i < count; i++) {
                const clred_sim_frame *f = frame_of(t, epoch == 1 ? CLRED_SIM_SCIENCE : CLRED_SIM_EPOCH2, i, NULL);
                double *p = photons(t, dir, f);
                if (!p)
                    continue;
                double frac, sigma;
                double got = aperture(t, p, f, tr->x, tr->y, &frac, &sigma);
                double want = (base + (epoch == 2 ? tr->flux : 0)) * frac;
                CHECK_MSG(fabs(got - want) < 5 * sigma + 0.05 * (base + tr->flux),
                          "transient %zu (%s) in %s: %.0f e-, expected %.0f +- %.0f", k,
                          tr->new_source ? "new" : "brightened", f->name, got, want, sigma);
                if (epoch == 1)
                    CHECK(got < want + 0.25 * tr->flux * frac); /* absent */
                free(p);
            }
        }
    }
}

/* ------------------------------------------------- a multi-filter night */

/* Chi statistics of a flat frame against lamp * its filter's flat (Poisson
 * and read noise): mean 0 and variance 1 to 5 sigma of counting noise. */
static void check_flat_frame(const clred_sim_truth *t, const char *dir, const clred_sim_frame *f)
{
    size_t w = t->width, n = w * t->height;
    const double *flat = clred_sim_flat_of(t, f);
    double *d = read_pixels(dir, f->name, t, NULL);
    if (!d)
        return;
    double g = t->opts.gain, var_adu = adu_noise_var(t), chi = 0, chi2 = 0;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_cr_pixel(f, i % w, i / w))
            continue;
        double want = f->lamp * flat[i] + t->dark[i] * f->exptime;
        double c = ((d[i] - t->bias[i]) * g - want) / sqrt(want + var_adu * g * g);
        chi += c;
        chi2 += c * c;
        used++;
    }
    CHECK_MSG(fabs(chi / (double)used) < 5 / sqrt((double)used), "%s: mean chi %g against its filter's flat",
              f->name, chi / (double)used);
    CHECK_NEAR(chi2 / (double)used, 1.0, 5 * sqrt(2.0 / (double)used));
    free(d);
}

/* Corner-to-centre ratio of a flat over 5x5 boxes. */
static double corner_ratio(const clred_sim_truth *t, const double *flat)
{
    size_t w = t->width, h = t->height;
    double centre = 0, corner = 0;
    for (int j = -2; j <= 2; j++)
        for (int i = -2; i <= 2; i++) {
            centre += flat[(size_t)((long)(h / 2) + j) * w + (size_t)((long)(w / 2) + i)];
            corner += flat[(size_t)(2 + j) * w + (size_t)(2 + i)];
        }
    return corner / centre;
}

/* Several filters, flats per filter, short and long science exposures: file
 * names, the classification keywords, truth.json's per-frame kind, filter and
 * dither, each filter's flat in its flat frames, and the first filter's
 * frames equal to the single-filter night's. */
static void test_filters_night(void)
{
    char d[4096], one[4096];
    path_in(d, sizeof d, root, "night_filters");
    path_in(one, sizeof one, root, "night_one_filter");
    remove_tree(d);
    remove_tree(one);
    clred_sim_opts o = small_opts(777);
    o.nbias = 2;
    o.ndark = 1;
    o.nflat = 2;
    o.nscience = 2;
    o.nshort = 1;
    o.short_exptime = 20;
    o.nepoch2 = 1;
    o.filters = "g,r";
    clred_sim_truth t;
    CHECK_OK(clred_sim_truth_build(&o, &t));
    CHECK_OK(clred_simulate(&o, d, 0));
    CHECK(t.nfilters == 2 && !strcmp(t.filter_names[0], "g") && !strcmp(t.filter_names[1], "r"));
    CHECK(t.nframes == 2 + 1 + 2 * (2 + 3 + 1));

    /* Names, headers and the truth agree frame by frame. */
    int nshort = 0, per_filter[2] = {0, 0};
    for (size_t i = 0; i < t.nframes; i++) {
        const clred_sim_frame *f = &t.frames[i];
        int calib = f->kind == CLRED_SIM_BIAS || f->kind == CLRED_SIM_DARK;
        const char *filter = calib ? "NONE" : t.filter_names[f->filter];
        char want_name[64];
        if (calib)
            snprintf(want_name, sizeof want_name, "%s_%03d.fits", f->kind == CLRED_SIM_BIAS ? "bias" : "dark",
                     f->number);
        else
            snprintf(want_name, sizeof want_name, "%s_%s_%03d.fits",
                     f->kind == CLRED_SIM_FLAT ? "flat" : f->kind == CLRED_SIM_SCIENCE ? "sci" : "epoch2", filter,
                     f->number);
        CHECK_MSG(!strcmp(f->name, want_name), "frame %zu is %s, expected %s", i, f->name, want_name);
        clred_header *h = NULL;
        free(read_pixels(d, f->name, &t, &h));
        char s[80];
        double v;
        CHECK(clred_header_get_string(h, "FILTER", s, sizeof s) && !strcmp(s, filter));
        CHECK(clred_header_get_string(h, "IMAGETYP", s, sizeof s) && !strcmp(s, clred_sim_imagetyp(f->kind)));
        CHECK(clred_header_get_string(h, "OBJECT", s, sizeof s));
        CHECK(clred_header_get_double(h, "EXPTIME", &v) && v == f->exptime);
        CHECK(clred_header_get_string(h, "DATE-OBS", s, sizeof s) && !strcmp(s, f->date_obs));
        CHECK(clred_header_get_double(h, "GAIN", &v) && v == o.gain);
        CHECK(clred_header_get_double(h, "RDNOISE", &v) && v == o.readnoise);
        clred_header_free(h);
        if (f->kind == CLRED_SIM_SCIENCE) {
            nshort += f->exptime == o.short_exptime;
            CHECK(f->exptime == (f->number <= o.nscience ? o.science_exptime : o.short_exptime));
            per_filter[f->filter]++;
        }
    }
    CHECK(nshort == 2 && per_filter[0] == 3 && per_filter[1] == 3);
    /* Exposures start after the previous one ended. */
    for (size_t i = 1; i < t.nframes; i++)
        if (t.frames[i].kind == t.frames[i - 1].kind && t.frames[i].kind >= CLRED_SIM_SCIENCE)
            CHECK_MSG(strcmp(t.frames[i].date_obs, t.frames[i - 1].date_obs) > 0, "%s starts at %s, before %s",
                      t.frames[i].name, t.frames[i].date_obs, t.frames[i - 1].name);

    char p[4096], err[256];
    path_in(p, sizeof p, d, "truth.json");
    clred_json *j = clred_json_parse_file(p, err, sizeof err);
    CHECK_MSG(j != NULL, "truth.json: %s", err);
    const clred_json *frames = j ? clred_json_get(j, "frames") : NULL;
    CHECK(frames && frames->count == t.nframes);
    for (size_t i = 0; frames && i < frames->count; i++) {
        const clred_sim_frame *f = &t.frames[i];
        const clred_json *jf = clred_json_at(frames, i);
        CHECK(!strcmp(clred_json_str(clred_json_get(jf, "file")), f->name));
        CHECK(!strcmp(clred_json_str(clred_json_get(jf, "kind")), clred_sim_kind_name(f->kind)));
        CHECK(!strcmp(clred_json_str(clred_json_get(jf, "filter")),
                      f->kind <= CLRED_SIM_DARK ? "NONE" : t.filter_names[f->filter]));
        CHECK(clred_json_num(clred_json_get(jf, "exptime"), -1) == f->exptime);
        if (f->kind >= CLRED_SIM_SCIENCE) {
            CHECK_NEAR(clred_json_num(clred_json_get(jf, "dx"), NAN), f->dx, 1e-9);
            CHECK_NEAR(clred_json_num(clred_json_get(jf, "dy"), NAN), f->dy, 1e-9);
        }
    }
    const clred_json *filters = j ? clred_json_get(j, "filters") : NULL;
    CHECK(filters && filters->count == 2);
    if (filters && filters->count == 2)
        CHECK(!strcmp(clred_json_str(clred_json_get(clred_json_at(filters, 1), "flat_file")), "truth_flat_r.fits"));
    clred_json_free(j);

    /* Each filter has its own flat: written, of mean 1, and different in
     * shape (vignetting to 60% and to 68% in the corners, and a tilt). */
    size_t n = t.width * t.height;
    const char *flat_files[] = {"truth_flat_g.fits", "truth_flat_r.fits"};
    for (int k = 0; k < 2; k++) {
        double *f = read_pixels(d, flat_files[k], &t, NULL);
        double worst = 0, mean = 0;
        for (size_t i = 0; f && i < n; i++) {
            worst = fmax(worst, fabs(f[i] - t.flat[(size_t)k * n + i]));
            mean += t.flat[(size_t)k * n + i] / (double)n;
        }
        CHECK_MSG(f && worst < 1.2e-7 * 2, "%s differs from the truth by %g", flat_files[k], worst);
        CHECK_NEAR(mean, 1.0, 1e-12);
        free(f);
    }
    double rg = corner_ratio(&t, t.flat), rr = corner_ratio(&t, t.flat + n);
    CHECK_MSG(fabs(rg - rr) > 0.03, "the filters' flats have the same corner fall-off (%g, %g)", rg, rr);
    for (size_t i = 0; i < t.nframes; i++)
        if (t.frames[i].kind == CLRED_SIM_FLAT)
            check_flat_frame(&t, d, &t.frames[i]);

    /* The first filter's frames are the single-filter night's (same
     * dithers, seeing, noise), only named without the filter. */
    clred_sim_opts o1 = o;
    o1.filters = "g";
    clred_sim_truth t1;
    CHECK_OK(clred_sim_truth_build(&o1, &t1));
    CHECK_OK(clred_simulate(&o1, one, 0));
    size_t matched = 0;
    for (size_t i = 0; i < t1.nframes; i++) {
        const clred_sim_frame *f1 = &t1.frames[i];
        for (size_t k = 0; k < t.nframes; k++) {
            const clred_sim_frame *f = &t.frames[k];
            if (f->kind != f1->kind || f->index != f1->index || f->filter != 0)
                continue;
            CHECK(f->dx == f1->dx && f->dy == f1->dy && f->exptime == f1->exptime &&
                  !strcmp(f->date_obs, f1->date_obs));
            double *a = read_pixels(d, f->name, &t, NULL), *b = read_pixels(one, f1->name, &t1, NULL);
            int same = a && b && !memcmp(a, b, n * sizeof *a);
            CHECK_MSG(same, "%s of the g,r night differs from %s of the g night", f->name, f1->name);
            matched++;
            free(a);
            free(b);
        }
    }
    CHECK(matched == t1.nframes);

    /* Bad filter lists are usage errors naming the list. */
    const char *bad[] = {"g,,r", "g,g", "a/b", "1,2,3,4,5,6,7,8,9", "abcdefghijklmnopq"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        clred_sim_opts ob = o;
        ob.filters = bad[k];
        CHECK(clred_simulate(&ob, d, 1) == CLRED_ERR_USAGE);
        CHECK(strstr(clred_last_error(), "filters") != NULL);
    }
    clred_sim_opts ob = o;
    ob.nshort = -1;
    CHECK(clred_simulate(&ob, d, 1) == CLRED_ERR_USAGE);

    /* Overwriting with one filter removes the other filter's files. */
    CHECK_OK(clred_simulate(&o1, d, 1));
    path_in(p, sizeof p, d, "sci_r_001.fits");
    CHECK_MSG(access(p, F_OK) != 0, "a stale frame of the g,r night survived overwriting");
    path_in(p, sizeof p, d, "truth_flat_r.fits");
    CHECK(access(p, F_OK) != 0);
    path_in(p, sizeof p, d, "sci_001.fits");
    CHECK(access(p, F_OK) == 0);

    clred_sim_truth_free(&t);
    clred_sim_truth_free(&t1);
    remove_tree(d);
    remove_tree(one);
}

/* The default night (512x512, 27 frames) must take seconds. */
static void test_default_speed(void)
{
    char d[4096];
    path_in(d, sizeof d, root, "night_default");
    remove_tree(d);
    clred_sim_opts o = clred_sim_defaults();
    double t0 = clred_now();
    CHECK_OK(clred_simulate(&o, d, 0));
    double seconds = clred_now() - t0;
    fprintf(stderr, "default 512x512 night of 27 frames: %.2f s\n", seconds);
#ifndef CLRED_SANITIZED /* the sanitizers make it several times slower */
    CHECK(seconds < 20); /* ~1 s on one core; generous for loaded CI machines */
#endif
    remove_tree(d);
}

int main(void)
{
    snprintf(root, sizeof root, "%s", harness_tmpdir("test_simulate"));
    char a[4096];
    path_in(a, sizeof a, root, "night_a");
    remove_tree(a);

    clred_sim_opts o = small_opts(12345);
    clred_sim_truth t;
    CHECK_OK(clred_sim_truth_build(&o, &t));
    CHECK_OK(clred_simulate(&o, a, 0));

    test_determinism(&t, a);
    test_output_rules(&t, a);
    test_truth_files(&t, a);
    test_headers(&t, a);
    test_bias(&t, a);
    test_dark(&t, a);
    test_flat(&t, a);
    test_noise_model(&t, a);
    test_star_positions(&t, a);
    test_saturation(&t, a);
    test_cosmic_rays(&t, a);
    test_transients(&t, a);
    test_filters_night();
    test_default_speed();

    clred_sim_truth_free(&t);
    remove_tree(a);
    return harness_finish();
}
