/*
 * A client span per upstream attempt, child of the server span.
 *
 * Every upstream's peer.init is wrapped (as the keepalive module does):
 * the balancer's get and free then run inside ours, so that each attempt,
 * proxy_next_upstream retries included, is timed from its get to its
 * free and gets its own span id.  What an attempt did is kept in the main
 * request's context, and its span is written in the log phase with the
 * server span, once the request's fate (and so whether it is exported)
 * is known.  The upstream request is built once and
 * sent again on a retry, so the 16 parent-id digits of the traceparent in
 * it are rewritten in place for each attempt: the backend's parent is the
 * attempt that reached it.  (gRPC sends HPACK-coded headers, where the
 * digits cannot be found: there every attempt carries the first one's.)
 *
 * An upstream that nginx resolves at run time ("proxy_pass http://$host")
 * has no peer.init to wrap: its attempts are told from
 * r->upstream_states in the log phase instead, with millisecond times.
 */

#include "ngx_http_vaquero_module.h"


typedef struct {
    ngx_http_request_t             *request;

    void                           *data;          /* the balancer's own */
    ngx_event_get_peer_pt           get;
    ngx_event_free_peer_pt          free;
    ngx_event_notify_peer_pt        notify;
#if (NGX_HTTP_SSL)
    ngx_event_set_peer_session_pt   set_session;
    ngx_event_save_peer_session_pt  save_session;
#endif

    ngx_str_t                       name;          /* the upstream's */
    u_char                         *parent_hex;    /* in the request */
    ngx_uint_t                      attempts;
    ngx_uint_t                      current;       /* in ctx->attempts */

    unsigned                        searched:1;
    unsigned                        active:1;
} ngx_http_vaquero_peer_data_t;


/* what one attempt did, until the log phase writes its span */
typedef struct {
    ngx_str_t                      *upstream;
    ngx_str_t                      *method;
    struct sockaddr                *sockaddr;      /* the balancer's: stable */
    socklen_t                       socklen;

    int64_t                         start_mono;
    int64_t                         end_mono;
    off_t                           bytes_sent;
    off_t                           bytes_received;
    int32_t                         connect_ms;
    int32_t                         header_ms;
    uint16_t                        status;
    uint16_t                        attempt;
    uint8_t                         error;         /* vq_span_error_t */
    uint8_t                         done;
    uint8_t                         span_id[VQ_SPAN_ID_SIZE];
} ngx_http_vaquero_attempt_t;


static ngx_int_t ngx_http_vaquero_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_vaquero_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_vaquero_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static void ngx_http_vaquero_notify_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t type);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_vaquero_set_peer_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_vaquero_save_peer_session(ngx_peer_connection_t *pc,
    void *data);
#endif
static void ngx_http_vaquero_next_span_id(ngx_http_vaquero_ctx_t *ctx,
    uint8_t *id);
static void ngx_http_vaquero_set_parent(ngx_http_vaquero_peer_data_t *vp,
    ngx_http_vaquero_ctx_t *ctx, uint8_t *id);
static ngx_http_vaquero_attempt_t *ngx_http_vaquero_start_attempt(
    ngx_http_vaquero_peer_data_t *vp, ngx_http_vaquero_ctx_t *ctx);
static void ngx_http_vaquero_end_attempt(ngx_http_vaquero_peer_data_t *vp,
    ngx_http_vaquero_attempt_t *a, ngx_peer_connection_t *pc,
    ngx_uint_t state);
static ngx_uint_t ngx_http_vaquero_fallback_spans(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx, ngx_http_vaquero_main_conf_t *vmcf,
    ngx_uint_t flags);
static void ngx_http_vaquero_upstream_name(ngx_pool_t *pool,
    ngx_http_upstream_srv_conf_t *us, ngx_str_t *name);
static int ngx_http_vaquero_cmp_peer_inits(const void *one, const void *two);


