// foveate hook compiled into libllama (declared in include/llama.h by patches/0002).
// Returns a fixed description of the patch series this library was built with, so
// Python can check that the libraries it loaded are foveate's and not stock ones.
#include "llama.h"

#ifndef FOVEATE_PATCH_SERIES
#error "FOVEATE_PATCH_SERIES must be defined by foveate's CMakeLists.txt"
#endif

extern "C" const char * llama_foveate_build_info(void) {
    return "foveate-native=1;patches=" FOVEATE_PATCH_SERIES;
}
