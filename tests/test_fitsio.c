/* FITS and .npy reading and writing: every BITPIX with BZERO/BSCALE, HDU
 * selection, tile compression, cubes, headers and HISTORY, atomic writes and
 * the messages for bad files. Fixtures are written here with cfitsio directly,
 * so the reader is checked against an independent writer. */
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

static char dir[4096];

static const char *path_in(const char *name)
{
    static char p[8][4200];
    static int slot;
    slot = (slot + 1) % 8;
    snprintf(p[slot], sizeof p[slot], "%s/%s", dir, name);
    return p[slot];
}

/* A value pattern that exercises sign and range for each type. */
static double pattern(size_t i, int bitpix)
{
    switch (bitpix) {
    case 8: return (double)(i * 37 % 256);
    case 16: return (double)((long)(i * 7919 % 65536) - 32768);
    case 32: return (double)((long)(i * 104729 % 2000000) - 1000000);
    default: return (double)i * 0.5 - 17.25;
    }
}

static void write_fits(const char *path, int bitpix, int naxis, const long *naxes, double bzero, double bscale,
                       int with_extra_hdu)
{
    fitsfile *f;
    int status = 0;
    remove(path);
    fits_create_file(&f, path, &status);
    if (with_extra_hdu)
        fits_create_img(f, 8, 0, NULL, &status);
    fits_create_img(f, bitpix, naxis, (long *)naxes, &status);
    if (bzero != 0.0 || bscale != 1.0) {
        fits_write_key(f, TDOUBLE, "BZERO", &bzero, NULL, &status);
        fits_write_key(f, TDOUBLE, "BSCALE", &bscale, NULL, &status);
        fits_set_bscale(f, bscale, bzero, &status);
    }
    if (with_extra_hdu)
        fits_write_key(f, TSTRING, "EXTNAME", "SCI", NULL, &status);
    double exptime = 60.0;
    fits_write_key(f, TDOUBLE, "EXPTIME", &exptime, "exposure", &status);
    fits_write_key(f, TSTRING, "OBJECT", "NGC 2420", NULL, &status);
    size_t n = 1; /* naxes has naxis entries (a 1-D vector has one) */
    for (int a = 0; a < naxis; a++)
        n *= (size_t)naxes[a];
    double *data = malloc(n * sizeof *data);
    for (size_t i = 0; i < n; i++) {
        double stored = pattern(i, bitpix);
        data[i] = stored * bscale + bzero; /* physical value; cfitsio scales back */
    }
    fits_write_img(f, TDOUBLE, 1, (LONGLONG)n, data, &status);
    fits_close_file(f, &status);
    free(data);
    CHECK_MSG(status == 0, "writing fixture %s failed with cfitsio status %d", path, status);
}

static void check_bitpix(int bitpix, double bzero, double bscale)
{
    long naxes[2] = {13, 7};
    const char *p = path_in("bitpix.fits");
    write_fits(p, bitpix, 2, naxes, bzero, bscale, 0);
    clred_image img;
    CHECK_OK(clred_image_read(p, 0, &img));
    if (!img.sci)
        return;
    CHECK(img.width == 13 && img.height == 7);
    int bad = 0;
    for (size_t i = 0; i < 13 * 7; i++) {
        double expect = pattern(i, bitpix) * bscale + bzero;
        /* float32 holds these exactly for integer types up to 2^24; doubles round once */
        if (fabs(img.sci[i] - expect) > fabs(expect) * 6e-8 + 1e-12)
            bad++;
    }
    CHECK_MSG(bad == 0, "BITPIX %d BZERO %g BSCALE %g: %d pixels wrong", bitpix, bzero, bscale, bad);
    double v;
    CHECK(clred_header_get_double(img.header, "EXPTIME", &v) && v == 60.0);
    char s[80];
    CHECK(clred_header_get_string(img.header, "OBJECT", s, sizeof s) && strcmp(s, "NGC 2420") == 0);
    /* Structural, scaling and data-range keywords are not carried into the header. */
    CHECK(!clred_header_get_double(img.header, "BZERO", &v));
    CHECK(!clred_header_get_double(img.header, "NAXIS1", &v));
    clred_image_free(&img);
}

