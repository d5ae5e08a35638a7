/* The KV cache and attention of one decode step (step.c includes this file; the diagram's line
       z_h = softmax(q_h·K[0..pos]ᵀ/√d_head)·V[0..pos]     per query head h; key/value head h/(H/H_kv)).

   From the bottom up: the cache's element types and store_kv (a new position's keys or values in);
   the AVX2 sums (scores for a block of keys, values weighted by the pattern), the same in AVX-512; and
   attention(): the work cut into pieces (key/value head × span of positions) that the pool's threads
   claim, each a softmax over its span not yet divided by its sum, merged exactly at the end. */

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

/* ----------------------------------------------------------------------------- the sums in AVX2

   For isa 1, and for isa 0 where d_head is not a multiple of 16. One span of positions at a time
   (attention_piece below hands each its span's K, V and scores). */

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

/* scores[g][s] = q_g·K[s] / √d_head for the group's query heads g and positions s < n.
   q (group, d_head); K (n, d_head) of `type` (int8: the codes); scores (group, stride); buf: room for one block. */
AVX2 static void attention_scores(const float *q, int group, const void *K, int type, int n, int d_head,
                                  float *scores, int stride, float *buf) {
    const float scale = 1.0f / sqrtf((float)d_head);
    for (int s0 = 0; s0 < n; s0 += POSITIONS) {
        int s1 = s0 + POSITIONS < n ? s0 + POSITIONS : n;
        const float *k = rows(K, type, s0, s1, d_head, buf);  /* (s1 - s0, d_head) */
        for (int g = 0; g < group; g++) {
            if (d_head == 64)  /* SmolLM2's, Llama's: unrolled */
                dot_keys(q + (size_t)g * d_head, k, s1 - s0, 64, scale, scores + (size_t)g * stride + s0);
            else
                dot_keys(q + (size_t)g * d_head, k, s1 - s0, d_head, scale, scores + (size_t)g * stride + s0);
        }
    }
}

/* row[s] = e^(row[s] - top) in place for s < n, top = max row: one span's softmax without its division (the
   spans' sums are combined first, merge() below). Returns top; *total = Σ_s row[s]. */
AVX2 static float exps(float *row, int n, float *total) {
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
    float sum = hsum(acc);
    for (; s < n; s++) sum += row[s] = exp1(row[s] - top);
    *total = sum;
    return top;
}

/* z_g = Σ_s pattern[g][s]·V[s]. pattern (group, stride); V (n, d_head) of `type` (int8: the codes);
   z (group, d_head); buf: room for one block of values. */
