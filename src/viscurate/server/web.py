"""The web app: static files served by the API's own process, nothing fetched from elsewhere (no CDN, no
web fonts), so it works on an air-gapped machine.

``/`` is the app (``web/index.html``); its script and styles are under ``/app/``. The app talks only to
the ``/v1`` routes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["register", "WEB_DIR"]

WEB_DIR = Path(__file__).with_name("web")


def register(app: Any) -> None:
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    # strict headers: the app runs only its own script and talks only to its own origin
    policy = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
              "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
                                     "Cache-Control": "no-cache"})

    app.mount("/app", StaticFiles(directory=WEB_DIR), name="app")
