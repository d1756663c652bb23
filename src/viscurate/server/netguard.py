"""Fetch a URL a user gave without letting it reach inside the network (SSRF) or fill memory.

- Only ``http`` and ``https``, on any port.
- The host is resolved once and every address it resolves to is checked: loopback, private, shared
  (100.64/10), link-local (where cloud metadata services live: 169.254.169.254), multicast, reserved and
  unspecified addresses are refused, IPv4-mapped and 6to4 forms of them too. The connection then goes to
  the address that was checked (the request carries the original ``Host`` and TLS server name), so a
  second DNS answer cannot point it elsewhere (DNS rebinding).
- Redirects are followed here, at most :data:`MAX_REDIRECTS`, and each hop is checked again.
- The body is streamed and cut at ``max_bytes`` (a larger ``Content-Length`` is refused before reading).

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
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from ..errors import ViscurateError

__all__ = ["FetchError", "BlockedAddress", "Fetched", "check_address", "resolve_public", "fetch",
           "MAX_REDIRECTS", "DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT"]

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 50 * 2**20
DEFAULT_TIMEOUT = 15.0


class FetchError(ViscurateError):
    """The URL could not be fetched (bad URL, network error, too large, too many redirects)."""


class BlockedAddress(FetchError):
    """The URL leads to an address the server must not reach."""


@dataclass(frozen=True)
class Fetched:
    url: str  # the final URL, after redirects
    data: bytes
    content_type: str | None


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` must not be reached, or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            return _kind(inner)
    for name in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "shared (carrier-grade NAT)"
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


def fetch(url: str, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = DEFAULT_TIMEOUT,
          allow_private: bool = False) -> Fetched:
    """GET ``url`` with the checks above. Errors are :class:`FetchError` with a reason a client can read."""
    import httpx

    current = url
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            scheme, host, port = _split(current)
            address = resolve_public(host, port, allow_private=allow_private)
            parts = urlsplit(current)
            literal = f"[{address}]" if ":" in address else address
            direct = urlunsplit((scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
            headers = {"Host": parts.netloc, "User-Agent": "viscurate", "Accept": "image/*,*/*;q=0.5"}
            try:
                with client.stream("GET", direct, headers=headers,
                                   extensions={"sni_hostname": host} if scheme == "https" else {}) as response:
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
                    return Fetched(current, b"".join(chunks), response.headers.get("content-type"))
            except httpx.HTTPError as e:
                raise FetchError(f"cannot fetch {current}: {type(e).__name__}: {e}") from None
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from {url}")
