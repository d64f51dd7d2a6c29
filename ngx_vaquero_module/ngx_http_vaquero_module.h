/*
 * ngx_http_vaquero_module: shared declarations of the nginx glue.
 *
 * One job per file:
 *
 *   ngx_http_vaquero_module.c     directives, configuration, set-up
 *   ngx_http_vaquero_request.c    a request's trace identity, from its start
 *   ngx_http_vaquero_propagate.c  W3C trace context in and out
 *   ngx_http_vaquero_upstream.c   a client span per upstream attempt
 *   ngx_http_vaquero_span.c       the server span, in the log phase
 *   ngx_http_vaquero_headers.c    captured headers, credentials redacted
 *   ngx_http_vaquero_variables.c  the $vaquero_* variables
 *   ngx_http_vaquero_status.c     the vaquero_status page
 *   ngx_http_vaquero_zone.c       the shared zone that holds the queue
 *   ngx_http_vaquero_exporter.c   the exporter thread's lifecycle, and the
 *                                 reopening of a file endpoint
 *   ngx_http_vaquero_process.c    per-process state: ids, random pool, timer
 */

#ifndef _NGX_HTTP_VAQUERO_MODULE_H_INCLUDED_
#define _NGX_HTTP_VAQUERO_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <vaquero/vaquero.h>


#define NGX_HTTP_VAQUERO_USER_AGENT  "ngx_vaquero_module/" VQ_VERSION

#define NGX_HTTP_VAQUERO_PRODUCTION   VQ_MODE_PRODUCTION
#define NGX_HTTP_VAQUERO_DEVELOPMENT  VQ_MODE_DEVELOPMENT

/* vaquero_protocol: indexes of ngx_http_vaquero_protocols[] */
#define NGX_HTTP_VAQUERO_PROTOCOL_VAQUERO    0
#define NGX_HTTP_VAQUERO_PROTOCOL_OTLP       1
#define NGX_HTTP_VAQUERO_PROTOCOL_OTLP_JSON  2

/* vaquero_sample_rate not set: no ratio sampling (every trace, or the parent's) */
#define NGX_HTTP_VAQUERO_NO_RATIO     ((uint64_t) -1)

/* vaquero_trace_context: bits of what is done with the trace context */
#define NGX_HTTP_VAQUERO_EXTRACT      0x01
#define NGX_HTTP_VAQUERO_INJECT       0x02
#define NGX_HTTP_VAQUERO_PROPAGATE    (NGX_HTTP_VAQUERO_EXTRACT               \
                                       |NGX_HTTP_VAQUERO_INJECT)
#define NGX_HTTP_VAQUERO_IGNORE       0


/* what the shared zone holds: ngx_http_vaquero_zone.c's own */
typedef struct ngx_http_vaquero_shm_s  ngx_http_vaquero_shm_t;


typedef struct {
    ngx_http_upstream_srv_conf_t   *upstream;
    ngx_http_upstream_init_peer_pt  init;
    ngx_str_t                       name;   /* as its spans give it */
} ngx_http_vaquero_peer_init_t;


/*
 * vaquero_export_header, with where it was set for later checks; name and
 * value first, laid out as in ngx_keyval_t (see ngx_http_vaquero_kv())
 */
typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   value;
    ngx_str_t                   file;
    ngx_uint_t                  line;
} ngx_http_vaquero_header_t;


