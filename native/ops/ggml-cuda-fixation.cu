// CUDA kernels of foveate's fixation ops (spec: ggml-fixation.c; CPU twin: ggml-cpu-fixation.cpp).
// Compiled into ggml-cuda; entry points in ggml-cuda-fixation.cuh, dispatched by patches/0002 in ggml-cuda.cu.
//
// Design (everything on ctx.stream(), scratch from ctx.pool(), launch shapes depend on shapes
// only: CUDA-graph safe, no host sync). Lane layout: lane holds elements (lane + 32 i)*E + [0, E)
// of a row (E = 4, or 2 for head dims <= 64): one 8/16 byte load per lane per row.
// fix_attn: block = 4 warps = (row t, kv head g, stream s, up to 8 query heads of g, list split);
//   grid (T*Hkv*ceil(G/8), splits, S). The block compacts the visible cells (entry >= 0, mask
//   finite) of 128-entry tiles of idx_a ++ idx_b into shared memory; warps take cells round-robin
//   (2 in flight), warp-reduce q.k for each head and keep an online softmax (max, sum, acc) per
//   head in registers; warps merge in shared memory. Splits (>= 64 entries) are added while
//   T*Hkv*S blocks would not fill ~4 blocks/SM; their (max, sum, acc) partials go to the pool
//   and fix_attn_combine merges them. Traffic per step: the K and V rows of the visited cells
//   once per kv head, 4 B per list entry + its mask value, splits*H*(Dv+2)*4 B of partials x2.
//   With a sample (idx_c), the blocks whose split holds sample entries first find idx_b's
//   ascending prefix (binary search for its first -1), count its visible entries and the sample
//   entries not in it (binary search) to get the sample's logit offset; sample entries then
//   join the list after idx_b with that offset added to the mask value.
// fix_select: (1) grid (N/32, Hkv, S): a warp keeps 8 K rows in registers and loops over the rows
//   t and the G query heads (8 dots reduced in 9 shuffles): logits [S, T, H, N] = scale q.k +
//   mask (-inf if hidden) into the pool (K read once); (2) a block per (s, t, h): logsumexp;
//   (3) a thread per img_idx entry: score = sum_h exp(l - lse), then an order-preserving uint
//   key (0 = not a candidate); (4) a 1024-thread block per row: 4-pass radix select of the b-th
//   largest key, keys above it plus the first ties in list order, bitonic sort of the cell ids
//   (shared memory up to 8192, else pool), -1 padding. Traffic: K once + logits ~3 x H*N*4 B.
// fix_attn_scored (the fused focal layer): (1) and (2) as fix_select, then V once: a block per
//   (t, g, 8 query heads, split of cells) sums exp(l - lse) v (weights already normalised), a
//   fixed-order combine adds the splits (deterministic), (3) writes the scores. fix_topk: (3)'s
//   keys from given scores, then (4). Traffic: K once + V once + logits; stock FA + fix_select
//   read K twice.

#include "ggml-cuda-fixation.cuh"
#include "ggml-fixation.h"      // GGML_FIX_MODE_*

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#define FIX_NW              4                   // warps per block of the cell kernels
#define FIX_NT              (FIX_NW*WARP_SIZE)  // threads per block of the cell kernels
#define FIX_CPW             8                   // cells per warp, fix_select logits kernel
#define FIX_MIN_SPLIT       64                  // fix_attn: min list entries per split
#define FIX_MAX_SPLITS      256                 // fix_attn: max splits per row
#define FIX_SEL_NT          1024                // threads per block, top-k kernel
#define FIX_SEL_SMEM_INTS   8192                // sort buffer in shared memory up to this size
#define FIX_RED_NT          256                 // threads per block, lse / keys kernels
#define FIX_LOGITS_MAX      (int64_t(256) << 20) // bytes of logits per pass of fix_select

static_assert(WARP_SIZE == 32, "fixation kernels assume 32-wide warps");


struct fix_params {
    const char * q;
    const char * k;
    const char * v;   // nullptr for fix_select
    const char * m;   // nullptr: no mask
    int64_t nbq0, nbq1, nbq2, nbq3;
    int64_t nbk0, nbk1, nbk2, nbk3;
    int64_t nbv0, nbv1, nbv2, nbv3;
    int64_t nbm0, nbm1, nbm3;
    int D, Dv, T, H, S, N, Hkv, G, nem3;
    int k_f16, v_f16, m_f16;
    float scale;
};

typedef union {
    int2  i2;
    half2 h2[2];
} fix_half4;

// E consecutive elements starting at element d0 of a row, as floats.
// VEC: the row is contiguous and aligned to E elements (checked on the host).
template <int E, bool VEC>
static __device__ __forceinline__ void fix_load(const char * row, const int f16, const int64_t nb0, const int d0, float * out) {
    if constexpr (VEC) {
        if (f16) {
            const half * src = (const half *) row + d0;
            if constexpr (E == 4) {
                fix_half4 h;
                h.i2 = *(const int2 *) src;
                const float2 a = __half22float2(h.h2[0]);
                const float2 b = __half22float2(h.h2[1]);
                out[0] = a.x; out[1] = a.y; out[2] = b.x; out[3] = b.y;
            } else {
                static_assert(E == 2, "bad E");
                const float2 a = __half22float2(*(const half2 *) src);
                out[0] = a.x; out[1] = a.y;
            }
        } else {
            const float * src = (const float *) row + d0;
            if constexpr (E == 4) {
                const float4 a = *(const float4 *) src;
                out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
            } else {
                static_assert(E == 2, "bad E");
                const float2 a = *(const float2 *) src;
                out[0] = a.x; out[1] = a.y;
            }
        }
    } else {
#pragma unroll
        for (int e = 0; e < E; ++e) {
            const char * pe = row + (int64_t) (d0 + e)*nb0;
            out[e] = f16 ? __half2float(*(const half *) pe) : *(const float *) pe;
        }
    }
}

static __device__ __forceinline__ float fix_mask_val(const fix_params & p, const int c, const int t, const int s) {
    if (p.m == nullptr) {
        return 0.0f;
    }
    const char * ptr = p.m + c*p.nbm0 + t*p.nbm1 + (s % p.nem3)*p.nbm3;
    return p.m_f16 ? __half2float(*(const half *) ptr) : *(const float *) ptr;
}

// fix_attn's sample list (ggml_fix_attn_add_sample): idx_c entries per row, n_pool[t, s]
struct fix_sample {
    const char * ic;        // nullptr: no sample
    int64_t nbc0, nbc1, nbc2;
    int nc;
    const int32_t * pool;   // I32 [T, S], contiguous
};

// is c among the first n entries (ascending) of a list row?
static __device__ __forceinline__ bool fix_in_sorted(const char * row, const int64_t nb0, const int n, const int c) {
    int lo = 0;
    int hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (*(const int32_t *) (row + mid*nb0) < c) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && *(const int32_t *) (row + lo*nb0) == c;
}

// block-wide reductions, blockDim.x a multiple of 32; every thread gets the result
static __device__ __forceinline__ float fix_block_max(float x, float * s_red) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    x = warp_reduce_max(x);
    __syncthreads(); // s_red may still be read by a previous reduction
    if (lane == 0) {
        s_red[warp] = x;
    }
    __syncthreads();
    x = lane < (int) (blockDim.x / WARP_SIZE) ? s_red[lane] : -INFINITY;
    return warp_reduce_max(x);
}

static __device__ __forceinline__ float fix_block_sum(float x, float * s_red) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    x = warp_reduce_sum(x);
    __syncthreads();
    if (lane == 0) {
        s_red[warp] = x;
    }
    __syncthreads();
    x = lane < (int) (blockDim.x / WARP_SIZE) ? s_red[lane] : 0.0f;
    return warp_reduce_sum(x);
}

// exclusive prefix count of flag over the block (thread order) and the block total
static __device__ __forceinline__ int fix_block_excl_scan(const bool flag, int * s_w, int & total) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int warp = threadIdx.x / WARP_SIZE;
    const int nw   = blockDim.x / WARP_SIZE;
    const unsigned bal = __ballot_sync(0xffffffff, flag);
    if (lane == 0) {
        s_w[warp] = __popc(bal);
    }
    __syncthreads();
    int off = 0;
    int tot = 0;
    for (int w = 0; w < nw; ++w) {
        const int c = s_w[w];
        off += w < warp ? c : 0;
        tot += c;
    }
    __syncthreads(); // s_w is reused by the next call
    total = tot;
    return off + __popc(bal & ((1u << lane) - 1u));
}

// ------------------------------------------------------------------------------------------------
// fix_attn
// ------------------------------------------------------------------------------------------------

// one visible cell for the GB heads of a warp: online softmax update
template <int GB, int NI, int E>
static __device__ __forceinline__ void fix_attn_cell(
        const float (&qr)[GB][NI][E], const float (&kr)[NI][E], const float (&vr)[NI][E],
        const float mv, const float scale, const int nh,
        float (&m)[GB], float (&ls)[GB], float (&acc)[GB][NI][E]) {
#pragma unroll
    for (int gl = 0; gl < GB; ++gl) {
        if (gl >= nh) {
            break;
        }
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < NI; ++i) {
#pragma unroll
            for (int e = 0; e < E; ++e) {
                dot = fmaf(qr[gl][i][e], kr[i][e], dot);
            }
        }
        dot = warp_reduce_sum(dot);
        const float lg = scale*dot + mv;
        // lg and m[gl] are the same on all lanes: uniform branch
        if (lg > m[gl]) {
            const float cs = expf(m[gl] - lg); // m = -inf -> 0
            m[gl]  = lg;
            ls[gl] = ls[gl]*cs + 1.0f;
#pragma unroll
            for (int i = 0; i < NI; ++i) {
#pragma unroll
                for (int e = 0; e < E; ++e) {
                    acc[gl][i][e] = fmaf(acc[gl][i][e], cs, vr[i][e]);
                }
            }
        } else {
            const float pr = expf(lg - m[gl]);
            ls[gl] += pr;
#pragma unroll
            for (int i = 0; i < NI; ++i) {
#pragma unroll
                for (int e = 0; e < E; ++e) {
                    acc[gl][i][e] = fmaf(pr, vr[i][e], acc[gl][i][e]);
                }
            }
        }
    }
}

