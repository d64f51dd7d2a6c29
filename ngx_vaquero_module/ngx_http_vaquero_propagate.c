/*
 * W3C Trace Context in and out: the request's traceparent and tracestate
 * headers are read (parsed by libvaquero), and replaced, never duplicated,
 * in the header list that proxy, fastcgi, grpc, uwsgi and scgi copy into
 * what they send upstream.
 *
 * nginx keeps every header line in r->headers_in.headers, repeated ones
 * too; $http_traceparent shows only the first.  So the list is walked.
 */

#include "ngx_http_vaquero_module.h"


#define ngx_http_vaquero_is(h, name)                                         \
    ((h)->key.len == sizeof(name) - 1                                        \
     && ngx_strncasecmp((h)->key.data, (u_char *) name, sizeof(name) - 1)   \
        == 0)


static ngx_table_elt_t *ngx_http_vaquero_set_header(ngx_http_request_t *r,
    ngx_table_elt_t *h, ngx_str_t *name, ngx_str_t *value);
static ngx_int_t ngx_http_vaquero_remove_headers(ngx_http_request_t *r,
    ngx_table_elt_t *keep_traceparent, ngx_table_elt_t *keep_tracestate);


static ngx_str_t  ngx_http_vaquero_traceparent = ngx_string("traceparent");
static ngx_str_t  ngx_http_vaquero_tracestate = ngx_string("tracestate");


/*
 * The incoming context: NGX_OK and *tp when there is exactly one valid
 * traceparent header; *tracestate is then every tracestate header joined
 * in order with ",", or empty if there is none or the list is invalid.
 * NGX_DECLINED otherwise: the caller starts a new trace, and forwards no
 * tracestate.
 */
ngx_int_t
ngx_http_vaquero_extract(ngx_http_request_t *r, vq_traceparent_t *tp,
    ngx_str_t *tracestate)
{
    u_char           *p;
    size_t            len;
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *traceparent, *first;

    traceparent = NULL;
    first = NULL;
    len = 0;
    n = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_vaquero_is(&h[i], "traceparent")) {
            if (traceparent) {
                /* two of them: which one would be the parent? neither */
                return NGX_DECLINED;
            }

            traceparent = &h[i];

        } else if (ngx_http_vaquero_is(&h[i], "tracestate")) {
            if (first == NULL) {
                first = &h[i];
            }

            len += h[i].value.len + 1;
            n++;
        }
    }

    if (traceparent == NULL
        || vq_traceparent_parse((char *) traceparent->value.data,
                                traceparent->value.len, tp)
           != VQ_OK)
    {
        return NGX_DECLINED;
    }

    ngx_str_null(tracestate);

    if (n == 0) {
        return NGX_OK;
    }

    if (n == 1) {
        *tracestate = first->value;

    } else {
        /* several tracestate headers are one list, in their order */
        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_OK;
        }

        tracestate->data = p;

        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (ngx_http_vaquero_is(&h[i], "tracestate")) {
                if (p != tracestate->data) {
                    *p++ = ',';
                }

                p = ngx_cpymem(p, h[i].value.data, h[i].value.len);
            }
        }

        tracestate->len = p - tracestate->data;
    }

    if (vq_tracestate_validate((char *) tracestate->data, tracestate->len)
        != VQ_OK)
    {
        ngx_str_null(tracestate);
    }

    return NGX_OK;
}


/*
 * The outgoing context: one traceparent, ours, and one tracestate if
 * there is one to forward, in place of whatever the client sent.
 */
ngx_int_t
ngx_http_vaquero_inject(ngx_http_request_t *r, ngx_http_vaquero_ctx_t *ctx)
{
    ngx_str_t         value;
    ngx_uint_t        i, extra;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *traceparent, *tracestate;

    traceparent = NULL;
    tracestate = NULL;
    extra = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_vaquero_is(&h[i], "traceparent")) {
            if (traceparent) {
                extra++;
            } else {
                traceparent = &h[i];
            }

        } else if (ngx_http_vaquero_is(&h[i], "tracestate")) {
            if (tracestate) {
                extra++;
            } else {
                tracestate = &h[i];
            }
        }
    }

    value.data = ctx->traceparent;
    value.len = VQ_TRACEPARENT_LEN;

    traceparent = ngx_http_vaquero_set_header(r, traceparent,
                                              &ngx_http_vaquero_traceparent,
                                              &value);
    if (traceparent == NULL) {
        return NGX_ERROR;
    }

    if (ctx->tracestate.len) {
        tracestate = ngx_http_vaquero_set_header(r, tracestate,
                                                 &ngx_http_vaquero_tracestate,
                                                 &ctx->tracestate);
        if (tracestate == NULL) {
            return NGX_ERROR;
        }

    } else if (tracestate) {
        /* a new trace, or a list not worth forwarding: no tracestate */
        tracestate = NULL;
        extra++;
    }

    if (extra) {
        return ngx_http_vaquero_remove_headers(r, traceparent, tracestate);
    }

    return NGX_OK;
}


/* Sets h's value, or adds the header when h is NULL; returns it. */
static ngx_table_elt_t *
ngx_http_vaquero_set_header(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_str_t *name, ngx_str_t *value)
{
    if (h) {
        h->value = *value;
        return h;
    }

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return NULL;
    }

    /* as nginx's parser leaves it: proxy_set_header's hash finds it */
    h->key = *name;
    h->lowcase_key = name->data;
    h->hash = ngx_hash_key(name->data, name->len);
    h->value = *value;

    return h;
}


/*
 * nginx's lists cannot drop an element, and the upstream modules do not
 * skip any: the list is copied without the headers to remove.  Only when
 * a client sent duplicates, or a tracestate that must go: rarely.
 */
static ngx_int_t
ngx_http_vaquero_remove_headers(ngx_http_request_t *r,
    ngx_table_elt_t *keep_traceparent, ngx_table_elt_t *keep_tracestate)
{
    ngx_uint_t        i;
    ngx_list_t        headers;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *copy;

    if (ngx_list_init(&headers, r->pool, 20, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if ((ngx_http_vaquero_is(&h[i], "traceparent")
             && &h[i] != keep_traceparent)
            || (ngx_http_vaquero_is(&h[i], "tracestate")
                && &h[i] != keep_tracestate))
        {
            continue;
        }

        copy = ngx_list_push(&headers);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        *copy = h[i];
    }

    /* r->headers_in.host and the like still point at the old elements,
       which stay valid and unchanged in the request's pool */
    r->headers_in.headers = headers;

    return NGX_OK;
}
