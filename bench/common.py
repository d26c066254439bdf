"""What the benchmarks share: machine facts, running the CLI, the results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    met: bool | None = None  # target met?

    def add(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)


def cli(args: list[str], cwd: Path, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpustack_compose", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def rehearse(stack: Path, extra: list[str], timeout: float = 3600) -> dict[str, Any]:
    report = stack.with_suffix(".report.json")
    proc = cli(["rehearse", stack.name, "--report", report.name, *extra], stack.parent, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"rehearsal of {stack} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def machine_facts() -> list[str]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f"{kib / 1024**2:.1f} GiB"
    engine = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    compose = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; memory {memory}",
        f"- OS: {platform.platform()}; Python {platform.python_version()}",
        f"- Docker Engine {engine.stdout.strip() or 'n/a'}; Compose {compose.stdout.strip() or 'n/a'}",
    ]


def write_results(sections: list[Section], when: str) -> None:
    lines = ["# Benchmark results", "", f"Measured {when} with `make bench` on:", "", *machine_facts(), ""]
    for section in sections:
        verdict = "" if section.met is None else (" -- target met" if section.met else " -- target NOT met")
        lines += [f"## {section.title}{verdict}", "", *section.lines, ""]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n")
