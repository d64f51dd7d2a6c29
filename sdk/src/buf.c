/*
 * Growable byte buffer.  An allocation failure is remembered in the
 * buffer, so that writers can append without checking every call.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vaquero/vaquero.h>

void
vq_buf_init(vq_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
}

void
vq_buf_free(vq_buf_t *b)
{
    free(b->data);
    vq_buf_init(b);
}

void
vq_buf_reset(vq_buf_t *b)
{
    b->len = 0;
    b->failed = 0;
}

int
vq_buf_grow(vq_buf_t *b, size_t more)
{
    size_t   cap;
    char    *p;

    if (b->failed) {
        return VQ_ENOMEM;
    }

    if (b->cap - b->len >= more) {
        return VQ_OK;
    }

    /* more than half the address space: no doubling reaches it */
    if (more > SIZE_MAX / 4 - b->len) {
        b->failed = 1;
        return VQ_ENOMEM;
    }

    cap = b->cap ? b->cap : 4096;

    while (cap - b->len < more) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return VQ_ENOMEM;
    }

    b->data = p;
    b->cap = cap;

    return VQ_OK;
}
