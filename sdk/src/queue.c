/*
 * Bounded MPMC queue over shared memory (Dmitry Vyukov's algorithm,
 * with any number of slots rather than a power of two).
 *
 * Each slot has one word, seq, that holds a queue position and, in its
 * low bits, an owner: the pid of the process writing the slot, or one of
 * the markers below.  For the slot used by position pos:
 *
 *   (pos, 0)            free for pos; once enqueue_pos > pos, claimed
 *   (pos, pid)          claimed and owned: pid is copying the record in
 *   (pos, CLOSED)       given up by a reader (vq_queue_skip)
 *   (pos + 1, 0)        published: a reader may take it
 *   (pos + capacity, 0) read (or passed over), free for the next lap
 *
 * A producer that reads enqueue position pos claims the slot when it is
 * free for pos and it wins the CAS on enqueue_pos; it then records its
 * pid with a CAS from (pos, 0), copies the record and publishes.  A
 * consumer at dequeue position pos takes a published slot by winning the
 * CAS on dequeue_pos, and hands it back for the next lap.  A record is
 * only visible once it is complete, so readers never see a torn one.
 *
 * A producer killed between claiming and publishing would leave its slot
 * unpublished forever, and every consumer stuck in front of it.  A reader
 * may close such a slot with a CAS, from the state it saw, to CLOSED: from
 * (pos, pid) only once process pid no longer exists, so that it cannot
 * write any more; from (pos, 0) when it has waited for the pid long
 * enough, and then a producer that was only slow fails its own CAS from
 * (pos, 0) and writes nothing.  Either way no byte of a live producer
 * lands in a slot that the queue has moved past, and exactly one CAS
 * wins: the record is counted once, as published or as skipped.  Readers
 * pass over a CLOSED slot as they take a published one.
 *
 * Positions live in the top 41 bits of seq, and are compared modulo 2^41
 * (2.2e12 pushes): a producer would have to stall between its two CASes
 * for that many pushes, and resume exactly when its slot is free for the
 * same position modulo 2^41, for its CAS to succeed on a later lap.
 */

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <vaquero/vaquero.h>

#define VQ_QUEUE_MAGIC    0x5651554555453034ULL     /* "VQUEUE04" */
#define VQ_CACHE_LINE     64

/* Linux pids are below 2^22 (PID_MAX_LIMIT); the markers sit above them */
#define VQ_OWNER_BITS     23
#define VQ_OWNER_MASK     ((1ULL << VQ_OWNER_BITS) - 1)
#define VQ_OWNER_NONE     0U
#define VQ_OWNER_CLOSED   (1U << 22)
#define VQ_OWNER_UNKNOWN  ((1U << 22) + 1)      /* a pid that does not fit */

#define align_up(n, a)    (((n) + (a) - 1) & ~((size_t) (a) - 1))

typedef struct {
    uint64_t  seq;
    uint32_t  len;
    uint32_t  reserved;
    /* record bytes follow */
} vq_slot_t;

struct vq_queue_s {
    uint64_t  magic;
    uint64_t  size;                 /* region size */
    uint64_t  record_max;
    uint64_t  slot_size;
    uint64_t  capacity;

    /* each hot word on its own cache line */
    uint64_t  enqueue_pos  __attribute__((aligned(VQ_CACHE_LINE)));
    uint64_t  dequeue_pos  __attribute__((aligned(VQ_CACHE_LINE)));
    uint64_t  refused_full __attribute__((aligned(VQ_CACHE_LINE)));
    uint64_t  refused_too_big;
    uint64_t  skipped;
    uint32_t  generation;           /* of the latest consumers */

    uint32_t  wakes        __attribute__((aligned(VQ_CACHE_LINE)));  /* futex */
    uint32_t  sleepers;             /* consumers in vq_queue_wait() */

    char      slots[] __attribute__((aligned(VQ_CACHE_LINE)));
};

static inline uint64_t
seq_word(uint64_t pos, uint32_t owner)
{
    return pos << VQ_OWNER_BITS | owner;
}

/* How far the slot's position is ahead of pos (modulo 2^41, signed). */
static inline int64_t
seq_diff(uint64_t word, uint64_t pos)
{
    return (int64_t) ((word & ~VQ_OWNER_MASK) - (pos << VQ_OWNER_BITS))
           >> VQ_OWNER_BITS;
}

static inline uint32_t
seq_owner(uint64_t word)
{
    return (uint32_t) (word & VQ_OWNER_MASK);
}

/*
 * This process's pid, as its slots record it.  A process-wide cache
 * rather than a getpid() per push, which is a system call and push runs
 * on every request; cleared in the child of every fork() (nginx forks its
 * workers after the queue exists), so that a child never claims slots in
 * its parent's name: a reader could then give them up when the parent
 * dies while the child still writes.  Zero: not looked up yet.
 */
