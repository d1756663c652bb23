"""Reads keep answering while a long job writes (docs/decisions.md #22): a real ``viscurate label`` over 120
real photos runs in a subprocess while the CLI, the Python API (in another process) and the REST API read
the dataset, each read timed. Every reader runs with a lock timeout of :data:`LOCK_WAIT` seconds, so a
read that waits longer for the writer fails outright, whatever the machine's load; the wall times are
checked too (more loosely: the test machine has 2 shared cores). Every read must see the last committed
batch: counts that only grow, by whole batches. A ``kill -9`` in the middle leaves exactly the committed
batches, and the next run finishes the rest without duplicates. A label job of the server (same process
as its readers) lets the REST reads in the same way; a stream of readers does not starve a writer, and
another writer stays out throughout.

Without the catalog letting readers in, these reads wait for the whole run and fail after the lock
timeout ("dataset 'fresh' is being written by process ...")."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from viscurate import Dataset

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from tests.fixtures.photo_variants import make_photo_variants  # noqa: E402
from tests.test_server_api import _Server  # noqa: E402
from viscurate.server.app import create_app  # noqa: E402

N_PHOTOS = 120
LABELLED = {"object_analysis_processed": True}
#: The readers' lock timeout (seconds): a read the writer keeps out longer fails with DatasetBusy. The
#: writer keeps readers out for one batch commit at most (~0.5 s here, more under load).
LOCK_WAIT = 3.0
#: Wall time of one API or REST read, and their median (seconds).
READ_LIMIT = 5.0
READ_MEDIAN = 1.0
#: A CLI read also starts a Python interpreter and imports viscurate (~0.6 s on an idle machine).
CLI_LIMIT = 30.0


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photo_variants(tmp_path_factory.mktemp("rdw") / "photos", N_PHOTOS)


@pytest.fixture
def fresh(tmp_path, photos) -> Path:
    """A workspace with the dataset ``fresh``: the photos ingested, nothing labelled. Returns its home."""
    home = tmp_path / "home"
    ds = Dataset.create("fresh", home)
    ds.add_images(photos, progress=False, workers=0)
    ds.close()
    return home


def _env(home: Path, wait: float | None = None) -> dict:
    env = dict(os.environ, VISCURATE_HOME=str(home), COLUMNS="200", NO_COLOR="1")
    if wait is not None:
        env["VISCURATE_LOCK_TIMEOUT"] = str(wait)
    return env


def _cli(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "viscurate.cli.app", "--wait", str(LOCK_WAIT), *args],
                          capture_output=True, text=True, env=_env(home), timeout=120, **kw)


def _whole_batches(seen: list[int], batch: int, total: int = N_PHOTOS) -> None:
    """Counts a reader saw: never shrinking, and always a number of whole committed batches."""
    assert seen == sorted(seen), f"a later read saw less: {seen}"
    assert all(n % batch == 0 or n == total for n in seen), f"a read saw part of a batch: {seen}"


API_READER = """
import json, sys, time
from viscurate import Dataset
ds = Dataset.open("fresh", lock_timeout=float(sys.argv[2]))
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    t = time.monotonic()
    n = ds.count({"object_analysis_processed": True})  # an error ends this process with its message
    page = ds.find({"object_analysis_processed": True}, page=2, page_size=5)
    print(json.dumps([round(time.monotonic() - t, 4), n, page["length"]]), flush=True)
    if n >= int(sys.argv[1]):
        break
    time.sleep(0.05)
