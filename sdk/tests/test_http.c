/*
 * The HTTP transport against a loopback collector that answers as each
 * test scripts it: the request it sends (start line, Host, headers,
 * length, body), kept-alive connections, answers chunked, interim, cut
 * into single bytes or ended by the close; a kept-alive connection the
 * collector closed while it was idle, or left an answer on, or closed
 * without answering (the request sent again on a new one); an answer
 * before the whole request went (a 413); a proxy tunnel; and the
 * failures: no answer, a bad one, a cut one, a stall (timeout, shutdown
 * deadline), a refused connection.
 */

#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <vaquero/vaquero.h>
#include <vaquero/transport.h>
#include "check.h"

#define MAX_REQUESTS  16

enum {
    KEEP = 0,       /* answer, keep the connection */
    CLOSE,          /* answer, then close */
    SILENT,         /* close without answering */
    STALL,          /* never answer (until the test ends) */
    BYTES,          /* answer a byte at a time, keep the connection */
    EARLY,          /* answer once 64 KB came, read no more (until the end) */
    EARLY_KEEP,     /* the same, then once the test says go: the rest, to
                       the close */
    LEFTOVER        /* answer, then a 408 nobody asked for, and close */
};

#define LEFTOVER_408                                                         \
    "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"                 \
    "Content-Length: 0\r\n\r\n"

typedef struct {
    int              fd;
    int              port;
    pthread_t        thread;
    pthread_mutex_t  lock;
    const char      *answers[MAX_REQUESTS];     /* NULL: a plain 200 */
    int              actions[MAX_REQUESTS];
    int              requests;
    int              connections;
    int              idle_closed;       /* closed after an answer */
    int              go;                /* LEFTOVER: the test read it */
    char            *heads[MAX_REQUESTS];
    char            *bodies[MAX_REQUESTS];
    size_t           body_lens[MAX_REQUESTS];
    int              done;
} collector_t;

/* A request: the head (NUL-terminated at its empty line) and the body. */
static char *
read_request(int fd, char **body, size_t *body_len)
{
    char    *buf, *end, *cl;
    size_t   len, cap, need;
    ssize_t  n;

    cap = 1 << 20;
    buf = malloc(cap + 1);
    len = 0;

    for ( ;; ) {
        n = read(fd, buf + len, cap - len);
        if (n <= 0) {
            free(buf);
            return NULL;
        }
        len += n;
        buf[len] = '\0';

        end = strstr(buf, "\r\n\r\n");
        if (end == NULL) {
            continue;
        }

        cl = strcasestr(buf, "\r\nContent-Length:");
        need = (end - buf) + 4 + (cl ? strtoul(cl + 17, NULL, 10) : 0);

        if (len >= need) {
            *end = '\0';
            *body_len = need - (end - buf) - 4;
            *body = malloc(*body_len + 1);
            memcpy(*body, end + 4, *body_len);
            (*body)[*body_len] = '\0';
            return buf;
        }

        if (need > cap) {
            cap = need;
            buf = realloc(buf, cap + 1);
        }
    }
}

/* The head and at least want bytes in all, of a request not read whole. */
static char *
read_some(int fd, size_t want, char **body, size_t *body_len)
{
    char     *buf, *end;
    size_t    len;
    ssize_t   n;

    buf = malloc(want + 1);
    len = 0;

    while (len < want) {
        n = read(fd, buf + len, want - len);
        if (n <= 0) {
            free(buf);
            return NULL;
        }
        len += n;
    }

    buf[len] = '\0';
    end = strstr(buf, "\r\n\r\n");
    if (end == NULL) {
        free(buf);
        return NULL;
    }

    *end = '\0';
    *body_len = len - (end - buf) - 4;
    *body = strdup("(not read)");

    return buf;
}

