"""The plugin's endpoints: ``POST /v1/traces`` (the relay; also at the ARMS provider's path) and
``POST /feedback`` (end-user feedback).

Dify serves them at ``https://<dify>/e/<hook id>/v1/traces`` and ``.../feedback`` once a workspace user
has created an endpoint of this plugin and filled in its settings (see ``group/llmobs.yaml``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from dify_plugin import Endpoint
from werkzeug import Request, Response

from llmobs_dify import evaluations, relay
from llmobs_dify.settings import SettingsError, destination, relay_settings

_log = logging.getLogger(__name__)

#: Largest feedback body accepted.
MAX_FEEDBACK_BODY = 64 * 1024
FEEDBACK_NAME = "user_feedback"
#: The path value carrying the key in the ARMS provider's URL (endpoints/arms_traces.yaml).
ARMS_KEY = "license_key"
_RATINGS = {"like": 1.0, "up": 1.0, "thumbs_up": 1.0, "positive": 1.0,
            "dislike": 0.0, "down": 0.0, "thumbs_down": 0.0, "negative": 0.0}
_LABELS = {1.0: "like", 0.0: "dislike"}


class TracesEndpoint(Endpoint):
    """OTLP/HTTP receiver for Dify's tracing providers; forwards in llmobs semantics."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        headers = dict(r.headers.items())
        declared = r.content_length
        # A body declared over the limit is not read at all; the relay refuses it (after authentication).
        body = None if declared is not None and declared > relay.MAX_BODY else r.get_data(cache=False)
        reply = relay.handle_traces(settings, headers, body)
        return Response(reply.body, status=reply.status, content_type=reply.content_type, headers=list(reply.headers))


class ArmsTracesEndpoint(Endpoint):
    """The same relay at the path Dify's ARMS provider posts to: ``/adapt_<key>/api/otlp/traces``."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        headers = dict(r.headers.items())
        declared = r.content_length
        body = None if declared is not None and declared > relay.MAX_BODY else r.get_data(cache=False)
        reply = relay.handle_traces(settings, headers, body, path_key=str(values.get(ARMS_KEY) or ""))
        return Response(reply.body, status=reply.status, content_type=reply.content_type, headers=list(reply.headers))


class ArmsCheckEndpoint(Endpoint):
    """Dify's ARMS provider checks its endpoint with HEAD and expects 405, as an OTLP receiver answers."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        return Response(b"", status=405, headers=[("Allow", "POST")])


def feedback_values(rating: Any, score: Any) -> tuple[float | None, str | None]:
    """(score, label) from a thumbs rating (like/dislike, up/down) and/or a numeric score; ValueError if neither."""
    value: float | None = None
    label: str | None = None
    if rating is not None and str(rating).strip():
        key = str(rating).strip().lower()
        if key not in _RATINGS:
            raise ValueError(f"rating must be like or dislike, got {str(rating)[:40]!r}")
        value, label = _RATINGS[key], _LABELS[_RATINGS[key]]
    if score is not None and str(score).strip():
        try:
            value = float(score)
        except (TypeError, ValueError):
            raise ValueError(f"score must be a number, got {str(score)[:40]!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("score must be a finite number")
    if value is None:
        raise ValueError("give a rating (like or dislike) or a score")
    return value, label


def _json_reply(status: int, document: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(json.dumps(document), status=status, content_type="application/json", headers=list(headers))


class FeedbackEndpoint(Endpoint):
    """End-user thumbs or scores from an external UI, keyed by a Dify message or workflow-run id."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        try:
            config = relay_settings(settings)
        except SettingsError as exc:
            return _json_reply(500, {"error": relay.not_configured(exc)})
        if not relay.authorised(r.headers, config.api_key):
            return _json_reply(401, {"error": "missing or wrong key (Authorization: Bearer <key>)"},
                               (("WWW-Authenticate", 'Bearer realm="llmobs"'),))
        if (r.content_length or 0) > MAX_FEEDBACK_BODY:
            return _json_reply(413, {"error": f"body over the {MAX_FEEDBACK_BODY} byte limit"})
        body = r.get_data(cache=False)
        if len(body) > MAX_FEEDBACK_BODY:
            return _json_reply(413, {"error": f"body over the {MAX_FEEDBACK_BODY} byte limit"})
        try:
            document = json.loads(body or b"null")
        except ValueError:
            return _json_reply(400, {"error": "the body is not JSON"})
        if not isinstance(document, dict):
            return _json_reply(400, {"error": "the body must be a JSON object"})
        dify = evaluations.ids(
            app_id=document.get("app_id") or self.session.app_id,
            workflow_run_id=document.get("workflow_run_id"),
            message_id=document.get("message_id"),
            conversation_id=document.get("conversation_id"),
            user_id=document.get("user_id"),
        )
        if not dify.joinable:
            return _json_reply(400, {"error": "give the message_id or workflow_run_id the feedback is about"})
        try:
            score, label = feedback_values(document.get("rating"), document.get("score"))
        except ValueError as exc:
            return _json_reply(400, {"error": str(exc)})
        outcome = evaluations.record_evaluation(
            destination(settings), dify, name=str(document.get("name") or FEEDBACK_NAME), score=score, label=label,
            explanation=document.get("comment"), span_name=evaluations.SPAN_FEEDBACK,
        )
        if not outcome.recorded:
            return _json_reply(503, {"recorded": False, "error": outcome.error},
                               (("Retry-After", relay.RETRY_AFTER_SECONDS),))
        return _json_reply(200, {"recorded": True, "trace_id": outcome.trace_id})
