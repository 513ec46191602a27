"""Random-weight GGUF pairs with the exact shapes of the small dense Qwen3.5 models
(Qwen/Qwen3.5-0.8B, Qwen/Qwen3.5-2B; `Qwen3_5ForConditionalGeneration`), as llama.cpp's
converter writes them (conversion/qwen.py: Qwen3_5TextModel on Qwen3NextModel with the MTP
mixin; conversion/qwen3vl.py: Qwen3VLVisionModel, which also takes Qwen3.5's vision tower).

* text model: llama.cpp arch `qwen35` (src/models/qwen35.cpp), a hybrid of 24 layers: three
  Gated DeltaNet (linear attention) layers then one gated full-attention layer, repeated
  (`layer_types`, full_attention_interval 4: attention at 3, 7, 11, ...). The converter writes
  `qwen35.attention.recurrent_layers` (true on the DeltaNet layers) and
  `qwen35.full_attention_interval`; the loader takes the list, else the interval. Memory is
  llama_memory_hybrid: KV cells for the attention layers, recurrent cells (conv state and a
  128 x 128 delta-rule state per value head) for the others.
  - attention layer: `attn_q` is 2 x (heads x 256) wide (query and its output gate, interleaved
    per head), GQA k / v of 256 per KV head, per-head RMS q/k norms, `attn_output`; no biases.
  - DeltaNet layer: fused `attn_qkv` (q and k: 16 heads x 128, v: 16 heads x 128), the output
    gate `attn_gate` (z), a depthwise causal conv `ssm_conv1d` (kernel 4, over the q k v
    channels, forced F32), `ssm_beta` / `ssm_alpha` (one per value head), `ssm_a` (-exp(A_log))
    and `ssm_dt.bias`, a gated RMS norm `ssm_norm` over the 128-wide head, `ssm_out`.
  - every layer: `attn_norm`, `post_attention_norm`, SwiGLU FFN. Interleaved M-RoPE (rope type
    LLAMA_ROPE_TYPE_IMROPE) on a quarter of each head (partial_rotary_factor 0.25: 64 of 256
    dims, sections (11, 11, 10) pairs), theta 1e7; mtmd gives image tokens 4 positions each.
  - one MTP (NextN) block after the trunk, as the default conversion writes it (the converter
    drops it only with --no-mtp): `blk.{n_layer}.*`, a full-attention block plus
    `nextn.eh_proj` / `enorm` / `hnorm` / `shared_head_norm`; `block_count` counts it and
    `qwen35.nextn_predict_layers` = 1. llama.cpp skips these tensors unless it is asked to load
    the MTP head and gives the block no cache; the main graph never runs it.
  Tied embeddings (no `output.weight`).
* projector: mtmd projector type `qwen3vl_merger` (tools/mtmd/models/qwen3vl.cpp), Qwen3-VL's
  ViT *without* deepstack (`deepstack_visual_indexes` is empty: the converter still writes
  `clip.vision.is_deepstack_layers`, all false, and no v.deepstack.* tensors), so an mmproj row
  is n_embd wide. Patch 16 (Conv3d split into two Conv2d kernels + bias), learned 48 x 48
  position table (2304 rows, bilinearly resized), LayerNorm with bias, GELU-tanh MLP, the 2x2
  merger (LayerNorm, Linear 4 v_embd -> 4 v_embd, GELU, Linear -> n_embd).
  Tokens: the page resized to multiples of 32 px (patch 16 x merge 2), within 8 .. 4096 tokens
  (clip.cpp set_limit_image_tokens for this projector), one token per 32 x 32 px; one image
  chunk; mtmd wraps it in the text tokens "<|vision_start|>" ... "<|vision_end|>"; no learned
  rows inside the chunk.

Cut stacks (`layers`): the ViT is cut to `layers`; the text trunk to at least 4 layers, so
it keeps its first attention layer (index 3) after three DeltaNet layers; the MTP block stays.

Only the tokenizer differs from the real model (byte-level BPE, `gpt2` / pre `qwen35`): a
character-level SentencePiece vocab with Qwen3.5's special tokens at their real ids, padded
with unused tokens to 248320.

Output is noise: these files are for timing and plumbing at the real model's size.
"""
from __future__ import annotations

import math
from pathlib import Path

