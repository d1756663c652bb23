"""Ingest of image URLs against a real HTTP server on 127.0.0.1 serving real photos (scikit-image's), with
every way a download goes wrong: slow answers, 404, 500 (once, always), 429, truncated bodies, wrong
content types, opt-out headers, a redirect loop, bodies over the size cap. Every URL must end with its
status, no good image may be lost, loopback must be refused unless allowed, and a ``kill -9`` mid-run
followed by a re-run must give the complete set without duplicates."""
from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from viscurate import Dataset
from viscurate.errors import ViscurateError

from .conftest import VISCURATE, skimage_photo, viscurate_cli

pytest.importorskip("aiohttp")

PHOTOS = ("astronaut.png", "rocket.jpg", "coffee.png", "chelsea.png", "retina.jpg", "camera.png")
#: Fast retries and short timeouts so that the slow and failing URLs cost a second, not a minute.
FAST = {"timeout": 1.0, "retries": 2, "backoff": 0.05, "max_bytes": 700_000}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # (the default 5 drops concurrent connects: a second's SYN retry each)


class PhotoServer:
    """A threaded HTTP server whose paths say how to answer. ``hits[path]``: requests seen; ``broken``:
    paths that fail until removed from the set (for the re-run tests)."""

    def __init__(self, delay: float = 0.0):
        self.photos = {name: skimage_photo(name).read_bytes() for name in PHOTOS}
        self.hits: Counter[str] = Counter()
        self.broken: set[str] = set()
        self.delay = delay
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                with server.lock:
                    server.hits[self.path] += 1
                    hits = server.hits[self.path]
                if server.delay:
                    time.sleep(server.delay)
                server.answer(self, self.path, hits)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "PhotoServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return self.base + path

    @staticmethod
    def send(h, status: int, body: bytes = b"", ctype: str | None = None, headers: dict | None = None,
             length: int | None = None) -> None:
        h.send_response(status)
        if ctype:
            h.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        try:
            h.wfile.write(body)
        except OSError:
            pass

    def answer(self, h, path: str, hits: int) -> None:
        kind, _, name = path.strip("/").partition("/")
        photo = self.photos.get(name.split("?")[0], self.photos["rocket.jpg"])
        ctype = "image/jpeg" if name.endswith(".jpg") else "image/png"
        if path in self.broken:
            return self.send(h, 404, b"not yet")
        if kind in ("img", "copy"):
            return self.send(h, 200, photo, ctype)
        if kind == "slow":
            time.sleep(3)
            return self.send(h, 200, photo, ctype)
        if kind == "missing":
            return self.send(h, 404, b"<html>no</html>", "text/html")
        if kind == "flaky":  # a 500, then the photo
            return self.send(h, 500, b"oops") if hits == 1 else self.send(h, 200, photo, ctype)
        if kind == "busy":  # a 429 asking for a short wait, then the photo
            return self.send(h, 429, b"", headers={"Retry-After": "0"}) if hits == 1 else self.send(h, 200, photo, ctype)
        if kind == "down":
            return self.send(h, 500, b"oops")
        if kind == "truncated":  # declares the whole photo, sends a tenth, hangs up
            h.close_connection = True
            return self.send(h, 200, photo[: len(photo) // 10], ctype, length=len(photo))
        if kind == "html":
            return self.send(h, 200, b"<!doctype html><html><body>a web page, not an image</body></html>",
                             "image/jpeg")
        if kind == "as-text":
            return self.send(h, 200, photo, "text/plain")
        if kind == "noai":
            return self.send(h, 200, photo, ctype, headers={"X-Robots-Tag": "noai, noimageai"})
        if kind == "other-bot":  # a directive for another crawler does not concern us
            return self.send(h, 200, photo, ctype, headers={"X-Robots-Tag": "otherbot: noai"})
        if kind == "loop":
            return self.send(h, 302, headers={"Location": "/loop-back/x"})
        if kind == "loop-back":
            return self.send(h, 302, headers={"Location": "/loop/x"})
        if kind == "moved":
            return self.send(h, 301, headers={"Location": f"/img/{name}"})
        if kind == "big":
            return self.send(h, 200, self.photos["astronaut.png"], "image/png")
        if kind == "big-unsized":  # no Content-Length: the cap must cut the stream
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            try:
                h.wfile.write(self.photos["astronaut.png"])
            except OSError:
                pass
            return
        return self.send(h, 404, b"?")


#: path -> the status its URL must end with (and the attempts it must take).
EXPECTED = {
    "/img/rocket.jpg": ("ok", 1), "/img/coffee.png": ("ok", 1), "/copy/coffee.png": ("ok", 1),
    "/slow/chelsea.png": ("timeout", 3), "/missing/x.jpg": ("http_404", 1), "/flaky/retina.jpg": ("ok", 2),
    "/busy/camera.png": ("ok", 2), "/down/x.jpg": ("http_500", 3), "/truncated/coffee.png": ("truncated", 3),
    "/html/x.jpg": ("not_an_image", 1), "/as-text/rocket.jpg": ("ok", 1), "/noai/chelsea.png": ("opted_out", 1),
    "/other-bot/camera.png": ("ok", 1), "/loop/x": ("redirect_loop", 1), "/moved/retina.jpg": ("ok", 1),
    "/big/astronaut.png": ("too_large", 1), "/big-unsized/astronaut.png": ("too_large", 1),
}


def _by_url(ds: Dataset) -> dict[str, dict]:
    docs = ds.find({}, page_size=10_000)["results"]
    return {d["url"]: d for d in docs}


@pytest.fixture
def server():
    with PhotoServer() as s:
        yield s


def test_every_url_ends_with_its_status_and_no_good_image_is_lost(home, tmp_path, server):
    ds = Dataset.create("web", home)
    urls = [server.url(p) for p in EXPECTED]
    report = ds.add_images(urls, allow_private_urls=True, download=FAST, workers=1, progress=False)
    docs = _by_url(ds)
    assert len(docs) == len(EXPECTED) == ds.count()
    for path, (status, attempts) in EXPECTED.items():
        doc = docs[server.url(path)]
        got = (doc["download"]["status"], doc["download"]["attempts"])
        assert got == (status, attempts), f"{path}: {doc['download']}"
        assert doc["source"] == "url" and doc["origin"] == server.url(path)
        if status == "ok":
            name = path.rsplit("/", 1)[1]
            photo = server.photos[name]
            assert doc["hash"] == hashlib.sha256(photo).hexdigest(), path  # the very bytes, nothing lost
            assert Path(doc["filepath"]).read_bytes() == photo
            assert doc["width"] > 0 and "download_failed" not in doc.get("issues", [])
            assert doc["download"]["bytes"] == len(photo)
        else:
            assert "download_failed" in doc["issues"] and "filepath" not in doc and "hash" not in doc
            assert doc["error"].startswith(status)
    assert report.downloaded == 8 and report.download_failed == 9 and report.added == 17
    # the magic bytes win over the Content-Type: a JPEG served as text/plain is a JPEG
    assert docs[server.url("/as-text/rocket.jpg")]["download"]["content_type"] == "text/plain"
    assert docs[server.url("/as-text/rocket.jpg")]["format"] == "JPEG"
    # the redirect is followed and recorded
    assert docs[server.url("/moved/retina.jpg")]["download"]["final_url"] == server.url("/img/retina.jpg")
    # two URLs, same bytes: two samples, one file
    same = {docs[server.url(p)]["filepath"] for p in ("/img/coffee.png", "/copy/coffee.png")}
    assert len(same) == 1
    # a web page is not read to its end, and failures stay queryable
    assert ds.count({"download.status": {"$ne": "ok"}}) == 9
    assert ds.count({"issues": "download_failed"}) == 9
    # ids come from the URL (decision #4)
    from viscurate.sources.ref import sample_id
    assert docs[server.url("/img/rocket.jpg")]["_id"] == sample_id(server.url("/img/rocket.jpg"))


def test_a_rerun_fetches_only_what_failed(home, tmp_path, server):
    ds = Dataset.create("web", home)
    good, bad = server.url("/img/rocket.jpg"), server.url("/img/coffee.png")
    server.broken.add("/img/coffee.png")
    url_list = tmp_path / "urls.txt"
    url_list.write_text(f"# two photos\n{good}\n\n{bad}\n{good}\n")
    first = ds.add_images(url_list, allow_private_urls=True, download=FAST, workers=1, progress=False)
    assert (first.downloaded, first.download_failed, first.skipped) == (1, 1, 1)  # the second `good` is skipped
    assert _by_url(ds)[bad]["download"]["status"] == "http_404"
    server.broken.clear()
    hits_before = dict(server.hits)
    second = ds.add_images(url_list, allow_private_urls=True, download=FAST, workers=1, progress=False)
    assert server.hits["/img/rocket.jpg"] == hits_before["/img/rocket.jpg"]  # not fetched again
    assert server.hits["/img/coffee.png"] == hits_before["/img/coffee.png"] + 1
    assert (second.unchanged, second.changed, second.downloaded) == (1, 1, 1)
    doc = _by_url(ds)[bad]
    assert doc["download"]["status"] == "ok" and "download_failed" not in doc.get("issues", [])
    assert ds.count() == 2


def test_a_table_keeps_its_other_columns_as_metadata(home, tmp_path, server):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = tmp_path / "photos.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["URL", "caption", "license"])
        w.writerow([server.url("/img/rocket.jpg"), "a rocket", "CC0"])
        w.writerow([server.url("/missing/x.jpg"), "gone", ""])
        w.writerow(["not a url", "skipped with a warning", ""])
    parquet = tmp_path / "more.parquet"
    pq.write_table(pa.table({"url": [server.url("/img/camera.png")], "score": [0.5]}), parquet)
    ds = Dataset.create("web", home)
    report = ds.add_images([table, parquet], allow_private_urls=True, download=FAST, workers=0, progress=False)
    docs = _by_url(ds)
    assert docs[server.url("/img/rocket.jpg")]["metadata"] == {"caption": "a rocket", "license": "CC0"}
    assert docs[server.url("/missing/x.jpg")]["metadata"] == {"caption": "gone"}
    assert docs[server.url("/img/camera.png")]["metadata"] == {"score": 0.5}
    assert ds.count({"metadata.caption": "a rocket"}) == 1
    assert any("not a url" in w for w in report.warnings)
    no_url = tmp_path / "nourl.csv"
    no_url.write_text("path,caption\n/a.jpg,x\n")
    with pytest.raises(ViscurateError, match="no 'url' column"):
        ds.add_images(no_url, allow_private_urls=True)


def test_loopback_is_refused_unless_allowed(home, server):
    ds = Dataset.create("web", home)
    urls = [server.url("/img/rocket.jpg"), server.url("/img/coffee.png").replace("127.0.0.1", "localhost"),
            "http://[::1]:9/x.jpg", "http://169.254.169.254/latest/meta-data"]
    report = ds.add_images(urls, download=FAST, workers=0, progress=False)
    docs = _by_url(ds)
    assert {d["download"]["status"] for d in docs.values()} == {"blocked_address"}
    assert report.download_failed == 4
    assert sum(server.hits.values()) == 0  # nothing reached the server, a name resolving to it included
    assert "loopback" in docs[urls[1]]["error"] and "link-local" in docs[urls[3]]["error"]


def test_resize_on_arrival(home, server):
    ds = Dataset.create("web", home)
    ds.add_images([server.url("/img/astronaut.png"), server.url("/img/rocket.jpg")], allow_private_urls=True,
                  download={**FAST, "max_bytes": 2**20, "resize": 128}, workers=0, progress=False)
    for doc in _by_url(ds).values():
        assert doc["download"]["status"] == "ok"
        assert max(doc["width"], doc["height"]) == 128
        assert os.path.getsize(doc["filepath"]) < 100_000


def test_cli_takes_urls_and_the_allow_flag(home, tmp_path, server):
    url = server.url("/img/rocket.jpg")
    viscurate_cli(home, "ingest", url, "--dataset", "web", "--no-progress")
    ds = Dataset.open("web", home)
    assert _by_url(ds)[url]["download"]["status"] == "blocked_address"
    out = viscurate_cli(home, "ingest", url, "--dataset", "web", "--allow-private-urls", "--json").stdout
    assert '"downloaded": 1' in out
    assert _by_url(ds)[url]["download"]["status"] == "ok"
    bad = viscurate_cli(home, "ingest", "ftp://example.org/a.jpg", "--dataset", "web", check=False)
    assert bad.returncode != 0 and "http" in (bad.stdout + bad.stderr)


def test_kill_9_mid_run_then_rerun_gives_every_image_once(home, tmp_path):
    """200 URLs at 20 ms each; the ingest is killed once some batches are committed, then run again."""
    with PhotoServer(delay=0.02) as server:
        names = list(PHOTOS[1:])
        urls = [server.url(f"/img/{names[i % len(names)]}?n={i}") for i in range(200)]
        url_list = tmp_path / "urls.txt"
        url_list.write_text("\n".join(urls) + "\n")
        args = [VISCURATE, "ingest", str(url_list), "--dataset", "web", "--allow-private-urls", "--workers", "1",
                "--batch-size", "10", "--concurrency", "4", "--no-progress"]
        env = dict(os.environ, VISCURATE_HOME=str(home))
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            stored = 0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.3)
                try:
                    stored = Dataset.open("web", home).count()
                except ViscurateError:
                    continue
                if stored >= 30:
                    break
            assert proc.poll() is None, f"the ingest ended before it could be killed: {proc.stderr.read()!r}"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        partial = Dataset.open("web", home).count()
        assert 30 <= partial < 200
        viscurate_cli(home, "ingest", url_list, "--dataset", "web", "--allow-private-urls", "--workers", "1",
                      "--no-progress")
        ds = Dataset.open("web", home)
        docs = ds.find({}, page_size=1000)["results"]
        assert len(docs) == 200 == len({d["_id"] for d in docs}) == len({d["url"] for d in docs})
        assert {d["url"] for d in docs} == set(urls)
        assert all(d["download"]["status"] == "ok" and Path(d["filepath"]).is_file() for d in docs)
        # stored once each: five photos, five files (and no partial file left under a final name)
        media = [p for p in (home / "datasets").rglob("media/*/*") if p.is_file()]
        assert len({d["filepath"] for d in docs}) == len(names)
        assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.stem for p in media)
        # the re-run fetched only what the killed run had not committed
        assert sum(server.hits.values()) < 200 + 200 - 30 + 1


