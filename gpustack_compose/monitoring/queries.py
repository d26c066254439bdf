"""The dashboard's panels and their PromQL, in one place: the dashboard is
built from them, and the rehearsal runs every query against a real
Prometheus and checks it answers for every model (``runtime/monitoring_check``).

Each query says what its series are keyed by (``by``): a model (vLLM's
``model_name``, the served name), a name at the proxy (LiteLLM's
``requested_model``) or a card (``gpu``); the check wants one series per
model or card of the plan. Windows are fixed (``[1m]``) rather than Grafana's
``$__rate_interval`` so the same text runs in Prometheus as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gpustack_compose import vllm_metrics as vm

# The plan, as Prometheus recording rules (monitoring/plan.rules.yml): one
# constant series per model (and card), so a panel can draw reality against it.
PLAN_KV_TOKENS = "gsc:plan_kv_tokens"
PLAN_RESIDENT_BYTES = "gsc:plan_resident_bytes"
PLAN_PEAK_BYTES = "gsc:plan_peak_bytes"
PLAN_GPU_TOTAL_BYTES = "gsc:plan_gpu_total_bytes"
GPU_LABEL = "gpu"

Key = Literal["model", "route", "gpu"]
KEY_LABEL: dict[Key, str] = {"model": vm.MODEL_LABEL, "route": vm.PROXY_MODEL_LABEL, "gpu": GPU_LABEL}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    by: Key = "model"
    # The DCGM exporter's series: none in a rehearsal (no GPU), and none when
    # monitoring.gpu_exporter is off.
    needs_gpu: bool = False
    # A series appears only once something happened (a failed request).
    on_event: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    description: str
    queries: tuple[Query, ...]
    stacked: bool = False  # parts of a whole (the plan's shares)


def _per_model(expr: str) -> str:
    return f"sum by ({vm.MODEL_LABEL}) ({expr})"


def _rate(counter: str) -> str:
    return f"rate({counter}_total[1m])"


_MODEL = "{{" + vm.MODEL_LABEL + "}}"
_ROUTE = "{{" + vm.PROXY_MODEL_LABEL + "}}"
_GPU = "GPU {{" + GPU_LABEL + "}}"

PANELS: tuple[Panel, ...] = (
    Panel("KV cache usage", "percentunit", "Share of each server's KV cache the running requests hold.",
          (Query(f"max by ({vm.MODEL_LABEL}) ({vm.KV_USAGE})", _MODEL),)),
    Panel("Requests running and waiting", "short", "Requests in the engine's batch, and queued behind it.",
          (Query(_per_model(vm.RUNNING), f"{_MODEL} running"),
           Query(_per_model(vm.WAITING), f"{_MODEL} waiting"))),
    Panel("Time to first token (p95)", "s", "95th percentile over the last minute.",
          (Query(f"histogram_quantile(0.95, sum by (le, {vm.MODEL_LABEL}) (rate({vm.TTFT}_bucket[1m])))", _MODEL),)),
    Panel("Tokens per second", "short", "Generated and prompt tokens per second, per server.",
          (Query(_per_model(_rate(vm.GENERATION_TOKENS)), f"{_MODEL} generated"),
           Query(_per_model(_rate(vm.PROMPT_TOKENS)), f"{_MODEL} prompt"))),
    Panel("Preemptions (5 min)", "short", "Requests the engine preempted for want of KV cache.",
          (Query(_per_model(f"increase({vm.PREEMPTIONS}_total[5m])"), _MODEL),)),
    Panel("KV cache tokens, planned", "short", "The plan's KV tokens per server (PLAN.md); `status` sets them "
          "against what each server reports (num_gpu_blocks x block_size).",
          (Query(f"max by ({vm.MODEL_LABEL}) ({PLAN_KV_TOKENS})", _MODEL),)),
    Panel("GPU memory per card: used against the plan", "bytes", "What the card holds (DCGM exporter) against "
          "the plan's resident and peak sums of its servers; per process: `gpustack-compose status`.",
          (Query(f"max by ({GPU_LABEL}) ({vm.DCGM_FB_USED}) * 1048576", f"{_GPU} used", by="gpu", needs_gpu=True),
           Query(f"sum by ({GPU_LABEL}) ({PLAN_RESIDENT_BYTES})", f"{_GPU} planned resident", by="gpu"),
           Query(f"sum by ({GPU_LABEL}) ({PLAN_PEAK_BYTES})", f"{_GPU} planned peak", by="gpu"),
           Query(f"max by ({GPU_LABEL}) ({PLAN_GPU_TOTAL_BYTES})", f"{_GPU} total", by="gpu"))),
    Panel("Planned share per model", "bytes", "What the plan lets each server hold once up (resident).",
          (Query(f"max by ({vm.MODEL_LABEL}) ({PLAN_RESIDENT_BYTES})", _MODEL),), stacked=True),
    Panel("Proxy requests per second", "reqps", "Requests through LiteLLM by the name the client asked for, and "
          "those that failed.",
          (Query(f"sum by ({vm.PROXY_MODEL_LABEL}) ({_rate(vm.PROXY_REQUESTS)})", _ROUTE, by="route"),
           Query(f"sum by ({vm.PROXY_MODEL_LABEL}) ({_rate(vm.PROXY_FAILED)})", f"{_ROUTE} failed", by="route",
                 on_event=True))),
)  # fmt: skip


def all_queries() -> list[tuple[Panel, Query]]:
    return [(panel, query) for panel in PANELS for query in panel.queries]
