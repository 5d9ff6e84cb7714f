/* Files whose headers lie about their size: every reader must refuse them
 * with CLRED_ERR_INPUT naming the file, before allocating what they claim.
 * Run with a directory argument it only writes the files (for cli_hostile.sh). */
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "harness.h"
#include "internal.h"

/* One 2880-byte FITS header block from cards (NULL-terminated), then `data` bytes of zeros. */
static void write_fits(const char *path, const char *const *cards, size_t data)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    char block[2880];
    memset(block, ' ', sizeof block);
    size_t i = 0;
    for (; cards[i]; i++) {
        char card[81];
        snprintf(card, sizeof card, "%-80s", cards[i]);
        memcpy(block + 80 * i, card, 80);
    }
    memcpy(block + 80 * i, "END", 3);
    fwrite(block, 1, sizeof block, f);
    char zero[4096] = {0};
    for (size_t left = data; left;) {
        size_t n = left < sizeof zero ? left : sizeof zero;
        fwrite(zero, 1, n, f);
        left -= n;
    }
    fclose(f);
}

/* A float FITS image (BITPIX -32) of the given shape with every pixel = value. */
static void write_fits_filled(const char *path, size_t w, size_t h, size_t frames, float value)
{
    char c[6][81];
    snprintf(c[0], 81, "SIMPLE  =                    T");
    snprintf(c[1], 81, "BITPIX  =                  -32");
    snprintf(c[2], 81, "NAXIS   = %20d", frames > 1 ? 3 : 2);
    snprintf(c[3], 81, "NAXIS1  = %20zu", w);
    snprintf(c[4], 81, "NAXIS2  = %20zu", h);
    snprintf(c[5], 81, "NAXIS3  = %20zu", frames);
    const char *cards[7] = {c[0], c[1], c[2], c[3], c[4], frames > 1 ? c[5] : NULL, NULL};
    write_fits(path, cards, 0);
    FILE *f = fopen(path, "ab");
    uint32_t bits;
    memcpy(&bits, &value, 4);
    unsigned char be[4] = {(unsigned char)(bits >> 24), (unsigned char)(bits >> 16), (unsigned char)(bits >> 8),
                           (unsigned char)bits};
    size_t n = w * h * frames;
    for (size_t i = 0; i < n; i++)
        fwrite(be, 1, 4, f);
    for (size_t i = (n * 4) % 2880; i && i < 2880; i++)
        fputc(0, f);
    fclose(f);
}

/* A .npy version 1 file with the given shape text, e.g. "(3, 4)", and `data` bytes. */
static void write_npy(const char *path, const char *descr, const char *shape, size_t data)
{
    char h[256];
    int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    while ((10 + n + 1) % 64)
        h[n++] = ' ';
    h[n++] = '\n';
    FILE *f = fopen(path, "wb");
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    unsigned char len[2] = {(unsigned char)(n & 0xff), (unsigned char)(n >> 8)};
    fwrite(len, 1, 2, f);
    fwrite(h, 1, (size_t)n, f);
    char zero[4096] = {0};
    for (size_t left = data; left;) {
        size_t k = left < sizeof zero ? left : sizeof zero;
        fwrite(zero, 1, k, f);
        left -= k;
    }
    fclose(f);
}

/* Replaces the first card whose keyword is key by `text` (blank-padded to 80). */
static int replace_card(const char *path, const char *key, const char *text)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return 0;
    char card[81];
    char want[9];
    snprintf(want, sizeof want, "%-8s", key);
    int done = 0;
    for (long pos = 0; !done && fread(card, 1, 80, f) == 80; pos += 80) {
        if (memcmp(card, want, 8) == 0 && card[8] == '=') {
            char fresh[81];
            snprintf(fresh, sizeof fresh, "%-80.80s", text);
            fseek(f, pos, SEEK_SET);
            fwrite(fresh, 1, 80, f);
            done = 1;
        }
    }
    fclose(f);
    return done;
}

