/* The backends' sample_rows op (backend.h) against the rule applied on the host (driftwood/pick.h,
 * dw_pick_top_k, itself checked against a full sort in test_pick.c), on the CPU and on CUDA: fresh
 * random rows of 97, 1,000 and 128,256 logits with planted ties at the cut, NaN, infinities, -0,
 * rows of equal values and all-NaN rows; every setting range; rows not sampled left untouched. */
#include "test.h"
#include "test_cuda.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "driftwood/backend.h"
#include "driftwood/pick.h"

static uint64_t srng;

static uint32_t snext(void) {
    srng ^= srng << 13, srng ^= srng >> 7, srng ^= srng << 17;
    return (uint32_t)(srng >> 32);
}

static float suniform(float lo, float hi) { return lo + (hi - lo) * (float)(snext() >> 8) / 16777216.0f; }

/* Row r's logits: its kind (r % 7) decides what is planted. */
static void fill_row(float *x, int width, int r) {
    const int kind = r % 7;
    for (int i = 0; i < width; i++) x[i] = suniform(-4.0f, 4.0f);
    for (int j = 0; j < 12; j++) x[snext() % width] = 6.0f + (float)(snext() % 8) * 0.25f;
    switch (kind) {
    case 1: /* coarse: many logits equal at the cut */
        for (int i = 0; i < width; i++) x[i] = roundf(x[i] * 2.0f) / 2.0f;
        break;
    case 2:
        x[snext() % width] = NAN, x[snext() % width] = -INFINITY, x[snext() % width] = -0.0f, x[snext() % width] = 0.0f;
        break;
    case 3:
        x[snext() % width] = INFINITY, x[snext() % width] = INFINITY;
        break;
    case 4:
        for (int i = 0; i < width; i++) x[i] = NAN;
        break;
    case 5: /* half the row equal to the largest value */
        for (int i = 0; i < width; i += 2) x[i] = 9.0f;
        break;
    case 6: /* fewer numbers than top-k: all NaN but three */
        for (int i = 0; i < width; i++) x[i] = NAN;
        x[width / 3] = 1.0f, x[width / 2] = 2.0f, x[width - 1] = -INFINITY;
        break;
    }
}

static void check_sample_rows(dw_backend *b, int *dw_test_failed_) {
    dw_error err = {0};
    srng = (uint64_t)time(NULL) * 0xD1B54A32D192ED03ull | 1;
    printf("    seed %llu\n", (unsigned long long)srng);
    static const int widths[] = {97, 1000, 128256};
    static const int ks[] = {0, 1, 2, 5, 40, 64};
    static const float ts[] = {0.0f, 0.3f, 1.0f, 1.7f}, ps[] = {1.0f, 0.9f, 0.5f};
    int sampled = 0, off_argmax = 0;
    for (int wi = 0; wi < 3; wi++) {
        const int width = widths[wi], rows = wi == 2 ? 21 : 40;
        float *x = malloc(sizeof(float) * (size_t)rows * width);
        dw_pick_row *params = calloc((size_t)rows, sizeof *params);
        int32_t *out = malloc(sizeof(int32_t) * rows);
        CHECK(x && params && out);
        for (int r = 0; r < rows; r++) {
            fill_row(x + (size_t)r * width, width, r);
            params[r].u = (double)(((uint64_t)snext() << 21) ^ snext()) * (1.0 / 9007199254740992.0);
            params[r].s = (dw_device_sampling){.temperature = ts[(r / 7) % 4], .top_p = ps[r % 3], .top_k = ks[r % 6]};
            out[r] = -7;
        }
        float *dx = NULL;
        dw_pick_row *dp = NULL;
        int32_t *dout = NULL;
        CHECK_OK(b->ops->alloc(b->ctx, sizeof(float) * (size_t)rows * width, (void **)&dx, &err));
        CHECK_OK(b->ops->alloc(b->ctx, sizeof *params * rows, (void **)&dp, &err));
        CHECK_OK(b->ops->alloc(b->ctx, sizeof(int32_t) * rows, (void **)&dout, &err));
        CHECK_OK(b->ops->upload(b->ctx, dx, x, sizeof(float) * (size_t)rows * width, &err));
        CHECK_OK(b->ops->upload(b->ctx, dp, params, sizeof *params * rows, &err));
        CHECK_OK(b->ops->upload(b->ctx, dout, out, sizeof(int32_t) * rows, &err));
        b->ops->sample_rows(b->ctx, dx, rows, width, dp, dout);
        CHECK_OK(b->ops->synchronize(b->ctx, &err));
        CHECK_OK(b->ops->download(b->ctx, out, dout, sizeof(int32_t) * rows, &err));
        for (int r = 0; r < rows; r++) {
            const float *row = x + (size_t)r * width;
            if (params[r].s.temperature <= 0.0f) {
                CHECK_MSG(out[r] == -7, "width %d row %d: not sampled, yet written (%d)", width, r, out[r]);
                continue;
            }
            const int32_t want = dw_pick_top_k(row, width, &params[r].s, params[r].u);
            CHECK_MSG(out[r] == want, "width %d row %d (kind %d, T %g, top_p %g, top_k %d, u %.17g): got %d want %d",
                      width, r, r % 7, params[r].s.temperature, params[r].s.top_p, params[r].s.top_k, params[r].u,
                      out[r], want);
            dw_device_sampling greedy = params[r].s;
            greedy.top_k = 1;
            sampled++;
            off_argmax += want != dw_pick_top_k(row, width, &greedy, 0.0);
        }
        b->ops->free(b->ctx, dx), b->ops->free(b->ctx, dp), b->ops->free(b->ctx, dout);
        free(x), free(params), free(out);
    }
    CHECK_MSG(off_argmax * 6 > sampled, "only %d of %d draws left the argmax", off_argmax, sampled);
}

TEST(batch_cpu_sample_rows_follow_the_rule) {
    dw_error err = {0};
    dw_backend *b = NULL;
    CHECK_OK(dw_backend_open("cpu", &b, &err));
    check_sample_rows(b, dw_test_failed_);
    dw_backend_close(b);
}

TEST(cuda_sample_rows_follow_the_rule) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    check_sample_rows(b, dw_test_failed_);
    dw_backend_close(b);
}
