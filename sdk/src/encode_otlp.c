/*
 * The OTLP bodies (DESIGN 6, "OTLP/HTTP"): a batch of span records as one
 * ExportTraceServiceRequest, in protobuf binary or in the OTLP JSON
 * encoding, with one ResourceSpans and one ScopeSpans.
 *
 * A record is first mapped to an otlp_span_t: its OTLP fields and a list
 * of typed attributes under their semantic-convention names.  The two
 * writers only serialize that list, so the mapping is written once and
 * the two bodies carry the same values.
 *
 * Protobuf puts a message's length before the message.  Inside a span
 * every nested message (KeyValue, AnyValue, ArrayValue, Status) is small
 * and its size is computed before it is written: a string's repaired
 * length comes from the UTF-8 scan that has to be made anyway.  A span's
 * own length is patched in after its body: two bytes are held for it (a
 * span takes 128 bytes to 16 KB), and the body is moved in the rare case
 * that the number needs another width.  The two batch-wide lengths
 * (ResourceSpans, ScopeSpans) are written last, into room held from an
 * estimate of the batch's size; a wrong estimate costs one memmove of the
 * batch.  A size pass before a write pass would scan every string twice
 * and walk every attribute twice; this does each once.
 *
 * Short copies and numbers are written inline rather than through
 * memcpy() and snprintf(): a span is some 20 attributes of a few bytes
 * each, and calls were most of the cost.
 */

#include <stdlib.h>

#include <vaquero/vaquero.h>
#include "json.h"

#define OTLP_SCOPE_NAME  "ngx_vaquero_module"

/* proto Span.flags: bits 0-7 the W3C trace flags, then whether the parent is remote */
#define OTLP_FLAG_HAS_IS_REMOTE  0x100
#define OTLP_FLAG_IS_REMOTE      0x200

#define OTLP_KIND_SERVER  2
#define OTLP_KIND_CLIENT  3
#define OTLP_STATUS_ERROR 2

enum {
    ATTR_STR,
    ATTR_INT,
    ATTR_MILLI,             /* an integer in thousandths, sent as a double */
    ATTR_TRUE,
    ATTR_STR_ARRAY          /* an array of strings, one per line of s */
};

typedef struct {
    const char  *key;
    const char  *json;      /* a constant key: its JSON up to the value */
    const char  *s;         /* ATTR_STR, ATTR_STR_ARRAY */
    size_t       klen;
    size_t       json_len;
    size_t       len;
    int64_t      i;         /* ATTR_INT, ATTR_MILLI */
    uint8_t      type;
    uint8_t      key_raw;   /* key from a record or the configuration: repair it */
    uint8_t      clean;     /* s is UTF-8 without NUL already */
} otlp_attr_t;

/*
 * A JSON attribute around its key and value, by type; a constant key's
 * prefix ({"key":"<key>" and the middle part) is put together at compile
 * time by the ATTR_* macros below.
 */
#define J_STR    "\",\"value\":{\"stringValue\":\""
#define J_INT    "\",\"value\":{\"intValue\":\""          /* int64: a string */
#define J_MILLI  "\",\"value\":{\"doubleValue\":"
#define J_TRUE   "\",\"value\":{\"boolValue\":true"
#define J_ARRAY  "\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\""

#define LIT(s)  s, sizeof(s) - 1

static const struct {
    const char  *middle;
    size_t       middle_len;
    const char  *end;
    size_t       end_len;
} json_type[] = {
    [ATTR_STR]       = { LIT(J_STR),   LIT("\"}}") },
    [ATTR_INT]       = { LIT(J_INT),   LIT("\"}}") },
    [ATTR_MILLI]     = { LIT(J_MILLI), LIT("}}") },
    [ATTR_TRUE]      = { LIT(J_TRUE),  LIT("}}") },
    [ATTR_STR_ARRAY] = { LIT(J_ARRAY), LIT("\"}]}}}") },
};

/* a constant key, and its JSON up to the value */
#define KEY(k, middle)  k, sizeof(k) - 1, LIT("{\"key\":\"" k middle)

/* the most attributes a span gets: 18 of a server span, 3 more, custom ones */
#define OTLP_MAX_ATTRS  (24 + VQ_SPAN_MAX_ATTRS)

/*
 * Room for record fields put together, each repaired (3 bytes a byte at
 * most): a valid record's fields may overlap, so each can be as long as
 * the record.
 */
#define OTLP_FIELD_MAX  (3 * VQ_SPAN_RECORD_MAX)

typedef struct {
    const vq_span_t  *span;
    const char       *name;
    size_t            name_len;
    int               name_clean;
    const char       *tracestate;     /* NULL: none */
    size_t            tracestate_len;
    uint32_t          flags;
    uint32_t          kind;
    uint64_t          start_ns;
    uint64_t          end_ns;
    int               error;          /* status code ERROR, else unset */
    const char       *message;        /* of the status; NULL: none */
    size_t            nattrs;
    otlp_attr_t       attrs[OTLP_MAX_ATTRS];
    char              error_type[8];
    char              name_buf[2 * OTLP_FIELD_MAX + 8];     /* method route */
    char              url[4 * OTLP_FIELD_MAX + 16];         /* s://h:p/p?q */
} otlp_span_t;


/* writing */

/*
 * A copy of a few bytes, inline: overlapping fixed-size moves (memcpy()
 * of a constant size is a move) rather than a call or a byte loop.
 */
