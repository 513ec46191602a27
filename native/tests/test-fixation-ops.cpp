// Tests of foveate's fixation ops (and, via test-merge-ops.cpp, its merge ops) against float64 references on random inputs, on every
// backend this build has (CPU always; CUDA when built with it and a GPU is present).
// Also checks fix_attn listing every cell against ggml_flash_attn_ext on the same backend.
//   foveate-test-ops [-b CPU|CUDA0|...]   exit code 0 = all passed, 77 = backend missing
//   foveate-test-ops -b CPU --perf [threads]   attention timing table (a benchmark, not a test)
#include "ggml.h"
#include "ggml-fixation.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

int run_merge_op_tests(ggml_backend_t be, int & failures);  // test-merge-ops.cpp
int run_merge_op_perf(ggml_backend_t be);

// median ms of `reps` computes after 2 warm-up runs (shared with test-merge-ops.cpp)
double time_graph(ggml_backend_t be, ggml_cgraph * gf, int reps) {
    std::vector<double> t;
    for (int i = 0; i < reps + 2; ++i) {
        const int64_t t0 = ggml_time_us();
        ggml_backend_graph_compute(be, gf);
        ggml_backend_synchronize(be);
        if (i >= 2) t.push_back((ggml_time_us() - t0) / 1000.0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

namespace {

// the mass budget's case: low enough that rows with a large ceiling stop well below it
constexpr double  MASS = 0.3;
constexpr int64_t MASS_K_MIN = 2;
int64_t mass_cut_rows = 0;   // rows where the rule kept fewer than the ceiling and more than k_min

struct Case {
    int64_t D, Dv, T, H, Hkv, S, N;
    ggml_type kt, vt, mt;
    bool v_trans;
    // CUDA: fix_select / fix_attn_scored take one row per pass (their logits scratch bound,
    // FOVEATE_FIX_LOGITS_MAX, shrunk); the CPU ignores it
    bool one_row_per_pass = false;
};

struct Inputs {
    std::vector<float> q, k, v, mask;              // host f32 copies (k/v after type rounding)
    std::vector<int32_t> img, budget, idx_a, idx_b, idx_c, pool;  // idx_c / pool: the sample
    int64_t n_img, na, nb, nc = 0;
};

std::mt19937 rng(1234);

float urand(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng); }

// round-trip through the tensor type so the reference sees the values the kernel sees
std::vector<float> roundtrip(const std::vector<float> & x, ggml_type t, int64_t row) {
    if (t == GGML_TYPE_F32) {
        return x;
    }
    std::vector<uint8_t> buf(ggml_row_size(t, row) * (x.size() / row));
    ggml_quantize_chunk(t, x.data(), buf.data(), 0, x.size() / row, row, nullptr);
    std::vector<float> out(x.size());
    ggml_get_type_traits(t)->to_float(buf.data(), out.data(), x.size());
    return out;
}

void set_tensor(ggml_tensor * t, const std::vector<float> & x) {
    if (t->type == GGML_TYPE_F32) {
        ggml_backend_tensor_set(t, x.data(), 0, x.size() * 4);
        return;
    }
    const int64_t row = t->ne[0];
    std::vector<uint8_t> buf(ggml_nbytes(t));
    ggml_quantize_chunk(t->type, x.data(), buf.data(), 0, x.size() / row, row, nullptr);
    ggml_backend_tensor_set(t, buf.data(), 0, buf.size());
}

Inputs make_inputs(const Case & c, int64_t n_img, bool all_lists, bool sample) {
    Inputs in;
    in.q.resize(c.D * c.T * c.H * c.S);
    for (auto & x : in.q) x = urand(-1, 1);
    std::vector<float> k(c.D * c.N * c.Hkv * c.S), v(c.Dv * c.N * c.Hkv * c.S);
    for (auto & x : k) x = urand(-1, 1);
    for (auto & x : v) x = urand(-1, 1);
    in.k = roundtrip(k, c.kt, c.D);
    in.v = roundtrip(v, c.vt, c.v_trans ? c.N : c.Dv);
    // mask: causal-like prefix per row plus random holes (other sequences)
    in.mask.assign(c.N * c.T * c.S, 0.0f);
    for (int64_t s = 0; s < c.S; ++s)
        for (int64_t t = 0; t < c.T; ++t)
            for (int64_t i = 0; i < c.N; ++i) {
                const bool hidden = i > c.N - c.T + t || urand(0, 1) < 0.1f;
                in.mask[(s * c.T + t) * c.N + i] = hidden ? -INFINITY : urand(-0.5f, 0.0f);
            }
    if (c.mt == GGML_TYPE_F16) in.mask = roundtrip(in.mask, GGML_TYPE_F16, c.N);
    // image cells: a contiguous block (as a page is) minus nothing; lists per row
    in.n_img = n_img;
    const int64_t img0 = std::min<int64_t>(7, c.N - n_img);
    in.img.assign(n_img * c.T * c.S, -1);
    in.budget.assign(c.T * c.S, 0);
    for (int64_t r = 0; r < c.T * c.S; ++r) {
        int64_t n = r % 3 == 2 ? n_img - 3 : n_img;  // some rows shorter, -1 padded
        for (int64_t i = 0; i < n; ++i) in.img[r * n_img + i] = (int32_t) (img0 + i);
        std::shuffle(in.img.begin() + r * n_img, in.img.begin() + r * n_img + n, rng);
        // -1: a row that is not refreshed (its list is copied, not scored)
        const int32_t budgets[] = {0, 1, (int32_t) (n_img / 20 + 1), (int32_t) n_img / 3, (int32_t) n_img + 5, -1};
        in.budget[r] = budgets[(r + n_img) % 6];
        // a not-refreshed list holding an id past the cache (a stale selection): skipped
        if (in.budget[r] < 0 && n > 1) in.img[r * n_img + 1] = (int32_t) (c.N + 3);
    }
    // attention lists: text cells (not image) in idx_a, a random image subset in idx_b
    in.na = c.N;
    in.nb = all_lists ? n_img : n_img / 4 + 1;
    in.idx_a.assign(in.na * c.T * c.S, -1);
    in.idx_b.assign(in.nb * c.T * c.S, -1);
    for (int64_t r = 0; r < c.T * c.S; ++r) {
        int64_t j = 0;
        for (int64_t i = 0; i < c.N; ++i)
            if (i < img0 || i >= img0 + n_img) in.idx_a[r * in.na + j++] = (int32_t) i;
        std::vector<int32_t> im(n_img);
        for (int64_t i = 0; i < n_img; ++i) im[i] = (int32_t) (img0 + i);
        if (!all_lists) std::shuffle(im.begin(), im.end(), rng);
        for (int64_t i = 0; i < in.nb && i < n_img; ++i) in.idx_b[r * in.nb + i] = im[i];
    }
    if (!sample) return in;
    // the sample needs the selection ascending (then -1): a shorter sorted idx_b, and a sample
    // of image cells at a stride (some selected, one -1 entry), pool sizes per row including
    // one too small for any hidden cell (the sample then stays out)
    in.nc = 12;
    in.idx_c.assign(in.nc * c.T * c.S, -1);
    in.pool.assign(c.T * c.S, 0);
    for (int64_t r = 0; r < c.T * c.S; ++r) {
        int32_t * b = &in.idx_b[r * in.nb];
        const int64_t n_sel = std::max<int64_t>(1, in.nb - 1 - r % 3);
        std::fill(b + n_sel, b + in.nb, -1);
        std::sort(b, b + n_sel);
        for (int64_t j = 0; j + 1 < in.nc; ++j)
            in.idx_c[r * in.nc + j] = j % 4 == 3 || r % 5 == 4  // every 5th row: all selected (m = 0)
                ? b[j % n_sel] : (int32_t) (img0 + (j * n_img) / in.nc + n_img / (2 * in.nc));
        if (r % 2 == 0) in.idx_c[r * in.nc + in.nc - 2] = (int32_t) (c.N + 2);  // past the cache: skipped
        in.pool[r] = r % 4 == 3 ? 1 : (int32_t) (n_img - r % 2);
    }
    return in;
}

// float64 references -------------------------------------------------------------------------
double dot_qk(const Case & c, const Inputs & in, int64_t t, int64_t h, int64_t s, int64_t cell) {
    const int64_t g = h / (c.H / c.Hkv);
    double d = 0;
    for (int64_t i = 0; i < c.D; ++i)
        d += (double) in.q[((s * c.H + h) * c.T + t) * c.D + i] * in.k[((s * c.Hkv + g) * c.N + cell) * c.D + i];
    return d;
}

double v_at(const Case & c, const Inputs & in, int64_t j, int64_t cell, int64_t g, int64_t s) {
    // host layout of v: [Dv, N] per (g, s), or [N, Dv] when transposed
    return c.v_trans ? in.v[((s * c.Hkv + g) * c.Dv + j) * c.N + cell] : in.v[((s * c.Hkv + g) * c.N + cell) * c.Dv + j];
}

std::vector<double> ref_scores(const Case & c, const Inputs & in, int64_t t, int64_t s, double scale) {
    std::vector<double> score(c.N, 0.0);
    const float * m = &in.mask[(s * c.T + t) * c.N];
    for (int64_t h = 0; h < c.H; ++h) {
        std::vector<double> l(c.N, -INFINITY);
        double mx = -INFINITY;
        for (int64_t i = 0; i < c.N; ++i)
            if (m[i] != -INFINITY) { l[i] = scale * dot_qk(c, in, t, h, s, i) + m[i]; mx = std::max(mx, l[i]); }
        double sum = 0;
        for (int64_t i = 0; i < c.N; ++i) if (l[i] != -INFINITY) sum += std::exp(l[i] - mx);
        for (int64_t i = 0; i < c.N; ++i) if (l[i] != -INFINITY) score[i] += std::exp(l[i] - mx) / sum;
    }
    return score;
}

// graph helpers ------------------------------------------------------------------------------
struct Graph {
    ggml_context * ctx = nullptr;
    ggml_backend_buffer_t buf = nullptr;
    ~Graph() { if (buf) ggml_backend_buffer_free(buf); if (ctx) ggml_free(ctx); }
};

struct Tensors { ggml_tensor * q, * k, * v, * mask, * img, * budget, * a, * b, * c = nullptr, * pool = nullptr; };

Tensors make_tensors(ggml_context * ctx, const Case & c, const Inputs & in) {
    Tensors x;
    x.q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, c.D, c.T, c.H, c.S);
    x.k = ggml_new_tensor_4d(ctx, c.kt, c.D, c.N, c.Hkv, c.S);
    x.v = c.v_trans ? ggml_new_tensor_4d(ctx, c.vt, c.N, c.Dv, c.Hkv, c.S) : ggml_new_tensor_4d(ctx, c.vt, c.Dv, c.N, c.Hkv, c.S);
    x.mask = ggml_new_tensor_4d(ctx, c.mt, c.N, c.T, 1, c.S);
    x.img = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, in.n_img, c.T, c.S);
    x.budget = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, c.T, c.S);
    x.a = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, in.na, c.T, c.S);
    x.b = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, in.nb, c.T, c.S);
    if (in.nc) {
        x.c = ggml_new_tensor_3d(ctx, GGML_TYPE_I32, in.nc, c.T, c.S);
        x.pool = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, c.T, c.S);
    }
    return x;
}

