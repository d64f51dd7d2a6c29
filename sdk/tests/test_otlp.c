/*
 * The OTLP encoders.
 *
 * JSON: parsed back with jansson, compared field by field, and checked
 * against the OTLP JSON rules (lowerCamelCase keys, lowercase hex ids,
 * integer enums, 64-bit integers as decimal strings, typed AnyValues).
 *
 * Protobuf: decoded by Debian's protobuf (otlp_decode.py: protoc makes the
 * message classes from otlp_trace.proto, python3-protobuf parses, strictly:
 * UTF-8 strings, no unknown fields, canonical bytes), and by protoc
 * --decode; the decoded message, rendered as OTLP JSON, must equal what
 * the JSON encoder wrote for the same records: the same ids, times and
 * values.  otlp_walk.h checks every body's structure without protoc.
 *
 * Run from the repository's root, or with VQ_TEST_DIR set to sdk/tests.
 * Needs protoc (protobuf-compiler) and /usr/bin/python3 with
 * python3-protobuf.
 */

#define _GNU_SOURCE             /* memmem */

#include <ctype.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

#include <vaquero/vaquero.h>
#include "../src/json.h"
#include "check.h"
#include "otlp_walk.h"

#define F  "\xef\xbf\xbd"       /* U+FFFD */

/* every kind of trouble, and valid text that must pass untouched */
#define HOSTILE      "a\"\\\x01\x00\xff\xc3\xa9\xf0\x9f\x90\x84\xc0\xaf" \
                     "\xed\xa0\x80\xe2\x82z"
#define HOSTILE_LEN  (sizeof(HOSTILE) - 1)
#define REPAIRED     "a\"\\\x01" F F "\xc3\xa9\xf0\x9f\x90\x84" F F F F F \
                     F F "z"

static const vq_resource_t  res = {
    .service_name = "nginx",
    .project_id = "proj-1",
    .environment = "production",
    .hostname = "host-a",
    .sdk_version = VQ_VERSION,
};

static char  test_dir[1024];

#define set(s, f, v)  vq_span_set_str(s, f, v, strlen(v))


/* records */

static void
make_server(vq_span_t *s, uint8_t tid, uint8_t sid)
{
    vq_span_init(s, VQ_SPAN_SERVER);
    memset(s->h.trace_id, tid, 16);
    memset(s->h.span_id, sid, 8);
    s->h.trace_id[0] = 0x4b;
    s->h.trace_flags = 0x01;
    s->h.flags = VQ_SPAN_SAMPLED;
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
}

static void
make_client(vq_span_t *c, uint8_t sid, uint16_t attempt)
{
    vq_span_init(c, VQ_SPAN_CLIENT);
    memset(c->h.trace_id, 0x07, 16);
    memset(c->h.span_id, sid, 8);
    memset(c->h.parent_span_id, 0x09, 8);
    c->h.flags = VQ_SPAN_HAS_PARENT | VQ_SPAN_SAMPLED;
    c->h.trace_flags = 0x01;
    c->h.start_us = 1795755826123456LL;
    c->h.end_us = c->h.start_us + 2500;
    c->h.attempt = attempt;
    c->h.server_port = 8000;
    set(c, VQ_FIELD_METHOD, "GET");
    set(c, VQ_FIELD_ROUTE, "fastapi");
    set(c, VQ_FIELD_HOST, "127.0.0.1");
}


/* encoding and decoding */

typedef struct {
    int      count_json;
    int      count_pb;
    json_t  *json;          /* the JSON body, parsed */
    json_t  *pb;            /* the protobuf body, decoded, as OTLP JSON */
    size_t   json_len;
    size_t   pb_len;
} bodies_t;

static void
bodies_free(bodies_t *e)
{
    json_decref(e->json);
    json_decref(e->pb);
}

static int
write_file(const char *path, const void *data, size_t len)
{
    FILE  *f;
    int    ok;

    f = fopen(path, "wb");
    if (f == NULL) {
        return 0;
    }

    ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* protoc --decode, as the C++ library parses: it refuses what is not UTF-8 */
static int
protoc_decodes(const char *path)
{
    char  cmd[3 * 1024];

    snprintf(cmd, sizeof(cmd), "protoc -I'%s' --decode="
             "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
             " otlp_trace.proto < '%s' > /dev/null", test_dir, path);

    return system(cmd) == 0;
}

/*
 * Decodes n protobuf bodies with otlp_decode.py (one Python start for
 * all); out[i] is the i-th as OTLP JSON, NULL when it was refused.
 */
static int
decode_pb(vq_buf_t *bodies, size_t n, json_t **out)
{
    char     cmd[64 * 1024], dir[] = "/tmp/test_otlp.XXXXXX", path[64];
    char    *line;
    size_t   i, cap, len;
    FILE    *f;
    int      ok;

    for (i = 0; i < n; i++) {
        out[i] = NULL;
    }

    if (mkdtemp(dir) == NULL) {
        return 0;
    }

    len = snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/otlp_decode.py' '%s'",
                   test_dir, test_dir);
    ok = 1;

    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%zu.pb", dir, i);
        ok &= write_file(path, bodies[i].data, bodies[i].len);
        ok &= protoc_decodes(path);
        len += snprintf(cmd + len, sizeof(cmd) - len, " %s", path);
    }

    if (!ok || len >= sizeof(cmd)) {
        fprintf(stderr, "protoc refused a body (or no room), kept in %s\n",
                dir);
        return 0;
    }

    f = popen(cmd, "r");
    if (f == NULL) {
        return 0;
    }

    line = NULL;
    cap = 0;

    for (i = 0; i < n && getline(&line, &cap, f) > 0; i++) {
        out[i] = json_loads(line, 0, NULL);
        ok &= out[i] != NULL;
    }

    free(line);
    ok &= pclose(f) == 0 && i == n;

    if (ok) {
        for (i = 0; i < n; i++) {
            snprintf(path, sizeof(path), "%s/%zu.pb", dir, i);
            unlink(path);
        }
        rmdir(dir);

    } else {
        fprintf(stderr, "otlp_decode.py refused a body, kept in %s\n", dir);
    }

    return ok;
}

static int  check_rules(json_t *doc);

