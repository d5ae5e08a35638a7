/* y = x·W for W stored as GGUF-style blocks: the one hand-written kernel of glassgpt (see quant.py).

   W (d_in, d_out) is held as unsigned codes c in blocks of 32 inputs, with a scale d and an offset m
   per block and output: w = d·c + m (GGUF's Q4_1 exactly; Q8_0 as c = q + 128, m = -128·d).

   Decoding multiplies one activation row by every weight once, so the speed limit is reading the
   codes. Multiplying them in float32 costs more instructions than memory takes to deliver them
   (benchmarks/matvec.py: about 4 GB/s on one core), so the dot products run on 8-bit integers:

     x ≈ x̂ = Σ_t dx_t·xq_t   each block of 32 activations in `terms` int8 passes: the second pass
                              rounds what the first left over, so two passes are within
                              max|x| / 64516 of x (one pass, max|x| / 254: llama.cpp's Q8 activations)
     y_j = Σ_g d_jg · Σ_t dx_tg · Σ_i c_jgi·xq_tgi  +  m_jg · s_g
                              integer sums are exact. s_g = Σ_i x_gi exactly for 4-bit codes; for 8-bit
                              ones s_g = Σ_i x̂_gi, so that d·c + m = d·q multiplies x̂ alone (m = -128·d
                              times the exact sum would add 128·d·Σ(x̂ - x)).

   Two versions, chosen at load time from the CPU's flags (kernels/__init__.py):
     avx512_vnni  one lane per output row: 64 multiply-adds per instruction (vpdpbusd)
     avx2         two halves of 8 rows; u8×s8 pairs (vpmaddubsw) then pairs summed (vpmaddwd); 8-bit
                  codes go through their signed q = c - 128 (|q| times x with q's sign, so no pair
                  overflows 16 bits) and get 128·Σxq back as an integer

   A prompt's rows go through each tile a few at a time (tile_rows_*: ROWS512 or ROWS2 rows, the rest one
   by one): a block's codes are unpacked once for those rows; each row's integer sums are the one-row
   kernel's (exact in any order) and its floats are added in the same order, so y is bitwise the same
   however many rows came together (tests/test_quant.py).

   Layout (quant.py packs it): outputs in tiles of 16.
     codes  (d_out/16, d_in/32, 512 bytes) for 8-bit: [quad k/4][row 16][4 codes k..k+3]
            (d_out/16, d_in/32, 256 bytes) for 4-bit: [octet k/8][row 16][4 bytes], byte i holding
            code k+i in its low nibble and code k+4+i in its high nibble
     dm     (d_out/16, d_in/32, 2, 16) float16: the 16 rows' d, then their m

   Build: cc -O3 -ffp-contract=off -shared -fPIC (kernels/__init__.py does it once). */

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK 32
#define MAX_TERMS 2
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vnni,f16c,fma")))
#define AVX2 __attribute__((target("avx2,f16c,fma")))

/* One row of activations → `terms` int8 passes per block, their scales, each pass's integer sum, and
   the block's sum s (exact, or of x̂ when exact_sum is 0). Eight floats at a time (AVX2, which both
   versions have); the arithmetic is glassgpt.quant.quantized_activations' step for step. */
