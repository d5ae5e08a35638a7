/* One decode step of a Llama-style GPT in one C call: token → logits, for generation's inner loop.

   glassgpt/decode.py's DecodeStep does this in torch, about 40 small operations a layer; on a CPU those
   cost more than the weight products themselves (a 17 ms step of SmolLM2-135M in int4 holds about 6 ms
   of products). Here the same diagram runs without leaving C, for one token (batch 1) at position pos:

     x = W_E[token]                                             (d_model,)
     for each layer:
         h = RMSNorm(x)·w_ln1                                   quantised once for W_Q, W_K and W_V
         q, k, v = h·W_Q, h·W_K, h·W_V                          (H·d_head,), (H_kv·d_head,) twice
         q, k = rotate(q, pos), rotate(k, pos)                  RoPE, model.RoPE's rotate-half
         K[pos], V[pos] = k, v                                  the static cache, in place
         z_h = softmax(q_h·K[0..pos]ᵀ/√d_head)·V[0..pos]        per query head h; key/value head h/(H/H_kv)
         x = x + z·W_O
         h = RMSNorm(x)·w_ln2                                   quantised once for W_gate and W_up
         x = x + (silu(h·W_gate) ⊙ h·W_up)·W_down               SwiGLU
     logits = RMSNorm(x)·w_final · W_U                          (d_vocab,) float32

   Every matrix is a BlockWeight (glassgpt/quant.py): its product is blockdot.c's, included below, with
   the activation row rounded to int8 passes by quantize_row and multiplied a tile of 16 outputs at a time
   by tile_avx512 or tile_avx2. Norms, RoPE, softmax and the sums of attention stay float32. The keys and
   values are float32 (the torch step's numbers), float16 (half the bytes attention reads; F16C) or int8
   (a quarter: each row of d_head keys or values, one position of one head, is int8 codes and one float32
   scale, row = codes·scale, rounded by store_kv as glassgpt/decode.py's quantize_rows rounds). With int8,
   attention works on the codes and the scales come in after the sums: a key's scale multiplies its score,
   a value's scale its weight in the pattern (scale_by_row), so the inner loops only widen codes to float.
   Attention's sums use AVX-512 in the avx512-vnni version (d_head a multiple of 16), AVX2 with FMA
   otherwise; softmax and the element-wise stages use AVX2 with FMA, which both kernel versions have.

   Sizes are checked by the Python side (glassgpt/kernels/step.py) and again here before any pointer is
   followed; the scratch space (`work`) comes from the caller, so a step allocates nothing.

   Threads: each product's tiles of 16 outputs are shared among `threads` threads (pool.c: workers that
   stay alive and spin between products, so handing out work costs about a microsecond).

   Build: with blockdot.c and pool.c, into one library (kernels/__init__.py). */

#include "blockdot.c"
#include "pool.c"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* ----------------------------------------------------------------------------- what Python hands over */

typedef struct {  /* one BlockWeight: W (d_in, d_out), see blockdot.c for the layout */
    const uint8_t *codes;  /* (d_out/16, d_in/32, bits·64) */
    const uint16_t *dm;    /* (d_out/16, d_in/32, 2, 16) float16 */
    int32_t d_in, d_out, bits, terms;
} Matrix;

typedef struct {  /* one block's weights */
    const float *w_ln1, *w_ln2;  /* RMSNorm weights (d_model,) */
    Matrix W_Q, W_K, W_V, W_O, W_gate, W_up, W_down;
} Layer;

typedef struct {
    int32_t n_layers, d_model, n_heads, n_kv_heads, d_head, d_mlp, d_vocab, n_ctx;
    float eps;                     /* every RMSNorm's */
    const float *W_E;              /* (d_vocab, d_model), element (t, i) at t·W_E_row + i·W_E_col */
    int64_t W_E_row, W_E_col;
    const float *cos, *sin;        /* RoPE's tables (n_ctx, d_head) */
    const Layer *layers;           /* (n_layers,) */
    const float *w_final;          /* the final RMSNorm's weights (d_model,) */
    Matrix W_U;                    /* (d_model, d_vocab) */
} Model;

typedef struct {  /* one activation row as the integer products see it (blockdot.c's quantize_row) */
    int8_t *xq;     /* (terms, d_in) */
    float *dx;      /* (terms, d_in/32) */
    int32_t *qsum;  /* (terms, d_in/32) */
    float *s;       /* (d_in/32,) */
} Quantized;

typedef struct {  /* the scratch space of a step, carved out of `work` */
    float *x, *h, *q, *k, *v, *z, *out, *gate, *up, *scores, *rows;
    Quantized a;
} Scratch;

/* ----------------------------------------------------------------------------- small vector helpers */

/* e^x for 8 floats: 2^n·e^r with n = round(x·log2 e), r = x - n·ln 2 (ln 2 in two parts, so r keeps its
   bits), e^r by its Taylor series to r⁶ (|r| ≤ ln2/2: relative error below 2e-7). */
AVX2 static __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145752f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    static const float c[] = {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    for (int i = 0; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c[i]));
    __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}

