/* clred quicklook: an 8-bit PNG of any image with a zscale or asinh stretch. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(void)
{
    printf("usage: clred quicklook IMAGE -o OUT.png [--stretch zscale|asinh] [--overwrite]\n\n"
           "A grey quick-look PNG of the image (row 0 at the bottom, as FITS viewers show it; NaN black).\n"
           "zscale: linear between IRAF's zscale limits (as astropy's ZScaleInterval);\n"
           "asinh: asinh(10 t) / asinh(10), t linear between the 0.25 and 99.75 percentiles.\n\n"
           "example:\n"
           "  clred quicklook stacks/M31_R.fits -o m31.png --stretch asinh\n");
}

int cmd_quicklook(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'}, {"stretch", required_argument, 0, 's'},
                                         {"overwrite", no_argument, 0, 'w'},    {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    static const char *const stretches[] = {"zscale", "asinh"};
    const char *output = NULL;
    int overwrite = 0, stretch = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': output = optarg; break;
        case 's':
            if (!cli_parse_choice("quicklook", "--stretch", optarg, stretches, 2, &stretch))
                return EXIT_USAGE;
            break;
        case 'w': overwrite = 1; break;
        case 'h': help(); return EXIT_OK;
        default: return cli_usage_error("quicklook", "unknown option");
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("quicklook", "one input image expected");
    const char *input = argv[optind];
    clred_status s = clred_output_check(output, &input, 1, overwrite);
    if (s != CLRED_OK)
        return cli_fail("quicklook", s);
    clred_image img;
    s = clred_image_read(input, 0, &img);
    if (s == CLRED_OK)
        s = clred_png_write(output, img.sci, img.width, img.height, (clred_stretch)stretch, overwrite);
    clred_image_free(&img);
    return s == CLRED_OK ? EXIT_OK : cli_fail("quicklook", s);
}
