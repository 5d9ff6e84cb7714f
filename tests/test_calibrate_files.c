/* clred_calibrate_files, the streamed files-to-files calibration, against
 * the serial path it replaces (each frame read, clred_calibrator_apply,
 * clred_image_write): the output files are the same bytes, streamed (reader
 * and writer threads) or not; --planes sci (CLRED_WRITE_SCI) writes the same
 * SCI alone, and its data written raw are the bytes cfitsio writes; raw
 * frames as uint16 with BZERO, int32 or tile-compressed give the SCI of
 * float32 ones, and 16-bit frames read straight from the file are cfitsio's
 * values bit for bit; odd master VAR (NaN, huge) gives SCI alone the NO_DATA
 * pixels of the full product; and a bad
 * frame in the middle fails with one message naming it
 * and leaves no output and no temporary, streamed or not. The calibration's
 * values are checked against the double reference by test_calibrate. */
#include <dirent.h>
#include <fitsio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

#define W 40
#define H 30
#define NF 5

static void make_raw(clred_image *raw, double exptime, uint64_t seed)
{
    harness_rng rng = {seed};
    clred_image_alloc(raw, W, H, 0, 0);
    raw->header = clred_header_new();
    clred_header_set_double(raw->header, "EXPTIME", exptime, NULL);
    clred_header_set_double(raw->header, "GAIN", 1.7, NULL);
    clred_header_set_double(raw->header, "RDNOISE", 4.5, NULL);
    clred_header_set_double(raw->header, "SATURATE", 60000, NULL);
    for (size_t i = 0; i < (size_t)W * H; i++) {
        double u = harness_uniform(&rng);
        raw->sci[i] = u < 0.01 ? 65000.0f : (float)floor(1000.0 + 30.0 * harness_normal(&rng));
    }
}

static void make_master(clred_image *m, double level, double spread, uint64_t seed)
{
    harness_rng rng = {seed};
    clred_image_alloc(m, W, H, 1, 1);
    m->header = clred_header_new();
    for (size_t i = 0; i < (size_t)W * H; i++) {
        m->sci[i] = (float)(level + spread * harness_normal(&rng));
        m->var[i] = (float)(0.01 * level);
    }
}

/* The whole file's bytes; NULL when it does not exist. */
/* A raw frame as a camera writes it: 0 uint16 (BZERO 32768), 1 int32,
 * 2 uint16 tile-compressed (RICE, lossless for integers). */
static void write_encoded(const char *path, const clred_image *raw, int kind)
{
    static const char *const keys[] = {"EXPTIME", "GAIN", "RDNOISE", "SATURATE"};
    char name[1200];
    snprintf(name, sizeof name, "%s%s", path, kind == 2 ? "[compress R]" : "");
    remove(path);
    fitsfile *f;
    int status = 0;
    long naxes[2] = {W, H};
    fits_create_file(&f, name, &status);
    fits_create_img(f, kind == 1 ? LONG_IMG : USHORT_IMG, 2, naxes, &status);
    for (size_t k = 0; k < 4; k++) {
        double v = 0;
        clred_header_get_double(raw->header, keys[k], &v);
        fits_update_key(f, TDOUBLE, keys[k], &v, NULL, &status);
    }
    unsigned short u[W * H];
    int v[W * H];
    for (size_t i = 0; i < (size_t)W * H; i++)
        u[i] = (unsigned short)raw->sci[i], v[i] = (int)raw->sci[i];
    if (kind == 1)
        fits_write_img(f, TINT, 1, (LONGLONG)W * H, v, &status);
    else
        fits_write_img(f, TUSHORT, 1, (LONGLONG)W * H, u, &status);
    fits_close_file(f, &status);
    CHECK_MSG(status == 0, "writing %s: cfitsio status %d", path, status);
}

