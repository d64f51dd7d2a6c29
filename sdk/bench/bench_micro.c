/*
 * What each piece of the request path costs, on one core: ns per
 * operation of what a worker does for a traced request (ids, trace
 * context, sampling, the span record, the queue), and the heap
 * allocations each makes (the budget is none).
 *
 *   bench_micro [seconds per round (0.2)] [rounds (5)]
 *
 * Rounds interleave the operations; the median round is reported, with
 * the spread (lowest and highest round) to show how quiet the machine
 * was.  Time is CLOCK_MONOTONIC around chunks of 1024 operations (the
 * queue: 512 pushes, then their 512 pops, each timed on its own).
 *
 * Allocations are counted when built with -DVQ_BENCH_COUNT_ALLOCS and
 * linked with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign
 * which routes every call the SDK's code makes to those functions
 * through a counter here (calls made inside libc or libcurl are not
 * seen; the SDK's request path calls nothing that allocates in them).
 * Without it, the column says "n/a".
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <vaquero/vaquero.h>

#define CHUNK      1024
#define QCHUNK     512
#define VARIANTS   64          /* distinct inputs, taken in turn */
#define MAX_ROUNDS 32

/* allocation counter (with -Wl,--wrap=...) */

static size_t  allocs;

#ifdef VQ_BENCH_COUNT_ALLOCS

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);

void *
__wrap_malloc(size_t n)
{
    allocs++;
    return __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t size)
{
    allocs++;
    return __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t n)
{
    allocs++;
    return __real_realloc(p, n);
}

int
__wrap_posix_memalign(void **p, size_t align, size_t n)
{
    allocs++;
    return __real_posix_memalign(p, align, n);
}

#endif

/* whether calls to malloc() do go through the counter */
static int
allocs_counted(void)
{
    void *(*volatile m)(size_t) = malloc;
    size_t  before = allocs;

    free(m(16));

    return allocs != before;
}


static volatile uint64_t  sink;

static double
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* inputs */

static vq_idgen_t     *gen;
static char            traceparents[VARIANTS][VQ_TRACEPARENT_LEN + 1];
static char            tracestates[VARIANTS][160];
static size_t          tracestate_len[VARIANTS];
static uint8_t         trace_ids[VARIANTS][VQ_TRACE_ID_SIZE];
static char            keys[VARIANTS][40];
static char            paths[VARIANTS][64];
static uint64_t        threshold;
static vq_span_t       span, big;
static vq_queue_t     *queue;
static char            popped[VQ_SPAN_RECORD_MAX];

#define set(s, f, v)  vq_span_set_str(s, f, v, strlen(v))

static void
setup(void)
{
    uint8_t  parent[VQ_SPAN_ID_SIZE];
    size_t   i, size;
    void    *mem;
    char     rv[VQ_SAMPLE_HEX_MAX];

    gen = vq_idgen_create();
    vq_sample_threshold(0.1, VQ_SAMPLE_PRECISION, &threshold);

    for (i = 0; i < VARIANTS; i++) {
        vq_trace_id_generate(gen, trace_ids[i]);
        vq_span_id_generate(gen, parent);
        vq_traceparent_format(trace_ids[i], parent, 0x03, traceparents[i]);

        /* what a traced client sends: ours (ot), and two vendors' */
        vq_sample_rv_format(vq_sample_trace_randomness(trace_ids[i]), rv);
        tracestate_len[i] = snprintf(tracestates[i], sizeof(tracestates[i]),
                                     "ot=th:e666;rv:%.14s,congo=t61rcWkgMzE,"
                                     "rojo=00f067aa0ba902b7", rv);

        snprintf(keys[i], sizeof(keys[i]), "user-%08zx-session-%04zx",
                 i * 2654435761u, i);
        snprintf(paths[i], sizeof(paths[i]), "/api/items/%zu", 1000 + i * 37);
    }

    /* a 1 KB record: a span filled to the brim */
    vq_span_init(&big, VQ_SPAN_SERVER);
    memset(big.data, 'x', sizeof(big.data));
    for (i = 0; i < VQ_FIELD_COUNT; i++) {
        if (i != VQ_FIELD_TRACESTATE) {
            vq_span_set_str(&big, (vq_span_field_t) i, big.data, 200);
        }
    }
    big.h.size = VQ_SPAN_RECORD_MAX;

    size = 1024 * (VQ_SPAN_RECORD_MAX + 64) + 4096;
    mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
               -1, 0);
    queue = vq_queue_init(mem, size, VQ_SPAN_RECORD_MAX);
    if (queue == NULL) {
        fprintf(stderr, "bench_micro: no queue\n");
        exit(1);
    }
}