AVX2 static void attention_values(const float *pattern, int group, int stride, const void *V, int type, int n,
                                  int d_head, float *z, float *buf) {
    memset(z, 0, sizeof(float) * (size_t)group * d_head);
    for (int s0 = 0; s0 < n; s0 += POSITIONS) {
        int s1 = s0 + POSITIONS < n ? s0 + POSITIONS : n;
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

/* ----------------------------------------------------------------------------- attention, in pieces

   One layer's attention is n_kv_heads × spans pieces: key/value head kv, for the query heads of its group,
   over span j of the n positions (⌈n/SPAN⌉ spans of about equal length, in whole blocks of 16 positions:
   span_start). A piece computes, for each head h of the group,

       s_t = q_h·K[t]/√d_head (int8: · K_scale[t]),  top = max_t s_t,  e_t = e^(s_t - top),  sum = Σ_t e_t
       z_piece = Σ_t e_t (int8: · V_scale[t]) · V[t]                                              (d_head,)

   and merge() combines a head's spans in the order j = 0, 1, …:  M = max_j top_j,  w_j = e^(top_j - M),
       z_h = Σ_j w_j·z_j / Σ_j w_j·sum_j  = softmax(s)·V  (the same sums, grouped by span).
   The spans depend on n alone, never on the thread count, and merge() runs on the calling thread once
   every piece is done: the result is the same bits whether one thread did the pieces or several, whichever
   took which. Threads claim pieces as they claim the products' tiles (pool.c's share()). */

#define SPAN 1024       /* at most, positions a span. At 2000 tokens SmolLM2's 3 key/value heads make 6 pieces of
                           ~15 µs, 3 for each of two threads. Shorter spans balance finer but cost one thread
                           more time (each restarts the two streams of keys and values from memory): steps at
                           2000 tokens in turns, spans of 256, 512, 1024, whole: 7.76, 7.56, 7.44, 7.40 ms */
#define MAX_D_HEAD 512  /* the AVX2 version widens a block of keys on the stack: POSITIONS·d_head floats */

static inline int spans_of(int n) { return (n + SPAN - 1) / SPAN; }

/* The first position of span j of n: the ⌈n/16⌉ blocks of 16 positions dealt out evenly (j = spans: n). */
static inline int span_start(int n, int j) {
    int blocks = (n + 15) / 16, s = 16 * (int)((int64_t)j * blocks / spans_of(n));
    return s < n ? s : n;
}

/* Floats of `part` that attention needs: every piece's z, top and sum, for up to `capacity` positions. */
size_t attention_part_floats(int n_heads, int d_head, int capacity) {
    return (size_t)n_heads * spans_of(capacity) * (d_head + 2);
}

typedef struct {  /* one layer's attention, as every piece reads it */
    const float *q;                  /* (H, d_head) */
    const void *K, *V;               /* this layer's cache (H_kv, capacity, d_head) of `type` */
    const float *K_scale, *V_scale;  /* I8: (H_kv, capacity); else NULL */
    int type, capacity, n, n_heads, n_kv_heads, d_head, stride;  /* n = pos + 1 positions */
    float *scores;                   /* (H, stride) */
    float *part;                     /* attention_part_floats(H, d_head, capacity) */
    /* set by attention(): */
    int group, wide;                 /* H / H_kv; 1: the AVX-512 sums */
    float *z_part, *top, *sum;       /* (H_kv, spans, group, d_head), (H_kv, spans, group) twice: in part */
} Attention;

/* Piece kv·spans + j: key/value head kv over span j (above). */
static void attention_piece(const void *job, int piece) {
    const Attention *a = job;
    int spans = spans_of(a->n), kv = piece / spans, j = piece % spans, G = a->group, d = a->d_head;
    int s0 = span_start(a->n, j), n = span_start(a->n, j + 1) - s0;  /* positions [s0, s0 + n) */
    size_t first = (size_t)kv * a->capacity + s0, bytes = (size_t)d * element_bytes(a->type);  /* row; a row's */
    const void *K = (const char *)a->K + first * bytes, *V = (const char *)a->V + first * bytes;  /* (n, d_head) */
    const float *q = a->q + (size_t)kv * G * d;                         /* (G, d_head) */
    float *scores = a->scores + (size_t)kv * G * a->stride + s0;        /* (G, stride): this span's columns */
    size_t at = (size_t)kv * spans + j;                                 /* this piece's partials */
    float buf[a->wide ? 1 : POSITIONS * d];                             /* AVX2: one block widened */
    if (a->wide) attention_scores_avx512(q, G, K, a->type, n, d, scores, a->stride);
    else attention_scores(q, G, K, a->type, n, d, scores, a->stride, buf);
    if (a->type == I8) scale_by_row(scores, G, a->stride, a->K_scale + first, n);
    for (int g = 0; g < G; g++) a->top[at * G + g] = exps(scores + (size_t)g * a->stride, n, &a->sum[at * G + g]);
    if (a->type == I8) scale_by_row(scores, G, a->stride, a->V_scale + first, n);
    if (a->wide) attention_values_avx512(scores, G, a->stride, V, a->type, n, d, a->z_part + at * G * d);
    else attention_values(scores, G, a->stride, V, a->type, n, d, a->z_part + at * G * d, buf);
}

/* z_h = Σ_j w_j·z_j / Σ_j w_j·sum_j, w_j = e^(top_j - max top), over each head's spans j in order.
   z (H, d_head) */
AVX2 static void merge(const Attention *a, float *z) {
    int spans = spans_of(a->n), d = a->d_head;
    for (int h = 0; h < a->n_heads; h++) {
        int kv = h / a->group, g = h % a->group;
        float *z_h = z + (size_t)h * d, M = -INFINITY, total = 0.0f;
        for (int j = 0; j < spans; j++) M = fmaxf(M, a->top[((size_t)kv * spans + j) * a->group + g]);
        memset(z_h, 0, sizeof(float) * (size_t)d);
        for (int j = 0; j < spans; j++) {
            size_t at = ((size_t)kv * spans + j) * a->group + g;  /* head h's partials in span j */
            float w = exp1(a->top[at] - M);
            total += w * a->sum[at];
            const float *z_j = a->z_part + at * d;
            for (int i = 0; i < d; i += 8) {
                __m256 sum_i = _mm256_fmadd_ps(_mm256_set1_ps(w), _mm256_loadu_ps(z_j + i), _mm256_loadu_ps(z_h + i));
                _mm256_storeu_ps(z_h + i, sum_i);
            }
        }
        __m256 inv = _mm256_set1_ps(1.0f / total);
        for (int i = 0; i < d; i += 8) _mm256_storeu_ps(z_h + i, _mm256_mul_ps(_mm256_loadu_ps(z_h + i), inv));
    }
}

/* The attention of the one query over positions 0..n-1, every head: a->q (H, d_head) → z (H, d_head), its
   pieces shared among `threads` threads (the caller holds pool.busy; 1: this thread alone). Query head h
   reads key/value head h / (H / H_kv). With int8 the sums run on the codes:
       scores = (q·codes_K)/√d_head · K_scale,  pattern = softmax(scores) · V_scale,  z = pattern·codes_V. */
static void attention(Attention *a, int isa, int threads, float *z) {
    int spans = spans_of(a->n);
    a->group = a->n_heads / a->n_kv_heads;
    a->wide = isa == 0 && a->d_head % 16 == 0;  /* AVX-512 (the avx512-vnni version's CPUs have it) */
    a->z_part = a->part;
    a->top = a->z_part + (size_t)a->n_heads * spans * a->d_head;
    a->sum = a->top + (size_t)a->n_heads * spans;
    share(attention_piece, a, a->n_kv_heads * spans, threads);
    merge(a, z);
}

/* attention alone, for the tests and benchmarks/attention.py: q (n_heads, d_head), K, V (n_kv_heads, capacity,
   d_head) of `type` (0 float32, 1 float16, 2 int8 with K_scale, V_scale (n_kv_heads, capacity)) → z (n_heads,
   d_head) over positions 0..pos, shared among `threads` threads. scores: n_heads·capacity floats; part:
   attention_part_floats(n_heads, d_head, capacity). Returns 0, or -1 for sizes it does not take.
   The workers are not parked after it: they spin on for a while, so calls one after another (a benchmark's
   30 layers) find them awake, as the layers of a step do. */
int step_attention(int n_heads, int n_kv_heads, int d_head, const float *q, const void *K, const void *V,
                   const float *K_scale, const float *V_scale, int type, int capacity, int pos, int isa,
                   float *scores, float *part, float *z, int threads) {
    if (n_kv_heads < 1 || n_heads % n_kv_heads || d_head < 8 || d_head % 8 || d_head > MAX_D_HEAD || pos < 0 ||
        pos >= capacity || (isa != 0 && isa != 1) || type < F32 || type > I8 || (type == I8 && !(K_scale && V_scale)))
        return -1;
    Attention a = {.q = q, .K = K, .V = V, .K_scale = K_scale, .V_scale = V_scale, .type = type, .capacity = capacity,
                   .n = pos + 1, .n_heads = n_heads, .n_kv_heads = n_kv_heads, .d_head = d_head, .stride = capacity,
                   .scores = scores, .part = part};
    pthread_mutex_lock(&pool.busy);
    attention(&a, isa, start_workers(threads < 1 ? 1 : threads), z);
    pthread_mutex_unlock(&pool.busy);
    return 0;
}
