"""The round trip through a real Label Studio (PyPI's label-studio, in its own venv: it pins its own Django):
our tasks and label config go in through its REST API, its JSON export comes out, and our reader gives back the
same boxes, classes in order with their ids, box ids, attributes, flags, splits and sample ids.

The venv is built by tests/tools/labelstudio_venv.sh (bench/.venvs/label-studio, or $VISCURATE_LABELSTUDIO_VENV);
without it the test skips, except under CI (env CI set), where it fails. Label Studio runs on 127.0.0.1 with a
temporary data dir and SQLite, its update check, analytics and Sentry off and every proxy pointed at a closed
port, so nothing leaves the machine."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import _free_port, skimage_photos
from tests.format_records import assert_same_boxes
from viscurate.formats.labelstudio import read_labelstudio, write_labelstudio
from viscurate.formats.records import Category, LabeledImage

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("VISCURATE_LABELSTUDIO_VENV", REPO / "bench" / ".venvs" / "label-studio"))
TOKEN = "viscurate-test-token-0123456789"
#: Label Studio's switches for what it would send out: the PyPI version check, usage analytics, Sentry.
OFFLINE_ENV = {"LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
               "FRONTEND_SENTRY_DSN": "", "FEATURE_FLAGS_OFFLINE": "true"}


class Tripwire:
    """A listening socket on 127.0.0.1 that Label Studio gets as its HTTP(S) proxy: a request for the
    internet ends here (and fails) instead of leaving, and is counted, so the test sees it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.hits: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.hits.append(conn.recv(200))
                except OSError:
                    self.hits.append(b"")

    def env(self) -> dict[str, str]:
        return {k: self.url for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")} | {
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def _label_studio_binary() -> Path:
    exe = VENV / "bin" / "label-studio"
    if not exe.is_file():
        why = f"{exe} is missing: run `bash tests/tools/labelstudio_venv.sh` to build Label Studio's venv"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return exe


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A Label Studio on 127.0.0.1: ``(client, document_root, tripwire)``; local files are served from
    ``document_root`` (a temporary folder); ``tripwire.hits`` are its attempts to reach the internet."""
    exe = _label_studio_binary()
    data = tmp_path_factory.mktemp("ls-data")
    template = VENV / "template-data"  # migrated once by the venv script: a start takes seconds, not minutes
    if (template / "label_studio.sqlite3").is_file():
        shutil.copytree(template, data, dirs_exist_ok=True)
    root = tmp_path_factory.mktemp("ls-root")
    port = _free_port()
    tripwire = Tripwire()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(OFFLINE_ENV, **tripwire.env(), HOME=str(data), LABEL_STUDIO_BASE_DATA_DIR=str(data), DJANGO_DB="sqlite",
               LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true", LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(root),
               LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true", PYTHONDONTWRITEBYTECODE="1")
    log = open(data / "label-studio.log", "wb")
    proc = subprocess.Popen(
        [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data), "--username", "viscurate@example.org", "--password", "not-a-secret-123",
         "--user-token", TOKEN, "--enable-legacy-api-token"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {TOKEN}"},
                          timeout=60, trust_env=False)
    try:
        deadline = time.monotonic() + 300  # the first start migrates a new SQLite database (~1 min)
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError("Label Studio did not start:\n" + (data / "label-studio.log").read_text()[-3000:])
            time.sleep(1)
        yield client, root, tripwire
    finally:
        tripwire.sock.close()
        client.close()
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the dev server and its reloader child
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _records(images: Path) -> tuple[list[Category], list[LabeledImage]]:
    """Real photos with auto-labels (the predictions) and ground truth (the annotations) of every kind."""
    photos = skimage_photos(images, ("astronaut.png", "coffee.png", "chelsea.png"))
    (photos / "astronaut.png").rename(photos / "astronaute été & co.png")
    classes = [Category(7, "personne"), Category(2, "tasse à café"), Category(90, "chat"), Category(3, "unused")]
    truth = [
        [{"name": "personne", "bbox": [150.5, 20.25, 200.0, 480.0], "id": 101, "occluded": False,
          "attributes": {"pose": "debout", "helmet": True, "count": 2}},
         {"name": "tasse à café", "bbox": [0.0, 0.0, 30.0, 30.0], "id": "gt-b", "difficult": True,
          "attributes": {"pose": "assise", "weight": 0.25}}],
        [],
        [{"name": "chat", "bbox": [10.0, 12.0, 400.0, 280.0], "id": 103}],
    ]
    preds = [
        [{"name": "personne", "bbox": [148.0, 22.0, 205.5, 470.0], "confidence": 0.91, "id": 201},
         {"name": "chat", "bbox": [1.0, 2.0, 3.0, 4.0], "confidence": 0.12}],
        [{"name": "tasse à café", "bbox": [100.0, 50.0, 300.0, 250.0], "confidence": 0.66}],
        [],
    ]
    files = ["astronaute été & co.png", "coffee.png", "chelsea.png"]
    sizes = [(512, 512), (600, 400), (451, 300)]
    splits = ["train", "validation", None]
    records = [LabeledImage(str(photos / f), sample_id=f"sample-{n}", width=w, height=h, detections=p, split=s,
                            fields={"ground_truth": {"detections": t}})
               for n, (f, (w, h), p, t, s) in enumerate(zip(files, sizes, preds, truth, splits))]
    return classes, records


def _export(client: httpx.Client, project: int) -> list:
    """The project's JSON export with whole predictions (a snapshot export: the plain one lists only
    the prediction ids)."""
    r = client.post(f"/api/projects/{project}/exports/", json={
        "title": "viscurate round trip", "serialization_options": {"predictions": {"only_id": False}},
        "task_filter_options": {"only_with_annotations": False}})
    assert r.status_code == 201, r.text
    export = r.json()["id"]
    deadline = time.monotonic() + 60
    while (status := client.get(f"/api/projects/{project}/exports/{export}").json()["status"]) not in ("completed", "failed"):
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.2)
    assert status == "completed"
    r = client.get(f"/api/projects/{project}/exports/{export}/download", params={"exportType": "JSON"})
    assert r.status_code == 200, r.text
    return r.json()


def test_tasks_go_through_label_studio_and_come_back_unchanged(label_studio, tmp_path):
    client, root, tripwire = label_studio
    started = time.monotonic()
    classes, records = _records(root / "photos")
    report = write_labelstudio(records, tmp_path / "to_label", classes=classes, boxes_as="predictions",
                               annotations_field="ground_truth.detections", model_version="detector-1",
                               document_root=root)
    assert report["dropped"] == {}

    config = (tmp_path / "to_label" / "label_config.xml").read_text()
    r = client.post("/api/projects", json={"title": "viscurate round trip", "label_config": config})
    assert r.status_code == 201, r.text
    project = r.json()["id"]
    r = client.post("/api/storages/localfiles", json={"project": project, "title": "photos",
                                                      "path": str(root / "photos"), "use_blob_urls": True})
    assert r.status_code == 201, r.text
    tasks = json.loads((tmp_path / "to_label" / "tasks.json").read_text())
    r = client.post(f"/api/projects/{project}/import", json=tasks)
    assert r.status_code == 201, r.text
    assert (r.json()["task_count"], r.json()["annotation_count"], r.json()["prediction_count"]) == (3, 3, 3)

    # Label Studio serves each image from the reference we wrote (unicode, spaces and '&' quoted)
    for task, rec in zip(tasks, records):
        got = client.get(task["data"]["image"])
        assert got.status_code == 200, task["data"]["image"]
        assert got.content == Path(rec.file).read_bytes()

    # the project's label config, as Label Studio keeps it, still lists the classes in order with their ids
    stored_config = tmp_path / "project_config.xml"
    stored_config.write_text(client.get(f"/api/projects/{project}").json()["label_config"])

    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(_export(client, project)))
    for source, field in (("annotations", None), ("predictions", "detections")):
        labels = read_labelstudio(exported, label_config=stored_config, source=source, document_root=root)
        assert [(c.id, c.name) for c in labels.classes] == [(c.id, c.name) for c in classes]
        assert not labels.skipped
        got = sorted(labels, key=lambda rec: rec.sample_id)
        assert [g.sample_id for g in got] == [r.sample_id for r in records]
        for g, w in zip(got, records):
            want = w.detections if field else w.fields["ground_truth"]["detections"]
            assert (g.file, g.split) == (w.file, w.split)
            assert_same_boxes(g.detections, want, where=f"{source} of {w.sample_id}")

    # the plain export (what the Export button gives) reads the annotations the same way
    r = client.get(f"/api/projects/{project}/export", params={"exportType": "JSON", "download_all_tasks": "true"})
    assert r.status_code == 200
    (tmp_path / "plain.json").write_text(r.text)
    plain = sorted(read_labelstudio(tmp_path / "plain.json", label_config=stored_config, document_root=root),
                   key=lambda rec: rec.sample_id)
    for g, w in zip(plain, records):
        assert_same_boxes(g.detections, w.fields["ground_truth"]["detections"], where=f"plain {w.sample_id}")
    assert tripwire.hits == [], f"Label Studio tried to reach the internet: {tripwire.hits}"
    print(f"round trip through Label Studio: {time.monotonic() - started:.1f}s after its start")
