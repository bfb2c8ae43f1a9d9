/* The per-pixel chain of isp.ISP in one pass over the image: exposure (clip(x k)),
 * highlights/shadows, saturation/vibrance (clipped), sRGB encoding, brightness, contrast; the
 * forward pass and its hand-written backward (which recomputes the chain from its input and
 * accumulates the per-image parameter gradients in double precision).
 *
 * Loaded by isp/stages/native.py (compiled on first use, cached); isp/stages/fused.py holds the
 * torch version it is tested against. The operations follow the torch code's order and the file
 * is compiled with -ffp-contract=off (no fused multiply-add), so the two agree to the last bits
 * but for the vector exp/log (glibc's libmvec, declared below; no -ffast-math). Stages at their
 * neutral parameters (gain 1, all others 0) are exact identities, so every stage always runs:
 * the loop has no branches and vectorises.
 *
 * Layout: image b, channel c, pixel i at x[b * sb + c * sc + i], i < n (the rows of one tile
 * are contiguous). prm[b * 7 + j], j = gain, highlights, shadows, fa, fb, brightness, contrast
 * (saturation factor f = fa - fb sat). grads[b * 7 + j]: gradients of the same (added to).
 * cst: luma weights w0 w1 w2, saturation eps, sRGB threshold, 1 / gamma, log(1 + offset),
 * offset, slope.
 */
#include <stdint.h>

__attribute__((__simd__("notinbranch"))) extern double exp(double);
__attribute__((__simd__("notinbranch"))) extern double log(double);
__attribute__((__simd__("notinbranch"))) extern float expf(float);
__attribute__((__simd__("notinbranch"))) extern float logf(float);

#define CLAMP01(v) ((v) < 0 ? 0 : ((v) > 1 ? 1 : (v)))
#define MAX3(a, b, c) ((a) > (b) ? ((a) > (c) ? (a) : (c)) : ((b) > (c) ? (b) : (c)))
#define MIN3(a, b, c) ((a) < (b) ? ((a) < (c) ? (a) : (c)) : ((b) < (c) ? (b) : (c)))

#define DEFINE_CHAIN(T, SUF, EXP, LOG)                                                            \
static inline T encode_##SUF(T u, T thr, T inv_gamma, T ls, T off, T slope) {                     \
    T hi = EXP(ls + LOG(u > thr ? u : thr) * inv_gamma) - off;                                    \
    T lo = u * slope;                                                                             \
    return hi < lo ? hi : lo;                                                                     \
}                                                                                                 \
                                                                                                  \
void tone_chain_forward_##SUF(const T *restrict x, T *restrict out, int64_t nb, int64_t sb,       \
                              int64_t sc, int64_t osb, int64_t osc, int64_t n,                    \
                              const double *prm, const double *cst) {                             \
    const T w0 = (T)cst[0], w1 = (T)cst[1], w2 = (T)cst[2], eps = (T)cst[3];                      \
    const T thr = (T)cst[4], ig = (T)cst[5], ls = (T)cst[6], off = (T)cst[7], sl = (T)cst[8];     \
    for (int64_t b = 0; b < nb; ++b) {                                                            \
        const double *p = prm + b * 7;                                                            \
        const T k = (T)p[0], h = (T)p[1], s = (T)p[2], fa = (T)p[3], fb = (T)p[4];                \
        const T a = (T)p[5], c = (T)p[6];                                                         \
        const T t1 = s - h, t2 = h - (T)2.0 * s, t3 = (T)1.0 + s, mfb = -fb;                       \
        const T ma = -a, a1 = (T)1.0 + a, m2c = (T)-2.0 * c, c3 = (T)3.0 * c, c1 = (T)1.0 - c;     \
        const T *x0 = x + b * sb, *x1 = x0 + sc, *x2 = x1 + sc;                                   \
        T *o0 = out + b * osb, *o1 = o0 + osc, *o2 = o1 + osc;                                    \
        _Pragma("omp simd")                                                                       \
        for (int64_t i = 0; i < n; ++i) {                                                         \
            T r = x0[i] * k, g = x1[i] * k, bl = x2[i] * k;                                       \
            r = CLAMP01(r); g = CLAMP01(g); bl = CLAMP01(bl);                                     \
            r = ((r * t1 + t2) * r + t3) * r;                                                     \
            g = ((g * t1 + t2) * g + t3) * g;                                                     \
            bl = ((bl * t1 + t2) * bl + t3) * bl;                                                 \
            T y = r * w0 + g * w1 + bl * w2;                                                      \
            T mx = MAX3(r, g, bl), mn = MIN3(r, g, bl);                                           \
            T f = (mx - mn) / (mx + eps) * mfb + fa;                                              \
            T base = y - f * y;                                                                   \
            r = r * f + base; g = g * f + base; bl = bl * f + base;                               \
            r = CLAMP01(r); g = CLAMP01(g); bl = CLAMP01(bl);                                     \
            r = encode_##SUF(r, thr, ig, ls, off, sl);                                            \
            g = encode_##SUF(g, thr, ig, ls, off, sl);                                            \
            bl = encode_##SUF(bl, thr, ig, ls, off, sl);                                          \
            r = (r * ma + a1) * r; g = (g * ma + a1) * g; bl = (bl * ma + a1) * bl;               \
            r = ((r * m2c + c3) * r + c1) * r;                                                    \
            g = ((g * m2c + c3) * g + c1) * g;                                                    \
            bl = ((bl * m2c + c3) * bl + c1) * bl;                                                \
            o0[i] = r; o1[i] = g; o2[i] = bl;                                                     \
        }                                                                                         \
    }                                                                                             \
}                                                                                                 \
                                                                                                  \
