/* Star matching: registration of frames that rotate or change scale.
 *
 * The brightest stars of each list form triangles with pairs of their nearest
 * neighbours (near neighbours survive a partial overlap and missing stars
 * better than triangles spanning the frame). A triangle's shape, the side
 * ratios middle/longest and shortest/longest, does not change under a
 * similarity; its handedness flips under a mirror. Triangles of the two lists
 * with close shapes are found through a grid over the shape plane, and each
 * such pair votes for the three star pairs it implies. The transforms of the
 * best-voted triangle pairs are then tried on the whole lists: the one that
 * brings most stars onto a reference star wins, and is refined by least
 * squares in double with sigma clipping. Host code: the lists are short. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum {
    NEIGHBOURS = 6,       /* triangles per star: pairs of its 6 nearest neighbours (15) */
    MAX_HYPOTHESES = 400, /* best-voted triangle pairs whose transforms are tried */
    MAX_REFINE = 10
};

/* A triangle shorter than this (px) has a shape dominated by centroid noise. */
static const double MIN_SIDE = 2.0;
/* Below this |area| / longest^2 the handedness of a nearly flat triangle is noise. */
static const double MIN_FLATNESS = 2e-3;

clred_match_opts clred_match_defaults(void)
{
    clred_match_opts o;
    memset(&o, 0, sizeof o);
    o.max_stars = 50;
    o.model = CLRED_MATCH_SIMILARITY;
    o.tolerance = 0.015;
    o.radius = 2.0;
    o.min_matches = 0;
    o.clip_sigma = 3.0;
    o.allow_mirror = 0;
    o.min_scale = 0.5;
    o.max_scale = 2.0;
    return o;
}

typedef struct {
    double x, y, flux;
} star;

typedef struct {
    int v[3];     /* vertices opposite the longest, the middle and the shortest side */
    double r1, r2; /* middle / longest, shortest / longest */
    double longest;
    int orient;   /* +1: v0 -> v1 -> v2 counter-clockwise; -1: clockwise */
} triangle;

typedef struct {
    int ref, img;  /* triangle indices */
    int flipped;   /* opposite handedness (a mirror) */
    long votes;
} tri_match;

static int cmp_flux_desc(const void *a, const void *b)
{
    double fa = ((const star *)a)->flux, fb = ((const star *)b)->flux;
    return (fa < fb) - (fa > fb);
}

/* The brightest max_stars entries with finite positions (non-finite flux last). */
static star *brightest(const clred_source *src, size_t n, size_t max_stars, size_t *nout)
{
    star *s = malloc((n ? n : 1) * sizeof *s);
    size_t m = 0;
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (isfinite(src[i].x) && isfinite(src[i].y)) {
            s[m].x = src[i].x;
            s[m].y = src[i].y;
            s[m].flux = isfinite(src[i].flux) ? src[i].flux : -HUGE_VAL;
            m++;
        }
    qsort(s, m, sizeof *s, cmp_flux_desc);
    *nout = m < max_stars ? m : max_stars;
    return s;
}

static double dist(const star *a, const star *b)
{
    return hypot(a->x - b->x, a->y - b->y);
}

/* Fills t from three stars; 0 when too small or too flat to be trusted. */
static int make_triangle(const star *s, int a, int b, int c, triangle *t)
{
    int v[3] = {a, b, c};
    double opp[3] = {dist(&s[b], &s[c]), dist(&s[a], &s[c]), dist(&s[a], &s[b])};
    /* Order the vertices by the length of the side opposite them, longest first. */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2 - i; j++)
            if (opp[j] < opp[j + 1]) {
                double d = opp[j];
                opp[j] = opp[j + 1];
                opp[j + 1] = d;
                int k = v[j];
                v[j] = v[j + 1];
                v[j + 1] = k;
            }
    if (opp[2] < MIN_SIDE)
        return 0;
    const star *p = &s[v[0]], *q = &s[v[1]], *r = &s[v[2]];
    double cross = (q->x - p->x) * (r->y - p->y) - (q->y - p->y) * (r->x - p->x);
    if (fabs(cross) < MIN_FLATNESS * opp[0] * opp[0])
        return 0;
    memcpy(t->v, v, sizeof v);
    t->longest = opp[0];
    t->r1 = opp[1] / opp[0];
    t->r2 = opp[2] / opp[0];
    t->orient = cross > 0 ? 1 : -1;
    return 1;
}

