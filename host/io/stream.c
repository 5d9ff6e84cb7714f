/* The streaming of files through the device (stream.h): a reader thread
 * reads the next frames into host images while the device works on the
 * current one, and a writer thread writes finished products while the device
 * goes on. cfitsio is built reentrant here (fits_is_reentrant); each thread
 * opens its own fitsfile handles (clred_image_read / clred_image_write do).
 * When it is not, or when streaming is off, both run inline on the caller's
 * thread. Their spans go to the context's trace on lanes "read" and "write".
 *
 * The threads hold the termination signals blocked, so a signal's handler
 * (clred_temp_files_remove) runs on the caller's thread, which holds them
 * while a batch is renamed into place. */
#include <fitsio.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

static int can_thread(int threaded) { return threaded && fits_is_reentrant(); }

static void termination_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
}

/* A thread that never runs the termination signals' handlers. */
static int start_thread(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t block, old;
    termination_signals(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* ------------------------------------------------------------- reader */

struct clred_stream_reader {
    clred_ctx *ctx;
    const char *const *paths;
    size_t n, ahead, produced, consumed;
    clred_image *img;
    clred_status *st;
    char **msg;
    int threaded, two_d, stop;
    /* SCI arrays given back (clred_stream_reader_recycle), of spare_pixels each */
    float *spare[4];
    size_t nspare, spare_pixels;
    double read_s;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
};

static void read_one(clred_stream_reader *r, size_t i)
{
    double t0 = clred_now();
    clred_status st;
    if (r->two_d) {
        float *spare = NULL;
        size_t pixels = 0;
        pthread_mutex_lock(&r->lock);
        if (r->nspare > 0)
            spare = r->spare[--r->nspare], pixels = r->spare_pixels;
        pthread_mutex_unlock(&r->lock);
        st = clred_image_read_2d_into(r->paths[i], &r->img[i], &spare, pixels);
        free(spare); /* not used: the frame had another size */
    } else {
        st = clred_image_read(r->paths[i], 0, &r->img[i]);
    }
    double t1 = clred_now();
    const char *slash = strrchr(r->paths[i], '/');
    clred_trace_host(r->ctx, "read", slash ? slash + 1 : r->paths[i], t0, t1);
    r->st[i] = st;
    r->msg[i] = st != CLRED_OK ? strdup(clred_last_error()) : NULL;
    r->read_s += t1 - t0;
}

static void *reader_main(void *arg)
{
    clred_stream_reader *r = arg;
    for (size_t i = 0; i < r->n; i++) {
        pthread_mutex_lock(&r->lock);
        while (!r->stop && i >= r->consumed + r->ahead)
            pthread_cond_wait(&r->changed, &r->lock);
        int stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        if (stop)
            break;
        read_one(r, i);
        pthread_mutex_lock(&r->lock);
        r->produced = i + 1;
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

clred_status clred_stream_reader_start(clred_ctx *ctx, const char *const *paths, size_t n, size_t ahead, int threaded,
                                       int two_d, clred_stream_reader **out)
{
    clred_stream_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->img = calloc(n + 1, sizeof *r->img)) || !(r->st = calloc(n + 1, sizeof *r->st)) ||
        !(r->msg = calloc(n + 1, sizeof *r->msg))) {
        if (r) {
            free(r->img);
            free(r->st);
        }
        free(r);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the reader");
    }
    r->ctx = ctx;
    r->paths = paths;
    r->n = n;
    r->ahead = ahead ? ahead : 1;
    r->threaded = can_thread(threaded);
    r->two_d = two_d;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->changed, NULL);
    if (r->threaded && start_thread(&r->thread, reader_main, r) != 0)
        r->threaded = 0;
    *out = r;
    return CLRED_OK;
}

clred_status clred_stream_reader_next(clred_stream_reader *r, clred_image *img)
{
    size_t i = r->consumed;
    if (i >= r->n)
        return clred_fail(CLRED_ERR_USAGE, "read past the last frame");
    if (r->threaded) {
        pthread_mutex_lock(&r->lock);
        while (r->produced <= i)
            pthread_cond_wait(&r->changed, &r->lock);
        pthread_mutex_unlock(&r->lock);
    } else {
        read_one(r, i);
    }
    *img = r->img[i];
    memset(&r->img[i], 0, sizeof r->img[i]);
    clred_status st = r->st[i];
    if (st != CLRED_OK)
        clred_fail(st, "%s", r->msg[i] ? r->msg[i] : "read failed");
    pthread_mutex_lock(&r->lock);
    r->consumed = i + 1;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    return st;
}

void clred_stream_reader_recycle(clred_stream_reader *r, clred_image *img)
{
    size_t pixels = img->width * img->height;
    pthread_mutex_lock(&r->lock);
    if (img->sci && !img->var && !img->mask && r->two_d &&
        r->nspare < sizeof r->spare / sizeof r->spare[0] && (r->nspare == 0 || pixels == r->spare_pixels)) {
        r->spare[r->nspare++] = img->sci;
        r->spare_pixels = pixels;
        img->sci = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    clred_image_free(img);
}

void clred_stream_reader_finish(clred_stream_reader *r, double *read_s)
{
    if (!r)
        return;
    if (r->threaded) {
        pthread_mutex_lock(&r->lock);
        r->stop = 1;
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->lock);
        pthread_join(r->thread, NULL);
    }
    for (size_t i = 0; i < r->n; i++) {
        clred_image_free(&r->img[i]);
        free(r->msg[i]);
    }
    for (size_t i = 0; i < r->nspare; i++)
        free(r->spare[i]);
    if (read_s)
        *read_s += r->read_s;
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->changed);
    free(r->img);
    free(r->st);
    free(r->msg);
    free(r);
}

/* ------------------------------------------------------------- writer */

