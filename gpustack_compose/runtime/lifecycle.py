"""A run of a stack on the engine -- production or its rehearsal -- from the
checks made before any container starts to the report ``up`` and
``rehearse`` both write.

The runtime imports no renderer: the command hands in what the render layer
does for the run (``Rendering``), so the layers stay one-way
(commands -> runtime, render; runtime -> spec, planner, contract).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import DockerException

from gpustack_compose.console import Output
from gpustack_compose.contract import ENV_EXAMPLE, ENV_FILE, GRAFANA_PASSWORD_ENV, MASTER_KEY_ENV
from gpustack_compose.errors import EngineError, SetupError
from gpustack_compose.loaded import Loaded
from gpustack_compose.runtime import compose, engine, images, kvcached, secrets, session
from gpustack_compose.runtime.state import DockerView
from gpustack_compose.runtime.target import ComposeProject, forget_rehearsal, prepare_rehearsal, production
from gpustack_compose.runtime.watch import TimelineEntry
from gpustack_compose.stand_in import Rehearsal, RehearsalOptions
from gpustack_compose.writer import FileState


@dataclass(frozen=True)
class Rendering:
    """What the render layer does for a run."""

    write: Callable[[], list[FileState]]  # render the output folder where it changed
    override: Callable[[RehearsalOptions], str]  # the rehearsal's Compose override
    differences: Callable[[RehearsalOptions], dict[str, list[str]]]  # per service, vs production


@dataclass
class RehearsalReport:
    stand_in: str
    model_image: str
    proxy_image: str
    differences_from_production: list[str]
    service_differences: dict[str, list[str]]
    plan_violations: list[str]


@dataclass
class RunReport:
    """The JSON document of a run (``--json`` / ``--report``)."""

    stack: str
    engine: dict[str, str]  # the Docker Engine's and Compose's versions
    project: str = ""
    ok: bool = False
    services: list[dict[str, Any]] = field(default_factory=list)
    smoke: list[dict[str, Any]] = field(default_factory=list)
    failure: dict[str, Any] | None = None
    rehearsal: RehearsalReport | None = None
    kvcached_limits: list[dict[str, Any]] | None = None
    swap: dict[str, Any] | None = None  # the rehearsal's swap check
    fallback: dict[str, Any] | None = None  # the rehearsal's fallback check
    monitoring: dict[str, Any] | None = None  # the rehearsal's monitoring check
    proxy: dict[str, Any] | None = None
    order_violations: list[str] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "stack": self.stack,
            "engine": self.engine,
            "services": self.services,
            "smoke": self.smoke,
            "failure": self.failure,
        }
        if self.rehearsal is not None:
            data["rehearsal"] = vars(self.rehearsal)
        data["project"] = self.project
        optional = {
            "kvcached_limits": self.kvcached_limits,
            "swap": self.swap,
            "fallback": self.fallback,
            "monitoring": self.monitoring,
            "proxy": self.proxy,
            "order_violations": self.order_violations,
            "error": self.error,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data


@dataclass
class Run:
    loaded: Loaded
    out_dir: Path
    target: ComposeProject
    view: DockerView
    report: RunReport
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def key(self) -> str:
        assert self.target.master_key is not None
        return self.target.master_key

    @property
    def stand_in(self) -> str | None:
        return self.report.rehearsal.stand_in if self.report.rehearsal else None


def open_run(
    loaded: Loaded, out_dir: Path, rendering: Rendering, output: Output, *, rehearsal: Rehearsal | None
) -> Run:
    """Everything checked before a container starts (the engine and Compose,
    the master key, the rehearsal's images); then the files rendered."""
    for violation in loaded.plan.violations:
        output.warn(f"plan check skipped (--unsafe-skip-fit-check): {violation}")
    client = engine.connect()
    version = engine.require_engine(client, loaded.stack.docker.min_engine)
    report = RunReport(
        stack=loaded.stack.name, engine={"docker": version, "compose": " ".join(compose.compose_command())}
    )
    if rehearsal is not None:
        target, report.rehearsal = _prepare_rehearsal(client, loaded, out_dir, rendering, rehearsal, output)
    else:
        _check_host_memory(client, loaded)
        target = production(loaded.stack, out_dir)
        if target.master_key is None:
            raise SetupError(
                f"{MASTER_KEY_ENV} is not set: copy {(out_dir / ENV_EXAMPLE).as_posix()} to "
                f"{(out_dir / ENV_FILE).as_posix()} and set it (or export it); the proxy refuses to start without it"
            )
        if loaded.stack.monitoring.enabled and secrets.secret(out_dir, GRAFANA_PASSWORD_ENV) is None:
            raise SetupError(
                f"{GRAFANA_PASSWORD_ENV} is not set (monitoring.enabled): set it in {(out_dir / ENV_FILE).as_posix()} "
                "(or export it); Grafana's admin password is never written into the rendered files"
            )
        _write(rendering, out_dir, output)
    report.project = target.project
    return Run(loaded, out_dir, target, DockerView(client), report)


def _check_host_memory(client: Any, loaded: Loaded) -> None:
    """swap.host_memory is the plan's figure; the host it runs on must have it
    (level-1 sleepers pin it from their first sleep on, for their life)."""
    budget, pinned = loaded.plan.host_memory_bytes, loaded.plan.pinned_host_bytes
    if not pinned or budget is None:
        return
    try:
        total = int(client.info().get("MemTotal") or 0)
    except DockerException as exc:
        raise EngineError(f"cannot read the engine host's memory: {exc}") from None
    if total and budget > total:
        raise SetupError(
            f"swap.host_memory {budget / 2**30:.2f} GiB is more than this host has ({total / 2**30:.2f} GiB, the "
            f"engine's MemTotal); level-1 sleepers would pin {pinned / 2**30:.2f} GiB: lower it, or move a model "
            "to level 2"
        )


def _prepare_rehearsal(
    client: Any, loaded: Loaded, out_dir: Path, rendering: Rendering, asked: Rehearsal, output: Output
) -> tuple[ComposeProject, RehearsalReport]:
    real_vllm = asked.stand_in == "vllm-cpu"
    if real_vllm and loaded.plan.swappables:
        names = ", ".join(m.name for m in loaded.plan.swappables)
        raise SetupError(
            f"{names} sleep when idle, and vLLM's sleep mode needs CUDA (its cumem allocator), which the CPU "
            "build lacks: rehearse this stack with the simulator (--engine simulator)"
        )
    built = images.ensure(client, lambda message: _unless_present(output, message), vllm_cpu=real_vllm)
    model_image = built.vllm_cpu if real_vllm and built.vllm_cpu else built.vllm_sim
    options = RehearsalOptions.of(
        asked,
        model_image=model_image,
        proxy_image=built.litellm,
        cpu_flags=engine.cpu_flags(client, built.base) if real_vllm else frozenset(),
        swap_image=built.swap,
    )
    _write(rendering, out_dir, output)
    target = prepare_rehearsal(loaded.stack, out_dir, rendering.override(options))
    common = [
        "GPU reservations (deploy.resources) removed",
        f"proxy published on {options.proxy_host}:{options.proxy_port or 'an ephemeral port'}",
    ]
    if not real_vllm:
        common.append(
            f"simulated load time fixed at {options.load_s} s"
            if options.load_s is not None
            else f"simulated load times: H100 cold-boot estimate x {options.time_scale}"
        )
    per_service = rendering.differences(options)
    for service, notes in per_service.items():
        for note in notes:
            if note.startswith("dropped"):
                output.info(f"{service}: {note}")
    report = RehearsalReport(
        stand_in=asked.stand_in,
        model_image=model_image,
        proxy_image=built.litellm,
        differences_from_production=common,
        service_differences=per_service,
        plan_violations=list(loaded.plan.violations),
    )
    return target, report


def _write(rendering: Rendering, out_dir: Path, output: Output) -> None:
    """`up` and `rehearse` render first when the stack file changed."""
    for state in rendering.write():
        if state.status != "identical":
            output.file_status(state.status, (out_dir / state.path).as_posix())


def _unless_present(output: Output, message: str) -> None:
    if not message.endswith(": present"):
        output.info(message)


def boot_and_wait(run: Run, timeout_s: float | None, output: Output) -> None:
    """Start, follow the boot, wait until the proxy routes every name.
    Raises BootError (exit 4) naming the failed service."""
    stack = run.loaded.stack
    chain = session.links(stack, run.loaded.plan)
    output.info(f"starting {stack.name} as compose project {run.target.project}")
    result = session.boot(
        project=run.target.project,
        files=run.target.files,
        project_dir=run.out_dir,
        env=run.target.env,
        chain=chain,
        view=run.view,
        output=output,
        timeout_s=timeout_s or session.default_timeout(chain),
    )
    run.report.services, run.report.failure = session.boot_report(result)
    run.timeline = result.watch.timeline()
    session.conclude(result, output)
    caps = kvcached.limits(stack, run.loaded.plan)
    # vLLM's CPU build has no kvcached (rehearsal.differences says so)
    if caps and run.stand_in != "vllm-cpu":
        running = {name: state.container_id for name, state in run.view.services(run.target.project).items()}
        run.report.kvcached_limits = kvcached.apply(run.view.client, running, stack, run.loaded.plan)
        for cap in run.report.kvcached_limits:
            output.info(f"kvcached: {cap['model']} may borrow up to {cap['limit_bytes'] // 2**20:,} MiB ({cap['ipc']})")
    proxy = session.proxy_client(run.view, run.target.project, run.key)
    try:
        ready = session.wait_for_proxy(proxy, session.served_names(stack), output)
    finally:
        proxy.close()
    run.report.proxy = {"url": proxy.base_url, "ready_s": round(ready, 3)}


def down(run: Run) -> None:
    compose.run(
        ["--project-directory", str(run.out_dir), "down", "-v", "--remove-orphans", "--timeout", "10"],
        project=run.target.project,
        files=run.target.files,
        env=run.target.env,
        timeout=300,
    )


def teardown_rehearsal(run: Run) -> None:
    down(run)
    forget_rehearsal(run.loaded.stack)


def emit_report(run: Run, output: Output, *, as_json: bool, path: Path | None) -> None:
    text = json.dumps(run.report.as_dict(), indent=2) + "\n"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if as_json:
        output.raw(text)
