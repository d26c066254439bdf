"""The package's layers, read from its own imports (every import statement,
also those inside functions): no cycle; the leaves import no more than
leaves; the spec knows nothing of the plan or the renderers; the runtime
knows nothing of the renderers (the commands hand it what they rendered)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "gpustack_compose"
# Scripts that run inside the vLLM CPU image, not modules of the tool.
NOT_MODULES = ("images",)

LEAVES = {
    "gpustack_compose.contract": set(),
    "gpustack_compose.versions": set(),
    "gpustack_compose.units": set(),
    "gpustack_compose.errors": set(),
    "gpustack_compose.stand_in": set(),
    "gpustack_compose.vllm_flags": {"gpustack_compose.versions", "gpustack_compose.contract"},
}
RENDER_LAYER = (
    "gpustack_compose.render",
    "gpustack_compose.rehearsal",
    "gpustack_compose.vllm_args",
    "gpustack_compose.vram_svg",
    "gpustack_compose.k8s",
    "gpustack_compose.commands",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the package's modules it imports."""
    modules = {
        module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if not set(path.relative_to(PACKAGE).parts[:-1]) & set(NOT_MODULES)
    }
    edges: dict[str, frozenset[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gpustack_compose"):
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    found.add(candidate if candidate in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("gpustack_compose."))
        edges[name] = frozenset(m for m in found if m in modules and m not in (name, "gpustack_compose"))
    return edges


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "gpustack_compose.spec" in edges and "gpustack_compose.runtime.lifecycle" in edges
    assert "gpustack_compose.contract" in edges["gpustack_compose.render"]


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(edges[module]):
            if state.get(imported) == 1:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaves_import_only_leaves(leaf: str) -> None:
    assert graph()[leaf] <= LEAVES[leaf]


def test_the_spec_knows_nothing_of_plans_or_renderers() -> None:
    below = graph()["gpustack_compose.spec"]
    assert not {m for m in below if m.startswith(("gpustack_compose.planner", *RENDER_LAYER))}


def test_the_runtime_imports_no_renderer() -> None:
    back_edges = {
        (module, imported)
        for module, imports in graph().items()
        if module.startswith("gpustack_compose.runtime")
        for imported in imports
        if imported.startswith(RENDER_LAYER)
    }
    assert back_edges == set()
