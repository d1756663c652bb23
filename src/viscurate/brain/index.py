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
the rows). Search is exact (cosine similarity, the memory-mapped matrix scanned in blocks).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import ViscurateError
from ..files import write_atomic
from .neighbours import normalize

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["SimilarityIndex", "index_dir"]

BLOCK_ROWS = 32_768  # rows scanned per block: 80 MB of float32 at 1280-d
COMPACT_FRACTION = 0.25


def index_dir(dataset_dir: Path, model: str, field: str | None = None) -> Path:
    """Where the index of ``model`` (image vectors, or the boxes of ``field``) lives for a dataset."""
    name = re.sub(r"[^A-Za-z0-9_.@-]+", "_", model) + (f"__{re.sub(r'[^A-Za-z0-9_.-]+', '_', field)}" if field else "")
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

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def sync(cls, cat: "Catalog", model: str, field: str | None = None) -> "SimilarityIndex":
        """The index of ``model`` for ``cat``'s dataset, brought up to date (created on first use). Needs
        a catalog opened for writing only in the sense that the index files are written."""
        directory = index_dir(cat.directory, model, field)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # one writer of the index files at a time
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
            index._append(list(zip(ids, idxs)), normalize(matrix))
            changed = True
        if changed or version != int(index.meta["version"]):
            index.meta["version"] = version
            dead = sum(1 for k in index.keys if k is None)
            if dead and dead > COMPACT_FRACTION * len(index.keys):
                index._compact()
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

    def _compact(self) -> None:
        live = [n for n, k in enumerate(self.keys) if k is not None]
        x = self._matrix()
        data = np.ascontiguousarray(x[live]).astype("<f2").tobytes() if live else b""
        write_atomic(self._vectors_path(), data)
        self.keys = [self.keys[n] for n in live]
        self._row_of = {(k[0], k[1]): n for n, k in enumerate(self.keys)}

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

    def search(self, queries: np.ndarray, k: int = 10, *, exclude: Sequence[str] = ()) -> tuple[list, np.ndarray]:
        """The ``k`` most similar stored vectors to each query (cosine): ``(keys, similarities)``, keys a
        list per query of ``(sample id, box idx)``, similarities ``(queries, <=k)`` best first. Samples in
        ``exclude`` are left out (e.g. the query's own sample)."""
        q = normalize(np.atleast_2d(np.asarray(queries, np.float32)))
        x = self._matrix()
        if len(x) == 0:
            return [[] for _ in q], np.zeros((len(q), 0), np.float32)
        if q.shape[1] != x.shape[1]:
            raise ViscurateError(f"query vectors have {q.shape[1]} dimensions; {self.model} vectors have {x.shape[1]}")
        excluded = set(exclude)
        dead = np.array([k is None or k[0] in excluded for k in self.keys], bool)
        kk = min(int(k), int((~dead).sum()))
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        for start in range(0, len(x), BLOCK_ROWS):
            block = np.asarray(x[start:start + BLOCK_ROWS], np.float32)
            s = q @ block.T
            s[:, dead[start:start + len(block)]] = -np.inf
            s_all = np.concatenate([best_s, s], axis=1)
            i_all = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(block)), s.shape)], axis=1)
            top = np.argsort(-s_all, axis=1, kind="stable")[:, :kk]
            best_s = np.take_along_axis(s_all, top, axis=1)
            best_i = np.take_along_axis(i_all, top, axis=1)
        keys = [[tuple(self.keys[i]) for i in row] for row in best_i]
        return keys, best_s


def similar(cat: "Catalog", target: Any, k: int = 10, *, model: str | None = None,
            field: str | None = None) -> list[dict[str, Any]]:
    """The ``k`` samples most similar to ``target``: a sample id (its stored vector; the sample itself
    left out), a vector, or an image (a path, a ``PIL.Image`` or an ``H x W x 3`` array, embedded with
    ``model``). ``model``: the embedding model (default: the default embedder if the dataset has its
    vectors, else the model with the most image vectors). Returns ``[{"_id", "similarity"}]`` best first
    (with ``"idx"`` for box vectors, ``field`` given).

    >>> similar(cat, "a1b2c3...", k=5)                                              # doctest: +SKIP
    [{'_id': 'd4e5...', 'similarity': 0.97}, ...]
    """
    from .duplicates import _default_model

    model = model or _default_model(cat)
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
    keys, sims = index.search(query, k, exclude=exclude)
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
