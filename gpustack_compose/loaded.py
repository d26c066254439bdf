"""A stack file, read, validated and planned: what every command starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpustack_compose.loader import load_stack
from gpustack_compose.planner import Plan, plan_stack
from gpustack_compose.spec import StackSpec


@dataclass(frozen=True)
class Loaded:
    stack_path: Path
    stack: StackSpec
    plan: Plan


def load_and_plan(stack_path: Path, *, enforce: bool = True) -> Loaded:
    """Raises SpecError / PlanError (exit 1) before anything is written.
    ``enforce`` off records the plan's violations instead (rehearsing a split
    the planner refuses)."""
    stack = load_stack(stack_path)
    return Loaded(stack_path, stack, plan_stack(stack, enforce=enforce))
