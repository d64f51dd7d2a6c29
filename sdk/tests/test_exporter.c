/*
 * The exporter against a real HTTP server on loopback (a thread of this
 * test): batching, headers, bodies, retries on 503, no retry on 400, a
 * stop that keeps to the shutdown timeout when the collector stalls,
 * writers killed or stopped mid-push, counters that add up, and
 * generations: each span with its configuration's resource, none of a
 * later configuration's, a stop that takes what was queued then only,
 * and several queues.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include <vaquero/vaquero.h>
#include "check.h"
#include "wedge.h"

#define MAX_REQUESTS     256
#define MAX_CONNECTIONS  64

typedef struct {
    int              fd;
    int              port;
    pthread_mutex_t  lock;
    int              statuses[8];   /* answers to give, then 200; */
    int              nstatuses;     /*   -1: reset after a partial answer */
    const char      *extra[8];      /* header lines for those answers */
    int64_t          times[MAX_REQUESTS];   /* when each came, monotonic ms */
    int              stall;         /* never answer */
    pthread_t        thread;
    int              requests;
    char            *heads[MAX_REQUESTS];
    char            *bodies[MAX_REQUESTS];
    int              done;
    void           (*hook)(void *data, int n);  /* on request n, unanswered */
    void            *hook_data;
    pthread_t        conns[MAX_CONNECTIONS];     /* one thread each, */
                                                 /*   unless serial */
    int              fds[MAX_CONNECTIONS];
    int              nconns;
    int              serial;        /* a connection at a time, to its end */
    int              cut_second;    /* the second connection's first
                                       request: a reset, no answer */
    int              fail_first;    /* the first connection's first
                                       request: 503; its next one (the
                                       retry) held 300 ms for another */
    int              retry_alone;   /* none came while it was held */
    int              most_open;     /* connections open at once, at most */
    int              overlapped;    /* hold_first(): a second request came */
    int              open;
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
                /* NUL-terminated, and whole when it holds NULs (gzip) */
                *body = malloc(need - (end - buf) - 4 + 1);
                memcpy(*body, end + 4, need - (end - buf) - 4);
                (*body)[need - (end - buf) - 4] = '\0';
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

static int64_t
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    server_t  *s;
    int        c;
    int        n;           /* its slot in conns[], fds[] */
} conn_t;

static int server_requests(server_t *s);

/* One connection: its requests, answered in turn, until it closes. */
static void *
serve_connection(void *data)
{
    conn_t         *conn = data;
    server_t       *s = conn->s;
    char           *head, *body, reply[512], date[80];
    const char     *extra;
    time_t          at;
    struct tm       tm;
    int             c, status, n, slot, k, i;
    struct linger   lg;

    c = conn->c;
    slot = conn->n;
    free(conn);
    k = 0;

    {
        while ((head = read_request(c, &body)) != NULL) {
            pthread_mutex_lock(&s->lock);
            status = s->requests < s->nstatuses ? s->statuses[s->requests]
                                                : 200;
            extra = s->requests < s->nstatuses ? s->extra[s->requests]
                                               : NULL;
            if (s->requests < MAX_REQUESTS) {
                s->heads[s->requests] = head;
                s->bodies[s->requests] = body;
                s->times[s->requests] = now_ms();
            }
            n = s->requests++;
            pthread_mutex_unlock(&s->lock);

            if (s->hook) {
                s->hook(s->hook_data, n);
            }

            while (s->stall && !__atomic_load_n(&s->done, __ATOMIC_RELAXED)) {
                usleep(10000);
            }

            if (slot == 0 && s->fail_first && k == 0) {
                status = 503;

            } else if (slot == 0 && s->fail_first && k == 1) {
                /* nothing else may go while a failed batch is retried */
                for (i = 0; i < 30 && server_requests(s) == n + 1; i++) {
                    usleep(10000);
                }
                s->retry_alone = server_requests(s) == n + 1;
            }

            k++;

            if (slot == 1 && s->cut_second) {
                s->cut_second = 0;
                lg.l_onoff = 1;
                lg.l_linger = 0;
                setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                break;
            }

            if (status == -1) {
                /* half an answer, then a reset */
                snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\n"
                         "Content-Length: 100\r\n\r\n{\"partial");
                (void) !send(c, reply, strlen(reply), MSG_NOSIGNAL);
                lg.l_onoff = 1;
                lg.l_linger = 0;
                setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                break;
            }

            if (extra && strcmp(extra, "date+2") == 0) {
                /* Retry-After: an HTTP-date 1 to 2 s from now */
                at = time(NULL) + 2;
                gmtime_r(&at, &tm);
                strftime(date, sizeof(date),
                         "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
                extra = date;
            }

            snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\n%s"
                     "Content-Length: 2\r\n\r\n{}", status,
                     extra ? extra : "");
            if (send(c, reply, strlen(reply), MSG_NOSIGNAL) < 0) {
                break;
            }
        }
    }

    /* server_stop() shuts down only connections still open */
    pthread_mutex_lock(&s->lock);
    s->open--;
    s->fds[slot] = -1;
    pthread_mutex_unlock(&s->lock);

    close(c);

    return NULL;
}

/* The collector takes connections as they come, each in its own thread. */
static void *
serve(void *data)
{
    server_t  *s = data;
    conn_t    *conn;
    int        c;

    while ((c = accept(s->fd, NULL, NULL)) >= 0) {
        pthread_mutex_lock(&s->lock);

        if (s->nconns == MAX_CONNECTIONS) {
            pthread_mutex_unlock(&s->lock);
            close(c);
            continue;
        }

        conn = malloc(sizeof(conn_t));
        if (conn == NULL) {
            pthread_mutex_unlock(&s->lock);
            close(c);
            continue;
        }

        conn->s = s;
        conn->c = c;
        conn->n = s->nconns;
        s->fds[s->nconns] = c;
        s->open++;
        if (s->open > s->most_open) {
            s->most_open = s->open;
        }

        if (s->serial) {
            /* the next connection waits in the backlog until this ends */
            s->nconns++;
            pthread_mutex_unlock(&s->lock);
            serve_connection(conn);
            continue;
        }

        if (pthread_create(&s->conns[s->nconns], NULL, serve_connection,
                           conn) != 0)
        {
            s->fds[s->nconns] = -1;
            s->open--;
            pthread_mutex_unlock(&s->lock);
            free(conn);
            close(c);
            continue;
        }

        s->nconns++;
        pthread_mutex_unlock(&s->lock);
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

    /* connections the client left open end here */
    pthread_mutex_lock(&s->lock);
    for (i = 0; i < s->nconns; i++) {
        if (s->fds[i] >= 0) {
            shutdown(s->fds[i], SHUT_RDWR);
        }
    }
    pthread_mutex_unlock(&s->lock);

    for (i = 0; i < s->nconns && !s->serial; i++) {
        pthread_join(s->conns[i], NULL);
    }

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

    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg), NULL) > 0);
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

    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg), NULL) > 0);
    CHECK(strstr(msg, "HTTP 400") != NULL);
    /* at most one message per interval */
    CHECK_INT(vq_exporter_take_message(ex, msg, sizeof(msg), NULL), 0);

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
    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg), NULL) > 0);
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
    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg), NULL) > 0);
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