/* Both encodings of one batch; each body walked, parsed, decoded. */
static void
encode_both(const vq_resource_t *r, const vq_span_t *const *spans, size_t n,
    bodies_t *e)
{
    json_error_t  err;
    ow_result_t   walk;
    vq_buf_t      j, p;

    vq_buf_init(&j);
    vq_buf_init(&p);

    e->count_json = vq_encode_otlp_json(&j, r, spans, n);
    e->count_pb = vq_encode_otlp_proto(&p, r, spans, n);
    e->json_len = j.len;
    e->pb_len = p.len;

    e->json = json_loadb(j.data, j.len, JSON_REJECT_DUPLICATES, &err);
    if (e->json == NULL) {
        fprintf(stderr, "invalid JSON (%s at %d): %.*s...\n", err.text,
                err.position, (int) (j.len < 300 ? j.len : 300), j.data);
    }

    CHECK(e->json != NULL);
    CHECK(e->json == NULL || check_rules(e->json));

    CHECK(otlp_walk(p.data, p.len, &walk));
    if (walk.error) {
        fprintf(stderr, "protobuf: %s at %zu\n", walk.error, walk.at);
    }
    CHECK_INT(walk.messages[OW_SPAN], e->count_pb);

    CHECK(decode_pb(&p, 1, &e->pb));

    /* the same message: ids, times, names, attributes, status */
    CHECK(e->json && e->pb && json_equal(e->json, e->pb));

    vq_buf_free(&j);
    vq_buf_free(&p);
}


/* reading the JSON */

static json_t *
spans_of(json_t *doc)
{
    return json_object_get(json_array_get(json_object_get(json_array_get(
               json_object_get(doc, "resourceSpans"), 0), "scopeSpans"), 0),
               "spans");
}

static json_t *
span_at(json_t *doc, size_t i)
{
    return json_array_get(spans_of(doc), i);
}

static const char *
str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* the AnyValue of attribute key in an attributes array, or NULL */
static json_t *
attr_in(json_t *attrs, const char *key)
{
    json_t  *a, *found;
    size_t   i;

    found = NULL;

    json_array_foreach(attrs, i, a) {
        if (strcmp(str(a, "key"), key) == 0) {
            if (found) {
                fprintf(stderr, "attribute %s twice\n", key);
                return NULL;
            }
            found = json_object_get(a, "value");
        }
    }

    return found;
}

static json_t *
attr(json_t *span, const char *key)
{
    return attr_in(json_object_get(span, "attributes"), key);
}

static const char *
attr_str(json_t *span, const char *key)
{
    return str(attr(span, key), "stringValue");
}

/* intValue: a decimal string; -1 when missing or not one */
static long long
attr_int(json_t *span, const char *key)
{
    const char  *s = str(attr(span, key), "intValue");

    return s ? atoll(s) : -1;
}

static size_t
nattrs(json_t *span)
{
    return json_array_size(json_object_get(span, "attributes"));
}


/* the OTLP JSON rules */

static int
rule_fail(const char *what, const char *key)
{
    fprintf(stderr, "OTLP JSON rule broken: %s (%s)\n", what, key);
    return 0;
}

static int
is_hex(const char *s, size_t len)
{
    size_t  i;

    if (s == NULL || strlen(s) != len) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!isdigit((unsigned char) s[i]) && !(s[i] >= 'a' && s[i] <= 'f')) {
            return 0;
        }
    }

    return 1;
}

static int
is_decimal(const char *s, int sign)
{
    if (s == NULL) {
        return 0;
    }

    if (sign && *s == '-') {
        s++;
    }

    if (*s == '\0' || (*s == '0' && s[1] != '\0')) {
        return 0;
    }

    while (isdigit((unsigned char) *s)) {
        s++;
    }

    return *s == '\0';
}

static int  check_value(json_t *v);

/* an attributes array: {"key": string, "value": AnyValue} items */
static int
check_kvs(json_t *kvs)
{
    json_t  *kv;
    size_t   i;

    if (!json_is_array(kvs)) {
        return rule_fail("not an array", "attributes");
    }

    json_array_foreach(kvs, i, kv) {
        if (json_object_size(kv) != 2 || !json_is_string(json_object_get(kv, "key"))
            || !check_value(json_object_get(kv, "value")))
        {
            return rule_fail("bad KeyValue", "attributes");
        }
    }

    return 1;
}

/* AnyValue: exactly one typed member */
static int
check_value(json_t *v)
{
    const char  *key;
    json_t      *m, *item;
    size_t       i;

    if (!json_is_object(v) || json_object_size(v) != 1) {
        return rule_fail("AnyValue without exactly one member", "value");
    }

    json_object_foreach(v, key, m) {
        if (strcmp(key, "stringValue") == 0) {
            return json_is_string(m) || rule_fail("not a string", key);
        }

        if (strcmp(key, "intValue") == 0) {
            return is_decimal(json_string_value(m), 1)
                   || rule_fail("int64 not a decimal string", key);
        }

        if (strcmp(key, "doubleValue") == 0) {
            return json_is_number(m) || rule_fail("not a number", key);
        }

        if (strcmp(key, "boolValue") == 0) {
            return json_is_boolean(m) || rule_fail("not a bool", key);
        }

        if (strcmp(key, "arrayValue") == 0) {
            if (json_object_size(m) != 1
                || !json_is_array(json_object_get(m, "values")))
            {
                return rule_fail("bad ArrayValue", key);
            }

            json_array_foreach(json_object_get(m, "values"), i, item) {
                if (!check_value(item)) {
                    return 0;
                }
            }

            return 1;
        }

        if (strcmp(key, "kvlistValue") == 0) {
            return check_kvs(json_object_get(m, "values"));
        }
    }

    return rule_fail("unknown AnyValue member", "value");
}

static int
check_camel(const char *key)
{
    const char  *p;

    if (!(key[0] >= 'a' && key[0] <= 'z')) {
        return 0;
    }

    for (p = key; *p; p++) {
        if (!isalnum((unsigned char) *p)) {
            return 0;
        }
    }

    return 1;
}

/* every object but AnyValues and KeyValues, recursively */
static int
check_object(json_t *obj)
{
    const char  *key;
    json_t      *m, *item;
    size_t       i;

    json_object_foreach(obj, key, m) {
        if (!check_camel(key)) {
            return rule_fail("key not lowerCamelCase", key);
        }

        if (strcmp(key, "traceId") == 0) {
            if (!is_hex(json_string_value(m), 32)) {
                return rule_fail("not 32 lowercase hex digits", key);
            }

        } else if (strcmp(key, "spanId") == 0
                   || strcmp(key, "parentSpanId") == 0)
        {
            if (!is_hex(json_string_value(m), 16)) {
                return rule_fail("not 16 lowercase hex digits", key);
            }

        } else if (strcmp(key, "kind") == 0 || strcmp(key, "code") == 0
                   || strcmp(key, "flags") == 0)
        {
            if (!json_is_integer(m)) {
                return rule_fail("enum or fixed32 not an integer", key);
            }

        } else if (strcmp(key, "startTimeUnixNano") == 0
                   || strcmp(key, "endTimeUnixNano") == 0)
        {
            if (!is_decimal(json_string_value(m), 0)) {
                return rule_fail("fixed64 not a decimal string", key);
            }

        } else if (strcmp(key, "attributes") == 0) {
            if (!check_kvs(m)) {
                return 0;
            }

        } else if (json_is_object(m)) {
            if (!check_object(m)) {
                return 0;
            }

        } else if (json_is_array(m)) {
            json_array_foreach(m, i, item) {
                if (!json_is_object(item) || !check_object(item)) {
                    return rule_fail("array item", key);
                }
            }
        }
    }

    return 1;
}

