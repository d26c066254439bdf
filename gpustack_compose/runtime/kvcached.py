"""Elastic GPUs, after the boot: cap each server's KV cache at its kv_max.

kvcached keeps a segment per server in /dev/shm (named by KVCACHED_IPC_NAME)
with its total, used and limit; ``kvctl limit <ipc> <size>`` rewrites the
limit and the engine applies it within ~100 ms (kvcached's resize watcher).
The servers of one elastic GPU share the IPC namespace of its first server,
so kvctl run there reaches all of them. A segment exists only once its server
is up, so this runs after the boot, not from the compose file.

A cap only ever lowers a limit. A server's segment starts at its own KV space
(what its block pool holds), and kvctl accepts a larger limit without a
word: on the H200 a 14B whose limit `up` had raised 282 MiB above its own KV
space died under a burst with kvcached's ``IndexError`` in
``ElasticBlockPool.get_new_blocks`` (docs/h200-elastic-contention-2026-12-02.md).
kvctl also exits 0 for an IPC name it does not know, so every cap is checked
against ``kvctl list --json`` afterwards.
"""

from __future__ import annotations

import json
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


# what `up` reports for a cap at or above the server's own KV space: kvctl is not run
KEPT = "kept: kv_max is not below its own KV space"


def _kvctl(client: Any, container: str, service: str, argv: list[str]) -> str:
    try:
        exec_id = client.api.exec_create(container, argv)["Id"]
        output = client.api.exec_start(exec_id).decode("utf-8", errors="replace").strip()
        code = client.api.exec_inspect(exec_id)["ExitCode"]
    except DockerException as exc:
        raise BootError(f"{service}: cannot run {' '.join(argv)}: {exc}") from None
    if code != 0:
        last = output.splitlines()[-1] if output else "no output"
        raise BootError(f"{service}: {' '.join(argv)} exited {code}: {last}")
    return str(output)


def _segment_limits(client: Any, container: str, service: str) -> dict[str, int]:
    """kvcached's segments as ``kvctl list --json`` shows them: IPC -> limit bytes."""
    argv = ["kvctl", "list", "--json"]
    output = _kvctl(client, container, service, argv)
    try:
        segments = json.loads(output[output.find("[") :])
        return {str(s["ipc"]): int(s["limit_bytes"]) for s in segments}
    except (ValueError, KeyError, TypeError):
        raise BootError(f"{service}: {' '.join(argv)} printed no segment list: {output[-200:]}") from None


def apply(client: Any, containers: dict[str, str], stack: StackSpec, plan: Plan) -> list[dict[str, Any]]:
    """Run the caps; ``containers`` maps service -> container id. Raises
    BootError when kvctl fails or a limit is not what was asked (the stack is
    up but not capped)."""
    applied = []
    for service, caps in limits(stack, plan).items():
        container = containers.get(service)
        if container is None:
            raise BootError(f"{service}: no running container to run kvctl in")
        own = _segment_limits(client, container, service)
        wanted: dict[str, int] = {}
        for cap in caps:
            if cap.ipc not in own:
                raise BootError(f"{service}: no kvcached segment {cap.ipc} (kvctl list shows {sorted(own)})")
            entry = {"model": cap.model, "ipc": cap.ipc, "own_kv_bytes": own[cap.ipc]}
            if cap.mib * MiB >= own[cap.ipc]:
                applied.append(entry | {"limit_bytes": own[cap.ipc], "kvctl": KEPT})
                continue
            output = _kvctl(client, container, service, cap.argv())
            wanted[cap.ipc] = cap.mib * MiB
            applied.append(entry | {"limit_bytes": cap.mib * MiB, "kvctl": output})
        now = _segment_limits(client, container, service) if wanted else {}
        for ipc, limit in wanted.items():
            if now.get(ipc) != limit:
                raise BootError(f"{service}: kvctl limit {ipc}: the limit is {now.get(ipc)} bytes, not {limit}")
    return applied