/* A span of a generation, named after it ("gen-2 #5"). */
static void
push_gen(fixture_t *f, vq_queue_t *q, uint32_t generation, size_t n)
{
    vq_idgen_t  *g;
    vq_span_t    s;
    size_t       i;
    char         name[32];

    g = vq_idgen_create();

    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "gen-%u #%zu", generation, i);
        make_span(g, &s, i, name);
        s.h.generation = generation;
        vq_stats_add(&f->stats.spans_recorded, 1);
        vq_queue_push(q, &s, vq_span_size(&s));
    }

    vq_idgen_destroy(g);
}

static vq_exporter_t *
exporter_gen(fixture_t *f, int port, size_t batch, unsigned flush_ms,
    uint32_t generation, const vq_resources_t *resources)
{
    vq_exporter_conf_t  conf;
    vq_exporter_t      *ex;
    char                url[64], err[128];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);

    memset(&conf, 0, sizeof(conf));
    conf.endpoint = url;
    conf.api_key = "key";
    conf.project_id = "own-project";
    conf.service_name = "own-service";
    conf.environment = "production";
    conf.user_agent = "ngx_vaquero_module/" VQ_VERSION;
    conf.batch_size = batch;
    conf.flush_interval_ms = flush_ms;
    conf.export_timeout_ms = 5000;
    conf.generation = generation;
    conf.resources = resources;

    ex = vq_exporter_create(&conf, f->queue, &f->stats, err, sizeof(err));
    if (ex == NULL) {
        fprintf(stderr, "exporter: %s\n", err);
    }

    return ex;
}

/* Whether a request head (its last CRLF cut) has this header line. */
static int
head_has(const char *head, const char *line)
{
    const char  *p;
    size_t       len;

    len = strlen(line);

    for (p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (strncmp(p + 2, line, len) == 0
            && (p[2 + len] == '\r' || p[2 + len] == '\0'))
        {
            return 1;
        }
    }

    return 0;
}

/*
 * Checks every body the server got: each span's name says its generation
 * ("gen-N #i"), and each span of generation N carries service "svc-N",
 * project "proj-N" (also the request's X-Project-ID) and environment
 * "env-N"; a body never mixes generations of different resources.
 * Returns the number of spans, per generation in count[N] (N < 8).
 */
static int
check_bodies(server_t *srv, int first, size_t count[8])
{
    json_t      *doc, *traces, *t, *meta;
    const char  *name, *svc, *proj, *env;
    char         want[32], header[64];
    size_t       i;
    unsigned     g;
    int          r, n, bad;

    n = 0;
    bad = 0;
    memset(count, 0, 8 * sizeof(size_t));

    for (r = first; r < server_requests(srv); r++) {
        doc = json_loads(srv->bodies[r], 0, NULL);
        CHECK(doc != NULL);
        if (doc == NULL) {
            continue;
        }

        traces = json_object_get(doc, "traces");
        proj = NULL;

        json_array_foreach(traces, i, t) {
            meta = json_object_get(json_object_get(t, "raw_data"),
                                   "metadata");
            name = json_string_value(json_object_get(t, "name"));
            svc = json_string_value(json_object_get(meta, "service_name"));
            env = json_string_value(json_object_get(t, "environment"));

            if (name == NULL || sscanf(name, "gen-%u", &g) != 1 || g >= 8) {
                bad++;
                continue;
            }

            count[g]++;
            n++;

            snprintf(want, sizeof(want), "svc-%u", g);
            bad += svc == NULL || strcmp(svc, want) != 0;
            snprintf(want, sizeof(want), "env-%u", g);
            bad += env == NULL || strcmp(env, want) != 0;

            snprintf(want, sizeof(want), "proj-%u", g);
            proj = json_string_value(json_object_get(meta, "project_id"));
            bad += proj == NULL || strcmp(proj, want) != 0;

            snprintf(header, sizeof(header), "X-Project-ID: %s", want);
            bad += !head_has(srv->heads[r], header);
        }

        json_decref(doc);
    }

    CHECK_INT(bad, 0);

    return n;
}

static void
add_resource(vq_resources_t *t, uint32_t generation, const char *svc,
    const char *proj, const char *env)
{
    vq_resource_t  res;

    memset(&res, 0, sizeof(res));
    res.service_name = svc;
    res.project_id = proj;
    res.environment = env;

    CHECK_INT(vq_resources_add(t, generation, &res), VQ_OK);
}

static vq_resources_t *
resources(uint32_t first, uint32_t last)
{
    vq_resources_t  *t;
    uint32_t         g;
    char             svc[16], proj[16], env[16];

    t = vq_resources_create();

    for (g = first; g <= last; g++) {
        snprintf(svc, sizeof(svc), "svc-%u", g);
        snprintf(proj, sizeof(proj), "proj-%u", g);
        snprintf(env, sizeof(env), "env-%u", g);
        add_resource(t, g, svc, proj, env);
    }

    return t;
}

/*
 * Spans of three configurations in one queue, interleaved: each goes with
 * its own configuration's resource, in batches that do not mix them, the
 * resource of a configuration that changed none of them holding on.
 */
static void
test_resources_by_generation(void)
{
    vq_resources_t  *t;
    vq_exporter_t   *ex;
    server_t         srv;
    fixture_t        f;
    size_t           count[8];

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 0);

    /* generation 2 changed nothing: it has generation 1's resource */
    t = vq_resources_create();
    add_resource(t, 1, "svc-1", "proj-1", "env-1");
    add_resource(t, 3, "svc-3", "proj-3", "env-3");

    push_gen(&f, f.queue, 1, 5);
    push_gen(&f, f.queue, 3, 4);
    push_gen(&f, f.queue, 1, 2);

    ex = exporter_gen(&f, srv.port, 100, 50, 3, t);

    /* the exporter has its own copy */
    vq_resources_destroy(t);

    CHECK_INT(vq_exporter_start(ex), VQ_OK);
    CHECK(wait_for(&f.stats.spans_exported, 11));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(check_bodies(&srv, 0, count), 11);
    CHECK_INT(count[1], 7);
    CHECK_INT(count[3], 4);

    /* one body per run of a resource: 5 of 1, 4 of 3, 2 of 1 */
    CHECK_INT(server_requests(&srv), 3);
    CHECK_INT(f.stats.spans_exported, 11);

    vq_exporter_destroy(ex);
    server_stop(&srv);

    /* generation 2 of the same resource shares generation 1's batches */
    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 0);

    t = vq_resources_create();
    add_resource(t, 1, "svc-1", "proj-1", "env-1");
    add_resource(t, 2, "svc-1", "proj-1", "env-1");

    push_gen(&f, f.queue, 1, 3);
    push_gen(&f, f.queue, 2, 3);

    ex = exporter_gen(&f, srv.port, 100, 50, 2, t);
    vq_resources_destroy(t);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 6));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(server_requests(&srv), 1);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * An exporter never sends a span of a later configuration, running or
 * stopping: a queue that a later generation drains is not its any more.
 * The later generation's exporter sends them all, each with its
 * configuration's resource.
 */
