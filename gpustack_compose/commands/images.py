"""``images``: build the images a rehearsal needs (cached, skipped when present)."""

from __future__ import annotations

from gpustack_compose.console import Output
from gpustack_compose.runtime import engine, images


def run(force: bool, output: Output) -> int:
    built = images.ensure(engine.connect(), output.info, force=force)
    for tag in (built.base, built.litellm, built.vllm_sim):
        output.info(f"ready: {tag}")
    return 0