typedef struct write_job {
    char *path;
    clred_image *img;
    /* or a background model product: the model, its full map (may be NULL)
     * and the header's cards, all owned by the job */
    clred_bkg_model *model;
    float *map;
    clred_header *header;
    int take;
    size_t index;
    struct write_job *next;
} write_job;

struct clred_stream_writer {
    clred_ctx *ctx;
    clred_stream_written_fn done;
    void *user;
    write_job *head, *tail;
    size_t pending;
    int threaded, batch, commit, stop;
    clred_status batch_status;
    char batch_message[1024];
    double write_s;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
};

static void write_one(clred_stream_writer *w, write_job *j)
{
    clred_temp_guard_enter(); /* a signal's clean-up waits for this file */
    double t0 = clred_now();
    clred_status st = j->model ? clred_bkg_model_write(j->path, j->model, j->map, j->header, 1)
                               : clred_image_write(j->path, j->img, 1);
    double t1 = clred_now();
    const char *slash = strrchr(j->path, '/');
    clred_trace_host(w->ctx, "write", slash ? slash + 1 : j->path, t0, t1);
    w->write_s += t1 - t0;
    clred_temp_guard_leave();
    w->done(w->user, j->index, st, st != CLRED_OK ? clred_last_error() : NULL);
    if (j->take && j->img) {
        clred_image_free(j->img);
        free(j->img);
    }
    if (j->model) {
        clred_bkg_model_free(j->model);
        free(j->model);
        free(j->map);
        clred_header_free(j->header);
    }
    free(j->path);
    free(j);
}

/* The end of a batch, on the thread that wrote it. */
static void batch_end(clred_stream_writer *w)
{
    if (!w->batch)
        return;
    w->batch_status = clred_write_batch_end(w->commit);
    if (w->batch_status != CLRED_OK)
        snprintf(w->batch_message, sizeof w->batch_message, "%s", clred_last_error());
}

static void *writer_main(void *arg)
{
    clred_stream_writer *w = arg;
    if (w->batch)
        clred_write_batch_begin();
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->head && !w->stop)
            pthread_cond_wait(&w->changed, &w->lock);
        write_job *j = w->head;
        if (!j) {
            pthread_mutex_unlock(&w->lock);
            batch_end(w);
            return NULL;
        }
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->lock);
        write_one(w, j);
        pthread_mutex_lock(&w->lock);
        w->pending--;
        pthread_cond_broadcast(&w->changed);
        pthread_mutex_unlock(&w->lock);
    }
}

clred_status clred_stream_writer_start(clred_ctx *ctx, int threaded, int batch, clred_stream_written_fn done,
                                       void *user, clred_stream_writer **out)
{
    clred_stream_writer *w = calloc(1, sizeof *w);
    if (!w)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory for the writer");
    w->ctx = ctx;
    w->done = done;
    w->user = user;
    w->threaded = can_thread(threaded);
    w->batch = batch;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->changed, NULL);
    if (w->threaded && start_thread(&w->thread, writer_main, w) != 0)
        w->threaded = 0;
    if (!w->threaded && batch)
        clred_write_batch_begin();
    *out = w;
    return CLRED_OK;
}

static void enqueue(clred_stream_writer *w, write_job *j);

clred_status clred_stream_writer_put_model(clred_stream_writer *w, const char *path, clred_bkg_model *model, float *map,
                                    clred_header *header, size_t index)
{
    write_job *j = calloc(1, sizeof *j);
    clred_bkg_model *m = malloc(sizeof *m);
    if (!j || !m || !(j->path = strdup(path))) {
        free(j), free(m), free(map);
        clred_bkg_model_free(model);
        clred_header_free(header);
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory queueing the write", path);
    }
    *m = *model;
    memset(model, 0, sizeof *model);
    j->model = m;
    j->map = map;
    j->header = header;
    j->index = index;
    enqueue(w, j);
    return CLRED_OK;
}

clred_status clred_stream_writer_put(clred_stream_writer *w, const char *path, clred_image *img, int take, size_t index)
{
    write_job *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) {
        free(j);
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory queueing the write", path);
    }
    j->index = index;
    j->take = take;
    j->img = img;
    if (take) {
        /* The writer owns a copy of the struct; the caller's is emptied. */
        j->img = malloc(sizeof *j->img);
        if (!j->img) {
            free(j->path);
            free(j);
            return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory queueing the write", path);
        }
        *j->img = *img;
        memset(img, 0, sizeof *img);
    }
    enqueue(w, j);
    return CLRED_OK;
}

static void enqueue(clred_stream_writer *w, write_job *j)
{
    if (!w->threaded) {
        write_one(w, j);
        return;
    }
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    w->pending++;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
}

void clred_stream_writer_wait(clred_stream_writer *w, size_t most)
{
    if (!w || !w->threaded)
        return;
    pthread_mutex_lock(&w->lock);
    while (w->pending > most)
        pthread_cond_wait(&w->changed, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

void clred_stream_writer_drain(clred_stream_writer *w) { clred_stream_writer_wait(w, 0); }

clred_status clred_stream_writer_finish(clred_stream_writer *w, int commit, double *write_s)
{
    if (!w)
        return CLRED_OK;
    /* The renames of a batch run with the termination signals held here as
     * well as on the writer's thread: a signal lands after all of them. */
    sigset_t block, old;
    termination_signals(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    w->commit = commit;
    if (w->threaded) {
        clred_stream_writer_drain(w);
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_broadcast(&w->changed);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
    } else {
        batch_end(w);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    clred_status st = w->batch_status;
    if (st != CLRED_OK)
        clred_fail(st, "%s", w->batch_message); /* the message, on the caller's thread */
    if (write_s)
        *write_s += w->write_s;
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->changed);
    free(w);
    return st;
}
