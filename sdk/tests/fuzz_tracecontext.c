/*
 * Fuzz target: traceparent and tracestate header values.
 *
 * Any bytes: the parsers must not read past the input, and must agree
 * with the plain reference checkers below, written straight from the
 * spec's ABNF (spec/20-http_request_header_format.md).  A traceparent
 * that parses formats back to the same ids and flags; vq_tracestate_put()
 * must write exactly the list the spec asks for (new member first, the
 * others in order without its key, at most 32), and that list validates.
 *
 * The first input byte picks the key, member value and output size for
 * vq_tracestate_put(); the rest is the tracestate.  The whole input is
 * also tried as a traceparent.  Built with -fsanitize=fuzzer for libFuzzer,
 * or with -DVQ_FUZZ_DRIVER as a plain program that runs the target on
 * generated inputs: valid headers with mutations, and random bytes.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vaquero/vaquero.h>
#include <vaquero/tracecontext.h>

#define FUZZ_ASSERT(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                         \
        }                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* what the driver counts, to know that it tested something */
static unsigned long  n_tp_valid, n_ts_valid, n_put_ok, n_put_full,
                      n_put_moved, n_put_dropped;

/* ---- reference checkers: slow and plain --------------------------- */

static int
ref_ows(int c)
{
    return c == ' ' || c == '\t';
}

static int
ref_hexdiglc(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int
ref_hexval(int c)
{
    return c <= '9' ? c - '0' : c - 'a' + 10;
}

static int
ref_traceparent(const uint8_t *s, size_t n, vq_traceparent_t *tp)
{
    size_t  i;
    int     version, zero;

    while (n > 0 && ref_ows(s[0])) {
        s++;
        n--;
    }

    while (n > 0 && ref_ows(s[n - 1])) {
        n--;
    }

    if (n < 55) {
        return 0;
    }

    for (i = 0; i < 55; i++) {
        if (i == 2 || i == 35 || i == 52) {
            if (s[i] != '-') {
                return 0;
            }

        } else if (!ref_hexdiglc(s[i])) {
            return 0;
        }
    }

    version = ref_hexval(s[0]) * 16 + ref_hexval(s[1]);

    if (version == 0xff
        || (version == 0 && n != 55)
        || (version != 0 && n > 55 && s[55] != '-'))
    {
        return 0;
    }

    tp->version = (uint8_t) version;
    tp->flags = (uint8_t) (ref_hexval(s[53]) * 16 + ref_hexval(s[54]));

    zero = 1;
    for (i = 0; i < 16; i++) {
        tp->trace_id[i] = (uint8_t) (ref_hexval(s[3 + 2 * i]) * 16
                                     + ref_hexval(s[4 + 2 * i]));
        zero &= tp->trace_id[i] == 0;
    }
    if (zero) {
        return 0;
    }

    zero = 1;
    for (i = 0; i < 8; i++) {
        tp->parent_id[i] = (uint8_t) (ref_hexval(s[36 + 2 * i]) * 16
                                      + ref_hexval(s[37 + 2 * i]));
        zero &= tp->parent_id[i] == 0;
    }

    return !zero;
}

typedef struct {
    const uint8_t  *p;          /* the member, OWS left out */
    size_t          len;
    size_t          key_len;
} ref_member_t;

static int
ref_key(const uint8_t *k, size_t n)
{
    size_t  i;

    if (n < 1 || n > 256) {
        return 0;
    }

    if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= '0' && k[0] <= '9'))) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9')
              || k[i] == '_' || k[i] == '-' || k[i] == '*' || k[i] == '/'
              || k[i] == '@'))
        {
            return 0;
        }
    }

    return 1;
}

static int
ref_nblk(int c)
{
    return (c >= 0x21 && c <= 0x2b) || (c >= 0x2d && c <= 0x3c)
           || (c >= 0x3e && c <= 0x7e);
}

static int
ref_value(const uint8_t *v, size_t n)
{
    size_t  i;

    if (n < 1 || n > 256 || !ref_nblk(v[n - 1])) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (v[i] != ' ' && !ref_nblk(v[i])) {
            return 0;
        }
    }

    return 1;
}

