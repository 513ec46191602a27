// foveate token merging (RTPrune): see mtmd-merge.h and docs/architecture.md.
//
// Two small ggml graphs per image on the projector's backends:
//   score: norms of the content rows (and, for the dynamic ratio, the cosine Gram matrix
//          whose mean off-diagonal square is the redundancy term; for the duplicates
//          score, each row's soft count of near-duplicates from the same matrix);
//   merge: cosines kept x dropped -> ot_sinkhorn -> alpha * T x_dropped -> scatter_add_rows
//          into the kept rows -> get_rows of every row that stays, in order.
// The host picks k = floor(N_content * ratio) and the top-k by score in between (data-dependent
// shapes cannot live in one graph).
#include "mtmd-merge.h"
#include "mtmd-foveate.h"
#include "mtmd.h"

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "ggml-merge.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>

namespace {

struct ctx_deleter { void operator()(ggml_context * c) const { ggml_free(c); } };
struct sched_deleter { void operator()(ggml_backend_sched * s) const { ggml_backend_sched_free(s); } };
using ctx_ptr   = std::unique_ptr<ggml_context, ctx_deleter>;
using sched_ptr = std::unique_ptr<ggml_backend_sched, sched_deleter>;

constexpr int GRAPH_NODES = 64;

ctx_ptr graph_context() {
    ggml_init_params p = { ggml_tensor_overhead() * GRAPH_NODES + ggml_graph_overhead_custom(GRAPH_NODES, false),
                           nullptr, true };
    return ctx_ptr(ggml_init(p));
}

void set_threads(const std::vector<ggml_backend_t> & backends, int n_threads) {
    for (auto * b : backends) {
        ggml_backend_dev_t dev = ggml_backend_get_device(b);
        ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
        auto fn = reg ? (ggml_backend_set_n_threads_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads")
                      : nullptr;
        if (fn) {
            fn(b, n_threads);
        }
    }
}

// allocate gf on the scheduler, let `upload` fill its inputs, compute it
template <class F>
bool run(ggml_backend_sched_t sched, ggml_cgraph * gf, const char * what, std::string & err, F upload) {
    if (!ggml_backend_sched_alloc_graph(sched, gf)) {
        err = std::string("token merge: cannot allocate the ") + what + " graph";
        return false;
    }
    upload();
    if (ggml_backend_sched_graph_compute(sched, gf) != GGML_STATUS_SUCCESS) {
        err = std::string("token merge: ") + what + " graph failed";
        return false;
    }
    return true;
}

ggml_tensor * input_i32(ggml_context * ctx, int64_t n) {
    ggml_tensor * t = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
    ggml_set_input(t);
    return t;
}

}  // namespace

double foveate_merge_r_info(const foveate_merge_pixels & px, float threshold) {
    if (!px.rgb || px.patch <= 0 || px.w < px.patch || px.h < px.patch) {
        return 0.0;
    }
    const int P = px.patch, gw = px.w / P, gh = px.h / P;
    std::vector<float> g((size_t) (P + 2) * (P + 2));
    double total = 0.0;
    for (int py = 0; py < gh; py++) {
        for (int pxi = 0; pxi < gw; pxi++) {
            // grey patch with a zero border (the reference pads each patch on its own)
            std::fill(g.begin(), g.end(), 0.0f);
            for (int y = 0; y < P; y++) {
                for (int x = 0; x < P; x++) {
                    const float * c = px.rgb + 3 * ((size_t) (py * P + y) * px.w + (pxi * P + x));
                    g[(size_t) (y + 1) * (P + 2) + x + 1] = 0.299f * c[0] + 0.587f * c[1] + 0.114f * c[2];
                }
            }
            int edges = 0;
            for (int y = 1; y <= P; y++) {
                const float * a = &g[(size_t) (y - 1) * (P + 2)];
                const float * m = &g[(size_t) y * (P + 2)];
                const float * b = &g[(size_t) (y + 1) * (P + 2)];
                for (int x = 1; x <= P; x++) {
                    const float gx = (a[x + 1] + 2 * m[x + 1] + b[x + 1]) - (a[x - 1] + 2 * m[x - 1] + b[x - 1]);
                    const float gy = (b[x - 1] + 2 * b[x] + b[x + 1]) - (a[x - 1] + 2 * a[x] + a[x + 1]);
                    edges += std::sqrt(gx * gx + gy * gy) > threshold;
                }
            }
            total += (double) edges / ((double) P * P);
        }
    }
    return gw * gh > 0 ? total / (gw * gh) : 0.0;
}

bool foveate_merge_compute(const std::vector<ggml_backend_t> & backends, int n_threads,
                           const float * embd, int64_t n, int64_t d, const uint8_t * kind,
                           const foveate_merge_pixels & px, const foveate_merge_config & cfg,
                           foveate_merge_result & res, std::string & err) {
    const auto t0 = std::chrono::steady_clock::now();
    res = foveate_merge_result();
    res.n_before = n;

    std::vector<int32_t> content;
    for (int64_t i = 0; i < n; i++) {
        if (kind[i] == FOVEATE_ROW_CONTENT) {
            content.push_back((int32_t) i);
        }
    }
    const int64_t Np = (int64_t) content.size();

    std::vector<ggml_backend_t> bk(backends);
    std::vector<ggml_backend_buffer_type_t> bufts;
    for (auto * b : bk) {
        bufts.push_back(ggml_backend_get_default_buffer_type(b));
    }
    sched_ptr sched;
    if (Np > 1 && cfg.mode != FOVEATE_MERGE_OFF) {
        sched.reset(ggml_backend_sched_new(bk.data(), bufts.data(), (int) bk.size(), GRAPH_NODES, false, true));
        set_threads(bk, n_threads);
    }

    // --- score graph: norms; the cosine Gram matrix G when the dynamic ratio (mean
    // off-diagonal G^2) or the duplicates score (per row, sum_j!=i exp((G_ij - 1) / t)) needs it ---
    // (keep ratio 1 keeps every row: no ranking needed)
    const bool by_dups = cfg.score == FOVEATE_MERGE_SCORE_DUPLICATES &&
                         !(cfg.mode == FOVEATE_MERGE_FIXED && cfg.keep_ratio >= 1.0);
    std::vector<float> norm2(Np, 0.0f), dups(by_dups ? Np : 0, 0.0f);   // dups: counts, then negated
    double ratio = cfg.mode == FOVEATE_MERGE_FIXED ? cfg.keep_ratio : 1.0;
    if (sched) {
        auto ctx = graph_context();
        ggml_tensor * E = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, d, n);
        ggml_set_input(E);
        ggml_tensor * ci = input_i32(ctx.get(), Np);
        ggml_tensor * X  = ggml_get_rows(ctx.get(), E, ci);
        ggml_tensor * n2 = ggml_sum_rows(ctx.get(), ggml_sqr(ctx.get(), X));
        ggml_set_output(n2);
        ggml_cgraph * gf = ggml_new_graph_custom(ctx.get(), GRAPH_NODES, false);
        ggml_build_forward_expand(gf, n2);
        ggml_tensor * G = nullptr, * gsum = nullptr, * cnt = nullptr;
        if (cfg.mode == FOVEATE_MERGE_DYNAMIC || by_dups) {
            ggml_tensor * Xn = ggml_l2_norm(ctx.get(), X, 1e-12f);
            G = ggml_mul_mat(ctx.get(), Xn, Xn);                                   // [Np, Np]
        }
        if (cfg.mode == FOVEATE_MERGE_DYNAMIC) {
            gsum = ggml_sum(ctx.get(), ggml_sqr(ctx.get(), G));
            ggml_set_output(gsum);
            ggml_build_forward_expand(gf, gsum);
        }
        if (by_dups) {
            const float t = cfg.dup_temperature;
            // a row with itself must not count: its cosine (the diagonal, read as a strided
            // view) is moved to -2 before the exp, whose term is then e^-60. Subtracting it after
            // the sum instead would leave the counts of distinct rows below float32's resolution.
            ggml_tensor * gii = ggml_cont(ctx.get(), ggml_view_2d(ctx.get(), G, 1, Np, G->nb[1] + G->nb[0], 0));
            ggml_tensor * off = ggml_diag(ctx.get(), ggml_scale_bias(ctx.get(), ggml_reshape_2d(ctx.get(), gii, Np, 1), 1.0f, 2.0f));
            ggml_tensor * A   = ggml_exp(ctx.get(), ggml_scale_bias(ctx.get(), ggml_sub(ctx.get(), G, off), 1.0f / t, -1.0f / t));
            cnt = ggml_sum_rows(ctx.get(), A);
            ggml_set_output(cnt);
            ggml_build_forward_expand(gf, cnt);
        }
        if (!run(sched.get(), gf, "score", err, [&] {
                ggml_backend_tensor_set(E, embd, 0, ggml_nbytes(E));
                ggml_backend_tensor_set(ci, content.data(), 0, ggml_nbytes(ci));
            })) {
            return false;
        }
        ggml_backend_tensor_get(n2, norm2.data(), 0, ggml_nbytes(n2));
        if (cnt) {
            ggml_backend_tensor_get(cnt, dups.data(), 0, ggml_nbytes(cnt));
            for (float & c : dups) {
                c = -c;   // fewest near-duplicates ranks first
            }
        }
        if (gsum) {
            float s = 0.0f;
            ggml_backend_tensor_get(gsum, &s, 0, sizeof(float));
            // diagonal: |x^_i|^2 squared, 1 for non-zero rows
            double diag = 0.0;
            for (float v : norm2) {
                const double nn = std::sqrt((double) v), dn = std::max(nn, 1e-12);
                diag += std::pow((double) v / (dn * dn), 2);
            }
            const double overlap = (s - diag) / ((double) Np * (Np - 1));
            res.r_sim  = 1.0 - overlap;
            res.r_info = foveate_merge_r_info(px, cfg.sobel_threshold);
            ratio = res.r_sim + res.r_info - res.r_sim * res.r_info;
            ratio = std::min(1.0, std::max(ratio, cfg.auto_floor));
        }
        ggml_backend_sched_reset(sched.get());
    }
    res.keep_ratio = cfg.mode == FOVEATE_MERGE_OFF ? 1.0 : ratio;

