// How mtmd_helper_decode_image_chunk decodes a chunk whose rows foveate merged (patches/0009;
// defined in mtmd-merge-hooks.cpp). The chunk itself says how many rows it holds and their
// positions (mtmd_input_chunk_get_n_tokens, mtmd_image_tokens_get_decoder_pos, _get_n_pos:
// mtmd-merge.h, foveate_chunk_rows), so the stock helper code mostly decodes it as it is; what
// is left is 1-D RoPE's original positions and the marker rows. For a chunk that was not
// merged every answer is the stock one.
#pragma once

#include "mtmd.h"

#include <vector>

struct foveate_decode_rows {
    int32_t         n_kept = -1;        // rows left by the merge; -1: not merged (stock path)
    const int32_t * kept = nullptr;     // their original row ids, ascending
    int32_t         n_orig = 0;         // the chunk's rows before merging
    bool            consecutive = false;  // 1-D RoPE model asked to renumber the kept rows

    // 1-D RoPE: the kept rows at their original positions n_past + id (the context is told to
    // accept the gaps); consecutive or unmerged: pos is left as set
    void place_1d(llama_pos * pos, llama_pos n_past, llama_context * lctx) const;
};

// fixation: tell llama (llama_fixation_set_markers) at which positions the decoded rows of
// `chunk` (`rows` of embd, d floats each; pos: their first position stream) are learned
// markers, so they are attended as text and never scored; called after every image chunk
void foveate_mark_marker_rows(mtmd_context * ctx, llama_context * lctx, const mtmd_input_chunk * chunk,
                              const struct foveate_decode_rows & rows, const float * embd, int64_t d,
                              const llama_pos * pos, llama_seq_id seq);

// what the chunk's last encode left (its record; n_kept -1 when not merged)
foveate_decode_rows foveate_merge_decode_rows(const mtmd_input_chunk * chunk);
