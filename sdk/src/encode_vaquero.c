/*
 * The Vaquero batch body (DESIGN section 6), what the Vaquero Python SDK
 * 0.1 posts to /api/v1/traces/batch:
 *
 *   {"traces":[...], "agents":[...], "dependencies":[...]}
 *
 * A span without a parent is a trace; one with a parent is an agent; an
 * agent whose parent is an agent in the same batch adds a dependency.
 *
 * Written straight into the buffer rather than built as a jansson tree:
 * the same trace item as a jansson tree plus json_dumps() measured 18-20
 * us per span, this 0.45-0.5 us (100-span batches, 1 KB per span).  The
 * tests and the fuzz target parse the output back with jansson.
 */

#include <stdlib.h>
#include <time.h>

#include <vaquero/vaquero.h>
#include "json.h"

typedef struct {
    int64_t  sec;
    char     text[VQ_ISO_TIME_LEN];
} iso_cache_t;

void
vq_format_iso_time(int64_t unix_us, char *out)
{
    struct tm  tm;
    time_t     sec;
    int64_t    us;
    int        i;

    sec = (time_t) (unix_us / 1000000);
    us = unix_us % 1000000;
    if (us < 0) {
        us += 1000000;
        sec--;
    }

    gmtime_r(&sec, &tm);

    /* YYYY-MM-DDTHH:MM:SS.uuuuuuZ; years past 9999 are not supported */
    out[0] = (char) ('0' + (tm.tm_year + 1900) / 1000 % 10);
    out[1] = (char) ('0' + (tm.tm_year + 1900) / 100 % 10);
    out[2] = (char) ('0' + (tm.tm_year + 1900) / 10 % 10);
    out[3] = (char) ('0' + (tm.tm_year + 1900) % 10);
    out[4] = '-';
    out[5] = (char) ('0' + (tm.tm_mon + 1) / 10);
    out[6] = (char) ('0' + (tm.tm_mon + 1) % 10);
    out[7] = '-';
    out[8] = (char) ('0' + tm.tm_mday / 10);
    out[9] = (char) ('0' + tm.tm_mday % 10);
    out[10] = 'T';
    out[11] = (char) ('0' + tm.tm_hour / 10);
    out[12] = (char) ('0' + tm.tm_hour % 10);
    out[13] = ':';
    out[14] = (char) ('0' + tm.tm_min / 10);
    out[15] = (char) ('0' + tm.tm_min % 10);
    out[16] = ':';
    out[17] = (char) ('0' + tm.tm_sec / 10);
    out[18] = (char) ('0' + tm.tm_sec % 10);
    out[19] = '.';

    for (i = 25; i >= 20; i--) {
        out[i] = (char) ('0' + us % 10);
        us /= 10;
    }

    out[26] = 'Z';
}

/*
 * end - start, 0 if negative; without overflow for any record, however
 * damaged (times are int64 and may be anything in a hostile record).
 */
static int64_t
duration_us(const vq_span_t *span)
{
    if (span->h.end_us <= span->h.start_us) {
        return 0;
    }

    if (span->h.start_us < 0 && span->h.end_us > INT64_MAX + span->h.start_us)
    {
        return INT64_MAX;
    }

    return span->h.end_us - span->h.start_us;
}

/* gmtime_r() once per second of timestamps, not once per timestamp */
static void
write_time(vq_buf_t *b, iso_cache_t *cache, int64_t unix_us)
{
    int64_t  sec, us;
    int      i;

    sec = unix_us / 1000000;
    us = unix_us % 1000000;

    if (us < 0 || sec != cache->sec) {
        vq_format_iso_time(unix_us, cache->text);
        cache->sec = us < 0 ? -1 : sec;

    } else {
        for (i = 25; i >= 20; i--) {
            cache->text[i] = (char) ('0' + us % 10);
            us /= 10;
        }
    }

    vq_buf_append(b, "\"", 1);
    vq_buf_append(b, cache->text, VQ_ISO_TIME_LEN);
    vq_buf_append(b, "\"", 1);
}

