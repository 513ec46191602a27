// foveate fixation inside libllama (see llama-fixation.h). Per decode ubatch:
//   host inputs per row (token): its sequence's image cells, text cells, budget k, and the
//   previous step's selection (warm start for the layers below the first focal layer);
//   focal layers: ggml_fix_attn_scored (attention + scores in one pass over K) + ggml_fix_topk
//   -> the row's top-k image cells (on a GPU: stock attention + ggml_fix_select);
//   other layers: ggml_fix_attn over text cells + the current selection only, plus a fixed
//   stratified sample of the image cells standing in for the hidden ones (compensation).
// Nothing is evicted: the KV cache is untouched, so fixation can be switched off any time.
#include "llama-fixation.h"
#include "llama-foveate.h"

#include "llama.h"
#include "llama-batch.h"
#include "llama-context.h"
#include "llama-cparams.h"
#include "llama-graph.h"
#include "llama-hparams.h"
#include "llama-impl.h"
#include "llama-kv-cache.h"
#include "llama-kv-cache-iswa.h"
#include "llama-memory-hybrid.h"
#include "llama-memory-hybrid-iswa.h"
#include "llama-model.h"

#include "ggml.h"
#include "ggml-fixation.h"
#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <set>

struct llama_fixation_input : std::enable_shared_from_this<llama_fixation_input> {
    llama_fixation_state * st = nullptr;
    uint64_t epoch = 0;
    int64_t n_kv = 0, n_tps = 0, n_stream = 0, n_img_max = 0, k_max = 0, n_txt = 0;
    std::vector<int32_t> focal;
    int64_t n_layer = 0;
    int64_t n_attn_below = 0, n_attn_above = 0;  // attention layers below / above the focal
                                                  // ones (a hybrid model's recurrent layers
                                                  // attend to nothing)
    bool refresh_mode = false;        // R > 1: focal layers attend through fix_attn to img_idx

    ggml_tensor * img_idx = nullptr;  // I32 [n_img_max, n_tps, n_stream]
    ggml_tensor * budget  = nullptr;  // I32 [n_tps, n_stream]
    ggml_tensor * txt_idx = nullptr;  // I32 [n_txt, n_tps, n_stream] (text cells, padded: TXT_PAD)
    ggml_tensor * pre_idx = nullptr;  // I32 [n_img_max, n_tps, n_stream]
    ggml_tensor * smp_idx = nullptr;  // I32 [sample, n_tps, n_stream] or null (compensation off)
    ggml_tensor * n_pool  = nullptr;  // I32 [n_tps, n_stream]: image cells the sample stands for
    ggml_tensor * sel_cur = nullptr;  // selection of the latest focal layer (while building)
    ggml_tensor * sel_out = nullptr;  // selection of the last focal layer (read back)

    std::vector<int32_t> row_seq;                 // set_input: sequence of each row
    std::vector<std::vector<int32_t>> row_img;    // set_input: image cells of each row
    std::vector<std::vector<int32_t>> row_rank;   // set_input: reading-order rank of each
                                                  // (empty: cell order is reading order)
    std::vector<int64_t> row_warm;                // set_input: warm-start size of each row
    std::vector<int64_t> row_focal;               // set_input: image cells its focal layers see
    std::vector<int64_t> row_sample;              // set_input: sample cells of each row
};

