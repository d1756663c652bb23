"""Reads during a label run: how long CLI, Python API and REST reads take while `viscurate label` writes.

    python bench/reads_during_writes.py [--photos 240] [--models detector] [--json OUT]

Makes ``--photos`` distinct JPEGs from scikit-image's photos (crops, mirrors, scales) in a temporary
workspace, then, each on a fresh dataset (ingested, nothing labelled):

1. ``viscurate label`` alone: its wall time and images/s (the label stage's own report);
2. the same run with readers going all the time: ``viscurate count`` and ``viscurate find`` in turn
   (each a new process: the time includes the interpreter's start and imports, measured idle first
   as ``cli idle``), the Python API in another process (``count`` + a page of ``find`` on one
   ``Dataset``, 50 ms apart) and the REST API of a ``viscurate serve`` process
   (``POST /v1/datasets/NAME/search``, 50 ms apart). Every read is timed from the outside.

Prints one table (p50 / p95 / max per read kind, in ms; the label run's images/s with and without
the readers); ``--json`` also writes the raw numbers. Nothing is downloaded; the label models must be
installed (see docs/models.md).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: tests.fixtures
from tests.fixtures.photo_variants import make_photo_variants  # noqa: E402

LABELLED = {"object_analysis_processed": True}

API_READER = """
import json, sys, time
from viscurate import Dataset
ds = Dataset.open(sys.argv[1])
while True:
    t = time.monotonic()
    n = ds.count({"object_analysis_processed": True})
    ds.find({"object_analysis_processed": True}, page=2, page_size=5)
    print(json.dumps([time.monotonic() - t, n]), flush=True)
    if n >= int(sys.argv[2]):
        break
    time.sleep(0.05)
"""


def viscurate(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, VISCURATE_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "viscurate.cli.app", *args], capture_output=True, text=True,
                          env=env, **kw)


def fresh_dataset(home: Path, name: str, photos: Path) -> None:
    viscurate(home, "create", name, check=True)
    viscurate(home, "ingest", "-d", name, str(photos), "--no-progress", check=True)


def label(home: Path, name: str, models: str) -> subprocess.Popen:
    env = dict(os.environ, VISCURATE_HOME=str(home))
    return subprocess.Popen([sys.executable, "-m", "viscurate.cli.app", "label", name, "--models", models,
                             "--no-progress", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def finish(proc: subprocess.Popen, t0: float) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"label failed: {err[-2000:]}")
    report = json.loads(out)
    report["wall"] = time.monotonic() - t0
    return report


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_readers(home: Path, name: str, n: int, models: str) -> tuple[dict, dict[str, list[float]]]:
    import httpx
    times: dict[str, list[float]] = {"cli count": [], "cli find": [], "python api": [], "rest search": []}
    errors: list[str] = []
    port = free_port()
    env = dict(os.environ, VISCURATE_HOME=str(home))
    server = subprocess.Popen([sys.executable, "-m", "viscurate.cli.app", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.get("/v1/datasets")
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("viscurate serve did not start")
            time.sleep(0.2)
    try:
        t0 = time.monotonic()
        proc = label(home, name, models)
        api = subprocess.Popen([sys.executable, "-c", API_READER, name, str(n)], stdout=subprocess.PIPE, text=True,
                               env=env)

        def cli() -> None:
            k = 0
            while proc.poll() is None:
                kind = ("cli count", "cli find")[k % 2]
                k += 1
                t = time.monotonic()
                args = ("count", name, json.dumps(LABELLED)) if kind == "cli count" else \
                    ("find", name, json.dumps(LABELLED), "--page-size", "5", "--json")
                out = viscurate(home, *args)
                if out.returncode != 0:
                    errors.append(out.stderr[-300:])
                times[kind].append(time.monotonic() - t)

        def rest() -> None:
            while proc.poll() is None:
                t = time.monotonic()
                r = client.post(f"/v1/datasets/{name}/search", json={"q": LABELLED, "page": 1})
                if r.status_code != 200:
                    errors.append(r.text[-300:])
                times["rest search"].append(time.monotonic() - t)
                time.sleep(0.05)

        threads = [threading.Thread(target=cli), threading.Thread(target=rest)]
        for th in threads:
            th.start()
        report = finish(proc, t0)
        for th in threads:
            th.join()
        times["python api"] = [json.loads(line)[0] for line in api.communicate()[0].splitlines()]
    finally:
        client.close()
        server.terminate()
        server.wait(30)
    if errors:
        print(f"{len(errors)} reads failed, e.g. {errors[0]}", file=sys.stderr)
    report["failed_reads"] = len(errors)
    return report, times


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=240)
    ap.add_argument("--models", default="detector")
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vc-bench-rdw-") as tmp:
        root = Path(tmp)
        home, photos = root / "home", root / "photos"
        make_photo_variants(photos, args.photos)
        fresh_dataset(home, "alone", photos)
        fresh_dataset(home, "busy", photos)
        idle = []
        for _ in range(5):
            t = time.monotonic()
            viscurate(home, "count", "alone", json.dumps(LABELLED), check=True)
            idle.append(time.monotonic() - t)
        t0 = time.monotonic()
        alone = finish(label(home, "alone", args.models), t0)
        busy, times = with_readers(home, "busy", args.photos, args.models)
    times = {"cli idle": idle, **times}
    cores = os.cpu_count()
    print(f"\nReads during `viscurate label --models {args.models}` over {args.photos} photos ({cores} cores)\n")
    print(f"{'read':<12} {'reads':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for kind, values in times.items():
        if values:
            print(f"{kind:<12} {len(values):>6} {quantile(values, .5) * 1000:>8.0f} {quantile(values, .95) * 1000:>8.0f} "
                  f"{max(values) * 1000:>8.0f}")
    print(f"\nlabel alone:        {alone['wall']:6.1f} s wall, {alone['images_per_s']:6.2f} images/s")
    print(f"label with readers: {busy['wall']:6.1f} s wall, {busy['images_per_s']:6.2f} images/s, "
          f"{busy['failed_reads']} reads failed")
    if args.json:
        args.json.write_text(json.dumps({"photos": args.photos, "models": args.models, "cores": cores,
                                         "alone": alone, "with_readers": busy, "read_seconds": times}, indent=1))


if __name__ == "__main__":
    main()
