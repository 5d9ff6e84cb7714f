/* cfitsio interprets a tile-compressed HDU's parameters as soon as it moves
 * to the HDU (it divides by the Rice block size while opening) and its
 * decoders trust them: a BYTEPIX of 0, -64 or 1e30 or a block size of 0
 * crashes inside cfitsio. So before cfitsio opens a file, its headers are
 * read here, HDU by HDU, and every compressed image's parameters are checked
 * against the values the FITS tile-compression convention allows. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#define MAX_HDUS 1000
#define MAX_HEADER_BLOCKS 10000 /* 28.8 MB of header: beyond that, damage */

typedef struct {
    int zimage;
    char zcmptype[72];
    int have_zbitpix, have_znaxis;
    double zbitpix, znaxis;
    double znaxisn[10], ztile[10];
    char zname[10][72];
    double zval[10];
    int have_zval[10];
    double bitpix, naxis, naxisn[1000], pcount, gcount, theap;
    int have_theap, tfields;
    char ttype[1000][24], tform[1000][24];
    /* How often each keyword read here appeared, and the first one seen twice:
     * cfitsio looks a keyword up from where its last lookup stopped, so with two
     * copies which one it takes depends on its reading order, and this check
     * would be of a different header. */
    unsigned char n_scalar[16], n_znaxisn[10], n_ztile[10], n_zname[10], n_zval[10], n_naxisn[1000],
        n_ttype[1000], n_tform[1000];
    char twice[9], odd[9]; /* a keyword seen twice; one in a form not read here */
} hdu_keys;

/* The value of a card as a number (FITS allows a D exponent); 0 if it is none. */
static int card_number(const char *card, double *v)
{
    char text[72];
    snprintf(text, sizeof text, "%.70s", card + 10);
    for (char *p = text; *p; p++) {
        if (*p == '/')
            *p = '\0';
        else if (*p == 'D' || *p == 'd')
            *p = 'E';
    }
    char *end;
    *v = strtod(text, &end);
    while (*end == ' ')
        end++;
    /* strtod also reads hex, inf and nan, which FITS (and cfitsio) do not */
    return end != text && *end == '\0' && strspn(text, " +-.0123456789E") == strlen(text);
}

static void card_string(const char *card, char *out, size_t size)
{
    const char *q = memchr(card + 10, '\'', 70);
    out[0] = '\0';
    if (!q)
        return;
    size_t n = 0;
    for (const char *p = q + 1; p < card + 80 && *p != '\'' && n + 1 < size; p++)
        out[n++] = *p;
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* n of a name `prefix`n (n = 1..999 written without sign or leading zero,
 * as cfitsio composes the names it looks up), or -1. */
static int key_index(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0 || name[n] < '1' || name[n] > '9')
        return -1;
    int v = 0;
    for (size_t i = n; i < 8 && name[i] != ' ' && name[i] != '\0'; i++) {
        if (name[i] < '0' || name[i] > '9' || v > 99)
            return -1;
        v = 10 * v + (name[i] - '0');
    }
    return v;
}

/* The keyword a card names as cfitsio matches it (ffgknm, then ffgcrd):
 * everything up to the first blank or '=' (after "HIERARCH ", up to the
 * '='), in upper case, as 8 blank-padded characters ("" if longer, which no
 * keyword read here is). Returns 1 if the card is the standard form of
 * that name, the name in upper case in columns 1-8 and '=' in column 9,
 * the only form whose value is read here. */
static int cfitsio_key(const char *card, char name[9])
{
    const char *start = card, *end;
    if (!strncmp(card, "HIERARCH ", 9)) {
        const char *eq = memchr(card, '=', 80);
        start = card + 9;
        while (start < card + 80 && *start == ' ')
            start++;
        end = eq ? eq : start;
        while (end > start && end[-1] == ' ')
            end--;
    } else {
        end = card;
        while (end < card + 80 && *end != ' ' && *end != '=')
            end++;
    }
    size_t len = (size_t)(end - start);
    memset(name, ' ', 8);
    name[8] = '\0';
    if (len > 8) {
        name[0] = '\0';
        return 0;
    }
    int standard = start == card && card[8] == '=' && card[9] == ' ';
    for (size_t i = 0; i < len; i++) {
        name[i] = (char)((start[i] >= 'a' && start[i] <= 'z') ? start[i] - 32 : start[i]);
        standard &= name[i] == start[i];
    }
    for (size_t i = len; i < 8; i++)
        standard &= card[i] == ' ';
    return standard;
}

