/* clred-bench: benchmark driver. `gen` writes synthetic frames; `run` times
 * clred's steps on them and writes JSON (see bench/README.md). */
#include <malloc.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

typedef struct {
    const char *name;
    clred_status (*run)(bench_run *, bench_results *);
} bench_step;

/* Steps in the order they run; copy and fma first, since the others are
 * reported as a fraction of its bandwidth or FLOP rate. A step plugs in here once its API exists. */
static const bench_step steps[] = {
    {"copy", bench_copy},
    {"fma", bench_fma},
    {"combine", bench_combine},
    {"memlimit", bench_memlimit},
    {"calibrate", bench_calibrate},
    {"stats", bench_stats},
    {"background", bench_background},
    {"cosmic", bench_cosmic},
    {"detect", bench_detect},
    {"register", bench_register},
    {"photometry", bench_photometry},
};

static void help(void)
{
    printf("usage: clred-bench device [--device N|NAME]\n"
           "       clred-bench gen --dir DIR --size N --depth K [--seed S] [--exptime T]\n"
           "       clred-bench run --dir DIR [--out DIR] [--json FILE] [--repeat R] [--ncal C]\n"
           "                       [--steps LIST] [--device N|NAME]\n\n"
           "device prints the device a run would use: type, name and platform.\n\n"
           "gen writes DIR/raw_NNN.fits (K raw frames of N x N), bias.fits, dark.fits (per\n"
           "second), flat.fits, pair_ref.fits + pair_mov.fits (shifted by a known offset) and\n"
           "single.fits (with cosmic rays).\n\n"
           "run times each step on those frames after one warm-up, keeping the best of R\n"
           "repetitions (default 3): wall time, kernel time and transfer time from OpenCL\n"
           "profiling, and bytes per second in kernels against the device's copy bandwidth.\n"
           "Outputs go to --out (default DIR/clred) for the peers to compare with; the\n"
           "JSON goes to --json (default stdout). Steps: copy,");
    for (size_t i = 1; i < sizeof steps / sizeof *steps; i++)
        printf("%s%s", steps[i].name, i + 1 < sizeof steps / sizeof *steps ? "," : "");
    printf(" (default all).\n\n"
           "example:\n"
           "  clred-bench gen --dir /tmp/b --size 2048 --depth 20\n"
           "  clred-bench run --dir /tmp/b --json /tmp/b/clred.json\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "clred-bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see clred-bench --help)\n");
    return 2;
}

static int parse_size(const char *text, size_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || v == 0 || !isdigit((unsigned char)text[0]))
        return 0;
    *out = (size_t)v;
    return 1;
}

static int exit_code(clred_status s) { return s == CLRED_ERR_USAGE ? 2 : s == CLRED_ERR_DEVICE ? 3 : 1; }

/* The device a run would use, as "type<TAB>name" (bench/run sizes its grid by it). */
static int cmd_device(int argc, char **argv)
{
    const char *spec = argc > 2 && strcmp(argv[1], "--device") == 0 ? argv[2] : NULL;
    clred_ctx *ctx = NULL;
    clred_status st = clred_ctx_create(spec, &ctx);
    if (st != CLRED_OK) {
        fprintf(stderr, "clred-bench device: %s\n", clred_last_error());
        return exit_code(st);
    }
    const clred_device_info *d = clred_ctx_device(ctx);
    printf("%s\t%s\t%s\n", d->is_gpu ? "gpu" : d->is_cpu ? "cpu" : "other", d->name, d->platform);
    clred_ctx_destroy(ctx);
    return 0;
}

static int cmd_gen(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, 0, 'd'},  {"size", required_argument, 0, 's'},
                                         {"depth", required_argument, 0, 'k'}, {"seed", required_argument, 0, 'r'},
                                         {"exptime", required_argument, 0, 't'}, {0, 0, 0, 0}};
    bench_gen_opts o = {0, 0, 1, 60.0};
    const char *dir = NULL;
    size_t seed = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            dir = optarg;
        else if (c == 's' && parse_size(optarg, &o.size))
            continue;
        else if (c == 'k' && parse_size(optarg, &o.depth))
            continue;
        else if (c == 'r' && parse_size(optarg, &seed))
            o.seed = seed;
        else if (c == 't' && (o.exptime = strtod(optarg, NULL)) > 0)
            continue;
        else
            return usage_error("gen: bad option or value near '%s'", optarg ? optarg : argv[optind - 1]);
    }
    if (!dir || !o.size || !o.depth)
        return usage_error("gen: %s", "--dir, --size and --depth are required");
    double t0 = clred_now();
    clred_status st = bench_generate(dir, &o);
    if (st != CLRED_OK) {
        fprintf(stderr, "clred-bench gen: %s\n", clred_last_error());
        return exit_code(st);
    }
    fprintf(stderr, "clred-bench gen: %zu frames of %zu x %zu in %s (%.1f s)\n", o.depth, o.size, o.size, dir,
            clred_now() - t0);
    return 0;
}

/* The stack's shape from the files gen wrote: the size of raw_000, the
 * depth from how many raw_NNN there are. */
static clred_status find_stack(bench_run *run)
{
    char path[BENCH_PATH];
    bench_raw_path(run, 0, path, sizeof path);
    clred_file_info info;
    CLRED_TRY(clred_file_info_read(path, &info));
    if (info.width != info.height)
        return clred_fail(CLRED_ERR_INPUT, "%s: %zu x %zu, expected a square frame from clred-bench gen", path,
                          info.width, info.height);
    run->size = info.width;
    struct stat sb;
    for (run->depth = 1;; run->depth++) {
        bench_raw_path(run, run->depth, path, sizeof path);
        if (stat(path, &sb) != 0)
            break;
    }
    return CLRED_OK;
}

