"""Ingest: real photos and hostile files into a catalog, incremental re-runs, archives, crashing workers."""
from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import shutil
import signal
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from viscurate.errors import ViscurateError
from viscurate.media import QualityThresholds
from viscurate.pipeline import IngestReport, ItemError, ProcessPool, ingest
from viscurate.sources import IMAGE_EXTENSIONS
from viscurate.store.catalog import Catalog
from viscurate.store.schema import PROFILE_FIELDS

DATETIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def real_photos() -> list[str]:
    """Every image bundled with scikit-image and scikit-learn (no downloads)."""
    import skimage
    import sklearn
    sk = os.path.join(os.path.dirname(skimage.__file__), "data")
    files = [p for p in sorted(glob.glob(os.path.join(sk, "*"))) if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
    files += sorted(glob.glob(os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", "*.jpg")))
    assert len(files) >= 20
    return files


def write_hostile(directory: Path) -> set[str]:
    """Hostile files; returns the names whose pixels must fail (flagged corrupt)."""
    try:
        from tests.fixtures.hostile import write_hostile_set
    except ImportError:  # pragma: no cover - the media engineer's fixture is the reference
        write_hostile_set = None
    if write_hostile_set is not None:
        expectations = write_hostile_set(directory)
        return {name for name, exp in expectations.items() if exp.get("pixels") is False}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "empty.jpg").write_bytes(b"")
    (directory / "text.jpg").write_text("not a jpeg\n" * 50)
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(jpeg, "JPEG")
    (directory / "truncated.jpg").write_bytes(jpeg.getvalue()[:300])
    return {"empty.jpg", "text.jpg", "truncated.jpg"}


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sid(origin: str) -> str:
    return hashlib.sha1(origin.encode()).hexdigest()[:24]


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, set[str]]:
    """A folder of real photos (nested) plus a hostile subfolder; returns (root, relative paths that fail)."""
    root = tmp_path / "photos"
    failing = set()
    for i, src in enumerate(real_photos()):
        dst = root / ("a" if i % 2 else "b/c") / os.path.basename(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)  # every bundled photo decodes (multipage_rgb.tif, float64, with tifffile)
    (root / "README.txt").write_text("not taken by default")
    failing |= {f"hostile/{n}" for n in write_hostile(root / "hostile")
                if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS}  # e.g. .eps is not taken by default
    return root, failing


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def all_docs(cat: Catalog) -> dict[str, dict]:
    return {d["origin"]: d for d in cat.iter_docs()}


def test_ingest_folder_and_incremental_reruns(tmp_path: Path, photos):
    root, failing = photos
    files = files_under(root)
    ds = tmp_path / "ds"
    with Catalog(ds, "ds", write=True) as cat:
        batches: list[int] = []
        rep = ingest(cat, [root], workers=2, batch_size=7, progress=False,
                     on_batch=lambda r: batches.append(r.added))
        assert isinstance(rep, IngestReport)
        assert (rep.added, rep.changed, rep.unchanged, rep.files) == (len(files), 0, 0, len(files))
        assert rep.failed == len(failing)
        assert len(batches) >= len(files) // 7  # committed in batches
        assert rep.bytes > 0 and rep.seconds > 0 and rep.images_per_s > 0 and rep.mb_per_s > 0

        docs = all_docs(cat)
        assert cat.count() == len(files) == len(docs)
        corrupt = set()
        for f in files:
            d = docs[str(f)]
            assert d["_id"] == sid(str(f))
            assert d["filepath"] == str(f) and d["source"] == "local"
            assert d["mtime"] == os.stat(f).st_mtime
            assert DATETIME_RE.match(d["datetime"])
            assert isinstance(d["issues"], list)
            if "corrupt" in d["issues"]:
                corrupt.add(f.relative_to(root).as_posix())
                assert d["error"]
            else:
                assert d["hash"] == sha256(f) and d["size_bytes"] == f.stat().st_size
                assert d["width"] > 0 and d["height"] > 0 and d["phash"] and "quality" in d
        assert corrupt == failing
        assert not any(o.endswith("README.txt") for o in docs)

        # ---- re-run: nothing changed, nothing rewritten
        time.sleep(1.1)  # so that a rewrite would show in `datetime`
        rep = ingest(cat, [root], workers=2, progress=False)
        assert (rep.added, rep.changed, rep.unchanged, rep.failed, rep.bytes) == (0, 0, len(files), 0, 0)
        assert all_docs(cat) == docs

        # ---- touch: new mtime, same bytes -> unchanged, the stored mtime follows
        touched = files[0]
        st = touched.stat()
        os.utime(touched, (st.st_atime, st.st_mtime + 1000))
        rep = ingest(cat, [root], workers=2, progress=False)
        assert (rep.added, rep.changed, rep.unchanged) == (0, 0, len(files))
        d = cat.get(sid(str(touched)))
        assert d["mtime"] == st.st_mtime + 1000 and d["datetime"] == docs[str(touched)]["datetime"]
        rep = ingest(cat, [root], workers=2, progress=False)  # and the next run does not even hash it
        assert (rep.unchanged, rep.bytes) == (len(files), 0)

        # ---- modified bytes (other size) -> changed; user fields survive
        victim = next(f for f in files if f.name == "china.jpg")
        vid = sid(str(victim))
        cat.update({"_id": vid}, {"$set": {"tags": ["keep"], "split": "train"}})
        cat.write([{"_id": vid, "metadata": {"note": "mine"}}], mode="merge", merge_keys=["metadata"])
        Image.open(victim).convert("RGB").resize((200, 150)).save(victim, "JPEG", quality=80)
        # ---- same size, other bytes -> changed (found by hashing)
        same = next(f for f in files if f.name == "camera.png")
        raw = bytearray(same.read_bytes())
        raw[-20] ^= 0xFF  # inside IEND/IDAT: the size is unchanged, the hash is not
        same.write_bytes(bytes(raw))
        os.utime(same, (time.time(), time.time() + 5))
        # ---- a new file -> added
        new = root / "a" / "new" / "fresh.png"
        new.parent.mkdir()
        Image.new("RGB", (120, 90), (40, 90, 200)).save(new)
        rep = ingest(cat, [root], workers=2, progress=False)
        assert (rep.added, rep.changed, rep.unchanged) == (1, 2, len(files) - 2)
        after = all_docs(cat)
        assert cat.count() == len(files) + 1 == len(after)
        v = after[str(victim)]
        assert (v["width"], v["height"]) == (200, 150) and v["hash"] == sha256(victim)
        assert v["tags"] == ["keep"] and v["split"] == "train" and v["metadata"] == {"note": "mine"}
        assert v["_id"] == vid
        s = after[str(same)]
        assert s["hash"] == sha256(same) != docs[str(same)]["hash"]
        assert s["size_bytes"] == docs[str(same)]["size_bytes"]
        assert after[str(new)]["hash"] == sha256(new) and after[str(new)]["width"] == 120
        assert len({d["_id"] for d in after.values()}) == len(after)


def test_changed_file_drops_stale_profile_fields(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    f = src / "x.jpg"
    Image.new("RGB", (100, 80), (120, 30, 30)).save(f, "JPEG")
    with Catalog(tmp_path / "ds", "ds", write=True) as cat:
        ingest(cat, [src], workers=1, progress=False)
        good = cat.get(sid(str(f)))
        assert "error" not in good and good["width"] == 100
        f.write_text("now it is text, and longer than before " * 10)
        rep = ingest(cat, [src], workers=1, progress=False)
        assert (rep.changed, rep.failed) == (1, 1)
        bad = cat.get(sid(str(f)))
        assert "corrupt" in bad["issues"] and bad["error"]
        for k in ("width", "height", "phash", "quality", "histogram"):  # no stale values from the old bytes
            assert k not in bad, k


def _zip_of(photos: list[str], path: Path) -> dict[str, bytes]:
    members = {}
    with zipfile.ZipFile(path, "w") as zf:
        for i, p in enumerate(photos):
            name = f"set{i % 2}/deep/{os.path.basename(p)}"
            members[name] = Path(p).read_bytes()
            zf.writestr(zipfile.ZipInfo(name, (2021, 1, 2, 3, 4, 6)), members[name])
        members["../../evil.jpg"] = Path(photos[0]).read_bytes()
        zf.writestr(zipfile.ZipInfo("../../evil.jpg", (2021, 1, 2, 3, 4, 6)), members["../../evil.jpg"])
        zf.writestr("broken.jpg", b"\xff\xd8 not really")
        members["broken.jpg"] = b"\xff\xd8 not really"
    return members


def test_ingest_archives(tmp_path: Path):
    photos = real_photos()[:6]
    work = tmp_path / "work"
    work.mkdir()
    zpath = work / "photos.zip"
    zmembers = _zip_of(photos, zpath)
    tpath = work / "photos.tar.gz"
    tmembers = {}
    with tarfile.open(tpath, "w:gz") as tf:
        for p in photos[3:]:
            name = f"./nested/dir/{os.path.basename(p)}"
            data = Path(p).read_bytes()
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
            tmembers[name[2:]] = data
        ti = tarfile.TarInfo("../escape.png")
        data = Path(photos[1]).read_bytes()
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
        tmembers["../escape.png"] = data
    ds = tmp_path / "home" / "ds"
    media = ds / "media"
    ds.parent.mkdir()
    outside_before = set(tmp_path.rglob("*"))
    with Catalog(ds, "ds", write=True) as cat:
        rep = ingest(cat, [zpath, tpath], workers=2, progress=False, batch_size=4)
        n = len(zmembers) + len(tmembers)
        assert (rep.added, rep.failed, rep.files) == (n, 1, n)
        docs = all_docs(cat)
        assert len(docs) == n == cat.count()
        for arc, members, source in ((zpath, zmembers, "zip"), (tpath, tmembers, "tar")):
            for name, data in members.items():
                origin = f"{arc}!/{name}"
                d = docs[origin]
                assert d["_id"] == sid(origin) and d["source"] == source
                if name == "broken.jpg":
                    assert "corrupt" in d["issues"]
                digest = hashlib.sha256(data).hexdigest()
                assert d["hash"] == digest
                fp = Path(d["filepath"])
                assert fp.is_relative_to(media) and fp.parent.name == digest[:2] and fp.name.startswith(digest)
                assert fp.read_bytes() == data
    new_paths = set(tmp_path.rglob("*")) - outside_before
    assert all(p.is_relative_to(ds) for p in new_paths)  # nothing written outside the dataset
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "escape.png").exists()
    assert not list(media.rglob(".part-*"))

    with Catalog(ds, "ds", write=True) as cat:
        rep = ingest(cat, [zpath, tpath], workers=2, progress=False)
        assert (rep.added, rep.changed, rep.unchanged) == (0, 0, n)
        # one member changes inside the zip: only it is re-profiled
        name = next(iter(zmembers))
        with zipfile.ZipFile(zpath, "w") as zf:
            for k, data in zmembers.items():
                if k == name:
                    b = io.BytesIO()
                    Image.new("RGB", (50, 40), (1, 2, 3)).save(b, "PNG")
                    data = b.getvalue()
                zf.writestr(zipfile.ZipInfo(k, (2021, 1, 2, 3, 4, 6)), data)
        rep = ingest(cat, [zpath], workers=2, progress=False)
        assert (rep.added, rep.changed, rep.unchanged) == (0, 1, len(zmembers) - 1)
        assert cat.get(sid(f"{zpath}!/{name}"))["width"] == 50
        assert cat.count() == n


def test_members_over_max_bytes_are_flagged_not_read(tmp_path: Path):
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.png", b"\0" * (2 << 20))
        zf.write(real_photos()[0], "ok.png")
    with Catalog(tmp_path / "ds", "ds", write=True) as cat:
        rep = ingest(cat, [zpath], workers=1, progress=False, max_bytes=1 << 20 | 1 << 19)
        assert (rep.added, rep.failed) == (2, 1)
        huge = cat.get(sid(f"{zpath}!/huge.png"))
        assert huge["issues"][:2] == ["corrupt", "too_large"] and huge["size_bytes"] == 2 << 20
        assert "hash" not in huge and "filepath" not in huge
        assert not [p for p in (tmp_path / "ds" / "media").rglob("*") if p.is_file() and p.stat().st_size > 1 << 20]


def test_missing_input_is_an_error_before_any_work(tmp_path: Path, photos):
    root, _ = photos
    with Catalog(tmp_path / "ds", "ds", write=True) as cat:
        with pytest.raises(ViscurateError, match="not found"):
            ingest(cat, [root, tmp_path / "nope"], workers=1, progress=False)
        assert cat.count() == 0


# ---- workers that crash ----------------------------------------------------------------------------


class KillerSide(int):
    """A threshold that SIGKILLs its process when compared with a side of exactly 77 px (a stand-in for
    a decoder that segfaults on one file)."""

    def __gt__(self, other):
        if other == 77:
            os.kill(os.getpid(), signal.SIGKILL)
        return int(self) > other

    def __lt__(self, other):
        if other == 77:
            os.kill(os.getpid(), signal.SIGKILL)
        return int(self) < other

    def __reduce__(self):
        return (KillerSide, (int(self),))


def test_a_file_that_kills_its_worker_becomes_a_corrupt_sample(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):
        Image.new("RGB", (100 + i, 90), (i * 20, 50, 50)).save(src / f"ok{i:02d}.png")
    Image.new("RGB", (77, 100), (0, 0, 0)).save(src / "killer.png")
    th = QualityThresholds(odd_size_min_side=KillerSide(32))
    with Catalog(tmp_path / "ds", "ds", write=True) as cat:
        rep = ingest(cat, [src], workers=2, progress=False, thresholds=th, chunk_size=4)
        assert (rep.added, rep.failed) == (13, 1)
        docs = all_docs(cat)
        k = docs[str(src / "killer.png")]
        assert k["issues"][0] == "corrupt" and "worker_killed" in k["error"] and "SIGKILL" in k["error"]
        assert all("corrupt" not in d["issues"] for o, d in docs.items() if not o.endswith("killer.png"))


def _double(x: int) -> int:
    if x == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 7:
        raise ValueError("seven is bad")
    if x == 21:
        time.sleep(60)
    return 2 * x


def test_pool_survives_crashes_exceptions_and_hangs():
    with ProcessPool(_double, workers=2, chunk_size=4, item_timeout=0.5) as pool:
        got: dict[int, object] = {}
        for chunk in pool.imap_unordered(range(30)):
            for item, result in chunk:
                assert item not in got  # every item once
                got[item] = result
        assert sorted(got) == list(range(30))
        assert got[7] == ItemError("worker_error: ValueError: seven is bad (at test_ingest.py:"
                                   f"{_double.__code__.co_firstlineno + 4})")
        assert isinstance(got[13], ItemError) and got[13].killed and "SIGKILL" in got[13].error
        assert isinstance(got[21], ItemError) and got[21].killed and "worker_timeout" in got[21].error
        assert all(got[i] == 2 * i for i in got if i not in (7, 13, 21))
        # the pool is still usable
        assert sorted(r for c in pool.imap_unordered([1, 2, 3]) for _, r in c) == [2, 4, 6]


def test_pool_imap_keeps_the_order_of_the_items_through_crashes_and_hangs():
    with ProcessPool(_double, workers=2, chunk_size=3, item_timeout=0.5) as pool:
        got = [(item, result) for chunk in pool.imap(range(30)) for item, result in chunk]
    assert [item for item, _ in got] == list(range(30))
    assert all(r == 2 * i for i, r in got if i not in (7, 13, 21))
    assert all(isinstance(got[i][1], ItemError) for i in (7, 13, 21))


def test_pool_imap_lets_results_through_past_max_waiting():
    # 21 hangs until its timeout: with room for 4 waiting results, those after it are not held for it
    with ProcessPool(_double, workers=2, chunk_size=1, item_timeout=1.0) as pool:
        order = [item for chunk in pool.imap(range(18, 40), max_waiting=4) for item, _ in chunk]
    assert sorted(order) == list(range(18, 40))
    assert order.index(21) > order.index(27)  # what finished while 21 hung went ahead of it
    assert order[order.index(21) + 1:] == sorted(order[order.index(21) + 1:])  # in order again after it


def _stuck_first(item: tuple[int, str]) -> int:
    x, marker = item
    if x == 0:
        time.sleep(60)  # holds back every result after it
    if x == 19:
        Path(marker).touch()
    return 2 * x


def test_pool_imap_hands_over_what_it_holds_on_ctrl_c(tmp_path: Path):
    """Ctrl-C while the first item is still worked on: the results waiting behind it come out (ingest commits
    them) before the KeyboardInterrupt goes on."""
    import _thread
    import threading

    marker = tmp_path / "last-done"

    def interrupt_when_the_rest_is_done() -> None:
        deadline = time.monotonic() + 50
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # its result reaches the parent
        _thread.interrupt_main()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    got: list[list[tuple]] = []
    try:
        threading.Thread(target=interrupt_when_the_rest_is_done, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            with ProcessPool(_stuck_first, workers=2, chunk_size=1) as pool:
                for chunk in pool.imap([(x, str(marker)) for x in range(20)]):
                    got.append(chunk)
    finally:
        signal.signal(signal.SIGINT, previous)
    # 0 hangs, and 1 was queued behind it on the same worker; the others were all held, and are handed over
    assert len(got) == 1, got
    handed = [item[0] for item, _ in got[0]]
    assert handed == sorted(handed) and set(handed) >= set(range(2, 20)) and 0 not in handed
    assert all(result == 2 * item[0] for item, result in got[0])


def test_the_catalog_keeps_the_listed_order_whichever_worker_finishes_first(tmp_path: Path):
    # a big photo listed first takes one worker far longer than the small pictures after it take the other
    src = tmp_path / "in"
    src.mkdir()
    big = Image.open(real_photos()[0]).convert("RGB").resize((3000, 2400))
    big.save(src / "a_big.png")
    for i in range(40):
        Image.new("RGB", (40 + i, 30), (i * 5, 80, 120)).save(src / f"b_{i:02d}.png")
    listed = [str(p) for p in sorted(src.iterdir())]
    for run in range(2):
        with Catalog(tmp_path / f"ds{run}", "ds", write=True) as cat:
            ingest(cat, [src], workers=2, chunk_size=1, progress=False)
            assert [d["origin"] for d in cat.iter_docs()] == listed


def test_profile_fields_plus_covers_the_profile():
    from viscurate.pipeline import PROFILE_FIELDS_PLUS
    assert set(PROFILE_FIELDS) <= set(PROFILE_FIELDS_PLUS) and "datetime" in PROFILE_FIELDS_PLUS
    assert "tags" not in PROFILE_FIELDS_PLUS and "metadata" not in PROFILE_FIELDS_PLUS
