"""Shared by the peer runners (standard library only: they run inside the peers' own venvs).

A peer runner is invoked as ``<venv>/bin/python bench/peers/<tool>_run.py INPUT WORKDIR``.
The *parent* process starts the same script again with ``--child`` under
:func:`bench.proctree.run_measured` (wall time and peak memory of the child's whole process tree,
measured from the outside), the child does the tool's work and writes its counts to a JSON file,
and the parent prints ONE JSON line that combines both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from proctree import run_measured  # noqa: E402

MIB = 1024 * 1024

#: Environment that switches telemetry / update checks off, for every peer.  Set by the parent
#: for the child (and re-asserted by the child before it imports the tool).
NO_TELEMETRY_ENV = {
    # fastdup: Python-side Sentry (fastdup/sentry.py checks only that the variable exists)
    "SENTRY_OPT_OUT": "1",
    # fastdup: skips dcheck_latest_version(), a GET to the PyPI JSON API at import time
    "FASTDUP_PRODUCTION": "1",
    # the generic opt-out convention (https://consoledonottrack.com); harmless elsewhere
    "DO_NOT_TRACK": "1",
}

MANIFEST_NAMES = {"manifest.csv"}


def input_files(folder: str) -> list[str]:
    """Every file under ``folder`` (recursively) except the corpus' manifest.csv files."""
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name in MANIFEST_NAMES:
                continue
            out.append(os.path.join(root, name))
    return out


def input_bytes(folder: str) -> tuple[int, int]:
    files = input_files(folder)
    return len(files), sum(os.path.getsize(f) for f in files)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(NO_TELEMETRY_ENV)
    if extra:
        env.update(extra)
    return env


def assert_no_telemetry_env() -> None:
    for k, v in NO_TELEMETRY_ENV.items():
        os.environ.setdefault(k, v)


def main(
    tool: str,
    child: Callable[[argparse.Namespace], dict[str, Any]],
    *,
    extra_env: dict[str, str] | None = None,
    add_args: Callable[[argparse.ArgumentParser], None] | None = None,
    output_notes: Callable[[str], str | None] | None = None,
    prepare: Callable[[argparse.Namespace, str], tuple[list[str], dict[str, Any]]] | None = None,
) -> int:
    p = argparse.ArgumentParser(description=f"Run {tool} on a folder and print one JSON line.")
    p.add_argument("input", help="folder of images")
    p.add_argument("workdir", help="scratch folder for the tool's output (created)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--child", metavar="RESULT_JSON", help=argparse.SUPPRESS)
    if add_args:
        add_args(p)
    a = p.parse_args()

    if a.child:  # ---------------------------------------------------------------- child
        assert_no_telemetry_env()
        try:
            res = child(a)
            res.setdefault("status", "ok")
        except BaseException as e:  # noqa: BLE001 - we report whatever killed the tool
            traceback.print_exc()
            res = {"status": "crashed", "error": f"{type(e).__name__}: {e}"[:500]}
        Path(a.child).write_text(json.dumps(res))
        return 0 if res["status"] == "ok" else 1

    # ------------------------------------------------------------------------------- parent
    inp = os.path.abspath(a.input)
    work = os.path.abspath(a.workdir)
    os.makedirs(work, exist_ok=True)
    result_file = os.path.join(work, f".{tool}-result.json")
    if os.path.exists(result_file):
        os.unlink(result_file)
    n_files, n_bytes = input_bytes(inp)
    argv = [sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:], "--child", result_file]
    prep: dict[str, Any] = {}
    if prepare is not None:  # untimed, in this (parent) process, before the measured child
        extra_argv, prep = prepare(a, work)
        argv += extra_argv
    m = run_measured(argv, env=child_env(extra_env), timeout=a.timeout)
    try:
        res = json.loads(Path(result_file).read_text())
    except (OSError, ValueError):
        tail = (m.stderr or m.stdout).strip().splitlines()[-3:]
        res = {"status": "timeout" if m.timed_out else "crashed",
               "error": f"exit code {m.returncode}; " + " | ".join(tail)[:500]}
    if m.timed_out:
        res["status"] = "timeout"
    for k, v in prep.items():
        res.setdefault(k, v)
    (Path(work) / f"{tool}-stdout.log").write_text(m.stdout)
    (Path(work) / f"{tool}-stderr.log").write_text(m.stderr)

    images = res.get("images")
    ok = res.get("status") == "ok"
    out = {
        "tool": tool,
        "version": res.get("version") or _dist_version(tool),
        "mode": res.get("mode"),
        "status": res.get("status"),
        "images": images,
        "failed": res.get("failed"),
        "excluded": res.get("excluded"),
        "skipped": (n_files - images) if isinstance(images, int) else None,
        "files": n_files,
        "bytes": n_bytes,
        "seconds": round(m.seconds, 3),
        "work_seconds": res.get("work_seconds"),
        # excluded (pre-screened away) files were not part of the timed run
        "images_per_s": (round((images - (res.get("excluded") or 0)) / m.seconds, 2)
                         if ok and images else None),
        "mb_per_s": round(n_bytes / MIB / m.seconds, 2) if ok else None,
        "peak_rss_mb": round(m.peak_rss_mb, 1),
        "peak_pss_mb": round(m.peak_pss_mb, 1),
        "max_single_rss_mb": round(m.max_single_rss_mb, 1),
        "peak_procs": m.peak_procs,
        "threads": a.threads,
        "returncode": m.returncode,
    }
    if output_notes is not None:
        note = output_notes(m.stdout + "\n" + m.stderr)
        if note:
            res["note"] = "; ".join(x for x in (res.get("note"), note) if x)
    for k in ("import_seconds", "prescreen_seconds"):
        if res.get(k) is not None:
            out[k] = res[k]
    for k in ("error", "note"):
        if res.get(k):
            out[k] = res[k]
    for k in ("pairs", "params"):  # duplicate finders: the pairs they report, and with which settings
        if k in res:
            out[k] = res[k]
    print(json.dumps(out), flush=True)
    return 0


def _dist_version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return None
