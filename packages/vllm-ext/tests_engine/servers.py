"""Start ``python -m vllm.entrypoints.openai.api_server`` on loopback, exporting to an OTLP sink."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from otlp_sink import Sink

SERVER_START_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m vllm.entrypoints.openai.api_server`` on loopback with the tiny model."""

    def __init__(self, model: Path, workdir: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(self.port),
               "--max-model-len", "256", "--enforce-eager", "--dtype", "float32", *args]
        full_env = {**os.environ, **env}
        full_env.pop("VLLM_PLUGINS", None)
        for inherited in ("VLLM_WORKER_MULTIPROC_METHOD", "LD_PRELOAD"):  # set by vLLM in this process
            full_env.pop(inherited, None)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(cmd, cwd=workdir, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM server exited ({self.process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"vLLM server not ready after {SERVER_START_TIMEOUT} s:\n{self.log_tail()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._log.close()


@contextlib.contextmanager
def running_server(model: Path, workdir: Path, sink: Sink, args: list[str] = (), env: dict | None = None
                   ) -> Iterator[Server]:
    base_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_SERVICE_NAME": "vllm-e2e",
        "LLMOBS_VLLM_FLUSH_INTERVAL": "0.2",
        "LLMOBS_AUTO_CONFIGURE": "true",
        "LLMOBS_STORE": str(workdir / "llmobs.db"),
    }
    server = Server(model, workdir, list(args), {**base_env, **(env or {})})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
