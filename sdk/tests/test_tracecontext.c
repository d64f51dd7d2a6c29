/*
 * W3C Trace Context: traceparent parsing and formatting, tracestate
 * validation, vq_tracestate_put() and vq_tracestate_get().
 *
 * Expected results come from the spec (https://www.w3.org/TR/trace-context-2/,
 * in w3c/trace-context spec/20-http_request_header_format.md, "Traceparent
 * Header" and "Tracestate Header"; spec/30-processing-model.md) and from
 * its test suite (w3c/trace-context test/test.py): a case from test.py
 * names its test method.  Every input is handed over in a buffer of
 * exactly its length, so that under ASan a read past it fails the test.
 *
 * test.py's cases about header names, two traceparent headers, and a
 * tracestate without a traceparent are about which headers the caller
 * hands over, not about these functions, and are not here.
 */

#include <stdlib.h>

#include <vaquero/vaquero.h>
#include <vaquero/tracecontext.h>
#include "check.h"

/* test.py's ids */
#define TID  "12345678901234567890123456789012"
#define PID  "1234567890123456"

static const uint8_t  tid_bytes[16] = {
    0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56,
    0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12
};
static const uint8_t  pid_bytes[8] = {
    0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56
};

static void
report(int line, const char *what, const char *s, size_t len, int got,
    int want)
{
    size_t  i;

    if (got == want) {
        check_passed++;
        return;
    }

    check_failed++;
    fprintf(stderr, "%s:%d: %s \"", __FILE__, line, what);

    for (i = 0; i < len && i < 80; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f) {
            fputc(s[i], stderr);
        } else {
            fprintf(stderr, "\\x%02x", (unsigned char) s[i]);
        }
    }

    fprintf(stderr, "%s\" (%zu bytes): got %d, want %d\n",
            len > 80 ? "..." : "", len, got, want);
}

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

static int
tp_parse_len(const char *s, size_t len, vq_traceparent_t *tp)
{
    vq_traceparent_t   scratch;
    char              *p;
    int                rc;

    p = exact(s, len);
    rc = vq_traceparent_parse(p, len, tp ? tp : &scratch);
    free(p);

    return rc;
}

static int
ts_validate_len(const char *s, size_t len)
{
    char  *p;
    int    rc;

    p = exact(s, len);
    rc = vq_tracestate_validate(p, len);
    free(p);

    return rc;
}

#define TP(s, want)                                                          \
    report(__LINE__, "traceparent", s, strlen(s),                            \
           tp_parse_len(s, strlen(s), NULL), want)

#define TS(s, want)                                                          \
    report(__LINE__, "tracestate", s, strlen(s),                             \
           ts_validate_len(s, strlen(s)), want)

/* Several tracestate headers as the caller combines them (RFC 7230 3.2.2). */
static char *
join(const char *const *headers, size_t n)
{
    size_t   i, len;
    char    *out;

    len = 0;
    for (i = 0; i < n; i++) {
        len += strlen(headers[i]) + 1;
    }

    out = xmalloc(len + 1);
    out[0] = '\0';

    for (i = 0; i < n; i++) {
        if (i > 0) {
            strcat(out, ",");
        }
        strcat(out, headers[i]);
    }

    return out;
}

static char *
repeat(char c, size_t n, const char *suffix)
{
    char  *s;

    s = xmalloc(n + strlen(suffix) + 1);
    memset(s, c, n);
    strcpy(s + n, suffix);

    return s;
}

/* ---- traceparent --------------------------------------------------- */

static void
test_traceparent_valid(void)
{
    vq_traceparent_t  tp;

    /* test_traceparent_included_tracestate_missing */
    memset(&tp, 0xaa, sizeof(tp));
    CHECK_INT(tp_parse_len("00-" TID "-" PID "-01", 55, &tp), VQ_OK);
    CHECK_INT(tp.version, 0);
    CHECK_INT(tp.flags, 0x01);
    CHECK(memcmp(tp.trace_id, tid_bytes, 16) == 0);
    CHECK(memcmp(tp.parent_id, pid_bytes, 8) == 0);

    /* spec "Examples of HTTP traceparent Headers" */
    CHECK_INT(tp_parse_len("00-4bf92f3577b34da6a3ce929d0e0e4736-"
                           "00f067aa0ba902b7-01", 55, &tp), VQ_OK);
    CHECK_INT(tp.flags, VQ_TRACE_FLAG_SAMPLED);
    CHECK_INT(tp.trace_id[0], 0x4b);
    CHECK_INT(tp.trace_id[15], 0x36);
    CHECK_INT(tp.parent_id[0], 0x00);
    CHECK_INT(tp.parent_id[7], 0xb7);
    TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", VQ_OK);

    /* spec "Relationship Between the Headers" */
    TP("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", VQ_OK);
    TP("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01", VQ_OK);
    TP("00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01", VQ_OK);

    /* spec "trace-id" / "parent-id": only all zeroes is invalid */
    TP("00-00000000000000000000000000000001-0000000000000001-00", VQ_OK);
    TP("00-10000000000000000000000000000000-1000000000000000-00", VQ_OK);
    TP("00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-00", VQ_OK);

    /* test_traceparent_ows_handling: OWS around the value is ignored */
    TP(" 00-" TID "-" PID "-01", VQ_OK);
    TP("\t00-" TID "-" PID "-01", VQ_OK);
    TP("00-" TID "-" PID "-01 ", VQ_OK);
    TP("00-" TID "-" PID "-01\t", VQ_OK);
    TP("\t 00-" TID "-" PID "-01 \t", VQ_OK);
    CHECK_INT(tp_parse_len("\t 00-" TID "-" PID "-01 \t", 59, &tp), VQ_OK);
    CHECK(memcmp(tp.trace_id, tid_bytes, 16) == 0);
}

