/* A tiny JSON writer (indentation, commas, escapes) and a reader into a tree,
 * for the files clred writes itself. */
#include "json.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void clred_json_init(clred_json_writer *w, FILE *f)
{
    w->f = f;
    w->depth = 0;
    w->count[0] = 0;
    w->compact[0] = 0;
}

/* The separator, indentation and key before a value at the current level. */
static void member(clred_json_writer *w, const char *key)
{
    int d = w->depth;
    if (w->count[d]++)
        fputc(',', w->f);
    if (d > 0) {
        if (w->compact[d]) {
            if (w->count[d] > 1)
                fputc(' ', w->f);
        } else
            fprintf(w->f, "\n%*s", 2 * d, "");
    }
    if (key) {
        fputc('"', w->f);
        for (const char *p = key; *p; p++) {
            if (*p == '"' || *p == '\\')
                fputc('\\', w->f);
            fputc(*p, w->f);
        }
        fputs("\": ", w->f);
    }
}

static void open_container(clred_json_writer *w, const char *key, int compact, char c)
{
    member(w, key);
    fputc(c, w->f);
    int inherited = w->compact[w->depth];
    if (w->depth + 1 < CLRED_JSON_MAX_DEPTH)
        w->depth++;
    w->count[w->depth] = 0;
    w->compact[w->depth] = compact || inherited;
}

static void close_container(clred_json_writer *w, char c)
{
    int had = w->count[w->depth], compact = w->compact[w->depth];
    if (w->depth > 0)
        w->depth--;
    if (had && !compact)
        fprintf(w->f, "\n%*s", 2 * w->depth, "");
    fputc(c, w->f);
    if (w->depth == 0)
        fputc('\n', w->f);
}

void clred_json_begin_object(clred_json_writer *w, const char *key, int compact) { open_container(w, key, compact, '{'); }
void clred_json_end_object(clred_json_writer *w) { close_container(w, '}'); }
void clred_json_begin_array(clred_json_writer *w, const char *key, int compact) { open_container(w, key, compact, '['); }
void clred_json_end_array(clred_json_writer *w) { close_container(w, ']'); }

void clred_json_number(clred_json_writer *w, const char *key, double v)
{
    member(w, key);
    if (isfinite(v))
        fprintf(w->f, "%.10g", v);
    else
        fputs("null", w->f);
}

void clred_json_int(clred_json_writer *w, const char *key, long long v)
{
    member(w, key);
    fprintf(w->f, "%lld", v);
}

void clred_json_uint(clred_json_writer *w, const char *key, unsigned long long v)
{
    member(w, key);
    fprintf(w->f, "%llu", v);
}

