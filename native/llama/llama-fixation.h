// foveate fixation inside libllama: decode-time top-k selection of image KV cells.
// Hooked into llama.cpp by patches/0004 (graph input, build_attn, decode, context).
// The algorithm and its invariants: ../shared/design/fixation.md and docs/architecture.md.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

struct ggml_context;
struct ggml_tensor;
struct ggml_cgraph;
struct ggml_backend_sched;
struct llama_ubatch;
struct llama_hparams;
struct llama_cparams;
struct llm_graph_params;
class llama_kv_cache_context;

struct llama_fixation_config {
    bool    enabled    = false;
    float   ratio      = 0.05f;  // share of a sequence's image cells attended per step
    int32_t k_min      = 16;     // ... but at least this many
    std::vector<int32_t> focal;  // focal layers; empty = one layer at a third of the depth
    int32_t max_tokens = 8;      // ubatches with more tokens per sequence (prefill) run dense
    int32_t dilation   = 0;      // warm start: also the next `dilation` image cells (reading
                                 // order) after each cell of the previous selection
    int32_t refresh    = 1;      // R: focal layers score every R-th step of a sequence; on the
                                 // other steps they attend to the previous selection and keep it
    int32_t sample     = 64;     // compensation: a fixed stratified sample of this many image
                                 // cells stands in for the hidden ones (0 = off; docs/architecture.md)
    float   mass       = 0.0f;   // > 0: the budget is a ceiling; a step keeps the fewest best cells
                                 // holding this share of the focal layer's image attention mass
    bool    force_sparse = false; // test hook: the sparse graph even where every budget covers
                                  // all image cells (ratio 1 then runs fixation's ops, not stock's)
};

// a learned marker row's cell (image newline, view separator, BOI/EOI) carries this in its
// ext.tok instead of LLAMA_TOKEN_NULL: it moves, shifts, is copied, saved and freed with the
// cell, and fixation counts it as text (llama_fixation_set_markers)
constexpr int32_t LLAMA_FIXATION_MARKER_TOKEN = -2;

// the C API (llama_fixation_set, ...) is declared in llama-foveate.h

struct llama_fixation_input;

// a sequence's last fixation step: the warm start and the refresh count of its next step
struct llama_fixation_history {
    std::vector<int32_t> cells;   // cells selected at its last step
    std::vector<int32_t> images;  // its image cells at that step (the selection is valid while equal)
    int64_t steps = 0;            // fixation steps since the history began
};

// a sequence's rows in the last fixation ubatch (several when drafts are verified): each
// row's own selection, and how many leading rows ran exactly as one-token steps would have
struct llama_fixation_rows {
    std::vector<std::vector<int32_t>> cells;  // per row: its selection (in selection order)
    std::vector<std::vector<int32_t>> ords;   // per row: the same as reading-order ordinals
    llama_fixation_history before;            // the history the ubatch started from
    int32_t n_exact = 0;                      // leading rows computed as one-token steps would
};

// one per llama_context (owned through llama_context::fixation_owner)
struct llama_fixation_state {
    llama_fixation_config cfg;
    uint64_t epoch = 1;                               // bumped by every llama_fixation_set
    bool     held = false;                            // llama_fixation_hold: every ubatch dense
    std::map<int32_t, llama_fixation_history> history;  // seq -> its last step (forgotten by a dense ubatch)
    std::map<int32_t, std::vector<int32_t>> ordinal;    // seq -> last selection, as image-token ordinals
                                                        // (reading order: by position, then (y, x))
    std::map<int32_t, llama_fixation_rows> rows;        // seq -> its rows in the last sparse ubatch
    std::vector<int32_t> focal_used;                  // focal layers of the last graph
    double   sum_k  = 0.0;                            // stats: image cells selected (layers above focal)
    double   sum_attended = 0.0;                      //        image cells attended, mean over all layers
    double   sum_img = 0.0;                           //        image cells of the sequences
    int64_t  n_rows = 0;
    int64_t  host_us = 0;                             // host time: plans, inputs, read-backs
    int64_t  host_ubatches = 0;                       // ubatches seen since the last reset
    // input of the graph being computed: weak, because a compute that fails or is aborted
    // never reaches llama_fixation_after_compute, and the next ubatch's graph may free it
    std::weak_ptr<llama_fixation_input> active;
    // the KV cache's device cannot run fixation's ops on it (a quantized cache on a CUDA GPU,
    // whose ops read F16/F32 K/V; a backend without the ops): the scheduler would copy every
    // layer's K/V to the CPU each step; fixation stays off (-1: not checked)
    int32_t  kv_unsupported = -1;
    std::string kv_device;                            // the device that refused
    std::string off_reason;                           // llama_fixation_get_off_reason's text
};

// nullptr when fixation does not apply to this ubatch (off, prefill, no image cells, or
// every budget covers all image cells: the stock graph is then built unchanged)
std::shared_ptr<llama_fixation_input> llama_fixation_make_input(
        ggml_context * ctx0, const llama_ubatch & ubatch, const llama_hparams & hparams,
        const llama_cparams & cparams, const llama_kv_cache_context * mctx, ggml_tensor * kq_mask);

void llama_fixation_set_input(llama_fixation_input & fi, const llama_kv_cache_context * mctx,
                              const llama_ubatch * ubatch);

// false when the graph must be rebuilt (config changed, or the selection shapes moved); mctx:
// the attention cache's context (a hybrid memory's attention part)
bool llama_fixation_can_reuse(const llama_fixation_input * fi, const llm_graph_params & params,
                              const llama_kv_cache_context * mctx);

// attention of layer il: the sparse result [Dv*H, n_tokens], the fused focal layer's
// (attention + scores + top-k, KV cache in host memory), or nullptr to run the stock attention
// (a focal layer on a GPU, which then adds fix_select, and unsupported layers)
ggml_tensor * llama_fixation_build_attn(
        ggml_context * ctx0, struct ggml_cgraph * gf, llama_fixation_input & fi, ggml_tensor * q, ggml_tensor * k,
        ggml_tensor * v, ggml_tensor * kq_mask, ggml_tensor * kq_b, ggml_tensor * sinks,
        float kq_scale, int il);

// after a decode ubatch ran: read the selection back (per sequence) for the next step
void llama_fixation_after_compute(void * state, ggml_backend_sched * sched, const llama_ubatch & ubatch);

// a state was loaded into sequence seq (< 0: every sequence): its cells may hold another page
// laid out like the last one, so its last selection must not warm-start or be kept
void llama_fixation_forget(void * state, int32_t seq);
