"""``viscurate export``: samples to a JSON Lines or a COCO detection file.

    viscurate export pets pets.jsonl --query '{"split": "val"}'
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .context import open_dataset, parse_json
from .options import DATASET_ARGUMENT
from .render import console, print_caution

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()


@commands.command("export")
def export_cmd(
    name: str = DATASET_ARGUMENT,
    out: Path = typer.Argument(..., help="Output file."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl (every field) or coco (boxes)."),
    query: str = typer.Option("{}", "--query", "-q", help="Only the samples matching this query."),
    field: Optional[str] = typer.Option(None, "--field", help="coco: the boxes to write (default: "
                                        "ground_truth.detections if a sample has some, else object_analysis)."),
) -> None:
    """Write samples to a file: JSON Lines documents or a COCO detection file."""
    result = open_dataset(name).export(out, format=fmt, query=parse_json(query, "the query") or None, field=field)
    counts = {k: v for k, v in result.items() if isinstance(v, int) and k != "corrupt_left_out"}
    console.print(f"wrote {out}: " + ", ".join(f"{v:,} {k}" for k, v in counts.items())
                  + (f" (boxes of {result['field']})" if result.get("field") else ""), highlight=False)
    if result.get("corrupt_left_out"):
        print_caution(f"left out {result['corrupt_left_out']:,} corrupt sample(s) (no size to write): "
                      f"viscurate find {name} '{{\"issues\": \"corrupt\"}}'", highlight=False)
