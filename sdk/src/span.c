/*
 * The span record: building it on the request path, checking and reading
 * it on the exporter side.
 */

#include <string.h>

#include <vaquero/vaquero.h>

/*
 * The most each field may take of the record's data area, so that no
 * long value (a 4 KB query string, user agent or span name) can crowd
 * out the others.  The short fields that identify a span are marked:
 * space for those not yet set is held back from the long ones, so they
 * always fit, whatever order the fields are set in (DESIGN 6).
 */
#define ID  0x8000          /* identifying: always fits */
#define WH  0x4000          /* whole or not at all: a cut one is invalid */

#define CAP_METHOD      32
#define CAP_SCHEME      8
#define CAP_HOST        128
#define CAP_ROUTE       128
#define CAP_CLIENT      64
#define CAP_PROTOCOL    8
#define CAP_REQUEST_ID  64

/* all the identifying fields together: below it, nothing is held back */
#define CAP_IDENTIFYING  (CAP_METHOD + CAP_SCHEME + CAP_HOST + CAP_ROUTE     \
                          + CAP_CLIENT + CAP_PROTOCOL + CAP_REQUEST_ID)

static const uint16_t  field_cap[VQ_FIELD_COUNT] = {
    [VQ_FIELD_NAME]             = 128,
    [VQ_FIELD_AGENT_NAME]       = 64,
    [VQ_FIELD_METHOD]           = ID | CAP_METHOD,
    [VQ_FIELD_SCHEME]           = ID | CAP_SCHEME,
    [VQ_FIELD_HOST]             = ID | CAP_HOST,
    [VQ_FIELD_PATH]             = 256,
    [VQ_FIELD_QUERY]            = 192,
    [VQ_FIELD_ROUTE]            = ID | CAP_ROUTE,
    [VQ_FIELD_USER_AGENT]       = 192,
    [VQ_FIELD_CONTENT_TYPE]     = 96,
    [VQ_FIELD_CLIENT_ADDRESS]   = ID | CAP_CLIENT,
    [VQ_FIELD_PROTOCOL_VERSION] = ID | CAP_PROTOCOL,
    [VQ_FIELD_REQUEST_ID]       = ID | CAP_REQUEST_ID,
    [VQ_FIELD_TRACESTATE]       = WH | 256,
};

#define VQ_ATTR_KEY_CAP    64
#define VQ_ATTR_VALUE_CAP  192

void
vq_span_init(vq_span_t *span, vq_span_kind_t kind)
{
    memset(&span->h, 0, sizeof(vq_span_head_t));
    span->h.size = sizeof(vq_span_head_t);
    span->h.kind = (uint8_t) kind;
    span->h.connect_ms = -1;
    span->h.header_ms = -1;
}

/* Longest prefix of s no longer than max that does not split a UTF-8 character. */
static size_t
utf8_cut(const char *s, size_t len, size_t max)
{
    size_t  cut;

    if (len <= max) {
        return len;
    }

    cut = max;

    /* step back over continuation bytes (10xxxxxx), at most 3 */
    while (cut > 0 && max - cut < 3
           && ((unsigned char) s[cut] & 0xc0) == 0x80)
    {
        cut--;
    }

    if (((unsigned char) s[cut] & 0xc0) == 0x80) {
        return max;     /* not UTF-8 anyway; the encoder replaces it */
    }

    return cut;
}

/* room kept for the identifying fields still unset, but for this one */
static size_t
held_back(const vq_span_t *span, unsigned slot)
{
    size_t    held;
    unsigned  f;

    held = 0;

    for (f = 0; f < VQ_FIELD_COUNT; f++) {
        if ((field_cap[f] & ID) && f != slot && span->h.str[f].off == 0) {
            held += field_cap[f] & ~(ID | WH);
        }
    }

    return held;
}

