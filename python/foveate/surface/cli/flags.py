"""The flags several commands share, named as llama.cpp names them where they share a
name (-m, --mmproj, -ngl, -c, -t, -n, -b), and the Engine settings they make."""
from __future__ import annotations

import argparse

from ...engine.kv_cache import KV_CACHE_TYPES


class HELP(argparse.HelpFormatter):
    """Every flag's help shows its default, unless the help already says it (or there is
    none to show: a switch, or an optional value with no default)."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if ("default" in h or d is None or d is False or d is argparse.SUPPRESS
                or action.nargs in (argparse.ZERO_OR_MORE, argparse.ONE_OR_MORE)
                or not action.option_strings):
            return h
        return f"{h} (default: {d})"


def model_args(p: argparse.ArgumentParser, need_mmproj: bool = True,
                ctx_default: int | None = 4096) -> None:
    p.add_argument("-m", "--model", required=True, help="language model GGUF")
    p.add_argument("--mmproj", required=need_mmproj, help="image projector GGUF")
    p.add_argument("-ngl", "--n-gpu-layers", type=int, default=0, help="layers to offload (GPU builds)")
    p.add_argument("-c", "--ctx-size", type=int, default=ctx_default,
                   help="context size (n_ctx)" + ("" if ctx_default else
                                                  " (default: sized for the run)"))
    p.add_argument("-b", "--batch-size", type=int, default=2048,
                   help="logical batch size: prompt tokens decoded per llama_decode call")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("-fa", "--flash-attn", choices=["on", "off", "auto"], default="auto",
                   help="flash attention (auto: llama.cpp decides; on when fixation is on)")
    p.add_argument("--vision-bf16", choices=["auto", "off"], default="auto",
                   help="the vision encoder's F16 matmul weights as BF16 where the CPU multiplies "
                        "BF16 natively (AVX512_BF16): ~2x faster encode, slightly different "
                        "numbers (auto: wherever supported; off: stock F16)")
    p.add_argument("-ctk", "--cache-type-k", choices=KV_CACHE_TYPES, default="f16",
                   help="KV cache type of K (a quantized cache on a GPU turns fixation off)")
    p.add_argument("-ctv", "--cache-type-v", choices=KV_CACHE_TYPES, default="f16",
                   help="KV cache type of V (quantized: needs flash attention)")


def fixation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fixation", type=float, default=0.0, metavar="RATIO",
                   help="attend to this share of the image tokens per decode step (0 = off)")
    p.add_argument("--fixation-k-min", type=int, default=16, help="at least this many image tokens")
    p.add_argument("--focal-layers", default="auto",
                   help="auto (calibrated, else a third of the depth) or layer indices: 7,12")
    p.add_argument("--fixation-dilation", type=int, default=0,
                   help="warm start also attends the N image tokens after each selected one")
    p.add_argument("--fixation-refresh", type=int, default=1, metavar="R",
                   help="focal layers re-select every R-th step (1 = every step)")
    p.add_argument("--fixation-sample", type=int, default=64, metavar="N",
                   help="N fixed image tokens spread over the page also attend, each for its "
                        "share of the unselected ones (compensation; 0 = off)")


def merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--merge", default="off", metavar="auto|RATIO|off",
                   help="prefill token merging (RTPrune): keep this share of the image tokens, "
                        "'auto' = a ratio per page from token redundancy and text density")
    p.add_argument("--merge-positions", default="original", choices=("original", "consecutive"),
                   help="1-D RoPE models: decode kept image tokens at their original positions "
                        "(gaps, as the RTPrune reference) or renumbered consecutively")
    merge_score_arg(p)


def preset_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="auto", metavar="auto|NAME|none",
                   help="the prompt pages are read with unless -p gives one: the model "
                        "family's published OCR prompt (auto), a named preset (`foveate models` "
                        "lists them), or none (foveate's own)")


def merge_score_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--merge-score", default="auto", choices=("auto", "norm", "duplicates"),
                   help="which image tokens a keep ratio keeps: largest L2 norm (RTPrune), "
                        "fewest near-duplicates on the page (blank paper goes first), or auto "
                        "(default: norm on DeepSeek-OCR's projector, duplicates on others)")


def focal_layers(text: str) -> list[int] | None:
    if text in ("", "auto"):
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--focal-layers takes 'auto' or layer indices like 7,12, "
                         f"not {text!r}") from None


def engine_kwargs(a) -> dict:
    fa = {"on": True, "off": False, "auto": None}[a.flash_attn]
    kw = dict(n_gpu_layers=a.n_gpu_layers, n_ctx=a.ctx_size, n_batch=a.batch_size,
              threads=a.threads, flash_attn=fa, cache_type_k=a.cache_type_k,
              cache_type_v=a.cache_type_v,
              vision_bf16=a.vision_bf16 != "off")
    if hasattr(a, "fixation_k_min"):
        # every fixation flag is checked, fixation on or off (engine/controls.py)
        # (bench has no --fixation-dilation: its rows decode without it)
        kw.update(fixation_k_min=a.fixation_k_min, focal_layers=focal_layers(a.focal_layers),
                  fixation_dilation=getattr(a, "fixation_dilation", 0),
                  fixation_refresh=a.fixation_refresh, fixation_sample=a.fixation_sample)
    if isinstance(getattr(a, "fixation", None), float) and a.fixation:
        kw.update(fixation=a.fixation)
    if getattr(a, "merge", "off") not in ("off", None):
        kw.update(merge=a.merge, merge_positions=getattr(a, "merge_positions", "original"),
                  merge_score=getattr(a, "merge_score", "auto"))
    return kw
