/* Device images: upload/download and file reads round-trip bit for bit, on
 * both the shared-memory path (host arrays used in place) and the copying
 * path; copies; the memory budget fails clearly; the pool reuses buffers;
 * interop wraps the caller's cl_mem and context; the trace is a valid
 * trace-event file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "internal.h"

static void fill(clred_image *img, harness_rng *rng)
{
    size_t n = img->width * img->height;
    for (size_t i = 0; i < n; i++) {
        img->sci[i] = (float)(harness_normal(rng) * 100.0);
        if (img->var)
            img->var[i] = (float)harness_uniform(rng);
        if (img->mask)
            img->mask[i] = (uint16_t)(i % 7 == 0 ? CLRED_MASK_BAD : 0);
    }
    img->sci[5] = NAN;
}

static int same_planes(const clred_image *a, const clred_image *b)
{
    size_t n = a->width * a->height;
    if (a->width != b->width || a->height != b->height)
        return 0;
    if (memcmp(a->sci, b->sci, n * sizeof(float)) != 0)
        return 0;
    if ((a->var == NULL) != (b->var == NULL) || (a->var && memcmp(a->var, b->var, n * sizeof(float)) != 0))
        return 0;
    if ((a->mask == NULL) != (b->mask == NULL) || (a->mask && memcmp(a->mask, b->mask, n * sizeof(uint16_t)) != 0))
        return 0;
    return 1;
}

static void round_trips(clred_ctx *ctx, const char *dir)
{
    harness_rng rng = {7};
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 37, 23, 1, 1));
    fill(&img, &rng);
    img.header = clred_header_new();
    CHECK_OK(clred_header_set_double(img.header, "EXPTIME", 30.0, "s"));

    clred_dimage *d = NULL;
    CHECK_OK(clred_dimage_upload(ctx, &img, &d));
    CHECK(clred_dimage_width(d) == 37 && clred_dimage_height(d) == 23);
    CHECK(clred_dimage_has_var(d) && clred_dimage_has_mask(d));
    double exptime = 0;
    CHECK(clred_header_get_double(clred_dimage_header(d), "EXPTIME", &exptime) && exptime == 30.0);

    clred_image back;
    CHECK_OK(clred_dimage_download(d, &back));
    CHECK(same_planes(&img, &back));
    clred_image_free(&back);

    /* a device copy is independent of its source */
    clred_dimage *c = NULL;
    CHECK_OK(clred_dimage_copy(d, &c));
    clred_dimage_free(d);
    CHECK_OK(clred_dimage_download(c, &back));
    CHECK(same_planes(&img, &back));
    clred_image_free(&back);
    clred_dimage_free(c);

    /* a borrowed view: the step's writes reach the host arrays after a sync */
    clred_dimage *b = NULL;
    CHECK_OK(clred_dimage_borrow(ctx, &img, &b));
    float seven = 7.0f;
    CHECK(clEnqueueFillBuffer(ctx->queue, clred_dimage_sci(b), &seven, sizeof seven, 0, 4 * sizeof(float), 0, NULL,
                              NULL) == CL_SUCCESS);
    CHECK_OK(clred_dimage_download_into(b, &img));
    CHECK(img.sci[0] == 7.0f && img.sci[3] == 7.0f);
    /* and sync_borrowed brings them back too, on either path */
    float eight = 8.0f;
    CHECK(clEnqueueFillBuffer(ctx->queue, clred_dimage_sci(b), &eight, sizeof eight, 0, 4 * sizeof(float), 0, NULL,
                              NULL) == CL_SUCCESS);
    CHECK_OK(clred_dimage_sync_borrowed(b));
    CHECK(img.sci[0] == 8.0f && img.sci[3] == 8.0f);
    clred_dimage_free(b);

    /* a file read straight onto the device equals the host read */
    char path[512];
    snprintf(path, sizeof path, "%s/rt.fits", dir);
    CHECK_OK(clred_image_write(path, &img, 1));
    clred_image host;
    CHECK_OK(clred_image_read(path, 0, &host));
    CHECK_OK(clred_dimage_read(ctx, path, 0, &d));
    CHECK_OK(clred_dimage_download(d, &back));
    CHECK(same_planes(&host, &back));
    clred_image_free(&back);
    /* and writes back through the atomic writer */
    snprintf(path, sizeof path, "%s/rt2.fits", dir);
    CHECK_OK(clred_dimage_write(d, path, 1));
    CHECK(clred_dimage_write(d, path, 0) == CLRED_ERR_USAGE || clred_dimage_write(d, path, 0) == CLRED_ERR_IO);
    clred_dimage_free(d);
    clred_image_free(&host);

    /* a missing file names the file */
    CHECK(clred_dimage_read(ctx, "/no/such/file.fits", 0, &d) != CLRED_OK);
    CHECK(strstr(clred_last_error(), "/no/such/file.fits") != NULL);
    CHECK(d == NULL);
    clred_image_free(&img);
}

