/* Reading images (FITS through cfitsio, and .npy) and writing clred's MEF
 * outputs atomically. */
#include <errno.h>
#include <fcntl.h>
#include <fitsio.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------ helpers */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int is_npy(const char *path) { return ends_with(path, ".npy"); }

/* The file part of a path that may end in a cfitsio selector "[...]". */
static void base_path(const char *path, char *out, size_t size)
{
    snprintf(out, size, "%s", path);
    size_t n = strlen(out);
    if (n && out[n - 1] == ']') {
        char *b = strrchr(out, '[');
        if (b)
            *b = '\0';
    }
}

/* A one-line reason for a cfitsio status, with the file named. */
static clred_status fits_error(int status, const char *path, const char *doing)
{
    char text[FLEN_STATUS] = "";
    fits_get_errstatus(status, text);
    fits_clear_errmsg();
    char base[PATH_MAX];
    base_path(path, base, sizeof base);
    struct stat sb;
    if (status == FILE_NOT_OPENED && stat(base, &sb) != 0)
        return clred_fail(CLRED_ERR_INPUT, "%s: no such file", base);
    if (strcmp(base, path) != 0 && (status == END_OF_FILE || status == BAD_HDU_NUM || status == UNKNOWN_EXT)) {
        /* The selector names an HDU the file lacks: say so, not "truncated". */
        fitsfile *whole;
        int st2 = 0, nhdus = 0;
        if (!fits_open_file(&whole, base, READONLY, &st2)) {
            fits_get_num_hdus(whole, &nhdus, &st2);
            fits_close_file(whole, &st2);
            fits_clear_errmsg();
            if (nhdus > 0)
                return clred_fail(CLRED_ERR_INPUT, "%s: no such HDU (%s has %d, numbered from 0)", path, base,
                                  nhdus);
        }
        fits_clear_errmsg();
    }
    if (status == FILE_NOT_OPENED || status == UNKNOWN_REC || status == NO_SIMPLE || status == BAD_HEADER_FILL ||
        status == UNKNOWN_EXT)
        return clred_fail(CLRED_ERR_INPUT, "%s: not a FITS file or damaged header (%s)", path, text);
    if (status == END_OF_FILE || status == READ_ERROR)
        return clred_fail(CLRED_ERR_INPUT, "%s: truncated file, data ends early (%s)", path, text);
    if (status == BAD_HDU_NUM || status == URL_PARSE_ERROR || status == BAD_C2I)
        return clred_fail(CLRED_ERR_INPUT, "%s: no such HDU (%s)", path, text);
    return clred_fail(CLRED_ERR_INPUT, "%s: %s: %s", path, doing, text);
}

/* ---------------------------------------------------------------- npy */

typedef struct {
    char type;      /* 'f', 'u', 'i' */
    int size;       /* bytes per element */
    int swap;       /* big-endian data */
    size_t shape[3];
    int ndim;
    long data_offset;
} npy_info;

static void npy_shape(const npy_info *ni, clred_file_info *info);

