// CPU kernels of foveate's fixation ops (spec: ggml-fixation.c). Compiled into ggml-cpu.
//
// fix_attn reads only the K/V rows of the listed cells, so at a 5% image budget a decode
// step touches ~5% of the image K/V bytes instead of all of them (stock FA walks every
// cell, and the non-FA path multiplies full matrices). Work unit = (stream, row, kv head):
// each K/V row is loaded once for all query heads sharing it (GQA). A compensation sample
// (idx_c) is one more list, its entries weighted by a logit offset computed per unit.
// fix_select needs every cell's logit for the softmax denominator: cells are split over
// threads (phase 1 logits, phase 2 partial sums, phase 3 candidate scores), one thread
// then picks the top-b with nth_element.
// fix_attn_scored (the fused focal layer) is one pass over K and one over V: its logits are
// kept as exp(l - chunk max), so the attention output and every image cell's score follow
// from per-(chunk, head) factors without a second q.K pass or a second exp; fix_topk then
// only ranks the scores.
#include "ggml-cpu-fixation.h"
#include "ggml-fixation.h"

#include "ggml-cpu-impl.h"
#include "ggml-cpu.h"
#include "ggml-impl.h"
#include "ggml.h"
#include "simd-mappings.h"
#include "vec.h"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <vector>

namespace {

constexpr size_t PAD = 64;

size_t q_row_bytes(const ggml_tensor * k) {
    const ggml_type vdt = ggml_get_type_traits_cpu(k->type)->vec_dot_type;
    return GGML_PAD(ggml_row_size(vdt, k->ne[0]), PAD);
}

inline float mask_at(const ggml_tensor * mask, int64_t c, int64_t t, int64_t s) {
    const char * p = (const char *) mask->data + c*mask->nb[0] + t*mask->nb[1] + (s % mask->ne[3])*mask->nb[3];
    return mask->type == GGML_TYPE_F16 ? GGML_CPU_FP16_TO_FP32(*(const ggml_fp16_t *) p) : *(const float *) p;
}

inline const char * row_ptr(const ggml_tensor * x, int64_t i1, int64_t i2, int64_t i3) {
    return (const char *) x->data + i1*x->nb[1] + i2*x->nb[2] + i3*x->nb[3];
}

// convert the query heads of row (t, s) to K's vec_dot type: out[h] at h*qrow bytes
void convert_q(const ggml_tensor * q, const ggml_tensor * k, int64_t t, int64_t s, int64_t h0, int64_t nh, char * out) {
    const ggml_type vdt = ggml_get_type_traits_cpu(k->type)->vec_dot_type;
    ggml_from_float_t from_float = ggml_get_type_traits_cpu(vdt)->from_float;
    const size_t qrow = q_row_bytes(k);
    for (int64_t h = 0; h < nh; ++h) {
        const float * src = (const float *) row_ptr(q, t, h0 + h, s);
        if (vdt == GGML_TYPE_F32) {
            memcpy(out + h*qrow, src, k->ne[0]*sizeof(float));
        } else {
            from_float(src, out + h*qrow, k->ne[0]);
        }
    }
}

// V row of cell c as floats (v may be a transposed view: nb[0] != type size)
void load_v(const ggml_tensor * v, int64_t c, int64_t g, int64_t s, float * out) {
    const int64_t Dv = v->ne[0];
    const char * base = row_ptr(v, c, g, s);
    if (v->nb[0] == ggml_type_size(v->type)) {
        // the CPU backend's conversions (F16C / AVX-512 where built for): ggml-base's
        // to_float is the portable scalar one, several times slower per row
        if (v->type == GGML_TYPE_F32) {
            memcpy(out, base, Dv*sizeof(float));
        } else if (v->type == GGML_TYPE_F16) {
            ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) base, out, Dv);
        } else if (v->type == GGML_TYPE_BF16) {
            ggml_cpu_bf16_to_fp32((const ggml_bf16_t *) base, out, Dv);
        } else {
            ggml_get_type_traits(v->type)->to_float(base, out, Dv);
        }
        return;
    }
    // a transposed V (flash attention off): one element per stride; llama.cpp stores V this
    // way only for the types it can (F32, F16, BF16; a quantized V needs flash attention),
    // and the constructor refuses the others
    for (int64_t j = 0; j < Dv; ++j) {
        const char * p = base + j*v->nb[0];
        switch (v->type) {
            case GGML_TYPE_F16:  out[j] = GGML_CPU_FP16_TO_FP32(*(const ggml_fp16_t *) p); break;
            case GGML_TYPE_BF16: out[j] = GGML_BF16_TO_FP32(*(const ggml_bf16_t *) p);    break;
            default:             out[j] = *(const float *) p;                             break;
        }
    }
}

