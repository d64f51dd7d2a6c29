/*
 * Header capture: vaquero_capture_request_header and
 * vaquero_capture_response_header, as span attributes named
 * "http.request.header.<lowercase name>" (OpenTelemetry's), every value
 * of a repeated header kept, one per line.
 *
 * Credentials are never exported: Authorization and Proxy-Authorization
 * keep the scheme and at most the first 10 characters of a bearer token
 * (as the Vaquero FastAPI guide's middleware does), Cookie, Set-Cookie
 * and X-Api-Key nothing.
 */

#include "ngx_http_vaquero_module.h"


#define NGX_HTTP_VAQUERO_REDACTED        "[REDACTED]"
#define NGX_HTTP_VAQUERO_BEARER_KEPT     10

/* ngx_http_vaquero_capture_t.redact */
#define NGX_HTTP_VAQUERO_KEEP            0
#define NGX_HTTP_VAQUERO_CREDENTIALS     1     /* scheme, bearer prefix */
#define NGX_HTTP_VAQUERO_SECRET          2     /* nothing at all */


typedef struct {
    ngx_str_t   name;
    ngx_uint_t  redact;
} ngx_http_vaquero_redaction_t;


static ngx_uint_t ngx_http_vaquero_redaction(ngx_str_t *name);
static u_char *ngx_http_vaquero_redact(u_char *p, u_char *last,
    ngx_str_t *value, ngx_uint_t redact);
static void ngx_http_vaquero_capture_list(ngx_http_request_t *r,
    ngx_array_t *captures, ngx_list_t *headers, ngx_table_elt_t *extra,
    vq_span_t *span);


static ngx_http_vaquero_redaction_t  ngx_http_vaquero_redactions[] = {
    { ngx_string("authorization"), NGX_HTTP_VAQUERO_CREDENTIALS },
    { ngx_string("proxy-authorization"), NGX_HTTP_VAQUERO_CREDENTIALS },
    { ngx_string("cookie"), NGX_HTTP_VAQUERO_SECRET },
    { ngx_string("set-cookie"), NGX_HTTP_VAQUERO_SECRET },
    { ngx_string("x-api-key"), NGX_HTTP_VAQUERO_SECRET },
    { ngx_null_string, 0 }
};


/* development mode: what is useful and never a secret */
static ngx_str_t  ngx_http_vaquero_default_request[] = {
    ngx_string("accept"),
    ngx_string("x-forwarded-for"),
    ngx_string("x-request-id"),
    ngx_null_string
};

static ngx_str_t  ngx_http_vaquero_default_response[] = {
    ngx_string("content-type"),
    ngx_string("cache-control"),
    ngx_null_string
};


