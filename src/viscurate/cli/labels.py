"""Commands that run the models: ``label``, ``embed``, ``draw`` and the ``models`` list.

    viscurate label pets --models detector,embedder
    viscurate draw pets <_id> -o labels.png
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import ViscurateError
from .context import open_dataset, parse_query_option
from .options import DATASET_ARGUMENT, NO_PROGRESS_OPTION, QUERY_OPTION, THREADS_OPTION, batch_size_option, json_option
from .render import console, print_caution, print_json

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()


def _print_label_report(title: str, report, as_json: bool, dataset: str) -> None:
    """A labelling run's report: as JSON, or as a table with the time each model took and what to look at."""
    summary = dict(report.as_dict(), dataset=dataset)
    if as_json:
        print_json(summary)
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
        print_caution(f"{report.missing:,} skipped: file missing (flagged 'missing'; `viscurate ingest` "
                      f"again clears the flag when the file is back, --prune removes them)")
    if report.failed:
        print_caution(f"{report.failed} image(s) could not be labelled; see their label_error: "
                      f"viscurate find {dataset} '{{\"label_error\": {{\"$exists\": true}}}}'")


@commands.command("label")
def label_cmd(
    name: str = DATASET_ARGUMENT,
    models: Optional[str] = typer.Option(None, "--models", "-m", help="Roles and/or model names, comma-separated: "
                                         "detector,classifier,embedder,face,pose (default: all of them), or "
                                         "names from `viscurate models`."),
    query: Optional[str] = QUERY_OPTION,
    force: bool = typer.Option(False, "--force", help="Label again what the current models labelled already."),
    batch_size: int = batch_size_option(16),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Processes (default: one per core, at most "
                                          "8; 0: in this process)."),
    threads: Optional[int] = THREADS_OPTION,
    no_progress: bool = NO_PROGRESS_OPTION,
    as_json: bool = json_option("the report"),
) -> None:
    """Auto-label a dataset with the offline models (objects with label quality, tags, embeddings, faces,
    poses); a re-run only labels what the current models have not."""
    q = parse_query_option(query)
    report = open_dataset(name).label(models=models, query=q, force=force, batch_size=batch_size, workers=workers,
                                  threads=threads, progress=not no_progress and not as_json)
    _print_label_report(f"label {name}", report, as_json, name)


@commands.command("embed")
def embed_cmd(
    name: str = DATASET_ARGUMENT,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model (default: the default "
                                        "embedder; see `viscurate models`)."),
    boxes: bool = typer.Option(False, "--boxes", help="Also embed the crops of the samples' boxes."),
    query: Optional[str] = QUERY_OPTION,
    force: bool = typer.Option(False, "--force", help="Embed again the samples that have a vector already."),
    batch_size: int = batch_size_option(16),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Processes (default: one per core, "
                                          "at most 8)."),
    threads: Optional[int] = THREADS_OPTION,
    no_progress: bool = NO_PROGRESS_OPTION,
    as_json: bool = json_option("the report"),
) -> None:
    """Store image embeddings for the samples that lack one of this model."""
    q = parse_query_option(query)
    report = open_dataset(name).embed(model, boxes=boxes, query=q, force=force, batch_size=batch_size, workers=workers,
                                  threads=threads, progress=not no_progress and not as_json)
    _print_label_report(f"embed {name}", report, as_json, name)


@commands.command("draw")
def draw_cmd(
    name: str = DATASET_ARGUMENT,
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
    ds = open_dataset(name)
    try:
        ds.draw(sample_id, output, show=layers, max_side=max_side, min_confidence=min_confidence)
    except ValueError as e:
        raise ViscurateError(str(e)) from None
    console.print(f"wrote {output}")


@commands.command("models")
def models_cmd(
    role: Optional[str] = typer.Option(None, "--role", help="Only the models that can play this role."),
    as_json: bool = json_option(),
) -> None:
    """The models viscurate can run (all offline): name, version, role, runtime, where the weights come
    from, licence."""
    from ..models import registry
    specs = registry.list_models(role=role)
    rows = [registry.spec_dict(s) for s in specs]
    if as_json:
        print_json(rows)
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