void clred_json_quote(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void clred_json_string(clred_json_writer *w, const char *key, const char *s)
{
    member(w, key);
    clred_json_quote(w->f, s);
}

void clred_json_bool(clred_json_writer *w, const char *key, int v)
{
    member(w, key);
    fputs(v ? "true" : "false", w->f);
}

/* ------------------------------------------------------------ reading */

typedef struct {
    const char *text, *p;
    char *err;
    size_t errsize;
    int failed, depth;
} parser;

static void parse_fail(parser *ps, const char *what)
{
    if (!ps->failed)
        snprintf(ps->err, ps->errsize, "%s at byte %ld", what, (long)(ps->p - ps->text));
    ps->failed = 1;
}

static void skip_space(parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t')
        ps->p++;
}

static void parse_value(parser *ps, clred_json *v);

static char *parse_string(parser *ps)
{
    /* Escapes shrink, so the raw length bounds the result. */
    const char *start = ++ps->p;
    size_t n = 0;
    while (start[n] && start[n] != '"')
        n += start[n] == '\\' && start[n + 1] ? 2 : 1;
    char *out = malloc(n + 1), *o = out;
    if (!out) {
        parse_fail(ps, "out of memory");
        return NULL;
    }
    while (*ps->p && *ps->p != '"') {
        char c = *ps->p++;
        if (c == '\\') {
            if (!*ps->p)
                break; /* a backslash ending the text: unterminated, reported below */
            char e = *ps->p++;
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
            if (e == 'u') { /* kept as '?': clred's files are ASCII */
                /* hex digits only: skipping a closing quote would run past the string */
                for (int k = 0; k < 4 && isxdigit((unsigned char)*ps->p); k++)
                    ps->p++;
                c = '?';
            }
        }
        *o++ = c;
    }
    *o = '\0';
    if (*ps->p != '"')
        parse_fail(ps, "unterminated string");
    else
        ps->p++;
    return out;
}

static void parse_container(parser *ps, clred_json *v, char close)
{
    v->type = close == ']' ? CLRED_JSON_ARRAY : CLRED_JSON_OBJECT;
    if (++ps->depth > 64) {
        parse_fail(ps, "nesting too deep");
        return;
    }
    ps->p++;
    skip_space(ps);
    size_t cap = 0;
    if (*ps->p == close) {
        ps->p++;
        ps->depth--;
        return;
    }
    while (!ps->failed) {
        if (v->count == cap) {
            cap = cap ? 2 * cap : 4;
            clred_json *items = realloc(v->items, cap * sizeof *items);
            if (!items) {
                parse_fail(ps, "out of memory");
                return;
            }
            v->items = items;
        }
        clred_json *item = &v->items[v->count++];
        memset(item, 0, sizeof *item);
        skip_space(ps);
        if (close == '}') {
            if (*ps->p != '"') {
                parse_fail(ps, "expected a member name");
                return;
            }
            item->key = parse_string(ps);
            skip_space(ps);
            if (*ps->p != ':') {
                parse_fail(ps, "expected ':'");
                return;
            }
            ps->p++;
        }
        parse_value(ps, item);
        skip_space(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close) {
            ps->p++;
            ps->depth--;
            return;
        }
        parse_fail(ps, close == ']' ? "expected ',' or ']'" : "expected ',' or '}'");
    }
}

static void parse_value(parser *ps, clred_json *v)
{
    skip_space(ps);
    char c = *ps->p;
    if (c == '{' || c == '[')
        parse_container(ps, v, c == '{' ? '}' : ']');
    else if (c == '"') {
        v->type = CLRED_JSON_STRING;
        v->string = parse_string(ps);
    } else if (!strncmp(ps->p, "true", 4) || !strncmp(ps->p, "false", 5)) {
        v->type = CLRED_JSON_BOOL;
        v->number = c == 't';
        ps->p += c == 't' ? 4 : 5;
    } else if (!strncmp(ps->p, "null", 4)) {
        v->type = CLRED_JSON_NULL;
        ps->p += 4;
    } else {
        char *end;
        v->number = strtod(ps->p, &end);
        if (end == ps->p)
            parse_fail(ps, "expected a value");
        v->type = CLRED_JSON_NUMBER;
        ps->p = end;
    }
}

static void free_children(clred_json *v)
{
    for (size_t i = 0; i < v->count; i++)
        free_children(&v->items[i]);
    free(v->items);
    free(v->string);
    free(v->key);
}

void clred_json_free(clred_json *v)
{
    if (v) {
        free_children(v);
        free(v);
    }
}

clred_json *clred_json_parse_file(const char *path, char *err, size_t errsize)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsize, "cannot open");
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
        snprintf(err, errsize, "cannot read");
        free(text);
        fclose(f);
        return NULL;
    }
    fclose(f);
    text[size] = '\0';
    parser ps = {text, text, err, errsize, 0, 0};
    clred_json *root = calloc(1, sizeof *root);
    if (root)
        parse_value(&ps, root);
    skip_space(&ps);
    if (root && !ps.failed && *ps.p)
        parse_fail(&ps, "text after the document");
    free(text);
    if (!root || ps.failed) {
        if (!root)
            snprintf(err, errsize, "out of memory");
        clred_json_free(root);
        return NULL;
    }
    return root;
}

const clred_json *clred_json_get(const clred_json *obj, const char *key)
{
    if (!obj || obj->type != CLRED_JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->count; i++)
        if (obj->items[i].key && !strcmp(obj->items[i].key, key))
            return &obj->items[i];
    return NULL;
}

const clred_json *clred_json_at(const clred_json *arr, size_t i)
{
    return arr && arr->type == CLRED_JSON_ARRAY && i < arr->count ? &arr->items[i] : NULL;
}

double clred_json_num(const clred_json *v, double fallback)
{
    return v && (v->type == CLRED_JSON_NUMBER || v->type == CLRED_JSON_BOOL) ? v->number : fallback;
}

const char *clred_json_str(const clred_json *v) { return v && v->type == CLRED_JSON_STRING ? v->string : ""; }
