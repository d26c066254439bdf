"""Steps shared by commands: load and plan a stack, name its output folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpustack_compose.contract import K8S_DIR, KUSTOMIZATION
from gpustack_compose.loader import load_stack
from gpustack_compose.planner import Plan, plan_stack
from gpustack_compose.render import render
from gpustack_compose.spec import StackSpec
from gpustack_compose.writer import FileState, compare, write


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


Target = Literal["auto", "compose", "kubernetes", "all"]
TARGETS: tuple[Target, ...] = ("auto", "compose", "kubernetes", "all")


def kubernetes_rendered(out_dir: Path) -> bool:
    """Whether the output folder holds a Kubernetes render (its kustomization)."""
    return (out_dir / K8S_DIR / KUSTOMIZATION).is_file()


def rendered_files(loaded: Loaded, out_dir: Path, target: Target = "auto") -> dict[str, str]:
    """The files of ``target`` keyed by path relative to ``out_dir``. ``auto``
    is the compose files, plus ``k8s/`` once a Kubernetes render was committed
    there -- so a plain ``render`` or ``check`` keeps both targets in step."""
    files: dict[str, str] = {}
    if target in ("auto", "compose", "all"):
        files.update(render(loaded.stack, loaded.plan, source_label(loaded.stack_path, out_dir)))
    if target in ("kubernetes", "all") or (target == "auto" and kubernetes_rendered(out_dir)):
        from gpustack_compose.k8s.manifests import render_kubernetes

        source = source_label(loaded.stack_path, out_dir / K8S_DIR)
        files.update(render_kubernetes(loaded.stack, loaded.plan, source))
    return files


def _owned_dirs(files: dict[str, str]) -> tuple[str, ...]:
    """Folders whose every generated file is ours: a file there that the render
    no longer produces (a removed model's manifests) is deleted."""
    return (K8S_DIR,) if any(path.startswith(K8S_DIR + "/") for path in files) else ()


def compare_rendered(loaded: Loaded, out_dir: Path, target: Target = "auto") -> list[FileState]:
    """What a render of ``target`` would change in ``out_dir`` (writes nothing)."""
    files = rendered_files(loaded, out_dir, target)
    return compare(out_dir, files, _owned_dirs(files))


def write_rendered(loaded: Loaded, out_dir: Path, target: Target = "auto") -> list[FileState]:
    """Render ``target`` into ``out_dir`` where it changed, deleting our own
    files the render no longer produces; returns what happened to each file."""
    files = rendered_files(loaded, out_dir, target)
    return write(out_dir, files, _owned_dirs(files))
