#include "foveate.h"

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama-foveate.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int32_t foveate_abi_version(void) { return FOVEATE_ABI_VERSION; }

const char * foveate_llama_build_info(void) { return llama_foveate_build_info(); }

const char * foveate_backends(void) {
    static char buf[256];
    buf[0] = '\0';
    for (size_t i = 0; i < ggml_backend_reg_count(); i++) {
        const char * name = ggml_backend_reg_name(ggml_backend_reg_get(i));
        if (strlen(buf) + strlen(name) + 2 >= sizeof(buf)) break;
        if (i) strcat(buf, ",");
        strcat(buf, name);
    }
    return buf;
}

// --- per-node profile ---------------------------------------------------------------------------

struct foveate_profile {
    foveate_node_time * v;
    int32_t n, cap;
    double t_ask;   // when the node now computing was asked for
};

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

foveate_profile * foveate_profile_new(void) { return calloc(1, sizeof(foveate_profile)); }

void foveate_profile_free(foveate_profile * p) {
    if (p) {
        free(p->v);
        free(p);
    }
}

int32_t foveate_profile_count(const foveate_profile * p) { return p ? p->n : 0; }

int32_t foveate_profile_get(const foveate_profile * p, int32_t i, foveate_node_time * out) {
    if (!p || i < 0 || i >= p->n || !out) {
        return -1;
    }
    *out = p->v[i];
    return 0;
}

static void shape(int64_t * ne, const struct ggml_tensor * t) {
    for (int d = 0; d < 4; d++) {
        ne[d] = t ? t->ne[d] : 0;
    }
}

static void type_name(char * out, const struct ggml_tensor * t) {
    snprintf(out, 8, "%s", t ? ggml_type_name(t->type) : "");
}

bool foveate_profile_eval(struct ggml_tensor * t, bool ask, void * user_data) {
    foveate_profile * p = (foveate_profile *) user_data;
    if (ask) {   // every node: the scheduler computes it alone, then calls back with ask = false
        p->t_ask = now_us();
        return true;
    }
    const double us = now_us() - p->t_ask;
    if (p->n == p->cap) {
        const int32_t cap = p->cap ? 2 * p->cap : 1024;
        foveate_node_time * v = realloc(p->v, (size_t) cap * sizeof(*v));
        if (!v) {
            return true;   // out of memory: the graph goes on, unrecorded
        }
        p->v = v;
        p->cap = cap;
    }
    foveate_node_time * r = &p->v[p->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->op, sizeof(r->op), "%s", ggml_op_desc(t));
    snprintf(r->name, sizeof(r->name), "%s", t->name);
    type_name(r->type, t);
    type_name(r->type0, t->src[0]);
    type_name(r->type1, t->src[1]);
    shape(r->ne, t);
    shape(r->ne0, t->src[0]);
    shape(r->ne1, t->src[1]);
    shape(r->ne2, t->src[2]);
    r->src0_leaf = t->src[0] && t->src[0]->op == GGML_OP_NONE;
    r->us = us;
    return true;
}

// --- one mul_mat on the CPU backend: its result and its rate ---------------------------------------

// w: m rows of k floats (quantized to `type`), x: n rows of k floats; out (n rows of m floats)
// when not NULL; returns the best of `reps` timed runs after a warm-up, in µs (< 0: failure)
static double run_mul_mat(int32_t type, int32_t k, int32_t m, int32_t n, int32_t threads,
                          int32_t reps, const float * w_src, const float * x_src, float * out) {
    if (type < 0 || type >= GGML_TYPE_COUNT || k <= 0 || m <= 0 || n <= 0 || threads <= 0 ||
        reps <= 0 || k % ggml_blck_size((enum ggml_type) type) != 0 ||
        (ggml_get_type_traits((enum ggml_type) type)->blck_size == 0)) {
        return -1.0;
    }
    struct ggml_init_params ip = { ggml_tensor_overhead() * 8 + ggml_graph_overhead(), NULL, true };
    struct ggml_context * ctx = ggml_init(ip);
    struct ggml_tensor * w = ggml_new_tensor_2d(ctx, (enum ggml_type) type, k, m);
    struct ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, n);
    struct ggml_tensor * y = ggml_mul_mat(ctx, w, x);
    struct ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);
    ggml_backend_t be = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(be, threads);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, be);
    void * wq = malloc(ggml_nbytes(w));
    double best = -1.0;
    if (buf && wq) {
        ggml_quantize_chunk((enum ggml_type) type, w_src, wq, 0, m, k, NULL);
        ggml_backend_tensor_set(w, wq, 0, ggml_nbytes(w));
        ggml_backend_tensor_set(x, x_src, 0, ggml_nbytes(x));
        ggml_backend_graph_compute(be, gf);   // warm-up
        for (int32_t r = 0; r < reps; r++) {
            const double t0 = now_us();
            ggml_backend_graph_compute(be, gf);
            const double dt = now_us() - t0;
            if (best < 0 || dt < best) {
                best = dt;
            }
        }
        if (out) {
            ggml_backend_tensor_get(y, out, 0, ggml_nbytes(y));
        }
    }
    free(wq);
    if (buf) {
        ggml_backend_buffer_free(buf);
    }
    ggml_backend_free(be);
    ggml_free(ctx);
    return best;
}

double foveate_mul_mat_gflops(int32_t type, int32_t k, int32_t m, int32_t n, int32_t threads,
                              int32_t reps) {
    if (k <= 0 || m <= 0 || n <= 0) {
        return -1.0;
    }
    const size_t len = (size_t) k * (size_t) (m > n ? m : n);
    float * src = malloc(sizeof(float) * len);
    if (!src) {
        return -1.0;
    }
    uint32_t s = 12345;
    for (size_t i = 0; i < len; i++) {
        s = s * 1664525u + 1013904223u;
        src[i] = (float) ((int32_t) (s >> 9) - (1 << 22)) / (float) (1 << 22);
    }
    const double us = run_mul_mat(type, k, m, n, threads, reps, src, src, NULL);
    free(src);
    return us > 0 ? 2.0 * k * m * n / (us * 1e3) : -1.0;
}

int32_t foveate_mul_mat(int32_t type, int32_t k, int32_t m, int32_t n, int32_t threads,
                        const float * w, const float * x, float * out) {
    return w && x && out && run_mul_mat(type, k, m, n, threads, 1, w, x, out) > 0 ? 0 : -1;
}
