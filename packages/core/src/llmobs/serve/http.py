"""The HTTP side of ``llmobs serve``: one port for the OTLP receiver, the JSON API and the console.

Standard library only (``ThreadingHTTPServer``): the console is for one person or a small team and the
receiver's work is decoding and SQLite, so a web framework would add a dependency and little else.

Every request is answered, never with a traceback: OTLP errors follow the OTLP/HTTP spec (400 for a
malformed body, 401, 413 past the size limit — compressed or not — 415 for other content types or
encodings, 503 with Retry-After when the store cannot write), bodies are ``google.rpc.Status`` in the
request's encoding. When no token is set, only requests addressed to this machine's loopback names are
served (a ``Host`` check against DNS rebinding); with a token, every request but the console's static
files needs it, as ``Authorization: Bearer``, Dify's ``api_key`` header, or the console's login cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import queue
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llmobs import strict_json
from llmobs.serve import api, otlp, static
from llmobs.serve.ingest import Ingestor
from llmobs.serve.workers import IngestWorkers
from llmobs.store import TraceStore

_log = logging.getLogger("llmobs.serve")

DEFAULT_MAX_BODY = 32 * 1024 * 1024
#: A rejected body up to this size is read and discarded so the client sees the 413 on a live connection.
_DRAIN_LIMIT = 128 * 1024 * 1024
_COOKIE = "llmobs_token"
_GRPC_CODE = otlp.GRPC_CODE
_SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_SINKS = ("/v1/metrics", "/v1/logs")  # accepted and discarded: the console's statistics come from spans


class ServeError(Exception):
    """The server cannot start as asked (e.g. bound beyond loopback without a token)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) only reaches this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


class Readers:
    """Read-only store connections, one per concurrent request (a connection is not shared by threads)."""

    def __init__(self, path: Any) -> None:
        self.path = path
        self._idle: queue.SimpleQueue[TraceStore] = queue.SimpleQueue()

    @contextmanager
    def store(self) -> Iterator[TraceStore]:
        try:
            reader = self._idle.get_nowait()
        except queue.Empty:
            reader = TraceStore(self.path)
        try:
            yield reader
        finally:
            self._idle.put(reader)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


@dataclass
class App:
    """Everything a request handler needs."""

    ingestor: Ingestor | IngestWorkers
    readers: Readers
    token: str | None
    max_body: int
    allowed_hosts: frozenset[str] | None  # host names (no port) a request may address; None: any


