"""``render``: write the stack's compose files (and/or its Kubernetes base) where they changed."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import Target, load_and_plan, output_dir, owned_dirs, rendered_files
from gpustack_compose.console import Output
from gpustack_compose.writer import write


def run(stack_path: Path, out: Path | None, output: Output, target: Target = "auto") -> int:
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    files = rendered_files(loaded, out_dir, target)
    states = write(out_dir, files, owned_dirs(files))
    for state in states:
        output.file_status(state.status, (out_dir / state.path).as_posix())
    return 0
