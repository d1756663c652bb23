"""The address guard: which hosts a URL a user gave may reach (no SSRF into the local network).

- Only ``http`` and ``https``, on any port (:func:`split_url`).
- A host is resolved once and every address it resolves to is checked: only global unicast addresses
  pass (the standard library's ``is_global``, and the special ranges of :data:`DENIED` it lets through,
  such as ``fec0::/10`` site-local and ``192.0.0.0/24``); the IPv4 address inside an IPv4-mapped, 6to4
  or NAT64 address is checked as itself, and Teredo tunnels are refused (:func:`check_address`).
- :func:`resolve_public` returns the address that was checked, and callers connect to *that* address
  (the request keeps the original ``Host`` and TLS server name), so a second DNS answer cannot point
  the connection elsewhere (DNS rebinding).

It lives here, below the server, because both the server's URL fetch (``server/netguard.py``) and the
ingest of image URLs (``pipeline/download``) need it. ``allow_private=True`` lifts the check, for a
user or an operator who means to fetch from their own network (a choice made by whoever runs
viscurate, never by a request).

>>> check_address("127.0.0.1")
Traceback (most recent call last):
...
viscurate.sources.netguard.BlockedAddress: 127.0.0.1 is a loopback address: refused
>>> check_address("93.184.215.14")
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from ..errors import ViscurateError

__all__ = ["FetchError", "BlockedAddress", "check_address", "check_host", "resolve_public", "split_url", "DENIED"]

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


def split_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an ``http``/``https`` URL; :class:`FetchError` for any other, or one
    with credentials in it.

    >>> split_url("https://example.org/a.jpg")
    ('https', 'example.org', 443)
    """
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


def ip_literal(host: str) -> bool:
    """Whether ``host`` is an IP address written out (no DNS answer stands between it and the socket).

    >>> ip_literal("127.0.0.1"), ip_literal("::1"), ip_literal("example.org")
    (True, True, False)
    """
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def check_host(host: str, *, allow_private: bool = False) -> None:
    """Refuse a URL's host at once when it is an IP literal that must not be reached (a name is
    checked when it is resolved, by :func:`resolve_public` or a resolver that calls it)."""
    if not allow_private and ip_literal(host):
        check_address(host.strip("[]"))
