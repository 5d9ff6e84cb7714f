#include "pair_truth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

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
            if (hypot(c[k].x - tr->x, c[k].y - tr->y) <= 2.0 && (best < 0 || fabs(c[k].score) > fabs(c[best].score)))
                best = (long)k;
        if (best >= 0)
            matched[best] = 1;
        for (size_t k = 0; k < nc; k++)
            if (hypot(c[k].x - tr->x, c[k].y - tr->y) <= 2.0 && tr->snr >= 8)
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
            printf("  unmatched candidate at (%.1f, %.1f) score %.1f flags %u bits 0x%x\n", c[k].x, c[k].y, c[k].score,
                   c[k].flags, c[k].mask_bits);
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
