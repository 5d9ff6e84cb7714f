/* Shared by the host modules; not part of the public API. */
#ifndef CLRED_INTERNAL_H
#define CLRED_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "clred.h"
#include "clred_cl.h"

#if defined(__GNUC__)
#define CLRED_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLRED_PRINTF(a, b)
#endif

/* ---- errors (error.c) */

/* Records the message for clred_last_error() and returns status. */
clred_status clred_fail(clred_status status, const char *fmt, ...) CLRED_PRINTF(2, 3);
/* For an OpenCL error: "what: CL_OUT_OF_RESOURCES (-5)". */
clred_status clred_fail_cl(cl_int err, const char *what);
const char *clred_cl_error_name(cl_int err);
void clred_clear_error(void);

/* Evaluates a status expression and returns it from the caller on failure. */
#define CLRED_TRY(expr)                         \
    do {                                        \
        clred_status try_status_ = (expr);      \
        if (try_status_ != CLRED_OK)            \
            return try_status_;                 \
    } while (0)

/* ---- context (runtime.c) */

/* Thread rule: one thread at a time uses a context (its queue, kernels,
 * pool and pending events are unsynchronised); several contexts may run in
 * parallel, since nothing below is process-global. */
struct clred_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_command_queue xfer_queue; /* uploads that overlap the kernels on queue (made on first use) */
    int owns_cl;           /* 0 when made from the caller's OpenCL objects (clred_cl.h): retained, not created */
    clred_device_info info;
    int unified_memory;    /* the device works in host memory (CPU, integrated GPU): host-backed buffers, no copies */
    uint64_t memory_limit; /* 0 = the device's own */
    int use_double;        /* accumulate in double in kernels */
    int vector_width;      /* floats a work-item handles at once in window kernels: the device's
                            * preferred float vector width (8 on AVX2 CPUs, 1 on GPUs), 1..16 */
    int line_width;        /* the same for kernels that stream whole rows (kernels marked
                            * CLRED_WHOLE_LINES): at least a cache line's floats on a CPU, 1..16 */
    struct clred_program_cache *programs;
    char *program_groups[8];         /* families built as one program, "a+b+c" (clred_programs_group) */
    struct clred_build_ahead *ahead; /* programs being built in the background (programs.c) */
    struct clred_fft_cache *fft;     /* FFT plans of this context (fft.c) */
    struct clred_pool *pool;         /* idle device buffers for reuse (pool.c) */
    uint64_t resident_bytes;         /* device images and pooled buffers held now */
    struct clred_events *events;     /* enqueued commands whose timing is not yet collected (events.c) */
    clred_timing timing;
    /* Whole device images that crossed between host and device (a copy, not
     * a zero-copy view or map): clred_dimage_upload (and a copying borrow or
     * read) and downloads into host arrays. Recipes report them to show that
     * a frame goes up once and its products come down once; reset with the
     * timing. */
    uint64_t image_uploads, image_downloads;
};

/* Memory clred may plan to use on the device for a step's temporaries, in
 * bytes: a share of the global memory, capped by the user's limit, less what
 * device images hold; and the largest single buffer. */
uint64_t clred_ctx_budget(const clred_ctx *ctx);
uint64_t clred_ctx_max_alloc(const clred_ctx *ctx);
/* The whole planning budget, before device images are taken off. */
uint64_t clred_ctx_total_budget(const clred_ctx *ctx);

/* ---- CSV tables (catalog.c): a line split on commas in place, each field
 * trimmed of blanks and of surrounding double quotes; at most max fields. */
char *clred_csv_trim(char *s);
int clred_csv_split(char *line, char **fields, int max);

/* ---- host images (image.c) */
/* As clred_image_alloc (SCI only) and clred_image_add_var/_mask, for planes
 * that are overwritten whole right after (a file read, a download): not
 * zeroed first. */
clred_status clred_image_alloc_unset(clred_image *img, size_t width, size_t height);
clred_status clred_image_add_planes_unset(clred_image *img, int with_var, int with_mask);

/* ---- device images (dimage.c) */

enum { CLRED_PLANE_SCI = 0, CLRED_PLANE_VAR, CLRED_PLANE_MASK, CLRED_NPLANES };

