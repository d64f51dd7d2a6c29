/*
 * Head sampling: OpenTelemetry consistent probability sampling.
 *
 * A trace carries a 56-bit randomness value R, a sampler has a 56-bit
 * rejection threshold T, and a span is sampled iff R >= T, so that every
 * participant sampling at probability p2 >= p1 keeps whatever one at p1
 * kept.  T and R travel in the "ot" tracestate entry as the sub-keys th
 * and rv.  Specs, in open-telemetry/opentelemetry-specification
 * specification/trace/:
 *   tracestate-probability-sampling.md   "TraceState: Probability Sampling"
 *   tracestate-handling.md               the "ot" entry, th and rv
 *   sdk.md                               "TraceIdRatioBased", "Sampling
 *                                        Requirements"
 * and W3C Trace Context Level 2, "Random Trace ID Flag".
 *
 * Integer arithmetic only; nothing is allocated, no state is kept, and
 * parsers read exactly the bytes they are given (no NUL needed).
 */

#ifndef VAQUERO_SAMPLER_H
#define VAQUERO_SAMPLER_H

#include <stddef.h>
#include <stdint.h>
#include <vaquero/ids.h>

#define VQ_SAMPLE_BITS        56
#define VQ_SAMPLE_R_MAX       ((((uint64_t) 1) << VQ_SAMPLE_BITS) - 1)

/*
 * 2^56 ("MaxAdjustedCount"): above every R, so nothing is sampled.  The
 * threshold of p = 0, which is "not a form of probability sampling" and
 * has no th encoding.
 */
#define VQ_SAMPLE_NEVER       (((uint64_t) 1) << VQ_SAMPLE_BITS)

/* significant hex digits of a threshold: the spec recommends 4 */
#define VQ_SAMPLE_PRECISION   4
#define VQ_SAMPLE_HEX_MAX     14        /* digits of a th (at most) or rv */
#define VQ_OT_VALUE_MAX       256       /* characters of a whole ot value */

/*
 * The rejection threshold for sampling probability p:
 * (1 - p) * 2^56 rounded to `precision` significant hex digits (1 to 14),
 * plus one digit for each leading "f" that a small p gives, so that the
 * precision applies to p; trailing zeros then drop out of the th.  p = 1
 * gives 0, p = 0 gives VQ_SAMPLE_NEVER.  VQ_EINVAL for a p that is NaN,
 * outside [0, 1], or between 0 and 2^-56 (the smallest probability), or a
 * precision outside 1..14.  Exact: no floating-point arithmetic.
 */
int vq_sample_threshold(double p, unsigned precision, uint64_t *threshold);

/*
 * The th value of a threshold below VQ_SAMPLE_NEVER: lowercase hex,
 * trailing zeros removed, "0" for 0.  Writes into out (room for 14 bytes,
 * no NUL) and returns the length, 1 to 14; 0 for a threshold of
 * VQ_SAMPLE_NEVER or more, which has no encoding.
 */
size_t vq_sample_th_format(uint64_t threshold, char *out);

/* A th value: 1 to 14 lowercase hex digits, padded with trailing zeros. */
int vq_sample_th_parse(const char *s, size_t len, uint64_t *threshold);

/* An rv value: exactly 14 lowercase hex digits. */
int vq_sample_rv_parse(const char *s, size_t len, uint64_t *rv);

/* rv as 14 lowercase hex digits into out, no NUL. */
void vq_sample_rv_format(uint64_t rv, char *out);

/* R of a trace id: its rightmost 7 bytes (bytes 9 to 15), big-endian. */
uint64_t vq_sample_trace_randomness(const uint8_t trace_id[VQ_TRACE_ID_SIZE]);

/*
 * R of a sampling key (vaquero_sample_key): XXH64 of the bytes with seed
 * 0, top 56 bits, i.e. XXH64(key, 0) >> 8.  Fixed forever: a key must get
 * the same decision in every process, on every machine, in every version,
 * and in other languages (xxhash.xxh64_intdigest(key) >> 8 in Python).
 */
uint64_t vq_sample_key_randomness(const void *key, size_t len);

/* tracestate-probability-sampling.md "Decision algorithm" */
static inline int
vq_sample_decide(uint64_t randomness, uint64_t threshold)
{
    return randomness >= threshold;
}

