/* libFuzzer target for SExtractor filter files (clred sources --filter,
 * host/io/convfilter.c). */
#include <stdint.h>

#include "clred.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clred_conv_filter f;
    if (clred_conv_filter_parse((const char *)data, size, "fuzz.conv", &f) == CLRED_OK)
        clred_conv_filter_free(&f);
    return 0;
}
