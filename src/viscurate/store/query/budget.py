"""Budgets a query must fit before any work starts: a few bytes of JSON must never cost seconds of
compilation, gigabytes of SQL text or a thread held for good (issue 14).

Every budget is checked by one iterative walk of the query (no recursion, so no nesting can raise
``RecursionError``), before compilation; the compiled SQL's size is checked after it, and the time a
query may run is enforced where it runs (``store.catalog``). Past a budget: a ``QueryError`` naming the
budget and its limit (a 400 in the REST API). Each default can be changed with an environment variable
``VISCURATE_QUERY_<NAME>`` (e.g. ``VISCURATE_QUERY_MAX_DEPTH=64``), read when a query is checked.

Example:
>>> check_query({"width": {"$gt": 100}})
>>> check_query({"a": {"$all": list(range(2_000))}})
Traceback (most recent call last):
...
viscurate.errors.QueryError: query over budget: $all lists 2000 values; the limit is 1000 (max_list, VISCURATE_QUERY_MAX_LIST)
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Iterator

from ...errors import QueryError

# Measured on the 2-core dev machine: DuckDB's planning time grows faster than linearly with the SQL
# text (a 64 KB $or of free-form equalities: 4 s; 48 KB: ~2 s) and about doubles with each level of
# nested lambdas ($elemMatch depth 10: 0.7 s, 13: 5 s), whatever the data; hence the SQL and depth
# budgets. The JSON size is generous: plain values in $in/$nin (ids, say) are one parameter each list,
# and an HTTP body has its own, smaller limit.
MAX_BYTES = 64 * 1024 * 1024    # the query's JSON text
MAX_DEPTH = 16                  # nested objects and arrays ({"a": 1} is 1 deep): $elemMatch 7 deep
MAX_PATH_PARTS = 32             # components of one dotted field path
MAX_LIST = 1_000                # values of one $all, or of one $in/$nin holding documents or arrays
MAX_BRANCHES = 1_000            # queries of one $and, $or or $nor
MAX_SQL_BYTES = 48 * 1024       # the compiled SQL text
TIME_LIMIT_S = 10.0             # how long one query may run before it is interrupted

_LISTS = ("$in", "$nin", "$all")
_BRANCHING = ("$and", "$or", "$nor")


class QueryTimeout(QueryError):
    """A query ran past its time limit and was interrupted."""


@dataclass(frozen=True)
class QueryBudget:
    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_path_parts: int = MAX_PATH_PARTS
    max_list: int = MAX_LIST
    max_branches: int = MAX_BRANCHES
    max_sql_bytes: int = MAX_SQL_BYTES
    time_limit_s: float = TIME_LIMIT_S

    @classmethod
    def from_env(cls) -> "QueryBudget":
        """The defaults, each replaced by ``VISCURATE_QUERY_<NAME>`` where that is set."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(_env_name(f.name))
            if raw is None:
                continue
            try:
                value = float(raw) if f.name == "time_limit_s" else int(raw)
            except ValueError:
                raise QueryError(f"{_env_name(f.name)}={raw!r} is not a number") from None
            if value <= 0:
                raise QueryError(f"{_env_name(f.name)} must be positive, got {raw!r}")
            values[f.name] = value
        return cls(**values)


def _env_name(budget: str) -> str:
    return "VISCURATE_QUERY_" + budget.upper()


def over_budget(what: str, budget: str, limit: int | float) -> QueryError:
    """The error for a query past ``budget``: what it asked, the limit, and how to change it."""
    return QueryError(f"query over budget: {what}; the limit is {limit} ({budget}, {_env_name(budget)})")


def _scalar_bytes(v: Any) -> int:
    # an estimate of the value's JSON text, without serializing it (a huge string is counted, not copied)
    if isinstance(v, str):
        return len(v) + 2
    if v is None or isinstance(v, bool):
        return 5
    if isinstance(v, int):
        return len(str(v)) if abs(v) < 10**30 else 32  # str() of a huge int is quadratic
    return 24


