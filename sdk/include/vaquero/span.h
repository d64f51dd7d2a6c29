/*
 * The span record: what the request path hands to the exporter.
 *
 * Fixed layout, bounded size, no pointers, so that it can be copied into
 * shared memory as it is and read back by another process.  Strings live
 * in the record's own data area and are referred to by offset; one that
 * does not fit is cut short (at a UTF-8 character boundary) and marked
 * in the "truncated" bit set, never overflowed.
 */

#ifndef VAQUERO_SPAN_H
#define VAQUERO_SPAN_H

#include <stddef.h>
#include <stdint.h>
#include <vaquero/ids.h>

#define VQ_SPAN_RECORD_MAX   1024
#define VQ_SPAN_MAX_ATTRS    8

typedef enum {
    VQ_SPAN_SERVER = 1,
    VQ_SPAN_CLIENT = 2
} vq_span_kind_t;

/* flags */
#define VQ_SPAN_HAS_PARENT   0x01
#define VQ_SPAN_SAMPLED      0x02
#define VQ_SPAN_ERROR        0x04
/* exported though head sampling said no, so not part of the ratio sample */
#define VQ_SPAN_KEPT_ERROR   0x08       /* a 5xx or an upstream error */
#define VQ_SPAN_KEPT_SLOW    0x10       /* slower than vaquero_sample_slow */

/* Why a client span (an upstream attempt) failed. */
typedef enum {
    VQ_SPAN_ERR_NONE = 0,
    VQ_SPAN_ERR_HTTP,           /* the upstream answered 5xx */
    VQ_SPAN_ERR_TIMEOUT,        /* connect, send or read timed out */
    VQ_SPAN_ERR_CONNECT,        /* refused, unreachable */
    VQ_SPAN_ERR_NO_LIVE,        /* every server of the upstream was down */
    VQ_SPAN_ERR_RESPONSE,       /* reset, closed early, invalid header */
    VQ_SPAN_ERR_MAX = VQ_SPAN_ERR_RESPONSE
} vq_span_error_t;

/*
 * Left unset, NAME is encoded as "<METHOD> <ROUTE>" ("HTTP" without a
 * method) and AGENT_NAME as ROUTE: derived by the exporter, not copied on
 * the request path.  In a client span, HOST is the peer's address and
 * ROUTE the upstream's name.
 */
typedef enum {
    VQ_FIELD_NAME = 0,
    VQ_FIELD_AGENT_NAME,
    VQ_FIELD_METHOD,
    VQ_FIELD_SCHEME,
    VQ_FIELD_HOST,            /* server.address */
    VQ_FIELD_PATH,
    VQ_FIELD_QUERY,
    VQ_FIELD_ROUTE,
    VQ_FIELD_USER_AGENT,
    VQ_FIELD_CONTENT_TYPE,
    VQ_FIELD_CLIENT_ADDRESS,
    VQ_FIELD_PROTOCOL_VERSION,
    VQ_FIELD_REQUEST_ID,
    VQ_FIELD_TRACESTATE,      /* as sent downstream; whole or not at all */
    VQ_FIELD_COUNT
} vq_span_field_t;

/* String slots: the named fields, then key/value pairs of custom attributes. */
#define VQ_SPAN_STR_SLOTS    (VQ_FIELD_COUNT + 2 * VQ_SPAN_MAX_ATTRS)

typedef struct {
    uint16_t  off;
    uint16_t  len;
} vq_str_ref_t;

typedef struct {
    uint16_t      size;               /* bytes in use, this header included */
    uint8_t       kind;               /* vq_span_kind_t */
    uint8_t       flags;
    uint8_t       nattrs;
    uint8_t       trace_flags;        /* W3C trace-flags sent downstream */
    uint8_t       error;              /* vq_span_error_t */
    uint8_t       reserved;
    uint32_t      truncated;          /* bit i: string slot i was cut short */
    uint32_t      generation;         /* of the configuration that made it */
    uint8_t       trace_id[VQ_TRACE_ID_SIZE];
    uint8_t       span_id[VQ_SPAN_ID_SIZE];
    uint8_t       parent_span_id[VQ_SPAN_ID_SIZE];
    int64_t       start_us;           /* Unix time, microseconds */
    int64_t       end_us;
    int64_t       request_body_size;  /* client spans: bytes sent */
    int64_t       response_body_size; /* client spans: bytes received */
    uint16_t      status_code;
    uint16_t      client_port;
    uint16_t      server_port;
    uint16_t      attempt;            /* client spans: 1, 2, ... */
    int32_t       connect_ms;         /* client spans; -1: never reached */
    int32_t       header_ms;
    vq_str_ref_t  str[VQ_SPAN_STR_SLOTS];
} vq_span_head_t;

#define VQ_SPAN_DATA_MAX  (VQ_SPAN_RECORD_MAX - sizeof(vq_span_head_t))

typedef struct {
    vq_span_head_t  h;
    char            data[VQ_SPAN_DATA_MAX];
} vq_span_t;

/* Resets the header; the data area is left as it is (it is not read). */
void vq_span_init(vq_span_t *span, vq_span_kind_t kind);

/*
 * Stores a string field.  Returns VQ_OK, VQ_ETRUNC when it was cut short,
 * VQ_EINVAL for a bad field.  Set each field at most once.
 *
 * Each field has a cap (a path 256 bytes, a query or user agent 192, a
 * span name 128, a custom attribute's key 64 and value 192), and room for
 * the short fields that identify a span (method, scheme, host, route,
 * client address, protocol, request id) is held back until they are set:
 * hostile or long values cannot empty a record.
 */
int vq_span_set_str(vq_span_t *span, vq_span_field_t field,
    const char *s, size_t len);

/* A custom attribute; VQ_EFULL when VQ_SPAN_MAX_ATTRS are already set. */
int vq_span_add_attr(vq_span_t *span, const char *key, size_t key_len,
    const char *value, size_t value_len);

/* Reading back.  A field never set reads as "" with *len == 0. */
const char *vq_span_str(const vq_span_t *span, unsigned slot, size_t *len);
const char *vq_span_attr_key(const vq_span_t *span, unsigned i, size_t *len);
const char *vq_span_attr_value(const vq_span_t *span, unsigned i,
    size_t *len);

static inline size_t
vq_span_size(const vq_span_t *span)
{
    return span->h.size;
}

/*
 * Checks a record that came from elsewhere (shared memory) before it is
 * read: sizes and offsets in range, known kind.  VQ_OK or VQ_EINVAL.
 */
int vq_span_validate(const void *rec, size_t len);

#endif /* VAQUERO_SPAN_H */
