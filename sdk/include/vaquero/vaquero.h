/*
 * libvaquero: the nginx-free half of ngx_vaquero_module.
 *
 * Umbrella header; each part has its own header and can be used alone.
 */

#ifndef VAQUERO_VAQUERO_H
#define VAQUERO_VAQUERO_H

#define VQ_VERSION  "0.1.0"

/* Error returns shared by every part of the library. */
#define VQ_OK        0
#define VQ_ERROR    -1
#define VQ_EFULL    -2      /* queue full, or no room left in a record */
#define VQ_ETOOBIG  -3      /* record larger than a queue slot */
#define VQ_EEMPTY   -4      /* queue empty */
#define VQ_EINVAL   -5      /* bad argument or malformed record */
#define VQ_ENOMEM   -6
#define VQ_ETRUNC   -7      /* stored, but cut short */
#define VQ_ESKIPPED -8      /* pushed too slowly: a reader gave the slot up */

#include <vaquero/ids.h>
#include <vaquero/tracecontext.h>
#include <vaquero/sampler.h>
#include <vaquero/span.h>
#include <vaquero/queue.h>
#include <vaquero/buf.h>
#include <vaquero/encode.h>
#include <vaquero/stats.h>
#include <vaquero/protocol.h>
#include <vaquero/transport.h>
#include <vaquero/endpoint.h>
#include <vaquero/presets.h>
#include <vaquero/resources.h>
#include <vaquero/exporter.h>

/*
 * Process-wide set-up of the libraries libvaquero uses (libcurl).  Call
 * once per process, from its main thread, before any exporter is created.
 */
int vq_library_init(void);
void vq_library_cleanup(void);

#endif /* VAQUERO_VAQUERO_H */