/* Rewrites the value of a FITS card in place (the first card whose keyword is key). */
static int patch_card(const char *path, const char *key, const char *value)
{
    char text[81];
    snprintf(text, sizeof text, "%-8s= %20s", key, value);
    return replace_card(path, key, text);
}

/* A small Rice-compressed 32 x 32 image written by cfitsio, then its header
 * made to lie: key set to value. */
static void write_fz(const char *path, const char *key, const char *value)
{
    char spec[1200];
    remove(path);
    snprintf(spec, sizeof spec, "%s[compress R 32,4]", path);
    fitsfile *f;
    int status = 0;
    long naxes[2] = {32, 32};
    short pix[32 * 32];
    for (int i = 0; i < 32 * 32; i++)
        pix[i] = (short)(i % 97);
    fits_create_file(&f, spec, &status);
    fits_create_img(f, SHORT_IMG, 2, naxes, &status);
    fits_write_img(f, TSHORT, 1, 32 * 32, pix, &status);
    fits_close_file(f, &status);
    /* A key of "ZSIMPLE" (a card nothing reads) takes `value` as a whole card. */
    int patched = !key || (!strcmp(key, "ZSIMPLE") ? replace_card(path, key, value) : patch_card(path, key, value));
    if (status || !patched) {
        fprintf(stderr, "cannot write %s (cfitsio status %d)\n", path, status);
        exit(1);
    }
}

static const char *const huge_axis[] = {"SIMPLE  =                    T", "BITPIX  =                  -32",
                                        "NAXIS   =                    2", "NAXIS1  =  2305843009213693953",
                                        "NAXIS2  =                    4", NULL};
static const char *const billion_frames[] = {"SIMPLE  =                    T", "BITPIX  =                   16",
                                             "NAXIS   =                    3", "NAXIS1  =                   10",
                                             "NAXIS2  =                   10", "NAXIS3  =           1000000000",
                                             NULL};
static const char *const big_square[] = {"SIMPLE  =                    T", "BITPIX  =                  -32",
                                         "NAXIS   =                    2", "NAXIS1  =               200000",
                                         "NAXIS2  =               200000", NULL};
static const char *const short_data[] = {"SIMPLE  =                    T", "BITPIX  =                  -32",
                                         "NAXIS   =                    2", "NAXIS1  =                 1000",
                                         "NAXIS2  =                 1000", NULL};
static const char *const good_small[] = {"SIMPLE  =                    T", "BITPIX  =                  -32",
                                         "NAXIS   =                    2", "NAXIS1  =                    8",
                                         "NAXIS2  =                    8", NULL};

