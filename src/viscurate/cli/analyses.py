"""The data-quality analyses: ``duplicates``, ``calibrate``, ``leaks``, ``outliers``, ``object-duplicates``,
``box-label-errors``, ``clusters``, ``label-errors``, ``evaluate``, ``analyze`` (all of them) and ``map``.

    viscurate duplicates pets --dry-run
    viscurate analyze pets --json
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .context import open_dataset, parse_json, parse_query_option
from .options import (DATASET_ARGUMENT, DRY_RUN_OPTION, EMBEDDER_OPTION, NO_EMBEDDINGS_OPTION, QUERY_OPTION,
                      SEARCH_AMONG_OPTION, json_option)
from .render import bar_table, console, print_caution, print_json, print_report_json, short_paths

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()


@commands.command("duplicates")
def duplicates_cmd(
    name: str = DATASET_ARGUMENT,
    hash_distance: int = typer.Option(10, "--hash-distance", help="Perceptual-hash bits (of 64) within which two "
                                      "images are near duplicates."),
    flip_distance: int = typer.Option(4, "--flip-distance", help="Flip-invariant hash bits within which an image "
                                      "is a mirrored copy."),
    similarity: float = typer.Option(0.90, "--similarity", help="Embedding cosine similarity from which two images "
                                     "are near duplicates (with --similarity-hash-distance)."),
    similarity_hash_distance: int = typer.Option(22, "--similarity-hash-distance", help="...and perceptual hashes "
                                                 "at most this many bits apart."),
    small_side: int = typer.Option(64, "--small-side", help="Pictures whose shorter side is under this many "
                                   "pixels are small: their pairs must also agree pixel by pixel (0: no such check)."),
    small_score: float = typer.Option(0.97, "--small-score", help="The whole-picture correlation (24 x 24 grid) "
                                      "at which two small pictures agree (`viscurate calibrate` shows where copies stop)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model for the embedding rule "
                                        "(default: the default embedder, when `viscurate embed` stored it)."),
    no_embeddings: bool = NO_EMBEDDINGS_OPTION,
    query: Optional[str] = SEARCH_AMONG_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    show: int = typer.Option(10, "--show", help="Groups to print."),
    as_json: bool = json_option("the report (every group)"),
) -> None:
    """Find exact and near duplicates, group them around a representative, flag the copies."""
    from .. import brain  # noqa: F401 - import errors surface here, not half-way
    q = parse_query_option(query)
    ds = open_dataset(name)
    report = ds.find_duplicates(model=False if no_embeddings else model, query=q, write=not dry_run,
                                hash_distance=hash_distance, flip_distance=flip_distance, similarity=similarity,
                                similarity_hash_distance=similarity_hash_distance, small_side=small_side,
                                small_score=small_score)
    if as_json:
        print_report_json(report, name)
        return
    console.print(f"{report.samples:,} samples · {len(report.groups):,} duplicate groups · {report.exact:,} exact "
                  f"copies · {report.near:,} near duplicates · {report.seconds:.1f} s"
                  + (f" · embeddings: {report.model}" if report.model else ""))
    if report.note:
        print_caution(report.note)
    if report.groups:
        paths = short_paths(ds, [i for g in report.groups[:show] for i in g.ids])
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


@commands.command("calibrate")
def calibrate_cmd(
    name: str = DATASET_ARGUMENT,
    out: Path = typer.Option(Path("calibrate.html"), "--out", "-o", help="The HTML page to write."),
    model: Optional[str] = EMBEDDER_OPTION,
    query: Optional[str] = QUERY_OPTION,
) -> None:
    """A page of nearest-neighbour distances and example pairs per band, to choose duplicate thresholds."""
    q = parse_query_option(query)
    report = open_dataset(name).calibrate(out, model=model, query=q)
    for measure, bands in report.bands.items():
        console.print(f"{measure}: " + " · ".join(f"{b['band'][0]:g}-{b['band'][1]:g}: {b['pairs_in_band']}"
                                                   for b in bands))
    if report.small:
        console.print(f"{report.small:,} of {report.samples:,} pictures are small: their pairs need --small-score "
                      "(the 'small' bands: whole-picture correlation with the closest candidate)")
    console.print(f"wrote {report.path} (open it in a browser; images are embedded, nothing is fetched)")


@commands.command("leaks")
def leaks_cmd(
    name: str = DATASET_ARGUMENT,
    split_field: str = typer.Option("split", "--field", "-f", help="The field whose values must not share "
                                    "duplicates (split, metadata.fold, ...)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model for the embedding rule."),
    no_embeddings: bool = NO_EMBEDDINGS_OPTION,
    query: Optional[str] = SEARCH_AMONG_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    show: int = typer.Option(20, "--show", help="Leaks to print."),
    as_json: bool = json_option("the report"),
) -> None:
    """Find duplicates that cross a split (train/val leaks), with the duplicate rules' defaults."""
    q = parse_query_option(query)
    ds = open_dataset(name)
    report = ds.find_leaks(split_field, model=False if no_embeddings else model, query=q, write=not dry_run)
    if as_json:
        print_report_json(report, name)
        return
    values = ", ".join(f"{v} {n:,}" for v, n in sorted(report.values.items())) or "no sample has one"
    console.print(f"{report.samples:,} samples · {split_field}: {values} · {len(report.leaks):,} samples with a "
                  f"duplicate across {split_field} · {report.seconds:.1f} s")
    if report.note:
        print_caution(report.note)
    if report.leaks:
        table = Table("_id", split_field, "duplicate of", f"its {split_field}", "reason", "counterparts",
                      title=f"leaks across {split_field}")
        for leak in report.leaks[:show]:
            table.add_row(leak["_id"], leak["value"], leak["with"], leak["with_value"], leak["reason"],
                          str(leak["count"]))
        console.print(table)
        if not dry_run:
            console.print(f"all of them: viscurate find {name} '{{\"issues\": \"leak\"}}'")


