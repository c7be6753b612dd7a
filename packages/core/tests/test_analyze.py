"""``llmobs analyze`` measured against a generated corpus with planted topics, quality problems and failure
classes (``analyze_corpus``), recorded through the real recorder into a real SQLite store.

The quality bar is measured and asserted: cluster purity >= 0.8 (both clustering paths), quality-flag
precision and recall >= 0.9, problem-class accuracy >= 0.9. The measured numbers are printed (``-s``).
"""

from __future__ import annotations

import collections
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from analyze_corpus import ERRORS, QUALITY_PLANTS, TOPICS, build, purity
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from llmobs import content, plugins, selfstats
from llmobs import semconv as sc
from llmobs.analyze import EvaluationResult, analyze, problems, records
from llmobs.analyze import evaluators as ev
from llmobs.analyze import text as tx
from llmobs.analyze.judge import JudgeEvaluator, JudgePlugin
from llmobs.cli import main
from llmobs.recorder import ROOT, Recorder
from llmobs.store import SQLiteSpanExporter, TraceStore


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("analyze") / "corpus.db"
    truth = build(path, 800)
    result = analyze(path)
    return truth, result


def flag_scores(result, truth) -> tuple[float, float, dict[str, list[int]]]:
    per: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    for call in result.calls:
        got, want = set(result.flags(call)), truth.flags[call.span_id]
        for flag in got | want:
            per[flag][0 if flag in got and flag in want else 1 if flag in got else 2] += 1
    tp, fp, fn = (sum(v[i] for v in per.values()) for i in range(3))
    return tp / (tp + fp), tp / (tp + fn), dict(per)


def test_corpus_is_what_the_measures_assume(corpus):
    truth, result = corpus
    assert len(result.calls) == truth.calls == 800
    assert {c.span_id for c in result.calls} == set(truth.topic)
    assert set().union(*truth.flags.values()) == set(QUALITY_PLANTS)  # every check has planted cases
    assert set(truth.problems.values()) == {e[0] for e in ERRORS} == set(sc.PROBLEM_CLASSES)


def test_cluster_purity_agglomerative(corpus):
    truth, result = corpus
    score = purity(result, truth)
    print(f"\ncluster purity (agglomerative): {score:.3f} over {len(result.clusters)} clusters")
    assert result.method == "agglomerative"
    assert score >= 0.8
    # Not bought by shattering: no more than twice as many clusters as planted topics.
    assert len(TOPICS) <= len(result.clusters) <= 2 * len(TOPICS)


def test_cluster_purity_density(corpus):
    truth, _ = corpus
    result = analyze(truth.store, method="density", write=False)
    score = purity(result, truth)
    print(f"\ncluster purity (density): {score:.3f} over {len(result.clusters)} clusters")
    assert result.method == "density"
    assert score >= 0.8
    assert sum(label < 0 for label in result.labels) <= 0.1 * len(result.labels)


def test_cluster_labels_are_characteristic_terms(corpus):
    truth, result = corpus
    for cluster in result.clusters:
        members = [c for c, label in zip(result.calls, result.labels, strict=True) if label == cluster.id]
        topic = collections.Counter(truth.topic[c.span_id] for c in members).most_common(1)[0][0]
        text = " ".join(c.text().lower() for c in members)
        words = set(tx.words(text))  # a term is a CJK run or words: "example com" comes from "example.com"
        assert cluster.terms, cluster
        assert all(term in text or set(term.split()) <= words for term in cluster.terms), (cluster.terms, topic)
    python = next(c for c in result.clusters if "pip" in c.terms or "python" in c.terms)
    others = [c.p95_latency_s for c in result.clusters if c is not python]
    assert python.p95_latency_s > max(others)  # the planted slow topic stands out


def test_quality_flag_precision_and_recall(corpus):
    truth, result = corpus
    precision, recall, per = flag_scores(result, truth)
    print(f"\nquality flags: precision {precision:.3f} recall {recall:.3f} (tp, fp, fn per check) {per}")
    assert precision >= 0.9
    assert recall >= 0.9
    for flag in QUALITY_PLANTS:
        assert per[flag][0] > 0, flag