void upload(const Tensors & x, const Inputs & in) {
    set_tensor(x.q, in.q); set_tensor(x.k, in.k); set_tensor(x.v, in.v); set_tensor(x.mask, in.mask);
    ggml_backend_tensor_set(x.img, in.img.data(), 0, in.img.size() * 4);
    ggml_backend_tensor_set(x.budget, in.budget.data(), 0, in.budget.size() * 4);
    ggml_backend_tensor_set(x.a, in.idx_a.data(), 0, in.idx_a.size() * 4);
    ggml_backend_tensor_set(x.b, in.idx_b.data(), 0, in.idx_b.size() * 4);
    if (x.c) {
        ggml_backend_tensor_set(x.c, in.idx_c.data(), 0, in.idx_c.size() * 4);
        ggml_backend_tensor_set(x.pool, in.pool.data(), 0, in.pool.size() * 4);
    }
}

// one case's random inputs and their tensors (3/5 of the cells are image cells, budget cap K)
struct CaseSetup {
    int64_t n_img, K;
    float scale;
    Inputs in;
    Graph g;
    Tensors x;
    ggml_tensor * v_view;
    CaseSetup(const Case & c, bool all_lists, bool sample)
        : n_img(std::max<int64_t>(4, c.N * 3 / 5)), K(std::max<int64_t>(1, n_img / 3 + 2)),
          scale(1.0f / std::sqrt((float) c.D)), in(make_inputs(c, n_img, all_lists, sample)) {
        ggml_init_params ip = {64 * ggml_tensor_overhead() + ggml_graph_overhead(), nullptr, true};
        g.ctx = ggml_init(ip);
        x = make_tensors(g.ctx, c, in);
        v_view = c.v_trans ? ggml_transpose(g.ctx, x.v) : x.v;
    }
};

