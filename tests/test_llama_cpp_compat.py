"""llama-cpp-python 0.3.36's own API runs on foveate's libraries."""
import base64

import pytest


def test_llama_text_completion(models):
    """llama-cpp-python's completion on foveate's libraries: its greedy tokens are the
    Engine's own greedy tokens from the same prompt tokens."""
    from llama_cpp import Llama

    from foveate.engine.core import Engine

    llm = Llama(model_path=str(models["q8_0"]), n_ctx=512, n_threads=2, verbose=False)
    prompt = llm.tokenize(b"Hello")
    out = llm.create_completion("Hello", max_tokens=5, temperature=0.0)
    assert out["usage"]["prompt_tokens"] == len(prompt)
    eng = Engine(str(models["q8_0"]), None, n_ctx=512, threads=2)
    try:
        for pos, tok in enumerate(prompt):
            eng._decode_one(tok, pos)
        greedy = []
        for i in range(out["usage"]["completion_tokens"]):
            greedy.append(int(eng.logits().argmax()))
            if eng.is_stop(greedy[-1]):
                break
            eng._decode_one(greedy[-1], len(prompt) + i)
    finally:
        eng.close()
    assert out["usage"]["completion_tokens"] >= 1
    text = llm.detokenize([t for t in greedy if not eng_is_eog(llm, t)]).decode(errors="replace")
    assert out["choices"][0]["text"] == text


def eng_is_eog(llm, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), token))


def test_mtmd_chat_handler_reads_image(models, page):
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    handler = MTMDChatHandler(clip_model_path=str(models["mmproj"]), verbose=False)
    llm = Llama(model_path=str(models["q8_0"]), chat_handler=handler, n_ctx=1024, n_threads=2,
                verbose=False)
    uri = "data:image/png;base64," + base64.b64encode(page.read_bytes()).decode()
    text = {"type": "text", "text": "Read the text."}
    chat = lambda content: llm.create_chat_completion(
        messages=[{"role": "user", "content": content}], max_tokens=4, temperature=0.0)
    without = chat([text])
    out = chat([{"type": "image_url", "image_url": {"url": uri}}, text])
    # llama-cpp-python counts positions: with M-RoPE the 16x8-token image advances the
    # position by max(16, 8) = 16, plus the <|vision_start|>/<|vision_end|> markers
    assert out["usage"]["prompt_tokens"] - without["usage"]["prompt_tokens"] >= 16
    assert isinstance(out["choices"][0]["message"]["content"], str)


# --- foveate.enable: fixation and merging on a llama-cpp-python Llama --------------------------

