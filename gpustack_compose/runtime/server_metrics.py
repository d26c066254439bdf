"""What a running vLLM server reports about itself on ``/metrics``: its real
KV cache (``cache_config_info``: num_gpu_blocks x block_size tokens), KV
usage, requests running and waiting, preemptions.

Read through the engine (``docker exec`` of curl, which the vLLM image and the
simulator both carry, as their healthchecks do): model servers publish no
port. The names are vllm_metrics.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docker.errors import DockerException
from prometheus_client.parser import text_string_to_metric_families

from gpustack_compose import vllm_metrics as vm
from gpustack_compose.contract import MODEL_PORT

READ_TIMEOUT_S = 5


@dataclass(frozen=True)
class ServerMetrics:
    kv_tokens: int | None = None
    kv_usage: float | None = None
    running: float | None = None
    waiting: float | None = None
    preemptions: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kv_tokens": self.kv_tokens, "kv_usage": self.kv_usage, "running": self.running,
                "waiting": self.waiting, "preemptions": self.preemptions, "error": self.error}  # fmt: skip


def parse(text: str) -> ServerMetrics:
    """The figures of one server's page (every series of a single engine)."""
    values: dict[str, float] = {}
    kv_tokens: int | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == vm.CACHE_CONFIG:
                    blocks, size = sample.labels.get(vm.BLOCKS_LABEL), sample.labels.get(vm.BLOCK_SIZE_LABEL)
                    if blocks and size and blocks.isdigit() and size.isdigit():
                        kv_tokens = int(blocks) * int(size)
                elif sample.name in (vm.KV_USAGE, vm.RUNNING, vm.WAITING, f"{vm.PREEMPTIONS}_total"):
                    values[sample.name] = values.get(sample.name, 0.0) + sample.value
    except ValueError as exc:
        return ServerMetrics(error=f"unreadable /metrics: {exc}")
    return ServerMetrics(
        kv_tokens=kv_tokens,
        kv_usage=values.get(vm.KV_USAGE),
        running=values.get(vm.RUNNING),
        waiting=values.get(vm.WAITING),
        preemptions=values.get(f"{vm.PREEMPTIONS}_total"),
    )


def read(client: Any, container_id: str) -> ServerMetrics:
    url = f"http://127.0.0.1:{MODEL_PORT}/metrics"
    try:
        code, output = client.containers.get(container_id).exec_run(
            ["curl", "-fsS", "--max-time", str(READ_TIMEOUT_S), url], demux=False
        )
    except DockerException as exc:
        return ServerMetrics(error=f"cannot ask the container: {exc}")
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
    if code != 0:
        return ServerMetrics(error=f"{url} failed: {text.strip()[-200:] or f'exit {code}'}")
    return parse(text)
