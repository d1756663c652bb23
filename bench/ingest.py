"""Ingest benchmark: viscurate vs fastdup vs CleanVision on the same folders.

    python bench/ingest.py [--corpus ~/.cache/corpus] [--subset N] [--skip-peers]

For each folder (``real/``: 1,210 real images, ``stress/``: 743 hostile Pillow test files) each tool
runs once, cold, as its own process tree, and is measured from the outside (bench/proctree.py):
wall seconds of the whole command (interpreter start and imports included), peak RSS / PSS of the
process tree.  MB/s = bytes of every input file in the folder (manifest.csv excluded) / seconds.

* viscurate: ``viscurate ingest <folder> --dataset bench --home <fresh tmpdir>`` (the console script
  of the project venv, else ``python -m viscurate.cli.app``); a fresh --home each run, so it is a
  full cold ingest.  Until that command exists the row says "not available".
* fastdup: bench/peers/fastdup_run.py in bench/.venvs/fastdup (stats-only run, 2 threads).
* CleanVision: bench/peers/cleanvision_run.py in bench/.venvs/cleanvision (find_issues defaults, n_jobs=2).

The page cache is warmed (every input file read once) before the timings, so no tool pays for the
first read from disk.  Results go to bench/results/ingest-<date>[-subsetN].json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "peers"))

from proctree import run_measured  # noqa: E402
from report import _f as format_value  # noqa: E402
from common import MIB, NO_TELEMETRY_ENV, input_files  # noqa: E402

FOLDERS = ("real", "stress")
PEERS = {
    "fastdup": BENCH / "peers" / "fastdup_run.py",
    "cleanvision": BENCH / "peers" / "cleanvision_run.py",
}


# ----------------------------------------------------------------------------------------- machine
def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------------------- inputs
def make_subset(src: Path, n: int, dst: Path) -> Path:
    """``n`` files spread evenly over ``src`` (sorted paths), same relative layout, hard links
    where possible (else copies)."""
    files = input_files(str(src))
    if n >= len(files):
        return src
    step = len(files) / n
    pick = [files[int(i * step)] for i in range(n)]
    for f in pick:
        rel = os.path.relpath(f, src)
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, out)
        except OSError:
            shutil.copy2(f, out)
    return dst


def warm_page_cache(folder: Path) -> None:
    for f in input_files(str(folder)):
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass


# ----------------------------------------------------------------------------------------- viscurate
def viscurate_command() -> tuple[list[str] | None, dict[str, str], str]:
    """(argv prefix, extra env, how) for the viscurate CLI, or (None, {}, why not)."""
    env: dict[str, str] = {}
    override = os.environ.get("VISCURATE_BENCH_CMD")
    if override:  # e.g. "/opt/other/venv/bin/viscurate" (split on whitespace)
        return override.split(), env, override
    venv_bin = ROOT / ".venv" / "bin"
    script = venv_bin / "viscurate"
    if script.exists():
        return [str(script)], env, str(script)
    py = venv_bin / "python"
    if not py.exists():
        py = Path(sys.executable)
    # Not pip-installed (no console script): run the module from the source tree.
    env["PYTHONPATH"] = os.pathsep.join(
        x for x in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if x)
    return [str(py), "-m", "viscurate.cli.app"], env, f"{py} -m viscurate.cli.app"


def viscurate_available(prefix: list[str] | None, env: dict[str, str]) -> tuple[bool, str, str]:
    """(available, help text of `ingest`, reason if not)."""
    if prefix is None:
        return False, "", "no viscurate command"
    try:
        p = subprocess.run(prefix + ["ingest", "--help"], capture_output=True, text=True,
                           timeout=120, env={**os.environ, **env})
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "", f"{type(e).__name__}: {e}"
    if p.returncode != 0:
        last = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
        return False, "", f"`viscurate ingest --help` exit {p.returncode}: {last[0][:200]}"
    return True, p.stdout, ""


COUNT_PROBE = r"""
import json, sys
name, home = sys.argv[1], sys.argv[2]
out = {}
try:
    from viscurate.dataset import Dataset
except Exception as e:
    print(json.dumps({"error": f"import: {e}"})); sys.exit(0)