static void *
serve(void *data)
{
    collector_t  *s = data;
    char         *head, *body;
    const char   *answer;
    size_t        body_len, i;
    int           c, n, action, one;

    one = 1;

    while ((c = accept(s->fd, NULL, NULL)) >= 0) {
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        pthread_mutex_lock(&s->lock);
        s->connections++;
        pthread_mutex_unlock(&s->lock);

        for ( ;; ) {
            pthread_mutex_lock(&s->lock);
            n = s->requests;
            pthread_mutex_unlock(&s->lock);

            if (n < MAX_REQUESTS
                && (s->actions[n] == EARLY || s->actions[n] == EARLY_KEEP))
            {
                head = read_some(c, 65536, &body, &body_len);
            } else {
                head = read_request(c, &body, &body_len);
            }

            if (head == NULL) {
                break;
            }

            pthread_mutex_lock(&s->lock);
            n = s->requests++;
            if (n < MAX_REQUESTS) {
                s->heads[n] = head;
                s->bodies[n] = body;
                s->body_lens[n] = body_len;
            }
            pthread_mutex_unlock(&s->lock);

            action = n < MAX_REQUESTS ? s->actions[n] : KEEP;
            answer = n < MAX_REQUESTS ? s->answers[n] : NULL;
            if (answer == NULL) {
                answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
            }

            if (action == SILENT) {
                break;
            }

            while (action == STALL
                   && !__atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
            {
                usleep(5000);
            }

            if (action == EARLY) {
                /* the answer, then nothing read until the test ends */
                (void) !write(c, answer, strlen(answer));

                while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE)) {
                    usleep(5000);
                }
                break;
            }

            if (action == EARLY_KEEP) {
                char  rest[65536];

                /* once the test has its answer: whatever comes, to the end */
                (void) !write(c, answer, strlen(answer));

                while (!__atomic_load_n(&s->go, __ATOMIC_ACQUIRE)) {
                    usleep(1000);
                }

                while (read(c, rest, sizeof(rest)) > 0) { /* void */ }
                break;
            }

            if (action == BYTES) {
                for (i = 0; answer[i]; i++) {
                    (void) !write(c, answer + i, 1);
                    usleep(200);
                }

            } else if (write(c, answer, strlen(answer)) < 0) {
                break;
            }

            if (action == LEFTOVER) {
                /* once the test has read the answer: the 408, on its own */
                while (!__atomic_load_n(&s->go, __ATOMIC_ACQUIRE)) {
                    usleep(1000);
                }
                (void) !write(c, LEFTOVER_408, strlen(LEFTOVER_408));
            }

            if (action == CLOSE || action == STALL || action == LEFTOVER) {
                break;
            }
        }

        close(c);

        pthread_mutex_lock(&s->lock);
        s->idle_closed++;
        pthread_mutex_unlock(&s->lock);
    }

    return NULL;
}

/*
 * A socket bound to a free loopback port (*port), listening with backlog
 * or, with 0, never: connections to it are then refused.
 */
static int
loopback_socket(int backlog, int *port)
{
    struct sockaddr_in  sin;
    socklen_t           len;
    int                 fd;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *) &sin, sizeof(sin));
    if (backlog) {
        listen(fd, backlog);
    }

    len = sizeof(sin);
    getsockname(fd, (struct sockaddr *) &sin, &len);
    *port = ntohs(sin.sin_port);

    return fd;
}

static void
collector_start(collector_t *s)
{
    s->fd = loopback_socket(16, &s->port);

    pthread_mutex_init(&s->lock, NULL);
    pthread_create(&s->thread, NULL, serve, s);
}

static void
collector_stop(collector_t *s)
{
    int  i;

    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);

    for (i = 0; i < s->requests && i < MAX_REQUESTS; i++) {
        free(s->heads[i]);
        free(s->bodies[i]);
    }
}

static int
collector_get(collector_t *s, int *field)
{
    int  n;

    pthread_mutex_lock(&s->lock);
    n = *field;
    pthread_mutex_unlock(&s->lock);

    return n;
}

/* Waits (10 s at most) until the collector closed n connections. */
static int
wait_closed(collector_t *s, int n)
{
    int  i;

    for (i = 0; i < 2000; i++) {
        if (collector_get(s, &s->idle_closed) >= n) {
            return 1;
        }
        usleep(5000);
    }

    return 0;
}

