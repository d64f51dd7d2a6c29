/*
 * The shared-memory queue: order, limits, re-attaching, several writer
 * and reader processes (each reader with two threads) at once, and
 * writers that die or stop in the middle of a push.
 */

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vaquero/vaquero.h>
#include "check.h"
#include "wedge.h"

#define REC_MAX  256

static void *
shared_region(size_t size)
{
    void  *p;

    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
             -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void
test_basic(void)
{
    vq_queue_stats_t  st;
    vq_queue_t       *q;
    char              buf[REC_MAX], big[REC_MAX + 1];
    size_t            size, len, cap, i;
    void             *mem;

    CHECK(vq_queue_init(shared_region(64), 64, REC_MAX) == NULL);

    size = vq_queue_min_size(REC_MAX) * 4 + 100;
    mem = shared_region(size);
    q = vq_queue_init(mem, size, REC_MAX);
    CHECK(q != NULL);

    vq_queue_get_stats(q, &st);
    cap = st.capacity;
    CHECK(cap >= 4);
    CHECK_INT(st.used, 0);

    CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_EEMPTY);

    for (i = 0; i < cap; i++) {
        snprintf(buf, sizeof(buf), "record %zu", i);
        CHECK_INT(vq_queue_push(q, buf, strlen(buf) + 1), VQ_OK);
    }

    vq_queue_prefetch(q, REC_MAX);
    CHECK_INT(vq_queue_push(q, "x", 1), VQ_EFULL);
    CHECK_INT(vq_queue_push(q, big, sizeof(big)), VQ_ETOOBIG);

    /* a requeue refused is the caller's to count, not a request's refusal */
    CHECK_INT(vq_queue_requeue(q, "x", 1), VQ_EFULL);
    CHECK_INT(vq_queue_requeue(q, big, sizeof(big)), VQ_ETOOBIG);

    vq_queue_get_stats(q, &st);
    CHECK_INT(st.used, cap);
    CHECK_INT(st.refused_full, 1);
    CHECK_INT(st.refused_too_big, 1);

    /* a region attached again keeps its records (nginx -s reload) */
    CHECK(vq_queue_attach(mem, size, REC_MAX + 8) == NULL);
    CHECK(vq_queue_attach(mem, size - 64, REC_MAX) == NULL);
    q = vq_queue_attach(mem, size, REC_MAX);
    CHECK(q != NULL);

    for (i = 0; i < cap; i++) {
        char  want[32];

        snprintf(want, sizeof(want), "record %zu", i);
        CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_OK);
        CHECK_STR(buf, want);
        CHECK_INT(len, strlen(want) + 1);
    }

    CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_EEMPTY);

    /* wraps around: many laps through a few slots */
    for (i = 0; i < 10 * cap; i++) {
        /* a hint at every slot, past the record size too: no effect */
        vq_queue_prefetch(q, i % 3 ? REC_MAX : SIZE_MAX);
        CHECK(vq_queue_push(q, &i, sizeof(i)) == VQ_OK);
        CHECK(vq_queue_pop(q, buf, sizeof(buf), &len) == VQ_OK);
        CHECK(memcmp(buf, &i, sizeof(i)) == 0);
    }

    /* a requeue that fits is a push like any other */
    CHECK_INT(vq_queue_requeue(q, "again", 6), VQ_OK);
    CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_OK);
    CHECK_STR(buf, "again");

    munmap(mem, size);
}

/*
 * A snapshot of the queue (vq_queue_end) bounds a drain: what is pushed
 * after it, requeues included, is not taken; and the queue's generation
 * only goes forward, modulo 2^32, and survives a re-attach.
 */
