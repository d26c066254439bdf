"""``render``: write the stack's compose files where they changed."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import load_and_plan, output_dir, rendered_files
from gpustack_compose.console import Output
from gpustack_compose.writer import write


def run(stack_path: Path, out: Path | None, output: Output) -> int:
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    states = write(out_dir, rendered_files(loaded, out_dir))
    for state in states:
        output.file_status(state.status, (out_dir / state.path).as_posix())
    return 0
