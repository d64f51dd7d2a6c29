/*
 * The exporter against a real HTTP server on loopback (a thread of this
 * test): batching, headers, bodies, retries on 503, no retry on 400, a
 * stop that keeps to the shutdown timeout when the collector stalls,
 * writers killed or stopped mid-push, and counters that add up.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <vaquero/vaquero.h>
#include "check.h"
#include "wedge.h"

#define MAX_REQUESTS  256

typedef struct {
    int              fd;
    int              port;
    pthread_mutex_t  lock;
    int              statuses[8];   /* answers to give, then 200 */
    int              nstatuses;
    int              stall;         /* never answer */
    pthread_t        thread;
    int              requests;
    char            *heads[MAX_REQUESTS];
    char            *bodies[MAX_REQUESTS];
    int              done;
} server_t;

static char *
read_request(int fd, char **body)
{
    char    *buf, *end, *cl;
    size_t   len, cap, need;
    ssize_t  n;

    cap = 1 << 20;
    buf = malloc(cap + 1);
    len = 0;
    end = NULL;

    for ( ;; ) {
        n = read(fd, buf + len, cap - len);
        if (n <= 0) {
            free(buf);
            return NULL;
        }
        len += n;
        buf[len] = '\0';

        if (end == NULL) {
            end = strstr(buf, "\r\n\r\n");
        }

        if (end) {
            cl = strcasestr(buf, "\r\nContent-Length:");
            need = (end - buf) + 4 + (cl ? strtoul(cl + 17, NULL, 10) : 0);

            if (len >= need) {
                *end = '\0';
                *body = strndup(end + 4, need - (end - buf) - 4);
                return buf;
            }

            if (need > cap) {
                cap = need;
                buf = realloc(buf, cap + 1);
                end = NULL;
            }
        }
    }
}

static void *
serve(void *data)
{
    server_t  *s = data;
    char      *head, *body, reply[128];
    int        c, status;

    while ((c = accept(s->fd, NULL, NULL)) >= 0) {
        while ((head = read_request(c, &body)) != NULL) {
            pthread_mutex_lock(&s->lock);
            status = s->requests < s->nstatuses ? s->statuses[s->requests]
                                                : 200;
            if (s->requests < MAX_REQUESTS) {
                s->heads[s->requests] = head;
                s->bodies[s->requests] = body;
            }
            s->requests++;
            pthread_mutex_unlock(&s->lock);

            while (s->stall && !__atomic_load_n(&s->done, __ATOMIC_RELAXED)) {
                usleep(10000);
            }

            snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\n"
                     "Content-Length: 2\r\n\r\n{}", status);
            if (write(c, reply, strlen(reply)) < 0) {
                break;
            }
        }
        close(c);
    }

    return NULL;
}

static void
server_start(server_t *s)
{
    struct sockaddr_in  sin;
    socklen_t           len;
    int                 one = 1;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bind(s->fd, (struct sockaddr *) &sin, sizeof(sin));
    listen(s->fd, 16);

    len = sizeof(sin);
    getsockname(s->fd, (struct sockaddr *) &sin, &len);
    s->port = ntohs(sin.sin_port);

    pthread_mutex_init(&s->lock, NULL);
    pthread_create(&s->thread, NULL, serve, s);
}

/* After the exporter is gone: wakes accept() and joins the thread. */
static void
server_stop(server_t *s)
{
    int  i;

    __atomic_store_n(&s->done, 1, __ATOMIC_RELAXED);
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);

    for (i = 0; i < s->requests && i < MAX_REQUESTS; i++) {
        free(s->heads[i]);
        free(s->bodies[i]);
    }
}

static int
server_requests(server_t *s)
{
    int  n;

    pthread_mutex_lock(&s->lock);
    n = s->requests;
    pthread_mutex_unlock(&s->lock);
    return n;
}

typedef struct {
    vq_queue_t  *queue;
    vq_stats_t   stats;
    void        *mem;
    size_t       size;
} fixture_t;

