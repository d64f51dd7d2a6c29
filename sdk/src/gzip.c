/*
 * gzip with zlib, for request bodies.  One deflate state per transport,
 * reset for each body: setting one up costs about 270 KB of allocations,
 * which a batch should not pay.
 */

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <vaquero/vaquero.h>
#include <vaquero/transport.h>

/*
 * Level 1: spans compress about as well at the fastest level, and the
 * exporter thread shares its worker's CPU.
 */
#define VQ_GZIP_LEVEL  1

struct vq_gzip_s {
    z_stream  z;
};

vq_gzip_t *
vq_gzip_create(void)
{
    vq_gzip_t  *gz;

    gz = calloc(1, sizeof(vq_gzip_t));
    if (gz == NULL) {
        return NULL;
    }

    /* 15 + 16: a gzip header and trailer around the deflate stream */
    if (deflateInit2(&gz->z, VQ_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        free(gz);
        return NULL;
    }

    return gz;
}

void
vq_gzip_destroy(vq_gzip_t *gz)
{
    if (gz) {
        deflateEnd(&gz->z);
        free(gz);
    }
}

int
vq_gzip(vq_gzip_t *gz, vq_buf_t *out, const void *in, size_t len)
{
    z_stream  *z;
    size_t     bound;

    z = &gz->z;

    if (len > (uInt) -1 || deflateReset(z) != Z_OK) {
        return VQ_EINVAL;
    }

    bound = deflateBound(z, (uLong) len);

    if (vq_buf_reserve(out, bound) != VQ_OK) {
        return VQ_ENOMEM;
    }

    z->next_in = (Bytef *) in;
    z->avail_in = (uInt) len;
    z->next_out = (Bytef *) out->data + out->len;
    z->avail_out = (uInt) bound;

    /* the bound holds the whole stream: one call ends it */
    if (deflate(z, Z_FINISH) != Z_STREAM_END) {
        return VQ_EINVAL;
    }

    out->len += z->total_out;

    return VQ_OK;
}
