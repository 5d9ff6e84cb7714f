/* Alert packets in ZTF's Avro schema (data/ztf_alert.avsc, embedded at build
 * time): one Avro object container file per candidate, written with the Avro
 * C library, its cutouts gzipped FITS images made in memory with cfitsio and
 * compressed with zlib, as brokers that read ZTF's stream expect them. */
#include <avro.h>
#include <errno.h>
#include <fitsio.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

extern const char clred_alert_schema_json[]; /* embedded_alert_schema.c */

#define CANDID_SLOTS 1000000 /* candid = pid * CANDID_SLOTS + number */

const char *clred_alert_schema(void)
{
    return clred_alert_schema_json;
}

clred_alert_info clred_alert_info_defaults(void)
{
    clred_alert_info a;
    memset(&a, 0, sizeof a);
    a.jd = NAN;
    a.magzpsci = CLRED_ALERT_DEFAULT_MAGZP;
    a.magzpsciunc = NAN;
    a.magzpref = NAN;
    a.diffmaglim = NAN;
    a.exptime = NAN;
    return a;
}

int64_t clred_alert_candid(const clred_alert_info *info, size_t k)
{
    return info->pid * CANDID_SLOTS + (int64_t)k + 1;
}

/* A header key from diff's header, else the new image's. */
static int get_double(const clred_header *a, const clred_header *b, const char *key, double *v)
{
    return (a && clred_header_get_double(a, key, v)) || (b && clred_header_get_double(b, key, v));
}

static int filter_id(const clred_header *a, const clred_header *b)
{
    char f[80] = "";
    if (!(a && clred_header_get_string(a, "FILTER", f, sizeof f)) && !(b && clred_header_get_string(b, "FILTER", f, sizeof f)))
        return 0;
    /* "g", "r", "i", and names such as "g'", "SDSS r", "ZTF_i": the band letter alone or before a non-letter */
    static const char bands[] = "gri";
    for (int k = 0; k < 3; k++) {
        char up = (char)(bands[k] - 'a' + 'A');
        for (const char *p = f; *p; p++) {
            int before = p == f || !((p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= 'A' && p[-1] <= 'Z'));
            int after = !((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z'));
            if ((*p == bands[k] || *p == up) && before && after)
                return k + 1;
        }
    }
    return 0;
}

/* 5 sigma of a PSF fit in the difference's typical noise. */
static double limiting_flux(const clred_image *diff, const clred_psf *psf)
{
    if (!diff || !diff->var || !psf || !psf->data || !psf->size)
        return NAN;
    double p2 = 0;
    for (size_t i = 0; i < psf->size * psf->size; i++)
        p2 += (double)psf->data[i] * psf->data[i];
    size_t npix = diff->width * diff->height, n = 0;
    float *v = malloc(npix * sizeof *v);
    if (!v || !(p2 > 0)) {
        free(v);
        return NAN;
    }
    for (size_t i = 0; i < npix; i++)
        if (diff->var[i] > 0 && isfinite(diff->var[i]) && !(diff->mask && (diff->mask[i] & CLRED_MASK_UNUSABLE)))
            v[n++] = diff->var[i];
    double med = n ? clred_median_inplace(v, n) : NAN;
    free(v);
    return 5.0 * sqrt(med / p2);
}

clred_status clred_alert_info_from(const clred_image *diff, const clred_psf *psf, const clred_header *new_hdr,
                                   const clred_header *ref_hdr, const char *diff_name, clred_alert_info *info)
{
    clred_alert_info a = clred_alert_info_defaults();
    const clred_header *dh = diff ? diff->header : NULL;
    double mjd = NAN, v;
    const clred_header *timed = NULL;
    if (dh && clred_header_mjd(dh, &mjd) == CLRED_OK)
        timed = dh;
    else if (new_hdr && clred_header_mjd(new_hdr, &mjd) == CLRED_OK)
        timed = new_hdr;
    clred_clear_error();
    if (timed) {
        /* clred_header_mjd gives the middle of the exposure; ZTF's jd is its start */
        if (clred_header_get_double(timed, "EXPTIME", &v) && v > 0)
            mjd -= 0.5 * v / 86400.0;
        if (!(mjd > 0 && mjd < 1e6))
            return clred_fail(CLRED_ERR_INPUT, "alerts: the exposure's MJD %.6f is out of range", mjd);
        a.jd = mjd + 2400000.5;
        a.pid = (int64_t)llround(mjd * 1e5);
    }
    a.fid = filter_id(dh, new_hdr);
    if (get_double(dh, new_hdr, "MAGZP", &v) && isfinite(v))
        a.magzpsci = v;
    if (get_double(dh, new_hdr, "MAGZPERR", &v) && isfinite(v))
        a.magzpsciunc = v;
    if (ref_hdr && clred_header_get_double(ref_hdr, "MAGZP", &v) && isfinite(v))
        a.magzpref = v;
    if (get_double(dh, new_hdr, "EXPTIME", &v) && isfinite(v))
        a.exptime = v;
    double lim = limiting_flux(diff, psf);
    if (lim > 0)
        a.diffmaglim = a.magzpsci - 2.5 * log10(lim);
    a.diff_name = diff_name;
    *info = a;
    return CLRED_OK;
}

/* ---- the cutouts: gzipped FITS images in memory */

typedef struct {
    unsigned char *data;
    size_t size;
} blob;

static clred_status gzip_bytes(const void *in, size_t n, blob *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16: a gzip stream (what .fits.gz readers expect), not raw zlib */
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return clred_fail(CLRED_ERR_MEMORY, "alerts: zlib could not start a gzip stream");
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    out->data = malloc(cap);
    if (!out->data) {
        deflateEnd(&z);
        return clred_fail(CLRED_ERR_MEMORY, "alerts: out of memory for a %zu byte stamp", cap);
    }
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out->data;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    out->size = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out->data);
        out->data = NULL;
        return clred_fail(CLRED_ERR_IO, "alerts: gzip of a stamp failed (zlib %d)", rc);
    }
    return CLRED_OK;
}

