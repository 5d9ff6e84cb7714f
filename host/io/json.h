/* A tiny JSON writer and reader for clred's own files (truth.json); internal. */
#ifndef CLRED_JSON_H
#define CLRED_JSON_H

#include <stdio.h>

#define CLRED_JSON_MAX_DEPTH 32

typedef struct {
    FILE *f;
    int depth;
    int count[CLRED_JSON_MAX_DEPTH];   /* members written at each level */
    int compact[CLRED_JSON_MAX_DEPTH]; /* this level (and all inside) on one line */
} clred_json_writer;

void clred_json_init(clred_json_writer *w, FILE *f);
/* key is the member name inside an object, NULL inside an array or at the top.
 * A compact container is written on one line (e.g. a pixel list). */
void clred_json_begin_object(clred_json_writer *w, const char *key, int compact);
void clred_json_end_object(clred_json_writer *w);
void clred_json_begin_array(clred_json_writer *w, const char *key, int compact);
void clred_json_end_array(clred_json_writer *w);
/* Non-finite numbers are written as null. %.10g keeps what the simulator draws. */
void clred_json_number(clred_json_writer *w, const char *key, double v);
void clred_json_int(clred_json_writer *w, const char *key, long long v);
void clred_json_uint(clred_json_writer *w, const char *key, unsigned long long v);
void clred_json_string(clred_json_writer *w, const char *key, const char *s);
/* s as a quoted JSON string (escaped; NULL as ""): the one escaper every JSON
 * writer in clred uses. */
void clred_json_quote(FILE *f, const char *s);
void clred_json_bool(clred_json_writer *w, const char *key, int v);


/* ---- reading: a whole document into a tree */

typedef enum {
    CLRED_JSON_NULL = 0, CLRED_JSON_BOOL, CLRED_JSON_NUMBER, CLRED_JSON_STRING, CLRED_JSON_ARRAY, CLRED_JSON_OBJECT
} clred_json_type;

typedef struct clred_json {
    clred_json_type type;
    double number;            /* NUMBER, BOOL (0/1) */
    char *string;             /* STRING */
    char *key;                /* member name when inside an object */
    struct clred_json *items; /* ARRAY, OBJECT */
    size_t count;
} clred_json;

/* Parses a file; NULL on failure with the reason (and byte offset) in err. */
clred_json *clred_json_parse_file(const char *path, char *err, size_t errsize);
void clred_json_free(clred_json *v);
/* Member of an object by name, or NULL. */
const clred_json *clred_json_get(const clred_json *obj, const char *key);
/* Element i of an array, or NULL. */
const clred_json *clred_json_at(const clred_json *arr, size_t i);
/* The number, or fallback when v is NULL or not a number. */
double clred_json_num(const clred_json *v, double fallback);
/* The string, or "" when v is NULL or not a string. */
const char *clred_json_str(const clred_json *v);

#endif