def test_problem_class_accuracy(corpus):
    truth, result = corpus
    got = {f.span_id: c.problem for f, c in result.classifications}
    assert set(got) == set(truth.problems)  # exactly the spans where failures started, not their parents
    right = sum(got[s] == want for s, want in truth.problems.items())
    accuracy = right / len(truth.problems)
    print(f"\nproblem-class accuracy: {accuracy:.3f} over {len(truth.problems)} failures")
    assert accuracy >= 0.9


@pytest.mark.parametrize(
    ("error_type", "message", "status", "operation", "expected"),
    [
        ("OverloadedError", "Error code: 529 - {'type': 'overloaded_error'}", 529, "chat", "rate_limit"),
        ("ClientError", "429 RESOURCE_EXHAUSTED. Quota exceeded for aiplatform", None, "chat", "rate_limit"),
        ("ValidationException", "Input is too long for requested model.", 400, "chat", "context_length_exceeded"),
        ("BadRequestError", "The decoder prompt (length 9000) is longer than the maximum model length of 8192",
         400, "chat", "context_length_exceeded"),
        ("APIStatusError", "Error code: 401 - {'error': {'code': 'invalid_api_key'}}", 401, "chat", "authentication"),
        ("HTTPError", "", 403, "chat", "authentication"),
        ("ReadTimeout", "HTTPSConnectionPool: Read timed out. (read timeout=60)", None, "chat", "timeout"),
        ("ServiceUnavailableError", "upstream connect error or disconnect/reset before headers", 503, "chat",
         "network"),
        ("BadRequestError", "Output data may contain inappropriate content.", 400, "chat", "content_filter"),
        ("ValueError", "Could not parse the model output as JSON", None, "chain", "output_parse_error"),
        ("ValueError", "could not convert string to float: 'abc'", None, "execute_tool", "tool_error"),
        ("ConnectionRefusedError", "[Errno 111] Connection refused", None, "execute_tool", "network"),
        ("ZeroDivisionError", "division by zero", None, "chat", "other"),
    ],
)
def test_problem_classes_across_providers(error_type, message, status, operation, expected):
    failure = records.Failure(trace_id="t", span_id="s", name="x", operation=operation, span_kind=None,
                              provider=None, model=None, error_type=error_type, message=message, http_status=status)
    assert problems.classify(failure).problem == expected


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot provide medical advice.", True),
        ("As an AI language model, I don't have opinions on elections.", True),
        ("抱歉，我无法回答这个问题。", True),
        ("作为一个人工智能，我不能提供投资建议。", True),
        ("Sorry for the wait! Your order shipped on Monday.", False),
        ("I'm sorry to hear that. I can help you reset the password.", False),
        ("I can't wait to help: open settings and choose security.", False),
        ("您好，屏幕维修可以在门店办理。", False),
    ],
)
def test_refusal_phrasings(answer, refusal):
    assert tx.is_refusal(answer) is refusal


def test_language_identification():
    assert tx.language("Where is my parcel? It has not arrived and the tracking page shows nothing.") == "en"
    assert tx.language("我的手机屏幕碎了，可以维修吗？") == "zh"
    assert tx.language("¿Dónde está mi pedido? La página de seguimiento no muestra nada.") == "es"
    assert tx.language("ok") is None


def _call(**changes) -> records.LLMCall:
    base = dict(trace_id="t" * 32, span_id="s" * 16, parent_span_id=None, name="chat m", service=None, provider=None,
                model="m", start_ns=0, end_ns=1, duration_ns=1, ttft_ns=None, status="OK", error_type=None,
                input_tokens=1, output_tokens=1, cost_usd=None, adjusted_count=1.0, question="What is the time?",
                prompt="What is the time?", output="It is noon.", has_tool_calls=False, finish_reasons=("stop",),
                json_requested=False, attributes={}, events=[])
    base.update(changes)
    return records.LLMCall(**base)