static int cmp_triple(const void *a, const void *b)
{
    const int *x = a, *y = b;
    for (int i = 0; i < 3; i++)
        if (x[i] != y[i])
            return (x[i] > y[i]) - (x[i] < y[i]);
    return 0;
}

static void sort3(int *t)
{
    if (t[0] > t[1]) { int k = t[0]; t[0] = t[1]; t[1] = k; }
    if (t[1] > t[2]) { int k = t[1]; t[1] = t[2]; t[2] = k; }
    if (t[0] > t[1]) { int k = t[0]; t[0] = t[1]; t[1] = k; }
}

/* The k nearest other stars of star i, nearest first. */
static int nearest(const star *s, int n, int i, int k, int *out)
{
    int m = 0;
    double d[NEIGHBOURS];
    for (int j = 0; j < n; j++) {
        if (j == i)
            continue;
        double dj = dist(&s[i], &s[j]);
        if (m < k || dj < d[m - 1]) {
            int at = m < k ? m++ : m - 1;
            while (at > 0 && d[at - 1] > dj) {
                d[at] = d[at - 1];
                out[at] = out[at - 1];
                at--;
            }
            d[at] = dj;
            out[at] = j;
        }
    }
    return m;
}

/* Triangles of each star with pairs of its nearest neighbours, each once. */
static clred_status build_triangles(const star *s, int n, triangle **out, size_t *nout)
{
    size_t cap = (size_t)n * NEIGHBOURS * (NEIGHBOURS - 1) / 2 + 1;
    int *keys = malloc(cap * 3 * sizeof *keys);
    *out = NULL;
    *nout = 0;
    if (!keys)
        return clred_fail(CLRED_ERR_MEMORY, "star matching: out of memory for %zu triangles", cap);
    size_t m = 0;
    for (int i = 0; i < n; i++) {
        int nb[NEIGHBOURS];
        int k = nearest(s, n, i, NEIGHBOURS, nb);
        for (int a = 0; a < k; a++)
            for (int b = a + 1; b < k; b++) {
                int *t = keys + 3 * m++;
                t[0] = i, t[1] = nb[a], t[2] = nb[b];
                sort3(t);
            }
    }
    qsort(keys, m, 3 * sizeof *keys, cmp_triple);
    triangle *tri = malloc((m ? m : 1) * sizeof *tri);
    if (!tri) {
        free(keys);
        return clred_fail(CLRED_ERR_MEMORY, "star matching: out of memory for %zu triangles", m);
    }
    size_t nt = 0;
    for (size_t i = 0; i < m; i++) {
        const int *t = keys + 3 * i;
        if (i > 0 && !cmp_triple(t, t - 3))
            continue;
        nt += (size_t)make_triangle(s, t[0], t[1], t[2], &tri[nt]);
    }
    free(keys);
    *out = tri;
    *nout = nt;
    return CLRED_OK;
}

/* ------------------------------------------------------------ fitting */

/* Index pairs: image star img[i] corresponds to reference star ref[i]. */
typedef struct {
    int *ref, *img;
    size_t n;
} pairs;

/* Least-squares similarity x' = a u - b v + c, y' = b u + a v + d with
 * (u, v) = (x, +-y), in closed form about the centroids (well conditioned for
 * coordinates of thousands of pixels). 0 when the points coincide. */
static int fit_similarity(const star *rs, const star *is, const pairs *p, int mirror, clred_transform *t)
{
    double sg = mirror ? -1.0 : 1.0, mx = 0, my = 0, mxr = 0, myr = 0;
    for (size_t k = 0; k < p->n; k++) {
        mx += is[p->img[k]].x, my += sg * is[p->img[k]].y;
        mxr += rs[p->ref[k]].x, myr += rs[p->ref[k]].y;
    }
    double inv = 1.0 / (double)p->n;
    mx *= inv, my *= inv, mxr *= inv, myr *= inv;
    double sa = 0, sb = 0, ss = 0;
    for (size_t k = 0; k < p->n; k++) {
        double u = is[p->img[k]].x - mx, v = sg * is[p->img[k]].y - my;
        double ur = rs[p->ref[k]].x - mxr, vr = rs[p->ref[k]].y - myr;
        sa += u * ur + v * vr;
        sb += u * vr - v * ur;
        ss += u * u + v * v;
    }
    if (!(ss > 0))
        return 0;
    double a = sa / ss, b = sb / ss;
    t->m[0] = a, t->m[1] = -b * sg, t->m[2] = mxr - a * mx + b * my;
    t->m[3] = b, t->m[4] = a * sg, t->m[5] = myr - b * mx - a * my;
    return 1;
}

