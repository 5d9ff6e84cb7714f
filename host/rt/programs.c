/* Embedded kernel programs: building them for the context's device, keeping
 * them for the context's life, and caching them on disk keyed by device,
 * driver, source and options, so a second run does not recompile: as the
 * driver's binaries in clred's cache, or, on a driver that keeps its own
 * cache of programs (POCL), in that cache with clred's entry only a marker
 * (see driver_keeps_programs). */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embedded_kernels.h"
#include "internal.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* Prepended to every program: the mask bits come from clred.h, so host and
 * kernels cannot disagree on them. */
static const char preamble[] =
    "#define CLRED_MASK_BAD " STR(CLRED_MASK_BAD) "\n"
    "#define CLRED_MASK_SATURATED " STR(CLRED_MASK_SATURATED) "\n"
    "#define CLRED_MASK_COSMIC_RAY " STR(CLRED_MASK_COSMIC_RAY) "\n"
    "#define CLRED_MASK_NO_DATA " STR(CLRED_MASK_NO_DATA) "\n"
    "#define CLRED_MASK_INTERPOLATED " STR(CLRED_MASK_INTERPOLATED) "\n"
    "#define CLRED_MASK_EDGE " STR(CLRED_MASK_EDGE) "\n"
    "#define CLRED_MASK_DETECTED " STR(CLRED_MASK_DETECTED) "\n"
    "#define CLRED_MASK_CLIPPED " STR(CLRED_MASK_CLIPPED) "\n"
    "#ifdef CLRED_USE_DOUBLE\n"
    "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
    "typedef double acc_t;\n"
    "#else\n"
    "typedef float acc_t;\n"
    "#endif\n";

typedef struct kernel_entry {
    char *name;
    cl_kernel kernel;
    uint64_t *shapes; /* launch_shape of each work-group shape launched in this context */
    size_t nshapes;
    struct kernel_entry *next;
} kernel_entry;

typedef struct clred_program_cache {
    char *family;
    char *options;
    uint64_t key; /* its disk cache entry's key (entry_path), 0 without a cache */
    cl_program program;
    kernel_entry *kernels;
    struct clred_program_cache *next;
} program_entry;

/* POCL keeps programs built from source in its own cache (POCL_CACHE_DIR,
 * else under ~/.cache/pocl) and finds them again in a new process in a few
 * tens of milliseconds. Asking it for CL_PROGRAM_BINARIES instead makes it
 * compile a work-group function of every kernel in the program so the
 * binary is complete (1-5 CPU s per family), although a run launches only
 * some of them, and each launched kernel is compiled again at its first
 * launch with a new shape anyway. On POCL, clred's entry is therefore an
 * empty marker saying the program was built (its lock still makes one
 * process compile while the others wait, then hit POCL's cache), and only
 * launched kernels are compiled. Elsewhere (GPU drivers, whose binaries cost
 * nothing extra, and POCL with its cache off) clred stores the binary.
 * CLRED_PROGRAM_BINARIES=1 or 0 forces either way (the tests run both). */
static int is_pocl(const clred_ctx *ctx) { return strcmp(ctx->info.platform, "Portable Computing Language") == 0; }

static int driver_keeps_programs(const clred_ctx *ctx)
{
    const char *force = getenv("CLRED_PROGRAM_BINARIES");
    if (force && *force)
        return *force == '0';
    const char *pocl_cache = getenv("POCL_KERNEL_CACHE");
    return is_pocl(ctx) && !(pocl_cache && *pocl_cache == '0');
}

static const char *family_source(const char *family)
{
    for (size_t i = 0; i < clred_embedded_kernel_count; i++)
        if (strcmp(clred_embedded_kernels[i].family, family) == 0)
            return clred_embedded_kernels[i].source;
    return NULL;
}

const char *clred_cache_dir(void)
{
    static _Thread_local char dir[1024];
    const char *env = getenv("CLRED_CACHE_DIR");
    if (env && *env) {
        if (strcmp(env, "off") == 0)
            return NULL;
        snprintf(dir, sizeof dir, "%s", env);
    } else if ((env = getenv("XDG_CACHE_HOME")) && *env) {
        snprintf(dir, sizeof dir, "%s/clred", env);
    } else if ((env = getenv("HOME")) && *env) {
        snprintf(dir, sizeof dir, "%s/.cache/clred", env);
    } else {
        return NULL;
    }
    return dir;
}

/* mkdir -p; failures are ignored (the cache is an optimisation). */
static void make_dirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