ngx_int_t
ngx_http_vaquero_upstream_init(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf)
{
    ngx_uint_t                      i;
    ngx_http_vaquero_peer_init_t   *pi;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    if (ngx_array_init(&vmcf->peer_inits, cf->pool, umcf->upstreams.nelts + 1,
                       sizeof(ngx_http_vaquero_peer_init_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* by now every upstream, implicit ones too, has its peer.init */
    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (uscfp[i]->peer.init == NULL) {
            continue;
        }

        pi = ngx_array_push(&vmcf->peer_inits);
        if (pi == NULL) {
            return NGX_ERROR;
        }

        pi->upstream = uscfp[i];
        pi->init = uscfp[i]->peer.init;

        /* once here, not for every request */
        ngx_http_vaquero_upstream_name(cf->pool, uscfp[i], &pi->name);

        uscfp[i]->peer.init = ngx_http_vaquero_init_peer;
    }

    ngx_qsort(vmcf->peer_inits.elts, vmcf->peer_inits.nelts,
              sizeof(ngx_http_vaquero_peer_init_t),
              ngx_http_vaquero_cmp_peer_inits);

    return NGX_OK;
}


static int
ngx_http_vaquero_cmp_peer_inits(const void *one, const void *two)
{
    const ngx_http_vaquero_peer_init_t  *a = one, *b = two;

    if (a->upstream == b->upstream) {
        return 0;
    }

    return (uintptr_t) a->upstream < (uintptr_t) b->upstream ? -1 : 1;
}


static ngx_int_t
ngx_http_vaquero_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                     lo, hi, mid;
    ngx_http_upstream_t           *u;
    ngx_http_vaquero_ctx_t        *ctx;
    ngx_http_vaquero_peer_data_t  *vp;
    ngx_http_vaquero_peer_init_t  *pi;
    ngx_http_vaquero_loc_conf_t   *vlcf;
    ngx_http_vaquero_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vaquero_module);

    /* the upstream's own peer.init, by binary search */
    pi = vmcf->peer_inits.elts;
    lo = 0;
    hi = vmcf->peer_inits.nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if ((uintptr_t) pi[mid].upstream < (uintptr_t) us) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    if (lo == vmcf->peer_inits.nelts || pi[lo].upstream != us) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "vaquero: upstream \"%V\" is not known", &us->host);
        return NGX_ERROR;
    }

    if (pi[lo].init(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vaquero_module);

    if (!vlcf->upstream_spans) {
        return NGX_OK;
    }

    ctx = ngx_http_vaquero_trace(r);

    if (ctx == NULL) {
        return NGX_OK;
    }

    vp = ngx_pcalloc(r->pool, sizeof(ngx_http_vaquero_peer_data_t));
    if (vp == NULL) {
        return NGX_OK;      /* untraced attempts are better than none */
    }

    u = r->upstream;

    vp->request = r;
    vp->data = u->peer.data;
    vp->get = u->peer.get;
    vp->free = u->peer.free;
    vp->notify = u->peer.notify;

    vp->name = pi[lo].name;

    u->peer.data = vp;
    u->peer.get = ngx_http_vaquero_get_peer;
    u->peer.free = ngx_http_vaquero_free_peer;

    if (vp->notify) {
        u->peer.notify = ngx_http_vaquero_notify_peer;
    }

#if (NGX_HTTP_SSL)
    vp->set_session = u->peer.set_session;
    vp->save_session = u->peer.save_session;
    u->peer.set_session = ngx_http_vaquero_set_peer_session;
    u->peer.save_session = ngx_http_vaquero_save_peer_session;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_vaquero_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_vaquero_peer_data_t  *vp = data;

    ngx_int_t                    rc;
    ngx_http_vaquero_ctx_t      *ctx;
    ngx_http_vaquero_attempt_t  *a;

    rc = vp->get(pc, vp->data);

    ctx = ngx_http_vaquero_get_ctx(vp->request);

    if (ctx == NULL) {
        return rc;
    }

    a = ngx_http_vaquero_start_attempt(vp, ctx);

    if (a == NULL) {
        return rc;
    }

    if (rc == NGX_BUSY || rc == NGX_ERROR) {
        /* no peer to try: no free() will follow */
        a->error = rc == NGX_BUSY ? VQ_SPAN_ERR_NO_LIVE : VQ_SPAN_ERR_CONNECT;
        a->end_mono = a->start_mono;
        a->done = 1;
        ctx->upstream_error = 1;
        return rc;
    }

    vp->active = 1;

    ngx_http_vaquero_set_parent(vp, ctx, a->span_id);

    return rc;
}


