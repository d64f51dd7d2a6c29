/*
 * W3C Trace Context Level 2: traceparent and tracestate.
 *
 * Spec: https://www.w3.org/TR/trace-context-2/ ("Traceparent Header",
 * "Tracestate Header", "Processing Model").  This runs on the request
 * path: character classes come from tables (one load per byte, no
 * locale, no sscanf), nothing is allocated and nothing past len is read.
 */

#include <string.h>

#include <vaquero/vaquero.h>
#include <vaquero/tracecontext.h>

#define VQ_TRACESTATE_KEY_MAX    256
#define VQ_TRACESTATE_VALUE_MAX  256

/*
 * HEXDIGLC: 0x10 | value for "0"-"9" and "a"-"f", 0 for everything else
 * (uppercase included), so that the AND of all entries seen keeps 0x10
 * only when every character was a digit.
 */
static const uint8_t  hexdiglc[256] = {
    ['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14,
    ['5'] = 0x15, ['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19,
    ['a'] = 0x1a, ['b'] = 0x1b, ['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e,
    ['f'] = 0x1f
};

/*
 * tracestate characters:
 *   key      = ( lcalpha / DIGIT ) 0*255 ( keychar )
 *   keychar  = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"
 *   value    = 0*255(chr) nblk-chr
 *   nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
 *   chr      = %x20 / nblk-chr
 * "," and "=" separate members and key from value: they are in no class.
 */
#define KEY_FIRST  0x01
#define KEY_CHAR   0x02
#define VAL_CHAR   0x04

#define K  (KEY_FIRST | KEY_CHAR | VAL_CHAR)
#define C  (KEY_CHAR | VAL_CHAR)
#define V  VAL_CHAR

static const uint8_t  tschar[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    /* 0x10 */
    V, V, V, V, V, V, V, V, V, V, C, V, 0, C, V, C,    /* 0x20 */
    K, K, K, K, K, K, K, K, K, K, V, V, V, 0, V, V,    /* 0x30 */
    C, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V,    /* 0x40 */
    V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, C,    /* 0x50 */
    V, K, K, K, K, K, K, K, K, K, K, K, K, K, K, K,    /* 0x60 */
    K, K, K, K, K, K, K, K, K, K, K, V, V, V, V, 0,    /* 0x70 */
    /* 0x80-0xff: 0 */
};

#undef K
#undef C
#undef V

/* OWS (RFC 7230 3.2.3) */
static inline int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Decodes n bytes from 2n HEXDIGLC characters.  Returns 0 when one of them
 * is not HEXDIGLC or when all the bytes are zero (which no id may be);
 * out is garbage then.
 */
static inline int
hex_decode(const char *s, uint8_t *out, size_t n)
{
    const unsigned char  *p = (const unsigned char *) s;
    unsigned              hi, lo, all, any;
    size_t                i;

    all = 0x10;
    any = 0;

    for (i = 0; i < n; i++) {
        hi = hexdiglc[p[2 * i]];
        lo = hexdiglc[p[2 * i + 1]];
        all &= hi & lo;
        out[i] = (uint8_t) ((hi << 4) | (lo & 0x0f));
        any |= out[i];
    }

    return all != 0 && any != 0;
}

static inline int
hex_byte(const char *s, uint8_t *out)
{
    unsigned  hi, lo;

    hi = hexdiglc[(unsigned char) s[0]];
    lo = hexdiglc[(unsigned char) s[1]];
    *out = (uint8_t) ((hi << 4) | (lo & 0x0f));

    return (hi & lo) != 0;
}

int
vq_traceparent_parse(const char *value, size_t len, vq_traceparent_t *tp)
{
    vq_traceparent_t  r;
    const char       *p, *end;
    size_t            n;
    int               ok;

    if (value == NULL || tp == NULL) {
        return VQ_EINVAL;
    }

    /* OWS around a field value is not part of it (RFC 7230 3.2) */
    p = value;
    end = value + len;

    while (p < end && is_ows(*p)) {
        p++;
    }

    while (end > p && is_ows(end[-1])) {
        end--;
    }

    n = (size_t) (end - p);

    /* too short for any version: restart the trace */
    if (n < VQ_TRACEPARENT_LEN) {
        return VQ_EINVAL;
    }

    /* version = 2HEXDIGLC "-"; ff is forbidden */
    if (!hex_byte(p, &r.version) || p[2] != '-' || r.version == 0xff) {
        return VQ_EINVAL;
    }

    if (r.version == 0) {
        /* version 00 is exactly 55 characters */
        if (n != VQ_TRACEPARENT_LEN) {
            return VQ_EINVAL;
        }

    } else if (n > VQ_TRACEPARENT_LEN && p[VQ_TRACEPARENT_LEN] != '-') {
        /* a higher version: the flags end the value or are followed by "-" */
        return VQ_EINVAL;
    }

    if (p[35] != '-' || p[52] != '-') {
        return VQ_EINVAL;
    }

    /* lowercase hex, and neither id all zeroes */
    ok = hex_decode(p + 3, r.trace_id, VQ_TRACE_ID_SIZE);
    ok &= hex_decode(p + 36, r.parent_id, VQ_SPAN_ID_SIZE);
    ok &= hex_byte(p + 53, &r.flags);

    if (!ok) {
        return VQ_EINVAL;
    }

    *tp = r;

    return VQ_OK;
}

void
vq_traceparent_format(const uint8_t trace_id[VQ_TRACE_ID_SIZE],
    const uint8_t parent_id[VQ_SPAN_ID_SIZE], uint8_t flags, char *out)
{
    /* the highest version this library knows, whatever was received */
    out[0] = '0';
    out[1] = '0';
    out[2] = '-';
    vq_id_to_hex(trace_id, VQ_TRACE_ID_SIZE, out + 3);
    out[35] = '-';
    vq_id_to_hex(parent_id, VQ_SPAN_ID_SIZE, out + 36);
    out[52] = '-';
    vq_id_to_hex(&flags, 1, out + 53);
}

/* A list member, with the OWS around it left out. */
typedef struct {
    const char  *data;
    uint16_t     len;
    uint16_t     key_len;
} ts_member_t;

static int
key_valid(const char *key, size_t len)
{
    const unsigned char  *p = (const unsigned char *) key;
    size_t                i;

    if (len == 0 || len > VQ_TRACESTATE_KEY_MAX
        || !(tschar[p[0]] & KEY_FIRST))
    {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if (!(tschar[p[i]] & KEY_CHAR)) {
            return 0;
        }
    }

    return 1;
}

static int
value_valid(const char *value, size_t len)
{
    const unsigned char  *p = (const unsigned char *) value;
    size_t                i;

    /* at least one character, and the last one is not a space */
    if (len == 0 || len > VQ_TRACESTATE_VALUE_MAX || p[len - 1] == ' ') {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!(tschar[p[i]] & VAL_CHAR)) {
            return 0;
        }
    }

    return 1;
}

/*
 * Splits a tracestate into its non-empty members, checking each one and
 * that no key comes twice, in one pass over the bytes.  Returns the number
 * of members (at most 32), or VQ_EINVAL.
 */
static int
ts_scan(const char *value, size_t len, ts_member_t *m)
{
    const unsigned char  *p, *end, *key, *val, *last;
    size_t                key_len;
    int                   n, i;

    if (len == 0) {
        return 0;
    }

    if (value == NULL) {
        return VQ_EINVAL;
    }

    n = 0;
    p = (const unsigned char *) value;
    end = p + len;

    for ( ;; ) {
        while (p < end && is_ows((char) *p)) {
            p++;
        }

        /* empty and whitespace-only members are allowed and skipped */
        if (p < end && *p != ',') {
            key = p;

            if (!(tschar[*p] & KEY_FIRST)) {
                return VQ_EINVAL;
            }

            do {
                p++;
            } while (p < end && (tschar[*p] & KEY_CHAR));

            key_len = (size_t) (p - key);

            if (p == end || *p != '=' || key_len > VQ_TRACESTATE_KEY_MAX) {
                return VQ_EINVAL;
            }

            /* trailing spaces are OWS, not part of the value */
            val = ++p;
            last = NULL;

            while (p < end && (tschar[*p] & VAL_CHAR)) {
                if (*p != ' ') {
                    last = p;
                }
                p++;
            }

            if (last == NULL || last - val >= VQ_TRACESTATE_VALUE_MAX) {
                return VQ_EINVAL;
            }

            while (p < end && is_ows((char) *p)) {
                p++;
            }

            if ((p < end && *p != ',') || n == VQ_TRACESTATE_MAX_MEMBERS) {
                return VQ_EINVAL;
            }

            /* one entry per key: a second one makes the header invalid */
            for (i = 0; i < n; i++) {
                if (m[i].key_len == key_len
                    && memcmp(m[i].data, key, key_len) == 0)
                {
                    return VQ_EINVAL;
                }
            }

            m[n].data = (const char *) key;
            m[n].len = (uint16_t) (last + 1 - key);
            m[n].key_len = (uint16_t) key_len;
            n++;
        }

        if (p == end) {
            return n;
        }

        p++;    /* "," */
    }
}

int
vq_tracestate_validate(const char *value, size_t len)
{
    ts_member_t  m[VQ_TRACESTATE_MAX_MEMBERS];
    int          n;

    n = ts_scan(value, len, m);

    return n < 0 ? n : VQ_OK;
}

int
vq_tracestate_get(const char *value, size_t len,
    const char *key, size_t key_len,
    const char **member_value, size_t *member_value_len)
{
    ts_member_t  m[VQ_TRACESTATE_MAX_MEMBERS];
    int          n, i;

    if (key == NULL || member_value == NULL || member_value_len == NULL
        || !key_valid(key, key_len))
    {
        return VQ_EINVAL;
    }

    /* a list with a bad member anywhere is not a tracestate at all */
    n = ts_scan(value, len, m);
    if (n < 0) {
        return n;
    }

    for (i = 0; i < n; i++) {
        if (m[i].key_len == key_len && memcmp(m[i].data, key, key_len) == 0) {
            *member_value = m[i].data + key_len + 1;
            *member_value_len = (size_t) m[i].len - key_len - 1;
            return VQ_OK;
        }
    }

    return VQ_EEMPTY;
}

int
vq_tracestate_put(const char *value, size_t len,
    const char *key, size_t key_len,
    const char *member_value, size_t member_value_len,
    char *out, size_t out_size)
{
    ts_member_t  m[VQ_TRACESTATE_MAX_MEMBERS];
    size_t       need;
    char        *w;
    int          n, i, kept;

    if (key == NULL || member_value == NULL || out == NULL
        || !key_valid(key, key_len)
        || !value_valid(member_value, member_value_len))
    {
        return VQ_EINVAL;
    }

    n = ts_scan(value, len, m);
    if (n < 0) {
        return n;
    }

    /* the new member first, then the others; the rightmost go past 32 */
    need = key_len + 1 + member_value_len;
    kept = 1;

    for (i = 0; i < n; i++) {
        if (m[i].key_len == key_len && memcmp(m[i].data, key, key_len) == 0) {
            m[i].len = 0;
            continue;
        }

        if (kept == VQ_TRACESTATE_MAX_MEMBERS) {
            m[i].len = 0;
            continue;
        }

        need += 1 + m[i].len;
        kept++;
    }

    if (need > out_size) {
        return VQ_EFULL;
    }

    w = out;
    memcpy(w, key, key_len);
    w += key_len;
    *w++ = '=';
    memcpy(w, member_value, member_value_len);
    w += member_value_len;

    for (i = 0; i < n; i++) {
        if (m[i].len != 0) {
            *w++ = ',';
            memcpy(w, m[i].data, m[i].len);
            w += m[i].len;
        }
    }

    /* at most 32 members of at most 513 bytes: fits an int */
    return (int) need;
}

int
vq_tracestate_del(const char *value, size_t len,
    const char *key, size_t key_len, char *out, size_t out_size)
{
    ts_member_t  m[VQ_TRACESTATE_MAX_MEMBERS];
    size_t       need;
    char        *w;
    int          n, i;

    if (key == NULL || out == NULL || !key_valid(key, key_len)) {
        return VQ_EINVAL;
    }

    n = ts_scan(value, len, m);
    if (n < 0) {
        return n;
    }

    need = 0;

    for (i = 0; i < n; i++) {
        if (m[i].key_len == key_len && memcmp(m[i].data, key, key_len) == 0) {
            m[i].len = 0;
            continue;
        }

        need += (need ? 1 : 0) + m[i].len;
    }

    if (need > out_size) {
        return VQ_EFULL;
    }

    w = out;

    for (i = 0; i < n; i++) {
        if (m[i].len != 0) {
            if (w != out) {
                *w++ = ',';
            }

            memcpy(w, m[i].data, m[i].len);
            w += m[i].len;
        }
    }

    return (int) need;
}
