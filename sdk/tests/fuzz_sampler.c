/*
 * Fuzz target: the ot tracestate value (vq_ot_parse, vq_ot_format), the
 * head decision on what was parsed, th and rv values, thresholds, and
 * vq_tracestate_get.
 *
 * Any bytes: nothing may read past the input or write past the output,
 * and the results must agree with the plain reference checkers below,
 * written straight from the spec (tracestate-handling.md: list, key,
 * value, th, rv; tracestate-probability-sampling.md: the threshold), and
 * with the rules of vq_sample_head() as sampler.h states them.
 *
 * The first input byte picks the edits (th set, replaced or erased, rv
 * set), the output size and the head decision's flags; the rest is the ot
 * value.  The whole input is also tried as a tracestate (vq_tracestate_get
 * of "ot", then that value parsed), as a th and an rv, and its first 8
 * bytes as a probability.  Built with -fsanitize=fuzzer for libFuzzer, or
 * with -DVQ_FUZZ_DRIVER as a plain program that runs the target on
 * generated inputs: ot values and tracestates with mutations, and random
 * bytes.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vaquero/vaquero.h>
#include <vaquero/sampler.h>

#define FUZZ_ASSERT(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                         \
        }                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* what the driver counts, to know that it tested something */
static unsigned long  n_ot_valid, n_ot_th, n_ot_rv, n_ot_bad, n_ot_others,
                      n_fmt_ok, n_fmt_full, n_fmt_256, n_ts_ot, n_p_valid,
                      n_head_sampled, n_head_erased, n_th_valid;

#define NEVER  VQ_SAMPLE_NEVER

/* ---- reference checkers: slow and plain --------------------------- */

static int
ref_lcalpha(int c)
{
    return c >= 'a' && c <= 'z';
}

static int
ref_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int
ref_chr(int c)
{
    return (c >= 'A' && c <= 'Z') || ref_lcalpha(c) || ref_digit(c)
           || c == '.' || c == '_' || c == '-';
}

static int
ref_hexlc(int c)
{
    return ref_digit(c) || (c >= 'a' && c <= 'f');
}

/* th: 1 to 14 lowercase hex digits, extended with zeros to 14 */
static int
ref_th(const uint8_t *s, size_t n, uint64_t *t)
{
    uint64_t  v;
    size_t    i;

    if (n < 1 || n > 14) {
        return 0;
    }

    v = 0;
    for (i = 0; i < 14; i++) {
        if (i < n && !ref_hexlc(s[i])) {
            return 0;
        }
        v = v * 16 + (i < n ? (uint64_t) (ref_digit(s[i]) ? s[i] - '0'
                                                         : s[i] - 'a' + 10)
                            : 0);
    }

    *t = v;
    return 1;
}

/* rv: exactly 14 lowercase hex digits */
static int
ref_rv(const uint8_t *s, size_t n, uint64_t *rv)
{
    return n == 14 && ref_th(s, n, rv);
}

typedef struct {
    const uint8_t  *key;
    size_t          key_len;
    const uint8_t  *value;
    size_t          value_len;
} ref_member_t;

/*
 * list = list-member *( ";" list-member ), list-member = key ":" value,
 * at most 256 characters, unique keys.  Members into m (room for 257),
 * their number, or -1.
 */
static int
ref_ot(const uint8_t *s, size_t n, ref_member_t *m)
{
    size_t  start, i, k, j;
    int     count, c;

    if (n > 256) {
        return -1;
    }

    if (n == 0) {
        return 0;
    }

    count = 0;
    start = 0;

    for (i = 0; i <= n; i++) {
        if (i < n && s[i] != ';') {
            continue;
        }

        /* one member: s[start .. i) */
        for (k = start; k < i && s[k] != ':'; k++) {
            /* the first ":" */
        }

        if (k == i || k == start || !ref_lcalpha(s[start])) {
            return -1;
        }

        for (j = start + 1; j < k; j++) {
            if (!ref_lcalpha(s[j]) && !ref_digit(s[j])) {
                return -1;
            }
        }

        for (j = k + 1; j < i; j++) {
            if (!ref_chr(s[j])) {
                return -1;
            }
        }

        for (c = 0; c < count; c++) {
            if (m[c].key_len == k - start
                && memcmp(m[c].key, s + start, k - start) == 0)
            {
                return -1;
            }
        }

        m[count].key = s + start;
        m[count].key_len = k - start;
        m[count].value = s + k + 1;
        m[count].value_len = i - k - 1;
        count++;

        start = i + 1;
    }

    return count;
}