from .gguf_specs import (CONTROL, F16, F32, UNKNOWN, USER, Spec, add_char_tokenizer, add_llm_head,
                         char_vocab, pick_shape, qwen_added, qwen_vl_merger, vit_blocks,
                         write_pair_files, pair_sizes)

ARCH = "qwen35"
PROJECTOR = "qwen3vl_merger"

# Sources. Qwen3.5-0.8B: config.json as mirrored in a third-party test (stored copy, "compact
# mirror of Qwen/Qwen3.5-0.8B's config.json", brolm qwen35 config test) and the same numbers in
# a second project's presets (stored copy, `Qwen35Config::qwen35_0_8b`). Qwen3.5-2B's text
# numbers: that project's `qwen35_2b` preset and a Qwen3.5-2B preset elsewhere (a third source,
# slime's synthetic 2B config, says 32 linear value heads: not followed). The 2B vision tower
# was not found: Qwen3-VL-2B's tower (24 x 1024, 16 heads, 4096), a guess. Qwen3.5-4B (32
# layers of 2560, 16 / 4 heads of 256, per a derived model's card) is left out: its FFN width
# and linear heads were not found.
_COMMON = {
    "n_vocab": 248320,       # text_config.vocab_size
    "n_layer": 24,           # text_config.num_hidden_layers
    "full_attn_interval": 4,  # text_config.full_attention_interval (layer_types: L L L F x 6)
    "n_head": 8,             # text_config.num_attention_heads
    "n_head_kv": 2,          # text_config.num_key_value_heads
    "head_dim": 256,         # text_config.head_dim
    "lin_k_heads": 16,       # text_config.linear_num_key_heads
    "lin_v_heads": 16,       # text_config.linear_num_value_heads
    "lin_head_dim": 128,     # text_config.linear_key_head_dim = linear_value_head_dim
    "conv_kernel": 4,        # text_config.linear_conv_kernel_dim
    "n_ctx_train": 262144,   # text_config.max_position_embeddings
    "rope_theta": 1e7,       # rope_parameters.rope_theta
    "partial_rotary": 0.25,  # rope_parameters.partial_rotary_factor
    "mrope_sections": (11, 11, 10, 0),  # rope_parameters.mrope_section, padded to 4
    "rms_eps": 1e-6,         # text_config.rms_norm_eps (also the vision LayerNorm eps)
    "n_mtp": 1,              # text_config.mtp_num_hidden_layers
    "tied": True,            # tie_word_embeddings
    "patch": 16,             # vision_config.patch_size (temporal_patch_size 2: two kernels)
    "merge": 2,              # vision_config.spatial_merge_size
    "n_pos_embd": 2304,      # vision_config.num_position_embeddings (48 x 48)
    # preprocessor_config.json: Qwen3.6-35B-A3B's published one (a third-party copy) has 0.5;
    # that the 0.8B / 2B ship the same is a guess
    "image_mean": (0.5, 0.5, 0.5),
    "image_std": (0.5, 0.5, 0.5),
}
SHAPES: dict[str, dict] = {
    "qwen3.5-0.8b": {
        "hf": "Qwen/Qwen3.5-0.8B",
        "n_embd": 1024,          # text_config.hidden_size (= vision_config.out_hidden_size)
        "n_ff": 3584,            # text_config.intermediate_size
        "v_embd": 768,           # vision_config.hidden_size
        "v_layer": 12,           # vision_config.depth
        "v_head": 12,            # vision_config.num_heads
        "v_ff": 3072,            # vision_config.intermediate_size
        **_COMMON,
    },
    "qwen3.5-2b": {
        "hf": "Qwen/Qwen3.5-2B",
        "n_embd": 2048,          # text_config.hidden_size
        "n_ff": 6144,            # text_config.intermediate_size
        "v_embd": 1024,          # a guess (Qwen3-VL-2B's vision_config.hidden_size)
        "v_layer": 24,           # a guess (depth)
        "v_head": 16,            # a guess (num_heads)
        "v_ff": 4096,            # a guess (intermediate_size)
        **_COMMON,
    },
}

