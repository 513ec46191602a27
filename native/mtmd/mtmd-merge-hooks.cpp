// foveate token merging: what mtmd's hooks (patches/0008, 0009) call. mtmd.cpp keeps only
// what needs its private structs (the chunks of a tiled image, the encode call, the overview
// image); the encode hook's logic, pooling a tiled image, marker rows, pixels, pending chunks,
// the decode rules of merged rows and the C API live here.
#include "mtmd-merge.h"
#include "mtmd-merge-decode.h"
#include "mtmd-foveate.h"
#include "mtmd.h"
#include "llama-foveate.h"
#include "clip.h"
#include "clip-impl.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace {

// Learned marker rows of an image chunk are never scored or merged (and fixation attends to
// them as text). Two ways to know them:
// - by layout: HunyuanVL's chunk is [BOI] (nx content rows + newline) x ny [EOI]; its marker
//   rows pass through the projector, so no output row equals a stored tensor;
// - by value: DeepSeek-OCR(-2) copy image_newline / view_seperator into the output unchanged.
// kind[i] for the chunk's original row i (n rows), by layout only
std::vector<uint8_t> layout_kinds(const clip_ctx * clip, const mtmd_image_tokens * it, int64_t n) {
    std::vector<uint8_t> kind(n, FOVEATE_ROW_CONTENT);
    if (!clip || !it || clip_get_projector_type(clip) != PROJECTOR_TYPE_HUNYUANVL) {
        return kind;
    }
    const int64_t nx = (int64_t) mtmd_image_tokens_get_nx(it), ny = (int64_t) mtmd_image_tokens_get_ny(it);
    if (nx < 1 || ny < 1 || n != (nx + 1)*ny + 2) {
        return kind;   // not the layout mtmd builds: nothing is known
    }
    kind[0] = kind[n - 1] = FOVEATE_ROW_MARKER;
    for (int64_t r = 0; r < ny; r++) {
        kind[1 + r*(nx + 1) + nx] = FOVEATE_ROW_NEWLINE;
    }
    return kind;
}

// the row's kind by value (CONTENT when it equals no marker tensor)
struct marker_values {
    std::vector<float> nl, sep;
    explicit marker_values(const clip_ctx * clip) {
        if (clip) {
            clip_foveate_marker_rows(clip, nl, sep);
        }
    }
    // the newline tensor itself, or (Granite Vision 4: deepstack rows are several projector
    // outputs side by side) that tensor repeated across the row
    static bool repeats(const float * row, int64_t d, const std::vector<float> & v) {
        const int64_t n = (int64_t) v.size();
        if (n == 0 || d <= 0 || d % n != 0) {
            return false;
        }
        for (int64_t o = 0; o < d; o += n) {
            if (memcmp(row + o, v.data(), n*sizeof(float)) != 0) {
                return false;
            }
        }
        return true;
    }
    uint8_t kind(const float * row, int64_t d) const {
        if (repeats(row, d, nl)) {
            return FOVEATE_ROW_NEWLINE;
        }
        if ((int64_t) sep.size() == d && memcmp(row, sep.data(), d*sizeof(float)) == 0) {
            return FOVEATE_ROW_MARKER;
        }
        return FOVEATE_ROW_CONTENT;
    }
};

// kinds of an image's pooled rows: part p holds rows offs[p] .. offs[p+1]
std::vector<uint8_t> row_kinds(const clip_ctx * clip, const std::vector<const void *> & parts,
                               const std::vector<int64_t> & offs, const std::vector<float> & rows, int64_t d) {
    const marker_values values(clip);
    std::vector<uint8_t> kind;
    for (size_t p = 0; p < parts.size(); p++) {
        const int64_t n = offs[p + 1] - offs[p];
        std::vector<uint8_t> part = layout_kinds(clip, (const mtmd_image_tokens *) parts[p], n);
        for (int64_t i = 0; i < n; i++) {
            if (part[i] == FOVEATE_ROW_CONTENT) {
                part[i] = values.kind(rows.data() + (offs[p] + i)*d, d);
            }
        }
        kind.insert(kind.end(), part.begin(), part.end());
    }
    return kind;
}