    // --- keep set: top-k content rows by score (ties: earlier row first), ascending ---
    int64_t k = (int64_t) std::floor((double) Np * res.keep_ratio);
    k = std::max<int64_t>(std::min<int64_t>(k, Np), std::min<int64_t>(Np, 1));
    std::vector<int32_t> order(Np);
    std::iota(order.begin(), order.end(), 0);
    const std::vector<float> & key = by_dups ? dups : norm2;   // higher = kept
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return key[a] > key[b]; });
    std::vector<uint8_t> is_kept(n, 0);
    for (int64_t i = 0; i < n; i++) {
        is_kept[i] = kind[i] != FOVEATE_ROW_CONTENT;
    }
    for (int64_t r = 0; r < k; r++) {
        is_kept[content[order[r]]] = 1;
    }
    std::vector<int32_t> kept, dropped;
    for (int32_t i : content) {
        (is_kept[i] ? kept : dropped).push_back(i);
    }
    // newline collapse: a newline right after a kept newline goes (its row was fully merged)
    bool prev_newline = false;
    for (int64_t i = 0; i < n; i++) {
        if (!is_kept[i]) {
            continue;
        }
        if (kind[i] == FOVEATE_ROW_NEWLINE && prev_newline) {
            continue;
        }
        prev_newline = kind[i] == FOVEATE_ROW_NEWLINE;
        res.keep.push_back((int32_t) i);
    }

    res.rows.resize(res.keep.size() * d);
    if (dropped.empty()) {
        // nothing merged: the kept rows are copied unchanged
        for (size_t j = 0; j < res.keep.size(); j++) {
            std::copy(embd + res.keep[j] * d, embd + (res.keep[j] + 1) * d, res.rows.begin() + j * d);
        }
    } else {
        // --- merge graph ---
        auto ctx = graph_context();
        const int64_t K = (int64_t) kept.size(), P = (int64_t) dropped.size();
        ggml_tensor * E  = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, d, n);
        ggml_set_input(E);
        ggml_tensor * ki = input_i32(ctx.get(), K);
        ggml_tensor * pi = input_i32(ctx.get(), P);
        ggml_tensor * oi = input_i32(ctx.get(), (int64_t) res.keep.size());
        ggml_tensor * Xk = ggml_get_rows(ctx.get(), E, ki);                 // [d, K]
        ggml_tensor * Xp = ggml_get_rows(ctx.get(), E, pi);                 // [d, P]
        ggml_tensor * S  = ggml_mul_mat(ctx.get(), ggml_l2_norm(ctx.get(), Xp, 1e-12f),
                                        ggml_l2_norm(ctx.get(), Xk, 1e-12f)); // [P, K] cosines
        ggml_tensor * T  = ggml_ot_sinkhorn(ctx.get(), S, cfg.dustbin, cfg.n_iter);
        ggml_tensor * XpT = ggml_cont(ctx.get(), ggml_transpose(ctx.get(), Xp)); // [P, d]
        ggml_tensor * D  = ggml_scale(ctx.get(), ggml_mul_mat(ctx.get(), XpT, T), cfg.alpha); // [d, K]
        ggml_tensor * M  = ggml_scatter_add_rows(ctx.get(), E, ki, D);
        ggml_tensor * O  = ggml_get_rows(ctx.get(), M, oi);
        ggml_set_output(O);
        ggml_cgraph * gf = ggml_new_graph_custom(ctx.get(), GRAPH_NODES, false);
        ggml_build_forward_expand(gf, O);
        if (!run(sched.get(), gf, "merge", err, [&] {
                ggml_backend_tensor_set(E, embd, 0, ggml_nbytes(E));
                ggml_backend_tensor_set(ki, kept.data(), 0, ggml_nbytes(ki));
                ggml_backend_tensor_set(pi, dropped.data(), 0, ggml_nbytes(pi));
                ggml_backend_tensor_set(oi, res.keep.data(), 0, ggml_nbytes(oi));
            })) {
            return false;
        }
        ggml_backend_tensor_get(O, res.rows.data(), 0, ggml_nbytes(O));
        ggml_backend_sched_reset(sched.get());
    }
    res.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return true;
}