const char * tname(ggml_type t) { return ggml_type_name(t); }

std::string describe(const Case & c) {
    char b[256];
    snprintf(b, sizeof b, "D=%lld Dv=%lld T=%lld H=%lld Hkv=%lld S=%lld N=%lld k=%s v=%s%s mask=%s",
             (long long) c.D, (long long) c.Dv, (long long) c.T, (long long) c.H, (long long) c.Hkv, (long long) c.S,
             (long long) c.N, tname(c.kt), tname(c.vt), c.v_trans ? "(T)" : "", tname(c.mt));
    return b;
}

// returns "" when the backend does not support the case
std::string run_case(ggml_backend_t be, const Case & c, const char * op, int & failures) {
    const bool mass = !strcmp(op, "select_mass");   // fix_select with a mass budget
    const bool select = !strcmp(op, "select") || mass, vs_fa = !strcmp(op, "attn_vs_fa"), sample = !strcmp(op, "attn_sample");
    CaseSetup cs(c, vs_fa, sample);
    const int64_t n_img = cs.n_img, K = cs.K;
    const float scale = cs.scale;
    Inputs & in = cs.in;
    Graph & g = cs.g;
    Tensors & x = cs.x;
    ggml_tensor * v_view = cs.v_view;
    ggml_tensor * out;
    ggml_tensor * ref_fa = nullptr;
    if (select) {
        out = ggml_fix_select(g.ctx, x.q, x.k, x.mask, x.img, x.budget, K, scale);
        if (mass) ggml_fix_select_set_mass(out, (float) MASS, (int32_t) MASS_K_MIN);
    } else {
        out = ggml_fix_attn(g.ctx, x.q, x.k, v_view, x.mask, x.a, x.b, scale);
        if (sample) ggml_fix_attn_add_sample(out, x.c, x.pool);
        if (vs_fa) {  // llama.cpp's FA path: F16 K/V and mask, V rows contiguous
            if (c.kt != GGML_TYPE_F16 || c.vt != GGML_TYPE_F16 || c.mt != GGML_TYPE_F16 || c.v_trans) return "";
            ggml_tensor * q = x.q, * k = x.k, * v = v_view;
            ref_fa = ggml_flash_attn_ext(g.ctx, q, k, v, x.mask, scale, 0.0f, 0.0f);
            ggml_prec_set_acc(ref_fa, GGML_PREC_F32);
            if (!ggml_backend_supports_op(be, ref_fa)) ref_fa = nullptr;
        }
    }
    if (!ggml_backend_supports_op(be, out)) return "";
    ggml_cgraph * gf = ggml_new_graph(g.ctx);
    ggml_build_forward_expand(gf, out);
    if (ref_fa) ggml_build_forward_expand(gf, ref_fa);
    g.buf = ggml_backend_alloc_ctx_tensors(g.ctx, be);
    upload(x, in);
    if (ggml_backend_graph_compute(be, gf) != GGML_STATUS_SUCCESS) { failures++; return "compute failed"; }

    char msg[256] = "ok";
    if (select) {
        std::vector<int32_t> got(ggml_nelements(out));
        ggml_backend_tensor_get(out, got.data(), 0, got.size() * 4);
        for (int64_t s = 0; s < c.S; ++s)
            for (int64_t t = 0; t < c.T; ++t) {
                const int64_t r = s * c.T + t;
                if (in.budget[r] < 0) {
                    std::vector<int32_t> want(K, -1);
                    for (int64_t i = 0, n = 0; i < n_img && n < K; ++i)
                        if (in.img[r * n_img + i] >= 0 && in.img[r * n_img + i] < c.N) want[n++] = in.img[r * n_img + i];
                    if (!std::equal(want.begin(), want.end(), &got[r * K])) {
                        failures++;
                        snprintf(msg, sizeof msg, "row %lld (not refreshed): list not copied", (long long) r);
                        return msg;
                    }
                    continue;
                }
                std::vector<double> sc = ref_scores(c, in, t, s, scale);
                std::vector<int32_t> cand;
                for (int64_t i = 0; i < n_img; ++i) {
                    int32_t cell = in.img[r * n_img + i];
                    if (cell >= 0 && in.mask[r * c.N + cell] != -INFINITY) cand.push_back(cell);
                }
                int64_t want = std::max<int64_t>(0, std::min<int64_t>({(int64_t) in.budget[r], (int64_t) cand.size(), K}));
                const int32_t * row = &got[r * K];
                int64_t n = 0;
                while (n < K && row[n] >= 0) n++;
                bool near = false;  // the mass crossed within float32 rounding of a boundary
                if (mass) {
                    // float64: the fewest best candidates whose scores reach MASS of their total
                    std::vector<double> v;
                    double total = 0;
                    for (int32_t cell : cand) { v.push_back(sc[cell]); total += sc[cell]; }
                    std::sort(v.rbegin(), v.rend());
                    double acc = 0;
                    int64_t j = 0;
                    while (j < (int64_t) v.size() && acc < MASS * total) {
                        acc += v[j++];
                        near |= std::fabs(acc - MASS * total) < 1e-4 * total;
                    }
                    const int64_t ceil_b = want;
                    want = std::max(std::min(j, ceil_b), std::min<int64_t>(ceil_b, MASS_K_MIN));
                    if (want < ceil_b && want > MASS_K_MIN) mass_cut_rows++;
                }
                bool ok = n == want || (near && std::llabs(n - want) <= 1);
                for (int64_t j = n; j < K; ++j) ok &= row[j] == -1;
                for (int64_t j = 1; j < n; ++j) ok &= row[j - 1] < row[j];
                double min_sel = INFINITY, max_unsel = -INFINITY, top = 0;
                for (int32_t cell : cand) top = std::max(top, sc[cell]);
                for (int64_t j = 0; j < n && ok; ++j) {
                    ok &= std::find(cand.begin(), cand.end(), row[j]) != cand.end();  // visible image cell
                    if (ok) min_sel = std::min(min_sel, sc[row[j]]);
                }
                for (int32_t cell : cand)
                    if (std::find(row, row + n, cell) == row + n) max_unsel = std::max(max_unsel, sc[cell]);
                // near-ties at the budget boundary may go either way (float32 vs float64)
                if (n > 0 && max_unsel > min_sel + 2e-3 * top) ok = false;
                if (!ok) {
                    failures++;
                    snprintf(msg, sizeof msg, "row %lld: %lld selected (want %lld), min sel %.4g, max unsel %.4g",
                             (long long) r, (long long) n, (long long) want, min_sel, max_unsel);
                    return msg;
                }
            }
        return msg;
    }
    std::vector<float> got(ggml_nelements(out));
    ggml_backend_tensor_get(out, got.data(), 0, got.size() * 4);
    double err = 0, mag = 0;
    for (int64_t s = 0; s < c.S; ++s)
        for (int64_t t = 0; t < c.T; ++t) {
            const int64_t r = s * c.T + t;
            std::vector<int32_t> cells;
            std::vector<double> bias;  // per listed cell: 0, or the sample's log weight
            for (int64_t i = 0; i < in.na; ++i) if (in.idx_a[r * in.na + i] >= 0) cells.push_back(in.idx_a[r * in.na + i]);
            for (int64_t i = 0; i < in.nb; ++i) if (in.idx_b[r * in.nb + i] >= 0) cells.push_back(in.idx_b[r * in.nb + i]);
            bias.assign(cells.size(), 0.0);
            if (in.nc) {  // spec: entries visible and not selected, each for n_hid / m hidden cells
                const int32_t * b = &in.idx_b[r * in.nb];
                int64_t n_sel = 0;
                for (int64_t i = 0; i < in.nb; ++i) n_sel += b[i] >= 0 && in.mask[r * c.N + b[i]] != -INFINITY;
                std::vector<int32_t> enter;
                for (int64_t i = 0; i < in.nc; ++i) {
                    const int32_t cell = in.idx_c[r * in.nc + i];
                    if (cell >= 0 && cell < c.N && in.mask[r * c.N + cell] != -INFINITY && std::find(b, b + in.nb, cell) == b + in.nb)
                        enter.push_back(cell);
                }
                const int64_t n_hid = in.pool[r] - n_sel;
                if (!enter.empty() && n_hid > 0)
                    for (int32_t cell : enter) {
                        cells.push_back(cell);
                        bias.push_back(std::log((double) n_hid / (double) enter.size()));
                    }
            }
            for (int64_t h = 0; h < c.H; ++h) {
                const int64_t gk = h / (c.H / c.Hkv);
                std::vector<double> l;
                std::vector<int32_t> vis;
                double mx = -INFINITY;
                for (size_t ci = 0; ci < cells.size(); ++ci) {
                    const int32_t cell = cells[ci];
                    const float m = in.mask[r * c.N + cell];
                    if (m == -INFINITY) continue;
                    l.push_back(scale * dot_qk(c, in, t, h, s, cell) + m + bias[ci]);
                    vis.push_back(cell);
                    mx = std::max(mx, l.back());
                }
                double sum = 0;
                for (double x : l) sum += std::exp(x - mx);
                for (int64_t j = 0; j < c.Dv; ++j) {
                    double o = 0;
                    for (size_t i = 0; i < vis.size(); ++i) o += std::exp(l[i] - mx) / sum * v_at(c, in, j, vis[i], gk, s);
                    const double y = got[((s * c.T + t) * c.H + h) * c.Dv + j];
                    err = std::max(err, std::fabs(y - o));
                    mag = std::max(mag, std::fabs(o));
                }
            }
        }
    // q is rounded to K's dot type on CPU (F16 / Q8_0): allow for it
    const double tol = c.kt == GGML_TYPE_F32 ? 1e-4 : c.kt == GGML_TYPE_F16 ? 3e-3 : 3e-2;
    if (!(err <= tol * std::max(1.0, mag))) {
        failures++;
        snprintf(msg, sizeof msg, "max |err| %.3g vs float64 (tol %.1g)", err, tol);
        return msg;
    }
    if (ref_fa) {  // all cells listed: same as the stock flash attention on this backend
        std::vector<float> fa(ggml_nelements(ref_fa));
        ggml_backend_tensor_get(ref_fa, fa.data(), 0, fa.size() * 4);
        double d = 0;
        for (size_t i = 0; i < fa.size(); ++i) d = std::max(d, (double) std::fabs(fa[i] - got[i]));
        if (!(d <= tol * std::max(1.0, mag))) {
            failures++;
            snprintf(msg, sizeof msg, "max |fix_attn - flash_attn_ext| %.3g", d);
            return msg;
        }
        snprintf(msg, sizeof msg, "ok (err %.2g, vs FA %.2g)", err, d);
        return msg;
    }
    snprintf(msg, sizeof msg, "ok (err %.2g)", err);
    return msg;
}

