"""JSON Lines: one sample document per line, every field as the catalog returns it.

The plainest exchange format there is: any tool reads it, ``jq`` filters it, and
``Dataset.add_documents`` reads it back (``_id`` included, so a round trip keeps identities).
``Dataset.export(path, format="jsonl")`` writes it with :func:`write_jsonl`.

>>> reviewed = {"tags": "reviewed"}
>>> write_jsonl(ds.iter(reviewed), "samples.jsonl", total=ds.count(reviewed))      # doctest: +SKIP
{'samples': 120}
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import orjson

from ..files import atomic_file

__all__ = ["write_jsonl"]


def write_jsonl(docs: Iterable[dict], out_path: str | os.PathLike, *, total: int,
                progress: Any = None) -> dict[str, int]:
    """Write the sample documents ``docs`` to ``out_path`` (atomically: a reader never sees half a
    file). ``progress(done, total)`` is called as it goes (``total``: how many ``docs`` there are).
    Returns ``{"samples": n}``."""
    out = Path(out_path)
    n = 0
    with atomic_file(out) as f:  # the user's usual permissions, not a temporary file's 0600
        for n, doc in enumerate(docs, 1):
            f.write(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
            f.write(b"\n")
            if progress is not None and (n % 500 == 0 or n == total):
                progress(n, total)
    return {"samples": n}
