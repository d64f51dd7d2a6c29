/*
 * The HTTP transport.  libcurl makes the connection (DNS, TCP, TLS) and
 * carries the bytes (curl_easy_send(), curl_easy_recv());
 * the HTTP/1.1 exchange itself is ours: one request head made when the
 * headers change, sent with the body's length, then the body as it is,
 * and the answer read by http_response.c.  A libcurl transfer per POST cost twice the system
 * calls and about 30 us of CPU more per request (URL parsing, header
 * building, connection checks), on a thread that shares the worker's core.
 *
 * The connection is kept alive.  Before it carries a request, a look
 * whether the collector closed it while it was idle (or left an answer
 * nobody asked for); one that still turns out closed before a byte of
 * the answer came gets that request once more, on a new connection.  An
 * answer that comes while the request is still going out (a 413) ends
 * the sending.  Every wait is a poll()
 * that another thread can end (http_wakeup()), so that a transfer is cut
 * short at a shutdown deadline.  TLS material comes as PEM contents (read
 * by whoever could read the files: the nginx master), gzip with zlib.
 */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>

#include <vaquero/vaquero.h>
#include <vaquero/transport.h>
#include "transport.h"
#include "http_response.h"

#define VQ_TRANSFER_POLL_MS    50       /* deadline checks during a transfer */
#define VQ_ANSWER_READ         16384    /* bytes of an answer read at once */
#define VQ_ANSWER_LATE_MAX     (256 * 1024)  /* read once out of time */

/* read_answer(), read_rest(): the connection closed, or failed */
#define VQ_HTTP_CLOSED         2

typedef struct {
    vq_transport_t      t;
    CURLM              *multi;
    CURL               *curl;
    curl_socket_t       fd;             /* CURL_SOCKET_BAD: no connection */
    int                 added;          /* curl is in multi */
    int                 wake[2];        /* a pipe: http_wakeup() ends waits */
    unsigned            timeout_ms;
    char               *start;          /* "POST /path HTTP/1.1", Host */
    vq_buf_t            head;           /* start, then the header lines */
    vq_buf_t            request;        /* the head, with the body's length */
    vq_gzip_t          *gzip;           /* NULL: bodies go as they are */
    vq_buf_t            gz;
    vq_http_response_t  answer;
    char                curl_error[CURL_ERROR_SIZE];

    /* a request begun and not finished (http_begin(), http_finish()) */
    int                 pending;
    int                 got;            /* how its sending ended */
    int                 reused;         /* on a kept-alive connection */
    const char         *data;           /* its body, the caller's or gz */
    size_t              len;
    size_t              unsent;         /* bytes of it that did not go */
    int64_t             deadline;
    struct curl_blob    trusted;
    struct curl_blob    cert;
    struct curl_blob    key;
} vq_http_transport_t;

/* buffers that held the headers may hold credentials: wipe them */
static void
free_wiped(vq_buf_t *b)
{
    if (b->data) {
        memset(b->data, 0, b->cap);
    }

    vq_buf_free(b);
}

/*
 * Room for size bytes, the contents dropped: never by realloc(), which
 * would leave a copy of the old block (the request head: credentials)
 * in freed memory.
 */
static int
reserve_wiped(vq_buf_t *b, size_t size)
{
    char  *data;

    if (b->cap >= size) {
        vq_buf_reset(b);
        return VQ_OK;
    }

    data = malloc(size);
    if (data == NULL) {
        return VQ_ENOMEM;
    }

    free_wiped(b);

    b->data = data;
    b->cap = size;

    return VQ_OK;
}

static void
free_blob(struct curl_blob *b)
{
    if (b->data) {
        memset(b->data, 0, b->len);
        free(b->data);
        b->data = NULL;
    }
}

static int
copy_blob(struct curl_blob *b, const void *data, size_t len)
{
    if (data == NULL) {
        return VQ_OK;
    }

    b->data = malloc(len ? len : 1);
    if (b->data == NULL) {
        return VQ_ENOMEM;
    }

    memcpy(b->data, data, len);
    b->len = len;
    b->flags = CURL_BLOB_NOCOPY;

    return VQ_OK;
}

