/*
 * Transports: the calls every one of them answers (see transport.h).
 */

#include <stdlib.h>
#include <time.h>

#include <vaquero/vaquero.h>
#include "transport.h"

int64_t
vq_monotonic_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
vq_transport_destroy(vq_transport_t *t)
{
    if (t) {
        t->ops->destroy(t);
    }
}

const char *
vq_transport_target(const vq_transport_t *t)
{
    return t->target;
}

int
vq_transport_set_headers(vq_transport_t *t, const char *const *lines,
    size_t n)
{
    return t->ops->set_headers ? t->ops->set_headers(t, lines, n) : VQ_OK;
}

void
vq_transport_send(vq_transport_t *t, vq_buf_t *body, vq_send_result_t *r)
{
    vq_transport_begin(t, body, r);
    vq_transport_finish(t, r);
}

void
vq_transport_begin(vq_transport_t *t, vq_buf_t *body, vq_send_result_t *r)
{
    r->status = 0;
    r->retry_after_ms = -1;
    r->location[0] = '\0';
    r->error[0] = '\0';
    r->warning[0] = '\0';
    r->timed_out = 0;

    if (t->ops->begin) {
        t->ops->begin(t, body, r);

    } else {
        t->ops->send(t, body, r);
    }
}

void
vq_transport_finish(vq_transport_t *t, vq_send_result_t *r)
{
    if (t->ops->finish) {
        t->ops->finish(t, r);
    }
}

int
vq_transport_overlaps(const vq_transport_t *t)
{
    return t->ops->finish != NULL;
}

void
vq_transport_abort_at(vq_transport_t *t, int64_t monotonic_ms)
{
    __atomic_store_n(&t->abort_at, monotonic_ms, __ATOMIC_RELAXED);

    if (t->ops->wakeup) {
        t->ops->wakeup(t);
    }
}

void
vq_transport_reopen(vq_transport_t *t)
{
    if (t->ops->reopen) {
        t->ops->reopen(t);
    }
}