/* Least-squares affine map about the centroids (the 2x2 normal equations of
 * the centred coordinates). 0 when the points are (nearly) collinear. */
static int fit_affine(const star *rs, const star *is, const pairs *p, clred_transform *t)
{
    double mx = 0, my = 0, mxr = 0, myr = 0;
    for (size_t k = 0; k < p->n; k++) {
        mx += is[p->img[k]].x, my += is[p->img[k]].y;
        mxr += rs[p->ref[k]].x, myr += rs[p->ref[k]].y;
    }
    double inv = 1.0 / (double)p->n;
    mx *= inv, my *= inv, mxr *= inv, myr *= inv;
    double suu = 0, suv = 0, svv = 0, sux = 0, svx = 0, suy = 0, svy = 0;
    for (size_t k = 0; k < p->n; k++) {
        double u = is[p->img[k]].x - mx, v = is[p->img[k]].y - my;
        double xr = rs[p->ref[k]].x - mxr, yr = rs[p->ref[k]].y - myr;
        suu += u * u, suv += u * v, svv += v * v;
        sux += u * xr, svx += v * xr, suy += u * yr, svy += v * yr;
    }
    double det = suu * svv - suv * suv;
    if (!(det > 1e-9 * (suu + svv) * (suu + svv)))
        return 0;
    double a = (svv * sux - suv * svx) / det, b = (suu * svx - suv * sux) / det;
    double d = (svv * suy - suv * svy) / det, e = (suu * svy - suv * suy) / det;
    t->m[0] = a, t->m[1] = b, t->m[2] = mxr - a * mx - b * my;
    t->m[3] = d, t->m[4] = e, t->m[5] = myr - d * mx - e * my;
    return 1;
}

static int fit_model(const star *rs, const star *is, const pairs *p, clred_match_model model, int mirror,
                     clred_transform *t)
{
    return model == CLRED_MATCH_AFFINE ? fit_affine(rs, is, p, t) : fit_similarity(rs, is, p, mirror, t);
}

static void apply(const clred_transform *t, const star *s, double *x, double *y)
{
    *x = t->m[0] * s->x + t->m[1] * s->y + t->m[2];
    *y = t->m[3] * s->x + t->m[4] * s->y + t->m[5];
}

/* Pairs every image star with the nearest reference star within radius after
 * the transform; a reference star claimed twice keeps the closer claimant.
 * Returns the sum of squared distances. */
static double pair_up(const star *rs, size_t nr, const star *is, size_t ni, const clred_transform *t, double radius,
                      int *best_img, double *best_d2, pairs *p)
{
    for (size_t r = 0; r < nr; r++)
        best_img[r] = -1, best_d2[r] = radius * radius;
    for (size_t i = 0; i < ni; i++) {
        double x, y;
        apply(t, &is[i], &x, &y);
        int rbest = -1;
        double dbest = radius * radius;
        for (size_t r = 0; r < nr; r++) {
            double dx = rs[r].x - x, dy = rs[r].y - y, d2 = dx * dx + dy * dy;
            if (d2 <= dbest)
                dbest = d2, rbest = (int)r;
        }
        if (rbest >= 0 && (best_img[rbest] < 0 || dbest < best_d2[rbest]))
            best_img[rbest] = (int)i, best_d2[rbest] = dbest;
    }
    double sum = 0.0;
    p->n = 0;
    for (size_t r = 0; r < nr; r++)
        if (best_img[r] >= 0) {
            p->ref[p->n] = (int)r;
            p->img[p->n] = best_img[r];
            p->n++;
            sum += best_d2[r];
        }
    return sum;
}

static double residual2(const star *rs, const star *is, int r, int i, const clred_transform *t)
{
    double x, y;
    apply(t, &is[i], &x, &y);
    return (rs[r].x - x) * (rs[r].x - x) + (rs[r].y - y) * (rs[r].y - y);
}

/* Fits p, drops pairs beyond clip_sigma * rms and refits until none is
 * dropped. 0 when too few pairs remain for the model. */
