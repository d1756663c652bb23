"""Arguments and options that several commands share: one definition each, so that the same flag has
the same name, default and help everywhere.

    @commands.command("clusters")
    def clusters_cmd(name: str = DATASET_ARGUMENT, model: Optional[str] = EMBEDDER_OPTION,
                     as_json: bool = json_option("the report")) -> None: ...
"""
from __future__ import annotations

from typing import Any

import typer

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