/* libcurl closes a connect-only connection when its handle leaves multi */
static void
disconnect(vq_http_transport_t *h)
{
    if (h->added) {
        curl_multi_remove_handle(h->multi, h->curl);
        h->added = 0;
    }

    h->fd = CURL_SOCKET_BAD;
}

static void
http_destroy(vq_transport_t *t)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;

    if (h->curl) {
        disconnect(h);
        curl_easy_cleanup(h->curl);
    }

    if (h->multi) {
        curl_multi_cleanup(h->multi);
    }

    if (h->wake[0] >= 0) {
        close(h->wake[0]);
        close(h->wake[1]);
    }

    free_wiped(&h->head);
    free_wiped(&h->request);
    free_blob(&h->trusted);
    free_blob(&h->cert);
    free_blob(&h->key);
    vq_gzip_destroy(h->gzip);
    vq_buf_free(&h->gz);
    free(h->start);
    free(t->target);
    free(h);
}

/*
 * The new head replaces the old one only once it is whole: when memory
 * runs out, the requests go on with the headers they had.  A line that
 * would end the head early is refused (the module checks them anyway).
 */
static int
http_set_headers(vq_transport_t *t, const char *const *lines, size_t n)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;
    vq_buf_t              head;
    size_t                i, size;

    for (i = 0; i < n; i++) {
        if (strpbrk(lines[i], "\r\n") != NULL) {
            return VQ_EINVAL;
        }
    }

    size = strlen(h->start) + sizeof("Content-Encoding: gzip\r\n");
    for (i = 0; i < n; i++) {
        size += strlen(lines[i]) + 2;
    }

    vq_buf_init(&head);

    if (reserve_wiped(&head, size) != VQ_OK) {
        return VQ_ENOMEM;
    }

    vq_buf_append(&head, h->start, strlen(h->start));

    for (i = 0; i < n; i++) {
        vq_buf_append(&head, lines[i], strlen(lines[i]));
        vq_buf_append(&head, "\r\n", 2);
    }

    if (h->gzip) {
        vq_buf_append(&head, "Content-Encoding: gzip\r\n",
                      sizeof("Content-Encoding: gzip\r\n") - 1);
    }

    if (head.failed) {
        free_wiped(&head);
        return VQ_ENOMEM;
    }

    free_wiped(&h->head);
    h->head = head;

    return VQ_OK;
}

static int
past_deadline(vq_transport_t *t)
{
    int64_t  at;

    at = __atomic_load_n(&t->abort_at, __ATOMIC_RELAXED);

    return at != 0 && vq_monotonic_ms() >= at;
}

static void
drain_wakes(vq_http_transport_t *h)
{
    char  buf[64];

    while (read(h->wake[0], buf, sizeof(buf)) > 0) { /* void */ }
}

/*
 * How long the request may go on waiting, ms: 0 at the shutdown deadline
 * or past the request's own, and r->error says which.
 */
static int64_t
time_left(vq_http_transport_t *h, int64_t deadline, vq_send_result_t *r)
{
    int64_t  left;

    if (past_deadline(&h->t)) {
        snprintf(r->error, sizeof(r->error),
                 "abandoned at the shutdown deadline");
        return 0;
    }

    left = deadline - vq_monotonic_ms();

    if (left <= 0) {
        snprintf(r->error, sizeof(r->error), "no answer within %u ms",
                 h->timeout_ms);
        return 0;
    }

    return left;
}

/* one wait: what is left, in slices that see the shutdown deadline soon */
static int
poll_slice(int64_t left)
{
    return left < VQ_TRANSFER_POLL_MS ? (int) left : VQ_TRANSFER_POLL_MS;
}

/*
 * A new connection: libcurl's transfer with CONNECT_ONLY, driven through
 * multi so that it can be cut short.  The handle stays in multi while the
 * connection is used: curl_easy_send() finds the connection there.
 */
