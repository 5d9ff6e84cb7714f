/* Platforms and devices: listing, choosing one, context and queue, limits. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fft.h"
#include "internal.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

typedef struct {
    cl_platform_id platform;
    cl_device_id device;
} device_ref;

static void query_string(cl_device_id d, cl_device_info what, char *out, size_t size)
{
    out[0] = '\0';
    if (clGetDeviceInfo(d, what, size, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[size - 1] = '\0';
}

static void describe(cl_platform_id p, cl_device_id d, int index, clred_device_info *info)
{
    memset(info, 0, sizeof *info);
    info->index = index;
    if (clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof info->platform, info->platform, NULL) != CL_SUCCESS)
        info->platform[0] = '\0';
    info->platform[sizeof info->platform - 1] = '\0';
    query_string(d, CL_DEVICE_NAME, info->name, sizeof info->name);
    query_string(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    query_string(d, CL_DEVICE_VERSION, info->version, sizeof info->version);
    query_string(d, CL_DRIVER_VERSION, info->driver, sizeof info->driver);
    cl_device_type type = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    info->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
    info->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    cl_ulong u = 0;
    clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof u, &u, NULL);
    info->global_mem = u;
    u = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof u, &u, NULL);
    info->max_alloc = u;
    u = 0;
    clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof u, &u, NULL);
    info->local_mem = u;
    size_t wg = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    info->max_work_group = wg;
    cl_uint n = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof n, &n, NULL);
    info->compute_units = n;
    n = 0;
    clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof n, &n, NULL);
    info->clock_mhz = n;
    cl_device_fp_config fp64 = 0;
    clGetDeviceInfo(d, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64, NULL);
    info->has_double = fp64 != 0;
}

/* Enumerates devices of all platforms into refs (and infos if non-NULL). */
static clred_status enumerate(device_ref *refs, clred_device_info *infos, size_t *count)
{
    cl_platform_id platforms[MAX_PLATFORMS];
    cl_uint np = 0;
    cl_int err = clGetPlatformIDs(MAX_PLATFORMS, platforms, &np);
    if (err == -1001 || (err == CL_SUCCESS && np == 0))
        return clred_fail(CLRED_ERR_DEVICE,
                          "no OpenCL platform found: install an OpenCL driver (e.g. apt-get install "
                          "pocl-opencl-icd) and check /etc/OpenCL/vendors");
    if (err != CL_SUCCESS)
        return clred_fail_cl(err, "clGetPlatformIDs");
    size_t total = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS)
            continue; /* a platform with no devices is not an error */
        for (cl_uint i = 0; i < nd && total < MAX_DEVICES; i++) {
            refs[total].platform = platforms[p];
            refs[total].device = devs[i];
            if (infos)
                describe(platforms[p], devs[i], (int)total, &infos[total]);
            total++;
        }
    }
    *count = total;
    if (total == 0)
        return clred_fail(CLRED_ERR_DEVICE, "OpenCL platforms found but no device in any of them");
    return CLRED_OK;
}

clred_status clred_devices_list(clred_device_info **list, size_t *count)
{
    device_ref refs[MAX_DEVICES];
    clred_device_info *infos = calloc(MAX_DEVICES, sizeof *infos);
    if (!infos)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory listing devices");
    clred_status st = enumerate(refs, infos, count);
    if (st != CLRED_OK) {
        free(infos);
        return st;
    }
    *list = infos;
    return CLRED_OK;
}

static int is_index(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return 0;
    return 1;
}

static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return n == 0;
}

/* Picks a device by spec (index or substring of name/platform/vendor), or the first GPU, else the first. */
static clred_status choose(const char *spec, const clred_device_info *infos, size_t n, size_t *chosen)
{
    if (spec && *spec) {
        if (is_index(spec)) {
            size_t i = strtoul(spec, NULL, 10);
            if (i >= n)
                return clred_fail(CLRED_ERR_USAGE, "device %s: there are only %zu OpenCL devices (see 'clred devices')",
                                  spec, n);
            *chosen = i;
            return CLRED_OK;
        }
        for (size_t i = 0; i < n; i++)
            if (contains_nocase(infos[i].name, spec) || contains_nocase(infos[i].platform, spec) ||
                contains_nocase(infos[i].vendor, spec)) {
                *chosen = i;
                return CLRED_OK;
            }
        return clred_fail(CLRED_ERR_USAGE, "device '%s': no OpenCL device matches (see 'clred devices')", spec);
    }
    for (size_t i = 0; i < n; i++)
        if (infos[i].is_gpu) {
            *chosen = i;
            return CLRED_OK;
        }
    for (size_t i = 0; i < n; i++)
        if (infos[i].is_cpu) {
            *chosen = i;
            return CLRED_OK;
        }
    *chosen = 0;
    return CLRED_OK;
}

