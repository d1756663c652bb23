"""Commands that choose what to label and how to split it: ``select``, ``curation-report``, ``autotag``,
``split`` and ``fit-head`` (docs/curation.md). Each parses its options, calls one ``Dataset`` method and
draws the answer with ``render``.

    viscurate select shop 2% --strategy cluster_coverage --slice to-label --report to-label.html
    viscurate autotag shop sneaker --positive id1,id2,id3 --tag
    viscurate split shop --ratios train=0.8,val=0.1,test=0.1 --group metadata.scene
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from .context import open_dataset, parse_query_option
from .options import (DATASET_ARGUMENT, EMBEDDER_OPTION, QUERY_OPTION, json_option, parse_assignments,
                      parse_ids_or_query)
from .render import console, print_caution, print_json, short_paths

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()

#: picks printed before "... and N more"
SHOWN_PICKS = 25
#: samples of each autotag list printed
SHOWN_SCORES = 10

STRATEGY_HELP = ("random, cluster_coverage, k_center, typicality, edge_cases, balance, uncertainty, similarity or "
                 "weighted (docs/curation.md)")


@commands.command("select")
def select_cmd(
    name: str = DATASET_ARGUMENT,
    budget: str = typer.Argument(..., help="How many samples to pick: a number (200) or a share of the "
                                 "candidates (2%)."),
    strategy: str = typer.Option("cluster_coverage", "--strategy", "-s", help=f"How to pick: {STRATEGY_HELP}."),
    query: Optional[str] = typer.Option(None, "--query", "-q", help="Pick among the samples matching this "
                                        "MongoDB query."),
    view: Optional[str] = typer.Option(None, "--view", help="Pick among the samples of this saved view."),
    slice_name: Optional[str] = typer.Option(None, "--slice", help="Save the picks as this slice (default: "
                                             "STRATEGY-N); a selection saved under the same name is replaced."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed picks the same samples."),
    model: Optional[str] = EMBEDDER_OPTION,
    field: Optional[str] = typer.Option(None, "--field", help="balance: the field to balance (default "
                                        "ground_truth.label, else the predicted class); uncertainty: the "
                                        "predictions (default head)."),
    examples: Optional[str] = typer.Option(None, "--examples", help="similarity: the examples, as comma-separated "
                                           "ids or a JSON query starting with {."),
    negatives: Optional[str] = typer.Option(None, "--negatives", help="similarity: samples to stay away from "
                                            "(ids or a query)."),
    measure: str = typer.Option("margin", "--measure", help="uncertainty: margin (default: the best on the active-learning bench), entropy or least_confidence."),
    weights: Optional[str] = typer.Option(None, "--weights", help="weighted: strategy=weight pairs, e.g. "
                                          "cluster_coverage=0.5,uncertainty=0.5."),
    keep_duplicates: bool = typer.Option(False, "--keep-duplicates", help="Keep near duplicates among the "
                                         "candidates (dropped by default)."),
    keep_leaks: bool = typer.Option(False, "--keep-leaks", help="Keep samples flagged as leaks across a split."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the curation report (HTML, with "
                                          "its JSON twin beside it)."),
    preview: bool = typer.Option(False, "--preview", help="Show the picks; store nothing."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    as_json: bool = json_option("the selection"),
) -> None:
    """Pick BUDGET samples worth labeling with a strategy; each pick says why it was chosen."""
    from ..brain.selection.pool import budget_count
    from ..errors import ViscurateError
    if preview and report is not None:
        raise ViscurateError("--report needs a saved selection: drop --preview (or write the report later with "
                             "`viscurate curation-report`)")
    q = parse_query_option(query)
    ds = open_dataset(name)
    n = budget_count(budget, lambda: _candidates(ds, q, view))
    selection = ds.select(
        n, strategy, query=q, view=view, slice=slice_name, seed=seed, model=model, field=field,
        examples=parse_ids_or_query(examples, "--examples"), negatives=parse_ids_or_query(negatives, "--negatives"),
        measure=measure, weights=parse_assignments(weights, "--weights"), keep_duplicates=keep_duplicates,
        keep_leaks=keep_leaks, write=not preview, report=report, progress=not no_progress and not as_json,
        by=os.environ.get("USER"))
    if as_json:
        print_json(dict(selection.as_dict(), dataset=name, stored=not preview))
        return
    print_selection(ds, selection, stored=not preview)


def _candidates(ds: Any, query: dict | None, view: str | None) -> int:
    """How many samples a share of the candidates is taken from: those of the query and the view."""
    parts = [q for q in (query, ds.view(view)["query"] if view else None) if q]
    return ds.count({"$and": parts} if len(parts) > 1 else (parts[0] if parts else {}))


def print_selection(ds: Any, selection: Any, *, stored: bool) -> None:
    """The pool and what was dropped, the picks as a table (the first :data:`SHOWN_PICKS`), where they went."""
    dropped = {k: v for k, v in (selection.dropped or {}).items() if v}
    drops = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in dropped.items()) or "none"
    console.print(f"{selection.strategy}: {len(selection.ids):,} of {selection.pool:,} candidates "
                  f"(dropped: {drops}) · seed {selection.seed} · {selection.seconds:.1f} s", highlight=False)
    picks = selection.picks[:SHOWN_PICKS]
    paths = short_paths(ds, [p["_id"] for p in picks])
    table = Table("rank", "_id", "file", "cluster", "score", "reason", title=f"slice {selection.slice}" if stored
                  else "preview (nothing stored)")
    for p in picks:
        score = p.get("score")
        table.add_row(str(p["rank"]), p["_id"], paths.get(p["_id"], ""),
                      "" if p.get("cluster") is None else str(p["cluster"]),
                      "" if score is None else f"{score:.3g}", p.get("reason") or "")
    console.print(table)
    for note in getattr(selection, "notes", None) or []:
        print_caution(note)
    if len(selection.picks) > SHOWN_PICKS:
        console.print(f"... and {len(selection.picks) - SHOWN_PICKS:,} more (--json lists them all)")
    if stored:
        console.print(f"saved as slice {selection.slice!r}: viscurate find {ds.name} "
                      f"'{{\"slices\": \"{selection.slice}\"}}'", highlight=False)
    if selection.report:
        console.print(f"wrote the curation report {selection.report} (open it in a browser)", highlight=False)


@commands.command("curation-report")
def curation_report_cmd(
    name: str = DATASET_ARGUMENT,
    slice_name: str = typer.Argument(..., metavar="SLICE", help="The saved selection (its slice)."),
    out: Path = typer.Argument(..., metavar="OUT.html", help="The HTML report to write (its JSON twin goes "
                               "beside it, .json)."),
    random_subsets: int = typer.Option(20, "--random-subsets", help="Random subsets of the same size to compare "
                                       "with."),
    label_field: Optional[str] = typer.Option(None, "--label-field", help="The class field (default "
                                              "ground_truth.label, else the predicted class)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random subsets."),
    as_json: bool = json_option("the report"),
) -> None:
    """The curation report of a saved selection: its coverage and balance beside random subsets."""
    report = open_dataset(name).curation_report(slice_name, out, random_subsets=random_subsets,
                                                label_field=label_field, seed=seed)
    if as_json:
        print_json(report)
        return
    for line in _verdicts(report):
        console.print(line, highlight=False)
    console.print(f"wrote {out} and {Path(out).with_suffix('.json')} (open the HTML in a browser; it fetches "
                  f"nothing)", highlight=False)


def _verdicts(report: dict) -> list[str]:
    """The report's lines that compare the selection with random subsets: its summary (one line per
    metric, with the verdict), else each metric's verdict and the balance of each class field.

    >>> _verdicts({"summary": ["coverage: 0.8 vs 0.5: better"]})
    ['coverage: 0.8 vs 0.5: better']
    >>> _verdicts({"metrics": {"cluster_coverage": {"verdict": "better"}}, "balance": {"label": {"metrics": {
    ...     "classes_covered": {"verdict": "no better than random"}}}}})
    ['cluster coverage: better', 'label, classes covered: no better than random']
    """
    lines = [line for line in report.get("summary") or () if isinstance(line, str)]
    if lines:
        return lines
    metrics = report.get("metrics") if isinstance(report.get("metrics"), dict) else {}
    lines = [f"{k.replace('_', ' ')}: {m['verdict']}" for k, m in metrics.items() if isinstance(m, dict) and m.get("verdict")]
    for field, balance in (report.get("balance") or {}).items():
        for key, m in ((balance or {}).get("metrics") or {}).items():
            if isinstance(m, dict) and m.get("verdict"):
                lines.append(f"{field}, {key.replace('_', ' ')}: {m['verdict']}")
    return lines


@commands.command("autotag")
def autotag_cmd(
    name: str = DATASET_ARGUMENT,
    concept: str = typer.Argument(..., metavar="CONCEPT", help="The concept's name: scores go to autotag.CONCEPT."),
    positive: str = typer.Option(..., "--positive", "-p", help="Examples of the concept: comma-separated ids or "
                                 "a JSON query starting with {."),
    negative: Optional[str] = typer.Option(None, "--negative", "-n", help="Counter-examples (ids or a query)."),
    query: Optional[str] = QUERY_OPTION,
    model: Optional[str] = EMBEDDER_OPTION,
    threshold: float = typer.Option(0.5, "--threshold", help="Score from which a sample has the concept."),
    tag: bool = typer.Option(False, "--tag", help="Tag the samples at or above the threshold with CONCEPT."),
    slice_name: Optional[str] = typer.Option(None, "--slice", help="Save the samples at or above the threshold "
                                             "as this slice."),
    as_json: bool = json_option("the result"),
) -> None:
    """Teach a concept from a few examples: score every sample, show the top and the borderline ones."""
    ds = open_dataset(name)
    result = ds.autotag(concept, parse_ids_or_query(positive, "--positive"),
                        parse_ids_or_query(negative, "--negative"), model=model, query=parse_query_option(query),
                        threshold=threshold, tag=concept if tag else None, slice=slice_name)
    summary = result.as_dict()
    if as_json:
        print_json(dict(summary, dataset=name))
        return
    print_autotag(ds, concept, summary)


def scored(entries: Any) -> list[tuple[str, float | None]]:
    """``(id, score)`` pairs of an autotag list, whether it holds dicts, pairs or bare ids.

    >>> scored([{"_id": "a", "score": 0.9}, ["b", 0.4], "c"])
    [('a', 0.9), ('b', 0.4), ('c', None)]
    """
    out: list[tuple[str, float | None]] = []
    for e in entries or ():
        if isinstance(e, dict):
            out.append((e.get("_id") or e.get("id"), e.get("score")))
        elif isinstance(e, (list, tuple)):
            out.append((e[0], e[1] if len(e) > 1 else None))
        else:
            out.append((str(e), None))
    return out


def print_autotag(ds: Any, concept: str, summary: dict) -> None:
    """What an autotag run found: counts, then the top and the borderline samples with their scores."""
    count = lambda v: len(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 - ids or a count
    above = summary.get("above")
    console.print(f"autotag.{concept}: fitted on {count(summary.get('positives')) or 0:,} positive and "
                  f"{count(summary.get('negatives')) or 0:,} negative example(s)"
                  + (f" · {above:,} sample(s) at or above {summary.get('threshold', 0.5):g}"
                     if isinstance(above, int) else "")
                  + (f" · {summary['seconds']:.1f} s" if isinstance(summary.get("seconds"), (int, float)) else ""),
                  highlight=False)
    for title, key in (("top", "top"), ("borderline (label these next)", "borderline")):
        rows = scored(summary.get(key))[:SHOWN_SCORES]
        if not rows:
            continue
        paths = short_paths(ds, [i for i, _ in rows])
        table = Table("_id", "file", "score", title=f"{title}: {len(scored(summary.get(key))):,}")
        for sid, score in rows:
            table.add_row(sid, paths.get(sid, ""), "" if score is None else f"{score:.3f}")
        console.print(table)
    for key, what in (("tag", "tag"), ("slice", "slice")):
        if summary.get(key):
            console.print(f"the samples at or above {summary.get('threshold', 0.5):g} now carry the {what} "
                          f"{summary[key]!r}", highlight=False)
    console.print(f"sorted by score: viscurate find {ds.name} '{{}}' --sort autotag.{concept}:-1", highlight=False)


@commands.command("split")
def split_cmd(
    name: str = DATASET_ARGUMENT,
    ratios: Optional[str] = typer.Option(None, "--ratios", help="split=share pairs (default "
                                         "train=0.8,val=0.1,test=0.1)."),
    stratify: str = typer.Option("ground_truth.label", "--stratify", help="The field whose values each split "
                                 "should hold in the same shares ('' for none)."),
    group: Optional[str] = typer.Option(None, "--group", help="A field whose samples stay on one side (same "
                                        "video, scene, patient)."),
    field: str = typer.Option("split", "--field", help="The field to write the split into."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    query: Optional[str] = QUERY_OPTION,
    near_identical: float = typer.Option(0.95, "--near-identical", help="Embedding similarity from which images "
                                         "are kept on one side."),
    model: Optional[str] = EMBEDDER_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Report only; store nothing."),
    as_json: bool = json_option("the report"),
) -> None:
    """Split into train/val/test so that no near duplicate, near-identical cluster or group is divided."""
    shares, q = parse_assignments(ratios, "--ratios"), parse_query_option(query)
    report = open_dataset(name).split(shares, stratify=stratify or None, group=group, field=field, seed=seed, query=q,
                                      near_identical=near_identical, model=model, write=not dry_run)
    summary = report.as_dict()
    if as_json:
        print_json(dict(summary, dataset=name))
        return
    print_split(dict(summary, dataset=name), field, stored=not dry_run)


def print_split(summary: dict, field: str, *, stored: bool) -> None:
    """A split's sizes, what was kept whole, and its class table: a row per class with its count and
    share in each split, and its largest gap from the target ratios."""
    sizes = summary.get("counts") or {}
    console.print(" · ".join(f"{s}: {n:,}" for s, n in sizes.items()) + _split_units(summary)
                  + ("" if stored else " (dry run: nothing stored)"), highlight=False)
    by_class: dict[str, dict[str, int]] = {}
    for s, counts in (summary.get("classes") or {}).items():
        for c, n in counts.items():
            by_class.setdefault(str(c), {})[s] = n
    if by_class:
        deviation = summary.get("max_deviation") or {}
        table = Table("class", *sizes, "largest gap", title=f"classes per {field} (count, share of the class)")
        for c, counts in sorted(by_class.items()):
            total = sum(counts.values()) or 1
            gap = deviation.get(c)
            table.add_row(c, *[f"{counts.get(s, 0):,} ({100 * counts.get(s, 0) / total:.0f}%)" for s in sizes],
                          "" if gap is None else f"{gap:.3f}")
        console.print(table)
    if summary.get("note"):
        print_caution(summary["note"])
    if stored:
        console.print(f"check: viscurate leaks {summary.get('dataset', 'NAME')} --field {field}", highlight=False)


def _split_units(summary: dict) -> str:
    """What the split kept whole: units, the samples in units of several, the largest.

    >>> _split_units({"units": 90, "joined": 12, "largest_unit": {"size": 4}})
    ' · 90 units kept whole (12 samples in units of several; the largest: 4)'
    """
    units, joined, largest = summary.get("units"), summary.get("joined"), summary.get("largest_unit") or {}
    if not isinstance(units, int):
        return ""
    size = largest.get("size") if isinstance(largest, dict) else largest
    detail = [f"{joined:,} samples in units of several"] if isinstance(joined, int) else []
    detail += [f"the largest: {size:,}"] if isinstance(size, int) else []
    return f" · {units:,} units kept whole" + (f" ({'; '.join(detail)})" if detail else "")


@commands.command("fit-head")
def fit_head_cmd(
    name: str = DATASET_ARGUMENT,
    label_field: str = typer.Option("ground_truth.label", "--label-field", help="The labels to learn from."),
    field: str = typer.Option("head", "--field", help="Where to write the predictions."),
    model: Optional[str] = EMBEDDER_OPTION,
    query: Optional[str] = QUERY_OPTION,
    as_json: bool = json_option("the report"),
) -> None:
    """Fit a light classifier on the embeddings of the labeled samples and predict every sample: the
    probabilities `select --strategy uncertainty` reads."""
    report = open_dataset(name).fit_head(label_field, field=field, model=model, query=parse_query_option(query))
    summary = report.as_dict()
    if as_json:
        print_json(dict(summary, dataset=name))
        return
    table = Table(title=f"{field}: a classifier of {label_field} on the embeddings", show_header=False)
    for key, value in summary.items():
        if isinstance(value, (list, dict)):
            value = ", ".join(map(str, value)) if isinstance(value, list) and len(value) <= 20 else f"{len(value)} items"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    console.print(f"next: viscurate select {name} 100 --strategy uncertainty --field {field}", highlight=False)