static void write_npy(const char *path, const char *descr, const char *shape, const void *data, size_t bytes)
{
    char header[128];
    int len = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    unsigned short hlen = (unsigned short)(len + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f);
    fputc(hlen >> 8, f);
    fwrite(header, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 1, bytes, f);
    fclose(f);
}

static void test_npy(void)
{
    float f32[3 * 4 * 5];
    double f64[4 * 5];
    uint16_t u16[4 * 5];
    int16_t i16[4 * 5];
    for (int i = 0; i < 60; i++)
        f32[i] = (float)i * 1.25f - 3.0f;
    for (int i = 0; i < 20; i++) {
        f64[i] = i * 1e-3 + 1e5;
        u16[i] = (uint16_t)(65535 - i * 1000);
        i16[i] = (int16_t)(i * 1000 - 10000);
    }
    write_npy(path_in("cube.npy"), "<f4", "(3, 4, 5)", f32, sizeof f32);
    write_npy(path_in("f64.npy"), "<f8", "(4, 5)", f64, sizeof f64);
    write_npy(path_in("u16.npy"), "<u2", "(4, 5)", u16, sizeof u16);
    write_npy(path_in("i16.npy"), "<i2", "(4, 5)", i16, sizeof i16);

    clred_file_info info;
    CHECK_OK(clred_file_info_read(path_in("cube.npy"), &info));
    CHECK(info.width == 5 && info.height == 4 && info.nframes == 3);
    clred_image img;
    CHECK_OK(clred_image_read(path_in("cube.npy"), 2, &img));
    if (img.sci)
        CHECK_NEAR(img.sci[7], f32[2 * 20 + 7], 0);
    clred_image_free(&img);
    CHECK_OK(clred_image_read(path_in("f64.npy"), 0, &img));
    if (img.sci)
        CHECK_NEAR(img.sci[19], (float)f64[19], 0);
    clred_image_free(&img);
    CHECK_OK(clred_image_read(path_in("u16.npy"), 0, &img));
    if (img.sci)
        CHECK_NEAR(img.sci[3], 62535, 0);
    clred_image_free(&img);
    CHECK_OK(clred_image_read(path_in("i16.npy"), 0, &img));
    if (img.sci)
        CHECK_NEAR(img.sci[0], -10000, 0);
    clred_image_free(&img);

    float rows[2 * 5];
    CHECK_OK(clred_rows_read(path_in("cube.npy"), 1, 2, 2, rows));
    CHECK_NEAR(rows[0], f32[20 + 10], 0);

    /* A 1-D array and a truncated file are refused with the file named. */
    write_npy(path_in("one_d.npy"), "<f4", "(20,)", f32, 80);
    CHECK(clred_image_read(path_in("one_d.npy"), 0, &img) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "one_d.npy") != NULL);
    write_npy(path_in("short.npy"), "<f4", "(40, 50)", f32, sizeof f32);
    CHECK(clred_image_read(path_in("short.npy"), 0, &img) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "truncated") != NULL);
}