/* Gradient through encoding + brightness + contrast of one channel value u (clipped, >= 0);    \
 * adds the brightness/contrast parameter terms to *sa, *scc. */                                  \
static inline T encode_back_##SUF(T u, T q, T thr, T ig, T ls, T off, T sl, T ma, T a1, T m2a,   \
                                  T c1, T c6, T *sa, T *scc) {                                    \
    T uc = u > thr ? u : thr;                                                                     \
    T hi = EXP(ls + LOG(uc) * ig) - off;                                                          \
    T lo = u * sl;                                                                                \
    T e = hi < lo ? hi : lo;                                                                      \
    T slope = uc == u ? (e + off) / (uc * (T)2.4) : sl;                                           \
    T bb = (e * ma + a1) * e;                                                                     \
    T bump = bb - bb * bb;                                                                        \
    *scc += q * ((bb * (T)2.0 - (T)1.0) * bump);                                                  \
    q = q * (bump * c6 + c1);                                                                     \
    *sa += q * (e - e * e);                                                                       \
    q = q * (e * m2a + a1);                                                                       \
    return q * slope;                                                                             \
}                                                                                                 \
                                                                                                  \
void tone_chain_backward_##SUF(const T *restrict x, const T *restrict g, T *restrict gx,          \
                               int64_t nb, int64_t sb, int64_t sc, int64_t gsb, int64_t gsc,      \
                               int64_t xsb, int64_t xsc, int64_t n, const double *prm,            \
                               const double *cst, double *grads) {                                \
    const T w0 = (T)cst[0], w1 = (T)cst[1], w2 = (T)cst[2], eps = (T)cst[3];                      \
    const T thr = (T)cst[4], ig = (T)cst[5], ls = (T)cst[6], off = (T)cst[7], sl = (T)cst[8];     \
    for (int64_t b = 0; b < nb; ++b) {                                                            \
        const double *p = prm + b * 7;                                                            \
        const T k = (T)p[0], h = (T)p[1], s = (T)p[2], fa = (T)p[3], fb = (T)p[4];                \
        const T a = (T)p[5], c = (T)p[6];                                                         \
        const T t1 = s - h, t2 = h - (T)2.0 * s, t3 = (T)1.0 + s, mfb = -fb;                       \
        const T d1 = (T)3.0 * (s - h), d2 = (T)2.0 * h - (T)4.0 * s;                              \
        const T ma = -a, a1 = (T)1.0 + a, c1 = (T)1.0 - c, c6 = (T)6.0 * c, m2a = (T)-2.0 * a;   \
        const T *x0 = x + b * sb, *x1 = x0 + sc, *x2 = x1 + sc;                                   \
        const T *g0 = g + b * gsb, *g1 = g0 + gsc, *g2 = g1 + gsc;                                \
        T *r0 = gx + b * xsb, *r1 = r0 + xsc, *r2 = r1 + xsc;                                     \
        /* per-row partial sums in T, added to double accumulators per block */                  \
        double acc[7] = {0, 0, 0, 0, 0, 0, 0};                                                    \
        const int64_t blk = 1024;                                                                 \
        for (int64_t i0 = 0; i0 < n; i0 += blk) {                                                 \
            const int64_t i1 = i0 + blk < n ? i0 + blk : n;                                       \
            T sk = 0, sq = 0, sh = 0, sfa = 0, sfb = 0, sa = 0, scc = 0;                          \
            _Pragma("omp simd reduction(+ : sk, sq, sh, sfa, sfb, sa, scc)")                      \
            for (int64_t i = i0; i < i1; ++i) {                                                   \
                T xr = x0[i], xg = x1[i], xb = x2[i];                                             \
                T kr = xr * k, kg = xg * k, kb = xb * k;                                          \
                T ur = CLAMP01(kr), ug = CLAMP01(kg), ub = CLAMP01(kb);                           \
                T ir = ur == kr ? (T)1 : (T)0, ig_ = ug == kg ? (T)1 : (T)0;                      \
                T ib = ub == kb ? (T)1 : (T)0;                                                    \
                T vr = ((ur * t1 + t2) * ur + t3) * ur;                                           \
                T vg = ((ug * t1 + t2) * ug + t3) * ug;                                           \
                T vb = ((ub * t1 + t2) * ub + t3) * ub;                                           \
                T y = vr * w0 + vg * w1 + vb * w2;                                                \
                T mx = MAX3(vr, vg, vb), mn = MIN3(vr, vg, vb);                                   \
                T sat = (mx - mn) / (mx + eps);                                                   \
                T f = sat * mfb + fa;                                                             \
                T base = y - f * y;                                                               \
                T pr = vr * f + base, pg = vg * f + base, pb = vb * f + base;                     \
                T cr = CLAMP01(pr), cg = CLAMP01(pg), cb = CLAMP01(pb);                           \
                T gr = encode_back_##SUF(cr, g0[i], thr, ig, ls, off, sl, ma, a1, m2a, c1, c6, &sa, &scc); \
                T gg = encode_back_##SUF(cg, g1[i], thr, ig, ls, off, sl, ma, a1, m2a, c1, c6, &sa, &scc); \
                T gb = encode_back_##SUF(cb, g2[i], thr, ig, ls, off, sl, ma, a1, m2a, c1, c6, &sa, &scc); \
                gr = cr == pr ? gr : (T)0; gg = cg == pg ? gg : (T)0; gb = cb == pb ? gb : (T)0;  \
                T gsum = gr + gg + gb;                                                            \
                T df = (gr * vr + gg * vg + gb * vb) - y * gsum;                                  \
                sfa += df;                                                                        \
                sfb -= df * sat;                                                                  \
                T tt = gsum - f * gsum;                                                           \
                T inv = (T)1.0 / (mx + eps);                                                      \
                T gmn = df * mfb * inv;                                                           \
                T gmx = (mn + eps) * inv * gmn;                                                   \
                T er = vr == mx, eg = vg == mx, eb = vb == mx;                                    \
                T nr = vr == mn, ng = vg == mn, nb_ = vb == mn;                                   \
                gmx = gmx / (er + eg + eb); gmn = gmn / (nr + ng + nb_);                          \
                T qr = gr * f + tt * w0 + er * gmx - nr * gmn;                                    \
                T qg = gg * f + tt * w1 + eg * gmx - ng * gmn;                                    \
                T qb = gb * f + tt * w2 + eb * gmx - nb_ * gmn;                                   \
                T pqr = (ur - ur * ur) * qr, pqg = (ug - ug * ug) * qg, pqb = (ub - ub * ub) * qb; \
                sq += pqr + pqg + pqb;                                                            \
                sh += pqr * ur + pqg * ug + pqb * ub;                                             \
                qr = qr * ((ur * d1 + d2) * ur + t3) * ir;                                        \
                qg = qg * ((ug * d1 + d2) * ug + t3) * ig_;                                       \
                qb = qb * ((ub * d1 + d2) * ub + t3) * ib;                                        \
                sk += qr * xr + qg * xg + qb * xb;                                                \
                r0[i] = qr * k; r1[i] = qg * k; r2[i] = qb * k;                                   \
            }                                                                                     \
            acc[0] += sk; acc[1] += sh; acc[2] += sq; acc[3] += sfa; acc[4] += sfb;               \
            acc[5] += sa; acc[6] += scc;                                                          \
        }                                                                                         \
        double *gp = grads + b * 7;                                                               \
        gp[0] += acc[0]; gp[1] += acc[1]; gp[2] += acc[2] - acc[1]; gp[3] += acc[3];              \
        gp[4] += acc[4]; gp[5] += acc[5]; gp[6] += acc[6];                                        \
    }                                                                                             \
}

DEFINE_CHAIN(float, f32, expf, logf)
DEFINE_CHAIN(double, f64, exp, log)
