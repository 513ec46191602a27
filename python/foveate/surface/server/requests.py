"""What a request to `foveate serve` carries, checked at the edge: the OpenAI-shaped error
(APIError), the chat request's body as pydantic models (JSON types as OpenAI's API takes
them: `"stream": "false"`, `"max_tokens": true` or `1e999` are refused, not coerced), its
image and prompt, image URLs (data URIs; file:// only when the server allows it; never a
network fetch), and the byte limits applied before a body is parsed."""
from __future__ import annotations

import base64
import binascii
import math
import re
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      ValidationError, field_validator)


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.param, self.code = status, type_, param, code
        self.headers = headers or {}


def _utf8(s: str) -> str:
    """JSON strings may hold lone surrogates (`"\\ud800"`): not text, refused here."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text (it holds a lone surrogate)") from None
    return s


Number = Union[StrictInt, StrictFloat]   # JSON numbers; booleans and strings are refused
_TYPES = {"str", "int", "float", "bool"}


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: StrictStr
    _check = field_validator("url")(_utf8)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: StrictStr
    text: Optional[StrictStr] = None
    image_url: Optional[Union[ImageURL, StrictStr]] = None
    _check = field_validator("text")(lambda s: s if s is None else _utf8(s))


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: StrictStr
    content: Optional[Union[StrictStr, list[ContentPart]]] = None
    _check = field_validator("content")(lambda c: _utf8(c) if isinstance(c, str) else c)


class ChatRequest(BaseModel):
    """The fields foveate reads; others (n, stop, user, ...) are taken and ignored, as the
    openai client sends some by default."""
    model_config = ConfigDict(extra="allow")
    messages: Annotated[list[Message], Field(min_length=1)]
    model: Optional[StrictStr] = None
    max_tokens: Optional[Annotated[StrictInt, Field(ge=1, le=1 << 20)]] = None
    max_completion_tokens: Optional[Annotated[StrictInt, Field(ge=1, le=1 << 20)]] = None
    temperature: Optional[Number] = None
    top_p: Optional[Number] = None
    seed: Optional[StrictInt] = None
    stream: StrictBool = False
    # foveate's extension: the page's text as another reader read it (README, "Drafts");
    # greedy decoding verifies it and the answer stays the one without it
    draft: Optional[StrictStr] = None
    _check_draft = field_validator("draft")(lambda c: _utf8(c) if isinstance(c, str) else c)

    @field_validator("temperature", "top_p")
    @classmethod
    def _finite(cls, v):
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


def validation_error(e: ValidationError) -> APIError:
    """pydantic's first complaint as OpenAI's 400: the field's path, then what is wrong."""
    # a union (a message's content: a string or a list of parts) reports each branch; the
    # most specific complaint says what is wrong: our own checks first, then the deepest path
    err = max(e.errors(), key=lambda x: (x.get("type") == "value_error", len(x.get("loc", ()))))
    # the path without pydantic's union branch labels (str, list[ContentPart], ImageURL...)
    loc = ".".join(str(x) for x in err.get("loc", ())
                   if isinstance(x, int) or (re.fullmatch(r"[a-z_]+", x) and x not in _TYPES))
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    return APIError(400, f"{loc or 'the body'}: {msg}", param=(loc.split(".")[0] or None))


def parse_body(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object")
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as e:
        raise validation_error(e) from None


def _decode_image_url(url: str, allow_local: bool, max_bytes: int) -> bytes:
    if url.startswith("data:"):
        head, _, payload = url.partition(",")
        if ";base64" not in head:
            raise APIError(400, "image_url data URIs must be base64 (data:image/png;base64,...)",
                           param="image_url")
        if len(payload) * 3 // 4 > max_bytes + 3:   # refused before it is decoded
            raise APIError(413, f"image is about {len(payload) * 3 // 4} bytes, over the server's "
                                f"limit of {max_bytes}", param="image_url", code="image_too_large")
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


def parse_chat(req: ChatRequest, allow_local: bool, max_bytes: int) -> tuple[bytes, str | None]:
    """(the image, the prompt) of a chat request: one image_url part, the user's text parts
    joined. The media type a data URI names is not checked: the bytes are (a PNG sent as
    image/jpeg reads as the PNG it is)."""
    images, texts = [], []
    for m in req.messages:
        if isinstance(m.content, str):
            if m.role == "user":
                texts.append(m.content)
            continue
        for part in m.content or []:
            if part.type == "image_url":
                iu = part.image_url
                url = iu.url if isinstance(iu, ImageURL) else iu
                if not isinstance(url, str):
                    raise APIError(400, "image_url.url must be a string", param="image_url")
                images.append(_decode_image_url(url, allow_local, max_bytes))
            elif part.type == "text":
                if m.role == "user":
                    texts.append(part.text or "")
            else:
                raise APIError(400, f"content part type {part.type!r} is not supported (text and "
                                    f"image_url are)", param="messages")
    if not images:
        raise APIError(400, "the request has no image (an image_url content part)", param="messages")
    if len(images) > 1:
        raise APIError(400, "one image per request (send pages as separate requests)",
                       param="messages")
    prompt = "\n".join(t for t in texts if t.strip()) or None
    return images[0], prompt


def parse_sampling(req: ChatRequest) -> dict:
    """A chat request's max_tokens and sampling knobs, as Reader.read takes them (ranges
    checked as the API and the CLI check them)."""
    from ...engine.core import Sampling

    kw = {}
    max_tokens = req.max_tokens if req.max_tokens is not None else req.max_completion_tokens
    if max_tokens is not None:
        kw["max_tokens"] = max_tokens
    for k in ("temperature", "top_p", "seed"):
        if getattr(req, k) is not None:
            kw[k] = getattr(req, k)
    if req.draft is not None:
        kw["draft"] = req.draft
    try:
        Sampling(**{k: v for k, v in kw.items() if k not in ("max_tokens", "draft")})
    except ValueError as e:
        raise APIError(400, str(e), param=str(e).split()[0]) from None
    return kw
