"""Analyze routes: Cortex's "analyze this image", from a URL or an upload (:mod:`.analyze`), in the
analyses lane (:mod:`.admission`), within the operator's limits (:class:`~.context.AnalyzeLimits`).

>>> # POST /v1/analyze {"url": "https://example.com/cat.jpg", "dataset": "photos"}  -> the sample document
>>> # POST /v1/analyze/upload (multipart field "file")                              -> the same
"""

from typing import Any

from ..errors import ViscurateError
from ..store.workspace import validate_name
from .analyze import SCRATCH_DATASET
from .context import ServerContext
from .errors import TooLarge

__all__ = ["register"]

_UPLOAD_FORM = {"type": "object", "properties": {
    "file": {"type": "string", "format": "binary", "description": "the image (or as field 'image')"},
    "image": {"type": "string", "format": "binary"},
    "dataset": {"type": "string", "description": "keep the sample in this dataset (created if missing)"}}}


def register(app: Any, context: ServerContext) -> None:
    """The routes, on ``app``."""
    from fastapi import Body, File, Form, UploadFile
    from pydantic import BaseModel, Field

    from .analyze import analyze_bytes

    home, limits = context.home, context.analyze_limits
    max_upload_bytes = limits.max_upload_bytes

    class Analyze(BaseModel):
        url: str = Field(..., max_length=4096, description="an http(s) URL of an image")
        dataset: str | None = Field(None, description="keep the sample in this dataset (created if missing)")

    def within_pixels(data: bytes) -> bytes:
        from .analyze import image_pixels
        pixels = image_pixels(data)
        if pixels is not None and pixels > limits.max_pixels:
            raise TooLarge(f"the image declares {pixels:,} pixels, over this server's limit of {limits.max_pixels:,}")
        return data

    @app.post("/v1/analyze", openapi_extra={"requestBody": {"content": {
        "multipart/form-data": {"schema": _UPLOAD_FORM}}}})
    async def analyze_url(body: Analyze = Body(...)) -> dict:
        """Cortex's analyze: download the image at ``url`` (public addresses only), profile and label it,
        and return its sample document (kept in ``dataset`` when one is named). A multipart upload (field
        ``file`` or ``image``) is analyzed as by ``/v1/analyze/upload``."""
        from .netguard import fetch

        def run() -> dict:
            fetched = fetch(body.url, max_bytes=max_upload_bytes, deadline=limits.fetch_deadline,
                            allow_private=limits.allow_private_urls)
            return pathless(analyze_bytes(within_pixels(fetched.data), home, dataset=target(body.dataset), url=body.url))
        return await context.admission.analysis.run(run)

    @app.post("/v1/analyze/upload")
    async def analyze_upload(file: UploadFile | None = File(None), image: UploadFile | None = File(None),
                             dataset: str | None = Form(None)) -> dict:
        """The same for an uploaded image (multipart field ``file`` or ``image``); its file name is kept as
        ``metadata.original_filename``."""
        upload = file or image
        if upload is None:
            raise ViscurateError("send the image as the multipart field 'file' (or 'image')")
        # (a declared body over the limit never gets here: limits.BodyLimit answered 413 before reading it)

        def run() -> dict:
            data = upload.file.read(max_upload_bytes + 1)
            if len(data) > max_upload_bytes:
                raise TooLarge(f"the upload is more than {max_upload_bytes} bytes")
            return pathless(analyze_bytes(within_pixels(data), home, dataset=target(dataset), filename=upload.filename))
        return await context.admission.analysis.run(run)


def target(name: str | None) -> str | None:
    """The dataset an analysis keeps its sample in: a valid name other than the scratch dataset's, or None.

    >>> target("photos"), target(None)
    ('photos', None)
    """
    if name == SCRATCH_DATASET:
        raise ViscurateError(f"{SCRATCH_DATASET!r} is the server's own scratch dataset: name another")
    return None if name is None else validate_name(name)


def pathless(doc: dict) -> dict:
    """An analyzed sample without ``filepath`` and ``origin``: both name the server's own copy of the
    bytes, an absolute path in its workspace, of no use to a client (which has ``_id``, the media
    route, and ``url`` or ``metadata.original_filename``).

    >>> pathless({"_id": "a1", "filepath": "/srv/vc/server/media/a1.jpg", "origin": "/srv/vc/x"})
    {'_id': 'a1'}
    """
    doc.pop("filepath", None)
    doc.pop("origin", None)
    return doc
