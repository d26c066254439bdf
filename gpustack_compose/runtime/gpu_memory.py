"""GPU memory per container, for ``status``'s plan against reality.

On a GPU host: NVML (nvidia-ml-py), every compute process on every card with
the memory it holds, matched to containers by host PID (the engine's ``top``
of each container). In a simulator rehearsal: the simulated cards' ledger,
where each server's claim is what it holds (read inside a server's
container: the ledger lives on a volume). Elsewhere: nothing, and why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from docker.errors import DockerException

# A Python one-liner for the simulator's image: every ledger's claims.
_LEDGER_READ = ("import glob, json; print(json.dumps([json.load(open(p)).get('claims', {}) "
                "for p in sorted(glob.glob('{dir}/gpu-*.json'))]))")  # fmt: skip


@dataclass(frozen=True)
class GpuMemory:
    by_service: dict[str, int] = field(default_factory=dict)  # bytes, summed over the service's cards
    source: str = ""  # "nvml" | "simulated ledger" | ""
    unavailable: str | None = None  # why there is no figure


def from_processes(processes: Iterable[tuple[int, int]], pids_by_service: dict[str, set[int]]) -> dict[str, int]:
    """(pid, bytes) of every GPU process -> bytes per service whose
    container runs that pid."""
    out: dict[str, int] = {}
    for pid, used in processes:
        for service, pids in pids_by_service.items():
            if pid in pids:
                out[service] = out.get(service, 0) + used
    return out


def _container_pids(client: Any, container_id: str) -> set[int]:
    top = client.containers.get(container_id).top(ps_args="-eo pid")
    titles = [t.strip().upper() for t in top.get("Titles", [])]
    column = titles.index("PID") if "PID" in titles else 0
    return {int(row[column]) for row in top.get("Processes") or [] if str(row[column]).isdigit()}


def nvml(client: Any, containers: dict[str, str]) -> GpuMemory:
    try:
        import pynvml
    except ImportError:
        return GpuMemory(unavailable="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return GpuMemory(unavailable=f"no NVIDIA driver here ({exc})")
    try:
        processes = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            processes += [
                (p.pid, int(p.usedGpuMemory or 0)) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            ]
    except pynvml.NVMLError as exc:
        return GpuMemory(unavailable=f"NVML: {exc}")
    finally:
        pynvml.nvmlShutdown()
    try:
        pids = {service: _container_pids(client, cid) for service, cid in containers.items()}
    except DockerException as exc:
        return GpuMemory(unavailable=f"cannot list the containers' processes: {exc}")
    return GpuMemory(from_processes(processes, pids), "nvml")


def ledger(client: Any, container_id: str, ledger_dir: str) -> GpuMemory:
    """The simulated cards' claims, read in one simulator container."""
    try:
        code, output = client.containers.get(container_id).exec_run(
            ["python3", "-c", _LEDGER_READ.replace("{dir}", ledger_dir)], demux=False
        )
    except DockerException as exc:
        return GpuMemory(unavailable=f"cannot read the simulated ledger: {exc}")
    if code != 0:
        return GpuMemory(unavailable="no simulated ledger in this rehearsal")
    out: dict[str, int] = {}
    for claims in json.loads(output):
        for instance, claim in claims.items():
            out[instance] = out.get(instance, 0) + int(claim.get("bytes", 0))
    return GpuMemory(out, "simulated ledger")