// the overview's pixels in [-1, 1] (undoing the projector's normalisation), one Sobel patch
// per output token; empty when there is no overview or no pixel buffer
foveate_merge_pixels overview_pixels(const clip_ctx * clip, const clip_image_f32 * ov, std::vector<float> & buf) {
    if (!ov || ov->get_ro_buf().empty()) {
        return {};
    }
    float mean[3], stdv[3];
    clip_foveate_image_norm(clip, mean, stdv);
    const auto & src = ov->get_ro_buf();
    buf.resize(src.size());
    for (size_t i = 0; i < buf.size(); i++) {
        buf[i] = 2.0f*(src[i]*stdv[i % 3] + mean[i % 3]) - 1.0f;
    }
    // pixels per token side: the grid's width when clip reports a 2-D grid; 1-D projectors
    // (LightOnOCR, dots.ocr) report every token as x, so take the side of the mean token area
    auto * c = const_cast<clip_ctx *>(clip);
    auto * im = const_cast<clip_image_f32 *>(ov);
    const int tx = clip_n_output_tokens_x(c, im), ty = clip_n_output_tokens_y(c, im);
    const int n_tok = clip_n_output_tokens(c, im);
    int patch = 0;
    if (tx > 0 && ty > 1) {
        patch = ov->nx() / tx;
    } else if (n_tok > 0) {
        patch = (int) std::lround(std::sqrt((double) ov->nx() * ov->ny() / n_tok));
    }
    return { buf.data(), ov->nx(), ov->ny(), patch };
}

// hand `res` out as the last merge result, its rows into out_embd
void publish(foveate_merge_state & st, const void * key, foveate_merge_result && res, std::vector<float> & out_embd) {
    st.last = std::move(res);
    // a buffer even for no rows: the pointer callers get stays valid
    out_embd.reserve(std::max<size_t>(1, st.last.rows.size()));
    out_embd.assign(st.last.rows.begin(), st.last.rows.end());
    st.last.rows.clear();
    st.has_last  = true;
    st.last_key  = key;
}

}  // namespace

bool foveate_merge_take_pending(foveate_merge_state & st, const void * key, uint64_t serial,
                                std::vector<float> & out_embd) {
    auto hit = st.pending.find(key);
    if (st.config.mode == FOVEATE_MERGE_OFF || hit == st.pending.end() || hit->second.serial != serial) {
        return false;
    }
    foveate_merge_result res = std::move(hit->second.res);
    st.pending.erase(hit);
    publish(st, key, std::move(res), out_embd);
    return true;
}

bool foveate_merge_begin(foveate_merge_state & st, const clip_ctx * clip) {
    st.has_last = false;
    st.clip = clip;   // the decode side finds marker rows with it, merging on or off
    if (st.config.mode == FOVEATE_MERGE_OFF || !clip) {
        st.pending.clear();
        return false;
    }
    return true;
}

bool foveate_merge_image(foveate_merge_state & st, const clip_ctx * clip, int n_threads, int64_t d,
                         const void * key, uint64_t serial, const foveate_image_parts & img,
                         std::vector<float> & out_embd, std::string & err) {
    st.pending.erase(key);   // stale: foveate_merge_take_pending found no match
    if (img.parts.size() > 1) {
        st.pending.clear();
    }
    std::vector<float> all;
    std::vector<int64_t> offs = { 0 };
    for (const void * part : img.parts) {
        if (part == key) {
            all.insert(all.end(), out_embd.begin(), out_embd.end());
        } else {
            std::vector<float> e;
            if (!img.encode(part, e)) {
                err = "encoding another chunk of the image failed";
                return false;
            }
            all.insert(all.end(), e.begin(), e.end());
        }
        offs.push_back((int64_t) all.size() / d);
    }
    const std::vector<uint8_t> kind = row_kinds(clip, img.parts, offs, all, d);
    std::vector<float> pixels;
    const foveate_merge_pixels px = st.config.mode == FOVEATE_MERGE_DYNAMIC
        ? overview_pixels(clip, img.overview, pixels) : foveate_merge_pixels{};
    ggml_backend_t main = nullptr, cpu = nullptr;
    clip_foveate_backends(clip, &main, &cpu);
    std::vector<ggml_backend_t> backends;
    if (main && main != cpu) {
        backends.push_back(main);
    }
    backends.push_back(cpu);
    foveate_merge_result pooled;
    if (!foveate_merge_compute(backends, n_threads, all.data(), offs.back(), d, kind.data(), px, st.config, pooled, err)) {
        return false;
    }
    auto per = foveate_merge_split(pooled, offs, d);
    foveate_merge_result mine;
    for (size_t p = 0; p < img.parts.size(); p++) {
        if (img.parts[p] == key) {
            mine = std::move(per[p]);
            mine.ms = pooled.ms;
        } else {
            st.pending[img.parts[p]] = { serial, std::move(per[p]) };
        }
    }
    publish(st, key, std::move(mine), out_embd);
    return true;
}