typedef struct {
    ngx_str_t                   endpoint;
    ngx_int_t                   endpoint_kind;  /* VQ_ENDPOINT_* */
    ngx_open_file_t            *file;           /* a file endpoint's */
    ngx_uint_t                  protocol;
    ngx_str_t                   api_key;
    ngx_str_t                   project_id;
    ngx_str_t                   service_name;
    ngx_array_t                *resource_attributes;  /* ngx_keyval_t */
    ngx_array_t                *export_headers;  /* ..._header_t */
    ngx_uint_t                  mode;
    ngx_int_t                   batch_size;
    uint64_t                    wake_every;     /* records pushed, of all */
    ngx_msec_t                  flush_interval;
    ngx_msec_t                  export_timeout;
    ngx_msec_t                  shutdown_timeout;
    size_t                      queue_size;

    ngx_flag_t                  gzip;
    ngx_flag_t                  ssl_verify;
    ngx_str_t                   ssl_trusted_certificate;    /* PEM, read */
    ngx_str_t                   ssl_certificate;            /*   by the */
    ngx_str_t                   ssl_certificate_key;        /*   master */

    ngx_flag_t                  enabled;        /* some "vaquero" is not off */
    ngx_int_t                   request_id_index;
    ngx_shm_zone_t             *shm_zone;
    ngx_http_vaquero_shm_t     *shm;
    uint32_t                    generation;     /* of this configuration */
    ngx_array_t                *kept;           /* zone.c's: earlier queues */

    /* the upstreams' own peer.init, sorted by upstream, for the wrapper */
    ngx_array_t                 peer_inits;     /* ngx_http_vaquero_peer_init_t */
} ngx_http_vaquero_main_conf_t;


typedef struct {
    ngx_str_t                   key;
    ngx_http_complex_value_t    value;
} ngx_http_vaquero_attr_t;


/* a captured header: "http.request.header.<name>" */
typedef struct {
    ngx_str_t                   key;
    ngx_str_t                   name;           /* lowercase, in key */
    ngx_uint_t                  redact;
} ngx_http_vaquero_capture_t;


typedef struct {
    ngx_int_t                   enable;         /* 1, 0, or unset */
    ngx_http_complex_value_t   *enable_value;   /* vaquero $var; */
    ngx_str_t                   agent_name;
    ngx_http_complex_value_t   *span_name;
    ngx_array_t                *attributes;     /* ngx_http_vaquero_attr_t */
    ngx_array_t                *capture_request;    /* ..._capture_t */
    ngx_array_t                *capture_response;
    ngx_uint_t                  trace_context;
    ngx_flag_t                  upstream_spans;

    uint64_t                    sample_threshold;   /* or NO_RATIO */
    ngx_str_t                   root_tracestate;    /* "ot=th:...", sampled */
    ngx_http_complex_value_t   *sample_key;
    ngx_flag_t                  sample_parent;
    ngx_flag_t                  sample_errors;
    ngx_msec_t                  sample_slow;        /* 0: off */
} ngx_http_vaquero_loc_conf_t;


/*
 * Per main request, from the post-read phase on; found again after an
 * internal redirect (see ngx_http_vaquero_get_ctx).  The trace identity
 * is decided once, at the first location that handles the request (or
 * the first use of a $vaquero_ variable, or the log phase for a request
 * that never got that far), and never changes after.
 */
typedef struct {
    int64_t                     start_us;       /* wall clock, microseconds */
    int64_t                     start_mono;     /* monotonic, microseconds */
    off_t                       header_length;  /* request_length then */

    unsigned                    decided:1;
    unsigned                    traced:1;
    unsigned                    sampled:1;
    unsigned                    has_parent:1;
    unsigned                    injected:1;
    unsigned                    upstream_spans:1;
    unsigned                    first_attempt_taken:1;
    unsigned                    upstream_error:1;

    ngx_array_t                *attempts;       /* upstream.c's, per attempt */
    ngx_uint_t                  main_attempts;  /* of r->main itself */

    uint8_t                     trace_flags;    /* as sent downstream */
    uint8_t                     trace_id[VQ_TRACE_ID_SIZE];
    uint8_t                     span_id[VQ_SPAN_ID_SIZE];
    uint8_t                     parent_id[VQ_SPAN_ID_SIZE];
    uint8_t                     first_attempt_id[VQ_SPAN_ID_SIZE];

    ngx_str_t                   tracestate;     /* forwarded as it came */
    u_char                      traceparent[VQ_TRACEPARENT_LEN];
} ngx_http_vaquero_ctx_t;