static void
test_snapshot_and_generation(void)
{
    vq_queue_t  *q;
    uint64_t     end;
    size_t       size, len;
    char         buf[REC_MAX];
    void        *mem;

    size = vq_queue_min_size(REC_MAX) * 8;
    mem = shared_region(size);
    q = vq_queue_init(mem, size, REC_MAX);
    CHECK(q != NULL);

    CHECK_INT(vq_queue_end(q), 0);
    CHECK_INT(vq_queue_pop_before(q, 0, buf, sizeof(buf), &len), VQ_EEMPTY);

    vq_queue_push(q, "a", 2);
    vq_queue_push(q, "b", 2);
    end = vq_queue_end(q);
    CHECK_INT(end, 2);

    vq_queue_push(q, "c", 2);

    CHECK_INT(vq_queue_pop_before(q, end, buf, sizeof(buf), &len), VQ_OK);
    CHECK_STR(buf, "a");

    /* put back after the snapshot: beyond it now */
    CHECK_INT(vq_queue_requeue(q, "a", 2), VQ_OK);

    CHECK_INT(vq_queue_pop_before(q, end, buf, sizeof(buf), &len), VQ_OK);
    CHECK_STR(buf, "b");
    CHECK_INT(vq_queue_pop_before(q, end, buf, sizeof(buf), &len), VQ_EEMPTY);

    /* an unbounded pop takes the rest, in order */
    CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_OK);
    CHECK_STR(buf, "c");
    CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_OK);
    CHECK_STR(buf, "a");
    CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_EEMPTY);
    CHECK_INT(vq_queue_end(q), 4);

    CHECK_INT(vq_queue_generation(q), 0);
    vq_queue_raise_generation(q, 3);
    CHECK_INT(vq_queue_generation(q), 3);
    vq_queue_raise_generation(q, 2);
    CHECK_INT(vq_queue_generation(q), 3);
    vq_queue_raise_generation(q, 3);
    CHECK_INT(vq_queue_generation(q), 3);

    q = vq_queue_attach(mem, size, REC_MAX);
    CHECK(q != NULL);
    CHECK_INT(vq_queue_generation(q), 3);

    /* 0xfffffff0 is 2^32 - 16 generations after 3, so before it */
    vq_queue_raise_generation(q, 0xfffffff0U);
    CHECK_INT(vq_queue_generation(q), 3);
    vq_queue_raise_generation(q, 0x7fffffffU);
    CHECK_INT(vq_queue_generation(q), 0x7fffffffU);
    vq_queue_raise_generation(q, 0xfffffff0U);
    CHECK_INT(vq_queue_generation(q), 0xfffffff0U);
    vq_queue_raise_generation(q, 1);
    CHECK_INT(vq_queue_generation(q), 1);

    munmap(mem, size);
}

/*
 * A one-slot queue cannot work: a slot just filled looks free for the
 * next position, so a second push overwrites the first and the next pop
 * spins for ever.  Every region either is refused or holds two slots.
 */
static void
test_small(void)
{
    vq_queue_stats_t  st;
    vq_queue_t       *q;
    size_t            size, len, formatted;
    char              buf[REC_MAX];
    void             *mem;

    mem = shared_region(vq_queue_min_size(REC_MAX) + 4096);

    CHECK(vq_queue_init(mem, vq_queue_min_size(REC_MAX) - 64, REC_MAX)
          == NULL);

    q = vq_queue_init(mem, vq_queue_min_size(REC_MAX), REC_MAX);
    CHECK(q != NULL);
    vq_queue_get_stats(q, &st);
    CHECK_INT(st.capacity, 2);

    formatted = 0;

    for (size = 64; size <= vq_queue_min_size(REC_MAX) + 4096; size += 64) {
        q = vq_queue_init(mem, size, REC_MAX);
        if (q == NULL) {
            continue;
        }

        formatted++;
        vq_queue_get_stats(q, &st);
        CHECK(st.capacity >= 2);
        if (st.capacity < 2) {
            break;                      /* a pop below would spin */
        }

        CHECK_INT(vq_queue_push(q, "one", 4), VQ_OK);
        CHECK_INT(vq_queue_push(q, "two", 4), VQ_OK);
        if (st.capacity == 2) {
            CHECK_INT(vq_queue_push(q, "three", 6), VQ_EFULL);
        }
        CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_OK);
        CHECK_STR(buf, "one");
        CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_OK);
        CHECK_STR(buf, "two");
        CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_EEMPTY);
    }

    CHECK(formatted > 0);

    munmap(mem, vq_queue_min_size(REC_MAX) + 4096);
}

/*
 * Concurrency: WRITERS processes push PER_WRITER records each, of varying
 * length, with a checksum; READERS processes with two threads each pop
 * until every record is accounted for.  Each record must arrive whole and
 * exactly once.
 */

#define WRITERS     4
#define READERS     3
#define PER_WRITER  200000

typedef struct {
    uint32_t  writer;
    uint32_t  seq;
    uint32_t  len;
    uint32_t  sum;
    uint8_t   payload[REC_MAX - 16];
} test_rec_t;

typedef struct {
    uint64_t  popped;
    uint64_t  torn;
    uint64_t  refusals;
    uint64_t  eskipped;         /* pushes that found their slot closed */
    uint64_t  closed;           /* slots closed by readers */
    int       give_up;
    uint8_t   seen[WRITERS][PER_WRITER];
} shared_t;

/*
 * Waits for the children.  Should records stop coming for 15 s (a bug
 * that loses one, or wedges the queue), tells them to give up, so that
 * the test fails rather than hangs.  1 if they all exited with 0.
 */