/* A size x size float image as a FITS file in memory, then gzipped. */
static clred_status fits_stamp(const float *plane, size_t size, const clred_candidate *c, const char *what, blob *out)
{
    size_t memsize = 2880 * 8;
    void *mem = malloc(memsize);
    if (!mem)
        return clred_fail(CLRED_ERR_MEMORY, "alerts: out of memory for a stamp");
    fitsfile *f;
    int status = 0;
    fits_create_memfile(&f, &mem, &memsize, 2880 * 4, realloc, &status);
    if (status) {
        free(mem);
        fits_clear_errmsg();
        return clred_fail(CLRED_ERR_MEMORY, "alerts: cfitsio could not open a file in memory");
    }
    long naxes[2] = {(long)size, (long)size};
    fits_create_img(f, FLOAT_IMG, 2, naxes, &status);
    /* where the stamp sits: the candidate's pixel is the centre one */
    double cx = c->x + 1, cy = c->y + 1;
    long x0 = lround(c->x) - (long)(size / 2) + 1, y0 = lround(c->y) - (long)(size / 2) + 1;
    fits_update_key(f, TSTRING, "STAMP", (void *)what, "cutout of this image", &status);
    fits_update_key(f, TDOUBLE, "CANDX", &cx, "candidate x (FITS, first pixel 1)", &status);
    fits_update_key(f, TDOUBLE, "CANDY", &cy, "candidate y (FITS, first pixel 1)", &status);
    fits_update_key(f, TLONG, "STAMPX0", &x0, "image x of the stamp's first pixel", &status);
    fits_update_key(f, TLONG, "STAMPY0", &y0, "image y of the stamp's first pixel", &status);
    fits_write_img(f, TFLOAT, 1, (LONGLONG)(size * size), (void *)plane, &status);
    LONGLONG head = 0, data = 0, end = 0;
    fits_flush_file(f, &status);
    fits_get_hduaddrll(f, &head, &data, &end, &status);
    int close_status = 0;
    fits_close_file(f, &close_status);
    clred_status st = CLRED_OK;
    if (status || close_status || end <= 0 || (size_t)end > memsize) {
        char text[FLEN_STATUS] = "";
        fits_get_errstatus(status ? status : close_status, text);
        fits_clear_errmsg();
        st = clred_fail(CLRED_ERR_IO, "alerts: writing a %s stamp in memory failed (%s)", what, text);
    } else {
        st = gzip_bytes(mem, (size_t)end, out);
    }
    free(mem);
    return st;
}

