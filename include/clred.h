/*
 * clred — astronomical image reduction on OpenCL devices.
 *
 * The whole public C API. Every function returns a clred_status (CLRED_OK = 0);
 * on failure a one-line message naming the file, the HDU or the OpenCL error is
 * kept per thread and read with clred_last_error(). The library never prints and
 * never exits.
 *
 * Images are float32 pixels with an optional variance plane and an optional
 * 16-bit mask plane whose bits have fixed meanings (CLRED_MASK_*), shared by
 * every step.
 *
 * Conventions, the same everywhere:
 * - ownership: what a _create, _read, _upload or _alloc call returns (and a
 *   step's new output image or list) the caller frees with the matching
 *   _free or _destroy; options structs carry settings, not data;
 * - every step clred_X on host images has clred_X_dev on device images
 *   (clred_dimage), with the same results; the host function is the device
 *   one between an upload and a download;
 * - names: sigma_lower / sigma_upper, max_iters, spread_mad, centre_mean,
 *   ref_index (long; -1 = the median of the stack where that is offered);
 * - threads: one thread at a time per context; contexts are independent.
 */
#ifndef CLRED_H
#define CLRED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLRED_VERSION "0.1.0"

/* Exported symbols: the library is built with -fvisibility=hidden, so only
 * what is marked CLRED_API leaves libclred.so. */
#if defined(_WIN32)
#define CLRED_API
#elif defined(__GNUC__)
#define CLRED_API __attribute__((visibility("default")))
#else
#define CLRED_API
#endif

/* ---------------------------------------------------------------- status */

typedef enum {
    CLRED_OK = 0,
    CLRED_ERR_INPUT = 1,   /* bad input data or file: missing, malformed, wrong shape */
    CLRED_ERR_USAGE = 2,   /* invalid argument or option combination */
    CLRED_ERR_DEVICE = 3,  /* OpenCL missing, build or enqueue failure */
    CLRED_ERR_MEMORY = 4,  /* host allocation failed */
    CLRED_ERR_IO = 5       /* an output could not be written */
} clred_status;

/* The message of the last failure on this thread ("" if none). */
CLRED_API const char *clred_last_error(void);
/* Short name of a status ("input", "usage", ...). */
CLRED_API const char *clred_status_name(clred_status s);

/* ------------------------------------------------------------ mask bits */

#define CLRED_MASK_BAD          0x0001u /* known bad pixel (bad-pixel map, hot/cold) */
#define CLRED_MASK_SATURATED    0x0002u /* raw value at or above the saturation level */
#define CLRED_MASK_COSMIC_RAY   0x0004u
#define CLRED_MASK_NO_DATA      0x0008u /* no valid value (flat below floor, NaN, off-frame) */
#define CLRED_MASK_INTERPOLATED 0x0010u /* value repaired from neighbours */
#define CLRED_MASK_EDGE         0x0020u
#define CLRED_MASK_DETECTED     0x0040u /* part of a detected source */
#define CLRED_MASK_CLIPPED      0x0080u /* every input was rejected while combining */
#define CLRED_MASK_NOFIT        0x0100u /* left out of a fit (a user's fit mask: Alard-Lupton's kernel), usable
                                           otherwise: subtracted, measured and searched as any pixel */

/* Bits that make a pixel unusable as an input to a combine or a statistic. */
#define CLRED_MASK_UNUSABLE (CLRED_MASK_BAD | CLRED_MASK_SATURATED | CLRED_MASK_COSMIC_RAY | CLRED_MASK_NO_DATA)

/* Name of a single mask bit ("BAD", ...), or NULL for an unknown bit. */
CLRED_API const char *clred_mask_bit_name(uint16_t bit);

/* --------------------------------------------------------------- header */

/* A FITS header kept as 80-character cards, without structural keywords. */
typedef struct clred_header clred_header;

CLRED_API clred_header *clred_header_new(void);
CLRED_API clred_header *clred_header_copy(const clred_header *h);
CLRED_API void clred_header_free(clred_header *h);
CLRED_API size_t clred_header_count(const clred_header *h);
CLRED_API const char *clred_header_card(const clred_header *h, size_t i); /* 80 chars, NUL terminated */
/* Value lookups: return 1 and set *value when the keyword exists and parses, else 0. */
CLRED_API int clred_header_get_double(const clred_header *h, const char *key, double *value);
CLRED_API int clred_header_get_string(const clred_header *h, const char *key, char *value, size_t size);
CLRED_API clred_status clred_header_set_double(clred_header *h, const char *key, double value, const char *comment);
CLRED_API clred_status clred_header_set_string(clred_header *h, const char *key, const char *value, const char *comment);
/* Appends a HISTORY card (long text is split over several cards). */
CLRED_API clred_status clred_header_add_history(clred_header *h, const char *text);

/* ---------------------------------------------------------------- image */

/* A host image. sci is always present; var and mask may be NULL. Pixels are
 * row-major, x fastest: pixel (x, y) is sci[y * width + x]. */
typedef struct {
    size_t width, height;
    float *sci;
    float *var;
    uint16_t *mask;
    clred_header *header; /* may be NULL */
} clred_image;

/* Allocates an image; planes are zeroed. with_var / with_mask choose the planes. */
CLRED_API clred_status clred_image_alloc(clred_image *img, size_t width, size_t height, int with_var, int with_mask);
CLRED_API clred_status clred_image_add_var(clred_image *img);
CLRED_API clred_status clred_image_add_mask(clred_image *img);
CLRED_API void clred_image_free(clred_image *img);

/* ------------------------------------------------------------------- I/O */

/* Shape of a file (FITS HDU or .npy): nframes is 1 for a 2-D image. */
typedef struct {
    size_t width, height, nframes;
    int bitpix; /* FITS BITPIX of the stored data (npy: the equivalent) */
} clred_file_info;

/* path may carry an HDU selector: "file.fits[1]", "file.fits[SCI]", "file.fits.fz".
 * A file ending in .npy is read as a NumPy array. */
CLRED_API clred_status clred_file_info_read(const char *path, clred_file_info *info);

/* Reads one frame (0 for a 2-D image) into img with sci, and var/mask when the
 * file is a clred MEF that has VAR/MASK extensions. The header is kept. */
CLRED_API clred_status clred_image_read(const char *path, size_t frame, clred_image *img);
/* clred_image_read of a file that must hold one 2-D image (a master, a raw
 * frame, an image to measure): a 3-D cube is refused, naming the file. */
CLRED_API clred_status clred_image_read_2d(const char *path, clred_image *img);

/* Reads rows [y0, y0 + nrows) of one frame as float (BZERO/BSCALE applied). */
CLRED_API clred_status clred_rows_read(const char *path, size_t frame, size_t y0, size_t nrows, float *rows);

/* Writes img as a MEF: SCI (primary HDU, EXTNAME=SCI, with the header), then
 * VAR and MASK if present (MASK carries the bit names). Written to a temporary
 * name and renamed; an existing output is an error unless overwrite is set. */
CLRED_API clred_status clred_image_write(const char *path, const clred_image *img, int overwrite);

/* An extra float plane written as a further extension (e.g. NCONTRIB). */
typedef struct {
    const char *extname;
    const float *data; /* width * height, same shape as the image */
} clred_extra_plane;
/* clred_image_write, then the extra planes after MASK, atomically. */
CLRED_API clred_status clred_image_write_with(const char *path, const clred_image *img,
                                    const clred_extra_plane *extra, size_t nextra, int overwrite);

/* Checks, before any work, that an output may be written: it is not one of the
 * inputs and, unless overwrite is set, does not exist. */
CLRED_API clred_status clred_output_check(const char *output, const char *const *inputs, size_t ninputs, int overwrite);

/* Every file is written under a temporary name beside its target (".NAME.PID.tmp")
 * and renamed into place when complete; a temporary of the same target left by
 * a process that no longer runs (killed by SIGKILL, a crash) is removed when
 * the target is next written. clred_temp_files_remove deletes this
 * process's temporaries not yet renamed; it is async-signal-safe, for a signal
 * handler. clred_temp_files_remove_on_signals installs a handler for SIGINT,
 * SIGTERM, SIGHUP and SIGQUIT (those not ignored) that calls it and then dies of the
 * signal as before. */
CLRED_API void clred_temp_files_remove(void);
CLRED_API void clred_temp_files_remove_on_signals(void);
/* A text output (a table, a report) written the same way: clred_text_open
 * checks path (clred_output_check without inputs) and opens its temporary;
 * the caller writes to clred_text_stream(t) (not closing it); clred_text_close(t, 1)
 * renames it into place (a write error is CLRED_ERR_IO and removes it), and
 * clred_text_close(t, 0) removes it. Either frees t. */
typedef struct clred_text_output clred_text_output;
CLRED_API clred_status clred_text_open(const char *path, int overwrite, clred_text_output **out);
CLRED_API FILE *clred_text_stream(clred_text_output *t);
CLRED_API clred_status clred_text_close(clred_text_output *t, int commit);
/* Outputs written together: between begin and end, this thread's writes stay
 * under their temporary names; end(1) renames them all into place (signals
 * held meanwhile; if one rename fails, those done are removed), end(0) removes
 * them. A failed or interrupted run then leaves all its outputs or none. */
CLRED_API void clred_write_batch_begin(void);
CLRED_API clred_status clred_write_batch_end(int commit);

/* --------------------------------------------------------------- devices */

typedef struct {
    int index;               /* global index over all platforms */
    char platform[128];
    char name[128];
    char vendor[128];
    char version[128];       /* CL_DEVICE_VERSION */
    char driver[128];        /* CL_DRIVER_VERSION */
    int is_gpu, is_cpu;
    uint64_t global_mem;     /* bytes */
    uint64_t max_alloc;      /* bytes */
    uint64_t local_mem;      /* bytes */
    size_t max_work_group;
    unsigned compute_units;
    unsigned clock_mhz;
    int has_double;
} clred_device_info;

/* Lists every OpenCL device of every platform. *list is malloc'd (free()). */
CLRED_API clred_status clred_devices_list(clred_device_info **list, size_t *count);

typedef struct clred_ctx clred_ctx;

/* Opens a device. spec is an index or a name substring; NULL means the
 * CLRED_DEVICE environment variable, else the first GPU, else the first CPU. */
CLRED_API clred_status clred_ctx_create(const char *spec, clred_ctx **ctx);
CLRED_API void clred_ctx_destroy(clred_ctx *ctx);
/* Compiled kernels are cached on disk (CLRED_CACHE_DIR, else
 * $XDG_CACHE_HOME/clred or ~/.cache/clred; 'off' disables). A damaged entry is
 * detected (length and checksum), deleted and rebuilt. On POCL the programs
 * stay in POCL's own cache (POCL_CACHE_DIR), so only the kernels a run
 * launches are compiled, and clred's directory keeps a marker and a lock per
 * program (CLRED_PROGRAM_BINARIES=1 stores binaries there instead). If the
 * cache could not be written in this process, a one-line warning saying so;
 * else NULL. */
CLRED_API const char *clred_cache_warning(void);
/* Compiling ahead in a helper process. POCL compiles each kernel's
 * work-group function at its first launch, one kernel at a time per process,
 * into its disk cache; a second process launching the kernels a run will
 * need later (the same programs and work-group shapes) compiles them on
 * another core while this one works, and this process then finds them there.
 * Two processes never compile one shape twice: the first launch of a shape
 * waits for another process compiling it. 1 when that pays on ctx: a CPU
 * device of a driver that caches what it compiles (POCL, with both caches
 * on), more than one core, CLRED_COMPILE_AHEAD not "0", and no helper having
 * finished work named what for this device, driver, kernels and caches yet
 * (clred_compile_ahead_done). Helps speed only: results never depend on it. */
CLRED_API int clred_compile_ahead_pays(const clred_ctx *ctx, const char *what);
CLRED_API void clred_compile_ahead_done(const clred_ctx *ctx, const char *what);
CLRED_API const clred_device_info *clred_ctx_device(const clred_ctx *ctx);
/* Caps the device memory clred plans with (0 = the device's own limit). The
 * CLRED_MEMORY_LIMIT environment variable (bytes, or with K/M/G) does the same. */
CLRED_API void clred_ctx_set_memory_limit(clred_ctx *ctx, uint64_t bytes);
/* Work done so far: device time (seconds, from profiling events, collected
 * as commands finish), bytes moved and how many transfers and kernels. */
typedef struct {
    double kernel_s, upload_s, download_s;
    uint64_t upload_bytes, download_bytes;
    uint64_t uploads, downloads, kernels;
} clred_timing;
/* Waits for the device, then reports. */
CLRED_API void clred_ctx_timing(clred_ctx *ctx, clred_timing *t);
CLRED_API void clred_ctx_timing_reset(clred_ctx *ctx);
/* Bytes of device memory held now by device images and the buffer pool, and
 * the budget they count against (half the device memory, or the limit). */
CLRED_API void clred_ctx_memory(const clred_ctx *ctx, uint64_t *in_use, uint64_t *budget);

/* A timeline of every kernel and transfer, and of the host's file reads and
 * writes in recipes, from clred_ctx_trace_start until clred_ctx_trace_write
 * writes it as a Chrome trace-event JSON file (chrome://tracing, Perfetto). */
CLRED_API clred_status clred_ctx_trace_start(clred_ctx *ctx);
CLRED_API clred_status clred_ctx_trace_write(clred_ctx *ctx, const char *path);

/* --------------------------------------------------------- device images */

/* A frame resident on the device: SCI and optional VAR and MASK planes in
 * device memory, the header on the host. Every step has a device entry point
 * (clred_<step>_dev) taking and giving device images, so a frame goes up
 * once and its products come down once; the host functions are thin wrappers
 * around them with the same results.
 *
 * Ownership, as everywhere in this API: what a _create/_upload/_read call
 * returns the caller frees with clred_dimage_free, before the context is
 * destroyed. A device image counts against its context's memory budget;
 * creating one past the budget fails with a message saying so. On a device
 * that shares memory with the host (POCL, integrated GPUs) the planes live in
 * host memory and uploads read files straight into them. */
typedef struct clred_dimage clred_dimage;

/* A new device image with zeroed planes and an empty header. */
CLRED_API clred_status clred_dimage_create(clred_ctx *ctx, size_t width, size_t height, int with_var, int with_mask,
                                           clred_dimage **out);
/* Copies a host image (its planes and header) to the device. */
CLRED_API clred_status clred_dimage_upload(clred_ctx *ctx, const clred_image *img, clred_dimage **out);
/* Reads one frame of a file (as clred_image_read) onto the device. */
CLRED_API clred_status clred_dimage_read(clred_ctx *ctx, const char *path, size_t frame, clred_dimage **out);
/* A new host image with the device image's planes and a copy of its header
 * (the caller frees it with clred_image_free). */
CLRED_API clred_status clred_dimage_download(const clred_dimage *d, clred_image *out);
/* Downloads and writes as clred_image_write (atomically). */
CLRED_API clred_status clred_dimage_write(const clred_dimage *d, const char *path, int overwrite);
/* A device-side copy (planes and header). */
CLRED_API clred_status clred_dimage_copy(const clred_dimage *d, clred_dimage **out);
CLRED_API void clred_dimage_free(clred_dimage *d);

CLRED_API size_t clred_dimage_width(const clred_dimage *d);
CLRED_API size_t clred_dimage_height(const clred_dimage *d);
CLRED_API int clred_dimage_has_var(const clred_dimage *d);
CLRED_API int clred_dimage_has_mask(const clred_dimage *d);
/* The header, owned by the image; steps add HISTORY to it. Never NULL. */
CLRED_API clred_header *clred_dimage_header(clred_dimage *d);
CLRED_API const clred_header *clred_dimage_header_const(const clred_dimage *d);
/* Adds a zeroed VAR or MASK plane (no-op when present). */
CLRED_API clred_status clred_dimage_add_var(clred_dimage *d);
CLRED_API clred_status clred_dimage_add_mask(clred_dimage *d);

/* ------------------------------------------------------------ statistics */

typedef struct {
    double sigma_lower, sigma_upper; /* clipping thresholds in units of the spread; default 3, 3 */
    int max_iters;                   /* default 5; 0 = no clipping */
    int spread_mad;                     /* spread from 1.4826 * MAD instead of std (default 0) */
    int centre_mean;             /* centre on the mean instead of the median (default 0) */
    /* Region [x0, x1) x [y0, y1); all zero = whole image. */
    size_t x0, x1, y0, y1;
    uint16_t ignore_bits;            /* mask bits that exclude a pixel (default CLRED_MASK_UNUSABLE) */
} clred_stats_opts;

typedef struct {
    double mean, median, std, mad; /* of the pixels kept after clipping; mad is raw (not * 1.4826) */
    double min, max;
    size_t npix;      /* pixels kept */
    size_t nrejected; /* pixels clipped */
    size_t ninvalid;  /* NaN or masked pixels ignored */
    int iterations;
} clred_stats;

CLRED_API clred_stats_opts clred_stats_defaults(void);
/* Sigma-clipped statistics on the device, as astropy.stats.sigma_clipped_stats
 * (cenfunc median, stdfunc std): each iteration keeps, among the pixels still
 * kept, centre - sigma_lower * spread <= x <= centre + sigma_upper * spread, until
 * one removes nothing or max_iters; std is the population std (ddof = 0). NaN,
 * infinite and masked pixels are ignored. The median (of an even count: the
 * mean of the two middle values) and the MAD are exact. opts NULL = defaults.
 * No usable pixel is not an error: CLRED_OK with npix 0 and NaN statistics. */
CLRED_API clred_status clred_image_stats(clred_ctx *ctx, const clred_image *img, const clred_stats_opts *opts, clred_stats *out);
/* The same on a device image (its SCI, and MASK when present). */
CLRED_API clred_status clred_stats_dev(clred_ctx *ctx, const clred_dimage *img, const clred_stats_opts *opts,
                                       clred_stats *out);

/* ------------------------------------------------------------ combining */

typedef enum {
    CLRED_COMBINE_MEAN = 0,
    CLRED_COMBINE_MEDIAN,
    CLRED_COMBINE_SUM,
    CLRED_COMBINE_MIN,
    CLRED_COMBINE_MAX
} clred_combine_method;

typedef enum {
    CLRED_REJECT_NONE = 0,
    CLRED_REJECT_SIGCLIP,    /* iterative sigma clipping */
    CLRED_REJECT_MINMAX,     /* drop n lowest and n highest */
    CLRED_REJECT_WINSORIZED, /* winsorized sigma clipping */
    CLRED_REJECT_PERCENTILE  /* keep values between two percentiles */
} clred_reject_method;

typedef enum {
    CLRED_SCALE_NONE = 0,
    CLRED_SCALE_MULTIPLICATIVE, /* x * (ref_median / frame_median) */
    CLRED_SCALE_ADDITIVE,       /* x + (ref_median - frame_median) */
    CLRED_SCALE_STARS           /* x * clipped median over shared stars of (ref_flux / frame_flux), see below */
} clred_scale_method;

typedef struct {
    clred_combine_method method;  /* default MEAN */
    clred_reject_method reject;   /* default NONE */
    double sigma_lower, sigma_upper; /* default 3, 3 */
    int max_iters;                /* sigma clipping: until nothing changes or this many (default 10; 0 = no limit) */
    int centre_mean;              /* clipping centre: 0 = median (default), 1 = mean */
    int spread_mad;               /* clipping spread: 0 = std (default), 1 = 1.4826 * MAD */
    int nlow, nhigh;              /* minmax rejection: default 1, 1 */
    double pct_low, pct_high;     /* percentile clipping, in percent: default 10, 90 */
    clred_scale_method scale;     /* default NONE */
    const double *weights;        /* per-frame weights (NULL = equal); mean and sum only */
    uint16_t ignore_bits;         /* input mask bits that exclude a value (default CLRED_MASK_UNUSABLE) */
    int want_rejected_map;        /* also produce the rejected-count map (default 0) */
} clred_combine_opts;

CLRED_API clred_combine_opts clred_combine_defaults(void);

/* Outputs of a combine. image gets sci, var and mask; ncontrib the number of
 * values used per pixel; nrejected (if asked for) the number rejected. */
typedef struct {
    clred_image image;
    float *ncontrib;   /* width * height */
    float *nrejected;  /* width * height or NULL */
    double *scales;    /* per frame, the factor or offset applied (NULL if none) */
    double *scale_errors; /* STARS scaling: per frame, the factor's statistical error, 1.2533 s / sqrt(n) of */
                          /* the clipped ratios (0 for the first frame; aperture losses not included) */
    size_t *scale_stars;  /* STARS scaling: per frame, the stars the factor rests on (0 for the first); */
                          /* both NULL for other scalings */
    size_t bands;      /* row bands the stack was processed in (memory planning) */
} clred_combine_result;

CLRED_API void clred_combine_result_free(clred_combine_result *r);

/* Definitions (tests/reference/combine_ref.c implements the same):
 * - a value is used when finite, not flagged by ignore_bits and, when every
 *   frame has a VAR plane, its variance is finite;
 * - scaling is to the FIRST frame's median (of its usable pixels); scaled
 *   values are float32; VAR is scaled by factor^2;
 * - STARS scaling (frames aligned to the first): the first frame's stars
 *   (clred_detect_stars, the brightest 1000) are measured in an aperture of
 *   twice their seeing FWHM with a local annulus, S/N >= 10 kept; each frame's
 *   stars within max(2, FWHM) px of one are measured alike (S/N >= 5) and the
 *   factor is the 3-sigma-clipped (MAD) median of ref_flux / frame_flux, so
 *   that a sky level changing apart from the transparency does not bias it.
 *   Fewer than 3 such stars in a frame is CLRED_ERR_INPUT naming the frame
 *   (median scaling needs no stars);
 * - rejection works on the sorted usable values (ties ordered by frame):
 *   sigma clipping rejects x < c - sigma_lower * s or x > c + sigma_upper * s,
 *   c = median or mean, s = population std or 1.4826 * MAD about the median;
 *   winsorized uses s' = 1.134 * std of the values clamped to c +- 1.5 s;
 *   minmax drops nlow lowest and nhigh highest (all rejected if n <= nlow + nhigh);
 *   percentile keeps ranks [floor(n * pct_low / 100), ceil(n * pct_high / 100));
 * - MEDIAN of an even count is the mean of the two middle values; SUM is the
 *   weighted mean of the kept values times the total weight of all frames (N
 *   for equal weights), so rejected or missing values do not lower it;
 * - variance from the VAR planes when all frames have one (mean: sum w^2 v /
 *   (sum w)^2; median: pi/2 * sum v / n^2; min/max: the chosen value's), else
 *   from the scatter s^2 of the kept values (mean: s^2 sum w^2 / (sum w)^2;
 *   median: pi/2 s^2 / n; min/max: s^2), NaN with fewer than two;
 * - a pixel with no usable value is NaN with mask NO_DATA; one whose values
 *   were all rejected is NaN with NO_DATA | CLIPPED. */