static void
write_id(vq_buf_t *b, const uint8_t *id, size_t size)
{
    char  hex[2 * VQ_TRACE_ID_SIZE + 2];

    hex[0] = '"';
    vq_id_to_hex(id, size, hex + 1);
    hex[2 * size + 1] = '"';
    vq_buf_append(b, hex, 2 * size + 2);
}

static void
write_uuid(vq_buf_t *b, const uint8_t *id)
{
    char  uuid[VQ_UUID_LEN + 2];

    uuid[0] = '"';
    vq_trace_id_to_uuid(id, uuid + 1);
    uuid[VQ_UUID_LEN + 1] = '"';
    vq_buf_append(b, uuid, sizeof(uuid));
}

/* prefix (',"key":"' or '"'), the escaped field, '"'; nothing if unset */
static void
write_field(vq_buf_t *b, const char *prefix, size_t prefix_len,
    const vq_span_t *span, vq_span_field_t field)
{
    if (span->h.str[field].off == 0) {
        return;
    }

    vq_buf_append(b, prefix, prefix_len);
    vq_json_escape(b, (const char *) span + span->h.str[field].off,
                   span->h.str[field].len);
    vq_json_lit(b, "\"");
}

#define write_str_attr(b, key, span, field)                                  \
    write_field(b, ",\"" key "\":\"", sizeof(",\"" key "\":\"") - 1,      \
                span, field)


static void
write_field_or_null(vq_buf_t *b, const vq_span_t *span, vq_span_field_t field)
{
    if (span->h.str[field].off == 0) {
        vq_json_lit(b, "null");
        return;
    }

    write_field(b, "\"", 1, span, field);
}


/* the span's name, quoted; unset: "<method> <route>", or "HTTP" with no method */
static void
write_name(vq_buf_t *b, const vq_span_t *span)
{
    const char  *s;
    size_t       len;

    if (span->h.str[VQ_FIELD_NAME].off != 0) {
        write_field(b, "\"", 1, span, VQ_FIELD_NAME);
        return;
    }

    vq_json_lit(b, "\"");

    s = vq_span_str(span, VQ_FIELD_METHOD, &len);
    if (len) {
        vq_json_escape(b, s, len);
    } else {
        vq_json_lit(b, "HTTP");
    }

    s = vq_span_str(span, VQ_FIELD_ROUTE, &len);
    if (len) {
        vq_json_lit(b, " ");
        vq_json_escape(b, s, len);
    }

    vq_json_lit(b, "\"");
}


/*
 * The agent name; unset: the route (the location of a server span, the
 * upstream of a client span), else null.
 */
static void
write_agent_name(vq_buf_t *b, const vq_span_t *span)
{
    write_field_or_null(b, span,
                        span->h.str[VQ_FIELD_AGENT_NAME].off != 0
                        ? VQ_FIELD_AGENT_NAME : VQ_FIELD_ROUTE);
}

/* url.full, put together here rather than stored twice in the record */
static void
write_url(vq_buf_t *b, const vq_span_t *span)
{
    const char  *s;
    size_t       len;

    vq_json_lit(b, ",\"url\":\"");

    s = vq_span_str(span, VQ_FIELD_SCHEME, &len);
    vq_json_escape(b, s, len);
    vq_json_lit(b, "://");
    s = vq_span_str(span, VQ_FIELD_HOST, &len);
    vq_json_escape(b, s, len);

    if (span->h.server_port != 0
        && !(span->h.server_port == 80 && span->h.str[VQ_FIELD_SCHEME].len == 4)
        && !(span->h.server_port == 443
             && span->h.str[VQ_FIELD_SCHEME].len == 5))
    {
        vq_json_lit(b, ":");
        vq_json_int(b, span->h.server_port);
    }

    s = vq_span_str(span, VQ_FIELD_PATH, &len);
    vq_json_escape(b, s, len);

    if (span->h.str[VQ_FIELD_QUERY].off != 0) {
        vq_json_lit(b, "?");
        s = vq_span_str(span, VQ_FIELD_QUERY, &len);
        vq_json_escape(b, s, len);
    }

    vq_json_lit(b, "\"");
}

