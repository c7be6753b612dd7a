"""The finisher: work queued runs on its thread in batches, within its delay, at a flush, or in the caller when
queuing is off or the queue is full; a failure is counted, and a forked child drops its parent's queue. On a
provider it joined, spans keep their order of ending and a flush of the provider finishes the queue."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import config, finisher, selfstats
from llmobs.finisher import Finisher
from llmobs.recorder import Recorder


@pytest.fixture(autouse=True)
def _defaults():
    previous = config.swap(config.Settings())
    selfstats.reset()
    yield
    config.swap(previous)


def test_the_work_that_fills_a_batch_runs_the_batch_in_its_own_thread():
    queue = Finisher(batch=4, delay_s=60.0)
    threads: list[str] = []
    for _ in range(3):
        queue.submit(lambda: threads.append(threading.current_thread().name))
    time.sleep(0.05)
    assert threads == [] and queue.queued() == 3  # short of a batch, well within the delay
    queue.submit(lambda: threads.append(threading.current_thread().name))
    assert threads == [threading.current_thread().name] * 4 and queue.queued() == 0


def test_work_from_a_finalizer_never_runs_the_batch_there():
    """The garbage collector may run a finalizer inside a span processor's lock: the batch it completes runs on
    the watch thread instead."""
    queue = Finisher(batch=2, delay_s=0.05)
    done = threading.Event()
    threads: list[str] = []
    queue.submit(lambda: threads.append(threading.current_thread().name))
    queue.submit(lambda: (threads.append(threading.current_thread().name), done.set()), finalizer=True)
    assert threads == [] or threads[0] == "llmobs-finisher", "the finalizer ran the batch"
    assert done.wait(5), "queued work never ran"
    assert threads == ["llmobs-finisher"] * 2


def test_the_watch_thread_outlives_a_failure_of_its_own():
    queue = Finisher(batch=100, delay_s=0.02)
    drain = queue._drain
    failures = iter([RuntimeError("once")])

    def failing_once() -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        drain()

    queue._drain = failing_once  # type: ignore[method-assign]
    done = threading.Event()
    queue.submit(done.set)
    assert done.wait(5), "the watch thread stopped at its failure"
    assert selfstats.snapshot().get("finisher.watch_failed") == 1


def test_fewer_than_a_batch_run_on_the_watch_thread_after_the_delay():
    queue = Finisher(batch=100, delay_s=0.05)
    done = threading.Event()
    threads: list[str] = []
    started = time.monotonic()
    queue.submit(lambda: (threads.append(threading.current_thread().name), done.set()))
    assert done.wait(5), "queued work never ran"
    assert time.monotonic() - started >= 0.04
    assert threads == ["llmobs-finisher"]


def test_flush_runs_what_is_queued_in_the_caller_in_order():
    queue = Finisher(batch=100, delay_s=60.0)
    ran: list[tuple[int, str]] = []
    for i in range(5):
        queue.submit(lambda i=i: ran.append((i, threading.current_thread().name)))
    queue.flush()
    assert ran == [(i, threading.current_thread().name) for i in range(5)]
    assert queue.queued() == 0


def test_flush_waits_for_the_batch_in_progress():
    queue = Finisher(batch=100, delay_s=0.0)  # run by the watch thread at once
    inside, release, finished = threading.Event(), threading.Event(), []

    def slow():
        inside.set()
        release.wait(5)
        finished.append("slow")

    queue.submit(slow)
    assert inside.wait(5)
    threading.Timer(0.1, release.set).start()
    queue.flush()
    assert finished == ["slow"]


def test_off_or_full_runs_in_the_caller():
    config.swap(dataclasses.replace(config.Settings(), finish_in_background=False))
    queue = Finisher(batch=100, delay_s=60.0)
    ran: list[str] = []
    queue.submit(lambda: ran.append(threading.current_thread().name))
    assert ran == [threading.current_thread().name] and queue.queued() == 0

    config.swap(config.Settings())
    full = Finisher(batch=100, delay_s=60.0, max_queued=2)
    for _ in range(3):
        full.submit(lambda: ran.append(threading.current_thread().name))
    assert full.queued() == 2 and len(ran) == 2  # the third ran at once, here
    assert selfstats.snapshot().get("finisher.queue_full") == 1
    full.flush()
    assert len(ran) == 4


def test_a_failure_is_counted_and_the_rest_runs():
    queue = Finisher(batch=100, delay_s=60.0)
    ran: list[int] = []
    queue.submit(lambda: 1 / 0)
    queue.submit(lambda: ran.append(1))
    queue.flush()
    assert ran == [1]
    assert selfstats.snapshot().get("finisher.work_failed") == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_drops_its_parents_queue():
    ran: list[int] = []
    finisher._default.flush()
    original = finisher._default.delay_s
    finisher._default.delay_s = 60.0
    try:
        finisher.submit(lambda: ran.append(1))
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: nothing of the parent's queue, and its own queue works
            try:
                left = finisher._default.queued()
                finisher.submit(lambda: ran.append(2))
                finisher.flush()
                os.write(write, f"{left} {ran}".encode())
            finally:
                os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child = os.read(read, 100).decode()
        os.close(read)
        assert status == 0
        assert child == "0 [2]"
        finisher.flush()
        assert ran == [1]
    finally:
        finisher._default.delay_s = original


class _Order(SpanProcessor):
    def __init__(self) -> None:
        self.ended: list[str] = []

    def on_end(self, span) -> None:
        self.ended.append(span.name)


@pytest.fixture
def held(monkeypatch):
    """The process's finisher holds what is queued until something finishes it."""
    finisher.flush()
    monkeypatch.setattr(finisher._default, "delay_s", 60.0)
    monkeypatch.setattr(finisher._default, "batch", 1000)
    yield finisher._default
    finisher.flush()


