/*
 * The exporter thread: queue -> batch -> body -> transport.
 *
 * The thread knows neither the wire format nor how a body travels: the
 * protocol (vaquero/protocol.h) encodes a batch and says which path,
 * content type and project header go with it; the transport
 * (vaquero/transport.h) takes the body to an HTTP collector or a file.
 * What is here is batching, the retry policy, the stop, generations, and
 * what gets reported.
 *
 * A batch holds records of one resource (the table's entry for their
 * generations): the first record that does not belong waits aside and
 * starts the next one.  Records of the other queues are moved into the
 * exporter's own before they are sent.
 *
 * There are two lanes, each a batch with its body and result, and an
 * HTTP exporter has two transports (two connections).  One is enough
 * while the collector keeps up.  When a request is sent and the queue
 * still holds a batch's worth, the next batch goes on the other lane and
 * connection before the first answer is read: two requests in flight, so
 * that a collector far away (batch_size / its answer time) does not cap
 * what a worker can export.  A batch sent alone (a retry) takes the first
 * connection, so that a collector that serves one connection at a time
 * still gets it; one that is found to (no answer on the second
 * connection while the first was answered) gets no second request in
 * flight again.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* pthread_setname_np() */
#endif

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vaquero/vaquero.h>
#include <vaquero/endpoint.h>
#include "transport.h"

#define VQ_SHORT_POLL_MS      10        /* a stalled head, a kept queue */
#define VQ_MESSAGE_INTERVAL   10000     /* ms between two log messages */
#define VQ_BACKOFF_MIN_MS     100
#define VQ_BACKOFF_MAX_MS     10000
#define VQ_STALL_MS           1000      /* a claimed slot's writer has no pid */
#define VQ_STALL_WARN_MS      10000     /* a live writer holds the queue head */
#define VQ_MOVE_MAX           1024      /* records moved between two batches */
#define VQ_OVERLAP_MAX        16        /* batches sent back to back, overlapped */

typedef struct {
    vq_transport_t       *transport;        /* the one it was sent with */
    vq_send_result_t      result;
    vq_buf_t              body;
    vq_span_t            *batch;            /* batch_size records */
    const vq_span_t     **spans;
    size_t                count;
    size_t                encoded;          /* of count, in the last body */
    const vq_resource_t  *entry;            /* the batch's resource */
    int64_t               batch_started;    /* monotonic ms */
    int                   begun;            /* the transport has it */
    int                   in_flight;        /* begun, not finished */
    int                   overlapped;       /* begun while the other was */
} vq_lane_t;

typedef struct {
    vq_queue_t           *queue;
    vq_stats_t           *stats;
    uint64_t              stalled_pos;      /* queue head seen stalled ... */
    pid_t                 stalled_writer;   /* ... claimed by this pid ... */
    int64_t               stalled_since;    /* ... since then (monotonic ms) */
    int                   stalled_warned;
    int                   superseded;       /* a later generation drains it */
    int                   drained;          /* stopping: nothing more here */
    uint64_t              end;              /* stopping: take only before it */
    uint64_t              idle_end;         /* its end when last idle */
} vq_source_t;

struct vq_exporter_s {
    vq_exporter_conf_t    conf;
    const vq_protocol_t  *protocol;
    char                 *target;           /* URL or path, for messages */
    char                  hostname[256];
    vq_resource_t         res;              /* the configuration's own */
    vq_kv_t              *res_attrs;        /* its extra attributes */
    vq_kv_t              *headers;          /* extra export headers */
    vq_resources_t       *resources;        /* by generation, or NULL */
    vq_resource_t         batch_res;        /* the batch's, when not res */

    vq_source_t           sources[VQ_EXPORTER_MAX_QUEUES];  /* [0]: own */
    size_t                nsources;
    vq_span_t            *moving;           /* a record between two queues */
    int                   draining;         /* stopping: the snapshot only */
    int                   old_warned;

    int                   headers_set;
    char                 *headers_project;  /* the project header's value */

    vq_transport_t       *transports[2];    /* [1]: HTTP only */
    size_t                ntransports;
    int                   serial;           /* one request at a time */
    vq_lane_t             lanes[2];
    vq_lane_t            *lane;             /* the one filled */
    vq_span_t            *next_span;        /* the next batch's first */
    int                   next;             /*   record, when set */
    const vq_resource_t  *next_entry;
    int64_t               last_empty;       /* the queues last seen empty */
    unsigned              failures;         /* consecutive */
    unsigned              seed;             /* backoff jitter */

    pthread_t             thread;
    int                   running;
    pthread_mutex_t       lock;
    pthread_cond_t        cond;
    int                   stopping;         /* under lock */
    int64_t               abort_at;         /* atomic; 0: no deadline */

    /* under lock: what the owner logs, at most one message per interval */
    char                  notice[256];      /* said once, given first */
    int                   notice_level;     /* 0: none */
    char                  message[256];
    int                   message_level;    /* 0: none */
    int64_t               message_taken;
    time_t                window_start;     /* counting since then */
    uint64_t              window_failures;  /* export attempts failed */
    uint64_t              window_dropped;   /* spans the exporter dropped */
};

static char *
copy_string(const char *s)
{
    return s ? strdup(s) : NULL;
}

/*
 * The message for the owner's log.  A pending message is replaced by a
 * later one, which keeps the level of the worst: a recovery that follows
 * failures within the interval is logged as they would have been, with
 * their count (see vq_exporter_take_message()).
 */
static void
set_message(vq_exporter_t *ex, int level, const char *fmt, ...)
{
    va_list  args;

    pthread_mutex_lock(&ex->lock);

    va_start(args, fmt);
    vsnprintf(ex->message, sizeof(ex->message), fmt, args);
    va_end(args);

    if (ex->message_level == 0 || level < ex->message_level) {
        ex->message_level = level;
    }

    pthread_mutex_unlock(&ex->lock);
}

/* A notice said once: taken before the message, and not replaced by it. */
static void
set_notice(vq_exporter_t *ex, int level, const char *fmt, ...)
{
    va_list  args;

    pthread_mutex_lock(&ex->lock);

    va_start(args, fmt);
    vsnprintf(ex->notice, sizeof(ex->notice), fmt, args);
    va_end(args);

    ex->notice_level = level;

    pthread_mutex_unlock(&ex->lock);
}

