/*
 * ngx_http_vaquero_module: shared declarations of the nginx glue.
 */

#ifndef _NGX_HTTP_VAQUERO_MODULE_H_INCLUDED_
#define _NGX_HTTP_VAQUERO_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <vaquero/vaquero.h>


#define NGX_HTTP_VAQUERO_USER_AGENT  "ngx_vaquero_module/" VQ_VERSION

#define NGX_HTTP_VAQUERO_PRODUCTION   0
#define NGX_HTTP_VAQUERO_DEVELOPMENT  1


/* what the shared zone holds, besides the queue's slots */
typedef struct {
    vq_stats_t                  stats;
    vq_queue_t                 *queue;
} ngx_http_vaquero_shm_t;


typedef struct {
    ngx_str_t                   endpoint;
    ngx_str_t                   api_key;
    ngx_str_t                   project_id;
    ngx_str_t                   service_name;
    ngx_uint_t                  mode;
    ngx_int_t                   batch_size;
    ngx_msec_t                  flush_interval;
    ngx_msec_t                  export_timeout;
    ngx_msec_t                  shutdown_timeout;
    size_t                      queue_size;

    ngx_flag_t                  enabled;        /* some "vaquero" is not off */
    ngx_int_t                   request_id_index;
    ngx_shm_zone_t             *shm_zone;
    ngx_http_vaquero_shm_t     *shm;
} ngx_http_vaquero_main_conf_t;


typedef struct {
    ngx_str_t                   key;
    ngx_http_complex_value_t    value;
} ngx_http_vaquero_attr_t;


typedef struct {
    ngx_int_t                   enable;         /* 1, 0, or unset */
    ngx_http_complex_value_t   *enable_value;   /* vaquero $var; */
    ngx_str_t                   agent_name;
    ngx_http_complex_value_t   *span_name;
    ngx_array_t                *attributes;     /* ngx_http_vaquero_attr_t */
} ngx_http_vaquero_loc_conf_t;


/* per request; found again after an internal redirect (see get_ctx) */
typedef struct {
    int64_t                     start_us;
    off_t                       header_length;  /* request_length then */
} ngx_http_vaquero_ctx_t;


ngx_http_vaquero_ctx_t *ngx_http_vaquero_get_ctx(ngx_http_request_t *r);
int64_t ngx_http_vaquero_now_us(void);

void ngx_http_vaquero_random_reset(void);
void ngx_http_vaquero_build_span(ngx_http_request_t *r,
    ngx_http_vaquero_main_conf_t *vmcf, ngx_http_vaquero_loc_conf_t *vlcf,
    vq_span_t *span);

ngx_int_t ngx_http_vaquero_add_zone(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf);
void ngx_http_vaquero_reconfigure(void);
ngx_int_t ngx_http_vaquero_init_process(ngx_cycle_t *cycle);
void ngx_http_vaquero_exit_process(ngx_cycle_t *cycle);
vq_idgen_t *ngx_http_vaquero_idgen(void);


extern ngx_module_t  ngx_http_vaquero_module;


#endif /* _NGX_HTTP_VAQUERO_MODULE_H_INCLUDED_ */
