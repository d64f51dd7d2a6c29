/*
 * The collector of `make bench`: takes export requests, answers 200, and
 * counts exactly the spans it received.
 *
 *   bench_sink [port [defer_mb]]   (no port or 0: any free one)
 *
 * Prints "port N" once it listens.  GET /stats answers the totals since
 * it started, as JSON; every other request is a body to count:
 *
 *   Vaquero batch (application/json, {"traces":[...],"agents":[...],...}):
 *       each item of the top-level traces[] and agents[] is one span
 *   OTLP JSON (application/json, {"resourceSpans":[...]}):
 *       each object of resourceSpans[].scopeSpans[].spans[]
 *   OTLP protobuf (application/x-protobuf, ExportTraceServiceRequest):
 *       each Span message: field 2 of ScopeSpans, in field 2 of
 *       ResourceSpans, in field 1 of the request
 *
 * Content-Encoding: gzip bodies are inflated first.  A body that does not
 * parse (unbalanced JSON, a truncated protobuf field, an unknown format)
 * counts in "bad" and adds no span.
 *
 * Cheap on purpose, since it shares a CPU with wrk: one thread, epoll,
 * and bodies are only put aside as they come (copied into an arena of
 * defer_mb megabytes, 512 unless told, whose pages are touched at
 * start), to be counted when GET /stats asks, that is after wrk is done;
 * when the arena is full, what it holds is counted at once (and nobody
 * is answered meanwhile: make the arena big enough for a run).  The count is the same
 * either way.  The JSON scan jumps from
 * quote to quote with memchr (strings are most of a body), looking only
 * at the structure between them: the keys of the enclosing containers,
 * nothing else is decoded.
 *
 * Compiled with -DVQ_SINK_NO_MAIN, it is only the counting functions
 * (bench_sink_check.c includes it that way).
 */

#define _GNU_SOURCE

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>


/* the format a body was found to be, by what it holds */
enum {
    SINK_BAD = 0,
    SINK_VAQUERO,
    SINK_OTLP_JSON,
    SINK_OTLP_PROTO
};

/* keys that matter on the way to a span */
enum {
    K_OTHER = 0,
    K_TRACES,
    K_AGENTS,
    K_RESOURCE_SPANS,
    K_SCOPE_SPANS,
    K_SPANS
};

#define SINK_MAX_DEPTH  128

static int
json_key(const char *s, size_t len)
{
#define is(lit)  (len == sizeof(lit) - 1 && memcmp(s, lit, len) == 0)
    if (is("traces")) {
        return K_TRACES;
    }
    if (is("agents")) {
        return K_AGENTS;
    }
    if (is("resourceSpans")) {
        return K_RESOURCE_SPANS;
    }
    if (is("scopeSpans")) {
        return K_SCOPE_SPANS;
    }
    if (is("spans")) {
        return K_SPANS;
    }
#undef is
    return K_OTHER;
}

/*
 * Spans in a Vaquero batch or an OTLP JSON body; -1 when it is not
 * well-nested JSON with an object at the top.  *format is set to what
 * the top-level keys say it is.
 *
 * Strings are skipped with memchr to the next quote (a quote preceded by
 * an odd number of backslashes is escaped); keys are compared raw, so a
 * key spelled with escapes is another key, as no encoder writes one.
 */