/* Where the count of a keyword read here is kept, or NULL for any other name. */
static unsigned char *key_count(hdu_keys *h, const char *name)
{
    static const char *const scalars[] = {"ZIMAGE  ", "ZCMPTYPE", "ZBITPIX ", "ZNAXIS  ", "BITPIX  ",
                                          "NAXIS   ", "TFIELDS ", "THEAP   ", "PCOUNT  ", "GCOUNT  "};
    for (size_t k = 0; k < sizeof scalars / sizeof *scalars; k++)
        if (!strcmp(name, scalars[k]))
            return &h->n_scalar[k];
    int i;
    if ((i = key_index(name, "ZNAXIS")) > 0 && i < 10)
        return &h->n_znaxisn[i];
    if ((i = key_index(name, "ZTILE")) > 0 && i < 10)
        return &h->n_ztile[i];
    if ((i = key_index(name, "ZNAME")) > 0 && i < 10)
        return &h->n_zname[i];
    if ((i = key_index(name, "ZVAL")) > 0 && i < 10)
        return &h->n_zval[i];
    if ((i = key_index(name, "NAXIS")) > 0 && i < 1000)
        return &h->n_naxisn[i];
    if ((i = key_index(name, "TTYPE")) > 0 && i < 1000)
        return &h->n_ttype[i];
    if ((i = key_index(name, "TFORM")) > 0 && i < 1000)
        return &h->n_tform[i];
    return NULL;
}

static void trimmed(char out[9], const char *name)
{
    size_t len = strcspn(name, " ");
    memcpy(out, name, len);
    out[len] = '\0';
}

/* The value of a standard card, by its (upper-case, padded) name. */
static void read_value(const char *card, const char *name, hdu_keys *h)
{
    double v;
    int i;
    if (!strcmp(name, "ZIMAGE  "))
        h->zimage |= memchr(card + 10, 'T', 20) != NULL; /* any copy that says T: see twice */
    else if (!strcmp(name, "ZCMPTYPE"))
        card_string(card, h->zcmptype, sizeof h->zcmptype);
    else if (!strcmp(name, "ZBITPIX "))
        h->have_zbitpix = card_number(card, &h->zbitpix);
    else if (!strcmp(name, "ZNAXIS  "))
        h->have_znaxis = card_number(card, &h->znaxis);
    else if ((i = key_index(name, "ZNAXIS")) > 0 && i < 10)
        h->znaxisn[i] = card_number(card, &v) ? v : NAN;
    else if ((i = key_index(name, "ZTILE")) > 0 && i < 10)
        h->ztile[i] = card_number(card, &v) ? v : -1;
    else if ((i = key_index(name, "ZNAME")) > 0 && i < 10)
        card_string(card, h->zname[i], sizeof h->zname[i]);
    else if ((i = key_index(name, "ZVAL")) > 0 && i < 10)
        h->have_zval[i] = card_number(card, &h->zval[i]) ? 1 : -1;
    else if (!strcmp(name, "BITPIX  "))
        card_number(card, &h->bitpix);
    else if (!strcmp(name, "NAXIS   "))
        card_number(card, &h->naxis);
    else if ((i = key_index(name, "NAXIS")) > 0 && i < 1000 && card_number(card, &v))
        h->naxisn[i] = v;
    else if ((i = key_index(name, "TTYPE")) > 0 && i < 1000)
        card_string(card, h->ttype[i], sizeof h->ttype[i]);
    else if ((i = key_index(name, "TFORM")) > 0 && i < 1000)
        card_string(card, h->tform[i], sizeof h->tform[i]);
    else if (!strcmp(name, "TFIELDS ") && card_number(card, &v))
        h->tfields = v >= 0 && v < 1000 ? (int)v : 0;
    else if (!strcmp(name, "THEAP   "))
        h->have_theap = card_number(card, &h->theap);
    else if (!strcmp(name, "PCOUNT  "))
        card_number(card, &h->pcount);
    else if (!strcmp(name, "GCOUNT  "))
        card_number(card, &h->gcount);
}

