/*
 * Mode presets, as the Vaquero Python SDK 0.1 has them: development sends
 * small batches often, production larger ones less often.
 */

#include <vaquero/vaquero.h>
#include <vaquero/presets.h>

static const vq_preset_t  presets[] = {
    /* VQ_MODE_PRODUCTION */
    { "production", 100, 5000, 0 },

    /* VQ_MODE_DEVELOPMENT */
    { "development", 10, 2000, 1 },
};

const vq_preset_t *
vq_mode_preset(unsigned mode)
{
    if (mode >= sizeof(presets) / sizeof(presets[0])) {
        return NULL;
    }

    return &presets[mode];
}