# The real template, verbatim: llama.cpp's copy of Qwen3.5-4B's chat_template
# (models/templates/Qwen3.5-4B.jinja in the vendored llama.cpp); that the 0.8B and 2B ship the
# same template is a guess, and a doubtful one: the 0.8B's model card (as copied by
# friendli.ai) says it "operates in non-thinking mode by default", while this template opens
# a thinking block unless enable_thinking is false. llama.cpp's heuristic
# (llama_chat_apply_template) takes it for ChatML ("<|im_start|>"): the user turn is the same,
# but the generation prompt is "<|im_start|>assistant\n" where the jinja writes
# "<|im_start|>assistant\n<think>\n" (or "<think>\n\n</think>\n\n" with enable_thinking false).
CHAT_TEMPLATE = """{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- macro render_content(content, do_vision_count, is_system_content=false) %}
    {%- if content is string %}
        {{- content }}
    {%- elif content is iterable and content is not mapping %}
        {%- for item in content %}
            {%- if 'image' in item or 'image_url' in item or item.type == 'image' %}
                {%- if is_system_content %}
                    {{- raise_exception('System message cannot contain images.') }}
                {%- endif %}
                {%- if do_vision_count %}
                    {%- set image_count.value = image_count.value + 1 %}
                {%- endif %}
                {%- if add_vision_id %}
                    {{- 'Picture ' ~ image_count.value ~ ': ' }}
                {%- endif %}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
            {%- elif 'video' in item or item.type == 'video' %}
                {%- if is_system_content %}
                    {{- raise_exception('System message cannot contain videos.') }}
                {%- endif %}
                {%- if do_vision_count %}
                    {%- set video_count.value = video_count.value + 1 %}
                {%- endif %}
                {%- if add_vision_id %}
                    {{- 'Video ' ~ video_count.value ~ ': ' }}
                {%- endif %}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' }}
            {%- elif 'text' in item %}
                {{- item.text }}
            {%- else %}
                {{- raise_exception('Unexpected item type in content.') }}
            {%- endif %}
        {%- endfor %}
    {%- elif content is none or content is undefined %}
        {{- '' }}
    {%- else %}
        {{- raise_exception('Unexpected content type.') }}
    {%- endif %}
{%- endmacro %}
{%- if not messages %}
    {{- raise_exception('No messages provided.') }}
{%- endif %}
{%- if tools and tools is iterable and tools is not mapping %}
    {{- '<|im_start|>system\\n' }}
    {{- "# Tools\\n\\nYou have access to the following functions:\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>" }}
    {{- '\\n\\nIf you choose to call a function ONLY reply in the following format with NO suffix:\\n\\n<tool_call>\\n<function=example_function_name>\\n<parameter=example_parameter_1>\\nvalue_1\\n</parameter>\\n<parameter=example_parameter_2>\\nThis is the value for the second parameter\\nthat can span\\nmultiple lines\\n</parameter>\\n</function>\\n</tool_call>\\n\\n<IMPORTANT>\\nReminder:\\n- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\\n- Required parameters MUST be specified\\n- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after\\n- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls\\n</IMPORTANT>' }}
    {%- if messages[0].role == 'system' %}
        {%- set content = render_content(messages[0].content, false, true)|trim %}
        {%- if content %}
            {{- '\\n\\n' + content }}
        {%- endif %}
    {%- endif %}
    {{- '<|im_end|>\\n' }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {%- set content = render_content(messages[0].content, false, true)|trim %}
        {{- '<|im_start|>system\\n' + content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" %}
        {%- set content = render_content(message.content, false)|trim %}
        {%- if not(content.startswith('<tool_response>') and content.endswith('</tool_response>')) %}
            {%- set ns.multi_step_tool = false %}
            {%- set ns.last_query_index = index %}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if ns.multi_step_tool %}
    {{- raise_exception('No user query found in messages.') }}
{%- endif %}
{%- for message in messages %}
    {%- set content = render_content(message.content, true)|trim %}
    {%- if message.role == "system" %}
        {%- if not loop.first %}
            {{- raise_exception('System message must be at the beginning.') }}
        {%- endif %}
    {%- elif message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- set reasoning_content = reasoning_content|trim %}
        {%- if loop.index0 > ns.last_query_index %}
            {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content + '\\n</think>\\n\\n' + content }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls and message.tool_calls is iterable and message.tool_calls is not mapping %}
            {%- for tool_call in message.tool_calls %}
                {%- if tool_call.function is defined %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {%- if loop.first %}
                    {%- if content|trim %}
                        {{- '\\n\\n<tool_call>\\n<function=' + tool_call.name + '>\\n' }}
                    {%- else %}
                        {{- '<tool_call>\\n<function=' + tool_call.name + '>\\n' }}
                    {%- endif %}
                {%- else %}
                    {{- '\\n<tool_call>\\n<function=' + tool_call.name + '>\\n' }}
                {%- endif %}
                {%- if tool_call.arguments is defined %}
                    {%- for args_name, args_value in tool_call.arguments|items %}
                        {{- '<parameter=' + args_name + '>\\n' }}
                        {%- set args_value = args_value | tojson | safe if args_value is mapping or (args_value is sequence and args_value is not string) else args_value | string %}
                        {{- args_value }}
                        {{- '\\n</parameter>\\n' }}
                    {%- endfor %}
                {%- endif %}
                {{- '</function>\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.previtem and loop.previtem.role != "tool" %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if not loop.last and loop.nextitem.role != "tool" %}
            {{- '<|im_end|>\\n' }}
        {%- elif loop.last %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- else %}
        {{- raise_exception('Unexpected message role.') }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- else %}
        {{- '<think>\\n' }}
    {%- endif %}
{%- endif %}"""