/* Where a plane's memory comes from, which says how it is released. */
typedef enum {
    CLRED_PLANE_NONE = 0, /* absent */
    CLRED_PLANE_POOLED,   /* from the context's pool (counted in resident_bytes) */
    CLRED_PLANE_HOST,     /* over a host array (CL_MEM_USE_HOST_PTR) that the image owns (counted) */
    CLRED_PLANE_BORROWED, /* over a caller's host array, not owned (a host wrapper's input) */
    CLRED_PLANE_WRAPPED   /* the caller's cl_mem (clred_dimage_wrap_cl), retained, not counted */
} clred_plane_kind;

struct clred_dimage {
    clred_ctx *ctx;
    size_t width, height;
    cl_mem plane[CLRED_NPLANES];  /* sci, var, mask; NULL when absent */
    clred_plane_kind kind[CLRED_NPLANES];
    void *host[CLRED_NPLANES];    /* the host array of HOST and BORROWED planes, and the source of a copying borrow */
    clred_header *header;         /* never NULL */
};

static inline cl_mem clred_dimage_sci(const clred_dimage *d) { return d->plane[CLRED_PLANE_SCI]; }
static inline cl_mem clred_dimage_var(const clred_dimage *d) { return d->plane[CLRED_PLANE_VAR]; }
static inline cl_mem clred_dimage_mask(const clred_dimage *d) { return d->plane[CLRED_PLANE_MASK]; }
static inline size_t clred_dimage_pixels(const clred_dimage *d) { return d->width * d->height; }

/* The host wrappers' way in: a device image over img's planes. On a device
 * sharing host memory the device works in img's own arrays (no copy);
 * elsewhere the planes are uploaded. img must outlive the view and not be
 * touched while the device may use it. */
clred_status clred_dimage_borrow(clred_ctx *ctx, const clred_image *img, clred_dimage **out);
/* After a step changed a borrowed image in place: makes the host arrays
 * current (a map/unmap where shared, else a download into them). */
clred_status clred_dimage_sync_borrowed(clred_dimage *d);
/* Downloads into an existing host image of the same shape (planes it lacks
 * are allocated; planes the device image lacks are left alone); the header
 * is not touched. */
clred_status clred_dimage_download_into(const clred_dimage *d, clred_image *img);
/* Where the device shares host memory (ctx->unified_memory): maps d's planes
 * for reading (blocking; no copy), so the host can read them in place, e.g.
 * to write them; map[p] is NULL for an absent plane. clred_dimage_unmap
 * gives them back (on the context's thread, before d is changed or freed). */
clred_status clred_dimage_map_read(const clred_dimage *d, void *map[CLRED_NPLANES]);
void clred_dimage_unmap(const clred_dimage *d, void *map[CLRED_NPLANES]);
/* Takes img (planes and header; img is left empty, also on failure) into a
 * new device image: on a device sharing host memory the image adopts its
 * arrays without a copy; elsewhere they are uploaded once, without waiting
 * (clred_upload_owned), and freed when copied. */
clred_status clred_dimage_adopt(clred_ctx *ctx, clred_image *img, clred_dimage **out);
/* A new device image whose planes (from the pool) hold anything: for a
 * step that writes every pixel of them. */
clred_status clred_dimage_new(clred_ctx *ctx, size_t width, size_t height, int with_var, int with_mask,
                              clred_dimage **out);
/* A new device image like d (same shape, the planes asked for), header copied
 * from d's when copy_header. */
clred_status clred_dimage_like(const clred_dimage *d, int with_var, int with_mask, int copy_header,
                               clred_dimage **out);

/* img's SCI -= model's SCI on the device (same shape; kernels/arith.cl
 * subtract), enqueued. */
clred_status clred_dimage_subtract_sci(clred_dimage *img, const clred_dimage *model);

/* The usable values (finite, no mask bit in ignore) among the samples
 * k = 0, stride, 2 stride, ... (raster order) of the w x h region at (x0, y0),
 * in that order, gathered on the device (samples.c). *values is malloc'd
 * (free()); it may hold no value (*n = 0). */
clred_status clred_dimage_samples(const clred_dimage *d, size_t x0, size_t y0, size_t w, size_t h, size_t stride,
                                  uint16_t ignore, float **values, size_t *n);
/* The same samples left in place: *n = ceil(w h / stride) values, NaN where
 * masked or NaN, so that samples of two planes (through views sharing the
 * mask) pair up by index. */
clred_status clred_dimage_samples_at(const clred_dimage *d, size_t x0, size_t y0, size_t w, size_t h, size_t stride,
                                     uint16_t ignore, float **values, size_t *n);

