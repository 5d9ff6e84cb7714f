/* Double-precision reference for AL's varying difference PSF
 * (host/steps/al_local.c, tests/test_al_local.c). */
#ifndef AL_LOCAL_REF_H
#define AL_LOCAL_REF_H

/* img (size x size, centred) through DMTN-021's decorrelation kernel in
 * real space: phi(u) = (1 / m^2) sum_f phi^(f) e^{2 pi i f u / m} with
 * phi^ = sqrt((s2i + ksum^2 s2t) / (s2i + |K^|^2 s2t)) on an m x m grid (K:
 * kern, ks x ks, centred), then out = img * phi by direct linear
 * convolution over |u| < m / 2, cut to size x size. */
void al_local_ref_decorrelate(const float *img, int size, const float *kern, int ks, double s2i, double s2t,
                              double ksum, int m, double *out);

#endif
