"""``init``: start a stack file from flags or from this host's GPUs.

GPUs come from ``--gpu`` (``H100-80GB``, or ``4xH100-80GB``) or, without it,
from ``nvidia-smi``. Every model starts at ``memory: auto``; the planner then
proposes the split, and the file is written with the proposed fractions and
cards pinned, each with a comment saying what it holds. Nothing is written
when the models do not fit, or when the file exists (unless ``--force``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpustack_compose.catalog import CUDA_HIDDEN_BYTES, GPU_TYPES, find_gpu, find_model
from gpustack_compose.console import Output
from gpustack_compose.contract import PROXY_PORT
from gpustack_compose.errors import ArgumentError, SetupError, SpecError
from gpustack_compose.loader import parse_yaml, validate_stack
from gpustack_compose.planner import Plan, plan_stack
from gpustack_compose.schema import SCHEMA_ID, SCHEMA_PATH
from gpustack_compose.units import GiB, MiB, fmt_fraction, fmt_gib
from gpustack_compose.writer import write

NVIDIA_SMI_QUERY = ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
_COUNTED = re.compile(r"^(\d+)\s*[xX*]\s*(.+)$")


@dataclass(frozen=True)
class HostGpu:
    index: int
    type: str | None
    memory_gib: float | None


def parse_gpu_flags(values: tuple[str, ...]) -> list[HostGpu]:
    gpus: list[HostGpu] = []
    for value in values:
        match = _COUNTED.match(value.strip())
        count, name = (int(match.group(1)), match.group(2)) if match else (1, value.strip())
        gpu = find_gpu(name)
        if gpu is None or count < 1:
            known = ", ".join(g.name for g in GPU_TYPES)
            raise SpecError(f"--gpu {value!r}: not a GPU type from the catalog ({known}), optionally as 4x<type>")
        gpus += [HostGpu(len(gpus) + i, gpu.name, None) for i in range(count)]
    return gpus


def parse_nvidia_smi(text: str) -> list[HostGpu]:
    """``0, NVIDIA H100 80GB HBM3, 81559`` lines -> GPUs; a card the catalog
    does not know by its total and name gets ``memory_gib`` (CUDA's view:
    nvidia-smi total minus 480 MiB, as measured on the H100)."""
    gpus = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip():
            continue
        if len(row) != 3:
            raise SetupError(f"nvidia-smi: unexpected line {','.join(row)!r}")
        try:
            index, name, total_mib = int(row[0]), row[1].strip(), int(float(row[2]))
        except ValueError:
            raise SetupError(f"nvidia-smi: unexpected line {','.join(row)!r}") from None
        gpus.append(HostGpu(index, *_catalog_match(name, total_mib)))
    if not gpus:
        raise SetupError("nvidia-smi reports no GPU; give --gpu")
    return gpus


def _catalog_match(name: str, total_mib: int) -> tuple[str | None, float | None]:
    same_size = [g for g in GPU_TYPES if g.nvml_total_mib == total_mib]
    squashed = re.sub(r"[^A-Z0-9]", "", name.upper())
    for gpu in same_size:
        keys = [gpu.name, *gpu.aliases]
        if any(re.sub(r"[^A-Z0-9]", "", k.upper()).split("GB")[0] in squashed for k in keys):
            return gpu.name, None
    if len(same_size) == 1:
        return same_size[0].name, None
    return None, round((total_mib * MiB - CUDA_HIDDEN_BYTES) / GiB, 2)


def detect_gpus() -> list[HostGpu]:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        raise SetupError("no --gpu given and nvidia-smi is not on PATH; give --gpu H100-80GB (or 4xH100-80GB)")
    try:
        done = subprocess.run([binary, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"nvidia-smi failed: {exc}") from None
    if done.returncode != 0:
        first = (done.stderr or done.stdout).strip().splitlines()[:1]
        raise SetupError(f"nvidia-smi failed (exit {done.returncode}): {first[0] if first else 'no output'}")
    return parse_nvidia_smi(done.stdout)


def model_name(repo: str) -> str:
    """``Qwen/Qwen2.5-14B-Instruct`` -> ``qwen2.5-14b-instruct``."""
    name = re.sub(r"[^a-z0-9._-]+", "-", repo.rsplit("/", 1)[-1].lower()).strip("-._")
    return name[:63] or "model"


def _stack_data(name: str, gpus: list[HostGpu], models: list[dict[str, Any]]) -> dict[str, Any]:
    cards = [{"index": g.index, **({"type": g.type} if g.type else {"memory_gib": g.memory_gib})} for g in gpus]
    return {"name": name, "gpus": cards, "models": models}


def schema_reference(target: Path) -> str:
    """The schema for the editor: the repository's own copy when it has one
    (``schema/stack.schema.json``, from ``gpustack-compose schema``), else the
    published one."""
    local = Path(SCHEMA_PATH)
    if local.is_file():
        return Path(os.path.relpath(local.resolve(), target.parent.resolve())).as_posix()
    return SCHEMA_ID


def propose(
    name: str, gpus: list[HostGpu], repos: tuple[str, ...], max_model_len: int, schema: str = SCHEMA_ID
) -> tuple[str, Plan]:
    """The stack file text with the planner's split, and its plan."""
    models: list[dict[str, Any]] = []
    seen: set[str] = set()
    for repo in repos:
        entry = find_model(repo)
        if entry is None:
            raise SpecError(
                f"--model {repo!r} is not in the model catalog; write its stack entry by hand with an arch: block"
            )
        base = model_name(repo)
        unique = base
        counter = 2
        while unique in seen:
            unique = f"{base}-{counter}"
            counter += 1
        seen.add(unique)
        length = min(max_model_len, entry[0].facts.context_length)
        models.append({"name": unique, "model": repo, "max_model_len": length})
    draft = _stack_data(name, gpus, models)
    stack = validate_stack(parse_yaml(_yaml(draft), "the proposed stack"), "the proposed stack")
    plan = plan_stack(stack)
    return _commented(draft, plan, len(gpus) > 1, schema), plan


