"""Rehearsals and `up` on a real Docker engine with real Compose v2 and the real
LiteLLM proxy (the simulator stands in for vLLM). No mocks of Docker, Compose
or LiteLLM here."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from gpustack_compose.healthcheck import parse_engine_version
from gpustack_compose.runtime.engine import server_version
from gpustack_compose.runtime.state import DockerView, parse_time
from tests.conftest import run_module, unique, write

pytestmark = pytest.mark.docker


def stack_text(name: str, models: str, gpus: str = "[{index: 0, type: L40S}]", extra: str = "") -> str:
    return f"name: {name}\ngpus: {gpus}\nmodels:\n{models}proxy:\n  workers: 1\n{extra}"


THREE = """\
  - name: qwen2.5-1.5b
    model: Qwen/Qwen2.5-1.5B-Instruct
    memory: 0.3
    max_model_len: 8192
    loras:
      - name: invoices
        path: ./adapters/invoices
  - name: qwen3-0.6b
    model: Qwen/Qwen3-0.6B
    memory: 0.2
    max_model_len: 8192
  - name: llama-3.2-1b
    model: meta-llama/Llama-3.2-1B-Instruct
    memory: 0.2
    max_model_len: 8192
    fallbacks: [qwen3-0.6b]
"""


def report_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def services(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["service"]: s for s in report["services"]}


def t(value: str | None) -> Any:
    parsed = parse_time(value)
    assert parsed is not None, value
    return parsed


@pytest.mark.usefixtures("built_images")
def test_three_models_boot_strictly_in_chain_order(workdir: Path) -> None:
    name = unique("chain")
    write(workdir / "stacks" / "s.yaml", stack_text(name, THREE))
    write(workdir / "stacks" / "adapters" / "invoices" / "adapter_config.json", '{"r": 8, "peft_type": "LORA"}')
    result = run_module(["rehearse", "stacks/s.yaml", "--load-s", "2", "--report", "r.json"], workdir)
    assert result.code == 0, result.stderr
    report = report_of(workdir / "r.json")
    assert report["ok"] is True
    assert report["project"] == f"{name}-rehearsal"
    by = services(report)
    chain = ["qwen2-5-1-5b", "qwen3-0-6b", "llama-3-2-1b"]
    assert [by[s]["model"] for s in chain] == ["qwen2.5-1.5b", "qwen3-0.6b", "llama-3.2-1b"]
    # From the engine's own timestamps: each model started only after its
    # predecessor was healthy, and the proxy only after all of them.
    for before, after in itertools.pairwise(chain):
        assert t(by[after]["started_at"]) >= t(by[before]["healthy_at"])
        assert by[after]["gate_latency_s"] >= 0
    assert t(by["litellm"]["started_at"]) >= max(t(by[s]["healthy_at"]) for s in chain)
    for service in chain:
        assert by[service]["load_s"] >= 2.0  # the simulated load time
        assert by[service]["gpu"] == "0"
    assert report["order_violations"] == []
    # every model and the adapter answered through the real LiteLLM proxy
    smoke = {s["model"]: s for s in report["smoke"]}
    assert set(smoke) == {"qwen2.5-1.5b", "invoices", "qwen3-0.6b", "llama-3.2-1b", "(no key)"}
    assert all(s["ok"] for s in smoke.values())
    assert smoke["(no key)"]["status"] == 401
    assert "routes all 4 models" in result.stdout
    # its container stopped, llama-3.2-1b's requests are answered by its fallback
    fallback = report["fallback"]
    assert (fallback["model"], fallback["answered_by"], fallback["ok"]) == ("llama-3.2-1b", "qwen3-0.6b", True)
    assert fallback["request"]["latency_s"] < 30
    assert fallback["back_healthy_s"] is not None
    assert "llama-3.2-1b stopped: answered by qwen3-0.6b" in result.stdout
    # torn down
    assert DockerView(_client()).services(f"{name}-rehearsal") == {}


@pytest.mark.usefixtures("built_images")
def test_two_gpus_boot_their_chains_in_parallel(workdir: Path) -> None:
    name = unique("chains")
    models = """\
  - {name: a, model: Qwen/Qwen3-0.6B, gpu: 0, memory: 0.3, max_model_len: 4096, env: {GSC_SIM_LOAD_S: "4"}}
  - {name: b, model: Qwen/Qwen3-0.6B, gpu: 0, memory: 0.3, max_model_len: 4096, env: {GSC_SIM_LOAD_S: "4"}}
  - {name: c, model: Qwen/Qwen3-0.6B, gpu: 1, memory: 0.3, max_model_len: 4096, env: {GSC_SIM_LOAD_S: "4"}}