/* Number of members into m (room for 33), or -1. */
static int
ref_tracestate(const uint8_t *s, size_t n, ref_member_t *m)
{
    size_t  start, end, i, j, k;
    int     count, c;

    count = 0;
    start = 0;

    for (i = 0; i <= n; i++) {
        if (i < n && s[i] != ',') {
            continue;
        }

        /* one member: s[start .. i) */
        end = i;
        while (start < end && ref_ows(s[start])) {
            start++;
        }
        while (end > start && ref_ows(s[end - 1])) {
            end--;
        }

        if (end > start) {
            for (k = start; k < end && s[k] != '='; k++) {
                /* find the first "=" */
            }

            if (k == end || !ref_key(s + start, k - start)
                || !ref_value(s + k + 1, end - k - 1)
                || count == 32)
            {
                return -1;
            }

            for (c = 0; c < count; c++) {
                if (m[c].key_len == k - start) {
                    for (j = 0; j < k - start; j++) {
                        if (m[c].p[j] != s[start + j]) {
                            break;
                        }
                    }
                    if (j == k - start) {
                        return -1;
                    }
                }
            }

            m[count].p = s + start;
            m[count].len = end - start;
            m[count].key_len = k - start;
            count++;
        }

        start = i + 1;
    }

    return count;
}

/* ---- the target ---------------------------------------------------- */

static void
fuzz_traceparent(const uint8_t *data, size_t size)
{
    vq_traceparent_t  tp, ref, again;
    const uint8_t    *s;
    char             *out;
    int               rc, want;

    memset(&tp, 0, sizeof(tp));
    rc = vq_traceparent_parse((const char *) data, size, &tp);
    want = ref_traceparent(data, size, &ref);

    FUZZ_ASSERT((rc == VQ_OK) == want);
    FUZZ_ASSERT(rc == VQ_OK || rc == VQ_EINVAL);

    if (rc != VQ_OK) {
        return;
    }

    n_tp_valid++;

    FUZZ_ASSERT(memcmp(&tp, &ref, sizeof(tp)) == 0);
    FUZZ_ASSERT(!vq_id_is_zero(tp.trace_id, VQ_TRACE_ID_SIZE));
    FUZZ_ASSERT(!vq_id_is_zero(tp.parent_id, VQ_SPAN_ID_SIZE));
    FUZZ_ASSERT(tp.version != 0xff);

    /* format(parse(x)): version 00, same ids and flags */
    out = malloc(VQ_TRACEPARENT_LEN);
    vq_traceparent_format(tp.trace_id, tp.parent_id, tp.flags, out);

    memset(&again, 0, sizeof(again));
    FUZZ_ASSERT(vq_traceparent_parse(out, VQ_TRACEPARENT_LEN, &again)
                == VQ_OK);
    FUZZ_ASSERT(again.version == 0);
    FUZZ_ASSERT(again.flags == tp.flags);
    FUZZ_ASSERT(memcmp(again.trace_id, tp.trace_id, VQ_TRACE_ID_SIZE) == 0);
    FUZZ_ASSERT(memcmp(again.parent_id, tp.parent_id, VQ_SPAN_ID_SIZE) == 0);

    /* and the same characters as the input's first 55, but the version */
    s = data;
    while (ref_ows(*s)) {
        s++;
    }
    FUZZ_ASSERT(memcmp(out + 2, s + 2, VQ_TRACEPARENT_LEN - 2) == 0);
    FUZZ_ASSERT(tp.version != 0 || memcmp(out, s, 2) == 0);

    free(out);
}

static char  *long_key, *long_key_bad, *long_value, *long_value_bad;

static const char  *const  keys[] = {
    "ot", "foo", "bar01", "a", "0", "t@v", "congo",
    "FOO", "", "@x", "o t", "k=", NULL /* long_key */, NULL /* bad */
};

static const char  *const  values[] = {
    "th:8", "1", " x", "01", "~", "a b",
    "x ", "", "a,b", "a=b", "a\tb", "\x80", NULL /* long */, NULL /* bad */
};

#define NKEYS    (sizeof(keys) / sizeof(keys[0]))
#define NVALUES  (sizeof(values) / sizeof(values[0]))

