"""Exact and near duplicates, grouped, each group with a representative and a reason per member.

>>> from viscurate.brain.duplicates import find_duplicates                        # doctest: +SKIP
>>> with Catalog(directory, "pets", write=True) as cat:                            # doctest: +SKIP
...     report = find_duplicates(cat)
...     print(report.exact, report.near, [g.representative for g in report.groups][:3])

Two images are duplicates when (the rules, :class:`DuplicateRules`, each a threshold you can change):

- **exact**: the same bytes (``hash``, SHA-256);
- **phash**: perceptual hashes at most ``hash_distance`` bits apart (of 64): resized, recompressed,
  brightened or slightly blurred copies;
- **mirrored**: flip-invariant hashes (``phash_flip``) at most ``flip_distance`` bits apart: a left-right
  mirrored copy (the plain hashes of a mirrored pair are far apart);
- **trimmed**: the perceptual hashes of the pictures inside their frames (``phash_trim``, see
  :mod:`viscurate.media.borders`; the plain ``phash`` where nothing was trimmed) at most ``hash_distance``
  bits apart: letterboxed, pillarboxed copies and screenshots of a photo;
- **rotated**: one picture's hash (plain or inside its frame) at most ``rotation_distance`` bits from the
  hash of the other turned by 90, 180 or 270 degrees or mirrored (``phash_turns``): turned copies;
- **embedding**: image embeddings (cosine) at least ``similarity`` *and* perceptual hashes (plain or
  inside their frames) at most ``similarity_hash_distance`` bits apart, or at least ``similarity_low``
  and at most ``similarity_low_hash_distance`` bits apart: crops and heavier edits that move the hash, while the
  hash condition keeps out two different photos of the same kind of thing, which an embedding alone
  cannot tell from a copy;
- **aligned**: image embeddings at least ``aligned_similarity`` alike and no rule above holding, but one
  picture, scaled, lies over a part of the other covering at least ``aligned_share`` of its area with a
  normalized cross-correlation of at least ``aligned_score`` (:mod:`viscurate.media.align`, on the
  pictures inside their frames, read again from ``filepath``): crops with a contrast change, JPEG or a
  downscale, and screenshots whose window was trimmed into the photo.

**Small pictures** (shorter side under ``small_side`` pixels: icons, thumbnails, digit and glyph sets) are
hashed from an image no larger than the hash's own 32 x 32 grid, where glyphs on a plain ground share their
low frequencies, and the embedder sees every upscaled glyph as alike: on MNIST's 10,000 test digits the rules
above flagged 8,676 as near duplicates. There a pair found by any rule but ``exact`` also needs its pixels to
agree: a correlation of at least ``small_score`` laid whole one over the other on a 24 x 24 grid (or
mirrored, or turned, for those rules' pairs; :func:`viscurate.media.align.grid_vector`), or, for two pictures of different
shapes, at least ``small_aligned_score`` at the best scaled placement covering ``aligned_share``. A crop of a
small picture resized back to its size is therefore not found.

Grouping guards against chaining: groups are stars, not connected components. Samples are visited
hubs first (most duplicates, exact copies included: the original that edited copies were made from is
a duplicate of each, two copies with different edits often not of each other), then best first (most
pixels, then largest file, then path); an unassigned sample becomes a representative and takes every
unassigned sample that is a duplicate *of it*. So a group never holds A and C only
because A~B and B~C. Exact copies are folded first: the representative of a group of identical files
stands for them all, and they join its group with reason ``exact``.

Results are stored on every sample in scope (and cleared from samples that are no longer duplicates):
``duplicates.group`` (the representative's id), ``duplicates.representative``, ``duplicates.size``,
``duplicates.reason``, ``duplicates.hash_distance`` and ``duplicates.similarity`` (to the
representative), and the issue ``duplicate`` (an exact copy) or ``near_duplicate`` on every member
but the representative, so ``{"issues": "near_duplicate"}`` lists what could be dropped.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common.vectors import l2_normalize
from ..errors import ViscurateError
from ..media.align import GRID_SIDE, alignment, grid_vector, picture
from ..media.hashes import turns
from ..usable import usable
from .findings import default_model, store_findings
from .neighbours import hamming_pairs, hex_codes, similar_pairs

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["DuplicateRules", "DuplicateGroup", "DuplicatesReport", "DuplicateGraph", "duplicate_graph",
           "find_duplicates", "small_pictures", "small_grids", "ISSUES",
           "REASONS"]

#: The issues this analysis owns (it adds and removes exactly these).
ISSUES = ("duplicate", "near_duplicate")
#: The catalog meta key that says the analysis ran (and on what scope).
DUPLICATES_RUN_KEY = "duplicates"
#: Why a member belongs to its group, strongest evidence first.
REASONS = ("exact", "phash", "mirrored", "trimmed", "rotated", "embedding", "aligned")
FIELDS = ("hash", "phash", "phash_flip", "phash_trim", "phash_turns", "width", "height", "size_bytes", "filepath")
#: Hashes in ``phash_turns``: the image turned by 180, 90, 270 degrees and mirrored (media.hashes).
TURNS = 4
GRID_CELLS = GRID_SIDE * GRID_SIDE


@dataclass(frozen=True)
class DuplicateRules:
    """Thresholds of the duplicate rules (see the module doc). Defaults measured on the planted-duplicate
    set (``bench/duplicates.py``: exact copies, half-size, JPEG quality 25, 90% crops, +30% brightness,
    blur, mirror, against tiles of the same photos as hard negatives), where different photos were never
    closer than 24 bits of phash, 8 bits of flip-invariant hash, or 0.87 of embedding similarity; the
    rules for edits (``rotation_distance``, the ``similarity_low`` band, ``similarity_hash_distance`` 22)
    on that set and the tuning half of the edits set (``bench/planted_edits.py``: letterbox, turns,
    screenshots... of GCompris photos), where different photos were never closer than 12 bits of a
    turned hash (texture tiles of one photo in the planted set: 4).

    ``viscurate duplicates NAME --hash-distance 6`` (or ``DuplicateRules(hash_distance=6)``) is stricter.
    """

    hash_distance: int = 10
    flip_distance: int = 4
    rotation_distance: int = 3
    similarity: float = 0.90
    similarity_hash_distance: int = 22
    #: a second, closer band: less similar embeddings (a heavier crop) with closer hashes
    similarity_low: float = 0.80
    similarity_low_hash_distance: int = 14
    #: the aligned rule: candidates (embeddings at least this similar), and what their pixels must show:
    #: a correlation of at least ``aligned_score`` over at least ``aligned_share`` of the other's area
    #: (chosen on the tuning half of the edits set and more edits of its photos: crops keep 70-90% of a
    #: photo, tiles of 20-40% of it, which are not copies, stayed at 0.6 or less once framed)
    aligned_similarity: float = 0.60
    aligned_score: float = 0.92
    aligned_share: float = 0.6
    #: small pictures: what their pixels must show besides a rule (chosen on MNIST test digits and their
    #: edited copies, measured on Fashion-MNIST's: docs/decisions.md #41)
    small_side: int = 64
    small_score: float = 0.97
    small_aligned_score: float = 0.98
    neighbours: int = 10

    def __post_init__(self) -> None:
        for name in ("hash_distance", "flip_distance", "rotation_distance", "similarity_hash_distance",
                     "similarity_low_hash_distance"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 64:
                raise ViscurateError(f"{name} must be a number of bits between 0 and 64, got {v!r}")
        if not isinstance(self.small_side, int) or self.small_side < 0:
            raise ViscurateError(f"small_side must be a number of pixels (0: no small-picture check), got {self.small_side!r}")
        for name in ("similarity", "similarity_low", "aligned_similarity", "aligned_score", "aligned_share",
                     "small_score", "small_aligned_score"):
            if not 0.0 < float(getattr(self, name)) <= 1.0:
                raise ViscurateError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if not isinstance(self.neighbours, int) or self.neighbours < 1:
            raise ViscurateError(f"neighbours must be a positive integer, got {self.neighbours!r}")


@dataclass
class DuplicateGroup:
    """A representative (kept) and its duplicates: ``members`` are ``{"_id", "reason", "hash_distance",
    "similarity"}`` relative to the representative, the representative itself not included."""

    representative: str
    members: list[dict[str, Any]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return 1 + len(self.members)

    @property
    def ids(self) -> list[str]:
        return [self.representative] + [m["_id"] for m in self.members]


@dataclass
class DuplicatesReport:
    """What :func:`find_duplicates` found: ``groups`` (largest first), ``exact`` / ``near``: samples flagged
    ``duplicate`` / ``near_duplicate``; ``samples``: samples looked at; ``model``: the embedding model used
    (``None``: hashes only); ``rules``; ``seconds``."""

    samples: int = 0
    groups: list[DuplicateGroup] = field(default_factory=list)
    exact: int = 0
    near: int = 0
    model: str | None = None
    rules: DuplicateRules = field(default_factory=DuplicateRules)
    seconds: float = 0.0
    note: str | None = None

    def pairs(self) -> set[frozenset[str]]:
        """Every pair of samples that share a group (how pair-level precision and recall are counted)."""
        out: set[frozenset[str]] = set()
        for g in self.groups:
            ids = g.ids
            for a in range(len(ids)):
                for b in range(a + 1, len(ids)):
                    out.add(frozenset((ids[a], ids[b])))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "groups": len(self.groups), "exact": self.exact, "near": self.near,
                "model": self.model, "rules": asdict(self.rules), "seconds": round(self.seconds, 3),
                "note": self.note,
                "duplicate_groups": [{"representative": g.representative, "size": g.size, "members": g.members}
                                     for g in self.groups]}


def _popcount_distance(codes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Hamming distances between rows ``i`` and ``j`` of ``(n, 8) uint8`` codes."""
    if not len(i):
        return np.zeros(0, np.int64)
    return np.unpackbits(codes[i] ^ codes[j], axis=1).sum(axis=1).astype(np.int64)