ds = None
for how in ("load", "open", "get"):
    f = getattr(Dataset, how, None)
    if f is None:
        continue
    try:
        ds = f(name, home=home); out["via"] = f"Dataset.{how}"; break
    except Exception as e:
        out.setdefault("tries", []).append(f"{how}: {type(e).__name__}: {e}"[:200])
if ds is not None:
    try:
        out["images"] = int(ds.count({}))
        out["failed"] = int(ds.count({"error": {"$exists": True}}))
    except Exception as e:
        out["error"] = f"count: {type(e).__name__}: {e}"[:300]
print(json.dumps(out))
"""


def _parse_counts(text: str, allow_text: bool = True) -> dict:
    """Counts from the CLI's own output: a JSON object line, else (``allow_text``) the last
    'N images|samples|files' and 'M failed|errors' in its text."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            imgs = next((d[k] for k in ("images", "ingested", "samples", "total", "files") if
                         isinstance(d.get(k), int)), None)
            fail = next((d[k] for k in ("failed", "errors", "error_count") if
                         isinstance(d.get(k), int)), None)
            if imgs is not None:
                return {"images": imgs, "failed": fail, "via": "cli json"}
    if not allow_text:
        return {}
    m_i = (re.findall(r"([\d,]+)\s+(?:images|samples|files)\b", text) or [None])[-1]
    m_f = (re.findall(r"([\d,]+)\s+(?:failed|errors?|unreadable|corrupt)\b", text) or [None])[-1]
    if m_i:
        return {"images": int(m_i.replace(",", "")),
                "failed": int(m_f.replace(",", "")) if m_f else None, "via": "cli text"}
    return {}


def run_viscurate(folder: Path, n_files: int, n_bytes: int, timeout: float, keep: bool) -> dict:
    prefix, env, how = viscurate_command()
    ok, help_text, why = viscurate_available(prefix, env)
    base = {"tool": "viscurate", "version": _viscurate_version(), "files": n_files, "bytes": n_bytes}
    if not ok:
        return {**base, "status": "not available", "error": why}
    home = Path(tempfile.mkdtemp(prefix="vc-bench-home-"))
    try:
        argv = prefix + ["ingest", str(folder), "--dataset", "bench", "--home", str(home)]
        for flag in ("--workers", "--jobs"):
            if re.search(rf"(?<![\w-]){flag}\b", help_text):
                argv += [flag, "2"]
                break
        m = run_measured(argv, env={**os.environ, **NO_TELEMETRY_ENV, **env}, timeout=timeout)
        res = {**base, "mode": how + " ingest", "argv": argv[len(prefix):],
               "seconds": round(m.seconds, 3), "peak_rss_mb": round(m.peak_rss_mb, 1),
               "peak_pss_mb": round(m.peak_pss_mb, 1),
               "max_single_rss_mb": round(m.max_single_rss_mb, 1),
               "peak_procs": m.peak_procs, "returncode": m.returncode}
        if m.timed_out:
            return {**res, "status": "timeout"}
        if m.returncode != 0:
            tail = (m.stderr or m.stdout).strip().splitlines()[-3:]
            return {**res, "status": "crashed", "error": " | ".join(tail)[:500]}
        # Counts: the CLI's JSON line if it prints one, else the dataset itself (untimed probe
        # through the Python API), else numbers scraped from the CLI's text.
        output = m.stdout + "\n" + m.stderr
        counts = _parse_counts(output, allow_text=False)
        probe_err = None
        if "images" not in counts or counts.get("failed") is None:
            # Not timed: open the dataset the run wrote and count its samples / errors.
            try:
                py = prefix[0] if len(prefix) > 1 else str(ROOT / ".venv" / "bin" / "python")
                p = subprocess.run([py, "-c", COUNT_PROBE, "bench", str(home)], capture_output=True,
                                   text=True, timeout=600, env={**os.environ, **env})
                probe = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
                if "images" in probe:
                    counts = {"images": probe["images"], "failed": probe.get("failed"),
                              "via": probe.get("via")}
                else:
                    probe_err = probe.get("error") or probe.get("tries") or p.stderr[-300:]
            except (OSError, subprocess.TimeoutExpired, ValueError) as e:
                probe_err = f"{type(e).__name__}: {e}"
            if "images" not in counts:
                counts = _parse_counts(output)
                if counts:
                    probe_err = None
        images = counts.get("images")
        res.update({
            "status": "ok",
            "images": images,
            "failed": counts.get("failed"),
            "skipped": (n_files - images) if isinstance(images, int) else None,
            "counts_via": counts.get("via"),
            "images_per_s": round(images / m.seconds, 2) if images else None,
            "mb_per_s": round(n_bytes / MIB / m.seconds, 2),
        })
        if probe_err:
            res["note"] = f"could not count images: {probe_err}"[:300]
        return res
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def _viscurate_version() -> str | None:
    try:
        p = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                            "import viscurate; print(viscurate.__version__)"],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        v = p.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        v = None
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        sha = ""
    return f"{v}+{sha}" if v and sha else v


