/*
 * Wire formats: what each protocol puts on the wire, described as data,
 * so that the exporter thread sends any of them the same way and a new
 * format is a new description (and encoder), nothing else.
 */

#ifndef VAQUERO_PROTOCOL_H
#define VAQUERO_PROTOCOL_H

#include <stddef.h>
#include <vaquero/buf.h>
#include <vaquero/encode.h>
#include <vaquero/span.h>

typedef int (*vq_encode_pt)(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n);

typedef struct {
    const char    *name;            /* as vaquero_protocol names it */
    const char    *path;            /* appended to an http(s) endpoint */
    const char    *content_type;
    const char    *project_header;  /* carries the batch's project id, or NULL */
    int            binary;          /* not a line of text: no file endpoint */
    vq_encode_pt   encode;          /* a batch to a request body */
} vq_protocol_t;

/*
 * POST {endpoint}/api/v1/traces/batch, application/json, X-Project-ID:
 * the Vaquero batch API, as the Python SDK 0.1 sends it.
 */
extern const vq_protocol_t  vq_protocol_vaquero;

/* POST {endpoint}/v1/traces, application/x-protobuf: OTLP/HTTP protobuf. */
extern const vq_protocol_t  vq_protocol_otlp;

/* POST {endpoint}/v1/traces, application/json: OTLP/HTTP JSON. */
extern const vq_protocol_t  vq_protocol_otlp_json;

/* The protocol of that name, or NULL. */
const vq_protocol_t *vq_protocol_find(const char *name);

#endif /* VAQUERO_PROTOCOL_H */