static void
test_later_generation(void)
{
    vq_queue_stats_t  qs;
    vq_resources_t   *t;
    vq_exporter_t    *ex;
    server_t          srv;
    fixture_t         f;
    size_t            count[8];
    char              msg[256];

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 0);

    t = resources(1, 3);

    ex = exporter_gen(&f, srv.port, 100, 50, 2, t);
    CHECK_INT(vq_exporter_start(ex), VQ_OK);
    CHECK_INT(vq_queue_generation(f.queue), 2);

    push_gen(&f, f.queue, 2, 3);
    CHECK(wait_for(&f.stats.spans_exported, 3));

    /* new workers come (generation 3), old ones go on recording */
    vq_queue_raise_generation(f.queue, 3);
    push_gen(&f, f.queue, 3, 2);
    push_gen(&f, f.queue, 2, 2);

    vq_exporter_stop(ex, 3000);
    vq_exporter_destroy(ex);

    CHECK_INT(f.stats.spans_exported, 3);
    CHECK_INT(server_requests(&srv), 1);
    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.used, 4);

    /* the new configuration's exporter sends the rest, each its own way */
    ex = exporter_gen(&f, srv.port, 100, 50, 3, t);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 7));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(check_bodies(&srv, 0, count), 7);
    CHECK_INT(count[2], 5);
    CHECK_INT(count[3], 2);
    CHECK_INT(f.stats.spans_dropped_export_failed, 0);
    CHECK_INT(f.stats.spans_exported, f.stats.spans_recorded);

    vq_exporter_destroy(ex);

    /* a later generation than any exporter of the queue: damaged */
    push_gen(&f, f.queue, 7, 1);
    push_gen(&f, f.queue, 3, 1);
    ex = exporter_gen(&f, srv.port, 100, 50, 3, t);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_dropped_export_failed, 1));
    CHECK(wait_for(&f.stats.spans_exported, 8));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(f.stats.spans_exported, 8);
    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg), NULL) > 0);
    CHECK(strstr(msg, "generation 7") != NULL);

    vq_exporter_destroy(ex);
    vq_resources_destroy(t);
    server_stop(&srv);
}

static void
push_late(void *data, int n)
{
    fixture_t  *f = data;

    /* while the stopping exporter sends its first batch */
    if (n == 0) {
        push_gen(f, f->queue, 0, 1);
    }
}

/*
 * A stopping exporter sends what the queue held when it was asked to
 * stop, not what other processes push after: theirs to send.
 */
