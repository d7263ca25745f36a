/* Products of a few activation rows with a weight matrix, for decoding on x86 CPUs with AVX-512.
 *
 * A decode step multiplies one row (or a few) by every weight matrix once, so it is bound by how
 * fast the weights stream from memory. PyTorch's CPU kernels convert each int8/int4/bf16 weight to
 * fp32 before multiplying, and on two cores that conversion, not memory, sets their pace
 * (benchmarks/cpu_roofs.py: 0.45-0.66 of the memory roof). These kernels multiply the stored
 * weights as they are, with the dot-product instructions made for them:
 *
 *   bf16  VDPBF16PS: bf16 pairs into fp32 sums (activations rounded to bf16, as F.linear does);
 *   int8  VPDPBUSD: the activations quantized per block of 32 to int8 (scale = absmax / 127, the
 *         scheme of llama.cpp's Q8_0), multiplied by the weight bytes offset to unsigned (w + 128;
 *         the offset times each block's activation sum is taken off once per call);
 *   int4  VPDPBUSD on the nibbles 0..15 against the same int8 activations; w = (q - 8) * s + z
 *         per group, so y = sum_g s_g * sum(q x) + (z_g - 8 s_g) * sum(x), with sum(x) exact.
 *   fp32  FMA.
 *
 * A prefill (more rows than these kernels suit) multiplies by the int4 weight dequantized to bf16
 * (`dequant_q4`), which unpacks the CPU layout 16 rows at a time: 5.7 ms per 1B-shaped matrix
 * (2048 x 5504), where torch's ops took 30 ms and 90 MB of intermediates.
 *
 * And the attention of a decode step (`attend`): each query row against its KV cache row's first
 * S slots, fp32 dot products, an exact-to-fp32 exp and fp32 sums; SDPA's CPU kernel spends most of
 * its time on such small problems outside the arithmetic.
 *
 * bf16, fp32 and int8 weights stay in the checkpoint's row-major layout ([out, in]), so nothing is
 * repacked or copied; each thread takes whole tiles of 4 output rows, summed across the vector at
 * the end. int4 weights are read in a layout of their own (`Int4Linear`'s CPU layout, made once
 * when the layer switches to the kernel, quant/linear.py): 16 output rows side by side, so each
 * vector lane sums one output row and a group's 16 scales apply as one vector. Every thread
 * reuses each tile from cache for every activation row. Everything here is plain C with intrinsics;
 * baichuan/kernels/__init__.py checks the CPU, registers the torch ops and checks every kernel
 * against the reference product before it is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx512bf16,fma")))
#define TILE 4
/* Hardware prefetchers stop at 4 KB pages, and a tile of 4 rows of 512 bf16 weights is one page:
 * each tile would start with misses. The row-major kernels ask for the next tile's lines as they
 * read this one's (`row_bytes` apart); tile_q4 the next 16-row tile's line. One sweep over every
 * product of a decode step, GB/s without -> with, in one process (benchmarks/cpu_prefetch.py, two
 * runs): 168M bf16 37.9 -> 54.0 and 35.6 -> 51.6, int8 +7% and +13%, int4 even and +20%; 1B bf16
 * 27.5 -> 32.9 and 26.5 -> 31.5, int8 25.5 -> 32.9 and 24.0 -> 29.9, int4 16.2 -> 26.3 and
 * 13.3 -> 24.7. fp32 reads without it: +6-8% at 168M but -3-5% at 1B. */
#ifndef BAICHUAN_NO_PREFETCH  /* defined by benchmarks/cpu_prefetch.py's build to compare */
#define PREFETCH_LINE(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#else
#define PREFETCH_LINE(p) ((void)(p))
#endif
/* the lines at p of the next tile's rows that exist (n0: this tile's first row, N: all rows) */
#define PREFETCH_NEXT_TILE(p, row_bytes, n0, N) \
    for (int64_t pr = 0; pr < TILE && (n0) + TILE + pr < (N); pr++) PREFETCH_LINE((const char *)(p) + pr * (row_bytes))

static int64_t threads = 1;

/* ------------------------------------------------------------------------------- helpers */

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even; NaN stays NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Activations of one row quantized per block of 32: q (int8), scale (absmax / 127), the exact
 * float sum and the sum of q per block. */
