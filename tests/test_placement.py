"""Placement over several GPUs, tensor parallelism, per-GPU boot chains, the SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpustack_compose.errors import PlanError
from gpustack_compose.planner import Plan, plan_stack
from gpustack_compose.render import render
from gpustack_compose.spec import StackSpec
from tests.conftest import run_cli, write

REPO = Path(__file__).resolve().parent.parent
FLEET = REPO / "stacks" / "h100x8-fleet.yaml"


def fleet() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(FLEET.read_text())
    return data


def plan_of(data: dict[str, Any] | str) -> Plan:
    if isinstance(data, str):
        data = yaml.safe_load(data)
    return plan_stack(StackSpec.model_validate(data))


def placement(plan: Plan) -> dict[str, tuple[int, ...]]:
    return {m.name: m.gpus for m in plan.models}


# --- placement ---------------------------------------------------------------


def test_the_fleet_places_every_model_and_spreads_them() -> None:
    plan = plan_of(fleet())
    where = placement(plan)
    assert where["llama-3.3-70b"] == (4, 5, 6, 7)  # pinned: never moved
    assert all(len(g) == 1 for n, g in where.items() if n != "llama-3.3-70b")
    # the four 27-32B models need most of a card each: one per card
    big = [where[n][0] for n in ("qwen2.5-32b", "qwen2.5-coder-32b", "qwen3-32b", "gemma-3-27b")]
    assert len(set(big)) == 4
    for gpu in plan.gpus:
        assert gpu.free_bytes >= 0
        assert gpu.models, f"GPU {gpu.index} left empty"
    assert all(m.placed for m in plan.models if m.name != "llama-3.3-70b")
    assert not plan.model("llama-3.3-70b").placed


def test_placement_is_deterministic_whatever_the_stack_order() -> None:
    data = fleet()
    reordered = dict(data, models=list(reversed(data["models"])))
    assert placement(plan_of(data)) == placement(plan_of(reordered))


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("qwen3-1.7b", "Qwen/Qwen3-1.7B"),
        ("llama-3.2-3b", "meta-llama/Llama-3.2-3B-Instruct"),
        ("gemma-2-2b", "google/gemma-2-2b-it"),
        ("qwen3-0.6b", "Qwen/Qwen3-0.6B"),
        ("gemma-3-1b", "google/gemma-3-1b-it"),
        ("llama-3.2-1b", "meta-llama/Llama-3.2-1B-Instruct"),
    ],
)
def test_adding_an_unrelated_model_moves_nothing(name: str, model: str) -> None:
    data = fleet()
    before = placement(plan_of(data))
    grown = dict(data, models=[*data["models"], {"name": name, "model": model, "max_model_len": 8192}])
    after = placement(plan_of(grown))
    assert {k: after[k] for k in before} == before


def test_removing_a_model_moves_no_larger_one() -> None:
    data = fleet()
    before = placement(plan_of(data))
    smaller = dict(data, models=[m for m in data["models"] if m["name"] != "qwen3-8b"])
    after = placement(plan_of(smaller))
    for big in ("qwen2.5-32b", "qwen2.5-coder-32b", "qwen3-32b", "gemma-3-27b"):
        assert after[big] == before[big]


FOUR_CARDS = """\
name: four
gpus: {count: 4, type: L40S}
models:
  - {name: big, model: Qwen/Qwen2.5-14B-Instruct, max_model_len: 8192}
  - {name: mid, model: Qwen/Qwen2.5-7B-Instruct, max_model_len: 8192}
  - {name: small, model: Qwen/Qwen3-1.7B, max_model_len: 8192}