/* Combines frames already in host memory (all the same shape). */
CLRED_API clred_status clred_combine_images(clred_ctx *ctx, const clred_image *frames, size_t nframes,
                                  const clred_combine_opts *opts, clred_combine_result *out);

/* Combines frames read from files (2-D images or frames of cubes). Rows are read
 * in bands sized from the device's limits, so the stack need not fit in device
 * or host memory. paths[i] may name a cube: all its frames are taken. Only the
 * SCI data are read (VAR/MASK extensions of inputs are not used here); the
 * output header is the first input's plus NCOMBINE and HISTORY. */
CLRED_API clred_status clred_combine_files(clred_ctx *ctx, const char *const *paths, size_t npaths,
                                 const clred_combine_opts *opts, clred_combine_result *out);

/* Outputs of a combine of device images, on the device: image (SCI, VAR,
 * MASK, header as clred_combine_images gives it), the contribution map and,
 * if asked for, the rejected-count map (SCI-only device images). */
typedef struct {
    clred_dimage *image;
    clred_dimage *ncontrib;
    clred_dimage *nrejected; /* NULL unless want_rejected_map */
    double *scales;          /* per frame (malloc'd), NULL if none */
    double *scale_errors;    /* as in clred_combine_result */
    size_t *scale_stars;
    size_t bands;
} clred_combine_dev_result;

CLRED_API void clred_combine_dev_result_free(clred_combine_dev_result *r);

/* Combines device images (one shape) without leaving the device: the frames
 * are the band source, copied band by band on the device into the stack the
 * kernels read (pooled buffers, reused by the next combine of that shape);
 * with one band the kernels write the result's planes directly. Frames may
 * lack VAR (then none is used) or MASK (then all of theirs count as 0).
 * Results equal clred_combine_images bit for bit, which is this function
 * between borrowing the host frames and collecting the result (or, on a
 * device with its own memory that the frames would crowd, the same kernels
 * fed band by band from host memory). */
CLRED_API clred_status clred_combine_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                                         const clred_combine_opts *opts, clred_combine_dev_result *out);

/* ----------------------------------------------------------- calibration */

typedef enum {
    CLRED_OVERSCAN_NONE = 0,
    CLRED_OVERSCAN_MEAN,    /* one value: mean of the whole overscan (sigma-clipped) */
    CLRED_OVERSCAN_MEDIAN,  /* one value per row: median across the overscan columns */
    CLRED_OVERSCAN_FIT,     /* per-row medians fitted by a polynomial along the rows */
    CLRED_OVERSCAN_AUTO     /* MEDIAN when a BIASSEC is known (option, or a usable header card with
                             * use_header_sections), else NONE: the default */
} clred_overscan_mode;

/* A FITS-style section [x0, x1) x [y0, y1) in 0-based pixel coordinates. */
typedef struct {
    size_t x0, x1, y0, y1;
    int set;
} clred_section;

/* Parses "[x1:x2,y1:y2]" (FITS 1-based inclusive) into a 0-based section. */
CLRED_API clred_status clred_section_parse(const char *text, clred_section *s);

typedef struct {
    clred_overscan_mode overscan;  /* default AUTO: MEDIAN when the header has BIASSEC and use_header_sections,
                                    * else NONE. Overscans are columns (one value per row), at most 256 wide. */
    int overscan_order;            /* polynomial order for FIT (default 3) */
    clred_section biassec;         /* overscan region (unset: BIASSEC from the header if any) */
    clred_section trimsec;         /* kept region (unset: TRIMSEC from the header if any) */
    int use_header_sections;       /* take BIASSEC/TRIMSEC from the header when unset (default 1) */
    double gain;                   /* e-/ADU; 0 = GAIN from the header, else 1 */
    double readnoise;              /* e-; < 0 = RDNOISE/READNOIS from the header, else 0 */
    double saturation;             /* ADU on the raw frame; 0 = SATURATE from the header, else none; < 0 = none */
    int to_electrons;              /* output in electrons (multiply by gain); default 0 */
    int override_checks;           /* accept frame-type and exposure-time mismatches of masters' frames and
                                    * flats with zero/negative pixels (flagged NO_DATA); default 0. A shape
                                    * mismatch is always an error. */
    double exptime;                /* < 0 = EXPTIME from the header (default -1); needed with a dark */
    double flat_floor;             /* master flat: values below are NO_DATA (default 0.2) */
    clred_section flat_region;     /* master flat normalisation region (unset = whole frame) */
} clred_calib_opts;

CLRED_API clred_calib_opts clred_calib_defaults(void);

/* Masters are clred images; a NULL master is skipped. The dark is per second. */
typedef struct {
    const clred_image *bias;
    const clred_image *dark;
    const clred_image *flat;
    const clred_image *bad_pixels; /* its mask plane, else its pixels: nonzero (or NaN) = BAD */
    /* Names for messages and HISTORY (usually the files); NULL = "master bias" etc. */
    const char *bias_name, *dark_name, *flat_name, *bad_pixels_name;
} clred_masters;

/* Calibrates one raw frame: saturation flagged on the raw values, overscan
 * subtracted and trimmed, then (raw - bias - dark * t) / flat in one kernel,
 * with variance (signal * gain + readnoise^2) / gain^2 plus the masters'
 * variances, and mask bits propagated. out receives a new image. In full:
 *   signal = raw - overscan - bias - dark * t                     (ADU)
 *   var    = ((max(signal, 0) * gain + readnoise^2) / gain^2 + var_bias
 *             + t^2 var_dark) / flat^2 + sci^2 * var_flat / flat^2
 *   sci    = signal / flat; electrons: sci * gain, var * gain^2 (GAIN = 1)
 * mask: SATURATED, the masters' masks OR'd, BAD from bad_pixels, NO_DATA with
 * NaN SCI and VAR where the flat is not positive or a value is not finite.
 * The overscan estimate's own noise is not added. The header is the raw's,
 * without BIASSEC/TRIMSEC/DATASEC once trimmed, with BUNIT and HISTORY. */
CLRED_API clred_status clred_calibrate(clred_ctx *ctx, const clred_image *raw, const clred_masters *masters,
                             const clred_calib_opts *opts, clred_image *out);

/* Calibrating many frames with the same masters: the masters are checked and
 * uploaded once, at creation, and stay on the device; each apply uploads one
 * raw frame. The calibrator keeps pointers to neither masters nor opts. name
 * (may be NULL) names the raw frame in messages. */
typedef struct clred_calibrator clred_calibrator;
CLRED_API clred_status clred_calibrator_create(clred_ctx *ctx, const clred_masters *masters, const clred_calib_opts *opts,
                                     clred_calibrator **cal);
CLRED_API clred_status clred_calibrator_apply(clred_calibrator *cal, const clred_image *raw, const char *name,
                                    clred_image *out);
CLRED_API void clred_calibrator_free(clred_calibrator *cal);

/* Masters already on the device; a NULL master is skipped. */
typedef struct {
    const clred_dimage *bias;
    const clred_dimage *dark;
    const clred_dimage *flat;
    const clred_dimage *bad_pixels;
    const char *bias_name, *dark_name, *flat_name, *bad_pixels_name;
} clred_masters_dev;

/* A calibrator over masters on the device (checked as clred_calibrator_create
 * checks them; used in place, not copied: they must outlive the calibrator). */
CLRED_API clred_status clred_calibrator_create_dev(clred_ctx *ctx, const clred_masters_dev *masters,
                                                   const clred_calib_opts *opts, clred_calibrator **cal);
/* Calibrates a raw frame already on the device into a new device image
 * (SCI, VAR, MASK, header with HISTORY), as clred_calibrator_apply does. */
CLRED_API clred_status clred_calibrator_apply_dev(clred_calibrator *cal, const clred_dimage *raw, const char *name,
                                                  clred_dimage **out);

/* Calibrating files to files with a calibrator: raws[i] (one 2-D image each)
 * is read, calibrated as clred_calibrator_apply does and written to
 * outputs[i] (checked first, as clred_output_check does with raws as inputs).
 * The frames stream: a reader thread reads and decodes the next frames and
 * a writer thread writes the finished ones while the device calibrates
 * (inline when stream is 0 or cfitsio is not reentrant); the results are the
 * same bits either way. The outputs are written as one batch: on any failure
 * (the first one's message names the file) none of them is left, and an
 * interrupt (clred_temp_files_remove_on_signals) leaves none either. */
typedef enum {
    CLRED_WRITE_SCI = 1,
    CLRED_WRITE_VAR = 2,
    CLRED_WRITE_MASK = 4,
    CLRED_WRITE_ALL = 7
} clred_write_planes;

typedef struct {
    unsigned planes;   /* clred_write_planes OR'd; must include SCI (default ALL: a MEF of SCI, VAR, MASK) */
    int overwrite;     /* replace existing outputs (default 0) */
    int stream;        /* 1 (default): reader and writer threads; 0: one frame after another */
    size_t read_ahead; /* frames read ahead of the device (default 2) */
    /* Called on the caller's thread with each calibrated frame (the planes
     * written) before it is queued for writing; may be NULL. */
    void (*on_frame)(void *user, size_t index, const clred_image *calibrated);
    void *user;
} clred_calib_files_opts;

CLRED_API clred_calib_files_opts clred_calib_files_defaults(void);
CLRED_API clred_status clred_calibrate_files(clred_calibrator *cal, const char *const *raws,
                                             const char *const *outputs, size_t n,
                                             const clred_calib_files_opts *opts);

/* Masters from lists of files. Each frame is overscan-corrected and trimmed
 * like a science frame (the fused kernel, with the variance model above; no
 * photon noise for bias frames), then combined with copts, which propagates
 * the VAR planes. The bias/dark subtracted from darks and flats add no
 * variance there (the science calibration adds the masters' once). Masters
 * are in ADU (to_electrons is ignored).
 * - bias: EXPTIME, when present, must be 0;
 * - dark: bias-subtracted, divided by each frame's EXPTIME (per second;
 *   EXPTIME 1 in the output); the darks must share one EXPTIME;
 * - flat: bias- and dark-subtracted, divided by the sigma-clipped median
 *   (clred_stats_defaults) of flat_region, on the device; after combining,
 *   values below flat_floor or not finite are NaN with NO_DATA.
 * Frames with an IMAGETYP must name their kind (bias/zero, dark, flat). The
 * checks give way to override_checks. Each frame goes to the device once
 * (read onto it), is calibrated there, and the calibrated frames are
 * combined there (clred_combine_dev); the master comes back once. When the
 * calibrated frames would not fit half of the context's memory budget, each
 * is downloaded once calibrated and they are combined from host memory in
 * bands: the same bits. */
CLRED_API clred_status clred_master_bias(clred_ctx *ctx, const char *const *paths, size_t n,
                               const clred_calib_opts *opts, const clred_combine_opts *copts,
                               clred_image *out);
CLRED_API clred_status clred_master_dark(clred_ctx *ctx, const char *const *paths, size_t n, const clred_image *bias,
                               const clred_calib_opts *opts, const clred_combine_opts *copts,
                               clred_image *out);
CLRED_API clred_status clred_master_flat(clred_ctx *ctx, const char *const *paths, size_t n, const clred_image *bias,
                               const clred_image *dark, const clred_calib_opts *opts,
                               const clred_combine_opts *copts, clred_image *out);

/* The masters from raw frames already on the device (names, may be NULL,
 * name them in messages), and from raw frames in host memory. The results
 * equal the path versions' bit for bit. */
CLRED_API clred_status clred_master_bias_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                             size_t n, const clred_calib_opts *opts, const clred_combine_opts *copts,
                                             clred_dimage **out);
CLRED_API clred_status clred_master_dark_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                             size_t n, const clred_dimage *bias, const clred_calib_opts *opts,
                                             const clred_combine_opts *copts, clred_dimage **out);
CLRED_API clred_status clred_master_flat_dev(clred_ctx *ctx, const clred_dimage *const *frames, const char *const *names,
                                             size_t n, const clred_dimage *bias, const clred_dimage *dark,
                                             const clred_calib_opts *opts, const clred_combine_opts *copts,
                                             clred_dimage **out);
CLRED_API clred_status clred_master_bias_images(clred_ctx *ctx, const clred_image *frames, size_t n,
                                                const clred_calib_opts *opts, const clred_combine_opts *copts,
                                                clred_image *out);
CLRED_API clred_status clred_master_dark_images(clred_ctx *ctx, const clred_image *frames, size_t n,
                                                const clred_image *bias, const clred_calib_opts *opts,
                                                const clred_combine_opts *copts, clred_image *out);
CLRED_API clred_status clred_master_flat_images(clred_ctx *ctx, const clred_image *frames, size_t n,
                                                const clred_image *bias, const clred_image *dark,
                                                const clred_calib_opts *opts, const clred_combine_opts *copts,
                                                clred_image *out);

/* ---- background, cosmic rays, bad pixels */

/* Mesh background like SExtractor/SEP: per box, sigma clipping around the
 * median (3 sigma, iterated to convergence) gives mode = 2.5 median - 1.5 mean
 * when |mean - median| / std < 0.3, else the median, and the clipped std as
 * the RMS. Boxes with too few good pixels are filled from their nearest valid
 * neighbours, the mesh is median filtered, then a natural bicubic spline
 * through the box centres gives the full-resolution maps. Partial boxes at
 * the right and top edges use the pixels they have, as SEP does. */
typedef struct {
    int box_w, box_h;          /* box size in pixels (default 64, 64) */
    int filter_w, filter_h;    /* median filter over the mesh, in boxes, odd (default 3, 3; 1 = none);
                                  it shrinks symmetrically at the mesh edges so gradients stay unbiased */
    double clip_sigma;         /* clipping half-width around the median, in std (default 3) */
    int max_iters;             /* cap on clipping iterations (default 100; stops when nothing changes) */
    double min_good_frac;      /* a box needs this fraction of its pixels usable (default 0.5) */
    uint16_t ignore_bits;      /* mask bits that exclude a pixel (default CLRED_MASK_UNUSABLE) */
    int mask_sources;          /* second pass with source pixels masked (default 0) */
    double source_sigma;       /* first-pass pixels above bkg + source_sigma * rms are sources (default 3) */
    int source_grow;           /* sources are grown by this many pixels (default 2) */
} clred_bkg_opts;

typedef struct {
    double global_back, global_rms; /* medians of the filtered mesh, as SEP's globalback / globalrms */
    size_t mesh_w, mesh_h;          /* boxes across and down */
    size_t nfilled;                 /* boxes filled from neighbours */
    size_t nmasked_sources;         /* pixels masked as sources in the second pass */
} clred_bkg_info;

CLRED_API clred_bkg_opts clred_bkg_defaults(void);

/* Background and RMS maps of img (sci, and mask when present). bkg and rms
 * receive new float images (sci only) of img's shape; either may be NULL, as
 * may info. Fails with CLRED_ERR_INPUT when no box has enough good pixels. */
CLRED_API clred_status clred_background(clred_ctx *ctx, const clred_image *img, const clred_bkg_opts *opts,
                              clred_image *bkg, clred_image *rms, clred_bkg_info *info);
/* The same on a device image: bkg and rms (either may be NULL) receive new
 * SCI-only device images. */
CLRED_API clred_status clred_background_dev(clred_ctx *ctx, const clred_dimage *img, const clred_bkg_opts *opts,
                                            clred_dimage **bkg, clred_dimage **rms, clred_bkg_info *info);

/* A background as an object (like SEP's sep_bkg): the filtered mesh and its
 * RMS, and what evaluating them needs, so that the background subtracted
 * from a frame can be saved beside it, evaluated again on any rows, and added
 * back. clred_background's maps are this model evaluated on the whole grid
 * (the mesh is held as float32, so a saved model gives the same maps bit for
 * bit). Evaluation: a natural bicubic spline through the box centres
 * ((i + 0.5) * box - 0.5), as clred_bkg_opts describes. */
typedef struct {
    size_t width, height;   /* the image modelled */
    int box_w, box_h;       /* box size in pixels */
    int filter_w, filter_h; /* the mesh median filter applied (kept for the record) */
    size_t mesh_w, mesh_h;  /* boxes across and down */
    float *back, *rms;      /* mesh_w * mesh_h each, row-major, after filling and filtering */
    double global_back, global_rms;
} clred_bkg_model;

CLRED_API void clred_bkg_model_free(clred_bkg_model *m);
/* The model of img (sci, and mask when present), estimated as clred_background. */
CLRED_API clred_status clred_background_model(clred_ctx *ctx, const clred_image *img, const clred_bkg_opts *opts,
                                              clred_bkg_model *model, clred_bkg_info *info);
CLRED_API clred_status clred_background_model_dev(clred_ctx *ctx, const clred_dimage *img, const clred_bkg_opts *opts,
                                                  clred_bkg_model *model, clred_bkg_info *info);
/* Rows [y0, y0 + nrows) of the background and RMS maps (either may be NULL),
 * into caller arrays of nrows * width, evaluated on the device. */
CLRED_API clred_status clred_bkg_model_eval(clred_ctx *ctx, const clred_bkg_model *m, size_t y0, size_t nrows,
                                            float *bkg, float *rms);
/* The whole maps as new SCI-only device images (either may be NULL). */
CLRED_API clred_status clred_bkg_model_eval_dev(clred_ctx *ctx, const clred_bkg_model *m, clred_dimage **bkg,
                                                clred_dimage **rms);
/* img's SCI -= the model (subtract) or += it (restore: a frame written with
 * its model gives back the unsubtracted frame to float32 rounding). */
CLRED_API clred_status clred_bkg_model_subtract(clred_ctx *ctx, const clred_bkg_model *m, clred_image *img);
CLRED_API clred_status clred_bkg_model_restore(clred_ctx *ctx, const clred_bkg_model *m, clred_image *img);
/* The model as a FITS product: primary HDU BKGMESH (mesh_w x mesh_h float32)
 * whose header holds the model's settings (BKGIMW, BKGIMH, BKGBOXW, BKGBOXH,
 * BKGFILTW, BKGFILTH, BKGINTRP = 'NATURAL_BICUBIC', BKGGLOB, BKGGRMS) and the
 * cards of header (may be NULL), then BKGRMS (the RMS mesh) and, when full is
 * not NULL, BKGMAP (width x height, the evaluated map). Atomic. */
CLRED_API clred_status clred_bkg_model_write(const char *path, const clred_bkg_model *m, const float *full,
                                             const clred_header *header, int overwrite);
CLRED_API clred_status clred_bkg_model_read(const char *path, clred_bkg_model *m);
/* Whether path is a model product (its primary HDU is BKGMESH). */
CLRED_API int clred_bkg_model_is_product(const char *path);
/* A background map from a file: a model product evaluated on its grid, or
 * any image (its SCI). out is a new host image. */
CLRED_API clred_status clred_background_read(clred_ctx *ctx, const char *path, clred_image *out);

/* Statistics of a map (a background): min, max, mean, median, population std
 * of its finite pixels, the count of NaN (and infinite) pixels, and a
 * histogram of nbins equal bins over [min, max] (the last bin closed). */
typedef struct {
    double min, max, mean, median, std;
    size_t npix, nnan;
    size_t nbins;
    size_t *counts; /* nbins (malloc'd; clred_map_stats_free) */
} clred_map_stats;
CLRED_API clred_status clred_map_stats_compute(clred_ctx *ctx, const float *map, size_t width, size_t height,
                                               size_t nbins, clred_map_stats *out);
CLRED_API void clred_map_stats_free(clred_map_stats *s);

/* Per-pixel mean and population standard deviation (ddof 0, NumPy's
 * default) of n same-shaped maps (a map of another shape is an error), on the device (Welford's update, one map
 * at a time, so n is unbounded; their SCI planes). A pixel NaN in any map is
 * NaN. mean and std are caller arrays of width * height (either may be NULL). */
CLRED_API clred_status clred_pixel_mean_std(clred_ctx *ctx, const clred_image *maps, size_t n, float *mean,
                                            float *std);

/* The coadd's final background (as Rubin's pipelines subtract from a stack
 * of background-subtracted frames): a mesh model on a larger box, with
 * sources masked in a second pass; its values may be negative (they undo an
 * over-subtraction). Defaults: clred_bkg_defaults() with 256-pixel boxes and
 * mask_sources. */
CLRED_API clred_bkg_opts clred_coadd_bkg_defaults(void);
/* Estimates the model of coadd (sci, mask when present), subtracts it from
 * coadd's SCI in place and returns it (model; info may be NULL), so that
 * coadd before - coadd after = the model's map. opts NULL = the coadd
 * defaults. */
CLRED_API clred_status clred_coadd_background(clred_ctx *ctx, clred_image *coadd, const clred_bkg_opts *opts,
                                              clred_bkg_model *model, clred_bkg_info *info);

/* Background matching before coaddition: each frame's background
 * difference to a reference frame (ref - frame, on pixels usable in both) is
 * measured on a coarse mesh (clred_background's clipped box modes of the
 * difference, unfiltered), fitted by a 2-D polynomial of total degree order
 * in x and y scaled to [-1, 1] (least squares over the box centres), and
 * added to the frame, so that every frame's background equals the
 * reference's. With order -1 the mesh itself (spline-interpolated) is added
 * instead of a polynomial. */
