"""Random-weight GGUF pairs with the exact shapes of Qwen3-VL, dense models
(Qwen/Qwen3-VL-2B-Instruct, Qwen/Qwen3-VL-4B-Instruct), as llama.cpp's converter
(conversion/qwen3vl.py: Qwen3VLTextModel on Qwen3Model, Qwen3VLVisionModel) writes them.

* text model: llama.cpp arch `qwen3vl` (src/models/qwen3vl.cpp), the Qwen3 decoder (GQA,
  head 128, per-head RMS q/k norms, no biases, SwiGLU) with *interleaved* M-RoPE: rope type
  LLAMA_ROPE_TYPE_IMROPE, sections (t, h, w, extra) = (24, 20, 20, 0) of the 64 rotary pairs,
  theta 5e6. mtmd gives image tokens 4 positions each (t, y, x, 0), as for Qwen2-VL.
  `qwen3vl.n_deepstack_layers` = 3: the text model's input rows are n_embd * (1 + 3) wide;
  for layers il < 3 the graph adds input columns [(il+1) n_embd, (il+2) n_embd) to the
  residual after the layer (the deepstack features). Text tokens are zero-padded to that
  width, so only image rows carry deepstack features.
* projector: mtmd projector type `qwen3vl_merger` (tools/mtmd/models/qwen3vl.cpp): a ViT of
  24 layers of 1024 (16 heads, patch 16, Conv3d patch embedding split into two Conv2d kernels,
  with a bias), a learned 48 x 48 position table (2304 rows, bilinearly resized to the page's
  patch grid), LayerNorm with bias, GELU (tanh) MLP, 2-D M-RoPE; the merger (LayerNorm over
  1024, 2x2 patches concatenated to 4096, Linear 4096->4096, GELU, Linear 4096->n_embd);
  and at ViT layers 5, 11, 17 (deepstack_visual_indexes) a deepstack merger each (LayerNorm
  over 4096 *after* the 2x2 shuffle, Linear 4096->4096, GELU, Linear 4096->n_embd), whose
  outputs are concatenated to the merger's along the feature axis. So an mmproj row (one
  image token) is n_embd * (1 + 3) wide: main embedding, then deepstack 5, 11, 17.
  clip.cpp finds the deepstack layers by their tensors (v.deepstack.{il}.*), not by the
  `clip.vision.is_deepstack_layers` key the converter also writes.
  Tokens: page resized to multiples of 32 px (patch 16 x merge 2), one token per 32 x 32.

Cut stacks (`layers`): the ViT is cut to max(layers, 3) so all three deepstack mergers stay
and the rows keep their real width (the text model's n_embd * 4 input must equal the
projector's output width, mtmd checks it); in a cut ViT of depth d the deepstack layers are
floor(i * d / 24) for i in 5, 11, 17 (kept distinct). The text stack is cut to
max(layers, 4): llama.cpp's qwen3vl graph adds deepstack slice il after text layer il < 3,
and on the *last* layer it has already pruned the rows to the outputs (inp_out_ids), so a
text stack of 3 or fewer layers aborts on an image batch with
"GGML_ASSERT(ggml_can_repeat(b, a)) failed" in ggml_add (src/models/qwen3vl.cpp); the real
28 / 36 layers never hit it.

Image markers: as Qwen2-VL, mtmd wraps the image in the text tokens "<|vision_start|>" ...
"<|vision_end|>" (control tokens of the vocab, outside the image chunk); the chunk is only
merged patch rows, no newline / separator rows. Deepstack is extra row *width*, not rows.

Only the tokenizer differs from the real model (Qwen2-style byte-level BPE, `gpt2` / pre
`qwen2`): a character-level SentencePiece vocab with Qwen3's special tokens at their real ids,
padded with unused tokens to the real vocab size. The chat template is a reconstruction of
Qwen3-VL-Instruct's (see CHAT_TEMPLATE); llama.cpp detects it as LLM_CHAT_TEMPLATE_CHATML.

Output is noise: these files are for timing and plumbing at the real model's size.
"""
from __future__ import annotations

from pathlib import Path

from .gguf_specs import (CONTROL, F16, F32, UNKNOWN, USER, Spec, add_char_tokenizer, add_llm_head,
                         char_vocab, dense_decoder, layer_norm, linears, pick_shape, qwen_added,
                         qwen_vl_merger, vit_blocks, write_pair_files, pair_sizes)

ARCH = "qwen3vl"
PROJECTOR = "qwen3vl_merger"