static void
test_traceparent_version(void)
{
    vq_traceparent_t  tp;

    /* test_traceparent_version_0x00: version 00 is exactly 55 characters */
    TP("00-" TID "-" PID "-01.", VQ_EINVAL);
    TP("00-" TID "-" PID "-01-what-the-future-will-be-like", VQ_EINVAL);
    TP("00-" TID "-" PID "-01-", VQ_EINVAL);

    /* test_traceparent_version_0xcc: a higher version, parsed as 00 */
    CHECK_INT(tp_parse_len("cc-" TID "-" PID "-01", 55, &tp), VQ_OK);
    CHECK_INT(tp.version, 0xcc);
    CHECK(memcmp(tp.trace_id, tid_bytes, 16) == 0);
    CHECK(memcmp(tp.parent_id, pid_bytes, 8) == 0);

    TP("cc-" TID "-" PID "-01-what-the-future-will-be-like", VQ_OK);
    TP("cc-" TID "-" PID "-01.what-the-future-will-be-like", VQ_EINVAL);

    /*
     * spec "Versioning of traceparent": the flags are "either at the end
     * of the string or followed by a dash"; shorter than 55: restart
     */
    TP("cc-" TID "-" PID "-01-", VQ_OK);
    TP("01-" TID "-" PID "-01-x", VQ_OK);
    TP("fe-" TID "-" PID "-01", VQ_OK);
    TP("cc-" TID "-" PID "-0", VQ_EINVAL);
    TP("cc-" TID "-" PID "-", VQ_EINVAL);
    TP("cc-" TID "-" PID "-01x", VQ_EINVAL);
    TP("cc-" TID "-" PID "-011-", VQ_EINVAL);
    /* the version-00 rules still apply to the fields of a higher version */
    TP("cc-00000000000000000000000000000000-" PID "-01", VQ_EINVAL);
    TP("cc-" TID "-0000000000000000-01", VQ_EINVAL);
    TP("cc-" TID "-" PID "-0A", VQ_EINVAL);
    TP("cc-" TID "-" PID "-01-" "\x80", VQ_OK);  /* unknown fields unread */

    /* test_traceparent_version_0xff: version ff is forbidden */
    TP("ff-" TID "-" PID "-01", VQ_EINVAL);
    TP("ff-" TID "-" PID "-01-what-the-future-will-be-like", VQ_EINVAL);

    /* test_traceparent_version_illegal_characters */
    TP(".0-" TID "-" PID "-01", VQ_EINVAL);
    TP("0.-" TID "-" PID "-01", VQ_EINVAL);
    /* spec "version": 2HEXDIGLC */
    TP("0A-" TID "-" PID "-01", VQ_EINVAL);
    TP("CC-" TID "-" PID "-01", VQ_EINVAL);
    TP("g0-" TID "-" PID "-01", VQ_EINVAL);

    /* test_traceparent_version_too_long / _too_short */
    TP("000-" TID "-" PID "-01", VQ_EINVAL);
    TP("0000-" TID "-" PID "-01", VQ_EINVAL);
    TP("0-" TID "-" PID "-01", VQ_EINVAL);
}

static void
test_traceparent_fields(void)
{
    /* test_traceparent_trace_id_all_zero, spec "trace-id" */
    TP("00-00000000000000000000000000000000-" PID "-01", VQ_EINVAL);

    /* test_traceparent_trace_id_illegal_characters */
    TP("00-.2345678901234567890123456789012-" PID "-01", VQ_EINVAL);
    TP("00-1234567890123456789012345678901.-" PID "-01", VQ_EINVAL);

    /* test_traceparent_trace_id_too_long / _too_short */
    TP("00-123456789012345678901234567890123-" PID "-01", VQ_EINVAL);
    TP("00-1234567890123456789012345678901-" PID "-01", VQ_EINVAL);

    /* test_traceparent_parent_id_all_zero, spec "parent-id" */
    TP("00-" TID "-0000000000000000-01", VQ_EINVAL);

    /* test_traceparent_parent_id_illegal_characters */
    TP("00-" TID "-.234567890123456-01", VQ_EINVAL);
    TP("00-" TID "-123456789012345.-01", VQ_EINVAL);

    /* test_traceparent_parent_id_too_long / _too_short */
    TP("00-" TID "-12345678901234567-01", VQ_EINVAL);
    TP("00-" TID "-123456789012345-01", VQ_EINVAL);

    /* test_traceparent_trace_flags_illegal_characters */
    TP("00-" TID "-" PID "-.0", VQ_EINVAL);
    TP("00-" TID "-" PID "-0.", VQ_EINVAL);

    /* test_traceparent_trace_flags_too_long / _too_short */
    TP("00-" TID "-" PID "-001", VQ_EINVAL);
    TP("00-" TID "-" PID "-1", VQ_EINVAL);

    /* spec HEXDIGLC: uppercase hex is not hex here */
    TP("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", VQ_EINVAL);
    TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", VQ_EINVAL);
    TP("00-4bf92f3577b34da6a3ce929d0e0e473A-00f067aa0ba902b7-01", VQ_EINVAL);
    TP("00-" TID "-" PID "-0A", VQ_EINVAL);
    TP("00-" TID "-" PID "-F1", VQ_EINVAL);

    /* missing, moved and extra dashes */
    TP("00" TID "-" PID "-01", VQ_EINVAL);
    TP("00-" TID PID "-01", VQ_EINVAL);
    TP("00-" TID "-" PID "01", VQ_EINVAL);
    TP("00_" TID "-" PID "-01", VQ_EINVAL);
    TP("00-" TID "_" PID "-01", VQ_EINVAL);
    TP("00-" TID "-" PID "_01", VQ_EINVAL);
    TP("00--" TID "-" PID "-01", VQ_EINVAL);
    TP("00-" TID "--" PID "-01", VQ_EINVAL);
    TP("00-" TID "-" PID "--01", VQ_EINVAL);
    TP("-00-" TID "-" PID "-01", VQ_EINVAL);
    TP("00-1234567890123456-7890123456789012-" PID "-01", VQ_EINVAL);

    /* whitespace: only SP and HTAB, only around the value */
    TP("00- " TID "-" PID "-01", VQ_EINVAL);
    TP("00-" TID " -" PID "-01", VQ_EINVAL);
    TP("\n00-" TID "-" PID "-01", VQ_EINVAL);
    TP("00-" TID "-" PID "-01\r", VQ_EINVAL);
    TP("00-" TID "-" PID "-01\v", VQ_EINVAL);
    TP("00-" TID "-" PID "-01 x", VQ_EINVAL);

    /* nothing, or only OWS */
    TP("", VQ_EINVAL);
    TP(" \t ", VQ_EINVAL);
    CHECK_INT(vq_traceparent_parse(NULL, 0, NULL), VQ_EINVAL);
}

