"""Planning a stack that serves 10,000 LoRA adapters from one model: CPU time
of a whole `plan` process (the hardening issue's bound: under 5 s of CPU)."""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, Section

ADAPTERS = 10_000
TARGET_CPU_S = 5.0
RUNS = 3


def stack_text() -> str:
    lines = ["name: adapters", "gpus: [{index: 0, type: H100-80GB}]", "models:", "  - name: llama",
             "    model: meta-llama/Llama-3.1-8B-Instruct", "    memory: 0.8", "    max_model_len: 8192",
             "    max_lora_rank: 8", "    loras:"]  # fmt: skip
    lines += [f"      - {{name: a{i}, repo: org/a{i}, rank: 8}}" for i in range(ADAPTERS)]
    return "\n".join(lines) + "\n"


def cpu_seconds(work: Path) -> float:
    """User + system CPU of one `plan` process (its children's rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "gpustack_compose", "plan", "adapters.yaml"], cwd=work,
                          capture_output=True, text=True, check=False, env={"PYTHONPATH": str(REPO)})  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"plan: exit {done.returncode}: {done.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run() -> Section:
    section = Section(f"Planning {ADAPTERS:,} LoRA adapters of one model (issue 21)")
    with tempfile.TemporaryDirectory(prefix="gsc-bench-adapters-") as tmp:
        work = Path(tmp)
        (work / ".git").mkdir()
        (work / "adapters.yaml").write_text(stack_text())
        runs = [cpu_seconds(work) for _ in range(RUNS)]
    section.add(f"`plan` of one Llama-3.1-8B serving {ADAPTERS:,} Hub adapters (rank 8), a new process each, "
                f"{RUNS} runs; CPU time (user + system) from the process's rusage, so a loaded machine does not "
                "inflate it.")  # fmt: skip
    section.add("")
    section.add("| command | median CPU | most | target |")
    section.add("|:--|--:|--:|--:|")
    section.add(f"| `plan` | {statistics.median(runs):.2f} s | {max(runs):.2f} s | < {TARGET_CPU_S:.0f} s |")
    section.data = {"plan_cpu_median_s": statistics.median(runs)}
    section.met = max(runs) < TARGET_CPU_S
    return section