/* A keyword read here is taken by cfitsio whatever its case, with or without
 * the standard "= " and under HIERARCH; this check reads only the standard
 * form, so any other form of such a name, or a second copy, is recorded (and
 * refused in a compressed HDU): cfitsio might take it where this took another. */
static void read_card(const char *card, hdu_keys *h)
{
    char name[9];
    int standard = cfitsio_key(card, name);
    unsigned char *n = key_count(h, name);
    if (!n)
        return;
    if (*n && !h->twice[0])
        trimmed(h->twice, name);
    *n = 1;
    if (!standard) {
        if (!h->odd[0])
            trimmed(h->odd, name);
        if (!strcmp(name, "ZIMAGE  "))
            h->zimage = 1; /* checked, then refused for the odd card */
        return;
    }
    read_value(card, name, h);
}

static int integral(double v, double lo, double hi) { return v >= lo && v <= hi && v == floor(v); }

static clred_status check_compressed(const char *path, int hdu, const hdu_keys *h)
{
    static const char *const known[] = {"RICE_1", "RICE_ONE", "GZIP_1", "GZIP_2", "PLIO_1", "HCOMPRESS_1",
                                        "NOCOMPRESS"};
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        ok |= strcmp(h->zcmptype, known[i]) == 0;
    if (!ok)
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: unknown tile compression ZCMPTYPE = '%s'", path, hdu,
                          h->zcmptype);
    if (h->twice[0])
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: keyword %s appears twice", path, hdu,
                          h->twice);
    if (h->odd[0])
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: keyword %s is not a standard "
                          "'%s = value' card", path, hdu, h->odd, h->odd);
    double b = h->zbitpix;
    if (!h->have_zbitpix || !(b == 8 || b == 16 || b == 32 || b == 64 || b == -32 || b == -64))
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: ZBITPIX missing or not a BITPIX",
                          path, hdu);
    if (!h->have_znaxis || !integral(h->znaxis, 1, 9))
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: bad ZNAXIS", path, hdu);
    for (int i = 1; i <= (int)h->znaxis; i++) {
        if (!integral(h->znaxisn[i], 1, 1e15))
            return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: ZNAXIS%d = %g", path, hdu, i,
                              h->znaxisn[i]);
        if (!isnan(h->ztile[i]) && !integral(h->ztile[i], 1, h->znaxisn[i]))
            return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: ZTILE%d = %g", path, hdu, i,
                              h->ztile[i]);
    }
    /* One table row per tile: a ZNAXISn that disagrees with the rows is damage
     * (cfitsio then fails inside its open and leaks). */
    double tiles = 1;
    for (int i = 1; i <= (int)h->znaxis; i++) {
        double t = !isnan(h->ztile[i]) ? h->ztile[i] : (i == 1 ? h->znaxisn[1] : 1);
        tiles *= ceil(h->znaxisn[i] / t);
    }
    if (tiles != h->naxisn[2])
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: its ZNAXISn and ZTILEn make %.0f "
                          "tiles, the table has %.0f rows", path, hdu, tiles, h->naxisn[2]);
    for (int i = 1; i < 10 && h->zname[i][0]; i++) {
        const char *name = h->zname[i];
        double v = h->zval[i];
        if (h->have_zval[i] != 1)
            return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: ZNAME%d = '%s' without a numeric "
                              "ZVAL%d", path, hdu, i, name, i);
        int bad = !isfinite(v);
        if (!strcmp(name, "BLOCKSIZE"))
            bad |= !(v == 16 || v == 32);
        else if (!strcmp(name, "BYTEPIX"))
            bad |= !(v == 1 || v == 2 || v == 4 || v == 8);
        else if (!strcmp(name, "SCALE"))
            bad |= !(v >= 0 && v < 1e9);
        else if (!strcmp(name, "SMOOTH"))
            bad |= !(v == 0 || v == 1);
        else if (!strcmp(name, "NOISEBIT"))
            bad |= !(v >= 0 && v <= 64);
        if (bad)
            return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: ZVAL%d (%s) = %g is not allowed",
                              path, hdu, i, name, v);
    }
    return CLRED_OK;
}

/* ---- Rice tiles: cfitsio's fits_rdecomp reads past a damaged stream (it
 * trusts the block codes), so each tile's stream is walked here first with
 * the same bit consumption and a bound. */