static int
ref_is(const ref_member_t *m, const char *key)
{
    return m->key_len == 2 && memcmp(m->key, key, 2) == 0;
}

/* the th value of T: hex, trailing zeros removed, "0" for 0 */
static size_t
ref_th_format(uint64_t t, char *out)
{
    static const char  hex[] = "0123456789abcdef";
    size_t             n;
    int                i;

    for (i = 13; i >= 0; i--) {
        out[i] = hex[t & 15];
        t >>= 4;
    }

    n = 14;
    while (n > 1 && out[n - 1] == '0') {
        n--;
    }

    return n;
}

/*
 * The threshold from the spec's definition, exactly, by another road:
 * frexp by halving, and (1 - p) * 2^56 * 2^53 as a 128-bit integer.
 */
static int
ref_threshold(double p, unsigned prec, uint64_t *t)
{
    unsigned __int128  x, half;
    uint64_t           m;
    unsigned           digits, cut;
    double             q;
    int                exp;

    if (prec < 1 || prec > 14 || p != p || p < 0 || p > 1) {
        return 0;
    }

    if (p == 0) {
        *t = NEVER;
        return 1;
    }

    if (p == 1) {
        *t = 0;
        return 1;
    }

    if (p < 0x1p-56) {
        return 0;
    }

    /* p = q * 2^exp, q in [0.5, 1): scaling by 2 is exact */
    q = p;
    exp = 0;
    while (q < 0.5) {
        q *= 2;
        exp--;
    }

    m = (uint64_t) (q * 0x1p53);          /* p = m * 2^(exp - 53) */

    /* x = (2^56 - p * 2^56) * 2^53 = 2^109 - m * 2^(exp + 56) */
    x = ((unsigned __int128) 1 << 109) - ((unsigned __int128) m << (exp + 56));

    digits = prec + (unsigned) (-exp) / 4;      /* precision + exp // -4 */
    if (digits > 14) {
        digits = 14;
    }
    cut = 4 * (14 - digits);

    half = (unsigned __int128) 1 << (cut + 52);
    *t = (uint64_t) (((x + half) >> (cut + 53)) << cut);

    return 1;
}

/* ---- the target ---------------------------------------------------- */

/* what vq_ot_format() must write for a parsed value and its edits */
static size_t
expect_format(const ref_member_t *m, int count, const vq_ot_t *ot, char *out)
{
    size_t  n;
    int     i;

    n = 0;

    if (ot->flags & VQ_OT_TH) {
        memcpy(out, "th:", 3);
        n = 3 + ref_th_format(ot->th, out + 3);
    }

    if (ot->flags & VQ_OT_RV) {
        if (n) {
            out[n++] = ';';
        }
        n += (size_t) sprintf(out + n, "rv:%014llx",
                              (unsigned long long) ot->rv);
    }

    for (i = 0; i < count; i++) {
        if (ref_is(&m[i], "th") || ref_is(&m[i], "rv")) {
            continue;
        }
        if (n) {
            out[n++] = ';';
        }
        memcpy(out + n, m[i].key, m[i].key_len + 1 + m[i].value_len);
        n += m[i].key_len + 1 + m[i].value_len;
    }

    return n;
}

