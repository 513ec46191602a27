"""Idefics3 document models (ibm-granite/granite-docling-258M, ds4sd/SmolDocling-256M-preview):
random weights, real shapes.

Both are `Idefics3ForConditionalGeneration`. What llama.cpp's converter makes of them:

* text GGUF: `text_config.architectures` = LlamaForCausalLM (granite-docling) / the SmolVLM
  text model (SmolDocling) -> conversion/llama.py LlamaModel -> LLM arch `llama` (the
  checkpoint's `model.text_model.` prefix dropped): 30 layers of 576, 9 query heads of 64 over
  3 KV heads, SwiGLU 1536, NORM RoPE (1-D) theta 1e5, RMSNorm 1e-5; 9 tensors a layer.
  granite-docling ("Granite 165M") ties its embeddings (no `output.weight`): 272 tensors;
  SmolDocling (SmolLM2-135M) does not: 273 tensors;
* mmproj GGUF (conversion/smolvlm.py SmolVLMModel): projector `idefics3`: a SigLIP(2)-base
  encoder (patch 16, 512 px tiles, 12 layers of 768, 12 heads, LayerNorm 1e-6 with biases,
  GELU-tanh FFN 3072, every linear biased, a learned 1024-row position table), `v.post_ln`,
  then the pixel shuffle (scale factor 4: 32 x 32 patches -> 8 x 8 rows of 16 x 768 = 12288)
  and one linear `mm.model.fc` (12288 -> 576, no bias): 198 tensors. The converter keeps the
  `.embeddings.` tensors (patch conv + bias, position table) in F32 (tensor_force_quant).

mtmd (mtmd.cpp PROJECTOR_TYPE_IDEFICS3, mtmd-image.cpp mtmd_image_preprocessor_idefics3) for
this projector, with `clip.vision.preproc_image_size` (2048) set and no image-token limits:
the page is resized (Lanczos) so its longest edge is 2048 (small pages are scaled *up*), the
short edge int(2048 / aspect) rounded up to even, then stretched to whole 512 px tiles
(ceil both sides), cut into grid_x x grid_y tiles (at most 4 x 4) plus a 512 x 512 global
view of the whole page. Every tile and the global view is its own image chunk of 64 rows
(1024 patches / 4^2); the chunks are separated by *text* tokens, none of them learned rows:

    <fake_token_around_image><row_1_col_1> [64 rows] <fake_token_around_image><row_1_col_2>
    [64 rows] ... "\\n" (after every grid row but the last) ...
    "\\n\\n" <fake_token_around_image><global-img> [64 rows] <fake_token_around_image>

(the HF Idefics3Processor's expansion, with its last row's "\\n" and the global view's "\\n"
tokenized together as "\\n\\n"). mtmd looks "\\n\\n" up as ONE token of the vocab
(lookup_token): a vocab without it would put LLAMA_TOKEN_NULL in the prompt, so the
character vocab here carries a "\\n\\n" token (the real byte-level BPE vocabs have one).
Positions are 1-D (pos type NORMAL), one per row and per text token, consecutive.

Only the tokenizer differs from the real models: a character-level SentencePiece vocab
(gguf_specs.char_vocab) with the models' special tokens at their real ids, padded with
unused tokens to the real vocab size, instead of their byte-level BPE (`gpt2`).
"""
from __future__ import annotations

import math
from pathlib import Path

from .gguf_specs import (cut_depths, CONTROL, F16, F32, NORMAL, Spec, add_char_tokenizer,
                         add_llm_head, char_vocab, dense_decoder, layer_norm, pick_shape,
                         vit_blocks, write_pair_files, pair_sizes)