def check_query(query: Any, budget: QueryBudget | None = None) -> None:
    """Raise ``QueryError`` when ``query`` (a MongoDB filter, as parsed JSON) is over any budget:
    size, nesting depth, path parts, list lengths or branches. Time and memory are linear in the
    query and stop at the first budget exceeded."""
    budget = budget or QueryBudget.from_env()
    size = 0
    stack: list[tuple[Any, int]] = [(query, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > budget.max_depth:
                raise over_budget(f"the query nests deeper than {budget.max_depth} levels", "max_depth",
                                  budget.max_depth)
            size += 2 + len(value)
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_key(key, item, budget)
                    size += _scalar_bytes(key) + 1
                    stack.append((item, depth + 1))
            elif any(isinstance(item, (dict, list)) for item in value):
                stack.extend((item, depth + 1) for item in value)
            else:  # a list of plain values (10,000 ids, say): counted in one pass
                size += sum(map(_scalar_bytes, value))
        else:
            size += _scalar_bytes(value)
        if size > budget.max_bytes:
            raise over_budget(f"the query's JSON is larger than {budget.max_bytes} bytes", "max_bytes",
                              budget.max_bytes)


def _check_key(key: Any, item: Any, budget: QueryBudget) -> None:
    if not isinstance(key, str):
        return  # not a valid query at all: the compiler says so
    if key in _LISTS and isinstance(item, list) and len(item) > budget.max_list and _costly_list(key, item):
        raise over_budget(f"{key} lists {len(item)} values", "max_list", budget.max_list)
    if key in _BRANCHING and isinstance(item, list) and len(item) > budget.max_branches:
        raise over_budget(f"{key} has {len(item)} branches", "max_branches", budget.max_branches)
    if not key.startswith("$"):
        parts = key.count(".") + 1
        if parts > budget.max_path_parts:
            raise over_budget(f"the field path {key[:80]!r} has {parts} parts", "max_path_parts",
                              budget.max_path_parts)


def _costly_list(key: str, items: list) -> bool:
    """A list whose values each become SQL: every $all, and $in/$nin holding documents or arrays
    (plain strings and numbers travel as one list parameter, however many)."""
    return key == "$all" or any(isinstance(v, (dict, list)) for v in items)


def check_sql(sql: str, budget: QueryBudget | None = None) -> None:
    """Raise ``QueryError`` when compiled SQL is larger than the budget allows."""
    budget = budget or QueryBudget.from_env()
    if len(sql) > budget.max_sql_bytes:
        raise over_budget(f"the query compiles to {len(sql)} bytes of SQL", "max_sql_bytes", budget.max_sql_bytes)


class _Watchdog:
    """One thread for every time-limited statement of the process: it interrupts each cursor whose
    deadline has passed. (A ``threading.Timer`` per statement started a thread for every read, ~0.5 ms,
    more than a small query costs.)"""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, Any, threading.Event]] = {}
        self._keys = itertools.count()
        self._wake_at = float("inf")  # when the thread next looks (it sleeps until then or a notify)
        self._thread: threading.Thread | None = None

    def watch(self, con: Any, limit_s: float) -> tuple[int, threading.Event]:
        fired = threading.Event()
        deadline = time.monotonic() + limit_s
        with self._cond:
            key = next(self._keys)
            self._due[key] = (deadline, con, fired)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="viscurate-query-watchdog", daemon=True)
                self._thread.start()
            elif deadline < self._wake_at:
                self._cond.notify()
        return key, fired

    def unwatch(self, key: int) -> None:
        with self._cond:
            self._due.pop(key, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key in [k for k, (deadline, _, _) in self._due.items() if deadline <= now]:
                    _, con, fired = self._due.pop(key)
                    fired.set()
                    con.interrupt()
                self._wake_at = min((d for d, _, _ in self._due.values()), default=now + 60.0)
                self._cond.wait(timeout=self._wake_at - now)


_WATCHDOG = _Watchdog()


@contextmanager
def time_limited(con: Any, limit_s: float | None = None) -> Iterator[None]:
    """Run the statement inside on DuckDB cursor ``con`` for at most ``limit_s`` seconds (default: the
    ``time_limit_s`` budget): a watchdog thread interrupts it, and the caller gets ``QueryTimeout`` rather
    than a thread held for good. An interrupt that comes just after the statement ended is harmless
    (DuckDB ignores it on an idle cursor).

    >>> con = duckdb.connect()                                                  # doctest: +SKIP
    >>> with time_limited(con, 0.05):                                           # doctest: +SKIP
    ...     con.execute("SELECT count(*) FROM range(10000000000)")
    Traceback (most recent call last):
    QueryTimeout: the query ran past its time limit of 0.05 s and was stopped; ...
    """
    import duckdb

    limit = limit_s if limit_s is not None else QueryBudget.from_env().time_limit_s
    key, fired = _WATCHDOG.watch(con, limit)
    try:
        yield
    except duckdb.InterruptException:
        if not fired.is_set():
            raise
        raise QueryTimeout(f"the query ran past its time limit of {limit:g} s and was stopped; narrow it, "
                           f"or raise the limit (time_limit_s, {_env_name('time_limit_s')})") from None
    finally:
        _WATCHDOG.unwatch(key)
