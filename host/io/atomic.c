/* The one way clred writes a file: to a temporary name beside the target,
 * then renamed into place, so an interrupted or failed write leaves nothing
 * under the target's name and never a half-written product.
 *
 * Every temporary is registered until it is renamed or removed, so that
 * clred_temp_files_remove (async-signal-safe) can delete them from a signal
 * handler; and a thread may hold its renames back (clred_write_batch_begin)
 * so that a run's outputs appear together or not at all. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- the registry of this process's temporaries */

#define MAX_TEMPS 4096
static char *_Atomic temps[MAX_TEMPS];

static void temp_register(const char *tmp)
{
    char *copy = strdup(tmp);
    if (!copy)
        return; /* only the clean-up on a signal is lost */
    for (size_t i = 0; i < MAX_TEMPS; i++) {
        char *expected = NULL;
        if (atomic_compare_exchange_strong(&temps[i], &expected, copy))
            return;
    }
    free(copy);
}

static void temp_unregister(const char *tmp)
{
    for (size_t i = 0; i < MAX_TEMPS; i++) {
        char *name = atomic_load(&temps[i]);
        if (name && strcmp(name, tmp) == 0 && atomic_compare_exchange_strong(&temps[i], &name, NULL)) {
            free(name);
            return;
        }
    }
}

void clred_temp_files_remove(void)
{
    for (size_t i = 0; i < MAX_TEMPS; i++) {
        char *name = atomic_exchange(&temps[i], NULL);
        if (name)
            unlink(name); /* not freed: free is not async-signal-safe */
    }
}

/* ---- guarded sections: see clred_temp_guard_enter */

static atomic_int guarded;      /* threads' entries into guarded sections, all threads */
static atomic_int terminating;  /* a handler has started */
static _Thread_local int guarded_here;

void clred_temp_guard_enter(void)
{
    for (;;) {
        if (atomic_load(&terminating))
            for (;;)
                pause(); /* the process is ending: create nothing more */
        atomic_fetch_add(&guarded, 1);
        if (!atomic_load(&terminating))
            break;
        atomic_fetch_sub(&guarded, 1);
    }
    guarded_here++;
}

void clred_temp_guard_leave(void)
{
    guarded_here--;
    atomic_fetch_sub(&guarded, 1);
}

/* In the handler (async-signal-safe): the sections of other threads finish
 * (a write of one product, a batch's renames) before the temporaries go. */
static void wait_for_guarded(void)
{
    atomic_store(&terminating, 1);
    const struct timespec ms = {0, 1000000};
    while (atomic_load(&guarded) > guarded_here)
        nanosleep(&ms, NULL);
}

static void on_signal(int sig)
{
    wait_for_guarded();
    clred_temp_files_remove();
    signal(sig, SIG_DFL);
    raise(sig);
}

void clred_temp_files_remove_on_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        /* A signal the caller ignores (nohup) stays ignored. */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

/* ---- putting a finished temporary in place
 *
 * A plain rename over the target: readers see the old file or the finished
 * new one, never neither and never a partial one, whatever kills the process
 * and wherever. Unlinking the target first would be cheaper on ext4 (a
 * replacing rename makes auto_da_alloc start writing the new blocks back at
 * once, in the renaming thread: 5 to 20 ms per 16 MB product, the bench's
 * floor-rename against floor-unlink-rename rows), but it opens a window in
 * which the product is missing, and a crash there loses both versions; an
 * output that replaces a product in place is worth that cost. */
static int put_in_place(const char *tmp, const char *path)
{
    return rename(tmp, path);
}

/* ---- batches: renames held back until the batch ends */

typedef struct {
    char *tmp, *path;
} held_rename;

static _Thread_local int batch_open;
static _Thread_local held_rename *held;
static _Thread_local size_t nheld, capheld;

void clred_write_batch_begin(void)
{
    batch_open = 1;
}

static void batch_forget(void)
{
    for (size_t i = 0; i < nheld; i++) {
        free(held[i].tmp);
        free(held[i].path);
    }
    free(held);
    held = NULL;
    nheld = capheld = 0;
    batch_open = 0;
}

clred_status clred_write_batch_end(int commit)
{
    clred_status st = CLRED_OK;
    if (!commit) {
        for (size_t i = 0; i < nheld; i++)
            clred_atomic_discard(held[i].tmp);
        batch_forget();
        return CLRED_OK;
    }
    /* The renames run with the termination signals held, so a signal lands
     * after all of them: all the outputs exist, or (on a rename failure) none. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    clred_temp_guard_enter(); /* a handler on another thread waits for the renames */
    size_t done = 0;
    for (; done < nheld; done++)
        if (put_in_place(held[done].tmp, held[done].path) != 0) {
            st = clred_fail(CLRED_ERR_IO, "%s: cannot rename the finished file into place (%s)", held[done].path,
                            strerror(errno));
            break;
        }
    if (st != CLRED_OK) {
        for (size_t i = 0; i < done; i++)
            remove(held[i].path);
        for (size_t i = done; i < nheld; i++)
            clred_atomic_discard(held[i].tmp);
    } else {
        for (size_t i = 0; i < nheld; i++)
            temp_unregister(held[i].tmp);
    }
    clred_temp_guard_leave();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    batch_forget();
    return st;
}

