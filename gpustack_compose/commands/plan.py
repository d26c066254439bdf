"""``plan``: the VRAM plan as a table, or as JSON for machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from gpustack_compose.commands.common import source_label, warn_risky
from gpustack_compose.console import Output
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.planner import GpuPlan, ModelPlan, Plan
from gpustack_compose.render import render_svg
from gpustack_compose.units import GiB, fmt_fraction
from gpustack_compose.writer import write


def _gib(size: int) -> float:
    return round(size / GiB, 3)


def model_dict(m: ModelPlan) -> dict[str, Any]:
    return {
        "name": m.name,
        "service": m.service,
        # the value the flag is rendered with (fmt_fraction), not float noise such as 0.30110000000000003
        "fraction": float(fmt_fraction(m.fraction)),
        "fraction_source": m.fraction_source,
        "share_gib": _gib(m.share_bytes),
        "weights_gib": _gib(m.weights_bytes),
        "activation_gib": _gib(m.activation_bytes),
        "non_torch_gib": _gib(m.non_torch_bytes),
        "lora_gib": _gib(m.lora_bytes),
        "kv_cache_gib": _gib(m.kv_bytes),
        "kv_cache_bytes": m.kv_bytes,
        "exact_kv": m.exact_kv,
        "kv_note": m.kv_note,
        "kv_bytes_per_token": m.kv_bytes_per_token,
        "kv_tokens": m.kv_tokens,
        "max_model_len": m.max_model_len,
        "max_concurrency": round(m.max_concurrency, 2),
        "max_num_seqs": m.max_num_seqs,
        "max_num_batched_tokens": m.max_num_batched_tokens,
        "min_fraction": float(fmt_fraction(m.min_fraction)),
        "free_at_start_gib": _gib(m.free_at_start_bytes),
        "resident_gib": _gib(m.resident_bytes),
        "peak_gib": _gib(m.peak_bytes),
        "gpus": list(m.gpus),
        "placed": m.placed,
        "tensor_parallel": m.tensor_parallel,
        "boot_position": m.boot_position,
        "after": list(m.after),
        "boot_timeout_s": m.boot_timeout_s,
        "notes": list(m.notes),
        "architecture": m.architecture,
        "params": m.params,
        "facts_source": m.facts_source,
        "weights_source": m.weights_source,
        "revision": m.revision,
        "facts_notes": list(m.facts_notes),
        "elastic": m.elastic,
        **({"kv_max_gib": _gib(m.kv_max_bytes), "kv_max_bytes": m.kv_max_bytes} if m.elastic else {}),
        **({"sleep": _sleep_dict(m)} if m.swappable else {}),
    }


def _sleep_dict(m: ModelPlan) -> dict[str, Any]:
    return {
        "level": m.sleep_level,
        "idle_s": m.idle_s,
        "asleep_gib": _gib(m.sleep_residue_bytes),
        "wake_needs_gib": _gib(m.wake_bytes),
        "wake_needs_bytes": m.wake_bytes,
        "pinned_host_gib": _gib(m.pinned_host_bytes),
        "first_sleep_timeout_s": m.first_sleep_timeout_s,
    }


def gpu_dict(g: GpuPlan) -> dict[str, Any]:
    return {
        "index": g.index,
        "type": g.label,
        "total_gib": _gib(g.total_bytes),
        "total_bytes": g.total_bytes,
        "reserve_gib": _gib(g.reserve_bytes),
        "fraction_sum": round(g.fraction_sum, 4),
        "boot": g.boot,
        "chain": list(g.chain),
        "free_under_load_gib": _gib(g.free_bytes),
        "memory_mode": g.memory_mode,
        **({"pool_gib": _gib(g.pool_bytes), "pool_bytes": g.pool_bytes} if g.memory_mode == "elastic" else {}),
        **(_swap_gpu_dict(g) if g.swappables else {}),
        "models": [model_dict(m) for m in g.models],
    }


def _swap_gpu_dict(g: GpuPlan) -> dict[str, Any]:
    return {
        "awake_max": g.awake_max,
        "awake_sets": [list(s) for s in g.awake_sets],
        "heaviest_awake_set": list(g.worst_awake_set),
    }


def plan_dict(plan: Plan) -> dict[str, Any]:
    data: dict[str, Any] = {"stack": plan.name, "gpus": [gpu_dict(g) for g in plan.gpus]}
    if plan.swappables:
        budget = plan.host_memory_bytes
        data["swap"] = {"pinned_host_gib": _gib(plan.pinned_host_bytes),
                        "host_memory_gib": _gib(budget) if budget is not None else None}  # fmt: skip
    return data


def swap_lines(plan: Plan) -> list[str]:
    """The awake sets each swap GPU allows, and what each swappable model needs."""
    lines = []
    for gpu in plan.gpus:
        if not gpu.swappables:
            continue
        sets = " | ".join("{" + ", ".join(s) + "}" for s in gpu.awake_sets)
        lines.append(
            f"GPU {gpu.index} swap set (awake_max {gpu.awake_max}): awake at once {sets}; heaviest "
            f"{{{', '.join(gpu.worst_awake_set)}}} leaves {gpu.free_bytes / GiB:.2f} GiB free under load"
        )
        for m in gpu.swappables:
            pinned = f", pins {m.pinned_host_bytes / GiB:.2f} GiB of host RAM" if m.pinned_host_bytes else ""
            asleep = f"{m.sleep_residue_bytes / GiB:.2f} GiB asleep"
            lines.append(
                f"  {m.name}: sleeps at level {m.sleep_level} after {m.idle_s} s idle ({asleep}); a wake needs "
                f"{m.wake_bytes / GiB:.2f} GiB free{pinned}"
            )
    return lines


def plan_tables(plan: Plan) -> list[Table]:
    tables = []
    for gpu in plan.gpus:
        elastic = gpu.memory_mode == "elastic"
        summary = (
            f"elastic: shared KV pool {gpu.pool_bytes / GiB:.2f} GiB, "
            f"{gpu.guaranteed_kv_bytes / GiB:.2f} GiB guaranteed"
            if elastic
            else f"shared {fmt_fraction(gpu.fraction_sum)}, free under load {gpu.free_bytes / GiB:.2f} GiB"
        )
        table = Table(
            title=f"GPU {gpu.index}: {gpu.label}, {gpu.total_bytes / GiB:.2f} GiB ({summary})", title_justify="left"
        )
        kv_headers = ("KV guaranteed", "may borrow up to") if elastic else ("KV cache", "KV tokens")
        for header in ("boot", "model", "fraction", "weights", *kv_headers, "full-length seqs"):
            table.add_column(header, justify="left" if header == "model" else "right")
        for m in gpu.models:
            table.add_row(
                str(m.boot_position),
                m.name,
                fmt_fraction(m.fraction),
                f"{m.weights_bytes / GiB:.2f} GiB",
                f"{m.kv_bytes / GiB:.2f} GiB",
                f"{m.kv_max_bytes / GiB:.2f} GiB" if elastic else f"{m.kv_tokens:,}",
                f"{m.max_concurrency:.2f} x {m.max_model_len:,}",
            )
        tables.append(table)
    return tables


def chain_lines(plan: Plan) -> list[str]:
    """One line per GPU: its boot chain, and who a multi-GPU model waits for."""
    lines = []
    for gpu in plan.gpus:
        joiner = " -> " if gpu.boot == "sequential" else ", "
        chain = joiner.join(m.name + (f" (TP {m.gpu_label})" if m.tensor_parallel > 1 else "") for m in gpu.models)
        lines.append(f"GPU {gpu.index} ({gpu.boot}): {chain or '-'}")
    for m in plan.models:
        if m.tensor_parallel > 1 and m.after:
            waits = " and ".join(plan.by_service(a).name for a in m.after)
            lines.append(f"{m.name} starts once {waits} {'are' if len(m.after) > 1 else 'is'} healthy")
    return lines


def run(*, stack_path: Path, as_json: bool, output: Output, svg: Path | None = None) -> int:
    loaded = load_and_plan(stack_path)
    warn_risky(loaded, output)
    if svg is not None and str(svg) != "-":
        write(svg.parent, {svg.name: render_svg(loaded.plan, source_label(stack_path, svg.parent))})
    if as_json:
        output.raw(json.dumps(plan_dict(loaded.plan), indent=2) + "\n")
    elif svg is not None and str(svg) == "-":
        output.raw(render_svg(loaded.plan, source_label(stack_path, Path.cwd())))
    else:
        for table in plan_tables(loaded.plan):
            output.render(table)
        if len(loaded.plan.gpus) > 1:
            output.info("Boot chains (each GPU's chain boots in parallel with the others):")
        for line in chain_lines(loaded.plan):
            output.info("  " + line if len(loaded.plan.gpus) > 1 else line)
        for line in swap_lines(loaded.plan):
            output.info(line)
        for model in loaded.plan.models:
            for note in model.notes:
                output.note(f"{model.name}: {note}")
    if svg is not None and str(svg) != "-":
        output.info(f"wrote {svg.as_posix()}")
    return 0
