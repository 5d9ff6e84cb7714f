/* Catalogs: FITS binary tables and CSV, each written to a temporary name and
 * renamed into place; and reading x, y positions from CSV. */
#include <ctype.h>
#include <errno.h>
#include <fitsio.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "json.h"

typedef struct {
    const char *name;
    const char *unit;
    int is_int;
    double *d; /* nrows values (integers are stored exactly in doubles too) */
} column;

/* Significant digits in CSV: 10, more for times (d: MJD to 1 ms) and
 * sky positions (deg: to 0.04 mas). */
static int csv_digits(const column *c) { return !strcmp(c->unit, "d") ? 15 : !strcmp(c->unit, "deg") ? 13 : 10; }

static clred_status write_fits(const char *path, const column *cols, int ncols, size_t nrows,
                               const clred_header *header)
{
    char tmp[PATH_MAX];
    CLRED_TRY(clred_atomic_temp_name(path, tmp, sizeof tmp));
    fitsfile *f;
    int status = 0;
    if (fits_create_file(&f, tmp, &status)) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status, text);
        fits_clear_errmsg();
        return clred_fail(CLRED_ERR_IO, "%s: cannot create (%s)", path, text);
    }
    char *ttype[40], *tform[40], *tunit[40];
    for (int c = 0; c < ncols; c++) {
        ttype[c] = (char *)cols[c].name;
        tform[c] = cols[c].is_int ? "1K" : "1D";
        tunit[c] = (char *)cols[c].unit;
    }
    /* cfitsio adds an empty primary array before the first table. */
    fits_create_tbl(f, BINARY_TBL, (LONGLONG)nrows, ncols, ttype, tform, tunit, "CATALOG", &status);
    for (size_t i = 0; header && i < clred_header_count(header) && !status; i++) {
        char card[FLEN_CARD];
        snprintf(card, sizeof card, "%s", clred_header_card(header, i));
        size_t len = strlen(card);
        while (len > 8 && card[len - 1] == ' ')
            card[--len] = '\0';
        fits_write_record(f, card, &status);
    }
    long long *ibuf = malloc((nrows ? nrows : 1) * sizeof *ibuf);
    if (!ibuf && !status)
        status = MEMORY_ALLOCATION;
    for (int c = 0; c < ncols && !status && nrows; c++) {
        if (cols[c].is_int) {
            for (size_t i = 0; i < nrows; i++)
                ibuf[i] = (long long)cols[c].d[i];
            fits_write_col(f, TLONGLONG, c + 1, 1, 1, (LONGLONG)nrows, ibuf, &status);
        } else {
            /* NaN is written as an IEEE NaN, which FITS readers take as null */
            fits_write_col(f, TDOUBLE, c + 1, 1, 1, (LONGLONG)nrows, cols[c].d, &status);
        }
    }
    free(ibuf);
    int close_status = 0;
    fits_close_file(f, &close_status);
    if (status || close_status) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status ? status : close_status, text);
        fits_clear_errmsg();
        clred_atomic_discard(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing the table failed (%s)", path, text);
    }
    return clred_atomic_commit(tmp, path);
}

