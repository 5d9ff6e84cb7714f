/* Candidates on a simulated pair judged against its truth, the same way for
 * every subtraction method (test_al, test_zogy). */
#ifndef CLRED_PAIR_TRUTH_H
#define CLRED_PAIR_TRUTH_H

#include <stddef.h>
#include <stdint.h>

#include "clred.h"

typedef struct {
    size_t bright;     /* transients at S/N >= 8 on pixels that count */
    size_t found;      /* of those, matched by a candidate (pair_score_candidates) */
    size_t fading;     /* bright transients that fade ... */
    size_t fading_found; /* ... and were found (any sign) */
    size_t fading_neg; /* ... and were found with a negative sign */
    size_t false_pos;  /* candidates that match no transient */
    size_t false_clean; /* of those, no unusable pixel nearby, not at the edge and not in a saturated star's
                           wings (CLRED_CAND_BRIGHT, where the caller flagged it), not a blend of a brighter
                           candidate's light (CLRED_CAND_BLEND): what a broker keeps */
    size_t found_bright; /* bright transients found whose candidate is flagged CLRED_CAND_BRIGHT */
    size_t used;       /* matched, unmasked candidates in the flux pull */
    double pull_mean;  /* (flux - truth) / flux_err over those */
    double pull_sd;
} pair_score;

/* How far a candidate may lie from the transient it is taken for: within
 * PAIR_MATCH_SIGMAS of its own position error, and always within
 * PAIR_MATCH_FLOOR px (pair_truth.c's matches says why). */
#define PAIR_MATCH_SIGMAS 5.0
#define PAIR_MATCH_FLOOR 2.0

/* Matches each transient to the strongest candidate that matches it and prints
 * what was missed or unmatched. A transient on a pixel whose mask in `score`
 * has any of `skip_bits` set does not count toward completeness (the area
 * the subtraction could not use). Checks here, for every method: no
 * candidate that no transient explains lies on one of the template's holes
 * (their extent, grown by the candidate's position error), and every candidate within
 * PAIR_MATCH_FLOOR px of a bright transient has the transient's sign (a wider
 * radius would take in a bright transient's PSF-mismatch ring). `what` names the score plane. */
pair_score pair_score_candidates(const clred_pair *p, const clred_candidate *c, size_t nc, const clred_image *score,
                                 uint16_t skip_bits, const char *what);

/* pair_score_candidates, the hole check judged by what the holes did: a
 * candidate near a hole is its hole's unless holeless (the score of the same
 * pair simulated without holes, by the same method) reaches thresh with the
 * candidate's sign at its peak pixel. holeless NULL: any candidate near a
 * hole is its hole's. */
pair_score pair_score_candidates_holes(const clred_pair *p, const clred_candidate *c, size_t nc,
                                       const clred_image *score, uint16_t skip_bits, const char *what,
                                       const clred_image *holeless, double thresh);

/* The sky left in a difference of p, block by block: the median of
 * D / sqrt(VAR) over each block x block px block's pixels with no mask bit
 * and over 3 FWHM from every transient (what is left there is sky and the
 * residuals of sources both images hold), blocks with under half their
 * pixels usable skipped. Returns the blocks' count; the largest |median| in
 * *worst, at the block whose centre is (*wx, *wy), and the blocks' mean and
 * standard deviation of the medians in *mean, *sd. */
size_t pair_block_medians(const clred_pair *p, const clred_image *d, size_t block, double *worst, double *wx,
                          double *wy, double *mean, double *sd);

/* Checks that the sky left in d (a difference of p, with VAR and MASK) is
 * zero within its noise on 32 x 32 blocks (pair_block_medians; the bounds
 * are argued in pair_truth.c) and prints the blocks' figures under `what`. */
void pair_check_sky(const clred_pair *p, const clred_dimage *d, const char *what);

/* Scores a fixed area whatever the subtraction masked: sets CLRED_MASK_SATURATED
 * in score's MASK on every pixel within r px of a pixel either image of p
 * flags SATURATED (so no transient there counts toward completeness when
 * the scoring skips UNUSABLE bits), and drops the candidates within r px of
 * one (compacting c). Returns the candidates kept. For comparing runs whose
 * saturated masks differ (a longer kernel or PSF stamp grows them). */
size_t pair_exclude_saturated(const clred_pair *p, double r, clred_image *score, clred_candidate *c, size_t nc);

/* The pair the candidate tests score: 45 transients (a third fading) and 6
 * holes in the template, with this seed and seeing. */
clred_pair_opts pair_sources_opts(uint64_t seed, clred_psf_kind kind, double ref_fwhm, double new_fwhm);

/* DMTN-006: the expected number of peaks above nu sigma, both signs, in a
 * w x h field of white noise filtered with a Gaussian PSF of this FWHM:
 * 2 w h / (2^(5/2) pi^(3/2) sigma_g^2) nu exp(-nu^2 / 2). */
double pair_expected_false(size_t w, size_t h, double fwhm, double nu);

#endif