std::shared_ptr<foveate_image_group> foveate_image_group_new() {
    static std::atomic<uint64_t> next{1};
    auto g = std::make_shared<foveate_image_group>();
    g->serial = next++;
    return g;
}

std::vector<foveate_merge_result> foveate_merge_split(const foveate_merge_result & all,
                                                      const std::vector<int64_t> & offs, int64_t d) {
    std::vector<foveate_merge_result> out(offs.size() - 1);
    size_t j = 0;
    for (size_t p = 0; p + 1 < offs.size(); p++) {
        foveate_merge_result & r = out[p];
        r.n_before   = offs[p + 1] - offs[p];
        r.keep_ratio = all.keep_ratio;
        r.r_sim      = all.r_sim;
        r.r_info     = all.r_info;
        r.ms         = 0.0;   // the caller charges the pool to the chunk that ran it
        for (; j < all.keep.size() && all.keep[j] < offs[p + 1]; j++) {
            r.keep.push_back((int32_t) (all.keep[j] - offs[p]));
            r.rows.insert(r.rows.end(), all.rows.begin() + j * d, all.rows.begin() + (j + 1) * d);
        }
    }
    return out;
}

// Standalone entry (tests; callers holding their own embeddings): CPU backend, n rows of d.
extern "C" MTMD_API int32_t mtmd_merge_rows(
        const float * embd, int32_t n, int32_t d, const uint8_t * kind,
        const float * pixels, int32_t w, int32_t h, int32_t patch,
        int32_t mode, double keep_ratio, int32_t score, int32_t n_threads,
        float * out_rows, int32_t * out_keep, double * out_terms) {
    if (!embd || !kind || n <= 0 || d <= 0 || !out_rows || !out_keep || !out_terms) {
        return -1;
    }
    if (mode < FOVEATE_MERGE_OFF || mode > FOVEATE_MERGE_DYNAMIC ||
        (mode == FOVEATE_MERGE_FIXED && !(keep_ratio > 0.0 && keep_ratio <= 1.0)) ||
        score < FOVEATE_MERGE_SCORE_NORM || score > FOVEATE_MERGE_SCORE_DUPLICATES) {
        return -1;
    }
    ggml_backend_t cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
    if (!cpu) {
        return -2;
    }
    foveate_merge_config cfg;
    cfg.mode = mode;
    cfg.keep_ratio = keep_ratio;
    cfg.score = score;
    foveate_merge_pixels px{pixels, w, h, patch};
    foveate_merge_result res;
    std::string err;
    const bool ok = foveate_merge_compute({cpu}, std::max(1, n_threads), embd, n, d, kind, px, cfg, res, err);
    ggml_backend_free(cpu);
    if (!ok) {
        return -3;
    }
    std::copy(res.rows.begin(), res.rows.end(), out_rows);
    std::copy(res.keep.begin(), res.keep.end(), out_keep);
    out_terms[0] = res.keep_ratio;
    out_terms[1] = res.r_sim;
    out_terms[2] = res.r_info;
    return (int32_t) res.keep.size();
}
