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

   Threads: each product's tiles of 16 outputs, and each layer's attention in pieces (key/value head × span
   of positions, attention.c), are shared among `threads` threads (pool.c: workers that stay alive and spin
   between sections, so handing out work costs about a microsecond). The logits are the same bits for any
   number of threads.

   Build: with blockdot.c, pool.c and attention.c, into one library (kernels/__init__.py). */

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
    float *x, *h, *q, *k, *v, *z, *out, *gate, *up, *scores, *part;
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

#include "attention.c"  /* the KV cache and attention: q, K, V → z, shared in pieces among threads */

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
    Attention a = {.q = w->q, .K = K, .V = V, .K_scale = K_scale, .V_scale = V_scale, .type = c->type,
                   .capacity = c->capacity, .n = pos + 1, .n_heads = m->n_heads, .n_kv_heads = m->n_kv_heads,
                   .d_head = d, .stride = m->n_ctx, .scores = w->scores, .part = w->part};
    attention(&a, isa, threads, w->z);  /* (H·d_head,) */
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
    size_t sizes[] = {D, D, HD, KD, KD, HD, D, F, F, (size_t)m->n_heads * m->n_ctx,
                      attention_part_floats(m->n_heads, m->d_head, m->n_ctx)};
    float **where[] = {&w->x, &w->h, &w->q, &w->k, &w->v, &w->z, &w->out, &w->gate, &w->up, &w->scores, &w->part};
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
    if (m->n_layers < 1 || m->n_kv_heads < 1 || m->n_heads % m->n_kv_heads || m->d_head % 8 ||
        m->d_head > MAX_D_HEAD || D % BLOCK ||
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
   share each product and each layer's attention (1: this thread alone).
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
