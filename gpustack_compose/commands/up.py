"""``up``: render if needed, start the stack, follow its health-gated boot."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.lifecycle import RehearsalSettings, boot_and_wait, emit_report, open_session
from gpustack_compose.console import Output


def run(
    stack_path: Path,
    out: Path | None,
    as_json: bool,
    timeout_s: float | None,
    rehearsal: RehearsalSettings | None,
    output: Output,
) -> int:
    if as_json:
        output.json_mode()
    s = open_session(stack_path, out, output, rehearsal=rehearsal)
    try:
        boot_and_wait(s, timeout_s, output)
        s.report["ok"] = True
    finally:
        emit_report(s, output, as_json, None)
    if rehearsal is not None:
        output.info(f"rehearsal {s.target.project} is up: status/smoke/logs/down --rehearsal {stack_path.as_posix()}")
    return 0