static int
check_rules(json_t *doc)
{
    return json_is_object(doc) && check_object(doc);
}


/* the tests */

static void
test_server_span(void)
{
    const vq_span_t  *spans[2];
    vq_span_t         s[2];
    json_t           *sp, *ct, *scope;
    bodies_t          e;

    /* one continuing a remote parent (traceparent), one starting a trace */
    make_server(&s[0], 0x11, 0x22);
    s[0].h.flags |= VQ_SPAN_HAS_PARENT | VQ_SPAN_KEPT_SLOW;
    memset(s[0].h.parent_span_id, 0xaa, 8);
    set(&s[0], VQ_FIELD_TRACESTATE, "vq=1,congo=t61rcWkgMzE");
    vq_span_add_attr(&s[0], "team", 4, "edge", 4);
    vq_span_add_attr(&s[0], "user.id", 7, "u-17", 4);
    /* captured headers: every value of a repeated one, a line each */
    vq_span_add_attr(&s[0], "http.request.header.x-tenant", 28,
                     "acme\nglobex\n\xff", 13);
    vq_span_add_attr(&s[0], "http.response.header.cache-control", 34,
                     "no-store", 8);

    vq_span_init(&s[1], VQ_SPAN_SERVER);
    memset(s[1].h.trace_id, 0x33, 16);
    memset(s[1].h.span_id, 0x44, 8);
    s[1].h.start_us = 1795755826000001LL;
    s[1].h.end_us = 1795755826000002LL;
    s[1].h.status_code = 404;
    s[1].h.server_port = 80;
    set(&s[1], VQ_FIELD_METHOD, "GET");
    set(&s[1], VQ_FIELD_SCHEME, "http");
    set(&s[1], VQ_FIELD_HOST, "example.test");
    set(&s[1], VQ_FIELD_PATH, "/missing");
    set(&s[1], VQ_FIELD_ROUTE, "/");

    spans[0] = &s[0];
    spans[1] = &s[1];

    encode_both(&res, spans, 2, &e);
    CHECK_INT(e.count_json, 2);
    CHECK_INT(e.count_pb, 2);
    if (e.json == NULL) {
        return;
    }

    CHECK_INT(json_array_size(json_object_get(e.json, "resourceSpans")), 1);
    CHECK_INT(json_array_size(json_object_get(json_array_get(json_object_get(
              e.json, "resourceSpans"), 0), "scopeSpans")), 1);
    scope = json_object_get(json_array_get(json_object_get(json_array_get(
                json_object_get(e.json, "resourceSpans"), 0), "scopeSpans"),
                0), "scope");
    CHECK_STR(str(scope, "name"), "ngx_vaquero_module");
    CHECK_STR(str(scope, "version"), VQ_VERSION);
    CHECK_INT(json_array_size(spans_of(e.json)), 2);

    sp = span_at(e.json, 0);
    CHECK_STR(str(sp, "traceId"), "4b111111111111111111111111111111");
    CHECK_STR(str(sp, "spanId"), "2222222222222222");
    CHECK_STR(str(sp, "parentSpanId"), "aaaaaaaaaaaaaaaa");
    CHECK_STR(str(sp, "traceState"), "vq=1,congo=t61rcWkgMzE");
    /* sampled, and the parent's remoteness known (bit 8): remote (bit 9) */
    CHECK_INT(json_integer_value(json_object_get(sp, "flags")), 0x301);
    CHECK_STR(str(sp, "name"), "create item");
    CHECK_INT(json_integer_value(json_object_get(sp, "kind")), 2);
    CHECK_STR(str(sp, "startTimeUnixNano"), "1795755826123456000");
    CHECK_STR(str(sp, "endTimeUnixNano"), "1795755826135801000");
    CHECK(json_object_get(sp, "status") == NULL);

    CHECK_STR(attr_str(sp, "http.request.method"), "POST");
    CHECK_STR(attr_str(sp, "url.full"),
              "http://example.test:8080/api/items?a=1&b=\"2\"");
    CHECK_STR(attr_str(sp, "url.path"), "/api/items");
    CHECK_STR(attr_str(sp, "url.query"), "a=1&b=\"2\"");
    CHECK_STR(attr_str(sp, "url.scheme"), "http");
    CHECK_STR(attr_str(sp, "http.route"), "/api");
    CHECK_INT(attr_int(sp, "http.response.status_code"), 200);
    CHECK_INT(attr_int(sp, "http.request.body.size"), 11);
    CHECK_INT(attr_int(sp, "http.response.body.size"), 42);
    CHECK_STR(attr_str(sp, "user_agent.original"), "curl/7.88.1");
    ct = json_object_get(json_object_get(attr(sp,
             "http.request.header.content-type"), "arrayValue"), "values");
    CHECK_INT(json_array_size(ct), 1);
    CHECK_STR(str(json_array_get(ct, 0), "stringValue"), "application/json");
    CHECK_STR(attr_str(sp, "client.address"), "127.0.0.1");
    CHECK_INT(attr_int(sp, "client.port"), 51234);
    CHECK_STR(attr_str(sp, "server.address"), "example.test");
    CHECK_INT(attr_int(sp, "server.port"), 8080);
    CHECK_STR(attr_str(sp, "network.protocol.version"), "1.1");
    CHECK_STR(attr_str(sp, "http.request.id"),
              "0123456789abcdef0123456789abcdef");
    CHECK_STR(attr_str(sp, "team"), "edge");
    CHECK_STR(attr_str(sp, "user.id"), "u-17");
    ct = json_object_get(json_object_get(attr(sp,
             "http.request.header.x-tenant"), "arrayValue"), "values");
    CHECK_INT(json_array_size(ct), 3);
    CHECK_STR(str(json_array_get(ct, 0), "stringValue"), "acme");
    CHECK_STR(str(json_array_get(ct, 1), "stringValue"), "globex");
    CHECK_STR(str(json_array_get(ct, 2), "stringValue"), "\xef\xbf\xbd");
    ct = json_object_get(json_object_get(attr(sp,
             "http.response.header.cache-control"), "arrayValue"), "values");
    CHECK_INT(json_array_size(ct), 1);
    CHECK_STR(str(json_array_get(ct, 0), "stringValue"), "no-store");
    CHECK_STR(attr_str(sp, "vaquero.kept"), "slow");
    CHECK(attr(sp, "error.type") == NULL);
    CHECK(attr(sp, "vaquero.truncated") == NULL);
    CHECK_INT(nattrs(sp), 22);

    /* no parent: no parentSpanId, and bit 9 clear; a 404 is no error */
    sp = span_at(e.json, 1);
    CHECK_STR(str(sp, "traceId"), "33333333333333333333333333333333");
    CHECK(json_object_get(sp, "parentSpanId") == NULL);
    CHECK(json_object_get(sp, "traceState") == NULL);
    CHECK_INT(json_integer_value(json_object_get(sp, "flags")), 0x100);
    CHECK_STR(str(sp, "name"), "GET /");
    CHECK_STR(str(sp, "startTimeUnixNano"), "1795755826000001000");
    CHECK_STR(str(sp, "endTimeUnixNano"), "1795755826000002000");
    CHECK(json_object_get(sp, "status") == NULL);
    CHECK_STR(attr_str(sp, "url.full"), "http://example.test/missing");
    CHECK_INT(attr_int(sp, "server.port"), 80);
    CHECK_INT(attr_int(sp, "http.response.status_code"), 404);
    CHECK_INT(attr_int(sp, "http.request.body.size"), 0);
    CHECK(attr(sp, "url.query") == NULL);
    CHECK(attr(sp, "client.port") == NULL);
    CHECK(attr(sp, "user_agent.original") == NULL);
    CHECK(attr(sp, "http.request.header.content-type") == NULL);
    CHECK(attr(sp, "error.type") == NULL);
    CHECK(attr(sp, "vaquero.kept") == NULL);

    bodies_free(&e);
}

