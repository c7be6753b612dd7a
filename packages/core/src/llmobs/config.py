"""Settings: defaults < ``llmobs.toml`` < environment < code, held as one immutable object.

The current settings are a single reference swapped atomically (:func:`swap`): readers on the hot path
take ``current()`` once and never see a half-applied change. A bad file raises :class:`ConfigError`
naming the line and the reason; callers that reload keep the last good settings.

``llmobs.toml`` (path from ``LLMOBS_CONFIG``, else ``./llmobs.toml``)::

    service_name = "support-bot"
    capture = "span_only"            # no_content | span_only | event_only | span_and_event
    max_attribute_bytes = 8192
    pii_redaction = false
    exporters = ["auto"]             # auto | store | otlp | console | none
    store = ".llmobs/llmobs.db"
    disabled_integrations = []       # e.g. ["langchain"]
    sdk_spans = false                # true: spans through the SDK's own Span class (see the core README)
    finish_in_background = true      # false: a call's span finished on the application's thread, at its end

    [retention]
    max_age_days = 7
    max_mb = 512

    [export]
    max_request_bytes = 4000000      # an OTLP request never exceeds this (batches are split to fit)
    shutdown_timeout_s = 10          # at exit, how long buffered spans may take to leave
    handle_sigterm = true            # flush on SIGTERM, then die of it as before

    [prices."my-finetune"]           # USD per million tokens
    input = 1.0
    output = 2.0
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmobs import sampling
from llmobs.content import CaptureMode
from llmobs.pricing import ModelPrice

CONFIG_ENV = "LLMOBS_CONFIG"
DEFAULT_CONFIG_FILE = "llmobs.toml"
OTEL_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EXPORTER_CHOICES = frozenset({"auto", "store", "otlp", "console", "none"})


class ConfigError(ValueError):
    """An invalid setting; the message names the source (file and line, or variable) and the reason."""


@dataclass(frozen=True, slots=True)
class Settings:
    service_name: str | None = None
    capture: CaptureMode = CaptureMode.SPAN_ONLY
    max_attribute_bytes: int = 8192
    pii_redaction: bool = False
    exporters: tuple[str, ...] = ("auto",)
    store: Path | None = None
    retention_max_age_days: float | None = 7.0
    retention_max_mb: float | None = 512.0
    disabled_integrations: frozenset[str] = frozenset()
    sdk_spans: bool = False
    finish_in_background: bool = True
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    sampling: sampling.SamplingPolicy = field(default_factory=sampling.SamplingPolicy)
    export_max_request_bytes: int = 4_000_000
    export_shutdown_timeout_s: float = 10.0
    export_handle_sigterm: bool = True
    source: str = "defaults"

    def store_path(self) -> Path:
        from llmobs.store import default_path

        return self.store if self.store is not None else default_path()

    def integration_enabled(self, name: str) -> bool:
        """Whether integration ``name`` (any case) is on; read on every traced call, so nothing is done for the
        usual empty set."""
        disabled = self.disabled_integrations
        return not disabled or name.lower() not in disabled


# --- parsing ---------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def _number(value: Any, where: str, *, integer: bool = False, minimum: float = 0) -> float | int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "off"}):
        return None
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError, OverflowError):  # int(inf) overflows
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < minimum:  # inf overflows its users
        raise ConfigError(f"{where}: expected a finite number >= {minimum}, got {value!r}")
    return number


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    return tuple(str(i).strip().lower() for i in items if str(i).strip())


def _capture(value: Any, where: str) -> CaptureMode:
    text = str(value).strip().upper()
    if text in CaptureMode.__members__:
        return CaptureMode[text]
    if text.lower() in _TRUE:
        return CaptureMode.SPAN_ONLY
    if text.lower() in _FALSE:
        return CaptureMode.NO_CONTENT
    raise ConfigError(f"{where}: expected one of {', '.join(CaptureMode.__members__)}, got {value!r}")


def _exporters(value: Any, where: str) -> tuple[str, ...]:
    names = _names(value, where)
    unknown = sorted(set(names) - EXPORTER_CHOICES)
    if unknown:
        raise ConfigError(f"{where}: unknown exporter {unknown[0]!r} (choose from {sorted(EXPORTER_CHOICES)})")
    return names or ("none",)


def _prices(value: Any, where: str) -> dict[str, ModelPrice]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table of models")
    prices = {}
    for model, entry in value.items():
        at = f"{where}.{model}"
        if not isinstance(entry, Mapping) or "input" not in entry or "output" not in entry:
            raise ConfigError(f"{at}: expected a table with input and output (USD per million tokens)")
        extra = set(entry) - {"input", "output", "cache_read", "cache_write"}
        if extra:
            raise ConfigError(f"{at}: unknown key {sorted(extra)[0]!r}")
        prices[str(model).lower()] = ModelPrice(
            input=_number(entry["input"], f"{at}.input"),
            output=_number(entry["output"], f"{at}.output"),
            cache_read=_number(entry.get("cache_read"), f"{at}.cache_read"),
            cache_write=_number(entry.get("cache_write"), f"{at}.cache_write"),
        )
    return prices


def _sampling(value: Any, where: str) -> sampling.SamplingPolicy:
    try:
        return sampling.parse(value, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except (ArithmeticError, TypeError) as exc:  # e.g. floor = inf: int(inf) overflows
        raise ConfigError(f"{where}: invalid value ({exc})") from None


# Each settable key: (Settings field, parser). The same table serves the file, env and code.
_KEYS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "service_name": ("service_name", lambda v, w: str(v) or None),
    "capture": ("capture", _capture),
    "max_attribute_bytes": ("max_attribute_bytes", lambda v, w: _number(v, w, integer=True, minimum=64)),
    "pii_redaction": ("pii_redaction", _bool),
    "exporters": ("exporters", _exporters),
    "store": ("store", lambda v, w: Path(str(v)) if v else None),
    "disabled_integrations": ("disabled_integrations", lambda v, w: frozenset(_names(v, w))),
    "sdk_spans": ("sdk_spans", _bool),
    "finish_in_background": ("finish_in_background", _bool),
    "prices": ("prices", _prices),
    "sampling": ("sampling", lambda v, w: _sampling(v, w)),
    "retention.max_age_days": ("retention_max_age_days", _number),
    "retention.max_mb": ("retention_max_mb", _number),
    "export.max_request_bytes": (
        "export_max_request_bytes", lambda v, w: _number(v, w, integer=True, minimum=64 * 1024)
    ),
    "export.shutdown_timeout_s": ("export_shutdown_timeout_s", lambda v, w: _number(v, w) or 0.0),
    "export.handle_sigterm": ("export_handle_sigterm", _bool),
}
_ENV = {
    "LLMOBS_SERVICE_NAME": "service_name",
    "LLMOBS_CAPTURE": "capture",
    "LLMOBS_MAX_ATTRIBUTE_BYTES": "max_attribute_bytes",
    "LLMOBS_PII_REDACTION": "pii_redaction",
    "LLMOBS_EXPORTERS": "exporters",
    "LLMOBS_STORE": "store",
    "LLMOBS_DISABLE": "disabled_integrations",
    "LLMOBS_SDK_SPANS": "sdk_spans",
    "LLMOBS_FINISH_IN_BACKGROUND": "finish_in_background",
    "LLMOBS_RETENTION_DAYS": "retention.max_age_days",
    "LLMOBS_RETENTION_MB": "retention.max_mb",
    "LLMOBS_EXPORT_MAX_REQUEST_BYTES": "export.max_request_bytes",
    "LLMOBS_EXPORT_SHUTDOWN_TIMEOUT": "export.shutdown_timeout_s",
    "LLMOBS_HANDLE_SIGTERM": "export.handle_sigterm",
}
# configure() keywords for dotted keys (``configure(retention_max_mb=...)``).
_CODE_NAMES = {key.replace(".", "_"): key for key in _KEYS if "." in key}
# Variables that change one field of the sampling policy, whatever its source.
_SAMPLING_ENV = {"LLMOBS_SAMPLING": "enabled", "LLMOBS_SAMPLING_RATIO": "ratio"}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name not in _KEYS:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _line_of(text: str, dotted: str) -> int | None:
    """The line that sets ``dotted`` (``sampling.rules[1].ratio``), searched after its table's header."""
    lines = text.splitlines()
    parts = re.findall(r"\[\d+\]|[^.\[\]]+", dotted)
    names = [p for p in parts if not p.startswith("[")]
    index = next((int(p[1:-1]) for p in parts if p.startswith("[")), 0)
    start = 0
    for depth in range(len(names) - 1, 0, -1):
        table = r"\s*\.\s*".join(f'"?{re.escape(n)}"?' for n in names[:depth])
        header = re.compile(rf"^\s*\[\[?\s*{table}\s*\]\]?\s*(#.*)?$")
        hits = [i for i, line in enumerate(lines) if header.match(line)]
        if hits:
            start = hits[min(index, len(hits) - 1)]
            break
    setting = re.compile(rf'^\s*"?{re.escape(names[-1])}"?\s*=')
    for number in range(start, len(lines)):
        if setting.match(lines[number]):
            return number + 1
    return start + 1 if start or (lines and re.match(r"^\s*\[", lines[0])) else None