static int
reap(pid_t *pids, int n, const uint64_t *popped, int *give_up)
{
    uint64_t  last, now;
    int64_t   since;
    int       left, ok, status, i;

    left = n;
    ok = 1;
    last = 0;
    since = wedge_ms();

    while (left > 0) {
        for (i = 0; i < n; i++) {
            if (pids[i] > 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
                ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
                pids[i] = 0;
                left--;
            }
        }

        now = __atomic_load_n(popped, __ATOMIC_RELAXED);

        if (now != last) {
            last = now;
            since = wedge_ms();

        } else if (wedge_ms() - since > 15000
                   && !__atomic_load_n(give_up, __ATOMIC_RELAXED))
        {
            fprintf(stderr, "no record for 15 s, %llu so far: giving up\n",
                    (unsigned long long) now);
            __atomic_store_n(give_up, 1, __ATOMIC_RELAXED);
        }

        wedge_pause(1000);
    }

    return ok && !__atomic_load_n(give_up, __ATOMIC_RELAXED);
}

static uint32_t
checksum(const test_rec_t *r)
{
    uint32_t  s = 2166136261u;
    uint32_t  i;

    s = (s ^ r->writer) * 16777619u;
    s = (s ^ r->seq) * 16777619u;
    for (i = 0; i < r->len; i++) {
        s = (s ^ r->payload[i]) * 16777619u;
    }

    return s;
}

static void
writer(vq_queue_t *q, shared_t *sh, uint32_t id)
{
    test_rec_t  r;
    uint32_t    i, j;
    uint64_t    refused = 0, skipped = 0;
    int         rc;

    for (i = 0; i < PER_WRITER; i++) {
        r.writer = id;
        r.seq = i;
        r.len = (i * 7 + id) % sizeof(r.payload);
        for (j = 0; j < r.len; j++) {
            r.payload[j] = (uint8_t) (i + j + id);
        }
        r.sum = checksum(&r);

        /* the queue refuses when full; this test wants every record in */
        for ( ;; ) {
            rc = vq_queue_push(q, &r, 16 + r.len);

            if (rc == VQ_OK) {
                break;
            }

            if (rc == VQ_ESKIPPED) {
                /* a reader closed the slot before the pid was in: unwritten */
                skipped++;
            } else {
                refused++;
                sched_yield();
            }

            if (__atomic_load_n(&sh->give_up, __ATOMIC_RELAXED)) {
                return;
            }
        }
    }

    __atomic_fetch_add(&sh->refusals, refused, __ATOMIC_RELAXED);
    __atomic_fetch_add(&sh->eskipped, skipped, __ATOMIC_RELAXED);
}

typedef struct {
    vq_queue_t  *q;
    shared_t    *sh;
} reader_arg_t;

/*
 * What an exporter does when the queue looks empty, but eagerly: a slot
 * claimed with no pid in it yet is closed at once (an exporter waits a
 * second), so that many writers race their pid's CAS against a close.  A
 * slot with a pid is given up only if that process is gone: never here.
 */
static void
recover(vq_queue_t *q, uint64_t *closed)
{
    uint64_t  pos;
    pid_t     w;

    pos = vq_queue_stalled(q, &w);

    if (pos != VQ_QUEUE_NOT_STALLED && vq_queue_skip(q, pos, w == 0) == VQ_OK) {
        __atomic_fetch_add(closed, 1, __ATOMIC_RELAXED);
    }
}

static void *
reader(void *data)
{
    reader_arg_t  *a = data;
    test_rec_t     r;
    size_t         len;
    uint64_t       total = (uint64_t) WRITERS * PER_WRITER;

    while (__atomic_load_n(&a->sh->popped, __ATOMIC_RELAXED) < total
           && !__atomic_load_n(&a->sh->give_up, __ATOMIC_RELAXED))
    {
        if (vq_queue_pop(a->q, &r, sizeof(r), &len) != VQ_OK) {
            recover(a->q, &a->sh->closed);
            sched_yield();
            continue;
        }

        if (len != 16 + r.len || r.writer >= WRITERS || r.seq >= PER_WRITER
            || checksum(&r) != r.sum)
        {
            __atomic_fetch_add(&a->sh->torn, 1, __ATOMIC_RELAXED);

        } else {
            __atomic_fetch_add(&a->sh->seen[r.writer][r.seq], 1,
                               __ATOMIC_RELAXED);
        }

        __atomic_fetch_add(&a->sh->popped, 1, __ATOMIC_RELAXED);
    }

    return NULL;
}

