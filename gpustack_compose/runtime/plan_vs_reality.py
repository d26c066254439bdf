"""``status``'s plan against reality, per model server: the KV tokens the
plan gave it against what the running vLLM reports (``cache_config_info``:
num_gpu_blocks x block_size), its live KV usage and queue, and the GPU memory
its container holds against the plan's resident and peak (NVML on a GPU host,
the simulated ledger in a simulator rehearsal), flagged when over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

from gpustack_compose.planner import ModelPlan, Plan
from gpustack_compose.runtime import gpu_memory, server_metrics
from gpustack_compose.runtime.state import ServiceState
from gpustack_compose.units import GiB

# Where the simulator's ledger lives in its containers (rehearsal.LEDGER_DIR;
# the rehearsal module renders, and the runtime does not import the renderer).
SIM_LEDGER_DIR = "/var/lib/gpustack-sim"
# KV tokens a server may report below the plan before it is flagged: vLLM
# rounds its KV cache down to whole blocks (16 tokens a block on CUDA).
KV_TOLERANCE = 0.01


@dataclass
class ModelReality:
    model: str
    service: str
    gpu: str
    planned_kv_tokens: int
    planned_resident_bytes: int  # over all its cards
    planned_peak_bytes: int
    metrics: server_metrics.ServerMetrics | None = None
    gpu_bytes: int | None = None
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "service": self.service, "gpu": self.gpu,
            "planned_kv_tokens": self.planned_kv_tokens, "planned_resident_bytes": self.planned_resident_bytes,
            "planned_peak_bytes": self.planned_peak_bytes,
            "reported": self.metrics.as_dict() if self.metrics else None,
            "gpu_bytes": self.gpu_bytes, "flags": self.flags,
        }  # fmt: skip


@dataclass
class Comparison:
    models: list[ModelReality]
    gpu_source: str
    gpu_unavailable: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"gpu_memory_source": self.gpu_source or None, "gpu_memory_unavailable": self.gpu_unavailable,
                "models": [m.as_dict() for m in self.models]}  # fmt: skip

    def notes(self) -> list[str]:
        out = []
        if self.gpu_unavailable:
            out.append(f"GPU memory per container: {self.gpu_unavailable}")
        out += [f"{m.model}: {flag}" for m in self.models for flag in m.flags]
        return out


def flags(model: ModelPlan, metrics: server_metrics.ServerMetrics | None, used: int | None) -> list[str]:
    """What is off plan, in words (pure)."""
    found = []
    cards = len(model.gpus)
    reported = metrics.kv_tokens if metrics is not None else None
    if reported is not None and not model.elastic and reported < model.kv_tokens * (1 - KV_TOLERANCE):
        found.append(f"KV cache {reported:,} tokens, below the plan's {model.kv_tokens:,}")
    # Over the peak only: once a server has served a burst, PyTorch's caching
    # allocator keeps its activation peak, so an idle server above its
    # resident figure is what the plan expects (its peak covers it).
    if used is not None and used > model.peak_bytes * cards:
        found.append(f"GPU memory {used / GiB:.2f} GiB, over the plan's peak {model.peak_bytes * cards / GiB:.2f} GiB")
    if metrics is not None and metrics.preemptions:
        found.append(f"{metrics.preemptions:.0f} requests preempted for want of KV cache")
    return found


def compare(client: Any, plan: Plan, states: dict[str, ServiceState], rehearsal: bool) -> Comparison:
    running = {m.service: states[m.service].container_id for m in plan.boot_ordered()
               if m.service in states and states[m.service].status == "running"}  # fmt: skip
    memory = gpu_memory.GpuMemory(unavailable="no model server is running")
    if running and rehearsal:
        memory = gpu_memory.ledger(client, next(iter(running.values())), SIM_LEDGER_DIR)
    elif running:
        memory = gpu_memory.nvml(client, running)
    models = []
    for model in plan.boot_ordered():
        cards = len(model.gpus)
        metrics = server_metrics.read(client, running[model.service]) if model.service in running else None
        used = memory.by_service.get(model.service) if memory.source else None
        models.append(ModelReality(model.name, model.service, model.gpu_label, model.kv_tokens,
                                   model.resident_bytes * cards, model.peak_bytes * cards, metrics, used,
                                   flags(model, metrics, used)))  # fmt: skip
    return Comparison(models, memory.source, memory.unavailable)


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / GiB:.2f}"


def table(comparison: Comparison) -> Table:
    source = f" (GPU memory: {comparison.gpu_source})" if comparison.gpu_source else ""
    out = Table(title=f"plan vs reality{source}", title_justify="left")
    for header in ("model", "gpu", "KV tokens plan", "KV tokens reported", "KV used", "running", "waiting",
                   "GPU GiB", "resident plan", "peak plan", "flags"):  # fmt: skip
        out.add_column(header)
    for m in comparison.models:
        r = m.metrics
        reported = "-" if r is None else (r.error and "error") or (f"{r.kv_tokens:,}" if r.kv_tokens else "-")
        usage = f"{r.kv_usage:.1%}" if r is not None and r.kv_usage is not None else "-"
        running = f"{r.running:.0f}" if r is not None and r.running is not None else "-"
        waiting = f"{r.waiting:.0f}" if r is not None and r.waiting is not None else "-"
        verdict = "OVER PLAN" if m.flags else "ok"
        out.add_row(m.model, m.gpu, f"{m.planned_kv_tokens:,}", reported, usage, running, waiting,
                    _gib(m.gpu_bytes), _gib(m.planned_resident_bytes), _gib(m.planned_peak_bytes), verdict)  # fmt: skip
    return out
