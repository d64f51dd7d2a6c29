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
static char *ngx_http_vaquero_mode(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_set_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_sample_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_sample_slow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vaquero_check_batch_size(ngx_conf_t *cf, void *post,
    void *data);
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


static ngx_conf_post_t  ngx_http_vaquero_batch_size_post = {
    ngx_http_vaquero_check_batch_size
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

    { ngx_string("vaquero_mode"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vaquero_mode,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, mode),
      NULL },

    { ngx_string("vaquero_batch_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vaquero_main_conf_t, batch_size),
      &ngx_http_vaquero_batch_size_post },

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


static char *
ngx_http_vaquero_endpoint(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "file:", 5) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": file endpoints are not supported yet",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (!((value[1].len > 7
           && ngx_strncasecmp(value[1].data, (u_char *) "http://", 7) == 0)
          || (value[1].len > 8
              && ngx_strncasecmp(value[1].data, (u_char *) "https://", 8)
                 == 0)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URL \"%V\" in \"%V\" directive, "
                           "it must start with \"http://\" or \"https://\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    return ngx_conf_set_str_slot(cf, cmd, conf);
}


static char *
ngx_http_vaquero_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vaquero_main_conf_t  *vmcf = conf;

    u_char           *p, *last;
    ssize_t           n;
    ngx_str_t        *value, name;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (vmcf->api_key.data) {
        return "is duplicate, or conflicts with \"vaquero_api_key\"";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%V\": cannot open \"%s\"", &cmd->name,
                           name.data);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 4096)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": \"%s\" is not a key file (over 4k?)",
                           &cmd->name, name.data);
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, 4097);
    if (p == NULL) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, p, 4096, 0);
    ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    /* the key is the file's first line, without surrounding white space */
    last = p + n;
    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    for (n = 0; p + n < last && p[n] != CR && p[n] != LF; n++) { /* void */ }

    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": \"%s\" holds no key", &cmd->name,
                           name.data);
        return NGX_CONF_ERROR;
    }

    p[n] = '\0';
    vmcf->api_key.data = p;
    vmcf->api_key.len = n;

    return NGX_CONF_OK;
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


static char *
ngx_http_vaquero_mode(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vaquero_main_conf_t  *vmcf = conf;

    ngx_str_t  *value;

    if (vmcf->mode != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "production") == 0) {
        vmcf->mode = NGX_HTTP_VAQUERO_PRODUCTION;

    } else if (ngx_strcmp(value[1].data, "development") == 0) {
        vmcf->mode = NGX_HTTP_VAQUERO_DEVELOPMENT;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive, "
                           "it must be \"production\" or \"development\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
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


static char *
ngx_http_vaquero_check_batch_size(ngx_conf_t *cf, void *post, void *data)
{
    ngx_int_t  *n = data;

    if (*n < 1 || *n > 10000) {
        return "must be between 1 and 10000";
    }

    return NGX_CONF_OK;
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
     *     vmcf->enabled = 0;
     *     vmcf->shm_zone = NULL;
     *     vmcf->shm = NULL;
     */

    vmcf->mode = NGX_CONF_UNSET_UINT;
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

    ngx_conf_init_uint_value(vmcf->mode, NGX_HTTP_VAQUERO_PRODUCTION);

    /* the Python SDK's presets */
    if (vmcf->mode == NGX_HTTP_VAQUERO_DEVELOPMENT) {
        ngx_conf_init_value(vmcf->batch_size, 10);
        ngx_conf_init_msec_value(vmcf->flush_interval, 2000);

    } else {
        ngx_conf_init_value(vmcf->batch_size, 100);
        ngx_conf_init_msec_value(vmcf->flush_interval, 5000);
    }

    ngx_conf_init_msec_value(vmcf->export_timeout, 5000);
    ngx_conf_init_msec_value(vmcf->shutdown_timeout, 3000);
    ngx_conf_init_size_value(vmcf->queue_size, 8 * 1024 * 1024);

    if (vmcf->endpoint.data == NULL) {
        ngx_str_set(&vmcf->endpoint, "https://api.vaquero.app");
    }

    if (vmcf->service_name.data == NULL) {
        ngx_str_set(&vmcf->service_name, "nginx");
    }

    return NGX_CONF_OK;
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

    if (vmcf->mode == NGX_HTTP_VAQUERO_DEVELOPMENT
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

    ngx_conf_merge_value(conf->sample_parent, prev->sample_parent, 1);
    ngx_conf_merge_value(conf->sample_errors, prev->sample_errors, 1);
    ngx_conf_merge_msec_value(conf->sample_slow, prev->sample_slow, 0);

    return NGX_CONF_OK;
}
