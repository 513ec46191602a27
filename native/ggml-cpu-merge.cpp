// CPU kernels of foveate's merge ops (spec: ggml-merge.c). Compiled into ggml-cpu.
//
// ot_sinkhorn: each iteration is two barriered phases over the (K+1) x (P+1) log-kernel:
// rows split over threads (u update), then columns split over threads (v update, walking
// the rows so each thread reads its column range contiguously). Cost per iteration:
// 2 exp + 2 loads per entry; for K+P = 1156 (DeepSeek-OCR Gundam) x 84% that is ~0.2 M entries.
// scatter_add_rows: threads split the feature dimension, each walks idx in order (no races,
// same result for any thread count).
#include "ggml-cpu-impl.h"
#include "ggml-cpu.h"
#include "ggml-impl.h"
#include "ggml.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace {

// log-sum-exp of (row[j] + add[j]) for j in [0, n) and of the dustbin term
inline float lse_row(const float * row, const float * add, int64_t n, float z_last, float add_last) {
    float m = z_last + add_last;
    for (int64_t j = 0; j < n; j++) {
        m = std::max(m, row[j] + add[j]);
    }
    if (m == -INFINITY) {
        return -INFINITY;
    }
    // float exp: the scores are cosines (|x| <= 1) plus potentials, sums of <= ~1e4 terms
    float s = std::exp(z_last + add_last - m);
    for (int64_t j = 0; j < n; j++) {
        s += std::exp(row[j] + add[j] - m);
    }
    return m + std::log(s);
}

}  // namespace

extern "C" size_t ggml_merge_work_size(const struct ggml_tensor * node, int n_tasks) {
    GGML_UNUSED(n_tasks);
    if (node->op == GGML_OP_OT_SINKHORN) {
        const int64_t P = node->src[0]->ne[0], K = node->src[0]->ne[1];
        // u [K+1], v [P+1], column max [P+1], column sum [P+1]
        return sizeof(float) * (size_t) ((K + 1) + 3 * (P + 1)) + 64;
    }
    return 0;
}

extern "C" void ggml_compute_forward_ot_sinkhorn(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    const ggml_tensor * sc = dst->src[0];
    const int64_t P = sc->ne[0], K = sc->ne[1];
    const float z     = ggml_get_op_params_f32(dst, 0);
    const int  n_iter = ggml_get_op_params_i32(dst, 1);
    const int ith = params->ith, nth = params->nth;

    float * u    = (float *) params->wdata;
    float * v    = u + (K + 1);
    float * cmax = v + (P + 1);
    float * csum = cmax + (P + 1);
    const float * S = (const float *) sc->data;

    const float norm = -std::log((float) (K + P));
    const float mu_last = std::log((float) P) + norm;
    const float nu_last = std::log((float) K) + norm;

    // row ranges [r0, r1) of the K+1 augmented rows, column ranges [c0, c1) of the P+1 columns
    const int64_t rpt = (K + 1 + nth - 1) / nth, cpt = (P + 1 + nth - 1) / nth;
    const int64_t r0 = std::min(K + 1, ith * rpt), r1 = std::min(K + 1, r0 + rpt);
    const int64_t c0 = std::min(P + 1, ith * cpt), c1 = std::min(P + 1, c0 + cpt);

    for (int64_t i = r0; i < r1; i++) u[i] = 0.0f;
    for (int64_t j = c0; j < c1; j++) v[j] = 0.0f;
    ggml_barrier(params->threadpool);

    for (int it = 0; it < n_iter; it++) {
        // u_i = log mu_i - lse_j(Z_ij + v_j)
        for (int64_t i = r0; i < r1; i++) {
            if (i < K) {
                u[i] = norm - lse_row(S + i * P, v, P, z, v[P]);
            } else {  // dustbin row: all entries z
                float m = -INFINITY;
                for (int64_t j = 0; j <= P; j++) m = std::max(m, z + v[j]);
                float s = 0.0f;
                for (int64_t j = 0; j <= P; j++) s += std::exp(z + v[j] - m);
                u[i] = mu_last - (m + std::log(s));
            }
        }
        ggml_barrier(params->threadpool);
        // v_j = log nu_j - lse_i(Z_ij + u_i), columns [c0, c1): two passes over the rows
        if (c0 < c1) {
            for (int64_t j = c0; j < c1; j++) cmax[j] = z + u[K];
            for (int64_t i = 0; i < K; i++) {
                const float * row = S + i * P;
                for (int64_t j = c0; j < std::min(c1, P); j++) cmax[j] = std::max(cmax[j], row[j] + u[i]);
                if (c1 == P + 1) cmax[P] = std::max(cmax[P], z + u[i]);
            }
            for (int64_t j = c0; j < c1; j++) csum[j] = std::exp(z + u[K] - cmax[j]);
            for (int64_t i = 0; i < K; i++) {
                const float * row = S + i * P;
                for (int64_t j = c0; j < std::min(c1, P); j++) csum[j] += std::exp(row[j] + u[i] - cmax[j]);
                if (c1 == P + 1) csum[P] += std::exp(z + u[i] - cmax[P]);
            }
            for (int64_t j = c0; j < c1; j++) {
                v[j] = (j < P ? norm : nu_last) - (cmax[j] + std::log(csum[j]));
            }
        }
        ggml_barrier(params->threadpool);
    }

    // T_ij = exp(Z_ij + u_i + v_j - norm), real block, rows split over threads
    const int64_t kpt = (K + nth - 1) / nth;
    const int64_t k0 = std::min(K, ith * kpt), k1 = std::min(K, k0 + kpt);
    for (int64_t i = k0; i < k1; i++) {
        const float * row = S + i * P;
        float * out = (float *) ((char *) dst->data + i * dst->nb[1]);
        for (int64_t j = 0; j < P; j++) {
            out[j] = std::exp(row[j] + u[i] + v[j] - norm);
        }
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