# --- the real numbers --------------------------------------------------------------------------
# granite-docling-258M. Sources: config.json, tokenizer_config.json, special_tokens_map.json,
# added_tokens.json and chat_template.jinja as uploaded from the HF repo (stored copy: github
# pgadet-wq/granite-docling-258M, commit 587b823); preprocessor_config.json was not in that
# copy: its size / mean / std are as quoted (as "ibm-granite/granite-docling-258M's
# preprocessor_config.json") in a third party's test (size.longest_edge 2048, max_image_size
# 512, mean = std = 0.5, Lanczos), the same as SmolVLM-256M's; the converter and loader are
# this tree's (conversion/smolvlm.py, conversion/llama.py, tools/mtmd).
GRANITE_DOCLING_258M: dict = {
    # --- text decoder: config.json text_config (LlamaForCausalLM, model_type llama)
    "arch": "llama",
    "n_vocab": 100352,           # text_config.vocab_size (= config.json vocab_size)
    "n_embd": 576,               # text_config.hidden_size
    "n_layer": 30,               # text_config.num_hidden_layers
    "n_head": 9,                 # text_config.num_attention_heads
    "n_head_kv": 3,              # text_config.num_key_value_heads
    "head_dim": 64,              # text_config.head_dim
    "n_ff": 1536,                # text_config.intermediate_size
    "n_ctx_train": 8192,         # text_config.max_position_embeddings
    "rope_theta": 100000.0,      # text_config.rope_theta (rope_scaling null)
    "rms_eps": 1e-5,             # text_config.rms_norm_eps
    "tied_embeddings": True,     # text_config.tie_word_embeddings (and the top level's)
    # --- projector: config.json vision_config (idefics3_vision) + scale_factor
    "projector_type": "idefics3",
    "v_image_size": 512,         # vision_config.image_size (the tile)
    "v_patch": 16,               # vision_config.patch_size
    "v_embd": 768,               # vision_config.hidden_size
    "v_layer": 12,               # vision_config.num_hidden_layers
    "v_head": 12,                # vision_config.num_attention_heads
    "v_ff": 3072,                # vision_config.intermediate_size
    "v_eps": 1e-6,               # vision_config.layer_norm_eps
    "scale_factor": 4,           # config.json scale_factor -> clip.vision.projector.scale_factor
    "longest_edge": 2048,        # preprocessor_config size.longest_edge (quoted, see above)
                                 # -> clip.vision.preproc_image_size
    "image_mean": [0.5, 0.5, 0.5],   # preprocessor_config image_mean (quoted)
    "image_std": [0.5, 0.5, 0.5],    # preprocessor_config image_std (quoted)
    # published size: "258M" (model card); tensors here: 164.0M text + 93.5M projector
}

# SmolDocling-256M-preview. Its own config.json / tokenizer files were not readable here. It is
# a fine-tune of HuggingFaceTB/SmolVLM-256M-Instruct (model card: base_model), and these are
# that model's numbers (config.json / preprocessor_config.json / tokenizer files as recorded,
# with a full tensor inventory and parameter total 256,484,928, in a stored reference study of
# SmolVLM-256M-Instruct at revision 7e3e67e; SmolLM2-135M's config for the text model), which
# the SmolDocling uploads agree with where they can be seen: bf16 model.safetensors of 513 MB
# (= 256.5M parameters, so the lm_head is untied: tied it would be 228M), "SigLIP 12L 768d 12
# heads patch 16 512px, pixel shuffle scale 4 (1024 -> 64 tokens) + Linear(12288 -> 576),
# SmolLM2-135M 30L 576d GQA 9/3" (the cstr/smoldocling-GGUF model card). That each number
# below is SmolDocling's and not only its base's is a guess where no SmolDocling file says it.
SMOLDOCLING_256M: dict = {
    **GRANITE_DOCLING_258M,
    "n_vocab": 49280,            # SmolVLM-256M vocab_size (SmolLM2's 49152 + 128 added)
    "tied_embeddings": False,    # SmolVLM-256M tie_word_embeddings false (lm_head [49280, 576])
    # text: SmolLM2-135M = the same 30 x 576 / 9 / 3 / 64 / 1536, rope_theta 1e5, rms 1e-5,
    # max_position_embeddings 8192; vision: the same SigLIP-base 512 / 16 / 768 / 12 / 3072,
    # layer_norm_eps 1e-6, scale_factor 4, preprocessor size.longest_edge 2048, mean/std 0.5
    # published size: "256M" (model card); tensors here: 163.0M text + 93.5M projector
}

SHAPES: dict[str, dict] = {"granite-docling-258m": GRANITE_DOCLING_258M,
                           "smoldocling-256m": SMOLDOCLING_256M}

NAME = "foveate-{shape}-shape (random weights)"

