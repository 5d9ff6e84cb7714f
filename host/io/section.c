/* FITS/IRAF image sections "[x1:x2,y1:y2]" (1-based, inclusive) as 0-based,
 * half-open pixel ranges. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *skip_spaces(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* Reads a positive integer; NULL if there is none or it overflows. */
static const char *read_index(const char *p, size_t *out)
{
    p = skip_spaces(p);
    if (!isdigit((unsigned char)*p))
        return NULL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno || v > SIZE_MAX / 2)
        return NULL;
    *out = (size_t)v;
    return skip_spaces(end);
}

/* Parses "a:b" of one axis into [a - 1, b). */
static clred_status read_range(const char *text, const char **p, const char *axis, size_t *lo, size_t *hi)
{
    size_t a, b;
    const char *q = read_index(*p, &a);
    if (!q || *q != ':' || !(q = read_index(q + 1, &b)))
        return clred_fail(CLRED_ERR_USAGE,
                          "section \"%s\": the %s range must be two integers 'first:last' (FITS 1-based, inclusive; "
                          "'*' and steps are not supported)",
                          text, axis);
    if (a < 1 || b < 1)
        return clred_fail(CLRED_ERR_USAGE, "section \"%s\": %s pixel numbers start at 1 (FITS convention)", text,
                          axis);
    if (b < a)
        return clred_fail(CLRED_ERR_USAGE, "section \"%s\": reversed %s range %zu:%zu (flips are not supported)", text,
                          axis, a, b);
    *lo = a - 1;
    *hi = b;
    *p = q;
    return CLRED_OK;
}

clred_status clred_section_parse(const char *text, clred_section *s)
{
    memset(s, 0, sizeof *s);
    if (!text)
        return clred_fail(CLRED_ERR_USAGE, "section: no text given");
    const char *p = skip_spaces(text);
    if (*p != '[')
        return clred_fail(CLRED_ERR_USAGE, "section \"%s\": expected \"[x1:x2,y1:y2]\" (FITS 1-based, inclusive)",
                          text);
    p++;
    clred_section r = {0};
    CLRED_TRY(read_range(text, &p, "x", &r.x0, &r.x1));
    if (*p != ',')
        return clred_fail(CLRED_ERR_USAGE, "section \"%s\": expected ',' after the x range (two axes: [x1:x2,y1:y2])",
                          text);
    p++;
    CLRED_TRY(read_range(text, &p, "y", &r.y0, &r.y1));
    if (*p != ']' || *skip_spaces(p + 1) != '\0')
        return clred_fail(CLRED_ERR_USAGE, "section \"%s\": expected ']' to end it after the y range", text);
    r.set = 1;
    *s = r;
    return CLRED_OK;
}
