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

/* vecf: VW floats; vecb: VW bytes (the 0/1 maps); vecus: VW mask words.
 * TO_VECC/TO_VECSS/TO_VECI(c) turn a comparison into the byte-, short- or
 * int-sized condition select() takes for bytes, mask words or floats (a
 * scalar comparison gives 1, a vector one -1: both become -1 where true). */
#if VW == 1
typedef float vecf;
typedef uchar vecb;
typedef char vecc;
typedef ushort vecus;
typedef short vecss;
typedef int veci;
#define VEC_LOAD(p) (*(p))
#define VEC_STORE(v, p) (*(p) = (v))
#define TO_VECC(c) ((char)((c) ? -1 : 0))
#define TO_VECSS(c) ((short)((c) ? -1 : 0))
#define TO_VECI(c) ((int)((c) ? -1 : 0))
#else
typedef CLRED_CAT(float, VW) vecf;
typedef CLRED_CAT(uchar, VW) vecb;
typedef CLRED_CAT(char, VW) vecc;
typedef CLRED_CAT(ushort, VW) vecus;
typedef CLRED_CAT(short, VW) vecss;
typedef CLRED_CAT(int, VW) veci;
#define VEC_LOAD(p) CLRED_CAT(vload, VW)(0, (p))
#define VEC_STORE(v, p) CLRED_CAT(vstore, VW)((v), 0, (p))
#define TO_VECC(c) CLRED_CAT(convert_char, VW)(c)
#define TO_VECSS(c) CLRED_CAT(convert_short, VW)(c)
#define TO_VECI(c) CLRED_CAT(convert_int, VW)(c)
#endif
/* the same loads and stores serve bytes: vloadn is overloaded on the pointer */

#endif
