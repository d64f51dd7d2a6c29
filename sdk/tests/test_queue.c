/*
 * The shared-memory queue: order, limits, re-attaching, and several
 * writer and reader processes (each reader with two threads) at once.
 */

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
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

    CHECK_INT(vq_queue_push(q, "x", 1), VQ_EFULL);
    CHECK_INT(vq_queue_push(q, big, sizeof(big)), VQ_ETOOBIG);

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
        CHECK(vq_queue_push(q, &i, sizeof(i)) == VQ_OK);
        CHECK(vq_queue_pop(q, buf, sizeof(buf), &len) == VQ_OK);
        CHECK(memcmp(buf, &i, sizeof(i)) == 0);
    }

    munmap(mem, size);
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
    uint8_t   seen[WRITERS][PER_WRITER];
} shared_t;

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
    uint64_t    refused = 0;

    for (i = 0; i < PER_WRITER; i++) {
        r.writer = id;
        r.seq = i;
        r.len = (i * 7 + id) % sizeof(r.payload);
        for (j = 0; j < r.len; j++) {
            r.payload[j] = (uint8_t) (i + j + id);
        }
        r.sum = checksum(&r);

        /* the queue refuses when full; this test wants every record in */
        while (vq_queue_push(q, &r, 16 + r.len) == VQ_EFULL) {
            refused++;
            sched_yield();
        }
    }

    __atomic_fetch_add(&sh->refusals, refused, __ATOMIC_RELAXED);
}

typedef struct {
    vq_queue_t  *q;
    shared_t    *sh;
} reader_arg_t;

static void *
reader(void *data)
{
    reader_arg_t  *a = data;
    test_rec_t     r;
    size_t         len;
    uint64_t       total = (uint64_t) WRITERS * PER_WRITER;

    while (__atomic_load_n(&a->sh->popped, __ATOMIC_RELAXED) < total) {
        if (vq_queue_pop(a->q, &r, sizeof(r), &len) != VQ_OK) {
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
    reader_arg_t  arg;
    vq_queue_t   *q;
    shared_t     *sh;
    pthread_t     t[2];
    size_t        size, w, i, once, other;
    pid_t         pids[WRITERS + READERS];
    int           status, n, ok;
    void         *mem;

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

    ok = 1;
    while (n-- > 0) {
        waitpid(pids[n], &status, 0);
        ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }

    CHECK(ok);
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

    printf("test_queue: %d writers x %d records, %d readers x 2 threads; "
           "%llu pushes refused while full\n", WRITERS, PER_WRITER, READERS,
           (unsigned long long) sh->refusals);

    munmap(mem, size);
    munmap(sh, sizeof(shared_t));
}

/* A writer killed in the middle of a push: readers recover by skipping. */
static void
test_dead_writer(void)
{
    vq_queue_stats_t  st;
    vq_queue_t       *q;
    uint64_t          pos;
    size_t            size, len, rec, i;
    char              buf[64 * 1024];
    void             *mem;

    rec = sizeof(buf);
    size = vq_queue_min_size(rec) * 16;
    mem = shared_region(size);
    q = vq_queue_init(mem, size, rec);

    pos = wedge_queue(q, rec);
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
    CHECK(vq_queue_stalled(q) == pos);

    /* ... until a reader gives the slot up */
    CHECK_INT(vq_queue_skip(q, pos + 1), VQ_EINVAL);
    CHECK_INT(vq_queue_skip(q, pos), VQ_OK);
    CHECK_INT(vq_queue_skip(q, pos), VQ_EINVAL);
    CHECK(vq_queue_stalled(q) == VQ_QUEUE_NOT_STALLED);

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

int
main(void)
{
    test_basic();
    test_processes();
    test_dead_writer();

    return check_summary("test_queue");
}