/* The flags byte is kept as received; which bits mean what is the caller's. */
static void
test_traceparent_flags(void)
{
    vq_traceparent_t  tp;

    CHECK_INT(tp_parse_len("00-" TID "-" PID "-00", 55, &tp), VQ_OK);
    CHECK_INT(tp.flags, 0x00);

    /* Level 2 "Random Trace ID Flag": the second bit */
    CHECK_INT(tp_parse_len("00-" TID "-" PID "-02", 55, &tp), VQ_OK);
    CHECK_INT(tp.flags & VQ_TRACE_FLAG_RANDOM, VQ_TRACE_FLAG_RANDOM);
    CHECK_INT(tp.flags & VQ_TRACE_FLAG_SAMPLED, 0);

    CHECK_INT(tp_parse_len("00-" TID "-" PID "-03", 55, &tp), VQ_OK);
    CHECK_INT(tp.flags, VQ_TRACE_FLAG_SAMPLED | VQ_TRACE_FLAG_RANDOM);

    /*
     * spec "trace-flags": "09" is sampled plus an unknown flag, a valid
     * 2HEXDIGLC; reserved bits are kept here, masked by the caller
     */
    CHECK_INT(tp_parse_len("00-" TID "-" PID "-09", 55, &tp), VQ_OK);
    CHECK_INT(tp.flags, 0x09);
    CHECK_INT(tp.flags & VQ_TRACE_FLAGS_KNOWN, VQ_TRACE_FLAG_SAMPLED);

    CHECK_INT(tp_parse_len("00-" TID "-" PID "-ff", 55, &tp), VQ_OK);
    CHECK_INT(tp.flags, 0xff);

    /* a higher version: the same byte, read the same way */
    CHECK_INT(tp_parse_len("cc-" TID "-" PID "-fe-0011", 60, &tp), VQ_OK);
    CHECK_INT(tp.version, 0xcc);
    CHECK_INT(tp.flags, 0xfe);
    CHECK_INT(tp.flags & VQ_TRACE_FLAGS_KNOWN, VQ_TRACE_FLAG_RANDOM);
}

/* VQ_EINVAL leaves *tp as it was; only len bytes are read. */
static void
test_traceparent_bounds(void)
{
    vq_traceparent_t  tp, before;
    const char       *s = "00-" TID "-" PID "-01XYZ";

    memset(&tp, 0x5a, sizeof(tp));
    before = tp;
    CHECK_INT(tp_parse_len("00-" TID "-0000000000000000-01", 55, &tp),
              VQ_EINVAL);
    CHECK(memcmp(&tp, &before, sizeof(tp)) == 0);

    /* the bytes after len are not part of the value */
    CHECK_INT(tp_parse_len(s, 55, &tp), VQ_OK);
    CHECK_INT(tp_parse_len(s, 56, &tp), VQ_EINVAL);
    CHECK_INT(tp_parse_len(s, 54, &tp), VQ_EINVAL);
    CHECK_INT(tp_parse_len(s, 0, &tp), VQ_EINVAL);

    /* a NUL is a character like any other */
    CHECK_INT(tp_parse_len("00-" TID "-" PID "-01\0", 56, &tp), VQ_EINVAL);
    CHECK_INT(tp_parse_len("00-" TID "-" PID "\0-01", 56, &tp), VQ_EINVAL);
}

/*
 * Every byte value at every position of a valid version-00 value: valid
 * exactly when it is "-" at the three dash positions and HEXDIGLC
 * elsewhere (spec ABNF "version-format").
 */
static void
test_traceparent_every_byte(void)
{
    char      s[56];
    unsigned  pos, c, wrong;
    int       want, got;

    wrong = 0;

    for (pos = 0; pos < VQ_TRACEPARENT_LEN; pos++) {
        for (c = 0; c < 256; c++) {
            memcpy(s, "00-" TID "-" PID "-01", 55);
            s[pos] = (char) c;

            if (pos == 2 || pos == 35 || pos == 52) {
                want = c == '-';
            } else {
                want = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
            }

            got = tp_parse_len(s, 55, NULL) == VQ_OK;

            if (got != want) {
                wrong++;
                fprintf(stderr, "position %u byte 0x%02x: got %d\n", pos, c,
                        got);
            }
        }
    }

    CHECK_INT(wrong, 0);
}