static clred_status batch_hold(const char *tmp, const char *path)
{
    if (nheld == capheld) {
        size_t cap = capheld ? 2 * capheld : 16;
        held_rename *grown = realloc(held, cap * sizeof *grown);
        if (!grown)
            goto fail;
        held = grown;
        capheld = cap;
    }
    char *t = strdup(tmp), *p = strdup(path);
    if (!t || !p) {
        free(t);
        free(p);
        goto fail;
    }
    held[nheld++] = (held_rename){t, p};
    return CLRED_OK;
fail:
    clred_atomic_discard(tmp);
    return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory", path);
}

/* ---- single writes */

/* Removes ".NAME.PID.tmp" beside path for every PID that is not a running
 * process here: what a SIGKILL (or a crash) left of an earlier write of the
 * same target. A live PID (even a reused one) keeps its file. On a file
 * system shared between machines another host's live writer is not seen:
 * give each host its own output directory there. */
static void remove_stale_temps(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[4096];
    if (slash) {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof dir)
            return;
        memcpy(dir, path, len);
        dir[len] = 0;
        if (len == 0)
            strcpy(dir, "/");
    } else {
        strcpy(dir, ".");
    }
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        /* "." base "." digits ".tmp" */
        if (len < blen + 7 || n[0] != '.' || strncmp(n + 1, base, blen) != 0 || n[1 + blen] != '.' ||
            strcmp(n + len - 4, ".tmp") != 0)
            continue;
        const char *digits = n + blen + 2, *end = n + len - 4;
        if (digits == end || end - digits > 10)
            continue;
        long pid = 0;
        const char *c = digits;
        for (; c < end && *c >= '0' && *c <= '9'; c++)
            pid = pid * 10 + (*c - '0');
        if (c != end || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* running, or not ours to signal: alive */
        char full[4096 + 256];
        if (snprintf(full, sizeof full, "%s/%s", dir, n) < (int)sizeof full)
            unlink(full);
    }
    closedir(d);
}

clred_status clred_atomic_temp_name(const char *path, char *tmp, size_t size)
{
    remove_stale_temps(path);
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(tmp, size, "%.*s/.%s.%ld.tmp", (int)(slash - path), path, slash + 1, (long)getpid())
                  : snprintf(tmp, size, ".%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= size)
        return clred_fail(CLRED_ERR_USAGE, "%s: the path is too long", path);
    remove(tmp);
    temp_register(tmp);
    return CLRED_OK;
}

void clred_atomic_discard(const char *tmp)
{
    remove(tmp);
    temp_unregister(tmp);
}

clred_status clred_atomic_commit(const char *tmp, const char *path)
{
    if (batch_open)
        return batch_hold(tmp, path);
    if (put_in_place(tmp, path) != 0) {
        int e = errno;
        clred_atomic_discard(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: cannot rename the finished file into place (%s)", path, strerror(e));
    }
    temp_unregister(tmp);
    return CLRED_OK;
}

clred_status clred_atomic_open(const char *path, int overwrite, char *tmp, size_t size, FILE **f)
{
    *f = NULL;
    CLRED_TRY(clred_output_check(path, NULL, 0, overwrite));
    CLRED_TRY(clred_atomic_temp_name(path, tmp, size));
    *f = fopen(tmp, "w");
    if (!*f) {
        int e = errno;
        temp_unregister(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: cannot write (%s)", path, strerror(e));
    }
    return CLRED_OK;
}

clred_status clred_atomic_close(FILE *f, const char *tmp, const char *path)
{
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad) {
        clred_atomic_discard(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing failed (disk full?)", path);
    }
    return clred_atomic_commit(tmp, path);
}

/* ---- text outputs (public) */

struct clred_text_output {
    FILE *f;
    char tmp[4200];
    char path[];
};

clred_status clred_text_open(const char *path, int overwrite, clred_text_output **out)
{
    *out = NULL;
    size_t len = strlen(path);
    clred_text_output *t = calloc(1, sizeof *t + len + 1);
    if (!t)
        return clred_fail(CLRED_ERR_MEMORY, "%s: out of memory", path);
    memcpy(t->path, path, len + 1);
    clred_status st = clred_atomic_open(path, overwrite, t->tmp, sizeof t->tmp, &t->f);
    if (st != CLRED_OK) {
        free(t);
        return st;
    }
    *out = t;
    return CLRED_OK;
}

FILE *clred_text_stream(clred_text_output *t)
{
    return t ? t->f : NULL;
}

clred_status clred_text_close(clred_text_output *t, int commit)
{
    if (!t)
        return CLRED_OK;
    clred_status st = CLRED_OK;
    if (commit) {
        st = clred_atomic_close(t->f, t->tmp, t->path);
    } else {
        fclose(t->f);
        clred_atomic_discard(t->tmp);
    }
    free(t);
    return st;
}
