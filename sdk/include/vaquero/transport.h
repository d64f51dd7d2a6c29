/*
 * Transports: how a request body reaches a collector.  The exporter
 * thread encodes a batch with its protocol (vaquero/protocol.h) and hands
 * the body to a transport; it does not know which one it has.
 *
 *   http   one libcurl handle, kept alive; TLS (trusted CAs, a client
 *          certificate, verification) and gzip request bodies
 *   file   a line per body, appended with one write() (O_APPEND), so that
 *          lines of processes writing the same file never interleave
 *
 * A transport is used by one thread at a time, except for
 * vq_transport_abort_at() and vq_transport_reopen(), which any thread may
 * call at any time.
 */

#ifndef VAQUERO_TRANSPORT_H
#define VAQUERO_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <vaquero/buf.h>

/* the longest wait a Retry-After may ask for */
#define VQ_RETRY_AFTER_MAX_MS  60000

typedef struct vq_transport_s  vq_transport_t;

typedef struct {
    long      status;           /* HTTP status (a file: 200 once written);
                                   0: no answer, error says why */
    int64_t   retry_after_ms;   /* the answer's Retry-After; -1: none */
    char      location[256];    /* the answer's Location, or "" */
    char      error[256];       /* why there is no answer */
    char      warning[256];     /* sent, but something is wrong, or "" */
    int       timed_out;        /* the request's time ran out before a
                                   byte of an answer came (not a stop) */
} vq_send_result_t;

/* TLS to the collector: PEM contents (not file names); NULL: none */
typedef struct {
    int          no_verify;             /* do not verify the server */
    const void  *trusted_certificate;   /* NULL: the system's CAs */
    size_t       trusted_certificate_len;
    const void  *certificate;           /* a client certificate */
    size_t       certificate_len;
    const void  *certificate_key;       /* NULL: in certificate */
    size_t       certificate_key_len;
} vq_tls_conf_t;

typedef struct {
    const char     *url;                /* what to POST to */
    unsigned        timeout_ms;         /* one request, connecting included */
    int             gzip;               /* Content-Encoding: gzip */
    vq_tls_conf_t   tls;                /* copied */
} vq_http_conf_t;

/* NULL with the reason in err. */
vq_transport_t *vq_transport_http_create(const vq_http_conf_t *conf,
    char *err, size_t err_size);

/*
 * A file transport appending to path, created mode 0600 if it is missing.
 * With fd >= 0 it writes to fd, which it takes over (and closes, should
 * the creation fail), until asked to reopen; else it opens path now.
 * Anything but a regular file is refused.
 */
vq_transport_t *vq_transport_file_create(const char *path, int fd,
    char *err, size_t err_size);

/*
 * A file endpoint opened for appending, created mode 0600 if it is
 * missing: a descriptor, or -1 with errno set (EINVAL: not a regular
 * file).  What the file transport opens with, for whoever checks or
 * creates the file ahead of it (nginx -t, the nginx master).
 */
int vq_transport_file_open(const char *path);

void vq_transport_destroy(vq_transport_t *t);

/* The URL or file it sends to, for messages. */
const char *vq_transport_target(const vq_transport_t *t);

/*
 * The request's headers, "Name: value" lines, copied (and wiped when
 * replaced: they may hold credentials).  The file transport has none.
 */
int vq_transport_set_headers(vq_transport_t *t, const char *const *lines,
    size_t n);

/*
 * Sends body, which the transport may change (a file transport appends
 * the line's end to it), and says how it went.
 */
void vq_transport_send(vq_transport_t *t, vq_buf_t *body,
    vq_send_result_t *result);

/*
 * vq_transport_send() in two halves, so that one thread can have a
 * request on each of two transports in flight: begin sends the request,
 * finish waits for its answer and says how it went (in the same result).
 * body must stay as it is until finish.  A transport that cannot overlap
 * (vq_transport_overlaps() is 0: a file) does it all in begin.
 */
void vq_transport_begin(vq_transport_t *t, vq_buf_t *body,
    vq_send_result_t *result);
void vq_transport_finish(vq_transport_t *t, vq_send_result_t *result);
int vq_transport_overlaps(const vq_transport_t *t);

/*
 * From any thread: a request still running at this time (monotonic
 * clock, ms) is abandoned; 0: no deadline.
 */
void vq_transport_abort_at(vq_transport_t *t, int64_t monotonic_ms);

/*
 * From any thread: the file is opened again by path before the next
 * write (it was moved, "nginx -s reopen"); the descriptor in use until
 * then is the transport's own, so no other thread can close it under it.
 */
void vq_transport_reopen(vq_transport_t *t);

/*
 * A Retry-After value, seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015
 * 07:28:00 GMT", and the obsolete forms), at now_ms (Unix time, ms): the
 * wait in ms, at most VQ_RETRY_AFTER_MAX_MS (a date past is 0); -1 when
 * it is neither.
 */
int64_t vq_retry_after_parse(const char *value, int64_t now_ms);

/* A gzip compressor (RFC 1952), kept for many bodies; NULL: no memory. */
typedef struct vq_gzip_s  vq_gzip_t;

vq_gzip_t *vq_gzip_create(void);
void vq_gzip_destroy(vq_gzip_t *gz);

/* gzip of len bytes at in, appended to out: VQ_OK, VQ_ENOMEM or VQ_EINVAL. */
int vq_gzip(vq_gzip_t *gz, vq_buf_t *out, const void *in, size_t len);

#endif /* VAQUERO_TRANSPORT_H */
