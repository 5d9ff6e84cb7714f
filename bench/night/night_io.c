/* The floor a night reduction is measured against: reading every raw input
 * once (clred_image_read, as the night's reader thread does) and writing
 * every product once (clred_image_write, as its writer thread does), one
 * after the other on one thread, with no device work.
 *
 *   clred-night-io INPUT_DIR PRODUCTS_DIR SCRATCH_DIR
 *
 * Reads every *.fits of INPUT_DIR (timed); then each product under
 * PRODUCTS_DIR/{masters,calibrated,background,stacks} is read (not timed) and
 * written to SCRATCH_DIR (timed), then removed. The same files are also read
 * and written as bytes (bench/io_floor.c, temporary + rename as clred writes:
 * the floor without FITS decoding and encoding). Prints one JSON object. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clred.h"
#include "io_floor.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int is_fits(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && !strcmp(name + n - 5, ".fits") && name[0] != '.';
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted *.fits paths of dir; returns the count (0 when none or unreadable). */
static size_t list(const char *dir, char ***out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (is_fits(e->d_name)) {
            char **l = realloc(*out, (n + 1) * sizeof *l);
            if (!l)
                break;
            *out = l;
            size_t len = strlen(dir) + strlen(e->d_name) + 2;
            l[n] = malloc(len);
            snprintf(l[n++], len, "%s/%s", dir, e->d_name);
        }
    closedir(d);
    qsort(*out, n, sizeof **out, cmp);
    return n;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: clred-night-io INPUT_DIR PRODUCTS_DIR SCRATCH_DIR\n");
        return 2;
    }
    char **in;
    size_t nin = list(argv[1], &in), nout = 0;
    double read_s = 0, write_s = 0, bytes_read_s = 0, bytes_write_s = 0;
    uint64_t read_bytes = 0, write_bytes = 0;
    for (size_t i = 0; i < nin; i++) {
        clred_image img;
        double t0 = now();
        if (clred_image_read(in[i], 0, &img) != CLRED_OK) {
            fprintf(stderr, "clred-night-io: %s\n", clred_last_error());
            return 1;
        }
        read_s += now() - t0;
        read_bytes += file_size(in[i]);
        char *bytes;
        size_t len;
        t0 = now();
        if (io_floor_read(in[i], &bytes, &len) != 0) {
            fprintf(stderr, "clred-night-io: %s: cannot read\n", in[i]);
            return 1;
        }
        bytes_read_s += now() - t0;
        free(bytes);
        clred_image_free(&img);
        free(in[i]);
    }
    free(in);
    static const char *subs[] = {"masters", "calibrated", "background", "stacks"};
    for (size_t s = 0; s < 4; s++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", argv[2], subs[s]);
        char **p;
        size_t n = list(dir, &p);
        for (size_t i = 0; i < n; i++) {
            clred_image img;
            if (clred_image_read(p[i], 0, &img) != CLRED_OK) {
                fprintf(stderr, "clred-night-io: %s\n", clred_last_error());
                return 1;
            }
            char dest[4200];
            snprintf(dest, sizeof dest, "%s/%s_%zu.fits", argv[3], subs[s], i);
            double t0 = now();
            if (clred_image_write(dest, &img, 1) != CLRED_OK) {
                fprintf(stderr, "clred-night-io: %s\n", clred_last_error());
                return 1;
            }
            write_s += now() - t0;
            write_bytes += file_size(dest);
            char *bytes;
            size_t len;
            if (io_floor_read(dest, &bytes, &len) != 0) {
                fprintf(stderr, "clred-night-io: %s: cannot read back\n", dest);
                return 1;
            }
            t0 = now();
            if (io_floor_write(dest, bytes, len, IO_FLOOR_UNLINK_RENAME) != 0) {
                fprintf(stderr, "clred-night-io: %s: cannot write\n", dest);
                return 1;
            }
            bytes_write_s += now() - t0;
            free(bytes);
            unlink(dest);
            clred_image_free(&img);
            free(p[i]);
            nout++;
        }
        free(p);
    }
    printf("{\"inputs\": %zu, \"products\": %zu, \"read_s\": %.4f, \"write_s\": %.4f, \"read_plus_write_s\": %.4f, "
           "\"read_bytes\": %llu, \"write_bytes\": %llu, \"bytes_read_s\": %.4f, \"bytes_write_s\": %.4f}\n",
           nin, nout, read_s, write_s, read_s + write_s, (unsigned long long)read_bytes,
           (unsigned long long)write_bytes, bytes_read_s, bytes_write_s);
    return 0;
}