static void test_hdus_and_cubes(void)
{
    long naxes3[3] = {6, 5, 4};
    write_fits(path_in("cube.fits"), FLOAT_IMG, 3, naxes3, 0, 1, 0);
    clred_file_info info;
    CHECK_OK(clred_file_info_read(path_in("cube.fits"), &info));
    CHECK(info.width == 6 && info.height == 5 && info.nframes == 4 && info.bitpix == FLOAT_IMG);
    clred_image img;
    CHECK_OK(clred_image_read(path_in("cube.fits"), 3, &img));
    if (img.sci)
        CHECK_NEAR(img.sci[4], pattern(3 * 30 + 4, FLOAT_IMG), 0);
    clred_image_free(&img);
    CHECK(clred_image_read(path_in("cube.fits"), 4, &img) == CLRED_ERR_USAGE);

    /* An image in extension 1 with an empty primary: found by default, by number and by name. */
    long naxes[2] = {9, 8};
    write_fits(path_in("mef.fits"), SHORT_IMG, 2, naxes, 32768, 1, 1);
    const char *names[] = {"mef.fits", "mef.fits[1]", "mef.fits[SCI]"};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(clred_image_read(path_in(names[i]), 0, &img));
        if (img.sci)
            CHECK_NEAR(img.sci[10], pattern(10, SHORT_IMG) + 32768, 0);
        clred_image_free(&img);
    }
    CHECK(clred_image_read(path_in("mef.fits[NOPE]"), 0, &img) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "mef.fits") != NULL);
    CHECK(clred_image_read(path_in("mef.fits[0]"), 0, &img) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "no image") != NULL);

    /* Tile-compressed (.fz, Rice): lossless for integers. */
    const char *fz = path_in("tile.fits.fz");
    char spec[4300];
    snprintf(spec, sizeof spec, "%s[compress R]", fz);
    remove(fz);
    fitsfile *f;
    int status = 0;
    fits_create_file(&f, spec, &status);
    long n2[2] = {40, 30};
    fits_create_img(f, SHORT_IMG, 2, n2, &status);
    short data[1200];
    for (int i = 0; i < 1200; i++)
        data[i] = (short)(i % 300 - 100);
    fits_write_img(f, TSHORT, 1, 1200, data, &status);
    fits_close_file(f, &status);
    CHECK(status == 0);
    CHECK_OK(clred_image_read(fz, 0, &img));
    if (img.sci) {
        int bad = 0;
        for (int i = 0; i < 1200; i++)
            bad += img.sci[i] != data[i];
        CHECK_MSG(bad == 0, "%d tile-compressed pixels differ", bad);
    }
    clred_image_free(&img);
}

static void test_write_read(void)
{
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 17, 11, 1, 1));
    img.header = clred_header_new();
    CHECK_OK(clred_header_set_double(img.header, "EXPTIME", 30.5, "seconds"));
    CHECK_OK(clred_header_set_string(img.header, "FILTER", "V'x", NULL));
    CHECK_OK(clred_header_add_history(img.header, "clred test: a history card long enough to be split over "
                                                  "more than one card because it exceeds seventy-two characters"));
    for (size_t i = 0; i < 17 * 11; i++) {
        img.sci[i] = (float)i * 0.25f;
        img.var[i] = (float)i;
        img.mask[i] = (uint16_t)(i % 3 == 0 ? CLRED_MASK_SATURATED : 0);
    }
    img.sci[5] = NAN;
    float extra_data[17 * 11];
    for (size_t i = 0; i < 17 * 11; i++)
        extra_data[i] = 3.0f;
    clred_extra_plane extra = {"NCONTRIB", extra_data};
    const char *out = path_in("out.fits");
    remove(out);
    CHECK_OK(clred_image_write_with(out, &img, &extra, 1, 0));

    /* Existing output: refused without overwrite, file untouched. */
    CHECK(clred_image_write(out, &img, 0) == CLRED_ERR_IO);
    CHECK(strstr(clred_last_error(), "--overwrite") != NULL);
    CHECK_OK(clred_image_write_with(out, &img, &extra, 1, 1));

    clred_image back;
    CHECK_OK(clred_image_read(out, 0, &back));
    if (back.sci) {
        CHECK(back.width == 17 && back.height == 11);
        CHECK(isnan(back.sci[5]));
        CHECK_NEAR(back.sci[100], 25.0, 0);
        CHECK(back.var && back.mask);
        if (back.var)
            CHECK_NEAR(back.var[100], 100.0, 0);
        if (back.mask)
            CHECK(back.mask[99] == CLRED_MASK_SATURATED && back.mask[100] == 0);
        double v;
        CHECK(clred_header_get_double(back.header, "EXPTIME", &v) && v == 30.5);
        char s[80];
        CHECK(clred_header_get_string(back.header, "FILTER", s, sizeof s) && strcmp(s, "V'x") == 0);
        size_t hist = 0;
        for (size_t i = 0; i < clred_header_count(back.header); i++)
            hist += strncmp(clred_header_card(back.header, i), "HISTORY", 7) == 0;
        CHECK(hist == 2);
    }
    clred_image_free(&back);
    CHECK_OK(clred_image_read(path_in("out.fits[NCONTRIB]"), 0, &back));
    if (back.sci)
        CHECK_NEAR(back.sci[0], 3.0, 0);
    clred_image_free(&back);
    /* The MASK extension names its bits. */
    fitsfile *f;
    int status = 0;
    char name[FLEN_VALUE] = "";
    char spec[4300];
    snprintf(spec, sizeof spec, "%s[MASK]", out);
    fits_open_file(&f, spec, READONLY, &status);
    fits_read_key(f, TSTRING, "BIT01", name, NULL, &status);
    fits_close_file(f, &status);
    CHECK(status == 0 && strcmp(name, "SATURATED") == 0);

    /* The output may never be one of the inputs, even with overwrite. */
    const char *inputs[] = {out};
    CHECK(clred_output_check(out, inputs, 1, 1) == CLRED_ERR_USAGE);
    const char *sel_inputs[] = {path_in("out.fits[SCI]")};
    CHECK(clred_output_check(out, sel_inputs, 1, 1) == CLRED_ERR_USAGE);

    /* An unwritable output leaves nothing behind. */
    CHECK(clred_image_write(path_in("no/such/dir/x.fits"), &img, 0) == CLRED_ERR_IO);
    clred_image_free(&img);
}