struct select_work {
    float * logits;   // [H, N]
    float * tmax;     // [nth, H]
    float * tsum;     // [nth, H]
    float * score;    // [n_img]
    int32_t * order;  // [n_img]
    char * qbuf;      // [nth, H, qrow]
};

select_work select_layout(const ggml_tensor * dst, int nth, void * wdata) {
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * img = dst->src[3];
    const int64_t H = q->ne[2], N = k->ne[1], n_img = img->ne[0];
    char * p = (char *) wdata;
    select_work w;
    auto take = [&](size_t bytes) { char * r = p; p += GGML_PAD(bytes, PAD); return r; };
    w.logits = (float *) take(H*N*sizeof(float));
    w.tmax   = (float *) take(nth*H*sizeof(float));
    w.tsum   = (float *) take(nth*H*sizeof(float));
    w.score  = (float *) take(n_img*sizeof(float));
    w.order  = (int32_t *) take(n_img*sizeof(int32_t));
    w.qbuf   = take(nth*H*q_row_bytes(k));
    return w;
}

size_t select_work_size(const ggml_tensor * dst, int nth) {
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * img = dst->src[3];
    const int64_t H = q->ne[2], N = k->ne[1], n_img = img->ne[0];
    return GGML_PAD(H*N*4, PAD) + 2*GGML_PAD(nth*H*4, PAD) + 2*GGML_PAD(n_img*4, PAD) +
           GGML_PAD(nth*H*q_row_bytes(k), PAD) + PAD;
}

size_t attn_work_size(const ggml_tensor * dst, int nth) {
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * v = dst->src[2];
    const int64_t rep = q->ne[2]/k->ne[2], Dv = v->ne[0];
    const size_t per = rep*q_row_bytes(k) + GGML_PAD((rep*Dv + Dv + 2*rep)*sizeof(float), PAD);
    return nth*per + PAD;
}

// fix_attn_scored: cells of a row are split into n_chunk spans per KV head, so that there are
// at least as many work units as threads (Hkv is often 2); a span is at least 256 cells
int64_t scored_chunks(const ggml_tensor * dst, int nth) {
    const int64_t Hkv = dst->src[1]->ne[2], N = dst->src[1]->ne[1];
    return std::max<int64_t>(1, std::min<int64_t>((nth + Hkv - 1)/Hkv, N/256));
}

struct scored_work {
    float * w;        // [H, N]: exp(l - m) of the cell's chunk (visible cells only)
    float * part_m;   // [n_chunk, H]: chunk max logit
    float * part_s;   // [n_chunk, H]: chunk sum of exp
    float * factor;   // [n_chunk, H]: exp(m_chunk - M) / sum, turns w into a probability
    float * part_acc; // [n_chunk, H, Dv]: chunk sum of exp * v
    char * thread;    // [nth, per-thread bytes]: q rows, a V row
};

size_t scored_thread_bytes(const ggml_tensor * dst) {
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * v = dst->src[2];
    const int64_t rep = q->ne[2]/k->ne[2];
    return rep*q_row_bytes(k) + GGML_PAD((v->ne[0] + 2*rep + k->ne[0])*sizeof(float), PAD);
}

scored_work scored_layout(const ggml_tensor * dst, int nth, void * wdata) {
    const int64_t H = dst->src[0]->ne[2], N = dst->src[1]->ne[1], Dv = dst->src[2]->ne[0];
    const int64_t nc = scored_chunks(dst, nth);
    char * p = (char *) wdata;
    auto take = [&](size_t bytes) { char * r = p; p += GGML_PAD(bytes, PAD); return r; };
    scored_work w;
    w.w        = (float *) take(H*N*sizeof(float));
    w.part_m   = (float *) take(nc*H*sizeof(float));
    w.part_s   = (float *) take(nc*H*sizeof(float));
    w.factor   = (float *) take(nc*H*sizeof(float));
    w.part_acc = (float *) take(nc*H*Dv*sizeof(float));
    w.thread   = take(nth*scored_thread_bytes(dst));
    return w;
}

