"""Faults on a running rehearsal (real Docker, real Compose, real LiteLLM; the
simulator stands in for vLLM): a model crashes, the proxy restarts, a chain's
predecessor is stopped. What is asserted here is what the README documents."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from gpustack_compose.loader import load_stack
from gpustack_compose.runtime.target import existing_rehearsal
from tests.conftest import run_module, unique, write

pytestmark = pytest.mark.docker

STACK = """\
name: {name}
gpus: [{{index: 0, type: L40S}}, {{index: 1, type: L40S}}]
models:
  - {{name: a, model: Qwen/Qwen3-0.6B, gpu: 0, memory: 0.3, max_model_len: 4096}}
  - {{name: b, model: Qwen/Qwen3-0.6B, gpu: 0, memory: 0.3, max_model_len: 4096}}
  - {{name: c, model: Qwen/Qwen3-0.6B, gpu: 1, memory: 0.3, max_model_len: 4096}}
proxy:
  workers: 2
"""


def until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if condition():
                return time.monotonic() - started
        except (httpx.HTTPError, docker.errors.APIError, KeyError, IndexError, TypeError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s} s")


@pytest.mark.usefixtures("built_images")
def test_crash_proxy_restart_and_stopped_predecessor(workdir: Path) -> None:
    name = unique("fault")
    write(workdir / "s.yaml", STACK.format(name=name))
    try:
        up = run_module(["up", "--rehearsal", "s.yaml", "--load-s", "2"], workdir)
        assert up.code == 0, up.stderr
        target = existing_rehearsal(load_stack(workdir / "s.yaml"), workdir / "compose" / name)
        engine = docker.from_env()

        def containers() -> dict[str, Any]:
            found = engine.containers.list(all=True, filters={"label": f"com.docker.compose.project={target.project}"})
            return {c.labels["com.docker.compose.service"]: c for c in found}

        client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {target.master_key}"})

        def chat(model: str) -> int:
            # the proxy's host port is ephemeral in a rehearsal: a restarted
            # container may get a new one, so look it up every time
            port = containers()["litellm"].ports["4000/tcp"][0]["HostPort"]
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
            return client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body).status_code

        # 1. model c crashes (its process dies; not `docker stop`, which Docker treats as intended)
        c = containers()["c"]
        restarts = c.attrs["RestartCount"]
        os.kill(c.attrs["State"]["Pid"], signal.SIGKILL)
        statuses = [chat(m) for _ in range(15) for m in ("a", "b")]
        assert statuses == [200] * 30  # the other models never noticed
        # restart: unless-stopped brings it back; the healthcheck gates it; the proxy serves it again
        until(lambda: containers()["c"].attrs["RestartCount"] > restarts, 30, "c restarted")
        until(lambda: containers()["c"].attrs["State"]["Health"]["Status"] == "healthy", 60, "c healthy again")
        until(lambda: chat("c") == 200, 60, "c served through the proxy again")

        # 2. the proxy restarts: clients see errors only while it is down, then it serves every model
        containers()["litellm"].restart(timeout=10)
        back = until(lambda: chat("a") == 200, 120, "proxy serving after restart")
        assert [chat(m) for m in ("a", "b", "c")] == [200, 200, 200]
        assert back < 120

        # 3. a's container is stopped: b (after a on GPU 0) keeps serving. Compose's
        # depends_on orders starts (and `compose restart`); it does not watch
        # containers afterwards, so nothing stops b. `up` starts a again.
        containers()["a"].stop(timeout=10)
        assert containers()["a"].status == "exited"
        assert containers()["b"].status == "running"
        assert chat("b") == 200 and chat("c") == 200
        try:
            stopped = chat("a")
        except httpx.TimeoutException:  # LiteLLM retries the unreachable server until its timeout
            stopped = None
        assert stopped != 200
        again = run_module(["up", "--rehearsal", "s.yaml", "--load-s", "2"], workdir)
        assert again.code == 0, again.stderr
        until(lambda: chat("a") == 200, 60, "a served after up")
        client.close()
    finally:
        run_module(["down", "--rehearsal", "s.yaml"], workdir)