/* ngx_http_vaquero_request.c */
ngx_int_t ngx_http_vaquero_start_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_vaquero_preaccess_handler(ngx_http_request_t *r);
ngx_http_vaquero_ctx_t *ngx_http_vaquero_get_ctx(ngx_http_request_t *r);
ngx_http_vaquero_ctx_t *ngx_http_vaquero_trace(ngx_http_request_t *r);
int64_t ngx_http_vaquero_mono_us(void);
int64_t ngx_http_vaquero_wall_us(ngx_http_vaquero_ctx_t *ctx, int64_t mono);

/* ngx_http_vaquero_propagate.c */
ngx_int_t ngx_http_vaquero_extract(ngx_http_request_t *r,
    vq_traceparent_t *tp, ngx_str_t *tracestate);
ngx_int_t ngx_http_vaquero_inject(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx);

/* ngx_http_vaquero_upstream.c */
ngx_int_t ngx_http_vaquero_upstream_init(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf);
ngx_uint_t ngx_http_vaquero_upstream_spans(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx, ngx_http_vaquero_main_conf_t *vmcf,
    ngx_uint_t flags);
ngx_uint_t ngx_http_vaquero_upstream_failed(ngx_http_request_t *r,
    ngx_http_vaquero_ctx_t *ctx);

/* ngx_http_vaquero_span.c */
ngx_int_t ngx_http_vaquero_log_handler(ngx_http_request_t *r);

/* ngx_http_vaquero_headers.c */
char *ngx_http_vaquero_capture_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_vaquero_capture_defaults(ngx_conf_t *cf,
    ngx_http_vaquero_loc_conf_t *vlcf, ngx_uint_t free);
void ngx_http_vaquero_capture(ngx_http_request_t *r,
    ngx_http_vaquero_loc_conf_t *vlcf, vq_span_t *span);

/* ngx_http_vaquero_status.c */
char *ngx_http_vaquero_set_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_vaquero_variables.c */
ngx_int_t ngx_http_vaquero_add_variables(ngx_conf_t *cf);

/* ngx_http_vaquero_zone.c */
ngx_int_t ngx_http_vaquero_add_zone(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf);
void ngx_http_vaquero_record(ngx_http_vaquero_main_conf_t *vmcf,
    vq_span_t *span, ngx_log_t *log);
vq_queue_t *ngx_http_vaquero_zone_queue(ngx_http_vaquero_main_conf_t *vmcf);
vq_stats_t *ngx_http_vaquero_zone_stats(ngx_http_vaquero_main_conf_t *vmcf);
vq_queue_t *ngx_http_vaquero_zone_kept(ngx_http_vaquero_main_conf_t *vmcf,
    ngx_uint_t i, vq_stats_t **stats);
void ngx_http_vaquero_zone_claim(ngx_http_vaquero_main_conf_t *vmcf);
vq_resources_t *ngx_http_vaquero_zone_resources(void);
void ngx_http_vaquero_zone_log_drops(ngx_log_t *log, ngx_uint_t force);

/* ngx_http_vaquero_exporter.c */
ngx_int_t ngx_http_vaquero_exporter_start(ngx_cycle_t *cycle);
void ngx_http_vaquero_exporter_stop(ngx_log_t *log);
void ngx_http_vaquero_exporter_log(ngx_log_t *log);
ngx_cycle_t *ngx_http_vaquero_exporter_cycle(void);
char *ngx_http_vaquero_exporter_file(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf, ngx_str_t *path);

/* ngx_http_vaquero_process.c */
ngx_int_t ngx_http_vaquero_init_process(ngx_cycle_t *cycle);
void ngx_http_vaquero_exit_process(ngx_cycle_t *cycle);
void ngx_http_vaquero_reconfigure(void);
vq_idgen_t *ngx_http_vaquero_idgen(void);
ngx_int_t ngx_http_vaquero_random16(u_char *out);


extern ngx_module_t          ngx_http_vaquero_module;
extern const vq_protocol_t  *ngx_http_vaquero_protocols[];


#endif /* _NGX_HTTP_VAQUERO_MODULE_H_INCLUDED_ */
