// foveate's own C API (libfoveate). New entry points are plain extern "C" functions,
// bound with ctypes in python/foveate/native/bindings.py; no structs mirrored by
// llama-cpp-python are ever changed.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FOVEATE_ABI_VERSION 1

// ABI version of this library; Python refuses to run against a different one.
int32_t foveate_abi_version(void);

// Patch-series description reported by the libllama this library is linked to.
const char * foveate_llama_build_info(void);

// Names of the ggml backends compiled in, comma separated (e.g. "CPU" or "CUDA,CPU").
const char * foveate_backends(void);

#ifdef __cplusplus
}
#endif
