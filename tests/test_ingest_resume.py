"""kill -9 in the middle of an ingest, then run it again: every file exactly once, nothing lost."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viscurate.pipeline import ingest
from viscurate.store.catalog import Catalog

N_FILES = 400

SCRIPT = textwrap.dedent("""
    import sys
    from viscurate.store.catalog import Catalog
    from viscurate.pipeline.ingest import ingest

    def committed(report):
        print("committed", report.added, flush=True)

    with Catalog(sys.argv[1], "resume", write=True) as cat:
        ingest(cat, [sys.argv[2]], workers=2, batch_size=16, progress=False, on_batch=committed)
    print("finished", flush=True)
""")


def make_images(root: Path, n: int) -> list[Path]:
    """``n`` small real-looking images: random crops and resizes of scikit-image's photos."""
    import skimage
    data = Path(os.path.dirname(skimage.__file__)) / "data"
    sources = []
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "camera.png"):
        with Image.open(data / name) as im:
            sources.append(im.convert("RGB"))
    rng = random.Random(7)
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = rng.randint(w // 4, w // 2), rng.randint(h // 4, h // 2)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im = src.crop((x, y, x + cw, y + ch)).resize((rng.randint(96, 256), rng.randint(96, 256)))
        if i % 7 == 0:  # a little noise so that no two files are alike
            arr = np.asarray(im, dtype=np.int16) + np.random.default_rng(i).integers(-8, 8, (im.height, im.width, 3))
            im = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        sub = root / f"part{i % 5}" / f"g{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / (f"img{i:04d}.jpg" if i % 3 else f"img{i:04d}.png")
        im.save(p, quality=85) if p.suffix == ".jpg" else im.save(p)
        out.append(p)
    return out


def run_and_kill(ds: Path, src: Path, after_commits: int, timeout: float = 45.0) -> bool:
    """Start an ingest in a subprocess, SIGKILL it after ``after_commits`` committed batches.

    Returns False when the run finished before it could be killed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(ds), str(src)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    seen = 0
    finished = False
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("committed"):
                seen += 1
                if seen >= after_commits:
                    os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers must go by themselves
                    break
            elif line.startswith("finished"):
                finished = True
                break
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=30)
        if seen < after_commits and not finished:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the ingest subprocess died or stalled before committing a batch:\n{err[-3000:]}")
        # workers orphaned by the kill exit by themselves when their pipe closes (no CPU left burning)
        left = live_group_members(proc.pid)
        end = time.monotonic() + 15
        while left and time.monotonic() < end:
            time.sleep(0.1)
            left = live_group_members(proc.pid)
        assert not left, f"processes left running after the kill: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()
    return not finished


def live_group_members(pgid: int) -> list[str]:
    """Processes of the process group ``pgid`` that are still running (zombies do not count)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            out.append(f"{entry} {stat[stat.index('('):stat.rindex(')') + 1]} {state}")
    return out


def count(ds: Path) -> int:
    with Catalog(ds, "resume") as cat:
        return cat.count()


@pytest.mark.timeout(120)
def test_kill_9_then_resume(tmp_path: Path):
    src = tmp_path / "images"
    files = make_images(src, N_FILES)
    ds = tmp_path / "ds"

    killed = run_and_kill(ds, src, after_commits=1)
    first = count(ds)
    print(f"killed after 1 batch: {first} samples committed")
    assert killed, "the first run finished before it could be killed"
    assert 16 <= first < N_FILES and first % 16 == 0  # whole batches only

    killed = run_and_kill(ds, src, after_commits=5)  # a second crash, later in the work
    second = count(ds)
    print(f"killed after 5 more batches: {second} samples committed")
    assert second >= first + (16 * 5 if killed else 0) and (second < N_FILES or not killed)

    with Catalog(ds, "resume", write=True) as cat:  # the dataset lock was released by the killed runs
        rep = ingest(cat, [src], workers=2, batch_size=16, progress=False)
        assert rep.unchanged == second and rep.added == N_FILES - second and rep.changed == 0
        assert rep.files == N_FILES
        total = cat.count()
        origins = cat._sql("SELECT count(DISTINCT origin), count(DISTINCT _id), count(*) FROM samples")[0]
        assert total == N_FILES and origins == (N_FILES, N_FILES, N_FILES)
        docs = {d["origin"]: d for d in cat.iter_docs()}
        assert set(docs) == {str(p) for p in files}
        for p in files:
            d = docs[str(p)]
            assert d["size_bytes"] == p.stat().st_size and d["mtime"] == p.stat().st_mtime
            for k in ("hash", "width", "height", "format", "phash", "dhash", "quality", "histogram", "datetime"):
                assert k in d, (p, k)
            assert "corrupt" not in d["issues"]
        # and a further run has nothing to do
        rep = ingest(cat, [src], workers=2, progress=False)
        assert (rep.added, rep.changed, rep.unchanged) == (0, 0, N_FILES)
