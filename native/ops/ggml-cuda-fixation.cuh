// foveate's fixation ops on the CUDA backend (ggml-cuda-fixation.cu): the entry points
// ggml-cuda.cu dispatches to (patches/0002), as ggml-cuda/top-k.cuh does for top-k.
#pragma once

#include "common.cuh"

void ggml_cuda_fix_select(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
void ggml_cuda_fix_attn(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
bool ggml_cuda_fix_supported(int device, const ggml_tensor * op);
