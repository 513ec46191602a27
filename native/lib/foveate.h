// foveate's own C API (libfoveate). New entry points are plain extern "C" functions,
// bound with ctypes in python/foveate/native/bindings.py; no structs mirrored by
// llama-cpp-python are ever changed.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FOVEATE_ABI_VERSION 2

// ABI version of this library; Python refuses to run against a different one.
int32_t foveate_abi_version(void);

// Patch-series description reported by the libllama this library is linked to.
const char * foveate_llama_build_info(void);

// Names of the ggml backends compiled in, comma separated (e.g. "CPU" or "CUDA,CPU").
const char * foveate_backends(void);

// --- per-node profile of a ggml graph (the vision encoder's: instruments/encode_profile.py) ---
// foveate_profile_eval is a ggml_backend_sched eval callback (mtmd_context_params.cb_eval,
// user data: a foveate_profile): it asks to see every node, so the scheduler computes the
// graph one node at a time, and records each node's op, types, shapes and wall time.
struct ggml_tensor;
typedef struct foveate_profile foveate_profile;

typedef struct {
    char    op[32];       // ggml_op_desc: the op, or the unary / glu op's name
    char    name[64];     // the node's name (e.g. "attn_out-3")
    char    type[8], type0[8], type1[8];   // ggml type names of the node and src[0], src[1]
    int64_t ne[4], ne0[4], ne1[4], ne2[4];  // shapes of the node, src[0], src[1], src[2]
    int32_t src0_leaf;    // src[0] is a leaf (a weight or an input), not computed in the graph
    double  us;           // wall time of its compute
} foveate_node_time;

foveate_profile * foveate_profile_new(void);
void    foveate_profile_free(foveate_profile * p);
int32_t foveate_profile_count(const foveate_profile * p);
// copies node i's record; 0, or -1 when i is out of range
int32_t foveate_profile_get(const foveate_profile * p, int32_t i, foveate_node_time * out);
bool    foveate_profile_eval(struct ggml_tensor * t, bool ask, void * user_data);

// GFLOP/s of one ggml mul_mat on the CPU backend: a [k x m] weight of ggml type `type` (random,
// in the backend's plain buffer, as clip allocates its weights) times [k x n] F32 activations,
// `threads` threads, the best of `reps` runs after a warm-up; < 0 on failure
double foveate_mul_mat_gflops(int32_t type, int32_t k, int32_t m, int32_t n, int32_t threads,
                              int32_t reps);

// the same mul_mat on given data: w (m rows of k floats, stored as `type`) times x (n rows of
// k floats) into out (n rows of m floats), as ggml computes it; 0, or -1 on failure
int32_t foveate_mul_mat(int32_t type, int32_t k, int32_t m, int32_t n, int32_t threads,
                        const float * w, const float * x, float * out);

#ifdef __cplusplus
}
#endif
