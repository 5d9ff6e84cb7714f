/* The kernel sources embedded at build time (generated embedded_kernels.c). */
#ifndef CLRED_EMBEDDED_KERNELS_H
#define CLRED_EMBEDDED_KERNELS_H
#include <stddef.h>

typedef struct {
    const char *family; /* file name without .cl */
    const char *source;
} clred_embedded_kernel;

extern const clred_embedded_kernel clred_embedded_kernels[];
extern const size_t clred_embedded_kernel_count;

#endif
