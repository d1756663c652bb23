"""How the CLI shows things: the two consoles, JSON on stdout, sizes, bar tables, a dataset's info and
pages of samples as tables. Every command prints through here, so that the output looks the same
everywhere.

    print_json({"added": 3})
    console.print(bar_table("formats", {"JPEG": 3, "PNG": 1}, 4))
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (bypassing rich, so that nothing is wrapped or coloured)."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_report_json(report: Any, dataset: str) -> None:
    """What ``--json`` prints for an analysis: its report's ``as_dict()`` and the dataset's name."""
    print_json(dict(report.as_dict(), dataset=dataset))


def human_bytes(n: float) -> str:
    """A byte count the way people read it.

    >>> human_bytes(512), human_bytes(3 * 2**20)
    ('512 B', '3.0 MB')
    """
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def cell_text(doc: dict, path: str) -> str:
    """The text of a document's field ``path`` (dotted; through lists too) in a table cell.

    >>> doc = {"a": {"b": 0.123456}, "tags": [{"n": "x"}, {"n": "y"}]}
    >>> cell_text(doc, "a.b"), cell_text(doc, "tags.n"), cell_text(doc, "nowhere")
    ('0.1235', 'x, y', '')
    """
    cur: Any = doc
    for part in path.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list):
            cur = [c.get(part) if isinstance(c, dict) else None for c in cur]
        else:
            cur = None
    if cur is None:
        return ""
    if isinstance(cur, float):
        return f"{cur:.4g}"
    if isinstance(cur, list):
        return ", ".join(cell_text({"v": c}, "v") for c in cur)
    if isinstance(cur, dict):
        return orjson.dumps(cur).decode()
    return str(cur)


PATH_COLUMNS = ("filepath",)
ELLIPSIS = "…"


def elide_path(path: str, width: int) -> str:
    """``path`` in at most ``width`` characters, its middle elided; the file name is never cut (the
    result is longer than ``width`` when the name alone is).

    >>> elide_path("/tmp/newcomer/photos/2024/holiday/broken.jpg", 30)
    '/tmp/newco…/holiday/broken.jpg'
    >>> elide_path("/tmp/a/a-very-long-file-name.jpg", 10)
    '…/a-very-long-file-name.jpg'
    """
    if len(path) <= width:
        return path
    name = path.rsplit("/", 1)[-1]
    keep = width - len(ELLIPSIS)
    if keep < len(name) + 1:
        return f"{ELLIPSIS}/{name}" if "/" in path else name
    tail = path[len(path) - (keep - min(keep // 3, keep - len(name) - 1)):]
    tail = tail[tail.index("/"):]  # whole folder names only (it holds at least "/name")
    return path[:keep - len(tail)] + ELLIPSIS + tail


def path_width(rows: list[list[str]], cols: list[str], total: int) -> int:
    """The characters a path column gets when the other columns keep their natural width in a table of
    ``total`` columns (rich's default box: a border and a space either side of every cell)."""
    others = sum(max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols) if c not in PATH_COLUMNS)
    paths = sum(1 for c in cols if c in PATH_COLUMNS) or 1
    return max(24, (total - others - 3 * len(cols) - 1) // paths)


def print_caution(text: str, **options: Any) -> None:
    """``text`` in yellow: something the user should look at (files left out, failures), best with the
    command that finds them. ``options`` go to ``Console.print``."""
    console.print(f"[yellow]{text}[/]", **options)


def print_warnings(warnings: list[str]) -> None:
    """The warnings of a query (e.g. a field no sample has), in yellow on stderr."""
    for w in warnings:
        err_console.print(f"[yellow]warning: {w}[/]", highlight=False)


def page_title(length: int, page: int, page_size: int) -> str:
    """The line above a page of results; past the last page it says so, with the real count.

    >>> page_title(7, 2, 25), page_title(0, 2, 25)
    ('page 2 is past the end: 7 match(es) on 1 page', 'page 2 is past the end: no match')
    """
    pages = max(1, -(-length // page_size))
    if page > pages:
        counted = f"{length:,} match(es) on {pages:,} page{'s' if pages > 1 else ''}" if length else "no match"
        return f"page {page} is past the end: {counted}"
    return f"{length:,} match(es) · page {page} of {pages:,}"


def samples_table(docs: list[dict], cols: list[str], title: str, total_width: int) -> Table:
    """A table of these documents' fields ``cols``, fitting ``total_width`` columns: the paths are elided in
    the middle rather than wrapped or cut."""
    rows = [[cell_text(doc, c) for c in cols] for doc in docs]
    width = path_width(rows, cols, total_width)
    rows = [[elide_path(v, width) if c in PATH_COLUMNS else v for c, v in zip(cols, row)] for row in rows]
    table = Table(title=title)
    for i, c in enumerate(cols):
        if c in PATH_COLUMNS:  # rich would cut the end, the file name: never narrower than the elided paths
            table.add_column(c, no_wrap=True, min_width=max([len(c)] + [len(r[i]) for r in rows]))
        else:
            table.add_column(c)
    for row in rows:
        table.add_row(*row)
    return table


def bar_table(title: str, counts: dict, total: int, width: int = 30) -> Table:
    """``counts`` as rows of count, share of ``total`` and a bar scaled to the largest count."""
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    top = max(counts.values()) if counts else 1
    for key, n in counts.items():
        bar = "█" * max(1, round(width * n / top)) if n else ""
        pct = f"{100 * n / total:.1f}%" if total else ""
        table.add_row(str(key), f"{n:,}", pct, f"[cyan]{bar}[/]")
    return table


def print_info(info: dict) -> None:
    """A dataset's ``Dataset.info()``: counts, issues, formats, sizes and quality, drawn as bars."""
    n = info["samples"]
    console.rule(f"[bold]{info['name']}[/]")
    console.print(f"{n:,} samples · {human_bytes(info['bytes'])} · {info['samples_with_issues']:,} with issues"
                  f" · {info['directory']}")
    if info["issues"]:
        console.print(bar_table("issues", info["issues"], n))
    dups = info.get("duplicates") or {}
    if dups.get("groups"):
        console.print(f"duplicates: {dups['groups']:,} groups holding {dups['in_groups']:,} samples "
                      f"(`viscurate duplicates {info['name']}` lists them)")
    if info.get("clusters"):
        console.print(f"clusters: {info['clusters']:,} (`viscurate find {info['name']} '{{\"cluster.id\": 0}}'`)")
    ev = info.get("evaluation") or {}
    if ev.get("samples"):
        kinds = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in (ev.get("errors") or {}).items() if v)
        console.print(f"evaluation (last `viscurate evaluate`, {ev['samples']:,} images): {ev['tp']:,} true positives, "
                      f"{ev['fp']:,} false positives{f' ({kinds})' if kinds else ''}, {ev['fn']:,} missed")
    if info["formats"]:
        console.print(bar_table("formats", info["formats"], n))
    if info["size_histogram"]:
        console.print(bar_table("longest side", info["size_histogram"], n))
    stats = Table("measure", "min", "p5", "median", "p95", "max", title="distributions")
    rows = [("width", info["width"]), ("height", info["height"]), ("bytes", info["size_bytes"])]
    rows += [(f"quality.{k}", v) for k, v in info["quality"].items()]
    for label, q in rows:
        if q:
            stats.add_row(label, *[f"{q[k]:,.4g}" for k in ("min", "p5", "median", "p95", "max")])
    if stats.row_count:
        console.print(stats)
    for title in ("splits", "tags", "sources"):
        if info.get(title):
            console.print(bar_table(title, info[title], n))
    for field, lab in info.get("labels", {}).items():
        console.print(bar_table(f"{field} classes", lab["classes"], sum(lab["classes"].values())))


def short_path(path: str) -> str:
    """The file and its folder: enough to tell images apart on screen.

    >>> short_path("/home/me/photos/cats/tom.jpg")
    'cats/tom.jpg'
    """
    parts = Path(path).parts
    return str(Path(*parts[-2:])) if len(parts) > 2 else path


def short_paths(ds: Any, ids: list[str]) -> dict[str, str]:
    """``{_id: folder/file}`` of these samples (the id itself for one without a file)."""
    ids = list(dict.fromkeys(ids))
    found = ds.find({"_id": {"$in": ids}}, projection={"filepath": 1}, page_size=max(1, min(10_000, len(ids))))
    return {d["_id"]: short_path(d.get("filepath") or d["_id"]) for d in found["results"]}