static int
connect_collector(vq_http_transport_t *h, int64_t deadline,
    vq_send_result_t *r)
{
    struct curl_waitfd   wake;
    CURLMsg             *msg;
    CURLcode             rc;
    int                  running, n;
    int64_t              left;

    left = time_left(h, deadline, r);
    if (left == 0) {
        return VQ_ERROR;
    }

    h->curl_error[0] = '\0';

    if (curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, (long) left)
        != CURLE_OK
        || curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, (long) left)
           != CURLE_OK
        || curl_multi_add_handle(h->multi, h->curl) != CURLM_OK)
    {
        snprintf(r->error, sizeof(r->error), "cannot start a connection");
        return VQ_ERROR;
    }

    h->added = 1;
    rc = CURLE_OK;
    running = 1;

    wake.fd = h->wake[0];
    wake.events = CURL_WAIT_POLLIN;

    for ( ;; ) {
        if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }

        if (!running) {
            while ((msg = curl_multi_info_read(h->multi, &n)) != NULL) {
                if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->curl) {
                    rc = msg->data.result;
                }
            }
            break;
        }

        left = time_left(h, deadline, r);
        if (left == 0) {
            disconnect(h);
            return VQ_ERROR;
        }

        wake.revents = 0;
        curl_multi_poll(h->multi, &wake, 1, poll_slice(left), NULL);

        if (wake.revents) {
            drain_wakes(h);
        }
    }

    if (rc == CURLE_OK
        && (curl_easy_getinfo(h->curl, CURLINFO_ACTIVESOCKET, &h->fd)
            != CURLE_OK || h->fd == CURL_SOCKET_BAD))
    {
        rc = CURLE_COULDNT_CONNECT;
    }

    if (rc != CURLE_OK) {
        snprintf(r->error, sizeof(r->error), "%s",
                 h->curl_error[0] ? h->curl_error : curl_easy_strerror(rc));
        disconnect(h);
        return VQ_ERROR;
    }

    return VQ_OK;
}

/*
 * Waits until the connection is ready for some of events (*ready: which,
 * an error or a hang-up among them), or time_left() says no more.
 */
static int
wait_for(vq_http_transport_t *h, short events, int64_t deadline,
    vq_send_result_t *r, short *ready)
{
    struct pollfd  pfd[2];
    int64_t        left;

    for ( ;; ) {
        left = time_left(h, deadline, r);
        if (left == 0) {
            return VQ_ERROR;
        }

        pfd[0].fd = h->fd;
        pfd[0].events = events;
        pfd[0].revents = 0;
        pfd[1].fd = h->wake[0];
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;

        if (poll(pfd, 2, poll_slice(left)) > 0) {
            if (pfd[1].revents) {
                drain_wakes(h);
            }

            if (pfd[0].revents) {
                *ready = pfd[0].revents;
                return VQ_OK;
            }
        }
    }
}

static void
io_error(vq_http_transport_t *h, vq_send_result_t *r, const char *doing,
    CURLcode rc)
{
    snprintf(r->error, sizeof(r->error), "%s: %.200s", doing,
             h->curl_error[0] ? h->curl_error : curl_easy_strerror(rc));
}

/*
 * Takes in what the connection holds of the answer, without waiting:
 * VQ_OK, the answer is over; VQ_HTTP_AGAIN, more is to come; otherwise
 * r->error says why: VQ_HTTP_CLOSED, the connection closed or failed;
 * VQ_ERROR, not an answer, or out of time.  What the connection already
 * holds is taken whatever the time (the request's time may have gone to
 * sending another one, on the other connection), up to
 * VQ_ANSWER_LATE_MAX bytes once out of time, for an answer that never
 * stops coming.
 */
