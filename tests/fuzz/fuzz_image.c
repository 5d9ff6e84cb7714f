/* libFuzzer target for the image readers: the input is written to a file
 * whose name ends in FUZZ_SUFFIX (".fits", ".fits.fz" or ".npy": the readers
 * choose by name) and read every way clred reads images. Any result is
 * fine except a crash, a hang, a leak or undefined behaviour. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "clred.h"

#ifndef FUZZ_SUFFIX
#define FUZZ_SUFFIX ".fits"
#endif

/* The readers take paths: one scratch file per process. */
const char *fuzz_write_input(const uint8_t *data, size_t size, const char *suffix);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_input(data, size, FUZZ_SUFFIX);
    if (!path)
        return 0;
    clred_file_info info;
    if (clred_file_info_read(path, &info) == CLRED_OK) {
        clred_image img;
        if (clred_image_read(path, 0, &img) == CLRED_OK)
            clred_image_free(&img);
        if (info.nframes > 1 && clred_image_read(path, info.nframes - 1, &img) == CLRED_OK)
            clred_image_free(&img);
        if (clred_image_read_2d(path, &img) == CLRED_OK)
            clred_image_free(&img);
        float *rows = malloc(2 * info.width * sizeof *rows);
        if (rows && info.height >= 2)
            clred_rows_read(path, 0, info.height - 2, 2, rows);
        free(rows);
    }
    return 0;
}