static void
test_stop_snapshot(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    server_t          srv;
    fixture_t         f;

    memset(&srv, 0, sizeof(srv));
    fixture_init(&f, 0);
    srv.hook = push_late;
    srv.hook_data = &f;
    server_start(&srv);

    /* a later generation drains the queue: nothing taken while running */
    vq_queue_raise_generation(f.queue, 1);
    ex = exporter_gen(&f, srv.port, 4, 50, 0, NULL);
    vq_exporter_start(ex);
    push_gen(&f, f.queue, 0, 8);

    /* two batches of 4, the second one after the late push */
    vq_exporter_stop(ex, 3000);

    CHECK_INT(server_requests(&srv), 2);
    CHECK_INT(f.stats.spans_exported, 8);
    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.used, 1);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * Another queue (an earlier configuration's, say): its records are moved
 * into the exporter's own and sent from there, counted there, as fast as
 * the own queue has room: a small queue loses nothing of a large one.
 */
static void
test_queues(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    server_t          srv;
    fixture_t         a, b;
    int               i;

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&a, 25);
    fixture_init_size(&b, 1024 * 1024, 17);

    ex = exporter(&a, srv.port, 10);
    CHECK_INT(vq_exporter_add_queue(ex, b.queue, &b.stats), VQ_OK);
    CHECK_INT(vq_exporter_start(ex), VQ_OK);
    CHECK_INT(vq_exporter_add_queue(ex, b.queue, &b.stats), VQ_EINVAL);

    CHECK(wait_for(&a.stats.spans_exported, 42));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(a.stats.spans_exported, 42);
    CHECK_INT(a.stats.spans_recorded, 42);
    CHECK_INT(a.stats.spans_dropped_export_failed, 0);
    CHECK_INT(b.stats.spans_exported, 0);
    CHECK_INT(a.stats.export_requests, server_requests(&srv));
    vq_queue_get_stats(b.queue, &qs);
    CHECK_INT(qs.used, 0);

    for (i = 2; i < VQ_EXPORTER_MAX_QUEUES; i++) {
        CHECK_INT(vq_exporter_add_queue(ex, b.queue, &b.stats), VQ_OK);
    }
    CHECK_INT(vq_exporter_add_queue(ex, b.queue, &b.stats), VQ_EFULL);

    vq_exporter_destroy(ex);

    /* a queue of 4 slots takes 300 spans in turns */
    fixture_init_size(&a, vq_queue_min_size(VQ_SPAN_RECORD_MAX) * 2, 0);
    fixture_init_size(&b, 1024 * 1024, 300);
    vq_queue_get_stats(a.queue, &qs);
    CHECK(qs.capacity < 10);

    ex = exporter(&a, srv.port, 100);
    vq_exporter_add_queue(ex, b.queue, &b.stats);
    vq_exporter_start(ex);
    CHECK(wait_for(&a.stats.spans_exported, 300));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(a.stats.spans_exported, 300);
    CHECK_INT(a.stats.spans_recorded, 300);
    CHECK_INT(a.stats.spans_dropped_export_failed, 0);
    CHECK_INT(b.stats.spans_dropped_export_failed, 0);
    vq_queue_get_stats(a.queue, &qs);
    CHECK_INT(qs.refused_full, 0);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * Stopping, the exporter moves what the other queue held then into its
 * own and sends it, with the rest of its own snapshot.
 */
static void
test_queues_at_stop(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    server_t          srv;
    fixture_t         a, b;

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&a, 0);
    fixture_init_size(&b, 1024 * 1024, 0);

    /* a newer configuration claimed the other queue: nothing moves ... */
    vq_queue_raise_generation(b.queue, 1);
    ex = exporter(&a, srv.port, 100);
    vq_exporter_add_queue(ex, b.queue, &b.stats);
    vq_exporter_start(ex);
    push_gen(&b, b.queue, 0, 7);
    push_gen(&a, a.queue, 0, 3);
    CHECK(wait_for(&a.stats.spans_exported, 3));
    vq_queue_get_stats(b.queue, &qs);
    CHECK_INT(qs.used, 7);

    /* ... until it stops: then what its generation recorded goes */
    vq_exporter_stop(ex, 3000);
    CHECK_INT(a.stats.spans_exported, 10);
    vq_queue_get_stats(b.queue, &qs);
    CHECK_INT(qs.used, 0);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/* --- protocols, delivery rules, gzip, files, messages ---------------- */

static void
base_conf(vq_exporter_conf_t *conf, char *url, size_t size, int port)
{
    snprintf(url, size, "http://127.0.0.1:%d/base/", port);

    memset(conf, 0, sizeof(vq_exporter_conf_t));
    conf->endpoint = url;
    conf->api_key = "secret-key";
    conf->project_id = "proj-9";
    conf->service_name = "edge";
    conf->environment = "development";
    conf->user_agent = "ngx_vaquero_module/" VQ_VERSION;
    conf->batch_size = 100;
    conf->flush_interval_ms = 50;
    conf->export_timeout_ms = 5000;
}

static vq_exporter_t *
create(const vq_exporter_conf_t *conf, fixture_t *f)
{
    vq_exporter_t  *ex;
    char            err[256];

    ex = vq_exporter_create(conf, f->queue, &f->stats, err, sizeof(err));
    if (ex == NULL) {
        fprintf(stderr, "exporter: %s\n", err);
    }

    return ex;
}

/* a wire format the exporter has never heard of: one line per span name */
static int
encode_names(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n)
{
    size_t       i, len;
    const char  *name;

    vq_buf_append(out, res->service_name, strlen(res->service_name));
    vq_buf_append(out, ":", 1);

    for (i = 0; i < n; i++) {
        name = vq_span_str(spans[i], VQ_FIELD_NAME, &len);
        vq_buf_append(out, name, len);
        vq_buf_append(out, ";", 1);
    }

    return out->failed ? VQ_ENOMEM : (int) n;
}

static const vq_protocol_t  names_protocol = {
    "names", "/names/v2", "text/x-names", "X-Tenant", 0, encode_names
};

/*
 * The seam: a protocol is a description (path, content type, project
 * header, encoder), and the exporter sends any of them, the three known
 * ones and one made up here, with no change to the thread.
 */
static void
test_protocols(void)
{
    static const struct {
        const vq_protocol_t  *protocol;
        const char           *line;
        const char           *type;
        int                   project;
    } cases[] = {
        { &vq_protocol_vaquero, "POST /base/api/v1/traces/batch HTTP/1.1",
          "application/json", 1 },
        { &vq_protocol_otlp, "POST /base/v1/traces HTTP/1.1",
          "application/x-protobuf", 0 },
        { &vq_protocol_otlp_json, "POST /base/v1/traces HTTP/1.1",
          "application/json", 0 },
        { &names_protocol, "POST /base/names/v2 HTTP/1.1", "text/x-names",
          0 },
    };

    vq_exporter_conf_t  conf;
    vq_exporter_t      *ex;
    server_t            srv;
    fixture_t           f;
    json_t             *doc;
    char                url[64], want[64];
    size_t              i;

    CHECK(vq_protocol_find("vaquero") == &vq_protocol_vaquero);
    CHECK(vq_protocol_find("otlp") == &vq_protocol_otlp);
    CHECK(vq_protocol_find("otlp_json") == &vq_protocol_otlp_json);
    CHECK(vq_protocol_find("zipkin") == NULL);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&srv, 0, sizeof(srv));
        server_start(&srv);
        fixture_init(&f, 3);

        base_conf(&conf, url, sizeof(url), srv.port);
        conf.protocol = cases[i].protocol;

        ex = create(&conf, &f);
        CHECK(ex != NULL);
        if (ex == NULL) {
            server_stop(&srv);
            continue;
        }

        vq_exporter_start(ex);
        CHECK(wait_for(&f.stats.spans_exported, 3));
        vq_exporter_stop(ex, 3000);

        CHECK_INT(server_requests(&srv), 1);
        CHECK(strncmp(srv.heads[0], cases[i].line, strlen(cases[i].line))
              == 0);
        snprintf(want, sizeof(want), "Content-Type: %s", cases[i].type);
        CHECK(head_has(srv.heads[0], want));
        CHECK(head_has(srv.heads[0], "Authorization: Bearer secret-key"));
        CHECK(head_has(srv.heads[0], "X-Project-ID: proj-9")
              == cases[i].project);

        if (cases[i].protocol == &vq_protocol_otlp_json) {
            /* resourceSpans[0].scopeSpans[0].spans: the three */
            doc = json_loads(srv.bodies[0], 0, NULL);
            CHECK(doc != NULL);
            CHECK_INT(json_array_size(json_object_get(json_array_get(
                          json_object_get(json_array_get(json_object_get(
                              doc, "resourceSpans"), 0), "scopeSpans"), 0),
                          "spans")), 3);
            json_decref(doc);
        }

        if (cases[i].protocol == &names_protocol) {
            CHECK_STR(srv.bodies[0], "edge:GET /;GET /;GET /;");
            CHECK(head_has(srv.heads[0], "X-Tenant: proj-9"));
        }

        vq_exporter_destroy(ex);
        server_stop(&srv);
    }
}

/* Extra headers go on every request, after the exporter's own. */
static void
test_extra_headers(void)
{
    static const vq_kv_t  headers[] = {
        { "X-Scope-OrgID", "tenant-1" },
        { "X-Honeycomb-Team", "hc-key" },
    };

    vq_exporter_conf_t  conf;
    vq_exporter_t      *ex;
    server_t            srv;
    fixture_t           f;
    char                url[64];

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 5);

    base_conf(&conf, url, sizeof(url), srv.port);
    conf.api_key = NULL;
    conf.headers = headers;
    conf.nheaders = 2;
    conf.batch_size = 2;

    ex = create(&conf, &f);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 5));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(server_requests(&srv), 3);
    CHECK(head_has(srv.heads[2], "X-Scope-OrgID: tenant-1"));
    CHECK(head_has(srv.heads[2], "X-Honeycomb-Team: hc-key"));
    CHECK(strstr(srv.heads[2], "Authorization") == NULL);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * A 429 or 503 with Retry-After (seconds, or an HTTP-date) is retried
 * after that long, not after the backoff's 50..100 ms.
 */
