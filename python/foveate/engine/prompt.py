"""The prompt around the page: the model's own chat template (llama.cpp's, or the GGUF's jinja
rendered in a sandbox) around one user turn of mtmd's image marker and the instruction."""
from __future__ import annotations

import ctypes
import os

from ..native import bindings as B

llama = B.llama


def format_prompt(eng, prompt: str) -> str:
    """The model's own chat template around one user turn: image marker + prompt; `eng` is
    the Engine (its template, marker, family, vocab)."""
    # an empty prompt is the image alone (LightOnOCR is prompted so)
    content = f"{eng.marker}\n{prompt}" if prompt else eng.marker
    if not eng._template:
        return content
    if eng.family.family is not None and eng.family.family.jinja:
        return render_jinja(eng, content, prompt)
    role, text = b"user", content.encode()
    msg = llama.llama_chat_message(role=role, content=text)
    arr = (llama.llama_chat_message * 1)(msg)
    buf = ctypes.create_string_buffer(len(text) * 2 + 4096)
    n = llama.llama_chat_apply_template(eng._template, arr, 1, True, buf, len(buf))
    if n < 0:  # a template llama.cpp does not know (PaddleOCR-VL's): render its jinja
        return render_jinja(eng, content, prompt)
    if n > len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        n = llama.llama_chat_apply_template(eng._template, arr, 1, True, buf, len(buf))
    return buf.raw[:n].decode("utf-8", errors="replace")

def render_jinja(eng, content: str, prompt: str = "") -> str:
    """The GGUF's jinja chat template rendered in a sandbox (as llama-server's --jinja
    does) around one user turn; the bare content if it does not render. A template that
    reads only lists of parts (PaddleOCR-VL's) is given an image part and the prompt; what
    it writes for the image is replaced by mtmd's marker (mtmd adds the model's own image
    tokens around it)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment   # a dependency (pyproject)

    tok = lambda t: eng._piece(t).decode("utf-8", errors="replace") if t >= 0 else ""
    try:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = lambda msg: (_ for _ in ()).throw(ValueError(msg))
        tpl = env.from_string(eng._template.decode("utf-8", errors="replace"))
        fam = eng.family.family if eng.family else None
        extra = {"enable_thinking": False} if fam is not None and fam.thinking_off else {}
        render = lambda c: tpl.render(
            messages=[{"role": "user", "content": c}], add_generation_prompt=True,
            bos_token=tok(llama.llama_vocab_bos(eng._vocab)),
            eos_token=tok(llama.llama_vocab_eos(eng._vocab)), **extra)
        out = render(content)
        if eng.marker in out:
            return out
        text = [{"type": "text", "text": prompt}] if prompt else []
        with_image, without = render([{"type": "image"}] + text), render(text)
    except Exception:   # noqa: BLE001 - any template error: the bare content, as before
        return content
    # the image's part of the rendering: what lies between the common prefix and suffix
    i = len(os.path.commonprefix([with_image, without]))
    j = len(os.path.commonprefix([with_image[i:][::-1], without[i:][::-1]]))
    if len(with_image) - i - j <= 0:
        return content
    return with_image[:i] + eng.marker + with_image[len(with_image) - j:]
