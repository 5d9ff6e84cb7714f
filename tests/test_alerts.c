/* Alert packets (clred_alerts_write): candidates with known values written as
 * ZTF Avro alerts and read back with libavro's own reader: every field equals
 * what the candidate and the frame's header give (computed here from their
 * definitions), the gzipped FITS cutouts inflate (zlib) and read (cfitsio) to
 * the images' pixels, NaN off the image; unknown fields are null. Then the
 * failures: no file left behind, nothing overwritten. No OpenCL. */
#include <avro.h>
#include <dirent.h>
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "harness.h"

#define W 90
#define H 70
#define STAMP 63

static void make_image(clred_image *img, harness_rng *rng, double scale)
{
    CHECK_OK(clred_image_alloc(img, W, H, 1, 1));
    if (!img->header)
        img->header = clred_header_new();
    for (size_t i = 0; i < (size_t)W * H; i++) {
        img->sci[i] = (float)(scale * harness_normal(rng));
        img->var[i] = 4.0f;
        img->mask[i] = 0;
    }
}

static clred_candidate make_candidate(double x, double y, int pos, double flux)
{
    clred_candidate c;
    memset(&c, 0, sizeof c);
    c.x = x;
    c.y = y;
    c.x_err = 0.05;
    c.y_err = 0.06;
    c.isdiffpos = pos;
    c.score = pos ? 7.5 : -6.25;
    c.flux = flux;
    c.flux_err = fabs(flux) / 9.0;
    c.ap_flux = flux * 1.1;
    c.ap_flux_err = fabs(flux) / 7.0;
    c.snr = 9.0;
    c.fwhm = 3.25;
    c.elongation = 1.125;
    c.nneg = 2;
    c.nbad = 1;
    c.sumrat = 0.875;
    c.edge_dist = fmin(fmin(x, y), fmin(W - 1 - x, H - 1 - y));
    c.ra = 150.123456;
    c.dec = -2.5;
    c.ref_dist = 3.5;
    c.ref_flux = 2500.0;
    return c;
}

/* ---- reading back with libavro */

/* A field's value, through a union's branch; *is_null set for null. */
static int get_value(avro_value_t *rec, const char *name, avro_value_t *out, int *is_null)
{
    avro_value_t f;
    *is_null = 0;
    if (avro_value_get_by_name(rec, name, &f, NULL) != 0) {
        harness_fail(__FILE__, __LINE__, "field %s missing", name);
        return 0;
    }
    if (avro_value_get_type(&f) == AVRO_UNION) {
        if (avro_value_get_current_branch(&f, out) != 0)
            return 0;
        *is_null = avro_value_get_type(out) == AVRO_NULL;
        return 1;
    }
    *out = f;
    return 1;
}

/* A number as double (NaN for null); *type receives its Avro type. */
static double number(avro_value_t *rec, const char *name, avro_type_t *type)
{
    avro_value_t v;
    int null;
    if (!get_value(rec, name, &v, &null))
        return -12345;
    *type = avro_value_get_type(&v);
    if (null)
        return NAN;
    /* the getters leave these alone on failure: a value no field holds */
    float f = -12345.0f;
    double d = -12345.0;
    int32_t i = -12345;
    int64_t l = -12345;
    switch (*type) {
    case AVRO_FLOAT: avro_value_get_float(&v, &f); return f;
    case AVRO_DOUBLE: avro_value_get_double(&v, &d); return d;
    case AVRO_INT32: avro_value_get_int(&v, &i); return i;
    case AVRO_INT64: avro_value_get_long(&v, &l); return (double)l;
    default: return -12345;
    }
}

/* float fields hold the value rounded to float; NaN (null) equals NaN */
#define CHECK_FLOAT(rec, name, want)                                                                                   \
    do {                                                                                                               \
        avro_type_t t_ = AVRO_NULL;                                                                                    \
        double got_ = number(rec, name, &t_), w_ = (want);                                                             \
        CHECK_MSG(isnan(w_) ? isnan(got_) : (t_ == AVRO_FLOAT && got_ == (double)(float)w_),                          \
                  "%s = %.9g (type %d), expected %.9g", name, got_, (int)t_, w_);                                      \
    } while (0)
#define CHECK_EXACT(rec, name, want, want_type)                                                                        \
    do {                                                                                                               \
        avro_type_t t_ = AVRO_NULL;                                                                                    \
        double got_ = number(rec, name, &t_), w_ = (want);                                                             \
        CHECK_MSG(t_ == (want_type) && (got_ == w_ || (isnan(got_) && isnan(w_))),                                    \
                  "%s = %.17g (type %d), expected %.17g", name, got_, (int)t_, w_);                                    \
    } while (0)