static void
test_traceparent_format(void)
{
    vq_traceparent_t  tp;
    char              out[64];
    unsigned          i;

    memset(out, '#', sizeof(out));
    vq_traceparent_format(tid_bytes, pid_bytes, 0x01, out);
    out[63] = '\0';
    CHECK(memcmp(out, "00-" TID "-" PID "-01", 55) == 0);
    CHECK(out[55] == '#');                   /* exactly 55 bytes, no NUL */

    CHECK_INT(tp_parse_len("00-4bf92f3577b34da6a3ce929d0e0e4736-"
                           "00f067aa0ba902b7-01", 55, &tp), VQ_OK);
    vq_traceparent_format(tp.trace_id, tp.parent_id, 0xff, out);
    CHECK(memcmp(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
                 55) == 0);

    /* a higher version goes out as 00, with the known flags only */
    CHECK_INT(tp_parse_len("cc-" TID "-" PID "-ff-future", 62, &tp), VQ_OK);
    vq_traceparent_format(tp.trace_id, tp.parent_id,
                          tp.flags & VQ_TRACE_FLAGS_KNOWN, out);
    CHECK(memcmp(out, "00-" TID "-" PID "-03", 55) == 0);

    /* parse(format(x)) == x for every flags byte */
    for (i = 0; i < 256; i++) {
        vq_traceparent_format(tid_bytes, pid_bytes, (uint8_t) i, out);
        memset(&tp, 0, sizeof(tp));
        if (tp_parse_len(out, 55, &tp) != VQ_OK
            || tp.version != 0 || tp.flags != i
            || memcmp(tp.trace_id, tid_bytes, 16) != 0
            || memcmp(tp.parent_id, pid_bytes, 8) != 0)
        {
            break;
        }
    }
    CHECK_INT(i, 256);
}

/* ---- tracestate ---------------------------------------------------- */

static void
test_tracestate_test_py(void)
{
    char        *s, *key_without_vendor_member, *key_with_vendor_member;
    char         value[128];
    size_t       n;
    unsigned     c;

    /* test_tracestate_included_traceparent_included */
    TS("foo=1,bar=2", VQ_OK);

    /* test_tracestate_empty_header: headers "", "foo=1" + "", "" + "foo=1" */
    TS("", VQ_OK);
    {
        const char  *h1[] = { "foo=1", "" };
        const char  *h2[] = { "", "foo=1" };

        s = join(h1, 2);
        TS(s, VQ_OK);
        free(s);
        s = join(h2, 2);
        TS(s, VQ_OK);
        free(s);
    }

    /* test_tracestate_multiple_headers_different_keys */
    {
        const char  *h[] = { "foo=1,bar=2", "rojo=1,congo=2", "baz=3" };

        s = join(h, 3);
        CHECK_STR(s, "foo=1,bar=2,rojo=1,congo=2,baz=3");
        TS(s, VQ_OK);
        free(s);
    }

    /* test_tracestate_duplicated_keys: the whole header is invalid */
    TS("foo=1,foo=1", VQ_EINVAL);
    TS("foo=1,foo=2", VQ_EINVAL);
    {
        const char  *h1[] = { "foo=1", "foo=1" };
        const char  *h2[] = { "foo=1", "foo=2" };

        s = join(h1, 2);
        TS(s, VQ_EINVAL);
        free(s);
        s = join(h2, 2);
        TS(s, VQ_EINVAL);
        free(s);
    }

    /* test_tracestate_all_allowed_characters */
    n = 0;
    for (c = 0x20; c <= 0x2b; c++) {
        value[n++] = (char) c;
    }
    for (c = 0x2d; c <= 0x3c; c++) {
        value[n++] = (char) c;
    }
    for (c = 0x3e; c <= 0x7e; c++) {
        value[n++] = (char) c;
    }
    value[n] = '\0';

    key_without_vendor_member = xmalloc(256);
    strcpy(key_without_vendor_member,
           "abcdefghijklmnopqrstuvwxyz0123456789_-*/=");
    strcat(key_without_vendor_member, value);
    TS(key_without_vendor_member, VQ_OK);

    key_with_vendor_member = xmalloc(256);
    strcpy(key_with_vendor_member,
           "abcdefghijklmnopqrstuvwxyz0123456789_-*/@a-z0-9_-*/=");
    strcat(key_with_vendor_member, value);
    TS(key_with_vendor_member, VQ_OK);

    free(key_without_vendor_member);
    free(key_with_vendor_member);

    /* test_tracestate_ows_handling */
    TS("foo=1 \t , \t bar=2, \t baz=3", VQ_OK);
    TS("foo=1\t \t,\t \tbar=2,\t \tbaz=3", VQ_OK);
    TS(" foo=1", VQ_OK);
    TS("\tfoo=1", VQ_OK);
    TS("foo=1 ", VQ_OK);
    TS("foo=1\t", VQ_OK);
    TS("\t foo=1 \t", VQ_OK);

    /* test_tracestate_key_illegal_characters */
    TS("foo =1", VQ_EINVAL);
    TS("FOO=1", VQ_EINVAL);
    TS("foo.bar=1", VQ_EINVAL);

    /*
     * test_tracestate_key_illegal_vendor_format.  The key must start with
     * lcalpha or DIGIT; after that "@" is an ordinary keychar (spec "Key",
     * since w3c/trace-context#386; test.py follows since #584, which made
     * the three "@" cases below valid).
     */
    TS("@foo=1,bar=2", VQ_EINVAL);
    TS("foo@=1,bar=2", VQ_OK);
    TS("foo@@bar=1,bar=2", VQ_OK);
    TS("foo@bar@baz=1,bar=2", VQ_OK);

    /*
     * test_tracestate_key_length_limit: at most 256 characters in all.
     * The old tenant (241) / system (14) limits are gone from the
     * grammar: a key with "@" only has the 256 limit (#386, #584).
     */
    {
        const char  *h[2] = { "foo=1", NULL };

        h[1] = repeat('z', 256, "=1");
        s = join(h, 2);
        TS(s, VQ_OK);
        free(s);
        free((char *) h[1]);

        h[1] = repeat('z', 257, "=1");
        s = join(h, 2);
        TS(s, VQ_EINVAL);
        free(s);
        free((char *) h[1]);

        /* "t" * 241 + "@" + "v" * 14: 256 characters */
        h[1] = repeat('t', 241, "@vvvvvvvvvvvvvv=1");
        s = join(h, 2);
        TS(s, VQ_OK);
        free(s);
        free((char *) h[1]);

        /* "t" * 242 + "@v": 244 characters, a valid key now */
        h[1] = repeat('t', 242, "@v=1");
        s = join(h, 2);
        TS(s, VQ_OK);
        free(s);
        free((char *) h[1]);

        /* "t@" + "v" * 15: 17 characters, a valid key now */
        TS("foo=1,t@vvvvvvvvvvvvvvv=1", VQ_OK);

        /* "t" * 242 + "@" + "v" * 14: 257 characters */
        h[1] = repeat('t', 242, "@vvvvvvvvvvvvvv=1");
        s = join(h, 2);
        TS(s, VQ_EINVAL);
        free(s);
        free((char *) h[1]);
    }

    /* test_tracestate_value_illegal_characters */
    TS("foo=bar=baz", VQ_EINVAL);
    TS("foo=,bar=3", VQ_EINVAL);
}