def test_checks_that_do_not_apply_say_nothing():
    results = {r.name: r for r in ev.evaluate(_call(output=None, finish_reasons=()), ev.collect())}
    assert set(results) == set()  # no captured output, no finish reason, no retrieval, no JSON asked
    assert {r.name for r in ev.evaluate(_call(), ev.collect()) if r.failed} == set()
    tool_call = _call(output="", has_tool_calls=True, finish_reasons=("tool_call",))
    assert not [r for r in ev.evaluate(tool_call, ev.collect()) if r.failed]
    fenced = _call(json_requested=True, output='```json\n{"a": 1}\n```')
    assert not [r for r in ev.evaluate(fenced, ev.collect()) if r.failed]
    cut = _call(finish_reasons=("max_tokens",))  # Anthropic's name for it
    assert [r.name for r in ev.evaluate(cut, ev.collect()) if r.failed] == [sc.EVAL_TRUNCATION]


def test_results_written_back_shown_by_show_and_idempotent(corpus, capsys):
    truth, result = corpus
    flagged = next(c for c in result.calls if truth.flags[c.span_id] == {"refusal"})
    with TraceStore(truth.store) as store:
        spans = store.get_trace(flagged.trace_id)
    span = next(s for s in spans if s.span_id == flagged.span_id)
    evaluations = {e["attributes"][sc.EVALUATION_NAME]: e["attributes"] for e in span.events
                   if e["name"] == sc.EVENT_EVALUATION_RESULT}
    assert evaluations[sc.EVAL_REFUSAL][sc.EVALUATION_SCORE_LABEL] == sc.EVAL_LABEL_FAIL
    assert evaluations[sc.EVAL_REFUSAL][sc.EVALUATION_SCORE_VALUE] == 0.0
    assert evaluations[sc.EVAL_REFUSAL][sc.EVALUATION_SOURCE] == sc.EVALUATION_SOURCE_ANALYZE
    assert sc.EVAL_TOPIC in evaluations
    failed = next(iter(truth.problems))
    trace_of_failed = next(f.trace_id for f, _ in result.classifications if f.span_id == failed)

    assert main(["show", trace_of_failed, "--store", str(truth.store)]) == 0
    shown = capsys.readouterr().out
    assert f"{sc.EVAL_PROBLEM_CLASS}: {truth.problems[failed]}" in shown

    def ours() -> collections.Counter:
        conn = sqlite3.connect(truth.store)
        counts: collections.Counter = collections.Counter()
        for trace_id, span_id, events in conn.execute("SELECT trace_id, span_id, events FROM spans"):
            for e in json.loads(events):
                if e["name"] == sc.EVENT_EVALUATION_RESULT:
                    counts[(trace_id, span_id, e["attributes"][sc.EVALUATION_NAME])] += 1
        conn.close()
        return counts

    before = ours()
    assert sum(before.values()) == result.events_written
    again = analyze(truth.store)
    after = ours()
    assert after == before  # replaced, not piled up
    assert again.events_written == result.events_written


def test_foreign_evaluations_survive_and_filters_apply(tmp_path):
    path = tmp_path / "small.db"
    build(path, 40, seed=3, service="bot-a")
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "bot-b"}))
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path, retention=None)))
    recorder = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    llm = recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o-mini", parent=ROOT)
    llm.set_input([content.message(sc.ROLE_USER, [content.text_part("Is the shop open on Sunday?")])])
    llm.set_output([content.output_message([content.text_part("I'm sorry, but I can't help with that.")], "stop")])
    llm.span.add_event(sc.EVENT_EVALUATION_RESULT, {sc.EVALUATION_NAME: "helpfulness", sc.EVALUATION_SCORE_VALUE: 0.2})
    llm.end()
    provider.shutdown()

    only_b = analyze(path, service="bot-b")
    assert [c.span_id for c in only_b.calls] == [f"{llm.span.get_span_context().span_id:016x}"]
    assert only_b.flags(only_b.calls[0]) == [sc.EVAL_REFUSAL]
    assert analyze(path, since_ns=2**62, write=False).calls == []
    with TraceStore(path) as store:
        span = store.get_trace(f"{llm.span.get_span_context().trace_id:032x}")[0]
    names = [e["attributes"][sc.EVALUATION_NAME] for e in span.events if e["name"] == sc.EVENT_EVALUATION_RESULT]
    assert names[0] == "helpfulness" and sc.EVAL_REFUSAL in names


