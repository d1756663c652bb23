"""The ``viscurate`` command line. Each command maps to one library call, so the CLI, the Python API
and the server never diverge. This module holds the app, its global options and the list of commands;
the commands live in one module per group (datasets, ingest, query, curation, labels, analyses, export,
serve, selection), and the output they share (tables, JSON, notes) in ``render``.

    viscurate ingest ~/photos --dataset pets
    viscurate find pets '{"width": {"$gt": 1000}}' --page 2
    viscurate info pets
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.models import CommandInfo

from ..errors import ViscurateError
from . import analyses, curation, datasets, export, ingest, labels, query, selection, serve
from .context import state
from .render import err_console

app = typer.Typer(
    name="viscurate",
    help="viscurate: profile, label, clean, search and curate image datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    home: Optional[Path] = typer.Option(None, "--home", help="Workspace directory (default: $VISCURATE_HOME, "
                                        "else the user data directory).", show_default=False),
    wait: Optional[float] = typer.Option(None, "--wait", help="Seconds to wait for a dataset another process "
                                         "is using (default 10, or $VISCURATE_LOCK_TIMEOUT).", show_default=False),
) -> None:
    """Options of every command, read before the command runs (``hoist_global_options`` lets them stand
    anywhere on the line)."""
    state.home = home
    state.wait = wait


#: The order ``viscurate --help`` lists the commands in (roughly a dataset's life), whatever their module.
COMMAND_ORDER = (
    "create", "list", "delete", "rename", "ingest", "find", "get", "count", "update", "tag", "untag", "info",
    "label", "embed", "duplicates", "calibrate", "leaks", "outliers", "object-duplicates", "box-label-errors",
    "clusters", "label-errors", "import", "import-coco", "import-folders", "evaluate", "analyze", "similar", "map",
    "select", "curation-report", "autotag", "split", "fit-head", "export",
    "formats", "draw", "models", "demo", "serve",
)


def _help_position(command: CommandInfo) -> int:
    """Where ``viscurate --help`` lists a command: as in COMMAND_ORDER, one missing from it last."""
    return COMMAND_ORDER.index(command.name) if command.name in COMMAND_ORDER else len(COMMAND_ORDER)


def _register_commands() -> None:
    for group in (datasets, ingest, query, curation, labels, analyses, selection, export, serve):
        app.registered_commands += group.commands.registered_commands
    app.registered_commands.sort(key=_help_position)
    app.add_typer(curation.views, name="view")
    app.add_typer(serve.api_keys, name="api-key")


_register_commands()


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
    """The ``viscurate`` console script: a library error is a one-line message and exit status 2."""
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