static void
test_server_errors(void)
{
    const vq_span_t  *spans[3];
    vq_span_t         s[3];
    json_t           *sp;
    bodies_t          e;

    make_server(&s[0], 1, 1);
    s[0].h.status_code = 503;
    s[0].h.flags |= VQ_SPAN_ERROR | VQ_SPAN_KEPT_ERROR;
    s[0].h.error = VQ_SPAN_ERR_HTTP;

    make_server(&s[1], 2, 2);
    s[1].h.status_code = 500;
    s[1].h.flags |= VQ_SPAN_KEPT_SLOW | VQ_SPAN_KEPT_ERROR;

    make_server(&s[2], 3, 3);
    s[2].h.status_code = 499;

    spans[0] = &s[0];
    spans[1] = &s[1];
    spans[2] = &s[2];

    encode_both(&res, spans, 3, &e);
    CHECK_INT(e.count_json, 3);
    if (e.json == NULL) {
        return;
    }

    /* the status code tells why: no description (semantic conventions) */
    sp = span_at(e.json, 0);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(sp,
              "status"), "code")), 2);
    CHECK_INT(json_object_size(json_object_get(sp, "status")), 1);
    CHECK_STR(attr_str(sp, "error.type"), "503");
    CHECK_STR(attr_str(sp, "vaquero.kept"), "error");

    sp = span_at(e.json, 1);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(sp,
              "status"), "code")), 2);
    CHECK_STR(attr_str(sp, "error.type"), "500");
    CHECK_STR(attr_str(sp, "vaquero.kept"), "error");

    sp = span_at(e.json, 2);
    CHECK(json_object_get(sp, "status") == NULL);
    CHECK(attr(sp, "error.type") == NULL);

    bodies_free(&e);
}