"""


def test_largest_first_each_on_the_first_card_of_its_own_order_with_room() -> None:
    plan = plan_of(FOUR_CARDS)
    # each fits alone on an L40S: three different cards, none shared
    cards = [plan.model(n).gpus[0] for n in ("big", "mid", "small")]
    assert len(set(cards)) == 3
    assert plan.gpu(cards[0]).models[0].name == "big"


def test_no_fit_names_the_model_its_need_and_the_largest_free_space() -> None:
    data = fleet()
    data["models"].append({"name": "mistral-small", "model": "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
                           "max_model_len": 16384})  # fmt: skip
    with pytest.raises(PlanError) as caught:
        plan_of(data)
    message = str(caught.value)
    assert message.startswith("models[")
    assert "no GPU has room for it: it needs" in message
    assert "largest free space on any GPU is" in message
    assert "after placing" in message


def test_no_fit_from_the_cli_is_one_line_and_exit_1(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", """\
name: full
gpus: {count: 2, type: L4}
models:
  - {name: a, model: Qwen/Qwen2.5-14B-Instruct, max_model_len: 8192}
""")  # fmt: skip
    result = run_cli(["plan", "s.yaml"], tmp_path)
    assert result.code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "error: s.yaml:4:5: models[0]: 'a': no GPU has room for it: it needs 31.18 GiB" in result.stderr
    assert "(GPU 0)" in result.stderr  # the emptiest card, lowest index on a tie


def test_a_single_gpu_stack_keeps_the_fraction_sum_message() -> None:
    with pytest.raises(PlanError, match=r"the fractions sum to 1\.1"):
        plan_of("""\
name: one
gpus: [{index: 0, type: H100-80GB}]
models:
  - {name: a, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.6, max_model_len: 8192}
  - {name: b, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.5, max_model_len: 8192}
""")


# --- tensor parallel ---------------------------------------------------------

TP = """\
name: tp
gpus: {{count: 4, type: H100-80GB}}
models:
  - {{name: a, model: Qwen/Qwen2.5-7B-Instruct, gpu: 0, memory: 0.3, max_model_len: 8192}}
  - {{name: b, model: Qwen/Qwen2.5-7B-Instruct, gpu: 1, memory: 0.3, max_model_len: 8192}}
  - {{name: big, model: {big}, gpu: [0, 1], memory: {memory}, max_model_len: 8192}}
  - {{name: c, model: Qwen/Qwen3-1.7B, gpu: 1, memory: 0.1, max_model_len: 8192}}
  - {{name: d, model: Qwen/Qwen2.5-7B-Instruct, gpu: 2, memory: 0.3, max_model_len: 8192}}
  - {{name: e, model: Qwen/Qwen2.5-7B-Instruct, gpu: 3, memory: 0.3, max_model_len: 8192}}
"""


def tp_plan(big: str = "Qwen/Qwen2.5-32B-Instruct", memory: str = "0.55") -> Plan:
    return plan_of(TP.format(big=big, memory=memory))


def test_chains_of_a_four_gpu_host_with_a_model_over_two_cards() -> None:
    plan = tp_plan()
    assert [g.chain for g in plan.gpus] == [("a", "big"), ("b", "big", "c"), ("d",), ("e",)]
    big = plan.model("big")
    assert big.gpus == (0, 1) and big.tensor_parallel == 2
    assert big.after == ("a", "b")  # its predecessor on each of its cards
    assert plan.model("c").after == ("big",)  # its successor on GPU 1 waits for it
    assert plan.model("d").after == () and plan.model("e").after == ()  # other chains start at once
    # its row on each card: same fraction, its own place in that card's chain
    on_0, on_1 = plan.gpu(0).models[1], plan.gpu(1).models[1]
    assert (on_0.fraction, on_0.boot_position, on_1.boot_position) == (0.55, 2, 2)
    assert (on_0.gpu, on_1.gpu, plan.model("big").gpu) == (0, 1, 0)
    gpu = plan.gpu(1)
    assert on_1.free_at_start_bytes == gpu.total_bytes - gpu.reserve_bytes - plan.model("b").resident_bytes


def test_tensor_parallel_splits_weights_and_kv_heads_per_card() -> None:
    single = plan_of("""\
