/* clred run's INI configuration (libinih): each [section] key = value sets
 * one clred_night_opts field; an unknown key or a bad value is an error that
 * names the line. */
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "run_config.h"


static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
        return *out = 1, 1;
    if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcmp(v, "0"))
        return *out = 0, 1;
    return 0;
}

static int parse_num(const char *v, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(v, &end);
    /* Non-finite values are no setting's (and would make the (int) casts below undefined). */
    return end != v && !*end && !errno && isfinite(*out);
}

static int choice(const char *v, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (!strcasecmp(v, names[i]))
            return *out = i, 1;
    return 0;
}

static const char *keep(run_config *c, const char *value)
{
    if (!*value || c->nstrings >= 16 || !(c->strings[c->nstrings] = strdup(value)))
        return NULL;
    return c->strings[c->nstrings++];
}

/* [subtract]: difference imaging of each stack against a reference. */
static int subtract_entry(run_config *c, const char *key, const char *value)
{
    clred_night_opts *o = c->o;
    clred_subtract_job *j = &c->subtract;
    if (!o->subtract) {
        *j = clred_subtract_job_defaults();
        o->subtract = j;
    }
    double d = 0;
    int b = 0, k = 0, ok = 0;
    if (!strcasecmp(key, "reference")) {
        ok = (o->subtract_reference = keep(c, value)) != NULL;
    } else if (!strcasecmp(key, "method")) {
        static const char *const names[] = {"zogy", "al"};
        if ((ok = choice(value, names, 2, &k)))
            j->method = (clred_diff_method)k;
    } else if (!strcasecmp(key, "ref_psf")) {
        ok = (j->ref_psf = keep(c, value)) != NULL;
    } else if (!strcasecmp(key, "ref_noise")) {
        ok = (j->ref_noise = keep(c, value)) != NULL;
    } else if (!strcasecmp(key, "ref_mask")) {
        ok = (j->ref_mask = keep(c, value)) != NULL;
    } else if (!strcasecmp(key, "fit_mask") || !strcasecmp(key, "fit_only")) {
        if (j->fit_mask)
            snprintf(c->error, sizeof c->error, "[subtract] %s: one fit mask (fit_mask or fit_only)", key);
        else if ((ok = (j->fit_mask = keep(c, value)) != NULL))
            j->fit_mask_selects = !strcasecmp(key, "fit_only");
    } else if (!strcasecmp(key, "psf_size")) {
        if ((ok = parse_num(value, &d) && d >= 3 && d <= 1001 && d == floor(d) && (int)d % 2 == 1))
            j->psf_size = j->psf.size = (size_t)d;
    } else if (!strcasecmp(key, "threshold")) {
        ok = parse_num(value, &j->cand.thresh) && j->cand.thresh > 0;
    } else if (!strcasecmp(key, "positive_only")) {
        if ((ok = parse_bool(value, &b)))
            j->cand.both_signs = !b;
    } else if (!strcasecmp(key, "renormalize")) {
        ok = parse_bool(value, &j->zogy.renormalize);
    } else if (!strcasecmp(key, "astrom_sigma")) {
        if ((ok = parse_num(value, &d) && d >= 0))
            j->zogy.astrom_sigma_x = j->zogy.astrom_sigma_y = d;
    } else if (!strcasecmp(key, "psf_err")) {
        if ((ok = parse_num(value, &d) && d >= 0 && d < 1))
            j->zogy.psf_err_n = j->zogy.psf_err_r = d;
    } else if (!strcasecmp(key, "alerts")) {
        /* the recipe names the directory (difference/<object>_<filter>_alerts) */
        if ((ok = parse_bool(value, &b)))
            j->alerts = b ? "yes" : NULL;
    } else if (!strcasecmp(key, "tile")) {
        if ((ok = parse_num(value, &d) && d >= 0 && d <= 1e6 && d == floor(d)))
            j->zogy.tile_size = (size_t)d;
    } else {
        snprintf(c->error, sizeof c->error, "[subtract] %s: no such key (see clred run --help)", key);
    }
    return ok;
}