static int
read_answer(vq_http_transport_t *h, int64_t deadline, vq_send_result_t *r)
{
    char      buf[VQ_ANSWER_READ];
    size_t    n, used, late;
    CURLcode  rc;
    int       fed;

    late = 0;

    for ( ;; ) {
        rc = curl_easy_recv(h->curl, buf, sizeof(buf), &n);

        if (rc == CURLE_AGAIN) {
            return VQ_HTTP_AGAIN;
        }

        if (rc != CURLE_OK) {
            io_error(h, r, "reading the answer", rc);
            return VQ_HTTP_CLOSED;
        }

        if (n == 0) {
            if (vq_http_response_eof(&h->answer) == VQ_OK) {
                return VQ_OK;
            }

            snprintf(r->error, sizeof(r->error), "%s", h->answer.error);
            return VQ_HTTP_CLOSED;
        }

        fed = vq_http_response_feed(&h->answer, buf, n, &used);

        if (fed == VQ_OK) {
            /* more than the answer: nothing this connection can carry */
            if (used < n) {
                h->answer.keep_alive = 0;
            }
            return VQ_OK;
        }

        if (fed == VQ_ERROR) {
            snprintf(r->error, sizeof(r->error), "%s", h->answer.error);
            return VQ_ERROR;
        }

        if (past_deadline(&h->t) || vq_monotonic_ms() >= deadline) {
            late += n;

            if (late > VQ_ANSWER_LATE_MAX) {
                (void) time_left(h, deadline, r);
                return VQ_ERROR;
            }
        }
    }
}

/*
 * Sends the request (h->request, then the body): VQ_HTTP_AGAIN once it
 * is all sent; or, when an answer or a failure ended the sending, what
 * read_answer() said.  h->unsent: what did not go.
 */
static int
send_request(vq_http_transport_t *h, vq_send_result_t *r)
{
    const char  *p, *body;
    size_t       left, len, n;
    int64_t      deadline;
    CURLcode     rc;
    short        ready;
    int          got, i, failed;

    h->curl_error[0] = '\0';
    vq_http_response_init(&h->answer);

    body = h->data;
    len = h->len;
    deadline = h->deadline;
    h->unsent = h->request.len + len;
    got = VQ_HTTP_AGAIN;

    /*
     * The head, then the body, each in one send where the socket takes it.
     * The head on its own wakes the collector to read it while the body
     * comes, which on a busy core answers sooner than one send of both.
     * An answer that comes meanwhile is read as it comes.
     */
    failed = 0;

    for (i = 0; i < 2 && got == VQ_HTTP_AGAIN && !failed; i++) {
        p = i ? body : h->request.data;
        left = i ? len : h->request.len;

        while (left && got == VQ_HTTP_AGAIN && !failed) {
            rc = curl_easy_send(h->curl, p, left, &n);

            if (rc == CURLE_OK) {
                p += n;
                left -= n;
                h->unsent -= n;
                continue;
            }

            if (rc != CURLE_AGAIN) {
                /* what the collector said before it closed, if anything */
                failed = 1;
                got = read_answer(h, deadline, r);

                if ((got == VQ_HTTP_AGAIN || got == VQ_HTTP_CLOSED)
                    && !h->answer.final)
                {
                    io_error(h, r, "sending", rc);
                    got = VQ_HTTP_CLOSED;
                }
                continue;
            }

            if (wait_for(h, POLLOUT | POLLIN, deadline, r, &ready) != VQ_OK) {
                got = VQ_ERROR;
                break;
            }

            if (ready & ~POLLOUT) {
                got = read_answer(h, deadline, r);
            }
        }
    }

    return got;
}

/*
 * Reads the rest of the answer to the request sent (got: what
 * send_request() said) into h->answer: VQ_OK; VQ_ERROR with r->error; or
 * VQ_HTTP_CLOSED, when the connection failed before a byte of an answer
 * came (a kept-alive one the collector had closed).  A final status read
 * stands whatever goes wrong after it: what did goes into r->warning.
 */
