"""One URL -> one :class:`~.result.Download`, with aiohttp on an asyncio event loop.

Each attempt: the URL's host is checked by the address guard (:mod:`viscurate.sources.netguard`: an IP
literal here, a name by :class:`GuardedResolver` when it is resolved, so the connection goes to the
very address that was checked and a second DNS answer cannot point it elsewhere), then GET without
following redirects; a redirect is followed here, at most ``max_redirects`` hops, each hop checked
again, a hop seen before ending as ``redirect_loop``. The answer must be 2xx, carry no opt-out header
(:mod:`.optout`), declare at most ``max_bytes`` and deliver at most that; its first bytes must be an
image signature (:mod:`.sniff`: the bytes decide, not the ``Content-Type``, which is only recorded);
the body is cut short as soon as one of these fails. The whole attempt has one wall-clock ``timeout``
(a server trickling a byte a second never trips a per-read one).

Timeouts, connection errors, truncated bodies, 5xx and 429 are retried ``retries`` times after
``backoff`` seconds, doubled each time (a 429's ``Retry-After`` is honoured up to
:data:`MAX_RETRY_AFTER`); any other answer (404, 403, not an image...) is final at once.

>>> import asyncio
>>> async def demo():
...     async with open_session(DownloadOptions()) as session:
...         return (await download(session, "ftp://example.org/a.jpg", DownloadOptions(), None)).status
>>> asyncio.run(demo())
'invalid_url'
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urljoin

from ..._version import __version__
from ...sources.netguard import BlockedAddress, FetchError, check_address, check_host, split_url
from .optout import opted_out
from .result import Download
from .sniff import SNIFF_BYTES, image_extension

#: The longest wait a 429's ``Retry-After`` may impose before a retry.
MAX_RETRY_AFTER = 30.0
_REDIRECTS = (301, 302, 303, 307, 308)
_READ_CHUNK = 1 << 16

#: ``store(data, extension) -> (path, sha256, size)``: keeps the bytes (see :mod:`.store`).
Store = Callable[[bytes, str], Awaitable[tuple[str, str, int]]]


@dataclass(frozen=True)
class DownloadOptions:
    """How URLs are fetched.

    ``concurrency``: downloads in flight; ``per_host``: connections to one host at once; ``timeout``:
    seconds one attempt may take, redirects and body included; ``retries`` / ``backoff``: see the
    module; ``max_bytes``: the size cap; ``allow_private``: lift the address guard (loopback, private,
    link-local addresses); ``honour_opt_out``: skip images whose server says ``noai``...; ``resize``:
    store images scaled down to this longest side (``None``: as downloaded); ``dns_ttl``: seconds a DNS
    answer is reused."""

    concurrency: int = 64
    per_host: int = 16
    timeout: float = 30.0
    connect_timeout: float = 10.0
    retries: int = 2
    backoff: float = 1.0
    max_bytes: int = 64 * 2**20
    max_redirects: int = 5
    allow_private: bool = False
    honour_opt_out: bool = True
    resize: int | None = None
    dns_ttl: float = 300.0
    user_agent: str = f"viscurate/{__version__}"


class _Blocked(OSError):
    """The resolver's refusal, as the ``OSError`` aiohttp expects from a resolver (it wraps it)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def guarded_resolver(allow_private: bool) -> Any:
    """An aiohttp resolver that refuses a host when any of its addresses fails the address guard."""
    import aiohttp

    class GuardedResolver(aiohttp.abc.AbstractResolver):
        def __init__(self) -> None:
            self._inner = aiohttp.ThreadedResolver()

        async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
            hosts = await self._inner.resolve(host, port, family)
            if not allow_private:
                for h in hosts:  # one bad answer refuses the host: it could be the one connected to
                    try:
                        check_address(h["host"])
                    except BlockedAddress as e:
                        raise _Blocked(f"{host} resolves to {e}") from None
            return hosts

        async def close(self) -> None:
            await self._inner.close()

    return GuardedResolver()