/* format into exactly out_size bytes and check against the reference */
static void
check_format(const ref_member_t *m, int count, const vq_ot_t *ot,
    size_t out_size)
{
    char     expect[1024], *out;
    size_t   n;
    int      rc;

    n = expect_format(m, count, ot, expect);

    out = malloc(out_size ? out_size : 1);
    rc = vq_ot_format(ot, out, out_size);

    if (n > 256) {
        FUZZ_ASSERT(rc == VQ_EFULL);
        n_fmt_256++;

    } else if (n > out_size) {
        FUZZ_ASSERT(rc == VQ_EFULL);
        n_fmt_full++;

    } else {
        FUZZ_ASSERT(rc >= 0 && (size_t) rc == n);
        FUZZ_ASSERT(memcmp(out, expect, n) == 0);
        n_fmt_ok++;

        /* a valid ot value again, and a valid tracestate member value */
        if (n > 0) {
            char     ts[300];
            vq_ot_t  again;

            FUZZ_ASSERT(vq_ot_parse(out, n, &again) == VQ_OK);
            FUZZ_ASSERT((again.flags & (VQ_OT_TH | VQ_OT_RV))
                        == (ot->flags & (VQ_OT_TH | VQ_OT_RV)));
            FUZZ_ASSERT(!(again.flags & VQ_OT_TH) || again.th == ot->th);
            FUZZ_ASSERT(!(again.flags & VQ_OT_RV) || again.rv == ot->rv);
            FUZZ_ASSERT(vq_tracestate_put(NULL, 0, "ot", 2, out, n, ts,
                                          sizeof(ts)) == (int) n + 3);
        }
    }

    free(out);
}

static void
fuzz_ot(uint8_t ctrl, const uint8_t *s, size_t n)
{
    ref_member_t  m[300];
    vq_ot_t       ot, edited, before;
    uint64_t      th, rv, v;
    size_t        i;
    int           count, rc, want_th, want_rv, bad_th, bad_rv;

    count = ref_ot(s, n, m);

    memset(&ot, 0x5a, sizeof(ot));
    before = ot;
    rc = vq_ot_parse((const char *) s, n, &ot);

    FUZZ_ASSERT(rc == VQ_OK || rc == VQ_EINVAL);
    FUZZ_ASSERT((rc == VQ_OK) == (count >= 0));

    if (rc != VQ_OK) {
        FUZZ_ASSERT(memcmp(&ot, &before, sizeof(ot)) == 0);
        return;
    }

    n_ot_valid++;

    /* th and rv decoded as the reference decodes them */
    want_th = want_rv = bad_th = bad_rv = 0;
    th = rv = 0;

    for (i = 0; i < (size_t) count; i++) {
        if (ref_is(&m[i], "th")) {
            want_th = ref_th(m[i].value, m[i].value_len, &th);
            bad_th = !want_th;
        } else if (ref_is(&m[i], "rv")) {
            want_rv = ref_rv(m[i].value, m[i].value_len, &rv);
            bad_rv = !want_rv;
        } else {
            n_ot_others++;
        }
    }

    FUZZ_ASSERT(!!(ot.flags & VQ_OT_TH) == want_th);
    FUZZ_ASSERT(!!(ot.flags & VQ_OT_RV) == want_rv);
    FUZZ_ASSERT(!!(ot.flags & VQ_OT_TH_BAD) == bad_th);
    FUZZ_ASSERT(!!(ot.flags & VQ_OT_RV_BAD) == bad_rv);
    FUZZ_ASSERT(!want_th || ot.th == th);
    FUZZ_ASSERT(!want_rv || ot.rv == rv);
    n_ot_th += want_th;
    n_ot_rv += want_rv;
    n_ot_bad += bad_th || bad_rv;

    /* unchanged: never longer than the input */
    {
        char  expect[1024];

        FUZZ_ASSERT(expect_format(m, count, &ot, expect) <= n);
    }
    check_format(m, count, &ot, n);
    check_format(m, count, &ot, 256);

    /* edits picked by ctrl; T and R from the input's own bytes */
    edited = ot;
    v = n;
    for (i = 0; i < n && i < 8; i++) {
        v = v * 131 + s[n - 1 - i];
    }

    switch (ctrl & 3) {
    case 0:
        edited.flags &= ~VQ_OT_TH;
        break;
    case 1:
        edited.th = v & VQ_SAMPLE_R_MAX;
        edited.flags |= VQ_OT_TH;
        break;
    case 2:
        edited.th = (v & VQ_SAMPLE_R_MAX) & ~(((uint64_t) 1 << 40) - 1);
        edited.flags |= VQ_OT_TH;
        break;
    default:
        break;
    }

    if (ctrl & 4) {
        edited.rv = (v * 0x9e3779b97f4a7c15ULL) >> 8;
        edited.flags |= VQ_OT_RV;
    }

    check_format(m, count, &edited, 256);
    check_format(m, count, &edited, (ctrl >> 3) & 0x3f);
    check_format(m, count, &edited, 300);
}