static int
read_rest(vq_http_transport_t *h, int got, vq_send_result_t *r)
{
    int64_t  deadline;
    short    ready;

    deadline = h->deadline;

    /* a read before each wait: what came while the thread was away */
    while (got == VQ_HTTP_AGAIN) {
        got = read_answer(h, deadline, r);

        if (got == VQ_HTTP_AGAIN
            && wait_for(h, POLLIN, deadline, r, &ready) != VQ_OK)
        {
            got = VQ_ERROR;
        }
    }

    if (got == VQ_OK) {
        if (h->unsent) {
            /* answered before all of the request went: it carries no more */
            h->answer.keep_alive = 0;
        }
        return VQ_OK;
    }

    if (h->answer.final) {
        snprintf(r->warning, sizeof(r->warning), "answered HTTP %d, then "
                 "%.200s", h->answer.status, r->error);
        r->error[0] = '\0';
        h->answer.keep_alive = 0;
        return VQ_OK;
    }

    return (got == VQ_HTTP_CLOSED && h->answer.received == 0) ? VQ_HTTP_CLOSED
                                                              : VQ_ERROR;
}

/*
 * Before a kept-alive connection carries a request: still open?  The
 * collector may have closed it while idle (its keep-alive timeout), or
 * left an answer nobody asked for (a 408 on idle): either makes it
 * readable.  So do TLS records without data (session tickets), which are
 * only taken in.
 */
static int
still_open(vq_http_transport_t *h)
{
    struct pollfd  pfd;
    char           buf[256];
    size_t         n;

    pfd.fd = h->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;

    if (poll(&pfd, 1, 0) == 0) {
        return 1;
    }

    return curl_easy_recv(h->curl, buf, sizeof(buf), &n) == CURLE_AGAIN;
}

static int64_t
unix_ms(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);
    return (int64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/*
 * The request sent on the kept-alive connection, or on a new one (h->got:
 * how the sending ended); VQ_ERROR, with r->error, when no connection
 * could be made.
 */
static int
send_on_connection(vq_http_transport_t *h, vq_send_result_t *r)
{
    h->reused = h->fd != CURL_SOCKET_BAD;

    if (!h->reused && connect_collector(h, h->deadline, r) != VQ_OK) {
        return VQ_ERROR;
    }

    h->got = send_request(h, r);

    return VQ_OK;
}

/*
 * A connection (the kept-alive one, or a new one) and the request sent on
 * it; the answer is for http_finish().  Nothing pending when no request
 * could be made: r->error says why.
 */
static void
http_begin(vq_transport_t *t, vq_buf_t *body, vq_send_result_t *r)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;
    int                   n;
    char                  length[48];

    h->pending = 0;
    h->deadline = vq_monotonic_ms() + h->timeout_ms;

    h->data = body->data;
    h->len = body->len;

    if (h->gzip) {
        vq_buf_reset(&h->gz);

        if (vq_gzip(h->gzip, &h->gz, body->data, body->len) != VQ_OK) {
            snprintf(r->error, sizeof(r->error), "cannot gzip a batch of "
                     "%zu bytes", body->len);
            return;
        }

        h->data = h->gz.data;
        h->len = h->gz.len;
    }

    if (h->head.len == 0) {
        snprintf(r->error, sizeof(r->error), "no request headers");
        return;
    }

    /* the head with this body's length; the body goes from where it is */
    n = snprintf(length, sizeof(length), "Content-Length: %zu\r\n\r\n",
                 h->len);

    if (reserve_wiped(&h->request, h->head.len + (size_t) n) != VQ_OK) {
        snprintf(r->error, sizeof(r->error), "out of memory for a request "
                 "head");
        return;
    }

    vq_buf_append(&h->request, h->head.data, h->head.len);
    vq_buf_append(&h->request, length, (size_t) n);

    if (h->fd != CURL_SOCKET_BAD && !still_open(h)) {
        disconnect(h);
    }

    h->pending = send_on_connection(h, r) == VQ_OK;
}

/*
 * The answer to the request begun: its status in r, or r->error.  A
 * kept-alive connection closed under the request gets it once more, on a
 * new connection.
 */
