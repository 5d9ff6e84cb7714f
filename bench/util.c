/* Result bookkeeping, paths and JSON for clred-bench. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "json.h"

bench_result *bench_results_add(bench_results *r, const char *step, const char *mode)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        bench_result *items = realloc(r->items, cap * sizeof *items);
        if (!items)
            return NULL;
        r->items = items;
        r->cap = cap;
    }
    bench_result *res = &r->items[r->n++];
    memset(res, 0, sizeof *res);
    snprintf(res->step, sizeof res->step, "%s", step);
    snprintf(res->mode, sizeof res->mode, "%s", mode);
    return res;
}

void bench_results_free(bench_results *r)
{
    free(r->items);
    memset(r, 0, sizeof *r);
}

static int longer_first(const void *a, const void *b)
{
    double ta = ((const clred_kernel_time *)a)->seconds, tb = ((const clred_kernel_time *)b)->seconds;
    return ta < tb ? 1 : ta > tb ? -1 : 0;
}

/* The context's per-kernel times, the longest BENCH_KERNELS of them. */
static void keep_kernels(bench_result *res, clred_ctx *ctx)
{
    clred_kernel_time all[CLRED_PROFILE_MAX];
    size_t n = clred_kernel_profile(ctx, all, CLRED_PROFILE_MAX);
    if (n > CLRED_PROFILE_MAX)
        n = CLRED_PROFILE_MAX;
    qsort(all, n, sizeof *all, longer_first);
    res->nkernels = n < BENCH_KERNELS ? n : BENCH_KERNELS;
    memcpy(res->kernels, all, res->nkernels * sizeof *all);
}

void bench_keep_best(bench_result *res, clred_ctx *ctx, double wall_s)
{
    clred_timing t;
    clred_ctx_timing(ctx, &t);
    if (res->repeats == 0 || wall_s < res->wall_s) {
        res->wall_s = wall_s;
        res->kernel_s = t.kernel_s;
        res->upload_s = t.upload_s;
        res->download_s = t.download_s;
        res->upload_bytes = t.upload_bytes;
        res->download_bytes = t.download_bytes;
        keep_kernels(res, ctx);
    }
    res->repeats++;
}

void bench_dir_path(const char *dir, const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
}

void bench_raw_path(const bench_run *run, size_t i, char *path, size_t size)
{
    snprintf(path, size, "%s/raw_%03zu.fits", run->dir, i);
}

void bench_raw16_path(const bench_run *run, size_t i, char *path, size_t size)
{
    snprintf(path, size, "%s/rawu16_%03zu.fits", run->dir, i);
}

double bench_max_abs_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        int na = isnan(a[i]), nb = isnan(b[i]);
        if (na && nb)
            continue;
        if (na != nb)
            return INFINITY;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > worst)
            worst = d;
    }
    return worst;
}

void bench_json_string(FILE *f, const char *s) { clred_json_quote(f, s); }

/* JSON has no NaN or infinity: those become null. */
static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

static void write_device(FILE *f, const clred_device_info *d)
{
    fputs("{\"name\": ", f);
    bench_json_string(f, d->name);
    fputs(", \"platform\": ", f);
    bench_json_string(f, d->platform);
    fputs(", \"vendor\": ", f);
    bench_json_string(f, d->vendor);
    fputs(", \"version\": ", f);
    bench_json_string(f, d->version);
    fputs(", \"driver\": ", f);
    bench_json_string(f, d->driver);
    fprintf(f,
            ", \"type\": \"%s\", \"global_mem\": %llu, \"max_alloc\": %llu, \"compute_units\": %u, "
            "\"double\": %s}",
            d->is_gpu ? "gpu" : d->is_cpu ? "cpu" : "other", (unsigned long long)d->global_mem,
            (unsigned long long)d->max_alloc, d->compute_units, d->has_double ? "true" : "false");
}

static void write_result(FILE *f, const bench_run *run, const bench_result *r)
{
    double gbps = r->kernel_s > 0 && r->model_bytes > 0 ? r->model_bytes / r->kernel_s * 1e-9 : NAN;
    fputs("    {\"step\": ", f);
    bench_json_string(f, r->step);
    fputs(", \"mode\": ", f);
    bench_json_string(f, r->mode);
    fputs(", \"wall_s\": ", f);
    json_number(f, r->wall_s);
    fputs(", \"kernel_s\": ", f);
    json_number(f, r->kernel_s);
    fputs(", \"transfer_s\": ", f);
    json_number(f, r->upload_s + r->download_s);
    fprintf(f, ", \"upload_bytes\": %llu, \"download_bytes\": %llu, \"model_bytes\": ",
            (unsigned long long)r->upload_bytes, (unsigned long long)r->download_bytes);
    json_number(f, r->model_bytes);
    fputs(", \"kernel_gbps\": ", f);
    json_number(f, gbps);
    fputs(", \"fraction_of_copy\": ", f);
    json_number(f, run->copy_gbps > 0 ? gbps / run->copy_gbps : NAN);
    if (r->clip_rounds > 0) {
        fputs(", \"clip_rounds\": ", f);
        json_number(f, r->clip_rounds);
    }
    fputs(", \"kernels\": [", f);
    for (size_t i = 0; i < r->nkernels; i++) {
        fputs(i ? ", {\"name\": " : "{\"name\": ", f);
        bench_json_string(f, r->kernels[i].name);
        fputs(", \"s\": ", f);
        json_number(f, r->kernels[i].seconds);
        fprintf(f, ", \"launches\": %llu}", (unsigned long long)r->kernels[i].launches);
    }
    fputc(']', f);
    fprintf(f, ", \"repeats\": %d, \"output\": ", r->repeats);
    bench_json_string(f, r->output);
    fputs(", \"note\": ", f);
    bench_json_string(f, r->note);
    fputc('}', f);
}

void bench_write_json(FILE *f, const bench_run *run, const bench_results *r)
{
    fprintf(f, "{\n  \"tool\": \"clred-bench\", \"clred_version\": \"%s\",\n  \"device\": ", CLRED_VERSION);
    write_device(f, clred_ctx_device(run->ctx));
    fprintf(f, ",\n  \"size\": %zu, \"depth\": %zu, \"ncal\": %zu, \"repeat\": %d,\n  \"dir\": ", run->size, run->depth,
            run->ncal, run->repeat);
    bench_json_string(f, run->dir);
    fputs(", \"out\": ", f);
    bench_json_string(f, run->out);
    fputs(",\n  \"copy_gbps\": ", f);
    json_number(f, run->copy_gbps);
    fputs(", \"fma_gflops\": ", f);
    json_number(f, run->fma_gflops);
    fputs(",\n  \"results\": [\n", f);
    for (size_t i = 0; i < r->n; i++) {
        write_result(f, run, &r->items[i]);
        fputs(i + 1 < r->n ? ",\n" : "\n", f);
    }
    fputs("  ]\n}\n", f);
}

/* CPU seconds of this process, all its threads (POCL's included): on a
 * shared machine the fairer figure to set beside a peer's. */
double bench_cpu_s(void)
{
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0)
        return NAN;
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