static void test_bad_files(void)
{
    clred_image img;
    CHECK(clred_image_read(path_in("missing.fits"), 0, &img) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "missing.fits: no such file") != NULL);

    FILE *f = fopen(path_in("text.fits"), "w");
    fputs("this is not a FITS file\n", f);
    fclose(f);
    CHECK(clred_image_read(path_in("text.fits"), 0, &img) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "text.fits") != NULL);
    CHECK(strstr(clred_last_error(), "not a FITS file") != NULL);

    /* Truncate a valid file inside its data. */
    long naxes[2] = {100, 100};
    write_fits(path_in("full.fits"), FLOAT_IMG, 2, naxes, 0, 1, 0);
    FILE *in = fopen(path_in("full.fits"), "rb");
    FILE *out = fopen(path_in("trunc.fits"), "wb");
    char buf[2880];
    for (int block = 0; block < 4 && fread(buf, 1, sizeof buf, in) == sizeof buf; block++)
        fwrite(buf, 1, sizeof buf, out);
    fclose(in);
    fclose(out);
    CHECK(clred_image_read(path_in("trunc.fits"), 0, &img) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "trunc.fits") != NULL);
    CHECK(strstr(clred_last_error(), "truncated") != NULL);

    /* 1-D data is not an image. */
    long n1 = 10;
    write_fits(path_in("vector.fits"), FLOAT_IMG, 1, &n1, 0, 1, 0);
    CHECK(clred_image_read(path_in("vector.fits"), 0, &img) == CLRED_ERR_INPUT);
    CHECK(strstr(clred_last_error(), "NAXIS = 1") != NULL);
}

static void test_sections(void)
{
    clred_header *h = clred_header_new();
    CHECK_OK(clred_header_set_double(h, "GAIN", 1.9, NULL));
    CHECK_OK(clred_header_set_double(h, "GAIN", 2.1, NULL)); /* replaces, not appends */
    CHECK(clred_header_count(h) == 1);
    CHECK_OK(clred_header_append_card(h, "RDNOISE =               5.0D0 / FITS D exponent"));
    double v;
    CHECK(clred_header_get_double(h, "GAIN", &v) && v == 2.1);
    CHECK(clred_header_get_double(h, "RDNOISE", &v) && v == 5.0);
    CHECK(!clred_header_get_double(h, "GAI", &v));
    clred_header_free(h);
}

