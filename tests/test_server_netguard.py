"""Fetching user-given URLs: SSRF refusals (loopback, private, link-local, mapped and encoded forms, other
schemes), size limits and redirects, against a real HTTP server on loopback (reachable only when the
operator allows private addresses, which is itself what the refusals check)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("httpx")

from viscurate.server.netguard import BlockedAddress, FetchError, check_address, fetch  # noqa: E402

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        if self.path == "/image.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)
        elif self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", "/image.png")
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif self.path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10_000))
            self.end_headers()
            self.wfile.write(b"x" * 10_000)
        elif self.path == "/big-chunked":
            self.send_response(200)
            self.end_headers()  # no length: read until close
            self.wfile.write(b"x" * 10_000)
            self.close_connection = True
        else:
            self.send_response(404)
            self.end_headers()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "::ffff:127.0.0.1", "fe80::1",
                                     "fc00::1", "2002:7f00:1::1"])
def test_inside_addresses_are_refused(address):
    with pytest.raises(BlockedAddress, match="refused"):
        check_address(address)


# special ranges the standard library's is_global let through (issue 14: fec0::1 and 192.0.0.8 were
# fetched), and IPv4 addresses inside IPv6 forms: mapped, IPv4-compatible, 6to4, NAT64, Teredo
@pytest.mark.parametrize("address, why", [
    ("fec0::1", "site-local"), ("192.0.0.8", "special-purpose"), ("192.0.0.170", "special-purpose"),
    ("100.127.255.254", "shared"), ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"), ("198.18.0.1", ""), ("192.88.99.1", "6to4 relay"), ("240.0.0.1", ""),
    ("255.255.255.255", ""), ("0.1.2.3", ""), ("::", ""), ("::127.0.0.1", ""), ("fe80::1%eth0", "link-local"),
    ("ff02::1", "multicast"), ("::ffff:169.254.169.254", "link-local"), ("::ffff:192.0.0.8", "special-purpose"),
    ("::ffff:100.64.0.1", "shared"), ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::a00:1", "private"),
    ("64:ff9b::c000:8", "special-purpose"), ("64:ff9b:1::1", ""), ("2002:a00:1::1", "private"),
    ("2002:c000:8::1", "special-purpose"), ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ""),
    ("2001:db8::1", ""), ("3fff::1", "documentation"), ("100::1", ""), ("5f00::1", "")])
def test_special_ranges_and_embedded_forms_are_refused(address, why):
    with pytest.raises(BlockedAddress, match=f"{why}.*refused"):
        check_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_pass_in_every_form(address):
    check_address(address)


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://localhost:8080/x.jpg", "http://[::1]/",
                                 "http://2130706433/", "http://0x7f.1/", "http://169.254.169.254/latest/meta-data/",
                                 "https://10.0.0.1/a.png", "http://[::ffff:192.168.0.1]/", "http://[fec0::1]/",
                                 "http://192.0.0.8/", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"])
def test_urls_that_lead_inside_are_refused_before_any_connection(url):
    with pytest.raises(BlockedAddress):
        fetch(url, timeout=2)


@pytest.mark.parametrize("url, reason", [("file:///etc/passwd", "only http and https"),
                                         ("ftp://example.com/a.jpg", "only http and https"),
                                         ("gopher://example.com/", "only http and https"),
                                         ("/etc/passwd", "only http and https"),
                                         ("http://user:secret@example.com/", "credentials"),
                                         ("http:///nohost", "no host"),
                                         ("http://example.com:99999/", "valid URL")])
def test_other_schemes_and_malformed_urls_are_refused(url, reason):
    with pytest.raises(FetchError, match=reason):
        fetch(url, timeout=2)


def test_the_loopback_server_is_refused_by_default_and_served_when_the_operator_allows(server):
    with pytest.raises(BlockedAddress):
        fetch(f"{server}/image.png", timeout=2)
    got = fetch(f"{server}/image.png", timeout=5, allow_private=True)
    assert got.data == PNG and got.content_type == "image/png"


def test_redirects_are_followed_and_bounded(server):
    got = fetch(f"{server}/hop", timeout=5, allow_private=True)
    assert got.data == PNG and got.url.endswith("/image.png")
    with pytest.raises(FetchError, match="redirects"):
        fetch(f"{server}/loop", timeout=5, allow_private=True)


def test_bodies_over_the_limit_are_refused(server):
    with pytest.raises(FetchError, match="limit"):
        fetch(f"{server}/big-declared", max_bytes=1000, allow_private=True, timeout=5)
    with pytest.raises(FetchError, match="limit"):
        fetch(f"{server}/big-chunked", max_bytes=1000, allow_private=True, timeout=5)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(f"{server}/missing", allow_private=True, timeout=5)
