"""Swap sets: the stack file's rules, the planner's proof over every awake
set, the host-memory budget, and what the render adds (first-sleep steps,
the coordinator, the sleepers' network, the proxy's routes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpustack_compose import calibration as cal
from gpustack_compose.contract import SWAP_CONFIG
from gpustack_compose.errors import PlanError
from gpustack_compose.loader import parse_yaml, validate_stack
from gpustack_compose.planner import Plan, plan_stack
from gpustack_compose.render import render
from gpustack_compose.runtime.proxy import SmokeResult
from gpustack_compose.runtime.session import links
from gpustack_compose.runtime.swap_check import allowed_sets, verify
from gpustack_compose.spec import StackSpec
from gpustack_compose.units import GiB
from tests.conftest import run_cli, tree, write

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "swap" / "stack.yaml"

STACK = """\
name: sw
gpus: [{index: 0, type: H200, awake_max: 1}]
swap: {host_memory: 64GiB}
models:
  - {name: big, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.5, max_model_len: 8192, sleep: {level: 1}}
  - {name: mid, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.6, max_model_len: 8192, sleep: {level: 2}}
  - {name: res, model: meta-llama/Llama-3.1-8B-Instruct, memory: 0.2, max_model_len: 8192}
"""


def stack_of(text: str) -> StackSpec:
    return validate_stack(parse_yaml(text, "s.yaml"), "s.yaml")


def plan_of(text: str) -> Plan:
    return plan_stack(stack_of(text))


def test_more_than_the_card_plans_when_every_awake_set_fits() -> None:
    plan = plan_of(STACK)
    gpu = plan.gpu(0)
    assert round(gpu.fraction_sum, 4) == 1.3
    assert gpu.awake_sets == (("big",), ("mid",))
    big, mid, res = (plan.model(n) for n in ("big", "mid", "res"))
    # each awake set at its peak, the other swappable asleep at its residue
    for awake in (big, mid):
        assert gpu.set_peak_bytes([awake.name]) == (
            gpu.reserve_bytes + res.peak_bytes + awake.peak_bytes + cal.SLEEP_RESIDUE
        )
        assert gpu.set_peak_bytes([awake.name]) <= gpu.total_bytes
    assert gpu.worst_awake_set == ("mid",)  # 0.6 plus a level-2 reload's extra
    # the chain: each swappable boots, then sleeps before the next one starts
    free = gpu.total_bytes - gpu.reserve_bytes
    assert (big.free_at_start_bytes, mid.free_at_start_bytes) == (free, free - cal.SLEEP_RESIDUE)
    assert res.free_at_start_bytes == free - 2 * cal.SLEEP_RESIDUE
    # level 2: the reload's extra on the awake figures; level 1: pinned host memory, 2x the weights
    assert mid.peak_bytes == mid.share_bytes + cal.CUDA_CONTEXT + cal.CUDA_GRAPHS + cal.LEVEL2_RELOAD_EXTRA
    assert (big.pinned_host_bytes, mid.pinned_host_bytes) == (2 * big.weights_bytes, 0)
    assert big.wake_bytes == big.resident_bytes - cal.SLEEP_RESIDUE


def test_an_awake_set_that_does_not_fit_is_refused_naming_it() -> None:
    with pytest.raises(PlanError) as caught:
        plan_of(STACK.replace("awake_max: 1", "awake_max: 2"))
    assert caught.value.message == (
        "gpus[0]: GPU 0 (H200, 139.80 GiB as CUDA reports it): with big, mid awake (awake_max 2), the fractions sum "
        "to 1.3 (big 0.5 + mid 0.6 + res 0.2) = 181.74 GiB, plus mid's level-2 reload 1.50 GiB: 183.24 GiB; with the "
        "0.52 GiB reserve that is 43.96 GiB more than the card holds. At most 0.9962 can be shared out on this GPU"
    )


def test_under_load_the_heaviest_awake_set_decides() -> None:
    # the shares fit with one awake, but not the outside-share overheads on top
    text = STACK.replace("memory: 0.6", "memory: 0.77")
    with pytest.raises(PlanError, match=r"with mid awake \(awake_max 1; asleep: big at 1.10 GiB each\), the "
                       "fractions fit, but under load"):  # fmt: skip
        plan_of(text)


def test_pinned_host_memory_must_fit_the_budget() -> None:
    with pytest.raises(PlanError) as caught:
        plan_of(STACK.replace("host_memory: 64GiB", "host_memory: 40GiB"))
    assert caught.value.message == (
        "swap.host_memory: level-1 sleepers pin 55.24 GiB of host memory (big 55.24 GiB: 2x their weights, held "
        "from the first sleep on), 15.24 GiB more than swap.host_memory 40.00 GiB; raise it, or move a model to "
        "level 2 (no host memory, wake ~5 s)"
    )


def test_an_auto_resident_gets_what_the_heaviest_awake_set_leaves() -> None:
    plan = plan_of(STACK.replace("memory: 0.2, ", ""))
    gpu = plan.gpu(0)
    res = plan.model("res")
    assert res.fraction_source == "auto"
    assert gpu.total_bytes - gpu.peak_bytes < 0.01 * GiB * 140  # the card is shared out, no more
    assert gpu.peak_bytes <= gpu.total_bytes


RULES = {
    "tensor parallel": (
        STACK.replace("gpus: [{index: 0, type: H200, awake_max: 1}]", "gpus: {count: 2, type: H200}").replace(
            "memory: 0.5, max_model_len: 8192, sleep: {level: 1}", "gpu: [0, 1], memory: 0.5, sleep: {level: 1}"
        ),
        "models[0].sleep: a swappable model runs on one GPU: the coordinator checks and wakes one card at a time",
    ),
    "unplaced on two cards": (
        STACK.replace("gpus: [{index: 0, type: H200, awake_max: 1}]", "gpus: {count: 2, type: H200}"),
        "models[0].gpu: a swappable model needs gpu: when the stack has several GPUs (it is not placed)",
    ),
    "elastic": (
        STACK.replace("awake_max: 1}", "awake_max: 1, memory_mode: elastic}"),
        "models[0].sleep: GPU 0 is elastic: kvcached maps KV pages itself, which vLLM's sleep mode (its cumem "
        "allocator) cannot free; put swappable models on a static GPU",
    ),
    "parallel boot": (
        STACK.replace("awake_max: 1}", "awake_max: 1, boot: parallel}"),
        "gpus[0].boot: GPU 0 has swappable models: each must boot and take its first sleep before the next server "
        "starts, so boot must be sequential",
    ),
    "level 1 without a budget": (
        STACK.replace("swap: {host_memory: 64GiB}\n", ""),
        "models[0].sleep.level: level 1 keeps the weights in pinned host memory: declare swap.host_memory (the host "
        "RAM the stack may pin), or use level 2",
    ),
    "first-sleep name taken": (
        STACK.replace("name: res,", "name: big-first-sleep,"),
        "models[0].name: 'big' would need the service 'big-first-sleep' for its first sleep, which "
        "'big-first-sleep' already is",
    ),
    "coordinator name taken": (
        STACK.replace("name: res,", "name: swap,"),
        "models[2].name: 'swap' is reserved for the proxy service",
    ),
    "idle_s too short": (
        STACK.replace("sleep: {level: 2}", "sleep: {level: 2, idle_s: 1}"),
        "models[1].sleep.idle_s: 1 must be >= 5",
    ),
}


@pytest.mark.parametrize("case", sorted(RULES))
def test_swap_rules_are_one_line_naming_the_field(workdir: Path, case: str) -> None:
    text, message = RULES[case]
    write(workdir / "s.yaml", text)
    before = tree(workdir)
    result = run_cli(["plan", "s.yaml"], workdir)
    assert result.code == 1, result.stdout
    assert result.stderr.startswith("error: s.yaml:"), result.stderr
    assert result.stderr.startswith("error: s.yaml:") and result.stderr.endswith(f": {message}\n"), result.stderr
    assert result.stderr.count("\n") == 1
    assert tree(workdir) == before


def test_the_render_adds_first_sleeps_the_coordinator_and_a_private_network() -> None:
    stack = stack_of(STACK)
    plan = plan_stack(stack)
    files = render(stack, plan, "../s.yaml")
    compose = yaml.safe_load(files["docker-compose.yml"])
    services = compose["services"]
    big, mid, res = services["big"], services["mid"], services["res"]
    assert "--enable-sleep-mode" in big["command"] and "--enable-sleep-mode" not in res["command"]
    assert big["environment"]["VLLM_SERVER_DEV_MODE"] == "1" and "VLLM_SERVER_DEV_MODE" not in res["environment"]
    # the dev-mode endpoints: only the coordinator and the first-sleep steps reach them
    assert big["networks"] == ["sleepers"] and "networks" not in res
    assert compose["networks"]["sleepers"] == {"internal": True}
    assert services["litellm"].get("networks") is None
    assert services["swap"]["networks"] == ["default", "sleepers"]
    # the chain: big boots, sleeps; then mid; then the resident
    assert mid["depends_on"] == {"big-first-sleep": {"condition": "service_completed_successfully"}}
    assert res["depends_on"] == {"mid-first-sleep": {"condition": "service_completed_successfully"}}
    first = services["big-first-sleep"]
    assert first["command"] == ["first-sleep", "--url", "http://big:8000", "--level", "1", "--timeout",
                                str(cal.first_sleep_timeout_s(plan.model("big").weights_bytes))]  # fmt: skip
    assert first["depends_on"] == {"big": {"condition": "service_healthy"}} and first["restart"] == "no"
    assert set(services["swap"]["depends_on"]) == {"big-first-sleep", "mid-first-sleep"}
    assert set(services["litellm"]["depends_on"]) == {"res", "swap"}
    routes = {r["model_name"]: r["litellm_params"]["api_base"] for r in yaml.safe_load(
        files["litellm/config.yaml"])["model_list"]}  # fmt: skip
    assert routes == {"big": "http://swap:8090/big/v1", "mid": "http://swap:8090/mid/v1", "res": "http://res:8000/v1"}
    config = json.loads(files[SWAP_CONFIG])
    assert [(m["name"], m["level"], m["wake_bytes"]) for m in config["models"]] == [
        ("big", 1, plan.model("big").wake_bytes),
        ("mid", 2, plan.model("mid").wake_bytes),
    ]
    assert config["gpus"] == [{"index": 0, "nvml_index": 0, "awake_max": 1, "total_bytes": plan.gpu(0).total_bytes,
                               "reserve_bytes": plan.gpu(0).reserve_bytes}]  # fmt: skip
    # up's timeline shows each first sleep as a step
    chain = {link.service: link for link in links(stack, plan)}
    assert chain["big-first-sleep"].one_shot and chain["mid"].after == ("big-first-sleep",)
    assert chain["litellm"].after == ("res", "swap")


def test_a_stack_without_sleepers_renders_no_coordinator() -> None:
    text = STACK.replace(", sleep: {level: 1}", "").replace(", sleep: {level: 2}", "").replace("0.6", "0.25")
    files = render(stack_of(text), plan_of(text), "../s.yaml")
    assert SWAP_CONFIG not in files
    assert "swap" not in yaml.safe_load(files["docker-compose.yml"])["services"]
    assert "sleep" not in files["docker-compose.yml"]


def test_the_rehearsal_check_accepts_allowed_sets_only() -> None:
    plan = plan_of(STACK)
    assert allowed_sets(plan) == {0: {frozenset(), frozenset({"big"}), frozenset({"mid"})}}
    ok = [SmokeResult("big", True, 200, 0.1, "")]
    state = {
        "models": {"big": {"wakes": 2, "failed_wakes": 0, "restarts": 0}, "mid": {"wakes": 1}},
        "history": [{"gpu": 0, "awake": ["big"]}, {"gpu": 0, "awake": ["big", "mid"]}],
    }
    assert verify(plan, ok, state) == [
        "GPU 0: big, mid were awake at once, a set the plan does not allow (awake_max 1)"
    ]
    state["history"] = [{"gpu": 0, "awake": []}, {"gpu": 0, "awake": ["mid"]}]
    failed = [SmokeResult("mid", False, 503, 1.0, "no room")]
    assert verify(plan, failed, state) == ["mid: HTTP 503: no room"]


def test_the_committed_swap_example_plans() -> None:
    plan = plan_stack(validate_stack(parse_yaml(EXAMPLE.read_text(), EXAMPLE.name), EXAMPLE.name))
    assert [m.name for m in plan.swappables] == ["qwen2.5-14b", "qwen2.5-7b"]
    assert plan.gpu(0).fraction_sum > 1