static void
test_retry_after(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    int64_t         waited;

    memset(&srv, 0, sizeof(srv));
    srv.statuses[0] = 429;
    srv.extra[0] = "Retry-After: 1\r\n";
    srv.statuses[1] = 503;
    srv.extra[1] = "date+2";
    srv.nstatuses = 2;

    server_start(&srv);
    fixture_init(&f, 4);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 4));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(server_requests(&srv), 3);
    CHECK_INT(f.stats.export_retries, 2);

    waited = srv.times[1] - srv.times[0];
    CHECK(waited >= 950 && waited < 3000);
    if (waited < 950 || waited >= 3000) {
        fprintf(stderr, "Retry-After: 1 waited %lld ms\n", (long long) waited);
    }

    /* the date has whole seconds: 1 to 2 s after the answer */
    waited = srv.times[2] - srv.times[1];
    CHECK(waited >= 950 && waited < 4000);
    if (waited < 950 || waited >= 4000) {
        fprintf(stderr, "Retry-After: an HTTP-date waited %lld ms\n",
                (long long) waited);
    }

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * "Retry-After: 0" (or a date past) is the least wait, not the wait: a
 * collector that keeps answering so still gets the growing backoff.
 */
static void
test_retry_after_zero(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    int64_t         waited;
    int             i;

    memset(&srv, 0, sizeof(srv));
    for (i = 0; i < 4; i++) {
        srv.statuses[i] = i % 2 ? 503 : 429;
        srv.extra[i] = "Retry-After: 0\r\n";
    }
    srv.nstatuses = 4;

    server_start(&srv);
    fixture_init(&f, 3);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 3));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(server_requests(&srv), 5);
    CHECK_INT(f.stats.export_retries, 4);

    /* backoff 100 << n ms, jittered to 50..100% of it */
    for (i = 0; i < 4; i++) {
        waited = srv.times[i + 1] - srv.times[i];
        CHECK(waited >= (50 << i) - 5);
        if (waited < (50 << i) - 5) {
            fprintf(stderr, "Retry-After: 0, retry %d waited %lld ms\n",
                    i + 1, (long long) waited);
        }
    }

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/* A redirect is a configuration error: dropped, counted, not retried. */
static void
test_redirect_drops(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    char            msg[512];
    int             level;

    memset(&srv, 0, sizeof(srv));
    srv.statuses[0] = 301;
    srv.extra[0] = "Location: https://collector.example/api/v1/traces/batch"
                   "\r\n";
    srv.nstatuses = 1;
    server_start(&srv);
    fixture_init(&f, 7);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_dropped_export_failed, 7));

    /* more spans go on being sent: only that batch is dropped */
    fixture_push(&f, 3);
    CHECK(wait_for(&f.stats.spans_exported, 3));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(server_requests(&srv), 2);
    CHECK_INT(f.stats.export_failures, 1);
    CHECK_INT(f.stats.export_retries, 0);
    CHECK_INT(f.stats.spans_exported, 3);
    CHECK_INT(f.stats.spans_dropped_export_failed, 7);

    level = 0;
    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg), &level) > 0);
    CHECK_INT(level, VQ_LOG_ERROR);
    CHECK(strstr(msg, "HTTP 301") != NULL);
    CHECK(strstr(msg, "https://collector.example/") != NULL);
    CHECK(strstr(msg, "7 spans dropped") != NULL);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * An answer cut by a reset after its status: the status stands (the
 * collector took the batch), not sent again; the cut is a warning.
 */
static void
test_reset_after_status(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    char            msg[512];
    int             level;

    memset(&srv, 0, sizeof(srv));
    srv.statuses[0] = -1;
    srv.nstatuses = 1;
    server_start(&srv);
    fixture_init(&f, 6);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 6));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(server_requests(&srv), 1);
    CHECK_INT(f.stats.export_retries, 0);
    CHECK_INT(f.stats.last_export_status, 200);
    CHECK_INT(f.stats.spans_dropped_export_failed, 0);

    level = -1;
    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg), &level) > 0);
    CHECK(strstr(msg, "answered HTTP 200, then") != NULL);
    CHECK_INT(level, VQ_LOG_WARN);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/* Content-Encoding: gzip, and the body inflates to the batch's JSON. */
static void
test_gzip(void)
{
    vq_exporter_conf_t   conf;
    vq_exporter_t       *ex;
    vq_resource_t        res;
    vq_idgen_t          *g;
    vq_span_t            spans[20];
    const vq_span_t     *ptrs[20];
    vq_buf_t             want;
    server_t             srv;
    fixture_t            f;
    z_stream             z;
    char                 url[64], host[256], *cl, *out;
    size_t               i, len;

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 0);

    g = vq_idgen_create();
    for (i = 0; i < 20; i++) {
        make_span(g, &spans[i], i, "GET /gzip");
        ptrs[i] = &spans[i];
        vq_stats_add(&f.stats.spans_recorded, 1);
        vq_queue_push(f.queue, &spans[i], vq_span_size(&spans[i]));
    }
    vq_idgen_destroy(g);

    base_conf(&conf, url, sizeof(url), srv.port);
    conf.gzip = 1;

    ex = create(&conf, &f);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 20));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(server_requests(&srv), 1);
    CHECK(head_has(srv.heads[0], "Content-Encoding: gzip"));

    /* what the exporter encoded, for the same resource */
    memset(&res, 0, sizeof(res));
    memset(host, 0, sizeof(host));
    gethostname(host, sizeof(host) - 1);
    res.service_name = "edge";
    res.project_id = "proj-9";
    res.environment = "development";
    res.hostname = host;
    res.sdk_version = VQ_VERSION;
    vq_buf_init(&want);
    CHECK_INT(vq_encode_vaquero_batch(&want, &res, ptrs, 20), 20);

    cl = strcasestr(srv.heads[0], "\r\nContent-Length:");
    len = cl ? strtoul(cl + 17, NULL, 10) : 0;
    CHECK(len > 0 && len < want.len);

    out = malloc(want.len + 1);
    memset(&z, 0, sizeof(z));
    inflateInit2(&z, 15 + 16);
    z.next_in = (Bytef *) srv.bodies[0];
    z.avail_in = (uInt) len;
    z.next_out = (Bytef *) out;
    z.avail_out = (uInt) want.len + 1;
    CHECK_INT(inflate(&z, Z_FINISH), Z_STREAM_END);
    CHECK_INT(z.total_out, want.len);
    CHECK(z.total_out == want.len && memcmp(out, want.data, want.len) == 0);
    inflateEnd(&z);

    free(out);
    vq_buf_free(&want);
    vq_exporter_destroy(ex);
    server_stop(&srv);
}

static size_t
count_lines(const char *path, size_t *spans)
{
    FILE     *fp;
    char     *line;
    size_t    cap, n;
    json_t   *doc;
    ssize_t   len;

    n = 0;
    *spans = 0;
    line = NULL;
    cap = 0;

    fp = fopen(path, "r");
    if (fp == NULL) {
        return 0;
    }

    while ((len = getline(&line, &cap, fp)) > 0) {
        CHECK(line[len - 1] == '\n');
        doc = json_loads(line, 0, NULL);
        CHECK(doc != NULL);
        *spans += json_array_size(json_object_get(doc, "traces"));
        json_decref(doc);
        n++;
    }

    free(line);
    fclose(fp);

    return n;
}

