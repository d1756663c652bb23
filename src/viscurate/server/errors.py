"""The server's own errors and what a client is told about any error.

Errors are JSON ``{"error": "..."}`` with a 4xx status for what the client can fix (unknown dataset or
sample, bad query, bad body) and a bare 500 without details otherwise (the details go to the log).

>>> install_handlers(app)                                                           # doctest: +SKIP
"""

import logging
import math
import re
from typing import Any

from ..errors import ViscurateError

__all__ = ["NotFound", "TooLarge", "ENGINE_REFUSED", "client_message", "install_handlers"]

log = logging.getLogger("viscurate.server")

# how DuckDB opens its messages ("Invalid Input Error: ...", "IO Error: Cannot open file ...")
_ENGINE_TEXT = re.compile(r"\b(?:Invalid Input|Conversion|Binder|Parser|Catalog|Out of Range|Constraint|Internal|"
                          r"Not implemented|IO|Invalid Type|Dependency|Permission|Syntax|Transaction|"
                          r"Serialization|Interrupt|Out of Memory|Sequence|Fatal|HTTP) Error: ", re.IGNORECASE)
ENGINE_REFUSED = "the database engine refused it (the details are in the server's log)"


class NotFound(ViscurateError):
    """No such dataset, sample or job (404)."""


class TooLarge(ViscurateError):
    """The request's image is over the size limit (413)."""


def client_message(request: Any, error: Exception) -> str:
    """What a client is told about ``error``: its message, or, when it carries the database engine's
    text (its functions, casts, SQL and file paths are none of the client's business), our own words
    before that text and a pointer to the log, where the whole message goes.

    >>> class R: method, url = "POST", type("U", (), {"path": "/x"})
    >>> client_message(R, ValueError("page must be between 1 and 9"))
    'page must be between 1 and 9'
    >>> client_message(R, ValueError("the query could not run: Invalid Input Error: invalid perl operator"))
    "the query could not run: the database engine refused it (the details are in the server's log)"
    """
    text = str(error)
    engine_text = _ENGINE_TEXT.search(text)  # the text, not the cause: our own words stay, e.g. "busy"
    if engine_text is None:
        return text
    log.warning("%s %s refused by the engine: %s", request.method, request.url.path, text)
    ours = text[:engine_text.start()].rstrip(": ")
    return f"{ours}: {ENGINE_REFUSED}" if ours else f"the request could not run: {ENGINE_REFUSED}"


def install_handlers(app: Any) -> None:
    """Answer every error raised on ``app`` in the JSON shape above, with its status."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ..curate.edits import EditConflict
    from ..errors import DatasetBusy, SampleNotFound
    from .admission import Overloaded

    def json_error(status: int) -> Any:
        async def handler(request: Request, e: Exception) -> JSONResponse:
            return JSONResponse({"error": client_message(request, e)}, status_code=status)
        return handler

    # the most specific class wins (Starlette looks handlers up along the exception's MRO)
    for error, status in ((EditConflict, 409), (DatasetBusy, 409), (NotFound, 404), (SampleNotFound, 404),
                          (TooLarge, 413), (ViscurateError, 400)):
        app.add_exception_handler(error, json_error(status))

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, e: Overloaded) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=429, headers={"Retry-After": str(math.ceil(e.retry_after_s))})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        """Starlette's own errors (unknown route or method, an unreadable body) in the same shape as ours."""
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors()]
        return JSONResponse({"error": "invalid request", "details": problems[:20]}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": "internal error (see the server's log)"}, status_code=500)
