/*
 * The span record: fields, truncation at UTF-8 boundaries, validation.
 */

#include <stdlib.h>

#include <vaquero/vaquero.h>
#include "check.h"

static char *
field(const vq_span_t *s, unsigned slot)
{
    static char  out[VQ_SPAN_RECORD_MAX + 1];
    const char  *p;
    size_t       len;

    p = vq_span_str(s, slot, &len);
    memcpy(out, p, len);
    out[len] = '\0';
    return out;
}

static void
test_fields(void)
{
    vq_span_t  s;
    size_t     len;

    vq_span_init(&s, VQ_SPAN_SERVER);
    CHECK_INT(vq_span_size(&s), sizeof(vq_span_head_t));

    CHECK_INT(vq_span_set_str(&s, VQ_FIELD_METHOD, "POST", 4), VQ_OK);
    CHECK_INT(vq_span_set_str(&s, VQ_FIELD_PATH, "/a/b", 4), VQ_OK);
    CHECK_INT(vq_span_set_str(&s, VQ_FIELD_QUERY, "", 0), VQ_OK);
    CHECK_INT(vq_span_set_str(&s, VQ_FIELD_COUNT, "x", 1), VQ_EINVAL);

    CHECK_STR(field(&s, VQ_FIELD_METHOD), "POST");
    CHECK_STR(field(&s, VQ_FIELD_PATH), "/a/b");
    CHECK_STR(field(&s, VQ_FIELD_QUERY), "");
    CHECK(s.h.str[VQ_FIELD_QUERY].off != 0);       /* set, though empty */
    CHECK(s.h.str[VQ_FIELD_HOST].off == 0);        /* never set */
    vq_span_str(&s, VQ_FIELD_HOST, &len);
    CHECK_INT(len, 0);

    CHECK_INT(vq_span_size(&s), sizeof(vq_span_head_t) + 8);
    CHECK_INT(s.h.truncated, 0);
    CHECK_INT(vq_span_validate(&s, vq_span_size(&s)), VQ_OK);
}

static void
test_attrs(void)
{
    vq_span_t  s;
    size_t     len;
    unsigned   i;
    char       k[8];

    vq_span_init(&s, VQ_SPAN_SERVER);

    for (i = 0; i < VQ_SPAN_MAX_ATTRS; i++) {
        k[0] = 'k';
        k[1] = (char) ('0' + i);
        CHECK_INT(vq_span_add_attr(&s, k, 2, "v", 1), VQ_OK);
    }

    CHECK_INT(vq_span_add_attr(&s, "x", 1, "y", 1), VQ_EFULL);
    CHECK_INT(s.h.nattrs, VQ_SPAN_MAX_ATTRS);

    vq_span_attr_key(&s, 3, &len);
    CHECK_INT(len, 2);
    CHECK(memcmp(vq_span_attr_key(&s, 3, &len), "k3", 2) == 0);
    CHECK(memcmp(vq_span_attr_value(&s, 7, &len), "v", 1) == 0);
}

static void
test_truncation(void)
{
    vq_span_t  s;
    char       big[4000];
    size_t     len;

    memset(big, 'a', sizeof(big));

    /* a long value is cut at its field's cap, and flagged */
    vq_span_init(&s, VQ_SPAN_SERVER);
    CHECK_INT(vq_span_set_str(&s, VQ_FIELD_PATH, big, sizeof(big)),
              VQ_ETRUNC);
    CHECK(s.h.truncated & (1u << VQ_FIELD_PATH));
    vq_span_str(&s, VQ_FIELD_PATH, &len);
    CHECK_INT(len, 256);
    CHECK_INT(vq_span_validate(&s, vq_span_size(&s)), VQ_OK);

    /* a cut never splits a UTF-8 character: "é" is 0xc3 0xa9 */
    vq_span_init(&s, VQ_SPAN_SERVER);
    big[255] = (char) 0xc3;
    big[256] = (char) 0xa9;
    CHECK_INT(vq_span_set_str(&s, VQ_FIELD_PATH, big, 300), VQ_ETRUNC);
    vq_span_str(&s, VQ_FIELD_PATH, &len);
    CHECK_INT(len, 255);
    big[255] = 'a';
    big[256] = 'a';

    /* a tracestate is whole or not there: a cut one would be invalid */
    vq_span_init(&s, VQ_SPAN_SERVER);
    CHECK_INT(vq_span_set_str(&s, VQ_FIELD_TRACESTATE, "ot=th:8,a=1", 11),
              VQ_OK);
    CHECK_STR(field(&s, VQ_FIELD_TRACESTATE), "ot=th:8,a=1");
    vq_span_init(&s, VQ_SPAN_SERVER);
    CHECK_INT(vq_span_set_str(&s, VQ_FIELD_TRACESTATE, big, 300), VQ_ETRUNC);
    CHECK(s.h.str[VQ_FIELD_TRACESTATE].off == 0);
    CHECK(s.h.truncated & (1u << VQ_FIELD_TRACESTATE));
    CHECK_INT(vq_span_size(&s), sizeof(vq_span_head_t));
}