/* ,"key":N for a time in ms that nginx may not have reached (-1) */
static void
write_ms(vq_buf_t *b, const char *prefix, size_t prefix_len, int32_t ms)
{
    if (ms >= 0) {
        vq_buf_append(b, prefix, prefix_len);
        vq_json_int(b, ms);
    }
}

#define write_ms_attr(b, key, ms)                                            \
    write_ms(b, ",\"" key "\":", sizeof(",\"" key "\":") - 1, ms)


/* an upstream attempt: the peer, what nginx measured, what went wrong */
static void
write_client_attributes(vq_buf_t *b, const vq_span_t *span)
{
    vq_json_lit(b, "{\"attempt\":");
    vq_json_int(b, span->h.attempt);

    if (span->h.status_code) {
        vq_json_lit(b, ",\"status_code\":");
        vq_json_int(b, span->h.status_code);
    }

    write_str_attr(b, "method", span, VQ_FIELD_METHOD);
    write_str_attr(b, "upstream", span, VQ_FIELD_ROUTE);
    write_str_attr(b, "host", span, VQ_FIELD_HOST);
    vq_json_lit(b, ",\"server_port\":");
    vq_json_int(b, span->h.server_port);

    write_ms_attr(b, "connect_time_ms", span->h.connect_ms);
    write_ms_attr(b, "header_time_ms", span->h.header_ms);
    vq_json_lit(b, ",\"response_time_ms\":");
    vq_json_milli(b, duration_us(span));

    vq_json_lit(b, ",\"bytes_sent\":");
    vq_json_int(b, span->h.request_body_size);
    vq_json_lit(b, ",\"bytes_received\":");
    vq_json_int(b, span->h.response_body_size);

    vq_json_lit(b, "}");
}

static void
write_attributes(vq_buf_t *b, const vq_span_t *span)
{
    if (span->h.kind == VQ_SPAN_CLIENT) {
        write_client_attributes(b, span);
        return;
    }

    vq_json_lit(b, "{\"status_code\":");
    vq_json_int(b, span->h.status_code);

    vq_json_lit(b, ",\"response_time_ms\":");
    vq_json_milli(b, duration_us(span));

    write_str_attr(b, "method", span, VQ_FIELD_METHOD);
    write_url(b, span);
    write_str_attr(b, "url.path", span, VQ_FIELD_PATH);
    write_str_attr(b, "url.query", span, VQ_FIELD_QUERY);
    write_str_attr(b, "url.scheme", span, VQ_FIELD_SCHEME);
    write_str_attr(b, "route", span, VQ_FIELD_ROUTE);

    vq_json_lit(b, ",\"request_size_bytes\":");
    vq_json_int(b, span->h.request_body_size);
    vq_json_lit(b, ",\"response_size_bytes\":");
    vq_json_int(b, span->h.response_body_size);

    write_str_attr(b, "user_agent", span, VQ_FIELD_USER_AGENT);
    write_str_attr(b, "content_type", span, VQ_FIELD_CONTENT_TYPE);
    write_str_attr(b, "client_ip", span, VQ_FIELD_CLIENT_ADDRESS);

    vq_json_lit(b, ",\"client_port\":");
    vq_json_int(b, span->h.client_port);

    write_str_attr(b, "host", span, VQ_FIELD_HOST);

    vq_json_lit(b, ",\"server_port\":");
    vq_json_int(b, span->h.server_port);

    write_str_attr(b, "http_version", span, VQ_FIELD_PROTOCOL_VERSION);
    write_str_attr(b, "request_id", span, VQ_FIELD_REQUEST_ID);

    vq_json_lit(b, "}");
}

