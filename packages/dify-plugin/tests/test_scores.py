"""Tools (record_score, record_feedback, log_event) and POST /feedback at all three levels: the records
reach a loopback OTLP receiver as gen_ai.evaluation.result events joined to Dify's ids."""

import json
from typing import Any

import pytest
import requests
from conftest import KEY, endpoint_settings, executor_for_plugin
from dify_plugin.core.entities.plugin.request import ToolInvokeRequest
from dify_plugin.core.runtime import Session
from dify_plugin.entities.tool import ToolRuntime

from llmobs import semconv as sc
from llmobs_dify.tools import LogEventTool, RecordFeedbackTool, RecordScoreTool

IDS = {"app_id": "app-9", "conversation_id": "conv-9", "message_id": "msg-9"}
RUN_ID = "3b2d8f0e-5a1c-4c7e-9f00-0000000000aa"
TOOLS = {"record_score": RecordScoreTool, "record_feedback": RecordFeedbackTool, "log_event": LogEventTool}


def credentials(receiver, **overrides: Any) -> dict[str, Any]:
    return {"otlp_endpoint": receiver.url, "otlp_headers": '{"x-tenant": "t1"}', "service_name": "dify-tools",
            **overrides}


def _session() -> Session:
    session = Session.empty_session()
    session.app_id, session.conversation_id = IDS["app_id"], IDS["conversation_id"]
    session.message_id = IDS["message_id"]
    return session


def _json_of(message: Any) -> dict[str, Any]:
    return message.message.json_object


def invoke_tool(level: str, request: pytest.FixtureRequest, tool: str, creds: dict, params: dict) -> dict[str, Any]:
    """The tool's JSON output, invoked at the given level."""
    if level == "direct":
        runtime = ToolRuntime(credentials=creds, user_id="user-9", session_id="s-9")
        (message,) = list(TOOLS[tool](runtime=runtime, session=_session()).invoke(params))
        return _json_of(message)
    data = ToolInvokeRequest(user_id="user-9", provider="llmobs", tool=tool, credentials=creds, tool_parameters=params)
    if level == "executor":
        _, executor = executor_for_plugin()
        (message,) = list(executor.invoke_tool(_session(), data))
        return _json_of(message)
    plugin = request.getfixturevalue("serverless_plugin")
    (message,) = plugin.invoke(json.loads(data.model_dump_json()), **IDS)
    return message["message"]["json_object"]


def _evaluation(span) -> dict[str, Any]:
    (event,) = [e for e in span.events if e.name == sc.EVENT_EVALUATION_RESULT]
    return dict(event.attributes)


@pytest.mark.parametrize("level", ["direct", "executor", "serverless"])
def test_record_score_joins_the_run(receiver, level, request):
    out = invoke_tool(level, request, "record_score", credentials(receiver),
                      {"name": "groundedness", "value": 0.75, "label": "pass", "comment": "cites refunds.md",
                       "workflow_run_id": RUN_ID})
    assert out["recorded"] is True and out["name"] == "groundedness"
    (span,) = receiver.spans()
    assert format(span.context.trace_id, "032x") == out["trace_id"]
    assert _evaluation(span) == {sc.EVALUATION_NAME: "groundedness", sc.EVALUATION_SCORE_VALUE: 0.75,
                                 sc.EVALUATION_SCORE_LABEL: "pass", sc.EVALUATION_EXPLANATION: "cites refunds.md"}
    attrs = span.attributes
    assert (attrs[sc.DIFY_APP_ID], attrs[sc.DIFY_WORKFLOW_RUN_ID]) == ("app-9", RUN_ID)
    assert attrs[sc.DIFY_MESSAGE_ID] == "msg-9"
    assert (attrs[sc.CONVERSATION_ID], attrs[sc.USER_ID], attrs[sc.FRAMEWORK]) == ("conv-9", "user-9", "dify")
    assert span.resource.attributes[sc.SERVICE_NAME] == "dify-tools"
    assert receiver.headers_seen[0]["x-tenant"] == "t1"