static inline char *
put(char *p, const char *s, size_t len)
{
    uint64_t  x, y;
    uint32_t  u, v;
    size_t    i;
    char      w[16];

    if (len >= 16 && len <= 128) {
        for (i = 0; i + 16 < len; i += 16) {
            memcpy(w, s + i, 16);
            memcpy(p + i, w, 16);
        }

        memcpy(w, s + len - 16, 16);
        memcpy(p + len - 16, w, 16);

    } else if (len >= 8 && len < 16) {
        memcpy(&x, s, 8);
        memcpy(&y, s + len - 8, 8);
        memcpy(p, &x, 8);
        memcpy(p + len - 8, &y, 8);

    } else if (len >= 4 && len < 8) {
        memcpy(&u, s, 4);
        memcpy(&v, s + len - 4, 4);
        memcpy(p, &u, 4);
        memcpy(p + len - 4, &v, 4);

    } else if (len > 0 && len < 4) {
        /* the first, middle and last bytes are all of them */
        p[0] = s[0];
        p[len / 2] = s[len / 2];
        p[len - 1] = s[len - 1];

    } else if (len > 128) {
        memcpy(p, s, len);
    }

    return p + len;
}

static inline void
append(vq_buf_t *b, const char *s, size_t len)
{
    if (vq_buf_reserve(b, len) == VQ_OK) {
        put(b->data + b->len, s, len);
        b->len += len;
    }
}

static const char  digit_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";

/* decimal, written from its last digit back, two digits a step */
static inline char *
put_uint(char *p, uint64_t v)
{
    static const uint64_t  pow10[] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
        100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL,
        10000000000000000000ULL
    };

    char    *end;
    size_t   n;

    for (n = 1; n < 20 && v >= pow10[n]; n++) { /* void */ }

    end = p + n;
    p = end;

    while (v >= 100) {
        p -= 2;
        memcpy(p, digit_pairs + 2 * (v % 100), 2);
        v /= 100;
    }

    if (v >= 10) {
        memcpy(p - 2, digit_pairs + 2 * v, 2);
    } else {
        p[-1] = (char) ('0' + v);
    }

    return end;
}

static inline char *
put_int(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_uint(p, (uint64_t) 0 - (uint64_t) v);
    }

    return put_uint(p, (uint64_t) v);
}

/* v / 1000 with three decimals, as vq_json_milli() writes it */
static inline char *
put_milli(char *p, int64_t v)
{
    if (v < 0) {
        v = 0;
    }

    p = put_uint(p, (uint64_t) v / 1000);
    p[0] = '.';
    p[1] = (char) ('0' + (v / 100) % 10);
    p[2] = (char) ('0' + (v / 10) % 10);
    p[3] = (char) ('0' + v % 10);

    return p + 4;
}

static void
append_int(vq_buf_t *b, int64_t v)
{
    if (vq_buf_reserve(b, 20) == VQ_OK) {
        b->len = put_int(b->data + b->len, v) - b->data;
    }
}

/* the length of s repaired as UTF-8; most strings are plain */
static inline size_t
utf8_len(const char *s, size_t len)
{
    return vq_utf8_plain(s, len) ? len : vq_utf8_repaired_len(s, len);
}

/* s escaped, without the quotes; most strings are plain */
static inline void
json_text(vq_buf_t *b, const char *s, size_t len)
{
    if (vq_json_plain(s, len)) {
        append(b, s, len);
    } else {
        vq_json_escape(b, s, len);
    }
}


/* mapping a record */

/* "http.request.header.*" or "http.response.header.*" */
static int
is_header_key(const char *key, size_t len)
{
    return (len > sizeof("http.request.header.") - 1
            && memcmp(key, "http.request.header.",
                      sizeof("http.request.header.") - 1) == 0)
           || (len > sizeof("http.response.header.") - 1
               && memcmp(key, "http.response.header.",
                         sizeof("http.response.header.") - 1) == 0);
}

static otlp_attr_t *
add_attr(otlp_span_t *o, const char *key, size_t klen, const char *json,
    size_t json_len, unsigned type)
{
    otlp_attr_t  *a = &o->attrs[o->nattrs++];

    a->key = key;
    a->klen = klen;
    a->json = json;
    a->json_len = json_len;
    a->s = NULL;
    a->len = 0;
    a->i = 0;
    a->type = (uint8_t) type;
    a->key_raw = 0;
    a->clean = 0;

    return a;
}

static void
add_str(otlp_span_t *o, const char *key, size_t klen, const char *json,
    size_t json_len, const char *s, size_t len, int clean)
{
    otlp_attr_t  *a = add_attr(o, key, klen, json, json_len, ATTR_STR);

    a->s = s;
    a->len = len;
    a->clean = (uint8_t) clean;
}

static void
add_int(otlp_span_t *o, const char *key, size_t klen, const char *json,
    size_t json_len, int64_t v)
{
    add_attr(o, key, klen, json, json_len, ATTR_INT)->i = v;
}

/* a string field of the record, when it was set */
static void
add_field(otlp_span_t *o, const char *key, size_t klen, const char *json,
    size_t json_len, vq_span_field_t field)
{
    const vq_span_t  *span = o->span;

    if (span->h.str[field].off != 0) {
        add_str(o, key, klen, json, json_len,
                (const char *) span + span->h.str[field].off,
                span->h.str[field].len, 0);
    }
}

#define STR_ATTR(o, k, s, len, clean)                                        \
    add_str(o, KEY(k, J_STR), s, len, clean)
#define INT_ATTR(o, k, v)     add_int(o, KEY(k, J_INT), v)
#define FIELD_ATTR(o, k, f)   add_field(o, KEY(k, J_STR), f)