static int fit_clipped(const star *rs, const star *is, pairs *p, const clred_match_opts *o, int mirror,
                       size_t model_min, clred_transform *t, double *rms)
{
    for (int iter = 0; iter < MAX_REFINE; iter++) {
        if (p->n < model_min || !fit_model(rs, is, p, o->model, mirror, t))
            return 0;
        double sum = 0.0;
        for (size_t k = 0; k < p->n; k++)
            sum += residual2(rs, is, p->ref[k], p->img[k], t);
        *rms = sqrt(sum / (double)p->n);
        /* A floor keeps noise-free lists from clipping on rounding. */
        double limit = fmax(o->clip_sigma * *rms, 1e-6);
        size_t kept = 0;
        for (size_t k = 0; k < p->n; k++)
            if (residual2(rs, is, p->ref[k], p->img[k], t) <= limit * limit) {
                p->ref[kept] = p->ref[k];
                p->img[kept] = p->img[k];
                kept++;
            }
        if (kept == p->n)
            return 1;
        p->n = kept;
    }
    return p->n >= model_min;
}

/* ------------------------------------------------------------ matching */

typedef struct {
    star *rs, *is;
    size_t nr, ni;
    triangle *rt, *it;
    size_t nrt, nit;
    tri_match *tm;
    size_t ntm;
    long *votes; /* nr x ni */
    int *best_img;
    double *best_d2;
    pairs p, q;
} match_work;

static void work_free(match_work *w)
{
    free(w->rs), free(w->is), free(w->rt), free(w->it), free(w->tm), free(w->votes);
    free(w->best_img), free(w->best_d2);
    free(w->p.ref), free(w->p.img), free(w->q.ref), free(w->q.img);
}

/* Reference triangles by cell of a grid of side tol over the shape plane. */
static clred_status match_triangles(match_work *w, const clred_match_opts *o)
{
    double tol = o->tolerance;
    size_t side = (size_t)ceil(1.0 / tol) + 1, ncell = side * side;
    size_t *start = calloc(ncell + 1, sizeof *start), *order = malloc((w->nrt ? w->nrt : 1) * sizeof *order);
    size_t cap = 4 * (w->nit + 1);
    w->tm = malloc(cap * sizeof *w->tm);
    if (!start || !order || !w->tm) {
        free(start), free(order);
        return clred_fail(CLRED_ERR_MEMORY, "star matching: out of memory for a %zu-cell shape grid", ncell);
    }
#define CELL_OF(t) ((size_t)((t)->r2 / tol) * side + (size_t)((t)->r1 / tol))
    for (size_t i = 0; i < w->nrt; i++)
        start[CELL_OF(&w->rt[i]) + 1]++;
    for (size_t c = 0; c < ncell; c++)
        start[c + 1] += start[c];
    size_t *fill = malloc((ncell + 1) * sizeof *fill);
    if (!fill) {
        free(start), free(order);
        return clred_fail(CLRED_ERR_MEMORY, "star matching: out of memory for a %zu-cell shape grid", ncell);
    }
    memcpy(fill, start, (ncell + 1) * sizeof *fill);
    for (size_t i = 0; i < w->nrt; i++)
        order[fill[CELL_OF(&w->rt[i])]++] = i;
    free(fill);
    w->ntm = 0;
    clred_status st = CLRED_OK;
    for (size_t j = 0; j < w->nit && st == CLRED_OK; j++) {
        const triangle *ti = &w->it[j];
        long cx = (long)(ti->r1 / tol), cy = (long)(ti->r2 / tol);
        for (long yy = cy - 1; yy <= cy + 1; yy++)
            for (long xx = cx - 1; xx <= cx + 1; xx++) {
                if (xx < 0 || yy < 0 || xx >= (long)side || yy >= (long)side)
                    continue;
                size_t c = (size_t)yy * side + (size_t)xx;
                for (size_t k = start[c]; k < start[c + 1]; k++) {
                    const triangle *tr = &w->rt[order[k]];
                    int flipped = tr->orient != ti->orient;
                    if ((flipped && !o->allow_mirror) || hypot(tr->r1 - ti->r1, tr->r2 - ti->r2) > tol)
                        continue;
                    /* The scale is the ratio of the sides; the triangles' own sides
                     * vary within the shape tolerance, hence the margin. */
                    double scale = tr->longest / ti->longest;
                    if (scale < o->min_scale * (1 - tol) || scale > o->max_scale * (1 + tol))
                        continue;
                    if (w->ntm == cap) {
                        tri_match *grown = realloc(w->tm, 2 * cap * sizeof *grown);
                        if (!grown) {
                            st = clred_fail(CLRED_ERR_MEMORY, "star matching: out of memory for triangle matches");
                            break;
                        }
                        w->tm = grown;
                        cap *= 2;
                    }
                    tri_match *m = &w->tm[w->ntm++];
                    m->ref = (int)order[k], m->img = (int)j, m->flipped = flipped, m->votes = 0;
                }
            }
    }
#undef CELL_OF
    free(start), free(order);
    return st;
}