typedef struct {
    const unsigned char *c, *end;
    unsigned b;
    int nbits;
} bits;

static int next_byte(bits *r)
{
    if (r->c >= r->end)
        return 0;
    r->b = (r->b << 8) | *r->c++;
    return 1;
}

static int take(bits *r, int n)
{
    r->nbits -= n;
    while (r->nbits < 0) {
        if (!next_byte(r))
            return 0;
        r->nbits += 8;
    }
    r->b &= (r->nbits < 32) ? ((1u << r->nbits) - 1) : ~0u;
    return 1;
}

/* 1 if a Rice stream of nx pixels decodes within its bytes. */
static int rice_stream_ok(const unsigned char *data, size_t len, size_t nx, int bytepix, int nblock)
{
    int fsbits = bytepix == 1 ? 3 : bytepix == 2 ? 4 : 5, fsmax = bytepix == 1 ? 6 : bytepix == 2 ? 14 : 25;
    int bbits = 8 * bytepix;
    if (len < (size_t)bytepix + 1)
        return 0;
    bits r = {data + bytepix, data + len, 0, 0};
    if (!next_byte(&r))
        return 0;
    r.nbits = 8;
    for (size_t i = 0; i < nx;) {
        r.nbits -= fsbits;
        while (r.nbits < 0) {
            if (!next_byte(&r))
                return 0;
            r.nbits += 8;
        }
        int fs = (int)(r.b >> r.nbits) - 1;
        r.b &= (1u << r.nbits) - 1;
        size_t imax = i + (size_t)nblock < nx ? i + (size_t)nblock : nx;
        if (fs > fsmax)
            return 0;
        if (fs < 0) {
            i = imax;
        } else if (fs == fsmax) {
            for (; i < imax; i++) /* bbits raw bits each, taken a byte at a time */
                for (int k = 0; k < bbits / 8; k++)
                    if (!take(&r, 8))
                        return 0;
        } else {
            for (; i < imax; i++) {
                while (r.b == 0) { /* the unary part: leading zeros */
                    if (!next_byte(&r))
                        return 0;
                    r.nbits += 8;
                }
                int top = 31;
                while (!(r.b >> top))
                    top--;
                int nzero = r.nbits - (top + 1);
                r.nbits -= nzero + 1;
                if (r.nbits < 0)
                    return 0;
                r.b ^= 1u << r.nbits;
                if (fs && !take(&r, fs))
                    return 0;
            }
        }
        if (r.nbits > 24) /* cfitsio's 32-bit buffer would overflow: not a stream it wrote */
            return 0;
    }
    return 1;
}

/* The block size and bytes per pixel cfitsio will decode a Rice HDU with.
 * cfitsio takes them by position, whatever ZNAMEn says (ZVAL1 the block size;
 * ZVAL2 the bytes per pixel unless ZNAME2 is the old format's NOISEBIT or
 * ZVAL2 is absent, then 4; the two swapped when the block size is under 16 and
 * the bytes over 8), so the walk below must use the same rule: a stream that
 * checks out as one layout and is decoded as another is read past its end. */
static clred_status rice_parameters(const char *path, int hdu, const hdu_keys *h, int *nblock, int *bytepix)
{
    if (h->have_zval[1] != 1 || !integral(h->zval[1], -2147483648.0, 2147483647.0))
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: Rice without a whole-number ZVAL1 "
                          "(its block size)", path, hdu);
    double block = h->zval[1], bytes = 4;
    if (strcmp(h->zname[2], "NOISEBIT") != 0 && h->have_zval[2] != 0) {
        if (h->have_zval[2] != 1)
            return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: ZVAL2 (bytes per pixel) is not "
                              "a number", path, hdu);
        if (!integral(h->zval[2], -2147483648.0, 2147483647.0))
            return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: ZVAL2 = %g is not a whole "
                              "number of bytes per pixel", path, hdu, h->zval[2]);
        bytes = h->zval[2];
    }
    if (block < 16 && bytes > 8) {
        double t = block;
        block = bytes;
        bytes = t;
    }
    if (!(block == 16 || block == 32))
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: Rice block size %g (ZVAL1) is not "
                          "16 or 32", path, hdu, block);
    if (!(bytes == 1 || bytes == 2 || bytes == 4))
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: Rice compression with %g bytes per pixel (ZVAL2) does not "
                          "exist", path, hdu, bytes);
    *nblock = (int)block;
    *bytepix = (int)bytes;
    return CLRED_OK;
}

