"""The label stage's runner: plan, a pool of workers (or this process), batches written as they come,
a progress bar, then the neighbour pass; :func:`label` is the entry point, :func:`run_stage` the engine
:func:`~viscurate.pipeline.embed.embed` shares.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from ...common.cores import cpu_count
from ...errors import ViscurateError
from ..pool import ItemError, ProcessPool
from ..progress import IMAGES, ProgressBar, ProgressOption
from .choose import Selection, reaches_workers, select_models, worker_model_refs
from .infer import label_item
from .neighbours import NEIGHBOURS, refine
from .planning import plan, work_items
from .report import LabelReport, StageReport
from .worker import DEFAULT_MAX_SIDE, ModelUnavailable, forget_models, init_worker
from .write import BatchWriter

if TYPE_CHECKING:
    from ...store.catalog import Catalog

log = logging.getLogger("viscurate.label")

DEFAULT_BATCH_SIZE = 16
DEFAULT_ITEM_TIMEOUT = 600.0
#: Most worker processes a run starts by default (each holds its own copy of the models, ~360 MB with
#: every default model loaded); past that, workers get more threads.
MAX_DEFAULT_WORKERS = 8

R = TypeVar("R", bound=StageReport)


def default_workers_threads(workers: int | None, threads: int | None, n_items: int) -> tuple[int, int]:
    """(worker processes, threads per model) for a run of ``n_items`` images.

    By default one single-threaded worker per core (at most :data:`MAX_DEFAULT_WORKERS`, never more than
    the images), the rest of the cores going to threads. Measured on 2 cores (120 photos, every model,
    ``bench/models.py``): 2 workers x 1 thread 7.9-8.6 images/s, 1 worker x 2 threads 5.5-5.8 (one
    worker decodes, crops and runs Python serially). Separate processes also degrade more gently
    when another job takes a core (a multi-threaded forward pass waits for its slowest thread), and a
    crash stalls only one of them."""
    cores = cpu_count()
    if workers is None:
        workers = max(1, min(cores // max(1, threads or 1), MAX_DEFAULT_WORKERS, n_items or 1))
    if threads is None:
        threads = max(1, cores // max(1, workers))
    return int(workers), int(threads)


def run_stage(cat: "Catalog", sel: Selection, report: R, *, batch_size: int = DEFAULT_BATCH_SIZE,
              workers: int | None = None, threads: int | None = None, progress: ProgressOption = True,
              query: dict | None = None, force: bool = False, max_side: int = DEFAULT_MAX_SIDE,
              neighbours: int | None = NEIGHBOURS, item_timeout: float | None = DEFAULT_ITEM_TIMEOUT,
              description: str = "label", on_batch: Callable[[R], None] | None = None) -> R:
    """The engine behind :func:`label` and :func:`~viscurate.pipeline.embed.embed`: runs the models of
    ``sel`` where the plan says, filling in ``report`` (a :class:`LabelReport` for the neighbour pass's
    counts) and returning it. ``neighbours``: k of the neighbour pass (``0``/``None``: no pass)."""
    t0 = time.monotonic()
    if not getattr(cat, "write_mode", False):
        raise ViscurateError(f"{description} needs a catalog opened for writing (Catalog(..., write=True))")
    if not sel.roles:
        raise ViscurateError("no model selected")
    report.models = {r: s.key for r, s in sel.roles.items()}
    todo = plan(cat, sel, query, force, report)
    refs = worker_model_refs(sel)
    inline = workers == 0
    if not inline and not all(f is None or reaches_workers(f) for _, f in refs.values()):
        log.warning("a selected model was registered with a factory that cannot be sent to worker processes; "
                    "labelling in this process")
        inline = True
    if inline:  # one process: every core to the models
        n_workers, n_threads = 0, int(threads or cpu_count())
    else:
        n_workers, n_threads = default_workers_threads(workers, threads, len(todo))
    report.workers, report.threads = (0 if inline else n_workers), n_threads
    writer = BatchWriter(cat, sel, report, batch_size)

    def consume(chunks: Iterator[list[tuple[tuple, Any]]], bar: ProgressBar) -> None:
        for chunk in chunks:
            for item, result in chunk:
                if isinstance(result, ItemError):
                    result = {"id": item[0], "tasks": item[2], "error": result.error}
                elif "fatal" in result:
                    raise ModelUnavailable(result["fatal"])
                writer.add(result)
                if on_batch is not None and not writer.pending:
                    on_batch(report)
            bar.update(done=report.processed + writer.vanished + len(writer.pending), failed=report.failed)

    if todo:
        with ProgressBar(progress, description, total=len(todo), look=IMAGES) as bar:
            try:
                if inline:
                    init_worker(refs, n_threads, max_side, own_process=False)
                    try:
                        consume(([(it, _run_inline(it))] for it in work_items(cat, todo)), bar)
                    finally:
                        forget_models()
                else:
                    with ProcessPool(label_item, n_workers, chunk_size=2, in_flight=2, initializer=init_worker,
                                     initargs=(refs, n_threads, max_side), preload=[label_item.__module__],
                                     item_timeout=item_timeout) as pool:
                        consume(pool.imap_unordered(work_items(cat, todo)), bar)
            except ModelUnavailable as e:
                writer.flush()
                raise ViscurateError(str(e)) from None
            except KeyboardInterrupt:
                writer.flush()  # keep what the models already computed
                raise
            writer.flush()
            bar.update(done=report.processed + writer.vanished, failed=report.failed, force=True)
    if neighbours and sel.crops and (writer.detector_ran or report.box_vectors or force):
        t1 = time.monotonic()
        refined = refine(cat, sel.key("embedder"), k=neighbours)
        if isinstance(report, LabelReport):
            report.refined, report.refine_seconds = refined, time.monotonic() - t1
    report.seconds = time.monotonic() - t0
    return report


def _run_inline(item: tuple) -> Any:
    try:
        return label_item(item)
    except Exception as e:  # noqa: BLE001 - same contract as a worker
        return ItemError(f"worker_error: {type(e).__name__}: {e}")


def label(catalog: "Catalog", *, models: str | Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
          workers: int | None = None, threads: int | None = None, progress: ProgressOption = True,
          query: dict | None = None, force: bool = False, max_side: int = DEFAULT_MAX_SIDE,
          neighbours: int | None = NEIGHBOURS, item_timeout: float | None = DEFAULT_ITEM_TIMEOUT,
          on_batch: Callable[[LabelReport], None] | None = None) -> LabelReport:
    """Auto-label the samples of ``catalog`` (opened with ``write=True``), incrementally.

    ``models``: roles and/or model names (see :func:`select_models`; default: every role's default
    model). ``batch_size``: samples per catalog transaction. ``workers``: processes (default: one per
    core, at most 8; ``0`` runs in this process, without crash isolation); ``threads``: CPU threads per
    model (default: cores / workers). ``query``: only the samples matching
    it. ``force``: label again even what the current models labelled already. ``max_side``: longest
    side the models see. ``neighbours``: k of the neighbour pass that refines the LQE (``0``/``None``:
    no pass). ``on_batch(report)`` is called after every committed batch.

    Returns a :class:`LabelReport`."""
    sel = select_models(models)
    return run_stage(catalog, sel, LabelReport(), batch_size=batch_size, workers=workers, threads=threads,
                     progress=progress, query=query, force=force, max_side=max_side, neighbours=neighbours,
                     item_timeout=item_timeout, description="label", on_batch=on_batch)
