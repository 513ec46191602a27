"""Granite Vision 4.1 (ibm-granite/granite-vision-4.1-4b, `Granite4VisionForConditionalGeneration`):
random weights, real shapes, as llama.cpp's converter writes it.

What the converter makes of it (conversion/granite.py: Granite4VisionMmprojModel for the mmproj;
the text model by text_config.architectures -> GraniteModel, or GraniteHybridModel for the
all-attention `granitemoehybrid` text of granite-4.0-3b-vision, which it turns into arch
`granite` too):

* text GGUF: LLM arch `granite` (src/models/granite.cpp): 40 layers of 2560, 40 query heads of
  64 over 8 KV heads, no biases, SwiGLU 8192, RoPE (NORM) theta 1e7, Granite's multipliers
  (embedding 12, attention 1/64, residual 0.22, logits / 10), and `granite.deepstack_mapping`:
  per text layer the projector stream added to the residual *before* that layer (-1 none; the
  first stream is the input embedding itself). The text model's input rows are n_embd x 8
  wide (llama_hparams::n_embd_inp: one slice per projector); text tokens are zero-padded;
* mmproj GGUF: projector `granite4_vision` (tools/mtmd/models/granite4-vision.cpp): a SigLIP2
  so400m ViT (patch 16, tile 384, 27 layers of 1152, 16 heads, GELU-tanh FFN 4304, LayerNorm
  with biases, 24 x 24 learned positions), then 8 Window-Q-Former projectors (`v.proj_blk.N`),
  each reading one ViT layer: LayerNorm, 8 x 8 windows of patches cross-attended by 4 x 4
  queries (a 1-layer BLIP-2 Q-Former, 1152 wide, 18 heads of 64, FFN 3072, LayerNorm eps 1e-12;
  the queries are the window's average-pooled (layerwise) or strided (spatial, one of 4
  offsets) features plus a learned query), and `linear` 1152 -> 2560. Streams are ordered by
  their text layer: 4 "layerwise" ones (ViT layers 26, 20, 14, 8 -> text layers 0, 3, 6, 9)
  then 4 "spatial" ones (ViT layer 26, offsets 0..3 -> text layers 12, 15, 18, 21); their
  outputs are concatenated per row (8 x 2560 = 20480 wide). `v.image_newline` (2560) is the
  learned newline, repeated across the 8 slices.

mtmd (mtmd_image_preprocessor_granite, clip.cpp clip_n_output_tokens, granite4-vision.cpp
build_anyres_assembly) for this projector: llava-next "anyres". The page's best grid among the
27 `image_grid_pinpoints` (select_best_resolution: most effective pixels, then least waste) is
cut into gx x gy tiles of 384, plus a 384 x 384 overview; all are encoded in ONE image chunk:
the overview's 12 x 12 = 144 rows, then the tile grid (gx*12 x gy*12 rows, the rows covering
only the resize padding dropped, llava-next's unpad) read row by row with one learned newline
row after each grid row. mtmd adds no text tokens before the chunk and the text token "\n"
after it. Positions are 1-D (rope NORM, mtmd pos type NORMAL).

Only the tokenizer differs from the real model: a character-level SentencePiece vocab with
Granite's special tokens at their real ids, padded to the real 100353, instead of Granite's
byte-level BPE.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .gguf_specs import (CONTROL, F16, F32, UNKNOWN, Spec, add_char_tokenizer, add_llm_head,
                         char_vocab, cut_depths, dense_decoder, layer_norm, linears, pick_shape,
                         vit_blocks, write_pair_files, pair_sizes)

# The real numbers. Sources: granite-vision-4.1-4b's config.json as restated by a public test
# fixture of a Granite Vision 4.1 engine (docling MLX, `_valid_config`: text_config, vision_config,
# downsample_rate, deepstack_layer_map, spatial_*, image_grid_pinpoints, image_token_index,
# eos_token_id), the same vision / deepstack / downsample numbers in mlxcel's Granite 4 Vision
# test for granite-4.0-3b-vision, transformers' Granite4VisionConfig (the Q-Former defaults:
# 1 layer, FFN 3072, heads = hidden / 64) and docs/model_doc/granite4_vision.md, and llama.cpp's
# converter and loaders in this tree.
GRANITE_VISION_41_4B: dict = {
    # --- text decoder: text_config -> LLM arch granite
    "arch": "granite",
    "n_vocab": 100353,           # text_config.vocab_size (100352 + the <image> token)
    "n_embd": 2560,              # text_config.hidden_size
    "n_layer": 40,               # text_config.num_hidden_layers
    "n_head": 40,                # text_config.num_attention_heads (head 64)
    "n_head_kv": 8,              # text_config.num_key_value_heads
    "n_ff": 8192,                # text_config.intermediate_size
    "n_ctx_train": 131072,       # guess: not in the fixture; Granite 4.x's max_position_embeddings
    "rope_theta": 10_000_000.0,  # text_config.rope_theta
    "rms_eps": 1e-5,             # text_config.rms_norm_eps
    "attention_scale": 0.015625, # text_config.attention_multiplier
    "embedding_scale": 12.0,     # text_config.embedding_multiplier
    "residual_scale": 0.22,      # text_config.residual_multiplier
    "logit_scale": 10.0,         # text_config.logits_scaling
    "tied_embeddings": True,     # guess: not in the fixture; Granite 4.x language models tie
    # --- projector
    "projector_type": "granite4_vision",
    "v_image_size": 384,         # vision_config.image_size (the tile)
    "v_patch": 16,               # vision_config.patch_size
    "v_embd": 1152,              # vision_config.hidden_size
    "v_layer": 27,               # vision_config.num_hidden_layers
    "v_head": 16,                # vision_config.num_attention_heads
    "v_ff": 4304,                # vision_config.intermediate_size
    "v_eps": 1e-6,               # vision_config.layer_norm_eps
    "qf_ff": 3072,               # qformer_config default: intermediate_size 3072, 1 layer
    "query_side": 4,             # downsample_rate "4/8": query window side
    "window_side": 8,            # downsample_rate "4/8": key window side
    "deepstack_layer_map": [(-19, 9), (-13, 6), (-7, 3), (-1, 0)],   # [vision, text] layers
    "spatial_vision_layer": -1,  # spatial_vision_layer
    "spatial_target_layers": [12, 15, 18, 21],                        # spatial_target_layers
    # image_grid_pinpoints as (height, width), as config.json lists them
    "pinpoints": [(384, 384), (384, 768), (384, 1152), (384, 1536), (384, 1920), (384, 2304),
                  (384, 2688), (384, 3072), (384, 3456), (384, 3840), (768, 384), (768, 768),
                  (768, 1152), (768, 1536), (768, 1920), (1152, 384), (1152, 768),
                  (1152, 1152), (1536, 384), (1536, 768), (1920, 384), (1920, 768),
                  (2304, 384), (2688, 384), (3072, 384), (3456, 384), (3840, 384)],
    # guess: SigLIP2's preprocessor mean / std (0.5); the checkpoint's preprocessor_config.json
    # was not readable here
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    # published size "4B": tensors here ~3.4B text + ~0.6B projector
}

SHAPES: dict[str, dict] = {"granite-vision-4.1-4b": GRANITE_VISION_41_4B}

NAME = "foveate-{shape}-shape (random weights)"

# The chat template, verbatim: Granite 4.1's, as vendored in llama.cpp
# (models/templates/ibm-granite-granite-4.1.jinja). Guess that granite-vision-4.1-4b ships
# its base model's template (its own tokenizer_config.json was not readable here; public
# Granite Vision 4 clients prompt "<|start_of_role|>user<|end_of_role|><image>{prompt}
# <|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>", which this renders for a text
# turn). llama.cpp detects it as LLM_CHAT_TEMPLATE_GRANITE_4_1 ("<|start_of_role|>" with
# "<tool_call>", no "g4_default_system_message").
CHAT_TEMPLATE = (
    "{%- set tools_system_message_prefix = 'You are a helpful assistant with access to the following tools. You may call one or more tools to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>'  %}\n"
    '{%- set tools_system_message_suffix = \'\\n</tools>\\n\\nFor each tool call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call>. If a tool does not exist in the provided list of tools, notify the user that you do not have the ability to fulfill the request.\' %}\n'
    "{%- set documents_system_message_prefix = 'You are a helpful assistant with access to the following documents. You may use one or more documents to assist with the user query.\\n\\nYou are given a list of documents within <documents></documents> XML tags:\\n<documents>' %}\n"
    "{%- set documents_system_message_suffix = '\\n</documents>\\n\\nWrite the response to the user\\'s input by strictly aligning with the facts in the provided documents. If the information needed to answer the question is not available in the documents, inform the user that the question cannot be answered based on the available data.' %}\n"
    '{%- if available_tools is defined and available_tools %}\n'
    '    {%- set tools = available_tools %}\n'
    '{%- endif %}\n'
    '{%- set ns = namespace(tools_system_message=tools_system_message_prefix,\n'
    '                       documents_system_message=documents_system_message_prefix,\n'
    "                       system_message=''\n"
    '                       ) %}\n'
    '{%- if tools %}\n'
    '    {%- for tool in tools %}\n'
    "        {%- set ns.tools_system_message = ns.tools_system_message + '\\n' + (tool | tojson) %}\n"
    '    {%- endfor %}\n'
    '    {%- set ns.tools_system_message = ns.tools_system_message + tools_system_message_suffix %}\n'
    '{%- else %}\n'
    "    {%- set ns.tools_system_message = '' %}\n"
    '{%- endif %}\n'
    '{%- if documents %}\n'
    '    {%- for document in documents %}\n'
    "        {%- set ns.documents_system_message = ns.documents_system_message + '\\n' + (document | tojson) %}\n"
    '    {%- endfor %}\n'
    '    {%- set ns.documents_system_message = ns.documents_system_message + documents_system_message_suffix %}\n'
    '{%- else %}\n'
    "    {%- set ns.documents_system_message = '' %}\n"
    '{%- endif %}\n'
    "{%- if messages[0].role == 'system' %}\n"
    '    {%- if messages[0].content is string %}\n'
    '        {%- set ns.system_message = messages[0].content %}\n'
    '    {%- elif messages[0].content is iterable %}\n'
    '        {%- for entry in messages[0].content %}\n'
    "            {%- if entry.type== 'text' %}\n"
    "                {%- if ns.system_message != '' %}\n"
    "                    {%- set ns.system_message = ns.system_message + '\\n' %}\n"
    '                {%- endif %}\n'
    '                {%- set ns.system_message = ns.system_message + entry.text %}\n'
    '            {%- endif %}\n'
    '        {%- endfor %}\n'
    '    {%- endif %}\n'
    '    {%- if tools and documents %}\n'
    "        {%- set ns.system_message = ns.system_message + '\\n\\n' +  ns.tools_system_message + '\\n\\n' + ns.documents_system_message %}\n"
    '    {%- elif tools %}\n'
    "        {%- set ns.system_message = ns.system_message + '\\n\\n' + ns.tools_system_message %}\n"
    '    {%- elif documents %}\n'
    "        {%- set ns.system_message = ns.system_message + '\\n\\n' + ns.documents_system_message %}\n"
    '    {%- endif %}\n'
    '{%- else %}\n'
    '    {%- if tools and documents %}\n'
    "        {%- set ns.system_message = ns.tools_system_message + '\\n\\n' + ns.documents_system_message  %}\n"
    '    {%- elif tools %}\n'
    '        {%- set ns.system_message = ns.tools_system_message %}\n'
    '    {%- elif documents %}\n'
    '        {%- set ns.system_message = ns.documents_system_message %}\n'
    '    {%- endif %}\n'
    '{%- endif %}\n'
    '{%- if ns.system_message %}\n'
    "    {{- '<|start_of_role|>system<|end_of_role|>' + ns.system_message + '<|end_of_text|>\\n' }}\n"
    '{%- endif %}\n'
    '{%- for message in messages %}\n'
    "    {%- set content = namespace(val='') %}\n"
    '    {%- if message.content is string %}\n'
    '        {%- set content.val = message.content %}\n'
    '    {%- else %}\n'
    '        {%- if message.content is iterable %}\n'
    '            {%- for entry in message.content %}\n'
    "                {%- if entry.type== 'text' %}\n"
    "                    {%- if content.val != '' %}\n"
    "                        {%- set content.val = content.val + '\\n' %}\n"
    '                    {%- endif %}\n'
    '                    {%- set content.val = content.val + entry.text %}\n'
    '                {%- endif %}\n'
    '            {%- endfor %}\n'
    '        {%- endif %}\n'
    '    {%- endif %}\n'
    "    {%- if (message.role == 'user') or (message.role == 'system' and not loop.first) %}\n"
    "        {{- '<|start_of_role|>' + message.role + '<|end_of_role|>' + content.val + '<|end_of_text|>\\n' }}\n"
    "    {%- elif message.role == 'assistant' %}\n"
    "        {{- '<|start_of_role|>' + message.role + '<|end_of_role|>' + content.val }}\n"
    '        {%- if message.tool_calls %}\n'
    '            {%- for tool_call in message.tool_calls %}\n'
    '                {%- if (loop.first and content.val) or (not loop.first) %}\n'
    "                    {{- '\\n' }}\n"
    '                {%- endif %}\n'
    '                {%- if tool_call.function %}\n'
    '                    {%- set tool_call = tool_call.function %}\n'
    '                {%- endif %}\n'
    '                {{- \'<tool_call>\\n{"name": "\' }}\n'
    '                {{- tool_call.name }}\n'
    '                {{- \'", "arguments": \' }}\n'
    '                {%- if tool_call.arguments is string %}\n'
    '                    {{- tool_call.arguments }}\n'
    '                {%- else %}\n'
    '                    {{- tool_call.arguments | tojson }}\n'
    '                {%- endif %}\n'
    "                {{- '}\\n</tool_call>' }}\n"
    '            {%- endfor %}\n'
    '        {%- endif %}\n'
    "        {{- '<|end_of_text|>\\n' }}\n"
    "    {%- elif message.role == 'tool' %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != 'tool') %}\n"
    "            {{- '<|start_of_role|>user<|end_of_role|>' }}\n"
    '        {%- endif %}\n'
    "        {{- '\\n<tool_response>\\n' }}\n"
    '        {{- content.val }}\n'
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}\n"
    "            {{- '<|end_of_text|>\\n' }}\n"
    '        {%- endif %}\n'
    '    {%- endif %}\n'
    '{%- endfor %}\n'
    '{%- if add_generation_prompt %}\n'
    "    {{- '<|start_of_role|>assistant<|end_of_role|>' }}\n"
    '{%- endif %}'
)

# Granite 4 tokenizer ids (a public tokenizer port's table checked against a converted GGUF:
# <|pad|> 100256, <|end_of_text|> 100257, <|start_of_role|> 100264, <|end_of_role|> 100265,
# <|unk|> 100269) and the image token (config image_token_index 100352)
SPECIAL_IDS: dict[str, int] = {
    "<|pad|>": 100256, "<|end_of_text|>": 100257, "<|start_of_role|>": 100264,
    "<|end_of_role|>": 100265, "<|unk|>": 100269, "<image>": 100352,
}
BOS = EOS = "<|end_of_text|>"    # config eos_token_id 100257; the GGUF's BOS is the same token
PAD, UNK = "<|pad|>", "<|unk|>"


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def projector_map(shape: str, layers: int | None = None) -> list[tuple[int, int, str, int]]:
    """(vision layer, text layer, kind, index within kind) per projector stream, in stream
    order (by text layer): the converter's Granite4VisionMmprojModel.get_normalized_projector_map.
    In a cut pair (`layers` given) the streams read at most the cut ViT's last layer; a cut
    text stack too shallow for the real targets (up to layer 21) keeps two streams, the base
    one (the first, injected as the input embedding) and the first spatial one (injected
    before text layer 1), so both projector kinds run while the text stack stays 2 deep."""
    S = _shape(shape)
    n_t, n_v = S["n_layer"], S["v_layer"]
    out = []
    for idx, (v, t) in enumerate(sorted(S["deepstack_layer_map"])):
        out.append((v + n_v if v < 0 else v, t + n_t if t < 0 else t, "layerwise", idx))
    sv = S["spatial_vision_layer"]
    for idx, t in enumerate(S["spatial_target_layers"]):
        out.append((sv + n_v if sv < 0 else sv, t, "spatial", idx))
    out.sort(key=lambda e: e[1])
    if layers is None:
        return out
    cut_t, cut_v = _depths(S, layers)
    if cut_t > max(t for _, t, _, _ in out):
        return [(min(v, cut_v - 1), t, k, i) for v, t, k, i in out]
    base, spatial = out[0], next(e for e in out if e[2] == "spatial")
    return [(min(base[0], cut_v - 1), 0, base[2], base[3]),
            (min(spatial[0], cut_v - 1), 1, spatial[2], spatial[3])]


def _depths(S: dict, layers: int | None) -> tuple[int, int]:
    """(text, vision) depths; a cut text stack keeps at least 2 layers (see projector_map)."""
    if layers is None:
        return S["n_layer"], S["v_layer"]
    n_t, n_v = cut_depths(layers, S["n_layer"], S["v_layer"])
    return max(n_t, 2), n_v


def deepstack_mapping(shape: str, layers: int | None = None) -> list[int]:
    """`granite.deepstack_mapping`: per text layer the stream index added before it (-1 none;
    stream 0 is the input embedding, never listed)."""
    S = _shape(shape)
    n_t = _depths(S, layers)[0]
    arr = [-1] * n_t
    for k, (_, t, _, _) in enumerate(projector_map(shape, layers)):
        if k:
            arr[t] = k
    return arr


def vocab_of(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    S = _shape(shape)
    special = [(t, UNKNOWN if t == UNK else CONTROL) for t in SPECIAL_IDS]
    if vocab is None:
        return char_vocab(special, S["n_vocab"], at=SPECIAL_IDS)
    return char_vocab(special, vocab)


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_layer, _ = _depths(S, layers)
    n_vocab = len(vocab_of(shape, vocab)[0])
    d, ff = S["n_embd"], S["n_ff"]
    kv = S["n_head_kv"] * d // S["n_head"]                        # 8 x 64 = 512
    return dense_decoder(n_layer, n_vocab, d, ff, d, kv, S["tied_embeddings"])


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    _, n_v = _depths(S, layers)
    vd, vff, p_, d, qff = S["v_embd"], S["v_ff"], S["v_patch"], S["n_embd"], S["qf_ff"]
    n_pos = (S["v_image_size"] // p_) ** 2                          # 24 x 24
    t: list[Spec] = [("v.patch_embd.weight", (vd, 3, p_, p_), F16, "w"),
                     ("v.patch_embd.bias", (vd,), F32, "zeros"),
                     ("v.position_embd.weight", (n_pos, vd), F32, "w")]   # forced F32
    t += vit_blocks(n_v, vd, vff)
    # SigLIP's post_layernorm: in the checkpoint (SiglipVisionTransformer always has it), so
    # converted; the granite4_vision graph does not use it (guess that the checkpoint keeps it;
    # the vision head `vision_model.head` is dropped by the converter)
    t += layer_norm("v.post_ln", vd) + [("v.image_newline", (d,), F32, "w")]  # model.image_newline
    q_len, k_len = S["query_side"] ** 2, S["window_side"] ** 2
    for k in range(len(projector_map(shape, layers))):
        b = f"v.proj_blk.{k}."
        # query / image_positions are parameters without ".weight": kept F32 with their HF
        # (1, n, 1152) shapes (guess: the 1-row leading dim, as the graph broadcasts them)
        t += [(b + "query", (1, q_len, vd), F32, "w"),
              (b + "img_pos", (1, k_len, vd), F32, "w"),
              *layer_norm(b + "norm", vd),
              *layer_norm(b + "post_norm", vd)]                         # qformer.layernorm
        for part in ("self_attn", "cross_attn"):
            t += (linears(b + part + "_", ["q", "k", "v", "out"], vd, vd)
                  + layer_norm(b + part + "_norm", vd))
        t += (linears(b, ["ffn_up"], qff, vd)                           # intermediate_query
              + linears(b, ["ffn_down"], vd, qff)                       # output_query
              + layer_norm(b + "ffn_norm", vd)
              + linears(b, ["linear"], d, vd))                          # out_linear 1152 -> 2560
    return t


def _text_kv(shape: str, layers: int | None, vocab: int | None):
    S = _shape(shape)
    n_layer = _depths(S, layers)[0]

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_of(shape, vocab)
        a = S["arch"]
        add_llm_head(w, NAME.format(shape=shape), n_layer, S)
        w.add_rope_freq_base(S["rope_theta"])
        w.add_layer_norm_rms_eps(S["rms_eps"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_uint32(f"{a}.vocab_size", len(tokens))                # LlamaModel: vocab_size
        w.add_uint32(f"{a}.rope.dimension_count", S["n_embd"] // S["n_head"])
        w.add_float32(f"{a}.attention.scale", S["attention_scale"])
        w.add_float32(f"{a}.embedding_scale", S["embedding_scale"])
        w.add_float32(f"{a}.residual_scale", S["residual_scale"])
        w.add_float32(f"{a}.logit_scale", S["logit_scale"])
        w.add_array(f"{a}.deepstack_mapping", deepstack_mapping(shape, layers))
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, unk=UNK, pad=PAD, add_bos=False)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(shape: str, layers: int | None):
    S = _shape(shape)
    n_v = _depths(S, layers)[1]
    pmap = projector_map(shape, layers)

    def kv(w) -> None:
        import gguf

        w.add_type("mmproj")
        w.add_name(NAME.format(shape=shape) + " mmproj")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
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
        w.add_string("clip.projector_type", S["projector_type"])
        w.add_float32("clip.vision.attention.layer_norm_epsilon", S["v_eps"])
        w.add_bool("clip.use_gelu", True)
        w.add_uint32("clip.vision.preproc_image_size", S["v_image_size"])
        w.add_uint32("clip.vision.projector.query_side", S["query_side"])
        w.add_uint32("clip.vision.projector.window_side", S["window_side"])
        w.add_array("clip.vision.feature_layer", [v for v, _, _, _ in pmap])
        w.add_array("clip.vision.projector.spatial_offsets",
                    [i if k == "spatial" else -1 for _, _, k, i in pmap])
        # flattened with (h, w) -> (w, h), as the converter writes them
        w.add_array("clip.vision.image_grid_pinpoints",
                    [x for h, wd in S["pinpoints"] for x in (wd, h)])
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    S = _shape(shape)
    return ((S["arch"], text_tensors(shape, layers, vocab), _text_kv(shape, layers, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, layers)))


def write_pair(out_dir, shape: str = "granite-vision-4.1-4b", layers: int | None = None,
               seed: int = 0, vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str = "granite-vision-4.1-4b", layers: int | None = None,
          vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))


def tile_grid(width: int, height: int, shape: str = "granite-vision-4.1-4b") -> tuple[int, int]:
    """(columns, rows) of 384-px tiles: llava's select_best_resolution over the pinpoints as
    (width, height) (float32 scale, truncated sizes; most effective pixels, then least waste).
    Every page is tiled (at least 1 x 1 plus the overview)."""
    S = _shape(shape)
    f32 = np.float32
    best, best_eff, best_waste = None, 0, None
    for h, w in S["pinpoints"]:
        scale = min(f32(w) / f32(width), f32(h) / f32(height))
        tw, th = int(f32(width) * scale), int(f32(height) * scale)
        eff = min(tw * th, width * height)
        waste = w * h - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (w, h), eff, waste
    return best[0] // S["v_image_size"], best[1] // S["v_image_size"]


def image_tokens(width: int, height: int, shape: str = "granite-vision-4.1-4b") -> int:
    """Image rows mtmd makes of a width x height page, all in one chunk: the overview's
    out_side^2 rows (out_side = 384/16/8*4 = 12), then the unpadded tile grid, h rows of
    w content rows + 1 learned newline row (clip.cpp clip_anyres_unpad). Includes the h
    newline rows; the "\\n" text token mtmd adds after the chunk is not counted."""
    S = _shape(shape)
    side = S["v_image_size"] // S["v_patch"] // S["window_side"] * S["query_side"]
    w, h = newline_grid(width, height, shape)
    return side * side + h * (w + 1)


def newline_grid(width: int, height: int, shape: str = "granite-vision-4.1-4b") -> tuple[int, int]:
    """(w, h): content rows per grid row and grid rows (each followed by a newline row) after
    llava-next's unpad of the gx*12 x gy*12 tile grid to the page's aspect."""
    import math

    S = _shape(shape)
    side = S["v_image_size"] // S["v_patch"] // S["window_side"] * S["query_side"]
    gx, gy = tile_grid(width, height, shape)
    cw, ch = gx * side, gy * side
    if np.float32(width) / np.float32(height) > np.float32(cw) / np.float32(ch):
        new_h = math.floor(height * cw / width + 1e-7)
        off = (ch - new_h) // 2
        return cw, ch - 2 * off
    new_w = math.floor(width * ch / height + 1e-7)
    off = (cw - new_w) // 2
    return cw - 2 * off, ch
