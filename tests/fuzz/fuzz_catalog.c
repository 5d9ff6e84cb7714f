/* libFuzzer target for the position catalog reader (CSV: x,y columns). */
#include <stdint.h>
#include <stdlib.h>

#include "clred.h"

const char *fuzz_write_input(const uint8_t *data, size_t size, const char *suffix);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_input(data, size, ".csv");
    double *x, *y;
    size_t n;
    if (path && clred_positions_read(path, &x, &y, &n) == CLRED_OK) {
        free(x);
        free(y);
    }
    return 0;
}