// the fused focal layer: fix_attn_scored + fix_topk against float64 (attention over every
// visible cell, fix_select's scores) and against fix_select on the same backend (the same
// selection in every row, but where the two differ only at a near-tie of the float64 scores)
std::string run_scored_case(ggml_backend_t be, const Case & c, int & failures) {
    CaseSetup cs(c, false, false);
    const int64_t n_img = cs.n_img, K = cs.K;
    const float scale = cs.scale;
    Inputs & in = cs.in;
    Graph & g = cs.g;
    Tensors & x = cs.x;
    ggml_tensor * v_view = cs.v_view;
    ggml_tensor * scores = nullptr;
    ggml_tensor * att = ggml_fix_attn_scored(g.ctx, x.q, x.k, v_view, x.mask, x.img, scale, &scores);
    ggml_tensor * top = ggml_fix_topk(g.ctx, scores, x.img, x.budget, K);
    ggml_tensor * sel = ggml_fix_select(g.ctx, x.q, x.k, x.mask, x.img, x.budget, K, scale);
    if (!ggml_backend_supports_op(be, att->view_src) || !ggml_backend_supports_op(be, top) ||
        !ggml_backend_supports_op(be, sel)) return "";
    ggml_cgraph * gf = ggml_new_graph(g.ctx);
    ggml_build_forward_expand(gf, att);
    ggml_build_forward_expand(gf, top);
    ggml_build_forward_expand(gf, sel);
    g.buf = ggml_backend_alloc_ctx_tensors(g.ctx, be);
    upload(x, in);
    if (ggml_backend_graph_compute(be, gf) != GGML_STATUS_SUCCESS) { failures++; return "compute failed"; }
    std::vector<float> got(ggml_nelements(att)), got_sc(ggml_nelements(scores));
    std::vector<int32_t> got_top(ggml_nelements(top)), got_sel(ggml_nelements(sel));
    ggml_backend_tensor_get(att, got.data(), 0, got.size() * 4);
    ggml_backend_tensor_get(scores, got_sc.data(), 0, got_sc.size() * 4);
    ggml_backend_tensor_get(top, got_top.data(), 0, got_top.size() * 4);
    ggml_backend_tensor_get(sel, got_sel.data(), 0, got_sel.size() * 4);
    const double tol = c.kt == GGML_TYPE_F32 ? 1e-4 : c.kt == GGML_TYPE_F16 ? 3e-3 : 3e-2;
    char msg[256];
    double err = 0, mag = 0, err_sc = 0;
    int64_t same_rows = 0, rows = 0;
    for (int64_t s = 0; s < c.S; ++s)
        for (int64_t t = 0; t < c.T; ++t) {
            const int64_t r = s * c.T + t;
            const float * m = &in.mask[r * c.N];
            for (int64_t h = 0; h < c.H; ++h) {  // attention over every visible cell
                const int64_t gk = h / (c.H / c.Hkv);
                std::vector<double> l(c.N, -INFINITY);
                double mx = -INFINITY, sum = 0;
                for (int64_t i = 0; i < c.N; ++i)
                    if (m[i] != -INFINITY) { l[i] = scale * dot_qk(c, in, t, h, s, i) + m[i]; mx = std::max(mx, l[i]); }
                for (int64_t i = 0; i < c.N; ++i) if (l[i] != -INFINITY) sum += std::exp(l[i] - mx);
                for (int64_t j = 0; j < c.Dv; ++j) {
                    double o = 0;
                    for (int64_t i = 0; i < c.N; ++i)
                        if (l[i] != -INFINITY) o += std::exp(l[i] - mx) / sum * v_at(c, in, j, i, gk, s);
                    err = std::max(err, std::fabs(got[((s * c.T + t) * c.H + h) * c.Dv + j] - o));
                    mag = std::max(mag, std::fabs(o));
                }
            }
            const std::vector<double> ref = ref_scores(c, in, t, s, scale);
            std::vector<int32_t> cand;  // the row's valid, visible entries
            for (int64_t i = 0; i < n_img; ++i) {
                const int32_t cell = in.img[r * n_img + i];
                const bool valid = cell >= 0 && cell < c.N && m[cell] != -INFINITY;
                const float y = got_sc[r * n_img + i];
                if (valid != (y != -INFINITY)) {
                    failures++;
                    snprintf(msg, sizeof msg, "row %lld entry %lld: score %g for a %s cell", (long long) r,
                             (long long) i, y, valid ? "visible" : "hidden or invalid");
                    return msg;
                }
                if (valid) { cand.push_back(cell); err_sc = std::max(err_sc, std::fabs(y - ref[cell])); }
            }
            const int32_t * row = &got_top[r * K];
            if (in.budget[r] < 0) {  // not refreshed: the entries with a score, in list order
                std::vector<int32_t> want(K, -1);
                for (size_t i = 0; i < cand.size() && (int64_t) i < K; ++i) want[i] = cand[i];
                if (!std::equal(want.begin(), want.end(), row)) {
                    failures++;
                    snprintf(msg, sizeof msg, "row %lld (not refreshed): list not copied", (long long) r);
                    return msg;
                }
                continue;
            }
            rows++;
            const int32_t * ref_row = &got_sel[r * K];
            if (std::equal(row, row + K, ref_row)) { same_rows++; continue; }
            // differing: both must be top-b sets of the float64 scores up to a near-tie
            double top_sc = 0;
            for (int32_t cell : cand) top_sc = std::max(top_sc, ref[cell]);
            double lo = INFINITY, hi = -INFINITY;  // cells only one of them chose
            for (int64_t j = 0; j < K; ++j) {
                if (row[j] >= 0 && std::find(ref_row, ref_row + K, row[j]) == ref_row + K) lo = std::min(lo, ref[row[j]]), hi = std::max(hi, ref[row[j]]);
                if (ref_row[j] >= 0 && std::find(row, row + K, ref_row[j]) == row + K) lo = std::min(lo, ref[ref_row[j]]), hi = std::max(hi, ref[ref_row[j]]);
            }
            int64_t n_row = 0, n_ref = 0;
            while (n_row < K && row[n_row] >= 0) n_row++;
            while (n_ref < K && ref_row[n_ref] >= 0) n_ref++;
            if (n_row != n_ref || hi - lo > 2e-3 * top_sc) {
                failures++;
                snprintf(msg, sizeof msg, "row %lld: selection differs from fix_select beyond a near-tie "
                         "(%lld vs %lld cells, score gap %.3g)", (long long) r, (long long) n_row, (long long) n_ref, hi - lo);
                return msg;
            }
        }
    if (!(err <= tol * std::max(1.0, mag)) || !(err_sc <= tol * c.H)) {
        failures++;
        snprintf(msg, sizeof msg, "max |err| attention %.3g, scores %.3g vs float64 (tol %.1g)", err, err_sc, tol);
        return msg;
    }
    snprintf(msg, sizeof msg, "ok (err %.2g, scores %.2g; %lld/%lld rows = fix_select)", err, err_sc,
             (long long) same_rows, (long long) rows);
    return msg;
}