typedef struct {
    int order;          /* polynomial degree 0..3, or -1 = the coarse mesh itself (default 1: a plane) */
    int box;            /* box of the difference mesh in pixels (default 64) */
    long ref_index;     /* reference frame; -1 = the frame whose global background is the median (default) */
    uint16_t ignore_bits; /* mask bits that exclude a pixel (default CLRED_MASK_UNUSABLE) */
} clred_bkgmatch_opts;

typedef struct {
    long ref_index;   /* the reference used */
    size_t nterms;    /* polynomial terms per frame (0 for the mesh) */
    double *coeffs;   /* n * nterms: terms 1, u, v, u^2, u v, v^2, u^3, u^2 v, u v^2, v^3 (u = 2 x / (w - 1) - 1) */
    double *offset;   /* n: the correction at the frame's centre */
    double *fit_rms;  /* n: rms of the box differences about the fit */
} clred_bkgmatch_result;

CLRED_API clred_bkgmatch_opts clred_bkgmatch_defaults(void);
CLRED_API void clred_bkgmatch_result_free(clred_bkgmatch_result *r);
/* Matches frames[0..n) (one shape; sci, and mask when present) in place;
 * result may be NULL. On failure some frames may already be matched. */
CLRED_API clred_status clred_match_backgrounds(clred_ctx *ctx, clred_image *frames, size_t n,
                                               const clred_bkgmatch_opts *opts, clred_bkgmatch_result *result);
/* The same on device images (SCI and MASK), in place. */
CLRED_API clred_status clred_match_backgrounds_dev(clred_ctx *ctx, clred_dimage *const *frames, size_t n,
                                                   const clred_bkgmatch_opts *opts, clred_bkgmatch_result *result);

/* Quick-look PNGs (libpng), 8-bit grey, row 0 at the bottom as FITS viewers
 * show it. ZSCALE: linear between IRAF's zscale limits (clred_zscale);
 * ASINH: asinh(10 t) / asinh(10) of t linear between the 0.25 and 99.75
 * percentiles. NaN pixels are black. Atomic. */
typedef enum { CLRED_STRETCH_ZSCALE = 0, CLRED_STRETCH_ASINH } clred_stretch;
CLRED_API clred_status clred_png_write(const char *path, const float *pixels, size_t width, size_t height,
                                       clred_stretch stretch, int overwrite);
/* IRAF's zscale display limits, as astropy's ZScaleInterval (1000 samples
 * spread evenly over the finite pixels, contrast 0.25, 2.5-sigma rejection
 * grown by 1 % of the samples, at most 5 iterations, at most half rejected). */
CLRED_API clred_status clred_zscale(const float *pixels, size_t n, double *z1, double *z2);
/* The histogram of s as a bar chart PNG (width x height pixels, 0 = 512 x 256). */
CLRED_API clred_status clred_histogram_png(const char *path, const clred_map_stats *s, size_t width, size_t height,
                                           int overwrite);

/* L.A.Cosmic (van Dokkum 2001) with astroscrappy's parameters and steps. */
typedef struct {
    double sigclip;      /* Laplacian-to-noise limit (default 4.5) */
    double sigfrac;      /* neighbours need sigfrac * sigclip (default 0.3) */
    double objlim;       /* contrast limit against the fine-structure image (default 5) */
    int max_iters;         /* iterations, stopping early when none is found (default 4) */
    double gain;         /* e-/ADU (default 1) */
    double readnoise;    /* e- (default 6.5) */
    double satlevel;     /* saturation in ADU (astroscrappy: electrons = this * gain); <= 0: none (default 65536) */
    int sepmed;          /* separable medians (astroscrappy's default) instead of true ones (default 0) */
    const float *bkg;    /* sky model in ADU (astroscrappy's inbkg): removed while detecting, kept in the output; or NULL */
    const float *var;    /* variance in ADU^2 (astroscrappy's invar), or NULL: the noise model then comes from the data */
    uint16_t ignore_bits; /* input mask bits treated as bad (default CLRED_MASK_UNUSABLE) */
} clred_cosmic_opts;

typedef struct {
    size_t ncosmic;   /* pixels flagged COSMIC_RAY */
    int iterations;   /* iterations run */
} clred_cosmic_info;

CLRED_API clred_cosmic_opts clred_cosmic_defaults(void);

/* Detects and repairs cosmic rays in img in place: repaired pixels get the
 * masked 5x5 median of their neighbours (astroscrappy's 'medmask', the lower
 * middle value for an even count) and the bits COSMIC_RAY | INTERPOLATED in
 * the mask (added if absent); with a variance plane, their variance becomes
 * the cleaned noise model's. Every other pixel is left unchanged. The mask
 * and the repaired values match astroscrappy 1.3.0 (cleantype='medmask')
 * pixel for pixel on a simulated 2048 x 2048 frame. info may be NULL. */
CLRED_API clred_status clred_cosmic(clred_ctx *ctx, clred_image *img, const clred_cosmic_opts *opts, clred_cosmic_info *info);
/* The same on a device image, in place. The sky model and the noise
 * variance are device images (SCI planes; either may be NULL) in place of
 * opts->bkg and opts->var, which must be NULL here. */
CLRED_API clred_status clred_cosmic_dev(clred_ctx *ctx, clred_dimage *img, const clred_dimage *sky,
                                        const clred_dimage *noise_var, const clred_cosmic_opts *opts,
                                        clred_cosmic_info *info);

/* ---- proxy-pixel background (CUTE)
 *
 * For a small spectrograph whose frames carry the spectrum on a band of
 * rows and dark signal and scattered light everywhere (the CUTE CubeSat):
 * every usable "spectral" pixel is matched to the usable non-spectral pixel
 * that behaves the same across the dark frames (its proxy), and each science
 * frame's background at a spectral pixel is the proxy's value in that frame.
 *
 * A pixel is unusable (never matched, never a proxy) when it is missing in
 * any dark (NaN, infinite, or equal to fill_value) or hot in every dark
 * (above that dark's median + hot_sigma * 1.4826 MAD of its finite pixels).
 * For a spectral pixel s and a candidate c the residual series is
 * r_t = dark_t[s] - dark_t[c] (float32), t over the ndarks frames; from it,
 * in double: the median (of an even count, the mean of the two middle
 * values), msr = sum r^2 / n and std = sqrt(max(msr - (sum r / n)^2, 0)).
 * MEDIAN: the candidate with the smallest |median|; among exact ties the
 * smallest std; then the lowest pixel index (row-major). Dark frames in
 * ADU are integers, so ties in |median| are common and exact. With a tie
 * tolerance t > 0 the ties are the candidates with |median| <= (the smallest
 * |median|) + t (computed in double), among which the smallest std wins,
 * then the lowest index (a second pass over the candidates). LSQ: the
 * smallest msr, then the lowest index. The search is exhaustive over the
 * candidates, or over those within window columns of the spectral pixel. */
typedef enum { CLRED_PROXY_MEDIAN = 0, CLRED_PROXY_LSQ } clred_proxy_method;

typedef struct {
    clred_proxy_method method; /* default MEDIAN */
    int window;                /* > 0: candidates within this many columns only (default 0 = all) */
    double fill_value;         /* a value meaning "not downlinked", besides NaN (default NaN = none) */
    double hot_sigma;          /* default 10 */
    double tie_tolerance;      /* MEDIAN: |median| within this of the smallest ties (default 0 = exact ties) */
} clred_proxy_opts;

/* Per pixel (width * height, row-major); scores are NaN where no proxy. */
typedef struct {
    size_t width, height, ndarks;
    size_t nspectral, nmatched, ncandidates; /* spectral pixels, those matched, usable non-spectral ones */
    int64_t *proxy;   /* the proxy's pixel index for matched spectral pixels, else -1 */
    double *median, *std, *msr; /* the chosen proxy's scores */
    uint8_t *unusable; /* 1 hot in every dark, 2 missing in a dark, else 0 */
} clred_proxy_match;

CLRED_API clred_proxy_opts clred_proxy_defaults(void);
CLRED_API void clred_proxy_match_free(clred_proxy_match *m);
/* Matches on the device (kernels/proxy.cl, double precision: a device
 * without fp64 is refused). darks: ndarks >= 2 frames of one shape, at most
 * 128; spectral: width * height flags (non-zero = spectral). */
CLRED_API clred_status clred_proxy_match_pixels(clred_ctx *ctx, const clred_image *darks, size_t ndarks,
                                                const uint8_t *spectral, const clred_proxy_opts *opts,
                                                clred_proxy_match *out);
/* A science frame's background (the proxy's value at matched spectral
 * pixels, NaN at unmatched spectral pixels, the pixel itself elsewhere) and
 * its final frame (science - background: the spectrum, zero off it). bkg
 * and final receive new host images (either may be NULL). */
CLRED_API clred_status clred_proxy_background(clred_ctx *ctx, const clred_proxy_match *m, const clred_image *sci,
                                              const uint8_t *spectral, clred_image *bkg, clred_image *final);
/* Writes the match map as CSV: x,y,proxy_x,proxy_y,median,std,msr per
 * spectral pixel (empty proxy fields where unmatched). Atomic. */
CLRED_API clred_status clred_proxy_match_write_csv(const char *path, const clred_proxy_match *m,
                                                   const uint8_t *spectral, int overwrite);

/* Cross-dispersion profile fits of a spectral frame (rows = y): the
 * profile of each bin of columns (the mean of the bin's finite values per
 * row) fitted by Levenberg-Marquardt (double, host: a few hundred points
 * per bin) with a single Gaussian a G(y; mu, sigma) + c and a double one
 * a1 G(y; mu1, sigma) + a2 G(y; mu2, sigma) + c (one width), where
 * G(y; mu, s) = exp(-(y - mu)^2 / (2 s^2)). With tie_ratio (a bin's ratio
 * a2 / a1 from another fit, e.g. the median frame's) a2 = ratio * a1. */
typedef struct {
    size_t x0, x1;                                   /* the bin's columns [x0, x1) */
    double amp, mu, sigma, offset, chi2;             /* single Gaussian; chi2 = sum of squared residuals */
    double amp1, mu1, amp2, mu2, sigma2, offset2, chi2_double; /* double Gaussian */
    int ok_single, ok_double;                        /* the fit converged */
} clred_trace_bin;

typedef struct {
    size_t nbins;
    clred_trace_bin *bins;
} clred_trace_fit;

/* bin columns per bin (default 25 when 0); tie_ratio NULL or nbins ratios. */
CLRED_API clred_status clred_trace_fit_frame(const clred_image *img, size_t bin, const double *tie_ratio,
                                             clred_trace_fit *out);
CLRED_API void clred_trace_fit_free(clred_trace_fit *f);
/* The fit's model at (x, y): the bin's double Gaussian (the single one when
 * the double did not converge; NaN when neither did). */
CLRED_API double clred_trace_fit_model(const clred_trace_fit *fit, size_t x, double y);
/* Spectral pixels of img that are not finite or are negative take the fit's
 * model value (MASK gets INTERPOLATED, and loses NO_DATA, when present);
 * *ninfilled (may be NULL) counts them. */
CLRED_API clred_status clred_trace_fit_infill(clred_image *img, const clred_trace_fit *fit, const uint8_t *spectral,
                                              size_t *ninfilled);
/* Writes nfits fits as CSV, one row per frame and bin: "frame,bin,x0,x1,amp,mu,sigma,offset,chi2,ok,amp1,mu1,
 * amp2,mu2,sigma2,offset2,chi2_double,ok_double" (names[i] names fit i). Atomic. */
CLRED_API clred_status clred_trace_fit_write_csv(const char *path, const char *const *names,
                                                 const clred_trace_fit *fits, size_t nfits, int overwrite);

/* The spectral region found from the trace (clred proxy without a mask):
 * the profile of each bin of columns is fitted (clred_trace_fit_frame); a
 * bin gives its centre, width and peak separation from the double Gaussian
 * where that is a real pair (both peaks positive, the weaker at least a tenth
 * of the stronger, a smaller chi2 than the single one), else from the single
 * Gaussian (separation 0). Polynomials of degree order in u = 2 x / (w - 1) - 1
 * are fitted to the three over the bins (least squares, refitted once
 * without the bins beyond 4 robust sigmas), and pixel (x, y) is spectral
 * when |y - centre(x)| <= split(x) / 2 + k sigma(x). The simulator's band
 * (spectral_half = 5 trace sigmas) is this with k = 5 where the trace has
 * not split. Give it a frame with the trace well above the noise and
 * little else: the median of the science frames less the median dark. */
#define CLRED_TRACE_REGION_MAX_ORDER 3
typedef struct {
    size_t bin;  /* columns per fit bin (default 25) */
    int order;   /* polynomial degree 0..3 (default 2) */
    double k;    /* half-width in trace sigmas beyond the peaks (default 5) */
} clred_trace_region_opts;

typedef struct {
    int order;
    double k;
    double centre[CLRED_TRACE_REGION_MAX_ORDER + 1], sigma[CLRED_TRACE_REGION_MAX_ORDER + 1],
        split[CLRED_TRACE_REGION_MAX_ORDER + 1]; /* coefficients of 1, u, u^2, u^3 */
    size_t nbins_used, nspectral;
} clred_trace_region;

CLRED_API clred_trace_region_opts clred_trace_region_defaults(void);
/* spectral: width * height flags written (1 = spectral); out may be NULL. */
CLRED_API clred_status clred_trace_region_find(const clred_image *frame, const clred_trace_region_opts *opts,
                                               uint8_t *spectral, clred_trace_region *out);
/* The value of coefficients coef (degree order) at u. */
CLRED_API double clred_trace_region_poly(const double *coef, int order, double u);

/* The proxy-pixel reduction of a set (clred proxy): the match, then per
 * science frame its background and final frame, the median of the science
 * frames and of the final frames, the profile fits of the median final frame
 * and of each final frame (the peak ratio tied to the median's), and
 * quick-look PNGs. Written into outdir (which must exist): match.csv,
 * match.fits (SCI = proxy x, PROXYY, MEDIAN, STD, MSR; -1 / NaN where
 * none), background_NNN.fits, final_NNN.fits (NNN from 001),
 * median_science.fits, median_final.fits, fits.csv, median_final.png,
 * final_NNN.png (asinh), and clean_NNN.fits: the final frame with its empty
 * and negative spectral pixels infilled from its (ratio-tied) fit, then
 * cleaned of cosmic rays (clred_cosmic with opts.cosmic). With spectral
 * NULL the spectral region is found from the trace in the median science
 * frame (clred_trace_region_find with opts.region) and written as
 * spectral.fits (1 = spectral); the frame fitted is the median science frame
 * less the median dark, since the dark signal and hot pixels would hide the
 * trace. */
typedef struct {
    clred_proxy_opts match;
    size_t bin;     /* columns per fit bin (default 25) */
    int png;        /* write the quick-look PNGs (default 1) */
    clred_cosmic_opts cosmic; /* clred_cosmic_defaults() with gain 1, readnoise 3 e-, no saturation level */
    clred_trace_region_opts region; /* when no spectral region is given (clred_trace_region_defaults()) */
    int overwrite;
} clred_proxy_run_opts;

typedef struct {
    size_t nspectral, nmatched, ncandidates, nhot, nmissing;
    size_t ninfilled, ncosmic; /* over all final frames */
    double match_s, total_s; /* wall seconds of the search and of the whole run */
    double match_cpu_s;      /* CPU seconds of the search (the process's, device threads included on a CPU) */
    int region_found;         /* spectral was NULL: the region was found from the trace */
    clred_trace_region region; /* then its polynomials */
} clred_proxy_report;

CLRED_API clred_proxy_run_opts clred_proxy_run_defaults(void);
CLRED_API clred_status clred_proxy_run(clred_ctx *ctx, const clred_image *darks, size_t ndarks,
                                       const clred_image *science, size_t nscience, const uint8_t *spectral,
                                       const char *outdir, const clred_proxy_run_opts *opts,
                                       clred_proxy_report *report);

/* A CUTE-like simulated set: dark and science frames of width (dispersion,
 * x) by height (cross-dispersion, y) pixels in integer ADU. Dark signal and
 * scattered light are shared by groups of pixels (each group's level is
 * a + b * T_t for the frame's temperature T_t), so pixels of one group are
 * each other's proxies; the trace, centred on row centre, is one Gaussian of
 * width sigma at x = 0 that splits linearly into two of equal peak,
 * split_max apart at the last column; hot pixels (hot in every frame),
 * missing pixels (NaN in one frame), cosmic rays in the science frames,
 * Gaussian read noise. */
typedef struct {
    size_t width, height;   /* default 2048 x 100 */
    size_t ndarks, nscience; /* default 30, 5 */
    size_t ngroups;         /* dark-signal groups (default 400) */
    double read_noise;      /* ADU (default 2) */
    double centre, sigma, split_max; /* trace (default height / 2, 3, 12) */
    double peak;            /* spectrum peak per pixel at the trace centre, ADU (default 400) */
    size_t spectral_half;   /* rows within this of centre are spectral (default 15) */
    double hot_fraction, missing_fraction; /* default 0.002, 0.001 */
    double cosmic_fraction; /* science pixels hit (default 0.0005) */
    uint64_t seed;          /* default 1 */
} clred_cute_sim_opts;

typedef struct {
    clred_cute_sim_opts opts;
    clred_image *darks, *science;  /* ndarks and nscience frames */
    uint8_t *spectral;             /* width * height flags */
    int32_t *group;                /* width * height: each pixel's group */
    uint8_t *hot;                  /* width * height: hot in every frame */
    float **truth_background;      /* nscience planes: each frame's noiseless background */
    float *truth_spectrum;         /* width * height: the noiseless spectrum (same in every frame) */
} clred_cute_sim;

CLRED_API clred_cute_sim_opts clred_cute_sim_defaults(void);
CLRED_API clred_status clred_cute_simulate(const clred_cute_sim_opts *opts, clred_cute_sim *out);
CLRED_API void clred_cute_sim_free(clred_cute_sim *s);
/* Writes the set into the directory dir (which must exist): darks.fits and
 * science.fits (cubes), spectral.fits (0/1), truth_spectrum.fits,
 * truth_background.fits (cube, per science frame), truth_group.fits,
 * truth_hot.fits and truth.json (the options and the profile's formula). */
CLRED_API clred_status clred_cute_sim_write(const clred_cute_sim *s, const char *dir, int overwrite);

/* Median filter of a width x height float image on the device: size 3, 5 or 7
 * (square window, exact) or, with separable set, a row then column median of
 * that length (5, 7 or 9). A border of size / 2 pixels is copied from in.
 * Values must be finite. */
CLRED_API clred_status clred_median_filter(clred_ctx *ctx, const float *in, float *out, size_t width, size_t height,
                                 int size, int separable);

/* Bad-pixel maps from master darks and flats. */
typedef struct {
    double hot_sigma;     /* dark: pixels above local median + hot_sigma * robust std are BAD (default 5) */
    double cold_sigma;    /* flat: pixels below local median - cold_sigma * robust std are BAD; dark: likewise (default 5) */
    int window;           /* local median window: 3, 5 or 7 (default 5) */
    double saturation;    /* values at or above this are SATURATED and start bleed trails; <= 0: none (default 0) */
    double bleed_frac;    /* a bleed trail goes on along the column while values stay above bleed_frac * saturation (default 0.5) */
} clred_badpix_opts;

typedef struct {
    size_t nhot, ncold, nsaturated, nbleed;
} clred_badpix_info;

CLRED_API clred_badpix_opts clred_badpix_defaults(void);

/* Marks BAD (hot or cold) and SATURATED pixels of one master frame, or-ing
 * the bits into mask_out (width * height, caller-owned). Pixels whose value
 * is not finite are BAD. The local median's window is cut at the image's
 * edges, so border pixels are judged too. The robust std is 1.4826 * MAD of
 * the residuals from the local median over the whole frame; a frame with no
 * scatter is CLRED_ERR_INPUT. info may be NULL. */
CLRED_API clred_status clred_find_bad_pixels(clred_ctx *ctx, const clred_image *frame, const clred_badpix_opts *opts,
                                   uint16_t *mask_out, clred_badpix_info *info);
/* The same on a device image: the bits are or-ed into target's MASK plane
 * (added when absent; target may be frame itself). */
CLRED_API clred_status clred_find_bad_pixels_dev(clred_ctx *ctx, const clred_dimage *frame,
                                                 const clred_badpix_opts *opts, clred_dimage *target,
                                                 clred_badpix_info *info);

typedef enum {
    CLRED_INFILL_MEDIAN = 0, /* median of the usable pixels in the 5x5 window, else 7x7; else their mean within 15x15 */
    CLRED_INFILL_LINEAR_ROW, /* linear interpolation between the nearest usable pixels along the row */
    CLRED_INFILL_LINEAR_COL  /* the same along the column */
} clred_infill_method;

/* Repairs every pixel whose mask has any of bits (and non-finite pixels),
 * from pixels that have none of them; repaired pixels get INTERPOLATED.
 * A pixel with no usable pixel in reach is left as it is. *nfilled (may be
 * NULL) receives the number repaired. The image needs a mask plane unless
 * only non-finite pixels are to be repaired. */
CLRED_API clred_status clred_infill(clred_ctx *ctx, clred_image *img, uint16_t bits, clred_infill_method method,
                          size_t *nfilled);
CLRED_API clred_status clred_infill_dev(clred_ctx *ctx, clred_dimage *img, uint16_t bits, clred_infill_method method,
                                        size_t *nfilled);
/* ---- sources and photometry */

/* Pixel coordinates in this block are 0-based with pixel centres on integers:
 * pixel (0, 0) covers [-0.5, 0.5] x [-0.5, 0.5]. Catalogs use the same. */

/* Source flags (clred_source.flags, clred_phot.flags). */
#define CLRED_SRC_SATURATED      0x01u /* a pixel is SATURATED in the mask or at/above the saturation level */
#define CLRED_SRC_EDGE           0x02u /* touches the image border (photometry: aperture or annulus leaves the image) */
#define CLRED_SRC_MASKED         0x04u /* a pixel of the source or aperture is NaN or has an unusable mask bit */
#define CLRED_SRC_BLENDED        0x08u /* split from a component holding several peaks */
#define CLRED_SRC_MOMENTS_FAILED 0x10u /* windowed moments did not converge: isophotal moments reported */
#define CLRED_SRC_NO_BACKGROUND  0x20u /* photometry: too few annulus pixels for a local background */