class ConsoleServer(ThreadingHTTPServer):
    """The listening server: ``serve_forever()`` or ``start()`` runs it, ``close()`` stops it and closes the store."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, app: App, host: str, port: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app = app
        self._thread: threading.Thread | None = None
        super().__init__((host.strip("[]"), port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in str(host) else host}:{port}"

    def start(self) -> ConsoleServer:
        """Serve on a daemon thread (tests, benchmarks, embedding in another program)."""
        self._thread = threading.Thread(target=self.serve_forever, name="llmobs-serve", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a loop that never ran
            self.shutdown()
            self._thread = None
        self.server_close()
        self.app.readers.close()
        self.app.ingestor.shutdown()


class _Refused(Exception):
    """An error answer: HTTP status, message; ``close`` when the request body was left unread."""

    def __init__(self, status: int, message: str, *, close: bool = False,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.close, self.headers = status, message, close, headers


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llmobs"
    sys_version = ""
    timeout = 60  # a stalled client frees its thread
    server: ConsoleServer
    encoding = otlp.JSON  # of error bodies: the request's OTLP encoding when it has one

    # --- routing -------------------------------------------------------------------------------------

    def do_POST(self) -> None:
        self._guarded(self._post)

    def do_GET(self) -> None:
        self._guarded(self._get)

    def _guarded(self, handler: Any) -> None:
        self.encoding = otlp.JSON
        try:
            handler(urllib.parse.urlsplit(self.path))
        except _Refused as refused:
            self.close_connection = self.close_connection or refused.close
            body = otlp.error(self.encoding, _GRPC_CODE[refused.status], refused.message)
            self._send(refused.status, body, self.encoding, refused.headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:  # never a traceback to the client
            _log.exception("llmobs serve: request failed: %s %s", self.command, self.path[:200])
            self.close_connection = True
            with suppress(OSError):
                self._json(500, {"error": "internal error; see the server's log"})

    def _post(self, url: urllib.parse.SplitResult) -> None:
        path = url.path.rstrip("/")
        if path == "/login":
            self._login()
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        self.encoding = otlp.CONTENT_TYPES.get(content_type, otlp.JSON)
        self._admit()
        if path.endswith("/v1/traces"):  # a path prefix is fine: Dify's Phoenix provider adds one
            if content_type not in otlp.CONTENT_TYPES:
                raise _Refused(415, f"unsupported content type {content_type[:80]!r}: use {otlp.PROTOBUF} or "
                                    f"{otlp.JSON}", close=True)
            self._traces(self._body())
        elif path.endswith(_SINKS):
            self._body()
            self._send(200, b"", self.encoding)
        else:
            raise _Refused(404, "not found", close=True)

    def _get(self, url: urllib.parse.SplitResult) -> None:
        path = url.path
        if path.startswith("/static/"):
            found = static.asset(path[len("/static/"):])
            if found is None:
                raise _Refused(404, "not found")
            self._send(200, found[0], found[1], (("Cache-Control", "no-cache"),))
        elif path in ("/", "/index.html"):
            self._check_host()
            name = "index.html" if self._has_token() else "login.html"
            self._send(200, static.page(name), "text/html; charset=utf-8",
                       (("Content-Security-Policy", _CSP), ("Cache-Control", "no-store")))
        elif path == "/api" or path.startswith("/api/"):
            self._admit()
            with self.server.app.readers.store() as store:
                status, body = api.handle(store, path, urllib.parse.parse_qs(url.query))
            self._json(status, body, cache=False)
        elif path.rstrip("/").endswith("/v1/traces"):
            raise _Refused(405, "POST OTLP spans here", headers=(("Allow", "POST"),))
        else:
            raise _Refused(404, "not found")

    # --- access --------------------------------------------------------------------------------------

    def _check_host(self) -> None:
        allowed = self.server.app.allowed_hosts
        host = (self.headers.get("Host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host  # without the port
        if allowed is not None and name not in allowed:
            raise _Refused(403, "unexpected Host header: address this server by its loopback address", close=True)

    def _admit(self) -> None:
        self._check_host()
        if not self._has_token():
            raise _Refused(401, "missing or wrong token (Authorization: Bearer <token>)", close=True,
                           headers=(("WWW-Authenticate", 'Bearer realm="llmobs"'),))

    def _has_token(self) -> bool:
        token = self.server.app.token
        if token is None:
            return True
        offered = [self.headers.get("api_key") or ""]
        authorization = self.headers.get("Authorization") or ""
        if authorization[:7].lower() == "bearer ":
            offered.append(authorization[7:].strip())
        try:
            morsel = SimpleCookie(self.headers.get("Cookie") or "").get(_COOKIE)
        except CookieError:
            morsel = None
        if morsel is not None:
            offered.append(urllib.parse.unquote(morsel.value))
        return any(hmac.compare_digest(o.encode(), token.encode()) for o in offered if o)

    def _login(self) -> None:
        self._check_host()
        form = urllib.parse.parse_qs(self._body(limit=64 * 1024).decode("utf-8", "replace"))
        offered = form.get("token", [""])[0]
        token = self.server.app.token
        if token is not None and hmac.compare_digest(offered.encode(), token.encode()):
            cookie = f"{_COOKIE}={urllib.parse.quote(offered)}; HttpOnly; SameSite=Strict; Path=/"
            self._send(303, b"", "text/plain", (("Location", "/"), ("Set-Cookie", cookie)))
        else:
            self._send(401, static.page("login.html"), "text/html; charset=utf-8", (("Content-Security-Policy", _CSP),))

    # --- OTLP ----------------------------------------------------------------------------------------

    def _traces(self, body: bytes) -> None:
        try:
            result = self.server.app.ingestor.receive(body, self.encoding)
        except otlp.PayloadError as exc:
            raise _Refused(400, str(exc)) from None
        if not result.stored:
            raise _Refused(503, "the trace store could not write; retry", headers=(("Retry-After", "2"),))
        self._send(200, otlp.response(self.encoding, result.rejected, result.reason), self.encoding)

    def _body(self, limit: int | None = None) -> bytes:
        """The request body, decompressed, within the size limit (raises _Refused otherwise)."""
        limit = limit or self.server.app.max_body
        too_big = f"body over the {limit} byte limit"
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._decompressed(self._read_chunked(limit), limit)
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise _Refused(411, "Content-Length required", close=True) from None
        if length < 0:
            raise _Refused(400, "invalid Content-Length", close=True)
        if length > limit:
            drained = length <= _DRAIN_LIMIT and self._discard(length)
            raise _Refused(413, too_big, close=not drained)
        body = self.rfile.read(length)
        if len(body) < length:
            raise ConnectionError("the client went away mid-body")
        return self._decompressed(body, limit)

    def _decompressed(self, body: bytes, limit: int) -> bytes:
        try:
            return otlp.inflate(body, self.headers.get("Content-Encoding"), limit)
        except otlp.BodyError as exc:
            raise _Refused(exc.status, str(exc)) from None

    def _read_chunked(self, limit: int) -> bytes:
        parts, size = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                chunk = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _Refused(400, "malformed chunked body", close=True) from None
            if chunk < 0:  # int() takes a sign; read(-1) would read to the end of the connection
                raise _Refused(400, "malformed chunked body", close=True)
            if chunk == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            size += chunk
            if size > limit:
                raise _Refused(413, f"body over the {limit} byte limit", close=True)
            parts.append(self.rfile.read(chunk))
            self.rfile.readline(16)

    def _discard(self, length: int) -> bool:
        """Read and drop ``length`` bytes; False if the client stopped sending first."""
        while length > 0:
            read = len(self.rfile.read(min(length, 1 << 20)))
            if not read:
                return False
            length -= read
        return True

    # --- responses -----------------------------------------------------------------------------------

    def _json(self, status: int, body: Any, *, cache: bool = True) -> None:
        headers = () if cache else (("Cache-Control", "no-store"),)
        self._send(status, _json_bytes(body), "application/json; charset=utf-8", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*_SECURITY_HEADERS, *headers):
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)


def _json_bytes(value: Any) -> bytes:
    """Strict JSON (browsers reject NaN): non-finite numbers become null."""
    return strict_json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
