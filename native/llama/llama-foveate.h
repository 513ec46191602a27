// foveate's C API in libllama: defined in llama-foveate.cpp and llama-fixation.cpp, compiled
// into libllama by foveate's CMakeLists.txt. Declared here, not in llama.h, so no patch has
// to touch llama.h for them (ctypes binds them by name; C callers include this header).
#pragma once

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

// Build information of the patched llama.cpp ("foveate-native=1;patches=<series>"): the
// proof that the libllama loaded is foveate's, with every patch compiled in.
LLAMA_API const char * llama_foveate_build_info(void);

// Let this context's batches give 1-D positions that jump forward (still strictly increasing
// per sequence, no repeats), so a merged image keeps its original positions. Off by default
// (stock rule: consecutive). M-RoPE models always allow jumps. mtmd_helper_decode_image_chunk
// turns it on when it decodes a merged image at its original positions and leaves it on: the
// text after the image continues from the unmerged end, so turning it off while such cells
// are cached makes the next decode fail.
LLAMA_API void llama_foveate_allow_position_gaps(struct llama_context * ctx, bool allow);

// --- fixation (llama-fixation.cpp) ------------------------------------------------------------
// During decode, focal layers pick each sequence's most attended image cells and the other
// layers attend to text + those cells only (nothing is evicted).
// ratio: share of the image cells kept per step (0 = off; a budget covering every image cell
// runs the stock graph), k_min: lower bound of that budget, focal: layer indices (n_focal 0 =
// one layer at a third of the depth; on a hybrid model the attention layer nearest it),
// max_tokens: ubatches with more tokens per sequence (prefill) run dense. Returns 0, or < 0 on
// invalid arguments (logged; -6: a focal layer is a recurrent layer of a hybrid model).
LLAMA_API int32_t llama_fixation_set(struct llama_context * ctx, float ratio, int32_t k_min,
                                     const int32_t * focal, int32_t n_focal, int32_t max_tokens);
// focal layers score every R-th step of a sequence (R >= 1); in between they keep the selection
LLAMA_API int32_t llama_fixation_set_refresh(struct llama_context * ctx, int32_t refresh);
// compensation: a fixed sample of this many image cells (0..4096, 0 = off) stands in for the
// unselected ones
LLAMA_API int32_t llama_fixation_set_sample(struct llama_context * ctx, int32_t sample);
// while on, every ubatch runs dense (stock attention; the sequences' selections are forgotten
// as after any dense ubatch): a prompt's short text chunks (the markers between a tiled
// page's image chunks, a short prompt after the image) are prefill, not decode steps, though
// they fit under max_tokens. The engine holds fixation while it prefills a page
LLAMA_API int32_t llama_fixation_hold(struct llama_context * ctx, int32_t on);
// mass budget (0 = off, else (0, 1]): the ratio's budget becomes a ceiling, and each scoring
// step keeps the fewest most attended image cells whose focal-layer attention reaches this share
// of the attention the image cells get (at least k_min): fewer cells where the model is sure
LLAMA_API int32_t llama_fixation_set_mass(struct llama_context * ctx, float mass);
// warm start: also the next `dilation` image cells after each previously selected one
LLAMA_API int32_t llama_fixation_set_dilation(struct llama_context * ctx, int32_t dilation);
// the learned marker rows of an image decoded into seq_id (image newline, view separator,
// BOI/EOI) are at these positions: their cells are tagged (ext.tok =
// LLAMA_FIXATION_MARKER_TOKEN), so fixation treats them as text (always attended, never scored
// or counted as image cells). The tag is the cell's: it moves with seq_add / seq_div, goes with
// seq_rm, is copied with seq_cp and saved in state files. Call it after the image's cells are
// decoded; mtmd_helper_decode_image_chunk calls it for every image chunk
// (native/mtmd/mtmd-merge-hooks.cpp). Creates no fixation state.
LLAMA_API void    llama_fixation_set_markers(struct llama_context * ctx, llama_seq_id seq_id,
                                             const llama_pos * pos, int32_t n);
// image-token ordinals (0 = first image token of the sequence) selected at the sequence's last
// decode step; returns their number (copies at most n_out)
LLAMA_API int32_t llama_fixation_get_last(struct llama_context * ctx, llama_seq_id seq_id,
                                          int32_t * out, int32_t n_out);
// drafts: a sequence's k rows in one ubatch are its next k steps, but rows after the first
// start from the selection made before the ubatch, where one-token steps would start from the
// row before's. The number of leading rows of seq_id's last ubatch that ran exactly as
// one-token steps would have (at least 1; every earlier row chose that same selection again);
// 0 when that ubatch ran dense (stock attention: every row as one-token steps)
LLAMA_API int32_t llama_fixation_rows_exact(struct llama_context * ctx, llama_seq_id seq_id);
// the sequence goes on from row `row` of its last ubatch (the rows after it were rejected and
// their cells removed): its selection warm-starts the next step, the refresh count follows it
LLAMA_API int32_t llama_fixation_keep_row(struct llama_context * ctx, llama_seq_id seq_id,
                                          int32_t row);
// means over the decode rows since the last reset: image cells attended by sparse layers, image
// cells of the sequence; returns the number of focal layers (copied to focal_out)
LLAMA_API int32_t llama_fixation_get_stats(struct llama_context * ctx, double * mean_selected,
                                           double * mean_image, int64_t * n_rows,
                                           int32_t * focal_out, int32_t n_focal_out);
// image cells attended per decode row, mean over every layer, since the last reset
LLAMA_API double  llama_fixation_get_attended(struct llama_context * ctx);
// host time fixation adds per ubatch (planning, its graph inputs, reading the selection
// back), mean in microseconds since the last reset: the CPU work outside the graph
LLAMA_API double  llama_fixation_get_host_us(struct llama_context * ctx);
LLAMA_API void    llama_fixation_reset_stats(struct llama_context * ctx);
// 1 while this context runs fixation's hooks (a plan per ubatch, the read-back after it):
// from llama_fixation_set with a ratio > 0 until one with 0; a context that never turns
// fixation on runs stock's decode with nothing added
LLAMA_API int32_t llama_fixation_active(struct llama_context * ctx);
// test hook: with on, the sparse graph runs even where every budget covers all image cells,
// so ratio 1 attends to every image cell through fixation's ops (checked against the stock
// attention by the tests); off by default
LLAMA_API int32_t llama_fixation_set_force_sparse(struct llama_context * ctx, int32_t on);
// why fixation, though set, does not run in this context ("" when nothing stops it): a
// quantized KV cache on a GPU (the CUDA ops read F16/F32 K/V; logged once)
LLAMA_API const char * llama_fixation_get_off_reason(struct llama_context * ctx);

#ifdef __cplusplus
}
#endif
