// Tests of foveate's merge ops (ot_sinkhorn, scatter_add_rows) against float64 references
// on random inputs; called from foveate-test-ops' main for every backend it tests.
#include "ggml.h"
#include "ggml-merge.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

std::mt19937 mrng(4321);

double urand_d(double a, double b) { return std::uniform_real_distribution<double>(a, b)(mrng); }

// log-domain Sinkhorn with a dustbin, as ggml-merge.c specifies it, in float64
std::vector<double> ref_sinkhorn(const std::vector<float> & S, int64_t P, int64_t K, double z, int n_iter) {
    const double norm = -std::log((double) (K + P));
    auto Z = [&](int64_t i, int64_t j) { return (i < K && j < P) ? (double) S[i * P + j] : z; };
    std::vector<double> u(K + 1, 0.0), v(P + 1, 0.0);
    for (int it = 0; it < n_iter; it++) {
        for (int64_t i = 0; i <= K; i++) {
            double m = -INFINITY, s = 0;
            for (int64_t j = 0; j <= P; j++) m = std::max(m, Z(i, j) + v[j]);
            for (int64_t j = 0; j <= P; j++) s += std::exp(Z(i, j) + v[j] - m);
            u[i] = (i < K ? norm : std::log((double) P) + norm) - (m + std::log(s));
        }
        for (int64_t j = 0; j <= P; j++) {
            double m = -INFINITY, s = 0;
            for (int64_t i = 0; i <= K; i++) m = std::max(m, Z(i, j) + u[i]);
            for (int64_t i = 0; i <= K; i++) s += std::exp(Z(i, j) + u[i] - m);
            v[j] = (j < P ? norm : std::log((double) K) + norm) - (m + std::log(s));
        }
    }
    std::vector<double> T(P * K);
    for (int64_t i = 0; i < K; i++)
        for (int64_t j = 0; j < P; j++) T[i * P + j] = std::exp(Z(i, j) + u[i] + v[j] - norm);
    return T;
}

struct OneGraph {
    ggml_context * ctx = nullptr;
    ggml_backend_buffer_t buf = nullptr;
    OneGraph() {
        ggml_init_params p = { 16 * ggml_tensor_overhead() + 3 * ggml_graph_overhead(), nullptr, true };
        ctx = ggml_init(p);
    }
    ~OneGraph() { if (buf) ggml_backend_buffer_free(buf); ggml_free(ctx); }
    // allocate, let `fill` upload, compute `out`; false if the backend cannot run it
    template <class F> bool run(ggml_backend_t be, ggml_tensor * out, F fill) {
        if (!ggml_backend_supports_op(be, out)) return false;
        ggml_cgraph * gf = ggml_new_graph(ctx);
        ggml_build_forward_expand(gf, out);
        buf = ggml_backend_alloc_ctx_tensors(ctx, be);
        fill();
        return ggml_backend_graph_compute(be, gf) == GGML_STATUS_SUCCESS;
    }
};

// returns "" if unsupported, else a result line; counts failures
std::string sinkhorn_case(ggml_backend_t be, int64_t P, int64_t K, int n_iter, double lo, double hi, int & failures) {
    std::vector<float> S(P * K);
    for (auto & x : S) x = (float) urand_d(lo, hi);
    OneGraph g;
    ggml_tensor * s = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, P, K);
    ggml_tensor * t = ggml_ot_sinkhorn(g.ctx, s, 0.2f, n_iter);
    if (!g.run(be, t, [&] { ggml_backend_tensor_set(s, S.data(), 0, ggml_nbytes(s)); })) return "";
    std::vector<float> got(P * K);
    ggml_backend_tensor_get(t, got.data(), 0, ggml_nbytes(t));
    const std::vector<double> ref = ref_sinkhorn(S, P, K, 0.2, n_iter);
    double err = 0, top = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        err = std::max(err, std::fabs(got[i] - ref[i]));
        top = std::max(top, std::fabs(ref[i]));
    }
    const bool ok = err <= 2e-5 * std::max(top, 1e-30) + 1e-12 && std::isfinite(err);
    failures += !ok;
    char line[160];
    snprintf(line, sizeof line, "P=%lld K=%lld iters=%d: max err %.2e (max %.3g) %s",
             (long long) P, (long long) K, n_iter, err, top, ok ? "OK" : "FAIL");
    return line;
}

