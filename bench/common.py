"""What the benchmarks share: machine facts, running the CLI, the results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


SECTIONS = REPO / "bench" / "results"


def write_results(sections: dict[str, Section], order: list[str], when: str) -> None:
    """Each benchmark's section goes to bench/results/<name>.md (so one can be
    re-run alone); RESULTS.md is all of them, in ``order``, with the machine."""
    SECTIONS.mkdir(exist_ok=True)
    for name, section in sections.items():
        verdict = "" if section.met is None else (" -- target met" if section.met else " -- target NOT met")
        body = [f"## {section.title}{verdict}", "", f"Measured {when}.", "", *section.lines]
        (SECTIONS / f"{name}.md").write_text("\n".join(body).rstrip() + "\n")
    lines = ["# Benchmark results", "", "Reproduce with `make bench` (or `python -m bench NAME`) on:", "",
             *machine_facts(), ""]  # fmt: skip
    for name in order:
        part = SECTIONS / f"{name}.md"
        if part.exists():
            lines += [part.read_text().rstrip(), ""]
    RESULTS.write_text("\n".join(lines).rstrip() + "\n")


@dataclass
class Load:
    """Chat completions sent by ``concurrency`` clients, ``count`` in all."""

    latencies_s: list[float]
    failures: list[str]
    wall_s: float

    @property
    def sent(self) -> int:
        return len(self.latencies_s) + len(self.failures)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0


def load(
    url: str, model: str, concurrency: int, count: int, headers: dict[str, str] | None = None, retries: int = 0
) -> Load:
    """``retries``: resend after a connection-level error (the server closed
    the connection without answering), as the OpenAI SDK does by default
    (max_retries=2, exponential backoff from 0.5 s)."""
    import threading
    import time

    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 8}
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    remaining = [count]

    def worker() -> None:
        with httpx.Client(timeout=60, headers=headers or {}) as client:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                for attempt in range(retries + 1):
                    try:
                        response = client.post(url, json=body)
                        ok = response.status_code == 200
                        detail = f"HTTP {response.status_code}"
                        break
                    except httpx.TransportError as exc:
                        ok, detail = False, type(exc).__name__
                        if attempt < retries:
                            time.sleep(0.5 * 2**attempt)
                    except httpx.HTTPError as exc:
                        ok, detail = False, type(exc).__name__
                        break
                elapsed = time.perf_counter() - started
                with lock:
                    (latencies.append(elapsed) if ok else failures.append(detail))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Load(latencies, failures, time.perf_counter() - started)


def open_rehearsal(stack_path: Path, out_dir: Path, output: Any, load_s: float) -> Any:
    """A rehearsal opened the way `rehearse` opens one (the product's own run code)."""
    from gpustack_compose.commands.common import rendering
    from gpustack_compose.loaded import load_and_plan
    from gpustack_compose.runtime.lifecycle import open_run
    from gpustack_compose.stand_in import Rehearsal

    loaded = load_and_plan(stack_path)
    return open_run(loaded, out_dir, rendering(loaded, out_dir), output, rehearsal=Rehearsal(load_s=load_s))


@contextmanager
def running_rehearsal(name: str, stack_text: str, load_s: float = 1) -> Iterator[Any]:
    """A rehearsal of ``stack_text`` booted with the product's own session code
    (proxy routing every model), torn down on exit; yields the session."""
    import tempfile

    from gpustack_compose.console import Output
    from gpustack_compose.runtime import lifecycle

    output = Output()
    with tempfile.TemporaryDirectory(prefix=f"gsc-bench-{name}-") as tmp:
        work = Path(tmp)
        (work / ".git").mkdir()  # the project root adapters are checked against
        (work / f"{name}.yaml").write_text(stack_text)
        s = open_rehearsal(work / f"{name}.yaml", work / "out", output, load_s)
        try:
            lifecycle.boot_and_wait(s, None, output)
            yield s
        finally:
            lifecycle.teardown_rehearsal(s)


def service_container(s: Any, service: str) -> Any:
    """The running container of a compose service in a session's project."""
    labels = [f"com.docker.compose.project={s.target.project}", f"com.docker.compose.service={service}"]
    return s.view.client.containers.list(filters={"label": labels})[0]
