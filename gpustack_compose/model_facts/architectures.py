"""Which architectures a vLLM release serves, and whether it generates or pools.

Generated from each release's own model registry
(``images/vllm-cpu/model_data.py architectures``, ``make model-data``) into
``data/models/vllm-architectures-<release>.json``: ``served`` maps
``architectures[0]`` of a config.json to ``generate`` or ``pooling``
(embedding, classification, reward and late-interaction models), and
``previously_supported`` to the last release that served it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpustack_compose import versions

DATA_DIR = Path(__file__).parent.parent / "data" / "models"

Runner = Literal["generate", "pooling"]


@dataclass(frozen=True)
class Registry:
    release: str
    served: dict[str, Runner]
    previously_supported: dict[str, str]

    def refusal(self, architecture: str) -> str | None:
        """vLLM's refusal of an architecture, as one clause; None when served."""
        if not architecture or architecture in self.served:
            return None
        if architecture in self.previously_supported:
            return (
                f"vLLM {self.release} no longer serves {architecture} "
                f"(the last release that did is {self.previously_supported[architecture]})"
            )
        return f"vLLM {self.release} does not serve {architecture} (not in its model registry)"


def registry_path(release: str) -> Path:
    return DATA_DIR / f"vllm-architectures-{release}.json"


@functools.cache
def registry(release: str = versions.VLLM) -> Registry | None:
    """The committed registry of ``release``, or None when there is none."""
    path = registry_path(release)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return Registry(release, dict(data["served"]), dict(data["previously_supported"]))


def runner(architecture: str, release: str | None) -> Runner:
    """How ``release`` (default: the pinned one) serves ``architecture``;
    ``generate`` when unknown."""
    found = registry(release or versions.VLLM) or registry(versions.VLLM)
    if found is None:
        return "generate"
    return found.served.get(architecture, "generate")
