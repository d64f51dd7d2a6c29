/*
 * $vaquero_trace_id, $vaquero_span_id, $vaquero_parent_id,
 * $vaquero_traceparent and $vaquero_sampled (DESIGN 5): what is exported
 * for the request, for log_format, add_header, proxy_set_header or map.
 * Empty for a request that is not traced.
 */

#include "ngx_http_vaquero_module.h"


#define NGX_HTTP_VAQUERO_VAR_TRACE_ID     0
#define NGX_HTTP_VAQUERO_VAR_SPAN_ID      1
#define NGX_HTTP_VAQUERO_VAR_PARENT_ID    2
#define NGX_HTTP_VAQUERO_VAR_TRACEPARENT  3
#define NGX_HTTP_VAQUERO_VAR_SAMPLED      4


static ngx_int_t ngx_http_vaquero_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/*
 * Not cacheable: a variable read before the request's location is known
 * (in a server-level "set", say) must not hide the trace decided there.
 */
static ngx_http_variable_t  ngx_http_vaquero_vars[] = {

    { ngx_string("vaquero_trace_id"), NULL, ngx_http_vaquero_variable,
      NGX_HTTP_VAQUERO_VAR_TRACE_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vaquero_span_id"), NULL, ngx_http_vaquero_variable,
      NGX_HTTP_VAQUERO_VAR_SPAN_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vaquero_parent_id"), NULL, ngx_http_vaquero_variable,
      NGX_HTTP_VAQUERO_VAR_PARENT_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vaquero_traceparent"), NULL, ngx_http_vaquero_variable,
      NGX_HTTP_VAQUERO_VAR_TRACEPARENT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vaquero_sampled"), NULL, ngx_http_vaquero_variable,
      NGX_HTTP_VAQUERO_VAR_SAMPLED, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_vaquero_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_vaquero_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vaquero_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                  *p;
    ngx_http_vaquero_ctx_t  *ctx;

    ctx = ngx_http_vaquero_trace(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    switch (data) {

    case NGX_HTTP_VAQUERO_VAR_TRACE_ID:
        /* "00-<trace id>-..." */
        v->data = ctx->traceparent + 3;
        v->len = 2 * VQ_TRACE_ID_SIZE;
        return NGX_OK;

    case NGX_HTTP_VAQUERO_VAR_TRACEPARENT:
        v->data = ctx->traceparent;
        v->len = VQ_TRACEPARENT_LEN;
        return NGX_OK;

    case NGX_HTTP_VAQUERO_VAR_SAMPLED:
        v->data = (u_char *) (ctx->sampled ? "1" : "0");
        v->len = 1;
        return NGX_OK;

    case NGX_HTTP_VAQUERO_VAR_PARENT_ID:
        if (!ctx->has_parent) {
            v->data = (u_char *) "";
            v->len = 0;
            return NGX_OK;
        }

        /* fall through */

    default: /* NGX_HTTP_VAQUERO_VAR_SPAN_ID */
        p = ngx_pnalloc(r->pool, 2 * VQ_SPAN_ID_SIZE);
        if (p == NULL) {
            return NGX_ERROR;
        }

        vq_id_to_hex(data == NGX_HTTP_VAQUERO_VAR_PARENT_ID
                     ? ctx->parent_id : ctx->span_id,
                     VQ_SPAN_ID_SIZE, (char *) p);

        v->data = p;
        v->len = 2 * VQ_SPAN_ID_SIZE;
        return NGX_OK;
    }
}