/* An upstream attempt: the peer, timings, bytes, and each way it can fail. */
static void
test_client_spans(void)
{
    const vq_span_t  *spans[7];
    vq_span_t         c[7];
    json_t           *sp, *st;
    bodies_t          e;
    int               i;

    for (i = 0; i < 7; i++) {
        make_client(&c[i], (uint8_t) (0x10 + i), (uint16_t) (i + 1));
        spans[i] = &c[i];
    }

    /* answered 200 */
    c[0].h.status_code = 200;
    c[0].h.connect_ms = 1;
    c[0].h.header_ms = 2;
    c[0].h.request_body_size = 321;
    c[0].h.response_body_size = 4567;

    /* answered 502 */
    c[1].h.flags |= VQ_SPAN_ERROR;
    c[1].h.error = VQ_SPAN_ERR_HTTP;
    c[1].h.status_code = 502;
    c[1].h.connect_ms = 1;
    c[1].h.header_ms = 3;

    /* timed out before the header: the 504 is nginx's, not the upstream's */
    c[2].h.flags |= VQ_SPAN_ERROR;
    c[2].h.error = VQ_SPAN_ERR_TIMEOUT;
    c[2].h.status_code = 504;
    c[2].h.connect_ms = 1;

    /* timed out reading the body of a 200 */
    c[3].h.flags |= VQ_SPAN_ERROR;
    c[3].h.error = VQ_SPAN_ERR_TIMEOUT;
    c[3].h.status_code = 200;
    c[3].h.connect_ms = 1;
    c[3].h.header_ms = 5;

    /* refused; nginx's 502 */
    c[4].h.flags |= VQ_SPAN_ERROR;
    c[4].h.error = VQ_SPAN_ERR_CONNECT;
    c[4].h.status_code = 502;

    c[5].h.flags |= VQ_SPAN_ERROR;
    c[5].h.error = VQ_SPAN_ERR_NO_LIVE;
    c[5].h.status_code = 502;

    c[6].h.flags |= VQ_SPAN_ERROR | VQ_SPAN_KEPT_ERROR;
    c[6].h.error = VQ_SPAN_ERR_RESPONSE;
    c[6].h.connect_ms = 0;
    set(&c[6], VQ_FIELD_NAME, "upstream call");

    encode_both(&res, spans, 7, &e);
    CHECK_INT(e.count_json, 7);
    CHECK_INT(e.count_pb, 7);
    if (e.json == NULL) {
        return;
    }

    sp = span_at(e.json, 0);
    CHECK_STR(str(sp, "traceId"), "07070707070707070707070707070707");
    CHECK_STR(str(sp, "spanId"), "1010101010101010");
    CHECK_STR(str(sp, "parentSpanId"), "0909090909090909");
    /* the parent is our own server span: known, not remote */
    CHECK_INT(json_integer_value(json_object_get(sp, "flags")), 0x101);
    CHECK_INT(json_integer_value(json_object_get(sp, "kind")), 3);
    CHECK_STR(str(sp, "name"), "GET fastapi");
    CHECK_STR(str(sp, "startTimeUnixNano"), "1795755826123456000");
    CHECK_STR(str(sp, "endTimeUnixNano"), "1795755826125956000");
    CHECK(json_object_get(sp, "status") == NULL);
    CHECK_STR(attr_str(sp, "server.address"), "127.0.0.1");
    CHECK_INT(attr_int(sp, "server.port"), 8000);
    CHECK_STR(attr_str(sp, "http.request.method"), "GET");
    CHECK_INT(attr_int(sp, "http.response.status_code"), 200);
    CHECK_STR(attr_str(sp, "nginx.upstream.name"), "fastapi");
    CHECK_INT(attr_int(sp, "nginx.upstream.attempt"), 1);
    CHECK(attr(sp, "http.request.resend_count") == NULL);
    CHECK_INT(attr_int(sp, "nginx.upstream.connect_time_ms"), 1);
    CHECK_INT(attr_int(sp, "nginx.upstream.header_time_ms"), 2);
    CHECK(json_real_value(json_object_get(attr(sp,
          "nginx.upstream.response_time_ms"), "doubleValue")) == 2.5);
    CHECK_INT(attr_int(sp, "nginx.upstream.bytes_sent"), 321);
    CHECK_INT(attr_int(sp, "nginx.upstream.bytes_received"), 4567);
    CHECK(attr(sp, "error.type") == NULL);
    CHECK(attr(sp, "url.full") == NULL);
    CHECK_INT(nattrs(sp), 11);

    sp = span_at(e.json, 1);
    st = json_object_get(sp, "status");
    CHECK_INT(json_integer_value(json_object_get(st, "code")), 2);
    CHECK(json_object_get(st, "message") == NULL);
    CHECK_STR(attr_str(sp, "error.type"), "502");
    CHECK_INT(attr_int(sp, "http.response.status_code"), 502);
    CHECK_INT(attr_int(sp, "nginx.upstream.attempt"), 2);
    CHECK_INT(attr_int(sp, "http.request.resend_count"), 1);

    sp = span_at(e.json, 2);
    st = json_object_get(sp, "status");
    CHECK_INT(json_integer_value(json_object_get(st, "code")), 2);
    CHECK_STR(str(st, "message"), "upstream timed out");
    CHECK_STR(attr_str(sp, "error.type"), "timeout");
    CHECK(attr(sp, "http.response.status_code") == NULL);
    CHECK_INT(attr_int(sp, "nginx.upstream.connect_time_ms"), 1);
    CHECK(attr(sp, "nginx.upstream.header_time_ms") == NULL);
    CHECK_INT(attr_int(sp, "http.request.resend_count"), 2);

    sp = span_at(e.json, 3);
    CHECK_STR(attr_str(sp, "error.type"), "timeout");
    CHECK_INT(attr_int(sp, "http.response.status_code"), 200);
    CHECK_INT(attr_int(sp, "nginx.upstream.header_time_ms"), 5);

    sp = span_at(e.json, 4);
    st = json_object_get(sp, "status");
    CHECK_STR(str(st, "message"), "cannot connect to upstream");
    CHECK_STR(attr_str(sp, "error.type"), "connect_error");
    CHECK(attr(sp, "http.response.status_code") == NULL);
    CHECK(attr(sp, "nginx.upstream.connect_time_ms") == NULL);

    sp = span_at(e.json, 5);
    CHECK_STR(str(json_object_get(sp, "status"), "message"),
              "no live upstreams");
    CHECK_STR(attr_str(sp, "error.type"), "no_live_upstreams");
    CHECK(attr(sp, "http.response.status_code") == NULL);

    sp = span_at(e.json, 6);
    CHECK_STR(str(sp, "name"), "upstream call");
    CHECK_STR(str(json_object_get(sp, "status"), "message"),
              "invalid upstream response or connection reset");
    CHECK_STR(attr_str(sp, "error.type"), "response_error");
    CHECK_STR(attr_str(sp, "vaquero.kept"), "error");
    CHECK_INT(attr_int(sp, "nginx.upstream.connect_time_ms"), 0);
    CHECK_INT(attr_int(sp, "nginx.upstream.attempt"), 7);
    CHECK_INT(attr_int(sp, "http.request.resend_count"), 6);

    bodies_free(&e);
}

static void
test_resource(void)
{
    const vq_span_t  *spans[1];
    vq_span_t         s;
    vq_resource_t     r;
    json_t           *attrs;
    bodies_t          e;
    static const vq_kv_t  extra[] = {
        { "team", "edge" },
        { "host.name", "web-7" },           /* replaces the hostname */
        { "team", "again" },                /* keys are unique */
        { NULL, "no key" },
        { "no.value", NULL },
        { "k\xff", "v\xc3" },
        { "empty", "" },
    };

    make_server(&s, 1, 1);
    spans[0] = &s;

    r = res;
    r.service_version = "1.2.3";
    r.attributes = extra;
    r.nattributes = sizeof(extra) / sizeof(extra[0]);

    encode_both(&r, spans, 1, &e);
    CHECK_INT(e.count_json, 1);
    if (e.json == NULL) {
        return;
    }

    attrs = json_object_get(json_object_get(json_array_get(json_object_get(
                e.json, "resourceSpans"), 0), "resource"), "attributes");
    CHECK_STR(str(attr_in(attrs, "service.name"), "stringValue"), "nginx");
    CHECK_STR(str(attr_in(attrs, "service.version"), "stringValue"), "1.2.3");
    CHECK_STR(str(attr_in(attrs, "host.name"), "stringValue"), "web-7");
    CHECK_STR(str(attr_in(attrs, "vaquero.project_id"), "stringValue"),
              "proj-1");
    CHECK_STR(str(attr_in(attrs, "deployment.environment.name"),
                  "stringValue"), "production");
    CHECK_STR(str(attr_in(attrs, "team"), "stringValue"), "edge");
    CHECK_STR(str(attr_in(attrs, "k" F), "stringValue"), "v" F);
    CHECK_STR(str(attr_in(attrs, "empty"), "stringValue"), "");
    CHECK_INT(json_array_size(attrs), 8);
    bodies_free(&e);

    /* the least: no project, version or extras */
    r = res;
    r.project_id = NULL;

    encode_both(&r, spans, 1, &e);
    if (e.json == NULL) {
        return;
    }

    attrs = json_object_get(json_object_get(json_array_get(json_object_get(
                e.json, "resourceSpans"), 0), "resource"), "attributes");
    CHECK_STR(str(attr_in(attrs, "service.name"), "stringValue"), "nginx");
    CHECK_STR(str(attr_in(attrs, "host.name"), "stringValue"), "host-a");
    CHECK_STR(str(attr_in(attrs, "deployment.environment.name"),
                  "stringValue"), "production");
    CHECK_INT(json_array_size(attrs), 3);
    bodies_free(&e);
}