size_t scored_work_size(const ggml_tensor * dst, int nth) {
    const int64_t H = dst->src[0]->ne[2], N = dst->src[1]->ne[1], Dv = dst->src[2]->ne[0];
    const int64_t nc = scored_chunks(dst, nth);
    return GGML_PAD(H*N*4, PAD) + 3*GGML_PAD(nc*H*4, PAD) + GGML_PAD(nc*H*Dv*4, PAD) +
           GGML_PAD(nth*scored_thread_bytes(dst), PAD) + PAD;
}

// fix_topk: one candidate order per thread
size_t topk_work_size(const ggml_tensor * dst, int nth) {
    return nth*GGML_PAD(dst->src[3]->ne[0]*sizeof(int32_t), PAD) + PAD;
}

bool scored_mode(const ggml_tensor * node) {
    return ggml_get_op_params_i32(node, 1) == GGML_FIX_MODE_SCORED;
}

// the mass budget of a fix_select / fix_topk node (spec: ggml-fixation.c); mass 0 = unset
struct mass_rule {
    float   mass  = 0.0f;
    int32_t k_min = 0;
};

mass_rule mass_of(const ggml_tensor * node) {
    return { ggml_get_op_params_f32(node, 2), ggml_get_op_params_i32(node, 3) };
}

// top-b of n candidates (positions into img_row, scores sc) -> out[0, K): ascending cell ids,
// -1 padded; ties go to the earlier position, as fix_select's. With a mass rule b is a ceiling:
// the fewest of the best b whose scores reach mass x the n candidates' total (at least k_min)
void write_top(const float * sc, const int32_t * img_row, int32_t * order, int64_t n, int64_t b_req,
               int64_t K, int32_t * out, mass_rule mr) {
    int64_t b = std::max<int64_t>(0, std::min<int64_t>({b_req, n, K}));
    auto better = [sc](int32_t a, int32_t b2) { return sc[a] > sc[b2] || (sc[a] == sc[b2] && a < b2); };
    if (b < n) {
        std::nth_element(order, order + b, order + n, better);
    }
    if (mr.mass > 0.0f && b > 0) {
        double total = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            total += sc[order[i]];
        }
        std::sort(order, order + b, better);
        const double want = (double) mr.mass * total;
        double acc = 0.0;
        int64_t j = 0;
        while (j < b && acc < want) {
            acc += sc[order[j++]];
        }
        b = std::max<int64_t>(j, std::min<int64_t>(b, mr.k_min));
    }
    for (int64_t j = 0; j < b; ++j) {
        out[j] = img_row[order[j]];
    }
    std::sort(out, out + b);
    std::fill(out + b, out + K, -1);
}

} // namespace

extern "C" size_t ggml_fix_work_size(const struct ggml_tensor * node, int n_tasks) {
    if (node->op == GGML_OP_FIX_SELECT) {
        return scored_mode(node) ? topk_work_size(node, n_tasks) : select_work_size(node, n_tasks);
    }
    return scored_mode(node) ? scored_work_size(node, n_tasks) : attn_work_size(node, n_tasks);
}