/* the operations: each runs n of them and returns the ns they took */

static double
op_ids(size_t n)
{
    uint8_t  t[VQ_TRACE_ID_SIZE], s[VQ_SPAN_ID_SIZE];
    double   t0 = now_ns();
    size_t   i;

    for (i = 0; i < n; i++) {
        vq_trace_id_generate(gen, t);
        vq_span_id_generate(gen, s);
        sink += t[15] ^ s[7];
    }

    return now_ns() - t0;
}

static double
op_traceparent_parse(size_t n)
{
    vq_traceparent_t  tp;
    double            t0 = now_ns();
    size_t            i;

    for (i = 0; i < n; i++) {
        sink += vq_traceparent_parse(traceparents[i % VARIANTS],
                                     VQ_TRACEPARENT_LEN, &tp);
        sink += tp.flags;
    }

    return now_ns() - t0;
}

static double
op_traceparent_format(size_t n)
{
    char    out[VQ_TRACEPARENT_LEN];
    double  t0 = now_ns();
    size_t  i;

    for (i = 0; i < n; i++) {
        vq_traceparent_format(trace_ids[i % VARIANTS],
                              trace_ids[(i + 1) % VARIANTS], 0x01, out);
        sink += out[20];
    }

    return now_ns() - t0;
}

static double
op_tracestate_validate(size_t n)
{
    double  t0 = now_ns();
    size_t  i, k;

    for (i = 0; i < n; i++) {
        k = i % VARIANTS;
        sink += vq_tracestate_validate(tracestates[k], tracestate_len[k]);
    }

    return now_ns() - t0;
}

/* a root request: no traceparent, decision on our new trace id */
static double
op_sample_root(size_t n)
{
    vq_ot_t  ot;
    double   t0 = now_ns();
    size_t   i;
    char     value[VQ_OT_VALUE_MAX];

    for (i = 0; i < n; i++) {
        (void) vq_ot_parse(NULL, 0, &ot);
        sink += vq_sample_head(threshold, 0, trace_ids[i % VARIANTS], 0, &ot);
        sink += vq_ot_format(&ot, value, sizeof(value));
    }

    return now_ns() - t0;
}

/*
 * A continued trace with an ot entry, what the module does: find ot in
 * the tracestate, parse it, decide, format it, put it back in front.
 */
static double
op_sample_continued(size_t n)
{
    const char  *v;
    vq_ot_t      ot;
    double       t0 = now_ns();
    size_t       i, k, len;
    char         value[VQ_OT_VALUE_MAX], out[256];
    int          m;

    for (i = 0; i < n; i++) {
        k = i % VARIANTS;
        (void) vq_ot_parse(NULL, 0, &ot);
        if (vq_tracestate_get(tracestates[k], tracestate_len[k], "ot", 2,
                              &v, &len) == VQ_OK)
        {
            (void) vq_ot_parse(v, len, &ot);
        }
        sink += vq_sample_head(threshold,
                               VQ_SAMPLE_CONTINUED | VQ_SAMPLE_PARENT_SAMPLED
                               | VQ_SAMPLE_PARENT_RANDOM,
                               trace_ids[k], 0, &ot);
        m = vq_ot_format(&ot, value, sizeof(value));
        if (m > 0) {
            sink += vq_tracestate_put(tracestates[k], tracestate_len[k],
                                      "ot", 2, value, m, out, sizeof(out));
        }
    }

    return now_ns() - t0;
}

