"""What every command needs from the command line around it: the global options (``--home``,
``--wait``), the dataset they open, and JSON arguments read with a helpful error.

    ds = open_dataset("pets")  # in the workspace and with the lock wait the global options chose
    q = parse_json('{"width": {"$gt": 100}}', "the query")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import orjson

from ..errors import QueryError


class State:
    """The global options of this run, set by the app's callback before any command runs."""
    home: Optional[Path] = None
    wait: Optional[float] = None


state = State()


def open_dataset(name: str):
    """The dataset ``name`` of the workspace ``--home`` chose, waiting ``--wait`` seconds for its lock."""
    from ..dataset import Dataset  # heavy: only the commands that open a dataset pay for it
    return Dataset(name, state.home, lock_timeout=state.wait)


def parse_json(text: str, what: str) -> Any:
    """``text`` read as JSON; ``what`` names the argument in the error a user sees.

    >>> parse_json('{"width": 5}', "the query")
    {'width': 5}
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise QueryError(f"{what} is not valid JSON: {e}. Example: '{{\"width\": {{\"$gt\": 100}}}}'") from None


def parse_query_option(text: Optional[str]) -> Any:
    """The query of a ``--query`` option; None when the option is not given.

    >>> parse_query_option(None), parse_query_option('{"split": "val"}')
    (None, {'split': 'val'})
    """
    return parse_json(text, "the query") if text else None
