"""Threshold calibration: the distribution of nearest-neighbour distances of a dataset, and example pairs
at several cut-offs, as one self-contained HTML page, so that a duplicate threshold is chosen from
evidence rather than taken on faith.

>>> report = calibrate(cat, "report.html")                                          # doctest: +SKIP

For each sample, its nearest other sample by perceptual hash (Hamming bits, of 64) and, when image
embeddings are stored, by embedding (cosine similarity). The page shows, per measure, a histogram of
those nearest distances with the current duplicate threshold marked, and for each band of distances a
few pairs side by side (thumbnails embedded in the page: it works offline and can be mailed). Where the
pairs stop looking like copies is where the threshold belongs; ``viscurate duplicates --hash-distance N
--similarity S`` takes it.

Where some pictures are small (shorter side under ``DuplicateRules.small_side``), a pair of them is a
duplicate only if their pixels agree as well (``small_score``, see :mod:`viscurate.brain.duplicates`): a
third section shows, for each small picture, the whole-picture correlation (as it lies, mirrored or turned)
with the closer of its two candidates (nearest by hash, nearest by embedding), in bands, for
``--small-score S``.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import ViscurateError
from ..usable import usable
from ..media.align import GRID_SIDE
from .duplicates import DuplicateRules, small_grids, small_pictures
from .findings import default_model
from .neighbours import hamming_pairs

if TYPE_CHECKING:
    from ..store.catalog import Catalog

__all__ = ["CalibrationReport", "calibrate", "HASH_BANDS", "SIMILARITY_BANDS", "SMALL_BANDS"]

HASH_BANDS: tuple[tuple[int, int], ...] = ((0, 0), (1, 4), (5, 8), (9, 12), (13, 16), (17, 24))
SIMILARITY_BANDS: tuple[tuple[float, float], ...] = ((0.98, 1.01), (0.95, 0.98), (0.92, 0.95), (0.90, 0.92),
                                                   (0.85, 0.90), (0.80, 0.85))
SMALL_BANDS: tuple[tuple[float, float], ...] = ((0.99, 1.01), (0.97, 0.99), (0.95, 0.97), (0.90, 0.95),
                                             (0.80, 0.90), (-1.0, 0.80))
PAIRS_PER_BAND = 4
THUMB = 160


@dataclass
class CalibrationReport:
    """Per measure (``phash``, ``embedding``, and ``small`` where some pictures are small): the nearest
    distance of every sample, and per band the pairs shown; ``small``: how many pictures are small;
    ``path``: the page written."""

    samples: int = 0
    small: int = 0
    nearest: dict[str, list[float]] = field(default_factory=dict)
    bands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    model: str | None = None
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "small": self.small, "model": self.model, "path": self.path,
                "bands": {k: [{x: y for x, y in b.items() if x != "pairs"} | {"pairs": len(b["pairs"])}
                              for b in v] for k, v in self.bands.items()}}


def _nearest_hash(hashes: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the nearest other row within 24 bits and its distance (-1 / 65 where none); among equally
    near rows, the pair ``hamming_pairs`` lists first.

    >>> _nearest_hash(["ff00ff00ff00ff00", "ff00ff00ff00ff01", "00ff00ff00ff00ff"])
    (array([ 1,  0, -1]), array([ 1,  1, 65]))
    """
    i, j, d = hamming_pairs(hashes, 24)
    n = len(hashes)
    best_d = np.full(n, 65, np.int64)
    best_j = np.full(n, -1, np.int64)
    a, b, dist = np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([d, d])
    order = np.lexsort((np.arange(len(a)), dist, a))  # per row nearest first, ties in listing order
    a, b, dist = a[order], b[order], dist[order]
    first = np.ones(len(a), bool)
    first[1:] = a[1:] != a[:-1]
    best_d[a[first]], best_j[a[first]] = dist[first], b[first]
    return best_j, best_d


