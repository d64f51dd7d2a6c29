/*
 * The exporter thread: queue -> batch -> Vaquero JSON -> HTTP POST.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include <vaquero/vaquero.h>

#define VQ_IDLE_POLL_MS       10        /* queue poll while idle */
#define VQ_MESSAGE_INTERVAL   10000     /* ms between two log messages */
#define VQ_BACKOFF_MIN_MS     100
#define VQ_BACKOFF_MAX_MS     10000
#define VQ_TRANSFER_POLL_MS   50        /* deadline checks during a transfer */
#define VQ_STALL_MS           1000      /* a claimed slot's writer has no pid */
#define VQ_STALL_WARN_MS      10000     /* a live writer holds the queue head */

struct vq_exporter_s {
    vq_exporter_conf_t    conf;
    char                 *url;
    char                  hostname[256];
    vq_resource_t         res;

    vq_queue_t           *queue;
    vq_stats_t           *stats;

    CURLM                *multi;            /* owns the kept-alive connection */
    CURL                 *curl;
    struct curl_slist    *headers;
    char                  curl_error[CURL_ERROR_SIZE];
    vq_buf_t              body;

    vq_span_t            *batch;
    const vq_span_t     **spans;
    size_t                count;
    size_t                encoded;          /* of count, in the last body */
    int64_t               batch_started;    /* monotonic ms */
    unsigned              failures;         /* consecutive */
    unsigned              seed;             /* backoff jitter */
    uint64_t              stalled_pos;      /* queue head seen stalled ... */
    pid_t                 stalled_writer;   /* ... claimed by this pid ... */
    int64_t               stalled_since;    /* ... since then (monotonic ms) */
    int                   stalled_warned;

    pthread_t             thread;
    int                   running;
    pthread_mutex_t       lock;
    pthread_cond_t        cond;
    int                   stopping;         /* under lock */
    int64_t               abort_at;         /* atomic; 0: no deadline */

    char                  message[256];     /* under lock */
    int64_t               message_taken;
};

static int64_t
monotonic_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *
copy_string(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void
set_message(vq_exporter_t *ex, const char *fmt, ...)
{
    va_list  args;

    pthread_mutex_lock(&ex->lock);
    va_start(args, fmt);
    vsnprintf(ex->message, sizeof(ex->message), fmt, args);
    va_end(args);
    pthread_mutex_unlock(&ex->lock);
}

size_t
vq_exporter_take_message(vq_exporter_t *ex, char *buf, size_t size)
{
    size_t   len;
    int64_t  now;

    if (size == 0) {
        return 0;
    }

    now = monotonic_ms();
    len = 0;

    pthread_mutex_lock(&ex->lock);

    if (ex->message[0] != '\0'
        && (ex->message_taken == 0
            || now - ex->message_taken >= VQ_MESSAGE_INTERVAL))
    {
        len = strlen(ex->message);
        if (len >= size) {
            len = size - 1;
        }
        memcpy(buf, ex->message, len);
        buf[len] = '\0';
        ex->message[0] = '\0';
        ex->message_taken = now;
    }

    pthread_mutex_unlock(&ex->lock);

    return len;
}

static size_t
discard_body(char *ptr, size_t size, size_t nmemb, void *data)
{
    (void) ptr;
    (void) data;
    return size * nmemb;
}

static int
past_deadline(vq_exporter_t *ex)
{
    int64_t  at;

    at = __atomic_load_n(&ex->abort_at, __ATOMIC_RELAXED);

    return at != 0 && monotonic_ms() >= at;
}

static int
add_header(vq_exporter_t *ex, const char *name, const char *value)
{
    struct curl_slist  *list;
    char               *line;
    size_t              len;

    len = strlen(name) + 2 + strlen(value) + 1;
    line = malloc(len);
    if (line == NULL) {
        return VQ_ENOMEM;
    }

    snprintf(line, len, "%s: %s", name, value);
    list = curl_slist_append(ex->headers, line);
    free(line);

    if (list == NULL) {
        return VQ_ENOMEM;
    }

    ex->headers = list;
    return VQ_OK;
}

static int
add_bearer(vq_exporter_t *ex)
{
    char  *value;
    int    rc;

    value = malloc(sizeof("Bearer ") + strlen(ex->conf.api_key));
    if (value == NULL) {
        return VQ_ENOMEM;
    }

    strcpy(value, "Bearer ");
    strcat(value, ex->conf.api_key);

    rc = add_header(ex, "Authorization", value);

    /* the key is a secret: do not leave copies of it lying around */
    memset(value, 0, strlen(value));
    free(value);

    return rc;
}

static int
setup_curl(vq_exporter_t *ex)
{
    CURL  *c;

    if (add_header(ex, "Content-Type", "application/json") != VQ_OK
        || add_header(ex, "User-Agent", ex->conf.user_agent) != VQ_OK
        || (ex->conf.api_key && add_bearer(ex) != VQ_OK)
        || (ex->conf.project_id
            && add_header(ex, "X-Project-ID", ex->conf.project_id) != VQ_OK))
    {
        return VQ_ENOMEM;
    }

    /* no "Expect: 100-continue" round trip on large bodies */
    ex->headers = curl_slist_append(ex->headers, "Expect:");
    if (ex->headers == NULL) {
        return VQ_ENOMEM;
    }

    c = curl_easy_init();
    if (c == NULL) {
        return VQ_ENOMEM;
    }

    ex->curl = c;

    curl_easy_setopt(c, CURLOPT_URL, ex->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, ex->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) ex->conf.export_timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) ex->conf.export_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ex->curl_error);

    ex->multi = curl_multi_init();
    if (ex->multi == NULL) {
        return VQ_ENOMEM;
    }

    return VQ_OK;
}