@dataclass
class DuplicateGraph:
    """Samples in scope and the duplicate evidence between them (exact copies folded onto nodes), what
    :func:`find_duplicates` groups and :func:`viscurate.brain.leaks.find_leaks` reads across a split."""

    ids: list[str]
    cols: dict[str, list]
    order: list[int]  # best first
    rank: np.ndarray
    node_of: np.ndarray  # sample -> the best sample with the same bytes
    edges: dict[tuple[int, int], list]  # (node, node) -> [reason, ...]
    vectors: dict[int, np.ndarray]
    model: str | None
    note: str | None


def duplicate_graph(cat: "Catalog", scope: dict, model: str | None | bool, rules: DuplicateRules,
                    threads: int | None) -> DuplicateGraph:
    """The samples matching ``scope``, best first, and every duplicate rule's evidence between them.
    ``model``: the embedder whose image vectors add the ``embedding`` rule (``None``/``True``: the
    default one when stored; ``False``: hashes only).

    >>> g = duplicate_graph(cat, usable(), None, DuplicateRules(), None)             # doctest: +SKIP
    >>> [(g.ids[a], g.ids[b], why) for (a, b), why in g.edges.items()][:1]          # doctest: +SKIP
    [('a1...', 'b2...', ['phash'])]
    """
    cols = cat.columns(FIELDS, scope)
    ids: list[str] = cols["_id"]
    n = len(ids)
    note = None

    # best first: the representative of a group is its first member in this order
    pixels = np.array([(w or 0) * (h or 0) for w, h in zip(cols["width"], cols["height"])], np.int64)
    size = np.array([s or 0 for s in cols["size_bytes"]], np.int64)
    paths = [p or "" for p in cols["filepath"]]
    order = sorted(range(n), key=lambda k: (-pixels[k], -size[k], paths[k], ids[k]))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)

    # exact copies fold onto one node: the best of them
    node_of = np.arange(n)
    first_with: dict[str, int] = {}
    for k in order:
        h = cols["hash"][k]
        if h:
            node_of[k] = first_with.setdefault(h, k)
    nodes = np.nonzero(node_of == np.arange(n))[0]

    # evidence between nodes: (i, j) -> [reason]
    phash, phash_ok = hex_codes([cols["phash"][k] for k in nodes])
    # the hash of the picture inside its frame (missing: no frame, or a catalog older than it), and each
    # sample's hash in its frame where it has one, else its plain hash
    framed, framed_ok = hex_codes([cols["phash_trim"][k] for k in nodes])
    code_in_frame = np.where(framed_ok[:, None], framed, phash)
    edges: dict[tuple[int, int], list] = {}

    def add(i: np.ndarray, j: np.ndarray, reason: str) -> None:
        for a, b in zip(nodes[i].tolist(), nodes[j].tolist()):
            key = (a, b) if a < b else (b, a)
            if key not in edges:
                edges[key] = [reason]

    i, j, _ = hamming_pairs([cols["phash"][k] for k in nodes], rules.hash_distance, threads=threads)
    # two framed pictures (screenshots in one app's window, photos on one poster template) can share a hash
    # that the frame makes: when both have a picture inside a frame, those pictures must match too
    both_framed = framed_ok[i] & framed_ok[j]
    apart = both_framed & (_popcount_distance(framed, i, j) > rules.hash_distance)
    add(i[~apart], j[~apart], "phash")
    i, j, _ = hamming_pairs([cols["phash_flip"][k] for k in nodes], rules.flip_distance, threads=threads)
    add(i, j, "mirrored")
    # each sample's plain hash, then its hash inside its frame (None: no frame, or a catalog older than it)
    both = [cols["phash"][k] for k in nodes] + [cols["phash_trim"][k] for k in nodes]
    add(*_trimmed_pairs(both, rules.hash_distance, threads), "trimmed")
    add(*_rotated_pairs(both, [cols["phash_turns"][k] for k in nodes], rules.rotation_distance, threads), "rotated")

    vectors: dict[int, np.ndarray] = {}
    chosen = default_model(cat) if model is None or model is True else (model or None)
    used = None
    if chosen:
        vid, _, matrix = cat.read_vectors(chosen, query=scope)
        if len(vid):
            pos = {s: k for k, s in enumerate(ids)}
            rows = [pos[s] for s in vid if s in pos]
            mat = l2_normalize(matrix[[k for k, s in enumerate(vid) if s in pos]])
            vectors = {r: mat[m] for m, r in enumerate(rows)}
            with_vec = np.array([k for k in nodes if k in vectors], np.int64)
            if len(with_vec) > 1:
                x = np.stack([vectors[k] for k in with_vec])
                vi, vj, sim = similar_pairs(x, k=rules.neighbours, threads=threads,
                                            min_similarity=min(rules.similarity, rules.similarity_low,
                                                               rules.aligned_similarity))
                node_pos = {k: m for m, k in enumerate(nodes.tolist())}
                ni = np.array([node_pos[k] for k in with_vec[vi].tolist()], np.int64)
                nj = np.array([node_pos[k] for k in with_vec[vj].tolist()], np.int64)
                hd = np.minimum(_popcount_distance(phash, ni, nj), _popcount_distance(code_in_frame, ni, nj))
                # as for the hash rule: two framed pictures are as close as the pictures inside their frames
                hd = np.where(framed_ok[ni] & framed_ok[nj], _popcount_distance(framed, ni, nj), hd)
                close = ((sim >= rules.similarity) & (hd <= rules.similarity_hash_distance)) | (
                    (sim >= rules.similarity_low) & (hd <= rules.similarity_low_hash_distance))
                close &= phash_ok[ni] & phash_ok[nj]
                add(ni[close], nj[close], "embedding")
                aligned = _aligned(nodes[ni], nodes[nj], sim, edges, cols, rules)
                add(ni[aligned], nj[aligned], "aligned")
            used = chosen
        else:
            note = f"no image vectors of {chosen}: hashes only (run `viscurate embed` to add the embedding rule)"
    elif model is None:
        note = "no image embeddings stored: hashes only (run `viscurate embed` to add the embedding rule)"
    dropped = _small_pictures_apart(edges, cols, rules)
    if dropped:
        why = (f"{dropped} candidate pair(s) of small pictures (under {rules.small_side} px) were left out: their "
               f"pixels do not agree")
        note = f"{note}; {why}" if note else why
    return DuplicateGraph(ids, cols, order, rank, node_of, edges, vectors, used, note)


