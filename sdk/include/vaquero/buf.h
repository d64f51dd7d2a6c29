/*
 * A growable byte buffer, used by the encoders (exporter side only: it
 * allocates).
 */

#ifndef VAQUERO_BUF_H
#define VAQUERO_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      failed;        /* an allocation failed; contents are incomplete */
} vq_buf_t;

void vq_buf_init(vq_buf_t *b);
void vq_buf_free(vq_buf_t *b);
void vq_buf_reset(vq_buf_t *b);
int vq_buf_grow(vq_buf_t *b, size_t more);

/* Makes room for more bytes: VQ_OK (0), or VQ_ENOMEM and b->failed set. */
static inline int
vq_buf_reserve(vq_buf_t *b, size_t more)
{
    /* inline: encoders call this for every few bytes they write */
    if (b->cap - b->len >= more && !b->failed) {
        return 0;
    }

    return vq_buf_grow(b, more);
}

static inline void
vq_buf_append(vq_buf_t *b, const void *p, size_t len)
{
    if (vq_buf_reserve(b, len) != 0) {
        return;
    }

    memcpy(b->data + b->len, p, len);
    b->len += len;
}

#endif /* VAQUERO_BUF_H */