"""


def _check_times(kind: str, seconds: list[float], limit: float = READ_LIMIT, median: float = READ_MEDIAN) -> None:
    assert max(seconds) <= limit and sorted(seconds)[len(seconds) // 2] <= median, \
        f"{kind} reads took {sorted(round(s, 2) for s in seconds)}"


def test_cli_api_and_rest_reads_answer_during_a_cli_label_run(fresh, monkeypatch):
    monkeypatch.setenv("VISCURATE_LOCK_TIMEOUT", str(LOCK_WAIT))  # the REST server's reads
    label = subprocess.Popen([sys.executable, "-m", "viscurate.cli.app", "label", "fresh", "--models",
                              "detector", "--no-progress", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(fresh, wait=10))
    api = subprocess.Popen([sys.executable, "-c", API_READER, str(N_PHOTOS), str(LOCK_WAIT)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=_env(fresh))
    cli_reads: list[tuple[float, str, int]] = []
    rest_reads: list[tuple[float, int]] = []
    errors: list[str] = []

    def cli_reader() -> None:
        k = 0
        while label.poll() is None:
            k += 1
            t = time.monotonic()
            if k % 2:
                out = _cli(fresh, "count", "fresh", json.dumps(LABELLED))
                n = int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else -1
            else:
                out = _cli(fresh, "find", "fresh", json.dumps(LABELLED), "--page-size", "1", "--json")
                n = json.loads(out.stdout)["length"] if out.returncode == 0 else -1
            if out.returncode != 0:
                errors.append(out.stderr[-500:])
            cli_reads.append((time.monotonic() - t, "count" if k % 2 else "find", n))

    with _Server(create_app(fresh)) as client:
        def rest_reader() -> None:
            while label.poll() is None:
                t = time.monotonic()
                r = client.post("/v1/datasets/fresh/search", json={"q": LABELLED, "page": 1})
                if r.status_code != 200:
                    errors.append(r.text[-500:])
                    continue
                rest_reads.append((time.monotonic() - t, r.json()["length"]))
                time.sleep(0.05)

        threads = [threading.Thread(target=cli_reader), threading.Thread(target=rest_reader)]
        for th in threads:
            th.start()
        out, err = label.communicate(timeout=600)
        for th in threads:
            th.join(120)
        api_out, api_err = api.communicate(timeout=330)
    assert label.returncode == 0, err
    report = json.loads(out)
    assert report["processed"] == N_PHOTOS and report["failed"] == 0
    assert api.returncode == 0, api_err
    api_reads = [json.loads(line) for line in api_out.splitlines()]
    assert errors == []

    during = {n for _, _, n in cli_reads} | {n for _, n in rest_reads} | {n for _, n, _ in api_reads}
    assert len(during - {0, N_PHOTOS}) >= 3, f"the reads saw too little of the run: {sorted(during)}"
    _whole_batches([n for _, _, n in cli_reads], 16)
    _whole_batches([n for _, n in rest_reads], 16)
    _whole_batches([n for _, n, _ in api_reads], 16)
    assert all(length == n for _, n, length in api_reads)  # count and find of one read agree
    _check_times("cli", [s for s, _, _ in cli_reads], CLI_LIMIT, CLI_LIMIT)
    _check_times("rest", [s for s, _ in rest_reads])
    _check_times("api", [s for s, _, _ in api_reads])
    assert len(cli_reads) >= 1 and len(rest_reads) >= 5 and len(api_reads) >= 5
    assert Dataset.open("fresh", fresh).count(LABELLED) == N_PHOTOS


LABELLER = """
import time
from viscurate import Dataset

def committed(report):
    print(report.processed, flush=True)
    if report.processed >= 24:
        time.sleep(60)  # killed here: workers busy, results in flight, 3 batches committed

Dataset.open("fresh").label(models="detector", batch_size=8, progress=False, on_batch=committed)
"""


def test_a_killed_label_run_keeps_whole_batches_and_the_next_run_finishes_without_duplicates(fresh):
    proc = subprocess.Popen([sys.executable, "-c", LABELLER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(fresh), start_new_session=True)
    committed = []
    try:
        for line in proc.stdout:
            committed.append(int(line))
            if len(committed) >= 3:
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, mid-job
        proc.wait(30)
    assert len(committed) == 3, proc.stderr.read()
    ds = Dataset.open("fresh", fresh, lock_timeout=30)
    labelled = ds.count(LABELLED)  # readable at once (DuckDB replays the killed writer's log)
    assert labelled == committed[-1] == 24  # exactly the committed batches
    assert ds.count() == N_PHOTOS
    ds.close()
    report = ds.label(models="detector", progress=False)
    assert report.processed == N_PHOTOS - labelled and report.up_to_date == labelled
    assert ds.count(LABELLED) == N_PHOTOS and ds.count() == N_PHOTOS
    assert len(set(ds.ids())) == N_PHOTOS


def test_rest_reads_answer_during_a_label_job_of_the_same_server(fresh, monkeypatch):
    """The in-process case: the job and the requests share one Dataset object and one DuckDB instance."""
    monkeypatch.setenv("VISCURATE_LOCK_TIMEOUT", str(LOCK_WAIT))
    with _Server(create_app(fresh)) as client:
        r = client.post("/v1/datasets/fresh/jobs", json={"kind": "label", "model": "detector"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        reads: list[tuple[float, int]] = []
        while True:
            t = time.monotonic()
            found = client.post("/v1/datasets/fresh/search", json={"q": LABELLED, "page": 2})
            sample = client.get("/v1/datasets/fresh")
            assert found.status_code == 200 and sample.status_code == 200, (found.text, sample.text)
            reads.append((time.monotonic() - t, found.json()["length"]))
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.05)
    assert job["state"] == "done", job
    assert job["result"]["processed"] == N_PHOTOS
    seen = [n for _, n in reads]
    _whole_batches(seen, 16)
    assert len(set(seen) - {0, N_PHOTOS}) >= 2, seen
    _check_times("rest", [s for s, _ in reads])


WRITER = """
import sys, time
from viscurate.store.catalog import Catalog
with Catalog(sys.argv[1], "plain", write=True) as cat:
    print("open", flush=True)
    for b in range(20):
        cat.write([{"_id": f"w{b:02d}-{i}", "width": b} for i in range(10)])
        time.sleep(0.3)  # the job's work between two batches (6 s in all, past the readers' timeout)
    print(getattr(cat, "pauses", 0), flush=True)
