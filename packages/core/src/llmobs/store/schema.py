"""Layout of the trace store and how every connection to it is opened.

One ``spans`` table keeps typed columns for what the listings filter and aggregate on, and the full
attributes, events and resource as JSON text so nothing is lost. WAL mode lets the CLI read while
applications write; writer processes serialise on SQLite's write lock (busy timeout plus a bounded
retry), each batch in one ``BEGIN IMMEDIATE`` transaction. The schema version is ``PRAGMA
user_version``; :data:`MIGRATIONS` upgrades a file one version at a time.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 5.0
#: Extra attempts after SQLite's own busy wait gave up (or was bypassed, e.g. during WAL recovery).
LOCK_RETRIES = 5
#: Cap on the WAL file size kept after a checkpoint.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
#: Page size of new store files. A span row carries 1-3 KB of attributes: SQLite's default 4 KiB pages hold
#: one or two, so a batch writes (to the WAL, then again at checkpoint) pages that are half empty; 16 KiB
#: pages took the same inserts 1.3-1.5x less time, in a fresh store and in one holding 200 000 spans.
#: Existing files keep the page size they were created with.
PAGE_SIZE = 16 * 1024

#: Column order of the ``spans`` table, of the exporter's rows and of the reader's records.
COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "span_kind", "operation", "service", "provider",
    "request_model", "response_model", "start_ns", "end_ns", "duration_ns", "status", "error_type",
    "ttft_ns", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "session_id", "user_id",
    "adjusted_count", "attributes", "events", "resource", "scope",
)

_V1 = (
    """CREATE TABLE spans (
        trace_id TEXT NOT NULL,
        span_id TEXT NOT NULL,
        parent_span_id TEXT,
        name TEXT NOT NULL,
        span_kind TEXT,
        operation TEXT,
        service TEXT,
        provider TEXT,
        request_model TEXT,
        response_model TEXT,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        duration_ns INTEGER NOT NULL,
        status TEXT NOT NULL,
        error_type TEXT,
        ttft_ns INTEGER,
        input_tokens INTEGER,
        output_tokens INTEGER,
        total_tokens INTEGER,
        cost_usd REAL,
        session_id TEXT,
        user_id TEXT,
        adjusted_count REAL NOT NULL DEFAULT 1.0,
        attributes TEXT NOT NULL,
        events TEXT NOT NULL,
        resource TEXT NOT NULL,
        scope TEXT,
        PRIMARY KEY (trace_id, span_id)
    )""",
    # The primary key's index serves lookups by trace id (and by trace id prefix).
    "CREATE INDEX spans_start ON spans (start_ns)",
    "CREATE INDEX spans_service ON spans (service, start_ns)",
    # Partial: only model calls carry a model, so other spans pay nothing for this index at ingest.
    "CREATE INDEX spans_model ON spans (request_model, start_ns) WHERE request_model IS NOT NULL",
)
#: ``MIGRATIONS[v]`` holds the statements that take a store from version ``v`` to ``v + 1``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)


class StoreError(Exception):
    """The store file cannot be used by this version of llmobs."""


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked/busy", which waiting can cure."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def retry_locked(fn: Callable[[], T]) -> T:
    """Run ``fn``, retrying with backoff a bounded number of times while the database is locked."""
    for attempt in range(LOCK_RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            time.sleep(0.02 * 2**attempt)
    return fn()


def write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction, retried as a whole while locked."""

    def attempt() -> T:
        conn.execute("BEGIN IMMEDIATE")
        return _commit(conn, fn)

    return retry_locked(attempt)


def try_write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
    """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction if the write lock is free now: ``(True, result)``;
    ``(False, None)``, having done nothing, if another connection holds it."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_locked(exc):
            return False, None
        raise
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return True, _commit(conn, fn)


def _commit(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Inside a transaction just begun: run ``fn`` and commit, or roll back and re-raise."""
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def open_writer(path: Path) -> sqlite3.Connection:
    """Open (creating file and parent directory if needed) a connection for writing, migrated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    try:
        # Both must precede the first write of a new file (the WAL switch writes its header); auto_vacuum
        # lets retention hand freed pages back to the file system with ``PRAGMA incremental_vacuum``.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        write(conn, _migrate)
    except BaseException:
        conn.close()
        raise
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    """Open an existing store for queries only; readers never block writers under WAL."""
    if not path.is_file():
        raise FileNotFoundError(f"no llmobs trace store at {path} (run `llmobs demo` to create one)")
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
        check_same_thread=False,
    )
    version = retry_locked(lambda: conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(_too_new(path, version))
    return conn


def has_schema(conn: sqlite3.Connection) -> bool:
    """Whether the spans table exists yet (a writer may have created the file but not migrated)."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spans'").fetchone()
    return row is not None


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(_too_new(conn.execute("PRAGMA database_list").fetchone()[2], version))
    for statements in MIGRATIONS[version:]:
        for statement in statements:
            conn.execute(statement)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _too_new(path: object, version: int) -> str:
    return f"{path} has store schema v{version}; this llmobs reads up to v{SCHEMA_VERSION} (upgrade llmobs)"


def default_path() -> Path:
    """``$LLMOBS_STORE`` if set, else ``.llmobs/llmobs.db`` under the current working directory."""
    env = os.environ.get("LLMOBS_STORE")
    if env:
        return Path(env).expanduser()
    return Path.cwd() / ".llmobs" / "llmobs.db"