TARGET static void quantize_row(const uint16_t *x, int64_t K, int8_t *q, float *scale, float *sum, int32_t *qsum) {
    for (int64_t b = 0; b < K / 32; b++) {
        __m512i v = _mm512_loadu_si512((const void *)(x + 32 * b));   /* 16 pairs (x[2j], x[2j+1]) */
        __m512 ev = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        __m512 od = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(ev), _mm512_abs_ps(od)));
        float s = amax / 127.0f;
        __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        __m512i ie = _mm512_cvtps_epi32(_mm512_mul_ps(ev, inv)), io = _mm512_cvtps_epi32(_mm512_mul_ps(od, inv));
        __m128i qe = _mm512_cvtsepi32_epi8(ie), qo = _mm512_cvtsepi32_epi8(io);
        scale[b] = s;
        sum[b] = _mm512_reduce_add_ps(_mm512_add_ps(ev, od));
        qsum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(ie, io));
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm_unpacklo_epi8(qe, qo));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm_unpackhi_epi8(qe, qo));
    }
}

/* The quantized activations of M rows (and `extra` floats of the caller's), in one allocation. */
typedef struct {
    int8_t *q;
    float *scale, *sum, *extra;
    int32_t *qsum;
} Acts;

static int acts_alloc(Acts *a, int64_t M, int64_t K, int64_t extra) {
    int64_t blocks = M * (K / 32);
    float *f = malloc(sizeof(float) * (3 * blocks + extra) + M * K);  /* qsum: 4 bytes, as a float */
    if (!f) return -1;
    a->scale = f, a->sum = f + blocks, a->qsum = (int32_t *)(f + 2 * blocks), a->extra = f + 3 * blocks;
    a->q = (int8_t *)(a->extra + extra);
    return 0;
}

TARGET static void acts_quantize(Acts *a, const uint16_t *x, int64_t M, int64_t K) {
    int64_t blocks = K / 32;
    for (int64_t m = 0; m < M; m++)
        quantize_row(x + m * K, K, a->q + m * K, a->scale + m * blocks, a->sum + m * blocks, a->qsum + m * blocks);
}

/* ------------------------------------------------------------------------------- bf16, fp32 */

TARGET static void tile_bf16(const uint16_t *x, const uint16_t *w, uint16_t *y, int64_t M, int64_t N, int64_t K,
                             int64_t n0, int64_t rows) {
    for (int64_t m = 0; m < M; m++) {
        const uint16_t *xm = x + m * K;
        __m512 acc[TILE];
        for (int r = 0; r < TILE; r++) acc[r] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 32) {
            if (m == 0) PREFETCH_NEXT_TILE(w + (n0 + TILE) * K + k, K * 2, n0, N);
            __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xm + k));
            for (int r = 0; r < rows; r++)
                acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_loadu_si512((const void *)(w + (n0 + r) * K + k)), xv);
        }
        for (int r = 0; r < rows; r++) y[m * N + n0 + r] = f32_to_bf16(_mm512_reduce_add_ps(acc[r]));
    }
}

TARGET static void tile_f32(const float *x, const float *w, float *y, int64_t M, int64_t N, int64_t K, int64_t n0,
                            int64_t rows) {
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        __m512 acc[TILE];
        for (int r = 0; r < TILE; r++) acc[r] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 16) {
            __m512 xv = _mm512_loadu_ps(xm + k);
            for (int r = 0; r < rows; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(w + (n0 + r) * K + k), xv, acc[r]);
        }
        for (int r = 0; r < rows; r++) y[m * N + n0 + r] = _mm512_reduce_add_ps(acc[r]);
    }
}

/* ------------------------------------------------------------------------------- int8 */

/* The scale of each lane of a 64-input chunk: lanes 0-7 sum block 2c, lanes 8-15 block 2c + 1. */
TARGET static void lane_scales_q8(const float *scale, int64_t K, float *lanes) {
    for (int64_t c = 0; c < K / 64; c++)
        for (int l = 0; l < 16; l++) lanes[16 * c + l] = scale[2 * c + l / 8];
}