static double
op_sample_key(size_t n)
{
    double  t0 = now_ns();
    size_t  i;

    for (i = 0; i < n; i++) {
        sink += vq_sample_key_randomness(keys[i % VARIANTS], 26);
    }

    return now_ns() - t0;
}

/* the server span of a request, fields as the module sets them */
static double
op_span_server(size_t n)
{
    double  t0 = now_ns();
    size_t  i, k;

    for (i = 0; i < n; i++) {
        k = i % VARIANTS;
        vq_span_init(&span, VQ_SPAN_SERVER);
        memcpy(span.h.trace_id, trace_ids[k], VQ_TRACE_ID_SIZE);
        memcpy(span.h.span_id, trace_ids[(k + 1) % VARIANTS],
               VQ_SPAN_ID_SIZE);
        span.h.flags = VQ_SPAN_SAMPLED;
        span.h.start_us = 1795755826000000LL + (int64_t) i;
        span.h.end_us = span.h.start_us + 1484;
        span.h.status_code = 200;
        span.h.response_body_size = 5120;
        span.h.client_port = 39072;
        span.h.server_port = 80;
        set(&span, VQ_FIELD_METHOD, "GET");
        set(&span, VQ_FIELD_SCHEME, "http");
        set(&span, VQ_FIELD_HOST, "api.example.com");
        vq_span_set_str(&span, VQ_FIELD_PATH, paths[k], strlen(paths[k]));
        set(&span, VQ_FIELD_QUERY, "page=2&sort=desc");
        set(&span, VQ_FIELD_ROUTE, "/api/");
        set(&span, VQ_FIELD_USER_AGENT, "Mozilla/5.0 (X11; Linux x86_64) "
            "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
            "Safari/537.36");
        set(&span, VQ_FIELD_CONTENT_TYPE, "application/json");
        set(&span, VQ_FIELD_CLIENT_ADDRESS, "203.0.113.7");
        set(&span, VQ_FIELD_PROTOCOL_VERSION, "1.1");
        set(&span, VQ_FIELD_REQUEST_ID, "83ddb4179d67f87e64843f5c1e000001");
        vq_span_set_str(&span, VQ_FIELD_TRACESTATE, tracestates[k],
                        tracestate_len[k]);
        vq_span_add_attr(&span, "user.id", 7, keys[k], 26);
        sink += vq_span_size(&span);
    }

    return now_ns() - t0;
}

/* an upstream attempt's client span */
static double
op_span_client(size_t n)
{
    double  t0 = now_ns();
    size_t  i, k;

    for (i = 0; i < n; i++) {
        k = i % VARIANTS;
        vq_span_init(&span, VQ_SPAN_CLIENT);
        memcpy(span.h.trace_id, trace_ids[k], VQ_TRACE_ID_SIZE);
        vq_span_id_generate(gen, span.h.span_id);
        span.h.flags = VQ_SPAN_SAMPLED | VQ_SPAN_HAS_PARENT;
        span.h.status_code = 200;
        span.h.attempt = 1;
        set(&span, VQ_FIELD_METHOD, "GET");
        set(&span, VQ_FIELD_ROUTE, "backend");
        set(&span, VQ_FIELD_HOST, "127.0.0.1");
        sink += vq_span_size(&span);
    }

    return now_ns() - t0;
}

/* pushes of 1 KB records: n in chunks, each chunk popped untimed */
static double
op_queue_push(size_t n)
{
    double  t, total = 0;
    size_t  i, j, len;

    for (i = 0; i < n; i += QCHUNK) {
        t = now_ns();
        for (j = 0; j < QCHUNK; j++) {
            sink += vq_queue_push(queue, &big, VQ_SPAN_RECORD_MAX);
        }
        total += now_ns() - t;

        while (vq_queue_pop(queue, popped, sizeof(popped), &len) == VQ_OK) {
            /* void */
        }
    }

    return total;
}