static void
make_span(vq_idgen_t *g, vq_span_t *s, size_t i, const char *name)
{
    vq_span_init(s, VQ_SPAN_SERVER);
    vq_trace_id_generate(g, s->h.trace_id);
    vq_span_id_generate(g, s->h.span_id);
    s->h.start_us = 1795755826000000LL + i;
    s->h.end_us = s->h.start_us + 1500;
    s->h.status_code = 200;
    vq_span_set_str(s, VQ_FIELD_NAME, name, strlen(name));
}

/* As the request path does: counted as recorded, then pushed. */
static void
fixture_push(fixture_t *f, size_t nspans)
{
    vq_idgen_t  *g;
    vq_span_t    s;
    size_t       i;

    g = vq_idgen_create();

    for (i = 0; i < nspans; i++) {
        make_span(g, &s, i, "GET /");
        vq_stats_add(&f->stats.spans_recorded, 1);
        vq_queue_push(f->queue, &s, vq_span_size(&s));
    }

    vq_idgen_destroy(g);
}

static void
fixture_init_size(fixture_t *f, size_t size, size_t nspans)
{
    memset(&f->stats, 0, sizeof(f->stats));
    f->size = size;
    f->mem = mmap(NULL, f->size, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    f->queue = vq_queue_init(f->mem, f->size, VQ_SPAN_RECORD_MAX);

    fixture_push(f, nspans);
}

static void
fixture_init(fixture_t *f, size_t nspans)
{
    fixture_init_size(f, 4 * 1024 * 1024, nspans);
}

static vq_exporter_t *
exporter(fixture_t *f, int port, size_t batch)
{
    vq_exporter_conf_t  conf;
    vq_exporter_t      *ex;
    char                url[64], err[128];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/base/", port);

    memset(&conf, 0, sizeof(conf));
    conf.endpoint = url;
    conf.api_key = "secret-key";
    conf.project_id = "proj-9";
    conf.service_name = "edge";
    conf.environment = "development";
    conf.user_agent = "ngx_vaquero_module/" VQ_VERSION;
    conf.batch_size = batch;
    conf.flush_interval_ms = 50;
    conf.export_timeout_ms = 5000;

    ex = vq_exporter_create(&conf, f->queue, &f->stats, err, sizeof(err));
    if (ex == NULL) {
        fprintf(stderr, "exporter: %s\n", err);
    }

    return ex;
}

static int
wait_for(const uint64_t *counter, uint64_t want)
{
    int  i;

    for (i = 0; i < 1000; i++) {       /* 10 s at most */
        if (vq_stats_get(counter) >= want) {
            return 1;
        }
        usleep(10000);
    }

    return 0;
}

static void
test_batches_and_headers(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    json_t         *doc;
    size_t          traces;
    int             i, bad_json, big;

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 1005);

    ex = exporter(&f, srv.port, 100);
    CHECK(ex != NULL);
    CHECK_INT(vq_exporter_start(ex), VQ_OK);

    CHECK(wait_for(&f.stats.spans_exported, 1005));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(f.stats.spans_exported, 1005);
    CHECK_INT(f.stats.export_failures, 0);
    CHECK_INT(f.stats.last_export_status, 200);
    CHECK_INT(server_requests(&srv), 11);
    CHECK_INT(f.stats.export_requests, 11);

    traces = 0;
    bad_json = 0;
    big = 0;

    for (i = 0; i < server_requests(&srv); i++) {
        CHECK(strncmp(srv.heads[i], "POST /base/api/v1/traces/batch HTTP/1.1",
                      39) == 0);
        CHECK(strstr(srv.heads[i], "\r\nAuthorization: Bearer secret-key")
              != NULL);
        CHECK(strstr(srv.heads[i], "\r\nX-Project-ID: proj-9") != NULL);
        CHECK(strstr(srv.heads[i], "\r\nContent-Type: application/json")
              != NULL);
        CHECK(strstr(srv.heads[i], "\r\nUser-Agent: ngx_vaquero_module/"
                     VQ_VERSION) != NULL);

        doc = json_loads(srv.bodies[i], 0, NULL);
        if (doc == NULL) {
            bad_json++;
            continue;
        }

        traces += json_array_size(json_object_get(doc, "traces"));
        big += json_array_size(json_object_get(doc, "traces")) > 100;
        json_decref(doc);
    }

    CHECK_INT(bad_json, 0);
    CHECK_INT(traces, 1005);
    CHECK_INT(big, 0);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

static void
test_retry_then_success(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    char            msg[256];

    memset(&srv, 0, sizeof(srv));
    srv.statuses[0] = 503;
    srv.statuses[1] = 429;
    srv.nstatuses = 2;
    server_start(&srv);
    fixture_init(&f, 30);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);

    CHECK(wait_for(&f.stats.spans_exported, 30));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(f.stats.spans_exported, 30);
    CHECK_INT(f.stats.export_failures, 2);
    CHECK_INT(f.stats.export_retries, 2);
    CHECK_INT(f.stats.spans_dropped_export_failed, 0);
    CHECK_INT(server_requests(&srv), 3);

    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg)) > 0);
    CHECK(strstr(msg, "recovered") != NULL);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