# --- the chat templates, verbatim --------------------------------------------------------------
# granite-docling: chat_template.jinja of the HF upload (pgadet-wq/granite-docling-258M,
# commit 587b823). llama.cpp detects it as LLM_CHAT_TEMPLATE_GRANITE_3_X (it contains
# "<|start_of_role|>" and no <tool_call>), which writes what the jinja writes for a string
# content: "<|start_of_role|>user<|end_of_role|>{content}<|end_of_text|>\n
# <|start_of_role|>assistant<|end_of_role|>".
GRANITE_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' -}}\n"
    "{%- if message['content'] is string -%}\n"
    "{{- message['content'] -}}\n"
    "{%- else -%}\n"
    "{%- for part in message['content'] -%}\n"
    "{%- if part['type'] == 'text' -%}\n"
    "{{- part['text'] -}}\n"
    "{%- elif part['type'] == 'image' -%}\n"
    "{{- '<image>' -}}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- endif -%}\n"
    "{{- '<|end_of_text|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|start_of_role|>assistant' -}}\n"
    "{%- if controls -%}{{- ' ' + controls | tojson() -}}{%- endif -%}\n"
    "{{- '<|end_of_role|>' -}}\n"
    "{%- endif -%}\n"
)

# SmolDocling: SmolVLM-256M-Instruct's chat_template.json (= its tokenizer_config's), as two
# stored sources record it verbatim; SmolDocling's own chat_template.json (430 bytes against
# the base's 429) was not readable here: that it is the same template is a guess. llama.cpp
# detects it as LLM_CHAT_TEMPLATE_SMOLVLM (<|im_start|> + <end_of_utterance>), which writes
# "<|im_start|>User: {content}<end_of_utterance>\nAssistant:"; the jinja itself reads only
# lists of parts (a string content renders empty) and writes "User:<image>{text}" (no space
# after the colon when the first part is the image), which foveate's jinja path reproduces.
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

CHAT_TEMPLATES = {"granite-docling-258m": GRANITE_TEMPLATE, "smoldocling-256m": SMOLVLM_TEMPLATE}
CHAT_TEMPLATE = GRANITE_TEMPLATE   # the default shape's

# --- special tokens at their real ids ------------------------------------------------------------
# granite-docling: tokenizer_config.json added_tokens_decoder (all "special": true -> CONTROL);
# bos <|start_of_role|>, eos = pad <|end_of_text|>, unk <|unk|>, add_bos_token false. Its
# added_tokens.json also names <end_of_utterance> at 100352, which is past vocab_size (this
# tree's converter asserts every id < vocab_size, and writes tokens only up to it): left out.
_GRANITE_NAMES = (
    "<|pad|> <|end_of_text|> <row_1_col_1> <row_1_col_2> <text> <row_1_col_3> <row_1_col_4> "
    "<row_2_col_1> <|start_of_role|> <|end_of_role|> </title> <row_2_col_2> <row_2_col_3> "
    "<title> <image> <caption> </caption> <footnote> </footnote> <formula> </formula> "
    "<list_item> </list_item> <page_footer> </page_footer> <page_header> </page_header> "
    "<picture> </picture> <section_header_level_1> </section_header_level_1> "
    "<section_header_level_2> </section_header_level_2> <section_header_level_3> "
    "</section_header_level_3> <section_header_level_4> </section_header_level_4> "
    "<section_header_level_5> </section_header_level_5> <section_header_level_6> "
    "</section_header_level_6> <otsl> </otsl> <checkbox_selected> </checkbox_selected> "
    "<checkbox_unselected> </checkbox_unselected> <form> </form> <key_value_region> "
    "</key_value_region> <key_ </key_ <value_ </value_ <link_ <chart> </chart> <page_break> "
    "<smiles> </smiles> </text> <paragraph> </paragraph> <references> </references> "
    "<ordered_list> </ordered_list> <unordered_list> </unordered_list> <group> <doctag> "
    "</doctag> <rec_ <fcel> <ecel> <lcel> <ucel> <xcel> <nl> <ched> <rhed> <|unk|> "
    "<fake_token_around_image> <global-img> <row_2_col_4> <row_3_col_1> <row_3_col_2> "
    "<row_3_col_3> <row_3_col_4> <row_4_col_1> <row_4_col_2> <row_4_col_3> <row_4_col_4> "
    "<code> </code>").split()
GRANITE_ADDED: dict[str, int] = {t: 100256 + i for i, t in enumerate(_GRANITE_NAMES)}

