"""What reading a page returns: its text and its Stats (timings, token counts, what fixation
and merging did)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Stats:
    image_tokens: int = 0
    prompt_tokens: int = 0          # all prefilled positions' tokens (text + image)
    encode_ms: float = 0.0          # vision encoder + projector
    prefill_ms: float = 0.0         # decoding the prompt (text and image embeddings)
    decode_ms: float = 0.0          # generating
    tokens_generated: int = 0
    tokens_per_s: float = 0.0
    stop_reason: str = ""           # "eos", "max_tokens", "n_ctx", "repetition" (the output
                                    # looped: repeats cut) or "cancelled" (on_token)
    fixation_ratio: float = 0.0     # 0 = fixation off
    visual_tokens_attended: float = 0.0  # image tokens attended per decode step, mean over layers
    visual_tokens_selected: float = 0.0  # the focal layer's top-k (layers above it attend these)
    focal_layers: list = field(default_factory=list)
    fixation_off: str = ""          # why fixation, though asked for, did not run ("" = it ran
                                    # or was not asked for): a quantized KV cache on a GPU
    merge_ratio: float = 1.0        # keep ratio of the content tokens (1 = merging off)
    image_tokens_merged: int = 0    # image tokens the LLM prefilled after merging
    merge_ms: float = 0.0           # the merge itself (part of encode_ms)
    draft_source: str = ""          # what proposed tokens: "pdf", "pdf-invisible",
                                    # "ocr", "text" (the caller's), "self" (the output's own
                                    # repeats), joined by "+"; "none": nothing was proposed;
                                    # "" = no drafting (engine/drafts.py, inputs/draft_sources.py)
    draft_ms: float = 0.0           # making the draft (text layer, OCR engine)
    draft_tokens: int = 0           # tokens proposed ...
    draft_accepted: int = 0         # ... and accepted by the model
    draft_steps: int = 0            # verification steps that carried a proposal
    draft_unsettled: int = 0        # agreed with but dropped: fixation's selection moved
                                    # in an earlier row of the step (engine/drafts.py)

    @property
    def image_tokens_kept(self) -> int:
        """Image tokens the LLM prefilled: after merging, else all of them (the JSON output's
        `image_tokens_kept`; image_tokens_merged is 0 when merging is off)."""
        return self.image_tokens_merged or self.image_tokens

    def as_dict(self) -> dict:
        return dict(self.__dict__, image_tokens_kept=self.image_tokens_kept)


@dataclass
class Result:
    text: str
    stats: Stats = field(default_factory=Stats)
    image: str = ""
    warnings: list = field(default_factory=list)   # one-line notes (the CLI prints them)
    image_size: tuple = (0, 0)      # (width, height) of the page as given to the projector
    source: str = ""                # read_document: the document's name ...
    page: int = 0                   # ... the page number (1-based; 0: not from a document)
    n_pages: int = 0                # ... and its page count
    wall_s: float = 0.0             # the whole read, image decoding included
    trace: object = None            # read(..., trace=True): engine.trace.Trace
