"""Fetch a URL a user gave without letting it reach inside the network (SSRF) or fill memory.

- Only ``http`` and ``https``, on any port.
- The host is resolved once and every address it resolves to is checked: only global unicast addresses
  pass (the standard library's ``is_global``, and the special ranges of :data:`DENIED` it lets through,
  such as ``fec0::/10`` site-local and ``192.0.0.0/24``); the IPv4 address inside an IPv4-mapped, 6to4
  or NAT64 address is checked as itself, and Teredo tunnels are refused. The connection then goes to the
  address that was checked (the request carries the original ``Host`` and TLS server name), so a second
  DNS answer cannot point it elsewhere (DNS rebinding).
- Redirects are followed here, at most :data:`MAX_REDIRECTS`, and each hop is checked again.
- The body is streamed and cut at ``max_bytes`` (a larger ``Content-Length`` is refused before reading).
- The whole fetch (connect, headers, body, every redirect) has a wall-clock ``deadline``: a server that
  answers one byte a second never trips a per-read timeout, so at the deadline the socket is shut down.

``allow_private=True`` lifts the address check, for a server that is meant to fetch from its own
network (an operator's choice, never a request's).

The address checks themselves live in :mod:`viscurate.sources.netguard` (ingest of image URLs uses
them too); they are re-exported here.

>>> check_address("127.0.0.1")
Traceback (most recent call last):
...
viscurate.sources.netguard.BlockedAddress: 127.0.0.1 is a loopback address: refused
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from ..sources.netguard import (DENIED, BlockedAddress, FetchError, check_address, resolve_public,
                                split_url as _split)
from . import defaults

__all__ = ["FetchError", "BlockedAddress", "Fetched", "check_address", "resolve_public", "fetch",
           "MAX_REDIRECTS", "DEFAULT_TIMEOUT", "DENIED"]

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 15.0  # each connect or read


@dataclass(frozen=True)
class Fetched:
    url: str  # the final URL, after redirects
    data: bytes
    content_type: str | None


class _Deadline:
    """A wall-clock limit on a whole fetch. Per-operation timeouts cannot give one: a server that sends a
    byte a second answers every read in time. So the sockets the fetch opens are collected (httpcore's
    ``trace`` extension names each new connection) and, when the time is up, shut down from a timer
    thread, which ends a read blocked on them at once."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._ends = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._guard = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def left(self) -> float:
        """Seconds left (0 when past)."""
        return max(0.0, self._ends - time.monotonic())

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: remember the socket of each connection (and of its TLS layer)."""
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._guard:
            self._sockets.append(sock)
            late = self.expired
        if late:  # the timer fired while this connection was being made
            _shut(sock)

    def _expire(self) -> None:
        with self._guard:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed, or detached by the TLS layer (which was collected too)
        pass


def fetch(url: str, *, max_bytes: int = defaults.MAX_UPLOAD_BYTES, timeout: float = DEFAULT_TIMEOUT,
          deadline: float = defaults.FETCH_DEADLINE_S, allow_private: bool = False) -> Fetched:
    """GET ``url`` with the checks above. ``timeout``: each connect or read; ``deadline``: the whole
    fetch, redirects included. Errors are :class:`FetchError` with a reason a client can read."""
    import httpx

    with _Deadline(deadline) as clock:
        try:
            return _fetch(url, max_bytes, timeout, clock, allow_private)
        except (FetchError, httpx.HTTPError) as e:
            if clock.expired:  # whatever the shut-down connection looked like, the deadline is the reason
                raise FetchError(f"fetching {url} took longer than its limit of {deadline:g} s: stopped") from None
            if isinstance(e, FetchError):
                raise
            raise FetchError(f"cannot fetch {url}: {type(e).__name__}: {e}") from None


def _fetch(url: str, max_bytes: int, timeout: float, clock: _Deadline, allow_private: bool) -> Fetched:
    import httpx

    current = url
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            scheme, host, port = _split(current)
            address = resolve_public(host, port, allow_private=allow_private)
            parts = urlsplit(current)
            literal = f"[{address}]" if ":" in address else address
            direct = urlunsplit((scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
            headers = {"Host": parts.netloc, "User-Agent": "viscurate", "Accept": "image/*,*/*;q=0.5"}
            extensions: dict[str, Any] = {"trace": clock.trace}
            if scheme == "https":
                extensions["sni_hostname"] = host
            if clock.left() <= 0:
                raise FetchError(f"no time left to fetch {current}")
            try:
                with client.stream("GET", direct, headers=headers, timeout=min(timeout, clock.left()),
                                   extensions=extensions) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchError(f"redirect without a location from {current}")
                        current = urljoin(current, location)
                        continue
                    if response.status_code >= 400:
                        raise FetchError(f"{current} answered HTTP {response.status_code}")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise FetchError(f"{current} is {int(declared)} bytes, more than the limit of {max_bytes}")
                    chunks, size = [], 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FetchError(f"{current} is more than the limit of {max_bytes} bytes")
                        chunks.append(chunk)
                    if clock.expired:  # the shut-down socket may have looked like the body's end
                        raise FetchError(f"{current} was cut at the deadline")
                    return Fetched(current, b"".join(chunks), response.headers.get("content-type"))
            except httpx.HTTPError as e:
                if clock.expired:
                    raise
                raise FetchError(f"cannot fetch {current}: {type(e).__name__}: {e}") from None
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from {url}")
