"""A loopback OTLP/HTTP receiver that misbehaves on demand, for the fault and lifecycle tests.

Modes (switchable while it runs): ``ok``; ``500``; ``429`` (with ``Retry-After: 1``); ``stall`` (holds
every request until :meth:`FaultServer.release` — a destination that takes as long as you like);
``reset`` (reads the request, then resets the connection); and a body limit (``max_body``: larger
bodies get 413). Every request body is decoded, so tests can count the spans each attempt carried.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass
class Attempt:
    mode: str
    size: int
    spans: list = field(default_factory=list)  # decoded protobuf spans
    status: int | None = None  # None: no answer (stalled then released, or reset)
    body: bytes = b""  # the raw request body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, mode: str = "ok", max_body: int | None = None) -> None:
        self.mode = mode
        self.max_body = max_body
        self.attempts: list[Attempt] = []
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.released = threading.Event()
        self.stalled = threading.Event()  # set when a request is being held
        super().__init__(("127.0.0.1", port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def release(self) -> None:
        self.released.set()

    def record(self, attempt: Attempt) -> None:
        with self.changed:
            self.attempts.append(attempt)
            self.changed.notify_all()

    def accepted_spans(self) -> list:
        with self.lock:
            return [s for a in self.attempts if a.status == 200 for s in a.spans]

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        """Wait until ``predicate(self)`` holds (re-checked at every request); False on timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(min(left, 0.2))
        return True

    def close(self) -> None:
        self.released.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultServer

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        mode, limit = self.server.mode, self.server.max_body
        if limit is not None and length > limit:
            self.rfile.read(length)
            self.server.record(Attempt("413", length, status=413))
            self._answer(413, b"too large")
            return
        body = self.rfile.read(length)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        attempt = Attempt(mode, length, spans, body=body)
        if mode == "stall":
            self.server.record(attempt)
            self.server.stalled.set()
            self.server.released.wait()
            attempt.status = 200
            self._answer(200, b"")
            with self.server.changed:
                self.server.changed.notify_all()
        elif mode == "reset":
            self.server.record(attempt)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif mode in ("500", "429"):
            attempt.status = int(mode)
            self.server.record(attempt)
            self._answer(int(mode), b"", (("Retry-After", "1"),) if mode == "429" else ())
        else:
            attempt.status = 200
            self.server.record(attempt)
            self._answer(200, b"")

    def _answer(self, status: int, body: bytes, headers=()) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True
