// CPU kernels of foveate's merge ops (spec: ggml-merge.c). Compiled into ggml-cpu.
//
// ot_sinkhorn: each iteration is two barriered phases over the (K+1) x (P+1) log-kernel:
// rows split over threads (u update), then columns split over threads (v update, as rows of
// the transposed scores made once per call). Each is a vectorized log-sum-exp (ggml's
// softmax kernel). Cost per iteration: 2 exp + ~4 loads per entry, all from cache for
// DeepSeek-OCR sizes (336 x 64 entries); 3440 x 656 (4096 tokens at 0.84) is 9 MB, from L3.
// scatter_add_rows: threads split the feature dimension, each walks idx in order (no races,
// same result for any thread count).
#include "ggml-cpu-merge.h"

#include "ggml-cpu-impl.h"
#include "ggml-cpu.h"
#include "ggml-impl.h"
#include "ggml.h"
#include "vec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace {

// log-sum-exp of x[0, n) (x is overwritten with exp(x - max)); vectorized by ggml's softmax
inline float lse_inplace(float * x, int64_t n) {
    float m = -INFINITY;
    ggml_vec_max_f32((int) n, &m, x);
    if (m == -INFINITY) {
        return -INFINITY;
    }
    const ggml_float s = ggml_vec_soft_max_f32((int) n, x, x, m);
    return m + (float) std::log(s);
}

struct sinkhorn_work {
    float * u, * v, * st, * tmp;   // tmp: this thread's scratch row
};

sinkhorn_work sinkhorn_layout(void * wdata, int64_t P, int64_t K, int ith) {
    const int64_t row = std::max(K, P) + 1 + 16;
    float * base = (float *) wdata;
    sinkhorn_work w;
    w.u   = base;
    w.v   = w.u + (K + 1);
    w.st  = w.v + (P + 1);
    w.tmp = w.st + K * P + ith * row;
    return w;
}

}  // namespace

extern "C" size_t ggml_merge_work_size(const struct ggml_tensor * node, int n_tasks) {
    if (node->op == GGML_OP_OT_SINKHORN) {
        const int64_t P = node->src[0]->ne[0], K = node->src[0]->ne[1];
        // u [K+1], v [P+1], scores transposed [P x K], a scratch row per thread
        return sizeof(float) * (size_t) ((K + 1) + (P + 1) + K * P + n_tasks * (std::max(K, P) + 1 + 16)) + 64;
    }
    return 0;
}

// Both phases are row log-sum-exps: rows of S for u, rows of S^T (made once) for v.
extern "C" void ggml_compute_forward_ot_sinkhorn(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    const ggml_tensor * sc = dst->src[0];
    const int64_t P = sc->ne[0], K = sc->ne[1];
    const float z     = ggml_get_op_params_f32(dst, 0);
    const int  n_iter = ggml_get_op_params_i32(dst, 1);
    const int ith = params->ith, nth = params->nth;
    const sinkhorn_work w = sinkhorn_layout(params->wdata, P, K, ith);
    const float * S = (const float *) sc->data;

    const float norm = -std::log((float) (K + P));
    const float mu_last = std::log((float) P) + norm;
    const float nu_last = std::log((float) K) + norm;

    // row ranges [r0, r1) of the K+1 augmented rows, column ranges [c0, c1) of the P+1 columns
    const int64_t rpt = (K + 1 + nth - 1) / nth, cpt = (P + 1 + nth - 1) / nth;
    const int64_t r0 = std::min(K + 1, ith * rpt), r1 = std::min(K + 1, r0 + rpt);
    const int64_t c0 = std::min(P + 1, ith * cpt), c1 = std::min(P + 1, c0 + cpt);

    for (int64_t i = r0; i < r1; i++) w.u[i] = 0.0f;
    for (int64_t j = c0; j < c1; j++) {
        w.v[j] = 0.0f;
        if (j < P) {
            for (int64_t i = 0; i < K; i++) w.st[j * K + i] = S[i * P + j];
        }
    }
    ggml_barrier(params->threadpool);

    float * t = w.tmp;
    for (int it = 0; it < n_iter; it++) {
        // u_i = log mu_i - lse_j(Z_ij + v_j)
        for (int64_t i = r0; i < r1; i++) {
            const float * row = S + i * P;
            for (int64_t j = 0; j < P; j++) t[j] = (i < K ? row[j] : z) + w.v[j];
            t[P] = z + w.v[P];
            w.u[i] = (i < K ? norm : mu_last) - lse_inplace(t, P + 1);
        }
        ggml_barrier(params->threadpool);
        // v_j = log nu_j - lse_i(Z_ij + u_i)
        for (int64_t j = c0; j < c1; j++) {
            const float * col = w.st + j * K;
            for (int64_t i = 0; i < K; i++) t[i] = (j < P ? col[i] : z) + w.u[i];
            t[K] = z + w.u[K];
            w.v[j] = (j < P ? norm : nu_last) - lse_inplace(t, K + 1);
        }
        ggml_barrier(params->threadpool);
    }

    // T_ij = exp(Z_ij + u_i + v_j - norm), real block, rows split over threads
    const int64_t kpt = (K + nth - 1) / nth;
    const int64_t k0 = std::min(K, ith * kpt), k1 = std::min(K, k0 + kpt);
    for (int64_t i = k0; i < k1; i++) {
        const float * row = S + i * P;
        float * out = (float *) ((char *) dst->data + i * dst->nb[1]);
        for (int64_t j = 0; j < P; j++) t[j] = row[j] + w.u[i] + w.v[j] - norm;
        ggml_vec_soft_max_f32((int) P, out, t, 0.0f);   // exp(t - 0)
    }
}

extern "C" void ggml_compute_forward_scatter_add_rows(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    const ggml_tensor * a   = dst->src[0];
    const ggml_tensor * idx = dst->src[1];
    const ggml_tensor * b   = dst->src[2];
    const int64_t d = a->ne[0], N = a->ne[1], n = b->ne[1];
    const int ith = params->ith, nth = params->nth;

    const int64_t per = (d + nth - 1) / nth;
    const int64_t e0 = std::min(d, ith * per), e1 = std::min(d, e0 + per);
    if (e0 >= e1) {
        return;
    }
    const int32_t * ix = (const int32_t *) idx->data;
    for (int64_t r = 0; r < N; r++) {
        const float * src = (const float *) ((const char *) a->data + r * a->nb[1]);
        float * out = (float *) ((char *) dst->data + r * dst->nb[1]);
        if (out != src) {
            memcpy(out + e0, src + e0, (e1 - e0) * sizeof(float));
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = ix[i];
        if (r < 0 || r >= N) {
            continue;
        }
        const float * add = (const float *) ((const char *) b->data + i * b->nb[1]);
        float * out = (float *) ((char *) dst->data + r * dst->nb[1]);
        for (int64_t e = e0; e < e1; e++) {
            out[e] += add[e];
        }
    }
}