bool foveate_merge_encoded(foveate_merge_state & st, const clip_ctx * clip, int n_threads, int64_t d,
                           const void * key, uint64_t serial,
                           const std::function<foveate_image_parts()> & describe,
                           std::vector<float> & out_embd) {
    if (!foveate_merge_begin(st, clip)) {
        return true;   // merging off: the stock path, nothing else is touched
    }
    std::string err;
    if (!foveate_merge_image(st, clip, n_threads, d, key, serial, describe(), out_embd, err)) {
        LOG_ERR("%s: %s\n", __func__, err.c_str());
        return false;
    }
    return true;
}

//
// decoding merged rows (mtmd-merge-decode.h)
//

std::shared_ptr<const foveate_chunk_rows> foveate_merge_chunk_rows(const foveate_merge_state & st, const void * key,
                                                                   int32_t n_orig, bool one_d) {
    if (!st.has_last || st.last_key != key) {
        return nullptr;
    }
    auto r = std::make_shared<foveate_chunk_rows>();
    r->keep = st.last.keep;
    r->n_orig = n_orig;
    r->consecutive = one_d && st.config.consecutive_1d;
    return r;
}

foveate_decode_rows foveate_merge_decode_rows(const mtmd_input_chunk * chunk) {
    foveate_decode_rows r;
    const foveate_chunk_rows * rec = chunk && mtmd_input_chunk_get_type(chunk) == MTMD_INPUT_CHUNK_TYPE_IMAGE
        ? mtmd_foveate_chunk_rows(mtmd_input_chunk_get_tokens_image(chunk)) : nullptr;
    if (rec) {
        r.n_kept = (int32_t) rec->keep.size();
        r.kept = rec->keep.data();
        r.n_orig = rec->n_orig;
        r.consecutive = rec->consecutive;
    }
    return r;
}

void foveate_mark_marker_rows(mtmd_context * ctx, llama_context * lctx, const mtmd_input_chunk * chunk,
                              const foveate_decode_rows & rows, const float * embd, int64_t d,
                              const llama_pos * pos, llama_seq_id seq) {
    if (!ctx || !lctx || !chunk || !embd || mtmd_input_chunk_get_type(chunk) != MTMD_INPUT_CHUNK_TYPE_IMAGE) {
        return;
    }
    const clip_ctx * clip = mtmd_foveate_state(ctx)->clip;
    const mtmd_image_tokens * it = mtmd_input_chunk_get_tokens_image(chunk);
    const int64_t n_chunk = rows.n_kept >= 0 ? rows.n_orig : (int64_t) mtmd_image_tokens_get_n_tokens(it);
    const int32_t n = rows.n_kept >= 0 ? rows.n_kept : (int32_t) n_chunk;
    const std::vector<uint8_t> layout = layout_kinds(clip, it, n_chunk);
    const marker_values values(clip);
    std::vector<llama_pos> marks;
    for (int32_t j = 0; j < n; j++) {
        const int64_t orig = rows.n_kept >= 0 ? rows.kept[j] : j;
        const bool marker = (orig < n_chunk && layout[orig] != FOVEATE_ROW_CONTENT) ||
                            values.kind(embd + (int64_t) j*d, d) != FOVEATE_ROW_CONTENT;
        if (marker) {
            marks.push_back(pos[j]);
        }
    }
    llama_fixation_set_markers(lctx, seq, marks.data(), (int32_t) marks.size());
}

