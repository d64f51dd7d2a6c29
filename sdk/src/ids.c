/*
 * Trace and span ids: xoshiro256** seeded from getrandom().
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <vaquero/vaquero.h>

struct vq_idgen_s {
    uint64_t  s[4];
};

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
next(vq_idgen_t *g)
{
    uint64_t  *s = g->s;
    uint64_t   result, t;

    result = rotl(s[1] * 5, 7) * 9;
    t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);

    return result;
}

vq_idgen_t *
vq_idgen_create(void)
{
    vq_idgen_t  *g;

    g = malloc(sizeof(vq_idgen_t));
    if (g == NULL) {
        return NULL;
    }

    if (vq_idgen_reseed(g) != VQ_OK) {
        free(g);
        return NULL;
    }

    return g;
}

void
vq_idgen_destroy(vq_idgen_t *g)
{
    free(g);
}

int
vq_idgen_reseed(vq_idgen_t *g)
{
    size_t   got;
    ssize_t  n;

    got = 0;

    while (got < sizeof(g->s)) {
        n = getrandom((char *) g->s + got, sizeof(g->s) - got, 0);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return VQ_ERROR;
        }

        got += n;
    }

    /* xoshiro must not start from the all-zero state */
    if ((g->s[0] | g->s[1] | g->s[2] | g->s[3]) == 0) {
        g->s[0] = 0x9e3779b97f4a7c15ULL;
    }

    return VQ_OK;
}

void
vq_trace_id_generate(vq_idgen_t *g, uint8_t id[VQ_TRACE_ID_SIZE])
{
    uint64_t  v[2];

    v[0] = next(g);
    v[1] = next(g);

    memcpy(id, v, VQ_TRACE_ID_SIZE);

    /*
     * A UUIDv4 as well (DESIGN 6), so that the Vaquero backend joins it
     * with the Python SDK's ids: version 4 in byte 6, variant 10 in byte 8.
     * The W3C random part, the rightmost 7 bytes, is left untouched, and
     * the version bit alone keeps the id from being all zero.
     */
    id[6] = (uint8_t) ((id[6] & 0x0f) | 0x40);
    id[8] = (uint8_t) ((id[8] & 0x3f) | 0x80);
}

void
vq_span_id_generate(vq_idgen_t *g, uint8_t id[VQ_SPAN_ID_SIZE])
{
    uint64_t  v;

    do {
        v = next(g);
    } while (v == 0);

    memcpy(id, &v, VQ_SPAN_ID_SIZE);
}

int
vq_id_is_zero(const uint8_t *id, size_t size)
{
    size_t  i;

    for (i = 0; i < size; i++) {
        if (id[i] != 0) {
            return 0;
        }
    }

    return 1;
}

/* each byte's two hex digits: one load and one 2-byte store per byte */
static const char  hex_pairs[512] =
    "000102030405060708090a0b0c0d0e0f"
    "101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f"
    "303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f"
    "505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f"
    "707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f"
    "909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
    "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
    "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeef"
    "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void
vq_id_to_hex(const uint8_t *id, size_t size, char *out)
{
    size_t  i;

    for (i = 0; i < size; i++) {
        memcpy(out + 2 * i, &hex_pairs[2 * id[i]], 2);
    }
}

void
vq_trace_id_to_uuid(const uint8_t id[VQ_TRACE_ID_SIZE], char *out)
{
    vq_id_to_hex(id, 4, out);
    out[8] = '-';
    vq_id_to_hex(id + 4, 2, out + 9);
    out[13] = '-';
    vq_id_to_hex(id + 6, 2, out + 14);
    out[18] = '-';
    vq_id_to_hex(id + 8, 2, out + 19);
    out[23] = '-';
    vq_id_to_hex(id + 10, 6, out + 24);
}
