/*
 * The Vaquero batch encoder: its output parsed back with jansson and
 * compared field by field; arbitrary bytes must still give valid JSON.
 */

#include <stdlib.h>

#include <jansson.h>

#include <vaquero/vaquero.h>
#include "../src/json.h"
#include "check.h"

static const vq_resource_t  res = {
    .service_name = "nginx",
    .project_id = "proj-1",
    .environment = "production",
    .hostname = "host-a",
    .sdk_version = VQ_VERSION,
};

#define set(s, f, v)  vq_span_set_str(s, f, v, strlen(v))

static void
make_server_span(vq_span_t *s, uint8_t tid_fill, uint8_t sid_fill)
{
    vq_span_init(s, VQ_SPAN_SERVER);
    memset(s->h.trace_id, tid_fill, 16);
    memset(s->h.span_id, sid_fill, 8);
    s->h.trace_id[0] = 0x4b;
    s->h.start_us = 1795755826123456LL;     /* 2026-11-27T05:03:46.123456Z */
    s->h.end_us = s->h.start_us + 12345;
    s->h.status_code = 200;
    s->h.request_body_size = 11;
    s->h.response_body_size = 42;
    s->h.client_port = 51234;
    s->h.server_port = 8080;

    set(s, VQ_FIELD_NAME, "create item");
    set(s, VQ_FIELD_AGENT_NAME, "/api");
    set(s, VQ_FIELD_METHOD, "POST");
    set(s, VQ_FIELD_SCHEME, "http");
    set(s, VQ_FIELD_HOST, "example.test");
    set(s, VQ_FIELD_PATH, "/api/items");
    set(s, VQ_FIELD_QUERY, "a=1&b=\"2\"");
    set(s, VQ_FIELD_ROUTE, "/api");
    set(s, VQ_FIELD_USER_AGENT, "curl/7.88.1");
    set(s, VQ_FIELD_CONTENT_TYPE, "application/json");
    set(s, VQ_FIELD_CLIENT_ADDRESS, "127.0.0.1");
    set(s, VQ_FIELD_PROTOCOL_VERSION, "1.1");
    set(s, VQ_FIELD_REQUEST_ID, "0123456789abcdef0123456789abcdef");
    vq_span_add_attr(s, "team", 4, "edge", 4);
}

static json_t *
encode(const vq_span_t *const *spans, size_t n, int *count)
{
    json_error_t  err;
    json_t       *doc;
    vq_buf_t      b;

    vq_buf_init(&b);
    *count = vq_encode_vaquero_batch(&b, &res, spans, n);

    doc = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &err);
    if (doc == NULL) {
        fprintf(stderr, "invalid JSON (%s at %d): %.*s...\n", err.text,
                err.position, (int) (b.len < 300 ? b.len : 300), b.data);
    }

    vq_buf_free(&b);
    return doc;
}

