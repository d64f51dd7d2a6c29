/*
 * The span record: building it on the request path, checking and reading
 * it on the exporter side.
 */

#include <string.h>

#include <vaquero/vaquero.h>

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

static int
store(vq_span_t *span, unsigned slot, const char *s, size_t len)
{
    size_t  room, n;

    room = VQ_SPAN_RECORD_MAX - span->h.size;
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
    if ((unsigned) field >= VQ_FIELD_COUNT) {
        return VQ_EINVAL;
    }

    return store(span, field, s, len);
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

    rc = store(span, slot, key, key_len);
    rc2 = store(span, slot + 1, value, value_len);

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
