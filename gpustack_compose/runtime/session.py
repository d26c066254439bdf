"""Bring a rendered stack up and follow its boot: shared by ``up`` and ``rehearse``.

``docker compose up -d`` itself walks the depends_on chains (it blocks until
each dependency is healthy), so it runs in the background while the engine is
polled for every container's state; the watcher turns those snapshots into
phases, a failure (with its log and what it blocked) or a timeline.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table

from gpustack_compose import healthcheck
from gpustack_compose.console import Output
from gpustack_compose.contract import PROXY_PORT, PROXY_SERVICE, SWAP_SERVICE, first_sleep_service
from gpustack_compose.errors import BootError
from gpustack_compose.planner import Plan
from gpustack_compose.runtime import compose
from gpustack_compose.runtime.proxy import ProxyClient, SmokeResult
from gpustack_compose.runtime.state import EngineView, iso
from gpustack_compose.runtime.watch import BootWatch, Link, Phase, TimelineEntry
from gpustack_compose.spec import StackSpec

LOG_TAIL = 50
POLL_S = 0.25
# After every service is healthy, `compose up -d` only has to return.
COMPOSE_EXIT_GRACE_S = 30


def links(stack: StackSpec, plan: Plan) -> list[Link]:
    """The boot graph: each model after its predecessor on its GPU; the proxy after all."""
    out = []
    sleepers = []
    for m in plan.boot_ordered():
        budget = healthcheck.timing(stack.docker.min_engine, m.boot_timeout_s).budget_s()
        after = tuple(first_sleep_service(a) if plan.by_service(a).swappable else a for a in m.after)
        out.append(Link(m.service, m.name, m.gpu_label, after, budget))
        if m.swappable:  # its first sleep: the next server on the card waits for it
            step = first_sleep_service(m.service)
            out.append(Link(step, m.name, m.gpu_label, (m.service,), m.first_sleep_timeout_s, one_shot=True))
            sleepers.append(step)
    proxy_budget = healthcheck.timing(stack.docker.min_engine, healthcheck.PROXY_START_PERIOD_S).budget_s()
    proxy_after = [m.service for m in plan.boot_ordered() if not m.swappable]
    if sleepers:
        out.append(Link(SWAP_SERVICE, None, None, tuple(sleepers), proxy_budget))
        proxy_after.append(SWAP_SERVICE)
    out.append(Link(PROXY_SERVICE, None, None, tuple(proxy_after), proxy_budget))
    return out


def default_timeout(chain: Sequence[Link]) -> float:
    """Longest possible boot: the slowest GPU chain's budgets, then the proxy's."""
    by_service = {link.service: link for link in chain}

    def finish(link: Link) -> float:
        return link.budget_s + max((finish(by_service[a]) for a in link.after if a in by_service), default=0.0)

    return max(finish(link) for link in chain) + 30


@dataclass
class BootResult:
    watch: BootWatch
    ok: bool
    failure: str | None
    failed_service: str | None
    log_tail: str
    never_started: list[str]
    compose_output: str


class Display:
    """Live table on a terminal; one line per change when piped (CI logs)."""

    def __init__(self, output: Output, title: str) -> None:
        self.output = output
        self.title = title
        self.live: Live | None = None
        if output.err.is_terminal:
            self.live = Live(console=output.err, refresh_per_second=4, transient=False)
            self.live.start()

    def update(self, watch: BootWatch, changes: list[str], now: datetime) -> None:
        if self.live is not None:
            self.live.update(self._table(watch, now))
        else:
            for change in changes:
                self.output.err.print(f"  {change}", markup=False, highlight=False)

    def _table(self, watch: BootWatch, now: datetime) -> Table:
        table = Table(title=self.title, title_justify="left")
        for header in ("service", "gpu", "state", "elapsed"):
            table.add_column(header)
        styles = {Phase.HEALTHY: "green", Phase.FAILED: "red", Phase.LOADING: "yellow", Phase.STARTING: "cyan"}
        for service, track in watch.tracks.items():
            end = track.healthy_at or now
            elapsed = f"{max(0.0, (end - track.started_at).total_seconds()):.1f} s" if track.started_at else ""
            style = styles.get(track.phase, "dim")
            table.add_row(service, track.link.gpu or "-", f"[{style}]{track.phase.value}[/]", elapsed)
        return table

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def boot(
    *,
    project: str,
    files: Sequence[Path],
    project_dir: Path,
    env: dict[str, str],
    chain: list[Link],
    view: EngineView,
    output: Output,
    timeout_s: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BootResult:
    watch = BootWatch(chain, since=clock())
    display = Display(output, f"booting {project}")
    process = compose.start(
        ["--project-directory", str(project_dir), "up", "-d", "--remove-orphans"],
        project=project,
        files=files,
        env=env,
    )
    deadline = time.monotonic() + timeout_s
    failure: str | None = None
    compose_output = ""
    try:
        while True:
            now = clock()
            changes = watch.observe(view.services(project), now)
            display.update(watch, changes, now)
            if watch.all_healthy or watch.failed:
                break
            code = process.poll()
            if code not in (None, 0):
                # Compose gave up before any container told us why (bad image,
                # port taken, ...): one more look, then report Compose's words.
                time.sleep(1)
                watch.observe(view.services(project), clock())
                if not watch.failed:
                    compose_output = process.stdout.read() if process.stdout else ""
                    failure = f"docker compose up failed (exit {code}): {_last_lines(compose_output, 8)}"
                    break
            if time.monotonic() > deadline:
                waiting = [s for s, t in watch.tracks.items() if t.phase != Phase.HEALTHY]
                failure = f"the stack was not healthy within {timeout_s:.0f} s (still waiting: {', '.join(waiting)})"
                break
            time.sleep(POLL_S)
    finally:
        display.close()
        compose_output = compose_output or _finish(process, grace_s=COMPOSE_EXIT_GRACE_S if watch.all_healthy else 0)

    if watch.failed:
        track = watch.failed[0]
        service = track.link.service
        tail = view.logs(track.container_id, LOG_TAIL) if track.container_id else ""
        blocked = watch.blocked_by(service)
        return BootResult(watch, False, f"{service} {track.failure}", service, tail, blocked, compose_output)
    if failure is not None:
        return BootResult(watch, False, failure, None, "", [], compose_output)
    return BootResult(watch, True, None, None, "", [], compose_output)


def _finish(process: subprocess.Popen[str], grace_s: float) -> str:
    try:
        out, _ = process.communicate(timeout=grace_s if grace_s else 0.1)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
    return out or ""


def _last_lines(text: str, count: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:]) or "(no output)"


def timeline_table(entries: list[TimelineEntry]) -> Table:
    table = Table(title="Boot timeline (UTC, from the engine's container state)", title_justify="left")
    for header in ("service", "gpu", "started", "healthy", "load", "gate latency"):
        table.add_column(header, justify="right" if header in ("load", "gate latency") else "left")
    for e in entries:
        table.add_row(
            e.service,
            e.gpu or "-",
            (iso(e.started_at) or "-")[11:],
            (iso(e.healthy_at) or "-")[11:],
            f"{e.load_s:.2f} s" if e.load_s is not None else "-",
            f"{e.gate_latency_s:.2f} s" if e.gate_latency_s is not None else "-",
        )
    return table


def failure_text(result: BootResult) -> str:
    """The log tail and the consequences, printed before the one-line error."""
    parts = []
    if result.failed_service and result.log_tail.strip():
        parts.append(f"--- last {LOG_TAIL} log lines of {result.failed_service} ---")
        parts.append(result.log_tail.rstrip())
        parts.append("---")
    return "\n".join(parts)


def failure_message(result: BootResult) -> str:
    message = f"{result.failure}"
    if result.never_started:
        message += f"; never started because of it: {', '.join(result.never_started)}"
    return message


def boot_report(result: BootResult) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The report's services (the timeline) and failure."""
    failure = None
    if not result.ok:
        failure = {
            "service": result.failed_service,
            "reason": result.failure,
            "never_started": result.never_started,
            "log_tail": result.log_tail.splitlines()[-LOG_TAIL:],
        }
    return [e.as_dict() for e in result.watch.timeline()], failure


