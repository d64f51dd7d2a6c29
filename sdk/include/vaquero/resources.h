/*
 * What each generation of a configuration puts on its spans.
 *
 * A process that is reconfigured (nginx -s reload) records its spans
 * under a new generation (vq_span_head_t.generation) while spans of the
 * earlier ones may still wait in a queue; whichever exporter sends a span
 * must send it with the resource (service name, project id, environment,
 * extra attributes) of the configuration that recorded it.  This table maps generations to
 * resources: the resource added for generation g holds for g and every
 * later generation up to the next one added.  Consecutive equal resources
 * share one entry, and past VQ_RESOURCES_MAX entries the oldest is
 * forgotten.
 *
 * Plain process memory, not shared: a process knows the generations up to
 * its own, which are the only ones it may send (later ones are for the
 * exporters of the configuration that recorded them).  Generations are
 * compared modulo 2^32.  Not thread-safe: an exporter takes its own copy.
 */

#ifndef VAQUERO_RESOURCES_H
#define VAQUERO_RESOURCES_H

#include <stdint.h>
#include <vaquero/encode.h>

#define VQ_RESOURCES_MAX  64

typedef struct vq_resources_s  vq_resources_t;

/* NULL when out of memory. */
vq_resources_t *vq_resources_create(void);
vq_resources_t *vq_resources_copy(const vq_resources_t *t);
void vq_resources_destroy(vq_resources_t *t);

/*
 * The resource of generation and the later ones: its service_name,
 * project_id (may be NULL), environment and attributes are copied, its
 * other fields are the sender's (hostname, sdk_version, service_version)
 * and not kept.  VQ_OK,
 * VQ_EINVAL when generation is not later than the last one added (or
 * service_name or environment is NULL), VQ_ENOMEM.
 */
int vq_resources_add(vq_resources_t *t, uint32_t generation,
    const vq_resource_t *res);

/*
 * The resource of a generation, or NULL when it is older than every one
 * kept.  Only the fields kept are set (hostname, sdk_version and
 * service_version: NULL).
 * Equal resources of different generations are the same pointer, valid
 * until the table changes.
 */
const vq_resource_t *vq_resources_find(const vq_resources_t *t,
    uint32_t generation);

/* Whether generation a is later than b (modulo 2^32). */
static inline int
vq_generation_after(uint32_t a, uint32_t b)
{
    return (int32_t) (a - b) > 0;
}

#endif /* VAQUERO_RESOURCES_H */
