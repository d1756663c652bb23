"""MNIST test and Fashion-MNIST test as real catalogs for the curation tests: the images ingested from
class folders (``ground_truth.label``), embedded by the default embedder, built once per test session and
copied for each test module that asks (so one module's slices and fields never reach another).

The arrays, their class names and the stratified draw come from ``bench/labeled_sets.py`` (``.ci/run`` runs it
to build the arrays; tests never download), so ``bench/autotag.py --pool 1000`` measures these very samples.
Without the arrays a test skips, except under CI, where it fails.

``VISCURATE_TEST_LABELED_CACHE=DIR`` (a development shortcut, never set by CI) keeps the built catalogs in
DIR between sessions, so iterating on one test does not embed 3,000 images again.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest


def _bench_labeled_sets():
    script = Path(__file__).resolve().parent.parent / "bench" / "labeled_sets.py"
    spec = importlib.util.spec_from_file_location("_bench_labeled_sets", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SETS = _bench_labeled_sets()
FASHION_CLASSES, class_names, stratified = _SETS.FASHION_CLASSES, _SETS.class_names, _SETS.stratified
#: Samples per set, stratified (100 of each class): building them is embedding them (~35 s per 1,000
#: images on 2 cores), the biggest cost of the curation tests. The full 10,000 are measured in bench/
#: (curate.py, autotag.py); bench/autotag.py --pool 1000 compares this draw with the whole.
SIZES = {"fashion_mnist": 1_000, "mnist": 1_000}


def arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of ``name``'s test split (``mnist`` or ``fashion_mnist``), or skip (fail under CI)."""
    try:
        return _SETS.load(name)
    except FileNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))


def build(name: str, home: Path) -> Path:
    """Write ``name``'s images as ``<class>/<index>.png`` and import them into dataset ``name`` in ``home``,
    then embed. The original index is the file name: ``int(Path(sample["filepath"]).stem)``."""
    from PIL import Image

    from viscurate import Dataset

    x, y = arrays(name)
    keep = stratified(y, SIZES[name])
    names = class_names(name)
    images = home.parent / f"{name}-images"
    shutil.rmtree(images, ignore_errors=True)
    for i in keep:
        folder = images / names[y[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i:05d}.png")
    ds = Dataset.create(name, home=home)
    ds.import_classification(images, progress=False)
    report = ds.embed(progress=False)
    if report.image_vectors + report.up_to_date != len(keep) or ds.count() != len(keep):
        raise AssertionError(f"building {name}: {ds.count()} samples, {report} for {len(keep)} images")
    ds.close()
    return home


def built_home(name: str, tmp_path_factory) -> Path:
    """The workspace holding dataset ``name``, built in this run (once for all its pytest-xdist workers),
    or kept in the development cache."""
    cache = os.environ.get("VISCURATE_TEST_LABELED_CACHE")
    if cache and not os.environ.get("CI"):
        return _built_once(name, Path(cache) / name / "home")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers of a run share its base directory
        return _built_once(name, tmp_path_factory.getbasetemp().parent / f"labeled-{name}" / "home")
    home = tmp_path_factory.mktemp(f"{name}-built") / "home"
    home.mkdir()
    return build(name, home)


def _built_once(name: str, home: Path) -> Path:
    """``home`` built once: the first process to ask builds it, others wait for it (xdist's recipe)."""
    from filelock import FileLock

    with FileLock(str(home.parent) + ".lock"):
        if not (home / ".built").is_file():
            shutil.rmtree(home.parent, ignore_errors=True)
            home.mkdir(parents=True)
            build(name, home)
            (home / ".built").write_text("ok")
    return home


def copy_of(name: str, source_home: Path, dest: Path):
    """An open ``Dataset`` on a copy of the built workspace (the images are shared, read-only)."""
    from viscurate import Dataset

    home = dest / "home"
    shutil.copytree(source_home, home, ignore=shutil.ignore_patterns(".built", "*.lock"))
    return Dataset.open(name, home=home)


def original_index(sample: dict) -> int:
    return int(Path(sample["filepath"]).stem)