long
sink_count_json(const char *p, size_t n, int *format)
{
    unsigned char  type[SINK_MAX_DEPTH];   /* '{' or '[' */
    unsigned char  key[SINK_MAX_DEPTH];    /* the key it sits under */
    const char    *q, *end, *s;
    size_t         i, bs;
    long           count;
    int            depth, pending, expect_key, top;

    end = p + n;
    depth = 0;
    count = 0;
    pending = K_OTHER;
    expect_key = 0;
    top = 0;
    *format = SINK_BAD;

    for (i = 0; i < n; i++) {
        switch (p[i]) {

        case '"':
            s = p + i + 1;
            q = s;
            for ( ;; ) {
                q = memchr(q, '"', end - q);
                if (q == NULL) {
                    return -1;
                }
                for (bs = 0; q - bs > s && q[-1 - (long) bs] == '\\'; bs++) {
                    /* void */
                }
                if (bs % 2 == 0) {
                    break;
                }
                q++;
            }

            if (depth > 0 && type[depth - 1] == '{' && expect_key) {
                pending = json_key(s, q - s);
                expect_key = 0;

                if (depth == 1) {
                    if (pending == K_TRACES || pending == K_AGENTS) {
                        *format = SINK_VAQUERO;
                    } else if (pending == K_RESOURCE_SPANS) {
                        *format = SINK_OTLP_JSON;
                    }
                }
            }

            i = q - p;
            break;

        case '{':
        case '[':
            if (depth == SINK_MAX_DEPTH || (depth == 0 && top)) {
                return -1;
            }
            if (depth == 0 && p[i] != '{') {
                return -1;
            }

            if (p[i] == '{' && depth > 0 && type[depth - 1] == '[') {
                /* an object in an array: a span if the path says so */
                if (depth == 2
                    && (key[1] == K_TRACES || key[1] == K_AGENTS))
                {
                    count++;

                } else if (depth == 6 && key[1] == K_RESOURCE_SPANS
                           && type[2] == '{' && key[3] == K_SCOPE_SPANS
                           && type[4] == '{' && key[5] == K_SPANS)
                {
                    count++;
                }
            }

            type[depth] = (unsigned char) p[i];
            key[depth] = (unsigned char) (depth > 0 && type[depth - 1] == '{'
                                          ? pending : K_OTHER);
            depth++;
            top = 1;
            pending = K_OTHER;
            expect_key = p[i] == '{';
            break;

        case '}':
        case ']':
            if (depth == 0 || type[depth - 1] != (p[i] == '}' ? '{' : '[')) {
                return -1;
            }
            depth--;
            expect_key = 0;
            break;

        case ',':
            if (depth == 0) {
                return -1;
            }
            expect_key = type[depth - 1] == '{';
            break;

        case ' ':
        case '\t':
        case '\r':
        case '\n':
        case ':':
            break;

        default:
            /* numbers, true, false, null: nothing to count in them */
            if (depth == 0) {
                return -1;
            }
            break;
        }
    }

    if (depth != 0 || !top) {
        return -1;
    }

    return count;
}


static int
pb_varint(const unsigned char **pp, const unsigned char *end, uint64_t *v)
{
    const unsigned char  *p = *pp;
    unsigned              shift;

    *v = 0;
    for (shift = 0; shift < 64; shift += 7) {
        if (p == end) {
            return -1;
        }
        *v |= (uint64_t) (*p & 0x7f) << shift;
        if ((*p++ & 0x80) == 0) {
            *pp = p;
            return 0;
        }
    }

    return -1;
}

/*
 * One field of a message in [*pp, end): its number, and for a
 * length-delimited one its bytes in [*sub, *sub_end); others are skipped.
 * 1 for a field, 0 at the end, -1 when malformed.
 */
static int
pb_field(const unsigned char **pp, const unsigned char *end, uint64_t *field,
    const unsigned char **sub, const unsigned char **sub_end)
{
    uint64_t  tag, len;

    if (*pp == end) {
        return 0;
    }
    if (pb_varint(pp, end, &tag) != 0) {
        return -1;
    }

    *field = tag >> 3;
    *sub = NULL;

    switch (tag & 7) {
    case 0:
        return pb_varint(pp, end, &len) == 0 ? 1 : -1;
    case 1:
        len = 8;
        break;
    case 2:
        if (pb_varint(pp, end, &len) != 0) {
            return -1;
        }
        *sub = *pp;
        break;
    case 5:
        len = 4;
        break;
    default:
        return -1;
    }

    if (len > (uint64_t) (end - *pp)) {
        return -1;
    }

    *pp += len;
    *sub_end = *pp;

    return 1;
}