static uint64_t parse_bytes(const char *s)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || v <= 0)
        return 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': v *= 1024.0; break;
    case 'M': v *= 1024.0 * 1024.0; break;
    case 'G': v *= 1024.0 * 1024.0 * 1024.0; break;
    default: break;
    }
    return (uint64_t)v;
}

/* What every context needs once its device, context and queue are set. */
static void finish_setup(clred_ctx *ctx)
{
    cl_bool unified = CL_FALSE;
    clGetDeviceInfo(ctx->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
    ctx->unified_memory = unified == CL_TRUE || ctx->info.is_cpu;
    const char *no_zero_copy = getenv("CLRED_NO_ZERO_COPY");
    if (no_zero_copy && *no_zero_copy && *no_zero_copy != '0')
        ctx->unified_memory = 0; /* the tests run both paths */
    const char *force_float = getenv("CLRED_FLOAT_ACCUM");
    ctx->use_double = ctx->info.has_double && !(force_float && *force_float && *force_float != '0');
    const char *limit = getenv("CLRED_MEMORY_LIMIT");
    if (limit)
        ctx->memory_limit = parse_bytes(limit);
    /* A CPU gets its SIMD lanes only from explicit vectors (POCL does not
     * vectorise window kernels across work-items), a GPU from its threads:
     * the device's preferred width says which it is. CLRED_VECTOR_WIDTH
     * overrides it, so the tests can run the scalar path on a CPU. */
    cl_uint pref = 1;
    clGetDeviceInfo(ctx->device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof pref, &pref, NULL);
    const char *vw = getenv("CLRED_VECTOR_WIDTH");
    if (vw && *vw)
        pref = (cl_uint)atoi(vw);
    ctx->vector_width = 1;
    while (ctx->vector_width * 2 <= (int)pref && ctx->vector_width < 16)
        ctx->vector_width *= 2;
    /* Kernels that stream whole rows through a CPU's caches want a
     * work-item's vector to be a whole cache line: at half a line (8 floats
     * on AVX2) two work-items write halves of each line, which defeats the
     * non-temporal stores' write combining, and read halves of each input
     * line, which a stack's many streams evict in between (calibration of
     * 2048^2 frames on a 2-core AVX2 EPYC, one core: 70 -> 52 ms a frame
     * set). Window kernels keep the preferred width (the 5x5 median at 16
     * lanes spills: 13 % slower). A GPU's coalescing does this for it. */
    ctx->line_width = ctx->vector_width;
    cl_uint line = 0;
    if (ctx->info.is_cpu && !(vw && *vw) && ctx->vector_width > 1 &&
        clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_CACHELINE_SIZE, sizeof line, &line, NULL) == CL_SUCCESS)
        while (ctx->line_width * (cl_uint)sizeof(float) < line && ctx->line_width < 16)
            ctx->line_width *= 2;
}

clred_status clred_ctx_create(const char *spec, clred_ctx **out)
{
    *out = NULL;
    clred_clear_error();
    if (!spec)
        spec = getenv("CLRED_DEVICE");
    device_ref refs[MAX_DEVICES];
    clred_device_info *infos = calloc(MAX_DEVICES, sizeof *infos);
    clred_ctx *ctx = calloc(1, sizeof *ctx);
    if (!infos || !ctx) {
        free(infos);
        free(ctx);
        return clred_fail(CLRED_ERR_MEMORY, "out of memory creating the context");
    }
    size_t n = 0, chosen = 0;
    clred_status st = enumerate(refs, infos, &n);
    if (st == CLRED_OK)
        st = choose(spec, infos, n, &chosen);
    if (st != CLRED_OK) {
        free(infos);
        free(ctx);
        return st;
    }
    ctx->platform = refs[chosen].platform;
    ctx->device = refs[chosen].device;
    ctx->info = infos[chosen];
    ctx->owns_cl = 1;
    free(infos);

    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
    ctx->context = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        free(ctx);
        return clred_fail_cl(err, "clCreateContext");
    }
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) {
        clReleaseContext(ctx->context);
        free(ctx);
        return clred_fail_cl(err, "clCreateCommandQueue");
    }
    finish_setup(ctx);
    *out = ctx;
    return CLRED_OK;
}