static clred_status npy_open(const char *path, FILE **fp, npy_info *ni)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return clred_fail(CLRED_ERR_INPUT, "%s: is a directory, not a .npy file", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return clred_fail(CLRED_ERR_INPUT, "%s: %s", path, errno == ENOENT ? "no such file" : strerror(errno));
    unsigned char magic[10];
    if (fread(magic, 1, 10, f) != 10 || memcmp(magic, "\x93NUMPY", 6) != 0) {
        fclose(f);
        return clred_fail(CLRED_ERR_INPUT, "%s: not a NumPy .npy file", path);
    }
    size_t hlen;
    long offset;
    if (magic[6] == 1) {
        hlen = magic[8] | (size_t)magic[9] << 8;
        offset = 10;
    } else {
        unsigned char more[2];
        if (fread(more, 1, 2, f) != 2) {
            fclose(f);
            return clred_fail(CLRED_ERR_INPUT, "%s: truncated .npy header", path);
        }
        hlen = magic[8] | (size_t)magic[9] << 8 | (size_t)more[0] << 16 | (size_t)more[1] << 24;
        offset = 12;
    }
    char *h = hlen > 1 << 20 ? NULL : calloc(1, hlen + 1);
    if (!h || fread(h, 1, hlen, f) != hlen) {
        free(h);
        fclose(f);
        return clred_fail(CLRED_ERR_INPUT, "%s: truncated .npy header", path);
    }
    memset(ni, 0, sizeof *ni);
    ni->data_offset = offset + (long)hlen;
    const char *d = strstr(h, "'descr'");
    const char *fo = strstr(h, "'fortran_order'");
    const char *sh = strstr(h, "'shape'");
    clred_status st = CLRED_OK;
    if (!d || !fo || !sh) {
        st = clred_fail(CLRED_ERR_INPUT, "%s: .npy header lacks descr, fortran_order or shape", path);
    } else {
        d = strchr(d + 7, '\'');
        if (!d || strlen(d) < 4) {
            st = clred_fail(CLRED_ERR_INPUT, "%s: unreadable .npy dtype", path);
        } else {
            ni->swap = d[1] == '>';
            ni->type = d[2];
            ni->size = d[3] - '0';
            int ok = (ni->type == 'f' && (ni->size == 4 || ni->size == 8)) ||
                     ((ni->type == 'u' || ni->type == 'i') && (ni->size == 1 || ni->size == 2 || ni->size == 4));
            if (!ok || d[4] != '\'')
                st = clred_fail(CLRED_ERR_INPUT, "%s: unsupported .npy dtype %.6s (float32/64, (u)int8/16/32 are read)",
                                path, d + 1);
        }
        if (st == CLRED_OK && strstr(fo, "True"))
            st = clred_fail(CLRED_ERR_INPUT, "%s: Fortran-ordered .npy arrays are not supported", path);
        if (st == CLRED_OK) {
            const char *p = strchr(sh, '(');
            while (p && *p && *p != ')' && ni->ndim < 3) {
                p++;
                while (*p == ' ')
                    p++;
                if (*p == ')')
                    break;
                errno = 0;
                const char *digits = p;
                unsigned long long v = strtoull(digits, (char **)&p, 10);
                /* A negative or unparsable axis becomes one no file can hold. */
                ni->shape[ni->ndim++] = errno || *digits == '-' || p == digits || v > SIZE_MAX ? SIZE_MAX : (size_t)v;
                while (*p == ' ')
                    p++;
            }
            if (ni->ndim < 2 || (p && *p != ')'))
                st = clred_fail(CLRED_ERR_INPUT, "%s: .npy array must be 2-D or 3-D", path);
        }
        if (st == CLRED_OK) {
            struct stat sb;
            unsigned long long size = fstat(fileno(f), &sb) == 0 ? (unsigned long long)sb.st_size : 0;
            unsigned long long start = (unsigned long long)ni->data_offset;
            clred_file_info info;
            npy_shape(ni, &info);
            st = clred_shape_check(path, info.width, info.height, info.nframes, (size_t)ni->size,
                                   size > start ? size - start : 0);
        }
    }
    free(h);
    if (st != CLRED_OK) {
        fclose(f);
        return st;
    }
    *fp = f;
    return CLRED_OK;
}

static void npy_shape(const npy_info *ni, clred_file_info *info)
{
    info->nframes = ni->ndim == 3 ? ni->shape[0] : 1;
    info->height = ni->shape[ni->ndim - 2];
    info->width = ni->shape[ni->ndim - 1];
    info->bitpix = ni->type == 'f' ? -8 * ni->size : 8 * ni->size;
}

static double npy_value(const npy_info *ni, const unsigned char *raw)
{
    unsigned char b[8];
    for (int i = 0; i < ni->size; i++)
        b[i] = ni->swap ? raw[ni->size - 1 - i] : raw[i];
    switch (ni->type) {
    case 'f':
        if (ni->size == 4) {
            float v;
            memcpy(&v, b, 4);
            return v;
        } else {
            double v;
            memcpy(&v, b, 8);
            return v;
        }
    case 'u':
        if (ni->size == 1)
            return b[0];
        if (ni->size == 2) {
            uint16_t v;
            memcpy(&v, b, 2);
            return v;
        } else {
            uint32_t v;
            memcpy(&v, b, 4);
            return v;
        }
    default:
        if (ni->size == 1)
            return (int8_t)b[0];
        if (ni->size == 2) {
            int16_t v;
            memcpy(&v, b, 2);
            return v;
        } else {
            int32_t v;
            memcpy(&v, b, 4);
            return v;
        }
    }
}

static clred_status npy_rows(const char *path, size_t frame, size_t y0, size_t nrows, float *rows)
{
    FILE *f;
    npy_info ni;
    CLRED_TRY(npy_open(path, &f, &ni));
    clred_file_info info;
    npy_shape(&ni, &info);
    clred_status st = CLRED_OK;
    if (frame >= info.nframes || y0 + nrows > info.height) {
        st = clred_fail(CLRED_ERR_USAGE, "%s: rows %zu..%zu of frame %zu are outside the %zu x %zu x %zu array", path,
                        y0, y0 + nrows, frame, info.width, info.height, info.nframes);
    } else {
        size_t n = nrows * info.width;
        unsigned char *raw = malloc(n * (size_t)ni.size);
        long off = ni.data_offset + (long)(((frame * info.height + y0) * info.width) * (size_t)ni.size);
        if (!raw)
            st = clred_fail(CLRED_ERR_MEMORY, "%s: out of memory reading", path);
        else if (fseek(f, off, SEEK_SET) != 0 || fread(raw, (size_t)ni.size, n, f) != n)
            st = clred_fail(CLRED_ERR_INPUT, "%s: truncated .npy file, data ends early", path);
        else
            for (size_t i = 0; i < n; i++)
                rows[i] = (float)npy_value(&ni, raw + i * (size_t)ni.size);
        free(raw);
    }
    fclose(f);
    return st;
}

