/* The night's streaming: a reader thread reads the next frames into host
 * images while the device works on the current one, and a writer thread
 * writes finished products while the device goes on. cfitsio is built
 * reentrant here (fits_is_reentrant); each thread opens its own fitsfile
 * handles (clred_image_read / clred_image_write do). When it is not, or
 * when streaming is off, both run inline on the caller's thread. Their spans
 * go to the context's trace on lanes "read" and "write". */
#include <fitsio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "night_internal.h"

/* ------------------------------------------- the main thread's ends */

/* Each frame goes to the device once: the reader thread reads it into a host
 * image, and the main thread hands that to the device (adopted without a copy
 * where the device shares host memory, one upload elsewhere). Every step then
 * works on device images, and each product comes down once, to the writer. */

clred_status night_next_on_device(night *nt, clred_stream_reader *r, clred_dimage **out)
{
    *out = NULL;
    clred_image img;
    CLRED_TRY(clred_stream_reader_next(r, &img));
    clred_status st = clred_dimage_adopt(nt->ctx, &img, out);
    if (st == CLRED_OK)
        nt->frames_in++;
    return st;
}

clred_status night_put_product(night *nt, clred_stream_writer *w, const clred_dimage *d, long index)
{
    clred_image host;
    CLRED_TRY(clred_dimage_download(d, &host));
    nt->products_out++;
    return clred_stream_writer_put(w, nt->prod[index].path, &host, 1, (size_t)index);
}
