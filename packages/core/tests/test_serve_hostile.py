"""``llmobs serve`` facing malformed and hostile requests: spec-conformant errors, never a crash or a
traceback, and the server keeps serving afterwards."""

from __future__ import annotations

import gzip
import http.client
import json
import random
import socket
import time
import zlib

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from llmobs.serve import ServeError, create_server
from llmobs.store import TraceStore

PROTOBUF = "application/x-protobuf"


@pytest.fixture(params=[1, 2], ids=["in-process", "2-workers"])
def server(request, tmp_path, settings):
    """The receiver ingesting in its own process, and with two worker processes parsing each request."""
    settings()
    srv = create_server(tmp_path / "s.db", port=0, max_body=64 * 1024, workers=request.param).start()
    yield srv
    srv.close()


def request(server, method="POST", path="/v1/traces", body=b"", headers=None, host=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    try:
        connection.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        headers = {"Content-Type": PROTOBUF, "Content-Length": str(len(body)), **(headers or {})}
        for name, value in headers.items():
            if value is not None:
                connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def one_span_request(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="ok") -> ExportTraceServiceRequest:
    export = ExportTraceServiceRequest()
    spans = export.resource_spans.add().scope_spans.add().spans
    now = time.time_ns()  # retention drops spans older than a week at once
    spans.append(Span(trace_id=trace_id, span_id=span_id, name=name, start_time_unix_nano=now, end_time_unix_nano=now))
    return export


def still_serves(server):
    status, _, body = request(server, body=one_span_request(name="after").SerializeToString())
    assert status == 200, body
    with TraceStore(server.app.readers.path) as store:
        assert any(t.name == "after" for t in store.list_traces(50))


def status_message(body: bytes) -> str:
    return status_pb2.Status.FromString(body).message


def test_random_bytes_and_truncated_protobuf_are_400_or_harmless(server):
    rng = random.Random(7)
    valid = one_span_request().SerializeToString()
    bodies = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) for _ in range(60)]
    bodies += [valid[:cut] for cut in range(1, len(valid))]
    for body in bodies:
        status, headers, reply = request(server, body=body)
        assert status in (200, 400), (status, body)
        if status == 400:
            assert headers["Content-Type"] == PROTOBUF
            assert status_pb2.Status.FromString(reply).code == 3  # INVALID_ARGUMENT
            assert b"Traceback" not in reply
    still_serves(server)


def test_invalid_ids_are_rejected_as_partial_success(server):
    export = one_span_request()
    spans = export.resource_spans[0].scope_spans[0].spans
    spans.append(Span(trace_id=b"\x00" * 16, span_id=b"\x03" * 8, name="zero trace id"))
    spans.append(Span(trace_id=b"\x01" * 15, span_id=b"\x04" * 8, name="short trace id"))
    spans.append(Span(trace_id=b"\x01" * 16, span_id=b"\x05" * 8, parent_span_id=b"\x01", name="bad parent"))
    status, _, body = request(server, body=export.SerializeToString())
    reply = ExportTraceServiceResponse.FromString(body)
    assert status == 200
    assert reply.partial_success.rejected_spans == 3
    assert "invalid" in reply.partial_success.error_message


def test_json_errors_are_json(server):
    for body in (b"{not json", b"[1, 2]", b'{"resourceSpans": 5}', b'{"resourceSpans": [{"scopeSpans": "x"}]}'):
        status, headers, reply = request(server, body=body, headers={"Content-Type": "application/json"})
        assert status == 400, body
        assert headers["Content-Type"] == "application/json"
        assert json.loads(reply)["code"] == 3
    deep = b'{"a": ' * 5000 + b"1" + b"}" * 5000
    assert request(server, body=deep, headers={"Content-Type": "application/json"})[0] == 400
    bad_ids = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-hex", "spanId": "0102030405060708"},
                                                            {"traceId": "01" * 16, "spanId": 1}]}]}]}
    status, _, reply = request(server, body=json.dumps(bad_ids).encode(), headers={"Content-Type": "application/json"})
    assert (status, json.loads(reply)["partialSuccess"]["rejectedSpans"]) == (200, "2")
    still_serves(server)


def test_size_limits_and_gzip_bombs(server):
    big = b"\x00" * (65 * 1024)
    status, _, body = request(server, body=big)
    assert status == 413 and "limit" in status_message(body)
    bomb = gzip.compress(b"\x00" * (10 * 1024 * 1024))  # ~10 KB that inflates to 10 MB
    assert len(bomb) < 64 * 1024
    status, _, body = request(server, body=bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed" in status_message(body)
    valid = one_span_request().SerializeToString()
    assert request(server, body=gzip.compress(valid)[:-4], headers={"Content-Encoding": "gzip"})[0] == 400
    assert request(server, body=b"not gzip", headers={"Content-Encoding": "gzip"})[0] == 400
    assert request(server, body=zlib.compress(valid), headers={"Content-Encoding": "deflate"})[0] == 200
    assert request(server, body=valid, headers={"Content-Encoding": "br"})[0] == 415
    still_serves(server)


def test_a_huge_declared_length_is_refused_without_reading(server):
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as raw:
        raw.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
                    b"Content-Length: 999999999999\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 413")
    still_serves(server)


