// foveate token merging (RTPrune) for mtmd: the algorithm on one image's projector output
// (mtmd-merge.cpp) and what mtmd's encode hooks call (mtmd-merge-hooks.cpp). Compiled into
// libmtmd; hooked into mtmd.cpp by patches/0008, using what clip.cpp exposes (patches/0007).
// The C API is mtmd-foveate.h; the decode side (mtmd-helper.cpp, patches/0009) is
// mtmd-merge-decode.h.
#pragma once

#include "ggml-backend.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

enum foveate_merge_mode { FOVEATE_MERGE_OFF = 0, FOVEATE_MERGE_FIXED = 1, FOVEATE_MERGE_DYNAMIC = 2 };

// which content rows a keep ratio keeps: the largest L2 norms (RTPrune), or the rows with the
// fewest near-duplicates on the page (a soft count of cosines near 1), so that blank paper,
// whose rows all look alike, goes first (docs/benchmarks.md, "Merging: which rows to drop")
enum foveate_merge_score { FOVEATE_MERGE_SCORE_NORM = 0, FOVEATE_MERGE_SCORE_DUPLICATES = 1 };

// what a row of the image chunk is: content is scored and merged; markers never are
enum foveate_row_kind : uint8_t { FOVEATE_ROW_CONTENT = 0, FOVEATE_ROW_NEWLINE = 1, FOVEATE_ROW_MARKER = 2 };

struct foveate_merge_config {
    int    mode       = FOVEATE_MERGE_OFF;
    double keep_ratio = 1.0;     // FIXED: fraction of content rows kept
    float  alpha      = 0.1f;    // residual weight of the transported rows
    float  dustbin    = 0.2f;    // Sinkhorn dustbin score
    int    n_iter     = 100;     // Sinkhorn iterations
    float  sobel_threshold = 0.2f;
    int    score      = FOVEATE_MERGE_SCORE_NORM;
    float  dup_temperature = 0.05f;  // DUPLICATES: row i's count is sum_j!=i exp((cos_ij - 1) / t)
    bool   consecutive_1d = false;  // 1-D RoPE decode: renumber kept rows instead of original positions
    double auto_floor = 0.0;     // DYNAMIC: keep at least this share (the formula is validated on
                                 // DeepSeek-OCR only; other families get a floor, engine/families.py)
};

// the page's pixels for the text-density term: RGB interleaved, values in [-1, 1]
struct foveate_merge_pixels {
    const float * rgb = nullptr;
    int w = 0, h = 0;
    int patch = 0;               // pixels per token side (one Sobel patch per token)
};

struct foveate_merge_result {
    int64_t n_before = 0;
    double  keep_ratio = 1.0, r_sim = 0.0, r_info = 0.0, ms = 0.0;
    std::vector<int32_t> keep;   // original row ids kept (content + markers), ascending
    std::vector<float>   rows;   // keep.size() rows of d floats: the merged rows
};

// The algorithm (rtprune.md): top-k of the content rows by cfg.score (L2 norm as RTPrune),
// dustbin Sinkhorn from the dropped rows to the kept ones, kept += alpha * T x_dropped,
// newline collapse, markers kept.
// Runs on `backends` (first = preferred, e.g. the projector's GPU; last = CPU).
bool foveate_merge_compute(const std::vector<ggml_backend_t> & backends, int n_threads,
                           const float * embd, int64_t n, int64_t d, const uint8_t * kind,
                           const foveate_merge_pixels & px, const foveate_merge_config & cfg,
                           foveate_merge_result & res, std::string & err);

// text density: mean over token patches of the fraction of Sobel magnitudes > threshold
double foveate_merge_r_info(const foveate_merge_pixels & px, float threshold);

// the chunks one tiled image was split into (DeepSeek-OCR Gundam: tile rows + global view),
// in layout order; tagged at tokenize time so the merge ranks them as one pool
struct foveate_image_group {
    uint64_t serial = 0;                 // unique per tokenized image
    std::vector<const void *> parts;     // const mtmd_image_tokens *
};
std::shared_ptr<foveate_image_group> foveate_image_group_new();

struct clip_ctx;