def conclude(result: BootResult, output: Output) -> None:
    """Print the timeline; on failure the log tail, then raise BootError (exit 4)."""
    output.render(timeline_table(result.watch.timeline()))
    if not result.ok:
        text = failure_text(result)
        if text:
            output.err.print(text, markup=False, highlight=False)
        raise BootError(failure_message(result))


def served_names(stack: StackSpec) -> list[str]:
    """Every name the proxy must route: each model and each of its adapters."""
    return [name for m in stack.models for name in (m.name, *(lora.name for lora in m.loras))]


def proxy_client(view: EngineView, project: str, key: str) -> ProxyClient:
    bound = view.published_port(project, PROXY_SERVICE, PROXY_PORT)
    if bound is None:
        raise BootError(f"the proxy of {project} is not running or publishes no port")
    return ProxyClient(f"http://{bound[0]}:{bound[1]}", key)


def wait_for_proxy(client: ProxyClient, names: list[str], output: Output, timeout_s: float = 120) -> float:
    waited = client.wait_ready(names, timeout_s=timeout_s)
    output.info(f"proxy {client.base_url} routes all {len(names)} models ({waited:.1f} s after the boot)")
    return waited


def smoke(client: ProxyClient, names: list[str], output: Output) -> list[SmokeResult]:
    """One short chat per model and adapter with the key; one without it, refused."""
    results = [client.chat(name) for name in names]
    results.append(client.refuses_without_key())
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        latency = f" {r.latency_s * 1000:.0f} ms" if r.latency_s is not None else ""
        output.info(f"  {mark} {r.model}: HTTP {r.status}{latency} {r.detail}")
    return results
