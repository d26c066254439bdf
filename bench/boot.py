"""Boot a GPU's models in the time of one: time-to-ready of 2, 3 and 4 models
on one H100, sequential chain vs parallel boot with exact KV sizes.

The simulator replays the cold boots measured on the H100 (14B 123.1 s, 7B
83.0 s; the other models from the same measurements' line, 55 s + 2.45 s per
GiB of weights), scaled by SCALE to keep the run short. Target: a parallel
boot is ready within 1.1x the slowest model's own load time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import Section, rehearse
from gpustack_compose.runtime.state import parse_time

SCALE = 0.25
TARGET = 1.1
# (name, repo id, fraction, measured cold boot on the H100 in seconds or None)
MODELS = [
    ("qwen2.5-14b", "Qwen/Qwen2.5-14B-Instruct", 0.40, 123.1),
    ("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", 0.25, 83.0),
    ("llama-3.2-3b", "meta-llama/Llama-3.2-3B-Instruct", 0.13, None),
    ("qwen3-1.7b", "Qwen/Qwen3-1.7B", 0.08, None),
]


def load_time(repo: str, measured: float | None) -> float:
    if measured is not None:
        return measured
    from gpustack_compose.calibration import COLD_BOOT_BASE_S, COLD_BOOT_S_PER_WEIGHT_GIB
    from gpustack_compose.catalog import find_model
    from gpustack_compose.planner import weights_bytes
    from gpustack_compose.units import GiB

    found = find_model(repo)
    assert found is not None
    return COLD_BOOT_BASE_S + COLD_BOOT_S_PER_WEIGHT_GIB * weights_bytes(found[0].facts, 2, None) / GiB


def stack_file(work: Path, count: int, boot: str) -> tuple[Path, float]:
    lines = [f"name: bench-{boot}-{count}", f"gpus: [{{index: 0, type: H100-80GB, boot: {boot}}}]", "models:"]
    slowest = 0.0
    for name, repo, fraction, measured in MODELS[:count]:
        seconds = load_time(repo, measured) * SCALE
        slowest = max(slowest, seconds)
        lines.append(f'  - {{name: {name}, model: {repo}, memory: {fraction}, max_model_len: 8192, '
                     f'env: {{GSC_SIM_LOAD_S: "{seconds:.2f}"}}}}')  # fmt: skip
    lines.append("proxy: {workers: 1}")
    path = work / f"{boot}-{count}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, slowest


def ready_s(report: dict[str, Any]) -> float:
    models = [s for s in report["services"] if s["model"]]
    start = min(parse_time(s["started_at"]) for s in models)  # type: ignore[type-var]
    end = max(parse_time(s["healthy_at"]) for s in models)  # type: ignore[type-var]
    return (end - start).total_seconds()  # type: ignore[operator]


def run() -> Section:
    section = Section("Parallel boot: a GPU's models in the time of one (issue 11)")
    section.add(f"Simulated H100 cold boots x {SCALE} (14B 123.1 s, 7B 83.0 s measured; 3B and 1.7B from the "
                "same line), Docker healthcheck interval 2 s (Engine < 25). Time-to-ready: first model started "
                "-> last model healthy, from the engine's timestamps.")  # fmt: skip
    section.add("")
    section.add("| models | slowest load | sum of loads | sequential ready | parallel ready | parallel / slowest |")
    section.add("|--:|--:|--:|--:|--:|--:|")
    met = True
    with tempfile.TemporaryDirectory(prefix="gsc-bench-boot-") as tmp:
        work = Path(tmp)
        for count in (2, 3, 4):
            seq_file, slowest = stack_file(work, count, "sequential")
            par_file, _ = stack_file(work, count, "parallel")
            total = sum(load_time(repo, m) * SCALE for _, repo, _, m in MODELS[:count])
            sequential = ready_s(rehearse(seq_file, []))
            parallel = ready_s(rehearse(par_file, []))
            ratio = parallel / slowest
            met = met and ratio <= TARGET
            section.data[str(count)] = {"slowest_s": slowest, "sum_s": total, "sequential_s": sequential,
                                        "parallel_s": parallel, "ratio": ratio}  # fmt: skip
            section.add(f"| {count} | {slowest:.1f} s | {total:.1f} s | {sequential:.1f} s | {parallel:.1f} s | "
                        f"{ratio:.2f}x |")  # fmt: skip
    section.add("")
    section.add(f"Target: parallel ready within {TARGET}x the slowest model's own load time.")
    section.met = met
    return section
