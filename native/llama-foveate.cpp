// foveate hooks compiled into libllama (declared in include/llama.h by patches/0002, 0008).
#include "llama.h"
#include "llama-context.h"

#ifndef FOVEATE_PATCH_SERIES
#error "FOVEATE_PATCH_SERIES must be defined by foveate's CMakeLists.txt"
#endif

// A fixed description of the patch series this library was built with, so Python can check
// that the libraries it loaded are foveate's and not stock ones.
extern "C" const char * llama_foveate_build_info(void) {
    return "foveate-native=1;patches=" FOVEATE_PATCH_SERIES;
}

// Merged images of 1-D RoPE models keep their original (gapped) positions, as the RTPrune
// reference does; the batch validator's consecutive rule would reject them (patches/0008).
extern "C" void llama_foveate_allow_position_gaps(struct llama_context * ctx, bool allow) {
    if (ctx) {
        ctx->set_allow_pos_gaps(allow);
    }
}