/* Span messages in an ExportTraceServiceRequest; -1 when malformed. */
long
sink_count_otlp_proto(const unsigned char *p, size_t n)
{
    const unsigned char  *end = p + n, *rs, *rs_end, *ss, *ss_end, *sp, *sp_end;
    uint64_t              f;
    long                  count;
    int                   rc, rc2, rc3;

    count = 0;

    while ((rc = pb_field(&p, end, &f, &rs, &rs_end)) == 1) {
        if (f != 1 || rs == NULL) {
            continue;
        }

        /* ResourceSpans: scope_spans = 2 */
        while ((rc2 = pb_field(&rs, rs_end, &f, &ss, &ss_end)) == 1) {
            if (f != 2 || ss == NULL) {
                continue;
            }

            /* ScopeSpans: spans = 2 */
            while ((rc3 = pb_field(&ss, ss_end, &f, &sp, &sp_end)) == 1) {
                if (f == 2 && sp != NULL) {
                    count++;
                }
            }
            if (rc3 < 0) {
                return -1;
            }
        }
        if (rc2 < 0) {
            return -1;
        }
    }

    return rc < 0 ? -1 : count;
}

/* inflates a gzip (or zlib) body into *out; its length, or -1 */
long
sink_inflate(const char *in, size_t n, char **out, size_t *cap)
{
    z_stream  z;
    size_t    len;
    int       rc;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 32 + MAX_WBITS) != Z_OK) {
        return -1;
    }

    z.next_in = (unsigned char *) in;
    z.avail_in = (unsigned) n;
    len = 0;

    do {
        if (*cap - len < 65536) {
            *cap = *cap * 2 + 65536;
            *out = realloc(*out, *cap);
            if (*out == NULL) {
                inflateEnd(&z);
                return -1;
            }
        }
        z.next_out = (unsigned char *) *out + len;
        z.avail_out = (unsigned) (*cap - len);
        rc = inflate(&z, Z_NO_FLUSH);
        len = *cap - z.avail_out;
    } while (rc == Z_OK);

    inflateEnd(&z);

    return rc == Z_STREAM_END ? (long) len : -1;
}


#ifndef VQ_SINK_NO_MAIN

typedef struct {
    int      fd;
    int      continued;         /* "100 Continue" sent for this request */
    char    *buf;
    size_t   len, cap;
} conn_t;

/*
 * Bodies put aside, to be counted later, one after the other in an arena
 * mapped (and its pages touched) once at start: a copy at memory speed,
 * no allocation and no page fault while wrk runs.
 */
typedef struct {
    size_t    len;
    int       proto;            /* Content-Type said protobuf */
    int       gzip;             /* Content-Encoding said gzip or deflate */
    char      data[];
} body_t;

static char     *arena;
static size_t    arena_used, arena_size = (size_t) 512 << 20;

static struct {
    uint64_t  requests;         /* every request, /stats included */
    uint64_t  bodies;           /* bodies received */
    uint64_t  spans;
    uint64_t  spans_vaquero;
    uint64_t  spans_otlp_json;
    uint64_t  spans_otlp_proto;
    uint64_t  bytes;            /* of bodies, as received */
    uint64_t  bad;              /* bodies that did not parse */
    uint64_t  gzip;             /* bodies that came gzipped */
} st;

#define LENGTH_REQUIRED                                                      \
    "HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\n"                  \
    "Connection: close\r\n\r\n"

#define CONTINUE  "HTTP/1.1 100 Continue\r\n\r\n"

static char    *zbuf;
static size_t   zcap;

static int
respond(conn_t *c, const char *type, const char *body, size_t body_len)
{
    char     head[256];
    ssize_t  w;
    int      n;

    n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n"
                 "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                 type, body_len);
    if ((size_t) n + body_len > sizeof(head)) {
        return -1;
    }
    memcpy(head + n, body, body_len);

    /* an answer of a few dozen bytes to a client that waits for it */
    w = write(c->fd, head, n + body_len);

    return w == (ssize_t) (n + body_len) ? 0 : -1;
}

/* the value of header name in [h, end), or NULL */
static const char *
header(const char *h, const char *end, const char *name, size_t *len)
{
    size_t       nl = strlen(name);
    const char  *line, *eol, *v;

    for (line = h; line < end; line = eol + 2) {
        eol = memmem(line, end - line, "\r\n", 2);
        if (eol == NULL) {
            eol = end;
        }
        if ((size_t) (eol - line) > nl && line[nl] == ':'
            && strncasecmp(line, name, nl) == 0)
        {
            v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) {
                v++;
            }
            *len = eol - v;
            return v;
        }
    }

    return NULL;
}

