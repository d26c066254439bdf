"""Plan against what real vLLM did: the tables of the H200 truth check.

    python -m bench.gpu.report SUMMARY.json [SUMMARY.json ...] [--md OUT.md]

Each SUMMARY.json is what ``run_stack.py run`` wrote on the GPU host (the
planner's figures for every server, from ``plan --json``, are inside it next to
what vLLM logged and nvidia-smi showed). Prints, per server: the share, the
free memory at its start, weights, LoRA slots, KV cache, resident and peak
memory, plan against measured; then the three verdicts the calibration
promises (exit 1 when one fails):

- every planned "free at start" is at or below what vLLM saw, and not more
  than 0.8 GiB below it;
- LoRA slots within 5 % (measured: "Model loading took" with --enable-lora
  minus the same model's figure without it, from any of the summaries);
- nothing refused: every server healthy, no out-of-memory line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gpustack_compose import calibration as cal
from gpustack_compose.units import GiB

FREE_MARGIN_GIB = 0.8  # issue 18: "not wasteful (within ~0.8 GiB)"
LORA_TOLERANCE = 0.05


def servers(summaries: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for summary in summaries:
        for key, stack in summary.items():
            if key == "env":
                continue
            out.extend((key, server) for server in stack["servers"])
    return out


def base_weights(rows: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    """ "Model loading took" of each model run without LoRA (the smallest seen)."""
    found: dict[str, float] = {}
    for _, s in rows:
        if "--enable-lora" in s["cmd"] or s.get("weights_gib") is None:
            continue
        model = s["cmd"].split()[0]
        found[model] = min(found.get(model, s["weights_gib"]), s["weights_gib"])
    return found


def plan_resident_gib(plan: dict[str, Any]) -> float:
    weights = float(plan["weights_gib"]) * GiB
    lora = float(plan["lora_gib"]) * GiB
    return (weights + lora + int(plan["kv_cache_bytes"]) + cal.resident_overhead(round(weights))) / GiB


def table(rows: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[str]]:
    bases = base_weights(rows)
    lines = [
        "| stack / server | outcome | share plan / vLLM | free at start plan / vLLM (margin) | weights plan / logged "
        "| LoRA slots plan / measured | KV plan = logged | KV tokens plan / logged | resident plan / idle "
        "| peak plan / burst |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    failures = []
    for key, s in rows:
        plan = s["plan"]
        name = f"{key} / {s['service']}"
        margin = s["free_at_start_gib"] - plan["free_at_start_gib"]
        if margin < 0:
            failures.append(
                f"{name}: planned free at start {plan['free_at_start_gib']} GiB > vLLM's {s['free_at_start_gib']}"
            )
        elif margin > FREE_MARGIN_GIB:
            failures.append(f"{name}: planned free at start {margin:.2f} GiB below vLLM's (wasteful)")
        lora = "-"
        if plan["lora_gib"]:
            model = s["cmd"].split()[0]
            measured = s["weights_gib"] - bases[model] if model in bases else None
            if measured is None:
                lora = f"{plan['lora_gib']:.3f} / (no run without LoRA)"
            else:
                off = (plan["lora_gib"] - measured) / measured
                lora = f"{plan['lora_gib']:.3f} / {measured:.2f} ({off:+.1%})"
                if abs(off) > LORA_TOLERANCE:
                    failures.append(f"{name}: LoRA slots {plan['lora_gib']:.3f} GiB planned, {measured:.2f} measured")
        healthy = s["outcome"].startswith("healthy")
        if not healthy or s.get("oom_lines"):
            failures.append(f"{name}: {s['outcome']}, {s.get('oom_lines', 0)} out-of-memory lines")
        idle = s["gpu_mib"]["idle"] / 1024
        peak = s["gpu_mib"]["burst_peak"] / 1024
        plan_peak = plan.get("peak_gib") or plan["share_gib"] + (cal.CUDA_CONTEXT + cal.CUDA_GRAPHS) / GiB
        lines.append(
            f"| {name} | {s['outcome']} | {plan['share_gib']:.2f} / {s['requested_gib']:.2f} "
            f"| {plan['free_at_start_gib']:.2f} / {s['free_at_start_gib']:.2f} ({margin:+.2f}) "
            f"| {plan['weights_gib']:.2f} / {s['weights_gib']:.2f} | {lora} "
            f"| {plan['kv_cache_gib']:.2f} = {s['kv_reserved_gib']:.2f} | {plan['kv_tokens']:,} / {s['kv_tokens']:,} "
            f"| {plan_resident_gib(plan):.2f} / {idle:.2f} | {plan_peak:.2f} / {peak:.2f} |"
        )
    return lines, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--md", type=Path, help="also write the tables and verdicts to this Markdown file")
    args = parser.parse_args(argv)
    rows = servers([json.loads(p.read_text()) for p in args.summaries])
    lines, failures = table(rows)
    verdict = ["", "Verdicts:"]
    verdict += [f"- FAIL {f}" for f in failures] or [
        "- every planned free-at-start is at or below what vLLM saw, within 0.8 GiB",
        "- LoRA slots within 5 %",
        "- nothing refused: every server healthy, no out-of-memory line",
    ]
    text = "\n".join(lines + verdict) + "\n"
    sys.stdout.write(text)
    if args.md is not None:
        args.md.write_text(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