// --perf: time one decode row's attention at OCR shapes (head dim 128, GQA 16/2 like
// Qwen2.5-VL-3B): stock flash attention over all cells vs fix_attn over 64 text cells + a
// 5% image selection (and the same plus a 64-cell compensation sample), fix_select (the
// focal layer's extra work) and the fused focal layer (fix_attn_scored + fix_topk).
int perf(ggml_backend_t be, const char * name, int threads) {
    printf("backend %s, threads %d: ms per layer-step (median), D=128, H=16, Hkv=2, 64 text cells\n", name, threads);
    printf("| image cells | streams | stock FA | fix_attn 5%% | speed-up | + sample 64 | speed-up | fix_select | focal: FA + fix_select | focal: fused | FA bytes K+V | fix bytes K+V |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int64_t S : {1, 8})
        for (int64_t n_img : {1024, 4096, 16384}) {
            const int64_t D = 128, H = 16, Hkv = 2, T = 1, n_txt = 64, N = n_img + n_txt;
            const int64_t k = (n_img * 5 + 99) / 100;
            Graph g;
            ggml_init_params ip = {96 * ggml_tensor_overhead() + 5 * ggml_graph_overhead(), nullptr, true};
            g.ctx = ggml_init(ip);
            ggml_tensor * q = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F32, D, T, H, S);
            ggml_tensor * kk = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F16, D, N, Hkv, S);
            ggml_tensor * v = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F16, D, N, Hkv, S);
            ggml_tensor * m = ggml_new_tensor_4d(g.ctx, GGML_TYPE_F16, N, T, 1, S);
            ggml_tensor * a = ggml_new_tensor_3d(g.ctx, GGML_TYPE_I32, N, T, S);
            ggml_tensor * b = ggml_new_tensor_3d(g.ctx, GGML_TYPE_I32, k, T, S);
            ggml_tensor * img = ggml_new_tensor_3d(g.ctx, GGML_TYPE_I32, n_img, T, S);
            ggml_tensor * bud = ggml_new_tensor_2d(g.ctx, GGML_TYPE_I32, T, S);
            const float scale = 1.0f / std::sqrt((float) D);
            ggml_tensor * fa = ggml_flash_attn_ext(g.ctx, q, kk, v, m, scale, 0.0f, 0.0f);
            ggml_prec_set_acc(fa, GGML_PREC_F32);
            ggml_tensor * fx = ggml_fix_attn(g.ctx, q, kk, v, m, a, b, scale);
            const int64_t n_smp = 64;
            ggml_tensor * smp = ggml_new_tensor_3d(g.ctx, GGML_TYPE_I32, n_smp, T, S);
            ggml_tensor * pool = ggml_new_tensor_2d(g.ctx, GGML_TYPE_I32, T, S);
            ggml_tensor * fxs = ggml_fix_attn(g.ctx, q, kk, v, m, a, b, scale);
            ggml_fix_attn_add_sample(fxs, smp, pool);
            ggml_tensor * sel = ggml_fix_select(g.ctx, q, kk, m, img, bud, k, scale);
            ggml_tensor * scores = nullptr;  // the fused focal layer: attention + scores, top-k
            ggml_tensor * fused = ggml_fix_attn_scored(g.ctx, q, kk, v, m, img, scale, &scores);
            ggml_tensor * fused_top = ggml_fix_topk(g.ctx, scores, img, bud, k);
            if (!ggml_backend_supports_op(be, fx) || !ggml_backend_supports_op(be, fa)) return 77;
            ggml_cgraph * g1 = ggml_new_graph(g.ctx); ggml_build_forward_expand(g1, fa);
            ggml_cgraph * g2 = ggml_new_graph(g.ctx); ggml_build_forward_expand(g2, fx);
            ggml_cgraph * g3 = ggml_new_graph(g.ctx); ggml_build_forward_expand(g3, sel);
            ggml_cgraph * g4 = ggml_new_graph(g.ctx); ggml_build_forward_expand(g4, fxs);
            const bool have_fused = ggml_backend_supports_op(be, fused->view_src) && ggml_backend_supports_op(be, fused_top);
            ggml_cgraph * g5 = ggml_new_graph(g.ctx); ggml_build_forward_expand(g5, fused); ggml_build_forward_expand(g5, fused_top);
            g.buf = ggml_backend_alloc_ctx_tensors(g.ctx, be);
            std::vector<float> x(ggml_nelements(kk));
            for (auto & e : x) e = urand(-1, 1);
            set_tensor(kk, x); set_tensor(v, x);
            std::vector<float> qv(ggml_nelements(q));
            for (auto & e : qv) e = urand(-1, 1);
            set_tensor(q, qv);
            set_tensor(m, std::vector<float>(ggml_nelements(m), 0.0f));
            std::vector<int32_t> ai(N * S, -1), bi(k * S), ii(n_img * S), bb(S, (int32_t) k), si(n_smp * S), pi(S, (int32_t) n_img);
            for (int64_t s2 = 0; s2 < S; ++s2) {
                for (int64_t i = 0; i < n_txt; ++i) ai[s2 * N + i] = (int32_t) (n_img + i);
                for (int64_t i = 0; i < k; ++i) bi[s2 * k + i] = (int32_t) (i * (n_img / k));
                for (int64_t i = 0; i < n_img; ++i) ii[s2 * n_img + i] = (int32_t) i;
                for (int64_t i = 0; i < n_smp; ++i) si[s2 * n_smp + i] = (int32_t) ((i * n_img) / n_smp + n_img / (2 * n_smp) + 1);
            }
            ggml_backend_tensor_set(smp, si.data(), 0, si.size() * 4);
            ggml_backend_tensor_set(pool, pi.data(), 0, pi.size() * 4);
            ggml_backend_tensor_set(a, ai.data(), 0, ai.size() * 4);
            ggml_backend_tensor_set(b, bi.data(), 0, bi.size() * 4);
            ggml_backend_tensor_set(img, ii.data(), 0, ii.size() * 4);
            ggml_backend_tensor_set(bud, bb.data(), 0, bb.size() * 4);
            const double t_fa = time_graph(be, g1, 20), t_fx = time_graph(be, g2, 20), t_sel = time_graph(be, g3, 10);
            const double t_fxs = time_graph(be, g4, 20);
            const double t_fused = have_fused ? time_graph(be, g5, 10) : NAN;
            const double mb_fa = 2.0 * N * Hkv * D * 2 * S / 1e6, mb_fx = 2.0 * (n_txt + k) * Hkv * D * 2 * S / 1e6;
            printf("| %lld | %lld | %.3f | %.3f | %.1fx | %.3f | %.1fx | %.3f | %.3f | %.3f | %.1f MB | %.2f MB |\n", (long long) n_img, (long long) S,
                   t_fa, t_fx, t_fa / t_fx, t_fxs, t_fa / t_fxs, t_sel, t_fa + t_sel, t_fused, mb_fa, mb_fx);
        }
    return 0;
}

} // namespace

