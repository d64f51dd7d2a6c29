/*
 * The shared zones that hold the span queues and their counters.
 *
 * A zone is named after its queue size ("vaquero:8388608"), so that
 * "nginx -s reload" keeps it when vaquero_queue_size does not change (the
 * init callback gets the old data), and the new workers send what the old
 * ones recorded.  When the size changes, the new configuration gets a new
 * zone and keeps the old one too (declared again with its name, size and
 * tag, so that nginx keeps its memory): the old workers still write to it
 * until they exit, and the new workers' exporters move its records into
 * the new queue as it has room, and send them from there.  A kept zone is
 * kept again by the next reload while it holds records, and dropped once
 * it is empty (a record is only ever held by an exporter out of the queue
 * of its own configuration, which the next reload always keeps).  No
 * queue is ever formatted while processes use it, and nothing is copied
 * by the master.
 *
 * Each configuration that initialises a zone gets a generation, stamped
 * into every span it records; the resource of each generation (service
 * name, project id, environment, vaquero_resource_attribute) is kept in
 * the master's memory, so that
 * every worker forked after it knows the resources of its own generation
 * and all earlier ones, which are the only spans its exporter sends.
 *
 * The zone starts with a header saying what layout it has; a zone whose
 * header does not match this module's exactly is never used (see
 * ngx_http_vaquero_zone_check).
 */

#include "ngx_http_vaquero_module.h"


#define NGX_HTTP_VAQUERO_DROP_LOG_INTERVAL  10    /* seconds */

/* zones of earlier queue sizes kept across reloads, at most */
#define NGX_HTTP_VAQUERO_KEPT_MAX           4

/* "VQZONE" */
#define NGX_HTTP_VAQUERO_ZONE_MAGIC         0x0000454e4f5a5156ULL

/*
 * Bump when the zone's layout changes in a way the sizes checked below do
 * not show: this structure, vq_stats_t, the span record (vq_span_t) or
 * the queue's format.
 */
#define NGX_HTTP_VAQUERO_ZONE_LAYOUT        3


struct ngx_http_vaquero_shm_s {
    /* first, and never moved: what layout the rest has */
    uint64_t                    magic;
    uint32_t                    layout;
    uint32_t                    size;           /* of this structure */
    uint32_t                    record_head;    /* sizeof(vq_span_head_t) */
    uint32_t                    record_max;     /* VQ_SPAN_RECORD_MAX */

    uint32_t                    generation;     /* the latest that used it */
    size_t                      queue_size;
    vq_queue_t                 *queue;
    vq_stats_t                  stats;
};


static ngx_int_t ngx_http_vaquero_keep_zones(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf);
static ngx_int_t ngx_http_vaquero_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_vaquero_init_kept_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static char *ngx_http_vaquero_zone_check(ngx_shm_zone_t *shm_zone,
    ngx_http_vaquero_shm_t **shmp);
static ngx_int_t ngx_http_vaquero_add_resource(ngx_shm_zone_t *shm_zone,
    ngx_http_vaquero_main_conf_t *vmcf);


/* in the master (or the single process), and inherited by each worker */
static uint32_t         ngx_http_vaquero_generation;
static vq_resources_t  *ngx_http_vaquero_resources;

/* per process: spans the queue refused since the error log last said so */
static uint64_t         ngx_http_vaquero_dropped;
static time_t           ngx_http_vaquero_dropped_since;
static time_t           ngx_http_vaquero_drop_logged;


ngx_int_t
ngx_http_vaquero_add_zone(ngx_conf_t *cf, ngx_http_vaquero_main_conf_t *vmcf)
{
    size_t           size;
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    /* the queue, plus the slab allocator's own pages and bookkeeping */
    size = vmcf->queue_size + vmcf->queue_size / 128 + 64 * 1024;
    size = ngx_align(size, ngx_pagesize);

    name.data = ngx_pnalloc(cf->pool, sizeof("vaquero:") - 1 + NGX_SIZE_T_LEN);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    name.len = ngx_sprintf(name.data, "vaquero:%uz", vmcf->queue_size)
               - name.data;

    zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_vaquero_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    if (zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "shared memory zone \"%V\" is already in use",
                           &name);
        return NGX_ERROR;
    }

    zone->init = ngx_http_vaquero_init_zone;
    zone->data = vmcf;

    vmcf->shm_zone = zone;

    return ngx_http_vaquero_keep_zones(cf, vmcf);
}


/*
 * The zones of the previous configuration that this one keeps: its own,
 * which its workers still write to (and hold batches of) until they exit,
 * and those it kept that still hold records.  Reading them here is safe:
 * the previous cycle's zones stay mapped until the new cycle has its own.
 */