"""
    gpus = "[{index: 0, type: L40S}, {index: 1, type: L40S}]"
    write(workdir / "s.yaml", stack_text(name, models, gpus))
    result = run_module(["rehearse", "s.yaml", "--report", "r.json"], workdir)
    assert result.code == 0, result.stderr
    by = services(report_of(workdir / "r.json"))
    assert by["c"]["gpu"] == "1" and by["c"]["after"] == []
    # GPU 1's first model started before GPU 0's chain finished (b still loading)
    assert t(by["c"]["started_at"]) < t(by["b"]["healthy_at"])
    assert t(by["c"]["started_at"]) < t(by["a"]["healthy_at"])
    # while GPU 0 stayed strictly sequential
    assert t(by["b"]["started_at"]) >= t(by["a"]["healthy_at"])


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("hang", "is unhealthy"), ("crash", "")],
)
@pytest.mark.usefixtures("built_images")
def test_a_model_that_never_becomes_healthy(workdir: Path, mode: str, reason: str) -> None:
    name = unique(f"fail-{mode}")
    models = f"""\
  - {{name: first, model: Qwen/Qwen3-0.6B, memory: 0.3, max_model_len: 4096}}
  - name: broken
    model: Qwen/Qwen3-0.6B
    memory: 0.3
    max_model_len: 4096
    boot_timeout_s: 10
    env: {{GSC_SIM_FAIL: {mode}}}
  - {{name: after, model: Qwen/Qwen3-0.6B, memory: 0.3, max_model_len: 4096}}
"""
    write(workdir / "s.yaml", stack_text(name, models))
    try:
        result = run_module(["up", "--rehearsal", "s.yaml", "--load-s", "1", "--json"], workdir)
        assert result.code == 4, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: broken ")
        assert reason in last
        assert last.endswith("never started because of it: after, litellm")
        # its own log, as the engine kept it
        assert "--- last 50 log lines of broken ---" in result.stderr
        marker = "simulated hang" if mode == "hang" else "simulated engine crash"
        assert marker in result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is False
        assert report["failure"]["service"] == "broken"
        assert report["failure"]["never_started"] == ["after", "litellm"]
        # within its budget: start_period 10 s + 3 x (2 s interval + 10 s timeout)
        boot = services(report)
        assert t(boot["first"]["healthy_at"]) <= t(boot["broken"]["started_at"])
        # the models after it never started: their containers exist, never ran
        states = DockerView(_client()).services(f"{name}-rehearsal")
        assert states["after"].status == "created" and states["after"].started_at is None
        assert states["litellm"].status == "created"
    finally:
        down = run_module(["down", "--rehearsal", "s.yaml"], workdir)
        assert down.code == 0, down.stderr


@pytest.mark.usefixtures("built_images")
def test_gpu_ledger_refuses_an_oversubscribed_split_like_vllm(workdir: Path) -> None:
    """Past the planner (test-only escape hatch), the simulator plays the GPU:
    the second server refuses to start with vLLM's own words."""
    name = unique("oversub")
    models = """\
  - {name: a, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.6, max_model_len: 8192}
  - {name: b, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.5, max_model_len: 8192, boot_timeout_s: 30}
"""
    write(workdir / "s.yaml", stack_text(name, models, "[{index: 0, type: H100-80GB}]"))
    plan = run_module(["plan", "s.yaml"], workdir)
    assert plan.code == 1 and "the fractions sum to 1.1" in plan.stderr  # the planner says no
    result = run_module(["rehearse", "s.yaml", "--load-s", "1", "--unsafe-skip-fit-check"], workdir)
    assert result.code == 4, result.stderr
    assert "warning: plan check skipped (--unsafe-skip-fit-check): gpus[0]: GPU 0 (H100-80GB" in result.stderr
    # a holds its planned resident: 27.62 weights + 18.75 KV + 1.70 (1.04 + 2.4 % of the weights)
    # = 48.07 GiB, so b finds 79.18 - 0.52 reserve - 48.07 = 30.58 GiB free (real vLLM found 31.29
    # on the H100, exp. 3a: the plan errs on the safe side).
    assert (
        "ValueError: Free memory on device cuda:0 (30.58/79.18 GiB) on startup is less than desired GPU memory "
        "utilization (0.5, 39.59 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes."
    ) in result.stderr
    assert "error: b exited with code 1" in result.stderr or "error: b crashed" in result.stderr


def test_engine_older_than_the_stack_requires_is_refused_before_anything_starts(workdir: Path, engine: object) -> None:
    major, _ = parse_engine_version(server_version(engine))
    name = unique("engine")
    models = "  - {name: a, model: Qwen/Qwen3-0.6B, memory: 0.3, max_model_len: 4096}\n"
    write(workdir / "s.yaml", stack_text(name, models, extra=f'docker:\n  min_engine: "{major + 1}.0"\n'))
    for command in (["rehearse", "s.yaml"], ["up", "--rehearsal", "s.yaml"]):
        result = run_module(command, workdir)
        assert result.code == 1
        assert result.stderr.startswith(f"error: Docker Engine {server_version(engine)} is older than {major + 1}.0")
        assert "Traceback" not in result.stderr
    assert DockerView(engine).services(f"{name}-rehearsal") == {}
    assert not (workdir / "compose").exists()  # nothing rendered either