static int cmp_votes_desc(const void *a, const void *b)
{
    long va = ((const tri_match *)a)->votes, vb = ((const tri_match *)b)->votes;
    return (va < vb) - (va > vb);
}

/* Each triangle pair votes for its three star pairs; a triangle pair then
 * scores the votes of its star pairs, so pairs backed by many triangles come first. */
static void vote(match_work *w)
{
    memset(w->votes, 0, w->nr * w->ni * sizeof *w->votes);
    for (size_t k = 0; k < w->ntm; k++)
        for (int v = 0; v < 3; v++)
            w->votes[(size_t)w->rt[w->tm[k].ref].v[v] * w->ni + (size_t)w->it[w->tm[k].img].v[v]]++;
    for (size_t k = 0; k < w->ntm; k++)
        for (int v = 0; v < 3; v++)
            w->tm[k].votes += w->votes[(size_t)w->rt[w->tm[k].ref].v[v] * w->ni + (size_t)w->it[w->tm[k].img].v[v]];
    qsort(w->tm, w->ntm, sizeof *w->tm, cmp_votes_desc);
}

/* The transform of the best-voted triangle pairs that pairs up most stars
 * (ties: the smaller sum of squared distances). */
static int best_hypothesis(match_work *w, const clred_match_opts *o, clred_transform *best, int *best_mirror)
{
    size_t best_n = 0;
    double best_sum = HUGE_VAL;
    size_t tries = w->ntm < MAX_HYPOTHESES ? w->ntm : MAX_HYPOTHESES;
    for (size_t k = 0; k < tries; k++) {
        const triangle *tr = &w->rt[w->tm[k].ref], *ti = &w->it[w->tm[k].img];
        int ref3[3], img3[3];
        pairs tri = {ref3, img3, 3};
        memcpy(ref3, tr->v, sizeof ref3);
        memcpy(img3, ti->v, sizeof img3);
        clred_transform t;
        if (!fit_model(w->rs, w->is, &tri, o->model, w->tm[k].flipped, &t))
            continue;
        double sum = pair_up(w->rs, w->nr, w->is, w->ni, &t, o->radius, w->best_img, w->best_d2, &w->p);
        if (w->p.n > best_n || (w->p.n == best_n && sum < best_sum)) {
            best_n = w->p.n, best_sum = sum;
            *best = t;
            *best_mirror = w->tm[k].flipped;
        }
        /* No wrong transform pairs half the stars: the search can stop. */
        if (2 * best_n >= (w->nr < w->ni ? w->nr : w->ni))
            break;
    }
    return best_n > 0;
}

static int same_pairs(const pairs *a, const pairs *b)
{
    return a->n == b->n && !memcmp(a->ref, b->ref, a->n * sizeof *a->ref) &&
           !memcmp(a->img, b->img, a->n * sizeof *a->img);
}

/* Re-pairs the stars through the current fit and refits, until the pairs settle. */
static int refine(match_work *w, const clred_match_opts *o, int mirror, size_t model_min, clred_transform *t,
                  double *rms)
{
    pair_up(w->rs, w->nr, w->is, w->ni, t, o->radius, w->best_img, w->best_d2, &w->p);
    if (!fit_clipped(w->rs, w->is, &w->p, o, mirror, model_min, t, rms))
        return 0;
    for (int iter = 0; iter < MAX_REFINE; iter++) {
        clred_transform next = *t;
        double next_rms;
        pair_up(w->rs, w->nr, w->is, w->ni, &next, o->radius, w->best_img, w->best_d2, &w->q);
        if (!fit_clipped(w->rs, w->is, &w->q, o, mirror, model_min, &next, &next_rms))
            return 1;
        int settled = same_pairs(&w->p, &w->q);
        pairs swap = w->p;
        w->p = w->q;
        w->q = swap;
        *t = next;
        *rms = next_rms;
        if (settled)
            return 1;
    }
    return 1;
}