static double
op_queue_pop(size_t n)
{
    double  t, total = 0;
    size_t  i, j, len;

    for (i = 0; i < n; i += QCHUNK) {
        for (j = 0; j < QCHUNK; j++) {
            vq_queue_push(queue, &big, VQ_SPAN_RECORD_MAX);
        }

        t = now_ns();
        for (j = 0; j < QCHUNK; j++) {
            sink += vq_queue_pop(queue, popped, sizeof(popped), &len);
            sink += len;
        }
        total += now_ns() - t;
    }

    return total;
}

/* the record the request path makes, of its own size (push + pop) */
static double
op_queue_span(size_t n)
{
    double  t0;
    size_t  i, len;

    op_span_server(1);
    t0 = now_ns();

    for (i = 0; i < n; i++) {
        sink += vq_queue_push(queue, &span, vq_span_size(&span));
        sink += vq_queue_pop(queue, popped, sizeof(popped), &len);
    }

    return now_ns() - t0;
}

static const struct {
    const char  *name;
    double     (*run)(size_t n);
    int          request_path;
} ops[] = {
    { "ids: trace id + span id", op_ids, 1 },
    { "traceparent parse", op_traceparent_parse, 1 },
    { "traceparent format", op_traceparent_format, 1 },
    { "tracestate validate (3 members)", op_tracestate_validate, 1 },
    { "sampling: root (ot, decide, th)", op_sample_root, 1 },
    { "sampling: continued ot tracestate", op_sample_continued, 1 },
    { "sampling key hash (26 bytes)", op_sample_key, 1 },
    { "span record: server, 13 fields", op_span_server, 1 },
    { "span record: upstream attempt", op_span_client, 1 },
    { "queue push, 1 KB record", op_queue_push, 1 },
    { "queue pop, 1 KB record", op_queue_pop, 0 },
    { "queue push + pop, server span", op_queue_span, 1 },
};

#define NOPS  (sizeof(ops) / sizeof(ops[0]))

static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
    double   ns[NOPS][MAX_ROUNDS], seconds, t, start;
    size_t   o, n, a[NOPS], done[NOPS];
    int      rounds, r, counted;

    seconds = argc > 1 ? atof(argv[1]) : 0.2;
    rounds = argc > 2 ? atoi(argv[2]) : 5;

    if (seconds <= 0 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: bench_micro [seconds per round] "
                "[rounds 1-%d]\n", MAX_ROUNDS);
        return 1;
    }

    setup();
    counted = allocs_counted();

    memset(a, 0, sizeof(a));
    memset(done, 0, sizeof(done));

    /* warm up: caches, branch predictors, the queue's pages */
    for (o = 0; o < NOPS; o++) {
        ops[o].run(16 * CHUNK);
    }

    for (r = 0; r < rounds; r++) {
        for (o = 0; o < NOPS; o++) {
            size_t  before = allocs;

            t = 0;
            n = 0;
            start = now_ns();
            do {
                t += ops[o].run(CHUNK);
                n += CHUNK;
            } while (now_ns() - start < seconds * 1e9);

            ns[o][r] = t / n;
            a[o] += allocs - before;
            done[o] += n;
        }
    }

    printf("request path pieces, %d rounds of %.2f s each, ns per operation "
           "(median round; lowest..highest)\n", rounds, seconds);
    printf("  %-36s %9s %19s %12s\n", "operation", "ns/op", "spread",
           "allocs/op");

    for (o = 0; o < NOPS; o++) {
        char  al[32];

        qsort(ns[o], rounds, sizeof(double), cmp_double);
        if (counted) {
            snprintf(al, sizeof(al), "%.3g", (double) a[o] / done[o]);
        } else {
            snprintf(al, sizeof(al), "n/a");
        }
        printf("  %-36s %9.1f %8.1f..%-9.1f %12s%s\n", ops[o].name,
               ns[o][rounds / 2], ns[o][0], ns[o][rounds - 1], al,
               counted && a[o] && ops[o].request_path ? "  <- not zero" : "");
    }

    if (!counted) {
        printf("(allocations not counted: build with -DVQ_BENCH_COUNT_ALLOCS "
               "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,"
               "--wrap=posix_memalign)\n");
    }

    return 0;
}
