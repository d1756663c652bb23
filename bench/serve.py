"""The REST server under load: N concurrent clients against ``viscurate serve`` on loopback.

    python bench/serve.py                                   # 100k samples, 32 clients, 20 s per scenario
    python bench/serve.py --samples 100000 --clients 32 --duration 20
    python bench/serve.py --clients 1,8,32 --scenarios search      # several client counts, one scenario
    # more: --files 300  --max-side 1280  --seed 0  --cache DIR  --rebuild  --client raw|httpx
    #       --profile py-spy [--profile-args=--gil]  --server-threads N  --doc-cache-mb MB  --out FILE

1. **Catalog** (built once, cached under ``--cache``, default ``$TMPDIR/viscurate-bench-serve``): the
   synthetic sample documents of ``bench/synthetic.py`` (same seed, same documents as ``query.py``:
   width, height, format, hash, phash, split, tags, issues, quality.*, label_quality_estimation,
   object_analysis boxes with COCO names, confidence, bbox and their own label_quality_estimation,
   free-form metadata), through ``Dataset.create(...)`` + ``ds.add_documents(...)``. Each ``filepath``
   points at one of ``--files`` REAL photos (JPEGs of the corpus ``~/.cache/corpus/real``, or
   scikit-image's bundled images when the corpus is absent), re-encoded with the longer side at most
   ``--max-side`` px; sample ``i`` uses file ``i % files``, so ~330 samples share each file. The rest of
   the document stays synthetic (a sample's width is not its file's), which keeps the query
   selectivities of ``query.py``.
2. **Server**: the real CLI, ``viscurate --home H serve --host 127.0.0.1 --port P`` (console script of
   the project venv; ``VISCURATE_HOME`` set too), in its own process, access log on as shipped; waited
   for until ``GET /v1/datasets`` answers. An explicit ``PYTHONPATH`` wins over this checkout's ``src/``
   (to benchmark another checkout, as in ``query.py``).
3. **Load**: N clients in one asyncio loop, each with its own keep-alive HTTP/1.1 connection, sending
   the next pre-built request as soon as the previous answer is read (closed loop, no think time) for
   ``--duration`` seconds per scenario (after 2 s of untimed warm-up). The default client writes
   pre-encoded request bytes and reads ``Content-Length`` bodies off asyncio streams (~40 us of CPU
   per request); ``--client httpx`` uses ``httpx.AsyncClient`` instead (several times the client CPU).
   Latency = from writing the request to having read the whole response, in the client.

Scenarios:

* ``search``: ``POST /v1/datasets/bench-serve/search`` with a mix of realistic queries (``SEARCHES``:
  a COCO class, width range, val split with low label quality, issues, tags, $elemMatch, $in, {}),
  a random page 1..50 and a sort on 30 % of them; the request bodies are built before the run.
* ``sample``: ``GET .../samples/{id}`` of random ids.
* ``floor`` (not in the default set): ``GET /v1/datasets``, which lists a folder: what a request costs
  in uvicorn + FastAPI + the client alone.
* ``thumb-cold``: ``GET .../samples/{id}/thumbnail?size=S``, every request a thumbnail not made before
  (the thumbnail cache is keyed by file and size, and emptied before the run: request k asks for file
  ``k % files`` at size ``256 - k // files``, through a sample id not asked for before), so each one
  decodes and re-encodes a real photo.
* ``thumb-warm``: the same URL set at size 256 as the first ``files`` cold requests, made untimed
  first, so every request is a cache hit (a file response).

The load generator runs on the same machine, on the same cores, as the server: the ``client CPU``
column says how much of them it took. ``server CPU`` is the server process's user+system CPU time per
request (all its threads), from ``/proc``. ``py loop ms`` is the CPU time of a fixed pure-Python loop
taken just before the scenario: a shared machine's speed drifts (1.6x within an hour on the 2-core VM of
bench/README.md), so compare rows only at a similar value. ``--trace FILE`` writes every timed request
(start, latency, kind) to see where in time the slow ones fall (e.g. a cache still filling).

Prints one table; writes bench/results/serve-<date>-n<N>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from synthetic import generate_chunks  # noqa: E402

DATASET = "bench-serve"
CORPUS = Path(os.environ.get("VISCURATE_BENCH_CORPUS", Path.home() / ".cache" / "corpus"))

# (name, filter, sort choices): a realistic mix of what a UI and scripts send; weights in SEARCH_WEIGHTS
SEARCHES: list[tuple[str, dict]] = [
    ("all", {}),
    ("class", {"object_analysis.name": "cat"}),
    ("class (common)", {"object_analysis.name": "person"}),
    ("class (rare)", {"object_analysis.name": "giraffe"}),
    ("width > 500", {"width": {"$gt": 500}}),
    ("val, LQE < 0.5", {"split": "val", "label_quality_estimation": {"$lt": 0.5}}),
    ("issue", {"issues": "blurry"}),
    ("tag", {"tags": "needs_review"}),
    ("$elemMatch", {"object_analysis": {"$elemMatch": {"name": "dog", "confidence": {"$gte": 0.8}}}}),
    ("format $in", {"format": {"$in": ["PNG", "WEBP"]}}),
    ("box LQE < 0.4", {"object_analysis.label_quality_estimation": {"$lt": 0.4}}),
]
SORTS = [{"label_quality_estimation": 1}, {"width": -1}, {"quality.blur": 1}, {"datetime": -1}]
SORT_SHARE = 0.3
MAX_SEARCH_PAGE = 50


# ------------------------------------------------------------------------------------- helpers
def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(xs)
    return s[max(1, math.ceil(q / 100 * len(s))) - 1]


def python_speed_ms() -> float:
    """CPU ms of a fixed pure-Python loop, taken right before each scenario with the server idle: this
    shared machine's speed drifts by 1.5x or more within an hour, and this says which phase a row ran in."""
    t, total = time.process_time(), 0
    for i in range(3_000_000):
        total += i
    return round((time.process_time() - t) * 1000)


