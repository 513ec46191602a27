// foveate's merge ops on the CUDA backend (ggml-cuda-merge.cu): the entry points
// ggml-cuda.cu dispatches to (patches/0003).
#pragma once

#include "common.cuh"

void ggml_cuda_ot_sinkhorn(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
void ggml_cuda_scatter_add_rows(ggml_backend_cuda_context & ctx, ggml_tensor * dst);
bool ggml_cuda_merge_supported(const ggml_tensor * op);