AVX2 static float exp1(float x) { return _mm256_cvtss_f32(exp8(_mm256_set1_ps(x))); }

/* Lane t of the result = the sum of the 8 lanes of a[t]: eight dot products finished at once. */
AVX2 static __m256 sum8(const __m256 a[8]) {
    __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    /* s0123 = [Σa0..Σa3 over lanes 0-3 | the same over lanes 4-7]; likewise s4567 */
    return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

/* ----------------------------------------------------------------------------- the KV cache */

/* The cache's element types (glassgpt/kernels/step.py's CACHE_DTYPES). */
enum { F32 = 0, F16 = 1, I8 = 2 };

static inline size_t element_bytes(int type) { return type == F32 ? 4 : type == F16 ? 2 : 1; }

typedef struct {  /* the static KV cache of one batch row (glassgpt/decode.py's StaticKVCache) */
    void *K, *V;               /* (n_layers, n_kv_heads, capacity, d_head) of `type` */
    float *K_scale, *V_scale;  /* I8: (n_layers, n_kv_heads, capacity), row s = codes[s]·scale[s]; else NULL */
    int32_t type, capacity;
} Cache;

/* 8 keys or values from the cache as float32: float32 as they are, float16 widened, int8 codes widened
   (their row's scale not applied). */
AVX2 static inline __m256 load8(const void *row, size_t i, int type) {
    if (type == F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    if (type == I8) return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)row + i))));
    return _mm256_loadu_ps((const float *)row + i);
}

/* ----------------------------------------------------------------------------- the stages */

/* h = x / √(mean(x²) + eps) · w: Llama's norm, as F.rms_norm.  x, w, h (d,) */
AVX2 static void rms_norm(const float *x, const float *w, float eps, int d, float *h) {
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < d; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    float scale = 1.0f / sqrtf(hsum(acc) / (float)d + eps);
    for (int i = 0; i < d; i += 8)
        _mm256_storeu_ps(h + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(scale)),
                                              _mm256_loadu_ps(w + i)));
}

/* The row x (d_in,) rounded to int8 passes for the products that follow (those of W: its bits and passes). */
static void quantize(const float *x, const Matrix *W, Quantized *a) {
    quantize_row(x, W->d_in, W->terms, W->bits == 4, a->xq, a->dx, a->qsum, a->s);
}

/* y = x·W for the quantised row a, output tiles [t0, t1) of 16.  y (d_out,) */
static void product_tiles(const Matrix *W, const Quantized *a, float *y, int isa, int t0, int t1) {
    int G = W->d_in / BLOCK;
    for (int tile = t0; tile < t1; tile++) {
        const uint8_t *c = W->codes + (size_t)tile * G * W->bits * 64;
        const uint16_t *dm = W->dm + (size_t)tile * G * 32;
        if (isa == 0)
            tile_avx512(c, dm, a->xq, a->dx, a->s, G, W->bits, W->terms, y + tile * 16);
        else
            tile_avx2(c, dm, a->xq, a->dx, a->qsum, a->s, G, W->bits, W->terms, y + tile * 16);
    }
}

typedef struct {  /* y_j = a·W_j for up to three matrices that read the same row: one section of work */
    int count, isa, chunk;  /* chunk: tiles of 16 outputs a piece */
    const Matrix *W[3];
    float *y[3];
    const Quantized *a;
} Products;

static void product_piece(const void *job, int piece) {  /* W_0's pieces of `chunk` tiles, then W_1's, … */
    const Products *p = job;
    for (int j = 0; j < p->count; j++) {
        int tiles = p->W[j]->d_out / 16, pieces = (tiles + p->chunk - 1) / p->chunk;
        if (piece < pieces) {
            int t0 = piece * p->chunk;
            product_tiles(p->W[j], p->a, p->y[j], p->isa, t0, t0 + p->chunk < tiles ? t0 + p->chunk : tiles);
            return;
        }
        piece -= pieces;
    }
}

/* y = a·W (and y2 = a·W2, y3 = a·W3 when given), its tiles shared among `threads` threads in pieces of
   CHUNK tiles (4 × 16 outputs: a few µs each, so the threads finish together). */
#define CHUNK 4
static void product(int threads, const Quantized *a, int isa, const Matrix *W, float *y, const Matrix *W2, float *y2,
                    const Matrix *W3, float *y3) {
    Products p = {.count = W3 ? 3 : W2 ? 2 : 1, .isa = isa, .chunk = CHUNK, .W = {W, W2, W3}, .y = {y, y2, y3}, .a = a};
    int pieces = 0;
    for (int j = 0; j < p.count; j++) pieces += (p.W[j]->d_out / 16 + CHUNK - 1) / CHUNK;
    share(product_piece, &p, pieces, threads);
}

/* RoPE at one position, for each of n_heads heads of x (n_heads·d_head,), as model.RoPE rotates:
   x·cos + [-x2, x1]·sin, x1 and x2 the two halves of a head. cos, sin: this position's row (d_head,). */
