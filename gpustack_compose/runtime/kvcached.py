"""Elastic GPUs, after the boot: cap each server's KV cache at its kv_max.

kvcached keeps a segment per server in /dev/shm (named by KVCACHED_IPC_NAME)
with its total, used and limit; ``kvctl limit <ipc> <size>`` rewrites the
limit and the engine applies it within ~100 ms (kvcached's resize watcher).
The servers of one elastic GPU share the IPC namespace of its first server,
so kvctl run there reaches all of them. A segment exists only once its server
is up, so this runs after the boot, not from the compose file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docker.errors import DockerException

from gpustack_compose.contract import kvcached_ipc_name
from gpustack_compose.errors import BootError
from gpustack_compose.planner import Plan
from gpustack_compose.spec import StackSpec

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limit:
    model: str
    ipc: str
    mib: int  # kvctl takes sizes like 512M

    def argv(self) -> list[str]:
        return ["kvctl", "limit", self.ipc, f"{self.mib}M"]


def limits(stack: StackSpec, plan: Plan) -> dict[str, list[Limit]]:
    """kvctl commands per elastic GPU's first server (the IPC namespace owner)."""
    out: dict[str, list[Limit]] = {}
    for gpu in plan.gpus:
        if gpu.memory_mode != "elastic" or not gpu.models:
            continue
        out[gpu.models[0].service] = [
            Limit(m.name, kvcached_ipc_name(stack.name, m.service), m.kv_max_bytes // MiB) for m in gpu.models
        ]
    return out


def apply(client: Any, containers: dict[str, str], stack: StackSpec, plan: Plan) -> list[dict[str, Any]]:
    """Run the caps; ``containers`` maps service -> container id. Raises
    BootError when kvctl fails (the stack is up but not capped)."""
    applied = []
    for service, caps in limits(stack, plan).items():
        container = containers.get(service)
        if container is None:
            raise BootError(f"{service}: no running container to run kvctl in")
        for cap in caps:
            try:
                exec_id = client.api.exec_create(container, cap.argv())["Id"]
                output = client.api.exec_start(exec_id).decode("utf-8", errors="replace").strip()
                code = client.api.exec_inspect(exec_id)["ExitCode"]
            except DockerException as exc:
                raise BootError(f"{service}: cannot run {' '.join(cap.argv())}: {exc}") from None
            if code != 0:
                last = output.splitlines()[-1] if output else "no output"
                raise BootError(f"{service}: {' '.join(cap.argv())} exited {code}: {last}")
            applied.append({"model": cap.model, "ipc": cap.ipc, "limit_bytes": cap.mib * MiB, "kvctl": output})
    return applied
