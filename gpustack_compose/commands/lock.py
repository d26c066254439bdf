"""``lock``: resolve every model of a stack once and write the lock file.

Each model without an ``arch:`` block is read from its directory, the
Hugging Face cache, or the Hub (config.json and safetensors headers only),
and its entry written to ``<stack>.lock`` beside the stack file. What
changed is printed per model; the file is written only when something did,
atomically, and never when any model fails.
"""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.console import Output
from gpustack_compose.contract import HF_HUB_SUBDIR
from gpustack_compose.loader import load_stack
from gpustack_compose.model_facts.lock import lock_path, read_lock, render_lock
from gpustack_compose.model_facts.record import ModelEntry
from gpustack_compose.model_facts.sources import Origins, resolve
from gpustack_compose.spec import StackSpec
from gpustack_compose.units import fmt_gib
from gpustack_compose.writer import write


def hub_cache_of(stack: StackSpec, stack_dir: Path) -> Path | None:
    """The hub cache to search: the stack's host hf_cache folder (its hub/
    part), else huggingface_hub's own default (HF_HUB_CACHE, HF_HOME)."""
    if stack.hf_cache is None:
        return None
    base = Path(stack.hf_cache)
    return (base if base.is_absolute() else stack_dir / base) / HF_HUB_SUBDIR


def describe(entry: ModelEntry) -> str:
    weights = entry.facts.weights
    size = f"{fmt_gib(weights.bytes)} in {weights.files} safetensors file(s)" if weights else "no safetensors"
    at = f" at {entry.revision[:12]}" if entry.revision else ""
    return f"{entry.facts.architecture or entry.facts.model_type}, {size}, from {entry.source}{at}"


def changes(old: ModelEntry, new: ModelEntry) -> list[str]:
    found = []
    if old.source != new.source:
        found.append(f"source {old.source} -> {new.source}")
    if old.revision != new.revision:
        found.append(f"revision {(old.revision or '-')[:12]} -> {(new.revision or '-')[:12]}")
    if old.config_sha256 != new.config_sha256:
        found.append("config.json changed")
    before, after = old.facts.model_dump(), new.facts.model_dump()
    fields = [k for k in after if before.get(k) != after[k] and k != "weights"]
    if fields:
        found.append("facts: " + ", ".join(fields))
    if old.facts.weights != new.facts.weights:
        found.append("weights changed")
    return found


def run(*, stack_path: Path, offline: bool, output: Output) -> int:
    stack = load_stack(stack_path)
    stack_dir = stack_path.parent
    path = lock_path(stack_path)
    old = read_lock(path) or {}
    origins = Origins(stack_dir=stack_dir, hub_cache=hub_cache_of(stack, stack_dir), offline=offline)
    entries: dict[str, ModelEntry] = {}
    lines: list[str] = []
    for model in stack.models:
        if model.arch is not None or model.model in entries:
            continue
        entry = resolve(model, origins)
        entries[model.model] = entry
        previous = old.get(model.model)
        if previous is None:
            lines.append(f"+ {model.model}: {describe(entry)}")
        elif previous != entry:
            lines.append(f"~ {model.model}: " + "; ".join(changes(previous, entry) or ["rewritten"]))
    for name in sorted(set(old) - set(entries)):
        lines.append(f"- {name}: no model of the stack names it")
    # the stack file's name only: the lock's bytes do not depend on where lock ran from
    states = write(stack_dir, {path.name: render_lock(stack_path.name, entries)})
    for line in lines:
        output.raw(f"  {line}\n")
    verb = "unchanged" if all(s.status == "identical" for s in states) else "written"
    output.info(f"{path.as_posix()}: {len(entries)} model(s), {verb}")
    return 0
