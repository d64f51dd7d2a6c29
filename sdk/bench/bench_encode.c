/*
 * How fast the encoders turn records into bodies, on one core: spans per
 * second of CPU time and bytes per span, for the Vaquero batch JSON, OTLP
 * protobuf and OTLP JSON, on batches of realistic records (a proxied
 * request: a server span and its upstream attempt).
 *
 *   bench_encode [seconds per round (0.3)] [rounds (5)] [batch size (100)]
 *
 * Rounds interleave the encoders; the median round is reported.
 *
 * Built with -DVQ_BENCH_PROTOBUF_C (and protoc-c's code for
 * sdk/tests/otlp_trace.proto, -lprotobuf-c), it also times libprotobuf-c
 * making the same OTLP protobuf from the same records (structs filled
 * from the records, then get_packed_size and pack), and checks that its
 * bytes equal ours:
 *
 *   protoc-c -Isdk/tests --c_out=DIR otlp_trace.proto
 *   cc -O2 -Isdk/include -IDIR -DVQ_BENCH_PROTOBUF_C sdk/bench/bench_encode.c \
 *      DIR/otlp_trace.pb-c.c SDK_SRCS -lprotobuf-c -lcurl -ljansson -lpthread
 *
 * (libprotobuf-c-dev and protobuf-c-compiler; SDK_SRCS: the sdk/src files)
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vaquero/vaquero.h>

#define set(s, f, v)  vq_span_set_str(s, f, v, strlen(v))

static double
cpu_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* a request the README shows: a browser's GET through nginx to FastAPI */
static void
make_server(vq_idgen_t *g, vq_span_t *s, size_t i)
{
    char  path[64], rid[48];

    vq_span_init(s, VQ_SPAN_SERVER);
    vq_trace_id_generate(g, s->h.trace_id);
    vq_span_id_generate(g, s->h.span_id);
    s->h.trace_flags = 0x01;
    s->h.flags = VQ_SPAN_SAMPLED;

    if (i % 2) {
        /* continuing the client's traceparent */
        vq_span_id_generate(g, s->h.parent_span_id);
        s->h.flags |= VQ_SPAN_HAS_PARENT;
    }

    s->h.start_us = 1795755826000000LL + (int64_t) i * 37;
    s->h.end_us = s->h.start_us + 1484;
    s->h.status_code = 200;
    s->h.request_body_size = 0;
    s->h.response_body_size = 5120;
    s->h.client_port = 39072;
    s->h.server_port = 80;

    snprintf(path, sizeof(path), "/api/items/%zu", 1000 + i);
    snprintf(rid, sizeof(rid), "83ddb4179d67f87e64843f5c1e%06x",
             (unsigned) (i & 0xffffff));

    set(s, VQ_FIELD_METHOD, "GET");
    set(s, VQ_FIELD_ROUTE, "/api/");
    set(s, VQ_FIELD_CLIENT_ADDRESS, "203.0.113.7");
    set(s, VQ_FIELD_PROTOCOL_VERSION, "1.1");
    set(s, VQ_FIELD_REQUEST_ID, rid);
    set(s, VQ_FIELD_SCHEME, "http");
    set(s, VQ_FIELD_HOST, "api.example.com");
    set(s, VQ_FIELD_PATH, path);
    set(s, VQ_FIELD_QUERY, "page=2&sort=desc");
    set(s, VQ_FIELD_USER_AGENT, "Mozilla/5.0 (X11; Linux x86_64) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
        "Safari/537.36");
    set(s, VQ_FIELD_CONTENT_TYPE, "application/json");
    vq_span_add_attr(s, "user.id", 7, "u-17", 4);
}

static void
make_client(vq_idgen_t *g, vq_span_t *c, const vq_span_t *server)
{
    vq_span_init(c, VQ_SPAN_CLIENT);
    memcpy(c->h.trace_id, server->h.trace_id, VQ_TRACE_ID_SIZE);
    vq_span_id_generate(g, c->h.span_id);
    memcpy(c->h.parent_span_id, server->h.span_id, VQ_SPAN_ID_SIZE);
    c->h.trace_flags = server->h.trace_flags;
    c->h.flags = VQ_SPAN_SAMPLED | VQ_SPAN_HAS_PARENT;
    c->h.start_us = server->h.start_us + 80;
    c->h.end_us = server->h.end_us - 60;
    c->h.status_code = 200;
    c->h.attempt = 1;
    c->h.connect_ms = 0;
    c->h.header_ms = 1;
    c->h.request_body_size = 412;
    c->h.response_body_size = 5321;
    c->h.server_port = 8000;

    set(c, VQ_FIELD_METHOD, "GET");
    set(c, VQ_FIELD_ROUTE, "fastapi");
    set(c, VQ_FIELD_HOST, "10.0.0.5");
}