static const char *
str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static long long
num(json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

static void
test_trace_item(void)
{
    const vq_span_t  *spans[1];
    vq_span_t         s;
    json_t           *doc, *t, *attrs, *meta, *tags;
    int               count;

    make_server_span(&s, 0x11, 0x22);
    spans[0] = &s;

    doc = encode(spans, 1, &count);
    CHECK(doc != NULL);
    if (doc == NULL) {
        return;
    }

    CHECK_INT(count, 1);
    CHECK_INT(json_object_size(doc), 3);
    CHECK_INT(json_array_size(json_object_get(doc, "traces")), 1);
    CHECK_INT(json_array_size(json_object_get(doc, "agents")), 0);
    CHECK_INT(json_array_size(json_object_get(doc, "dependencies")), 0);

    t = json_array_get(json_object_get(doc, "traces"), 0);
    CHECK_STR(str(t, "trace_id"), "4b111111-1111-1111-1111-111111111111");
    CHECK_STR(str(t, "name"), "create item");
    CHECK_STR(str(t, "status"), "completed");
    CHECK_STR(str(t, "start_time"), "2026-11-27T05:03:46.123456Z");
    CHECK_STR(str(t, "end_time"), "2026-11-27T05:03:46.135801Z");
    CHECK_INT(num(t, "duration_ms"), 12);
    CHECK_INT(num(t, "error_count"), 0);
    CHECK_STR(str(t, "environment"), "production");
    CHECK_STR(str(t, "hostname"), "host-a");
    CHECK_STR(str(t, "sdk_version"), VQ_VERSION);

    tags = json_object_get(t, "tags");
    CHECK_STR(str(tags, "team"), "edge");

    attrs = json_object_get(json_object_get(t, "raw_data"), "attributes");
    CHECK_STR(str(attrs, "method"), "POST");
    CHECK_STR(str(attrs, "url"),
              "http://example.test:8080/api/items?a=1&b=\"2\"");
    CHECK_STR(str(attrs, "url.path"), "/api/items");
    CHECK_STR(str(attrs, "url.query"), "a=1&b=\"2\"");
    CHECK_STR(str(attrs, "url.scheme"), "http");
    CHECK_STR(str(attrs, "route"), "/api");
    CHECK_INT(num(attrs, "status_code"), 200);
    CHECK_INT(num(attrs, "request_size_bytes"), 11);
    CHECK_INT(num(attrs, "response_size_bytes"), 42);
    CHECK_STR(str(attrs, "user_agent"), "curl/7.88.1");
    CHECK_STR(str(attrs, "content_type"), "application/json");
    CHECK_STR(str(attrs, "client_ip"), "127.0.0.1");
    CHECK_INT(num(attrs, "client_port"), 51234);
    CHECK_STR(str(attrs, "host"), "example.test");
    CHECK_INT(num(attrs, "server_port"), 8080);
    CHECK_STR(str(attrs, "http_version"), "1.1");
    CHECK_STR(str(attrs, "request_id"), "0123456789abcdef0123456789abcdef");
    CHECK(json_real_value(json_object_get(attrs, "response_time_ms"))
          == 12.345);

    meta = json_object_get(json_object_get(t, "raw_data"), "metadata");
    CHECK_STR(str(meta, "span_id"), "2222222222222222");
    CHECK(json_is_null(json_object_get(meta, "parent_span_id")));
    CHECK_STR(str(meta, "agent_name"), "/api");
    CHECK_STR(str(meta, "service_name"), "nginx");
    CHECK_STR(str(meta, "project_id"), "proj-1");

    json_decref(doc);
}

static void
test_agents_and_dependencies(void)
{
    const vq_span_t  *spans[4];
    vq_span_t         root, server, client, orphan;
    json_t           *doc, *agents, *deps, *a, *d;
    int               count;

    /* a root, a server span continuing a remote parent, its client child,
       and a client span whose parent is not in the batch */
    make_server_span(&root, 0x01, 0x01);

    make_server_span(&server, 0x02, 0x02);
    server.h.flags |= VQ_SPAN_HAS_PARENT | VQ_SPAN_ERROR;
    server.h.status_code = 502;
    memset(server.h.parent_span_id, 0xaa, 8);

    vq_span_init(&client, VQ_SPAN_CLIENT);
    memcpy(client.h.trace_id, server.h.trace_id, 16);
    memset(client.h.span_id, 0x03, 8);
    memcpy(client.h.parent_span_id, server.h.span_id, 8);
    client.h.flags |= VQ_SPAN_HAS_PARENT;
    client.h.start_us = server.h.start_us + 10;
    client.h.end_us = server.h.end_us - 10;
    client.h.status_code = 502;
    set(&client, VQ_FIELD_NAME, "upstream");

    orphan = client;
    memset(orphan.h.span_id, 0x04, 8);
    memset(orphan.h.parent_span_id, 0x05, 8);

    spans[0] = &root;
    spans[1] = &client;
    spans[2] = &server;
    spans[3] = &orphan;

    doc = encode(spans, 4, &count);
    CHECK(doc != NULL);
    if (doc == NULL) {
        return;
    }

    CHECK_INT(count, 4);
    CHECK_INT(json_array_size(json_object_get(doc, "traces")), 1);

    agents = json_object_get(doc, "agents");
    CHECK_INT(json_array_size(agents), 3);

    a = json_array_get(agents, 1);
    CHECK_STR(str(a, "agent_id"), "0202020202020202");
    /* as SDK 0.1: name and type are the agent name, the span name in raw_data */
    CHECK_STR(str(a, "name"), "/api");
    CHECK_STR(str(a, "type"), "/api");
    CHECK_STR(str(json_object_get(a, "raw_data"), "span_name"), "create item");
    CHECK_STR(str(json_object_get(a, "raw_data"), "span_kind"), "server");
    CHECK_STR(str(json_object_get(json_object_get(a, "raw_data"),
                                  "attributes"), "method"), "POST");
    CHECK_STR(str(a, "status"), "failed");
    CHECK_STR(str(a, "error_type"), "HTTPError");
    CHECK_STR(str(a, "error_message"), "HTTP 502");
    CHECK_STR(str(json_object_get(a, "raw_data"), "parent_span_id"),
              "aaaaaaaaaaaaaaaa");
    CHECK(json_object_get(json_array_get(agents, 0), "error_type") == NULL);

    deps = json_object_get(doc, "dependencies");
    CHECK_INT(json_array_size(deps), 1);
    d = json_array_get(deps, 0);
    CHECK_STR(str(d, "trace_id"), "4b020202-0202-0202-0202-020202020202");
    CHECK_STR(str(d, "parent_agent_id"), "0202020202020202");
    CHECK_STR(str(d, "child_agent_id"), "0303030303030303");
    CHECK_STR(str(d, "dependency_type"), "calls");

    json_decref(doc);
}

/* An upstream attempt: peer, timings, bytes, and why it failed. */
static void
test_client_spans(void)
{
    const vq_span_t  *spans[3];
    vq_span_t         c[3];
    json_t           *doc, *agents, *a, *attrs, *raw;
    int               count, i;

    for (i = 0; i < 3; i++) {
        vq_span_init(&c[i], VQ_SPAN_CLIENT);
        memset(c[i].h.trace_id, 0x07, 16);
        memset(c[i].h.span_id, 0x10 + i, 8);
        memset(c[i].h.parent_span_id, 0x09, 8);
        c[i].h.flags = VQ_SPAN_HAS_PARENT | VQ_SPAN_SAMPLED;
        c[i].h.start_us = 1795755826123456LL;
        c[i].h.end_us = c[i].h.start_us + 2500;
        c[i].h.attempt = (uint16_t) (i + 1);
        c[i].h.server_port = (uint16_t) (8000 + i);
        set(&c[i], VQ_FIELD_METHOD, "GET");
        set(&c[i], VQ_FIELD_ROUTE, "fastapi");
        set(&c[i], VQ_FIELD_HOST, "127.0.0.1");
        spans[i] = &c[i];
    }

    /* refused; answered 502; answered 200 after 1 ms connect, 2 ms header */
    c[0].h.flags |= VQ_SPAN_ERROR;
    c[0].h.error = VQ_SPAN_ERR_CONNECT;
    c[1].h.flags |= VQ_SPAN_ERROR;
    c[1].h.error = VQ_SPAN_ERR_HTTP;
    c[1].h.status_code = 502;
    c[2].h.status_code = 200;
    c[2].h.connect_ms = 1;
    c[2].h.header_ms = 2;
    c[2].h.request_body_size = 321;
    c[2].h.response_body_size = 4567;

    doc = encode(spans, 3, &count);
    CHECK(doc != NULL);
    if (doc == NULL) {
        return;
    }

    CHECK_INT(count, 3);
    agents = json_object_get(doc, "agents");
    CHECK_INT(json_array_size(agents), 3);

    a = json_array_get(agents, 0);
    raw = json_object_get(a, "raw_data");
    attrs = json_object_get(raw, "attributes");
    CHECK_STR(str(a, "name"), "fastapi");
    CHECK_STR(str(a, "type"), "fastapi");
    CHECK_STR(str(a, "status"), "failed");
    CHECK_STR(str(a, "error_type"), "connect_error");
    CHECK_STR(str(a, "error_message"), "cannot connect to upstream");
    CHECK_STR(str(raw, "span_name"), "GET fastapi");
    CHECK_STR(str(raw, "span_kind"), "client");
    CHECK_STR(str(raw, "parent_span_id"), "0909090909090909");
    CHECK_INT(num(attrs, "attempt"), 1);
    CHECK(json_object_get(attrs, "status_code") == NULL);
    CHECK(json_object_get(attrs, "connect_time_ms") == NULL);
    CHECK_STR(str(attrs, "upstream"), "fastapi");
    CHECK_STR(str(attrs, "host"), "127.0.0.1");
    CHECK_INT(num(attrs, "server_port"), 8000);

    a = json_array_get(agents, 1);
    CHECK_STR(str(a, "error_type"), "HTTPError");
    CHECK_STR(str(a, "error_message"), "HTTP 502");
    CHECK_INT(num(json_object_get(json_object_get(a, "raw_data"),
                                  "attributes"), "status_code"), 502);

    a = json_array_get(agents, 2);
    attrs = json_object_get(json_object_get(a, "raw_data"), "attributes");
    CHECK_STR(str(a, "status"), "completed");
    CHECK(json_object_get(a, "error_type") == NULL);
    CHECK_INT(num(attrs, "attempt"), 3);
    CHECK_INT(num(attrs, "status_code"), 200);
    CHECK_INT(num(attrs, "connect_time_ms"), 1);
    CHECK_INT(num(attrs, "header_time_ms"), 2);
    CHECK_INT(num(attrs, "bytes_sent"), 321);
    CHECK_INT(num(attrs, "bytes_received"), 4567);
    CHECK(json_real_value(json_object_get(attrs, "response_time_ms")) == 2.5);

    /* a client span's parent is the server span, never an agent here */
    CHECK_INT(json_array_size(json_object_get(doc, "dependencies")), 0);

    json_decref(doc);

    /* an error kind out of range is a damaged record */
    c[0].h.error = VQ_SPAN_ERR_MAX + 1;
    CHECK_INT(vq_span_validate(&c[0], sizeof(c[0])), VQ_EINVAL);
}

static void
test_invalid_records_skipped(void)
{
    const vq_span_t  *spans[2];
    vq_span_t         good, bad;
    json_t           *doc;
    int               count;

    make_server_span(&good, 1, 1);
    make_server_span(&bad, 2, 2);
    bad.h.str[VQ_FIELD_PATH].off = 5000;

    spans[0] = &bad;
    spans[1] = &good;

    doc = encode(spans, 2, &count);
    CHECK(doc != NULL);
    CHECK_INT(count, 1);
    CHECK_INT(json_array_size(json_object_get(doc, "traces")), 1);
    json_decref(doc);
}

/* Whatever bytes clients send, the body is valid JSON, and valid UTF-8 survives. */
static void
test_arbitrary_bytes(void)
{
    const vq_span_t  *spans[1];
    vq_span_t         s;
    json_t           *doc, *attrs;
    unsigned          seed, i, j, len, bad;
    char              junk[300];
    int               count;

    seed = 12345;
    bad = 0;

    for (i = 0; i < 3000; i++) {
        len = rand_r(&seed) % sizeof(junk);
        for (j = 0; j < len; j++) {
            /* bias towards the interesting bytes */
            switch (rand_r(&seed) % 4) {
            case 0:  junk[j] = (char) (rand_r(&seed) % 32); break;
            case 1:  junk[j] = (char) (0x80 + rand_r(&seed) % 128); break;
            case 2:  junk[j] = "\"\\/\x7f"[rand_r(&seed) % 4]; break;
            default: junk[j] = (char) (rand_r(&seed) % 256);
            }
        }

        make_server_span(&s, 1, 1);
        vq_span_init(&s, VQ_SPAN_SERVER);
        vq_span_set_str(&s, VQ_FIELD_USER_AGENT, junk, len);
        vq_span_set_str(&s, VQ_FIELD_PATH, junk, len);
        vq_span_add_attr(&s, junk, len / 2, junk, len);
        spans[0] = &s;

        doc = encode(spans, 1, &count);
        bad += doc == NULL;
        json_decref(doc);
    }

    CHECK_INT(bad, 0);

    /* valid multi-byte text passes through untouched; a stray byte is U+FFFD */
    vq_span_init(&s, VQ_SPAN_SERVER);
    set(&s, VQ_FIELD_USER_AGENT, "caf\xc3\xa9 \xf0\x9f\x90\x84 \xff\xc0\xafz\t");
    spans[0] = &s;
    doc = encode(spans, 1, &count);
    attrs = json_object_get(json_object_get(
                json_array_get(json_object_get(doc, "traces"), 0),
                "raw_data"), "attributes");
    CHECK_STR(str(attrs, "user_agent"),
              "caf\xc3\xa9 \xf0\x9f\x90\x84 \xef\xbf\xbd\xef\xbf\xbd"
              "\xef\xbf\xbdz\t");
    json_decref(doc);
}

/* Unset, name and agent name come from method and route. */
static void
test_derived_names(void)
{
    const vq_span_t  *spans[3];
    vq_span_t         s[3];
    json_t           *doc, *t;
    int               count, i;

    for (i = 0; i < 3; i++) {
        vq_span_init(&s[i], VQ_SPAN_SERVER);
        memset(s[i].h.trace_id, i + 1, 16);
        spans[i] = &s[i];
    }

    set(&s[0], VQ_FIELD_METHOD, "PUT");
    set(&s[0], VQ_FIELD_ROUTE, "/items/");
    set(&s[1], VQ_FIELD_ROUTE, "");             /* a bad request line */
    set(&s[2], VQ_FIELD_METHOD, "GET");         /* no route at all */

    doc = encode(spans, 3, &count);
    CHECK(doc != NULL);
    if (doc == NULL) {
        return;
    }

    t = json_object_get(doc, "traces");
    CHECK_STR(str(json_array_get(t, 0), "name"), "PUT /items/");
    CHECK_STR(str(json_object_get(json_object_get(json_array_get(t, 0),
                  "raw_data"), "metadata"), "agent_name"), "/items/");
    CHECK_STR(str(json_array_get(t, 1), "name"), "HTTP");
    CHECK_STR(str(json_array_get(t, 2), "name"), "GET");
    CHECK(json_is_null(json_object_get(json_object_get(json_object_get(
              json_array_get(t, 2), "raw_data"), "metadata"), "agent_name")));

    json_decref(doc);
}

static void
test_numbers_and_times(void)
{
    vq_buf_t  b;
    char      t[VQ_ISO_TIME_LEN + 1];

    vq_buf_init(&b);
    vq_json_int(&b, 0);
    vq_json_lit(&b, ",");
    vq_json_int(&b, -42);
    vq_json_lit(&b, ",");
    vq_json_int(&b, INT64_MIN);
    vq_json_lit(&b, ",");
    vq_json_milli(&b, 5);
    vq_json_lit(&b, ",");
    vq_json_milli(&b, 123456);
    vq_buf_append(&b, "", 1);
    CHECK_STR(b.data, "0,-42,-9223372036854775808,0.005,123.456");
    vq_buf_free(&b);

    t[VQ_ISO_TIME_LEN] = '\0';
    vq_format_iso_time(0, t);
    CHECK_STR(t, "1970-01-01T00:00:00.000000Z");
    vq_format_iso_time(951782400000001LL, t);
    CHECK_STR(t, "2000-02-29T00:00:00.000001Z");
}

int
main(void)
{
    test_trace_item();
    test_agents_and_dependencies();
    test_client_spans();
    test_invalid_records_skipped();
    test_arbitrary_bytes();
    test_derived_names();
    test_numbers_and_times();

    return check_summary("test_encode");
}