namespace {

struct plan {
    bool apply = false;
    int64_t n_kv = 0, n_tps = 0, n_stream = 0, n_img_max = 0, k_max = 0, n_txt = 0;
};

// the text list's length is the longest row's text rounded up to this: a decoded token adds a
// text cell per step, and a new length means a new graph (as n_kv's padding does for stock)
constexpr int64_t TXT_PAD = 256;

llama_fixation_state * state_of(const llama_cparams & cparams) {
    return static_cast<llama_fixation_state *>(cparams.fixation);
}

// adds the host time of its scope to the state's (llama_fixation_get_host_us)
struct host_timer {
    llama_fixation_state * st;
    int64_t t0;
    explicit host_timer(llama_fixation_state * s) : st(s), t0(s ? ggml_time_us() : 0) {}
    ~host_timer() {
        if (st) {
            st->host_us += ggml_time_us() - t0;
        }
    }
};

// the cells of seq among the first n_kv of its stream: image (embedding input) or text, in
// cell order; the learned marker rows of an image (image newline, view separator, BOI/EOI;
// their cells carry LLAMA_FIXATION_MARKER_TOKEN) count as text, so they are always attended
// and never scored. rank (if given): each image cell's rank in reading order (by position,
// then the M-RoPE (y, x)), left empty when that is the cell order. With several sequences in
// one stream, find_slot fills holes and wraps, so an image's cells need not be in position
// order: ordinals, the warm start's neighbours and the sample follow the reading order.
void scan_cells(const llama_kv_cache_context * mctx, llama_seq_id seq, int64_t n_kv,
                std::vector<int32_t> & img, std::vector<int32_t> * txt,
                std::vector<int32_t> * rank = nullptr) {
    const llama_kv_cells & cells = mctx->get_kv()->get_cells(seq);
    img.clear();
    const int64_t n = std::min<int64_t>(n_kv, cells.size());
    auto add = [&](int64_t c) {
        if (cells.ext_get(c).tok == LLAMA_TOKEN_NULL) {
            img.push_back((int32_t) c);
        } else if (txt) {
            txt->push_back((int32_t) c);
        }
    };
    const auto & owned = cells.seq_pos_get(seq);  // (pos, cell) pairs of seq, by position
    if ((int64_t) owned.size()*2 < n) {
        // a stream shared by several sequences (a unified cache): visit seq's own cells only,
        // so the work scales with its cells, not with n_kv; lists are in cell order
        for (const auto & pc : owned) {
            if ((int64_t) pc.second < n) {
                add(pc.second);
            }
        }
        if (!std::is_sorted(img.begin(), img.end())) {
            std::sort(img.begin(), img.end());
        }
        if (txt && !std::is_sorted(txt->begin(), txt->end())) {
            std::sort(txt->begin(), txt->end());
        }
    } else {
        for (int64_t c = 0; c < n; ++c) {
            if (!cells.is_empty(c) && cells.seq_has(c, seq)) {
                add(c);
            }
        }
    }
    if (!rank) {
        return;
    }
    rank->clear();
    auto before = [&](int32_t a, int32_t b) {
        const llama_pos pa = cells.pos_get(a), pb = cells.pos_get(b);
        if (pa != pb) {
            return pa < pb;
        }
        const llama_kv_cell_ext & ea = cells.ext_get(a), & eb = cells.ext_get(b);
        return ea.y != eb.y ? ea.y < eb.y : ea.x < eb.x;
    };
    bool in_order = true;
    for (size_t i = 1; i < img.size() && in_order; ++i) {
        in_order = before(img[i - 1], img[i]);
    }
    if (in_order) {
        return;
    }
    std::vector<int32_t> by_rank(img.size());
    for (size_t i = 0; i < img.size(); ++i) {
        by_rank[i] = (int32_t) i;
    }
    std::stable_sort(by_rank.begin(), by_rank.end(),
                     [&](int32_t a, int32_t b) { return before(img[a], img[b]); });
    rank->resize(img.size());
    for (size_t r = 0; r < by_rank.size(); ++r) {
        (*rank)[by_rank[r]] = (int32_t) r;
    }
}

// the index into img (cell order) of the cell with reading rank r (rank not empty)
std::vector<int32_t> reading_order(const std::vector<int32_t> & rank, size_t n) {
    std::vector<int32_t> by_rank(n);
    for (size_t i = 0; i < n; ++i) {
        by_rank[(size_t) rank[i]] = (int32_t) i;
    }
    return by_rank;
}

// whether the device that holds (part of) this context's KV cache can run fixation's ops on
// it, asked of the device (supports_op) with the cache's types and the model's head sizes: the
// CUDA ops read F16/F32 K/V, and a backend without the ops (Vulkan, Metal) would have the
// scheduler run them on the CPU and copy every layer's K/V there each step, slower than dense.
// Then fixation stays off for the context (one warning; llama_fixation_get_off_reason).
// Checked once per context; a cache in host memory is the CPU's, whose ops read every type.
bool kv_unsupported(llama_fixation_state * st, const llama_kv_cache_context * mctx,
                    const llama_hparams & hparams) {
    if (st->kv_unsupported >= 0) {
        return st->kv_unsupported > 0;
    }
    st->kv_unsupported = 0;
    ggml_backend_dev_t dev = nullptr;
    for (const auto & it : mctx->get_kv()->memory_breakdown()) {
        if (it.second > 0 && !ggml_backend_buft_is_host(it.first)) {
            dev = ggml_backend_buft_get_device(it.first);
            break;
        }
    }
    if (!dev) {
        return false;
    }
    uint32_t il = 0;
    while (il + 1 < hparams.n_layer() && hparams.is_recr(il)) {
        ++il;
    }
    const int64_t D = hparams.n_embd_head_k(il), Dv = hparams.n_embd_head_v(il);
    const int64_t H = hparams.n_head(il), Hkv = std::max<int64_t>(1, hparams.n_head_kv(il));
    const int64_t N = 256, n_list = 16;
    ggml_init_params ip = { 16*ggml_tensor_overhead(), nullptr, /*no_alloc =*/ true };
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * q    = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, 1, H, 1);
    ggml_tensor * k    = ggml_new_tensor_4d(ctx, mctx->type_k(), D, N, Hkv, 1);
    ggml_tensor * v    = ggml_new_tensor_4d(ctx, mctx->type_v(), Dv, N, Hkv, 1);
    ggml_tensor * mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, N, 1, 1, 1);
    ggml_tensor * ia   = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, n_list, 1, 1);
    ggml_tensor * ib   = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, n_list, 1, 1);
    ggml_tensor * bud  = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, 1, 1);
    ggml_tensor * sel  = ggml_fix_select(ctx, q, k, mask, ia, bud, 8, 1.0f);
    ggml_tensor * attn = ggml_fix_attn(ctx, q, k, v, mask, ia, ib, 1.0f);
    const bool ok = ggml_backend_dev_supports_op(dev, sel) && ggml_backend_dev_supports_op(dev, attn);
    ggml_free(ctx);
    if (!ok) {
        st->kv_unsupported = 1;
        st->kv_device = ggml_backend_dev_name(dev);
        LLAMA_LOG_WARN("fixation: off for this context: its KV cache (K %s, V %s, head size %lld) is on %s, "
                       "which cannot run fixation's ops on it (on a CUDA GPU use an F16 KV cache; or keep "
                       "the cache on the CPU)\n", ggml_type_name(mctx->type_k()),
                       ggml_type_name(mctx->type_v()), (long long) D, st->kv_device.c_str());
    }
    return !ok;
}

// the fused focal layer has CPU kernels only: a KV cache on a GPU keeps fix_select + stock attention
bool in_host_memory(const ggml_tensor * t) {
    while (t->view_src) {
        t = t->view_src;
    }
    return t->buffer && ggml_backend_buffer_is_host(t->buffer);
}