/* descriptors open in this process */
static int
open_fds(void)
{
    char  path[64];
    int   fd, n;

    n = 0;

    for (fd = 0; fd < 1024; fd++) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n += access(path, F_OK) == 0;
    }

    return n;
}

static vq_transport_t *
transport(int port, const char *path, unsigned timeout_ms)
{
    vq_http_conf_t   conf;
    vq_transport_t  *t;
    char             url[128], err[256];
    const char      *lines[] = { "Content-Type: application/json",
                                 "User-Agent: test/1",
                                 "Authorization: Bearer k-1" };

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);

    memset(&conf, 0, sizeof(conf));
    conf.url = url;
    conf.timeout_ms = timeout_ms;

    t = vq_transport_http_create(&conf, err, sizeof(err));
    if (t == NULL) {
        fprintf(stderr, "transport: %s\n", err);
        return NULL;
    }

    CHECK_INT(vq_transport_set_headers(t, lines, 3), VQ_OK);

    return t;
}

static void
send_body(vq_transport_t *t, const char *text, vq_send_result_t *r)
{
    vq_buf_t  body;

    vq_buf_init(&body);
    vq_buf_append(&body, text, strlen(text));
    vq_transport_send(t, &body, r);
    vq_buf_free(&body);
}

static void
test_request(void)
{
    collector_t        s;
    vq_transport_t    *t;
    vq_send_result_t   r;
    char               want[256];
    const char        *bad[] = { "X-Evil: a\r\nX-Injected: 1" };

    memset(&s, 0, sizeof(s));
    collector_start(&s);

    t = transport(s.port, "/base/v1/traces?tenant=a%20b", 5000);

    send_body(t, "{\"resourceSpans\":[]}", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");

    send_body(t, "second", &r);
    CHECK_INT(r.status, 200);

    CHECK_INT(s.requests, 2);
    snprintf(want, sizeof(want), "POST /base/v1/traces?tenant=a%%20b "
             "HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
             "application/json\r\nUser-Agent: test/1\r\nAuthorization: "
             "Bearer k-1\r\nContent-Length: 20", s.port);
    CHECK_STR(s.heads[0], want);
    CHECK_STR(s.bodies[0], "{\"resourceSpans\":[]}");
    CHECK_STR(s.bodies[1], "second");
    CHECK(strstr(s.heads[1], "\r\nContent-Length: 6") != NULL);

    /* one connection, kept alive */
    CHECK_INT(s.connections, 1);

    /* a header line cannot add lines of its own */
    CHECK_INT(vq_transport_set_headers(t, bad, 1), VQ_EINVAL);
    send_body(t, "third", &r);
    CHECK_INT(r.status, 200);
    CHECK(strstr(s.heads[2], "X-Injected") == NULL);
    CHECK(strstr(s.heads[2], "Authorization: Bearer k-1") != NULL);

    vq_transport_destroy(t);
    collector_stop(&s);
}

static void
test_answers(void)
{
    collector_t        s;
    vq_transport_t    *t;
    vq_send_result_t   r;
    int                i;

    memset(&s, 0, sizeof(s));
    s.answers[0] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nTrailer: t\r\n\r\n";
    s.answers[1] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\n"
                   "Content-Length: 0\r\n\r\n";
    s.answers[2] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   "Content-Length: 21\r\n\r\n{\"partialSuccess\":{}}";
    s.actions[2] = BYTES;
    s.answers[3] = "HTTP/1.1 503 Busy\r\nRetry-After: 2\r\n"
                   "Content-Length: 4\r\n\r\nbusy";
    s.answers[4] = "HTTP/1.1 301 Moved\r\nLocation: https://c.example/v1/"
                   "traces\r\nContent-Length: 0\r\n\r\n";
    s.answers[5] = "HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\n\r\n";
    collector_start(&s);

    t = transport(s.port, "/", 5000);

    send_body(t, "0", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");

    send_body(t, "1", &r);
    CHECK_INT(r.status, 202);

    send_body(t, "2", &r);
    CHECK_INT(r.status, 200);

    send_body(t, "3", &r);
    CHECK_INT(r.status, 503);
    CHECK_INT(r.retry_after_ms, 2000);

    send_body(t, "4", &r);
    CHECK_INT(r.status, 301);
    CHECK_STR(r.location, "https://c.example/v1/traces");

    send_body(t, "5", &r);
    CHECK_INT(r.status, 400);
    CHECK_INT(r.retry_after_ms, -1);
    CHECK_STR(r.location, "");

    /* every answer ended where it should: all on one connection */
    CHECK_INT(s.requests, 6);
    CHECK_INT(s.connections, 1);

    for (i = 0; i < 6 && i < s.requests; i++) {
        CHECK_INT(s.body_lens[i], 1);
    }

    vq_transport_destroy(t);
    collector_stop(&s);
}

static void
test_connection_close(void)
{
    collector_t        s;
    vq_transport_t    *t;
    vq_send_result_t   r;
    int                fds;

    memset(&s, 0, sizeof(s));
    s.answers[0] = "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                   "Content-Length: 2\r\n\r\n{}";
    s.actions[0] = CLOSE;
    /* no length: the answer ends with the connection */
    s.answers[1] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok";
    s.actions[1] = CLOSE;
    s.answers[2] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    s.actions[2] = CLOSE;
    collector_start(&s);

    t = transport(s.port, "/", 5000);
    fds = open_fds();

    send_body(t, "a", &r);
    CHECK_INT(r.status, 200);
    send_body(t, "b", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");
    send_body(t, "c", &r);
    CHECK_INT(r.status, 200);
    send_body(t, "d", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");

    /* a new connection after each answer that ended one; each sent once */
    CHECK_INT(s.requests, 4);
    CHECK_INT(s.connections, 4);

    /*
     * The ones ended are closed: only the last is open, both its ends in
     * this process (the collector closed the others' before it took the
     * next connection).
     */
    CHECK_INT(open_fds(), fds + 2);

    vq_transport_destroy(t);
    collector_stop(&s);
}

static void
test_idle_close(void)
{
    collector_t        s;
    vq_transport_t    *t;
    vq_send_result_t   r;

    memset(&s, 0, sizeof(s));
    /* 200s that keep the connection, which the collector then closes */
    s.actions[0] = CLOSE;
    s.actions[1] = CLOSE;
    /* and a 408 it leaves behind before it closes */
    s.actions[2] = LEFTOVER;
    collector_start(&s);

    t = transport(s.port, "/", 5000);

    send_body(t, "first", &r);
    CHECK_INT(r.status, 200);
    CHECK(wait_closed(&s, 1));

    /* found closed before it is used: the request goes on a new one */
    send_body(t, "second", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");
    CHECK_INT(s.requests, 2);
    CHECK_INT(s.connections, 2);
    CHECK(wait_closed(&s, 2));

    send_body(t, "third", &r);
    CHECK_INT(r.status, 200);
    __atomic_store_n(&s.go, 1, __ATOMIC_RELEASE);
    CHECK(wait_closed(&s, 3));

    /* the 408 left on the connection is not this request's answer */
    send_body(t, "fourth", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");

    /* and the collector got each body once */
    CHECK_INT(s.requests, 4);
    CHECK_INT(s.connections, 4);
    CHECK_STR(s.bodies[1], "second");
    CHECK_STR(s.bodies[2], "third");
    CHECK_STR(s.bodies[3], "fourth");

    vq_transport_destroy(t);
    collector_stop(&s);
}

static void
test_closed_unanswered(void)
{
    collector_t        s;
    vq_transport_t    *t;
    vq_send_result_t   r;

    memset(&s, 0, sizeof(s));
    /* the second request on the kept-alive connection: no answer, closed */
    s.actions[1] = SILENT;
    collector_start(&s);

    t = transport(s.port, "/", 5000);

    send_body(t, "a", &r);
    CHECK_INT(r.status, 200);

    /* sent once more, on a new connection */
    send_body(t, "b", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");
    CHECK_INT(s.requests, 3);
    CHECK_INT(s.connections, 2);
    CHECK_STR(s.bodies[1], "b");
    CHECK_STR(s.bodies[2], "b");

    vq_transport_destroy(t);
    collector_stop(&s);
}

/* A body of size bytes of '[': more than a socket takes at once. */
static void
send_filled(vq_transport_t *t, size_t size, vq_send_result_t *r)
{
    vq_buf_t  body;

    vq_buf_init(&body);
    vq_buf_reserve(&body, size);
    memset(body.data, '[', size);
    body.len = size;
    vq_transport_send(t, &body, r);
    vq_buf_free(&body);
}

static void
test_early_answer(void)
{
    collector_t        s;
    vq_transport_t    *t;
    vq_send_result_t   r;

    memset(&s, 0, sizeof(s));
    /* too large: answered after 64 KB of 8 MB, the rest never read */
    s.answers[0] = "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n"
                   "Content-Length: 0\r\n\r\n";
    s.actions[0] = EARLY;
    collector_start(&s);

    t = transport(s.port, "/", 10000);

    send_filled(t, 8 << 20, &r);

    /* the answer, not a failure to send, and the request not sent again */
    CHECK_INT(r.status, 413);
    CHECK_STR(r.error, "");
    CHECK_INT(collector_get(&s, &s.requests), 1);

    vq_transport_destroy(t);
    collector_stop(&s);

    /*
     * An early answer that would keep the connection: what is left of the
     * request was not sent, so the connection carries nothing more (the
     * collector would read the next request as the rest of this body).
     */
    memset(&s, 0, sizeof(s));
    s.answers[0] = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0"
                   "\r\n\r\n";
    s.actions[0] = EARLY_KEEP;
    collector_start(&s);

    t = transport(s.port, "/", 5000);

    send_filled(t, 8 << 20, &r);
    CHECK_INT(r.status, 413);

    __atomic_store_n(&s.go, 1, __ATOMIC_RELEASE);

    send_body(t, "next", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");
    CHECK_INT(collector_get(&s, &s.connections), 2);

    vq_transport_destroy(t);
    collector_stop(&s);
}

static void
test_large_body(void)
{
    collector_t        s;
    vq_transport_t    *t;
    vq_send_result_t   r;
    vq_buf_t           body;
    size_t             i, size, bad;

    memset(&s, 0, sizeof(s));
    collector_start(&s);

    t = transport(s.port, "/", 10000);

    /* more than the socket takes at once: sent in pieces, byte-exact */
    size = (4 << 20) + 12345;
    vq_buf_init(&body);
    vq_buf_reserve(&body, size);
    for (i = 0; i < size; i++) {
        body.data[i] = (char) ('a' + (i * 7 + i / 4096) % 26);
    }
    body.len = size;

    vq_transport_send(t, &body, &r);
    CHECK_INT(r.status, 200);
    send_body(t, "after", &r);
    CHECK_INT(r.status, 200);

    CHECK_INT(s.requests, 2);
    CHECK_INT(s.connections, 1);
    CHECK_INT(s.body_lens[0], size);

    bad = 0;
    for (i = 0; s.requests > 0 && i < s.body_lens[0] && i < size; i++) {
        bad += s.bodies[0][i] != body.data[i];
    }
    CHECK_INT(bad, 0);
    CHECK_STR(s.bodies[1], "after");

    vq_buf_free(&body);
    vq_transport_destroy(t);
    collector_stop(&s);
}

static void
test_failures(void)
{
    collector_t        s;
    vq_transport_t    *t;
    vq_send_result_t   r;

    memset(&s, 0, sizeof(s));
    s.actions[0] = SILENT;
    s.answers[1] = "SMTP ready\r\n\r\n";
    s.answers[2] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
    s.actions[2] = CLOSE;
    collector_start(&s);

    t = transport(s.port, "/", 5000);

    /* a new connection closed without an answer: not sent again here */
    send_body(t, "0", &r);
    CHECK_INT(r.status, 0);
    CHECK_STR(r.error, "the collector closed the connection without "
              "answering");
    CHECK_INT(s.requests, 1);

    send_body(t, "1", &r);
    CHECK_INT(r.status, 0);
    CHECK_STR(r.error, "the answer does not start with an HTTP/1.x status "
              "line");

    /* a status read stands: what went wrong after it is a warning */
    send_body(t, "2", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");
    CHECK_STR(r.warning, "answered HTTP 200, then the collector closed the "
              "connection in the middle of its answer");

    /* and the next one goes out on a new connection */
    send_body(t, "3", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");
    CHECK_INT(s.requests, 4);
    CHECK_INT(s.connections, 4);

    vq_transport_destroy(t);
    collector_stop(&s);
}

typedef struct {
    collector_t     *collector;
    vq_transport_t  *transport;
} aborter_t;

/* Once the collector has the request: the shutdown deadline, now. */
static void *
abort_when_sent(void *data)
{
    aborter_t        *a = data;
    struct timespec   ts;
    int               i;

    for (i = 0; i < 2000; i++) {
        if (collector_get(a->collector, &a->collector->requests) > 0) {
            break;
        }
        usleep(5000);
    }

    clock_gettime(CLOCK_MONOTONIC, &ts);
    vq_transport_abort_at(a->transport, (int64_t) ts.tv_sec * 1000
                                        + ts.tv_nsec / 1000000);
    return NULL;
}

static void
test_stalls(void)
{
    collector_t        s, s2;
    vq_transport_t    *t;
    vq_send_result_t   r;
    aborter_t          a;
    pthread_t          thread;

    memset(&s, 0, sizeof(s));
    s.actions[0] = STALL;
    collector_start(&s);

    /* the request's own timeout */
    t = transport(s.port, "/", 300);
    send_body(t, "0", &r);
    CHECK_INT(r.status, 0);
    CHECK_STR(r.error, "no answer within 300 ms");
    vq_transport_destroy(t);
    collector_stop(&s);

    /* the shutdown deadline, set by another thread while it waits */
    memset(&s2, 0, sizeof(s2));
    s2.actions[0] = STALL;
    collector_start(&s2);

    t = transport(s2.port, "/", 60000);
    a.collector = &s2;
    a.transport = t;
    pthread_create(&thread, NULL, abort_when_sent, &a);

    send_body(t, "1", &r);
    CHECK_INT(r.status, 0);
    CHECK_STR(r.error, "abandoned at the shutdown deadline");

    pthread_join(thread, NULL);
    vq_transport_destroy(t);

    CHECK_INT(collector_get(&s2, &s2.requests), 1);
    collector_stop(&s2);
}

/* A CONNECT proxy for one tunnel at a time, to 127.0.0.1 only. */
typedef struct {
    int        fd;
    int        port;
    pthread_t  thread;
    char       connect_line[128];
    int        tunnels;
} proxy_t;

static void *
proxy_serve(void *data)
{
    proxy_t             *p = data;
    struct sockaddr_in   sin;
    struct pollfd        pfd[2];
    char                 buf[65536], *end;
    size_t               len;
    ssize_t              n;
    int                  c, u, port, i;

    while ((c = accept(p->fd, NULL, NULL)) >= 0) {
        len = 0;
        end = NULL;

        while (end == NULL && len < sizeof(buf) - 1
               && (n = read(c, buf + len, sizeof(buf) - 1 - len)) > 0)
        {
            len += n;
            buf[len] = '\0';
            end = strstr(buf, "\r\n\r\n");
        }

        if (end == NULL || sscanf(buf, "CONNECT 127.0.0.1:%d ", &port) != 1) {
            close(c);
            continue;
        }

        *strchr(buf, '\r') = '\0';
        snprintf(p->connect_line, sizeof(p->connect_line), "%.100s", buf);
        p->tunnels++;

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons(port);
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        u = socket(AF_INET, SOCK_STREAM, 0);

        if (connect(u, (struct sockaddr *) &sin, sizeof(sin)) != 0) {
            close(u);
            close(c);
            continue;
        }

        (void) !write(c, "HTTP/1.1 200 Connection established\r\n\r\n", 39);

        /* both ways, until one side closes */
        pfd[0].fd = c;
        pfd[1].fd = u;
        pfd[0].events = pfd[1].events = POLLIN;

        for ( ;; ) {
            if (poll(pfd, 2, -1) <= 0) {
                break;
            }

            for (i = 0; i < 2; i++) {
                if (pfd[i].revents) {
                    n = read(pfd[i].fd, buf, sizeof(buf));
                    if (n <= 0 || write(pfd[1 - i].fd, buf, n) != n) {
                        goto done;
                    }
                }
            }
        }

    done:

        close(u);
        close(c);
    }

    return NULL;
}

static void
test_proxy(void)
{
    collector_t         s;
    proxy_t             p;
    vq_transport_t     *t;
    vq_send_result_t    r;
    char                env[64], want[64];

    memset(&s, 0, sizeof(s));
    collector_start(&s);

    memset(&p, 0, sizeof(p));
    p.fd = loopback_socket(4, &p.port);
    pthread_create(&p.thread, NULL, proxy_serve, &p);

    /* a proxy that nginx's "env" passes on: our requests go in a tunnel */
    snprintf(env, sizeof(env), "http://127.0.0.1:%d", p.port);
    setenv("http_proxy", env, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");

    t = transport(s.port, "/v1/traces", 5000);

    send_body(t, "through", &r);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.error, "");
    send_body(t, "again", &r);
    CHECK_INT(r.status, 200);

    unsetenv("http_proxy");

    CHECK_INT(s.requests, 2);
    CHECK(s.requests > 0 && strncmp(s.heads[0], "POST /v1/traces HTTP/1.1",
                                    24) == 0);
    CHECK_STR(s.bodies[1], "again");

    vq_transport_destroy(t);

    shutdown(p.fd, SHUT_RDWR);
    pthread_join(p.thread, NULL);
    close(p.fd);

    /* one tunnel, to the collector, for both */
    snprintf(want, sizeof(want), "CONNECT 127.0.0.1:%d HTTP/1.1", s.port);
    CHECK_STR(p.connect_line, want);
    CHECK_INT(p.tunnels, 1);

    collector_stop(&s);
}

static void
test_refused(void)
{
    vq_transport_t     *t;
    vq_send_result_t    r;
    int                 fd, port;

    fd = loopback_socket(0, &port);

    t = transport(port, "/", 5000);
    send_body(t, "0", &r);
    CHECK_INT(r.status, 0);
    CHECK(strstr(r.error, "onnect") != NULL);
    fprintf(stderr, "test_http: refused: %s\n", r.error);

    vq_transport_destroy(t);
    close(fd);
}

/*
 * Two transports, a request begun on each before either is finished: a
 * collector that answers only once both requests came (the second
 * first) gets both, and each finish reads its own answer.  A begin that
 * waited for the answer would stall this until the timeout.
 */
typedef struct {
    int   fd;
    int   got;      /* requests read before answering */
} overlap_t;

static void *
overlap_serve(void *data)
{
    overlap_t  *o = data;
    char       *head, *body;
    size_t      len;
    int         c[2], i;
    char        reply[128];

    for (i = 0; i < 2; i++) {
        c[i] = accept(o->fd, NULL, NULL);
        if (c[i] < 0) {
            return NULL;
        }

        head = read_request(c[i], &body, &len);
        if (head == NULL) {
            return NULL;
        }
        o->got += strstr(body, i ? "second" : "first") != NULL;
        free(head);
        free(body);
    }

    for (i = 1; i >= 0; i--) {
        snprintf(reply, sizeof(reply), "HTTP/1.1 %d X\r\n"
                 "Content-Length: 0\r\n\r\n", 201 + i);
        (void) !write(c[i], reply, strlen(reply));
    }

    /* the transports close theirs when destroyed */
    for (i = 0; i < 2; i++) {
        head = read_request(c[i], &body, &len);
        if (head) {
            free(head);
            free(body);
        }
        close(c[i]);
    }

    return NULL;
}

static void
test_overlap(void)
{
    overlap_t          o;
    pthread_t          thread;
    vq_transport_t    *a, *b;
    vq_send_result_t   ra, rb;
    vq_buf_t           ba, bb;
    int                port;

    o.fd = loopback_socket(16, &port);
    o.got = 0;
    pthread_create(&thread, NULL, overlap_serve, &o);

    a = transport(port, "/", 5000);
    b = transport(port, "/", 5000);
    CHECK_INT(vq_transport_overlaps(a), 1);

    vq_buf_init(&ba);
    vq_buf_init(&bb);
    vq_buf_append(&ba, "first", 5);
    vq_buf_append(&bb, "second", 6);

    vq_transport_begin(a, &ba, &ra);
    vq_transport_begin(b, &bb, &rb);
    vq_transport_finish(a, &ra);
    vq_transport_finish(b, &rb);

    CHECK_INT(ra.status, 201);
    CHECK_INT(rb.status, 202);
    if (ra.status != 201 || rb.status != 202) {
        fprintf(stderr, "test_http: overlap: %s / %s\n", ra.error,
                rb.error);
    }

    vq_transport_destroy(a);
    vq_transport_destroy(b);
    pthread_join(thread, NULL);
    CHECK_INT(o.got, 2);

    vq_buf_free(&ba);
    vq_buf_free(&bb);
    close(o.fd);
}

/*
 * The time a request waits is its own, but the thread may spend it
 * sending another request on the other transport: an answer that came
 * meanwhile is taken even past the first request's deadline, a large one
 * too (40 KB: three reads, within what loopback takes at once).  Here
 * the second body is never read, so its begin takes the whole timeout.
 */
typedef struct {
    int   fd;
    int   a, b;
} unread_t;

static void *
unread_serve(void *data)
{
    unread_t    *o = data;
    char        *head, *body, *answer;
    size_t       len, n;
    const char  *ok = "HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n";

    o->a = accept(o->fd, NULL, NULL);
    head = read_request(o->a, &body, &len);
    free(head);
    free(body);

    n = strlen(ok);
    answer = malloc(n + 40000);
    memcpy(answer, ok, n);
    memset(answer + n, '.', 40000);
    (void) !write(o->a, answer, n + 40000);
    free(answer);

    o->b = accept(o->fd, NULL, NULL);

    return NULL;
}

static void
test_overlap_deadline(void)
{
    unread_t           o;
    pthread_t          thread;
    vq_transport_t    *a, *b;
    vq_send_result_t   ra, rb;
    vq_buf_t           ba, bb;
    int                port;

    o.fd = loopback_socket(16, &port);
    pthread_create(&thread, NULL, unread_serve, &o);

    a = transport(port, "/", 1000);
    b = transport(port, "/", 1000);

    vq_buf_init(&ba);
    vq_buf_init(&bb);
    vq_buf_append(&ba, "first", 5);
    vq_buf_reserve(&bb, 64 << 20);
    memset(bb.data, '[', 64 << 20);
    bb.len = 64 << 20;

    vq_transport_begin(a, &ba, &ra);
    vq_transport_begin(b, &bb, &rb);
    CHECK(strstr(rb.error, "no answer within 1000 ms") != NULL);
    vq_transport_finish(a, &ra);
    vq_transport_finish(b, &rb);

    CHECK_INT(ra.status, 200);
    CHECK_STR(ra.error, "");
    CHECK_STR(ra.warning, "");
    CHECK_INT(ra.timed_out, 0);
    CHECK_INT(rb.status, 0);
    CHECK_INT(rb.timed_out, 1);

    vq_transport_destroy(a);
    vq_transport_destroy(b);
    pthread_join(thread, NULL);
    close(o.a);
    close(o.b);
    vq_buf_free(&ba);
    vq_buf_free(&bb);
    close(o.fd);
}

int
main(void)
{
    test_request();
    test_answers();
    test_connection_close();
    test_idle_close();
    test_closed_unanswered();
    test_early_answer();
    test_large_body();
    test_failures();
    test_proxy();
    test_stalls();
    test_refused();
    test_overlap();
    test_overlap_deadline();

    return check_summary("test_http");
}