def _aligned(a: np.ndarray, b: np.ndarray, sim: np.ndarray, edges: dict[tuple[int, int], list],
             cols: dict[str, list], rules: DuplicateRules) -> np.ndarray:
    """Which pairs of samples ``(a[m], b[m])`` (embeddings ``sim[m]`` alike) align: embeddings at least
    ``rules.aligned_similarity`` alike, no other rule's pair yet, and one picture a scaled crop of the other
    (:func:`viscurate.media.align.alignment`). Only these candidates' files are read, each once; a missing or
    unreadable file aligns with nothing. Two small pictures of one size are not searched: they are candidates
    for :func:`_small_pictures_apart`, which keeps them only if they agree whole (the search cost 73 of the
    95 s on MNIST's 10,000 digits, and a scaled placement of one digit over another is no evidence)."""
    paths = cols["filepath"]
    size = list(zip(cols["width"], cols["height"]))
    small = small_pictures(cols, rules)
    pictures: dict[int, np.ndarray | None] = {}

    def grey(k: int) -> np.ndarray | None:
        if k not in pictures:
            pictures[k] = picture(paths[k])
        return pictures[k]

    keep = np.zeros(len(a), bool)
    for m in np.flatnonzero(sim >= rules.aligned_similarity).tolist():
        x, y = int(a[m]), int(b[m])
        if (min(x, y), max(x, y)) in edges:
            continue
        first, second = grey(x), grey(y)
        if first is None or second is None:
            continue
        if small[x] and small[y] and size[x] == size[y]:
            keep[m] = True
            continue
        found = alignment(first, second, min_share=rules.aligned_share)
        keep[m] = found.score >= rules.aligned_score and found.share >= rules.aligned_share
    return keep