// a mass budget (cfg.mass > 0): the row's budget is its ceiling, k_min its floor
void set_mass(ggml_tensor * sel, const llama_fixation_input & fi) {
    if (fi.st->cfg.mass > 0.0f) {
        ggml_fix_select_set_mass(sel, fi.st->cfg.mass, fi.st->cfg.k_min);
    }
}

int64_t budget_for(const llama_fixation_config & cfg, int64_t n_img) {
    // ceil(ratio x n) of the decimal ratio asked for: the float ratio (0.05f = 0.0500000007)
    // would round 0.05 x 1540 up to 78; a relative 1e-6 is far above float's error
    const double want = (double) cfg.ratio * (double) n_img;
    const int64_t k = (int64_t) std::ceil(want - want * 1e-6);
    return std::min<int64_t>(n_img, std::max<int64_t>(k, cfg.k_min));
}

plan make_plan(const llama_ubatch & ubatch, const llama_hparams & hparams, const llama_cparams & cparams,
               const llama_kv_cache_context * mctx, int64_t n_kv, int64_t n_stream) {
    plan p;
    llama_fixation_state * st = state_of(cparams);
    host_timer timer(st);
    if (!st || !st->cfg.enabled || st->held || cparams.training || !cparams.causal_attn || !ubatch.token ||
        hparams.attn_soft_cap || hparams.f_max_alibi_bias > 0.0f || n_stream < 1 ||
        ubatch.n_tokens % n_stream != 0 || kv_unsupported(st, mctx, hparams)) {
        return p;
    }
    std::map<llama_seq_id, int32_t> per_seq;
    for (uint32_t i = 0; i < ubatch.n_tokens; ++i) {
        if (++per_seq[ubatch.seq_id[i][0]] > st->cfg.max_tokens) {
            return p;  // prefill-sized: dense
        }
    }
    p.n_kv = n_kv;
    p.n_stream = n_stream;
    p.n_tps = ubatch.n_tokens / n_stream;
    bool sparse = false;
    std::vector<int32_t> img, txt;
    for (const auto & it : per_seq) {
        txt.clear();
        scan_cells(mctx, it.first, n_kv, img, &txt);
        p.n_txt = std::max<int64_t>(p.n_txt, (int64_t) txt.size());
        const int64_t n_img = (int64_t) img.size();
        const int64_t k = budget_for(st->cfg, n_img);
        p.n_img_max = std::max(p.n_img_max, n_img);
        p.k_max = std::max(p.k_max, k);
        sparse |= k < n_img;
    }
    // every budget covers all image cells (ratio 1): the stock graph, bit for bit (unless a
    // test forces the sparse graph, to check fixation's ops against stock attention)
    p.apply = (sparse || st->cfg.force_sparse) && p.k_max > 0;
    p.n_txt = std::min<int64_t>(n_kv, std::max<int64_t>(1, GGML_PAD(p.n_txt, TXT_PAD)));
    return p;
}

} // namespace

std::shared_ptr<llama_fixation_input> llama_fixation_make_input(
        ggml_context * ctx0, const llama_ubatch & ubatch, const llama_hparams & hparams,
        const llama_cparams & cparams, const llama_kv_cache_context * mctx, ggml_tensor * kq_mask) {
    if (!state_of(cparams) || !kq_mask) {
        return nullptr;
    }
    const plan p = make_plan(ubatch, hparams, cparams, mctx, kq_mask->ne[0], kq_mask->ne[3]);
    if (!p.apply) {
        return nullptr;
    }
    auto fi = std::make_shared<llama_fixation_input>();
    fi->st = state_of(cparams);
    fi->epoch = fi->st->epoch;
    fi->n_kv = p.n_kv;
    fi->n_tps = p.n_tps;
    fi->n_stream = p.n_stream;
    fi->n_img_max = p.n_img_max;
    fi->k_max = p.k_max;
    fi->n_txt = p.n_txt;
    fi->focal = fi->st->cfg.focal;
    const int32_t n_layer = (int32_t) hparams.n_layer();
    if (fi->focal.empty()) {
        // a third of the depth; on a hybrid model the attention layer nearest it (a
        // recurrent layer has no attention to score)
        const int32_t third = n_layer / 3;
        int32_t best = -1;
        for (int32_t il = 0; il < n_layer; ++il) {
            if (!hparams.is_recr(il) && (best < 0 || std::abs(il - third) < std::abs(best - third))) {
                best = il;
            }
        }
        fi->focal.push_back(best < 0 ? third : best);
    }
    std::sort(fi->focal.begin(), fi->focal.end());
    fi->n_layer = n_layer;
    for (int32_t il = 0; il < n_layer; ++il) {
        if (!hparams.is_recr(il) && !std::binary_search(fi->focal.begin(), fi->focal.end(), il)) {
            (il < fi->focal.front() ? fi->n_attn_below : fi->n_attn_above) += 1;
        }
    }
    fi->refresh_mode = fi->st->cfg.refresh > 1;
    fi->st->focal_used = fi->focal;

    auto input = [&](int64_t ne0, int64_t ne1, int64_t ne2, const char * name) {
        ggml_tensor * t = ne2 ? ggml_new_tensor_3d(ctx0, GGML_TYPE_I32, ne0, ne1, ne2)
                              : ggml_new_tensor_2d(ctx0, GGML_TYPE_I32, ne0, ne1);
        ggml_set_input(t);
        ggml_set_name(t, name);
        return t;
    };
    fi->img_idx = input(p.n_img_max, p.n_tps, p.n_stream, "fix_img_idx");
    fi->budget  = input(p.n_tps, p.n_stream, 0, "fix_budget");
    fi->txt_idx = input(p.n_txt, p.n_tps, p.n_stream, "fix_txt_idx");
    fi->pre_idx = input(p.n_img_max, p.n_tps, p.n_stream, "fix_pre_idx");
    if (fi->st->cfg.sample > 0) {
        fi->smp_idx = input(fi->st->cfg.sample, p.n_tps, p.n_stream, "fix_smp_idx");
        fi->n_pool  = input(p.n_tps, p.n_stream, 0, "fix_n_pool");
    }
    return fi;
}