def test_evaluator_plugins_are_called_and_a_raising_one_is_contained(tmp_path):
    path = tmp_path / "plugins.db"
    build(path, 24, seed=5)

    class Length:
        name = "answer_length"

        def evaluate(self, call):
            if call.output is None:
                return None
            return EvaluationResult(self.name, min(len(call.output) / 100, 1.0), "long" if len(call.output) > 60
                                    else "short")

    class Broken:
        name = "broken"

        def evaluate(self, call):
            raise RuntimeError("boom")

    class Plugin:
        @plugins.hookimpl
        def llmobs_evaluators(self, settings):
            return [Length(), Broken()]

    plugin = Plugin()
    plugins.register(plugin, name="test-analyze-evaluators")
    try:
        before = selfstats.snapshot().get("analyze.evaluator_failed:broken", 0)
        result = analyze(path)
        assert selfstats.snapshot().get("analyze.evaluator_failed:broken", 0) - before == len(result.calls)
    finally:
        plugins.unregister(plugin)
    with_output = [c for c in result.calls if c.output is not None]
    for call in with_output:
        lengths = [r for r in result.evaluations[(call.trace_id, call.span_id)] if r.name == "answer_length"]
        assert len(lengths) == 1 and lengths[0].evaluator == "answer_length"
    data = result.to_dict()
    assert data["quality"]["answer_length"]["evaluated"] == len(with_output)
    conn = sqlite3.connect(path)
    written = sum(1 for (events,) in conn.execute("SELECT events FROM spans") for e in json.loads(events)
                  if e["attributes"].get(sc.EVALUATION_NAME) == "answer_length")
    conn.close()
    assert written == len(with_output)  # a plugin's results are written whether they pass or not


class _Judge(BaseHTTPRequestHandler):
    """A loopback OpenAI-compatible judge: low scores for answers that decline, high otherwise."""

    requests: ClassVar[list[dict]] = []
    fail = False

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if type(self).fail:
            self.send_response(500)
            self.end_headers()
            return
        answer = body["messages"][-1]["content"].split("Answer:\n", 1)[1]
        score = 0.1 if tx.is_refusal(answer) or not answer.strip() else 0.9
        verdict = json.dumps({"score": score, "reason": "declines" if score < 0.5 else "answers the question"})
        reply = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": verdict}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


@pytest.fixture
def judge_server():
    _Judge.requests, _Judge.fail = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_llm_judge_against_a_loopback_endpoint(corpus, judge_server, tmp_path):
    truth, _ = corpus
    path = tmp_path / "judge.db"
    path.write_bytes(truth.store.read_bytes())
    judge = JudgeEvaluator(judge_server, "judge-model", api_key="sk-judge", limit=400)
    plugin = JudgePlugin(judge)
    plugins.register(plugin, name="test-judge")
    try:
        result = analyze(path)
    finally:
        plugins.unregister(plugin)
    assert 0 < judge.judged <= 400 and len(_Judge.requests) == judge.judged
    assert {r["path"] for r in _Judge.requests} == {"/v1/chat/completions"}
    assert {r["auth"] for r in _Judge.requests} == {"Bearer sk-judge"}
    verdicts = {}
    for call in result.calls:
        for r in result.evaluations[(call.trace_id, call.span_id)]:
            if r.name == sc.EVAL_LLM_JUDGE:
                verdicts[call.span_id] = r
                assert r.evaluator == "llm_judge:judge-model"
    assert len(verdicts) == judge.judged
    for span_id, verdict in verdicts.items():
        assert verdict.failed == ("refusal" in truth.flags[span_id]), span_id
    with TraceStore(path) as store:
        call = next(c for c in result.calls if c.span_id in verdicts)
        span = next(s for s in store.get_trace(call.trace_id) if s.span_id == call.span_id)
    assert any(e["attributes"].get(sc.EVALUATION_NAME) == sc.EVAL_LLM_JUDGE for e in span.events)


