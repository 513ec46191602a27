// foveate's token merging C API in libmtmd (defined in mtmd-merge-hooks.cpp and
// mtmd-merge.cpp). Declared here, not in mtmd.h, so no patch has to touch mtmd.h for them
// (ctypes binds them by name; C callers include this header).
#pragma once

#include "mtmd.h"

#ifdef __cplusplus
extern "C" {
#endif

// foveate token merging (RTPrune; mtmd-merge.cpp). When on, mtmd_encode_chunk and
// mtmd_encode leave only the kept rows of an image in the output embeddings (learned marker
// rows such as DeepSeek-OCR's newline and view separator are never merged), and
// mtmd_helper_decode_image_chunk decodes those rows at their original positions (M-RoPE
// (t, x, y); 1-D by default, see mtmd_merge_set_1d_positions) with n_past advancing as if
// unmerged. The mtmd_batch_* API then takes one image per batch and returns its merged rows.
// A merged chunk reports its kept rows (mtmd_merge_chunk_kept below).
//   mode 0: off (the default; stock behaviour), 1: keep `keep_ratio` (0, 1] of the content
//   rows, 2: dynamic ratio from token redundancy and the page's text density.
// returns 0, or -1 for bad arguments
MTMD_API int32_t mtmd_merge_set(mtmd_context * ctx, int32_t mode, double keep_ratio);
// dynamic mode (2): keep at least this share of the content rows (0..1; default 0, the
// formula alone). Returns 0, or -1 for bad arguments.
MTMD_API int32_t mtmd_merge_set_auto_floor(mtmd_context * ctx, double floor);
// the last image encoded with merging on: rows before/after, the keep ratio used and its two
// terms (dynamic mode), merge time. Returns 0, or -1 when no image was merged since the last
// encode or mtmd_merge_set.
MTMD_API int32_t mtmd_merge_get_last(mtmd_context * ctx, int32_t * n_before, int32_t * n_after,
                                     double * keep_ratio, double * r_sim, double * r_info, double * ms);
// where mtmd_helper_decode_image_chunk puts a merged image's rows in 1-D RoPE models:
// 0 (default): at their original positions, n_past advancing as if unmerged (the RTPrune
// reference; the helper lets the llama context accept the gaps,
// llama_foveate_allow_position_gaps); 1: at consecutive positions, n_past advancing by the
// kept count. M-RoPE models always keep original positions. Takes effect at the next encode
// (a chunk records its positions when encoded). Returns 0, or -1 for bad arguments.
MTMD_API int32_t mtmd_merge_set_1d_positions(mtmd_context * ctx, int32_t consecutive);
MTMD_API int32_t mtmd_merge_get_1d_positions(mtmd_context * ctx);   // 0 or 1, -1 for NULL
// which content rows a keep ratio keeps: 0 (default): the largest L2 norms (RTPrune);
// 1: the fewest near-duplicates on the page (soft count of cosines near 1: blank paper goes
// first). Returns 0, or -1 for bad arguments.
MTMD_API int32_t mtmd_merge_set_score(mtmd_context * ctx, int32_t score);
MTMD_API int32_t mtmd_merge_get_score(mtmd_context * ctx);          // 0 or 1, -1 for NULL
// the original row ids of its kept rows, ascending (copies up to cap); returns their count or -1
MTMD_API int32_t mtmd_merge_get_kept(mtmd_context * ctx, int32_t * out, int32_t cap);
// an image chunk encoded with merging on holds only its kept rows, and says so:
// mtmd_input_chunk_get_n_tokens is their count, mtmd_image_tokens_get_decoder_pos(i) the
// original position of row i, mtmd_input_chunk_get_n_pos where n_past goes (as if unmerged,
// or by the count with consecutive 1-D positions), until the chunk is encoded again. This
// returns the original ids of those rows (copies up to cap), or -1 for a chunk not merged.
MTMD_API int32_t mtmd_merge_chunk_kept(const mtmd_input_chunk * chunk, int32_t * out, int32_t cap);
// standalone merge of n rows of d floats on the CPU (kind: 0 content, 1 newline, 2 marker;
// pixels: RGB interleaved in [-1, 1], w x h, `patch` px per token side, or NULL). Writes the
// kept rows to out_rows (n*d), their ids to out_keep (n), [ratio, r_sim, r_info] to
// out_terms; score as mtmd_merge_set_score. Returns the kept count, or < 0 on bad arguments.
MTMD_API int32_t mtmd_merge_rows(const float * embd, int32_t n, int32_t d, const uint8_t * kind,
                                 const float * pixels, int32_t w, int32_t h, int32_t patch,
                                 int32_t mode, double keep_ratio, int32_t score, int32_t n_threads,
                                 float * out_rows, int32_t * out_keep, double * out_terms);

// The vision projector's F16 matmul weights as BF16 (clip-weights.cpp), on a CPU backend that
// multiplies BF16 natively (AVX512_BF16; elsewhere nothing changes): converted in place at
// the next encode, activations then rounded to BF16 in those matmuls. on = 0 keeps weights not
// yet converted as they are (conversion is one-way: reload the projector for stock numbers).
// Returns 0, or -1 for a context without a vision projector.
MTMD_API int32_t mtmd_foveate_set_weights_bf16(mtmd_context * ctx, int32_t on);
// 1 when this context's projector runs on a CPU backend that multiplies BF16 natively
MTMD_API int32_t mtmd_foveate_weights_bf16_supported(mtmd_context * ctx);

#ifdef __cplusplus
}
#endif
