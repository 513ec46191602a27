"""Limits every request body meets before anything parses it (an ASGI middleware): a size
per route, refused by Content-Length before a byte is read and by counting the bytes as they
stream in (a chunked body has no length), and a time: a body that stops arriving (half sent,
or a chunked body left open) is answered 408 instead of holding its connection forever."""
from __future__ import annotations

import asyncio
import json


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class BodyLimits:
    """limits: path -> the largest body in bytes (other paths: `default`); timeout: seconds a
    body may pause between two of its chunks."""

    def __init__(self, app, limits: dict[str, int], default: int, timeout: float):
        self.app, self.limits, self.default, self.timeout = app, limits, default, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope["path"], self.default)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await _answer(send, 400, "Content-Length is not a number")
            if n > limit:   # refused before the body is read
                return await _answer(send, 413, f"the request body is {n} bytes, over the "
                                                f"server's limit of {limit}", "request_too_large")
        seen, complete = 0, False

        async def limited():
            nonlocal seen, complete
            if complete:   # the body is in: a streaming answer waits here for a disconnect
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                raise BodyTimeout(f"the request body stopped arriving for {self.timeout:g} s") from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(f"the request body is over the server's limit of {limit} "
                                       f"bytes")
                complete = not msg.get("more_body", False)
            return msg

        await self.app(scope, limited, send)


async def _answer(send, status: int, message: str, code: str | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": None, "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