/* The files, by name; "good*" are valid and must read. */
static void write_all(const char *dir)
{
    char p[1024];
#define AT(name) (snprintf(p, sizeof p, "%s/%s", dir, name), p)
    write_fits(AT("huge_axis.fits"), huge_axis, 2880);
    write_fits(AT("billion_frames.fits"), billion_frames, 66 * 1024);
    write_fits(AT("big_square.fits"), big_square, 2880);
    write_fits(AT("short_data.fits"), short_data, 2880);
    write_fits(AT("good_small.fits"), good_small, 2880);
    write_npy(AT("huge_axis.npy"), "<f4", "(2305843009213693953, 4)", 64);
    write_npy(AT("billion_frames.npy"), "<i2", "(1000000000, 10, 10)", 66 * 1024);
    write_npy(AT("big_square.npy"), "<f4", "(200000, 200000)", 4096);
    write_npy(AT("negative.npy"), "<f4", "(-1, 4)", 64);
    write_npy(AT("zero.npy"), "<f4", "(0, 4)", 64);
    write_npy(AT("good_small.npy"), "<f4", "(8, 8)", 256);
    write_fz(AT("good_small.fits.fz"), NULL, NULL);
    write_fz(AT("billion_frames.fits.fz"), "ZNAXIS2", "1000000000");
    write_fz(AT("huge_axis.fits.fz"), "ZNAXIS1", "2305843009213693953");
    /* Compression parameters that crash cfitsio's decoders unless checked. */
    write_fz(AT("zval2_zero.fits.fz"), "ZVAL2", "0");
    write_fz(AT("zval2_neg.fits.fz"), "ZVAL2", "-64");
    write_fz(AT("zval2_huge.fits.fz"), "ZVAL2", "1E30");
    write_fz(AT("zval1_zero.fits.fz"), "ZVAL1", "0");
    write_fz(AT("zval1_huge.fits.fz"), "ZVAL1", "1E30");
    write_fz(AT("zbitpix.fits.fz"), "ZBITPIX", "7");
    write_fz(AT("zcmptype.fits.fz"), "ZCMPTYPE", "'BOGUS   '");
    write_fz(AT("ztile.fits.fz"), "ZTILE1", "0");
    /* cfitsio takes a keyword in any case, without "= " in column 9, or under
     * HIERARCH, and of two copies the one its lookup order meets first: a
     * second tile size of 0 in any of these forms divided by zero inside it. */
    write_fz(AT("ztile_twice.fits.fz"), "ZSIMPLE", "ZTILE2  =                    0");
    write_fz(AT("ztile_lower.fits.fz"), "ZSIMPLE", "ztile2  =                    0");
    write_fz(AT("ztile_hierarch.fits.fz"), "ZSIMPLE", "HIERARCH ZTILE2 = 0");
    write_fz(AT("ztile_odd.fits.fz"), "ZSIMPLE", "ZTILE2 ETY' = BPIX '");
    /* cfitsio reads the bytes per pixel from ZVAL2 whatever ZNAME2 says, and a
     * logical T there as 1. */
    write_fz(AT("zval2_logical.fits.fz"), "ZVAL2", "T");
    write_fz(AT("zname2_other.fits.fz"), "ZNAME2", "'BYTES   '"); /* valid: still 2 bytes a pixel */
    /* A control character in a header (cfitsio read such a header as a table
     * of petabytes); bytes after the last HDU that are not a whole block. */
    write_fz(AT("control_char.fits.fz"), "NAXIS1", "\00408");
    write_fits(AT("partial_block.fits"), good_small, 2880 + 300);
    mkdir(AT("directory.fits"), 0755);
    /* Valid files that are wrong where a 2-D image, a flat or a variance is expected. */
    write_fits_filled(AT("cube.fits"), 32, 32, 3, 100.0f);
    write_fits_filled(AT("nan_flat.fits"), 32, 32, 1, NAN);
    write_fits_filled(AT("negative.fits"), 32, 32, 1, -1.0f);
    write_fits_filled(AT("ones.fits"), 32, 32, 1, 1.0f);
    write_fits_filled(AT("wide.fits"), 40, 32, 1, 1.0f);
#undef AT
}

static const char *const hostile[] = {"huge_axis.fits", "billion_frames.fits", "big_square.fits",
                                      "short_data.fits", "huge_axis.npy", "billion_frames.npy",
                                      "big_square.npy", "negative.npy", "zero.npy",
                                      "billion_frames.fits.fz", "huge_axis.fits.fz", "directory.fits",
                                      "good_small.fits[5]", "zval2_zero.fits.fz", "zval2_neg.fits.fz",
                                      "zval2_huge.fits.fz", "zval1_zero.fits.fz", "zval1_huge.fits.fz",
                                      "zbitpix.fits.fz", "zcmptype.fits.fz", "ztile.fits.fz",
                                      "control_char.fits.fz", "partial_block.fits", "ztile_twice.fits.fz",
                                      "ztile_lower.fits.fz", "ztile_hierarch.fits.fz", "ztile_odd.fits.fz",
                                      "zval2_logical.fits.fz"};

