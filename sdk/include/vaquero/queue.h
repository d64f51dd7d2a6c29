/*
 * A bounded multi-producer, multi-consumer queue of records over a
 * caller-provided memory region, which may be shared by several
 * processes (nginx workers) and their threads (exporters).
 *
 * The region holds a header and fixed-size slots, each with a sequence
 * number (Vyukov's bounded queue).  A push claims a slot, records its
 * process id in it, copies the record in and publishes it; it never waits
 * and never tears a record.  When no slot is free it refuses, returns
 * VQ_EFULL and counts the refusal.  The region must not be moved once
 * initialised; it may be attached again (after nginx -s reload) as long
 * as the slot size is the same.
 *
 * Every process that uses one queue must see the others' process ids as
 * they are (one pid namespace), and must be made with fork(), not with a
 * raw clone(): a slot is given up only when the process that claimed it
 * no longer exists (see vq_queue_skip).
 */

#ifndef VAQUERO_QUEUE_H
#define VAQUERO_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct vq_queue_s  vq_queue_t;

/*
 * After traffic stops and the queue is drained, every push ever made
 * ended in exactly one of: popped, refused_full, refused_too_big, skipped.
 * Records put back with vq_queue_requeue() count as pushed and popped
 * again, but never as refused.
 */
typedef struct {
    uint64_t  capacity;         /* slots */
    uint64_t  used;             /* slots claimed and not yet read, approx. */
    uint64_t  pushed;
    uint64_t  popped;           /* including the slots skipped */
    uint64_t  refused_full;
    uint64_t  refused_too_big;
    uint64_t  skipped;          /* records lost: writer died or was too late */
} vq_queue_stats_t;

/* Smallest region that holds two slots of record_max bytes (the least). */
size_t vq_queue_min_size(size_t record_max);

/*
 * Formats a region; NULL when it is badly aligned (need 64), or too small
 * for two slots: with one, a push could not tell a slot it may fill from
 * the one it has just filled.
 */
vq_queue_t *vq_queue_init(void *mem, size_t size, size_t record_max);

/*
 * Attaches to a region formatted by vq_queue_init() with the same size
 * and record_max, keeping its records; NULL when it does not match.
 */
vq_queue_t *vq_queue_attach(void *mem, size_t size, size_t record_max);

/*
 * VQ_OK, VQ_EFULL or VQ_ETOOBIG; VQ_ESKIPPED if this push stalled before
 * it could record its pid and a reader gave the slot up meanwhile (see
 * vq_queue_skip): nothing was written, and the record is counted as
 * skipped.  Never blocks and makes no system call (but the first push in
 * a process, which looks its pid up).
 */
int vq_queue_push(vq_queue_t *q, const void *rec, size_t len);

/*
 * vq_queue_push(), and, on VQ_OK, *pos: where the record went (0, 1, 2,
 * ... since the queue was made, over every producer), for producers that
 * wake consumers every so many records (vq_queue_wake()).
 */
int vq_queue_push_pos(vq_queue_t *q, const void *rec, size_t len,
    uint64_t *pos);

/*
 * Brings the slot the next push will most likely take into the cache, for
 * about len bytes: a producer calls it before building its record, so
 * that the push finds the slot there.  Only a hint; never fails.
 */
void vq_queue_prefetch(const vq_queue_t *q, size_t len);

/*
 * vq_queue_push() for a record that was popped and could not be dealt
 * with (an exporter stopping with an unsent batch): the same, but a
 * refusal is not counted, since the caller counts the record as dropped.
 */
int vq_queue_requeue(vq_queue_t *q, const void *rec, size_t len);

/*
 * Copies the oldest record into buf (cap >= record_max) and sets *len.
 * VQ_OK or VQ_EEMPTY.  Slots given up by vq_queue_skip() are passed over.
 * Never blocks.
 */
int vq_queue_pop(vq_queue_t *q, void *buf, size_t cap, size_t *len);

/*
 * A snapshot: vq_queue_end() is the position after the last push claimed
 * so far, and vq_queue_pop_before(q, end, ...) is vq_queue_pop() taking
 * only records pushed before end (VQ_EEMPTY past it), so that a consumer
 * can take what a queue held at some moment and nothing pushed later.
 */
uint64_t vq_queue_end(const vq_queue_t *q);
int vq_queue_pop_before(vq_queue_t *q, uint64_t end, void *buf, size_t cap,
    size_t *len);

/*
 * The queue's generation, a word for its consumers kept with it: the
 * latest generation (of a configuration, say) of the consumers that
 * drain it.  Raised, never lowered (generations compare modulo 2^32); 0
 * in a new queue.  A consumer that finds it later than its own knows that
 * a newer one drains the queue.
 */
void vq_queue_raise_generation(vq_queue_t *q, uint32_t generation);
uint32_t vq_queue_generation(const vq_queue_t *q);

/*
 * A writer killed between claiming a slot and publishing it would stop
 * every reader at that slot.  vq_queue_stalled() returns the position of
 * the head slot if it is claimed but not published, and the pid of the
 * process that claimed it in *writer (0 in the instant between the claim
 * and the writer recording its pid); otherwise VQ_QUEUE_NOT_STALLED.
 *
 * vq_queue_skip(q, pos, no_pid_expired) gives the stalled head slot at
 * pos up, counting the record as skipped, when its writer provably cannot
 * write it any more:
 *
 *   - its pid is recorded and that process no longer exists (kill(pid, 0)
 *     fails with ESRCH; a zombie still exists, and a pid reused by another
 *     process keeps the slot, so it errs on the side of waiting);
 *   - or no pid is recorded and the caller says it has seen the slot so
 *     for long enough (no_pid_expired; the exporter waits a second):
 *     the slot is then closed, so that a writer that was only slow finds
 *     it closed when it goes on, writes nothing, and gets VQ_ESKIPPED.
 *
 * A writer that is alive, however slow or stopped, keeps its slot.
 * Returns VQ_OK, or VQ_EINVAL when the slot is not (or no longer) stalled
 * at pos or its writer may still write it.  Makes one system call
 * (kill) when a pid is recorded.
 */
#define VQ_QUEUE_NOT_STALLED  UINT64_MAX

uint64_t vq_queue_stalled(const vq_queue_t *q, pid_t *writer);
int vq_queue_skip(vq_queue_t *q, uint64_t pos, int no_pid_expired);

void vq_queue_get_stats(const vq_queue_t *q, vq_queue_stats_t *stats);

/*
 * Consumers sleep until records come, in any process: the queue holds a
 * futex word that vq_queue_wake() bumps.  A consumer reads
 * vq_queue_wakes() before it looks at the queue and, finding nothing to
 * do, passes what it read to vq_queue_wait(): a wake in between ends the
 * wait at once, so none is lost.  vq_queue_wait() returns after a wake,
 * ms, or a signal.  vq_queue_wake() never blocks, and makes a system call
 * only when a consumer sleeps (or one was killed asleep); it wakes one of
 * them, or, with all, every one.  Producers call it every so many records
 * (vq_queue_push_pos()), and when the queue is full.
 */
uint32_t vq_queue_wakes(const vq_queue_t *q);
void vq_queue_wait(vq_queue_t *q, uint32_t seen, int64_t ms);
void vq_queue_wake(vq_queue_t *q, int all);

#endif /* VAQUERO_QUEUE_H */
