"""Fixation and token merging on an existing llama-cpp-python `Llama` and its chat handler.

The wheel's `llama_cpp` runs on foveate's libraries, so a script written for llama-cpp-python
gets both methods with one call (the chat handlers prefill images through
mtmd_helper_eval_chunk_single, where the merge hooks sit, and the context decodes through the
fixation hooks):

    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler
    import foveate

    handler = Qwen25VLChatHandler(clip_model_path="mmproj.gguf")
    llm = Llama(model_path="model.gguf", chat_handler=handler, n_ctx=4096, flash_attn=True)
    fov = foveate.enable(llm, fixation=0.05, merge=0.84)
    out = llm.create_chat_completion(messages=[...])
    print(fov.stats())
"""
from __future__ import annotations

from ...native import bindings as B
from ...engine import controls as C
from ...engine.controls import FIXATION_SAMPLE
from ...errors import ProjectorError
from ...inputs.gguf_check import read_gguf_info


class Foveation:
    """foveate's settings on one `Llama` (and its chat handler's projector context). Settings
    stay until changed. `stats()`: fixation since `reset_stats()`, merging of the last image
    merged (a tiled image: its last chunk)."""

    def __init__(self, llm, chat_handler=None):
        for attr in ("ctx", "model", "model_path"):
            if not hasattr(llm, attr):
                raise TypeError(f"foveate.enable needs a llama_cpp.Llama, got {type(llm).__name__}")
        self.llm = llm
        handler = chat_handler if chat_handler is not None else getattr(llm, "chat_handler", None)
        if chat_handler is not None and not hasattr(chat_handler, "_init_mtmd_context"):
            raise TypeError(f"chat handler {type(chat_handler).__name__} has no image projector "
                            f"context (use MTMDChatHandler or a Llava15ChatHandler subclass such "
                            f"as Qwen25VLChatHandler)")
        # the Llama's own handler may be a text-only one: then only fixation applies
        self.handler = handler if hasattr(handler, "_init_mtmd_context") else None
        self.fixation = 0.0
        self.merge = "off"
        self._projector_type = None

    def _mtmd(self):
        """The handler's mtmd context, created now if the handler has not run yet."""
        if self.handler is None:
            raise ValueError("token merging needs the Llama's image chat handler "
                             "(Llama(chat_handler=MTMDChatHandler(...)) or enable(llm, chat_handler))")
        if self._projector_type is None:
            self._projector_type = read_gguf_info(self.handler.clip_model_path, ProjectorError,
                                                  "projector").projector_type
        self.handler._init_mtmd_context(self.llm)
        return self.handler.mtmd_ctx

    def set_fixation(self, ratio, k_min: int = 16, focal_layers=None, dilation: int = 0,
                     refresh: int = 1, sample: int = FIXATION_SAMPLE) -> None:
        """As foveate.Reader's fixation arguments; ratio None/0 = off (the stock graph)."""
        self.fixation = C.apply_fixation(self.llm.ctx, self.llm.model, self.llm.model_path,
                                         ratio or 0.0, k_min, focal_layers, 8, dilation, refresh,
                                         sample)

    def set_merge(self, merge, positions: str = "original", score: str = "auto") -> None:
        """As foveate.Reader's merge arguments; None/"off" = off (the stock projector output)."""
        from ...engine.merging import parse_merge

        if parse_merge(merge)[0] == B.MERGE_OFF and (self.handler is None or self.handler.mtmd_ctx is None):
            # nothing to turn off: a projector context starts with merging off
            self.merge = "off"
            return
        self.merge, _, _ = C.apply_merge(self._mtmd(), self._projector_type, merge, positions, score)

    def reset_stats(self) -> None:
        B.fixation.llama_fixation_reset_stats(self.llm.ctx)

    def selection(self, seq_id: int = 0) -> list[int]:
        """Image-token indices attended at the last decode step (fixation on)."""
        return C.fixation_selection(self.llm.ctx, seq_id)

    def stats(self) -> dict:
        """Fixation since reset_stats(): image tokens selected and attended per decode step
        (means), the sequence's image tokens, decode rows counted, focal layers. Merging: the
        last image's tokens before and after, the keep ratio and the merge's time."""
        fs = C.fixation_stats(self.llm.ctx)
        out = {"fixation_ratio": self.fixation, "decode_rows": fs.rows,
               "image_tokens": fs.image_tokens if fs.rows else None,
               "visual_tokens_selected": fs.selected if fs.rows else None,
               "visual_tokens_attended": fs.attended if fs.rows else None,
               "focal_layers": fs.focal_layers if self.fixation else [],
               "merge": self.merge}
        last = C.merge_last(self.handler.mtmd_ctx) if self.handler is not None and self.handler.mtmd_ctx else None
        if last is not None:
            out.update(image_tokens_before_merge=last.tokens_before,
                       image_tokens_merged=last.tokens_after, merge_ratio=last.ratio,
                       merge_ms=last.merge_ms)
        return out


def enable(llm, chat_handler=None, *, fixation=None, fixation_k_min: int = 16, focal_layers=None,
           fixation_dilation: int = 0, fixation_refresh: int = 1,
           fixation_sample: int = FIXATION_SAMPLE, merge=None, merge_positions: str = "original",
           merge_score: str = "auto") -> Foveation:
    """Turn on fixation and/or token merging for a llama-cpp-python `Llama` (arguments as
    foveate.Reader's). `chat_handler` defaults to the Llama's own; merging needs one.
    Returns the Foveation handle (change settings, read stats). Raises TypeError/ValueError
    naming the bad argument."""
    from ...engine.merging import check_merge_positions, parse_merge, resolve_merge_score

    merging = parse_merge(merge)[0] != B.MERGE_OFF   # bad merge settings fail before fixation changes
    check_merge_positions(merge_positions)
    resolve_merge_score(merge_score, "")
    fov = Foveation(llm, chat_handler)
    if merging and fov.handler is None:
        fov._mtmd()   # raises: merging needs the image chat handler
    fov.set_fixation(fixation, fixation_k_min, focal_layers, fixation_dilation, fixation_refresh,
                     fixation_sample)
    fov.set_merge(merge, merge_positions, merge_score)
    return fov