/* --------------------------------------------------------------- FITS */

/* cfitsio reports a short non-FITS file as a read error; look at the first
 * bytes so the message says what is wrong. gzip/compress files are cfitsio's. */
static clred_status sniff_fits(const char *path)
{
    char base[PATH_MAX];
    base_path(path, base, sizeof base);
    struct stat sb;
    if (stat(base, &sb) == 0 && S_ISDIR(sb.st_mode))
        return clred_fail(CLRED_ERR_INPUT, "%s: is a directory, not a FITS file", base);
    FILE *f = fopen(base, "rb");
    if (!f)
        return CLRED_OK; /* cfitsio explains missing files */
    unsigned char head[9] = {0};
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n == 0)
        return clred_fail(CLRED_ERR_INPUT, "%s: empty file, not a FITS file", base);
    if ((n >= 2 && head[0] == 0x1f && (head[1] == 0x8b || head[1] == 0x9d)) ||
        (n == 9 && memcmp(head, "SIMPLE  =", 9) == 0))
        return CLRED_OK;
    return clred_fail(CLRED_ERR_INPUT, "%s: not a FITS file (it does not start with SIMPLE)", base);
}

/* The most a compressed byte can expand to: deflate's limit is about 1032:1,
 * and Rice or HCOMPRESS on a constant tile do not beat it by much. */
#define MAX_EXPANSION 4096ULL

/* The bytes the HDU's data can occupy in the file, or for a tile-compressed
 * HDU or a gzip'd file what they can expand to. Unknown (e.g. a file cfitsio
 * built in memory from an image section) gives ULLONG_MAX: the caps alone apply. */
static unsigned long long fits_available_bytes(fitsfile *f, const char *path)
{
    char base[PATH_MAX];
    base_path(path, base, sizeof base);
    struct stat sb;
    if (stat(base, &sb) != 0 || !S_ISREG(sb.st_mode))
        return ULLONG_MAX;
    unsigned long long size = (unsigned long long)sb.st_size;
    unsigned char magic[2] = {0, 0};
    FILE *fp = fopen(base, "rb");
    if (fp) {
        if (fread(magic, 1, 2, fp) != 2)
            magic[0] = 0;
        fclose(fp);
    }
    if (magic[0] == 0x1f && (magic[1] == 0x8b || magic[1] == 0x9d))
        return size > ULLONG_MAX / MAX_EXPANSION ? ULLONG_MAX : size * MAX_EXPANSION;
    int status = 0;
    LONGLONG head = 0, data = 0, end = 0;
    if (fits_get_hduaddrll(f, &head, &data, &end, &status) || data < 0)
        return ULLONG_MAX;
    unsigned long long left = size > (unsigned long long)data ? size - (unsigned long long)data : 0;
    if (!fits_is_compressed_image(f, &status))
        return left;
    return left > ULLONG_MAX / MAX_EXPANSION ? ULLONG_MAX : left * MAX_EXPANSION;
}

/* Refuses a header whose claimed shape the file cannot hold, before any pixel
 * buffer is sized from it. */
static clred_status fits_size_check(fitsfile *f, const char *path, const clred_file_info *info)
{
    size_t elem = (size_t)(info->bitpix < 0 ? -info->bitpix : info->bitpix) / 8;
    return clred_shape_check(path, info->width, info->height, info->nframes, elem ? elem : 1,
                             fits_available_bytes(f, path));
}

static clred_status fits_open(const char *path, fitsfile **f, clred_file_info *info)
{
    int status = 0;
    CLRED_TRY(sniff_fits(path));
    char base[PATH_MAX];
    base_path(path, base, sizeof base);
    CLRED_TRY(clred_fits_precheck(base));
    if (fits_open_image(f, path, READONLY, &status))
        return fits_error(status, path, "opening");
    int bitpix = 0, naxis = 0;
    long naxes[3] = {0, 0, 0};
    if (fits_get_img_param(*f, 3, &bitpix, &naxis, naxes, &status)) {
        fits_close_file(*f, &status);
        return fits_error(status, path, "reading the image size");
    }
    if (naxis < 2 || naxis > 3 || naxes[0] <= 0 || naxes[1] <= 0 || (naxis == 3 && naxes[2] <= 0)) {
        status = 0;
        fits_close_file(*f, &status);
        if (naxis == 0)
            return clred_fail(CLRED_ERR_INPUT, "%s: the HDU holds no image (NAXIS = 0); name one, e.g. %s[1]", path,
                              path);
        return clred_fail(CLRED_ERR_INPUT, "%s: expected a 2-D image or 3-D cube, found NAXIS = %d", path, naxis);
    }
    info->width = (size_t)naxes[0];
    info->height = (size_t)naxes[1];
    info->nframes = naxis == 3 ? (size_t)naxes[2] : 1;
    info->bitpix = bitpix;
    clred_status st = fits_size_check(*f, path, info);
    if (st != CLRED_OK) {
        status = 0;
        fits_close_file(*f, &status);
    }
    return st;
}