@commands.command("outliers")
def outliers_cmd(
    name: str = DATASET_ARGUMENT,
    k: int = typer.Option(10, "-k", help="Neighbours the distances are averaged over."),
    model: Optional[str] = EMBEDDER_OPTION,
    show: int = typer.Option(15, "--show", help="Outliers to print."),
    as_json: bool = json_option("the report"),
) -> None:
    """Score uniqueness and isolation from nearest-neighbour distances; flag the outliers."""
    ds = open_dataset(name)
    report = ds.find_outliers(model=model, k=k)
    if as_json:
        print_report_json(report, name)
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


@commands.command("object-duplicates")
def object_duplicates_cmd(
    name: str = DATASET_ARGUMENT,
    field: str = typer.Option("object_analysis", "--field", help="Box list: object_analysis or ground_truth.detections."),
    min_similarity: float = typer.Option(0.92, "--min-similarity", help="Cosine similarity of two boxes' embeddings."),
    model: Optional[str] = EMBEDDER_OPTION,
    show: int = typer.Option(15, "--show", help="Pairs to print."),
    as_json: bool = json_option("the report"),
) -> None:
    """Find boxes whose objects appear again in another image (box-embedding near duplicates)."""
    ds = open_dataset(name)
    report = ds.find_object_duplicates(field=field, model=model, min_similarity=min_similarity)
    if as_json:
        print_report_json(report, name)
        return
    console.print(f"{report.boxes:,} boxes of {report.field} searched ({report.model}) · {report.duplicate_boxes:,} "
                  f"with a twin in another image (similarity >= {report.min_similarity}) in {report.samples:,} "
                  f"samples · {report.seconds:.1f} s")
    if report.examples:
        shown = report.examples[:show]
        files = short_paths(ds, [x for a, _, b, _, _ in shown for x in (a, b)])
        table = Table("image", "box", "twin's image", "box", "similarity", title="the closest pairs")
        for a, i, b, j, sim in shown:
            table.add_row(files.get(a, a), str(i), files.get(b, b), str(j), f"{sim:.3f}")
        console.print(table)
        console.print(f"find them: viscurate find {name} '{{\"issues\": \"object_duplicate\"}}'")