static ngx_int_t
ngx_http_vaquero_keep_zones(ngx_conf_t *cf,
    ngx_http_vaquero_main_conf_t *vmcf)
{
    char                          *reason;
    ngx_str_t                      name;
    ngx_uint_t                     i, n;
    ngx_list_part_t               *part;
    ngx_shm_zone_t                *oz, *zone;
    vq_queue_stats_t               qs;
    ngx_http_vaquero_shm_t        *shm;
    ngx_http_vaquero_main_conf_t  *ovmcf;

    n = 0;
    part = &cf->cycle->old_cycle->shared_memory.part;
    oz = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }
            part = part->next;
            oz = part->elts;
            i = 0;
        }

        if (oz[i].tag != &ngx_http_vaquero_module
            || (oz[i].shm.name.len == vmcf->shm_zone->shm.name.len
                && ngx_strncmp(oz[i].shm.name.data,
                               vmcf->shm_zone->shm.name.data,
                               oz[i].shm.name.len)
                   == 0))
        {
            continue;
        }

        reason = ngx_http_vaquero_zone_check(&oz[i], &shm);

        if (reason) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "vaquero: shared memory zone \"%V\" %s, "
                               "not kept: its spans are left to the workers "
                               "that use it", &oz[i].shm.name, reason);
            continue;
        }

        ovmcf = oz[i].data;
        vq_queue_get_stats(shm->queue, &qs);

        if (ovmcf->shm_zone != &oz[i] && qs.used == 0) {
            continue;
        }

        /* the previous configuration's own comes first: it declared it so */

        if (n == NGX_HTTP_VAQUERO_KEPT_MAX) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "vaquero: too many span queues of earlier "
                               "vaquero_queue_size values to keep, \"%V\" "
                               "is left to its workers with %uL spans",
                               &oz[i].shm.name, qs.used);
            continue;
        }

        name.len = oz[i].shm.name.len;
        name.data = ngx_pstrdup(cf->pool, &oz[i].shm.name);
        if (name.data == NULL) {
            return NGX_ERROR;
        }

        zone = ngx_shared_memory_add(cf, &name, oz[i].shm.size,
                                     &ngx_http_vaquero_module);
        if (zone == NULL) {
            return NGX_ERROR;
        }

        if (zone->data) {
            continue;
        }

        if (vmcf->kept == NULL) {
            vmcf->kept = ngx_array_create(cf->pool, NGX_HTTP_VAQUERO_KEPT_MAX,
                                          sizeof(ngx_http_vaquero_shm_t *));
            if (vmcf->kept == NULL) {
                return NGX_ERROR;
            }
        }

        zone->init = ngx_http_vaquero_init_kept_zone;
        zone->data = vmcf;
        n++;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vaquero_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    char                          *reason;
    u_char                        *mem;
    vq_queue_stats_t               qs;
    ngx_slab_pool_t               *shpool;
    ngx_http_vaquero_shm_t        *shm;
    ngx_http_vaquero_main_conf_t  *vmcf;

    vmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data || shm_zone->shm.exists) {

        /* a reload, the same queue size: the same queue, records kept */

        reason = ngx_http_vaquero_zone_check(shm_zone, &shm);

        if (reason) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "vaquero: shared memory zone \"%V\" %s, not "
                          "reused: restart nginx, or change "
                          "vaquero_queue_size to get a new zone",
                          &shm_zone->shm.name, reason);
            return NGX_ERROR;
        }

    } else {
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

        shm->magic = NGX_HTTP_VAQUERO_ZONE_MAGIC;
        shm->layout = NGX_HTTP_VAQUERO_ZONE_LAYOUT;
        shm->size = sizeof(ngx_http_vaquero_shm_t);
        shm->record_head = sizeof(vq_span_head_t);
        shm->record_max = VQ_SPAN_RECORD_MAX;
        shm->queue_size = vmcf->queue_size;

        shpool->data = shm;
    }

    /* later than any generation that recorded into any zone */
    if (vq_generation_after(shm->generation, ngx_http_vaquero_generation)) {
        ngx_http_vaquero_generation = shm->generation;
    }

    vmcf->shm = shm;
    vmcf->generation = ++ngx_http_vaquero_generation;
    shm->generation = vmcf->generation;

    /* a batch, or half the queue where a batch would not fit */
    vq_queue_get_stats(shm->queue, &qs);
    vmcf->wake_every = ngx_min((uint64_t) vmcf->batch_size,
                               ngx_max(qs.capacity / 2, 1));

    return ngx_http_vaquero_add_resource(shm_zone, vmcf);
}