typedef int (*encoder_t)(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n);

#ifdef VQ_BENCH_PROTOBUF_C
static int encode_protobuf_c(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n);
#endif

static const struct {
    const char  *name;
    encoder_t    encode;
} encoders[] = {
    { "vaquero batch JSON", vq_encode_vaquero_batch },
    { "OTLP protobuf", vq_encode_otlp_proto },
    { "OTLP JSON", vq_encode_otlp_json },
#ifdef VQ_BENCH_PROTOBUF_C
    { "OTLP protobuf, libprotobuf-c", encode_protobuf_c },
#endif
};

#define NENCODERS  (sizeof(encoders) / sizeof(encoders[0]))

static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}

static void
bench(const char *what, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n, double seconds, int rounds)
{
    double    rate[NENCODERS][16], start, t;
    size_t    bytes[NENCODERS], e, batches;
    vq_buf_t  b;
    int       r;

    vq_buf_init(&b);

    for (e = 0; e < NENCODERS; e++) {
        vq_buf_reset(&b);
        if (encoders[e].encode(&b, res, spans, n) != (int) n) {
            fprintf(stderr, "%s failed\n", encoders[e].name);
            exit(1);
        }
        bytes[e] = b.len;
    }

    for (r = 0; r < rounds; r++) {
        for (e = 0; e < NENCODERS; e++) {
            batches = 0;
            start = cpu_now();

            do {
                vq_buf_reset(&b);
                encoders[e].encode(&b, res, spans, n);
                batches++;
                t = cpu_now() - start;
            } while (t < seconds);

            rate[e][r] = batches * n / t;
        }
    }

    printf("%s, batches of %zu:\n", what, n);

    for (e = 0; e < NENCODERS; e++) {
        qsort(rate[e], rounds, sizeof(double), cmp_double);
        printf("  %-30s %10.0f spans/s  %6.3f us/span  %5zu bytes/span\n",
               encoders[e].name, rate[e][rounds / 2],
               1e6 / rate[e][rounds / 2], bytes[e] / n);
    }

    vq_buf_free(&b);
}

int
main(int argc, char **argv)
{
    const vq_span_t  **mixed, **server;
    vq_resource_t      res;
    vq_idgen_t        *g;
    vq_span_t         *recs;
    double             seconds;
    size_t             n, i;
    int                rounds;

    seconds = argc > 1 ? atof(argv[1]) : 0.3;
    rounds = argc > 2 ? atoi(argv[2]) : 5;
    n = argc > 3 ? (size_t) atol(argv[3]) : 100;

    if (rounds < 1 || rounds > 16 || n < 2 || seconds <= 0) {
        fprintf(stderr, "usage: bench_encode [seconds] [rounds 1-16] "
                "[batch size]\n");
        return 1;
    }

    memset(&res, 0, sizeof(res));
    res.service_name = "nginx";
    res.project_id = "my-project";
    res.environment = "production";
    res.hostname = "web-1";
    res.sdk_version = VQ_VERSION;

    g = vq_idgen_create();
    recs = malloc(2 * n * sizeof(vq_span_t));
    mixed = malloc(n * sizeof(vq_span_t *));
    server = malloc(n * sizeof(vq_span_t *));

    if (g == NULL || recs == NULL || mixed == NULL || server == NULL) {
        return 1;
    }

    for (i = 0; i < n; i++) {
        make_server(g, &recs[i], i);
        make_client(g, &recs[n + i], &recs[i]);
        server[i] = &recs[i];
    }

    /* each request's server span and its upstream attempt */
    for (i = 0; i < n; i++) {
        mixed[i] = i % 2 ? &recs[n + i - 1] : &recs[i];
    }

#ifdef VQ_BENCH_PROTOBUF_C
    {
        vq_buf_t  ours, theirs;

        vq_buf_init(&ours);
        vq_buf_init(&theirs);
        vq_encode_otlp_proto(&ours, &res, mixed, n);
        encode_protobuf_c(&theirs, &res, mixed, n);

        if (ours.len != theirs.len
            || memcmp(ours.data, theirs.data, ours.len) != 0)
        {
            fprintf(stderr, "libprotobuf-c made other bytes: %zu, ours %zu\n",
                    theirs.len, ours.len);
            return 1;
        }

        printf("libprotobuf-c made the same %zu bytes\n", ours.len);
        vq_buf_free(&ours);
        vq_buf_free(&theirs);
    }
#endif

    bench("server and client spans (a proxied request)", &res, mixed, n,
          seconds, rounds);
    bench("server spans", &res, server, n, seconds, rounds);

    free(mixed);
    free(server);
    free(recs);
    vq_idgen_destroy(g);

    return 0;
}