// per mtmd context: the configuration, the last chunk's result, and the merged rows of the
// other chunks of a tiled image, waiting for their own encode call
struct foveate_merge_state {
    foveate_merge_config config;
    const clip_ctx *     clip = nullptr;       // the vision projector, kept at each encode (markers)
    bool                 has_last = false;
    const void *         last_key = nullptr;   // the image tokens object merged last
    foveate_merge_result last;
    struct pending_chunk {
        uint64_t             serial;
        foveate_merge_result res;              // res.rows: the chunk's merged rows
    };
    std::map<const void *, pending_chunk> pending;
};

struct clip_ctx;
struct clip_image_f32;
struct mtmd_context;

// the merge state of an mtmd context (defined in mtmd.cpp by patches/0008)
foveate_merge_state * mtmd_foveate_state(mtmd_context * ctx);

// What an image chunk encoded with merging on holds, stored on the chunk (its image tokens)
// by the encode hook, so the chunk describes itself to every caller: mtmd's size getters
// (mtmd_input_chunk_get_n_tokens, mtmd_image_tokens_get_n_tokens) report the kept rows,
// mtmd_image_tokens_get_decoder_pos row i's original position, _get_n_pos where n_past goes.
// A caller that copies n_embd x n_tokens floats out of mtmd_get_output_embd (mtmd.h's
// contract) copies exactly the merged rows, and the decode helper knows a copy by its chunk.
struct foveate_chunk_rows {
    std::vector<int32_t> keep;     // original row ids kept, ascending (may be empty: a tiled
                                   // image's part whose rows all went into the others)
    int32_t n_orig = 0;            // the chunk's rows before merging
    bool    consecutive = false;   // 1-D positions renumbered (mtmd_merge_set_1d_positions(ctx, 1))
};
// the record of the chunk whose image tokens are `it`, or null (not merged; defined in mtmd.cpp)
const foveate_chunk_rows * mtmd_foveate_chunk_rows(const struct mtmd_image_tokens * it);
// after an encode: the record of `key` if the last result is its merged rows, else null.
// one_d: the chunk's positions are 1-D (then the context's 1-D setting applies)
std::shared_ptr<const foveate_chunk_rows> foveate_merge_chunk_rows(const foveate_merge_state & st, const void * key,
                                                                   int32_t n_orig, bool one_d);

// one image as mtmd's encode hook hands it over
struct foveate_image_parts {
    std::vector<const void *> parts;        // its chunks' image tokens, in layout order
    std::function<bool(const void * part, std::vector<float> & rows)> encode;  // projector output of a part
    const clip_image_f32 * overview = nullptr;  // the global view, for the text-density term
};

// Called first by the encode hook: forgets the last result; false when merging is off (or
// there is no vision projector), and then the hook must leave everything as stock does.
bool foveate_merge_begin(foveate_merge_state & st, const clip_ctx * clip);

// After foveate_merge_begin returned true: merge the image `key` (a chunk's image tokens,
// whose projector output out_embd holds) is part of, ranking all its parts as one pool (the
// others are encoded here): key's merged rows replace out_embd and become the last result;
// the other parts' wait in st.pending. False (with err) if encoding or the merge graphs fail.
bool foveate_merge_image(foveate_merge_state & st, const clip_ctx * clip, int n_threads, int64_t d,
                         const void * key, uint64_t serial, const foveate_image_parts & img,
                         std::vector<float> & out_embd, std::string & err);

// The encode hook, after the projector wrote the image `key`'s rows into out_embd: with
// merging off, true and nothing touched; on, the image (describe() tells its parts) is merged
// as foveate_merge_image does. False (logged) if that fails.
bool foveate_merge_encoded(foveate_merge_state & st, const clip_ctx * clip, int n_threads, int64_t d,
                           const void * key, uint64_t serial,
                           const std::function<foveate_image_parts()> & describe,
                           std::vector<float> & out_embd);

// a later part of a tiled image merged with an earlier one (same serial): its rows from
// st.pending into out_embd, as the last result; false if there are none
bool foveate_merge_take_pending(foveate_merge_state & st, const void * key, uint64_t serial,
                                std::vector<float> & out_embd);

// split a pooled result over the image's chunks (row ranges offs[p], offs[p+1])
std::vector<foveate_merge_result> foveate_merge_split(const foveate_merge_result & all,
                                                      const std::vector<int64_t> & offs, int64_t d);
