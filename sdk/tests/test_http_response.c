/*
 * Unit tests: reading HTTP/1.x answers (http_response.c).  Every answer
 * is read whole, then again in every split into two pieces and a byte at
 * a time: the outcome must not depend on how the bytes arrive.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vaquero/vaquero.h>
#include "../src/http_response.h"
#include "check.h"

typedef struct {
    int     rc;             /* VQ_OK, VQ_HTTP_AGAIN or VQ_ERROR */
    size_t  used;           /* bytes taken in all */
    int     status;
    int     final;
    int     keep_alive;
    char    retry_after[64];
    char    location[256];
    char    error[128];
} outcome_t;

/* Feeds msg in pieces of the sizes in cuts (0-terminated, then the rest). */
static void
feed_pieces(const char *msg, size_t len, const size_t *cuts, int eof,
    outcome_t *o)
{
    vq_http_response_t  *r;
    size_t               off, n, used;
    int                  rc;

    r = malloc(sizeof(*r));
    vq_http_response_init(r);

    off = 0;
    rc = VQ_HTTP_AGAIN;

    while (rc == VQ_HTTP_AGAIN && off < len) {
        n = (cuts && *cuts) ? *cuts++ : len - off;
        if (n > len - off) {
            n = len - off;
        }

        rc = vq_http_response_feed(r, msg + off, n, &used);
        off += used;

        if (rc == VQ_HTTP_AGAIN && used != n) {
            rc = -100;          /* AGAIN must take everything */
        }
    }

    if (rc == VQ_HTTP_AGAIN && eof) {
        rc = vq_http_response_eof(r);
    }

    o->rc = rc;
    o->used = off;
    o->status = r->status;
    o->final = r->final;
    o->keep_alive = r->keep_alive;
    snprintf(o->retry_after, sizeof(o->retry_after), "%s", r->retry_after);
    snprintf(o->location, sizeof(o->location), "%s", r->location);
    snprintf(o->error, sizeof(o->error), "%s", r->error ? r->error : "");

    free(r);
}

static int
same(const outcome_t *a, const outcome_t *b)
{
    return a->rc == b->rc && a->used == b->used
           && strcmp(a->error, b->error) == 0 && a->final == b->final
           && (a->rc == VQ_ERROR
               || (a->status == b->status && a->keep_alive == b->keep_alive
                   && strcmp(a->retry_after, b->retry_after) == 0
                   && strcmp(a->location, b->location) == 0));
}

/* msg read whole, then split every way: the same outcome each time */
static void
read_answer(const char *msg, int eof, outcome_t *o)
{
    outcome_t  other;
    size_t     len, i, cuts[2];
    int        agree;

    len = strlen(msg);
    feed_pieces(msg, len, NULL, eof, o);

    agree = 1;

    for (i = 1; i < len; i++) {
        cuts[0] = i;
        cuts[1] = 0;
        feed_pieces(msg, len, cuts, eof, &other);

        if (!same(o, &other)) {
            fprintf(stderr, "split at %zu: rc %d used %zu, whole: rc %d "
                    "used %zu\n", i, other.rc, other.used, o->rc, o->used);
            agree = 0;
        }
    }

    /* a byte at a time: a cut list of ones, long enough */
    {
        size_t  *one = malloc((len + 1) * sizeof(size_t));

        for (i = 0; i < len; i++) {
            one[i] = 1;
        }
        one[len] = 0;
        feed_pieces(msg, len, one, eof, &other);
        free(one);
    }

    if (!same(o, &other)) {
        fprintf(stderr, "a byte at a time: rc %d used %zu\n", other.rc,
                other.used);
        agree = 0;
    }

    CHECK(agree);
}

