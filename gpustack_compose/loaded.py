"""A stack file, read, validated and planned: what every command starts from.

It also remembers where the last stack read has each field, so that the
command line locates every later refusal that names a field (a plan that does
not fit, a Kubernetes rule) in the file, the same way the loader locates its
own: ``FILE:LINE:COL: PATH: detail``.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from gpustack_compose.errors import GscError
from gpustack_compose.loader import Locator, load_stack_located
from gpustack_compose.model_facts.lock import lock_path, read_lock
from gpustack_compose.model_facts.record import ModelEntry
from gpustack_compose.planner import Plan, plan_stack
from gpustack_compose.spec import StackSpec

_LOCATOR: ContextVar[Locator | None] = ContextVar("gsc_locator", default=None)


@dataclass(frozen=True)
class Loaded:
    stack_path: Path
    stack: StackSpec
    plan: Plan
    # The lock file's entries by model: value; None when there is no lock file.
    locked: dict[str, ModelEntry] | None = None


def load_with_lock(stack_path: Path) -> tuple[StackSpec, dict[str, ModelEntry] | None]:
    """The stack and its lock file's entries (None: no lock file)."""
    stack, locator = load_stack_located(stack_path)
    _LOCATOR.set(locator)
    return stack, read_lock(lock_path(stack_path))


def load_and_plan(stack_path: Path, *, enforce: bool = True) -> Loaded:
    """Raises SpecError / PlanError (exit 1) before anything is written.
    ``enforce`` off records the plan's violations instead (rehearsing a split
    the planner refuses)."""
    stack, locked = load_with_lock(stack_path)
    return Loaded(stack_path, stack, plan_stack(stack, locked=locked, enforce=enforce), locked)


def forget_locations() -> None:
    _LOCATOR.set(None)


def located(exc: GscError) -> GscError:
    """``exc`` at its field's place in the last stack file read, when it names
    a field and no place yet."""
    locator = _LOCATOR.get()
    if locator is None or not exc.path or exc.where is not None:
        return exc
    return exc.located(locator(exc.path))