static int config_entry(void *user, const char *section, const char *key, const char *value)
{
    run_config *c = user;
    clred_night_opts *o = c->o;
    double d = 0;
    int b = 0, k = 0, ok = 0;
#define IS(s, k_) (!strcasecmp(section, s) && !strcasecmp(key, k_))
    if (!strcasecmp(section, "keywords")) {
        const char **slot = !strcasecmp(key, "type")      ? &o->type_keys
                            : !strcasecmp(key, "exptime") ? &o->exptime_keys
                            : !strcasecmp(key, "filter")  ? &o->filter_keys
                            : !strcasecmp(key, "object")  ? &o->object_keys
                                                          : NULL;
        if (slot && *value && c->nstrings < 16 && (c->strings[c->nstrings] = strdup(value))) {
            *slot = c->strings[c->nstrings++];
            ok = 1;
        }
    } else if (IS("calibrate", "overscan")) {
        static const char *const names[] = {"none", "mean", "median", "fit", "auto"};
        if ((ok = choice(value, names, 5, &k)))
            o->calib.overscan = (clred_overscan_mode)k;
    } else if (IS("calibrate", "gain")) {
        ok = parse_num(value, &o->calib.gain) && o->calib.gain >= 0;
    } else if (IS("calibrate", "readnoise")) {
        ok = parse_num(value, &o->calib.readnoise);
    } else if (IS("calibrate", "saturation")) {
        ok = parse_num(value, &o->calib.saturation);
    } else if (IS("calibrate", "flat_floor")) {
        ok = parse_num(value, &o->calib.flat_floor);
    } else if (IS("calibrate", "override_checks")) {
        ok = parse_bool(value, &o->calib.override_checks);
    } else if (IS("cosmic", "enabled")) {
        ok = parse_bool(value, &o->cosmic);
    } else if (IS("cosmic", "sigclip")) {
        ok = parse_num(value, &o->cosmic_opts.sigclip) && o->cosmic_opts.sigclip > 0;
    } else if (IS("cosmic", "sigfrac")) {
        ok = parse_num(value, &o->cosmic_opts.sigfrac) && o->cosmic_opts.sigfrac > 0;
    } else if (IS("cosmic", "objlim")) {
        ok = parse_num(value, &o->cosmic_opts.objlim) && o->cosmic_opts.objlim > 0;
    } else if (IS("cosmic", "max_iters")) {
        ok = parse_num(value, &d) && d >= 1 && d <= 100 && (o->cosmic_opts.max_iters = (int)d) == d;
    } else if (IS("cosmic", "sepmed")) {
        ok = parse_bool(value, &o->cosmic_opts.sepmed);
    } else if (IS("background", "enabled")) {
        ok = parse_bool(value, &o->background);
    } else if (IS("background", "box")) {
        if ((ok = parse_num(value, &d) && d >= 4 && d <= 4096))
            o->bkg_opts.box_w = o->bkg_opts.box_h = (int)d;
    } else if (IS("background", "filter")) {
        if ((ok = parse_num(value, &d) && d >= 1 && d <= 15 && ((int)d % 2) == 1))
            o->bkg_opts.filter_w = o->bkg_opts.filter_h = (int)d;
    } else if (IS("background", "mask_sources")) {
        ok = parse_bool(value, &o->bkg_opts.mask_sources);
    } else if (IS("background", "save_map")) {
        ok = parse_bool(value, &o->bkg_save_map);
    } else if (IS("stack", "register")) {
        static const char *const names[] = {"shifts", "stars"};
        if ((ok = choice(value, names, 2, &k)))
            o->stack.method = (clred_register_method)k;
    } else if (IS("stack", "ref")) {
        if ((ok = parse_num(value, &d) && d >= 0 && d <= 1e9 && d == floor(d)))
            o->stack.ref_index = (long)d;
    } else if (IS("stack", "interp")) {
        if ((ok = choice(value, cli_interp_names, 5, &k)))
            o->stack.ropts.interp = (clred_interp)k;
    } else if (IS("stack", "grid")) {
        static const char *const names[] = {"reference", "union"};
        if ((ok = choice(value, names, 2, &k)))
            o->stack.grid = (clred_grid)k;
    } else if (IS("stack", "method")) {
        static const char *const names[] = {"mean", "median", "sum"};
        if ((ok = choice(value, names, 3, &k)))
            o->stack.copts.method = (clred_combine_method)k;
    } else if (IS("stack", "reject")) {
        static const char *const names[] = {"none", "sigclip", "minmax"};
        if ((ok = choice(value, names, 3, &k)))
            o->stack.copts.reject = (clred_reject_method)k;
    } else if (IS("stack", "sigma")) {
        if ((ok = parse_num(value, &d) && d > 0))
            o->stack.copts.sigma_lower = o->stack.copts.sigma_upper = d;
    } else if (IS("stack", "spread")) {
        static const char *const names[] = {"std", "mad"};
        if ((ok = choice(value, names, 2, &k)))
            o->stack.copts.spread_mad = k;
    } else if (IS("stack", "scale")) {
        static const char *const names[] = {"none", "multiplicative", "additive", "stars"};
        if ((ok = choice(value, names, 4, &k)))
            o->stack.copts.scale = (clred_scale_method)k;
    } else if (IS("stack", "match_background")) {
        ok = parse_bool(value, &o->stack.match_background);
    } else if (IS("stack", "match_order")) {
        if ((ok = parse_num(value, &d) && d >= -1 && d <= 3 && d == floor(d)))
            o->stack.bkgmatch.order = (int)d;
    } else if (IS("stack", "final_background")) {
        ok = parse_bool(value, &o->coadd_background);
    } else if (IS("stack", "final_box")) {
        if ((ok = parse_num(value, &d) && d >= 4 && d <= 4096))
            o->coadd_bkg_opts.box_w = o->coadd_bkg_opts.box_h = (int)d;
    } else if (IS("stack", "match_box")) {
        if ((ok = parse_num(value, &d) && d >= 4 && d <= 4096))
            o->stack.bkgmatch.box = (int)d;
    } else if (IS("quality", "enabled")) {
        ok = parse_bool(value, &o->quality);
    } else if (IS("quality", "max_fwhm")) {
        ok = parse_num(value, &o->quality_limits.max_fwhm) && o->quality_limits.max_fwhm > 0;
    } else if (IS("quality", "max_ellipticity")) {
        ok = parse_num(value, &o->quality_limits.max_ellipticity) && o->quality_limits.max_ellipticity >= 0;
    } else if (IS("quality", "max_sky_noise")) {
        ok = parse_num(value, &o->quality_limits.max_sky_noise) && o->quality_limits.max_sky_noise > 0;
    } else if (IS("quality", "min_stars")) {
        if ((ok = parse_num(value, &d) && d >= 0 && d <= 1e9 && d == floor(d)))
            o->quality_limits.min_stars = (size_t)d;
    } else if (IS("quality", "min_limit_mag")) {
        ok = parse_num(value, &o->quality_limits.min_limit_mag);
    } else if (IS("quality", "max_astrom_rms")) {
        ok = parse_num(value, &o->quality_limits.max_astrom_rms) && o->quality_limits.max_astrom_rms > 0;
    } else if (!strcasecmp(section, "subtract")) {
        ok = subtract_entry(c, key, value);
    } else if (IS("run", "strict")) {
        ok = parse_bool(value, &o->strict);
    } else if (IS("run", "read_ahead")) {
        if ((ok = parse_num(value, &d) && d >= 1 && d <= 64))
            o->read_ahead = (size_t)d;
    } else if (IS("run", "stream")) {
        ok = parse_bool(value, &b);
        o->stream = b;
    } else {
        snprintf(c->error, sizeof c->error, "[%s] %s: no such key (see clred run --help)", section, key);
        return 0;
    }
#undef IS
    if (!ok && !*c->error)
        snprintf(c->error, sizeof c->error, "[%s] %s = %s: not a valid value (see clred run --help)", section, key,
                 value);
    return ok;
}


int run_config_read(const char *path, clred_night_opts *o, run_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->o = o;
    int line = ini_parse(path, config_entry, cfg);
    int rc = EXIT_OK;
    if (line < 0)
        rc = (fprintf(stderr, "clred run: %s: cannot read the configuration\n", path), EXIT_BAD_INPUT);
    else if (line > 0)
        rc = cli_usage_error("run", "%s:%d: %s", path, line, *cfg->error ? cfg->error : "malformed line");
    else if (o->subtract && o->subtract->fit_mask && o->subtract->method != CLRED_DIFF_AL)
        rc = cli_usage_error("run", "%s: [subtract] fit_mask and fit_only need method = al (ZOGY fits no kernel)", path);
    if (rc != EXIT_OK)
        run_config_free(cfg);
    return rc;
}

void run_config_free(run_config *cfg)
{
    for (size_t i = 0; i < cfg->nstrings; i++)
        free(cfg->strings[i]);
    cfg->nstrings = 0;
}
