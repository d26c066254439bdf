"""Elastic GPUs (kvcached): the planner's shared pool, the stack rules, the
render, and the simulator's page accounting and kvctl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gpustack_compose import calibration as cal
from gpustack_compose.contract import COMPOSE_FILE
from gpustack_compose.errors import BootError
from gpustack_compose.loader import load_stack
from gpustack_compose.planner import plan_stack
from gpustack_compose.rehearsal import differences
from gpustack_compose.render import render
from gpustack_compose.runtime import kvcached
from gpustack_compose.simulator import kvctl, kvpool
from gpustack_compose.simulator.ledger import Cards, GiB, Gpu
from gpustack_compose.stand_in import RehearsalOptions
from tests.conftest import REPO, run_cli, tree, write

GOLDEN = REPO / "tests" / "golden" / "elastic" / "stack.yaml"
MiB = 1024 * 1024


def test_the_pool_is_what_weights_and_overheads_leave() -> None:
    plan = plan_stack(load_stack(GOLDEN))
    gpu = plan.gpu(0)
    assert gpu.memory_mode == "elastic"
    static = sum(m.non_kv_bytes + (m.peak_bytes - m.non_kv_bytes - m.kv_bytes) for m in gpu.models)
    assert gpu.pool_bytes == gpu.total_bytes - gpu.reserve_bytes - static
    chat, ocr, small = (plan.model(n) for n in ("qwen2.5-14b", "paddleocr-vl", "qwen2.5-7b"))
    # kv_min as given (whole 16-token blocks); the default is one max_model_len sequence
    assert chat.kv_bytes == 6 * GiB
    assert ocr.kv_bytes == ocr.max_model_len * ocr.kv_bytes_per_token
    # kv_max: the whole pool by default, as given, or what memory leaves after the weights
    assert chat.kv_max_bytes == gpu.pool_bytes // (16 * chat.kv_bytes_per_token) * 16 * chat.kv_bytes_per_token
    assert ocr.kv_max_bytes <= 12 * GiB < ocr.kv_max_bytes + 16 * ocr.kv_bytes_per_token
    assert small.kv_max_bytes <= 0.4 * gpu.total_bytes - small.non_kv_bytes
    for m in gpu.models:
        assert m.elastic and not m.exact_kv
        # kvcached sizes the virtual KV space as total x fraction - weights etc.
        assert m.fraction * gpu.total_bytes - m.non_kv_bytes >= m.kv_max_bytes
        assert m.fraction * gpu.total_bytes - m.non_kv_bytes < m.kv_max_bytes + cal.FRACTION_STEP * gpu.total_bytes
    assert sum(m.kv_bytes for m in gpu.models) <= gpu.pool_bytes
    assert gpu.chain == ("qwen2.5-14b", "paddleocr-vl", "qwen2.5-7b")  # still sequential
    assert not plan.gpu(1).models[0].elastic
    # each server's startup snapshot sees the card less the idle footprint of
    # the servers before it (the H200 run: docs/h200-elastic-2026-12-02.md)
    assert chat.free_at_start_bytes == gpu.total_bytes - gpu.reserve_bytes
    assert ocr.free_at_start_bytes == chat.free_at_start_bytes - chat.resident_bytes
    assert small.free_at_start_bytes == ocr.free_at_start_bytes - ocr.resident_bytes


def test_render_carries_what_kvcached_needs() -> None:
    stack = load_stack(GOLDEN)
    plan = plan_stack(stack)
    compose = yaml.safe_load(render(stack, plan, "x")[COMPOSE_FILE])["services"]
    chat, ocr = compose["qwen2-5-14b"], compose["paddleocr-vl"]
    assert chat["image"] == stack.images.vllm_kvcached
    assert chat["environment"]["ENABLE_KVCACHED"] == "true"
    assert chat["environment"]["KVCACHED_AUTOPATCH"] == "1"
    assert chat["environment"]["KVCACHED_GPU_UTILIZATION"] == "0.993"
    assert chat["environment"]["VLLM_USE_V2_MODEL_RUNNER"] == "0"  # kvcached 0.1.6 refuses the V2 runner
    names = {s["environment"].get("KVCACHED_IPC_NAME") for s in compose.values() if "environment" in s}
    assert {"elastic-qwen2-5-14b", "elastic-paddleocr-vl", "elastic-qwen2-5-7b"} <= names
    assert chat["ipc"] == "shareable" and chat["shm_size"] == "2gb"
    assert ocr["ipc"] == "service:qwen2-5-14b" and "shm_size" not in ocr
    assert "--kv-cache-memory-bytes" not in chat["command"]
    assert set(compose) == {"qwen2-5-14b", "paddleocr-vl", "qwen2-5-7b", "llama-3-1-8b", "litellm"}
    for service in ("qwen2-5-14b", "paddleocr-vl", "qwen2-5-7b"):
        model = plan.by_service(service)
        assert compose[service]["labels"]["gpustack-compose.kv-max-bytes"] == str(model.kv_max_bytes)
        assert compose[service]["labels"]["gpustack-compose.kvcached-ipc"] == f"elastic-{service}"
    # `up` caps each server from the GPU's first one, whose IPC namespace they share
    caps = kvcached.limits(stack, plan)
    assert list(caps) == ["qwen2-5-14b"]
    assert [c.argv() for c in caps["qwen2-5-14b"]] == [
        ["kvctl", "limit", f"elastic-{m.service}", f"{m.kv_max_bytes // MiB}M"]
        for m in (plan.model("qwen2.5-14b"), plan.model("paddleocr-vl"), plan.model("qwen2.5-7b"))
    ]
    static = compose["llama-3-1-8b"]
    assert static["image"] == stack.images.vllm and "ipc" not in static
    assert "--kv-cache-memory-bytes" in static["command"]


BASE = """\
name: e
gpus:
  - {index: 0, type: H100-80GB, memory_mode: elastic}
  - {index: 1, type: H100-80GB}
