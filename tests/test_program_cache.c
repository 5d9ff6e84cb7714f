/* The on-disk kernel cache heals itself: an entry that is truncated, has
 * flipped bytes, a wrong header or is empty is detected before the driver
 * sees it, deleted and rebuilt, and the kernel still runs correctly; an
 * unwritable cache directory gives a warning and kernels still build.
 * Processes that start together on an empty cache compile a program once:
 * one builds it under the entry's lock, the others wait and load it. A
 * family that does not accumulate (arith) is one program for double and
 * float accumulation: a float context loads the double context's entry.
 * On POCL the entry is a marker and the program lives in POCL's cache
 * (programs.c, driver_keeps_programs): the concurrent and float checks run
 * that way too, and CLRED_PROGRAM_BINARIES=1 runs the binary cache's checks
 * on POCL. A program built ahead in another context reaches a context
 * through the cache, in both modes, and so does a group of families built as
 * one program. A kernel's first launch with a
 * work-group shape takes that shape's lock where POCL compiles it, and a
 * helper compiling ahead pays until its work is marked done. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

static char cache[1024];
/* What the device's default mode left: a marker, a binary. */
static int default_marker, default_binary;

/* The one entry with this extension in the cache directory (the test
 * builds one program). */
static int entry_path_ext(char *path, size_t size, const char *ext)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls %s/*.%s 2>/dev/null | head -1", cache, ext);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    int ok = fgets(path, (int)size, p) != NULL;
    pclose(p);
    if (ok)
        path[strcspn(path, "\n")] = '\0';
    return ok && *path;
}

static int entry_path(char *path, size_t size) { return entry_path_ext(path, size, "bin"); }

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* The entry starts with the magic and its length field matches the file. */
static int entry_whole(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    unsigned char h[32];
    int ok = fread(h, 1, 32, f) == 32;
    fclose(f);
    uint64_t len;
    memcpy(&len, h + 16, 8);
    return ok && memcmp(h, "CLREDPB1", 8) == 0 && (long)len + 32 == file_size(path);
}

/* Builds arith in ctx and checks scale_offset computes 2x+1. */
static void run_kernel_on(clred_ctx *ctx, const char *what)
{
    cl_kernel k;
    clred_status s = clred_kernel(ctx, "arith", NULL, "scale_offset", &k);
    CHECK_MSG(s == CLRED_OK, "%s: building: %s", what, clred_last_error());
    if (s == CLRED_OK) {
        float host[5] = {0, 1, 2, 3, -4};
        cl_mem buf;
        CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, sizeof host, host, &buf, "test"));
        float scale = 2.0f, offset = 1.0f;
        cl_uint count = 5;
        CHECK_OK(clred_args(k, "scale_offset", CLRED_ARG(buf), CLRED_ARG(scale), CLRED_ARG(offset), CLRED_ARG(count),
                            (size_t)0));
        size_t global = count;
        CHECK_OK(clred_run(ctx, k, "scale_offset", 1, &global, NULL));
        CHECK_OK(clred_download(ctx, buf, 0, sizeof host, host));
        for (int i = 0; i < 5; i++) /* exact: small integers */
            CHECK_MSG(host[i] == (float)(2 * (i == 4 ? -4 : i) + 1), "%s: value %d is %g", what, i, host[i]);
        clReleaseMemObject(buf);
    }
}

/* The same in a fresh context. */
static void run_kernel(const char *what)
{
    clred_ctx *ctx = harness_ctx();
    run_kernel_on(ctx, what);
    clred_ctx_destroy(ctx);
}

typedef void (*damage_fn)(const char *path, long size);

static void truncate_half(const char *path, long size) { CHECK(truncate(path, size / 2) == 0); }
static void truncate_header(const char *path, long size) { (void)size; CHECK(truncate(path, 12) == 0); }
static void empty(const char *path, long size) { (void)size; CHECK(truncate(path, 0) == 0); }
static void flip_at(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
}
static void flip_payload(const char *path, long size) { flip_at(path, size / 2); flip_at(path, size - 3); }
static void flip_magic(const char *path, long size) { (void)size; flip_at(path, 1); }
static void flip_length(const char *path, long size) { (void)size; flip_at(path, 17); }
static void garbage(const char *path, long size)
{
    FILE *f = fopen(path, "wb");
    for (long i = 0; i < size; i++)
        fputc((int)((i * 7919) & 0xff), f);
    fclose(f);
}
static void appended(const char *path, long size)
{
    (void)size;
    FILE *f = fopen(path, "ab");
    fputs("trailing bytes", f);
    fclose(f);
}