def parse_file(path: Path) -> dict[str, Any]:
    """Validated field values from a TOML file; :class:`ConfigError` names the line and the reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
    table = table.get("llmobs", table) if isinstance(table.get("llmobs"), Mapping) else table
    try:
        flat = _flatten(table)
    except RecursionError:  # a dotted key or table header thousands of levels deep
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
    values = {}
    for key, value in flat.items():
        try:
            if key not in _KEYS:
                raise ConfigError(f"{key}: unknown setting (known: {', '.join(sorted(_KEYS))})")
            attr, parse = _KEYS[key]
            values[attr] = parse(value, key)
        except ConfigError as exc:
            message = str(exc)
            line = _line_of(text, message.split(":", 1)[0])
            raise ConfigError(f"{path}:{line}: {message}" if line else f"{path}: {message}") from None
    return values


def parse_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    otel_capture = environ.get(OTEL_CAPTURE_ENV)
    if otel_capture:
        values["capture"] = _capture(otel_capture, OTEL_CAPTURE_ENV)
    for var, key in _ENV.items():
        if var in environ:
            attr, parse = _KEYS[key]
            values[attr] = parse(environ[var], var)
    return values


def parse_code(overrides: Mapping[str, Any]) -> dict[str, Any]:
    values = {}
    for key, value in overrides.items():
        name = _CODE_NAMES.get(key, key)
        if name not in _KEYS:
            raise ConfigError(f"configure({key}=...): unknown setting (known: {', '.join(sorted(_KEYS))})")
        attr, parse = _KEYS[name]
        values[attr] = value if isinstance(value, CaptureMode) and attr == "capture" else parse(value, key)
    return values


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file in force: ``$LLMOBS_CONFIG`` (must exist), else ``./llmobs.toml`` if present."""
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from every source; raises :class:`ConfigError` on an invalid value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources = ["defaults"]
    path = config_file(environ)
    if path is not None:
        values.update(parse_file(path))
        sources.append(str(path))
    env_values = parse_env(environ)
    if env_values:
        values.update(env_values)
        sources.append("environment")
    if overrides:
        values.update(parse_code(overrides))
        sources.append("code")
    values["sampling"] = _sampling_with_env(values.get("sampling") or sampling.SamplingPolicy(), environ)
    return dataclasses.replace(Settings(), **values, source=" < ".join(sources))


