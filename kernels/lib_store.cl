/* Whole-vector stores of VW lanes to global memory, for kernels that write
 * VW pixels per work-item (VW defined before this is included; with VW = 1
 * they are plain stores). Kept
 * apart from lib_vec.cl, whose inclusion makes the host build a family with
 * the context's -DVW (host/rt/programs.c): combine's per-pixel program must
 * not get it. Included by name. */

#ifndef CLRED_LIB_STORE
#define CLRED_LIB_STORE

#define CLRED_STORE_CAT_(a, b) a##b
#define CLRED_STORE_CAT(a, b) CLRED_STORE_CAT_(a, b)

/* VSTORE_WHOLE(v, p): vstoren as one vector store. POCL's vstoren split a
 * float16 into three stores and a ushort16 into sixteen 16-bit ones (about 45
 * instructions, more than calibrate_frame's arithmetic for the 16 pixels). A
 * pointer to the vector type aligned to its elements alone allows what
 * vstoren allows: VW pixels that start anywhere (a row's tail, an odd width).
 * +(v): the value's type without the private address space of a variable.
 * Compilers other than clang keep vstoren. */
#if VW == 1
/* a scalar: no vstore1 exists, and +(v) would promote a uchar or ushort */
#define VSTORE_WHOLE(v, p) (*(p) = (v))
#elif defined(__clang__)
#define VSTORE_WHOLE(v, p)                                                                \
    do {                                                                                  \
        typedef __typeof__(+(v)) clred_whole_ __attribute__((aligned(sizeof *(p))));      \
        *(global clred_whole_ *)(p) = (v);                                                \
    } while (0)
#else
#define VSTORE_WHOLE(v, p) CLRED_STORE_CAT(vstore, VW)((v), 0, (p))
#endif

/* VSTORE_WHOLE, non-temporal where `stream` is set and p is aligned to the
 * vector (x86 with clang): an output too large to stay in cache is written
 * without each line being read into the cache first (a third of a copy's
 * traffic). A kernel sets `stream` (uniform) from its launch's size, so that
 * small outputs, which the next step may read from cache, stay there. */
#define VSTREAM_PIXELS (1u << 20)
#if VW > 1 && defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define VSTREAM_WHOLE(v, p, stream)                                                       \
    do {                                                                                  \
        __typeof__(+(v)) v_ = (v);                                                        \
        if ((stream) && ((size_t)(p) & (sizeof v_ - 1)) == 0)                             \
            __builtin_nontemporal_store(v_, (global __typeof__(+(v)) *)(p));              \
        else                                                                              \
            VSTORE_WHOLE(v_, (p));                                                        \
    } while (0)
#else
#define VSTREAM_WHOLE(v, p, stream) VSTORE_WHOLE(v, p)
#endif

#endif
