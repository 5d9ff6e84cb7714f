/* Explicit float vectors of VW lanes (1, 2, 4, 8 or 16; the host passes the
 * device's preferred width as -DVW=n). A window kernel that handles VW
 * neighbouring pixels per work-item with these gets a CPU's SIMD lanes, which
 * POCL does not find on its own in such kernels; with VW=1 it is the plain
 * one-pixel-per-work-item kernel a GPU wants. Included by name. */

#ifndef CLRED_LIB_VEC
#define CLRED_LIB_VEC

#ifndef VW
#define VW 1
#endif

#define CLRED_CAT_(a, b) a##b
#define CLRED_CAT(a, b) CLRED_CAT_(a, b)

#if VW == 1
typedef float vecf;
#define VEC_LOAD(p) (*(p))
#define VEC_STORE(v, p) (*(p) = (v))
#else
typedef CLRED_CAT(float, VW) vecf;
#define VEC_LOAD(p) CLRED_CAT(vload, VW)(0, (p))
#define VEC_STORE(v, p) CLRED_CAT(vstore, VW)((v), 0, (p))
#endif

#endif