#ifdef VQ_BENCH_PROTOBUF_C

/*
 * The same message through libprotobuf-c: what an encoder built on it has
 * to do.  Its strings are NUL-terminated, so each is copied (repaired)
 * into an arena; structs are filled from the records with the mapping of
 * encode_otlp.c (the parts these records use: the bytes are compared);
 * then get_packed_size() and pack().  Memory comes from arenas kept
 * between batches, which favours it over a malloc per struct.
 */

#include <protobuf-c/protobuf-c.h>
#include "otlp_trace.pb-c.h"
#include "../src/json.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
    pb_request_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ResourceSpans
    pb_resource_spans_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__Resource  pb_resource_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ScopeSpans
    pb_scope_spans_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__InstrumentationScope
    pb_scope_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__Span      pb_span_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__KeyValue  pb_kv_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__AnyValue  pb_any_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ArrayValue
    pb_array_t;

#define PB(name)  OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__ ## name
#define pb_fn(name)  opentelemetry__proto__collector__trace__v1__ ## name

#define ARENA_ATTRS  32

typedef struct {
    size_t        n;
    char         *str;
    size_t        str_used, str_cap;
    pb_span_t    *spans;
    pb_span_t   **span_ptrs;
    pb_kv_t      *kvs;
    pb_kv_t     **kv_ptrs;
    pb_any_t     *anys;
    pb_array_t   *arrays;
    pb_any_t     *items;
    pb_any_t    **item_ptrs;
    size_t        nkv;
} arena_t;

static arena_t  arena;

static char *
a_str(const char *s, size_t len)
{
    char    *p;
    size_t   n;

    n = vq_utf8_repaired_len(s, len);
    p = arena.str + arena.str_used;
    if (n == len) {
        memcpy(p, s, len);
    } else {
        vq_utf8_repair(p, s, len);
    }
    p[n] = '\0';
    arena.str_used += n + 1;

    return p;
}

static char *
a_field(const vq_span_t *span, vq_span_field_t f)
{
    const char  *s;
    size_t       len;

    s = vq_span_str(span, f, &len);
    return a_str(s, len);
}

static pb_kv_t *
a_kv(const char *key)
{
    pb_kv_t   *kv = &arena.kvs[arena.nkv];
    pb_any_t  *any = &arena.anys[arena.nkv];

    pb_fn(key_value__init)(kv);
    pb_fn(any_value__init)(any);
    kv->key = (char *) key;
    kv->value = any;
    arena.kv_ptrs[arena.nkv++] = kv;

    return kv;
}

static void
kv_str(const char *key, char *v)
{
    pb_kv_t  *kv = a_kv(key);

    kv->value->value_case = PB(ANY_VALUE__VALUE_STRING_VALUE);
    kv->value->string_value = v;
}

static void
kv_int(const char *key, int64_t v)
{
    pb_kv_t  *kv = a_kv(key);

    kv->value->value_case = PB(ANY_VALUE__VALUE_INT_VALUE);
    kv->value->int_value = v;
}

static void
kv_field(const char *key, const vq_span_t *span, vq_span_field_t f)
{
    if (span->h.str[f].off != 0) {
        kv_str(key, a_field(span, f));
    }
}

static uint64_t
ns(int64_t us)
{
    return us > 0 ? (uint64_t) us * 1000 : 0;
}