// DMAX >= max(D, Dv): lane holds elements (lane + 32*i)*E + [0, E), i < NI. VQK: q and K rows
// take vector loads; VV: V rows do (a transposed V, flash attention off, is strided: scalar
// loads for V only, K and q keep theirs)
template <int DMAX, int GB, bool VQK, bool VV>
static __global__ void __launch_bounds__(FIX_NT) fix_attn_kernel(
        const fix_params p,
        const char * __restrict__ ia, const int64_t nba0, const int64_t nba1, const int64_t nba2, const int na,
        const char * __restrict__ ib, const int64_t nbb0, const int64_t nbb1, const int64_t nbb2, const int nb,
        const fix_sample smp,
        const int split_len, const int n_hsub,
        char * __restrict__ dst, const int64_t nbd1, const int64_t nbd2, const int64_t nbd3,
        float2 * __restrict__ part_ms, float * __restrict__ part_acc) {
    constexpr int E  = DMAX >= 128 ? 4 : 2;
    constexpr int NI = DMAX / (WARP_SIZE*E);
    static_assert(NI >= 1 && NI*WARP_SIZE*E == DMAX, "bad DMAX");

    const int hs    = blockIdx.x % n_hsub;
    const int tg    = blockIdx.x / n_hsub;
    const int g     = tg % p.Hkv;
    const int t     = tg / p.Hkv;
    const int split = blockIdx.y;
    const int s     = blockIdx.z;

    const int tid  = threadIdx.x;
    const int warp = tid / WARP_SIZE;
    const int lane = tid % WARP_SIZE;

    const int h0 = g*p.G + hs*GB;
    const int nh = min(GB, p.G - hs*GB);

    float qr[GB][NI][E];
#pragma unroll
    for (int gl = 0; gl < GB; ++gl) {
#pragma unroll
        for (int i = 0; i < NI; ++i) {
            const int d0 = (lane + WARP_SIZE*i)*E;
            if (gl < nh && d0 < p.D) {
                fix_load<E, VQK>(p.q + t*p.nbq1 + (h0 + gl)*p.nbq2 + s*p.nbq3, 0, p.nbq0, d0, qr[gl][i]);
            } else {
#pragma unroll
                for (int e = 0; e < E; ++e) {
                    qr[gl][i][e] = 0.0f;
                }
            }
        }
    }

    float m[GB];
    float ls[GB];
    float acc[GB][NI][E];
#pragma unroll
    for (int gl = 0; gl < GB; ++gl) {
        m[gl]  = -INFINITY;
        ls[gl] = 0.0f;
#pragma unroll
        for (int i = 0; i < NI; ++i) {
#pragma unroll
            for (int e = 0; e < E; ++e) {
                acc[gl][i][e] = 0.0f;
            }
        }
    }

    const char * kb = p.k + g*p.nbk2 + s*p.nbk3;
    const char * vb = p.v + g*p.nbv2 + s*p.nbv3;

    __shared__ int   s_cell[FIX_NT];
    __shared__ float s_mv[FIX_NT];
    __shared__ int   s_cnt[FIX_NW];
    __shared__ int   s_smp[2];   // visible entries of idx_b's sorted prefix, sample entries that enter

    const char * ib_row = ib + t*nbb1 + s*nbb2;
    const char * ic_row = smp.ic ? smp.ic + t*smp.nbc1 + s*smp.nbc2 : nullptr;
    const int L       = na + nb + (ic_row ? smp.nc : 0);
    const int e_begin = min(L, split*split_len);
    const int e_end   = min(L, e_begin + split_len);

    // the sample's logit offset (spec: ggml-fixation.c); only blocks whose split holds sample
    // entries need it (the condition is uniform over the block, so the barriers are safe)
    float log_w = -INFINITY;
    int   nb_sorted = 0;
    if (ic_row && e_end > na + nb) {
        // idx_b's ascending prefix ends at its first negative entry: binary search
        int lo = 0;
        int hi = nb;
        while (lo < hi) {
            const int mid = (lo + hi) / 2;
            if (*(const int32_t *) (ib_row + mid*nbb0) >= 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        nb_sorted = lo;
        if (tid == 0) {
            s_smp[0] = 0;
            s_smp[1] = 0;
        }
        __syncthreads();
        // visible selected cells, then sample entries that enter: one atomic per warp
        for (int i0 = 0; i0 < nb_sorted; i0 += FIX_NT) {
            const int i = i0 + tid;
            bool vis = false;
            if (i < nb_sorted) {
                const int c = *(const int32_t *) (ib_row + i*nbb0);
                vis = c < p.N && fix_mask_val(p, c, t, s) != -INFINITY;
            }
            const unsigned bal = __ballot_sync(0xffffffff, vis);
            if (lane == 0 && bal) {
                atomicAdd(&s_smp[0], __popc(bal));
            }
        }
        for (int i0 = 0; i0 < smp.nc; i0 += FIX_NT) {
            const int i = i0 + tid;
            bool in = false;
            if (i < smp.nc) {
                const int c = *(const int32_t *) (ic_row + i*smp.nbc0);
                in = c >= 0 && c < p.N && fix_mask_val(p, c, t, s) != -INFINITY &&
                     !fix_in_sorted(ib_row, nbb0, nb_sorted, c);
            }
            const unsigned bal = __ballot_sync(0xffffffff, in);
            if (lane == 0 && bal) {
                atomicAdd(&s_smp[1], __popc(bal));
            }
        }
        __syncthreads();
        const int n_hid = smp.pool[s*p.T + t] - s_smp[0];
        const int m_in  = s_smp[1];
        log_w = m_in > 0 && n_hid > 0 ? logf((float) n_hid / (float) m_in) : -INFINITY;
    }

    for (int e0 = e_begin; e0 < e_end; e0 += FIX_NT) {
        // compact the visible cells of this tile, in list order
        const int e = e0 + tid;
        int c = -1;
        const bool in_c = e >= na + nb;
        if (e < e_end) {
            c = e < na ? *(const int32_t *) (ia + e*nba0 + t*nba1 + s*nba2)
              : !in_c  ? *(const int32_t *) (ib_row + (e - na)*nbb0)
                       : *(const int32_t *) (ic_row + (e - na - nb)*smp.nbc0);
        }
        bool  ok = c >= 0 && c < p.N;
        float mv = 0.0f;
        if (ok) {
            mv = fix_mask_val(p, c, t, s);
            ok = mv != -INFINITY;
        }
        if (ok && in_c) {
            // a sample entry: skipped when selected (attended exactly) or when none enters
            ok = log_w != -INFINITY && !fix_in_sorted(ib_row, nbb0, nb_sorted, c);
            mv += log_w;
        }
        const unsigned bal = __ballot_sync(0xffffffff, ok);
        if (lane == 0) {
            s_cnt[warp] = __popc(bal);
        }
        __syncthreads();
        int off   = 0;
        int total = 0;
#pragma unroll
        for (int w = 0; w < FIX_NW; ++w) {
            const int cnt = s_cnt[w];
            off   += w < warp ? cnt : 0;
            total += cnt;
        }
        if (ok) {
            const int j = off + __popc(bal & ((1u << lane) - 1u));
            s_cell[j] = c;
            s_mv[j]   = mv;
        }
        __syncthreads();

        // warps take cells round-robin, two in flight
        for (int j = warp; j < total; j += 2*FIX_NW) {
            const int  j1   = j + FIX_NW;
            const bool has1 = j1 < total;
            const int  c0   = s_cell[j];
            const int  c1   = has1 ? s_cell[j1] : c0;

            float k0[NI][E], v0[NI][E], k1[NI][E], v1[NI][E];
#pragma unroll
            for (int i = 0; i < NI; ++i) {
                const int d0 = (lane + WARP_SIZE*i)*E;
                if (d0 < p.D) {
                    fix_load<E, VQK>(kb + c0*p.nbk1, p.k_f16, p.nbk0, d0, k0[i]);
                    fix_load<E, VQK>(kb + c1*p.nbk1, p.k_f16, p.nbk0, d0, k1[i]);
                } else {
#pragma unroll
                    for (int ee = 0; ee < E; ++ee) {
                        k0[i][ee] = 0.0f;
                        k1[i][ee] = 0.0f;
                    }
                }
                if (d0 < p.Dv) {
                    fix_load<E, VV>(vb + c0*p.nbv1, p.v_f16, p.nbv0, d0, v0[i]);
                    fix_load<E, VV>(vb + c1*p.nbv1, p.v_f16, p.nbv0, d0, v1[i]);
                } else {
#pragma unroll
                    for (int ee = 0; ee < E; ++ee) {
                        v0[i][ee] = 0.0f;
                        v1[i][ee] = 0.0f;
                    }
                }
            }
            fix_attn_cell<GB, NI, E>(qr, k0, v0, s_mv[j], p.scale, nh, m, ls, acc);
            if (has1) {
                fix_attn_cell<GB, NI, E>(qr, k1, v1, s_mv[j1], p.scale, nh, m, ls, acc);
            }
        }
        __syncthreads(); // s_cell / s_mv / s_cnt are rewritten by the next tile
    }

    // merge the warps
    __shared__ float s_m[FIX_NW][GB];
    __shared__ float s_l[FIX_NW][GB];
    __shared__ float s_acc[FIX_NW][GB][DMAX];

    if (lane == 0) {
#pragma unroll
        for (int gl = 0; gl < GB; ++gl) {
            s_m[warp][gl] = m[gl];
            s_l[warp][gl] = ls[gl];
        }
    }
    __syncthreads();
#pragma unroll
    for (int gl = 0; gl < GB; ++gl) {
        if (gl >= nh) {
            break;
        }
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < FIX_NW; ++w) {
            M = fmaxf(M, s_m[w][gl]);
        }
        const float f = m[gl] == -INFINITY ? 0.0f : expf(m[gl] - M);
#pragma unroll
        for (int i = 0; i < NI; ++i) {
#pragma unroll
            for (int e = 0; e < E; ++e) {
                const int d = (lane + WARP_SIZE*i)*E + e;
                if (d < p.Dv) {
                    s_acc[warp][gl][d] = acc[gl][i][e]*f;
                }
            }
        }
    }
    __syncthreads();

    const int64_t rows = (int64_t) p.S*p.T*p.H;
    for (int idx = tid; idx < nh*p.Dv; idx += FIX_NT) {
        const int gl = idx / p.Dv;
        const int d  = idx % p.Dv;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < FIX_NW; ++w) {
            M = fmaxf(M, s_m[w][gl]);
        }
        float l = 0.0f;
        float a = 0.0f;
#pragma unroll
        for (int w = 0; w < FIX_NW; ++w) {
            const float mw = s_m[w][gl];
            if (mw != -INFINITY) {
                l += s_l[w][gl]*expf(mw - M);
            }
            a += s_acc[w][gl][d];
        }
        const int h = h0 + gl;
        if (gridDim.y == 1) {
            *(float *) (dst + d*sizeof(float) + h*nbd1 + t*nbd2 + s*nbd3) = l > 0.0f ? a/l : 0.0f;
        } else {
            const int64_t pi = split*rows + ((int64_t) s*p.T + t)*p.H + h;
            part_acc[pi*p.Dv + d] = a;
            if (d == 0) {
                part_ms[pi] = make_float2(M, l);
            }
        }
    }
}

