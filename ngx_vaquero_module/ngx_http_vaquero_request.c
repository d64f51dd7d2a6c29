/*
 * A request's trace identity, owned by the request from its start.
 *
 * The start time is taken in the post-read phase.  Whether the request is
 * traced, its trace id, its server span id, its parent and what it sends
 * upstream are decided once, in the pre-access phase of the first location
 * that handles it (after "rewrite" and "set", before auth_request, mirror
 * and the content phase), or earlier if a $vaquero_ variable asks, or in
 * the log phase for a request that never got that far.  Variables,
 * injected headers, upstream spans and the recorded span then all agree.
 */

#include "ngx_http_vaquero_module.h"


static ngx_http_vaquero_ctx_t *ngx_http_vaquero_create_ctx(
    ngx_http_request_t *r, ngx_uint_t late);
static void ngx_http_vaquero_decide(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx);
static void ngx_http_vaquero_sample(ngx_http_request_t *r,
    ngx_http_vaquero_loc_conf_t *vlcf, ngx_http_vaquero_ctx_t *ctx,
    vq_traceparent_t *tp);
static void ngx_http_vaquero_set_ot(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx, vq_ot_t *ot, ngx_uint_t had_ot);
static ngx_int_t ngx_http_vaquero_enabled(ngx_http_request_t *r,
    ngx_http_vaquero_loc_conf_t *vlcf);
static void ngx_http_vaquero_ctx_cleanup(void *data);
static int64_t ngx_http_vaquero_wall_at(int64_t mono);


/* the wall clock less the monotonic clock: the worker's main thread only */
static int64_t      ngx_http_vaquero_offset;
static ngx_msec_t   ngx_http_vaquero_offset_msec;
static ngx_uint_t   ngx_http_vaquero_offset_set;


int64_t
ngx_http_vaquero_mono_us(void)
{
    struct timespec  ts;

    /* through the vDSO: no system call */
    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/*
 * The wall clock at the monotonic time mono.  The offset between the two
 * clocks is read again whenever nginx's cached time has moved (each turn
 * of the event loop, or each timer_resolution), not for every request:
 * one clock read less per request.  Both clocks are slewed alike, so the
 * offset only changes when the wall clock is stepped, which is seen at
 * the next time update.
 */
static int64_t
ngx_http_vaquero_wall_at(int64_t mono)
{
    struct timespec  ts;

    if (!ngx_http_vaquero_offset_set
        || ngx_http_vaquero_offset_msec != ngx_current_msec)
    {
        clock_gettime(CLOCK_REALTIME, &ts);

        ngx_http_vaquero_offset = (int64_t) ts.tv_sec * 1000000
                                  + ts.tv_nsec / 1000 - mono;
        ngx_http_vaquero_offset_msec = ngx_current_msec;
        ngx_http_vaquero_offset_set = 1;
    }

    return mono + ngx_http_vaquero_offset;
}


/*
 * Durations come from the monotonic clock, so that a step of the wall
 * clock (NTP) cannot distort them; only the start is wall-clock time.
 */
int64_t
ngx_http_vaquero_wall_us(ngx_http_vaquero_ctx_t *ctx, int64_t mono)
{
    return ctx->start_us + (mono - ctx->start_mono);
}


ngx_int_t
ngx_http_vaquero_start_handler(ngx_http_request_t *r)
{
    if (r == r->main && ngx_http_vaquero_get_ctx(r) == NULL) {
        (void) ngx_http_vaquero_create_ctx(r, 0);
    }

    return NGX_DECLINED;
}


/*
 * The context hangs off a pool cleanup as well as r->ctx, because an
 * internal redirect zeroes r->ctx and the trace must go on.  Created
 * late, for a request that never reached the post-read phase (a bad
 * request line, say), it starts when nginx started reading the request.
 */
static ngx_http_vaquero_ctx_t *
ngx_http_vaquero_create_ctx(ngx_http_request_t *r, ngx_uint_t late)
{
    int64_t                  start;
    ngx_pool_cleanup_t      *cln;
    ngx_http_vaquero_ctx_t  *ctx;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_vaquero_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_vaquero_ctx_t));

    ctx->start_mono = ngx_http_vaquero_mono_us();
    ctx->start_us = ngx_http_vaquero_wall_at(ctx->start_mono);
    ctx->header_length = r->request_length;

    if (late) {
        start = (int64_t) r->start_sec * 1000000
                + (int64_t) r->start_msec * 1000;

        if (start < ctx->start_us) {
            ctx->start_mono -= ctx->start_us - start;
            ctx->start_us = start;
        }
    }

    cln->handler = ngx_http_vaquero_ctx_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_vaquero_module);

    return ctx;
}