/* ---- programs (programs.c) */

/* Returns the kernel `name` from program family `family` (kernels/<family>.cl),
 * built with extra -D options (may be NULL). Built programs are kept in the
 * context and cached on disk; the returned kernel is owned by the context and
 * must be used from one thread at a time. */
clred_status clred_kernel(clred_ctx *ctx, const char *family, const char *options, const char *name,
                          cl_kernel *kernel);

/* Makes ctx build the families of group ("a+b+c", kernels/a.cl, b.cl and
 * c.cl) as one program from now on, wherever one of them is asked for
 * without extra options: a caller that will use them all (a night) pays one
 * program's fixed costs instead of one per family (programs.c). A family
 * belongs to one group at a time (a new group replaces the one it was in),
 * and every group name clred_programs_build_ahead or _prefetch are given is
 * built as it is. At most 8 groups; a failure (memory) leaves the families
 * apart, which changes no result. */
void clred_programs_group(clred_ctx *ctx, const char *group);

/* Builds, side by side in host threads, the programs of the given families
 * (without extra options) that ctx lacks: a command that knows which families
 * it will use pays about the longest compilation instead of their sum on a
 * cold cache. Failures are left for clred_kernel to report. */
void clred_programs_prefetch(clred_ctx *ctx, const char *const *families, size_t n);

/* Starts building the programs of the given families (without extra
 * options, at most 32; the names must outlive the build) into the disk
 * cache, in `threads` host threads (0: one per core), each with an OpenCL
 * context of its own, and returns at once: ctx's thread goes on using ctx
 * meanwhile and takes each program from the cache when it needs it (waiting
 * for one still being built). ctx keeps one build ahead at a time (a new
 * one waits for the one before) and waits for it in
 * clred_programs_wait_ahead or when destroyed. Returns 0 when nothing was
 * started (no usable cache directory). */
typedef struct clred_build_ahead clred_build_ahead;
int clred_programs_build_ahead(clred_ctx *ctx, const char *const *families, size_t n, size_t threads);
void clred_programs_wait_ahead(clred_ctx *ctx);

/* The on-disk cache directory (CLRED_CACHE_DIR, else $XDG_CACHE_HOME/clred,
 * else ~/.cache/clred); NULL if none can be used. */
const char *clred_cache_dir(void);
/* An advisory lock (a file descriptor, to close once the launch completes)
 * on the work-group shape of a kernel's first launch with it in ctx, on a
 * driver that compiles at first launch into a disk cache shared by
 * processes (POCL); -1 when there is nothing to coordinate (programs.c). */
int clred_first_launch_lock(clred_ctx *ctx, cl_kernel k, cl_uint dims, const size_t *global, const size_t *local);
/* Holds an exclusive cross-process lock keyed by what, the device and the
 * driver (a file in the cache directory) until clred_cache_unlock: for builds
 * the driver caches itself (FFT plans). Returns -1, and locks nothing, when
 * there is no usable cache directory. */
int clred_cache_lock(const clred_ctx *ctx, const char *what);
void clred_cache_unlock(int fd);
/* One line of CLRED_BUILD_LOG (programs.c): a program a process "compiled"
 * or loaded from "cache", or an FFT "plan" it made (the FFT library compiles
 * or finds its kernels in the driver's cache), with its wall and thread CPU seconds. */
void clred_log_build(const char *family, const char *options, const char *outcome, double seconds, double cpu_seconds);
void clred_programs_release(clred_ctx *ctx);

/* ---- device buffers and enqueueing (devmem.c) */

clred_status clred_buffer(clred_ctx *ctx, cl_mem_flags flags, size_t bytes, const void *host, cl_mem *buf,
                          const char *what);
clred_status clred_upload(clred_ctx *ctx, cl_mem buf, size_t offset, size_t bytes, const void *host);
clred_status clred_download(clred_ctx *ctx, cl_mem buf, size_t offset, size_t bytes, void *host);
clred_status clred_fill_zero(clred_ctx *ctx, cl_mem buf, size_t bytes);
/* Device-side copy of the first bytes of src into dst (enqueued, in order). */
clred_status clred_copy(clred_ctx *ctx, cl_mem src, cl_mem dst, size_t bytes);
clred_status clred_copy_region(clred_ctx *ctx, cl_mem src, size_t src_offset, cl_mem dst, size_t dst_offset,
                               size_t bytes);