static const char *string_field(avro_value_t *rec, const char *name, int *is_null)
{
    avro_value_t v;
    const char *s = NULL;
    size_t n;
    if (get_value(rec, name, &v, is_null) && !*is_null)
        avro_value_get_string(&v, &s, &n);
    return s;
}

static int is_null(avro_value_t *rec, const char *name)
{
    avro_value_t v;
    int null = 0;
    return get_value(rec, name, &v, &null) && null;
}

/* Inflates a gzipped FITS stamp and reads its image. */
static int read_stamp(const void *gz, size_t n, float *out, double *candx)
{
    size_t cap = 1 << 20;
    unsigned char *fits = malloc(cap);
    z_stream z;
    memset(&z, 0, sizeof z);
    inflateInit2(&z, 15 + 16);
    z.next_in = (Bytef *)gz;
    z.avail_in = (uInt)n;
    z.next_out = fits;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_FINISH);
    size_t len = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(fits);
        return 0;
    }
    CHECK_MSG(len % 2880 == 0, "stamp FITS of %zu bytes is no multiple of 2880", len);
    fitsfile *f;
    int status = 0, naxis = 0, anynul = 0;
    long naxes[2] = {0, 0};
    void *mem = fits;
    fits_open_memfile(&f, "stamp.fits", READONLY, &mem, &len, 0, NULL, &status);
    fits_get_img_dim(f, &naxis, &status);
    fits_get_img_size(f, 2, naxes, &status);
    CHECK(naxis == 2 && naxes[0] == STAMP && naxes[1] == STAMP);
    float nanval = NAN;
    fits_read_img(f, TFLOAT, 1, STAMP * STAMP, &nanval, out, &anynul, &status);
    fits_read_key(f, TDOUBLE, "CANDX", candx, NULL, &status);
    fits_close_file(f, &status);
    free(fits);
    return status == 0;
}

/* The cutout computed here: the candidate's pixel in the centre, NaN off the image. */
static void expected_stamp(const clred_image *img, const clred_candidate *c, float *out)
{
    long cx = lround(c->x), cy = lround(c->y);
    for (long j = 0; j < STAMP; j++)
        for (long i = 0; i < STAMP; i++) {
            long x = cx - STAMP / 2 + i, y = cy - STAMP / 2 + j;
            out[j * STAMP + i] = x >= 0 && y >= 0 && x < W && y < H ? img->sci[y * W + x] : NAN;
        }
}

static int same_pixels(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(a[i] == b[i] || (isnan(a[i]) && isnan(b[i]))))
            return 0;
    return 1;
}

static void check_cutout(avro_value_t *rec, const char *name, const clred_image *img, const clred_candidate *c,
                         int64_t candid, const char *suffix)
{
    avro_value_t b, f;
    int null = 0;
    if (!get_value(rec, name, &b, &null))
        return;
    if (!img) {
        CHECK_MSG(null, "%s should be null", name);
        return;
    }
    CHECK_MSG(!null, "%s is null", name);
    if (null)
        return;
    const char *fname = NULL;
    size_t n = 0;
    avro_value_get_by_name(&b, "fileName", &f, NULL);
    avro_value_get_string(&f, &fname, &n);
    char want[128];
    snprintf(want, sizeof want, "candid%lld_", (long long)candid);
    CHECK_MSG(fname && strncmp(fname, want, strlen(want)) == 0 && strstr(fname, suffix), "%s fileName %s", name,
              fname ? fname : "(none)");
    const void *gz = NULL;
    avro_value_get_by_name(&b, "stampData", &f, NULL);
    avro_value_get_bytes(&f, &gz, &n);
    float got[STAMP * STAMP], exp[STAMP * STAMP];
    double candx = 0;
    CHECK_MSG(n > 18 && read_stamp(gz, n, got, &candx), "%s: the stamp does not inflate and read as FITS", name);
    expected_stamp(img, c, exp);
    CHECK_MSG(same_pixels(got, exp, STAMP * STAMP), "%s: the stamp's pixels differ from the image's", name);
    CHECK_NEAR(candx, c->x + 1, 1e-9);
}

static double mag(double zp, double flux)
{
    return zp - 2.5 * log10(fabs(flux));
}