static uint64_t cache_key(const clred_ctx *ctx, const char *source, const char *options)
{
    uint64_t h = clred_hash(CLRED_VERSION, strlen(CLRED_VERSION), 0);
    h = clred_hash(ctx->info.platform, strlen(ctx->info.platform), h);
    h = clred_hash(ctx->info.name, strlen(ctx->info.name), h);
    h = clred_hash(ctx->info.version, strlen(ctx->info.version), h);
    h = clred_hash(ctx->info.driver, strlen(ctx->info.driver), h);
    h = clred_hash(source, strlen(source), h);
    return clred_hash(options, strlen(options), h);
}

/* An exclusive lock on the cache entry named by what (hashed with the
 * device and driver, like a program's key), for work the driver caches
 * itself, such as an FFT library's kernels: a second process waits for the
 * first's build and then finds it in the driver's cache instead of building
 * it again beside it. -1 without a usable cache directory. */
int clred_cache_lock(const clred_ctx *ctx, const char *what)
{
    const char *dir = clred_cache_dir();
    if (!dir)
        return -1;
    char path[1100];
    snprintf(path, sizeof path, "%s/%016llx.lock", dir, (unsigned long long)cache_key(ctx, what, ""));
    make_dirs(dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

void clred_cache_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

/* A cache entry: this header, then the driver's binary. The driver's loader
 * is not robust against damaged binaries (POCL crashes on a truncated one),
 * so an entry is handed to it only when its length and checksum match. */
typedef struct {
    char magic[8];      /* CACHE_MAGIC */
    uint64_t key;       /* cache_key: guards against a renamed or swapped file */
    uint64_t length;    /* bytes of binary after the header */
    uint64_t checksum;  /* clred_hash of those bytes */
} cache_header;

#define CACHE_MAGIC "CLREDPB1"
/* Far above any program binary; a longer claim is damage. */
#define CACHE_MAX_BINARY ((uint64_t)1 << 30)

static _Atomic int cache_unwritable;
static char cache_warning_text[1200];

const char *clred_cache_warning(void)
{
    return cache_unwritable ? cache_warning_text : NULL;
}

static void note_unwritable(const char *dir, const char *why)
{
    if (!cache_unwritable) {
        snprintf(cache_warning_text, sizeof cache_warning_text,
                 "the kernel cache %s cannot be written (%s); kernels may be compiled again on every run "
                 "(set CLRED_CACHE_DIR to a writable directory, or to 'off')",
                 dir, why);
        cache_unwritable = 1;
    }
}

/* The binary of a verified entry (malloc'd) or NULL; a damaged entry is deleted. */
static unsigned char *read_entry(const char *path, uint64_t key, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    cache_header h;
    unsigned char *bin = NULL;
    struct stat sb;
    int ok = fstat(fileno(f), &sb) == 0 && fread(&h, sizeof h, 1, f) == 1 &&
             memcmp(h.magic, CACHE_MAGIC, 8) == 0 && h.key == key && h.length > 0 &&
             h.length <= CACHE_MAX_BINARY && (uint64_t)sb.st_size == sizeof h + h.length &&
             (bin = malloc((size_t)h.length)) && fread(bin, 1, (size_t)h.length, f) == (size_t)h.length &&
             clred_hash(bin, (size_t)h.length, 0) == h.checksum;
    fclose(f);
    if (!ok) {
        free(bin);
        remove(path);
        return NULL;
    }
    *len = (size_t)h.length;
    return bin;
}

static cl_program load_cached(clred_ctx *ctx, const char *path, uint64_t key, const char *options)
{
    size_t len = 0;
    unsigned char *bin = read_entry(path, key, &len);
    if (!bin)
        return NULL;
    const unsigned char *bins[1] = {bin};
    cl_int status, err;
    cl_program program = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &len, bins, &status, &err);
    if (err != CL_SUCCESS || status != CL_SUCCESS) {
        if (program)
            clReleaseProgram(program);
        program = NULL;
    } else if (clBuildProgram(program, 1, &ctx->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(program);
        program = NULL;
    }
    free(bin);
    if (!program)
        remove(path); /* the driver refused it: rebuilt and stored again */
    return program;
}

/* Writes the entry to a temporary, fsyncs it and renames it into place, so a
 * crash or power cut leaves either the old entry, the new one or none. */
static void store_cached(cl_program program, const char *dir, const char *path, uint64_t key)
{
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || size == 0)
        return;
    unsigned char *bin = malloc(size);
    if (!bin)
        return;
    unsigned char *bins[1] = {bin};
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) == CL_SUCCESS) {
        make_dirs(dir);
        char tmp[1100];
        /* unique per process and per store, so two contexts of one process
         * storing the same program do not write into one temporary */
        static _Atomic unsigned stores;
        snprintf(tmp, sizeof tmp, "%s.%ld.%u.tmp", path, (long)getpid(), stores++);
        cache_header h;
        memcpy(h.magic, CACHE_MAGIC, 8);
        h.key = key;
        h.length = size;
        h.checksum = clred_hash(bin, size, 0);
        FILE *f = fopen(tmp, "wb");
        if (!f) {
            note_unwritable(dir, strerror(errno));
        } else {
            int ok = fwrite(&h, sizeof h, 1, f) == 1 && fwrite(bin, 1, size, f) == size && fflush(f) == 0 &&
                     fsync(fileno(f)) == 0;
            int e = errno;
            ok = (fclose(f) == 0) && ok;
            if (!ok || rename(tmp, path) != 0) {
                if (ok)
                    e = errno;
                remove(tmp);
                note_unwritable(dir, strerror(e));
            }
        }
    }
    free(bin);
}