/* Counted into the next message. */
static void
count_failure(vq_exporter_t *ex, uint64_t dropped)
{
    pthread_mutex_lock(&ex->lock);
    ex->window_failures++;
    ex->window_dropped += dropped;
    pthread_mutex_unlock(&ex->lock);
}

size_t
vq_exporter_take_message(vq_exporter_t *ex, char *buf, size_t size,
    int *level)
{
    size_t     len;
    int64_t    now;
    struct tm  tm;
    char       since[32];

    if (size == 0) {
        return 0;
    }

    now = vq_monotonic_ms();
    len = 0;

    pthread_mutex_lock(&ex->lock);

    if (ex->notice_level != 0) {
        len = (size_t) snprintf(buf, size, "%s", ex->notice);
        if (len >= size) {
            len = size - 1;
        }

        if (level) {
            *level = ex->notice_level;
        }

        ex->notice_level = 0;
        pthread_mutex_unlock(&ex->lock);

        return len;
    }

    /* once the thread is stopped, what it said last is always given */
    if (ex->message_level != 0
        && (ex->message_taken == 0 || !ex->running
            || now - ex->message_taken >= VQ_MESSAGE_INTERVAL))
    {
        len = (size_t) snprintf(buf, size, "%s", ex->message);

        if (ex->window_failures || ex->window_dropped) {
            gmtime_r(&ex->window_start, &tm);
            strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);

            if (len < size) {
                len += (size_t) snprintf(buf + len, size - len,
                                         " (since %s: %llu failed exports, "
                                         "%llu spans dropped as "
                                         "undeliverable)", since,
                                         (unsigned long long)
                                             ex->window_failures,
                                         (unsigned long long)
                                             ex->window_dropped);
            }
        }

        if (len >= size) {
            len = size - 1;
        }

        if (level) {
            *level = ex->message_level;
        }

        ex->message[0] = '\0';
        ex->message_level = 0;
        ex->message_taken = now;
        ex->window_start = time(NULL);
        ex->window_failures = 0;
        ex->window_dropped = 0;
    }

    pthread_mutex_unlock(&ex->lock);

    return len;
}