/* Bytes one row of a binary table column takes, from its TFORM. */
static long column_width(const char *tform)
{
    char *end;
    long repeat = strtol(tform, &end, 10);
    if (end == tform)
        repeat = 1;
    if (repeat < 0 || repeat > 1 << 24)
        return -1;
    switch (*end) {
    case 'L': case 'B': case 'A': return repeat;
    case 'X': return (repeat + 7) / 8;
    case 'I': return 2 * repeat;
    case 'J': case 'E': return 4 * repeat;
    case 'K': case 'D': case 'C': case 'P': return 8 * repeat;
    case 'M': case 'Q': return 16 * repeat;
    default: return -1;
    }
}

static uint64_t be_uint(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Walks every Rice tile of a compressed HDU whose data start at `data` in f. */
static clred_status check_rice_tiles(FILE *f, const char *path, int hdu, const hdu_keys *h, double data)
{
    int col = 0;
    long offset = 0, width = 0;
    for (int i = 1; i <= h->tfields; i++) {
        long w = column_width(h->tform[i]);
        if (w < 0)
            return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: TFORM%d = '%s'", path, hdu, i,
                              h->tform[i]);
        if (!col && !strcmp(h->ttype[i], "COMPRESSED_DATA")) {
            col = i;
            offset = width;
        }
        width += w;
    }
    char fmt = col ? h->tform[col][strspn(h->tform[col], "0123456789")] : 0;
    if (!col || (fmt != 'P' && fmt != 'Q') || width != (long)h->naxisn[1])
        return clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: no COMPRESSED_DATA column that "
                          "matches the row width", path, hdu);
    int nblock = 32, bytepix = 4;
    clred_status st = rice_parameters(path, hdu, h, &nblock, &bytepix);
    if (st != CLRED_OK)
        return st;
    double rows = h->naxisn[2], heap = data + (h->have_theap ? h->theap : h->naxisn[1] * rows);
    double heap_size = h->pcount - (h->have_theap ? h->theap - h->naxisn[1] * rows : 0);
    int dsize = fmt == 'P' ? 4 : 8;
    unsigned char *buf = NULL, desc[16];
    /* The tile grid, first axis fastest, as the table's rows run. */
    int nax = (int)h->znaxis;
    double tile[10], ntiles[10];
    for (int i = 1; i <= nax; i++) {
        tile[i] = !isnan(h->ztile[i]) ? h->ztile[i] : (i == 1 ? h->znaxisn[1] : 1);
        ntiles[i] = ceil(h->znaxisn[i] / tile[i]);
    }
    for (double row = 0; row < rows && st == CLRED_OK; row++) {
        if (fseek(f, (long)(data + row * h->naxisn[1] + (double)offset), SEEK_SET) != 0 ||
            fread(desc, 1, (size_t)(2 * dsize), f) != (size_t)(2 * dsize))
            break; /* a short file: cfitsio reports it */
        uint64_t len = be_uint(desc, dsize), at = be_uint(desc + dsize, dsize);
        if ((double)at + (double)len > heap_size) {
            st = clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged compressed image: tile %.0f lies outside the heap",
                            path, hdu, row + 1);
            break;
        }
        if (len == 0)
            continue; /* an uncompressible tile is kept elsewhere, or NaN */
        double pixels = 1, rest = row;
        for (int i = 1; i <= nax; i++) {
            double k = fmod(rest, ntiles[i]);
            rest = floor(rest / ntiles[i]);
            pixels *= fmin(tile[i], h->znaxisn[i] - k * tile[i]);
        }
        unsigned char *grown = realloc(buf, (size_t)len);
        if (!grown) {
            st = clred_fail(CLRED_ERR_MEMORY, "%s: out of memory checking tiles", path);
            break;
        }
        buf = grown;
        if (fseek(f, (long)(heap + (double)at), SEEK_SET) != 0 || fread(buf, 1, (size_t)len, f) != (size_t)len)
            break;
        if (!rice_stream_ok(buf, (size_t)len, (size_t)pixels, bytepix, nblock))
            st = clred_fail(CLRED_ERR_INPUT, "%s: HDU %d: damaged tile-compressed data in tile %.0f", path, hdu,
                            row + 1);
    }
    free(buf);
    return st;
}

