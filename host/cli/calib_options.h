/* Options shared by clred calibrate and the master-bias/-dark/-flat
 * subcommands: overscan and trim, detector parameters, combining, output. */
#ifndef CLRED_CLI_CALIB_OPTIONS_H
#define CLRED_CLI_CALIB_OPTIONS_H

#include <getopt.h>

#include "cli.h"

enum {
    CO_OVERSCAN = 1000, CO_ORDER, CO_BIASSEC, CO_TRIMSEC, CO_NO_HEADER_SECTIONS, CO_GAIN, CO_READNOISE,
    CO_SATURATION, CO_EXPTIME, CO_OVERRIDE,
    CO_METHOD, CO_REJECT, CO_SIGMA, CO_SIGMA_LOW, CO_SIGMA_HIGH, CO_ITERS,
    CO_JSON, CO_DEVICE, CO_OVERWRITE,
    CO_BIAS, CO_DARK, CO_FLAT, CO_BPM, CO_ELECTRONS, CO_SUFFIX, CO_PLANES, CO_FLOOR, CO_REGION
};

#define CALIB_LONG_OPTIONS                                                                              \
    {"overscan", required_argument, 0, CO_OVERSCAN}, {"overscan-order", required_argument, 0, CO_ORDER}, \
        {"biassec", required_argument, 0, CO_BIASSEC}, {"trimsec", required_argument, 0, CO_TRIMSEC},   \
        {"no-header-sections", no_argument, 0, CO_NO_HEADER_SECTIONS},                                  \
        {"gain", required_argument, 0, CO_GAIN}, {"readnoise", required_argument, 0, CO_READNOISE},     \
        {"saturation", required_argument, 0, CO_SATURATION}, {"override", no_argument, 0, CO_OVERRIDE}

#define COMBINE_LONG_OPTIONS                                                                          \
    {"method", required_argument, 0, CO_METHOD}, {"reject", required_argument, 0, CO_REJECT},         \
        {"sigma", required_argument, 0, CO_SIGMA}, {"sigma-low", required_argument, 0, CO_SIGMA_LOW}, \
        {"sigma-high", required_argument, 0, CO_SIGMA_HIGH}, {"iters", required_argument, 0, CO_ITERS}

#define COMMON_LONG_OPTIONS                                                                         \
    {"output", required_argument, 0, 'o'}, {"overwrite", no_argument, 0, CO_OVERWRITE},             \
        {"json", no_argument, 0, CO_JSON}, {"device", required_argument, 0, CO_DEVICE},             \
        {"help", no_argument, 0, 'h'}

/* Help text of the shared options. */
extern const char calib_options_help[];
extern const char combine_options_help[];
extern const char common_options_help[];

/* Applies option c (with its argument) when it is a calibration option:
 * returns 1 if applied, 0 if c is not one, -1 after printing a usage error. */
int calib_option(const char *cmd, int c, const char *arg, clred_calib_opts *o);
int combine_option(const char *cmd, int c, const char *arg, clred_combine_opts *o);

/* Reads a master (a clred MEF brings VAR and MASK); prints the error. */
int cli_read_master(const char *cmd, const char *path, clred_image *img);

/* Prints {"device": ..., "kernel_s": ...} fields (no braces) for --json. */
void cli_json_device(clred_ctx *ctx);

/* Writes a master with the stats of its usable pixels into st (for the
 * summary); returns an exit code, printing any error. */
int cli_write_master(const char *cmd, clred_ctx *ctx, const char *path, const clred_image *img, int overwrite,
                     clred_stats *st);

/* Prints the JSON summary of a master: {"command", "output", "inputs", shape, stats, device}. */
void cli_master_json(const char *cmd, const char *output, char **inputs, size_t n, const clred_image *img,
                     const clred_stats *st, clred_ctx *ctx);

/* One master subcommand: which masters and options it takes, its defaults. */
typedef enum { MASTER_BIAS, MASTER_DARK, MASTER_FLAT } master_kind;
typedef struct {
    const char *cmd; /* "master-bias" ... */
    master_kind kind;
    clred_combine_method method; /* defaults */
    clred_reject_method reject;
    void (*help)(void);
} master_spec;

/* The whole subcommand: parse, check the output, read the masters it
 * subtracts, build, write, summarise. */
int master_command(const master_spec *spec, int argc, char **argv);

#endif