/* The marker of a program that POCL's cache holds: an empty file, created
 * once the build succeeded (so it is never seen before the program is in
 * the driver's cache). */
static void mark_built(const char *dir, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        note_unwritable(dir, strerror(errno));
    else
        close(fd);
}

/* Builds the program in context, a context of ctx's device: ctx's own, or
 * one that builds ahead (see build_ahead_worker). */
static clred_status build_from_source(const clred_ctx *ctx, cl_context context, const char *family,
                                      const char *source, const char *options, cl_program *out)
{
    cl_int err;
    const char *parts[1] = {source};
    cl_program program = clCreateProgramWithSource(context, 1, parts, NULL, &err);
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, "clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        /* Ask for the log's size first: a short buffer gets nothing at all. */
        size_t len = 0;
        clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len);
        char *log = calloc(len + 1, 1);
        if (log && len)
            clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, len, log, NULL);
        const char *text = log ? log : "";
        /* The first error line is what a reader needs; keep the message one line. */
        const char *first = strstr(text, "error:");
        first = first ? first : text;
        char line[600];
        snprintf(line, sizeof line, "%s", first);
        for (char *p = line; *p; p++)
            if (*p == '\n')
                *p = ' ';
        free(log);
        clReleaseProgram(program);
        return clred_fail(CLRED_ERR_DEVICE, "building kernels/%s.cl (%s) for %s: %s: %s", family, options,
                          ctx->info.name, clred_cl_error_name(err), line);
    }
    *out = program;
    return CLRED_OK;
}

/* Appends text to the growing source (*src, *len, *cap). */
static int append(char **src, size_t *len, size_t *cap, const char *text, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t cap2 = (*len + n + 1) * 2;
        char *s = realloc(*src, cap2);
        if (!s)
            return 0;
        *src = s;
        *cap = cap2;
    }
    memcpy(*src + *len, text, n);
    *len += n;
    (*src)[*len] = '\0';
    return 1;
}

/* The first '+'-separated member of a group "a+b+c" (a lone family is a
 * group of one) into name; returns what follows it. */
static const char *next_member(const char *group, char name[64])
{
    size_t n = strcspn(group, "+");
    snprintf(name, 64, "%.*s", (int)(n < 64 ? n : 63), group);
    return group + n + (group[n] == '+');
}

/* Appends a family's body to the growing source, its lines
 * '#include "NAME.cl"' replaced by the embedded kernels/NAME.cl (one level
 * deep). */
static clred_status append_family(const char *family, char **src, size_t *len, size_t *cap)
{
    const char *body = family_source(family);
    if (!body)
        return clred_fail(CLRED_ERR_DEVICE, "no embedded kernel program named '%s'", family);
    int ok = 1;
    for (const char *line = body; ok && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) + 1 : strlen(line);
        char name[64];
        if (sscanf(line, "#include \"%63[A-Za-z0-9_].cl\"", name) == 1) {
            const char *inc = family_source(name);
            if (!inc)
                return clred_fail(CLRED_ERR_DEVICE, "kernels/%s.cl includes %s.cl, which is not embedded", family,
                                  name);
            ok = append(src, len, cap, inc, strlen(inc)) && append(src, len, cap, "\n", 1);
        } else {
            ok = append(src, len, cap, line, n);
        }
        line += n;
    }
    return ok ? CLRED_OK : clred_fail(CLRED_ERR_MEMORY, "out of memory building kernels");
}

/* The program's full text: the preamble, kernels/common.cl, then the
 * family, or each family of a group "a+b+c" in turn (see
 * clred_programs_group), whose includes are resolved by append_family
 * (helpers shared by several families, such as the sorting networks, live
 * once and are included by name; each guards its text, so a group including
 * one twice defines it once). The cache key hashes this text, so an
 * included helper's change rebuilds its users. */