"""


def test_neither_a_stream_of_readers_nor_the_writer_starves_the_other(tmp_path):
    """No models: a writer commits 20 batches with a moment of work between them while 6 readers (each its
    own Dataset, so its own shared lock) read without a pause. The writer finishes, every read gets in
    within the lock timeout and sees whole batches, and another writer stays out all along."""
    home = tmp_path / "home"
    ds = Dataset.create("plain", home)
    ds.close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(ds.directory)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env(home))
    assert writer.stdout.readline().strip() == "open", writer.stderr.read()
    seen: dict[int, list[int]] = {k: [] for k in range(6)}
    waits: list[float] = []
    errors: list[str] = []

    def reader(k: int) -> None:
        mine = Dataset.open("plain", home, lock_timeout=LOCK_WAIT)
        while writer.poll() is None:
            t = time.monotonic()
            try:
                seen[k].append(mine.count({"_id": {"$regex": "^w"}}))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return
            waits.append(time.monotonic() - t)
        mine.close()

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(6)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    other = _cli(home, "tag", "plain", "{}", "sneaked-in")  # waits LOCK_WAIT for the writer, in vain
    out, err = writer.communicate(timeout=120)
    took = time.monotonic() - t0
    for th in threads:
        th.join(30)
    assert writer.returncode == 0, err
    assert errors == []
    assert other.returncode != 0 and f"by process {writer.pid}" in other.stderr, other.stderr
    assert int(out.split()[-1]) >= 5  # the writer let the readers in, again and again
    assert took < 60, f"the writer took {took:.0f}s among the readers"
    for k, counts in seen.items():
        _whole_batches(counts, 10, total=200)
    assert len({n for counts in seen.values() for n in counts} - {0, 200}) >= 5
    assert max(waits) <= READ_LIMIT
    assert Dataset.open("plain", home).count({"tags": "sneaked-in"}) == 0


def test_a_writable_catalog_lets_readers_in_when_idle_and_not_inside_hold(tmp_path):
    """The mechanism on its own, in one process: between two calls (the job computing) a reader gets in
    and sees the last commit; inside ``hold()`` it waits until the block ends, then sees all of it."""
    from viscurate.store.catalog import Catalog
    from viscurate.store.connection import LET_IN_AFTER
    ds = Dataset.create("unit", tmp_path / "home")
    reader = Dataset.open("unit", tmp_path / "home", lock_timeout=LOCK_WAIT)

    with Catalog(ds.directory, "unit", write=True) as cat:
        cat.write([{"_id": f"a{i}"} for i in range(10)])
        time.sleep(LET_IN_AFTER)
        t = time.monotonic()
        assert reader.count() == 10  # the writer is idle: it lets the reader in
        assert time.monotonic() - t < READ_LIMIT and cat.pauses == 1
        reader.close()
        cat.write([{"_id": f"b{i}"} for i in range(10)])  # takes the dataset back by itself
        got: list[tuple[float, int]] = []
        with cat.hold():
            cat.write([{"_id": f"c{i}"} for i in range(10)])
            th = threading.Thread(target=lambda: got.append((reader.count(), time.monotonic())))
            th.start()
            time.sleep(1.0)  # readers wait: the block is one unit
            cat.write([{"_id": f"d{i}"} for i in range(10)])
            ended = time.monotonic()
        th.join(LOCK_WAIT + 5)
        assert got and got[0][0] == 40 and got[0][1] >= ended  # all of the block, after it
        assert cat.count() == 40  # and the writer goes on after letting it in
    assert Dataset.open("unit", tmp_path / "home").count() == 40
