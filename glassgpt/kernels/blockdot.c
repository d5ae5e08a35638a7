/* y = x·W for W stored as GGUF-style blocks: the one hand-written kernel of glassgpt (see quant.py).

   W (d_in, d_out) is held as unsigned codes c in blocks of 32 inputs, with a scale d and an offset m
   per block and output: w = d·c + m (GGUF's Q4_1 exactly; Q8_0 as c = q + 128, m = -128·d).

   Decoding multiplies one activation row by every weight once, so the speed limit is reading the
   codes. Multiplying them in float32 costs more instructions than the memory takes to deliver them
   (benchmarks/matvec.py: about 4 GB/s on one core), so the dot products run on 8-bit integers
   (AVX-512 VNNI: 64 multiply-adds per instruction):

     x ≈ Σ_t dx_t·xq_t    each block of 32 activations in `terms` int8 passes: the second pass
                          quantises what the first left over, so two passes are within
                          |x|max / 127² of x (one pass: llama.cpp's Q8 activations)
     y_j = Σ_g d_jg · Σ_t dx_tg · Σ_i c_jgi·xq_tgi  +  m_jg · Σ_i x_gi
                          integer sums are exact; the offset term uses the exact float sum of x.

   Layout (quant.py packs it): outputs in tiles of 16, one AVX-512 lane per output row.
     codes  (d_out/16, d_in/32, 512 bytes) for 8-bit: [quad k/4][row 16][4 codes k..k+3]
            (d_out/16, d_in/32, 256 bytes) for 4-bit: [octet k/8][row 16][4 bytes], byte i holding
            code k+i in its low nibble and code k+4+i in its high nibble
     dm     (d_out/16, d_in/32, 2, 16) float16: the 16 rows' d, then their m

   Build: cc -O3 -mavx512f -mavx512bw -mavx512vnni -mf16c -mfma -shared -fPIC (quant.py does it once). */

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define BLOCK 32
#define MAX_TERMS 2

/* One row of activations → `terms` int8 passes per block, their scales, and each block's exact sum. */
static void quantize_row(const float *x, int d_in, int terms, int8_t *xq, float *dx, float *xsum) {
    int G = d_in / BLOCK;
    for (int g = 0; g < G; g++) {
        float r[BLOCK], s = 0.0f;
        for (int i = 0; i < BLOCK; i++) {
            r[i] = x[g * BLOCK + i];
            s += r[i];
        }
        xsum[g] = s;
        for (int t = 0; t < terms; t++) {
            float amax = 0.0f;
            for (int i = 0; i < BLOCK; i++) amax = fmaxf(amax, fabsf(r[i]));
            float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int8_t *q = xq + ((size_t)t * G + g) * BLOCK;
            for (int i = 0; i < BLOCK; i++) {
                float v = nearbyintf(r[i] * inv);
                v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
                q[i] = (int8_t)v;
                r[i] -= d * v;  /* what this pass missed: the next pass quantises it */
            }
            dx[t * G + g] = d;
        }
    }
}

/* The integer dot products of one block for 16 rows: lane j = Σ_i c_ji·xq_i (exact). */
static inline __m512i block_dot8(const uint8_t *codes, const int8_t *xq) {
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    for (int quad = 0; quad < 8; quad += 2) {
        __m512i w0 = _mm512_loadu_si512(codes + quad * 64), w1 = _mm512_loadu_si512(codes + quad * 64 + 64);
        a0 = _mm512_dpbusd_epi32(a0, w0, _mm512_set1_epi32(*(const int32_t *)(xq + quad * 4)));
        a1 = _mm512_dpbusd_epi32(a1, w1, _mm512_set1_epi32(*(const int32_t *)(xq + quad * 4 + 4)));
    }
    return _mm512_add_epi32(a0, a1);
}

static inline __m512i block_dot4(const uint8_t *codes, const int8_t *xq) {
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

/* x (n, d_in) float32 → y (n, d_out) float32. Each tile of weights is read once for all n rows.
   Returns 0, or -1 for sizes it does not take or no memory. */
int blockdot(const uint8_t *codes, const uint16_t *dm, const float *x, float *y,
             int n, int d_in, int d_out, int bits, int terms) {
    if (n < 1 || d_in % BLOCK || d_out % 16 || (bits != 4 && bits != 8) || terms < 1 || terms > MAX_TERMS)
        return -1;
    int G = d_in / BLOCK, tile_bytes = bits * 64;  /* 16 rows × 32 codes × bits / 8 */
    int8_t *xq = malloc((size_t)n * terms * d_in);
    float *dx = malloc(sizeof(float) * (size_t)n * (terms + 1) * G), *xsum = dx + (size_t)n * terms * G;
    if (!xq || !dx) {
        free(xq);
        free(dx);
        return -1;
    }
    for (int r = 0; r < n; r++)
        quantize_row(x + (size_t)r * d_in, d_in, terms, xq + (size_t)r * terms * d_in, dx + (size_t)r * terms * G,
                     xsum + (size_t)r * G);
    for (int tile = 0; tile < d_out / 16; tile++) {
        for (int r = 0; r < n; r++) {
            const uint8_t *c = codes + (size_t)tile * G * tile_bytes;
            const uint16_t *s = dm + (size_t)tile * G * 32;
            const int8_t *xq_r = xq + (size_t)r * terms * d_in;
            const float *dx_r = dx + (size_t)r * terms * G, *xsum_r = xsum + (size_t)r * G;
            __m512 acc = _mm512_setzero_ps();
            for (int g = 0; g < G; g++, c += tile_bytes, s += 32) {
                __m512 dot = _mm512_setzero_ps();  /* Σ_t dx_t · (integer dot of pass t) */
                for (int t = 0; t < terms; t++) {
                    const int8_t *q = xq_r + ((size_t)t * G + g) * BLOCK;
                    __m512i ip = bits == 4 ? block_dot4(c, q) : block_dot8(c, q);
                    dot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ip), _mm512_set1_ps(dx_r[t * G + g]), dot);
                }
                __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)s));
                __m512 m = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + 16)));
                acc = _mm512_fmadd_ps(dot, d, acc);
                acc = _mm512_fmadd_ps(m, _mm512_set1_ps(xsum_r[g]), acc);
            }
            _mm512_storeu_ps(y + (size_t)r * d_out + tile * 16, acc);
        }
    }
    free(xq);
    free(dx);
    return 0;
}
