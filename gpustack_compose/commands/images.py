"""``images``: build the images a rehearsal needs (cached, skipped when present)."""

from __future__ import annotations

from gpustack_compose.console import Output
from gpustack_compose.runtime import engine, images


def run(*, force: bool, vllm_cpu: bool, output: Output, kvcached: bool = False) -> int:
    built = images.ensure(engine.connect(), output.info, force=force, vllm_cpu=vllm_cpu, vllm_kvcached=kvcached)
    for tag in (built.base, built.litellm, built.vllm_sim, built.swap, built.prometheus, built.vllm_cpu,
                built.vllm_kvcached):  # fmt: skip
        if tag is not None:
            output.info(f"ready: {tag}")
    return 0