/* a captured header's values, one per line in the record: "a, b" */
static void
write_lines(vq_buf_t *b, const char *s, size_t len)
{
    const char  *nl, *end;

    vq_json_lit(b, "\"");

    for (end = s + len; ; s = nl + 1) {
        nl = memchr(s, '\n', end - s);
        vq_json_escape(b, s, (nl ? nl : end) - s);

        if (nl == NULL) {
            break;
        }

        vq_json_lit(b, ", ");
    }

    vq_json_lit(b, "\"");
}

static void
write_tags(vq_buf_t *b, const vq_span_t *span)
{
    const char  *s;
    size_t       len;
    unsigned     i;
    int          header;

    vq_json_lit(b, "{");

    for (i = 0; i < span->h.nattrs; i++) {
        if (i > 0) {
            vq_json_lit(b, ",");
        }

        s = vq_span_attr_key(span, i, &len);
        vq_json_string(b, s, len);
        vq_json_lit(b, ":");

        header = (len > 20 && memcmp(s, "http.request.header.", 20) == 0)
                 || (len > 21 && memcmp(s, "http.response.header.", 21) == 0);

        s = vq_span_attr_value(span, i, &len);

        if (header) {
            write_lines(b, s, len);
        } else {
            vq_json_string(b, s, len);
        }
    }

    if (span->h.truncated) {
        if (i++ > 0) {
            vq_json_lit(b, ",");
        }
        vq_json_lit(b, "\"vaquero.truncated\":\"true\"");
    }

    /* not in the ratio sample: counting it would skew adjusted counts */
    if (span->h.flags & (VQ_SPAN_KEPT_ERROR | VQ_SPAN_KEPT_SLOW)) {
        if (i > 0) {
            vq_json_lit(b, ",");
        }

        if (span->h.flags & VQ_SPAN_KEPT_ERROR) {
            vq_json_lit(b, "\"vaquero.kept\":\"error\"");
        } else {
            vq_json_lit(b, "\"vaquero.kept\":\"slow\"");
        }
    }

    vq_json_lit(b, "}");
}

/* times and status, the same in traces[] and agents[] items */
static void
write_common(vq_buf_t *b, iso_cache_t *cache, const vq_span_t *span)
{
    vq_json_lit(b, ",\"start_time\":");
    write_time(b, cache, span->h.start_us);
    vq_json_lit(b, ",\"end_time\":");
    write_time(b, cache, span->h.end_us);
    vq_json_lit(b, ",\"duration_ms\":");
    vq_json_int(b, duration_us(span) / 1000);

    if (span->h.flags & VQ_SPAN_ERROR) {
        vq_json_lit(b, ",\"status\":\"failed\"");
    } else {
        vq_json_lit(b, ",\"status\":\"completed\"");
    }
}

/*
 * The parts of a trace item that are the same for every span, escaped
 * once per batch rather than once per span.
 */
typedef struct {
    vq_buf_t  env;      /* ,"environment":..,"hostname":..,"sdk_version":.. */
    vq_buf_t  meta;     /* ,"service_name":..,"project_id":..}}} */
} fixed_parts_t;

static void
fixed_parts_init(fixed_parts_t *f, const vq_resource_t *res)
{
    vq_buf_init(&f->env);
    vq_buf_init(&f->meta);

    vq_json_lit(&f->env, ",\"environment\":");
    vq_json_cstring(&f->env, res->environment);
    vq_json_lit(&f->env, ",\"hostname\":");
    vq_json_cstring(&f->env, res->hostname);
    vq_json_lit(&f->env, ",\"sdk_version\":");
    vq_json_cstring(&f->env, res->sdk_version);

    vq_json_lit(&f->meta, ",\"service_name\":");
    vq_json_cstring(&f->meta, res->service_name);
    vq_json_lit(&f->meta, ",\"project_id\":");
    if (res->project_id) {
        vq_json_cstring(&f->meta, res->project_id);
    } else {
        vq_json_lit(&f->meta, "null");
    }
    vq_json_lit(&f->meta, "}}}");
}

