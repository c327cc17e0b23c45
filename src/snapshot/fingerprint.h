/* Model fingerprints (dw_model_fingerprint in driftwood/snapshot.h): what a KV cache is only
 * valid for. */
#ifndef DW_SNAPSHOT_FINGERPRINT_H
#define DW_SNAPSHOT_FINGERPRINT_H

#include "driftwood/snapshot.h"

/* 1 when a and b name the same model (all four parts equal). */
int dw__fingerprint_equal(const dw_fingerprint *a, const dw_fingerprint *b);

#endif