TARGET static void tile_q8(const int8_t *q, const float *lanes, const float *offset, const int8_t *w,
                           const float *wscale, uint16_t *y, int64_t M, int64_t N, int64_t K, int64_t n0,
                           int64_t rows) {
    const __m512i flip = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    for (int64_t m = 0; m < M; m++) {
        const int8_t *qm = q + m * K;
        const float *lm = lanes + m * (K / 4);
        __m512 acc[TILE];
        for (int r = 0; r < TILE; r++) acc[r] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k += 64) {
            if (m == 0) PREFETCH_NEXT_TILE(w + (n0 + TILE) * K + k, K, n0, N);
            __m512i xv = _mm512_loadu_si512((const void *)(qm + k));
            __m512 sv = _mm512_loadu_ps(lm + k / 4);
            for (int r = 0; r < rows; r++) {
                __m512i wv = _mm512_xor_si512(_mm512_loadu_si512((const void *)(w + (n0 + r) * K + k)), flip);
                __m512i d = _mm512_dpbusd_epi32(zero, wv, xv);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sv, acc[r]);
            }
        }
        for (int r = 0; r < rows; r++)
            y[m * N + n0 + r] = f32_to_bf16((_mm512_reduce_add_ps(acc[r]) - offset[m]) * wscale[n0 + r]);
    }
}

/* ------------------------------------------------------------------------------- int4 */

/* The CPU layout of int4 weights [N, K] (quant/linear.py `pack_rows16`): per tile of 16 output rows
 * and per 8 inputs, 64 bytes, 4 per row; byte j holds input 8c + j in its low nibble and 8c + 4 + j
 * in its high one. Scales and zeros: [N / 16, K / group, 16] bf16. Each lane sums one output row,
 * MB activation rows at a time, so each 64-byte load and its nibbles serve them all. */
#define MB 4

TARGET static inline __m512 bf16x16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

TARGET static void tile_q4(const Acts *a, const uint8_t *w, const uint16_t *s, const uint16_t *z, int64_t group,
                           uint16_t *y, int64_t M, int64_t N, int64_t K, int64_t t) {
    const __m512i low = _mm512_set1_epi8(0x0f);
    const int64_t groups = K / group, per_group = group / 32, blocks = K / 32;
    const uint8_t *wt = w + t * (K / 8) * 64;
    const uint16_t *st = s + t * groups * 16, *zt = z ? z + t * groups * 16 : NULL;
    for (int64_t m0 = 0; m0 < M; m0 += MB) {
        const int64_t mb = M - m0 < MB ? M - m0 : MB;
        __m512 acc[MB];
        for (int i = 0; i < MB; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t g = 0; g < groups; g++) {
            __m512 sv = bf16x16(st + 16 * g);
            __m512 ov = _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), sv, zt ? bf16x16(zt + 16 * g) : _mm512_setzero_ps());
            for (int64_t b = g * per_group; b < (g + 1) * per_group; b++) {
                __m512i dot[MB];
                for (int i = 0; i < MB; i++) dot[i] = _mm512_setzero_si512();
                for (int64_t c = 4 * b; c < 4 * b + 4; c++) {   /* 8 inputs each */
                    if (m0 == 0 && 16 * (t + 1) < N) PREFETCH_LINE(wt + (K / 8) * 64 + 64 * c);  /* the next tile's */
                    __m512i wv = _mm512_loadu_si512((const void *)(wt + 64 * c));
                    __m512i lo = _mm512_and_si512(wv, low), hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), low);
                    for (int i = 0; i < mb; i++) {
                        const int8_t *q = a->q + (m0 + i) * K + 8 * c;
                        int32_t q0, q1;
                        memcpy(&q0, q, 4), memcpy(&q1, q + 4, 4);
                        dot[i] = _mm512_dpbusd_epi32(dot[i], lo, _mm512_set1_epi32(q0));
                        dot[i] = _mm512_dpbusd_epi32(dot[i], hi, _mm512_set1_epi32(q1));
                    }
                }
                for (int i = 0; i < mb; i++) {
                    const int64_t mbk = (m0 + i) * blocks + b;
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i]), _mm512_mul_ps(sv, _mm512_set1_ps(a->scale[mbk])),
                                             acc[i]);
                    acc[i] = _mm512_fmadd_ps(ov, _mm512_set1_ps(a->sum[mbk]), acc[i]);
                }
            }
        }
        for (int i = 0; i < mb; i++)
            _mm256_storeu_si256((__m256i *)(y + (m0 + i) * N + 16 * t), (__m256i)_mm512_cvtneps_pbh(acc[i]));
    }
}

