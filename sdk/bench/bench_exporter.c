/*
 * How many spans per second one exporter thread sends to a collector.
 *
 *   bench_exporter URL [spans] [batch_size]
 *
 * Fills a queue with realistic server spans, then times one exporter
 * draining it to URL (a loopback collector), and the encoder alone.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <vaquero/vaquero.h>

#define set(s, f, v)  vq_span_set_str(s, f, v, strlen(v))

static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu(void)
{
    struct rusage  ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6
           + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void
make_span(vq_idgen_t *g, vq_span_t *s, size_t i)
{
    char  path[64];

    vq_span_init(s, VQ_SPAN_SERVER);
    vq_trace_id_generate(g, s->h.trace_id);
    vq_span_id_generate(g, s->h.span_id);
    s->h.flags = VQ_SPAN_SAMPLED;
    s->h.start_us = 1795755826000000LL + (int64_t) i * 37;
    s->h.end_us = s->h.start_us + 1234;
    s->h.status_code = 200;
    s->h.response_body_size = 5120;
    s->h.client_port = 51000;
    s->h.server_port = 8080;

    snprintf(path, sizeof(path), "/api/items/%zu", i);
    set(s, VQ_FIELD_NAME, "GET /api/");
    set(s, VQ_FIELD_AGENT_NAME, "/api/");
    set(s, VQ_FIELD_METHOD, "GET");
    set(s, VQ_FIELD_SCHEME, "http");
    set(s, VQ_FIELD_HOST, "api.example.com");
    set(s, VQ_FIELD_PATH, path);
    set(s, VQ_FIELD_QUERY, "page=2&sort=desc");
    set(s, VQ_FIELD_ROUTE, "/api/");
    set(s, VQ_FIELD_USER_AGENT,
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/120.0 Safari/537.36");
    set(s, VQ_FIELD_CONTENT_TYPE, "application/json");
    set(s, VQ_FIELD_CLIENT_ADDRESS, "203.0.113.7");
    set(s, VQ_FIELD_PROTOCOL_VERSION, "1.1");
    set(s, VQ_FIELD_REQUEST_ID, "6f1d2c3b4a5968778695a4b3c2d1e0f0");
    vq_span_add_attr(s, "user.id", 7, "u-123456", 8);
}

int
main(int argc, char **argv)
{
    vq_exporter_conf_t   conf;
    const vq_span_t    **ptrs;
    vq_exporter_t       *ex;
    vq_resource_t        res;
    vq_idgen_t          *g;
    vq_queue_t          *q;
    vq_stats_t           stats;
    vq_span_t           *spans;
    vq_buf_t             b;
    size_t               n, batch, i, size, bytes;
    double               t0, c0, t, c;
    char                 err[256];
    void                *mem;

    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [spans] [batch_size]\n", argv[0]);
        return 2;
    }

    n = argc > 2 ? strtoul(argv[2], NULL, 10) : 200000;
    batch = argc > 3 ? strtoul(argv[3], NULL, 10) : 100;

    g = vq_idgen_create();
    spans = malloc(n * sizeof(vq_span_t));
    ptrs = malloc(n * sizeof(vq_span_t *));
    for (i = 0; i < n; i++) {
        make_span(g, &spans[i], i);
        ptrs[i] = &spans[i];
    }

    /* the encoder alone */

    memset(&res, 0, sizeof(res));
    res.service_name = "nginx";
    res.project_id = "proj";
    res.environment = "production";
    res.hostname = "bench";
    res.sdk_version = VQ_VERSION;

    /*
     * The same batch over and over: the exporter encodes records it has
     * just copied out of the queue, so they are in cache; walking all of
     * them once would measure memory, not the encoder.
     */
    vq_buf_init(&b);
    bytes = 0;
    t0 = now();
    for (i = 0; i < n; i += batch) {
        vq_buf_reset(&b);
        vq_encode_vaquero_batch(&b, &res, ptrs, n - i < batch ? n - i : batch);
        bytes += b.len;
    }
    t = now() - t0;
    printf("encode: %zu spans in %.3f s: %.0f spans/s, %.2f us/span, "
           "%.0f bytes/span\n", n, t, n / t, t * 1e6 / n, (double) bytes / n);

    /* the exporter thread, queue to collector */

    size = n * (VQ_SPAN_RECORD_MAX + 64) + 4096;
    mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
               -1, 0);
    q = vq_queue_init(mem, size, VQ_SPAN_RECORD_MAX);
    for (i = 0; i < n; i++) {
        vq_queue_push(q, &spans[i], vq_span_size(&spans[i]));
    }

    memset(&stats, 0, sizeof(stats));
    memset(&conf, 0, sizeof(conf));
    conf.endpoint = argv[1];
    conf.api_key = "bench-key";
    conf.service_name = "nginx";
    conf.environment = "production";
    conf.user_agent = "ngx_vaquero_module/" VQ_VERSION;
    conf.batch_size = batch;
    conf.flush_interval_ms = 10000;
    conf.export_timeout_ms = 5000;

    vq_library_init();
    ex = vq_exporter_create(&conf, q, &stats, err, sizeof(err));
    if (ex == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    t0 = now();
    c0 = cpu();
    vq_exporter_start(ex);

    while (vq_stats_get(&stats.spans_exported) < n
           && vq_stats_get(&stats.export_failures) == 0)
    {
        usleep(1000);
    }

    t = now() - t0;
    c = cpu() - c0;
    vq_exporter_stop(ex, 1000);

    printf("export: %llu spans in %llu requests (batch %zu), %.3f s: "
           "%.0f spans/s, exporter CPU %.2f us/span, %llu failures\n",
           (unsigned long long) stats.spans_exported,
           (unsigned long long) stats.export_requests, batch, t,
           stats.spans_exported / t, c * 1e6 / n,
           (unsigned long long) stats.export_failures);

    vq_exporter_destroy(ex);
    vq_library_cleanup();

    return stats.export_failures ? 1 : 0;
}
