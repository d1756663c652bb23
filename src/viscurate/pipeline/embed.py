"""Embed: image embeddings with one model, only for the samples that lack that model's vector.

>>> from viscurate.pipeline.embed import embed                                   # doctest: +SKIP
>>> with Catalog(directory, "pets", write=True) as cat:                           # doctest: +SKIP
...     report = embed(cat)                        # the default embedder (efficientnet_lite3)
...     report.image_vectors, report.images_per_s

The same machinery as :mod:`viscurate.pipeline.label` (worker pool, batches of one transaction, a failing
image flagged with ``label_error``, ``corrupt`` and ``missing`` samples skipped), running the embedder role only: each
vector goes to the catalog's vector table under the model's key (``name@version``) and the key is added
to the sample's ``embeddings`` list. Incremental on the vectors themselves: a sample is embedded when no
vector of that model is stored for it (or with ``force``). ``boxes=True`` also embeds the crops of its
boxes (``object_analysis`` and ``ground_truth.detections``) that lack a vector.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import ViscurateError
from .label import DEFAULT_BATCH_SIZE, DEFAULT_ITEM_TIMEOUT, DEFAULT_MAX_SIDE, Selection, StageReport, run_stage
from .progress import ProgressOption

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["embed", "EmbedReport"]


@dataclass
class EmbedReport(StageReport):
    """What one embed run did (see :class:`~viscurate.pipeline.label.StageReport`): ``image_vectors`` and
    ``box_vectors`` count what was stored.

    >>> EmbedReport(models={"embedder": "efficientnet_lite3@1"}).model
    'efficientnet_lite3@1'
    """

    @property
    def model(self) -> str | None:
        """``name@version`` of the embedding model."""
        return self.models.get("embedder")


def embed(catalog: "Catalog", model: str | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE,
          workers: int | None = None, threads: int | None = None, progress: ProgressOption = True,
          query: dict | None = None, force: bool = False, boxes: bool = False, max_side: int = DEFAULT_MAX_SIDE,
          item_timeout: float | None = DEFAULT_ITEM_TIMEOUT,
          on_batch: Callable[[EmbedReport], None] | None = None) -> EmbedReport:
    """Store image embeddings of ``model`` (a name or ``name@version`` of a model that can embed; default:
    the ``embedder`` default) for the samples of ``catalog`` (opened with ``write=True``) that lack one.

    ``boxes``: also embed box crops. Other arguments as in :func:`viscurate.pipeline.label.label`.
    Returns an :class:`EmbedReport`."""
    from ..models import registry
    spec = registry.get_spec(model or registry.DEFAULTS["embedder"])
    if spec.role != "embedder" and "embedder" not in spec.roles:
        able = ", ".join(s.name for s in registry.list_models(role="embedder"))
        raise ViscurateError(f"model {spec.key} does not make embeddings (its role is {spec.role}); "
                             f"models that do: {able}")
    sel = Selection({"embedder": spec}, crops=boxes)
    return run_stage(catalog, sel, EmbedReport(), batch_size=batch_size, workers=workers, threads=threads,
                     progress=progress, query=query, force=force, max_side=max_side, neighbours=None,
                     item_timeout=item_timeout, description="embed", on_batch=on_batch)
