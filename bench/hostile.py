"""Hostile requests beside normal searches: does the server stay up, small and fast for everyone else?

    python bench/hostile.py                          # 20k samples, 32 hostile + 8 normal clients, 60 s
    python bench/hostile.py --samples 100000 --hostile-clients 32 --normal-clients 8 --duration 60

1. **Catalog and server**: the same synthetic catalog over real photos and the same real
   ``viscurate serve`` process as ``bench/serve.py`` (its ``build_catalog`` and ``Server``, cached under
   the same ``--cache``), on 127.0.0.1.
2. **Quiet**: ``--normal-clients`` clients send ``serve.py``'s search mix for ``--duration`` seconds,
   closed loop: the normal searches' p50/p99 when nobody attacks.
3. **Under attack**: the same normal clients again, and beside them ``--hostile-clients`` clients sending,
   round robin, the requests of issue 14: a model name ``..`` in a similar-search, a 10-part undeclared
   path, ``$elemMatch`` nested 7 and 300 deep, 10,000 ``$in`` values and 10,000 ``$or`` branches on an
   undeclared field, a zip of three 400 MiB members (1.2 MB) to the upload route, a body announcing
   200 MB, a cross-origin multipart POST, a rebinding ``Host``. Every hostile answer is counted by
   status: any 5xx or a connection the server dropped without an answer is a failure.
4. The server's resident memory is read from ``/proc`` every 0.2 s through both phases.

Goals (issue 14): server RSS under 1 GB throughout; normal-search p99 under attack under 2x its quiet
value; no 5xx. URL fetches of slow servers are not in the mix: the SSRF guard refuses loopback, and
nothing else may be reached from here (``tests/test_hostile_uploads.py`` covers the fetch deadline).

Prints one table; writes bench/results/hostile-<date>-n<N>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import serve  # noqa: E402  (the catalog, the server process and the load generator of bench/serve.py)

#: Sent on every request of ours: a programmatic client's marker (a cross-origin page cannot send it).
CLIENT_HEADERS = "X-Viscurate: 1\r\n"


def raw(method: str, path: str, body: bytes = b"", content_type: str | None = None, extra: str = "",
        host: str = "127.0.0.1", content_length: int | None = None, browser: bool = False) -> bytes:
    """A request as our own clients send it; ``browser=True``: as a web page's fetch, which cannot add
    our header (a cross-origin page would need a preflight the server never approves)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n" + ("" if browser else CLIENT_HEADERS) + extra
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if body or content_length is not None:
        head += f"Content-Length: {len(body) if content_length is None else content_length}\r\n"
    return (head + "\r\n").encode() + body


def post_json(path: str, body: dict, **kw) -> bytes:
    return raw("POST", path, json.dumps(body, separators=(",", ":")).encode(), "application/json", **kw)


def multipart(field: str, filename: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = "viscurate-bench-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def zip_of_zeros(members: int = 3, member_mib: int = 400) -> bytes:
    """A small zip (about 0.4 MB per member) whose members inflate to ``member_mib`` MiB of zeros each."""
    buf = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for m in range(members):
            with z.open(f"photo-{m}.jpg", "w", force_zip64=True) as f:
                for _ in range(member_mib):
                    f.write(chunk)
    return buf.getvalue()


def nested_elem_match(depth: int) -> dict:
    q: dict = {"x": 1}
    for _ in range(depth):
        q = {"a": {"$elemMatch": q}}
    return q


def hostile_items(sample_id: str) -> list[tuple[str, bytes]]:
    """(kind, request bytes) of issue 14's reproductions."""
    search = f"/v1/datasets/{serve.DATASET}/search"
    bomb, bomb_type = multipart("file", "photos.zip", zip_of_zeros(), "application/zip")
    form, form_type = multipart("file", "x.jpg", b"\xff\xd8\xff" + bytes(64), "image/jpeg")
    return [
        ("model ..", raw("GET", f"/v1/datasets/{serve.DATASET}/samples/{quote(sample_id)}/similar?model=..")),
        ("10-part path", post_json(search, {"q": {".".join(f"f{i}" for i in range(10)): 1}})),
        ("$elemMatch x7", post_json(search, {"q": nested_elem_match(7)})),
        ("$elemMatch x300", post_json(search, {"q": nested_elem_match(300)})),
        ("$in 10k", post_json(search, {"q": {"undeclared.n": {"$in": list(range(10_000))}}})),
        ("$or 10k", post_json(search, {"q": {"$or": [{"undeclared.n": i} for i in range(10_000)]}})),
        ("zip upload", raw("POST", "/v1/analyze/upload", bomb, bomb_type)),
        ("200 MB body", raw("POST", search, b'{"q": {}}', "application/json", content_length=200 * 2**20)),
        ("cross-origin POST", raw("POST", "/v1/analyze/upload", form, form_type,
                                  extra="Origin: http://evil.example\r\n", browser=True)),
        ("rebinding Host", raw("GET", "/v1/datasets", host="rebind.attacker.example")),
    ]


class Hostile:
    """Hands out hostile requests round robin and counts the answers by kind and status."""

    def __init__(self, items: list[tuple[str, bytes]]):
        self.items, self.i = items, 0
        self.statuses: dict[str, dict[str, int]] = {}
        self.latencies: dict[str, list[float]] = {}

    def next(self) -> tuple[str, bytes]:
        item = self.items[self.i % len(self.items)]
        self.i += 1
        return item

    def count(self, kind: str, outcome: str, ms: float | None = None) -> None:
        by = self.statuses.setdefault(kind, {})
        by[outcome] = by.get(outcome, 0) + 1
        if ms is not None:
            self.latencies.setdefault(kind, []).append(ms)


async def attack(port: int, clients: int, hostile: Hostile, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds

    async def client() -> None:
        while loop.time() < stop:
            kind, req = hostile.next()
            t = time.perf_counter()
            writer = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(req)
                try:
                    await writer.drain()
                except (ConnectionResetError, BrokenPipeError):
                    pass  # the server answered early (413) and closed: its answer may still be readable
                status, _ = await asyncio.wait_for(serve.read_response(reader), timeout=max(1.0, stop - loop.time() + 30))
                hostile.count(kind, str(status), (time.perf_counter() - t) * 1000)
            except asyncio.TimeoutError:
                hostile.count(kind, "no answer (timeout)")
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                hostile.count(kind, f"dropped ({type(e).__name__})")
            finally:
                if writer is not None:
                    writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))


