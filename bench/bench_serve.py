"""Ingest throughput of ``llmobs serve``: OTLP/HTTP protobuf batches over loopback into its store.

The spans are ``bench_store``'s (agent runs of four spans, 11-19 attributes, ~1 KB of messages on the
chat spans), encoded once before timing into OTLP ``ExportTraceServiceRequest`` bodies of 512 spans,
as the SDK's ``BatchSpanProcessor`` + OTLP exporter would send them. The server runs as ``llmobs serve``
in its own process (as it does in use: the application is another process), started with a fresh store
in each round's setup, outside the timing; the bench process posts the bodies one after another on
one keep-alive connection, as the exporter does, and each call waits for the server's answer, which
comes after the spans are committed.

* ``serve_512`` — llmobs' own spans (scope ``llmobs``): decode, rows, SQLite, on the default ingest
  worker processes (2 on two cores or more), which share every request.
* ``serve_512_1proc`` — the same with ``--workers 1``: decoded and stored in the server process.
* ``serve_512_x2`` — the same as ``serve_512`` from two connections at once (two applications exporting).
* ``serve_foreign_512`` — the same calls as OpenInference spans, on the default workers (flattened
  ``llm.input_messages.*``, ``llm.token_count.*``, ``openinference.span.kind``): decode,
  ``interop.normalise`` (messages rebuilt as GenAI JSON through the content policy, cost priced), rows, SQLite.
* ``export_512`` — same-run anchor: the same spans through the in-process ``SQLiteSpanExporter`` in
  batches of 512 (what an instrumented process writing its own store does).

Goal: ``serve_512`` at least 20 000 spans/s on 2 cores.

    .venv/bin/python bench/bench_serve.py [--quick] [--rounds R] [--batch SPANS] [--json PATH]
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bench_store
import harness
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.sdk.trace import ReadableSpan

from llmobs import semconv as sc

DEFAULTS = harness.Defaults(rounds=8, batch=20_480, quick_rounds=2, quick_batch=1_024)
GOAL_SPANS_PER_S = 20_000
CHUNK = 512
LLMOBS = Path(sys.executable).with_name("llmobs")


def requests(spans: list[ReadableSpan], foreign: bool) -> list[bytes]:
    """OTLP protobuf bodies of ``CHUNK`` spans each (as OpenInference spans when ``foreign``)."""
    bodies = []
    for i in range(0, len(spans), CHUNK):
        request = encode_spans(spans[i:i + CHUNK])
        if foreign:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    scope_spans.scope.name = "openinference.instrumentation.langchain"
                    for span in scope_spans.spans:
                        _as_openinference(span)
        bodies.append(request.SerializeToString())
    return bodies


def _as_openinference(span: Any) -> None:
    """Rewrite an encoded span's attributes the way OpenInference names the same facts."""
    values = {kv.key: kv.value for kv in span.attributes}
    kept = [KeyValue(key=k, value=v) for k, v in values.items() if not k.startswith("gen_ai.")]
    kind = {"LLM": "LLM", "TOOL": "TOOL", "AGENT": "AGENT"}.get(values[sc.SPAN_KIND].string_value, "CHAIN")
    extra = {sc.OI_SPAN_KIND: kind}
    for ours, theirs in ((sc.REQUEST_MODEL, sc.OI_MODEL_NAME), (sc.USAGE_INPUT_TOKENS, sc.OI_TOKENS_PROMPT),
                         (sc.USAGE_OUTPUT_TOKENS, sc.OI_TOKENS_COMPLETION), (sc.SESSION_ID, sc.OI_SESSION_ID),
                         (sc.USER_ID, sc.OI_USER_ID), (sc.TOOL_NAME, sc.OI_TOOL_NAME)):
        if ours in values:
            extra[theirs] = values[ours]
    if sc.INPUT_MESSAGES in values:
        for n, message in enumerate(json.loads(values[sc.INPUT_MESSAGES].string_value)):
            prefix = f"{sc.OI_INPUT_MESSAGES}{n}."
            extra[prefix + sc.OI_MESSAGE_ROLE] = message["role"]
            texts = [p.get("content") or p.get("response") or "" for p in message["parts"]]
            extra[prefix + sc.OI_MESSAGE_CONTENT] = " ".join(t for t in texts if isinstance(t, str))
    del span.attributes[:]
    span.attributes.extend(kept)
    for key, value in extra.items():
        item = span.attributes.add(key=key)
        if isinstance(value, str):
            item.value.string_value = value
        else:
            item.value.CopyFrom(value)