static void
ngx_http_vaquero_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_vaquero_peer_data_t  *vp = data;

    ngx_http_vaquero_ctx_t      *ctx;
    ngx_http_vaquero_attempt_t  *a;

    /* before the balancer's free: keepalive takes pc->connection away */
    if (vp->active) {
        vp->active = 0;

        ctx = ngx_http_vaquero_get_ctx(vp->request);

        if (ctx && ctx->attempts && vp->current < ctx->attempts->nelts) {
            a = ctx->attempts->elts;
            ngx_http_vaquero_end_attempt(vp, &a[vp->current], pc, state);

            if (a[vp->current].error != VQ_SPAN_ERR_NONE) {
                ctx->upstream_error = 1;
            }
        }
    }

    vp->free(pc, vp->data, state);
}


static void
ngx_http_vaquero_notify_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t type)
{
    ngx_http_vaquero_peer_data_t  *vp = data;

    vp->notify(pc, vp->data, type);
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_http_vaquero_set_peer_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_vaquero_peer_data_t  *vp = data;

    return vp->set_session ? vp->set_session(pc, vp->data) : NGX_OK;
}


static void
ngx_http_vaquero_save_peer_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_vaquero_peer_data_t  *vp = data;

    if (vp->save_session) {
        vp->save_session(pc, vp->data);
    }
}

#endif


/*
 * The first attempt of the request, in whichever of its upstreams comes
 * first, takes the id drawn at the start, the one that the injected
 * traceparent and $vaquero_traceparent name; later ones draw their own.
 */
static void
ngx_http_vaquero_next_span_id(ngx_http_vaquero_ctx_t *ctx, uint8_t *id)
{
    if (!ctx->first_attempt_taken && ctx->upstream_spans) {
        ctx->first_attempt_taken = 1;
        ngx_memcpy(id, ctx->first_attempt_id, VQ_SPAN_ID_SIZE);
        return;
    }

    vq_span_id_generate(ngx_http_vaquero_idgen(), id);
}


/* The attempt's id as the parent in the traceparent about to be sent. */
static void
ngx_http_vaquero_set_parent(ngx_http_vaquero_peer_data_t *vp,
    ngx_http_vaquero_ctx_t *ctx, uint8_t *id)
{
    ngx_buf_t            *b;
    ngx_http_upstream_t  *u;

    if (!vp->searched) {

        /*
         * The request was built with the first attempt's id: until another
         * attempt needs its own, there is nothing to look for.
         */
        if (ngx_memcmp(id, ctx->first_attempt_id, VQ_SPAN_ID_SIZE) == 0) {
            return;
        }

        vp->searched = 1;

        u = vp->request->upstream;

        if (u == NULL || u->request_bufs == NULL) {
            return;
        }

        /*
         * The headers are the first buffer, a temporary one: from its
         * start, as an attempt before this one has sent it (and moved
         * pos), and the retry will send it again from there.
         */
        b = u->request_bufs->buf;

        if (b == NULL || b->in_file || b->start == NULL) {
            return;
        }

        /* "<trace id>-<parent id>", as injected or set from the variable */
        vp->parent_hex = ngx_strlcasestrn(b->start, b->last,
                                          ctx->traceparent + 3,
                                          VQ_TRACEPARENT_LEN - 3 - 3 - 1);
        if (vp->parent_hex) {
            vp->parent_hex += 2 * VQ_TRACE_ID_SIZE + 1;
        }
    }

    if (vp->parent_hex) {
        vq_id_to_hex(id, VQ_SPAN_ID_SIZE, (char *) vp->parent_hex);
    }
}


