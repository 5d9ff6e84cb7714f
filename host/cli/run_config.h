/* clred run's configuration file. */
#ifndef CLRED_RUN_CONFIG_H
#define CLRED_RUN_CONFIG_H

#include "clred.h"

typedef struct {
    clred_night_opts *o;
    char *strings[16]; /* the [keywords] and [subtract] paths o points to */
    size_t nstrings;
    clred_subtract_job subtract; /* o->subtract points here once a [subtract] key is read */
    char error[256];
} run_config;

/* Reads path into *o (fields it does not name keep their values). On an
 * error prints it (naming path and the line) and returns the exit code;
 * else EXIT_OK, and cfg holds strings *o points to until run_config_free. */
int run_config_read(const char *path, clred_night_opts *o, run_config *cfg);
void run_config_free(run_config *cfg);

#endif
