/* The I/O floor of a files-in, files-out step: every input file read once
 * and every output written once, as bytes (no FITS decoding or encoding, no
 * device work), by one of the ways a program can put a file where an older
 * one of the same name is. Used by the calibration's floor rows
 * (calibrate.c) and by bench/night's read+write baseline (night_io.c). */
#ifndef CLRED_BENCH_IO_FLOOR_H
#define CLRED_BENCH_IO_FLOOR_H

#include <stddef.h>

/* How an output replaces a file already under its name. */
typedef enum {
    /* a temporary beside the target, renamed over it (clred before this
     * change; on ext4 the replacing rename starts the new file's writeback) */
    IO_FLOOR_RENAME,
    /* the same, with the old target unlinked just before the rename (clred) */
    IO_FLOOR_UNLINK_RENAME,
    /* unlinked, then created under its own name (astropy's overwrite=True) */
    IO_FLOOR_UNLINK,
    /* opened with O_TRUNC and written in place (not atomic) */
    IO_FLOOR_TRUNCATE,
    IO_FLOOR_SCHEMES
} io_floor_scheme;

/* A short name for a results row: "rename", "unlink-rename", ... */
const char *io_floor_scheme_name(io_floor_scheme s);

/* The whole file into a new buffer (free it); 0, or -1 with errno set. */
int io_floor_read(const char *path, char **buf, size_t *len);

/* len bytes to path by scheme s; 0, or -1 with errno set. */
int io_floor_write(const char *path, const void *buf, size_t len, io_floor_scheme s);

#endif