AVX2 static float hsum(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

AVX2 static float hmax(__m256 v) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

AVX2 static void quantize_row(const float *x, int d_in, int terms, int exact_sum, int8_t *xq, float *dx,
                              int32_t *qsum, float *s) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    int G = d_in / BLOCK;
    for (int g = 0; g < G; g++) {
        __m256 r[4];
        for (int k = 0; k < 4; k++) r[k] = _mm256_loadu_ps(x + g * BLOCK + k * 8);
        float total = hsum(_mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3]))), approx = 0.0f;
        for (int t = 0; t < terms; t++) {
            __m256 big = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(r[0], magnitude), _mm256_and_ps(r[1], magnitude)),
                                       _mm256_max_ps(_mm256_and_ps(r[2], magnitude), _mm256_and_ps(r[3], magnitude)));
            float amax = hmax(big), d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            __m256i codes[4];  /* codes k·8 .. k·8+7, int32 */
            for (int k = 0; k < 4; k++) {
                __m256 v = _mm256_round_ps(_mm256_mul_ps(r[k], _mm256_set1_ps(inv)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
                codes[k] = _mm256_cvtps_epi32(v);
                r[k] = _mm256_sub_ps(r[k], _mm256_mul_ps(_mm256_set1_ps(d), v));  /* what this pass missed */
            }
            /* int32 → int8 (|code| ≤ 127: the saturating packs keep every value); packing works within
               128-bit lanes, so the 4-code groups come out as 0 2 4 6 1 3 5 7 and are put back in order */
            __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(codes[0], codes[1]), _mm256_packs_epi32(codes[2], codes[3]));
            bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(xq + ((size_t)t * G + g) * BLOCK), bytes);
            __m256i total8 = _mm256_add_epi32(_mm256_add_epi32(codes[0], codes[1]), _mm256_add_epi32(codes[2], codes[3]));
            __m128i sum4 = _mm_add_epi32(_mm256_castsi256_si128(total8), _mm256_extracti128_si256(total8, 1));
            sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0x4E));
            int32_t sum = _mm_cvtsi128_si32(_mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0xB1)));
            dx[t * G + g] = d;
            qsum[t * G + g] = sum;
            approx += d * (float)sum;
        }
        s[g] = exact_sum ? total : approx;
    }
}

/* ----------------------------------------------------------------------------- AVX-512 VNNI */

/* The integer dot products of one block for 16 rows: lane j = Σ_i c_ji·xq_i (exact). */
AVX512 static inline __m512i dot16_8bit(const uint8_t *codes, const int8_t *xq) {
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    for (int quad = 0; quad < 8; quad += 2) {
        __m512i w0 = _mm512_loadu_si512(codes + quad * 64), w1 = _mm512_loadu_si512(codes + quad * 64 + 64);
        a0 = _mm512_dpbusd_epi32(a0, w0, _mm512_set1_epi32(*(const int32_t *)(xq + quad * 4)));
        a1 = _mm512_dpbusd_epi32(a1, w1, _mm512_set1_epi32(*(const int32_t *)(xq + quad * 4 + 4)));
    }
    return _mm512_add_epi32(a0, a1);
}

AVX512 static inline __m512i dot16_4bit(const uint8_t *codes, const int8_t *xq) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    for (int octet = 0; octet < 4; octet++) {
        __m512i p = _mm512_loadu_si512(codes + octet * 64);
        __m512i lo = _mm512_and_si512(p, low), hi = _mm512_and_si512(_mm512_srli_epi16(p, 4), low);
        a0 = _mm512_dpbusd_epi32(a0, lo, _mm512_set1_epi32(*(const int32_t *)(xq + octet * 8)));
        a1 = _mm512_dpbusd_epi32(a1, hi, _mm512_set1_epi32(*(const int32_t *)(xq + octet * 8 + 4)));
    }
    return _mm512_add_epi32(a0, a1);
}

AVX512 static void tile_avx512(const uint8_t *c, const uint16_t *dm, const int8_t *xq, const float *dx,
                               const float *s, int G, int bits, int terms, float *y) {
    __m512 acc = _mm512_setzero_ps();
    for (int g = 0; g < G; g++, c += bits * 64, dm += 32) {
        __m512 dot = _mm512_setzero_ps();  /* Σ_t dx_t · (integer dot of pass t) */
        for (int t = 0; t < terms; t++) {
            const int8_t *q = xq + ((size_t)t * G + g) * BLOCK;
            __m512i ip = bits == 4 ? dot16_4bit(c, q) : dot16_8bit(c, q);
            dot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ip), _mm512_set1_ps(dx[t * G + g]), dot);
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dm));
        __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dm + 16)));
        acc = _mm512_fmadd_ps(dot, d, acc);
        acc = _mm512_fmadd_ps(m, _mm512_set1_ps(s[g]), acc);
    }
    _mm512_storeu_ps(y, acc);
}

/* A prompt's ROWS512 rows at once: each block's codes are loaded and split into nibbles once, its d and m
   converted once, and multiplied with every row. Row r's sums are tile_avx512's, step for step (the
   integer dot is exact in any order; the floats meet in the same order), so y is bitwise the same. */