name: one
gpus: [{index: 0, type: H100-80GB}]
models:
  - {name: big, model: Qwen/Qwen2.5-32B-Instruct, memory: 0.9, max_model_len: 8192}
""").model("big")
    split = tp_plan().model("big")
    overhead = 118111601  # calibration.WEIGHTS_LOAD_OVERHEAD, on every card
    assert abs((split.weights_bytes - overhead) * 2 - (single.weights_bytes - overhead)) <= 2
    assert split.kv_bytes_per_token * 2 == single.kv_bytes_per_token  # 8 KV heads -> 4 per card
    assert split.non_torch_bytes > single.non_torch_bytes  # NCCL buffers


def test_tensor_parallel_renders_both_cards_and_every_wait() -> None:
    stack = StackSpec.model_validate(yaml.safe_load(TP.format(big="Qwen/Qwen2.5-32B-Instruct", memory="0.55")))
    plan = plan_stack(stack)
    compose = yaml.safe_load(render(stack, plan, "s.yaml")["docker-compose.yml"])
    big = compose["services"]["big"]
    assert big["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0", "1"]
    command = big["command"]
    assert command[command.index("--tensor-parallel-size") + 1] == "2"
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.55"
    assert big["depends_on"] == {s: {"condition": "service_healthy", "restart": True} for s in ("a", "b")}
    assert big["labels"]["gpustack-compose.gpu"] == "0,1"
    assert list(compose["services"]).count("big") == 1
    assert set(compose["services"]["litellm"]["depends_on"]) == {"a", "b", "big", "c", "d", "e"}


def test_tensor_parallel_auto_memory_is_the_same_on_every_card() -> None:
    plan = tp_plan(memory="auto")
    big_0 = plan.gpu(0).models[1]
    big_1 = plan.gpu(1).models[1]
    assert big_0.fraction == big_1.fraction
    # GPU 1 also holds c, so the smaller of the two auto splits is used
    assert plan.gpu(1).fraction_sum <= 1


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (
            "  - {name: x, model: Qwen/Qwen2.5-14B-Instruct, gpu: [0, 1, 2], memory: 0.5}\n",
            "models[0].gpu: x over 3 GPUs: total number of attention heads (40) must be divisible by tensor "
            "parallel size (3)",
        ),
        ("  - {name: x, model: Qwen/Qwen2.5-14B-Instruct, gpu: [0, 0], memory: 0.5}\n", "GPU 0 is listed twice"),
        ("  - {name: x, model: Qwen/Qwen2.5-14B-Instruct, gpu: [0, 9], memory: 0.5}\n", "models[0].gpu[1]: GPU 9 is"),
        ("  - {name: x, model: Qwen/Qwen2.5-14B-Instruct, gpu: [], memory: 0.5}\n", "models[0].gpu: needs at least"),
        ("  - {name: x, model: Qwen/Qwen2.5-14B-Instruct, gpu: [0, '1'], memory: 0.5}\n", "models[0].gpu[1]: expected"),
        ("  - {name: x, model: Qwen/Qwen2.5-14B-Instruct, gpu: zero, memory: 0.5}\n", "models[0].gpu: expected an"),
    ],
)
def test_bad_tensor_parallel_is_one_clear_line(tmp_path: Path, models: str, expected: str) -> None:
    assert_one_line_error(tmp_path, f"name: bad\ngpus: {{count: 4, type: H100-80GB}}\nmodels:\n{models}", expected)


def assert_one_line_error(tmp_path: Path, stack: str, expected: str) -> None:
    """exit 1, one `error:` line containing ``expected``, nothing written."""
    write(tmp_path / "s.yaml", stack)
    result = run_cli(["render", "s.yaml"], tmp_path)
    assert result.code == 1, result.stderr
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "compose").exists()


def test_tensor_parallel_needs_identical_cards() -> None:
    with pytest.raises(PlanError, match="must be identical"):
        plan_of("""\