# SmolDocling: SmolVLM-256M-Instruct's added tokens (the reference study above): 0..2 SmolLM2's,
# <global-img> 49152, <row_r_col_c> 49153 + (r-1)*6 + (c-1) for r, c in 1..6, 49189 / 49190,
# <end_of_utterance> 49279 (eos); bos <|im_start|>, pad <|im_end|>. The base's 88 ids between
# (49191..49278, <|reserved_special_token_i|> there) hold SmolDocling's DocTags in its own
# tokenizer (a guess: its added_tokens.json has the base's 128 entries but is 1 kB smaller);
# which tag sits at which id was not readable here, so they stay unused.
SMOL_ADDED: dict[str, int] = {
    "<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<global-img>": 49152,
    **{f"<row_{r}_col_{c}>": 49153 + (r - 1) * 6 + (c - 1)
       for r in range(1, 7) for c in range(1, 7)},
    "<fake_token_around_image>": 49189, "<image>": 49190, "<end_of_utterance>": 49279,
}

ADDED = {"granite-docling-258m": GRANITE_ADDED, "smoldocling-256m": SMOL_ADDED}
# (bos, eos, pad, unk) as the converter's SpecialVocab takes them from tokenizer_config.json
SPECIALS = {"granite-docling-258m": ("<|start_of_role|>", "<|end_of_text|>", "<|end_of_text|>",
                                     "<|unk|>"),
            "smoldocling-256m": ("<|im_start|>", "<end_of_utterance>", "<|im_end|>", None)}

# The text mtmd writes around and between the image chunks (tokenized with specials parsed)
TILE_START = "<fake_token_around_image><row_{r}_col_{c}>"
ROW_END = "\n"
GLOBAL_START = "\n\n<fake_token_around_image><global-img>"
GLOBAL_END = "<fake_token_around_image>"
# one token in the real vocabs; mtmd's lookup_token needs it to be one here too (not pinned:
# its real ids are not known here)
DOUBLE_NEWLINE = "\n\n"

# the published page prompt (model cards' "Full conversion" instruction; docling's
# DOCLING_BASE_PAGE_PROMPT for both models)
PAGE_PROMPT = "Convert this page to docling."


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    return cut_depths(layers, S["n_layer"], S["v_layer"])