def test_llm_judge_failures_do_not_stop_the_analysis(judge_server, tmp_path):
    _Judge.fail = True
    path = tmp_path / "judge-fails.db"
    build(path, 16, seed=11)
    before = selfstats.snapshot().get(f"analyze.evaluator_failed:{sc.EVAL_LLM_JUDGE}", 0)
    judge = JudgeEvaluator(judge_server, "judge-model", api_key="", limit=10, concurrency=1)
    result = analyze(path, evaluators=[*ev.collect(), judge])
    assert len(result.calls) == 16
    # three failures in a row and the judge stops asking for the rest of the run
    assert len(_Judge.requests) == 3
    assert selfstats.snapshot().get(f"analyze.evaluator_failed:{sc.EVAL_LLM_JUDGE}", 0) - before == 3
    assert all(r["auth"] is None for r in _Judge.requests)  # no key configured: no Authorization header


def test_cli_json_report_and_quiet_progress(corpus, tmp_path, capsys):
    truth, _ = corpus
    path = tmp_path / "cli.db"
    path.write_bytes(truth.store.read_bytes())
    out = tmp_path / "report" / "analysis.html"
    assert main(["analyze", "--store", str(path), "--json", "--out", str(out), "--embedder", "tfidf"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bars: not a terminal, and --json
    data = json.loads(captured.out)
    assert data["totals"]["calls"] == 800
    assert data["embedder"] == "tfidf" and data["clustering"] == "agglomerative"
    assert {c["id"] for c in data["clusters"]} == {p["cluster"] for p in data["points"]}
    assert set(data["problems"]) == set(sc.PROBLEM_CLASSES)
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "http://" not in page and "https://" not in page  # no CDN

    assert main(["analyze", "--store", str(path), "--no-write"]) == 0
    summary = capsys.readouterr().out
    assert "800 model calls" in summary and "TOPIC" in summary and "problems:" in summary
    assert main(["analyze", "--store", str(tmp_path / "missing.db")]) == 1
    assert "no llmobs trace store" in capsys.readouterr().err
    assert main(["analyze", "--store", str(path), "--judge-url", "http://127.0.0.1:9/v1"]) == 1
    assert main(["analyze", "--store", str(path), "--since", "yesterday-ish"]) == 2


def test_empty_store_and_no_llm_calls(tmp_path, capsys):
    path = tmp_path / "empty.db"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path, retention=None)))
    recorder = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    recorder.start(sc.OP_EXECUTE_TOOL, "lookup", parent=ROOT).end(KeyError("missing"))
    provider.shutdown()
    result = analyze(path)
    assert result.calls == [] and result.clusters == []
    assert [c.problem for _, c in result.classifications] == [sc.PROBLEM_TOOL_ERROR]
    assert main(["analyze", "--store", str(path), "--out", str(tmp_path / "r.html")]) == 0
    assert "no model calls" in capsys.readouterr().out
    assert "<svg" in (tmp_path / "r.html").read_text()