typedef struct {
    double x, y;        /* windowed centroid (SExtractor's XWIN/YWIN): circular Gaussian window of
                           sigma sqrt((cxx + cyy) / 2) of the adaptive moments (for a Gaussian
                           profile SExtractor's 2 r_half / 2.3548), iterated to steps < 1e-4 px */
    double flux;        /* isophotal flux above the background */
    double flux_err;    /* sqrt of the summed variance plane over the isophote, else of rms^2 */
    double peak;        /* highest background-subtracted pixel of the source */
    double a, b;        /* semi-major and semi-minor RMS axes (pixels) of the source */
    double theta;       /* position angle of a, degrees counter-clockwise from +x, in (-90, 90] */
    double fwhm;        /* 2.3548 * sqrt((a^2 + b^2) / 2) */
    double ellipticity; /* 1 - b / a */
    size_t npix;        /* pixels in the isophote (after deblending) */
    unsigned flags;     /* CLRED_SRC_* */
} clred_source;

/* A detection filter from a SExtractor .conv file: "CONV NORM" or "CONV
 * NONORM", then one row per line (the first row is the lowest y), '#'
 * comments and blank lines anywhere; odd sides of at most 31. */
typedef struct {
    int width, height;
    int normalize; /* 1: CONV NORM, 0: CONV NONORM */
    float *k;      /* width * height, row by row */
} clred_conv_filter;

/* Reads / parses a filter file (name is the file named in errors). A
 * malformed file fails with CLRED_ERR_INPUT and a message naming it and the
 * line. clred_conv_filter_free releases k. */
CLRED_API clred_status clred_conv_filter_read(const char *path, clred_conv_filter *f);
CLRED_API clred_status clred_conv_filter_parse(const char *text, size_t len, const char *name, clred_conv_filter *f);
CLRED_API void clred_conv_filter_free(clred_conv_filter *f);

typedef struct {
    double thresh;           /* threshold in units of the per-pixel background RMS (default 1.5), see below */
    int minarea;             /* minimum pixels of a source (default 5) */
    double fwhm;             /* FWHM (pixels) of the Gaussian matched filter (default 3); 0 = no filter */
    double deblend_contrast; /* 0 = no deblending; with deblend_nthresh 0, the older rule: a secondary
                                peak is kept when its drop to the saddle exceeds this fraction of its
                                height (default 0.2) */
    int deblend_nthresh;     /* SExtractor's DEBLEND_NTHRESH: levels between the threshold and a
                                component's peak at which branches are told apart (default 32);
                                0 = the contrast rule above */
    double deblend_mincont;  /* SExtractor's DEBLEND_MINCONT: a branch is kept with more than this
                                fraction of its component's (filtered) flux (default 0.005; 1 = none) */
    int clean;               /* SExtractor's CLEAN: a source whose peak a brighter neighbour's Moffat
                                wing explains is merged into it (default 1; 0 = off), see below */
    double clean_param;      /* CLEAN_PARAM: scales the wing model (default 1; larger cleans more) */
    double saturation;       /* pixel level flagged SATURATED (0 = only the SATURATED mask bit; default 0) */
    uint16_t ignore_bits;    /* mask bits that make a pixel unusable (default CLRED_MASK_UNUSABLE) */
    int32_t *segmentation;   /* optional output, width * height: source index + 1 per pixel, 0 = none */
    const clred_conv_filter *filter; /* a filter file's kernel K instead of the Gaussian of fwhm (default
                                        NULL); see below */
} clred_detect_opts;

CLRED_API clred_detect_opts clred_detect_defaults(void);

/* Detects and measures sources.
 * The background bkg (its sci plane) is subtracted, else the scalar bkg_value;
 * the per-pixel RMS is rms (sci plane), else rms_value. When bkg is NULL and
 * bkg_value is NaN, or rms is NULL and rms_value is not positive, a global
 * sigma-clipped (3 sigma) median / standard deviation of the image is used.
 * The image is convolved with a unit-sum Gaussian of opts->fwhm, renormalised
 * over the usable pixels; the filtered noise sigma_F(x) = sqrt(sum K^2 rms^2) /
 * sum K is computed alongside, and a pixel is detected when
 *   F(x) / sigma_F(x) >= thresh / sqrt(sum K^2 over the full kernel),
 * i.e. F(x) >= thresh * rms(x) away from edges and masks (SExtractor's
 * convention: thresh is in per-pixel RMS units; 1.5 at FWHM 3 is 6.6 sigma of the
 * filtered noise). With opts->filter, K is the file's kernel: CONV NORM
 * kernels are renormalised the same way, CONV NONORM ones are not
 * (F = sum K d, sigma_F = sqrt(sum K^2 rms^2)); the test is the same
 * F / sigma_F >= thresh / sqrt(sum K^2), i.e. SExtractor's F >= thresh * rms
 * for unit-sum kernels. Components are 8-connected and labelled on the device;
 * the device lists the detected pixels; the host groups and deblends them
 * (deblend_nthresh / deblend_mincont as SExtractor, else the contrast rule),
 * measurements run on the device, and CLEAN (when opts->clean) merges a
 * source into a brighter one whose Moffat model (index clean_param, the
 * brighter source's filtered flux, moments and pixel count, as SExtractor's
 * CLEAN) exceeds its detection threshold at its centre.
 * *list is malloc'd (free()); *n may be 0. */
CLRED_API clred_status clred_detect_sources(clred_ctx *ctx, const clred_image *img, const clred_image *bkg,
                                  const clred_image *rms, double bkg_value, double rms_value,
                                  const clred_detect_opts *opts, clred_source **list, size_t *n);
/* The same on device images (bkg and rms may be NULL). The frame stays on
 * the device: the global level comes from samples gathered there, and only
 * what the host's deblending reads (the filtered map, the labels and an RMS
 * map when given) and the catalog come back. */
CLRED_API clred_status clred_detect_sources_dev(clred_ctx *ctx, const clred_dimage *img, const clred_dimage *bkg,
                                                const clred_dimage *rms, double bkg_value, double rms_value,
                                                const clred_detect_opts *opts, clred_source **list, size_t *n);

/* Global sigma-clipped (3 sigma, up to 10 iterations) median and standard
 * deviation of the usable pixels, on the host. */
CLRED_API clred_status clred_global_background(const clred_image *img, uint16_t ignore_bits, double *level, double *rms);

/* The frame's seeing: median FWHM of the sources with no flags, ellipticity
 * below 0.5 and flux / flux_err >= 20. Returns NaN in *seeing (and 0 in *nused)
 * when there are none. */
CLRED_API void clred_sources_seeing(const clred_source *list, size_t n, double *seeing, size_t *nused);

typedef struct {
    double radius;                    /* aperture radius in pixels (default 5) */
    double annulus_in, annulus_out;   /* local background annulus (default 8, 12); out <= in = no background */
    double clip_sigma;                /* annulus clipping (default 3) */
    int max_iters;                    /* default 5 */
    double zeropoint;                 /* magnitude = -2.5 log10(flux) + zeropoint (default 25) */
    uint16_t ignore_bits;             /* default CLRED_MASK_UNUSABLE */
    double noise_rms;                 /* per-pixel noise for the errors when there is neither a VAR
                                         plane nor an annulus (e.g. the global background RMS);
                                         0 (default): those errors are NaN */
} clred_phot_opts;

typedef struct {
    double x, y;
    double flux, flux_err; /* background-subtracted sum of exact-overlap weighted pixels and its error */
    double area;           /* sum of the weights of the usable pixels in the aperture */
    double bkg, bkg_rms;   /* clipped median and population standard deviation (as astropy) of the annulus, per pixel */
    size_t nannulus;       /* annulus pixels kept after clipping */
    double mag, mag_err;   /* NaN when flux <= 0 */
    unsigned flags;        /* CLRED_SRC_EDGE, CLRED_SRC_MASKED, CLRED_SRC_NO_BACKGROUND */
} clred_phot;

CLRED_API clred_phot_opts clred_phot_defaults(void);

/* Aperture photometry at n positions, one work-item per position. Weights are
 * the exact areas of overlap of the circle with each pixel square. The error is
 * sqrt(sum w^2 var + area^2 (pi/2) bkg_rms^2 / nannulus): the variance plane
 * when present (else bkg_rms^2 per pixel, else noise_rms^2) and the error of
 * the annulus median.
 * out has n entries (caller's). */
CLRED_API clred_status clred_aperture_photometry(clred_ctx *ctx, const clred_image *img, const double *x, const double *y,
                                       size_t n, const clred_phot_opts *opts, clred_phot *out);
CLRED_API clred_status clred_aperture_photometry_dev(clred_ctx *ctx, const clred_dimage *img, const double *x,
                                                     const double *y, size_t n, const clred_phot_opts *opts,
                                                     clred_phot *out);

/* Exact area of the intersection of the circle (cx, cy, r) with the pixel
 * square [px - 0.5, px + 0.5] x [py - 0.5, py + 0.5] (host, double). */
CLRED_API double clred_circle_pixel_overlap(double cx, double cy, double r, double px, double py);

/* Reads x, y positions from a CSV file: a header line naming columns x and y
 * (any case), or no header and x, y as the first two columns. *x and *y are malloc'd. */
CLRED_API clred_status clred_positions_read(const char *path, double **x, double **y, size_t *n);

/* Catalogs, written atomically (temporary file and rename). fits_path and/or
 * csv_path may be NULL. header cards (may be NULL) go into the table HDU;
 * when they hold a celestial WCS (clred_header_copy_wcs) the catalog has RA
 * and DEC columns (degrees) after X and Y. */
CLRED_API clred_status clred_sources_write(const char *fits_path, const char *csv_path, const clred_source *list, size_t n,
                                 const clred_header *header, int overwrite);
CLRED_API clred_status clred_phot_write(const char *fits_path, const char *csv_path, const clred_phot *list, size_t n,
                              const clred_header *header, int overwrite);

/* ------------------------------------------------------------- simulator */

typedef struct {
    uint64_t seed;          /* default 1 */
    size_t width, height;   /* default 512 x 512 */
    int nbias, ndark, nflat, nscience, nepoch2; /* default 5, 5, 5, 8, 4 */
    double gain;            /* e-/ADU, default 1.5 */
    double readnoise;       /* e-, default 6 */
    double bias_level;      /* ADU, default 1000 */
    double dark_current;    /* e-/s/pixel, default 0.05 */
    double dark_exptime;    /* s, default 300 */
    double science_exptime; /* s, default 120 */
    double sky;             /* e-/s/pixel, default 15 */
    int nstars;             /* default 300 */
    double dither;          /* maximum dither in pixels, default 4 */
    int ntransients;        /* default 5 */
    double saturation;      /* ADU, default 60000 (the 16-bit files also stop at 65535) */
    double cosmic_rate;     /* cosmic-ray events per pixel per second of exposure, default 2e-6
                               (about 63 in a 120 s 512x512 frame) */
    const char *filters;    /* comma-separated filter names, e.g. "g,r,i" (1 to CLRED_SIM_MAX_FILTERS of
                               letters, digits, '-', '.', up to 15 characters); NULL or "" = "R", the default.
                               nflat, nscience, nshort and nepoch2 count frames PER FILTER; each filter has
                               its own flat field (vignetting, tilt, dust) and sky level; stars are grey */
    int nshort;             /* science frames per filter at short_exptime, after the long ones, default 0 */
    double short_exptime;   /* s, default 10 */
    double pixel_scale;     /* arcsec per pixel of the science frames' TAN WCS (centre RA 150, Dec 2.2, the
                               sky turned by 5 degrees), default 0.4; 0 = no WCS */
    double sip;             /* SIP distortion: about this many pixels of displacement at the corners
                               (a cubic; default 0 = plain TAN) */
} clred_sim_opts;

#define CLRED_SIM_MAX_FILTERS 8

CLRED_API clred_sim_opts clred_sim_defaults(void);

/* Writes a raw night into outdir (created if needed): bias_NNN.fits,
 * dark_NNN.fits, flat_NNN.fits, sci_NNN.fits, epoch2_NNN.fits (NNN from 001;
 * with several filters flat_F_NNN.fits, sci_F_NNN.fits, epoch2_F_NNN.fits for
 * filter F, short exposures numbered after the long ones), as uint16 FITS with
 * the keywords a pipeline classifies by: IMAGETYP (BIAS, DARK, FLAT, OBJECT),
 * EXPTIME, FILTER (NONE on bias and dark), OBJECT, DATE-OBS, GAIN, RDNOISE,
 * SATURATE, and SIMDX/SIMDY/SIMFWHM/SIMSKY on science frames. truth.json has
 * per frame its file, kind, filter, imagetyp, exptime and (science) dx, dy;
 * truth_flat.fits is the first filter's flat (normalised to mean 1; with
 * several filters also truth_flat_F.fits each), truth_bias.fits (ADU) and
 * truth_dark.fits (e-/s). With a pixel scale the science and epoch-2 frames
 * carry a TAN (or TAN-SIP) WCS that follows their dither, and stars.csv lists
 * every star with id, ra, dec, mag (-2.5 log10(e-/s) + 25), its field x, y and
 * flux (e- per exposure). The same options and seed give identical bytes.
 * Everything is written into a staging directory and moved into place at the
 * end, so a failure leaves nothing behind; an outdir that is not empty needs
 * overwrite (which also removes frames of an earlier, larger simulation). */
CLRED_API clred_status clred_simulate(const clred_sim_opts *opts, const char *outdir, int overwrite);

/* ---- registration */

/* FFT library behind the registration steps. DEFAULT = the CLRED_FFT
 * environment variable ("clfft" or "vkfft"), else the faster one built in. */
typedef enum {
    CLRED_FFT_DEFAULT = 0,
    CLRED_FFT_CLFFT,
    CLRED_FFT_VKFFT
} clred_fft_backend;

/* Whether a backend was built in (1) or not (0); DEFAULT: whether any was. */
CLRED_API int clred_fft_available(clred_fft_backend backend);

typedef enum {
    CLRED_WINDOW_NONE = 0,
    CLRED_WINDOW_HANN,
    CLRED_WINDOW_TUKEY /* flat top, cosine edges over tukey_alpha / 2 of each side */
} clred_window;

typedef struct {
    clred_fft_backend backend; /* default DEFAULT */
    clred_window window;       /* apodisation before the FFT; default TUKEY */
    double tukey_alpha;        /* default 0.25 */
    double precision;          /* sub-pixel step of the upsampled-DFT refinement, px; default 0.01 (1 = integer only) */
    int phase_only;            /* 1 = pure phase correlation (cross-power normalised to unit modulus: a sharper
                                  peak, but noise-dominated high frequencies bias the sub-pixel peak, ~0.08 px
                                  at S/N ~30 per star); 0 = cross-correlation of the apodised frames (default) */
    /* Region [x0, x1) x [y0, y1) used from both images; all zero = the whole frame. */
    size_t x0, x1, y0, y1;
    /* A box of side box_size centred on (box_x, box_y) instead of the region
     * when box_size > 0 (e.g. around a star). */
    double box_x, box_y;
    size_t box_size;
    double max_shift;          /* peaks further than this from zero are ignored, px; 0 = no limit */
    uint16_t ignore_bits;      /* mask bits treated like NaN (default CLRED_MASK_UNUSABLE except SATURATED:
                                  filling saturated cores biases sub-pixel shifts towards whole pixels) */
} clred_phasecorr_opts;

CLRED_API clred_phasecorr_opts clred_phasecorr_defaults(void);

/* The position of an image relative to a reference: img(x, y) ~ ref(x - dx, y - dy). */
typedef struct {
    double dx, dy;
    double psr;  /* peak-to-sidelobe ratio of the correlation surface: (peak - mean) / std
                    outside 11x11 px around the peak; above ~10 is a confident match */
    double peak; /* correlation peak value */
} clred_shift;

/* Measures the translation of img with respect to ref (same shape). Masked and
 * NaN pixels are set to the median of the valid ones (estimated from at most
 * 262144 of them on a regular stride) before apodisation. */
CLRED_API clred_status clred_measure_shift(clred_ctx *ctx, const clred_image *ref, const clred_image *img,
                                 const clred_phasecorr_opts *opts, clred_shift *shift);

/* Measures every frame's shift against frames[ref_index], or against the
 * pixel-wise median of the stack when ref_index < 0. The reference spectrum is
 * computed once. */
CLRED_API clred_status clred_measure_shifts(clred_ctx *ctx, const clred_image *frames, size_t nframes, long ref_index,
                                  const clred_phasecorr_opts *opts, clred_shift *shifts);

/* Phase correlation on device images. The reference's spectrum is computed
 * once, when the reference is made, and every measurement finds the integer
 * peak and the peak-to-sidelobe ratio on the device: per frame only the fill
 * level's samples (at most 262144 values), the peak, the sidelobe sums and
 * the refinement's sums come back, never the frame or the correlation
 * surface. A reference is tied to one frame shape and to opts (copied);
 * measuring a frame of another shape is CLRED_ERR_INPUT. ref_index -1 in
 * clred_measure_shifts_dev takes the median of the stack. */
typedef struct clred_phasecorr_ref clred_phasecorr_ref;
CLRED_API clred_status clred_phasecorr_ref_create(clred_ctx *ctx, const clred_dimage *ref,
                                                  const clred_phasecorr_opts *opts, clred_phasecorr_ref **out);
CLRED_API clred_status clred_phasecorr_ref_measure(clred_phasecorr_ref *ref, const clred_dimage *img,
                                                   clred_shift *shift);
CLRED_API void clred_phasecorr_ref_free(clred_phasecorr_ref *ref);
/* clred_measure_shift and clred_measure_shifts on device images (the same results). */
CLRED_API clred_status clred_measure_shift_dev(clred_ctx *ctx, const clred_dimage *ref, const clred_dimage *img,
                                               const clred_phasecorr_opts *opts, clred_shift *shift);
CLRED_API clred_status clred_measure_shifts_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t nframes,
                                                long ref_index, const clred_phasecorr_opts *opts,
                                                clred_shift *shifts);

typedef enum {
    CLRED_INTERP_NEAREST = 0,
    CLRED_INTERP_BILINEAR,
    CLRED_INTERP_BICUBIC,  /* Keys, a = -0.5 */
    CLRED_INTERP_LANCZOS3,
    CLRED_INTERP_FOURIER   /* exact band-limited shift; pure translations only */
} clred_interp;

/* Maps input pixel coordinates to output ones:
 * x' = m[0] x + m[1] y + m[2],  y' = m[3] x + m[4] y + m[5]. */
typedef struct {
    double m[6];
} clred_transform;

CLRED_API clred_transform clred_transform_identity(void);
CLRED_API clred_transform clred_transform_translation(double dx, double dy);
/* Rotation by angle_deg (counter-clockwise) and scale about (cx, cy), then a translation. */
CLRED_API clred_transform clred_transform_similarity(double scale, double angle_deg, double cx, double cy, double tx,
                                           double ty);
/* The inverse mapping; CLRED_ERR_USAGE when singular. */
CLRED_API clred_status clred_transform_invert(const clred_transform *t, clred_transform *inv);

typedef struct {
    clred_interp interp;        /* default LANCZOS3 */
    size_t out_width, out_height; /* 0 = the input's shape */
    int conserve_flux;          /* scale by the input area per output pixel (default 1) */
    clred_fft_backend backend;  /* for FOURIER; default DEFAULT */
    uint16_t ignore_bits;       /* input mask bits that are not used (default CLRED_MASK_UNUSABLE) */
} clred_resample_opts;

CLRED_API clred_resample_opts clred_resample_defaults(void);

/* Resamples img through transform into out (a new image with var/mask when the
 * input has them; out always gets a mask). Variance propagates as the sum of
 * squared weights times the input variances; output pixels whose footprint
 * touched an unusable input are flagged INTERPOLATED (the unusable inputs are
 * left out and the weights renormalised), pixels that map outside the input
 * are NaN and NO_DATA. */
CLRED_API clred_status clred_resample(clred_ctx *ctx, const clred_image *img, const clred_transform *transform,
                            const clred_resample_opts *opts, clred_image *out);
/* The same on a device image; out receives a new device image. */
CLRED_API clred_status clred_resample_dev(clred_ctx *ctx, const clred_dimage *img, const clred_transform *transform,
                                          const clred_resample_opts *opts, clred_dimage **out);

/* Measures shifts with popts (reference frames[ref_index], or the median of
 * the stack when ref_index < 0) and resamples every frame onto the reference
 * with ropts. aligned receives nframes new images; shifts (may be NULL)
 * receives the measured shifts. */
CLRED_API clred_status clred_align_images(clred_ctx *ctx, const clred_image *frames, size_t nframes, long ref_index,
                                const clred_phasecorr_opts *popts, const clred_resample_opts *ropts,
                                clred_image *aligned, clred_shift *shifts);

/* The grid aligned frames are resampled onto. */
typedef enum {
    CLRED_GRID_REFERENCE = 0, /* the reference frame's pixels */
    CLRED_GRID_UNION          /* the smallest grid holding every frame's footprint */
} clred_grid;

/* Where a set of frames lands: the output shape, and the offset added to
 * reference coordinates (reference pixel (x, y) is output pixel (x + ox, y + oy)). */
typedef struct {
    size_t width, height;
    double ox, oy;
} clred_grid_geometry;

/* The output grid for frames of width x height that map onto the reference
 * through to_ref[i] (clred_resample's convention: input pixel -> reference
 * pixel). REFERENCE: the reference's shape, no offset; UNION: the bounding box
 * of every transformed frame, with an integer offset so that the reference's
 * pixels stay on the grid. */
CLRED_API clred_status clred_grid_for(const clred_transform *to_ref, size_t n, size_t width, size_t height, clred_grid grid,
                            clred_grid_geometry *geometry);

/* Resamples every frame through to_ref[i] onto the grid (clred_grid_for) with
 * ropts (its out_width / out_height are ignored). Pixels a frame does not
 * cover are NaN and NO_DATA, so a combine leaves them out. aligned receives n
 * new images; geometry (may be NULL) the grid used. The Fourier interpolant
 * works only on the REFERENCE grid with pure translations. */