// merge the splits: one block per (h, t, s)
static __global__ void __launch_bounds__(128) fix_attn_combine(
        const float2 * __restrict__ part_ms, const float * __restrict__ part_acc,
        const int n_splits, const int T, const int H, const int Dv,
        char * __restrict__ dst, const int64_t nbd1, const int64_t nbd2, const int64_t nbd3) {
    const int64_t rows = gridDim.x;
    const int64_t r    = blockIdx.x;
    const int h = r % H;
    const int t = (r / H) % T;
    const int s = r / ((int64_t) H*T);

    __shared__ float s_f[FIX_MAX_SPLITS];
    __shared__ float s_red[WARP_SIZE];

    float M = -INFINITY;
    for (int c = threadIdx.x; c < n_splits; c += blockDim.x) {
        const float2 ms = part_ms[c*rows + r];
        if (ms.y > 0.0f) {
            M = fmaxf(M, ms.x);
        }
    }
    M = fix_block_max(M, s_red);

    float l = 0.0f;
    for (int c = threadIdx.x; c < n_splits; c += blockDim.x) {
        const float2 ms = part_ms[c*rows + r];
        const float  f  = ms.y > 0.0f ? expf(ms.x - M) : 0.0f;
        s_f[c] = f;
        l += ms.y*f;
    }
    l = fix_block_sum(l, s_red); // contains __syncthreads: s_f is visible after it

    for (int d = threadIdx.x; d < Dv; d += blockDim.x) {
        float a = 0.0f;
        for (int c = 0; c < n_splits; ++c) {
            const float f = s_f[c];
            if (f != 0.0f) {
                a += part_acc[(c*rows + r)*Dv + d]*f;
            }
        }
        *(float *) (dst + d*sizeof(float) + h*nbd1 + t*nbd2 + s*nbd3) = l > 0.0f ? a/l : 0.0f;
    }
}

// ------------------------------------------------------------------------------------------------
// fix_select
// ------------------------------------------------------------------------------------------------

// v[0..8): per-lane partial sums of 8 dot products; returns on every lane the full sum of
// product (lane >> 2) & 7 (9 shuffles instead of 40)
static __device__ __forceinline__ float fix_reduce8(float (&v)[FIX_CPW], const int lane) {
    {
        const bool hi = lane & 16;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float send = hi ? v[i]     : v[i + 4];
            const float keep = hi ? v[i + 4] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffff, send, 16, WARP_SIZE);
        }
    }
    {
        const bool hi = lane & 8;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const float send = hi ? v[i]     : v[i + 2];
            const float keep = hi ? v[i + 2] : v[i];
            v[i] = keep + __shfl_xor_sync(0xffffffff, send, 8, WARP_SIZE);
        }
    }
    {
        const bool hi = lane & 4;
        const float send = hi ? v[0] : v[1];
        const float keep = hi ? v[1] : v[0];
        v[0] = keep + __shfl_xor_sync(0xffffffff, send, 4, WARP_SIZE);
    }
    v[0] += __shfl_xor_sync(0xffffffff, v[0], 2, WARP_SIZE);
    v[0] += __shfl_xor_sync(0xffffffff, v[0], 1, WARP_SIZE);
    return v[0];
}

// logits[((s*tr + tt)*H + h)*N + c] = scale*q(t0+tt, h, s).k(c, g, s) + mask, -inf if hidden
template <int DMAX, bool VEC>
static __global__ void __launch_bounds__(FIX_NT) fix_select_logits(
        const fix_params p, const int t0, const int tr, float * __restrict__ logits) {
    constexpr int E  = DMAX >= 128 ? 4 : 2;
    constexpr int NI = DMAX / (WARP_SIZE*E);
    static_assert(NI >= 1 && NI*WARP_SIZE*E == DMAX, "bad DMAX");

    const int g    = blockIdx.y;
    const int s    = blockIdx.z;
    const int warp = threadIdx.x / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;

    const int c_base = (blockIdx.x*FIX_NW + warp)*FIX_CPW;
    if (c_base >= p.N) {
        return; // whole warp; no block-level sync below
    }

    const char * kb = p.k + g*p.nbk2 + s*p.nbk3;
    float kr[FIX_CPW][NI][E];
#pragma unroll
    for (int ci = 0; ci < FIX_CPW; ++ci) {
        const int c = c_base + ci;
#pragma unroll
        for (int i = 0; i < NI; ++i) {
            const int d0 = (lane + WARP_SIZE*i)*E;
            if (c < p.N && d0 < p.D) {
                fix_load<E, VEC>(kb + c*p.nbk1, p.k_f16, p.nbk0, d0, kr[ci][i]);
            } else {
#pragma unroll
                for (int e = 0; e < E; ++e) {
                    kr[ci][i][e] = 0.0f;
                }
            }
        }
    }

    const int  c_w    = c_base + (lane >> 2);
    const bool writer = (lane & 3) == 0 && c_w < p.N;

    for (int tt = 0; tt < tr; ++tt) {
        const int t = t0 + tt;
        const float mv = writer ? fix_mask_val(p, c_w, t, s) : 0.0f;
        for (int gl = 0; gl < p.G; ++gl) {
            const int h = g*p.G + gl;
            float qv[NI][E];
#pragma unroll
            for (int i = 0; i < NI; ++i) {
                const int d0 = (lane + WARP_SIZE*i)*E;
                if (d0 < p.D) {
                    fix_load<E, VEC>(p.q + t*p.nbq1 + h*p.nbq2 + s*p.nbq3, 0, p.nbq0, d0, qv[i]);
                } else {
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        qv[i][e] = 0.0f;
                    }
                }
            }
            float dots[FIX_CPW];
#pragma unroll
            for (int ci = 0; ci < FIX_CPW; ++ci) {
                float d = 0.0f;
#pragma unroll
                for (int i = 0; i < NI; ++i) {
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        d = fmaf(qv[i][e], kr[ci][i][e], d);
                    }
                }
                dots[ci] = d;
            }
            const float dot = fix_reduce8(dots, lane);
            if (writer) {
                logits[(((int64_t) s*tr + tt)*p.H + h)*p.N + c_w] = mv == -INFINITY ? -INFINITY : p.scale*dot + mv;
            }
        }
    }
}

// lse[r] = logsumexp of logits row r (-inf if every cell is hidden)
static __global__ void __launch_bounds__(FIX_RED_NT) fix_select_lse(
        const float * __restrict__ logits, const int N, float * __restrict__ lse) {
    __shared__ float s_red[WARP_SIZE];
    const float * row = logits + (int64_t) blockIdx.x*N;

    float mx = -INFINITY;
    for (int c = threadIdx.x; c < N; c += blockDim.x) {
        mx = fmaxf(mx, row[c]);
    }
    mx = fix_block_max(mx, s_red);
    if (mx == -INFINITY) {
        if (threadIdx.x == 0) {
            lse[blockIdx.x] = -INFINITY;
        }
        return; // uniform over the block
    }
    float sum = 0.0f;
    for (int c = threadIdx.x; c < N; c += blockDim.x) {
        sum += expf(row[c] - mx); // hidden: exp(-inf) = 0
    }
    sum = fix_block_sum(sum, s_red);
    if (threadIdx.x == 0) {
        lse[blockIdx.x] = mx + logf(sum);
    }
}