def _sampling_with_env(policy: sampling.SamplingPolicy, environ: Mapping[str, str]) -> sampling.SamplingPolicy:
    """Apply LLMOBS_SAMPLING[_RATIO]; an unset ratio comes from OTEL_TRACES_SAMPLER(_ARG) if given."""
    overrides = {name: environ[var] for var, name in _SAMPLING_ENV.items() if var in environ}
    if overrides:
        try:
            changed = sampling.parse(overrides, "LLMOBS_SAMPLING")
        except ValueError as exc:
            raise ConfigError(str(exc).replace("LLMOBS_SAMPLING.ratio", "LLMOBS_SAMPLING_RATIO")) from None
        policy = dataclasses.replace(policy, **{name: getattr(changed, name) for name in overrides})
    if policy.ratio is None:
        otel_ratio = sampling.ratio_from_otel_env(environ)
        if otel_ratio is not None:
            policy = dataclasses.replace(policy, ratio=otel_ratio)
    return policy


# --- the current settings --------------------------------------------------------------------------

_current: Settings | None = None
_lock = threading.Lock()


def current() -> Settings:
    """The settings in force. The first call loads them from file and environment."""
    global _current
    settings = _current
    if settings is None:
        with _lock:
            if _current is None:
                try:
                    loaded = load()
                except ConfigError as exc:
                    from llmobs import selfstats

                    selfstats.failure("config.invalid", exc)
                    loaded = dataclasses.replace(Settings(), source=f"defaults (invalid config: {exc})")
                _current = loaded
            settings = _current
    return settings