static void budget_and_pool(clred_ctx *ctx)
{
    uint64_t used0 = 0, budget = 0;
    clred_ctx_memory(ctx, &used0, &budget);
    clred_ctx_set_memory_limit(ctx, 1 << 20); /* 1 MiB */
    clred_dimage *a = NULL, *b = NULL;
    CHECK_OK(clred_dimage_create(ctx, 256, 256, 0, 0, &a)); /* 256 KiB */
    uint64_t used = 0;
    clred_ctx_memory(ctx, &used, &budget);
    CHECK(budget == 1 << 20);
    CHECK(used >= 256 * 256 * 4);
    /* 1 MiB more does not fit: a clear message, no OpenCL error code */
    CHECK(clred_dimage_create(ctx, 512, 512, 0, 0, &b) == CLRED_ERR_DEVICE);
    CHECK_MSG(strstr(clred_last_error(), "budget") != NULL, "message: %s", clred_last_error());
    CHECK(b == NULL);
    /* a freed plane goes back to the pool and the next image of that shape reuses it */
    cl_mem first = clred_dimage_sci(a);
    clred_dimage_free(a);
    CHECK_OK(clred_dimage_create(ctx, 256, 256, 0, 0, &a));
    CHECK(clred_dimage_sci(a) == first);
    clred_dimage_free(a);
    clred_ctx_set_memory_limit(ctx, 0);
}

static void interop(clred_ctx *ctx)
{
    cl_int err;
    size_t n = 64 * 32;
    float *data = malloc(n * sizeof *data);
    for (size_t i = 0; i < n; i++)
        data[i] = (float)i;
    cl_mem mine = clCreateBuffer(clred_ctx_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                 n * sizeof(float), data, &err);
    CHECK(err == CL_SUCCESS);
    clred_dimage *d = NULL;
    CHECK_OK(clred_dimage_wrap_cl(ctx, mine, NULL, NULL, 64, 32, &d));
    CHECK(clred_dimage_cl_sci(d) == mine && clred_dimage_cl_var(d) == NULL);
    clred_image back;
    CHECK_OK(clred_dimage_download(d, &back));
    CHECK(memcmp(back.sci, data, n * sizeof(float)) == 0);
    clred_image_free(&back);
    clred_dimage_free(d);
    /* too small a buffer is refused with the reason */
    CHECK(clred_dimage_wrap_cl(ctx, mine, NULL, NULL, 65, 32, &d) == CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "too small") != NULL);
    clReleaseMemObject(mine); /* still alive if clred kept a reference wrongly: nothing to check */

    /* a second clred context over the first one's OpenCL objects */
    clred_ctx *shared = NULL;
    CHECK_OK(clred_ctx_create_from_cl(clred_ctx_cl_context(ctx), clred_ctx_cl_device(ctx), clred_ctx_cl_queue(ctx),
                                      &shared));
    if (shared) {
        CHECK(strcmp(clred_ctx_device(shared)->name, clred_ctx_device(ctx)->name) == 0);
        clred_image img;
        CHECK_OK(clred_image_alloc(&img, 8, 8, 0, 0));
        for (size_t i = 0; i < 64; i++)
            img.sci[i] = (float)i;
        clred_stats st;
        CHECK_OK(clred_image_stats(shared, &img, NULL, &st));
        CHECK_NEAR(st.median, 31.5, 0);
        clred_image_free(&img);
        clred_ctx_destroy(shared);
    }
    /* a queue without profiling is refused */
    cl_command_queue plain = clCreateCommandQueue(clred_ctx_cl_context(ctx), clred_ctx_cl_device(ctx), 0, &err);
    CHECK(clred_ctx_create_from_cl(clred_ctx_cl_context(ctx), clred_ctx_cl_device(ctx), plain, &shared) ==
          CLRED_ERR_USAGE);
    CHECK(strstr(clred_last_error(), "PROFILING") != NULL);
    clReleaseCommandQueue(plain);
    free(data);
}

