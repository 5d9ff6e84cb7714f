/* SExtractor convolution filter files (.conv): a "CONV NORM" or "CONV NONORM"
 * line, then one row of numbers per line, '#' comments and blank lines
 * anywhere. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FILTER_MAX_SIDE 31  /* SExtractor's largest useful masks; also bounds the device loop */
#define FILTER_MAX_TEXT (1 << 20)

void clred_conv_filter_free(clred_conv_filter *f)
{
    if (!f)
        return;
    free(f->k);
    memset(f, 0, sizeof *f);
}

/* Skips blanks (not newlines). */
static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

clred_status clred_conv_filter_parse(const char *text, size_t len, const char *name, clred_conv_filter *f)
{
    memset(f, 0, sizeof *f);
    const char *p = text, *end = text + len;
    int header = 0, rows = 0, cols = 0;
    float vals[FILTER_MAX_SIDE * FILTER_MAX_SIDE];
    size_t nv = 0;
    for (int line = 1; p < end; line++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *q = skip_blanks(p, eol);
        if (q < eol && *q != '#') {
            if (!header) {
                if ((size_t)(eol - q) >= 4 && strncmp(q, "CONV", 4) == 0) {
                    q = skip_blanks(q + 4, eol);
                    size_t rest = (size_t)(eol - q);
                    while (rest > 0 && isspace((unsigned char)q[rest - 1]))
                        rest--;
                    if (rest == 4 && strncmp(q, "NORM", 4) == 0)
                        f->normalize = 1;
                    else if (rest == 6 && strncmp(q, "NONORM", 6) == 0)
                        f->normalize = 0;
                    else
                        return clred_fail(CLRED_ERR_INPUT, "%s: line %d: expected CONV NORM or CONV NONORM", name,
                                          line);
                    header = 1;
                } else {
                    return clred_fail(CLRED_ERR_INPUT, "%s: line %d: a filter file starts with CONV NORM or CONV NONORM",
                                      name, line);
                }
            } else {
                int n = 0;
                while (q < eol && *q != '#') {
                    char buf[64];
                    size_t k = 0;
                    while (q < eol && !isspace((unsigned char)*q) && *q != '#' && k < sizeof buf - 1)
                        buf[k++] = *q++;
                    buf[k] = '\0';
                    char *stop;
                    errno = 0;
                    double v = strtod(buf, &stop);
                    if (k == 0 || *stop != '\0' || errno == ERANGE || !isfinite(v) || fabs(v) > 1e30)
                        return clred_fail(CLRED_ERR_INPUT, "%s: line %d: '%s' is not a finite number", name, line,
                                          buf);
                    if (n >= FILTER_MAX_SIDE || nv >= sizeof vals / sizeof *vals)
                        return clred_fail(CLRED_ERR_INPUT, "%s: line %d: a filter is at most %d x %d", name, line,
                                          FILTER_MAX_SIDE, FILTER_MAX_SIDE);
                    vals[nv++] = (float)v;
                    n++;
                    q = skip_blanks(q, eol);
                }
                if (n > 0) {
                    if (rows == 0)
                        cols = n;
                    else if (n != cols)
                        return clred_fail(CLRED_ERR_INPUT, "%s: line %d: %d values where the first row has %d", name,
                                          line, n, cols);
                    if (++rows > FILTER_MAX_SIDE)
                        return clred_fail(CLRED_ERR_INPUT, "%s: line %d: a filter is at most %d x %d", name, line,
                                          FILTER_MAX_SIDE, FILTER_MAX_SIDE);
                }
            }
        }
        p = eol + (eol < end);
    }
    if (!header)
        return clred_fail(CLRED_ERR_INPUT, "%s: no CONV NORM or CONV NONORM line: not a filter file", name);
    if (rows == 0)
        return clred_fail(CLRED_ERR_INPUT, "%s: the filter has no rows", name);
    if (rows % 2 == 0 || cols % 2 == 0)
        return clred_fail(CLRED_ERR_INPUT, "%s: the filter is %d x %d; it needs odd sides to have a centre", name,
                          cols, rows);
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < nv; i++) {
        sum += vals[i];
        sum2 += (double)vals[i] * vals[i];
    }
    if (!(sum2 > 0))
        return clred_fail(CLRED_ERR_INPUT, "%s: the filter is all zeros", name);
    if (f->normalize && !(sum > 0))
        return clred_fail(CLRED_ERR_INPUT, "%s: CONV NORM needs a positive sum, this filter sums to %g", name, sum);
    f->k = malloc(nv * sizeof *f->k);
    if (!f->k)
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory for the filter", name);
    memcpy(f->k, vals, nv * sizeof *f->k);
    f->width = cols;
    f->height = rows;
    return CLRED_OK;
}

clred_status clred_conv_filter_read(const char *path, clred_conv_filter *f)
{
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return clred_fail(CLRED_ERR_INPUT, "%s: cannot open (%s)", path, strerror(errno));
    char *text = malloc(FILTER_MAX_TEXT + 1);
    if (!text) {
        fclose(fp);
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory reading the filter", path);
    }
    size_t len = fread(text, 1, FILTER_MAX_TEXT + 1, fp);
    int err = ferror(fp);
    fclose(fp);
    clred_status st;
    if (err)
        st = clred_fail(CLRED_ERR_INPUT, "%s: read error", path);
    else if (len > FILTER_MAX_TEXT)
        st = clred_fail(CLRED_ERR_INPUT, "%s: over %d bytes: not a filter file", path, FILTER_MAX_TEXT);
    else if (memchr(text, '\0', len))
        st = clred_fail(CLRED_ERR_INPUT, "%s: binary data: not a filter file", path);
    else
        st = clred_conv_filter_parse(text, len, path, f);
    free(text);
    return st;
}