void llama_fixation_set_input(llama_fixation_input & fi, const llama_kv_cache_context * mctx,
                              const llama_ubatch * ubatch) {
    llama_fixation_state * st = fi.st;
    host_timer timer(st);
    const int64_t n_rows = fi.n_tps * fi.n_stream;
    // an input no layer reads (e.g. the warm start when layer 0 is focal) is not allocated;
    // one not built (the sample when compensation is off) is null
    auto host = [](ggml_tensor * t) -> int32_t * {
        if (!t || !t->buffer) {
            return nullptr;
        }
        GGML_ASSERT(ggml_backend_buffer_is_host(t->buffer));
        return (int32_t *) t->data;
    };
    int32_t * img = host(fi.img_idx);
    int32_t * bud = host(fi.budget);
    int32_t * txt = host(fi.txt_idx);
    int32_t * pre = host(fi.pre_idx);
    int32_t * smp = host(fi.smp_idx);
    int32_t * pool = host(fi.n_pool);
    const int64_t n_smp = fi.smp_idx ? fi.smp_idx->ne[0] : 0;
    fi.row_seq.assign(n_rows, -1);
    fi.row_img.assign(n_rows, {});
    fi.row_rank.assign(n_rows, {});
    fi.row_warm.assign(n_rows, 0);
    fi.row_focal.assign(n_rows, 0);
    fi.row_sample.assign(n_rows, 0);
    std::vector<int32_t> text;
    std::map<llama_seq_id, int64_t> row_in_seq;   // a sequence's rows are its next steps, in order
    for (int64_t r = 0; r < n_rows; ++r) {
        const llama_seq_id seq = ubatch->seq_id[r][0];
        const int64_t step_in_ubatch = row_in_seq[seq]++;
        std::vector<int32_t> & im = fi.row_img[r];
        text.clear();
        scan_cells(mctx, seq, fi.n_kv, im, &text, &fi.row_rank[r]);
        // the image cell of reading rank j (the cell order itself unless the cells are out of
        // reading order: then an inverse of the ranks, built only for such rows)
        const std::vector<int32_t> by_rank = fi.row_rank[r].empty()
            ? std::vector<int32_t>() : reading_order(fi.row_rank[r], im.size());
        auto nth = [&](int64_t j) { return im[by_rank.empty() ? j : by_rank[j]]; };
        // can_reuse rebuilds otherwise
        GGML_ASSERT((int64_t) im.size() <= fi.n_img_max && (int64_t) text.size() <= fi.n_txt);
        fi.row_seq[r] = seq;
        // the sequence's last selection, if it was made over these same image cells
        auto hist = st->history.find(seq);
        const bool have_prev = hist != st->history.end() && hist->second.images == im;
        // refresh interval R: without a previous selection, or every R-th step, score afresh;
        // otherwise the focal layers attend to the previous selection and pass it on
        // (counted per row: a sequence's k rows in one ubatch are its next k steps)
        const bool refresh = !fi.refresh_mode || !have_prev ||
                             (hist->second.steps + step_in_ubatch) % st->cfg.refresh == 0;
        const std::vector<int32_t> & focal_list = refresh ? im : hist->second.cells;
        fi.row_focal[r] = (int64_t) focal_list.size();
        if (img) {
            std::fill(img + r*fi.n_img_max, img + (r + 1)*fi.n_img_max, -1);
            std::copy(focal_list.begin(), focal_list.end(), img + r*fi.n_img_max);
        }
        if (bud) {
            bud[r] = refresh ? (int32_t) budget_for(st->cfg, (int64_t) im.size()) : -1;
        }
        if (txt) {
            std::fill(txt + r*fi.n_txt, txt + (r + 1)*fi.n_txt, -1);
            std::copy(text.begin(), text.end(), txt + r*fi.n_txt);
        }
        if (smp) {
            // stratified over the image cells in reading order: the centre of each of n_smp
            // equal spans (the same cells every step, so the estimate does not flicker); the
            // list itself in cell order, as the selection
            const int64_t n = (int64_t) im.size();
            int32_t * row = smp + r*n_smp;
            std::fill(row, row + n_smp, -1);
            std::vector<int32_t> picked;
            for (int64_t j = 0; j < n_smp && n > 0; ++j) {
                picked.push_back(nth(std::min(n - 1, (j*n)/n_smp + n/(2*n_smp))));
            }
            std::sort(picked.begin(), picked.end());
            picked.erase(std::unique(picked.begin(), picked.end()), picked.end());
            std::copy(picked.begin(), picked.end(), row);
            fi.row_sample[r] = (int64_t) picked.size();
        }
        if (pool) {
            pool[r] = (int32_t) im.size();
        }
        if (!pre) {
            continue;
        }
        // warm start of the layers below the first focal layer
        std::fill(pre + r*fi.n_img_max, pre + (r + 1)*fi.n_img_max, -1);
        if (have_prev) {
            // the reader's eye moves on: add the cells that follow each selected one (in
            // reading order, whatever cells the page landed in)
            std::vector<int32_t> warm = hist->second.cells;
            const std::vector<int32_t> & rank = fi.row_rank[r];
            for (int32_t c : hist->second.cells) {
                const int64_t o = std::lower_bound(im.begin(), im.end(), c) - im.begin();
                const int64_t at = rank.empty() ? o : rank[o];
                for (int32_t d = 1; d <= st->cfg.dilation && at + d < (int64_t) im.size(); ++d) {
                    warm.push_back(nth(at + d));
                }
            }
            std::sort(warm.begin(), warm.end());
            warm.erase(std::unique(warm.begin(), warm.end()), warm.end());
            warm.resize(std::min<size_t>(warm.size(), fi.n_img_max));
            std::copy(warm.begin(), warm.end(), pre + r*fi.n_img_max);
            fi.row_warm[r] = (int64_t) warm.size();
        } else {
            std::copy(im.begin(), im.end(), pre + r*fi.n_img_max);
            fi.row_warm[r] = (int64_t) im.size();
        }
    }
    st->active = fi.weak_from_this();
}