static ngx_http_vaquero_attempt_t *
ngx_http_vaquero_start_attempt(ngx_http_vaquero_peer_data_t *vp,
    ngx_http_vaquero_ctx_t *ctx)
{
    ngx_http_request_t          *r;
    ngx_http_vaquero_attempt_t  *a;

    r = vp->request;

    if (ctx->attempts == NULL) {
        ctx->attempts = ngx_array_create(r->main->pool, 2,
                                         sizeof(ngx_http_vaquero_attempt_t));
        if (ctx->attempts == NULL) {
            return NULL;
        }
    }

    a = ngx_array_push(ctx->attempts);
    if (a == NULL) {
        return NULL;
    }

    ngx_memzero(a, sizeof(ngx_http_vaquero_attempt_t));

    vp->current = ctx->attempts->nelts - 1;

    a->upstream = &vp->name;
    a->method = &r->method_name;
    a->attempt = (uint16_t) ++vp->attempts;
    a->start_mono = ngx_http_vaquero_mono_us();
    a->connect_ms = -1;
    a->header_ms = -1;

    ngx_http_vaquero_next_span_id(ctx, a->span_id);

    if (r == r->main) {
        ctx->main_attempts++;
    }

    return a;
}


/* At the attempt's free: what nginx measured, and what went wrong. */
static void
ngx_http_vaquero_end_attempt(ngx_http_vaquero_peer_data_t *vp,
    ngx_http_vaquero_attempt_t *a, ngx_peer_connection_t *pc,
    ngx_uint_t state)
{
    ngx_connection_t           *c;
    ngx_http_upstream_t        *u;
    ngx_http_upstream_state_t  *st;

    a->end_mono = ngx_http_vaquero_mono_us();
    a->sockaddr = pc->sockaddr;
    a->socklen = pc->socklen;
    a->done = 1;

    c = pc->connection;
    u = vp->request->upstream;
    st = u ? u->state : NULL;

    if (st) {
        /* a failed attempt's status is still the upstream's own here */
        a->status = (uint16_t) st->status;

        if (st->connect_time != (ngx_msec_t) -1) {
            a->connect_ms = (int32_t) st->connect_time;
        }

        if (st->header_time != (ngx_msec_t) -1) {
            a->header_ms = (int32_t) st->header_time;
        }

        a->bytes_sent = st->bytes_sent;
        a->bytes_received = st->bytes_received;
    }

    if (a->bytes_sent == 0 && c) {
        a->bytes_sent = c->sent;
    }

    if (state & NGX_PEER_FAILED) {

        if (c && (c->read->timedout || c->write->timedout)) {
            a->error = VQ_SPAN_ERR_TIMEOUT;

        } else if (a->status >= 500) {
            a->error = VQ_SPAN_ERR_HTTP;

        } else if (a->connect_ms < 0) {
            a->error = VQ_SPAN_ERR_CONNECT;

        } else {
            a->error = VQ_SPAN_ERR_RESPONSE;
        }

    } else if (a->status >= 500) {
        a->error = VQ_SPAN_ERR_HTTP;
    }
}


/*
 * Whether an upstream attempt of the request failed, for
 * vaquero_sample_errors.
 */
ngx_uint_t
ngx_http_vaquero_upstream_failed(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx)
{
    ngx_uint_t                  i;
    ngx_http_upstream_state_t  *st;

    if (ctx->upstream_error) {
        return 1;
    }

    if (ctx->main_attempts || r->upstream_states == NULL) {
        return 0;
    }

    /* an upstream resolved at run time: what nginx kept */
    st = r->upstream_states->elts;

    for (i = 0; i < r->upstream_states->nelts; i++) {
        if (st[i].peer && st[i].status >= 500) {
            return 1;
        }
    }

    return 0;
}