static void rotate(float *x, int n_heads, int d_head, const float *cos, const float *sin) {
    int half = d_head / 2;
    for (int h = 0; h < n_heads; h++, x += d_head) {
        for (int i = 0; i < half; i++) {
            float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * cos[i] - x2 * sin[i];
            x[i + half] = x2 * cos[i + half] + x1 * sin[i + half];
        }
    }
}

/* rows [s0, s1) of a float16 or int8 cache (·, d_head) as float32 in `out` (a block small enough for L1). */
AVX2 static void widen(const void *cache, int type, int s0, int s1, int d_head, float *out) {
    for (size_t i = (size_t)s0 * d_head, j = 0; i < (size_t)s1 * d_head; i += 8, j += 8)
        _mm256_storeu_ps(out + j, load8(cache, i, type));
}

/* The block's keys and values as float32 (int8: the codes): the cache's own rows, or widened into `buf`. */
static const float *rows(const void *cache, int type, int s0, int s1, int d_head, float *buf) {
    if (type == F32)
        return (const float *)cache + (size_t)s0 * d_head;
    widen(cache, type, s0, s1, d_head, buf);
    return buf;
}

#define POSITIONS 16  /* keys or values a block: 4 KB of float32 rows of 64, read from memory once, then
                         from L1 by every query head of the group */

#define INLINE __attribute__((always_inline)) inline

/* out[s] = q·k[s]·scale for the n keys k (n, d_head) of a block: eight keys at a time, so one sum8
   finishes eight dot products. (Inlined with d_head a constant, its loops unroll into registers.) */
AVX2 static INLINE void dot_keys(const float *q, const float *k, int n, int d_head, float scale, float *out) {
    int s = 0;
    for (; s + 8 <= n; s += 8) {
        __m256 acc[8];
        for (int t = 0; t < 8; t++) {  /* key by key, in the order they lie in memory */
            acc[t] = _mm256_setzero_ps();
            for (int i = 0; i < d_head; i += 8)
                acc[t] = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + (size_t)(s + t) * d_head + i), acc[t]);
        }
        _mm256_storeu_ps(out + s, _mm256_mul_ps(sum8(acc), _mm256_set1_ps(scale)));
    }
    for (; s < n; s++) {  /* the last n mod 8 keys */
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < d_head; i += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + (size_t)s * d_head + i), acc);
        out[s] = hsum(acc) * scale;
    }
}

/* z += Σ_s p[s]·v[s] for the n values v (n, d_head) of a block, 64 dimensions of z at a time in registers. */
AVX2 static INLINE void sum_values(const float *p, const float *v, int n, int d_head, float *z) {
    for (int i = 0; i < d_head; i += 64) {
        int lanes = d_head - i < 64 ? (d_head - i) / 8 : 8;
        __m256 acc[8];
        for (int l = 0; l < lanes; l++) acc[l] = _mm256_loadu_ps(z + i + 8 * l);
        for (int s = 0; s < n; s++) {
            __m256 w = _mm256_set1_ps(p[s]);
            for (int l = 0; l < lanes; l++)
                acc[l] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + (size_t)s * d_head + i + 8 * l), acc[l]);
        }
        for (int l = 0; l < lanes; l++) _mm256_storeu_ps(z + i + 8 * l, acc[l]);
    }
}

/* Ask for the block after next while this one is computed: the cache streams from memory. */
static inline void prefetch(const void *cache, int type, int s, int n, int d_head) {
    if (s >= n) return;
    const char *at = (const char *)cache + (size_t)s * d_head * element_bytes(type);
    for (size_t b = 0; b < (size_t)POSITIONS * d_head * element_bytes(type); b += 64) _mm_prefetch(at + b, _MM_HINT_T0);
}

/* scores[g][s] = q_g·K[s] / √d_head for the group's query heads g and positions s < n.
   q (group, d_head); K (n, d_head) of `type` (int8: the codes); scores (group, stride); buf: room for one block. */
AVX2 static void attention_scores(const float *q, int group, const void *K, int type, int n, int d_head,
                                  float *scores, int stride, float *buf) {
    const float scale = 1.0f / sqrtf((float)d_head);
    for (int s0 = 0; s0 < n; s0 += POSITIONS) {
        int s1 = s0 + POSITIONS < n ? s0 + POSITIONS : n;
        prefetch(K, type, s0 + 2 * POSITIONS, n, d_head);
        const float *k = rows(K, type, s0, s1, d_head, buf);  /* (s1 - s0, d_head) */
        for (int g = 0; g < group; g++) {
            if (d_head == 64)  /* SmolLM2's, Llama's: unrolled */
                dot_keys(q + (size_t)g * d_head, k, s1 - s0, 64, scale, scores + (size_t)g * stride + s0);
            else
                dot_keys(q + (size_t)g * d_head, k, s1 - s0, d_head, scale, scores + (size_t)g * stride + s0);
        }
    }
}

