/*
 * What every transport is: vaquero/transport.h's functions call these.
 */

#ifndef VQ_TRANSPORT_PRIVATE_H
#define VQ_TRANSPORT_PRIVATE_H

#include <vaquero/transport.h>

typedef struct {
    void  (*destroy)(vq_transport_t *t);
    int   (*set_headers)(vq_transport_t *t, const char *const *lines,
              size_t n);
    /* a transport has send, or begin and finish: the answer comes later */
    void  (*send)(vq_transport_t *t, vq_buf_t *body, vq_send_result_t *r);
    void  (*begin)(vq_transport_t *t, vq_buf_t *body, vq_send_result_t *r);
    void  (*finish)(vq_transport_t *t, vq_send_result_t *r);
    void  (*wakeup)(vq_transport_t *t);
    void  (*reopen)(vq_transport_t *t);
} vq_transport_ops_t;

struct vq_transport_s {
    const vq_transport_ops_t  *ops;
    char                      *target;
    int64_t                    abort_at;    /* atomic; 0: none */
};

/* the clock of every deadline and wait in libvaquero, ms */
int64_t vq_monotonic_ms(void);

#endif /* VQ_TRANSPORT_PRIVATE_H */