#define ROWS512 4  /* SmolLM2's layer products for 256 rows on an AMD EPYC core: 2, 4, 8 rows 1.2x, 1.4x, 1.2x faster */

/* The block's codes for 16 rows as 8 groups of 4 codes per lane: group k multiplies xq[4k..4k+3]. */
AVX512 static inline void unpack16(const uint8_t *codes, int bits, __m512i w[8]) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 8; k++) {
        if (bits == 8) {
            w[k] = _mm512_loadu_si512(codes + k * 64);  /* quad k: codes 4k..4k+3 */
        } else {
            __m512i p = _mm512_loadu_si512(codes + (k / 2) * 64);  /* octet k/2: codes 4k.. in the low or high nibble */
            w[k] = _mm512_and_si512(k % 2 ? _mm512_srli_epi16(p, 4) : p, low);
        }
    }
}

/* tile_avx512 for rows r = 0..ROWS512-1 of xq, dx, s and y, one row's length apart (xq: terms·G·32 bytes,
   dx: terms·G, s: G; y: y_stride floats). The rows' integer dots interleave: ROWS512 independent chains. */
AVX512 static void tile_rows_avx512(const uint8_t *c, const uint16_t *dm, const int8_t *xq, const float *dx,
                                    const float *s, int G, int bits, int terms, float *y, size_t y_stride) {
    size_t xq_stride = (size_t)terms * G * BLOCK, dx_stride = (size_t)terms * G;
    __m512 acc[ROWS512];
    for (int r = 0; r < ROWS512; r++) acc[r] = _mm512_setzero_ps();
    for (int g = 0; g < G; g++, c += bits * 64, dm += 32) {
        __m512i w[8];
        unpack16(c, bits, w);
        __m512 dot[ROWS512];  /* Σ_t dx_t · (integer dot of pass t), per row */
        for (int r = 0; r < ROWS512; r++) dot[r] = _mm512_setzero_ps();
        for (int t = 0; t < terms; t++) {
            const int8_t *q = xq + ((size_t)t * G + g) * BLOCK;
            __m512i ip[ROWS512];
            for (int r = 0; r < ROWS512; r++) ip[r] = _mm512_setzero_si512();
            for (int k = 0; k < 8; k++)
                for (int r = 0; r < ROWS512; r++)
                    ip[r] = _mm512_dpbusd_epi32(ip[r], w[k], _mm512_set1_epi32(*(const int32_t *)(q + r * xq_stride + k * 4)));
            for (int r = 0; r < ROWS512; r++)
                dot[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ip[r]), _mm512_set1_ps(dx[r * dx_stride + t * G + g]), dot[r]);
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dm));
        __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dm + 16)));
        for (int r = 0; r < ROWS512; r++) {
            acc[r] = _mm512_fmadd_ps(dot[r], d, acc[r]);
            acc[r] = _mm512_fmadd_ps(m, _mm512_set1_ps(s[(size_t)r * G + g]), acc[r]);
        }
    }
    for (int r = 0; r < ROWS512; r++) _mm512_storeu_ps(y + r * y_stride, acc[r]);
}

/* ----------------------------------------------------------------------------- AVX2 */

/* The same for 8 rows (half h of the tile): lane j = Σ_i c_ji·xq_i. */
AVX2 static inline __m256i dot8_8bit(const uint8_t *codes, const int8_t *xq, int32_t qsum) {
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    __m256i acc = _mm256_setzero_si256();
    for (int quad = 0; quad < 8; quad++) {
        __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(codes + quad * 64)), flip);  /* c-128 */
        __m256i x = _mm256_set1_epi32(*(const int32_t *)(xq + quad * 4));
        __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(x, q));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
    }
    return _mm256_add_epi32(acc, _mm256_set1_epi32(128 * qsum));  /* Σ c·x = Σ q·x + 128·Σ x */
}

