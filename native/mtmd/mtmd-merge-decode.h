// How mtmd_helper_decode_image_chunk decodes a chunk whose rows foveate merged: which rows,
// at which positions, and where n_past goes after it (patches/0009; defined in
// mtmd-merge-hooks.cpp). For a chunk that was not merged every answer is the stock one.
#pragma once

#include "mtmd.h"

#include <vector>

struct foveate_decode_rows {
    int32_t         n_kept = -1;        // rows left by the merge; -1: not merged (stock path)
    const int32_t * kept = nullptr;     // their original row ids, ascending
    bool            consecutive = false;  // 1-D RoPE model asked to renumber the kept rows

    // rows to decode, given the chunk's own token count
    int32_t n_tokens(int32_t n_chunk_tokens) const { return n_kept >= 0 ? n_kept : n_chunk_tokens; }
    // n_past after the chunk: as if unmerged (original positions), or by the kept count
    llama_pos n_past_after(llama_pos n_past, llama_pos n_chunk_pos) const {
        return n_past + (consecutive ? n_kept : n_chunk_pos);
    }
    // M-RoPE: the kept rows' (t, x, y) out of the whole image's
    void select_mrope(std::vector<mtmd_decoder_pos> & rel_pos) const;
    // 1-D RoPE: the kept rows at their original positions n_past + id (the context is told to
    // accept the gaps); consecutive or unmerged: pos is left as set
    void place_1d(llama_pos * pos, llama_pos n_past, llama_context * lctx) const;
};

// fixation: tell llama (llama_fixation_set_markers) at which positions the decoded rows of
// `chunk` (`rows` of embd, d floats each; pos: their first position stream) are learned
// markers, so they are attended as text and never scored; called after every image chunk
void foveate_mark_marker_rows(mtmd_context * ctx, llama_context * lctx, const mtmd_input_chunk * chunk,
                              const struct foveate_decode_rows & rows, const float * embd, int64_t d,
                              const llama_pos * pos, llama_pos n_past, llama_seq_id seq);

// what to decode for `chunk` whose encoded rows are `embd` (mtmd_get_output_embd or a batch's)
foveate_decode_rows foveate_merge_decode_rows(mtmd_context * ctx, const mtmd_input_chunk * chunk,
                                              const float * embd);
