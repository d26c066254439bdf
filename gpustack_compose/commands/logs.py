"""``logs``: the logs of the whole stack or of one model."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import output_dir
from gpustack_compose.console import Output
from gpustack_compose.contract import MASTER_KEY_ENV, PROXY_SERVICE
from gpustack_compose.errors import ArgumentError
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.runtime import compose, engine
from gpustack_compose.runtime.target import existing_rehearsal, production


def run(
    *,
    stack_path: Path,
    out: Path | None,
    model: str | None,
    follow: bool,
    tail: int | None,
    rehearsal: bool,
    _output: Output,
) -> int:
    loaded = load_and_plan(stack_path)
    services: list[str] = []
    if model is not None:
        by_name = {m.name: m.service for m in loaded.plan.models}
        by_name.update({m.service: m.service for m in loaded.plan.models})
        by_name[PROXY_SERVICE] = PROXY_SERVICE
        if model not in by_name:
            known = ", ".join([*(m.name for m in loaded.plan.models), PROXY_SERVICE])
            raise ArgumentError(f"{model!r} is not a model of {loaded.stack.name} (models: {known})")
        services = [by_name[model]]
    engine.connect()
    out_dir = output_dir(loaded, out)
    target = existing_rehearsal(loaded.stack, out_dir) if rehearsal else production(loaded.stack, out_dir)
    files = [f for f in target.files if f.exists()] if all(f.exists() for f in target.files) else []
    args = ["logs", "--timestamps"] + (["--follow"] if follow else []) + (["--tail", str(tail)] if tail else [])
    if files:
        args = ["--project-directory", str(out_dir), *args]
    # Interpolation needs a key value; `logs` never starts anything with it.
    env = {**target.env, MASTER_KEY_ENV: target.master_key or "unused-by-logs"}
    return compose.stream([*args, *services], project=target.project, files=files, env=env)
