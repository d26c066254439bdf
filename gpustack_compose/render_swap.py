"""What a stack with swappable models adds to the render: the coordinator's
configuration (``swap/config.json``), its compose service, and one first-sleep
step per swappable server. Pure, like the rest of the render."""

from __future__ import annotations

import json
from typing import Any

from gpustack_compose.contract import (
    MODEL_PORT,
    SWAP_PORT,
    SWAP_SERVICE,
    first_sleep_service,
    swap_route,
)
from gpustack_compose.planner import ModelPlan, Plan
from gpustack_compose.spec import StackSpec


def has_swap(plan: Plan) -> bool:
    return bool(plan.swappables)


def model_url(plan: ModelPlan) -> str:
    return f"http://{plan.service}:{MODEL_PORT}"


def proxy_api_base(plan: ModelPlan) -> str:
    """Where the proxy sends a model's requests: its server, or -- swappable --
    the coordinator, which wakes it first."""
    if plan.swappable:
        return f"http://{SWAP_SERVICE}:{SWAP_PORT}{swap_route(plan.service)}/v1"
    return f"{model_url(plan)}/v1"


def swap_gpus(plan: Plan) -> list[int]:
    """The cards the coordinator reads, ascending: inside its container NVML
    numbers the visible cards 0.. in the host's (PCI bus) order."""
    return sorted({m.gpu for m in plan.swappables})


def swap_config(stack: StackSpec, plan: Plan) -> str:
    """``swap/config.json``: every figure the coordinator decides with."""
    gpus = swap_gpus(plan)
    data: dict[str, Any] = {
        "stack": stack.name,
        "request_timeout_s": stack.swap.request_timeout_s,
        "memory_source": "nvml",
        "restart": "docker",
        "gpus": [
            {
                "index": index,
                "nvml_index": position,
                "awake_max": plan.gpu(index).awake_max,
                "total_bytes": plan.gpu(index).total_bytes,
                "reserve_bytes": plan.gpu(index).reserve_bytes,
            }
            for position, index in enumerate(gpus)
        ],
        "models": [
            {
                "name": m.name,
                "service": m.service,
                "url": model_url(m),
                "gpu": m.gpu,
                "level": m.sleep_level,
                "idle_s": m.idle_s,
                "wake_bytes": m.wake_bytes,
                "boot_timeout_s": m.boot_timeout_s,
                "sleep_timeout_s": m.first_sleep_timeout_s,
            }
            for m in plan.swappables
        ],
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def first_sleep_steps(plan: Plan) -> list[dict[str, Any]]:
    """One-shot services: a swappable server's first sleep (slow: it pins the
    host buffers, 43 s for a 14B) before the next server on its GPU starts."""
    return [
        {
            "service": first_sleep_service(m.service),
            "model_service": m.service,
            "command": [
                "first-sleep",
                "--url",
                model_url(m),
                "--level",
                str(m.sleep_level),
                "--timeout",
                str(m.first_sleep_timeout_s),
            ],
        }
        for m in plan.boot_ordered()
        if m.swappable
    ]


def dependencies(plan: Plan, model: ModelPlan) -> list[dict[str, str]]:
    """What a model service waits for: its predecessor healthy, or -- when the
    predecessor is swappable -- asleep after its first sleep."""
    out = []
    for service in model.after:
        before = plan.by_service(service)
        if before.swappable:
            out.append({"service": first_sleep_service(service), "condition": "service_completed_successfully"})
        else:
            out.append({"service": service, "condition": "service_healthy"})
    return out