static void
test_client_error_drops(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    char            msg[256];

    memset(&srv, 0, sizeof(srv));
    srv.statuses[0] = 400;
    srv.nstatuses = 1;
    server_start(&srv);
    fixture_init(&f, 10);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);

    CHECK(wait_for(&f.stats.spans_dropped_export_failed, 10));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(f.stats.spans_exported, 0);
    CHECK_INT(f.stats.export_retries, 0);
    CHECK_INT(server_requests(&srv), 1);

    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg)) > 0);
    CHECK(strstr(msg, "HTTP 400") != NULL);
    /* at most one message per interval */
    CHECK_INT(vq_exporter_take_message(ex, msg, sizeof(msg)), 0);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

static void
test_stop_with_stalled_collector(void)
{
    vq_queue_stats_t  qs;
    struct timespec   a, b;
    vq_exporter_t    *ex;
    server_t          srv;
    fixture_t         f;
    long              ms;

    memset(&srv, 0, sizeof(srv));
    srv.stall = 1;
    server_start(&srv);
    fixture_init(&f, 40);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);

    while (server_requests(&srv) == 0) {
        usleep(1000);
    }

    clock_gettime(CLOCK_MONOTONIC, &a);
    vq_exporter_stop(ex, 300);
    clock_gettime(CLOCK_MONOTONIC, &b);

    ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;

    /* the transfer (5 s timeout) was cut at the 300 ms shutdown deadline */
    CHECK(ms >= 250 && ms < 2000);

    /* and the spans it held went back to the queue, none lost */
    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.used, 40);
    CHECK_INT(f.stats.spans_exported, 0);
    CHECK_INT(f.stats.spans_dropped_export_failed, 0);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/* A worker killed mid-push left a slot unfilled: the exporter gets past it. */
static void
test_dead_writer(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    server_t          srv;
    fixture_t         f;
    uint64_t          pos;
    pid_t             writer;
    char              msg[256];

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 0);

    pos = wedge_queue(f.queue, VQ_SPAN_RECORD_MAX, &writer);
    CHECK(pos != VQ_QUEUE_NOT_STALLED);

    fixture_push(&f, 10);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);

    CHECK(wait_for(&f.stats.spans_exported, 10));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(f.stats.spans_exported, 10);
    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.skipped, 1);
    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg)) > 0);
    CHECK(strstr(msg, "skipped a span queue slot") != NULL);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * The queue slot of a span of len bytes whose copy crosses into a new
 * page: a writer that sees that page read-only stops half-way.
 */
