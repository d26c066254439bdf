"""Talking to a running model server whose port is not published, and
reloading the proxy's routes in place: the I/O behind ``lora add`` /
``lora remove``."""

from __future__ import annotations

import json
from typing import Any

from docker.errors import DockerException

from gpustack_compose.contract import MODEL_PORT
from gpustack_compose.errors import EngineError
from gpustack_compose.runtime import session
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


def reload_proxy(
    view: DockerView, container_id: str, target: ComposeProject, names: list[str], gone: list[str]
) -> float | None:
    """Make the running proxy route the stack's new config without a restart.

    The proxy's PID 1 is the door, which runs LiteLLM's Gunicorn master in
    its own process. SIGHUP makes Gunicorn fork a fresh set of workers from
    the preloaded app and stop the old ones gracefully (gunicorn/arbiter.py:
    ``handle_hup``, ``reload``); each new worker reads the config file again
    in LiteLLM's startup event (litellm/proxy/proxy_server.py:
    ``proxy_startup_event``), and the rendered folder is bind-mounted, so it
    sees the file just written. The old workers finish what they are serving
    and close each connection with ``Connection: close`` (the door's drain);
    the listening socket stays open in the master, so a new connection waits
    for a new worker instead of failing (docs/facts.md, "The front door").

    Then wait until the proxy lists every name in ``names`` and none in
    ``gone``; seconds waited, None when no master key is at hand to look.
    """
    try:
        view.client.containers.get(container_id).kill(signal="SIGHUP")
    except DockerException as exc:
        raise EngineError(f"cannot signal the proxy in {container_id[:12]}: {exc}") from None
    if target.master_key is None:
        return None
    proxy = session.proxy_client(view, target.project, target.master_key)
    try:
        return proxy.wait_ready(names, timeout_s=180, gone=gone)
    finally:
        proxy.close()
