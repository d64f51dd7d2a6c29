/*
 * Counters shared by every process that records or exports spans.  The
 * structure lives in shared memory; update it only through these helpers.
 */

#ifndef VAQUERO_STATS_H
#define VAQUERO_STATS_H

#include <stdint.h>

/*
 * Each span is counted once.  The request path adds to spans_recorded
 * before its push; the queue counts the pushes it refuses (refused_full:
 * spans_dropped_queue_full, refused_too_big: spans_dropped_too_large) and
 * the records it gives up (skipped: the writer died mid-push, or stalled
 * before recording its pid); the exporter counts what it sends and what
 * it drops, including what it cannot requeue when stopping.  Once traffic
 * stops and the queue drains:
 *
 *   spans_recorded == spans_exported + spans_dropped_export_failed
 *                     + refused_full + refused_too_big + skipped
 */
typedef struct {
    uint64_t  spans_recorded;
    uint64_t  spans_exported;
    uint64_t  spans_dropped_export_failed;
    uint64_t  export_requests;
    uint64_t  export_failures;
    uint64_t  export_retries;
    uint64_t  last_export_status;       /* HTTP status, 0: none or no answer */
    uint64_t  spans_sampled_out;        /* never recorded: head sampling */
} vq_stats_t;

static inline void
vq_stats_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static inline void
vq_stats_set(uint64_t *gauge, uint64_t v)
{
    __atomic_store_n(gauge, v, __ATOMIC_RELAXED);
}

static inline uint64_t
vq_stats_get(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

#endif /* VAQUERO_STATS_H */
