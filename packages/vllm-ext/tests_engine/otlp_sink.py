"""A minimal OTLP/HTTP (protobuf) receiver on loopback, for spans and metrics sent by a server under test."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


class Sink:
    """Collects decoded spans (dicts) and the latest data points of every metric (cumulative)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.metrics: dict[str, list[dict[str, Any]]] = {}  # name -> points of the latest export
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path.endswith("/v1/traces"):
                    sink._traces(body)
                elif self.path.endswith("/v1/metrics"):
                    sink._metrics(body)
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Sink:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _traces(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append({
                        "name": span.name, "scope": scope_spans.scope.name, "kind": span.kind,
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                        "parent_id": span.parent_span_id.hex(), "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano, "attributes": attributes(span.attributes),
                        "status": span.status.code, "resource": resource,
                    })
        with self.lock:
            self.spans.extend(spans)

    def _metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest.FromString(body)
        latest: dict[str, list[dict[str, Any]]] = {}
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    points = []
                    for p in getattr(metric, kind).data_points:
                        point: dict[str, Any] = {"attributes": attributes(p.attributes)}
                        if kind == "histogram":
                            point.update(count=p.count, sum=p.sum, bounds=list(p.explicit_bounds),
                                         buckets=list(p.bucket_counts), max=p.max)
                        else:
                            point["value"] = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                        points.append(point)
                    latest[metric.name] = points
        with self.lock:
            self.metrics.update(latest)

    def wait_for(self, check: Callable[[Sink], bool], timeout: float = 30.0) -> bool:
        """Poll until ``check(self)`` holds (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if check(self):
                    return True
            time.sleep(0.2)
        with self.lock:
            return check(self)

    def points(self, name: str, **attrs: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.metrics.get(name, []) if all(p["attributes"].get(k) == v
                                                                  for k, v in attrs.items())]