static clred_status assemble_source(const char *family, char **out)
{
    const char *common = family_source("common");
    if (!common || strcmp(family, "common") == 0)
        common = "";
    char *src = NULL;
    size_t len = 0, cap = 0;
    if (!(append(&src, &len, &cap, preamble, strlen(preamble)) && append(&src, &len, &cap, common, strlen(common)) &&
          append(&src, &len, &cap, "\n", 1))) {
        free(src);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory building kernels");
    }
    clred_status st = CLRED_OK;
    char name[64];
    for (const char *m = family; st == CLRED_OK && *m;) {
        m = next_member(m, name);
        st = append_family(name, &src, &len, &cap);
    }
    if (st != CLRED_OK) {
        free(src);
        return st;
    }
    *out = src;
    return CLRED_OK;
}

/* CLRED_BUILD_LOG=FILE appends one line per program a process builds or
 * loads: family, options, "cache" or "compiled", seconds, the process id and
 * the thread's CPU seconds (tab-separated; CPU, unlike wall time, stays a
 * measure of the work on a loaded machine). It counts the program variants a
 * command or a test suite needs and what each costs (bench/latency.sh); FFT
 * plans, whose kernels the FFT libraries compile, are logged too ("plan",
 * fft.c). One write(2) per line with O_APPEND, so concurrent processes do not
 * interleave within a line. POCL compiles each kernel again for its
 * work-group shape at its first launch, in its own threads: the thread CPU
 * here is the front end only. */
void clred_log_build(const char *family, const char *options, const char *outcome, double seconds, double cpu_seconds)
{
    const char *path = getenv("CLRED_BUILD_LOG");
    if (!path || !*path)
        return;
    char line[1400];
    int n = snprintf(line, sizeof line, "%s\t%s\t%s\t%.3f\t%ld\t%.3f\n", family, options, outcome, seconds,
                     (long)getpid(), cpu_seconds);
    if (n <= 0 || (size_t)n >= sizeof line)
        return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, (size_t)n);
    (void)w; /* a diagnostic: a failed write changes nothing */
    close(fd);
}

static program_entry *find_program(clred_ctx *ctx, const char *family, const char *extra)
{
    for (program_entry *p = ctx->programs; p; p = p->next)
        if (strcmp(p->family, family) == 0 && strcmp(p->options, extra) == 0)
            return p;
    return NULL;
}

/* The program's full source (malloc'd) and its build options. */
static clred_status program_text(const clred_ctx *ctx, const char *family, const char *extra, char **source,
                                 char options[1024])
{
    CLRED_TRY(assemble_source(family, source));
    /* Families that include lib_vec.cl get the context's vector width, or
     * its line width where a family of the program streams whole rows (its
     * source says CLRED_WHOLE_LINES; the host launches it with
     * clred_line_groups). */
    char vector_width[32] = "";
    if (strstr(*source, "CLRED_LIB_VEC"))
        snprintf(vector_width, sizeof vector_width, " -DVW=%d",
                 strstr(*source, "CLRED_WHOLE_LINES") ? ctx->line_width : ctx->vector_width);
    /* Only families that accumulate in acc_t get the accumulation define:
     * the others build one program for both settings, not two that differ
     * in a define they ignore. */
    const char *own = *source + strlen(preamble);
    int accumulates = strstr(own, "acc_t") || strstr(own, "CLRED_USE_DOUBLE");
    /* POCL's clang prints "N warnings generated." on the process's stderr
     * (the warnings themselves go to the build log): notes that 8-wide
     * double vectors passed to its builtins would change the ABI without
     * AVX-512, which cannot matter where the kernel and the builtins are
     * compiled together. -w keeps a first run's output to what clred says;
     * POCL refuses -Wno-psabi. */
    snprintf(options, 1024, "-cl-std=CL1.2%s%s%s %s", is_pocl(ctx) ? " -w" : "",
             ctx->use_double && accumulates ? " -DCLRED_USE_DOUBLE" : "", vector_width, extra);
    return CLRED_OK;
}

/* The disk cache entry of a program (path, 1100 bytes) and its key: the
 * driver's binary, or on a driver that keeps programs the marker, which
 * vouches for the driver's cache it was made beside. */
static uint64_t entry_path(const clred_ctx *ctx, const char *dir, const char *source, const char *options,
                           int driver, char *path)
{
    uint64_t key = cache_key(ctx, source, options);
    if (driver) {
        const char *pocl_dir = getenv("POCL_CACHE_DIR");
        pocl_dir = pocl_dir ? pocl_dir : "";
        key = clred_hash(pocl_dir, strlen(pocl_dir), key);
    }
    snprintf(path, 1100, "%s/%016llx.%s", dir, (unsigned long long)key, driver ? "built" : "bin");
    return key;
}

/* The advisory lock of a cache entry (released by closing it), or -1. One
 * process or thread compiles a missing entry while the others wait for it
 * and load it (parallel tests, a batch of commands started at once, a
 * build ahead in another context) instead of each compiling the same
 * program; it is released by the kernel if its holder dies. flock locks
 * belong to the open file, so two threads of one process exclude each
 * other too. */
