"""Real photos of the open world for benchmarks: the pictures of the educational suite GCompris.

    python bench/gcompris.py            # fetch + unpack once into ~/.cache/viscurate-bench/gcompris (~45 MB)
    python bench/gcompris.py --list     # the unpacked photos, one reference per line

GCompris's activities show children photos of wild and farm animals, monuments, musical instruments,
fish, tools, food, renewable energy, paintings and landscapes, most of them from Wikimedia Commons
under free licences (each activity's ``README`` names the author, licence and source of every file).
They are what the default models meet in real photo collections and were never trained to name: a
bison, a chameleon, a fort, a lute. Debian packages them as ``gcompris-qt-data``; this script downloads
that one package from the Debian archive (a package registry, pinned by its SHA-256), and unpacks the Qt
resource bundles (``.rcc``) that hold the pictures. Nothing here runs at viscurate's run time.

A photo is referred to as ``gcompris/<activity>/<path under the activity's resource folder>``
(:func:`resolve`), e.g. ``gcompris/explore_world_animals/animals/bison.webp``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import struct
import sys
import tarfile
import urllib.request
import zlib
from pathlib import Path

DEB_URL = "http://deb.debian.org/debian/pool/main/g/gcompris-qt/gcompris-qt-data_3.1-2_all.deb"
#: Where the same bytes stay once Debian's pool moves on to a newer version (the archive's snapshot service
#: serves every file it ever held by its SHA-1); the SHA-256 below is checked either way.
FALLBACK_URLS = ("https://snapshot.debian.org/file/f433b8d87377cd9c6a5f8f929011230dc49ca033",)
DEB_SHA256 = "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f"
CACHE = Path(os.environ.get("VISCURATE_BENCH_CACHE", Path.home() / ".cache" / "viscurate-bench")) / "gcompris"
RASTER = (".webp", ".jpg", ".jpeg", ".png")


def _deb_members(deb: bytes) -> dict[str, bytes]:
    """The members of a Debian package (an ``ar`` archive)."""
    if deb[:8] != b"!<arch>\n":
        raise ValueError("not a Debian package (no ar magic)")
    out, pos = {}, 8
    while pos + 60 <= len(deb):
        head = deb[pos:pos + 60]
        name, size = head[:16].decode().strip().rstrip("/"), int(head[48:58].decode().strip())
        out[name] = deb[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    return out


def _rcc_files(data: bytes) -> dict[str, bytes]:
    """Every file of a Qt resource bundle (``.rcc``, format versions 1-3), by its path in the bundle."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource bundle")
    version, tree, payload, names = struct.unpack(">iiii", data[4:20])
    node = 14 if version == 1 else 22

    def name_at(off: int) -> str:
        o = names + off
        n = struct.unpack(">H", data[o:o + 2])[0]
        return data[o + 6:o + 6 + 2 * n].decode("utf-16-be")

    out: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        i, prefix = stack.pop()
        o = tree + i * node
        name_off, flags = struct.unpack(">iH", data[o:o + 6])
        path = prefix + (name_at(name_off) if i else "")
        if flags & 2:  # a directory: its children are consecutive nodes
            count, first = struct.unpack(">ii", data[o + 6:o + 14])
            stack += [(first + c, path + "/") for c in range(count)]
            continue
        off = payload + struct.unpack(">i", data[o + 10:o + 14])[0]
        size = struct.unpack(">I", data[off:off + 4])[0]
        raw = data[off + 4:off + 4 + size]
        if flags & 1:  # zlib, after a 4-byte uncompressed size
            raw = zlib.decompress(raw[4:])
        elif flags & 4:  # zstd: GCompris does not use it; refuse rather than write garbage
            continue
        out[path.lstrip("/")] = raw
    return out


def fetch(cache: Path = CACHE) -> Path:
    """Download the package (once) and unpack its pictures under ``cache``; returns ``cache``."""
    done = cache / ".complete"
    if done.exists():
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    deb_path = cache / Path(DEB_URL).name
    if not deb_path.exists() or hashlib.sha256(deb_path.read_bytes()).hexdigest() != DEB_SHA256:
        deb_path.write_bytes(_download())
    members = _deb_members(deb_path.read_bytes())
    data_name = next(n for n in members if n.startswith("data.tar"))
    n = 0
    with tarfile.open(fileobj=io.BytesIO(members[data_name])) as tar:
        for m in tar.getmembers():
            if not (m.isfile() and m.name.endswith(".rcc") and "/rcc/" in m.name):
                continue
            activity = Path(m.name).stem
            for inner, raw in _rcc_files(tar.extractfile(m).read()).items():
                marker = f"activities/{activity}/resource/"
                if not inner.lower().endswith(RASTER + ("readme",)) or marker not in inner:
                    continue
                dest = cache / activity / inner.split(marker, 1)[1]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(raw)
                n += 1
    done.write_text(f"{n} files\n")
    return cache


def _download() -> bytes:
    """The pinned package's bytes, from the first source that serves them with the pinned SHA-256."""
    failures = []
    for url in (DEB_URL, *FALLBACK_URLS):
        print(f"downloading {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(url, timeout=120) as r:
                body = r.read()
        except OSError as e:
            failures.append(f"{url}: {e}")
            continue
        if hashlib.sha256(body).hexdigest() == DEB_SHA256:
            return body
        failures.append(f"{url}: SHA-256 differs from the pinned one")
    raise SystemExit("could not fetch gcompris-qt-data 3.1-2:\n  " + "\n  ".join(failures))


def resolve(ref: str, cache: Path = CACHE) -> Path:
    """``gcompris/<activity>/<path>`` -> the unpacked file (fetching the package on first use)."""
    top, rest = ref.split("/", 1)
    if top != "gcompris":
        raise ValueError(f"not a GCompris reference: {ref!r}")
    return fetch(cache) / rest


def photos(cache: Path = CACHE, min_side: int = 200) -> list[str]:
    """References of every unpacked raster picture whose shorter side is at least ``min_side``."""
    from PIL import Image

    root = fetch(cache)
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in RASTER:
            try:
                with Image.open(p) as im:
                    if min(im.size) >= min_side:
                        out.append("gcompris/" + p.relative_to(root).as_posix())
            except OSError:
                continue
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="print the photos' references")
    ap.add_argument("--cache", type=Path, default=CACHE)
    args = ap.parse_args(argv)
    root = fetch(args.cache)
    if args.list:
        print("\n".join(photos(args.cache)))
    else:
        print(f"{root}: {(root / '.complete').read_text().strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