vq_exporter_t *
vq_exporter_create(const vq_exporter_conf_t *conf, vq_queue_t *queue,
    vq_stats_t *stats, char *err, size_t err_size)
{
    vq_exporter_t       *ex;
    const char          *ep;
    size_t               len;
    pthread_condattr_t   cattr;

    ep = conf->endpoint;

    if (ep == NULL
        || (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0))
    {
        snprintf(err, err_size, "endpoint \"%s\" is not an http(s) URL",
                 ep ? ep : "");
        return NULL;
    }

    if (conf->batch_size == 0 || conf->user_agent == NULL
        || conf->service_name == NULL || conf->environment == NULL)
    {
        snprintf(err, err_size, "incomplete exporter configuration");
        return NULL;
    }

    ex = calloc(1, sizeof(vq_exporter_t));
    if (ex == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }

    /* idle waits measured on a clock that wall-clock changes do not move */
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_mutex_init(&ex->lock, NULL);
    pthread_cond_init(&ex->cond, &cattr);
    pthread_condattr_destroy(&cattr);
    vq_buf_init(&ex->body);

    ex->conf = *conf;
    ex->stalled_pos = VQ_QUEUE_NOT_STALLED;
    ex->seed = (unsigned) getpid() ^ (unsigned) monotonic_ms();
    ex->queue = queue;
    ex->stats = stats;

    ex->conf.endpoint = copy_string(conf->endpoint);
    ex->conf.api_key = copy_string(conf->api_key);
    ex->conf.project_id = copy_string(conf->project_id);
    ex->conf.service_name = copy_string(conf->service_name);
    ex->conf.environment = copy_string(conf->environment);
    ex->conf.user_agent = copy_string(conf->user_agent);

    /* {endpoint without trailing slashes}/api/v1/traces/batch */
    len = strlen(ep);
    while (len > 0 && ep[len - 1] == '/') {
        len--;
    }

    ex->url = malloc(len + sizeof("/api/v1/traces/batch"));
    ex->batch = malloc(conf->batch_size * sizeof(vq_span_t));
    ex->spans = malloc(conf->batch_size * sizeof(vq_span_t *));

    if (ex->conf.endpoint == NULL || ex->conf.service_name == NULL
        || ex->conf.environment == NULL || ex->conf.user_agent == NULL
        || (conf->api_key && ex->conf.api_key == NULL)
        || (conf->project_id && ex->conf.project_id == NULL)
        || ex->url == NULL || ex->batch == NULL || ex->spans == NULL)
    {
        snprintf(err, err_size, "out of memory");
        vq_exporter_destroy(ex);
        return NULL;
    }

    memcpy(ex->url, ep, len);
    memcpy(ex->url + len, "/api/v1/traces/batch",
           sizeof("/api/v1/traces/batch"));

    if (gethostname(ex->hostname, sizeof(ex->hostname) - 1) != 0) {
        strcpy(ex->hostname, "unknown");
    }

    ex->res.service_name = ex->conf.service_name;
    ex->res.project_id = ex->conf.project_id;
    ex->res.environment = ex->conf.environment;
    ex->res.hostname = ex->hostname;
    ex->res.sdk_version = VQ_VERSION;

    if (setup_curl(ex) != VQ_OK) {
        snprintf(err, err_size, "cannot set up libcurl");
        vq_exporter_destroy(ex);
        return NULL;
    }

    return ex;
}

