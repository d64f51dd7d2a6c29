/*
 * Consistent probability sampling: thresholds and their th encoding,
 * randomness of trace ids and keys, the decision, the ot tracestate
 * entry, the head decision, and the statistics of all of it.
 *
 * Expected values come from the OpenTelemetry specification
 * (specification/trace/tracestate-probability-sampling.md, "probability-
 * sampling" below; tracestate-handling.md; sdk.md), from the test cases
 * of the Collector's pkg/sampling (oteltracestate_test.go, "pkg/sampling"
 * below), or are worked out by hand in the comment next to them.  Parsers
 * get every input in a buffer of exactly its length, so that under ASan a
 * read past it fails the test.  The statistical tests use fixed inputs:
 * they pass or fail the same way on every run.
 *
 * "test_sampler bench" also prints the cost of each call.
 */

#include <stdlib.h>
#include <time.h>

#include <vaquero/vaquero.h>
#include <vaquero/sampler.h>
#include "check.h"

static void *
xmalloc(size_t size)
{
    void  *p;

    p = malloc(size ? size : 1);
    if (p == NULL) {
        abort();
    }

    return p;
}

/* A copy in a buffer of exactly len bytes, no NUL after it. */
static char *
exact(const char *s, size_t len)
{
    char  *p;

    p = xmalloc(len);
    memcpy(p, s, len);

    return p;
}

static char *
repeat(char c, size_t n, const char *prefix)
{
    size_t   plen;
    char    *s;

    plen = strlen(prefix);
    s = xmalloc(plen + n + 1);
    memcpy(s, prefix, plen);
    memset(s + plen, c, n);
    s[plen + n] = '\0';

    return s;
}

static void
hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    size_t    i;
    unsigned  hi, lo;

    for (i = 0; i < n; i++) {
        hi = hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10;
        lo = hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0'
                                   : hex[2 * i + 1] - 'a' + 10;
        out[i] = (uint8_t) (hi << 4 | lo);
    }
}

/* ---- thresholds ----------------------------------------------------- */

static char  th_buf[VQ_SAMPLE_HEX_MAX + 1];

/* the th of p, or "NEVER" or "EINVAL" */
static const char *
th_of(double p, unsigned precision)
{
    uint64_t  t;
    size_t    n;

    if (vq_sample_threshold(p, precision, &t) != VQ_OK) {
        return "EINVAL";
    }

    if (t == VQ_SAMPLE_NEVER) {
        return "NEVER";
    }

    n = vq_sample_th_format(t, th_buf);
    th_buf[n] = '\0';

    return th_buf;
}

/*
 * probability-sampling "Converting floating-point probability to
 * threshold value": its table for 1-in-N sampling at precision 3, 4, 5.
 */
static void
test_threshold_spec_table(void)
{
    static const struct {
        unsigned     n;
        const char  *th[3];
    } table[] = {
        { 1,       { "0", "0", "0" } },
        { 2,       { "8", "8", "8" } },
        { 3,       { "aab", "aaab", "aaaab" } },
        { 4,       { "c", "c", "c" } },
        { 5,       { "ccd", "cccd", "ccccd" } },
        { 8,       { "e", "e", "e" } },
        { 10,      { "e66", "e666", "e6666" } },
        { 16,      { "f", "f", "f" } },
        { 100,     { "fd71", "fd70a", "fd70a4" } },
        { 1000,    { "ffbe7", "ffbe77", "ffbe76d" } },
        { 10000,   { "fff972", "fff9724", "fff97247" } },
        { 100000,  { "ffff584", "ffff583a", "ffff583a5" } },
        { 1000000, { "ffffef4", "ffffef39", "ffffef391" } },
    };
    size_t    i;
    unsigned  prec;

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        for (prec = 3; prec <= 5; prec++) {
            CHECK_STR(th_of(1.0 / table[i].n, prec), table[i].th[prec - 3]);
        }
    }
}

static void
test_threshold_values(void)
{
    uint64_t  t;
    unsigned  prec, k;
    char      want[2];

    /* "if the sampling probability is 100% ... the rejection threshold is 0" */
    CHECK_INT(vq_sample_threshold(1.0, 4, &t), VQ_OK);
    CHECK_INT(t, 0);
    CHECK_STR(th_of(1.0, 4), "0");

    /* p = k/16 is exact at any precision: one digit, 16 - k */
    for (k = 1; k < 16; k++) {
        want[0] = "0123456789abcdef"[16 - k];
        want[1] = '\0';
        for (prec = 1; prec <= 14; prec++) {
            CHECK_STR(th_of(k / 16.0, prec), want);
        }
    }

    CHECK_STR(th_of(0.5, VQ_SAMPLE_PRECISION), "8");
    CHECK_STR(th_of(0.25, VQ_SAMPLE_PRECISION), "c");
    CHECK_STR(th_of(0.1, VQ_SAMPLE_PRECISION), "e666");
    CHECK_STR(th_of(0.01, VQ_SAMPLE_PRECISION), "fd70a");
    CHECK_STR(th_of(1.0 / 3, VQ_SAMPLE_PRECISION), "aaab");

    /* probability-sampling "Rejection Threshold": 1% with 5 digits */
    CHECK_INT(vq_sample_threshold(0.01, 5, &t), VQ_OK);
    CHECK(t == 0xfd70a400000000ULL);

    /*
     * The smallest probability, 2^-56: 13 leading f's raise any precision
     * to all 14 digits, and T = 2^56 - 1 samples one R in 2^56.  (The
     * spec's double-based example stops at 12 digits, "ffffffffffff",
     * which would be 2^-48.)
     */
    for (prec = 1; prec <= 14; prec++) {
        CHECK_INT(vq_sample_threshold(0x1p-56, prec, &t), VQ_OK);
        CHECK(t == VQ_SAMPLE_R_MAX);
    }
    CHECK_STR(th_of(0x1p-56, 4), "ffffffffffffff");

    /* "never" sampling: above every R, and no th */
    CHECK_INT(vq_sample_threshold(0.0, 4, &t), VQ_OK);
    CHECK(t == VQ_SAMPLE_NEVER);
    CHECK_STR(th_of(0.0, 4), "NEVER");
    CHECK_STR(th_of(-0.0, 4), "NEVER");

    /*
     * Full precision (14 digits): 0.1 is 0x1.999999999999ap-4, so
     * p * 2^56 = 0x1999999999999a exactly, T = 2^56 - that.
     */
    CHECK_INT(vq_sample_threshold(0.1, 14, &t), VQ_OK);
    CHECK(t == 0xe6666666666666ULL);
    /* pkg/sampling TestUpdateTValueWithSampling: 0x555p-12 -> "aab" */
    CHECK_STR(th_of(0x555p-12, 14), "aab");
    CHECK_STR(th_of(0x2p-4, 14), "e");
    CHECK_STR(th_of(0x1p-4, 14), "f");

    /*
     * "there is not a symmetrical adjustment made for values near unit
     * probability": 1 - 2^-53 leaves (1 - p) * 2^56 = 8, which 4 digits
     * round to 0 and 14 digits keep.
     */
    CHECK_STR(th_of(1.0 - 0x1p-53, 4), "0");
    CHECK_STR(th_of(1.0 - 0x1p-53, 14), "00000000000008");

    /* rounding is half up on the rejection value: 0x0.8008 -> 8 or 801 */
    CHECK_STR(th_of(1.0 - 0x8008p-16, 1), "8");
    CHECK_STR(th_of(1.0 - 0x8008p-16, 3), "801");
    CHECK_STR(th_of(1.0 - 0x8018p-16, 3), "802");
    CHECK_STR(th_of(1.0 - 0x80081p-20, 3), "801");

    /* outside the spec's range, and bad arguments */
    CHECK_STR(th_of(-0.1, 4), "EINVAL");
    CHECK_STR(th_of(1.0000000000000002, 4), "EINVAL");
    CHECK_STR(th_of(__builtin_nan(""), 4), "EINVAL");
    CHECK_STR(th_of(__builtin_inf(), 4), "EINVAL");
    CHECK_STR(th_of(-__builtin_inf(), 4), "EINVAL");
    CHECK_STR(th_of(0x1p-57, 4), "EINVAL");
    CHECK_STR(th_of(0x1.fffffffffffffp-57, 4), "EINVAL");
    CHECK_STR(th_of(4.9e-324, 4), "EINVAL");
    CHECK_STR(th_of(1e-300, 4), "EINVAL");
    CHECK_STR(th_of(0.5, 0), "EINVAL");
    CHECK_STR(th_of(0.5, 15), "EINVAL");
    CHECK_INT(vq_sample_threshold(0.5, 4, NULL), VQ_EINVAL);
}