# Qwen3.5's added tokens: Qwen3's 26, in Qwen3's order, from 248044. Known ids: <|endoftext|>
# 248044 (generation_config bos / pad, eos[1]), <|im_end|> 248046 (eos[0]), <|vision_start|>
# 248053, <|vision_end|> 248054, <|image_pad|> 248056, <|video_pad|> 248057 (config.json); the
# others follow the same offset (151643 -> 248044), a guess. (Qwen3.5's vocab has further added
# tokens past these, not written here.)
SPECIAL_IDS: dict[str, int] = qwen_added(first=248044)
SPECIAL = [("<unk>", UNKNOWN)] + [(t, CONTROL if t.startswith("<|") else USER)
                                  for t in SPECIAL_IDS]
# tokenizer_config eos (<|im_end|>, generation_config eos_token_id[0]) / pad; no BOS is added
BOS, EOS, PAD = "<|endoftext|>", "<|im_end|>", "<|endoftext|>"
IMAGE_BEGIN, IMAGE_END = "<|vision_start|>", "<|vision_end|>"

NAME = "foveate-{shape}-shape (random weights)"

# mtmd's limits for this projector (clip.cpp: set_limit_image_tokens(8, 4096))
MIN_TOKENS, MAX_TOKENS = 8, 4096


def _shape(shape: str) -> dict:
    return pick_shape(SHAPES, shape)


def depths(S: dict, layers: int | None) -> tuple[int, int]:
    """(text trunk, vision) layer counts: the trunk keeps its first attention layer."""
    if layers is None:
        return S["n_layer"], S["v_layer"]
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    return (min(max(layers, S["full_attn_interval"]), S["n_layer"]),
            min(layers, S["v_layer"]))


def recurrent_flags(S: dict, layers: int | None = None) -> list[bool]:
    """The converter's recurrent-layer list: the trunk's DeltaNet layers (all but every
    full_attn_interval-th), then S["n_mtp"] MTP blocks."""
    n = depths(S, layers)[0]
    k = S["full_attn_interval"]
    return [(i + 1) % k != 0 for i in range(n)] + [False] * S["n_mtp"]


def recurrent_layers(shape: str, layers: int | None = None) -> list[bool]:
    """The converter's recurrent-layer list: the trunk's DeltaNet layers, then the MTP block."""
    return recurrent_flags(_shape(shape), layers)


def vocab_tokens(shape: str, vocab: int | None = None) -> tuple[list[str], list[int]]:
    """The char vocab: real size and real special-token ids, or padded to `vocab` only."""
    S = _shape(shape)
    n = S["n_vocab"] if vocab is None else vocab
    at = SPECIAL_IDS if n > max(SPECIAL_IDS.values()) else None
    return char_vocab(SPECIAL, n, at=at)


def _attention(p: str, S: dict, d: int) -> list[Spec]:
    hd = S["head_dim"]
    q, kv = S["n_head"] * hd, S["n_head_kv"] * hd
    return [(p + "attn_q.weight", (2 * q, d), F16, "w"),        # query + output gate
            (p + "attn_k.weight", (kv, d), F16, "w"),
            (p + "attn_v.weight", (kv, d), F16, "w"),
            (p + "attn_output.weight", (d, q), F16, "w"),
            (p + "attn_q_norm.weight", (hd,), F32, "ones"),
            (p + "attn_k_norm.weight", (hd,), F32, "ones")]