void clred_release(cl_mem *buf);

/* Sets kernel arguments: pairs of (size, pointer), ending with 0. */
clred_status clred_args(cl_kernel k, const char *name, ...);
#define CLRED_ARG(x) sizeof(x), (const void *)&(x)
#define CLRED_LOCAL(bytes) (size_t)(bytes), (const void *)NULL

/* Enqueues a 1-D or 2-D range; local may be NULL. Does not wait: the
 * kernel's time is added to the context's timing (and trace) when a later
 * blocking transfer or clred_sync finds it finished. */
clred_status clred_run(clred_ctx *ctx, cl_kernel k, const char *name, cl_uint dims, const size_t *global,
                       const size_t *local);

/* clred_run with a fixed work-group shape capped by the kernel's limit and
 * the global size rounded up to it (the kernel must check its bounds). */
clred_status clred_run_tiled(clred_ctx *ctx, cl_kernel k, const char *name, cl_uint dims, const size_t *global);

/* A 2-D range for a streaming kernel (global[1] rows of global[0] items):
 * each work-group takes a run of one row (256 items, fewer where the kernel
 * allows fewer; one shape, so POCL compiles it once), so every plane
 * is read and written in long contiguous runs that a CPU's prefetchers
 * follow; run_tiled's 16 x 8 tiles interleave eight rows of every plane
 * (calibration: about 1.2x less CPU per frame on the 2-core CPU device). */
clred_status clred_run_rows(clred_ctx *ctx, cl_kernel k, const char *name, const size_t *global);
/* A 1-D range of n independent, heavy work-items (one per star, source or
 * background box): work-groups of the kernel's preferred multiple on a GPU
 * (32 or 64), and the count rounded up to it (the kernel must check its
 * bounds); on a CPU one item per group. POCL cannot vectorise these kernels'
 * data-dependent loops across work-items, so a group of 8 (its preferred
 * multiple) ran no faster (measure_sources 8.2 against 7.7 ms,
 * aperture_photometry 131 ms either way, bkg_box_stats within noise, warm,
 * 2048^2) and its work-group function cost ~0.08 CPU s more to compile
 * (measure_sources 0.32 against 0.25 s, aperture_photometry 0.31 against
 * 0.22 s), on every cold first run. One work-group shape per device: a NULL
 * local size lets the driver pick one per count, and POCL compiles the
 * kernel again for every shape. */
clred_status clred_run_items(clred_ctx *ctx, cl_kernel k, const char *name, size_t n);

/* clred_aperture_photometry_dev's local background alone (bkg, bkg_rms,
 * nannulus; flags SRC_EDGE of the annulus and SRC_NO_BACKGROUND; flux, its
 * error and area NaN), which needs an annulus (annulus_out > annulus_in):
 * a smaller kernel to compile where only the sky is wanted (photometry.c). */
clred_status clred_aperture_background_dev(clred_ctx *ctx, const clred_dimage *img, const double *x,
                                           const double *y, size_t n, const clred_phot_opts *opts, clred_phot *out);
/* A host wrapper's last step after a device step that changed the header
 * (astrometry, zero points): the host image takes a copy of d's header. */
clred_status clred_image_header_from(clred_image *img, const clred_dimage *d);

/* Work-items across a row of width pixels for the kernels that take
 * ctx->vector_width neighbouring pixels each (kernels/lib_vec.cl), and for
 * those marked CLRED_WHOLE_LINES, which take ctx->line_width. */
static inline size_t clred_vector_groups(const clred_ctx *ctx, size_t width)
{
    return (width + (size_t)ctx->vector_width - 1) / (size_t)ctx->vector_width;
}

static inline size_t clred_line_groups(const clred_ctx *ctx, size_t width)
{
    return (width + (size_t)ctx->line_width - 1) / (size_t)ctx->line_width;
}

/* a * b into *out; 0 when it overflows size_t (then *out is unspecified).
 * Every size computed from a file's header goes through this. */
static inline int clred_size_mul(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }

/* What a file may claim before anything is allocated for it: each axis and
 * the frame count are capped, and one frame's pixels too (8 GiB of float). */
#define CLRED_MAX_AXIS ((size_t)1 << 20)
#define CLRED_MAX_FRAMES ((size_t)1 << 20)
#define CLRED_MAX_FRAME_PIXELS ((size_t)1 << 31)