static void
ngx_http_vaquero_ctx_cleanup(void *data)
{
    /* nothing to free: the handler only marks the context's cleanup */
}


/* The main request's context, if it has one; no decision is taken. */
ngx_http_vaquero_ctx_t *
ngx_http_vaquero_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_vaquero_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vaquero_module);
    if (ctx) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_vaquero_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_vaquero_module);
            return ctx;
        }
    }

    return NULL;
}


/*
 * The context of a traced request (for a subrequest: of its main
 * request), with its identity decided; NULL if the request is not traced.
 */
ngx_http_vaquero_ctx_t *
ngx_http_vaquero_trace(ngx_http_request_t *r)
{
    ngx_http_vaquero_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_vaquero_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_http_vaquero_create_ctx(r, 1);
        if (ctx == NULL) {
            return NULL;
        }
    }

    if (!ctx->decided) {
        ngx_http_vaquero_decide(r, ctx);
    }

    return ctx->traced ? ctx : NULL;
}


static void
ngx_http_vaquero_decide(ngx_http_request_t *r, ngx_http_vaquero_ctx_t *ctx)
{
    uint8_t                        random, *parent;
    vq_idgen_t                    *idgen;
    vq_traceparent_t               tp, *incoming;
    ngx_http_vaquero_loc_conf_t   *vlcf;
    ngx_http_vaquero_main_conf_t  *vmcf;

    ctx->decided = 1;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vaquero_module);
    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vaquero_module);
    idgen = ngx_http_vaquero_idgen();

    if (vmcf->shm == NULL || idgen == NULL
        || !ngx_http_vaquero_enabled(r, vlcf))
    {
        return;
    }

    ctx->traced = 1;
    incoming = NULL;

    if ((vlcf->trace_context & NGX_HTTP_VAQUERO_EXTRACT)
        && ngx_http_vaquero_extract(r, &tp, &ctx->tracestate) == NGX_OK)
    {
        ngx_memcpy(ctx->trace_id, tp.trace_id, VQ_TRACE_ID_SIZE);
        ngx_memcpy(ctx->parent_id, tp.parent_id, VQ_SPAN_ID_SIZE);
        ctx->has_parent = 1;
        incoming = &tp;

        /* the random flag describes the trace id, which we keep */
        random = tp.flags & VQ_TRACE_FLAG_RANDOM;

    } else {
        vq_trace_id_generate(idgen, ctx->trace_id);
        random = VQ_TRACE_FLAG_RANDOM;
    }

    vq_span_id_generate(idgen, ctx->span_id);

    ngx_http_vaquero_sample(r, vlcf, ctx, incoming);

    /*
     * With upstream spans the parent the backend sees is the upstream
     * attempt's span: the first attempt's id is drawn now, so that the
     * injected header and $vaquero_traceparent are right from the start.
     */
    if (vlcf->upstream_spans) {
        ctx->upstream_spans = 1;
        vq_span_id_generate(idgen, ctx->first_attempt_id);
        parent = ctx->first_attempt_id;

    } else {
        parent = ctx->span_id;
    }

    ctx->trace_flags = (ctx->sampled ? VQ_TRACE_FLAG_SAMPLED : 0) | random;

    vq_traceparent_format(ctx->trace_id, parent, ctx->trace_flags,
                          (char *) ctx->traceparent);
}


/*
 * The head sampling decision (libvaquero's sampler: OpenTelemetry's
 * consistent probability sampling).  Without vaquero_sample_rate or
 * vaquero_sample_key every trace is sampled, or, following the parent,
 * what the parent sampled, and tracestate is left as it came.  With them,
 * the "ot" entry of tracestate says downstream what was decided here.
 */
