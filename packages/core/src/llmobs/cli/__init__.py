"""The ``llmobs`` command: listings over the local trace store, the web console, the demo, analysis, and config
checks.

Exit codes: 0 success, 1 a user error (no store, unknown trace, unreadable file), 2 a usage error.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import os
import shlex
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence

from llmobs import strict_json
from llmobs.cli import render
from llmobs.store import StoreError, TraceStore

_EMPTY = "no traces yet — run `llmobs demo`"

Handler = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already reported
        return exc.code if isinstance(exc.code, int) else 0
    if args.handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _reads_store(handler: Callable[[argparse.Namespace, TraceStore], int]) -> Handler:
    """Open the store for ``handler``; report a missing or unusable store in one line, exit 1."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            with TraceStore(args.store) as store:
                return handler(args, store)
        except (FileNotFoundError, StoreError) as exc:
            return _fail(str(exc))
        except sqlite3.DatabaseError as exc:
            return _fail(f"cannot read the trace store: {exc}")

    return run


@_reads_store
def _traces(args: argparse.Namespace, store: TraceStore) -> int:
    traces = store.list_traces(args.limit, errors_only=args.errors, service=args.service)
    if args.json:
        return _print_json([t.to_dict() for t in traces])
    if not traces:
        print("no matching traces" if args.errors or args.service else _EMPTY)
        return 0
    print(render.traces_table(traces, color=render.use_color(sys.stdout)))
    store_option = f" --store {shlex.quote(args.store)}" if args.store else ""  # runs as printed
    print(f"\ndetails: llmobs show {traces[0].trace_id[:render.SHORT_ID]}{store_option}")
    return 0


@_reads_store
def _show(args: argparse.Namespace, store: TraceStore) -> int:
    try:
        spans = store.get_trace(args.trace_id)
    except KeyError as exc:  # unknown or ambiguous id
        return _fail(exc.args[0])
    if args.json:
        return _print_json([s.to_dict() for s in spans])
    print(render.trace_tree(spans, color=render.use_color(sys.stdout)))
    return 0


@_reads_store
def _stats(args: argparse.Namespace, store: TraceStore) -> int:
    stats = store.model_stats()
    if args.json:
        return _print_json([m.to_dict() for m in stats])
    if not stats:
        print(_EMPTY if not store.list_traces(1) else "no model calls recorded yet")
        return 0
    print(render.stats_table(stats, color=render.use_color(sys.stdout)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from llmobs.demo import main as demo_main

    return demo_main(args)


def _serve(args: argparse.Namespace) -> int:
    from llmobs.serve import ServeError, create_server, default_workers

    try:
        server = create_server(args.store, host=args.host, port=args.port,
                               token=args.token or os.environ.get("LLMOBS_SERVE_TOKEN"),
                               max_body=args.max_body_mb * 1024 * 1024,
                               workers=args.workers if args.workers is not None else default_workers())
    except ServeError as exc:
        print(f"llmobs: {exc}", file=sys.stderr)
        return 2
    url = server.url
    print(f"llmobs console:  {url}/", flush=True)
    print(f"OTLP/HTTP:       {url}/v1/traces  (OTEL_EXPORTER_OTLP_ENDPOINT={url})", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends it as cleanly as Ctrl-C
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>`: every thread's stack to stderr, for a server that hangs
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _analyze(args: argparse.Namespace) -> int:
    from llmobs.analyze.command import run

    return run(args)


def _config_check(args: argparse.Namespace) -> int:
    from llmobs.config import check_command

    return check_command(args.path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmobs", description="Look at the traces llmobs recorded locally.")
    parser.add_argument("--store", metavar="PATH", default=None,
                        help="trace store file (default: $LLMOBS_STORE, else ./.llmobs/llmobs.db)")
    parser.set_defaults(handler=None)
    # Also accepted after the subcommand; SUPPRESS keeps a value given before it.
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Handler | None, help_: str,
                parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_, parents=list(parents))
        sub.set_defaults(handler=handler)
        return sub

    traces = command("traces", _traces, "list the most recent traces", (store, as_json))
    traces.add_argument("--limit", type=_positive, default=20, metavar="N", help="how many (default 20)")
    traces.add_argument("--errors", action="store_true", help="only traces with an error span")
    traces.add_argument("--service", metavar="S", help="only traces with a span from service S")

    show = command("show", _show, "show one trace as a span tree", (store, as_json))
    show.add_argument("trace_id", metavar="TRACE_ID", help="the trace id or a unique prefix of it")

    command("stats", _stats, "latency, errors, tokens and cost per model", (store, as_json))

    demo = command("demo", _demo, "record a few simulated LLM sessions into the store", (store,))
    demo.add_argument("--sessions", type=_positive, default=3, metavar="N", help="how many (default 3)")

    serve = command("serve", _serve, "receive OTLP traces and browse the store in a web console", (store,))
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4318, help="port (default 4318, the OTLP/HTTP port; 0: any free)")
    serve.add_argument("--token", default=None,
                       help="require this bearer token (default: $LLMOBS_SERVE_TOKEN); needed beyond loopback")
    serve.add_argument("--max-body-mb", type=_positive, default=32, metavar="MB",
                       help="largest request body, after decompression (default 32)")
    serve.add_argument("--workers", type=_positive, default=None, metavar="N",
                       help="processes that decode and store received spans, sharing every request"
                            " (default 2 on two cores or more; 1: in the server process)")

    from llmobs.analyze.command import add_arguments as analyze_arguments

    analyze = command("analyze", _analyze, "topics, quality checks and failure classes of the model calls",
                      (store, as_json))
    analyze_arguments(analyze)

    config = command("config", None, "configuration commands")
    config_commands = config.add_subparsers(title="commands", metavar="COMMAND", required=True)
    check = config_commands.add_parser("check", help="validate a configuration file")
    check.add_argument("path", nargs="?", metavar="PATH", help="the file (default: the usual search)")
    check.set_defaults(handler=_config_check)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _print_json(value: object) -> int:
    print(strict_json.dumps(value, indent=2, ensure_ascii=False))
    return 0


def _fail(message: str) -> int:
    print(f"llmobs: {message}", file=sys.stderr)
    return 1
