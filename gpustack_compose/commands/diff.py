"""``diff``: what a render would change, for a pull-request comment.

First a summary per service, read from the committed and the freshly rendered
compose file (model added or removed, fraction 0.5 -> 0.45, image bumped, GPU
moved, boot order changed, other arguments), and the proxy's routes; then the
unified diff. Writes nothing; exit 0 whether or not anything would change
(``check`` is the gate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpustack_compose.commands.common import RenderTarget, compare_rendered, output_dir
from gpustack_compose.console import Output
from gpustack_compose.contract import COMPOSE_FILE, LITELLM_CONFIG
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.writer import FileState, unified_diff

# Flags whose values the summary names; any other change is "other arguments".
NAMED_FLAGS = {
    "--gpu-memory-utilization": "fraction",
    "--kv-cache-memory-bytes": "KV bytes",
    "--max-model-len": "max_model_len",
    "--max-num-seqs": "max_num_seqs",
    "--tensor-parallel-size": "tensor parallel",
    # the Hub commit the lock file pins: a `lock` that moved it shows here
    "--revision": "revision",
}


@dataclass(frozen=True)
class Service:
    image: str
    model: str
    gpus: str
    after: tuple[str, ...]
    flags: dict[str, str]
    args: tuple[str, ...]


def _parse(text: bytes | str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _services(compose: dict[str, Any] | None) -> dict[str, Service]:
    out: dict[str, Service] = {}
    services = (compose or {}).get("services") or {}
    if not isinstance(services, dict):
        return out
    for name, body in services.items():
        if not isinstance(body, dict):
            continue
        command = [str(a) for a in body.get("command") or []]
        flags = {a: command[i + 1] for i, a in enumerate(command[:-1]) if a in NAMED_FLAGS}
        try:
            devices = body["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        except (KeyError, IndexError, TypeError):
            devices = []
        depends = body.get("depends_on") or {}
        out[str(name)] = Service(
            image=str(body.get("image", "")),
            model=command[0] if command and not command[0].startswith("-") else "",
            gpus=",".join(str(d) for d in devices),
            after=tuple(sorted(str(d) for d in depends)) if isinstance(depends, (dict, list)) else (),
            flags=flags,
            args=tuple(command),
        )
    return out


def _routes(config: dict[str, Any] | None) -> set[str]:
    entries = (config or {}).get("model_list") or []
    return {str(e.get("model_name")) for e in entries if isinstance(e, dict)}


def _changes(old: Service, new: Service, is_proxy: bool) -> list[str]:
    changes = []
    if old.image != new.image:
        changes.append(f"image {old.image} -> {new.image}")
    if old.model != new.model:
        changes.append(f"model {old.model} -> {new.model}")
    if old.gpus != new.gpus:
        changes.append(f"GPU {old.gpus or '-'} -> {new.gpus or '-'}")
    for flag, label in NAMED_FLAGS.items():
        if old.flags.get(flag) != new.flags.get(flag):
            changes.append(f"{label} {old.flags.get(flag, '-')} -> {new.flags.get(flag, '-')}")
    if old.after != new.after and not is_proxy:
        changes.append(f"waits for {', '.join(old.after) or 'nothing'} -> {', '.join(new.after) or 'nothing'}")
    named = set(NAMED_FLAGS)
    rest_old = [a for i, a in enumerate(old.args) if a not in named and (i == 0 or old.args[i - 1] not in named)]
    rest_new = [a for i, a in enumerate(new.args) if a not in named and (i == 0 or new.args[i - 1] not in named)]
    if rest_old[1:] != rest_new[1:]:
        changes.append("other arguments changed")
    return changes


def summary(states: list[FileState]) -> list[str]:
    by_path = {s.path: s for s in states}
    lines: list[str] = []
    compose = by_path.get(COMPOSE_FILE)
    if compose is not None and compose.status != "identical":
        old_doc = _parse(compose.old)
        if compose.old is not None and old_doc is None:
            lines.append(f"{COMPOSE_FILE} (committed) is not valid YAML: every service is shown as new")
        old, new = _services(old_doc), _services(_parse(compose.new))
        for name in sorted(new.keys() - old.keys()):
            s = new[name]
            detail = f"{s.model}, GPU {s.gpus}, fraction {s.flags.get('--gpu-memory-utilization', '-')}"
            lines.append(f"+ {name}: added ({detail})" if s.model else f"+ {name}: added")
        for name in sorted(old.keys() - new.keys()):
            lines.append(f"- {name}: removed")
        for name in sorted(old.keys() & new.keys()):
            changes = _changes(old[name], new[name], is_proxy=not new[name].model)
            if changes:
                lines.append(f"~ {name}: " + "; ".join(changes))
    config = by_path.get(LITELLM_CONFIG)
    if config is not None and config.status != "identical":
        old_routes, new_routes = _routes(_parse(config.old)), _routes(_parse(config.new))
        for route in sorted(new_routes - old_routes):
            lines.append(f"+ route {route}")
        for route in sorted(old_routes - new_routes):
            lines.append(f"- route {route}")
    other = [s.path for s in states if s.status != "identical" and s.path not in (COMPOSE_FILE, LITELLM_CONFIG)]
    if other:
        lines.append("also changes: " + ", ".join(other))
    return lines


def run(*, stack_path: Path, out: Path | None, output: Output, target: RenderTarget = "auto") -> int:
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    states = compare_rendered(loaded, out_dir, target)
    if all(s.status == "identical" for s in states):
        output.raw(f"{out_dir.as_posix()}: no changes\n")
        return 0
    lines = summary(states)
    output.raw(f"{out_dir.as_posix()}: a render would change\n" + "".join(f"  {line}\n" for line in lines) + "\n")
    output.raw(unified_diff(out_dir, states))
    return 0
