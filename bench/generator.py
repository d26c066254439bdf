"""Generator speed: `render` and `check` of a 100-model, 8-GPU stack, each a
whole new process (interpreter start, imports, parse, plan, render, write),
as a pre-commit hook runs it. Target: under 0.5 s."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, Section

TARGET_S = 0.5
RUNS = 7
# Small models so that 100 of them fit 8 cards with room for the auto split.
REPOS = ["Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B", "meta-llama/Llama-3.2-1B-Instruct", "google/gemma-3-1b-it"]


def stack_text() -> str:
    lines = ["name: hundred", "gpus: {count: 8, type: H100-80GB}", "models:"]
    for i in range(100):
        lines.append(f"  - {{name: m{i:03d}, model: {REPOS[i % 4]}, max_model_len: 4096, max_num_seqs: 4}}")
    return "\n".join(lines) + "\n"


def timed(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gpustack_compose", *args], cwd=cwd, capture_output=True,
                          text=True, check=False, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args}: exit {done.returncode}: {done.stderr}")
    return elapsed


def run() -> Section:
    section = Section("Generator speed: render and check of 100 models on 8 GPUs (issue 9)")
    with tempfile.TemporaryDirectory(prefix="gsc-bench-gen-") as tmp:
        work = Path(tmp)
        (work / "hundred.yaml").write_text(stack_text())
        baseline = [timed_python(work, "pass") for _ in range(RUNS)]
        imports = [timed_python(work, IMPORTS) for _ in range(RUNS)]
        renders = []
        for _ in range(RUNS):
            for leftover in (work / "compose").rglob("*") if (work / "compose").exists() else []:
                if leftover.is_file():
                    leftover.unlink()  # every render writes all five files
            renders.append(timed(["render", "hundred.yaml"], work))
        checks = [timed(["check", "hundred.yaml"], work) for _ in range(RUNS)]
        size = sum(p.stat().st_size for p in (work / "compose").rglob("*") if p.is_file())
    section.add(f"A stack of 100 models (4 small catalog models, `memory: auto`, placed by the planner) on "
                f"`gpus: {{count: 8, type: H100-80GB}}`; each command a new `python -m gpustack_compose` process, "
                f"{RUNS} runs; {size / 1024:.0f} KiB rendered.")  # fmt: skip
    section.add("")
    section.add("| command | median | slowest | target |")
    section.add("|:--|--:|--:|--:|")
    rows = [
        ("`python -c pass` (interpreter alone)", baseline),
        ("imports alone (click, pydantic, jinja2, PyYAML)", imports),
        ("`render` (writes every file)", renders),
        ("`check` (renders in memory, compares)", checks),
    ]
    for label, values in rows:
        target = f"< {TARGET_S} s" if values in (renders, checks) else ""
        section.add(f"| {label} | {statistics.median(values):.3f} s | {max(values):.3f} s | {target} |")
    section.data = {"render_median_s": statistics.median(renders), "check_median_s": statistics.median(checks)}
    section.met = statistics.median(renders) < TARGET_S and statistics.median(checks) < TARGET_S
    section.add("")
    floor = statistics.median(imports)
    work_s = statistics.median(checks) - floor
    section.add(f"Of a `check`, {floor:.2f} s is starting Python and importing the libraries the spec model and the "
                f"templates stand on; reading, planning, rendering and comparing 100 models is {work_s:.2f} s. "
                "Commands import only what they use (no Docker SDK, HTTP client or rich for render/check when "
                "piped), and compiled templates are cached between runs.")  # fmt: skip
    return section


IMPORTS = "import gpustack_compose.cli, gpustack_compose.commands.check"


def timed_python(cwd: Path, code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True, env={"PYTHONPATH": str(REPO)})
    return time.perf_counter() - started
