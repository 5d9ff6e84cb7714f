/* Shared by the clred subcommands: exit codes, errors, device, progress, JSON. */
#ifndef CLRED_CLI_H
#define CLRED_CLI_H

#include <stdio.h>
#include <sys/types.h>

#include "clred.h"

enum { EXIT_OK = 0, EXIT_BAD_INPUT = 1, EXIT_USAGE = 2, EXIT_DEVICE = 3 };

/* The exit code for a library status. */
int cli_exit_code(clred_status s);
/* Prints "clred CMD: <clred_last_error()>" on stderr and returns the exit code. */
int cli_fail(const char *cmd, clred_status s);
/* The same for a failure while working on the file path: the message names
 * it ("clred CMD: PATH: <error>") unless the library's message already does. */
int cli_fail_on(const char *cmd, const char *path, clred_status s);
/* Prints "clred CMD: <message>" on stderr and returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Opens the device named by --device (NULL: CLRED_DEVICE or the default).
 * Loading the OpenCL driver costs tens of ms of CPU (POCL maps LLVM), so a
 * command checks its options and inputs first (cli_check_inputs): bad input
 * then fails at once. */
int cli_open(const char *cmd, const char *device, clred_ctx **ctx);
/* Reads every input's header (as clred_file_info_read: the file exists, is a
 * FITS or .npy image whose claimed shape the file can hold). On the first
 * failure prints one line naming the file and returns its exit code. */
int cli_check_inputs(const char *cmd, const char *const *paths, size_t npaths);

/* A progress line on stderr (when stderr is a terminal or CLRED_PROGRESS=1). */
void cli_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_progress_done(void);

/* Parsing option values: print a usage error and return 0 if malformed. */
int cli_parse_double(const char *cmd, const char *opt, const char *text, double *out);
int cli_parse_int(const char *cmd, const char *opt, const char *text, int *out);

/* One frame of the inputs: a 2-D file, or plane `frame` of a cube. */
typedef struct {
    const char *path;
    size_t frame;
    int cube;
} cli_frame;
/* Every frame of every input (cubes expand to their planes); *frames is
 * malloc'd. On failure prints the error and returns its exit code. */
int cli_list_frames(const char *cmd, const char *const *paths, size_t npaths, cli_frame **frames, size_t *n);
/* Reads the listed frames into *images (malloc'd; free with cli_free_images). */
int cli_read_frames(const char *cmd, const cli_frame *frames, size_t n, clred_image **images);
void cli_free_images(clred_image *images, size_t n);
/* A variance or RMS image must not be negative: prints the error naming path
 * and returns EXIT_BAD_INPUT if any pixel is (NaN is left to the step). */
int cli_check_nonnegative(const char *cmd, const char *path, const char *what, const clred_image *img);

/* One of count names: its index in *out. Prints a usage error and returns 0
 * if text is none of them. */
int cli_parse_choice(const char *cmd, const char *opt, const char *text, const char *const *names, int count, int *out);
/* --ref: a frame index >= 0, or "median" (-1). */
int cli_parse_ref(const char *cmd, const char *text, long *ref);

/* Interpolant names, in clred_interp order, and their parser. */
extern const char *const cli_interp_names[5];
int cli_parse_interp(const char *cmd, const char *text, clred_interp *out);

/* A helper process compiling a night's later kernels ahead for frames of
 * w x h on ctx's device (compile_ahead.c): the frame-quality metrics when
 * quality, registration and resampling with the night's default options when
 * align. When that pays (clred_compile_ahead_pays) and there is any: its
 * process id, else -1. Finish reaps it (asked to stop, it ends after the call
 * it is in). */
pid_t cli_compile_ahead_start(const clred_ctx *ctx, const char *device, size_t w, size_t h, int quality,
                             int align);
void cli_compile_ahead_finish(pid_t pid);
/* The helper itself: clred __compile-ahead --size WxH [--no-quality] [--no-align] [--device D]. */
int cmd_compile_ahead(int argc, char **argv);

/* JSON output on stdout: a string with escapes. */
void cli_json_string(FILE *f, const char *s);

/* Each subcommand: argc/argv start at the subcommand's name. */
typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} cli_command;

int cmd_devices(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_master_bias(int argc, char **argv);
int cmd_master_dark(int argc, char **argv);
int cmd_master_flat(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_combine(int argc, char **argv);
int cmd_simulate(int argc, char **argv);
int cmd_background(int argc, char **argv);
int cmd_quicklook(int argc, char **argv);
int cmd_proxy(int argc, char **argv);
int cmd_cosmic(int argc, char **argv);
int cmd_badpix(int argc, char **argv);
int cmd_register(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_sources(int argc, char **argv);
int cmd_photometry(int argc, char **argv);
int cmd_cube(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_astrometry(int argc, char **argv);
int cmd_zeropoint(int argc, char **argv);
int cmd_lightcurve(int argc, char **argv);
int cmd_subtract(int argc, char **argv);
int cmd_candidates(int argc, char **argv);
int cmd_simulate_pair(int argc, char **argv);

#endif