/*
 * The head decision on a parsed value: the rules of sampler.h, checked
 * one by one.
 */
static void
fuzz_head(uint8_t ctrl, const uint8_t *data, size_t size, const vq_ot_t *in)
{
    vq_ot_t   ot;
    uint8_t   id[16];
    uint64_t  t, key_r, r;
    unsigned  flags;
    size_t    i;
    int       res, sampled;

    memset(id, 0x33, sizeof(id));
    for (i = 0; i < size && i < 16; i++) {
        id[15 - i] = data[size - 1 - i];
    }

    flags = ctrl & 0x1f;
    key_r = vq_sample_key_randomness(data, size);
    FUZZ_ASSERT(key_r <= VQ_SAMPLE_R_MAX);
    FUZZ_ASSERT(key_r == vq_sample_key_randomness(data, size));

    switch ((ctrl >> 5) & 3) {
    case 0:
        t = 0;
        break;
    case 1:
        t = NEVER;
        break;
    case 2:
        t = vq_sample_trace_randomness(id);      /* on the boundary */
        break;
    default:
        t = (key_r * 0x2545f4914f6cdd1dULL) & VQ_SAMPLE_R_MAX;
        break;
    }

    ot = *in;
    res = vq_sample_head(t, flags, id, key_r, &ot);
    sampled = res & VQ_SAMPLE_SAMPLED;

    FUZZ_ASSERT((res & ~(VQ_SAMPLE_SAMPLED | VQ_SAMPLE_UNCONFIRMED)) == 0);
    n_head_sampled += sampled != 0;

    if (!(flags & VQ_SAMPLE_CONTINUED)) {
        /* a root: nothing of the input stays */
        FUZZ_ASSERT(ot.len == 0 && ot.th_end == 0 && ot.rv_end == 0);
        in = NULL;
    }

    r = in && (in->flags & VQ_OT_RV) ? in->rv
                                     : vq_sample_trace_randomness(id);

    if ((flags & VQ_SAMPLE_CONTINUED) && (flags & VQ_SAMPLE_FOLLOW_PARENT)) {
        FUZZ_ASSERT(!!sampled == !!(flags & VQ_SAMPLE_PARENT_SAMPLED));
        FUZZ_ASSERT(!(res & VQ_SAMPLE_UNCONFIRMED));
        /* th goes on only sampled, consistent and unchanged */
        FUZZ_ASSERT(!!(ot.flags & VQ_OT_TH)
                    == (sampled && (in->flags & VQ_OT_TH) && r >= in->th));
        FUZZ_ASSERT(!(ot.flags & VQ_OT_TH) || ot.th == in->th);
        n_head_erased += (in->flags & VQ_OT_TH) && !(ot.flags & VQ_OT_TH);

    } else if (flags & VQ_SAMPLE_KEY) {
        FUZZ_ASSERT(!!sampled == (key_r >= t));
        FUZZ_ASSERT(!(res & VQ_SAMPLE_UNCONFIRMED));

        if (in) {
            FUZZ_ASSERT(!(ot.flags & VQ_OT_TH));
        } else {
            FUZZ_ASSERT((ot.flags & VQ_OT_RV) && ot.rv == key_r);
            FUZZ_ASSERT(!!(ot.flags & VQ_OT_TH) == !!sampled);
            FUZZ_ASSERT(!sampled || ot.th == t);
        }

    } else {
        FUZZ_ASSERT(!!sampled == (r >= t));
        FUZZ_ASSERT(!!(ot.flags & VQ_OT_TH) == !!sampled);
        FUZZ_ASSERT(!sampled || ot.th == t);
        FUZZ_ASSERT(!!(res & VQ_SAMPLE_UNCONFIRMED)
                    == (in && !(in->flags & VQ_OT_RV)
                        && !(flags & VQ_SAMPLE_PARENT_RANDOM)));
    }

    /* rv only ever set at a root, never changed */
    if (in) {
        FUZZ_ASSERT((ot.flags & VQ_OT_RV) == (in->flags & VQ_OT_RV));
        FUZZ_ASSERT(ot.rv == in->rv);
    }

    /* what vq_sample_head leaves always formats, and fits once th goes */
    {
        char  out[VQ_OT_VALUE_MAX];
        int   rc;

        rc = vq_ot_format(&ot, out, sizeof(out));
        if (rc == VQ_EFULL) {
            FUZZ_ASSERT(ot.flags & VQ_OT_TH);
            ot.flags &= ~VQ_OT_TH;
            rc = vq_ot_format(&ot, out, sizeof(out));
        }
        FUZZ_ASSERT(rc >= 0 && rc <= VQ_OT_VALUE_MAX);
    }
}

