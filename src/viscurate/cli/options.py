"""Arguments and options that several commands share: one definition each, so that the same flag has
the same name, default and help everywhere.

    @commands.command("clusters")
    def clusters_cmd(name: str = DATASET_ARGUMENT, model: Optional[str] = EMBEDDER_OPTION,
                     as_json: bool = json_option("the report")) -> None: ...
"""
from __future__ import annotations

from typing import Any, Optional

import typer

from ..errors import ViscurateError

DATASET_ARGUMENT = typer.Argument(..., help="Dataset name.")
EMBEDDER_OPTION = typer.Option(None, "--model", "-m", help="Embedding model (default: the default embedder).")
QUERY_OPTION = typer.Option(None, "--query", "-q", help="Only the samples matching this MongoDB query.")
# a duplicate search looks for pairs among these samples only, not for the copies of these samples
SEARCH_AMONG_OPTION = typer.Option(None, "--query", "-q", help="Only among the samples matching this query.")
NO_EMBEDDINGS_OPTION = typer.Option(False, "--no-embeddings", help="Hashes only.")
DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="Report only; store nothing.")
THREADS_OPTION = typer.Option(None, "--threads", help="CPU threads per model (default: cores / workers).")
NO_PROGRESS_OPTION = typer.Option(False, "--no-progress", help="No progress bar.")


def json_option(what: str = "") -> Any:
    """The ``--json`` flag of a command: print ``what`` as JSON instead of tables.

    >>> json_option().help, json_option("the report").help
    ('Print JSON.', 'Print the report as JSON.')
    """
    return typer.Option(False, "--json", help=f"Print {what} as JSON." if what else "Print JSON.")


def batch_size_option(default: int) -> Any:
    """The ``--batch-size`` option of a command that writes to the catalog in transactions."""
    return typer.Option(default, "--batch-size", help="Samples per catalog transaction.")


def parse_ids_or_query(text: Optional[str], what: str) -> "list[str] | dict | None":
    """The samples an ``IDS_OR_QUERY`` option names: a MongoDB query when the text starts with ``{``,
    else comma-separated sample ids; ``what`` names the option in the error a user sees.

    >>> parse_ids_or_query("a1, b2,,c3", "--positive"), parse_ids_or_query('{"tags": "x"}', "--positive")
    (['a1', 'b2', 'c3'], {'tags': 'x'})
    >>> parse_ids_or_query(None, "--negative") is None
    True
    """
    if text is None:
        return None
    text = text.strip()
    if text.startswith("{"):
        from .context import parse_json
        return parse_json(text, what)
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ViscurateError(f"{what} names no sample: give comma-separated ids (a1b2,c3d4) or a query "
                             f"starting with {{ ('{{\"tags\": \"cat\"}}')")
    return ids


def parse_assignments(text: Optional[str], what: str) -> "dict[str, float] | None":
    """``name=number`` pairs, comma-separated (``--weights``, ``--ratios``), as a dict.

    >>> parse_assignments("train=0.8, val=0.1,test=0.1", "--ratios")
    {'train': 0.8, 'val': 0.1, 'test': 0.1}
    """
    if text is None:
        return None
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError(part)
            out[key.strip()] = float(value)
        except ValueError:
            raise ViscurateError(f"{what} takes name=number pairs separated by commas (e.g. train=0.8,val=0.2), "
                                 f"not {part!r}") from None
    if not out:
        raise ViscurateError(f"{what} is empty: give name=number pairs separated by commas")
    return out
