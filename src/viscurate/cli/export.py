"""``viscurate import`` and ``viscurate export``: labeled datasets in and out, in every format of
``viscurate formats`` (COCO, YOLO, VOC, CVAT, Label Studio, Hugging Face, CSV, Parquet, URL lists, image
folders; JSON Lines out).

    viscurate import pets data.yaml                       # the format guessed: YOLO
    viscurate import pets export.json --format labelstudio --by annotators
    viscurate export pets out/ --format yolo --slice to-label --media symlink
    viscurate export pets pets.jsonl --query '{"split": "val"}'
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .context import open_dataset, parse_json, state
from .options import DATASET_ARGUMENT, json_option
from .render import console, print_caution, print_json

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()

_OPTION_HELP = ("A format's own option, KEY=VALUE (repeatable; the value read as JSON when it parses): "
                "e.g. boxes_as=annotations, document_root=/data, by_class=true (docs/formats.md).")


def _format_options(pairs: list[str]) -> dict:
    """``["by_class=true", "document_root=/data"]`` as ``{"by_class": True, "document_root": "/data"}``."""
    import json
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise typer.BadParameter(f"{pair!r}: write KEY=VALUE", param_hint="--option")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@commands.command("formats")
def formats_cmd(as_json: bool = json_option("the formats")) -> None:
    """The label formats import and export know."""
    from ..formats.registry import FORMATS
    rows = [{"format": f.name, "import": f.reads, "export": f.writes, "holds": list(f.holds), "what": f.help}
            for f in FORMATS.values()]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        ways = "/".join(w for w in ("import", "export") if r[w])
        console.print(f"[bold]{r['format']:<12}[/] {ways:<14} {r['what']}", highlight=False)


@commands.command("import")
def import_cmd(
    name: str = typer.Argument(..., help="Dataset name (created if it does not exist)."),
    path: Path = typer.Argument(..., help="The labeled dataset: a file (COCO JSON, data.yaml, CVAT XML, "
                                "Label Studio JSON, CSV, Parquet) or its folder."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="The format (default: guessed from PATH; "
                                      "`viscurate formats` lists them)."),
    field: Optional[str] = typer.Option(None, "--field", help="Where the boxes go (default: the field a "
                                        "table export names, else ground_truth.detections)."),
    label_field: str = typer.Option("ground_truth.label", "--label-field", help="Where image classes go."),
    images: Optional[Path] = typer.Option(None, "--images", help="The folder relative image names are under "
                                          "(default: what the format says)."),
    by: Optional[str] = typer.Option(None, "--by", help="Who made these labels, for the edit audit trail."),
    option: list[str] = typer.Option([], "--option", "-o", help=_OPTION_HELP),
    as_json: bool = json_option("the counts"),
) -> None:
    """Ingest a labeled dataset and store its labels (classes keep their ids and order)."""
    from ..dataset import Dataset
    from ..formats.registry import get_format, guess_format
    from ..store.workspace import Workspace
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    fmt_name = get_format(fmt or guess_format(path)).name  # a wrong input creates no dataset
    ds = open_dataset(name) if Workspace(state.home).exists(name) else Dataset.create(name, state.home)
    report = ds.import_labels(path, format=fmt_name, field=field, label_field=label_field, images=images, by=by,
                              progress=not as_json, **_format_options(option))
    if as_json:
        print_json(report)
        return
    console.print(f"{report['format']}: {report['images']:,} images, {report['samples']:,} samples labeled, "
                  f"{report['boxes']:,} boxes, {report['classes']:,} classes"
                  + (f", {report['matched_by_id']:,} matched by sample id" if report["matched_by_id"] else "")
                  + (f", {report['changed']:,} changed" if report["changed"] else ""), highlight=False)
    if report["missing"]:
        print_caution(f"{report['missing']:,} image file(s) not found (pass --images FOLDER if they live "
                      "elsewhere)", highlight=False)
    if report["skipped"]:
        print_caution("not imported (no place for them): " + ", ".join(f"{v:,} {k}" for k, v in report["skipped"].items()),
                      highlight=False)


@commands.command("export")
def export_cmd(
    name: str = DATASET_ARGUMENT,
    out: Path = typer.Argument(..., help="Output file or folder."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl (every field) or a label format "
                            "(`viscurate formats`): coco, yolo, voc, cvat, labelstudio, huggingface, csv, parquet, "
                            "urllist, imagefolder."),
    query: str = typer.Option("{}", "--query", "-q", help="Only the samples matching this query."),
    view: Optional[str] = typer.Option(None, "--view", help="Only the samples of this saved view."),
    slice_: Optional[str] = typer.Option(None, "--slice", help="Only the samples of this slice."),
    field: Optional[str] = typer.Option(None, "--field", help="The boxes to write (default: "
                                        "ground_truth.detections if a sample has some, else object_analysis)."),
    media: Optional[str] = typer.Option(None, "--media", help="copy, symlink or none: the images, where the "
                                        "format's layout holds them."),
    option: list[str] = typer.Option([], "--option", "-o", help=_OPTION_HELP),
) -> None:
    """Write samples out: JSON Lines documents or a label format."""
    result = open_dataset(name).export(out, format=fmt, query=parse_json(query, "the query") or None, view=view,
                                       slice=slice_, field=field, media=media, progress=True,
                                       **_format_options(option))
    counts = {k: v for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)
              and k != "corrupt_left_out"}
    console.print(f"wrote {out}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items())
                  + (f" (boxes of {result['field']})" if result.get("field") else ""), highlight=False)
    if result.get("dropped"):
        print_caution("the format has no place for: " + ", ".join(f"{v:,} {k}" for k, v in result["dropped"].items()),
                      highlight=False)
    if result.get("corrupt_left_out"):
        print_caution(f"left out {result['corrupt_left_out']:,} corrupt sample(s) (no size to write): "
                      f"viscurate find {name} '{{\"issues\": \"corrupt\"}}'", highlight=False)
