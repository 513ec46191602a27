// foveate's merge ops (RTPrune prefill token merging): constructors, in ggml-base. The op
// codes GGML_OP_OT_SINKHORN / GGML_OP_SCATTER_ADD_ROWS are registered in ggml.h by
// patches/0003; kernels: ggml-cpu-merge.h (CPU), ggml-cuda-merge.cuh (CUDA). The full spec
// is at the top of ggml-merge.c.
#pragma once

#include "ggml.h"

#ifdef __cplusplus
extern "C" {
#endif

// ot_sinkhorn: scores F32 [P, K] (K destinations x P sources) -> F32 [P, K], the real
//   block of the log-domain Sinkhorn plan with one dustbin row/column of value `dustbin`.
GGML_API struct ggml_tensor * ggml_ot_sinkhorn(
    struct ggml_context * ctx,
    struct ggml_tensor  * scores,
    float                 dustbin,
    int32_t               n_iter);

// scatter_add_rows: a F32 [d, N], idx I32 [n], b F32 [d, n] -> dst = a; dst[:, idx[i]] += b[:, i]
//   (in order; out-of-range entries skipped; repeated indices accumulate)
GGML_API struct ggml_tensor * ggml_scatter_add_rows(
    struct ggml_context * ctx,
    struct ggml_tensor  * a,
    struct ggml_tensor  * idx,
    struct ggml_tensor  * b);

#ifdef __cplusplus
}
#endif