/* the input as a tracestate: get "ot", which must be what the list holds */
static void
fuzz_get(uint8_t ctrl, const uint8_t *s, size_t n)
{
    const char  *mv;
    size_t       mlen, i, start, end;
    vq_ot_t      ot;
    int          rc, valid, found;

    mv = NULL;
    mlen = 0;
    rc = vq_tracestate_get((const char *) s, n, "ot", 2, &mv, &mlen);
    valid = vq_tracestate_validate((const char *) s, n) == VQ_OK;

    FUZZ_ASSERT(rc == VQ_OK || rc == VQ_EEMPTY || rc == VQ_EINVAL);
    FUZZ_ASSERT((rc == VQ_EINVAL) == !valid);

    if (!valid) {
        FUZZ_ASSERT(mv == NULL && mlen == 0);
        return;
    }

    /* the member "ot=...", OWS and "," around it (a valid list) */
    found = 0;
    start = 0;

    for (i = 0; i <= n && !found; i++) {
        if (i < n && s[i] != ',') {
            continue;
        }
        end = i;
        while (start < end && (s[start] == ' ' || s[start] == '\t')) {
            start++;
        }
        while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t')) {
            end--;
        }
        if (end - start >= 3 && memcmp(s + start, "ot=", 3) == 0) {
            found = 1;
            FUZZ_ASSERT(rc == VQ_OK);
            FUZZ_ASSERT(mv == (const char *) s + start + 3);
            FUZZ_ASSERT(mlen == end - start - 3);
        }
        start = i + 1;
    }

    if (!found) {
        FUZZ_ASSERT(rc == VQ_EEMPTY);
        return;
    }

    n_ts_ot++;

    /* and what it found, as the glue will use it */
    if (vq_ot_parse(mv, mlen, &ot) == VQ_OK) {
        fuzz_head(ctrl, s, n, &ot);
    }
}

