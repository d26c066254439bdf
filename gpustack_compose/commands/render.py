"""``render``: write the stack's compose files (and/or its Kubernetes base) where they changed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from gpustack_compose.commands.common import RenderTarget, output_dir, warn_risky, write_rendered
from gpustack_compose.console import Output
from gpustack_compose.contract import K8S_DIR
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.writer import FileState, Status

# How each status reads in the summary line, in the order they are listed.
_SUMMARY_WORDS: dict[Status, str] = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "identical": "unchanged",
}


def summary(out_dir: Path, states: list[FileState]) -> str:
    """``compose/idp: 16 files (11 under k8s/): 2 updated, 14 unchanged``:
    one line, so a render that changed nothing still says what is there."""
    kept = [s for s in states if s.status != "delete"]
    under_k8s = sum(1 for s in kept if s.path.startswith(K8S_DIR + "/"))
    where = f" ({under_k8s} under {K8S_DIR}/)" if under_k8s else ""
    counts = Counter(s.status for s in states)
    changes = ", ".join(f"{counts[status]} {word}" for status, word in _SUMMARY_WORDS.items() if counts[status])
    return f"{out_dir.as_posix()}: {len(kept)} files{where}: {changes}"


def run(*, stack_path: Path, out: Path | None, output: Output, target: RenderTarget = "auto") -> int:
    loaded = load_and_plan(stack_path)
    warn_risky(loaded, output)
    out_dir = output_dir(loaded, out)
    states = write_rendered(loaded, out_dir, target)
    for state in states:
        if state.status != "identical":
            output.file_status(state.status, (out_dir / state.path).as_posix())
    output.info(summary(out_dir, states))
    return 0
