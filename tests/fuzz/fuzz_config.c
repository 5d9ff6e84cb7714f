/* libFuzzer target for clred run's --config file (INI, host/cli/run_config.c). */
#include <stdint.h>
#include <stdio.h>

#include "clred.h"
#include "run_config.h"

const char *fuzz_write_input(const uint8_t *data, size_t size, const char *suffix);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_input(data, size, ".ini");
    if (!path)
        return 0;
    clred_night_opts o = clred_night_defaults();
    run_config cfg;
    if (run_config_read(path, &o, &cfg) == 0)
        run_config_free(&cfg);
    return 0;
}
