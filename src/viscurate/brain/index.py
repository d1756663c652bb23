"""A persisted, incremental similarity index per dataset and embedding model.

>>> with Catalog(directory, "pets") as cat:                                        # doctest: +SKIP
...     index = SimilarityIndex.sync(cat, "efficientnet_lite3@uint8-280-obj224")
...     ids, sims = index.search(index.vector_of("a1b2..."), k=10)

The catalog's ``vectors`` table stays the source of truth; the index is derived from it and lives next to
the catalog (``<dataset>/indexes/<model>/``):

- ``vectors.f16``: the unit-length vectors, float16, appended in place and read memory-mapped, so that
  searching 10M vectors does not need them in RAM (1280-d: 2.5 kB each);
- ``keys.json``: per row, the sample id (and box index for box vectors), or ``null`` for a row whose
  vector was replaced or deleted (a tombstone);
- ``meta.json``: model, field, dimension, and the catalog's vector version the index has seen (-1: none;
  vectors stored before versions existed count as version 0).

:meth:`SimilarityIndex.sync` brings the index up to date with what ``write_vectors`` stored since the
version it has seen: new vectors are appended, rewritten ones appended and their old rows tombstoned,
deleted ones tombstoned, never a full rebuild (the files are rewritten once tombstones pass a quarter of
the rows).

Search is exact (cosine similarity, the memory-mapped matrix scanned in blocks) up to ``APPROX_ABOVE``
live vectors. Above it the index also keeps an inverted file: ``centroids.f32`` (``4 * sqrt(n)`` spherical
k-means centroids, trained with FAISS on a sample) and ``assign.i32`` (each row's nearest centroid,
appended with the rows). A query scores the centroids, then exactly only the rows of its ``nprobe``
nearest lists, read from the same float16 file, so memory stays the centroids plus the rows touched. The
centroids are retrained when the index has grown fourfold since they were; ``exact=True`` scans anyway.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..common.vectors import l2_normalize
from ..errors import ViscurateError
from ..files import write_atomic
from ..store.catalog import lock_timeout
from ..store.lock import flock_exclusive

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["SimilarityIndex", "index_dir"]

BLOCK_ROWS = 32_768  # rows scanned per block: 80 MB of float32 at 1280-d
COMPACT_FRACTION = 0.25
#: Live vectors above which searches go through the inverted file (exact below: a scan is fast enough).
APPROX_ABOVE = 100_000
#: Inverted lists a query visits by default.
NPROBE = 16
RETRAIN_GROWTH = 4  # retrain the centroids once the index holds this many times the rows they were trained on


def index_dir(dataset_dir: Path, model: str, field: str | None = None) -> Path:
    """Where the index of ``model`` (image vectors, or the boxes of ``field``) lives for a dataset: always a
    folder of its own inside ``indexes/``, whatever the name (``..`` would be the dataset's own folder,
    whose ``.lock`` an index writer must never take).

    >>> index_dir(Path("/d"), "..").as_posix(), index_dir(Path("/d"), "").as_posix()
    ('/d/indexes/_..', '/d/indexes/_')
    """
    name = re.sub(r"[^A-Za-z0-9_.@-]+", "_", model) + (f"__{re.sub(r'[^A-Za-z0-9_.-]+', '_', field)}" if field else "")
    if not name or name.startswith("."):  # "", ".", "..", ".hidden": never a path step out, never hidden
        name = "_" + name
    return Path(dataset_dir) / "indexes" / name


class SimilarityIndex:
    """Vectors of one model (image vectors, or the boxes of ``field``) for one dataset, searchable."""

    def __init__(self, directory: Path, model: str, field: str | None = None):
        self.directory = Path(directory)
        self.model = model
        self.field = field
        meta_path = self.directory / "meta.json"
        self.meta: dict[str, Any] = (json.loads(meta_path.read_text()) if meta_path.exists()
                                     else {"model": model, "field": field, "dim": None, "version": -1, "rows": 0})
        keys_path = self.directory / "keys.json"
        self.keys: list[list | None] = json.loads(keys_path.read_text()) if keys_path.exists() else []
        if len(self.keys) != int(self.meta.get("rows", 0)):
            # a run died between writing the vectors and the keys: start over (the catalog has everything)
            self.meta.update(dim=None, version=-1, rows=0)
            self.keys = []
        self._row_of = {(k[0], k[1]): n for n, k in enumerate(self.keys) if k is not None}
        self._lists: tuple[np.ndarray, np.ndarray] | None = None  # (rows sorted by list, list starts)
        self._dead: np.ndarray | None = None  # tombstone mask, rebuilt when the keys change
        self._rows_by_sample: dict[str, list[int]] = {}
        self._centroid_cache: np.ndarray | None = None
        if self.meta.get("nlist") and not self._ivf_files_ok():
            self._drop_ivf()  # torn: the next sync retrains

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def sync(cls, cat: "Catalog", model: str, field: str | None = None) -> "SimilarityIndex":
        """The index of ``model`` for ``cat``'s dataset, brought up to date (created on first use). Needs
        a catalog opened for writing only in the sense that the index files are written."""
        directory = index_dir(cat.directory, model, field)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as lock:
            # one writer of the index files at a time; a sync waits as long as a catalog lock would
            flock_exclusive(lock.fileno(), timeout=lock_timeout(),
                            busy=f"the similarity index of {model!r}{f' ({field})' if field else ''} is being "
                                 f"updated by another request or process; try again when it finishes")
            try:
                return cls._sync_locked(cat, cls(directory, model, field))
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @classmethod
    def _sync_locked(cls, cat: "Catalog", index: "SimilarityIndex") -> "SimilarityIndex":
        model, field = index.model, index.field
        ids, idxs, matrix, version, present = cat.vector_changes(model, field, since=int(index.meta["version"]))
        if version < int(index.meta["version"]):  # the catalog was replaced: rebuild from scratch
            index.meta.update(dim=None, version=-1, rows=0)
            index.keys, index._row_of = [], {}
            ids, idxs, matrix, version, present = cat.vector_changes(model, field, since=-1)
        changed = False
        gone = [key for key in index._row_of if key not in present]
        for key in gone:
            index.keys[index._row_of.pop(key)] = None
            changed = True
        if len(ids):
            if index.meta["dim"] is not None and int(index.meta["dim"]) != matrix.shape[1]:
                raise ViscurateError(f"{model} vectors changed dimension ({index.meta['dim']} -> {matrix.shape[1]}); "
                                     f"delete {index.directory} to rebuild the index")
            for key in zip(ids, idxs):
                old = index._row_of.pop(key, None)
                if old is not None:
                    index.keys[old] = None
            index._append(list(zip(ids, idxs)), l2_normalize(matrix))
            changed = True
        index._dead = None
        if changed or version != int(index.meta["version"]):
            index.meta["version"] = version
            dead = sum(1 for k in index.keys if k is None)
            if dead and dead > COMPACT_FRACTION * len(index.keys):
                index._compact()
            live = len(index._row_of)
            if live > APPROX_ABOVE and (not index.meta.get("nlist")
                                        or live > RETRAIN_GROWTH * int(index.meta.get("trained_rows", 0))):
                index._train()
            elif live <= APPROX_ABOVE and index.meta.get("nlist"):
                index._drop_ivf()
            index._save_keys()
        return index

    def _vectors_path(self) -> Path:
        return self.directory / "vectors.f16"

    def _append(self, keys: list[tuple], x: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.meta["dim"] is None:
            self.meta["dim"] = int(x.shape[1])
        start = len(self.keys)
        with open(self._vectors_path(), "r+b" if self._vectors_path().exists() else "wb") as f:
            f.seek(start * int(self.meta["dim"]) * 2)  # overwrite whatever a dead run left past the last row
            f.write(np.ascontiguousarray(x, dtype="<f2").tobytes())
            f.truncate()
        for n, key in enumerate(keys):
            self.keys.append([key[0], key[1]])
            self._row_of[(key[0], key[1])] = start + n
        if self.meta.get("nlist"):  # the inverted file follows the rows
            with open(self.directory / "assign.i32", "r+b") as f:
                f.seek(start * 4)
                f.write(self._nearest_list(x).astype("<i4").tobytes())
                f.truncate()
            self._lists = None

    def _compact(self) -> None:
        live = [n for n, k in enumerate(self.keys) if k is not None]
        x = self._matrix()
        data = np.ascontiguousarray(x[live]).astype("<f2").tobytes() if live else b""
        write_atomic(self._vectors_path(), data)
        if self.meta.get("nlist"):
            write_atomic(self.directory / "assign.i32", self._assignments()[live].astype("<i4").tobytes())
            self._lists = None
        self.keys = [self.keys[n] for n in live]
        self._row_of = {(k[0], k[1]): n for n, k in enumerate(self.keys)}
        self._dead = None

    # ---- the inverted file ---------------------------------------------------------------------

    def _ivf_files_ok(self) -> bool:
        c, a = self.directory / "centroids.f32", self.directory / "assign.i32"
        dim, nlist = int(self.meta.get("dim") or 0), int(self.meta.get("nlist") or 0)
        return (c.exists() and a.exists() and c.stat().st_size == nlist * dim * 4
                and a.stat().st_size == len(self.keys) * 4)

    def _drop_ivf(self) -> None:
        for name in ("centroids.f32", "assign.i32"):
            (self.directory / name).unlink(missing_ok=True)
        self.meta.pop("nlist", None)
        self.meta.pop("trained_rows", None)
        self._lists = self._centroid_cache = None

    def _centroids(self) -> np.ndarray:
        """The centroids, read once per index object (not once per query)."""
        if self._centroid_cache is None:
            dim, nlist = int(self.meta["dim"]), int(self.meta["nlist"])
            self._centroid_cache = np.fromfile(self.directory / "centroids.f32", dtype="<f4").reshape(nlist, dim)
        return self._centroid_cache

    def _assignments(self) -> np.ndarray:
        return np.fromfile(self.directory / "assign.i32", dtype="<i4")

    def _nearest_list(self, x: np.ndarray) -> np.ndarray:
        c = self._centroids()
        out = np.empty(len(x), np.int64)
        for start in range(0, len(x), BLOCK_ROWS):
            block = np.asarray(x[start:start + BLOCK_ROWS], np.float32)
            out[start:start + len(block)] = np.argmax(block @ c.T, axis=1)
        return out

    def _train(self, seed: int = 0) -> None:
        """Spherical k-means centroids on a sample of the live rows, and every row's list."""
        import faiss

        from .knn_graph import TRAIN_ITERATIONS, gather_unit_rows, ivf_training_sample

        x = self._matrix()
        live = np.nonzero(~self._dead_rows(()))[0]
        nlist, picked = ivf_training_sample(len(live), seed)  # the same sizing as the kNN graph's index
        train = gather_unit_rows(x, live[picked])
        km = faiss.Kmeans(train.shape[1], nlist, niter=TRAIN_ITERATIONS, spherical=True, seed=seed, verbose=False,
                          min_points_per_centroid=1)  # small indexes train on what they have, quietly
        km.train(train)
        write_atomic(self.directory / "centroids.f32", np.ascontiguousarray(km.centroids, "<f4").tobytes())
        self.meta.update(nlist=nlist, trained_rows=len(live))
        self._centroid_cache = None
        write_atomic(self.directory / "assign.i32", self._nearest_list(x).astype("<i4").tobytes())
        self._lists = None

    def _inverted_lists(self) -> tuple[np.ndarray, np.ndarray]:
        if self._lists is None:
            assign = self._assignments()
            order = np.argsort(assign, kind="stable")
            starts = np.searchsorted(assign[order], np.arange(int(self.meta["nlist"]) + 1))
            self._lists = (order, starts)
        return self._lists

    def _save_keys(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.meta["rows"] = len(self.keys)
        write_atomic(self.directory / "keys.json", json.dumps(self.keys).encode())
        write_atomic(self.directory / "meta.json", json.dumps(self.meta, indent=1).encode())

    # ---- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._row_of)

    def _matrix(self) -> np.ndarray:
        dim = int(self.meta["dim"] or 0)
        if not self.keys or not dim:
            return np.zeros((0, dim), "<f2")
        return np.memmap(self._vectors_path(), dtype="<f2", mode="r", shape=(len(self.keys), dim))

    def vector_of(self, sample_id: str, idx: int | None = None) -> np.ndarray:
        """The stored (unit-length) vector of a sample (or of its box ``idx``)."""
        row = self._row_of.get((sample_id, idx))
        if row is None:
            raise ViscurateError(f"sample {sample_id!r} has no {self.model} vector"
                                 + (f" for box {idx}" if idx is not None else "")
                                 + " (run `viscurate embed`)")
        return np.asarray(self._matrix()[row], np.float32)

    def _dead_rows(self, exclude: Sequence[str]) -> np.ndarray:
        """Rows a search must skip: tombstones, and the rows of the samples in ``exclude``."""
        if self._dead is None or len(self._dead) != len(self.keys):
            self._dead = np.fromiter((k is None for k in self.keys), bool, count=len(self.keys))
            self._rows_by_sample = {}
            for (sid, _), row in self._row_of.items():
                self._rows_by_sample.setdefault(sid, []).append(row)
        dead = self._dead
        rows = [r for sid in exclude for r in self._rows_by_sample.get(sid, ())]
        if rows:
            dead = dead.copy()
            dead[rows] = True
        return dead

    def search(self, queries: np.ndarray, k: int = 10, *, exclude: Sequence[str] = (), exact: bool = False,
               nprobe: int = NPROBE) -> tuple[list, np.ndarray]:
        """The ``k`` most similar stored vectors to each query (cosine): ``(keys, similarities)``, keys a
        list per query of ``(sample id, box idx)``, similarities ``(queries, <=k)`` best first. Samples in
        ``exclude`` are left out (e.g. the query's own sample). Above ``APPROX_ABOVE`` vectors only the
        ``nprobe`` nearest inverted lists are scored, unless ``exact``."""
        q = l2_normalize(np.atleast_2d(np.asarray(queries, np.float32)))
        x = self._matrix()
        if len(x) == 0:
            return [[] for _ in q], np.zeros((len(q), 0), np.float32)
        if q.shape[1] != x.shape[1]:
            raise ViscurateError(f"query vectors have {q.shape[1]} dimensions; {self.model} vectors have {x.shape[1]}")
        dead = self._dead_rows(exclude)
        kk = min(int(k), int((~dead).sum()))
        if not exact and self.meta.get("nlist"):
            return self._search_lists(q, x, dead, kk, int(nprobe))
        return self._scan(q, x, dead, kk)

    def _scan(self, q: np.ndarray, x: np.ndarray, dead: np.ndarray, kk: int) -> tuple[list, np.ndarray]:
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for start in range(0, len(x), BLOCK_ROWS):
            block = np.asarray(x[start:start + BLOCK_ROWS], np.float32)
            s = q @ block.T
            s[:, dead[start:start + len(block)]] = -np.inf
            best_s, best_i = _merge_top(best_s, best_i, s, np.arange(start, start + len(block)), kk)
        return [[tuple(self.keys[i]) for i in row] for row in best_i], best_s

    def _search_lists(self, q: np.ndarray, x: np.ndarray, dead: np.ndarray, kk: int, nprobe: int
                      ) -> tuple[list, np.ndarray]:
        order, starts = self._inverted_lists()
        centroids = self._centroids()
        probes = np.argsort(-(q @ centroids.T), axis=1)[:, :max(1, min(nprobe, len(centroids)))]
        keys_out, sims_out = [], np.full((len(q), kk), -np.inf, np.float32)
        for n, lists in enumerate(probes):
            rows = np.sort(np.concatenate([order[starts[c]:starts[c + 1]] for c in lists]))
            rows = rows[~dead[rows]]
            if len(rows) < kk:  # lists too thin for k answers: scan this one query exactly
                keys, sims = self._scan(q[n:n + 1], x, dead, kk)
                keys_out.append(keys[0])
                sims_out[n, :sims.shape[1]] = sims[0]
                continue
            s = np.asarray(x[rows], np.float32) @ q[n]
            top = np.argsort(-s, kind="stable")[:kk]
            keys_out.append([tuple(self.keys[i]) for i in rows[top]])
            sims_out[n, :len(top)] = s[top]
        return keys_out, sims_out


def _merge_top(best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, cols: np.ndarray, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of the running best and a new block of scores (``cols``: the block's row numbers)."""
    s_all = np.concatenate([best_s, s], axis=1)
    i_all = np.concatenate([best_i, np.broadcast_to(cols, s.shape)], axis=1)
    if s_all.shape[1] > k:
        part = np.argpartition(-s_all, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(s_all), 0), np.int64)
        s_all, i_all = np.take_along_axis(s_all, part, axis=1), np.take_along_axis(i_all, part, axis=1)
    top = np.lexsort((i_all, -s_all), axis=1)[:, :k] if s_all.size else np.zeros((len(s_all), 0), np.int64)
    return np.take_along_axis(s_all, top, axis=1), np.take_along_axis(i_all, top, axis=1)


def similar(cat: "Catalog", target: Any, k: int = 10, *, model: str | None = None,
            field: str | None = None, exact: bool = False) -> list[dict[str, Any]]:
    """The ``k`` samples most similar to ``target``: a sample id (its stored vector; the sample itself
    left out), a vector, or an image (a path, a ``PIL.Image`` or an ``H x W x 3`` array, embedded with
    ``model``). ``model``: the embedding model (default: the default embedder if the dataset has its
    vectors, else the model with the most image vectors). Returns ``[{"_id", "similarity"}]`` best first
    (with ``"idx"`` for box vectors, ``field`` given). Approximate above ``APPROX_ABOVE`` vectors unless
    ``exact``.

    >>> similar(cat, "a1b2c3...", k=5)                                              # doctest: +SKIP
    [{'_id': 'd4e5...', 'similarity': 0.97}, ...]
    """
    from .findings import default_model

    model = model or default_model(cat)
    if model is None:
        raise ViscurateError("the dataset has no embeddings yet; run `viscurate embed` first")
    index = SimilarityIndex.sync(cat, model, field)
    exclude: list[str] = []
    if isinstance(target, str) and not os.path.exists(target):
        query, exclude = index.vector_of(target), [target]
    elif isinstance(target, np.ndarray) and target.ndim == 1:
        query = target
    else:
        query = _embed_image(target, model)
    keys, sims = index.search(query, k, exclude=exclude, exact=exact)
    # min(1, ...): float16 storage can round a unit vector's self-similarity just above 1
    return [{"_id": key[0], **({"idx": key[1]} if field else {}), "similarity": round(min(1.0, float(s)), 4)}
            for key, s in zip(keys[0], sims[0])]


def _embed_image(image: Any, model: str) -> np.ndarray:
    from ..media.draw import load_upright
    from ..models import registry

    rgb = np.asarray(load_upright(image).convert("RGB"))
    try:
        embedder = registry.get_model(model)
    except registry.ModelNotFound:
        raise ViscurateError(f"the vectors were made by {model}, which is not registered in this process; "
                             f"search by sample id or by vector instead") from None
    return np.asarray(embedder.embed([rgb])[0], np.float32)