@contextlib.asynccontextmanager
async def open_session(options: DownloadOptions) -> AsyncIterator[Any]:
    """An aiohttp session with the guard, the connection limits and the DNS cache of ``options``."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=max(1, options.concurrency), limit_per_host=max(1, options.per_host),
                                     resolver=guarded_resolver(options.allow_private), use_dns_cache=True,
                                     ttl_dns_cache=int(options.dns_ttl))
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=options.connect_timeout)
    headers = {"User-Agent": options.user_agent, "Accept": "image/*,*/*;q=0.5"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers, trust_env=False,
                                     auto_decompress=True) as session:
        yield session


@dataclass
class _Attempt:
    result: Download
    retry: bool = False
    wait: float | None = None  # a server's Retry-After


def _fail(url: str, status: str, error: str, *, retry: bool = False, http_status: int | None = None,
          final_url: str | None = None, content_type: str | None = None, size: int = 0,
          wait: float | None = None) -> _Attempt:
    return _Attempt(Download(url, status, http_status=http_status, error=error, final_url=final_url,
                             content_type=content_type, bytes=size), retry, wait)


async def download(session: Any, url: str, options: DownloadOptions, store: Store | None) -> Download:
    """Fetch ``url`` (with retries) and hand its bytes to ``store``; never raises for a bad URL, answer
    or network: the status says what happened."""
    t0 = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        outcome = await _attempt(session, url, options, store)
        if not outcome.retry or attempts > options.retries:
            break
        delay = options.backoff * 2 ** (attempts - 1)
        if outcome.wait is not None:
            delay = max(delay, min(outcome.wait, MAX_RETRY_AFTER))
        await asyncio.sleep(delay)
    return replace(outcome.result, attempts=attempts, seconds=time.monotonic() - t0)


async def _attempt(session: Any, url: str, options: DownloadOptions, store: Store | None) -> _Attempt:
    import aiohttp

    current = url
    seen = {url}
    try:
        async with asyncio.timeout(options.timeout):
            for _ in range(options.max_redirects + 1):
                try:
                    _, host, _ = split_url(current)
                    check_host(host, allow_private=options.allow_private)
                except BlockedAddress as e:
                    return _fail(url, "blocked_address", f"{current}: {e}", final_url=current)
                except FetchError as e:
                    return _fail(url, "invalid_url", f"{current}: {e}", final_url=current)
                async with session.get(current, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            return _fail(url, f"http_{response.status}", f"{current}: a redirect without a "
                                         f"Location", http_status=response.status, final_url=current)
                        current = urljoin(current, location)
                        if current in seen:
                            return _fail(url, "redirect_loop", f"{url} redirects in a loop (back to {current})",
                                         http_status=response.status, final_url=current)
                        seen.add(current)
                        continue
                    return await _read(response, url, current, options, store)
            return _fail(url, "too_many_redirects", f"{url}: more than {options.max_redirects} redirects",
                         final_url=current)
    except TimeoutError:
        return _fail(url, "timeout", f"{url}: no complete answer within {options.timeout:g} s", retry=True,
                     final_url=current)
    except aiohttp.ClientPayloadError as e:
        return _fail(url, "truncated", f"{url}: the body ended early ({e})", retry=True, final_url=current)
    except aiohttp.ClientConnectorError as e:
        blocked = _blocked_reason(e)
        if blocked is not None:
            return _fail(url, "blocked_address", f"{current}: {blocked}", final_url=current)
        return _fail(url, "connection_error", f"{current}: {e}", retry=True, final_url=current)
    except (aiohttp.ClientError, OSError, ValueError) as e:
        return _fail(url, "connection_error", f"{current}: {type(e).__name__}: {e}", retry=True, final_url=current)


def _blocked_reason(error: BaseException) -> str | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, _Blocked):
            return seen.reason
        os_error = getattr(seen, "os_error", None)
        if isinstance(os_error, _Blocked):
            return os_error.reason
        seen = seen.__cause__ or seen.__context__
    return None


async def _read(response: Any, url: str, current: str, options: DownloadOptions, store: Store | None) -> _Attempt:
    status = response.status
    ctype = response.headers.get("Content-Type")
    where = dict(http_status=status, final_url=current, content_type=ctype)
    if not 200 <= status < 300:
        retry = status >= 500 or status == 429
        return _fail(url, f"http_{status}", f"{current} answered HTTP {status}", retry=retry,
                     wait=_retry_after(response.headers.get("Retry-After")), **where)
    if options.honour_opt_out and opted_out(response.headers.getall("X-Robots-Tag", [])):
        return _fail(url, "opted_out", f"{current} opts out of AI use (X-Robots-Tag: "
                     f"{', '.join(response.headers.getall('X-Robots-Tag'))}); --ignore-opt-out to take it anyway",
                     **where)
    declared = response.content_length
    if declared is not None and declared > options.max_bytes:
        return _fail(url, "too_large", f"{current} declares {declared} bytes, more than the limit of "
                     f"{options.max_bytes}", **where)
    chunks: list[bytes] = []
    size = 0
    sniffed = False
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > options.max_bytes:
            return _fail(url, "too_large", f"{current} sends more than the limit of {options.max_bytes} bytes",
                         size=size, **where)
        chunks.append(chunk)
        if not sniffed and size >= SNIFF_BYTES:
            sniffed = True
            if image_extension(b"".join(chunks)[:SNIFF_BYTES]) is None:  # stop reading a web page
                return _fail(url, "not_an_image", f"{current} is not an image (Content-Type: {ctype}; it starts "
                             f"with {b''.join(chunks)[:16]!r})", size=size, **where)
    data = b"".join(chunks)
    ext = image_extension(data[:SNIFF_BYTES])
    if ext is None:
        return _fail(url, "not_an_image", f"{current} is not an image (Content-Type: {ctype}; {size} bytes)",
                     size=size, **where)
    path = digest = None
    if store is not None:
        path, digest, size = await store(data, ext)
    return _Attempt(Download(url, "ok", bytes=size, path=path, sha256=digest, **where))


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def download_options(given: "DownloadOptions | dict | None" = None, *, allow_private: bool = False) -> DownloadOptions:
    """``given`` (options, a dict of them, or nothing) as :class:`DownloadOptions`; ``allow_private``
    lifts the address guard as well. An unknown option raises :class:`~viscurate.errors.ViscurateError`
    naming the known ones.

    >>> download_options({"timeout": 5}, allow_private=True).allow_private
    True
    """
    import dataclasses

    from ...errors import ViscurateError
    if given is None:
        options = DownloadOptions()
    elif isinstance(given, DownloadOptions):
        options = given
    elif isinstance(given, dict):
        known = {f.name for f in dataclasses.fields(DownloadOptions)}
        wrong = sorted(set(given) - known)
        if wrong:
            raise ViscurateError(f"unknown download option(s) {', '.join(wrong)}; known: {', '.join(sorted(known))}")
        options = DownloadOptions(**given)
    else:
        raise ViscurateError(f"download options are a dict or DownloadOptions, not {type(given).__name__}")
    return replace(options, allow_private=True) if allow_private else options