/* Reads dir/<candid>.avro and checks every field against the candidate and the header's values. */
static void check_alert(const char *dir, const clred_alert_info *info, const clred_candidate *c, size_t k,
                        const clred_image *new_img, const clred_image *ref, const clred_image *diff, double want_zp,
                        double want_zpref, double want_jd, int want_fid, double want_lim)
{
    int64_t candid = clred_alert_candid(info, k);
    CHECK(candid == info->pid * 1000000 + (int64_t)k + 1);
    char path[4200];
    snprintf(path, sizeof path, "%s/%lld.avro", dir, (long long)candid);
    avro_file_reader_t r;
    if (avro_file_reader(path, &r) != 0) {
        harness_fail(__FILE__, __LINE__, "%s: libavro cannot open it: %s", path, avro_strerror());
        return;
    }
    avro_schema_t ws = avro_file_reader_get_writer_schema(r);
    CHECK(strcmp(avro_schema_name(ws), "alert") == 0 && strcmp(avro_schema_namespace(ws), "ztf") == 0);
    avro_value_iface_t *iface = avro_generic_class_from_schema(ws);
    avro_value_t rec, cand;
    avro_generic_value_new(iface, &rec);
    CHECK_MSG(avro_file_reader_read_value(r, &rec) == 0, "%s: no record: %s", path, avro_strerror());
    avro_value_t extra;
    avro_generic_value_new(iface, &extra);
    CHECK_MSG(avro_file_reader_read_value(r, &extra) != 0, "%s holds more than one record", path);
    avro_value_decref(&extra);

    int null = 0;
    const char *s = string_field(&rec, "schemavsn", &null);
    CHECK(s && strcmp(s, "3.3") == 0);
    s = string_field(&rec, "publisher", &null);
    CHECK(s && strncmp(s, "clred", 5) == 0);
    s = string_field(&rec, "objectId", &null);
    /* RA 150.123456 deg = 10h00m29.62944s, Dec -2.5 = -02d30m00.0s */
    CHECK_MSG(s && strcmp(s, "clredJ100029.62-023000.0") == 0, "objectId %s", s ? s : "(none)");
    CHECK_EXACT(&rec, "candid", (double)candid, AVRO_INT64);
    CHECK(is_null(&rec, "prv_candidates"));

    avro_value_get_by_name(&rec, "candidate", &cand, NULL);
    CHECK_EXACT(&cand, "candid", (double)candid, AVRO_INT64);
    CHECK_EXACT(&cand, "jd", want_jd, AVRO_DOUBLE);
    CHECK_EXACT(&cand, "fid", want_fid, AVRO_INT32);
    CHECK_EXACT(&cand, "pid", (double)info->pid, AVRO_INT64);
    CHECK_EXACT(&cand, "programid", 0, AVRO_INT32);
    s = string_field(&cand, "isdiffpos", &null);
    CHECK(s && strcmp(s, c->isdiffpos ? "t" : "f") == 0);
    CHECK_EXACT(&cand, "ra", c->ra, AVRO_DOUBLE);
    CHECK_EXACT(&cand, "dec", c->dec, AVRO_DOUBLE);
    CHECK_FLOAT(&cand, "xpos", c->x + 1);
    CHECK_FLOAT(&cand, "ypos", c->y + 1);
    double magpsf = mag(want_zp, c->flux), magap = mag(want_zp, c->ap_flux);
    CHECK_FLOAT(&cand, "magpsf", magpsf);
    CHECK_FLOAT(&cand, "sigmapsf", 2.5 / log(10.0) * c->flux_err / fabs(c->flux));
    CHECK_FLOAT(&cand, "magap", magap);
    CHECK_FLOAT(&cand, "sigmagap", 2.5 / log(10.0) * c->ap_flux_err / fabs(c->ap_flux));
    CHECK_FLOAT(&cand, "magdiff", magap - magpsf);
    CHECK_FLOAT(&cand, "distnr", c->ref_dist);
    CHECK_FLOAT(&cand, "magnr", isnan(c->ref_flux) ? NAN : mag(want_zpref, c->ref_flux));
    CHECK_FLOAT(&cand, "fwhm", c->fwhm);
    CHECK_FLOAT(&cand, "elong", c->elongation);
    CHECK_FLOAT(&cand, "mindtoedge", c->edge_dist);
    CHECK_FLOAT(&cand, "sumrat", c->sumrat);
    CHECK_EXACT(&cand, "nneg", c->nneg, AVRO_INT32);
    CHECK_EXACT(&cand, "nbad", c->nbad, AVRO_INT32);
    CHECK_EXACT(&cand, "scorr", fabs(c->score), AVRO_DOUBLE);
    CHECK_FLOAT(&cand, "magzpsci", want_zp);
    CHECK_FLOAT(&cand, "diffmaglim", want_lim);
    CHECK_FLOAT(&cand, "magfromlim", want_lim - magap);
    s = string_field(&cand, "pdiffimfilename", &null);
    CHECK(info->diff_name ? s && strcmp(s, info->diff_name) == 0 : null);
    static const char *const nulls[] = {"programpi", "tblid", "nid", "rcid", "field", "chipsf", "sigmagnr", "chinr",
                                        "sharpnr", "sky", "classtar", "seeratio", "rb", "ssdistnr", "ssmagnr",
                                        "ssnamenr", "dsnrms", "ssnrms", "drb"};
    for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
        CHECK_MSG(is_null(&cand, nulls[i]), "%s is not null", nulls[i]);
    check_cutout(&rec, "cutoutScience", new_img, c, candid, "_targ_sci.fits.gz");
    check_cutout(&rec, "cutoutTemplate", ref, c, candid, "_ref.fits.gz");
    check_cutout(&rec, "cutoutDifference", diff, c, candid, "_targ_scimref.fits.gz");
    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(ws);
    avro_file_reader_close(r);
}

