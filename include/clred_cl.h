/*
 * clred_cl.h — OpenCL interoperability, for programs that already hold
 * OpenCL objects. Optional: clred.h alone needs no OpenCL headers.
 *
 * clred keeps to its thread rule here too: one thread at a time uses a
 * context, and the caller does not enqueue on the shared queue while a clred
 * call runs. clred's commands go on that queue in order, so work the caller
 * enqueued before a clred call is seen by it, and a clred result is ready for
 * whatever the caller enqueues after.
 */
#ifndef CLRED_CL_H
#define CLRED_CL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "clred.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A clred context over the caller's OpenCL context, device and queue, which
 * are retained (and released by clred_ctx_destroy). The queue must be
 * in-order and have CL_QUEUE_PROFILING_ENABLE. */
CLRED_API clred_status clred_ctx_create_from_cl(cl_context context, cl_device_id device, cl_command_queue queue,
                                                clred_ctx **out);
/* The context's OpenCL objects (not retained for the caller). */
CLRED_API cl_context clred_ctx_cl_context(const clred_ctx *ctx);
CLRED_API cl_device_id clred_ctx_cl_device(const clred_ctx *ctx);
CLRED_API cl_command_queue clred_ctx_cl_queue(const clred_ctx *ctx);

/* A device image over the caller's buffers (retained, released by
 * clred_dimage_free): sci holds width * height floats, row-major; var (floats)
 * and mask (uint16) may be NULL. They are not counted against clred's memory
 * budget (the caller allocated them). Steps may write into them. */
CLRED_API clred_status clred_dimage_wrap_cl(clred_ctx *ctx, cl_mem sci, cl_mem var, cl_mem mask, size_t width,
                                            size_t height, clred_dimage **out);
/* The image's planes (NULL for an absent plane; not retained for the caller;
 * valid until the image is freed). */
CLRED_API cl_mem clred_dimage_cl_sci(const clred_dimage *d);
CLRED_API cl_mem clred_dimage_cl_var(const clred_dimage *d);
CLRED_API cl_mem clred_dimage_cl_mask(const clred_dimage *d);

#ifdef __cplusplus
}
#endif
#endif /* CLRED_CL_H */