def _provider() -> tuple[TracerProvider, _Order, Recorder]:
    provider = TracerProvider()
    order = _Order()
    provider.add_span_processor(order)
    return provider, order, Recorder(provider, MeterProvider())  # not the global meter provider's instruments


def test_a_span_ending_on_the_provider_first_finishes_what_is_queued(held):
    provider, order, recorder = _provider()
    with provider.get_tracer("app").start_as_current_span("request"):
        call = recorder.start("chat", model="m")
        call.finish_later(lambda: call.end(end_time_ns=call.clock_ns()))
        assert held.queued() == 1 and order.ended == []
    assert order.ended == ["chat m", "request"], "the child's span ends before its parent's, as it did"


def test_a_span_of_another_trace_ends_without_finishing_the_queue(held):
    """A busy application's unrelated spans (other requests' traces) do not cut the batch short; a span of the
    queued call's own trace still finishes it first."""
    provider, order, recorder = _provider()
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("request A"):
        call = recorder.start("chat", model="m")
        call.finish_later(lambda: call.end(end_time_ns=call.clock_ns()))
        with trace.use_span(trace.INVALID_SPAN):  # a new trace, as another request's on another thread
            tracer.start_span("request B").end()
        assert held.queued() == 1 and order.ended == ["request B"]
    assert order.ended == ["request B", "chat m", "request A"] and held.queued() == 0


def test_a_parent_ending_while_another_thread_runs_its_childs_end_waits_for_it(held):
    provider, order, recorder = _provider()
    started, release = threading.Event(), threading.Event()
    with provider.get_tracer("app").start_as_current_span("request"):
        call = recorder.start("chat", model="m")

        def slow_end() -> None:
            started.set()
            release.wait(5)
            call.end()

        call.finish_later(slow_end)
        runner = threading.Thread(target=held.flush)
        runner.start()
        assert started.wait(5)
        threading.Timer(0.2, release.set).start()  # the parent's end below must wait for the batch
    runner.join(5)
    assert order.ended == ["chat m", "request"]


def test_work_that_names_no_trace_is_finished_before_any_span_ends(held):
    _, order, recorder = _provider()
    ran: list[str] = []
    held.submit(lambda: ran.append("work"))  # no trace id: it may end any span
    recorder.start("chat", model="m").end()
    assert ran == ["work"] and order.ended == ["chat m"]


def test_a_flush_of_the_provider_finishes_what_is_queued(held):
    provider, order, recorder = _provider()
    call = recorder.start("chat", model="m")
    call.finish_later(lambda: call.end())
    assert order.ended == []
    assert provider.force_flush()
    assert order.ended == ["chat m"] and held.queued() == 0


@pytest.mark.parametrize("processor", [SimpleSpanProcessor, BatchSpanProcessor])
def test_an_application_shutting_its_provider_down_loses_nothing_queued(held, processor):
    """The provider shuts its processors down in order; llmobs' joined one goes first, so the queue is finished
    while the application's (added before llmobs joined) still export."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor(exporter))
    recorder = Recorder(provider, MeterProvider())
    call = recorder.start("chat", model="m")
    call.finish_later(lambda: call.end(end_time_ns=call.clock_ns()))
    assert held.queued() == 1
    provider.shutdown()
    assert [span.name for span in exporter.get_finished_spans()] == ["chat m"] and held.queued() == 0


def test_without_a_provider_to_join_work_runs_now(held):
    recorder = Recorder(trace.NoOpTracerProvider(), MeterProvider())
    call = recorder.start("chat", model="m")
    ran: list[int] = []
    call.finish_later(lambda: ran.append(1))
    assert ran == [1] and held.queued() == 0
