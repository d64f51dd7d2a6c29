/*
 * A bounded multi-producer, multi-consumer queue of records over a
 * caller-provided memory region, which may be shared by several
 * processes (nginx workers) and their threads (exporters).
 *
 * The region holds a header and fixed-size slots, each with a sequence
 * number (Vyukov's bounded queue).  A push claims a slot with one
 * compare-and-swap, copies the record in and publishes it; it never waits
 * and never tears a record.  When no slot is free it refuses, returns
 * VQ_EFULL and counts the refusal.  The region must not be moved once
 * initialised; it may be attached again (after nginx -s reload) as long
 * as the slot size is the same.
 */

#ifndef VAQUERO_QUEUE_H
#define VAQUERO_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct vq_queue_s  vq_queue_t;

typedef struct {
    uint64_t  capacity;         /* slots */
    uint64_t  used;             /* slots holding a record, approximately */
    uint64_t  pushed;
    uint64_t  popped;
    uint64_t  refused_full;
    uint64_t  refused_too_big;
    uint64_t  skipped;          /* slots given up on: writer died mid-push */
} vq_queue_stats_t;

/* Smallest region that holds at least one slot of record_max bytes. */
size_t vq_queue_min_size(size_t record_max);

/* Formats a region; NULL when it is too small or badly aligned (need 64). */
vq_queue_t *vq_queue_init(void *mem, size_t size, size_t record_max);

/*
 * Attaches to a region formatted by vq_queue_init() with the same size
 * and record_max, keeping its records; NULL when it does not match.
 */
vq_queue_t *vq_queue_attach(void *mem, size_t size, size_t record_max);

/*
 * VQ_OK, VQ_EFULL or VQ_ETOOBIG; VQ_ESKIPPED if a reader gave up on the
 * slot while this push was writing it (see vq_queue_skip).  Never blocks.
 */
int vq_queue_push(vq_queue_t *q, const void *rec, size_t len);

/*
 * Copies the oldest record into buf (cap >= record_max) and sets *len.
 * VQ_OK or VQ_EEMPTY.  Never blocks.
 */
int vq_queue_pop(vq_queue_t *q, void *buf, size_t cap, size_t *len);

/*
 * A writer killed between claiming a slot and publishing it would stop
 * every reader at that slot.  vq_queue_stalled() returns the position of
 * the head slot if it is claimed but not published, else
 * VQ_QUEUE_NOT_STALLED.  A live writer publishes within nanoseconds, so a
 * reader that sees the same position stalled for a long time (a second)
 * may give it up with vq_queue_skip(q, pos): VQ_OK, or VQ_EINVAL if the
 * slot is no longer stalled at pos.  The skipped record is lost and
 * counted.
 */
#define VQ_QUEUE_NOT_STALLED  UINT64_MAX

uint64_t vq_queue_stalled(const vq_queue_t *q);
int vq_queue_skip(vq_queue_t *q, uint64_t pos);

void vq_queue_get_stats(const vq_queue_t *q, vq_queue_stats_t *stats);

#endif /* VAQUERO_QUEUE_H */