static void
fill_span(pb_span_t *p, const vq_span_t *span, size_t i)
{
    const vq_span_head_t  *h = &span->h;
    pb_array_t            *arr;
    pb_any_t              *item;
    pb_kv_t               *kv;
    char                   url[1024], name[256];
    const char            *s;
    size_t                 len, first, k;

    pb_fn(span__init)(p);
    p->trace_id.data = (uint8_t *) h->trace_id;
    p->trace_id.len = VQ_TRACE_ID_SIZE;
    p->span_id.data = (uint8_t *) h->span_id;
    p->span_id.len = VQ_SPAN_ID_SIZE;

    if (h->flags & VQ_SPAN_HAS_PARENT) {
        p->parent_span_id.data = (uint8_t *) h->parent_span_id;
        p->parent_span_id.len = VQ_SPAN_ID_SIZE;
    }

    if (h->str[VQ_FIELD_TRACESTATE].len) {
        p->trace_state = a_field(span, VQ_FIELD_TRACESTATE);
    }

    s = vq_span_str(span, VQ_FIELD_METHOD, &len);
    len = vq_utf8_repair(name, s, len);
    name[len++] = ' ';
    s = vq_span_str(span, VQ_FIELD_ROUTE, &k);
    len += vq_utf8_repair(name + len, s, k);
    p->name = a_str(name, len);

    p->flags = h->trace_flags | 0x100;
    p->start_time_unix_nano = ns(h->start_us);
    p->end_time_unix_nano = ns(h->end_us);
    first = arena.nkv;

    if (h->kind == VQ_SPAN_SERVER) {
        p->kind = PB(SPAN__SPAN_KIND__SPAN_KIND_SERVER);
        if (h->flags & VQ_SPAN_HAS_PARENT) {
            p->flags |= 0x200;
        }

        kv_field("http.request.method", span, VQ_FIELD_METHOD);
        len = snprintf(url, sizeof(url), "%s://%s",
                       a_field(span, VQ_FIELD_SCHEME),
                       a_field(span, VQ_FIELD_HOST));
        if (h->server_port != 80) {
            len += snprintf(url + len, sizeof(url) - len, ":%u",
                            h->server_port);
        }
        len += snprintf(url + len, sizeof(url) - len, "%s?%s",
                        a_field(span, VQ_FIELD_PATH),
                        a_field(span, VQ_FIELD_QUERY));
        kv_str("url.full", a_str(url, len));
        kv_field("url.path", span, VQ_FIELD_PATH);
        kv_field("url.query", span, VQ_FIELD_QUERY);
        kv_field("url.scheme", span, VQ_FIELD_SCHEME);
        kv_field("http.route", span, VQ_FIELD_ROUTE);
        kv_int("http.response.status_code", h->status_code);
        kv_int("http.request.body.size", h->request_body_size);
        kv_int("http.response.body.size", h->response_body_size);
        kv_field("user_agent.original", span, VQ_FIELD_USER_AGENT);

        kv = a_kv("http.request.header.content-type");
        arr = &arena.arrays[i];
        item = &arena.items[i];
        pb_fn(array_value__init)(arr);
        pb_fn(any_value__init)(item);
        item->value_case = PB(ANY_VALUE__VALUE_STRING_VALUE);
        item->string_value = a_field(span, VQ_FIELD_CONTENT_TYPE);
        arena.item_ptrs[i] = item;
        arr->n_values = 1;
        arr->values = &arena.item_ptrs[i];
        kv->value->value_case = PB(ANY_VALUE__VALUE_ARRAY_VALUE);
        kv->value->array_value = arr;

        kv_field("client.address", span, VQ_FIELD_CLIENT_ADDRESS);
        kv_int("client.port", h->client_port);
        kv_field("server.address", span, VQ_FIELD_HOST);
        kv_int("server.port", h->server_port);
        kv_field("network.protocol.version", span,
                 VQ_FIELD_PROTOCOL_VERSION);
        kv_field("http.request.id", span, VQ_FIELD_REQUEST_ID);

    } else {
        p->kind = PB(SPAN__SPAN_KIND__SPAN_KIND_CLIENT);

        kv_field("server.address", span, VQ_FIELD_HOST);
        kv_int("server.port", h->server_port);
        kv_field("http.request.method", span, VQ_FIELD_METHOD);
        kv_int("http.response.status_code", h->status_code);
        kv_field("nginx.upstream.name", span, VQ_FIELD_ROUTE);
        kv_int("nginx.upstream.attempt", h->attempt);
        kv_int("nginx.upstream.connect_time_ms", h->connect_ms);
        kv_int("nginx.upstream.header_time_ms", h->header_ms);
        kv = a_kv("nginx.upstream.response_time_ms");
        kv->value->value_case = PB(ANY_VALUE__VALUE_DOUBLE_VALUE);
        kv->value->double_value = (double) (h->end_us - h->start_us) / 1000.0;
        kv_int("nginx.upstream.bytes_sent", h->request_body_size);
        kv_int("nginx.upstream.bytes_received", h->response_body_size);
    }

    for (k = 0; k < h->nattrs; k++) {
        s = vq_span_attr_key(span, k, &len);
        kv = a_kv(a_str(s, len));
        s = vq_span_attr_value(span, k, &len);
        kv->value->value_case = PB(ANY_VALUE__VALUE_STRING_VALUE);
        kv->value->string_value = a_str(s, len);
    }

    p->n_attributes = arena.nkv - first;
    p->attributes = &arena.kv_ptrs[first];
}

