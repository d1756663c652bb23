"""Long work as jobs: started by a request, run in the background, watched through their progress.

A job is one library call (label, embed, analyze, map, export; select, report, autotag, split, fit_head) on one
dataset. Jobs run one at a time in a worker thread, in order, because each holds its dataset's write lock
and the models share the machine's cores; a request only queues one and gets its id back at once.
Requests that read the dataset meanwhile are let in between the job's batches (see ``Catalog``;
docs/decisions.md #22).

>>> jobs = JobQueue()
>>> job = jobs.submit("demo", "photos", lambda progress: {"answer": 42})
>>> jobs.wait(job.id, timeout=5).state
'done'
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ViscurateError

__all__ = ["Job", "JobQueue", "JOB_KINDS"]

log = logging.getLogger("viscurate.server")

JOB_KINDS = ("ingest", "label", "embed", "analyze", "map", "export", "select", "report", "autotag", "split",
             "fit_head")
KEEP_FINISHED = 200

Progress = Callable[[int, int], None]


@dataclass
class Job:
    """What a client sees of a job: ``state`` is queued, running, done or failed; ``done`` of ``total``
    items, with ``rate`` items/s while it runs; ``result`` or ``error`` at the end."""

    id: str
    kind: str
    dataset: str
    state: str = "queued"
    done: int = 0
    total: int | None = None
    stage: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str | None = None
    by: str | None = None
    order: int = 0

    def as_dict(self) -> dict[str, Any]:
        elapsed = ((self.finished_at or time.time()) - self.started_at) if self.started_at else 0.0
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        return {"id": self.id, "kind": self.kind, "dataset": self.dataset, "state": self.state,
                "progress": {"done": self.done, "total": self.total, "stage": self.stage,
                             "fraction": (min(1.0, self.done / self.total) if self.total else None),
                             "rate": round(rate, 3), "elapsed": round(elapsed, 3)},
                "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
                "result": self.result, "error": self.error, "by": self.by}


class JobQueue:
    """A FIFO of jobs run by one background thread; finished jobs are kept (the newest
    :data:`KEEP_FINISHED`) so their results can be read later."""

    def __init__(self) -> None:
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._work: dict[str, Callable[[Progress], Any]] = {}
        self._cond = threading.Condition()
        self._counter = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopping = False

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex[:16]

    def submit(self, kind: str, dataset: str, run: Callable[[Progress], Any], *, by: str | None = None,
               job_id: str | None = None) -> Job:
        job = Job(id=job_id or self.new_id(), kind=kind, dataset=dataset, by=by, order=next(self._counter))
        with self._cond:
            self._jobs[job.id] = job
            self._work[job.id] = run
            self._prune()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="viscurate-jobs", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def list(self, dataset: str | None = None) -> list[Job]:
        with self._cond:
            jobs = [j for j in self._jobs.values() if dataset is None or j.dataset == dataset]
        return sorted(jobs, key=lambda j: -j.order)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._jobs[job_id].state in ("queued", "running"):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return self._jobs[job_id]

    def busy(self, dataset: str) -> Job | None:
        """The queued or running job on ``dataset``, if any."""
        with self._cond:
            for j in self._jobs.values():
                if j.dataset == dataset and j.state in ("queued", "running"):
                    return j
        return None

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _prune(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for j in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[j.id]

    def _next(self) -> Job | None:
        with self._cond:
            while not self._stopping:
                queued = [j for j in self._jobs.values() if j.state == "queued"]
                if queued:
                    job = min(queued, key=lambda j: j.order)
                    job.state, job.started_at = "running", time.time()
                    self._cond.notify_all()
                    return job
                self._cond.wait(1.0)
        return None

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            run = self._work.pop(job.id)

            def progress(done: int, total: int, job: Job = job) -> None:
                job.done, job.total = int(done), int(total)

            try:
                result = run(progress)
                job.result = result.as_dict() if hasattr(result, "as_dict") else result
                job.state = "done"
            except ViscurateError as e:
                job.error, job.state = str(e), "failed"
            except Exception:  # noqa: BLE001 - a job's crash is its own; the queue goes on
                log.exception("job %s (%s on %s) failed", job.id, job.kind, job.dataset)
                job.error, job.state = "internal error (see the server's log)", "failed"
            job.finished_at = time.time()
            with self._cond:
                self._cond.notify_all()