static int lock_entry(const char *dir, const char *path)
{
    char lock_path[1120];
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    make_dirs(dir);
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock >= 0 && flock(lock, LOCK_EX) != 0) {
        close(lock);
        lock = -1;
    }
    return lock;
}

/* Builds (or loads from the disk cache) one program into a new entry not
 * yet in the context's list. Safe to run in several threads at once. */
static clred_status make_program(clred_ctx *ctx, const char *family, const char *extra, program_entry **out)
{
    char *source = NULL, options[1024];
    CLRED_TRY(program_text(ctx, family, extra, &source, options));

    cl_program program = NULL;
    double t0 = clred_now(), c0 = clred_thread_cpu();
    const char *dir = clred_cache_dir();
    int driver = driver_keeps_programs(ctx);
    char path[1100] = "";
    uint64_t key = 0;
    int from_cache = 0, lock = -1;
    if (dir) {
        key = entry_path(ctx, dir, source, options, driver, path);
        if (driver)
            from_cache = access(path, F_OK) == 0;
        else
            from_cache = (program = load_cached(ctx, path, key, options)) != NULL;
    }
    if (!from_cache && dir) {
        /* without a lock (a read-only cache) every process compiles for
         * itself, as before */
        lock = lock_entry(dir, path);
        if (lock >= 0) {
            if (driver)
                from_cache = access(path, F_OK) == 0;
            else
                from_cache = (program = load_cached(ctx, path, key, options)) != NULL;
        }
    }
    if (!program) {
        /* On POCL with its marker present this is a hit in POCL's cache. */
        clred_status st = build_from_source(ctx, ctx->context, family, source, options, &program);
        if (st == CLRED_OK && dir && !from_cache) {
            if (driver)
                mark_built(dir, path);
            else
                store_cached(program, dir, path, key);
        }
        if (st != CLRED_OK) {
            if (lock >= 0)
                close(lock);
            free(source);
            return st;
        }
    }
    if (lock >= 0)
        close(lock); /* releases the flock */
    free(source);
    clred_log_build(family, options, from_cache ? "cache" : "compiled", clred_now() - t0, clred_thread_cpu() - c0);

    program_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->family = strdup(family)) || !(e->options = strdup(extra))) {
        if (e) {
            free(e->family);
            free(e);
        }
        clReleaseProgram(program);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory building kernels");
    }
    e->program = program;
    e->key = key;
    *out = e;
    return CLRED_OK;
}

static void free_entry(program_entry *p)
{
    kernel_entry *k = p->kernels;
    while (k) {
        kernel_entry *kn = k->next;
        clReleaseKernel(k->kernel);
        free(k->name);
        free(k->shapes);
        free(k);
        k = kn;
    }
    clReleaseProgram(p->program);
    free(p->family);
    free(p->options);
    free(p);
}

/* ---- groups of families in one program
 *
 * A program costs a driver a fixed part besides its source: on POCL 3.1
 * about 0.09 CPU s to build (its OpenCL C headers, its kernel library) and
 * about 0.025 s to find again in its cache in each further context or
 * process, even for a one-line kernel. A night builds ten programs, and a
 * helper compiling ahead for it loads seven of them again. Families always
 * used together are therefore built as one program where the caller says so.
 * A kernel is the same code in either program (a driver compiles each
 * kernel with what it calls, not with the whole program). */

/* Whether family is one of group's '+'-separated members. */
static int group_has(const char *group, const char *family)
{
    char name[64];
    for (const char *m = group; *m;) {
        m = next_member(m, name);
        if (strcmp(name, family) == 0)
            return 1;
    }
    return 0;
}

/* The group family belongs to in ctx, or NULL. */
static const char *group_of(const clred_ctx *ctx, const char *family)
{
    for (size_t i = 0; i < sizeof ctx->program_groups / sizeof *ctx->program_groups; i++)
        if (ctx->program_groups[i] && group_has(ctx->program_groups[i], family))
            return ctx->program_groups[i];
    return NULL;
}

void clred_programs_group(clred_ctx *ctx, const char *group)
{
    size_t slots = sizeof ctx->program_groups / sizeof *ctx->program_groups, free_slot = slots;
    for (size_t i = 0; i < slots; i++) {
        char *g = ctx->program_groups[i];
        if (g && strcmp(g, group) == 0)
            return;
        int overlaps = 0;
        char name[64];
        for (const char *m = group; g && *m && !overlaps;) {
            m = next_member(m, name);
            overlaps = group_has(g, name);
        }
        if (overlaps) {
            free(g);
            ctx->program_groups[i] = g = NULL;
        }
        if (!g && free_slot == slots)
            free_slot = i;
    }
    if (free_slot < slots)
        ctx->program_groups[free_slot] = strdup(group);
}