static int
same_string(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static char *
header_line(const char *name, const char *value1, const char *value2)
{
    char    *line;
    size_t   len;

    len = strlen(name) + 2 + strlen(value1) + strlen(value2) + 1;

    line = malloc(len);
    if (line != NULL) {
        snprintf(line, len, "%s: %s%s", name, value1, value2);
    }

    return line;
}

/*
 * The request headers, with the protocol's project header for project
 * (none if NULL): made again only when the project changes.
 */
static int
set_headers(vq_exporter_t *ex, const char *project)
{
    const vq_protocol_t  *p;
    char                 *lines[4 + VQ_EXPORTER_MAX_HEADERS], *copy;
    size_t                n, i;
    int                   rc;

    if (ex->headers_set && same_string(project, ex->headers_project)) {
        return VQ_OK;
    }

    p = ex->protocol;
    n = 0;
    rc = VQ_ENOMEM;

    lines[n++] = header_line("Content-Type", p->content_type, "");
    lines[n++] = header_line("User-Agent", ex->conf.user_agent, "");

    if (ex->conf.api_key) {
        lines[n++] = header_line("Authorization", "Bearer ",
                                 ex->conf.api_key);
    }

    if (p->project_header && project) {
        lines[n++] = header_line(p->project_header, project, "");
    }

    for (i = 0; i < ex->conf.nheaders; i++) {
        lines[n++] = header_line(ex->headers[i].key, ex->headers[i].value, "");
    }

    for (i = 0; i < n; i++) {
        if (lines[i] == NULL) {
            goto done;
        }
    }

    copy = NULL;
    if (project && (copy = strdup(project)) == NULL) {
        goto done;
    }

    for (i = 0; i < ex->ntransports; i++) {
        rc = vq_transport_set_headers(ex->transports[i],
                                      (const char *const *) lines, n);
        if (rc != VQ_OK) {
            /* the lanes may differ now: all are set again next time */
            ex->headers_set = 0;
            free(copy);
            goto done;
        }
    }

    free(ex->headers_project);
    ex->headers_project = copy;
    ex->headers_set = 1;

done:

    /* they may hold the key: do not leave copies of it lying around */
    for (i = 0; i < n; i++) {
        if (lines[i]) {
            memset(lines[i], 0, strlen(lines[i]));
            free(lines[i]);
        }
    }

    return rc;
}

static vq_kv_t *
copy_kv(const vq_kv_t *kv, size_t n)
{
    vq_kv_t  *c;
    size_t    i;

    c = calloc(n ? n : 1, sizeof(vq_kv_t));
    if (c == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        c[i].key = copy_string(kv[i].key);
        c[i].value = copy_string(kv[i].value);

        if (c[i].key == NULL || c[i].value == NULL) {
            break;
        }
    }

    if (i < n) {
        for (i = 0; i < n; i++) {
            free((char *) c[i].key);
            free((char *) c[i].value);
        }
        free(c);
        return NULL;
    }

    return c;
}

static void
free_kv(vq_kv_t *kv, size_t n)
{
    size_t  i;

    if (kv == NULL) {
        return;
    }

    for (i = 0; i < n; i++) {
        if (kv[i].value) {
            memset((char *) kv[i].value, 0, strlen(kv[i].value));
        }
        free((char *) kv[i].key);
        free((char *) kv[i].value);
    }

    free(kv);
}

static vq_transport_t *
create_transport(vq_exporter_t *ex, const vq_exporter_conf_t *conf, int kind,
    char *err, size_t err_size)
{
    vq_http_conf_t   hc;
    vq_transport_t  *t;
    char            *url;

    if (kind == VQ_ENDPOINT_FILE) {
        return vq_transport_file_create(vq_endpoint_file_path(conf->endpoint),
                                        conf->file_fd > 0 ? conf->file_fd : -1,
                                        err, err_size);
    }

    if (conf->file_fd > 0) {
        close(conf->file_fd);
    }

    url = vq_endpoint_url(conf->endpoint, ex->protocol->path);
    if (url == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }

    memset(&hc, 0, sizeof(vq_http_conf_t));
    hc.url = url;
    hc.timeout_ms = conf->export_timeout_ms;
    hc.gzip = conf->gzip;
    hc.tls = conf->tls;

    t = vq_transport_http_create(&hc, err, err_size);
    free(url);

    return t;
}

vq_exporter_t *
vq_exporter_create(const vq_exporter_conf_t *conf, vq_queue_t *queue,
    vq_stats_t *stats, char *err, size_t err_size)
{
    vq_exporter_t       *ex;
    vq_exporter_conf_t   second;
    const char          *ep;
    int                  kind;
    char                 why[128];
    pthread_condattr_t   cattr;

    ep = conf->endpoint ? conf->endpoint : "";

    kind = vq_endpoint_check(ep, strlen(ep), why, sizeof(why));

    if (kind < 0) {
        snprintf(err, err_size, "endpoint \"%s\": %s", ep, why);
        if (conf->file_fd > 0) {
            close(conf->file_fd);
        }
        return NULL;
    }

    if (conf->batch_size == 0 || conf->user_agent == NULL
        || conf->service_name == NULL || conf->environment == NULL
        || conf->nheaders > VQ_EXPORTER_MAX_HEADERS
        || (conf->protocol && conf->protocol->binary
            && kind == VQ_ENDPOINT_FILE))
    {
        snprintf(err, err_size, (conf->protocol && conf->protocol->binary
                                 && kind == VQ_ENDPOINT_FILE)
                                ? "the %s protocol is binary: it cannot be "
                                  "written to a file endpoint"
                                : "incomplete exporter configuration",
                 conf->protocol ? conf->protocol->name : "");
        if (conf->file_fd > 0) {
            close(conf->file_fd);
        }
        return NULL;
    }

    ex = calloc(1, sizeof(vq_exporter_t));
    if (ex == NULL) {
        snprintf(err, err_size, "out of memory");
        if (conf->file_fd > 0) {
            close(conf->file_fd);
        }
        return NULL;
    }

    /* idle waits measured on a clock that wall-clock changes do not move */
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_mutex_init(&ex->lock, NULL);
    pthread_cond_init(&ex->cond, &cattr);
    pthread_condattr_destroy(&cattr);
    vq_buf_init(&ex->lanes[0].body);
    vq_buf_init(&ex->lanes[1].body);
    ex->lane = &ex->lanes[0];

    ex->conf = *conf;
    ex->protocol = conf->protocol ? conf->protocol : &vq_protocol_vaquero;
    ex->seed = (unsigned) getpid() ^ (unsigned) vq_monotonic_ms();
    ex->window_start = time(NULL);
    /* the caller's memory: only the copies below are used */
    ex->conf.resources = NULL;
    ex->conf.resource_attributes = NULL;
    ex->conf.headers = NULL;
    memset(&ex->conf.tls, 0, sizeof(vq_tls_conf_t));

    ex->conf.endpoint = copy_string(conf->endpoint);
    ex->conf.api_key = copy_string(conf->api_key);
    ex->conf.project_id = copy_string(conf->project_id);
    ex->conf.service_name = copy_string(conf->service_name);
    ex->conf.environment = copy_string(conf->environment);
    ex->conf.user_agent = copy_string(conf->user_agent);
    ex->res_attrs = copy_kv(conf->resource_attributes,
                            conf->nresource_attributes);
    ex->headers = copy_kv(conf->headers, conf->nheaders);

    ex->lanes[0].batch = malloc(conf->batch_size * sizeof(vq_span_t));
    ex->lanes[0].spans = malloc(conf->batch_size * sizeof(vq_span_t *));
    ex->next_span = malloc(sizeof(vq_span_t));
    ex->moving = malloc(sizeof(vq_span_t));

    if (conf->resources) {
        ex->resources = vq_resources_copy(conf->resources);
    }

    if (ex->conf.endpoint == NULL || ex->conf.service_name == NULL
        || ex->conf.environment == NULL || ex->conf.user_agent == NULL
        || (conf->api_key && ex->conf.api_key == NULL)
        || (conf->project_id && ex->conf.project_id == NULL)
        || ex->res_attrs == NULL || ex->headers == NULL
        || ex->lanes[0].batch == NULL || ex->lanes[0].spans == NULL
        || ex->next_span == NULL || ex->moving == NULL || (conf->resources && ex->resources == NULL))
    {
        snprintf(err, err_size, "out of memory");
        if (conf->file_fd > 0) {
            close(conf->file_fd);
        }
        vq_exporter_destroy(ex);
        return NULL;
    }

    if (gethostname(ex->hostname, sizeof(ex->hostname) - 1) != 0) {
        strcpy(ex->hostname, "unknown");
    }

    ex->res.service_name = ex->conf.service_name;
    ex->res.project_id = ex->conf.project_id;
    ex->res.environment = ex->conf.environment;
    ex->res.hostname = ex->hostname;
    ex->res.sdk_version = VQ_VERSION;
    ex->res.attributes = ex->res_attrs;
    ex->res.nattributes = conf->nresource_attributes;

    /* takes conf->file_fd over, whatever happens */
    ex->transports[0] = create_transport(ex, conf, kind, err, err_size);

    if (ex->transports[0] == NULL) {
        vq_exporter_destroy(ex);
        return NULL;
    }

    ex->ntransports = 1;

    if (vq_transport_overlaps(ex->transports[0])) {
        second = *conf;
        second.file_fd = -1;            /* closed already */

        ex->transports[1] = create_transport(ex, &second, kind, err,
                                             err_size);
        if (ex->transports[1] == NULL) {
            vq_exporter_destroy(ex);
            return NULL;
        }

        ex->lanes[1].batch = malloc(conf->batch_size * sizeof(vq_span_t));
        ex->lanes[1].spans = malloc(conf->batch_size
                                    * sizeof(vq_span_t *));

        if (ex->lanes[1].batch == NULL || ex->lanes[1].spans == NULL) {
            snprintf(err, err_size, "out of memory");
            vq_exporter_destroy(ex);
            return NULL;
        }

        ex->ntransports = 2;
    }

    ex->target = copy_string(vq_transport_target(ex->transports[0]));

    if (ex->target == NULL || set_headers(ex, ex->conf.project_id) != VQ_OK) {
        snprintf(err, err_size, "out of memory");
        vq_exporter_destroy(ex);
        return NULL;
    }

    (void) vq_exporter_add_queue(ex, queue, stats);

    return ex;
}

int
vq_exporter_add_queue(vq_exporter_t *ex, vq_queue_t *queue,
    vq_stats_t *stats)
{
    vq_source_t  *s;

    if (ex->running) {
        return VQ_EINVAL;
    }

    if (ex->nsources == VQ_EXPORTER_MAX_QUEUES) {
        return VQ_EFULL;
    }

    s = &ex->sources[ex->nsources++];

    memset(s, 0, sizeof(vq_source_t));
    s->queue = queue;
    s->stats = stats;
    s->stalled_pos = VQ_QUEUE_NOT_STALLED;

    return VQ_OK;
}

void
vq_exporter_destroy(vq_exporter_t *ex)
{
    size_t  i;

    if (ex == NULL) {
        return;
    }

    if (ex->running) {
        vq_exporter_stop(ex, 0);
    }

    for (i = 0; i < 2; i++) {
        vq_transport_destroy(ex->transports[i]);
        vq_buf_free(&ex->lanes[i].body);
        free(ex->lanes[i].batch);
        free(ex->lanes[i].spans);
    }

    vq_resources_destroy(ex->resources);

    if (ex->conf.api_key) {
        memset((char *) ex->conf.api_key, 0, strlen(ex->conf.api_key));
    }

    free((char *) ex->conf.endpoint);
    free((char *) ex->conf.api_key);
    free((char *) ex->conf.project_id);
    free((char *) ex->conf.service_name);
    free((char *) ex->conf.environment);
    free((char *) ex->conf.user_agent);
    free_kv(ex->res_attrs, ex->conf.nresource_attributes);
    free_kv(ex->headers, ex->conf.nheaders);
    free(ex->headers_project);
    free(ex->target);
    free(ex->next_span);
    free(ex->moving);

    pthread_mutex_destroy(&ex->lock);
    pthread_cond_destroy(&ex->cond);

    free(ex);
}

/*
 * Encodes spans with the protocol and hands the body to the lane's
 * transport, which sends it; finish_post() waits for the answer.
 */
static void
begin_post(vq_exporter_t *ex, vq_lane_t *lane, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n)
{
    vq_send_result_t  *r;
    int                encoded;

    r = &lane->result;

    vq_buf_reset(&lane->body);

    encoded = ex->protocol->encode(&lane->body, res, spans, n);

    if (encoded < 0 || set_headers(ex, res->project_id) != VQ_OK) {
        r->status = 0;
        r->retry_after_ms = -1;
        r->location[0] = '\0';
        r->warning[0] = '\0';
        snprintf(r->error, sizeof(r->error), "out of memory encoding a batch");
        lane->encoded = 0;
        lane->begun = 0;
        return;
    }

    lane->encoded = (size_t) encoded;

    vq_transport_begin(lane->transport, &lane->body, r);
    lane->begun = 1;
}

/*
 * The answer is in lane->result.  Export requests count in the exporter's
 * own queue's counters; a request that could not be made is a request
 * that failed.
 */
static void
finish_post(vq_exporter_t *ex, vq_lane_t *lane)
{
    vq_stats_t  *stats;

    stats = ex->sources[0].stats;

    if (lane->begun) {
        vq_transport_finish(lane->transport, &lane->result);
        lane->begun = 0;
    }

    vq_stats_add(&stats->export_requests, 1);
    vq_stats_set(&stats->last_export_status, (uint64_t) lane->result.status);
}

int
vq_exporter_send(vq_exporter_t *ex, const vq_span_t *const *spans, size_t n)
{
    vq_lane_t  *lane;

    lane = &ex->lanes[0];
    lane->transport = ex->transports[0];

    begin_post(ex, lane, &ex->res, spans, n);
    finish_post(ex, lane);

    return (lane->result.status >= 200 && lane->result.status < 300)
           ? VQ_OK : VQ_ERROR;
}

void
vq_exporter_reopen(vq_exporter_t *ex)
{
    size_t  i;

    for (i = 0; i < ex->ntransports; i++) {
        vq_transport_reopen(ex->transports[i]);
    }
}

static int
stopping(vq_exporter_t *ex)
{
    int  s;

    pthread_mutex_lock(&ex->lock);
    s = ex->stopping;
    pthread_mutex_unlock(&ex->lock);

    return s;
}

/* Waits up to ms, or less if stop is asked for. */
static void
idle(vq_exporter_t *ex, int64_t ms)
{
    struct timespec  ts;

    if (ms <= 0) {
        return;
    }

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }

    pthread_mutex_lock(&ex->lock);
    if (!ex->stopping) {
        pthread_cond_timedwait(&ex->cond, &ex->lock, &ts);
    }
    pthread_mutex_unlock(&ex->lock);
}