/* test_tracestate_member_count_limit: 32 members from 4 headers, then 33 */
static void
test_tracestate_member_count(void)
{
    const char  *h[] = {
        "bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,bar06=06,bar07=07,"
        "bar08=08,bar09=09,bar10=10",
        "bar11=11,bar12=12,bar13=13,bar14=14,bar15=15,bar16=16,bar17=17,"
        "bar18=18,bar19=19,bar20=20",
        "bar21=21,bar22=22,bar23=23,bar24=24,bar25=25,bar26=26,bar27=27,"
        "bar28=28,bar29=29,bar30=30",
        "bar31=31,bar32=32",
    };
    char        *s, *t;

    s = join(h, 4);
    TS(s, VQ_OK);

    /*
     * Only non-empty members count toward the 32: empty ones come from
     * joining headers, which the spec says is why they are allowed.
     */
    t = xmalloc(strlen(s) + 16);
    strcpy(t, " , ,");
    strcat(t, s);
    strcat(t, ",, \t,");
    TS(t, VQ_OK);
    free(t);

    h[3] = "bar31=31,bar32=32,bar33=33";
    free(s);
    s = join(h, 4);
    TS(s, VQ_EINVAL);
    free(s);
}

static void
test_tracestate_spec(void)
{
    char  buf[300];

    /* spec "Examples of tracestate HTTP Headers" and the sections above */
    TS("rojo=00f067aa0ba902b7", VQ_OK);
    TS("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", VQ_OK);
    TS("congo=t61rcWkgMzE", VQ_OK);
    TS("congo=ucfJifl5GOE,rojo=00f067aa0ba902b7", VQ_OK);
    TS("vendorname1=opaqueValue1,vendorname2=opaqueValue2", VQ_OK);
    TS("congo=congosSecondPosition,rojo=rojosFirstPosition", VQ_OK);
    TS("congo=congosFirstPosition,rojo=rojosFirstPosition,"
       "congo=congosSecondPosition", VQ_EINVAL);

    /* "Empty and whitespace-only list members are allowed" */
    TS(",", VQ_OK);
    TS(",,,", VQ_OK);
    TS(" ", VQ_OK);
    TS(" \t , \t ,", VQ_OK);
    TS("foo=1,,bar=2", VQ_OK);
    TS("foo=1, ,bar=2", VQ_OK);
    CHECK_INT(vq_tracestate_validate(NULL, 0), VQ_OK);

    /* key: ( lcalpha / DIGIT ) first; up to 256 characters */
    TS("1foo=1", VQ_OK);
    TS("0=1", VQ_OK);
    TS("a=1", VQ_OK);
    TS("_foo=1", VQ_EINVAL);
    TS("-foo=1", VQ_EINVAL);
    TS("*foo=1", VQ_EINVAL);
    TS("/foo=1", VQ_EINVAL);
    TS("=1", VQ_EINVAL);
    TS("foo", VQ_EINVAL);
    TS("foo=1,bar", VQ_EINVAL);
    TS("fOo=1", VQ_EINVAL);
    TS("f\xc3\xa9=1", VQ_EINVAL);

    /* value: 1 to 256 of 0x20-0x7E but "," and "=", not ending in a space */
    memcpy(buf, "k=", 2);
    memset(buf + 2, 'v', 256);
    buf[258] = '\0';
    TS(buf, VQ_OK);
    strcat(buf, "v");
    TS(buf, VQ_EINVAL);

    TS("foo= bar", VQ_OK);          /* leading spaces are part of the value */
    TS("foo=  ", VQ_EINVAL);        /* trailing spaces are OWS: empty value */
    TS("foo=", VQ_EINVAL);
    TS("foo=bar ,baz=1", VQ_OK);
    TS("foo=b a r", VQ_OK);
    TS("foo=a\tb", VQ_EINVAL);
    TS("foo=\tb", VQ_EINVAL);
    TS("foo=a\x7f", VQ_EINVAL);
    TS("foo=a\x1f", VQ_EINVAL);
    TS("foo=\xc3\xa9", VQ_EINVAL);
    TS("foo=~!\"#$%&'()*+-./:;<>?@[\\]^_`{|}", VQ_OK);

    /* OWS is SP and HTAB only */
    TS("\nfoo=1", VQ_EINVAL);
    TS("foo=1\r", VQ_EINVAL);
    TS("foo=1\r\n", VQ_EINVAL);
    TS("foo=1,\vbar=2", VQ_EINVAL);

    /* only len bytes are read */
    CHECK_INT(ts_validate_len("foo=1,bar=2", 5), VQ_OK);
    CHECK_INT(ts_validate_len("foo=1,bar=2", 6), VQ_OK);
    CHECK_INT(ts_validate_len("foo=1,bar=2", 7), VQ_EINVAL);
    CHECK_INT(ts_validate_len("foo=1,bar=2", 4), VQ_EINVAL);
    CHECK_INT(ts_validate_len("foo=1\0", 6), VQ_EINVAL);
}

/*
 * Every byte value in a key and in a value, against the ABNF of spec
 * "Key" and "Value" spelled out again here.
 */
