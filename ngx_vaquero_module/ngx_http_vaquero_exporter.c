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


ngx_int_t
ngx_http_vaquero_exporter_start(ngx_cycle_t *cycle)
{
    char                           err[256];
    ngx_uint_t                     i;
    ngx_pool_t                    *pool;
    vq_kv_t                       *kv;
    vq_queue_t                    *queue;
    vq_stats_t                    *stats;
    ngx_keyval_t                  *attr;
    vq_exporter_conf_t             conf;
    ngx_http_vaquero_header_t     *h;
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
        attr = vmcf->resource_attributes->elts;
        kv = ngx_pcalloc(pool, vmcf->resource_attributes->nelts
                               * sizeof(vq_kv_t));
        if (kv == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        /* the arguments of directives are NUL-terminated */
        for (i = 0; i < vmcf->resource_attributes->nelts; i++) {
            kv[i].key = (char *) attr[i].key.data;
            kv[i].value = (char *) attr[i].value.data;
        }

        conf.resource_attributes = kv;
        conf.nresource_attributes = vmcf->resource_attributes->nelts;
    }

    if (vmcf->export_headers) {
        h = vmcf->export_headers->elts;
        kv = ngx_pcalloc(pool, vmcf->export_headers->nelts * sizeof(vq_kv_t));
        if (kv == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        for (i = 0; i < vmcf->export_headers->nelts; i++) {
            kv[i].key = (char *) h[i].name.data;
            kv[i].value = (char *) h[i].value.data;
        }

        conf.headers = kv;
        conf.nheaders = vmcf->export_headers->nelts;
    }

    conf.gzip = vmcf->gzip;
    conf.ssl_no_verify = !vmcf->ssl_verify;
    conf.ssl_trusted_certificate = vmcf->ssl_trusted_certificate.data;
    conf.ssl_trusted_certificate_len = vmcf->ssl_trusted_certificate.len;
    conf.ssl_certificate = vmcf->ssl_certificate.data;
    conf.ssl_certificate_len = vmcf->ssl_certificate.len;
    conf.ssl_certificate_key = vmcf->ssl_certificate_key.data;
    conf.ssl_certificate_key_len = vmcf->ssl_certificate_key.len;

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
    ngx_file_info_t   fi;

    name.len = path->len;
    name.data = ngx_pnalloc(cf->pool, path->len + 1);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(name.data, path->data, path->len + 1);

    /*
     * Only a regular file: a write to a FIFO or a terminal may block past
     * any deadline (and opening a FIFO for writing blocks until a reader
     * comes), and long lines of several workers mix in a pipe.
     */
    if (ngx_file_info(name.data, &fi) == NGX_FILE_ERROR) {
        if (ngx_errno != NGX_ENOENT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_file_info_n " \"%s\" failed", name.data);
            return NGX_CONF_ERROR;
        }

    } else if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the file endpoint \"%s\" is not a regular file",
                           name.data);
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_APPEND, NGX_FILE_CREATE_OR_OPEN,
                       0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name.data);
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
        fd = ngx_open_file(file->name.data, NGX_FILE_APPEND,
                           NGX_FILE_CREATE_OR_OPEN, 0600);

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
