"""What the coordinator asks of a vLLM server (its dev-mode endpoints, vLLM
0.26.0 ``vllm/entrypoints/serve/dev``; docs/h200-sleep-vllm-0.26.0.md E2-E4),
and how it restarts one that a failed wake left stuck."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

import httpx

from gpustack_compose.contract import COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL
from gpustack_compose.swap.config import ModelConfig


class BackendError(RuntimeError):
    """A sleep-mode call failed (HTTP error, refused connection, timeout)."""


class Backend(Protocol):
    async def sleep(self, model: ModelConfig, first: bool) -> None: ...
    async def wake(self, model: ModelConfig) -> None: ...
    async def reload_weights(self, model: ModelConfig) -> None: ...
    async def is_sleeping(self, model: ModelConfig) -> bool | None: ...  # None: not up


class Restarter(Protocol):
    async def restart(self, model: ModelConfig) -> None: ...


# A later level-1 sleep of a 14B took 0.59-0.64 s, a wake 0.67-0.73 s, level-2
# reload_weights 5.06 s: 60 s is a hung call, not a slow one. The first sleep
# of a process has its own budget (ModelConfig.sleep_timeout_s).
CALL_TIMEOUT_S = 60.0


class HttpBackend:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def _post(self, model: ModelConfig, path: str, timeout: float, **kwargs: Any) -> None:
        try:
            response = await self.client.post(f"{model.url}{path}", timeout=timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendError(f"{model.name}: POST {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise BackendError(f"{model.name}: POST {path}: HTTP {response.status_code} {response.text[:300]}")

    async def sleep(self, model: ModelConfig, first: bool) -> None:
        timeout = float(model.sleep_timeout_s) if first else CALL_TIMEOUT_S
        await self._post(model, f"/sleep?level={model.level}", timeout)

    async def wake(self, model: ModelConfig) -> None:
        await self._post(model, "/wake_up", CALL_TIMEOUT_S)

    async def reload_weights(self, model: ModelConfig) -> None:
        # Level 2 discarded the weights; without this the server answers 200
        # with wrong output (E4: an empty string).
        await self._post(model, "/collective_rpc", CALL_TIMEOUT_S, json={"method": "reload_weights"})

    async def is_sleeping(self, model: ModelConfig) -> bool | None:
        try:
            response = await self.client.get(f"{model.url}/is_sleeping", timeout=5.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return bool(response.json()["is_sleeping"])
        except (ValueError, KeyError, TypeError):
            return None


class DockerRestarter:
    """Restarts a model's container through the engine's socket (mounted
    into the coordinator). Only containers of the coordinator's own compose
    project, found by Compose's labels, and only the swappable services."""

    def __init__(self, services: set[str]) -> None:
        import docker  # the docker SDK, only where restarts are on

        self._client = docker.from_env()
        self._services = services
        own = self._client.containers.get(socket.gethostname())
        self._project = own.labels.get(COMPOSE_PROJECT_LABEL, "")
        if not self._project:
            raise BackendError("the coordinator's own container has no compose project label")

    async def restart(self, model: ModelConfig) -> None:
        if model.service not in self._services:
            raise BackendError(f"{model.service} is not a swappable service of this stack")
        await asyncio.to_thread(self._restart, model.service)

    def _restart(self, service: str) -> None:
        labels = [f"{COMPOSE_PROJECT_LABEL}={self._project}", f"{COMPOSE_SERVICE_LABEL}={service}"]
        containers = self._client.containers.list(all=True, filters={"label": labels})
        if not containers:
            raise BackendError(f"no container of {self._project}/{service} to restart")
        for container in containers:
            container.restart(timeout=10)


class NoRestarter:
    async def restart(self, model: ModelConfig) -> None:
        raise BackendError(f"{model.name} is stuck after a failed wake and restarts are off (GSC_SWAP_RESTART=none)")