static void refused(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    clred_file_info info;
    clred_status s = clred_file_info_read(path, &info);
    char base[1024];
    snprintf(base, sizeof base, "%s", path);
    char *sel = strchr(strrchr(base, '/'), '[');
    if (sel)
        *sel = '\0';
    CHECK_MSG(s == CLRED_ERR_INPUT, "%s: info status %d (%s)", name, (int)s, clred_last_error());
    CHECK_MSG(strstr(clred_last_error(), base) != NULL, "%s: message does not name the file: %s", name,
              clred_last_error());
    clred_image img;
    s = clred_image_read(path, 0, &img);
    CHECK_MSG(s == CLRED_ERR_INPUT, "%s: read status %d (%s)", name, (int)s, clred_last_error());
    float row[8];
    s = clred_rows_read(path, 0, 0, 1, row);
    CHECK_MSG(s == CLRED_ERR_INPUT, "%s: rows status %d (%s)", name, (int)s, clred_last_error());
}

static void readable(const char *dir, const char *name, size_t w, size_t h)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    clred_image img;
    CHECK_OK(clred_image_read(path, 0, &img));
    CHECK_MSG(img.width == w && img.height == h, "%s: %zu x %zu", name, img.width, img.height);
    clred_image_free(&img);
}

/* A Rice file from write_fz reads back as written: the bytes per pixel come
 * from ZVAL2 whatever ZNAME2 says, in the check before cfitsio as in cfitsio. */
static void rice_pixels_as_written(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    clred_image img;
    CHECK_OK(clred_image_read(path, 0, &img));
    if (!img.sci)
        return;
    size_t wrong = 0;
    for (size_t i = 0; i < 32 * 32; i++)
        wrong += img.sci[i] != (float)(i % 97);
    CHECK_MSG(img.width == 32 && img.height == 32 && wrong == 0, "%s: %zu pixels differ", name, wrong);
    clred_image_free(&img);
}

/* Position catalogs: non-finite positions and overlong lines are refused. */
static void test_positions(const char *dir)
{
    static const char *const bad[][2] = {{"nan.csv", "x,y\n1,2\nnan,3\n"},
                                         {"inf.csv", "x,y\n1,inf\n"},
                                         {"empty.csv", "# nothing\n"},
                                         {"noxy.csv", "a,b\n1,2\n"}};
    char path[1024];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, bad[i][0]);
        FILE *f = fopen(path, "w");
        fputs(bad[i][1], f);
        fclose(f);
        double *x, *y;
        size_t n;
        CHECK_MSG(clred_positions_read(path, &x, &y, &n) == CLRED_ERR_INPUT, "%s accepted", bad[i][0]);
        CHECK_MSG(strstr(clred_last_error(), bad[i][0]) != NULL, "%s: %s", bad[i][0], clred_last_error());
    }
    snprintf(path, sizeof path, "%s/long.csv", dir);
    FILE *f = fopen(path, "w");
    fputs("x,y\n1,", f);
    for (int i = 0; i < 10000; i++)
        fputc('0', f);
    fputs("2\n", f);
    fclose(f);
    double *x, *y;
    size_t n;
    CHECK(clred_positions_read(path, &x, &y, &n) == CLRED_ERR_INPUT);
    snprintf(path, sizeof path, "%s/good.csv", dir);
    f = fopen(path, "w");
    fputs("x,y\n1.5,2.5\n3,4", f);
    fclose(f);
    CHECK_OK(clred_positions_read(path, &x, &y, &n));
    CHECK(n == 2 && x[1] == 3 && y[0] == 2.5);
    free(x);
    free(y);
}

/* Damaged tile data (bytes changed past the headers): a read succeeds (with
 * wrong values) or fails with CLRED_ERR_INPUT naming the file; it never crashes. */