clred_status clred_file_info_read(const char *path, clred_file_info *info)
{
    memset(info, 0, sizeof *info);
    if (is_npy(path)) {
        FILE *f;
        npy_info ni;
        CLRED_TRY(npy_open(path, &f, &ni));
        fclose(f);
        npy_shape(&ni, info);
        return CLRED_OK;
    }
    fitsfile *f;
    CLRED_TRY(fits_open(path, &f, info));
    int status = 0;
    fits_close_file(f, &status);
    return CLRED_OK;
}

/* Big-endian IEEE floats, in place, to host floats as cfitsio's
 * fits_read_pix with a NaN null value gives them: a NaN or infinity
 * (exponent all ones) becomes NAN, and a zero or subnormal (exponent zero:
 * cfitsio's "underflow") becomes +0. */
static void be_floats_to_host(float *v, size_t n)
{
    const float nan = NAN;
    uint32_t nan_bits;
    memcpy(&nan_bits, &nan, sizeof nan_bits);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, v + i, sizeof u);
        u = __builtin_bswap32(u);
        uint32_t e = u & 0x7f800000u;
        u = e == 0x7f800000u ? nan_bits : e == 0 ? 0u : u;
        memcpy(v + i, &u, sizeof u);
    }
}

/* Whether the pixel data are read and written straight, without cfitsio's
 * conversion loops; CLRED_NO_RAW_FITS=1 turns both off (the tests compare
 * the two paths byte for byte). */
static int raw_fits_allowed(void)
{
    const char *e = getenv("CLRED_NO_RAW_FITS");
    return !(e && *e && strcmp(e, "0") != 0);
}

/* Big-endian 16-bit integers to host floats as cfitsio's fits_read_pix
 * (TFLOAT, fffi2r4) gives them with BSCALE = 1 and no BLANK:
 * (float)(value * 1.0 + bzero) in double. The product by 1 is exact, so a
 * contracted multiply-add rounds the same; with BZERO = 32768 (uint16)
 * every value is an integer below 2^24, exact in float. */
