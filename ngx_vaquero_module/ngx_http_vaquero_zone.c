/*
 * The shared zone that holds the span queue and the counters.
 *
 * The zone keeps its queue across "nginx -s reload" (same name, size and
 * tag: the init callback gets the old data), so that what old workers
 * recorded is sent by the new ones.
 */

#include "ngx_http_vaquero_module.h"


#define NGX_HTTP_VAQUERO_DROP_LOG_INTERVAL  10    /* seconds */


struct ngx_http_vaquero_shm_s {
    uint32_t                    generation;     /* configurations loaded */
    vq_stats_t                  stats;
    vq_queue_t                 *queue;
};


static ngx_int_t ngx_http_vaquero_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static ngx_str_t  ngx_http_vaquero_zone_name = ngx_string("vaquero");


ngx_int_t
ngx_http_vaquero_add_zone(ngx_conf_t *cf, ngx_http_vaquero_main_conf_t *vmcf)
{
    size_t           size;
    ngx_shm_zone_t  *zone;

    /* the queue, plus the slab allocator's own pages and bookkeeping */
    size = vmcf->queue_size + vmcf->queue_size / 128 + 64 * 1024;
    size = ngx_align(size, ngx_pagesize);

    zone = ngx_shared_memory_add(cf, &ngx_http_vaquero_zone_name, size,
                                 &ngx_http_vaquero_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    if (zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "shared memory zone \"%V\" is already in use",
                           &ngx_http_vaquero_zone_name);
        return NGX_ERROR;
    }

    zone->init = ngx_http_vaquero_init_zone;
    zone->data = vmcf;

    vmcf->shm_zone = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vaquero_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_vaquero_main_conf_t  *ovmcf = data;

    u_char                        *mem;
    ngx_slab_pool_t               *shpool;
    ngx_http_vaquero_shm_t        *shm;
    ngx_http_vaquero_main_conf_t  *vmcf;

    vmcf = shm_zone->data;

    if (ovmcf) {
        /* a reload: same zone, same queue, records kept */
        vmcf->shm = ovmcf->shm;
        vmcf->generation = ++vmcf->shm->generation;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        vmcf->shm = shpool->data;
        vmcf->generation = ++vmcf->shm->generation;
        return NGX_OK;
    }

    shm = ngx_slab_calloc(shpool, sizeof(ngx_http_vaquero_shm_t));
    mem = ngx_slab_alloc(shpool, vmcf->queue_size);

    if (shm == NULL || mem == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "vaquero: cannot allocate a %uz byte queue in "
                      "shared memory", vmcf->queue_size);
        return NGX_ERROR;
    }

    shm->queue = vq_queue_init(mem, vmcf->queue_size, VQ_SPAN_RECORD_MAX);
    if (shm->queue == NULL) {
        return NGX_ERROR;
    }

    shpool->data = shm;
    vmcf->shm = shm;
    vmcf->generation = ++shm->generation;

    return NGX_OK;
}


vq_queue_t *
ngx_http_vaquero_zone_queue(ngx_http_vaquero_main_conf_t *vmcf)
{
    return vmcf->shm->queue;
}


vq_stats_t *
ngx_http_vaquero_zone_stats(ngx_http_vaquero_main_conf_t *vmcf)
{
    return &vmcf->shm->stats;
}


/*
 * Hands a finished span to the exporters.  A full queue refuses it and
 * counts the refusal; the request never waits, and the log says so at
 * most once per interval.
 */
void
ngx_http_vaquero_record(ngx_http_vaquero_main_conf_t *vmcf, vq_span_t *span,
    ngx_log_t *log)
{
    static time_t  last_drop_log;

    span->h.generation = vmcf->generation;

    vq_stats_add(&vmcf->shm->stats.spans_recorded, 1);

    if (vq_queue_push(vmcf->shm->queue, span, vq_span_size(span)) == VQ_EFULL
        && ngx_time() - last_drop_log >= NGX_HTTP_VAQUERO_DROP_LOG_INTERVAL)
    {
        last_drop_log = ngx_time();
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "vaquero: span queue is full, dropping spans "
                      "(exporter behind or collector unreachable)");
    }
}