/* Checks a shape a file claims: the caps above, no overflow, and that
 * width * height * nframes * elem bytes fit in `available` bytes (what the
 * file can hold, already multiplied by the best compression ratio possible
 * for a compressed file). Fails CLRED_ERR_INPUT naming path. */
clred_status clred_shape_check(const char *path, size_t width, size_t height, size_t nframes, size_t elem,
                               unsigned long long available);

/* Reads a FITS file's headers before cfitsio does and refuses a tile-compressed
 * image whose compression parameters would crash cfitsio's decoders. path is
 * the file itself (no HDU selector). */
clred_status clred_fits_precheck(const char *path);

/* Rounds n up to a multiple of m. */
static inline size_t clred_round_up(size_t n, size_t m) { return m ? (n + m - 1) / m * m : n; }

/* Uploads host to buf on the transfer queue, without waiting, so that it
 * overlaps the kernels already on the main queue; commands enqueued on the
 * main queue after this call wait for it. Takes ownership of host: release
 * (e.g. free) is called on it once the copy is done, from a driver thread.
 * after (may be NULL; not released here): the copy waits for it, e.g. the
 * pool's marker for the last main-queue use of buf. */
clred_status clred_upload_owned(clred_ctx *ctx, cl_mem buf, size_t bytes, void *host, void (*release)(void *),
                                cl_event after);

/* Waits for everything enqueued on the context's queues and collects its timing. */
clred_status clred_sync(clred_ctx *ctx);

/* ---- events, timing and the trace (events.c) */

typedef enum { CLRED_EV_KERNEL = 0, CLRED_EV_UPLOAD, CLRED_EV_DOWNLOAD, CLRED_EV_COPY } clred_event_kind;

/* Takes ownership of ev (an enqueued command of kind, named name, enqueued
 * at host time t_enqueue): its profiling times are read once it has
 * finished. Never fails; with too many pending it waits for the queue. */
void clred_event_track(clred_ctx *ctx, cl_event ev, clred_event_kind kind, const char *name, size_t bytes,
                       double t_enqueue);
/* The same for a command on the transfer queue, which the main queue's
 * order does not cover: it is collected once its own status says done. */
void clred_event_track_async(clred_ctx *ctx, cl_event ev, clred_event_kind kind, const char *name, size_t bytes,
                             double t_enqueue);
/* Reads the times of the finished pending events (all of them after a
 * clFinish), adds them to the timing and the trace, releases them. */
void clred_events_collect(clred_ctx *ctx, int all_finished);
/* Device time per kernel name (the name given to clred_run) since the last
 * clred_ctx_timing_reset, for the benchmarks. clred_kernel_profile waits for
 * the device, copies up to max entries and returns how many names there are;
 * the table keeps the first CLRED_PROFILE_MAX names. */
#define CLRED_PROFILE_MAX 64
typedef struct {
    char name[40];
    double seconds;
    uint64_t launches;
} clred_kernel_time;
size_t clred_kernel_profile(clred_ctx *ctx, clred_kernel_time *out, size_t max);
void clred_kernel_profile_reset(clred_ctx *ctx);
void clred_events_release(clred_ctx *ctx);
/* A host-side span (reading a file, writing a product) for the trace, on the
 * named lane; thread-safe, so a reader thread may call it. No-op unless
 * tracing. */
void clred_trace_host(clred_ctx *ctx, const char *lane, const char *name, double t0, double t1);

/* ---- buffer pool (pool.c) */

/* A READ_WRITE device buffer of exactly bytes, reused from the pool when one
 * of that size is idle, else new; counted in resident_bytes. Fails with a
 * message naming what and the budget when it would exceed the budget. */
clred_status clred_pool_take(clred_ctx *ctx, size_t bytes, const char *what, cl_mem *buf);
/* The same, for a buffer that a command on another queue will write first:
 * *released (NULL for a fresh buffer; the caller releases it) completes when
 * the main queue is done with the buffer's last use, and that command must
 * wait for it. */
clred_status clred_pool_take_ordered(clred_ctx *ctx, size_t bytes, const char *what, cl_mem *buf,
                                     cl_event *released);
/* Returns a buffer from clred_pool_take to the pool (or releases it when
 * the pool is full); *buf becomes NULL. */