AVX2 static inline __m256i dot8_4bit(const uint8_t *codes, const int8_t *xq) {
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F);
    __m256i acc = _mm256_setzero_si256();
    for (int octet = 0; octet < 4; octet++) {
        __m256i p = _mm256_loadu_si256((const __m256i *)(codes + octet * 64));
        __m256i lo = _mm256_and_si256(p, low), hi = _mm256_and_si256(_mm256_srli_epi16(p, 4), low);
        __m256i pairs = _mm256_add_epi16(  /* at most 4·15·127 per lane pair: no overflow */
            _mm256_maddubs_epi16(lo, _mm256_set1_epi32(*(const int32_t *)(xq + octet * 8))),
            _mm256_maddubs_epi16(hi, _mm256_set1_epi32(*(const int32_t *)(xq + octet * 8 + 4))));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
    }
    return acc;
}

AVX2 static void tile_avx2(const uint8_t *c, const uint16_t *dm, const int8_t *xq, const float *dx,
                           const int32_t *qsum, const float *s, int G, int bits, int terms, float *y) {
    for (int h = 0; h < 2; h++) {  /* rows 0-7, then 8-15: each 64-byte group of the layout is two halves */
        const uint8_t *ch = c + h * 32;
        const uint16_t *sh = dm + h * 8;
        __m256 acc = _mm256_setzero_ps();
        for (int g = 0; g < G; g++, ch += bits * 64, sh += 32) {
            __m256 dot = _mm256_setzero_ps();
            for (int t = 0; t < terms; t++) {
                const int8_t *q = xq + ((size_t)t * G + g) * BLOCK;
                __m256i ip = bits == 4 ? dot8_4bit(ch, q) : dot8_8bit(ch, q, qsum[t * G + g]);
                dot = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ip), _mm256_set1_ps(dx[t * G + g]), dot);
            }
            __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sh));
            __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sh + 16)));
            acc = _mm256_fmadd_ps(dot, d, acc);
            acc = _mm256_fmadd_ps(m, _mm256_set1_ps(s[g]), acc);
        }
        _mm256_storeu_ps(y + h * 8, acc);
    }
}

/* A prompt's ROWS2 rows at once, as tile_rows_avx512: half h's codes unpacked once per block (4-bit: the
   nibbles; 8-bit: |q| and q, whose sign goes onto x) for every row, in tile_avx2's order (bitwise equal). */
#define ROWS2 4

AVX2 static void tile_rows_avx2(const uint8_t *c, const uint16_t *dm, const int8_t *xq, const float *dx,
                                const int32_t *qsum, const float *s, int G, int bits, int terms, float *y,
                                size_t y_stride) {
    const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F), flip = _mm256_set1_epi8((char)0x80);
    size_t xq_stride = (size_t)terms * G * BLOCK, dx_stride = (size_t)terms * G;
    for (int h = 0; h < 2; h++) {
        const uint8_t *ch = c + h * 32;
        const uint16_t *sh = dm + h * 8;
        __m256 acc[ROWS2];
        for (int r = 0; r < ROWS2; r++) acc[r] = _mm256_setzero_ps();
        for (int g = 0; g < G; g++, ch += bits * 64, sh += 32) {
            __m256i w[8], q[8];  /* 4-bit: w[k] codes 4k..4k+3 (k even: low nibbles); 8-bit: w = |q|, q = c - 128 */
            for (int k = 0; k < 8; k++) {
                if (bits == 8) {
                    q[k] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(ch + k * 64)), flip);
                    w[k] = _mm256_abs_epi8(q[k]);
                } else {
                    __m256i p = _mm256_loadu_si256((const __m256i *)(ch + (k / 2) * 64));
                    w[k] = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(p, 4) : p, low);
                    q[k] = _mm256_setzero_si256();  /* (unused: 4-bit codes are never negative) */
                }
            }
            __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sh));
            __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sh + 16)));
            for (int r = 0; r < ROWS2; r++) {
                __m256 dot = _mm256_setzero_ps();
                for (int t = 0; t < terms; t++) {
                    const int8_t *x = xq + r * xq_stride + ((size_t)t * G + g) * BLOCK;
                    __m256i ip;  /* dot8_4bit's / dot8_8bit's sums */
                    if (bits == 4) {  /* all 16 pairs in 16 bits first: at most 16·15·127 = 30480, no overflow */
                        __m256i pairs = _mm256_setzero_si256();
                        for (int k = 0; k < 8; k++)
                            pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(w[k], _mm256_set1_epi32(*(const int32_t *)(x + k * 4))));
                        ip = _mm256_madd_epi16(pairs, ones);
                    } else {
                        ip = _mm256_set1_epi32(128 * qsum[r * dx_stride + t * G + g]);  /* Σ c·x = 128·Σ x + Σ q·x */
                        for (int k = 0; k < 8; k++) {
                            __m256i xk = _mm256_set1_epi32(*(const int32_t *)(x + k * 4));
                            ip = _mm256_add_epi32(ip, _mm256_madd_epi16(_mm256_maddubs_epi16(w[k], _mm256_sign_epi8(xk, q[k])), ones));
                        }
                    }
                    dot = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ip), _mm256_set1_ps(dx[r * dx_stride + t * G + g]), dot);
                }
                acc[r] = _mm256_fmadd_ps(dot, d, acc[r]);
                acc[r] = _mm256_fmadd_ps(m, _mm256_set1_ps(s[(size_t)r * G + g]), acc[r]);
            }
        }
        for (int r = 0; r < ROWS2; r++) _mm256_storeu_ps(y + r * y_stride + h * 8, acc[r]);
    }
}