CLRED_API clred_status clred_resample_onto_grid(clred_ctx *ctx, const clred_image *frames, size_t n,
                                      const clred_transform *to_ref, clred_grid grid, const clred_resample_opts *ropts,
                                      clred_image *aligned, clred_grid_geometry *geometry);
/* The same on device images: aligned receives n new device images. */
CLRED_API clred_status clred_resample_onto_grid_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t n,
                                                    const clred_transform *to_ref, clred_grid grid,
                                                    const clred_resample_opts *ropts, clred_dimage **aligned,
                                                    clred_grid_geometry *geometry);

/* ---- world coordinates (wcslib) */

/* A celestial WCS read by wcslib from a header: TAN, TPV, SIP and every other
 * projection and distortion wcslib knows. Pixel coordinates are clred's
 * (0-based, centres on integers); sky coordinates are degrees in the
 * header's frame (RADESYS). A clred_wcs is used by one thread at a time. */
typedef struct clred_wcs clred_wcs;

/* The header's primary celestial WCS. CLRED_ERR_INPUT when it has none (no
 * celestial CTYPE pair on axes 1 and 2) or wcslib rejects it. */
CLRED_API clred_status clred_wcs_from_header(const clred_header *h, clred_wcs **out);
/* 1 when clred_wcs_from_header would succeed. */
CLRED_API int clred_header_has_wcs(const clred_header *h);
CLRED_API void clred_wcs_free(clred_wcs *w);
/* n positions; a position wcslib cannot convert gives NaN. */
CLRED_API clred_status clred_wcs_pix2sky(clred_wcs *w, size_t n, const double *x, const double *y, double *ra,
                                         double *dec);
CLRED_API clred_status clred_wcs_sky2pix(clred_wcs *w, size_t n, const double *ra, const double *dec, double *x,
                                         double *y);
/* Arcsec per pixel at the reference point: sqrt |det| of the linear part. */
CLRED_API double clred_wcs_pixel_scale(const clred_wcs *w);

/* Rewrites the header's celestial WCS for pixels moved through t (input pixel
 * -> output pixel, clred_resample's convention): CRPIX goes through t, the
 * linear part (written as CD, replacing PC/CDELT/CROTA) is composed with t's
 * inverse, SIP polynomials are re-expanded in the new pixel axes (exact, the
 * same order), TPV's PV terms act after the linear part and stay. A header
 * without a celestial WCS is left alone; a lookup-table distortion
 * (CPDISj/DQDISj) is CLRED_ERR_INPUT. */
CLRED_API clred_status clred_header_wcs_transform(clred_header *h, const clred_transform *t);

/* Copies the celestial WCS cards of src (when it has a WCS) into dst, e.g.
 * into a catalog's header so that clred_sources_write / clred_phot_write add
 * RA and DEC columns. */
CLRED_API clred_status clred_header_copy_wcs(clred_header *dst, const clred_header *src);

/* Writes a TAN WCS centred on (ra, dec) (degrees) at pixel (x, y), with
 * scale_arcsec per pixel, north up and east left at rotation 0, replacing any
 * celestial WCS: CD = s [[-cos a, sin a], [sin a, cos a]] for rotation_deg a
 * (flip: east right, the first column negated). */
CLRED_API clred_status clred_header_set_tan(clred_header *h, double ra, double dec, double x, double y,
                                            double scale_arcsec, double rotation_deg, int flip);

/* ---- star matching */

/* Registration of frames that also rotate or change scale (different nights
 * or telescopes): the brightest stars of both lists form triangles of near
 * neighbours; triangles are matched by their shape (side ratios and
 * handedness) and vote for star correspondences; the transforms of the
 * best-voted triangles are scored by how many stars they bring onto a
 * reference star, and the best is refined by least squares (double) with
 * sigma clipping. Phase correlation stays the fast path for translations. */

typedef enum {
    CLRED_MATCH_SIMILARITY = 0, /* scale, rotation, translation (4 parameters) */
    CLRED_MATCH_AFFINE          /* the six coefficients */
} clred_match_model;

typedef struct {
    size_t max_stars;        /* brightest stars used from each list (default 50; 3 .. 1000) */
    clred_match_model model; /* default SIMILARITY */
    double tolerance;        /* radius in triangle-shape space (side ratios) for a triangle match (default 0.015) */
    double radius;           /* px: a transformed star matches a reference star this close (default 2) */
    size_t min_matches;      /* fewer consistent matches is an error; 0 (default) = max(6 (affine: 7),
                                25 % of the smaller list used); never below 3 (similarity) or 4 (affine) */
    double clip_sigma;       /* matches with residuals above clip_sigma * rms are dropped (default 3) */
    int allow_mirror;        /* also accept a mirrored frame (det < 0; default 0: refused) */
    double min_scale, max_scale; /* accepted scale, reference px per image px (default 0.5, 2) */
} clred_match_opts;

CLRED_API clred_match_opts clred_match_defaults(void);

typedef struct {
    clred_transform transform; /* image pixel coordinates -> reference pixel coordinates, so that
                                  clred_resample(image, &transform) lands on the reference grid */
    size_t nmatched;           /* stars in the final fit */
    double rms;                /* RMS distance (px, reference frame) of the matched stars after the fit */
    double scale;              /* sqrt |det| of the linear part */
    double rotation_deg;       /* counter-clockwise, as clred_transform_similarity's angle (affine: of the
                                  nearest similarity) */
    int mirrored;              /* the fit has det < 0 (only with allow_mirror) */
    size_t nref, nimg;         /* stars used from each list */
} clred_match_result;

/* Matches two star lists (x, y and flux of clred_source; every entry is used,
 * the brightest opts->max_stars of each) and fits opts->model. A pure
 * translation of the image by (dx, dy) (clred_shift) gives the transform
 * x' = x - dx, y' = y - dy. CLRED_ERR_INPUT when a list is too short or no
 * transform brings min_matches stars together. opts NULL = defaults. */
CLRED_API clred_status clred_match_stars(const clred_source *ref, size_t nref, const clred_source *img, size_t nimg,
                               const clred_match_opts *opts, clred_match_result *out);

/* Sources usable for matching: detected with dopts (NULL = clred_detect_defaults()
 * with thresh 5), then those flagged SATURATED, EDGE or MASKED are left out.
 * *list is malloc'd (free()). */
CLRED_API clred_status clred_detect_stars(clred_ctx *ctx, const clred_image *img, const clred_detect_opts *dopts,
                                clred_source **list, size_t *n);
CLRED_API clred_status clred_detect_stars_dev(clred_ctx *ctx, const clred_dimage *img, const clred_detect_opts *dopts,
                                              clred_source **list, size_t *n);

/* clred_detect_stars on both images, then clred_match_stars. */
CLRED_API clred_status clred_find_transform(clred_ctx *ctx, const clred_image *ref, const clred_image *img,
                                  const clred_detect_opts *dopts, const clred_match_opts *mopts,
                                  clred_match_result *out);

/* Every frame's transform onto frames[ref_index], the reference's stars
 * detected once; results[ref_index] is the identity. When a frame fails,
 * *failed (may be NULL) names it. */
CLRED_API clred_status clred_find_transforms(clred_ctx *ctx, const clred_image *frames, size_t n, long ref_index,
                                   const clred_detect_opts *dopts, const clred_match_opts *mopts,
                                   clred_match_result *results, size_t *failed);
/* The same on device images: stars are detected on the device and only the
 * catalogs come back to be matched. */
CLRED_API clred_status clred_find_transforms_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t n,
                                                 long ref_index, const clred_detect_opts *dopts,
                                                 const clred_match_opts *mopts, clred_match_result *results,
                                                 size_t *failed);


/* ---- astrometry: a WCS fitted to a reference catalog */

/* A reference catalog (e.g. a Gaia extract): RA, Dec (degrees), magnitude
 * and, when the file has one, a colour (else NaN). */
typedef struct {
    size_t n;
    double *ra, *dec, *mag, *colour;
} clred_refcat;

/* Reads a CSV file (a header line naming the columns) or a FITS table (the
 * first table HDU, or the one named in path as file.fits[NAME]). Columns are
 * found by name, any case: RA as ra, ra_icrs, raj2000, ra_deg; Dec as dec,
 * de_icrs, dej2000, dec_deg; the magnitude as mag_column when given, else
 * mag, phot_g_mean_mag, gmag, rmag, vmag; the colour as colour, color, bp_rp. */
CLRED_API clred_status clred_refcat_read(const char *path, const char *mag_column, clred_refcat *cat);
CLRED_API void clred_refcat_free(clred_refcat *cat);

typedef struct {
    int sip_order;          /* SIP distortion order, 2..8; 0 or 1 = plain TAN (default 3) */
    double clip_sigma;      /* stars further than this many per-axis RMS are left out (default 3) */
    int max_iters;          /* clipping rounds (default 5) */
    /* Where to start: the header's WCS when ra / dec are NaN (default); else a
     * TAN centred on (ra, dec) at the image centre with pixel_scale (arcsec),
     * at any rotation and either handedness. */
    double ra, dec, pixel_scale;
    size_t max_stars;       /* brightest detected and reference stars given to the triangle matcher (default 60) */
    double match_radius;    /* px: a star and a reference star pair up this close after the match (default 3) */
    size_t min_stars;       /* fewer stars in the final fit is refused (default 10) */
    double max_rms_px;      /* a final RMS above this (px) is refused (default 0.5) */
    clred_detect_opts dopts; /* star detection (clred_detect_defaults with thresh 3) */
} clred_astrometry_opts;

CLRED_API clred_astrometry_opts clred_astrometry_defaults(void);

typedef struct {
    size_t ndetected;   /* stars detected (clred_detect_stars) */
    size_t nref;        /* reference stars on the frame */
    size_t nmatched;    /* stars paired before the fit's clipping */
    size_t nused;       /* stars in the final fit */
    double rms_arcsec;  /* RMS distance of those stars from their reference positions */
    double rms_px;
    double pixel_scale; /* arcsec per pixel of the fit */
    double rotation_deg; /* a of CD = s [[-cos a, sin a], [sin a, cos a]] (clred_header_set_tan's rotation) */
    int mirrored;       /* east right of north (det of CD > 0) */
    int sip_order;
} clred_astrometry_result;

/* Detects stars, matches the brightest to the reference stars projected
 * through the starting WCS with the triangle matcher (clred_match_stars),
 * pairs every star, fits TAN (then TAN + SIP) by least squares with sigma
 * clipping, and writes the WCS (CD, SIP with its inverse AP/BP) into the
 * image's header with ASTRRMS (arcsec), ASTRNSTR and a HISTORY card. A match
 * that is not credible (too few stars, RMS above max_rms_px, no triangle
 * match) is CLRED_ERR_INPUT and the header is left unchanged. */
CLRED_API clred_status clred_astrometry_dev(clred_ctx *ctx, clred_dimage *img, const clred_refcat *ref,
                                            const clred_astrometry_opts *opts, clred_astrometry_result *result);
CLRED_API clred_status clred_astrometry(clred_ctx *ctx, clred_image *img, const clred_refcat *ref,
                                        const clred_astrometry_opts *opts, clred_astrometry_result *result);

/* ---- photometric zero point */

typedef struct {
    clred_phot_opts phot;        /* apertures (clred_phot_defaults; its zeropoint is ignored) */
    double match_radius_arcsec;  /* a star pairs with a catalog star this close (default 1) */
    double clip_sigma;           /* default 3 */
    int max_iters;               /* default 5 */
    int colour_term;             /* also fit c in mag_cat - mag_inst = ZP + c * colour (default 0) */
    double mag_min, mag_max;     /* catalog magnitudes used (NaN = no limit, the default) */
    double min_snr;              /* stars measured below this S/N are not used (default 10) */
    size_t min_stars;            /* fewer stars is refused (default 5) */
    clred_detect_opts dopts;     /* star detection (thresh 3) */
    const struct clred_psf_s *psf; /* PSF magnitudes (clred_psf_photometry) with this PSF instead of aperture
                                    magnitudes (default NULL) */
    int psf_measure;             /* PSF magnitudes with a PSF measured on the image (clred_psf_model_measure,
                                    default options; default 0) */
} clred_zeropoint_opts;

CLRED_API clred_zeropoint_opts clred_zeropoint_defaults(void);

typedef struct {
    double zp, zp_err;           /* mag = -2.5 log10(aperture flux) + zp; error of the clipped mean */
    double colour, colour_err;   /* colour coefficient (0 without colour_term) */
    double rms;                  /* scatter of the used stars about the fit (mag) */
    size_t nmatched, nused;
    double sky_rms;              /* per-pixel background RMS (image units) */
    double fwhm;                 /* seeing from the stars (clred_sources_seeing), px; NaN if none */
    double limit_mag;            /* 5 sigma point source in the aperture: zp - 2.5 log10(5 rms sqrt(pi r^2));
                                    with a PSF, of a PSF fit: zp - 2.5 log10(5 rms / sqrt(sum P^2)) */
    int psf;                     /* 1 when the magnitudes were PSF magnitudes */
} clred_zeropoint_result;

/* Detects stars, measures them in apertures (stars flagged or below min_snr
 * are left out), pairs them with the catalog through the image's WCS and
 * fits the zero point (and the colour term) by unweighted least squares with
 * sigma clipping (catalog errors are not known; the error is the scatter's).
 * Writes MAGZP, MAGZPERR, MAGLIM (and MAGCOLOR) and a HISTORY card into the
 * header. No WCS, or fewer than min_stars, is CLRED_ERR_INPUT. */
CLRED_API clred_status clred_zeropoint_dev(clred_ctx *ctx, clred_dimage *img, const clred_refcat *ref,
                                           const clred_zeropoint_opts *opts, clred_zeropoint_result *result);
CLRED_API clred_status clred_zeropoint(clred_ctx *ctx, clred_image *img, const clred_refcat *ref,
                                       const clred_zeropoint_opts *opts, clred_zeropoint_result *result);

/* ---- frame quality */

/* What a survey asks of a frame. NaN where it cannot be measured. */
typedef struct {
    double fwhm;          /* seeing, px: clred_sources_seeing of the stars */
    double fwhm_arcsec;   /* the same through the WCS's pixel scale (NaN without a WCS) */
    double ellipticity;   /* median 1 - b/a of the unflagged stars with S/N >= 20 (trailing, tracking) */
    double sky;           /* sigma-clipped median of the pixels */
    double sky_noise;     /* per-pixel noise between the stars (the median clipped spread of blank discs of
                             radius 12 px; the frame's clipped std when there is no blank sky) */
    size_t nstars;        /* stars detected (clred_detect_stars, thresh 5) */
    double zeropoint;     /* MAGZP of the header (clred_zeropoint), NaN if none */
    double limit_mag;     /* 5 sigma point source in an aperture of radius FWHM: MAGZP - 2.5 log10(5 sky_noise
                             sqrt(pi FWHM^2)); NaN without MAGZP */
    double astrom_rms;    /* ASTRRMS of the header (clred_astrometry), arcsec; NaN if none */
} clred_frame_quality;

CLRED_API clred_status clred_measure_quality_dev(clred_ctx *ctx, const clred_dimage *img, clred_frame_quality *q);
CLRED_API clred_status clred_measure_quality(clred_ctx *ctx, const clred_image *img, clred_frame_quality *q);

/* Limits a frame must meet to enter a reference stack; NaN (or 0 for
 * min_stars) = no limit. A quantity that could not be measured fails the
 * limit set on it. */
typedef struct {
    double max_fwhm;        /* px */
    double max_ellipticity;
    double max_sky_noise;
    size_t min_stars;
    double min_limit_mag;
    double max_astrom_rms;  /* arcsec */
} clred_quality_limits;

CLRED_API clred_quality_limits clred_quality_no_limits(void);
/* 1 when q meets every limit; else 0 and why (may be NULL) names the first
 * limit missed ("FWHM 5.2 px > 4.5"). */
CLRED_API int clred_quality_passes(const clred_frame_quality *q, const clred_quality_limits *limits, char *why,
                                   size_t why_size);

/* ---- light curves: forced photometry on a series of images */

/* Mid-exposure time of a frame: MJD-OBS (else DATE-OBS, with TIME-OBS when
 * DATE-OBS holds the date only) plus half of EXPTIME (0 when absent).
 * CLRED_ERR_INPUT when the header has neither. */
CLRED_API clred_status clred_header_mjd(const clred_header *h, double *mjd);

typedef struct {
    clred_phot_opts phot;  /* aperture and annulus; for difference images the annulus is off by default */
    int difference;        /* the images are differences (background 0): no annulus unless phot asks for one
                              with difference_annulus; default 0 */
    int difference_annulus; /* keep phot's annulus on difference images (default 0) */
    int sky;               /* targets are RA, Dec (degrees), placed on each image through its WCS (default 0:
                              pixel x, y, the same on every image) */
    const struct clred_psf_s *psf; /* forced PSF photometry (clred_psf_photometry_dev, positions held) with this
                              PSF instead of apertures (default NULL) */
    int psf_measure;       /* forced PSF photometry with a PSF measured on each image (direct images) */
    double psf_fit_radius; /* the PSF fit's radius, px (0 = clred_psf_phot_defaults') */
} clred_lightcurve_opts;

CLRED_API clred_lightcurve_opts clred_lightcurve_defaults(void);

/* Forced-photometry targets: positions (x, y or RA, Dec), and for
 * difference images the flux of each target on the reference (NaN = 0),
 * added back so that the light curve is the total flux. */
typedef struct {
    size_t n;
    double *a, *b;     /* x, y or RA, Dec */
    double *ref_flux;
} clred_lc_targets;

/* Reads targets from a CSV file with a header line: columns x, y (pixels,
 * 0-based) or ra, dec (degrees; sky set to 1), and optionally ref_flux. */
CLRED_API clred_status clred_lc_targets_read(const char *path, clred_lc_targets *t, int *sky);
CLRED_API void clred_lc_targets_free(clred_lc_targets *t);

typedef struct {
    size_t target, image;  /* indices */
    double mjd;            /* mid-exposure (clred_header_mjd) */
    double x, y;           /* where it was measured */
    double flux, flux_err; /* aperture or PSF flux (+ ref_flux), error from the VAR plane (else the annulus RMS) */
    double mag, mag_err;   /* -2.5 log10(flux) + MAGZP of the image (else phot.zeropoint); NaN when flux <= 0 */
    unsigned flags;        /* CLRED_SRC_* of the photometry */
} clred_lc_point;

/* One point per target per image, image by image (each file read once).
 * *points (n targets x n images, target-major within an image) is malloc'd
 * (free()). */
CLRED_API clred_status clred_lightcurve_files(clred_ctx *ctx, const char *const *paths, size_t npaths,
                                              const clred_lc_targets *targets, const clred_lightcurve_opts *opts,
                                              clred_lc_point **points, size_t *npoints);
/* The same on images in memory. */
CLRED_API clred_status clred_lightcurve_images(clred_ctx *ctx, const clred_image *images, size_t nimages,
                                               const clred_lc_targets *targets, const clred_lightcurve_opts *opts,
                                               clred_lc_point **points, size_t *npoints);
/* Writes the points as a FITS table and/or CSV (TARGET, IMAGE, MJD, X, Y,
 * FLUX, FLUX_ERR, MAG, MAG_ERR, FLAGS), atomically. */
CLRED_API clred_status clred_lc_write(const char *fits_path, const char *csv_path, const clred_lc_point *points,
                                      size_t n, int overwrite);

/* ---- stacking: registration, resampling and combination in one call */

typedef enum {
    CLRED_REGISTER_SHIFTS = 0, /* phase correlation (translations) */
    CLRED_REGISTER_STARS       /* star matching (clred_find_transforms): rotation and scale too */
} clred_register_method;

typedef struct {
    clred_register_method method; /* default SHIFTS */
    long ref_index;               /* reference frame (default 0); -1 = the median of the stack (SHIFTS only) */
    clred_grid grid;              /* default REFERENCE */
    clred_phasecorr_opts popts;   /* SHIFTS */
    clred_detect_opts dopts;      /* STARS: star detection (clred_detect_stars' defaults) */
    clred_match_opts mopts;       /* STARS */
    clred_resample_opts ropts;
    clred_combine_opts copts;
    int match_background;         /* match the resampled frames' backgrounds (clred_match_backgrounds_dev)
                                     before combining (default 0) */
    clred_bkgmatch_opts bkgmatch; /* default clred_bkgmatch_defaults() */
} clred_stack_opts;

CLRED_API clred_stack_opts clred_stack_defaults(void);

/* What the registration found, one entry per frame. */
typedef struct {
    size_t n;
    clred_transform *to_ref;      /* frame pixel -> reference pixel */
    clred_shift *shifts;          /* SHIFTS only, else NULL */
    clred_match_result *matches;  /* STARS only, else NULL */
    clred_grid_geometry geometry; /* the grid the frames were resampled onto */
    long failed;                  /* the frame that could not be registered, -1 if none */
} clred_alignment;

CLRED_API void clred_alignment_free(clred_alignment *a);

/* Registers the frames onto the reference, resamples them onto the grid and
 * combines them (opts NULL = defaults); the output header is the
 * reference's (frame 0's for the median) with the combine's NCOMBINE and
 * HISTORY, one HISTORY card per frame with its shift or star match and one
 * with the settings and the grid. Frames must share one shape. alignment may
 * be NULL; the caller frees a filled one with clred_alignment_free. On a
 * registration failure the message and alignment->failed name the frame
 * (phase correlation always gives a shift: judge it by its psr). */
CLRED_API clred_status clred_stack_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t n,
                                       const clred_stack_opts *opts, clred_combine_dev_result *out,
                                       clred_alignment *alignment);
/* The same from files (2-D images or frames of cubes; frames are numbered
 * over all inputs), each read once onto the device and freed once resampled;
 * messages and HISTORY name the file and frame. */
CLRED_API clred_status clred_stack_files(clred_ctx *ctx, const char *const *paths, size_t npaths,
                                         const clred_stack_opts *opts, clred_combine_result *out,
                                         clred_alignment *alignment);

/* ---- adaptive-optics cubes */