/* Tile t of the CPU layout dequantized into rows 16t..16t+15 of y [N, K] bf16: (q - 8) * s (+ z), in
 * fp32 and rounded once to bf16 (with zeros: the product rounded to fp32, then the sum; as
 * quant/linear.py's `_dequantize` computes it). 16 inputs x 16 rows at a time, turned row-major
 * through a small buffer. */
TARGET static void dequant_tile_q4(const uint8_t *w, const uint16_t *s, const uint16_t *z, int64_t group,
                                   uint16_t *y, int64_t K, int64_t t) {
    const int64_t groups = K / group;
    const uint8_t *wt = w + t * (K / 8) * 64;
    const uint16_t *st = s + t * groups * 16, *zt = z ? z + t * groups * 16 : NULL;
    const __m512i low = _mm512_set1_epi32(0x0f), across = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(16));
    float buf[16 * 16] __attribute__((aligned(64)));  /* [input][row] */
    for (int64_t c = 0; c < K / 8; c += 2) {          /* 16 inputs: one group (group % 32 == 0) */
        const int64_t g = 8 * c / group;
        __m512 sv = bf16x16(st + 16 * g), zv = zt ? bf16x16(zt + 16 * g) : _mm512_setzero_ps();
        for (int h = 0; h < 2; h++) {
            __m512i wv = _mm512_loadu_si512((const void *)(wt + 64 * (c + h)));  /* lane r: row r's 4 bytes */
            for (int j = 0; j < 8; j++) {  /* input 8(c + h) + j: byte j % 4, the high nibble from j = 4 */
                __m512i q = _mm512_and_si512(_mm512_srli_epi32(wv, 8 * (j % 4) + 4 * (j / 4)), low);
                __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(8.0f)), sv);
                _mm512_store_ps(buf + 16 * (8 * h + j), zt ? _mm512_add_ps(v, zv) : v);
            }
        }
        for (int r = 0; r < 16; r++) {
            __m512 row = _mm512_i32gather_ps(across, buf + r, 4);
            _mm256_storeu_si256((__m256i *)(y + (16 * t + r) * K + 8 * c), (__m256i)_mm512_cvtneps_pbh(row));
        }
    }
}

/* ------------------------------------------------------------------------------- attention */

/* exp(x) for 16 floats: 2^n * 2^f with n = round(x log2 e), |f| <= 1/2, 2^f by its Taylor series to
 * f^6 (relative error below 2e-7); 0 below -87, where fp32's exp would be denormal. */
TARGET static inline __m512 exp16(__m512 x) {
    __m512 t = _mm512_mul_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(1.4426950408889634f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), f = _mm512_sub_ps(t, n);
    static const float c[] = {1.5403530e-4f, 1.3333558e-3f, 9.6181291e-3f, 5.5504109e-2f, 2.4022651e-1f,
                              6.9314718e-1f, 1.0f};
    __m512 p = _mm512_set1_ps(c[0]);
    for (int i = 1; i < 7; i++) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c[i]));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ), _mm512_scalef_ps(p, n));
}

/* 16 floats of a bf16 (is_bf16) or fp32 row */
TARGET static inline __m512 load16(const void *p, int64_t i, int is_bf16) {
    return is_bf16 ? bf16x16((const uint16_t *)p + i) : _mm512_loadu_ps((const float *)p + i);
}

typedef struct {
    const char *q, *k, *v, *mask;
    char *y;
    int64_t B, H, Hkv, T, S, D, bf16, mask_kind;  /* mask_kind: 0 none, 1 bool, 2 fp32, 3 bf16 */
    int64_t qs[3], ks[3], vs[3], ms[3];          /* strides of dims 0-2, in elements (the last is 1) */
    float scale;
} Attn;

/* keys (and values) ahead that attend_row prefetches: a head's cache rows cross a 4 KB page every
 * 16-32 slots. benchmarks/cpu_prefetch.py, every layer's attention over a bf16 cache: +4-12% (168M
 * and 1B shapes, 192 and 1024 slots). */
