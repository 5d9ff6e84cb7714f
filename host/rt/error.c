/* Per-thread error message and status names. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[1024];

const char *clred_last_error(void) { return last_error; }

void clred_clear_error(void) { last_error[0] = '\0'; }

clred_status clred_fail(clred_status status, const char *fmt, ...)
{
    /* formatted aside first: callers pass clred_last_error() as an argument
     * to prefix it, and vsnprintf into its own source is undefined */
    char text[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(last_error, text, sizeof text);
    return status;
}

const char *clred_status_name(clred_status s)
{
    switch (s) {
    case CLRED_OK: return "ok";
    case CLRED_ERR_INPUT: return "bad input";
    case CLRED_ERR_USAGE: return "usage";
    case CLRED_ERR_DEVICE: return "device failure";
    case CLRED_ERR_MEMORY: return "out of memory";
    case CLRED_ERR_IO: return "cannot write output";
    }
    return "unknown";
}

const char *clred_cl_error_name(cl_int err)
{
    switch (err) {
#define E(x) case x: return #x;
    E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE) E(CL_COMPILER_NOT_AVAILABLE)
    E(CL_MEM_OBJECT_ALLOCATION_FAILURE) E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP) E(CL_IMAGE_FORMAT_MISMATCH)
    E(CL_IMAGE_FORMAT_NOT_SUPPORTED) E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
    E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM) E(CL_INVALID_DEVICE)
    E(CL_INVALID_CONTEXT) E(CL_INVALID_QUEUE_PROPERTIES) E(CL_INVALID_COMMAND_QUEUE)
    E(CL_INVALID_HOST_PTR) E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_BINARY) E(CL_INVALID_BUILD_OPTIONS)
    E(CL_INVALID_PROGRAM) E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME)
    E(CL_INVALID_KERNEL_DEFINITION) E(CL_INVALID_KERNEL) E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE)
    E(CL_INVALID_ARG_SIZE) E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION)
    E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE) E(CL_INVALID_GLOBAL_OFFSET)
    E(CL_INVALID_EVENT_WAIT_LIST) E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_BUFFER_SIZE)
    E(CL_INVALID_GLOBAL_WORK_SIZE)
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL platform installed)";
#undef E
    default: return "CL_UNKNOWN_ERROR";
    }
}

clred_status clred_fail_cl(cl_int err, const char *what)
{
    return clred_fail(CLRED_ERR_DEVICE, "%s: %s (%d)", what, clred_cl_error_name(err), (int)err);
}

const char *clred_mask_bit_name(uint16_t bit)
{
    switch (bit) {
    case CLRED_MASK_BAD: return "BAD";
    case CLRED_MASK_SATURATED: return "SATURATED";
    case CLRED_MASK_COSMIC_RAY: return "COSMIC_RAY";
    case CLRED_MASK_NO_DATA: return "NO_DATA";
    case CLRED_MASK_INTERPOLATED: return "INTERPOLATED";
    case CLRED_MASK_EDGE: return "EDGE";
    case CLRED_MASK_DETECTED: return "DETECTED";
    case CLRED_MASK_CLIPPED: return "CLIPPED";
    case CLRED_MASK_NOFIT: return "NOFIT";
    }
    return NULL;
}