name: mixed
gpus: [{index: 0, type: H100-80GB}, {index: 1, type: L40S}]
models:
  - {name: x, model: Qwen/Qwen2.5-14B-Instruct, gpu: [0, 1], memory: 0.5}
""")


# --- the gpus: {count} form ----------------------------------------------------


def test_count_form_is_the_same_as_listing_the_cards() -> None:
    short = plan_of(FOUR_CARDS)
    listed = plan_of(FOUR_CARDS.replace("{count: 4, type: L40S}", "[" + ", ".join(
        f"{{index: {i}, type: L40S}}" for i in range(4)) + "]"))  # fmt: skip
    assert short == listed


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("{count: 0, type: L40S}", "gpus.count: 0 must be >= 1"),
        ("{count: 2}", "gpus: give type"),
        ("{count: 2, type: B300}", "gpus.type: 'B300' is not in the GPU catalog"),
        ("{cont: 2, type: L40S}", "gpus.cont: unknown key (did you mean count?)"),
        ("{count: 2, first_index: 63, type: L40S}", "gpus.count: GPUs 63..64 go past index 63"),
        ("[]", "gpus: needs at least 1 item(s)"),
        ("3", "gpus: expected a list"),
    ],
)
def test_bad_count_form_is_one_clear_line(tmp_path: Path, gpus: str, expected: str) -> None:
    assert_one_line_error(
        tmp_path, f"name: bad\ngpus: {gpus}\nmodels:\n  - {{name: a, model: Qwen/Qwen3-0.6B}}\n", expected
    )


# --- plan output and the picture ---------------------------------------------


def test_plan_prints_each_gpus_chain() -> None:
    result = run_cli(["plan", str(FLEET)], REPO)
    assert result.code == 0, result.stderr
    assert "GPU 4 (sequential): llama-3.3-70b (TP 4,5,6,7) -> " in result.stdout
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("GPU ") and "):" in line]
    assert len(lines) == 8


def test_plan_json_has_cards_chains_and_waits() -> None:
    result = run_cli(["plan", str(FLEET), "--json"], REPO)
    data = json.loads(result.stdout)
    gpu4 = data["gpus"][4]
    assert gpu4["chain"][0] == "llama-3.3-70b"
    big = gpu4["models"][0]
    assert (big["gpus"], big["tensor_parallel"], big["placed"]) == ([4, 5, 6, 7], 4, False)
    second = gpu4["models"][1]
    assert second["after"] == ["llama-3-3-70b"] and second["placed"] is True  # services


def test_plan_svg_draws_every_gpu(tmp_path: Path) -> None:
    result = run_cli(["plan", str(FLEET), "--svg", str(tmp_path / "out" / "v.svg")], REPO)
    assert result.code == 0, result.stderr
    svg = (tmp_path / "out" / "v.svg").read_text()
    root = ET.fromstring(svg)  # well-formed XML
    texts = ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]
    titles = [t for t in texts if t.startswith("GPU ")]
    assert len(titles) == 8
    assert any("llama-3.3-70b" in t and "TP over GPUs 4,5,6,7" in t for t in texts)
    for word in ("weights", "KV cache", "LoRA slots", "overhead", "reserve", "free under load"):
        assert word in texts
    # the same picture goes next to PLAN.md when rendering
    stdout = run_cli(["plan", str(FLEET), "--svg", "-"], REPO).stdout
    assert stdout.startswith("<svg") and "GPU 7: H100-80GB" in stdout


def test_svg_escapes_what_it_prints() -> None:
    stack = StackSpec.model_validate(yaml.safe_load(FOUR_CARDS))
    svg = render(stack, plan_stack(stack), "../<x & y>/s.yaml")["vram.svg"]
    ET.fromstring(svg)
    assert "&lt;x &amp; y&gt;" in svg