bool llama_fixation_can_reuse(const llama_fixation_input * fi, const llm_graph_params & params,
                              const llama_kv_cache_context * mctx) {
    const llama_fixation_state * st = state_of(params.cparams);
    if (!st) {
        return fi == nullptr;
    }
    // the streams of this ubatch, as build_attn_inp_kq_mask counts them
    const int64_t n_stream = params.cparams.kv_unified ? 1 : (int64_t) params.ubatch.n_seqs_unq;
    const plan p = make_plan(params.ubatch, params.hparams, params.cparams, mctx, mctx->get_n_kv(),
                             std::max<int64_t>(1, n_stream));
    if (!fi) {
        return !p.apply;
    }
    return p.apply && fi->epoch == st->epoch && p.n_kv == fi->n_kv && p.n_tps == fi->n_tps &&
           p.n_img_max == fi->n_img_max && p.k_max == fi->k_max && p.n_txt == fi->n_txt;
}

ggml_tensor * llama_fixation_build_attn(
        ggml_context * ctx0, ggml_cgraph * gf, llama_fixation_input & fi, ggml_tensor * q, ggml_tensor * k,
        ggml_tensor * v, ggml_tensor * kq_mask, ggml_tensor * kq_b, ggml_tensor * sinks,
        float kq_scale, int il) {
    if (kq_b || sinks || q->type != GGML_TYPE_F32) {
        return nullptr;
    }
    // the views build_attn_mha makes: q [D, T, H, S], k [D, N, Hkv, S], v [Dv, N, Hkv, S]
    const int64_t ns = k->ne[3];
    ggml_tensor * qp = ggml_view_4d(ctx0, q, q->ne[0], q->ne[1], q->ne[2]/ns, ns, q->nb[1], q->nb[2],
                                    q->nb[2]*(q->ne[2]/ns), 0);
    qp = ggml_permute(ctx0, qp, 0, 2, 1, 3);
    ggml_tensor * kp = ggml_permute(ctx0, k, 0, 2, 1, 3);

    const bool focal = std::binary_search(fi.focal.begin(), fi.focal.end(), il);
    const bool v_trans = v->nb[1] > v->nb[2];
    auto permute_v = [&]() {
        ggml_tensor * vp = ggml_permute(ctx0, v, 0, 2, 1, 3);
        return v_trans ? ggml_transpose(ctx0, vp) : vp;
    };
    if (focal && !fi.refresh_mode && in_host_memory(k)) {
        // R = 1 on the CPU: the focal layer's attention and its scores in one pass over K
        // (fix_attn_scored), the top-k from those scores; fix_select is the reference
        ggml_tensor * scores = nullptr;
        ggml_tensor * cur = ggml_fix_attn_scored(ctx0, qp, kp, permute_v(), kq_mask, fi.img_idx, kq_scale, &scores);
        ggml_format_name(cur->view_src, "fix_attn_scored-%d", il);
        ggml_tensor * sel = ggml_fix_topk(ctx0, scores, fi.img_idx, fi.budget, fi.k_max);
        ggml_format_name(sel, "fix_topk-%d", il);
        set_mass(sel, fi);
        ggml_set_output(sel);
        ggml_build_forward_expand(gf, sel);
        fi.sel_cur = sel;
        fi.sel_out = sel;
        return ggml_reshape_2d(ctx0, cur, cur->ne[0]*cur->ne[1], cur->ne[2]*cur->ne[3]);
    }
    if (focal) {
        ggml_tensor * sel = ggml_fix_select(ctx0, qp, kp, kq_mask, fi.img_idx, fi.budget, fi.k_max, kq_scale);
        ggml_format_name(sel, "fix_select-%d", il);
        set_mass(sel, fi);
        ggml_set_output(sel);
        ggml_build_forward_expand(gf, sel);
        fi.sel_cur = sel;
        fi.sel_out = sel;
        if (!fi.refresh_mode) {
            return nullptr;  // R = 1: the focal layer itself attends densely (stock path)
        }
    }
    ggml_tensor * vp = permute_v();
    // text cells plus: on a focal layer with R > 1, img_idx (every image cell on refresh steps,
    // the previous selection on the others); elsewhere the current selection or the warm start
    ggml_tensor * image_list = focal ? fi.img_idx : fi.sel_cur ? fi.sel_cur : fi.pre_idx;
    ggml_tensor * cur = ggml_fix_attn(ctx0, qp, kp, vp, kq_mask, fi.txt_idx, image_list, kq_scale);
    if (fi.smp_idx) {
        ggml_fix_attn_add_sample(cur, fi.smp_idx, fi.n_pool);  // the hidden image cells' share
    }
    ggml_format_name(cur, "fix_attn-%d", il);
    return ggml_reshape_2d(ctx0, cur, cur->ne[0]*cur->ne[1], cur->ne[2]*cur->ne[3]);
}