/* url.full and a derived name exactly as the Vaquero encoder makes them */
static void
compare_with_vaquero(const vq_span_t *span, json_t *otlp_span)
{
    const vq_span_t  *spans[1];
    json_t           *doc, *t;
    vq_buf_t          b;

    spans[0] = span;
    vq_buf_init(&b);
    CHECK_INT(vq_encode_vaquero_batch(&b, &res, spans, 1), 1);
    doc = json_loadb(b.data, b.len, 0, NULL);
    vq_buf_free(&b);

    t = json_array_get(json_object_get(doc, "traces"), 0);
    CHECK_STR(str(otlp_span, "name"), str(t, "name"));
    CHECK_STR(attr_str(otlp_span, "url.full"),
              str(json_object_get(json_object_get(t, "raw_data"),
                                  "attributes"), "url"));
    json_decref(doc);
}

/* Whatever bytes clients send: valid bodies, repaired the same way in both. */
static void
test_hostile_bytes(void)
{
    const vq_span_t  *spans[4];
    vq_span_t         s[4];
    json_t           *sp;
    bodies_t          e;
    unsigned          f;

    vq_span_init(&s[0], VQ_SPAN_SERVER);
    memset(s[0].h.trace_id, 0xfe, 16);
    s[0].h.start_us = 1;
    s[0].h.end_us = 2;
    s[0].h.server_port = 8443;

    for (f = 0; f < VQ_FIELD_COUNT; f++) {
        vq_span_set_str(&s[0], f, HOSTILE, HOSTILE_LEN);
    }

    vq_span_add_attr(&s[0], HOSTILE, HOSTILE_LEN, HOSTILE, HOSTILE_LEN);

    /* a host ending and a path starting a character: each part alone */
    vq_span_init(&s[1], VQ_SPAN_SERVER);
    set(&s[1], VQ_FIELD_SCHEME, "https");
    vq_span_set_str(&s[1], VQ_FIELD_HOST, "h\xc3", 2);
    vq_span_set_str(&s[1], VQ_FIELD_PATH, "\xa9/x", 3);
    vq_span_set_str(&s[1], VQ_FIELD_METHOD, "G\xe2\x82", 3);
    vq_span_set_str(&s[1], VQ_FIELD_ROUTE, "\xac/", 2);

    vq_span_init(&s[2], VQ_SPAN_CLIENT);
    for (f = 0; f < VQ_FIELD_COUNT; f++) {
        vq_span_set_str(&s[2], f, HOSTILE, HOSTILE_LEN);
    }

    /* a method but no route; no name */
    vq_span_init(&s[3], VQ_SPAN_SERVER);
    vq_span_set_str(&s[3], VQ_FIELD_METHOD, HOSTILE, HOSTILE_LEN);

    spans[0] = &s[0];
    spans[1] = &s[1];
    spans[2] = &s[2];
    spans[3] = &s[3];

    encode_both(&res, spans, 4, &e);
    CHECK_INT(e.count_json, 4);
    if (e.json == NULL) {
        return;
    }

    sp = span_at(e.json, 0);
    CHECK_STR(str(sp, "traceId"), "fefefefefefefefefefefefefefefefe");
    CHECK_STR(str(sp, "spanId"), "0000000000000000");
    CHECK_STR(str(sp, "name"), REPAIRED);
    CHECK_STR(str(sp, "traceState"), REPAIRED);
    CHECK_STR(str(sp, "startTimeUnixNano"), "1000");
    CHECK_STR(attr_str(sp, "user_agent.original"), REPAIRED);
    /* the scheme cut at its cap of 8 bytes */
    CHECK_STR(attr_str(sp, "url.full"), "a\"\\\x01" F F "\xc3\xa9://"
              REPAIRED ":8443" REPAIRED "?" REPAIRED);
    CHECK_STR(attr_str(sp, REPAIRED), REPAIRED);
    CHECK_STR(str(json_array_get(json_object_get(json_object_get(attr(sp,
              "http.request.header.content-type"), "arrayValue"), "values"),
              0), "stringValue"), REPAIRED);
    compare_with_vaquero(&s[0], sp);

    sp = span_at(e.json, 1);
    CHECK_STR(str(sp, "name"), "G" F F " " F "/");
    CHECK_STR(attr_str(sp, "url.full"), "https://h" F F "/x");
    compare_with_vaquero(&s[1], sp);

    sp = span_at(e.json, 2);
    CHECK_STR(attr_str(sp, "server.address"), REPAIRED);
    CHECK_STR(attr_str(sp, "nginx.upstream.name"), REPAIRED);

    sp = span_at(e.json, 3);
    CHECK_STR(str(sp, "name"), REPAIRED);
    compare_with_vaquero(&s[3], sp);

    bodies_free(&e);
}

static void
test_truncated_and_derived(void)
{
    const vq_span_t  *spans[3];
    vq_span_t         s[3];
    json_t           *sp;
    bodies_t          e;
    char              ua[4096];

    memset(ua, 'u', sizeof(ua));

    make_server(&s[0], 1, 1);
    vq_span_init(&s[0], VQ_SPAN_SERVER);
    vq_span_set_str(&s[0], VQ_FIELD_USER_AGENT, ua, sizeof(ua));
    set(&s[0], VQ_FIELD_METHOD, "PUT");
    set(&s[0], VQ_FIELD_ROUTE, "/items/");

    vq_span_init(&s[1], VQ_SPAN_SERVER);
    set(&s[1], VQ_FIELD_ROUTE, "");                 /* a bad request line */

    vq_span_init(&s[2], VQ_SPAN_SERVER);
    set(&s[2], VQ_FIELD_NAME, "");                  /* set, but empty */
    s[2].h.start_us = -5;                           /* before 1970: 0 */

    spans[0] = &s[0];
    spans[1] = &s[1];
    spans[2] = &s[2];

    encode_both(&res, spans, 3, &e);
    CHECK_INT(e.count_json, 3);
    if (e.json == NULL) {
        return;
    }

    sp = span_at(e.json, 0);
    CHECK_STR(str(sp, "name"), "PUT /items/");
    CHECK(json_is_true(json_object_get(attr(sp, "vaquero.truncated"),
                                       "boolValue")));
    CHECK_INT(strlen(attr_str(sp, "user_agent.original")), 192);

    sp = span_at(e.json, 1);
    CHECK_STR(str(sp, "name"), "HTTP");
    CHECK_STR(attr_str(sp, "http.route"), "");
    CHECK(attr(sp, "vaquero.truncated") == NULL);

    sp = span_at(e.json, 2);
    CHECK_STR(str(sp, "name"), "");
    CHECK_STR(str(sp, "startTimeUnixNano"), "0");
    CHECK_STR(str(sp, "endTimeUnixNano"), "0");

    bodies_free(&e);
}