static void
test_tracestate_every_byte(void)
{
    char      s[8];
    unsigned  c, wrong;
    int       lc, digit, keychar, nblk, ows;

    wrong = 0;

    for (c = 0; c < 256; c++) {
        lc = c >= 'a' && c <= 'z';
        digit = c >= '0' && c <= '9';
        keychar = lc || digit || c == '_' || c == '-' || c == '*' || c == '/'
                  || c == '@';
        nblk = (c >= 0x21 && c <= 0x2b) || (c >= 0x2d && c <= 0x3c)
               || (c >= 0x3e && c <= 0x7e);
        ows = c == ' ' || c == '\t';

        /* first character of a key; OWS and "," only make a member empty */
        memcpy(s, "?a=1", 4);
        s[0] = (char) c;
        wrong += (ts_validate_len(s, 4) == VQ_OK) != (lc || digit || ows
                                                      || c == ',');

        /* later characters of a key */
        memcpy(s, "a?=1", 4);
        s[1] = (char) c;
        wrong += (ts_validate_len(s, 4) == VQ_OK) != keychar;

        /* inside a value */
        memcpy(s, "a=x?x", 5);
        s[3] = (char) c;
        wrong += (ts_validate_len(s, 5) == VQ_OK) != (nblk || c == ' ');

        /* the last character of a value; trailing OWS is not the value */
        memcpy(s, "a=x?", 4);
        s[3] = (char) c;
        wrong += (ts_validate_len(s, 4) == VQ_OK) != (nblk || ows
                                                      || c == ',');

        /* a value of one character */
        memcpy(s, "a=?", 3);
        s[2] = (char) c;
        wrong += (ts_validate_len(s, 3) == VQ_OK) != nblk;
    }

    CHECK_INT(wrong, 0);
}

/* ---- vq_tracestate_put --------------------------------------------- */

static char  put_out[20000];

/* put into a buffer of exactly out_size bytes; the result as a string */
static const char *
put(const char *value, const char *key, const char *member_value,
    size_t out_size, int *rc)
{
    char    *in, *out;
    size_t   len;

    len = value ? strlen(value) : 0;
    in = value ? exact(value, len) : NULL;
    out = xmalloc(out_size);

    *rc = vq_tracestate_put(in, len, key, strlen(key), member_value,
                            strlen(member_value), out, out_size);

    put_out[0] = '\0';
    if (*rc >= 0) {
        memcpy(put_out, out, (size_t) *rc);
        put_out[*rc] = '\0';
    }

    free(in);
    free(out);

    return put_out;
}

#define PUT(value, key, mv, want)                                            \
    do {                                                                     \
        int  rc_;                                                            \
        CHECK_STR(put(value, key, mv, sizeof(put_out), &rc_), want);         \
        CHECK_INT(rc_, (int) strlen(want));                                  \
        CHECK_INT(ts_validate_len(put_out, strlen(put_out)), VQ_OK);         \
    } while (0)

#define PUT_FAILS(value, key, mv, want)                                      \
    do {                                                                     \
        int  rc_;                                                            \
        put(value, key, mv, sizeof(put_out), &rc_);                          \
        CHECK_INT(rc_, want);                                                \
    } while (0)