def _reader_chat(model="foveate-reader-layout-q8_0.gguf", threads=2):
    """A bundled reader behind llama-cpp-python's MTMDChatHandler, with the GGUF's own
    template (ChatML; the parts of a message joined by newlines: the prompt foveate.Reader
    builds)."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    from conftest import REPO

    handler = MTMDChatHandler(clip_model_path=str(REPO / "models/reader/foveate-reader-mmproj-f16.gguf"),
                              verbose=False)
    llm = Llama(model_path=str(REPO / "models/reader" / model), chat_handler=handler, n_ctx=4096,
                n_threads=threads, flash_attn=True, verbose=False)
    return llm, handler


def _chat_read(llm, png):
    uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                               {"type": "text", "text": "Read the text in the image."}]}],
        max_tokens=300, temperature=0.0)
    return out["choices"][0]["message"]["content"]


def test_enable_gives_llama_the_readers_fixation_and_merging():
    """A page read through llama-cpp-python with foveate.enable: merging gives the same text
    as foveate.Reader with the same setting; fixation selects 5% of the (merged) page per
    step at the calibrated focal layer; turned off, the text is the stock one again."""
    import foveate
    from conftest import DATA, REPO
    from foveate.instruments.evaluate import cer

    png = DATA / "pages-document" / "heldout-00003.png"
    truth = png.with_suffix(".txt").read_text()
    llm, handler = _reader_chat()
    dense = _chat_read(llm, png)
    fov = foveate.enable(llm, merge=0.84)
    merged = _chat_read(llm, png)
    st = fov.stats()
    assert st["image_tokens_before_merge"] == 624 and st["image_tokens_merged"] == 524
    assert st["merge_ratio"] == 0.84 and st["merge"] == 0.84 and st["fixation_ratio"] == 0.0
    fov.set_fixation(0.05, k_min=4)
    both = _chat_read(llm, png)
    st = fov.stats()
    assert st["decode_rows"] > 0 and st["image_tokens"] == 524
    assert st["visual_tokens_selected"] == 27          # ceil(0.05 * 524)
    assert st["focal_layers"] == [3]                     # the calibrated layer (sidecar)
    fov.set_merge("off")
    fov.set_fixation(None)
    fov.reset_stats()
    assert _chat_read(llm, png) == dense                 # off again: the stock computation
    assert fov.stats()["decode_rows"] == 0

    with foveate.Reader(REPO / "models/reader/foveate-reader-layout-q8_0.gguf",
                        REPO / "models/reader/foveate-reader-mmproj-f16.gguf", n_ctx=2048,
                        threads=2, merge=0.84) as r:
        assert r.read(png, max_tokens=300).text == merged
        r.engine.set_merge(None)
        assert r.read(png, max_tokens=300).text == dense
    assert cer(dense, truth) < 0.05 and cer(merged, truth) < 0.1 and cer(both, truth) < 0.1


@pytest.mark.parametrize("threads", [1, 2])
def test_the_readme_snippet_with_merging_reads_as_reader_does(threads):
    """README, "llama-cpp-python compatibility": the snippet on the sample page with the
    bundled Q8_0 reader and merge=0.84 prints Reader(merge=0.84)'s text exactly, at 1 and 2
    threads. (Before the bundled template was fixed, trim_blocks deleted the newline between
    the image and the prompt: CER 0.117-0.127 against Reader's 0.067, varying with threads.)"""
    import foveate
    from conftest import REPO

    page = REPO / "models/reader/sample-page.png"
    llm, handler = _reader_chat("foveate-reader-q8_0.gguf", threads)
    foveate.enable(llm, merge=0.84)
    uri = "data:image/png;base64," + base64.b64encode(page.read_bytes()).decode()
    out = llm.create_chat_completion(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": uri}},
        {"type": "text", "text": "Read the text in the image."}]}], max_tokens=512, temperature=0)
    with foveate.Reader(REPO / "models/reader/foveate-reader-q8_0.gguf",
                        REPO / "models/reader/foveate-reader-mmproj-f16.gguf", n_ctx=4096,
                        threads=threads, flash_attn=True, merge=0.84) as r:
        want = r.read(page, max_tokens=512).text
    assert out["choices"][0]["message"]["content"] == want


def test_enable_rejects_bad_arguments(models):
    import pytest
    from llama_cpp import Llama

    import foveate

    with pytest.raises(TypeError, match="llama_cpp.Llama"):
        foveate.enable(object(), fixation=0.05)
    llm = Llama(model_path=str(models["q8_0"]), n_ctx=256, n_threads=2, verbose=False)
    with pytest.raises(ValueError, match="chat handler"):
        foveate.enable(llm, merge=0.84)
    with pytest.raises(ValueError, match=r"fixation ratio must be in \[0, 1\]"):
        foveate.enable(llm, fixation=1.5)
    with pytest.raises(ValueError, match="merge"):
        foveate.enable(llm, fixation=0.05, merge=1.7)
    with pytest.raises(ValueError, match="focal layers"):
        foveate.enable(llm, fixation=0.05, focal_layers=[99])
    with pytest.raises(ValueError, match="merge_score"):
        foveate.enable(llm, fixation=0.05, merge_score="bogus")
    assert foveate.enable(llm, merge=0).merge == "off"   # 0 = off: no handler needed
    fov = foveate.enable(llm, fixation=0.05)   # no handler: fixation alone is fine
    assert fov.stats()["fixation_ratio"] == 0.05