void
vq_exporter_destroy(vq_exporter_t *ex)
{
    if (ex == NULL) {
        return;
    }

    if (ex->running) {
        vq_exporter_stop(ex, 0);
    }

    if (ex->curl) {
        curl_easy_cleanup(ex->curl);
    }

    if (ex->multi) {
        curl_multi_cleanup(ex->multi);
    }

    curl_slist_free_all(ex->headers);
    vq_buf_free(&ex->body);

    free((char *) ex->conf.endpoint);
    free((char *) ex->conf.api_key);
    free((char *) ex->conf.project_id);
    free((char *) ex->conf.service_name);
    free((char *) ex->conf.environment);
    free((char *) ex->conf.user_agent);
    free(ex->url);
    free(ex->batch);
    free(ex->spans);

    pthread_mutex_destroy(&ex->lock);
    pthread_cond_destroy(&ex->cond);

    free(ex);
}

/*
 * One transfer, through the multi interface so that vq_exporter_stop()
 * can wake it and cut it short at the shutdown deadline.
 */
static CURLcode
perform(vq_exporter_t *ex)
{
    CURLMsg   *msg;
    CURLcode   rc;
    int        running, left;

    if (curl_multi_add_handle(ex->multi, ex->curl) != CURLM_OK) {
        return CURLE_FAILED_INIT;
    }

    rc = CURLE_OK;
    running = 1;

    while (running) {
        if (curl_multi_perform(ex->multi, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }

        if (!running) {
            break;
        }

        if (past_deadline(ex)) {
            snprintf(ex->curl_error, sizeof(ex->curl_error),
                     "abandoned at the shutdown deadline");
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }

        curl_multi_poll(ex->multi, NULL, 0, VQ_TRANSFER_POLL_MS, NULL);
    }

    if (!running) {
        while ((msg = curl_multi_info_read(ex->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == ex->curl) {
                rc = msg->data.result;
            }
        }
    }

    curl_multi_remove_handle(ex->multi, ex->curl);

    return rc;
}


/* The HTTP status, or 0 when there was no answer. */
static long
post(vq_exporter_t *ex, const vq_span_t *const *spans, size_t n)
{
    CURLcode  rc;
    long      status;
    int       encoded;

    vq_buf_reset(&ex->body);

    encoded = vq_encode_vaquero_batch(&ex->body, &ex->res, spans, n);
    if (encoded < 0) {
        snprintf(ex->curl_error, sizeof(ex->curl_error),
                 "out of memory encoding a batch");
        return 0;
    }

    ex->encoded = (size_t) encoded;

    curl_easy_setopt(ex->curl, CURLOPT_POSTFIELDS, ex->body.data);
    curl_easy_setopt(ex->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t) ex->body.len);

    ex->curl_error[0] = '\0';
    rc = perform(ex);

    vq_stats_add(&ex->stats->export_requests, 1);

    if (rc != CURLE_OK) {
        if (ex->curl_error[0] == '\0') {
            snprintf(ex->curl_error, sizeof(ex->curl_error), "%s",
                     curl_easy_strerror(rc));
        }
        vq_stats_set(&ex->stats->last_export_status, 0);
        return 0;
    }

    status = 0;
    curl_easy_getinfo(ex->curl, CURLINFO_RESPONSE_CODE, &status);
    vq_stats_set(&ex->stats->last_export_status, (uint64_t) status);

    return status;
}

int
vq_exporter_send(vq_exporter_t *ex, const vq_span_t *const *spans, size_t n)
{
    long  status;

    status = post(ex, spans, n);

    return (status >= 200 && status < 300) ? VQ_OK : VQ_ERROR;
}

static int
stopping(vq_exporter_t *ex)
{
    int  s;

    pthread_mutex_lock(&ex->lock);
    s = ex->stopping;
    pthread_mutex_unlock(&ex->lock);

    return s;
}

/* Waits up to ms, or less if stop is asked for. */
static void
idle(vq_exporter_t *ex, int64_t ms)
{
    struct timespec  ts;

    if (ms <= 0) {
        return;
    }

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }

    pthread_mutex_lock(&ex->lock);
    if (!ex->stopping) {
        pthread_cond_timedwait(&ex->cond, &ex->lock, &ts);
    }
    pthread_mutex_unlock(&ex->lock);
}