static void
test_processes(void)
{
    vq_queue_stats_t  st;
    reader_arg_t      arg;
    vq_queue_t       *q;
    shared_t         *sh;
    pthread_t         t[2];
    size_t            size, w, i, once, other;
    pid_t             pids[WRITERS + READERS];
    int               n;
    void             *mem;

    size = 1024 * 1024;     /* ~3600 slots: small enough to fill up */
    mem = shared_region(size);
    sh = shared_region(sizeof(shared_t));
    q = vq_queue_init(mem, size, REC_MAX);
    CHECK(q != NULL && sh != NULL);

    n = 0;

    for (i = 0; i < READERS; i++) {
        pids[n] = fork();
        if (pids[n] == 0) {
            arg.q = q;
            arg.sh = sh;
            pthread_create(&t[0], NULL, reader, &arg);
            pthread_create(&t[1], NULL, reader, &arg);
            pthread_join(t[0], NULL);
            pthread_join(t[1], NULL);
            _exit(0);
        }
        n++;
    }

    for (w = 0; w < WRITERS; w++) {
        pids[n] = fork();
        if (pids[n] == 0) {
            writer(q, sh, (uint32_t) w);
            _exit(0);
        }
        n++;
    }

    CHECK(reap(pids, n, &sh->popped, &sh->give_up));
    CHECK_INT(sh->popped, (uint64_t) WRITERS * PER_WRITER);
    CHECK_INT(sh->torn, 0);

    once = other = 0;
    for (w = 0; w < WRITERS; w++) {
        for (i = 0; i < PER_WRITER; i++) {
            if (sh->seen[w][i] == 1) {
                once++;
            } else {
                other++;
            }
        }
    }

    CHECK_INT(once, (uint64_t) WRITERS * PER_WRITER);
    CHECK_INT(other, 0);

    /* each closed slot was one push told so, and counted once */
    vq_queue_get_stats(q, &st);
    CHECK_INT(sh->closed, sh->eskipped);
    CHECK_INT(st.skipped, sh->closed);
    CHECK_INT(st.refused_full, sh->refusals);
    CHECK_INT(st.popped, st.pushed);
    CHECK_INT(st.pushed, (uint64_t) WRITERS * PER_WRITER + sh->eskipped);

    printf("test_queue: %d writers x %d records, %d readers x 2 threads; "
           "%llu pushes refused while full, %llu slots closed before their "
           "writer's pid was in\n", WRITERS, PER_WRITER, READERS,
           (unsigned long long) sh->refusals,
           (unsigned long long) sh->closed);

    munmap(mem, size);
    munmap(sh, sizeof(shared_t));
}

/* A writer killed at random in the middle of a push: readers skip its slot. */
static void
test_dead_writer(void)
{
    vq_queue_stats_t  st;
    vq_queue_t       *q;
    uint64_t          pos;
    size_t            size, len, rec, i;
    pid_t             writer, w;
    char              buf[64 * 1024];
    void             *mem;

    rec = sizeof(buf);
    size = vq_queue_min_size(rec) * 16;
    mem = shared_region(size);
    q = vq_queue_init(mem, size, rec);

    pos = wedge_queue(q, rec, &writer);
    CHECK(pos != VQ_QUEUE_NOT_STALLED);
    if (pos == VQ_QUEUE_NOT_STALLED) {
        return;
    }

    /* records pushed behind the dead writer's slot cannot be read ... */
    for (i = 0; i < 3; i++) {
        snprintf(buf, sizeof(buf), "after %zu", i);
        CHECK_INT(vq_queue_push(q, buf, strlen(buf) + 1), VQ_OK);
    }
    CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_EEMPTY);
    CHECK(vq_queue_stalled(q, &w) == pos && w == writer);

    /*
     * ... until a reader gives the slot up: at once when the writer's pid
     * is in it (almost always: the kill lands in the copy), else only
     * after waiting (the kill landed between the claim and the pid)
     */
    CHECK_INT(vq_queue_skip(q, pos + 1, 1), VQ_EINVAL);
    CHECK_INT(vq_queue_skip(q, pos, writer == 0), VQ_OK);
    CHECK_INT(vq_queue_skip(q, pos, 1), VQ_EINVAL);
    CHECK(vq_queue_stalled(q, &w) == VQ_QUEUE_NOT_STALLED);

    for (i = 0; i < 3; i++) {
        char  want[32];

        snprintf(want, sizeof(want), "after %zu", i);
        CHECK_INT(vq_queue_pop(q, buf, sizeof(buf), &len), VQ_OK);
        CHECK_STR(buf, want);
    }

    vq_queue_get_stats(q, &st);
    CHECK_INT(st.skipped, 1);

    /* and the queue works on, lap after lap */
    for (i = 0; i < 100; i++) {
        CHECK(vq_queue_push(q, &i, sizeof(i)) == VQ_OK);
        CHECK(vq_queue_pop(q, buf, sizeof(buf), &len) == VQ_OK);
        CHECK(memcmp(buf, &i, sizeof(i)) == 0);
    }

    munmap(mem, size);
}