/*
 * Nothing to send: sleeps until a producer says a batch's worth has been
 * pushed (vq_queue_wake(), from any process), or the batch held is due,
 * or, holding none, for a whole interval, so that an idle worker's thread
 * wakes once per interval rather than every few milliseconds.  seen is
 * what vq_queue_wakes() said before the queues were last looked at.
 *
 * A record that comes meanwhile has waited at most as long as the thread
 * slept: start_batch() dates a batch from when the queues were last seen
 * empty, so that no span waits more than an interval.  A queue head that
 * looks stalled is looked at again soon (check_stalled() needs two
 * looks); so are the other queues while earlier processes push into
 * them, since they wake no one here (once quiet, the interval bounds the
 * wait of what comes later).  A queue that a later generation drains is
 * no longer slept on: its wakes are for that generation's exporters.
 */
static void
idle_until_wake(vq_exporter_t *ex, uint32_t seen, int64_t now)
{
    int           soon;
    size_t        i;
    int64_t       wait;
    uint64_t      end;
    vq_lane_t    *lane;
    vq_source_t  *own, *s;

    own = &ex->sources[0];

    wait = ex->conf.flush_interval_ms;

    for (lane = ex->lanes; lane < ex->lanes + 2; lane++) {
        if (lane->count > 0
            && lane->batch_started + ex->conf.flush_interval_ms - now < wait)
        {
            wait = lane->batch_started + ex->conf.flush_interval_ms - now;
        }
    }

    soon = own->stalled_pos != VQ_QUEUE_NOT_STALLED;

    for (i = 1; i < ex->nsources; i++) {
        s = &ex->sources[i];
        end = vq_queue_end(s->queue);

        if (!s->superseded
            && (end != s->idle_end || s->stalled_pos != VQ_QUEUE_NOT_STALLED))
        {
            soon = 1;
        }

        s->idle_end = end;
    }

    if (soon && wait > VQ_SHORT_POLL_MS) {
        wait = VQ_SHORT_POLL_MS;
    }

    if (own->superseded) {
        idle(ex, wait);
        return;
    }

    /* vq_exporter_stop() sets "stopping", then wakes every sleeper */
    if (!stopping(ex)) {
        vq_queue_wait(own->queue, seen, wait);
    }
}

