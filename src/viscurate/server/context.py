"""What every route of one app shares: the workspace, its open datasets, the job queue, the admission
lanes and the operator's limits. :func:`~viscurate.server.app.create_app` builds one and hands it to
each route module's ``register(app, context)``.

>>> context = ServerContext(home="/tmp/vc-home", jobs=JobQueue(), admission=Admission())  # doctest: +SKIP
>>> context.dataset("photos").info()["samples"]                                           # doctest: +SKIP
1200
"""

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ViscurateError
from .admission import Admission
from . import defaults
from .analyze import SCRATCH_DATASET
from .errors import NotFound
from .jobs import JobQueue
from .limits import content_length

__all__ = ["ServerContext", "AnalyzeLimits", "MAX_PAGE", "request_user"]

#: the highest page number a paged route serves
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class AnalyzeLimits:
    """What ``/v1/analyze`` takes: images of ``max_upload_bytes`` (uploaded or fetched) declaring
    ``max_pixels`` at most, fetched within ``fetch_deadline`` seconds, from private addresses only
    with ``allow_private_urls``."""

    max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES
    max_pixels: int = defaults.MAX_PIXELS
    fetch_deadline: float = defaults.FETCH_DEADLINE_S
    allow_private_urls: bool = False


@dataclass
class ServerContext:
    """One app's shared state. ``thumbnail_cache``: the folder of thumbnails (None: each dataset's own)."""

    home: str | os.PathLike | None
    jobs: JobQueue
    admission: Admission
    analyze_limits: AnalyzeLimits = field(default_factory=AnalyzeLimits)
    thumbnail_cache: str | os.PathLike | None = None
    datasets: dict[str, Any] = field(default_factory=dict)  # name -> its open Dataset

    @property
    def exports(self) -> Path:
        """The folder export jobs write their files to."""
        from ..store.workspace import Workspace
        return Path(Workspace(self.home).home) / "server" / "exports"

    def dataset(self, name: str) -> Any:
        """The dataset ``name`` (opened once, then kept), or :class:`NotFound` (a 404); never the
        analyze scratch dataset."""
        from ..dataset import Dataset

        try:
            known = Dataset.exists(name, self.home) and name != SCRATCH_DATASET  # scratch: analyze's, briefly
        except ViscurateError:  # not even a valid name
            known = False
        if not known:
            raise NotFound(f"no dataset named {name!r}")
        if name not in self.datasets:
            self.datasets[name] = Dataset.open(name, self.home)
        return self.datasets[name]

    def sample(self, name: str, sample_id: str) -> dict:
        """The sample document ``sample_id`` of dataset ``name``."""
        return self.dataset(name).get(sample_id)  # by primary key; a missing one is SampleNotFound, a 404

    def query_lane(self, request: Any, q: dict | None, sort: Any = None) -> Any:
        """Where a read of ``q`` runs (:meth:`Admission.for_query`), decided before a thread is taken (a
        body of unknown length, chunked, is not weighed in the event loop)."""
        declared = content_length(request.headers)
        return self.admission.for_query(q, sort, body_bytes=math.inf if declared is None else declared)


def request_user(request: Any) -> str:
    """Who made the request, as the identity middleware of :mod:`.app` recorded it (``local`` without)."""
    return getattr(request.state, "user", None) or "local"