def test_bad_url_input_is_refused_before_anything_is_written(home):
    ds = Dataset.create("web", home)
    with pytest.raises(ViscurateError, match="http"):
        ds.add_images(["https://"], allow_private_urls=True)
    with pytest.raises(ViscurateError, match="unknown download option"):
        ds.add_images(["https://example.org/a.jpg"], download={"timeot": 3})
    assert ds.count() == 0


def test_opt_out_can_be_turned_off(home, server):
    ds = Dataset.create("web", home)
    ds.add_images([server.url("/noai/rocket.jpg")], allow_private_urls=True,
                  download={**FAST, "honour_opt_out": False}, workers=0, progress=False)
    assert _by_url(ds)[server.url("/noai/rocket.jpg")]["download"]["status"] == "ok"


def test_rest_ingest_job_takes_urls_and_the_operators_choice_only(home, server):
    pytest.importorskip("fastapi")
    from tests.test_server_api import _Server
    from viscurate.server.app import create_app

    Dataset.create("web", home)
    url = server.url("/img/rocket.jpg")

    def ingest(client, body):
        r = client.post("/v1/datasets/web/jobs", json={"kind": "ingest", **body})
        if r.status_code != 202:
            return r.status_code, r.json()
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in ("done", "failed"):
                return 202, job
            time.sleep(0.1)
        raise AssertionError(job)

    with _Server(create_app(home)) as client:  # the default: loopback refused, whatever the request says
        status, job = ingest(client, {"urls": [url], "allow_private_urls": True})
        assert status == 202 and job["state"] == "done", job
        assert _by_url(Dataset.open("web", home))[url]["download"]["status"] == "blocked_address"
        status, answer = ingest(client, {"urls": ["/etc/passwd"]})
        assert status == 400 and "http(s) URLs only" in answer["error"]
        assert sum(server.hits.values()) == 0
    with _Server(create_app(home, allow_private_urls=True)) as client:  # the operator's choice
        status, job = ingest(client, {"urls": [url]})
        assert job["state"] == "done" and job["result"]["downloaded"] == 1, job
        assert _by_url(Dataset.open("web", home))[url]["download"]["status"] == "ok"


if __name__ == "__main__":  # pragma: no cover - serve the test photos by hand
    with PhotoServer() as s:
        print(s.base, file=sys.stderr)
        s.thread.join()
