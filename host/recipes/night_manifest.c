/* A previous run's manifest, read back so that a rerun skips the products
 * whose inputs and parameters have not changed. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "night_internal.h"

void night_previous_load(const char *manifest, night_previous *p)
{
    memset(p, 0, sizeof *p);
    char err[128];
    clred_json *j = clred_json_parse_file(manifest, err, sizeof err);
    if (!j)
        return;
    const clred_json *products = clred_json_get(j, "products");
    size_t n = products && products->type == CLRED_JSON_ARRAY ? products->count : 0;
    p->path = calloc(n + 1, sizeof *p->path);
    p->key = calloc(n + 1, sizeof *p->key);
    for (size_t i = 0; p->path && p->key && i < n; i++) {
        const clred_json *e = clred_json_at(products, i);
        const clred_json *done = clred_json_get(e, "done");
        const char *key = clred_json_str(clred_json_get(e, "key")), *path = clred_json_str(clred_json_get(e, "path"));
        /* Only products the run finished writing count. */
        if (!done || done->type != CLRED_JSON_BOOL || !done->number || !*key || !*path)
            continue;
        p->key[p->n] = strtoull(key, NULL, 16);
        p->path[p->n] = strdup(path);
        if (p->path[p->n])
            p->n++;
    }
    clred_json_free(j);
}

uint64_t night_previous_key(const night_previous *p, const char *path)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->path[i], path))
            return p->key[i];
    return 0;
}

void night_previous_free(night_previous *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->path[i]);
    free(p->path);
    free(p->key);
    memset(p, 0, sizeof *p);
}