static void
http_finish(vq_transport_t *t, vq_send_result_t *r)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;
    int                   rc;

    if (!h->pending) {
        return;
    }

    h->pending = 0;

    for ( ;; ) {
        rc = read_rest(h, h->got, r);

        if (rc == VQ_OK) {
            break;
        }

        disconnect(h);

        if (rc != VQ_HTTP_CLOSED || !h->reused) {
            r->timed_out = h->answer.received == 0 && !past_deadline(t)
                           && vq_monotonic_ms() >= h->deadline;
            return;
        }

        /* disconnected: on a new connection */
        r->error[0] = '\0';

        if (send_on_connection(h, r) != VQ_OK) {
            return;
        }
    }

    if (!h->answer.keep_alive) {
        disconnect(h);
    }

    r->status = h->answer.status;

    if ((r->status == 429 || r->status == 503)
        && h->answer.retry_after[0] != '\0')
    {
        r->retry_after_ms = vq_retry_after_parse(h->answer.retry_after,
                                                 unix_ms());
    }

    if (r->status >= 300 && r->status < 400) {
        snprintf(r->location, sizeof(r->location), "%s", h->answer.location);
    }
}

static void
http_wakeup(vq_transport_t *t)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;
    ssize_t               n;

    /* the pipe is non-blocking: a full one already wakes the thread */
    n = write(h->wake[1], "", 1);
    (void) n;
}

static const vq_transport_ops_t  http_ops = {
    http_destroy,
    http_set_headers,
    NULL,
    http_begin,
    http_finish,
    http_wakeup,
    NULL
};

/*
 * "POST /path?query HTTP/1.1", then the Host header, from the URL as
 * libcurl reads it; NULL if it cannot.
 */
static char *
request_start(const char *url)
{
    CURLU  *u;
    char   *host, *port, *path, *query, *start;
    size_t  len;

    host = port = path = query = start = NULL;

    u = curl_url();

    if (u != NULL
        && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK)
    {
        (void) curl_url_get(u, CURLUPART_PORT, &port, 0);
        (void) curl_url_get(u, CURLUPART_QUERY, &query, 0);

        len = strlen(path) + (query ? strlen(query) + 1 : 0) + strlen(host)
              + (port ? strlen(port) + 1 : 0) + 64;

        start = malloc(len);
        if (start) {
            snprintf(start, len, "POST %s%s%s HTTP/1.1\r\nHost: %s%s%s\r\n",
                     path, query ? "?" : "", query ? query : "", host,
                     port ? ":" : "", port ? port : "");
        }
    }

    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);

    return start;
}