static clred_status check_opts(const clred_match_opts *o)
{
    if (o->max_stars < 3)
        return clred_fail(CLRED_ERR_USAGE, "star matching: max_stars %zu is below 3", o->max_stars);
    if (o->max_stars > 1000)
        return clred_fail(CLRED_ERR_USAGE, "star matching: max_stars %zu is above 1000", o->max_stars);
    if (o->model != CLRED_MATCH_SIMILARITY && o->model != CLRED_MATCH_AFFINE)
        return clred_fail(CLRED_ERR_USAGE, "star matching: unknown model %d", (int)o->model);
    if (!(o->tolerance > 0 && o->tolerance <= 0.2))
        return clred_fail(CLRED_ERR_USAGE, "star matching: tolerance %g is outside (0, 0.2]", o->tolerance);
    if (!(o->radius > 0 && isfinite(o->radius)))
        return clred_fail(CLRED_ERR_USAGE, "star matching: radius %g px must be > 0", o->radius);
    if (!(o->min_scale > 0 && o->max_scale >= o->min_scale && isfinite(o->max_scale)))
        return clred_fail(CLRED_ERR_USAGE, "star matching: scale range [%g, %g] is empty or not positive", o->min_scale,
                          o->max_scale);
    if (!(o->clip_sigma > 0))
        return clred_fail(CLRED_ERR_USAGE, "star matching: clip_sigma %g must be > 0", o->clip_sigma);
    return CLRED_OK;
}

static clred_status alloc_work(match_work *w)
{
    size_t n = w->nr > w->ni ? w->nr : w->ni;
    w->votes = malloc(w->nr * w->ni * sizeof *w->votes);
    w->best_img = malloc(w->nr * sizeof *w->best_img);
    w->best_d2 = malloc(w->nr * sizeof *w->best_d2);
    w->p.ref = malloc(n * sizeof(int)), w->p.img = malloc(n * sizeof(int));
    w->q.ref = malloc(n * sizeof(int)), w->q.img = malloc(n * sizeof(int));
    if (!w->votes || !w->best_img || !w->best_d2 || !w->p.ref || !w->p.img || !w->q.ref || !w->q.img)
        return clred_fail(CLRED_ERR_MEMORY, "star matching: out of memory for %zu x %zu stars", w->nr, w->ni);
    return CLRED_OK;
}

static void describe(const clred_transform *t, size_t nmatched, double rms, size_t nr, size_t ni, clred_match_result *out)
{
    const double *m = t->m;
    double det = m[0] * m[4] - m[1] * m[3];
    out->transform = *t;
    out->nmatched = nmatched;
    out->rms = rms;
    out->scale = sqrt(fabs(det));
    out->mirrored = det < 0;
    /* The rotation of the nearest similarity (proper, or after undoing the mirror of y). */
    out->rotation_deg = det < 0 ? atan2(m[3] + m[1], m[0] - m[4]) * 180.0 / M_PI
                                : atan2(m[3] - m[1], m[0] + m[4]) * 180.0 / M_PI;
    out->nref = nr;
    out->nimg = ni;
}

