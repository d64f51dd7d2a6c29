/*
 * Fuzz target: HTTP/1.x answers, as the HTTP transport reads them.
 *
 * Any bytes: vq_http_response_feed() must not read past what it is given,
 * must take all of it when it asks for more, and must come to the same
 * outcome whether the bytes come at once, in two pieces (cut where the
 * first input byte says) or a byte at a time; then a close
 * (vq_http_response_eof()) must end a body delimited by it and nothing
 * else.  A finished answer has a final status (200..999).
 *
 * Built with -fsanitize=fuzzer for libFuzzer, or with -DVQ_FUZZ_DRIVER as
 * a plain program that runs the target on generated answers (valid ones,
 * which must read to exactly their length, status and keep-alive; the same
 * with bytes changed or cut; and random bytes).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vaquero/vaquero.h>
#include "../src/http_response.h"

#define FUZZ_ASSERT(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                         \
        }                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    int     rc;
    size_t  used;
    int     status;
    int     final;
    int     keep_alive;
} outcome_t;

static vq_http_response_t  response;

/* what the driver counts, to know that it tested something */
static unsigned long  n_ok, n_again, n_error, n_eof_ok;

/* data in pieces of at most step bytes (0: at once), cut first at cut */
static void
read_answer(const uint8_t *data, size_t size, size_t cut, size_t step,
    outcome_t *o)
{
    vq_http_response_t  *r = &response;
    size_t               off, n, used;
    int                  rc;

    vq_http_response_init(r);

    off = 0;
    rc = VQ_HTTP_AGAIN;

    while (rc == VQ_HTTP_AGAIN && off < size) {
        n = size - off;

        if (cut > off) {
            n = cut - off;
        } else if (step && n > step) {
            n = step;
        }

        rc = vq_http_response_feed(r, (const char *) data + off, n, &used);

        FUZZ_ASSERT(used <= n);
        FUZZ_ASSERT(rc == VQ_OK || rc == VQ_HTTP_AGAIN || rc == VQ_ERROR);

        if (rc == VQ_HTTP_AGAIN) {
            FUZZ_ASSERT(used == n);
        }

        if (rc == VQ_ERROR) {
            FUZZ_ASSERT(r->error != NULL && r->error[0] != '\0');
        }

        off += used;
    }

    o->rc = rc;
    o->used = off;
    o->status = r->status;
    o->final = r->final;
    o->keep_alive = r->keep_alive;

    if (rc == VQ_OK) {
        FUZZ_ASSERT(r->final && r->status >= 200 && r->status <= 999);
        /* finished: more bytes are not its own */
        FUZZ_ASSERT(vq_http_response_feed(r, "x", 1, &used) == VQ_OK
                    && used == 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    outcome_t  whole, split, bytes;
    size_t     cut;
    int        rc;

    cut = size ? data[0] % (size + 1) : 0;

    read_answer(data, size, 0, 0, &whole);
    read_answer(data, size, cut, 0, &split);
    read_answer(data, size, 0, 1, &bytes);

    FUZZ_ASSERT(split.rc == whole.rc && bytes.rc == whole.rc);
    FUZZ_ASSERT(split.used == whole.used && bytes.used == whole.used);
    FUZZ_ASSERT(split.final == whole.final && bytes.final == whole.final);

    if (whole.rc == VQ_OK) {
        FUZZ_ASSERT(split.status == whole.status
                    && bytes.status == whole.status);
        FUZZ_ASSERT(split.keep_alive == whole.keep_alive
                    && bytes.keep_alive == whole.keep_alive);
        n_ok++;

    } else if (whole.rc == VQ_ERROR) {
        n_error++;

    } else {
        FUZZ_ASSERT(whole.used == size);
        n_again++;

        /* the close: over only for a body that it delimits */
        read_answer(data, size, 0, 0, &whole);
        rc = vq_http_response_eof(&response);
        FUZZ_ASSERT(rc == VQ_OK || rc == VQ_ERROR);

        if (rc == VQ_OK) {
            FUZZ_ASSERT(response.until_close && !response.keep_alive);
            n_eof_ok++;
        } else {
            FUZZ_ASSERT(response.error != NULL);
        }
    }

    return 0;
}

#ifdef VQ_FUZZ_DRIVER

#define MAX_INPUT  65536

static unsigned
pick(unsigned *seed, unsigned n)
{
    return (unsigned) rand_r(seed) % n;
}

typedef struct {
    size_t  len;            /* the answer's length, past it: the next */
    int     status;
    int     keep_alive;
    int     until_close;
} expect_t;

static size_t
add(uint8_t *b, size_t n, const char *s)
{
    size_t  len = strlen(s);

    if (n + len < MAX_INPUT - 64) {
        memcpy(b + n, s, len);
        n += len;
    }

    return n;
}

/* A valid answer, maybe after interim ones, and what it must read as. */
static size_t
gen_answer(uint8_t *b, unsigned *seed, expect_t *e)
{
    static const int   statuses[] = { 200, 202, 204, 304, 400, 408, 429,
                                      500, 503, 301, 302, 200, 200 };
    static const char *const  eols[] = { "\r\n", "\n" };
    const char        *eol;
    char               line[256];
    size_t             n, body, chunk;
    int                http10, framing, close, keep, i, k, nobody;

    n = 0;
    eol = eols[pick(seed, 4) == 0];

    while (pick(seed, 5) == 0) {
        snprintf(line, sizeof(line), "HTTP/1.1 1%02u Interim%s%s",
                 pick(seed, 2) ? 0 : 3, eol,
                 pick(seed, 2) ? "" : "Link: </x>\r\n");
        n = add(b, n, line);
        n = add(b, n, eol);
    }

    http10 = pick(seed, 6) == 0;
    e->status = statuses[pick(seed, sizeof(statuses) / sizeof(statuses[0]))];
    nobody = e->status == 204 || e->status == 304;

    snprintf(line, sizeof(line), "HTTP/1.%d %d%s%s", http10 ? 0 : 1,
             e->status, pick(seed, 3) ? " Reason phrase" : "", eol);
    n = add(b, n, line);

    close = pick(seed, 5) == 0;
    keep = pick(seed, 3) == 0;
    if (close) {
        n = add(b, n, "Connection: close");
        n = add(b, n, eol);
    }
    if (keep) {
        n = add(b, n, "connection: Keep-Alive");
        n = add(b, n, eol);
    }

    for (i = pick(seed, 4); i > 0; i--) {
        switch (pick(seed, 4)) {
        case 0:
            snprintf(line, sizeof(line), "Retry-After: %u%s", pick(seed, 99),
                     eol);
            break;
        case 1:
            snprintf(line, sizeof(line), "Location:  /v%u/traces %s",
                     pick(seed, 9), eol);
            break;
        case 2:
            snprintf(line, sizeof(line), "Content-Type: application/json%s",
                     eol);
            break;
        default:
            snprintf(line, sizeof(line), "X-Long: %0*u%s",
                     (int) pick(seed, 200), 7, eol);
        }
        n = add(b, n, line);
    }

    body = pick(seed, 4) == 0 ? pick(seed, 3000) : pick(seed, 40);
    framing = pick(seed, 3);     /* 0: length, 1: chunked, 2: the close */

    if (framing == 0) {
        snprintf(line, sizeof(line), "Content-Length: %zu%s", body, eol);
        n = add(b, n, line);
    } else if (framing == 1) {
        n = add(b, n, pick(seed, 2) ? "Transfer-Encoding: chunked"
                                    : "Transfer-Encoding: gzip, CHUNKED");
        n = add(b, n, eol);
    }

    n = add(b, n, eol);

    e->until_close = 0;

    if (nobody) {
        e->keep_alive = http10 ? keep && !close : !close;

    } else if (framing == 0) {
        for (k = 0; (size_t) k < body; k++) {
            b[n++] = (uint8_t) rand_r(seed);
        }
        e->keep_alive = http10 ? keep && !close : !close;

    } else if (framing == 1) {
        while (body > 0) {
            chunk = 1 + pick(seed, (unsigned) body);
            snprintf(line, sizeof(line), "%zx%s\r\n", chunk,
                     pick(seed, 4) ? "" : ";ext=1");
            n = add(b, n, line);
            for (k = 0; (size_t) k < chunk; k++) {
                b[n++] = (uint8_t) rand_r(seed);
            }
            n = add(b, n, "\r\n");
            body -= chunk;
        }
        n = add(b, n, "0\r\n");
        if (pick(seed, 4) == 0) {
            n = add(b, n, "Trailer: 1\r\n");
        }
        n = add(b, n, "\r\n");
        /* HTTP/1.0 has no Transfer-Encoding: read, not trusted further */
        e->keep_alive = http10 ? 0 : !close;

    } else {
        for (k = 0; (size_t) k < body; k++) {
            b[n++] = (uint8_t) rand_r(seed);
        }
        e->keep_alive = 0;
        e->until_close = 1;
    }

    e->len = n;

    /* the start of a next answer, which is not this one's */
    if (!e->until_close && pick(seed, 3) == 0) {
        n = add(b, n, "HTTP/1.1 200 OK\r\n");
    }

    return n;
}

int
main(void)
{
    unsigned   seed, i, j, flips, runs, checked;
    uint8_t   *buf, *in;
    size_t     len;
    expect_t   e;
    outcome_t  o;
    int        valid;

    seed = 20261206;
    runs = 100000;
    checked = 0;
    buf = malloc(MAX_INPUT);

    for (i = 0; i < runs; i++) {
        valid = 0;

        if (i % 4 == 3) {
            len = pick(&seed, 120);
            for (j = 0; j < len; j++) {
                buf[j] = (uint8_t) rand_r(&seed);
            }

        } else {
            len = gen_answer(buf, &seed, &e);
            valid = 1;

            if (pick(&seed, 2) == 0) {
                valid = 0;

                if (pick(&seed, 2) && len > 0) {
                    len = pick(&seed, (unsigned) len);

                } else {
                    flips = 1 + pick(&seed, 3);
                    for (j = 0; j < flips && len > 0; j++) {
                        buf[pick(&seed, (unsigned) len)] = pick(&seed, 2)
                            ? (uint8_t) rand_r(&seed)
                            : (uint8_t) "\r\n :;0aF\t"[pick(&seed, 9)];
                    }
                }
            }
        }

        /* a valid answer reads to exactly its end, as generated */
        if (valid) {
            read_answer(buf, len, 0, 0, &o);

            if (e.until_close) {
                FUZZ_ASSERT(o.rc == VQ_HTTP_AGAIN && o.used == len);
                FUZZ_ASSERT(vq_http_response_eof(&response) == VQ_OK);
            } else {
                FUZZ_ASSERT(o.rc == VQ_OK && o.used == e.len);
            }

            FUZZ_ASSERT(o.status == e.status);
            FUZZ_ASSERT(o.keep_alive == e.keep_alive);
            checked++;
        }

        /* exactly len bytes, so that ASan sees a read past them */
        in = malloc(len ? len : 1);
        memcpy(in, buf, len);
        LLVMFuzzerTestOneInput(in, len);
        free(in);
    }

    free(buf);

    printf("fuzz_http_response: %u inputs (%u valid answers checked): %lu "
           "read whole, %lu not over (%lu over at the close), %lu refused\n",
           runs, checked, n_ok, n_again, n_eof_ok, n_error);

    /* a driver that never gets past the status line would test nothing */
    i = checked > 30000 && n_ok > 25000 && n_again > 40000 && n_eof_ok > 10000
        && n_error > 5000;
    printf("fuzz_http_response: %u passed, %u failed\n", i, !i);

    return i ? 0 : 1;
}

#endif
