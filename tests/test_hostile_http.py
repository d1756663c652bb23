"""Hostile HTTP against a real server (uvicorn on loopback, httpx and Debian's Chromium as clients):
a page of another origin cannot write, a rebinding host name gets nothing, every answer carries the
security headers, nothing loads from the internet, no engine text or server path leaks, only the
real loopback addresses go without a key, and the workspace is private (issue 14, items 5, 9 and 10).
"""
from __future__ import annotations

import os
import re
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from tests.conftest import skimage_photos, viscurate_cli  # noqa: E402
from tests.test_server_api import _Server  # noqa: E402
from viscurate import Dataset  # noqa: E402
from viscurate.server.app import create_app  # noqa: E402

EVIL = "http://evil.example"
JUNK = ("junk.jpg", b"\xff\xd8\xff not really a jpeg", "image/jpeg")  # cheap to analyze: flagged, no model runs


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-http")
    ds = Dataset.create("photos", home=root / "home")
    ds.add_images(skimage_photos(root / "photos", ("chelsea.png", "coffee.png")), progress=False)
    return root / "home"


@pytest.fixture(scope="module")
def client(home):
    with _Server(create_app(home)) as c:
        yield c


def _own_origin(client) -> str:
    return str(client.base_url).rstrip("/")


# ---- CSRF: writes only from the server's own pages -------------------------------------------------

def test_a_cross_origin_write_is_refused_and_writes_nothing(client, home):
    r = client.post("/v1/analyze/upload", data={"dataset": "evil"}, files={"file": JUNK}, headers={"Origin": EVIL})
    assert r.status_code == 403 and "another origin" in r.json()["error"]
    for origin in ("null", "http://127.0.0.1:1", "https://127.0.0.1.evil.example"):
        r = client.put("/v1/datasets/photos/views/evil", json={"q": {}}, headers={"Origin": origin})
        assert r.status_code == 403, origin
    assert "evil" not in client.get("/v1/datasets").json()["datasets"]
    assert "evil" not in client.get("/v1/datasets/photos/views").json()["views"]
    assert not (home / "datasets" / "evil").exists()
    # reads stay open (a page of another origin cannot read the answer), and so do the server's own pages,
    # programs that send no Origin, and requests with the header only a same-origin page can send
    assert client.get("/v1/datasets", headers={"Origin": EVIL}).status_code == 200
    own = {"Origin": _own_origin(client)}
    assert client.post("/v1/datasets/photos/search", json={"q": {}}, headers=own).status_code == 200
    assert client.post("/v1/datasets/photos/search", json={"q": {}}).status_code == 200
    assert client.post("/v1/datasets/photos/search", json={"q": {}},
                       headers={"Origin": EVIL, "X-Viscurate": "1"}).status_code == 200


def test_a_page_of_another_origin_cannot_create_a_dataset_in_chromium(client, home):
    """The issue's reproduction: a no-cors multipart fetch from a page on another port."""
    from tests.chromium import chromium_browser, require_chromium

    require_chromium()
    target = _own_origin(client)
    page_html = f"""<!doctype html><script>
      const form = new FormData();
      form.append("dataset", "from-a-page");
      form.append("file", new Blob(["not an image"], {{type: "image/jpeg"}}), "x.jpg");
      window.done = fetch("{target}/v1/analyze/upload", {{method: "POST", mode: "no-cors", body: form}})
        .then(() => "sent", e => "failed: " + e);
    </script>""".encode()

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page_html)))
            self.end_headers()
            self.wfile.write(page_html)

    other = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with chromium_browser() as browser:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
            # settled either way: "sent" with an opaque answer, or "failed" when the browser withholds even
            # that (Cross-Origin-Resource-Policy); the request went out in both cases
            assert page.evaluate("window.done").startswith(("sent", "failed"))
    finally:
        other.shutdown()
    assert "from-a-page" not in client.get("/v1/datasets").json()["datasets"]
    assert not (home / "datasets" / "from-a-page").exists()


def test_the_web_app_sends_the_header_that_proves_its_origin():
    from viscurate.server.web import WEB_DIR
    assert '"X-Viscurate": "1"' in (WEB_DIR / "app.js").read_text()


# ---- DNS rebinding: only the names the server serves -----------------------------------------------

def test_a_rebinding_host_name_gets_nothing(client, home):
    port = client.base_url.port
    for host in ("rebind.attacker.example", f"rebind.attacker.example:{port}", "127.0.0.1.nip.io", "[::2]"):
        r = client.get("/v1/datasets", headers={"Host": host})
        assert r.status_code == 421 and "photos" not in r.text, host
    assert client.get("/", headers={"Host": "rebind.attacker.example"}).status_code == 421
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert client.get("/v1/datasets", headers={"Host": host}).status_code == 200, host
    with _Server(create_app(home, allowed_hosts=("vis.example.org",))) as proxied:
        assert proxied.get("/v1/datasets", headers={"Host": "vis.example.org"}).status_code == 200
        assert proxied.get("/v1/datasets", headers={"Host": "other.example.org"}).status_code == 421
        r = proxied.post("/v1/datasets/photos/search", json={"q": {}},
                         headers={"Host": "vis.example.org", "Origin": "https://vis.example.org"})
        assert r.status_code == 200