/* pattern = softmax(scores) in place, one row of n: e^(s - max) / Σ e^(s - max). */
AVX2 static void softmax(float *row, int n) {
    __m256 top8 = _mm256_set1_ps(row[0]);  /* the max eight lanes at a time (a chain of scalar maxes was a
                                              sixth of attention's time) */
    int s = 0;
    for (; s + 8 <= n; s += 8) top8 = _mm256_max_ps(_mm256_loadu_ps(row + s), top8);
    float lanes[8], top = row[0];
    _mm256_storeu_ps(lanes, top8);
    for (int i = 0; i < 8; i++) top = lanes[i] > top ? lanes[i] : top;
    for (; s < n; s++) top = row[s] > top ? row[s] : top;
    __m256 acc = _mm256_setzero_ps(), shift = _mm256_set1_ps(top);
    s = 0;
    for (; s + 8 <= n; s += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + s), shift));
        _mm256_storeu_ps(row + s, e);
        acc = _mm256_add_ps(acc, e);
    }
    float total = hsum(acc);
    for (; s < n; s++) total += row[s] = exp1(row[s] - top);
    __m256 inv = _mm256_set1_ps(1.0f / total);
    for (s = 0; s + 8 <= n; s += 8) _mm256_storeu_ps(row + s, _mm256_mul_ps(_mm256_loadu_ps(row + s), inv));
    for (; s < n; s++) row[s] *= 1.0f / total;
}

/* z_g = Σ_s pattern[g][s]·V[s]. pattern (group, stride); V (n, d_head) of `type` (int8: the codes);
   z (group, d_head); buf: room for one block of values. */
AVX2 static void attention_values(const float *pattern, int group, int stride, const void *V, int type, int n,
                                  int d_head, float *z, float *buf) {
    memset(z, 0, sizeof(float) * (size_t)group * d_head);
    for (int s0 = 0; s0 < n; s0 += POSITIONS) {
        int s1 = s0 + POSITIONS < n ? s0 + POSITIONS : n;
        prefetch(V, type, s0 + 2 * POSITIONS, n, d_head);
        const float *v = rows(V, type, s0, s1, d_head, buf);  /* (s1 - s0, d_head) */
        for (int g = 0; g < group; g++) {
            if (d_head == 64)
                sum_values(pattern + (size_t)g * stride + s0, v, s1 - s0, 64, z + (size_t)g * d_head);
            else
                sum_values(pattern + (size_t)g * stride + s0, v, s1 - s0, d_head, z + (size_t)g * d_head);
        }
    }
}

/* ----------------------------------------------------------------------------- attention in AVX-512 (isa 0)

   The same sums, sixteen lanes at a time, the float16 keys and values (or int8 codes) widened straight
   from the cache into registers (no float32 copy of the block). Scores: each key's d_head products with up to three
   query heads go into one register per head (the d_head/16 registers of a key summed by FMA), and sum4
   and sum_quarters turn sixteen keys' registers into their sixteen scores at once (no sum per key).
   Values: the group's z (3 × d_head) stays in registers over every position. On one core this reads
   the float16 cache at about the memory's speed for one core (~18 GB/s here, against ~11 for AVX2). */

#define GROUP 3  /* query heads a pass (SmolLM2's 9/3): 3·(d_head/16) registers of q or z */

/* 16 keys or values from the cache as float32 (int8: the codes, as load8). */
AVX512 static INLINE __m512 load16(const void *row, size_t i, int type) {
    if (type == F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
    if (type == I8) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)row + i))));
    return _mm512_loadu_ps((const float *)row + i);
}

/* Sixteen dot products finished at once, by a transpose-add tree: sum4 takes four keys' registers a[t] to
   one whose quarter c (lanes 4c..4c+3) holds their four sums over quarter c; sum_quarters takes four of
   those (keys 0-3, 4-7, 8-11, 12-15) to the sixteen whole sums, lane t for key t. */
AVX512 static INLINE __m512 sum4(const __m512 a[4]) {
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a[0], a[1]), _mm512_unpackhi_ps(a[0], a[1]));  /* pairs */
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a[2], a[3]), _mm512_unpackhi_ps(a[2], a[3]));
    __m512d x = _mm512_castps_pd(s01), y = _mm512_castps_pd(s23);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
}

AVX512 static INLINE __m512 sum_quarters(const __m512 four[4]) {  /* quarters 0+1 and 2+3, then all four */
    __m512 e0 = _mm512_add_ps(_mm512_shuffle_f32x4(four[0], four[1], 0x88), _mm512_shuffle_f32x4(four[0], four[1], 0xdd));
    __m512 e1 = _mm512_add_ps(_mm512_shuffle_f32x4(four[2], four[3], 0x88), _mm512_shuffle_f32x4(four[2], four[3], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, 0x88), _mm512_shuffle_f32x4(e0, e1, 0xdd));
}

/* out[g][t] = q_g·k[t]·scale for G ≤ GROUP query heads q (G, d_head) and n ≤ 16 keys k (n, d_head) at
   element k0 of the cache, four keys at a time (each widened once for every head). out (G, stride).
   (Inlined with G, n, d_head and type constants, the sums stay in registers.) */
