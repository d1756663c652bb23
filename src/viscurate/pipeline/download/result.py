"""What one URL's download gave: a status, the bytes' place, and how it went.

>>> d = Download("https://x.org/a.jpg", "http_404", http_status=404, attempts=1)
>>> d.ok, d.record()["status"]
(False, 'http_404')
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Statuses a download ends with besides ``ok`` and ``http_<code>``.
FAILED_STATUSES: tuple[str, ...] = (
    "timeout", "too_large", "not_an_image", "redirect_loop", "too_many_redirects", "opted_out",
    "blocked_address", "connection_error", "truncated", "invalid_url")


@dataclass
class Download:
    """``status``: ``ok`` or why not; ``path``/``sha256``/``size``: the stored bytes (``ok`` only);
    ``error``: a sentence for the user; ``seconds``: wall time of every attempt and wait."""

    url: str
    status: str
    http_status: int | None = None
    attempts: int = 0
    bytes: int = 0
    seconds: float = 0.0
    content_type: str | None = None
    final_url: str | None = None
    error: str | None = None
    path: str | None = None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def record(self) -> dict[str, Any]:
        """The sample's ``download`` field (no ``None`` values: missing reads as missing)."""
        rec = {"status": self.status, "http_status": self.http_status, "attempts": self.attempts,
               "bytes": self.bytes, "seconds": round(self.seconds, 4), "content_type": self.content_type,
               "final_url": self.final_url if self.final_url != self.url else None}
        return {k: v for k, v in rec.items() if v is not None}
