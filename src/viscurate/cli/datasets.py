"""Commands on whole datasets: ``create``, ``list``, ``info``, ``rename``, ``delete`` and the ``demo``.

    viscurate create pets
    viscurate info pets --json
"""
from __future__ import annotations

import sys

import typer
from rich.table import Table

from .context import open_dataset, state
from .options import DATASET_ARGUMENT, json_option
from .render import console, print_info, print_json

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()


@commands.command("create")
def create_cmd(name: str = DATASET_ARGUMENT) -> None:
    """Create an empty dataset."""
    from ..dataset import Dataset
    ds = Dataset.create(name, state.home, lock_timeout=state.wait)
    console.print(f"created dataset [bold]{name}[/] in {ds.directory}")


@commands.command("list")
def list_cmd(as_json: bool = json_option()) -> None:
    """List the datasets of the workspace."""
    from ..dataset import Dataset
    from ..store.workspace import Workspace
    names = Dataset.list(state.home)
    if as_json:
        print_json(names)
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


@commands.command("delete")
def delete_cmd(name: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete a dataset (its catalog, indexes, thumbnails; never your image files)."""
    ds = open_dataset(name)
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete dataset {name!r} and everything under {ds.directory}?", abort=True)
    ds.delete()
    console.print(f"deleted dataset [bold]{name}[/]")


@commands.command("rename")
def rename_cmd(name: str, new_name: str) -> None:
    """Rename a dataset."""
    open_dataset(name).rename(new_name)
    console.print(f"renamed [bold]{name}[/] to [bold]{new_name}[/]")


@commands.command("info")
def info_cmd(name: str, as_json: bool = json_option()) -> None:
    """Counts, issues, formats, sizes and quality of a dataset, drawn as bars."""
    info = open_dataset(name).info()
    if as_json:
        print_json(info)
        return
    print_info(info)


@commands.command("demo")
def demo_cmd(name: str = typer.Option("demo", "--name", help="Dataset name for the demo.")) -> None:
    """Build a small dataset from the photos bundled with scikit-image and scikit-learn and show what
    viscurate found in it."""
    from .demo import run_demo
    run_demo(name, state.home, console)