static int released;
static void release_counted(void *p)
{
    free(p);
    __atomic_add_fetch(&released, 1, __ATOMIC_SEQ_CST);
}

/* An upload on the transfer queue is ordered before what the main queue does
 * next, and its host memory is released once copied. */
static void owned_upload(clred_ctx *ctx)
{
    size_t n = 1 << 16;
    clred_dimage *d = NULL;
    CHECK_OK(clred_dimage_create(ctx, n, 1, 0, 0, &d));
    for (int round = 0; round < 3; round++) {
        float *host = malloc(n * sizeof *host);
        for (size_t i = 0; i < n; i++)
            host[i] = (float)(i * (round + 1));
        CHECK_OK(clred_upload_owned(ctx, clred_dimage_sci(d), n * sizeof(float), host, release_counted, NULL));
        /* a main-queue copy right after must see the new values */
        clred_dimage *c = NULL;
        CHECK_OK(clred_dimage_copy(d, &c));
        clred_image back;
        CHECK_OK(clred_dimage_download(c, &back));
        CHECK(back.sci[12345] == (float)(12345 * (round + 1)) && back.sci[n - 1] == (float)((n - 1) * (round + 1)));
        clred_image_free(&back);
        clred_dimage_free(c);
    }
    CHECK_OK(clred_sync(ctx));
    /* callbacks may run just after the queue reports completion */
    for (int wait = 0; wait < 1000 && __atomic_load_n(&released, __ATOMIC_SEQ_CST) < 3; wait++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    CHECK(__atomic_load_n(&released, __ATOMIC_SEQ_CST) == 3);
    clred_dimage_free(d);
}

static void trace(clred_ctx *ctx, const char *dir)
{
    CHECK_OK(clred_ctx_trace_start(ctx));
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 64, 64, 0, 0));
    clred_dimage *d = NULL;
    CHECK_OK(clred_dimage_upload(ctx, &img, &d));
    clred_stats st;
    CHECK_OK(clred_image_stats(ctx, &img, NULL, &st));
    clred_trace_host(ctx, "host: reads", "frame.fits", clred_now() - 0.01, clred_now());
    clred_dimage_free(d);
    clred_image_free(&img);
    char path[512];
    snprintf(path, sizeof path, "%s/trace.json", dir);
    CHECK_OK(clred_ctx_trace_write(ctx, path));
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (f) {
        char buf[65536];
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        buf[len] = '\0';
        fclose(f);
        CHECK(strstr(buf, "\"traceEvents\"") != NULL);
        CHECK(strstr(buf, "\"device: uploads\"") != NULL);
        CHECK(strstr(buf, "\"device: kernels\"") != NULL);
        CHECK(strstr(buf, "\"frame.fits\"") != NULL);
        CHECK(strstr(buf, "\"ph\": \"X\"") != NULL);
    }
    clred_timing t;
    clred_ctx_timing(ctx, &t);
    CHECK(t.uploads >= 1 && t.kernels >= 1);
}

int main(void)
{
    const char *dir = harness_tmpdir("test_dimage");
    clred_ctx *ctx = harness_ctx();
    int shared_memory = ctx->unified_memory;
    round_trips(ctx, dir);
    budget_and_pool(ctx);
    interop(ctx);
    owned_upload(ctx);
    trace(ctx, dir);
    clred_ctx_destroy(ctx);
    /* the other path: copies instead of host arrays used in place */
    setenv("CLRED_NO_ZERO_COPY", shared_memory ? "1" : "0", 1);
    ctx = harness_ctx();
    CHECK(ctx->unified_memory == 0 || !shared_memory);
    round_trips(ctx, dir);
    clred_ctx_destroy(ctx);
    return harness_finish();
}