static int
store(vq_span_t *span, unsigned slot, const char *s, size_t len, size_t cap)
{
    size_t  room, held, n;

    room = VQ_SPAN_RECORD_MAX - span->h.size;

    /* the common case, room for this and every identifying field: no count */
    if (room < len + CAP_IDENTIFYING) {
        held = held_back(span, slot);
        room = room > held ? room - held : 0;
    }

    if (room > cap) {
        room = cap;
    }

    n = utf8_cut(s, len, room);

    if (n) {
        memcpy((char *) span + span->h.size, s, n);
    }

    span->h.str[slot].off = span->h.size;
    span->h.str[slot].len = (uint16_t) n;
    span->h.size += (uint16_t) n;

    if (n < len) {
        span->h.truncated |= (uint32_t) 1 << slot;
        return VQ_ETRUNC;
    }

    return VQ_OK;
}

int
vq_span_set_str(vq_span_t *span, vq_span_field_t field, const char *s,
    size_t len)
{
    size_t  room, held;

    if ((unsigned) field >= VQ_FIELD_COUNT) {
        return VQ_EINVAL;
    }

    if (field_cap[field] & WH) {
        room = VQ_SPAN_RECORD_MAX - span->h.size;
        held = held_back(span, field);
        room = room > held ? room - held : 0;

        if (len > room || len > (size_t) (field_cap[field] & ~WH)) {
            /* left unset, flagged: a reader sees no value rather than half */
            span->h.truncated |= (uint32_t) 1 << field;
            return VQ_ETRUNC;
        }
    }

    return store(span, field, s, len, field_cap[field] & ~(ID | WH));
}

int
vq_span_add_attr(vq_span_t *span, const char *key, size_t key_len,
    const char *value, size_t value_len)
{
    unsigned  slot;
    int       rc, rc2;

    if (span->h.nattrs >= VQ_SPAN_MAX_ATTRS) {
        return VQ_EFULL;
    }

    slot = VQ_FIELD_COUNT + 2 * span->h.nattrs;
    span->h.nattrs++;

    rc = store(span, slot, key, key_len, VQ_ATTR_KEY_CAP);
    rc2 = store(span, slot + 1, value, value_len, VQ_ATTR_VALUE_CAP);

    return rc != VQ_OK ? rc : rc2;
}

const char *
vq_span_str(const vq_span_t *span, unsigned slot, size_t *len)
{
    if (slot >= VQ_SPAN_STR_SLOTS || span->h.str[slot].off == 0) {
        *len = 0;
        return "";
    }

    *len = span->h.str[slot].len;
    return (const char *) span + span->h.str[slot].off;
}

const char *
vq_span_attr_key(const vq_span_t *span, unsigned i, size_t *len)
{
    return vq_span_str(span, VQ_FIELD_COUNT + 2 * i, len);
}

const char *
vq_span_attr_value(const vq_span_t *span, unsigned i, size_t *len)
{
    return vq_span_str(span, VQ_FIELD_COUNT + 2 * i + 1, len);
}

int
vq_span_validate(const void *rec, size_t len)
{
    const vq_span_head_t  *h = rec;
    unsigned               i;

    if (len < sizeof(vq_span_head_t) || len > VQ_SPAN_RECORD_MAX) {
        return VQ_EINVAL;
    }

    if (h->size < sizeof(vq_span_head_t) || h->size > len) {
        return VQ_EINVAL;
    }

    if (h->kind != VQ_SPAN_SERVER && h->kind != VQ_SPAN_CLIENT) {
        return VQ_EINVAL;
    }

    if (h->nattrs > VQ_SPAN_MAX_ATTRS || h->error > VQ_SPAN_ERR_MAX) {
        return VQ_EINVAL;
    }

    for (i = 0; i < VQ_SPAN_STR_SLOTS; i++) {
        if (h->str[i].off == 0) {
            if (h->str[i].len != 0) {
                return VQ_EINVAL;
            }
            continue;
        }

        if (h->str[i].off < sizeof(vq_span_head_t)
            || (size_t) h->str[i].off + h->str[i].len > h->size)
        {
            return VQ_EINVAL;
        }
    }

    return VQ_OK;
}