static clred_status write_csv(const char *path, const column *cols, int ncols, size_t nrows)
{
    char tmp[PATH_MAX];
    CLRED_TRY(clred_atomic_temp_name(path, tmp, sizeof tmp));
    FILE *fp = fopen(tmp, "w");
    if (!fp)
        return clred_fail(CLRED_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    for (int c = 0; c < ncols; c++)
        fprintf(fp, "%s%s", c ? "," : "", cols[c].name);
    fputc('\n', fp);
    for (size_t i = 0; i < nrows; i++) {
        for (int c = 0; c < ncols; c++) {
            double v = cols[c].d[i];
            if (c)
                fputc(',', fp);
            if (cols[c].is_int)
                fprintf(fp, "%lld", (long long)v);
            else if (isnan(v))
                fputs("nan", fp);
            else
                fprintf(fp, "%.*g", csv_digits(&cols[c]), v);
        }
        fputc('\n', fp);
    }
    return clred_atomic_close(fp, tmp, path);
}

/* Checks both outputs before writing either, so a refusal leaves nothing behind. */
static clred_status write_catalog(const char *fits_path, const char *csv_path, const column *cols, int ncols,
                                  size_t nrows, const clred_header *header, int overwrite)
{
    if (!fits_path && !csv_path)
        return clred_fail(CLRED_ERR_USAGE, "no catalog output given");
    if (fits_path && csv_path && strcmp(fits_path, csv_path) == 0)
        return clred_fail(CLRED_ERR_USAGE, "%s: the FITS and CSV catalogs need different names", fits_path);
    if (fits_path)
        CLRED_TRY(clred_output_check(fits_path, NULL, 0, overwrite));
    if (csv_path)
        CLRED_TRY(clred_output_check(csv_path, NULL, 0, overwrite));
    if (fits_path)
        CLRED_TRY(write_fits(fits_path, cols, ncols, nrows, header));
    if (csv_path) {
        clred_status st = write_csv(csv_path, cols, ncols, nrows);
        if (st != CLRED_OK && fits_path)
            remove(fits_path);
        return st;
    }
    return CLRED_OK;
}

static void free_columns(column *cols, int n)
{
    for (int c = 0; c < n; c++)
        free(cols[c].d);
}

static int alloc_columns(column *cols, int n, size_t nrows)
{
    int ok = 1;
    for (int c = 0; c < n; c++)
        if (!(cols[c].d = malloc((nrows ? nrows : 1) * sizeof(double))))
            ok = 0;
    return ok;
}

/* RA and Dec columns after X and Y when the header has a celestial WCS:
 * cols holds room for two more; the columns from index 3 on move right. */
static clred_status add_sky_columns(column *cols, int *nc, size_t n, const clred_header *header)
{
    if (!header || !clred_header_has_wcs(header))
        return CLRED_OK;
    clred_wcs *w;
    CLRED_TRY(clred_wcs_from_header(header, &w));
    double *ra = malloc((n ? n : 1) * sizeof *ra), *dec = malloc((n ? n : 1) * sizeof *dec);
    clred_status st = ra && dec ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory for %zu sky positions", n);
    if (st == CLRED_OK)
        st = clred_wcs_pix2sky(w, n, cols[1].d, cols[2].d, ra, dec);
    clred_wcs_free(w);
    if (st != CLRED_OK) {
        free(ra);
        free(dec);
        return st;
    }
    memmove(&cols[5], &cols[3], (size_t)(*nc - 3) * sizeof *cols);
    cols[3] = (column){"RA", "deg", 0, ra};
    cols[4] = (column){"DEC", "deg", 0, dec};
    *nc += 2;
    return CLRED_OK;
}

clred_status clred_sources_write(const char *fits_path, const char *csv_path, const clred_source *list, size_t n,
                                 const clred_header *header, int overwrite)
{
    column cols[] = {{"NUMBER", "", 1, NULL},     {"X", "pix", 0, NULL},     {"Y", "pix", 0, NULL},
                     {"FLUX", "adu", 0, NULL},    {"FLUX_ERR", "adu", 0, NULL}, {"PEAK", "adu", 0, NULL},
                     {"A", "pix", 0, NULL},       {"B", "pix", 0, NULL},     {"THETA", "deg", 0, NULL},
                     {"FWHM", "pix", 0, NULL},    {"ELLIPTICITY", "", 0, NULL}, {"NPIX", "", 1, NULL},
                     {"FLAGS", "", 1, NULL}, {0}, {0}};
    int nc = (int)(sizeof cols / sizeof *cols) - 2; /* two spare for RA, Dec */
    if (!alloc_columns(cols, nc, n)) {
        free_columns(cols, nc);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a catalog of %zu sources", n);
    }
    for (size_t i = 0; i < n; i++) {
        const clred_source *s = &list[i];
        double row[] = {(double)(i + 1), s->x, s->y, s->flux, s->flux_err, s->peak, s->a, s->b, s->theta,
                        s->fwhm, s->ellipticity, (double)s->npix, (double)s->flags};
        for (int c = 0; c < nc; c++)
            cols[c].d[i] = row[c];
    }
    clred_status st = add_sky_columns(cols, &nc, n, header);
    if (st == CLRED_OK)
        st = write_catalog(fits_path, csv_path, cols, nc, n, header, overwrite);
    free_columns(cols, nc);
    return st;
}

static const char *const cand_names[] = {"NUMBER", "X", "Y", "X_ERR", "Y_ERR", "ISDIFFPOS", "SCORE", "FLUX", "FLUX_ERR",
                                         "AP_FLUX", "AP_FLUX_ERR", "SNR", "FWHM", "ELONGATION", "NNEG", "NBAD",
                                         "SUMRAT", "LOBE_POS", "LOBE_NEG", "EDGE_DIST", "MASKBITS", "FLAGS",
                                         "RA", "DEC", "REF_DIST", "REF_FLUX"};
static const char *const cand_units[] = {"", "pix", "pix", "pix", "pix", "", "sigma", "", "", "", "", "", "pix", "",
                                         "", "", "", "", "", "pix", "", "", "deg",
                                         "deg", "pix", ""};
#define CAND_NCOLS ((int)(sizeof cand_names / sizeof *cand_names))

static void cand_row(const clred_candidate *c, size_t i, double *row)
{
    double r[] = {(double)(i + 1), c->x, c->y, c->x_err, c->y_err, (double)c->isdiffpos, c->score, c->flux,
                  c->flux_err, c->ap_flux, c->ap_flux_err, c->snr, c->fwhm, c->elongation, (double)c->nneg,
                  (double)c->nbad, c->sumrat, c->lobe_pos, c->lobe_neg, c->edge_dist, (double)c->mask_bits,
                  (double)c->flags, c->ra, c->dec, c->ref_dist, c->ref_flux};
    memcpy(row, r, sizeof r);
}

static int cand_is_int(int c)
{
    return c == 0 || c == 5 || c == 14 || c == 15 || c == 20 || c == 21;
}

static clred_status write_cand_json(const char *path, const clred_candidate *list, size_t n)
{
    char tmp[PATH_MAX];
    FILE *f;
    CLRED_TRY(clred_atomic_open(path, 1, tmp, sizeof tmp, &f));
    clred_json_writer w;
    clred_json_init(&w, f);
    clred_json_begin_object(&w, NULL, 0);
    clred_json_int(&w, "count", (long long)n);
    clred_json_begin_array(&w, "candidates", 0);
    for (size_t i = 0; i < n; i++) {
        double row[CAND_NCOLS];
        cand_row(&list[i], i, row);
        clred_json_begin_object(&w, NULL, 1);
        for (int c = 0; c < CAND_NCOLS; c++) {
            char key[32];
            size_t k = 0;
            for (; cand_names[c][k] && k + 1 < sizeof key; k++)
                key[k] = (char)tolower((unsigned char)cand_names[c][k]);
            key[k] = '\0';
            if (cand_is_int(c))
                clred_json_int(&w, key, (long long)row[c]);
            else
                clred_json_number(&w, key, row[c]);
        }
        clred_json_end_object(&w);
    }
    clred_json_end_array(&w);
    clred_json_end_object(&w);
    fputc('\n', f);
    return clred_atomic_close(f, tmp, path);
}

clred_status clred_candidates_write(const char *fits_path, const char *csv_path, const char *json_path,
                                    const clred_candidate *list, size_t n, int overwrite)
{
    if (!fits_path && !csv_path && !json_path)
        return clred_fail(CLRED_ERR_USAGE, "no candidate catalog output given");
    if (json_path) {
        CLRED_TRY(clred_output_check(json_path, NULL, 0, overwrite));
        if ((fits_path && strcmp(fits_path, json_path) == 0) || (csv_path && strcmp(csv_path, json_path) == 0))
            return clred_fail(CLRED_ERR_USAGE, "%s: the catalogs need different names", json_path);
    }
    column cols[CAND_NCOLS];
    for (int c = 0; c < CAND_NCOLS; c++)
        cols[c] = (column){cand_names[c], cand_units[c], cand_is_int(c), NULL};
    if (!alloc_columns(cols, CAND_NCOLS, n)) {
        free_columns(cols, CAND_NCOLS);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a catalog of %zu candidates", n);
    }
    for (size_t i = 0; i < n; i++) {
        double row[CAND_NCOLS];
        cand_row(&list[i], i, row);
        for (int c = 0; c < CAND_NCOLS; c++)
            cols[c].d[i] = row[c];
    }
    clred_status st = fits_path || csv_path ? write_catalog(fits_path, csv_path, cols, CAND_NCOLS, n, NULL, overwrite)
                                            : CLRED_OK;
    free_columns(cols, CAND_NCOLS);
    if (st == CLRED_OK && json_path) {
        st = write_cand_json(json_path, list, n);
        if (st != CLRED_OK) {
            if (fits_path)
                remove(fits_path);
            if (csv_path)
                remove(csv_path);
        }
    }
    return st;
}

clred_status clred_phot_write_psf(const char *fits_path, const char *csv_path, const clred_phot *list,
                                  const clred_psf_phot *psf, size_t n, const clred_header *header, int overwrite)
{
    column cols[] = {{"NUMBER", "", 1, NULL},   {"X", "pix", 0, NULL},        {"Y", "pix", 0, NULL},
                     {"FLUX", "adu", 0, NULL},  {"FLUX_ERR", "adu", 0, NULL}, {"MAG", "mag", 0, NULL},
                     {"MAG_ERR", "mag", 0, NULL}, {"AREA", "pix2", 0, NULL},  {"BKG", "adu", 0, NULL},
                     {"BKG_RMS", "adu", 0, NULL}, {"NANNULUS", "", 1, NULL},  {"FLAGS", "", 1, NULL},
                     {"PSF_X", "pix", 0, NULL}, {"PSF_Y", "pix", 0, NULL}, {"PSF_FLUX", "adu", 0, NULL},
                     {"PSF_FLUX_ERR", "adu", 0, NULL}, {"PSF_MAG", "mag", 0, NULL}, {"PSF_MAG_ERR", "mag", 0, NULL},
                     {"PSF_SKY", "adu", 0, NULL}, {"PSF_CHI2", "", 0, NULL}, {"PSF_FLAGS", "", 1, NULL},
                     {0}, {0}};
    enum { NAP = 12, NPSF = 9 };
    int nc = psf ? NAP + NPSF : NAP;
    if (!alloc_columns(cols, nc, n)) {
        free_columns(cols, nc);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a catalog of %zu positions", n);
    }
    for (size_t i = 0; i < n; i++) {
        const clred_phot *p = &list[i];
        double row[NAP + NPSF] = {(double)(i + 1), p->x,   p->y,   p->flux,    p->flux_err,         p->mag,
                                  p->mag_err,      p->area, p->bkg, p->bkg_rms, (double)p->nannulus, (double)p->flags};
        if (psf) {
            const clred_psf_phot *q = &psf[i];
            double extra[NPSF] = {q->x, q->y, q->flux, q->flux_err, q->mag, q->mag_err, q->sky, q->chi2_dof,
                                  (double)q->flags};
            memcpy(row + NAP, extra, sizeof extra);
        }
        for (int c = 0; c < nc; c++)
            cols[c].d[i] = row[c];
    }
    clred_status st = add_sky_columns(cols, &nc, n, header);
    if (st == CLRED_OK)
        st = write_catalog(fits_path, csv_path, cols, nc, n, header, overwrite);
    free_columns(cols, nc);
    return st;
}

clred_status clred_phot_write(const char *fits_path, const char *csv_path, const clred_phot *list, size_t n,
                              const clred_header *header, int overwrite)
{
    return clred_phot_write_psf(fits_path, csv_path, list, NULL, n, header, overwrite);
}

clred_status clred_lc_write(const char *fits_path, const char *csv_path, const clred_lc_point *list, size_t n,
                            int overwrite)
{
    column cols[] = {{"TARGET", "", 1, NULL},  {"IMAGE", "", 1, NULL},     {"MJD", "d", 0, NULL},
                     {"X", "pix", 0, NULL},    {"Y", "pix", 0, NULL},      {"FLUX", "adu", 0, NULL},
                     {"FLUX_ERR", "adu", 0, NULL}, {"MAG", "mag", 0, NULL}, {"MAG_ERR", "mag", 0, NULL},
                     {"FLAGS", "", 1, NULL}};
    int nc = (int)(sizeof cols / sizeof *cols);
    if (!alloc_columns(cols, nc, n)) {
        free_columns(cols, nc);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a light curve of %zu points", n);
    }
    for (size_t i = 0; i < n; i++) {
        const clred_lc_point *p = &list[i];
        double row[] = {(double)p->target, (double)p->image, p->mjd,     p->x,       p->y,
                        p->flux,           p->flux_err,      p->mag,     p->mag_err, (double)p->flags};
        for (int c = 0; c < nc; c++)
            cols[c].d[i] = row[c];
    }
    clred_status st = write_catalog(fits_path, csv_path, cols, nc, n, NULL, overwrite);
    free_columns(cols, nc);
    return st;
}

/* ------------------------------------------------------------ positions */

char *clred_csv_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s[n - 1] = '\0';
        s++;
    }
    return s;
}

