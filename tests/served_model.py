"""A real OpenAI-compatible server for tests: `transformers serve` on 127.0.0.1 serving the
embedded model (SmolLM2-135M-Instruct), started once per test session and always stopped."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from pytest_llmeval.backends.weights import EMBEDDED_HUB_ID, locate_weights

STARTUP_LIMIT_S = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def embedded_model_dir() -> str:
    return locate_weights(EMBEDDED_HUB_ID, None).path


@contextmanager
def running_server(
    name: str,
    command: list[str],
    ready_url: str,
    log_path: Path,
    env: dict[str, str],
    cwd: Path | None = None,
) -> Iterator[None]:
    """Start `command` (its output to `log_path`), wait (bounded) until `ready_url` answers,
    and stop it on exit, killing it if it does not stop in time; `name` is for errors."""
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"{name} exited: {log_path.read_text()[-2000:]}")
            try:
                if requests.get(ready_url, timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not up after {STARTUP_LIMIT_S}s")
            time.sleep(0.5)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@contextmanager
def served_embedded_model(log_path: Path) -> Iterator[str]:
    """Start the server, wait (bounded) until it answers, yield its base URL, stop it."""
    executable = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if executable is None:
        raise RuntimeError("`transformers` CLI not found: pip install 'transformers[serving]'")
    port = free_port()
    model_dir = embedded_model_dir()
    command = [executable, "serve", model_dir, "--device", "cpu", "--dtype", "float32",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base = f"http://127.0.0.1:{port}"
    with running_server("transformers serve", command, f"{base}/health", log_path, env):
        yield f"{base}/v1"
