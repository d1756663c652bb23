"""Splits that cannot leak: train/val/test proposed so that near duplicates, near-identical images and
user groups never sit on both sides, stratified by class.

>>> report = split(cat, {"train": 0.8, "val": 0.1, "test": 0.1}, group="metadata.video")  # doctest: +SKIP
>>> print(report.table())                                                          # doctest: +SKIP

Samples that must stay together form **units**, the connected components (union-find, with scipy) of:

- the near-duplicate groups :func:`viscurate.brain.duplicates.find_duplicates` stored (``duplicates.group``;
  run it first: split does not recompute them);
- pairs of images whose embeddings are at least ``near_identical`` alike (cosine, each image's 10 nearest
  neighbours, FAISS: exact up to 50,000 images, approximate above): frames of one shot, bursts;
- samples sharing a value of the ``group`` field (same video, scene, patient).

Units are then dealt out: those of several samples first, largest first, each to the split whose per-class
counts are furthest below their targets (for the unit's own mix of classes); then the single samples of
each class fill every split's remaining quota of that class exactly (seeded shuffle). So the per-class
shares miss the ratios only by what the multi-sample units force.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ..errors import ViscurateError
from ..usable import usable
from .findings import default_model, sample_values

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["SplitReport", "split", "DEFAULT_RATIOS", "NEIGHBOURS"]

DEFAULT_RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
#: Neighbours searched per image for near-identical pairs.
NEIGHBOURS = 10
#: Samples whose vectors are read at a time.
CHUNK = 16_384
#: The class of samples without a value of the stratify field.
NO_CLASS = "(none)"
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass
class SplitReport:
    """What :func:`split` proposed. ``counts``: samples per split; ``classes``: per split, samples per class;
    ``shares``: per split, the share of each class's samples it got (to compare with ``ratios``);
    ``max_deviation``: per class, the largest ``|share - ratio|`` over the splits; ``units``: groups dealt
    out whole (``joined``: samples in units of more than one); ``links``: what joined them."""

    field: str
    ratios: dict[str, float]
    stratify: str | None
    group: str | None
    samples: int = 0
    units: int = 0
    joined: int = 0
    largest_unit: dict[str, Any] = field(default_factory=dict)
    links: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    classes: dict[str, dict[str, int]] = field(default_factory=dict)
    shares: dict[str, dict[str, float]] = field(default_factory=dict)
    max_deviation: dict[str, float] = field(default_factory=dict)
    model: str | None = None
    near_identical: float | None = None
    note: str | None = None
    written: bool = False
    seconds: float = 0.0

    @property
    def worst_deviation(self) -> float:
        return float(max(self.max_deviation.values(), default=0.0))

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["worst_deviation"] = round(self.worst_deviation, 4)
        out["seconds"] = round(self.seconds, 3)
        return out

    def table(self) -> str:
        """The class balance as text: one row per class, per split its count and share of the class.

        >>> print(SplitReport("split", {"train": 0.5, "val": 0.5}, None, None, counts={"train": 1, "val": 1},
        ...       classes={"train": {"a": 1}, "val": {"a": 1}}, shares={"train": {"a": 0.5}, "val": {"a": 0.5}},
        ...       max_deviation={"a": 0.0}).table())
        class           train (0.5)      val (0.5)  max dev
        a                 1 (50.0%)      1 (50.0%)    0.000
        all                       1              1
        """
        names = list(self.ratios)
        head = f"{'class':<12}" + "".join(f"{f'{s} ({self.ratios[s]:g})':>15}" for s in names) + f"{'max dev':>9}"
        rows = [head]
        for cls in sorted(self.max_deviation, key=str):
            cells = "".join(f"{f'{self.classes[s].get(cls, 0)} ({100 * self.shares[s].get(cls, 0.0):.1f}%)':>15}"
                            for s in names)
            rows.append(f"{str(cls)[:12]:<12}{cells}{self.max_deviation[cls]:>9.3f}")
        rows.append(f"{'all':<12}" + "".join(f"{self.counts.get(s, 0):>15}" for s in names))
        return "\n".join(rows)


def _ratios(ratios: Mapping[str, float] | None) -> dict[str, float]:
    ratios = dict(DEFAULT_RATIOS if ratios is None else ratios)
    if not ratios:
        raise ViscurateError("give at least one split, e.g. {'train': 0.8, 'val': 0.1, 'test': 0.1}")
    for name, share in ratios.items():
        if not isinstance(name, str) or not _SPLIT_RE.match(name):
            raise ViscurateError(f"invalid split name {name!r}: use letters, digits, '_', '.', ':' or '-'")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not share > 0:
            raise ViscurateError(f"the ratio of split {name!r} must be a positive number, got {share!r}")
    total = float(sum(ratios.values()))
    # 80/10/10 and 0.8/0.1/0.1 mean the same: shares of the whole
    return {name: float(share) / total for name, share in ratios.items()}


def _check_field(path: str | None, what: str) -> None:
    if path is not None and (not isinstance(path, str) or not _FIELD_RE.match(path)):
        raise ViscurateError(f"invalid {what} field {path!r}: a field path such as 'split' or 'metadata.fold'")


def _codes(values: list[Any]) -> tuple[np.ndarray, list[Any], np.ndarray]:
    """``(codes, distinct values, has a value)``: a value per sample as integer codes (None, lists and
    sub-documents count as no value)."""
    keys = [None if v is None or isinstance(v, (list, dict)) else str(v) for v in values]
    has = np.array([k is not None for k in keys], bool)
    distinct = sorted({k for k in keys if k is not None})
    index = {k: c for c, k in enumerate(distinct)}
    return np.array([index.get(k, -1) for k in keys], np.int64), distinct, has


def _same_value_edges(codes: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges tying every sample with a value to the first sample with the same value."""
    rows = np.flatnonzero(has)
    _, first, inverse = np.unique(codes[rows], return_index=True, return_inverse=True)
    return rows, rows[first][inverse]


