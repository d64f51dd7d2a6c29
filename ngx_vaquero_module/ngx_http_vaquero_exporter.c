/*
 * The exporter thread of each worker (or of the single process with
 * "master_process off"): started with the configuration of a cycle,
 * stopped within vaquero_shutdown_timeout.  The thread never calls nginx;
 * what it has to say reaches the error log through the process timer.
 *
 * Across "nginx -s reload" the old workers' exporters and the new ones
 * share the queues (ngx_http_vaquero_zone.c).  Each sends only spans of
 * its own configuration or earlier ones, each with the resource of the
 * configuration that recorded it; once the new workers have claimed a
 * queue, the old exporters take nothing more from it while they run, and
 * when their worker exits they send what it held then, up to the first
 * span of the new configuration (see vaquero/exporter.h).  A queue kept
 * from an earlier queue size is emptied into this configuration's own.
 */

#include "ngx_http_vaquero_module.h"


/*
 * On "nginx -s stop" the master kills workers that are still there about
 * 1.5 s after it asked them to go: leave well before that.
 */
#define NGX_HTTP_VAQUERO_TERMINATE_TIMEOUT  1000


static vq_exporter_t  *ngx_http_vaquero_exporter;
static ngx_cycle_t    *ngx_http_vaquero_exporter_cycle_;
static ngx_msec_t      ngx_http_vaquero_shutdown_timeout;


ngx_cycle_t *
ngx_http_vaquero_exporter_cycle(void)
{
    return ngx_http_vaquero_exporter_cycle_;
}


static char *
ngx_http_vaquero_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    if (s->data == NULL) {
        return NULL;
    }

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return (char *) p;
}


ngx_int_t
ngx_http_vaquero_exporter_start(ngx_cycle_t *cycle)
{
    char                           err[256];
    ngx_uint_t                     i;
    ngx_pool_t                    *pool;
    vq_queue_t                    *queue;
    vq_stats_t                    *stats;
    vq_exporter_conf_t             conf;
    ngx_http_vaquero_main_conf_t  *vmcf;

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vaquero_module);

    ngx_http_vaquero_exporter_cycle_ = cycle;

    if (vmcf == NULL || vmcf->shm == NULL) {
        return NGX_OK;
    }

    /* NUL-terminated copies; the exporter makes its own from these */
    pool = ngx_create_pool(1024, cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    /* before this process records anything: see zone_claim */
    ngx_http_vaquero_zone_claim(vmcf);

    ngx_memzero(&conf, sizeof(vq_exporter_conf_t));

    conf.endpoint = ngx_http_vaquero_cstr(pool, &vmcf->endpoint);
    conf.api_key = ngx_http_vaquero_cstr(pool, &vmcf->api_key);
    conf.project_id = ngx_http_vaquero_cstr(pool, &vmcf->project_id);
    conf.service_name = ngx_http_vaquero_cstr(pool, &vmcf->service_name);
    conf.environment = vmcf->mode == NGX_HTTP_VAQUERO_DEVELOPMENT
                       ? "development" : "production";
    conf.user_agent = NGX_HTTP_VAQUERO_USER_AGENT;
    conf.batch_size = (size_t) vmcf->batch_size;
    conf.flush_interval_ms = (unsigned) vmcf->flush_interval;
    conf.export_timeout_ms = (unsigned) vmcf->export_timeout;
    conf.generation = vmcf->generation;
    conf.resources = ngx_http_vaquero_zone_resources();
    ngx_http_vaquero_shutdown_timeout = vmcf->shutdown_timeout;

    ngx_http_vaquero_exporter = vq_exporter_create(&conf,
                                                   ngx_http_vaquero_zone_queue(vmcf),
                                                   ngx_http_vaquero_zone_stats(vmcf),
                                                   err, sizeof(err));
    ngx_destroy_pool(pool);

    if (ngx_http_vaquero_exporter == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "vaquero: cannot create the exporter: %s", err);
        return NGX_ERROR;
    }

    /* queues of earlier sizes, that old workers may still write to */
    for (i = 0; (queue = ngx_http_vaquero_zone_kept(vmcf, i, &stats)); i++) {
        if (vq_exporter_add_queue(ngx_http_vaquero_exporter, queue, stats)
            != VQ_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "vaquero: too many span queues to drain");
            break;
        }
    }

    if (vq_exporter_start(ngx_http_vaquero_exporter) != VQ_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "vaquero: cannot start the exporter thread");
        vq_exporter_destroy(ngx_http_vaquero_exporter);
        ngx_http_vaquero_exporter = NULL;
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "vaquero: exporter thread started, sending to \"%V\"",
                  &vmcf->endpoint);

    return NGX_OK;
}


void
ngx_http_vaquero_exporter_stop(void)
{
    ngx_msec_t  timeout;

    if (ngx_http_vaquero_exporter == NULL) {
        return;
    }

    timeout = ngx_http_vaquero_shutdown_timeout;

    if (ngx_terminate && timeout > NGX_HTTP_VAQUERO_TERMINATE_TIMEOUT) {
        timeout = NGX_HTTP_VAQUERO_TERMINATE_TIMEOUT;
    }

    /* sends what the queues hold now, for vaquero_shutdown_timeout at most */
    vq_exporter_stop(ngx_http_vaquero_exporter, (unsigned) timeout);
    vq_exporter_destroy(ngx_http_vaquero_exporter);

    ngx_http_vaquero_exporter = NULL;
    ngx_http_vaquero_exporter_cycle_ = NULL;
}


void
ngx_http_vaquero_exporter_log(ngx_log_t *log)
{
    char  msg[256];

    if (ngx_http_vaquero_exporter
        && vq_exporter_take_message(ngx_http_vaquero_exporter, msg,
                                    sizeof(msg)))
    {
        ngx_log_error(NGX_LOG_WARN, log, 0, "vaquero: %s", msg);
    }
}