static char *
crossing_slot(fixture_t *f, size_t len, vq_span_t *buf)
{
    size_t  n;
    char   *at;
    int     i;

    for (i = 0; i < 256; i++) {
        at = wedge_next_slot(f->queue, f->mem, f->size, buf, sizeof(*buf));
        if (at == NULL) {
            return NULL;
        }

        if (wedge_page_up(at + 1) < at + len) {
            return at;
        }

        /* the next slot */
        vq_queue_push(f->queue, "x", 1);
        vq_queue_pop(f->queue, buf, sizeof(*buf), &n);
    }

    return NULL;
}

static int
bodies_have(server_t *s, const char *needle)
{
    int  i, n;

    n = 0;

    pthread_mutex_lock(&s->lock);
    for (i = 0; i < s->requests && i < MAX_REQUESTS; i++) {
        n += strstr(s->bodies[i], needle) != NULL;
    }
    pthread_mutex_unlock(&s->lock);

    return n;
}

/*
 * A worker stopped (SIGSTOP, a debugger) half-way through writing a span
 * holds the queue: the exporter waits for it well past its one second
 * for slots without a pid, and sends its span, whole, once it goes on.
 */
static void
test_stopped_writer(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    vq_idgen_t       *g;
    vq_span_t         s, buf;
    server_t          srv;
    fixture_t         f;
    int64_t           stopped_at;
    size_t            len;
    pid_t             pid;
    char              agent[600], *at;

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 0);

    g = vq_idgen_create();
    make_span(g, &s, 0, "GET /stopped-writer");
    memset(agent, 'a', sizeof(agent));
    vq_span_set_str(&s, VQ_FIELD_USER_AGENT, agent, sizeof(agent));
    vq_idgen_destroy(g);
    len = vq_span_size(&s);

    at = crossing_slot(&f, len, &buf);
    CHECK(at != NULL);
    if (at == NULL) {
        return;
    }

    pid = wedge_writer(f.queue, wedge_page_up(at + 1), (char *) f.mem + f.size,
                       &s, len);
    stopped_at = wedge_ms();
    CHECK(pid > 0);
    if (pid <= 0) {
        return;
    }

    fixture_push(&f, 10);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);

    /* twice the exporter's patience with a slot that has no pid */
    while (wedge_ms() - stopped_at < 2500) {
        wedge_pause(10000);
    }

    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.skipped, 0);
    CHECK_INT(qs.used, 11);
    CHECK_INT(f.stats.spans_exported, 0);

    CHECK_INT(wedge_continue(pid), VQ_OK);
    vq_stats_add(&f.stats.spans_recorded, 1);

    CHECK(wait_for(&f.stats.spans_exported, 11));
    vq_exporter_stop(ex, 3000);

    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.skipped, 0);
    CHECK_INT(f.stats.spans_exported, 11);
    CHECK_INT(f.stats.spans_dropped_export_failed, 0);
    CHECK_INT(bodies_have(&srv, "GET /stopped-writer"), 1);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * A worker killed after claiming a slot and before putting its pid in:
 * nobody can tell it from a slow one, so the exporter waits a second,
 * then closes the slot (a slow writer would find it closed).
 */
static void
test_writer_killed_before_pid(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    vq_span_t         buf;
    server_t          srv;
    fixture_t         f;
    uint64_t          pos;
    size_t            len;
    pid_t             pid, w;
    char              msg[256], *at;

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 0);

    /* a slot whose header is not on the queue header's page */
    for (at = NULL; at == NULL || wedge_page_down(at - 64) == f.mem; ) {
        vq_queue_push(f.queue, "x", 1);
        vq_queue_pop(f.queue, &buf, sizeof(buf), &len);
        at = wedge_next_slot(f.queue, f.mem, f.size, &buf, sizeof(buf));
        CHECK(at != NULL);
        if (at == NULL) {
            return;
        }
    }

    pid = wedge_writer(f.queue, wedge_page_down(at - 64),
                       (char *) f.mem + f.size, "lost", 5);
    CHECK(pid > 0);
    if (pid <= 0) {
        return;
    }

    pos = vq_queue_stalled(f.queue, &w);
    CHECK(pos != VQ_QUEUE_NOT_STALLED);
    CHECK_INT(w, 0);
    wedge_kill(pid);

    fixture_push(&f, 10);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);

    CHECK(wait_for(&f.stats.spans_exported, 10));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(f.stats.spans_exported, 10);
    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.skipped, 1);
    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg)) > 0);
    CHECK(strstr(msg, "skipped a span queue slot claimed and left without")
          != NULL);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * DESIGN 7: after traffic stops and the queue drains, spans_recorded ==
 * spans_exported + every drop, exactly.  The hard case: a worker stops
 * with a batch it could not send while the queue is all but full; what
 * fits goes back, the rest is dropped as export_failed, and only as that:
 * a requeue refused is not a second, queue_full drop.
 */