static void be_int16_to_host(const uint16_t *in, float *out, size_t n, double bzero)
{
    if (bzero == floor(bzero) && fabs(bzero) <= 1073741824.0) {
        /* an integer BZERO: value + bzero is the same integer in int32 as in
         * double, and both round it to float alike (this loop vectorizes) */
        int32_t z = (int32_t)bzero;
        for (size_t i = 0; i < n; i++)
            out[i] = (float)((int32_t)(int16_t)__builtin_bswap16(in[i]) + z);
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (float)((double)(int16_t)__builtin_bswap16(in[i]) + bzero);
}

/* Bytes [at, at + len) of fd into dst; 0, or -1 with *ended set when the
 * file ends first (else errno says why). */
static int read_exact(int fd, void *dst, size_t len, off_t at, int *ended)
{
    unsigned char *p = dst;
    *ended = 0;
    while (len > 0) {
        ssize_t got = pread(fd, p, len, at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            *ended = got == 0;
            return -1;
        }
        p += got, at += got, len -= (size_t)got;
    }
    return 0;
}

/* 16-bit values go through a buffer this big, which stays in cache. */
#define RAW_INT16_CHUNK (64 * 1024)

/* Rows of an uncompressed image in a plain disk file, read straight from the
 * file and converted here, where cfitsio would convert one value at a time
 * through its own buffers: BITPIX = -32 unscaled (the common frame to
 * measure), and BITPIX = 16 with BSCALE = 1 and no BLANK (raw CCD frames,
 * uint16 through BZERO = 32768), each to the floats cfitsio gives. Returns 0
 * when the image is not such a one (then cfitsio reads it), 1 with *st set
 * otherwise. */
static int raw_rows(fitsfile *f, const char *path, const clred_file_info *info, size_t frame, size_t y0,
                    size_t nrows, float *rows, clred_status *st)
{
    int status = 0;
    char url[FLEN_FILENAME] = "", blank[FLEN_VALUE];
    double bscale = 1, bzero = 0;
    LONGLONG head = 0, data = 0, end = 0;
    if ((info->bitpix != FLOAT_IMG && info->bitpix != SHORT_IMG) || !raw_fits_allowed() ||
        fits_is_compressed_image(f, &status) || status || fits_url_type(f, url, &status) ||
        strcmp(url, "file://") != 0 || fits_get_hduaddrll(f, &head, &data, &end, &status))
        goto not_raw;
    if (fits_read_key_dbl(f, "BSCALE", &bscale, NULL, &status) == KEY_NO_EXIST)
        status = 0, bscale = 1;
    if (status || fits_read_key_dbl(f, "BZERO", &bzero, NULL, &status) == KEY_NO_EXIST)
        status = 0, bzero = 0;
    if (status || bscale != 1 || (info->bitpix == FLOAT_IMG && bzero != 0))
        goto not_raw;
    /* a BLANK value reads as NaN through cfitsio: left to it */
    if (info->bitpix == SHORT_IMG && fits_read_keyword(f, "BLANK", blank, NULL, &status) != KEY_NO_EXIST)
        goto not_raw;
    status = 0;
    size_t elem = info->bitpix == FLOAT_IMG ? sizeof(float) : sizeof(uint16_t);
    size_t n = nrows * info->width;
    off_t at = (off_t)data + (off_t)(((frame * info->height + y0) * info->width) * elem);
    if ((LONGLONG)at + (LONGLONG)(n * elem) > end)
        goto not_raw;
    char base[PATH_MAX];
    base_path(path, base, sizeof base);
    int fd = open(base, O_RDONLY);
    if (fd < 0)
        goto not_raw;
    int failed = 0, ended = 0;
    if (info->bitpix == FLOAT_IMG) {
        failed = read_exact(fd, rows, n * sizeof(float), at, &ended);
        if (!failed)
            be_floats_to_host(rows, n);
    } else {
        uint16_t *chunk = malloc(RAW_INT16_CHUNK * sizeof *chunk);
        if (!chunk) {
            close(fd);
            *st = clred_fail(CLRED_ERR_MEMORY, "out of memory reading %s", path);
            return 1;
        }
        for (size_t i = 0; i < n && !failed; i += RAW_INT16_CHUNK) {
            size_t m = n - i < RAW_INT16_CHUNK ? n - i : RAW_INT16_CHUNK;
            failed = read_exact(fd, chunk, m * sizeof *chunk, at + (off_t)(i * sizeof *chunk), &ended);
            if (!failed)
                be_int16_to_host(chunk, rows + i, m, bzero);
        }
        free(chunk);
    }
    int err = errno;
    close(fd);
    if (failed && ended)
        *st = clred_fail(CLRED_ERR_INPUT, "%s: truncated file, data ends early", path);
    else if (failed)
        *st = clred_fail(CLRED_ERR_IO, "%s: %s reading pixels", path, strerror(err));
    else
        *st = CLRED_OK;
    return 1;
not_raw:
    fits_clear_errmsg();
    return 0;
}

static clred_status fits_rows(fitsfile *f, const char *path, const clred_file_info *info, size_t frame, size_t y0,
                              size_t nrows, float *rows)
{
    if (frame >= info->nframes || y0 + nrows > info->height)
        return clred_fail(CLRED_ERR_USAGE, "%s: rows %zu..%zu of frame %zu are outside the %zu x %zu x %zu image",
                          path, y0, y0 + nrows, frame, info->width, info->height, info->nframes);
    clred_status raw;
    if (raw_rows(f, path, info, frame, y0, nrows, rows, &raw))
        return raw;
    long fpixel[3] = {1, (long)y0 + 1, (long)frame + 1};
    float nan = NAN;
    int anynul = 0, status = 0;
    if (fits_read_pix(f, TFLOAT, fpixel, (LONGLONG)(nrows * info->width), &nan, rows, &anynul, &status)) {
        int cstatus = 0;
        if (fits_is_compressed_image(f, &cstatus) && status != END_OF_FILE && status != READ_ERROR) {
            char text[FLEN_STATUS] = "";
            fits_get_errstatus(status, text);
            fits_clear_errmsg();
            return clred_fail(CLRED_ERR_INPUT, "%s: damaged tile-compressed data (%s)", path, text);
        }
        return fits_error(status, path, "reading pixels");
    }
    return CLRED_OK;
}

clred_status clred_rows_read(const char *path, size_t frame, size_t y0, size_t nrows, float *rows)
{
    if (is_npy(path))
        return npy_rows(path, frame, y0, nrows, rows);
    fitsfile *f;
    clred_file_info info;
    CLRED_TRY(fits_open(path, &f, &info));
    clred_status st = fits_rows(f, path, &info, frame, y0, nrows, rows);
    int status = 0;
    fits_close_file(f, &status);
    return st;
}

static int skip_keyword(const char *card)
{
    static const char *prefixes[] = {"ZIMAGE", "ZBITPIX", "ZNAXIS", "ZTILE", "ZCMPTYPE", "ZNAME", "ZVAL",
                                     "ZQUANTIZ", "ZDITHER", "ZSIMPLE", "ZTENSION", "ZEXTEND", "ZBLOCKED",
                                     "ZPCOUNT", "ZGCOUNT", "ZHECKSUM", "ZDATASUM", "TTYPE", "TFORM", "TFIELDS",
                                     "TUNIT", "THEAP", "BIT", "DATAMEAN", "END     "};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(card, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    int cls = fits_get_keyclass((char *)card);
    return cls == TYP_STRUC_KEY || cls == TYP_CMPRS_KEY || cls == TYP_SCAL_KEY || cls == TYP_NULL_KEY ||
           cls == TYP_HDUID_KEY || cls == TYP_CKSUM_KEY || cls == TYP_RANG_KEY;
}

static clred_status read_header(fitsfile *f, const char *path, clred_header **out)
{
    clred_header *h = clred_header_new();
    if (!h)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory reading the header of %s", path);
    int nkeys = 0, status = 0;
    fits_get_hdrspace(f, &nkeys, NULL, &status);
    for (int i = 1; i <= nkeys && !status; i++) {
        char card[FLEN_CARD];
        if (fits_read_record(f, i, card, &status))
            break;
        if (!skip_keyword(card) && clred_header_append_card(h, card) != CLRED_OK) {
            clred_header_free(h);
            return CLRED_ERR_MEMORY;
        }
    }
    if (status) {
        clred_header_free(h);
        return fits_error(status, path, "reading the header");
    }
    *out = h;
    return CLRED_OK;
}

/* Reads a same-shaped extension by name into a plane, if the file has one. */
static clred_status read_plane_if_present(fitsfile *f, const char *path, const char *extname, int datatype,
                                          const clred_file_info *info, void **plane, size_t elem)
{
    int status = 0;
    if (fits_movnam_hdu(f, IMAGE_HDU, (char *)extname, 0, &status)) {
        fits_clear_errmsg();
        return CLRED_OK;
    }
    int bitpix, naxis;
    long naxes[3] = {0, 0, 0};
    fits_get_img_param(f, 3, &bitpix, &naxis, naxes, &status);
    if (status || naxis != 2 || (size_t)naxes[0] != info->width || (size_t)naxes[1] != info->height)
        return clred_fail(CLRED_ERR_INPUT, "%s: extension %s does not match the science image's shape", path,
                          extname);
    size_t n = info->width * info->height;
    *plane = calloc(n, elem);
    if (!*plane)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory reading %s[%s]", path, extname);
    long fpixel[2] = {1, 1};
    if (fits_read_pix(f, datatype, fpixel, (LONGLONG)n, NULL, *plane, NULL, &status))
        return fits_error(status, path, "reading an extension");
    return CLRED_OK;
}

/* A frame's SCI into *spare when it holds exactly that many pixels (then
 * *spare becomes NULL), else into a new array. */
static clred_status image_read(const char *path, size_t frame, clred_image *img, float **spare, size_t spare_pixels);

clred_status clred_image_read(const char *path, size_t frame, clred_image *img)
{
    return image_read(path, frame, img, NULL, 0);
}

static clred_status alloc_or_reuse(clred_image *img, size_t width, size_t height, float **spare, size_t spare_pixels)
{
    if (spare && *spare && spare_pixels == width * height) {
        img->width = width;
        img->height = height;
        img->sci = *spare;
        *spare = NULL;
        return CLRED_OK;
    }
    return clred_image_alloc_unset(img, width, height);
}

static clred_status image_read(const char *path, size_t frame, clred_image *img, float **spare, size_t spare_pixels)
{
    memset(img, 0, sizeof *img);
    clred_file_info info;
    if (is_npy(path)) {
        CLRED_TRY(clred_file_info_read(path, &info));
        if (frame >= info.nframes)
            return clred_fail(CLRED_ERR_USAGE, "%s: frame %zu requested, the array has %zu", path, frame,
                              info.nframes);
        if (alloc_or_reuse(img, info.width, info.height, spare, spare_pixels) != CLRED_OK)
            return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory for a %zu x %zu frame", path, info.width,
                              info.height);
        clred_status st = npy_rows(path, frame, 0, info.height, img->sci);
        if (st == CLRED_OK && !(img->header = clred_header_new()))
            st = clred_fail(CLRED_ERR_MEMORY, "out of memory");
        if (st != CLRED_OK)
            clred_image_free(img);
        return st;
    }
    fitsfile *f;
    CLRED_TRY(fits_open(path, &f, &info));
    clred_status st = CLRED_OK;
    if (frame >= info.nframes)
        st = clred_fail(CLRED_ERR_USAGE, "%s: frame %zu requested, the cube has %zu", path, frame, info.nframes);
    if (st == CLRED_OK && alloc_or_reuse(img, info.width, info.height, spare, spare_pixels) != CLRED_OK)
        st = clred_fail(CLRED_ERR_MEMORY, "%s: out of memory for a %zu x %zu frame", path, info.width, info.height);
    if (st == CLRED_OK)
        st = read_header(f, path, &img->header);
    if (st == CLRED_OK)
        st = fits_rows(f, path, &info, frame, 0, info.height, img->sci);
    /* A clred product (or any MEF whose image is EXTNAME=SCI) brings its VAR and MASK. */
    char extname[FLEN_VALUE] = "";
    int status = 0;
    if (st == CLRED_OK && info.nframes == 1 && !fits_read_key(f, TSTRING, "EXTNAME", extname, NULL, &status) &&
        strcmp(extname, "SCI") == 0) {
        st = read_plane_if_present(f, path, "VAR", TFLOAT, &info, (void **)&img->var, sizeof(float));
        if (st == CLRED_OK)
            st = read_plane_if_present(f, path, "MASK", TUSHORT, &info, (void **)&img->mask, sizeof(uint16_t));
    }
    fits_clear_errmsg();
    status = 0;
    fits_close_file(f, &status);
    if (st != CLRED_OK)
        clred_image_free(img);
    return st;
}

clred_status clred_image_read_2d(const char *path, clred_image *img)
{
    return clred_image_read_2d_into(path, img, NULL, 0);
}

clred_status clred_image_read_2d_into(const char *path, clred_image *img, float **spare, size_t spare_pixels)
{
    memset(img, 0, sizeof *img);
    clred_file_info info;
    CLRED_TRY(clred_file_info_read(path, &info));
    if (info.nframes > 1)
        return clred_fail(CLRED_ERR_INPUT,
                          "%s: a cube of %zu frames where one 2-D image is expected (name one plane, e.g. "
                          "'%s[*,*,1:1]')",
                          path, info.nframes, path);
    return image_read(path, 0, img, spare, spare_pixels);
}

/* ------------------------------------------------------------ writing */

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

clred_status clred_output_check(const char *output, const char *const *inputs, size_t ninputs, int overwrite)
{
    if (!output || !*output)
        return clred_fail(CLRED_ERR_USAGE, "no output file given (-o FILE)");
    char base[PATH_MAX];
    for (size_t i = 0; i < ninputs; i++) {
        base_path(inputs[i], base, sizeof base);
        if (strcmp(base, output) == 0 || same_file(base, output))
            return clred_fail(CLRED_ERR_USAGE, "%s: the output would overwrite an input; choose another name", output);
    }
    struct stat sb;
    if (!overwrite && stat(output, &sb) == 0)
        return clred_fail(CLRED_ERR_IO, "%s: exists; use --overwrite to replace it", output);
    return CLRED_OK;
}

static void write_plane_cards(fitsfile *f, const char *extname, int *status)
{
    fits_update_key(f, TSTRING, "EXTNAME", (void *)extname, NULL, status);
}

static int write_header_cards(fitsfile *f, const clred_header *h, int *status)
{
    for (size_t i = 0; i < clred_header_count(h) && !*status; i++) {
        char card[FLEN_CARD];
        snprintf(card, sizeof card, "%s", clred_header_card(h, i));
        /* cfitsio rejects trailing-blank-only cards less often when trimmed. */
        size_t n = strlen(card);
        while (n > 8 && card[n - 1] == ' ')
            card[--n] = '\0';
        fits_write_record(f, card, status);
    }
    return *status;
}

/* ---- SCI alone, data written raw
 *
 * cfitsio writes float pixels by copying them into its buffer, swapping the
 * bytes there and writing 2880-byte records. For a SCI-only product (the
 * files calibration's usual output) the data are instead swapped in chunks
 * that stay in cache and written with a few large write()s. cfitsio still
 * formats the whole header: the image is created with NAXIS2 = 0 (so cfitsio
 * writes no data and no fill), then that card's value field is set to the
 * height as cfitsio would have written it. The file is the same bytes as the
 * cfitsio path's (test_calibrate_files); CLRED_NO_RAW_FITS=1 turns this off
 * (raw_fits_allowed). */

#define RAW_CHUNK_FLOATS (64 * 1024)

static int write_all(int fd, const void *buf, size_t n, off_t at)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w, n -= (size_t)w, at += w;
    }
    return 0;
}

