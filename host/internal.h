/* Shared by the host modules; not part of the public API. */
#ifndef CLRED_INTERNAL_H
#define CLRED_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "clred.h"

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

struct clred_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    clred_device_info info;
    uint64_t memory_limit; /* 0 = the device's own */
    int use_double;        /* accumulate in double in kernels */
    struct clred_program_cache *programs;
    clred_timing timing;
};

/* Memory clred may plan to use on the device, in bytes (a share of the global
 * memory, capped by the user's limit), and the largest single buffer. */
uint64_t clred_ctx_budget(const clred_ctx *ctx);
uint64_t clred_ctx_max_alloc(const clred_ctx *ctx);

/* ---- programs (programs.c) */

/* Returns the kernel `name` from program family `family` (kernels/<family>.cl),
 * built with extra -D options (may be NULL). Built programs are kept in the
 * context and cached on disk; the returned kernel is owned by the context and
 * must be used from one thread at a time. */
clred_status clred_kernel(clred_ctx *ctx, const char *family, const char *options, const char *name,
                          cl_kernel *kernel);

/* The on-disk cache directory (CLRED_CACHE_DIR, else $XDG_CACHE_HOME/clred,
 * else ~/.cache/clred); NULL if none can be used. */
const char *clred_cache_dir(void);
void clred_programs_release(clred_ctx *ctx);

/* ---- device buffers and enqueueing (devmem.c) */

clred_status clred_buffer(clred_ctx *ctx, cl_mem_flags flags, size_t bytes, const void *host, cl_mem *buf,
                          const char *what);
clred_status clred_upload(clred_ctx *ctx, cl_mem buf, size_t offset, size_t bytes, const void *host);
clred_status clred_download(clred_ctx *ctx, cl_mem buf, size_t offset, size_t bytes, void *host);
clred_status clred_fill_zero(clred_ctx *ctx, cl_mem buf, size_t bytes);
/* Device-side copy of the first bytes of src into dst (enqueued, in order). */
clred_status clred_copy(clred_ctx *ctx, cl_mem src, cl_mem dst, size_t bytes);
void clred_release(cl_mem *buf);

/* Sets kernel arguments: pairs of (size, pointer), ending with 0. */
clred_status clred_args(cl_kernel k, const char *name, ...);
#define CLRED_ARG(x) sizeof(x), (const void *)&(x)
#define CLRED_LOCAL(bytes) (size_t)(bytes), (const void *)NULL

/* Enqueues a 1-D or 2-D range; local may be NULL. Waits for completion and
 * adds the kernel time to the context's timing. */
clred_status clred_run(clred_ctx *ctx, cl_kernel k, const char *name, cl_uint dims, const size_t *global,
                       const size_t *local);

/* clred_run with a fixed work-group shape capped by the kernel's limit and
 * the global size rounded up to it (the kernel must check its bounds). */
clred_status clred_run_tiled(clred_ctx *ctx, cl_kernel k, const char *name, cl_uint dims, const size_t *global);

/* Rounds n up to a multiple of m. */
static inline size_t clred_round_up(size_t n, size_t m) { return m ? (n + m - 1) / m * m : n; }

/* ---- header (header.c) */

/* Appends a raw 80-char card (already formatted). */
clred_status clred_header_append_card(clred_header *h, const char *card);

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

#endif
