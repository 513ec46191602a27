"""llama-cpp-python 0.3.36's own API runs on foveate's libraries."""
import base64


def test_llama_text_completion(models):
    from llama_cpp import Llama

    llm = Llama(model_path=str(models["q8_0"]), n_ctx=512, n_threads=2, verbose=False)
    out = llm.create_completion("Hello", max_tokens=5, temperature=0.0)
    assert out["usage"]["completion_tokens"] <= 5
    assert out["usage"]["prompt_tokens"] == len(llm.tokenize(b"Hello"))


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
