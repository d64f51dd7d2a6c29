/*
 * The wire formats the exporter knows (see vaquero/protocol.h).
 */

#include <string.h>

#include <vaquero/vaquero.h>
#include <vaquero/protocol.h>

const vq_protocol_t  vq_protocol_vaquero = {
    "vaquero",
    "/api/v1/traces/batch",
    "application/json",
    "X-Project-ID",
    0,
    vq_encode_vaquero_batch
};

const vq_protocol_t  vq_protocol_otlp = {
    "otlp",
    "/v1/traces",
    "application/x-protobuf",
    NULL,
    1,
    vq_encode_otlp_proto
};

const vq_protocol_t  vq_protocol_otlp_json = {
    "otlp_json",
    "/v1/traces",
    "application/json",
    NULL,
    0,
    vq_encode_otlp_json
};

static const vq_protocol_t  *protocols[] = {
    &vq_protocol_vaquero,
    &vq_protocol_otlp,
    &vq_protocol_otlp_json,
};

const vq_protocol_t *
vq_protocol_find(const char *name)
{
    size_t  i;

    for (i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++) {
        if (strcmp(protocols[i]->name, name) == 0) {
            return protocols[i];
        }
    }

    return NULL;
}
