/* The night recipe's parts (night.c, night_scan.c, night_stream.c,
 * night_manifest.c); internal. */
#ifndef CLRED_NIGHT_INTERNAL_H
#define CLRED_NIGHT_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "internal.h"

/* ---- scan (night_scan.c): one raw frame's header, identity and kind */

typedef struct {
    char *path;
    const char *name;       /* basename of path */
    clred_frame_kind kind;
    double exptime;         /* NaN when no keyword has it */
    char filter[72], object[72];
    uint64_t size;
    int64_t mtime_ns;
    uint64_t identity;      /* hash of path, size and mtime: a changed file is another input */
    size_t width, height;
    int usable;             /* 0: left out (problem says why) */
    char problem[256];
} night_frame;

/* Reads the header of path (primary HDU) and classifies the frame with the
 * comma-separated keyword lists; a file that cannot be opened, has no 2-D
 * image or is shorter than its header says leaves usable 0 with the reason. */
void night_scan_frame(const char *path, const clred_night_opts *o, night_frame *f);

/* ---- streaming (night_stream.c) */

/* Reads files into host images ahead of their use, on a thread. */
typedef struct night_reader night_reader;
clred_status night_reader_start(clred_ctx *ctx, const char *const *paths, size_t n, size_t ahead, int threaded,
                                night_reader **r);
/* The next image in order (the caller owns it); its status is the read's. */
clred_status night_reader_next(night_reader *r, clred_image *img);
/* Joins the thread; *read_s receives the time spent reading. */
void night_reader_finish(night_reader *r, double *read_s);

/* Writes products atomically on a thread, in order. */
typedef struct night_writer night_writer;
/* done(user, index, status) is called on the writer's thread after each write. */
typedef void (*night_written_fn)(void *user, size_t index, clred_status st, const char *message);
clred_status night_writer_start(clred_ctx *ctx, int threaded, night_written_fn done, void *user,
                                night_writer **w);
/* Queues img for path; with take, the writer frees it after writing, else
 * the caller keeps it unchanged until night_writer_drain. */
clred_status night_writer_put(night_writer *w, const char *path, clred_image *img, int take, size_t index);
/* Waits until everything queued is written. */
void night_writer_drain(night_writer *w);
void night_writer_finish(night_writer *w, double *write_s);

/* ---- manifest (night_manifest.c) */

/* A previous manifest's products: path -> key. */
typedef struct {
    size_t n;
    char **path;
    uint64_t *key;
} night_previous;

/* Loads the products of a previous manifest (none when absent or unreadable). */
void night_previous_load(const char *manifest, night_previous *p);
/* The key recorded for path, 0 when none. */
uint64_t night_previous_key(const night_previous *p, const char *path);
void night_previous_free(night_previous *p);

#endif