static clred_status get_program(clred_ctx *ctx, const char *family, const char *extra, program_entry **out)
{
    if (!extra)
        extra = "";
    const char *group = *extra ? NULL : group_of(ctx, family);
    if (group)
        family = group;
    if ((*out = find_program(ctx, family, extra)))
        return CLRED_OK;
    CLRED_TRY(make_program(ctx, family, extra, out));
    (*out)->next = ctx->programs;
    ctx->programs = *out;
    return CLRED_OK;
}

/* ---- building ahead, in parallel */

/* Host threads that compile at once: a driver compiles each program in one
 * thread, so a command that needs several compiles them side by side on the
 * host's cores, whatever the device. */
#define PREFETCH_THREADS_MAX 8

static size_t host_threads(size_t wanted, size_t n)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t t = wanted ? wanted : cores > 1 ? (size_t)cores : 1;
    t = t > n ? n : t;
    return t > PREFETCH_THREADS_MAX ? PREFETCH_THREADS_MAX : t;
}

/* Puts one program (default options) into the disk cache by building it in
 * context, a context of this thread's own on ctx's device; a program the
 * cache holds is left alone. Only the disk cache carries the result to ctx,
 * whose thread finds it there when it needs the program, or waits on the
 * entry's lock while it is being built. Failures are left for clred_kernel
 * to report when the program is used; so is a cache that cannot be locked
 * (read-only), where building ahead could not store anything. */
static void build_into_cache(const clred_ctx *ctx, cl_context context, const char *dir, const char *family)
{
    char *source = NULL, options[1024], path[1100];
    if (program_text(ctx, family, "", &source, options) != CLRED_OK)
        return;
    int driver = driver_keeps_programs(ctx);
    uint64_t key = entry_path(ctx, dir, source, options, driver, path);
    int lock = -1;
    if (access(path, F_OK) != 0 && (lock = lock_entry(dir, path)) >= 0 && access(path, F_OK) != 0) {
        double t0 = clred_now(), c0 = clred_thread_cpu();
        cl_program program;
        if (build_from_source(ctx, context, family, source, options, &program) == CLRED_OK) {
            if (driver)
                mark_built(dir, path);
            else
                store_cached(program, dir, path, key);
            clReleaseProgram(program);
            clred_log_build(family, options, "compiled", clred_now() - t0, clred_thread_cpu() - c0);
        }
    }
    if (lock >= 0)
        close(lock); /* releases the flock */
    free(source);
}

struct clred_build_ahead {
    const clred_ctx *ctx;
    char dir[1024];
    const char *families[32];
    size_t n;
    _Atomic size_t next;
    cl_context shared; /* the threads' one context, or NULL: one each */
    pthread_t threads[PREFETCH_THREADS_MAX];
    size_t started;
};

/* A new context on ctx's device, or NULL. */
static cl_context helper_context(const clred_ctx *ctx)
{
    cl_platform_id platform;
    cl_int err = clGetDeviceInfo(ctx->device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)platform, 0};
    return err == CL_SUCCESS ? clCreateContext(props, 1, &ctx->device, NULL, NULL, &err) : NULL;
}

/* Why contexts other than ctx's: POCL (3.x) compiles one program at a time
 * per context (each holds one LLVM context behind a lock), and the
 * work-group functions of launched kernels one at a time per process.
 * Programs built in a context per thread compile beside each other and
 * beside ctx's own launches, and come back to ctx as hits in POCL's cache
 * (tens of ms). Other drivers share one context among the threads (a GPU's
 * context holds device memory) and hand the binaries over in clred's
 * cache. */
static void *build_ahead_worker(void *arg)
{
    clred_build_ahead *b = arg;
    cl_context context = b->shared ? b->shared : helper_context(b->ctx);
    if (!context)
        return NULL;
    for (size_t i; (i = b->next++) < b->n;)
        build_into_cache(b->ctx, context, b->dir, b->families[i]);
    if (context != b->shared)
        clReleaseContext(context);
    return NULL;
}

static void free_build_ahead(clred_build_ahead *b)
{
    if (b->shared)
        clReleaseContext(b->shared);
    free(b);
}

/* The build ahead (malloc'd, threads started) or NULL if none could start. */
static clred_build_ahead *start_build_ahead(const clred_ctx *ctx, const char *const *families, size_t n,
                                            size_t threads)
{
    const char *dir = clred_cache_dir();
    clred_build_ahead *b = dir && n ? calloc(1, sizeof *b) : NULL;
    if (!b)
        return NULL;
    b->ctx = ctx;
    snprintf(b->dir, sizeof b->dir, "%s", dir);
    b->n = n < sizeof b->families / sizeof *b->families ? n : sizeof b->families / sizeof *b->families;
    memcpy(b->families, families, b->n * sizeof *families);
    if (!is_pocl(ctx) && !(b->shared = helper_context(ctx))) {
        free(b);
        return NULL;
    }
    size_t nthreads = host_threads(threads, b->n);
    while (b->started < nthreads && pthread_create(&b->threads[b->started], NULL, build_ahead_worker, b) == 0)
        b->started++;
    if (!b->started) {
        free_build_ahead(b);
        return NULL;
    }
    return b;
}