/* th, rv, thresholds on the raw bytes */
static void
fuzz_values(uint8_t ctrl, const uint8_t *s, size_t n)
{
    uint64_t  t, want, bits;
    char      out[VQ_SAMPLE_HEX_MAX];
    double    p;
    size_t    len;
    unsigned  prec;
    int       rc, ok;

    ok = ref_th(s, n, &want);
    t = 42;
    rc = vq_sample_th_parse((const char *) s, n, &t);
    FUZZ_ASSERT((rc == VQ_OK) == ok);
    FUZZ_ASSERT(ok ? t == want : t == 42);
    n_th_valid += ok;

    if (ok) {
        char  ref[14];

        len = vq_sample_th_format(t, out);
        FUZZ_ASSERT(len == ref_th_format(t, ref) && memcmp(out, ref, len) == 0);
        FUZZ_ASSERT(vq_sample_th_parse(out, len, &want) == VQ_OK
                    && want == t);
    }

    ok = ref_rv(s, n, &want);
    t = 42;
    rc = vq_sample_rv_parse((const char *) s, n, &t);
    FUZZ_ASSERT((rc == VQ_OK) == ok);
    FUZZ_ASSERT(ok ? t == want : t == 42);

    if (n < 8) {
        return;
    }

    /* raw bits, or a value in (0, 1] with an exponent down to 2^-60 */
    memcpy(&bits, s, 8);
    if (ctrl & 0x80) {
        bits = (bits & 0x000fffffffffffffULL)
               | (uint64_t) (1023 - (s[7] % 61)) << 52;
    }
    memcpy(&p, &bits, 8);
    prec = (ctrl & 0x0f) + (ctrl & 0x10 ? 0 : 1);

    ok = ref_threshold(p, prec, &want);
    t = 42;
    rc = vq_sample_threshold(p, prec, &t);
    FUZZ_ASSERT((rc == VQ_OK) == ok);
    FUZZ_ASSERT(ok ? t == want : t == 42);

    if (ok) {
        n_p_valid++;
        FUZZ_ASSERT(t < NEVER || p == 0);
        len = vq_sample_th_format(t, out);
        FUZZ_ASSERT(p == 0 ? len == 0
                           : vq_sample_th_parse(out, len, &want) == VQ_OK
                             && want == t);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vq_ot_t  ot;

    fuzz_values(size ? data[0] : 0, data, size);
    fuzz_get(size ? data[0] : 0, data, size);

    if (size > 0) {
        fuzz_ot(data[0], data + 1, size - 1);

        if (vq_ot_parse((const char *) data + 1, size - 1, &ot) == VQ_OK) {
            fuzz_head(data[0], data + 1, size - 1, &ot);
        }
    }

    return 0;
}

#ifdef VQ_FUZZ_DRIVER

#define MAX_INPUT  4096

static unsigned
pick(unsigned *seed, unsigned n)
{
    return (unsigned) rand_r(seed) % n;
}

static const char  hexlc[] = "0123456789abcdef";

static size_t
gen_hex(uint8_t *b, size_t n, unsigned *seed)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        b[i] = (uint8_t) hexlc[pick(seed, 16)];
    }

    return n;
}