# ----------------------------------------------------------------------------------------- peers
def run_peer(tool: str, folder: Path, workroot: Path, timeout: float,
             extra: list[str] | None = None, label: str | None = None) -> dict:
    py = BENCH / ".venvs" / tool / "bin" / "python"
    if not py.exists():
        return {"tool": tool, "status": "not available",
                "error": f"{py} missing: run bash bench/setup_peers.sh"}
    label = label or tool
    work = workroot / f"{label}-{folder.name}"
    cmd = [str(py), str(PEERS[tool]), str(folder), str(work), "--threads", "2",
           "--timeout", str(timeout), *(extra or [])]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 120)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "status": "timeout"}
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return {"label": label, **json.loads(line)}
            except ValueError:
                break
    return {"tool": tool, "label": label, "status": "crashed",
            "error": f"runner exit {p.returncode}: {(p.stderr or p.stdout)[-300:]}"}


# ----------------------------------------------------------------------------------------- report
def speedups(rows: list[dict]) -> dict:
    vis = next((r for r in rows if r["tool"] == "viscurate"), None)
    out = {}
    for r in rows:
        if r["tool"] == "viscurate":
            continue
        key = r.get("label") or r["tool"]
        if not vis or vis.get("status") != "ok":
            out[key] = None
        elif r.get("status") != "ok":
            out[key] = f"peer {r.get('status')}"
        else:
            out[key] = round(r["seconds"] / vis["seconds"], 2)
    return out


def _fmt(v, nd=1):
    return format_value(v, nd)


def print_table(results: dict) -> None:
    headers = ["folder", "tool", "status", "images", "failed", "skipped", "seconds", "images/s",
               "MB/s", "peak RSS MB", "peak PSS MB", "speed-up"]
    body, notes = [], []
    for folder, block in results["folders"].items():
        sp = block["speedup_vs"]
        for r in block["runs"]:
            label = r.get("label") or r["tool"]
            status = r.get("status") or "-"
            for k in ("error", "note"):
                if r.get(k):
                    notes.append(f"{folder}/{label}: {k}: {r[k]}")
            s = "" if r["tool"] == "viscurate" else sp.get(label)
            s = f"{s:.2f}x" if isinstance(s, float) else ("-" if s is None else str(s))
            body.append([folder,
                         f"{label} {r.get('version') or ''}".strip(), status,
                         _fmt(r.get("images")), _fmt(r.get("failed")), _fmt(r.get("skipped")),
                         _fmt(r.get("seconds"), 2), _fmt(r.get("images_per_s")),
                         _fmt(r.get("mb_per_s")), _fmt(r.get("peak_rss_mb"), 0),
                         _fmt(r.get("peak_pss_mb"), 0), s])
    m = results["machine"]
    title = (f"Ingest benchmark - {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM"
             + (f" - subset {results['subset']}" if results.get("subset") else "") + " - "
             + ", ".join(f"{f}: {b['files']:,} files, {b['bytes'] / MIB:,.0f} MB"
                         for f, b in results["folders"].items()))
    foot = ("speed-up = peer seconds / viscurate seconds on the same folder (wall time of the whole "
            "command); MB = MiB; images = files the tool picked up, failed = of those, unreadable")
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, caption=foot)
        for h in headers:
            t.add_column(h, justify="left" if h in ("folder", "tool", "status") else "right")
        for row in body:
            t.add_row(*row)
        con = Console(width=max(180, Console().width))
        con.print(t)
        for n in notes:
            con.print(" - " + n, highlight=False, markup=False)
    except ImportError:
        print(title)
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for row in body:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        print(foot)
        for n in notes:
            print(" - " + n)