std::string scatter_case(ggml_backend_t be, int64_t d, int64_t N, int64_t n, int & failures) {
    std::vector<float> a(d * N), b(d * n);
    std::vector<int32_t> idx(n);
    for (auto & x : a) x = (float) urand_d(-1, 1);
    for (auto & x : b) x = (float) urand_d(-1, 1);
    for (auto & x : idx) {
        const double r = urand_d(0, 1);
        x = r < 0.1 ? -1 : r < 0.15 ? (int32_t) N : (int32_t) urand_d(0, (double) N / 3);  // repeats + skipped entries
    }
    OneGraph g;
    ggml_tensor * ta = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, d, N);
    ggml_tensor * ti = ggml_new_tensor_1d(g.ctx, GGML_TYPE_I32, n);
    ggml_tensor * tb = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, d, n);
    ggml_tensor * out = ggml_scatter_add_rows(g.ctx, ta, ti, tb);
    if (!g.run(be, out, [&] {
            ggml_backend_tensor_set(ta, a.data(), 0, ggml_nbytes(ta));
            ggml_backend_tensor_set(ti, idx.data(), 0, ggml_nbytes(ti));
            ggml_backend_tensor_set(tb, b.data(), 0, ggml_nbytes(tb));
        })) return "";
    std::vector<float> got(d * N);
    ggml_backend_tensor_get(out, got.data(), 0, ggml_nbytes(out));
    std::vector<double> ref(a.begin(), a.end());
    for (int64_t i = 0; i < n; i++)
        if (idx[i] >= 0 && idx[i] < N)
            for (int64_t e = 0; e < d; e++) ref[idx[i] * d + e] += b[i * d + e];
    double err = 0;
    for (size_t i = 0; i < ref.size(); i++) err = std::max(err, std::fabs(got[i] - ref[i]));
    const bool ok = err <= 1e-5;
    failures += !ok;
    char line[160];
    snprintf(line, sizeof line, "d=%lld N=%lld n=%lld: max err %.2e %s", (long long) d, (long long) N, (long long) n,
             err, ok ? "OK" : "FAIL");
    return line;
}

}  // namespace

int run_merge_op_tests(ggml_backend_t be, int & failures) {
    int ran = 0;
    auto report = [&](const char * op, const std::string & r) {
        if (r.empty()) { printf("  %-10s not supported, skipped\n", op); return; }
        ran++;
        printf("  %-10s %s\n", op, r.c_str());
    };
    // shapes: DeepSeek-OCR Large at 84% (336 kept, 64 dropped), the reading model (322/62),
    // degenerate ones, and a cosine range of [-1, 1]
    report("sinkhorn", sinkhorn_case(be, 64, 336, 100, -0.2, 0.9, failures));
    report("sinkhorn", sinkhorn_case(be, 62, 322, 100, -1.0, 1.0, failures));
    report("sinkhorn", sinkhorn_case(be, 300, 17, 100, -1.0, 1.0, failures));
    report("sinkhorn", sinkhorn_case(be, 1, 1, 100, -1.0, 1.0, failures));
    report("sinkhorn", sinkhorn_case(be, 5, 3, 0, -1.0, 1.0, failures));
    report("sinkhorn", sinkhorn_case(be, 185, 971, 7, -0.2, 0.9, failures));
    report("scatter", scatter_case(be, 1280, 50, 30, failures));
    report("scatter", scatter_case(be, 7, 300, 1000, failures));
    report("scatter", scatter_case(be, 256, 10, 0 + 1, failures));
    return ran;
}

double time_graph(ggml_backend_t be, ggml_cgraph * gf, int reps);  // test-fixation-ops.cpp

// Timing of the merge ops at OCR shapes (a benchmark: `foveate-test-ops -b CPU --perf`).
int run_merge_op_perf(ggml_backend_t be) {
    printf("\nmerge ops, ms (median of 5): ot_sinkhorn (100 iterations, dustbin) and scatter_add_rows\n");
    printf("| image | kept K | dropped P | sinkhorn ms | G exp/s | scatter_add d x K ms |\n|---|---|---|---|---|---|\n");
    struct Shape { const char * name; int64_t K, P, d; };
    for (const Shape & s : {Shape{"DeepSeek-OCR Large 0.84", 336, 64, 1280}, Shape{"Gundam 9 tiles 0.84", 971, 185, 1280},
                            Shape{"Qwen2.5-VL 1024 tok 0.84", 860, 164, 2048}, Shape{"Qwen2.5-VL 4096 tok 0.84", 3440, 656, 2048}}) {
        OneGraph g;
        ggml_tensor * sc = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, s.P, s.K);
        ggml_tensor * t  = ggml_ot_sinkhorn(g.ctx, sc, 0.2f, 100);
        ggml_tensor * a  = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, s.d, s.K + s.P);
        ggml_tensor * ix = ggml_new_tensor_1d(g.ctx, GGML_TYPE_I32, s.K);
        ggml_tensor * b  = ggml_new_tensor_2d(g.ctx, GGML_TYPE_F32, s.d, s.K);
        ggml_tensor * sa = ggml_scatter_add_rows(g.ctx, a, ix, b);
        if (!ggml_backend_supports_op(be, t) || !ggml_backend_supports_op(be, sa)) return 77;
        ggml_cgraph * g1 = ggml_new_graph(g.ctx); ggml_build_forward_expand(g1, t);
        ggml_cgraph * g2 = ggml_new_graph(g.ctx); ggml_build_forward_expand(g2, sa);
        g.buf = ggml_backend_alloc_ctx_tensors(g.ctx, be);
        std::vector<float> x(s.K * s.P);
        for (auto & e : x) e = (float) urand_d(-0.2, 0.9);
        ggml_backend_tensor_set(sc, x.data(), 0, ggml_nbytes(sc));
        std::vector<int32_t> ids(s.K);
        for (int64_t i = 0; i < s.K; i++) ids[i] = (int32_t) i;
        ggml_backend_tensor_set(ix, ids.data(), 0, ggml_nbytes(ix));
        const double ts = time_graph(be, g1, 5), tsa = time_graph(be, g2, 5);
        printf("| %s | %lld | %lld | %.2f | %.2f | %.3f |\n", s.name, (long long) s.K, (long long) s.P, ts,
               2.0 * 100 * (s.K + 1) * (s.P + 1) / ts / 1e6, tsa);
    }
    return 0;
}
