"""Steps shared by commands: load and plan a stack, name its output folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gpustack_compose.loader import load_stack
from gpustack_compose.planner import Plan, plan_stack
from gpustack_compose.render import render
from gpustack_compose.spec import StackSpec


@dataclass(frozen=True)
class Loaded:
    stack_path: Path
    stack: StackSpec
    plan: Plan


def load_and_plan(stack_path: Path) -> Loaded:
    """Raises SpecError / PlanError (exit 1) before anything is written."""
    stack = load_stack(stack_path)
    return Loaded(stack_path, stack, plan_stack(stack))


def output_dir(loaded: Loaded, out: Path | None) -> Path:
    """``compose/<name>/`` under the working directory unless ``-o`` says otherwise."""
    return out if out is not None else Path("compose") / loaded.stack.name


def source_label(stack_path: Path, out_dir: Path) -> str:
    """The stack file relative to the output folder, so the header is the same
    from any working directory and holds no absolute path."""
    relative = os.path.relpath(stack_path.resolve(), out_dir.resolve())
    return Path(relative).as_posix()


def rendered_files(loaded: Loaded, out_dir: Path) -> dict[str, str]:
    return render(loaded.stack, loaded.plan, source_label(loaded.stack_path, out_dir))