class RssSampler:
    """The server's resident memory (VmRSS), sampled every ``every`` seconds in a thread."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.samples = pid, every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.samples.append(int(line.split()[1]) / 1024)
            except OSError:
                return
            self._stop.wait(self.every)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max_mb(self) -> float:
        return max(self.samples, default=0.0)


async def under_attack(port: int, normal_clients: int, hostile_clients: int, hostile: Hostile, rng: random.Random,
                       duration: float, warmup: float) -> dict:
    normal = asyncio.create_task(serve.drive(port, normal_clients, serve.search_feed(rng), duration, warmup, "raw"))
    await attack(port, hostile_clients, hostile, duration + warmup)
    return await normal


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--normal-clients", type=int, default=8)
    ap.add_argument("--hostile-clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0, help="timed seconds of each phase")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--files", type=int, default=100, help="real photos the samples point at")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "viscurate-bench-serve"))
    ap.add_argument("--out")
    a = ap.parse_args()

    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    files = serve.prepare_images(cache / "photos-1280", a.files, 1280)
    home = serve.build_catalog(cache, a.samples, a.seed, files)
    from viscurate import Dataset  # noqa: PLC0415

    ds = Dataset.open(serve.DATASET, home=home)
    sample_id = ds.ids()[0]
    ds.close()
    print("[hostile] building the requests (a 1.2 MB zip of 1.2 GB of zeros) ...", file=sys.stderr, flush=True)
    hostile = Hostile(hostile_items(sample_id))
    rng = random.Random(a.seed)
    port = serve.free_port()
    res: dict = {"benchmark": "hostile", "date": dt.datetime.now().isoformat(timespec="seconds"),
                 "machine": serve.machine_info(), "samples": a.samples, "duration": a.duration,
                 "normal_clients": a.normal_clients, "hostile_clients": a.hostile_clients, "code": serve.code_version()}
    with serve.Server(home, port, cache / "server-hostile.log") as server:
        serve.SERVER_PID[0] = server.proc.pid
        with RssSampler(server.proc.pid) as rss:
            print(f"[hostile] quiet: {a.normal_clients} search clients, {a.duration:g} s ...", file=sys.stderr, flush=True)
            quiet = serve.summarize("quiet", a.normal_clients,
                                    asyncio.run(serve.drive(port, a.normal_clients, serve.search_feed(rng),
                                                            a.duration, a.warmup, "raw")))
            quiet_rss = rss.max_mb
            print(f"[hostile] under attack: + {a.hostile_clients} hostile clients ...", file=sys.stderr, flush=True)
            loud = serve.summarize("under attack", a.normal_clients,
                                   asyncio.run(under_attack(port, a.normal_clients, a.hostile_clients, hostile, rng,
                                                            a.duration, a.warmup)))
        alive = server.proc.poll() is None
    failures = {k: {s: n for s, n in v.items() if s.startswith("5") or not s[0].isdigit()}
                for k, v in hostile.statuses.items()}
    res.update(quiet=quiet, under_attack=loud, rss_max_mb_quiet=round(quiet_rss, 1), rss_max_mb=round(rss.max_mb, 1),
               hostile={k: {"answers": v, "p50_ms": round(statistics.median(hostile.latencies.get(k, [0])), 1),
                            "max_ms": round(max(hostile.latencies.get(k, [0])), 1)}
                        for k, v in sorted(hostile.statuses.items())},
               server_alive=alive,
               goals={"rss_under_1gb": rss.max_mb < 1024,
                      "p99_under_2x_quiet": bool(quiet.get("p99_ms")) and loud.get("p99_ms", 1e9) < 2 * quiet["p99_ms"],
                      "no_5xx_or_drops": not any(failures.values())})
    out = Path(a.out) if a.out else BENCH / "results" / f"hostile-{dt.date.today().isoformat()}-n{a.samples}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str) + "\n")

    print(f"\nnormal searches ({a.normal_clients} clients)    req/s    p50 ms    p99 ms    errors")
    for row in (quiet, loud):
        print(f"  {row['scenario']:<28} {row['throughput']:>7} {row.get('p50_ms', '-'):>9} {row.get('p99_ms', '-'):>9}"
              f" {row['errors']:>9}")
    print(f"\nhostile requests ({a.hostile_clients} clients)   answers                               p50 ms   max ms")
    for kind, v in res["hostile"].items():
        answers = ", ".join(f"{s}: {n}" for s, n in sorted(v["answers"].items()))
        print(f"  {kind:<20} {answers:<42} {v['p50_ms']:>8} {v['max_ms']:>8}")
    print(f"\nserver RSS max: {res['rss_max_mb_quiet']} MB quiet, {res['rss_max_mb']} MB overall; "
          f"server alive at the end: {alive}")
    print("goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in res["goals"].items()))
    print(f"results: {out}")
    return 0 if all(res["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
