"""``up``: render if needed, start the stack, follow its health-gated boot."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import output_dir, rendering
from gpustack_compose.console import Output
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.runtime.lifecycle import boot_and_wait, emit_report, open_run
from gpustack_compose.stand_in import Rehearsal


def run(
    *,
    stack_path: Path,
    out: Path | None,
    as_json: bool,
    timeout_s: float | None,
    rehearsal: Rehearsal | None,
    output: Output,
) -> int:
    if as_json:
        output.json_mode()
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    started = open_run(loaded, out_dir, rendering(loaded, out_dir), output, rehearsal=rehearsal)
    try:
        boot_and_wait(started, timeout_s, output)
        started.report.ok = True
    finally:
        emit_report(started, output, as_json=as_json, path=None)
    if rehearsal is not None:
        project = started.target.project
        output.info(f"rehearsal {project} is up: status/smoke/logs/down --rehearsal {stack_path.as_posix()}")
    return 0