# ----------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=os.path.expanduser("~/.cache/corpus"))
    ap.add_argument("--subset", type=int, default=0, help="use N files per folder (evenly spread)")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--tools", default="viscurate,fastdup,cleanvision",
                    help="comma-separated subset of viscurate,fastdup,cleanvision")
    ap.add_argument("--folders", default=",".join(FOLDERS))
    ap.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    ap.add_argument("--fastdup-mode", choices=["stats", "full"], default="stats",
                    help="fastdup stats-only run (default) or its full run (embeddings + NN)")
    ap.add_argument("--no-prescreen", action="store_true",
                    help="do not re-run a crashed CleanVision on pre-screened files")
    ap.add_argument("--keep", action="store_true", help="keep work dirs / viscurate homes")
    ap.add_argument("--out", help="results JSON path (default bench/results/ingest-<date>.json)")
    a = ap.parse_args()

    corpus = Path(a.corpus).expanduser()
    tools = [t for t in a.tools.split(",") if t]
    if a.skip_peers:
        tools = [t for t in tools if t not in PEERS]
    scratch = Path(tempfile.mkdtemp(prefix="vc-bench-ingest-"))
    today = dt.date.today().isoformat()
    out_path = Path(a.out) if a.out else (
        BENCH / "results" / f"ingest-{today}{f'-subset{a.subset}' if a.subset else ''}.json")
    results = {"benchmark": "ingest", "date": dt.datetime.now().isoformat(timespec="seconds"),
               "machine": machine_info(), "corpus": str(corpus), "subset": a.subset or None,
               "peer_versions": _peer_versions(), "folders": {}}
    try:
        for name in [f for f in a.folders.split(",") if f]:
            src = corpus / name
            if not src.is_dir():
                print(f"[ingest] {src} missing: build the corpus (python /work/shared/corpus/build.py)",
                      file=sys.stderr)
                return 2
            folder = make_subset(src, a.subset, scratch / "subset" / name) if a.subset else src
            files = input_files(str(folder))
            n_bytes = sum(os.path.getsize(f) for f in files)
            warm_page_cache(folder)
            runs = []
            for tool in tools:
                print(f"[ingest] {name}: {tool} on {len(files)} files ...", file=sys.stderr, flush=True)
                if tool == "viscurate":
                    r = run_viscurate(folder, len(files), n_bytes, a.timeout, a.keep)
                elif tool == "fastdup":
                    r = run_peer(tool, folder, scratch / "work", a.timeout,
                                 ["--mode", a.fastdup_mode],
                                 label="fastdup" if a.fastdup_mode == "stats" else "fastdup-full")
                else:
                    r = run_peer(tool, folder, scratch / "work", a.timeout)
                print(f"[ingest]   -> {json.dumps(r)}", file=sys.stderr, flush=True)
                runs.append(r)
                if tool == "cleanvision" and r.get("status") == "crashed" and not a.no_prescreen:
                    # CleanVision stops at the first file it cannot handle: also time it on the
                    # files that survive an (untimed) pre-screen with its own per-image code.
                    print(f"[ingest] {name}: cleanvision crashed; again with --prescreen ...",
                          file=sys.stderr, flush=True)
                    r = run_peer(tool, folder, scratch / "work", a.timeout, ["--prescreen"],
                                 label="cleanvision+prescreen")
                    print(f"[ingest]   -> {json.dumps(r)}", file=sys.stderr, flush=True)
                    runs.append(r)
            results["folders"][name] = {"path": str(folder), "files": len(files), "bytes": n_bytes,
                                        "runs": runs, "speedup_vs": speedups(runs)}
    finally:
        if not a.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"[ingest] work dirs kept in {scratch}", file=sys.stderr)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    vis = [r for b in results["folders"].values() for r in b["runs"] if r["tool"] == "viscurate"]
    if vis and all(r.get("status") == "not available" for r in vis):
        print(f"viscurate: not available ({vis[0].get('error')}); peers only.")
    print(f"results: {out_path}")
    return 0


def _peer_versions() -> dict:
    p = BENCH / ".venvs" / "versions.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