static void
test_length(void)
{
    outcome_t  o;

    read_answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.status, 200);
    CHECK_INT(o.final, 1);
    CHECK_INT(o.keep_alive, 1);
    CHECK_INT(o.used, 40);

    /* the head alone: the status is known, the body is not over */
    read_answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_HTTP_AGAIN);
    CHECK_INT(o.final, 1);
    read_answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_HTTP_AGAIN);
    CHECK_INT(o.final, 0);

    /* bytes past the answer are not taken */
    read_answer("HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\nHTTP/1.1",
                0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.status, 202);
    CHECK_INT(o.used, strlen("HTTP/1.1 202 Accepted\r\nContent-Length: 0"
                             "\r\n\r\n"));

    /* not over yet */
    read_answer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", 0, &o);
    CHECK_INT(o.rc, VQ_HTTP_AGAIN);
    CHECK_INT(o.status, 200);

    /* and cut short by the close */
    read_answer("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", 1, &o);
    CHECK_INT(o.rc, VQ_ERROR);
    CHECK_STR(o.error, "the collector closed the connection in the middle "
              "of its answer");

    /* bare LF line ends, a status line without a reason */
    read_answer("HTTP/1.1 200\nContent-Length:3\n\nabc", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.status, 200);

    /* the same length twice is one length */
    read_answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1"
                "\r\n\r\nx", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
}

static void
test_chunked(void)
{
    outcome_t  o;

    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\n{}\r\n0\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.keep_alive, 1);

    /* extensions, upper-case hex, a trailer; then the next answer */
    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                "A;name=\"v\"\r\n0123456789\r\n1 \r\nx\r\n0\r\n"
                "Trailer-Field: 1\r\n\r\nHTTP", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.used, strlen("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, "
                             "Chunked\r\n\r\nA;name=\"v\"\r\n0123456789\r\n1 "
                             "\r\nx\r\n0\r\nTrailer-Field: 1\r\n\r\n"));

    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\n{}\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_HTTP_AGAIN);

    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\n{}x\r\n0\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_ERROR);
    CHECK_STR(o.error, "the answer has a chunk longer than its size");
    CHECK_INT(o.final, 1);
    CHECK_INT(o.status, 200);

    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_ERROR);
    CHECK_STR(o.error, "the answer has a chunk without a size");

    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2x\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_ERROR);

    /* after the size, only white space before an extension or the end */
    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5 junk\r\nhello\r\n0\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_ERROR);
    CHECK_STR(o.error, "the answer has a malformed chunk size");

    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5 \t ; a=b\r\nhello\r\n0 \r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_OK);

    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "10000000000000000\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_ERROR);
    CHECK_STR(o.error, "the answer has a chunk too large");

    /* chunked wins over a length, and the connection is not kept */
    read_answer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.keep_alive, 0);

    /* a coding other than chunked last: the body ends with the close */
    read_answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                "abc", 1, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.keep_alive, 0);
}

