/*
 * Trace and span id generation.
 *
 * A generator belongs to one thread.  It is seeded from the kernel
 * (getrandom) and then runs a xoshiro256** stream, so generating an id
 * costs a few nanoseconds and no system call.  Reseed after fork():
 * a child that inherits its parent's state would repeat its ids.
 */

#ifndef VAQUERO_IDS_H
#define VAQUERO_IDS_H

#include <stddef.h>
#include <stdint.h>

#define VQ_TRACE_ID_SIZE  16
#define VQ_SPAN_ID_SIZE   8

typedef struct vq_idgen_s  vq_idgen_t;

vq_idgen_t *vq_idgen_create(void);
void vq_idgen_destroy(vq_idgen_t *gen);
int vq_idgen_reseed(vq_idgen_t *gen);

/*
 * Never all-zero, as W3C Trace Context requires.  Trace ids are also
 * UUIDv4 (version and variant bits set), random in their rightmost 7
 * bytes as W3C Level 2's random flag promises.
 */
void vq_trace_id_generate(vq_idgen_t *gen, uint8_t id[VQ_TRACE_ID_SIZE]);
void vq_span_id_generate(vq_idgen_t *gen, uint8_t id[VQ_SPAN_ID_SIZE]);

int vq_id_is_zero(const uint8_t *id, size_t size);

/* Lowercase hex, 2 * size characters, no terminating NUL. */
void vq_id_to_hex(const uint8_t *id, size_t size, char *out);

/* 8-4-4-4-12 lowercase hex of a trace id, 36 characters, no NUL. */
#define VQ_UUID_LEN  36
void vq_trace_id_to_uuid(const uint8_t id[VQ_TRACE_ID_SIZE], char *out);

#endif /* VAQUERO_IDS_H */
