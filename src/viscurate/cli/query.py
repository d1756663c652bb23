"""Commands that read samples: ``find`` (a page at a time), ``get``, ``count`` and ``similar``.

    viscurate find pets '{"width": {"$gt": 1000}}' --page 2 --sort width:-1
    viscurate similar pets ./cat.jpg -k 5
"""
from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from ..errors import ViscurateError
from .context import open_dataset, parse_json
from .options import DATASET_ARGUMENT, json_option
from .render import console, page_title, print_json, print_warnings, samples_table

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()


DEFAULT_COLUMNS = ["_id", "filepath", "width", "height", "format", "issues"]


@commands.command("find")
def find_cmd(
    name: str = DATASET_ARGUMENT,
    query: str = typer.Argument("{}", help='MongoDB query, e.g. \'{"object_analysis.name": "cat"}\'.'),
    page: int = typer.Option(1, "--page", "-p", help="Page number (1-based)."),
    page_size: int = typer.Option(25, "--page-size", help="Samples per page."),
    sort: Optional[List[str]] = typer.Option(None, "--sort", "-s", help="FIELD or FIELD:-1 (repeatable)."),
    fields: Optional[str] = typer.Option(None, "--fields", "-f", help="Comma-separated columns to show."),
    as_json: bool = json_option("the page ({length, page, results})"),
) -> None:
    """Search a dataset with the MongoDB query language, a page at a time."""
    q = parse_json(query, "the query")
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
    res = open_dataset(name).find(q, page=page, page_size=page_size, sort=sort_spec, projection=projection)
    print_warnings(res.get("warnings", []))
    if as_json:
        print_json(res)
        return
    title = page_title(res["length"], page, page_size)
    if page > 1 and not res["results"]:
        console.print(title, highlight=False)
        return
    console.print(samples_table(res["results"], cols, title, console.width))


@commands.command("get")
def get_cmd(name: str, sample_id: str) -> None:
    """Print one sample document as JSON."""
    print_json(open_dataset(name).get(sample_id))


@commands.command("count")
def count_cmd(name: str, query: str = typer.Argument("{}")) -> None:
    """Count the samples matching a query."""
    ds, q = open_dataset(name), parse_json(query, "the query")
    print_warnings(ds.check_query(q))
    typer.echo(ds.count(q))


@commands.command("similar")
def similar_cmd(
    name: str = DATASET_ARGUMENT,
    target: str = typer.Argument(..., help="A sample id, or the path of an image file (embedded on the fly)."),
    k: int = typer.Option(10, "-k", help="How many."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Embedding model (default: the default "
                                        "embedder, when `viscurate embed` stored it)."),
    exact: bool = typer.Option(False, "--exact", help="Scan every vector even above 100,000 (slower, exact)."),
    as_json: bool = json_option(),
) -> None:
    """The samples most similar to a sample or an image (cosine similarity of embeddings)."""
    if k < 1:
        raise ViscurateError("-k must be at least 1")
    hits = open_dataset(name).similar(target, k, model=model, exact=exact)
    if as_json:
        print_json(hits)
        return
    table = Table("#", "_id", "similarity", "filepath", title=f"most similar to {target}")
    for n, h in enumerate(hits, 1):
        table.add_row(str(n), h["_id"], f"{h['similarity']:.4f}", str(h.get("filepath") or ""))
    console.print(table)
