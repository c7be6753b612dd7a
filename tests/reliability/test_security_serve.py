"""``llmobs serve`` as started from the command line: loopback by default, a token beyond it, bounded
bodies, and no path outside the console's own files — checked over real HTTP against the real process."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

LLMOBS = str(Path(sys.executable).with_name("llmobs"))
TRAVERSALS = [
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2fetc%2fpasswd",
    "/static/%252e%252e/%252e%252e/etc/passwd",
    "/static//etc/passwd",
    "/static/..\\..\\..\\etc\\passwd",
    "/static/app.css/../../../etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/app.css%00.png",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "//etc/passwd",
    "/static/../llmobs.db",
    "/static/../../pyproject.toml",
    "/api/../../etc/passwd",
    "/index.html/../../../etc/passwd",
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    env.update(LLMOBS_CONFIG_WATCH="false", **extra)
    return env


class Served:
    def __init__(self, tmp_path: Path, *args: str, **env: str):
        self.process = subprocess.Popen(
            [LLMOBS, "--store", str(tmp_path / "serve.db"), "serve", "--port", "0", *args],
            cwd=tmp_path, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("llmobs console:"), line + self.process.stderr.read()
        self.url = line.split()[-1].rstrip("/")
        self.host, port = self.url.split("//")[1].rsplit(":", 1)
        self.port = int(port)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                host: str = "127.0.0.1") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(host, self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)  # the path exactly as given
            conn.putheader("Host", f"127.0.0.1:{self.port}")
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # its threads' stacks to stderr, then it is killed
            time.sleep(1)
            self.process.kill()
            _, err = self.process.communicate()
            raise AssertionError(f"llmobs serve did not stop within 30 s of SIGTERM:\n{err[-6000:]}") from None


def _outside_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_binds_loopback_by_default(tmp_path):
    served = Served(tmp_path)
    try:
        assert served.host == "127.0.0.1"
        status, _ = served.request("GET", "/api/traces")
        assert status == 200
        outside = _outside_address()
        if outside is not None:
            with pytest.raises(OSError):
                socket.create_connection((outside, served.port), timeout=5).close()
    finally:
        served.stop()


def test_refuses_to_listen_beyond_loopback_without_a_token(tmp_path):
    done = subprocess.run([LLMOBS, "--store", str(tmp_path / "s.db"), "serve", "--host", "0.0.0.0", "--port", "0"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "without a token" in done.stderr


def test_beyond_loopback_every_request_needs_the_token(tmp_path):
    token = "s3cret-" + os.urandom(8).hex()
    served = Served(tmp_path, "--host", "0.0.0.0", LLMOBS_SERVE_TOKEN=token)
    try:
        for method, path, body in [("GET", "/api/traces", None), ("GET", "/api/stats", None),
                                   ("POST", "/v1/traces", b"")]:
            headers = {"Content-Type": "application/x-protobuf"}
            assert served.request(method, path, body, headers)[0] == 401
            assert served.request(method, path, body, {**headers, "Authorization": "Bearer wrong"})[0] == 401
            assert served.request(method, path, body, {**headers, "Authorization": f"Bearer {token}"})[0] == 200
        status, page = served.request("GET", "/")
        assert status == 200 and b"token" in page.lower()  # the login page, not the console
    finally:
        served.stop()


def test_body_size_is_limited(tmp_path):
    served = Served(tmp_path, "--max-body-mb", "1")
    try:
        status, _ = served.request("POST", "/v1/traces", b"\0" * (2 * 1024 * 1024),
                                   {"Content-Type": "application/x-protobuf"})
        assert status == 413
        assert served.request("POST", "/v1/traces", b"", {"Content-Type": "application/x-protobuf"})[0] == 200
    finally:
        served.stop()


def test_no_path_traversal(tmp_path):
    (tmp_path / "etc").mkdir()
    served = Served(tmp_path)
    try:
        for path in TRAVERSALS:
            status, body = served.request("GET", path)
            assert status in (400, 403, 404, 405), (path, status)
            assert b"root:" not in body and b"SQLite format" not in body and b"[project]" not in body, path
        assert served.request("GET", "/static/app.css")[0] == 200  # the console's own files are served
    finally:
        served.stop()