/* ---- the Avro record */

#define AV(call)                                                                                                       \
    do {                                                                                                               \
        if ((call) != 0)                                                                                               \
            return clred_fail(CLRED_ERR_IO, "alerts: %s: %s", name, avro_strerror());                                  \
    } while (0)

static clred_status field(avro_value_t *rec, const char *name, avro_value_t *out)
{
    if (avro_value_get_by_name(rec, name, out, NULL) != 0)
        return clred_fail(CLRED_ERR_IO, "alerts: the schema has no field %s", name);
    return CLRED_OK;
}

/* A nullable field (a union of null and one type): its null branch, or with
 * value set the other one. */
static clred_status branch(avro_value_t *rec, const char *name, int value, avro_value_t *out)
{
    avro_value_t u;
    CLRED_TRY(field(rec, name, &u));
    avro_schema_t us = avro_value_get_schema(&u);
    int disc = -1;
    if (!is_avro_union(us) || avro_schema_union_size(us) != 2 || !avro_schema_union_branch_by_name(us, &disc, "null"))
        return clred_fail(CLRED_ERR_IO, "alerts: the schema's %s is not nullable", name);
    AV(avro_value_set_branch(&u, value ? 1 - disc : disc, out));
    return CLRED_OK;
}

static clred_status put_null(avro_value_t *rec, const char *name)
{
    avro_value_t b;
    CLRED_TRY(branch(rec, name, 0, &b));
    AV(avro_value_set_null(&b));
    return CLRED_OK;
}

/* Nullable float: NaN becomes null. */
static clred_status opt_float(avro_value_t *rec, const char *name, double v)
{
    if (!isfinite(v))
        return put_null(rec, name);
    avro_value_t b;
    CLRED_TRY(branch(rec, name, 1, &b));
    AV(avro_value_set_float(&b, (float)v));
    return CLRED_OK;
}

static clred_status opt_double(avro_value_t *rec, const char *name, double v)
{
    if (!isfinite(v))
        return put_null(rec, name);
    avro_value_t b;
    CLRED_TRY(branch(rec, name, 1, &b));
    AV(avro_value_set_double(&b, v));
    return CLRED_OK;
}

static clred_status opt_int(avro_value_t *rec, const char *name, int v)
{
    avro_value_t b;
    CLRED_TRY(branch(rec, name, 1, &b));
    AV(avro_value_set_int(&b, v));
    return CLRED_OK;
}

static clred_status opt_string(avro_value_t *rec, const char *name, const char *s)
{
    if (!s)
        return put_null(rec, name);
    avro_value_t b;
    CLRED_TRY(branch(rec, name, 1, &b));
    AV(avro_value_set_string(&b, s));
    return CLRED_OK;
}

static clred_status put_float(avro_value_t *rec, const char *name, double v)
{
    avro_value_t f;
    CLRED_TRY(field(rec, name, &f));
    AV(avro_value_set_float(&f, (float)v));
    return CLRED_OK;
}

static clred_status put_double(avro_value_t *rec, const char *name, double v)
{
    avro_value_t f;
    CLRED_TRY(field(rec, name, &f));
    AV(avro_value_set_double(&f, v));
    return CLRED_OK;
}

static clred_status put_int(avro_value_t *rec, const char *name, int v)
{
    avro_value_t f;
    CLRED_TRY(field(rec, name, &f));
    AV(avro_value_set_int(&f, v));
    return CLRED_OK;
}

static clred_status put_long(avro_value_t *rec, const char *name, int64_t v)
{
    avro_value_t f;
    CLRED_TRY(field(rec, name, &f));
    AV(avro_value_set_long(&f, v));
    return CLRED_OK;
}

static clred_status put_string(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t f;
    CLRED_TRY(field(rec, name, &f));
    AV(avro_value_set_string(&f, s));
    return CLRED_OK;
}

static double mag(double zp, double flux)
{
    return flux != 0 && isfinite(flux) ? zp - 2.5 * log10(fabs(flux)) : NAN;
}

static double mag_err(double flux, double err)
{
    return flux != 0 && isfinite(flux) ? 2.5 / log(10.0) * err / fabs(flux) : NAN;
}

