"""Test harness: a loopback OTLP receiver (the destination), a loopback stand-in for Dify's endpoint
proxy (``/e/<hook>/<path>``) that hands each raw HTTP request to the plugin at one of three levels, and
the plugin started as a server with the SDK's serverless install method.

The levels, as the plugin can be driven without a Dify server:

* ``direct``: the endpoint classes instantiated with the SDK's empty session,
* ``executor``: the SDK's real ``PluginRegistration`` and ``PluginExecutor`` in this process,
* ``serverless``: ``python -m main`` with ``INSTALL_METHOD=serverless``, over HTTP (``POST /invoke``).
"""

# The SDK patches the process with gevent on import: it goes first, as in the plugin's main.py.
import dify_plugin  # noqa: F401, I001

import binascii
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from dify_plugin.config.config import DifyPluginEnv
from dify_plugin.core.entities.plugin.request import EndpointInvokeRequest
from dify_plugin.core.plugin_executor import PluginExecutor
from dify_plugin.core.plugin_registration import PluginRegistration
from dify_plugin.core.runtime import Session
from dify_plugin.core.utils.http_parser import deserialize_request
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmobs.serve import otlp
from llmobs_dify import relay
from llmobs_dify.endpoints import (
    ArmsCheckEndpoint,
    ArmsTracesEndpoint,
    FeedbackEndpoint,
    TracesEndpoint,
)

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
if str(PLUGIN_ROOT) not in sys.path:  # the SDK imports provider/tool/endpoint sources by module name
    sys.path.insert(0, str(PLUGIN_ROOT))

KEY = "dify-presents-this-key-0123456789"
HOOK = "7f3c2a10-hook"