/* How the frames of a cube are registered before stacking. */
typedef enum {
    CLRED_ALIGN_NONE = 0,  /* no shifts: the plain sum */
    CLRED_ALIGN_PEAK,      /* brightest pixel of the 3x3-smoothed frame, parabolic sub-pixel fit (in open
                              loop this follows the brightest speckle: classic shift-and-add) */
    CLRED_ALIGN_CENTROID,  /* background-subtracted intensity-weighted centroid in a box around that peak */
    CLRED_ALIGN_PHASECORR  /* phase correlation of the whole frame (clred_measure_shifts) */
} clred_align_mode;

/* Where the saturation ceiling came from. */
typedef enum {
    CLRED_CEILING_OPTION = 0, /* opts.saturation */
    CLRED_CEILING_HEADER,     /* SATURATE keyword of the cube */
    CLRED_CEILING_ADC         /* 2^b - 1 for the smallest ADC depth b (8..16) holding the raw maximum */
} clred_ceiling_source;

typedef struct {
    clred_align_mode align;     /* default PEAK */
    int integer_shifts;         /* round shifts to whole pixels and move pixels without interpolation (default 0) */
    int reference_median;       /* 0: align on frame 0 (default); 1: on the median position (peak, centroid)
                                   or the median frame (phasecorr) */
    int centroid_box;           /* side of the centroid box in pixels, odd (default 15) */
    clred_interp interp;        /* sub-pixel shifts: default LANCZOS3 (FOURIER, BICUBIC, BILINEAR allowed) */
    clred_combine_method stack; /* SUM (default), MEAN or MEDIAN of the aligned frames; the plain stack uses the same */
    double saturation;          /* raw ceiling in ADU; 0 = SATURATE keyword, else the ADC depth (see above) */
    double saturation_margin;   /* raw values >= ceiling - margin count as saturated; < 0 = 1% of the ceiling
                                   (default -1: 164 ADU below 16383 for a 14-bit camera) */
    double hot_sigma, cold_sigma; /* bad-pixel thresholds, dark and temporal (default 5, 5) */
    int temporal_badpix;        /* also find pixels from the cube's per-pixel temporal median / MAD (default 1):
                                   hot / cold when the median leaves the 5x5 local median by hot / cold_sigma
                                   robust sigmas (5 frames or more), noisy when the MAD exceeds 3 times the
                                   local one (8 frames or more); only where no neighbour is bright (a star) */
    int repair;                 /* repair bad pixels from their neighbours (default 1) */
    int corner;                 /* corner regions of the flatness check, px (default 50; capped to a quarter) */
    int mesh;                   /* boxes across and down the coarse flatness mesh (default 4) */
    double flat_limit;          /* flat when corners and mesh differ by less than this many pixel sigmas (default 1) */
    const char *cube_name, *dark_name; /* for messages and HISTORY (NULL = "cube", "dark") */
} clred_cube_opts;

CLRED_API clred_cube_opts clred_cube_defaults(void);

/* One line of the per-frame table. Shifts follow clred_shift: the frame is the
 * reference moved by (+dx, +dy); x, y are the measured star position (NaN for
 * phasecorr and none). */
typedef struct {
    double dx, dy, x, y;
    double peak;        /* highest pixel of the dark-subtracted, repaired frame above its background */
    double raw_max;     /* highest raw value */
    size_t nsaturated;  /* raw pixels >= ceiling - margin */
    double background;  /* 3-sigma clipped median of the dark-subtracted frame */
    double noise;       /* its clipped standard deviation */
} clred_cube_frame;

/* Background flatness of the dark-subtracted temporal median frame: the four
 * corners (3-sigma clipped means, clred_image_stats) and a coarse mesh
 * (clred_background, unfiltered, sources masked), in units of the pixel noise
 * (the median of the corners' standard deviations). */
typedef struct {
    double corner_mean[4], corner_std[4]; /* bottom-left, bottom-right, top-left, top-right */
    size_t corner;                        /* corner side used */
    size_t mesh_w, mesh_h;
    double mesh_min, mesh_max;
    double noise, corner_departure, mesh_departure; /* (max - min) / noise */
    int flat;                                       /* both departures below flat_limit */
} clred_cube_flatness;

typedef struct {
    clred_image master;        /* aligned stack: sci, var, mask (SATURATED where any frame was) */
    clred_image plain;         /* the same stack without shifts */
    clred_cube_frame *frames;  /* nframes lines */
    size_t nframes, width, height;
    double master_peak, master_fwhm, master_x, master_y; /* above the master's background */
    double plain_peak, plain_fwhm, plain_x, plain_y;
    double tiptilt_rms_x, tiptilt_rms_y, tiptilt_rms; /* population std of dx, dy; sqrt of the sum of squares */
    double ceiling, threshold;   /* saturation ceiling and the level counted (ceiling - margin) */
    clred_ceiling_source ceiling_source;
    size_t nsaturated;           /* saturated raw values over all frames */
    size_t nsaturated_pixels;    /* pixels saturated in at least one frame */
    size_t nsaturated_bad;       /* of those, pixels also flagged bad (e.g. hot in the dark) */
    size_t nhot_dark, ncold_dark;                       /* from the dark */
    size_t nhot_temporal, ncold_temporal, nnoisy_temporal; /* from the cube, not already bad */
    size_t nrepaired;            /* bad pixels repaired per frame */
    clred_cube_flatness flatness;
} clred_cube_result;

CLRED_API void clred_cube_result_free(clred_cube_result *r);

/* Reduces a cube held in memory: frames are the raw frames (at least 2, one
 * shape), dark (NULL = none) an image of that shape. Saturation is counted on
 * the raw values; the dark is subtracted from every frame; bad pixels found
 * in the dark (clred_find_bad_pixels) and in the cube's temporal statistics are
 * repaired (clred_infill, median); saturated pixels are flagged, never
 * repaired; the frames are aligned (clred_resample) and stacked
 * (clred_combine_images, with saturated values used), and the plain stack is
 * made alongside. Fails (CLRED_ERR_INPUT) on a dark of another shape or a
 * ceiling below the data's median. */
CLRED_API clred_status clred_cube_reduce(clred_ctx *ctx, const clred_image *frames, size_t nframes, const clred_image *dark,
                               const clred_cube_opts *opts, clred_cube_result *out);

/* The same from files: the cube (NAXIS3 >= 2) and a dark image or cube (a
 * cube is median-combined into a master dark first); dark_path may be NULL. */
CLRED_API clred_status clred_cube_reduce_files(clred_ctx *ctx, const char *cube_path, const char *dark_path,
                                     const clred_cube_opts *opts, clred_cube_result *out);

/* Per-pixel temporal median and raw MAD (median |v - median|) of the finite
 * values across frames, on the device (kernels/cube.cl). With more than 127
 * frames, 127 evenly spaced ones are used. No finite value gives NaN. median
 * and mad are width * height, caller-owned. */
CLRED_API clred_status clred_temporal_stats(clred_ctx *ctx, const clred_image *frames, size_t nframes, float *median,
                                  float *mad);

/* Peak and FWHM of the brightest source of img above background level bkg
 * (host): the highest finite pixel, and the mean of the full widths at half
 * that peak along the row, the column and both diagonals (linear
 * interpolation between pixels). NaN FWHM when the profile never drops to half. */
CLRED_API clred_status clred_psf_measure(const clred_image *img, double bkg, double *x, double *y, double *peak,
                               double *fwhm);

/* Writes the per-frame table as CSV (frame,dx,dy,x,y,peak,raw_max,nsaturated,
 * background,noise), atomically. */
CLRED_API clred_status clred_cube_table_write(const char *csv_path, const clred_cube_result *r, int overwrite);

/* ---- a night: clred run */

/* The night recipe (clred_night_run): every raw frame of a night is
 * classified by its header, masters are built per exposure (darks) and per
 * filter (flats), each science frame goes up to the device once and is
 * calibrated, cleaned of cosmic rays and background-subtracted there (the
 * background model is kept), and the frames of each (object, filter) group are
 * aligned and stacked. Every product is written atomically beside a
 * manifest (manifest.json: inputs with sizes and mtimes, outputs, the
 * parameters, the software version, timings per stage, what was skipped and
 * why), which a rerun compares against to finish only what is missing.
 *
 * Output layout under outdir: masters/bias.fits, masters/dark_<t>s.fits (per
 * second, from the darks of exposure t), masters/flat_<filter>.fits,
 * calibrated/<frame>.fits, background/<frame>.fits (the model product),
 * stacks/<object>_<filter>.fits (and _bkg.fits: its final background, when
 * asked for), manifest.json (manifest.shard-<i>-of-<n>.json
 * for a shard). */

/* How a frame is classified: the first of the keywords present names it. */
typedef enum {
    CLRED_FRAME_UNKNOWN = 0,
    CLRED_FRAME_BIAS,    /* bias, zero */
    CLRED_FRAME_DARK,    /* dark */
    CLRED_FRAME_FLAT,    /* flat, flatfield, dome flat, sky flat, twilight flat */
    CLRED_FRAME_SCIENCE  /* object, science, light */
} clred_frame_kind;

/* Progress line of a night (the library never prints; the CLI passes one). */
typedef void (*clred_progress_fn)(void *user, const char *line);

/* What the rest of a night will launch, known once its frames are scanned and
 * planned, before any master is built (clred_night_opts.planned): enough for
 * a caller to compile those kernels ahead (clred_compile_ahead_pays). */
typedef struct {
    size_t width, height; /* the raw science frames' size (the first group of this run's) */
    int quality;          /* science frames' quality is measured */
    int align;            /* a group of this run has two or more frames to register and resample (its stack
                             may still turn out unchanged since a previous run) */
} clred_night_plan;
typedef void (*clred_night_planned_fn)(void *user, const clred_night_plan *plan);

struct clred_subtract_job; /* difference imaging on files (below) */

typedef struct {
    /* Header keywords, comma-separated lists tried in order (as ccdproc's
     * ImageFileCollection users set them). */
    const char *type_keys;    /* default "IMAGETYP,OBSTYPE" */
    const char *exptime_keys; /* default "EXPTIME,EXPOSURE" */
    const char *filter_keys;  /* default "FILTER,INSFLNAM" (no keyword: filter "none") */
    const char *object_keys;  /* default "OBJECT" (none: object "field") */
    clred_calib_opts calib;   /* clred_calib_defaults() */
    clred_combine_opts bias_combine; /* default: mean */
    clred_combine_opts dark_combine; /* default: median-centred 3-sigma clipping with a MAD spread */
    clred_combine_opts flat_combine; /* default: the same, with multiplicative scaling (lamp drifts) */
    int cosmic;               /* remove cosmic rays from science frames (default 1) */
    clred_cosmic_opts cosmic_opts; /* clred_cosmic_defaults(), with the calibration's variance as the noise
                                      model and no saturation level (SATURATED pixels are masked already) */
    int background;           /* subtract the mesh background and write its model (default 1): background/<frame>.fits
                                 is a clred_bkg_model_write product (mesh, RMS mesh, interpolation settings), so
                                 clred_bkg_model_restore of it on calibrated/<frame>.fits gives the unsubtracted
                                 frame to float32 rounding */
    clred_bkg_opts bkg_opts;  /* clred_bkg_defaults() */
    int bkg_save_map;         /* the background products carry the full map too (BKGMAP; default 0) */
    int coadd_background;     /* subtract a final background from each stack (clred_coadd_background) and write
                                 its model with the full map as stacks/<object>_<filter>_bkg.fits (default 0) */
    clred_bkg_opts coadd_bkg_opts; /* clred_coadd_bkg_defaults() (256-pixel boxes, sources masked) */
    clred_stack_opts stack;   /* clred_stack_defaults() with additive scaling and clipping as dark_combine */
    int quality;              /* measure each science frame's quality (clred_measure_quality) into the manifest
                                 (default 1) */
    clred_quality_limits quality_limits; /* frames outside them are left out of their stack (default: none) */
    int strict;               /* an unreadable or unclassifiable frame is fatal (default 0: reported, left out) */
    int overwrite;            /* rebuild every product, ignoring the previous manifest (default 0) */
    size_t shard_index, shard_count; /* process groups g with g % shard_count == shard_index (default 0 of 1) */
    int stream;               /* read ahead and write on threads beside the device work (default 1) */
    size_t read_ahead;        /* frames read ahead (default 2) */
    clred_progress_fn progress; /* NULL = silent */
    void *progress_user;
    /* Difference imaging of every stack against a reference (clred_subtract_files): the stack is
     * registered onto the reference by star matching (stack.dopts, stack.mopts) and resampled onto its
     * grid (stack.ropts), then
     * subtracted; products difference/<object>_<filter>_aligned.fits (the stack on the reference's
     * grid), difference/<object>_<filter>.fits (the difference MEF) and
     * difference/<object>_<filter>_candidates.csv. A stack that cannot be subtracted (no overlap, no
     * PSF stars) is reported with the reason, not fatal. */
    const char *subtract_reference;            /* reference image; NULL = no subtraction (default) */
    const struct clred_subtract_job *subtract; /* its options; NULL = clred_subtract_job_defaults(); the
                                                  output fields are the recipe's, except that a non-NULL
                                                  alerts asks for ZTF Avro alert packets in
                                                  difference/<object>_<filter>_alerts/ (written with the
                                                  difference) */
    clred_night_planned_fn planned; /* called once, when the night has science frames to reduce, after its
                                       plan and before its masters; must not change anything the night
                                       reads (NULL = none) */
    void *planned_user;
} clred_night_opts;

CLRED_API clred_night_opts clred_night_defaults(void);

/* One product of the night (or one input left out). */
typedef struct {
    char *path;   /* the product's path (or the input's) */
    char *what;   /* "master bias", "calibrated", "background", "stack", ... (inputs: "unreadable", ...) */
    int written;  /* 1 written now, 0 skipped */
    char *reason; /* why it was skipped or left out (NULL when written) */
} clred_night_item;

/* Stages whose wall time the report and the manifest carry. */
enum { CLRED_NIGHT_CLASSIFY = 0, CLRED_NIGHT_MASTERS, CLRED_NIGHT_SCIENCE, CLRED_NIGHT_STACKS,
       CLRED_NIGHT_DIFFERENCE, CLRED_NIGHT_NSTAGES };

typedef struct {
    size_t ninputs, nbias, ndark, nflat, nscience; /* frames classified */
    size_t ngroups, ngroups_here;  /* independent groups, and those of this shard */
    clred_night_item *products;    /* every product of this shard's groups */
    size_t nproducts, nwritten, nskipped;
    clred_night_item *left_out;    /* inputs not used, with the reason (unreadable, unknown type, ...) */
    size_t nleft_out;
    double stage_s[CLRED_NIGHT_NSTAGES];
    double read_s, write_s;        /* host time reading inputs and writing products (on their threads) */
    double wall_s;
    clred_timing timing;           /* device work of the run (clred_ctx_timing) */
    /* Whole images copied between host and device (zero-copy views and
     * mapped planes are no copies): a frame read goes up at most once, a
     * product written comes down once. timing counts every transfer,
     * statistics and other small results included. */
    uint64_t image_uploads, image_downloads;
    size_t frames_in;              /* images read for the device: raw frames, unchanged masters and calibrated
                                      frames reused, calibrated frames read back for a stack */
    size_t products_out;           /* image products brought down to be written (the background model
                                      products are meshes, not images: not counted) */
    size_t stacks_read_back;       /* stacks whose frames would not fit the device's budget: their calibrated
                                      frames were written, then read back from the files */
    char *manifest;                /* path of the manifest written */
} clred_night_report;

/* Starts compiling, in the background, the kernel programs a night with
 * these options (NULL = defaults) will use, and returns at once: a caller
 * with other work before clred_night_run (reading, simulating) overlaps a
 * first run's compilation with it. Optional; clred_night_run starts it
 * itself otherwise. The context may be used meanwhile; the end of its
 * night, and its destruction, wait for what is still compiling. */
CLRED_API clred_status clred_night_prepare(clred_ctx *ctx, const clred_night_opts *opts);
/* Makes ctx build the kernels a night with this plan launches (its width and
 * height are not used) in the programs that night builds them in, without
 * building anything now: a night builds families it always uses together as
 * one program, and a process compiling kernels ahead for a night (clred run's
 * helper) shares compiled kernels with it only through the same programs. */
CLRED_API void clred_night_use_programs(clred_ctx *ctx, const clred_night_plan *plan);

/* Reduces the night in inputs (raw FITS files) into outdir (created if
 * needed). opts NULL = defaults; report (may be NULL) is filled even on
 * failure as far as the run went, and freed with clred_night_report_free.
 * A frame that cannot be read is left out and named in report->left_out
 * (CLRED_ERR_INPUT with strict, before anything is written). */
CLRED_API clred_status clred_night_run(clred_ctx *ctx, const char *const *inputs, size_t n, const char *outdir,
                                       const clred_night_opts *opts, clred_night_report *report);
CLRED_API void clred_night_report_free(clred_night_report *r);
/* The kind of frame a type value names ("Dome Flat" -> FLAT); UNKNOWN if none. */
CLRED_API clred_frame_kind clred_frame_kind_parse(const char *value);


/* ---------------------------------------------------- difference imaging */

/* A pixel-grid PSF: size x size (size odd), unit sum, its centre on pixel
 * (size / 2, size / 2). It may vary over the image (PSFEx-style): then each
 * pixel is a polynomial of order 1 or 2 in the position, the PSF at (x, y)
 * being sum_k T_k basis_k with the terms T = 1, u, v, u^2, u v, v^2 (the
 * first nterms of them), u = (x - x0) / xscale, v = (y - y0) / yscale (u and
 * v run over [-1, 1] across the image it was measured on). basis_0 has unit
 * sum, the others sum to 0, so every evaluation has unit sum. */
#define CLRED_PSF_WING_RINGS 32 /* rings of a PSF model's wing-error profile */
typedef struct clred_psf_s {
    size_t size;
    float *data;        /* size * size, row-major: the PSF at (x0, y0) (= basis_0) */
    double fwhm;        /* px: 2 sqrt(area above half maximum / pi) of the model (at (x0, y0)) */
    double ellipticity; /* 1 - b / a from the second moments inside 3 FWHM (at (x0, y0)) */
    size_t nstars;      /* stars averaged (0 when read or given) */
    int order;          /* spatial variation: 0 = constant (basis NULL, nterms 1), 1 or 2 */
    size_t nterms;      /* (order + 1) (order + 2) / 2 (0 or 1 for a constant PSF) */
    float *basis;       /* nterms * size * size, term after term; NULL when order is 0 */
    double x0, y0, xscale, yscale; /* the polynomials' centre and scale, px */
    double corner_fwhm[4], corner_ellipticity[4]; /* at the image corners (x0 -+ xscale, y0 -+ yscale):
                                                     (0, 0), (W-1, 0), (0, H-1), (W-1, H-1); the centre's when
                                                     constant */
    double model_err;   /* the model's shape error as a matched filter sees it, relative to a star's
                           filtered peak (clred_psf_model_measure estimates it from the stars' residuals;
                           clred_psf_write keeps it as PSFERR and clred_psf_read restores it; 0 when
                           given, analytic or read from a file without PSFERR): ZOGY's S_corr counts it
                           as noise */
    /* The model's wing error, ring by ring: model_err's measure (the filtered residual relative to
       the filtered peak) at the lags in ring k (|d| / wing_ring_px rounded = k), beyond the core
       (|d| > max(1, fwhm), where model_err counts it) and 0 within it. ZOGY adds every source's wing
       error to V(S) (clred_zogy_opts). clred_psf_write keeps it as PSFWRING and PSFWE1..32 and
       clred_psf_read restores it. wing_ring_px 0: no profile (given, analytic, or read from a file
       without it). */
    double wing_err[CLRED_PSF_WING_RINGS];
    double wing_ring_px;
    /* A measured varying model's terms' relative covariance, nterms x nterms (row-major, at most 6 x 6):
       the inverse of its fit's normal matrix (sum over the stars kept of weight T T^T) over that
       inverse's (0, 0) element, so that T^T term_cov T is the noise variance of the model evaluated
       where the terms are T against that at the polynomials' centre. wing_err is measured from the
       stars' residuals, which a varying fit follows (about its error near the centre):
       clred_psf_eval scales it by the square root of that ratio (at least 1); model_err stays. All 0
       when unknown (constant, given, read from a file): no scaling. */
    double term_cov[36];
} clred_psf;

CLRED_API void clred_psf_free(clred_psf *psf);
/* The PSF at (x, y) (0-based px) of a varying model, as a constant one (unit
 * sum, its FWHM and ellipticity measured); a copy of psf when it is constant.
 * Free with clred_psf_free. */
CLRED_API clred_status clred_psf_eval(const clred_psf *psf, double x, double y, clred_psf *out);
/* A copy (free with clred_psf_free). */
CLRED_API clred_status clred_psf_copy(const clred_psf *psf, clred_psf *out);
/* A PSF from any w x h array: its centroid is moved to the centre pixel by a
 * sub-pixel (bicubic) shift when off by more than 0.01 px, it is cut to at
 * most max_size (odd; 0 = no cut) around it, negative wings are kept and
 * the whole is scaled to unit sum. */
CLRED_API clred_status clred_psf_from_array(const float *data, size_t w, size_t h, size_t max_size, clred_psf *psf);
/* Reads a PSF file (FITS): a 2-D image is a constant PSF (see
 * clred_psf_from_array for max_size); a cube of nterms planes (3 or 6) with
 * PSFORDER (1 or 2), PSFX0, PSFY0, PSFXSCL and PSFYSCL in the header is a
 * varying model, as clred_psf_write writes one (its planes cut to max_size
 * around their centre, nothing resampled). */
CLRED_API clred_status clred_psf_read(const char *path, size_t max_size, clred_psf *psf);
/* Writes a PSF: a constant one as a 2-D image, a varying one as the cube of
 * its basis images with PSFORDER, PSFNTERM, PSFX0, PSFY0, PSFXSCL, PSFYSCL
 * and the FWHM and ellipticity at the centre and the corners (PSFFWHM,
 * PSFELLIP, PSFFWHM1..4, PSFELL1..4) in the header. */
