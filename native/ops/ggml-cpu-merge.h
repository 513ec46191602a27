// foveate's merge ops on the CPU backend (ggml-cpu-merge.cpp): the entry points ggml-cpu.c
// dispatches to (patches/0003).
#pragma once

#include "ggml.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ggml_compute_params;

void   ggml_compute_forward_ot_sinkhorn(const struct ggml_compute_params * params, struct ggml_tensor * dst);
void   ggml_compute_forward_scatter_add_rows(const struct ggml_compute_params * params, struct ggml_tensor * dst);
// scratch bytes an OT_SINKHORN / SCATTER_ADD_ROWS node needs in the plan's work buffer
size_t ggml_merge_work_size(const struct ggml_tensor * node, int n_tasks);

#ifdef __cplusplus
}
#endif
