/*
 * The modes of the Vaquero Python SDK 0.1, and what each one presets.
 */

#ifndef VAQUERO_PRESETS_H
#define VAQUERO_PRESETS_H

#include <stddef.h>

#define VQ_MODE_PRODUCTION   0
#define VQ_MODE_DEVELOPMENT  1

typedef struct {
    const char  *environment;           /* the spans' environment */
    size_t       batch_size;
    unsigned     flush_interval_ms;
    int          capture_headers;       /* a safe default set of headers */
} vq_preset_t;

/* The preset of a mode, or NULL for an unknown mode. */
const vq_preset_t *vq_mode_preset(unsigned mode);

#endif /* VAQUERO_PRESETS_H */
