/*
 * Encoders: a batch of span records to a request body.
 *
 * They write JSON directly, without building a tree per span, and always
 * produce valid JSON: strings are escaped, and NUL or any byte sequence that is
 * not UTF-8 is replaced by U+FFFD.
 */

#ifndef VAQUERO_ENCODE_H
#define VAQUERO_ENCODE_H

#include <stddef.h>
#include <vaquero/buf.h>
#include <vaquero/span.h>

/* What is the same for every span of one exporter. */
typedef struct {
    const char  *service_name;
    const char  *project_id;        /* NULL: none */
    const char  *environment;       /* "production" or "development" */
    const char  *hostname;
    const char  *sdk_version;
} vq_resource_t;

/*
 * The Vaquero batch body: {"traces":[...],"agents":[...],"dependencies":[...]}.
 * Records that fail vq_span_validate() are skipped.  Returns the number
 * of spans encoded, or VQ_ENOMEM.
 */
int vq_encode_vaquero_batch(vq_buf_t *out, const vq_resource_t *res,
    const vq_span_t *const *spans, size_t n);

/* ISO-8601 UTC with microseconds and "Z": 27 characters, no NUL. */
#define VQ_ISO_TIME_LEN  27
void vq_format_iso_time(int64_t unix_us, char *out);

#endif /* VAQUERO_ENCODE_H */