/*
 * The queue looks empty: is its head a slot that a worker claimed and
 * never filled?  The queue gives it up only if that worker is dead (or
 * never got to record its pid, for VQ_STALL_MS), never under a worker
 * that is merely slow or stopped, whose record arrives when it goes on.
 */
static void
check_stalled(vq_exporter_t *ex)
{
    uint64_t  pos;
    int64_t   now;
    pid_t     writer;

    pos = vq_queue_stalled(ex->queue, &writer);

    if (pos == VQ_QUEUE_NOT_STALLED) {
        ex->stalled_pos = VQ_QUEUE_NOT_STALLED;
        return;
    }

    now = monotonic_ms();

    if (pos != ex->stalled_pos || writer != ex->stalled_writer) {
        /* a live writer is done within microseconds: look again later */
        ex->stalled_pos = pos;
        ex->stalled_writer = writer;
        ex->stalled_since = now;
        ex->stalled_warned = 0;
        return;
    }

    if (vq_queue_skip(ex->queue, pos,
                      writer == 0 && now - ex->stalled_since >= VQ_STALL_MS)
        == VQ_OK)
    {
        if (writer != 0) {
            set_message(ex, "skipped a span queue slot: process %ld was "
                        "killed while recording a span, one span lost",
                        (long) writer);
        } else {
            set_message(ex, "skipped a span queue slot claimed and left "
                        "without a writer for %d ms (a worker killed while "
                        "recording a span?), one span lost", VQ_STALL_MS);
        }
        ex->stalled_pos = VQ_QUEUE_NOT_STALLED;
        return;
    }

    if (writer != 0 && !ex->stalled_warned
        && now - ex->stalled_since >= VQ_STALL_WARN_MS)
    {
        /* a stopped worker, or its pid taken by another process */
        set_message(ex, "process %ld has held the span queue for %lld ms "
                    "while recording a span; spans wait behind it",
                    (long) writer, (long long) (now - ex->stalled_since));
        ex->stalled_warned = 1;
    }
}

/* Tops the batch up from the queue; returns how many records it took. */
static size_t
fill_batch(vq_exporter_t *ex)
{
    size_t  taken, len;

    taken = 0;

    while (ex->count < ex->conf.batch_size) {
        if (vq_queue_pop(ex->queue, &ex->batch[ex->count], sizeof(vq_span_t),
                         &len)
            != VQ_OK)
        {
            if (taken == 0) {
                check_stalled(ex);
            }
            break;
        }

        (void) len;     /* the encoder checks every record */

        if (ex->count == 0) {
            ex->batch_started = monotonic_ms();
        }

        ex->spans[ex->count] = &ex->batch[ex->count];
        ex->count++;
        taken++;
    }

    return taken;
}

/*
 * One attempt to send the batch.  Returns 0 when the batch is done with
 * (sent, or refused for good), or the backoff in ms before the next try.
 */
static int64_t
send_batch(vq_exporter_t *ex)
{
    long      status;
    unsigned  shift;
    int64_t   backoff;

    status = post(ex, ex->spans, ex->count);

    if (status >= 200 && status < 300) {
        /* records the encoder refused: only damaged shared memory has them */
        vq_stats_add(&ex->stats->spans_exported, ex->encoded);
        vq_stats_add(&ex->stats->spans_dropped_export_failed,
                     ex->count - ex->encoded);

        if (ex->failures) {
            set_message(ex, "export to %s recovered", ex->url);
        }

        ex->failures = 0;
        ex->count = 0;
        return 0;
    }

    vq_stats_add(&ex->stats->export_failures, 1);

    if (status >= 400 && status < 500 && status != 408 && status != 429) {
        /* the collector will not take this batch whatever we do */
        vq_stats_add(&ex->stats->spans_dropped_export_failed, ex->count);
        set_message(ex, "export to %s refused with HTTP %ld, "
                    "%zu spans dropped", ex->url, status, ex->count);
        ex->failures = 0;
        ex->count = 0;
        return 0;
    }

    if (status > 0) {
        set_message(ex, "export to %s failed with HTTP %ld, will retry",
                    ex->url, status);
    } else {
        set_message(ex, "export to %s failed: %s, will retry", ex->url,
                    ex->curl_error);
    }

    vq_stats_add(&ex->stats->export_retries, 1);

    shift = ex->failures < 7 ? ex->failures : 7;
    ex->failures++;

    backoff = (int64_t) VQ_BACKOFF_MIN_MS << shift;
    if (backoff > VQ_BACKOFF_MAX_MS) {
        backoff = VQ_BACKOFF_MAX_MS;
    }

    /* jitter: 50%..100% of the backoff, so workers do not retry in step */
    return backoff / 2 + rand_r(&ex->seed) % (backoff / 2 + 1);
}

