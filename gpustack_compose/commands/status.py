"""``status``: one table of the stack's services, read from the engine."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from gpustack_compose.console import Output
from gpustack_compose.contract import (
    FRACTION_LABEL,
    GPU_LABEL,
    MODEL_LABEL,
    PROXY_SERVICE,
    ROLE_FIRST_SLEEP,
    ROLE_LABEL,
    ROLE_SWAP,
    SWAP_SERVICE,
    first_sleep_service,
    rehearsal_project,
)
from gpustack_compose.errors import EngineError
from gpustack_compose.loaded import Loaded, load_and_plan
from gpustack_compose.runtime import engine, plan_vs_reality, swap_check
from gpustack_compose.runtime.state import DockerView, ServiceState, iso
from gpustack_compose.units import fmt_fraction


def _uptime(state: ServiceState, now: datetime) -> str:
    if state.status != "running" or state.started_at is None:
        return "-"
    seconds = int(max(0.0, (now - state.started_at).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _condition(state: ServiceState | None) -> str:
    if state is None:
        return "absent"
    if state.status == "running" and state.health:
        return f"running ({state.health})"
    if state.status == "exited":
        return f"exited ({state.exit_code})"
    return state.status


def rows(expected: list[tuple[str, str, str, str]], states: dict[str, ServiceState]) -> list[dict[str, Any]]:
    """One row per expected service (role, model, GPU, fraction from the plan),
    then any other container of the project."""
    now = datetime.now(UTC)
    out = []
    seen = set()
    for service, role, gpu, fraction in expected:
        state = states.get(service)
        seen.add(service)
        out.append(_row(service, role, gpu, fraction, state, now))
    for service, state in sorted(states.items()):
        if service not in seen:
            labels = state.labels
            out.append(_row(service, labels.get(ROLE_LABEL, "?"), labels.get(GPU_LABEL, "-"),
                            labels.get(FRACTION_LABEL, "-"), state, now))  # fmt: skip
    return out


def _row(service: str, role: str, gpu: str, fraction: str, state: ServiceState | None, now: datetime) -> dict[str, Any]:
    return {
        "service": service,
        "role": role,
        "model": state.labels.get(MODEL_LABEL) if state else None,
        "gpu": gpu,
        "fraction": fraction,
        "state": _condition(state),
        "started_at": iso(state.started_at) if state else None,
        "uptime": _uptime(state, now) if state else "-",
        "restarts": state.restart_count if state else 0,
    }


def run(*, stack_path: Path, as_json: bool, rehearsal: bool, output: Output, watch_s: float | None = None) -> int:
    loaded = load_and_plan(stack_path)
    project = rehearsal_project(loaded.stack.name) if rehearsal else loaded.stack.name
    view = DockerView(engine.connect())
    if watch_s is None:
        _show(loaded, project, view, stack_path, rehearsal, as_json, output)
        return 0
    try:
        while True:  # until Ctrl-C
            if not as_json:
                output.clear()
            _show(loaded, project, view, stack_path, rehearsal, as_json, output)
            time.sleep(watch_s)
    except KeyboardInterrupt:
        return 0


def _show(loaded: Loaded, project: str, view: DockerView, stack_path: Path, rehearsal: bool, as_json: bool,
          output: Output) -> None:  # fmt: skip
    states = view.services(project)
    expected = [(m.service, "model", m.gpu_label, fmt_fraction(m.fraction)) for m in loaded.plan.boot_ordered()]
    swappable = loaded.plan.swappables
    expected += [(first_sleep_service(m.service), ROLE_FIRST_SLEEP, m.gpu_label, "-") for m in swappable]
    if swappable:
        expected.append((SWAP_SERVICE, ROLE_SWAP, "-", "-"))
    expected.append((PROXY_SERVICE, "proxy", "-", "-"))
    table_rows = rows(expected, states)
    if swappable and states:
        sleep = _sleep_states(view, project)
        for row in table_rows:
            if row["role"] == "model" and row["model"] in {m.name for m in swappable}:
                row["sleep"] = sleep.get(row["model"], sleep.get("", {}))
    versus = plan_vs_reality.compare(view.client, loaded.plan, states, rehearsal) if states else None
    if as_json:
        document: dict[str, Any] = {"project": project, "services": table_rows}
        if versus is not None:
            document["plan_vs_reality"] = versus.as_dict()
        output.raw(json.dumps(document, indent=2) + "\n")
        return
    if not states:
        flag = " --rehearsal" if rehearsal else ""
        output.info(f"{project}: no containers (start it with: gpustack-compose up{flag} {stack_path.as_posix()})")
        return
    table = Table(title=f"{project}", title_justify="left")
    headers = ["service", "role", "gpu", "fraction", "state", "uptime", "restarts"] + (["sleep"] if swappable else [])
    for header in headers:
        table.add_column(header)
    for row in table_rows:
        cells = [row["service"], row["role"], row["gpu"], row["fraction"], row["state"], row["uptime"],
                 str(row["restarts"])]  # fmt: skip
        if swappable:
            cells.append(_sleep_cell(row.get("sleep")))
        table.add_row(*cells)
    output.render(table)
    if versus is not None:
        output.render(plan_vs_reality.table(versus))
        for line in versus.notes():
            output.info(line)


def _sleep_states(view: DockerView, project: str) -> dict[str, dict[str, Any]]:
    """Per swappable model: awake or asleep, its last wake (when, how long), as
    the coordinator knows them; one entry under "" when it cannot be asked."""
    try:
        state = swap_check.coordinator_state(view.client, project)
    except EngineError as exc:
        return {"": {"phase": "unknown", "error": exc.message}}
    out = {}
    for name, model in state.get("models", {}).items():
        at = model.get("last_wake_at")
        out[name] = {
            "phase": model.get("phase"),
            "inflight": model.get("inflight"),
            "wakes": model.get("wakes"),
            "failed_wakes": model.get("failed_wakes"),
            "last_wake_at": iso(datetime.fromtimestamp(at, UTC)) if isinstance(at, (int, float)) else None,
            "last_wake_s": model.get("last_wake_s"),
        }
    return out


def _sleep_cell(sleep: dict[str, Any] | None) -> str:
    if not sleep:
        return "-"
    text = str(sleep.get("phase"))
    if sleep.get("last_wake_at"):
        text += f", woke {str(sleep['last_wake_at'])[11:19]} in {float(sleep['last_wake_s']):.2f} s"
    if sleep.get("failed_wakes"):
        text += f", {sleep['failed_wakes']} failed wakes"
    if sleep.get("error"):
        text += f" ({sleep['error']})"
    return text
