/*
 * Encoders: a batch of span records to a request body.
 *
 * They write straight into the buffer, without building a tree per span,
 * and always produce a valid body whatever bytes the records hold: JSON
 * strings are escaped, and in JSON and protobuf strings alike NUL or any
 * byte sequence that is not UTF-8 is replaced by U+FFFD.
 */

#ifndef VAQUERO_ENCODE_H
#define VAQUERO_ENCODE_H

#include <stddef.h>
#include <stdint.h>
#include <vaquero/buf.h>
#include <vaquero/span.h>

typedef struct {
    const char  *key;
    const char  *value;
} vq_kv_t;

/*
 * What is the same for every span of one exporter.  The fields after
 * sdk_version are for the OTLP encoders (the Vaquero batch has no
 * resource object and ignores them); left zero, they add nothing.
 */
typedef struct {
    const char     *service_name;
    const char     *project_id;       /* NULL: none */
    const char     *environment;      /* "production" or "development" */
    const char     *hostname;
    const char     *sdk_version;

    const char     *service_version;  /* NULL: none */
    const vq_kv_t  *attributes;       /* more resource attributes; one */
    size_t          nattributes;      /*   here overrides a built-in one */
} vq_resource_t;

/*
 * Each encoder skips the records that fail vq_span_validate() and returns
 * the number of spans encoded, or VQ_ENOMEM.  The body is appended to out.
 */

/* The Vaquero batch body: {"traces":[...],"agents":[...],"dependencies":[...]}. */
int vq_encode_vaquero_batch(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n);

/*
 * An OTLP ExportTraceServiceRequest (one ResourceSpans, one ScopeSpans)
 * in protobuf binary, for Content-Type: application/x-protobuf.
 */
int vq_encode_otlp_proto(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n);

/* The same message in the OTLP JSON encoding, for application/json. */
int vq_encode_otlp_json(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n);

/* ISO-8601 UTC with microseconds and "Z": 27 characters, no NUL. */
#define VQ_ISO_TIME_LEN  27
void vq_format_iso_time(int64_t unix_us, char *out);

#endif /* VAQUERO_ENCODE_H */