/* The candidate record; every field of the schema's subset is set (null where unknown). */
static clred_status fill_candidate(avro_value_t *cand, const clred_alert_info *info, const clred_candidate *c,
                                   int64_t candid)
{
    double magpsf = mag(info->magzpsci, c->flux), magap = mag(info->magzpsci, c->ap_flux);
    double zpref = isfinite(info->magzpref) ? info->magzpref : info->magzpsci;
    CLRED_TRY(put_double(cand, "jd", info->jd));
    CLRED_TRY(put_int(cand, "fid", info->fid));
    CLRED_TRY(put_long(cand, "pid", info->pid));
    CLRED_TRY(opt_float(cand, "diffmaglim", info->diffmaglim));
    CLRED_TRY(opt_string(cand, "pdiffimfilename", info->diff_name));
    CLRED_TRY(put_null(cand, "programpi"));
    CLRED_TRY(put_int(cand, "programid", 0));
    CLRED_TRY(put_long(cand, "candid", candid));
    CLRED_TRY(put_string(cand, "isdiffpos", c->isdiffpos ? "t" : "f"));
    static const char *const unknown[] = {"tblid", "nid", "rcid", "field", "chipsf", "sigmagnr", "chinr", "sharpnr",
                                          "sky", "classtar", "seeratio", "rb", "ssdistnr", "ssmagnr", "ssnamenr",
                                          "dsnrms", "ssnrms", "drb"};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        CLRED_TRY(put_null(cand, unknown[i]));
    CLRED_TRY(opt_float(cand, "xpos", c->x + 1));
    CLRED_TRY(opt_float(cand, "ypos", c->y + 1));
    CLRED_TRY(put_double(cand, "ra", c->ra));
    CLRED_TRY(put_double(cand, "dec", c->dec));
    CLRED_TRY(put_float(cand, "magpsf", magpsf));
    CLRED_TRY(put_float(cand, "sigmapsf", mag_err(c->flux, c->flux_err)));
    CLRED_TRY(opt_float(cand, "magap", magap));
    CLRED_TRY(opt_float(cand, "sigmagap", mag_err(c->ap_flux, c->ap_flux_err)));
    CLRED_TRY(opt_float(cand, "distnr", c->ref_dist));
    CLRED_TRY(opt_float(cand, "magnr", c->ref_flux > 0 ? mag(zpref, c->ref_flux) : NAN));
    CLRED_TRY(opt_float(cand, "magdiff", magap - magpsf));
    CLRED_TRY(opt_float(cand, "fwhm", c->fwhm));
    CLRED_TRY(opt_float(cand, "mindtoedge", c->edge_dist));
    CLRED_TRY(opt_float(cand, "magfromlim", info->diffmaglim - magap));
    CLRED_TRY(opt_float(cand, "elong", c->elongation));
    CLRED_TRY(opt_int(cand, "nneg", c->nneg));
    CLRED_TRY(opt_int(cand, "nbad", c->nbad));
    CLRED_TRY(opt_float(cand, "sumrat", c->sumrat));
    CLRED_TRY(opt_double(cand, "scorr", fabs(c->score)));
    CLRED_TRY(opt_float(cand, "magzpsci", info->magzpsci));
    CLRED_TRY(opt_float(cand, "magzpsciunc", info->magzpsciunc));
    CLRED_TRY(opt_float(cand, "exptime", info->exptime));
    return CLRED_OK;
}

/* An IAU-style name from the position (J2000 sexagesimal), else one from candid. */
static void object_id(const clred_candidate *c, int64_t candid, char *out, size_t size)
{
    if (!(isfinite(c->ra) && isfinite(c->dec))) {
        snprintf(out, size, "clred%lld", (long long)candid);
        return;
    }
    double ra = fmod(fmod(c->ra, 360.0) + 360.0, 360.0) / 15.0, dec = fabs(c->dec);
    long rs = lround(floor(ra * 360000.0)) % (24L * 360000); /* hundredths of a second of time, truncated */
    long ds = lround(floor(dec * 36000.0));                   /* tenths of an arcsecond */
    snprintf(out, size, "clredJ%02ld%02ld%02ld.%02ld%c%02ld%02ld%02ld.%ld", rs / 360000, rs / 6000 % 60, rs / 100 % 60,
             rs % 100, c->dec < 0 ? '-' : '+', ds / 36000, ds / 600 % 60, ds / 10 % 60, ds % 10);
}