static void
fixed_parts_free(fixed_parts_t *f)
{
    vq_buf_free(&f->env);
    vq_buf_free(&f->meta);
}

static void
write_trace(vq_buf_t *b, iso_cache_t *cache, const fixed_parts_t *fixed,
    const vq_span_t *span)
{
    vq_json_lit(b, "{\"trace_id\":");
    write_uuid(b, span->h.trace_id);
    vq_json_lit(b, ",\"name\":");
    write_name(b, span);

    write_common(b, cache, span);

    vq_json_lit(b, ",\"error_count\":");
    vq_json_int(b, (span->h.flags & VQ_SPAN_ERROR) ? 1 : 0);
    vq_buf_append(b, fixed->env.data, fixed->env.len);

    vq_json_lit(b, ",\"tags\":");
    write_tags(b, span);

    vq_json_lit(b, ",\"raw_data\":{\"attributes\":");
    write_attributes(b, span);

    vq_json_lit(b, ",\"metadata\":{\"span_id\":");
    write_id(b, span->h.span_id, VQ_SPAN_ID_SIZE);
    vq_json_lit(b, ",\"parent_span_id\":null,\"agent_name\":");
    write_agent_name(b, span);
    vq_buf_append(b, fixed->meta.data, fixed->meta.len);
}

/* error_type and error_message of a failed agent */
static void
write_error(vq_buf_t *b, const vq_span_t *span)
{
    static const char  *types[] = {
        "HTTPError", "HTTPError", "timeout", "connect_error",
        "no_live_upstreams", "response_error"
    };
    static const char  *messages[] = {
        NULL, NULL, "upstream timed out", "cannot connect to upstream",
        "no live upstreams", "invalid upstream response or connection reset"
    };

    vq_json_lit(b, ",\"error_type\":");
    vq_json_cstring(b, types[span->h.error]);
    vq_json_lit(b, ",\"error_message\":");

    if (messages[span->h.error] == NULL) {
        vq_json_lit(b, "\"HTTP ");
        vq_json_int(b, span->h.status_code);
        vq_json_lit(b, "\"");

    } else {
        vq_json_cstring(b, messages[span->h.error]);
    }
}

/*
 * As SDK 0.1's batch processor builds an agent: "name" and "type" are both
 * the agent name; the span's own name and kind go into raw_data.
 */
static void
write_agent(vq_buf_t *b, iso_cache_t *cache, const vq_span_t *span)
{
    vq_json_lit(b, "{\"trace_id\":");
    write_uuid(b, span->h.trace_id);
    vq_json_lit(b, ",\"agent_id\":");
    write_id(b, span->h.span_id, VQ_SPAN_ID_SIZE);
    vq_json_lit(b, ",\"name\":");
    write_agent_name(b, span);
    vq_json_lit(b, ",\"type\":");
    write_agent_name(b, span);

    write_common(b, cache, span);

    if (span->h.flags & VQ_SPAN_ERROR) {
        write_error(b, span);
    }

    vq_json_lit(b, ",\"tags\":");
    write_tags(b, span);

    vq_json_lit(b, ",\"raw_data\":{\"span_name\":");
    write_name(b, span);

    if (span->h.kind == VQ_SPAN_CLIENT) {
        vq_json_lit(b, ",\"span_kind\":\"client\"");
    } else {
        vq_json_lit(b, ",\"span_kind\":\"server\"");
    }

    vq_json_lit(b, ",\"attributes\":");
    write_attributes(b, span);
    vq_json_lit(b, ",\"parent_span_id\":");
    write_id(b, span->h.parent_span_id, VQ_SPAN_ID_SIZE);

    vq_json_lit(b, "}}");
}

/*
 * Agent span ids of the batch in an open-addressing table, so that
 * finding each agent's parent costs O(1) rather than a scan.
 */
static size_t
id_hash(const uint8_t *id, size_t mask)
{
    uint64_t  v;

    memcpy(&v, id, sizeof(v));
    return (size_t) ((v * 0x9e3779b97f4a7c15ULL) >> 17) & mask;
}

