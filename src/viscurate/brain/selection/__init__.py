"""Selection within a budget: which samples to label first, and why (issue 18).

>>> from viscurate.brain.selection import select                                    # doctest: +SKIP
>>> sel = select(cat, 200, "cluster_coverage", slice="to-label")                    # doctest: +SKIP

- :mod:`.pool`: the candidates (usable, embedded, near duplicates and leaks dropped), their unit
  vectors (PCA-reduced when large), clusters and signals;
- :mod:`.strategies`: one pure function per strategy, ``STRATEGIES``;
- :mod:`.select`: pool -> strategy -> :class:`Selection`, stored as a slice with a reason per pick;
- :mod:`.report`: the curation report, the selection beside random subsets.
"""
from __future__ import annotations

from typing import Any

from .pool import Pool, build_pool
from .select import Selection, select
from .strategies import STRATEGIES, Pick

__all__ = ["select", "Selection", "STRATEGIES", "Pool", "Pick", "build_pool", "curation_report"]


def curation_report(*args: Any, **kwargs: Any) -> dict:
    """The curation report of a stored selection (:func:`.report.curation_report`)."""
    from .report import curation_report as report
    return report(*args, **kwargs)
