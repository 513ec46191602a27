// Constructors of foveate's merge ops (RTPrune token merging; compiled into ggml-base,
// declared in ggml-merge.h, op codes registered by patches/0003). Kernels:
// ggml-cpu-merge.cpp, ggml-cuda-merge.cu.
//
// ot_sinkhorn(scores F32 [P, K], z, n_iter) -> F32 [P, K]: the real block of SuperGlue's
//   dustbin optimal-transport plan between K destinations (rows) and P sources (columns).
//   Z = scores padded with one dustbin row and column of constant z; norm = -log(K+P);
//   log mu = [norm]*K ++ [log P + norm], log nu = [norm]*P ++ [log K + norm];
//   u = v = 0, then n_iter times: u_i = log mu_i - lse_j(Z_ij + v_j); v_j = log nu_j - lse_i(Z_ij + u_i);
//   T_ij = exp(Z_ij + u_i + v_j - norm) for the real i < K, j < P.
//   Fused because the op chain is 100 x ~8 nodes per image (and a CPU round trip per node).
// scatter_add_rows(a F32 [d, N], idx I32 [n], b F32 [d, n]) -> F32 [d, N]:
//   dst = a; dst[:, idx[i]] += b[:, i] for i in order; entries outside [0, N) are skipped.
//   Repeated indices accumulate (hard, ToMe-style merges); the kernels add in index order,
//   so the result is deterministic on both backends.
#include "ggml-merge.h"

#include "ggml-impl.h"

struct ggml_tensor * ggml_ot_sinkhorn(
        struct ggml_context * ctx,
        struct ggml_tensor  * scores,
        float                 dustbin,
        int32_t               n_iter) {
    GGML_ASSERT(scores->type == GGML_TYPE_F32 && ggml_is_contiguous(scores));
    GGML_ASSERT(scores->ne[2] == 1 && scores->ne[3] == 1);
    GGML_ASSERT(n_iter >= 0);

    struct ggml_tensor * result = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, scores->ne[0], scores->ne[1]);
    ggml_set_op_params_f32(result, 0, dustbin);
    ggml_set_op_params_i32(result, 1, n_iter);
    result->op     = GGML_OP_OT_SINKHORN;
    result->src[0] = scores;
    return result;
}

struct ggml_tensor * ggml_scatter_add_rows(
        struct ggml_context * ctx,
        struct ggml_tensor  * a,
        struct ggml_tensor  * idx,
        struct ggml_tensor  * b) {
    GGML_ASSERT(a->type == GGML_TYPE_F32 && b->type == GGML_TYPE_F32);
    GGML_ASSERT(ggml_is_contiguous(a) && ggml_is_contiguous(b));
    GGML_ASSERT(a->ne[2] == 1 && a->ne[3] == 1 && b->ne[2] == 1 && b->ne[3] == 1);
    GGML_ASSERT(idx->type == GGML_TYPE_I32 && ggml_is_contiguous(idx));
    GGML_ASSERT(a->ne[0] == b->ne[0] && idx->ne[0] == b->ne[1] && ggml_nrows(idx) == 1);

    struct ggml_tensor * result = ggml_dup_tensor(ctx, a);
    result->op     = GGML_OP_SCATTER_ADD_ROWS;
    result->src[0] = a;
    result->src[1] = idx;
    result->src[2] = b;
    return result;
}
