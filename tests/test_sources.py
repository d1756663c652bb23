"""Sources: folders (filters, symlinks), archives (zip, tar.gz, hostile member names, bombs), path lists."""
from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from viscurate.errors import ViscurateError
from viscurate.sources import (IMAGE_EXTENSIONS, MediaRef, MemberError, PathFilter, extract_member, input_kind,
                               iter_archive, iter_archive_members, iter_folder, iter_pathlist, resolve_entries,
                               resolve_inputs, sample_id)
from viscurate.sources.ref import ARCHIVE_SEP

JPEG = b"\xff\xd8\xff\xe0" + b"jpeg-ish bytes" * 10


def _write(path: Path, data: bytes = JPEG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rels(refs, root: Path) -> list[str]:
    return [os.path.relpath(r.origin, root).replace(os.sep, "/") for r in refs]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for rel in ["a.jpg", "b.PNG", "notes.txt", "sub/c.jpeg", "sub/deeper/d.webp", "sub/deeper/e.tif",
                "train/t1.jpg", "x/train/t2.jpg", "x/train/more/t3.jpg", "cache/z.jpg", "sub/cache/y.png",
                "sub/skip_bad.jpg", "noext"]:
        _write(root / rel)
    return root


# ---- folders -------------------------------------------------------------------------------------


def test_default_takes_images_recursively_sorted(tree: Path):
    refs = list(iter_folder(tree))
    rels = _rels(refs, tree)
    assert rels == ["a.jpg", "b.PNG", "cache/z.jpg", "sub/c.jpeg", "sub/cache/y.png", "sub/deeper/d.webp",
                    "sub/deeper/e.tif", "sub/skip_bad.jpg", "train/t1.jpg", "x/train/more/t3.jpg",
                    "x/train/t2.jpg"]
    for r in refs:
        assert isinstance(r, MediaRef)
        assert r.source == "local" and r.origin == r.filepath and os.path.isabs(r.origin)
        st = os.stat(r.origin)
        assert (r.size, r.mtime) == (st.st_size, st.st_mtime)
        assert r.archive is None and r.member is None
    # deterministic
    assert _rels(iter_folder(tree), tree) == rels


def test_include_exclude(tree: Path):
    assert _rels(iter_folder(tree, include=["*.png"]), tree) == ["b.PNG", "sub/cache/y.png"]  # case-insensitive
    assert _rels(iter_folder(tree, include=["**/train/*"]), tree) == ["train/t1.jpg", "x/train/t2.jpg"]
    assert _rels(iter_folder(tree, include=["train/**"]), tree) == ["train/t1.jpg"]
    assert _rels(iter_folder(tree, include="sub/*/*.webp"), tree) == ["sub/deeper/d.webp"]
    # an excluded folder name drops the folder at any depth (and it is not walked)
    assert _rels(iter_folder(tree, exclude=["cache"]), tree) == [
        "a.jpg", "b.PNG", "sub/c.jpeg", "sub/deeper/d.webp", "sub/deeper/e.tif", "sub/skip_bad.jpg",
        "train/t1.jpg", "x/train/more/t3.jpg", "x/train/t2.jpg"]
    assert "sub/skip_bad.jpg" not in _rels(iter_folder(tree, exclude="*_bad.*"), tree)
    assert _rels(iter_folder(tree, include=["*.jpg"], exclude=["**/train/**", "/a.jpg"]), tree) == [
        "cache/z.jpg", "sub/skip_bad.jpg"]
    # a user include replaces the image-extension default: '*' takes every file
    everything = _rels(iter_folder(tree, include=["*"]), tree)
    assert "notes.txt" in everything and "noext" in everything and len(everything) == 13


def test_path_filter_rules():
    f = PathFilter(include=["**/train/*"], exclude=["*_bad.jpg"])
    assert f.take_file("a/train/x.jpg") and f.take_file("train/x.jpg")
    assert not f.take_file("a/train/x_bad.jpg") and not f.take_file("a/val/x.jpg")
    assert not f.take_file("a/train/b/x.jpg")  # '*' stays within one segment
    assert PathFilter(exclude=["tmp"]).take_file("a/tmp/b.jpg") is False  # a parent folder excluded
    assert PathFilter(include=["[!x]*.jpg"]).take_file("y.jpg")
    assert not PathFilter(include=["[!x]*.jpg"]).take_file("x.jpg")
    assert {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".tga",
            ".ico", ".jp2"} <= IMAGE_EXTENSIONS


def test_symlink_loop_and_broken_symlink(tree: Path):
    os.symlink(tree, tree / "sub" / "loop")  # sub/loop -> root: a cycle
    os.symlink("..", tree / "sub" / "deeper" / "up")  # another cycle, relative
    os.symlink(tree / "nowhere.jpg", tree / "broken.jpg")
    os.symlink(tree / "sub", tree / "zz_link_to_sub")  # a folder reached twice: walked once
    warnings: list[str] = []
    rels = _rels(iter_folder(tree, on_warning=warnings.append), tree)
    assert len(rels) == len(set(rels)) == 11  # every real file once, no cycle, no broken link
    assert "broken.jpg" not in rels
    assert any("broken symlink" in w for w in warnings)
    assert any("loop" in w for w in warnings)
    # a symlinked file is taken, by its own path
    os.symlink(tree / "a.jpg", tree / "alias.jpg")
    assert "alias.jpg" in _rels(iter_folder(tree, on_warning=warnings.append), tree)


def test_special_files_are_skipped(tree: Path):
    os.mkfifo(tree / "fifo.jpg")
    assert "fifo.jpg" not in _rels(iter_folder(tree, include=["*"]), tree)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder_is_skipped_with_a_warning(tree: Path):
    locked = tree / "sub" / "deeper"
    locked.chmod(0)
    try:
        warnings: list[str] = []
        rels = _rels(iter_folder(tree, on_warning=warnings.append), tree)
        assert "sub/deeper/d.webp" not in rels and "sub/c.jpeg" in rels
        assert any("unreadable" in w for w in warnings)
    finally:
        locked.chmod(0o755)


# ---- archives ------------------------------------------------------------------------------------


MEMBERS = {
    "top.jpg": b"\xff\xd8top" * 50,
    "dir/nested/deep.png": b"\x89PNGdeep" * 50,
    "dir/readme.txt": b"not an image",
    "../../evil.jpg": b"\xff\xd8evil" * 50,
    "/abs/rooted.jpg": b"\xff\xd8rooted" * 50,
}
TAKEN = ["top.jpg", "dir/nested/deep.png", "../../evil.jpg", "/abs/rooted.jpg"]


def _zip(path: Path, members: dict[str, bytes] = MEMBERS) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dir/", b"")  # a directory entry
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2020, 5, 17, 12, 30, 0)), data)
    return path