def test_content_types_methods_and_paths(server):
    valid = one_span_request().SerializeToString()
    assert request(server, body=valid, headers={"Content-Type": "text/plain"})[0] == 415
    assert request(server, body=valid, headers={"Content-Type": None})[0] == 415
    assert request(server, body=valid, headers={"Content-Type": "application/protobuf"})[0] == 200
    assert request(server, body=valid, headers={"Content-Length": None})[0] == 411
    assert request(server, method="GET", body=b"", headers={"Content-Length": None})[0] == 405
    assert request(server, path="/nope", body=valid)[0] == 404
    assert request(server, path="/v1/metrics", body=b"")[0] == 200  # accepted, discarded
    assert request(server, path="/prefix/v1/traces", body=valid)[0] == 200  # Dify's Phoenix adds a path
    assert request(server, method="DELETE", body=b"")[0] == 501
    assert request(server, method="GET", path="/static/../../etc/passwd", body=b"")[0] == 404


def test_chunked_bodies(server):
    valid = one_span_request().SerializeToString()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(valid), valid)
    status, _, _ = request(server, body=chunked, headers={"Content-Length": None, "Transfer-Encoding": "chunked"})
    assert status == 200
    status, _, _ = request(server, body=b"zz\r\n", headers={"Content-Length": None, "Transfer-Encoding": "chunked"})
    assert status == 400


def test_a_negative_chunk_size_is_refused_at_once(server):
    """int() reads a sign: a chunk size of -1 must not become read(-1), which waits for the connection's end."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n-1\r\n" + b"A" * 65536)  # fmt: skip
        assert sock.recv(64).startswith(b"HTTP/1.1 400")


def test_host_header_is_checked_without_a_token(server):
    port = server.server_address[1]
    valid = one_span_request().SerializeToString()
    assert request(server, body=valid, host=f"localhost:{port}")[0] == 200
    assert request(server, body=valid, host=f"attacker.example:{port}")[0] == 403
    assert request(server, method="GET", path="/api/facets", body=b"", host=f"attacker.example:{port}")[0] == 403
    assert request(server, method="GET", path="/", body=b"", host=f"attacker.example:{port}")[0] == 403


def test_store_failure_is_503_retryable(tmp_path, settings):
    settings()
    server = create_server(tmp_path / "s.db", port=0).start()
    try:
        server.app.ingestor.exporter.shutdown()  # every export now fails
        status, headers, _ = request(server, body=one_span_request().SerializeToString())
        assert status == 503 and headers["Retry-After"]
    finally:
        server.close()


@pytest.fixture
def token_server(tmp_path, settings):
    settings()
    srv = create_server(tmp_path / "t.db", port=0, token="s3cret").start()
    yield srv
    srv.close()


def test_token_is_required_when_set(token_server):
    valid = one_span_request().SerializeToString()
    status, headers, body = request(token_server, body=valid)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert status_pb2.Status.FromString(body).code == 16
    assert request(token_server, body=valid, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(token_server, body=valid, headers={"Authorization": "Bearer s3cret"})[0] == 200
    assert request(token_server, body=valid, headers={"api_key": "s3cret"})[0] == 200  # Dify's Phoenix provider
    assert request(token_server, method="GET", path="/api/facets", body=b"")[0] == 401
    page = request(token_server, method="GET", path="/", body=b"")
    assert page[0] == 200 and b'action="/login"' in page[2]
    status, headers, _ = request(token_server, path="/login", body=b"token=s3cret",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and "HttpOnly" in headers["Set-Cookie"]
    cookie = headers["Set-Cookie"].split(";")[0]
    assert request(token_server, method="GET", path="/api/facets", body=b"", headers={"Cookie": cookie})[0] == 200
    assert request(token_server, path="/login", body=b"token=nope",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 401


def test_refuses_to_listen_beyond_loopback_without_a_token(tmp_path):
    with pytest.raises(ServeError, match="without a token"):
        create_server(tmp_path / "x.db", host="0.0.0.0", port=0)
    create_server(tmp_path / "x.db", host="0.0.0.0", port=0, token="t").close()  # with a token it may


def test_cli_refusal_is_a_clear_message(tmp_path, capsys):
    from llmobs.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--store", str(tmp_path / "c.db")]) == 2
    assert "refusing to listen on 0.0.0.0 without a token" in capsys.readouterr().err