models:
  - {name: a, model: Qwen/Qwen2.5-14B-Instruct, gpu: 0, max_model_len: 8192}
  - {name: b, model: Qwen/Qwen2.5-7B-Instruct, gpu: 0, max_model_len: 8192}
"""

ERRORS = {
    "kv_min on a static GPU": (
        BASE.replace(
            "gpu: 0, max_model_len: 8192}\n  - {name: b", "gpu: 1, max_model_len: 8192, kv_min: 4GiB}\n  - {name: b"
        ),
        "e.yaml:6:86: models[0].kv_min: applies only on an elastic GPU: pin the model with gpu: to a GPU with "
        "memory_mode: elastic",
    ),
    "kv_max and memory": (
        BASE.replace(
            "name: b, model: Qwen/Qwen2.5-7B-Instruct, gpu: 0,",
            "name: b, model: Qwen/Qwen2.5-7B-Instruct, gpu: 0, memory: 0.3, kv_max: 9GiB,",
        ),
        "e.yaml:7:77: models[1].kv_max: give kv_max or memory, not both (on an elastic GPU memory sets kv_max)",
    ),
    "parallel boot": (
        BASE.replace("memory_mode: elastic}", "memory_mode: elastic, boot: parallel}"),
        "e.yaml:3:61: gpus[0].boot: GPU 0 is elastic: its weights are still loaded one server at a time (boot "
        "races are real with kvcached too), so boot must be sequential",
    ),
    "tensor parallel": (
        BASE.replace(
            "name: b, model: Qwen/Qwen2.5-7B-Instruct, gpu: 0,",
            "name: b, model: Qwen/Qwen2.5-7B-Instruct, gpu: [0, 1],",
        ),
        "e.yaml:7:53: models[1].gpu: tensor parallel over GPUs 0, 1 includes elastic GPU 0: elastic mode is for "
        "models on one GPU",
    ),
    "guarantees over the pool": (
        BASE.replace(
            "gpu: 0, max_model_len: 8192}\n  - {name: b", "gpu: 0, max_model_len: 8192, kv_min: 20GiB}\n  - {name: b"
        ).replace(
            "name: b, model: Qwen/Qwen2.5-7B-Instruct, gpu: 0, max_model_len: 8192",
            "name: b, model: Qwen/Qwen2.5-7B-Instruct, gpu: 0, max_model_len: 8192, kv_min: 20GiB",
        ),
        (
            "e.yaml:3:5: gpus[0]: GPU 0 (H100-80GB, elastic): the guaranteed KV caches need 40.00 GiB (a "
            "20.00 GiB, b 20.00 GiB) but the shared pool is 32.60 GiB (79.18 GiB - 0.52 GiB reserve - 46.06 "
            "GiB of weights and overheads); lower kv_min or max_model_len"
        ),
    ),
    "kv_min below one sequence": (
        BASE.replace(
            "gpu: 0, max_model_len: 8192}\n  - {name: b", "gpu: 0, max_model_len: 8192, kv_min: 1GiB}\n  - {name: b"
        ),
        (
            "e.yaml:6:86: models[0].kv_min: 'a': kv_min 1.00 GiB holds fewer tokens than one max_model_len "
            "8192 sequence (1.50 GiB), which vLLM needs to accept a request"
        ),
    ),
    "kv_max over the pool": (
        BASE.replace(
            "gpu: 0, max_model_len: 8192}\n  - {name: b", "gpu: 0, max_model_len: 8192, kv_max: 40GiB}\n  - {name: b"
        ),
        (
            "e.yaml:6:86: models[0].kv_max: 'a' on GPU 0: may borrow up to 40.00 GiB of KV cache, more than "
            "the GPU's whole pool of 32.60 GiB; lower kv_max (or memory)"
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_elastic_errors_are_one_line_exit_1(tmp_path: Path, case: str) -> None:
    text, message = ERRORS[case]
    assert text != BASE
    write(tmp_path / "e.yaml", text)
    before = tree(tmp_path)
    result = run_cli(["render", "e.yaml"], tmp_path)
    assert (result.code, result.stderr) == (1, f"error: {message}\n")
    assert tree(tmp_path) == before


# --- the simulator's pages ----------------------------------------------------


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> kvpool.ElasticKv:
    monkeypatch.setattr(kvpool, "SHM_DIR", tmp_path / "shm")
    monkeypatch.setattr(kvctl, "SHM_DIR", tmp_path / "shm")
    monkeypatch.setattr(kvpool, "WAIT_S", 1.0)
    (tmp_path / "shm").mkdir()
    cards = Cards(tmp_path / "ledger", [Gpu("0", 10 * GiB, 0)])
    cards.set_claim("other", "other", 5 * GiB)
    return kvpool.ElasticKv(cards, "me", "me", "s-me", GiB, 8 * GiB, 128 * 1024)


def test_pages_are_claimed_per_request_and_given_back(pool: kvpool.ElasticKv) -> None:
    ledger = pool.cards.ledgers[0]
    first = pool.acquire(8192)  # 1 GiB of KV in 2 MiB pages
    assert first == GiB and pool.used_bytes == GiB
    assert ledger.claims()["me"]["bytes"] == 2 * GiB
    assert pool.acquire(10) == 2 * MiB  # 1.25 MiB of KV: one 2 MiB page
    # the card has 10 GiB: other 5, me 1 + 1 + 2 MiB -- 3 GiB more do not fit: wait, then refuse
    start = time.monotonic()
    assert pool.acquire(3 * 8192) is None
    assert time.monotonic() - start >= 1.0
    pool.release(first)
    assert ledger.claims()["me"]["bytes"] == GiB + 2 * MiB
    assert kvpool.read_segment("s-me") == {"total": 8 * GiB, "used": 2 * MiB, "limit": None}


def test_a_waiting_request_gets_pages_once_another_ends(pool: kvpool.ElasticKv) -> None:
    held = pool.acquire(3 * 8192)
    assert held == 3 * GiB
    got: list[int | None] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(2 * 8192)))
    waiter.start()
    time.sleep(0.3)
    assert not got  # 1 GiB free on the card: it waits
    pool.release(held)
    waiter.join(timeout=5)
    assert got == [2 * GiB]


def test_kvctl_limit_caps_the_server(pool: kvpool.ElasticKv, capsys: pytest.CaptureFixture[str]) -> None:
    assert kvctl.main(["limit", "s-me", "512M"]) == 0
    assert pool.limit_bytes() == 512 * MiB
    assert pool.acquire(8192) is None  # 1 GiB > the cap, although the card has room
    assert pool.acquire(4096) == 512 * MiB
    capsys.readouterr()
    # kvcached's kvctl: an unknown IPC is an error message, with exit status 0
    assert kvctl.main(["limit", "nobody", "1G"]) == 0
    assert "Error: IPC 'nobody' not found." in capsys.readouterr().err
    assert kvctl.main(["limit", "s-me", "lots"]) == 1
    assert kvctl.main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"ipc": "s-me", "limit_bytes": 512 * MiB, "used_bytes": 512 * MiB}]


class FakeEngine:
    """The docker SDK's low-level exec calls, answering kvctl as kvcached 0.1.6 does."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = dict(limits)
        self.ran: list[list[str]] = []
        self.api = self
        self._last: list[str] = []

    def exec_create(self, _container: str, argv: list[str]) -> dict[str, str]:
        self._last = argv
        self.ran.append(argv)
        return {"Id": "x"}

    def exec_start(self, _exec_id: str) -> bytes:
        argv = self._last
        if argv[1] == "list":
            return json.dumps([{"ipc": k, "limit_bytes": v, "used_bytes": 0} for k, v in self.limits.items()]).encode()
        self.limits[argv[2]] = int(argv[3].rstrip("M")) * MiB
        return b"Updated"

    def exec_inspect(self, _exec_id: str) -> dict[str, int]:
        return {"ExitCode": 0}