static void
write_dependencies(vq_buf_t *b, const vq_span_t *const *spans,
    const unsigned char *valid, size_t n)
{
    const vq_span_t  *parent;
    size_t            size, mask, i, j, written;
    ssize_t          *table;

    for (size = 16; size < 2 * n; size *= 2) { /* void */ }
    mask = size - 1;

    table = malloc(size * sizeof(ssize_t));
    if (table == NULL) {
        b->failed = 1;
        return;
    }

    for (i = 0; i < size; i++) {
        table[i] = -1;
    }

    for (i = 0; i < n; i++) {
        if (!valid[i] || !(spans[i]->h.flags & VQ_SPAN_HAS_PARENT)) {
            continue;
        }

        for (j = id_hash(spans[i]->h.span_id, mask); table[j] != -1;
             j = (j + 1) & mask)
        { /* void */ }

        table[j] = (ssize_t) i;
    }

    written = 0;

    for (i = 0; i < n; i++) {
        if (!valid[i] || !(spans[i]->h.flags & VQ_SPAN_HAS_PARENT)) {
            continue;
        }

        for (j = id_hash(spans[i]->h.parent_span_id, mask); table[j] != -1;
             j = (j + 1) & mask)
        {
            parent = spans[table[j]];

            if (memcmp(parent->h.span_id, spans[i]->h.parent_span_id,
                       VQ_SPAN_ID_SIZE) != 0
                || memcmp(parent->h.trace_id, spans[i]->h.trace_id,
                          VQ_TRACE_ID_SIZE) != 0)
            {
                continue;
            }

            if (written++) {
                vq_json_lit(b, ",");
            }
            vq_json_lit(b, "{\"trace_id\":");
            write_uuid(b, spans[i]->h.trace_id);
            vq_json_lit(b, ",\"parent_agent_id\":");
            write_id(b, parent->h.span_id, VQ_SPAN_ID_SIZE);
            vq_json_lit(b, ",\"child_agent_id\":");
            write_id(b, spans[i]->h.span_id, VQ_SPAN_ID_SIZE);
            vq_json_lit(b, ",\"dependency_type\":\"calls\"}");
            break;
        }
    }

    free(table);
}

int
vq_encode_vaquero_batch(vq_buf_t *b, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n)
{
    unsigned char  *valid;
    iso_cache_t     cache;
    fixed_parts_t   fixed;
    size_t          i, written;
    int             encoded;

    valid = malloc(n ? n : 1);
    if (valid == NULL) {
        return VQ_ENOMEM;
    }

    encoded = 0;

    for (i = 0; i < n; i++) {
        valid[i] = vq_span_validate(spans[i], VQ_SPAN_RECORD_MAX) == VQ_OK;
        encoded += valid[i];
    }

    cache.sec = -1;
    fixed_parts_init(&fixed, res);

    if (fixed.env.failed || fixed.meta.failed) {
        b->failed = 1;
    }

    vq_json_lit(b, "{\"traces\":[");

    written = 0;
    for (i = 0; i < n; i++) {
        if (valid[i] && !(spans[i]->h.flags & VQ_SPAN_HAS_PARENT)) {
            if (written++) {
                vq_json_lit(b, ",");
            }
            write_trace(b, &cache, &fixed, spans[i]);
        }
    }

    vq_json_lit(b, "],\"agents\":[");

    written = 0;
    for (i = 0; i < n; i++) {
        if (valid[i] && (spans[i]->h.flags & VQ_SPAN_HAS_PARENT)) {
            if (written++) {
                vq_json_lit(b, ",");
            }
            write_agent(b, &cache, spans[i]);
        }
    }

    vq_json_lit(b, "],\"dependencies\":[");
    write_dependencies(b, spans, valid, n);
    vq_json_lit(b, "]}");

    free(valid);
    fixed_parts_free(&fixed);

    return b->failed ? VQ_ENOMEM : encoded;
}