static ngx_int_t
ngx_http_vaquero_add_capture(ngx_conf_t *cf, ngx_array_t **captures,
    ngx_str_t *name, const char *prefix)
{
    size_t                       len;
    ngx_http_vaquero_capture_t  *c;

    if (*captures == NULL) {
        *captures = ngx_array_create(cf->pool, 4,
                                     sizeof(ngx_http_vaquero_capture_t));
        if (*captures == NULL) {
            return NGX_ERROR;
        }
    }

    c = ngx_array_push(*captures);
    if (c == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(prefix);

    c->key.len = len + name->len;
    c->key.data = ngx_pnalloc(cf->pool, c->key.len);
    if (c->key.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(c->key.data, prefix, len);
    ngx_strlow(c->key.data + len, name->data, name->len);

    c->name.data = c->key.data + len;
    c->name.len = name->len;
    c->redact = ngx_http_vaquero_redaction(&c->name);

    return NGX_OK;
}


char *
ngx_http_vaquero_capture_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_vaquero_loc_conf_t  *vlcf = conf;

    u_char        *p;
    ngx_str_t     *value;
    ngx_uint_t     i;
    const char    *prefix;
    ngx_array_t  **captures;

    value = cf->args->elts;

    if (cmd->offset == 0) {
        captures = &vlcf->capture_request;
        prefix = "http.request.header.";

    } else {
        captures = &vlcf->capture_response;
        prefix = "http.response.header.";
    }

    if (*captures != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *captures = NULL;

    for (i = 1; i < cf->args->nelts; i++) {

        for (p = value[i].data; p < value[i].data + value[i].len; p++) {
            /* a token, as HTTP defines a field name */
            if (*p <= ' ' || *p >= 0x7f || ngx_strchr("\"(),/:;<=>?@[\\]{}", *p))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid header name \"%V\" in \"%V\" "
                                   "directive", &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }
        }

        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty header name in \"%V\" directive",
                               &cmd->name);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_vaquero_add_capture(cf, captures, &value[i], prefix)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * In development mode, a location without capture directives gets these,
 * as far as the record's attribute slots left free allow.
 */
ngx_int_t
ngx_http_vaquero_capture_defaults(ngx_conf_t *cf,
    ngx_http_vaquero_loc_conf_t *vlcf, ngx_uint_t free)
{
    ngx_str_t  *name;

    if (vlcf->capture_request == NULL) {
        for (name = ngx_http_vaquero_default_request;
             name->len && free;
             name++, free--)
        {
            if (ngx_http_vaquero_add_capture(cf, &vlcf->capture_request, name,
                                             "http.request.header.")
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (vlcf->capture_response == NULL) {
        for (name = ngx_http_vaquero_default_response;
             name->len && free;
             name++, free--)
        {
            if (ngx_http_vaquero_add_capture(cf, &vlcf->capture_response,
                                             name, "http.response.header.")
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_vaquero_redaction(ngx_str_t *name)
{
    ngx_http_vaquero_redaction_t  *rd;

    for (rd = ngx_http_vaquero_redactions; rd->name.len; rd++) {
        if (rd->name.len == name->len
            && ngx_strncmp(rd->name.data, name->data, name->len) == 0)
        {
            return rd->redact;
        }
    }

    return NGX_HTTP_VAQUERO_KEEP;
}


/* The captured headers of the request and of its response. */
void
ngx_http_vaquero_capture(ngx_http_request_t *r,
    ngx_http_vaquero_loc_conf_t *vlcf, vq_span_t *span)
{
    ngx_table_elt_t  extra;

    if (vlcf->capture_request) {
        ngx_http_vaquero_capture_list(r, vlcf->capture_request,
                                      &r->headers_in.headers, NULL, span);
    }

    if (vlcf->capture_response) {
        /* nginx keeps Content-Type out of the response's header list */
        ngx_memzero(&extra, sizeof(ngx_table_elt_t));
        ngx_str_set(&extra.key, "content-type");
        extra.value = r->headers_out.content_type;

        ngx_http_vaquero_capture_list(r, vlcf->capture_response,
                                      &r->headers_out.headers,
                                      extra.value.len ? &extra : NULL, span);
    }
}


static void
ngx_http_vaquero_capture_list(ngx_http_request_t *r, ngx_array_t *captures,
    ngx_list_t *headers, ngx_table_elt_t *extra, vq_span_t *span)
{
    u_char                      *p, *last;
    u_char                       buf[512];
    ngx_uint_t                   i, j;
    ngx_list_part_t             *part;
    ngx_table_elt_t             *h;
    ngx_http_vaquero_capture_t  *c;

    c = captures->elts;

    for (j = 0; j < captures->nelts; j++) {

        /* the record keeps at most 192 bytes of a value anyway */
        p = buf;
        last = buf + sizeof(buf);

        if (extra && extra->key.len == c[j].name.len
            && ngx_strncasecmp(extra->key.data, c[j].name.data,
                               c[j].name.len) == 0)
        {
            p = ngx_http_vaquero_redact(p, last, &extra->value,
                                        c[j].redact);
        }

        part = &headers->part;
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

            /* a response header nginx has deleted */
            if (h[i].hash == 0 || h[i].key.len != c[j].name.len
                || ngx_strncasecmp(h[i].key.data, c[j].name.data,
                                   c[j].name.len) != 0)
            {
                continue;
            }

            /* every value of a repeated header, one per line */
            if (p != buf && p < last) {
                *p++ = LF;
            }

            p = ngx_http_vaquero_redact(p, last, &h[i].value, c[j].redact);
        }

        if (p != buf) {
            vq_span_add_attr(span, (char *) c[j].key.data, c[j].key.len,
                             (char *) buf, p - buf);
        }
    }
}


static u_char *
ngx_http_vaquero_redact(u_char *p, u_char *last, ngx_str_t *value,
    ngx_uint_t redact)
{
    size_t   n, kept;
    u_char  *space;

    switch (redact) {

    case NGX_HTTP_VAQUERO_SECRET:
        return ngx_cpymem(p, NGX_HTTP_VAQUERO_REDACTED,
                          ngx_min((size_t) (last - p),
                                  sizeof(NGX_HTTP_VAQUERO_REDACTED) - 1));

    case NGX_HTTP_VAQUERO_CREDENTIALS:
        /* "<scheme> <credentials>": the scheme stays */
        space = ngx_strlchr(value->data, value->data + value->len, ' ');
        n = space ? (size_t) (space - value->data) : value->len;

        p = ngx_cpymem(p, value->data, ngx_min((size_t) (last - p), n));

        if (n == 6 && ngx_strncasecmp(value->data, (u_char *) "Bearer", 6)
                      == 0)
        {
            /* a bearer token keeps at most its first 10 characters,
               and never more than half of it */
            kept = space ? value->len - n - 1 : 0;
            kept = ngx_min(kept / 2, NGX_HTTP_VAQUERO_BEARER_KEPT);

            if ((size_t) (last - p) > kept + 4) {
                *p++ = ' ';
                p = ngx_cpymem(p, space + 1, kept);
                p = ngx_cpymem(p, "...", 3);
            }

            return p;
        }

        if ((size_t) (last - p) > sizeof(NGX_HTTP_VAQUERO_REDACTED)) {
            *p++ = ' ';
            p = ngx_cpymem(p, NGX_HTTP_VAQUERO_REDACTED,
                           sizeof(NGX_HTTP_VAQUERO_REDACTED) - 1);
        }

        return p;

    default: /* NGX_HTTP_VAQUERO_KEEP */
        return ngx_cpymem(p, value->data,
                          ngx_min((size_t) (last - p), value->len));
    }
}