/* A 16-bit frame: type USHORT_IMG (cfitsio adds BZERO 32768) or SHORT_IMG
 * with the given BZERO, BSCALE and BLANK (when blank) written as cards and
 * the stored values v[i] = (i * 7919) % 65536 - 32768 (every bit pattern
 * over a frame, the extremes included). */
static void write_int16(const char *path, long w, long h, int type, double bzero, double bscale, int blank)
{
    remove(path);
    fitsfile *f;
    int status = 0;
    long naxes[2] = {w, h};
    fits_create_file(&f, path, &status);
    fits_create_img(f, type, 2, naxes, &status);
    double exptime = 20.0;
    fits_update_key(f, TDOUBLE, "EXPTIME", &exptime, NULL, &status);
    if (type == SHORT_IMG && (bzero != 0 || bscale != 1)) {
        fits_update_key(f, TDOUBLE, "BZERO", &bzero, NULL, &status);
        fits_update_key(f, TDOUBLE, "BSCALE", &bscale, NULL, &status);
    }
    if (blank) {
        long b = -32768 + 7919;
        fits_update_key(f, TLONG, "BLANK", &b, NULL, &status);
    }
    fits_set_bscale(f, 1.0, type == USHORT_IMG ? 32768.0 : 0.0, &status); /* the stored values as given */
    size_t n = (size_t)(w * h);
    short *v = malloc(n * sizeof *v);
    unsigned short *u = malloc(n * sizeof *u);
    for (size_t i = 0; v && u && i < n; i++) {
        long s = (long)((i * 7919) % 65536) - 32768;
        v[i] = (short)s, u[i] = (unsigned short)(s + 32768);
    }
    if (type == USHORT_IMG)
        fits_write_img(f, TUSHORT, 1, (LONGLONG)n, u, &status);
    else
        fits_write_img(f, TSHORT, 1, (LONGLONG)n, v, &status);
    fits_close_file(f, &status);
    free(v);
    free(u);
    CHECK_MSG(status == 0, "writing %s: cfitsio status %d", path, status);
}

/* 16-bit frames read straight from the file (fitsio.c raw_rows) against
 * cfitsio's own conversion (CLRED_NO_RAW_FITS=1), bit for bit: uint16,
 * signed int16 of an odd width, a BZERO that is not an integer, one so large
 * that the sums round in float; BSCALE != 1 and BLANK, which go to cfitsio,
 * for the same result either way. */