// one block per row: the min(b, #candidates, K) largest keys, their cell ids ascending, -1 after
static __global__ void __launch_bounds__(FIX_SEL_NT) fix_select_topk(
        const uint32_t * __restrict__ keys,
        const char * __restrict__ idx, const int64_t nbi0, const int64_t nbi1, const int64_t nbi2, const int n_img,
        const char * __restrict__ bud, const int64_t nbb0, const int64_t nbb1,
        char * __restrict__ dst, const int64_t nbd1, const int64_t nbd2, const int K,
        const int t0, const int tr, int * __restrict__ gbuf, const int P_cap, const int N, const int need_key) {
    extern __shared__ int s_dyn[];
    __shared__ int      s_hist[256];
    __shared__ int      s_w[FIX_SEL_NT/WARP_SIZE];
    __shared__ uint32_t s_prefix;
    __shared__ int      s_rank;
    __shared__ int      s_kk;
    __shared__ int      s_nsel;

    const int tid  = threadIdx.x;
    const int lane = tid % WARP_SIZE;
    const int warp = tid / WARP_SIZE;
    const int tt   = blockIdx.x;
    const int s    = blockIdx.y;
    const int t    = t0 + tt;
    const int64_t rr = (int64_t) s*tr + tt;

    const uint32_t * krow = keys + rr*n_img;
    int * buf = gbuf ? gbuf + rr*P_cap : s_dyn;
    int32_t * out = (int32_t *) (dst + t*nbd1 + s*nbd2);

    int b = *(const int32_t *) (bud + t*nbb0 + s*nbb1);
    if (b < 0) {
        // not refreshed: the row's list is its selection (ids of cells that exist, first K),
        // -1 after; as the CPU path, an id past the cache's N cells is skipped, never read later
        if (tid == 0) {
            const char * irow = idx + (int64_t) t*nbi1 + (int64_t) s*nbi2;
            int n = 0;
            for (int e = 0; e < n_img && n < K; ++e) {
                const int32_t c = *(const int32_t *) (irow + (int64_t) e*nbi0);
                if (c >= 0 && c < N && (!need_key || krow[e] != 0)) {  // fix_topk: a finite score
                    out[n++] = c;
                }
            }
            for (; n < K; ++n) {
                out[n] = -1;
            }
        }
        return;
    }
    b = max(0, min(b, K));

    if (tid == 0) {
        s_prefix = 0;
        s_rank   = b;
        s_kk     = 0;
    }
    __syncthreads();

    // radix select (8 bits per pass, MSB first) of the kk-th largest nonzero key
    uint32_t prefix = 0;
    uint32_t pmask  = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += blockDim.x) {
            s_hist[i] = 0;
        }
        __syncthreads();
        for (int e0 = 0; e0 < n_img; e0 += blockDim.x) { // whole warps iterate (warp-level match below)
            const int      e   = e0 + tid;
            const uint32_t key = e < n_img ? krow[e] : 0;
            const int      bin = key != 0 && (key & pmask) == prefix ? (int) ((key >> shift) & 255) : -1;
#if !defined(GGML_USE_HIP) && !defined(GGML_USE_MUSA) && __CUDA_ARCH__ >= GGML_CUDA_CC_VOLTA
            // scores cluster in a few bins: one shared atomic per distinct bin and warp
            const unsigned same = __match_any_sync(0xffffffff, bin);
            if (bin >= 0 && lane == __ffs(same) - 1) {
                atomicAdd(&s_hist[bin], __popc(same));
            }
#else
            if (bin >= 0) {
                atomicAdd(&s_hist[bin], 1);
            }
#endif
        }
        __syncthreads();
        if (warp == 0) {
            int rank = s_rank;
            int cnt[8];
            int lsum = 0;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                cnt[j] = s_hist[lane*8 + j];
                lsum  += cnt[j];
            }
            // every lane has read s_rank before the one lane below rewrites it: the shuffles
            // in between order execution, not memory (and the compiler may sink a shared
            // load past them), so without this the read and the write race (sm_70+)
            __syncwarp();
            // incl = count in the bins of lanes >= lane
            int incl = lsum;
#pragma unroll
            for (int off = 1; off < WARP_SIZE; off <<= 1) {
                const int y = __shfl_down_sync(0xffffffff, incl, off, WARP_SIZE);
                if (lane + off < WARP_SIZE) {
                    incl += y;
                }
            }
            if (shift == 24) {
                const int total = __shfl_sync(0xffffffff, incl, 0, WARP_SIZE); // # candidates
                rank = min(rank, total);
                if (lane == 0) {
                    s_kk = rank;
                }
            }
            const int above = incl - lsum;
            if (rank > 0 && above < rank && incl >= rank) { // exactly one lane
                int cum = above;
#pragma unroll
                for (int j = 7; j >= 0; --j) {
                    if (cum + cnt[j] >= rank) {
                        s_prefix = prefix | ((uint32_t) (lane*8 + j) << shift);
                        s_rank   = rank - cum;
                        break;
                    }
                    cum += cnt[j];
                }
            }
        }
        __syncthreads();
        if (s_kk == 0) {
            break; // uniform
        }
        prefix = s_prefix;
        pmask |= 0xFFu << shift;
    }

    const int kk = s_kk;
    if (kk == 0) {
        for (int j = tid; j < K; j += blockDim.x) {
            out[j] = -1;
        }
        return;
    }
    const uint32_t theta   = prefix; // the kk-th largest key (> 0)
    const int      need_eq = s_rank; // how many keys == theta are taken (first ones in list order)

    if (tid == 0) {
        s_nsel = 0;
    }
    __syncthreads();

    int eq_before = 0;
    for (int e0 = 0; e0 < n_img; e0 += blockDim.x) { // uniform loop (block scan inside)
        const int      e   = e0 + tid;
        const uint32_t key = e < n_img ? krow[e] : 0;
        const bool     eq  = e < n_img && key == theta;
        int n_eq;
        const int pos = fix_block_excl_scan(eq, s_w, n_eq);
        const bool take = key > theta || (eq && eq_before + pos < need_eq);
        // slots in any order (sorted below): one shared atomic per warp
        const unsigned tb = __ballot_sync(0xffffffff, take);
        int base = 0;
        if (lane == 0 && tb != 0) {
            base = atomicAdd(&s_nsel, __popc(tb));
        }
        base = __shfl_sync(0xffffffff, base, 0, WARP_SIZE);
        if (take) {
            const int slot = base + __popc(tb & ((1u << lane) - 1u));
            if (slot < P_cap) {
                buf[slot] = *(const int32_t *) (idx + e*nbi0 + t*nbi1 + s*nbi2);
            }
        }
        eq_before += n_eq;
    }
    __syncthreads();

    // bitonic sort of buf[0, P) ascending, P = next power of 2 >= kk (<= P_cap)
    int P = 1;
    while (P < kk) {
        P <<= 1;
    }
    for (int j = kk + tid; j < P; j += blockDim.x) {
        buf[j] = INT_MAX;
    }
    __syncthreads();
    for (int k2 = 2; k2 <= P; k2 <<= 1) {
        for (int j = k2 >> 1; j > 0; j >>= 1) {
            for (int i = tid; i < P; i += blockDim.x) {
                const int ixj = i ^ j;
                if (ixj > i) {
                    const int  x  = buf[i];
                    const int  y  = buf[ixj];
                    const bool up = (i & k2) == 0;
                    if ((x > y) == up) {
                        buf[i]   = y;
                        buf[ixj] = x;
                    }
                }
            }
            __syncthreads();
        }
    }
    for (int j = tid; j < K; j += blockDim.x) {
        out[j] = j < kk ? buf[j] : -1;
    }
}

// ------------------------------------------------------------------------------------------------
// fix_attn_scored (the fused focal layer) and fix_topk
// ------------------------------------------------------------------------------------------------

// partial attention output from known weights: block = (row t, kv head g, up to 8 of its query
// heads) x split x stream; out_part[((rr*H + h)*n_split + split)*Dv + d] = sum over the split's
// cells of exp(l - lse) * v (the softmax is already normalised: no running max needed)
template <int DMAX, bool VEC>
static __global__ void __launch_bounds__(FIX_NT) fix_scored_v(
        const fix_params p, const float * __restrict__ logits, const float * __restrict__ lse,
        const int t0, const int tr, const int n_hsub, const int split_len, float * __restrict__ out_part) {
    constexpr int E  = DMAX >= 128 ? 4 : 2;
    constexpr int NI = DMAX / (WARP_SIZE*E);
    constexpr int GB = 8;
    __shared__ float s_acc[FIX_NW][GB][DMAX];

    const int hs    = blockIdx.x % n_hsub;
    const int g     = (blockIdx.x / n_hsub) % p.Hkv;
    const int tt    = blockIdx.x / (n_hsub*p.Hkv);
    const int split = blockIdx.y;
    const int s     = blockIdx.z;
    const int warp  = threadIdx.x / WARP_SIZE;
    const int lane  = threadIdx.x % WARP_SIZE;
    const int h0    = g*p.G + hs*GB;
    const int nh    = min(GB, p.G - hs*GB);
    const int64_t rr = (int64_t) s*tr + tt;
    const int c0 = split*split_len, c1 = min(p.N, c0 + split_len);

    float acc[GB][NI][E];
#pragma unroll
    for (int j = 0; j < GB; ++j)
#pragma unroll
        for (int i = 0; i < NI; ++i)
#pragma unroll
            for (int e = 0; e < E; ++e) acc[j][i][e] = 0.0f;

    const char * vb = p.v + g*p.nbv2 + s*p.nbv3;
    for (int c = c0 + warp; c < c1; c += FIX_NW) {
        float w[GB];
        bool any = false;
#pragma unroll
        for (int j = 0; j < GB; ++j) {
            const int h = h0 + j;
            const float z = j < nh ? lse[rr*p.H + h] : -INFINITY;
            const float l = j < nh && z != -INFINITY ? logits[(rr*p.H + h)*p.N + c] : -INFINITY;
            w[j] = l == -INFINITY ? 0.0f : expf(l - z);
            any |= w[j] != 0.0f;
        }
        if (!any) {
            continue;  // hidden cell (uniform over the warp)
        }
        float vr[NI][E];
#pragma unroll
        for (int i = 0; i < NI; ++i) {
            const int d0 = (lane + WARP_SIZE*i)*E;
            if (d0 < p.Dv) {
                fix_load<E, VEC>(vb + c*p.nbv1, p.v_f16, p.nbv0, d0, vr[i]);
            } else {
#pragma unroll
                for (int e = 0; e < E; ++e) vr[i][e] = 0.0f;
            }
        }
#pragma unroll
        for (int j = 0; j < GB; ++j)
#pragma unroll
            for (int i = 0; i < NI; ++i)
#pragma unroll
                for (int e = 0; e < E; ++e) acc[j][i][e] = fmaf(w[j], vr[i][e], acc[j][i][e]);
    }
    // the warps' sums, then one write per (head, element)
#pragma unroll
    for (int j = 0; j < GB; ++j)
#pragma unroll
        for (int i = 0; i < NI; ++i)
#pragma unroll
            for (int e = 0; e < E; ++e) s_acc[warp][j][(lane + WARP_SIZE*i)*E + e] = acc[j][i][e];
    __syncthreads();
    const int n_split = gridDim.y;
    for (int x = threadIdx.x; x < nh*p.Dv; x += blockDim.x) {
        const int j = x / p.Dv, d = x % p.Dv;
        float sum = 0.0f;
#pragma unroll
        for (int w2 = 0; w2 < FIX_NW; ++w2) sum += s_acc[w2][j][d];
        out_part[((rr*p.H + h0 + j)*n_split + split)*p.Dv + d] = sum;
    }
}

