/*
 * Fuzz target: span records as they come out of shared memory, through
 * the OTLP encoders.
 *
 * Any bytes: a record that vq_span_validate() accepts must encode both
 * ways; the JSON must parse (jansson) and be UTF-8 throughout, and the
 * protobuf must be well formed down to every string being UTF-8
 * (otlp_walk.h: no protoc in the loop).  Built with -fsanitize=fuzzer for
 * libFuzzer (make fuzz), or with -DVQ_FUZZ_DRIVER as a plain program that
 * runs the target on generated inputs: random bytes, valid records with
 * bytes flipped, and records whose strings overlap (make test).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <vaquero/vaquero.h>
#include "otlp_walk.h"

static const vq_kv_t  extra[] = {
    { "region", "eu\xff" },
    { "service.name", "edge\xc0" },
    { "\xed\xa0\x80", "" },
};

static const vq_resource_t  res = {
    .service_name = "nginx",
    .project_id = "proj",
    .environment = "production",
    .hostname = "fuzz",
    .sdk_version = VQ_VERSION,
    .service_version = "1.0",
    .attributes = extra,
    .nattributes = sizeof(extra) / sizeof(extra[0]),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const vq_span_t  *spans[2];
    vq_span_t         rec[2];
    ow_result_t       walk;
    json_t           *doc;
    vq_buf_t          b;

    if (size > VQ_SPAN_RECORD_MAX) {
        size = VQ_SPAN_RECORD_MAX;
    }

    /* the record exactly as long as the input, as a queue slot would hold it */
    memset(rec, 0, sizeof(rec));
    memcpy(&rec[0], data, size);

    if (vq_span_validate(&rec[0], size) != VQ_OK) {
        return 0;
    }

    /* twice: a batch, and the same ids twice must not matter */
    rec[1] = rec[0];
    spans[0] = &rec[0];
    spans[1] = &rec[1];

    vq_buf_init(&b);

    if (vq_encode_otlp_json(&b, &res, spans, 2) != 2) {
        abort();
    }

    /* the body as raw bytes (jansson reads escapes too) */
    if (!ow_utf8((const uint8_t *) b.data, b.len)) {
        abort();
    }

    doc = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL) {
        abort();
    }

    if (json_array_size(json_object_get(json_array_get(json_object_get(
            json_array_get(json_object_get(doc, "resourceSpans"), 0),
            "scopeSpans"), 0), "spans"))
        != 2)
    {
        abort();
    }

    json_decref(doc);

    vq_buf_reset(&b);

    if (vq_encode_otlp_proto(&b, &res, spans, 2) != 2) {
        abort();
    }

    if (!otlp_walk(b.data, b.len, &walk)
        || walk.messages[OW_RESOURCE_SPANS] != 1
        || walk.messages[OW_SCOPE_SPANS] != 1
        || walk.messages[OW_SPAN] != 2)
    {
        abort();
    }

    vq_buf_free(&b);

    return 0;
}

#ifdef VQ_FUZZ_DRIVER

#include <stdio.h>

static void
valid_record(vq_span_t *s, unsigned *seed)
{
    char      junk[64];
    unsigned  i, f;

    vq_span_init(s, rand_r(seed) % 2 ? VQ_SPAN_SERVER : VQ_SPAN_CLIENT);
    s->h.flags = (uint8_t) rand_r(seed);
    s->h.trace_flags = (uint8_t) rand_r(seed);
    s->h.error = (uint8_t) (rand_r(seed) % (VQ_SPAN_ERR_MAX + 1));
    s->h.truncated = rand_r(seed) % 2;
    s->h.start_us = ((int64_t) rand_r(seed) << 20) - (1 << 20);
    s->h.end_us = s->h.start_us + rand_r(seed) % 100000;

    if (rand_r(seed) % 8 == 0) {
        s->h.start_us = rand_r(seed) % 2 ? INT64_MIN : -1;
        s->h.end_us = rand_r(seed) % 2 ? INT64_MAX : INT64_MAX / 999;
    }
    s->h.status_code = (uint16_t) rand_r(seed);
    s->h.attempt = (uint16_t) rand_r(seed);
    s->h.connect_ms = rand_r(seed) % 3 ? -1 : rand_r(seed);
    s->h.header_ms = rand_r(seed) % 3 ? -1 : rand_r(seed);
    s->h.request_body_size = (int64_t) rand_r(seed) - RAND_MAX / 2;

    for (f = 0; f < VQ_FIELD_COUNT; f++) {
        for (i = 0; i < sizeof(junk); i++) {
            junk[i] = (char) rand_r(seed);
        }
        vq_span_set_str(s, f, junk, rand_r(seed) % sizeof(junk));
    }

    vq_span_add_attr(s, junk, rand_r(seed) % 8, junk,
                     rand_r(seed) % sizeof(junk));
}

/* fields of a valid record may overlap: all of them on the same bytes */
static size_t
overlapping_record(vq_span_t *s, unsigned *seed)
{
    size_t    len, i;
    unsigned  slot;

    vq_span_init(s, rand_r(seed) % 2 ? VQ_SPAN_SERVER : VQ_SPAN_CLIENT);
    len = rand_r(seed) % VQ_SPAN_DATA_MAX;

    for (i = 0; i < len; i++) {
        s->data[i] = (char) (rand_r(seed) % 2 ? 0xff : rand_r(seed));
    }

    s->h.size = (uint16_t) (sizeof(vq_span_head_t) + len);
    s->h.nattrs = VQ_SPAN_MAX_ATTRS;

    for (slot = 0; slot < VQ_SPAN_STR_SLOTS; slot++) {
        s->h.str[slot].off = sizeof(vq_span_head_t);
        s->h.str[slot].len = (uint16_t) len;
    }

    return vq_span_size(s);
}

int
main(void)
{
    unsigned   seed, i, j, flips, valid;
    uint8_t    buf[VQ_SPAN_RECORD_MAX];
    vq_span_t  s;
    size_t     len;

    seed = 20261128;
    valid = 0;

    for (i = 0; i < 20000; i++) {
        if (i % 64 == 63) {
            len = overlapping_record(&s, &seed);
            memcpy(buf, &s, len);

        } else if (i % 2 == 0) {
            len = rand_r(&seed) % sizeof(buf);
            for (j = 0; j < len; j++) {
                buf[j] = (uint8_t) rand_r(&seed);
            }

        } else {
            valid_record(&s, &seed);
            len = vq_span_size(&s);
            memcpy(buf, &s, len);

            flips = rand_r(&seed) % 4;
            for (j = 0; j < flips; j++) {
                buf[rand_r(&seed) % len] = (uint8_t) rand_r(&seed);
            }
        }

        valid += vq_span_validate(buf, len) == VQ_OK;
        LLVMFuzzerTestOneInput(buf, len);
    }

    /* a driver that never gets past validation would test nothing */
    printf("fuzz_otlp: %u inputs, %u valid records encoded and checked\n", i,
           valid);
    printf("fuzz_otlp: %u passed, %u failed\n", valid > 5000, valid <= 5000);

    return valid > 5000 ? 0 : 1;
}

#endif
