// What foveate's hooks inside libllama call (C++, internal; the C API is llama-foveate.h).
#pragma once

#include "llama.h"

#include <cstddef>

// The batch validator's rule while a context allows 1-D position gaps (patches/0006,
// llama_foveate_allow_position_gaps): sequence `s` of `batch` must start after its last stored
// position p0 (p_min > p0) and give each of its tokens a distinct position (n_distinct of
// them); forward jumps are allowed. Logs the reason and returns false otherwise.
bool llama_foveate_positions_increase(const llama_batch & batch, llama_seq_id s, llama_pos p0,
                                      llama_pos p_min, size_t n_distinct);