# ---- security headers on every kind of answer, nothing from the internet ---------------------------

def test_every_answer_carries_the_security_headers(client, home):
    from viscurate.server.security import APP_POLICY

    sid = client.post("/v1/datasets/photos/search", json={"q": {}}).json()["results"][0]["_id"]
    answers = {
        "app": client.get("/"), "app file": client.get("/app/index.html"), "script": client.get("/app/app.js"),
        "json": client.get("/v1/datasets"), "openapi": client.get("/openapi.json"),
        "media": client.get(f"/v1/datasets/photos/samples/{sid}/media"),
        "thumbnail": client.get(f"/v1/datasets/photos/samples/{sid}/thumbnail", params={"size": 32}),
        "404": client.get("/v1/datasets/nope"), "400": client.get(f"/v1/datasets/photos/samples/{sid}/similar?k=0"),
        "422": client.post("/v1/datasets/photos/search", json={"q": []}),
        "405": client.delete("/v1/datasets"),
        "421": client.get("/v1/datasets", headers={"Host": "evil.example"}),
        "403": client.post("/v1/datasets/photos/search", json={"q": {}}, headers={"Origin": EVIL}),
    }
    with _Server(create_app(home, require_key=True)) as keyed:
        answers["401"] = keyed.get("/v1/datasets")
    for what, r in answers.items():
        assert r.status_code < 500, what
        h = r.headers
        assert h.get("x-content-type-options") == "nosniff", what
        assert h.get("x-frame-options") == "DENY", what
        assert h.get("referrer-policy") == "no-referrer", what
        assert h.get("cross-origin-resource-policy") == "same-origin", what
        assert "frame-ancestors 'none'" in h.get("content-security-policy", ""), what
    for what in ("app", "app file"):
        assert answers[what].headers["content-security-policy"] == APP_POLICY
    assert "sandbox" in answers["json"].headers["content-security-policy"]


def test_no_page_loads_anything_from_the_internet(client):
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404  # CDN pages, off
    assert "/v1/datasets/{name}/search" in client.get("/openapi.json").json()["paths"]
    for path in ("/", "/app/index.html", "/app/app.js", "/app/app.css"):
        # what loads something: an attribute, a CSS url() or @import, a fetch (an SVG namespace loads nothing)
        loads = r"""(?:\b(?:src|href|action)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?|fetch\(\s*["'`])(?:https?:)?//"""
        assert not re.search(loads, client.get(path).text, re.I), path


# ---- what an answer may say: no engine internals, no server paths -----------------------------------

def test_a_query_the_engine_refuses_is_a_400_without_its_text(client):
    r = client.post("/v1/datasets/photos/search", json={"q": {"filepath": {"$regex": "(?P<x>a)(?P=x)"}}})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error.startswith("the query could not run") and "server's log" in error
    assert "Error:" not in error and "perl" not in error


def test_analyze_answers_carry_no_server_path(client, home):
    for data in ({}, {"dataset": "uploads"}):
        r = client.post("/v1/analyze/upload", data=data, files={"file": JUNK})
        assert r.status_code == 200, r.text
        assert "filepath" not in r.json() and str(home) not in r.text and "/server/media/" not in r.text


# ---- who goes without a key ------------------------------------------------------------------------

def test_only_the_real_loopback_addresses_go_without_a_key(tmp_path):
    from viscurate.server.keys import check_bind, is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("127.0.0.2", "127.1.2.3", "::ffff:127.0.0.1", "0.0.0.0", "::"))
    with pytest.raises(Exception, match="API key"):
        check_bind("127.0.0.2", has_keys=False)
    proc = viscurate_cli(tmp_path / "home", "serve", "--host", "127.0.0.2", "--port", "1", check=False, timeout=60)
    assert proc.returncode != 0 and "API key" in proc.stderr + proc.stdout


# ---- the workspace is the user's alone -------------------------------------------------------------

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_workspace_folders_are_private_unless_shared(tmp_path, monkeypatch):
    from viscurate.server.keys import KeyStore

    monkeypatch.delenv("VISCURATE_SHARED", raising=False)
    old = os.umask(0o022)
    try:
        home = tmp_path / "private"
        ds = Dataset.create("pets", home=home)
        ds.add_images(skimage_photos(tmp_path / "photos", ("chelsea.png",)), progress=False)
        for folder in (home, home / "datasets", ds.directory, ds.directory / "media"):
            assert _mode(folder) == 0o700, folder
        KeyStore(tmp_path / "keys-only").create("ci")  # the server folder, made by the key store
        assert _mode(tmp_path / "keys-only") == _mode(tmp_path / "keys-only" / "server") == 0o700
        with _Server(create_app(tmp_path / "served")):  # made by a server's start, before any upload
            assert _mode(tmp_path / "served") == _mode(tmp_path / "served" / "server") == 0o700

        monkeypatch.setenv("VISCURATE_SHARED", "1")
        shared = Dataset.create("pets", home=tmp_path / "shared")
        assert _mode(shared.directory) == _mode(tmp_path / "shared") == 0o755
    finally:
        os.umask(old)