/*
 * file:/path: a line per batch, created 0600, and after the file is moved
 * and the exporter asked to reopen, the lines go to a new file.
 */
static void
test_file_endpoint(void)
{
    vq_exporter_conf_t  conf;
    vq_exporter_t      *ex;
    fixture_t           f;
    struct stat         st;
    char                dir[64], path[96], moved[96], url[128], err[128];
    size_t              spans;

    snprintf(dir, sizeof(dir), "/tmp/vq-test-file-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/spans.jsonl", dir);
    snprintf(moved, sizeof(moved), "%s/spans.jsonl.1", dir);

    fixture_init(&f, 25);

    base_conf(&conf, url, sizeof(url), 1);
    snprintf(url, sizeof(url), "file:%s", path);
    conf.batch_size = 10;

    /* protobuf is not a line of text */
    conf.protocol = &vq_protocol_otlp;
    CHECK(vq_exporter_create(&conf, f.queue, &f.stats, err, sizeof(err))
          == NULL);
    CHECK(strstr(err, "otlp") != NULL);
    conf.protocol = NULL;

    ex = create(&conf, &f);
    CHECK(ex != NULL);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 25));

    CHECK_INT(count_lines(path, &spans), 3);
    CHECK_INT(spans, 25);
    CHECK_INT(f.stats.export_requests, 3);
    CHECK_INT(f.stats.last_export_status, 200);

    CHECK(rename(path, moved) == 0);
    vq_exporter_reopen(ex);

    fixture_push(&f, 5);
    CHECK(wait_for(&f.stats.spans_exported, 30));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(count_lines(moved, &spans), 3);
    CHECK_INT(spans, 25);
    CHECK_INT(count_lines(path, &spans), 1);
    CHECK_INT(spans, 5);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    vq_exporter_destroy(ex);
    unlink(path);
    unlink(moved);
    rmdir(dir);
}

/* A collector, and a running exporter of f with this batch and interval. */
static vq_exporter_t *
start_sleepy(server_t *srv, fixture_t *f, size_t batch, unsigned flush_ms)
{
    vq_exporter_conf_t  conf;
    vq_exporter_t      *ex;
    char                url[64];    /* copied by create() */

    memset(srv, 0, sizeof(*srv));
    server_start(srv);

    base_conf(&conf, url, sizeof(url), srv->port);
    conf.batch_size = batch;
    conf.flush_interval_ms = flush_ms;

    ex = create(&conf, f);
    CHECK(ex != NULL);

    return ex;
}

/*
 * An idle thread sleeps a whole flush interval (a minute here): a
 * producer's vq_queue_wake() has a full batch sent now, and stop sends
 * the rest.
 */