typedef struct {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t rec;
    int have_value;
    float *plane;
    blob stamps[3];
} alert_writer;

static void writer_free(alert_writer *w)
{
    if (w->have_value)
        avro_value_decref(&w->rec);
    if (w->iface)
        avro_value_iface_decref(w->iface);
    if (w->schema)
        avro_schema_decref(w->schema);
    free(w->plane);
    for (int k = 0; k < 3; k++)
        free(w->stamps[k].data);
}

static clred_status fill_alert(alert_writer *w, const clred_alert_info *info, const clred_image *const imgs[3],
                               const clred_candidate *c, size_t size, int64_t candid)
{
    static const char *const fields[3] = {"cutoutScience", "cutoutTemplate", "cutoutDifference"};
    static const char *const suffix[3] = {"targ_sci", "ref", "targ_scimref"};
    static const char *const what[3] = {"new", "reference", "difference"};
    avro_value_t *rec = &w->rec, cand, b, f;
    const char *name = "alert";
    AV(avro_value_reset(rec));
    char id[64];
    object_id(c, candid, id, sizeof id);
    CLRED_TRY(put_string(rec, "schemavsn", "3.3"));
    CLRED_TRY(put_string(rec, "publisher", "clred " CLRED_VERSION));
    CLRED_TRY(put_string(rec, "objectId", id));
    CLRED_TRY(put_long(rec, "candid", candid));
    CLRED_TRY(field(rec, "candidate", &cand));
    CLRED_TRY(fill_candidate(&cand, info, c, candid));
    CLRED_TRY(put_null(rec, "prv_candidates"));
    for (int k = 0; k < 3; k++) {
        free(w->stamps[k].data);
        w->stamps[k].data = NULL;
        if (!imgs[k] || !imgs[k]->sci) {
            CLRED_TRY(put_null(rec, fields[k]));
            continue;
        }
        clred_cutout_plane(imgs[k], c, size, w->plane);
        CLRED_TRY(fits_stamp(w->plane, size, c, what[k], &w->stamps[k]));
        char fname[128];
        snprintf(fname, sizeof fname, "candid%lld_pid%lld_%s.fits.gz", (long long)candid, (long long)info->pid,
                 suffix[k]);
        CLRED_TRY(branch(rec, fields[k], 1, &b));
        name = fields[k];
        AV(avro_value_get_by_name(&b, "fileName", &f, NULL));
        AV(avro_value_set_string(&f, fname));
        AV(avro_value_get_by_name(&b, "stampData", &f, NULL));
        AV(avro_value_set_bytes(&f, w->stamps[k].data, w->stamps[k].size));
    }
    return CLRED_OK;
}

