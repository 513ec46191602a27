"""`foveate serve`: an OpenAI-compatible OCR server on one Reader (`pip install '.[server]'`).

Endpoints: POST /v1/chat/completions (image_url parts as data URIs; file:// URLs only with
--allow-local-files; `stream: true` as server-sent events), GET /v1/models, GET /health,
POST /v1/ocr (an image or PDF upload, `pages`), in OpenAI's error shape on bad requests.

Why FastAPI + uvicorn and not llama-cpp-python's server (`llama_cpp.server`): that server
drives `Llama` through its chat handlers, which rebuild the prompt their own way (a second
prompt path to keep equal to Reader's), evaluates the last prompt token twice (the first
fixation step already sparse, README), and has no place for PDFs, pages, traces or foveate's
errors. A thin FastAPI layer on `Reader` keeps one code path for the CLI, the API and the
server.

Concurrency: with parallel (-np) N > 1, chat requests go through a BatchScheduler: up to N
decode together in one batched context (engine/batch.py), the others wait; with N = 1 they
take the Reader's lock one at a time. At most `queue` requests wait beyond those in flight;
the next ones get 503 with Retry-After. /v1/ocr uploads (whole documents) take the Reader
between batches.
"""
from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from pathlib import Path

# module level: FastAPI resolves the handlers' annotations (`request: Request`) here
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

WEB_PAGE = Path(__file__).parent / "web" / "index.html"


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.param, self.code = status, type_, param, code
        self.headers = headers or {}


def _decode_image_url(url: str, allow_local: bool, max_bytes: int) -> bytes:
    if url.startswith("data:"):
        head, _, payload = url.partition(",")
        if ";base64" not in head:
            raise APIError(400, "image_url data URIs must be base64 (data:image/png;base64,...)",
                           param="image_url")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, "image_url: the base64 data is broken", param="image_url") from None
    elif url.startswith("file://"):
        if not allow_local:
            raise APIError(400, "image_url: file:// URLs are off (start the server with "
                                "--allow-local-files)", param="image_url")
        p = Path(url[len("file://"):])
        if not p.is_file():
            raise APIError(400, f"image_url: no such file {p}", param="image_url")
        data = p.read_bytes()
    else:
        raise APIError(400, "image_url must be a data URI (no network fetches)", param="image_url")
    if len(data) > max_bytes:
        raise APIError(413, f"image is {len(data)} bytes, over the server's limit of {max_bytes}",
                       param="image_url", code="image_too_large")
    return data