/* a field, repaired, at p; returns the end */
static char *
join_field(char *p, const vq_span_t *span, vq_span_field_t field)
{
    const char  *s;
    size_t       len;

    s = vq_span_str(span, field, &len);

    if (vq_utf8_plain(s, len)) {
        return put(p, s, len);
    }

    return p + vq_utf8_repair(p, s, len);
}

/*
 * url.full as the Vaquero encoder's write_url() puts it together, each
 * part repaired on its own as the Vaquero encoder escapes each alone.
 */
static void
add_url(otlp_span_t *o)
{
    const vq_span_t  *span = o->span;
    char             *p = o->url;

    p = join_field(p, span, VQ_FIELD_SCHEME);
    p = put(p, "://", 3);
    p = join_field(p, span, VQ_FIELD_HOST);

    if (span->h.server_port != 0
        && !(span->h.server_port == 80 && span->h.str[VQ_FIELD_SCHEME].len == 4)
        && !(span->h.server_port == 443
             && span->h.str[VQ_FIELD_SCHEME].len == 5))
    {
        *p++ = ':';
        p = put_uint(p, span->h.server_port);
    }

    p = join_field(p, span, VQ_FIELD_PATH);

    if (span->h.str[VQ_FIELD_QUERY].off != 0) {
        *p++ = '?';
        p = join_field(p, span, VQ_FIELD_QUERY);
    }

    STR_ATTR(o, "url.full", o->url, p - o->url, 1);
}

/* the record's name; unset, "<METHOD> <ROUTE>" ("HTTP" without a method) as the Vaquero encoder derives it */
static void
map_name(otlp_span_t *o)
{
    const vq_span_t  *span = o->span;
    char             *p = o->name_buf;

    if (span->h.str[VQ_FIELD_NAME].off != 0) {
        o->name = (const char *) span + span->h.str[VQ_FIELD_NAME].off;
        o->name_len = span->h.str[VQ_FIELD_NAME].len;
        o->name_clean = 0;
        return;
    }

    if (span->h.str[VQ_FIELD_METHOD].len) {
        p = join_field(p, span, VQ_FIELD_METHOD);
    } else {
        p = put(p, "HTTP", 4);
    }

    if (span->h.str[VQ_FIELD_ROUTE].len) {
        *p++ = ' ';
        p = join_field(p, span, VQ_FIELD_ROUTE);
    }

    o->name = o->name_buf;
    o->name_len = p - o->name_buf;
    o->name_clean = 1;
}

/* an error status and error.type; a status code tells the reason alone (semconv: no description then) */
static void
set_error(otlp_span_t *o, const char *type, const char *message)
{
    char  *end;

    o->error = 1;
    o->message = message;

    if (type == NULL) {
        if (o->span->h.status_code == 0) {
            type = "_OTHER";
        } else {
            end = put_uint(o->error_type, o->span->h.status_code);
            STR_ATTR(o, "error.type", o->error_type, end - o->error_type, 1);
            return;
        }
    }

    STR_ATTR(o, "error.type", type, strlen(type), 1);
}

/*
 * The upstream's own status: not one nginx filled in for an attempt that
 * got no answer (its 502 when the connection failed, 504 on a timeout).
 */
static unsigned
upstream_status(const vq_span_head_t *h)
{
    switch (h->error) {
    case VQ_SPAN_ERR_CONNECT:
    case VQ_SPAN_ERR_NO_LIVE:
        return 0;

    case VQ_SPAN_ERR_TIMEOUT:
        return h->header_ms >= 0 ? h->status_code : 0;

    default:
        return h->status_code;
    }
}

static void
map_server(otlp_span_t *o)
{
    const vq_span_head_t  *h = &o->span->h;
    const vq_span_t       *span = o->span;
    otlp_attr_t           *a;

    FIELD_ATTR(o, "http.request.method", VQ_FIELD_METHOD);
    add_url(o);
    FIELD_ATTR(o, "url.path", VQ_FIELD_PATH);
    FIELD_ATTR(o, "url.query", VQ_FIELD_QUERY);
    FIELD_ATTR(o, "url.scheme", VQ_FIELD_SCHEME);
    FIELD_ATTR(o, "http.route", VQ_FIELD_ROUTE);

    if (h->status_code) {
        INT_ATTR(o, "http.response.status_code", h->status_code);
    }

    INT_ATTR(o, "http.request.body.size", h->request_body_size);
    INT_ATTR(o, "http.response.body.size", h->response_body_size);
    FIELD_ATTR(o, "user_agent.original", VQ_FIELD_USER_AGENT);

    if (h->str[VQ_FIELD_CONTENT_TYPE].off != 0) {
        /* request header attributes are string arrays (one per header line) */
        a = add_attr(o, KEY("http.request.header.content-type", J_ARRAY),
                     ATTR_STR_ARRAY);
        a->s = (const char *) span + h->str[VQ_FIELD_CONTENT_TYPE].off;
        a->len = h->str[VQ_FIELD_CONTENT_TYPE].len;
    }

    FIELD_ATTR(o, "client.address", VQ_FIELD_CLIENT_ADDRESS);

    if (h->client_port) {
        INT_ATTR(o, "client.port", h->client_port);
    }

    FIELD_ATTR(o, "server.address", VQ_FIELD_HOST);

    if (h->server_port) {
        INT_ATTR(o, "server.port", h->server_port);
    }

    FIELD_ATTR(o, "network.protocol.version", VQ_FIELD_PROTOCOL_VERSION);
    FIELD_ATTR(o, "http.request.id", VQ_FIELD_REQUEST_ID);

    /* 4xx is the client's error, not the server's (semconv) */
    if (h->status_code >= 500 && h->status_code <= 599) {
        set_error(o, NULL, NULL);
    }
}

