"""The REST API (FastAPI): datasets, Cortex-style search with ``q`` and ``page``, samples, their media and
thumbnails. Each route maps to one library call, so the API and the Python API never diverge.

>>> app = create_app(home="/tmp/vc-home")                                           # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)

This module builds the app: its middleware, its error handlers (:mod:`.errors`) and the routes of each
route module (``*_routes``), which share one :class:`~.context.ServerContext`.
"""

import contextlib
import os
import re
from typing import Any

from .admission import ANALYSES, HEAVY_QUERIES, Admission, LaneSettings
from . import defaults

__all__ = ["create_app", "request_threads", "API_KEY_HEADER", "USER_HEADER"]

API_KEY_HEADER = "X-API-Key"
USER_HEADER = "X-Viscurate-User"
_USER_RE = re.compile(r"[^A-Za-z0-9 ._@-]")


def request_threads(cores: int | None = None) -> int:
    """How many requests a server runs at once: 4 per core, 8 to 40. Past that they wait in arrival order
    in the event loop. Requests are mostly Python holding the GIL between short DuckDB calls: 40 threads
    at once on 2 cores (the thread pool's default) share it in a lottery that leaves some requests waiting
    far longer than others (search p99 256-288 ms against 203-240 with 8, bench/README.md), and gain no
    throughput.

    >>> request_threads(2), request_threads(4), request_threads(16)
    (8, 16, 40)
    """
    if cores is None:
        from ..common.cores import cpu_count
        cores = cpu_count()
    return min(40, max(8, 4 * cores))


def user_name(value: str | None) -> str:
    """Who a loopback request says it is (letters, digits, ' ._@-', 64 at most), or ``local``.

    >>> user_name("ana@lab <script>"), user_name(None)
    ('ana@lab script', 'local')
    """
    cleaned = _USER_RE.sub("", value or "").strip()[:64]
    return cleaned or "local"


class Identify:
    """ASGI middleware: who is asking, as ``request.state.user``: the owner of the API key (and a 401
    without a known key) when ``keys`` is given, else the person at this loopback machine, as they say
    (:data:`USER_HEADER`), for the audit trail. Plain ASGI: a ``BaseHTTPMiddleware`` costs a task group
    and a stream per request."""

    def __init__(self, inner: Any, keys: Any = None):
        self.inner = inner
        self.keys = keys  # a KeyStore, or None: no key needed

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        headers = Headers(scope=scope)
        if self.keys is not None:
            owner = self.keys.owner(headers.get(API_KEY_HEADER))
            if owner is None:
                refused = JSONResponse({"error": f"missing or unknown API key (header {API_KEY_HEADER})"},
                                       status_code=401)
                return await refused(scope, receive, send)
            user = f"key:{owner}"
        else:
            user = user_name(headers.get(USER_HEADER))
        scope.setdefault("state", {})["user"] = user
        await self.inner(scope, receive, send)


class UploadsToAnalyze:
    """ASGI middleware: ``POST /v1/analyze`` with a multipart body is an upload (Cortex's "analyze this
    image" took a URL or an image on one route): it is served by ``/v1/analyze/upload``, limits and all."""

    def __init__(self, inner: Any):
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.datastructures import Headers

        if (scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/analyze"
                and Headers(scope=scope).get("content-type", "").lower().startswith("multipart/form-data")):
            scope = dict(scope, path="/v1/analyze/upload", raw_path=b"/v1/analyze/upload")
        await self.inner(scope, receive, send)