/* Times no clock gives, as a damaged record may hold: no overflow, and both encodings agree. */
static void
test_extreme_times(void)
{
    const vq_span_t  *spans[3];
    vq_span_t         c[3];
    json_t           *sp;
    bodies_t          e;
    int               i;

    for (i = 0; i < 3; i++) {
        make_client(&c[i], (uint8_t) (i + 1), 1);
        spans[i] = &c[i];
    }

    c[0].h.start_us = INT64_MIN;
    c[0].h.end_us = INT64_MAX;
    c[1].h.start_us = INT64_MAX / 1000 + 1;         /* past 2262 */
    c[1].h.end_us = INT64_MAX;
    c[2].h.start_us = 5000;
    c[2].h.end_us = 4000;

    encode_both(&res, spans, 3, &e);
    CHECK_INT(e.count_json, 3);
    if (e.json == NULL) {
        return;
    }

    sp = span_at(e.json, 0);
    CHECK_STR(str(sp, "startTimeUnixNano"), "0");
    CHECK_STR(str(sp, "endTimeUnixNano"), "9223372036854775000");
    CHECK(json_real_value(json_object_get(attr(sp,
          "nginx.upstream.response_time_ms"), "doubleValue"))
          == 9007199254740.992);

    sp = span_at(e.json, 1);
    CHECK_STR(str(sp, "startTimeUnixNano"), "9223372036854775000");

    sp = span_at(e.json, 2);
    CHECK(json_real_value(json_object_get(attr(sp,
          "nginx.upstream.response_time_ms"), "doubleValue")) == 0.0);

    bodies_free(&e);
}

static void
test_invalid_records_skipped(void)
{
    const vq_span_t  *spans[3];
    vq_span_t         good, bad, bad_kind;
    bodies_t          e;

    make_server(&good, 1, 1);
    make_server(&bad, 2, 2);
    bad.h.str[VQ_FIELD_PATH].off = 5000;
    make_server(&bad_kind, 3, 3);
    bad_kind.h.kind = 7;

    spans[0] = &bad;
    spans[1] = &good;
    spans[2] = &bad_kind;

    encode_both(&res, spans, 3, &e);
    CHECK_INT(e.count_json, 1);
    CHECK_INT(e.count_pb, 1);
    CHECK_INT(json_array_size(spans_of(e.json)), 1);
    CHECK_STR(str(span_at(e.json, 0), "spanId"), "0101010101010101");
    bodies_free(&e);

    /* nothing valid: an empty ScopeSpans */
    encode_both(&res, spans, 0, &e);
    CHECK_INT(e.count_json, 0);
    CHECK_INT(e.count_pb, 0);
    CHECK_INT(json_array_size(spans_of(e.json)), 0);
    bodies_free(&e);
}

/*
 * Spans whose length takes 1, 2 and 3 bytes, and batches whose sizes fall
 * on either side of what the encoder holds room for, so that every way a
 * length is patched in is taken; each body must decode, and equal JSON.
 */
static void
test_length_widths(void)
{
    const vq_span_t  *spans[400];
    vq_span_t         tiny, big, huge, *s;
    vq_buf_t          pb[12];
    json_t           *decoded[12], *doc;
    ow_result_t       walk;
    vq_buf_t          j;
    size_t            sizes[12] = { 1, 1, 1, 3, 2, 40, 60, 100, 130, 400, 5,
                                    300 };
    size_t            i, k, n;
    char              junk[300];
    unsigned          slot;

    /* a span of less than 128 bytes */
    vq_span_init(&tiny, VQ_SPAN_SERVER);

    /* an ordinary one, of hostile bytes: 3 bytes out for each in */
    memset(junk, 0xff, sizeof(junk));
    vq_span_init(&big, VQ_SPAN_SERVER);
    vq_span_set_str(&big, VQ_FIELD_PATH, junk, sizeof(junk));
    vq_span_set_str(&big, VQ_FIELD_USER_AGENT, junk, sizeof(junk));
    vq_span_set_str(&big, VQ_FIELD_QUERY, junk, sizeof(junk));

    /* more than 16 KB: every slot points at the same 700 bytes (valid) */
    vq_span_init(&huge, VQ_SPAN_SERVER);
    memset(huge.data, 0xff, 700);
    huge.h.size = sizeof(vq_span_head_t) + 700;
    huge.h.nattrs = VQ_SPAN_MAX_ATTRS;
    for (slot = 0; slot < VQ_SPAN_STR_SLOTS; slot++) {
        huge.h.str[slot].off = sizeof(vq_span_head_t);
        huge.h.str[slot].len = 700;
    }
    CHECK_INT(vq_span_validate(&huge, sizeof(huge)), VQ_OK);

    for (k = 0; k < 12; k++) {
        n = sizes[k];
        for (i = 0; i < n; i++) {
            s = k == 0 ? &tiny : k == 1 ? &huge : k == 2 ? &big
                : k == 10 ? (i % 2 ? &huge : &tiny)
                : k < 7 ? &tiny : &big;
            spans[i] = s;
        }

        vq_buf_init(&pb[k]);
        CHECK_INT(vq_encode_otlp_proto(&pb[k], &res, spans, n), n);
        CHECK(otlp_walk(pb[k].data, pb[k].len, &walk));
        CHECK_INT(walk.messages[OW_SPAN], n);
        CHECK_INT(walk.messages[OW_SCOPE_SPANS], 1);
        CHECK_INT(walk.messages[OW_RESOURCE_SPANS], 1);
    }

    CHECK(decode_pb(pb, 12, decoded));

    for (k = 0; k < 12; k++) {
        n = sizes[k];
        for (i = 0; i < n; i++) {
            s = k == 0 ? &tiny : k == 1 ? &huge : k == 2 ? &big
                : k == 10 ? (i % 2 ? &huge : &tiny)
                : k < 7 ? &tiny : &big;
            spans[i] = s;
        }

        vq_buf_init(&j);
        vq_encode_otlp_json(&j, &res, spans, n);
        doc = json_loadb(j.data, j.len, 0, NULL);
        CHECK(doc && decoded[k] && json_equal(doc, decoded[k]));
        json_decref(doc);
        json_decref(decoded[k]);
        vq_buf_free(&j);
        vq_buf_free(&pb[k]);
    }
}