/* Unscaled BITPIX -32 images are read straight from the file (not through
 * cfitsio's conversion): the same bits as cfitsio's fits_read_pix with a NaN
 * null value gives for every kind of float (NaN and infinity become NaN,
 * zeros and subnormals +0), at any row of any frame and in an extension. */
static void test_raw_floats(void)
{
    const uint32_t special[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x00800000u, 0x7f7fffffu,
                                0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffc12345u,
                                0x3f800000u, 0xc2c80000u};
    enum { NS = sizeof special / sizeof *special, W = 37, H = 11, D = 3 };
    float *data = malloc(W * H * D * sizeof *data);
    for (size_t i = 0; i < W * H * D; i++) {
        uint32_t u = i % 5 == 0 ? special[(i / 5) % NS] : 0x3f000000u + (uint32_t)(i * 2654435761u % 0x01000000u);
        memcpy(&data[i], &u, sizeof u);
    }
    for (int mef = 0; mef <= 1; mef++) {
        const char *p = path_in(mef ? "raw_mef.fits" : "raw_cube.fits");
        fitsfile *f;
        int status = 0;
        remove(p);
        fits_create_file(&f, p, &status);
        if (mef)
            fits_create_img(f, 8, 0, NULL, &status);
        long naxes[3] = {W, H, D};
        fits_create_img(f, FLOAT_IMG, mef ? 2 : 3, naxes, &status);
        fits_write_img(f, TFLOAT, 1, (LONGLONG)W * H * (mef ? 1 : D), data, &status);
        fits_close_file(f, &status);
        CHECK_MSG(status == 0, "writing %s: cfitsio status %d", p, status);
        /* what cfitsio itself reads */
        float *expect = malloc(W * H * D * sizeof *expect), nul = NAN;
        int anynul = 0;
        fits_open_image(&f, p, READONLY, &status);
        fits_read_img(f, TFLOAT, 1, (LONGLONG)W * H * (mef ? 1 : D), &nul, expect, &anynul, &status);
        fits_close_file(f, &status);
        CHECK(status == 0);
        for (size_t frame = 0; frame < (mef ? 1u : (size_t)D); frame++) {
            clred_image img;
            CHECK_OK(clred_image_read(p, frame, &img));
            if (img.sci)
                CHECK_MSG(memcmp(img.sci, expect + frame * W * H, W * H * sizeof(float)) == 0,
                          "%s frame %zu: bits differ from cfitsio's", p, frame);
            clred_image_free(&img);
        }
        float rows[3 * W];
        size_t frame = mef ? 0 : 2;
        CHECK_OK(clred_rows_read(p, frame, 4, 3, rows));
        CHECK_MSG(memcmp(rows, expect + (frame * H + 4) * W, sizeof rows) == 0, "%s rows 4-6: bits differ", p);
        free(expect);
    }
    free(data);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s", harness_tmpdir("fitsio"));
    check_bitpix(BYTE_IMG, 0, 1);
    check_bitpix(SHORT_IMG, 0, 1);
    check_bitpix(SHORT_IMG, 32768, 1); /* uint16, the common CCD case */
    check_bitpix(LONG_IMG, 0, 1);
    check_bitpix(LONG_IMG, 100.0, 0.5);
    check_bitpix(FLOAT_IMG, 0, 1);
    check_bitpix(FLOAT_IMG, 10, 2); /* scaled: through cfitsio */
    check_bitpix(DOUBLE_IMG, 0, 1);
    test_npy();
    test_hdus_and_cubes();
    test_raw_floats();
    test_write_read();
    test_bad_files();
    test_sections();
    return harness_finish();
}
