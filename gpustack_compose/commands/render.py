"""``render``: write the stack's compose files (and/or its Kubernetes base) where they changed."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import Target, load_and_plan, output_dir, write_rendered
from gpustack_compose.console import Output


def run(stack_path: Path, out: Path | None, output: Output, target: Target = "auto") -> int:
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    for state in write_rendered(loaded, out_dir, target):
        output.file_status(state.status, (out_dir / state.path).as_posix())
    return 0