static void test_damaged_tiles(const char *dir)
{
    char good[1100], bad[1100];
    snprintf(good, sizeof good, "%s/good_small.fits.fz", dir);
    snprintf(bad, sizeof bad, "%s/damaged.fits.fz", dir);
    FILE *f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *orig = malloc((size_t)size), *copy = malloc((size_t)size);
    CHECK(fread(orig, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    harness_rng rng = {7};
    int failed = 0, read = 0;
    for (int trial = 0; trial < 150; trial++) {
        memcpy(copy, orig, (size_t)size);
        /* The data follow two 2880-byte headers (primary, table). */
        for (int k = 0; k < 1 + trial % 4; k++) {
            long at = 5760 + (long)(harness_uniform(&rng) * (double)(size - 5760));
            copy[at] = (unsigned char)(harness_uniform(&rng) * 256);
        }
        f = fopen(bad, "wb");
        fwrite(copy, 1, (size_t)size, f);
        fclose(f);
        clred_image img;
        clred_status s = clred_image_read(bad, 0, &img);
        if (s == CLRED_OK) {
            read++;
            clred_image_free(&img);
        } else {
            failed++;
            CHECK_MSG(s == CLRED_ERR_INPUT && strstr(clred_last_error(), "damaged.fits.fz"), "trial %d: %d %s",
                      trial, (int)s, clred_last_error());
        }
    }
    printf("damaged tiles: %d read, %d refused\n", read, failed);
    free(orig);
    free(copy);
}

static void test_shape_check(void)
{
    CHECK(clred_shape_check("a", 10, 10, 1, 4, 400) == CLRED_OK);
    CHECK(clred_shape_check("a", 10, 10, 1, 4, 399) == CLRED_ERR_INPUT);
    CHECK(clred_shape_check("a", 0, 10, 1, 4, 400) == CLRED_ERR_INPUT);
    CHECK(clred_shape_check("a", CLRED_MAX_AXIS + 1, 1, 1, 4, ~0ULL) == CLRED_ERR_INPUT);
    CHECK(clred_shape_check("a", CLRED_MAX_AXIS, CLRED_MAX_AXIS, 1, 4, ~0ULL) == CLRED_ERR_INPUT);
    CHECK(clred_shape_check("a", 1 << 16, 1 << 15, CLRED_MAX_FRAMES, 8, 1ULL << 53) == CLRED_ERR_INPUT);
    size_t out;
    CHECK(!clred_size_mul(SIZE_MAX / 2 + 1, 2, &out));
    CHECK(clred_size_mul(SIZE_MAX / 2, 2, &out) && out == SIZE_MAX - 1);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        write_all(argv[1]);
        return 0;
    }
#if !defined(__SANITIZE_ADDRESS__) && !defined(CLRED_SANITIZED)
    /* Nothing here may allocate what a lying header claims: 2 GiB of address
     * space is far more than the valid files need and far less than any claim. */
    struct rlimit lim = {(rlim_t)2 << 30, (rlim_t)2 << 30};
    setrlimit(RLIMIT_AS, &lim);
#endif
    const char *dir = harness_tmpdir("test_hostile_files");
    write_all(dir);
    test_shape_check();
    test_positions(dir);
    test_damaged_tiles(dir);
    for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++)
        refused(dir, hostile[i]);
    char cube[1100];
    snprintf(cube, sizeof cube, "%s/cube.fits", dir);
    clred_image img;
    CHECK(clred_image_read_2d(cube, &img) == CLRED_ERR_INPUT && strstr(clred_last_error(), "cube of 3 frames"));
    CHECK_OK(clred_image_read(cube, 2, &img)); /* a plane of it is still readable */
    clred_image_free(&img);
    readable(dir, "good_small.fits", 8, 8);
    readable(dir, "good_small.npy", 8, 8);
    readable(dir, "good_small.fits.fz", 32, 32);
    rice_pixels_as_written(dir, "zname2_other.fits.fz");
    return harness_finish();
}
