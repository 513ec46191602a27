// Constructors of foveate's fixation ops (compiled into ggml-base; declared in
// ggml-fixation.h, op codes registered by patches/0002). Kernels: ggml-cpu-fixation.cpp
// (CPU), ggml-cuda-fixation.cu (CUDA).
//
// Spec (layouts are the ones ggml_flash_attn_ext receives in llama.cpp's build_attn_mha):
//   q [D, T, H, S] F32, k [D, N, Hkv, S], v [Dv, N, Hkv, S] (any strides: the non-FA
//   cache gives a transposed view), mask [N, >=T, 1 , S or 1] F16/F32 (-inf = hidden),
//   index lists I32 [n, T, S] with cell ids in [0, N) or -1 (padding, ignored).
// fix_select -> I32 [k_max, T, S]: per row, score(c) = sum over query heads of
//   softmax_c(scale*q.k_c + mask) taken over all cells; the budget[t,s] best cells of the
//   row's img_idx with a finite mask, ascending, then -1. A row with budget < 0 is not
//   refreshed: its output is its img_idx list itself (valid ids, first k_max), no scoring.
// fix_attn -> F32 [Dv, H, T, S]: attention over the listed cells only (idx_a then idx_b),
//   with the mask still applied; a row with no visible cell gives 0.
//   With a sample (ggml_fix_attn_add_sample: idx_c I32 [n_c, T, S], n_pool I32 [T, S]): idx_c
//   lists a sample of a pool of n_pool[t,s] cells, of which idx_b holds the selected ones.
//   The sample's visible entries not in idx_b (idx_b ascending, then -1 padding; its prefix
//   before the first negative entry is what counts) stand for the pool's hidden cells: with
//   n_hid = n_pool - (visible entries of that prefix) and m such entries,
//   each is attended with logit + log(n_hid / m), an estimate of the hidden cells' softmax
//   terms (nothing when m = 0 or n_hid <= 0).
// Mass budget (ggml_fix_select_set_mass, fix_select and fix_topk): a refreshed row's budget is
//   a ceiling. Of the row's scored candidates (finite score), with M = the sum of their scores,
//   the row keeps the fewest highest-scored ones whose scores sum to >= mass*M (ties: the
//   earlier entry first), at least min(k_min, ceiling) and at most the ceiling.
#include "ggml-fixation.h"

#include "ggml-impl.h"

// the q / k / mask contract both ops share (flash_attn_ext's layouts)
static void fix_check_qk_mask(const struct ggml_tensor * q, const struct ggml_tensor * k,
                              const struct ggml_tensor * mask) {
    GGML_ASSERT(q->type == GGML_TYPE_F32);
    GGML_ASSERT(mask->type == GGML_TYPE_F16 || mask->type == GGML_TYPE_F32);
    GGML_ASSERT(q->ne[0] == k->ne[0]);
    GGML_ASSERT(q->ne[2] % k->ne[2] == 0);
    GGML_ASSERT(q->ne[3] == k->ne[3]);
    GGML_ASSERT(mask->ne[0] == k->ne[1] && mask->ne[1] >= q->ne[1]);
    GGML_ASSERT(k->ne[3] % mask->ne[3] == 0);
}

// ... and V beside K: the same cells, KV heads and streams
static void fix_check_qkv_mask(const struct ggml_tensor * q, const struct ggml_tensor * k,
                               const struct ggml_tensor * v, const struct ggml_tensor * mask) {
    fix_check_qk_mask(q, k, mask);
    GGML_ASSERT(k->ne[1] == v->ne[1] && k->ne[2] == v->ne[2] && k->ne[3] == v->ne[3]);
    // a transposed V (nb[0] != the type's size) is read an element at a time: float types
    GGML_ASSERT(v->nb[0] == ggml_type_size(v->type) || v->type == GGML_TYPE_F32 ||
                v->type == GGML_TYPE_F16 || v->type == GGML_TYPE_BF16);
}

// an I32 per-row list [n, T, S] of the rows of q
static void fix_check_row_list(const struct ggml_tensor * list, const struct ggml_tensor * q) {
    GGML_ASSERT(list->type == GGML_TYPE_I32 && ggml_is_contiguous(list));
    GGML_ASSERT(list->ne[1] == q->ne[1] && list->ne[2] == q->ne[3]);
}

// an I32 value per query row [T, S] (a budget, a pool size)
static void fix_check_per_row(const struct ggml_tensor * x, int64_t T, int64_t S) {
    GGML_ASSERT(x->type == GGML_TYPE_I32 && ggml_is_contiguous(x));
    GGML_ASSERT(x->ne[0] == T && x->ne[1] == S);
}