clred_status clred_ctx_create_from_cl(cl_context context, cl_device_id device, cl_command_queue queue,
                                      clred_ctx **out)
{
    *out = NULL;
    clred_clear_error();
    if (!context || !device || !queue)
        return clred_fail(CLRED_ERR_USAGE, "clred_ctx_create_from_cl: context, device and queue are all needed");
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    cl_command_queue_properties qprops = 0;
    if (clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof qprops, &qprops, NULL) != CL_SUCCESS)
        return clred_fail(CLRED_ERR_USAGE, "clred_ctx_create_from_cl: the command queue cannot be queried");
    if (qctx != context || qdev != device)
        return clred_fail(CLRED_ERR_USAGE,
                          "clred_ctx_create_from_cl: the command queue belongs to another context or device");
    if (qprops & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
        return clred_fail(CLRED_ERR_USAGE,
                          "clred_ctx_create_from_cl: clred needs an in-order command queue (its steps rely on order)");
    if (!(qprops & CL_QUEUE_PROFILING_ENABLE))
        return clred_fail(CLRED_ERR_USAGE, "clred_ctx_create_from_cl: the command queue needs "
                                           "CL_QUEUE_PROFILING_ENABLE (clred times every command)");
    clred_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return clred_fail(CLRED_ERR_MEMORY, "out of memory creating the context");
    cl_platform_id platform = NULL;
    clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    ctx->platform = platform;
    ctx->device = device;
    describe(platform, device, -1, &ctx->info);
    ctx->context = context;
    ctx->queue = queue;
    clRetainContext(context);
    clRetainCommandQueue(queue);
    finish_setup(ctx);
    *out = ctx;
    return CLRED_OK;
}

cl_context clred_ctx_cl_context(const clred_ctx *ctx) { return ctx->context; }
cl_device_id clred_ctx_cl_device(const clred_ctx *ctx) { return ctx->device; }
cl_command_queue clred_ctx_cl_queue(const clred_ctx *ctx) { return ctx->queue; }

void clred_ctx_destroy(clred_ctx *ctx)
{
    if (!ctx)
        return;
    clred_fft_release_context(ctx);
    clred_events_release(ctx);
    clred_pool_destroy(ctx);
    clred_programs_release(ctx);
    if (ctx->xfer_queue)
        clReleaseCommandQueue(ctx->xfer_queue);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->context)
        clReleaseContext(ctx->context);
    free(ctx);
}

const clred_device_info *clred_ctx_device(const clred_ctx *ctx) { return &ctx->info; }

void clred_ctx_set_memory_limit(clred_ctx *ctx, uint64_t bytes) { ctx->memory_limit = bytes; }

uint64_t clred_ctx_total_budget(const clred_ctx *ctx)
{
    /* Plan with half the global memory: the driver, other programs and
     * temporary buffers need the rest. */
    uint64_t b = ctx->info.global_mem / 2;
    if (ctx->memory_limit && ctx->memory_limit < b)
        b = ctx->memory_limit;
    return b;
}

uint64_t clred_ctx_budget(const clred_ctx *ctx)
{
    uint64_t total = clred_ctx_total_budget(ctx);
    /* Idle pooled buffers are released on demand, so they do not count here;
     * a step left with under a sixteenth of the budget still plans with
     * that much and bands finely rather than failing outright. */
    uint64_t held = ctx->resident_bytes - clred_pool_idle_bytes(ctx);
    uint64_t left = held < total ? total - held : 0;
    return left > total / 16 ? left : total / 16;
}

void clred_ctx_memory(const clred_ctx *ctx, uint64_t *in_use, uint64_t *budget)
{
    if (in_use)
        *in_use = ctx->resident_bytes;
    if (budget)
        *budget = clred_ctx_total_budget(ctx);
}

uint64_t clred_ctx_max_alloc(const clred_ctx *ctx)
{
    uint64_t m = ctx->info.max_alloc;
    uint64_t b = clred_ctx_budget(ctx);
    return m < b ? m : b;
}

void clred_ctx_timing(clred_ctx *ctx, clred_timing *t)
{
    clred_sync(ctx);
    *t = ctx->timing;
}

void clred_ctx_timing_reset(clred_ctx *ctx)
{
    clred_sync(ctx);
    memset(&ctx->timing, 0, sizeof ctx->timing);
    clred_kernel_profile_reset(ctx);
    ctx->image_uploads = ctx->image_downloads = 0;
}
