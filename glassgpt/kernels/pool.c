/* Worker threads that stay alive between calls, for the products of a decode step (step.c includes this).

   A step of SmolLM2 has about 120 sections of work worth sharing (W_Q/W_K/W_V, W_O, W_gate/W_up, W_down per
   layer, the unembedding), each some 20-50 µs on one core, so handing one out must cost about a microsecond,
   not the tens of a condition variable's round trip. So:

     share(work, job, pieces)  the caller posts a section of `pieces` independent pieces of work; it and the
                               workers (spinning on `claim`) each take the next unclaimed piece until none
                               is left, and the caller returns once every piece is finished
     between sections          workers spin (pause) for up to SPINS checks, then sleep on a condition
                               variable
     park()                    the step's last section is done: workers sleep at once instead of spinning
                               (the first section of the next multi-thread step wakes them: one condition
                               variable round trip a step), so between steps, between generations and
                               during 1-thread steps they cost no CPU

   Spinning threads call sched_yield() every YIELD_EVERY checks. On a machine whose other cores are busy the
   system puts a worker on the caller's core, and a worker that only pauses takes the caller's time slices:
   two threads made an int4 step of SmolLM2 1.4-2.1x slower than one there (the worker did 5-17 % of the
   pieces); yielding, the two threads take turns on that core and the step costs what one thread's does.
   Pieces are claimed, not dealt: a worker the system has not scheduled (a machine busier than its cores)
   leaves its share to the others instead of stalling the step; the caller waits only for pieces in hand.
   `claim` holds the section's number (bits 40-63), its number of pieces (20-39) and the next piece (0-19) in
   one word, so a worker that wakes late can only claim a piece of the section still running, whose job is
   then alive and whose fields it read (they are written before the section's number, and rewritten only
   once every piece is claimed).
   One section at a time: the caller holds `pool.busy` for its whole step. After fork() the child has no
   workers: pthread_atfork starts it from scratch. */

#include <pthread.h>
#include <sched.h>
#include <string.h>

#define MAX_THREADS 16
#define SPINS 200000 /* about a millisecond of pause instructions */
#define YIELD_EVERY 64 /* checks between sched_yield()s while spinning (why: below) */

typedef void (*Work)(const void *job, int piece);