def _yaml(data: dict[str, Any]) -> str:
    # JSON is YAML: the draft is validated with the same loader as a file.
    return json.dumps(data)


def _commented(draft: dict[str, Any], plan: Plan, pin: bool, schema: str) -> str:
    lines = [
        f"# yaml-language-server: $schema={schema}",
        "# Started by `gpustack-compose init`: the fractions are the planner's proposal",
        "# for memory: auto. Edit freely, then: gpustack-compose plan <this file>.",
        f"name: {draft['name']}",
        "gpus:",
    ]
    for card in draft["gpus"]:
        what = f"type: {card['type']}" if "type" in card else f"memory_gib: {card['memory_gib']}"
        gpu_plan = plan.gpu(card["index"])
        lines.append(f"  - index: {card['index']}")
        lines.append(f"    {what}  # {fmt_gib(gpu_plan.total_bytes)} as CUDA reports it")
    lines.append("models:")
    for entry in draft["models"]:
        m = plan.model(entry["name"])
        lines.append(f"  - name: {entry['name']}")
        lines.append(f"    model: {entry['model']}")
        if pin:
            lines.append(f"    gpu: {m.gpu}")
        lines.append(
            f"    memory: {fmt_fraction(m.fraction)}  # weights {fmt_gib(m.weights_bytes)}, KV cache "
            f"{fmt_gib(m.kv_bytes)} = {m.kv_tokens:,} tokens"
        )
        lines.append(
            f"    max_model_len: {entry['max_model_len']}  # {m.max_concurrency:.1f} full-length sequences at once"
        )
    lines += ["proxy:", f"  port: {PROXY_PORT}", ""]
    return "\n".join(lines)


def run(
    *,
    name: str,
    gpu_flags: tuple[str, ...],
    repos: tuple[str, ...],
    out: Path | None,
    max_model_len: int,
    force: bool,
    output: Output,
) -> int:
    if not repos:
        raise SpecError("give at least one --model (a Hugging Face repo id from the catalog)")
    target = out if out is not None else Path("stacks") / f"{name}.yaml"
    if target.exists() and not force:
        raise ArgumentError(f"{target.as_posix()} exists; use --force to replace it")
    gpus = parse_gpu_flags(gpu_flags) if gpu_flags else detect_gpus()
    text, plan = propose(name, gpus, repos, max_model_len, schema_reference(target))
    write(target.parent, {target.name: text})
    output.info(f"wrote {target.as_posix()}")
    for gpu in plan.gpus:
        parts = ", ".join(f"{m.name} {fmt_fraction(m.fraction)}" for m in gpu.models) or "-"
        output.info(f"  GPU {gpu.index} ({gpu.label}): {parts}")
    output.info(f"next: gpustack-compose render {target.as_posix()}")
    return 0