def test_up_never_raises_a_servers_kvcached_limit() -> None:
    """A cap above a server's own KV space is left alone: raising it killed a 14B on the H200
    (docs/h200-elastic-contention-2026-12-02.md); a cap below it is set and checked."""
    stack = load_stack(GOLDEN)
    plan = plan_stack(stack)
    caps = kvcached.limits(stack, plan)
    ((first, models),) = caps.items()
    own = {cap.ipc: cap.mib * MiB - MiB // 2 if i == 0 else cap.mib * MiB + 10 * MiB for i, cap in enumerate(models)}
    engine = FakeEngine(own)
    applied = kvcached.apply(engine, {first: "c"}, stack, plan)
    kept, lowered = applied[0], applied[1:]
    assert kept["limit_bytes"] == own[models[0].ipc] and kept["kvctl"].startswith("kept")
    assert [a["limit_bytes"] for a in lowered] == [c.mib * MiB for c in models[1:]]
    assert ["kvctl", "limit", models[0].ipc, f"{models[0].mib}M"] not in engine.ran
    assert engine.limits[models[0].ipc] == own[models[0].ipc]


class EngineWithoutSegments(FakeEngine):
    """kvctl where the servers' segments are gone: list shows none."""

    def exec_start(self, _exec_id: str) -> bytes:
        return b"[]" if self._last[1] == "list" else b""


class EngineIgnoringLimits(FakeEngine):
    """kvctl that exits 0 and changes nothing, as kvcached's does for an IPC it does not know."""

    def exec_start(self, _exec_id: str) -> bytes:
        if self._last[1] == "list":
            return super().exec_start(_exec_id)
        return f"Error: IPC '{self._last[2]}' not found.".encode()


def test_up_says_so_when_a_segment_is_missing() -> None:
    stack = load_stack(GOLDEN)
    plan = plan_stack(stack)
    ((first, models),) = kvcached.limits(stack, plan).items()
    engine = EngineWithoutSegments({cap.ipc: cap.mib * MiB * 2 for cap in models})
    with pytest.raises(BootError, match="no kvcached segment"):
        kvcached.apply(engine, {first: "c"}, stack, plan)


def test_up_says_so_when_kvctl_did_not_set_the_limit() -> None:
    stack = load_stack(GOLDEN)
    plan = plan_stack(stack)
    ((first, models),) = kvcached.limits(stack, plan).items()
    engine = EngineIgnoringLimits({cap.ipc: cap.mib * MiB * 2 for cap in models})
    with pytest.raises(BootError, match=r"the limit is \d+ bytes, not \d+"):
        kvcached.apply(engine, {first: "c"}, stack, plan)


def test_the_cpu_engine_rehearsal_says_it_has_no_kvcached() -> None:
    stack = load_stack(GOLDEN)
    plan = plan_stack(stack)
    options = RehearsalOptions(model_image="sim", proxy_image="proxy", stand_in="vllm-cpu", cpu_flags=frozenset())
    notes = differences(stack, plan, options)
    assert "kvcached is not part of vLLM's CPU build: a static KV cache, no kvctl caps" in notes["qwen2-5-14b"]
    assert not any("kvcached" in note for note in notes["llama-3-1-8b"])


@pytest.mark.parametrize(("runner", "refused"), [(None, True), ("1", True), ("0", False)])
def test_the_simulator_refuses_the_v2_model_runner_as_kvcached_does(
    tmp_path: Path, runner: str | None, refused: bool
) -> None:
    # kvcached 0.1.6 under vLLM 0.26.0 on the H200: KVCachedConfigError at
    # engine start unless VLLM_USE_V2_MODEL_RUNNER=0 (docs/h200-elastic-2026-12-02.md)
    env = {**os.environ, "ENABLE_KVCACHED": "true", "GSC_SIM_LEDGER_DIR": str(tmp_path), "GSC_SIM_LOAD_S": "0",
           "GSC_SIM_FAIL": "crash"}  # fmt: skip  # crash: exit once the boot got past the engine start
    env.pop("VLLM_USE_V2_MODEL_RUNNER", None)
    if runner is not None:
        env["VLLM_USE_V2_MODEL_RUNNER"] = runner
    result = subprocess.run(
        [sys.executable, "-m", "gpustack_compose.simulator", "serve", "m", "--gpu-memory-utilization", "0.5"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    message = "kvcached does not support the vLLM 0.26.0 Model Runner V2 yet; set VLLM_USE_V2_MODEL_RUNNER=0"
    assert (message in result.stdout) is refused, result.stdout[-500:]
    assert ("simulated engine crash" in result.stdout) is not refused
