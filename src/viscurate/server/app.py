"""The REST API (FastAPI): datasets, Cortex-style search with ``q`` and ``page``, samples, their media and
thumbnails. Each route maps to one library call, so the API and the Python API never diverge.

>>> app = create_app(home="/tmp/vc-home")                                           # doctest: +SKIP
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)

Errors are JSON ``{"error": "..."}`` with a 4xx status for what the client can fix (unknown dataset or
sample, bad query, bad body) and a bare 500 without details otherwise (the details go to the log).
Media are only ever the files the catalog lists for a sample: a request names a sample id, never a path.
"""

import contextlib
import hashlib
import io
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ViscurateError
from .admission import ANALYSES, HEAVY_QUERIES, Admission, LaneSettings, Overloaded
from .analyze import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, SCRATCH_DATASET
from .limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IDS_BODY_BYTES
from .netguard import DEFAULT_DEADLINE

__all__ = ["create_app", "request_threads", "PAGE_SIZE", "MAX_THUMBNAIL_SIDE", "API_KEY_HEADER", "USER_HEADER"]

PAGE_SIZE = 25
MAX_PAGE = 1_000_000
MAX_THUMBNAIL_SIDE = 1024
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
    """Who a loopback request says it is (letters, digits, ' ._@-', 64 at most), or ``local``."""
    cleaned = _USER_RE.sub("", value or "").strip()[:64]
    return cleaned or "local"

log = logging.getLogger("viscurate.server")

# how DuckDB opens its messages ("Invalid Input Error: ...", "IO Error: Cannot open file ...")
_ENGINE_TEXT = re.compile(r"\b(?:Invalid Input|Conversion|Binder|Parser|Catalog|Out of Range|Constraint|Internal|"
                          r"Not implemented|IO|Invalid Type|Dependency|Permission|Syntax|Transaction|"
                          r"Serialization|Interrupt|Out of Memory|Sequence|Fatal|HTTP) Error: ", re.IGNORECASE)
ENGINE_REFUSED = "the database engine refused it (the details are in the server's log)"


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


class NotFound(ViscurateError):
    """No such dataset or sample."""


class TooLarge(ViscurateError):
    """The request's image is over the size limit."""