/*
 * A parsed ot value.  value is not copied: it must stay valid until the
 * last vq_ot_format().  Between parse and format the caller may change
 * flags (VQ_OT_TH, VQ_OT_RV), th and rv, and nothing else.
 */
#define VQ_OT_TH       0x01    /* th holds a valid threshold */
#define VQ_OT_RV       0x02    /* rv holds a valid explicit randomness */
#define VQ_OT_TH_BAD   0x04    /* a th sub-key whose value is not a th */
#define VQ_OT_RV_BAD   0x08    /* an rv sub-key whose value is not an rv */

typedef struct {
    const char  *value;
    uint64_t     th;
    uint64_t     rv;
    uint16_t     len;
    uint16_t     th_start, th_end;      /* the "th:..." member in value */
    uint16_t     rv_start, rv_end;      /* the "rv:..." member */
    uint8_t      flags;
} vq_ot_t;

/*
 * The value of an "ot" tracestate member (vq_tracestate_get()): sub-keys
 * "key:value" separated by ";", keys unique, at most 256 characters in
 * all.  VQ_OK and *ot filled, or VQ_EINVAL and *ot untouched.  th and rv
 * are decoded; a th or rv sub-key with an invalid value sets *_BAD instead
 * and is left out by vq_ot_format() (it is not a threshold or randomness;
 * the rest of the entry stays usable).  Other sub-keys are kept verbatim.
 * len 0 (value may be NULL) is a trace without an ot entry: VQ_OK, empty.
 */
int vq_ot_parse(const char *value, size_t len, vq_ot_t *ot);

/*
 * Writes the ot value "th:T;rv:R;<the other sub-keys in their order>",
 * th and rv only when flagged, into out (no NUL).  Returns the length;
 * 0 when there is nothing left to send, and then the caller must send no
 * ot member (removing the incoming one).  VQ_EFULL when it would exceed
 * 256 characters (the spec asks to abort then) or out_size.  Without
 * VQ_OT_TH, and with rv as parsed (as vq_sample_head() leaves it on a
 * continued trace), the result is never longer than the parsed value: so
 * on VQ_EFULL, clear VQ_OT_TH and format again, and it fits 256.
 * VQ_EINVAL for a flagged th or rv of 2^56 or more.
 */
int vq_ot_format(const vq_ot_t *ot, char *out, size_t out_size);

/* vq_sample_head() flags: the request, and the configuration */
#define VQ_SAMPLE_CONTINUED       0x01  /* a valid incoming traceparent */
#define VQ_SAMPLE_PARENT_SAMPLED  0x02  /* ... with its sampled flag */
#define VQ_SAMPLE_PARENT_RANDOM   0x04  /* ... with its random flag */
#define VQ_SAMPLE_FOLLOW_PARENT   0x08  /* vaquero_sample_parent on */
#define VQ_SAMPLE_KEY             0x10  /* vaquero_sample_key: use key_r */

/* vq_sample_head() result bits */
#define VQ_SAMPLE_SAMPLED         0x01
/*
 * A continued trace was sampled on its trace id without the random flag
 * to confirm the id is random: sdk.md asks for a compatibility warning.
 */
#define VQ_SAMPLE_UNCONFIRMED     0x02

/*
 * The head sampling decision for one request, and the ot value to send
 * on (edited in *ot, for vq_ot_format()).
 *
 * threshold comes from vq_sample_threshold(); trace_id is the trace's id
 * (incoming, or new for a root); key_r is vq_sample_key_randomness() of
 * the key with VQ_SAMPLE_KEY.  ot is the parsed incoming ot value; for a
 * root it is reset (W3C: no traceparent, no tracestate).
 *
 *  - Continued and following the parent: the parent's sampled flag.  Its
 *    th goes on only when sampled and consistent (R >= th), else erased.
 *  - Otherwise an independent consistent decision R >= threshold, R the
 *    incoming rv, or the trace id's.  Sampled: th = threshold; not: no th.
 *  - With a key, R is the key's.  At a root rv = key_r, so that later
 *    samplers decide by the key too; on a continued trace rv may not
 *    change, the decision says nothing of the trace's R, and th is erased.
 *
 * Returns VQ_SAMPLE_* bits.
 */
int vq_sample_head(uint64_t threshold, unsigned flags,
    const uint8_t trace_id[VQ_TRACE_ID_SIZE], uint64_t key_r, vq_ot_t *ot);

#endif /* VAQUERO_SAMPLER_H */