/* The header-only file tmp (NAXIS2 = 0) gets NAXIS2 = height and the data
 * (big-endian floats, zero-filled to a whole 2880-byte record). */
static clred_status append_raw_sci(const char *tmp, const char *path, const clred_image *img)
{
    int fd = open(tmp, O_RDWR);
    if (fd < 0)
        return clred_fail(CLRED_ERR_IO, "%s: cannot reopen the temporary (%s)", path, strerror(errno));
    struct stat sb;
    char *head = NULL;
    float *chunk = NULL;
    clred_status st = CLRED_OK;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || sb.st_size % 2880 != 0)
        st = clred_fail(CLRED_ERR_IO, "%s: the header cfitsio wrote is not whole records", path);
    size_t hbytes = st == CLRED_OK ? (size_t)sb.st_size : 0;
    if (st == CLRED_OK && (!(head = malloc(hbytes)) || !(chunk = malloc(RAW_CHUNK_FLOATS * sizeof *chunk))))
        st = clred_fail(CLRED_ERR_MEMORY, "out of memory writing %s", path);
    if (st == CLRED_OK && pread(fd, head, hbytes, 0) != (ssize_t)hbytes)
        st = clred_fail(CLRED_ERR_IO, "%s: cannot read back the header (%s)", path, strerror(errno));
    /* the NAXIS2 card of the (only) HDU, before END */
    size_t card = hbytes;
    for (size_t c = 0; st == CLRED_OK && c + 80 <= hbytes; c += 80) {
        if (memcmp(head + c, "END     ", 8) == 0)
            break;
        if (memcmp(head + c, "NAXIS2  = ", 10) == 0) {
            card = c;
            break;
        }
    }
    char value[21];
    if (st == CLRED_OK && (card == hbytes || memcmp(head + card + 10, "                   0", 20) != 0))
        st = clred_fail(CLRED_ERR_IO, "%s: unexpected header from cfitsio (no NAXIS2 = 0 card)", path);
    if (st == CLRED_OK) {
        snprintf(value, sizeof value, "%20zu", img->height);
        if (write_all(fd, value, 20, (off_t)(card + 10)) != 0)
            st = clred_fail(CLRED_ERR_IO, "%s: writing failed (%s)", path, strerror(errno));
    }
    size_t n = img->width * img->height;
    off_t at = (off_t)hbytes;
    for (size_t i = 0; st == CLRED_OK && i < n; i += RAW_CHUNK_FLOATS) {
        size_t m = n - i < RAW_CHUNK_FLOATS ? n - i : RAW_CHUNK_FLOATS;
        const uint32_t *src = (const uint32_t *)(img->sci + i);
        uint32_t *dst = (uint32_t *)chunk;
        for (size_t k = 0; k < m; k++)
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            dst[k] = __builtin_bswap32(src[k]);
#else
            dst[k] = src[k];
#endif
        if (write_all(fd, chunk, m * sizeof(float), at) != 0)
            st = clred_fail(CLRED_ERR_IO, "%s: writing failed (%s)", path, strerror(errno));
        at += (off_t)(m * sizeof(float));
    }
    size_t fill = (2880 - (size_t)(n * sizeof(float)) % 2880) % 2880;
    if (st == CLRED_OK && fill > 0) {
        memset(chunk, 0, fill);
        if (write_all(fd, chunk, fill, at) != 0)
            st = clred_fail(CLRED_ERR_IO, "%s: writing failed (%s)", path, strerror(errno));
    }
    if (close(fd) != 0 && st == CLRED_OK)
        st = clred_fail(CLRED_ERR_IO, "%s: writing failed (%s)", path, strerror(errno));
    free(head);
    free(chunk);
    return st;
}