static uint32_t        vq_self;
static int             vq_self_watched;
static pthread_once_t  vq_self_once = PTHREAD_ONCE_INIT;

static void
self_forget(void)
{
    __atomic_store_n(&vq_self, 0, __ATOMIC_RELAXED);
}

static void
self_watch_fork(void)
{
    /* unregistered by glibc if this code is unloaded (dlclose) */
    vq_self_watched = pthread_atfork(NULL, NULL, self_forget) == 0;
}

static uint32_t
self_lookup(void)
{
    pid_t     pid;
    uint32_t  owner;

    pthread_once(&vq_self_once, self_watch_fork);

    pid = getpid();
    owner = (pid > 0 && (uint32_t) pid < VQ_OWNER_CLOSED) ? (uint32_t) pid
                                                           : VQ_OWNER_UNKNOWN;

    /* cached only where a fork will clear it; else a getpid() per push */
    if (vq_self_watched) {
        __atomic_store_n(&vq_self, owner, __ATOMIC_RELAXED);
    }

    return owner;
}

static inline uint32_t
self_owner(void)
{
    uint32_t  owner;

    owner = __atomic_load_n(&vq_self, __ATOMIC_RELAXED);

    return owner ? owner : self_lookup();
}

static size_t
slot_size(size_t record_max)
{
    return align_up(sizeof(vq_slot_t) + record_max, 64);
}

static inline vq_slot_t *
slot_at(const vq_queue_t *q, uint64_t pos)
{
    return (vq_slot_t *) (q->slots + (pos % q->capacity) * q->slot_size);
}

/*
 * A slot is last touched a lap ago, by now most likely out of every
 * cache: a push or pop that waits for it costs a trip to memory (about
 * 250 ns on the request path, measured).  Asked for ahead, while the
 * caller does other work: len bytes of record, with write intent, since
 * a push fills the slot and a pop hands it back.
 */
static inline void
prefetch_slot(const vq_queue_t *q, uint64_t pos, size_t len)
{
    const char  *p, *end;

    p = (const char *) slot_at(q, pos);
    end = p + sizeof(vq_slot_t) + (len < q->record_max ? len : q->record_max);

    for ( /* void */ ; p < end; p += VQ_CACHE_LINE) {
        __builtin_prefetch(p, 1);
    }
}

void
vq_queue_prefetch(const vq_queue_t *q, size_t len)
{
    prefetch_slot(q, __atomic_load_n(&q->enqueue_pos, __ATOMIC_RELAXED), len);
}

size_t
vq_queue_min_size(size_t record_max)
{
    return sizeof(vq_queue_t) + 2 * slot_size(record_max);
}

vq_queue_t *
vq_queue_init(void *mem, size_t size, size_t record_max)
{
    vq_queue_t  *q = mem;
    uint64_t     i;

    if (((uintptr_t) mem & (VQ_CACHE_LINE - 1)) != 0
        || record_max == 0 || record_max > UINT32_MAX
        || size < vq_queue_min_size(record_max))
    {
        return NULL;
    }

    memset(q, 0, sizeof(vq_queue_t));

    q->size = size;
    q->record_max = record_max;
    q->slot_size = slot_size(record_max);
    q->capacity = (size - sizeof(vq_queue_t)) / q->slot_size;

    for (i = 0; i < q->capacity; i++) {
        slot_at(q, i)->seq = seq_word(i, VQ_OWNER_NONE);
        slot_at(q, i)->len = 0;
    }

    __atomic_store_n(&q->magic, VQ_QUEUE_MAGIC, __ATOMIC_RELEASE);

    return q;
}

vq_queue_t *
vq_queue_attach(void *mem, size_t size, size_t record_max)
{
    vq_queue_t  *q = mem;

    if (((uintptr_t) mem & (VQ_CACHE_LINE - 1)) != 0
        || size < sizeof(vq_queue_t))
    {
        return NULL;
    }

    if (__atomic_load_n(&q->magic, __ATOMIC_ACQUIRE) != VQ_QUEUE_MAGIC
        || q->size != size
        || q->record_max != record_max
        || q->slot_size != slot_size(record_max)
        || q->capacity < 2)
    {
        return NULL;
    }

    return q;
}