static int
encode_protobuf_c(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n)
{
    pb_request_t          req = PB(EXPORT_TRACE_SERVICE_REQUEST__INIT);
    pb_resource_spans_t   rs = PB(RESOURCE_SPANS__INIT), *rsp = &rs;
    pb_resource_t         resource = PB(RESOURCE__INIT);
    pb_scope_spans_t      ss = PB(SCOPE_SPANS__INIT), *ssp = &ss;
    pb_scope_t            scope = PB(INSTRUMENTATION_SCOPE__INIT);
    pb_kv_t             **res_attrs;
    size_t                i, size, nspans, first;

    if (arena.n < n) {
        arena.n = n;
        arena.str_cap = n * 8 * VQ_SPAN_RECORD_MAX;
        arena.str = realloc(arena.str, arena.str_cap);
        arena.spans = realloc(arena.spans, n * sizeof(pb_span_t));
        arena.span_ptrs = realloc(arena.span_ptrs, n * sizeof(pb_span_t *));
        arena.kvs = realloc(arena.kvs, (n + 1) * ARENA_ATTRS
                                        * sizeof(pb_kv_t));
        arena.kv_ptrs = realloc(arena.kv_ptrs, (n + 1) * ARENA_ATTRS
                                               * sizeof(pb_kv_t *));
        arena.anys = realloc(arena.anys, (n + 1) * ARENA_ATTRS
                                         * sizeof(pb_any_t));
        arena.arrays = realloc(arena.arrays, n * sizeof(pb_array_t));
        arena.items = realloc(arena.items, n * sizeof(pb_any_t));
        arena.item_ptrs = realloc(arena.item_ptrs, n * sizeof(pb_any_t *));

        if (arena.str == NULL || arena.spans == NULL
            || arena.span_ptrs == NULL || arena.kvs == NULL
            || arena.kv_ptrs == NULL || arena.anys == NULL
            || arena.arrays == NULL || arena.items == NULL
            || arena.item_ptrs == NULL)
        {
            return VQ_ENOMEM;
        }
    }

    arena.str_used = 0;
    arena.nkv = 0;

    /* the resource */
    kv_str("service.name", a_str(res->service_name,
                                 strlen(res->service_name)));
    kv_str("host.name", a_str(res->hostname, strlen(res->hostname)));
    kv_str("vaquero.project_id", a_str(res->project_id,
                                       strlen(res->project_id)));
    kv_str("deployment.environment.name",
           a_str(res->environment, strlen(res->environment)));
    res_attrs = arena.kv_ptrs;
    resource.n_attributes = arena.nkv;
    resource.attributes = res_attrs;

    scope.name = "ngx_vaquero_module";
    scope.version = VQ_VERSION;

    nspans = 0;
    for (i = 0; i < n; i++) {
        if (vq_span_validate(spans[i], VQ_SPAN_RECORD_MAX) != VQ_OK) {
            continue;
        }

        first = nspans;
        fill_span(&arena.spans[first], spans[i], first);
        arena.span_ptrs[nspans++] = &arena.spans[first];
    }

    ss.scope = &scope;
    ss.n_spans = nspans;
    ss.spans = arena.span_ptrs;
    rs.resource = &resource;
    rs.n_scope_spans = 1;
    rs.scope_spans = &ssp;
    req.n_resource_spans = 1;
    req.resource_spans = &rsp;

    size = pb_fn(export_trace_service_request__get_packed_size)(&req);
    if (vq_buf_reserve(out, size) != VQ_OK) {
        return VQ_ENOMEM;
    }

    out->len += pb_fn(export_trace_service_request__pack)(
                    &req, (uint8_t *) out->data + out->len);

    return (int) nspans;
}

#endif /* VQ_BENCH_PROTOBUF_C */