/* Bytes of data after the header (padded to 2880), or -1 if the header makes no sense. */
static double data_bytes(const hdu_keys *h)
{
    if (!integral(h->naxis, 0, 999) || !(fabs(h->bitpix) == 8 || fabs(h->bitpix) == 16 || fabs(h->bitpix) == 32 ||
                                          fabs(h->bitpix) == 64))
        return -1;
    if (h->naxis == 0)
        return 0;
    double n = 1;
    int random_groups = h->naxisn[1] == 0 && h->naxis > 1;
    for (int i = random_groups ? 2 : 1; i <= (int)h->naxis; i++)
        n *= h->naxisn[i];
    double g = h->gcount > 0 ? h->gcount : 1;
    double bytes = fabs(h->bitpix) / 8 * g * (h->pcount + n);
    return ceil(bytes / 2880) * 2880;
}

clred_status clred_fits_precheck(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return CLRED_OK; /* cfitsio explains */
    unsigned char magic[2] = {0, 0};
    if (fread(magic, 1, 2, f) != 2 || (magic[0] == 0x1f && (magic[1] == 0x8b || magic[1] == 0x9d))) {
        fclose(f); /* gzip'd files are cfitsio's to unpack (whole, in memory) */
        return CLRED_OK;
    }
    struct stat sb;
    double size = fstat(fileno(f), &sb) == 0 ? (double)sb.st_size : 0;
    double at = 0;
    clred_status st = CLRED_OK;
    for (int hdu = 0; hdu < MAX_HDUS && st == CLRED_OK && at + 2880 <= size; hdu++) {
        hdu_keys *h = calloc(1, sizeof *h);
        if (!h) {
            st = clred_fail(CLRED_ERR_MEMORY, "%s: out of memory reading the headers", path);
            break;
        }
        for (int i = 0; i < 10; i++)
            h->ztile[i] = NAN; /* absent */
        if (fseek(f, (long)at, SEEK_SET) != 0) {
            free(h);
            break;
        }
        int end = 0;
        long blocks = 0;
        char block[2880];
        while (!end && st == CLRED_OK && blocks < MAX_HEADER_BLOCKS && fread(block, 1, sizeof block, f) == sizeof block) {
            blocks++;
            for (int c = 0; c < 36 && !end; c++) {
                const char *card = block + 80 * c;
                /* A header is printable ASCII: anything else is damage that cfitsio's
                 * parser may take for huge values (it then asks for petabytes). */
                for (int k = 0; k < 80; k++)
                    if (card[k] < 32 || card[k] > 126) {
                        st = clred_fail(CLRED_ERR_INPUT, "%s: damaged header in HDU %d (byte %d of card %ld is not "
                                        "printable ASCII)", path, hdu, k + 1, 36 * (blocks - 1) + c + 1);
                        break;
                    }
                if (st != CLRED_OK)
                    break;
                if (!strncmp(card, "END     ", 8))
                    end = 1;
                else
                    read_card(card, h);
            }
        }
        if (st != CLRED_OK) {
            free(h);
            break;
        }
        if (end && h->zimage)
            st = check_compressed(path, hdu, h);
        if (st == CLRED_OK && end && h->zimage &&
            (!strcmp(h->zcmptype, "RICE_1") || !strcmp(h->zcmptype, "RICE_ONE")))
            st = check_rice_tiles(f, path, hdu, h, at + 2880.0 * (double)blocks);
        double data = end ? data_bytes(h) : -1;
        free(h);
        if (data < 0)
            break; /* not a header: cfitsio says what is wrong */
        at += 2880.0 * (double)blocks + data;
    }
    /* Bytes after the last whole HDU that cannot hold a header block: cfitsio
     * reads them as one, fails inside its open and leaks. */
    if (st == CLRED_OK && at < size && size - at < 2880)
        st = clred_fail(CLRED_ERR_INPUT, "%s: truncated file: %.0f bytes after the last HDU are not a whole header "
                        "block", path, size - at);
    fclose(f);
    return st;
}