static inline int
push(vq_queue_t *q, const void *rec, size_t len, int count_refusal,
    uint64_t *at)
{
    vq_slot_t  *slot;
    uint64_t    pos, word;
    uint32_t    owner;
    int64_t     diff;

    if (len > q->record_max) {
        if (count_refusal) {
            __atomic_fetch_add(&q->refused_too_big, 1, __ATOMIC_RELAXED);
        }
        return VQ_ETOOBIG;
    }

    /* before the claim: the first one in a process makes a system call */
    owner = self_owner();

    pos = __atomic_load_n(&q->enqueue_pos, __ATOMIC_RELAXED);

    for ( ;; ) {
        slot = slot_at(q, pos);
        word = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE);
        diff = seq_diff(word, pos);

        if (diff == 0) {
            if (__atomic_compare_exchange_n(&q->enqueue_pos, &pos, pos + 1,
                                            1, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
            {
                break;
            }
            /* pos now holds the current value; try again */

        } else if (diff < 0) {
            /* the slot still holds a record from one lap ago */
            if (count_refusal) {
                __atomic_fetch_add(&q->refused_full, 1, __ATOMIC_RELAXED);
            }
            return VQ_EFULL;

        } else {
            pos = __atomic_load_n(&q->enqueue_pos, __ATOMIC_RELAXED);
        }
    }

    /*
     * Claimed.  Record our pid before the first byte goes in; the CAS
     * fails only if we stalled right here and a reader closed the slot.
     */
    word = seq_word(pos, VQ_OWNER_NONE);
    if (!__atomic_compare_exchange_n(&slot->seq, &word,
                                     seq_word(pos, owner), 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    {
        return VQ_ESKIPPED;             /* counted by the reader */
    }

    memcpy(slot + 1, rec, len);
    slot->len = (uint32_t) len;

    /* only this process may move an owned slot on while it lives */
    __atomic_store_n(&slot->seq, seq_word(pos + 1, VQ_OWNER_NONE),
                     __ATOMIC_RELEASE);

    /* the next push's slot: its record likely about this one's size */
    prefetch_slot(q, pos + 1, len);

    if (at) {
        *at = pos;
    }

    return VQ_OK;
}

int
vq_queue_push(vq_queue_t *q, const void *rec, size_t len)
{
    return push(q, rec, len, 1, NULL);
}

int
vq_queue_push_pos(vq_queue_t *q, const void *rec, size_t len, uint64_t *pos)
{
    return push(q, rec, len, 1, pos);
}

int
vq_queue_requeue(vq_queue_t *q, const void *rec, size_t len)
{
    return push(q, rec, len, 0, NULL);
}

static inline int
pop(vq_queue_t *q, uint64_t end, void *buf, size_t cap, size_t *len)
{
    vq_slot_t  *slot;
    uint64_t    pos, word;
    int64_t     diff;
    size_t      n;

    pos = __atomic_load_n(&q->dequeue_pos, __ATOMIC_RELAXED);

    for ( ;; ) {
        if (pos >= end) {
            return VQ_EEMPTY;
        }

        slot = slot_at(q, pos);
        word = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE);
        diff = seq_diff(word, pos + 1);

        if (diff == 0) {
            if (__atomic_compare_exchange_n(&q->dequeue_pos, &pos, pos + 1,
                                            1, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
            {
                break;
            }

        } else if (diff == -1 && seq_owner(word) == VQ_OWNER_CLOSED) {
            /* given up (and counted) by vq_queue_skip(): pass over it */
            if (__atomic_compare_exchange_n(&q->dequeue_pos, &pos, pos + 1,
                                            1, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
            {
                __atomic_store_n(&slot->seq,
                                 seq_word(pos + q->capacity, VQ_OWNER_NONE),
                                 __ATOMIC_RELEASE);
                pos++;
            }

        } else if (diff < 0) {
            return VQ_EEMPTY;

        } else {
            pos = __atomic_load_n(&q->dequeue_pos, __ATOMIC_RELAXED);
        }
    }

    n = slot->len;
    if (n > cap) {
        n = cap;
    }

    /* the next pop's slot */
    prefetch_slot(q, pos + 1, n);

    memcpy(buf, slot + 1, n);
    *len = n;

    __atomic_store_n(&slot->seq, seq_word(pos + q->capacity, VQ_OWNER_NONE),
                     __ATOMIC_RELEASE);

    return VQ_OK;
}

int
vq_queue_pop(vq_queue_t *q, void *buf, size_t cap, size_t *len)
{
    return pop(q, UINT64_MAX, buf, cap, len);
}

int
vq_queue_pop_before(vq_queue_t *q, uint64_t end, void *buf, size_t cap,
    size_t *len)
{
    return pop(q, end, buf, cap, len);
}

uint32_t
vq_queue_wakes(const vq_queue_t *q)
{
    return __atomic_load_n(&q->wakes, __ATOMIC_SEQ_CST);
}

void
vq_queue_wait(vq_queue_t *q, uint32_t seen, int64_t ms)
{
    struct timespec  ts;

    if (ms <= 0) {
        return;
    }

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;

    /*
     * Counted before the kernel compares the word with seen: a producer
     * that bumped it since either sees the count and wakes us, or made
     * the comparison fail.  Not FUTEX_PRIVATE: the word is shared.
     */
    __atomic_fetch_add(&q->sleepers, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &q->wakes, FUTEX_WAIT, seen, &ts, NULL, 0);
    __atomic_fetch_sub(&q->sleepers, 1, __ATOMIC_SEQ_CST);
}

void
vq_queue_wake(vq_queue_t *q, int all)
{
    __atomic_fetch_add(&q->wakes, 1, __ATOMIC_SEQ_CST);

    if (__atomic_load_n(&q->sleepers, __ATOMIC_SEQ_CST) != 0) {
        syscall(SYS_futex, &q->wakes, FUTEX_WAKE, all ? INT_MAX : 1,
                NULL, NULL, 0);
    }
}

uint64_t
vq_queue_end(const vq_queue_t *q)
{
    return __atomic_load_n(&q->enqueue_pos, __ATOMIC_ACQUIRE);
}

void
vq_queue_raise_generation(vq_queue_t *q, uint32_t generation)
{
    uint32_t  g;

    g = __atomic_load_n(&q->generation, __ATOMIC_RELAXED);

    /* release: what its raiser pushes after it is seen after it */
    while ((int32_t) (generation - g) > 0
           && !__atomic_compare_exchange_n(&q->generation, &g, generation, 1,
                                           __ATOMIC_RELEASE,
                                           __ATOMIC_RELAXED))
    {
        /* g holds the current value: raise it, if still later */
    }
}

uint32_t
vq_queue_generation(const vq_queue_t *q)
{
    return __atomic_load_n(&q->generation, __ATOMIC_ACQUIRE);
}

uint64_t
vq_queue_stalled(const vq_queue_t *q, pid_t *writer)
{
    uint64_t  pos, word;
    uint32_t  owner;

    pos = __atomic_load_n(&q->dequeue_pos, __ATOMIC_RELAXED);

    /* read before the slot: a slot seen free for pos is then claimed */
    if (__atomic_load_n(&q->enqueue_pos, __ATOMIC_ACQUIRE) <= pos) {
        return VQ_QUEUE_NOT_STALLED;         /* empty */
    }

    word = __atomic_load_n(&slot_at(q, pos)->seq, __ATOMIC_ACQUIRE);
    owner = seq_owner(word);

    if (seq_diff(word, pos) != 0 || owner == VQ_OWNER_CLOSED) {
        return VQ_QUEUE_NOT_STALLED;
    }

    *writer = owner == VQ_OWNER_UNKNOWN ? -1 : (pid_t) owner;

    return pos;
}

int
vq_queue_skip(vq_queue_t *q, uint64_t pos, int no_pid_expired)
{
    vq_slot_t  *slot;
    uint64_t    word;
    uint32_t    owner;

    if (__atomic_load_n(&q->dequeue_pos, __ATOMIC_RELAXED) != pos
        || __atomic_load_n(&q->enqueue_pos, __ATOMIC_ACQUIRE) <= pos)
    {
        return VQ_EINVAL;
    }

    slot = slot_at(q, pos);
    word = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE);
    owner = seq_owner(word);

    if (seq_diff(word, pos) != 0 || owner == VQ_OWNER_CLOSED) {
        return VQ_EINVAL;                   /* published, or closed already */
    }

    if (owner == VQ_OWNER_NONE) {
        if (!no_pid_expired) {
            return VQ_EINVAL;
        }

    } else if (owner == VQ_OWNER_UNKNOWN
               || kill((pid_t) owner, 0) == 0 || errno != ESRCH)
    {
        /* alive, or not ours to signal (EPERM): it may still write */
        return VQ_EINVAL;
    }

    /*
     * From exactly the state judged above: a writer that recorded its pid
     * meanwhile, or a dead one that had published, keeps the slot.
     */
    if (!__atomic_compare_exchange_n(&slot->seq, &word,
                                     seq_word(pos, VQ_OWNER_CLOSED), 0,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    {
        return VQ_EINVAL;
    }

    __atomic_fetch_add(&q->skipped, 1, __ATOMIC_RELAXED);

    return VQ_OK;
}

void
vq_queue_get_stats(const vq_queue_t *q, vq_queue_stats_t *st)
{
    uint64_t  enq, deq;

    deq = __atomic_load_n(&q->dequeue_pos, __ATOMIC_RELAXED);
    enq = __atomic_load_n(&q->enqueue_pos, __ATOMIC_RELAXED);

    st->capacity = q->capacity;
    st->pushed = enq;
    st->popped = deq;
    st->used = enq > deq ? enq - deq : 0;
    st->refused_full = __atomic_load_n(&q->refused_full, __ATOMIC_RELAXED);
    st->refused_too_big = __atomic_load_n(&q->refused_too_big,
                                          __ATOMIC_RELAXED);
    st->skipped = __atomic_load_n(&q->skipped, __ATOMIC_RELAXED);
}