def swap(settings: Settings) -> Settings:
    """Make ``settings`` current in one step; returns the previous settings."""
    global _current
    with _lock:
        previous, _current = _current, settings
    return previous or settings


# --- live reload ---------------------------------------------------------------------------------

_overrides: Mapping[str, Any] = {}
_watcher: ConfigWatcher | None = None
_log = logging.getLogger("llmobs")
_last_error: str | None = None


def apply(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Load settings from every source and make them current; code overrides are kept for reloads."""
    global _overrides
    settings = load(overrides)
    _overrides = dict(overrides or {})
    swap(settings)
    return settings


def reload() -> bool:
    """Re-read file and environment (with the last code overrides) and swap; keep the old on error.

    An invalid file is logged once per distinct error, with its line and reason, and counted.
    """
    global _last_error
    try:
        settings = load(_overrides)
    except ConfigError as exc:
        from llmobs import selfstats

        selfstats.count("config.reload_failed")
        if str(exc) != _last_error:
            _last_error = str(exc)
            _log.error("llmobs: config not reloaded, keeping the last good settings: %s", exc)
        return False
    _last_error = None
    swap(settings)
    return True


class ConfigWatcher:
    r"""Polls a config file's modification time and size, and :func:`reload`\ s when they change."""

    def __init__(self, path: Path, interval_s: float = 2.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmobs-config-watch", daemon=True)

    def start(self) -> ConfigWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        seen = _signature(self.path)
        while not self._stop.wait(self.interval_s):
            now = _signature(self.path)
            if now != seen:
                seen = now
                try:
                    reload()
                except Exception as exc:  # the watcher must outlive any surprise
                    from llmobs import selfstats

                    selfstats.failure("config.watch_failed", exc)


def watch(interval_s: float = 2.0) -> ConfigWatcher | None:
    """Watch ``$LLMOBS_CONFIG`` (or ``./llmobs.toml``, also before it exists) from a daemon thread.

    Once per process; ``LLMOBS_CONFIG_WATCH=false`` turns it off.
    """
    global _watcher
    if os.environ.get("LLMOBS_CONFIG_WATCH", "true").strip().lower() in _FALSE:
        return None
    with _lock:
        if _watcher is None or not _watcher.is_alive():
            path = Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE).absolute()
            _watcher = ConfigWatcher(path, interval_s).start()
        return _watcher


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def check_command(path: str | None) -> int:
    """``llmobs config check [PATH]``: validate a file offline and print the effective settings."""
    import sys

    target = Path(path) if path else config_file()
    try:
        if target is not None and not target.is_file():
            raise ConfigError(f"{target}: no such file")
        values = parse_file(target) if target is not None else {}
        settings = dataclasses.replace(load(environ={}), **values)
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {target if target else 'no llmobs.toml here; defaults'}")
    for f in dataclasses.fields(settings):
        if f.name != "source":
            value = getattr(settings, f.name)
            shown = value.name if isinstance(value, CaptureMode) else value
            print(f"  {f.name} = {shown}")
    return 0
