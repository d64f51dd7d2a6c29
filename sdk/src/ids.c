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

static const char  hex[] = "0123456789abcdef";

void
vq_id_to_hex(const uint8_t *id, size_t size, char *out)
{
    size_t  i;

    for (i = 0; i < size; i++) {
        *out++ = hex[id[i] >> 4];
        *out++ = hex[id[i] & 0xf];
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