// out[((s*T + t)*H + h)*Dv + d] = sum over splits of the partials (fixed order: deterministic)
static __global__ void __launch_bounds__(FIX_RED_NT) fix_scored_combine(
        const float * __restrict__ part, const int n_split, const int Dv, const int H, const int T,
        const int t0, const int tr, float * __restrict__ out) {
    const int64_t x = (int64_t) blockIdx.x*blockDim.x + threadIdx.x;  // over (tt, h, d); y: s
    if (x >= (int64_t) tr*H*Dv) {
        return;
    }
    const int s = blockIdx.y;
    const int d = (int) (x % Dv), h = (int) ((x / Dv) % H), tt = (int) (x / ((int64_t) Dv*H));
    const int64_t rr = (int64_t) s*tr + tt;
    const float * pr = part + (rr*H + h)*n_split*Dv + d;
    float sum = 0.0f;
    for (int j = 0; j < n_split; ++j) sum += pr[(int64_t) j*Dv];
    out[(((int64_t) s*T + t0 + tt)*H + h)*Dv + d] = sum;
}

// scores[(s*out_T + out_t0 + tt)*n_img + e] = sum_h exp(l - lse) of the entry's cell, -inf if
// not a candidate (padding, past the cache, hidden); fix_select and the fused focal layer
static __global__ void __launch_bounds__(FIX_RED_NT) fix_scored_scores(
        const fix_params p, const float * __restrict__ logits, const float * __restrict__ lse,
        const char * __restrict__ idx, const int64_t nbi0, const int64_t nbi1, const int64_t nbi2,
        const int n_img, const int t0, const int tr, const int out_t0, const int out_T,
        float * __restrict__ scores) {
    const int e  = blockIdx.x*blockDim.x + threadIdx.x;
    const int tt = blockIdx.y;
    const int s  = blockIdx.z;
    if (e >= n_img) {
        return;
    }
    const int     t  = t0 + tt;
    const int64_t rr = (int64_t) s*tr + tt;
    const int     c  = *(const int32_t *) (idx + e*nbi0 + t*nbi1 + s*nbi2);
    float sc = -INFINITY;
    if (c >= 0 && c < p.N && fix_mask_val(p, c, t, s) != -INFINITY) {
        sc = 0.0f;
        for (int h = 0; h < p.H; ++h) {
            const float z = lse[rr*p.H + h];
            if (z != -INFINITY) {
                sc += expf(logits[(rr*p.H + h)*p.N + c] - z);
            }
        }
    }
    scores[((int64_t) s*out_T + out_t0 + tt)*n_img + e] = sc;
}

// fix_topk's keys: a finite score (>= 0) -> its bits + 1 (uint order = float order), else 0
static __global__ void __launch_bounds__(FIX_RED_NT) fix_topk_keys(
        const float * __restrict__ scores, const int64_t n, uint32_t * __restrict__ keys) {
    const int64_t i = (int64_t) blockIdx.x*blockDim.x + threadIdx.x;
    if (i < n) {
        const float sc = scores[i];
        keys[i] = sc == -INFINITY || !(sc >= 0.0f) ? 0u : __float_as_uint(sc) + 1u;
    }
}

