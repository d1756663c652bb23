"""JSON Lines: one sample document per line, every field as the catalog returns it.

The plainest exchange format there is: any tool reads it, ``jq`` filters it, and
``Dataset.add_documents`` reads it back (``_id`` included, so a round trip keeps identities).

>>> export_jsonl(ds, "samples.jsonl", query={"tags": "reviewed"})                  # doctest: +SKIP
{'samples': 120}
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..files import atomic_file

if TYPE_CHECKING:
    from ..dataset import Dataset

__all__ = ["export_jsonl"]


def export_jsonl(ds: "Dataset", out_path: str | os.PathLike, *, query: dict | None = None,
                 progress: Any = None) -> dict[str, int]:
    """Write the samples matching ``query`` to ``out_path`` (atomically: a reader never sees half a
    file). ``progress(done, total)`` is called as it goes. Returns ``{"samples": n}``."""
    out = Path(out_path)
    total = ds.count(query)
    n = 0
    with atomic_file(out) as f:  # the user's usual permissions, not a temporary file's 0600
        for n, doc in enumerate(ds.iter(query), 1):
            f.write(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
            f.write(b"\n")
            if progress is not None and (n % 500 == 0 or n == total):
                progress(n, total)
    return {"samples": n}