/*
 * The writers below are stopped at a chosen write (wedge_writer), with
 * records bigger than a page so that a copy crosses pages.
 */

#define BIG       16384
#define BIG_SIZE  (1024 * 1024)

typedef struct {
    vq_queue_t  *q;
    char        *mem;
    char        *rec;
    char        *buf;
    uint64_t     capacity;
} big_t;

static int
big_init(big_t *b)
{
    vq_queue_stats_t  st;

    b->mem = shared_region(BIG_SIZE);
    b->q = vq_queue_init(b->mem, BIG_SIZE, BIG);
    b->rec = malloc(BIG);
    b->buf = malloc(BIG);

    if (b->q == NULL) {
        CHECK(b->q != NULL);
        return 0;
    }

    vq_queue_get_stats(b->q, &st);
    b->capacity = st.capacity;

    return 1;
}

static void
big_free(big_t *b)
{
    munmap(b->mem, BIG_SIZE);
    free(b->rec);
    free(b->buf);
}

/* Pops everything; 1 if it was writer's records seq0, seq0 + 1, ... whole. */
static int
big_drain(big_t *b, uint32_t writer, uint32_t seq0, uint64_t n)
{
    uint32_t  wr, seq;
    uint64_t  i;
    size_t    len;
    int       ok;

    ok = 1;

    for (i = 0; i < n; i++) {
        if (vq_queue_pop(b->q, b->buf, BIG, &len) != VQ_OK
            || !wedge_check(b->buf, len, &wr, &seq)
            || wr != writer || seq != seq0 + i)
        {
            ok = 0;
        }
    }

    return ok && vq_queue_pop(b->q, b->buf, BIG, &len) == VQ_EEMPTY;
}

/* Laps through every slot: each record comes out whole, in order. */
static int
big_laps(big_t *b, uint32_t writer)
{
    uint32_t  wr, seq;
    uint64_t  i;
    size_t    len, n;
    int       ok;

    ok = 1;

    for (i = 0; i < 3 * b->capacity; i++) {
        n = WEDGE_HDR + (i * 997) % (BIG - WEDGE_HDR);
        wedge_fill(b->rec, writer, (uint32_t) i, n);

        if (vq_queue_push(b->q, b->rec, n) != VQ_OK
            || vq_queue_pop(b->q, b->buf, BIG, &len) != VQ_OK
            || !wedge_check(b->buf, len, &wr, &seq)
            || wr != writer || seq != i)
        {
            ok = 0;
        }
    }

    return ok;
}

/* Killed half-way through its copy: given up as soon as it is gone. */
static void
test_killed_writer(void)
{
    vq_queue_stats_t  st;
    uint64_t          pos;
    big_t             b;
    pid_t             pid, w;
    char             *at;
    size_t            i, len;

    if (!big_init(&b)) {
        return;
    }

    at = wedge_next_slot(b.q, b.mem, BIG_SIZE, b.buf, BIG);
    CHECK(at != NULL);
    if (at == NULL) {
        return;
    }

    wedge_fill(b.rec, 1, 0, BIG);
    pid = wedge_writer(b.q, wedge_page_up(at + 1), b.mem + BIG_SIZE, b.rec,
                       BIG);
    CHECK(pid > 0);
    if (pid <= 0) {
        return;
    }

    pos = vq_queue_stalled(b.q, &w);
    CHECK(pos != VQ_QUEUE_NOT_STALLED);
    CHECK_INT(w, pid);

    /* stopped but alive, it keeps its slot, whatever a reader thinks */
    CHECK_INT(vq_queue_skip(b.q, pos, 0), VQ_EINVAL);
    CHECK_INT(vq_queue_skip(b.q, pos, 1), VQ_EINVAL);

    /* records pushed behind it cannot be read ... */
    for (i = 0; i < 3; i++) {
        wedge_fill(b.rec, 2, (uint32_t) i, 100 + i);
        CHECK_INT(vq_queue_push(b.q, b.rec, 100 + i), VQ_OK);
    }
    CHECK_INT(vq_queue_pop(b.q, b.buf, BIG, &len), VQ_EEMPTY);

    /* ... until it is dead: then readers give its slot up, once */
    wedge_kill(pid);

    CHECK_INT(vq_queue_skip(b.q, pos + 1, 0), VQ_EINVAL);
    CHECK_INT(vq_queue_skip(b.q, pos, 0), VQ_OK);
    CHECK_INT(vq_queue_skip(b.q, pos, 0), VQ_EINVAL);
    CHECK(vq_queue_stalled(b.q, &w) == VQ_QUEUE_NOT_STALLED);

    /* its half record never comes out; the others do, whole */
    CHECK(big_drain(&b, 2, 0, 3));

    vq_queue_get_stats(b.q, &st);
    CHECK_INT(st.skipped, 1);
    CHECK_INT(st.used, 0);

    CHECK(big_laps(&b, 3));

    big_free(&b);
}