class _Collector(BaseHTTPRequestHandler):
    """A loopback OTLP/HTTP logs endpoint keeping the decoded requests."""

    bodies: ClassVar[list[bytes]] = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        type(self).bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_results_export_over_otlp(corpus, monkeypatch, capsys):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from llmobs.analyze import otlp

    _Collector.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    truth, result = corpus
    try:
        sent = otlp.export(result)
        exported = len(_Collector.bodies)
        assert main(["analyze", "--store", str(truth.store), "--otlp", "--json"]) == 0  # the command's path
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Collector.bodies) > exported
    _Collector.bodies = _Collector.bodies[:exported]
    records = []
    for body in _Collector.bodies:
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        records += [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert sent == len(records) == result.events_written
    refusal = next(c for c in result.calls if truth.flags[c.span_id] == {"refusal"})
    mine = [r for r in records if r.span_id.hex() == refusal.span_id]
    assert all(r.trace_id.hex() == refusal.trace_id for r in mine)
    names = {a.value.string_value for r in mine for a in r.attributes if a.key == sc.EVALUATION_NAME}
    assert names >= {sc.EVAL_REFUSAL, sc.EVAL_TOPIC}
    assert {r.event_name for r in records} == {sc.EVENT_EVALUATION_RESULT}
    assert json.loads(capsys.readouterr().out)["otlp_events"] == sent


def test_progress_bars_only_when_enabled():
    import io

    from llmobs.analyze.progress import Progress

    shown = io.StringIO()
    bar = Progress(enabled=True, stream=shown)
    bar.stage("embedding", 10)
    bar.advance(10)
    bar.stage("clustering", 4)
    bar.close()
    text = shown.getvalue()
    assert "\rembedding" in text and "10/10" in text and "clustering" in text and text.endswith("\n")
    quiet = io.StringIO()
    bar = Progress(enabled=False, stream=quiet)
    bar.stage("embedding", 10)
    bar.advance(3)
    bar.close()
    assert quiet.getvalue() == ""
    assert Progress.for_terminal(quiet=True).enabled is False


def test_retrieval_relevance_on_short_and_long_queries():
    shipping = (records.Document("Orders ship within 2 business days; tracking arrives by email."),
                records.Document("Delayed orders can be escalated after 5 business days."))

    def flagged(query: str, docs=shipping) -> bool:
        call = _call(question=query, retrieval=records.Retrieval("r" * 16, query, docs))
        return [r.name for r in ev.evaluate(call, ev.collect()) if r.failed] == [sc.EVAL_IRRELEVANT_RETRIEVAL]

    assert not flagged("shipping times")  # short query, one shared stem (shipping ~ ship) is enough
    assert not flagged("How do I escalate a delayed order?")
    assert flagged("How long do refunds take if I cancel?")
    assert flagged("Where is my order?", docs=())  # nothing retrieved
    scored = (records.Document("Le colis est expédié sous deux jours.", score=0.92),)
    assert not flagged("When will my parcel ship? I ordered it on Monday for a birthday.", docs=scored)


def test_content_on_the_inference_event_and_json_asked_in_request_parameters(tmp_path):
    """EVENT_ONLY capture keeps messages on the inference details event; an OpenInference span says JSON mode
    in its invocation parameters. Both are read."""
    path = tmp_path / "events.db"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path, retention=None)))
    tracer = provider.get_tracer("app")
    question = [{"role": "user", "parts": [{"type": "text", "content": "List three colours."}]}]
    answer = [{"role": "assistant", "parts": [{"type": "text", "content": "red, green and blue"}],
               "finish_reason": "stop"}]
    with tracer.start_as_current_span("chat m", attributes={sc.OPERATION_NAME: sc.OP_CHAT,
                                                            sc.OI_INVOCATION_PARAMETERS: '{"response_format": '
                                                            '{"type": "json_object"}}'}) as span:
        span.add_event(sc.EVENT_INFERENCE_DETAILS, {sc.INPUT_MESSAGES: json.dumps(question),
                                                    sc.OUTPUT_MESSAGES: json.dumps(answer)})
    provider.shutdown()
    (call,) = records.load(path).calls
    assert call.question == "List three colours." and call.output == "red, green and blue"
    assert call.json_requested and call.finish_reasons == ("stop",)
    assert [r.name for r in ev.evaluate(call, ev.collect()) if r.failed] == [sc.EVAL_INVALID_JSON]


def test_a_call_traced_by_client_and_server_is_one_call(tmp_path):
    path = tmp_path / "nested.db"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path, retention=None)))
    recorder = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    client = recorder.start(sc.OP_CHAT, provider="openai", model="qwen", parent=ROOT)
    client.set_input([content.message(sc.ROLE_USER, [content.text_part("Where is my parcel?")])])
    server = recorder.start(sc.OP_CHAT, provider="vllm", model="qwen", parent=client)
    server.set_usage(10, 5)
    server.end()
    client.set_output([content.output_message([content.text_part("It ships today.")], "stop")])
    client.end()
    provider.shutdown()
    (call,) = records.load(path).calls
    assert call.span_id == f"{client.span.get_span_context().span_id:016x}" and call.output == "It ships today."


def test_summary_table_aligns_chinese_topic_labels():
    from llmobs.cli import render

    lines = render.table(("TOPIC", "CALLS"), [[("手机, 维修", None), ("99", None)], [("refund, label", None),
                                                                                    ("100", None)]],
                         right=(1,)).splitlines()
    assert len({render.width(line) for line in lines}) == 1  # every row ends in the same terminal column
    assert render.width("手机") == 4 and render.width("abc") == 3
