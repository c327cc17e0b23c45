/* Token sampling from logits: greedy, temperature, top-k, top-p, min-p and repetition penalty,
 * with a seeded xoshiro256** generator, deterministic for a given seed. The whole state (the
 * settings and the generator) serializes to a fixed-size little-endian record, so a snapshot
 * restores a sampler that continues exactly where it was. */
#ifndef DRIFTWOOD_SAMPLER_H
#define DRIFTWOOD_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Order of application, as in Hugging Face transformers: repetition penalty, then temperature,
 * top-k, top-p, min-p; then a draw from the softmax of what is left. */
typedef struct dw_sampler_params {
    float temperature;        /* 0 = greedy (argmax after the repetition penalty) */
    int top_k;                /* keep the k most likely; 0 = off */
    float top_p;              /* keep the smallest set with probability >= top_p; 1 = off */
    float min_p;              /* drop tokens with p < min_p · p_max; 0 = off */
    float repetition_penalty; /* HF/CTRL: divide positive, multiply negative logits of seen tokens; 1 = off */
    int repetition_last_n;    /* how many recent tokens count as seen; 0 = all given */
    uint64_t seed;
} dw_sampler_params;

/* The defaults: greedy, no filters, no penalty, seed 0. */
dw_sampler_params dw_sampler_default_params(void);

typedef struct dw_sampler dw_sampler;

/* Allocates the scratch for a vocabulary of n_vocab (sampling allocates nothing). Refuses
 * out-of-range settings (negative temperature, top_p outside (0, 1], ...) naming the setting. */
dw_status dw_sampler_create(const dw_sampler_params *params, int n_vocab, dw_sampler **out /* OUT */,
                            dw_error *err);
void dw_sampler_free(dw_sampler *s);

/* Picks the next token from logits[n_vocab] (not modified) into *out. history (n_history ids,
 * may be NULL) feeds the repetition penalty. Advances the generator only when temperature > 0.
 * Non-finite logits, the same on every path: NaN is never chosen (it counts as -inf); +inf beats
 * every finite logit (greedy takes the first +inf, as it takes the first of any tie; sampling
 * draws among the +inf tokens with equal probability, the limit of the softmax). When no logit
 * is above -inf (all NaN or -inf) nothing can be chosen: DW_ERR_INVALID_ARGUMENT, and *out is
 * unspecified. */
dw_status dw_sampler_sample(dw_sampler *s, const float *logits, const int32_t *history, int n_history,
                            int32_t *out /* OUT */, dw_error *err);

const dw_sampler_params *dw_sampler_get_params(const dw_sampler *s);

/* Serialized state:
 *   offset size field
 *   0      8    magic "DWSAMPL1"
 *   8      4    temperature (f32)      12  4  top_k (i32)       16  4  top_p (f32)
 *   20     4    min_p (f32)            24  4  repetition_penalty (f32)
 *   28     4    repetition_last_n (i32) 32 8  seed (u64)
 *   40     32   generator state s[0..3] (u64 each)
 */
#define DW_SAMPLER_STATE_SIZE 72
void dw_sampler_save(const dw_sampler *s, uint8_t out[DW_SAMPLER_STATE_SIZE]);
/* Restores settings and generator; a record with the wrong magic or bad settings is refused. */
dw_status dw_sampler_load(dw_sampler *s, const uint8_t in[DW_SAMPLER_STATE_SIZE], dw_error *err);
/* The checks of dw_sampler_load without a sampler: whether the record would load. */
dw_status dw_sampler_state_check(const uint8_t in[DW_SAMPLER_STATE_SIZE], dw_error *err);

#ifdef __cplusplus
}
#endif

#endif
