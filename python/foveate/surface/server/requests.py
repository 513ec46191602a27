"""What a request to `foveate serve` carries, checked at the edge: the OpenAI-shaped error
(APIError), a chat request's image and prompt, image URLs (data URIs; file:// only when the
server allows it; never a network fetch)."""
from __future__ import annotations

import base64
import binascii
from pathlib import Path


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


def parse_sampling(body: dict) -> dict:
    """A chat request's max_tokens and sampling knobs, as Reader.read takes them."""
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
    from ...engine.core import Sampling
    try:   # the ranges, as the API and the CLI check them
        Sampling(**{k: v for k, v in kw.items() if k != "max_tokens"})
    except ValueError as e:
        raise APIError(400, str(e), param=str(e).split()[0]) from None
    return kw