void foveate_decode_rows::place_1d(llama_pos * pos, llama_pos n_past, llama_context * lctx) const {
    if (n_kept < 0 || consecutive) {
        return;
    }
    for (int32_t j = 0; j < n_kept; j++) {
        pos[j] = n_past + kept[j];
    }
    llama_foveate_allow_position_gaps(lctx, true);
}

//
// C API (mtmd-foveate.h)
//

int32_t mtmd_merge_set(mtmd_context * ctx, int32_t mode, double keep_ratio) {
    if (!ctx || mode < FOVEATE_MERGE_OFF || mode > FOVEATE_MERGE_DYNAMIC ||
        (mode == FOVEATE_MERGE_FIXED && !(keep_ratio > 0.0 && keep_ratio <= 1.0))) {
        return -1;
    }
    auto & st = *mtmd_foveate_state(ctx);
    st.config.mode       = mode;
    st.config.keep_ratio = mode == FOVEATE_MERGE_FIXED ? keep_ratio : 1.0;
    st.has_last          = false;
    st.pending.clear();
    return 0;
}

int32_t mtmd_merge_set_auto_floor(mtmd_context * ctx, double floor) {
    if (!ctx || !(floor >= 0.0 && floor <= 1.0)) {
        return -1;
    }
    mtmd_foveate_state(ctx)->config.auto_floor = floor;
    return 0;
}

int32_t mtmd_merge_set_1d_positions(mtmd_context * ctx, int32_t consecutive) {
    if (!ctx || consecutive < 0 || consecutive > 1) {
        return -1;
    }
    mtmd_foveate_state(ctx)->config.consecutive_1d = consecutive == 1;
    return 0;
}

int32_t mtmd_merge_get_1d_positions(mtmd_context * ctx) {
    return ctx ? (int32_t) mtmd_foveate_state(ctx)->config.consecutive_1d : -1;
}

int32_t mtmd_merge_set_score(mtmd_context * ctx, int32_t score) {
    if (!ctx || score < FOVEATE_MERGE_SCORE_NORM || score > FOVEATE_MERGE_SCORE_DUPLICATES) {
        return -1;
    }
    auto & st = *mtmd_foveate_state(ctx);
    st.config.score = score;
    st.has_last     = false;
    st.pending.clear();
    return 0;
}

int32_t mtmd_merge_get_score(mtmd_context * ctx) {
    return ctx ? (int32_t) mtmd_foveate_state(ctx)->config.score : -1;
}

int32_t mtmd_merge_get_last(mtmd_context * ctx, int32_t * n_before, int32_t * n_after,
                            double * keep_ratio, double * r_sim, double * r_info, double * ms) {
    if (!ctx || !mtmd_foveate_state(ctx)->has_last) {
        return -1;
    }
    const auto & r = mtmd_foveate_state(ctx)->last;
    if (n_before)   *n_before   = (int32_t) r.n_before;
    if (n_after)    *n_after    = (int32_t) r.keep.size();
    if (keep_ratio) *keep_ratio = r.keep_ratio;
    if (r_sim)      *r_sim      = r.r_sim;
    if (r_info)     *r_info     = r.r_info;
    if (ms)         *ms         = r.ms;
    return 0;
}

int32_t mtmd_merge_get_kept(mtmd_context * ctx, int32_t * out, int32_t cap) {
    if (!ctx || !mtmd_foveate_state(ctx)->has_last) {
        return -1;
    }
    const auto & keep = mtmd_foveate_state(ctx)->last.keep;
    for (int32_t i = 0; out && i < cap && i < (int32_t) keep.size(); i++) {
        out[i] = keep[i];
    }
    return (int32_t) keep.size();
}

int32_t mtmd_merge_chunk_kept(const mtmd_input_chunk * chunk, int32_t * out, int32_t cap) {
    const foveate_decode_rows r = foveate_merge_decode_rows(chunk);
    for (int32_t i = 0; out && i < cap && i < r.n_kept; i++) {
        out[i] = r.kept[i];
    }
    return r.n_kept;
}