/*
 * end - start, 0 if negative; without overflow for any record, and at most
 * 2^53 (285 years), which a double holds exactly: the protobuf double and
 * the JSON's decimals then say the same number.
 */
static int64_t
duration_us(const vq_span_head_t *h)
{
    uint64_t  d;

    if (h->end_us <= h->start_us) {
        return 0;
    }

    d = (uint64_t) h->end_us - (uint64_t) h->start_us;

    return d < ((uint64_t) 1 << 53) ? (int64_t) d : (int64_t) 1 << 53;
}

static void
map_client(otlp_span_t *o)
{
    static const char  *types[] = {
        "_OTHER", NULL, "timeout", "connect_error", "no_live_upstreams",
        "response_error"
    };
    static const char  *messages[] = {
        NULL, NULL, "upstream timed out", "cannot connect to upstream",
        "no live upstreams", "invalid upstream response or connection reset"
    };

    const vq_span_head_t  *h = &o->span->h;
    otlp_attr_t           *a;
    unsigned               status;

    FIELD_ATTR(o, "server.address", VQ_FIELD_HOST);

    if (h->server_port) {
        INT_ATTR(o, "server.port", h->server_port);
    }

    FIELD_ATTR(o, "http.request.method", VQ_FIELD_METHOD);

    status = upstream_status(h);
    if (status) {
        INT_ATTR(o, "http.response.status_code", status);
    }

    FIELD_ATTR(o, "nginx.upstream.name", VQ_FIELD_ROUTE);
    INT_ATTR(o, "nginx.upstream.attempt", h->attempt);

    if (h->attempt > 1) {
        INT_ATTR(o, "http.request.resend_count", h->attempt - 1);
    }

    if (h->connect_ms >= 0) {
        INT_ATTR(o, "nginx.upstream.connect_time_ms", h->connect_ms);
    }

    if (h->header_ms >= 0) {
        INT_ATTR(o, "nginx.upstream.header_time_ms", h->header_ms);
    }

    a = add_attr(o, KEY("nginx.upstream.response_time_ms", J_MILLI),
                 ATTR_MILLI);
    a->i = duration_us(h);

    INT_ATTR(o, "nginx.upstream.bytes_sent", h->request_body_size);
    INT_ATTR(o, "nginx.upstream.bytes_received", h->response_body_size);

    if (h->flags & VQ_SPAN_ERROR) {
        set_error(o, types[h->error], messages[h->error]);
    }
}

/* Unix microseconds to nanoseconds, kept in what both encodings can carry */
static uint64_t
unix_ns(int64_t us)
{
    if (us <= 0) {
        return 0;
    }

    if (us > INT64_MAX / 1000) {
        us = INT64_MAX / 1000;
    }

    return (uint64_t) us * 1000;
}

/* span must have passed vq_span_validate() */
static void
map_span(otlp_span_t *o, const vq_span_t *span)
{
    const vq_span_head_t  *h = &span->h;
    otlp_attr_t           *a;
    unsigned               i;

    o->span = span;
    o->nattrs = 0;
    o->error = 0;
    o->message = NULL;

    map_name(o);

    o->tracestate = NULL;
    if (h->str[VQ_FIELD_TRACESTATE].len) {
        o->tracestate = (const char *) span + h->str[VQ_FIELD_TRACESTATE].off;
        o->tracestate_len = h->str[VQ_FIELD_TRACESTATE].len;
    }

    /*
     * Whether the parent is remote is known: a server span's parent is the
     * client's (W3C traceparent), a client span's is our server span.
     */
    o->flags = h->trace_flags | OTLP_FLAG_HAS_IS_REMOTE;

    if (h->kind == VQ_SPAN_SERVER) {
        o->kind = OTLP_KIND_SERVER;

        if (h->flags & VQ_SPAN_HAS_PARENT) {
            o->flags |= OTLP_FLAG_IS_REMOTE;
        }

        map_server(o);

    } else {
        o->kind = OTLP_KIND_CLIENT;
        map_client(o);
    }

    o->start_ns = unix_ns(h->start_us);
    o->end_ns = unix_ns(h->end_us);

    for (i = 0; i < h->nattrs; i++) {
        a = add_attr(o, NULL, 0, NULL, 0, ATTR_STR);
        a->key = vq_span_attr_key(span, i, &a->klen);
        a->key_raw = 1;
        a->s = vq_span_attr_value(span, i, &a->len);

        /* captured headers: OTel's string arrays, a value per line */
        if (is_header_key(a->key, a->klen)) {
            a->type = ATTR_STR_ARRAY;
        }
    }

    if (h->truncated) {
        add_attr(o, KEY("vaquero.truncated", J_TRUE), ATTR_TRUE);
    }

    /* not in the ratio sample: counting it would skew adjusted counts */
    if (h->flags & VQ_SPAN_KEPT_ERROR) {
        STR_ATTR(o, "vaquero.kept", "error", 5, 1);

    } else if (h->flags & VQ_SPAN_KEPT_SLOW) {
        STR_ATTR(o, "vaquero.kept", "slow", 4, 1);
    }
}


/* the resource */

#define OTLP_RES_BUILTIN  5

static int
key_is(const char *key, const char *s, size_t len)
{
    return strlen(key) == len && memcmp(key, s, len) == 0;
}