@commands.command("box-label-errors")
def box_label_errors_cmd(
    name: str = DATASET_ARGUMENT,
    field: str = typer.Option("ground_truth.detections", "--field", help="Box list to check."),
    k: int = typer.Option(10, "-k", help="Neighbours (boxes in other images) that vote."),
    min_score: float = typer.Option(0.7, "--min-score", help="Share of neighbours with another class to flag a box."),
    model: Optional[str] = EMBEDDER_OPTION,
    show: int = typer.Option(15, "--show", help="Boxes to print."),
    as_json: bool = json_option("the report"),
) -> None:
    """Find boxes whose most similar boxes in other images carry another class (detection label errors)."""
    report = open_dataset(name).find_box_label_errors(field=field, model=model, k=k, min_score=min_score)
    if as_json:
        print_report_json(report, name)
        return
    console.print(f"{report.boxes:,} boxes of {report.field} in {report.classes:,} classes ({report.model}, k={report.k}) · "
                  f"{len(report.flagged):,} probably mislabeled (score >= {report.min_score}) · {report.seconds:.1f} s")
    if report.flagged:
        table = Table("sample", "box", "labeled", "neighbours say", "score", title="the most doubtful boxes")
        for sid, idx, label, suggested, score in report.flagged[:show]:
            table.add_row(sid, str(idx), label, suggested, f"{score:.2f}")
        console.print(table)
        console.print(f"find them: viscurate find {name} '{{\"issues\": \"mislabeled_box\"}}'")


@commands.command("clusters")
def clusters_cmd(
    name: str = DATASET_ARGUMENT,
    clusters: Optional[int] = typer.Option(None, "--clusters", "-n", help="How many (default: sqrt(samples / 2))."),
    model: Optional[str] = EMBEDDER_OPTION,
    as_json: bool = json_option("the report"),
) -> None:
    """Cluster the embeddings (k-means); members of very small clusters are flagged edge_case."""
    report = open_dataset(name).find_clusters(model=model, clusters=clusters)
    if as_json:
        print_report_json(report, name)
        return
    console.print(f"{report.samples:,} samples in {report.clusters:,} clusters ({report.model}) · "
                  f"{report.edge_cases:,} edge cases in {len(report.edge_clusters):,} small clusters · "
                  f"{report.seconds:.1f} s")
    console.print(bar_table("cluster sizes", {f"cluster {c}": s for c, s in enumerate(report.sizes[:20])},
                             report.samples))


@commands.command("label-errors")
def label_errors_cmd(
    name: str = DATASET_ARGUMENT,
    label_field: str = typer.Option("ground_truth.label", "--field", "-f", help="The field holding each image's class."),
    model: Optional[str] = EMBEDDER_OPTION,
    show: int = typer.Option(20, "--show", help="Errors to print."),
    as_json: bool = json_option("the report"),
) -> None:
    """Probable label errors of a classification dataset (confident learning on embeddings)."""
    report = open_dataset(name).find_label_errors(label_field=label_field, model=model)
    if as_json:
        print_report_json(report, name)
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


@commands.command("evaluate")
def evaluate_cmd(
    name: str = DATASET_ARGUMENT,
    pred_field: str = typer.Option("predictions", "--pred", help="The predicted boxes (predictions, object_analysis, ...)."),
    gt_field: str = typer.Option("ground_truth.detections", "--gt", help="The ground-truth boxes."),
    iou: float = typer.Option(0.5, "--iou", help="IoU at which boxes are marked tp / fp / fn."),
    as_json: bool = json_option("the report"),
) -> None:
    """Predictions against ground truth, the COCO way: mAP, AP50, AP75, per class; marks on every box."""
    report = open_dataset(name).evaluate(pred_field=pred_field, gt_field=gt_field, iou=iou)
    if as_json:
        print_report_json(report, name)
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


@commands.command("analyze")
def analyze_cmd(
    name: str = DATASET_ARGUMENT,
    split_field: str = typer.Option("split", "--split-field", help="The field leaks are looked for across."),
    model: Optional[str] = EMBEDDER_OPTION,
    as_json: bool = json_option("every report"),
) -> None:
    """Every data-quality analysis the dataset has the data for: duplicates, leaks, outliers, clusters,
    label errors."""
    ds = open_dataset(name)
    reports = ds.analyze(split_field=split_field, model=model,
                         progress=None if as_json else (lambda step: console.print(f"[bold]{step}[/] ...")))
    if as_json:
        print_json({k: v.as_dict() for k, v in reports.items()})
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


@commands.command("map")
def map_cmd(
    name: str = DATASET_ARGUMENT,
    model: Optional[str] = EMBEDDER_OPTION,
    query: str = typer.Option("{}", "--query", "-q", help="Only the samples matching this query."),
    as_json: bool = json_option(),
) -> None:
    """Place the samples on a 2-D map from their embeddings (map.x, map.y; the web app's Map tab)."""
    report = open_dataset(name).compute_map(model=model, query=parse_json(query, "the query") or None)
    if as_json:
        print_json(report.as_dict())
        return
    console.print(f"placed {report.samples:,} samples ({report.method}, {report.model}) in {report.seconds:.1f}s")
