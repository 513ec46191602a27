"""`foveate serve`: an OpenAI-compatible OCR server on one Reader (`pip install '.[server]'`).

Endpoints: POST /v1/chat/completions (image_url parts as data URIs; file:// URLs only with
--allow-local-files; `stream: true` as server-sent events), GET /v1/models, GET /health,
POST /v1/ocr (an image or PDF upload, `pages`), in OpenAI's error shape on bad requests.

Why FastAPI + uvicorn and not llama-cpp-python's server (`llama_cpp.server`): that server
drives `Llama` through its chat handlers, which rebuild the prompt their own way from the
GGUF's jinja template (a second prompt path to keep equal to Reader's), and has no place for
PDFs, pages, traces or foveate's errors. A thin FastAPI layer on `Reader` keeps one code path for the CLI, the API and the
server.

Concurrency: with parallel (-np) N > 1, chat requests go through a BatchScheduler: up to N
decode together in one batched context (engine/batch.py), the others wait; with N = 1 they
take the Reader's lock one at a time. At most `queue` requests wait beyond those in flight;
the next ones get 503 with Retry-After. /v1/ocr uploads (whole documents) take the Reader
between batches.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from pathlib import Path

# module level: FastAPI resolves the handlers' annotations (`request: Request`) here
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from .limits import BodyLimits, BodyTimeout, BodyTooLarge
from .requests import APIError, parse_body, parse_chat, parse_sampling
from .scheduler import BatchScheduler

WEB_PAGE = Path(__file__).parent / "web" / "index.html"


# seconds a request body may pause between two of its chunks before the server gives up
BODY_TIMEOUT_S = 30.0
log = logging.getLogger("foveate.serve")


def create_app(reader, model_name: str, api_key: str | None = None, queue: int = 16,
               max_image_bytes: int = 32 << 20, allow_local_files: bool = False,
               parallel: int = 1, body_timeout: float = BODY_TIMEOUT_S):
    from starlette.requests import ClientDisconnect

    from ...errors import FoveateError
    from ..pipeline.output import page_record

    app = FastAPI(title="foveate", version="0.1.0")
    # a chat body carries the image in base64 (4/3 of its bytes), an upload as it is; both
    # with room for the rest of the request
    app.add_middleware(BodyLimits, limits={
        "/v1/chat/completions": max_image_bytes * 4 // 3 + (1 << 20),
        "/v1/ocr": max_image_bytes + (1 << 20)}, default=1 << 20, timeout=body_timeout)
    sched = BatchScheduler(reader, parallel) if parallel > 1 else None
    app.state.scheduler = sched
    waiting = threading.BoundedSemaphore(queue + max(1, parallel))

    def error(status: int, message: str, type_: str = "invalid_request_error", param=None,
              code=None, headers=None):
        return JSONResponse({"error": {"message": message, "type": type_, "param": param,
                                       "code": code}}, status_code=status, headers=headers or {})

    @app.exception_handler(APIError)
    async def _api_error(_, e: APIError):
        return error(e.status, str(e), e.type, e.param, e.code, e.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_, e: BodyTooLarge):
        return error(413, str(e), code="request_too_large", headers={"Connection": "close"})

    @app.exception_handler(BodyTimeout)
    async def _timeout(_, e: BodyTimeout):
        return error(408, str(e), code="request_timeout", headers={"Connection": "close"})

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _):
        # the client left before its body arrived: nobody reads an answer; one line, no traceback
        log.info("%s %s: the client disconnected before sending its body",
                 request.method, request.url.path)
        return error(400, "the client disconnected")

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        # a bug (bad input is a FoveateError, answered 400): this request's 500, logged once
        # (Starlette raises it on after this answer, so the server logs its traceback)
        log.error("%s %s: %s: %s", request.method, request.url.path, type(e).__name__, e)
        return error(500, f"internal error: {type(e).__name__}", "server_error")

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

    def read(image: bytes, prompt, kw, on_token=None):
        try:
            if sched is None:
                return reader.read(image, prompt=prompt, on_token=on_token, **kw)
            from ...engine.batch import PageJob
            from ...engine.core import Sampling
            s = Sampling(**{k: v for k, v in kw.items() if k in ("temperature", "top_p", "seed")})
            return sched.submit(PageJob(image, reader._prompt(prompt), kw.get("max_tokens", 1024), s,
                                        on_token, draft=kw.get("draft"))).result()
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
        raw = await request.body()   # within the body limits (limits.py)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise APIError(400, "the body is not JSON") from None
        req = parse_body(body)
        del raw, body
        if req.model not in (None, model_name):
            raise APIError(404, f"unknown model {req.model!r}: this server has "
                                f"{model_name!r}", param="model", code="model_not_found")
        image, prompt = parse_chat(req, allow_local_files, max_image_bytes)
        kw = parse_sampling(req)
        stream = req.stream
        del req
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        slot()
        if not stream:
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
        """Tokens as server-sent events; a client that goes away stops its page at once. The
        engine thread hands each token to the event loop (call_soon_threadsafe), so waiting
        for the next one never blocks the loop (/health answers while pages stream)."""
        import asyncio

        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue = asyncio.Queue()
        gone = threading.Event()
        def put(item) -> None:
            loop.call_soon_threadsafe(tokens.put_nowait, item)

        def on_token(text: str) -> bool:   # True stops the page: its client is gone
            put(text)
            return gone.is_set()

        def work():
            try:
                res = read(image, prompt, kw, on_token=on_token)
                put(("done", res))
            except Exception as e:   # reported in the stream
                put(("error", e))
            finally:
                waiting.release()

        threading.Thread(target=work, daemon=True, name="foveate-stream").start()

        def event(delta: dict, finish=None) -> str:
            return "data: " + json.dumps({"id": rid, "object": "chat.completion.chunk",
                                          "created": created, "model": model_name,
                                          "choices": [{"index": 0, "delta": delta,
                                                       "finish_reason": finish}]}) + "\n\n"

        yield event({"role": "assistant", "content": ""})
        try:
            while True:
                try:
                    item = await asyncio.wait_for(tokens.get(), 0.25)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
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
        if pages is not None and not isinstance(pages, str):
            raise APIError(400, "pages must be a text field (1-3,7), not a file", param="pages")
        want_trace = str(form.get("trace", "")).lower() in ("1", "true", "yes") and \
            bool(reader.engine.fixation)
        draft = _ocr_draft(form)
        slot()
        from starlette.concurrency import run_in_threadpool

        def record(r) -> dict:
            rec = page_record(r)
            if r.trace is not None:   # the heat map of where fixation looked, as a data URI
                import io as _io
                from ..pipeline.trace_picture import heatmap
                buf = _io.BytesIO()
                heatmap(r.trace, r.trace.page_image(), buf)
                rec["trace_png"] = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
            return rec

        def work():
            try:
                res = list(reader.read_document(data, pages=pages, trace=want_trace, draft=draft))
                return [record(r) for r in res], (res[0].n_pages if res else 0)
            except FoveateError as e:
                raise APIError(400, f"{type(e).__name__}: {e}", code=type(e).__name__) from None
            except ValueError as e:
                raise APIError(400, str(e), param="draft" if "draft" in str(e) else "pages") from None
        try:
            out, n_pages = await run_in_threadpool(work)
        finally:
            waiting.release()
        return {"model": model_name, "source": getattr(up, "filename", None), "n_pages": n_pages,
                "pages": out}

    return app


def _ocr_draft(form):
    """/v1/ocr's draft fields: `draft`, where each page's draft comes from (auto, pdf, ocr,
    self, none; inputs/draft_sources.py), or `draft_text`, the caller's text for every page."""
    from ...inputs.draft_sources import MODES, DraftText

    source, text = form.get("draft"), form.get("draft_text")
    for name, v in (("draft", source), ("draft_text", text)):
        if v is not None and not isinstance(v, str):
            raise APIError(400, f"{name} must be a text field, not a file", param=name)
    if source is not None and text is not None:
        raise APIError(400, "give draft (a source) or draft_text (your text), not both",
                       param="draft")
    if text is not None:
        return DraftText(text, "text")
    if source is not None and source not in MODES:
        raise APIError(400, f"draft must be one of {', '.join(MODES)} (your own text: draft_text)",
                       param="draft")
    return source
