/*
 * The exporter thread of each worker (or of the single process with
 * "master_process off"): started with the configuration of a cycle,
 * stopped within vaquero_shutdown_timeout.  The thread never calls nginx;
 * what it has to say reaches the error log through the process timer,
 * and what it said while stopping is logged once it is joined.
 *
 * Across "nginx -s reload" the old workers' exporters and the new ones
 * share the queues (ngx_http_vaquero_zone.c).  Each sends only spans of
 * its own configuration or earlier ones, each with the resource of the
 * configuration that recorded it; once the new workers have claimed a
 * queue, the old exporters take nothing more from it while they run, and
 * when their worker exits they send what it held then, up to the first
 * span of the new configuration (see vaquero/exporter.h).  A queue kept
 * from an earlier queue size is emptied into this configuration's own.
 *
 * A file endpoint ("file:/path") is one of the cycle's open files, as an
 * access log is: the master creates it (0600: spans hold URLs and
 * headers) when it reads the configuration, and opens it; each worker's
 * exporter writes to its own duplicate of that descriptor.  On "nginx -s
 * reopen" (USR1) nginx's ngx_reopen_files() calls the file's flush
 * handler before it opens the file again: in the master, the handler
 * creates the file again with mode 0600 if it was moved away (nginx then
 * opens it and gives it to the workers' user); in a worker, it asks the
 * exporter thread to open the path again before its next write.  The
 * thread never uses a descriptor that the main thread may close.
 */

#include "ngx_http_vaquero_module.h"


/*
 * On "nginx -s stop" the master kills workers that are still there about
 * 1.5 s after it asked them to go: leave well before that.
 */
#define NGX_HTTP_VAQUERO_TERMINATE_TIMEOUT  1000


static vq_kv_t *ngx_http_vaquero_kv(ngx_pool_t *pool, ngx_array_t *a);
static void ngx_http_vaquero_file_flush(ngx_open_file_t *file,
    ngx_log_t *log);


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


/*
 * libvaquero's pairs for an array whose elements start with two
 * ngx_str_t, name and value (ngx_keyval_t, ngx_http_vaquero_header_t):
 * the arguments of directives, NUL-terminated already.
 */
static vq_kv_t *
ngx_http_vaquero_kv(ngx_pool_t *pool, ngx_array_t *a)
{
    u_char        *elt;
    vq_kv_t       *kv;
    ngx_uint_t     i;
    ngx_keyval_t  *pair;

    kv = ngx_pcalloc(pool, a->nelts * sizeof(vq_kv_t));
    if (kv == NULL) {
        return NULL;
    }

    elt = a->elts;

    for (i = 0; i < a->nelts; i++) {
        pair = (ngx_keyval_t *) (elt + i * a->size);
        kv[i].key = (char *) pair->key.data;
        kv[i].value = (char *) pair->value.data;
    }

    return kv;
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
    conf.protocol = ngx_http_vaquero_protocols[vmcf->protocol];
    conf.api_key = ngx_http_vaquero_cstr(pool, &vmcf->api_key);
    conf.project_id = ngx_http_vaquero_cstr(pool, &vmcf->project_id);
    conf.service_name = ngx_http_vaquero_cstr(pool, &vmcf->service_name);
    conf.environment = vq_mode_preset(vmcf->mode)->environment;
    conf.user_agent = NGX_HTTP_VAQUERO_USER_AGENT;
    conf.batch_size = (size_t) vmcf->batch_size;

    conf.flush_interval_ms = (unsigned) vmcf->flush_interval;
    conf.export_timeout_ms = (unsigned) vmcf->export_timeout;
    conf.generation = vmcf->generation;
    conf.resources = ngx_http_vaquero_zone_resources();

    if (vmcf->resource_attributes) {
        conf.resource_attributes = ngx_http_vaquero_kv(pool,
                                                   vmcf->resource_attributes);
        if (conf.resource_attributes == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        conf.nresource_attributes = vmcf->resource_attributes->nelts;
    }

    if (vmcf->export_headers) {
        conf.headers = ngx_http_vaquero_kv(pool, vmcf->export_headers);
        if (conf.headers == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        conf.nheaders = vmcf->export_headers->nelts;
    }

    conf.gzip = vmcf->gzip;
    conf.tls.no_verify = !vmcf->ssl_verify;
    conf.tls.trusted_certificate = vmcf->ssl_trusted_certificate.data;
    conf.tls.trusted_certificate_len = vmcf->ssl_trusted_certificate.len;
    conf.tls.certificate = vmcf->ssl_certificate.data;
    conf.tls.certificate_len = vmcf->ssl_certificate.len;
    conf.tls.certificate_key = vmcf->ssl_certificate_key.data;
    conf.tls.certificate_key_len = vmcf->ssl_certificate_key.len;

    /*
     * The master opened the file for this cycle, and workers may not be
     * allowed to open it themselves (it is the master's until the first
     * reopen): the exporter gets a descriptor of its own.
     */
    if (vmcf->file && vmcf->file->fd != NGX_INVALID_FILE) {
        conf.file_fd = fcntl(vmcf->file->fd, F_DUPFD_CLOEXEC, 3);

        if (conf.file_fd == -1) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                          "vaquero: fcntl(F_DUPFD_CLOEXEC) \"%V\" failed",
                          &vmcf->file->name);
        }
    }

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
                  "vaquero: exporter thread started, sending to \"%V\" "
                  "(%s)", &vmcf->endpoint,
                  ngx_http_vaquero_protocols[vmcf->protocol]->name);

    return NGX_OK;
}