AVX512 static INLINE void dot_keys16(const float *q, int G, const void *K, int type, size_t k0, int n, int d_head,
                                     float scale, float *out, int stride) {
    __m512 four[GROUP][4];
    for (int j = 0; j < 4; j++) {  /* keys 4j..4j+3 */
        __m512 acc[GROUP][4];
        for (int t = 0; t < 4; t++) {
            for (int g = 0; g < G; g++) acc[g][t] = _mm512_setzero_ps();
            if (4 * j + t >= n) continue;
            for (int i = 0; i < d_head; i += 16) {
                __m512 k = load16(K, k0 + (size_t)(4 * j + t) * d_head + i, type);
                for (int g = 0; g < G; g++)
                    acc[g][t] = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)g * d_head + i), k, acc[g][t]);
            }
        }
        for (int g = 0; g < G; g++) four[g][j] = sum4(acc[g]);
    }
    for (int g = 0; g < G; g++)
        _mm512_mask_storeu_ps(out + (size_t)g * stride, (__mmask16)((1u << n) - 1),
                              _mm512_mul_ps(sum_quarters(four[g]), _mm512_set1_ps(scale)));
}

/* attention_scores for d_head a multiple of 16: blocks of 16 keys, GROUP query heads a pass. */
AVX512 static void attention_scores_avx512(const float *q, int group, const void *K, int type, int n, int d_head,
                                           float *scores, int stride) {
    const float scale = 1.0f / sqrtf((float)d_head);
    for (int g0 = 0; g0 < group; g0 += GROUP) {
        int G = group - g0 < GROUP ? group - g0 : GROUP;
        const float *q_g = q + (size_t)g0 * d_head;
        float *out = scores + (size_t)g0 * stride;
        for (int s0 = 0; s0 < n; s0 += 16) {
            int m = n - s0 < 16 ? n - s0 : 16;
            prefetch(K, type, s0 + 2 * POSITIONS, n, d_head);
            size_t k0 = (size_t)s0 * d_head;
            if (G == 3 && d_head == 64 && m == 16) {  /* SmolLM2's: unrolled, in registers, one copy a type */
                if (type == F16) dot_keys16(q_g, 3, K, F16, k0, 16, 64, scale, out + s0, stride);
                else if (type == I8) dot_keys16(q_g, 3, K, I8, k0, 16, 64, scale, out + s0, stride);
                else dot_keys16(q_g, 3, K, F32, k0, 16, 64, scale, out + s0, stride);
            } else {
                dot_keys16(q_g, G, K, type, k0, m, d_head, scale, out + s0, stride);
            }
        }
    }
}

/* z_g += Σ_s p[g][s]·V[s][i0 .. i0 + 16·lanes) for G ≤ GROUP heads, lanes ≤ 4: the sums stay in registers
   over every position s < n. p (G, stride); V (n, d_head); z (G, d_head). */