Dispatch = Callable[[bytes], tuple[int, list[tuple[str, str]], bytes]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the destination --------------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """A loopback OTLP/HTTP receiver keeping every export request it accepted."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers_seen: list[dict[str, str]] = []
        self.status = 200
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[Any]:
        """Received spans as SDK spans (the core's decoder, attributes as sent)."""
        out = []
        with self.lock:
            received = list(self.requests)
        for request in received:
            decoded = otlp.decode(request, lambda a, n, s: (n, a), lambda n, a: a, lambda a: a)
            out.extend(decoded.spans)
        return out

    def by_name(self) -> dict[str, Any]:
        return {span.name: span for span in self.spans()}


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.server.status
        if status == 200:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with self.server.lock:
                self.server.requests.append(request)
                self.server.headers_seen.append(dict(self.headers.items()))
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def endpoint_settings(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    settings = {
        "api_key": KEY,
        "otlp_endpoint": receiver.url,
        "otlp_headers": "authorization=Bearer destination-token,x-team=ml",
        "service_name": "dify-test",
        "capture_content": "SPAN_ONLY",
        "max_attribute_bytes": "8192",
        "redact_pii": False,
    }
    settings.update(overrides)
    return settings


@pytest.fixture(autouse=True)
def _fresh_exporters() -> Iterator[None]:
    yield
    relay.EXPORTERS.clear()


# --- Dify's endpoint proxy, in front of the plugin ---------------------------------------------------


class Gateway(ThreadingHTTPServer):
    """Serves ``/e/<hook>/<path>`` like Dify's plugin daemon: the raw request, with the path after the
    hook id, goes to the plugin; the plugin's status, headers and body go back to the caller."""

    daemon_threads = True

    def __init__(self, dispatch: Dispatch) -> None:
        super().__init__(("127.0.0.1", 0), _GatewayHandler)
        self.dispatch = dispatch

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/e/{HOOK}"


class _GatewayHandler(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        prefix = f"/e/{HOOK}"
        path = self.path[len(prefix):] if self.path.startswith(prefix) else self.path
        # Dify's bundled nginx drops header names with underscores (its default ignore_invalid_headers),
        # and the SDK's request parser refuses them: Phoenix's ``api_key`` header never reaches a plugin.
        kept = [(k, v) for k, v in self.headers.items() if "_" not in k]
        head = [f"{self.command} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in kept]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            status, headers, payload = self.server.dispatch(raw)
        except Exception as exc:  # the daemon answers a failed invocation with an error, not a hang-up
            status, headers, payload = 500, [], f"plugin invocation failed: {exc!r}".encode()
        self.send_response(status)
        for key, value in headers:
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def direct(settings: dict[str, Any], session: Session | None = None) -> Dispatch:
    """Level 1: the endpoint classes with the SDK's empty session."""
    classes = {"/v1/traces": TracesEndpoint, "/feedback": FeedbackEndpoint}

    def dispatch(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        request = deserialize_request(raw)
        values = {}
        if request.path.startswith("/adapt_") and request.path.endswith("/api/otlp/traces"):
            values = {"license_key": request.path[len("/adapt_"):-len("/api/otlp/traces")]}
            cls = ArmsCheckEndpoint if request.method == "HEAD" else ArmsTracesEndpoint
        else:
            cls = classes[request.path]
        endpoint = cls(session or Session.empty_session())
        response = endpoint.invoke(request, values, settings)
        return response.status_code, list(response.headers.items()), response.get_data()

    return dispatch


def executor_for_plugin() -> tuple[PluginRegistration, PluginExecutor]:
    """Level 2: the SDK's registration (reads ./manifest.yaml and the YAML files) and executor."""
    cwd = os.getcwd()
    os.chdir(PLUGIN_ROOT)
    try:
        env = DifyPluginEnv()
        registration = PluginRegistration(env)
        return registration, PluginExecutor(env, registration)
    finally:
        os.chdir(cwd)


def in_process(settings: dict[str, Any]) -> Dispatch:
    _, executor = executor_for_plugin()

    def dispatch(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        data = EndpointInvokeRequest(settings=settings, raw_http_request=binascii.hexlify(raw).decode())
        parts = list(executor.invoke_endpoint(Session.empty_session(), data))
        return _endpoint_reply(parts)

    return dispatch


def _endpoint_reply(parts: list[dict[str, Any]]) -> tuple[int, list[tuple[str, str]], bytes]:
    head = parts[0]
    body = b"".join(bytes.fromhex(p["result"]) for p in parts if p.get("result"))
    return int(head["status"]), list((head.get("headers") or {}).items()), body


class ServerlessPlugin:
    """The plugin started as a server by the SDK's serverless install method (``python -m main``)."""

    def __init__(self) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update({"INSTALL_METHOD": "serverless", "SERVERLESS_HOST": "127.0.0.1",
                    "SERVERLESS_PORT": str(self.port)})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "main"], cwd=PLUGIN_ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.output: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        for _ in range(600):  # up to a minute for the SDK to start; polled, not timed
            if self.process.poll() is not None:
                raise RuntimeError("the plugin exited:\n" + "".join(self.output))
            try:
                if requests.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.close()
        raise RuntimeError("the plugin did not start serving:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self.output.append(line.decode("utf-8", "replace"))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def invoke(self, data: dict[str, Any], **session: Any) -> list[dict[str, Any]]:
        """POST /invoke as Dify does; the ``data`` payloads of the session's stream messages."""
        envelope = {"event": "request", "session_id": str(uuid.uuid4()), **session, "data": data}
        reply = requests.post(f"{self.base}/invoke", json=envelope, timeout=60)
        assert reply.status_code == 200, reply.text
        messages = [json.loads(line) for line in reply.text.splitlines() if line.strip()]
        errors = [m for m in messages if m.get("data", {}).get("type") == "error"]
        assert not errors, errors
        return [m["data"]["data"] for m in messages if m.get("data", {}).get("type") == "stream"]

    def dispatch_for(self, settings: dict[str, Any]) -> Dispatch:
        def dispatch(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            parts = self.invoke({"type": "endpoint", "action": "invoke_endpoint", "settings": settings,
                                 "raw_http_request": binascii.hexlify(raw).decode()})
            return _endpoint_reply(parts)

        return dispatch

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def serverless_plugin() -> Iterator[ServerlessPlugin]:
    plugin = ServerlessPlugin()
    yield plugin
    plugin.close()


LEVELS = ("direct", "executor", "serverless")


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_gateway(level: str, request: pytest.FixtureRequest) -> Iterator[Callable[[dict[str, Any]], Gateway]]:
    """Start a gateway in front of the plugin at the test's level, for the given endpoint settings."""
    started: list[Gateway] = []

    def make(settings: dict[str, Any]) -> Gateway:
        if level == "direct":
            dispatch = direct(settings)
        elif level == "executor":
            dispatch = in_process(settings)
        else:
            dispatch = request.getfixturevalue("serverless_plugin").dispatch_for(settings)
        gateway = Gateway(dispatch)
        threading.Thread(target=gateway.serve_forever, daemon=True).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.shutdown()
        gateway.server_close()
