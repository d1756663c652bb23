"""How many cores this process may use: what pools, model threads and the server size themselves by."""
from __future__ import annotations

import os

__all__ = ["cpu_count"]


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask), else ``os.cpu_count()``.

    >>> cpu_count() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