/* whether an extra attribute of the configuration replaces this one */
static int
overridden(const vq_resource_t *res, const otlp_attr_t *a)
{
    size_t  i;

    for (i = 0; i < res->nattributes; i++) {
        if (res->attributes[i].key && res->attributes[i].value
            && key_is(res->attributes[i].key, a->key, a->klen))
        {
            return 1;
        }
    }

    return 0;
}

/*
 * The resource's attributes into attrs (room for OTLP_RES_BUILTIN plus
 * res->nattributes); returns how many.  Keys are unique, as OTLP requires:
 * an extra attribute replaces a built-in one, and only the first of extra
 * attributes with the same key counts.
 */
static size_t
resource_attrs(const vq_resource_t *res, otlp_attr_t *attrs)
{
    const char    *key, *value[OTLP_RES_BUILTIN];
    otlp_attr_t   *a;
    size_t         n, i, j;
    static const struct {
        const char  *key;
        size_t       klen;
    } builtin[OTLP_RES_BUILTIN] = {
        { LIT("service.name") },
        { LIT("service.version") },
        { LIT("host.name") },
        { LIT("vaquero.project_id") },
        { LIT("deployment.environment.name") },
    };

    value[0] = res->service_name;
    value[1] = res->service_version;
    value[2] = res->hostname;
    value[3] = res->project_id;
    value[4] = res->environment;

    n = 0;

    for (i = 0; i < OTLP_RES_BUILTIN; i++) {
        if (value[i] == NULL) {
            continue;
        }

        a = &attrs[n];
        memset(a, 0, sizeof(otlp_attr_t));
        a->key = builtin[i].key;
        a->klen = builtin[i].klen;
        a->type = ATTR_STR;
        a->s = value[i];
        a->len = strlen(value[i]);

        if (!overridden(res, a)) {
            n++;
        }
    }

    for (i = 0; i < res->nattributes; i++) {
        key = res->attributes[i].key;

        if (key == NULL || res->attributes[i].value == NULL) {
            continue;
        }

        for (j = 0; j < i; j++) {
            if (res->attributes[j].key && res->attributes[j].value
                && strcmp(res->attributes[j].key, key) == 0)
            {
                break;
            }
        }

        if (j < i) {
            continue;
        }

        a = &attrs[n++];
        memset(a, 0, sizeof(otlp_attr_t));
        a->key = key;
        a->klen = strlen(key);
        a->type = ATTR_STR;
        a->key_raw = 1;
        a->s = res->attributes[i].value;
        a->len = strlen(a->s);
    }

    return n;
}

/* resource_attrs() into memory of its own; NULL when out of memory */
static otlp_attr_t *
resource_attrs_alloc(const vq_resource_t *res, size_t *n)
{
    otlp_attr_t  *attrs;

    attrs = malloc((OTLP_RES_BUILTIN + res->nattributes)
                   * sizeof(otlp_attr_t));
    if (attrs == NULL) {
        return NULL;
    }

    *n = resource_attrs(res, attrs);

    return attrs;
}


/* protobuf */

/* wire types */
#define PB_VARINT  0
#define PB_I64     1
#define PB_LEN     2
#define PB_I32     5

#define PB_TAG(field, type)  (((field) << 3) | (type))

static inline size_t
pb_varint_size(uint64_t v)
{
    size_t  n = 1;

    /* nearly every length here takes one or two bytes */
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }

    return n;
}

static inline char *
pb_varint(char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (char) (v | 0x80);
        v >>= 7;
    }

    *p++ = (char) v;

    return p;
}

static inline char *
pb_fixed64(char *p, uint64_t v)
{
    int  i;

    for (i = 0; i < 8; i++) {
        p[i] = (char) (v >> (8 * i));
    }

    return p + 8;
}

/* tag, length, string: repaired unless its repaired length is its length */
static inline char *
pb_string(char *p, unsigned tag, const char *s, size_t len, size_t repaired)
{
    *p++ = (char) tag;
    p = pb_varint(p, repaired);

    if (repaired == len) {
        return put(p, s, len);
    }

    return p + vq_utf8_repair(p, s, len);
}

static inline size_t
pb_len_field_size(size_t len)
{
    return 1 + pb_varint_size(len) + len;
}

