/*
 * W3C Trace Context (Level 2): the traceparent and tracestate headers.
 *
 * Parsing and validation read exactly the bytes they are given (header
 * values are not NUL-terminated), allocate nothing and keep no state, so
 * they can run on the request path of any thread.
 */

#ifndef VAQUERO_TRACECONTEXT_H
#define VAQUERO_TRACECONTEXT_H

#include <stddef.h>
#include <stdint.h>
#include <vaquero/ids.h>

#define VQ_TRACEPARENT_LEN          55     /* "00-" 32 hex "-" 16 hex "-" 2 hex */

/*
 * trace-flags.  Version 00 defines two bits; the others are reserved and
 * a sender must send them as zero.  The spec asks for the same treatment
 * of a higher version's flags: keep the bits this version knows, send the
 * rest as zero.  When a trace is continued (same trace id), the random
 * bit must go out exactly as it came in.
 */
#define VQ_TRACE_FLAG_SAMPLED       0x01
#define VQ_TRACE_FLAG_RANDOM        0x02   /* Level 2 "random" flag */
#define VQ_TRACE_FLAGS_KNOWN        (VQ_TRACE_FLAG_SAMPLED | VQ_TRACE_FLAG_RANDOM)

#define VQ_TRACESTATE_MAX_MEMBERS   32

typedef struct {
    uint8_t  version;
    uint8_t  flags;                         /* trace-flags as received */
    uint8_t  trace_id[VQ_TRACE_ID_SIZE];
    uint8_t  parent_id[VQ_SPAN_ID_SIZE];
} vq_traceparent_t;

/*
 * One traceparent header value; spaces and tabs around it are ignored.
 * VQ_OK, or VQ_EINVAL and *tp untouched: then the caller starts a new
 * trace and forwards no tracestate.  A version above 00 is read by the
 * version-00 layout: its first 55 characters, then the end or a "-".
 */
int vq_traceparent_parse(const char *value, size_t len, vq_traceparent_t *tp);

/*
 * "00-<trace>-<parent>-<flags>" in lowercase hex: exactly
 * VQ_TRACEPARENT_LEN bytes, no NUL.  flags are written as given.
 */
void vq_traceparent_format(const uint8_t trace_id[VQ_TRACE_ID_SIZE],
    const uint8_t parent_id[VQ_SPAN_ID_SIZE], uint8_t flags, char *out);

/*
 * A whole tracestate value (several tracestate headers joined with "," by
 * the caller, in the order received).  VQ_OK when it is a well-formed
 * list: at most 32 non-empty members, each key and value valid, no key
 * twice; empty members and spaces or tabs around members are allowed, and
 * so is an empty value.  VQ_EINVAL otherwise.
 */
int vq_tracestate_validate(const char *value, size_t len);

/*
 * The value of key's member in a tracestate (as for validate: the whole
 * list is checked), without the OWS around it: VQ_OK with *member_value
 * pointing into value, VQ_EEMPTY when no member has that key, VQ_EINVAL
 * when the list is not a valid tracestate or key is not a valid key.  The
 * outputs are written only with VQ_OK.
 */
int vq_tracestate_get(const char *value, size_t len,
    const char *key, size_t key_len,
    const char **member_value, size_t *member_value_len);

/*
 * Writes into out (out_size bytes) the tracestate "key=member_value"
 * followed by the members of value in their order, without the old member
 * of that key, without empty members or the spaces around members; past
 * 32 members the rightmost are dropped.  No NUL is written.
 *
 * Returns the length written, or VQ_EINVAL (bad key or member value, or
 * value is not a valid tracestate) or VQ_EFULL (out_size too small).
 * value may be empty (len 0, value may then be NULL).  out must not
 * overlap the inputs; out_size >= len + key_len + member_value_len + 2 is
 * always enough.
 */
int vq_tracestate_put(const char *value, size_t len,
    const char *key, size_t key_len,
    const char *member_value, size_t member_value_len,
    char *out, size_t out_size);

/*
 * Writes into out the members of value other than key's, in their order,
 * without empty members or the spaces around members; no NUL.  Returns
 * the length written (0 when nothing is left), or VQ_EINVAL (bad key, or
 * value is not a valid tracestate) or VQ_EFULL (out_size too small;
 * out_size >= len is always enough).  out must not overlap value.
 */
int vq_tracestate_del(const char *value, size_t len,
    const char *key, size_t key_len, char *out, size_t out_size);

#endif /* VAQUERO_TRACECONTEXT_H */