static void
test_wake(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;

    fixture_init(&f, 0);
    ex = start_sleepy(&srv, &f, 5, 60000);
    CHECK_INT(vq_exporter_start(ex), VQ_OK);

    fixture_push(&f, 5);
    vq_queue_wake(f.queue, 0);
    CHECK(wait_for(&f.stats.spans_exported, 5));
    CHECK_INT(server_requests(&srv), 1);

    fixture_push(&f, 10);
    vq_queue_wake(f.queue, 0);
    CHECK(wait_for(&f.stats.spans_exported, 15));
    CHECK_INT(server_requests(&srv), 3);

    fixture_push(&f, 3);
    vq_exporter_stop(ex, 3000);
    CHECK_INT(f.stats.spans_exported, 18);
    CHECK_INT(server_requests(&srv), 4);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * Pushes n records into f, unannounced, and returns how many ms later
 * counter reached want, or -1 if not within 10 s.
 */
static int64_t
push_and_time(fixture_t *f, size_t n, const uint64_t *counter, uint64_t want)
{
    int64_t  start;

    start = now_ms();
    fixture_push(f, n);

    return wait_for(counter, want) ? now_ms() - start : -1;
}

/*
 * Records that earlier processes push into a kept queue (an earlier
 * layout's) wake nobody here: they still go out within the interval.
 */
static void
test_kept_queue_polled(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       a, b;
    int64_t         ms;

    fixture_init(&a, 0);
    fixture_init_size(&b, 1024 * 1024, 0);
    ex = start_sleepy(&srv, &a, 5, 2000);
    CHECK_INT(vq_exporter_add_queue(ex, b.queue, &b.stats), VQ_OK);
    CHECK_INT(vq_exporter_start(ex), VQ_OK);

    ms = push_and_time(&b, 5, &a.stats.spans_exported, 5);
    CHECK(ms >= 0 && ms < 2000 + 1000);

    vq_exporter_stop(ex, 3000);
    CHECK_INT(a.stats.spans_exported, 5);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * No span waits much more than the flush interval, however the batches
 * fall: records pushed while the thread sleeps with a partial batch (the
 * ones left over after it is topped up go in the next one), and records
 * pushed by several workers that each push less than a batch, so that
 * nobody wakes the thread (the last of them make a partial batch).
 * Before batches were dated from when the queue was last seen empty,
 * these went out after about two intervals.
 */
static void
test_flush_bound(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    server_t          srv;
    fixture_t         f;
    int64_t           ms;

    fixture_init(&f, 0);
    ex = start_sleepy(&srv, &f, 10, 2000);
    CHECK_INT(vq_exporter_start(ex), VQ_OK);

    /* a partial batch of 6, held; then 8 more, unannounced */
    fixture_push(&f, 6);
    vq_queue_wake(f.queue, 0);
    do {                                /* until the thread holds them */
        usleep(1000);
        vq_queue_get_stats(f.queue, &qs);
    } while (qs.used != 0);
    ms = push_and_time(&f, 8, &f.stats.spans_exported, 14);
    CHECK(ms >= 0 && ms < 2000 + 1000);
    printf("test_exporter: 4 spans left over from a topped-up batch went "
           "out after %lld ms (interval 2000)\n", (long long) ms);

    /* 36 pushed as if by 4 workers, 9 each: nobody wakes the thread */
    ms = push_and_time(&f, 36, &f.stats.spans_exported, 50);
    CHECK(ms >= 0 && ms < 2000 + 1000);
    printf("test_exporter: 36 unannounced spans went out after %lld ms "
           "(interval 2000)\n", (long long) ms);

    vq_exporter_stop(ex, 3000);
    CHECK_INT(f.stats.spans_exported, 50);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * What the exporter says while it stops is given after the stop, even
 * within the message interval: the owner logs it after the join.
 */
/* The thread's pending message, once there is one (10 s at most). */
static size_t
wait_message(vq_exporter_t *ex, char *msg, size_t size, int *level)
{
    size_t  n;
    int     i;

    for (i = 0; i < 1000; i++) {
        n = vq_exporter_take_message(ex, msg, size, level);
        if (n > 0) {
            return n;
        }
        usleep(10000);
    }

    return 0;
}

static void
test_stop_message(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    char            msg[512];
    int             level;

    memset(&srv, 0, sizeof(srv));
    srv.statuses[0] = 503;
    srv.nstatuses = 1;
    server_start(&srv);
    fixture_init(&f, 5);

    ex = exporter(&f, srv.port, 100);
    vq_exporter_start(ex);

    /*
     * The failure's message; the next one would wait for the interval.
     * Waited for, not taken once export_failures moves: the thread counts
     * the failure before it words the message.
     */
    level = 0;
    CHECK(wait_message(ex, msg, sizeof(msg), &level) > 0);
    CHECK(vq_stats_get(&f.stats.export_failures) >= 1);
    CHECK(strstr(msg, "failed with HTTP 503, will retry") != NULL);
    CHECK_INT(level, VQ_LOG_ERROR);

    srv.stall = 1;
    while (server_requests(&srv) < 2) {
        usleep(1000);
    }

    vq_exporter_stop(ex, 200);

    level = 0;
    CHECK(vq_exporter_take_message(ex, msg, sizeof(msg), &level) > 0);
    CHECK(strstr(msg, "stopped with 5 spans not sent") != NULL);
    CHECK(strstr(msg, "1 failed exports") != NULL);
    CHECK_INT(level, VQ_LOG_ERROR);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/* Bad endpoints are refused with the check nginx -t makes. */
static void
test_bad_endpoints(void)
{
    static const char  *bad[] = {
        "ftp://example.test", "http://", "https:///x", "file:relative",
        "http://user:pw@host", "http://host:0", "http://host:99999",
        "http://host/?q=1", "http ://host", "",
    };

    vq_exporter_conf_t  conf;
    fixture_t           f;
    char                url[64], err[256];
    size_t              i;

    fixture_init(&f, 0);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        base_conf(&conf, url, sizeof(url), 1);
        conf.endpoint = bad[i];
        err[0] = '\0';
        CHECK(vq_exporter_create(&conf, f.queue, &f.stats, err, sizeof(err))
              == NULL);
        CHECK(strstr(err, bad[i]) != NULL);
    }
}

/* HTTPS:// and HTTP:// in capitals work (and go out in lowercase). */
static void
test_scheme_case(void)
{
    vq_exporter_conf_t  conf;
    vq_exporter_t      *ex;
    server_t            srv;
    fixture_t           f;
    char                url[64];

    memset(&srv, 0, sizeof(srv));
    server_start(&srv);
    fixture_init(&f, 2);

    base_conf(&conf, url, sizeof(url), srv.port);
    memcpy(url, "HTTP", 4);

    ex = create(&conf, &f);
    CHECK(ex != NULL);
    vq_exporter_start(ex);
    CHECK(wait_for(&f.stats.spans_exported, 2));
    vq_exporter_stop(ex, 3000);
    CHECK_INT(f.stats.export_failures, 0);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * The first request is answered only once a second one came (or after
 * 3 s): when the queue holds more than a batch, the exporter sends the
 * next batch on its second connection before it reads the first answer.
 */
static void
hold_first(void *data, int n)
{
    server_t  *s = data;
    int        i;

    if (n != 0) {
        return;
    }

    for (i = 0; i < 300 && server_requests(s) < 2; i++) {
        usleep(10000);
    }

    pthread_mutex_lock(&s->lock);
    s->overlapped = s->requests >= 2;
    pthread_mutex_unlock(&s->lock);
}

/* spans in the bodies of the requests answered 2xx */
static size_t
traces_delivered(server_t *s)
{
    json_t  *doc;
    size_t   traces;
    int      i, status;

    traces = 0;

    for (i = 0; i < server_requests(s) && i < MAX_REQUESTS; i++) {
        status = i < s->nstatuses ? s->statuses[i] : 200;
        doc = json_loads(s->bodies[i], 0, NULL);

        if (doc && status >= 200 && status < 300) {
            traces += json_array_size(json_object_get(doc, "traces"));
        }

        json_decref(doc);
    }

    return traces;
}

/*
 * srv started, 300 spans queued, an exporter of batches of 100 started:
 * once they are all exported, the exporter, running.
 */
static vq_exporter_t *
export_300(server_t *srv, fixture_t *f)
{
    vq_exporter_t  *ex;

    server_start(srv);
    fixture_init(f, 300);

    ex = exporter(f, srv->port, 100);
    CHECK_INT(vq_exporter_start(ex), VQ_OK);
    CHECK(wait_for(&f->stats.spans_exported, 300));

    return ex;
}

static void
test_overlap(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;

    memset(&srv, 0, sizeof(srv));
    srv.hook = hold_first;
    srv.hook_data = &srv;
    ex = export_300(&srv, &f);
    vq_exporter_stop(ex, 3000);

    CHECK_INT(srv.overlapped, 1);
    CHECK_INT(srv.most_open, 2);
    CHECK_INT(server_requests(&srv), 3);
    CHECK_INT(f.stats.export_requests, 3);
    CHECK_INT(f.stats.export_failures, 0);
    CHECK_INT(f.stats.spans_exported, 300);
    CHECK_INT(traces_delivered(&srv), 300);

    vq_exporter_destroy(ex);
    server_stop(&srv);

    /* the first of two in flight fails: it goes again, the second not */
    memset(&srv, 0, sizeof(srv));
    srv.statuses[0] = 503;
    srv.nstatuses = 1;
    srv.hook = hold_first;
    srv.hook_data = &srv;
    ex = export_300(&srv, &f);
    vq_exporter_stop(ex, 3000);

    CHECK_INT(srv.overlapped, 1);
    CHECK_INT(server_requests(&srv), 4);
    CHECK_INT(f.stats.export_requests, 4);
    CHECK_INT(f.stats.export_failures, 1);
    CHECK_INT(f.stats.export_retries, 1);
    CHECK_INT(f.stats.spans_exported, 300);
    CHECK_INT(f.stats.spans_dropped_export_failed, 0);
    CHECK_INT(traces_delivered(&srv), 300);

    vq_exporter_destroy(ex);
    server_stop(&srv);

    /* the second of two in flight fails */
    memset(&srv, 0, sizeof(srv));
    srv.statuses[1] = 503;
    srv.nstatuses = 2;
    srv.statuses[0] = 200;
    srv.hook = hold_first;
    srv.hook_data = &srv;
    ex = export_300(&srv, &f);
    vq_exporter_stop(ex, 3000);

    CHECK_INT(srv.overlapped, 1);
    CHECK_INT(server_requests(&srv), 4);
    CHECK_INT(f.stats.export_retries, 1);
    CHECK_INT(f.stats.spans_exported, 300);
    CHECK_INT(traces_delivered(&srv), 300);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * A stop asked while batches overlap: the exporter sends what was queued
 * before the stop, not what is pushed after it (while the answer to a
 * request of its is held back).  The stop is seen by the queue's wake
 * count, which vq_exporter_stop() raises after setting "stopping".
 */
typedef struct {
    fixture_t  *f;
    uint32_t    wakes;      /* the count once the exporter started */
} late_t;

static void
push_after_stop(void *data, int n)
{
    late_t  *l = data;
    int      i;

    if (n != 2) {
        return;
    }

    for (i = 0; i < 1000 && vq_queue_wakes(l->f->queue) == l->wakes; i++) {
        /* vq_exporter_stop() wakes the queue: the stop was asked */
        usleep(10000);
    }

    fixture_push(l->f, 100);
}

static void
test_stop_while_overlapping(void)
{
    vq_queue_stats_t  qs;
    vq_exporter_t    *ex;
    server_t          srv;
    fixture_t         f;
    late_t            late;

    memset(&srv, 0, sizeof(srv));
    fixture_init(&f, 300);
    late.f = &f;
    srv.hook = push_after_stop;
    srv.hook_data = &late;
    server_start(&srv);

    ex = exporter(&f, srv.port, 10);

    /* set before the hook can run: starting wakes the queue once */
    late.wakes = vq_queue_wakes(f.queue) + 1;
    CHECK_INT(vq_exporter_start(ex), VQ_OK);

    while (server_requests(&srv) < 3) {
        usleep(1000);
    }

    vq_exporter_stop(ex, 5000);

    /* what was queued before the stop went; what came after waits */
    vq_queue_get_stats(f.queue, &qs);
    CHECK_INT(qs.used, 100);
    CHECK_INT(f.stats.spans_exported, 300);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * A collector that serves one connection at a time, to its end: the
 * request on the second connection gets no answer (the first one is kept
 * alive), is sent again on the first, and no request goes on a second
 * connection again: one failure in all.
 */
static void
test_serial_collector(void)
{
    vq_exporter_conf_t  conf;
    vq_exporter_t      *ex;
    server_t            srv;
    fixture_t           f;
    int                 level;
    char                url[64], err[128], msg[512];

    memset(&srv, 0, sizeof(srv));
    srv.serial = 1;
    server_start(&srv);
    fixture_init(&f, 300);

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
    memset(&conf, 0, sizeof(conf));
    conf.endpoint = url;
    conf.service_name = "edge";
    conf.environment = "production";
    conf.user_agent = "ngx_vaquero_module/" VQ_VERSION;
    conf.batch_size = 10;
    conf.flush_interval_ms = 50;
    conf.export_timeout_ms = 1000;

    ex = vq_exporter_create(&conf, f.queue, &f.stats, err, sizeof(err));
    CHECK(ex != NULL);
    CHECK_INT(vq_exporter_start(ex), VQ_OK);
    CHECK(wait_for(&f.stats.spans_exported, 300));
    vq_exporter_stop(ex, 3000);

    CHECK_INT(f.stats.spans_exported, 300);
    CHECK_INT(f.stats.export_failures, 1);
    CHECK_INT(f.stats.export_retries, 1);
    CHECK_INT(f.stats.spans_dropped_export_failed, 0);

    /* said first, though a recovery came after it */
    msg[0] = '\0';
    level = 0;
    vq_exporter_take_message(ex, msg, sizeof(msg), &level);
    CHECK(strstr(msg, "one request at a time") != NULL);
    CHECK_INT(level, VQ_LOG_WARN);
    msg[0] = '\0';
    vq_exporter_take_message(ex, msg, sizeof(msg), &level);
    CHECK(strstr(msg, "recovered") != NULL);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * A reset on the second connection (a collector restarting) is retried
 * and does not stop the overlap: when the worker falls behind again, a
 * request is answered only once another one came.
 */
typedef struct {
    server_t  *s;
    int        watch;       /* the request to hold, atomic */
    int        overlapped;  /* another came while it was held */
} watch_t;

static void
watch_hook(void *data, int n)
{
    watch_t  *w = data;
    int       i;

    if (n == 0) {
        hold_first(w->s, n);
        return;
    }

    if (n != __atomic_load_n(&w->watch, __ATOMIC_ACQUIRE)) {
        return;
    }

    for (i = 0; i < 300 && server_requests(w->s) <= n + 1; i++) {
        usleep(10000);
    }

    __atomic_store_n(&w->overlapped, server_requests(w->s) > n + 1,
                     __ATOMIC_RELEASE);
}

static void
test_reset_keeps_overlap(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;
    watch_t         w;

    memset(&srv, 0, sizeof(srv));
    srv.cut_second = 1;
    w.s = &srv;
    w.watch = -1;
    w.overlapped = -1;
    srv.hook = watch_hook;
    srv.hook_data = &w;
    ex = export_300(&srv, &f);
    CHECK_INT(srv.overlapped, 1);
    CHECK_INT(f.stats.export_failures, 1);

    /* behind again: the request after the next is held for another */
    __atomic_store_n(&w.watch, server_requests(&srv) + 1, __ATOMIC_RELEASE);
    fixture_push(&f, 500);
    vq_queue_wake(f.queue, 1);
    CHECK(wait_for(&f.stats.spans_exported, 800));
    CHECK_INT(__atomic_load_n(&w.overlapped, __ATOMIC_ACQUIRE), 1);

    vq_exporter_stop(ex, 3000);
    CHECK_INT(f.stats.spans_exported, 800);
    CHECK_INT(f.stats.spans_dropped_export_failed, 0);

    vq_exporter_destroy(ex);
    server_stop(&srv);
}

/*
 * The first of two batches in flight fails and the second is answered:
 * the failure still counts, so the retry goes alone (no second request
 * in flight while a batch fails), and the later batches follow.
 */
static void
test_retry_goes_alone(void)
{
    vq_exporter_t  *ex;
    server_t        srv;
    fixture_t       f;

    memset(&srv, 0, sizeof(srv));
    srv.fail_first = 1;
    srv.retry_alone = -1;
    ex = export_300(&srv, &f);
    vq_exporter_stop(ex, 3000);

    CHECK_INT(srv.retry_alone, 1);
    CHECK_INT(f.stats.export_failures, 1);
    CHECK_INT(f.stats.export_retries, 1);
    CHECK_INT(f.stats.spans_exported, 300);
    CHECK_INT(server_requests(&srv), 4);

    vq_exporter_destroy(ex);
    server_stop(&srv);
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
    test_resources_by_generation();
    test_later_generation();
    test_stop_snapshot();
    test_queues();
    test_queues_at_stop();
    test_protocols();
    test_extra_headers();
    test_retry_after();
    test_retry_after_zero();
    test_redirect_drops();
    test_reset_after_status();
    test_gzip();
    test_file_endpoint();
    test_stop_message();
    test_wake();
    test_flush_bound();
    test_kept_queue_polled();
    test_bad_endpoints();
    test_scheme_case();
    test_overlap();
    test_stop_while_overlapping();
    test_serial_collector();
    test_reset_keeps_overlap();
    test_retry_goes_alone();

    vq_library_cleanup();

    return check_summary("test_exporter");
}