/*
 * DESIGN 6: hostile or long values never push out the short fields that
 * identify a span, whatever order the fields are set in.
 */
static void
test_hostile(void)
{
    static const struct {
        vq_span_field_t  field;
        const char      *value;
    } ids[] = {
        { VQ_FIELD_METHOD, "PATCH" },
        { VQ_FIELD_SCHEME, "https" },
        { VQ_FIELD_HOST, "api.example.com" },
        { VQ_FIELD_ROUTE, "/api/v1/items/" },
        { VQ_FIELD_CLIENT_ADDRESS, "2001:db8::ff00:42:8329" },
        { VQ_FIELD_PROTOCOL_VERSION, "1.1" },
        { VQ_FIELD_REQUEST_ID, "0123456789abcdef0123456789abcdef" },
    };

    vq_span_t  s;
    char       big[4000], k[8];
    size_t     i, len;
    unsigned   a;
    int        order;

    memset(big, 'x', sizeof(big));

    for (order = 0; order < 2; order++) {
        vq_span_init(&s, VQ_SPAN_SERVER);

        /* the long ones first, then again after: neither order loses */
        if (order == 0) {
            for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                vq_span_set_str(&s, ids[i].field, ids[i].value,
                                strlen(ids[i].value));
            }
        }

        vq_span_set_str(&s, VQ_FIELD_NAME, big, sizeof(big));
        vq_span_set_str(&s, VQ_FIELD_AGENT_NAME, big, sizeof(big));
        vq_span_set_str(&s, VQ_FIELD_PATH, big, sizeof(big));
        vq_span_set_str(&s, VQ_FIELD_QUERY, big, sizeof(big));
        vq_span_set_str(&s, VQ_FIELD_USER_AGENT, big, sizeof(big));
        vq_span_set_str(&s, VQ_FIELD_CONTENT_TYPE, big, sizeof(big));

        for (a = 0; a < VQ_SPAN_MAX_ATTRS; a++) {
            k[0] = 'k';
            k[1] = (char) ('0' + a);
            vq_span_add_attr(&s, k, 2, big, sizeof(big));
        }

        if (order == 1) {
            for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
                vq_span_set_str(&s, ids[i].field, ids[i].value,
                                strlen(ids[i].value));
            }
        }

        for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
            CHECK_STR(field(&s, ids[i].field), ids[i].value);
            CHECK(!(s.h.truncated & (1u << ids[i].field)));
        }

        /* the long ones got what was left, and say so */
        vq_span_str(&s, VQ_FIELD_PATH, &len);
        CHECK(len > 0);
        CHECK(s.h.truncated & (1u << VQ_FIELD_PATH));
        CHECK(s.h.truncated & (1u << VQ_FIELD_NAME));
        CHECK(vq_span_size(&s) <= VQ_SPAN_RECORD_MAX);
        CHECK_INT(vq_span_validate(&s, vq_span_size(&s)), VQ_OK);
    }
}

static void
test_validate(void)
{
    vq_span_t  s;

    vq_span_init(&s, VQ_SPAN_SERVER);
    vq_span_set_str(&s, VQ_FIELD_METHOD, "GET", 3);

    CHECK_INT(vq_span_validate(&s, 10), VQ_EINVAL);
    CHECK_INT(vq_span_validate(&s, VQ_SPAN_RECORD_MAX + 1), VQ_EINVAL);

    s.h.kind = 9;
    CHECK_INT(vq_span_validate(&s, vq_span_size(&s)), VQ_EINVAL);
    s.h.kind = VQ_SPAN_SERVER;

    s.h.str[VQ_FIELD_METHOD].len = 900;
    CHECK_INT(vq_span_validate(&s, vq_span_size(&s)), VQ_EINVAL);
    s.h.str[VQ_FIELD_METHOD].len = 3;

    s.h.str[VQ_FIELD_HOST].len = 1;     /* length without an offset */
    CHECK_INT(vq_span_validate(&s, vq_span_size(&s)), VQ_EINVAL);
    s.h.str[VQ_FIELD_HOST].len = 0;

    s.h.nattrs = VQ_SPAN_MAX_ATTRS + 1;
    CHECK_INT(vq_span_validate(&s, vq_span_size(&s)), VQ_EINVAL);
    s.h.nattrs = 0;

    s.h.size = 3000;
    CHECK_INT(vq_span_validate(&s, VQ_SPAN_RECORD_MAX), VQ_EINVAL);
}

int
main(void)
{
    test_fields();
    test_attrs();
    test_truncation();
    test_hostile();
    test_validate();

    return check_summary("test_span");
}
