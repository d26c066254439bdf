"""The lock file next to a stack: every model's resolved facts, committed.

``stacks/idp.yaml`` locks into ``stacks/idp.lock`` (YAML; not ``*.yaml``, so
globs over stack files leave it alone). ``render``, ``plan`` and ``check`` read
the stack and its lock only -- no network, no model files -- so CI renders
offline and deterministically. A model needs an entry when it has no
``arch:`` block and is a directory or not in the catalog; an entry for a
catalog model wins over the catalog (its exact safetensors bytes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from gpustack_compose.catalog import find_model
from gpustack_compose.errors import FieldPath, ModelFileError
from gpustack_compose.model_facts.record import ModelEntry, revision_drift
from gpustack_compose.spec import ModelSpec, StackSpec, model_directory

LOCK_SUFFIX = ".lock"
HEADER = """\
# Written by `python -m gpustack_compose lock {stack}`: the facts the planner uses
# for each model, read once from its config.json and safetensors headers.
# Commit it; render, plan and check read it instead of the network. Do not edit.
"""


class LockFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    models: tuple[ModelEntry, ...] = ()


def lock_path(stack_path: Path) -> Path:
    return stack_path.with_suffix(LOCK_SUFFIX)


def needs_entry(model: ModelSpec) -> bool:
    """Whether planning ``model`` needs the lock: no arch: block, and a
    directory or a repo the catalog does not know."""
    if model.arch is not None:
        return False
    return model_directory(model.model) is not None or find_model(model.model) is None


def read_lock(path: Path) -> dict[str, ModelEntry] | None:
    """The entries by model: value, or None when there is no lock file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"cannot be read ({exc})", where=str(path)) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ModelFileError(f"not YAML ({getattr(exc, 'problem', None) or exc})", where=at) from None
    try:
        lock = LockFile.model_validate(loaded)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ModelFileError(
            f"{field}: {first['msg']}", where=str(path), hint="write it again with `python -m gpustack_compose lock`"
        ) from None
    entries: dict[str, ModelEntry] = {}
    for entry in lock.models:
        if entry.model in entries:
            raise ModelFileError(f"models: {entry.model!r} is locked twice", where=str(path))
        entries[entry.model] = entry
    return entries


def render_lock(stack_label: str, entries: Mapping[str, ModelEntry]) -> str:
    """The lock file's text: models sorted, keys in record order, no defaults."""
    lock = LockFile(models=tuple(entries[k] for k in sorted(entries)))
    data = lock.model_dump(mode="json", exclude_defaults=True)
    data = {"version": 1, **data}
    body = yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)
    return HEADER.format(stack=stack_label) + body


@dataclass(frozen=True)
class Stale:
    """One way the lock disagrees with the stack: the field, and what is wrong."""

    path: FieldPath
    detail: str


def stale_entries(stack: StackSpec, entries: Mapping[str, ModelEntry] | None, lock_name: str) -> list[Stale]:
    """What ``check`` reports (exit 3): a model without its entry, an entry
    for another revision than the stack asks for, an entry no model uses."""
    found: list[Stale] = []
    used = set()
    for position, model in enumerate(stack.models):
        entry = (entries or {}).get(model.model)
        used.add(model.model)
        if entry is None:
            if needs_entry(model):
                detail = (
                    f"{model.model!r} has no entry in {lock_name}"
                    if entries is not None
                    else f"{model.model!r} needs an entry in {lock_name}, which does not exist"
                )
                found.append(Stale(("models", position, "model"), detail))
            continue
        if model.arch is None and revision_drift(entry, model):
            found.append(
                Stale(
                    ("models", position, "revision"),
                    f"{lock_name} was written for revision {entry.ref or 'main'!r}, the stack asks for "
                    f"{model.revision or 'main'!r}",
                )
            )
    for name in sorted(set(entries or {}) - used):
        found.append(Stale(("models",), f"{lock_name} locks {name!r}, which no model of the stack names"))
    return found