/*
 * The queue looks empty: is its head a slot that a worker claimed and
 * never filled?  The queue gives it up only if that worker is dead (or
 * never got to record its pid, for VQ_STALL_MS), never under a worker
 * that is merely slow or stopped, whose record arrives when it goes on.
 */
static void
check_stalled(vq_exporter_t *ex, vq_source_t *s)
{
    uint64_t  pos;
    int64_t   now;
    pid_t     writer;

    pos = vq_queue_stalled(s->queue, &writer);

    if (pos == VQ_QUEUE_NOT_STALLED) {
        s->stalled_pos = VQ_QUEUE_NOT_STALLED;
        return;
    }

    now = vq_monotonic_ms();

    if (pos != s->stalled_pos || writer != s->stalled_writer) {
        /* a live writer is done within microseconds: look again later */
        s->stalled_pos = pos;
        s->stalled_writer = writer;
        s->stalled_since = now;
        s->stalled_warned = 0;
        return;
    }

    if (vq_queue_skip(s->queue, pos,
                      writer == 0 && now - s->stalled_since >= VQ_STALL_MS)
        == VQ_OK)
    {
        if (writer != 0) {
            set_message(ex, VQ_LOG_ERROR, "skipped a span queue slot: process %ld was "
                        "killed while recording a span, one span lost",
                        (long) writer);
        } else {
            set_message(ex, VQ_LOG_ERROR, "skipped a span queue slot claimed and left "
                        "without a writer for %d ms (a worker killed while "
                        "recording a span?), one span lost", VQ_STALL_MS);
        }
        s->stalled_pos = VQ_QUEUE_NOT_STALLED;
        return;
    }

    if (writer != 0 && !s->stalled_warned
        && now - s->stalled_since >= VQ_STALL_WARN_MS)
    {
        /* a stopped worker, or its pid taken by another process */
        set_message(ex, VQ_LOG_WARN, "process %ld has held the span queue for %lld ms "
                    "while recording a span; spans wait behind it",
                    (long) writer, (long long) (now - s->stalled_since));
        s->stalled_warned = 1;
    }
}

/*
 * Whether records may be taken from a queue now: while the exporter runs,
 * unless a later generation drains the queue; while it stops, until its
 * drain of the queue is over.
 */
static int
may_take(vq_exporter_t *ex, vq_source_t *s)
{
    if (ex->draining) {
        return !s->drained;
    }

    if (!s->superseded
        && vq_generation_after(vq_queue_generation(s->queue),
                               ex->conf.generation))
    {
        s->superseded = 1;
    }

    return !s->superseded;
}

/*
 * Pops the next record this exporter may send (or move) from a queue:
 * VQ_OK, or VQ_EEMPTY when there is none.  Damaged records are dropped
 * here.  A record of a later generation goes back for that generation's
 * exporters, and this one is superseded on the queue (stopping: done
 * with it).
 */
static int
take(vq_exporter_t *ex, vq_source_t *s, vq_span_t *span)
{
    size_t  len;
    int     rc;

    for ( ;; ) {
        if (ex->draining) {
            rc = vq_queue_pop_before(s->queue, s->end, span,
                                     sizeof(vq_span_t), &len);
        } else {
            rc = vq_queue_pop(s->queue, span, sizeof(vq_span_t), &len);
        }

        if (rc != VQ_OK) {
            s->drained = ex->draining;
            return VQ_EEMPTY;
        }

        if (vq_span_validate(span, len) != VQ_OK) {
            /* only damaged shared memory has them */
            vq_stats_add(&s->stats->spans_dropped_export_failed, 1);
            continue;
        }

        if (!vq_generation_after(span->h.generation, ex->conf.generation)) {
            return VQ_OK;
        }

        /*
         * Every process raises the queue's generation to its own before
         * it pushes a record (and the pop saw that push), so a generation
         * later than the queue's is one that no configuration had.
         */
        if (!vq_generation_after(span->h.generation,
                                 vq_queue_generation(s->queue)))
        {
            break;
        }

        vq_stats_add(&s->stats->spans_dropped_export_failed, 1);
        set_message(ex, VQ_LOG_ERROR, "dropped a span of generation %lu, which no "
                    "configuration had (damaged shared memory?)",
                    (unsigned long) span->h.generation);
    }

    s->superseded = 1;
    s->drained = ex->draining;

    rc = vq_queue_requeue(s->queue, span, vq_span_size(span));

    if (rc != VQ_OK && rc != VQ_ESKIPPED) {
        vq_stats_add(&s->stats->spans_dropped_export_failed, 1);
    }

    return VQ_EEMPTY;
}

/* The table's entry for a record's generation; NULL: the exporter's own. */
static const vq_resource_t *
resource_of(vq_exporter_t *ex, const vq_span_t *span)
{
    const vq_resource_t  *entry;

    if (ex->resources == NULL) {
        return NULL;
    }

    entry = vq_resources_find(ex->resources, span->h.generation);

    if (entry == NULL && !ex->old_warned) {
        set_message(ex, VQ_LOG_WARN, "spans of a configuration older than the last %d "
                    "go with this one's service name, project and "
                    "environment", VQ_RESOURCES_MAX);
        ex->old_warned = 1;
    }

    return entry;
}