def parse_chat(body: dict, allow_local: bool, max_bytes: int) -> tuple[bytes, str | None]:
    """(the image, the prompt) of a chat request: one image_url part, text parts joined."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise APIError(400, "messages must be a non-empty list", param="messages")
    images, texts = [], []
    for m in msgs:
        if not isinstance(m, dict):
            raise APIError(400, "each message must be an object", param="messages")
        content = m.get("content")
        if isinstance(content, str):
            if m.get("role") == "user":
                texts.append(content)
            continue
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict):
                raise APIError(400, "content parts must be objects", param="messages")
            if part.get("type") == "image_url":
                iu = part.get("image_url")
                url = iu.get("url") if isinstance(iu, dict) else iu
                if not isinstance(url, str):
                    raise APIError(400, "image_url.url must be a string", param="image_url")
                images.append(_decode_image_url(url, allow_local, max_bytes))
            elif part.get("type") == "text" and m.get("role") == "user":
                texts.append(str(part.get("text", "")))
    if not images:
        raise APIError(400, "the request has no image (an image_url content part)", param="messages")
    if len(images) > 1:
        raise APIError(400, "one image per request (send pages as separate requests)",
                       param="messages")
    prompt = "\n".join(t for t in texts if t.strip()) or None
    return images[0], prompt


class BatchScheduler:
    """Concurrent chat requests share one batched context (engine/batch.py): a worker thread
    runs read_many on a feed of the waiting requests, up to `parallel` in flight; each request
    gets its Result through a future, and its tokens through its own on_token. The worker
    holds the Reader only while requests are in flight or waiting."""

    def __init__(self, reader, parallel: int):
        import queue as q

        self.reader, self.parallel = reader, parallel
        self.jobs: q.Queue = q.Queue()
        self.futures: dict[int, object] = {}
        self.next_index = 0
        self.held = None   # the request that woke the worker, served first
        self.worker = threading.Thread(target=self._run, daemon=True, name="foveate-batch")
        self.worker.start()

    def submit(self, job):
        from concurrent.futures import Future

        fut: Future = Future()
        self.jobs.put((job, fut))
        return fut

    def poll(self, idle: bool):
        import queue as q

        try:
            if self.held is not None:
                (job, fut), self.held = self.held, None
            else:
                job, fut = self.jobs.get(timeout=0.2 if idle else 0)
        except q.Empty:
            if idle:
                raise StopIteration   # nothing in flight, nothing waiting: give the Reader back
            return None
        index, self.next_index = self.next_index, self.next_index + 1
        self.futures[index] = fut
        return index, job

    def _run(self):
        from ..engine.batch import read_many
        from ..engine.core import Sampling

        while True:
            self.held = self.jobs.get()   # wait for work without holding the Reader

            def batch():   # on the Reader's engine thread, like every llama.cpp call
                for index, res in read_many(self.reader.engine, self, None, 1024, Sampling(),
                                            self.parallel):
                    self.futures.pop(index).set_result(res)

            with self.reader._lock:
                self.reader._in_batch = True
                try:
                    self.reader._on_engine(batch)
                except BaseException as e:   # the batch failed: every request in it hears why
                    for fut in self.futures.values():
                        fut.set_exception(e)
                    self.futures.clear()
                finally:
                    self.reader._in_batch = False


def create_app(reader, model_name: str, api_key: str | None = None, queue: int = 16,
               max_image_bytes: int = 32 << 20, allow_local_files: bool = False,
               parallel: int = 1):
    from ..errors import FoveateError
    from .output import page_record

    app = FastAPI(title="foveate", version="0.1.0")
    sched = BatchScheduler(reader, parallel) if parallel > 1 else None
    waiting = threading.BoundedSemaphore(queue + max(1, parallel))

    def error(e: APIError):
        return JSONResponse({"error": {"message": str(e), "type": e.type, "param": e.param,
                                       "code": e.code}}, status_code=e.status, headers=e.headers)

    @app.exception_handler(APIError)
    async def _api_error(_, e: APIError):
        return error(e)

    def check_key(request: Request):
        if api_key is None:
            return
        got = request.headers.get("authorization", "")
        if got != f"Bearer {api_key}":
            raise APIError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                           type_="authentication_error", code="invalid_api_key")

    def slot():
        if not waiting.acquire(blocking=False):
            raise APIError(503, f"the server is busy ({queue} requests waiting); retry later",
                           type_="server_error", code="busy", headers={"Retry-After": "2"})

    def sampling(body: dict) -> dict:
        kw = {}
        try:
            if body.get("max_tokens") is not None:
                kw["max_tokens"] = int(body["max_tokens"])
                if kw["max_tokens"] < 1:
                    raise ValueError
            if body.get("temperature") is not None:
                kw["temperature"] = float(body["temperature"])
            if body.get("top_p") is not None:
                kw["top_p"] = float(body["top_p"])
            if body.get("seed") is not None:
                kw["seed"] = int(body["seed"])
        except (TypeError, ValueError):
            raise APIError(400, "max_tokens (>= 1), temperature, top_p and seed must be "
                                "numbers") from None
        from ..engine.core import Sampling
        try:   # the ranges, as the API and the CLI check them
            Sampling(**{k: v for k, v in kw.items() if k != "max_tokens"})
        except ValueError as e:
            raise APIError(400, str(e), param=str(e).split()[0]) from None
        return kw

    def read(image: bytes, prompt, kw, on_token=None):
        try:
            if sched is None:
                return reader.read(image, prompt=prompt, on_token=on_token, **kw)
            from ..engine.batch import PageJob
            from ..engine.core import Sampling
            s = Sampling(**{k: v for k, v in kw.items() if k in ("temperature", "top_p", "seed")})
            res = sched.submit(PageJob(image, reader._prompt(prompt), kw.get("max_tokens", 1024), s,
                                       on_token)).result()
            if isinstance(res, FoveateError):
                raise res
            return res
        except FoveateError as e:
            raise APIError(400, f"{type(e).__name__}: {e}", code=type(e).__name__) from None

    @app.get("/", response_class=HTMLResponse)
    async def page():
        """The local web page: drop a PDF or an image, read it page by page."""
        return WEB_PAGE.read_text(encoding="utf-8")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        return {"object": "list", "data": [{"id": model_name, "object": "model",
                                             "created": 0, "owned_by": "foveate"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        check_key(request)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise APIError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "the body must be a JSON object")
        if body.get("model") not in (None, model_name):
            raise APIError(404, f"unknown model {body.get('model')!r}: this server has "
                                f"{model_name!r}", param="model", code="model_not_found")
        image, prompt = parse_chat(body, allow_local_files, max_image_bytes)
        kw = sampling(body)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        slot()
        if not body.get("stream"):
            from starlette.concurrency import run_in_threadpool
            try:
                res = await run_in_threadpool(read, image, prompt, kw)
            finally:
                waiting.release()
            finish = {"eos": "stop"}.get(res.stats.stop_reason, "length")
            return {"id": rid, "object": "chat.completion", "created": created,
                    "model": model_name,
                    "choices": [{"index": 0, "finish_reason": finish,
                                 "message": {"role": "assistant", "content": res.text}}],
                    "usage": {"prompt_tokens": res.stats.prompt_tokens,
                              "completion_tokens": res.stats.tokens_generated,
                              "total_tokens": res.stats.prompt_tokens + res.stats.tokens_generated},
                    "foveate": page_record(res)["stats"]}
        return StreamingResponse(_stream(request, image, prompt, kw, rid, created),
                                 media_type="text/event-stream")

    async def _stream(request, image, prompt, kw, rid, created):
        """Tokens as server-sent events; a client that goes away stops its page at once."""
        import asyncio
        import queue as q

        tokens: q.Queue = q.Queue()
        gone = threading.Event()

        def work():
            try:
                res = read(image, prompt, kw, on_token=lambda t: tokens.put(t) or gone.is_set())
                tokens.put(("done", res))
            except Exception as e:   # reported in the stream
                tokens.put(("error", e))
            finally:
                waiting.release()

        threading.Thread(target=work, daemon=True).start()

        def event(delta: dict, finish=None) -> str:
            return "data: " + json.dumps({"id": rid, "object": "chat.completion.chunk",
                                          "created": created, "model": model_name,
                                          "choices": [{"index": 0, "delta": delta,
                                                       "finish_reason": finish}]}) + "\n\n"

        yield event({"role": "assistant", "content": ""})
        try:
            while True:
                try:
                    item = tokens.get(timeout=0.05)
                except q.Empty:
                    if await request.is_disconnected():
                        gone.set()
                        return
                    await asyncio.sleep(0)
                    continue
                if isinstance(item, tuple):
                    kind, val = item
                    if kind == "error":
                        msg = str(val)
                        yield "data: " + json.dumps({"error": {"message": msg,
                                                               "type": "invalid_request_error"}}) + "\n\n"
                    else:
                        finish = {"eos": "stop"}.get(val.stats.stop_reason, "length")
                        yield event({}, finish)
                    yield "data: [DONE]\n\n"
                    return
                if item:
                    yield event({"content": item})
        finally:
            gone.set()   # the client is gone or the page is done: a running read stops

    @app.post("/v1/ocr")
    async def ocr(request: Request):
        check_key(request)
        form = await request.form()
        up = form.get("file")
        if up is None or not hasattr(up, "read"):
            raise APIError(400, "upload the page or PDF as the multipart field 'file'", param="file")
        data = await up.read()
        if len(data) > max_image_bytes:
            raise APIError(413, f"upload is {len(data)} bytes, over the limit of {max_image_bytes}",
                           param="file", code="image_too_large")
        pages = form.get("pages") or None
        want_trace = str(form.get("trace", "")).lower() in ("1", "true", "yes") and \
            bool(reader.engine.fixation)
        slot()
        from starlette.concurrency import run_in_threadpool

        def record(r) -> dict:
            rec = page_record(r)
            if r.trace is not None:   # the heat map of where fixation looked, as a data URI
                import io as _io
                from .trace_picture import heatmap
                buf = _io.BytesIO()
                heatmap(r.trace, r.trace.page_image(), buf)
                rec["trace_png"] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
            return rec

        def work():
            try:
                res = list(reader.read_document(data, pages=pages, trace=want_trace))
                return [record(r) for r in res], (res[0].n_pages if res else 0)
            except FoveateError as e:
                raise APIError(400, f"{type(e).__name__}: {e}", code=type(e).__name__) from None
            except ValueError as e:
                raise APIError(400, str(e), param="pages") from None
        try:
            out, n_pages = await run_in_threadpool(work)
        finally:
            waiting.release()
        return {"model": model_name, "source": getattr(up, "filename", None), "n_pages": n_pages,
                "pages": out}

    return app