static struct {
    Work work;
    const void *job;
    _Alignas(64) uint64_t claim;      /* section << 40 | pieces << 20 | next piece */
    _Alignas(64) uint32_t finished;   /* pieces of the current section done (a cache line of its own) */
    _Alignas(64) int workers;         /* worker threads started (this and the rest off those two lines) */
    int sleeping;            /* workers waiting on `wake` */
    int parked;              /* 1: no section is coming soon, sleep now (park()); 0 while a step shares */
    int64_t naps;            /* times a worker went to sleep (pool_state: the tests) */
    uint64_t asleep_on[MAX_THREADS];  /* worker i asleep since this section (+1; 0: awake), under `lock` */
    int64_t worker_pieces;   /* pieces the workers (not callers) did */
    pthread_mutex_t lock, busy;
    pthread_cond_t wake;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

#define SECTION(c) ((c) >> 40)
#define PIECES(c) (((c) >> 20) & 0xFFFFF)
#define NEXT(c) ((c) & 0xFFFFF)

/* Take pieces of `section` and do them until none is left (or the section is over). */
static void take_pieces(uint64_t section, Work work, const void *job, int worker) {
    uint64_t c = __atomic_load_n(&pool.claim, __ATOMIC_SEQ_CST);
    while (SECTION(c) == section && NEXT(c) < PIECES(c)) {
        if (!__atomic_compare_exchange_n(&pool.claim, &c, c + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            continue;  /* (c now holds the current value) */
        work(job, (int)NEXT(c));
        if (worker) __atomic_add_fetch(&pool.worker_pieces, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&pool.finished, 1, __ATOMIC_SEQ_CST);
        c = __atomic_load_n(&pool.claim, __ATOMIC_SEQ_CST);
    }
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    uint64_t seen = SECTION(__atomic_load_n(&pool.claim, __ATOMIC_SEQ_CST));
    for (;;) {
        uint64_t section;
        for (int spins = 0; (section = SECTION(__atomic_load_n(&pool.claim, __ATOMIC_SEQ_CST))) == seen; spins++) {
            if (spins < SPINS && !__atomic_load_n(&pool.parked, __ATOMIC_RELAXED)) {
                if (spins % YIELD_EVERY == YIELD_EVERY - 1) sched_yield();  /* a caller on this core runs */
                else _mm_pause();
                continue;
            }
            pthread_mutex_lock(&pool.lock);  /* nothing for a while, or parked: sleep until the next section */
            __atomic_add_fetch(&pool.sleeping, 1, __ATOMIC_SEQ_CST);
            __atomic_add_fetch(&pool.naps, 1, __ATOMIC_RELAXED);
            pool.asleep_on[me] = seen + 1;
            while (SECTION(__atomic_load_n(&pool.claim, __ATOMIC_SEQ_CST)) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pool.asleep_on[me] = 0;
            __atomic_sub_fetch(&pool.sleeping, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&pool.lock);
            spins = 0;
        }
        seen = section;
        /* the job may belong to a later section by now: then every claim below fails */
        Work work = __atomic_load_n(&pool.work, __ATOMIC_SEQ_CST);
        const void *job = __atomic_load_n(&pool.job, __ATOMIC_SEQ_CST);
        take_pieces(section, work, job, 1);
    }
    return NULL;
}

static void forget_workers(void) {  /* in a forked child: the threads did not come along */
    pool.workers = pool.sleeping = pool.parked = 0;
    memset(pool.asleep_on, 0, sizeof pool.asleep_on);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_mutex_init(&pool.busy, NULL);
    pthread_cond_init(&pool.wake, NULL);
}

/* Start workers up to n - 1 (called with pool.busy held). Returns the threads this step may use, caller
   included: at most n (workers started for an earlier, wider step sit out a narrower one, asleep). */
static int start_workers(int n) {
    static int registered = 0;
    if (!registered) {
        pthread_atfork(NULL, NULL, forget_workers);
        registered = 1;
    }
    if (n > MAX_THREADS) n = MAX_THREADS;
    while (pool.workers < n - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, worker, (void *)(intptr_t)pool.workers);
        pthread_attr_destroy(&attr);
        if (failed) break;
        pool.workers++;
    }
    return n < pool.workers + 1 ? n : pool.workers + 1;
}

/* work(job, p) for every piece p < pieces, shared with the workers when `threads` > 1 (the caller holds
   pool.busy and has called start_workers). */
static void share(Work work, const void *job, int pieces, int threads) {
    if (threads <= 1 || pool.workers == 0 || pieces < 2 || pieces > 0xFFFFF) {
        for (int p = 0; p < pieces; p++) work(job, p);
        return;
    }
    __atomic_store_n(&pool.parked, 0, __ATOMIC_SEQ_CST);
    uint64_t section = SECTION(__atomic_load_n(&pool.claim, __ATOMIC_SEQ_CST)) + 1;
    __atomic_store_n(&pool.work, work, __ATOMIC_SEQ_CST);
    __atomic_store_n(&pool.job, job, __ATOMIC_SEQ_CST);
    __atomic_store_n(&pool.finished, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&pool.claim, section << 40 | (uint64_t)pieces << 20, __ATOMIC_SEQ_CST);  /* go */
    if (__atomic_load_n(&pool.sleeping, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    take_pieces(section, work, job, 0);
    for (int spins = 1; __atomic_load_n(&pool.finished, __ATOMIC_SEQ_CST) < (uint32_t)pieces; spins++) {
        if (spins % YIELD_EVERY == 0) sched_yield();  /* a worker holding a piece on this core runs */
        else _mm_pause();
    }
}

/* The step is over: spinning workers go to sleep now (called with pool.busy held). */
static void park(void) { __atomic_store_n(&pool.parked, 1, __ATOMIC_SEQ_CST); }

/* For the tests: out = {workers started, workers asleep with no section missed (a woken worker the system
   has not run yet is not counted), naps so far, pieces done by workers}. */
void pool_state(int64_t out[4]) {
    pthread_mutex_lock(&pool.lock);
    uint64_t now = SECTION(__atomic_load_n(&pool.claim, __ATOMIC_SEQ_CST));
    out[0] = pool.workers;
    out[1] = 0;
    for (int i = 0; i < pool.workers; i++) out[1] += pool.asleep_on[i] == now + 1;
    out[2] = __atomic_load_n(&pool.naps, __ATOMIC_SEQ_CST);
    out[3] = __atomic_load_n(&pool.worker_pieces, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&pool.lock);
}