int clred_programs_build_ahead(clred_ctx *ctx, const char *const *families, size_t n, size_t threads)
{
    clred_programs_wait_ahead(ctx);
    ctx->ahead = start_build_ahead(ctx, families, n, threads);
    return ctx->ahead != NULL;
}

void clred_programs_wait_ahead(clred_ctx *ctx)
{
    clred_build_ahead *b = ctx->ahead;
    if (!b)
        return;
    for (size_t t = 0; t < b->started; t++)
        pthread_join(b->threads[t], NULL);
    free_build_ahead(b);
    ctx->ahead = NULL;
}

/* Without a disk cache to carry programs between contexts, the prefetch
 * builds into ctx itself from several threads (clBuildProgram is thread
 * safe; POCL then compiles them one after the other). */
typedef struct {
    clred_ctx *ctx;
    const char *const *families;
    size_t n;
    _Atomic size_t next;
    pthread_mutex_t lock; /* guards ctx->programs */
} prefetch_job;

static void *prefetch_worker(void *arg)
{
    prefetch_job *j = arg;
    for (size_t i; (i = j->next++) < j->n;) {
        pthread_mutex_lock(&j->lock);
        int have = find_program(j->ctx, j->families[i], "") != NULL;
        pthread_mutex_unlock(&j->lock);
        program_entry *e;
        /* A failure is left for clred_kernel to report when the program is used. */
        if (have || make_program(j->ctx, j->families[i], "", &e) != CLRED_OK)
            continue;
        pthread_mutex_lock(&j->lock);
        if (find_program(j->ctx, j->families[i], "")) {
            free_entry(e); /* the same family twice in the list */
        } else {
            e->next = j->ctx->programs;
            j->ctx->programs = e;
        }
        pthread_mutex_unlock(&j->lock);
    }
    return NULL;
}

static void prefetch_into_ctx(clred_ctx *ctx, const char *const *families, size_t n)
{
    size_t nthreads = host_threads(0, n);
    prefetch_job j = {.ctx = ctx, .families = families, .n = n, .next = 0};
    pthread_mutex_init(&j.lock, NULL);
    pthread_t threads[PREFETCH_THREADS_MAX];
    size_t started = 0;
    for (; started + 1 < nthreads; started++)
        if (pthread_create(&threads[started], NULL, prefetch_worker, &j) != 0)
            break;
    prefetch_worker(&j); /* this thread works too; alone if no thread could start */
    for (size_t t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    pthread_mutex_destroy(&j.lock);
}

void clred_programs_prefetch(clred_ctx *ctx, const char *const *families, size_t n)
{
    if (n == 0)
        return;
    if (clred_programs_build_ahead(ctx, families, n, 0))
        clred_programs_wait_ahead(ctx);
    else
        prefetch_into_ctx(ctx, families, n);
}

clred_status clred_kernel(clred_ctx *ctx, const char *family, const char *options, const char *name,
                          cl_kernel *kernel)
{
    program_entry *p;
    CLRED_TRY(get_program(ctx, family, options, &p));
    for (kernel_entry *k = p->kernels; k; k = k->next)
        if (strcmp(k->name, name) == 0) {
            *kernel = k->kernel;
            return CLRED_OK;
        }
    cl_int err;
    cl_kernel k = clCreateKernel(p->program, name, &err);
    if (err != CL_SUCCESS) {
        char msg[200];
        snprintf(msg, sizeof msg, "creating kernel %s from kernels/%s.cl", name, family);
        return clred_fail_cl(err, msg);
    }
    kernel_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->name = strdup(name))) {
        free(e);
        clReleaseKernel(k);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory creating kernels");
    }
    e->kernel = k;
    e->next = p->kernels;
    p->kernels = e;
    *kernel = k;
    return CLRED_OK;
}

/* ---- first launches: one process compiles each work-group function
 *
 * POCL compiles a kernel's work-group function at its first launch with a
 * new shape, in the launching process, and keeps it in its disk cache keyed
 * by the program, the kernel, the local size, whether the global offset is
 * zero (always, for clred_run) and whether every grid dimension is below
 * 65535 work-items ("smallgrid", POCL 3.x's grid_width_specialization_limit
 * for CPU devices). Two processes launching the same new shape at once (a
 * helper compiling ahead, parallel tests, a batch of commands) would both
 * compile it; instead the first launch of a shape in a context takes an
 * advisory lock named after it, released when the launch completes, so a
 * second process waits for the first's compile and then finds it in POCL's
 * cache. The rule only decides who compiles: were POCL to key its cache
 * differently, a shape would at worst be compiled twice, or wait for a
 * compile it does not use; what a kernel computes never depends on it. */