#define ATTEND_AHEAD 16
/* One query row (b, h, t) against keys and values [0, S): softmax(q k^T scale + mask) v, in fp32.
 * `score` holds S floats. A masked key (False, or -inf) weighs exactly 0. */
TARGET static void attend_row(const Attn *a, int64_t b, int64_t h, int64_t t, float *score) {
    const int64_t e = a->bf16 ? 2 : 4, hk = h / (a->H / a->Hkv), D = a->D;
    const char *q = a->q + e * (b * a->qs[0] + h * a->qs[1] + t * a->qs[2]);
    const char *k = a->k + e * (b * a->ks[0] + hk * a->ks[1]), *v = a->v + e * (b * a->vs[0] + hk * a->vs[1]);
    const char *mrow = a->mask ? a->mask + (a->mask_kind == 1 ? 1 : a->mask_kind == 2 ? 4 : 2) *
                                           (b * a->ms[0] + h * a->ms[1] + t * a->ms[2]) : NULL;
    __m512 qv[16];
    for (int64_t d = 0; d < D; d += 16) qv[d / 16] = load16(q, d, (int)a->bf16);
    float top = -INFINITY;
    for (int64_t s = 0; s < a->S; s++) {
        const char *ks = k + e * s * a->ks[2];
        if (s + ATTEND_AHEAD < a->S) PREFETCH_LINE(ks + e * ATTEND_AHEAD * a->ks[2]);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t d = 0; d < D; d += 16) acc = _mm512_fmadd_ps(load16(ks, d, (int)a->bf16), qv[d / 16], acc);
        float x = _mm512_reduce_add_ps(acc) * a->scale;
        if (a->mask_kind == 1 && !mrow[s]) x = -INFINITY;
        else if (a->mask_kind == 2) x += ((const float *)mrow)[s];
        else if (a->mask_kind == 3) x += bf16_to_f32(((const uint16_t *)mrow)[s]);
        score[s] = x;
        top = x > top ? x : top;
    }
    __m512 sum = _mm512_setzero_ps(), mx = _mm512_set1_ps(top == -INFINITY ? 0.0f : top);
    int64_t s = 0;
    for (; s + 16 <= a->S; s += 16) {
        __m512 p = exp16(_mm512_sub_ps(_mm512_loadu_ps(score + s), mx));
        _mm512_storeu_ps(score + s, p);
        sum = _mm512_add_ps(sum, p);
    }
    if (s < a->S) {
        __mmask16 tail = (__mmask16)((1u << (a->S - s)) - 1);
        __m512 p = _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, score + s), mx)));
        _mm512_mask_storeu_ps(score + s, tail, p);
        sum = _mm512_add_ps(sum, p);
    }
    __m512 out[16];
    for (int64_t d = 0; d < D; d += 16) out[d / 16] = _mm512_setzero_ps();
    for (s = 0; s < a->S; s++) {
        const char *vs = v + e * s * a->vs[2];
        if (s + ATTEND_AHEAD < a->S) PREFETCH_LINE(vs + e * ATTEND_AHEAD * a->vs[2]);
        if (score[s] == 0.0f) continue;
        __m512 p = _mm512_set1_ps(score[s]);
        for (int64_t d = 0; d < D; d += 16) out[d / 16] = _mm512_fmadd_ps(p, load16(vs, d, (int)a->bf16), out[d / 16]);
    }
    float total = _mm512_reduce_add_ps(sum);
    __m512 inv = _mm512_set1_ps(total > 0 ? 1.0f / total : 0.0f);
    char *y = a->y + e * (((b * a->H + h) * a->T + t) * D);
    for (int64_t d = 0; d < D; d += 16) {
        __m512 o = _mm512_mul_ps(out[d / 16], inv);
        if (a->bf16) _mm256_storeu_si256((__m256i *)((uint16_t *)y + d), (__m256i)_mm512_cvtneps_pbh(o));
        else _mm512_storeu_ps((float *)y + d, o);
    }
}

/* ------------------------------------------------------------------------------- Python */

static int args_i64(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, int64_t *out) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %zd integer arguments, got %zd", want, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = PyLong_AsLongLong(args[i]);
        if (out[i] == -1 && PyErr_Occurred()) return -1;
    }
    return 0;
}

