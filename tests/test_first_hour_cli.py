"""A new user's first hour on the command line, as they run it (the installed console script, a subprocess)
on real photos labelled by the real default models: paths that stay readable at 80 columns, paging past
the end, misspelled fields and operators, re-tagging, object duplicates by file name, a COCO export that
works from auto-labels, the README's Python example, and a server that cleans up after itself."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import VISCURATE, skimage_photo, viscurate_cli
from viscurate import Dataset

ROOT = Path(__file__).resolve().parent.parent
DEEP = "newcomer/holiday-pictures-from-the-family-archive/2024-summer/camera-roll"  # a path wider than 80


run = viscurate_cli


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """A workspace with dataset ``pets``: real photos deep in folders (chelsea's cat also pasted, mirrored,
    into another scene), one broken file, ingested and auto-labelled by the default models."""
    root = tmp_path_factory.mktemp("first-hour")
    photos = root / DEEP
    photos.mkdir(parents=True)
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        shutil.copy(skimage_photo(name), photos / name)
    cat = Image.open(skimage_photo("chelsea.png")).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    cat = cat.resize((cat.width * 7 // 10, cat.height * 7 // 10), Image.Resampling.LANCZOS)
    canvas = Image.open(skimage_photo("coffee.png")).convert("RGB").resize((cat.width + 160, cat.height + 60))
    canvas = Image.fromarray((np.asarray(canvas) // 3).astype(np.uint8))
    canvas.paste(cat, (140, 30))
    canvas.save(photos / "cat_elsewhere.jpg", quality=90)
    blob = (photos / "cat_elsewhere.jpg").read_bytes()
    (photos / "broken.jpg").write_bytes(blob[: len(blob) // 3])
    home = root / "home"
    run(home, "ingest", photos, "--dataset", "pets", "--no-progress")
    ds = Dataset("pets", home)
    ds.label(progress=False)
    return home


def test_find_keeps_the_file_name_visible_at_80_columns(pets):
    out = run(pets, "find", "pets", '{"issues": "corrupt"}', columns=80).stdout
    assert "broken.jpg" in out and "…" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    line = next(line for line in out.splitlines() if "broken.jpg" in line)
    assert re.search(r"…/[^│]*broken\.jpg", line)  # the middle elided, whole folder names kept


def test_a_page_past_the_end_says_so(pets):
    out = run(pets, "find", "pets", "{}", "--page", "2").stdout
    assert "page 2 is past the end: 5 match(es) on 1 page" in out
    assert "0 match(es)" not in out and "page 2 of 1" not in out


def test_a_misspelled_field_is_a_warning_with_the_closest_field(pets):
    proc = run(pets, "find", "pets", '{"isues": "corrupt"}')
    assert "no sample has field 'isues' — did you mean 'issues'?" in proc.stderr
    proc = run(pets, "find", "pets", '{"object_analysis.nmae": "cat"}', "--json")
    page = json.loads(proc.stdout)  # stdout stays clean JSON; the warning is in it and on stderr
    assert page["warnings"] == ["no sample has field 'object_analysis.nmae' — did you mean 'object_analysis.name'?"]
    assert "did you mean 'object_analysis.name'?" in proc.stderr
    assert "did you mean 'issues'" in run(pets, "count", "pets", '{"isues": "dark"}').stderr
    for fine in ('{"object_analysis.name": "cat"}', '{"_id": "x"}', '{"issues": "corrupt", "error": {"$exists": true}}',
                 '{"object_analysis": {"$elemMatch": {"name": "cat", "confidence": {"$gt": 0.5}}}}',
                 '{"$or": [{"classifications.name": "x"}, {"quality.blur": {"$lt": 1}}]}'):
        proc = run(pets, "find", "pets", fine, "--json")
        assert proc.stderr == "" and "warnings" not in json.loads(proc.stdout), fine


def test_an_unknown_operator_is_an_error_naming_the_closest(pets):
    proc = run(pets, "find", "pets", '{"width": {"$gtee": 100}}', check=False)
    assert proc.returncode == 2
    assert "unknown operator $gtee on field width — did you mean $gte?" in proc.stderr
    assert "$lte" in proc.stderr  # the valid ones are listed


def test_tagging_again_says_how_many_had_the_tag(pets):
    assert "tagged 2 sample(s)" in run(pets, "tag", "pets", '{"width": {"$gt": 500}}', "big").stdout
    out = run(pets, "tag", "pets", '{"width": {"$gt": 100}, "issues": {"$ne": "corrupt"}}', "big").stdout
    assert "tagged 2 sample(s); 2 already had 'big'" in out


def test_object_duplicates_name_the_files(pets):
    out = run(pets, "object-duplicates", "pets").stdout
    row = next(line for line in out.splitlines() if "cat_elsewhere.jpg" in line)
    assert "chelsea.png" in row and "camera-roll/" in row  # both images, by folder and file name


def test_a_coco_export_of_auto_labels_loads_in_pycocotools(pets, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "pets.json"
    proc = run(pets, "export", "pets", out, "--format", "coco", umask=0o022)
    assert "(boxes of object_analysis)" in proc.stdout and "left out 1 corrupt sample(s)" in proc.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    coco = COCO(str(out))
    assert len(coco.getImgIds()) == 4 and all(im["width"] and im["height"] for im in coco.imgs.values())
    cats = {c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert "cat" in cats and len(coco.getAnnIds()) >= 4
    assert {Path(im["file_name"]).name for im in coco.imgs.values()} == {
        "chelsea.png", "coffee.png", "astronaut.png", "cat_elsewhere.jpg"}

    jsonl = tmp_path / "pets.jsonl"
    run(pets, "export", "pets", jsonl, umask=0o027)
    assert stat.S_IMODE(jsonl.stat().st_mode) == 0o640 and len(jsonl.read_text().splitlines()) == 5


def test_a_coco_export_prefers_ground_truth(pets, tmp_path):
    ds = Dataset("pets", pets)
    sid = ds.ids({"filepath": {"$regex": "chelsea"}})[0]
    ds.update(sid, {"$set": {"ground_truth": {"detections": [{"name": "kitty", "bbox": [10, 10, 200, 200]}]}}})
    try:
        out = tmp_path / "gt.json"
        assert "(boxes of ground_truth.detections)" in run(pets, "export", "pets", out, "-f", "coco").stdout
        data = json.loads(out.read_text())
        assert [c["name"] for c in data["categories"]] == ["kitty"] and len(data["annotations"]) == 1
    finally:
        ds.update(sid, {"$unset": {"ground_truth": ""}})


def readme_python() -> str:
    """The Python example of README.md, exactly as written there."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no Python example"
    return blocks[0]


