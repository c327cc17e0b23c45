/* Model fingerprints: what a KV cache is only valid for. Two models with equal fingerprints
 * compute the same function on the same token ids. */
#ifndef DW_SNAPSHOT_FINGERPRINT_H
#define DW_SNAPSHOT_FINGERPRINT_H

#include "core/sha256.h"
#include "driftwood/model.h"
#include "driftwood/tokenizer.h"

typedef struct dw__fingerprint {
    char architecture[40];
    char config_hash[DW_SHA256_HEX_SIZE];    /* dw_model_config_hash */
    char weights_hash[DW_SHA256_HEX_SIZE];   /* SHA-256 over the weight files, in name order */
    char tokenizer_hash[DW_SHA256_HEX_SIZE]; /* SHA-256 of tokenizer.json */
} dw__fingerprint;

/* Computes the fingerprint. The weights hash reads every *.safetensors file of the model once
 * and is then cached on disk ($DW_CACHE/fingerprints, keyed by the files' paths, sizes and
 * modification times), so later calls cost a few stat() calls. */
dw_status dw__model_fingerprint(const dw_model *model, const dw_tokenizer *tok, dw__fingerprint *out, dw_error *err);

/* 1 when a and b name the same model (all four parts equal). */
int dw__fingerprint_equal(const dw__fingerprint *a, const dw__fingerprint *b);

#endif
