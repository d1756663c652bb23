"""API keys of the server: created and revoked from the CLI, stored as SHA-256 digests (never the keys)
in ``<workspace>/server/api_keys.json``, and the rule that a server listening beyond loopback needs one.

>>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
(True, True, True, False)
>>> is_loopback("127.0.0.2"), is_loopback("::ffff:127.0.0.1")
(False, False)
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from ..errors import ViscurateError
from ..files import write_atomic

__all__ = ["KeyStore", "is_loopback", "check_bind"]


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def is_loopback(host: str) -> bool:
    """Whether a server listening on ``host`` may go without a key: only for exactly 127.0.0.1, ::1 and
    localhost, the names the ``Host`` check (:mod:`.security`) and the docs mean by "this machine only".
    The rest of 127.0.0.0/8 (and IPv4-mapped forms) is an unusual choice we do not guess about: a key."""
    return host.strip().lower() in LOOPBACK_HOSTS


def check_bind(host: str, has_keys: bool) -> None:
    """A server reachable from other machines must ask for a key: refuse to start otherwise."""
    if not is_loopback(host) and not has_keys:
        raise ViscurateError(f"listening on {host} makes the server reachable from other machines: create an API "
                             f"key first (viscurate api-key create NAME), or listen on 127.0.0.1")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Named API keys of one workspace."""

    def __init__(self, home: str | os.PathLike):
        self.path = Path(home) / "server" / "api_keys.json"
        self._seen: tuple[object, dict[str, str]] = (None, {})  # (file stamp, digest -> name)

    def _read(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ViscurateError(f"cannot read the API keys in {self.path}: {e}") from None

    def _write(self, keys: dict[str, dict]) -> None:
        from ..store.workspace import make_dirs
        make_dirs(self.path.parent)
        write_atomic(self.path, json.dumps(keys, indent=1, sort_keys=True).encode(), mode=0o600)

    def create(self, name: str) -> str:
        """A new key named ``name`` (shown once: only its digest is kept)."""
        keys = self._read()
        if not name or name in keys:
            raise ViscurateError(f"an API key named {name!r} exists already" if name else "a key needs a name")
        key = "vc_" + secrets.token_urlsafe(32)
        keys[name] = {"sha256": _digest(key), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._write(keys)
        return key

    def revoke(self, name: str) -> None:
        keys = self._read()
        if keys.pop(name, None) is None:
            raise ViscurateError(f"no API key named {name!r}")
        self._write(keys)

    def names(self) -> dict[str, str]:
        """name -> when it was created."""
        return {name: meta.get("created_at", "") for name, meta in sorted(self._read().items())}

    def _current(self) -> dict[str, str]:
        """digest -> key name, re-read only when the file changed (a server asks per request, so a key
        created or revoked by the CLI counts from the next one)."""
        try:
            st = self.path.stat()
            stamp: object = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return {}
        if stamp != self._seen[0]:
            self._seen = (stamp, {meta["sha256"]: name for name, meta in self._read().items() if "sha256" in meta})
        return self._seen[1]

    def digests(self) -> frozenset[str]:
        """The current keys' digests."""
        return frozenset(self._current())

    def owner(self, key: str | None) -> str | None:
        """The name of the key ``key`` (constant-time comparison), or ``None`` when it is not a current key."""
        if not key:
            return None
        digest = _digest(key)
        found = None
        for d, name in self._current().items():
            if hmac.compare_digest(digest, d):
                found = name
        return found
