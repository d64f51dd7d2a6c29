/*
 * A strict walker over an OTLP ExportTraceServiceRequest in protobuf
 * binary, for the tests and the fuzz target (no protoc in a fuzz loop).
 *
 * It knows the messages and fields the encoder may write (those of
 * otlp_trace.proto) and checks every tag, wire type and length, that
 * varints are minimal, ids are 16 or 8 bytes, and every string is UTF-8
 * without NUL.  Written apart from the encoder and from json.c, so that it
 * does not share their mistakes.
 */

#ifndef VQ_TEST_OTLP_WALK_H
#define VQ_TEST_OTLP_WALK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
    OW_REQUEST, OW_RESOURCE_SPANS, OW_RESOURCE, OW_SCOPE_SPANS, OW_SCOPE,
    OW_SPAN, OW_STATUS, OW_KV, OW_ANY, OW_ARRAY, OW_KVLIST, OW_MESSAGES
};

enum {
    OW_NONE, OW_VARINT, OW_I64, OW_I32, OW_STRING, OW_BYTES, OW_ID16, OW_ID8,
    OW_MESSAGE
};

typedef struct {
    uint8_t  type;
    uint8_t  message;       /* OW_MESSAGE: which */
} ow_field_t;

#define OW_MAX_FIELD  16

static const ow_field_t  ow_schema[OW_MESSAGES][OW_MAX_FIELD + 1] = {
    [OW_REQUEST] = {
        [1] = { OW_MESSAGE, OW_RESOURCE_SPANS },
    },
    [OW_RESOURCE_SPANS] = {
        [1] = { OW_MESSAGE, OW_RESOURCE },
        [2] = { OW_MESSAGE, OW_SCOPE_SPANS },
    },
    [OW_RESOURCE] = {
        [1] = { OW_MESSAGE, OW_KV },
    },
    [OW_SCOPE_SPANS] = {
        [1] = { OW_MESSAGE, OW_SCOPE },
        [2] = { OW_MESSAGE, OW_SPAN },
    },
    [OW_SCOPE] = {
        [1] = { OW_STRING, 0 },
        [2] = { OW_STRING, 0 },
        [3] = { OW_MESSAGE, OW_KV },
    },
    [OW_SPAN] = {
        [1] = { OW_ID16, 0 },
        [2] = { OW_ID8, 0 },
        [3] = { OW_STRING, 0 },
        [4] = { OW_ID8, 0 },
        [5] = { OW_STRING, 0 },
        [6] = { OW_VARINT, 0 },
        [7] = { OW_I64, 0 },
        [8] = { OW_I64, 0 },
        [9] = { OW_MESSAGE, OW_KV },
        [15] = { OW_MESSAGE, OW_STATUS },
        [16] = { OW_I32, 0 },
    },
    [OW_STATUS] = {
        [2] = { OW_STRING, 0 },
        [3] = { OW_VARINT, 0 },
    },
    [OW_KV] = {
        [1] = { OW_STRING, 0 },
        [2] = { OW_MESSAGE, OW_ANY },
    },
    [OW_ANY] = {
        [1] = { OW_STRING, 0 },
        [2] = { OW_VARINT, 0 },
        [3] = { OW_VARINT, 0 },
        [4] = { OW_I64, 0 },
        [5] = { OW_MESSAGE, OW_ARRAY },
        [6] = { OW_MESSAGE, OW_KVLIST },
        [7] = { OW_BYTES, 0 },
    },
    [OW_ARRAY] = {
        [1] = { OW_MESSAGE, OW_ANY },
    },
    [OW_KVLIST] = {
        [1] = { OW_MESSAGE, OW_KV },
    },
};

typedef struct {
    size_t       messages[OW_MESSAGES];   /* how many of each */
    const char  *error;                   /* what was wrong, or NULL */
    size_t       at;                      /* and where */
} ow_result_t;