/* Appended to what the buffer holds; an allocation failure is reported. */
static void
test_buffer(void)
{
    const vq_span_t  *spans[1];
    vq_span_t         s;
    ow_result_t       walk;
    json_t           *doc;
    vq_buf_t          b, alone;

    make_server(&s, 1, 1);
    spans[0] = &s;

    vq_buf_init(&b);
    vq_buf_init(&alone);
    vq_buf_append(&b, "xyz", 3);
    CHECK_INT(vq_encode_otlp_proto(&b, &res, spans, 1), 1);
    CHECK_INT(vq_encode_otlp_proto(&alone, &res, spans, 1), 1);
    CHECK(memcmp(b.data, "xyz", 3) == 0);
    CHECK(b.len == alone.len + 3
          && memcmp(b.data + 3, alone.data, alone.len) == 0);
    CHECK(otlp_walk(b.data + 3, b.len - 3, &walk));

    vq_buf_reset(&b);
    vq_buf_append(&b, "xyz", 3);
    CHECK_INT(vq_encode_otlp_json(&b, &res, spans, 1), 1);
    doc = json_loadb(b.data + 3, b.len - 3, 0, NULL);
    CHECK(doc != NULL);
    json_decref(doc);

    b.failed = 1;
    CHECK_INT(vq_encode_otlp_proto(&b, &res, spans, 1), VQ_ENOMEM);
    CHECK_INT(vq_encode_otlp_json(&b, &res, spans, 1), VQ_ENOMEM);

    vq_buf_free(&b);
    vq_buf_free(&alone);
}

/* The walker itself must refuse what a strict decoder refuses. */
static void
test_walker(void)
{
    const vq_span_t  *spans[1];
    vq_span_t         s;
    ow_result_t       walk;
    vq_buf_t          b;
    char             *p;

    make_server(&s, 1, 1);
    spans[0] = &s;
    vq_buf_init(&b);
    vq_encode_otlp_proto(&b, &res, spans, 1);

    CHECK(otlp_walk(b.data, b.len, &walk));
    CHECK(!otlp_walk(b.data, b.len - 1, &walk));

    p = memmem(b.data, b.len, "curl", 4);
    CHECK(p != NULL);
    if (p) {
        *p = (char) 0xff;
        CHECK(!otlp_walk(b.data, b.len, &walk));
        *p = '\0';
        CHECK(!otlp_walk(b.data, b.len, &walk));
        *p = 'c';
    }

    b.data[0] = 0x12;     /* field 2 of the request: unknown */
    CHECK(!otlp_walk(b.data, b.len, &walk));

    vq_buf_free(&b);
}

/* vq_utf8_repair() replaces what vq_json_escape() replaces, nothing else */
static void
test_utf8_repair(void)
{
    unsigned   seed, i, j, len, bad;
    char       junk[64], out[3 * 64], quoted[512];
    json_t    *v;
    vq_buf_t   b;
    size_t     n;

    seed = 777;
    bad = 0;
    vq_buf_init(&b);

    for (i = 0; i < 5000; i++) {
        len = rand_r(&seed) % sizeof(junk);
        for (j = 0; j < len; j++) {
            switch (rand_r(&seed) % 3) {
            case 0:  junk[j] = (char) (0x80 + rand_r(&seed) % 128); break;
            case 1:  junk[j] = "a\0\xc3\xa9\xe2\x82\xac\xf0\x9f"[rand_r(&seed) % 10]; break;
            default: junk[j] = (char) (rand_r(&seed) % 256);
            }
        }

        n = vq_utf8_repair(out, junk, len);
        bad += n != vq_utf8_repaired_len(junk, len);

        vq_buf_reset(&b);
        vq_json_string(&b, junk, len);
        if (b.len >= sizeof(quoted)) {
            bad++;
            continue;
        }
        memcpy(quoted, b.data, b.len);
        quoted[b.len] = '\0';

        v = json_loads(quoted, JSON_DECODE_ANY, NULL);
        bad += v == NULL || json_string_length(v) != n
               || memcmp(json_string_value(v), out, n) != 0;
        json_decref(v);
    }

    CHECK_INT(bad, 0);

    CHECK_INT(vq_utf8_repaired_len("caf\xc3\xa9 ok", 8), 8);
    CHECK_INT(vq_utf8_repaired_len("12345678\xff", 9), 11);
    CHECK_INT(vq_utf8_repaired_len("1234567\0", 8), 10);
    n = vq_utf8_repair(out, HOSTILE, HOSTILE_LEN);
    CHECK(n == sizeof(REPAIRED) - 1 && memcmp(out, REPAIRED, n) == 0);

    vq_buf_free(&b);
}

/* The inline tests for plain strings: every length, an odd byte anywhere. */
static void
test_plain_tests(void)
{
    static const char  odd_json[] = { '"', '\\', 0x01, 0x1f, 0x00, (char) 0x80,
                                      (char) 0xff };
    static const char  odd_utf8[] = { 0x00, (char) 0x80, (char) 0xc3,
                                      (char) 0xff };
    char      s[40];
    size_t    len, pos, k;
    unsigned  bad;

    bad = 0;

    for (len = 0; len < sizeof(s); len++) {
        memset(s, 'a', sizeof(s));
        s[len] = '"';       /* past the end: must not be read as part of it */
        bad += !vq_json_plain(s, len) || !vq_utf8_plain(s, len);

        for (pos = 0; pos < len; pos++) {
            for (k = 0; k < sizeof(odd_json); k++) {
                memset(s, '~', len);
                s[pos] = odd_json[k];
                bad += vq_json_plain(s, len);
            }

            for (k = 0; k < sizeof(odd_utf8); k++) {
                memset(s, ' ', len);
                s[pos] = odd_utf8[k];
                bad += vq_utf8_plain(s, len);
            }

            /* plain for UTF-8, not for JSON */
            memset(s, 'z', len);
            s[pos] = '\\';
            bad += !vq_utf8_plain(s, len) || vq_json_plain(s, len);
        }
    }

    CHECK_INT(bad, 0);
}

int
main(void)
{
    const char  *dir, *slash;
    char         path[1100];

    dir = getenv("VQ_TEST_DIR");
    if (dir == NULL) {
        slash = strrchr(__FILE__, '/');
        dir = slash ? __FILE__ : ".";
        snprintf(test_dir, sizeof(test_dir), "%.*s",
                 slash ? (int) (slash - __FILE__) : 1, dir);
    } else {
        snprintf(test_dir, sizeof(test_dir), "%s", dir);
    }

    snprintf(path, sizeof(path), "%s/otlp_trace.proto", test_dir);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "test_otlp: no %s: run from the repository's root, "
                "or set VQ_TEST_DIR to sdk/tests\n", path);
    }

    test_server_span();
    test_server_errors();
    test_client_spans();
    test_resource();
    test_hostile_bytes();
    test_truncated_and_derived();
    test_extreme_times();
    test_invalid_records_skipped();
    test_length_widths();
    test_buffer();
    test_walker();
    test_utf8_repair();
    test_plain_tests();

    return check_summary("test_otlp");
}
