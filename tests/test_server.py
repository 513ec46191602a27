"""`foveate serve` against the official openai client: same text as Reader.read, streaming,
concurrent requests, every bad request a 4xx in OpenAI's shape, API key, busy 503, a client
that disconnects mid-stream, and /v1/ocr on a PDF."""
from __future__ import annotations

import base64
import io
import socket
import threading
import time

import pytest

from conftest import DATA, REPO

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

READER = REPO / "models/reader"
MODEL, MMPROJ = READER / "foveate-reader-q8_0.gguf", READER / "foveate-reader-mmproj-f16.gguf"
PAGE = READER / "sample-page.png"
KEY = "sk-test-foveate"


def _uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _messages(url: str, text: str | None = "Read the text in the image."):
    parts = [{"type": "image_url", "image_url": {"url": url}}]
    if text:
        parts.append({"type": "text", "text": text})
    return [{"role": "user", "content": parts}]


class _Server:
    def __init__(self, reader=None, **kw):
        import uvicorn

        from foveate import Reader
        from foveate.surface.server import create_app

        n = kw.get("parallel", 1)
        self.reader = reader or Reader(MODEL, MMPROJ, threads=2, fixation=0.05, merge=0.84,
                                       parallel=n, n_ctx=4096 * n)
        self.app = app = create_app(self.reader, "foveate-reader", **kw)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, key=KEY):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120)

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)
        self.reader.close()


@pytest.fixture(scope="module", params=[1, 4], ids=["one-at-a-time", "np4"])
def srv(request):
    """The server reading one request at a time, and with -np 4 (concurrent requests decode
    together in one batched context)."""
    s = _Server(api_key=KEY, queue=16, max_image_bytes=2 << 20, parallel=request.param)
    yield s
    s.close()


def test_text_equals_reader_read(srv):
    want = srv.reader.read(PAGE, max_tokens=400).text
    out = srv.client().chat.completions.create(model="foveate-reader", max_tokens=400,
                                                messages=_messages(_uri(PAGE.read_bytes())))
    assert out.choices[0].message.content == want
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens > 100


def test_streaming_gives_the_same_text(srv):
    want = srv.reader.read(PAGE, max_tokens=400).text
    chunks = srv.client().chat.completions.create(model="foveate-reader", max_tokens=400,
                                                   stream=True,
                                                   messages=_messages(_uri(PAGE.read_bytes())))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == want


def test_concurrent_requests_equal_their_sequential_results(srv):
    from concurrent.futures import ThreadPoolExecutor

    pages = sorted((DATA / "pages").glob("*.png"))[:4]
    want = [srv.reader.read(p, max_tokens=300).text for p in pages]
    cl = srv.client()

    def ask(p):
        return cl.chat.completions.create(model="foveate-reader", max_tokens=300,
                                          messages=_messages(_uri(p.read_bytes()))).choices[0].message.content
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(ask, pages * 4))
    assert got == want * 4


def _post(srv, body, key=KEY, raw=None):
    h = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return httpx.post(srv.url + "/v1/chat/completions", content=raw, headers=h, timeout=60)
    return httpx.post(srv.url + "/v1/chat/completions", json=body, headers=h, timeout=60)


