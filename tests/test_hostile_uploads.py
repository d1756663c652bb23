"""Hostile bodies and fetches against a running server (issue 14, items 4, 6, 7): an archive upload is
refused and leaves no byte behind, every route's body is cut at its limit while it is read (declared or
streamed), and a URL fetch ends at its wall-clock deadline however slowly the other side dribbles."""
from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from tests.test_server_api import _Server  # noqa: E402
from viscurate.server.app import create_app  # noqa: E402
from viscurate.server.defaults import MAX_BODY_BYTES as DEFAULT_MAX_BODY_BYTES  # noqa: E402
from viscurate.server.netguard import FetchError, fetch  # noqa: E402

MiB = 2**20


def _disk(home: Path) -> tuple[int, set[str]]:
    """Total bytes of every file under ``home``, and their paths."""
    total, files = 0, set()
    for folder, _, names in os.walk(home):
        for name in names:
            path = os.path.join(folder, name)
            total += os.path.getsize(path)
            files.add(os.path.relpath(path, home))
    return total, files


def _zip_of_zeros(members: int = 3, size: int = 64 * MiB) -> bytes:
    """A small zip whose members unpack to ``size`` bytes each (zeros compress about a thousandfold)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            with zf.open(f"photo_{i}.jpg", "w", force_zip64=True) as member:
                for _ in range(size // MiB):
                    member.write(bytes(MiB))
    return buffer.getvalue()


def _tar_gz_of_zeros(size: int = 64 * MiB) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo("photo.png")
        info.size = size
        tf.addfile(info, io.BytesIO(bytes(size)))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _zip_of_zeros()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile") / "home"
    with _Server(create_app(home)) as client:
        yield home, client


# ---- item 4: uploads are single images -----------------------------------------------------------

@pytest.mark.parametrize("route, fields", [("/v1/analyze/upload", {}), ("/v1/analyze", {}),
                                           ("/v1/analyze/upload", {"dataset": "kept"}),
                                           ("/v1/analyze", {"dataset": "kept"})])
def test_a_zip_upload_is_refused_and_writes_nothing(served, bomb, route, fields):
    home, client = served
    assert len(bomb) < 2 * MiB  # three 64 MiB members: far over the 50 MiB limit once unpacked
    before = _disk(home)
    r = client.post(route, data=fields, files={"file": ("photos.jpg", bomb, "image/jpeg")})
    assert r.status_code == 400, r.text
    assert _disk(home) == before
    assert "uploads are single images" in r.json()["error"] and "zip" in r.json()["error"]
    assert client.get("/v1/datasets").json()["datasets"] == []  # "kept" was not created either


def test_a_compressed_tar_upload_is_refused_and_writes_nothing(served):
    home, client = served
    before = _disk(home)
    r = client.post("/v1/analyze/upload", files={"image": ("photo.png", _tar_gz_of_zeros(), "image/png")})
    assert r.status_code == 400, r.text
    assert _disk(home) == before
    assert "uploads are single images" in r.json()["error"]


# ---- item 6: every body has a limit, enforced while it is read ----------------------------------

def _raw_request(port: int, head: str, body_chunks=(), *, read_timeout: float = 20) -> tuple[int, dict, int]:
    """Send ``head`` (the request line and headers) and then ``body_chunks`` from a second thread while
    this one waits for the answer: (status, JSON body, bytes of body sent before the answer came)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(read_timeout)
    answered = threading.Event()
    sent = [0]

    def send_body() -> None:
        try:
            for chunk in body_chunks:
                if answered.is_set():
                    return
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:  # the server answered and closed: what the test wants
            pass

    sock.sendall(head.encode())
    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    finally:
        answered.set()
        sender.join(10)
        sock.close()
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}"), sent[0]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62


