/*
 * An HTTP/1.x response read as it arrives (internal): the status, the
 * two headers the exporter acts on (Retry-After, Location), and where the
 * message ends (RFC 9112, section 6), so that a kept-alive connection can
 * carry the next request.  The body is skipped: collectors answer a few
 * bytes the exporter has no use for.
 */

#ifndef VAQUERO_HTTP_RESPONSE_H
#define VAQUERO_HTTP_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#define VQ_HTTP_HEAD_MAX        65536   /* status line and headers */
#define VQ_HTTP_CHUNK_LINE_MAX  1024    /* a chunk's size line, extensions in */

/* vq_http_response_feed(): the message is not over yet */
#define VQ_HTTP_AGAIN  1

typedef struct {
    /* what the response said, once the head is read */
    int          status;            /* the final status: 200..999 */
    int          final;             /* its head is read: the fields hold */
    int          keep_alive;        /* may carry another request */
    char         retry_after[64];   /* "" when absent or longer */
    char         location[256];     /* "", or cut at 255 bytes */
    const char  *error;             /* after VQ_ERROR: why */

    /* where the reading is */
    int          state;
    int          until_close;       /* the body ends with the connection */
    uint64_t     left;              /* of the body, or of a chunk */
    uint64_t     received;          /* bytes of the connection taken */
    size_t       head_len;
    size_t       line_len;          /* of a chunk size or trailer line */
    char         head[VQ_HTTP_HEAD_MAX];
} vq_http_response_t;

void vq_http_response_init(vq_http_response_t *r);

/*
 * Reads len bytes of the connection and says how many it took in *used:
 * VQ_OK, the response is over (bytes past it are not the response's);
 * VQ_HTTP_AGAIN, all taken and more is needed; VQ_ERROR, not a response
 * this client can read (r->error says why).
 */
int vq_http_response_feed(vq_http_response_t *r, const char *data,
    size_t len, size_t *used);

/*
 * The connection was closed: VQ_OK when that ends the response (a body
 * delimited by the close), VQ_ERROR otherwise, with r->error.
 */
int vq_http_response_eof(vq_http_response_t *r);

#endif /* VAQUERO_HTTP_RESPONSE_H */