/* a KeyValue as field tag: every nested length computed first */
static void
pb_attr(vq_buf_t *b, unsigned tag, const otlp_attr_t *a)
{
    size_t       klen, slen, elem, arr, any, kv, n;
    char        *p;
    const char  *line, *nl, *end;
    double   d;
    uint64_t u;

    klen = a->key_raw ? utf8_len(a->key, a->klen) : a->klen;
    slen = elem = arr = 0;

    switch (a->type) {
    case ATTR_STR:
        slen = a->clean ? a->len : utf8_len(a->s, a->len);
        any = pb_len_field_size(slen);
        break;

    case ATTR_INT:
        any = 1 + pb_varint_size((uint64_t) a->i);
        break;

    case ATTR_MILLI:
        any = 1 + 8;
        break;

    case ATTR_TRUE:
        any = 2;
        break;

    default: /* ATTR_STR_ARRAY */
        /* ArrayValue: an AnyValue per line (a header's values, say) */
        for (line = a->s, end = a->s + a->len; ; line = nl + 1) {
            nl = memchr(line, '\n', end - line);
            n = (nl ? nl : end) - line;
            slen = a->clean ? n : utf8_len(line, n);
            arr += pb_len_field_size(pb_len_field_size(slen));

            if (nl == NULL) {
                break;
            }
        }

        any = pb_len_field_size(arr);
        break;
    }

    /* an empty key is left out, as proto3 leaves out empty strings */
    kv = (klen ? pb_len_field_size(klen) : 0) + pb_len_field_size(any);

    if (vq_buf_reserve(b, pb_len_field_size(kv)) != VQ_OK) {
        return;
    }

    p = b->data + b->len;

    *p++ = (char) tag;
    p = pb_varint(p, kv);

    if (klen) {
        p = pb_string(p, PB_TAG(1, PB_LEN), a->key, a->klen, klen);
    }

    *p++ = (char) PB_TAG(2, PB_LEN);
    p = pb_varint(p, any);

    switch (a->type) {
    case ATTR_STR:
        p = pb_string(p, PB_TAG(1, PB_LEN), a->s, a->len, slen);
        break;

    case ATTR_INT:
        *p++ = (char) PB_TAG(3, PB_VARINT);
        p = pb_varint(p, (uint64_t) a->i);      /* int64: two's complement */
        break;

    case ATTR_MILLI:
        *p++ = (char) PB_TAG(4, PB_I64);
        d = (double) a->i / 1000.0;
        memcpy(&u, &d, 8);
        p = pb_fixed64(p, u);
        break;

    case ATTR_TRUE:
        *p++ = (char) PB_TAG(2, PB_VARINT);
        *p++ = 1;
        break;

    default:
        *p++ = (char) PB_TAG(5, PB_LEN);
        p = pb_varint(p, arr);

        for (line = a->s, end = a->s + a->len; ; line = nl + 1) {
            nl = memchr(line, '\n', end - line);
            n = (nl ? nl : end) - line;
            slen = a->clean ? n : utf8_len(line, n);
            elem = pb_len_field_size(slen);

            *p++ = (char) PB_TAG(1, PB_LEN);
            p = pb_varint(p, elem);
            p = pb_string(p, PB_TAG(1, PB_LEN), line, n, slen);

            if (nl == NULL) {
                break;
            }
        }

        break;
    }

    b->len = p - b->data;
}

/*
 * Puts the length of the message that starts at body (held: width bytes
 * before it) and ends at b->len, moving the body if the number needs
 * another width.
 */
static void
pb_patch_len(vq_buf_t *b, size_t body, size_t width)
{
    size_t  len, need, slot;

    if (b->failed) {
        return;
    }

    len = b->len - body;
    need = pb_varint_size(len);
    slot = body - width;

    if (need != width) {
        if (need > width && vq_buf_reserve(b, need - width) != VQ_OK) {
            return;
        }

        memmove(b->data + slot + need, b->data + body, len);
        b->len = slot + need + len;
    }

    pb_varint(b->data + slot, len);
}

/* a span, as ScopeSpans.spans (field 2) */
static void
pb_span(vq_buf_t *b, const otlp_span_t *o)
{
    const vq_span_head_t  *h = &o->span->h;
    size_t                 name_len, ts_len, msg_len, status_len, body, i;
    char                  *p;

    name_len = o->name_clean ? o->name_len : utf8_len(o->name, o->name_len);
    ts_len = o->tracestate ? utf8_len(o->tracestate, o->tracestate_len) : 0;

    /*
     * tag and 2 bytes held for the length, the ids, tracestate, name (a
     * string's tag and length take 3 bytes or less: it is under 16 KB),
     * kind, times
     */
    if (vq_buf_reserve(b, 3 + 18 + 10 + 3 + ts_len + 10 + 3 + name_len + 2
                          + 18)
        != VQ_OK)
    {
        return;
    }

    p = b->data + b->len;
    *p++ = (char) PB_TAG(2, PB_LEN);
    p += 2;
    body = p - b->data;

    *p++ = (char) PB_TAG(1, PB_LEN);
    *p++ = VQ_TRACE_ID_SIZE;
    p = put(p, (const char *) h->trace_id, VQ_TRACE_ID_SIZE);

    *p++ = (char) PB_TAG(2, PB_LEN);
    *p++ = VQ_SPAN_ID_SIZE;
    p = put(p, (const char *) h->span_id, VQ_SPAN_ID_SIZE);

    if (o->tracestate) {
        p = pb_string(p, PB_TAG(3, PB_LEN), o->tracestate, o->tracestate_len,
                      ts_len);
    }

    if (h->flags & VQ_SPAN_HAS_PARENT) {
        *p++ = (char) PB_TAG(4, PB_LEN);
        *p++ = VQ_SPAN_ID_SIZE;
        p = put(p, (const char *) h->parent_span_id, VQ_SPAN_ID_SIZE);
    }

    /* zero values are left out, so that the body is canonical protobuf */
    if (name_len) {
        p = pb_string(p, PB_TAG(5, PB_LEN), o->name, o->name_len, name_len);
    }

    *p++ = (char) PB_TAG(6, PB_VARINT);
    *p++ = (char) o->kind;

    if (o->start_ns) {
        *p++ = (char) PB_TAG(7, PB_I64);
        p = pb_fixed64(p, o->start_ns);
    }

    if (o->end_ns) {
        *p++ = (char) PB_TAG(8, PB_I64);
        p = pb_fixed64(p, o->end_ns);
    }

    b->len = p - b->data;

    for (i = 0; i < o->nattrs; i++) {
        pb_attr(b, PB_TAG(9, PB_LEN), &o->attrs[i]);
    }

    /* status (15), then flags (16: a two-byte tag) */
    msg_len = o->message ? strlen(o->message) : 0;
    status_len = (msg_len ? pb_len_field_size(msg_len) : 0) + 2;

    if (vq_buf_reserve(b, 1 + pb_varint_size(status_len) + status_len + 2 + 4)
        != VQ_OK)
    {
        return;
    }

    p = b->data + b->len;

    if (o->error) {
        *p++ = (char) PB_TAG(15, PB_LEN);
        p = pb_varint(p, status_len);

        if (msg_len) {
            p = pb_string(p, PB_TAG(2, PB_LEN), o->message, msg_len, msg_len);
        }

        *p++ = (char) PB_TAG(3, PB_VARINT);
        *p++ = OTLP_STATUS_ERROR;
    }

    p = pb_varint(p, PB_TAG(16, PB_I32));
    for (i = 0; i < 4; i++) {
        *p++ = (char) (o->flags >> (8 * i));
    }

    b->len = p - b->data;

    pb_patch_len(b, body, 2);
}

