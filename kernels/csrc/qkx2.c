/* make_qkx2_quants (ggml-quants.c) for many groups at once, vectorised across groups.

   Why: the search is the K-quants' hot loop (Q2_K, Q4_K, Q5_K, their imatrix paths). Each
   group is scanned once per trial in C's sequential order; the same scalar steps run here on
   16 groups side by side in one vector register (lane = group), so every lane computes
   exactly what the scalar C code computes for its group: the same operations in the same
   order (+, -, *, / and compares are exact IEEE per lane; built with -ffp-contract=off and
   without fast-math), nearest_int by the same magic-number trick, MIN/MAX on ints.

   Layout: position-major, as kernels.blocks writes it: x[i*G + g] is position i of group g.
   Groups that do not fill the last 16 lanes are padded in a local copy and not stored.

   Out: scale[g], the_min[g] (= -min, as make_qkx2_quants' *the_min), L[i*G + g] (codes as
   float, the caller's type), for every g < G. */
#include <stdint.h>
#include <string.h>

#define LANES 16
#define MAX_N 32

typedef float vf __attribute__((vector_size(LANES * 4)));
typedef int32_t vi __attribute__((vector_size(LANES * 4)));

static inline vf bcast(float a) {
    vf r;
    for (int k = 0; k < LANES; ++k) r[k] = a;
    return r;
}

static inline vi bcasti(int32_t a) {
    vi r;
    for (int k = 0; k < LANES; ++k) r[k] = a;
    return r;
}

static inline vf sel(vi m, vf a, vf b) { /* m ? a : b, lane by lane (m is 0 or -1) */
    return (vf)(((vi)a & m) | ((vi)b & ~m));
}

static inline vi seli(vi m, vi a, vi b) { return (a & m) | (b & ~m); }

/* ggml's nearest_int: fval + 12582912.f, the low 23 bits of the result, minus 2**22 */
static inline vi nearest_int(vf v) {
    vf t = v + bcast(12582912.f);
    vi i;
    memcpy(&i, &t, sizeof i);
    return (i & bcasti(0x007fffff)) - bcasti(0x00400000);
}

/* MAX(0, MIN(nmax, nearest_int(v))) */
static inline vi code(vf v, vi top) {
    vi l = nearest_int(v);
    l = seli(l < top, l, top);
    return seli(l > bcasti(0), l, bcasti(0));
}

static inline vf fabsv(vf v) { return (vf)((vi)v & bcasti(0x7fffffff)); }

static void block(int n, int nmax, const vf *x, const vf *w, float rmin, float rdelta, int nstep, int use_mad,
                  vf *scale_out, vf *min_out, vf *L_out) {
    vf L[MAX_N], Laux[MAX_N];
    vf mn = x[0], mx = x[0];
    vf sum_w = w[0];
    vf sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        mn = sel(x[i] < mn, x[i], mn);
        mx = sel(x[i] > mx, x[i], mx);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    mn = sel(mn > bcast(0.f), bcast(0.f), mn);
    const vi degenerate = mx == mn;
    const vf min0 = mn;
    const vi top = bcasti(nmax);
    vf iscale = bcast((float)nmax) / (mx - mn);
    vf scale = bcast(1.f) / iscale;
    vf best_error = bcast(0.f);
    for (int i = 0; i < n; ++i) {
        L[i] = __builtin_convertvector(code(iscale * (x[i] - mn), top), vf);
        vf diff = scale * L[i] + mn - x[i];
        diff = use_mad ? fabsv(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    for (int is = 0; is <= nstep && nstep >= 1; ++is) {
        const float num = rmin + rdelta * is + nmax;
        iscale = bcast(num) / (mx - mn);
        vf sum_l = bcast(0.f), sum_l2 = bcast(0.f), sum_xl = bcast(0.f);
        for (int i = 0; i < n; ++i) {
            Laux[i] = __builtin_convertvector(code(iscale * (x[i] - mn), top), vf);
            vf wl = w[i] * Laux[i];
            sum_l += wl;
            sum_l2 += wl * Laux[i];
            sum_xl += wl * x[i];
        }
        vf D = sum_w * sum_l2 - sum_l * sum_l;
        vf this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        vf this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        vi pos = this_min > bcast(0.f);
        this_min = sel(pos, bcast(0.f), this_min);
        this_scale = sel(pos, sum_xl / sum_l2, this_scale);
        vf cur_error = bcast(0.f);
        for (int i = 0; i < n; ++i) {
            vf diff = this_scale * Laux[i] + this_min - x[i];
            diff = use_mad ? fabsv(diff) : diff * diff;
            cur_error += w[i] * diff;
        }
        vi better = (D > bcast(0.f)) & (cur_error < best_error);
        for (int i = 0; i < n; ++i) L[i] = sel(better, Laux[i], L[i]);
        best_error = sel(better, cur_error, best_error);
        scale = sel(better, this_scale, scale);
        mn = sel(better, this_min, mn);
    }
    /* max == min: L = 0, *the_min = -min, scale 0 */
    *scale_out = sel(degenerate, bcast(0.f), scale);
    *min_out = -sel(degenerate, min0, mn);
    for (int i = 0; i < n; ++i) L_out[i] = sel(degenerate, bcast(0.f), L[i]);
}

/* Returns 0, or -1 for an n this build does not take (the caller then uses its own search). */
int dsq_make_qkx2(int64_t n, int64_t G, const float *x, const float *w, int nmax, float rmin, float rdelta,
                  int nstep, int use_mad, float *scale, float *the_min, float *L) {
    if (n < 1 || n > MAX_N) return -1;
    for (int64_t g0 = 0; g0 < G; g0 += LANES) {
        const int lanes = G - g0 < LANES ? (int)(G - g0) : LANES;
        vf xv[MAX_N], wv[MAX_N], Lv[MAX_N], s, m;
        for (int i = 0; i < n; ++i) {
            if (lanes == LANES) {
                memcpy(&xv[i], x + i * G + g0, sizeof(vf));
                memcpy(&wv[i], w + i * G + g0, sizeof(vf));
            } else { /* padding lanes: zeros, computed and dropped */
                xv[i] = bcast(0.f);
                wv[i] = bcast(0.f);
                memcpy(&xv[i], x + i * G + g0, lanes * sizeof(float));
                memcpy(&wv[i], w + i * G + g0, lanes * sizeof(float));
            }
        }
        block((int)n, nmax, xv, wv, rmin, rdelta, nstep, use_mad, &s, &m, Lv);
        memcpy(scale + g0, &s, lanes * sizeof(float));
        memcpy(the_min + g0, &m, lanes * sizeof(float));
        for (int i = 0; i < n; ++i) memcpy(L + i * G + g0, &Lv[i], lanes * sizeof(float));
    }
    return 0;
}
