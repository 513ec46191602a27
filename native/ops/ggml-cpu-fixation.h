// foveate's fixation ops on the CPU backend (ggml-cpu-fixation.cpp): the entry points
// ggml-cpu.c dispatches to (patches/0002), as ggml-cpu/ops.h does for ggml's own ops.
#pragma once

#include "ggml.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ggml_compute_params;

void   ggml_compute_forward_fix_select(const struct ggml_compute_params * params, struct ggml_tensor * dst);
void   ggml_compute_forward_fix_attn(const struct ggml_compute_params * params, struct ggml_tensor * dst);
// scratch bytes a FIX_* node needs in the graph plan's work buffer with n_tasks threads
size_t ggml_fix_work_size(const struct ggml_tensor * node, int n_tasks);

#ifdef __cplusplus
}
#endif
