"""Steps shared by commands: load and plan a stack, name its output folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gpustack_compose.console import Output
from gpustack_compose.contract import K8S_DIR, KUSTOMIZATION
from gpustack_compose.loaded import Loaded
from gpustack_compose.render import render
from gpustack_compose.spec import risky_choices
from gpustack_compose.writer import FileState, compare, write

if TYPE_CHECKING:
    from gpustack_compose.runtime.lifecycle import Rendering


def output_dir(loaded: Loaded, out: Path | None) -> Path:
    """``compose/<name>/`` under the working directory unless ``-o`` says otherwise."""
    return out if out is not None else Path("compose") / loaded.stack.name


def source_label(stack_path: Path, out_dir: Path) -> str:
    """The stack file relative to the output folder, so the header is the same
    from any working directory and holds no absolute path."""
    relative = os.path.relpath(stack_path.resolve(), out_dir.resolve())
    return Path(relative).as_posix()


RenderTarget = Literal["auto", "compose", "kubernetes", "all"]
RENDER_TARGETS: tuple[RenderTarget, ...] = ("auto", "compose", "kubernetes", "all")


def kubernetes_rendered(out_dir: Path) -> bool:
    """Whether the output folder holds a Kubernetes render (its kustomization)."""
    return (out_dir / K8S_DIR / KUSTOMIZATION).is_file()


def rendered_files(loaded: Loaded, out_dir: Path, target: RenderTarget = "auto") -> dict[str, str]:
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


def compare_rendered(loaded: Loaded, out_dir: Path, target: RenderTarget = "auto") -> list[FileState]:
    """What a render of ``target`` would change in ``out_dir`` (writes nothing)."""
    files = rendered_files(loaded, out_dir, target)
    return compare(out_dir, files, _owned_dirs(files))


def write_rendered(loaded: Loaded, out_dir: Path, target: RenderTarget = "auto") -> list[FileState]:
    """Render ``target`` into ``out_dir`` where it changed, deleting our own
    files the render no longer produces; returns what happened to each file."""
    files = rendered_files(loaded, out_dir, target)
    return write(out_dir, files, _owned_dirs(files))


def rendering(loaded: Loaded, out_dir: Path) -> Rendering:
    """What the render layer does for a run on the engine (``up``, ``rehearse``)."""
    from gpustack_compose.rehearsal import differences, override
    from gpustack_compose.runtime.lifecycle import Rendering

    return Rendering(
        write=lambda: write_rendered(loaded, out_dir),
        override=lambda options: override(loaded.stack, loaded.plan, options),
        differences=lambda options: differences(loaded.stack, loaded.plan, options),
    )


def warn_risky(loaded: Loaded, output: Output) -> None:
    """What the stack may ask for but is told about (spec.risky_choices)."""
    for line in risky_choices(loaded.stack):
        output.warn(line)