/* Lines of the build log saying "compiled" / "cache". */
static void count_log(const char *log, int *compiled, int *cached)
{
    *compiled = *cached = 0;
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    char line[1500];
    while (fgets(line, sizeof line, f)) {
        *compiled += strstr(line, "\tcompiled\t") != NULL;
        *cached += strstr(line, "\tcache\t") != NULL;
    }
    fclose(f);
}

/* An empty cache in dir, its build log in dir.log (written into log), in
 * either cache mode. */
static void empty_cache(const char *dir, int binaries, char *log, size_t size)
{
    setenv("CLRED_PROGRAM_BINARIES", binaries ? "1" : "", 1);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    snprintf(log, size, "%s.log", dir);
    remove(log);
    setenv("CLRED_CACHE_DIR", dir, 1);
    setenv("CLRED_BUILD_LOG", log, 1);
}

/* NPROC processes build arith at once on an empty cache; binaries: clred
 * keeps the driver's binary (else whatever the device's default is). */
#define NPROC 4
static void concurrent_processes(const char *dir, int binaries)
{
    char log[1200];
    empty_cache(dir, binaries, log, sizeof log);
    fflush(NULL);
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            run_kernel("concurrent process");
            _exit(harness_finish());
        }
        CHECK(pids[i] > 0);
    }
    for (int i = 0; i < NPROC; i++) {
        int status = -1;
        CHECK(pids[i] > 0 && waitpid(pids[i], &status, 0) == pids[i]);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "process %d failed (status %d)", i, status);
    }
    unsetenv("CLRED_BUILD_LOG");
    int compiled, cached;
    count_log(log, &compiled, &cached);
    CHECK_MSG(compiled == 1 && cached == NPROC - 1, "%d processes on an empty cache: %d compiled, %d loaded it",
              NPROC, compiled, cached);
    char path[1100];
    snprintf(cache, sizeof cache, "%.1000s", dir);
    if (binaries)
        CHECK(entry_path(path, sizeof path) && entry_whole(path));
    else {
        default_marker = entry_path_ext(path, sizeof path, "built");
        default_binary = entry_path(path, sizeof path);
    }
    unsetenv("CLRED_PROGRAM_BINARIES");
}

/* A float-accumulation context on the cache dir that concurrent_processes
 * filled loads arith from it instead of compiling a second variant. */
static void shared_across_accumulation(const char *dir)
{
    char log[1200];
    snprintf(log, sizeof log, "%s.float.log", dir);
    remove(log);
    setenv("CLRED_CACHE_DIR", dir, 1);
    setenv("CLRED_BUILD_LOG", log, 1);
    setenv("CLRED_FLOAT_ACCUM", "1", 1);
    run_kernel("float accumulation");
    unsetenv("CLRED_FLOAT_ACCUM");
    unsetenv("CLRED_BUILD_LOG");
    int compiled, cached;
    count_log(log, &compiled, &cached);
    CHECK_MSG(compiled == 0 && cached == 1, "float accumulation: arith compiled %d times, loaded %d (expected 0, 1)",
              compiled, cached);
}

/* A build ahead (a thread with a context of its own) puts arith into an
 * empty cache; the context it was started for then loads it from there
 * instead of compiling it, and the kernel computes right. */
static void built_ahead(const char *dir, int binaries)
{
    char log[1200];
    empty_cache(dir, binaries, log, sizeof log);
    clred_ctx *ctx = harness_ctx();
    static const char *const families[] = {"arith"};
    CHECK_MSG(clred_programs_build_ahead(ctx, families, 1, 1), "binaries %d: no build ahead started", binaries);
    clred_programs_wait_ahead(ctx);
    run_kernel_on(ctx, "built ahead");
    clred_ctx_destroy(ctx);
    unsetenv("CLRED_BUILD_LOG");
    int compiled, cached;
    count_log(log, &compiled, &cached);
    CHECK_MSG(compiled == 1 && cached == 1, "binaries %d: built ahead %d times, loaded %d (expected 1, 1)", binaries,
              compiled, cached);
    unsetenv("CLRED_PROGRAM_BINARIES");
}

/* The program a kernel belongs to. */
static cl_program program_of(cl_kernel k)
{
    cl_program p = NULL;
    CHECK(clGetKernelInfo(k, CL_KERNEL_PROGRAM, sizeof p, &p, NULL) == CL_SUCCESS);
    return p;
}

/* Families grouped in a context (clred_programs_group) build as one
 * program, built ahead and loaded once: each member's kernels come from it
 * and compute what they compute alone; with extra options a family builds
 * apart; a group naming a family that does not exist fails with its name;
 * a family joins one group at a time. */
