/*
 * Counters shared by every process that records or exports spans.  The
 * structure lives in shared memory; update it only through these helpers.
 */

#ifndef VAQUERO_STATS_H
#define VAQUERO_STATS_H

#include <stdint.h>

/* Refusals by a full queue, or of a record too large, are counted by the queue. */
typedef struct {
    uint64_t  spans_recorded;
    uint64_t  spans_exported;
    uint64_t  spans_dropped_export_failed;
    uint64_t  export_requests;
    uint64_t  export_failures;
    uint64_t  export_retries;
    uint64_t  last_export_status;       /* HTTP status, 0: none or no answer */
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