static void
fuzz_tracestate(uint8_t ctrl, const uint8_t *s, size_t n)
{
    ref_member_t   m[33];
    const char    *key, *value;
    size_t         key_len, value_len, bound, out_size, expect_len, i, w;
    char          *out, *expect;
    int            rc, count, kept, input_ok, new_ok;

    count = ref_tracestate(s, n, m);
    rc = vq_tracestate_validate((const char *) s, n);

    FUZZ_ASSERT(rc == VQ_OK || rc == VQ_EINVAL);
    FUZZ_ASSERT((rc == VQ_OK) == (count >= 0));

    input_ok = count >= 0;
    n_ts_valid += input_ok;

    /* the key: from the table, or one the input already has */
    if ((ctrl & 0x80) && count > 0) {
        i = (ctrl & 0x0f) % (size_t) count;
        key = (const char *) m[i].p;
        key_len = m[i].key_len;

    } else {
        i = (ctrl & 0x0f) % NKEYS;
        key = i == NKEYS - 2 ? long_key : i == NKEYS - 1 ? long_key_bad
                                                          : keys[i];
        key_len = strlen(key);
    }

    i = ((size_t) ctrl * 7 + n) % NVALUES;
    value = i == NVALUES - 2 ? long_value : i == NVALUES - 1 ? long_value_bad
                                                              : values[i];
    value_len = strlen(value);

    new_ok = ref_key((const uint8_t *) key, key_len)
             && ref_value((const uint8_t *) value, value_len);

    /* what the spec wants: the new member, then the rest, 32 in all */
    bound = n + key_len + value_len + 2;
    expect = malloc(bound);
    w = 0;
    memcpy(expect + w, key, key_len);
    w += key_len;
    expect[w++] = '=';
    memcpy(expect + w, value, value_len);
    w += value_len;
    kept = 1;

    for (i = 0; input_ok && i < (size_t) count; i++) {
        if (m[i].key_len == key_len && memcmp(m[i].p, key, key_len) == 0) {
            n_put_moved += new_ok;
            continue;
        }

        if (kept == 32) {
            n_put_dropped += new_ok;
            continue;
        }

        expect[w++] = ',';
        memcpy(expect + w, m[i].p, m[i].len);
        w += m[i].len;
        kept++;
    }

    expect_len = w;
    FUZZ_ASSERT(expect_len <= bound);       /* the header's promise */

    switch ((ctrl >> 4) & 3) {
    case 0:
        out_size = bound;
        break;
    case 1:
        out_size = expect_len;
        break;
    case 2:
        out_size = expect_len - 1;
        break;
    default:
        out_size = ctrl & 0x3f;
        break;
    }

    /* exactly out_size bytes, so that ASan sees any write past them */
    out = malloc(out_size ? out_size : 1);

    rc = vq_tracestate_put((const char *) s, n, key, key_len, value,
                           value_len, out, out_size);

    if (!input_ok || !new_ok) {
        FUZZ_ASSERT(rc == VQ_EINVAL);

    } else if (out_size < expect_len) {
        FUZZ_ASSERT(rc == VQ_EFULL);
        n_put_full++;

    } else {
        FUZZ_ASSERT(rc >= 0 && (size_t) rc == expect_len);
        FUZZ_ASSERT(memcmp(out, expect, expect_len) == 0);
        FUZZ_ASSERT(vq_tracestate_validate(out, (size_t) rc) == VQ_OK);
        FUZZ_ASSERT(ref_tracestate((const uint8_t *) out, (size_t) rc, m)
                    == kept);
        FUZZ_ASSERT(m[0].key_len == key_len
                    && memcmp(m[0].p, key, key_len) == 0);
        n_put_ok++;
    }

    free(out);
    free(expect);
}