/*
 * The client spans of a request, in the log phase, with the server
 * span's sampling flags; with flags 0 only counted.  Returns how many.
 */
ngx_uint_t
ngx_http_vaquero_upstream_spans(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx, ngx_http_vaquero_main_conf_t *vmcf,
    ngx_uint_t flags)
{
    size_t                       len;
    u_char                       addr[NGX_SOCKADDR_STRLEN];
    vq_span_t                    span;
    ngx_uint_t                   i, n;
    ngx_http_vaquero_attempt_t  *a;

    n = 0;

    if (ctx->main_attempts == 0) {
        n = ngx_http_vaquero_fallback_spans(r, ctx, vmcf, flags);
    }

    if (ctx->attempts == NULL) {
        return n;
    }

    a = ctx->attempts->elts;

    for (i = 0; i < ctx->attempts->nelts; i++) {

        if (!a[i].done) {
            continue;
        }

        n++;

        if (flags == 0) {
            continue;
        }

        vq_span_init(&span, VQ_SPAN_CLIENT);

        ngx_memcpy(span.h.trace_id, ctx->trace_id, VQ_TRACE_ID_SIZE);
        ngx_memcpy(span.h.span_id, a[i].span_id, VQ_SPAN_ID_SIZE);
        ngx_memcpy(span.h.parent_span_id, ctx->span_id, VQ_SPAN_ID_SIZE);
        span.h.flags = (uint8_t) (VQ_SPAN_HAS_PARENT | flags);
        span.h.trace_flags = ctx->trace_flags;

        span.h.start_us = ngx_http_vaquero_wall_us(ctx, a[i].start_mono);
        span.h.end_us = ngx_http_vaquero_wall_us(ctx, a[i].end_mono);
        span.h.attempt = a[i].attempt;
        span.h.status_code = a[i].status;
        span.h.connect_ms = a[i].connect_ms;
        span.h.header_ms = a[i].header_ms;
        span.h.request_body_size = a[i].bytes_sent;
        span.h.response_body_size = a[i].bytes_received;

        if (a[i].error != VQ_SPAN_ERR_NONE) {
            span.h.flags |= VQ_SPAN_ERROR;
            span.h.error = a[i].error;
        }

        if (a[i].sockaddr) {
            len = ngx_sock_ntop(a[i].sockaddr, a[i].socklen, addr,
                                NGX_SOCKADDR_STRLEN, 0);
            vq_span_set_str(&span, VQ_FIELD_HOST, (char *) addr, len);
            span.h.server_port = ngx_inet_get_port(a[i].sockaddr);
        }

        vq_span_set_str(&span, VQ_FIELD_METHOD, (char *) a[i].method->data,
                        a[i].method->len);
        vq_span_set_str(&span, VQ_FIELD_ROUTE, (char *) a[i].upstream->data,
                        a[i].upstream->len);

        if (ctx->tracestate.len) {
            vq_span_set_str(&span, VQ_FIELD_TRACESTATE,
                            (char *) ctx->tracestate.data,
                            ctx->tracestate.len);
        }

        ngx_http_vaquero_record(vmcf, &span, r->connection->log);
    }

    return n;
}


/* "name" of an upstream{} block; "host:port" of proxy_pass http://host:port */
static void
ngx_http_vaquero_upstream_name(ngx_pool_t *pool,
    ngx_http_upstream_srv_conf_t *us, ngx_str_t *name)
{
    u_char  *p;

    *name = us->host;

    if (us->no_port || us->port == 0) {
        return;
    }

    p = ngx_pnalloc(pool, us->host.len + sizeof(":65535") - 1);
    if (p == NULL) {
        return;
    }

    name->data = p;
    name->len = ngx_sprintf(p, "%V:%d", &us->host, (int) us->port) - p;
}


