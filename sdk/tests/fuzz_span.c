/*
 * Fuzz target: span records as they come out of shared memory.
 *
 * Any bytes: vq_span_validate() must not read out of bounds, and a record
 * it accepts must encode to a body that jansson parses.  Built with
 * -fsanitize=fuzzer for libFuzzer (make fuzz), or with -DVQ_FUZZ_DRIVER
 * as a plain program that runs the target on generated inputs: random
 * bytes, and valid records with bytes flipped (make test).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <vaquero/vaquero.h>

static const vq_resource_t  res = {
    .service_name = "nginx", .project_id = "proj", .environment = "production",
    .hostname = "fuzz", .sdk_version = VQ_VERSION,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const vq_span_t  *spans[2];
    vq_span_t         rec[2];
    json_t           *doc;
    vq_buf_t          b;
    size_t            n;
    int               encoded;

    if (size > VQ_SPAN_RECORD_MAX) {
        size = VQ_SPAN_RECORD_MAX;
    }

    /* the record exactly as long as the input, as a queue slot would hold it */
    memset(rec, 0, sizeof(rec));
    memcpy(&rec[0], data, size);

    if (vq_span_validate(&rec[0], size) != VQ_OK) {
        return 0;
    }

    /* twice, so that a dependency to itself can be tried too */
    rec[1] = rec[0];
    spans[0] = &rec[0];
    spans[1] = &rec[1];
    n = 2;

    vq_buf_init(&b);
    encoded = vq_encode_vaquero_batch(&b, &res, spans, n);

    if (encoded != 2) {
        abort();
    }

    doc = json_loadb(b.data, b.len, 0, NULL);
    if (doc == NULL) {
        abort();
    }

    json_decref(doc);
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
    s->h.start_us = (int64_t) rand_r(seed) << 20;
    s->h.end_us = s->h.start_us + rand_r(seed) % 100000;
    s->h.status_code = (uint16_t) rand_r(seed);

    for (f = 0; f < VQ_FIELD_COUNT; f++) {
        for (i = 0; i < sizeof(junk); i++) {
            junk[i] = (char) rand_r(seed);
        }
        vq_span_set_str(s, f, junk, rand_r(seed) % sizeof(junk));
    }

    vq_span_add_attr(s, "k", 1, junk, rand_r(seed) % sizeof(junk));
}

int
main(void)
{
    unsigned   seed, i, j, flips, valid;
    uint8_t    buf[VQ_SPAN_RECORD_MAX];
    vq_span_t  s;
    size_t     len;

    seed = 20261127;
    valid = 0;

    for (i = 0; i < 20000; i++) {
        if (i % 2) {
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
    printf("fuzz_span: %u inputs, %u valid records encoded and parsed\n", i,
           valid);
    printf("fuzz_span: %u passed, %u failed\n", valid > 1000, valid <= 1000);

    return valid > 1000 ? 0 : 1;
}

#endif