/*
 * What comes before the first span:
 *
 *   ExportTraceServiceRequest.resource_spans (1) {
 *     ResourceSpans.resource (1) { Resource }
 *     ResourceSpans.scope_spans (2) {
 *       ScopeSpans.scope (1) { InstrumentationScope }
 *       ... the spans
 *
 * written at p when p is not NULL; returns its size.
 */
static size_t
pb_head(char *p, const vq_buf_t *resource, const vq_buf_t *scope,
    size_t spans_len)
{
    size_t  scope_spans, resource_spans;

    scope_spans = pb_len_field_size(scope->len) + spans_len;
    resource_spans = pb_len_field_size(resource->len)
                     + 1 + pb_varint_size(scope_spans) + scope_spans;

    if (p != NULL) {
        *p++ = (char) PB_TAG(1, PB_LEN);
        p = pb_varint(p, resource_spans);
        p = pb_string(p, PB_TAG(1, PB_LEN), resource->data, resource->len,
                      resource->len);
        *p++ = (char) PB_TAG(2, PB_LEN);
        p = pb_varint(p, scope_spans);
        pb_string(p, PB_TAG(1, PB_LEN), scope->data, scope->len, scope->len);
    }

    return 1 + pb_varint_size(resource_spans) + resource_spans
           - spans_len;
}

/* about what a record takes as protobuf, for the room held for the head */
#define PB_SPAN_ESTIMATE(span)  ((size_t) (span)->h.size + 256)

int
vq_encode_otlp_proto(vq_buf_t *b, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n)
{
    otlp_attr_t   *attrs;
    otlp_span_t   *o;
    vq_buf_t       resource, scope;
    size_t         nattrs, i, base, start, held, head, estimate;
    int            encoded;

    o = malloc(sizeof(otlp_span_t));
    attrs = resource_attrs_alloc(res, &nattrs);

    if (o == NULL || attrs == NULL) {
        free(o);
        free(attrs);
        return VQ_ENOMEM;
    }

    /* the Resource and InstrumentationScope messages, once per batch */
    vq_buf_init(&resource);
    vq_buf_init(&scope);

    for (i = 0; i < nattrs; i++) {
        pb_attr(&resource, PB_TAG(1, PB_LEN), &attrs[i]);
    }

    if (vq_buf_reserve(&scope, 2 * 2 + sizeof(OTLP_SCOPE_NAME)
                               + sizeof(VQ_VERSION))
        == VQ_OK)
    {
        scope.len = pb_string(scope.data, PB_TAG(1, PB_LEN),
                              LIT(OTLP_SCOPE_NAME), sizeof(OTLP_SCOPE_NAME) - 1)
                    - scope.data;
        scope.len = pb_string(scope.data + scope.len, PB_TAG(2, PB_LEN),
                              LIT(VQ_VERSION), sizeof(VQ_VERSION) - 1)
                    - scope.data;
    }

    if (resource.failed || scope.failed) {
        b->failed = 1;
    }

    estimate = 0;
    for (i = 0; i < n; i++) {
        estimate += PB_SPAN_ESTIMATE(spans[i]);
    }

    base = b->len;
    held = pb_head(NULL, &resource, &scope, estimate);

    encoded = 0;

    if (vq_buf_reserve(b, held) == VQ_OK) {
        b->len += held;
        start = b->len;

        for (i = 0; i < n; i++) {
            if (vq_span_validate(spans[i], VQ_SPAN_RECORD_MAX) != VQ_OK) {
                continue;
            }

            map_span(o, spans[i]);
            pb_span(b, o);
            encoded++;
        }

        head = pb_head(NULL, &resource, &scope, b->len - start);

        if (head != held
            && (head < held || vq_buf_reserve(b, head - held) == VQ_OK))
        {
            /* the estimate put a length in the wrong width band */
            memmove(b->data + base + head, b->data + start, b->len - start);
            b->len = b->len - held + head;
        }

        if (!b->failed) {
            pb_head(b->data + base, &resource, &scope,
                    b->len - base - head);
        }
    }

    vq_buf_free(&resource);
    vq_buf_free(&scope);
    free(attrs);
    free(o);

    return b->failed ? VQ_ENOMEM : encoded;
}


/* JSON */

/* the array's strings, one per line: a"},{"stringValue":"b */
static void
json_lines(vq_buf_t *b, const char *s, size_t len)
{
    const char  *nl, *end;

    for (end = s + len; ; s = nl + 1) {
        nl = memchr(s, '\n', end - s);
        json_text(b, s, (nl ? nl : end) - s);

        if (nl == NULL) {
            return;
        }

        append(b, LIT("\"},{\"stringValue\":\""));
    }
}