static int
contains(const char *v, size_t len, const char *what)
{
    size_t  wl = strlen(what), i;

    for (i = 0; v && i + wl <= len; i++) {
        if (strncasecmp(v + i, what, wl) == 0) {
            return 1;
        }
    }

    return 0;
}

static void
count_one(int proto, int gzip, const char *body, size_t n)
{
    long  spans, len;
    int   format;

    if (gzip) {
        len = sink_inflate(body, n, &zbuf, &zcap);
        if (len < 0) {
            st.bad++;
            return;
        }
        body = zbuf;
        n = (size_t) len;
    }

    if (proto) {
        spans = sink_count_otlp_proto((const unsigned char *) body, n);
        format = SINK_OTLP_PROTO;

    } else {
        spans = sink_count_json(body, n, &format);
    }

    if (spans < 0 || format == SINK_BAD) {
        st.bad++;
        return;
    }

    st.spans += spans;

    switch (format) {
    case SINK_VAQUERO:
        st.spans_vaquero += spans;
        break;
    case SINK_OTLP_JSON:
        st.spans_otlp_json += spans;
        break;
    default:
        st.spans_otlp_proto += spans;
        break;
    }
}

/* counts every body put aside, and empties the arena */
static void
count_pending(void)
{
    body_t  *b;
    size_t   off;

    for (off = 0; off < arena_used; off += sizeof(body_t) + ((b->len + 7) & ~7UL)) {
        b = (body_t *) (arena + off);
        count_one(b->proto, b->gzip, b->data, b->len);
    }

    arena_used = 0;
}

static void
take_body(const char *type, size_t type_len, const char *enc,
    size_t enc_len, const char *body, size_t n)
{
    body_t  *b;
    int      proto, gzip;

    st.bodies++;
    st.bytes += n;

    proto = contains(type, type_len, "protobuf");
    gzip = contains(enc, enc_len, "gzip") || contains(enc, enc_len, "deflate");
    st.gzip += gzip;

    if (arena_size - arena_used < sizeof(body_t) + n + 8) {
        /* no room: what waits is counted now, and this one too if need be */
        count_pending();

        if (arena_size < sizeof(body_t) + n + 8) {
            count_one(proto, gzip, body, n);
            return;
        }
    }

    b = (body_t *) (arena + arena_used);
    b->len = n;
    b->proto = proto;
    b->gzip = gzip;
    memcpy(b->data, body, n);
    arena_used += sizeof(body_t) + ((n + 7) & ~7UL);
}

/*
 * Handles the complete requests in c's buffer; -1 when the connection is
 * to be closed.
 */
