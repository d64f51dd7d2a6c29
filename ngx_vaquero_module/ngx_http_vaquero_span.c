/*
 * The server span of a request, written into a span record (DESIGN 6)
 * and handed to the queue in the log phase.
 *
 * Only copies and a few branches: the identity was decided when the
 * request started (ngx_http_vaquero_request.c), there is no heap
 * allocation and no system call, and url.full is put together by the
 * exporter.
 */

#include "ngx_http_vaquero_module.h"


#define ngx_http_vaquero_set(span, field, str)                               \
    vq_span_set_str(span, field, (const char *) (str)->data, (str)->len)


/*
 * $request_id, the value nginx gives (and caches) for the request.  If no
 * one has asked for it yet, it is filled in here, the way nginx would
 * fill it but from the pool above; anything reading it later sees the
 * same value.
 */
static void
ngx_http_vaquero_set_request_id(ngx_http_request_t *r,
    ngx_http_vaquero_main_conf_t *vmcf, vq_span_t *span)
{
    u_char                      id[16];
    ngx_http_variable_value_t  *v;

    v = &r->variables[vmcf->request_id_index];

    if (!v->valid && !v->not_found && ngx_http_vaquero_random16(id) == NGX_OK)
    {
        v->data = ngx_pnalloc(r->pool, 32);

        if (v->data) {
            vq_id_to_hex(id, 16, (char *) v->data);
            v->len = 32;
            v->valid = 1;
            v->no_cacheable = 0;
            v->not_found = 0;
        }
    }

    v = ngx_http_get_indexed_variable(r, vmcf->request_id_index);

    if (v && !v->not_found) {
        vq_span_set_str(span, VQ_FIELD_REQUEST_ID, (const char *) v->data,
                        v->len);
    }
}


static ngx_uint_t
ngx_http_vaquero_status(ngx_http_request_t *r)
{
    /* as $status does */
    if (r->err_status) {
        return r->err_status;
    }

    if (r->headers_out.status) {
        return r->headers_out.status;
    }

    if (r->http_version == NGX_HTTP_VERSION_9) {
        return 9;
    }

    return 0;
}


static off_t
ngx_http_vaquero_body_size(ngx_http_request_t *r, ngx_http_vaquero_ctx_t *ctx)
{
    off_t             n;
    ngx_table_elt_t  *h;

    /*
     * Content-Length as the client sent it: discarding a body sets
     * content_length_n to 0.  A chunked body counts what was read after
     * the header, chunk framing included.
     */

    h = r->headers_in.content_length;

    if (h) {
        n = ngx_atoof(h->value.data, h->value.len);
        return n > 0 ? n : 0;
    }

    if (ctx && r->request_length > ctx->header_length) {
        return r->request_length - ctx->header_length;
    }

    return 0;
}


static void
ngx_http_vaquero_set_protocol(ngx_http_request_t *r, vq_span_t *span)
{
    ngx_str_t  v;

    switch (r->http_version) {
    case NGX_HTTP_VERSION_9:
        ngx_str_set(&v, "0.9");
        break;
    case NGX_HTTP_VERSION_10:
        ngx_str_set(&v, "1.0");
        break;
    case NGX_HTTP_VERSION_11:
        ngx_str_set(&v, "1.1");
        break;
    case NGX_HTTP_VERSION_20:
        ngx_str_set(&v, "2");
        break;
    default:
        return;
    }

    ngx_http_vaquero_set(span, VQ_FIELD_PROTOCOL_VERSION, &v);
}


static void
ngx_http_vaquero_set_url(ngx_http_request_t *r, vq_span_t *span)
{
    u_char     *q;
    ngx_str_t   path, query, scheme, host;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https");
    } else