int clred_csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        fields[n++] = clred_csv_trim(p);
        if (!comma)
            break;
        p = comma + 1;
    }
    return n;
}

static int parse_number(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && *end == '\0' && errno == 0;
}

clred_status clred_positions_read(const char *path, double **xo, double **yo, size_t *no)
{
    *xo = *yo = NULL;
    *no = 0;
    FILE *fp = fopen(path, "r");
    if (!fp)
        return clred_fail(CLRED_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
    char line[4096];
    char *fields[64];
    int xcol = 0, ycol = 1, header_seen = 0;
    size_t n = 0, cap = 0, lineno = 0;
    double *x = NULL, *y = NULL;
    clred_status st = CLRED_OK;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(fp)) {
            st = clred_fail(CLRED_ERR_INPUT, "%s: line %zu is longer than %zu characters", path, lineno,
                            sizeof line - 2);
            break;
        }
        char *t = clred_csv_trim(line);
        if (!*t || *t == '#')
            continue;
        int nf = clred_csv_split(t, fields, 64);
        double vx, vy;
        if (!header_seen && n == 0 && !parse_number(fields[0], &vx)) {
            header_seen = 1;
            xcol = ycol = -1;
            for (int c = 0; c < nf; c++) {
                if (strcasecmp(fields[c], "x") == 0)
                    xcol = c;
                else if (strcasecmp(fields[c], "y") == 0)
                    ycol = c;
            }
            if (xcol < 0 || ycol < 0) {
                st = clred_fail(CLRED_ERR_INPUT, "%s: the header line has no 'x' and 'y' columns", path);
                break;
            }
            continue;
        }
        if (nf <= xcol || nf <= ycol || !parse_number(fields[xcol], &vx) || !parse_number(fields[ycol], &vy) ||
            !isfinite(vx) || !isfinite(vy)) {
            st = clred_fail(CLRED_ERR_INPUT, "%s: line %zu: expected numbers in columns %d and %d", path, lineno,
                            xcol + 1, ycol + 1);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            double *nx = realloc(x, cap * sizeof *nx);
            if (nx)
                x = nx;
            double *ny = nx ? realloc(y, cap * sizeof *ny) : NULL;
            if (ny)
                y = ny;
            if (!nx || !ny) {
                st = clred_fail(CLRED_ERR_MEMORY, "%s: out of memory at line %zu", path, lineno);
                break;
            }
        }
        x[n] = vx;
        y[n] = vy;
        n++;
    }
    fclose(fp);
    if (st == CLRED_OK && n == 0)
        st = clred_fail(CLRED_ERR_INPUT, "%s: no positions", path);
    if (st != CLRED_OK) {
        free(x);
        free(y);
        return st;
    }
    *xo = x;
    *yo = y;
    *no = n;
    return CLRED_OK;
}