static void
test_put(void)
{
    const char  *h[] = {
        "bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,bar06=06,bar07=07,"
        "bar08=08,bar09=09,bar10=10",
        "bar11=11,bar12=12,bar13=13,bar14=14,bar15=15,bar16=16,bar17=17,"
        "bar18=18,bar19=19,bar20=20",
        "bar21=21,bar22=22,bar23=23,bar24=24,bar25=25,bar26=26,bar27=27,"
        "bar28=28,bar29=29,bar30=30",
        "bar31=31,bar32=32",
    };
    char        *s, *want;
    const char  *got;
    int          rc;

    /* spec "Relationship Between the Headers": Rojo adds its entry left */
    PUT("congo=t61rcWkgMzE", "rojo", "00f067aa0ba902b7",
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");

    /* ... and Congo, coming back, moves its updated entry to the left */
    PUT("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "congo", "ucfJifl5GOE",
        "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");

    /* spec "Combined Header Value" */
    PUT("congo=congosFirstPosition,rojo=rojosFirstPosition", "congo",
        "congosSecondPosition",
        "congo=congosSecondPosition,rojo=rojosFirstPosition");

    /* spec "Mutating the tracestate Field": the others keep their order */
    PUT("a=1,b=2,c=3", "b", "9", "b=9,a=1,c=3");
    PUT("a=1,b=2,c=3", "c", "9", "c=9,a=1,b=2");
    PUT("a=1,b=2,c=3", "a", "9", "a=9,b=2,c=3");
    PUT("a=1,b=2,c=3", "ot", "th:8", "ot=th:8,a=1,b=2,c=3");
    PUT("ot=th:c;rv:1234", "ot", "th:8", "ot=th:8");

    /* no tracestate yet */
    PUT("", "ot", "th:8", "ot=th:8");
    PUT(NULL, "ot", "th:8", "ot=th:8");
    PUT(" , ,", "ot", "th:8", "ot=th:8");

    /* OWS and empty members are not carried over; values are */
    PUT(" a=1 , ,\tb=2\t,", "ot", "th:8", "ot=th:8,a=1,b=2");
    PUT("a= x ,b=y  y", "ot", "th:8", "ot=th:8,a= x,b=y  y");
    PUT("foo@bar=1", "k", " v", "k= v,foo@bar=1");
    PUT("a=1", "t@vvvvvvvvvvvvvvv", "1", "t@vvvvvvvvvvvvvvv=1,a=1");

    /* 32 members: a new key pushes out the rightmost one */
    s = join(h, 4);

    want = xmalloc(strlen(s) + 16);
    strcpy(want, "ot=th:8,");
    strcat(want, s);
    want[strlen(want) - strlen(",bar32=32")] = '\0';
    PUT(s, "ot", "th:8", want);
    free(want);

    /* ... an existing key does not */
    want = xmalloc(strlen(s) + 16);
    strcpy(want, "bar17=x,");
    strncat(want, s, (size_t) (strstr(s, ",bar17=17") - s));
    strcat(want, strstr(s, ",bar17=17") + strlen(",bar17=17"));
    PUT(s, "bar17", "x", want);
    free(want);

    want = xmalloc(strlen(s) + 16);
    strcpy(want, "bar32=x,");
    strncat(want, s, (size_t) (strstr(s, ",bar32=32") - s));
    PUT(s, "bar32", "x", want);
    free(want);

    /* 31 members and a new one: all 32 stay */
    want = strstr(s, ",bar32=32");
    *want = '\0';
    got = put(s, "ot", "th:8", sizeof(put_out), &rc);
    CHECK(rc > 0 && strncmp(got, "ot=th:8,bar01=01,", 17) == 0);
    CHECK(strstr(got, ",bar31=31") != NULL);
    free(s);

    /* a bad key or member value */
    PUT_FAILS("a=1", "", "1", VQ_EINVAL);
    PUT_FAILS("a=1", "FOO", "1", VQ_EINVAL);
    PUT_FAILS("a=1", "@ot", "1", VQ_EINVAL);
    PUT_FAILS("a=1", "o t", "1", VQ_EINVAL);
    PUT_FAILS("a=1", "ot=", "1", VQ_EINVAL);
    PUT_FAILS("a=1", "ot", "", VQ_EINVAL);
    PUT_FAILS("a=1", "ot", "th:8 ", VQ_EINVAL);
    PUT_FAILS("a=1", "ot", "th,8", VQ_EINVAL);
    PUT_FAILS("a=1", "ot", "th=8", VQ_EINVAL);
    PUT_FAILS("a=1", "ot", "th\t8", VQ_EINVAL);
    PUT_FAILS("a=1", "ot", "th\x80", VQ_EINVAL);

    s = repeat('k', 257, "");
    PUT_FAILS("a=1", s, "1", VQ_EINVAL);
    free(s);
    s = repeat('k', 256, "");
    want = repeat('k', 256, "=1,a=1");
    PUT("a=1", s, "1", want);                /* 256 is still a key */
    free(want);
    free(s);

    s = repeat('v', 257, "");
    PUT_FAILS("a=1", "ot", s, VQ_EINVAL);
    free(s);

    /* a bad list */
    PUT_FAILS("foo=1,foo=2", "ot", "th:8", VQ_EINVAL);
    PUT_FAILS("foo=1,foo=2", "foo", "3", VQ_EINVAL);
    PUT_FAILS("FOO=1", "ot", "th:8", VQ_EINVAL);
    PUT_FAILS("foo=", "ot", "th:8", VQ_EINVAL);
    h[3] = "bar31=31,bar32=32,bar33=33";
    s = join(h, 4);
    PUT_FAILS(s, "ot", "th:8", VQ_EINVAL);
    free(s);

    /* the output buffer */
    got = put("congo=t61rcWkgMzE", "rojo", "00f067aa0ba902b7", 39, &rc);
    CHECK_INT(rc, 39);
    CHECK_STR(got, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    put("congo=t61rcWkgMzE", "rojo", "00f067aa0ba902b7", 38, &rc);
    CHECK_INT(rc, VQ_EFULL);
    put("", "ot", "th:8", 7, &rc);
    CHECK_INT(rc, 7);
    put("", "ot", "th:8", 6, &rc);
    CHECK_INT(rc, VQ_EFULL);
    put("", "ot", "th:8", 0, &rc);
    CHECK_INT(rc, VQ_EFULL);
    /* bad input is reported before a small buffer */
    put("foo=1,foo=2", "ot", "th:8", 0, &rc);
    CHECK_INT(rc, VQ_EINVAL);
    CHECK_INT(vq_tracestate_put("a=1", 3, "ot", 2, "1", 1, NULL, 10),
              VQ_EINVAL);
}

/* ---- vq_tracestate_get --------------------------------------------- */

static char  get_out[600];

/* get key from value (in a buffer of exactly its length); "EEMPTY"... */
static const char *
get(const char *value, size_t len, const char *key)
{
    const char  *mv;
    size_t       mlen;
    char        *in;
    int          rc;

    in = value ? exact(value, len) : NULL;
    mv = (const char *) 1;
    mlen = 12345;

    rc = vq_tracestate_get(in, len, key, strlen(key), &mv, &mlen);

    if (rc == VQ_OK) {
        /* a pointer into the input, the member's value */
        if (mv >= in && mv + mlen <= in + len && mlen < sizeof(get_out)) {
            memcpy(get_out, mv, mlen);
            get_out[mlen] = '\0';
        } else {
            strcpy(get_out, "OUTSIDE");
        }

    } else {
        /* the outputs are written only with VQ_OK */
        strcpy(get_out, rc == VQ_EEMPTY ? "EEMPTY"
                        : rc == VQ_EINVAL ? "EINVAL" : "?");
        if (mv != (const char *) 1 || mlen != 12345) {
            strcpy(get_out, "TOUCHED");
        }
    }

    free(in);

    return get_out;
}

#define GET(value, key, want)                                                \
    CHECK_STR(get(value, strlen(value), key), want)

/* del: the member goes, the others stay in order, clean and valid */
static void
test_del(void)
{
    char  out[600];
    int   n;

#define DEL(in, key, want)                                                   \
    do {                                                                     \
        n = vq_tracestate_del(in, strlen(in), key, strlen(key), out,       \
                              sizeof(out));                                  \
        CHECK_INT(n, (int) strlen(want));                                    \
        if (n >= 0) {                                                        \
            out[n] = '\0';                                                   \
            CHECK_STR(out, want);                                            \
            CHECK_INT(vq_tracestate_validate(out, n), VQ_OK);                \
        }                                                                    \
    } while (0)

    DEL("ot=th:8,congo=t61rcWkgMzE,rojo=1", "ot", "congo=t61rcWkgMzE,rojo=1");
    DEL("congo=t61rcWkgMzE,ot=th:8,rojo=1", "ot", "congo=t61rcWkgMzE,rojo=1");
    DEL("congo=t61rcWkgMzE,rojo=1,ot=th:8", "ot", "congo=t61rcWkgMzE,rojo=1");
    DEL("ot=th:8", "ot", "");
    DEL(" , ot=th:8 ,\t, congo=1 ,", "ot", "congo=1");
    DEL("congo=1,rojo=2", "ot", "congo=1,rojo=2");
    DEL("ott=1,ot=2,o=3", "ot", "ott=1,o=3");
    DEL("", "ot", "");

#undef DEL

    CHECK_INT(vq_tracestate_del("Bad=1", 5, "ot", 2, out, sizeof(out)),
              VQ_EINVAL);
    CHECK_INT(vq_tracestate_del("a=1", 3, "Ot", 2, out, sizeof(out)),
              VQ_EINVAL);
    CHECK_INT(vq_tracestate_del("a=1,b=2", 7, "ot", 2, out, 6), VQ_EFULL);
    CHECK_INT(vq_tracestate_del("a=1,b=2", 7, "ot", 2, out, 7), 7);
}

static void
test_get(void)
{
    const char  *h[] = {
        "bar01=01,bar02=02,bar03=03,bar04=04,bar05=05,bar06=06,bar07=07,"
        "bar08=08,bar09=09,bar10=10",
        "bar11=11,bar12=12,bar13=13,bar14=14,bar15=15,bar16=16,bar17=17,"
        "bar18=18,bar19=19,bar20=20",
        "bar21=21,bar22=22,bar23=23,bar24=24,bar25=25,bar26=26,bar27=27,"
        "bar28=28,bar29=29,bar30=30",
        "bar31=31,ot=th:8",
    };
    char        *s;
    const char  *mv;
    size_t       mlen;

    /* spec "Examples of tracestate HTTP Headers" */
    GET("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "congo", "t61rcWkgMzE");
    GET("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "rojo",
        "00f067aa0ba902b7");
    GET("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "ot", "EEMPTY");

    /* the OTel entry, wherever it is */
    GET("ot=th:c;rv:3f5a8b9c0d1e2f;foo:bar", "ot",
        "th:c;rv:3f5a8b9c0d1e2f;foo:bar");
    GET("congo=t61rcWkgMzE,ot=th:8,rojo=1", "ot", "th:8");
    GET("congo=t61rcWkgMzE,rojo=1,ot=th:8", "ot", "th:8");

    /* OWS around members is not the value; leading spaces in it are */
    GET(" \t ot=th:8 \t , congo=1", "ot", "th:8");
    GET("congo=1,\tot=th:8\t", "ot", "th:8");
    GET("foo= bar ,x=1", "foo", " bar");
    GET("foo=b a r", "foo", "b a r");
    GET(",,ot=th:8,,", "ot", "th:8");

    /* whole keys only */
    GET("ott=1,ot=2", "ot", "2");
    GET("ott=1,o=2", "ot", "EEMPTY");
    GET("t@v=1,t=2", "t@v", "1");
    GET("t@v=1,t=2", "t", "2");
    GET("t@v=1", "v", "EEMPTY");

    /* nothing there */
    GET("", "ot", "EEMPTY");
    GET(" , ", "ot", "EEMPTY");
    CHECK_STR(get(NULL, 0, "ot"), "EEMPTY");

    /* a list that is not a tracestate is not read at all (spec: invalid) */
    GET("ot=1,ot=2", "ot", "EINVAL");
    GET("ot=th:8,FOO=1", "ot", "EINVAL");
    GET("ot=th:8,foo", "ot", "EINVAL");
    GET("ot=", "ot", "EINVAL");
    GET("ot=th:8\n", "ot", "EINVAL");

    /* 32 members: the last found; 33: invalid */
    s = join(h, 4);
    GET(s, "ot", "th:8");
    GET(s, "bar01", "01");
    free(s);
    h[3] = "bar31=31,bar32=32,ot=th:8";
    s = join(h, 4);
    GET(s, "ot", "EINVAL");
    free(s);

    /* a key that cannot be one, and missing outputs */
    GET("ot=1", "", "EINVAL");
    GET("OT=1", "OT", "EINVAL");
    GET("ot=1", "@ot", "EINVAL");
    GET("ot=1", "o t", "EINVAL");
    s = repeat('k', 257, "");
    GET("ot=1", s, "EINVAL");
    free(s);
    CHECK_INT(vq_tracestate_get("ot=1", 4, NULL, 2, &mv, &mlen), VQ_EINVAL);
    CHECK_INT(vq_tracestate_get("ot=1", 4, "ot", 2, NULL, &mlen), VQ_EINVAL);
    CHECK_INT(vq_tracestate_get("ot=1", 4, "ot", 2, &mv, NULL), VQ_EINVAL);

    /* only len bytes are read */
    CHECK_STR(get("ot=th:8,x=1", 7, "ot"), "th:8");
    CHECK_STR(get("ot=th:8,x=1", 6, "ot"), "th:");
    CHECK_STR(get("ot=th:8,x=1", 3, "ot"), "EINVAL");
    CHECK_STR(get("x=1,ot=th:8", 4, "ot"), "EEMPTY");

    /* what get finds, put replaces */
    CHECK_INT(vq_tracestate_get("a=1,ot=th:8", 11, "ot", 2, &mv, &mlen),
              VQ_OK);
    CHECK_INT(mlen, 4);
    CHECK(memcmp(mv, "th:8", 4) == 0);
}

int
main(void)
{
    test_traceparent_valid();
    test_traceparent_version();
    test_traceparent_fields();
    test_traceparent_flags();
    test_traceparent_bounds();
    test_traceparent_every_byte();
    test_traceparent_format();

    test_tracestate_test_py();
    test_tracestate_member_count();
    test_tracestate_spec();
    test_tracestate_every_byte();

    test_put();
    test_get();
    test_del();

    return check_summary("test_tracecontext");
}
