"""The simulator's ``/metrics``: vLLM's names, types, labels and buckets
(gpustack_compose/vllm_metrics.py), with values that follow its load.

Counters and histograms count what the server really answered; the gauges
are read at scrape time: requests generating and queued (beyond
``--max-num-seqs``), the share of the KV cache the running requests hold
(their prompt + generated tokens over the boot's KV tokens; the elastic pool's
mapped share when kvcached is on), the sleep state. ``cache_config_info``
carries the KV cache the boot made: ``num_gpu_blocks`` x ``block_size``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from gpustack_compose import vllm_metrics as vm

# vLLM's default KV block size on CUDA (vllm/config/cache.py: 16).
BLOCK_SIZE = 16


def _labels(pairs: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in pairs.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    return repr(float(value))


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, base: dict[str, str]) -> list[str]:
        out = [f"{name}_bucket{_labels({**base, 'le': repr(b)})} {_number(c)}"
               for b, c in zip(self.buckets, self.counts, strict=True)]  # fmt: skip
        out.append(f"{name}_bucket{_labels({**base, 'le': '+Inf'})} {_number(self.count)}")
        out.append(f"{name}_count{_labels(base)} {_number(self.count)}")
        out.append(f"{name}_sum{_labels(base)} {_number(self.total)}")
        return out


@dataclass(frozen=True)
class Load:
    """What the gauges show at one scrape."""

    running: int
    waiting: int
    kv_usage: float  # 0..1
    sleep_state: str  # one of vllm_metrics.SLEEP_STATES


@dataclass
class Metrics:
    model_name: str
    gpu_memory_utilization: float
    kv_cache_memory_bytes: int | None
    kv_tokens: int  # the KV cache the boot made (0: unknown)
    lock: threading.Lock = field(default_factory=threading.Lock)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(vm.FINISHED_REASONS, 0))
    ttft: _Histogram = field(default_factory=lambda: _Histogram(vm.TTFT_BUCKETS))
    e2e: _Histogram = field(default_factory=lambda: _Histogram(vm.REQUEST_LATENCY_BUCKETS))
    queue: _Histogram = field(default_factory=lambda: _Histogram(vm.REQUEST_LATENCY_BUCKETS))

    def finish(self, *, prompt: int, generated: int, reason: str, queued_s: float, ttft_s: float,
               e2e_s: float) -> None:  # fmt: skip
        with self.lock:
            self.prompt_tokens += prompt
            self.generation_tokens += generated
            self.finished[reason] = self.finished.get(reason, 0) + 1
            self.queue.observe(queued_s)
            self.ttft.observe(ttft_s)
            self.e2e.observe(e2e_s)

    @property
    def num_gpu_blocks(self) -> int:
        return self.kv_tokens // BLOCK_SIZE

    def page(self, load: Load) -> str:
        base = {vm.ENGINE_LABEL: "0", vm.MODEL_LABEL: self.model_name}
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, lines: list[str]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)

        with self.lock:
            family(vm.RUNNING, "gauge", "Number of requests in model execution batches.",
                   [f"{vm.RUNNING}{_labels(base)} {_number(load.running)}"])  # fmt: skip
            family(vm.WAITING, "gauge", "Number of requests waiting to be processed.",
                   [f"{vm.WAITING}{_labels(base)} {_number(load.waiting)}"])  # fmt: skip
            family(vm.SLEEP_STATE, "gauge", "Engine sleep state; awake = 0 means engine is sleeping.",
                   [f"{vm.SLEEP_STATE}{_labels({**base, 'sleep_state': s})} {_number(s == load.sleep_state)}"
                    for s in vm.SLEEP_STATES])  # fmt: skip
            family(vm.KV_USAGE, "gauge", "KV-cache usage. 1 means 100 percent usage.",
                   [f"{vm.KV_USAGE}{_labels(base)} {_number(load.kv_usage)}"])  # fmt: skip
            family(f"{vm.PREEMPTIONS}_total", "counter", "Cumulative number of preemption from the engine.",
                   [f"{vm.PREEMPTIONS}_total{_labels(base)} 0.0"])  # fmt: skip
            family(f"{vm.PROMPT_TOKENS}_total", "counter", "Number of prefill tokens processed.",
                   [f"{vm.PROMPT_TOKENS}_total{_labels(base)} {_number(self.prompt_tokens)}"])  # fmt: skip
            family(f"{vm.GENERATION_TOKENS}_total", "counter", "Number of generation tokens processed.",
                   [f"{vm.GENERATION_TOKENS}_total{_labels(base)} {_number(self.generation_tokens)}"])  # fmt: skip
            success = [({vm.ENGINE_LABEL: "0", "finished_reason": reason, vm.MODEL_LABEL: self.model_name}, count)
                       for reason, count in self.finished.items()]  # fmt: skip
            family(
                f"{vm.REQUEST_SUCCESS}_total",
                "counter",
                "Count of successfully processed requests.",
                [f"{vm.REQUEST_SUCCESS}_total{_labels(labels)} {_number(count)}" for labels, count in success],
            )
            family(vm.TTFT, "histogram", "Histogram of time to first token in seconds.", self.ttft.lines(vm.TTFT, base))
            family(vm.E2E_LATENCY, "histogram", "Histogram of e2e request latency in seconds.",
                   self.e2e.lines(vm.E2E_LATENCY, base))  # fmt: skip
            family(vm.QUEUE_TIME, "histogram", "Histogram of time spent in WAITING phase for request.",
                   self.queue.lines(vm.QUEUE_TIME, base))  # fmt: skip
        config = {
            vm.BLOCK_SIZE_LABEL: str(BLOCK_SIZE),
            "cache_dtype": "auto",
            vm.ENGINE_LABEL: "0",
            "gpu_memory_utilization": repr(self.gpu_memory_utilization),
            "kv_cache_memory_bytes": str(self.kv_cache_memory_bytes),
            vm.BLOCKS_LABEL: str(self.num_gpu_blocks),
        }
        family(vm.CACHE_CONFIG, "gauge", "Information of the LLMEngine CacheConfig",
               [f"{vm.CACHE_CONFIG}{_labels(config)} 1.0"])  # fmt: skip
        return "\n".join(out) + "\n"