def small_pictures(cols: dict[str, list], rules: DuplicateRules) -> np.ndarray:
    """Per sample: whether its shorter side is known and under ``rules.small_side``."""
    side = np.array([min(w or 0, h or 0) for w, h in zip(cols["width"], cols["height"])], np.int64)
    return (side > 0) & (side < rules.small_side)


def small_grids(paths: list[str | None], rows: list[int]) -> tuple[np.ndarray, list[tuple[int, ...] | None]]:
    """The whole picture of each of ``rows`` (positions in ``paths``) as its grid
    (:func:`viscurate.media.align.grid_vector`, float16: 1.2 KB a picture), and its shape; zeros and ``None``
    where the file cannot be read."""
    grids = np.zeros((len(rows), GRID_CELLS), np.float16)
    shapes: list[tuple[int, ...] | None] = [None] * len(rows)
    for m, k in enumerate(rows):
        if (pic := picture(paths[k], trim=False)) is not None:
            grids[m], shapes[m] = grid_vector(pic), pic.shape
    return grids, shapes


def _small_pictures_apart(edges: dict[tuple[int, int], list], cols: dict[str, list], rules: DuplicateRules) -> int:
    """Remove from ``edges`` the pairs where either picture's shorter side is under ``rules.small_side`` and
    the pixels do not agree; how many were removed. Each picture is read once and kept only as its grid
    (:func:`viscurate.media.align.grid_vector`, float16: 1.2 KB a picture): one dot product per pair, in
    blocks, also with the second one's grid mirrored for ``mirrored`` and turned and mirrored every way for
    ``rotated`` (flips and quarter turns commute with the resize to a square grid). Only two pictures of
    different shapes (a crop kept at its size) get the scaled-placement search, their files read again: it
    costs milliseconds a pair, and among pictures of one size, as a digit set has, the rules draw hundreds of
    thousands of pairs. A pair with a file that cannot be read keeps the rule's verdict."""
    small = small_pictures(cols, rules)
    keys = [key for key in edges if small[key[0]] or small[key[1]]]
    if not keys:
        return 0
    members = sorted({k for key in keys for k in key})
    row = {k: m for m, k in enumerate(members)}
    grids, shapes = small_grids(cols["filepath"], members)
    readable = np.array([s is not None for s in shapes])
    a = np.array([row[x] for x, _ in keys], np.int64)
    b = np.array([row[y] for _, y in keys], np.int64)
    reason = np.array([edges[key][0] for key in keys])
    views = {"mirrored": [lambda g: g[:, :, ::-1]],
             "rotated": [lambda g, t=t: np.rot90(g, t, axes=(1, 2)) for t in (1, 2, 3)]
             + [lambda g, t=t: np.rot90(g[:, :, ::-1], t, axes=(1, 2)) for t in range(4)]}
    score = np.empty(len(keys), np.float32)
    for lo in range(0, len(keys), 20_000):  # 20,000 pairs x 576 cells x 2 x 4 bytes: 92 MB at most
        sl = slice(lo, lo + 20_000)
        first = grids[a[sl]].astype(np.float32)
        score[sl] = np.einsum("ij,ij->i", first, grids[b[sl]].astype(np.float32))
        # a reason names the first rule that held, not how the two lie: a resized copy can meet the
        # flip-invariant hash first, so the mirrored and turned views are second chances, not the only ones
        for name, turns_of in views.items():
            m = np.flatnonzero(reason[sl] == name)
            if len(m):
                second = grids[b[sl][m]].astype(np.float32).reshape(-1, GRID_SIDE, GRID_SIDE)
                for view in turns_of:
                    turned = view(second).reshape(len(m), -1)
                    score[lo + m] = np.maximum(score[lo + m], np.einsum("ij,ij->i", first[m], turned))
    # without both pictures there is nothing to check: the rule stands (a missing file is ingest's to flag)
    agree = (score >= rules.small_score) | ~readable[a] | ~readable[b]
    for m in np.flatnonzero(~agree).tolist():
        if shapes[a[m]] == shapes[b[m]] or reason[m] == "rotated":
            continue
        first, second = picture(cols["filepath"][keys[m][0]], trim=False), picture(cols["filepath"][keys[m][1]], trim=False)
        if first is None or second is None:
            continue
        seconds = [second] + ([np.ascontiguousarray(second[:, ::-1])] if reason[m] == "mirrored" else [])
        agree[m] = any(found.score >= rules.small_aligned_score and found.share >= rules.aligned_share
                       for found in (alignment(first, v, min_share=rules.aligned_share) for v in seconds))
    apart = [keys[m] for m in np.flatnonzero(~agree).tolist()]
    for key in apart:
        del edges[key]
    return len(apart)