/* one ot value: th, rv and other sub-keys, mostly valid, near 256 often */
static size_t
gen_ot(uint8_t *b, unsigned *seed)
{
    static const char  *const  keys[] = {
        "th", "rv", "p", "r", "foo", "k1", "x", "ts", "s1", "thx", "rvv",
        "t", "e100", "a0b1"
    };
    static const char  chrs[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                "qrstuvwxyz0123456789._-";
    size_t             n, len, i, members, m;

    n = 0;
    members = pick(seed, 5) ? 1 + pick(seed, 5) : 10 + pick(seed, 60);

    for (m = 0; m < members && n < 300; m++) {
        if (m > 0) {
            b[n++] = ';';
        }

        /* a key: a known one, or a random valid one */
        if (pick(seed, 3)) {
            const char  *k = keys[pick(seed, sizeof(keys) / sizeof(keys[0]))];

            memcpy(b + n, k, strlen(k));
            n += strlen(k);

        } else {
            len = 1 + pick(seed, 4);
            b[n++] = (uint8_t) ('a' + pick(seed, 26));
            for (i = 1; i < len; i++) {
                b[n++] = (uint8_t) (pick(seed, 3) ? 'a' + pick(seed, 26)
                                                  : '0' + pick(seed, 10));
            }
        }

        b[n++] = ':';

        /* a value: a th, an rv, or chr */
        switch (pick(seed, 4)) {
        case 0:
            n += gen_hex(b + n, pick(seed, 8) ? 1 + pick(seed, 14)
                                              : 15 + pick(seed, 2), seed);
            break;
        case 1:
            n += gen_hex(b + n, pick(seed, 8) ? 14 : 12 + pick(seed, 4), seed);
            break;
        default:
            len = pick(seed, 10) ? pick(seed, 8) : 100 + pick(seed, 160);
            for (i = 0; i < len; i++) {
                b[n++] = (uint8_t) chrs[pick(seed, sizeof(chrs) - 1)];
            }
            break;
        }
    }

    return n;
}

int
main(void)
{
    unsigned   seed, i, j, flips, runs, ok;
    uint8_t   *buf, *in;
    size_t     len;

    seed = 20260711;
    runs = 300000;
    buf = malloc(MAX_INPUT);

    for (i = 0; i < runs; i++) {
        switch (i % 5) {
        case 0:
        case 1:
            /* the control byte, then an ot value */
            buf[0] = (uint8_t) rand_r(&seed);
            len = 1 + gen_ot(buf + 1, &seed);
            break;
        case 2:
            /* a tracestate holding one */
            len = 0;
            if (pick(&seed, 2)) {
                memcpy(buf, "congo=t61rcWkgMzE, ", 19);
                len = 19;
            }
            memcpy(buf + len, "ot=", 3);
            len += 3;
            len += gen_ot(buf + len, &seed);
            if (pick(&seed, 2)) {
                memcpy(buf + len, " ,rojo=00f067aa0ba902b7", 23);
                len += 23;
            }
            break;
        case 3:
            /* a th, an rv, or a probability */
            len = pick(&seed, 3) ? 1 + pick(&seed, 16) : 8 + pick(&seed, 4);
            if (pick(&seed, 2)) {
                gen_hex(buf, len, &seed);
            } else {
                for (j = 0; j < len; j++) {
                    buf[j] = (uint8_t) rand_r(&seed);
                }
            }
            break;
        default:
            len = pick(&seed, 64);
            for (j = 0; j < len; j++) {
                buf[j] = (uint8_t) rand_r(&seed);
            }
            break;
        }

        /* a few bytes changed, now and then */
        if (len > 1 && pick(&seed, 3) == 0) {
            flips = 1 + pick(&seed, 3);
            for (j = 0; j < flips; j++) {
                buf[1 + pick(&seed, (unsigned) len - 1)] = pick(&seed, 2)
                    ? (uint8_t) rand_r(&seed)
                    : (uint8_t) ";:=,tThrv0fF "[pick(&seed, 13)];
            }
        }

        /* exactly len bytes, so that ASan sees a read past them */
        in = malloc(len ? len : 1);
        memcpy(in, buf, len);
        LLVMFuzzerTestOneInput(in, len);
        free(in);
    }

    free(buf);

    printf("fuzz_sampler: %u inputs: %lu valid ot values (%lu th, %lu rv, "
           "%lu bad th/rv, %lu other sub-keys), formats: %lu written, "
           "%lu too small, %lu over 256; %lu ot in tracestates; "
           "%lu sampled, %lu th erased; %lu th values, %lu probabilities\n",
           runs, n_ot_valid, n_ot_th, n_ot_rv, n_ot_bad, n_ot_others,
           n_fmt_ok, n_fmt_full, n_fmt_256, n_ts_ot, n_head_sampled,
           n_head_erased, n_th_valid, n_p_valid);

    /* a driver that never gets past validation would test nothing */
    ok = n_ot_valid > 10000 && n_ot_th > 1000 && n_ot_rv > 1000
         && n_ot_bad > 1000 && n_fmt_ok > 10000 && n_fmt_full > 1000
         && n_fmt_256 > 100 && n_ts_ot > 1000 && n_head_sampled > 1000
         && n_head_erased > 100 && n_th_valid > 1000 && n_p_valid > 1000;
    printf("fuzz_sampler: %u passed, %u failed\n", ok, !ok);

    return ok ? 0 : 1;
}

#endif