def _near_identical_edges(cat: "Catalog", model: str, ids: list[str], threshold: float
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of samples (rows of ``ids``) whose embeddings are at least ``threshold`` alike."""
    from .neighbours import similar_pairs

    pos = {s: k for k, s in enumerate(ids)}
    rows: list[int] = []
    parts: list[np.ndarray] = []
    for start in range(0, len(ids), CHUNK):
        got, _, matrix = cat.read_vectors(model, query={"_id": {"$in": ids[start:start + CHUNK]}})
        rows += [pos[s] for s in got]
        if len(got):
            parts.append(np.asarray(matrix, np.float16))  # half the memory; knn_graph normalizes in float32
    if len(rows) < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty
    i, j, _ = similar_pairs(np.concatenate(parts), k=NEIGHBOURS, min_similarity=threshold)
    at = np.asarray(rows, np.int64)
    return at[i], at[j]


def _units(n: int, edges: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each sample's unit: connected components of the union of ``edges``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i = np.concatenate([e[0] for e in edges] + [np.zeros(0, np.int64)])
    j = np.concatenate([e[1] for e in edges] + [np.zeros(0, np.int64)])
    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """``total`` split into integers in proportion to ``weights`` (summing exactly to ``total``).

    >>> _largest_remainder(np.array([8., 1., 1.]), 7).tolist()
    [5, 1, 1]
    """
    if total <= 0:
        return np.zeros(len(weights), np.int64)
    q = weights / weights.sum() * total
    base = np.floor(q).astype(np.int64)
    left = total - int(base.sum())
    base[np.argsort(-(q - base), kind="stable")[:left]] += 1
    return base


def _assign(unit: np.ndarray, cls: np.ndarray, n_classes: int, target: np.ndarray, seed: int) -> np.ndarray:
    """Each sample's split (an index into ``target``): whole units, per-class counts near ``target``."""
    rng = np.random.default_rng(seed)
    n = len(unit)
    totals = np.bincount(cls, minlength=n_classes).astype(np.float64)
    have = np.zeros((len(target), n_classes), np.float64)
    out = np.full(n, -1, np.int64)
    sizes = np.bincount(unit)
    order = np.argsort(unit, kind="stable")
    starts = np.r_[0, np.cumsum(sizes)]
    multi = np.flatnonzero(sizes > 1)
    # largest first; ties in a seeded random order, so equal units do not always land the same way
    multi = multi[np.lexsort((rng.permutation(len(multi)), -sizes[multi]))]
    scale = 1.0 / np.maximum(totals, 1.0)
    for u in multi.tolist():
        members = order[starts[u]:starts[u + 1]]
        hist = np.bincount(cls[members], minlength=n_classes)
        need = target[:, None] * totals[None, :] - have
        overall = target * n - have.sum(axis=1)
        s = int(np.argmax((need * (hist * scale)[None, :]).sum(axis=1) + 1e-9 * overall))
        have[s] += hist
        out[members] = s
    single = sizes[unit] == 1
    for c in range(n_classes):
        members = np.flatnonzero(single & (cls == c))
        if not len(members):
            continue
        need = np.clip(target * totals[c] - have[:, c], 0, None)
        quota = _largest_remainder(need if need.sum() > 0 else target.copy(), len(members))
        shuffled = rng.permutation(members)
        out[shuffled] = np.repeat(np.arange(len(target)), quota)
        have[:, c] += quota
    return out


def split(cat: "Catalog", ratios: Mapping[str, float] | None = None, *, stratify: str | None = "ground_truth.label",
          group: str | None = None, field: str = "split", seed: int = 0, query: dict | None = None,
          near_identical: float | None = 0.95, model: str | None = None, write: bool = True) -> SplitReport:
    """Propose splits (``ratios``: split name -> share, default 80/10/10 train/val/test) of the samples
    matching ``query``, keeping units whole (see the module doc) and each class near the ratios; write
    the split name into ``field`` (``write``). ``near_identical``: ``None`` skips the embedding pairs.
    Returns a :class:`SplitReport`."""
    t0 = time.monotonic()
    shares = _ratios(ratios)
    for path, what in ((field, "split"), (stratify, "stratify"), (group, "group")):
        _check_field(path, what)
    if field in (stratify, group) or field.split(".")[0] in ("_id", "tags", "slices", "issues"):
        raise ViscurateError(f"cannot write the split into {field!r}: choose another field, e.g. 'split'")
    if near_identical is not None and not 0.0 < float(near_identical) <= 1.0:
        raise ViscurateError(f"near_identical must be a cosine similarity in (0, 1], got {near_identical!r}")
    scope = usable(query)
    ids = cat.ids(scope)
    n = len(ids)
    names = list(shares)
    report = SplitReport(field=field, ratios=shares, stratify=stratify, group=group, samples=n,
                         near_identical=near_identical)
    if n == 0:
        raise ViscurateError("no samples to split: the query matches none (or only unreadable ones)")
    notes: list[str] = []
    edges: list[tuple[np.ndarray, np.ndarray]] = []

    def values(path: str) -> list[Any]:
        found = sample_values(cat, path, scope, "give a field with one value per sample")
        return [found.get(i) for i in ids]

    dup_codes, _, dup_has = _codes(values("duplicates.group"))
    edges.append(_same_value_edges(dup_codes, dup_has))
    report.links["duplicates"] = int(dup_has.sum())
    if group is not None:
        g_codes, _, g_has = _codes(values(group))
        if not g_has.any():
            raise ViscurateError(f"no sample has a value of the group field {group!r}; check its name "
                                 "(`viscurate fields NAME`)")
        edges.append(_same_value_edges(g_codes, g_has))
        report.links["group"] = int(g_has.sum())
    if near_identical is not None:
        report.model = model or default_model(cat)
        if report.model is None:
            notes.append("no embeddings: near-identical images were not looked for (run `viscurate embed` first)")
        else:
            pairs = _near_identical_edges(cat, report.model, ids, float(near_identical))
            edges.append(pairs)
            report.links["near_identical"] = len(pairs[0])
    if not dup_has.any():
        notes.append("no near-duplicate groups stored: run `viscurate duplicates NAME` first to keep them together")

    if stratify is not None:
        cls, class_names, has_cls = _codes(values(stratify))
        if not has_cls.any():
            notes.append(f"no sample has {stratify!r}: split without stratification")
            cls, class_names = np.zeros(n, np.int64), [NO_CLASS]
        elif not has_cls.all():
            class_names = class_names + [NO_CLASS]
            cls = np.where(has_cls, cls, len(class_names) - 1)
    else:
        cls, class_names = np.zeros(n, np.int64), ["all"]

    unit = _units(n, edges)
    assigned = _assign(unit, cls, len(class_names), np.array([shares[s] for s in names]), seed)
    _fill_report(report, unit, cls, class_names, assigned, ids, names)
    report.note = "; ".join(notes) or None
    if write:
        for k, name in enumerate(names):
            chosen = [ids[m] for m in np.flatnonzero(assigned == k).tolist()]
            if chosen:
                cat.update(None, {"$set": {field: name}}, ids=chosen)
        report.written = True
    report.seconds = time.monotonic() - t0
    return report


def _fill_report(report: SplitReport, unit: np.ndarray, cls: np.ndarray, class_names: list[str],
                 assigned: np.ndarray, ids: list[str], names: list[str]) -> None:
    sizes = np.bincount(unit)
    report.units = len(sizes)
    report.joined = int(sizes[sizes > 1].sum())
    big = int(np.argmax(sizes))
    members = np.flatnonzero(unit == big)
    report.largest_unit = {"size": int(sizes[big]), "split": names[int(assigned[members[0]])],
                           "ids": [ids[m] for m in members[:5].tolist()]}
    table = np.zeros((len(names), len(class_names)), np.int64)
    np.add.at(table, (assigned, cls), 1)
    totals = table.sum(axis=0)
    for k, name in enumerate(names):
        report.counts[name] = int(table[k].sum())
        report.classes[name] = {c: int(table[k, m]) for m, c in enumerate(class_names) if totals[m]}
        report.shares[name] = {c: round(float(table[k, m] / totals[m]), 4) for m, c in enumerate(class_names)
                               if totals[m]}
    for m, c in enumerate(class_names):
        if totals[m]:
            report.max_deviation[c] = round(float(max(abs(table[k, m] / totals[m] - report.ratios[s])
                                                      for k, s in enumerate(names))), 4)