namespace {

void compute_topk(const ggml_compute_params * params, ggml_tensor * dst) {
    const ggml_tensor * scores = dst->src[0], * img = dst->src[3], * budget = dst->src[4];
    const int64_t n_img = img->ne[0], T = img->ne[1], S = img->ne[2], K = dst->ne[0];
    int32_t * order = (int32_t *) ((char *) params->wdata + params->ith*GGML_PAD(n_img*sizeof(int32_t), PAD));
    for (int64_t r = params->ith; r < T*S; r += params->nth) {
        const int32_t * img_row = (const int32_t *) img->data + r*n_img;
        const float * sc = (const float *) scores->data + r*n_img;
        int32_t * out = (int32_t *) dst->data + r*K;
        const int32_t b_req = ((const int32_t *) budget->data)[r];
        if (b_req < 0) {  // not refreshed: the entries with a score (valid, visible), first K
            int64_t n = 0;
            for (int64_t i = 0; i < n_img && n < K; ++i) {
                if (sc[i] != -INFINITY && img_row[i] >= 0) {
                    out[n++] = img_row[i];
                }
            }
            std::fill(out + n, out + K, -1);
            continue;
        }
        int64_t n = 0;
        for (int64_t i = 0; i < n_img; ++i) {
            if (sc[i] != -INFINITY && img_row[i] >= 0) {
                order[n++] = (int32_t) i;
            }
        }
        write_top(sc, img_row, order, n, b_req, K, out, mass_of(dst));
    }
}

void compute_scored(const ggml_compute_params * params, ggml_tensor * dst) {
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * v = dst->src[2], * mask = dst->src[3];
    const ggml_tensor * img = dst->src[4];
    const int ith = params->ith, nth = params->nth;
    const int64_t D = q->ne[0], T = q->ne[1], H = q->ne[2], S = q->ne[3];
    const int64_t N = k->ne[1], Hkv = k->ne[2], rep = H/Hkv, Dv = v->ne[0], n_img = img->ne[0];
    float scale;
    memcpy(&scale, dst->op_params, sizeof(float));
    ggml_vec_dot_t const vec_dot = ggml_get_type_traits_cpu(k->type)->vec_dot;
    const size_t qrow = q_row_bytes(k);
    const int64_t nc = scored_chunks(dst, nth);
    scored_work w = scored_layout(dst, nth, params->wdata);
    char * qb = w.thread + ith*scored_thread_bytes(dst);
    float * vrow = (float *) (qb + rep*qrow);   // [Dv]
    float * m = vrow + Dv;                      // [rep]: chunk max per head
    float * sum = m + rep;                      // [rep]
    float * krow_f32 = sum + rep;               // [D]: an F16 K row, converted once for its heads
    // F16 / F32 K: dots in F32 against the F32 query (one conversion per K row instead of one
    // per query head); quantized K: its vec_dot against the query in K's dot type
    const bool k_float = k->type == GGML_TYPE_F16 || k->type == GGML_TYPE_F32;
    float * out_attn = (float *) dst->data;
    float * out_score = out_attn + Dv*H*T*S;
    auto chunk_begin = [&](int64_t j) { return N*j/nc; };

    for (int64_t s = 0; s < S; ++s) {
        for (int64_t t = 0; t < T; ++t) {
            // phase 1: per (KV head, chunk): logits -> chunk max, then exp, sums and exp * v
            for (int64_t u = ith; u < Hkv*nc; u += nth) {
                const int64_t g = u % Hkv, j = u / Hkv, c0 = chunk_begin(j), c1 = chunk_begin(j + 1);
                if (!k_float) {
                    convert_q(q, k, t, s, g*rep, rep, qb);
                }
                std::fill(m, m + rep, -INFINITY);
                for (int64_t c = c0; c < c1; ++c) {
                    const float mv = mask_at(mask, c, t, s);
                    if (mv == -INFINITY) {
                        for (int64_t r = 0; r < rep; ++r) {
                            w.w[(g*rep + r)*N + c] = -INFINITY;  // exp gives 0
                        }
                        continue;
                    }
                    const char * krow = row_ptr(k, c, g, s);
                    if (k->type == GGML_TYPE_F16) {
                        ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) krow, krow_f32, D);
                    }
                    const float * kf = k->type == GGML_TYPE_F16 ? krow_f32 : (const float *) krow;
                    for (int64_t r = 0; r < rep; ++r) {
                        float l;
                        if (k_float) {
                            ggml_vec_dot_f32((int) D, &l, 0, kf, 0, (const float *) row_ptr(q, t, g*rep + r, s), 0, 1);
                        } else {
                            vec_dot(D, &l, 0, krow, 0, qb + r*qrow, 0, 1);
                        }
                        l = l*scale + mv;
                        w.w[(g*rep + r)*N + c] = l;
                        m[r] = std::max(m[r], l);
                    }
                }
                // exp(l - m) in place, vectorised (ggml's soft_max kernel, as its tiled FA uses)
                for (int64_t r = 0; r < rep; ++r) {
                    float * row = w.w + (g*rep + r)*N + c0;
                    sum[r] = m[r] == -INFINITY ? 0.0f
                           : (float) ggml_vec_soft_max_f32((int) (c1 - c0), row, row, m[r]);
                }
                float * acc = w.part_acc + (j*H + g*rep)*Dv;
                std::fill(acc, acc + rep*Dv, 0.0f);
                for (int64_t c = c0; c < c1; ++c) {
                    if (mask_at(mask, c, t, s) == -INFINITY) {
                        continue;
                    }
                    load_v(v, c, g, s, vrow);
                    for (int64_t r = 0; r < rep; ++r) {
                        ggml_vec_mad_f32(Dv, acc + r*Dv, vrow, w.w[(g*rep + r)*N + c]);
                    }
                }
                for (int64_t r = 0; r < rep; ++r) {
                    w.part_m[j*H + g*rep + r] = m[r];
                    w.part_s[j*H + g*rep + r] = sum[r];
                }
            }
            ggml_barrier(params->threadpool);
            // phase 2: per head: combine the chunks (output), and each chunk's factor
            for (int64_t h = ith; h < H; h += nth) {
                float M = -INFINITY;
                for (int64_t j = 0; j < nc; ++j) {
                    M = std::max(M, w.part_m[j*H + h]);
                }
                float * out = out_attn + ((s*T + t)*H + h)*Dv;
                std::fill(out, out + Dv, 0.0f);
                if (M == -INFINITY) {
                    for (int64_t j = 0; j < nc; ++j) {
                        w.factor[j*H + h] = 0.0f;
                    }
                    continue;  // no visible cell: 0, as fix_attn
                }
                double total = 0.0;
                for (int64_t j = 0; j < nc; ++j) {
                    const float pm = w.part_m[j*H + h];
                    total += pm == -INFINITY ? 0.0 : (double) w.part_s[j*H + h] * exp((double) (pm - M));
                }
                for (int64_t j = 0; j < nc; ++j) {
                    const float pm = w.part_m[j*H + h];
                    const float f = pm == -INFINITY ? 0.0f : (float) (exp((double) (pm - M)) / total);
                    w.factor[j*H + h] = f;
                    if (f != 0.0f) {
                        ggml_vec_mad_f32(Dv, out, w.part_acc + (j*H + h)*Dv, f);
                    }
                }
            }
            ggml_barrier(params->threadpool);
            // phase 3: the image entries' scores, sum over heads of w * factor
            const int32_t * img_row = (const int32_t *) row_ptr(img, t, s, 0);
            float * sc = out_score + (s*T + t)*n_img;
            for (int64_t i = n_img*ith/nth; i < n_img*(ith + 1)/nth; ++i) {
                const int32_t c = img_row[i];
                if (c < 0 || c >= N || mask_at(mask, c, t, s) == -INFINITY) {
                    sc[i] = -INFINITY;
                    continue;
                }
                int64_t j = std::min<int64_t>(nc - 1, (int64_t) c*nc/N);
                while (j > 0 && c < chunk_begin(j)) j--;
                while (j + 1 < nc && c >= chunk_begin(j + 1)) j++;
                float x = 0.0f;
                for (int64_t h = 0; h < H; ++h) {
                    x += w.w[h*N + c]*w.factor[j*H + h];
                }
                sc[i] = x;
            }
            if (s*T + t + 1 < S*T) {
                ggml_barrier(params->threadpool);  // the next row reuses w
            }
        }
    }
}

} // namespace

