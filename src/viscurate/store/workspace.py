"""The workspace: where datasets live on disk.

``<home>/datasets/<name>/`` holds one dataset: ``catalog.duckdb`` (the catalog), ``indexes/`` (vector
indexes), ``media/`` (content-addressed copies of downloaded or extracted media), ``thumbnails/`` and
``dataset.json`` (name, creation time, schema version; readable without opening the catalog).

The home is, in order of precedence: the ``home`` argument (the CLI's ``--home``), the ``VISCURATE_HOME``
environment variable, then the user data directory (``~/.local/share/viscurate`` on Linux).

The folders viscurate makes there are the user's alone (0700: a catalog holds every file path and
label, the media copies are the user's pictures), unless ``VISCURATE_SHARED=1`` asks for the umask's
modes, for a workspace a group shares. Exports are the user's own files and keep the umask's mode.

>>> import tempfile
>>> ws = Workspace(tempfile.mkdtemp())
>>> ws.dataset_dir("pets").name
'pets'
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Callable

from ..errors import DatasetExists, DatasetNotFound, ViscurateError
from .lock import DatasetLock
from .schema import SCHEMA_VERSION

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
SUBDIRS = ("indexes", "media", "thumbnails")
CATALOG_FILE = "catalog.duckdb"
INFO_FILE = "dataset.json"
SERVER_FILE = "server/running.json"  # relative to the home: the live server, see running_server


def default_home() -> Path:
    env = os.environ.get("VISCURATE_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir
    return Path(user_data_dir("viscurate", appauthor=False))


def shared() -> bool:
    """Whether ``VISCURATE_SHARED=1`` asks for workspace folders with the umask's modes instead of 0700."""
    return os.environ.get("VISCURATE_SHARED", "").strip().lower() in ("1", "true", "yes")


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p`` whose new folders are private to the user (0700), or follow the umask when
    :func:`shared`; folders that exist keep their mode.

    >>> import stat, tempfile
    >>> made = make_dirs(Path(tempfile.mkdtemp()) / "a" / "b")
    >>> oct(stat.S_IMODE(made.stat().st_mode)), oct(stat.S_IMODE(made.parent.stat().st_mode))
    ('0o700', '0o700')
    """
    path = Path(path)
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o777 if shared() else 0o700, exist_ok=True)  # the umask applies either way
    return Path(missing[0]) if missing else path


def running_server(home: Path) -> dict | None:
    """``{"pid", "url", "since"}`` of the live ``viscurate serve`` of the workspace at ``home``, if any
    (it announces itself in :data:`SERVER_FILE` while it runs)."""
    try:
        info = json.loads((Path(home) / SERVER_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


def server_of_dataset(directory: Path) -> Callable[[], dict | None]:
    """A look-up of the live server of the workspace holding the dataset at ``directory``
    (``<home>/datasets/<name>``), for a :class:`DatasetLock`'s busy message.

    >>> import tempfile
    >>> server_of_dataset(Path(tempfile.mkdtemp()) / "datasets" / "pets")() is None
    True
    """
    home = Path(directory).parent.parent
    return lambda: running_server(home)


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise ViscurateError(
            f"invalid dataset name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


class Workspace:
    def __init__(self, home: str | os.PathLike | None = None):
        self.home = Path(home).expanduser() if home else default_home()

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    def dataset_dir(self, name: str) -> Path:
        return self.datasets_dir / validate_name(name)

    def exists(self, name: str) -> bool:
        return (self.dataset_dir(name) / INFO_FILE).exists()

    def require(self, name: str) -> Path:
        d = self.dataset_dir(name)
        if not (d / INFO_FILE).exists():
            known = ", ".join(self.list()) or "none"
            raise DatasetNotFound(f"no dataset named {name!r} in {self.home} (datasets: {known})")
        return d

    def create(self, name: str) -> Path:
        d = self.dataset_dir(name)
        if (d / INFO_FILE).exists():
            raise DatasetExists(f"dataset {name!r} already exists in {self.home}")
        make_dirs(d)
        if not shared():  # a folder left by an interrupted create, or made by an older version
            d.chmod(0o700)
        for sub in SUBDIRS:
            make_dirs(d / sub)
        info = {"name": name, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "schema_version": SCHEMA_VERSION}
        tmp = d / (INFO_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(d / INFO_FILE)  # atomic: a dataset exists once its info file does
        return d

    def info(self, name: str) -> dict:
        return json.loads((self.require(name) / INFO_FILE).read_text())

    def list(self) -> list[str]:
        if not self.datasets_dir.exists():
            return []
        return sorted(p.name for p in self.datasets_dir.iterdir() if (p / INFO_FILE).exists())

    def rename(self, old: str, new: str, timeout: float = 0) -> None:
        src = self.require(old)
        dst = self.dataset_dir(new)
        if dst.exists():
            raise DatasetExists(f"dataset {new!r} already exists in {self.home}")
        # the writers' session lock too: a long job lets readers in between batches, never this
        with DatasetLock(src, old, exclusive=True, timeout=timeout, session=True,
                         server=server_of_dataset(src)), \
                DatasetLock(src, old, exclusive=True, timeout=timeout, server=server_of_dataset(src)):
            src.rename(dst)
        path = dst / INFO_FILE
        info = json.loads(path.read_text())
        info["name"] = new
        path.write_text(json.dumps(info, indent=2))

    def delete(self, name: str, timeout: float = 0) -> None:
        d = self.require(name)
        with DatasetLock(d, name, exclusive=True, timeout=timeout, session=True,
                         server=server_of_dataset(d)), \
                DatasetLock(d, name, exclusive=True, timeout=timeout, server=server_of_dataset(d)):
            (d / INFO_FILE).unlink()  # first, so a half-deleted folder is no longer a dataset
        shutil.rmtree(d, ignore_errors=True)