#endif
    {
        ngx_str_set(&scheme, "http");
    }

    ngx_http_vaquero_set(span, VQ_FIELD_SCHEME, &scheme);

    /* the Host the client asked for, else the server's name */
    host = r->headers_in.server;

    if (host.len == 0) {
        ngx_http_core_srv_conf_t  *cscf;

        cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);
        host = cscf->server_name;
    }

    ngx_http_vaquero_set(span, VQ_FIELD_HOST, &host);

    /* what the client sent, before rewrites and redirects */
    path = r->unparsed_uri;

    if (path.len == 0) {
        return;
    }

    q = ngx_strlchr(path.data, path.data + path.len, '?');

    if (q) {
        query.data = q + 1;
        query.len = path.data + path.len - query.data;
        path.len = q - path.data;
    }

    ngx_http_vaquero_set(span, VQ_FIELD_PATH, &path);

    if (q) {
        ngx_http_vaquero_set(span, VQ_FIELD_QUERY, &query);
    }
}


static void
ngx_http_vaquero_set_attributes(ngx_http_request_t *r,
    ngx_http_vaquero_loc_conf_t *vlcf, vq_span_t *span)
{
    ngx_str_t                 value;
    ngx_uint_t                i;
    ngx_http_vaquero_attr_t  *attr;

    if (vlcf->attributes == NULL) {
        return;
    }

    attr = vlcf->attributes->elts;

    for (i = 0; i < vlcf->attributes->nelts; i++) {
        /* an empty value (a header not sent, say) is no attribute */
        if (ngx_http_complex_value(r, &attr[i].value, &value) != NGX_OK
            || value.len == 0)
        {
            continue;
        }

        vq_span_add_attr(span, (const char *) attr[i].key.data,
                         attr[i].key.len, (const char *) value.data,
                         value.len);
    }
}


static void
ngx_http_vaquero_build_span(ngx_http_request_t *r, ngx_http_vaquero_ctx_t *ctx,
    ngx_http_vaquero_main_conf_t *vmcf, ngx_http_vaquero_loc_conf_t *vlcf,
    ngx_uint_t flags, int64_t end, vq_span_t *span)
{
    off_t                       sent;
    ngx_str_t                   name;
    ngx_uint_t                  status;
    ngx_connection_t           *c;
    ngx_http_core_loc_conf_t   *clcf;

    c = r->connection;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    vq_span_init(span, VQ_SPAN_SERVER);

    ngx_memcpy(span->h.trace_id, ctx->trace_id, VQ_TRACE_ID_SIZE);
    ngx_memcpy(span->h.span_id, ctx->span_id, VQ_SPAN_ID_SIZE);
    span->h.trace_flags = ctx->trace_flags;

    span->h.flags = (uint8_t) flags;

    if (ctx->has_parent) {
        ngx_memcpy(span->h.parent_span_id, ctx->parent_id, VQ_SPAN_ID_SIZE);
        span->h.flags |= VQ_SPAN_HAS_PARENT;
    }

    span->h.start_us = ctx->start_us;
    span->h.end_us = ngx_http_vaquero_wall_us(ctx, end);

    if (span->h.end_us < span->h.start_us) {
        span->h.end_us = span->h.start_us;
    }

    status = ngx_http_vaquero_status(r);
    span->h.status_code = (uint16_t) status;

    if (status >= 500) {
        span->h.flags |= VQ_SPAN_ERROR;
        span->h.error = VQ_SPAN_ERR_HTTP;
    }

    span->h.request_body_size = ngx_http_vaquero_body_size(r, ctx);

    sent = c->sent - (off_t) r->header_size;
    span->h.response_body_size = sent > 0 ? sent : 0;

    span->h.client_port = ngx_inet_get_port(c->sockaddr);
    /* the listening socket's port: no getsockname() on the request path */
    span->h.server_port = c->listening
                          ? ngx_inet_get_port(c->listening->sockaddr) : 0;

    /*
     * The short fields that identify the span first: the record holds
     * room back for them anyway, and the long ones then get the rest.
     */
    ngx_http_vaquero_set(span, VQ_FIELD_METHOD, &r->method_name);
    ngx_http_vaquero_set(span, VQ_FIELD_ROUTE, &clcf->name);
    ngx_http_vaquero_set(span, VQ_FIELD_CLIENT_ADDRESS, &c->addr_text);
    ngx_http_vaquero_set_protocol(r, span);
    ngx_http_vaquero_set_request_id(r, vmcf, span);
    ngx_http_vaquero_set_url(r, span);

    /* unset, the name and agent name are derived from method and route */
    if (vlcf->span_name
        && ngx_http_complex_value(r, vlcf->span_name, &name) == NGX_OK)
    {
        ngx_http_vaquero_set(span, VQ_FIELD_NAME, &name);
    }

    if (vlcf->agent_name.len) {
        ngx_http_vaquero_set(span, VQ_FIELD_AGENT_NAME, &vlcf->agent_name);
    }

    if (r->headers_in.user_agent) {
        ngx_http_vaquero_set(span, VQ_FIELD_USER_AGENT,
                             &r->headers_in.user_agent->value);
    }

    if (r->headers_in.content_type) {
        ngx_http_vaquero_set(span, VQ_FIELD_CONTENT_TYPE,
                             &r->headers_in.content_type->value);
    }

    ngx_http_vaquero_set_attributes(r, vlcf, span);
    ngx_http_vaquero_capture(r, vlcf, span);

    if (ctx->tracestate.len) {
        ngx_http_vaquero_set(span, VQ_FIELD_TRACESTATE, &ctx->tracestate);
    }
}