CLRED_API clred_status clred_psf_write(const char *path, const clred_psf *psf, int overwrite);

typedef struct {
    size_t size;          /* model size, odd px (default 25) */
    double thresh;        /* detection threshold in per-pixel RMS (default 5) */
    double min_snr;       /* smallest flux / flux_err of a star used (default 50) */
    double isolation;     /* no other source within this many px (default 0 = 3/4 of the model size) */
    double saturation;    /* stars with a pixel at or above this are left out (0 = mask bit only) */
    int max_stars;        /* brightest usable stars averaged (default 50; a varying model takes up to
                             max_stars x (order + 1)) */
    uint16_t ignore_bits; /* default CLRED_MASK_UNUSABLE */
    int order;            /* spatial variation of the model: 0 = constant (default), 1 or 2 = each pixel a
                             polynomial of that order in (x, y); lowered while fewer than
                             CLRED_PSF_STARS_PER_TERM stars per term are left */
    int select_order;     /* 1 = the order used is the one up to order whose model best predicts the stars
                             left out of its fit (see clred_psf_model_measure); 0 = order as given, lowered
                             only as above (default 1) */
} clred_psf_opts;

/* A varying model of nterms terms needs this many stars per term (order 1:
 * 15, order 2: 30); with fewer the order is lowered (order 0: 3 stars). */
#define CLRED_PSF_STARS_PER_TERM 5

CLRED_API clred_psf_opts clred_psf_defaults(void);
/* Measures the PSF of an image from its isolated, unsaturated, unblended
 * stars: each star's stamp, less its local sky (the clipped mode of an
 * annulus from size to size + 6 px, less the pixels within 3 FWHM of other
 * sources), is recentred on its centroid by a sub-pixel bicubic shift,
 * scaled to unit flux, and the model is the stamps' pixel-wise mean weighted
 * by their S/N squared, of the values within 4 robust sigma of the median
 * (pixels within 3 FWHM of another source, up to half way to it, left
 * out); its wings beyond 2 FWHM are then a Moffat profile fitted from 1 to 2
 * FWHM (elliptical radii from the core's second moments, blended in over
 * half a FWHM), unless that profile misses the model's ring means there by
 * more than 10 % (a diffraction-limited PSF keeps its own). With opts->order > 0 each pixel is instead fitted as a polynomial
 * of the stars' positions (least squares weighted by the stars'
 * S/N squared; pixels within 3 FWHM of another source, up to half way to
 * it, left out; beyond 3 FWHM of the centre a constant), each star's stamp
 * is recentred and scaled by the offset and flux that fit the model to its
 * core, stars whose stamps differ from the model by more than 4 robust
 * sigma of all stars' differences (and twice their median) are left out,
 * and the fit is repeated (5 fits at most); with opts->select_order the
 * constant model and each order up to opts->order are fitted, and an order
 * replaces a lower one only when its model predicts the stars left out of
 * it better (each star's filtered residual against the model fitted
 * without it, its exact leave-one-out by the fit's leverage, less the
 * star's own noise: over the better measured half of the stars, the median
 * of the star-by-star differences is negative), so that a variation the
 * stars do not support is not fitted to their noise. psf->model_err is the model's
 * error as a matched filter sees it (each star's stamp against the model
 * left without it, filtered with the model out to one FWHM, relative to the
 * filtered peak, less the stamps' noise from the VAR plane, or from the sky
 * annulus' spread without one; the median over the better measured half
 * of the stars). Detection runs on the device; the stamps on the host. */
CLRED_API clred_status clred_psf_model_measure(clred_ctx *ctx, const clred_image *img, const clred_psf_opts *opts,
                                               clred_psf *psf);
CLRED_API clred_status clred_psf_model_measure_dev(clred_ctx *ctx, const clred_dimage *img,
                                                   const clred_psf_opts *opts, clred_psf *psf);

/* ---- PSF-fit photometry */

/* Flags of a PSF fit (clred_psf_phot.flags), beside CLRED_SRC_EDGE (the fit
 * disc leaves the image), CLRED_SRC_MASKED (an unusable pixel within one FWHM
 * of the source) and CLRED_SRC_BLENDED (fitted together with neighbours). */
#define CLRED_SRC_PSF_FAILED 0x40u /* no fit (too few usable pixels, singular system): flux NaN */
#define CLRED_SRC_PSF_FIXED  0x80u /* position fit asked for but not done (flux not significant, or the fit
                                      ran further than max_shift): measured at the given position */

typedef struct {
    double fit_radius;     /* pixels within this of a source are fitted, px (0 = 2 x the PSF's FWHM, at
                              least 3, at most half the PSF's size; default 0) */
    int fit_sky;           /* fit a constant local sky with the fluxes (default 1; 0 = the image's
                              background is 0, e.g. a difference image) */
    int fit_position;      /* fit positions too (linearised iterations; default 1); 0 = forced photometry */
    int max_iters;         /* position iterations (default 20) */
    double max_shift;      /* a fitted position further than this from its start is put back and held, px
                              (default 1.5) */
    double min_snr_position; /* a source's position is fitted only when |flux| has this S/N (default 3; a fading
                                source's flux on a difference is negative) */
    double group_radius;   /* sources closer than this are fitted together, px (0 = fit_radius + the PSF's
                              FWHM; default 0); -1 = each alone */
    double zeropoint;      /* mag = -2.5 log10(flux) + zeropoint (default 25) */
    uint16_t ignore_bits;  /* default CLRED_MASK_UNUSABLE */
    double noise_rms;      /* per-pixel noise when the image has no VAR plane; 0 (default): unit weights,
                              the errors scaled by the residuals' scatter and chi2_dof NaN */
} clred_psf_phot_opts;

/* Most sources fitted together: a source and its nearest PSF_MAX_GROUP - 1
 * neighbours within group_radius (further ones are left out of its fit). */
#define CLRED_PSF_MAX_GROUP 6

typedef struct {
    double x, y;           /* fitted position (the given one when it was not fitted) */
    double x_err, y_err;   /* NaN when not fitted */
    double flux, flux_err; /* flux of the unit-sum PSF model; error from the fit's covariance */
    double sky;            /* fitted local sky per pixel (0 when not fitted) */
    double chi2_dof;       /* weighted chi^2 per degree of freedom of the (group's) fit */
    size_t npix;           /* pixels fitted */
    size_t nfit;           /* sources in the fit (1 + neighbours) */
    double mag, mag_err;   /* NaN when flux <= 0 */
    unsigned flags;        /* CLRED_SRC_EDGE, _MASKED, _BLENDED, _PSF_FAILED, _PSF_FIXED */
} clred_psf_phot;

CLRED_API clred_psf_phot_opts clred_psf_phot_defaults(void);

/* PSF-fit photometry at n positions (0-based pixels) on the device, one
 * work-item per source: the source, its close neighbours (group_radius) and
 * a constant sky are fitted by weighted least squares (weights 1 / VAR,
 * masked and NaN pixels left out) over the pixels within fit_radius of any
 * of them; the PSF (unit sum) is moved to sub-pixel positions by bicubic
 * interpolation. A varying PSF is evaluated at each member's start position
 * on the device (the basis cube goes there whole). With fit_position the positions follow by Gauss-Newton
 * iterations (steps of at most 0.5 px). out has n entries (caller's). */
CLRED_API clred_status clred_psf_photometry_dev(clred_ctx *ctx, const clred_dimage *img, const clred_psf *psf,
                                                const double *x, const double *y, size_t n,
                                                const clred_psf_phot_opts *opts, clred_psf_phot *out);
CLRED_API clred_status clred_psf_photometry(clred_ctx *ctx, const clred_image *img, const clred_psf *psf,
                                            const double *x, const double *y, size_t n,
                                            const clred_psf_phot_opts *opts, clred_psf_phot *out);

/* clred_phot_write's catalog with the PSF fit's columns after the aperture's:
 * PSF_X, PSF_Y, PSF_FLUX, PSF_FLUX_ERR, PSF_MAG, PSF_MAG_ERR, PSF_SKY,
 * PSF_CHI2, PSF_FLAGS (psf has n entries, row for row). */
CLRED_API clred_status clred_phot_write_psf(const char *fits_path, const char *csv_path, const clred_phot *list,
                                            const clred_psf_phot *psf, size_t n, const clred_header *header,
                                            int overwrite);

typedef struct {
    double fn, fr;              /* flux zero points of the new and the reference image (default 1, 1): a
                                   source of flux f in the new image is f fr / fn in the reference */
    double sigma_n, sigma_r;    /* background noise per pixel; 0 = sqrt of the median of the VAR plane,
                                   else a clipped standard deviation of the image (default 0) */
    double astrom_sigma_x, astrom_sigma_y; /* registration noise, px (default 0) */
    int subtract_background;    /* 1 = subtract each image's clipped median first (default 1) */
    uint16_t ignore_bits;       /* input pixels filled with 0 and flagged (default CLRED_MASK_UNUSABLE) */
    int grow;                   /* unusable pixels are grown by this radius (a square) in the outputs'
                                   masks; -1 = the larger PSF's FWHM, rounded up, and SATURATED by the
                                   larger PSF's half size (default -1) */
    int renormalize;            /* 1 = divide S_corr by its robust standard deviation (1.4826 MAD of the
                                   unmasked pixels) and scale the flux variance to match: for noise that
                                   the variance planes understate, e.g. the correlated noise of resampled
                                   mosaics (default 0) */
    size_t tile_size;           /* core of the tiles, px; 0 = the whole image when its padded planes fit the
                                   device budget and its transforms cost less than 1024-px tiles' (the PSFs'
                                   11 of 20 transforms are done once per call, so tiles win from about
                                   1.7k px on), else 1024 (default 0) */
    size_t tile_border;         /* overlap each side of a core, px; 0 = max(40, the larger PSF's size) */
    clred_fft_backend backend;  /* default DEFAULT */
    double psf_err_n, psf_err_r; /* relative error of each PSF model (its shape, as a matched filter sees it):
                                   V(S) gains psf_err_n^2 S_N^2 + psf_err_r^2 S_R^2, so a static star's
                                   residual from a PSF that is off by that fraction is not a detection;
                                   NaN = the PSF's model_err (measured PSFs: estimated; given ones: 0)
                                   and its wing_err profile: V(S) also gains every source's wing error,
                                   the sum over the pixels x' of S_N(x')^2 wing_err_n(|x - x'|)^2 / A
                                   (and S_R's), A a point source's sum of (S_N / its peak)^2; a value
                                   given here is a constant error, without the wings (default NaN) */
    int psf_variation;          /* varying PSFs (order > 0): 1 = V(S) also gains what filtering each tile with
                                   both models at its core's centre leaves of a source imaged with the
                                   models at its own position, S_N^2 <v_n^2> - 2 S_N S_R <v_n v_r> +
                                   S_R^2 <v_r^2>, v a model's variation from the centre as a matched filter
                                   sees it (the models' own errors only: not with psf_err_n/r given). It
                                   takes the false candidates of a field whose FWHM varies by 20 % from
                                   50 to 4 in 16 simulated 256 px pairs, but loses transients on galaxies
                                   (589 -> 581 of 614; a galaxy's filtered light counts as a point
                                   source's) (default 0) */
} clred_zogy_opts;

/* Core of the tiles when a PSF varies (psf->order > 0) and tile_size is 0:
 * each tile takes both PSFs evaluated at its core's centre. */
#define CLRED_ZOGY_VARYING_TILE 256

CLRED_API clred_zogy_opts clred_zogy_defaults(void);

typedef struct {
    clred_dimage *diff;   /* D / F_D: the proper difference in the new image's flux units (its PSF is pd),
                             VAR from both inputs' variance planes, MASK: the inputs' bits, grown, with NO_DATA
                             where either was unusable */
    clred_dimage *scorr;  /* S_corr: S / sqrt(V(S_N) + V(S_R) + V_ast + V_psf), in sigma; MASK as diff */
    clred_dimage *flux;   /* S / F_S: the PSF-fit flux of a point source at each pixel, VAR its variance */
    clred_psf pd;         /* the PSF of D (unit sum; with varying PSFs the one of the tile nearest the centre) */
    double f_d, f_s;      /* ZOGY's F_D and F_S (with varying PSFs: of the tile nearest the centre) */
    double sigma_n, sigma_r; /* the background noise used */
    double bkg_n, bkg_r;  /* the levels subtracted (0 when not asked) */
    double d_off;         /* the level of D taken off (3-sigma clipped mean): the differential background
                             left (mean over tiles) */
    double scorr_scale;   /* the robust standard deviation of S_corr (before renormalising, if asked) */
    size_t ntiles;        /* tiles the image was processed in */
    double psf_err_n, psf_err_r; /* the PSF-model errors counted in V(S) (opts or the PSFs' model_err) */
    double wing_err_n, wing_err_r; /* the largest wing error counted in V(S) (0: no wing term) */
} clred_zogy_result;

CLRED_API void clred_zogy_result_free(clred_zogy_result *r);
/* ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016) of a reference
 * from a new image on the same pixel grid, given each one's PSF: D, P_D, S and
 * S_corr with the source-noise term from the variance planes (their median
 * where absent) and the astrometric term, the flux map and its variance. A
 * constant differential background (D's clipped mean) is taken off D and S. The
 * images are zero-padded by the PSF size so the cyclic FFTs never wrap data
 * onto data; unusable pixels (NaN, ignore_bits) are filled with 0 before any
 * FFT and flagged NO_DATA in the outputs, grown by opts->grow. Large images
 * go through overlapping tiles; the levels, the noise and the differential
 * background (the mean of the tiles' levels of D) are the whole image's.
 * Varying PSFs (order > 0) are evaluated at each tile's core centre, and
 * their kernels made per tile (CLRED_ZOGY_VARYING_TILE). */
CLRED_API clred_status clred_subtract_zogy_dev(clred_ctx *ctx, const clred_dimage *new_img, const clred_dimage *ref,
                                               const clred_psf *psf_new, const clred_psf *psf_ref,
                                               const clred_zogy_opts *opts, clred_zogy_result *out);
/* The same on host images; the result's images are device images (download
 * them with clred_dimage_download). */
CLRED_API clred_status clred_subtract_zogy(clred_ctx *ctx, const clred_image *new_img, const clred_image *ref,
                                           const clred_psf *psf_new, const clred_psf *psf_ref,
                                           const clred_zogy_opts *opts, clred_zogy_result *out);

/* ---- Alard-Lupton PSF-matched subtraction (HOTPANTS-like) */

typedef enum {
    CLRED_AL_CONVOLVE_AUTO = 0, /* the sharper image (smaller FWHM) is convolved to match the broader */
    CLRED_AL_CONVOLVE_REF,      /* HOTPANTS -c t */
    CLRED_AL_CONVOLVE_NEW       /* HOTPANTS -c i */
} clred_al_convolve;

typedef enum {
    CLRED_AL_NORM_REF = 0, /* the difference in the reference's photometric system (HOTPANTS -n t) */
    CLRED_AL_NORM_NEW      /* in the new image's */
} clred_al_normalize;

#define CLRED_AL_MAX_GAUSS 4

typedef struct {
    int ngauss;                              /* Gaussians of the basis (default 3, at most CLRED_AL_MAX_GAUSS) */
    double gauss_scale[CLRED_AL_MAX_GAUSS];  /* their sigmas in units of the matching sigma
                                                sqrt(|sigma_broad^2 - sigma_sharp^2|), at least 0.5 px
                                                (default 0.7, 1.5, 3.0) */
    int gauss_deg[CLRED_AL_MAX_GAUSS];       /* polynomial degree of each Gaussian (default 6, 4, 2) */
    int half_width;                          /* kernel half-width, px; 0 = 3 x the larger FWHM (default 0) */
    int fit_half;                            /* half-size of a stamp's fitted box; 0 = the kernel's (default 0) */
    int kernel_order;                        /* spatial order of the kernel, 0..3 (default 2); lowered while
                                                fewer than 3 stamps per spatial term are left */
    int select_order;                        /* 1 = the order used is the one up to kernel_order that best
                                                predicts stamps left out of the fit (5-fold cross-validation
                                                over the stamps); 0 = kernel_order as given (default 1) */
    int bg_order;                            /* spatial order of the differential background, 0..2 (default 1) */
    clred_al_convolve convolve;              /* default AUTO */
    clred_al_normalize normalize;            /* default REF */
    double fwhm_new, fwhm_ref;               /* px; 0 = the PSFs' (then PSFs are needed) */
    double t_lower, t_upper, i_lower, i_upper; /* valid ranges of the reference (t) and new image (i), raw
                                                  values as HOTPANTS -tl/-tu/-il/-iu: a pixel outside is
                                                  unusable (default -inf, +inf) */
    uint16_t ignore_bits;                    /* unusable input mask bits (default CLRED_MASK_UNUSABLE) */
    uint16_t fit_ignore_bits;                /* mask bits that leave a pixel out of the kernel's fit only: no
                                                stamp is centred on such a pixel and the fit takes nothing
                                                that depends on it, as on an unusable one, but it is
                                                convolved, subtracted and flagged only with its own bits
                                                (default CLRED_MASK_NOFIT) */
    int subtract_background;                 /* 1 = each image's median is taken off first (default 1) */
    int max_stamps;                          /* stamps kept, brightest per region of a grid (default 150) */
    double stamp_snr;                        /* smallest flux / flux_err of a stamp star (default 10) */
    double ksum_clip, fom_clip;              /* stamp rejection (default 3, 3): a stamp's kernel sum in robust
                                                sigmas of the stamps'; its chi^2 in standard deviations of
                                                that the noise and the fit's model error common to the stars
                                                predict */
    int max_iters;                           /* rounds of figure-of-merit rejection (default 3) */
    int block;                               /* the kernel is evaluated once per block x block px (default 16) */
    int kernel_grid;                         /* kernel images at grid x grid positions (default 3) */
    int decorrelate;                         /* 1 = also the decorrelated difference (DMTN-021; default 0) */
    clred_fft_backend backend;               /* for the decorrelation (default DEFAULT) */
    int sky_refit;                           /* 1 = the differential background re-fitted on D's own sky
                                                after the convolution (a clipped median per cell of a 4 x 4
                                                grid, a polynomial of bg_order through them), since the
                                                stamps' fit, around bright stars only, trades it against the
                                                kernel's wings; 0 = the stamps' background as fitted
                                                (HOTPANTS) (default 1) */
    unsigned omit_planes;                    /* CLRED_AL_WRITE_CONV and/or CLRED_AL_WRITE_SCORE: those planes
                                                are not computed (the result's conv / score NULL; score_std
                                                is measured all the same; SCORE is made all the same
                                                with sky_refit, which reads it) (default 0: both made) */
} clred_al_opts;

CLRED_API clred_al_opts clred_al_defaults(void);

/* One term of the kernel solution: the kernel at (x, y) is
 * sum over terms of coeff * P(x, y) * G_gauss(u, v) u^deg_u v^deg_v, where P is
 * the spatial monomial xs^sx ys^sy (xs, ys: x, y scaled to [-1, 1] over the
 * image); gauss = -1 is the differential background's monomial. Basis 0 has
 * unit sum; every other basis function sums to 0 (the kernel sum is the
 * coefficient of basis 0, held constant over the image). */
typedef struct {
    int gauss, deg_u, deg_v, sx, sy;
    double sigma; /* px (0 for the background) */
    double coeff;
} clred_al_term;

typedef struct clred_al_kerr clred_al_kerr; /* opaque: the kernel fit's error (clred_al_candidates_kernel) */

typedef struct {
    clred_dimage *diff;    /* D = new - reference convolved to match (either way round), in the chosen
                              photometric system; VAR: both inputs' variances through the kernel (VAR
                              convolved with K^2); MASK: both inputs' bits, unusable ones grown by the kernel
                              footprint, NO_DATA (and NaN) where the kernel met an unusable pixel, EDGE|NO_DATA
                              within the kernel's half-width of the border */
    clred_dimage *conv;    /* the convolved image (plus the background), in the unconvolved image's system;
                              NULL with omit_planes CONV */
    clred_dimage *score;   /* D / sqrt(VAR) (the decorrelated one when decorrelate), MASK as diff; NULL with
                              omit_planes SCORE and no sky_refit */
    clred_dimage *decorr;  /* the decorrelated difference (VAR, MASK), or NULL */
    clred_dimage *detect;  /* the detection image: the (decorrelated) difference filtered with its PSF over
                              its noise, sum P D / sqrt(VAR sum P^2), in sigma (a point source's PSF-fit S/N
                              where the noise is white, i.e. after decorrelation); NULL without PSFs */
    clred_psf psf_diff;    /* the PSF of the difference the candidates use: the unconvolved image's (through
                              the decorrelation kernel when decorrelated); a varying model when that image's
                              PSF is one (each basis image through the kernel), so that candidates are
                              fitted with the PSF where they lie; empty when no PSF was given */
    clred_al_term *terms;  /* the solution */
    size_t nterms;
    float *kernel_images;  /* kernel_grid^2 images of ksize^2, row-major grid, at kernel_x/kernel_y */
    double *kernel_x, *kernel_y;
    int kernel_grid;
    size_t ksize;          /* 2 half_width + 1 */
    int convolved_ref;     /* 1: the reference was convolved; 0: the new image */
    double ksum;           /* kernel sum (flux ratio unconvolved / convolved) */
    double photnorm_scale; /* what D was divided by (ksum, or 1) */
    clred_al_kerr *kernel_error; /* the kernel fit's error, propagated to DETECT at candidates by
                                    clred_al_candidates_kernel; NULL without PSFs */
    double sigma_match;    /* px */
    double bkg_new, bkg_ref; /* levels taken off */
    double sigma_new, sigma_ref; /* background noise (median VAR, else MAD) */
    size_t nstamps, nstamps_used; /* stamps found, stamps kept by the rejection */
    int kernel_order, bg_order; /* the spatial orders used: lowered from the options' until every term has
                                   3 stamps */
    double fom;            /* mean chi^2 per pixel of the kept stamps (each over the pixels it fitted) */
    double score_std;      /* robust standard deviation of the score image */
    double sky_refit[6];   /* what sky_refit took off D (D's units; 0 when not re-fitted): a polynomial in the
                              background's terms 1, xs, ys, xs^2, xs ys, ys^2 (xs = 2 x / (w - 1) - 1) */
} clred_al_result;