void llama_fixation_after_compute(void * state, ggml_backend_sched * sched, const llama_ubatch & ubatch) {
    auto * st = static_cast<llama_fixation_state *>(state);
    host_timer timer(st);
    st->host_ubatches += 1;
    // null when this ubatch ran dense, and when the input set last belonged to a compute that
    // failed or was aborted (its graph has been freed since, or this ubatch would have set it)
    const std::shared_ptr<llama_fixation_input> fi = st->active.lock();
    st->active.reset();
    if (!fi) {
        // a ubatch that ran dense (a prefill, a new page) moved its sequences on: their last
        // selection is stale, so the next fixation step starts them without a warm start
        for (uint32_t i = 0; i < ubatch.n_tokens; ++i) {
            for (int32_t j = 0; j < ubatch.n_seq_id[i]; ++j) {
                st->history.erase(ubatch.seq_id[i][j]);
                st->rows.erase(ubatch.seq_id[i][j]);
            }
        }
        return;
    }
    if (!fi->sel_out || !fi->sel_out->buffer) {
        return;
    }
    ggml_backend_t be = ggml_backend_sched_get_tensor_backend(sched, fi->sel_out);
    if (be) {
        ggml_backend_synchronize(be);
    }
    std::vector<int32_t> sel(ggml_nelements(fi->sel_out));
    ggml_backend_tensor_get(fi->sel_out, sel.data(), 0, sel.size()*sizeof(int32_t));
    // each sequence's rows, in order: its next steps (one, or a drafted continuation)
    std::map<int32_t, llama_fixation_rows> rows;
    for (int32_t seq : std::set<int32_t>(fi->row_seq.begin(), fi->row_seq.end())) {
        llama_fixation_rows & sr = rows[seq];
        auto h = st->history.find(seq);
        if (h != st->history.end()) {
            sr.before = h->second;
        }
    }
    for (size_t r = 0; r < fi->row_seq.size(); ++r) {
        const int32_t seq = fi->row_seq[r];
        const std::vector<int32_t> & im = fi->row_img[r];
        const std::vector<int32_t> & rank = fi->row_rank[r];
        std::vector<int32_t> cells, ords;
        for (int64_t j = 0; j < fi->k_max; ++j) {
            const int32_t c = sel[r*fi->k_max + j];
            if (c < 0) {
                break;
            }
            cells.push_back(c);
            const int32_t o = (int32_t) (std::lower_bound(im.begin(), im.end(), c) - im.begin());
            ords.push_back(rank.empty() ? o : rank[o]);
        }
        std::sort(ords.begin(), ords.end());
        // image cells attended per layer: warm start below the first focal layer, the focal
        // list on focal layers (all of them, or the kept selection between refreshes), the
        // fresh selection above (layers are counted once each); sparse layers add the sample
        // (an upper bound: sample cells that are selected are not attended twice). Layers
        // that attend: a hybrid model's recurrent ones do not, and are not counted
        const int64_t n_below = fi->n_attn_below, n_focal = (int64_t) fi->focal.size();
        const int64_t n_above = fi->n_attn_above;
        const int64_t n_img_r = (int64_t) im.size();
        const int64_t smp_below = fi->row_warm[r] < n_img_r ? fi->row_sample[r] : 0;
        const int64_t smp_above = (int64_t) cells.size() < n_img_r ? fi->row_sample[r] : 0;
        // focal layers attend through fix_attn (so with the sample) only between refreshes
        const int64_t smp_focal = fi->refresh_mode && fi->row_focal[r] < n_img_r ? fi->row_sample[r] : 0;
        st->sum_attended += (double) (n_below*(fi->row_warm[r] + smp_below) +
                                      n_focal*(fi->row_focal[r] + smp_focal) +
                                      n_above*((int64_t) cells.size() + smp_above)) /
                           (double) (n_below + n_focal + n_above);
        st->sum_k += (double) cells.size();
        st->sum_img += (double) im.size();
        st->n_rows += 1;
        llama_fixation_rows & sr = rows[seq];
        // row i > 0 started from the selection before the ubatch (warm start, kept focal
        // list), where a one-token step would start from row i-1's: the same inputs, so the
        // same result, only while every earlier row chose exactly that selection again
        const bool had_prev = !sr.before.cells.empty() && sr.before.images == im;
        if (sr.cells.empty() || (had_prev && (int32_t) sr.cells.size() == sr.n_exact &&
                                 sr.cells.back() == sr.before.cells)) {
            sr.n_exact += 1;
        }
        sr.cells.push_back(cells);
        sr.ords.push_back(std::move(ords));
        llama_fixation_history & h = st->history[seq];
        h.cells = std::move(cells);   // as if every row is kept (llama_fixation_keep_row)
        h.images = im;
        h.steps = sr.before.steps + (int64_t) sr.cells.size();
        st->ordinal[seq] = sr.ords.back();
    }
    for (auto & it : rows) {
        st->rows[it.first] = std::move(it.second);
    }
}

void llama_fixation_forget(void * state, int32_t seq) {
    auto * st = static_cast<llama_fixation_state *>(state);
    if (seq < 0) {
        st->history.clear();
        st->ordinal.clear();
        st->rows.clear();
    } else {
        st->history.erase(seq);
        st->ordinal.erase(seq);
        st->rows.erase(seq);
    }
}