/*
 * Stopped after its claim, before its pid is in the slot: a live writer
 * (slow == 1) or a dead one.  Only a reader that has waited gives the
 * slot up; a slow writer that goes on then finds it closed and writes
 * nothing, so the record that has the slot on the next lap stays whole.
 */
static void
test_writer_without_pid(int slow)
{
    vq_queue_stats_t  st;
    uint64_t          pos, i;
    big_t             b;
    pid_t             pid, w;
    size_t            len;
    char             *at, *from;

    if (!big_init(&b)) {
        return;
    }

    /* not the first slot, which shares a page with the queue's header */
    CHECK_INT(vq_queue_push(b.q, "x", 1), VQ_OK);
    CHECK_INT(vq_queue_pop(b.q, b.buf, BIG, &len), VQ_OK);

    at = wedge_next_slot(b.q, b.mem, BIG_SIZE, b.buf, BIG);
    CHECK(at != NULL);
    if (at == NULL) {
        return;
    }

    /* the slot's header (just before its record bytes) is read-only */
    from = wedge_page_down(at - 64);
    CHECK(from > b.mem);

    wedge_fill(b.rec, 1, 0, BIG);
    pid = wedge_writer(b.q, from, b.mem + BIG_SIZE, b.rec, BIG);
    CHECK(pid > 0);
    if (pid <= 0) {
        return;
    }

    pos = vq_queue_stalled(b.q, &w);
    CHECK(pos != VQ_QUEUE_NOT_STALLED);
    CHECK_INT(w, 0);

    if (!slow) {
        wedge_kill(pid);
    }

    CHECK_INT(vq_queue_skip(b.q, pos, 0), VQ_EINVAL);
    CHECK_INT(vq_queue_skip(b.q, pos, 1), VQ_OK);
    CHECK_INT(vq_queue_skip(b.q, pos, 1), VQ_EINVAL);
    CHECK_INT(vq_queue_pop(b.q, b.buf, BIG, &len), VQ_EEMPTY);
    CHECK(vq_queue_stalled(b.q, &w) == VQ_QUEUE_NOT_STALLED);

    /* the queue goes on: a lap of records, one of them in that slot */
    for (i = 0; i < b.capacity; i++) {
        wedge_fill(b.rec, 2, (uint32_t) i, BIG - i);
        CHECK_INT(vq_queue_push(b.q, b.rec, BIG - i), VQ_OK);
    }

    if (slow) {
        CHECK_INT(wedge_continue(pid), VQ_ESKIPPED);
    }

    CHECK(big_drain(&b, 2, 0, b.capacity));

    vq_queue_get_stats(b.q, &st);
    CHECK_INT(st.skipped, 1);
    CHECK_INT(st.used, 0);

    CHECK(big_laps(&b, 3));

    big_free(&b);
}

/*
 * A writer stopped (SIGSTOP) half-way through its copy for STOP_MS, while
 * other writer processes push and reader processes pop and try to give
 * slots up as an exporter does: no slot is given up, no record lost or
 * mixed, and the stopped writer's record arrives whole once it goes on.
 */

#define STOP_WRITERS  3
#define STOP_READERS  2
#define STOP_PER      20000
#define STOP_MS       5000
#define STOP_NO_PID   1000              /* as the exporter's VQ_STALL_MS */

typedef struct {
    pid_t     victim;
    uint64_t  popped;
    uint64_t  torn;
    uint64_t  refusals;
    uint64_t  eskipped;
    uint64_t  closed;
    uint64_t  victim_kept;              /* readers' skips refused */
    int       give_up;
    uint8_t   seen[STOP_WRITERS + 1][STOP_PER];
} stop_shared_t;

typedef struct {
    vq_queue_t     *q;
    stop_shared_t  *sh;
} stop_arg_t;