def _tar(path: Path, members: dict[str, bytes] = MEMBERS, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        d = tarfile.TarInfo("dir")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("link.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
        hard = tarfile.TarInfo("hard.jpg")
        hard.type = tarfile.LNKTYPE
        hard.linkname = "top.jpg"
        tf.addfile(hard)
        fifo = tarfile.TarInfo("fifo.jpg")
        fifo.type = tarfile.FIFOTYPE
        tf.addfile(fifo)
    return path


@pytest.mark.parametrize("kind", ["zip", "tar.gz", "tar", "tar.bz2", "tar.xz"])
def test_archive_members(tmp_path: Path, kind: str):
    if kind == "zip":
        arc = _zip(tmp_path / "a.zip")
    else:
        arc = _tar(tmp_path / f"a.{kind}", mode="w:" + {"tar.gz": "gz", "tar": "", "tar.bz2": "bz2",
                                                          "tar.xz": "xz"}[kind])
    refs = list(iter_archive(arc))
    assert [r.member for r in refs] == TAKEN  # archive order; dirs, links, FIFOs and .txt skipped
    for r in refs:
        assert r.origin == f"{arc}{ARCHIVE_SEP}{r.member}"
        assert r.filepath is None and r.archive == str(arc)
        assert r.source == ("zip" if kind == "zip" else "tar")
        assert r.size == len(MEMBERS[r.member]) and r.mtime is not None
    # a user include replaces the default image filter
    assert [r.member for r in iter_archive(arc, include=["dir/**"])] == ["dir/nested/deep.png", "dir/readme.txt"]
    assert [r.member for r in iter_archive(arc, include=["dir/**/*.png"])] == ["dir/nested/deep.png"]
    assert [r.member for r in iter_archive(arc, include=["*"], exclude=["*.jpg"])] == [
        "dir/nested/deep.png", "dir/readme.txt"]
    assert input_kind(arc) == ("zip" if kind == "zip" else "tar")


@pytest.mark.parametrize("maker", [_zip, _tar])
def test_extraction_stays_in_media_dir(tmp_path: Path, maker):
    arc = maker(tmp_path / ("a.zip" if maker is _zip else "a.tgz"))
    work = tmp_path / "work"
    media = work / "ds" / "media"
    media.mkdir(parents=True)
    before = {p for p in tmp_path.rglob("*")}
    for m in iter_archive_members(arc):
        path, digest, size = extract_member(m, media, max_bytes=1 << 20)
        import hashlib
        data = MEMBERS[m.ref.member]
        assert digest == hashlib.sha256(data).hexdigest() and size == len(data)
        assert Path(path).read_bytes() == data
        assert Path(path).resolve().is_relative_to(media.resolve())
        assert Path(path).name.startswith(digest) and Path(path).parent.name == digest[:2]
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(p.resolve().is_relative_to(media.resolve()) for p in created)
    assert not list(tmp_path.rglob("evil.jpg")) and not list(tmp_path.rglob("rooted.jpg"))
    assert not list(media.rglob(".part-*"))  # no temporary file left behind


def test_zip_bomb_guards(tmp_path: Path):
    big = b"\0" * (3 << 20)  # compresses to a few KB
    arc = tmp_path / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.png", big)
        zf.writestr("liar.png", big)
    # make "liar.png" declare 100 bytes in both its local header and the central directory
    raw = bytearray(arc.read_bytes())
    with zipfile.ZipFile(arc) as zf:
        liar = zf.getinfo("liar.png")
    lh = liar.header_offset
    assert raw[lh:lh + 4] == b"PK\x03\x04"
    struct.pack_into("<I", raw, lh + 22, 100)
    cd = raw.rfind(b"PK\x01\x02")
    assert raw[cd + 46:cd + 46 + 8] == b"liar.png"
    struct.pack_into("<I", raw, cd + 24, 100)
    arc.write_bytes(bytes(raw))

    members = {m.ref.member: m for m in iter_archive_members(arc)}
    assert members["big.png"].ref.size == len(big) and members["liar.png"].ref.size == 100
    media = tmp_path / "media"
    for m in iter_archive_members(arc):
        with pytest.raises(MemberError) as e:
            extract_member(m, media, max_bytes=1 << 20)
        if m.ref.member == "big.png":  # declared too big: not read at all
            assert e.value.reason == "too_large"
        else:  # declares 100 bytes, inflates to more: never more than declared is read, and it is refused
            assert e.value.reason == "unreadable"
    assert not [p for p in media.rglob("*") if p.is_file()]


def test_damaged_archives_do_not_raise(tmp_path: Path):
    arc = _tar(tmp_path / "a.tar.gz")
    data = arc.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    warnings: list[str] = []
    list(iter_archive(cut, on_warning=warnings.append))  # some members, or none, but no exception
    assert warnings
    notzip = tmp_path / "fake.zip"
    notzip.write_bytes(b"hello")
    warnings.clear()
    assert list(iter_archive(notzip, on_warning=warnings.append)) == []
    assert warnings


def test_archive_detected_by_content(tmp_path: Path):
    arc = _zip(tmp_path / "a.zip")
    odd = tmp_path / "bundle.data"
    odd.write_bytes(arc.read_bytes())
    assert input_kind(odd) == "zip"
    polyglot = tmp_path / "pic.jpg"  # a zip named .jpg is an image to us
    polyglot.write_bytes(arc.read_bytes())
    assert input_kind(polyglot) == "file"
    tgz = _tar(tmp_path / "x.tgz")
    odd2 = tmp_path / "blob.bin"
    odd2.write_bytes(tgz.read_bytes())
    assert input_kind(odd2) == "tar"


# ---- path lists and dispatch ---------------------------------------------------------------------


def test_pathlist(tree: Path, tmp_path: Path):
    lists = tmp_path / "lists"
    lists.mkdir()
    lst = lists / "files.txt"
    lst.write_text("\n".join([
        "# a comment",
        "",
        "../data/a.jpg",  # relative to the list's folder, not the cwd
        f"   {tree / 'sub' / 'c.jpeg'}   ",
        "../data/notes.txt",  # named explicitly: taken even though it is not an image
        "../data/missing.jpg",
        "  # an indented comment",
        "../data/sub/deeper",  # a folder: walked
    ]) + "\n")
    warnings: list[str] = []
    refs = list(iter_pathlist(lst, on_warning=warnings.append))
    assert _rels(refs, tree) == ["a.jpg", "sub/c.jpeg", "notes.txt", "sub/deeper/d.webp", "sub/deeper/e.tif"]
    assert any("missing.jpg" in w for w in warnings)
    # resolve_inputs dispatches on .txt/.lst
    assert _rels(resolve_inputs([lst], on_warning=warnings.append), tree) == _rels(refs, tree)


def test_resolve_inputs_dispatch(tree: Path, tmp_path: Path):
    arc = _zip(tmp_path / "a.zip")
    single = tree / "sub" / "skip_bad.jpg"
    refs = list(resolve_inputs([tree / "sub" / "deeper", arc, single]))
    assert [r.source for r in refs] == ["local", "local"] + ["zip"] * 4 + ["local"]
    assert refs[-1].origin == str(single)
    assert all(r.origin and r.sample_id == sample_id(r.origin) for r in refs)
    # entries carry a reader for archive members only
    entries = list(resolve_entries([arc, single]))
    assert [m is None for _, m in entries] == [False] * 4 + [True]


def test_missing_input_raises_before_any_work(tree: Path, tmp_path: Path):
    with pytest.raises(ViscurateError, match="not found.*nope"):
        resolve_inputs([tree, tmp_path / "nope"])  # raises at the call, not when iterated
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    with pytest.raises(ViscurateError, match="broken symlink"):
        resolve_inputs([tmp_path / "dangling"])
    with pytest.raises(ViscurateError):
        resolve_inputs([])


def test_sample_id_is_deterministic():
    import hashlib
    o = "/data/x.zip!/a/b.jpg"
    assert sample_id(o) == hashlib.sha1(o.encode()).hexdigest()[:24]
    assert MediaRef(o, None, "zip", 1, 0.0, "/data/x.zip", "a/b.jpg").sample_id == sample_id(o)
