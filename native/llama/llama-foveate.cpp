// foveate's hooks compiled into libllama that are not fixation's: the build-info proof and
// 1-D position gaps (C API in llama-foveate.h; the validator hook in llama-foveate-impl.h).
#include "llama-foveate.h"
#include "llama-foveate-impl.h"

#include "llama-context.h"
#include "llama-impl.h"

#ifndef FOVEATE_PATCH_SERIES
#error "FOVEATE_PATCH_SERIES must be defined by foveate's CMakeLists.txt"
#endif

// A fixed description of the patch series this library was built with, so Python can check
// that the libraries it loaded are foveate's and not stock ones.
extern "C" const char * llama_foveate_build_info(void) {
    return "foveate-native=1;patches=" FOVEATE_PATCH_SERIES;
}

// Merged images of 1-D RoPE models keep their original (gapped) positions, as the RTPrune
// reference does; the batch validator's consecutive rule would reject them (patches/0006).
extern "C" void llama_foveate_allow_position_gaps(struct llama_context * ctx, bool allow) {
    if (ctx) {
        ctx->set_allow_pos_gaps(allow);
    }
}

bool llama_foveate_positions_increase(const llama_batch & batch, llama_seq_id s, llama_pos p0,
                                      llama_pos p_min, size_t n_distinct) {
    // forward jumps are allowed; overlaps with the cache and repeated positions are not
    int32_t n_seq_tokens = 0;
    for (int32_t i = 0; i < batch.n_tokens; ++i) {
        for (int32_t j = 0; j < batch.n_seq_id[i]; ++j) {
            n_seq_tokens += batch.seq_id[i][j] == s;
        }
    }
    if (p_min <= p0 || n_seq_tokens != (int32_t) n_distinct) {
        LLAMA_LOG_ERROR("%s: sequence %d: positions must increase (last stored X = %d, batch starts at Y = %d, "
                        "%d tokens at %d distinct positions)\n", __func__, s, p0, p_min, n_seq_tokens, (int) n_distinct);
        return false;
    }
    return true;
}
