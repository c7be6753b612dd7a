"""POST /v1/traces at all three levels: Dify-shaped traces from the real OTLP exporter, through the plugin,
into a loopback OTLP receiver; the forwarded spans are asserted in llmobs semantics."""

import gzip
import json
import uuid

import pytest
import requests
from conftest import KEY, endpoint_settings
from dify_traces import Run, send_arms, send_phoenix, send_phoenix_message
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from llmobs import semconv as sc
from llmobs_dify import relay


def _json(value):
    return json.loads(value)


def test_phoenix_workflow_arrives_in_llmobs_semantics(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    run = Run()
    results = send_phoenix(gateway.base, KEY, run)
    assert results and all(r is SpanExportResult.SUCCESS for r in results)

    spans = receiver.by_name()
    assert len(receiver.spans()) == 8
    workflow = spans[f"workflow_{run.workflow_run_id}"]
    assert workflow.resource.attributes[sc.SERVICE_NAME] == "support-bot"  # the Phoenix project
    wa = workflow.attributes
    assert (wa[sc.OPERATION_NAME], wa[sc.SPAN_KIND]) == (sc.OP_INVOKE_WORKFLOW, sc.KIND_CHAIN)
    assert wa[sc.DIFY_APP_ID] == run.app_id and wa[sc.DIFY_WORKFLOW_RUN_ID] == run.workflow_run_id
    assert wa[sc.DIFY_MESSAGE_ID] == run.message_id and wa[sc.DIFY_WORKFLOW_ID] == run.workflow_id
    assert wa[sc.CONVERSATION_ID] == run.conversation_id == wa[sc.SESSION_ID]
    assert wa[sc.USER_ID] == run.user_id

    llm = spans["llm_Answer"].attributes
    assert (llm[sc.OPERATION_NAME], llm[sc.SPAN_KIND]) == (sc.OP_CHAT, sc.KIND_LLM)
    assert (llm[sc.PROVIDER_NAME], llm[sc.REQUEST_MODEL]) == ("openai", "gpt-4o-mini")
    assert (llm[sc.USAGE_INPUT_TOKENS], llm[sc.USAGE_OUTPUT_TOKENS], llm[sc.USAGE_TOTAL_TOKENS]) == (150, 30, 180)
    assert llm[sc.RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(0.42)
    assert llm[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] == 420_000_000
    assert list(llm[sc.RESPONSE_FINISH_REASONS]) == ["stop"]
    inputs = _json(llm[sc.INPUT_MESSAGES])
    assert [m["role"] for m in inputs] == ["system", "user"]
    outputs = _json(llm[sc.OUTPUT_MESSAGES])
    assert outputs[0]["parts"][0]["content"] == "Refunds are accepted within 30 days."
    assert llm[sc.DIFY_APP_ID] == run.app_id

    retrieval = spans["knowledge-retrieval_Policies"].attributes
    assert (retrieval[sc.OPERATION_NAME], retrieval[sc.SPAN_KIND]) == (sc.OP_RETRIEVAL, sc.KIND_RETRIEVER)
    assert retrieval[sc.RETRIEVAL_QUERY_TEXT].startswith("What is the refund window?")
    documents = _json(retrieval[sc.RETRIEVAL_DOCUMENTS])
    assert [(d["id"], d["score"]) for d in documents] == [("doc-1", 0.91), ("doc-2", 0.42)]

    tool = spans["tool_Weather"].attributes
    assert (tool[sc.OPERATION_NAME], tool[sc.TOOL_NAME]) == (sc.OP_EXECUTE_TOOL, "Weather")
    agent = spans["agent_Planner"].attributes
    assert (agent[sc.OPERATION_NAME], agent[sc.AGENT_NAME]) == (sc.OP_INVOKE_AGENT, "Planner")
    assert spans["code_Format"].status.status_code.name == "ERROR"

    # the tree is kept: every node under the workflow span, the workflow under the root
    root = spans[run.workflow_run_id]
    assert root.attributes[sc.DIFY_PHOENIX_TRACE_ID] == run.workflow_run_id
    assert workflow.parent.span_id == root.context.span_id
    assert all(spans[n].parent.span_id == workflow.context.span_id for n in ("llm_Answer", "tool_Weather"))
    assert {s.context.trace_id for s in spans.values()} == {root.context.trace_id}
    # the destination got the configured headers
    assert receiver.headers_seen[0]["authorization"] == "Bearer destination-token"


def test_phoenix_chat_message_arrives_in_llmobs_semantics(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    run = Run()
    assert set(send_phoenix_message(gateway.base, KEY, run)) == {SpanExportResult.SUCCESS}
    spans = receiver.by_name()
    llm = spans["llm"].attributes
    assert (llm[sc.OPERATION_NAME], llm[sc.PROVIDER_NAME], llm[sc.REQUEST_MODEL]) == (sc.OP_CHAT, "openai", "gpt-4o")
    assert llm[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] == 250_000_000  # from Dify's message metadata
    assert (llm[sc.REQUEST_TEMPERATURE], llm[sc.REQUEST_MAX_TOKENS]) == (0.2, 512)
    assert _json(llm[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"] == "Hello! How can I help?"
    assert (llm[sc.DIFY_MESSAGE_ID], llm[sc.USER_ID], llm[sc.SESSION_ID]) == (run.message_id, run.user_id,
                                                                             run.conversation_id)
    message = spans["message"].attributes
    assert message[sc.OPERATION_NAME] == sc.OP_CHAIN and sc.REQUEST_MODEL not in message


def test_arms_workflow_arrives_in_llmobs_semantics(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    run = Run()
    assert send_arms(gateway.base, KEY, run) is SpanExportResult.SUCCESS

    spans = receiver.by_name()
    assert len(receiver.spans()) == 9
    root = spans["workflow"]
    assert root.context.trace_id == uuid.UUID(run.workflow_run_id).int
    assert root.resource.attributes[sc.SERVICE_NAME] == "support-bot"
    assert root.attributes[sc.OPERATION_NAME] == sc.OP_INVOKE_WORKFLOW
    assert root.attributes[sc.DIFY_APP_ID] == run.app_id
    assert root.attributes[sc.CONVERSATION_ID] == run.conversation_id

    llm = spans["Answer"].attributes
    assert (llm[sc.USAGE_INPUT_TOKENS], llm[sc.USAGE_OUTPUT_TOKENS], llm[sc.USAGE_TOTAL_TOKENS]) == (150, 30, 180)
    assert (llm[sc.PROVIDER_NAME], llm[sc.REQUEST_MODEL]) == (sc.PROVIDER_DASHSCOPE, "qwen-plus")
    assert llm[sc.RESPONSE_TIME_TO_FIRST_CHUNK] == pytest.approx(0.42)
    assert list(llm[sc.RESPONSE_FINISH_REASONS]) == ["stop"]
    assert _json(llm[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"].startswith("Refunds")

    retrieval = spans["Policies"].attributes
    assert (retrieval[sc.OPERATION_NAME], retrieval[sc.RETRIEVAL_QUERY_TEXT]) == (sc.OP_RETRIEVAL, Run.prompt)
    assert _json(retrieval[sc.RETRIEVAL_DOCUMENTS])[0]["content"] == "Refunds within 30 days."
    tool = spans["Weather"].attributes
    assert (tool[sc.OPERATION_NAME], tool[sc.TOOL_NAME], tool[sc.TOOL_DESCRIPTION]) == (
        sc.OP_EXECUTE_TOOL, "weather", "Current weather")
    assert spans["Planner"].attributes[sc.OPERATION_NAME] == sc.OP_INVOKE_AGENT
    step = spans["ROUND 1"]
    assert step.attributes[sc.OPERATION_NAME] == sc.OP_CHAIN  # "react" is no GenAI operation
    round_llm = spans["Planner LLM 1"]
    assert round_llm.parent.span_id == step.context.span_id
    assert round_llm.attributes[sc.USAGE_TOTAL_TOKENS] == 48


def test_arms_endpoint_check_answers_like_an_otlp_receiver(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    # Dify's ARMS provider checks its configuration with HEAD on the export URL and wants 405
    reply = requests.head(f"{gateway.base}/adapt_{KEY}/api/otlp/traces", timeout=30)
    assert reply.status_code == 405


def test_wrong_key_is_refused_and_nothing_forwarded(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    assert send_arms(gateway.base, "not-the-key", Run()) is SpanExportResult.FAILURE
    assert send_arms(gateway.base, None, Run()) is SpanExportResult.FAILURE
    assert send_phoenix(gateway.base, "not-the-key", Run())[0] is SpanExportResult.FAILURE
    reply = requests.post(f"{gateway.base}/v1/traces", data=b"", timeout=30,
                          headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {KEY[:-1]}"})
    assert reply.status_code == 401
    assert status_pb2.Status.FromString(reply.content).code == 16
    assert receiver.spans() == []


def test_forwarding_failure_is_a_retryable_error(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    receiver.status = 400  # the destination refuses (not retried by its exporter)
    reply = requests.post(f"{gateway.base}/v1/traces", data=_protobuf_body(), timeout=60,
                          headers={"Content-Type": "application/x-protobuf", "authorization": f"Bearer {KEY}"})
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == relay.RETRY_AFTER_SECONDS
    assert status_pb2.Status.FromString(reply.content).code == 14


def test_malformed_body_is_400(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    reply = requests.post(f"{gateway.base}/v1/traces", data=b"\xff\x00 not protobuf", timeout=30,
                          headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 400
    assert receiver.spans() == []


def _protobuf_body() -> bytes:
    from dify_traces import arms_spans
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    return encode_spans(arms_spans(Run())).SerializeToString()


def _json_body(trace_id: str, span_ids: list[str]) -> bytes:
    spans = [{"traceId": trace_id, "spanId": sid, "name": f"llm_{i}", "startTimeUnixNano": "1764000000000000000",
              "endTimeUnixNano": "1764000001000000000",
              "attributes": [{"key": "openinference.span.kind", "value": {"stringValue": "LLM"}},
                             {"key": "llm.token_count.prompt", "value": {"intValue": "12"}},
                             {"key": "metadata", "value": {"stringValue": json.dumps(
                                 {"created_from": "Dify", "app_id": "app-json"})}}]}
             for i, sid in enumerate(span_ids)]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []},
                                          "scopeSpans": [{"scope": {"name": "dify"}, "spans": spans}]}]}).encode()


@pytest.mark.parametrize("level", ["direct", "executor"], indirect=True)
def test_json_with_a_rejected_span_is_a_partial_success(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    body = _json_body("5b8efff798038103d269b633813fc60c", ["eee19b7ec3c1b174", "zz-not-hex"])
    reply = requests.post(f"{gateway.base}/v1/traces", data=body, timeout=30,
                          headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200
    answer = json.loads(reply.content)
    assert answer["partialSuccess"]["rejectedSpans"] == "1"
    (span,) = receiver.spans()
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 12 and span.attributes[sc.DIFY_APP_ID] == "app-json"
    assert span.resource.attributes[sc.SERVICE_NAME] == "dify-test"  # the endpoint's service name


@pytest.mark.parametrize("level", ["direct", "executor"], indirect=True)
def test_gzip_protobuf_gets_an_export_response(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    assert send_arms(gateway.base, KEY, Run(), gzip=True) is SpanExportResult.SUCCESS
    assert len(receiver.spans()) == 9
    reply = requests.post(f"{gateway.base}/v1/traces", data=gzip.compress(_protobuf_body()), timeout=30,
                          headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
                                   "Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200
    assert not ExportTraceServiceResponse.FromString(reply.content).HasField("partial_success")


@pytest.mark.parametrize("level", ["direct", "executor"], indirect=True)
def test_body_over_the_limit_is_413(receiver, make_gateway, monkeypatch):
    gateway = make_gateway(endpoint_settings(receiver))
    monkeypatch.setattr(relay, "MAX_BODY", 1024)
    reply = requests.post(f"{gateway.base}/v1/traces", data=_protobuf_body(), timeout=30,
                          headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 413
    bomb = gzip.compress(b"\0" * 4096)
    reply = requests.post(f"{gateway.base}/v1/traces", data=bomb, timeout=30,
                          headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
                                   "Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 413
    assert receiver.spans() == []


@pytest.mark.parametrize("level", ["direct"], indirect=True)
def test_content_settings_apply_to_forwarded_spans(receiver, make_gateway):
    run = Run()
    gateway = make_gateway(endpoint_settings(receiver, capture_content="NO_CONTENT"))
    send_phoenix(gateway.base, KEY, run)
    llm = receiver.by_name()["llm_Answer"].attributes
    assert sc.INPUT_MESSAGES not in llm and sc.OUTPUT_MESSAGES not in llm and sc.INPUT_VALUE not in llm
    assert not any(k.startswith("llm.input_messages.") for k in llm)
    assert llm[sc.USAGE_TOTAL_TOKENS] == 180  # facts stay

    receiver.requests.clear()
    gateway = make_gateway(endpoint_settings(receiver, max_attribute_bytes="300", redact_pii=True))
    send_phoenix(gateway.base, KEY, run)
    llm = receiver.by_name()["llm_Answer"].attributes
    assert all(len(v.encode()) <= 300 for v in llm.values() if isinstance(v, str))
    assert "jane.doe@example.com" not in json.dumps({k: v for k, v in llm.items() if isinstance(v, str)})
    json.loads(llm[sc.INPUT_MESSAGES])  # truncated content stays valid JSON


@pytest.mark.parametrize("level", ["direct"], indirect=True)
def test_misconfigured_endpoint_answers_500(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver, otlp_endpoint="ftp://nowhere"))
    assert send_arms(gateway.base, KEY, Run()) is SpanExportResult.FAILURE
    assert receiver.spans() == []


def test_sdk_refuses_header_names_with_underscores(receiver):
    """Why the gateway drops them as Dify's nginx does: dify-plugin 0.10 refuses the request before any
    plugin code runs. If a later SDK accepts them, this fails and the README's limit can go."""
    import binascii

    from conftest import executor_for_plugin
    from dify_plugin.core.entities.plugin.request import EndpointInvokeRequest
    from dify_plugin.core.runtime import Session

    _, executor = executor_for_plugin()
    raw = (b"POST /v1/traces HTTP/1.1\r\nHost: dify\r\nContent-Type: application/x-protobuf\r\n"
           b"Api_key: " + KEY.encode() + b"\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
           b"Content-Length: 0\r\n\r\n")
    data = EndpointInvokeRequest(settings=endpoint_settings(receiver), raw_http_request=binascii.hexlify(raw).decode())
    with pytest.raises(ValueError, match="Invalid HTTP header"):
        list(executor.invoke_endpoint(Session.empty_session(), data))
