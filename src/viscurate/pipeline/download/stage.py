"""The URL stage of an ingest: which URLs to download, and what each finished one becomes.

A URL whose sample holds an image already (a ``hash``: it was downloaded and profiled) is not fetched
again; a failed one, or one never committed (a run killed before its batch), is. A URL named twice in
one run is fetched once. Sample ids come from the URL as written (``sha1(url)``, decision #4), so a
re-run after ``kill -9`` rewrites the same samples and never adds a second one.

>>> keys = url_merge_keys({"source": "url", "metadata": {"caption": "a cat"}}, ("hash",))
>>> keys
('hash', 'url', 'download', 'metadata')
"""
from __future__ import annotations

import collections
from typing import Any, Callable, Iterator

from ...sources.urls import UrlEntry, iter_url_entries
from ...usable import DOWNLOAD_FAILED
from .client import DownloadOptions
from .result import Download
from .runner import DownloadThread

#: The ``source`` of a sample that came from a URL.
URL_SOURCE = "url"
#: What the plan says of an entry: fetch it, it is stored already, or it was named before in this run.
FETCH, STORED, DUPLICATE = "fetch", "stored", "duplicate"


def url_merge_keys(doc: dict, base: tuple[str, ...]) -> tuple[str, ...]:
    """The keys an ingest (re)writes on ``doc``: ``base`` (the profile's), plus, for a URL's sample, its
    ``url`` and ``download`` record and, when its row gave some, its ``metadata``."""
    if doc.get("source") != URL_SOURCE:
        return base
    keys = base + ("url", "download")
    return keys + ("metadata",) if "metadata" in doc else keys


def url_fields(entry: UrlEntry, got: Download) -> dict[str, Any]:
    """The fields a URL's sample carries beside its profile."""
    fields: dict[str, Any] = {"url": entry.url, "download": got.record()}
    if entry.metadata:
        fields["metadata"] = dict(entry.metadata)
    return fields


def failed_profile(got: Download) -> dict[str, Any]:
    """The profile of a sample whose URL gave no image: the issue ``download_failed`` and the reason."""
    return {"type": "image", "issues": [DOWNLOAD_FAILED], "error": f"{got.status}: {got.error or got.status}"}


class UrlStage:
    """Downloads every URL of ``inputs`` on a thread of its own (:class:`~.runner.DownloadThread`),
    from the moment it is created; :meth:`results` gives ``((entry, kind), Download | None)`` as they
    finish. ``stored(url)``: whether a URL's image is in the catalog already. Warnings about the inputs
    (a line that is not a URL) are collected for the caller's thread: :meth:`warnings`."""

    def __init__(self, inputs: list[str], stored: Callable[[str], bool], options: DownloadOptions, media_dir: str):
        self._said: collections.deque[str] = collections.deque()
        entries = iter_url_entries(inputs, on_warning=self._said.append)
        self._thread = DownloadThread(_plan(entries, stored), options, media_dir)
        self._thread.__enter__()

    def results(self) -> Iterator[tuple[tuple[UrlEntry, str], Download | None]]:
        return self._thread.results()

    def warnings(self) -> Iterator[str]:
        while self._said:
            yield self._said.popleft()

    def close(self) -> None:
        """Stop the downloads still in flight (the thread ends with them)."""
        self._thread.__exit__(None, None, None)


def _plan(entries: Iterator[UrlEntry], stored: Callable[[str], bool]) -> Iterator[tuple[tuple[UrlEntry, str], str | None]]:
    seen: set[str] = set()
    for entry in entries:
        if entry.url in seen:
            yield (entry, DUPLICATE), None
            continue
        seen.add(entry.url)
        if stored(entry.url):
            yield (entry, STORED), None
        else:
            yield (entry, FETCH), entry.url