static ngx_int_t
ngx_http_vaquero_init_kept_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    char                          *reason;
    vq_queue_stats_t               qs;
    ngx_http_vaquero_shm_t        *shm, **kept;
    ngx_http_vaquero_main_conf_t  *vmcf;

    vmcf = shm_zone->data;

    if (data == NULL) {
        /* nginx did not keep it after all: a new zone, nothing in it */
        return NGX_OK;
    }

    reason = ngx_http_vaquero_zone_check(shm_zone, &shm);

    if (reason) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "vaquero: shared memory zone \"%V\" %s, not reused",
                      &shm_zone->shm.name, reason);
        return NGX_ERROR;
    }

    kept = ngx_array_push(vmcf->kept);
    if (kept == NULL) {
        return NGX_ERROR;
    }

    *kept = shm;

    vq_queue_get_stats(shm->queue, &qs);

    ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                  "vaquero: keeping the span queue of vaquero_queue_size "
                  "%uz (%uL spans in it) until it is sent",
                  shm->queue_size, qs.used);

    return NGX_OK;
}


/*
 * What is wrong with a zone that should hold a queue of this module's, or
 * NULL when it holds one, whole and of this module's very layout.  Only
 * its first words are read before they say that the rest can be.
 */
static char *
ngx_http_vaquero_zone_check(ngx_shm_zone_t *shm_zone,
    ngx_http_vaquero_shm_t **shmp)
{
    u_char                  *start, *end, *p;
    ngx_slab_pool_t         *shpool;
    ngx_http_vaquero_shm_t  *shm;

    start = shm_zone->shm.addr;
    end = start + shm_zone->shm.size;

    shpool = (ngx_slab_pool_t *) start;
    p = shpool->data;

    if (p < start || p > end - sizeof(ngx_http_vaquero_shm_t)
        || ((uintptr_t) p & (sizeof(uint64_t) - 1)))
    {
        return "holds no span queue";
    }

    shm = (ngx_http_vaquero_shm_t *) p;

    if (shm->magic != NGX_HTTP_VAQUERO_ZONE_MAGIC) {
        return "holds no span queue";
    }

    if (shm->layout != NGX_HTTP_VAQUERO_ZONE_LAYOUT
        || shm->size != sizeof(ngx_http_vaquero_shm_t)
        || shm->record_head != sizeof(vq_span_head_t)
        || shm->record_max != VQ_SPAN_RECORD_MAX)
    {
        return "holds a span queue of another layout (another build of "
               "the module)";
    }

    p = (u_char *) shm->queue;

    if (p < start || p > end || shm->queue_size > (size_t) (end - p)
        || vq_queue_attach(shm->queue, shm->queue_size, VQ_SPAN_RECORD_MAX)
           == NULL)
    {
        return "holds a damaged span queue";
    }

    *shmp = shm;

    return NULL;
}


static ngx_int_t
ngx_http_vaquero_add_resource(ngx_shm_zone_t *shm_zone,
    ngx_http_vaquero_main_conf_t *vmcf)
{
    int             rc;
    u_char         *p;
    size_t          size;
    vq_kv_t        *kv;
    ngx_uint_t      i, n;
    ngx_log_t      *log;
    ngx_keyval_t   *attr;
    vq_resource_t   res;

    log = shm_zone->shm.log;

    if (ngx_http_vaquero_resources == NULL) {
        ngx_http_vaquero_resources = vq_resources_create();
        if (ngx_http_vaquero_resources == NULL) {
            return NGX_ERROR;
        }
    }

    n = vmcf->resource_attributes ? vmcf->resource_attributes->nelts : 0;
    attr = n ? vmcf->resource_attributes->elts : NULL;

    /* NUL-terminated copies, for the time of the call */
    size = n * sizeof(vq_kv_t) + vmcf->service_name.len + 1
           + vmcf->project_id.len + 1;

    for (i = 0; i < n; i++) {
        size += attr[i].key.len + 1 + attr[i].value.len + 1;
    }

    kv = ngx_alloc(size, log);
    if (kv == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&res, sizeof(vq_resource_t));

    p = (u_char *) (kv + n);

    res.service_name = (char *) p;
    p = ngx_cpymem(p, vmcf->service_name.data, vmcf->service_name.len);
    *p++ = '\0';

    if (vmcf->project_id.data) {
        res.project_id = (char *) p;
        p = ngx_cpymem(p, vmcf->project_id.data, vmcf->project_id.len);
    }

    *p++ = '\0';

    for (i = 0; i < n; i++) {
        kv[i].key = (char *) p;
        p = ngx_cpymem(p, attr[i].key.data, attr[i].key.len);
        *p++ = '\0';

        kv[i].value = (char *) p;
        p = ngx_cpymem(p, attr[i].value.data, attr[i].value.len);
        *p++ = '\0';
    }

    res.environment = vq_mode_preset(vmcf->mode)->environment;
    res.attributes = kv;
    res.nattributes = n;

    rc = vq_resources_add(ngx_http_vaquero_resources, vmcf->generation, &res);

    ngx_free(kv);

    if (rc != VQ_OK) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "vaquero: cannot keep the resource of a configuration");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The resources of this process's configurations, by generation: of its
 * own and every earlier one in a worker.
 */
