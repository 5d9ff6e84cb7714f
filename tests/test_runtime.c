/* The runtime: device listing, context, embedded programs, the on-disk
 * program cache, transfers and a kernel against a double-precision reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

#include "harness.h"
#include "internal.h"

/* Entries of the program cache: a driver's binary (.bin), or on POCL, which
 * keeps the programs in its own cache, clred's marker (.built). */
static size_t count_cache_files(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".bin") || strstr(e->d_name, ".built"))
            n++;
    closedir(d);
    return n;
}

int main(void)
{
    clred_device_info *list = NULL;
    size_t n = 0;
    CHECK_OK(clred_devices_list(&list, &n));
    CHECK(n >= 1);
    for (size_t i = 0; i < n; i++) {
        CHECK(list[i].global_mem > 0);
        CHECK(list[i].max_alloc > 0 && list[i].max_alloc <= list[i].global_mem);
        CHECK(list[i].max_work_group >= 1);
        CHECK(strlen(list[i].name) > 0);
    }
    free(list);

    /* A device named by an index that does not exist is a usage error with a message. */
    clred_ctx *bad = NULL;
    CHECK(clred_ctx_create("99", &bad) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "99") != NULL);
    CHECK(clred_ctx_create("no-such-device-name", &bad) == CLRED_ERR_USAGE);
    CHECK(bad == NULL);

    clred_ctx *ctx = harness_ctx();
    const char *cache = clred_cache_dir();
    CHECK(cache != NULL);

    /* scale_offset on sizes that are not multiples of any work-group size. */
    const size_t sizes[] = {1, 7, 1000, 65537};
    harness_rng rng = {42};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        cl_uint count = (cl_uint)sizes[s];
        float *host = malloc(count * sizeof *host);
        double *ref = malloc(count * sizeof *ref);
        for (cl_uint i = 0; i < count; i++) {
            host[i] = (float)(harness_normal(&rng) * 1000.0);
            if (i % 97 == 3)
                host[i] = NAN;
            ref[i] = (double)host[i] * 1.5 - 20.25;
        }
        cl_mem buf;
        CHECK_OK(clred_buffer(ctx, CL_MEM_READ_WRITE, count * sizeof *host, host, &buf, "test"));
        cl_kernel k;
        CHECK_OK(clred_kernel(ctx, "arith", NULL, "scale_offset", &k));
        float scale = 1.5f, offset = -20.25f;
        CHECK_OK(clred_args(k, "scale_offset", CLRED_ARG(buf), CLRED_ARG(scale), CLRED_ARG(offset),
                            CLRED_ARG(count), (size_t)0));
        size_t global = count;
        CHECK_OK(clred_run(ctx, k, "scale_offset", 1, &global, NULL));
        CHECK_OK(clred_download(ctx, buf, 0, count * sizeof *host, host));
        /* float32 fma vs double: one rounding of a value up to ~5000 in magnitude, 2 ulp */
        int bad_values = 0;
        for (cl_uint i = 0; i < count; i++) {
            double tol = fabs(ref[i]) * 2.5e-7 + 1e-6;
            if (!((isnan(host[i]) && isnan(ref[i])) || fabs(host[i] - ref[i]) <= tol))
                bad_values++;
        }
        CHECK_MSG(bad_values == 0, "%d of %u values differ from the reference", bad_values, count);
        clred_release(&buf);
        free(host);
        free(ref);
    }
    clred_timing t;
    clred_ctx_timing(ctx, &t);
    CHECK(t.download_bytes > 0);

    /* The program is now in the disk cache; a fresh context must load it. */
    CHECK(count_cache_files(cache) >= 1);
    size_t before = count_cache_files(cache);
    clred_ctx_destroy(ctx);
    ctx = harness_ctx();
    cl_kernel k2;
    CHECK_OK(clred_kernel(ctx, "arith", NULL, "scale_offset", &k2));
    CHECK(count_cache_files(cache) == before);

    /* An unknown program family is a clear error. */
    CHECK(clred_kernel(ctx, "no_such_family", NULL, "x", &k2) == CLRED_ERR_DEVICE);
    CHECK(strstr(clred_last_error(), "no_such_family") != NULL);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