// the mass budget (spec: ggml-fixation.c), one block per row of rows [t0, t0 + trc): a
// refreshed row's budget is a ceiling b. tau = the largest key with sum(scores of keys >=
// tau) >= mass x (all candidates' scores), found by bisection on the keys' bits (keys order
// as scores do); the row keeps every cell above tau and, of the cells tied at tau, the fewest
// that reach the mass (as the CPU, which adds cells one at a time); then clamp to
// [min(k_min, b), b]. Rows not refreshed (b < 0) keep their budget.
static __global__ void __launch_bounds__(FIX_RED_NT) fix_mass_budget(
        const uint32_t * __restrict__ keys, const int n_img,
        const char * __restrict__ bud, const int64_t nbb0, const int64_t nbb1,
        int32_t * __restrict__ out, const int T, const int t0, const int tr,
        const float mass, const int k_min) {
    __shared__ float s_red[FIX_RED_NT/WARP_SIZE];
    const int tt = blockIdx.x, s = blockIdx.y, t = t0 + tt;
    const uint32_t * krow = keys + ((int64_t) s*tr + tt)*n_img;
    const int b = *(const int32_t *) (bud + t*nbb0 + s*nbb1);
    if (b < 0) {
        if (threadIdx.x == 0) {
            out[(int64_t) s*T + t] = b;
        }
        return;
    }
    float total = 0.0f;
    for (int e = threadIdx.x; e < n_img; e += blockDim.x) {
        total += krow[e] ? __uint_as_float(krow[e] - 1u) : 0.0f;
    }
    total = fix_block_sum(total, s_red);
    const float want = mass*total;
    uint64_t lo = 1, hi = 0x100000000ull;   // S(lo) = total >= want; S(hi) = 0
    while (hi - lo > 1) {
        const uint64_t mid = (lo + hi)/2;
        float part = 0.0f;
        for (int e = threadIdx.x; e < n_img; e += blockDim.x) {
            part += krow[e] >= mid ? __uint_as_float(krow[e] - 1u) : 0.0f;
        }
        part = fix_block_sum(part, s_red);   // every thread gets the same sum: the same branch
        if (part >= want) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // above tau: their count and score sum (< want, or tau + 1 would have passed); at tau: count
    float n_gt = 0.0f, s_gt = 0.0f, n_eq = 0.0f;
    for (int e = threadIdx.x; e < n_img; e += blockDim.x) {
        const uint32_t key = krow[e];
        if (key > lo) {
            n_gt += 1.0f;
            s_gt += __uint_as_float(key - 1u);
        }
        n_eq += key != 0 && key == lo ? 1.0f : 0.0f;
    }
    n_gt = fix_block_sum(n_gt, s_red);
    s_gt = fix_block_sum(s_gt, s_red);
    n_eq = fix_block_sum(n_eq, s_red);
    if (threadIdx.x == 0) {
        const float v = __uint_as_float((uint32_t) lo - 1u);   // the tied cells' score
        int m = (int) n_eq;
        if (v > 0.0f && s_gt < want) {
            m = min(m, max(1, (int) ceilf((want - s_gt)/v)));
        }
        const int j = (int) n_gt + m;
        out[(int64_t) s*T + t] = max(min(j, b), min(b, k_min));
    }
}

// ------------------------------------------------------------------------------------------------
// host side
// ------------------------------------------------------------------------------------------------

static void fix_attn_scored(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
static void fix_topk(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
static bool fix_scored_supported(const ggml_tensor * op);

static bool fix_type_ok(const ggml_type t) {
    return t == GGML_TYPE_F16 || t == GGML_TYPE_F32;
}

// rows of x start aligned to `bytes` and are contiguous
static bool fix_vec_ok(const ggml_tensor * x, const size_t bytes) {
    return x->nb[0] == ggml_type_size(x->type) &&
           (uintptr_t) x->data % bytes == 0 &&
           x->nb[1] % bytes == 0 && x->nb[2] % bytes == 0 && x->nb[3] % bytes == 0;
}

static int fix_dmax(const int d) {
    return d <= 64 ? 64 : d <= 128 ? 128 : 256;
}

static int fix_elems_per_lane(const int dmax) {
    return dmax >= 128 ? 4 : 2;
}

// a head size d the kernels take when the kernel's DMAX is picked from `pick` (the largest
// head size it handles): a lane loads E consecutive elements of a row (E = 2 up to 64, 4
// above), so a row must be whole lane loads: d % E == 0, at most 256. (The gate was d % 32,
// which refused head sizes such as 80 or 200 that the kernels take.)
static bool fix_head_ok(const int64_t d, const int64_t pick) {
    return d > 0 && d <= 256 && pick <= 256 && d % fix_elems_per_lane(fix_dmax((int) pick)) == 0;
}

static fix_params fix_make_params(const ggml_tensor * q, const ggml_tensor * k, const ggml_tensor * v,
                                  const ggml_tensor * mask, const float scale) {
    fix_params p;
    memset(&p, 0, sizeof(p));
    p.q = (const char *) q->data;
    p.k = (const char *) k->data;
    p.v = v ? (const char *) v->data : nullptr;
    p.m = mask ? (const char *) mask->data : nullptr;
    p.nbq0 = q->nb[0]; p.nbq1 = q->nb[1]; p.nbq2 = q->nb[2]; p.nbq3 = q->nb[3];
    p.nbk0 = k->nb[0]; p.nbk1 = k->nb[1]; p.nbk2 = k->nb[2]; p.nbk3 = k->nb[3];
    if (v) {
        p.nbv0 = v->nb[0]; p.nbv1 = v->nb[1]; p.nbv2 = v->nb[2]; p.nbv3 = v->nb[3];
    }
    if (mask) {
        p.nbm0 = mask->nb[0]; p.nbm1 = mask->nb[1]; p.nbm3 = mask->nb[3];
        p.nem3 = (int) mask->ne[3];
        p.m_f16 = mask->type == GGML_TYPE_F16;
    } else {
        p.nem3 = 1;
    }
    p.D     = (int) q->ne[0];
    p.Dv    = v ? (int) v->ne[0] : 0;
    p.T     = (int) q->ne[1];
    p.H     = (int) q->ne[2];
    p.S     = (int) q->ne[3];
    p.N     = (int) k->ne[1];
    p.Hkv   = (int) k->ne[2];
    p.G     = p.H / p.Hkv;
    p.k_f16 = k->type == GGML_TYPE_F16;
    p.v_f16 = v ? v->type == GGML_TYPE_F16 : 0;
    p.scale = scale;
    return p;
}

template <int DMAX, int GB, bool VQK, bool VV>
static void fix_attn_launch(const fix_params & p, const ggml_tensor * ia, const ggml_tensor * ib, const fix_sample & smp,
                            const int split_len, const int n_splits, const int n_hsub, ggml_tensor * dst,
                            float2 * part_ms, float * part_acc, cudaStream_t stream) {
    const dim3 grid((unsigned) ((int64_t) p.T*p.Hkv*n_hsub), (unsigned) n_splits, (unsigned) p.S);
    fix_attn_kernel<DMAX, GB, VQK, VV><<<grid, FIX_NT, 0, stream>>>(
        p,
        (const char *) ia->data, ia->nb[0], ia->nb[1], ia->nb[2], (int) ia->ne[0],
        ib ? (const char *) ib->data : (const char *) ia->data,
        ib ? ib->nb[0] : 0, ib ? ib->nb[1] : 0, ib ? ib->nb[2] : 0, ib ? (int) ib->ne[0] : 0,
        smp, split_len, n_hsub,
        (char *) dst->data, dst->nb[1], dst->nb[2], dst->nb[3],
        part_ms, part_acc);
}

template <int DMAX, bool VQK, bool VV>
static void fix_attn_launch_gb(const int GB, const fix_params & p, const ggml_tensor * ia, const ggml_tensor * ib, const fix_sample & smp,
                               const int split_len, const int n_splits, const int n_hsub, ggml_tensor * dst,
                               float2 * part_ms, float * part_acc, cudaStream_t stream) {
    switch (GB) {
        case 1: fix_attn_launch<DMAX, 1, VQK, VV>(p, ia, ib, smp, split_len, n_splits, n_hsub, dst, part_ms, part_acc, stream); break;
        case 2: fix_attn_launch<DMAX, 2, VQK, VV>(p, ia, ib, smp, split_len, n_splits, n_hsub, dst, part_ms, part_acc, stream); break;
        case 4: fix_attn_launch<DMAX, 4, VQK, VV>(p, ia, ib, smp, split_len, n_splits, n_hsub, dst, part_ms, part_acc, stream); break;
        case 8: fix_attn_launch<DMAX, 8, VQK, VV>(p, ia, ib, smp, split_len, n_splits, n_hsub, dst, part_ms, part_acc, stream); break;
        default: GGML_ABORT("fix_attn: bad head group %d", GB);
    }
}

void ggml_cuda_fix_attn(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    if (ggml_get_op_params_i32(dst, 1) == GGML_FIX_MODE_SCORED) {
        fix_attn_scored(ctx, dst);
        return;
    }
    const ggml_tensor * q    = dst->src[0];
    const ggml_tensor * k    = dst->src[1];
    const ggml_tensor * v    = dst->src[2];
    const ggml_tensor * mask = dst->src[3];
    const ggml_tensor * ia   = dst->src[4];
    const ggml_tensor * ib   = dst->src[5];
    const ggml_tensor * ic   = dst->src[6];
    const ggml_tensor * pool = dst->src[7];

    GGML_ASSERT(q->type == GGML_TYPE_F32 && dst->type == GGML_TYPE_F32);
    GGML_ASSERT(!ic || (ib && pool && ic->type == GGML_TYPE_I32 && pool->type == GGML_TYPE_I32));
    const fix_sample smp = {
        ic ? (const char *) ic->data : nullptr, ic ? ic->nb[0] : 0, ic ? ic->nb[1] : 0, ic ? ic->nb[2] : 0,
        ic ? (int) ic->ne[0] : 0, pool ? (const int32_t *) pool->data : nullptr,
    };
    GGML_ASSERT(fix_type_ok(k->type) && fix_type_ok(v->type));
    GGML_ASSERT(!mask || fix_type_ok(mask->type));
    GGML_ASSERT(ia && ia->type == GGML_TYPE_I32 && (!ib || ib->type == GGML_TYPE_I32));
    GGML_ASSERT(dst->nb[0] == sizeof(float));
    GGML_ASSERT(fix_head_ok(q->ne[0], std::max(q->ne[0], v->ne[0])) &&
                fix_head_ok(v->ne[0], std::max(q->ne[0], v->ne[0])));
    GGML_ASSERT(q->ne[2] % k->ne[2] == 0);

    float scale;
    memcpy(&scale, (const float *) dst->op_params + 0, sizeof(float));

    const fix_params p = fix_make_params(q, k, v, mask, scale);
    if (p.T == 0 || p.H == 0 || p.S == 0 || p.Dv == 0) {
        return;
    }
    cudaStream_t stream = ctx.stream();

    int GB = 1; // heads per block: next power of 2 >= G, at most 8
    while (GB < p.G && GB < 8) {
        GB <<= 1;
    }
    const int n_hsub = (p.G + GB - 1) / GB;

    // list splits: enough blocks to fill the GPU when T*Hkv*S is small
    const int64_t L      = ia->ne[0] + (ib ? ib->ne[0] : 0) + (ic ? ic->ne[0] : 0);
    GGML_ASSERT(L < INT_MAX);
    const int     nsm    = ggml_cuda_info().devices[ctx.device].nsm;
    const int64_t blocks = (int64_t) p.T*p.Hkv*n_hsub*p.S;
    int64_t n_splits = 1;
    if (L > 0) {
        const int64_t want   = (4*(int64_t) nsm + blocks - 1) / blocks;
        const int64_t by_len = (L + FIX_MIN_SPLIT - 1) / FIX_MIN_SPLIT;
        n_splits = std::max<int64_t>(1, std::min<int64_t>({want, by_len, (int64_t) FIX_MAX_SPLITS}));
    }
    int64_t split_len = L > 0 ? (L + n_splits - 1) / n_splits : 1;
    n_splits = L > 0 ? (L + split_len - 1) / split_len : 1;

    ggml_cuda_pool_alloc<float2> part_ms(ctx.pool());
    ggml_cuda_pool_alloc<float>  part_acc(ctx.pool());
    if (n_splits > 1) {
        const int64_t rows = (int64_t) p.S*p.T*p.H;
        part_ms.alloc(n_splits*rows);
        part_acc.alloc(n_splits*rows*p.Dv);
    }

    const int dmax = fix_dmax(std::max(p.D, p.Dv));
    const size_t eb = fix_elems_per_lane(dmax);
    const bool vqk = fix_vec_ok(q, eb*sizeof(float)) && fix_vec_ok(k, eb*ggml_type_size(k->type));
    const bool vv  = fix_vec_ok(v, eb*ggml_type_size(v->type));

    const int sl = (int) split_len;
    const int ns = (int) n_splits;
#define FIX_ATTN_LAUNCH(DM) \
    if (vqk && vv)  fix_attn_launch_gb<DM, true,  true >(GB, p, ia, ib, smp, sl, ns, n_hsub, dst, part_ms.ptr, part_acc.ptr, stream); \
    else if (vqk)   fix_attn_launch_gb<DM, true,  false>(GB, p, ia, ib, smp, sl, ns, n_hsub, dst, part_ms.ptr, part_acc.ptr, stream); \
    else if (vv)    fix_attn_launch_gb<DM, false, true >(GB, p, ia, ib, smp, sl, ns, n_hsub, dst, part_ms.ptr, part_acc.ptr, stream); \
    else            fix_attn_launch_gb<DM, false, false>(GB, p, ia, ib, smp, sl, ns, n_hsub, dst, part_ms.ptr, part_acc.ptr, stream)
    if (dmax == 64) {
        FIX_ATTN_LAUNCH(64);
    } else if (dmax == 128) {
        FIX_ATTN_LAUNCH(128);
    } else {
        FIX_ATTN_LAUNCH(256);
    }
#undef FIX_ATTN_LAUNCH
    CUDA_CHECK(cudaGetLastError());

    if (n_splits > 1) {
        const int64_t rows = (int64_t) p.S*p.T*p.H;
        fix_attn_combine<<<(unsigned) rows, 128, 0, stream>>>(
            part_ms.ptr, part_acc.ptr, ns, p.T, p.H, p.Dv,
            (char *) dst->data, dst->nb[1], dst->nb[2], dst->nb[3]);
        CUDA_CHECK(cudaGetLastError());
    }
}

template <int DMAX, bool VEC>
static void fix_select_logits_launch(const fix_params & p, const int t0, const int tr, float * logits, cudaStream_t stream) {
    const dim3 grid((unsigned) ((p.N + FIX_NW*FIX_CPW - 1) / (FIX_NW*FIX_CPW)), (unsigned) p.Hkv, (unsigned) p.S);
    fix_select_logits<DMAX, VEC><<<grid, FIX_NT, 0, stream>>>(p, t0, tr, logits);
}

// rows t per pass of fix_select / fix_attn_scored: bounds their logits scratch. The op tests
// shrink the bound (FOVEATE_FIX_LOGITS_MAX, bytes) so a small case takes several passes.
static int64_t fix_rows_per_pass(const fix_params & p) {
    const char * env = getenv("FOVEATE_FIX_LOGITS_MAX");
    const int64_t max_bytes = env && atoll(env) > 0 ? (int64_t) atoll(env) : FIX_LOGITS_MAX;
    const int64_t per_t = (int64_t) p.S*p.H*p.N*sizeof(float);
    const int64_t tr = per_t > 0 ? std::max<int64_t>(1, max_bytes / per_t) : p.T;
    return std::min<int64_t>({tr, (int64_t) p.T, (int64_t) 32768});
}

// passes (1) and (2) of fix_select, also the fused focal layer's: logits of rows [t0, t0 + trc)
// for every cell (K read once), then each (row, head)'s logsumexp
static void fix_logits_lse(const fix_params & p, const ggml_tensor * q, const ggml_tensor * k, const int t0,
                           const int trc, float * logits, float * lse, cudaStream_t stream) {
    const int dmax = fix_dmax(p.D);
    const size_t eb = fix_elems_per_lane(dmax);
    const bool vec = fix_vec_ok(q, eb*sizeof(float)) && fix_vec_ok(k, eb*ggml_type_size(k->type));
    if (p.N > 0 && p.H > 0) {
        if (dmax == 64) {
            if (vec) fix_select_logits_launch< 64, true >(p, t0, trc, logits, stream);
            else     fix_select_logits_launch< 64, false>(p, t0, trc, logits, stream);
        } else if (dmax == 128) {
            if (vec) fix_select_logits_launch<128, true >(p, t0, trc, logits, stream);
            else     fix_select_logits_launch<128, false>(p, t0, trc, logits, stream);
        } else {
            if (vec) fix_select_logits_launch<256, true >(p, t0, trc, logits, stream);
            else     fix_select_logits_launch<256, false>(p, t0, trc, logits, stream);
        }
        CUDA_CHECK(cudaGetLastError());
    }
    if (p.H > 0) {
        fix_select_lse<<<(unsigned) ((int64_t) trc*p.S*p.H), FIX_RED_NT, 0, stream>>>(logits, p.N, lse);
        CUDA_CHECK(cudaGetLastError());
    }
}

// pass (4), fix_select's and fix_topk's: per row of rows [t0, t0 + trc), the top-k cells by
// its keys (laid out [S, trc, n_img]); a not-refreshed row keeps its entries with an id below
// N, and with need_key also only those with a key (fix_topk: a finite score)
static void fix_topk_rows(ggml_backend_cuda_context & ctx, const uint32_t * keys, const ggml_tensor * img,
                          const ggml_tensor * bud, ggml_tensor * dst, const int t0, const int trc, const int S,
                          const int N, const int need_key) {
    const int K = (int) dst->ne[0];
    int P_cap = 1;
    while (P_cap < K) {
        P_cap <<= 1;
    }
    const bool sort_in_smem = P_cap <= FIX_SEL_SMEM_INTS;
    ggml_cuda_pool_alloc<int> gbuf(ctx.pool());
    if (!sort_in_smem) {
        gbuf.alloc((int64_t) trc*S*P_cap);
    }
    const dim3   grid((unsigned) trc, (unsigned) S, 1);
    const size_t smem = sort_in_smem ? (size_t) P_cap*sizeof(int) : 0;
    // a mass budget: each row's budget from its keys first, then the top-k of that many
    const float mass  = ggml_get_op_params_f32(dst, 2);
    const int   k_min = ggml_get_op_params_i32(dst, 3);
    const int   T     = (int) dst->ne[1];
    ggml_cuda_pool_alloc<int32_t> mbud(ctx.pool());
    const char * bud_p = (const char *) bud->data;
    int64_t nbb0 = bud->nb[0], nbb1 = bud->nb[1];
    if (mass > 0.0f) {
        mbud.alloc(std::max<int64_t>(1, (int64_t) T*S));
        fix_mass_budget<<<grid, FIX_RED_NT, 0, ctx.stream()>>>(
            keys, (int) img->ne[0], bud_p, nbb0, nbb1, mbud.ptr, T, t0, trc, mass, k_min);
        CUDA_CHECK(cudaGetLastError());
        bud_p = (const char *) mbud.ptr;
        nbb0 = sizeof(int32_t);
        nbb1 = (int64_t) T*sizeof(int32_t);
    }
    fix_select_topk<<<grid, FIX_SEL_NT, smem, ctx.stream()>>>(
        keys, (const char *) img->data, img->nb[0], img->nb[1], img->nb[2], (int) img->ne[0],
        bud_p, nbb0, nbb1,
        (char *) dst->data, dst->nb[1], dst->nb[2], K,
        t0, trc, sort_in_smem ? nullptr : gbuf.ptr, P_cap, N, need_key);
    CUDA_CHECK(cudaGetLastError());
}

void ggml_cuda_fix_select(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    if (ggml_get_op_params_i32(dst, 1) == GGML_FIX_MODE_SCORED) {
        fix_topk(ctx, dst);
        return;
    }
    const ggml_tensor * q    = dst->src[0];
    const ggml_tensor * k    = dst->src[1];
    const ggml_tensor * mask = dst->src[2];
    const ggml_tensor * img  = dst->src[3];
    const ggml_tensor * bud  = dst->src[4];

    GGML_ASSERT(q->type == GGML_TYPE_F32 && fix_type_ok(k->type));
    GGML_ASSERT(!mask || fix_type_ok(mask->type));
    GGML_ASSERT(img->type == GGML_TYPE_I32 && bud->type == GGML_TYPE_I32 && dst->type == GGML_TYPE_I32);
    GGML_ASSERT(dst->nb[0] == sizeof(int32_t));
    GGML_ASSERT(fix_head_ok(q->ne[0], q->ne[0]));
    GGML_ASSERT(q->ne[2] % k->ne[2] == 0);
    GGML_ASSERT(dst->ne[0] < INT_MAX/2 && img->ne[0] < INT_MAX);

    float scale;
    memcpy(&scale, (const float *) dst->op_params + 0, sizeof(float));

    const fix_params p = fix_make_params(q, k, nullptr, mask, scale);
    const int K     = (int) dst->ne[0];
    const int n_img = (int) img->ne[0];
    if (p.T == 0 || p.S == 0 || K == 0) {
        return;
    }
    cudaStream_t stream = ctx.stream();

    const int64_t tr = fix_rows_per_pass(p);
    ggml_cuda_pool_alloc<float>    logits(ctx.pool(), std::max<int64_t>(1, tr*p.S*p.H*p.N));
    ggml_cuda_pool_alloc<float>    lse(ctx.pool(), std::max<int64_t>(1, tr*p.S*p.H));
    ggml_cuda_pool_alloc<float>    scores(ctx.pool(), std::max<int64_t>(1, tr*p.S*n_img));
    ggml_cuda_pool_alloc<uint32_t> keys(ctx.pool(), std::max<int64_t>(1, tr*p.S*n_img));

    for (int t0 = 0; t0 < p.T; t0 += (int) tr) {
        const int trc = (int) std::min<int64_t>(tr, p.T - t0);
        fix_logits_lse(p, q, k, t0, trc, logits.ptr, lse.ptr, stream);
        if (n_img > 0) {
            const dim3 grid((unsigned) ((n_img + FIX_RED_NT - 1) / FIX_RED_NT), (unsigned) trc, (unsigned) p.S);
            fix_scored_scores<<<grid, FIX_RED_NT, 0, stream>>>(
                p, logits.ptr, lse.ptr, (const char *) img->data, img->nb[0], img->nb[1], img->nb[2],
                n_img, t0, trc, 0, trc, scores.ptr);
            CUDA_CHECK(cudaGetLastError());
            const int64_t n = (int64_t) trc*p.S*n_img;
            fix_topk_keys<<<(unsigned) ((n + FIX_RED_NT - 1) / FIX_RED_NT), FIX_RED_NT, 0, stream>>>(scores.ptr, n, keys.ptr);
            CUDA_CHECK(cudaGetLastError());
        }
        fix_topk_rows(ctx, keys.ptr, img, bud, dst, t0, trc, p.S, p.N, 0);
    }
}

// the fused focal layer (GGML_FIX_MODE_SCORED): fix_select's logits and logsumexp passes (K read
// once), then V read once with those weights (splits + a fixed-order combine), and the image
// entries' scores; the result holds the attention [Dv, H, T, S] then the scores [n_img, T, S]
static void fix_attn_scored(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    const ggml_tensor * q    = dst->src[0];
    const ggml_tensor * k    = dst->src[1];
    const ggml_tensor * v    = dst->src[2];
    const ggml_tensor * mask = dst->src[3];
    const ggml_tensor * img  = dst->src[4];

    float scale;
    memcpy(&scale, (const float *) dst->op_params + 0, sizeof(float));
    const fix_params p = fix_make_params(q, k, v, mask, scale);
    const int n_img = (int) img->ne[0];
    if (p.T == 0 || p.S == 0 || p.H == 0) {
        return;
    }
    cudaStream_t stream = ctx.stream();
    float * out_attn  = (float *) dst->data;
    float * out_score = out_attn + (int64_t) p.Dv*p.H*p.T*p.S;

    const int64_t tr = fix_rows_per_pass(p);
    const int n_hsub    = (p.G + 7) / 8;
    const int split_len = std::max(64, (p.N + 127) / 128);
    const int n_split   = std::max(1, (p.N + split_len - 1) / split_len);

    ggml_cuda_pool_alloc<float> logits(ctx.pool(), std::max<int64_t>(1, tr*p.S*p.H*p.N));
    ggml_cuda_pool_alloc<float> lse(ctx.pool(), std::max<int64_t>(1, tr*p.S*p.H));
    ggml_cuda_pool_alloc<float> part(ctx.pool(), std::max<int64_t>(1, tr*p.S*p.H*n_split*p.Dv));

    const int dmax_v = fix_dmax(p.Dv);
    const bool vec_v = fix_vec_ok(v, fix_elems_per_lane(dmax_v)*ggml_type_size(v->type));

    for (int t0 = 0; t0 < p.T; t0 += (int) tr) {
        const int trc = (int) std::min<int64_t>(tr, p.T - t0);
        fix_logits_lse(p, q, k, t0, trc, logits.ptr, lse.ptr, stream);
        {
            const dim3 grid((unsigned) ((int64_t) trc*p.Hkv*n_hsub), (unsigned) n_split, (unsigned) p.S);
            if (dmax_v == 64) {
                if (vec_v) fix_scored_v< 64, true ><<<grid, FIX_NT, 0, stream>>>(p, logits.ptr, lse.ptr, t0, trc, n_hsub, split_len, part.ptr);
                else       fix_scored_v< 64, false><<<grid, FIX_NT, 0, stream>>>(p, logits.ptr, lse.ptr, t0, trc, n_hsub, split_len, part.ptr);
            } else if (dmax_v == 128) {
                if (vec_v) fix_scored_v<128, true ><<<grid, FIX_NT, 0, stream>>>(p, logits.ptr, lse.ptr, t0, trc, n_hsub, split_len, part.ptr);
                else       fix_scored_v<128, false><<<grid, FIX_NT, 0, stream>>>(p, logits.ptr, lse.ptr, t0, trc, n_hsub, split_len, part.ptr);
            } else {
                if (vec_v) fix_scored_v<256, true ><<<grid, FIX_NT, 0, stream>>>(p, logits.ptr, lse.ptr, t0, trc, n_hsub, split_len, part.ptr);
                else       fix_scored_v<256, false><<<grid, FIX_NT, 0, stream>>>(p, logits.ptr, lse.ptr, t0, trc, n_hsub, split_len, part.ptr);
            }
            CUDA_CHECK(cudaGetLastError());
        }
        {
            const int64_t n = (int64_t) trc*p.H*p.Dv;
            const dim3 grid((unsigned) ((n + FIX_RED_NT - 1) / FIX_RED_NT), (unsigned) p.S, 1);
            fix_scored_combine<<<grid, FIX_RED_NT, 0, stream>>>(part.ptr, n_split, p.Dv, p.H, p.T, t0, trc, out_attn);
            CUDA_CHECK(cudaGetLastError());
        }
        if (n_img > 0) {
            const dim3 grid((unsigned) ((n_img + FIX_RED_NT - 1) / FIX_RED_NT), (unsigned) trc, (unsigned) p.S);
            fix_scored_scores<<<grid, FIX_RED_NT, 0, stream>>>(
                p, logits.ptr, lse.ptr, (const char *) img->data, img->nb[0], img->nb[1], img->nb[2],
                n_img, t0, trc, t0, p.T, out_score);
            CUDA_CHECK(cudaGetLastError());
        }
    }
}

// fix_topk (GGML_FIX_MODE_SCORED): fix_select's top-k kernel on keys made from the scores
static void fix_topk(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    const ggml_tensor * scores = dst->src[0];
    const ggml_tensor * img    = dst->src[3];
    const ggml_tensor * bud    = dst->src[4];
    const int K = (int) dst->ne[0], n_img = (int) img->ne[0], T = (int) img->ne[1], S = (int) img->ne[2];
    if (T == 0 || S == 0 || K == 0) {
        return;
    }
    cudaStream_t stream = ctx.stream();
    const int64_t n = (int64_t) n_img*T*S;
    ggml_cuda_pool_alloc<uint32_t> keys(ctx.pool(), std::max<int64_t>(1, n));
    if (n > 0) {
        fix_topk_keys<<<(unsigned) ((n + FIX_RED_NT - 1) / FIX_RED_NT), FIX_RED_NT, 0, stream>>>(
            (const float *) scores->data, n, keys.ptr);
        CUDA_CHECK(cudaGetLastError());
    }
    fix_topk_rows(ctx, keys.ptr, img, bud, dst, 0, T, S, INT_MAX, 1);
}

bool ggml_cuda_fix_supported(int device, const ggml_tensor * op) {
    GGML_UNUSED(device);

    const bool select = op->op == GGML_OP_FIX_SELECT;
    if (!select && op->op != GGML_OP_FIX_ATTN) {
        return false;
    }
    if (ggml_get_op_params_i32(op, 1) == GGML_FIX_MODE_SCORED) {
        return fix_scored_supported(op);
    }
    const ggml_tensor * q    = op->src[0];
    const ggml_tensor * k    = op->src[1];
    const ggml_tensor * v    = select ? nullptr : op->src[2];
    const ggml_tensor * mask = select ? op->src[2] : op->src[3];
    if (!q || !k || (!select && !v)) {
        return false;
    }

    if (q->type != GGML_TYPE_F32 || !fix_type_ok(k->type)) {
        return false;
    }
    const int64_t D = q->ne[0], T = q->ne[1], H = q->ne[2], S = q->ne[3];
    const int64_t N = k->ne[1], Hkv = k->ne[2];
    if (!fix_head_ok(D, D) || k->ne[0] != D) {
        return false;
    }
    if (Hkv <= 0 || H % Hkv != 0 || k->ne[3] != S) {
        return false;
    }
    if (T*H*S >= INT_MAX || Hkv >= 65536 || S >= 65536 || N >= INT_MAX) {
        return false;
    }
    if (mask) {
        if (!fix_type_ok(mask->type) || mask->ne[0] < N || mask->ne[1] < T || mask->ne[2] != 1 ||
            mask->ne[3] <= 0 || S % mask->ne[3] != 0) {
            return false;
        }
    }

    auto list_ok = [&](const ggml_tensor * l) {
        return l->type == GGML_TYPE_I32 && l->ne[1] == T && l->ne[2] == S && l->ne[3] == 1 && l->ne[0] < INT_MAX/2;
    };

    if (select) {
        const ggml_tensor * img = op->src[3];
        const ggml_tensor * bud = op->src[4];
        if (!img || !bud || !list_ok(img)) {
            return false;
        }
        if (bud->type != GGML_TYPE_I32 || bud->ne[0] != T || bud->ne[1] != S || bud->ne[2] != 1 || bud->ne[3] != 1) {
            return false;
        }
        if (op->type != GGML_TYPE_I32 || op->nb[0] != sizeof(int32_t) || op->ne[0] >= (1 << 24) ||
            op->ne[1] != T || op->ne[2] != S || op->ne[3] != 1) {
            return false;
        }
        return true;
    }

    const int64_t Dv = v->ne[0];
    if (!fix_type_ok(v->type) || !fix_head_ok(D, std::max(D, Dv)) || !fix_head_ok(Dv, std::max(D, Dv))) {
        return false;
    }
    if (v->ne[1] != N || v->ne[2] != Hkv || v->ne[3] != S) {
        return false;
    }
    const ggml_tensor * ia = op->src[4];
    const ggml_tensor * ib = op->src[5];
    if (!ia || !list_ok(ia) || (ib && !list_ok(ib))) {
        return false;
    }
    const ggml_tensor * ic   = op->src[6];
    const ggml_tensor * pool = op->src[7];
    if (ic && (!ib || !list_ok(ic) || !pool || pool->type != GGML_TYPE_I32 || !ggml_is_contiguous(pool) ||
               pool->ne[0] != T || pool->ne[1] != S)) {
        return false;
    }
    // the kernel indexes the concatenated lists with int (plus a tile of threads)
    if (ia->ne[0] + (ib ? ib->ne[0] : 0) + (ic ? ic->ne[0] : 0) >= INT_MAX - FIX_NT) {
        return false;
    }
    if (op->type != GGML_TYPE_F32 || op->nb[0] != sizeof(float) ||
        op->ne[0] != Dv || op->ne[1] != H || op->ne[2] != T || op->ne[3] != S) {
        return false;
    }
    return true;
}

// fix_attn_scored / fix_topk: the shapes their constructors make, the types the kernels read
static bool fix_scored_supported(const ggml_tensor * op) {
    auto list_ok = [](const ggml_tensor * l, int64_t T, int64_t S) {
        return l && l->type == GGML_TYPE_I32 && ggml_is_contiguous(l) && l->ne[1] == T && l->ne[2] == S &&
               l->ne[3] == 1 && l->ne[0] < INT_MAX/2;
    };
    if (op->op == GGML_OP_FIX_SELECT) {  // fix_topk
        const ggml_tensor * sc = op->src[0], * img = op->src[3], * bud = op->src[4];
        if (!sc || sc->type != GGML_TYPE_F32 || !ggml_is_contiguous(sc) || !list_ok(img, sc->ne[1], sc->ne[2]) ||
            img->ne[0] != sc->ne[0] || (int64_t) img->ne[0]*img->ne[1]*img->ne[2] >= INT_MAX) {
            return false;
        }
        return bud && bud->type == GGML_TYPE_I32 && ggml_is_contiguous(bud) && bud->ne[0] == sc->ne[1] &&
               bud->ne[1] == sc->ne[2] && op->type == GGML_TYPE_I32 && op->ne[0] < (1 << 24);
    }
    const ggml_tensor * q = op->src[0], * k = op->src[1], * v = op->src[2], * mask = op->src[3], * img = op->src[4];
    if (!q || !k || !v || !mask || q->type != GGML_TYPE_F32 || !fix_type_ok(k->type) || !fix_type_ok(v->type) ||
        !fix_type_ok(mask->type)) {
        return false;
    }
    const int64_t D = q->ne[0], T = q->ne[1], H = q->ne[2], S = q->ne[3], N = k->ne[1], Hkv = k->ne[2], Dv = v->ne[0];
    // the select passes pick their DMAX from D, the V pass from Dv
    if (!fix_head_ok(D, D) || k->ne[0] != D || !fix_head_ok(Dv, Dv)) {
        return false;
    }
    if (Hkv <= 0 || H % Hkv != 0 || k->ne[3] != S || v->ne[1] != N || v->ne[2] != Hkv || v->ne[3] != S) {
        return false;
    }
    if (T*H*S >= INT_MAX || Hkv >= 65536 || S >= 65536 || N >= INT_MAX/2) {
        return false;
    }
    if (mask->ne[0] < N || mask->ne[1] < T || mask->ne[2] != 1 || mask->ne[3] <= 0 || S % mask->ne[3] != 0) {
        return false;
    }
    return list_ok(img, T, S) && op->type == GGML_TYPE_F32 && ggml_is_contiguous(op);
}