extern "C" void ggml_compute_forward_fix_select(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    if (scored_mode(dst)) {
        compute_topk(params, dst);
        return;
    }
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * mask = dst->src[2];
    const ggml_tensor * img = dst->src[3], * budget = dst->src[4];
    const int ith = params->ith, nth = params->nth;
    const int64_t D = q->ne[0], T = q->ne[1], H = q->ne[2], S = q->ne[3];
    const int64_t N = k->ne[1], rep = H/k->ne[2], n_img = img->ne[0], K = dst->ne[0];
    float scale;
    memcpy(&scale, dst->op_params, sizeof(float));
    ggml_vec_dot_t const vec_dot = ggml_get_type_traits_cpu(k->type)->vec_dot;
    const size_t qrow = q_row_bytes(k);
    select_work w = select_layout(dst, nth, params->wdata);
    char * qb = w.qbuf + ith*H*qrow;

    const int64_t c0 = N*ith/nth, c1 = N*(ith + 1)/nth;
    const int64_t i0 = n_img*ith/nth, i1 = n_img*(ith + 1)/nth;

    for (int64_t s = 0; s < S; ++s) {
        for (int64_t t = 0; t < T; ++t) {
            const int32_t b_req = ((const int32_t *) budget->data)[s*T + t];
            const int32_t * img_row = (const int32_t *) row_ptr(img, t, s, 0);
            if (b_req < 0) {
                // not refreshed: the row's list is its selection (every thread skips alike)
                if (ith == 0) {
                    int32_t * out = (int32_t *) ((char *) dst->data + t*dst->nb[1] + s*dst->nb[2]);
                    int64_t n = 0;
                    for (int64_t i = 0; i < n_img && n < K; ++i) {
                        if (img_row[i] >= 0 && img_row[i] < N) {
                            out[n++] = img_row[i];
                        }
                    }
                    std::fill(out + n, out + K, -1);
                }
                continue;
            }
            // phase 1: logits of this thread's cells, all heads
            convert_q(q, k, t, s, 0, H, qb);
            float * tmax = w.tmax + ith*H;
            std::fill(tmax, tmax + H, -INFINITY);
            for (int64_t c = c0; c < c1; ++c) {
                const float mv = mask_at(mask, c, t, s);
                for (int64_t h = 0; h < H; ++h) {
                    float l = -INFINITY;
                    if (mv != -INFINITY) {
                        vec_dot(D, &l, 0, row_ptr(k, c, h/rep, s), 0, qb + h*qrow, 0, 1);
                        l = l*scale + mv;
                        tmax[h] = std::max(tmax[h], l);
                    }
                    w.logits[h*N + c] = l;
                }
            }
            ggml_barrier(params->threadpool);
            // phase 2: partial softmax denominators
            std::vector<float> M(H, -INFINITY);
            for (int j = 0; j < nth; ++j) {
                for (int64_t h = 0; h < H; ++h) {
                    M[h] = std::max(M[h], w.tmax[j*H + h]);
                }
            }
            float * tsum = w.tsum + ith*H;
            for (int64_t h = 0; h < H; ++h) {
                double sum = 0.0;
                if (M[h] != -INFINITY) {
                    for (int64_t c = c0; c < c1; ++c) {
                        const float l = w.logits[h*N + c];
                        if (l != -INFINITY) {
                            sum += expf(l - M[h]);
                        }
                    }
                }
                tsum[h] = (float) sum;
            }
            ggml_barrier(params->threadpool);
            // phase 3: candidate scores = sum over heads of the softmax probability
            std::vector<float> lse(H);
            for (int64_t h = 0; h < H; ++h) {
                double sum = 0.0;
                for (int j = 0; j < nth; ++j) {
                    sum += w.tsum[j*H + h];
                }
                lse[h] = M[h] == -INFINITY ? INFINITY : M[h] + (float) log(sum);
            }
            for (int64_t i = i0; i < i1; ++i) {
                const int32_t c = img_row[i];
                float sc = -INFINITY;
                if (c >= 0 && c < N && mask_at(mask, c, t, s) != -INFINITY) {
                    sc = 0.0f;
                    for (int64_t h = 0; h < H; ++h) {
                        sc += expf(w.logits[h*N + c] - lse[h]);
                    }
                }
                w.score[i] = sc;
            }
            ggml_barrier(params->threadpool);
            // phase 4: top-b, ascending cell order, -1 padded
            if (ith == 0) {
                int64_t n = 0;
                for (int64_t i = 0; i < n_img; ++i) {
                    if (w.score[i] != -INFINITY) {
                        w.order[n++] = (int32_t) i;
                    }
                }
                int32_t * out = (int32_t *) ((char *) dst->data + t*dst->nb[1] + s*dst->nb[2]);
                write_top(w.score, img_row, w.order, n, b_req, K, out, mass_of(dst));
            }
        }
    }
}