static void
json_attr(vq_buf_t *b, const otlp_attr_t *a)
{
    char  *p;

    /* nearly always: a constant key and a value copied as it is */
    if (a->json
        && ((a->type != ATTR_STR && a->type != ATTR_STR_ARRAY)
            || vq_json_plain(a->s, a->len))
        && vq_buf_reserve(b, a->json_len + a->len + 32) == VQ_OK)
    {
        p = put(b->data + b->len, a->json, a->json_len);

        switch (a->type) {
        case ATTR_STR:
        case ATTR_STR_ARRAY:
            p = put(p, a->s, a->len);
            break;

        case ATTR_INT:
            p = put_int(p, a->i);
            break;

        case ATTR_MILLI:
            p = put_milli(p, a->i);
            break;
        }

        p = put(p, json_type[a->type].end, json_type[a->type].end_len);
        b->len = p - b->data;
        return;
    }

    if (a->json) {
        append(b, a->json, a->json_len);

    } else {
        append(b, LIT("{\"key\":\""));

        if (a->key_raw) {
            json_text(b, a->key, a->klen);
        } else {
            append(b, a->key, a->klen);
        }

        append(b, json_type[a->type].middle, json_type[a->type].middle_len);
    }

    switch (a->type) {
    case ATTR_STR:
        json_text(b, a->s, a->len);
        break;

    case ATTR_STR_ARRAY:
        json_lines(b, a->s, a->len);
        break;

    case ATTR_INT:
        append_int(b, a->i);
        break;

    case ATTR_MILLI:
        vq_json_milli(b, a->i);
        break;
    }

    append(b, json_type[a->type].end, json_type[a->type].end_len);
}

static void
json_attrs(vq_buf_t *b, const otlp_attr_t *attrs, size_t n)
{
    size_t  i;

    append(b, LIT("["));

    for (i = 0; i < n; i++) {
        if (i > 0) {
            append(b, LIT(","));
        }
        json_attr(b, &attrs[i]);
    }

    append(b, LIT("]"));
}

/* prefix, then the id in hex and a closing quote */
static void
json_id(vq_buf_t *b, const char *prefix, size_t prefix_len,
    const uint8_t *id, size_t size)
{
    if (vq_buf_reserve(b, prefix_len + 2 * size + 1) != VQ_OK) {
        return;
    }

    put(b->data + b->len, prefix, prefix_len);
    b->len += prefix_len;
    vq_id_to_hex(id, size, b->data + b->len);
    b->len += 2 * size;
    b->data[b->len++] = '"';
}

static void
json_span(vq_buf_t *b, const otlp_span_t *o)
{
    const vq_span_head_t  *h = &o->span->h;

    json_id(b, LIT("{\"traceId\":\""), h->trace_id, VQ_TRACE_ID_SIZE);
    json_id(b, LIT(",\"spanId\":\""), h->span_id, VQ_SPAN_ID_SIZE);

    if (o->tracestate) {
        append(b, LIT(",\"traceState\":\""));
        json_text(b, o->tracestate, o->tracestate_len);
        append(b, LIT("\""));
    }

    if (h->flags & VQ_SPAN_HAS_PARENT) {
        json_id(b, LIT(",\"parentSpanId\":\""), h->parent_span_id,
                VQ_SPAN_ID_SIZE);
    }

    append(b, LIT(",\"flags\":"));
    append_int(b, o->flags);

    append(b, LIT(",\"name\":\""));
    json_text(b, o->name, o->name_len);

    /* enums are integers in OTLP JSON */
    if (o->kind == OTLP_KIND_SERVER) {
        append(b, LIT("\",\"kind\":2,\"startTimeUnixNano\":\""));
    } else {
        append(b, LIT("\",\"kind\":3,\"startTimeUnixNano\":\""));
    }

    /* fixed64 is a decimal string too */
    append_int(b, (int64_t) o->start_ns);
    append(b, LIT("\",\"endTimeUnixNano\":\""));
    append_int(b, (int64_t) o->end_ns);
    append(b, LIT("\",\"attributes\":"));
    json_attrs(b, o->attrs, o->nattrs);

    if (o->error) {
        append(b, LIT(",\"status\":{"));

        if (o->message) {
            append(b, LIT("\"message\":"));
            vq_json_cstring(b, o->message);
            append(b, LIT(","));
        }

        append(b, LIT("\"code\":2}"));
    }

    append(b, LIT("}"));
}

int
vq_encode_otlp_json(vq_buf_t *b, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n)
{
    otlp_attr_t  *attrs;
    otlp_span_t  *o;
    size_t        nattrs, i;
    int           encoded;

    o = malloc(sizeof(otlp_span_t));
    attrs = resource_attrs_alloc(res, &nattrs);

    if (o == NULL || attrs == NULL) {
        free(o);
        free(attrs);
        return VQ_ENOMEM;
    }

    append(b, LIT("{\"resourceSpans\":[{\"resource\":{\"attributes\":"));
    json_attrs(b, attrs, nattrs);
    append(b, LIT("},\"scopeSpans\":[{\"scope\":{\"name\":\""
                  OTLP_SCOPE_NAME "\",\"version\":"));
    vq_json_cstring(b, VQ_VERSION);
    append(b, LIT("},\"spans\":["));

    encoded = 0;

    for (i = 0; i < n; i++) {
        if (vq_span_validate(spans[i], VQ_SPAN_RECORD_MAX) != VQ_OK) {
            continue;
        }

        if (encoded++) {
            append(b, LIT(","));
        }

        map_span(o, spans[i]);
        json_span(b, o);
    }

    append(b, LIT("]}]}]}"));

    free(attrs);
    free(o);

    return b->failed ? VQ_ENOMEM : encoded;
}