static int
process(conn_t *c)
{
    const char  *hend, *v, *type, *enc, *body;
    size_t       hlen, vlen, type_len, enc_len, clen, total;
    char         stats[512];
    int          n, close_after;

    for ( ;; ) {
        hend = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (hend == NULL) {
            return c->len > 65536 ? -1 : 0;
        }
        hlen = hend + 4 - c->buf;

        clen = 0;
        v = header(c->buf, hend, "Content-Length", &vlen);
        if (v) {
            clen = strtoull(v, NULL, 10);
        }
        if (header(c->buf, hend, "Transfer-Encoding", &vlen)) {
            /* no exporter sends chunked bodies: say so, loudly */
            st.requests++;
            st.bad++;
            (void) !write(c->fd, LENGTH_REQUIRED, sizeof(LENGTH_REQUIRED) - 1);
            return -1;
        }

        total = hlen + clen;
        if (c->len < total) {
            v = header(c->buf, hend, "Expect", &vlen);
            if (v && !c->continued && contains(v, vlen, "100-continue")) {
                c->continued = 1;
                if (write(c->fd, CONTINUE, sizeof(CONTINUE) - 1)
                    != sizeof(CONTINUE) - 1)
                {
                    return -1;
                }
            }

            if (c->cap < total) {
                c->cap = total;
                c->buf = realloc(c->buf, c->cap);
                if (c->buf == NULL) {
                    return -1;
                }
            }
            return 0;
        }

        st.requests++;
        body = c->buf + hlen;
        v = header(c->buf, hend, "Connection", &vlen);
        close_after = contains(v, vlen, "close");

        if (strncmp(c->buf, "GET /stats ", 11) == 0) {
            count_pending();
            n = snprintf(stats, sizeof(stats),
                         "{\"requests\":%llu,\"bodies\":%llu,\"spans\":%llu,"
                         "\"spans_vaquero\":%llu,\"spans_otlp_json\":%llu,"
                         "\"spans_otlp_proto\":%llu,\"bytes\":%llu,"
                         "\"bad\":%llu,\"gzip\":%llu}",
                         (unsigned long long) st.requests,
                         (unsigned long long) st.bodies,
                         (unsigned long long) st.spans,
                         (unsigned long long) st.spans_vaquero,
                         (unsigned long long) st.spans_otlp_json,
                         (unsigned long long) st.spans_otlp_proto,
                         (unsigned long long) st.bytes,
                         (unsigned long long) st.bad,
                         (unsigned long long) st.gzip);
            if (respond(c, "application/json", stats, n) != 0) {
                return -1;
            }

        } else {
            type = header(c->buf, hend, "Content-Type", &type_len);
            enc = header(c->buf, hend, "Content-Encoding", &enc_len);
            take_body(type, type ? type_len : 0, enc, enc ? enc_len : 0,
                      body, clen);

            /* an empty ExportTraceServiceResponse, or an empty object */
            if (contains(type, type ? type_len : 0, "protobuf")) {
                n = respond(c, "application/x-protobuf", "", 0);
            } else {
                n = respond(c, "application/json", "{}", 2);
            }
            if (n != 0) {
                return -1;
            }
        }

        if (close_after) {
            return -1;
        }

        c->continued = 0;
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
    }
}

static void
conn_close(int ep, conn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    free(c);
}

int
main(int argc, char **argv)
{
    struct epoll_event   ev, events[64];
    struct sockaddr_in   sa;
    socklen_t            salen;
    conn_t              *c;
    ssize_t              r;
    int                  ls, ep, fd, one, i, n;

    signal(SIGPIPE, SIG_IGN);

    ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(argc > 1 ? atoi(argv[1]) : 0);
    if (argc > 2) {
        arena_size = (size_t) atol(argv[2]) << 20;
    }

    arena = arena_size ? mmap(NULL, arena_size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                              -1, 0)
                       : NULL;
    if (arena == MAP_FAILED) {
        arena = NULL;
    }
    if (arena == NULL) {
        arena_size = 0;     /* every body counted as it comes */
    }

    if (bind(ls, (struct sockaddr *) &sa, sizeof(sa)) != 0
        || listen(ls, 1024) != 0)
    {
        perror("bench_sink: bind/listen");
        return 1;
    }

    salen = sizeof(sa);
    getsockname(ls, (struct sockaddr *) &sa, &salen);
    printf("port %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    ep = epoll_create1(0);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);

    for ( ;; ) {
        n = epoll_wait(ep, events, 64, -1);
        if (n < 0 && errno != EINTR) {
            perror("bench_sink: epoll_wait");
            return 1;
        }

        for (i = 0; i < n; i++) {
            c = events[i].data.ptr;

            if (c == NULL) {
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
                               sizeof(one));
                    c = calloc(1, sizeof(conn_t));
                    c->fd = fd;
                    c->cap = 65536;
                    c->buf = malloc(c->cap);
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }

            if (c->cap - c->len < 16384) {
                c->cap *= 2;
                c->buf = realloc(c->buf, c->cap);
            }

            r = read(c->fd, c->buf + c->len, c->cap - c->len);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            if (r <= 0) {
                conn_close(ep, c);
                continue;
            }

            c->len += r;
            if (process(c) != 0) {
                conn_close(ep, c);
            }
        }
    }
}

#endif /* VQ_SINK_NO_MAIN */