def create_app(home: str | os.PathLike | None = None, *, require_key: bool = False,
               thumbnail_cache: str | os.PathLike | None = None, allow_private_urls: bool = False,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               request_threads: int | None = None, allowed_hosts: tuple[str, ...] = (),
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, fetch_deadline: float = DEFAULT_DEADLINE,
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
    from fastapi import Body, FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from pydantic import BaseModel, Field
    from starlette.datastructures import Headers
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ..curate.edits import EditConflict
    from ..dataset import Dataset
    from ..errors import DatasetBusy, SampleNotFound
    from ..store.workspace import Workspace, validate_name
    from .jobs import JobQueue
    from .keys import KeyStore

    store = KeyStore(Workspace(home).home)
    datasets: dict[str, Dataset] = {}
    jobs = JobQueue()
    admission = Admission(heavy=heavy_queries, analysis=analyses)
    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> Any:
        from ..store.workspace import make_dirs
        from .analyze import remove_scratch
        make_dirs(Workspace(home).home / "server")  # 0700 (unless shared) before uploads and exports land there
        remove_scratch(home)  # left behind by a crash mid-analysis
        if request_threads is not None:  # the limiter belongs to the running event loop
            import anyio.to_thread
            anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads
        yield

    # no /docs or /redoc: Swagger UI and ReDoc load their files from a CDN, and nothing may come from the internet
    app = FastAPI(title="viscurate", version="1", docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  lifespan=lifespan)
    app.state.jobs = jobs
    app.state.admission = admission

    class Search(BaseModel):
        q: dict[str, Any] = Field(default_factory=dict, description="a MongoDB query")
        page: int = Field(1, ge=1, le=MAX_PAGE, description="1-based page of 25 results")
        sort: dict[str, int] | None = Field(None, description='e.g. {"width": -1}')

    def dataset(name: str) -> Dataset:
        try:
            known = Dataset.exists(name, home) and name != SCRATCH_DATASET  # scratch: analyze's, briefly
        except ViscurateError:  # not even a valid name
            known = False
        if not known:
            raise NotFound(f"no dataset named {name!r}")
        if name not in datasets:
            datasets[name] = Dataset.open(name, home)
        return datasets[name]

    def sample(name: str, sample_id: str) -> dict:
        return dataset(name).get(sample_id)  # by primary key; a missing one is SampleNotFound, a 404

    class Identify:
        """Who is asking, as ``request.state.user``: the API key's owner (and a 401 without a known key),
        or on loopback the person at this machine, as they say, for the audit trail. Plain ASGI: a
        ``BaseHTTPMiddleware`` costs a task group and a stream per request."""

        def __init__(self, inner: Any):
            self.inner = inner

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            headers = Headers(scope=scope)
            if require_key:
                owner = store.owner(headers.get(API_KEY_HEADER))
                if owner is None:
                    refused = JSONResponse({"error": f"missing or unknown API key (header {API_KEY_HEADER})"},
                                           status_code=401)
                    return await refused(scope, receive, send)
                user = f"key:{owner}"
            else:
                user = user_name(headers.get(USER_HEADER))
            scope.setdefault("state", {})["user"] = user
            await self.inner(scope, receive, send)

    app.add_middleware(admission.middleware)  # innermost: counts the requests the guards let in
    app.add_middleware(Identify)
    from .limits import MULTIPART_OVERHEAD, BodyLimit, BodyLimits
    # inside UploadsToAnalyze (added next, so outside this one): an upload to /v1/analyze has the upload's limit
    app.add_middleware(BodyLimit, limits=BodyLimits(
        json=max_body_bytes, ids=max(max_body_bytes, DEFAULT_MAX_IDS_BODY_BYTES),
        upload=max_upload_bytes + MULTIPART_OVERHEAD))

    class UploadsToAnalyze:
        """``POST /v1/analyze`` with a multipart body is an upload (Cortex's "analyze this image" took a
        URL or an image on one route): it is served by ``/v1/analyze/upload``, limits and all."""

        def __init__(self, inner: Any):
            self.inner = inner

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if (scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/analyze"
                    and Headers(scope=scope).get("content-type", "").lower().startswith("multipart/form-data")):
                scope = dict(scope, path="/v1/analyze/upload", raw_path=b"/v1/analyze/upload")
            await self.inner(scope, receive, send)

    app.add_middleware(UploadsToAnalyze)
    from .security import install
    install(app, allowed_hosts or (("*",) if require_key else ()))

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

    class Analyze(BaseModel):
        url: str = Field(..., max_length=4096, description="an http(s) URL of an image")
        dataset: str | None = Field(None, description="keep the sample in this dataset (created if missing)")

    def query_lane(request: Request, q: dict | None, sort: Any = None) -> Any:
        """Where a read of ``q`` runs (:meth:`Admission.for_query`), decided before a thread is taken (a
        body of unknown length, chunked, is not weighed in the event loop)."""
        declared = request.headers.get("content-length", "")
        return admission.for_query(q, sort, body_bytes=int(declared) if declared.isdigit() else math.inf)

    def target(name: str | None) -> str | None:
        if name == SCRATCH_DATASET:
            raise ViscurateError(f"{SCRATCH_DATASET!r} is the server's own scratch dataset: name another")
        return None if name is None else validate_name(name)

    def pathless(doc: dict) -> dict:
        """An analyzed sample without ``filepath`` and ``origin``: both name the server's own copy of the
        bytes, an absolute path in its workspace, of no use to a client (which has ``_id``, the media
        route, and ``url`` or ``metadata.original_filename``)."""
        doc.pop("filepath", None)
        doc.pop("origin", None)
        return doc

    def within_pixels(data: bytes) -> bytes:
        from .analyze import image_pixels
        pixels = image_pixels(data)
        if pixels is not None and pixels > max_pixels:
            raise TooLarge(f"the image declares {pixels:,} pixels, over this server's limit of {max_pixels:,}")
        return data

    upload_form = {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "the image (or as field 'image')"},
        "image": {"type": "string", "format": "binary"},
        "dataset": {"type": "string", "description": "keep the sample in this dataset (created if missing)"}}}

    @app.post("/v1/analyze", openapi_extra={"requestBody": {"content": {
        "multipart/form-data": {"schema": upload_form}}}})
    async def analyze_url(body: Analyze = Body(...)) -> dict:
        """Cortex's analyze: download the image at ``url`` (public addresses only), profile and label it,
        and return its sample document (kept in ``dataset`` when one is named). A multipart upload (field
        ``file`` or ``image``) is analyzed as by ``/v1/analyze/upload``."""
        from .analyze import analyze_bytes
        from .netguard import fetch

        def run() -> dict:
            fetched = fetch(body.url, max_bytes=max_upload_bytes, deadline=fetch_deadline,
                            allow_private=allow_private_urls)
            return pathless(analyze_bytes(within_pixels(fetched.data), home, dataset=target(body.dataset), url=body.url))
        return await admission.analysis.run(run)

    @app.post("/v1/analyze/upload")
    async def analyze_upload(request: Request, file: UploadFile | None = File(None),
                             image: UploadFile | None = File(None), dataset: str | None = Form(None)) -> dict:
        """The same for an uploaded image (multipart field ``file`` or ``image``); its file name is kept as
        ``metadata.original_filename``."""
        from .analyze import analyze_bytes

        upload = file or image
        if upload is None:
            raise ViscurateError("send the image as the multipart field 'file' (or 'image')")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes + 64 * 1024:
            raise TooLarge(f"the upload is more than {max_upload_bytes} bytes")

        def run() -> dict:
            data = upload.file.read(max_upload_bytes + 1)
            if len(data) > max_upload_bytes:
                raise TooLarge(f"the upload is more than {max_upload_bytes} bytes")
            return pathless(analyze_bytes(within_pixels(data), home, dataset=target(dataset), filename=upload.filename))
        return await admission.analysis.run(run)

    @app.get("/v1/datasets")
    def list_datasets() -> dict:
        """The datasets (not the analyze scratch one) and ``recent``: the one written last, which the web
        app opens on."""
        from .web import most_recent
        names = [n for n in Dataset.list(home) if n != SCRATCH_DATASET]
        return {"datasets": names, "length": len(names), "recent": most_recent(home, names)}

    @app.get("/v1/datasets/{name}")
    def dataset_info(name: str) -> dict:
        info = dataset(name).info()
        info.pop("directory", None)  # the server's file layout is not the client's business
        return info

    @app.post("/v1/datasets/{name}/search")
    async def search(name: str, request: Request, body: Search = Body(...)) -> dict:
        """Cortex's search: a MongoDB query ``q`` and a ``page`` of 25; ``length`` is the total count."""
        def run() -> dict:
            found = dataset(name).find(body.q, page=body.page, page_size=PAGE_SIZE, sort=body.sort)
            out = {"length": found["length"], "page": body.page, "page_size": PAGE_SIZE, "results": found["results"]}
            if found.get("warnings"):  # fields no sample has ("isues": did you mean "issues"?)
                out["warnings"] = found["warnings"]
            return out
        return await query_lane(request, body.q, body.sort).run(run)

    @app.get("/v1/datasets/{name}/samples/{sample_id}")
    def get_sample(name: str, sample_id: str) -> dict:
        return sample(name, sample_id)

    @app.get("/v1/datasets/{name}/samples/{sample_id}/similar")
    def similar(name: str, sample_id: str, k: int = 10, model: str | None = None) -> dict:
        """The ``k`` (1-100) most similar samples by embedding (``viscurate embed`` or ``label`` first)."""
        if not 1 <= k <= 100:
            raise ViscurateError("k must be between 1 and 100")
        sample(name, sample_id)
        hits = dataset(name).similar(sample_id, k=k, model=model)
        return {"results": [{"_id": h["_id"], "similarity": h["similarity"]} for h in hits]}

    @app.get("/v1/datasets/{name}/issues")
    def issues(name: str) -> dict:
        """How many samples carry each issue flag (``{"issues": {"near_duplicate": 12, ...}}``)."""
        info = dataset(name).info()
        return {"issues": info.get("issues", {}), "samples_with_issues": info.get("samples_with_issues", 0),
                "samples": info.get("samples", 0)}

    @app.get("/v1/datasets/{name}/duplicates")
    def duplicate_groups(name: str, page: int = 1) -> dict:
        """Stored duplicate groups (``viscurate duplicates`` first), 25 per page, largest first: each the
        representative's ``_id`` and its members with the reason they are in the group."""
        if not 1 <= page <= MAX_PAGE:
            raise ViscurateError(f"page must be between 1 and {MAX_PAGE}")
        groups: dict[str, list[dict]] = {}
        for doc in dataset(name).iter({"duplicates.group": {"$exists": True}}):
            dup = doc.get("duplicates") or {}
            groups.setdefault(str(dup.get("group")), []).append(
                {"_id": doc["_id"], **{k: v for k, v in dup.items() if k != "group"}})
        ordered = sorted(groups.items(), key=lambda g: (-len(g[1]), g[0]))
        chunk = ordered[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        return {"length": len(ordered), "page": page, "page_size": PAGE_SIZE,
                "results": [{"representative": rep, "members": members} for rep, members in chunk]}

    def media_path(name: str, sample_id: str) -> Path:
        path = sample(name, sample_id).get("filepath")
        if not path or not os.path.isfile(path):
            raise NotFound(f"sample {sample_id!r} has no local file")
        return Path(path)

    @app.get("/v1/datasets/{name}/samples/{sample_id}/media")
    def media(name: str, sample_id: str) -> FileResponse:
        return FileResponse(media_path(name, sample_id), headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/v1/datasets/{name}/samples/{sample_id}/thumbnail")
    def thumbnail(name: str, sample_id: str, size: int = 256) -> Response:
        if not 16 <= size <= MAX_THUMBNAIL_SIDE:
            raise ViscurateError(f"size must be between 16 and {MAX_THUMBNAIL_SIDE}")
        path = media_path(name, sample_id)
        st = path.stat()
        key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}|{size}".encode()).hexdigest()[:32]
        folder = Path(thumbnail_cache) if thumbnail_cache else dataset(name).directory / "thumbnails"
        cached = folder / f"{key}.jpg"
        if not cached.is_file():
            from ..files import write_atomic
            from ..media.decode import decode_image

            decoded = decode_image(path.read_bytes(), side=size)
            if decoded.small is None:
                raise ViscurateError(f"sample {sample_id!r} cannot be decoded: {decoded.failure or decoded.error}")
            image = decoded.small.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=85)
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(cached, buffer.getvalue())
        return FileResponse(cached, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    from . import curation_routes, job_routes, web

    curation_routes.register(app, dataset, sample, query_lane)
    job_routes.register(app, dataset, Path(Workspace(home).home) / "server" / "exports", query_lane)
    web.register(app)
    return app