int main(int argc, char ** argv) {
    std::string want = argc > 2 && !strcmp(argv[1], "-b") ? argv[2] : "";
    const bool do_perf = argc > 3 && !strcmp(argv[3], "--perf");
    ggml_backend_load_all();
    std::vector<Case> cases;
    for (ggml_type kt : {GGML_TYPE_F16, GGML_TYPE_F32, GGML_TYPE_Q8_0})
        for (auto hs : std::vector<std::pair<int, int>>{{4, 4}, {8, 2}})
            for (int64_t T : {1, 3})
                for (int64_t S : {1, 2}) {
                    Case c{128, 128, T, hs.first, hs.second, S, 300, kt, kt == GGML_TYPE_Q8_0 ? GGML_TYPE_F16 : kt,
                           T == 3 ? GGML_TYPE_F32 : GGML_TYPE_F16, false};
                    cases.push_back(c);
                }
    cases.push_back({64, 64, 1, 16, 2, 1, 1000, GGML_TYPE_F16, GGML_TYPE_F16, GGML_TYPE_F16, true});  // non-FA V layout
    cases.push_back({128, 128, 2, 16, 2, 1, 2048, GGML_TYPE_F16, GGML_TYPE_F16, GGML_TYPE_F16, false});
    cases.push_back({128, 128, 1, 8, 8, 1, 16, GGML_TYPE_F16, GGML_TYPE_F16, GGML_TYPE_F16, false});  // tiny
    // paths the CUDA kernels have that the cases above do not reach (they run first on the
    // first GPU lent: scripts/gpu-check.sh runs this binary on CUDA0)
    const ggml_type F16 = GGML_TYPE_F16;
    cases.push_back({256, 256, 1, 8, 2, 1, 600, F16, F16, F16, false});    // head size 256 (DMAX 256)
    cases.push_back({128, 128, 2, 32, 2, 1, 500, F16, F16, F16, false});   // 16 query heads per KV head
                                                                           // (GLM-4.1V-9B: 32 on 2): head groups > 8
    cases.push_back({192, 128, 1, 8, 2, 1, 400, F16, F16, F16, false});    // Dv != D
    cases.push_back({80, 80, 1, 8, 2, 1, 300, F16, F16, F16, false});      // a head size no multiple of 32
    cases.push_back({40, 40, 1, 4, 2, 1, 200, GGML_TYPE_F32, GGML_TYPE_F32, F16, false});  // <= 64: pairs
    // a budget over 8192 (row 0: n_img / 3 = 8201): the top-k's sort leaves shared memory
    cases.push_back({64, 64, 3, 4, 2, 1, 41005, F16, F16, F16, false});
    {   // several rows, one per pass of fix_select and the fused focal layer
        Case c{128, 128, 5, 8, 2, 2, 300, F16, F16, F16, false};
        c.one_row_per_pass = true;
        cases.push_back(c);
    }
    int failures = 0, ran = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU && std::string(ggml_backend_dev_name(dev)) != "CPU") continue;
        if (!want.empty() && want != ggml_backend_dev_name(dev)) continue;
        if (ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU && ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_GPU) continue;
        ggml_backend_t be = ggml_backend_dev_init(dev, nullptr);
        if (do_perf) {
            const int threads = argc > 4 ? atoi(argv[4]) : 2;
            if (ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) {
                auto * reg = ggml_backend_dev_backend_reg(dev);
                auto * fn = (void (*)(ggml_backend_t, int)) ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
                if (fn) fn(be, threads);
            }
            int rc = perf(be, ggml_backend_dev_name(dev), threads);
            if (rc == 0) rc = run_merge_op_perf(be);
            ggml_backend_free(be);
            return rc;
        }
        printf("backend %s\n", ggml_backend_dev_name(dev));
        for (const Case & c : cases) {
            if (c.one_row_per_pass) setenv("FOVEATE_FIX_LOGITS_MAX", "4096", 1);
            else unsetenv("FOVEATE_FIX_LOGITS_MAX");
            for (const char * op : {"select", "select_mass", "attn", "attn_vs_fa", "attn_sample", "scored"}) {
                std::string r = !strcmp(op, "scored") ? run_scored_case(be, c, failures) : run_case(be, c, op, failures);
                if (r.empty()) { printf("  %-10s %s: not supported, skipped\n", op, describe(c).c_str()); continue; }
                ran++;
                printf("  %-10s %s%s: %s\n", op, describe(c).c_str(), c.one_row_per_pass ? " (a row per pass)" : "", r.c_str());
            }
        }
        ran += run_merge_op_tests(be, failures);
        ggml_backend_free(be);
    }
    if (ran > 0 && mass_cut_rows == 0) {
        failures++;
        printf("select_mass: no row's mass budget fell between k_min and its ceiling: the rule went untested\n");
    }
    printf("%d cases, %d failed (mass budget cut %lld rows)\n", ran, failures, (long long) mass_cut_rows);
    if (ran == 0) return 77;
    return failures ? 1 : 0;
}
