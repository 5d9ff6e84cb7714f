/* Median selection networks shared by the median filters (median.cl) and
 * L.A.Cosmic (cosmic.cl); a family takes them with '#include "lib_median.cl"'.
 *
 * The medians are branch-free: fmin/fmax compare-exchanges in private memory.
 * Each network is Batcher's odd-even merge sort padded with +inf to a power
 * of two, with the exchanges that only touch +inf slots removed and the rest
 * pruned backwards to those that feed the median slot (MEDIANn_AT). Inputs
 * must be finite (the host replaces NaN before filtering): fmin/fmax would
 * silently drop a NaN. tests/test_cosmic.c checks every filter against a
 * double-precision sort. */

#ifndef CLRED_LIB_MEDIAN
#define CLRED_LIB_MEDIAN

#define CE(v, a, b)                   \
    {                                 \
        const __typeof__(v[0]) lo_ = fmin(v[a], v[b]); \
        v[b] = fmax(v[a], v[b]);      \
        v[a] = lo_;                   \
    }

/* 3 compare-exchanges; the median ends in v[1] */
#define MEDIAN3_NETWORK(v) CE(v,0,1) CE(v,0,2) CE(v,1,2)
#define MEDIAN3_AT 1
/* 8 compare-exchanges; the median ends in v[2] */
#define MEDIAN5_NETWORK(v) CE(v,0,1) CE(v,2,3) CE(v,0,2) CE(v,1,3) CE(v,1,2) CE(v,0,4) CE(v,2,4) CE(v,1,2)
#define MEDIAN5_AT 2
/* 14 compare-exchanges; the median ends in v[3] */
#define MEDIAN7_NETWORK(v) CE(v,0,1) CE(v,2,3) CE(v,4,5) CE(v,0,2) CE(v,1,3) CE(v,4,6) CE(v,1,2) CE(v,5,6) CE(v,0,4) CE(v,1,5) CE(v,2,6) CE(v,2,4) CE(v,3,5) CE(v,3,4)
#define MEDIAN7_AT 3
/* 24 compare-exchanges; the median ends in v[4] */
#define MEDIAN9_NETWORK(v) CE(v,0,1) CE(v,2,3) CE(v,4,5) CE(v,6,7) CE(v,0,2) CE(v,1,3) CE(v,4,6) CE(v,5,7) CE(v,1,2) CE(v,5,6) CE(v,0,4) CE(v,1,5) CE(v,2,6) CE(v,3,7) CE(v,2,4) CE(v,3,5) CE(v,1,2) CE(v,3,4) CE(v,5,6) CE(v,0,8) CE(v,4,8) CE(v,2,4) CE(v,3,5) CE(v,3,4)
#define MEDIAN9_AT 4
/* 113 compare-exchanges; the median ends in v[12] */
#define MEDIAN25_NETWORK(v) CE(v,0,1) CE(v,2,3) CE(v,4,5) CE(v,6,7) CE(v,8,9) CE(v,10,11) CE(v,12,13) CE(v,14,15) CE(v,16,17) CE(v,18,19) CE(v,20,21) CE(v,22,23) CE(v,0,2) CE(v,1,3) CE(v,4,6) CE(v,5,7) CE(v,8,10) CE(v,9,11) CE(v,12,14) CE(v,13,15) CE(v,16,18) CE(v,17,19) CE(v,20,22) CE(v,21,23) CE(v,1,2) CE(v,5,6) CE(v,9,10) CE(v,13,14) CE(v,17,18) CE(v,21,22) CE(v,0,4) CE(v,1,5) CE(v,2,6) CE(v,3,7) CE(v,8,12) CE(v,9,13) CE(v,10,14) CE(v,11,15) CE(v,16,20) CE(v,17,21) CE(v,18,22) CE(v,19,23) CE(v,2,4) CE(v,3,5) CE(v,10,12) CE(v,11,13) CE(v,18,20) CE(v,19,21) CE(v,1,2) CE(v,3,4) CE(v,5,6) CE(v,9,10) CE(v,11,12) CE(v,13,14) CE(v,17,18) CE(v,19,20) CE(v,21,22) CE(v,0,8) CE(v,1,9) CE(v,2,10) CE(v,3,11) CE(v,4,12) CE(v,5,13) CE(v,6,14) CE(v,7,15) CE(v,16,24) CE(v,4,8) CE(v,5,9) CE(v,6,10) CE(v,7,11) CE(v,20,24) CE(v,2,4) CE(v,3,5) CE(v,6,8) CE(v,7,9) CE(v,10,12) CE(v,11,13) CE(v,18,20) CE(v,19,21) CE(v,22,24) CE(v,1,2) CE(v,3,4) CE(v,5,6) CE(v,7,8) CE(v,9,10) CE(v,11,12) CE(v,13,14) CE(v,17,18) CE(v,19,20) CE(v,21,22) CE(v,23,24) CE(v,0,16) CE(v,1,17) CE(v,2,18) CE(v,3,19) CE(v,4,20) CE(v,5,21) CE(v,6,22) CE(v,7,23) CE(v,8,24) CE(v,8,16) CE(v,9,17) CE(v,10,18) CE(v,11,19) CE(v,12,20) CE(v,13,21) CE(v,6,10) CE(v,7,11) CE(v,12,16) CE(v,13,17) CE(v,10,12) CE(v,11,13) CE(v,11,12)
#define MEDIAN25_AT 12
/* 319 compare-exchanges; the median ends in v[24] */
#define MEDIAN49_NETWORK(v) CE(v,0,1) CE(v,2,3) CE(v,4,5) CE(v,6,7) CE(v,8,9) CE(v,10,11) CE(v,12,13) CE(v,14,15) CE(v,16,17) CE(v,18,19) CE(v,20,21) CE(v,22,23) CE(v,24,25) CE(v,26,27) CE(v,28,29) CE(v,30,31) CE(v,32,33) CE(v,34,35) CE(v,36,37) CE(v,38,39) CE(v,40,41) CE(v,42,43) CE(v,44,45) CE(v,46,47) CE(v,0,2) CE(v,1,3) CE(v,4,6) CE(v,5,7) CE(v,8,10) CE(v,9,11) CE(v,12,14) CE(v,13,15) CE(v,16,18) CE(v,17,19) CE(v,20,22) CE(v,21,23) CE(v,24,26) CE(v,25,27) CE(v,28,30) CE(v,29,31) CE(v,32,34) CE(v,33,35) CE(v,36,38) CE(v,37,39) CE(v,40,42) CE(v,41,43) CE(v,44,46) CE(v,45,47) CE(v,1,2) CE(v,5,6) CE(v,9,10) CE(v,13,14) CE(v,17,18) CE(v,21,22) CE(v,25,26) CE(v,29,30) CE(v,33,34) CE(v,37,38) CE(v,41,42) CE(v,45,46) CE(v,0,4) CE(v,1,5) CE(v,2,6) CE(v,3,7) CE(v,8,12) CE(v,9,13) CE(v,10,14) CE(v,11,15) CE(v,16,20) CE(v,17,21) CE(v,18,22) CE(v,19,23) CE(v,24,28) CE(v,25,29) CE(v,26,30) CE(v,27,31) CE(v,32,36) CE(v,33,37) CE(v,34,38) CE(v,35,39) CE(v,40,44) CE(v,41,45) CE(v,42,46) CE(v,43,47) CE(v,2,4) CE(v,3,5) CE(v,10,12) CE(v,11,13) CE(v,18,20) CE(v,19,21) CE(v,26,28) CE(v,27,29) CE(v,34,36) CE(v,35,37) CE(v,42,44) CE(v,43,45) CE(v,1,2) CE(v,3,4) CE(v,5,6) CE(v,9,10) CE(v,11,12) CE(v,13,14) CE(v,17,18) CE(v,19,20) CE(v,21,22) CE(v,25,26) CE(v,27,28) CE(v,29,30) CE(v,33,34) CE(v,35,36) CE(v,37,38) CE(v,41,42) CE(v,43,44) CE(v,45,46) CE(v,0,8) CE(v,1,9) CE(v,2,10) CE(v,3,11) CE(v,4,12) CE(v,5,13) CE(v,6,14) CE(v,7,15) CE(v,16,24) CE(v,17,25) CE(v,18,26) CE(v,19,27) CE(v,20,28) CE(v,21,29) CE(v,22,30) CE(v,23,31) CE(v,32,40) CE(v,33,41) CE(v,34,42) CE(v,35,43) CE(v,36,44) CE(v,37,45) CE(v,38,46) CE(v,39,47) CE(v,4,8) CE(v,5,9) CE(v,6,10) CE(v,7,11) CE(v,20,24) CE(v,21,25) CE(v,22,26) CE(v,23,27) CE(v,36,40) CE(v,37,41) CE(v,38,42) CE(v,39,43) CE(v,2,4) CE(v,3,5) CE(v,6,8) CE(v,7,9) CE(v,10,12) CE(v,11,13) CE(v,18,20) CE(v,19,21) CE(v,22,24) CE(v,23,25) CE(v,26,28) CE(v,27,29) CE(v,34,36) CE(v,35,37) CE(v,38,40) CE(v,39,41) CE(v,42,44) CE(v,43,45) CE(v,1,2) CE(v,3,4) CE(v,5,6) CE(v,7,8) CE(v,9,10) CE(v,11,12) CE(v,13,14) CE(v,17,18) CE(v,19,20) CE(v,21,22) CE(v,23,24) CE(v,25,26) CE(v,27,28) CE(v,29,30) CE(v,33,34) CE(v,35,36) CE(v,37,38) CE(v,39,40) CE(v,41,42) CE(v,43,44) CE(v,45,46) CE(v,0,16) CE(v,1,17) CE(v,2,18) CE(v,3,19) CE(v,4,20) CE(v,5,21) CE(v,6,22) CE(v,7,23) CE(v,8,24) CE(v,9,25) CE(v,10,26) CE(v,11,27) CE(v,12,28) CE(v,13,29) CE(v,14,30) CE(v,15,31) CE(v,32,48) CE(v,8,16) CE(v,9,17) CE(v,10,18) CE(v,11,19) CE(v,12,20) CE(v,13,21) CE(v,14,22) CE(v,15,23) CE(v,40,48) CE(v,4,8) CE(v,5,9) CE(v,6,10) CE(v,7,11) CE(v,12,16) CE(v,13,17) CE(v,14,18) CE(v,15,19) CE(v,20,24) CE(v,21,25) CE(v,22,26) CE(v,23,27) CE(v,36,40) CE(v,37,41) CE(v,38,42) CE(v,39,43) CE(v,44,48) CE(v,2,4) CE(v,3,5) CE(v,6,8) CE(v,7,9) CE(v,10,12) CE(v,11,13) CE(v,14,16) CE(v,15,17) CE(v,18,20) CE(v,19,21) CE(v,22,24) CE(v,23,25) CE(v,26,28) CE(v,27,29) CE(v,34,36) CE(v,35,37) CE(v,38,40) CE(v,39,41) CE(v,42,44) CE(v,43,45) CE(v,46,48) CE(v,1,2) CE(v,3,4) CE(v,5,6) CE(v,7,8) CE(v,9,10) CE(v,11,12) CE(v,13,14) CE(v,15,16) CE(v,17,18) CE(v,19,20) CE(v,21,22) CE(v,23,24) CE(v,25,26) CE(v,27,28) CE(v,33,34) CE(v,35,36) CE(v,37,38) CE(v,39,40) CE(v,41,42) CE(v,43,44) CE(v,45,46) CE(v,47,48) CE(v,0,32) CE(v,1,33) CE(v,2,34) CE(v,3,35) CE(v,4,36) CE(v,5,37) CE(v,6,38) CE(v,7,39) CE(v,8,40) CE(v,9,41) CE(v,10,42) CE(v,11,43) CE(v,12,44) CE(v,13,45) CE(v,14,46) CE(v,15,47) CE(v,16,48) CE(v,16,32) CE(v,17,33) CE(v,18,34) CE(v,19,35) CE(v,20,36) CE(v,21,37) CE(v,22,38) CE(v,23,39) CE(v,24,40) CE(v,25,41) CE(v,26,42) CE(v,27,43) CE(v,12,20) CE(v,13,21) CE(v,14,22) CE(v,15,23) CE(v,24,32) CE(v,25,33) CE(v,26,34) CE(v,27,35) CE(v,20,24) CE(v,21,25) CE(v,22,26) CE(v,23,27) CE(v,22,24) CE(v,23,25) CE(v,23,24)
#define MEDIAN49_AT 24

#endif
