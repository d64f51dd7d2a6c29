/*
 * ngx_http_vaquero_module: directives, configuration, and the set-up that
 * connects the other parts to nginx (phase handlers, variables, the zone,
 * the upstream wrapper).
 *
 * A traced request gets its start time in the post-read phase, its trace
 * identity before access checks (ngx_http_vaquero_request.c), client spans
 * per upstream attempt (ngx_http_vaquero_upstream.c) and its server span
 * in the log phase (ngx_http_vaquero_span.c); records go into the
 * shared-memory queue that the exporter threads drain.
 */

#include "ngx_http_vaquero_module.h"


static char *ngx_http_vaquero(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_vaquero_endpoint(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_attribute(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_resource_attribute(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_vaquero_export_header(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_vaquero_ssl_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_read_file(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, ngx_str_t *content);
static char *ngx_http_vaquero_set_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_check_bounds(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_vaquero_check_headers(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf);
static char *ngx_http_vaquero_sample_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_sample_slow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_check_msec(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_vaquero_check_queue_size(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_vaquero_check_not_empty(ngx_conf_t *cf, void *post,
    void *data);

static ngx_int_t ngx_http_vaquero_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_vaquero_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_vaquero_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_vaquero_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_vaquero_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_vaquero_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_vaquero_root_tracestate(ngx_conf_t *cf,
    ngx_http_vaquero_loc_conf_t *vlcf);


static ngx_conf_num_bounds_t  ngx_http_vaquero_batch_size_bounds = {
    ngx_http_vaquero_check_bounds, 1, 10000
};

static ngx_conf_post_t  ngx_http_vaquero_msec_post = {
    ngx_http_vaquero_check_msec
};

static ngx_conf_post_t  ngx_http_vaquero_queue_size_post = {
    ngx_http_vaquero_check_queue_size
};

static ngx_conf_post_t  ngx_http_vaquero_not_empty_post = {
    ngx_http_vaquero_check_not_empty
};


static ngx_conf_enum_t  ngx_http_vaquero_modes[] = {
    { ngx_string("production"), NGX_HTTP_VAQUERO_PRODUCTION },
    { ngx_string("development"), NGX_HTTP_VAQUERO_DEVELOPMENT },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_vaquero_protocol[] = {
    { ngx_string("vaquero"), NGX_HTTP_VAQUERO_PROTOCOL_VAQUERO },
    { ngx_string("otlp"), NGX_HTTP_VAQUERO_PROTOCOL_OTLP },
    { ngx_string("otlp_json"), NGX_HTTP_VAQUERO_PROTOCOL_OTLP_JSON },
    { ngx_null_string, 0 }
};


/* by vaquero_protocol's value */
const vq_protocol_t  *ngx_http_vaquero_protocols[] = {
    &vq_protocol_vaquero,
    &vq_protocol_otlp,
    &vq_protocol_otlp_json
};


/* headers the exporter sets itself, or libcurl does */
static ngx_str_t  ngx_http_vaquero_own_headers[] = {
    ngx_string("Host"),
    ngx_string("Content-Type"),
    ngx_string("Content-Length"),
    ngx_string("Content-Encoding"),
    ngx_string("Transfer-Encoding"),
    ngx_string("Connection"),
    ngx_string("Expect"),
    ngx_string("User-Agent"),
    ngx_null_string
};


static ngx_conf_enum_t  ngx_http_vaquero_trace_context[] = {
    { ngx_string("propagate"), NGX_HTTP_VAQUERO_PROPAGATE },
    { ngx_string("extract"), NGX_HTTP_VAQUERO_EXTRACT },
    { ngx_string("inject"), NGX_HTTP_VAQUERO_INJECT },
    { ngx_string("ignore"), NGX_HTTP_VAQUERO_IGNORE },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_vaquero_commands[] = {

    { ngx_string("vaquero"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vaquero_endpoint"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_endpoint,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, endpoint),
      NULL },

    { ngx_string("vaquero_protocol"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_set_enum,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, protocol),
      &ngx_http_vaquero_protocol },

    { ngx_string("vaquero_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, api_key),
      &ngx_http_vaquero_not_empty_post },

    { ngx_string("vaquero_api_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_api_key_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, api_key),
      NULL },

    { ngx_string("vaquero_project_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, project_id),
      &ngx_http_vaquero_not_empty_post },

    { ngx_string("vaquero_service_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, service_name),
      &ngx_http_vaquero_not_empty_post },

    { ngx_string("vaquero_resource_attribute"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_vaquero_resource_attribute,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vaquero_export_header"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_vaquero_export_header,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vaquero_mode"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_set_enum,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, mode),
      &ngx_http_vaquero_modes },

    { ngx_string("vaquero_batch_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, batch_size),
      &ngx_http_vaquero_batch_size_bounds },

    { ngx_string("vaquero_flush_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, flush_interval),
      &ngx_http_vaquero_msec_post },

    { ngx_string("vaquero_export_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, export_timeout),
      &ngx_http_vaquero_msec_post },

    { ngx_string("vaquero_shutdown_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, shutdown_timeout),
      &ngx_http_vaquero_msec_post },

    { ngx_string("vaquero_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, queue_size),
      &ngx_http_vaquero_queue_size_post },

    { ngx_string("vaquero_gzip"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, gzip),
      NULL },

    { ngx_string("vaquero_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, ssl_verify),
      NULL },

    { ngx_string("vaquero_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_ssl_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, ssl_trusted_certificate),
      NULL },

    { ngx_string("vaquero_ssl_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_ssl_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, ssl_certificate),
      NULL },

    { ngx_string("vaquero_ssl_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_ssl_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, ssl_certificate_key),
      NULL },

    { ngx_string("vaquero_agent_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vaquero_loc_conf_t, agent_name),
      &ngx_http_vaquero_not_empty_post },

    { ngx_string("vaquero_span_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vaquero_loc_conf_t, span_name),
      NULL },

    { ngx_string("vaquero_attribute"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_vaquero_attribute,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vaquero_capture_request_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_vaquero_capture_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vaquero_capture_response_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_vaquero_capture_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,
      NULL },

    { ngx_string("vaquero_trace_context"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_set_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vaquero_loc_conf_t, trace_context),
      &ngx_http_vaquero_trace_context },

    { ngx_string("vaquero_upstream_spans"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vaquero_loc_conf_t, upstream_spans),
      NULL },

    { ngx_string("vaquero_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_vaquero_set_status,
      0,
      0,
      NULL },

    { ngx_string("vaquero_sample_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_sample_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vaquero_sample_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vaquero_loc_conf_t, sample_key),
      NULL },

    { ngx_string("vaquero_sample_parent"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vaquero_loc_conf_t, sample_parent),
      NULL },

    { ngx_string("vaquero_sample_errors"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vaquero_loc_conf_t, sample_errors),
      NULL },

    { ngx_string("vaquero_sample_slow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_sample_slow,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vaquero_loc_conf_t, sample_slow),
      &ngx_http_vaquero_msec_post },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_vaquero_module_ctx = {
    ngx_http_vaquero_preconfiguration,     /* preconfiguration */
    ngx_http_vaquero_postconfiguration,    /* postconfiguration */

    ngx_http_vaquero_create_main_conf,     /* create main configuration */
    ngx_http_vaquero_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_vaquero_create_loc_conf,      /* create location configuration */
    ngx_http_vaquero_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_vaquero_module = {
    NGX_MODULE_V1,
    &ngx_http_vaquero_module_ctx,          /* module context */
    ngx_http_vaquero_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_vaquero_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_vaquero_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_vaquero_request_id = ngx_string("request_id");


static char *
ngx_http_vaquero(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vaquero_loc_conf_t  *vlcf = conf;

    ngx_str_t                          *value;
    ngx_http_vaquero_main_conf_t       *vmcf;
    ngx_http_compile_complex_value_t    ccv;

    if (vlcf->enable != NGX_CONF_UNSET || vlcf->enable_value != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_vaquero_module);

    if (ngx_strcmp(value[1].data, "off") == 0) {
        vlcf->enable = 0;
        return NGX_CONF_OK;
    }

    vmcf->enabled = 1;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        vlcf->enable = 1;
        return NGX_CONF_OK;
    }

    if (ngx_http_script_variables_count(&value[1]) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be \"on\", \"off\" or a variable",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    vlcf->enable_value = ngx_palloc(cf->pool,
                                    sizeof(ngx_http_complex_value_t));
    if (vlcf->enable_value == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = vlcf->enable_value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * http(s)://host[:port][/base], with the check the exporter makes too, or
 * file:/path, which the master creates (0600) and reopens on USR1.
 */
static char *
ngx_http_vaquero_endpoint(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vaquero_main_conf_t  *vmcf = conf;

    char        err[128];
    ngx_str_t  *value, path;
    ngx_int_t   kind;

    if (vmcf->endpoint.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    kind = vq_endpoint_check((char *) value[1].data, value[1].len, err,
                             sizeof(err));

    if (kind < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URL \"%V\" in \"%V\" directive, %s",
                           &value[1], &cmd->name, err);
        return NGX_CONF_ERROR;
    }

    vmcf->endpoint = value[1];
    vmcf->endpoint_kind = kind;

    if (kind != VQ_ENDPOINT_FILE) {
        return NGX_CONF_OK;
    }

    path.data = value[1].data + 5;
    path.len = value[1].len - 5;

    return ngx_http_vaquero_exporter_file(cf, vmcf, &path);
}


static char *
ngx_http_vaquero_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vaquero_main_conf_t  *vmcf = conf;

    u_char     *p, *last;
    size_t      n;
    ngx_str_t  *value, name, content;

    if (vmcf->api_key.data) {
        return "is duplicate, or conflicts with \"vaquero_api_key\"";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_http_vaquero_read_file(cf, &name, 4096, &content)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* the key is the file's first line, without surrounding white space */
    p = content.data;
    last = p + content.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    for (n = 0; p + n < last && p[n] != CR && p[n] != LF; n++) { /* void */ }

    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": \"%V\" holds no key", &cmd->name, &name);
        return NGX_CONF_ERROR;
    }

    p[n] = '\0';
    vmcf->api_key.data = p;
    vmcf->api_key.len = n;

    return NGX_CONF_OK;
}


/*
 * A PEM file, read here, by the master: the key may be readable by root
 * only, and the exporter threads run in workers.
 */
static char *
ngx_http_vaquero_ssl_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t  *value, *field, name;

    field = (ngx_str_t *) ((char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_http_vaquero_read_file(cf, &name, 1024 * 1024, field)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_strstrn(field->data, "-----BEGIN ", sizeof("-----BEGIN ") - 2)
        == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": \"%V\" holds no PEM data", &cmd->name,
                           &name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * A whole file, of at most max bytes, NUL-terminated, into the
 * configuration's pool; name is made full (relative to the configuration
 * prefix), for the messages too.
 */
static char *
ngx_http_vaquero_read_file(ngx_conf_t *cf, ngx_str_t *name, size_t max,
    ngx_str_t *content)
{
    u_char           *p;
    size_t            size;
    ssize_t           n;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name->data);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", name->data);
        goto failed;
    }

    if (ngx_file_size(&fi) > (off_t) max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is too large, the most is %uz bytes",
                           name->data, max);
        goto failed;
    }

    size = (size_t) ngx_file_size(&fi);

    p = ngx_pnalloc(cf->pool, size + 1);
    if (p == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, p, size, 0);

    if (n == NGX_ERROR) {
        goto failed;
    }

    if ((size_t) n != size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           ngx_read_file_n " \"%s\" returned only "
                           "%z bytes instead of %uz", name->data, n, size);
        goto failed;
    }

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", name->data);
    }

    p[n] = '\0';
    content->data = p;
    content->len = n;

    return NGX_CONF_OK;

failed:

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", name->data);
    }

    return NGX_CONF_ERROR;
}


static char *
ngx_http_vaquero_attribute(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vaquero_loc_conf_t  *vlcf = conf;

    ngx_str_t                         *value;
    ngx_http_vaquero_attr_t           *attr;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty key";
    }

    if (vlcf->attributes == NULL) {
        vlcf->attributes = ngx_array_create(cf->pool, 4,
                                            sizeof(ngx_http_vaquero_attr_t));
        if (vlcf->attributes == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (vlcf->attributes->nelts == VQ_SPAN_MAX_ATTRS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"%V\" directives, at most %d per "
                           "location", &cmd->name, VQ_SPAN_MAX_ATTRS);
        return NGX_CONF_ERROR;
    }

    attr = ngx_array_push(vlcf->attributes);
    if (attr == NULL) {
        return NGX_CONF_ERROR;
    }

    attr->key = value[1];

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &attr->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* vaquero_resource_attribute KEY VALUE: OTLP resource attributes */
static char *
ngx_http_vaquero_resource_attribute(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_vaquero_main_conf_t  *vmcf = conf;

    ngx_str_t     *value;
    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty key";
    }

    if (vmcf->resource_attributes == NULL) {
        vmcf->resource_attributes = ngx_array_create(cf->pool, 4,
                                                     sizeof(ngx_keyval_t));
        if (vmcf->resource_attributes == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    kv = vmcf->resource_attributes->elts;

    for (i = 0; i < vmcf->resource_attributes->nelts; i++) {
        if (kv[i].key.len == value[1].len
            && ngx_strcmp(kv[i].key.data, value[1].data) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate key \"%V\" in \"%V\" directive",
                               &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    kv = ngx_array_push(vmcf->resource_attributes);
    if (kv == NULL) {
        return NGX_CONF_ERROR;
    }

    kv->key = value[1];
    kv->value = value[2];

    return NGX_CONF_OK;
}


/*
 * vaquero_export_header NAME VALUE: an extra header on every export
 * request.  Headers that the exporter sets itself are refused rather than
 * overridden (see ngx_http_vaquero_check_headers() for the ones that
 * depend on other directives).
 */
static char *
ngx_http_vaquero_export_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_vaquero_main_conf_t  *vmcf = conf;

    u_char                     *p, *last;
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_vaquero_header_t  *h;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty name";
    }

    last = value[1].data + value[1].len;

    for (p = value[1].data; p < last; p++) {
        /* RFC 9110 token characters */
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || ngx_strchr("!#$%&'*+-.^_`|~", *p) != NULL))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\" in \"%V\" "
                               "directive", &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    last = value[2].data + value[2].len;

    for (p = value[2].data; p < last; p++) {
        if (*p == CR || *p == LF || *p == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value of header \"%V\" in \"%V\" "
                               "directive: a line break", &value[1],
                               &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    for (i = 0; ngx_http_vaquero_own_headers[i].len; i++) {
        if (ngx_http_vaquero_own_headers[i].len == value[1].len
            && ngx_strcasecmp(ngx_http_vaquero_own_headers[i].data,
                              value[1].data)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" directive cannot set \"%V\", the "
                               "exporter sets it", &cmd->name, &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (vmcf->export_headers == NULL) {
        vmcf->export_headers = ngx_array_create(cf->pool, 4,
                                            sizeof(ngx_http_vaquero_header_t));
        if (vmcf->export_headers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    h = vmcf->export_headers->elts;

    for (i = 0; i < vmcf->export_headers->nelts; i++) {
        if (h[i].name.len == value[1].len
            && ngx_strcasecmp(h[i].name.data, value[1].data) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate header \"%V\" in \"%V\" "
                               "directive", &value[1], &cmd->name);
            return NGX_CONF_ERROR;
        }
    }

    if (vmcf->export_headers->nelts == VQ_EXPORTER_MAX_HEADERS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"%V\" directives, at most %d",
                           &cmd->name, VQ_EXPORTER_MAX_HEADERS);
        return NGX_CONF_ERROR;
    }

    h = ngx_array_push(vmcf->export_headers);
    if (h == NULL) {
        return NGX_CONF_ERROR;
    }

    h->name = value[1];
    h->value = value[2];
    h->file = cf->conf_file->file.name;
    h->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/*
 * Headers the exporter sets depending on other directives, which may come
 * after vaquero_export_header: Authorization with a key, X-Project-ID
 * with a project id in the Vaquero protocol.
 */
static char *
ngx_http_vaquero_check_headers(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf)
{
    char                       *own;
    ngx_uint_t                  i;
    ngx_http_vaquero_header_t  *h;

    if (vmcf->export_headers == NULL) {
        return NGX_CONF_OK;
    }

    h = vmcf->export_headers->elts;

    for (i = 0; i < vmcf->export_headers->nelts; i++) {
        own = NULL;

        if (vmcf->api_key.data
            && h[i].name.len == sizeof("Authorization") - 1
            && ngx_strcasecmp(h[i].name.data, (u_char *) "Authorization") == 0)
        {
            own = "Authorization\" with \"vaquero_api_key";

        } else if (vmcf->project_id.data
                   && vmcf->protocol == NGX_HTTP_VAQUERO_PROTOCOL_VAQUERO
                   && h[i].name.len == sizeof("X-Project-ID") - 1
                   && ngx_strcasecmp(h[i].name.data, (u_char *) "X-Project-ID")
                      == 0)
        {
            own = "X-Project-ID\" with \"vaquero_project_id";
        }

        if (own) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"vaquero_export_header\" directive cannot set "
                          "\"%s\", the exporter sets it, in %V:%ui", own,
                          &h[i].file, h[i].line);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * ngx_conf_set_enum_slot(), with a message that names the directive and
 * the values it takes.
 */
static char *
ngx_http_vaquero_set_enum(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char           *p, *last;
    u_char            buf[256];
    ngx_str_t        *value;
    ngx_uint_t        i;
    ngx_conf_enum_t  *e;

    value = cf->args->elts;
    e = cmd->post;

    for (i = 0; e[i].name.len != 0; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcmp(e[i].name.data, value[1].data) == 0)
        {
            return ngx_conf_set_enum_slot(cf, cmd, conf);
        }
    }

    p = buf;
    last = buf + sizeof(buf);

    for (i = 0; e[i].name.len != 0; i++) {
        p = ngx_slprintf(p, last, "%s\"%V\"",
                         i == 0 ? "" : e[i + 1].name.len ? ", " : " or ",
                         &e[i].name);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, "
                       "it must be %*s", &value[1], &cmd->name, p - buf, buf);

    return NGX_CONF_ERROR;
}


/*
 * A probability in plain decimal ("0.1", "1", ".25"): the threshold is
 * worked out once, here, so that a request only compares two integers.
 */
static char *
ngx_http_vaquero_sample_rate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vaquero_loc_conf_t  *vlcf = conf;

    u_char     *p, *last;
    double      rate;
    uint64_t    threshold;
    ngx_str_t  *value;
    ngx_uint_t  digits, dots;

    if (vlcf->sample_threshold != NGX_HTTP_VAQUERO_NO_RATIO) {
        return "is duplicate";
    }

    value = cf->args->elts;
    last = value[1].data + value[1].len;
    digits = 0;
    dots = 0;

    for (p = value[1].data; p < last; p++) {
        if (*p >= '0' && *p <= '9') {
            digits++;

        } else if (*p == '.') {
            dots++;

        } else {
            break;
        }
    }

    if (p != last || digits == 0 || dots > 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be a number between 0 and 1",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* the argument is NUL-terminated, and only digits and a dot */
    rate = strtod((char *) value[1].data, NULL);

    if (vq_sample_threshold(rate, VQ_SAMPLE_PRECISION, &threshold) != VQ_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be between 0 and 1",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    vlcf->sample_threshold = threshold;

    return NGX_CONF_OK;
}


/* a time, or "off" to undo one inherited from an enclosing level */
static char *
ngx_http_vaquero_sample_slow(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vaquero_loc_conf_t  *vlcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (vlcf->sample_slow != NGX_CONF_UNSET_MSEC) {
            return "is duplicate";
        }

        vlcf->sample_slow = 0;
        return NGX_CONF_OK;
    }

    return ngx_conf_set_msec_slot(cf, cmd, conf);
}


/*
 * ngx_conf_check_num_bounds(), with a message that names the directive
 * (nginx's own does not).
 */
static char *
ngx_http_vaquero_check_bounds(ngx_conf_t *cf, void *post, void *data)
{
    ngx_conf_num_bounds_t  *bounds = post;
    ngx_int_t              *np = data;

    u_char  *p;

    if (*np >= bounds->low && (bounds->high == -1 || *np <= bounds->high)) {
        return NGX_CONF_OK;
    }

    p = ngx_pnalloc(cf->pool, sizeof("must be between  and ")
                              + 2 * NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    if (bounds->high == -1) {
        *ngx_sprintf(p, "must be at least %i", bounds->low) = '\0';

    } else {
        *ngx_sprintf(p, "must be between %i and %i", bounds->low,
                     bounds->high) = '\0';
    }

    return (char *) p;
}


static char *
ngx_http_vaquero_check_msec(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *ms = data;

    if (*ms == 0) {
        return "must be more than 0";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_vaquero_check_queue_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *size = data;

    if (*size < 64 * 1024) {
        return "is too small, the least is 64k";
    }

    if (*size > (size_t) 4 * 1024 * 1024 * 1024) {
        return "is too large, the most is 4g";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_vaquero_check_not_empty(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *s = data;

    if (s->len == 0) {
        return "must not be empty";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_vaquero_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_vaquero_add_variables(cf);
}


static ngx_int_t
ngx_http_vaquero_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt           *h;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_vaquero_main_conf_t  *vmcf;

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_vaquero_module);

    /* loaded but not switched on anywhere: cost nothing */
    if (!vmcf->enabled) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_vaquero_start_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_vaquero_preaccess_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_vaquero_log_handler;

    vmcf->request_id_index = ngx_http_get_variable_index(cf,
                                                &ngx_http_vaquero_request_id);
    if (vmcf->request_id_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_http_vaquero_upstream_init(cf, vmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_vaquero_add_zone(cf, vmcf);
}


static void *
ngx_http_vaquero_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_vaquero_main_conf_t  *vmcf;

    ngx_http_vaquero_reconfigure();

    vmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_vaquero_main_conf_t));
    if (vmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     vmcf->endpoint = { 0, NULL };
     *     vmcf->api_key = { 0, NULL };
     *     vmcf->project_id = { 0, NULL };
     *     vmcf->service_name = { 0, NULL };
     *     vmcf->endpoint_kind = 0;
     *     vmcf->file = NULL;
     *     vmcf->resource_attributes = NULL;
     *     vmcf->export_headers = NULL;
     *     vmcf->ssl_trusted_certificate = { 0, NULL };
     *     vmcf->ssl_certificate = { 0, NULL };
     *     vmcf->ssl_certificate_key = { 0, NULL };
     *     vmcf->enabled = 0;
     *     vmcf->shm_zone = NULL;
     *     vmcf->shm = NULL;
     */

    vmcf->protocol = NGX_CONF_UNSET_UINT;
    vmcf->mode = NGX_CONF_UNSET_UINT;
    vmcf->gzip = NGX_CONF_UNSET;
    vmcf->ssl_verify = NGX_CONF_UNSET;
    vmcf->batch_size = NGX_CONF_UNSET;
    vmcf->flush_interval = NGX_CONF_UNSET_MSEC;
    vmcf->export_timeout = NGX_CONF_UNSET_MSEC;
    vmcf->shutdown_timeout = NGX_CONF_UNSET_MSEC;
    vmcf->queue_size = NGX_CONF_UNSET_SIZE;
    vmcf->request_id_index = NGX_CONF_UNSET;

    return vmcf;
}


static char *
ngx_http_vaquero_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_vaquero_main_conf_t  *vmcf = conf;

    const vq_preset_t  *preset;

    ngx_conf_init_uint_value(vmcf->mode, NGX_HTTP_VAQUERO_PRODUCTION);
    ngx_conf_init_uint_value(vmcf->protocol,
                             NGX_HTTP_VAQUERO_PROTOCOL_VAQUERO);

    /* the Python SDK's presets */
    preset = vq_mode_preset(vmcf->mode);

    ngx_conf_init_value(vmcf->batch_size, (ngx_int_t) preset->batch_size);
    ngx_conf_init_msec_value(vmcf->flush_interval, preset->flush_interval_ms);

    ngx_conf_init_msec_value(vmcf->export_timeout, 5000);
    ngx_conf_init_msec_value(vmcf->shutdown_timeout, 3000);
    ngx_conf_init_size_value(vmcf->queue_size, 8 * 1024 * 1024);
    ngx_conf_init_value(vmcf->gzip, 0);
    ngx_conf_init_value(vmcf->ssl_verify, 1);

    if (vmcf->endpoint.data == NULL) {
        ngx_str_set(&vmcf->endpoint, "https://api.vaquero.app");
        vmcf->endpoint_kind = VQ_ENDPOINT_HTTP;
    }

    if (vmcf->service_name.data == NULL) {
        ngx_str_set(&vmcf->service_name, "nginx");
    }

    if (vmcf->endpoint_kind == VQ_ENDPOINT_FILE
        && ngx_http_vaquero_protocols[vmcf->protocol]->binary)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vaquero_protocol %s\" (protobuf) cannot be "
                           "written to the file endpoint \"%V\", use "
                           "\"vaquero_protocol otlp_json\"",
                           ngx_http_vaquero_protocols[vmcf->protocol]->name,
                           &vmcf->endpoint);
        return NGX_CONF_ERROR;
    }

    if (vmcf->ssl_certificate_key.data && vmcf->ssl_certificate.data == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vaquero_ssl_certificate_key\" is set without "
                           "\"vaquero_ssl_certificate\"");
        return NGX_CONF_ERROR;
    }

    return ngx_http_vaquero_check_headers(cf, vmcf);
}


static void *
ngx_http_vaquero_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_vaquero_loc_conf_t  *vlcf;

    vlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_vaquero_loc_conf_t));
    if (vlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     vlcf->enable_value = NULL;
     *     vlcf->agent_name = { 0, NULL };
     *     vlcf->span_name = NULL;
     *     vlcf->attributes = NULL;
     *     vlcf->sample_key = NULL;
     */

    vlcf->enable = NGX_CONF_UNSET;
    vlcf->capture_request = NGX_CONF_UNSET_PTR;
    vlcf->capture_response = NGX_CONF_UNSET_PTR;
    vlcf->trace_context = NGX_CONF_UNSET_UINT;
    vlcf->upstream_spans = NGX_CONF_UNSET;
    vlcf->sample_threshold = NGX_HTTP_VAQUERO_NO_RATIO;
    vlcf->sample_parent = NGX_CONF_UNSET;
    vlcf->sample_errors = NGX_CONF_UNSET;
    vlcf->sample_slow = NGX_CONF_UNSET_MSEC;

    return vlcf;
}


static char *
ngx_http_vaquero_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_vaquero_loc_conf_t  *prev = parent;
    ngx_http_vaquero_loc_conf_t  *conf = child;

    ngx_uint_t                     n;
    ngx_http_vaquero_main_conf_t  *vmcf;

    if (conf->enable == NGX_CONF_UNSET && conf->enable_value == NULL) {
        conf->enable = prev->enable;
        conf->enable_value = prev->enable_value;
    }

    ngx_conf_init_value(conf->enable, 0);

    ngx_conf_merge_str_value(conf->agent_name, prev->agent_name, "");

    if (conf->span_name == NULL) {
        conf->span_name = prev->span_name;
    }

    if (conf->attributes == NULL) {
        conf->attributes = prev->attributes;
    }

    ngx_conf_merge_ptr_value(conf->capture_request, prev->capture_request,
                             NULL);
    ngx_conf_merge_ptr_value(conf->capture_response, prev->capture_response,
                             NULL);

    n = (conf->attributes ? conf->attributes->nelts : 0)
        + (conf->capture_request ? conf->capture_request->nelts : 0)
        + (conf->capture_response ? conf->capture_response->nelts : 0);

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_vaquero_module);

    if (vq_mode_preset(vmcf->mode)->capture_headers
        && n < VQ_SPAN_MAX_ATTRS
        && ngx_http_vaquero_capture_defaults(cf, conf, VQ_SPAN_MAX_ATTRS - n)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    n = (conf->attributes ? conf->attributes->nelts : 0)
        + (conf->capture_request ? conf->capture_request->nelts : 0)
        + (conf->capture_response ? conf->capture_response->nelts : 0);

    if (n > VQ_SPAN_MAX_ATTRS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"vaquero_attribute\" and captured "
                           "headers in a location: %ui, at most %d",
                           n, VQ_SPAN_MAX_ATTRS);
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_uint_value(conf->trace_context, prev->trace_context,
                              NGX_HTTP_VAQUERO_PROPAGATE);
    ngx_conf_merge_value(conf->upstream_spans, prev->upstream_spans, 1);

    if (conf->sample_threshold == NGX_HTTP_VAQUERO_NO_RATIO) {
        conf->sample_threshold = prev->sample_threshold;
    }

    if (conf->sample_key == NULL) {
        conf->sample_key = prev->sample_key;
    }

    if (conf->sample_threshold != NGX_HTTP_VAQUERO_NO_RATIO
        && ngx_http_vaquero_root_tracestate(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_value(conf->sample_parent, prev->sample_parent, 1);
    ngx_conf_merge_value(conf->sample_errors, prev->sample_errors, 1);
    ngx_conf_merge_msec_value(conf->sample_slow, prev->sample_slow, 0);

    return NGX_CONF_OK;
}


/*
 * The tracestate of a new trace that the location's ratio sampled: the
 * threshold is all its "ot" entry holds (ngx_http_vaquero_sample()).
 */
static ngx_int_t
ngx_http_vaquero_root_tracestate(ngx_conf_t *cf,
    ngx_http_vaquero_loc_conf_t *vlcf)
{
    int       n;
    char      value[VQ_OT_VALUE_MAX];
    size_t    size;
    u_char   *p;
    vq_ot_t   ot;

    if (vlcf->sample_threshold >= VQ_SAMPLE_NEVER) {
        return NGX_OK;                  /* rate 0: never sampled */
    }

    (void) vq_ot_parse(NULL, 0, &ot);
    ot.th = vlcf->sample_threshold;
    ot.flags |= VQ_OT_TH;

    n = vq_ot_format(&ot, value, sizeof(value));
    if (n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot format the sampling threshold");
        return NGX_ERROR;
    }

    size = sizeof("ot=") - 1 + n;

    p = ngx_pnalloc(cf->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* as ngx_http_vaquero_set_ot() puts it into an empty tracestate */
    n = vq_tracestate_put(NULL, 0, "ot", 2, value, n, (char *) p, size);
    if (n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot format the sampling threshold");
        return NGX_ERROR;
    }

    vlcf->root_tracestate.data = p;
    vlcf->root_tracestate.len = n;

    return NGX_OK;
}