# vision_config, shared by Qwen3-VL-2B and -4B (identical but for out_hidden_size), and
# preprocessor_config.json
_VISION = {
    "v_embd": 1024,          # vision_config.hidden_size
    "v_layer": 24,           # vision_config.depth
    "v_head": 16,            # vision_config.num_heads
    "v_ff": 4096,            # vision_config.intermediate_size
    "patch": 16,             # vision_config.patch_size (temporal_patch_size 2: two kernels)
    "merge": 2,              # vision_config.spatial_merge_size
    "n_pos_embd": 2304,      # vision_config.num_position_embeddings (48 x 48)
    "deepstack": (5, 11, 17),  # vision_config.deepstack_visual_indexes
    "image_mean": (0.5, 0.5, 0.5),  # preprocessor_config.json
    "image_std": (0.5, 0.5, 0.5),
}

# text_config of each model's config.json; the parameter counts are what these numbers give
# (the published model cards round them: "2B" ~ 2.13e9, "4B" ~ 4.44e9).
SHAPES: dict[str, dict] = {
    "qwen3-vl-2b": {
        "hf": "Qwen/Qwen3-VL-2B-Instruct",
        "n_vocab": 151936,       # text_config.vocab_size
        "n_embd": 2048,          # text_config.hidden_size (= vision_config.out_hidden_size)
        "n_layer": 28,           # text_config.num_hidden_layers
        "n_head": 16,            # text_config.num_attention_heads
        "n_head_kv": 8,          # text_config.num_key_value_heads
        "head_dim": 128,         # text_config.head_dim
        "n_ff": 6144,            # text_config.intermediate_size
        "n_ctx_train": 262144,   # text_config.max_position_embeddings
        "rope_theta": 5e6,       # text_config.rope_theta
        "rms_eps": 1e-6,         # text_config.rms_norm_eps (also the vision LayerNorm eps)
        "mrope_sections": (24, 20, 20, 0),  # rope_scaling.mrope_section (interleaved), padded
        "tied": True,            # tie_word_embeddings
        **_VISION,
    },
    "qwen3-vl-4b": {
        "hf": "Qwen/Qwen3-VL-4B-Instruct",
        "n_vocab": 151936,       # text_config.vocab_size
        "n_embd": 2560,          # text_config.hidden_size (= vision_config.out_hidden_size)
        "n_layer": 36,           # text_config.num_hidden_layers
        "n_head": 32,            # text_config.num_attention_heads
        "n_head_kv": 8,          # text_config.num_key_value_heads
        "head_dim": 128,         # text_config.head_dim
        "n_ff": 9728,            # text_config.intermediate_size
        "n_ctx_train": 262144,   # text_config.max_position_embeddings
        "rope_theta": 5e6,       # text_config.rope_theta
        "rms_eps": 1e-6,         # text_config.rms_norm_eps
        "mrope_sections": (24, 20, 20, 0),  # rope_scaling.mrope_section (interleaved), padded
        "tied": True,            # tie_word_embeddings
        **_VISION,
    },
}

