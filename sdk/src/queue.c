/*
 * Bounded MPMC queue over shared memory (Dmitry Vyukov's algorithm,
 * with any number of slots rather than a power of two).
 *
 * Slot i starts with seq == i.  A producer that reads enqueue position
 * pos owns slot pos % capacity when its seq equals pos and it wins the
 * CAS on enqueue_pos; it copies the record and sets seq = pos + 1.  A
 * consumer at dequeue position pos takes the slot when seq == pos + 1 and
 * hands it back with seq = pos + capacity.  A record is only visible once
 * it is complete, so readers never see a torn one.
 *
 * A producer killed between claiming and publishing would leave its slot
 * at seq == pos forever, and every consumer stuck in front of it.  So the
 * producer publishes with a compare-and-swap, and a consumer that has
 * seen the head slot in that state for long enough may skip it with a
 * compare-and-swap of its own (vq_queue_skip): exactly one of the two
 * wins, and a producer that loses knows its record was dropped.
 */

#include <string.h>

#include <vaquero/vaquero.h>

#define VQ_QUEUE_MAGIC    0x5651554555453031ULL     /* "VQUEUE01" */
#define VQ_CACHE_LINE     64

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

    char      slots[] __attribute__((aligned(VQ_CACHE_LINE)));
};

static size_t
slot_size(size_t record_max)
{
    return align_up(sizeof(vq_slot_t) + record_max, 64);
}

static inline vq_slot_t *
slot_at(vq_queue_t *q, uint64_t pos)
{
    return (vq_slot_t *) (q->slots + (pos % q->capacity) * q->slot_size);
}

size_t
vq_queue_min_size(size_t record_max)
{
    return sizeof(vq_queue_t) + slot_size(record_max);
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
        slot_at(q, i)->seq = i;
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
        || q->slot_size != slot_size(record_max))
    {
        return NULL;
    }

    return q;
}

int
vq_queue_push(vq_queue_t *q, const void *rec, size_t len)
{
    vq_slot_t  *slot;
    uint64_t    pos, seq;
    int64_t     diff;

    if (len > q->record_max) {
        __atomic_fetch_add(&q->refused_too_big, 1, __ATOMIC_RELAXED);
        return VQ_ETOOBIG;
    }

    pos = __atomic_load_n(&q->enqueue_pos, __ATOMIC_RELAXED);

    for ( ;; ) {
        slot = slot_at(q, pos);
        seq = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE);
        diff = (int64_t) (seq - pos);

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
            __atomic_fetch_add(&q->refused_full, 1, __ATOMIC_RELAXED);
            return VQ_EFULL;

        } else {
            pos = __atomic_load_n(&q->enqueue_pos, __ATOMIC_RELAXED);
        }
    }

    memcpy(slot + 1, rec, len);
    slot->len = (uint32_t) len;

    seq = pos;
    if (!__atomic_compare_exchange_n(&slot->seq, &seq, pos + 1, 0,
                                     __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    {
        /* a reader gave up waiting for this slot (vq_queue_skip) */
        return VQ_ESKIPPED;
    }

    return VQ_OK;
}

int
vq_queue_pop(vq_queue_t *q, void *buf, size_t cap, size_t *len)
{
    vq_slot_t  *slot;
    uint64_t    pos, seq;
    int64_t     diff;
    size_t      n;

    pos = __atomic_load_n(&q->dequeue_pos, __ATOMIC_RELAXED);

    for ( ;; ) {
        slot = slot_at(q, pos);
        seq = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE);
        diff = (int64_t) (seq - (pos + 1));

        if (diff == 0) {
            if (__atomic_compare_exchange_n(&q->dequeue_pos, &pos, pos + 1,
                                            1, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
            {
                break;
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

    memcpy(buf, slot + 1, n);
    *len = n;

    __atomic_store_n(&slot->seq, pos + q->capacity, __ATOMIC_RELEASE);

    return VQ_OK;
}

uint64_t
vq_queue_stalled(const vq_queue_t *q)
{
    vq_slot_t  *slot;
    uint64_t    pos;

    pos = __atomic_load_n(&q->dequeue_pos, __ATOMIC_RELAXED);

    if (__atomic_load_n(&q->enqueue_pos, __ATOMIC_RELAXED) <= pos) {
        return VQ_QUEUE_NOT_STALLED;         /* empty */
    }

    slot = slot_at((vq_queue_t *) q, pos);

    if (__atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE) != pos) {
        return VQ_QUEUE_NOT_STALLED;
    }

    return pos;
}

int
vq_queue_skip(vq_queue_t *q, uint64_t pos)
{
    vq_slot_t  *slot;
    uint64_t    seq;

    if (__atomic_load_n(&q->dequeue_pos, __ATOMIC_RELAXED) != pos
        || __atomic_load_n(&q->enqueue_pos, __ATOMIC_RELAXED) <= pos)
    {
        return VQ_EINVAL;
    }

    slot = slot_at(q, pos);

    /* free the slot for the next lap; the late producer's publish now fails */
    seq = pos;
    if (!__atomic_compare_exchange_n(&slot->seq, &seq, pos + q->capacity, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
    {
        return VQ_EINVAL;                   /* published after all */
    }

    /* no other reader moves past a slot in this state, so this succeeds */
    __atomic_store_n(&q->dequeue_pos, pos + 1, __ATOMIC_RELEASE);
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