clred_status clred_image_write_with(const char *path, const clred_image *img, const clred_extra_plane *extra,
                                    size_t nextra, int overwrite)
{
    CLRED_TRY(clred_output_check(path, NULL, 0, overwrite));
    int raw = !img->var && !img->mask && nextra == 0 && img->height > 0 && raw_fits_allowed();
    char tmp[PATH_MAX];
    CLRED_TRY(clred_atomic_temp_name(path, tmp, sizeof tmp));

    fitsfile *f;
    int status = 0;
    /* "!" would let cfitsio overwrite; the temporary name is ours alone. */
    if (fits_create_file(&f, tmp, &status)) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status, text);
        fits_clear_errmsg();
        return clred_fail(CLRED_ERR_IO, "%s: cannot create (%s)", path, text);
    }
    long naxes[2] = {(long)img->width, raw ? 0 : (long)img->height};
    long fpixel[2] = {1, 1};
    LONGLONG n = (LONGLONG)(img->width * img->height);
    fits_create_img(f, FLOAT_IMG, 2, naxes, &status);
    write_plane_cards(f, "SCI", &status);
    write_header_cards(f, img->header, &status);
    if (!raw)
        fits_write_pix(f, TFLOAT, fpixel, n, img->sci, &status);
    if (img->var) {
        fits_create_img(f, FLOAT_IMG, 2, naxes, &status);
        write_plane_cards(f, "VAR", &status);
        fits_write_pix(f, TFLOAT, fpixel, n, img->var, &status);
    }
    if (img->mask) {
        fits_create_img(f, USHORT_IMG, 2, naxes, &status);
        write_plane_cards(f, "MASK", &status);
        for (int b = 0; b < 16; b++) {
            const char *name = clred_mask_bit_name((uint16_t)(1u << b));
            if (!name)
                continue;
            char key[16], comment[48];
            snprintf(key, sizeof key, "BIT%02d", b);
            snprintf(comment, sizeof comment, "mask bit %d (value %u)", b, 1u << b);
            fits_update_key(f, TSTRING, key, (void *)name, comment, &status);
        }
        fits_write_pix(f, TUSHORT, fpixel, n, img->mask, &status);
    }
    for (size_t i = 0; i < nextra; i++) {
        fits_create_img(f, FLOAT_IMG, 2, naxes, &status);
        write_plane_cards(f, extra[i].extname, &status);
        fits_write_pix(f, TFLOAT, fpixel, n, (void *)extra[i].data, &status);
    }
    int close_status = 0;
    fits_close_file(f, &close_status);
    if (status || close_status) {
        char text[FLEN_STATUS];
        fits_get_errstatus(status ? status : close_status, text);
        fits_clear_errmsg();
        clred_atomic_discard(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing failed (%s)", path, text);
    }
    if (raw) {
        clred_status st = append_raw_sci(tmp, path, img);
        if (st != CLRED_OK) {
            clred_atomic_discard(tmp);
            return st;
        }
    }
    return clred_atomic_commit(tmp, path);
}

clred_status clred_image_write(const char *path, const clred_image *img, int overwrite)
{
    return clred_image_write_with(path, img, NULL, 0, overwrite);
}