/* The lane that is not this one. */
static vq_lane_t *
other_lane(vq_exporter_t *ex, vq_lane_t *lane)
{
    return lane == &ex->lanes[0] ? &ex->lanes[1] : &ex->lanes[0];
}

/* An empty batch gets the record that ended the last one, or the next. */
static size_t
start_batch(vq_exporter_t *ex)
{
    vq_lane_t    *lane;
    vq_source_t  *own;

    own = &ex->sources[0];
    lane = ex->lane;

    if (ex->next) {
        memcpy(&lane->batch[0], ex->next_span, vq_span_size(ex->next_span));
        lane->entry = ex->next_entry;
        ex->next = 0;

    } else {
        if (!may_take(ex, own)) {
            return 0;
        }

        if (take(ex, own, &lane->batch[0]) != VQ_OK) {
            check_stalled(ex, own);
            return 0;
        }

        lane->entry = resource_of(ex, &lane->batch[0]);
    }

    lane->spans[0] = &lane->batch[0];
    lane->count = 1;
    lane->batch_started = ex->last_empty;

    return 1;
}

/*
 * Tops the lane's batch up from the exporter's queue, with records of its
 * resource; returns how many records it took.  An empty lane gives way
 * to the other if that one holds records: they are older.
 */
static size_t
fill_batch(vq_exporter_t *ex)
{
    size_t                taken;
    vq_span_t            *span;
    vq_lane_t            *lane, *other;
    vq_source_t          *own;
    const vq_resource_t  *entry;

    own = &ex->sources[0];
    taken = 0;

    other = other_lane(ex, ex->lane);

    if (ex->lane->count == 0 && other->count > 0 && !other->in_flight) {
        ex->lane = other;
    }

    lane = ex->lane;

    if (lane->count == 0) {
        taken = start_batch(ex);
        if (taken == 0) {
            return 0;
        }
    }

    while (lane->count < ex->conf.batch_size && !ex->next
           && may_take(ex, own))
    {
        span = &lane->batch[lane->count];

        if (take(ex, own, span) != VQ_OK) {
            if (taken == 0) {
                check_stalled(ex, own);
            }
            break;
        }

        taken++;
        entry = resource_of(ex, span);

        if (entry != lane->entry) {
            /* another configuration's: it starts the next batch */
            memcpy(ex->next_span, span, vq_span_size(span));
            ex->next = 1;
            ex->next_entry = entry;
            break;
        }

        lane->spans[lane->count++] = span;
    }

    return taken;
}

/* Whether the lane's batch is to be sent now. */
static int
batch_ready(vq_exporter_t *ex, vq_lane_t *lane, int64_t now)
{
    return lane->count == ex->conf.batch_size
           || (lane->count > 0
               && (ex->next || ex->failures > 0
                   || now - lane->batch_started
                      >= ex->conf.flush_interval_ms));
}

static const vq_resource_t *
batch_resource(vq_exporter_t *ex, vq_lane_t *lane)
{
    if (lane->entry == NULL) {
        return &ex->res;
    }

    /* what the table keeps is its generation's; the rest is ours */
    ex->batch_res = *lane->entry;
    ex->batch_res.hostname = ex->hostname;
    ex->batch_res.sdk_version = VQ_VERSION;

    return &ex->batch_res;
}

/* On the first connection, unless the other lane's request is on it. */
static void
begin_batch(vq_exporter_t *ex, vq_lane_t *lane)
{
    vq_lane_t  *other;

    other = other_lane(ex, lane);

    lane->overlapped = other->in_flight;
    lane->transport = (other->in_flight
                       && other->transport == ex->transports[0])
                      ? ex->transports[1] : ex->transports[0];

    begin_post(ex, lane, batch_resource(ex, lane), lane->spans, lane->count);
    lane->in_flight = 1;
}

/*
 * The answer to the lane's batch.  Returns 0 when the batch is done with
 * (sent, or refused for good), or the wait in ms before the next try (the
 * lane keeps it).  Its spans count in the counters of the queue they came
 * from.
 *
 * 2xx: sent.  3xx: a redirect is a configuration error (the endpoint is
 * not where the collector is), never followed: dropped, like a 4xx other
 * than 408 and 429, which the collector will never take.  The rest (5xx,
 * 408, 429, no answer) is retried with exponential backoff and jitter, or
 * after the Retry-After of a 429 or 503 (bounded).
 */
