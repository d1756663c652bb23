"""Media routes: a sample's file and its thumbnail. A request names a sample id, never a path: only the
files the catalog lists for a sample are ever served.

>>> # GET /v1/datasets/photos/samples/<id>/thumbnail?size=256   -> a JPEG, cached on disk
"""

import hashlib
import io
import os
from pathlib import Path
from typing import Any

from ..errors import ViscurateError
from .context import ServerContext
from .errors import NotFound

__all__ = ["register", "MAX_THUMBNAIL_SIDE"]

MAX_THUMBNAIL_SIDE = 1024
_CACHE_CONTROL = {"Cache-Control": "private, max-age=3600"}


def register(app: Any, context: ServerContext) -> None:
    """The routes, on ``app``; thumbnails are kept in ``context.thumbnail_cache``, else in each
    dataset's ``thumbnails`` folder."""
    from fastapi.responses import FileResponse, Response

    def media_path(name: str, sample_id: str) -> Path:
        path = context.sample(name, sample_id).get("filepath")
        if not path or not os.path.isfile(path):
            raise NotFound(f"sample {sample_id!r} has no local file")
        return Path(path)

    @app.get("/v1/datasets/{name}/samples/{sample_id}/media")
    def media(name: str, sample_id: str) -> FileResponse:
        return FileResponse(media_path(name, sample_id), headers=dict(_CACHE_CONTROL))

    @app.get("/v1/datasets/{name}/samples/{sample_id}/thumbnail")
    def thumbnail(name: str, sample_id: str, size: int = 256) -> Response:
        if not 16 <= size <= MAX_THUMBNAIL_SIDE:
            raise ViscurateError(f"size must be between 16 and {MAX_THUMBNAIL_SIDE}")
        path = media_path(name, sample_id)
        st = path.stat()
        key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}|{size}".encode()).hexdigest()[:32]
        cache = context.thumbnail_cache
        folder = Path(cache) if cache else context.dataset(name).directory / "thumbnails"
        cached = folder / f"{key}.jpg"
        if not cached.is_file():
            _write_thumbnail(path.read_bytes(), size, cached, sample_id)
        return FileResponse(cached, media_type="image/jpeg", headers=dict(_CACHE_CONTROL))


def _write_thumbnail(data: bytes, size: int, out: Path, sample_id: str) -> None:
    """The image ``data`` within ``size`` x ``size`` pixels, as a JPEG at ``out``."""
    from ..files import write_atomic
    from ..media.decode import decode_image

    decoded = decode_image(data, side=size)
    if decoded.small is None:
        raise ViscurateError(f"sample {sample_id!r} cannot be decoded: {decoded.failure or decoded.error}")
    image = decoded.small.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buffer.getvalue())