/* Strict UTF-8 (RFC 3629), NUL refused too: the encoders replace it. */
static int
ow_utf8(const uint8_t *s, size_t len)
{
    size_t    i, n, k;
    uint32_t  c, min;

    for (i = 0; i < len; i += n) {
        c = s[i];

        if (c == 0) {
            return 0;
        }

        if (c < 0x80) {
            n = 1;
            continue;
        }

        if ((c & 0xe0) == 0xc0) {
            n = 2; c &= 0x1f; min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3; c &= 0x0f; min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4; c &= 0x07; min = 0x10000;
        } else {
            return 0;
        }

        if (len - i < n) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            c = (c << 6) | (s[i + k] & 0x3f);
        }

        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}

/* a minimal varint at *p (< end): 1 and *v, or 0 */
static int
ow_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t  *s = *p;
    unsigned        shift;

    *v = 0;

    for (shift = 0; shift < 70; shift += 7) {
        if (s == end) {
            return 0;
        }

        *v |= (uint64_t) (*s & 0x7f) << shift;

        if (!(*s & 0x80)) {
            if (*s == 0 && s != *p) {
                return 0;           /* a longer form than needed */
            }
            if (shift == 63 && *s > 1) {
                return 0;
            }
            *p = s + 1;
            return 1;
        }

        s++;
    }

    return 0;
}

#define OW_FAIL(r, what, pos)                                               \
    do { (r)->error = (what); (r)->at = (pos); return 0; } while (0)

static int
ow_message(const uint8_t *start, const uint8_t *p, const uint8_t *end,
    unsigned msg, unsigned depth, ow_result_t *r)
{
    const ow_field_t  *f;
    const uint8_t     *field_at;
    uint64_t           tag, v;
    unsigned           number, wire;

    r->messages[msg]++;

    if (depth > 16) {
        OW_FAIL(r, "nested too deep", p - start);
    }

    while (p < end) {
        field_at = p;

        if (!ow_varint(&p, end, &tag)) {
            OW_FAIL(r, "bad tag varint", field_at - start);
        }

        number = (unsigned) (tag >> 3);
        wire = tag & 7;

        if (number == 0 || number > OW_MAX_FIELD || tag >> 32) {
            OW_FAIL(r, "unknown field", field_at - start);
        }

        f = &ow_schema[msg][number];

        switch (f->type) {
        case OW_NONE:
            OW_FAIL(r, "unknown field", field_at - start);

        case OW_VARINT:
            if (wire != 0 || !ow_varint(&p, end, &v)) {
                OW_FAIL(r, "bad varint field", field_at - start);
            }
            break;

        case OW_I64:
            if (wire != 1 || end - p < 8) {
                OW_FAIL(r, "bad fixed64 field", field_at - start);
            }
            p += 8;
            break;

        case OW_I32:
            if (wire != 5 || end - p < 4) {
                OW_FAIL(r, "bad fixed32 field", field_at - start);
            }
            p += 4;
            break;

        default:
            if (wire != 2 || !ow_varint(&p, end, &v)
                || v > (uint64_t) (end - p))
            {
                OW_FAIL(r, "bad length", field_at - start);
            }

            if (f->type == OW_STRING && !ow_utf8(p, v)) {
                OW_FAIL(r, "string not UTF-8 (or NUL)", p - start);
            }

            if ((f->type == OW_ID16 && v != 16)
                || (f->type == OW_ID8 && v != 8))
            {
                OW_FAIL(r, "id of a wrong length", p - start);
            }

            if (f->type == OW_MESSAGE
                && !ow_message(start, p, p + v, f->message, depth + 1, r))
            {
                return 0;
            }

            p += v;
        }
    }

    return 1;
}

/* 1 if body is a well-formed request; r says what it holds or what was wrong */
static int
otlp_walk(const void *body, size_t len, ow_result_t *r)
{
    const uint8_t  *p = body;

    memset(r, 0, sizeof(ow_result_t));

    return ow_message(p, p, p + len, OW_REQUEST, 0, r);
}

#endif /* VQ_TEST_OTLP_WALK_H */
