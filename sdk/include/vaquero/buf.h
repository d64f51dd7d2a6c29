/*
 * A growable byte buffer, used by the encoders (exporter side only: it
 * allocates).
 */

#ifndef VAQUERO_BUF_H
#define VAQUERO_BUF_H

#include <stddef.h>

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      failed;        /* an allocation failed; contents are incomplete */
} vq_buf_t;

void vq_buf_init(vq_buf_t *b);
void vq_buf_free(vq_buf_t *b);
void vq_buf_reset(vq_buf_t *b);
int vq_buf_reserve(vq_buf_t *b, size_t more);
void vq_buf_append(vq_buf_t *b, const void *p, size_t len);

#endif /* VAQUERO_BUF_H */
