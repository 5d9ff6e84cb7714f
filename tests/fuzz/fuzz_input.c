/* Shared by the fuzz targets: the input bytes as a file the readers can open. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The name is the same every run, not per process: it appears in the readers'
 * string comparisons, which steer libFuzzer's mutations, and a fixed seed
 * must give the same inputs (scripts/fuzz.sh). Processes fuzzing side by
 * side need a TMPDIR each. */
const char *fuzz_write_input(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[512];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/clred-fuzz%s", dir && *dir ? dir : "/tmp", suffix);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    int ok = fwrite(data, 1, size, f) == size;
    ok = fclose(f) == 0 && ok;
    return ok ? path : NULL;
}