@pytest.mark.usefixtures("built_images")
def test_up_status_smoke_logs_down_on_a_rehearsal(workdir: Path) -> None:
    name = unique("life")
    models = """\
  - {name: a, model: Qwen/Qwen3-0.6B, memory: 0.3, max_model_len: 4096}
  - {name: b, model: Qwen/Qwen3-0.6B, memory: 0.3, max_model_len: 4096}
"""
    write(workdir / "s.yaml", stack_text(name, models))
    try:
        up = run_module(["up", "--rehearsal", "s.yaml", "--load-s", "1", "--json"], workdir)
        assert up.code == 0, up.stderr
        report = json.loads(up.stdout)
        assert report["ok"] is True
        for entry in report["services"]:
            assert set(entry) >= {"service", "model", "gpu", "started_at", "healthy_at", "load_s", "gate_latency_s"}
        status = run_module(["status", "--rehearsal", "s.yaml", "--json"], workdir)
        rows = {r["service"]: r for r in json.loads(status.stdout)["services"]}
        assert {r["state"] for r in rows.values()} == {"running (healthy)"}
        assert (rows["a"]["gpu"], rows["a"]["fraction"], rows["a"]["restarts"]) == ("0", "0.3", 0)
        smoke = run_module(["smoke", "--rehearsal", "s.yaml", "--json"], workdir)
        assert smoke.code == 0, smoke.stderr
        assert [r["ok"] for r in json.loads(smoke.stdout)["smoke"]] == [True, True, True]
        logs = run_module(["logs", "--rehearsal", "s.yaml", "b", "--tail", "20"], workdir)
        assert logs.code == 0
        assert "Starting vLLM API server on http://0.0.0.0:8000" in logs.stdout
        assert "b-1" in logs.stdout and "a-1" not in logs.stdout
    finally:
        down = run_module(["down", "--rehearsal", "s.yaml"], workdir)
        assert down.code == 0, down.stderr
    after = run_module(["status", "--rehearsal", "s.yaml"], workdir)
    assert "no containers" in after.stdout


def test_up_without_a_master_key_starts_nothing(workdir: Path, engine: object) -> None:
    name = unique("nokey")
    write(workdir / "s.yaml", stack_text(name, "  - {name: a, model: Qwen/Qwen3-0.6B, memory: 0.3}\n"))
    result = run_module(["up", "s.yaml"], workdir, env={"LITELLM_MASTER_KEY": ""})
    assert result.code == 1
    assert result.stderr == (
        f"error: LITELLM_MASTER_KEY is not set: copy compose/{name}/.env.example to compose/{name}/.env and set it "
        "(or export it); the proxy refuses to start without it\n"
    )
    assert DockerView(engine).services(name) == {}


def _client() -> Any:
    from gpustack_compose.runtime.engine import connect

    return connect()


def test_hostile_strings_reach_the_container_unchanged(workdir: Path, built_images: Any, engine: Any) -> None:
    """Quotes, $, backslashes, YAML syntax and unicode in env values and vLLM
    arguments arrive in the container exactly as written in the stack file."""
    from gpustack_compose.loader import load_stack
    from gpustack_compose.planner import plan_stack
    from gpustack_compose.rehearsal import override
    from gpustack_compose.render import render
    from gpustack_compose.runtime import compose
    from gpustack_compose.runtime.target import forget_rehearsal, prepare_rehearsal
    from gpustack_compose.stand_in import RehearsalOptions
    from gpustack_compose.vllm_args import serve_args
    from gpustack_compose.writer import write as write_files

    name = unique("hostile")
    note = "costs $5 ${HOME} $$ \"dq\" 'sq' \\\\ back # not a comment: {a: [b]} ünï ✓ 😀"
    config = '{"note": "$PATH", "k": "a\\"b"}'
    text = stack_text(
        name,
        f"""\
  - name: a
    model: acme/x$y
    memory: 0.3
    max_model_len: 4096
    env: {{NOTE: {json.dumps(note, ensure_ascii=False)}}}
    extra_args: ["--override-generation-config", {json.dumps(config)}]
    arch: {{params_b: 1, hidden_size: 512, intermediate_size: 1024, num_layers: 4, num_kv_heads: 2,
            num_attention_heads: 8, head_dim: 64, context_length: 4096}}
""",
    )
    write(workdir / "s.yaml", text)
    stack = load_stack(workdir / "s.yaml")
    assert stack.models[0].env["NOTE"] == note
    plan = plan_stack(stack)
    out_dir = workdir / "out"
    write_files(out_dir, render(stack, plan, "../s.yaml"))
    images: Any = built_images
    options = RehearsalOptions(model_image=images.vllm_sim, proxy_image=images.litellm)
    target = prepare_rehearsal(stack, out_dir, override(stack, plan, options))
    try:
        created = compose.run(["--project-directory", str(out_dir), "create"], project=target.project,
                              files=target.files, env=target.env, timeout=120)  # fmt: skip
        assert created.code == 0, created.stderr
        container = engine.containers.list(all=True, filters={"label": f"com.docker.compose.project={target.project}",
                                                              "name": "-a-"})[0]  # fmt: skip
        config_seen = container.attrs["Config"]
        assert config_seen["Cmd"] == serve_args(stack.models[0], plan.model("a"))
        assert "acme/x$y" in config_seen["Cmd"] and config in config_seen["Cmd"]
        assert f"NOTE={note}" in config_seen["Env"]
    finally:
        compose.run(["down", "-v"], project=target.project, files=target.files, env=target.env, timeout=120)
        forget_rehearsal(stack)