static clred_status match_lists(match_work *w, const clred_match_opts *o, clred_match_result *out)
{
    const char *model = o->model == CLRED_MATCH_AFFINE ? "an affine transform" : "a similarity";
    size_t model_min = o->model == CLRED_MATCH_AFFINE ? 4 : 3;
    if (w->nr < model_min || w->ni < model_min)
        return clred_fail(CLRED_ERR_INPUT, "star matching: %zu reference and %zu image stars; %s needs %zu in each",
                          w->nr, w->ni, model, model_min);
    size_t smaller = w->nr < w->ni ? w->nr : w->ni;
    /* A triangle's own three stars always agree with its transform, and the
     * best of a few hundred wrong transforms gathers a few more by chance
     * (measured: 8 of 50 stars in a 256 px field, 2 px radius, for a
     * mirrored frame): three confirmations at least and a quarter of the stars. */
    size_t need = o->min_matches ? o->min_matches
                                 : (size_t)fmax((double)model_min + 3.0, ceil(0.25 * (double)smaller));
    if (need < model_min)
        need = model_min;
    /* A field of few stars (a small cutout: five) cannot give three
     * confirmations beyond a triangle: then every star must agree, and at
     * least two beyond the triangle (three stars always fit their own). */
    if (!o->min_matches && need > smaller && smaller >= model_min + 2)
        need = smaller;
    CLRED_TRY(alloc_work(w));
    CLRED_TRY(build_triangles(w->rs, (int)w->nr, &w->rt, &w->nrt));
    CLRED_TRY(build_triangles(w->is, (int)w->ni, &w->it, &w->nit));
    CLRED_TRY(match_triangles(w, o));
    if (w->ntm == 0)
        return clred_fail(CLRED_ERR_INPUT,
                          "star matching: none of %zu image triangles has the shape of one of %zu reference "
                          "triangles (tolerance %g%s)",
                          w->nit, w->nrt, o->tolerance, o->allow_mirror ? "" : "; a mirrored frame must be allowed (--mirror)");
    vote(w);
    clred_transform t;
    int mirror = 0;
    double rms = 0.0;
    if (!best_hypothesis(w, o, &t, &mirror) || !refine(w, o, mirror, model_min, &t, &rms) || w->p.n < need)
        return clred_fail(CLRED_ERR_INPUT,
                          "star matching: at best %zu stars agree on %s within %g px (--radius; need %zu "
                          "(--min-matches) of %zu reference and %zu image stars): the frames may not overlap%s",
                          w->p.n, model, o->radius, need, w->nr, w->ni,
                          o->allow_mirror ? "" : ", or one is mirrored (allow it with --mirror)");
    double det = t.m[0] * t.m[4] - t.m[1] * t.m[3];
    if (det < 0 && !o->allow_mirror)
        return clred_fail(CLRED_ERR_INPUT, "star matching: the fitted transform mirrors the image (det %.4g); "
                                           "--mirror accepts it", det);
    describe(&t, w->p.n, rms, w->nr, w->ni, out);
    if (out->scale < o->min_scale || out->scale > o->max_scale)
        return clred_fail(CLRED_ERR_INPUT, "star matching: the fitted scale %.5f is outside [%g, %g]", out->scale,
                          o->min_scale, o->max_scale);
    return CLRED_OK;
}

clred_status clred_match_stars(const clred_source *ref, size_t nref, const clred_source *img, size_t nimg,
                               const clred_match_opts *opts, clred_match_result *out)
{
    clred_match_opts o = opts ? *opts : clred_match_defaults();
    memset(out, 0, sizeof *out);
    if ((!ref && nref) || (!img && nimg))
        return clred_fail(CLRED_ERR_USAGE, "star matching: a star list is NULL");
    CLRED_TRY(check_opts(&o));
    match_work w;
    memset(&w, 0, sizeof w);
    w.rs = brightest(ref, nref, o.max_stars, &w.nr);
    w.is = brightest(img, nimg, o.max_stars, &w.ni);
    clred_status st = w.rs && w.is ? match_lists(&w, &o, out)
                                   : clred_fail(CLRED_ERR_MEMORY, "star matching: out of memory for %zu + %zu stars",
                                                nref, nimg);
    work_free(&w);
    return st;
}

/* The detection options of clred_detect_stars. */
static clred_detect_opts star_opts(const clred_detect_opts *dopts)
{
    clred_detect_opts d = clred_detect_defaults();
    d.thresh = 5.0;
    if (dopts) {
        d = *dopts;
        d.segmentation = NULL;
    }
    return d;
}

/* Saturated cores and clipped or masked profiles have biased centroids. */
static void keep_clean_stars(clred_source *list, size_t *n)
{
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++)
        if (!(list[i].flags & (CLRED_SRC_SATURATED | CLRED_SRC_EDGE | CLRED_SRC_MASKED)))
            list[kept++] = list[i];
    *n = kept;
}

clred_status clred_detect_stars_dev(clred_ctx *ctx, const clred_dimage *img, const clred_detect_opts *dopts,
                                    clred_source **list, size_t *n)
{
    clred_detect_opts d = star_opts(dopts);
    CLRED_TRY(clred_detect_sources_dev(ctx, img, NULL, NULL, NAN, 0.0, &d, list, n));
    keep_clean_stars(*list, n);
    return CLRED_OK;
}

