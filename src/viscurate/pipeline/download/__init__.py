"""Downloading image URLs for ingest: concurrent (asyncio + aiohttp), guarded, resumable.

- :mod:`.client`: one URL -> a :class:`~.result.Download` (retries, timeouts, size cap, redirects checked
  hop by hop against the address guard, opt-out headers, magic bytes);
- :mod:`.store`: the bytes, content-addressed under the dataset's ``media/`` (stored once);
- :mod:`.runner`: a thread running the event loop, handing finished downloads to ingest through a
  bounded queue, so the download and the profile run side by side.

>>> from viscurate.pipeline.download import DownloadOptions
>>> DownloadOptions().concurrency
64
"""
from .client import DownloadOptions
from .result import Download, FAILED_STATUSES

__all__ = ["Download", "DownloadOptions", "FAILED_STATUSES"]
