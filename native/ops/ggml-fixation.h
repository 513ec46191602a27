// foveate's fixation ops (decode-time visual KV selection): constructors, in ggml-base.
// The op codes GGML_OP_FIX_SELECT / GGML_OP_FIX_ATTN are registered in ggml.h by
// patches/0002; kernels: ggml-cpu-fixation.h (CPU), ggml-cuda-fixation.cuh (CUDA).
// The full spec is at the top of ggml-fixation.c.
#pragma once

#include "ggml.h"

#ifdef __cplusplus
extern "C" {
#endif

// Layouts are those ggml_flash_attn_ext receives:
//   q [D, T, H, S] F32, k [D, N, Hkv, S], v [Dv, N, Hkv, S] (any strides), mask [N, >=T, 1, S]
//   F16/F32; index lists I32 [n, T, S], entries in [0, N) or -1 (ignored).
// fix_select: per query row, score(c) = sum_h softmax_c(scale*q_h.k_c + mask)[c] over all
//   cells, restricted to img_idx; returns the budget[t, s] best cells, ascending, -1 padded:
//   I32 [k_max, T, S]. Cells hidden by the mask are never returned.
GGML_API struct ggml_tensor * ggml_fix_select(
    struct ggml_context * ctx,
    struct ggml_tensor  * q,
    struct ggml_tensor  * k,
    struct ggml_tensor  * mask,
    struct ggml_tensor  * img_idx,  // I32 [n_img, T, S]
    struct ggml_tensor  * budget,   // I32 [T, S]
    int64_t               k_max,
    float                 scale);

// fix_attn with compensation: idx_c samples a pool of n_pool[t,s] cells (idx_b holds the
//   selected ones, ascending); its entries not in idx_b also enter, each with logit
//   + log(hidden cells / such entries), for the pool's hidden cells (native spec)
GGML_API void ggml_fix_attn_add_sample(
    struct ggml_tensor  * a,        // a ggml_fix_attn result with idx_b
    struct ggml_tensor  * idx_c,    // I32 [nc, T, S]
    struct ggml_tensor  * n_pool);  // I32 [T, S]

// fix_attn: softmax(scale*q.k + mask) v over the cells listed in idx_a and idx_b only
//   (a cell listed twice counts twice: keep the lists disjoint). Returns F32 [Dv, H, T, S],
//   the layout of ggml_flash_attn_ext's result.
GGML_API struct ggml_tensor * ggml_fix_attn(
    struct ggml_context * ctx,
    struct ggml_tensor  * q,
    struct ggml_tensor  * k,
    struct ggml_tensor  * v,
    struct ggml_tensor  * mask,
    struct ggml_tensor  * idx_a,    // I32 [na, T, S]
    struct ggml_tensor  * idx_b,    // I32 [nb, T, S] or NULL
    float                 scale);

// The focal layer's attention and scoring in one pass over K (fix_attn's "scored" mode):
//   attention over every cell the mask shows (what flash_attn_ext computes), and, for the
//   row's img_idx entries, score(c) = sum over query heads of that softmax's probability
//   (fix_select's score; -inf for padding, ids past the cache and hidden cells).
//   Returns the attention F32 [Dv, H, T, S]; *scores = F32 [n_img, T, S]. Both are views of
//   one op result, so an op reading the scores runs after it.
GGML_API struct ggml_tensor * ggml_fix_attn_scored(
    struct ggml_context * ctx,
    struct ggml_tensor  * q,
    struct ggml_tensor  * k,
    struct ggml_tensor  * v,
    struct ggml_tensor  * mask,
    struct ggml_tensor  * img_idx,  // I32 [n_img, T, S]
    float                 scale,
    struct ggml_tensor ** scores);

// top-k of given scores (fix_select's "topk" mode): per row, the budget[t, s] img_idx
//   entries of highest finite score (ties: the earlier entry), as ascending cell ids, -1
//   padded: I32 [k_max, T, S]; a row with budget < 0 gets its entries that have a finite
//   score, first k_max, unranked.
//   With scores from ggml_fix_attn_scored this is ggml_fix_select's result.
GGML_API struct ggml_tensor * ggml_fix_topk(
    struct ggml_context * ctx,
    struct ggml_tensor  * scores,   // F32 [n_img, T, S]
    struct ggml_tensor  * img_idx,  // I32 [n_img, T, S]
    struct ggml_tensor  * budget,   // I32 [T, S]
    int64_t               k_max);

// mass budget on a fix_select / fix_topk node: each refreshed row's budget becomes a ceiling;
//   the row keeps the fewest best-scored candidates whose scores reach `mass` (0, 1] of its
//   candidates' total score, at least k_min (spec: ggml-fixation.c). Unset: the budget itself
GGML_API void ggml_fix_select_set_mass(
    struct ggml_tensor  * sel,
    float                 mass,
    int32_t               k_min);

// the mode of a FIX_ATTN / FIX_SELECT node (op_params[1]): the kernels branch on it
enum ggml_fix_mode {
    GGML_FIX_MODE_LISTS  = 0,  // fix_attn over lists; fix_select scoring + top-k
    GGML_FIX_MODE_SCORED = 1,  // fix_attn_scored; fix_topk
};

#ifdef __cplusplus
}
#endif
