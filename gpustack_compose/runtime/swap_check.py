"""A running stack's swap coordinator, seen from the host: its state (for
``status``) and the rehearsal's swap check -- requests to every swappable
model in turn, then proof from the coordinator's own record that every
request was answered, no wake failed and every awake set was one the plan
allows."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from docker.errors import DockerException

from gpustack_compose.contract import COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, SWAP_PORT, SWAP_SERVICE
from gpustack_compose.errors import EngineError
from gpustack_compose.planner import Plan
from gpustack_compose.runtime.proxy import ProxyClient, SmokeResult

# Concurrent requests to one sleeping model: they must cause one wake.
CONCURRENT = 3
ROUNDS = 2


def coordinator_state(client: Any, project: str, *, history: bool = False) -> dict[str, Any]:
    """``/state`` of the coordinator, read inside its container (it publishes
    no port: it is the stack's own service)."""
    labels = [f"{COMPOSE_PROJECT_LABEL}={project}", f"{COMPOSE_SERVICE_LABEL}={SWAP_SERVICE}"]
    url = f"http://127.0.0.1:{SWAP_PORT}/state" + ("?history=1" if history else "")
    script = (
        f"import sys, urllib.request; sys.stdout.write(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    )
    try:
        containers = client.containers.list(filters={"label": labels})
        if not containers:
            raise EngineError(f"the swap coordinator of {project} is not running")
        result = containers[0].exec_run(["python3", "-c", script])
    except DockerException as exc:
        raise EngineError(f"cannot ask the swap coordinator of {project}: {exc}") from None
    if result.exit_code != 0:
        raise EngineError(f"the swap coordinator of {project} did not answer: {result.output.decode()[-300:]}")
    state: dict[str, Any] = json.loads(result.output)
    return state


@dataclass
class SwapCheck:
    results: list[SmokeResult] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        models = self.state.get("models", {})
        return {
            "requests": len(self.results),
            "failed": [r.as_dict() for r in self.results if not r.ok],
            "models": {
                name: {k: m.get(k) for k in ("phase", "wakes", "sleeps", "failed_wakes", "restarts", "last_wake_s")}
                for name, m in models.items()
            },
            "awake_sets_seen": sorted(
                {(e["gpu"], tuple(e["awake"])) for e in self.state.get("history", [])}, key=lambda item: item
            ),
            "problems": self.problems,
            "ok": not self.problems,
        }


def drive(proxy: ProxyClient, plan: Plan, rounds: int = ROUNDS) -> list[SmokeResult]:
    """Every swappable model in turn, CONCURRENT requests at once (one wake
    for all of them), each round; the residents once per round beside them."""
    results: list[SmokeResult] = []
    residents = [m.name for m in plan.models if not m.swappable]
    with ThreadPoolExecutor(max_workers=CONCURRENT + len(residents)) as pool:
        for _ in range(rounds):
            for model in plan.swappables:
                names = [model.name] * CONCURRENT + residents
                results += list(pool.map(proxy.chat, names))
    return results


def allowed_sets(plan: Plan) -> dict[int, set[frozenset[str]]]:
    """Per GPU, every set of swappable models the policy lets be awake at once."""
    out: dict[int, set[frozenset[str]]] = {}
    for gpu in plan.gpus:
        names = [m.name for m in gpu.swappables]
        out[gpu.index] = {
            frozenset(combo) for size in range(min(gpu.awake_max, len(names)) + 1)
            for combo in itertools.combinations(names, size)
        }  # fmt: skip
    return out


def verify(plan: Plan, results: Sequence[SmokeResult], state: dict[str, Any]) -> list[str]:
    problems = [f"{r.model}: HTTP {r.status}: {r.detail}" for r in results if not r.ok]
    allowed = allowed_sets(plan)
    for entry in state.get("history", []):
        awake = frozenset(entry.get("awake", []))
        if awake not in allowed.get(int(entry["gpu"]), set()):
            problems.append(
                f"GPU {entry['gpu']}: {', '.join(sorted(awake))} were awake at once, a set the plan does not allow "
                f"(awake_max {plan.gpu(int(entry['gpu'])).awake_max})"
            )
    for name, model in state.get("models", {}).items():
        if model.get("failed_wakes"):
            problems.append(f"{name}: {model['failed_wakes']} wake(s) failed: {model.get('last_error')}")
        if model.get("restarts"):
            problems.append(f"{name}: restarted {model['restarts']} time(s) by the coordinator")
        if not model.get("wakes"):
            problems.append(f"{name}: never woke although requests were sent to it")
    return problems


def check(client: Any, project: str, proxy: ProxyClient, plan: Plan) -> SwapCheck:
    outcome = SwapCheck(results=drive(proxy, plan))
    outcome.state = coordinator_state(client, project, history=True)
    outcome.problems = verify(plan, outcome.results, outcome.state)
    return outcome