/*
 * Stops the thread, then logs what it said while stopping (spans it could
 * not send, the last failures): the timer will not run again.
 */
void
ngx_http_vaquero_exporter_stop(ngx_log_t *log)
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

    ngx_http_vaquero_exporter_log(log);

    vq_exporter_destroy(ngx_http_vaquero_exporter);

    ngx_http_vaquero_exporter = NULL;
    ngx_http_vaquero_exporter_cycle_ = NULL;
}


void
ngx_http_vaquero_exporter_log(ngx_log_t *log)
{
    int         level;
    char        msg[512];
    ngx_uint_t  nlevel;

    if (ngx_http_vaquero_exporter
        && vq_exporter_take_message(ngx_http_vaquero_exporter, msg,
                                    sizeof(msg), &level))
    {
        /* spans lost or not delivered: seen at the default level, error */
        nlevel = level == VQ_LOG_ERROR ? NGX_LOG_ERR
                 : level == VQ_LOG_WARN ? NGX_LOG_WARN : NGX_LOG_NOTICE;

        ngx_log_error(nlevel, log, 0, "vaquero: %s", msg);
    }
}


/*
 * vaquero_endpoint file:/path, while the configuration is read (by the
 * master, or nginx -t): the file is created now, 0600, before nginx opens
 * it for the cycle (with its default mode, 0644, were it missing), and
 * becomes one of the cycle's open files.
 */
char *
ngx_http_vaquero_exporter_file(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf, ngx_str_t *path)
{
    ngx_fd_t          fd;
    ngx_str_t         name;
    ngx_open_file_t  *file;

    name.len = path->len;
    name.data = ngx_pnalloc(cf->pool, path->len + 1);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(name.data, path->data, path->len + 1);

    /* as the exporter opens it: a regular file only, created 0600 */
    fd = vq_transport_file_open((char *) name.data);

    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno == NGX_EINVAL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the file endpoint \"%s\" is not a regular "
                               "file", name.data);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_open_file_n " \"%s\" failed", name.data);
        }

        return NGX_CONF_ERROR;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%s\" failed", name.data);
    }

    file = ngx_conf_open_file(cf->cycle, &name);
    if (file == NULL) {
        return NGX_CONF_ERROR;
    }

    if (file->flush && file->flush != ngx_http_vaquero_file_flush) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is a buffered log too: the file endpoint "
                           "needs a file of its own", name.data);
        return NGX_CONF_ERROR;
    }

    file->flush = ngx_http_vaquero_file_flush;
    vmcf->file = file;

    return NGX_CONF_OK;
}


/*
 * ngx_reopen_files() calls this before it opens the file again; so does
 * ngx_conf_flush_files() when a process exits, when there is nothing to do.
 */
static void
ngx_http_vaquero_file_flush(ngx_open_file_t *file, ngx_log_t *log)
{
    ngx_fd_t  fd;

    if (ngx_quit || ngx_terminate || ngx_exiting) {
        return;
    }

    if (ngx_process == NGX_PROCESS_MASTER
        || ngx_process == NGX_PROCESS_SINGLE)
    {
        /* moved away: created again 0600, before nginx does it 0644 */
        fd = vq_transport_file_open((char *) file->name.data);

        if (fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                          ngx_open_file_n " \"%V\" failed", &file->name);

        } else if (ngx_close_file(fd) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          ngx_close_file_n " \"%V\" failed", &file->name);
        }
    }

    if (ngx_process == NGX_PROCESS_WORKER
        || ngx_process == NGX_PROCESS_SINGLE)
    {
        if (ngx_http_vaquero_exporter) {
            vq_exporter_reopen(ngx_http_vaquero_exporter);

            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "vaquero: the exporter reopens \"%V\"",
                          &file->name);
        }
    }
}