#define POCL_SMALL_GRID_LIMIT 65535

static uint64_t launch_shape(const char *name, cl_uint dims, const size_t *global, const size_t *local)
{
    uint64_t l[4] = {dims, 0, 0, 0};
    size_t width = 0;
    for (cl_uint d = 0; d < dims && d < 3; d++) {
        l[d + 1] = local ? local[d] : 0;
        width = global[d] > width ? global[d] : width;
    }
    uint64_t h = clred_hash(name, strlen(name), 0);
    h = clred_hash(l, sizeof l, h);
    int small = width < POCL_SMALL_GRID_LIMIT;
    h = clred_hash(&small, sizeof small, h);
    /* POCL picks the local size of a NULL one from the global size */
    for (cl_uint d = 0; !local && d < dims && d < 3; d++)
        h = clred_hash(&global[d], sizeof global[d], h);
    return h;
}

static kernel_entry *find_kernel_entry(const clred_ctx *ctx, cl_kernel k, uint64_t *program_key)
{
    for (program_entry *p = ctx->programs; p; p = p->next)
        for (kernel_entry *e = p->kernels; e; e = e->next)
            if (e->kernel == k) {
                *program_key = p->key;
                return e;
            }
    return NULL;
}

int clred_first_launch_lock(clred_ctx *ctx, cl_kernel k, cl_uint dims, const size_t *global, const size_t *local)
{
    uint64_t program_key = 0;
    kernel_entry *e = find_kernel_entry(ctx, k, &program_key);
    if (!e || !program_key)
        return -1;
    uint64_t shape = launch_shape(e->name, dims, global, local);
    for (size_t i = 0; i < e->nshapes; i++)
        if (e->shapes[i] == shape)
            return -1; /* launched before: compiled, or being compiled, by this context */
    uint64_t *grown = realloc(e->shapes, (e->nshapes + 1) * sizeof *grown);
    if (!grown)
        return -1;
    e->shapes = grown;
    e->shapes[e->nshapes++] = shape;
    /* only a new shape asks the environment */
    const char *dir = clred_cache_dir();
    if (!dir || !driver_keeps_programs(ctx))
        return -1;
    char path[1100];
    snprintf(path, sizeof path, "%s/%016llx.wg", dir, (unsigned long long)clred_hash(&shape, sizeof shape, program_key));
    return lock_entry(dir, path);
}

/* ---- compiling ahead in a helper process (clred.h) */

/* The marker of work named what done ahead: keyed like a program marker
 * (device, driver, POCL's cache) and by every embedded kernel's text, so a
 * changed kernel makes the work worth doing again. */
static void ahead_marker(const clred_ctx *ctx, const char *dir, const char *what, char path[1100])
{
    uint64_t h = cache_key(ctx, what, "compile ahead");
    for (size_t i = 0; i < clred_embedded_kernel_count; i++)
        h = clred_hash(clred_embedded_kernels[i].source, strlen(clred_embedded_kernels[i].source), h);
    const char *pocl_dir = getenv("POCL_CACHE_DIR");
    pocl_dir = pocl_dir ? pocl_dir : "";
    h = clred_hash(pocl_dir, strlen(pocl_dir), h);
    snprintf(path, 1100, "%s/%016llx.ahead", dir, (unsigned long long)h);
}

int clred_compile_ahead_pays(const clred_ctx *ctx, const char *what)
{
    const char *env = getenv("CLRED_COMPILE_AHEAD");
    const char *dir = clred_cache_dir();
    if ((env && *env == '0') || !dir || !ctx->info.is_cpu || !driver_keeps_programs(ctx) ||
        sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return 0;
    char path[1100];
    ahead_marker(ctx, dir, what, path);
    return access(path, F_OK) != 0;
}

void clred_compile_ahead_done(const clred_ctx *ctx, const char *what)
{
    const char *dir = clred_cache_dir();
    if (!dir)
        return;
    char path[1100];
    ahead_marker(ctx, dir, what, path);
    make_dirs(dir);
    mark_built(dir, path);
}

void clred_programs_release(clred_ctx *ctx)
{
    clred_programs_wait_ahead(ctx);
    for (size_t i = 0; i < sizeof ctx->program_groups / sizeof *ctx->program_groups; i++) {
        free(ctx->program_groups[i]);
        ctx->program_groups[i] = NULL;
    }
    program_entry *p = ctx->programs;
    while (p) {
        program_entry *next = p->next;
        free_entry(p);
        p = next;
    }
    ctx->programs = NULL;
}
