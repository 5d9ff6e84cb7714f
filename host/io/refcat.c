/* Reference catalogs (e.g. a Gaia extract) from a CSV file or a FITS table:
 * RA and Dec in degrees and a magnitude, found by column name. */
#include <ctype.h>
#include <errno.h>
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static const char *ra_names[] = {"ra", "ra_icrs", "raj2000", "ra_deg", "alpha_j2000", NULL};
static const char *dec_names[] = {"dec", "de_icrs", "dej2000", "dec_deg", "delta_j2000", "de", NULL};
static const char *mag_names[] = {"mag", "phot_g_mean_mag", "gmag", "rmag", "vmag", "mag_auto", NULL};
static const char *colour_names[] = {"colour", "color", "bp_rp", NULL};

static int name_is(const char *field, const char *const *names, const char *wanted)
{
    if (wanted)
        return strcasecmp(field, wanted) == 0;
    for (int i = 0; names[i]; i++)
        if (strcasecmp(field, names[i]) == 0)
            return 1;
    return 0;
}

void clred_refcat_free(clred_refcat *c)
{
    if (!c)
        return;
    free(c->ra);
    free(c->dec);
    free(c->mag);
    free(c->colour);
    memset(c, 0, sizeof *c);
}

static clred_status grow(clred_refcat *c, size_t *cap)
{
    if (c->n < *cap)
        return CLRED_OK;
    size_t nc = *cap ? 2 * *cap : 1024;
    double *p[4] = {realloc(c->ra, nc * sizeof(double)), NULL, NULL, NULL};
    if (p[0])
        c->ra = p[0];
    p[1] = p[0] ? realloc(c->dec, nc * sizeof(double)) : NULL;
    if (p[1])
        c->dec = p[1];
    p[2] = p[1] ? realloc(c->mag, nc * sizeof(double)) : NULL;
    if (p[2])
        c->mag = p[2];
    p[3] = p[2] ? realloc(c->colour, nc * sizeof(double)) : NULL;
    if (p[3])
        c->colour = p[3];
    if (!p[3])
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for a reference catalog of %zu stars", nc);
    *cap = nc;
    return CLRED_OK;
}

static double number(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    return end != s && *end == '\0' ? v : NAN;
}

static clred_status read_csv(const char *path, const char *mag_column, clred_refcat *c)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return clred_fail(CLRED_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
    char line[8192];
    int col[4] = {-1, -1, -1, -1}, header = 0;
    size_t cap = 0, lineno = 0;
    clred_status st = CLRED_OK;
    while (st == CLRED_OK && fgets(line, sizeof line, fp)) {
        lineno++;
        char *t = clred_csv_trim(line);
        if (!*t || *t == '#')
            continue;
        char *fields[256];
        int nf = clred_csv_split(t, fields, 256);
        if (!header) {
            header = 1;
            for (int k = 0; k < nf; k++) {
                if (col[0] < 0 && name_is(fields[k], ra_names, NULL))
                    col[0] = k;
                else if (col[1] < 0 && name_is(fields[k], dec_names, NULL))
                    col[1] = k;
                else if (col[2] < 0 && name_is(fields[k], mag_names, mag_column))
                    col[2] = k;
                else if (col[3] < 0 && name_is(fields[k], colour_names, NULL))
                    col[3] = k;
            }
            if (col[0] < 0 || col[1] < 0 || col[2] < 0)
                st = clred_fail(CLRED_ERR_INPUT,
                                "%s: the header line needs RA, Dec and magnitude columns (ra, dec and %s)", path,
                                mag_column ? mag_column : "mag or phot_g_mean_mag");
            continue;
        }
        int need = col[0] > col[1] ? col[0] : col[1];
        need = need > col[2] ? need : col[2];
        if (nf <= need) {
            st = clred_fail(CLRED_ERR_INPUT, "%s: line %zu has %d fields, expected at least %d", path, lineno, nf,
                            need + 1);
            break;
        }
        if ((st = grow(c, &cap)) != CLRED_OK)
            break;
        c->ra[c->n] = number(fields[col[0]]);
        c->dec[c->n] = number(fields[col[1]]);
        c->mag[c->n] = number(fields[col[2]]);
        c->colour[c->n] = col[3] >= 0 && nf > col[3] ? number(fields[col[3]]) : NAN;
        if (!isfinite(c->ra[c->n]) || !isfinite(c->dec[c->n]) || fabs(c->dec[c->n]) > 90) {
            st = clred_fail(CLRED_ERR_INPUT, "%s: line %zu: RA and Dec must be numbers in degrees", path, lineno);
            break;
        }
        c->n++;
    }
    fclose(fp);
    return st;
}