/* One container file holding the record, through a temporary renamed into place. */
static clred_status write_file(alert_writer *w, const char *path)
{
    char tmp[PATH_MAX];
    FILE *fp;
    CLRED_TRY(clred_atomic_open(path, 1, tmp, sizeof tmp, &fp));
    /* a block must hold the whole record: its stamps plus the candidate's few hundred bytes */
    size_t block = 65536;
    for (int k = 0; k < 3; k++)
        block += w->stamps[k].size;
    avro_file_writer_t fw;
    if (avro_file_writer_create_with_codec_fp(fp, path, 0, w->schema, &fw, "null", block) != 0) {
        clred_status st = clred_fail(CLRED_ERR_IO, "%s: cannot start an Avro file (%s)", path, avro_strerror());
        fclose(fp);
        clred_atomic_discard(tmp);
        return st;
    }
    int rc = avro_file_writer_append_value(fw, &w->rec);
    char why[256];
    snprintf(why, sizeof why, "%s", rc ? avro_strerror() : "");
    rc |= avro_file_writer_close(fw);
    if (rc) {
        fclose(fp);
        clred_atomic_discard(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing the alert failed (%s)", path, why[0] ? why : avro_strerror());
    }
    return clred_atomic_close(fp, tmp, path);
}

static void remove_written(const char *dir, const clred_alert_info *info, size_t nwritten, int made_dir)
{
    char path[PATH_MAX];
    for (size_t k = 0; k < nwritten; k++) {
        snprintf(path, sizeof path, "%s/%lld.avro", dir, (long long)clred_alert_candid(info, k));
        remove(path);
    }
    if (made_dir)
        rmdir(dir);
}

clred_status clred_alerts_write(const char *dir, const clred_alert_info *info, const clred_image *new_img,
                                const clred_image *ref, const clred_image *diff, const clred_candidate *list, size_t n,
                                size_t size, int overwrite)
{
    if (!dir || !*dir || !info)
        return clred_fail(CLRED_ERR_USAGE, "alerts: no directory given");
    if (size == 0 || size % 2 == 0 || size > 1023)
        return clred_fail(CLRED_ERR_USAGE, "alerts: the cutout size must be odd, 1..1023 px, got %zu", size);
    if (n >= CANDID_SLOTS)
        return clred_fail(CLRED_ERR_USAGE, "alerts: %zu candidates; at most %d fit the candid numbering", n,
                          CANDID_SLOTS - 1);
    if (info->pid < 0 || info->pid > (INT64_MAX - CANDID_SLOTS) / CANDID_SLOTS)
        return clred_fail(CLRED_ERR_USAGE, "alerts: processing id %lld is out of range", (long long)info->pid);
    const clred_image *imgs[3] = {new_img, ref, diff};
    static const char *const names[3] = {"new image", "reference", "difference"};
    for (int k = 0; k < 3; k++)
        if (imgs[k] && !imgs[k]->sci)
            return clred_fail(CLRED_ERR_USAGE, "alerts: the %s has no pixels", names[k]);
    struct stat sb;
    int made_dir = 0;
    if (stat(dir, &sb) != 0) {
        if (mkdir(dir, 0777) != 0)
            return clred_fail(CLRED_ERR_IO, "%s: cannot create the alert directory (%s)", dir, strerror(errno));
        made_dir = 1;
    } else if (!S_ISDIR(sb.st_mode)) {
        return clred_fail(CLRED_ERR_IO, "%s: exists and is not a directory (alerts go into a directory)", dir);
    }
    clred_status st = CLRED_OK;
    char path[PATH_MAX];
    /* every name is checked before the first is written */
    for (size_t k = 0; k < n && st == CLRED_OK; k++) {
        if ((size_t)snprintf(path, sizeof path, "%s/%lld.avro", dir, (long long)clred_alert_candid(info, k)) >=
            sizeof path)
            st = clred_fail(CLRED_ERR_USAGE, "%s: path too long", dir);
        else
            st = clred_output_check(path, NULL, 0, overwrite);
    }
    alert_writer w;
    memset(&w, 0, sizeof w);
    if (st == CLRED_OK && avro_schema_from_json_length(clred_alert_schema_json, strlen(clred_alert_schema_json),
                                                       &w.schema) != 0)
        st = clred_fail(CLRED_ERR_IO, "alerts: the embedded schema does not parse (%s)", avro_strerror());
    if (st == CLRED_OK && !(w.iface = avro_generic_class_from_schema(w.schema)))
        st = clred_fail(CLRED_ERR_MEMORY, "alerts: no Avro class for the schema (%s)", avro_strerror());
    if (st == CLRED_OK) {
        if (avro_generic_value_new(w.iface, &w.rec) != 0)
            st = clred_fail(CLRED_ERR_MEMORY, "alerts: no Avro value (%s)", avro_strerror());
        else
            w.have_value = 1;
    }
    if (st == CLRED_OK && !(w.plane = malloc(size * size * sizeof *w.plane)))
        st = clred_fail(CLRED_ERR_MEMORY, "alerts: out of memory for a %zu px cutout", size);
    size_t written = 0;
    for (size_t k = 0; k < n && st == CLRED_OK; k++) {
        int64_t candid = clred_alert_candid(info, k);
        snprintf(path, sizeof path, "%s/%lld.avro", dir, (long long)candid);
        st = fill_alert(&w, info, imgs, &list[k], size, candid);
        if (st == CLRED_OK)
            st = write_file(&w, path);
        written += st == CLRED_OK;
    }
    writer_free(&w);
    if (st != CLRED_OK)
        remove_written(dir, info, written, made_dir);
    return st;
}
