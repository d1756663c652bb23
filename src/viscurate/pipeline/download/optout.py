"""The opt-out headers img2dataset honours, honoured the same way.

A response whose ``X-Robots-Tag`` carries ``noai``, ``noimageai``, ``noindex`` or ``noimageindex`` (for
every crawler, or for ``viscurate`` by name: ``X-Robots-Tag: viscurate: noai``) is not stored: its
sample gets the status ``opted_out``. Same set and same parsing as img2dataset's ``is_disallowed``
(``downloader.py``: its default ``disallowed_header_directives``), so a site that opted out of one
opted out of both. ``--ignore-opt-out`` turns it off, as an empty list does there.

>>> opted_out(["noai"]), opted_out(["otherbot: noindex"]), opted_out(["viscurate: noimageai, nofollow"])
(True, False, True)
"""
from __future__ import annotations

from typing import Iterable

#: img2dataset's default ``disallowed_header_directives``.
OPT_OUT_DIRECTIVES: frozenset[str] = frozenset({"noai", "noimageai", "noindex", "noimageindex"})
#: The user-agent token a directive may name (``X-Robots-Tag: viscurate: noai``).
USER_AGENT_TOKEN = "viscurate"


def opted_out(values: Iterable[str], directives: frozenset[str] = OPT_OUT_DIRECTIVES,
              token: str = USER_AGENT_TOKEN) -> bool:
    """Whether any ``X-Robots-Tag`` value (one per header line) forbids us the image."""
    for value in values:
        parts = value.split(":", 1)
        named = [d.strip().lower() for d in parts[-1].split(",")]
        agent = parts[0].strip().lower() if len(parts) == 2 else None
        if (agent is None or agent == token) and any(d in directives for d in named):
            return True
    return False
