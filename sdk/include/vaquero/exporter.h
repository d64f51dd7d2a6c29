/*
 * The exporter: a thread that drains a queue, batches records and sends
 * them over HTTP with libcurl (one kept-alive connection).
 *
 * It allocates only at creation, never touches its caller's data after
 * vq_exporter_create() has copied the configuration, and blocks every
 * signal in its thread.  Problems worth a log line are kept for the owner
 * to fetch with vq_exporter_take_message(), at most one per interval.
 */

#ifndef VAQUERO_EXPORTER_H
#define VAQUERO_EXPORTER_H

#include <stddef.h>
#include <vaquero/queue.h>
#include <vaquero/span.h>
#include <vaquero/stats.h>

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
} vq_exporter_conf_t;

/* NULL on failure, with the reason in err. */
vq_exporter_t *vq_exporter_create(const vq_exporter_conf_t *conf,
    vq_queue_t *queue, vq_stats_t *stats, char *err, size_t err_size);
void vq_exporter_destroy(vq_exporter_t *ex);

int vq_exporter_start(vq_exporter_t *ex);

/*
 * Asks the thread to send what the queue holds and joins it; returns
 * within timeout_ms (plus scheduling), abandoning a transfer still
 * running then.  Spans it took but could not send go back to the queue.
 */
void vq_exporter_stop(vq_exporter_t *ex, unsigned timeout_ms);

/*
 * Sends spans as one batch, now, in the calling thread (not while the
 * thread runs).  VQ_OK when the collector answered 2xx.
 */
int vq_exporter_send(vq_exporter_t *ex, const vq_span_t *const *spans,
    size_t n);

/* Copies the pending log message, if any, and clears it; returns its length. */
size_t vq_exporter_take_message(vq_exporter_t *ex, char *buf, size_t size);

#endif /* VAQUERO_EXPORTER_H */