def _small_agreement(paths: list[str | None], small: np.ndarray,
                     candidates: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per small picture: of its candidates (each array: a partner row per row, -1 for none), the one whose
    whole picture correlates best with it on the duplicate check's grid, as it lies or mirrored or turned
    (the views the check gives the mirrored and turned rules), and that correlation (-1 / -1.0 where it has
    none, or a file cannot be read); other rows get -1."""
    partners = np.stack(candidates, axis=1)
    partners[~small] = -1
    needed = np.unique(np.concatenate([np.flatnonzero(small), partners[partners >= 0]]))
    grids, shapes = small_grids(paths, needed.tolist())
    at = np.full(len(paths), -1, np.int64)  # row -> its grid's row, -1 where unread or unreadable
    readable = np.array([shape is not None for shape in shapes], bool)
    at[needed[readable]] = np.flatnonzero(readable)
    best_j = np.full(len(paths), -1, np.int64)
    best_v = np.full(len(paths), -1.0)
    for column in partners.T:
        rows = np.flatnonzero((column >= 0) & (at >= 0))
        rows = rows[at[column[rows]] >= 0]
        if not len(rows):  # e.g. no embeddings stored: that column names no partner
            continue
        first = grids[at[rows]].astype(np.float32)
        second = grids[at[column[rows]]].astype(np.float32).reshape(-1, GRID_SIDE, GRID_SIDE)
        v = np.full(len(rows), -1.0, np.float32)
        for mirrored in (second, second[:, :, ::-1]):  # as the check does for the mirrored and turned rules
            for turns in range(4):
                turned = np.rot90(mirrored, turns, axes=(1, 2)).reshape(len(rows), -1)
                v = np.maximum(v, np.einsum("ij,ij->i", first, turned))
        better = (best_j[rows] < 0) | (v > best_v[rows])
        best_j[rows[better]], best_v[rows[better]] = column[rows[better]], v[better]
    return best_j, best_v


def _thumb(path: str | None) -> str:
    from ..media.draw import load_upright

    try:
        im = load_upright(path)
        im.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:  # noqa: BLE001 - a vanished or unreadable file: an empty frame, not a failed page
        return ""


def _histogram_svg(values: Sequence[float], edges: np.ndarray, mark: float, label: str) -> str:
    # into the end bins rather than dropped: a copy's similarity can round above 1, a stranger's below 0
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    w, h, pad = 640, 180, 30
    top = max(1, int(counts.max()) if len(counts) else 1)
    bw = (w - 2 * pad) / max(1, len(counts))
    bars = []
    for k, c in enumerate(counts):
        bh = (h - 2 * pad) * c / top
        bars.append(f'<rect x="{pad + k * bw:.1f}" y="{h - pad - bh:.1f}" width="{max(1, bw - 1):.1f}" '
                    f'height="{bh:.1f}" fill="#4a7bd0"><title>{edges[k]:.3g}-{edges[k + 1]:.3g}: {c}</title></rect>')
    mx = pad + (mark - edges[0]) / (edges[-1] - edges[0]) * (w - 2 * pad)
    return (f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">'
            + "".join(bars)
            + f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{pad - 10}" y2="{h - pad}" stroke="#d04a4a" stroke-width="2"/>'
            + (f'<text x="{mx + 4:.1f}" y="{pad - 2}" fill="#d04a4a">' if mx < w / 2 else  # the label inside the frame
               f'<text x="{mx - 4:.1f}" y="{pad - 2}" fill="#d04a4a" text-anchor="end">') + f'current threshold {mark:g}</text>'
            + f'<text x="{pad}" y="{h - 8}">{html.escape(label)}: {edges[0]:g}</text>'
            + f'<text x="{w - pad}" y="{h - 8}" text-anchor="end">{edges[-1]:g}</text></svg>')


def calibrate(cat: "Catalog", out_path: str | Path, *, model: str | None = None, query: dict | None = None,
              rules: DuplicateRules | None = None, seed: int = 0) -> CalibrationReport:
    """Write the calibration page for the samples matching ``query`` to ``out_path``; see the module doc."""
    from .knn_graph import knn_graph

    rules = rules or DuplicateRules()
    scope = usable(query)
    cols = cat.columns(["phash", "filepath", "width", "height"], scope)
    ids, paths = cols["_id"], cols["filepath"]
    if len(ids) < 2:
        raise ViscurateError("calibration needs at least 2 samples")
    rng = np.random.default_rng(seed)
    report = CalibrationReport(samples=len(ids))
    sections = []

    def examples(pairs: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
        if len(pairs) <= PAIRS_PER_BAND:
            return pairs
        return [pairs[k] for k in sorted(rng.choice(len(pairs), PAIRS_PER_BAND, replace=False))]

    def section(title: str, measure: str, nearest_j: np.ndarray, nearest_v: np.ndarray, bands, edges, mark, fmt):
        ok = nearest_j >= 0
        report.nearest[measure] = [float(v) for v in nearest_v[ok]]
        seen: set[tuple[int, int]] = set()
        rows, band_out = [], []
        for lo, hi in bands:
            pairs = []
            for a in np.nonzero(ok)[0]:
                b, v = int(nearest_j[a]), float(nearest_v[a])
                key = (min(a, b), max(a, b))
                if lo <= v <= hi if measure == "phash" else lo <= v < hi:
                    if key not in seen:
                        seen.add(key)
                        pairs.append((int(a), b, v))
            shown = examples(pairs)
            band_out.append({"band": [lo, min(hi, 1.0) if measure != "phash" else hi], "pairs_in_band": len(pairs),
                             "pairs": [{"a": ids[a], "b": ids[b], "value": v} for a, b, v in shown]})
            cells = "".join(
                f'<figure><img src="{_thumb(paths[a])}"><img src="{_thumb(paths[b])}">'
                f'<figcaption>{fmt(v)}<br>{html.escape(Path(paths[a] or ids[a]).name)}<br>'
                f'{html.escape(Path(paths[b] or ids[b]).name)}</figcaption></figure>' for a, b, v in shown)
            rows.append(f"<h3>{fmt(lo)} to {fmt(min(hi, 1.0) if measure != 'phash' else hi)}: {len(pairs)} pairs</h3>"
                        f'<div class="pairs">{cells or "<p>none</p>"}</div>')
        report.bands[measure] = band_out
        sections.append(f"<h2>{html.escape(title)}</h2>"
                        + _histogram_svg(nearest_v[ok], edges, mark, measure) + "".join(rows))

    hj, hd = _nearest_hash(cols["phash"])
    section("Perceptual hash: bits between each image and its nearest (of 64; fewer = more alike)", "phash",
            hj, hd.astype(float), HASH_BANDS, np.arange(0, 26) - 0.5, rules.hash_distance, lambda v: f"{v:g} bits")

    chosen = model or default_model(cat)
    ej = np.full(len(ids), -1, np.int64)
    if chosen:
        vid, _, matrix = cat.read_vectors(chosen, query=scope)
        pos = {s: k for k, s in enumerate(ids)}
        rows = [pos[s] for s in vid if s in pos]
        if len(rows) >= 2:
            sims, idx = knn_graph(matrix[[k for k, s in enumerate(vid) if s in pos]], 1)
            ev = np.full(len(ids), -1.0)
            rows_at = np.asarray(rows, np.int64)
            found = idx[:, 0] >= 0
            ej[rows_at[found]] = rows_at[idx[found, 0]]
            ev[rows_at[found]] = sims[found, 0]
            report.model = chosen
            section(f"Embedding ({chosen}): cosine similarity of each image and its nearest (higher = more alike)",
                    "embedding", ej, ev, SIMILARITY_BANDS, np.linspace(0.5, 1.0, 51), rules.similarity,
                    lambda v: f"{v:.2f}")

    small = small_pictures(cols, rules) if rules.small_side else np.zeros(len(ids), bool)
    report.small = int(small.sum())
    intro_small = ""
    if report.small:
        sj, sv = _small_agreement(paths, small, (hj, ej))
        section(f"Small pictures (shorter side under {rules.small_side} px: {report.small:,} of {len(ids):,}): "
                "whole-picture correlation with the closer of its nearest by hash and by embedding, as it lies "
                "or mirrored or turned where that agrees better (higher = more alike)", "small", sj, sv,
                SMALL_BANDS, np.linspace(0.0, 1.0, 51), rules.small_score, lambda v: f"{v:.2f}")
        intro_small = (f"<p>{report.small:,} pictures are small (shorter side under {rules.small_side} px): a pair of "
                       f"them is a duplicate only if its pixels agree as well, a correlation of at least "
                       f"{rules.small_score:g} laid whole one over the other; the last section shows where copies stop: "
                       f"<code>--small-score S</code>. Its values are the best of the picture as it lies, mirrored and "
                       f"turned; the check tries the mirrored and turned views only for pairs that the mirror and turn "
                       f"rules found, so for other pairs a value there can be higher than the check's.</p>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>viscurate calibrate</title><style>
body{{font-family:sans-serif;margin:2em;color:#222}} .pairs{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0;padding:6px;border:1px solid #ddd;border-radius:4px}} figure img{{height:{THUMB // 2}px;margin:2px}}
figcaption{{font-size:11px;max-width:{THUMB * 2}px;overflow-wrap:anywhere}}</style></head><body>
<h1>Duplicate thresholds: {report.samples:,} images</h1>
<p>Each image against its nearest other image. Look down the bands for where pairs stop being copies of each
other; set the threshold there: <code>viscurate duplicates NAME --hash-distance N --similarity S</code>.</p>
{intro_small}{"".join(sections)}</body></html>"""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    report.path = str(out)
    return report
