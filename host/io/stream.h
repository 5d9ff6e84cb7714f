/* Streaming files through the device: a reader thread reads the next frames
 * into host images while the device works on the current one, and a writer
 * thread writes finished products while the device goes on. Used by the
 * night recipe and by clred_calibrate_files; internal. */
#ifndef CLRED_STREAM_H
#define CLRED_STREAM_H

#include "internal.h"

/* Reads files into host images ahead of their use, on a thread (inline on
 * the caller's when threaded is 0 or cfitsio is not reentrant). With two_d,
 * a file must hold one 2-D image (clred_image_read_2d), else frame 0 is read. */
typedef struct clred_stream_reader clred_stream_reader;
clred_status clred_stream_reader_start(clred_ctx *ctx, const char *const *paths, size_t n, size_t ahead, int threaded,
                                       int two_d, clred_stream_reader **r);
/* The next image in order (the caller owns it); its status is the read's. */
clred_status clred_stream_reader_next(clred_stream_reader *r, clred_image *img);
/* Gives a consumed image back: its SCI array (when the frame is 2-D) is read
 * into again for a later frame of the same size instead of a fresh one, so
 * no frame pays for faulting in and zeroing new pages; the rest is freed.
 * Only when no device command can still use the array. */
void clred_stream_reader_recycle(clred_stream_reader *r, clred_image *img);
/* Stops reading ahead, joins the thread; *read_s (if not NULL) receives the
 * time spent reading. */
void clred_stream_reader_finish(clred_stream_reader *r, double *read_s);

/* Writes products atomically on a thread, in order. */
typedef struct clred_stream_writer clred_stream_writer;
/* done(user, index, status, message) is called on the writer's thread after each write. */
typedef void (*clred_stream_written_fn)(void *user, size_t index, clred_status st, const char *message);
/* With batch, every write stays under its temporary name until
 * clred_stream_writer_finish(w, 1, ...) renames them all into place
 * (clred_write_batch_begin/end on the writer's thread), so the products
 * appear together or not at all. */
clred_status clred_stream_writer_start(clred_ctx *ctx, int threaded, int batch, clred_stream_written_fn done,
                                       void *user, clred_stream_writer **w);
/* Queues img for path; with take, the writer frees it after writing, else
 * the caller keeps it unchanged until clred_stream_writer_drain. */
clred_status clred_stream_writer_put(clred_stream_writer *w, const char *path, clred_image *img, int take,
                                     size_t index);
/* Queues a background model product (clred_bkg_model_write); the writer
 * takes model (emptied here), map and header, also on failure. */
clred_status clred_stream_writer_put_model(clred_stream_writer *w, const char *path, clred_bkg_model *model,
                                           float *map, clred_header *header, size_t index);
/* Waits until at most `most` queued writes are not done yet. */
void clred_stream_writer_wait(clred_stream_writer *w, size_t most);
/* Waits until every queued write is done. */
void clred_stream_writer_drain(clred_stream_writer *w);
/* Drains, joins the thread and frees w; *write_s (if not NULL) receives the
 * time spent writing. A batch writer commits its products when commit is 1
 * (the status is the renames'; termination signals are held meanwhile in
 * every thread) and removes them when 0. */
clred_status clred_stream_writer_finish(clred_stream_writer *w, int commit, double *write_s);

#endif