def _ffn(p: str, d: int, ff: int) -> list[Spec]:
    return [(p + "ffn_gate.weight", (ff, d), F16, "w"),
            (p + "ffn_up.weight", (ff, d), F16, "w"),
            (p + "ffn_down.weight", (d, ff), F16, "w")]


def decoder_tensors(S: dict, layers: int | None, n_vocab: int) -> list[Spec]:
    """The qwen35 text model's tensors for the numbers in S (this module's keys; minicpmv's
    text model is the same): embeddings, the hybrid trunk, S["n_mtp"] MTP blocks, the output."""
    recr = recurrent_flags(S, layers)
    n_layer = len(recr) - S["n_mtp"]
    d, ff = S["n_embd"], S["n_ff"]
    hk = S["lin_head_dim"]
    key_dim, value_dim = hk * S["lin_k_heads"], hk * S["lin_v_heads"]
    conv_dim = 2 * key_dim + value_dim
    t: list[Spec] = [("token_embd.weight", (n_vocab, d), F16, "w")]
    for i in range(n_layer):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (d,), F32, "ones"),
              (p + "post_attention_norm.weight", (d,), F32, "ones")]
        if recr[i]:   # Gated DeltaNet (linear_attn.*)
            t += [(p + "attn_qkv.weight", (conv_dim, d), F16, "w"),        # in_proj_qkv
                  (p + "attn_gate.weight", (value_dim, d), F16, "w"),      # in_proj_z
                  (p + "ssm_conv1d.weight", (conv_dim, S["conv_kernel"]), F32, "w"),  # forced F32
                  (p + "ssm_dt.bias", (S["lin_v_heads"],), F32, "zeros"),  # dt_bias
                  (p + "ssm_a", (S["lin_v_heads"],), F32, "w"),            # -exp(A_log)
                  (p + "ssm_beta.weight", (S["lin_v_heads"], d), F16, "w"),   # in_proj_b
                  (p + "ssm_alpha.weight", (S["lin_v_heads"], d), F16, "w"),  # in_proj_a
                  (p + "ssm_norm.weight", (hk,), F32, "ones"),             # linear_attn.norm
                  (p + "ssm_out.weight", (d, value_dim), F16, "w")]        # out_proj
        else:
            t += _attention(p, S, d)
        t += _ffn(p, d, ff)
    for j in range(S["n_mtp"]):   # mtp.layers.{j} + mtp.fc / pre_fc_norm_* / norm
        p = f"blk.{n_layer + j}."
        t += ([(p + "attn_norm.weight", (d,), F32, "ones"),
               (p + "post_attention_norm.weight", (d,), F32, "ones")]
              + _attention(p, S, d) + _ffn(p, d, ff)
              + [(p + "nextn.eh_proj.weight", (d, 2 * d), F16, "w"),
                 (p + "nextn.enorm.weight", (d,), F32, "ones"),
                 (p + "nextn.hnorm.weight", (d,), F32, "ones"),
                 (p + "nextn.shared_head_norm.weight", (d,), F32, "ones")])
    t.append(("output_norm.weight", (d,), F32, "ones"))
    if not S["tied"]:
        t.append(("output.weight", (n_vocab, d), F16, "w"))
    return t


def text_tensors(shape: str, layers: int | None = None, vocab: int | None = None) -> list[Spec]:
    return decoder_tensors(_shape(shape), layers, len(vocab_tokens(shape, vocab)[0]))


def mmproj_tensors(shape: str, layers: int | None = None) -> list[Spec]:
    S = _shape(shape)
    n_v = depths(S, layers)[1]
    vd, p = S["v_embd"], S["patch"]
    return ([("v.patch_embd.weight", (vd, 3, p, p), F16, "w"),     # Conv3d frame 0
             ("v.patch_embd.weight.1", (vd, 3, p, p), F16, "w"),   # frame 1
             ("v.patch_embd.bias", (vd,), F32, "zeros"),
             ("v.position_embd.weight", (S["n_pos_embd"], vd), F32, "w")]  # forced F32
            + vit_blocks(n_v, vd, S["v_ff"], fused_qkv=True)      # fused qkv, as converted
            + qwen_vl_merger(vd, S["merge"], S["n_embd"]))