/*
 * An upstream nginx resolved at run time was not wrapped: its attempts
 * are told from what nginx kept of them, laid end to end from the
 * request's start.
 */
static ngx_uint_t
ngx_http_vaquero_fallback_spans(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx, ngx_http_vaquero_main_conf_t *vmcf,
    ngx_uint_t flags)
{
    u_char                     *p, *last;
    int64_t                     start, duration;
    ngx_str_t                   name;
    vq_span_t                   span;
    ngx_uint_t                  i, n, attempt;
    ngx_http_upstream_t        *u;
    ngx_http_upstream_state_t  *st;

    if (!ctx->upstream_spans
        || r->upstream_states == NULL || r->upstream_states->nelts == 0)
    {
        return 0;
    }

    u = r->upstream;
    ngx_str_null(&name);

    if (u && u->upstream) {
        ngx_http_vaquero_upstream_name(r->pool, u->upstream, &name);

    } else if (u && u->resolved) {
        name = u->resolved->host;
    }

    st = r->upstream_states->elts;
    start = ctx->start_us;
    attempt = 0;
    n = 0;

    for (i = 0; i < r->upstream_states->nelts; i++) {

        if (st[i].peer == NULL) {
            /* between two uses of an upstream */
            attempt = 0;
            continue;
        }

        n++;

        if (flags == 0) {
            continue;
        }

        vq_span_init(&span, VQ_SPAN_CLIENT);

        ngx_memcpy(span.h.trace_id, ctx->trace_id, VQ_TRACE_ID_SIZE);
        ngx_http_vaquero_next_span_id(ctx, span.h.span_id);
        ngx_memcpy(span.h.parent_span_id, ctx->span_id, VQ_SPAN_ID_SIZE);
        span.h.flags = (uint8_t) (VQ_SPAN_HAS_PARENT | flags);
        span.h.trace_flags = ctx->trace_flags;

        duration = st[i].response_time != (ngx_msec_t) -1
                   ? (int64_t) st[i].response_time * 1000 : 0;

        span.h.start_us = start;
        span.h.end_us = start + duration;
        start += duration;

        span.h.attempt = (uint16_t) ++attempt;
        span.h.status_code = (uint16_t) st[i].status;
        span.h.request_body_size = st[i].bytes_sent;
        span.h.response_body_size = st[i].bytes_received;

        if (st[i].connect_time != (ngx_msec_t) -1) {
            span.h.connect_ms = (int32_t) st[i].connect_time;
        }

        if (st[i].header_time != (ngx_msec_t) -1) {
            span.h.header_ms = (int32_t) st[i].header_time;
        }

        if (st[i].status >= 500) {
            span.h.flags |= VQ_SPAN_ERROR;
            span.h.error = span.h.connect_ms >= 0 ? VQ_SPAN_ERR_HTTP
                           : st[i].status == NGX_HTTP_GATEWAY_TIME_OUT
                             ? VQ_SPAN_ERR_TIMEOUT : VQ_SPAN_ERR_CONNECT;
        }

        /* "address:port" */
        p = st[i].peer->data;
        last = p + st[i].peer->len;

        while (last > p && last[-1] >= '0' && last[-1] <= '9') {
            last--;
        }

        if (last > p && last[-1] == ':' && last < p + st[i].peer->len) {
            span.h.server_port = (uint16_t) ngx_atoi(last,
                                               p + st[i].peer->len - last);
            vq_span_set_str(&span, VQ_FIELD_HOST, (char *) p, last - 1 - p);

        } else {
            vq_span_set_str(&span, VQ_FIELD_HOST, (char *) p,
                            st[i].peer->len);
        }

        vq_span_set_str(&span, VQ_FIELD_METHOD, (char *) r->method_name.data,
                        r->method_name.len);

        if (name.len) {
            vq_span_set_str(&span, VQ_FIELD_ROUTE, (char *) name.data,
                            name.len);
        }

        ngx_http_vaquero_record(vmcf, &span, r->connection->log);
    }

    return n;
}
