/* The clred command: dispatches to one subcommand per step. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_command commands[] = {
    {"devices", "list OpenCL platforms and devices with their limits", cmd_devices},
    {"stats", "sigma-clipped statistics of an image or a region", cmd_stats},
    {"master-bias", "combine bias frames into a master bias", cmd_master_bias},
    {"master-dark", "combine dark frames into a master dark (per second)", cmd_master_dark},
    {"master-flat", "combine flat frames into a normalised master flat", cmd_master_flat},
    {"calibrate", "overscan, bias, dark, flat, gain; variance and mask", cmd_calibrate},
    {"combine", "stack frames: mean/median/sum/min/max with rejection", cmd_combine},
    {"background", "mesh background: maps, model products, statistics; --constant, --restore, --pixel-stats", cmd_background},
    {"proxy", "proxy-pixel background of CUTE-like spectral frames; --simulate writes a test set", cmd_proxy},
    {"quicklook", "quick-look PNG of an image (zscale or asinh stretch)", cmd_quicklook},
    {"cosmic", "L.A.Cosmic cosmic-ray detection and repair", cmd_cosmic},
    {"badpix", "hot, cold, saturated and bleed-trail pixel map from master darks / flats", cmd_badpix},
    {"sources", "detect and measure sources; FITS table and CSV catalog", cmd_sources},
    {"photometry", "exact circular-aperture photometry at given or detected positions", cmd_photometry},
    {"astrometry", "fit a TAN-SIP WCS to a reference catalog (CSV or FITS table)", cmd_astrometry},
    {"lightcurve", "forced photometry of targets (pixel or sky positions) on a series of images", cmd_lightcurve},
    {"zeropoint", "photometric zero point (MAGZP) and limiting magnitude against a reference catalog", cmd_zeropoint},
    {"register", "measure shifts by phase correlation and align frames", cmd_register},
    {"cube", "adaptive-optics cube: dark, saturation, flatness, bad pixels, shift-and-add vs plain sum", cmd_cube},
    {"run", "a night in one command: masters, calibration, cosmic rays, background, stacks", cmd_run},
    {"simulate", "write a simulated raw night with its truth", cmd_simulate},
    {"simulate-pair", "write a simulated reference / new-image pair with injected transients", cmd_simulate_pair},
    {"subtract", "ZOGY difference imaging of a new image and a reference; candidates", cmd_subtract},
    {"candidates", "transient candidates on a difference image: catalog and cutouts", cmd_candidates},
    {"demo", "simulate a night, reduce it and compare with the truth", cmd_demo},
};

static void usage(FILE *f)
{
    fprintf(f, "clred %s: astronomical image reduction on OpenCL devices\n\n"
               "usage: clred <command> [options] inputs... [-o output]\n\ncommands:\n", CLRED_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'clred <command> --help' describes each. Exit codes: 0 ok, 1 bad input, 2 usage, 3 device failure.\n"
               "Environment: CLRED_DEVICE (index or name), CLRED_CACHE_DIR, CLRED_MEMORY_LIMIT.\n");
}

/* Frames are read, reduced and written one after another in planes of tens
 * of MB. glibc gives blocks that large back to the kernel when they are
 * freed, so every frame would pay its page faults and the kernel's zeroing of
 * fresh pages again; kept in the heap, the next frame's planes reuse the same
 * pages. 32 MB is the largest threshold glibc takes (4096² planes are still
 * mapped afresh). A process setting: the library leaves it to its caller. */
static void keep_freed_planes(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

int main(int argc, char **argv)
{
    keep_freed_planes();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("clred %s\n", CLRED_VERSION);
        return EXIT_OK;
    }
    /* An interrupted run leaves no ".NAME.PID.tmp" files behind. */
    clred_temp_files_remove_on_signals();
    /* not listed: started by clred itself (clred demo) */
    if (!strcmp(argv[1], "__compile-ahead"))
        return cmd_compile_ahead(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = commands[i].run(argc - 1, argv + 1);
            const char *warning = clred_cache_warning();
            if (warning)
                fprintf(stderr, "clred %s: warning: %s\n", argv[1], warning);
            return rc;
        }
    fprintf(stderr, "clred: unknown command '%s' (see 'clred --help')\n", argv[1]);
    return EXIT_USAGE;
}
