"""How many bytes a request body may have, per route, enforced while it is read (ASGI middleware).

A JSON body grows about twentyfold once parsed into Python objects (a 200 MB search body took 3.9 GB),
so the limit is checked before any parsing: a declared ``Content-Length`` over the limit is a 413 at
once, before a byte of the body is read; a body without one (chunked) is counted as it arrives and cut
off as soon as it passes the limit. Either way the server holds at most the limit plus one chunk.

>>> limits = BodyLimits(json=2**20, ids=4 * 2**20, upload=50 * 2**20)
>>> limits.for_path("/v1/datasets/photos/search"), limits.for_path("/v1/datasets/photos/tags")
(1048576, 4194304)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import defaults

__all__ = ["BodyLimits", "BodyLimit", "BodyTooLarge", "MULTIPART_OVERHEAD", "UPLOAD_PATHS", "content_length"]

MULTIPART_OVERHEAD = 64 * 2**10  # an upload's form fields and part headers, beside the image itself
UPLOAD_PATHS = frozenset({"/v1/analyze/upload"})
# routes whose body may list sample ids rather than a query: slices, tags, review verdicts, examples
_IDS_PATH = re.compile(r"/v1/datasets/[^/]+/(slices/[^/]+|tags|review/[^/]+|selections|autotag)")


@dataclass(frozen=True)
class BodyLimits:
    """The most bytes a body may have: ``upload`` on the upload routes (the image plus the form around
    it), ``ids`` on the routes that take lists of sample ids, ``json`` on every other route."""

    json: int = defaults.MAX_BODY_BYTES
    ids: int = defaults.MAX_IDS_BODY_BYTES
    upload: int = defaults.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD

    def for_path(self, path: str) -> int:
        if path in UPLOAD_PATHS:
            return self.upload
        if _IDS_PATH.fullmatch(path):
            return self.ids
        return self.json


def _too_large_message(limit: int) -> str:
    return f"the request body is larger than this route's limit of {limit:,} bytes"


try:
    from starlette.exceptions import HTTPException as _HTTPException
except ImportError:  # the server needs starlette anyway; this keeps the module importable for its doctest
    _HTTPException = Exception  # type: ignore[assignment,misc]


class BodyTooLarge(_HTTPException):  # type: ignore[misc,valid-type]
    """Raised to the app by ``receive`` when a streamed body passes its limit: FastAPI lets an
    ``HTTPException`` through its body parsing, so the app's handler answers it (413)."""

    def __init__(self, limit: int):
        super().__init__(status_code=413, detail=_too_large_message(limit))


class BodyLimit:
    """ASGI middleware: each HTTP request's body limited to ``limits.for_path(path)`` bytes.

    Plain ASGI (no ``BaseHTTPMiddleware``): it only wraps ``receive``."""

    def __init__(self, inner: Any, limits: BodyLimits | None = None):
        self.inner = inner
        self.limits = limits or BodyLimits()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        limit = self.limits.for_path(scope["path"])
        from starlette.datastructures import Headers
        declared = content_length(Headers(scope=scope))
        if declared is not None and declared > limit:  # refused before a byte of the body is read
            return await _refuse(limit, send)
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            if received > limit:  # the app asks again after the error: it still gets none
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.inner(scope, limited_receive, watched_send)
        except BodyTooLarge:  # raised where no handler of the app saw it (outside a route)
            if started:
                raise
            await _refuse(limit, send)


def content_length(headers: Any) -> int | None:
    """The body's size as the ``Content-Length`` of ``headers`` (a mapping) declares it, or None without one.

    >>> content_length({"content-length": "120"}), content_length({})
    (120, None)
    """
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None  # none (chunked), or malformed: the ASGI server refuses that before we see it


async def _refuse(limit: int, send: Any) -> None:
    import json

    body = json.dumps({"error": _too_large_message(limit)}).encode()
    # the unread body is not drained: the server closes the connection after this answer
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