/*
 * T falls as p rises, stays below 2^56, and the probability it gives is p
 * within half of the last digit kept: 16^-precision / 2 at most.
 */
static void
test_threshold_sweep(void)
{
    uint64_t  t, prev;
    unsigned  prec, i, j, wrong;
    double    p, q, err, bound;

    wrong = 0;

    for (prec = 1; prec <= 14; prec++) {
        bound = 0.5;
        for (j = 0; j < prec; j++) {
            bound /= 16;
        }
        bound += 1e-15;                 /* q and p as doubles */
        prev = VQ_SAMPLE_NEVER;

        for (i = 1; i <= 100000; i++) {
            p = i / 100000.0;

            if (vq_sample_threshold(p, prec, &t) != VQ_OK
                || t >= VQ_SAMPLE_NEVER || t > prev)
            {
                wrong++;
            }

            q = (double) (VQ_SAMPLE_NEVER - t) / (double) VQ_SAMPLE_NEVER;
            err = q > p ? q - p : p - q;
            if (err > bound) {
                wrong++;
            }

            prev = t;
        }
    }

    CHECK_INT(wrong, 0);
}

static void
test_th_encoding(void)
{
    static const struct {
        uint64_t     t;
        const char  *th;
    } cases[] = {
        { 0, "0" },
        { 0x80000000000000ULL, "8" },
        { 0xc0000000000000ULL, "c" },
        { 0xfd70a400000000ULL, "fd70a4" },
        { 0x10000000000000ULL, "1" },
        { 0x08000000000000ULL, "08" },
        { 0x00000000000001ULL, "00000000000001" },
        { 0xffffffffffffffULL, "ffffffffffffff" },
        { 0x6e6d1a75832a2fULL, "6e6d1a75832a2f" },
    };
    char      *out, *in;
    uint64_t   t;
    size_t     i, n;
    unsigned   seed, wrong;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* 14 bytes exactly: ASan sees a write past them */
        out = xmalloc(VQ_SAMPLE_HEX_MAX);
        n = vq_sample_th_format(cases[i].t, out);
        CHECK_INT(n, strlen(cases[i].th));
        CHECK(n == strlen(cases[i].th) && memcmp(out, cases[i].th, n) == 0);
        free(out);

        in = exact(cases[i].th, strlen(cases[i].th));
        t = 42;
        CHECK_INT(vq_sample_th_parse(in, strlen(cases[i].th), &t), VQ_OK);
        CHECK(t == cases[i].t);
        free(in);
    }

    /* no encoding for "never" */
    out = xmalloc(VQ_SAMPLE_HEX_MAX);
    CHECK_INT(vq_sample_th_format(VQ_SAMPLE_NEVER, out), 0);
    CHECK_INT(vq_sample_th_format(UINT64_MAX, out), 0);
    free(out);

    /* "extend the value with trailing zeros to make 14 digits" */
    CHECK_INT(vq_sample_th_parse("1000", 4, &t), VQ_OK);   /* pkg/sampling */
    CHECK(t == 0x10000000000000ULL);
    CHECK_INT(vq_sample_th_parse("00000000000000", 14, &t), VQ_OK);
    CHECK(t == 0);
    CHECK_INT(vq_sample_th_parse("abcdefabcdefab", 14, &t), VQ_OK);
    CHECK(t == 0xabcdefabcdefabULL);

    /* "between 1 and 14 lowercase hexadecimal digits": nothing else */
    t = 42;
    CHECK_INT(vq_sample_th_parse("", 0, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("100000000000000", 15, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("ffffffffffffffff", 16, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("C", 1, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("fD70a4", 6, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("0x1p+3", 6, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("$", 1, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("14.5", 4, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("-1", 2, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse(" 8", 2, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("8 ", 2, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("g", 1, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("8\0", 2, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse(NULL, 0, &t), VQ_EINVAL);
    CHECK_INT(vq_sample_th_parse("8", 1, NULL), VQ_EINVAL);
    CHECK(t == 42);                             /* untouched on error */

    /* only len bytes are read */
    CHECK_INT(vq_sample_th_parse("8x", 1, &t), VQ_OK);
    CHECK(t == 0x80000000000000ULL);

    /* parse(format(T)) == T */
    seed = 56;
    wrong = 0;
    out = xmalloc(VQ_SAMPLE_HEX_MAX);

    for (i = 0; i < 100000; i++) {
        t = (((uint64_t) rand_r(&seed) << 31) ^ (uint64_t) rand_r(&seed)
             ^ ((uint64_t) rand_r(&seed) << 45)) & VQ_SAMPLE_R_MAX;
        if (i % 3 == 0) {
            t &= ~((((uint64_t) 1) << (4 * (i % 14))) - 1);
        }
        n = vq_sample_th_format(t, out);
        if (n < 1 || n > 14 || (n > 1 && out[n - 1] == '0')
            || vq_sample_th_parse(out, n, &t) != VQ_OK)
        {
            wrong++;
        }
    }

    free(out);
    CHECK_INT(wrong, 0);
}

static void
test_rv_encoding(void)
{
    uint64_t   rv;
    char       out[VQ_SAMPLE_HEX_MAX + 1];
    char      *in;

    /* tracestate-handling "Explicit randomness value rv" and sdk examples */
    in = exact("6e6d1a75832a2f", 14);
    CHECK_INT(vq_sample_rv_parse(in, 14, &rv), VQ_OK);
    CHECK(rv == 0x6e6d1a75832a2fULL);
    free(in);

    CHECK_INT(vq_sample_rv_parse("7479cfb506891d", 14, &rv), VQ_OK);
    CHECK(rv == 0x7479cfb506891dULL);
    CHECK_INT(vq_sample_rv_parse("ffffffffffffff", 14, &rv), VQ_OK);
    CHECK(rv == VQ_SAMPLE_R_MAX);
    CHECK_INT(vq_sample_rv_parse("00000000000000", 14, &rv), VQ_OK);
    CHECK(rv == 0);

    /* "exactly 14 lower-case hexadecimal digits" */
    rv = 42;
    CHECK_INT(vq_sample_rv_parse("3", 1, &rv), VQ_EINVAL);   /* pkg/sampling */
    CHECK_INT(vq_sample_rv_parse("6e6d1a75832a2", 13, &rv), VQ_EINVAL);
    CHECK_INT(vq_sample_rv_parse("100000000000000", 15, &rv), VQ_EINVAL);
    CHECK_INT(vq_sample_rv_parse("6E6D1A75832A2F", 14, &rv), VQ_EINVAL);
    CHECK_INT(vq_sample_rv_parse("6e6d1a75832a2g", 14, &rv), VQ_EINVAL);
    CHECK_INT(vq_sample_rv_parse(" 6e6d1a75832a2", 14, &rv), VQ_EINVAL);
    CHECK_INT(vq_sample_rv_parse("", 0, &rv), VQ_EINVAL);
    CHECK_INT(vq_sample_rv_parse(NULL, 14, &rv), VQ_EINVAL);
    CHECK(rv == 42);

    memset(out, '#', sizeof(out));
    vq_sample_rv_format(0x6e6d1a75832a2fULL, out);
    CHECK(memcmp(out, "6e6d1a75832a2f#", 15) == 0);
    vq_sample_rv_format(3, out);
    CHECK(memcmp(out, "00000000000003", 14) == 0);
}

/* ---- randomness and the decision ------------------------------------ */

static void
test_trace_randomness(void)
{
    uint8_t  id[16];

    /* W3C example id: bytes 9..15 are ce 92 9d 0e 0e 47 36 */
    hex_to_bytes("4bf92f3577b34da6a3ce929d0e0e4736", id, 16);
    CHECK(vq_sample_trace_randomness(id) == 0xce929d0e0e4736ULL);

    /* the first 9 bytes take no part */
    memset(id, 0xff, 9);
    CHECK(vq_sample_trace_randomness(id) == 0xce929d0e0e4736ULL);

    memset(id, 0xff, 16);
    CHECK(vq_sample_trace_randomness(id) == VQ_SAMPLE_R_MAX);

    hex_to_bytes("00000000000000000000000000000001", id, 16);
    CHECK(vq_sample_trace_randomness(id) == 1);

    /*
     * tracestate-handling: rv 6e6d1a75832a2f decides "the same as for a
     * hexadecimal TraceID ending in 6e6d1a75832a2f"
     */
    hex_to_bytes("0123456789abcdef706e6d1a75832a2f", id, 16);
    CHECK(vq_sample_trace_randomness(id) == 0x6e6d1a75832a2fULL);
}

static void
test_decide(void)
{
    uint64_t  t, r;

    /* "If rv >= th, keep the span, else drop the span": R = T-1, T, T+1 */
    t = 0x80000000000000ULL;
    CHECK_INT(vq_sample_decide(t - 1, t), 0);
    CHECK_INT(vq_sample_decide(t, t), 1);
    CHECK_INT(vq_sample_decide(t + 1, t), 1);

    t = 0xfd70a400000000ULL;
    CHECK_INT(vq_sample_decide(t - 1, t), 0);
    CHECK_INT(vq_sample_decide(t, t), 1);
    CHECK_INT(vq_sample_decide(t + 1, t), 1);

    /* th:0 keeps every R, "never" none, 2^-56 only the largest */
    CHECK_INT(vq_sample_decide(0, 0), 1);
    CHECK_INT(vq_sample_decide(VQ_SAMPLE_R_MAX, VQ_SAMPLE_NEVER), 0);
    CHECK_INT(vq_sample_decide(0, VQ_SAMPLE_NEVER), 0);
    CHECK_INT(vq_sample_decide(VQ_SAMPLE_R_MAX, VQ_SAMPLE_R_MAX), 1);
    CHECK_INT(vq_sample_decide(VQ_SAMPLE_R_MAX - 1, VQ_SAMPLE_R_MAX), 0);

    /*
     * tracestate-handling: rv 6e6d1a75832a2f is sampled at thresholds
     * 6e6d1a75832a2f through 0, and not above.
     */
    r = 0x6e6d1a75832a2fULL;
    CHECK_INT(vq_sample_decide(r, 0x6e6d1a75832a2fULL), 1);
    CHECK_INT(vq_sample_decide(r, 0), 1);
    CHECK_INT(vq_sample_decide(r, 0x6e6d1a75832a30ULL), 0);
    CHECK_INT(vq_sample_decide(r, 0x70000000000000ULL), 0);
}

/* XXH64 with seed 0 (checked against libxxhash 0.8.1), then >> 8 */
static void
test_key_randomness(void)
{
    static const struct {
        const char  *key;
        uint64_t     r;
    } vectors[] = {
        { "", 0xef46db3751d8e9ULL },
        { "a", 0xd24ec4f1a98c6eULL },
        { "abc", 0x44bc2cf5ad7709ULL },
        { "user-0", 0x7c1b2034a06845ULL },
        { "user-1", 0xa173746b114c6bULL },
        { "user-12345", 0x64797fca50bfc1ULL },
        { "0123456789abcdef0123456789abcdef", 0x642a94958e71e6ULL },
        { "The quick brown fox jumps over the lazy dog", 0x0b242d361fda71ULL },
    };
    size_t   i, len;
    char    *k;

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        len = strlen(vectors[i].key);
        k = exact(vectors[i].key, len);
        CHECK(vq_sample_key_randomness(k, len) == vectors[i].r);
        free(k);
    }

    /* no key bytes: a NULL pointer is fine */
    CHECK(vq_sample_key_randomness(NULL, 0) == 0xef46db3751d8e9ULL);

    /* only len bytes count */
    CHECK(vq_sample_key_randomness("abcdef", 3) == 0x44bc2cf5ad7709ULL);
}

/* ---- the ot entry --------------------------------------------------- */

/*
 * ot points into the copy, so it lives until the next call: an ot parsed
 * earlier must not be used after that (ASan would see it).
 */
static char  *ot_copy;

static int
ot_parse_str(const char *s, vq_ot_t *ot)
{
    free(ot_copy);
    ot_copy = exact(s, strlen(s));

    return vq_ot_parse(ot_copy, strlen(s), ot);
}

#define OT_VALID(s)                                                          \
    do {                                                                     \
        vq_ot_t  ot_;                                                        \
        CHECK_INT(ot_parse_str(s, &ot_), VQ_OK);                             \
    } while (0)

#define OT_INVALID(s)                                                        \
    do {                                                                     \
        vq_ot_t  ot_;                                                        \
        CHECK_INT(ot_parse_str(s, &ot_), VQ_EINVAL);                         \
    } while (0)

static char  fmt_out[VQ_OT_VALUE_MAX + 1];

/* the formatted value as a string, "EFULL" or "EINVAL" */
static const char *
ot_fmt(const vq_ot_t *ot, size_t out_size)
{
    char  *out;
    int    rc;

    out = xmalloc(out_size);
    rc = vq_ot_format(ot, out, out_size);

    if (rc == VQ_EFULL) {
        strcpy(fmt_out, "EFULL");
    } else if (rc < 0) {
        strcpy(fmt_out, "EINVAL");
    } else {
        memcpy(fmt_out, out, (size_t) rc);
        fmt_out[rc] = '\0';
    }

    free(out);

    return fmt_out;
}

/* parse, format unchanged */
static const char *
ot_roundtrip(const char *s)
{
    vq_ot_t  ot;

    if (ot_parse_str(s, &ot) != VQ_OK) {
        return "EINVAL";
    }

    return ot_fmt(&ot, VQ_OT_VALUE_MAX);
}

static void
test_ot_parse(void)
{
    vq_ot_t   ot, before;
    char     *s;

    /* tracestate-handling examples */
    OT_VALID("p:8;r:62");
    OT_VALID("foo:bar;k1:13");
    OT_VALID("p:8;k1:7;r:62");
    OT_VALID("p:8;r:62;k1:13");

    CHECK_INT(ot_parse_str("th:0", &ot), VQ_OK);            /* "ot=th:0" */
    CHECK_INT(ot.flags, VQ_OT_TH);
    CHECK(ot.th == 0);

    CHECK_INT(ot_parse_str("rv:6e6d1a75832a2f", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_RV);
    CHECK(ot.rv == 0x6e6d1a75832a2fULL);

    CHECK_INT(ot_parse_str("th:c;rv:3f5a8b9c0d1e2f;foo:bar", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH | VQ_OT_RV);
    CHECK(ot.th == 0xc0000000000000ULL);
    CHECK(ot.rv == 0x3f5a8b9c0d1e2fULL);

    /* pkg/sampling TestParseOpenTelemetryTraceState, valid */
    CHECK_INT(ot_parse_str("th:2", &ot), VQ_OK);
    CHECK(ot.th == 0x20000000000000ULL);
    CHECK_INT(ot_parse_str("th:ab", &ot), VQ_OK);
    CHECK(ot.th == 0xab000000000000ULL);
    CHECK_INT(ot_parse_str("th:abcdefabcdefab", &ot), VQ_OK);
    CHECK(ot.th == 0xabcdefabcdefabULL);
    CHECK_INT(ot_parse_str("th:1000", &ot), VQ_OK);
    CHECK(ot.th == 0x10000000000000ULL);
    CHECK_INT(ot_parse_str("e100:1", &ot), VQ_OK);
    CHECK_INT(ot.flags, 0);
    OT_VALID("e1:1;e2:2");
    CHECK_INT(ot_parse_str("th:2;extra:stuff", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH);
    CHECK_INT(ot_parse_str("extra:stuff;th:2", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH);
    OT_VALID("e100:100;th:1;e101:101");
    OT_VALID("th:1;e100:100;e101:101");
    OT_VALID("e100:100;e101:101;th:1");
    OT_VALID("x:1;u:V");
    CHECK_INT(ot_parse_str("rv:22222222222222;extra:stuff", &ot), VQ_OK);
    CHECK(ot.rv == 0x22222222222222ULL);
    CHECK_INT(ot_parse_str("extra:stuff;rv:22222222222222", &ot), VQ_OK);
    CHECK(ot.rv == 0x22222222222222ULL);
    CHECK_INT(ot_parse_str("rv:ffffffffffffff", &ot), VQ_OK);
    CHECK(ot.rv == VQ_SAMPLE_R_MAX);
    OT_VALID("x:");                                 /* value = *(chr) */
    OT_VALID("x:0X1FFF;y:.-_-.;z:");
    CHECK_INT(ot_parse_str("x1y2z3:1-2-3;y1:y_1;xy:-;th:50", &ot), VQ_OK);
    CHECK(ot.th == 0x50000000000000ULL);

    /* pkg/sampling, invalid lists */
    OT_INVALID("th:1;");
    OT_INVALID("th:1=p:2");
    OT_INVALID("th:1;p:2=s:3");
    OT_INVALID(":1;p:2=s:3");
    OT_INVALID(":;p:2=s:3");
    OT_INVALID(":;:");
    OT_INVALID(":");
    OT_INVALID("th:;p=1");
    OT_INVALID("th:$");
    OT_INVALID("th:0x1p+3");
    OT_INVALID("1:1;u:V");
    OT_INVALID("X:1;u:V");
    OT_INVALID("x:1;");

    /* key = lcalpha *(lcalpha / DIGIT); chr = A-Z a-z 0-9 . _ - */
    OT_INVALID("Th:8");
    OT_INVALID("t_h:8");
    OT_INVALID("t-h:8");
    OT_INVALID("x");
    OT_INVALID("x;y:1");
    OT_INVALID(";x:1");
    OT_INVALID("x:1;;y:2");
    OT_INVALID("x:1 ");
    OT_INVALID(" x:1");
    OT_INVALID("x :1");
    OT_INVALID("x: 1");
    OT_INVALID("x:a b");
    OT_INVALID("x:a+b");
    OT_INVALID("x:a:b");
    OT_INVALID("x:a=b");
    OT_INVALID("x:a,b");
    OT_INVALID("x:a/b");
    OT_INVALID("x:a@b");
    OT_INVALID("x:a~b");
    OT_INVALID("x:\xc3\xa9");
    OT_INVALID("x:1\t");
    CHECK_INT(vq_ot_parse("x:1\0", 4, &ot), VQ_EINVAL);

    /* "the used keys MUST be unique" */
    OT_INVALID("x:1;x:2");
    OT_INVALID("x:1;x:1");
    OT_INVALID("th:8;th:8");
    OT_INVALID("th:8;a:1;th:c");
    OT_INVALID("rv:6e6d1a75832a2f;rv:6e6d1a75832a2f");
    OT_INVALID("th:zz;th:8");
    OT_INVALID("ab:1;a:1;b:1;ba:1;ab:2");
    OT_VALID("ab:1;a:1;b:1;ba:1;abc:2;a0:1");

    /* "The complete list length MUST NOT exceed 256 characters" */
    s = repeat('_', 254, "x:");
    OT_VALID(s);                                    /* pkg/sampling */
    free(s);
    s = repeat('_', 255, "x:");
    OT_INVALID(s);
    free(s);

    /*
     * The most members 256 characters hold with unique keys: 26 one-letter
     * keys and 44 two-letter ones, 253 characters.  One more is too long;
     * a repeated key at the end is caught among all 70.
     */
    {
        char      v[400];
        size_t    n;
        unsigned  i;

        n = 0;
        for (i = 0; i < 69; i++) {
            if (i > 0) {
                v[n++] = ';';
            }
            if (i < 26) {
                v[n++] = (char) ('a' + i);
            } else {
                v[n++] = (char) ('a' + (i - 26) / 26);
                v[n++] = (char) ('a' + (i - 26) % 26);
            }
            v[n++] = ':';
        }
        CHECK_INT(n, 249);                      /* ...;bp:;bq: */
        CHECK_INT(vq_ot_parse(v, n, &ot), VQ_OK);
        memcpy(v + n, ";bq:", 4);               /* the last key again */
        CHECK_INT(vq_ot_parse(v, n + 4, &ot), VQ_EINVAL);
        memcpy(v + n, ";a:", 3);                /* the first key again */
        CHECK_INT(vq_ot_parse(v, n + 3, &ot), VQ_EINVAL);
        memcpy(v + n, ";br:", 4);               /* 70 members, 253 */
        n += 4;
        CHECK_INT(vq_ot_parse(v, n, &ot), VQ_OK);
        memcpy(v + n, ";bs:", 4);               /* 257 */
        CHECK_INT(vq_ot_parse(v, n + 4, &ot), VQ_EINVAL);
        memcpy(v + n, ";z:", 3);                /* 256, but z again */
        CHECK_INT(vq_ot_parse(v, n + 3, &ot), VQ_EINVAL);
    }

    /* a th or rv that is not one: the entry stays, that sub-key does not */
    CHECK_INT(ot_parse_str("th:zz;a:1", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH_BAD);
    CHECK_INT(ot_parse_str("th:", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH_BAD);
    CHECK_INT(ot_parse_str("th:100000000000000", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH_BAD);
    CHECK_INT(ot_parse_str("th:ffffffffffffffff", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH_BAD);
    CHECK_INT(ot_parse_str("th:C", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH_BAD);
    /* a valid ot value ("." is a chr), so unlike pkg/sampling not EINVAL */
    CHECK_INT(ot_parse_str("th:14.5", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_TH_BAD);
    CHECK_INT(ot_parse_str("rv:3;p:2", &ot), VQ_OK);         /* pkg/sampling */
    CHECK_INT(ot.flags, VQ_OT_RV_BAD);
    CHECK_INT(ot_parse_str("rv:100000000000000", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_RV_BAD);
    CHECK_INT(ot_parse_str("rv:6E6D1A75832A2F;th:8", &ot), VQ_OK);
    CHECK_INT(ot.flags, VQ_OT_RV_BAD | VQ_OT_TH);

    /* keys that merely start like th or rv are other sub-keys */
    CHECK_INT(ot_parse_str("thx:8;t:8;r:6;rvv:1", &ot), VQ_OK);
    CHECK_INT(ot.flags, 0);

    /* no ot entry */
    CHECK_INT(vq_ot_parse(NULL, 0, &ot), VQ_OK);
    CHECK_INT(ot.flags, 0);
    CHECK_INT(ot.len, 0);

    /* bad arguments; *ot untouched on error */
    memset(&ot, 0x5a, sizeof(ot));
    before = ot;
    CHECK_INT(vq_ot_parse(NULL, 3, &ot), VQ_EINVAL);
    CHECK_INT(vq_ot_parse("th:8", 4, NULL), VQ_EINVAL);
    CHECK_INT(ot_parse_str("th:8;", &ot), VQ_EINVAL);
    CHECK(memcmp(&ot, &before, sizeof(ot)) == 0);

    /* only len bytes are read */
    CHECK_INT(vq_ot_parse("th:8;x", 4, &ot), VQ_OK);
    CHECK(ot.th == 0x80000000000000ULL);
    CHECK_INT(vq_ot_parse("th:8;x", 5, &ot), VQ_EINVAL);
}

static void
test_ot_format(void)
{
    vq_ot_t      ot;
    char        *s;
    const char  *got;
    char         out[64];

    /* unchanged: th, rv, then the others in their order */
    CHECK_STR(ot_roundtrip("th:c;rv:3f5a8b9c0d1e2f;foo:bar"),
              "th:c;rv:3f5a8b9c0d1e2f;foo:bar");
    CHECK_STR(ot_roundtrip("foo:bar;rv:3f5a8b9c0d1e2f;th:c"),
              "th:c;rv:3f5a8b9c0d1e2f;foo:bar");
    CHECK_STR(ot_roundtrip("a:1;th:8;b:2;rv:3f5a8b9c0d1e2f;c:3"),
              "th:8;rv:3f5a8b9c0d1e2f;a:1;b:2;c:3");
    CHECK_STR(ot_roundtrip("a:1;rv:3f5a8b9c0d1e2f;b:2;th:8;c:3"),
              "th:8;rv:3f5a8b9c0d1e2f;a:1;b:2;c:3");
    CHECK_STR(ot_roundtrip("p:8;r:62;k1:13"), "p:8;r:62;k1:13");
    CHECK_STR(ot_roundtrip("x:0X1FFF;y:.-_-.;z:"), "x:0X1FFF;y:.-_-.;z:");
    CHECK_STR(ot_roundtrip("z:;th:0"), "th:0;z:");
    /* th goes out in its shortest form, the same threshold */
    CHECK_STR(ot_roundtrip("th:c000"), "th:c");
    CHECK_STR(ot_roundtrip("th:00000000000000"), "th:0");

    /* a th or rv that is not one is left out; the rest goes on */
    CHECK_STR(ot_roundtrip("th:zz;a:1"), "a:1");
    CHECK_STR(ot_roundtrip("a:1;th:;b:2"), "a:1;b:2");
    CHECK_STR(ot_roundtrip("rv:3;p:2"), "p:2");              /* pkg/sampling */
    CHECK_STR(ot_roundtrip("rv:3"), "");
    CHECK_STR(ot_roundtrip("rv:3;th:8"), "th:8");

    /* set th: pkg/sampling TestOpenTelemetryTraceStateTValueUpdate */
    CHECK_INT(ot_parse_str("rv:abcdefabcdefab", &ot), VQ_OK);
    ot.th = 0x30000000000000ULL;
    ot.flags |= VQ_OT_TH;
    CHECK_STR(ot_fmt(&ot, 64), "th:3;rv:abcdefabcdefab");

    /* set th and rv: pkg/sampling TestOpenTelemetryTraceStateRTUpdate */
    CHECK_INT(ot_parse_str("a:b", &ot), VQ_OK);
    ot.th = 0x30000000000000ULL;
    ot.rv = 3;
    ot.flags |= VQ_OT_TH | VQ_OT_RV;
    CHECK_STR(ot_fmt(&ot, 64), "th:3;rv:00000000000003;a:b");

    /* replace th; erase th; erase both (TestOpenTelemetryTraceStateRTClear) */
    CHECK_INT(ot_parse_str("th:8;p:2", &ot), VQ_OK);
    ot.th = 0xe0000000000000ULL;
    CHECK_STR(ot_fmt(&ot, 64), "th:e;p:2");
    ot.flags &= ~VQ_OT_TH;
    CHECK_STR(ot_fmt(&ot, 64), "p:2");
    CHECK_INT(ot_parse_str("a:b;rv:12341234123412;th:1234", &ot), VQ_OK);
    ot.flags &= ~(VQ_OT_TH | VQ_OT_RV);
    CHECK_STR(ot_fmt(&ot, 64), "a:b");

    /* nothing left: length 0, send no ot member */
    CHECK_INT(ot_parse_str("th:8", &ot), VQ_OK);
    ot.flags &= ~VQ_OT_TH;
    CHECK_STR(ot_fmt(&ot, 64), "");
    CHECK_INT(vq_ot_format(&ot, NULL, 0), 0);

    /* a root: nothing parsed, th and rv set */
    CHECK_INT(vq_ot_parse(NULL, 0, &ot), VQ_OK);
    CHECK_STR(ot_fmt(&ot, 64), "");
    ot.th = 0;
    ot.flags |= VQ_OT_TH;
    CHECK_STR(ot_fmt(&ot, 64), "th:0");
    ot.th = VQ_SAMPLE_R_MAX;
    ot.rv = VQ_SAMPLE_R_MAX;
    ot.flags |= VQ_OT_RV;
    CHECK_STR(ot_fmt(&ot, 64), "th:ffffffffffffff;rv:ffffffffffffff");

    /* the output is a tracestate member value */
    CHECK_INT(vq_tracestate_put("congo=t61rcWkgMzE", 17, "ot", 2, fmt_out,
                                strlen(fmt_out), out, sizeof(out)), 56);
    CHECK(memcmp(out, "ot=th:ffffffffffffff;rv:ffffffffffffff,congo=", 45)
          == 0);

    /* the buffer: exactly enough, one short, none */
    CHECK_INT(ot_parse_str("th:8;p:2", &ot), VQ_OK);
    CHECK_STR(ot_fmt(&ot, 8), "th:8;p:2");
    CHECK_STR(ot_fmt(&ot, 7), "EFULL");
    CHECK_INT(vq_ot_format(&ot, NULL, 0), VQ_EFULL);

    /*
     * "If setting a value ends up making the entire ot entry exceed the
     * 256 characters limit, SDKs are advised to abort": the caller then
     * erases th, which never grows a value.
     */
    s = repeat('_', 254, "x:");
    CHECK_INT(ot_parse_str(s, &ot), VQ_OK);
    CHECK_STR(ot_fmt(&ot, 300), s);
    ot.th = 0x80000000000000ULL;
    ot.flags |= VQ_OT_TH;
    CHECK_STR(ot_fmt(&ot, 300), "EFULL");
    ot.flags &= ~VQ_OT_TH;
    CHECK_STR(ot_fmt(&ot, 300), s);
    free(s);

    s = repeat('_', 249, "th:8;x:");             /* 256: th:8 fits again */
    CHECK_INT(ot_parse_str(s, &ot), VQ_OK);
    ot.th = 0xfd70a400000000ULL;                  /* "fd70a4": 5 longer */
    got = ot_fmt(&ot, 300);
    CHECK_STR(got, "EFULL");
    ot.th = 0xc0000000000000ULL;
    s[3] = 'c';
    CHECK_STR(ot_fmt(&ot, 300), s);
    free(s);

    /* a flagged th or rv that no encoding has */
    CHECK_INT(vq_ot_parse(NULL, 0, &ot), VQ_OK);
    ot.th = VQ_SAMPLE_NEVER;
    ot.flags = VQ_OT_TH;
    CHECK_INT(vq_ot_format(&ot, out, sizeof(out)), VQ_EINVAL);
    ot.flags = VQ_OT_RV;
    ot.rv = VQ_SAMPLE_NEVER;
    CHECK_INT(vq_ot_format(&ot, out, sizeof(out)), VQ_EINVAL);
    CHECK_INT(vq_ot_format(NULL, out, sizeof(out)), VQ_EINVAL);
}

/* ---- the head decision ---------------------------------------------- */

/* a trace id whose R is r */
static void
id_with_r(uint64_t r, uint8_t id[16])
{
    int  i;

    memset(id, 0x11, 16);
    for (i = 15; i >= 9; i--) {
        id[i] = (uint8_t) r;
        r >>= 8;
    }
}

/* vq_sample_head() on an incoming ot value; the outgoing one into fmt_out */
static int
head(uint64_t t, unsigned flags, uint64_t r, uint64_t key_r, const char *in)
{
    vq_ot_t  ot;
    uint8_t  id[16];
    int      rc;

    id_with_r(r, id);
    CHECK_INT(ot_parse_str(in, &ot), VQ_OK);
    rc = vq_sample_head(t, flags, id, key_r, &ot);
    ot_fmt(&ot, VQ_OT_VALUE_MAX);

    return rc;
}

#define T50   0x80000000000000ULL             /* th:8, 50% */
#define C     VQ_SAMPLE_CONTINUED
#define PS    VQ_SAMPLE_PARENT_SAMPLED
#define PR    VQ_SAMPLE_PARENT_RANDOM
#define FP    VQ_SAMPLE_FOLLOW_PARENT
#define KEY   VQ_SAMPLE_KEY
#define S     VQ_SAMPLE_SAMPLED
#define U     VQ_SAMPLE_UNCONFIRMED

static void
test_head_root(void)
{
    vq_ot_t  ot;
    uint8_t  id[16];

    /* TraceIdRatioBased: R >= T samples and sets th:T; else no th */
    CHECK_INT(head(T50, 0, T50, 0, ""), S);
    CHECK_STR(fmt_out, "th:8");
    CHECK_INT(head(T50, 0, T50 - 1, 0, ""), 0);
    CHECK_STR(fmt_out, "");
    CHECK_INT(head(T50, 0, VQ_SAMPLE_R_MAX, 0, ""), S);

    /* vaquero_sample_rate 1 and 0 */
    CHECK_INT(head(0, 0, 0, 0, ""), S);
    CHECK_STR(fmt_out, "th:0");
    CHECK_INT(head(VQ_SAMPLE_NEVER, 0, VQ_SAMPLE_R_MAX, 0, ""), 0);
    CHECK_STR(fmt_out, "");

    /* follow-parent makes no difference without a parent */
    CHECK_INT(head(T50, FP, T50, 0, ""), S);
    CHECK_STR(fmt_out, "th:8");

    /* a root starts afresh: whatever ot it is handed is dropped */
    CHECK_INT(head(T50, FP | PS, T50 - 1, 0, "th:0;rv:ffffffffffffff;a:1"),
              0);
    CHECK_STR(fmt_out, "");

    /* a key: R from the key, and rv = the key's R for later samplers */
    CHECK_INT(head(T50, KEY, 0, T50, ""), S);
    CHECK_STR(fmt_out, "th:8;rv:80000000000000");
    CHECK_INT(head(T50, KEY, VQ_SAMPLE_R_MAX, T50 - 1, ""), 0);
    CHECK_STR(fmt_out, "rv:7fffffffffffff");

    /* key_r is cut to 56 bits */
    CHECK_INT(head(T50, KEY, 0, UINT64_MAX, ""), S);
    CHECK_STR(fmt_out, "th:8;rv:ffffffffffffff");

    /* the same key, the same decision, whatever the trace id */
    id_with_r(0, id);
    vq_ot_parse(NULL, 0, &ot);
    CHECK_INT(vq_sample_head(T50, KEY, id, vq_sample_key_randomness("user-1", 6),
                             &ot), S);                 /* R = a17374... */
    id_with_r(VQ_SAMPLE_R_MAX, id);
    CHECK_INT(vq_sample_head(T50, KEY, id, vq_sample_key_randomness("user-0", 6),
                             &ot), 0);                 /* R = 7c1b20... */
}

static void
test_head_parent(void)
{
    /*
     * Parent-based: the parent's sampled flag decides.  A consistent
     * sampled th (R >= th) goes on; an inconsistent one is erased; an
     * absent one stays absent; not sampled, there is no th.
     */
    CHECK_INT(head(T50, C | FP | PS, T50, 0, "th:8;x:1"), S);
    CHECK_STR(fmt_out, "th:8;x:1");
    CHECK_INT(head(T50, C | FP | PS, T50 - 1, 0, "th:8;x:1"), S);
    CHECK_STR(fmt_out, "x:1");
    CHECK_INT(head(T50, C | FP | PS, T50, 0, "x:1"), S);
    CHECK_STR(fmt_out, "x:1");
    CHECK_INT(head(T50, C | FP, T50, 0, "th:8;x:1"), 0);
    CHECK_STR(fmt_out, "x:1");
    CHECK_INT(head(T50, C | FP, T50 - 1, 0, ""), 0);
    CHECK_STR(fmt_out, "");

    /* the configured rate and key take no part */
    CHECK_INT(head(VQ_SAMPLE_NEVER, C | FP | PS, 0, 0, "th:0"), S);
    CHECK_STR(fmt_out, "th:0");
    CHECK_INT(head(0, C | FP | KEY, VQ_SAMPLE_R_MAX, 0, "th:0"), 0);
    CHECK_STR(fmt_out, "");

    /* the consistency check uses rv before the trace id */
    CHECK_INT(head(T50, C | FP | PS, T50 - 1, 0, "th:8;rv:80000000000000"),
              S);
    CHECK_STR(fmt_out, "th:8;rv:80000000000000");
    CHECK_INT(head(T50, C | FP | PS, T50, 0, "th:8;rv:7fffffffffffff"), S);
    CHECK_STR(fmt_out, "rv:7fffffffffffff");

    /* an rv that is not one is no randomness: the trace id's counts */
    CHECK_INT(head(T50, C | FP | PS, T50, 0, "th:8;rv:7f"), S);
    CHECK_STR(fmt_out, "th:8");

    /* a th that is not one is no threshold */
    CHECK_INT(head(T50, C | FP | PS, T50, 0, "th:8g;a:1"), S);
    CHECK_STR(fmt_out, "a:1");
}

static void
test_head_independent(void)
{
    /*
     * vaquero_sample_parent off: a consistent probability decision that
     * "ignores the parent's sampling threshold", and the sampled flag.
     */
    CHECK_INT(head(T50, C | PR, T50, 0, "th:f;x:1"), S);
    CHECK_STR(fmt_out, "th:8;x:1");
    CHECK_INT(head(T50, C | PS | PR, T50 - 1, 0, "th:0;x:1"), 0);
    CHECK_STR(fmt_out, "x:1");

    /* rv takes precedence over the trace id, and goes on unchanged */
    CHECK_INT(head(T50, C | PR, VQ_SAMPLE_R_MAX, 0, "rv:7fffffffffffff"), 0);
    CHECK_STR(fmt_out, "rv:7fffffffffffff");
    CHECK_INT(head(T50, C | PR, 0, 0, "rv:80000000000000"), S);
    CHECK_STR(fmt_out, "th:8;rv:80000000000000");

    /* no rv and no random flag: decided, with a compatibility warning */
    CHECK_INT(head(T50, C, T50, 0, ""), S | U);
    CHECK_STR(fmt_out, "th:8");
    CHECK_INT(head(T50, C, T50 - 1, 0, ""), U);
    CHECK_INT(head(T50, C, 0, 0, "rv:80000000000000"), S);

    /*
     * A key on a continued trace: rv may not change, and the key's
     * decision has no probability in the trace's R, so no th.
     */
    CHECK_INT(head(T50, C | KEY, 0, T50, "th:8;rv:00000000000000;a:1"), S);
    CHECK_STR(fmt_out, "rv:00000000000000;a:1");
    CHECK_INT(head(T50, C | KEY, VQ_SAMPLE_R_MAX, T50 - 1, "th:0"), 0);
    CHECK_STR(fmt_out, "");
    CHECK_INT(head(T50, C | KEY, 0, T50, ""), S);
    CHECK_STR(fmt_out, "");
}

/* ---- statistics ----------------------------------------------------- */

/*
 * |k - n q| <= 4 sigma, sigma^2 = n q (1 - q), q the probability that the
 * threshold really gives (th rounding moves it a little from the rate).
 */
static int
within_4_sigma(unsigned long k, unsigned long n, uint64_t t)
{
    double  q, d, var;

    q = (double) (VQ_SAMPLE_NEVER - t) / (double) VQ_SAMPLE_NEVER;
    d = (double) k - (double) n * q;
    var = (double) n * q * (1 - q);

    if (d * d > 16 * var) {
        fprintf(stderr, "  %lu of %lu sampled, expected %.1f +- 4 * %.1f\n",
                k, n, n * q, var);
        return 0;
    }

    return 1;
}

/*
 * Pearson's chi-square of 256 buckets against a uniform spread, within
 * 4 standard deviations of its mean (df = 255, variance 2 df).
 */
static int
chi2_ok(const unsigned long *bucket, unsigned long n)
{
    double    e, x2, d;
    unsigned  i;

    e = n / 256.0;
    x2 = 0;

    for (i = 0; i < 256; i++) {
        d = bucket[i] - e;
        x2 += d * d / e;
    }

    if ((x2 - 255) * (x2 - 255) > 16 * 2 * 255) {
        fprintf(stderr, "  chi-square %.1f, expected 255 +- 4 * 22.6\n", x2);
        return 0;
    }

    return 1;
}

/* splitmix64: fixed random trace ids, the same on every run */
static uint64_t
splitmix64(uint64_t *s)
{
    uint64_t  z;

    z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define N_STAT  1000000

static const double  rates[] = { 0.5, 0.25, 0.1, 0.01, 0.001, 1.0 / 3 };
#define N_RATES  (sizeof(rates) / sizeof(rates[0]))

static void
test_trace_id_spread(void)
{
    uint64_t        t[N_RATES], s, r, a, b;
    unsigned long   k[N_RATES], top[256], low[256], n;
    uint8_t         id[16];
    unsigned        i, j;

    for (j = 0; j < N_RATES; j++) {
        CHECK_INT(vq_sample_threshold(rates[j], VQ_SAMPLE_PRECISION, &t[j]),
                  VQ_OK);
        k[j] = 0;
    }

    memset(top, 0, sizeof(top));
    memset(low, 0, sizeof(low));
    s = 20260711;

    for (n = 0; n < N_STAT; n++) {
        a = splitmix64(&s);
        b = splitmix64(&s);
        for (i = 0; i < 8; i++) {
            id[i] = (uint8_t) (a >> (8 * i));
            id[8 + i] = (uint8_t) (b >> (8 * i));
        }
        r = vq_sample_trace_randomness(id);

        for (j = 0; j < N_RATES; j++) {
            k[j] += vq_sample_decide(r, t[j]);
        }
        top[r >> 48]++;
        low[r & 0xff]++;
    }

    for (j = 0; j < N_RATES; j++) {
        CHECK(within_4_sigma(k[j], N_STAT, t[j]));
    }

    CHECK(chi2_ok(top, N_STAT));
    CHECK(chi2_ok(low, N_STAT));
}

static void
test_key_spread(void)
{
    uint64_t        t[N_RATES], r, prev_r;
    unsigned long   k[N_RATES], top[256], mid[256], low[256], agree, nested;
    char            key[32];
    unsigned        i, j;
    int             len, d, prev_d, ok;

    for (j = 0; j < N_RATES; j++) {
        CHECK_INT(vq_sample_threshold(rates[j], VQ_SAMPLE_PRECISION, &t[j]),
                  VQ_OK);
        k[j] = 0;
    }

    memset(top, 0, sizeof(top));
    memset(mid, 0, sizeof(mid));
    memset(low, 0, sizeof(low));
    agree = 0;
    nested = 0;
    prev_r = 0;
    prev_d = 0;

    for (i = 0; i < N_STAT; i++) {
        len = snprintf(key, sizeof(key), "user-%u", i);
        r = vq_sample_key_randomness(key, (size_t) len);

        ok = 1;
        for (j = 0; j < N_RATES; j++) {
            d = vq_sample_decide(r, t[j]);
            k[j] += d;
            /* consistent: sampled at 0.001 means sampled at 0.01, 0.1, ... */
            if (j > 0 && j < 5 && d && !vq_sample_decide(r, t[j - 1])) {
                ok = 0;
            }
        }
        nested += ok;

        top[r >> 48]++;
        mid[(r >> 24) & 0xff]++;
        low[r & 0xff]++;

        /* neighbouring keys decide independently: agree half the time */
        d = vq_sample_decide(r, t[0]);
        if (i > 0) {
            agree += d == prev_d;
        }
        prev_d = d;
        prev_r = r;
    }
    (void) prev_r;

    for (j = 0; j < N_RATES; j++) {
        CHECK(within_4_sigma(k[j], N_STAT, t[j]));
    }

    CHECK_INT(nested, N_STAT);
    CHECK(chi2_ok(top, N_STAT));
    CHECK(chi2_ok(mid, N_STAT));
    CHECK(chi2_ok(low, N_STAT));
    CHECK(within_4_sigma(agree, N_STAT - 1, T50));

    /* and the same key gives the same R, every time */
    CHECK(vq_sample_key_randomness("user-999999", 11)
          == vq_sample_key_randomness("user-999999", 11));
}

/* ---- bench ---------------------------------------------------------- */

static double
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static volatile uint64_t  sink;

/*
 * Best of 5 runs of iters calls, each on the next of 1024 prepared inputs
 * (so that no call reads bytes the loop has just written: a store that
 * must forward into a wider load would be what is measured).
 */
#define BENCH(name, iters, expr)                                             \
    do {                                                                     \
        double    best_ = 1e30, t0_, t1_;                                    \
        uint64_t  acc_ = 0;                                                  \
        unsigned  run_, i;                                                   \
        for (run_ = 0; run_ < 5; run_++) {                                   \
            t0_ = now_ns();                                                  \
            for (i = 0; i < (iters); i++) {                                  \
                acc_ += (uint64_t) (expr);                                   \
            }                                                                \
            t1_ = now_ns();                                                  \
            if ((t1_ - t0_) / (iters) < best_) {                             \
                best_ = (t1_ - t0_) / (iters);                               \
            }                                                                \
        }                                                                    \
        sink = acc_;                                                         \
        printf("bench: %-34s %8.2f ns/call\n", name, best_);                 \
    } while (0)

#define NIN  1024

static uint8_t   b_ids[NIN][16];
static char      b_keys[NIN][21];
static char      b_ot[NIN][32];
static size_t    b_ot_len[NIN];
static char      b_ts[NIN][80];
static size_t    b_ts_len[NIN];
static vq_ot_t   b_parsed[NIN];
static uint64_t  b_th[NIN];

static int
bench_format(unsigned i)
{
    vq_ot_t  ot;
    char     out[VQ_OT_VALUE_MAX];

    ot = b_parsed[i % NIN];
    ot.th = b_th[i % NIN];

    return vq_ot_format(&ot, out, sizeof(out));
}

static int
bench_head(unsigned i, uint64_t t)
{
    vq_ot_t  ot;

    ot = b_parsed[i % NIN];

    return vq_sample_head(t, VQ_SAMPLE_CONTINUED | VQ_SAMPLE_PARENT_RANDOM,
                          b_ids[i % NIN], 0, &ot);
}

static int
bench_get(unsigned i)
{
    const char  *mv;
    size_t       mlen;

    return vq_tracestate_get(b_ts[i % NIN], b_ts_len[i % NIN], "ot", 2, &mv,
                             &mlen) + (int) mlen;
}

static void
bench(void)
{
    char      worst[VQ_OT_VALUE_MAX];
    vq_ot_t   ot;
    uint64_t  t, st;
    size_t    n;
    unsigned  j;

    vq_sample_threshold(0.1, VQ_SAMPLE_PRECISION, &t);
    st = 42;

    for (j = 0; j < NIN; j++) {
        uint64_t  a = splitmix64(&st), b = splitmix64(&st);

        memcpy(b_ids[j], &a, 8);
        memcpy(b_ids[j] + 8, &b, 8);
        /* 20-byte keys, like "user-" and a 15-digit id */
        snprintf(b_keys[j], sizeof(b_keys[j]), "user-%015llu",
                 (unsigned long long) (a % 1000000000000000ULL));
        b_ot_len[j] = (size_t) snprintf(b_ot[j], sizeof(b_ot[j]),
                                        "th:c;rv:%014llx;foo:bar",
                                        (unsigned long long) (b >> 8));
        b_ts_len[j] = (size_t) snprintf(b_ts[j], sizeof(b_ts[j]),
                                        "congo=t61rcWkgMzE,ot=%s,"
                                        "rojo=00f067aa0ba902b7", b_ot[j]);
        vq_ot_parse(b_ot[j], b_ot_len[j], &b_parsed[j]);
        b_th[j] = (a >> 8) & ~(((uint64_t) 1 << 32) - 1);
    }

    BENCH("decide (trace R >= T)", 20000000,
          vq_sample_decide(vq_sample_trace_randomness(b_ids[i % NIN]), t));
    BENCH("key R (XXH64 of 20 bytes)", 20000000,
          vq_sample_key_randomness(b_keys[i % NIN], 20));
    BENCH("vq_sample_head (continued)", 20000000, bench_head(i, t));
    BENCH("vq_ot_parse (30 chars, th rv foo)", 5000000,
          vq_ot_parse(b_ot[i % NIN], b_ot_len[i % NIN], &ot) + ot.th);
    BENCH("vq_ot_format (th replaced)", 5000000, bench_format(i));
    BENCH("vq_tracestate_get (3 members)", 5000000, bench_get(i));

    /* the worst ot value: the most members, 70, all compared */
    n = 0;
    for (j = 0; j < 70; j++) {
        if (j > 0) {
            worst[n++] = ';';
        }
        if (j < 26) {
            worst[n++] = (char) ('a' + j);
        } else {
            worst[n++] = (char) ('a' + (j - 26) / 26);
            worst[n++] = (char) ('a' + (j - 26) % 26);
        }
        worst[n++] = ':';
    }
    CHECK_INT(vq_ot_parse(worst, n, &ot), VQ_OK);
    BENCH("vq_ot_parse (worst: 70 members)", 200000,
          vq_ot_parse(worst, n, &ot));

    BENCH("vq_sample_threshold (config time)", 2000000,
          vq_sample_threshold(0.1 + (i & 0xff) * 1e-6, 4, &t) + t);
}

int
main(int argc, char **argv)
{
    test_threshold_spec_table();
    test_threshold_values();
    test_threshold_sweep();
    test_th_encoding();
    test_rv_encoding();

    test_trace_randomness();
    test_decide();
    test_key_randomness();

    test_ot_parse();
    test_ot_format();

    test_head_root();
    test_head_parent();
    test_head_independent();

    test_trace_id_spread();
    test_key_spread();

    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        bench();
    }

    free(ot_copy);

    return check_summary("test_sampler");
}
