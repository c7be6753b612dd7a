"""``llmobs serve``: a local OTLP/HTTP receiver and web console over the embedded trace store.

One port serves ``POST /v1/traces`` (OTLP protobuf or JSON, gzip), the JSON API under ``/api`` and the
console at ``/``. Spans from any OpenTelemetry source are normalised by :mod:`llmobs.interop` and
written with the store's own exporter, so the console, ``llmobs stats`` and scripts see foreign spans
with llmobs semantics.
"""

from __future__ import annotations

import os
from pathlib import Path

from llmobs import config
from llmobs.serve.http import DEFAULT_MAX_BODY, App, ConsoleServer, Readers, ServeError, is_loopback
from llmobs.serve.ingest import Ingestor
from llmobs.serve.workers import IngestWorkers, WorkerError
from llmobs.store import schema

DEFAULT_PORT = 4318  # the OTLP/HTTP port: OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 just works
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_PORT", "ConsoleServer", "ServeError", "create_server", "default_workers"]


def default_workers() -> int:
    """Ingest processes for ``llmobs serve``: 2 where this process may run on two cores or more, else 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def create_server(
    store: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    settings: config.Settings | None = None,
    workers: int = 1,
) -> ConsoleServer:
    """Bind the server (``port=0`` picks a free port); run it with ``serve_forever()``, stop it with ``close()``.

    ``workers`` >= 2 decodes and stores received spans on that many processes
    (:mod:`llmobs.serve.workers`); 1 does it in this process.

    Raises :class:`ServeError` when ``host`` reaches beyond this machine and no ``token`` is given:
    the console shows prompts and answers, and the receiver writes to the store.
    """
    loopback = is_loopback(host)
    if not loopback and not token:
        raise ServeError(
            f"refusing to listen on {host} without a token: anyone who can reach it could read your traces and"
            " write spans. Pass --token (or set LLMOBS_SERVE_TOKEN), or listen on 127.0.0.1."
        )
    settings = settings or config.current()
    path = Path(store).expanduser() if store is not None else settings.store_path()
    try:
        schema.open_writer(path).close()  # create and migrate the store before anyone reads it
    except (OSError, schema.StoreError) as exc:
        raise ServeError(f"cannot open the trace store {path}: {exc}") from None
    if workers > 1:
        try:
            ingestor: Ingestor | IngestWorkers = IngestWorkers(path, settings, workers)
        except WorkerError as exc:
            raise ServeError(str(exc)) from None
    else:
        ingestor = Ingestor.for_store(path, settings)
    # Without a token, only requests addressed to this machine by name are served (DNS rebinding).
    hosts = frozenset((*_LOOPBACK_NAMES, host.lower())) if not token else None
    try:
        return ConsoleServer(App(ingestor, Readers(path), token or None, max_body, hosts), host, port)
    except OSError as exc:
        ingestor.shutdown()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
