/*
 * A minimal streaming JSON writer over vq_buf_t (internal).
 */

#ifndef VAQUERO_JSON_H
#define VAQUERO_JSON_H

#include <stdint.h>
#include <string.h>

#include <vaquero/buf.h>

/* A quoted JSON string; NUL and bytes that are not UTF-8 become U+FFFD. */
void vq_json_string(vq_buf_t *b, const char *s, size_t len);

/* The same without the quotes, for a string written in pieces. */
void vq_json_escape(vq_buf_t *b, const char *s, size_t len);

void vq_json_int(vq_buf_t *b, int64_t v);

/* v / 1000 with three decimals, e.g. 12.345 */
void vq_json_milli(vq_buf_t *b, int64_t v);

/*
 * The same repair for strings that are not JSON (protobuf strings must be
 * valid UTF-8 too).  vq_utf8_repaired_len() is the length s has once NUL
 * and every byte that does not start a well-formed UTF-8 sequence are
 * replaced by U+FFFD, as vq_json_escape() replaces them: len itself when s
 * needs no repair.  vq_utf8_repair() writes that to dst (room for
 * vq_utf8_repaired_len() bytes, at most 3 * len) and returns its length.
 */
size_t vq_utf8_repaired_len(const char *s, size_t len);
size_t vq_utf8_repair(char *dst, const char *s, size_t len);

/*
 * Inline tests for the common case of short, plain strings, so that the
 * encoders copy those without a call.  False means "ask the functions
 * above", never that something is wrong.
 *
 * vq_json_plain(): s goes into a JSON string as it is (printable ASCII
 * other than '"' and '\\', or DEL).  vq_utf8_plain(): s needs no UTF-8
 * repair (ASCII without NUL).
 */

#define VQ_ONES   0x0101010101010101ULL
#define VQ_HIGHS  0x8080808080808080ULL

static inline uint64_t
vq_json_odd8(uint64_t x)
{
    uint64_t  ctrl, quote, bslash;

    ctrl = (x - 0x20 * VQ_ONES) & ~x;
    quote = x ^ ('"' * VQ_ONES);
    quote = (quote - VQ_ONES) & ~quote;
    bslash = x ^ ('\\' * VQ_ONES);
    bslash = (bslash - VQ_ONES) & ~bslash;

    return (x | ctrl | quote | bslash) & VQ_HIGHS;
}

static inline uint64_t
vq_utf8_odd8(uint64_t x)
{
    return (x | ((x - VQ_ONES) & ~x)) & VQ_HIGHS;
}

/*
 * Whether no byte of s is odd: 8-byte words, the last one overlapping;
 * under 8 bytes, two overlapping 4-byte words, or under 4 the first,
 * middle and last bytes (which are all of them) with spaces, which are
 * plain for either test.
 */
static inline __attribute__((always_inline)) int
vq_swar_plain(const char *s, size_t len, uint64_t (*odd8)(uint64_t))
{
    uint64_t  x;
    uint32_t  lo, hi;
    size_t    i;

    if (len >= 8) {
        for (i = 0; i + 8 < len; i += 8) {
            memcpy(&x, s + i, 8);
            if (odd8(x)) {
                return 0;
            }
        }

        memcpy(&x, s + len - 8, 8);

    } else if (len >= 4) {
        memcpy(&lo, s, 4);
        memcpy(&hi, s + len - 4, 4);
        x = lo | (uint64_t) hi << 32;

    } else if (len > 0) {
        x = (unsigned char) s[0] | (unsigned) (unsigned char) s[len / 2] << 8
            | (unsigned) (unsigned char) s[len - 1] << 16
            | (0x20 * VQ_ONES & ~0xffffffULL);

    } else {
        return 1;
    }

    return !odd8(x);
}

static inline int
vq_json_plain(const char *s, size_t len)
{
    return vq_swar_plain(s, len, vq_json_odd8);
}

static inline int
vq_utf8_plain(const char *s, size_t len)
{
    return vq_swar_plain(s, len, vq_utf8_odd8);
}

#define vq_json_lit(b, s)  vq_buf_append(b, s, sizeof(s) - 1)

static inline void
vq_json_cstring(vq_buf_t *b, const char *s)
{
    vq_json_string(b, s, strlen(s));
}

#endif /* VAQUERO_JSON_H */
