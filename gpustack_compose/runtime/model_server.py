"""Talking to a running model server whose port is not published, and
restarting the proxy alone: the I/O behind ``lora add`` / ``lora remove``."""

from __future__ import annotations

import json
from typing import Any

from docker.errors import DockerException

from gpustack_compose.contract import MODEL_PORT, PROXY_SERVICE
from gpustack_compose.errors import EngineError
from gpustack_compose.runtime import compose, session
from gpustack_compose.runtime.state import DockerView
from gpustack_compose.runtime.target import ComposeProject


def post(client: Any, container_id: str, endpoint: str, body: dict[str, str]) -> tuple[int, str]:
    """POST to the model server from inside its container (its port is not
    published): curl is in the vLLM image and the simulator's. The HTTP
    status and the reply's text."""
    command = ["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json", "--data", json.dumps(body),
               "-w", "\n%{http_code}", f"http://127.0.0.1:{MODEL_PORT}{endpoint}"]  # fmt: skip
    try:
        result = client.containers.get(container_id).exec_run(command)
    except DockerException as exc:
        raise EngineError(f"cannot reach the model server in {container_id[:12]}: {exc}") from None
    text = result.output.decode("utf-8", errors="replace")
    reply, _, code = text.rpartition("\n")
    try:
        return int(code), reply
    except ValueError:
        return 0, text


def restart_proxy(target: ComposeProject, view: DockerView, names: list[str]) -> float | None:
    """The proxy reads its config at start: restart it alone (the models keep
    serving), then wait until it routes every name again. Seconds waited;
    None when no master key is at hand to check the routes."""
    result = compose.run(
        ["--project-directory", str(target.project_dir), "restart", PROXY_SERVICE],
        project=target.project,
        files=target.files,
        env=target.env,
        timeout=300,
    )
    if result.code != 0:
        raise EngineError(f"restarting the proxy failed: {result.stderr.strip()[-300:]}")
    if target.master_key is None:
        return None
    proxy = session.proxy_client(view, target.project, target.master_key)
    try:
        return proxy.wait_ready(names, timeout_s=180)
    finally:
        proxy.close()
