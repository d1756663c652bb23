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

>>> check_address("127.0.0.1")
Traceback (most recent call last):
...
viscurate.server.netguard.BlockedAddress: 127.0.0.1 is a loopback address: refused
>>> check_address("93.184.215.14")
"""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from ..errors import ViscurateError
from . import defaults

__all__ = ["FetchError", "BlockedAddress", "Fetched", "check_address", "resolve_public", "fetch",
           "MAX_REDIRECTS", "DEFAULT_TIMEOUT", "DENIED"]

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT = 15.0  # each connect or read

#: Special ranges refused although ``is_global`` (as of Python 3.11) may call them global, or worth a
#: clearer reason than "non-global" (IANA's special-purpose address registries).
DENIED: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), why) for net, why in (
        ("0.0.0.0/8", "'this network'"), ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("192.0.0.0/24", "special-purpose (IETF protocol assignments)"), ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"), ("203.0.113.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay"), ("198.18.0.0/15", "benchmarking"), ("240.0.0.0/4", "reserved"),
        ("fec0::/10", "site-local"), ("2001::/32", "Teredo tunnel"), ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"), ("100::/64", "discard-only"), ("5f00::/16", "SRv6 segment"),
        ("64:ff9b:1::/48", "local-use NAT64")))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(ViscurateError):
    """The URL could not be fetched (bad URL, network error, too large, too many redirects)."""


class BlockedAddress(FetchError):
    """The URL leads to an address the server must not reach."""


@dataclass(frozen=True)
class Fetched:
    url: str  # the final URL, after redirects
    data: bytes
    content_type: str | None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped (``::ffff:a.b.c.d``), 6to4
    (``2002:aabb:ccdd::``) or NAT64 (``64:ff9b::a.b.c.d``); None for any other.

    >>> _embedded_v4(ipaddress.IPv6Address("64:ff9b::7f00:1")), _embedded_v4(ipaddress.IPv6Address("2600::1"))
    (IPv4Address('127.0.0.1'), None)
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` must not be reached, or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:  # the connection ends at the IPv4 address: that one decides
            return _kind(inner)
    for network, why in DENIED:  # first: their reasons say more than "private"
        if ip.version == network.version and ip in network:
            return why
    for name in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if not ip.is_global:
        return "non-global"
    return None


def check_address(address: str) -> None:
    """Raise :class:`BlockedAddress` if ``address`` (an IP literal) is not a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise BlockedAddress(f"{address!r} is not an IP address") from None
    why = _kind(ip)
    if why is not None:
        raise BlockedAddress(f"{address} is a {why} address: refused")


def resolve_public(host: str, port: int, *, allow_private: bool = False) -> str:
    """The address to connect to for ``host``: every address it resolves to must pass
    :func:`check_address` (one bad answer refuses the host: it could be the one used)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise FetchError(f"cannot resolve {host!r}: {e}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise FetchError(f"{host!r} resolves to no address")
    if not allow_private:
        for address in addresses:
            check_address(address)
    return addresses[0]


def _split(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise FetchError(f"not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"only http and https URLs can be fetched, not {parts.scheme or 'a bare path'!r}")
    if not parts.hostname:
        raise FetchError("the URL has no host")
    if parts.username or parts.password:
        raise FetchError("URLs with credentials are refused")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


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