// --- C API (declared in llama-foveate.h) -----------------------------------------------------

// The state is made by the first setter; the context runs fixation's hooks (cparams.fixation:
// a plan per ubatch, the read-back after it) only while fixation is on, so a context that
// never turns it on runs stock's decode with nothing added.
static llama_fixation_state * get_state(llama_context * ctx, bool create) {
    if (!ctx->fixation_owner && create) {
        ctx->fixation_owner = std::make_shared<llama_fixation_state>();
    }
    return static_cast<llama_fixation_state *>(ctx->fixation_owner.get());
}

extern "C" int32_t llama_fixation_set(struct llama_context * ctx, float ratio, int32_t k_min,
                                      const int32_t * focal, int32_t n_focal, int32_t max_tokens) {
    if (!ctx) {
        return -1;
    }
    const int32_t n_layer = llama_model_n_layer(llama_get_model(ctx));
    if (!(ratio >= 0.0f && ratio <= 1.0f)) {
        LLAMA_LOG_ERROR("%s: ratio must be in [0, 1], got %g\n", __func__, ratio);
        return -2;
    }
    if (ratio > 0.0f && k_min < 1) {
        LLAMA_LOG_ERROR("%s: k_min must be >= 1, got %d\n", __func__, k_min);
        return -3;
    }
    if (n_focal < 0 || n_focal > n_layer || (n_focal > 0 && !focal)) {
        LLAMA_LOG_ERROR("%s: bad focal layer list (n_focal = %d, model has %d layers)\n", __func__, n_focal, n_layer);
        return -4;
    }
    const llama_hparams & hparams = llama_get_model(ctx)->hparams;
    for (int32_t i = 0; i < n_focal; ++i) {
        if (focal[i] < 0 || focal[i] >= n_layer) {
            LLAMA_LOG_ERROR("%s: focal layer %d out of range [0, %d)\n", __func__, focal[i], n_layer);
            return -4;
        }
        if (hparams.is_recr(focal[i])) {
            LLAMA_LOG_ERROR("%s: focal layer %d is a recurrent layer: it has no attention to score "
                            "image cells with\n", __func__, focal[i]);
            return -6;
        }
    }
    if (max_tokens < 1) {
        LLAMA_LOG_ERROR("%s: max_tokens must be >= 1, got %d\n", __func__, max_tokens);
        return -5;
    }
    llama_fixation_state * st = get_state(ctx, ratio > 0.0f);
    if (!st) {
        return 0;  // off and never on: nothing to do
    }
    const std::vector<int32_t> focal_new(focal, focal + n_focal);
    const bool same = st->cfg.enabled == (ratio > 0.0f) && st->cfg.ratio == ratio && st->cfg.k_min == k_min &&
                      st->cfg.focal == focal_new && st->cfg.max_tokens == max_tokens;
    st->cfg.enabled = ratio > 0.0f;
    st->cfg.ratio = ratio;
    st->cfg.k_min = k_min;
    st->cfg.focal = focal_new;
    st->cfg.max_tokens = max_tokens;
    if (!same) {
        st->epoch++;  // the graph must be rebuilt; an unchanged config keeps it
    }
    ctx->set_fixation(st->cfg.enabled ? st : nullptr);
    // every call starts each sequence afresh (no warm start from an earlier page)
    st->history.clear();
    st->ordinal.clear();
    st->rows.clear();
    return 0;
}

// the attention caches of a context's memory: a KV cache, a hybrid memory's attention part,
// or both halves of an iSWA cache
static std::vector<llama_kv_cache *> attention_caches(llama_context * ctx) {
    llama_memory_i * mem = llama_get_memory(ctx);
    if (auto * kv = dynamic_cast<llama_kv_cache *>(mem)) {
        return {kv};
    }
    if (auto * hy = dynamic_cast<llama_memory_hybrid *>(mem)) {
        return {hy->get_mem_attn()};
    }
    if (auto * iswa = dynamic_cast<llama_kv_cache_iswa *>(mem)) {
        return {iswa->get_base(), iswa->get_swa()};
    }
    if (auto * hyi = dynamic_cast<llama_memory_hybrid_iswa *>(mem)) {
        return {hyi->get_mem_attn()->get_base(), hyi->get_mem_attn()->get_swa()};
    }
    return {};
}

extern "C" void llama_fixation_set_markers(struct llama_context * ctx, llama_seq_id seq_id,
                                           const llama_pos * pos, int32_t n) {
    if (!ctx || seq_id < 0 || seq_id >= LLAMA_MAX_SEQ || n <= 0 || !pos) {
        return;
    }
    for (llama_kv_cache * kv : attention_caches(ctx)) {
        // the tag lives in the cell: get_cells is const for readers; the cache owns the cells
        auto & cells = const_cast<llama_kv_cells &>(kv->get_cells(seq_id));
        const auto & owned = cells.seq_pos_get(seq_id);
        for (int32_t i = 0; i < n; ++i) {
            const auto it = owned.lower_bound({pos[i], 0});
            if (it == owned.end() || it->first != pos[i]) {
                continue;
            }
            llama_kv_cell_ext ext = cells.ext_get(it->second);
            if (ext.tok == LLAMA_TOKEN_NULL) {   // an embedding row, as a marker row is
                ext.tok = LLAMA_FIXATION_MARKER_TOKEN;
                cells.ext_set(it->second, ext);
            }
        }
    }
}

extern "C" int32_t llama_fixation_set_force_sparse(struct llama_context * ctx, int32_t on) {
    llama_fixation_state * st = ctx ? get_state(ctx, true) : nullptr;
    if (!st) {
        return -1;
    }
    if (st->cfg.force_sparse != (on != 0)) {
        st->cfg.force_sparse = on != 0;
        st->epoch++;
    }
    return 0;
}

