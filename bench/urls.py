"""URL ingest benchmark: viscurate (download + profile) vs img2dataset (download) on the same URLs and server.

    python bench/urls.py [--urls 5000] [--latency 0.02] [--rounds 2] [--skip-peer]

The images are real photos: ``~/.cache/corpus/real`` and the GCompris photos of ``bench/gcompris.py``
(``python bench/gcompris.py`` fills that cache once), re-served under ``--urls`` distinct URLs
(``/<n>/<name>``, the photos taken in turn) by a local aiohttp server in its own process that waits
``--latency`` seconds before each answer (a far server's round trip). Both tools get the same URL list
and the same server, one after the other, alternating A/B for ``--rounds`` rounds in one sitting, each
run cold (a fresh output folder / workspace) and measured from outside (bench/proctree.py: wall
seconds of the whole command, interpreter start included, and peak RSS of its process tree).

* viscurate: ``viscurate ingest urls.txt --dataset bench --allow-private-urls`` (defaults otherwise:
  64 downloads in flight, 16 per host, every core profiling): images/s counts images downloaded AND
  profiled into the catalog.
* img2dataset (bench/.venvs/img2dataset, ``bash bench/setup_peers.sh``): ``--output_format files
  --resize_mode no --processes_count <cores> --thread_count 64 --number_sample_per_shard 1000``,
  wandb off; images/s counts the images it wrote (its ``_stats.json`` ``successes``).

Results go to bench/results/urls-<date>.json and a table on stdout.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "peers"))

from proctree import run_measured  # noqa: E402
from common import NO_TELEMETRY_ENV  # noqa: E402

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
PEER_PY = BENCH / ".venvs" / "img2dataset" / "bin" / "python"
MAX_FILE = 32 * 2**20  # under both tools' size caps


def photo_files(corpus: Path) -> list[Path]:
    """The real photos of the corpus and the GCompris cache, in a fixed order."""
    files = sorted(p for p in (corpus / "real").rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    try:
        import gcompris
        refs = subprocess.run([sys.executable, str(BENCH / "gcompris.py"), "--list"], capture_output=True,
                              text=True, check=True).stdout.split()
        files += [gcompris.resolve(r) for r in refs]
    except Exception as e:  # noqa: BLE001 - without the cache the corpus alone serves
        print(f"[urls] GCompris photos left out ({type(e).__name__}: {e})", file=sys.stderr)
    return [p for p in files if p.is_file() and 0 < p.stat().st_size <= MAX_FILE]


# ---- the server (its own process) ------------------------------------------------------------------

def serve(files_list: Path, port_file: Path, latency: float) -> None:
    """Serve ``/<n>/<name>`` as the n-th file (mod the count) after ``latency`` seconds."""
    import asyncio

    from aiohttp import web

    files = [Path(line) for line in files_list.read_text().splitlines() if line]
    blobs = [p.read_bytes() for p in files]
    types = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
             ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}

    async def photo(request: web.Request) -> web.Response:
        n = int(request.match_info["n"]) % len(blobs)
        await asyncio.sleep(latency)
        return web.Response(body=blobs[n], content_type=types.get(files[n].suffix.lower(), "application/octet-stream"))

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{n:\\d+}/{name}", photo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        port_file.write_text(str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


class Server:
    def __init__(self, files: list[Path], latency: float, work: Path):
        self.list = work / "served.txt"
        self.list.write_text("\n".join(map(str, files)) + "\n")
        self.port_file = work / "port"
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.list), str(self.port_file),
                                      str(latency)])
        for _ in range(600):
            if self.port_file.exists() and self.port_file.read_text():
                break
            time.sleep(0.1)
        self.base = f"http://127.0.0.1:{self.port_file.read_text()}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# ---- the runs -------------------------------------------------------------------------------------

def viscurate_cmd() -> list[str]:
    exe = shutil.which("viscurate") or str(Path(sys.executable).parent / "viscurate")
    return [exe] if Path(exe).exists() else [sys.executable, "-m", "viscurate.cli.app"]


def run_viscurate(url_list: Path, work: Path) -> dict:
    home = work / "vc-home"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, VISCURATE_HOME=str(home), **NO_TELEMETRY_ENV)
    m = run_measured([*viscurate_cmd(), "ingest", str(url_list), "--dataset", "bench", "--allow-private-urls",
                      "--json"], env=env, timeout=3600)
    if m.returncode != 0:
        raise RuntimeError(f"viscurate failed: {m.stderr[-2000:]}")
    report = json.loads(m.stdout[m.stdout.index("{"):])
    images = report["downloaded"]
    shutil.rmtree(home, ignore_errors=True)
    return {"images": images, "failed": report["download_failed"], "seconds": m.seconds,
            "images_per_s": images / m.seconds, "peak_rss_mb": m.peak_rss_mb}


def run_img2dataset(url_list: Path, work: Path) -> dict:
    out = work / "i2d-out"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, WANDB_MODE="disabled", WANDB_DISABLED="true", NO_ALBUMENTATIONS_UPDATE="1",
               **NO_TELEMETRY_ENV)
    cores = os.cpu_count() or 2
    m = run_measured([str(PEER_PY.parent / "img2dataset"), "--url_list", str(url_list), "--input_format", "txt",
                      "--output_folder", str(out), "--output_format", "files", "--resize_mode", "no",
                      "--processes_count", str(cores), "--thread_count", "64", "--number_sample_per_shard", "1000",
                      "--enable_wandb", "False", "--timeout", "30", "--retries", "2"], env=env, timeout=3600)
    if m.returncode != 0:
        raise RuntimeError(f"img2dataset failed: {m.stderr[-2000:]}")
    images = failed = 0
    for stats in out.glob("*_stats.json"):
        s = json.loads(stats.read_text())
        images += s.get("successes", 0)
        failed += s.get("failed_to_download", 0) + s.get("failed_to_resize", 0)
    shutil.rmtree(out, ignore_errors=True)
    return {"images": images, "failed": failed, "seconds": m.seconds, "images_per_s": images / m.seconds,
            "peak_rss_mb": m.peak_rss_mb}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path.home() / ".cache" / "corpus")
    ap.add_argument("--urls", type=int, default=5000)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--serve", nargs=3, metavar=("FILES", "PORT_FILE", "LATENCY"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]), float(args.serve[2]))
        return 0
    files = photo_files(args.corpus)
    if not files:
        print("no photos: fill ~/.cache/corpus/real or run python bench/gcompris.py", file=sys.stderr)
        return 1
    peer = not args.skip_peer and PEER_PY.exists()
    if not args.skip_peer and not peer:
        print("img2dataset venv missing: bash bench/setup_peers.sh (or --skip-peer)", file=sys.stderr)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-urls-") as tmp:
        work = Path(tmp)
        server = Server(files, args.latency, work)
        try:
            url_list = work / "urls.txt"
            url_list.write_text("".join(f"{server.base}/{n}/{files[n % len(files)].name}\n"
                                        for n in range(args.urls)))
            served = sum(files[n % len(files)].stat().st_size for n in range(args.urls))
            for rnd in range(args.rounds):
                order = [("viscurate", run_viscurate)] + ([("img2dataset", run_img2dataset)] if peer else [])
                if rnd % 2:
                    order.reverse()  # A/B, then B/A
                for tool, fn in order:
                    row = {"tool": tool, "round": rnd + 1, **fn(url_list, work)}
                    rows.append(row)
                    print(f"[urls] round {rnd + 1} {tool:12s} {row['images']:6d} images {row['seconds']:7.1f} s "
                          f"{row['images_per_s']:7.1f} images/s  peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
        finally:
            server.close()
    print()
    print(f"{args.urls} URLs, {len(files)} distinct photos, {served / 2**20:.0f} MiB served, "
          f"{args.latency * 1000:.0f} ms latency, {os.cpu_count()} cores")
    print("| tool | images | images/s (each round) | best images/s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for tool in dict.fromkeys(r["tool"] for r in rows):
        mine = [r for r in rows if r["tool"] == tool]
        rates = ", ".join(f"{r['images_per_s']:.1f}" for r in mine)
        print(f"| {tool} | {mine[-1]['images']} | {rates} | {max(r['images_per_s'] for r in mine):.1f} | "
              f"{max(r['peak_rss_mb'] for r in mine):.0f} |")
    out = BENCH / "results" / f"urls-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"urls": args.urls, "photos": len(files), "bytes": served, "latency_s": args.latency,
                               "cores": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
