/*
 * Proves the sink of `make bench` counts exactly: bodies made by the
 * SDK's own encoders (Vaquero batch, OTLP protobuf, OTLP JSON), of known
 * numbers of spans, with strings made to mislead a scanner (quotes,
 * backslashes, brackets, keys named "traces" or "spans", invalid UTF-8),
 * plain and gzipped, must count to exactly what was encoded; and every
 * strict prefix of a body must be refused rather than counted short.
 *
 *   bench_sink_check          exit status 0 when every count is exact
 */

#define VQ_SINK_NO_MAIN
#include "bench_sink.c"

#include <vaquero/vaquero.h>

#define set(s, f, v)  vq_span_set_str(s, f, v, strlen(v))

static int  failures;

static void
make_span(vq_idgen_t *g, vq_span_t *s, size_t i, const vq_span_t *parent)
{
    static const char  *nasty[] = {
        "/a\"b\\c/{[\"traces\":[{}]}]",
        "\\",
        "\\\\\"",
        "\"},{\"spans\":[{\"x\":1}],\"agents\":[{",
        "caf\xc3\xa9 \xff\xfe bad utf-8 \x01\x02",
        "resourceSpans",
    };
    char  path[128];

    vq_span_init(s, parent ? VQ_SPAN_CLIENT : VQ_SPAN_SERVER);
    vq_trace_id_generate(g, s->h.trace_id);
    vq_span_id_generate(g, s->h.span_id);
    s->h.trace_flags = 0x01;
    s->h.flags = VQ_SPAN_SAMPLED;
    s->h.start_us = 1795755826000000LL + (int64_t) i * 37;
    s->h.end_us = s->h.start_us + 1484;
    s->h.status_code = i % 7 ? 200 : 502;

    if (parent) {
        memcpy(s->h.trace_id, parent->h.trace_id, VQ_TRACE_ID_SIZE);
        memcpy(s->h.parent_span_id, parent->h.span_id, VQ_SPAN_ID_SIZE);
        s->h.flags |= VQ_SPAN_HAS_PARENT;
        s->h.attempt = 1;
        set(s, VQ_FIELD_METHOD, "GET");
        set(s, VQ_FIELD_ROUTE, nasty[i % 6]);
        set(s, VQ_FIELD_HOST, "10.0.0.5");
        return;
    }

    if (i % 3 == 1) {
        /* a continued trace: an agent in a Vaquero batch */
        vq_span_id_generate(g, s->h.parent_span_id);
        s->h.flags |= VQ_SPAN_HAS_PARENT;
    }

    snprintf(path, sizeof(path), "/api/%zu%s", i, nasty[i % 6]);
    set(s, VQ_FIELD_METHOD, "GET");
    set(s, VQ_FIELD_ROUTE, nasty[(i + 1) % 6]);
    set(s, VQ_FIELD_SCHEME, "http");
    set(s, VQ_FIELD_HOST, "api.example.com");
    set(s, VQ_FIELD_PATH, path);
    set(s, VQ_FIELD_QUERY, nasty[(i + 2) % 6]);
    set(s, VQ_FIELD_USER_AGENT, nasty[(i + 3) % 6]);
    set(s, VQ_FIELD_CLIENT_ADDRESS, "203.0.113.7");
    vq_span_add_attr(s, "traces", 6, "[{\"a\":[{}]}]", 12);
    vq_span_add_attr(s, "spans", 5, nasty[(i + 4) % 6],
                     strlen(nasty[(i + 4) % 6]));
}

static long
count(int which, const char *body, size_t n)
{
    long  got;
    int   format;

    if (which == 1) {
        return sink_count_otlp_proto((const unsigned char *) body, n);
    }

    got = sink_count_json(body, n, &format);

    return got >= 0 && format != (which == 0 ? SINK_VAQUERO : SINK_OTLP_JSON)
           ? -2 : got;
}

static void
check(const char *what, int which, const char *body, size_t len, long want)
{
    char    *z, *out;
    uLongf   zlen;
    size_t   cap, i, step;
    long     got, n;

    got = count(which, body, len);
    if (got != want) {
        printf("FAIL %s: counted %ld, encoded %ld\n", what, got, want);
        failures++;
    }

    /* gzipped (zlib stream), as a sink that is sent Content-Encoding */
    zlen = compressBound(len);
    z = malloc(zlen);
    out = NULL;
    cap = 0;
    if (compress2((Bytef *) z, &zlen, (const Bytef *) body, len, 1) != Z_OK
        || (n = sink_inflate(z, zlen, &out, &cap)) != (long) len
        || count(which, out, n) != want)
    {
        printf("FAIL %s: gzipped\n", what);
        failures++;
    }
    free(z);
    free(out);

    /*
     * Every strict prefix is refused: all of them in small bodies, and in
     * big ones a sample and the last 16 (cut inside the closing brackets)
     */
    step = len > 8192 ? len / 32 : 1;
    for (i = 1; i < len; i += (i + 16 < len ? step : 1)) {
        got = count(which, body, i);
        if (got >= 0) {
            printf("FAIL %s: a prefix of %zu of %zu bytes counted %ld\n",
                   what, i, len, got);
            failures++;
            break;
        }
    }
}

int
main(void)
{
    static const size_t  sizes[] = { 1, 2, 3, 10, 100, 1000, 5000 };
    static const char   *names[] = { "vaquero", "otlp protobuf", "otlp json" };
    const vq_span_t    **ptrs;
    vq_resource_t        res;
    vq_idgen_t          *g;
    vq_span_t           *recs;
    vq_buf_t             b;
    size_t               s, i, n, max, checked;
    char                 what[64];
    int                  e, rc;

    max = 5000;
    g = vq_idgen_create();
    recs = malloc(max * sizeof(vq_span_t));
    ptrs = malloc(max * sizeof(vq_span_t *));

    /* server spans, every other one followed by its upstream attempt */
    for (i = 0; i < max; i++) {
        make_span(g, &recs[i], i, i % 2 ? &recs[i - 1] : NULL);
        ptrs[i] = &recs[i];
    }

    memset(&res, 0, sizeof(res));
    res.service_name = "nginx \"traces\": [";
    res.project_id = "p\\";
    res.environment = "production";
    res.hostname = "bench";
    res.sdk_version = VQ_VERSION;

    checked = 0;
    vq_buf_init(&b);

    for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        n = sizes[s];

        for (e = 0; e < 3; e++) {
            vq_buf_reset(&b);
            rc = e == 0 ? vq_encode_vaquero_batch(&b, &res, ptrs, n)
                 : e == 1 ? vq_encode_otlp_proto(&b, &res, ptrs, n)
                 : vq_encode_otlp_json(&b, &res, ptrs, n);

            if (rc != (int) n) {
                printf("FAIL %s encoded %d of %zu\n", names[e], rc, n);
                failures++;
                continue;
            }

            snprintf(what, sizeof(what), "%s, %zu spans", names[e], n);
            check(what, e, b.data, b.len, (long) n);
            checked++;
        }
    }

    vq_buf_free(&b);

    printf("bench_sink counts: %zu bodies of 1 to %zu spans in 3 formats, "
           "plain and gzipped, prefixes refused: %s\n", checked, max,
           failures ? "FAILED" : "exact");

    return failures ? 1 : 0;
}
