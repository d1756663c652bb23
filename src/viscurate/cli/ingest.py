"""Commands that bring images in: ``ingest`` (folders, files, archives, path lists) and the imports of
labeled datasets (``import-coco``, ``import-folders``).

    viscurate ingest ~/photos --dataset pets --threshold dark=0.1
    viscurate import-coco pets instances.json --images ~/coco/val2017
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import ViscurateError
from .context import open_dataset, state
from .options import NO_PROGRESS_OPTION, batch_size_option, json_option
from .render import console, human_bytes, print_caution, print_json

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()


@commands.command("ingest")
def ingest_cmd(
    # (str, not Path: a Path would turn https://host/a.jpg into https:/host/a.jpg)
    paths: List[str] = typer.Argument(..., help="Folders, image files, zip/tar archives, path lists (.txt), image "
                                      "URLs, URL lists (.txt) or URL tables (.csv/.parquet with a 'url' column)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset to add to (created if missing)."),
    include: Optional[List[str]] = typer.Option(None, "--include", "-i", help="Glob of files to take (repeatable)."),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", "-x", help="Glob of files to skip (repeatable)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Processes (default: all cores)."),
    batch_size: int = batch_size_option(256),
    threshold: Optional[List[str]] = typer.Option(None, "--threshold", "-t", help="Issue threshold NAME=VALUE, "
                                                  "e.g. dark=0.1 (repeatable; see docs/profile.md)."),
    prune: bool = typer.Option(False, "--prune", help="Remove the samples whose file is gone (default: flag "
                               "them 'missing')."),
    every_frames: Optional[int] = typer.Option(None, "--every-frames", help="Videos: take every N-th frame."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Videos: take N frames per second (default 1 when "
                                        "no video option is given)."),
    scenes: bool = typer.Option(False, "--scenes", help="Videos: take the first frame of every scene (hard cuts); "
                                "combines with --fps or --every-frames."),
    scene_threshold: Optional[float] = typer.Option(None, "--scene-threshold", help="Videos: mean absolute luma "
                                                    "difference (0-255) that makes a cut (default 30)."),
    allow_private_urls: bool = typer.Option(False, "--allow-private-urls", help="URLs: let downloads reach "
                                            "loopback, private and link-local addresses (refused by default)."),
    resize: Optional[int] = typer.Option(None, "--resize", min=16, help="URLs: store downloaded images scaled "
                                         "down to this longest side (pixels)."),
    ignore_opt_out: bool = typer.Option(False, "--ignore-opt-out", help="URLs: also take images whose server "
                                        "says X-Robots-Tag: noai, noimageai, noindex or noimageindex."),
    concurrency: int = typer.Option(64, "--concurrency", min=1, help="URLs: downloads in flight."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="URLs: seconds one download attempt may take."),
    retries: int = typer.Option(2, "--retries", min=0, help="URLs: retries after a timeout, a 5xx or a 429."),
    no_progress: bool = NO_PROGRESS_OPTION,
    as_json: bool = json_option("the report"),
) -> None:
    """Profile and catalogue images; a re-run only adds new or changed files, and flags the samples whose
    file is gone."""
    from ..dataset import Dataset
    from ..sources.resolve import check_inputs
    from ..media.video import frame_sampling
    thresholds = _thresholds(threshold or [])
    options = {"every_frames": every_frames, "fps": fps, "scenes": scenes or None, "scene_threshold": scene_threshold}
    video = frame_sampling({k: v for k, v in options.items() if v is not None})  # (raises on a bad option)
    checked = check_inputs(paths)  # before the dataset is created: a wrong input writes nothing
    ds = Dataset.create(dataset, state.home, exist_ok=True, lock_timeout=state.wait)
    download = {"resize": resize, "honour_opt_out": not ignore_opt_out, "concurrency": concurrency,
                "timeout": timeout, "retries": retries}
    report = ds.add_images(checked, include=include, exclude=exclude, workers=workers, batch_size=batch_size,
                           progress=not no_progress and not as_json, thresholds=thresholds, prune=prune, video=video,
                           allow_private_urls=allow_private_urls, download=download)
    summary = {
        "dataset": dataset, "added": report.added, "changed": report.changed, "unchanged": report.unchanged,
        "failed": report.failed, "unsupported": report.unsupported, "missing": report.missing,
        "pruned": report.pruned, "restored": report.restored, "files": report.files, "bytes": report.bytes,
        "seconds": round(report.seconds, 3), "images_per_s": round(report.images_per_s, 1),
        "mb_per_s": round(report.mb_per_s, 2), "videos": report.videos, "frames": report.frames,
        "downloaded": report.downloaded, "download_failed": report.download_failed,
    }
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"ingest into {dataset}", show_header=False)
    for k in ("added", "changed", "unchanged", "failed", "files"):
        table.add_row(k, f"{summary[k]:,}")
    for k in ("downloaded", "download_failed", "videos", "frames", "unsupported", "missing", "pruned", "restored"):
        if summary[k]:
            table.add_row(k, f"{summary[k]:,}")
    table.add_row("data", human_bytes(report.bytes))
    table.add_row("time", f"{report.seconds:.1f} s ({summary['images_per_s']:,} images/s, {summary['mb_per_s']} MB/s)")
    console.print(table)
    if report.failed:
        print_caution(f"{report.failed} file(s) could not be decoded; they are samples flagged "
                      f"'corrupt': viscurate find {dataset} '{{\"issues\": \"corrupt\"}}'")
    if report.unsupported:
        print_caution(f"{report.unsupported} file(s) are valid but in an encoding viscurate cannot decode; "
                      f"they are samples flagged 'unsupported', with the reason: "
                      f"viscurate find {dataset} '{{\"issues\": \"unsupported\"}}'")
    if report.download_failed:
        print_caution(f"{report.download_failed} URL(s) gave no image; their samples carry the issue "
                      f"'download_failed' and download.status says why: viscurate find {dataset} "
                      f"'{{\"issues\": \"download_failed\"}}' (a re-run retries them)")
    if report.missing and not report.pruned:
        print_caution(f"{report.missing} file(s) are gone; their samples are flagged 'missing' "
                      f"(viscurate find {dataset} '{{\"issues\": \"missing\"}}'); run again with --prune "
                      f"to remove them")


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


@commands.command("import-coco")
def import_coco_cmd(
    name: str = typer.Argument(..., help="Dataset name (created if it does not exist)."),
    coco_json: Path = typer.Argument(..., help="A COCO detection file (instances JSON)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder the file names are relative to "
                                          "(default: the JSON's folder)."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", help="A COCO results file to store as "
                                               "predicted boxes."),
    field: str = typer.Option("predictions", "--field", help="Where the predictions go."),
    as_json: bool = json_option("the counts"),
) -> None:
    """Ingest the images of a COCO detection file, with its boxes as ground truth (and a model's results)."""
    from ..dataset import Dataset
    from ..formats.coco import check_coco_inputs
    from ..store.workspace import Workspace
    if Workspace(state.home).exists(name):
        ds = open_dataset(name)  # (the import checks its inputs before it writes)
    else:
        check_coco_inputs(coco_json, images=images, predictions=predictions)  # a wrong input creates nothing
        ds = Dataset.create(name, state.home)
    counts = ds.import_coco(coco_json, images=images, predictions=predictions, field=field, progress=not as_json)
    if as_json:
        print_json(counts)
        return
    for what, c in counts.items():
        console.print(f"{what}: {c['boxes']:,} boxes on {c['samples']:,} images"
                      + (f" · [yellow]{c['missing']:,} image files not found[/]" if c["missing"] else ""))


@commands.command("import-folders")
def import_folders_cmd(
    name: str = typer.Argument(..., help="Dataset name (created if it does not exist)."),
    root: Path = typer.Argument(..., help="ROOT/<class>/images, or ROOT/<split>/<class>/images."),
    as_json: bool = json_option("the counts"),
) -> None:
    """Ingest an image-classification folder tree: the class from each image's folder, the split above it."""
    from ..dataset import Dataset
    from ..formats.classification import check_classification_root
    from ..store.workspace import Workspace
    check_classification_root(root)  # before the dataset is created: a wrong input creates nothing
    ds = open_dataset(name) if Workspace(state.home).exists(name) else Dataset.create(name, state.home)
    report = ds.import_classification(root, progress=not as_json)
    if as_json:
        print_json(report.as_dict())
        return
    splits = ", ".join(f"{k} {v:,}" for k, v in sorted(report.splits.items()))
    console.print(f"{report.images:,} labeled images, {report.classes:,} classes"
                  + (f" · splits: {splits}" if splits else "")
                  + (f" · {report.unlabeled:,} outside any class folder" if report.unlabeled else "")
                  + (f" · [yellow]{report.failed:,} could not be decoded (kept, flagged corrupt)[/]" if report.failed else ""))