#define PTR(i) ((void *)(intptr_t)a[i])
#define TILES(N) (((N) + TILE - 1) / TILE)
#define ROWS(t, N) ((N) - (t) * TILE < TILE ? (N) - (t) * TILE : TILE)

/* bf16(x, w, y, M, N, K): y[M, N] = x[M, K] @ w[N, K].T, bf16; f32(x, w, y, M, N, K) the same in fp32 */
#define PLAIN_PRODUCT(name, tile)                                                                         \
    static PyObject *name(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {                      \
        int64_t a[6];                                                                                     \
        if (args_i64(args, nargs, 6, a)) return NULL;                                                     \
        int64_t M = a[3], N = a[4], K = a[5];                                                             \
        Py_BEGIN_ALLOW_THREADS                                                                            \
        _Pragma("omp parallel for schedule(static) num_threads(threads)")                                 \
        for (int64_t t = 0; t < TILES(N); t++) tile(PTR(0), PTR(1), PTR(2), M, N, K, t * TILE, ROWS(t, N)); \
        Py_END_ALLOW_THREADS                                                                              \
        Py_RETURN_NONE;                                                                                   \
    }
PLAIN_PRODUCT(py_bf16, tile_bf16)
PLAIN_PRODUCT(py_f32, tile_f32)

/* q8(x bf16, w int8 [N, K], wscale fp32 [N], y bf16, M, N, K) */
static PyObject *py_q8(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t a[7];
    if (args_i64(args, nargs, 7, a)) return NULL;
    int64_t M = a[4], N = a[5], K = a[6], blocks = K / 32;
    Acts x;
    if (acts_alloc(&x, M, K, M * (K / 4) + M)) return PyErr_NoMemory();
    float *lanes = x.extra, *offset = x.extra + M * (K / 4);
    Py_BEGIN_ALLOW_THREADS
    acts_quantize(&x, PTR(0), M, K);
    for (int64_t m = 0; m < M; m++) {
        lane_scales_q8(x.scale + m * blocks, K, lanes + m * (K / 4));
        offset[m] = 0.0f;  /* the weights are read as w + 128: take 128 * sum(q) per block back off */
        for (int64_t b = m * blocks; b < (m + 1) * blocks; b++) offset[m] += 128.0f * x.scale[b] * (float)x.qsum[b];
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t t = 0; t < TILES(N); t++)
        tile_q8(x.q, lanes, offset, PTR(1), PTR(2), PTR(3), M, N, K, t * TILE, ROWS(t, N));
    Py_END_ALLOW_THREADS
    free(x.scale);
    Py_RETURN_NONE;
}

/* q4(x bf16, w uint8 (the CPU layout above), scales bf16, zeros bf16 or 0, group, y bf16, M, N, K) */
static PyObject *py_q4(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t a[9];
    if (args_i64(args, nargs, 9, a)) return NULL;
    int64_t M = a[6], N = a[7], K = a[8];
    Acts x;
    if (acts_alloc(&x, M, K, 0)) return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    acts_quantize(&x, PTR(0), M, K);
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t t = 0; t < N / 16; t++) tile_q4(&x, PTR(1), PTR(2), PTR(3), a[4], PTR(5), M, N, K, t);
    Py_END_ALLOW_THREADS
    free(x.scale);
    Py_RETURN_NONE;
}

/* dequant_q4(w uint8 (the CPU layout), scales bf16, zeros bf16 or 0, group, y bf16 [N, K], N, K) */
static PyObject *py_dequant_q4(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t a[7];
    if (args_i64(args, nargs, 7, a)) return NULL;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t t = 0; t < a[5] / 16; t++) dequant_tile_q4(PTR(0), PTR(1), PTR(2), a[3], PTR(4), a[6], t);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* repack_q4(src uint8 [N, K/2] (the checkpoint's: inputs 2i, 2i + 1 in byte i's low and high nibble),
 * dst uint8 [N, K/2] (the CPU layout), N, K): per tile of 16 rows and 8 inputs, row r's 4 bytes b0..b3
 * become its bytes j = 0..3 of the tile's 64, input j low and input 4 + j high. Plain C: loading a
 * 7B model repacks 3.3 GB, which torch's unpack / stack / permute took 7.8 s for. */