static void grouped_families(const char *dir, int binaries)
{
    char log[1200];
    empty_cache(dir, binaries, log, sizeof log);
    clred_ctx *ctx = harness_ctx();
    clred_programs_group(ctx, "sample+arith");
    static const char *const families[] = {"sample+arith"};
    CHECK_MSG(clred_programs_build_ahead(ctx, families, 1, 1), "binaries %d: no build ahead started", binaries);
    clred_programs_wait_ahead(ctx);
    run_kernel_on(ctx, "grouped");
    cl_kernel arith, sample, apart;
    CHECK_OK(clred_kernel(ctx, "arith", NULL, "scale_offset", &arith));
    CHECK_OK(clred_kernel(ctx, "sample", NULL, "gather_samples", &sample));
    CHECK_MSG(program_of(arith) == program_of(sample), "binaries %d: grouped families in two programs", binaries);
    unsetenv("CLRED_BUILD_LOG");
    int compiled, cached;
    count_log(log, &compiled, &cached);
    CHECK_MSG(compiled == 1 && cached == 1, "binaries %d: the group built %d times, loaded %d (expected 1, 1)",
              binaries, compiled, cached);
    CHECK_OK(clred_kernel(ctx, "arith", "-DCLRED_TEST_APART=1", "scale_offset", &apart));
    CHECK_MSG(program_of(apart) != program_of(arith), "binaries %d: arith with extra options in the group",
              binaries);
    clred_programs_group(ctx, "arith+cube");
    size_t groups = 0, new_one = 0;
    for (size_t i = 0; i < sizeof ctx->program_groups / sizeof *ctx->program_groups; i++) {
        groups += ctx->program_groups[i] != NULL;
        new_one += ctx->program_groups[i] && !strcmp(ctx->program_groups[i], "arith+cube");
    }
    CHECK_MSG(groups == 1 && new_one == 1, "a family's new group: %zu groups, the new one %zu times (expected 1, 1)",
              groups, new_one);
    clred_ctx_destroy(ctx);

    ctx = harness_ctx();
    clred_programs_group(ctx, "arith+no_such_family");
    CHECK_MSG(clred_kernel(ctx, "arith", NULL, "scale_offset", &arith) != CLRED_OK &&
                  strstr(clred_last_error(), "no_such_family"),
              "a group with an unknown family: %s", clred_last_error());
    clred_ctx_destroy(ctx);
    unsetenv("CLRED_PROGRAM_BINARIES");
}

/* Files in dir whose names end in suffix. */
static int count_suffix(const char *dir, const char *suffix)
{
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -c -- '%s$'", dir, suffix);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    return n;
}

/* The first launch of a work-group shape in a context takes the shape's lock
 * (a ".wg.lock" file) where POCL compiles at first launch into the cache it
 * shares with other processes; a second launch of the same shape takes none,
 * and a driver's binaries in clred's cache need none. */
static void first_launch_lock(const char *dir, int binaries, int pocl)
{
    char log[1200];
    empty_cache(dir, binaries, log, sizeof log);
    clred_ctx *ctx = harness_ctx();
    run_kernel_on(ctx, "first launch");
    run_kernel_on(ctx, "second launch");
    clred_ctx_destroy(ctx);
    int want = pocl && !binaries;
    int n = count_suffix(dir, ".wg.lock");
    CHECK_MSG(n == want, "binaries %d: %d shape locks, expected %d", binaries, n, want);
    unsetenv("CLRED_BUILD_LOG");
    unsetenv("CLRED_PROGRAM_BINARIES");
}

/* A helper compiling ahead pays on a POCL CPU device with both caches on and
 * more than one core, until its work is marked done, per name of the work;
 * CLRED_COMPILE_AHEAD=0 turns it off. */
static void compile_ahead_marker(const char *dir, int pocl)
{
    char log[1200];
    empty_cache(dir, 0, log, sizeof log);
    unsetenv("CLRED_BUILD_LOG");
    unsetenv("CLRED_COMPILE_AHEAD"); /* the suite runs with it 0 (tests/CMakeLists.txt) */
    clred_ctx *ctx = harness_ctx();
    int want = pocl && clred_ctx_device(ctx)->is_cpu && sysconf(_SC_NPROCESSORS_ONLN) > 1;
    CHECK_MSG(clred_compile_ahead_pays(ctx, "work a") == want, "an empty cache: pays %d, expected %d",
              clred_compile_ahead_pays(ctx, "work a"), want);
    clred_compile_ahead_done(ctx, "work a");
    CHECK_MSG(!clred_compile_ahead_pays(ctx, "work a"), "work a done, and still pays");
    CHECK_MSG(clred_compile_ahead_pays(ctx, "work b") == want, "work b: pays %d after work a, expected %d",
              clred_compile_ahead_pays(ctx, "work b"), want);
    setenv("CLRED_COMPILE_AHEAD", "0", 1);
    CHECK_MSG(!clred_compile_ahead_pays(ctx, "work b"), "CLRED_COMPILE_AHEAD=0, and it pays");
    unsetenv("CLRED_COMPILE_AHEAD");
    clred_ctx_destroy(ctx);
}