# Reconstruction of Qwen3-VL-Instruct's chat_template: the render_content macro, the tools /
# system preamble, the user / system and tool branches and the tool-call rendering are as in
# published Qwen3-VL templates; the assistant branch and the generation prompt follow the
# Instruct variant (no <think> handling, "<|im_start|>assistant\n"), reconstructed. llama.cpp
# (llama_chat_apply_template) only uses it to detect the format: "<|im_start|>" -> chatml.
CHAT_TEMPLATE = """{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- macro render_content(content, do_vision_count) %}
    {%- if content is string %}
        {{- content }}
    {%- else %}
        {%- for item in content %}
            {%- if 'image' in item or 'image_url' in item or item.type == 'image' %}
                {%- if do_vision_count %}
                    {%- set image_count.value = image_count.value + 1 %}
                {%- endif %}
                {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                <|vision_start|><|image_pad|><|vision_end|>
            {%- elif 'video' in item or item.type == 'video' %}
                {%- if do_vision_count %}
                    {%- set video_count.value = video_count.value + 1 %}
                {%- endif %}
                {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                <|vision_start|><|video_pad|><|vision_end|>
            {%- elif 'text' in item %}
                {{- item.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
{%- endmacro %}
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {{- render_content(messages[0].content, false) + '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' + render_content(messages[0].content, false) + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- set content = render_content(message.content, True) %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Qwen3 tokenizer's added tokens at their real ids: the <|...|> ones are special (control),
# the tool / think tags are not (user-defined)
SPECIAL_IDS = qwen_added()
SPECIAL = [("<unk>", UNKNOWN)] + [(t, CONTROL if t.startswith("<|") else USER)
                                  for t in SPECIAL_IDS]
BOS, EOS, PAD = "<|endoftext|>", "<|im_end|>", "<|endoftext|>"  # config.json bos / eos, pad

NAME = "foveate-{shape}-shape (random weights)"


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    """(text, vision) layer counts; `layers` caps both, the ViT at no fewer layers than
    deepstack mergers (3) and the text stack at no fewer than one more (4; see the module
    docstring: llama.cpp aborts when the last text layer receives deepstack features)."""
    if layers is None:
        return S["n_layer"], S["v_layer"]
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    n_ds = len(S["deepstack"])
    return (min(max(layers, n_ds + 1), S["n_layer"]),
            min(max(layers, n_ds), S["v_layer"]))


def deepstack_layers(shape: str, layers: int | None = None) -> tuple[int, ...]:
    """The ViT layers with a deepstack merger: the real ones, or spread over a cut ViT."""
    S = _shape(shape)
    d = _depths(S, layers)[1]
    if d == S["v_layer"]:
        return tuple(S["deepstack"])
    out: list[int] = []
    for i in S["deepstack"]:
        out.append(max(i * d // S["v_layer"], out[-1] + 1 if out else 0))
    assert out[-1] < d
    return tuple(out)


def vocab_tokens(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The char vocab: real size and real special-token ids, or padded to `vocab` only."""
    S = _shape(shape)
    n = S["n_vocab"] if vocab is None else vocab
    at = SPECIAL_IDS if n > max(SPECIAL_IDS.values()) else None
    return char_vocab(SPECIAL, n, at=at)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_layer = _depths(S, layers)[0]
    n_vocab = len(vocab_tokens(shape, vocab)[0])
    d, ff, hd = S["n_embd"], S["n_ff"], S["head_dim"]
    q, kv = S["n_head"] * hd, S["n_head_kv"] * hd
    return dense_decoder(n_layer, n_vocab, d, ff, q, kv, S["tied"],
                         qk_norm=("k", "q"), head_dim=hd)   # k_norm first, as converted


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_v = _depths(S, layers)[1]
    ds = set(deepstack_layers(shape, layers))
    vd, vff, p, out = S["v_embd"], S["v_ff"], S["patch"], S["n_embd"]
    merged = vd * S["merge"] ** 2                                     # 4096
    t: list[Spec] = [("v.patch_embd.weight", (vd, 3, p, p), F16, "w"),     # Conv3d frame 0
                     ("v.patch_embd.weight.1", (vd, 3, p, p), F16, "w"),   # frame 1
                     ("v.patch_embd.bias", (vd,), F32, "zeros"),
                     ("v.position_embd.weight", (S["n_pos_embd"], vd), F32, "w")]  # forced F32
    t += vit_blocks(n_v, vd, vff, fused_qkv=True)                     # fused qkv, as converted
    for i in sorted(ds):                                               # deepstack_merger_list
        b = f"v.deepstack.{i}."
        t += (layer_norm(b + "norm", merged) + linears(b, ["fc1"], merged, merged)
              + linears(b, ["fc2"], out, merged))
    return t + qwen_vl_merger(vd, S["merge"], out)   # merger.norm, linear_fc1, linear_fc2


def _text_kv(shape: str, n_layer: int, vocab: int | None):
    S = _shape(shape)

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_tokens(shape, vocab)
        add_llm_head(w, NAME.format(shape=shape), n_layer, S)
        w.add_rope_dimension_sections(list(S["mrope_sections"]))
        w.add_rope_freq_base(S["rope_theta"])
        w.add_layer_norm_rms_eps(S["rms_eps"])
        w.add_key_length(S["head_dim"])
        w.add_value_length(S["head_dim"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_num_deepstack_layers(len(S["deepstack"]))
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, pad=PAD, add_bos=False)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(shape: str, layers: int | None):
    S = _shape(shape)
    n_v = _depths(S, layers)[1]
    ds = set(deepstack_layers(shape, layers))

    def kv(w) -> None:
        import gguf

        w.add_type("mmproj")
        w.add_name(NAME.format(shape=shape) + " mmproj")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_clip_has_vision_encoder(True)
        w.add_vision_projection_dim(S["n_embd"])       # the text n_embd (rows are 4x that)
        w.add_vision_image_size(int(S["n_pos_embd"] ** 0.5 * S["patch"]))  # 768, derived
        w.add_vision_patch_size(S["patch"])
        w.add_vision_embedding_length(S["v_embd"])
        w.add_vision_feed_forward_length(S["v_ff"])
        w.add_vision_block_count(n_v)
        w.add_vision_head_count(S["v_head"])
        w.add_vision_image_mean(list(S["image_mean"]))
        w.add_vision_image_std(list(S["image_std"]))
        w.add_clip_projector_type(PROJECTOR)
        w.add_vision_use_gelu(True)
        w.add_vision_spatial_merge_size(S["merge"])
        w.add_vision_attention_layernorm_eps(S["rms_eps"])
        w.add_vision_is_deepstack_layers([i in ds for i in range(n_v)])
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    n_t, n_v = _depths(_shape(shape), layers)
    return ((ARCH, text_tensors(shape, layers, vocab), _text_kv(shape, n_t, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, layers)))


def write_pair(out_dir, shape: str, layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str, layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))
