"""``check``: exit 3 with a diff when the committed output is stale."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import load_and_plan, output_dir, rendered_files
from gpustack_compose.console import Output
from gpustack_compose.errors import DriftError
from gpustack_compose.writer import compare, unified_diff


def run(stack_path: Path, out: Path | None, output: Output) -> int:
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    states = compare(out_dir, rendered_files(loaded, out_dir))
    stale = [s for s in states if s.status != "identical"]
    if not stale:
        output.info(f"{out_dir.as_posix()} is up to date with {stack_path.as_posix()}")
        return 0
    output.raw(unified_diff(out_dir, stale))
    names = ", ".join(s.path for s in stale)
    raise DriftError(
        f"{out_dir.as_posix()} is stale ({names}); run: gpustack-compose render {stack_path.as_posix()}"
        + (f" -o {out.as_posix()}" if out is not None else "")
    )