namespace {

// the sample list of row (t, s) (spec: ggml-fixation.c): the logit offset of its entries,
// or -inf when none of them enters; ib[0, nb_sorted) is idx_b's ascending prefix
float sample_log_weight(const ggml_tensor * dst, int64_t t, int64_t s, int64_t N,
                        const int32_t * ib, int64_t nb_sorted) {
    const ggml_tensor * mask = dst->src[3], * lc = dst->src[6], * pool = dst->src[7];
    int64_t n_sel = 0;
    for (int64_t i = 0; i < nb_sorted; ++i) {
        n_sel += ib[i] < N && mask_at(mask, ib[i], t, s) != -INFINITY;
    }
    const int32_t * ic = (const int32_t *) row_ptr(lc, t, s, 0);
    int64_t m = 0;
    for (int64_t i = 0; i < lc->ne[0]; ++i) {
        const int32_t c = ic[i];
        m += c >= 0 && c < N && mask_at(mask, c, t, s) != -INFINITY && !std::binary_search(ib, ib + nb_sorted, c);
    }
    const int64_t n_hid = (int64_t) ((const int32_t *) pool->data)[s*pool->ne[0] + t] - n_sel;
    return m > 0 && n_hid > 0 ? logf((float) n_hid / (float) m) : -INFINITY;
}

} // namespace