static int step_selected(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return 1;
    return 0;
}

static int unknown_step(const char *list)
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", list);
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        int known = 0;
        for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
            known |= strcmp(tok, steps[i].name) == 0;
        if (!known)
            return usage_error("run: unknown step '%s'", tok);
    }
    return 0;
}

static void print_result(const bench_run *run, const bench_result *r)
{
    double gbps = r->kernel_s > 0 && r->model_bytes > 0 ? r->model_bytes / r->kernel_s * 1e-9 : 0.0;
    fprintf(stderr, "  %-10s %-7s wall %9.4f s  kernels %9.4f s  transfers %8.4f s", r->step, r->mode, r->wall_s,
            r->kernel_s, r->upload_s + r->download_s);
    if (gbps > 0)
        fprintf(stderr, "  %7.1f GB/s", gbps);
    if (gbps > 0 && run->copy_gbps > 0 && strcmp(r->step, "copy") != 0)
        fprintf(stderr, " = %3.0f%% of copy", 100.0 * gbps / run->copy_gbps);
    if (r->note[0])
        fprintf(stderr, "  [%s]", r->note);
    fputc('\n', stderr);
}

static int write_json(const char *json, const bench_run *run, const bench_results *results)
{
    FILE *f = json ? fopen(json, "w") : stdout;
    if (!f) {
        fprintf(stderr, "clred-bench run: %s: cannot write (%s)\n", json, strerror(errno));
        return 1;
    }
    bench_write_json(f, run, results);
    if (json && fclose(f) != 0) {
        fprintf(stderr, "clred-bench run: %s: writing failed\n", json);
        return 1;
    }
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, 0, 'd'},    {"out", required_argument, 0, 'o'},
        {"json", required_argument, 0, 'j'},   {"repeat", required_argument, 0, 'r'},
        {"ncal", required_argument, 0, 'n'},   {"steps", required_argument, 0, 's'},
        {"device", required_argument, 0, 'D'}, {0, 0, 0, 0}};
    bench_run run;
    memset(&run, 0, sizeof run);
    run.repeat = 3;
    const char *dir = NULL, *outdir = NULL, *json = NULL, *list = NULL, *device = NULL;
    size_t value = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd')
            dir = optarg;
        else if (c == 'o')
            outdir = optarg;
        else if (c == 'j')
            json = optarg;
        else if (c == 'r' && parse_size(optarg, &value))
            run.repeat = (int)value;
        else if (c == 'n' && parse_size(optarg, &value))
            run.ncal = value;
        else if (c == 's')
            list = optarg;
        else if (c == 'D')
            device = optarg;
        else
            return usage_error("run: bad option or value near '%s'", optarg ? optarg : argv[optind - 1]);
    }
    if (!dir)
        return usage_error("run: %s", "--dir is required");
    if (list && unknown_step(list))
        return 2;
    if (strlen(dir) >= BENCH_DIR - 64 || (outdir && strlen(outdir) >= BENCH_DIR - 64))
        return usage_error("run: %s", "--dir or --out is too long a path");
    snprintf(run.dir, sizeof run.dir, "%s", dir);
    if (outdir)
        snprintf(run.out, sizeof run.out, "%s", outdir);
    else
        snprintf(run.out, sizeof run.out, "%s/clred", dir);
    if (mkdir(run.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "clred-bench run: %s: cannot create (%s)\n", run.out, strerror(errno));
        return 1;
    }
    clred_status st = find_stack(&run);
    if (st != CLRED_OK) {
        fprintf(stderr, "clred-bench run: %s\n", clred_last_error());
        return exit_code(st);
    }
    if (run.ncal == 0 || run.ncal > run.depth)
        run.ncal = run.depth < 10 ? run.depth : 10;
    st = clred_ctx_create(device, &run.ctx);
    if (st != CLRED_OK) {
        fprintf(stderr, "clred-bench run: %s\n", clred_last_error());
        return exit_code(st);
    }
    fprintf(stderr, "clred-bench run: %zu x %zu x %zu on %s (%s)\n", run.depth, run.size, run.size,
            clred_ctx_device(run.ctx)->name, clred_ctx_device(run.ctx)->platform);
    bench_results results = {0};
    int failed = 0;
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        if (!step_selected(list, steps[i].name))
            continue;
        size_t before = results.n;
        st = steps[i].run(&run, &results);
        if (st != CLRED_OK) {
            /* Recorded, and the other steps still run: one missing figure
             * should not cost the whole table. */
            failed = 1;
            fprintf(stderr, "  %-10s FAILED: %s\n", steps[i].name, clred_last_error());
            bench_result *r = bench_results_add(&results, steps[i].name, "failed");
            if (r)
                snprintf(r->note, sizeof r->note, "failed: %s", clred_last_error());
            continue;
        }
        for (size_t k = before; k < results.n; k++)
            print_result(&run, &results.items[k]);
    }
    int rc = write_json(json, &run, &results);
    bench_results_free(&results);
    clred_ctx_destroy(run.ctx);
    return rc ? rc : failed;
}

/* Frames are read, reduced and written one after another in planes of tens
 * of MB. glibc gives blocks that large back to the kernel when they are
 * freed, so every frame would pay its page faults and the kernel's zeroing of
 * fresh pages again; kept in the heap, the next frame's planes reuse the same
 * pages. 32 MB is the largest threshold glibc takes (4096² planes are still
 * mapped afresh). A process setting: the library leaves it to its caller. */
static void keep_freed_planes(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

int main(int argc, char **argv)
{
    keep_freed_planes();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        help();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "device") == 0)
        return cmd_device(argc - 1, argv + 1);
    if (strcmp(argv[1], "gen") == 0)
        return cmd_gen(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    return usage_error("unknown command '%s'", argv[1]);
}