/*
 * Whether the request's spans are exported: VQ_SPAN_SAMPLED when head
 * sampling said yes; else VQ_SPAN_KEPT_ERROR or VQ_SPAN_KEPT_SLOW when
 * vaquero_sample_errors or vaquero_sample_slow keeps it anyway; else 0.
 */
static ngx_uint_t
ngx_http_vaquero_keep(ngx_http_request_t *r, ngx_http_vaquero_ctx_t *ctx,
    ngx_http_vaquero_loc_conf_t *vlcf, int64_t end)
{
    if (ctx->sampled) {
        return VQ_SPAN_SAMPLED;
    }

    if (vlcf->sample_errors
        && (ngx_http_vaquero_status(r) >= 500
            || ngx_http_vaquero_upstream_failed(r, ctx)))
    {
        return VQ_SPAN_KEPT_ERROR;
    }

    if (vlcf->sample_slow
        && end - ctx->start_mono >= (int64_t) vlcf->sample_slow * 1000)
    {
        return VQ_SPAN_KEPT_SLOW;
    }

    return 0;
}


/* One server span per main request; subrequests log only with log_subrequest. */
ngx_int_t
ngx_http_vaquero_log_handler(ngx_http_request_t *r)
{
    int64_t                        end;
    vq_span_t                      span;
    ngx_uint_t                     flags;
    ngx_http_vaquero_ctx_t        *ctx;
    ngx_http_vaquero_loc_conf_t   *vlcf;
    ngx_http_vaquero_main_conf_t  *vmcf;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_vaquero_trace(r);

    if (ctx == NULL) {
        return NGX_OK;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vaquero_module);
    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vaquero_module);

    end = ngx_http_vaquero_mono_us();
    flags = ngx_http_vaquero_keep(r, ctx, vlcf, end);

    if (flags == 0) {
        /* the cheap way out: ids and variables were all it cost */
        vq_stats_add(&ngx_http_vaquero_zone_stats(vmcf)->spans_sampled_out,
                     1 + ngx_http_vaquero_upstream_spans(r, ctx, vmcf, 0));
        return NGX_OK;
    }

    /*
     * The queue's next slot was last written a lap (megabytes) ago: it is
     * brought in while the spans are built, not waited for in the first
     * push (each push brings in the slot after its own).
     */
    vq_queue_prefetch(ngx_http_vaquero_zone_queue(vmcf), VQ_SPAN_RECORD_MAX);

    ngx_http_vaquero_upstream_spans(r, ctx, vmcf, flags);

    ngx_http_vaquero_build_span(r, ctx, vmcf, vlcf, flags, end, &span);
    ngx_http_vaquero_record(vmcf, &span, r->connection->log);

    return NGX_OK;
}