clred_status clred_detect_stars(clred_ctx *ctx, const clred_image *img, const clred_detect_opts *dopts,
                                clred_source **list, size_t *n)
{
    clred_detect_opts d = star_opts(dopts);
    CLRED_TRY(clred_detect_sources(ctx, img, NULL, NULL, NAN, 0.0, &d, list, n));
    keep_clean_stars(*list, n);
    return CLRED_OK;
}

clred_status clred_find_transform(clred_ctx *ctx, const clred_image *ref, const clred_image *img,
                                  const clred_detect_opts *dopts, const clred_match_opts *mopts,
                                  clred_match_result *out)
{
    clred_source *rl = NULL, *il = NULL;
    size_t nr = 0, ni = 0;
    memset(out, 0, sizeof *out);
    clred_status st = clred_detect_stars(ctx, ref, dopts, &rl, &nr);
    if (st == CLRED_OK)
        st = clred_detect_stars(ctx, img, dopts, &il, &ni);
    if (st == CLRED_OK)
        st = clred_match_stars(rl, nr, il, ni, mopts, out);
    free(rl);
    free(il);
    return st;
}

/* Star lists of frame i, from host or device images: one matching loop
 * serves both entry points. */
typedef clred_status (*stars_of_fn)(clred_ctx *ctx, const void *frames, size_t i, const clred_detect_opts *dopts,
                                    clred_source **list, size_t *n);

static clred_status stars_of_image(clred_ctx *ctx, const void *frames, size_t i, const clred_detect_opts *dopts,
                                   clred_source **list, size_t *n)
{
    return clred_detect_stars(ctx, &((const clred_image *)frames)[i], dopts, list, n);
}

static clred_status stars_of_dimage(clred_ctx *ctx, const void *frames, size_t i, const clred_detect_opts *dopts,
                                    clred_source **list, size_t *n)
{
    return clred_detect_stars_dev(ctx, ((const clred_dimage *const *)frames)[i], dopts, list, n);
}

/* The reference's stars once, then each frame's, matched against them. */
static clred_status find_transforms(clred_ctx *ctx, const void *frames, stars_of_fn stars_of, size_t n,
                                    long ref_index, const clred_detect_opts *dopts, const clred_match_opts *mopts,
                                    clred_match_result *results, size_t *failed)
{
    if (ref_index < 0 || (size_t)ref_index >= n)
        return clred_fail(CLRED_ERR_USAGE, "reference frame %ld does not exist (%zu frames; star matching needs a "
                                           "frame as reference, not the median)", ref_index, n);
    clred_match_opts defaults = clred_match_defaults();
    if (!mopts)
        mopts = &defaults;
    if (failed)
        *failed = ref_index;
    clred_source *ref_stars = NULL;
    size_t nref = 0;
    clred_status st = stars_of(ctx, frames, (size_t)ref_index, dopts, &ref_stars, &nref);
    for (size_t i = 0; i < n && st == CLRED_OK; i++) {
        memset(&results[i], 0, sizeof results[i]);
        if (i == (size_t)ref_index) {
            size_t used = nref < mopts->max_stars ? nref : mopts->max_stars;
            results[i].transform = clred_transform_identity();
            results[i].nmatched = results[i].nref = results[i].nimg = used;
            results[i].scale = 1.0;
            continue;
        }
        if (failed)
            *failed = i;
        clred_source *stars = NULL;
        size_t nstars = 0;
        st = stars_of(ctx, frames, i, dopts, &stars, &nstars);
        if (st == CLRED_OK)
            st = clred_match_stars(ref_stars, nref, stars, nstars, mopts, &results[i]);
        free(stars);
    }
    free(ref_stars);
    return st;
}

clred_status clred_find_transforms(clred_ctx *ctx, const clred_image *frames, size_t n, long ref_index,
                                   const clred_detect_opts *dopts, const clred_match_opts *mopts,
                                   clred_match_result *results, size_t *failed)
{
    return find_transforms(ctx, frames, stars_of_image, n, ref_index, dopts, mopts, results, failed);
}

clred_status clred_find_transforms_dev(clred_ctx *ctx, const clred_dimage *const *frames, size_t n, long ref_index,
                                       const clred_detect_opts *dopts, const clred_match_opts *mopts,
                                       clred_match_result *results, size_t *failed)
{
    return find_transforms(ctx, frames, stars_of_dimage, n, ref_index, dopts, mopts, results, failed);
}
