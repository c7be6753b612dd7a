"""pluggy hook specifications and the plugin manager.

Third-party plugins are modules or objects exposed under the entry-point group ``llmobs``; their hook
implementations are marked with :data:`hookimpl`. llmobs' own behaviour (secret scrubbing, PII
redaction, the price table) is registered through the same hooks, so the seams are used every day.

A plugin that fails to load, or a hook implementation that raises, is logged once and counted in
``llmobs.selfstats``; it never breaks the application.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from llmobs import selfstats
from llmobs.content import redact_pii, scrub_text
from llmobs.pricing import BUILTIN_PRICES, ModelPrice, find_price

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    from llmobs.config import Settings
    from llmobs.recorder import SpanHandle

PROJECT = "llmobs"
ENTRY_POINT_GROUP = "llmobs"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Redactor = Callable[[str], str]


class HookSpecs:
    """The hooks llmobs calls. Implement any subset in a plugin."""

    @hookspec
    def llmobs_redactors(self, settings: Settings) -> list[Redactor] | None:
        """Text redactors (``str -> str``) applied, in order, to every captured string before export.

        Called when settings are loaded, not per span.
        """

    @hookspec(firstresult=True)
    def llmobs_model_price(self, provider: str | None, model: str, settings: Settings) -> ModelPrice | None:
        """The price of a model, or None to let the next plugin answer. Results are cached per model."""

    @hookspec
    def llmobs_span_end(self, handle: SpanHandle) -> None:
        """Enrich a span just before it ends (``handle.set_attribute``); also sees usage and errors."""

    @hookspec
    def llmobs_sampling_vote(self, spans: list[ReadableSpan]) -> str | None:
        """Vote to keep a local trace whatever the ratio: return a short reason, or None to abstain.

        Called once per trace, when its local root ends, with all its finished spans.
        """

    @hookspec
    def llmobs_span_processors(self, settings: Settings) -> list[SpanProcessor] | None:
        """Extra span processors or exporters to add at ``llmobs.configure()``, beside llmobs' own exporters.

        Like those, they receive each finished span that sampling keeps (``on_end``; not ``on_start``: the
        decision is made at the end of a trace). An exporter is given llmobs' batch processor.
        """

    @hookspec
    def llmobs_evaluators(self, settings: Settings) -> list[Any] | None:
        """Evaluators for ``llmobs analyze``: objects with a ``name`` and ``evaluate(call)``.

        ``call`` is an :class:`llmobs.analyze.LLMCall`; ``evaluate`` returns an
        :class:`llmobs.analyze.EvaluationResult`, a list of them, or None when it does not apply.
        Called once per analysis run; results become ``gen_ai.evaluation.result`` events on the span.
        """


class _Builtins:
    """llmobs' own behaviour, registered through the public hooks."""

    @hookimpl(tryfirst=True)
    def llmobs_redactors(self, settings: Settings) -> list[Redactor]:
        return [scrub_text, redact_pii] if settings.pii_redaction else [scrub_text]

    @hookimpl(trylast=True)
    def llmobs_model_price(self, provider: str | None, model: str, settings: Settings) -> ModelPrice | None:
        return find_price(model, BUILTIN_PRICES)


class _ConfiguredPrices:
    """Prices from settings (``[prices]`` in llmobs.toml or ``configure(prices=...)``) win over the table."""

    @hookimpl(tryfirst=True)
    def llmobs_model_price(self, provider: str | None, model: str, settings: Settings) -> ModelPrice | None:
        return find_price(model, settings.prices) if settings.prices else None


_manager: pluggy.PluginManager | None = None
_lock = threading.Lock()


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with built-ins and entry-point plugins loaded on first use."""
    global _manager
    if _manager is None:
        with _lock:
            if _manager is None:
                pm = pluggy.PluginManager(PROJECT)
                pm.add_hookspecs(HookSpecs)
                pm.register(_Builtins(), name="llmobs.builtins")
                pm.register(_ConfiguredPrices(), name="llmobs.configured-prices")
                _load_entry_points(pm)
                _manager = pm
    return _manager


_generation = 0  # bumped on every (un)registration so caches derived from plugins are rebuilt


def generation() -> int:
    return _generation


def register(plugin: object, name: str | None = None) -> None:
    """Register a plugin object from code (same hooks as entry-point plugins)."""
    global _generation
    manager().register(plugin, name=name)
    _generation += 1


def unregister(plugin: object) -> None:
    global _generation
    manager().unregister(plugin)
    _generation += 1


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:
            selfstats.failure(f"plugin.load_failed:{ep.name}", exc)


def call(hook_name: str, **kwargs: Any) -> Any:
    """Call a hook, containing failures: a raising plugin is counted and the call returns None."""
    try:
        return getattr(manager().hook, hook_name)(**kwargs)
    except Exception as exc:
        selfstats.failure(f"plugin.hook_failed:{hook_name}", exc)
        return None


def redactors(settings: Settings) -> tuple[Redactor, ...]:
    """All redactors, built-ins first, flattened from every plugin's answer."""
    answers = call("llmobs_redactors", settings=settings) or []
    return tuple(r for answer in answers if answer for r in answer if callable(r))


def price_of(provider: str | None, model: str, settings: Settings) -> ModelPrice | None:
    return call("llmobs_model_price", provider=provider, model=model, settings=settings)


def span_processors(settings: Settings) -> list[SpanProcessor]:
    answers = call("llmobs_span_processors", settings=settings) or []
    return [p for answer in answers if answer for p in answer]


def has_hook(hook_name: str) -> bool:
    """Whether any plugin implements a hook (lets callers skip the call entirely on hot paths)."""
    return bool(getattr(manager().hook, hook_name).get_hookimpls())


__all__ = [
    "ENTRY_POINT_GROUP",
    "HookSpecs",
    "hookimpl",
    "hookspec",
    "manager",
    "price_of",
    "redactors",
    "register",
    "span_processors",
    "unregister",
]