extern "C" void ggml_compute_forward_fix_attn(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    if (scored_mode(dst)) {
        compute_scored(params, dst);
        return;
    }
    const ggml_tensor * q = dst->src[0], * k = dst->src[1], * v = dst->src[2], * mask = dst->src[3];
    const ggml_tensor * lists[3] = { dst->src[4], dst->src[5], dst->src[6] };
    const int ith = params->ith, nth = params->nth;
    const int64_t D = q->ne[0], T = q->ne[1], H = q->ne[2], S = q->ne[3];
    const int64_t N = k->ne[1], Hkv = k->ne[2], rep = H/Hkv, Dv = v->ne[0];
    float scale;
    memcpy(&scale, dst->op_params, sizeof(float));
    ggml_vec_dot_t const vec_dot = ggml_get_type_traits_cpu(k->type)->vec_dot;
    const size_t qrow = q_row_bytes(k);

    char * wbase = (char *) params->wdata + ith*(attn_work_size(dst, 1) - PAD);
    char * qb = wbase;
    float * acc = (float *) (qb + rep*qrow);   // [rep, Dv]
    float * vrow = acc + rep*Dv;               // [Dv]
    float * Mx = vrow + Dv;                    // [rep]
    float * Sm = Mx + rep;                     // [rep]

    const int64_t n_units = S*T*Hkv;
    for (int64_t u = ith; u < n_units; u += nth) {
        const int64_t g = u % Hkv, t = (u / Hkv) % T, s = u / (Hkv*T);
        convert_q(q, k, t, s, g*rep, rep, qb);
        std::fill(acc, acc + rep*Dv, 0.0f);
        std::fill(Mx, Mx + rep, -INFINITY);
        std::fill(Sm, Sm + rep, 0.0f);
        // the selection list (idx_b): its ascending prefix, for the sample's membership test
        const int32_t * ib = lists[1] ? (const int32_t *) row_ptr(lists[1], t, s, 0) : nullptr;
        int64_t nb_sorted = 0;
        while (lists[2] && nb_sorted < lists[1]->ne[0] && ib[nb_sorted] >= 0) {
            nb_sorted++;
        }
        const float log_w = lists[2] ? sample_log_weight(dst, t, s, N, ib, nb_sorted) : -INFINITY;
        for (int li = 0; li < 3; ++li) {
            const ggml_tensor * list = lists[li];
            if (!list || (li == 2 && log_w == -INFINITY)) {
                continue;
            }
            const int32_t * idx = (const int32_t *) row_ptr(list, t, s, 0);
            for (int64_t i = 0; i < list->ne[0]; ++i) {
                const int32_t c = idx[i];
                if (c < 0 || c >= N) {
                    continue;
                }
                float mv = mask_at(mask, c, t, s);
                if (mv == -INFINITY) {
                    continue;
                }
                if (li == 2) {
                    if (std::binary_search(ib, ib + nb_sorted, c)) {
                        continue;  // selected: already attended exactly
                    }
                    mv += log_w;
                }
                load_v(v, c, g, s, vrow);
                const char * krow = row_ptr(k, c, g, s);
                for (int64_t r = 0; r < rep; ++r) {
                    float l;
                    vec_dot(D, &l, 0, krow, 0, qb + r*qrow, 0, 1);
                    l = l*scale + mv;
                    float vs = 1.0f;
                    if (l > Mx[r]) {
                        const float ms = Mx[r] == -INFINITY ? 0.0f : expf(Mx[r] - l);
                        Mx[r] = l;
                        ggml_vec_scale_f32(Dv, acc + r*Dv, ms);
                        Sm[r] *= ms;
                    } else {
                        vs = expf(l - Mx[r]);
                    }
                    ggml_vec_mad_f32(Dv, acc + r*Dv, vrow, vs);
                    Sm[r] += vs;
                }
            }
        }
        for (int64_t r = 0; r < rep; ++r) {
            float * out = (float *) ((char *) dst->data + (g*rep + r)*dst->nb[1] + t*dst->nb[2] + s*dst->nb[3]);
            const float inv = Sm[r] > 0.0f ? 1.0f/Sm[r] : 0.0f;
            for (int64_t j = 0; j < Dv; ++j) {
                out[j] = acc[r*Dv + j]*inv;
            }
        }
    }
}
