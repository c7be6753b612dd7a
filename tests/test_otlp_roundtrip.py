"""OTLP round trip over loopback: an app configured only by OTEL_* variables exports spans and metrics."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from llmobs import semconv as sc

APP = """
import llmobs
from llmobs import content
from llmobs.recorder import ROOT, get_recorder
for i in range(3):
    agent = get_recorder().start("invoke_agent", "helper", parent=ROOT, session_id="s-1")
    llm = get_recorder().start("chat", provider="openai", model="gpt-4o-mini", parent=agent)
    llm.set_input([content.message("user", [content.text_part("hi, key sk-proj-abcdefghijklmnop1234")])])
    llm.chunk()
    llm.set_usage(40, 10)
    llm.end()
    agent.end()
"""


HEADERS = "authorization=Bearer%20collector-token,x-tenant=acme"  # OTEL_EXPORTER_OTLP_HEADERS: URL-encoded values


class Received:
    def __init__(self):
        self.spans = []
        self.resources = []
        self.metrics = {}
        self.headers = []  # (authorization, x-tenant) of every export request

    def add_traces(self, request):
        for rs in request.resource_spans:
            self.resources.append({a.key: a.value.string_value for a in rs.resource.attributes})
            for ss in rs.scope_spans:
                self.spans += list(ss.spans)

    def add_metrics(self, request):
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    self.metrics.setdefault(m.name, []).append(m)


def run_app(tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    environ.update(OTEL_SERVICE_NAME="otlp-app", OTEL_METRIC_EXPORT_INTERVAL="100000", **env)
    out = subprocess.run(
        [sys.executable, "-c", APP], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / ".llmobs").exists(), "with an OTLP endpoint the store must not be the default"


def check(received):
    names = sorted(s.name for s in received.spans)
    assert names == ["chat gpt-4o-mini"] * 3 + ["invoke_agent helper"] * 3
    assert all(r.get("service.name") == "otlp-app" for r in received.resources)
    chat = next(s for s in received.spans if s.name.startswith("chat"))
    attrs = {a.key: a.value for a in chat.attributes}
    assert attrs[sc.USAGE_INPUT_TOKENS].int_value == 40
    assert attrs[sc.SESSION_ID].string_value == "s-1"
    assert attrs[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS].int_value > 0
    assert "sk-proj-abcdefghijklmnop1234" not in attrs[sc.INPUT_MESSAGES].string_value
    (duration,) = received.metrics[sc.METRIC_CLIENT_OPERATION_DURATION]
    assert sum(p.count for p in duration.histogram.data_points) == 6  # 3 chat + 3 agent calls
    # OTEL_EXPORTER_OTLP_HEADERS reached the collector on every export, traces and metrics alike.
    assert len(received.headers) >= 2 and set(received.headers) == {("Bearer collector-token", "acme")}


def test_http_protobuf(tmp_path):
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            encoding = self.headers.get("Content-Encoding", "")
            body = (
                gzip.decompress(body)
                if encoding == "gzip"
                else zlib.decompress(body)
                if encoding == "deflate"
                else body
            )
            received.headers.append((self.headers.get("authorization"), self.headers.get("x-tenant")))
            if self.path == "/v1/traces":
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                received.add_traces(request)
            elif self.path == "/v1/metrics":
                request = metrics_service_pb2.ExportMetricsServiceRequest()
                request.ParseFromString(body)
                received.add_metrics(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run_app(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}",
                OTEL_EXPORTER_OTLP_HEADERS=HEADERS)
    finally:
        server.shutdown()
    check(received)


def test_grpc(tmp_path):
    received = Received()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            metadata = dict(context.invocation_metadata())
            received.headers.append((metadata.get("authorization"), metadata.get("x-tenant")))
            received.add_traces(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):
            metadata = dict(context.invocation_metadata())
            received.headers.append((metadata.get("authorization"), metadata.get("x-tenant")))
            received.add_metrics(request)
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        run_app(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_EXPORTER_OTLP_INSECURE="true",
            OTEL_EXPORTER_OTLP_HEADERS=HEADERS,
        )
    finally:
        server.stop(grace=None)
    check(received)

