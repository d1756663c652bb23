"""Commands that edit samples or keep sets of them: ``update``, ``tag``, ``untag`` and the ``view``
group (saved views and slices).

    viscurate tag pets '{"issues": "blurry"}' review
    viscurate view slice pets frozen-val '{"split": "val"}'
"""
from __future__ import annotations

import os
from typing import List

import orjson
import typer
from rich.table import Table

from ..errors import ViscurateError
from .context import open_dataset, parse_json
from .options import json_option
from .render import console, print_json, print_warnings

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()


@commands.command("update")
def update_cmd(name: str, query: str, changes: str) -> None:
    """Apply MongoDB update operators to matching samples, e.g. '{"$set": {"split": "val"}}'."""
    n = open_dataset(name).update(parse_json(query, "the query"), parse_json(changes, "the update"))
    console.print(f"updated {n:,} sample(s)")


@commands.command("tag")
def tag_cmd(name: str, query: str, tags: List[str]) -> None:
    """Add tags to the samples matching a query."""
    ds, q = open_dataset(name), parse_json(query, "the query")
    print_warnings(ds.check_query(q))
    matched = ds.count(q)
    n = ds.tag(q, *tags)
    had = matched - n
    names = ", ".join(repr(t) for t in tags)
    console.print(f"tagged {n:,} sample(s)" + (f"; {had:,} already had {names}" if had > 0 else ""), highlight=False)


@commands.command("untag")
def untag_cmd(name: str, query: str, tags: List[str]) -> None:
    """Remove tags from the samples matching a query."""
    n = open_dataset(name).untag(parse_json(query, "the query"), *tags)
    console.print(f"untagged {n:,} sample(s)")


#: The ``viscurate view`` group; the app adds it under that name.
views = typer.Typer(help="Saved views (queries) and slices (frozen sets of samples).", no_args_is_help=True)


@views.command("save")
def view_save(name: str, view: str, query: str = typer.Argument(..., help="The MongoDB query.")) -> None:
    """Save a query as a view: it is evaluated again each time it is opened."""
    open_dataset(name).save_view(view, parse_json(query, "the query"), by=os.environ.get("USER"))
    console.print(f"saved view {view!r}")


@views.command("list")
def view_list(name: str, as_json: bool = json_option()) -> None:
    """Saved views and slices."""
    ds = open_dataset(name)
    views, slices = ds.views(), ds.slices()
    if as_json:
        print_json({"views": views, "slices": slices})
        return
    table = Table("kind", "name", "query / samples", "created")
    for v, spec in views.items():
        table.add_row("view", v, orjson.dumps(spec["query"]).decode(), f"{spec.get('created_at', '')} {spec.get('created_by') or ''}")
    for sl, n in slices.items():
        table.add_row("slice", sl, f"{n:,} samples", "")
    console.print(table)


@views.command("delete")
def view_delete(name: str, view: str) -> None:
    if not open_dataset(name).delete_view(view):
        raise ViscurateError(f"no view named {view!r}")
    console.print(f"deleted view {view!r}")


@views.command("slice")
def view_slice(name: str, slice_name: str, query: str = typer.Argument(..., help="The samples to freeze.")) -> None:
    """Freeze the samples matching a query as a slice ({"slices": NAME} finds them later)."""
    n = open_dataset(name).save_slice(slice_name, parse_json(query, "the query"))
    console.print(f"slice {slice_name!r}: {n:,} samples")