static clred_status fits_error(int status, const char *path, const char *doing)
{
    char text[FLEN_STATUS] = "";
    fits_get_errstatus(status, text);
    fits_clear_errmsg();
    return clred_fail(CLRED_ERR_INPUT, "%s: %s (%s)", path, doing, text);
}

static int find_column(fitsfile *f, const char *const *names, const char *wanted, int *status)
{
    int ncols = 0;
    fits_get_num_cols(f, &ncols, status);
    for (int k = 1; k <= ncols && !*status; k++) {
        char key[16], name[FLEN_VALUE] = "";
        snprintf(key, sizeof key, "TTYPE%d", k);
        int s = 0;
        fits_read_key(f, TSTRING, key, name, NULL, &s);
        if (!s && name_is(clred_csv_trim(name), names, wanted))
            return k;
    }
    return 0;
}

static clred_status read_fits(const char *path, const char *mag_column, clred_refcat *c)
{
    fitsfile *f;
    int status = 0;
    if (fits_open_table(&f, path, READONLY, &status))
        return fits_error(status, path, "cannot open a table");
    int cr = find_column(f, ra_names, NULL, &status), cd = find_column(f, dec_names, NULL, &status);
    int cm = find_column(f, mag_names, mag_column, &status), cc = find_column(f, colour_names, NULL, &status);
    clred_status st = CLRED_OK;
    long nrows = 0;
    fits_get_num_rows(f, &nrows, &status);
    if (status)
        st = fits_error(status, path, "reading the table");
    else if (!cr || !cd || !cm)
        st = clred_fail(CLRED_ERR_INPUT, "%s: the table needs RA, Dec and magnitude columns (ra, dec and %s)", path,
                        mag_column ? mag_column : "mag or phot_g_mean_mag");
    if (st == CLRED_OK && nrows > 0) {
        size_t n = (size_t)nrows;
        c->ra = malloc(n * sizeof(double)), c->dec = malloc(n * sizeof(double));
        c->mag = malloc(n * sizeof(double)), c->colour = malloc(n * sizeof(double));
        if (!c->ra || !c->dec || !c->mag || !c->colour)
            st = clred_fail(CLRED_ERR_MEMORY, "%s: out of memory for %zu stars", path, n);
        else
            c->n = n;
    }
    double nan = NAN;
    if (st == CLRED_OK && nrows > 0) {
        fits_read_col(f, TDOUBLE, cr, 1, 1, nrows, &nan, c->ra, NULL, &status);
        fits_read_col(f, TDOUBLE, cd, 1, 1, nrows, &nan, c->dec, NULL, &status);
        fits_read_col(f, TDOUBLE, cm, 1, 1, nrows, &nan, c->mag, NULL, &status);
        if (cc)
            fits_read_col(f, TDOUBLE, cc, 1, 1, nrows, &nan, c->colour, NULL, &status);
        else
            for (long i = 0; i < nrows; i++)
                c->colour[i] = NAN;
        if (status)
            st = fits_error(status, path, "reading the columns");
    }
    int s2 = 0;
    fits_close_file(f, &s2);
    return st;
}

clred_status clred_refcat_read(const char *path, const char *mag_column, clred_refcat *cat)
{
    memset(cat, 0, sizeof *cat);
    size_t len = strlen(path);
    int csv = len > 4 && (strcasecmp(path + len - 4, ".csv") == 0 || strcasecmp(path + len - 4, ".txt") == 0);
    clred_status st = csv ? read_csv(path, mag_column, cat) : read_fits(path, mag_column, cat);
    if (st == CLRED_OK && cat->n == 0)
        st = clred_fail(CLRED_ERR_INPUT, "%s: the reference catalog has no stars", path);
    if (st != CLRED_OK)
        clred_refcat_free(cat);
    return st;
}
