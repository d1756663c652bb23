"""Summaries of a catalog: the counts and distributions ``viscurate info`` shows (:func:`summarize`) and
the per-field value counts behind them and the web app's facets (:class:`CatalogSummaries`).
"""
from __future__ import annotations

from typing import Any, Sequence

from ..errors import QueryError


class CatalogSummaries:
    """The value-count methods of a :class:`~viscurate.store.catalog.Catalog` (its ``fields``, ``con``,
    ``hold`` and ``_mutex`` come from the catalog)."""

    def distinct_values(self, path: str) -> int:
        """How many distinct values the declared scalar field ``path`` has (missing not counted)."""
        spec = self.fields.get(path)
        if spec is None or spec.kind != "scalar":
            raise QueryError(f"{path!r} is not a declared scalar field")
        with self._mutex:
            return self.con.execute(f"SELECT count(DISTINCT {spec.column}) FROM samples").fetchall()[0][0]

    def value_counts(self, path: str) -> dict[Any, int]:
        """value -> samples holding it, of the declared scalar field ``path`` (missing left out), most
        common first."""
        spec = self.fields.get(path)
        if spec is None or spec.kind != "scalar":
            raise QueryError(f"{path!r} is not a declared scalar field")
        with self._mutex:
            return dict(self.con.execute(f"SELECT {spec.column}, count(*) FROM samples WHERE {spec.column} IS NOT NULL "
                                         "GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())

    def list_value_counts(self, field: str, top: int | None = None) -> dict[str, int]:
        """value -> samples holding it, of a declared list field (``tags``, ``issues``, ``slices``), most
        common first."""
        spec = self.fields.get(field)
        if spec is None or spec.kind != "list":
            raise QueryError(f"{field!r} is not a declared list field")
        limit = f" LIMIT {int(top)}" if top is not None else ""
        with self._mutex:
            return dict(self.con.execute(f"SELECT v, count(*) FROM (SELECT unnest({spec.column}) AS v FROM samples) "
                                         f"GROUP BY v ORDER BY 2 DESC, 1{limit}").fetchall())

    def object_classes(self, field: str, top: int = 200) -> dict[str, int]:
        """class name -> samples with at least one such box in ``field``, most common first."""
        with self._mutex:
            return dict(self.con.execute(
                "SELECT name, count(DISTINCT sample_seq) FROM objects WHERE field = ? AND name IS NOT NULL "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?", [field, int(top)]).fetchall())


def summarize(cat: CatalogSummaries, top: int = 20) -> dict:
    """Counts and distributions of an open catalog: what ``viscurate info`` shows."""
    def q(sql: str, params: list | None = None) -> list[tuple]:
        with cat.hold():
            return cat.con.execute(sql, params or []).fetchall()

    total, n_bytes = q("SELECT count(*), coalesce(sum(size_bytes), 0) FROM samples")[0]

    def counts(sql: str) -> dict:
        return {k if k is not None else "(none)": n for k, n in q(sql)}

    def quantiles(col: str) -> dict | None:
        row = q(f"SELECT min({col}), quantile_cont({col}, 0.05), median({col}), quantile_cont({col}, 0.95), "
                f"max({col}), avg({col}) FROM samples WHERE {col} IS NOT NULL")[0]
        if row[0] is None:
            return None
        return dict(zip(["min", "p5", "median", "p95", "max", "mean"], [float(x) for x in row]))

    out = {
        "samples": total,
        "bytes": int(n_bytes),
        "issues": cat.list_value_counts("issues"),
        "samples_with_issues": q("SELECT count(*) FROM samples WHERE len(issues) > 0")[0][0],
        "duplicates": dict(zip(("groups", "in_groups"), q(
            'SELECT count(DISTINCT "duplicates.group"), count("duplicates.group") FROM samples')[0])),
        "clusters": q('SELECT count(DISTINCT "cluster.id") FROM samples')[0][0],
        "evaluation": _evaluation_summary(q(
            'SELECT count("eval.tp"), coalesce(sum("eval.tp"), 0), coalesce(sum("eval.fp"), 0), '
            'coalesce(sum("eval.fn"), 0), coalesce(sum("eval.duplicate"), 0), coalesce(sum("eval.wrong_class"), 0), '
            'coalesce(sum("eval.badly_placed"), 0), coalesce(sum("eval.spurious"), 0) FROM samples')[0]),
        "formats": counts('SELECT format, count(*) FROM samples GROUP BY 1 ORDER BY 2 DESC, 1'),
        "modes": counts('SELECT mode, count(*) FROM samples GROUP BY 1 ORDER BY 2 DESC, 1'),
        "sources": counts('SELECT source, count(*) FROM samples GROUP BY 1 ORDER BY 2 DESC, 1'),
        "splits": counts('SELECT split, count(*) FROM samples WHERE split IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1'),
        "tags": cat.list_value_counts("tags", top),
        "slices": cat.list_value_counts("slices"),
        "width": quantiles('"width"'),
        "height": quantiles('"height"'),
        "size_bytes": quantiles('"size_bytes"'),
        "quality": {k: quantiles(f'"quality.{k}"') for k in ("blur", "brightness", "contrast", "entropy")},
        "size_histogram": counts(
            "SELECT CASE WHEN greatest(width, height) < 64 THEN '< 64 px' WHEN greatest(width, height) < 256 THEN '64-255 px' "
            "WHEN greatest(width, height) < 1024 THEN '256-1023 px' WHEN greatest(width, height) < 4096 THEN '1024-4095 px' "
            "ELSE '>= 4096 px' END AS bucket, count(*) FROM samples WHERE width IS NOT NULL GROUP BY 1 ORDER BY min(greatest(width, height))"),
        "labels": {},
    }
    for spec in cat.fields.values():
        if spec.kind == "objects":
            rows = q("SELECT name, count(*) FROM objects WHERE field = ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
                     [spec.path, int(top)])
            if rows:
                n = q("SELECT count(*) FROM objects WHERE field = ?", [spec.path])[0][0]
                out["labels"][spec.path] = {"objects": n, "classes": {k or "(none)": v for k, v in rows}}
    gt = counts('SELECT "ground_truth.label", count(*) FROM samples WHERE "ground_truth.label" IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ' + str(int(top)))
    if gt:
        out["labels"]["ground_truth.label"] = {"classes": gt}
    return out


def _evaluation_summary(row: Sequence[Any]) -> dict[str, Any]:
    """``viscurate info``'s evaluation line: samples evaluated, tp/fp/fn, and the false positives by kind."""
    out: dict[str, Any] = dict(zip(("samples", "tp", "fp", "fn"), (int(v) for v in row[:4])))
    if out["fp"]:
        out["errors"] = dict(zip(("duplicate", "wrong_class", "badly_placed", "spurious"), (int(v) for v in row[4:])))
    return out