@pytest.mark.usefixtures("built_images")
def test_a_model_directory_rehearses_without_the_folder(workdir: Path) -> None:
    """A model directory of the GPU host (issue 17): rendered as a read-only
    bind at /models/<name>; the rehearsal puts a tmpfs there instead, so the
    engine needs no such folder."""
    import shutil

    from tests.conftest import REPO

    name = unique("dir")
    (workdir / "models" / "ft").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "data" / "model-configs" / "Qwen--Qwen2.5-7B-Instruct.json",
                workdir / "models" / "ft" / "config.json")  # fmt: skip
    write(
        workdir / "s.yaml", stack_text(name, "  - {name: ft, model: ./models/ft, memory: 0.5, max_model_len: 4096}\n")
    )
    assert run_module(["lock", "s.yaml"], workdir).code == 0
    shutil.rmtree(workdir / "models")  # the weights live on the GPU host only
    try:
        result = run_module(["rehearse", "s.yaml", "--load-s", "2", "--report", "r.json"], workdir)
        assert result.code == 0, result.stderr
        assert services(report_of(workdir / "r.json"))["ft"]["healthy_at"]
    finally:
        run_module(["down", "s.yaml", "--rehearsal"], workdir)


PARALLEL_MODELS = """\
  - {{name: a, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.45, max_model_len: 8192{extra}}}
  - {{name: b, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.3, max_model_len: 8192{extra}}}
  - {{name: c, model: meta-llama/Llama-3.2-3B-Instruct, memory: 0.15, max_model_len: 8192{extra}}}
"""


@pytest.mark.usefixtures("built_images")
def test_parallel_boot_with_exact_kv_sizes(workdir: Path) -> None:
    name = unique("par")
    write(workdir / "s.yaml", stack_text(name, PARALLEL_MODELS.format(extra=""),
                                         "[{index: 0, type: H100-80GB, boot: parallel}]"))  # fmt: skip
    result = run_module(["rehearse", "s.yaml", "--load-s", "5", "--report", "r.json"], workdir)
    assert result.code == 0, result.stderr
    by = services(report_of(workdir / "r.json"))
    starts = [t(by[s]["started_at"]) for s in ("a", "b", "c")]
    # all three started together (Compose starts independent services at once) ...
    assert (max(starts) - min(starts)).total_seconds() < 2
    for service in ("a", "b", "c"):
        assert by[service]["after"] == []
        assert by[service]["load_s"] >= 5
    # ... so the GPU was ready in about one load time, not three
    ready = max(t(by[s]["healthy_at"]) for s in ("a", "b", "c"))
    assert (ready - min(starts)).total_seconds() < 5 * 3 * 0.6


@pytest.mark.usefixtures("built_images")
def test_parallel_boot_without_exact_kv_races(workdir: Path) -> None:
    """Fraction-only servers booted together charge each other's loading to
    themselves: one or more die (or one takes too much KV). The planner refuses
    this stack; the escape hatch shows why."""
    name = unique("race")
    models = PARALLEL_MODELS.format(extra=", kv_cache: profiled, boot_timeout_s: 20")
    write(workdir / "s.yaml", stack_text(name, models, "[{index: 0, type: H100-80GB, boot: parallel}]"))
    refused = run_module(["plan", "s.yaml"], workdir)
    assert refused.code == 1 and "boots in parallel, which needs an exact KV size" in refused.stderr
    result = run_module(["rehearse", "s.yaml", "--load-s", "5", "--unsafe-skip-fit-check"], workdir)
    assert result.code == 4, result.stderr
    assert "ValueError: No available memory for the cache blocks" in result.stderr
    assert "Available KV cache memory: -" in result.stderr
