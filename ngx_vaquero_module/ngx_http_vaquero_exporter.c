/*
 * The shared zone that holds the span queue, and the exporter thread of
 * each worker (or of the single process with "master_process off").
 *
 * The zone keeps its queue across "nginx -s reload" (same name, size and
 * tag: the init callback gets the old data), so that what old workers
 * recorded is sent by the new ones.  The thread never calls nginx; what
 * it has to say reaches the error log through a timer in the worker.
 */

#include "ngx_http_vaquero_module.h"


#define NGX_HTTP_VAQUERO_TIMER  1000        /* ms */

/*
 * On "nginx -s stop" the master kills workers that are still there about
 * 1.5 s after it asked them to go: leave well before that.
 */
#define NGX_HTTP_VAQUERO_TERMINATE_TIMEOUT  1000


static ngx_int_t ngx_http_vaquero_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_vaquero_start_exporter(ngx_cycle_t *cycle);
static void ngx_http_vaquero_stop_exporter(void);
static void ngx_http_vaquero_timer_handler(ngx_event_t *ev);


static vq_idgen_t     *ngx_http_vaquero_idgen_;
static vq_exporter_t  *ngx_http_vaquero_exporter;
static ngx_cycle_t    *ngx_http_vaquero_exporter_cycle;
static ngx_msec_t      ngx_http_vaquero_shutdown_timeout;
static ngx_event_t     ngx_http_vaquero_timer;
static ngx_uint_t      ngx_http_vaquero_library_ready;

static ngx_str_t       ngx_http_vaquero_zone_name = ngx_string("vaquero");


vq_idgen_t *
ngx_http_vaquero_idgen(void)
{
    return ngx_http_vaquero_idgen_;
}


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
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        vmcf->shm = shpool->data;
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

    return NGX_OK;
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


static ngx_int_t
ngx_http_vaquero_start_exporter(ngx_cycle_t *cycle)
{
    char                           err[256];
    ngx_pool_t                    *pool;
    vq_exporter_conf_t             conf;
    ngx_http_vaquero_main_conf_t  *vmcf;

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vaquero_module);

    ngx_http_vaquero_exporter_cycle = cycle;

    if (vmcf == NULL || vmcf->shm == NULL) {
        return NGX_OK;
    }

    /* NUL-terminated copies; the exporter makes its own from these */
    pool = ngx_create_pool(1024, cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

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
    ngx_http_vaquero_shutdown_timeout = vmcf->shutdown_timeout;

    ngx_http_vaquero_exporter = vq_exporter_create(&conf, vmcf->shm->queue,
                                                   &vmcf->shm->stats,
                                                   err, sizeof(err));
    ngx_destroy_pool(pool);

    if (ngx_http_vaquero_exporter == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "vaquero: cannot create the exporter: %s", err);
        return NGX_ERROR;
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


static void
ngx_http_vaquero_stop_exporter(void)
{
    ngx_msec_t  timeout;

    if (ngx_http_vaquero_exporter == NULL) {
        return;
    }

    timeout = ngx_http_vaquero_shutdown_timeout;

    if (ngx_terminate && timeout > NGX_HTTP_VAQUERO_TERMINATE_TIMEOUT) {
        timeout = NGX_HTTP_VAQUERO_TERMINATE_TIMEOUT;
    }

    /* sends what the queue holds, for vaquero_shutdown_timeout at most */
    vq_exporter_stop(ngx_http_vaquero_exporter, (unsigned) timeout);
    vq_exporter_destroy(ngx_http_vaquero_exporter);

    ngx_http_vaquero_exporter = NULL;
    ngx_http_vaquero_exporter_cycle = NULL;
}


/*
 * Called whenever a configuration is read.  With "master_process off" a
 * reload happens in this very process, whose exporter still uses the old
 * cycle's zone, which may be unmapped before the new cycle runs: stop it
 * now; the timer starts it again on whichever cycle is then current.
 */
void
ngx_http_vaquero_reconfigure(void)
{
    if (ngx_process == NGX_PROCESS_SINGLE) {
        ngx_http_vaquero_stop_exporter();
    }
}


ngx_int_t
ngx_http_vaquero_init_process(ngx_cycle_t *cycle)
{
    ngx_http_vaquero_main_conf_t  *vmcf;

    /* the cache manager and loader never run exit_process: no thread there */
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vaquero_module);

    /*
     * A worker's configuration never changes; the single process may be
     * reloaded into one that traces, so it always gets ready.
     */
    if (ngx_process == NGX_PROCESS_WORKER
        && (vmcf == NULL || vmcf->shm == NULL))
    {
        return NGX_OK;
    }

    ngx_http_vaquero_random_reset();

    /* created after fork(), so each worker has its own id stream */
    ngx_http_vaquero_idgen_ = vq_idgen_create();
    if (ngx_http_vaquero_idgen_ == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "vaquero: cannot seed the id generator");
        return NGX_ERROR;
    }

    if (vq_library_init() != VQ_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "vaquero: cannot initialise libcurl");
        return NGX_ERROR;
    }

    ngx_http_vaquero_library_ready = 1;

    /* without an exporter, spans wait in the queue for other workers */
    (void) ngx_http_vaquero_start_exporter(cycle);

    ngx_http_vaquero_timer.handler = ngx_http_vaquero_timer_handler;
    ngx_http_vaquero_timer.log = cycle->log;
    ngx_http_vaquero_timer.data = &ngx_http_vaquero_timer;
    ngx_http_vaquero_timer.cancelable = 1;

    ngx_add_timer(&ngx_http_vaquero_timer, NGX_HTTP_VAQUERO_TIMER);

    return NGX_OK;
}


void
ngx_http_vaquero_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_vaquero_stop_exporter();

    if (ngx_http_vaquero_library_ready) {
        vq_library_cleanup();
        ngx_http_vaquero_library_ready = 0;
    }

    if (ngx_http_vaquero_idgen_) {
        vq_idgen_destroy(ngx_http_vaquero_idgen_);
        ngx_http_vaquero_idgen_ = NULL;
    }
}


static void
ngx_http_vaquero_timer_handler(ngx_event_t *ev)
{
    char  msg[256];

    /* the cycle this timer was set up with may be gone after a reload */
    ev->log = ngx_cycle->log;

    if (ngx_http_vaquero_exporter
        && vq_exporter_take_message(ngx_http_vaquero_exporter, msg,
                                    sizeof(msg)))
    {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0, "vaquero: %s", msg);
    }

    /* master_process off: after a reload, export with the new cycle */
    if (ngx_process == NGX_PROCESS_SINGLE
        && ngx_http_vaquero_exporter_cycle != (ngx_cycle_t *) ngx_cycle
        && !ngx_exiting && !ngx_quit && !ngx_terminate)
    {
        ngx_http_vaquero_stop_exporter();
        (void) ngx_http_vaquero_start_exporter((ngx_cycle_t *) ngx_cycle);
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_VAQUERO_TIMER);
    }
}