static size_t count_entries(const char *dir, const char *tail)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' || strstr(e->d_name, ".tmp")) {
            size_t a = strlen(e->d_name), b = strlen(tail);
            n += a >= b && strcmp(e->d_name + a - b, tail) == 0;
        }
    if (d)
        closedir(d);
    return n;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4200];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (remove(path) != 0)
            rmdir(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int main(void)
{
    const char *tmp = harness_tmpdir("test_alerts");
    char dir[4200], dir2[4200], file[4200];
    snprintf(dir, sizeof dir, "%s/alerts", tmp);
    snprintf(dir2, sizeof dir2, "%s/alerts2", tmp);
    snprintf(file, sizeof file, "%s/plain_file", tmp);
    remove_dir(dir);
    remove_dir(dir2);

    harness_rng rng = {12345};
    clred_image new_img, ref, diff;
    make_image(&new_img, &rng, 10.0);
    make_image(&ref, &rng, 5.0);
    make_image(&diff, &rng, 2.0);
    diff.mask[5] = CLRED_MASK_BAD; /* an unusable pixel's variance is left out of the limit */
    diff.var[5] = 1e6f;
    /* the frame: mid-exposure at MJD 60000.25 + 15 s, i.e. the exposure starts at 60000.25 */
    CHECK_OK(clred_header_set_double(diff.header, "MJD-OBS", 60000.25, NULL));
    CHECK_OK(clred_header_set_double(diff.header, "EXPTIME", 30.0, NULL));
    CHECK_OK(clred_header_set_string(new_img.header, "FILTER", "SDSS r'", NULL));
    CHECK_OK(clred_header_set_double(new_img.header, "MAGZP", 27.5, NULL));
    CHECK_OK(clred_header_set_double(ref.header, "MAGZP", 28.25, NULL));

    /* a 15 x 15 Gaussian PSF (sigma 1.5 px), unit sum */
    clred_psf psf;
    memset(&psf, 0, sizeof psf);
    float pdata[15 * 15];
    double sum = 0, p2 = 0;
    for (int j = 0; j < 15; j++)
        for (int i = 0; i < 15; i++)
            sum += pdata[j * 15 + i] = (float)exp(-((i - 7) * (i - 7) + (j - 7) * (j - 7)) / (2 * 1.5 * 1.5));
    for (int i = 0; i < 15 * 15; i++) {
        pdata[i] = (float)(pdata[i] / sum);
        p2 += (double)pdata[i] * pdata[i];
    }
    psf.size = 15;
    psf.data = pdata;

    clred_alert_info info;
    CHECK_OK(clred_alert_info_from(&diff, &psf, new_img.header, ref.header, "diff.fits", &info));
    double want_jd = 60000.25 + 2400000.5, want_lim = 27.5 - 2.5 * log10(5.0 * sqrt(4.0 / p2));
    CHECK_NEAR(info.jd, want_jd, 1e-8);
    CHECK(info.pid == 6000025000LL);
    CHECK(info.fid == 2);
    CHECK_NEAR(info.magzpsci, 27.5, 0);
    CHECK_NEAR(info.magzpref, 28.25, 0);
    CHECK_NEAR(info.exptime, 30.0, 0);
    CHECK_NEAR(info.diffmaglim, want_lim, 1e-9);

    /* inside, at an edge (the cutout runs off the image), fading, and one without a reference source */
    clred_candidate c[4] = {make_candidate(40.3, 30.7, 1, 1234.5), make_candidate(2.2, 66.6, 1, 88.0),
                            make_candidate(60.0, 10.0, 0, -456.0), make_candidate(75.5, 50.49, 1, 15.0)};
    c[3].ref_dist = NAN;
    c[3].ref_flux = NAN;
    CHECK_OK(clred_alerts_write(dir, &info, &new_img, &ref, &diff, c, 4, STAMP, 0));
    CHECK(count_entries(dir, ".avro") == 4);
    for (size_t k = 0; k < 4; k++)
        check_alert(dir, &info, &c[k], k, &new_img, &ref, &diff, 27.5, 28.25, info.jd, 2, want_lim);

    /* no time, filter or zero point: jd NaN, pid 0, fid 0, MAGZP 25, the reference's zero point the same;
       without the new image and the reference their cutouts are null */
    clred_image bare;
    make_image(&bare, &rng, 1.0);
    CHECK_OK(clred_header_set_string(bare.header, "FILTER", "V", NULL));
    clred_alert_info info2;
    CHECK_OK(clred_alert_info_from(&bare, NULL, NULL, NULL, NULL, &info2));
    CHECK(isnan(info2.jd) && info2.pid == 0 && info2.fid == 0 && info2.magzpsci == 25.0 && isnan(info2.diffmaglim));
    CHECK_OK(clred_alerts_write(dir2, &info2, NULL, NULL, &bare, c, 2, STAMP, 0));
    for (size_t k = 0; k < 2; k++)
        check_alert(dir2, &info2, &c[k], k, NULL, NULL, &bare, 25.0, 25.0, NAN, 0, NAN);

    /* failures leave nothing of theirs behind: existing alerts are not replaced without overwrite */
    CHECK(clred_alerts_write(dir2, &info2, NULL, NULL, &bare, c, 3, STAMP, 0) != CLRED_OK);
    CHECK_MSG(count_entries(dir2, ".avro") == 2, "a refused call wrote alerts");
    /* candidate 3's name taken by a non-empty directory: the alerts written before it are removed again */
    char dir3[4300], blocker[4400], inside[4500];
    snprintf(dir3, sizeof dir3, "%s/alerts3", tmp);
    remove_dir(dir3);
    mkdir(dir3, 0755);
    snprintf(blocker, sizeof blocker, "%s/%lld.avro", dir3, (long long)clred_alert_candid(&info2, 2));
    mkdir(blocker, 0755);
    snprintf(inside, sizeof inside, "%s/x", blocker);
    FILE *fx = fopen(inside, "w");
    if (fx)
        fclose(fx);
    CHECK(clred_alerts_write(dir3, &info2, NULL, NULL, &bare, c, 3, STAMP, 1) != CLRED_OK);
    CHECK_MSG(count_entries(dir3, ".avro") == 1 && count_entries(dir3, ".tmp") == 0,
              "a failed call left %zu alerts, %zu temporaries", count_entries(dir3, ".avro") - 1,
              count_entries(dir3, ".tmp"));
    remove(inside);
    remove_dir(dir3);
    FILE *f = fopen(file, "w");
    if (f)
        fclose(f);
    CHECK(clred_alerts_write(file, &info2, NULL, NULL, &bare, c, 1, STAMP, 0) == CLRED_ERR_IO);
    CHECK(clred_alerts_write(dir, &info2, NULL, NULL, &bare, c, 1, 64, 1) == CLRED_ERR_USAGE);
    char fresh[4300];
    snprintf(fresh, sizeof fresh, "%s/fresh", tmp);
    remove_dir(fresh);
    CHECK_OK(clred_alerts_write(fresh, &info2, NULL, NULL, &bare, c, 0, STAMP, 0));
    struct stat sb;
    CHECK(stat(fresh, &sb) == 0 && S_ISDIR(sb.st_mode) && count_entries(fresh, ".avro") == 0);
    remove(file);
    remove_dir(fresh);

    clred_image_free(&new_img);
    clred_image_free(&ref);
    clred_image_free(&diff);
    clred_image_free(&bare);
    return harness_finish();
}
