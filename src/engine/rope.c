/* RoPE inverse frequencies as Hugging Face transformers computes them (f32 arithmetic),
 * including the "llama3" frequency-dependent scaling of Llama 3.1 / 3.2. */
#include <math.h>

#include "engine/engine_impl.h"

void dw__rope_inv_freq(const dw_model_config *cfg, float *out) {
    int dim = cfg->head_dim, half = dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)dim;
        out[i] = 1.0f / powf(cfg->rope_theta, e);
    }
    if (!cfg->rope_llama3) return;
    /* transformers' _compute_llama3_parameters */
    float factor = cfg->rope_factor, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
    float old_ctx = (float)cfg->rope_original_max_position;
    float low_freq_wavelen = old_ctx / lo, high_freq_wavelen = old_ctx / hi;
    for (int i = 0; i < half; i++) {
        float f = out[i];
        float wavelen = 2.0f * (float)M_PI / f;
        float scaled = wavelen > low_freq_wavelen ? f / factor : f;
        float smooth = (old_ctx / wavelen - lo) / (hi - lo);
        float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
        int medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        out[i] = medium ? smoothed : scaled;
    }
}