static PyObject *py_repack_q4(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t a[4];
    if (args_i64(args, nargs, 4, a)) return NULL;
    const uint8_t *src = PTR(0);
    uint8_t *dst = PTR(1);
    const int64_t N = a[2], half = a[3] / 2, chunks = a[3] / 8;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t t = 0; t < N / 16; t++)
        for (int64_t r = 0; r < 16; r++) {
            const uint8_t *row = src + (16 * t + r) * half;
            uint8_t *out = dst + 16 * t * half + 4 * r;
            for (int64_t c = 0; c < chunks; c++, row += 4, out += 64) {
                out[0] = (uint8_t)((row[0] & 15) | (row[2] << 4));
                out[1] = (uint8_t)((row[0] >> 4) | (row[2] & 0xf0));
                out[2] = (uint8_t)((row[1] & 15) | (row[3] << 4));
                out[3] = (uint8_t)((row[1] >> 4) | (row[3] & 0xf0));
            }
        }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* attend(q, k, v, mask or 0, y, B, H, Hkv, T, S, D, bf16, mask_kind, q strides x3, k x3, v x3, mask x3,
 *        scale): y [B, H, T, D] contiguous = softmax(q k^T scale + mask) v per head, k/v head h / (H / Hkv) */
static PyObject *py_attend(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int64_t a[25];
    if (nargs != 26) return PyErr_Format(PyExc_TypeError, "expected 26 arguments, got %zd", nargs);
    if (args_i64(args, 25, 25, a)) return NULL;
    double scale = PyFloat_AsDouble(args[25]);
    if (scale == -1.0 && PyErr_Occurred()) return NULL;
    Attn at = {PTR(0), PTR(1), PTR(2), PTR(3), PTR(4), a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12],
               {a[13], a[14], a[15]}, {a[16], a[17], a[18]}, {a[19], a[20], a[21]}, {a[22], a[23], a[24]},
               (float)scale};
    if (at.D % 16 || at.D > 256 || at.H % at.Hkv) return PyErr_Format(PyExc_ValueError, "unsupported head shape");
    float *score = malloc(sizeof(float) * threads * (at.S + 16));
    if (!score) return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < at.B * at.H * at.T; i++)
        attend_row(&at, i / (at.H * at.T), i / at.T % at.H, i % at.T, score + omp_get_thread_num() * (at.S + 16));
    Py_END_ALLOW_THREADS
    free(score);
    Py_RETURN_NONE;
}

/* supported(): whether this CPU has every instruction the kernels use */
static PyObject *py_supported(PyObject *self, PyObject *unused) {
    __builtin_cpu_init();
    int ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16") &&
             __builtin_cpu_supports("fma");
    return PyBool_FromLong(ok);
}

/* set_threads(n): the threads each call uses (torch's intra-op count, set by the caller) */
static PyObject *py_set_threads(PyObject *self, PyObject *arg) {
    int64_t n = PyLong_AsLongLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    threads = n < 1 ? 1 : n;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bf16", (PyCFunction)(void (*)(void))py_bf16, METH_FASTCALL, "y = x @ w.T, bf16 weights and activations"},
    {"f32", (PyCFunction)(void (*)(void))py_f32, METH_FASTCALL, "y = x @ w.T, fp32"},
    {"q8", (PyCFunction)(void (*)(void))py_q8, METH_FASTCALL, "y = x @ (w * scale).T, int8 weights"},
    {"q4", (PyCFunction)(void (*)(void))py_q4, METH_FASTCALL, "y = x @ dequantized(w).T, int4 weights"},
    {"dequant_q4", (PyCFunction)(void (*)(void))py_dequant_q4, METH_FASTCALL, "w dequantized to bf16, int4"},
    {"repack_q4", (PyCFunction)(void (*)(void))py_repack_q4, METH_FASTCALL, "int4 checkpoint bytes in the CPU layout"},
    {"attend", (PyCFunction)(void (*)(void))py_attend, METH_FASTCALL, "softmax(q k^T scale + mask) v, one query row each"},
    {"supported", py_supported, METH_NOARGS, "whether this CPU runs the kernels"},
    {"set_threads", py_set_threads, METH_O, "threads per call"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gemv", NULL, -1, methods};

PyMODINIT_FUNC PyInit__gemv(void) { return PyModule_Create(&module); }