vq_transport_t *
vq_transport_http_create(const vq_http_conf_t *conf, char *err,
    size_t err_size)
{
    vq_http_transport_t  *h;
    CURL                 *c;
    long                  verify;
    int                   i;

    if (conf->tls.certificate_key && conf->tls.certificate == NULL) {
        snprintf(err, err_size, "a certificate key without a certificate");
        return NULL;
    }

    h = calloc(1, sizeof(vq_http_transport_t));
    if (h == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }

    h->t.ops = &http_ops;
    h->fd = CURL_SOCKET_BAD;
    h->wake[0] = h->wake[1] = -1;
    h->timeout_ms = conf->timeout_ms;
    vq_buf_init(&h->head);
    vq_buf_init(&h->request);
    vq_buf_init(&h->gz);

    h->t.target = strdup(conf->url);
    h->start = request_start(conf->url);
    h->curl = c = curl_easy_init();
    h->multi = curl_multi_init();

    if (conf->gzip) {
        h->gzip = vq_gzip_create();
    }

    if (pipe(h->wake) != 0) {
        h->wake[0] = h->wake[1] = -1;
        snprintf(err, err_size, "cannot make a pipe: %s", strerror(errno));
        http_destroy(&h->t);
        return NULL;
    }

    for (i = 0; i < 2; i++) {
        if (fcntl(h->wake[i], F_SETFL, O_NONBLOCK) == -1
            || fcntl(h->wake[i], F_SETFD, FD_CLOEXEC) == -1)
        {
            snprintf(err, err_size, "cannot set up a pipe: %s",
                     strerror(errno));
            http_destroy(&h->t);
            return NULL;
        }
    }

    if (h->start == NULL) {
        snprintf(err, err_size, "libcurl cannot read the URL \"%s\"",
                 conf->url);
        http_destroy(&h->t);
        return NULL;
    }

    if (h->t.target == NULL || c == NULL || h->multi == NULL
        || (conf->gzip && h->gzip == NULL)
        || copy_blob(&h->trusted, conf->tls.trusted_certificate,
                     conf->tls.trusted_certificate_len) != VQ_OK
        || copy_blob(&h->cert, conf->tls.certificate,
                     conf->tls.certificate_len) != VQ_OK
        || copy_blob(&h->key, conf->tls.certificate_key,
                     conf->tls.certificate_key_len) != VQ_OK)
    {
        snprintf(err, err_size, "cannot set up libcurl: out of memory");
        http_destroy(&h->t);
        return NULL;
    }

    /*
     * Every option is checked: a libcurl without one of them (the blobs
     * need 7.77, PROTOCOLS_STR 7.85) must not mean other CAs, no client
     * certificate or any protocol, silently.
     */
    verify = conf->tls.no_verify ? 0L : 1L;

    if (curl_easy_setopt(c, CURLOPT_URL, h->t.target) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        /* libcurl connects; the requests on the connection are ours */
        || curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L) != CURLE_OK
        /* and HTTP/1.1 is what they are, whatever TLS would offer */
        || curl_easy_setopt(c, CURLOPT_HTTP_VERSION,
                            (long) CURL_HTTP_VERSION_1_1) != CURLE_OK
        /* through a proxy the environment names (nginx's "env"): a tunnel */
        || curl_easy_setopt(c, CURLOPT_HTTPPROXYTUNNEL, 1L) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->curl_error)
           != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, verify) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L)
           != CURLE_OK)
    {
        snprintf(err, err_size, "cannot set up libcurl %s for \"%s\"",
                 curl_version_info(CURLVERSION_NOW)->version, h->t.target);
        http_destroy(&h->t);
        return NULL;
    }

    /* these CAs instead of the system's */
    if (h->trusted.data
        && (curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &h->trusted) != CURLE_OK
            || curl_easy_setopt(c, CURLOPT_CAPATH, NULL) != CURLE_OK))
    {
        snprintf(err, err_size, "libcurl %s cannot take trusted "
                 "certificates from memory",
                 curl_version_info(CURLVERSION_NOW)->version);
        http_destroy(&h->t);
        return NULL;
    }

    if (h->cert.data
        && (curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &h->cert) != CURLE_OK
            || curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK
            || curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB,
                                h->key.data ? &h->key : &h->cert)
               != CURLE_OK
            || curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK))
    {
        snprintf(err, err_size, "libcurl %s cannot take a client "
                 "certificate from memory",
                 curl_version_info(CURLVERSION_NOW)->version);
        http_destroy(&h->t);
        return NULL;
    }

    return &h->t;
}

int64_t
vq_retry_after_parse(const char *value, int64_t now_ms)
{
    const char  *p;
    int64_t      ms;
    time_t       at;

    for (p = value; *p == ' ' || *p == '\t'; p++) { /* void */ }

    if (*p >= '0' && *p <= '9') {
        for (ms = 0; *p >= '0' && *p <= '9'; p++) {
            if (ms < VQ_RETRY_AFTER_MAX_MS) {
                ms = ms * 10 + (*p - '0') * 1;
            }
        }

        while (*p == ' ' || *p == '\t') {
            p++;
        }

        if (*p != '\0') {
            return -1;
        }

        /* seconds; the loop above stops growing it past the bound */
        ms *= 1000;

        return ms > VQ_RETRY_AFTER_MAX_MS ? VQ_RETRY_AFTER_MAX_MS : ms;
    }

    /* an HTTP-date: a weekday's name first, in every form RFC 9110 reads */
    if (!isalpha((unsigned char) *p)) {
        return -1;
    }

    at = curl_getdate(p, NULL);
    if (at == -1) {
        return -1;
    }

    ms = (int64_t) at * 1000 - now_ms;

    if (ms < 0) {
        return 0;
    }

    return ms > VQ_RETRY_AFTER_MAX_MS ? VQ_RETRY_AFTER_MAX_MS : ms;
}