static void *
stop_reader(void *data)
{
    stop_arg_t     *a = data;
    stop_shared_t  *sh = a->sh;
    uint64_t        total, pos, last;
    uint32_t        wr, seq;
    int64_t         since, now;
    size_t          len;
    pid_t           w, last_w;
    char           *buf;

    total = (uint64_t) STOP_WRITERS * STOP_PER + 1;
    buf = malloc(BIG);
    last = VQ_QUEUE_NOT_STALLED;
    last_w = since = 0;

    while (__atomic_load_n(&sh->popped, __ATOMIC_RELAXED) < total
           && !__atomic_load_n(&sh->give_up, __ATOMIC_RELAXED))
    {
        if (vq_queue_pop(a->q, buf, BIG, &len) == VQ_OK) {
            if (wedge_check(buf, len, &wr, &seq) && wr <= STOP_WRITERS
                && seq < STOP_PER)
            {
                __atomic_fetch_add(&sh->seen[wr][seq], 1, __ATOMIC_RELAXED);
            } else {
                __atomic_fetch_add(&sh->torn, 1, __ATOMIC_RELAXED);
            }
            __atomic_fetch_add(&sh->popped, 1, __ATOMIC_RELAXED);
            continue;
        }

        pos = vq_queue_stalled(a->q, &w);

        if (pos != VQ_QUEUE_NOT_STALLED) {
            now = wedge_ms();
            if (pos != last || w != last_w) {
                last = pos;
                last_w = w;
                since = now;
            }

            if (vq_queue_skip(a->q, pos, w == 0 && now - since >= STOP_NO_PID)
                == VQ_OK)
            {
                __atomic_fetch_add(&sh->closed, 1, __ATOMIC_RELAXED);
            } else if (w == sh->victim) {
                __atomic_fetch_add(&sh->victim_kept, 1, __ATOMIC_RELAXED);
            }
        }

        wedge_pause(100);
    }

    free(buf);
    return NULL;
}

static void
stop_writer(vq_queue_t *q, stop_shared_t *sh, uint32_t id)
{
    uint32_t  i;
    size_t    len;
    char     *rec;
    int       rc;

    rec = malloc(BIG);

    for (i = 0; i < STOP_PER; i++) {
        len = WEDGE_HDR + (i * 37 + id * 101) % 2000;
        wedge_fill(rec, id, i, len);

        while ((rc = vq_queue_push(q, rec, len)) != VQ_OK) {
            if (rc == VQ_ESKIPPED) {
                __atomic_fetch_add(&sh->eskipped, 1, __ATOMIC_RELAXED);
            } else {
                __atomic_fetch_add(&sh->refusals, 1, __ATOMIC_RELAXED);
                wedge_pause(100);
            }

            if (__atomic_load_n(&sh->give_up, __ATOMIC_RELAXED)) {
                free(rec);
                return;
            }
        }
    }

    free(rec);
}

static void
test_stopped_writer(void)
{
    vq_queue_stats_t  st;
    stop_shared_t    *sh;
    stop_arg_t        arg;
    pthread_t         t[2];
    uint64_t          pos, once, other;
    int64_t           stopped_at;
    big_t             b;
    pid_t             pids[STOP_WRITERS + STOP_READERS], w;
    char             *at;
    int               n, i, j;

    if (!big_init(&b)) {
        return;
    }

    sh = shared_region(sizeof(stop_shared_t));

    at = wedge_next_slot(b.q, b.mem, BIG_SIZE, b.buf, BIG);
    CHECK(at != NULL);
    if (at == NULL) {
        return;
    }

    wedge_fill(b.rec, STOP_WRITERS, 0, BIG);
    sh->victim = wedge_writer(b.q, wedge_page_up(at + 1), b.mem + BIG_SIZE,
                              b.rec, BIG);
    stopped_at = wedge_ms();
    CHECK(sh->victim > 0);
    if (sh->victim <= 0) {
        return;
    }

    pos = vq_queue_stalled(b.q, &w);
    CHECK(pos != VQ_QUEUE_NOT_STALLED);
    CHECK_INT(w, sh->victim);

    n = 0;

    for (i = 0; i < STOP_READERS; i++) {
        pids[n] = fork();
        if (pids[n] == 0) {
            arg.q = b.q;
            arg.sh = sh;
            pthread_create(&t[0], NULL, stop_reader, &arg);
            pthread_create(&t[1], NULL, stop_reader, &arg);
            pthread_join(t[0], NULL);
            pthread_join(t[1], NULL);
            _exit(0);
        }
        n++;
    }

    for (i = 0; i < STOP_WRITERS; i++) {
        pids[n] = fork();
        if (pids[n] == 0) {
            stop_writer(b.q, sh, (uint32_t) i);
            _exit(0);
        }
        n++;
    }

    /* stopped for STOP_MS, with the queue full behind it, readers at it */
    while (wedge_ms() - stopped_at < STOP_MS
           || __atomic_load_n(&sh->refusals, __ATOMIC_RELAXED) == 0
           || __atomic_load_n(&sh->victim_kept, __ATOMIC_RELAXED) == 0)
    {
        if (wedge_ms() - stopped_at > 12 * STOP_MS) {
            break;
        }
        wedge_pause(10000);
    }

    vq_queue_get_stats(b.q, &st);
    CHECK(vq_queue_stalled(b.q, &w) == pos && w == sh->victim);
    CHECK_INT(st.skipped, 0);
    CHECK_INT(st.used, b.capacity);
    CHECK_INT(sh->popped, 0);
    CHECK(sh->refusals > 0);
    CHECK(sh->victim_kept > 0);

    /* it goes on: its push completes, and everything drains */
    CHECK_INT(wedge_continue(sh->victim), VQ_OK);

    CHECK(reap(pids, n, &sh->popped, &sh->give_up));
    CHECK_INT(sh->popped, (uint64_t) STOP_WRITERS * STOP_PER + 1);
    CHECK_INT(sh->torn, 0);
    CHECK_INT(sh->seen[STOP_WRITERS][0], 1);

    once = other = 0;
    for (i = 0; i < STOP_WRITERS; i++) {
        for (j = 0; j < STOP_PER; j++) {
            if (sh->seen[i][j] == 1) {
                once++;
            } else {
                other++;
            }
        }
    }

    CHECK_INT(once, (uint64_t) STOP_WRITERS * STOP_PER);
    CHECK_INT(other, 0);

    vq_queue_get_stats(b.q, &st);
    CHECK_INT(st.skipped, sh->closed);
    CHECK_INT(sh->closed, sh->eskipped);
    CHECK_INT(st.used, 0);

    printf("test_queue: a writer stopped %lld ms mid-copy; %d writers x %d "
           "records waited behind it (%llu pushes refused), %llu tries to "
           "skip it refused\n", (long long) (wedge_ms() - stopped_at),
           STOP_WRITERS, STOP_PER, (unsigned long long) sh->refusals,
           (unsigned long long) sh->victim_kept);

    munmap(sh, sizeof(stop_shared_t));
    big_free(&b);
}