class Server:
    """``llmobs serve`` in a child process with a fresh store per round, and ``clients`` connections to it."""

    def __init__(self, directory: Path, clients: int = 1, workers: int | None = None) -> None:
        self.directory = directory
        self.clients = clients
        self.workers = workers  # ``--workers``; None: the default
        self.rounds = 0
        self.process: subprocess.Popen[str] | None = None
        self.connections: list[http.client.HTTPConnection] = []
        self.failures = 0

    def start(self) -> None:
        self.rounds += 1
        store = self.directory / f"serve-{id(self):x}-{self.rounds}.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
        workers = [] if self.workers is None else ["--workers", str(self.workers)]
        self.process = subprocess.Popen([str(LLMOBS), "serve", "--port", "0", "--store", str(store), *workers], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        url = self.process.stdout.readline().split()[-1].rstrip("/")  # "llmobs console:  http://host:port/"
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.connections = [http.client.HTTPConnection(host, int(port), timeout=120) for _ in range(self.clients)]

    def post(self, bodies: list[bytes]) -> None:
        """One request per connection, at the same time; returns when every answer is in."""
        if len(bodies) == 1:
            self._post(self.connections[0], bodies[0])
            return
        pairs = zip(self.connections, bodies, strict=False)  # the last call may have fewer bodies
        threads = [threading.Thread(target=self._post, args=pair) for pair in pairs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _post(self, connection: http.client.HTTPConnection, body: bytes) -> None:
        connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            self.failures += 1

    def stop(self) -> None:
        for connection in self.connections:
            connection.close()
        self.process.terminate()
        self.process.wait(timeout=60)
        for path in self.directory.glob(f"serve-{id(self):x}-{self.rounds}.db*"):
            path.unlink()


class PostVariant:
    def __init__(self, bodies: list[bytes], server: Server) -> None:
        per_call = server.clients
        self.calls = [bodies[i:i + per_call] for i in range(0, len(bodies), per_call)]
        self.server, self.next = server, 0

    def setup(self) -> None:
        self.server.start()
        self.next = 0

    def call(self) -> None:
        self.server.post(self.calls[self.next])
        self.next += 1


def build(spans: list[ReadableSpan], opener: ReadableSpan, directory: Path) -> tuple[harness.Bench, list[Any]]:
    bench = harness.Bench("bench_serve", baseline="export_512", unit="span")
    servers = []
    for name, foreign, clients, workers in (("serve_512", False, 1, None), ("serve_512_1proc", False, 1, 1),
                                            ("serve_512_x2", False, 2, None), ("serve_foreign_512", True, 1, None)):
        bodies = requests(spans, foreign)
        server = Server(directory, clients, workers)
        servers.append(server)
        variant = PostVariant(bodies, server)
        bench.add(name, variant.call, setup=variant.setup, teardown=server.stop, batch=len(variant.calls),
                  units=len(spans) / len(variant.calls),
                  description=f"POST /v1/traces, {CHUNK} {'OpenInference' if foreign else 'llmobs'} spans per request"
                              f" from {clients} connection(s), {workers or 'default'} ingest process(es)")
    anchor = bench_store.ExportVariant(spans, CHUNK, directory, opener)
    bench.add("export_512", anchor.call, setup=anchor.setup, teardown=anchor.teardown, batch=len(anchor.chunks),
              units=len(spans) / len(anchor.chunks), description="in-process SQLiteSpanExporter.export, 512 per call")
    bench.compare("serve_512 / export_512", "serve_512", "export_512")
    bench.compare("serve_512 / serve_512_1proc", "serve_512", "serve_512_1proc")
    bench.compare("serve_512_x2 / serve_512", "serve_512_x2", "serve_512")
    bench.compare("serve_foreign_512 / serve_512", "serve_foreign_512", "serve_512")
    bench.notes.append(f"goal: serve_512 >= {GOAL_SPANS_PER_S:,} spans/s on 2 cores")
    return bench, [*servers, anchor]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = harness.parser(__doc__.split("\n\n")[0] + " (--batch: spans sent per round)", DEFAULTS)
    args = p.parse_args(argv)
    rounds, count = harness.resolve(args)
    spans = bench_store.build_spans(count + 1)
    opener, spans = spans[-1], spans[:-1]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmobs-bench-serve-") as tmp:
        bench, parts = build(spans, opener, Path(tmp))
        report = bench.run(rounds, count, progress=not args.quick and sys.stderr.isatty())
    failures = sum(part.failures for part in parts)
    if failures:
        raise RuntimeError(f"{failures} requests or exports failed; the timings are not valid")
    for row in report["variants"].values():
        row["spans_per_s"] = 1e9 / row["median_ns"]
    report["run"]["spans"] = len(spans)
    report["run"]["request_bytes"] = sum(len(b) for b in requests(spans[:CHUNK], False))
    print(harness.table(report, extra={"spans/s": bench_store.spans_per_s}))
    print(f"{len(spans)} spans per round in requests of {CHUNK} (~{report['run']['request_bytes'] / 1e6:.1f} MB "
          f"protobuf each); wall {time.perf_counter() - started:.0f} s")
    if args.json:
        harness.write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
