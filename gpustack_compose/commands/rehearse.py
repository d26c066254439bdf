"""``rehearse``: boot the rendered stack on Docker without a GPU, check it, tear it down.

The production files, plus an override: vLLM replaced by the simulator, GPU
reservations dropped, the real LiteLLM proxy in front. Checks the boot order
from the engine's timestamps and smoke-tests every model and adapter through
the proxy; the report is JSON (``--report FILE`` / ``--json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpustack_compose.commands.lifecycle import (
    RehearsalSettings,
    boot_and_wait,
    down,
    emit_report,
    open_session,
    teardown_rehearsal,
)
from gpustack_compose.console import Output
from gpustack_compose.errors import GscError
from gpustack_compose.runtime import session
from gpustack_compose.runtime.watch import order_violations


@dataclass(frozen=True)
class Options:
    report: Path | None
    settings: RehearsalSettings
    keep: bool
    timeout_s: float | None
    skip_fit_check: bool
    as_json: bool = False


def run(stack_path: Path, out: Path | None, options: Options, output: Output) -> int:
    if options.as_json:
        output.json_mode()
    s = open_session(stack_path, out, output, rehearsal=options.settings, enforce=not options.skip_fit_check)
    down(s)  # a clean slate: nothing left from an earlier rehearsal
    try:
        boot_and_wait(s, options.timeout_s, output)
        violations = order_violations(s.timeline)
        s.report["order_violations"] = violations
        proxy = session.proxy_client(s.view, s.target.project, s.key)
        try:
            results = session.smoke(proxy, session.served_names(s.loaded.stack), output)
        finally:
            proxy.close()
        s.report["smoke"] = [r.as_dict() for r in results]
        if violations:
            raise GscError("boot order violated: " + "; ".join(violations))
        failed = [r for r in results if not r.ok]
        if failed:
            raise GscError("smoke test failed for " + ", ".join(f"{r.model} ({r.status}: {r.detail})" for r in failed))
        s.report["ok"] = True
        output.info(f"rehearsal of {s.loaded.stack.name} passed: {len(results) - 1} routes answered, boot order held")
    except GscError as exc:
        s.report["error"] = exc.message
        raise
    finally:
        emit_report(s, output, options.as_json, options.report)
        if options.keep:
            output.info(f"kept running as {s.target.project}: status/smoke/logs/down --rehearsal")
        else:
            teardown_rehearsal(s)
    return 0