extern "C" int32_t llama_fixation_active(struct llama_context * ctx) {
    return ctx && ctx->fixation_owner && ctx->get_cparams().fixation ? 1 : 0;
}

extern "C" int32_t llama_fixation_set_refresh(struct llama_context * ctx, int32_t refresh) {
    llama_fixation_state * st = ctx ? get_state(ctx, true) : nullptr;
    if (!st || refresh < 1) {
        return -1;
    }
    if (st->cfg.refresh != refresh) {
        st->cfg.refresh = refresh;
        st->epoch++;  // R = 1 and R > 1 build different focal layers
    }
    return 0;
}

extern "C" int32_t llama_fixation_set_sample(struct llama_context * ctx, int32_t sample) {
    llama_fixation_state * st = ctx ? get_state(ctx, true) : nullptr;
    if (!st || sample < 0 || sample > 4096) {
        return -1;
    }
    if (st->cfg.sample != sample) {
        st->cfg.sample = sample;
        st->epoch++;  // the sample input's shape changes
    }
    return 0;
}

extern "C" int32_t llama_fixation_hold(struct llama_context * ctx, int32_t on) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    if (st) {
        st->held = on != 0;
    }
    return 0;
}

extern "C" int32_t llama_fixation_set_mass(struct llama_context * ctx, float mass) {
    llama_fixation_state * st = ctx ? get_state(ctx, true) : nullptr;
    if (!st || !(mass >= 0.0f && mass <= 1.0f)) {
        return -1;
    }
    if (st->cfg.mass != mass) {
        st->cfg.mass = mass;
        st->epoch++;  // the selection nodes' parameters change
    }
    return 0;
}

extern "C" int32_t llama_fixation_set_dilation(struct llama_context * ctx, int32_t dilation) {
    llama_fixation_state * st = ctx ? get_state(ctx, true) : nullptr;
    if (!st || dilation < 0) {
        return -1;
    }
    st->cfg.dilation = dilation;
    return 0;
}

extern "C" double llama_fixation_get_attended(struct llama_context * ctx) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    return st && st->n_rows ? st->sum_attended / st->n_rows : 0.0;
}

extern "C" double llama_fixation_get_host_us(struct llama_context * ctx) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    return st && st->host_ubatches ? (double) st->host_us / (double) st->host_ubatches : 0.0;
}

extern "C" int32_t llama_fixation_get_last(struct llama_context * ctx, llama_seq_id seq_id, int32_t * out, int32_t n_out) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    if (!st) {
        return 0;
    }
    auto it = st->ordinal.find(seq_id);
    if (it == st->ordinal.end()) {
        return 0;
    }
    const int32_t n = (int32_t) it->second.size();
    if (out) {
        std::copy(it->second.begin(), it->second.begin() + std::min(n, std::max(0, n_out)), out);
    }
    return n;
}

extern "C" int32_t llama_fixation_rows_exact(struct llama_context * ctx, llama_seq_id seq_id) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    if (!st) {
        return 0;
    }
    auto it = st->rows.find(seq_id);
    return it == st->rows.end() ? 0 : it->second.n_exact;
}

extern "C" int32_t llama_fixation_keep_row(struct llama_context * ctx, llama_seq_id seq_id, int32_t row) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    if (!st) {
        return -1;
    }
    auto it = st->rows.find(seq_id);
    if (it == st->rows.end() || row < 0 || row >= (int32_t) it->second.cells.size()) {
        return -1;
    }
    llama_fixation_rows & sr = it->second;
    llama_fixation_history & h = st->history[seq_id];
    h.cells = sr.cells[row];
    h.steps = sr.before.steps + row + 1;
    st->ordinal[seq_id] = sr.ords[row];
    return 0;
}

extern "C" int32_t llama_fixation_get_stats(struct llama_context * ctx, double * mean_selected,
                                            double * mean_image, int64_t * n_rows,
                                            int32_t * focal_out, int32_t n_focal_out) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    if (!st) {
        if (mean_selected) *mean_selected = 0;
        if (mean_image) *mean_image = 0;
        if (n_rows) *n_rows = 0;
        return 0;
    }
    if (mean_selected) *mean_selected = st->n_rows ? st->sum_k / st->n_rows : 0.0;
    if (mean_image) *mean_image = st->n_rows ? st->sum_img / st->n_rows : 0.0;
    if (n_rows) *n_rows = st->n_rows;
    const int32_t n = (int32_t) st->focal_used.size();
    for (int32_t i = 0; i < n && i < n_focal_out && focal_out; ++i) {
        focal_out[i] = st->focal_used[i];
    }
    return n;
}

extern "C" const char * llama_fixation_get_off_reason(struct llama_context * ctx) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    if (st && st->kv_unsupported > 0) {
        // the device, then why (a CUDA GPU: its ops read F16/F32 K/V only)
        st->off_reason = "the KV cache is on " + st->kv_device + ", which cannot run fixation's ops "
                         "on it (a CUDA GPU reads F16/F32 K/V only: a quantized cache there turns "
                         "fixation off)";
        return st->off_reason.c_str();
    }
    return "";
}

extern "C" void llama_fixation_reset_stats(struct llama_context * ctx) {
    llama_fixation_state * st = ctx ? get_state(ctx, false) : nullptr;
    if (st) {
        st->sum_k = st->sum_img = st->sum_attended = 0.0;
        st->n_rows = 0;
        st->host_us = st->host_ubatches = 0;
    }
}
