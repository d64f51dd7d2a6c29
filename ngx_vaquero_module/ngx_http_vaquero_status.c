/*
 * vaquero_status: the counters and gauges of the shared zone (DESIGN 7),
 * as JSON, or as Prometheus text with "?format=prometheus" or
 * "Accept: text/plain".  Totals since the zone was created, across all
 * workers and reloads.  Access is nginx's business (allow, deny).
 */

#include "ngx_http_vaquero_module.h"


typedef struct {
    ngx_str_t   name;
    ngx_str_t   help;
    ngx_uint_t  gauge;
} ngx_http_vaquero_metric_t;


static ngx_int_t ngx_http_vaquero_status_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_vaquero_want_prometheus(ngx_http_request_t *r);


#define ngx_http_vaquero_counter(name, help)                                 \
    { ngx_string(name), ngx_string(help), 0 }

#define ngx_http_vaquero_gauge(name, help)                                   \
    { ngx_string(name), ngx_string(help), 1 }


/* in this order in the values of the handler */
static ngx_http_vaquero_metric_t  ngx_http_vaquero_metrics[] = {
    ngx_http_vaquero_counter("spans_recorded",
        "Spans handed to the queue."),
    ngx_http_vaquero_counter("spans_sampled_out",
        "Spans not recorded because head sampling left their request out."),
    ngx_http_vaquero_counter("spans_exported",
        "Spans the collector accepted."),
    ngx_http_vaquero_counter("spans_dropped_queue_full",
        "Spans dropped because the queue was full."),
    ngx_http_vaquero_counter("spans_dropped_too_large",
        "Spans dropped because a record did not fit a queue slot."),
    ngx_http_vaquero_counter("spans_dropped_export_failed",
        "Spans dropped because the collector refused them or could not be "
        "reached in time."),
    ngx_http_vaquero_counter("spans_dropped_writer_lost",
        "Spans lost with a worker that died while writing them."),
    ngx_http_vaquero_counter("export_requests",
        "Export requests sent to the collector."),
    ngx_http_vaquero_counter("export_failures",
        "Export requests that did not succeed."),
    ngx_http_vaquero_counter("export_retries",
        "Export requests that will be tried again."),
    ngx_http_vaquero_gauge("queue_used",
        "Spans waiting in the queue."),
    ngx_http_vaquero_gauge("queue_capacity",
        "Spans the queue holds."),
    ngx_http_vaquero_gauge("last_export_status_code",
        "HTTP status of the last export request, 0 if none answered.")
};

#define NGX_HTTP_VAQUERO_METRICS                                             \
    (sizeof(ngx_http_vaquero_metrics) / sizeof(ngx_http_vaquero_metric_t))


static ngx_str_t  ngx_http_vaquero_last_status =
    ngx_string("last_export_status");


char *
ngx_http_vaquero_set_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate, or the location has another handler";
    }

    clcf->handler = ngx_http_vaquero_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_vaquero_status_handler(ngx_http_request_t *r)
{
    char                          *suffix;
    size_t                         size;
    u_char                        *p;
    uint64_t                       v[NGX_HTTP_VAQUERO_METRICS];
    ngx_int_t                      rc;
    ngx_buf_t                     *b;
    ngx_uint_t                     i, prometheus;
    ngx_chain_t                    out;
    vq_stats_t                    *st;
    vq_queue_stats_t               qs;
    ngx_http_vaquero_metric_t     *m;
    ngx_http_vaquero_main_conf_t  *vmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vaquero_module);

    ngx_memzero(&qs, sizeof(vq_queue_stats_t));
    st = NULL;

    /* no "vaquero on" anywhere: no zone, nothing counted */
    if (vmcf->shm) {
        st = ngx_http_vaquero_zone_stats(vmcf);
        vq_queue_get_stats(ngx_http_vaquero_zone_queue(vmcf), &qs);
    }

#define stat(f)  (st ? vq_stats_get(&st->f) : 0)

    v[0] = stat(spans_recorded);
    v[1] = stat(spans_sampled_out);
    v[2] = stat(spans_exported);
    v[3] = qs.refused_full;
    v[4] = qs.refused_too_big;
    v[5] = stat(spans_dropped_export_failed);
    v[6] = qs.skipped;
    v[7] = stat(export_requests);
    v[8] = stat(export_failures);
    v[9] = stat(export_retries);
    v[10] = qs.used;
    v[11] = qs.capacity;
    v[12] = stat(last_export_status);

#undef stat

    m = ngx_http_vaquero_metrics;
    prometheus = ngx_http_vaquero_want_prometheus(r);

    size = sizeof("{\"version\":\"" VQ_VERSION "\"}\n");

    for (i = 0; i < NGX_HTTP_VAQUERO_METRICS; i++) {
        size += prometheus
                ? 80 + 3 * m[i].name.len + m[i].help.len + NGX_INT64_LEN
                : sizeof(",\"\":") + m[i].name.len + NGX_INT64_LEN;
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;

    if (prometheus) {
        for (i = 0; i < NGX_HTTP_VAQUERO_METRICS; i++) {
            suffix = m[i].gauge ? "" : "_total";

            p = ngx_sprintf(p, "# HELP vaquero_%V%s %V\n"
                               "# TYPE vaquero_%V%s %s\n"
                               "vaquero_%V%s %uL\n",
                            &m[i].name, suffix, &m[i].help,
                            &m[i].name, suffix,
                            m[i].gauge ? "gauge" : "counter",
                            &m[i].name, suffix, v[i]);
        }

        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");

    } else {
        p = ngx_cpymem(p, "{\"version\":\"" VQ_VERSION "\"",
                       sizeof("{\"version\":\"" VQ_VERSION "\"") - 1);

        for (i = 0; i < NGX_HTTP_VAQUERO_METRICS; i++) {
            /* in JSON, the last status under its DESIGN 7 name */
            p = ngx_sprintf(p, ",\"%V\":%uL",
                            i == NGX_HTTP_VAQUERO_METRICS - 1
                            ? &ngx_http_vaquero_last_status : &m[i].name,
                            v[i]);
        }

        *p++ = '}';
        *p++ = LF;

        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_uint_t
ngx_http_vaquero_want_prometheus(ngx_http_request_t *r)
{
    ngx_str_t         format;
#if (NGX_HTTP_GZIP || NGX_HTTP_HEADERS)
    ngx_table_elt_t  *accept;
#endif

    if (ngx_http_arg(r, (u_char *) "format", sizeof("format") - 1, &format)
        == NGX_OK)
    {
        return format.len == sizeof("prometheus") - 1
               && ngx_strncmp(format.data, "prometheus", format.len) == 0;
    }

#if (NGX_HTTP_GZIP || NGX_HTTP_HEADERS)

    /* what Prometheus itself asks for: "text/plain;version=0.0.4;..." */
    accept = r->headers_in.accept;

    return accept
           && ngx_strlcasestrn(accept->value.data,
                               accept->value.data + accept->value.len,
                               (u_char *) "text/plain",
                               sizeof("text/plain") - 2)
              != NULL;

#else

    return 0;

#endif
}