static void
test_connection(void)
{
    outcome_t  o;

    read_answer("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0"
                "\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.keep_alive, 0);

    read_answer("HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\n"
                "Content-Length: 0\r\n\r\n", 0, &o);
    CHECK_INT(o.keep_alive, 0);

    read_answer("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.keep_alive, 0);

    read_answer("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                "Content-Length: 0\r\n\r\n", 0, &o);
    CHECK_INT(o.keep_alive, 1);

    /* HTTP/1.0 has no Transfer-Encoding: read it, but do not trust it */
    read_answer("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.keep_alive, 0);

    /* no length: the body ends with the connection */
    read_answer("HTTP/1.1 200 OK\r\n\r\n{\"partialSuccess\":{}}", 0, &o);
    CHECK_INT(o.rc, VQ_HTTP_AGAIN);
    read_answer("HTTP/1.1 200 OK\r\n\r\n{\"partialSuccess\":{}}", 1, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.keep_alive, 0);

    /* no body at all, whatever the length says */
    read_answer("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.status, 204);
    CHECK_INT(o.keep_alive, 1);

    read_answer("", 1, &o);
    CHECK_INT(o.rc, VQ_ERROR);
    CHECK_STR(o.error, "the collector closed the connection without "
              "answering");
}

static void
test_interim(void)
{
    outcome_t  o;

    read_answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                "Link: </a>\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 7\r\n"
                "Content-Length: 0\r\n\r\n", 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(o.status, 429);
    CHECK_STR(o.retry_after, "7");

    read_answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 0,
                &o);
    CHECK_INT(o.rc, VQ_ERROR);
    CHECK_STR(o.error, "the answer switches protocols");
}

static void
test_headers(void)
{
    outcome_t  o;
    char       msg[1024];

    read_answer("HTTP/1.1 503 Busy\r\nretry-after:  \t120 \r\n"
                "Retry-After: 5\r\nContent-Length: 0\r\n\r\n", 0, &o);
    CHECK_INT(o.status, 503);
    CHECK_STR(o.retry_after, "120");

    /* too long for a Retry-After anyone means: none rather than a cut one */
    snprintf(msg, sizeof(msg), "HTTP/1.1 503 Busy\r\nRetry-After: %0100d\r\n"
             "Content-Length: 0\r\n\r\n", 1);
    read_answer(msg, 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_STR(o.retry_after, "");

    read_answer("HTTP/1.1 301 Moved\r\nLOCATION: https://collector.example/"
                "v1/traces\r\nContent-Length: 0\r\n\r\n", 0, &o);
    CHECK_INT(o.status, 301);
    CHECK_STR(o.location, "https://collector.example/v1/traces");

    /* a long Location is cut, to say where it points */
    snprintf(msg, sizeof(msg), "HTTP/1.1 302 Found\r\nLocation: /%0400d\r\n"
             "Content-Length: 0\r\n\r\n", 0);
    read_answer(msg, 0, &o);
    CHECK_INT(o.rc, VQ_OK);
    CHECK_INT(strlen(o.location), 255);
}

static void
test_malformed(void)
{
    static const struct {
        const char  *msg;
        const char  *error;
    } bad[] = {
        { "garbage\r\n\r\n",
          "the answer does not start with an HTTP/1.x status line" },
        { "HTTP/2 200\r\n\r\n",
          "the answer does not start with an HTTP/1.x status line" },
        { "HTTP/1.1 20 OK\r\n\r\n", "the answer's status is not three digits" },
        { "HTTP/1.1 2000 OK\r\n\r\n",
          "the answer's status is not three digits" },
        { "HTTP/1.1 099 OK\r\n\r\n",
          "the answer's status is not three digits" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
          "the answer's Content-Length is not a number" },
        { "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
          "the answer's Content-Length is empty" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
          "the answer's Content-Length is not a number" },
        { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
          "the answer has two Content-Lengths" },
        { "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
          "the answer folds a header line" },
        { "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
          "the answer has a malformed header line" },
        { "HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
          "the answer has a malformed header line" },
        { "HTTP/1.1 200 OK\r\n: v\r\n\r\n",
          "the answer has a malformed header line" },
    };

    outcome_t  o;
    size_t     i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        read_answer(bad[i].msg, 0, &o);
        CHECK_INT(o.rc, VQ_ERROR);
        CHECK_STR(o.error, bad[i].error);
        CHECK_INT(o.final, 0);
    }
}

static void
test_head_too_long(void)
{
    vq_http_response_t  *r;
    char                 line[100];
    size_t               used, total;
    int                  rc;

    r = malloc(sizeof(*r));
    vq_http_response_init(r);

    rc = vq_http_response_feed(r, "HTTP/1.1 200 OK\r\n", 17, &used);
    CHECK_INT(rc, VQ_HTTP_AGAIN);

    memset(line, 'a', sizeof(line));
    memcpy(line, "X-Pad: ", 7);
    line[98] = '\r';
    line[99] = '\n';

    total = 17;

    while ((rc = vq_http_response_feed(r, line, sizeof(line), &used))
           == VQ_HTTP_AGAIN)
    {
        total += used;
    }

    total += used;

    CHECK_INT(rc, VQ_ERROR);
    CHECK_INT(total, VQ_HTTP_HEAD_MAX);
    CHECK_STR(r->error, "the answer's headers are longer than 64 KB");

    /* and it stays failed */
    CHECK_INT(vq_http_response_feed(r, "\r\n", 2, &used), VQ_ERROR);
    CHECK_INT(vq_http_response_eof(r), VQ_ERROR);

    free(r);
}

int
main(void)
{
    test_length();
    test_chunked();
    test_connection();
    test_interim();
    test_headers();
    test_malformed();
    test_head_too_long();

    return check_summary("test_http_response");
}