@pytest.mark.parametrize("case,status,words", [
    ("broken base64", 400, "base64 data is broken"),
    ("not an image", 400, "ImageError"),
    ("too large", 413, "over the server's limit"),
    ("no image", 400, "has no image"),
    ("unknown model", 404, "unknown model"),
    ("file url", 400, "file:// URLs are off"),
    ("bad max_tokens", 400, "max_tokens"),
    ("negative temperature", 400, "temperature must be a number >= 0"),
    ("top_p over 1", 400, "top_p must be in (0, 1]"),
])
def test_bad_requests_are_4xx_and_the_server_goes_on(srv, case, status, words):
    good = _uri(PAGE.read_bytes())
    body = {"model": "foveate-reader", "messages": _messages(good), "max_tokens": 5}
    if case == "broken base64":
        body["messages"] = _messages("data:image/png;base64,@@@not-base64@@@")
    elif case == "not an image":
        body["messages"] = _messages(_uri(b"hello, not a picture"))
    elif case == "too large":
        body["messages"] = _messages(_uri(b"\0" * (3 << 20)))
    elif case == "no image":
        body["messages"] = [{"role": "user", "content": "Read the text."}]
    elif case == "unknown model":
        body["model"] = "gpt-9"
    elif case == "file url":
        body["messages"] = _messages(f"file://{PAGE}")
    elif case == "bad max_tokens":
        body["max_tokens"] = -3
    elif case == "negative temperature":
        body["temperature"] = -1
    elif case == "top_p over 1":
        body["top_p"] = 7
    r = _post(srv, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"] and err["type"]
    ok = _post(srv, {"model": "foveate-reader", "messages": _messages(good), "max_tokens": 5})
    assert ok.status_code == 200


def test_not_json_and_api_key(srv):
    assert _post(srv, None, raw=b"{not json").status_code == 400
    for key in (None, "sk-wrong"):
        r = _post(srv, {"messages": _messages(_uri(PAGE.read_bytes()))}, key=key)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        srv.client(key="sk-wrong").models.list()
    assert [m.id for m in srv.client().models.list().data] == ["foveate-reader"]
    assert httpx.get(srv.url + "/health").json() == {"status": "ok"}


def test_disconnect_mid_stream_frees_the_reader(srv):
    body = {"model": "foveate-reader", "stream": True, "max_tokens": 400,
            "messages": _messages(_uri(PAGE.read_bytes()))}
    with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as r:
        it = r.iter_lines()
        got = [next(it) for _ in range(4)]
        assert any("content" in g for g in got)
    # gone: the next request is served (that the page itself stops, "cancelled", is
    # test_server_abuse.py's test with a model that would read for tens of seconds)
    ok = _post(srv, {"model": "foveate-reader", "messages": _messages(_uri(PAGE.read_bytes())),
                     "max_tokens": 5})
    assert ok.status_code == 200


def test_ocr_endpoint_reads_pdf_pages(srv):
    from PIL import Image

    pages = sorted((DATA / "pages").glob("*.png"))[:3]
    buf = io.BytesIO()
    ims = [Image.open(p).convert("RGB") for p in pages]
    ims[0].save(buf, format="PDF", save_all=True, append_images=ims[1:], resolution=72)
    r = httpx.post(srv.url + "/v1/ocr", files={"file": ("doc.pdf", buf.getvalue())},
                   data={"pages": "2-3"}, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert r.status_code == 200, r.text
    got = r.json()["pages"]
    assert [p["page"] for p in got] == [2, 3]
    from foveate.instruments.evaluate import cer
    for p, path in zip(got, pages[1:]):
        assert cer(p["text"].strip(), path.with_suffix(".txt").read_text().strip()) < 0.1
    bad = httpx.post(srv.url + "/v1/ocr", files={"file": ("doc.pdf", buf.getvalue())},
                     data={"pages": "7"}, headers={"Authorization": f"Bearer {KEY}"})
    assert bad.status_code == 400 and "past the end" in bad.json()["error"]["message"]


def test_busy_server_answers_503_with_retry_after():
    """queue=0: one request in flight, none waiting. Six at once: the others are told to come
    back (503, Retry-After), none fails otherwise, and the server serves again afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    s = _Server(queue=0)
    try:
        body = {"model": "foveate-reader", "max_tokens": 400,
                "messages": _messages(_uri(PAGE.read_bytes()))}
        barrier = threading.Barrier(6)

        def ask(_):
            barrier.wait()
            return httpx.post(s.url + "/v1/chat/completions", json=body, timeout=120)
        with ThreadPoolExecutor(6) as ex:
            rs = list(ex.map(ask, range(6)))
        codes = sorted(r.status_code for r in rs)
        assert 503 in codes and set(codes) <= {200, 503}, codes
        assert all(r.headers["retry-after"] == "2" for r in rs if r.status_code == 503)
        assert httpx.post(s.url + "/v1/chat/completions", json=body, timeout=120).status_code == 200
    finally:
        s.close()
