"""``rehearse``: boot the rendered stack on Docker without a GPU, check it, tear it down.

The production files, plus an override: vLLM replaced by a stand-in (the
simulator, or vLLM's CPU build), GPU reservations dropped, the real LiteLLM
proxy in front. Checks the boot order from the engine's timestamps and
smoke-tests every model and adapter through the proxy; the report is JSON
(``--report FILE`` / ``--json``).
"""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import output_dir, rendering
from gpustack_compose.console import Output
from gpustack_compose.errors import CheckError, GscError
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.runtime import fallback_check, monitoring_check, session, swap_check
from gpustack_compose.runtime.lifecycle import boot_and_wait, down, emit_report, open_run, teardown_rehearsal
from gpustack_compose.runtime.watch import order_violations
from gpustack_compose.stand_in import Rehearsal


def run(
    *,
    stack_path: Path,
    out: Path | None,
    rehearsal: Rehearsal,
    report: Path | None,
    keep: bool,
    timeout_s: float | None,
    skip_fit_check: bool,
    as_json: bool,
    output: Output,
) -> int:
    if as_json:
        output.json_mode()
    loaded = load_and_plan(stack_path, enforce=not skip_fit_check)
    out_dir = output_dir(loaded, out)
    started = open_run(loaded, out_dir, rendering(loaded, out_dir), output, rehearsal=rehearsal)
    down(started)  # a clean slate: nothing left from an earlier rehearsal
    try:
        boot_and_wait(started, timeout_s, output)
        violations = order_violations(started.timeline)
        started.report.order_violations = violations
        proxy = session.proxy_client(started.view, started.target.project, started.key)
        try:
            results = session.smoke(proxy, session.served_names(loaded.stack), output)
            swap = swap_check.check(started.view.client, started.target.project, proxy, loaded.plan) if (
                loaded.plan.swappables
            ) else None  # fmt: skip
            # before the fallback check stops a server: every query answers for every model
            monitored = monitoring_check.check(
                started.view, started.target.project, proxy, loaded.stack, loaded.plan
            ) if loaded.stack.monitoring.enabled and all(r.ok for r in results) else None  # fmt: skip
            stopped = fallback_check.candidate(loaded.stack, loaded.plan)
            fallback = fallback_check.check(
                started.view, started.target.project, proxy, loaded.stack, loaded.plan, stopped
            ) if stopped is not None and all(r.ok for r in results) else None  # fmt: skip
        finally:
            proxy.close()
        started.report.smoke = [r.as_dict() for r in results]
        if fallback is not None:
            started.report.fallback = fallback.as_dict()
            _print_fallback(fallback, output)
        if monitored is not None:
            started.report.monitoring = monitored.as_dict()
            _print_monitoring(monitored, output)
        if swap is not None:
            started.report.swap = swap.as_dict()
            _print_swap(swap, output)
            if swap.problems:
                raise CheckError("swap check failed: " + "; ".join(swap.problems))
        if violations:
            raise CheckError("boot order violated: " + "; ".join(violations))
        if monitored is not None and monitored.problems:
            raise CheckError("monitoring check failed: " + "; ".join(monitored.problems))
        if fallback is not None and fallback.problems:
            raise CheckError("fallback check failed: " + "; ".join(fallback.problems))
        failed = [r for r in results if not r.ok]
        if failed:
            raise CheckError(
                "smoke test failed for " + ", ".join(f"{r.model} ({r.status}: {r.detail})" for r in failed)
            )
        started.report.ok = True
        swapped = f", {len(swap.results)} requests across the swap sets answered" if swap is not None else ""
        fell_back = f", {fallback.model} stopped: answered by {fallback.result.answered_by}" if fallback else ""
        if monitored is not None:
            fell_back += f", {sum(1 for r in monitored.results if not r.skipped)} dashboard queries answered"
        output.info(
            f"rehearsal of {loaded.stack.name} passed: {len(results) - 1} routes answered{swapped}{fell_back}, "
            "boot order held"
        )
    except GscError as exc:
        started.report.error = exc.message
        raise
    finally:
        emit_report(started, output, as_json=as_json, path=report)
        if keep:
            output.info(f"kept running as {started.target.project}: status/smoke/logs/down --rehearsal")
        else:
            teardown_rehearsal(started)
    return 0


def _print_swap(swap: swap_check.SwapCheck, output: Output) -> None:
    for name, model in swap.state.get("models", {}).items():
        latency = model.get("last_wake_s")
        output.info(
            f"  swap: {name}: {model.get('wakes', 0)} wakes, {model.get('sleeps', 0)} sleeps, "
            f"{model.get('failed_wakes', 0)} failed"
            + (f", last wake {latency * 1000:.0f} ms" if latency is not None else "")
        )


def _print_fallback(check: fallback_check.FallbackCheck, output: Output) -> None:
    result = check.result
    latency = f" in {result.latency_s:.1f} s" if result.latency_s is not None else ""
    answer = f"answered by {result.answered_by}{latency}" if result.ok else f"FAILED: {result.status} {result.detail}"
    back = f"{check.back_healthy_s:.1f} s" if check.back_healthy_s is not None else "not healthy again"
    output.info(f"  fallback: {check.model} stopped, a request to it {answer}; started again, healthy after {back}")


def _print_monitoring(check: monitoring_check.MonitoringCheck, output: Output) -> None:
    up = sum(1 for health in check.targets.values() if health == "up")
    output.info(f"  monitoring: Prometheus {check.prometheus} scrapes {up} of {len(check.targets)} targets")
    for result in check.results:
        if result.skipped:
            output.info(f"    skip {result.panel}: {result.expr} ({result.skipped})")
        else:
            mark = "ok  " if not result.missing else "FAIL"
            found = len(set(result.answered) & set(result.expected))
            output.info(f"    {mark} {result.panel}: {result.expr} -> {found} of {len(result.expected)} {result.by}")
