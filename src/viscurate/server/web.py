"""The web app: static files served by the API's own process, nothing fetched from elsewhere (no CDN, no
web fonts), so it works on an air-gapped machine.

``/`` is the app (``web/index.html``); its script and styles are under ``/app/``. The app talks only to
the ``/v1`` routes. It opens on the dataset a link names, else on the most recently used one
(:func:`most_recent`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["register", "most_recent", "WEB_DIR"]

WEB_DIR = Path(__file__).with_name("web")


def _last_written(folder: Path) -> float:
    """When the dataset in ``folder`` was last written: its catalog (and write-ahead log) or info file."""
    times = [0.0]
    for name in ("catalog.duckdb", "catalog.duckdb.wal", "dataset.json"):
        try:
            times.append((folder / name).stat().st_mtime)
        except OSError:  # no WAL right after a checkpoint, or the dataset is being deleted
            pass
    return max(times)


def most_recent(home: str | os.PathLike | None, names: list[str]) -> str | None:
    """The dataset of ``names`` written last (an ingest, a label run, an edit), or None without any.

    >>> most_recent("/tmp/nowhere", [])
    """
    from ..store.workspace import Workspace

    workspace = Workspace(home)
    return max(names, key=lambda n: (_last_written(workspace.dataset_dir(n)), n), default=None)


def register(app: Any) -> None:
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    # the strict headers (CSP, nosniff, no framing) are security.SecurityHeaders', on every answer

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/app", StaticFiles(directory=WEB_DIR), name="app")
