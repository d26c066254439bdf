"""``schema``: the stack file's JSON Schema, to stdout or a file."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.console import Output
from gpustack_compose.schema import schema_text
from gpustack_compose.writer import write


def run(*, out: Path | None, output: Output) -> int:
    if out is None:
        output.raw(schema_text())
        return 0
    for state in write(out.parent, {out.name: schema_text()}):
        output.file_status(state.status, (out.parent / state.path).as_posix())
    return 0
