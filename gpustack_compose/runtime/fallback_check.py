"""The rehearsal's fallback check: one model that declares ``fallbacks`` is
stopped, a request to it must be answered by one of them, and the model is
started again. What a client sees when a backend dies, on real Docker, real
Compose DNS and the real LiteLLM router.

Between the stop and the request the check waits out the proxy's DNS cache
(``contract.PROXY_DNS_CACHE_S``): within it, LiteLLM still connects to the
stopped container's old address, and a connection to an address nobody
holds waits for TCP's SYN retries before it fails (measured: 76 s on this
project's CI host; docs/facts.md, "The front door"). The model's own
``timeout_s`` bounds that window; the check proves the fallback itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from docker.errors import DockerException

from gpustack_compose.contract import PROXY_DNS_CACHE_S
from gpustack_compose.errors import EngineError
from gpustack_compose.planner import Plan
from gpustack_compose.runtime.proxy import ProxyClient, SmokeResult
from gpustack_compose.runtime.state import DockerView
from gpustack_compose.spec import StackSpec

STOP_TIMEOUT_S = 10
HEALTHY_AGAIN_S = 180.0
POLL_S = 0.5


@dataclass(frozen=True)
class FallbackCheck:
    model: str
    fallbacks: tuple[str, ...]
    result: SmokeResult
    back_healthy_s: float | None  # the stopped model, started again and healthy after this long

    @property
    def problems(self) -> list[str]:
        problems: list[str] = []
        if not self.result.ok:
            problems.append(
                f"with {self.model} stopped, a request to it failed "
                f"({self.result.status}: {self.result.detail}) instead of reaching {', '.join(self.fallbacks)}"
            )
        elif self.result.answered_by not in self.fallbacks:
            problems.append(
                f"with {self.model} stopped, a request to it was answered by {self.result.answered_by!r}, "
                f"not by one of its fallbacks ({', '.join(self.fallbacks)})"
            )
        if self.back_healthy_s is None:
            problems.append(f"{self.model} did not become healthy again within {HEALTHY_AGAIN_S:.0f} s")
        return problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "fallbacks": list(self.fallbacks),
            "answered_by": self.result.answered_by,
            "ok": not self.problems,
            "request": self.result.as_dict(),
            "back_healthy_s": None if self.back_healthy_s is None else round(self.back_healthy_s, 1),
        }


def candidate(stack: StackSpec, plan: Plan) -> str | None:
    """The first model with fallbacks that the proxy reaches directly (a
    swappable model is reached through the swap coordinator, which has its
    own check)."""
    return next(
        (m.name for m in stack.models if m.fallbacks and not plan.model(m.name).swappable),
        None,
    )


def _container(view: DockerView, project: str, service: str) -> Any:
    state = view.services(project).get(service)
    if state is None:
        raise EngineError(f"{project} has no container for {service}")
    return view.client.containers.get(state.container_id)


def _healthy_within(view: DockerView, project: str, service: str, timeout_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        state = view.services(project).get(service)
        if state is not None and state.status == "running" and state.health in ("healthy", None):
            return time.monotonic() - started
        time.sleep(POLL_S)
    return None


def check(
    view: DockerView, project: str, proxy: ProxyClient, stack: StackSpec, plan: Plan, model: str
) -> FallbackCheck:
    spec = next(m for m in stack.models if m.name == model)
    service = plan.model(model).service
    try:
        container = _container(view, project, service)
        container.stop(timeout=STOP_TIMEOUT_S)
        try:
            time.sleep(PROXY_DNS_CACHE_S + 1)  # the proxy no longer holds its address (module docstring)
            result = proxy.chat(model)
        finally:
            container.start()
    except DockerException as exc:
        raise EngineError(f"the fallback check could not stop or start {service}: {exc}") from None
    back = _healthy_within(view, project, service, HEALTHY_AGAIN_S)
    return FallbackCheck(model, tuple(spec.fallbacks), result, back)