AVX512 static INLINE void sum_values16(const float *p, int G, int stride, const void *V, int type, int n, int d_head,
                                       int i0, int lanes, float *z) {
    __m512 acc[GROUP][4];
    for (int g = 0; g < G; g++)
        for (int l = 0; l < lanes; l++) acc[g][l] = _mm512_setzero_ps();
    for (int s = 0; s < n; s++) {
        if (s % POSITIONS == 0) prefetch(V, type, s + 2 * POSITIONS, n, d_head);
        for (int l = 0; l < lanes; l++) {
            __m512 v = load16(V, (size_t)s * d_head + i0 + 16 * l, type);
            for (int g = 0; g < G; g++)
                acc[g][l] = _mm512_fmadd_ps(_mm512_set1_ps(p[(size_t)g * stride + s]), v, acc[g][l]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int l = 0; l < lanes; l++) _mm512_storeu_ps(z + (size_t)g * d_head + i0 + 16 * l, acc[g][l]);
}

/* attention_values for d_head a multiple of 16: GROUP query heads and 64 dimensions of z a pass. */
AVX512 static void attention_values_avx512(const float *pattern, int group, int stride, const void *V, int type,
                                           int n, int d_head, float *z) {
    for (int g0 = 0; g0 < group; g0 += GROUP) {
        int G = group - g0 < GROUP ? group - g0 : GROUP;
        const float *p = pattern + (size_t)g0 * stride;
        float *z_g = z + (size_t)g0 * d_head;
        if (G == 3 && d_head == 64) {  /* SmolLM2's: unrolled, in registers, one copy a type */
            if (type == F16) sum_values16(p, 3, stride, V, F16, n, 64, 0, 4, z_g);
            else if (type == I8) sum_values16(p, 3, stride, V, I8, n, 64, 0, 4, z_g);
            else sum_values16(p, 3, stride, V, F32, n, 64, 0, 4, z_g);
            continue;
        }
        for (int i0 = 0; i0 < d_head; i0 += 64)
            sum_values16(p, G, stride, V, type, n, d_head, i0, d_head - i0 < 64 ? (d_head - i0) / 16 : 4, z_g);
    }
}

/* cache[kv, pos] = k_kv for each key/value head: k (H_kv, d_head) into cache (H_kv, capacity, d_head) of
   `type`: float16 rounded to nearest (as torch's .half()); int8 as decode.py's quantize_rows, bit for bit:
   scale = max|k_kv| / 127 into scales[kv, pos] (scales (H_kv, capacity)), code = round(k / scale) half to
   even (nearbyintf in the default rounding mode), an all-zero row scale 0 and codes 0. */
AVX2 static void store_kv(const float *k, void *cache, float *scales, int type, int n_kv_heads, int capacity, int pos,
                          int d_head) {
    for (int kv = 0; kv < n_kv_heads; kv++) {
        const float *row = k + (size_t)kv * d_head;
        size_t at = ((size_t)kv * capacity + pos) * d_head;
        if (type == I8) {
            float top = 0.0f;
            for (int i = 0; i < d_head; i++) top = fabsf(row[i]) > top ? fabsf(row[i]) : top;
            float scale = top / 127.0f;
            int8_t *codes = (int8_t *)cache + at;
            for (int i = 0; i < d_head; i++) codes[i] = scale > 0.0f ? (int8_t)nearbyintf(row[i] / scale) : 0;
            scales[(size_t)kv * capacity + pos] = scale;
        } else if (type == F16) {
            for (int i = 0; i < d_head; i += 8)
                _mm_storeu_si128((__m128i *)((uint16_t *)cache + at + i),
                                 _mm256_cvtps_ph(_mm256_loadu_ps(row + i), _MM_FROUND_TO_NEAREST_INT));
        } else {
            memcpy((float *)cache + at, row, sizeof(float) * (size_t)d_head);
        }
    }
}

/* rows[g][s] *= scale[s] for g < group, s < n: an int8 cache's row scales brought in after the sums (a key's
   into its scores, a value's into its weights in the pattern). rows (group, stride), scale (n,). */
AVX2 static void scale_by_row(float *rows, int group, int stride, const float *scale, int n) {
    for (int g = 0; g < group; g++) {
        float *row = rows + (size_t)g * stride;
        int s = 0;
        for (; s + 8 <= n; s += 8)
            _mm256_storeu_ps(row + s, _mm256_mul_ps(_mm256_loadu_ps(row + s), _mm256_loadu_ps(scale + s)));
        for (; s < n; s++) row[s] *= scale[s];
    }
}

/* The attention of the one query over positions 0..pos, every head: q (H, d_head) → z (H, d_head).
   K, V: this layer's cache (H_kv, capacity, d_head) of `type`, with (int8) K_scale, V_scale (H_kv, capacity);
   query head h reads key/value head h / (H / H_kv). With int8 the sums run on the codes:
       scores = (q·codes_K)/√d_head · K_scale,  pattern = softmax(scores) · V_scale,  z = pattern·codes_V. */
static void attention(const Model *m, const float *q, const void *K, const void *V, const float *K_scale,
                      const float *V_scale, int type, int capacity, int pos, int isa, float *scores, float *buf,
                      float *z) {
    int group = m->n_heads / m->n_kv_heads, d = m->d_head, n = pos + 1;
    int wide = isa == 0 && d % 16 == 0;  /* AVX-512 (the avx512-vnni version's CPUs have it) */
    size_t per_head = (size_t)capacity * d * element_bytes(type);  /* bytes of one key/value head's cache */
    for (int kv = 0; kv < m->n_kv_heads; kv++) {
        const void *K_kv = (const char *)K + kv * per_head, *V_kv = (const char *)V + kv * per_head;
        const float *q_g = q + (size_t)kv * group * d;
        float *z_g = z + (size_t)kv * group * d;
        if (wide) attention_scores_avx512(q_g, group, K_kv, type, n, d, scores, m->n_ctx);
        else attention_scores(q_g, group, K_kv, type, n, d, scores, m->n_ctx, buf);
        if (type == I8) scale_by_row(scores, group, m->n_ctx, K_scale + (size_t)kv * capacity, n);
        for (int g = 0; g < group; g++) softmax(scores + (size_t)g * m->n_ctx, n);
        if (type == I8) scale_by_row(scores, group, m->n_ctx, V_scale + (size_t)kv * capacity, n);
        if (wide) attention_values_avx512(scores, group, m->n_ctx, V_kv, type, n, d, z_g);
        else attention_values(scores, group, m->n_ctx, V_kv, type, n, d, z_g, buf);
    }
}

/* attention alone, for the tests (both versions against each other and torch): q (n_heads, d_head), K, V
   (n_kv_heads, capacity, d_head) of `type` (0 float32, 1 float16, 2 int8 with K_scale, V_scale (n_kv_heads,
   capacity)) → z (n_heads, d_head) over positions 0..pos. scores: n_heads·capacity floats; buf: 16·d_head.
   Returns 0, or -1 for sizes it does not take. */
int step_attention(int n_heads, int n_kv_heads, int d_head, const float *q, const void *K, const void *V,
                   const float *K_scale, const float *V_scale, int type, int capacity, int pos, int isa,
                   float *scores, float *buf, float *z) {
    if (n_kv_heads < 1 || n_heads % n_kv_heads || d_head < 8 || d_head % 8 || pos < 0 || pos >= capacity ||
        (isa != 0 && isa != 1) || type < F32 || type > I8 || (type == I8 && !(K_scale && V_scale)))
        return -1;
    Model m = {.n_heads = n_heads, .n_kv_heads = n_kv_heads, .d_head = d_head, .n_ctx = capacity};
    attention(&m, q, K, V, K_scale, V_scale, type, capacity, pos, isa, scores, buf, z);
    return 0;
}

/* gate = silu(gate)·up = gate / (1 + e^-gate) · up, in place.  (d_mlp,) */
AVX2 static void swiglu(float *gate, const float *up, int d) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int i = 0; i < d; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
}

/* x = x + y: the residual stream's add.  (d,) */
AVX2 static void add(float *x, const float *y, int d) {
    for (int i = 0; i < d; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
}

/* ----------------------------------------------------------------------------- one block, the whole step */

/* x = x + Attention(RMSNorm(x)); x = x + MLP(RMSNorm(x)).  c: the cache; i: this layer. */
static void block(const Model *m, const Layer *L, Scratch *w, const Cache *c, int i, int pos, int isa, int threads) {
    int D = m->d_model, d = m->d_head;
    rms_norm(w->x, L->w_ln1, m->eps, D, w->h);
    quantize(w->h, &L->W_Q, &w->a);  /* once for the three products: they share h */
    product(threads, &w->a, isa, &L->W_Q, w->q, &L->W_K, w->k, &L->W_V, w->v);  /* (H·d_head,), (H_kv·d_head,) ×2 */
    rotate(w->q, m->n_heads, d, m->cos + (size_t)pos * d, m->sin + (size_t)pos * d);
    rotate(w->k, m->n_kv_heads, d, m->cos + (size_t)pos * d, m->sin + (size_t)pos * d);
    size_t rows = (size_t)m->n_kv_heads * c->capacity, bytes = rows * d * element_bytes(c->type);  /* a layer's */
    char *K = (char *)c->K + i * bytes, *V = (char *)c->V + i * bytes;
    float *K_scale = c->type == I8 ? c->K_scale + i * rows : NULL;
    float *V_scale = c->type == I8 ? c->V_scale + i * rows : NULL;
    store_kv(w->k, K, K_scale, c->type, m->n_kv_heads, c->capacity, pos, d);
    store_kv(w->v, V, V_scale, c->type, m->n_kv_heads, c->capacity, pos, d);
    attention(m, w->q, K, V, K_scale, V_scale, c->type, c->capacity, pos, isa, w->scores, w->rows, w->z);  /* (H·d_head,) */
    quantize(w->z, &L->W_O, &w->a);
    product(threads, &w->a, isa, &L->W_O, w->out, NULL, NULL, NULL, NULL);  /* (d_model,) */
    add(w->x, w->out, D);

    rms_norm(w->x, L->w_ln2, m->eps, D, w->h);
    quantize(w->h, &L->W_gate, &w->a);  /* once for gate and up */
    product(threads, &w->a, isa, &L->W_gate, w->gate, &L->W_up, w->up, NULL, NULL);  /* (d_mlp,) twice */
    swiglu(w->gate, w->up, m->d_mlp);
    quantize(w->gate, &L->W_down, &w->a);
    product(threads, &w->a, isa, &L->W_down, w->out, NULL, NULL, NULL, NULL);  /* (d_model,) */
    add(w->x, w->out, D);
}

/* The scratch space a step needs, in bytes (and, with work given, where each buffer lies). */
static size_t scratch(const Model *m, char *work, Scratch *w) {
    int D = m->d_model, HD = m->n_heads * m->d_head, KD = m->n_kv_heads * m->d_head, F = m->d_mlp;
    int widest = D > HD ? D : HD;
    widest = widest > F ? widest : F;
    size_t sizes[] = {D, D, HD, KD, KD, HD, D, F, F, (size_t)m->n_heads * m->n_ctx, (size_t)POSITIONS * m->d_head};
    float **where[] = {&w->x, &w->h, &w->q, &w->k, &w->v, &w->z, &w->out, &w->gate, &w->up, &w->scores, &w->rows};
    size_t at = 0;
    for (int i = 0; i < 11; i++) {  /* floats, each buffer on its own cache lines */
        if (work) *where[i] = (float *)(work + at);
        at += (sizes[i] * sizeof(float) + 63) & ~(size_t)63;
    }
    size_t G = widest / BLOCK;
    if (work) {
        w->a.xq = (int8_t *)(work + at);
        w->a.dx = (float *)(work + at + MAX_TERMS * (size_t)widest);
        w->a.qsum = (int32_t *)(work + at + MAX_TERMS * (size_t)widest + MAX_TERMS * G * 4);
        w->a.s = (float *)(work + at + MAX_TERMS * (size_t)widest + 2 * MAX_TERMS * G * 4);
    }
    return at + MAX_TERMS * (size_t)widest + (2 * MAX_TERMS + 1) * G * 4;
}

size_t step_scratch_bytes(const Model *m) { return scratch(m, NULL, NULL); }

static int matrix_ok(const Matrix *W, int d_in, int d_out) {
    return W->codes && W->dm && W->d_in == d_in && W->d_out == d_out && (W->bits == 4 || W->bits == 8) &&
           W->terms >= 1 && W->terms <= MAX_TERMS && d_in % BLOCK == 0 && d_out % 16 == 0;
}

/* Every size the step relies on. 0 when it may run. */
static int check(const Model *m, int pos, const Cache *c, int isa) {
    int D = m->d_model, HD = m->n_heads * m->d_head, KD = m->n_kv_heads * m->d_head, F = m->d_mlp;
    if (m->n_layers < 1 || m->n_kv_heads < 1 || m->n_heads % m->n_kv_heads || m->d_head % 8 || D % BLOCK ||
        pos < 0 || pos >= c->capacity || pos >= m->n_ctx || (isa != 0 && isa != 1) || !matrix_ok(&m->W_U, D, m->d_vocab))
        return -1;
    if (!c->K || !c->V || c->type < F32 || c->type > I8 || (c->type == I8 && !(c->K_scale && c->V_scale)))
        return -1;
    for (int i = 0; i < m->n_layers; i++) {
        const Layer *L = m->layers + i;
        if (!matrix_ok(&L->W_Q, D, HD) || !matrix_ok(&L->W_K, D, KD) || !matrix_ok(&L->W_V, D, KD) ||
            !matrix_ok(&L->W_O, HD, D) || !matrix_ok(&L->W_gate, D, F) || !matrix_ok(&L->W_up, D, F) ||
            !matrix_ok(&L->W_down, F, D))
            return -1;
        /* one quantised row serves Q, K, V (and gate, up): they must want the same rounding */
        if (L->W_K.bits != L->W_Q.bits || L->W_K.terms != L->W_Q.terms || L->W_V.bits != L->W_Q.bits ||
            L->W_V.terms != L->W_Q.terms || L->W_up.bits != L->W_gate.bits || L->W_up.terms != L->W_gate.terms)
            return -1;
    }
    return 0;
}

/* token at position pos → logits (d_vocab,) float32, writing its keys and values at pos into the cache c
   (K, V (n_layers, n_kv_heads, c->capacity, d_head) float32, float16 or int8 with its scales).
   work: step_scratch_bytes(m) bytes, 64-byte aligned. isa: 0 avx512_vnni, 1 avx2. threads: how many
   share each product (1: this thread alone).
   Returns 0, or -1 for sizes it does not take, -2 for too little scratch space. */
int decode_step(const Model *m, int64_t token, int pos, const Cache *c, float *logits, void *work, size_t work_bytes,
                int isa, int threads) {
    if (check(m, pos, c, isa) || token < 0 || token >= m->d_vocab)
        return -1;
    if (work_bytes < step_scratch_bytes(m) || ((uintptr_t)work & 63))
        return -2;
    Scratch w = {0};
    scratch(m, work, &w);
    int D = m->d_model;
    for (int i = 0; i < D; i++) w.x[i] = m->W_E[token * m->W_E_row + i * m->W_E_col];  /* x = W_E[token] */
    pthread_mutex_lock(&pool.busy);  /* the workers serve one step at a time */
    threads = start_workers(threads < 1 ? 1 : threads);
    for (int i = 0; i < m->n_layers; i++)
        block(m, m->layers + i, &w, c, i, pos, isa, threads);
    rms_norm(w.x, m->w_final, m->eps, D, w.h);
    quantize(w.h, &m->W_U, &w.a);
    product(threads, &w.a, isa, &m->W_U, logits, NULL, NULL, NULL, NULL);  /* (d_vocab,) */
    park();  /* the workers sleep until the next step shares a section */
    pthread_mutex_unlock(&pool.busy);
    return 0;
}

/* ----------------------------------------------------------------------------- a pure read, for benchmarks/matvec.py

   What one or more threads read when all they do is stream memory: n bytes at p (n a multiple of 1 MB), summed
   as 64-bit integers in pieces of 1 MB shared by `threads` threads as the products are. Returns the sum (so the
   loads are not optimised away). The ceiling the tile kernels are measured against. */

typedef struct {
    const uint8_t *p;
    int64_t *sums;  /* one per piece */
} Reading;

AVX2 static void read_piece(const void *job, int piece) {
    const Reading *r = job;
    const uint8_t *at = r->p + ((size_t)piece << 20);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < (1 << 20); i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(at + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(at + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(at + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(at + i + 96)));
    }
    int64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    r->sums[piece] = lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

int64_t stream_read(const void *p, size_t n, int threads) {
    int pieces = (int)(n >> 20);
    int64_t *sums = calloc(pieces > 0 ? pieces : 1, sizeof(int64_t)), total = 0;
    if (!sums) return 0;
    Reading r = {p, sums};
    pthread_mutex_lock(&pool.busy);
    threads = start_workers(threads < 1 ? 1 : threads);
    share(read_piece, &r, pieces, threads);
    park();
    pthread_mutex_unlock(&pool.busy);
    for (int i = 0; i < pieces; i++) total += sums[i];
    free(sums);
    return total;
}
