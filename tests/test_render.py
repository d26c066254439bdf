"""Rendered output: golden files, the compose contract, and injection safety."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpustack_compose.commands.common import kubernetes_rendered
from gpustack_compose.contract import COMPOSE_FILE, LITELLM_CONFIG
from gpustack_compose.k8s.manifests import render_kubernetes
from gpustack_compose.loader import load_stack
from gpustack_compose.model_facts.lock import lock_path, read_lock
from gpustack_compose.planner import Plan, plan_stack
from gpustack_compose.render import render
from gpustack_compose.spec import MODEL_NAME, LoraSpec, ModelSpec, StackSpec, model_directory
from gpustack_compose.vllm_args import serve_args
from gpustack_compose.vllm_flags import flag_name, inventory, managed
from tests.conftest import REPO, compose_binary, tree

GOLDEN = REPO / "tests" / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "stack.yaml").exists())
COMMITTED = sorted((REPO / "compose").glob("*/docker-compose.yml"))


def golden_plan(case: str) -> tuple[StackSpec, Plan]:
    """A case's stack and its plan, with the case's lock file where it has one."""
    stack_file = GOLDEN / case / "stack.yaml"
    stack = load_stack(stack_file)
    return stack, plan_stack(stack, locked=read_lock(lock_path(stack_file)))


def golden_render(case: str) -> dict[str, str]:
    """What `make golden` writes (``--target auto``): the compose files, and
    k8s/ for the cases that have one (not for elastic GPUs, which the
    Kubernetes target refuses)."""
    stack, plan = golden_plan(case)
    files = render(stack, plan, "../stack.yaml")
    if kubernetes_rendered(GOLDEN / case / "expected"):
        files.update(render_kubernetes(stack, plan, "../../stack.yaml"))
    return files


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    """Regenerate with `make golden` and review the diff."""
    expected = {k: v.decode() for k, v in tree(GOLDEN / case / "expected").items()}
    assert golden_render(case) == expected
    # every case the Kubernetes target accepts has its k8s/ golden (first time: render --target all)
    stack = load_stack(GOLDEN / case / "stack.yaml")
    static = all(card.memory_mode == "static" for card in stack.cards)
    on_hosts = any(model_directory(m.model) is not None for m in stack.models)  # a cluster has no such folder
    swaps = any(m.sleep is not None for m in stack.models)  # swap sets are for Compose only
    assert kubernetes_rendered(GOLDEN / case / "expected") == (static and not on_hosts and not swaps)


@pytest.mark.parametrize("case", CASES)
def test_render_is_deterministic(case: str) -> None:
    assert golden_render(case) == golden_render(case)


def rendered_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for case in CASES:
        files = golden_render(case)
        out.append((case, yaml.safe_load(files[COMPOSE_FILE]), yaml.safe_load(files[LITELLM_CONFIG])))
    return out


@pytest.mark.parametrize(("case", "compose", "litellm"), rendered_cases(), ids=CASES)
def test_compose_contract(case: str, compose: dict[str, Any], litellm: dict[str, Any]) -> None:
    stack, plan = golden_plan(case)
    services = compose["services"]
    assert compose["name"] == stack.name
    model_services = {m.service: m for m in plan.models}
    # swap sets add the coordinator and one first-sleep step per swappable server
    steps = {f"{m.service}-first-sleep" for m in plan.swappables} | ({"swap"} if plan.swappables else set())
    # monitoring adds Prometheus, Grafana and the GPU exporter
    watched = {"prometheus", "grafana", "dcgm-exporter"} if stack.monitoring.enabled else set()
    assert set(services) == {*model_services, "litellm", *steps, *watched}
    for service, model in model_services.items():
        body = services[service]
        assert body["labels"]["gpustack-compose.role"] == "model"
        assert body["labels"]["gpustack-compose.model"] == model.name
        assert "ports" not in body  # model ports are never published
        assert body["security_opt"] == ["no-new-privileges:true"]
        assert body["restart"] == "unless-stopped"
        assert body["healthcheck"]["test"][:2] == ["CMD", "curl"]
        assert body["healthcheck"]["test"][-1] == "http://127.0.0.1:8000/health"
        devices = body["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "device_ids": [str(g) for g in model.gpus], "capabilities": ["gpu"]}]
        # one chain per GPU: each model waits for the previous model on each of its GPUs
        if not model.after:
            assert "depends_on" not in body
        else:
            for before in model.after:
                previous = model_services[before]
                assert set(previous.gpus) & set(model.gpus)
            assert body["depends_on"] == {
                f"{a}-first-sleep" if model_services[a].swappable else a: (
                    {"condition": "service_completed_successfully"}
                    if model_services[a].swappable
                    else {"condition": "service_healthy", "restart": True}
                )
                for a in model.after
            }
    proxy = services["litellm"]
    assert proxy["labels"] == {"gpustack-compose.role": "proxy"}
    resident = {s for s, m in model_services.items() if not m.swappable}
    assert set(proxy["depends_on"]) == resident | ({"swap"} if plan.swappables else set())
    assert all(d["condition"] == "service_healthy" for d in proxy["depends_on"].values())
    assert proxy["ports"] == [
        {"target": 4000, "published": str(stack.proxy.port), "host_ip": stack.proxy.host, "protocol": "tcp"}
    ]
    assert proxy["healthcheck"]["test"][1] == "wget"
    # secrets come from the environment only
    assert proxy["environment"]["LITELLM_MASTER_KEY"].startswith("${LITELLM_MASTER_KEY:?")
    assert litellm["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    routes = {r["model_name"]: r["litellm_params"] for r in litellm["model_list"]}
    for spec in stack.models:
        served_by = plan.model(spec.name).service
        for name in [spec.name, *(lora.name for lora in spec.loras)]:
            base = (
                f"http://swap:8090/{served_by}/v1" if plan.model(spec.name).swappable else f"http://{served_by}:8000/v1"
            )
            assert routes[name] == {"model": f"hosted_vllm/{name}", "api_base": base}


def test_proxy_is_on_loopback_unless_asked() -> None:
    stack = load_stack(REPO / "stacks" / "h100-idp.yaml")
    compose = yaml.safe_load(render(stack, plan_stack(stack), "x.yaml")[COMPOSE_FILE])
    assert compose["services"]["litellm"]["ports"][0]["host_ip"] == "127.0.0.1"


# --- injection safety -------------------------------------------------------

printable = st.characters(blacklist_categories=("Cs", "Cc"))
arbitrary_text = st.text(printable, min_size=1, max_size=40)
# Repo ids, however odd; a directory (./x, /x) is a mount, fuzzed through the adapter paths.
model_refs = (
    st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=60)
    .filter(lambda s: not any(c.isspace() for c in s))
    .filter(lambda s: not s.startswith("~") and model_directory(s) is None)
)
names = st.from_regex(MODEL_NAME, fullmatch=True).filter(lambda n: n.strip("-._") != "")
DEFAULT_FLAGS = inventory()
assert DEFAULT_FLAGS is not None


def _allowed_extra(arg: str) -> bool:
    """Values, and flags the default release has that gpustack-compose does
    not set: the spec refuses every other extra argument."""
    assert DEFAULT_FLAGS is not None
    flag = flag_name(arg)
    return flag is None or (managed(flag, DEFAULT_FLAGS) is None and DEFAULT_FLAGS.resolve(flag) is not None)


args = arbitrary_text.filter(_allowed_extra)
# Adapter paths are relative to the stack file: anything else is rejected by the spec.
relative_paths = arbitrary_text.filter(lambda p: not p.startswith(("/", "~")))


@st.composite
def hostile_stacks(draw: st.DrawFn) -> StackSpec:
    model_name = draw(names)
    lora_name = draw(names.filter(lambda n: n != model_name))
    model = ModelSpec(
        name=model_name,
        model=draw(model_refs),
        memory=0.5,  # type: ignore[arg-type]
        max_model_len=4096,
        env={"X_VALUE": draw(arbitrary_text)},
        extra_args=draw(st.lists(args, max_size=3)),
        loras=[LoraSpec(name=lora_name, path=draw(relative_paths))],
        arch={"params_b": 1, "hidden_size": 512, "intermediate_size": 1024, "num_layers": 4,  # type: ignore[arg-type]
              "num_kv_heads": 2, "num_attention_heads": 8, "head_dim": 64, "context_length": 4096},
    )  # fmt: skip
    return StackSpec(name="fuzz", gpus=[{"index": 0, "type": "H100-80GB"}], models=[model])  # type: ignore[list-item]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_stacks())
def test_values_survive_render_and_yaml_parse(stack: StackSpec) -> None:
    plan = plan_stack(stack)
    files = render(stack, plan, "../../stacks/fuzz.yaml")
    compose = yaml.safe_load(files[COMPOSE_FILE])
    litellm = yaml.safe_load(files[LITELLM_CONFIG])
    spec = stack.models[0]
    body = compose["services"][plan.models[0].service]
    # Compose interpolates $VAR, so the file carries $$ for every literal $.
    assert body["command"] == [a.replace("$", "$$") for a in serve_args(spec, plan.models[0])]
    assert body["environment"]["X_VALUE"] == spec.env["X_VALUE"].replace("$", "$$")
    assert set(body) >= {"image", "command", "healthcheck", "labels"}
    assert body["labels"]["gpustack-compose.model"] == spec.name
    assert [r["model_name"] for r in litellm["model_list"]] == [spec.name, spec.loras[0].name]
    assert list(compose) == ["name", "services", "volumes"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(stack=hostile_stacks())
def test_values_survive_the_real_compose_parser(stack: StackSpec, tmp_path: Path) -> None:
    """Docker Compose v2 itself reads back exactly the values of the stack.

    ``config`` prints its model re-escaped (a literal ``$`` as ``$$``) so that the
    output is valid Compose again; the Docker tests check what the container gets."""
    plan = plan_stack(stack)
    files = render(stack, plan, "stack.yaml")
    (tmp_path / COMPOSE_FILE).write_text(files[COMPOSE_FILE])
    config = compose_config(tmp_path / COMPOSE_FILE)
    body = config["services"][plan.models[0].service]
    spec = stack.models[0]
    assert body["command"] == [a.replace("$", "$$") for a in serve_args(spec, plan.models[0])]
    assert body["environment"]["X_VALUE"] == spec.env["X_VALUE"].replace("$", "$$")
    assert body["labels"]["gpustack-compose.model"] == spec.name


def compose_config(compose_file: Path) -> dict[str, Any]:
    env = {**os.environ, "LITELLM_MASTER_KEY": "sk-test", "GRAFANA_ADMIN_PASSWORD": "test"}
    env.pop("HF_TOKEN", None)
    proc = subprocess.run(
        [compose_binary(), "-f", str(compose_file), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


@pytest.mark.parametrize(
    "compose_file",
    [*COMMITTED, *(GOLDEN / c / "expected" / COMPOSE_FILE for c in CASES)],
    ids=lambda p: p.parent.name if p.parent.name != "expected" else p.parent.parent.name,
)
def test_real_compose_accepts_every_render(compose_file: Path) -> None:
    proc = subprocess.run(
        [compose_binary(), "-f", str(compose_file), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "LITELLM_MASTER_KEY": "sk-test", "GRAFANA_ADMIN_PASSWORD": "test"},
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    config = compose_config(compose_file)
    assert config["services"]["litellm"]["environment"]["LITELLM_MASTER_KEY"] == "sk-test"


def test_compose_refuses_to_start_without_a_master_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_MASTER_KEY"}
    proc = subprocess.run(
        [compose_binary(), "-f", str(COMMITTED[0]), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "set LITELLM_MASTER_KEY (see .env.example)" in proc.stderr


def test_compose_refuses_a_monitored_stack_without_grafanas_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"} | {"LITELLM_MASTER_KEY": "sk-test"}
    monitored = GOLDEN / "monitored" / "expected" / "docker-compose.yml"
    proc = subprocess.run([compose_binary(), "-f", str(monitored), "config", "--quiet"], capture_output=True,
                          text=True, env=env, check=False, timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert "set GRAFANA_ADMIN_PASSWORD (see .env.example)" in proc.stderr