/* ----------------------------------------------------------------------------- the entry point */

/* x (n, d_in) float32 → y (n, d_out) float32. isa: 0 avx512_vnni, 1 avx2 (the caller checked the CPU).
   Each tile of weights is read once for all n rows. Returns 0, or -1 for sizes it does not take or
   no memory. */
int blockdot(const uint8_t *codes, const uint16_t *dm, const float *x, float *y,
             int n, int d_in, int d_out, int bits, int terms, int isa) {
    if (n < 1 || d_in % BLOCK || d_out % 16 || (bits != 4 && bits != 8) || terms < 1 || terms > MAX_TERMS)
        return -1;
    int G = d_in / BLOCK;
    size_t per_row = (size_t)terms * G;
    int8_t *xq = malloc((size_t)n * terms * d_in);
    float *dx = malloc(sizeof(float) * (size_t)n * (per_row + G)), *s = dx + (size_t)n * per_row;
    int32_t *qsum = malloc(sizeof(int32_t) * (size_t)n * per_row);
    if (!xq || !dx || !qsum) {
        free(xq);
        free(dx);
        free(qsum);
        return -1;
    }
    for (int r = 0; r < n; r++)
        quantize_row(x + (size_t)r * d_in, d_in, terms, bits == 4, xq + (size_t)r * terms * d_in,
                     dx + r * per_row, qsum + r * per_row, s + (size_t)r * G);
    for (int tile = 0; tile < d_out / 16; tile++) {
        const uint8_t *c = codes + (size_t)tile * G * bits * 64;
        const uint16_t *t_dm = dm + (size_t)tile * G * 32;
        int r = 0, rows = isa == 0 ? ROWS512 : ROWS2;
        for (; r + rows <= n; r += rows) {  /* a prompt: several rows per unpacking of the tile */
            float *y_r = y + (size_t)r * d_out + tile * 16;
            if (isa == 0)
                tile_rows_avx512(c, t_dm, xq + (size_t)r * terms * d_in, dx + r * per_row, s + (size_t)r * G, G,
                                 bits, terms, y_r, d_out);
            else
                tile_rows_avx2(c, t_dm, xq + (size_t)r * terms * d_in, dx + r * per_row, qsum + r * per_row,
                               s + (size_t)r * G, G, bits, terms, y_r, d_out);
        }
        for (; r < n; r++) {  /* one token, or what is left */
            const int8_t *xq_r = xq + (size_t)r * terms * d_in;
            float *y_r = y + (size_t)r * d_out + tile * 16;
            if (isa == 0)
                tile_avx512(c, t_dm, xq_r, dx + r * per_row, s + (size_t)r * G, G, bits, terms, y_r);
            else
                tile_avx2(c, t_dm, xq_r, dx + r * per_row, qsum + r * per_row, s + (size_t)r * G, G, bits, terms, y_r);
        }
    }
    free(xq);
    free(dx);
    free(qsum);
    return 0;
}
