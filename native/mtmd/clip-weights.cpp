// foveate: the projector's F16 matmul weights as BF16 on a CPU that multiplies BF16 natively
// (AVX512_BF16: vdpbf16ps does two multiply-adds per lane where F16 weights are converted to
// F32 first). Hooked by patches/0012: clip calls foveate_clip_graph_built with each encode
// graph before it is allocated; mtmd_foveate_set_weights_bf16 (mtmd-foveate.h) turns it on.
//
// Only weights that the graph multiplies (MUL_MAT's src0, a leaf in the weight buffer, 2-D)
// change: F16 and BF16 are both 2 bytes, so each converts in place and keeps its strides; the
// graph built from then on reads BF16 (ggml-cpu multiplies BF16 x BF16 with the activations
// rounded to BF16). Conversions are one-way: turning it off takes effect when the projector is
// loaded again.
#include "clip.h"
#include "mtmd-foveate.h"

#include "ggml.h"
#include "ggml-backend.h"

#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <vector>

struct clip_ctx * mtmd_foveate_vision_clip(mtmd_context * ctx);   // patches/0012

namespace {

std::mutex mu;
std::set<const clip_ctx *> bf16_on;   // projectors whose matmul weights go BF16

// the CPU backend multiplies BF16 natively (its feature list names AVX512_BF16)
bool cpu_has_bf16_dot(ggml_backend_t be) {
    ggml_backend_dev_t dev = ggml_backend_get_device(be);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (!reg || ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU) {
        return false;
    }
    auto get = (ggml_backend_get_features_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features");
    if (!get) {
        return false;
    }
    for (ggml_backend_feature * f = get(reg); f && f->name; f++) {
        if (strcmp(f->name, "AVX512_BF16") == 0 && strcmp(f->value, "1") == 0) {
            return true;
        }
    }
    return false;
}

void to_bf16_in_place(ggml_tensor * w) {
    const int64_t n = ggml_nelements(w);
    std::vector<ggml_fp16_t> h(n);
    ggml_backend_tensor_get(w, h.data(), 0, n * sizeof(ggml_fp16_t));
    std::vector<ggml_bf16_t> b(n);
    for (int64_t i = 0; i < n; i++) {
        b[i] = ggml_fp32_to_bf16(ggml_fp16_to_fp32(h[i]));
    }
    w->type = GGML_TYPE_BF16;   // same element size: ne and nb stay
    ggml_backend_tensor_set(w, b.data(), 0, n * sizeof(ggml_bf16_t));
}

} // namespace

void foveate_clip_graph_built(clip_ctx * ctx, ggml_cgraph * gf) {
    {
        std::lock_guard<std::mutex> lock(mu);
        if (!bf16_on.count(ctx)) {
            return;
        }
    }
    ggml_backend_t main = nullptr, cpu = nullptr;
    clip_foveate_backends(ctx, &main, &cpu);
    if (!main || main != cpu || !cpu_has_bf16_dot(main)) {
        return;
    }
    for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
        ggml_tensor * node = ggml_graph_node(gf, i);
        ggml_tensor * w = node->src[0];
        if (node->op != GGML_OP_MUL_MAT || !w || w->op != GGML_OP_NONE || w->type != GGML_TYPE_F16 ||
            w->ne[2] != 1 || w->ne[3] != 1 || !w->buffer ||
            ggml_backend_buffer_get_usage(w->buffer) != GGML_BACKEND_BUFFER_USAGE_WEIGHTS) {
            continue;
        }
        to_bf16_in_place(w);
    }
}

void foveate_clip_forget(const clip_ctx * ctx) {
    std::lock_guard<std::mutex> lock(mu);
    bf16_on.erase(ctx);
}

extern "C" int32_t mtmd_foveate_set_weights_bf16(mtmd_context * ctx, int32_t on) {
    clip_ctx * clip = ctx ? mtmd_foveate_vision_clip(ctx) : nullptr;
    if (!clip) {
        return -1;
    }
    std::lock_guard<std::mutex> lock(mu);
    if (on) {
        bf16_on.insert(clip);
    } else {
        bf16_on.erase(clip);
    }
    return 0;
}

extern "C" int32_t mtmd_foveate_weights_bf16_supported(mtmd_context * ctx) {
    clip_ctx * clip = ctx ? mtmd_foveate_vision_clip(ctx) : nullptr;
    if (!clip) {
        return 0;
    }
    ggml_backend_t main = nullptr, cpu = nullptr;
    clip_foveate_backends(clip, &main, &cpu);
    return main && main == cpu && cpu_has_bf16_dot(main) ? 1 : 0;
}