void clred_pool_give(clred_ctx *ctx, cl_mem *buf, size_t bytes);
/* Bytes held by idle pooled buffers (part of resident_bytes). */
uint64_t clred_pool_idle_bytes(const clred_ctx *ctx);
/* Releases every idle pooled buffer. */
void clred_pool_drain(clred_ctx *ctx);
void clred_pool_destroy(clred_ctx *ctx);

/* clred_image_read_2d with the SCI read into *spare (malloc'd, spare_pixels
 * floats) when the frame has exactly that many pixels; *spare then becomes
 * NULL and the image owns it. A reader that recycles its arrays so faults in
 * no fresh pages per frame. */
clred_status clred_image_read_2d_into(const char *path, clred_image *img, float **spare, size_t spare_pixels);

/* ---- atomic writes (atomic.c): every file clred writes goes through these */

#include <stdio.h>
/* tmp receives a temporary name beside path (".name.<pid>.tmp"), removed if left over. */
clred_status clred_atomic_temp_name(const char *path, char *tmp, size_t size);
/* Renames tmp to path; on failure removes tmp. */
clred_status clred_atomic_commit(const char *tmp, const char *path);
/* Removes a temporary that will not be committed (and forgets it). */
void clred_atomic_discard(const char *tmp);
/* clred_output_check(path, overwrite), then opens a temporary beside path for writing. */
clred_status clred_atomic_open(const char *path, int overwrite, char *tmp, size_t size, FILE **f);
/* Closes f and renames it into place; on any write error removes it. */
clred_status clred_atomic_close(FILE *f, const char *tmp, const char *path);
/* A section of a thread other than the signal-handling one that creates,
 * writes or renames temporaries (the streaming writer's): a termination
 * signal's handler waits until no other thread is inside one before it removes
 * the temporaries, and a thread entering one once the handler has started
 * waits there for the process to end. So no temporary is created after the
 * removal, and a batch's renames are not cut in two. Nestable. */
void clred_temp_guard_enter(void);
void clred_temp_guard_leave(void);

/* ---- cutouts (io/cutouts.c) */

/* The size x size box of img's SCI centred on candidate c's pixel, NaN off the image. */
void clred_cutout_plane(const clred_image *img, const clred_candidate *c, size_t size, float *out);

/* ---- phase correlation of a stack (steps/phasecorr.c): clred_measure_shifts_dev
 * without the "frame N: " prefix; *failed is the failing frame's index (nframes
 * when no frame failed), so a recipe can name the frame's file instead. */
clred_status clred_measure_shifts_which(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                                        long ref_index, const clred_phasecorr_opts *opts, clred_shift *shifts,
                                        size_t *failed);

/* ---- photometric scaling from stars (steps/star_scale.c) */

/* Fewer stars shared with the reference than this is an error. */
#define CLRED_STAR_SCALE_MIN 3
typedef struct clred_star_ref clred_star_ref;
/* The reference frame's clean stars, measured in an aperture of twice the seeing. name is for messages. */
clred_status clred_star_ref_measure(clred_ctx *ctx, const clred_dimage *ref, const char *name, clred_star_ref **out);
/* A frame's (aligned to the reference) factor: the clipped median of ref_flux / frame_flux over the stars
 * paired within the seeing; *scale_err its error, *nused the stars kept. */
clred_status clred_star_scale(clred_ctx *ctx, const clred_star_ref *ref, const clred_dimage *frame, const char *name,
                              double *scale, double *scale_err, size_t *nused);
void clred_star_ref_free(clred_star_ref *r);

/* ---- header (header.c) */

/* Appends a raw 80-char card (already formatted). */
clred_status clred_header_append_card(clred_header *h, const char *card);
/* Removes every valued card of keyword key; returns how many went. */
size_t clred_header_delete(clred_header *h, const char *key);

/* ---- misc (util.c) */

/* 64-bit FNV-1a hash, chained through seed. */
uint64_t clred_hash(const void *data, size_t n, uint64_t seed);
/* The k-th smallest of v[0..n), n > 0 (Hoare's selection; v is reordered so
 * that v[k] holds it, smaller values before and larger after). */
float clred_select_kth(float *v, size_t n, size_t k);
/* The median of v[0..n), n > 0 (mean of the two middle values when n is even; v is reordered). */
double clred_median_inplace(float *v, size_t n);
/* Time in seconds from a monotonic clock. */
double clred_now(void);
/* CPU seconds the calling thread has used: a compile's cost on a loaded machine. */
double clred_thread_cpu(void);

#endif
