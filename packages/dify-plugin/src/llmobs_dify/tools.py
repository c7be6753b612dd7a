"""Tools for workflow authors: ``record_score``, ``record_feedback`` and ``log_event``.

Each tool attaches Dify's ids — the app, conversation and message Dify passes with every tool call,
the user, and the workflow run id the author wires in (``{{#sys.workflow_run_id#}}``: Dify does not
pass it to tools) — so the backend joins the record to the trace Dify's tracing sent through the relay.
The tools fail open: a record that could not be delivered is reported in the tool's JSON output
(``recorded: false`` and why) and the workflow goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from dify_plugin import Tool, ToolProvider
from dify_plugin.entities.tool import ToolInvokeMessage
from dify_plugin.errors.tool import ToolProviderCredentialValidationError

from llmobs_dify import evaluations
from llmobs_dify.endpoints import FEEDBACK_NAME, feedback_values
from llmobs_dify.settings import SettingsError, destination

_log = logging.getLogger(__name__)


class LLMObsToolProvider(ToolProvider):
    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        try:
            destination(credentials)
        except SettingsError as exc:
            raise ToolProviderCredentialValidationError(str(exc)) from None


class _RecordingTool(Tool):
    def _ids(self, parameters: dict[str, Any]) -> evaluations.DifyIds:
        session = self.session
        return evaluations.ids(
            app_id=parameters.get("app_id") or session.app_id,
            workflow_run_id=parameters.get("workflow_run_id"),
            message_id=parameters.get("message_id") or session.message_id,
            conversation_id=parameters.get("conversation_id") or session.conversation_id,
            user_id=parameters.get("user_id") or self.runtime.user_id,
        )

    def _outcome(self, outcome: evaluations.Outcome, **extra: Any) -> ToolInvokeMessage:
        document: dict[str, Any] = {"recorded": outcome.recorded, **extra}
        if outcome.trace_id:
            document["trace_id"] = outcome.trace_id
        if outcome.error:
            document["error"] = outcome.error
        return self.create_json_message(document)

    def _refused(self, reason: str) -> ToolInvokeMessage:
        return self.create_json_message({"recorded": False, "error": reason})

    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        try:
            dest = destination(self.runtime.credentials)
        except SettingsError as exc:
            yield self._refused(f"the llmobs tools are not configured: {exc}")
            return
        try:
            message = self._record(dest, tool_parameters, self._ids(tool_parameters))
        except ValueError as exc:
            message = self._refused(str(exc))
        except Exception as exc:  # fail open: the workflow goes on without the record
            _log.warning("llmobs Dify tool failed", exc_info=True)
            message = self._refused(f"not recorded: {type(exc).__name__}")
        yield message

    def _record(self, dest: Any, parameters: dict[str, Any], dify: evaluations.DifyIds) -> ToolInvokeMessage:
        raise NotImplementedError


class RecordScoreTool(_RecordingTool):
    """A named score (and optional label and comment) for the current run."""

    def _record(self, dest: Any, parameters: dict[str, Any], dify: evaluations.DifyIds) -> ToolInvokeMessage:
        name = str(parameters.get("name") or "").strip()
        if not name:
            raise ValueError("give the score a name")
        raw = parameters.get("value")
        try:
            value = float(raw) if raw is not None and str(raw).strip() else None
        except (TypeError, ValueError):
            raise ValueError(f"value must be a number, got {str(raw)[:40]!r}") from None
        label = parameters.get("label")
        if value is None and not label:
            raise ValueError("give a value or a label")
        outcome = evaluations.record_evaluation(dest, dify, name=name, score=value, label=label,
                                                explanation=parameters.get("comment"))
        return self._outcome(outcome, name=name)


class RecordFeedbackTool(_RecordingTool):
    """A thumbs up/down (or a score) from the end user, for a message or workflow run."""

    def _record(self, dest: Any, parameters: dict[str, Any], dify: evaluations.DifyIds) -> ToolInvokeMessage:
        score, label = feedback_values(parameters.get("rating"), parameters.get("score"))
        outcome = evaluations.record_evaluation(
            dest, dify, name=str(parameters.get("name") or FEEDBACK_NAME), score=score, label=label,
            explanation=parameters.get("text"), span_name=evaluations.SPAN_FEEDBACK,
        )
        return self._outcome(outcome)


class LogEventTool(_RecordingTool):
    """A named business event with JSON attributes."""

    def _record(self, dest: Any, parameters: dict[str, Any], dify: evaluations.DifyIds) -> ToolInvokeMessage:
        name = str(parameters.get("name") or "").strip()
        if not name:
            raise ValueError("give the event a name")
        attributes = evaluations.parse_attributes(parameters.get("attributes"))
        outcome = evaluations.record_event(dest, dify, name=name, attributes=attributes)
        return self._outcome(outcome, name=name)