int main(void)
{
    /* First, while this process has not touched OpenCL: a driver's threads
     * do not survive fork. */
    char concurrent[1000];
    snprintf(concurrent, sizeof concurrent, "%.900s/concurrent", harness_tmpdir("test_program_cache"));
    char concurrent_bin[1000];
    snprintf(concurrent_bin, sizeof concurrent_bin, "%.900s/concurrent-bin", harness_tmpdir("test_program_cache"));
    concurrent_processes(concurrent_bin, 1);
    concurrent_processes(concurrent, 0);
    shared_across_accumulation(concurrent);

    /* Now that this process may use OpenCL: POCL keeps the program in its
     * own cache and clred only a marker; other drivers, the binary. */
    clred_ctx *probe = harness_ctx();
    const char *pocl_cache = getenv("POCL_KERNEL_CACHE");
    int pocl = strcmp(clred_ctx_device(probe)->platform, "Portable Computing Language") == 0 &&
               !(pocl_cache && *pocl_cache == '0');
    clred_ctx_destroy(probe);
    CHECK_MSG(pocl ? default_marker && !default_binary : default_binary && !default_marker,
              "%s: the default cache holds a marker %d, a binary %d", pocl ? "POCL" : "not POCL", default_marker,
              default_binary);

    char ahead[1000];
    snprintf(ahead, sizeof ahead, "%.900s/ahead", harness_tmpdir("test_program_cache"));
    built_ahead(ahead, 0);
    snprintf(ahead, sizeof ahead, "%.900s/ahead-bin", harness_tmpdir("test_program_cache"));
    built_ahead(ahead, 1);
    snprintf(ahead, sizeof ahead, "%.900s/grouped", harness_tmpdir("test_program_cache"));
    grouped_families(ahead, 0);
    snprintf(ahead, sizeof ahead, "%.900s/grouped-bin", harness_tmpdir("test_program_cache"));
    grouped_families(ahead, 1);

    char launch[1000];
    snprintf(launch, sizeof launch, "%.900s/launch", harness_tmpdir("test_program_cache"));
    first_launch_lock(launch, 0, pocl);
    first_launch_lock(launch, 1, pocl);
    compile_ahead_marker(launch, pocl);

    /* The rest damages binary entries. */
    setenv("CLRED_PROGRAM_BINARIES", "1", 1);

    snprintf(cache, sizeof cache, "%s/cache", harness_tmpdir("test_program_cache"));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
    CHECK(system(cmd) == 0);
    setenv("CLRED_CACHE_DIR", cache, 1);

    run_kernel("fresh cache");
    char path[1100];
    CHECK(entry_path(path, sizeof path));
    long size = file_size(path);
    CHECK(size > 32);
    CHECK(entry_whole(path));
    CHECK(clred_cache_warning() == NULL);

    static const struct {
        const char *name;
        damage_fn damage;
    } cases[] = {{"truncated to half", truncate_half}, {"truncated in the header", truncate_header},
                 {"empty", empty}, {"flipped payload bytes", flip_payload}, {"flipped magic", flip_magic},
                 {"flipped length", flip_length}, {"garbage", garbage}, {"trailing bytes", appended}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cases[i].damage(path, size);
        run_kernel(cases[i].name);
        /* Rebuilt and stored again, whole (the driver's binary may differ in size between a build from
         * source and one from its own cache, so the header is checked, not the size). */
        CHECK_MSG(entry_whole(path), "%s: entry not stored again whole", cases[i].name);
        size = file_size(path);
    }
    run_kernel("healed cache");

    /* A cache directory below a regular file cannot be created. */
    char blocker[1100], below[1200];
    snprintf(blocker, sizeof blocker, "%s/blocker", cache);
    FILE *f = fopen(blocker, "w");
    fclose(f);
    snprintf(below, sizeof below, "%s/cache", blocker);
    setenv("CLRED_CACHE_DIR", below, 1);
    run_kernel("unwritable cache");
    const char *w = clred_cache_warning();
    CHECK_MSG(w && strstr(w, below), "no warning naming %s: %s", below, w ? w : "(none)");
    return harness_finish();
}