static void check_int16_reads(const char *dir)
{
    static const struct {
        long w, h;
        int type;
        double bzero, bscale;
        int blank;
    } cases[] = {{W, H, USHORT_IMG, 32768, 1, 0}, {41, 7, SHORT_IMG, 0, 1, 0}, {257, 3, SHORT_IMG, 1000.3, 1, 0},
                 {13, 5, SHORT_IMG, 0, 2.5, 0},   {13, 5, SHORT_IMG, 32768, 1, 1},
                 {13, 5, SHORT_IMG, 33554433.0, 1, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/int16_%zu.fits", dir, c);
        write_int16(path, cases[c].w, cases[c].h, cases[c].type, cases[c].bzero, cases[c].bscale, cases[c].blank);
        clred_image raw, via;
        CHECK_OK(clred_image_read(path, 0, &raw));
        setenv("CLRED_NO_RAW_FITS", "1", 1);
        CHECK_OK(clred_image_read(path, 0, &via));
        unsetenv("CLRED_NO_RAW_FITS");
        size_t n = (size_t)(cases[c].w * cases[c].h);
        CHECK_MSG(raw.sci && via.sci && raw.width == (size_t)cases[c].w &&
                      memcmp(raw.sci, via.sci, n * sizeof(float)) == 0,
                  "16-bit case %zu: read straight differs from cfitsio's values", c);
        if (c == 0 && raw.sci)
            CHECK(raw.sci[0] == 0.0f && raw.sci[1] == 7919.0f); /* stored -32768 + BZERO 32768 */
        if (c == 4 && raw.sci)
            CHECK(isnan(raw.sci[1])); /* the BLANK value */
        clred_image_free(&raw);
        clred_image_free(&via);
    }
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(size > 0 ? (size_t)size : 1);
    *n = b ? fread(b, 1, (size_t)size, f) : 0;
    fclose(f);
    return b;
}

static int same_file_bytes(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static size_t files_in(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

static void out_paths(const char *dir, const char *stem, char paths[][1024], const char **list)
{
    for (size_t i = 0; i < NF; i++) {
        snprintf(paths[i], 1024, "%s/%s_%zu.fits", dir, stem, i);
        remove(paths[i]);
        list[i] = paths[i];
    }
}

int main(void)
{
    clred_ctx *ctx = harness_ctx();
    const char *tmp = harness_tmpdir("test_calibrate_files");
    char dir[400];
    snprintf(dir, sizeof dir, "%s", tmp);

    clred_image bias, dark, flat, raws[NF];
    make_master(&bias, 300.0, 2.0, 1);
    make_master(&dark, 0.5, 0.05, 2);
    make_master(&flat, 1.0, 0.02, 3);
    flat.sci[7] = 0.0f; /* NO_DATA */
    char raw_paths[NF][1024];
    const char *raw_list[NF];
    for (size_t i = 0; i < NF; i++) {
        make_raw(&raws[i], 20.0 + (double)i, 100 + i);
        snprintf(raw_paths[i], 1024, "%s/raw_%zu.fits", dir, i);
        CHECK_OK(clred_image_write(raw_paths[i], &raws[i], 1));
        raw_list[i] = raw_paths[i];
    }
    clred_masters m = {&bias, &dark, &flat, NULL, "bias", "dark", "flat", NULL};
    clred_calib_opts opts = clred_calib_defaults();
    opts.override_checks = 1; /* the zero flat pixel becomes NO_DATA */
    clred_calibrator *cal = NULL;
    CHECK_OK(clred_calibrator_create(ctx, &m, &opts, &cal));

    /* the serial path, as clred calibrate ran before streaming */
    char ref[NF][1024];
    const char *ref_list[NF];
    out_paths(dir, "ref", ref, ref_list);
    for (size_t i = 0; i < NF; i++) {
        clred_image raw, out;
        CHECK_OK(clred_image_read_2d(raw_paths[i], &raw));
        CHECK_OK(clred_calibrator_apply(cal, &raw, raw_paths[i], &out));
        CHECK_OK(clred_image_write(ref[i], &out, 1));
        clred_image_free(&raw);
        clred_image_free(&out);
    }

    for (int stream = 0; stream <= 1; stream++) {
        clred_calib_files_opts fo = clred_calib_files_defaults();
        fo.stream = stream;
        char got[NF][1024];
        const char *got_list[NF];
        out_paths(dir, stream ? "streamed" : "serial", got, got_list);
        CHECK_OK(clred_calibrate_files(cal, raw_list, got_list, NF, &fo));
        for (size_t i = 0; i < NF; i++)
            CHECK_MSG(same_file_bytes(ref[i], got[i]), "stream %d: %s differs from the serial path's", stream,
                      got[i]);

        /* SCI alone: the same SCI and header, no VAR or MASK */
        fo.planes = CLRED_WRITE_SCI;
        out_paths(dir, stream ? "sci_streamed" : "sci_serial", got, got_list);
        CHECK_OK(clred_calibrate_files(cal, raw_list, got_list, NF, &fo));
        for (size_t i = 0; i < NF; i++) {
            clred_image a, b;
            CHECK_OK(clred_image_read(ref[i], 0, &a));
            CHECK_OK(clred_image_read(got[i], 0, &b));
            CHECK_MSG(b.sci && memcmp(a.sci, b.sci, (size_t)W * H * sizeof(float)) == 0,
                      "stream %d: SCI-only %s differs", stream, got[i]);
            CHECK_MSG(!b.var && !b.mask, "stream %d: %s has VAR or MASK", stream, got[i]);
            CHECK(clred_header_count(a.header) == clred_header_count(b.header));
            clred_image_free(&a);
            clred_image_free(&b);
        }
        /* SCI alone is written raw (swapped data after a header cfitsio
         * formats): the same bytes as cfitsio's own writing */
        char via[NF][1024];
        const char *via_list[NF];
        out_paths(dir, stream ? "cfitsio_streamed" : "cfitsio_serial", via, via_list);
        setenv("CLRED_NO_RAW_FITS", "1", 1);
        CHECK_OK(clred_calibrate_files(cal, raw_list, via_list, NF, &fo));
        unsetenv("CLRED_NO_RAW_FITS");
        for (size_t i = 0; i < NF; i++)
            CHECK_MSG(same_file_bytes(via[i], got[i]), "stream %d: raw-written %s differs from cfitsio's %s", stream,
                      got[i], via[i]);
        /* existing outputs without overwrite: refused before any work */
        fo.planes = CLRED_WRITE_ALL;
        CHECK(clred_calibrate_files(cal, raw_list, got_list, NF, &fo) == CLRED_ERR_IO);
        fo.planes = CLRED_WRITE_VAR;
        CHECK(clred_calibrate_files(cal, raw_list, got_list, NF, &fo) == CLRED_ERR_USAGE);
    }

    /* raw frames in every encoding a camera writes, mixed in one run (the
     * reader reads each into the SCI array of an earlier frame): the SCI of
     * the float32 frames' run, bit for bit */
    {
        char mix[NF][1024], out[NF][1024], sci[NF][1024];
        const char *mix_list[NF], *out_list[NF];
        for (size_t i = 0; i < NF; i++) {
            snprintf(mix[i], sizeof mix[i], "%s/mix_%zu.fits", dir, i);
            if (i == 0 || i == NF - 1)
                CHECK_OK(clred_image_write(mix[i], &raws[i], 1)); /* float32 */
            else
                write_encoded(mix[i], &raws[i], (int)(i - 1) % 3);
            mix_list[i] = mix[i];
        }
        out_paths(dir, "mix_out", out, out_list);
        for (size_t i = 0; i < NF; i++) /* the float32 frames' SCI-only outputs of above */
            snprintf(sci[i], sizeof sci[i], "%s/sci_streamed_%zu.fits", dir, i);
        clred_calib_files_opts fo = clred_calib_files_defaults();
        fo.planes = CLRED_WRITE_SCI;
        CHECK_OK(clred_calibrate_files(cal, mix_list, out_list, NF, &fo));
        for (size_t i = 0; i < NF; i++) {
            clred_image a, b;
            CHECK_OK(clred_image_read(sci[i], 0, &a));
            CHECK_OK(clred_image_read(out[i], 0, &b));
            CHECK_MSG(a.sci && b.sci && memcmp(a.sci, b.sci, (size_t)W * H * sizeof(float)) == 0,
                      "%s (encoding %zu) calibrates differently from the float32 frame", mix[i], i);
            clred_image_free(&a);
            clred_image_free(&b);
        }
    }

    check_int16_reads(dir);

    /* a truncated frame in the middle (16-bit, as a camera writes it): one
     * error naming it, nothing left */
    char bad[1024], bad16[1024];
    snprintf(bad, sizeof bad, "%s/truncated.fits", dir);
    snprintf(bad16, sizeof bad16, "%s/whole16.fits", dir);
    write_encoded(bad16, &raws[2], 0);
    {
        size_t n = 0;
        unsigned char *b = slurp(bad16, &n);
        FILE *f = fopen(bad, "wb");
        CHECK(b && f && n > 5000);
        if (b && f)
            fwrite(b, 1, n - 1000, f); /* the header and part of the data (2400 bytes) */
        if (f)
            fclose(f);
        free(b);
    }
    const char *with_bad[NF] = {raw_list[0], raw_list[1], bad, raw_list[3], raw_list[4]};
    for (int stream = 0; stream <= 1; stream++) {
        char sub[500];
        snprintf(sub, sizeof sub, "%s/bad_%d", dir, stream);
        mkdir(sub, 0755);
        char got[NF][1024];
        const char *got_list[NF];
        out_paths(sub, "out", got, got_list);
        clred_calib_files_opts fo = clred_calib_files_defaults();
        fo.stream = stream;
        clred_status st = clred_calibrate_files(cal, with_bad, got_list, NF, &fo);
        CHECK_MSG(st == CLRED_ERR_INPUT, "stream %d: a truncated frame gave %d", stream, (int)st);
        CHECK_MSG(strstr(clred_last_error(), "truncated.fits") != NULL && !strchr(clred_last_error(), '\n'),
                  "stream %d: the message should name the file on one line: %s", stream, clred_last_error());
        CHECK_MSG(files_in(sub, "out_") == 0 && files_in(sub, ".out_") == 0,
                  "stream %d: outputs or temporaries left in %s", stream, sub);
    }

    /* SCI alone skips the masters' VAR where a bound on it proves the
     * variance finite: a VAR that is NaN (not flagged NO_DATA) or huge must
     * still make the same pixels NO_DATA (NaN SCI) as the full product */
    for (int odd_case = 0; odd_case < 2; odd_case++) {
        float keep[4] = {dark.var[21], bias.var[30], dark.var[30], flat.var[11]};
        /* (away from pixel 7, whose zero flat sends its 8 pixels to the exact path anyway) */
        if (odd_case == 0) {
            dark.var[21] = NAN; /* its bound is +inf: the exact variance everywhere */
        } else {                /* finite bounds, but these pixels' variance overflows */
            bias.var[30] = 3e38f;
            dark.var[30] = 3e38f;
            flat.var[11] = 1e38f;
        }
        clred_calibrator *odd = NULL;
        CHECK_OK(clred_calibrator_create(ctx, &m, &opts, &odd));
        char all[NF][1024], sci[NF][1024];
        const char *all_list[NF], *sci_list[NF];
        out_paths(dir, "odd_all", all, all_list);
        out_paths(dir, "odd_sci", sci, sci_list);
        clred_calib_files_opts fo = clred_calib_files_defaults();
        CHECK_OK(clred_calibrate_files(odd, raw_list, all_list, NF, &fo));
        fo.planes = CLRED_WRITE_SCI;
        CHECK_OK(clred_calibrate_files(odd, raw_list, sci_list, NF, &fo));
        for (size_t i = 0; i < NF; i++) {
            clred_image a, b;
            CHECK_OK(clred_image_read(all[i], 0, &a));
            CHECK_OK(clred_image_read(sci[i], 0, &b));
            CHECK_MSG(a.sci && b.sci && memcmp(a.sci, b.sci, (size_t)W * H * sizeof(float)) == 0,
                      "odd VAR (case %d): SCI-only %s differs from the full product's SCI", odd_case, sci[i]);
            if (a.sci)
                CHECK_MSG(isnan(odd_case == 0 ? a.sci[21] : a.sci[30]),
                          "case %d: the pixel of NaN or overflowing variance should be NO_DATA", odd_case);
            clred_image_free(&a);
            clred_image_free(&b);
        }
        clred_calibrator_free(odd);
        dark.var[21] = keep[0], bias.var[30] = keep[1], dark.var[30] = keep[2], flat.var[11] = keep[3];
    }

    clred_calibrator_free(cal);
    clred_image_free(&bias);
    clred_image_free(&dark);
    clred_image_free(&flat);
    for (size_t i = 0; i < NF; i++)
        clred_image_free(&raws[i]);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