/*
 * On the way out: what could not be sent goes back for the next workers.
 * A span that does not fit any more is dropped here, and counted here
 * only: a requeue is not a refusal on the request path (queue_full), and
 * a requeue the queue gave up (VQ_ESKIPPED) the queue counts as skipped.
 */
static void
return_batch(vq_exporter_t *ex)
{
    size_t  i;
    int     rc;

    for (i = 0; i < ex->count; i++) {
        rc = vq_queue_requeue(ex->queue, ex->spans[i],
                              vq_span_size(ex->spans[i]));

        if (rc != VQ_OK && rc != VQ_ESKIPPED) {
            vq_stats_add(&ex->stats->spans_dropped_export_failed, 1);
        }
    }

    ex->count = 0;
}

static void *
run(void *data)
{
    vq_exporter_t  *ex = data;
    int64_t         now, wait, backoff_until, deadline;
    size_t          taken;

    backoff_until = 0;

    while (!stopping(ex)) {
        now = monotonic_ms();

        if (now < backoff_until) {
            idle(ex, backoff_until - now);
            continue;
        }

        taken = fill_batch(ex);
        now = monotonic_ms();

        if (ex->count == ex->conf.batch_size
            || (ex->count > 0
                && now - ex->batch_started >= ex->conf.flush_interval_ms)
            || (ex->count > 0 && ex->failures > 0))
        {
            wait = send_batch(ex);
            backoff_until = wait ? monotonic_ms() + wait : 0;
            continue;
        }

        if (taken == 0) {
            wait = VQ_IDLE_POLL_MS;

            if (ex->count > 0
                && ex->batch_started + ex->conf.flush_interval_ms - now < wait)
            {
                wait = ex->batch_started + ex->conf.flush_interval_ms - now;
            }

            idle(ex, wait);
        }
    }

    /* stopping: send what the queue holds, until the deadline */
    deadline = __atomic_load_n(&ex->abort_at, __ATOMIC_RELAXED);

    while (monotonic_ms() < deadline) {
        fill_batch(ex);

        if (ex->count == 0) {
            break;
        }

        wait = send_batch(ex);

        if (wait && monotonic_ms() + wait >= deadline) {
            break;
        }

        if (wait) {
            usleep(wait * 1000);
        }
    }

    return_batch(ex);

    return NULL;
}

int
vq_exporter_start(vq_exporter_t *ex)
{
    sigset_t  all, old;
    int       rc;

    if (ex->running) {
        return VQ_EINVAL;
    }

    ex->stopping = 0;
    __atomic_store_n(&ex->abort_at, 0, __ATOMIC_RELAXED);

    /* the thread must never take a signal meant for its process */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(&ex->thread, NULL, run, ex);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        errno = rc;
        return VQ_ERROR;
    }

    ex->running = 1;
    return VQ_OK;
}

void
vq_exporter_stop(vq_exporter_t *ex, unsigned timeout_ms)
{
    if (!ex->running) {
        return;
    }

    pthread_mutex_lock(&ex->lock);
    ex->stopping = 1;
    __atomic_store_n(&ex->abort_at, monotonic_ms() + timeout_ms,
                     __ATOMIC_RELAXED);
    pthread_cond_signal(&ex->cond);
    pthread_mutex_unlock(&ex->lock);

    curl_multi_wakeup(ex->multi);

    pthread_join(ex->thread, NULL);
    ex->running = 0;
}