def vocab_of(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The character vocab: real size with the specials at their real ids (vocab None), or
    padded only to `vocab` (at least what the characters and specials need)."""
    S = _shape(shape)
    added = ADDED[shape]
    special = [(t, CONTROL) for t in added] + [(DOUBLE_NEWLINE, NORMAL)]
    if vocab is None:
        return char_vocab(special, S["n_vocab"], at=added)
    return char_vocab(special, vocab)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_layer, _ = _depths(S, layers)
    n_vocab = len(vocab_of(shape, vocab)[0])
    d, ff, hd = S["n_embd"], S["n_ff"], S["head_dim"]
    q, kv = S["n_head"] * hd, S["n_head_kv"] * hd
    return dense_decoder(n_layer, n_vocab, d, ff, q, kv, S["tied_embeddings"])


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    _, n_v = _depths(S, layers)
    vd, vff, p_ = S["v_embd"], S["v_ff"], S["v_patch"]
    n_pos = (S["v_image_size"] // p_) ** 2                     # 32 x 32 = 1024
    width = vd * S["scale_factor"] ** 2                         # 768 x 16 = 12288
    # the `.embeddings.` tensors stay F32 (SmolVLMModel.tensor_force_quant)
    return ([("v.patch_embd.weight", (vd, 3, p_, p_), F32, "w"),
             ("v.patch_embd.bias", (vd,), F32, "zeros"),
             ("v.position_embd.weight", (n_pos, vd), F32, "w")]
            + vit_blocks(n_v, vd, vff)                           # mlp.fc1 / fc2: ffn_up / down
            + layer_norm("v.post_ln", vd)                        # post_layernorm
            + [("mm.model.fc.weight", (S["n_embd"], width), F16, "w")])   # modality_projection.proj


def _text_kv(shape: str, n_layer: int, vocab: int | None):
    S = _shape(shape)
    tokens, types = vocab_of(shape, vocab)
    bos, eos, pad, unk = SPECIALS[shape]

    def kv(w) -> None:
        a = S["arch"]
        add_llm_head(w, NAME.format(shape=shape), n_layer, S)
        w.add_float32(f"{a}.rope.freq_base", S["rope_theta"])
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", S["rms_eps"])
        w.add_uint32(f"{a}.attention.key_length", S["head_dim"])
        w.add_uint32(f"{a}.attention.value_length", S["head_dim"])
        w.add_uint32("general.file_type", 1)  # MOSTLY_F16
        w.add_uint32(f"{a}.vocab_size", len(tokens))          # LlamaModel.set_gguf_parameters
        w.add_uint32(f"{a}.rope.dimension_count", S["head_dim"])
        # add_bos false: granite-docling's tokenizer_config says so; SmolDocling's is a guess
        # (SmolLM2's pre-tokenizer "smollm" defaults to no BOS, and the template writes
        # <|im_start|> itself)
        add_char_tokenizer(w, tokens, types, bos=bos, eos=eos, pad=pad,
                           unk=unk or "<unk>", add_bos=False)
        w.add_chat_template(CHAT_TEMPLATES[shape])
    return kv


def _mmproj_kv(shape: str, n_v: int):
    S = _shape(shape)

    def kv(w) -> None:
        w.add_type("mmproj")
        w.add_name(NAME.format(shape=shape) + " mmproj")
        w.add_uint32("general.file_type", 1)
        w.add_bool("clip.has_vision_encoder", True)
        w.add_uint32("clip.vision.projection_dim", S["n_embd"])
        w.add_uint32("clip.vision.image_size", S["v_image_size"])
        w.add_uint32("clip.vision.patch_size", S["v_patch"])
        w.add_uint32("clip.vision.embedding_length", S["v_embd"])
        w.add_uint32("clip.vision.feed_forward_length", S["v_ff"])
        w.add_uint32("clip.vision.block_count", n_v)
        w.add_uint32("clip.vision.attention.head_count", S["v_head"])
        w.add_array("clip.vision.image_mean", S["image_mean"])
        w.add_array("clip.vision.image_std", S["image_std"])
        # SmolVLMModel.set_gguf_parameters, in its order
        w.add_string("clip.projector_type", S["projector_type"])
        w.add_float32("clip.vision.attention.layer_norm_epsilon", S["v_eps"])
        w.add_uint32("clip.vision.projector.scale_factor", S["scale_factor"])
        w.add_bool("clip.use_gelu", True)
        w.add_uint32("clip.vision.preproc_image_size", S["longest_edge"])
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    n_t, n_v = _depths(_shape(shape), layers)
    text = text_tensors(shape, layers, vocab)
    return ((_shape(shape)["arch"], text, _text_kv(shape, n_t, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, n_v)))


def write_pair(out_dir, shape: str = "granite-docling-258m", layers: int | None = None,
               seed: int = 0, vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str = "granite-docling-258m", layers: int | None = None,
          vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))


def tile_grid(width: int, height: int, shape: str = "granite-docling-258m") -> tuple[int, int]:
    """(grid_x, grid_y): the tiles mtmd cuts a width x height page into
    (mtmd_image_preprocessor_idefics3: longest edge to 2048, the other int(2048 / aspect)
    made even, each side ceiled to whole 512 px tiles)."""
    S = _shape(shape)
    tile, edge = S["v_image_size"], S["longest_edge"]
    aspect = width / height
    if width >= height:
        w, h = edge, int(edge / aspect)
        h += h % 2
    else:
        w, h = int(edge * aspect), edge
        w += w % 2
    return math.ceil(w / tile), math.ceil(h / tile)


def rows_per_view(shape: str = "granite-docling-258m") -> int:
    """Image rows of one tile or of the global view: (512 / 16)^2 / 4^2 = 64."""
    S = _shape(shape)
    return (S["v_image_size"] // S["v_patch"] // S["scale_factor"]) ** 2


def image_tokens(width: int, height: int, shape: str = "granite-docling-258m") -> int:
    """Image rows (embedding rows, what Stats.image_tokens counts) mtmd makes of a width x
    height page: 64 per tile and 64 for the global view, (grid_x * grid_y + 1) * 64. The text
    tokens mtmd puts between the chunks are not counted here: see marker_tokens()."""
    gx, gy = tile_grid(width, height, shape)
    return (gx * gy + 1) * rows_per_view(shape)


def marker_tokens(width: int, height: int, shape: str = "granite-docling-258m") -> int:
    """The text tokens mtmd writes between and around the page's image chunks (one token per
    special): <fake_token_around_image><row_r_col_c> before each tile (2), "\\n" after each
    grid row but the last, "\\n\\n" <fake_token_around_image><global-img> before the global
    view (3) and <fake_token_around_image> after it (1)."""
    gx, gy = tile_grid(width, height, shape)
    return 2 * gx * gy + (gy - 1) + 3 + 1


def image_chunks(width: int, height: int, shape: str = "granite-docling-258m") -> int:
    """Image chunks of the page: one per tile, and the global view last."""
    gx, gy = tile_grid(width, height, shape)
    return gx * gy + 1