def create_app(home: str | os.PathLike | None = None, *, require_key: bool = False,
               thumbnail_cache: str | os.PathLike | None = None, allow_private_urls: bool = False,
               max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES, max_pixels: int = defaults.MAX_PIXELS,
               request_threads: int | None = None, allowed_hosts: tuple[str, ...] = (),
               max_body_bytes: int = defaults.MAX_BODY_BYTES, fetch_deadline: float = defaults.FETCH_DEADLINE_S,
               heavy_queries: LaneSettings = HEAVY_QUERIES, analyses: LaneSettings = ANALYSES) -> Any:
    """The ASGI app over the workspace at ``home``. ``require_key``: every request must carry one of the
    workspace's API keys (:class:`~viscurate.server.keys.KeyStore`) in the ``X-API-Key`` header; keys
    created or revoked while the server runs count from the next request. ``allow_private_urls``: let
    ``/v1/analyze`` fetch from loopback and private addresses (an operator's choice for an intranet, never
    a request's). ``max_upload_bytes``: the largest image ``/v1/analyze`` accepts, uploaded or fetched; ``max_pixels``: the
    most pixels its header may declare (413 beyond, before any decoding). ``request_threads``: how many
    requests run at once (:func:`request_threads`; the others wait in arrival order); None keeps the
    ASGI server's own limit. ``max_body_bytes``: the largest JSON body (routes that take lists of sample
    ids allow 4 MiB, uploads ``max_upload_bytes`` and their form; 413 beyond, :mod:`.limits`);
    ``fetch_deadline``: seconds for a whole URL fetch of ``/v1/analyze``. ``heavy_queries`` and
    ``analyses``: the lanes of queries that scan free-form JSON and of ``/v1/analyze`` (:mod:`.admission`).
    ``allowed_hosts``: host names served besides loopback and the local address
    (a reverse proxy's; ``*``: any, the default when every request needs a key): see :mod:`.security`."""
    from fastapi import FastAPI

    from ..store.workspace import Workspace, make_dirs
    from . import analyze_routes, curation_routes, dataset_routes, job_routes, media_routes, selection_routes, web
    from .analyze import remove_scratch
    from .context import AnalyzeLimits, ServerContext
    from .errors import install_handlers
    from .jobs import JobQueue
    from .keys import KeyStore
    from .limits import MULTIPART_OVERHEAD, BodyLimit, BodyLimits
    from .security import install

    store = KeyStore(Workspace(home).home)
    context = ServerContext(
        home, jobs=JobQueue(), admission=Admission(heavy=heavy_queries, analysis=analyses),
        analyze_limits=AnalyzeLimits(max_upload_bytes=max_upload_bytes, max_pixels=max_pixels,
                              fetch_deadline=fetch_deadline, allow_private_urls=allow_private_urls),
        thumbnail_cache=thumbnail_cache)

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        make_dirs(Workspace(home).home / "server")  # 0700 (unless shared) before uploads and exports land there
        remove_scratch(home)  # left behind by a crash mid-analysis
        if request_threads is not None:  # the limiter belongs to the running event loop
            import anyio.to_thread
            anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads
        yield

    # no /docs or /redoc: Swagger UI and ReDoc load their files from a CDN, and nothing may come from the internet
    app = FastAPI(title="viscurate", version="1", docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  lifespan=lifespan)
    app.state.jobs = context.jobs
    app.state.admission = context.admission

    app.add_middleware(context.admission.middleware)  # innermost: counts the requests the guards let in
    app.add_middleware(Identify, keys=store if require_key else None)
    # inside UploadsToAnalyze (added next, so outside this one): an upload to /v1/analyze has the upload's limit
    app.add_middleware(BodyLimit, limits=BodyLimits(
        json=max_body_bytes, ids=max(max_body_bytes, defaults.MAX_IDS_BODY_BYTES),
        upload=max_upload_bytes + MULTIPART_OVERHEAD))
    app.add_middleware(UploadsToAnalyze)
    install(app, allowed_hosts or (("*",) if require_key else ()))
    install_handlers(app)

    # in this order: it is the order of /openapi.json
    for routes in (analyze_routes, dataset_routes, media_routes, curation_routes, selection_routes, job_routes):
        routes.register(app, context)
    web.register(app)
    return app
