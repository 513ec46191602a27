// CUDA kernels of foveate's merge ops (spec: ggml-merge.c; CPU twin: ggml-cpu-merge.cpp).
// Compiled into ggml-cuda; entry points in ggml-cuda-merge.cuh, dispatched by patches/0003 in ggml-cuda.cu.
//
// Everything on ctx.stream(), scratch from ctx.pool(), launch shapes depend on shapes only
// (CUDA-graph safe, no host sync).
// ot_sinkhorn: u and v live in the pool; each iteration is two launches: a 256-thread block
//   per augmented row (online log-sum-exp over the row, block reduction), then a thread per
//   augmented column walking the rows (a warp reads 32 adjacent columns of a row: coalesced).
//   n_iter = 100 gives 200 small launches per image (~1-2 ms), nothing next to a prefill.
// scatter_add_rows: dst = a (device copy), then a thread per feature walks idx in order:
//   deterministic (no atomics), coalesced over the feature dimension.

#include "ggml-cuda-merge.cuh"

#include <cstdint>

#define MERGE_NT 256

// online log-sum-exp state (max, sum of exp(x - max))
static __device__ __forceinline__ void lse_push(float & m, float & s, const float x) {
    if (x > m) {
        s = s * expf(m - x) + 1.0f;
        m = x;
    } else if (x > -INFINITY) {
        s += expf(x - m);
    }
}

static __device__ __forceinline__ void lse_merge(float & m, float & s, const float m2, const float s2) {
    if (m2 > m) {
        s = s * expf(m - m2) + s2;
        m = m2;
    } else if (m2 > -INFINITY) {
        s += s2 * expf(m2 - m);
    }
}

// u_i = log mu_i - lse_j(Z_ij + v_j), one block per augmented row i in [0, K]
static __global__ void __launch_bounds__(MERGE_NT) sinkhorn_rows(
        const float * S, const float * v, float * u, const int P, const int K,
        const float z, const float norm, const float mu_last) {
    const int i = blockIdx.x;
    float m = -INFINITY, s = 0.0f;
    for (int j = threadIdx.x; j <= P; j += MERGE_NT) {
        const float x = (i < K && j < P ? S[(int64_t) i*P + j] : z) + v[j];
        lse_push(m, s, x);
    }
    __shared__ float sm[MERGE_NT/WARP_SIZE], ss[MERGE_NT/WARP_SIZE];
#pragma unroll
    for (int off = WARP_SIZE/2; off > 0; off >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffff, m, off);
        const float s2 = __shfl_xor_sync(0xffffffff, s, off);
        lse_merge(m, s, m2, s2);
    }
    const int w = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    if (lane == 0) {
        sm[w] = m;
        ss[w] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < MERGE_NT/WARP_SIZE; k++) {
            lse_merge(m, s, sm[k], ss[k]);
        }
        u[i] = (i < K ? norm : mu_last) - (m + logf(s));
    }
}

// v_j = log nu_j - lse_i(Z_ij + u_i), one thread per augmented column j in [0, P]
static __global__ void sinkhorn_cols(
        const float * S, const float * u, float * v, const int P, const int K,
        const float z, const float norm, const float nu_last) {
    const int j = blockIdx.x*blockDim.x + threadIdx.x;
    if (j > P) {
        return;
    }
    float m = -INFINITY, s = 0.0f;
    for (int i = 0; i <= K; i++) {
        const float x = (i < K && j < P ? S[(int64_t) i*P + j] : z) + u[i];
        lse_push(m, s, x);
    }
    v[j] = (j < P ? norm : nu_last) - (m + logf(s));
}

static __global__ void sinkhorn_plan(
        const float * S, const float * u, const float * v, float * T, const int P, const int K, const float norm) {
    const int64_t e = (int64_t) blockIdx.x*blockDim.x + threadIdx.x;
    if (e >= (int64_t) P*K) {
        return;
    }
    const int i = (int) (e / P), j = (int) (e % P);
    T[e] = expf(S[e] + u[i] + v[j] - norm);
}

void ggml_cuda_ot_sinkhorn(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    const ggml_tensor * sc = dst->src[0];
    GGML_ASSERT(sc->type == GGML_TYPE_F32 && ggml_is_contiguous(sc) && ggml_is_contiguous(dst));
    const int P = (int) sc->ne[0], K = (int) sc->ne[1];
    const float z      = ggml_get_op_params_f32(dst, 0);
    const int   n_iter = ggml_get_op_params_i32(dst, 1);
    const float norm    = -logf((float) (K + P));
    const float mu_last = logf((float) P) + norm;
    const float nu_last = logf((float) K) + norm;
    cudaStream_t stream = ctx.stream();

    ggml_cuda_pool_alloc<float> u(ctx.pool(), K + 1);
    ggml_cuda_pool_alloc<float> v(ctx.pool(), P + 1);
    CUDA_CHECK(cudaMemsetAsync(u.get(), 0, (K + 1)*sizeof(float), stream));
    CUDA_CHECK(cudaMemsetAsync(v.get(), 0, (P + 1)*sizeof(float), stream));
    const float * S = (const float *) sc->data;
    for (int it = 0; it < n_iter; it++) {
        sinkhorn_rows<<<K + 1, MERGE_NT, 0, stream>>>(S, v.get(), u.get(), P, K, z, norm, mu_last);
        sinkhorn_cols<<<(P + 1 + MERGE_NT - 1)/MERGE_NT, MERGE_NT, 0, stream>>>(S, u.get(), v.get(), P, K, z, norm, nu_last);
    }
    const int64_t n = (int64_t) P*K;
    if (n > 0) {
        sinkhorn_plan<<<(unsigned) ((n + MERGE_NT - 1)/MERGE_NT), MERGE_NT, 0, stream>>>(
            S, u.get(), v.get(), (float *) dst->data, P, K, norm);
    }
}

static __global__ void scatter_add_rows_kernel(
        float * dst, const int32_t * idx, const float * b, const int64_t d, const int64_t N, const int64_t n) {
    const int64_t e = (int64_t) blockIdx.x*blockDim.x + threadIdx.x;
    if (e >= d) {
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = idx[i];
        if (r >= 0 && r < N) {
            dst[r*d + e] += b[i*d + e];
        }
    }
}

void ggml_cuda_scatter_add_rows(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    const ggml_tensor * a   = dst->src[0];
    const ggml_tensor * idx = dst->src[1];
    const ggml_tensor * b   = dst->src[2];
    GGML_ASSERT(ggml_is_contiguous(a) && ggml_is_contiguous(b) && ggml_is_contiguous(dst));
    cudaStream_t stream = ctx.stream();
    if (dst->data != a->data) {
        CUDA_CHECK(cudaMemcpyAsync(dst->data, a->data, ggml_nbytes(a), cudaMemcpyDeviceToDevice, stream));
    }
    const int64_t d = a->ne[0];
    if (d > 0 && b->ne[1] > 0) {
        scatter_add_rows_kernel<<<(unsigned) ((d + MERGE_NT - 1)/MERGE_NT), MERGE_NT, 0, stream>>>(
            (float *) dst->data, (const int32_t *) idx->data, (const float *) b->data, d, a->ne[1], b->ne[1]);
    }
}

bool ggml_cuda_merge_supported(const ggml_tensor * op) {
    for (int i = 0; i < GGML_MAX_SRC && op->src[i]; i++) {
        if (!ggml_is_contiguous(op->src[i])) {
            return false;
        }
    }
    return op->ne[1] < INT32_MAX && op->ne[0] < INT32_MAX;
}
