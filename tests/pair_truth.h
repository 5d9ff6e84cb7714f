/* Candidates on a simulated pair judged against its truth, the same way for
 * every subtraction method (test_al, test_zogy). */
#ifndef CLRED_PAIR_TRUTH_H
#define CLRED_PAIR_TRUTH_H

#include <stddef.h>
#include <stdint.h>

#include "clred.h"

typedef struct {
    size_t bright;     /* transients at S/N >= 8 on pixels that count */
    size_t found;      /* of those, matched by a candidate within 2 px */
    size_t fading;     /* bright transients that fade ... */
    size_t fading_neg; /* ... and were found with a negative sign */
    size_t false_pos;  /* candidates that match no transient */
    size_t used;       /* matched, unmasked candidates in the flux pull */
    double pull_mean;  /* (flux - truth) / flux_err over those */
    double pull_sd;
} pair_score;

/* Matches each transient to the strongest candidate within 2 px and prints
 * what was missed or unmatched. A transient on a pixel whose mask in `score`
 * has any of `skip_bits` set does not count toward completeness (the area
 * the subtraction could not use). Checks here, for every method: no
 * candidate on one of the template's holes, and every candidate within 2 px
 * of a bright transient has the transient's sign. `what` names the score plane. */
pair_score pair_score_candidates(const clred_pair *p, const clred_candidate *c, size_t nc, const clred_image *score,
                                 uint16_t skip_bits, const char *what);

#endif