static void
ngx_http_vaquero_sample(ngx_http_request_t *r,
    ngx_http_vaquero_loc_conf_t *vlcf, ngx_http_vaquero_ctx_t *ctx,
    vq_traceparent_t *tp)
{
    size_t       len;
    vq_ot_t      ot;
    uint64_t     threshold, key_r;
    unsigned     flags;
    ngx_str_t    key;
    ngx_uint_t   had_ot;
    const char  *value;

    flags = 0;

    if (tp) {
        flags |= VQ_SAMPLE_CONTINUED;

        if (tp->flags & VQ_TRACE_FLAG_SAMPLED) {
            flags |= VQ_SAMPLE_PARENT_SAMPLED;
        }

        if (tp->flags & VQ_TRACE_FLAG_RANDOM) {
            flags |= VQ_SAMPLE_PARENT_RANDOM;
        }
    }

    if (vlcf->sample_parent) {
        flags |= VQ_SAMPLE_FOLLOW_PARENT;
    }

    if (vlcf->sample_threshold == NGX_HTTP_VAQUERO_NO_RATIO
        && vlcf->sample_key == NULL)
    {
        ctx->sampled = (tp && vlcf->sample_parent)
                       ? (flags & VQ_SAMPLE_PARENT_SAMPLED) != 0 : 1;
        return;
    }

    /*
     * A new trace sampled by ratio alone: the tracestate that goes with
     * the decision ("ot=th:T" sampled, none not) depends on the location
     * only, and was made at configuration time.  A new trace has no
     * tracestate to keep: ngx_http_vaquero_extract() sets none when it
     * declines.
     */
    if (tp == NULL && vlcf->sample_key == NULL) {
        ctx->sampled = (vq_sample_head(vlcf->sample_threshold, flags,
                                       ctx->trace_id, 0, &ot)
                        & VQ_SAMPLE_SAMPLED) != 0;

        if (ctx->sampled) {
            ctx->tracestate = vlcf->root_tracestate;
        }

        return;
    }

    threshold = vlcf->sample_threshold == NGX_HTTP_VAQUERO_NO_RATIO
                ? 0 : vlcf->sample_threshold;
    key_r = 0;

    /* no key (the header was not sent, say): the trace id decides */
    if (vlcf->sample_key
        && ngx_http_complex_value(r, vlcf->sample_key, &key) == NGX_OK
        && key.len)
    {
        flags |= VQ_SAMPLE_KEY;
        key_r = vq_sample_key_randomness(key.data, key.len);
    }

    (void) vq_ot_parse(NULL, 0, &ot);
    had_ot = 0;

    if (ctx->tracestate.len
        && vq_tracestate_get((char *) ctx->tracestate.data,
                             ctx->tracestate.len, "ot", 2, &value, &len)
           == VQ_OK)
    {
        had_ot = 1;

        if (vq_ot_parse(value, len, &ot) != VQ_OK) {
            /* not an ot entry at all: ours replaces it */
            (void) vq_ot_parse(NULL, 0, &ot);
        }
    }

    ctx->sampled = (vq_sample_head(threshold, flags, ctx->trace_id, key_r,
                                   &ot)
                    & VQ_SAMPLE_SAMPLED) != 0;

    ngx_http_vaquero_set_ot(r, ctx, &ot, had_ot);
}


/* tracestate with the "ot" entry in front, or without one if it is empty */
static void
ngx_http_vaquero_set_ot(ngx_http_request_t *r, ngx_http_vaquero_ctx_t *ctx,
    vq_ot_t *ot, ngx_uint_t had_ot)
{
    int      n;
    char     value[VQ_OT_VALUE_MAX];
    u_char  *p;
    size_t   size;

    n = vq_ot_format(ot, value, sizeof(value));

    if (n == VQ_EFULL) {
        /* th does not fit the 256 characters: the spec says send none */
        ot->flags &= ~VQ_OT_TH;
        n = vq_ot_format(ot, value, sizeof(value));
    }

    if (n < 0 || (n == 0 && !had_ot)) {
        return;
    }

    size = ctx->tracestate.len + sizeof("ot=,") - 1 + n;

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return;
    }

    if (n > 0) {
        n = vq_tracestate_put((char *) ctx->tracestate.data,
                              ctx->tracestate.len, "ot", 2, value, n,
                              (char *) p, size);
    } else {
        n = vq_tracestate_del((char *) ctx->tracestate.data,
                              ctx->tracestate.len, "ot", 2, (char *) p, size);
    }

    if (n >= 0) {
        ctx->tracestate.data = p;
        ctx->tracestate.len = n;
    }
}


static ngx_int_t
ngx_http_vaquero_enabled(ngx_http_request_t *r,
    ngx_http_vaquero_loc_conf_t *vlcf)
{
    ngx_str_t  value;

    if (vlcf->enable_value == NULL) {
        return vlcf->enable == 1;
    }

    if (ngx_http_complex_value(r, vlcf->enable_value, &value) != NGX_OK) {
        return 0;
    }

    return value.len != 0 && !(value.len == 1 && value.data[0] == '0');
}


/*
 * Pre-access: after "rewrite" and "set" have had their say, before
 * auth_request and mirror make subrequests (which copy the headers) and
 * before the content phase builds the upstream request.
 */
ngx_int_t
ngx_http_vaquero_preaccess_handler(ngx_http_request_t *r)
{
    ngx_http_vaquero_ctx_t       *ctx;
    ngx_http_vaquero_loc_conf_t  *vlcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_vaquero_trace(r);

    if (ctx == NULL || ctx->injected) {
        return NGX_DECLINED;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vaquero_module);

    if ((vlcf->trace_context & NGX_HTTP_VAQUERO_INJECT)
        && ngx_http_vaquero_inject(r, ctx) == NGX_OK)
    {
        ctx->injected = 1;
    }

    return NGX_DECLINED;
}