def _trimmed_pairs(hashes: list[str | None], radius: int, threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of samples ``(i, j)``, ``i < j``, with a hash inside a frame at most ``radius`` bits from the
    other's hash inside its frame or plain one (``hashes``: the ``n`` plain hashes, then the ``n`` hashes
    inside frames): a framed copy of an unframed original, two differently framed copies, or a frame found
    in one where the other, a flat picture, was trimmed further. Plain pairs are the phash rule's."""
    n = len(hashes) // 2
    i, j, _ = hamming_pairs(hashes, radius, threads=threads)
    framed = j >= n  # j > i, so a pair with a framed hash has it at j
    i, j = i[framed] % n, j[framed] % n
    other = i != j
    return np.minimum(i, j)[other], np.maximum(i, j)[other]


def _rotated_pairs(hashes: list[str | None], turned: list[str | None], radius: int,
                   threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of samples ``(i, j)`` where a hash of one (``hashes``: the ``n`` plain hashes, then the ``n``
    hashes inside frames) is at most ``radius`` bits from a turn of the other (``turned``: ``phash_turns``
    of the ``n`` samples; those without it, from catalogs older than it, take no part): one search over
    all of them, keeping the pairs of a hash and another sample's turn."""
    n = len(turned)
    flat: list[str | None] = list(hashes) + [None] * (TURNS * n)
    base = len(hashes)
    for k, t in enumerate(turned):
        if isinstance(t, str) and len(t) == 16 * TURNS:
            for m, h in enumerate(turns(t)):
                flat[base + m * n + k] = h
    i, j, _ = hamming_pairs(flat, radius, threads=threads)
    hash_and_turn = (i < base) & (j >= base)
    i, j = i[hash_and_turn] % n, (j[hash_and_turn] - base) % n
    other = i != j
    return i[other], j[other]


def find_duplicates(cat: "Catalog", *, model: str | None | bool = None, rules: DuplicateRules | None = None,
                    query: dict | None = None, write: bool = True, threads: int | None = None) -> DuplicatesReport:
    """Find exact and near duplicates among the samples matching ``query`` (``corrupt`` and ``missing`` ones
    excluded), group them and (``write=True``, the catalog opened for writing) store the findings on the samples.

    ``model``: the embedding model whose image vectors add the ``embedding`` rule (default: the default
    embedder if its vectors are stored, see ``viscurate embed``; ``False``: hashes only).
    """
    t0 = time.monotonic()
    rules = rules or DuplicateRules()
    scope = usable(query)
    g = duplicate_graph(cat, scope, model, rules, threads)
    ids, order, rank, node_of, edges, vectors = g.ids, g.order, g.rank, g.node_of, g.edges, g.vectors
    n = len(ids)
    report = DuplicatesReport(samples=n, rules=rules, model=g.model, note=g.note)

    # star grouping over nodes, best first
    adjacent: dict[int, list[int]] = {}
    for a, b in edges:
        adjacent.setdefault(a, []).append(b)
        adjacent.setdefault(b, []).append(a)
    copies: dict[int, list[int]] = {}
    for k in order:
        if node_of[k] != k:
            copies.setdefault(int(node_of[k]), []).append(k)
    code_all, ok_all = hex_codes(g.cols["phash"])
    assigned = np.zeros(n, bool)
    groups: list[DuplicateGroup] = []
    # hubs first: the original that several edited copies were made from is a duplicate of each of them,
    # while two copies with different edits (a turned one, a mirrored one) often are not of each other
    degree = {k: len(adjacent.get(k, ())) + len(copies.get(k, ())) for k in order}
    for k in sorted(order, key=lambda k: (-degree[k], rank[k])):
        if node_of[k] != k or assigned[k]:
            continue
        near = sorted((m for m in adjacent.get(k, ()) if not assigned[m]), key=lambda m: rank[m])
        if not near and k not in copies:
            continue
        assigned[k] = True
        group = DuplicateGroup(ids[k])

        def member(m: int, reason: str) -> dict[str, Any]:
            hd = int(_popcount_distance(code_all, np.array([k]), np.array([m]))[0]) if ok_all[k] and ok_all[m] else None
            sim = round(float(vectors[k] @ vectors[m]), 4) if k in vectors and m in vectors else None
            return {"_id": ids[m], "reason": reason, "hash_distance": hd, "similarity": sim}

        for c in copies.get(k, ()):
            group.members.append(member(c, "exact"))
        for m in near:
            assigned[m] = True
            a, b = (k, m) if k < m else (m, k)
            reason = edges[(a, b)][0]
            group.members.append(member(m, reason))
            for c in copies.get(m, ()):
                group.members.append(member(c, reason))
        groups.append(group)
    groups.sort(key=lambda g: (-g.size, g.representative))
    report.groups = groups
    report.exact = sum(1 for g in groups for m in g.members if m["reason"] == "exact")
    report.near = sum(1 for g in groups for m in g.members if m["reason"] != "exact")
    if write:
        _store(cat, report, scope)
    report.seconds = time.monotonic() - t0
    return report


def _store(cat: "Catalog", report: DuplicatesReport, scope: dict) -> None:
    """Write the findings on the grouped samples; clear them from samples in scope that carried old ones."""
    findings: dict[str, tuple[dict[str, Any], str | None]] = {}
    for g in report.groups:
        findings[g.representative] = ({"group": g.representative, "representative": True, "size": g.size}, None)
        for m in g.members:
            findings[m["_id"]] = ({"group": g.representative, "representative": False, "size": g.size,
                                   "reason": m["reason"], "hash_distance": m["hash_distance"],
                                   "similarity": m["similarity"]},
                                  "duplicate" if m["reason"] == "exact" else "near_duplicate")
    store_findings(cat, scope, "duplicates", ISSUES, findings)
    # that the analysis ran, even when it grouped nothing: a selection says when near duplicates were never looked for
    cat.meta_set(DUPLICATES_RUN_KEY, json.dumps({"groups": len(report.groups), "scope": scope}, default=str))
