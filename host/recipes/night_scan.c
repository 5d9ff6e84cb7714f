/* The night's first look at a raw frame: its header only (the pixels are
 * read once, later, when the frame is used), its identity on disk, and what
 * kind of frame its header says it is. */
#include <ctype.h>
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "night_internal.h"

/* Lower-case copy without surrounding blanks or quotes. */
static void normalise(const char *in, char *out, size_t size)
{
    while (*in == ' ' || *in == '\'')
        in++;
    size_t n = 0;
    for (; in[n] && n + 1 < size; n++)
        out[n] = (char)tolower((unsigned char)in[n]);
    while (n && (out[n - 1] == ' ' || out[n - 1] == '\''))
        n--;
    out[n] = '\0';
}

clred_frame_kind clred_frame_kind_parse(const char *value)
{
    char v[80];
    normalise(value ? value : "", v, sizeof v);
    static const struct {
        const char *name;
        clred_frame_kind kind;
    } aliases[] = {{"bias", CLRED_FRAME_BIAS},     {"zero", CLRED_FRAME_BIAS},       {"dark", CLRED_FRAME_DARK},
                   {"flat", CLRED_FRAME_FLAT},     {"flatfield", CLRED_FRAME_FLAT},  {"flat field", CLRED_FRAME_FLAT},
                   {"dome flat", CLRED_FRAME_FLAT}, {"domeflat", CLRED_FRAME_FLAT}, {"sky flat", CLRED_FRAME_FLAT},
                   {"skyflat", CLRED_FRAME_FLAT},  {"twilight flat", CLRED_FRAME_FLAT},
                   {"object", CLRED_FRAME_SCIENCE}, {"science", CLRED_FRAME_SCIENCE}, {"light", CLRED_FRAME_SCIENCE},
                   {"light frame", CLRED_FRAME_SCIENCE}, {"bias frame", CLRED_FRAME_BIAS},
                   {"dark frame", CLRED_FRAME_DARK}, {"flat frame", CLRED_FRAME_FLAT}};
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (!strcmp(v, aliases[i].name))
            return aliases[i].kind;
    return CLRED_FRAME_UNKNOWN;
}

/* The next keyword of the comma-separated list at *p, upper case and without
 * spaces (empty for an empty entry), and *p past it; 0 at the list's end. */
static int next_key(const char **p, char *key, size_t size)
{
    if (!*p || !**p)
        return 0;
    size_t n = strcspn(*p, ","), k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++)
        if ((*p)[i] != ' ')
            key[k++] = (char)toupper((unsigned char)(*p)[i]);
    key[k] = '\0';
    *p += n + ((*p)[n] == ',');
    return 1;
}

/* The first keyword of the comma-separated list that the header has, as a
 * string; 0 when none. */
static int first_string(const clred_header *h, const char *keys, char *out, size_t size)
{
    char key[72];
    for (const char *p = keys; next_key(&p, key, sizeof key);)
        if (*key && clred_header_get_string(h, key, out, size))
            return 1;
    return 0;
}

static int first_double(const clred_header *h, const char *keys, double *out)
{
    char key[72];
    for (const char *p = keys; next_key(&p, key, sizeof key);)
        if (*key && clred_header_get_double(h, key, out))
            return 1;
    return 0;
}

/* The primary header as clred cards, and the bytes the data need. */
static int read_header(fitsfile *f, clred_header *h, uint64_t *data_end, size_t *w, size_t *hgt, int *status)
{
    int nkeys = 0, naxis = 0, bitpix = 0;
    long naxes[3] = {0, 0, 0};
    fits_get_img_param(f, 3, &bitpix, &naxis, naxes, status);
    fits_get_hdrspace(f, &nkeys, NULL, status);
    for (int i = 1; i <= nkeys && !*status; i++) {
        char card[FLEN_CARD];
        fits_read_record(f, i, card, status);
        if (!*status && clred_header_append_card(h, card) != CLRED_OK)
            return 0;
    }
    LONGLONG headstart = 0, datastart = 0, dataend = 0;
    fits_get_hduaddrll(f, &headstart, &datastart, &dataend, status);
    if (*status || naxis < 2)
        return 0;
    *w = (size_t)naxes[0];
    *hgt = (size_t)naxes[1];
    *data_end = (uint64_t)datastart + (uint64_t)naxes[0] * (uint64_t)naxes[1] * (uint64_t)(abs(bitpix) / 8);
    return 1;
}

void night_scan_frame(const char *path, const clred_night_opts *o, night_frame *fr)
{
    memset(fr, 0, sizeof *fr);
    fr->path = strdup(path);
    const char *slash = strrchr(path, '/');
    fr->name = fr->path ? fr->path + (slash ? slash - path + 1 : 0) : path;
    fr->exptime = NAN;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(fr->problem, sizeof fr->problem, "cannot be read (no such file?)");
        return;
    }
    fr->size = (uint64_t)sb.st_size;
    fr->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    fr->identity = clred_hash(path, strlen(path), 0x6e69676874ULL);
    fr->identity = clred_hash(&fr->size, sizeof fr->size, fr->identity);
    fr->identity = clred_hash(&fr->mtime_ns, sizeof fr->mtime_ns, fr->identity);

    fitsfile *f = NULL;
    int status = 0;
    clred_header *h = clred_header_new();
    uint64_t data_end = 0;
    if (!h) {
        snprintf(fr->problem, sizeof fr->problem, "out of memory reading its header");
        return;
    }
    fits_open_diskfile(&f, path, READONLY, &status);
    int ok = !status && read_header(f, h, &data_end, &fr->width, &fr->height, &status);
    if (f) {
        int s2 = 0;
        fits_close_file(f, &s2);
    }
    if (!ok) {
        char text[FLEN_STATUS] = "";
        fits_get_errstatus(status, text);
        snprintf(fr->problem, sizeof fr->problem, "not a readable FITS image (%s)", status ? text : "no 2-D image");
    } else if (data_end > fr->size) {
        snprintf(fr->problem, sizeof fr->problem, "truncated: %llu bytes, its header needs %llu",
                 (unsigned long long)fr->size, (unsigned long long)data_end);
    } else {
        char type[72] = "";
        if (!first_string(h, o->type_keys, type, sizeof type))
            snprintf(fr->problem, sizeof fr->problem, "no frame type (none of %s)", o->type_keys);
        else if ((fr->kind = clred_frame_kind_parse(type)) == CLRED_FRAME_UNKNOWN)
            snprintf(fr->problem, sizeof fr->problem, "frame type '%s' is not bias, dark, flat or science", type);
        else
            fr->usable = 1;
        char v[72];
        if (first_string(h, o->filter_keys, v, sizeof v))
            normalise(v, fr->filter, sizeof fr->filter);
        if (!*fr->filter)
            snprintf(fr->filter, sizeof fr->filter, "none");
        if (first_string(h, o->object_keys, v, sizeof v)) {
            /* Objects keep their case; only blanks around them go. */
            const char *p = v;
            while (*p == ' ')
                p++;
            snprintf(fr->object, sizeof fr->object, "%s", p);
            size_t n = strlen(fr->object);
            while (n && fr->object[n - 1] == ' ')
                fr->object[--n] = '\0';
        }
        if (!*fr->object)
            snprintf(fr->object, sizeof fr->object, "field");
        first_double(h, o->exptime_keys, &fr->exptime);
    }
    clred_header_free(h);
}
