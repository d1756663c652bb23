"""The ``viscurate`` command line. Each command maps to one library call, so the CLI, the Python API
and the server never diverge.

    viscurate ingest ~/photos --dataset pets
    viscurate find pets '{"width": {"$gt": 1000}}' --page 2
    viscurate info pets
"""
from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ..errors import QueryError, ViscurateError
from ..server import defaults as server_defaults

app = typer.Typer(
    name="viscurate",
    help="viscurate: profile, label, clean, search and curate image datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

# options shared by the analysis commands (one definition, the same flags and help everywhere)
EMBEDDER_OPTION = typer.Option(None, "--model", "-m", help="Embedding model (default: the default embedder).")
JSON_OPTION = typer.Option(False, "--json", help="Print the report as JSON.")


class State:
    home: Optional[Path] = None
    wait: Optional[float] = None


state = State()


@app.callback()
def main_options(
    home: Optional[Path] = typer.Option(None, "--home", help="Workspace directory (default: $VISCURATE_HOME, "
                                        "else the user data directory).", show_default=False),
    wait: Optional[float] = typer.Option(None, "--wait", help="Seconds to wait for a dataset another process "
                                         "is using (default 10, or $VISCURATE_LOCK_TIMEOUT).", show_default=False),
) -> None:
    state.home = home
    state.wait = wait


def _dataset(name: str):
    from ..dataset import Dataset
    return Dataset(name, state.home, lock_timeout=state.wait)


def _parse_json(text: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise QueryError(f"{what} is not valid JSON: {e}. Example: '{{\"width\": {{\"$gt\": 100}}}}'") from None


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# ---- datasets ------------------------------------------------------------------------------------

@app.command("create")
def create_cmd(name: str = typer.Argument(..., help="Dataset name.")) -> None:
    """Create an empty dataset."""
    from ..dataset import Dataset
    ds = Dataset.create(name, state.home, lock_timeout=state.wait)
    console.print(f"created dataset [bold]{name}[/] in {ds.directory}")


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the datasets of the workspace."""
    from ..dataset import Dataset
    from ..store.workspace import Workspace
    names = Dataset.list(state.home)
    if as_json:
        _print_json(names)
        return
    if not names:
        console.print(f"no datasets in {Workspace(state.home).home}")
        return
    ws = Workspace(state.home)
    table = Table("dataset", "created", "directory")
    for n in names:
        info = ws.info(n)
        table.add_row(n, info.get("created_at", ""), str(ws.dataset_dir(n)))
    console.print(table)


@app.command("delete")
def delete_cmd(name: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete a dataset (its catalog, indexes, thumbnails; never your image files)."""
    ds = _dataset(name)
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete dataset {name!r} and everything under {ds.directory}?", abort=True)
    ds.delete()
    console.print(f"deleted dataset [bold]{name}[/]")


@app.command("rename")
def rename_cmd(name: str, new_name: str) -> None:
    """Rename a dataset."""
    _dataset(name).rename(new_name)
    console.print(f"renamed [bold]{name}[/] to [bold]{new_name}[/]")


# ---- ingest --------------------------------------------------------------------------------------

@app.command("ingest")
def ingest_cmd(
    paths: List[Path] = typer.Argument(..., help="Folders, image files, zip/tar archives or path lists (.txt)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset to add to (created if missing)."),
    include: Optional[List[str]] = typer.Option(None, "--include", "-i", help="Glob of files to take (repeatable)."),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", "-x", help="Glob of files to skip (repeatable)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Processes (default: all cores)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Samples per catalog transaction."),
    threshold: Optional[List[str]] = typer.Option(None, "--threshold", "-t", help="Issue threshold NAME=VALUE, "
                                                  "e.g. dark=0.1 (repeatable; see docs/profile.md)."),
    prune: bool = typer.Option(False, "--prune", help="Remove the samples whose file is gone (default: flag "
                               "them 'missing')."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Profile and catalogue images; a re-run only adds new or changed files, and flags the samples whose
    file is gone."""
    from ..dataset import Dataset
    from ..sources.resolve import check_inputs
    thresholds = _thresholds(threshold or [])
    checked = check_inputs(paths)  # before the dataset is created: a wrong input writes nothing
    ds = Dataset.create(dataset, state.home, exist_ok=True, lock_timeout=state.wait)
    report = ds.add_images(checked, include=include, exclude=exclude, workers=workers, batch_size=batch_size,
                           progress=not no_progress and not as_json, thresholds=thresholds, prune=prune)
    summary = {
        "dataset": dataset, "added": report.added, "changed": report.changed, "unchanged": report.unchanged,
        "failed": report.failed, "unsupported": report.unsupported, "missing": report.missing,
        "pruned": report.pruned, "restored": report.restored, "files": report.files, "bytes": report.bytes,
        "seconds": round(report.seconds, 3), "images_per_s": round(report.images_per_s, 1),
        "mb_per_s": round(report.mb_per_s, 2),
    }
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"ingest into {dataset}", show_header=False)
    for k in ("added", "changed", "unchanged", "failed", "files"):
        table.add_row(k, f"{summary[k]:,}")
    for k in ("unsupported", "missing", "pruned", "restored"):
        if summary[k]:
            table.add_row(k, f"{summary[k]:,}")
    table.add_row("data", _human_bytes(report.bytes))
    table.add_row("time", f"{report.seconds:.1f} s ({summary['images_per_s']:,} images/s, {summary['mb_per_s']} MB/s)")
    console.print(table)
    if report.failed:
        console.print(f"[yellow]{report.failed} file(s) could not be decoded; they are samples flagged "
                      f"'corrupt': viscurate find {dataset} '{{\"issues\": \"corrupt\"}}'[/]")
    if report.unsupported:
        console.print(f"[yellow]{report.unsupported} file(s) are valid but in an encoding viscurate cannot decode; "
                      f"they are samples flagged 'unsupported', with the reason: "
                      f"viscurate find {dataset} '{{\"issues\": \"unsupported\"}}'[/]")
    if report.missing and not report.pruned:
        console.print(f"[yellow]{report.missing} file(s) are gone; their samples are flagged 'missing' "
                      f"(viscurate find {dataset} '{{\"issues\": \"missing\"}}'); run again with --prune "
                      f"to remove them[/]")


def _thresholds(items: list[str]):
    if not items:
        return None
    import dataclasses
    from ..media import QualityThresholds
    names = [f.name for f in dataclasses.fields(QualityThresholds)]
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            raise ViscurateError(f"--threshold {item!r}: use NAME=VALUE with NAME one of {', '.join(names)}")
        try:
            values[name] = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise ViscurateError(f"--threshold {item!r}: {value!r} is not a number") from None
    try:
        return QualityThresholds(**values)
    except ValueError as e:
        raise ViscurateError(str(e)) from None


# ---- query ---------------------------------------------------------------------------------------

DEFAULT_COLUMNS = ["_id", "filepath", "width", "height", "format", "issues"]


def _cell(doc: dict, path: str) -> str:
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
        return ", ".join(_cell({"v": c}, "v") for c in cur)
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


def _path_width(rows: list[list[str]], cols: list[str], total: int) -> int:
    """The characters a path column gets when the other columns keep their natural width in a table of
    ``total`` columns (rich's default box: a border and a space either side of every cell)."""
    others = sum(max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols) if c not in PATH_COLUMNS)
    paths = sum(1 for c in cols if c in PATH_COLUMNS) or 1
    return max(24, (total - others - 3 * len(cols) - 1) // paths)


def _print_warnings(warnings: list[str]) -> None:
    for w in warnings:
        err_console.print(f"[yellow]warning: {w}[/]", highlight=False)


def _page_title(length: int, page: int, page_size: int) -> str:
    """The line above a page of results; past the last page it says so, with the real count.

    >>> _page_title(7, 2, 25), _page_title(0, 2, 25)
    ('page 2 is past the end: 7 match(es) on 1 page', 'page 2 is past the end: no match')
    """
    pages = max(1, -(-length // page_size))
    if page > pages:
        counted = f"{length:,} match(es) on {pages:,} page{'s' if pages > 1 else ''}" if length else "no match"
        return f"page {page} is past the end: {counted}"
    return f"{length:,} match(es) · page {page} of {pages:,}"


@app.command("find")
def find_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    query: str = typer.Argument("{}", help='MongoDB query, e.g. \'{"object_analysis.name": "cat"}\'.'),
    page: int = typer.Option(1, "--page", "-p", help="Page number (1-based)."),
    page_size: int = typer.Option(25, "--page-size", help="Samples per page."),
    sort: Optional[List[str]] = typer.Option(None, "--sort", "-s", help="FIELD or FIELD:-1 (repeatable)."),
    fields: Optional[str] = typer.Option(None, "--fields", "-f", help="Comma-separated columns to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the page as JSON: {length, page, results}."),
) -> None:
    """Search a dataset with the MongoDB query language, a page at a time."""
    q = _parse_json(query, "the query")
    sort_spec = None
    if sort:
        sort_spec = []
        for s in sort:
            field, _, direction = s.partition(":")
            sort_spec.append((field, -1 if direction.strip() in ("-1", "desc") else 1))
    projection = None
    cols = DEFAULT_COLUMNS
    if fields:
        cols = [c.strip() for c in fields.split(",") if c.strip()]
        if as_json:
            projection = {c: 1 for c in cols}
    res = _dataset(name).find(q, page=page, page_size=page_size, sort=sort_spec, projection=projection)
    _print_warnings(res.get("warnings", []))
    if as_json:
        _print_json(res)
        return
    title = _page_title(res["length"], page, page_size)
    if page > 1 and not res["results"]:
        console.print(title, highlight=False)
        return
    rows = [[_cell(doc, c) for c in cols] for doc in res["results"]]
    width = _path_width(rows, cols, console.width)
    rows = [[elide_path(v, width) if c in PATH_COLUMNS else v for c, v in zip(cols, row)] for row in rows]
    table = Table(title=title)
    for i, c in enumerate(cols):
        if c in PATH_COLUMNS:  # rich would cut the end, the file name: never narrower than the elided paths
            table.add_column(c, no_wrap=True, min_width=max([len(c)] + [len(r[i]) for r in rows]))
        else:
            table.add_column(c)
    for row in rows:
        table.add_row(*row)
    console.print(table)


@app.command("get")
def get_cmd(name: str, sample_id: str) -> None:
    """Print one sample document as JSON."""
    _print_json(_dataset(name).get(sample_id))


@app.command("count")
def count_cmd(name: str, query: str = typer.Argument("{}")) -> None:
    """Count the samples matching a query."""
    ds, q = _dataset(name), _parse_json(query, "the query")
    _print_warnings(ds.check_query(q))
    typer.echo(ds.count(q))


@app.command("update")
def update_cmd(name: str, query: str, changes: str) -> None:
    """Apply MongoDB update operators to matching samples, e.g. '{"$set": {"split": "val"}}'."""
    n = _dataset(name).update(_parse_json(query, "the query"), _parse_json(changes, "the update"))
    console.print(f"updated {n:,} sample(s)")


@app.command("tag")
def tag_cmd(name: str, query: str, tags: List[str]) -> None:
    """Add tags to the samples matching a query."""
    ds, q = _dataset(name), _parse_json(query, "the query")
    _print_warnings(ds.check_query(q))
    matched = ds.count(q)
    n = ds.tag(q, *tags)
    had = matched - n
    names = ", ".join(repr(t) for t in tags)
    console.print(f"tagged {n:,} sample(s)" + (f"; {had:,} already had {names}" if had > 0 else ""), highlight=False)


@app.command("untag")
def untag_cmd(name: str, query: str, tags: List[str]) -> None:
    """Remove tags from the samples matching a query."""
    n = _dataset(name).untag(_parse_json(query, "the query"), *tags)
    console.print(f"untagged {n:,} sample(s)")


# ---- info ----------------------------------------------------------------------------------------

def _bar_table(title: str, counts: dict, total: int, width: int = 30) -> Table:
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    top = max(counts.values()) if counts else 1
    for key, n in counts.items():
        bar = "█" * max(1, round(width * n / top)) if n else ""
        pct = f"{100 * n / total:.1f}%" if total else ""
        table.add_row(str(key), f"{n:,}", pct, f"[cyan]{bar}[/]")
    return table


@app.command("info")
def info_cmd(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Counts, issues, formats, sizes and quality of a dataset, drawn as bars."""
    info = _dataset(name).info()
    if as_json:
        _print_json(info)
        return
    print_info(info)


def print_info(info: dict) -> None:
    n = info["samples"]
    console.rule(f"[bold]{info['name']}[/]")
    console.print(f"{n:,} samples · {_human_bytes(info['bytes'])} · {info['samples_with_issues']:,} with issues"
                  f" · {info['directory']}")
    if info["issues"]:
        console.print(_bar_table("issues", info["issues"], n))
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
        console.print(_bar_table("formats", info["formats"], n))
    if info["size_histogram"]:
        console.print(_bar_table("longest side", info["size_histogram"], n))
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
            console.print(_bar_table(title, info[title], n))
    for field, lab in info.get("labels", {}).items():
        console.print(_bar_table(f"{field} classes", lab["classes"], sum(lab["classes"].values())))


# ---- labels, embeddings, pictures, models -------------------------------------------------------

def _print_label_report(title: str, report, as_json: bool, dataset: str) -> None:
    summary = dict(report.as_dict(), dataset=dataset)
    if as_json:
        _print_json(summary)
        return
    table = Table(title=title, show_header=False)
    for k in ("processed", "failed", "up_to_date", "corrupt", "objects", "faces", "poses", "image_vectors",
              "box_vectors", "refined"):
        table.add_row(k.replace("_", " "), f"{summary[k]:,}")
    table.add_row("time", f"{report.seconds:.1f} s ({report.images_per_s:,.2f} images/s, "
                          f"{report.workers or 'in-process'} worker(s) x {report.threads} thread(s))")
    console.print(table)
    if report.model_seconds:
        timing = Table("model", "seconds", "ms / image", title="time in each model (all workers)")
        for key, sec in sorted(report.model_seconds.items(), key=lambda kv: -kv[1]):
            per = 1000 * sec / report.processed if report.processed else 0
            timing.add_row(key, f"{sec:.2f}", f"{per:.1f}")
        console.print(timing)
    if report.missing:
        console.print(f"[yellow]{report.missing:,} skipped: file missing (flagged 'missing'; `viscurate ingest` "
                      f"again clears the flag when the file is back, --prune removes them)[/]")
    if report.failed:
        console.print(f"[yellow]{report.failed} image(s) could not be labelled; see their label_error: "
                      f"viscurate find {dataset} '{{\"label_error\": {{\"$exists\": true}}}}'[/]")


@app.command("label")
def label_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    models: Optional[str] = typer.Option(None, "--models", "-m", help="Roles and/or model names, comma-separated: "
                                         "detector,classifier,embedder,face,pose (default: all of them), or "
                                         "names from `viscurate models`."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Only the samples matching this MongoDB query."),
    force: bool = typer.Option(False, "--force", help="Label again what the current models labelled already."),
    batch_size: int = typer.Option(16, "--batch-size", help="Samples per catalog transaction."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Processes (default: one per core, at most "
                                          "8; 0: in this process)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per model (default: cores / "
                                          "workers)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Auto-label a dataset with the offline models (objects with label quality, tags, embeddings, faces,
    poses); a re-run only labels what the current models have not."""
    q = _parse_json(query, "the query") if query else None
    report = _dataset(name).label(models=models, query=q, force=force, batch_size=batch_size, workers=workers,
                                  threads=threads, progress=not no_progress and not as_json)
    _print_label_report(f"label {name}", report, as_json, name)


@app.command("embed")
def embed_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model (default: the default "
                                        "embedder; see `viscurate models`)."),
    boxes: bool = typer.Option(False, "--boxes", help="Also embed the crops of the samples' boxes."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Only the samples matching this MongoDB query."),
    force: bool = typer.Option(False, "--force", help="Embed again the samples that have a vector already."),
    batch_size: int = typer.Option(16, "--batch-size", help="Samples per catalog transaction."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Processes (default: one per core, "
                                          "at most 8)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per model (default: cores / "
                                          "workers)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Store image embeddings for the samples that lack one of this model."""
    q = _parse_json(query, "the query") if query else None
    report = _dataset(name).embed(model, boxes=boxes, query=q, force=force, batch_size=batch_size, workers=workers,
                                  threads=threads, progress=not no_progress and not as_json)
    _print_label_report(f"embed {name}", report, as_json, name)


@app.command("duplicates")
def duplicates_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    hash_distance: int = typer.Option(10, "--hash-distance", help="Perceptual-hash bits (of 64) within which two "
                                      "images are near duplicates."),
    flip_distance: int = typer.Option(4, "--flip-distance", help="Flip-invariant hash bits within which an image "
                                      "is a mirrored copy."),
    similarity: float = typer.Option(0.90, "--similarity", help="Embedding cosine similarity from which two images "
                                     "are near duplicates (with --similarity-hash-distance)."),
    similarity_hash_distance: int = typer.Option(20, "--similarity-hash-distance", help="...and perceptual hashes "
                                                 "at most this many bits apart."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model for the embedding rule "
                                        "(default: the default embedder, when `viscurate embed` stored it)."),
    no_embeddings: bool = typer.Option(False, "--no-embeddings", help="Hashes only."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Only among the samples matching this query."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report only; store nothing."),
    show: int = typer.Option(10, "--show", help="Groups to print."),
    as_json: bool = typer.Option(False, "--json", help="Print the report (every group) as JSON."),
) -> None:
    """Find exact and near duplicates, group them around a representative, flag the copies."""
    from .. import brain  # noqa: F401 - import errors surface here, not half-way
    q = _parse_json(query, "the query") if query else None
    ds = _dataset(name)
    report = ds.find_duplicates(model=False if no_embeddings else model, query=q, write=not dry_run,
                                hash_distance=hash_distance, flip_distance=flip_distance, similarity=similarity,
                                similarity_hash_distance=similarity_hash_distance)
    if as_json:
        _print_json(dict(report.as_dict(), dataset=name))
        return
    console.print(f"{report.samples:,} samples · {len(report.groups):,} duplicate groups · {report.exact:,} exact "
                  f"copies · {report.near:,} near duplicates · {report.seconds:.1f} s"
                  + (f" · embeddings: {report.model}" if report.model else ""))
    if report.note:
        console.print(f"[yellow]{report.note}[/]")
    if report.groups:
        paths = _short_paths(ds, [i for g in report.groups[:show] for i in g.ids])
        table = Table("kept (representative)", "duplicate", "reason", "hash bits", "similarity",
                      title=f"the {min(show, len(report.groups))} largest groups")
        for g in report.groups[:show]:
            for n, m in enumerate(g.members):
                table.add_row(paths.get(g.representative, g.representative) if n == 0 else "",
                              str(paths.get(m["_id"], m["_id"])), m["reason"],
                              "" if m["hash_distance"] is None else str(m["hash_distance"]),
                              "" if m["similarity"] is None else f"{m['similarity']:.3f}")
        console.print(table)
        if not dry_run:
            console.print(f"copies to review: viscurate find {name} '{{\"issues\": {{\"$in\": [\"duplicate\", "
                          f"\"near_duplicate\"]}}}}' --sort duplicates.group")


def _short_path(path: str) -> str:
    """The file and its folder: enough to tell images apart on screen.

    >>> _short_path("/home/me/photos/cats/tom.jpg")
    'cats/tom.jpg'
    """
    parts = Path(path).parts
    return str(Path(*parts[-2:])) if len(parts) > 2 else path


def _short_paths(ds: Any, ids: list[str]) -> dict[str, str]:
    """``{_id: folder/file}`` of these samples (the id itself for one without a file)."""
    ids = list(dict.fromkeys(ids))
    found = ds.find({"_id": {"$in": ids}}, projection={"filepath": 1}, page_size=max(1, min(10_000, len(ids))))
    return {d["_id"]: _short_path(d.get("filepath") or d["_id"]) for d in found["results"]}


@app.command("calibrate")
def calibrate_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    out: Path = typer.Option(Path("calibrate.html"), "--out", "-o", help="The HTML page to write."),
    model: Optional[str] = EMBEDDER_OPTION,
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Only the samples matching this query."),
) -> None:
    """A page of nearest-neighbour distances and example pairs per band, to choose duplicate thresholds."""
    q = _parse_json(query, "the query") if query else None
    report = _dataset(name).calibrate(out, model=model, query=q)
    for measure, bands in report.bands.items():
        console.print(f"{measure}: " + " · ".join(f"{b['band'][0]:g}-{b['band'][1]:g}: {b['pairs_in_band']}"
                                                   for b in bands))
    console.print(f"wrote {report.path} (open it in a browser; images are embedded, nothing is fetched)")


@app.command("leaks")
def leaks_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    split_field: str = typer.Option("split", "--field", "-f", help="The field whose values must not share "
                                    "duplicates (split, metadata.fold, ...)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model for the embedding rule."),
    no_embeddings: bool = typer.Option(False, "--no-embeddings", help="Hashes only."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Only among the samples matching this query."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report only; store nothing."),
    show: int = typer.Option(20, "--show", help="Leaks to print."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Find duplicates that cross a split (train/val leaks), with the duplicate rules' defaults."""
    q = _parse_json(query, "the query") if query else None
    ds = _dataset(name)
    report = ds.find_leaks(split_field, model=False if no_embeddings else model, query=q, write=not dry_run)
    if as_json:
        _print_json(dict(report.as_dict(), dataset=name))
        return
    values = ", ".join(f"{v} {n:,}" for v, n in sorted(report.values.items())) or "no sample has one"
    console.print(f"{report.samples:,} samples · {split_field}: {values} · {len(report.leaks):,} samples with a "
                  f"duplicate across {split_field} · {report.seconds:.1f} s")
    if report.note:
        console.print(f"[yellow]{report.note}[/]")
    if report.leaks:
        table = Table("_id", split_field, "duplicate of", f"its {split_field}", "reason", "counterparts",
                      title=f"leaks across {split_field}")
        for leak in report.leaks[:show]:
            table.add_row(leak["_id"], leak["value"], leak["with"], leak["with_value"], leak["reason"],
                          str(leak["count"]))
        console.print(table)
        if not dry_run:
            console.print(f"all of them: viscurate find {name} '{{\"issues\": \"leak\"}}'")


@app.command("outliers")
def outliers_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    k: int = typer.Option(10, "-k", help="Neighbours the distances are averaged over."),
    model: Optional[str] = EMBEDDER_OPTION,
    show: int = typer.Option(15, "--show", help="Outliers to print."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Score uniqueness and isolation from nearest-neighbour distances; flag the outliers."""
    ds = _dataset(name)
    report = ds.find_outliers(model=model, k=k)
    if as_json:
        _print_json(dict(report.as_dict(), dataset=name))
        return
    console.print(f"{report.samples:,} samples scored ({report.model}, k={report.k}) · median distance to the "
                  f"{report.k} nearest {report.median:.3f} · {len(report.outliers):,} outliers "
                  f"(robust z > {report.z_threshold}) · {report.seconds:.1f} s")
    if report.outliers:
        paths = {d["_id"]: d.get("filepath") for d in ds.find(
            {"_id": {"$in": [o["_id"] for o in report.outliers[:show]]}}, projection={"filepath": 1},
            page_size=max(1, min(show, len(report.outliers))))["results"]}
        table = Table("_id", "distance to neighbours", "z", "filepath", title="the most isolated samples")
        for o in report.outliers[:show]:
            table.add_row(o["_id"], f"{o['knn_distance']:.3f}", f"{o['z']:.1f}", str(paths.get(o["_id"]) or ""))
        console.print(table)
    console.print(f"every sample now has scores.uniqueness and scores.outlier: "
                  f"viscurate find {name} '{{}}' --sort scores.uniqueness:-1")


@app.command("object-duplicates")
def object_duplicates_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    field: str = typer.Option("object_analysis", "--field", help="Box list: object_analysis or ground_truth.detections."),
    min_similarity: float = typer.Option(0.92, "--min-similarity", help="Cosine similarity of two boxes' embeddings."),
    model: Optional[str] = EMBEDDER_OPTION,
    show: int = typer.Option(15, "--show", help="Pairs to print."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Find boxes whose objects appear again in another image (box-embedding near duplicates)."""
    ds = _dataset(name)
    report = ds.find_object_duplicates(field=field, model=model, min_similarity=min_similarity)
    if as_json:
        _print_json(dict(report.as_dict(), dataset=name))
        return
    console.print(f"{report.boxes:,} boxes of {report.field} searched ({report.model}) · {report.duplicate_boxes:,} "
                  f"with a twin in another image (similarity >= {report.min_similarity}) in {report.samples:,} "
                  f"samples · {report.seconds:.1f} s")
    if report.examples:
        shown = report.examples[:show]
        files = _short_paths(ds, [x for a, _, b, _, _ in shown for x in (a, b)])
        table = Table("image", "box", "twin's image", "box", "similarity", title="the closest pairs")
        for a, i, b, j, sim in shown:
            table.add_row(files.get(a, a), str(i), files.get(b, b), str(j), f"{sim:.3f}")
        console.print(table)
        console.print(f"find them: viscurate find {name} '{{\"issues\": \"object_duplicate\"}}'")


@app.command("box-label-errors")
def box_label_errors_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    field: str = typer.Option("ground_truth.detections", "--field", help="Box list to check."),
    k: int = typer.Option(10, "-k", help="Neighbours (boxes in other images) that vote."),
    min_score: float = typer.Option(0.7, "--min-score", help="Share of neighbours with another class to flag a box."),
    model: Optional[str] = EMBEDDER_OPTION,
    show: int = typer.Option(15, "--show", help="Boxes to print."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Find boxes whose most similar boxes in other images carry another class (detection label errors)."""
    report = _dataset(name).find_box_label_errors(field=field, model=model, k=k, min_score=min_score)
    if as_json:
        _print_json(dict(report.as_dict(), dataset=name))
        return
    console.print(f"{report.boxes:,} boxes of {report.field} in {report.classes:,} classes ({report.model}, k={report.k}) · "
                  f"{len(report.flagged):,} probably mislabeled (score >= {report.min_score}) · {report.seconds:.1f} s")
    if report.flagged:
        table = Table("sample", "box", "labeled", "neighbours say", "score", title="the most doubtful boxes")
        for sid, idx, label, suggested, score in report.flagged[:show]:
            table.add_row(sid, str(idx), label, suggested, f"{score:.2f}")
        console.print(table)
        console.print(f"find them: viscurate find {name} '{{\"issues\": \"mislabeled_box\"}}'")


@app.command("clusters")
def clusters_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    clusters: Optional[int] = typer.Option(None, "--clusters", "-n", help="How many (default: sqrt(samples / 2))."),
    model: Optional[str] = EMBEDDER_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Cluster the embeddings (k-means); members of very small clusters are flagged edge_case."""
    report = _dataset(name).find_clusters(model=model, clusters=clusters)
    if as_json:
        _print_json(dict(report.as_dict(), dataset=name))
        return
    console.print(f"{report.samples:,} samples in {report.clusters:,} clusters ({report.model}) · "
                  f"{report.edge_cases:,} edge cases in {len(report.edge_clusters):,} small clusters · "
                  f"{report.seconds:.1f} s")
    console.print(_bar_table("cluster sizes", {f"cluster {c}": s for c, s in enumerate(report.sizes[:20])},
                             report.samples))


@app.command("label-errors")
def label_errors_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    label_field: str = typer.Option("ground_truth.label", "--field", "-f", help="The field holding each image's class."),
    model: Optional[str] = EMBEDDER_OPTION,
    show: int = typer.Option(20, "--show", help="Errors to print."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Probable label errors of a classification dataset (confident learning on embeddings)."""
    report = _dataset(name).find_label_errors(label_field=label_field, model=model)
    if as_json:
        _print_json(dict(report.as_dict(), dataset=name))
        return
    console.print(f"{report.samples:,} labeled samples, {len(report.classes):,} classes · {len(report.errors):,} "
                  f"probable label errors · probabilities: {report.source} · {report.seconds:.1f} s")
    if report.errors:
        table = Table("_id", "label", "suggested", "mislabel score", "neighbours disagreeing",
                      title="most doubtful first")
        for e in report.errors[:show]:
            nd = e["neighbour_disagreement"]
            table.add_row(e["_id"], e["label"], e["suggested"], f"{e['score']:.3f}", "" if nd is None else f"{nd:.0%}")
        console.print(table)
        console.print(f"all of them: viscurate find {name} '{{\"issues\": \"mislabeled\"}}' "
                      f"--sort mislabel.score:-1")


@app.command("import-coco")
def import_coco_cmd(
    name: str = typer.Argument(..., help="Dataset name (created if it does not exist)."),
    coco_json: Path = typer.Argument(..., help="A COCO detection file (instances JSON)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder the file names are relative to "
                                          "(default: the JSON's folder)."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="A COCO results file to store as "
                                               "predicted boxes."),
    field: str = typer.Option("predictions", "--field", help="Where the predictions go."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Ingest the images of a COCO detection file, with its boxes as ground truth (and a model's results)."""
    from ..dataset import Dataset
    from ..formats.coco import check_coco_inputs
    from ..store.workspace import Workspace
    if Workspace(state.home).exists(name):
        ds = _dataset(name)  # (the import checks its inputs before it writes)
    else:
        check_coco_inputs(coco_json, images=images, predictions=predictions)  # a wrong input creates nothing
        ds = Dataset.create(name, state.home)
    counts = ds.import_coco(coco_json, images=images, predictions=predictions, field=field, progress=not as_json)
    if as_json:
        _print_json(counts)
        return
    for what, c in counts.items():
        console.print(f"{what}: {c['boxes']:,} boxes on {c['samples']:,} images"
                      + (f" · [yellow]{c['missing']:,} image files not found[/]" if c["missing"] else ""))


@app.command("import-folders")
def import_folders_cmd(
    name: str = typer.Argument(..., help="Dataset name (created if it does not exist)."),
    root: Path = typer.Argument(..., help="ROOT/<class>/images, or ROOT/<split>/<class>/images."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Ingest an image-classification folder tree: the class from each image's folder, the split above it."""
    from ..dataset import Dataset
    from ..formats.classification import check_classification_root
    from ..store.workspace import Workspace
    check_classification_root(root)  # before the dataset is created: a wrong input creates nothing
    ds = _dataset(name) if Workspace(state.home).exists(name) else Dataset.create(name, state.home)
    report = ds.import_classification(root, progress=not as_json)
    if as_json:
        _print_json(report.as_dict())
        return
    splits = ", ".join(f"{k} {v:,}" for k, v in sorted(report.splits.items()))
    console.print(f"{report.images:,} labeled images, {report.classes:,} classes"
                  + (f" · splits: {splits}" if splits else "")
                  + (f" · {report.unlabeled:,} outside any class folder" if report.unlabeled else "")
                  + (f" · [yellow]{report.failed:,} could not be decoded (kept, flagged corrupt)[/]" if report.failed else ""))


@app.command("evaluate")
def evaluate_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    pred_field: str = typer.Option("predictions", "--pred", help="The predicted boxes (predictions, object_analysis, ...)."),
    gt_field: str = typer.Option("ground_truth.detections", "--gt", help="The ground-truth boxes."),
    iou: float = typer.Option(0.5, "--iou", help="IoU at which boxes are marked tp / fp / fn."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Predictions against ground truth, the COCO way: mAP, AP50, AP75, per class; marks on every box."""
    report = _dataset(name).evaluate(pred_field=pred_field, gt_field=gt_field, iou=iou)
    if as_json:
        _print_json(dict(report.as_dict(), dataset=name))
        return
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    console.print(f"{report.samples:,} images · {pred_field} vs {gt_field} · mAP@[.5:.95] {f(report.map)} · "
                  f"AP50 {f(report.ap50)} · AP75 {f(report.ap75)} · at IoU {report.iou}: {report.totals}")
    table = Table("class", "ground truth", "predictions", "AP", "AP50", f"precision@{report.iou}",
                  f"recall@{report.iou}", title="per class")
    for cls, r in sorted(report.per_class.items(), key=lambda kv: -kv[1]["ground_truth"]):
        table.add_row(cls, str(r["ground_truth"]), str(r["predictions"]), f(r.get("ap")), f(r.get("ap50")),
                      f(r["precision"]), f(r["recall"]))
    console.print(table)
    if report.errors:
        console.print("false positives by kind: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in report.errors.items())
                      + f" · missed (fn) {report.totals.get('fn', 0):,}")
    console.print(f"worst images: viscurate find {name} '{{\"eval.fp\": {{\"$gt\": 2}}}}'")
    console.print(f"badly placed boxes: viscurate find {name} "
                  f"'{{\"{pred_field}\": {{\"$elemMatch\": {{\"eval_error\": \"badly_placed\"}}}}}}'")


@app.command("analyze")
def analyze_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    split_field: str = typer.Option("split", "--split-field", help="The field leaks are looked for across."),
    model: Optional[str] = EMBEDDER_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print every report as JSON."),
) -> None:
    """Every data-quality analysis the dataset has the data for: duplicates, leaks, outliers, clusters,
    label errors."""
    ds = _dataset(name)
    reports = ds.analyze(split_field=split_field, model=model,
                         progress=None if as_json else (lambda step: console.print(f"[bold]{step}[/] ...")))
    if as_json:
        _print_json({k: v.as_dict() for k, v in reports.items()})
        return
    lines = []
    if "duplicates" in reports:
        r = reports["duplicates"]
        lines.append(f"duplicates: {len(r.groups):,} groups, {r.exact:,} exact copies, {r.near:,} near duplicates"
                     + (f" ({r.note})" if r.note else ""))
    if "leaks" in reports:
        lines.append(f"leaks across {split_field}: {len(reports['leaks'].leaks):,} samples")
    else:
        lines.append(f"leaks: no sample has a {split_field} value")
    if "label_errors" in reports:
        lines.append(f"label errors: {len(reports['label_errors'].errors):,} probable")
    if "object_duplicates" in reports:
        r = reports["object_duplicates"]
        lines.append(f"object duplicates: {r.duplicate_boxes:,} boxes with a twin in another image, in {r.samples:,} samples")
    if "box_label_errors" in reports:
        lines.append(f"boxes probably mislabeled (neighbours disagree): {len(reports['box_label_errors'].flagged):,}")
    if "label_conflicts" in reports:
        lines.append(f"label conflicts (duplicates or clusters that disagree): "
                     f"{len(reports['label_conflicts'].conflicts):,}")
    if "outliers" in reports:
        lines.append(f"outliers: {len(reports['outliers'].outliers):,}")
        lines.append(f"clusters: {reports['clusters'].clusters:,}, {reports['clusters'].edge_cases:,} edge cases")
    else:
        lines.append("outliers, clusters: need embeddings (viscurate embed)")
    missing = ds.count({"issues": "missing"})
    if missing:
        lines.append(f"[yellow]{missing:,} skipped: file missing[/]")
    for line in lines:
        console.print(line)
    console.print(f"\nfindings are fields: viscurate info {name} · viscurate find {name} "
                  f"'{{\"issues\": {{\"$in\": [\"near_duplicate\", \"leak\", \"outlier\", \"edge_case\", \"mislabeled\", \"label_conflict\"]}}}}'")


@app.command("similar")
def similar_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    target: str = typer.Argument(..., help="A sample id, or the path of an image file (embedded on the fly)."),
    k: int = typer.Option(10, "-k", help="How many."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model (default: the default "
                                        "embedder, when `viscurate embed` stored it)."),
    exact: bool = typer.Option(False, "--exact", help="Scan every vector even above 100,000 (slower, exact)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The samples most similar to a sample or an image (cosine similarity of embeddings)."""
    if k < 1:
        raise ViscurateError("-k must be at least 1")
    hits = _dataset(name).similar(target, k, model=model, exact=exact)
    if as_json:
        _print_json(hits)
        return
    table = Table("#", "_id", "similarity", "filepath", title=f"most similar to {target}")
    for n, h in enumerate(hits, 1):
        table.add_row(str(n), h["_id"], f"{h['similarity']:.4f}", str(h.get("filepath") or ""))
    console.print(table)


@app.command("map")
def map_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model (default: the default embedder)."),
    query: str = typer.Option("{}", "--query", "-q", help="Only the samples matching this query."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Place the samples on a 2-D map from their embeddings (map.x, map.y; the web app's Map tab)."""
    report = _dataset(name).compute_map(model=model, query=_parse_json(query, "the query") or None)
    if as_json:
        _print_json(report.as_dict())
        return
    console.print(f"placed {report.samples:,} samples ({report.method}, {report.model}) in {report.seconds:.1f}s")


@app.command("export")
def export_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    out: Path = typer.Argument(..., help="Output file."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl (every field) or coco (boxes)."),
    query: str = typer.Option("{}", "--query", "-q", help="Only the samples matching this query."),
    field: Optional[str] = typer.Option(None, "--field", help="coco: the boxes to write (default: "
                                        "ground_truth.detections if a sample has some, else object_analysis)."),
) -> None:
    """Write samples to a file: JSON Lines documents or a COCO detection file."""
    result = _dataset(name).export(out, format=fmt, query=_parse_json(query, "the query") or None, field=field)
    counts = {k: v for k, v in result.items() if isinstance(v, int) and k != "corrupt_left_out"}
    console.print(f"wrote {out}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items())
                  + (f" (boxes of {result['field']})" if result.get("field") else ""), highlight=False)
    if result.get("corrupt_left_out"):
        console.print(f"[yellow]left out {result['corrupt_left_out']:,} corrupt sample(s) (no size to write): "
                      f"viscurate find {name} '{{\"issues\": \"corrupt\"}}'[/]", highlight=False)


view_app = typer.Typer(help="Saved views (queries) and slices (frozen sets of samples).", no_args_is_help=True)
app.add_typer(view_app, name="view")


@view_app.command("save")
def view_save(name: str, view: str, query: str = typer.Argument(..., help="The MongoDB query.")) -> None:
    """Save a query as a view: it is evaluated again each time it is opened."""
    _dataset(name).save_view(view, _parse_json(query, "the query"), by=os.environ.get("USER"))
    console.print(f"saved view {view!r}")


@view_app.command("list")
def view_list(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Saved views and slices."""
    ds = _dataset(name)
    views, slices = ds.views(), ds.slices()
    if as_json:
        _print_json({"views": views, "slices": slices})
        return
    table = Table("kind", "name", "query / samples", "created")
    for v, spec in views.items():
        table.add_row("view", v, orjson.dumps(spec["query"]).decode(), f"{spec.get('created_at', '')} {spec.get('created_by') or ''}")
    for sl, n in slices.items():
        table.add_row("slice", sl, f"{n:,} samples", "")
    console.print(table)


@view_app.command("delete")
def view_delete(name: str, view: str) -> None:
    if not _dataset(name).delete_view(view):
        raise ViscurateError(f"no view named {view!r}")
    console.print(f"deleted view {view!r}")


@view_app.command("slice")
def view_slice(name: str, slice_name: str, query: str = typer.Argument(..., help="The samples to freeze.")) -> None:
    """Freeze the samples matching a query as a slice ({"slices": NAME} finds them later)."""
    n = _dataset(name).save_slice(slice_name, _parse_json(query, "the query"))
    console.print(f"slice {slice_name!r}: {n:,} samples")


@app.command("draw")
def draw_cmd(
    name: str = typer.Argument(..., help="Dataset name."),
    sample_id: str = typer.Argument(..., help="The sample's _id."),
    output: Path = typer.Option(..., "--output", "-o", help="Picture to write (.png, .jpg...)."),
    show: Optional[str] = typer.Option(None, "--show", help="Layers, comma-separated: object_analysis, "
                                       "ground_truth, face_analysis, pose_estimation, classifications "
                                       "(default: all but classifications)."),
    max_side: Optional[int] = typer.Option(None, "--max-side", help="Shrink the picture to this longest side."),
    min_confidence: float = typer.Option(0.0, "--min-confidence", help="Leave out less confident boxes."),
) -> None:
    """Draw a sample's labels (boxes, ground truth, faces, poses) on its image."""
    layers = [s.strip() for s in show.split(",") if s.strip()] if show else None
    ds = _dataset(name)
    try:
        ds.draw(sample_id, output, show=layers, max_side=max_side, min_confidence=min_confidence)
    except ValueError as e:
        raise ViscurateError(str(e)) from None
    console.print(f"wrote {output}")


@app.command("models")
def models_cmd(
    role: Optional[str] = typer.Option(None, "--role", help="Only the models that can play this role."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The models viscurate can run (all offline): name, version, role, runtime, where the weights come
    from, licence."""
    from ..models import registry
    specs = registry.list_models(role=role)
    rows = [registry.spec_dict(s) for s in specs]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="models (--json for the full licence notes)", show_lines=True)
    table.add_column("name / version", overflow="fold")
    table.add_column("role")
    table.add_column("runtime")
    table.add_column("weights from / licence", overflow="fold")
    for r in rows:
        roles = ", ".join([r["role"]] + [x for x in r["roles"] if x != r["role"]])
        if r["default_for"]:
            roles += f"\n[dim](default: {', '.join(r['default_for'])})[/]"
        licence = r["licence"].split(" (", 1)[0].split(";", 1)[0].strip()
        source = r["source"].split(" (", 1)[0]
        table.add_row(f"[bold]{r['name']}[/]\n{r['version']}", roles, r["runtime"], f"{source}\n[dim]{licence}[/]")
    console.print(table)


# ---- demo ----------------------------------------------------------------------------------------

@app.command("demo")
def demo_cmd(name: str = typer.Option("demo", "--name", help="Dataset name for the demo.")) -> None:
    """Build a small dataset from the photos bundled with scikit-image and scikit-learn and show what
    viscurate found in it."""
    from .demo import run_demo
    run_demo(name, state.home, console)


@app.command("serve")
def serve_cmd(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback "
                                       "needs an API key (viscurate api-key create NAME)."),
              port: int = typer.Option(8000, "--port", "-p", help="Port."),
              threads: Optional[int] = typer.Option(None, "--threads", min=1, max=1000,
                                                    help="Requests handled at once, the others wait in "
                                                    "arrival order (default: 4 per core, 8 to 40)."),
              allowed_hosts: Optional[List[str]] = typer.Option(
                  None, "--allowed-host", help="A host name the server also answers for (repeatable), e.g. a "
                  "reverse proxy's; besides 127.0.0.1, localhost, ::1 and the address it listens on."),
              max_body_mib: float = typer.Option(server_defaults.MAX_BODY_BYTES / 2**20, "--max-body-mib", min=0.01, max=1024,
                                                 help="Largest JSON request body, MiB (413 beyond)."),
              max_upload_mib: float = typer.Option(server_defaults.MAX_UPLOAD_BYTES / 2**20, "--max-upload-mib", min=0.01, max=4096,
                                                   help="Largest image /v1/analyze takes, uploaded or fetched, MiB."),
              fetch_deadline: float = typer.Option(server_defaults.FETCH_DEADLINE_S, "--fetch-deadline", min=1, max=3600,
                                                   help="Seconds a whole URL fetch of /v1/analyze may take."),
              heavy_threads: int = typer.Option(server_defaults.HEAVY_THREADS, "--heavy-threads", min=1, max=64,
                                                help="Queries that scan free-form JSON run at once, apart from "
                                                "the request threads."),
              heavy_share: float = typer.Option(server_defaults.HEAVY_SHARE, "--heavy-share", min=0.01, max=1.0,
                                                help="Share of the time heavy queries get while other requests "
                                                "are in flight (1: no pacing)."),
              heavy_queue: int = typer.Option(server_defaults.HEAVY_QUEUE, "--heavy-queue", min=0, max=100_000,
                                              help="Heavy queries that may wait; one more is a 429.")) -> None:
    """Serve the REST API (OpenAPI document at /openapi.json) and the web app over this workspace."""
    try:
        import uvicorn

        from ..server.admission import LaneSettings
        from ..server.app import create_app, request_threads
    except ImportError as e:
        raise ViscurateError(f"the server needs the 'serve' extra: pip install 'viscurate[serve]' ({e})") from None
    from ..server.keys import KeyStore, check_bind, is_loopback
    from ..store.lock import SERVER_FILE
    from ..store.workspace import Workspace, make_dirs

    home = Workspace(state.home).home
    store = KeyStore(home)
    check_bind(host, has_keys=bool(store.digests()))
    err_console.print(f"serving {home} on http://{host}:{port} "
                      f"({'API key required' if not is_loopback(host) else 'loopback only'}); web app at /")
    announce = home / SERVER_FILE  # so that a CLI write that finds a dataset busy can say who holds it
    make_dirs(announce.parent)  # 0700, like every folder of the workspace
    # (a file left by a killed server is simply replaced: running_server already ignores a dead pid)
    announce.write_text(json.dumps({"pid": os.getpid(), "url": f"http://{host}:{port}", "since": time.time()}))
    # uvicorn shuts down on SIGTERM, then raises it again under the handler it found: the default one
    # would end the process before the finally below; this one unwinds the stack
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        server_app = create_app(state.home, require_key=not is_loopback(host),
                                request_threads=threads or request_threads(), allowed_hosts=tuple(allowed_hosts or ()),
                                max_body_bytes=int(max_body_mib * 2**20), max_upload_bytes=int(max_upload_mib * 2**20),
                                fetch_deadline=fetch_deadline,
                                heavy_queries=LaneSettings(threads=heavy_threads, share=heavy_share,
                                                           max_waiting=heavy_queue))
        # the objects of every module loaded so far live as long as the process: out of the collector's
        # sight, its full collections no longer stall every request in flight for tens of milliseconds
        gc.collect()
        gc.freeze()
        uvicorn.run(server_app, host=host, port=port, log_level="info")
    finally:
        _withdraw_announcement(announce)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _withdraw_announcement(announce: Path) -> None:
    """Remove the server's ``running.json``, unless another server has announced itself since."""
    try:
        mine = json.loads(announce.read_text()).get("pid") == os.getpid()
    except (OSError, ValueError, AttributeError):
        return
    if mine:
        announce.unlink(missing_ok=True)


api_key_app = typer.Typer(help="API keys of the server (stored as digests in the workspace).", no_args_is_help=True)
app.add_typer(api_key_app, name="api-key")


@api_key_app.command("create")
def api_key_create(name: str = typer.Argument(..., help="A name to revoke it by later.")) -> None:
    """Create a key and print it (once: only its digest is kept)."""
    from ..server.keys import KeyStore
    from ..store.workspace import Workspace
    print(KeyStore(Workspace(state.home).home).create(name))


@api_key_app.command("list")
def api_key_list() -> None:
    """The keys' names and when they were made."""
    from ..server.keys import KeyStore
    from ..store.workspace import Workspace
    for name, created in KeyStore(Workspace(state.home).home).names().items():
        print(f"{name}\t{created}")


@api_key_app.command("revoke")
def api_key_revoke(name: str = typer.Argument(...)) -> None:
    """Revoke a key (a running server refuses it from its next request)."""
    from ..server.keys import KeyStore
    from ..store.workspace import Workspace
    KeyStore(Workspace(state.home).home).revoke(name)


GLOBAL_OPTIONS = ("--home", "--wait")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Let ``--home``/``--wait`` stand anywhere on the line (``viscurate ingest x -d y --home h``), by
    moving them before the command name, where the CLI parser expects them."""
    front, rest = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            if "=" in arg:
                front.append(arg)
            else:
                front += argv[i:i + 2]
                i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main() -> None:
    try:
        app(args=hoist_global_options(sys.argv[1:]), prog_name="viscurate")
    except ViscurateError as e:
        err_console.print(f"[bold red]error:[/] {e}")
        raise SystemExit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; everything committed so far is kept, run again to finish[/]")
        raise SystemExit(130)


if __name__ == "__main__":
    main()