/* Waits (10 s at most) until pid sleeps in futex(2). */
static int
wait_in_futex(pid_t pid)
{
    FILE     *f;
    char      path[64];
    long      nr;
    int64_t   t;

    snprintf(path, sizeof(path), "/proc/%ld/syscall", (long) pid);

    for (t = wedge_ms(); wedge_ms() - t < 10000; usleep(1000)) {
        f = fopen(path, "r");
        if (f == NULL) {
            return 0;
        }
        nr = -1;
        if (fscanf(f, "%ld", &nr) != 1) {
            nr = -1;
        }
        fclose(f);

        if (nr == SYS_futex) {
            return 1;
        }
    }

    return 0;
}

/*
 * Sleeping on the queue across processes: a wake between reading
 * vq_queue_wakes() and waiting is not lost, and a wake from another
 * process ends a sleep long before its 20 s are up.
 */
static void
test_wait_wake(void)
{
    vq_queue_t  *q;
    void        *mem;
    size_t       size;
    uint32_t     seen;
    int64_t      t;
    pid_t        pid;
    int          fds[2], status, exited;
    char         c;

    size = vq_queue_min_size(REC_MAX) * 4;
    mem = shared_region(size);
    q = vq_queue_init(mem, size, REC_MAX);
    CHECK(q != NULL);

    /* a wake before the wait: the wait returns at once */
    seen = vq_queue_wakes(q);
    vq_queue_wake(q, 0);
    CHECK(vq_queue_wakes(q) == seen + 1);
    t = wedge_ms();
    vq_queue_wait(q, seen, 20000);
    CHECK(wedge_ms() - t < 10000);

    /* a sleeper in another process */
    CHECK(pipe(fds) == 0);
    pid = fork();

    if (pid == 0) {
        seen = vq_queue_wakes(q);
        c = 'r';
        if (write(fds[1], &c, 1) != 1) {
            _exit(2);
        }
        vq_queue_wait(q, seen, 20000);
        _exit(0);
    }

    CHECK(read(fds[0], &c, 1) == 1);
    /* asleep in the kernel, so that the wake itself is what ends it */
    CHECK(wait_in_futex(pid));
    vq_queue_wake(q, 0);

    t = wedge_ms();
    exited = 0;
    while (wedge_ms() - t < 10000) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            exited = 1;
            break;
        }
        usleep(1000);
    }

    CHECK(exited);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }

    close(fds[0]);
    close(fds[1]);
    munmap(mem, size);
}

int
main(void)
{
    test_basic();
    test_snapshot_and_generation();
    test_small();
    test_processes();
    test_dead_writer();
    test_killed_writer();
    test_writer_without_pid(0);
    test_writer_without_pid(1);
    test_stopped_writer();
    test_wait_wake();

    return check_summary("test_queue");
}