def _text_kv(shape: str, layers: int | None, vocab: int | None):
    S = _shape(shape)
    recr = recurrent_layers(shape, layers)

    def kv(w) -> None:
        import gguf

        tokens, types = vocab_tokens(shape, vocab)
        a = ARCH
        # TextModel's keys (block_count counts the MTP block), then Qwen3NextModel's, then the
        # MTP mixin's, as Qwen3_5TextModel.set_gguf_parameters writes them
        add_llm_head(w, NAME.format(shape=shape), len(recr), S)
        w.add_rope_dimension_sections(list(S["mrope_sections"]))
        w.add_rope_freq_base(S["rope_theta"])
        w.add_layer_norm_rms_eps(S["rms_eps"])
        w.add_key_length(S["head_dim"])
        w.add_value_length(S["head_dim"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_nextn_predict_layers(S["n_mtp"])
        w.add_ssm_conv_kernel(S["conv_kernel"])
        w.add_ssm_state_size(S["lin_head_dim"])
        w.add_ssm_group_count(S["lin_k_heads"])
        w.add_ssm_time_step_rank(S["lin_v_heads"])
        w.add_ssm_inner_size(S["lin_head_dim"] * S["lin_v_heads"])
        w.add_array(f"{a}.attention.recurrent_layers", recr)   # add_recurrent_layers (newer gguf)
        w.add_full_attention_interval(S["full_attn_interval"])
        w.add_rope_dimension_count(int(S["head_dim"] * S["partial_rotary"]))
        add_char_tokenizer(w, tokens, types, bos=BOS, eos=EOS, pad=PAD, add_bos=False)
        w.add_chat_template(CHAT_TEMPLATE)
    return kv


def _mmproj_kv(shape: str, layers: int | None):
    S = _shape(shape)
    n_v = depths(S, layers)[1]

    def kv(w) -> None:
        import gguf

        w.add_type("mmproj")
        w.add_name(NAME.format(shape=shape) + " mmproj")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_clip_has_vision_encoder(True)
        w.add_vision_projection_dim(S["n_embd"])
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
        w.add_vision_is_deepstack_layers([False] * n_v)   # deepstack_visual_indexes: []
    return kv


def _parts(shape: str, layers: int | None, vocab: int | None) -> tuple[tuple, tuple]:
    """(arch, specs, kv) of the text GGUF and of the mmproj."""
    return ((ARCH, text_tensors(shape, layers, vocab), _text_kv(shape, layers, vocab)),
            ("clip", mmproj_tensors(shape, layers), _mmproj_kv(shape, layers)))


def write_pair(out_dir, shape: str, layers: int | None = None, seed: int = 0,
               vocab: int | None = None) -> tuple[Path, Path]:
    """Write `{shape}-f16.gguf` (seed) and `{shape}-mmproj-f16.gguf` (seed + 1)."""
    return write_pair_files(out_dir, shape, *_parts(shape, layers, vocab), seed)


def sizes(shape: str, layers: int | None = None, vocab: int | None = None) -> dict:
    return pair_sizes(*_parts(shape, layers, vocab))


def image_tokens(width: int, height: int, shape: str = "qwen3.5-0.8b") -> int:
    """Image rows mtmd makes of a width x height page (one chunk): mtmd_image_preprocessor_
    dyn_size, i.e. img_tool::calc_size_preserved_ratio with align 32 and 8 .. 4096 tokens:
    sides rounded to multiples of 32, scaled down (floor) or up (ceil) into the token range
    keeping the aspect, one row per 32 x 32 px."""
    S = _shape(shape)
    f = S["patch"] * S["merge"]
    lo, hi = MIN_TOKENS * f * f, MAX_TOKENS * f * f
    rnd = lambda x: int(math.floor(x / f + 0.5)) * f
    w, h = max(f, rnd(width)), max(f, rnd(height))
    if w * h > hi:
        beta = math.sqrt(height * width / hi)
        w, h = max(f, math.floor(width / beta / f) * f), max(f, math.floor(height / beta / f) * f)
    elif w * h < lo:
        beta = math.sqrt(lo / (height * width))
        w, h = math.ceil(width * beta / f) * f, math.ceil(height * beta / f) * f
    return (w // f) * (h // f)