def test_the_readme_python_example_runs_as_written(tmp_path):
    code = readme_python()
    assert '"~/datasets/pets"' in code  # the folder this test fills with real photos
    user = tmp_path / "user"
    pets = user / "datasets" / "pets"
    (pets / "thumbs").mkdir(parents=True)
    for name in ("chelsea.png", "coffee.png", "astronaut.png", "camera.png"):
        shutil.copy(skimage_photo(name), pets / name)
    shutil.copy(skimage_photo("chelsea.png"), pets / "thumbs" / "chelsea-small.png")  # excluded by the example
    env = dict(os.environ, HOME=str(user), VISCURATE_HOME=str(tmp_path / "workspace"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 added, 0 could not be decoded" in proc.stdout
    assert re.search(r"^1 \[.*/datasets/pets/chelsea\.png'\]$", proc.stdout, re.M), proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_removes_running_json_when_stopped(tmp_path):
    home = tmp_path / "home"
    announce = home / "server" / "running.json"
    announce.parent.mkdir(parents=True)
    announce.write_text(json.dumps({"pid": 2**22 + 12345, "url": "http://127.0.0.1:1", "since": 0}))  # a dead server's
    env = dict(os.environ, VISCURATE_HOME=str(home))
    for sig in (signal.SIGTERM, signal.SIGINT):
        server = subprocess.Popen([VISCURATE, "serve", "--port", str(_free_port())], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (announce.is_file() and json.loads(announce.read_text() or "{}").get("pid") == server.pid):
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.1)
            time.sleep(1)  # let uvicorn install its signal handlers
            server.send_signal(sig)
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
        assert not announce.exists(), f"running.json left behind after {sig.name}"