static int64_t
finish_batch(vq_exporter_t *ex, vq_lane_t *lane)
{
    long               status;
    unsigned           shift;
    int64_t            backoff;
    vq_stats_t        *stats;
    vq_send_result_t  *r;

    stats = ex->sources[0].stats;
    r = &lane->result;

    finish_post(ex, lane);
    lane->in_flight = 0;
    status = r->status;

    if (status >= 200 && status < 300) {
        /* records the encoder refused: only damaged shared memory has them */
        vq_stats_add(&stats->spans_exported, lane->encoded);
        vq_stats_add(&stats->spans_dropped_export_failed,
                     lane->count - lane->encoded);

        if (r->warning[0]) {
            set_message(ex, VQ_LOG_WARN, "export: %s", r->warning);

        } else if (ex->failures) {
            set_message(ex, VQ_LOG_INFO, "export to %s recovered",
                        ex->target);
        }

        ex->failures = 0;
        lane->count = 0;
        return 0;
    }

    vq_stats_add(&stats->export_failures, 1);

    if ((status >= 300 && status < 400)
        || (status >= 400 && status < 500 && status != 408 && status != 429))
    {
        /* the collector will not take this batch whatever we do */
        vq_stats_add(&stats->spans_dropped_export_failed, lane->count);
        count_failure(ex, lane->count);

        if (status < 400) {
            set_message(ex, VQ_LOG_ERROR, "export to %s answered HTTP %ld, "
                        "a redirect%s%s%s, which is not followed: set "
                        "vaquero_endpoint to the collector's URL; %zu spans "
                        "dropped", ex->target, status,
                        r->location[0] ? " to \"" : "", r->location,
                        r->location[0] ? "\"" : "", lane->count);
        } else {
            set_message(ex, VQ_LOG_ERROR, "export to %s refused with HTTP "
                        "%ld, %zu spans dropped", ex->target, status,
                        lane->count);
        }

        ex->failures = 0;
        lane->count = 0;
        return 0;
    }

    count_failure(ex, 0);
    vq_stats_add(&stats->export_retries, 1);

    shift = ex->failures < 7 ? ex->failures : 7;
    ex->failures++;

    backoff = (int64_t) VQ_BACKOFF_MIN_MS << shift;
    if (backoff > VQ_BACKOFF_MAX_MS) {
        backoff = VQ_BACKOFF_MAX_MS;
    }

    /* jitter: 50%..100% of the backoff, so workers do not retry in step */
    backoff = backoff / 2 + rand_r(&ex->seed) % (backoff / 2 + 1);

    /*
     * Retry-After is the least wait the collector asks for; "0" or a date
     * past does not make a collector that keeps failing worth hammering.
     */
    if ((status == 429 || status == 503) && r->retry_after_ms >= 0) {
        if (r->retry_after_ms > backoff) {
            backoff = r->retry_after_ms;
        }

        set_message(ex, VQ_LOG_ERROR, "export to %s failed with HTTP %ld, "
                    "will retry in %lld ms (Retry-After: %lld ms)",
                    ex->target, status, (long long) backoff,
                    (long long) r->retry_after_ms);

        return backoff;
    }

    if (status > 0) {
        set_message(ex, VQ_LOG_ERROR, "export to %s failed with HTTP %ld, "
                    "will retry", ex->target, status);
    } else {
        set_message(ex, VQ_LOG_ERROR, "export to %s failed: %s, will retry",
                    ex->target, r->error);
    }

    return backoff;
}

/* One attempt to send the lane's batch, as finish_batch() says. */
static int64_t
send_batch(vq_exporter_t *ex)
{
    begin_batch(ex, ex->lane);
    return finish_batch(ex, ex->lane);
}

/*
 * Whether another batch may go on the other lane while this lane's
 * request waits for its answer: the collector answered the last ones,
 * this request went, the other lane is free, the queue holds a batch's
 * worth (the exporter is behind), and no stop was asked for (a stopping
 * exporter takes only what was queued before).
 */
static int
may_overlap(vq_exporter_t *ex, vq_lane_t *lane)
{
    vq_lane_t         *other;
    vq_queue_stats_t   qs;

    if (ex->ntransports < 2 || ex->serial || ex->failures > 0
        || lane->result.error[0] != '\0' || stopping(ex))
    {
        return 0;
    }

    other = other_lane(ex, lane);

    if (other->count > 0) {
        return 0;
    }

    vq_queue_get_stats(ex->sources[0].queue, &qs);

    return qs.used >= ex->conf.batch_size;
}

/*
 * A request on the second connection, sent while the other lane's was
 * in flight, ran out of time without a byte of an answer, and that one
 * was answered (else the batches would not have gone on): a collector
 * that serves one connection at a time leaves the second one waiting
 * until the first closes.  It gets one request at a time from now on.
 * A refused or reset connection, or a stop, says nothing of the kind.
 */
static void
check_serial(vq_exporter_t *ex, vq_lane_t *lane)
{
    if (lane->overlapped && lane->transport == ex->transports[1]
        && lane->result.timed_out && !ex->serial && !stopping(ex))
    {
        ex->serial = 1;
        set_notice(ex, VQ_LOG_WARN, "export to %s: no answer on a second "
                   "connection while the first one was answered (%s): one "
                   "request at a time from now on (a collector that serves "
                   "one connection at a time?)", ex->target,
                   lane->result.error);
    }
}

/*
 * Sends the lane's batch and, while the queue holds more than it (up to
 * VQ_OVERLAP_MAX batches, so that the other queues are looked at), the
 * next batches each on the other lane before the answer to the one
 * before is read.  Returns what finish_batch() says; the lane that keeps
 * a batch to try again (the older, when both do) is the one filled next.
 */
static int64_t
send_batches(vq_exporter_t *ex)
{
    int64_t     wait, also;
    unsigned    failures, n;
    vq_lane_t  *sent, *next;

    sent = ex->lane;
    begin_batch(ex, sent);

    for (n = 1; n < VQ_OVERLAP_MAX && may_overlap(ex, sent); n++) {
        next = other_lane(ex, sent);
        ex->lane = next;
        fill_batch(ex);

        if (!batch_ready(ex, next, vq_monotonic_ms())) {
            /* what it took goes with a later batch */
            break;
        }

        begin_batch(ex, next);
        wait = finish_batch(ex, sent);

        if (wait) {
            check_serial(ex, sent);

            /* the first batch still waits: the second's 2xx recovers nothing */
            failures = ex->failures;
            ex->failures = 0;

            also = finish_batch(ex, next);
            ex->failures = failures + (also != 0);
            ex->lane = sent;

            return also > wait ? also : wait;
        }

        sent = next;
    }

    wait = finish_batch(ex, sent);

    if (wait) {
        check_serial(ex, sent);
        ex->lane = sent;
    }

    return wait;
}

/*
 * A record taken and not sent goes back to its queue.  One that does not
 * fit any more is dropped here, and counted here only: a requeue is not a
 * refusal on the request path (queue_full), and a requeue the queue gave
 * up (VQ_ESKIPPED) the queue counts as skipped.
 */
static void
put_back(vq_source_t *s, const vq_span_t *span)
{
    int  rc;

    rc = vq_queue_requeue(s->queue, span, vq_span_size(span));

    if (rc != VQ_OK && rc != VQ_ESKIPPED) {
        vq_stats_add(&s->stats->spans_dropped_export_failed, 1);
    }
}