static void
init_long_strings(void)
{
    if (long_key != NULL) {
        return;
    }

    long_key = malloc(258);
    memset(long_key, 'k', 256);
    long_key[3] = '@';
    long_key[256] = '\0';

    long_key_bad = malloc(258);
    memset(long_key_bad, 'k', 257);
    long_key_bad[257] = '\0';

    long_value = malloc(258);
    memset(long_value, 'v', 256);
    long_value[0] = ' ';
    long_value[256] = '\0';

    long_value_bad = malloc(258);
    memset(long_value_bad, 'v', 257);
    long_value_bad[257] = '\0';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_long_strings();

    fuzz_traceparent(data, size);

    if (size > 0) {
        fuzz_tracestate(data[0], data + 1, size - 1);
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

static size_t
gen_traceparent(uint8_t *b, unsigned *seed)
{
    static const char  hexlc[] = "0123456789abcdef";
    static const char  *const  versions[] = { "00", "00", "00", "cc", "01",
                                              "fe", "ff", "0A" };
    size_t             n, i;

    n = 0;

    while (pick(seed, 4) == 0) {
        b[n++] = pick(seed, 2) ? ' ' : '\t';
    }

    memcpy(b + n, versions[pick(seed, 8)], 2);
    n += 2;
    b[n++] = '-';

    for (i = 0; i < 32; i++) {
        b[n++] = pick(seed, 16) ? hexlc[pick(seed, 16)] : '0';
    }
    if (pick(seed, 20) == 0) {
        memset(b + n - 32, '0', 32);
    }
    b[n++] = '-';

    for (i = 0; i < 16; i++) {
        b[n++] = pick(seed, 16) ? hexlc[pick(seed, 16)] : '0';
    }
    if (pick(seed, 20) == 0) {
        memset(b + n - 16, '0', 16);
    }
    b[n++] = '-';

    b[n++] = hexlc[pick(seed, 16)];
    b[n++] = hexlc[pick(seed, 16)];

    switch (pick(seed, 6)) {
    case 0:
        memcpy(b + n, "-future-fields", 14);
        n += 14;
        break;
    case 1:
        b[n++] = pick(seed, 2) ? '-' : '.';
        break;
    default:
        break;
    }

    while (pick(seed, 4) == 0) {
        b[n++] = pick(seed, 2) ? ' ' : '\t';
    }

    return n;
}

static size_t
gen_tracestate(uint8_t *b, unsigned *seed)
{
    static const char  keychars[] = "abcdefghijklmnopqrstuvwxyz0123456789"
                                    "_-*/@";
    size_t             n, i, len, members, m, prev_key, prev_len;

    n = 0;
    b[n++] = (uint8_t) rand_r(seed);        /* the control byte */
    /* non-empty members: a few, or about the limit of 32 */
    members = pick(seed, 4) ? pick(seed, 8) : 30 + pick(seed, 4);
    prev_key = 0;
    prev_len = 0;

    for (m = 0; m < members; /* void */) {
        if (n > 1) {
            b[n++] = ',';
        }

        while (pick(seed, 5) == 0) {
            b[n++] = pick(seed, 3) ? ' ' : '\t';
        }

        if (pick(seed, 8) == 0) {
            continue;                       /* an empty member */
        }

        /* a key: short mostly, sometimes at and past the limit */
        if (prev_len > 0 && pick(seed, 64) == 0) {
            memmove(b + n, b + prev_key, prev_len);     /* a duplicate */
            len = prev_len;

        } else {
            len = pick(seed, 20) ? 1 + pick(seed, 8) : 250 + pick(seed, 10);
            b[n] = keychars[pick(seed, 36)];
            for (i = 1; i < len; i++) {
                b[n + i] = keychars[pick(seed, sizeof(keychars) - 1)];
            }
        }

        prev_key = n;
        prev_len = len;
        n += len;
        b[n++] = '=';
        m++;

        len = pick(seed, 20) ? 1 + pick(seed, 12) : 250 + pick(seed, 10);
        for (i = 0; i < len; i++) {
            do {
                b[n + i] = (uint8_t) (0x20 + pick(seed, 0x5f));
            } while (b[n + i] == ',' || b[n + i] == '=');
        }
        n += len;

        while (pick(seed, 5) == 0) {
            b[n++] = pick(seed, 3) ? ' ' : '\t';
        }
    }

    return n;
}

int
main(void)
{
    unsigned   seed, i, j, flips, runs;
    uint8_t   *buf, *in;
    size_t     len;

    seed = 20260711;
    runs = 60000;
    buf = malloc(MAX_INPUT);

    for (i = 0; i < runs; i++) {
        switch (i % 4) {
        case 0:
            len = gen_traceparent(buf, &seed);
            break;
        case 1:
        case 2:
            len = gen_tracestate(buf, &seed);
            break;
        default:
            len = pick(&seed, 80);
            for (j = 0; j < len; j++) {
                buf[j] = (uint8_t) rand_r(&seed);
            }
            break;
        }

        /* a few bytes changed, now and then */
        if (len > 0 && pick(&seed, 3) == 0) {
            flips = 1 + pick(&seed, 3);
            for (j = 0; j < flips; j++) {
                buf[pick(&seed, (unsigned) len)] = pick(&seed, 2)
                    ? (uint8_t) rand_r(&seed)
                    : (uint8_t) ",= \t-@A"[pick(&seed, 7)];
            }
        }

        /* exactly len bytes, so that ASan sees a read past them */
        in = malloc(len ? len : 1);
        memcpy(in, buf, len);
        LLVMFuzzerTestOneInput(in, len);
        free(in);
    }

    free(buf);

    printf("fuzz_tracecontext: %u inputs: %lu valid traceparents, "
           "%lu valid tracestates, %lu puts written (%lu moved a key, "
           "%lu dropped a member), %lu too small\n", runs, n_tp_valid,
           n_ts_valid, n_put_ok, n_put_moved, n_put_dropped, n_put_full);

    /* a driver that never gets past validation would test nothing */
    i = n_tp_valid > 1000 && n_ts_valid > 1000 && n_put_ok > 1000
        && n_put_moved > 100 && n_put_dropped > 10 && n_put_full > 100;
    printf("fuzz_tracecontext: %u passed, %u failed\n", i, !i);

    return i ? 0 : 1;
}

#endif