struct ggml_tensor * ggml_fix_select(
        struct ggml_context * ctx,
        struct ggml_tensor  * q,
        struct ggml_tensor  * k,
        struct ggml_tensor  * mask,
        struct ggml_tensor  * img_idx,
        struct ggml_tensor  * budget,
        int64_t               k_max,
        float                 scale) {
    fix_check_qk_mask(q, k, mask);
    fix_check_row_list(img_idx, q);
    fix_check_per_row(budget, q->ne[1], q->ne[3]);
    GGML_ASSERT(k_max >= 1);

    struct ggml_tensor * result = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, k_max, q->ne[1], q->ne[3]);
    ggml_set_op_params_f32(result, 0, scale);
    result->op     = GGML_OP_FIX_SELECT;
    result->src[0] = q;
    result->src[1] = k;
    result->src[2] = mask;
    result->src[3] = img_idx;
    result->src[4] = budget;
    return result;
}

struct ggml_tensor * ggml_fix_attn(
        struct ggml_context * ctx,
        struct ggml_tensor  * q,
        struct ggml_tensor  * k,
        struct ggml_tensor  * v,
        struct ggml_tensor  * mask,
        struct ggml_tensor  * idx_a,
        struct ggml_tensor  * idx_b,
        float                 scale) {
    fix_check_qkv_mask(q, k, v, mask);
    fix_check_row_list(idx_a, q);
    if (idx_b) {
        fix_check_row_list(idx_b, q);
    }

    struct ggml_tensor * result = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, v->ne[0], q->ne[2], q->ne[1], q->ne[3]);
    ggml_set_op_params_f32(result, 0, scale);
    result->op     = GGML_OP_FIX_ATTN;
    result->src[0] = q;
    result->src[1] = k;
    result->src[2] = v;
    result->src[3] = mask;
    result->src[4] = idx_a;
    result->src[5] = idx_b;
    return result;
}

struct ggml_tensor * ggml_fix_attn_scored(
        struct ggml_context * ctx,
        struct ggml_tensor  * q,
        struct ggml_tensor  * k,
        struct ggml_tensor  * v,
        struct ggml_tensor  * mask,
        struct ggml_tensor  * img_idx,
        float                 scale,
        struct ggml_tensor ** scores) {
    fix_check_qkv_mask(q, k, v, mask);
    fix_check_row_list(img_idx, q);
    GGML_ASSERT(scores);

    // one result holding both outputs, as ggml_ssm_scan concatenates y and its states
    const int64_t Dv = v->ne[0], H = q->ne[2], T = q->ne[1], S = q->ne[3], n_img = img_idx->ne[0];
    const int64_t n_attn = Dv*H*T*S;
    struct ggml_tensor * result = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, n_attn + n_img*T*S);
    ggml_set_op_params_f32(result, 0, scale);
    ggml_set_op_params_i32(result, 1, GGML_FIX_MODE_SCORED);
    result->op     = GGML_OP_FIX_ATTN;
    result->src[0] = q;
    result->src[1] = k;
    result->src[2] = v;
    result->src[3] = mask;
    result->src[4] = img_idx;

    const size_t f = sizeof(float);
    *scores = ggml_view_3d(ctx, result, n_img, T, S, n_img*f, n_img*T*f, n_attn*f);
    return ggml_view_4d(ctx, result, Dv, H, T, S, Dv*f, Dv*H*f, Dv*H*T*f, 0);
}

struct ggml_tensor * ggml_fix_topk(
        struct ggml_context * ctx,
        struct ggml_tensor  * scores,
        struct ggml_tensor  * img_idx,
        struct ggml_tensor  * budget,
        int64_t               k_max) {
    GGML_ASSERT(scores->type == GGML_TYPE_F32 && ggml_is_contiguous(scores));
    GGML_ASSERT(img_idx->type == GGML_TYPE_I32 && ggml_is_contiguous(img_idx));
    GGML_ASSERT(ggml_are_same_shape(scores, img_idx));
    fix_check_per_row(budget, scores->ne[1], scores->ne[2]);
    GGML_ASSERT(k_max >= 1);

    struct ggml_tensor * result = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, k_max, scores->ne[1], scores->ne[2]);
    ggml_set_op_params_i32(result, 1, GGML_FIX_MODE_SCORED);
    result->op     = GGML_OP_FIX_SELECT;
    result->src[0] = scores;
    result->src[3] = img_idx;
    result->src[4] = budget;
    return result;
}

void ggml_fix_select_set_mass(
        struct ggml_tensor * sel,
        float                mass,
        int32_t              k_min) {
    GGML_ASSERT(sel->op == GGML_OP_FIX_SELECT);
    GGML_ASSERT(mass > 0.0f && mass <= 1.0f && k_min >= 0);
    ggml_set_op_params_f32(sel, 2, mass);
    ggml_set_op_params_i32(sel, 3, k_min);
}

void ggml_fix_attn_add_sample(
        struct ggml_tensor * a,
        struct ggml_tensor * idx_c,
        struct ggml_tensor * n_pool) {
    GGML_ASSERT(a->op == GGML_OP_FIX_ATTN && a->src[5]);  // the sample needs the selection list
    const struct ggml_tensor * q = a->src[0];
    fix_check_row_list(idx_c, q);
    fix_check_per_row(n_pool, q->ne[1], q->ne[3]);
    a->src[6] = idx_c;
    a->src[7] = n_pool;
}
