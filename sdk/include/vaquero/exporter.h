/*
 * The exporter: a thread that drains queues, batches records, encodes
 * each batch in a wire format (vaquero/protocol.h) and hands it to a
 * transport (vaquero/transport.h): HTTP with libcurl (a kept-alive
 * connection, and a second one for a second request in flight when the
 * queue holds more than a batch; TLS, gzip), or a file, a line per batch.
 *
 * Delivery: a batch answered 2xx is sent; 3xx (a redirect: the endpoint
 * is wrong) and 4xx other than 408 and 429 drop it (counted as an export
 * failure and as spans_dropped_export_failed); anything else (5xx, 408,
 * 429, no answer, a file that cannot be written) is retried with
 * exponential backoff and jitter, or after the Retry-After of a 429 or a
 * 503, at most VQ_RETRY_AFTER_MAX_MS.
 *
 * It allocates only at creation, never touches its caller's data after
 * vq_exporter_create() has copied the configuration, and blocks every
 * signal in its thread.  Problems worth a log line are kept for the owner
 * to fetch with vq_exporter_take_message(), at most one per interval,
 * with the number of failed exports and of spans dropped since the last.
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
#include <vaquero/encode.h>
#include <vaquero/protocol.h>
#include <vaquero/queue.h>
#include <vaquero/resources.h>
#include <vaquero/span.h>
#include <vaquero/stats.h>
#include <vaquero/transport.h>

#define VQ_EXPORTER_MAX_QUEUES   8
#define VQ_EXPORTER_MAX_HEADERS  32     /* conf.headers */

/* how bad what vq_exporter_take_message() gives is */
#define VQ_LOG_ERROR  1     /* spans lost or not delivered */
#define VQ_LOG_WARN   2
#define VQ_LOG_INFO   3

typedef struct vq_exporter_s  vq_exporter_t;

typedef struct {
    const char  *endpoint;              /* see vaquero/endpoint.h */
    const vq_protocol_t  *protocol;     /* NULL: vq_protocol_vaquero */
    const char  *api_key;               /* NULL: no Authorization header */
    const char  *project_id;            /* NULL: none (no X-Project-ID) */
    const char  *service_name;
    const char  *environment;
    const char  *user_agent;
    size_t       batch_size;            /* spans per request body, >= 1 */
    unsigned     flush_interval_ms;     /* longest a span waits in a batch */
    unsigned     export_timeout_ms;     /* one HTTP request */

    /* more resource attributes (OTLP), e.g. service.version; copied */
    const vq_kv_t  *resource_attributes;
    size_t          nresource_attributes;

    /* more request headers, after the exporter's own; copied */
    const vq_kv_t  *headers;
    size_t          nheaders;

    /* HTTP: see vq_http_conf_t */
    int            gzip;
    vq_tls_conf_t  tls;

    /*
     * A file endpoint: a descriptor of the file (opened O_APPEND) that
     * the exporter takes over, whether it is created or not; 0 or less:
     * the exporter opens the path itself.
     */
    int          file_fd;

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

/*
 * From any thread: a file endpoint is opened again by its path before the
 * next write ("nginx -s reopen", logrotate).
 */
void vq_exporter_reopen(vq_exporter_t *ex);

/*
 * Copies the pending log message, if any, and its level (VQ_LOG_*), and
 * clears it; returns its length.  While the thread runs, at most one
 * message per interval; once it is stopped, whatever it said last.  A
 * notice said once (the exporter found it must change how it sends)
 * comes first, whatever the interval, and is not replaced by messages.
 */
size_t vq_exporter_take_message(vq_exporter_t *ex, char *buf, size_t size,
    int *level);

#endif /* VAQUERO_EXPORTER_H */
