/* The night recipe's parts; internal. Data flows one way:
 *   night.c           clred_night_run: options, output directory, stages in order, report
 *   night_scan.c      one raw frame's header, identity and kind
 *   night_plan.c      frames -> groups -> products and their keys (nothing is read or computed)
 *   night_masters.c   master bias, darks and flats on the device
 *   night_science.c   per frame: calibrate -> cosmic rays -> background on the device, then the stack
 *   night_stacks.c    a group's stack, on the device or (over budget) from its written files
 *   night_stream.c    the one copy each way to the device (the threads: io/stream.c)
 *   night_manifest.c  the manifest written after every product, and the previous run's read back */
#ifndef CLRED_NIGHT_INTERNAL_H
#define CLRED_NIGHT_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "internal.h"
#include "stream.h"

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
    int has_quality;        /* quality measured in this run (science frames; under the night's lock) */
    clred_frame_quality quality;
    char below_limits[160]; /* the limit missed: left out of its stack ("" = in it) */
} night_frame;

/* Reads the header of path (primary HDU) and classifies the frame with the
 * comma-separated keyword lists; a file that cannot be opened, has no 2-D
 * image or is shorter than its header says leaves usable 0 with the reason. */
void night_scan_frame(const char *path, const clred_night_opts *o, night_frame *f);

/* ---- streaming: the reader and writer threads are the library's (io/stream.h) */

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

/* ---- the run's state (night.c creates it, the stages fill it) */

/* The independent units; their order is the order of the work and of the
 * shards' share (masters before the stacks that use them). */
typedef enum { GROUP_BIAS = 0, GROUP_DARK, GROUP_FLAT, GROUP_SCIENCE } group_kind;

typedef struct {
    group_kind kind;
    char name[160];
    size_t *members, n;          /* indices into the frames */
    double exptime;              /* darks */
    char filter[72], object[72];
    int here, needed;
    long dark, flat;             /* science and flats: the groups of their masters, -1 = none */
    uint64_t key;
    long product;                /* the master or stack product, -1 = none */
    long aligned, diff, cands;   /* difference imaging of the stack (products), -1 = none */
    long coadd_bkg;              /* the stack's final background product, -1 = none */
    clred_dimage *master;        /* masters, when built or loaded: on the device for the calibrators */
} night_group;

typedef struct {
    char *path;       /* relative to outdir in the manifest, full here */
    const char *what;
    char group[160];
    uint64_t key;
    int skip;         /* unchanged since the last run */
    int done;         /* written by this run, or skipped */
    char *reason;
    char *inputs;     /* JSON array text */
} night_product;

typedef struct {
    clred_ctx *ctx;
    const clred_night_opts *o;
    const char *outdir;
    night_frame *frames;
    size_t nframes;
    night_group *groups;
    size_t ngroups;
    night_product *prod;
    size_t nprod, cap;
    clred_night_item *left;
    size_t nleft;
    night_previous prev;
    char manifest[4096];
    pthread_mutex_t lock; /* the products' state, the left-out list and the manifest file */
    clred_status write_status;
    char write_error[512];
    clred_night_report *rep; /* its counts are filled at the end: the writer's thread reads them for the manifest */
    size_t frames_in, products_out, stacks_read_back; /* the main thread's counts, for the report */
    double t0;
    /* The stages' parameters as text: hashed into the keys, recorded in the manifest. */
    char p_calib[512], p_bias[256], p_dark[256], p_flat[256], p_science[768], p_stack[512], p_subtract[2048];
} night;

/* Progress, when the caller asked for it (night.c). */
void night_say(night *nt, const char *fmt, ...) CLRED_PRINTF(2, 3);

static inline int night_is_master(const night_group *gr) { return gr->kind != GROUP_SCIENCE; }
/* A master this shard builds: its own, or another shard's that its groups use. */
static inline int night_master_needed(const night_group *gr) { return night_is_master(gr) && gr->needed; }
/* An (object, filter) group this shard reduces and stacks. */
static inline int night_stack_here(const night_group *gr) { return !night_is_master(gr) && gr->here; }

/* ---- plan (night_plan.c) */

/* One science frame of a group here, in reading order. */
typedef struct {
    size_t frame;          /* index into nt->frames */
    long cal, bkg;         /* products */
    int process;           /* raw frame to reduce (else the calibrated product is read back) */
    int needed;            /* read at all */
} night_science_job;

/* dir/sub/name (dir/name when sub is empty), malloc'd; NULL when out of memory. */
char *night_join_path(const char *dir, const char *sub, const char *name);
/* Fills nt->p_*: every option that changes a product. */
void night_parameter_texts(night *nt);
/* Scans the inputs; the unusable are left out (fatal with strict). */
clred_status night_classify(night *nt, const char *const *inputs, size_t n);
/* Records a frame left out (any thread). */
void night_leave_out(night *nt, const char *path, const char *reason);
/* Groups, their masters, the shard's share and what it needs. */
clred_status night_plan_groups(night *nt);
/* Keys and products of the masters; the science products come later. */
clred_status night_plan_masters(night *nt);
/* The science products of every group here; jobs in reading order. */
clred_status night_plan_science(night *nt, night_science_job **jobs, size_t *njobs);
long night_bias_group(const night *nt);
/* The dark group whose exposure time is nearest t (any when t is unknown). */
long night_nearest_dark(const night *nt, double t);
/* Where a stack's key starts: its parameters. */
uint64_t night_stack_key_seed(const night *nt);

/* ---- the device side of the reader and writer (night_stream.c) */

/* The reader's next image, on the device. */
clred_status night_next_on_device(night *nt, clred_stream_reader *r, clred_dimage **out);
/* Downloads a product once and queues it for the writer. */
clred_status night_put_product(night *nt, clred_stream_writer *w, const clred_dimage *d, long index);

/* ---- the stages */

/* night_masters.c: every master this shard needs, kept in its group. */
clred_status night_masters_stage(night *nt, clred_stream_writer *w);
/* night_science.c: the science frames and stacks of the groups here;
 * *stack_s receives the time spent stacking. */
clred_status night_science_stage(night *nt, clred_stream_writer *w, double *stack_s);
/* night_stacks.c: whether the group's calibrated frames may be held on the
 * device for the stack, and the stack of the frames with ok set: from
 * frames (held) or from their files at paths. */
int night_stack_fits(night *nt, const night_group *gr);
clred_status night_stack_group(night *nt, night_group *gr, int held, clred_dimage **frames,
                               const char *const *paths, const int *ok, clred_stream_writer *w);

/* night_difference.c: each stack here subtracted from the reference (when
 * one is configured); a stack that cannot be is reported, not fatal. */
clred_status night_difference_stage(night *nt, clred_stream_writer *w);
/* The subtraction's parameters and the reference's identity, as text (p_subtract). */
void night_subtract_parameters(night *nt);

/* ---- manifest (night_manifest.c) */

/* Rewrites the manifest atomically; takes the lock. */
clred_status night_manifest_write(night *nt, int complete);
/* The writer's report of a finished write (a clred_stream_written_fn). */
void night_product_written(void *user, size_t index, clred_status st, const char *message);

#endif