vq_resources_t *
ngx_http_vaquero_zone_resources(void)
{
    return ngx_http_vaquero_resources;
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


/* The queues of earlier queue sizes whose records this one takes over. */
vq_queue_t *
ngx_http_vaquero_zone_kept(ngx_http_vaquero_main_conf_t *vmcf, ngx_uint_t i,
    vq_stats_t **stats)
{
    ngx_http_vaquero_shm_t  **kept;

    if (vmcf->kept == NULL || i >= vmcf->kept->nelts) {
        return NULL;
    }

    kept = vmcf->kept->elts;
    *stats = &kept[i]->stats;

    return kept[i]->queue;
}


/*
 * Says that this configuration's processes write to and drain its queues
 * now: done by each worker before it records a span, so that exporters of
 * earlier configurations take no more from them (see vaquero/exporter.h),
 * and so that a span of a later generation than its queue's is known to
 * be damaged.
 */
void
ngx_http_vaquero_zone_claim(ngx_http_vaquero_main_conf_t *vmcf)
{
    ngx_uint_t                i;
    ngx_http_vaquero_shm_t  **kept;

    vq_queue_raise_generation(vmcf->shm->queue, vmcf->generation);

    if (vmcf->kept) {
        kept = vmcf->kept->elts;

        for (i = 0; i < vmcf->kept->nelts; i++) {
            vq_queue_raise_generation(kept[i]->queue, vmcf->generation);
        }
    }
}


/*
 * Hands a finished span to the exporters.  A full queue refuses it and
 * counts the refusal; the request never waits, and the error log says so
 * at most once per interval, with how many were refused.
 */
void
ngx_http_vaquero_record(ngx_http_vaquero_main_conf_t *vmcf, vq_span_t *span,
    ngx_log_t *log)
{
    uint64_t  pos;

    span->h.generation = vmcf->generation;

    vq_stats_add(&vmcf->shm->stats.spans_recorded, 1);

    switch (vq_queue_push_pos(vmcf->shm->queue, span, vq_span_size(span),
                              &pos))
    {
    case VQ_OK:
        /*
         * Every batch's worth, counted over all workers: an exporter
         * thread (of any worker) sends it now, not when the flush interval
         * ends.
         */
        if ((pos + 1) % vmcf->wake_every == 0) {
            vq_queue_wake(vmcf->shm->queue, 0);
        }

        return;

    case VQ_EFULL:
        /*
         * Whatever the wakes were, a full queue has one sent now: at its
         * first refusal, and every so many after (not one system call per
         * request while a collector is down).
         */
        if (ngx_http_vaquero_dropped % vmcf->wake_every == 0) {
            vq_queue_wake(vmcf->shm->queue, 0);
        }

        break;

    default:
        return;
    }

    if (ngx_http_vaquero_dropped++ == 0) {
        ngx_http_vaquero_dropped_since = ngx_time();
    }

    ngx_http_vaquero_zone_log_drops(log, 0);
}


/*
 * The spans this process could not queue since it last said so: at most
 * once per interval (from the request path and the process timer), and,
 * forced, whatever is left when the process exits.
 */
void
ngx_http_vaquero_zone_log_drops(ngx_log_t *log, ngx_uint_t force)
{
    ngx_tm_t  tm;

    if (ngx_http_vaquero_dropped == 0
        || (ngx_time() - ngx_http_vaquero_drop_logged
                < NGX_HTTP_VAQUERO_DROP_LOG_INTERVAL
            && !force))
    {
        return;
    }

    ngx_gmtime(ngx_http_vaquero_dropped_since, &tm);

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "vaquero: the span queue is full, %uL spans dropped since "
                  "%4d-%02d-%02dT%02d:%02d:%02dZ (the exporters are behind, "
                  "or the collector is unreachable)",
                  ngx_http_vaquero_dropped, tm.ngx_tm_year, tm.ngx_tm_mon,
                  tm.ngx_tm_mday, tm.ngx_tm_hour, tm.ngx_tm_min,
                  tm.ngx_tm_sec);

    ngx_http_vaquero_dropped = 0;
    ngx_http_vaquero_drop_logged = ngx_time();
}
