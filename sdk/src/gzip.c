/*
 * gzip with zlib, for request bodies.
 */

#include <zlib.h>

#include <vaquero/vaquero.h>
#include <vaquero/transport.h>

/*
 * Level 1: spans compress about as well at the fastest level, and the
 * exporter thread shares its worker's CPU.
 */
#define VQ_GZIP_LEVEL  1

int
vq_gzip(vq_buf_t *out, const void *in, size_t len)
{
    z_stream  z;
    size_t    bound;
    int       rc;

    memset(&z, 0, sizeof(z_stream));

    /* 15 + 16: a gzip header and trailer around the deflate stream */
    if (deflateInit2(&z, VQ_GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        return VQ_ENOMEM;
    }

    bound = deflateBound(&z, (uLong) len);

    if (vq_buf_reserve(out, bound) != VQ_OK) {
        deflateEnd(&z);
        return VQ_ENOMEM;
    }

    z.next_in = (Bytef *) in;
    z.avail_in = (uInt) len;
    z.next_out = (Bytef *) out->data + out->len;
    z.avail_out = (uInt) bound;

    rc = deflate(&z, Z_FINISH);

    if (rc != Z_STREAM_END) {
        deflateEnd(&z);
        return VQ_ENOMEM;
    }

    out->len += z.total_out;
    deflateEnd(&z);

    return VQ_OK;
}