CLRED_API void clred_al_result_free(clred_al_result *r);
/* Alard & Lupton (1998) / Alard (2000) subtraction of a reference from a new
 * image on the same pixel grid: a kernel of Gaussians x polynomials, varying
 * over the image as a polynomial, plus a differential background, fitted by
 * least squares on stamps around bright isolated stars (found by
 * clred_detect_sources_dev on the reference), with kernel-sum and
 * figure-of-merit rejection. The stamps' basis convolutions, their normal
 * equations and the spatially varying convolution (the kernel evaluated per
 * block) run on the device; the small system is solved on the host in
 * double. psf_new and psf_ref give the seeing (unless opts give FWHMs) and
 * the difference's PSF for candidates and the detection image; they may be
 * NULL with the FWHMs set (then no detection image, and no decorrelation). */
CLRED_API clred_status clred_subtract_al_dev(clred_ctx *ctx, const clred_dimage *new_img, const clred_dimage *ref,
                                             const clred_psf *psf_new, const clred_psf *psf_ref,
                                             const clred_al_opts *opts, clred_al_result *out);
/* The same on host images; the result's images are device images. */
CLRED_API clred_status clred_subtract_al(clred_ctx *ctx, const clred_image *new_img, const clred_image *ref,
                                         const clred_psf *psf_new, const clred_psf *psf_ref,
                                         const clred_al_opts *opts, clred_al_result *out);
/* The kernel solution as FITS: the kernel images at the grid's positions (a
 * cube; KSUM, CONVOL, PHOTNORM, KGRID and the positions KXnnn/KYnnn in its
 * header) and the terms (GAUSS, DEG_U, DEG_V, SX, SY, SIGMA, COEFF) as the
 * binary table SOLUTION. */
CLRED_API clred_status clred_al_kernel_write(const char *path, const clred_al_result *r, int overwrite);

/* Candidate flags. */
#define CLRED_CAND_DIPOLE 0x01u /* a lobe of the other sign holds over half this one's flux nearby */
#define CLRED_CAND_MASKED 0x02u /* an unusable pixel (or the image's edge) in the 5 x 5 box around the score's peak
                                    or in that around the fitted position (x, y): a mask moves either one */
#define CLRED_CAND_EDGE   0x04u /* closer to the image edge than the PSF's half size */
#define CLRED_CAND_BRIGHT 0x08u /* in a saturated star's wings: clred_candidates_bright */
#define CLRED_CAND_BLEND  0x10u /* a secondary peak: below the threshold once the PSF-matched light of the brighter
                                    candidates near it (their score x the PSF's autocorrelation) is taken off */
#define CLRED_CAND_KERNEL 0x20u /* below the threshold once the matching kernel fit's own error at it is added to
                                    the score's noise: clred_al_candidates_kernel */

typedef struct {
    double x, y;            /* PSF-fit position on the difference (the fit's start: the flux-weighted centroid
                               of |D| in 5 x 5 around the peak, kept where the flux is below 3 sigma or the fit
                               ran further than one FWHM) */
    double x_err, y_err;    /* the fit's; sigma_PSF / snr where the centroid was kept */
    int isdiffpos;          /* 1: brighter in the new image; 0: fainter (fading) */
    double score;           /* peak S_corr (signed) */
    double flux, flux_err;  /* PSF-fit flux on the difference (signed) */
    double ap_flux, ap_flux_err; /* aperture flux (radius ap_radius) on the difference, divided by the
                                    PSF's fraction inside the aperture */
    double snr;             /* |flux| / flux_err */
    double fwhm;            /* from second moments of the pixels of its sign beyond 1 sigma in the aperture */
    double elongation;      /* a / b */
    int nneg, nbad;         /* pixels of the opposite sign in the 5 x 5 box around the peak / unusable (or off
                               the image) in the union of the 5 x 5 boxes around the peak and around (x, y) */
    double sumrat;          /* sum of D over the 5 x 5 box / sum of |D| */
    double lobe_pos, lobe_neg; /* sums of the pixels above +2 sigma / below -2 sigma within 2 apertures */
    double edge_dist;       /* px to the nearest image edge */
    uint16_t mask_bits;     /* OR of the mask over the boxes nbad counts over */
    unsigned flags;         /* CLRED_CAND_* */
    double ra, dec;         /* deg, from the difference's WCS (NaN without one; clred_candidates_context) */
    double ref_dist;        /* px from the centroid to the nearest source detected on the reference (NaN: none
                               searched or found) */
    double ref_flux;        /* that source's isophotal flux on the reference (NaN likewise) */
} clred_candidate;

typedef struct {
    double thresh;          /* |score| at or above this (default 5) */
    int both_signs;         /* 1 = fading sources too (default 1) */
    double ap_radius;       /* px (default 1.5 x the PSF's FWHM) */
    uint16_t reject_bits;   /* a peak on a pixel with these bits is no candidate (default CLRED_MASK_UNUSABLE) */
    size_t max_candidates;  /* default 100000 */
} clred_cand_opts;

CLRED_API clred_cand_opts clred_cand_defaults(void);
/* Candidates on a score image (S_corr, or D / sigma): local extrema of |score|
 * over 5 x 5 (the box inside the image) at or above opts->thresh, not on a
 * pixel with a reject bit, found on the device; then measured on
 * diff (flux units, with VAR and MASK) with psf (the PSF of diff). *list is
 * malloc'd (free()), ordered by |score| descending. */
CLRED_API clred_status clred_find_candidates_dev(clred_ctx *ctx, const clred_dimage *score, const clred_dimage *diff,
                                                 const clred_psf *psf, const clred_cand_opts *opts,
                                                 clred_candidate **list, size_t *n);
/* What a broker wants beside each candidate: its sky position from the
 * WCS of header (RA/Dec NaN when header is NULL or has no celestial WCS)
 * and the distance to and flux of the nearest of the reference's sources
 * (ref_sources from clred_detect_sources(_dev) on the reference, run once;
 * NaN when nref is 0). */
CLRED_API clred_status clred_candidates_context(const clred_header *header, const clred_source *ref_sources,
                                                size_t nref, clred_candidate *list, size_t n);
/* Flags CLRED_CAND_BRIGHT on the candidates that lie where a saturated star
 * of img (MASK's SATURATED areas; img in the difference's flux units, e.g.
 * the new image the difference is normalised to) puts wing light that,
 * fitted as a point source under the candidate, is at least the candidate's
 * flux_err: there an error of the wings in the subtraction is as large as
 * the noise. Each star's flux is fitted to its unsaturated pixels with psf
 * (img's PSF), continued beyond its stamp as the power law of its outer
 * annuli. Nothing is dropped (host/steps/bright_wings.c says why). */
CLRED_API clred_status clred_candidates_bright(const clred_image *img, const clred_psf *psf, clred_candidate *list,
                                               size_t n);
/* Flags CLRED_CAND_BLEND on each secondary peak of list (sorted by |score|,
 * largest first, as clred_find_candidates_dev returns it and calls this)
 * whose score, less the light of the brighter unflagged candidates within
 * the PSF's reach (each one's score times psf's autocorrelation at the
 * offset), no longer reaches thresh: a peak in a bright source's wings, not
 * an independent detection at the threshold. Nothing is dropped
 * (host/steps/candidates.c says why). */
CLRED_API clred_status clred_candidates_deblend(const clred_psf *psf, double thresh, clred_candidate *list, size_t n);
/* Flags CLRED_CAND_KERNEL on AL's candidates (list from
 * clred_find_candidates_dev on al->detect) whose |score| / sqrt(1 + s^2) falls
 * below thresh, s being DETECT's error at the candidate that the kernel
 * solution's uncertainty (the fit's covariance, scaled by its chi^2 per
 * pixel where above 1) makes through the convolved image: the residual of a
 * bright star's wings where the kernel is least pinned. new_img and ref are
 * the images al came from. Nothing is dropped; nothing is flagged without a
 * model (al->kernel_error NULL: no PSFs). host/steps/al_kerr.c says why. */
CLRED_API clred_status clred_al_candidates_kernel(const clred_al_result *al, const clred_image *new_img,
                                                  const clred_image *ref, double thresh, clred_candidate *list,
                                                  size_t n);
/* Catalog of candidates: any of FITS table, CSV and JSON (paths may be NULL). */
CLRED_API clred_status clred_candidates_write(const char *fits_path, const char *csv_path, const char *json_path,
                                              const clred_candidate *list, size_t n, int overwrite);
/* 63 x 63 (size x size) cutouts of the new, reference and difference images
 * around each candidate as one FITS file: three cubes (EXTNAME NEW, REF, DIFF)
 * of n planes, NaN off the image. */
CLRED_API clred_status clred_cutouts_write(const char *path, const clred_image *new_img, const clred_image *ref,
                                           const clred_image *diff, const clred_candidate *list, size_t n,
                                           size_t size, int overwrite);

/* ---- alert packets in ZTF's Avro schema */

/* What an alert carries beside its candidate: the exposure, the filter and
 * the photometric zero points. */
typedef struct {
    double jd;             /* Julian date at the start of the exposure (NaN: unknown) */
    int fid;               /* ZTF filter id: 1 g, 2 r, 3 i, 0 any other */
    int64_t pid;           /* processing id (>= 0); candid = pid * 1000000 + the candidate's number */
    double magzpsci;       /* zero point of the difference: mag = magzpsci - 2.5 log10(flux) */
    double magzpsciunc;    /* its uncertainty (NaN: null) */
    double magzpref;       /* zero point of the reference's source fluxes (ref_flux; NaN: magzpsci) */
    double diffmaglim;     /* 5-sigma limiting magnitude of the difference (NaN: null) */
    double exptime;        /* s (NaN: null) */
    const char *diff_name; /* the difference's file name (pdiffimfilename; NULL: null) */
} clred_alert_info;

/* Zero point 25 (CLRED_ALERT_DEFAULT_MAGZP), everything else unknown. */
#define CLRED_ALERT_DEFAULT_MAGZP 25.0
CLRED_API clred_alert_info clred_alert_info_defaults(void);
/* The info of a difference: the time (MJD-OBS or DATE-OBS, less half of
 * EXPTIME as clred_header_mjd adds it; jd NaN and pid 0 without one), FILTER
 * (g, r, i; else fid 0), MAGZP and MAGZPERR (default 25, null) and EXPTIME
 * from diff's header, or the new image's for what diff's lacks (new_hdr may be
 * NULL); the reference's MAGZP from ref_hdr (NULL: magzpsci); diffmaglim from
 * diff's median VAR over its usable pixels and psf (5 sigma of a PSF fit:
 * 5 sqrt(median VAR / sum P^2)), NaN without either. pid is the start MJD in
 * units of 1e-5 day. diff_name is kept as a pointer. */
CLRED_API clred_status clred_alert_info_from(const clred_image *diff, const clred_psf *psf,
                                             const clred_header *new_hdr, const clred_header *ref_hdr,
                                             const char *diff_name, clred_alert_info *info);
/* The candid of the k-th (0-based) candidate: pid * 1000000 + k + 1. */
CLRED_API int64_t clred_alert_candid(const clred_alert_info *info, size_t k);
/* The schema the alerts are written in (JSON; data/ztf_alert.avsc): a subset
 * of ZTF's alert schema v3.3 (ztf.alert with its candidate, prv_candidate and
 * cutout records) with the same names and types, fields clred cannot know
 * left null. */
CLRED_API const char *clred_alert_schema(void);
/* One Avro object container file per candidate, dir/<candid>.avro, each one
 * ztf.alert record: the candidate's fields (magnitudes through info's zero
 * points; xpos, ypos in the FITS convention, first pixel 1), prv_candidates
 * null, and size x size cutouts of new_img, ref and diff (each may be NULL:
 * that cutout is null) as gzipped FITS (NaN off the image). dir is created
 * when missing (one level). Every file is written atomically; on any failure
 * the alerts written by this call are removed (and dir when it created it).
 * At most 999999 candidates. */
CLRED_API clred_status clred_alerts_write(const char *dir, const clred_alert_info *info, const clred_image *new_img,
                                          const clred_image *ref, const clred_image *diff,
                                          const clred_candidate *list, size_t n, size_t size, int overwrite);

/* ---- difference imaging on files: clred subtract, clred candidates */

typedef enum { CLRED_DIFF_ZOGY = 0, CLRED_DIFF_AL } clred_diff_method;

typedef struct clred_subtract_job {
    const char *new_psf, *ref_psf;     /* PSF images; NULL = measured from the image (psf options) */
    size_t psf_size;                   /* largest size of a PSF read (odd; 0 = uncut) */
    const char *new_noise, *ref_noise; /* 1-sigma noise images: their squares become the VAR planes */
    const char *new_mask, *ref_mask;   /* images whose nonzero pixels are flagged BAD */
    const char *fit_mask;              /* AL: an image on the pair's grid whose nonzero pixels are left out of the
                                          kernel's fit, flagged NOFIT in both images (clred_al_opts
                                          fit_ignore_bits), and subtracted and searched as any; NULL = none */
    int fit_mask_selects;              /* 1 = the other way round: fit_mask's nonzero pixels are the only ones the
                                          fit may use (the convention of SFFT's masked images); default 0 */
    clred_psf_opts psf;                /* for measured PSFs */
    clred_diff_method method;          /* default ZOGY */
    clred_zogy_opts zogy;
    clred_al_opts al;                  /* for method AL */
    const char *kernel_out;            /* AL: the kernel solution (clred_al_kernel_write); NULL = none */
    unsigned al_planes;                /* AL: the planes written after SCI, VAR and MASK, CLRED_AL_WRITE_* (default
                                          CLRED_AL_WRITE_DEFAULT) */
    clred_cand_opts cand;
    const char *candidates;            /* candidate catalog: .csv, .json, else a FITS table; NULL = none */
    const char *cutouts;               /* cutouts of each candidate (clred_cutouts_write); NULL = none */
    const char *alerts;                /* directory of ZTF Avro alert packets, one per candidate
                                          (clred_alerts_write, cutouts of cutout_size); NULL = none */
    size_t cutout_size;                /* default 63 */
    const char *psf_out;               /* the difference's PSF written here; NULL = none */
    int overwrite;
} clred_subtract_job;

/* AL's optional planes of the difference file (clred_subtract_job.al_planes); a
 * plane the result lacks (no PSFs: no DETECT; not decorrelated: no DECORR) is
 * not written. */
#define CLRED_AL_WRITE_CONV    0x1u /* CONV: the convolved image */
#define CLRED_AL_WRITE_SCORE   0x2u /* SCORE: D / sigma per pixel */
#define CLRED_AL_WRITE_DETECT  0x4u /* DETECT: the PSF-matched S/N the candidates come from */
#define CLRED_AL_WRITE_DECORR  0x8u /* DECORR and DECORRVAR: the decorrelated difference and its variance */
#define CLRED_AL_WRITE_DEFAULT (CLRED_AL_WRITE_DETECT | CLRED_AL_WRITE_DECORR)
#define CLRED_AL_WRITE_ALL     0xfu

typedef struct {
    double f_d, f_s, sigma_n, sigma_r, d_off, bkg_n, bkg_r;
    double scorr_scale;                   /* robust standard deviation of S_corr before any renormalising */
    double fwhm_new, fwhm_ref, fwhm_diff; /* px, of the PSFs used and of the difference's */
    size_t nstars_new, nstars_ref;        /* stars of measured PSFs (0 when read) */
    size_t ncandidates, npositive;        /* candidates written, those brighter in the new image */
    double seconds;                       /* wall time of the subtraction and the candidates */
    /* AL: kernel sum, the image convolved, stamps found / kept, their mean chi^2 per pixel, the spatial
       orders of the kernel and the background used; scorr_scale is the robust std of the detection image
       (zogy.renormalize divides it by that) */
    double ksum, fom;
    int convolved_ref;
    size_t nstamps, nstamps_used;
    int kernel_order, bg_order;
} clred_subtract_report;

CLRED_API clred_subtract_job clred_subtract_job_defaults(void);
/* Reads the new image and the reference (the same pixel grid), their noise
 * and masks, reads or measures their PSFs, subtracts them by ZOGY on the
 * device, finds candidates, and writes out_path: SCI = D / F_D, VAR, MASK and
 * the planes SCORR, FLUX (S / F_S) and FLUXVAR; then the catalog, the cutouts
 * and P_D as asked. With method AL (clred_subtract_al_dev): SCI = D, VAR,
 * MASK, then the planes of job->al_planes that the result has: CONV (the
 * convolved image), SCORE (D / sigma, of the decorrelated difference when
 * job->al.decorrelate), DETECT (the PSF-matched S/N) and, when decorrelated,
 * DECORR and DECORRVAR (by default DETECT, DECORR and DECORRVAR; CONV and
 * SCORE are computed only when written; the file is written while the
 * candidates are found); candidates on DETECT, measured on
 * the (decorrelated) difference with its PSF; the kernel solution to job->kernel_out; psf_out receives the
 * difference's PSF. Every output is checked before any work; report may be NULL. */
CLRED_API clred_status clred_subtract_files(clred_ctx *ctx, const char *new_path, const char *ref_path,
                                            const char *out_path, const clred_subtract_job *job,
                                            clred_subtract_report *report);
/* Candidates on a difference written by clred_subtract_files (or any MEF with
 * SCI, VAR and MASK: the score is then SCI / sqrt(VAR)), with the PSF of the
 * difference in psf_path (NULL: measured from the new image new_path). The
 * catalog and cutouts are job->candidates and job->cutouts; the cutouts need
 * new_path and ref_path. *n receives the number of candidates. */
CLRED_API clred_status clred_candidates_files(clred_ctx *ctx, const char *diff_path, const char *psf_path,
                                              const char *new_path, const char *ref_path,
                                              const clred_subtract_job *job, size_t *n, size_t *npositive);

/* ---- simulated pairs for difference imaging */

typedef enum { CLRED_PSF_GAUSSIAN = 0, CLRED_PSF_MOFFAT } clred_psf_kind;

typedef struct {
    uint64_t seed;            /* default 1 */
    size_t width, height;     /* default 256 x 256 */
    clred_psf_kind psf_kind;  /* default MOFFAT */
    double moffat_beta;       /* default 3 */
    double ref_fwhm, new_fwhm; /* px (default 3.5, 4.5) */
    double sky;               /* e- per pixel (default 300) */
    double readnoise;         /* e- (default 5) */
    double ref_depth;         /* the reference's variance is the new image's / ref_depth (a stack; default 9) */
    double shift_x, shift_y;  /* the new image sees the field shifted by this, px (default 0, 0) */
    int nstars;               /* default 80 */
    int ngalaxies;            /* default 12 */
    int ntransients;          /* default 40: S/N uniform in [snr_min, snr_max] in the new image; every third on
                                 a galaxy of its own while galaxies last; fewer when no spot 10 px clear of
                                 every other source is left */
    double snr_min, snr_max;  /* default 3, 50 */
    double fading_fraction;   /* transients present in the reference only (default 0.25) */
    int ncosmics;             /* in the new image, flagged COSMIC_RAY (default 10) */
    int nsaturated;           /* stars saturated in both (default 2) */
    double saturation;        /* e- (default 60000) */
    int nholes;               /* NaN patches in the reference, flagged NO_DATA (default 0) */
    double fwhm_grad_x, fwhm_grad_y; /* both images' FWHM varies linearly over the field: at (x, y) it is
                                 fwhm (1 + fwhm_grad_x (x / (width - 1) - 0.5) + fwhm_grad_y (y / (height - 1) -
                                 0.5)), i.e. it changes by that fraction across the full width / height;
                                 ref_psf and new_psf are the centre's (default 0, 0; |each| <= 1) */
    double psf_stamp_fwhm;    /* ref_psf and new_psf are cut at this many FWHM from the centre and scaled to unit
                                 sum, as a measured PSF has a finite support (default 4; 2..12); the images
                                 always hold each source's whole profile */
} clred_pair_opts;

/* The simulated pair's FWHM at (x, y) for a centre FWHM of fwhm (see fwhm_grad_x). */
CLRED_API double clred_pair_fwhm_at(const clred_pair_opts *opts, double fwhm, double x, double y);

CLRED_API clred_pair_opts clred_pair_defaults(void);

typedef struct {
    double x, y;   /* in the new image's pixels */
    double flux;   /* e-, the whole profile's: > 0 appears in the new image, < 0 fades (present in the reference
                      only) */
    double snr;    /* |flux| sqrt(sum P^2) / sigma_new: the PSF-fit S/N in the new image's background noise */
    int on_galaxy; /* 1 when placed on a galaxy */
} clred_pair_transient;

typedef struct {
    clred_image ref, new_img;  /* e-, sky included; VAR (noise variance) and MASK planes */
    clred_psf ref_psf, new_psf; /* the true PSFs' cores: +-psf_stamp_fwhm FWHM, scaled to unit sum (the images
                                   hold the whole profiles; a Moffat's wings beyond 4 FWHM carry about 0.2 % of it) */
    clred_pair_transient *transients;
    size_t ntransients;
    double *cosmic_xy;         /* ncosmics (x, y) pairs, new image */
    size_t ncosmics;
    double *hole_xy;           /* nholes (x, y): where each hole was put, reference */
    size_t nholes;
    double *hole_box;          /* nholes (x0, y0, x1, y1): the hole's extent in pixel coordinates (pixel
                                  centres on integers), its NaN pixels' outer edges */
} clred_pair;

/* Draws a pair (deterministic from the seed). Free with clred_pair_free. */
CLRED_API clred_status clred_simulate_pair(const clred_pair_opts *opts, clred_pair *out);
CLRED_API void clred_pair_free(clred_pair *p);
/* Writes ref.fits, new.fits (MEF SCI/VAR/MASK), ref_psf.fits, new_psf.fits
 * and truth.csv (x, y, flux, snr, on_galaxy) into outdir (created). */
CLRED_API clred_status clred_simulate_pair_write(const clred_pair_opts *opts, const char *outdir, int overwrite);

#ifdef __cplusplus
}
#endif
#endif /* CLRED_H */