/* On the way out: what could not be sent goes back for the next workers. */
static void
return_batch(vq_exporter_t *ex)
{
    size_t      i, held;
    vq_lane_t  *lane;

    held = ex->lanes[0].count + ex->lanes[1].count + (size_t) ex->next;

    if (held > 0) {
        set_message(ex, VQ_LOG_ERROR, "stopped with %zu spans not sent to "
                    "%s within vaquero_shutdown_timeout: back in the queue "
                    "for the next workers, lost if nginx stops",
                    held, ex->target);
    }

    for (lane = ex->lanes; lane < ex->lanes + 2; lane++) {
        for (i = 0; i < lane->count; i++) {
            put_back(&ex->sources[0], lane->spans[i]);
        }

        lane->count = 0;
    }

    if (ex->next) {
        put_back(&ex->sources[0], ex->next_span);
        ex->next = 0;
    }
}

/*
 * Moves records of the other queues into the exporter's own, as long as
 * it has room; returns how many.  A record moved counts as recorded in
 * the counters of its new queue, and it is sent from there: so a record
 * is only ever held (in a batch) out of the queue it is counted in, and
 * an earlier configuration's queue is done with once it is empty.
 */
static size_t
move_records(vq_exporter_t *ex)
{
    int                rc;
    size_t             i, moved;
    vq_source_t       *own, *s;
    vq_queue_stats_t   qs;

    own = &ex->sources[0];
    moved = 0;

    for (i = 1; i < ex->nsources; i++) {
        s = &ex->sources[i];

        while (moved < VQ_MOVE_MAX && may_take(ex, s)) {
            vq_queue_get_stats(own->queue, &qs);

            if (qs.used >= qs.capacity) {
                return moved;
            }

            if (take(ex, s, ex->moving) != VQ_OK) {
                check_stalled(ex, s);
                break;
            }

            rc = vq_queue_requeue(own->queue, ex->moving,
                                  vq_span_size(ex->moving));

            if (rc != VQ_OK && rc != VQ_ESKIPPED) {
                /* filled meanwhile: back where it was */
                put_back(s, ex->moving);
                return moved;
            }

            /* a push the queue gave up it counts as skipped */
            vq_stats_add(&own->stats->spans_recorded, 1);
            moved++;
        }
    }

    return moved;
}

static void *
run(void *data)
{
    vq_exporter_t  *ex = data;
    int64_t         now, looked, wait, backoff_until, deadline;
    size_t          taken, moved, i;
    uint32_t        seen;

    /* what top -H, ps -L and perf show */
    pthread_setname_np(pthread_self(), "vaquero-export");

    backoff_until = 0;
    ex->last_empty = vq_monotonic_ms();

    while (!stopping(ex)) {
        now = vq_monotonic_ms();

        if (now < backoff_until) {
            idle(ex, backoff_until - now);
            continue;
        }

        seen = vq_queue_wakes(ex->sources[0].queue);
        looked = vq_monotonic_ms();

        moved = move_records(ex);
        taken = fill_batch(ex);
        now = vq_monotonic_ms();

        if (batch_ready(ex, ex->lane, now)) {
            wait = send_batches(ex);
            backoff_until = wait ? vq_monotonic_ms() + wait : 0;
            continue;
        }

        if (taken == 0 && moved == 0) {
            /* what the queues hold from now on came after "looked" */
            ex->last_empty = looked;
            idle_until_wake(ex, seen, now);
        }
    }

    /*
     * Stopping: send the batch held, and what the queues held when stop
     * was asked (vq_exporter_stop() noted where each one ended; what is
     * pushed later, processes still running send), until the deadline:
     * the other queues' records by way of this one's.
     */
    deadline = __atomic_load_n(&ex->abort_at, __ATOMIC_RELAXED);

    for (i = 0; i < ex->nsources; i++) {
        ex->sources[i].drained = 0;
    }

    ex->draining = 1;

    for (moved = 0; vq_monotonic_ms() < deadline; moved += taken) {
        taken = move_records(ex);
        if (taken == 0) {
            break;
        }
    }

    if (moved) {
        ex->sources[0].end = vq_queue_end(ex->sources[0].queue);
    }

    while (vq_monotonic_ms() < deadline) {
        fill_batch(ex);

        if (ex->lane->count == 0) {
            break;
        }

        wait = send_batch(ex);

        if (wait && vq_monotonic_ms() + wait >= deadline) {
            break;
        }

        if (wait) {
            usleep(wait * 1000);
        }
    }

    return_batch(ex);

    return NULL;
}

int
vq_exporter_start(vq_exporter_t *ex)
{
    sigset_t  all, old;
    size_t    i;
    int       rc;

    if (ex->running) {
        return VQ_EINVAL;
    }

    ex->stopping = 0;
    ex->draining = 0;
    __atomic_store_n(&ex->abort_at, 0, __ATOMIC_RELAXED);

    for (i = 0; i < ex->ntransports; i++) {
        vq_transport_abort_at(ex->transports[i], 0);
    }

    for (i = 0; i < ex->nsources; i++) {
        vq_queue_raise_generation(ex->sources[i].queue, ex->conf.generation);
        ex->sources[i].superseded = 0;
    }

    /*
     * Earlier generations' threads asleep on the queue find out now that
     * they are superseded, and stop taking wakes meant for this one.
     */
    vq_queue_wake(ex->sources[0].queue, 1);

    /* the thread must never take a signal meant for its process */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&ex->thread, NULL, run, ex);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        errno = rc;
        return VQ_ERROR;
    }

    ex->running = 1;
    return VQ_OK;
}

void
vq_exporter_stop(vq_exporter_t *ex, unsigned timeout_ms)
{
    size_t  i;

    if (!ex->running) {
        return;
    }

    pthread_mutex_lock(&ex->lock);

    /* read by the thread once it has seen "stopping", under this lock */
    for (i = 0; i < ex->nsources; i++) {
        ex->sources[i].end = vq_queue_end(ex->sources[i].queue);
    }

    ex->stopping = 1;
    __atomic_store_n(&ex->abort_at, vq_monotonic_ms() + timeout_ms,
                     __ATOMIC_RELAXED);
    pthread_cond_signal(&ex->cond);
    pthread_mutex_unlock(&ex->lock);

    /* the thread may sleep on the queue, with other processes' threads */
    vq_queue_wake(ex->sources[0].queue, 1);

    for (i = 0; i < ex->ntransports; i++) {
        vq_transport_abort_at(ex->transports[i],
                              vq_monotonic_ms() + timeout_ms);
    }

    pthread_join(ex->thread, NULL);
    ex->running = 0;
}