static void
test_accounting(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    vq_span_t         buf;
    server_t          stalled, srv;
    fixture_t         f;
    uint64_t          cap, taken, dropped;
    size_t            len;
    char              big[VQ_SPAN_RECORD_MAX + 1];

    memset(&stalled, 0, sizeof(stalled));
    stalled.stall = 1;
    server_start(&stalled);

    fixture_init_size(&f, vq_queue_min_size(VQ_SPAN_RECORD_MAX) * 8, 0);
    vq_queue_get_stats(f.queue, &qs);
    cap = qs.capacity;
    CHECK(cap > 8);

    /* the exporter takes a batch of 8 and cannot send it */
    fixture_push(&f, 8);
    ex = exporter(&f, stalled.port, 8);
    vq_exporter_start(ex);

    while (server_requests(&stalled) == 0) {
        usleep(1000);
    }

    /* meanwhile requests fill the queue, and 4 find it full ... */
    fixture_push(&f, cap + 4);

    /* ... one span is too large ... */
    memset(big, 0, sizeof(big));
    vq_stats_add(&f.stats.spans_recorded, 1);
    CHECK_INT(vq_queue_push(f.queue, big, sizeof(big)), VQ_ETOOBIG);

    /* ... and another worker's exporter takes 3 */
    for (taken = 0; taken < 3; taken++) {
        CHECK_INT(vq_queue_pop(f.queue, &buf, sizeof(buf), &len), VQ_OK);
    }

    /* stopping, the exporter puts 3 back and drops 5 */
    vq_exporter_stop(ex, 300);
    vq_exporter_destroy(ex);
    server_stop(&stalled);

    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.refused_full, 4);
    CHECK_INT(qs.refused_too_big, 1);
    CHECK_INT(f.stats.spans_dropped_export_failed, 5);
    CHECK_INT(qs.used, cap);

    /* the collector is back: the queue drains */
    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, cap));
    vq_exporter_stop(ex, 3000);
    vq_exporter_destroy(ex);
    server_stop(&srv);

    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.used, 0);
    CHECK_INT(f.stats.spans_exported, cap);

    dropped = qs.refused_full + qs.refused_too_big + qs.skipped
              + f.stats.spans_dropped_export_failed;

    CHECK_INT(f.stats.spans_recorded, 8 + cap + 4 + 1);
    CHECK_INT(f.stats.spans_recorded,
              f.stats.spans_exported + dropped + taken);
}

static void
test_bad_configuration(void)
{
    vq_exporter_conf_t  conf;
    fixture_t           f;
    char                err[128];

    fixture_init(&f, 0);
    memset(&conf, 0, sizeof(conf));
    conf.endpoint = "ftp://example.test";
    conf.batch_size = 10;
    conf.service_name = conf.environment = conf.user_agent = "x";

    CHECK(vq_exporter_create(&conf, f.queue, &f.stats, err, sizeof(err))
          == NULL);
    CHECK(strstr(err, "ftp://example.test") != NULL);
}

int
main(void)
{
    vq_library_init();

    test_batches_and_headers();
    test_retry_then_success();
    test_client_error_drops();
    test_stop_with_stalled_collector();
    test_dead_writer();
    test_stopped_writer();
    test_writer_killed_before_pid();
    test_accounting();
    test_bad_configuration();

    vq_library_cleanup();

    return check_summary("test_exporter");
}
