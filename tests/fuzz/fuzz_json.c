/* libFuzzer target for the JSON reader (host/io/json.c): the manifest of a
 * previous `clred run`, read back on a rerun (night_previous_load), and the
 * tree walked as the demo reads truth.json. */
#include <stdint.h>
#include <stdio.h>

#include "json.h"
#include "night_internal.h"

const char *fuzz_write_input(const uint8_t *data, size_t size, const char *suffix);

static double walk(const clred_json *v, int depth)
{
    double sum = clred_json_num(v, 0.0) + (double)clred_json_str(v)[0];
    for (size_t i = 0; v && depth < 80 && i < v->count; i++) {
        const clred_json *item = v->type == CLRED_JSON_ARRAY ? clred_json_at(v, i) : &v->items[i];
        if (v->type == CLRED_JSON_OBJECT && item->key)
            sum += clred_json_get(v, item->key) != NULL;
        sum += walk(item, depth + 1);
    }
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_input(data, size, ".json");
    if (!path)
        return 0;
    char err[128];
    clred_json *j = clred_json_parse_file(path, err, sizeof err);
    volatile double sink = walk(j, 0);
    (void)sink;
    clred_json_free(j);
    night_previous p;
    night_previous_load(path, &p);
    for (size_t i = 0; i < p.n; i++)
        (void)night_previous_key(&p, p.path[i]);
    night_previous_free(&p);
    return 0;
}