@pytest.mark.parametrize("level", ["direct", "executor", "serverless"])
def test_record_feedback_and_log_event(receiver, level, request):
    out = invoke_tool(level, request, "record_feedback", credentials(receiver),
                      {"rating": "dislike", "text": "wrong, mail me at a.b@example.com", "message_id": "msg-other"})
    assert out["recorded"] is True
    out = invoke_tool(level, request, "log_event", credentials(receiver),
                      {"name": "order_placed", "attributes": '{"amount": 12.5, "sku": "A-1", "api_key": "sk-123"}'})
    assert out["recorded"] is True
    spans = {s.name: s for s in receiver.spans()}
    feedback = spans["dify.feedback"]
    assert _evaluation(feedback)[sc.EVALUATION_SCORE_LABEL] == "dislike"
    assert _evaluation(feedback)[sc.EVALUATION_SCORE_VALUE] == 0.0
    assert feedback.attributes[sc.DIFY_MESSAGE_ID] == "msg-other"  # the wired id wins over the session's
    (event,) = spans["dify.event order_placed"].events
    assert event.name == "order_placed"
    assert (event.attributes["amount"], event.attributes["sku"]) == (12.5, "A-1")
    assert "sk-123" not in json.dumps(dict(event.attributes))  # secrets scrubbed


@pytest.mark.parametrize("level", ["direct", "executor"])
def test_tools_fail_open(receiver, level, request):
    receiver.status = 400
    out = invoke_tool(level, request, "record_score", credentials(receiver), {"name": "q", "value": 1})
    assert out["recorded"] is False and "did not accept" in out["error"]
    out = invoke_tool(level, request, "record_score", credentials(receiver), {"name": "q", "value": "high"})
    assert out["recorded"] is False and "number" in out["error"]
    out = invoke_tool(level, request, "record_score", {"otlp_endpoint": "not a url"}, {"name": "q", "value": 1})
    assert out["recorded"] is False and "not configured" in out["error"]


def test_provider_validates_credentials():
    from dify_plugin.errors.tool import ToolProviderCredentialValidationError

    from llmobs_dify.tools import LLMObsToolProvider

    LLMObsToolProvider().validate_credentials({"otlp_endpoint": "https://collector:4318"})
    with pytest.raises(ToolProviderCredentialValidationError):
        LLMObsToolProvider().validate_credentials({"otlp_endpoint": "collector"})


def test_feedback_endpoint(receiver, make_gateway):
    gateway = make_gateway(endpoint_settings(receiver))
    auth = {"Authorization": f"Bearer {KEY}"}
    reply = requests.post(f"{gateway.base}/feedback", timeout=30, headers=auth, json={
        "message_id": "msg-1", "rating": "like", "comment": "great", "user_id": "u-1", "app_id": "app-1"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["recorded"] is True
    (span,) = receiver.spans()
    assert span.name == "dify.feedback"
    assert _evaluation(span) == {sc.EVALUATION_NAME: "user_feedback", sc.EVALUATION_SCORE_VALUE: 1.0,
                                 sc.EVALUATION_SCORE_LABEL: "like", sc.EVALUATION_EXPLANATION: "great"}
    assert (span.attributes[sc.DIFY_MESSAGE_ID], span.attributes[sc.USER_ID]) == ("msg-1", "u-1")
    assert span.resource.attributes[sc.SERVICE_NAME] == "dify-test"

    reply = requests.post(f"{gateway.base}/feedback", timeout=30, headers=auth,
                          json={"workflow_run_id": RUN_ID, "score": 4, "name": "stars"})
    assert reply.status_code == 200
    assert requests.post(f"{gateway.base}/feedback", timeout=30, json={"message_id": "m"}).status_code == 401
    assert requests.post(f"{gateway.base}/feedback", timeout=30, headers=auth,
                         json={"rating": "like"}).status_code == 400  # no id to join on
    assert requests.post(f"{gateway.base}/feedback", timeout=30, headers=auth,
                         json={"message_id": "m", "rating": "meh"}).status_code == 400
    assert requests.post(f"{gateway.base}/feedback", timeout=30, headers=auth, data=b"{not json").status_code == 400
    assert len(receiver.spans()) == 2
    receiver.status = 400
    reply = requests.post(f"{gateway.base}/feedback", timeout=30, headers=auth, json={"message_id": "m", "score": 1})
    assert reply.status_code == 503 and reply.json()["recorded"] is False