def machine_info() -> dict:
    from ingest import machine_info as mi  # noqa: PLC0415

    return mi()


def code_version() -> dict:
    """The checkout's commit (and whether it has changes), and an explicit PYTHONPATH if one was given."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "src")),
            "pythonpath": os.environ.get("PYTHONPATH")}


def venv_python() -> str:
    py = ROOT / ".venv" / "bin" / "python"
    return str(py if py.exists() else sys.executable)


def server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # an explicit PYTHONPATH wins (e.g. to benchmark another checkout); then this repo's src/
    env["PYTHONPATH"] = os.pathsep.join(x for x in (env.get("PYTHONPATH", ""), str(ROOT / "src")) if x)
    env["VISCURATE_HOME"] = str(home)
    env["DO_NOT_TRACK"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) and of its live descendants, from /proc."""
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                pass
    tree, grew = {pid}, True
    while grew:
        more = {p for p, f in stats.items() if int(f[1]) in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------------- inputs
def source_photos() -> list[Path]:
    real = CORPUS / "real"
    if real.is_dir():
        found = sorted(p for p in real.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        if found:
            return found
    try:
        import skimage  # noqa: PLC0415

        data = Path(skimage.__file__).parent / "data"
        return sorted(p for p in data.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    except ImportError:
        return []


def prepare_images(folder: Path, n: int, max_side: int) -> list[str]:
    """``n`` real photos re-encoded as JPEG (longer side <= max_side) in ``folder``; reused when there."""
    from PIL import Image, ImageOps  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    done = sorted(folder.glob("photo_*.jpg"))
    if len(done) >= n:
        return [str(p) for p in done[:n]]
    sources = source_photos()
    if not sources:
        raise SystemExit("no photos: neither ~/.cache/corpus/real nor scikit-image's data folder")
    # spread the picks over the (sorted) sources; a source that does not decode is replaced by the next
    order = [sources[int(k * len(sources) / n) % len(sources)] for k in range(min(n, len(sources)))]
    order += [p for p in sources if p not in set(order)]
    out, k, tries = [], 0, 0
    while len(out) < n and tries < 3 * n + len(sources):
        src = order[tries % len(order)]
        repeat = tries // len(order)  # past the end of the sources: rotated copies, so new files
        tries += 1
        dst = folder / f"photo_{k:04d}.jpg"
        if not dst.exists():
            try:
                with Image.open(src) as im:
                    im.draft("RGB", (max_side, max_side))
                    im = ImageOps.exif_transpose(im).convert("RGB")
                    im.thumbnail((max_side, max_side))
                    if repeat:
                        im = im.rotate(90 * repeat, expand=True)
                    tmp = dst.with_suffix(".tmp")
                    im.save(tmp, "JPEG", quality=90)
                    tmp.replace(dst)
            except Exception as e:  # noqa: BLE001 - skip an odd file, take the next source
                print(f"[serve] skipped {src.name}: {e}", file=sys.stderr)
                continue
        out.append(str(dst))
        k += 1
    return out


def build_catalog(cache: Path, n: int, seed: int, files: list[str]) -> Path:
    """The workspace holding DATASET (n documents), built once per (n, seed, files)."""
    home = cache / f"home-n{n}-seed{seed}-f{len(files)}"
    stamp = home / "bench-ready.json"
    if stamp.exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    from viscurate import Dataset  # noqa: PLC0415

    t = time.perf_counter()
    ds = Dataset.create(DATASET, home=home)

    def docs():
        for chunk in generate_chunks(n, seed):
            for doc in chunk:
                i = int(doc["_id"][:8], 16) - 0x5F000000
                doc["filepath"] = files[i % len(files)]
                yield doc

    ds.add_documents(docs())
    count = ds.count({})
    ds.close()
    seconds = time.perf_counter() - t
    stamp.write_text(json.dumps({"samples": count, "seconds": round(seconds, 1), "files": len(files)}))
    print(f"[serve] built {count:,} samples in {seconds:.1f} s: {home}", file=sys.stderr, flush=True)
    return home


# ------------------------------------------------------------------------------------- server
# --server-threads N: create_app + uvicorn as `viscurate serve` runs them, with AnyIO's thread limiter (how
# many sync routes run at once; 40 by default) set to N first: what a thread-pool setting in the server would do
LAUNCHER = """
import asyncio, sys
import anyio.to_thread, uvicorn
from viscurate.server.app import create_app
home, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
server = uvicorn.Server(uvicorn.Config(create_app(home), host="127.0.0.1", port=port, log_level="info"))
async def main():
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads
    await server.serve()
asyncio.run(main())
"""


class Server:
    """``viscurate serve`` in a child process on 127.0.0.1."""

    def __init__(self, home: Path, port: int, log: Path, threads: int | None = None, workers: int | None = None):
        exe = ROOT / ".venv" / "bin" / "viscurate"
        cmd = [str(exe)] if exe.exists() else [venv_python(), "-m", "viscurate.cli.app"]
        self.argv = cmd + ["--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port)]
        if threads:  # an experiment, not the shipped command: the same app, at most `threads` requests at once
            self.argv = [venv_python(), "-c", LAUNCHER, str(home), str(port), str(threads)]
        if workers:  # an experiment too: uvicorn's own worker processes, each with the app (create_app() reads
            # VISCURATE_HOME), each its own DuckDB instance and caches
            code = ("import sys, uvicorn; uvicorn.run('viscurate.server.app:create_app', factory=True, "
                    "host='127.0.0.1', port=int(sys.argv[1]), workers=int(sys.argv[2]))")
            self.argv = [venv_python(), "-c", code, str(port), str(workers)]
        self.port, self.home, self.log_path = port, home, log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, env=server_env(self.home), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                status, _ = asyncio.run(one_request("127.0.0.1", self.port, get("/v1/datasets")))
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the server did not answer in 120 s; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------------------------- requests
def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n".encode()


def post_json(path: str, body: dict) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked = None, False
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return status, (await reader.readexactly(length) if length else b"")


async def one_request(host: str, port: int, req: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(req)
        return await read_response(reader)
    finally:
        writer.close()


class Feed:
    """Requests handed out in order to every client (shared), as (key, bytes for the raw client,
    (method, path, json body) for httpx)."""

    def __init__(self, items: list[tuple[str, str, str, dict | None]], cycle: bool = True):
        self.items = [(k, (post_json(p, b) if m == "POST" else get(p)), (m, p, b)) for k, m, p, b in items]
        self.cycle, self.i = cycle, 0

    def next(self):
        if self.i >= len(self.items):
            if not self.cycle:
                return None
            self.i = 0
        item = self.items[self.i]
        self.i += 1
        return item


async def drive(port: int, clients: int, feed: Feed, duration: float, warmup: float, kind: str) -> dict:
    """Closed loop: ``clients`` connections, each sending the next request when its answer is in."""
    lat: list[float] = []
    keys: list[str] = []
    starts: list[float] = []
    errors: dict[str, int] = {}
    timing = {"on": False}
    loop = asyncio.get_running_loop()

    def record(key: str, status: int | None, ms: float, what: str = "", start: float = 0.0) -> None:
        if not timing["on"]:
            return
        if status == 200:
            lat.append(ms)
            keys.append(key)
            starts.append(start)
        else:
            k = what or f"HTTP {status}"
            errors[k] = errors.get(k, 0) + 1

    async def raw_client(stop: float) -> None:
        reader = writer = None
        while loop.time() < stop:
            item = feed.next()
            if item is None:
                break
            key, req, _ = item
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                t = time.perf_counter()
                writer.write(req)
                status, _body = await read_response(reader)
                record(key, status, (time.perf_counter() - t) * 1000, start=t)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                record(key, None, 0.0, type(e).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def httpx_client(stop: float, client) -> None:
        while loop.time() < stop:
            item = feed.next()
            if item is None:
                break
            key, _, (method, path, body) = item
            try:
                t = time.perf_counter()
                r = await client.request(method, path, json=body) if body is not None else await client.get(path)
                await r.aread()
                record(key, r.status_code, (time.perf_counter() - t) * 1000, start=t)
            except Exception as e:  # noqa: BLE001 - count it, keep going
                record(key, None, 0.0, type(e).__name__)

    t_end = loop.time() + warmup + duration
    client = None
    if kind == "httpx":
        import httpx  # noqa: PLC0415

        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                   limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients))
        tasks = [asyncio.create_task(httpx_client(t_end, client)) for _ in range(clients)]
    else:
        tasks = [asyncio.create_task(raw_client(t_end)) for _ in range(clients)]
    await asyncio.sleep(warmup)
    timing["on"] = True
    cpu0, t0 = self_cpu(), time.perf_counter()
    server_cpu0 = cpu_seconds(SERVER_PID[0])
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    out = {"lat": lat, "keys": keys, "starts": [round(x - t0, 4) for x in starts], "errors": errors, "seconds": elapsed,
           "client_cpu_s": self_cpu() - cpu0, "server_cpu_s": cpu_seconds(SERVER_PID[0]) - server_cpu0}
    if client is not None:
        await client.aclose()
    return out


SERVER_PID = [0]


def summarize(name: str, clients: int, run: dict) -> dict:
    lat, n = run["lat"], len(run["lat"])
    errors = sum(run["errors"].values())
    row = {"scenario": name, "clients": clients, "requests": n, "errors": errors, "error_kinds": run["errors"],
           "seconds": round(run["seconds"], 2), "throughput": round(n / run["seconds"], 1) if run["seconds"] else 0,
           "client_cpu_pct": round(100 * run["client_cpu_s"] / run["seconds"], 1),
           "server_cpu_ms_per_req": round(1000 * run["server_cpu_s"] / n, 2) if n else None,
           "server_cpu_pct": round(100 * run["server_cpu_s"] / run["seconds"], 1)}
    if n:
        row.update(p50_ms=round(statistics.median(lat), 1), p90_ms=round(pct(lat, 90), 1),
                   p99_ms=round(pct(lat, 99), 1), max_ms=round(max(lat), 1), mean_ms=round(sum(lat) / n, 1))
        by: dict[str, list[float]] = {}
        for k, ms in zip(run["keys"], lat):
            by.setdefault(k, []).append(ms)
        if len(by) > 1:
            row["by_kind"] = {k: {"requests": len(v), "p50_ms": round(statistics.median(v), 1),
                                  "p99_ms": round(pct(v, 99), 1)} for k, v in sorted(by.items())}
    return row


# ------------------------------------------------------------------------------------- scenarios
def search_feed(rng: random.Random, n: int = 20_000) -> Feed:
    path = f"/v1/datasets/{DATASET}/search"
    items = []
    for _ in range(n):
        name, q = rng.choice(SEARCHES)
        body: dict = {"q": q, "page": rng.randint(1, MAX_SEARCH_PAGE)}
        sorted_ = rng.random() < SORT_SHARE
        if sorted_:
            body["sort"] = rng.choice(SORTS)
        items.append((name + (" +sort" if sorted_ else ""), "POST", path, body))
    return Feed(items)


def distinct_search_feed(rng: random.Random, n: int = 40_000) -> Feed:
    """Every request a query no earlier one asked (random bounds): no cache of the server can answer it,
    the worst case for the catalog."""
    path = f"/v1/datasets/{DATASET}/search"
    items = []
    for k in range(n):
        q = {"width": {"$gt": rng.randint(0, 1500)}, "label_quality_estimation": {"$lt": round(rng.uniform(0.3, 1.0), 6)},
             "size_bytes": {"$ne": k}}
        items.append(("distinct", "POST", path, {"q": q, "page": rng.randint(1, MAX_SEARCH_PAGE)}))
    return Feed(items, cycle=False)


def sample_feed(rng: random.Random, ids: list[str], n: int = 5000) -> Feed:
    return Feed([("sample", "GET", f"/v1/datasets/{DATASET}/samples/{quote(rng.choice(ids))}", None)
                 for _ in range(n)])


def cold_thumbs(ids: list[str], files: int, n: int) -> list[tuple[str, str, str, None]]:
    """Request k: file k % files at size 256 - k // files, through the (k // files)-th sample of that
    file (sample i uses file i % files): a new sample id and a new cache key every time."""
    out = []
    for k in range(n):
        f, r = k % files, k // files
        i = f + files * r
        if i >= len(ids) or r > 256 - 16:
            break
        out.append(("thumb", "GET", f"/v1/datasets/{DATASET}/samples/{quote(ids[i])}/thumbnail?size={256 - r}", None))
    return out


def print_table(res: dict) -> None:
    headers = ["scenario", "clients", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors",
               "server CPU ms/req", "client CPU", "py loop ms"]
    rows = [[r["scenario"], str(r["clients"]), f"{r['requests']:,}", f"{r['throughput']:,.1f}",
             f"{r.get('p50_ms', '-')}", f"{r.get('p99_ms', '-')}", f"{r.get('max_ms', '-')}", str(r["errors"]),
             f"{r['server_cpu_ms_per_req']}", f"{r['client_cpu_pct']}%", str(r.get("python_speed_ms", "-"))]
            for r in res["rows"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print()
    print(f"viscurate serve, {res['samples']:,} samples, {res['duration']} s per scenario, client: {res['client']}")
    m = res["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB; the load generator runs on the SAME "
          f"{m['cores']} cores as the server (client CPU = its share of one core)")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    for r in res["rows"]:
        if r.get("by_kind") and r["scenario"] == "search":
            print(f"\nsearch by query ({r['clients']} clients): kind, requests, p50 ms, p99 ms")
            for k, v in sorted(r["by_kind"].items(), key=lambda kv: -kv[1]["p50_ms"]):
                print(f"  {k:28s} {v['requests']:6d} {v['p50_ms']:8.1f} {v['p99_ms']:8.1f}")
    for r in res["rows"]:
        if r["scenario"] in ("search", "search-distinct") and r["clients"] == 32 and "p99_ms" in r:
            ok = r["p99_ms"] < 250
            print(f"goal: {r['scenario']} p99 < 250 ms at 32 clients: {r['p99_ms']} ms, {'met' if ok else 'NOT met'}")


# ------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--clients", default="32", help="concurrent clients; a comma list runs each in turn")
    ap.add_argument("--duration", type=float, default=20.0, help="timed seconds per scenario")
    ap.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each scenario")
    ap.add_argument("--scenarios", default="search,search-distinct,sample,thumb-cold,thumb-warm")
    ap.add_argument("--files", type=int, default=300, help="real photos the samples point at")
    ap.add_argument("--max-side", type=int, default=1280, help="longer side of those photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "viscurate-bench-serve"))
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached catalog")
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw")
    ap.add_argument("--server-threads", type=int, default=None,
                    help="experiment: start the same app with at most N requests in its thread pool at once "
                         "(AnyIO's default limiter is 40) instead of the plain `viscurate serve`")
    ap.add_argument("--server-workers", type=int, default=None,
                    help="experiment: uvicorn with N worker processes (the app factory) instead of `viscurate serve`")
    ap.add_argument("--doc-cache-mb", type=float, default=None,
                    help="VISCURATE_DOC_CACHE_MB for the server (documents its open catalog keeps; 0: none)")
    ap.add_argument("--profile", choices=["py-spy"],
                    help="py-spy: record the server during the timed part of the first scenario "
                         "(collapsed stacks in --cache); needs py-spy on PATH or in the venv")
    ap.add_argument("--profile-args", default="--threads",
                    help="more py-spy record flags, e.g. '--gil' (only samples holding the GIL) or '--idle --native'")
    ap.add_argument("--out", help="results JSON (default bench/results/serve-<date>-n<N>.json)")
    ap.add_argument("--trace", help="also write every timed request (scenario, start s, latency ms, kind) "
                                    "as CSV here: where the slow ones fall in time")
    a = ap.parse_args()

    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if a.rebuild:
        shutil.rmtree(cache / f"home-n{a.samples}-seed{a.seed}-f{a.files}", ignore_errors=True)
    files = prepare_images(cache / f"photos-{a.max_side}", a.files, a.max_side)
    home = build_catalog(cache, a.samples, a.seed, files)

    from viscurate import Dataset  # noqa: PLC0415

    ds = Dataset.open(DATASET, home=home)
    ids = ds.ids()
    thumbs_dir = ds.directory / "thumbnails"
    ds.close()
    shutil.rmtree(thumbs_dir, ignore_errors=True)  # thumb-cold starts cold

    client_counts = [int(c) for c in a.clients.split(",")]
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    rng = random.Random(a.seed)
    res: dict = {"benchmark": "serve", "date": dt.datetime.now().isoformat(timespec="seconds"),
                 "machine": machine_info(), "load_average": os.getloadavg(), "samples": len(ids),
                 "files": len(files), "max_side": a.max_side, "duration": a.duration, "warmup": a.warmup,
                 "code": code_version(), "client": a.client, "server_threads": a.server_threads, "server_workers": a.server_workers, "doc_cache_mb": a.doc_cache_mb,
                 "searches": SEARCHES, "sorts": SORTS, "rows": []}
    if a.doc_cache_mb is not None:
        os.environ["VISCURATE_DOC_CACHE_MB"] = str(a.doc_cache_mb)
    port = free_port()
    log = cache / "server.log"
    cold_used = 0
    traces: list[str] = []
    with Server(home, port, log, a.server_threads, a.server_workers) as server:
        SERVER_PID[0] = server.proc.pid
        res["server_argv"] = server.argv
        for clients in client_counts:
            for name in scenarios:
                if name == "search":
                    feed = search_feed(rng)
                elif name == "search-distinct":
                    feed = distinct_search_feed(rng)
                elif name == "sample":
                    feed = sample_feed(rng, ids)
                elif name == "floor":
                    feed = Feed([("floor", "GET", "/v1/datasets", None)])
                elif name == "thumb-cold":
                    # a fresh, never-requested slice each time (enough for ~1,000 thumbnails/s)
                    items = cold_thumbs(ids, len(files), cold_used + int(1000 * (a.duration + a.warmup)))[cold_used:]
                    cold_used += len(items)
                    feed = Feed(items, cycle=False)
                elif name == "thumb-warm":
                    items = cold_thumbs(ids, len(files), len(files))
                    asyncio.run(drive(port, 4, Feed(items, cycle=False), 3600, 0, "raw"))  # make them, untimed
                    feed = Feed(items)
                else:
                    raise SystemExit(f"unknown scenario {name!r}")
                prof = None
                if a.profile and not res.get("profile"):
                    prof = start_profiler(a.profile, server.proc.pid, a.duration + a.warmup, cache, a.profile_args)
                    res["profile"] = prof["out"] if prof else None
                print(f"[serve] {name}, {clients} clients, {a.duration:g} s ...", file=sys.stderr, flush=True)
                speed = python_speed_ms()
                run = asyncio.run(drive(port, clients, feed, a.duration, a.warmup, a.client))
                if prof:
                    prof["proc"].wait()
                row = summarize(name, clients, run)
                if a.trace:
                    traces.extend(f"{name},{clients},{t:.4f},{ms:.2f},{k}"
                                  for t, ms, k in zip(run["starts"], run["lat"], run["keys"]))
                row["python_speed_ms"] = speed
                row["load_average_1min"] = round(os.getloadavg()[0], 2)
                res["rows"].append(row)
                print(f"[serve]   {row['throughput']:.1f} req/s, p50 {row.get('p50_ms')} ms, "
                      f"p99 {row.get('p99_ms')} ms, errors {row['errors']}", file=sys.stderr, flush=True)
    if a.trace:
        Path(a.trace).write_text("scenario,clients,start_s,latency_ms,kind\n" + "\n".join(traces) + "\n")
    out = Path(a.out) if a.out else BENCH / "results" / f"serve-{dt.date.today().isoformat()}-n{a.samples}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print_table(res)
    print(f"results: {out}; server log: {log}")
    return 0


def start_profiler(kind: str, pid: int, seconds: float, cache: Path, flags: str) -> dict | None:
    exe = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not os.path.exists(exe):
        print("[serve] py-spy not found (pip install py-spy)", file=sys.stderr)
        return None
    out = cache / f"serve-profile-{dt.datetime.now():%Y%m%d-%H%M%S}.txt"
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format",
                             "raw", "--rate", "200", "--nonblocking", "--output", str(out), *flags.split()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"proc": proc, "out": str(out)}


if __name__ == "__main__":
    sys.exit(main())