def test_a_declared_200_mb_search_body_is_refused_before_it_is_read(served):
    _, client = served
    port = int(str(client.base_url).rsplit(":", 1)[1])
    head = ("POST /v1/datasets/d/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {200 * 10**6}\r\n\r\n")
    t0 = time.monotonic()
    status, answer, sent = _raw_request(port, head)  # not a byte of the body is sent
    assert status == 413 and f"{DEFAULT_MAX_BODY_BYTES:,} bytes" in answer["error"]
    assert time.monotonic() - t0 < 5


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(served):
    _, client = served
    port = int(str(client.base_url).rsplit(":", 1)[1])
    head = ("POST /v1/datasets/d/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    piece = b'{"q": {"filename": "' + b"x" * (64 * 1024)

    def chunks():  # up to 200 MB, unless the server answers first
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
        for _ in range(3200):
            yield b"%x\r\n%s\r\n" % (64 * 1024, b"x" * (64 * 1024))

    status, answer, sent = _raw_request(port, head, chunks())
    assert status == 413 and "larger than this route's limit" in answer["error"]
    assert sent < 50 * MiB  # answered long before the 200 MB were sent (socket buffers hold a few MB)


def test_bodies_under_their_route_limits_pass(served):
    _, client = served
    r = client.post("/v1/datasets/d/search", json={"q": {}, "padding": "x" * (DEFAULT_MAX_BODY_BYTES - 100)})
    assert r.status_code == 404, r.text  # read in full and parsed: the dataset does not exist
    over = client.post("/v1/datasets/d/search", json={"q": {}, "padding": "x" * DEFAULT_MAX_BODY_BYTES})
    assert over.status_code == 413
    # a list of sample ids may take more than a query: 80,000 ids are about 2 MiB
    ids = {"ids": [f"{i:024x}" for i in range(80_000)]}
    assert client.put("/v1/datasets/d/slices/s", json=ids).status_code == 404
    # an upload's limit is the image's (50 MiB) plus its form: a 3 MiB upload is read and then judged
    for route in ("/v1/analyze/upload", "/v1/analyze"):
        r = client.post(route, data={"dataset": "../etc"}, files={"file": ("a.png", bytes(3 * MiB), "image/png")})
        assert r.status_code == 400 and "dataset name" in r.json()["error"], r.text


def test_an_upload_over_its_limit_is_refused_by_its_declared_length(tmp_path):
    with _Server(create_app(tmp_path / "home", max_upload_bytes=MiB)) as client:
        port = int(str(client.base_url).rsplit(":", 1)[1])
        for path in ("/v1/analyze/upload", "/v1/analyze"):
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {2 * MiB}\r\n"
                    "Content-Type: multipart/form-data; boundary=b\r\n\r\n")
            status, answer, _ = _raw_request(port, head)
            assert status == 413 and "limit" in answer["error"]
        # streamed without a length, the spooled upload is cut at the limit too
        head = ("POST /v1/analyze/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'

        def chunks():
            yield b"%x\r\n%s\r\n" % (len(part), part)
            for _ in range(1000):
                yield b"%x\r\n%s\r\n" % (64 * 1024, bytes(64 * 1024))

        status, answer, sent = _raw_request(port, head, chunks())
        assert status == 413 and "limit" in answer["error"] and sent < 40 * MiB


# ---- item 7: a fetch has a wall-clock deadline ---------------------------------------------------

class _Dribbler(BaseHTTPRequestHandler):
    """Answers one byte a second: the body (``/body``), the headers themselves (``/headers``) or a body
    of unknown length (``/stream``)."""

    def log_message(self, *args):
        pass

    def _dribble(self, data: bytes) -> None:
        for i in range(len(data)):
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(1)

    def do_GET(self):  # noqa: N802
        try:
            if self.path == "/headers":
                self._dribble(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Slow: " + b"z" * 100)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                if self.path == "/body":
                    self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.flush()
                self._dribble(b"\x89" * 100)
        except OSError:  # the client gave up: what the test wants
            pass
        self.close_connection = True


@pytest.fixture(scope="module")
def dribbler():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Dribbler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path", ["/body", "/headers", "/stream"])
def test_a_one_byte_a_second_server_is_cut_at_the_deadline(dribbler, path):
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="longer than its limit of 2 s"):
        fetch(f"{dribbler}{path}", deadline=2, timeout=15, allow_private=True)
    assert 1.9 < time.monotonic() - t0 < 3.5  # each read took a second: only the deadline could stop it


def test_analyze_of_a_slow_url_answers_400_at_the_deadline(tmp_path, dribbler):
    with _Server(create_app(tmp_path / "home", allow_private_urls=True, fetch_deadline=2)) as client:
        t0 = time.monotonic()
        r = client.post("/v1/analyze", json={"url": f"{dribbler}/body"})
        assert r.status_code == 400 and "longer than its limit of 2 s" in r.json()["error"], r.text
        assert time.monotonic() - t0 < 4
