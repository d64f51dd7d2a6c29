/*
 * The exporter: a thread that drains queues, batches records and sends
 * them over HTTP with libcurl (one kept-alive connection).
 *
 * It allocates only at creation, never touches its caller's data after
 * vq_exporter_create() has copied the configuration, and blocks every
 * signal in its thread.  Problems worth a log line are kept for the owner
 * to fetch with vq_exporter_take_message(), at most one per interval.
 *
 * Generations.  Each record carries the generation of the configuration
 * that recorded it (vq_span_head_t.generation), and configurations come
 * and go (nginx -s reload) while their records wait in a queue shared
 * with exporters of other generations.  An exporter sends records of its
 * own generation and earlier ones, each batch with the resource of the
 * generation that recorded its records (from conf.resources; batches are
 * split where it changes; X-Project-ID is the batch's), and never a
 * record of a later generation: it puts such a record back for the
 * exporters of its own configuration, which carry its resource, endpoint
 * and key.  Starting, an exporter raises each of its queues' generation
 * (vq_queue_raise_generation) to its own; one that finds a queue's
 * generation later than its own is superseded on that queue: it finishes
 * the batch it holds and takes nothing more from it until it stops.
 */

#ifndef VAQUERO_EXPORTER_H
#define VAQUERO_EXPORTER_H

#include <stddef.h>
#include <stdint.h>
#include <vaquero/queue.h>
#include <vaquero/resources.h>
#include <vaquero/span.h>
#include <vaquero/stats.h>

#define VQ_EXPORTER_MAX_QUEUES  8

typedef struct vq_exporter_s  vq_exporter_t;

typedef struct {
    const char  *endpoint;              /* http(s)://host[:port][/base] */
    const char  *api_key;               /* NULL: no Authorization header */
    const char  *project_id;            /* NULL: no X-Project-ID header */
    const char  *service_name;
    const char  *environment;
    const char  *user_agent;
    size_t       batch_size;            /* spans per request body, >= 1 */
    unsigned     flush_interval_ms;     /* longest a span waits in a batch */
    unsigned     export_timeout_ms;     /* one HTTP request */

    /*
     * The configuration's generation, and the resource of each generation
     * up to it (copied; NULL: service_name, project_id and environment
     * above for every record).  A record of a generation older than the
     * table keeps goes with those too, and a message says so.
     */
    uint32_t               generation;
    const vq_resources_t  *resources;
} vq_exporter_conf_t;

/*
 * NULL on failure, with the reason in err.  The queue is the exporter's
 * own, which it sends from; its counters (stats) get those of the spans
 * sent and of the export requests.
 */
vq_exporter_t *vq_exporter_create(const vq_exporter_conf_t *conf,
    vq_queue_t *queue, vq_stats_t *stats, char *err, size_t err_size);
void vq_exporter_destroy(vq_exporter_t *ex);

/*
 * Another queue to drain, before vq_exporter_start(): an earlier
 * configuration's, say, that old processes may still write to.  Its
 * records are moved into the exporter's own queue as that one has room,
 * and sent from there; a record moved counts as recorded in the own
 * queue's counters (stats are this queue's, for records lost on the way).
 * So no record is ever held out of the queue it is counted in, and this
 * queue is done with as soon as it is empty.  VQ_OK, VQ_EFULL past
 * VQ_EXPORTER_MAX_QUEUES, VQ_EINVAL while the thread runs.
 */
int vq_exporter_add_queue(vq_exporter_t *ex, vq_queue_t *queue,
    vq_stats_t *stats);

/* Raises its queues' generation to conf.generation and starts the thread. */
int vq_exporter_start(vq_exporter_t *ex);

/*
 * Asks the thread to stop and joins it; returns within timeout_ms (plus
 * scheduling), abandoning a transfer still running then.  Before that it
 * sends the batch it holds and what its queues held when it was asked to
 * stop, but not what was pushed after, and none of a later generation
 * (what it finds of one ends its drain of that queue).  Spans it took but
 * could not send go back to their queue.
 */
void vq_exporter_stop(vq_exporter_t *ex, unsigned timeout_ms);

/*
 * Sends spans as one batch, with the exporter's own resource, now, in
 * the calling thread (not while the thread runs).  VQ_OK when the
 * collector answered 2xx.
 */
int vq_exporter_send(vq_exporter_t *ex, const vq_span_t *const *spans,
    size_t n);

/* Copies the pending log message, if any, and clears it; returns its length. */
size_t vq_exporter_take_message(vq_exporter_t *ex, char *buf, size_t size);

#endif /* VAQUERO_EXPORTER_H */
