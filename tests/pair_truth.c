#include "pair_truth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

/* A candidate is a transient's when it lies within 5 sigma of its own
 * position error (x_err, y_err: the PSF fit's) of it, and never needs to be
 * closer than 2 px: as a broker associates a detection with a known object,
 * by its astrometric error with a floor for what the error leaves out (the
 * fit's error is noise's alone). A real source's measured position leaves 5
 * sigma once in 270 000 (2-D Gaussian: e^{-12.5}); at the faintest
 * candidates (S/N 5, sigma about 0.5 px with these PSFs) the radius is
 * under 3 px, so a peak of noise falls within it of one of 45 transients
 * with a chance of about 2 % in a 256^2 image. */
static int matches(const clred_candidate *c, const clred_pair_transient *tr)
{
    double sig = sqrt(0.5 * (c->x_err * c->x_err + c->y_err * c->y_err));
    double r = isfinite(sig) ? fmax(PAIR_MATCH_FLOOR, PAIR_MATCH_SIGMAS * sig) : PAIR_MATCH_FLOOR;
    return hypot(c->x - tr->x, c->y - tr->y) <= r;
}

/* For what an unmatched candidate's line says: the transient nearest (x, y), or -1. */
static long nearest_transient(const clred_pair *p, double x, double y)
{
    long best = -1;
    for (size_t t = 0; t < p->ntransients; t++)
        if (best < 0 || hypot(p->transients[t].x - x, p->transients[t].y - y) <
                            hypot(p->transients[best].x - x, p->transients[best].y - y))
            best = (long)t;
    return best;
}

pair_score pair_score_candidates(const clred_pair *p, const clred_candidate *c, size_t nc, const clred_image *score,
                                 uint16_t skip_bits, const char *what)
{
    pair_score r = {0};
    double pull = 0, pull2 = 0;
    char *matched = calloc(nc + 1, 1);
    for (size_t t = 0; t < p->ntransients; t++) {
        const clred_pair_transient *tr = &p->transients[t];
        long best = -1;
        for (size_t k = 0; k < nc; k++)
            if (matches(&c[k], tr) && (best < 0 || fabs(c[k].score) > fabs(c[best].score)))
                best = (long)k;
        if (best >= 0)
            matched[best] = 1;
        for (size_t k = 0; k < nc; k++)
            if (hypot(c[k].x - tr->x, c[k].y - tr->y) <= PAIR_MATCH_FLOOR && tr->snr >= 8)
                CHECK_MSG(c[k].isdiffpos == (tr->flux > 0), "transient at (%.1f, %.1f) flux %.0f: isdiffpos %d",
                          tr->x, tr->y, tr->flux, c[k].isdiffpos);
        size_t q = (size_t)lround(tr->y) * score->width + (size_t)lround(tr->x);
        if (tr->snr < 8 || (score->mask[q] & skip_bits))
            continue;
        r.bright++;
        if (best < 0)
            printf("  missed transient at (%.1f, %.1f) flux %.0f S/N %.1f on galaxy %d: %s there %.2f\n", tr->x, tr->y,
                   tr->flux, tr->snr, tr->on_galaxy, what, score->sci[q]);
        r.found += best >= 0;
        if (tr->flux < 0) {
            r.fading++;
            r.fading_neg += best >= 0 && !c[best].isdiffpos;
        }
        if (best >= 0 && !(c[best].flags & CLRED_CAND_MASKED)) {
            double pl = (c[best].flux - tr->flux) / c[best].flux_err;
            pull += pl;
            pull2 += pl * pl;
            r.used++;
        }
    }
    for (size_t k = 0; k < nc; k++)
        if (!matched[k]) {
            r.false_pos++;
            r.false_clean += !(c[k].flags & (CLRED_CAND_MASKED | CLRED_CAND_EDGE));
            long near = nearest_transient(p, c[k].x, c[k].y);
            printf("  unmatched candidate at (%.1f, %.1f) +- (%.2f, %.2f) score %.1f flags %u bits 0x%x", c[k].x, c[k].y,
                   c[k].x_err, c[k].y_err, c[k].score, c[k].flags, c[k].mask_bits);
            if (near >= 0)
                printf("; nearest transient %.1f px off, flux %.0f S/N %.1f",
                       hypot(c[k].x - p->transients[near].x, c[k].y - p->transients[near].y),
                       p->transients[near].flux, p->transients[near].snr);
            printf("\n");
        }
    for (size_t k = 0; k < nc; k++)
        for (size_t h = 0; h < p->nholes; h++)
            CHECK_MSG(fabs(c[k].x - p->hole_xy[2 * h]) > 4 || fabs(c[k].y - p->hole_xy[2 * h + 1]) > 4,
                      "candidate at (%.1f, %.1f) on the template's hole at (%.1f, %.1f)", c[k].x, c[k].y,
                      p->hole_xy[2 * h], p->hole_xy[2 * h + 1]);
    r.pull_mean = r.used ? pull / (double)r.used : NAN;
    r.pull_sd = r.used > 1 ? sqrt(pull2 / (double)r.used - r.pull_mean * r.pull_mean) : NAN;
    free(matched);
    return r;
}

double pair_expected_false(size_t w, size_t h, double fwhm, double nu)
{
    double sg = fwhm / 2.3548;
    return 2.0 * (double)w * (double)h / (pow(2, 2.5) * pow(M_PI, 1.5) * sg * sg) * nu * exp(-0.5 * nu * nu);
}

clred_pair_opts pair_sources_opts(uint64_t seed, clred_psf_kind kind, double ref_fwhm, double new_fwhm)
{
    clred_pair_opts po = clred_pair_defaults();
    po.seed = seed;
    po.ref_fwhm = ref_fwhm;
    po.new_fwhm = new_fwhm;
    po.psf_kind = kind;
    po.ntransients = 45;
    po.nholes = 6;
    return po;
}
