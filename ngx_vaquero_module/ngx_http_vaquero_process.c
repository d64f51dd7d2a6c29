/*
 * Per-process state: the id generator, the random pool behind
 * $request_id, libvaquero's set-up, and the timer that writes what the
 * exporter thread has to say, and the spans the queue refused, into the
 * error log.
 *
 * Workers and the single process ("master_process off") get all of it;
 * the cache manager and loader get none, as they never run exit_process.
 */

#include "ngx_http_vaquero_module.h"


#if (NGX_OPENSSL)
#include <openssl/rand.h>
#endif


#define NGX_HTTP_VAQUERO_TIMER        1000      /* ms */
#define NGX_HTTP_VAQUERO_RANDOM_POOL  4096


static void ngx_http_vaquero_timer_handler(ngx_event_t *ev);


static vq_idgen_t   *ngx_http_vaquero_idgen_;
static ngx_event_t   ngx_http_vaquero_timer;
static ngx_uint_t    ngx_http_vaquero_library_ready;

#if (NGX_OPENSSL)
static u_char      ngx_http_vaquero_random_pool[NGX_HTTP_VAQUERO_RANDOM_POOL];
static ngx_uint_t  ngx_http_vaquero_random_used = NGX_HTTP_VAQUERO_RANDOM_POOL;
#endif


vq_idgen_t *
ngx_http_vaquero_idgen(void)
{
    return ngx_http_vaquero_idgen_;
}


/*
 * 16 bytes from OpenSSL's generator, as nginx's $request_id takes them,
 * but drawn 4k at a time: one RAND_bytes() call per request costs OpenSSL 3
 * a provider lookup each time, about 0.7 us.
 */
ngx_int_t
ngx_http_vaquero_random16(u_char *out)
{
#if (NGX_OPENSSL)

    if (ngx_http_vaquero_random_used + 16 > NGX_HTTP_VAQUERO_RANDOM_POOL) {
        if (RAND_bytes(ngx_http_vaquero_random_pool,
                       NGX_HTTP_VAQUERO_RANDOM_POOL) != 1)
        {
            return NGX_ERROR;
        }

        ngx_http_vaquero_random_used = 0;
    }

    ngx_memcpy(out, ngx_http_vaquero_random_pool + ngx_http_vaquero_random_used,
               16);
    ngx_http_vaquero_random_used += 16;

    return NGX_OK;

#else

    return NGX_DECLINED;

#endif
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
        ngx_http_vaquero_exporter_stop(ngx_cycle->log);
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

#if (NGX_OPENSSL)
    /* a forked worker must not hand out what its parent drew */
    ngx_http_vaquero_random_used = NGX_HTTP_VAQUERO_RANDOM_POOL;
#endif

    /*
     * Failing here must not cost nginx a worker (the master does not
     * respawn one whose init_process failed): say so, and trace nothing.
     */

    /* created after fork(), so each worker has its own id stream */
    ngx_http_vaquero_idgen_ = vq_idgen_create();
    if (ngx_http_vaquero_idgen_ == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "vaquero: cannot seed the id generator, "
                      "tracing is off in this process");
        return NGX_OK;
    }

    if (vq_library_init() != VQ_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "vaquero: cannot initialise libcurl, "
                      "spans wait in the queue for other processes");

        /* with no exporter, still before this process records a span */
        if (vmcf && vmcf->shm) {
            ngx_http_vaquero_zone_claim(vmcf);
        }

    } else {
        ngx_http_vaquero_library_ready = 1;

        /* without an exporter, spans wait in the queue for other workers */
        (void) ngx_http_vaquero_exporter_start(cycle);
    }

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
    ngx_http_vaquero_exporter_stop(cycle->log);
    ngx_http_vaquero_zone_log_drops(cycle->log, 1);

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
    /* the cycle this timer was set up with may be gone after a reload */
    ev->log = ngx_cycle->log;

    ngx_http_vaquero_exporter_log(ev->log);
    ngx_http_vaquero_zone_log_drops(ev->log, 0);

    /* master_process off: after a reload, export with the new cycle */
    if (ngx_process == NGX_PROCESS_SINGLE
        && ngx_http_vaquero_library_ready
        && ngx_http_vaquero_exporter_cycle() != (ngx_cycle_t *) ngx_cycle
        && !ngx_exiting && !ngx_quit && !ngx_terminate)
    {
        ngx_http_vaquero_exporter_stop(ev->log);
        (void) ngx_http_vaquero_exporter_start((ngx_cycle_t *) ngx_cycle);
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_VAQUERO_TIMER);
    }
}
