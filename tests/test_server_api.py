"""The REST API against a running server (uvicorn on loopback, httpx as the client), on real photos."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from viscurate import Dataset  # noqa: E402
from viscurate.server.app import API_KEY_HEADER, create_app  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, app):
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    import skimage
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    root = tmp_path_factory.mktemp("api")
    photos = root / "photos"
    photos.mkdir()
    names = sorted(n for n in os.listdir(data) if n.endswith((".png", ".jpg")))[:12]
    for copy in range(3):  # 36 files, so that search has a second page
        for n in names:
            shutil.copy(os.path.join(data, n), photos / f"{copy}_{n}")
    ds = Dataset.create("photos", home=root / "home")
    ds.add_images(photos, progress=False)
    return root / "home"


@pytest.fixture(scope="module")
def client(home):
    with _Server(create_app(home)) as c:
        yield c


def test_datasets_list_and_info(client):
    assert client.get("/v1/datasets").json() == {"datasets": ["photos"], "length": 1, "recent": "photos"}
    info = client.get("/v1/datasets/photos").json()
    assert info["name"] == "photos" and "directory" not in info
    assert client.get("/v1/datasets/nope").status_code == 404
    assert client.get("/v1/datasets/..%2F..%2Fetc").status_code == 404


def test_search_pages_of_25_with_length(client):
    first = client.post("/v1/datasets/photos/search", json={"q": {}, "page": 1}).json()
    second = client.post("/v1/datasets/photos/search", json={"q": {}, "page": 2}).json()
    assert first["length"] == second["length"] >= 30
    assert len(first["results"]) == 25 and len(second["results"]) == first["length"] - 25
    assert not {d["_id"] for d in first["results"]} & {d["_id"] for d in second["results"]}
    wide = client.post("/v1/datasets/photos/search", json={"q": {"width": {"$gt": 500}}, "page": 1}).json()
    assert wide["length"] > 0 and all(d["width"] > 500 for d in wide["results"])
    assert wide["length"] < first["length"]


@pytest.mark.parametrize("body, status", [({"q": {"width": {"$frobnicate": 1}}}, 400), ({"q": [], "page": 1}, 422),
                                          ({"q": {}, "page": 0}, 422), ({"q": {}, "page": "x"}, 422)])
def test_bad_searches_are_clear_4xx_errors(client, body, status):
    r = client.post("/v1/datasets/photos/search", json=body)
    assert r.status_code == status and "error" in r.json() and "Traceback" not in r.text


def test_sample_media_and_thumbnail(client):
    doc = client.post("/v1/datasets/photos/search", json={"q": {"format": "PNG"}}).json()["results"][0]
    assert client.get(f"/v1/datasets/photos/samples/{doc['_id']}").json()["_id"] == doc["_id"]
    media = client.get(f"/v1/datasets/photos/samples/{doc['_id']}/media")
    assert media.status_code == 200 and media.content == open(doc["filepath"], "rb").read()
    thumb = client.get(f"/v1/datasets/photos/samples/{doc['_id']}/thumbnail", params={"size": 64})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    from io import BytesIO

    from PIL import Image
    assert max(Image.open(BytesIO(thumb.content)).size) == 64
    assert client.get(f"/v1/datasets/photos/samples/{doc['_id']}/thumbnail", params={"size": 99999}).status_code == 400
    assert client.get("/v1/datasets/photos/samples/no-such-id/media").status_code == 404
    assert client.get("/v1/datasets/photos/samples/..%2F..%2F..%2Fetc%2Fpasswd/media").status_code == 404


def test_openapi_document_is_served(client):
    spec = client.get("/openapi.json").json()
    assert "/v1/datasets/{name}/search" in spec["paths"]


def test_api_keys_are_required_when_configured(home):
    from viscurate.server.keys import KeyStore, check_bind

    store = KeyStore(home)
    with _Server(create_app(home, require_key=True)) as c:
        assert c.get("/v1/datasets").status_code == 401  # no key exists yet: nobody gets in
        key = store.create("ci")
        assert c.get("/v1/datasets", headers={API_KEY_HEADER: "wrong"}).status_code == 401
        assert c.get("/v1/datasets", headers={API_KEY_HEADER: key}).json()["length"] == 1
        store.revoke("ci")  # counts from the next request
        assert c.get("/v1/datasets", headers={API_KEY_HEADER: key}).status_code == 401
    assert key not in store.path.read_text() and oct(store.path.stat().st_mode)[-3:] == "600"
    check_bind("127.0.0.1", has_keys=False)
    with pytest.raises(Exception, match="API key"):
        check_bind("0.0.0.0", has_keys=False)


# ---- Cortex's analyze: a URL or an upload becomes a labeled document --------------------------------

def _photo_bytes(name: str) -> bytes:
    import skimage
    with open(os.path.join(os.path.dirname(skimage.__file__), "data", name), "rb") as f:
        return f.read()


def test_analyze_an_upload_returns_the_labeled_document_and_keeps_it_only_when_asked(client):
    r = client.post("/v1/analyze/upload", files={"file": ("cat.png", _photo_bytes("chelsea.png"), "image/png")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["width"] == 451 and doc["height"] == 300 and len(doc["hash"]) == 64 and "filepath" not in doc
    assert doc["object_analysis_processed"] is True and doc["face_analysis_processed"] is True
    cat = [o for o in doc["object_analysis"] if o["name"] == "cat"]
    assert cat and cat[0]["confidence"] > 0.5 and 0 <= cat[0]["label_quality_estimation"] <= 1
    assert 0 <= doc["label_quality_estimation"] <= 1
    assert client.post("/v1/datasets/analyze-scratch/search", json={"q": {}}).status_code == 404  # not kept
    assert "analyze-scratch" not in client.get("/v1/datasets").json()["datasets"]

    r = client.post("/v1/analyze/upload", data={"dataset": "kept"},
                    files={"file": ("cup.png", _photo_bytes("coffee.png"), "image/png")})
    kept = r.json()
    assert any(o["name"] == "cup" for o in kept["object_analysis"])
    assert client.get(f"/v1/datasets/kept/samples/{kept['_id']}").json()["hash"] == kept["hash"]


def test_analyze_refuses_inside_urls_other_schemes_bad_names_and_flags_bad_bytes(client):
    for url in ("http://127.0.0.1:1/x.png", "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"):
        r = client.post("/v1/analyze", json={"url": url})
        assert r.status_code == 400 and ("refused" in r.json()["error"] or "only http" in r.json()["error"])
    r = client.post("/v1/analyze/upload", data={"dataset": "../etc"}, files={"file": ("a.png", b"x", "image/png")})
    assert r.status_code == 400 and "dataset name" in r.json()["error"]
    r = client.post("/v1/analyze/upload", files={"file": ("junk.jpg", b"\xff\xd8\xff not really a jpeg", "image/jpeg")})
    assert r.status_code == 200 and r.json()["issues"]  # a sample flagged with the reason, not a crash


def test_analyze_a_url_and_the_upload_limit(home):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    photo = _photo_bytes("chelsea.png")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(photo)))
            self.end_headers()
            self.wfile.write(photo)

    images = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{images.server_address[1]}/chelsea.png"
    try:
        with _Server(create_app(home, allow_private_urls=True, max_upload_bytes=len(photo))) as c:
            doc = c.post("/v1/analyze", json={"url": url, "dataset": "from-urls"}).json()
            assert doc["url"] == url and any(o["name"] == "cat" for o in doc["object_analysis"])
            r = c.post("/v1/analyze/upload", files={"file": ("big.png", photo + b"\0" * 100, "image/png")})
            assert r.status_code == 413
        with _Server(create_app(home, max_upload_bytes=1000)) as c:
            r = c.post("/v1/analyze", json={"url": url})
            assert r.status_code == 400  # loopback: refused unless the operator allows private addresses
    finally:
        images.shutdown()


def test_similar_issues_and_duplicate_groups(home, client):
    ds = Dataset.open("photos", home=home)
    ds.embed(progress=False)
    ds.find_duplicates()
    doc = client.post("/v1/datasets/photos/search", json={"q": {"filepath": {"$regex": "0_chelsea"}}}).json()["results"][0]
    hits = client.get(f"/v1/datasets/photos/samples/{doc['_id']}/similar", params={"k": 3}).json()["results"]
    assert len(hits) == 3 and hits[0]["similarity"] > 0.99  # its two copies (1_ and 2_chelsea.png) come first
    assert client.get(f"/v1/datasets/photos/samples/{doc['_id']}/similar", params={"k": 0}).status_code == 400
    # a model name is never a path: ".." once made the index folder the dataset's own, and the index lock
    # its .lock, which the server holds shared: the request hung for good (issue 14)
    for model in ("..", ".", "../..", "a/../..", ".hidden"):
        r = client.get(f"/v1/datasets/photos/samples/{doc['_id']}/similar", params={"model": model}, timeout=20)
        assert r.status_code in (400, 404), (model, r.status_code, r.text)
    assert client.get("/v1/datasets").status_code == 200
    groups = client.get("/v1/datasets/photos/duplicates").json()
    # each photo x 3 (the gray and RGB chessboards, the same pixels, share one group)
    assert groups["length"] == 11 and sum(len(g["members"]) for g in groups["results"]) == 36
    chelsea = [g for g in groups["results"] if doc["_id"] in {m["_id"] for m in g["members"]}]
    assert len(chelsea) == 1 and len(chelsea[0]["members"]) == 3
    counts = client.get("/v1/datasets/photos/issues").json()
    flagged = counts["issues"].get("duplicate", 0) + counts["issues"].get("near_duplicate", 0)
    assert flagged == 36 - groups["length"]  # every member but the representatives
    assert counts["samples"] == 36 and counts["samples_with_issues"] >= flagged


def test_the_server_runs_as_many_requests_at_once_as_asked(tmp_path):
    """`viscurate serve --threads N`: the app's startup sets the event loop's thread limiter, so at most N
    sync routes run at once and the others wait in arrival order."""
    import anyio
    import anyio.to_thread

    from viscurate.server.app import request_threads

    async def limit_inside(app) -> tuple[int, int]:
        before = anyio.to_thread.current_default_thread_limiter().total_tokens
        async with app.router.lifespan_context(app):
            return before, anyio.to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(limit_inside, create_app(tmp_path, request_threads=3)) == (40, 3)
    assert anyio.run(limit_inside, create_app(tmp_path)) == (40, 40)  # None: the ASGI server's own limit
    assert request_threads(1) == 8 and request_threads(64) == 40
