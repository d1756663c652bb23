"""What a browser may do with the server: reach it only under the names it serves (no DNS rebinding),
change things only from the server's own pages (no cross-site request forgery), and treat every answer
as strictly as it can (security headers).

A page on another site can make the user's browser send requests to ``http://127.0.0.1:8000``: it cannot
read the answers (no CORS is ever approved), but a POST still runs. And a site whose name the attacker
points at 127.0.0.1 after the page loaded (DNS rebinding) is the same origin as that page, so it can read
the answers too; only the ``Host`` header, which the browser fills from the URL, gives it away. Hence:

- ``Host`` must name an address the server serves: a loopback name, the address the connection came in
  on, or one of the operator's ``allowed_hosts`` (a reverse proxy's name); else 421.
- A request that may change something (anything but GET, HEAD, OPTIONS) needs the server's own
  ``Origin``, or no ``Origin`` at all (browsers send one with every such request, so its absence means
  a program: curl, httpx, the tests), or the ``X-Viscurate`` header (which a page of another origin can
  only send after a CORS preflight that this server never approves); else 403. The web app sends it.

>>> host_name("[::1]:8000"), host_name("LocalHost:80"), host_name("example.org")
('::1', 'localhost', 'example.org')
>>> origin_authority("http://127.0.0.1:8000"), origin_authority("null")
('127.0.0.1:8000', None)
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["install", "Guard", "SecurityHeaders", "host_name", "origin_authority", "CSRF_HEADER", "APP_POLICY",
           "DATA_POLICY", "LOOPBACK_NAMES"]

CSRF_HEADER = "X-Viscurate"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# the web app runs only its own script and talks only to its own origin
APP_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
              "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
# anything else (JSON, media) is data: opened on its own, it runs nothing (an SVG's script, say)
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
_ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer"), (b"cross-origin-resource-policy", b"same-origin"),
           (b"cross-origin-opener-policy", b"same-origin"))


def host_name(value: str) -> str:
    """The host of a ``Host`` header (or an origin's authority), lower case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") > 1:  # a bare IPv6 address
        return value
    return value.rsplit(":", 1)[0] if ":" in value else value


def origin_authority(origin: str) -> str | None:
    """``host[:port]`` of an ``Origin`` header, lower case; None for ``null`` or anything not http(s)."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.netloc.lower()


def _header(scope: dict, name: str) -> str | None:
    from starlette.datastructures import Headers

    return Headers(scope=scope).get(name)


class Guard:
    """The ``Host`` and ``Origin`` checks (module docstring). ``allowed_hosts``: host names served
    besides the loopback ones and the local address (no ports; ``*`` for any host, for servers that ask
    every request for a key, which a rebinding page does not have)."""

    def __init__(self, inner: Any, allowed_hosts: Iterable[str] = ()):
        self.inner = inner
        self.allowed = frozenset(host_name(h) for h in allowed_hosts)

    def host_ok(self, scope: dict, host: str | None) -> bool:
        if "*" in self.allowed:
            return True
        if not host:  # HTTP/1.0 without Host: no browser sends that
            return True
        name = host_name(host)
        local = (scope.get("server") or ("",))[0]
        return name in LOOPBACK_NAMES or name in self.allowed or name == str(local).lower()

    def origin_ok(self, scope: dict, host: str | None) -> bool:
        if scope["method"] in _SAFE_METHODS or _header(scope, CSRF_HEADER) is not None:
            return True
        origin = _header(scope, "origin")
        if origin is None:
            return True
        authority = origin_authority(origin)
        if authority is None:  # "null": a sandboxed frame, a file:// page, a privacy redirect
            return False
        return authority == (host or "").strip().lower() or host_name(authority) in self.allowed - {"*"}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            from starlette.responses import JSONResponse

            host = _header(scope, "host")
            if not self.host_ok(scope, host):
                refused = JSONResponse({"error": f"this server does not answer for the host {host!r} (serve it "
                                                 f"with --allowed-host NAME behind a proxy)"}, status_code=421)
                return await refused(scope, receive, send)
            if not self.origin_ok(scope, host):
                refused = JSONResponse({"error": "a request from a page of another origin cannot change anything "
                                                 "here (send it from the web app, or without an Origin header)"},
                                       status_code=403)
                return await refused(scope, receive, send)
        await self.inner(scope, receive, send)


class SecurityHeaders:
    """Adds the security headers to every HTTP answer that does not set its own: nosniff, no framing,
    no referrer, same-origin resources only, and a CSP (:data:`APP_POLICY` for HTML, :data:`DATA_POLICY`
    for the rest)."""

    def __init__(self, inner: Any):
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {k.lower() for k, _ in headers}
                kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                policy = APP_POLICY if kind.startswith(b"text/html") else DATA_POLICY
                for key, value in (*_ALWAYS, (b"content-security-policy", policy.encode())):
                    if key not in present:
                        headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.inner(scope, receive, send_with_headers)


def install(app: Any, allowed_hosts: Iterable[str] = ()) -> None:
    """Put the :class:`Guard` in front of ``app``'s routes and the :class:`SecurityHeaders` around all of
    it, the error pages of Starlette's outermost layer included (hence around the built stack, not as a
    middleware, which sits inside that layer)."""
    app.add_middleware(Guard, allowed_hosts=tuple(allowed_hosts))
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: SecurityHeaders(build())
