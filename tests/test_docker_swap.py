"""Swap sets on a real Docker engine with real Compose v2, the real LiteLLM
proxy and the real coordinator image (the simulator, with vLLM's sleep-mode
behaviour, stands in for vLLM): the rehearsal's swap check, and a failed wake
that the coordinator recovers from by restarting the container through the
engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpustack_compose.runtime.engine import connect
from gpustack_compose.runtime.state import DockerView
from gpustack_compose.runtime.swap_check import coordinator_state
from tests.conftest import run_module, unique, write
from tests.test_docker_rehearsal import t

pytestmark = pytest.mark.docker

SWAP = """\
name: {name}
gpus: [{{index: 0, type: H200, awake_max: 1}}]
swap: {{host_memory: 64GiB}}
proxy: {{workers: 1}}
models:
  - {{name: big, model: Qwen/Qwen2.5-14B-Instruct, memory: 0.5, max_model_len: 8192, sleep: {{level: 1}}{big_env}}}
  - {{name: mid, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.6, max_model_len: 8192, sleep: {{level: 2}}}}
  - {{name: res, model: meta-llama/Llama-3.1-8B-Instruct, memory: 0.2, max_model_len: 8192}}
"""


@pytest.mark.usefixtures("built_images")
def test_a_swap_set_rehearses_with_every_request_answered_and_only_allowed_sets_awake(workdir: Path) -> None:
    name = unique("swap")
    write(workdir / "s.yaml", SWAP.format(name=name, big_env=""))
    result = run_module(["rehearse", "s.yaml", "--load-s", "1", "--report", "r.json"], workdir)
    assert result.code == 0, result.stderr
    report = json.loads((workdir / "r.json").read_text())
    assert report["ok"] is True
    by = {s["service"]: s for s in report["services"]}
    # the chain: each swappable server boots, takes its first sleep, then the next one starts
    assert t(by["big-first-sleep"]["healthy_at"]) >= t(by["big"]["healthy_at"])
    assert t(by["mid"]["started_at"]) >= t(by["big-first-sleep"]["healthy_at"])
    assert t(by["res"]["started_at"]) >= t(by["mid-first-sleep"]["healthy_at"])
    assert t(by["litellm"]["started_at"]) >= t(by["swap"]["healthy_at"])
    assert report["order_violations"] == []
    swap = report["swap"]
    assert swap["ok"] is True and swap["problems"] == [] and swap["failed"] == []
    assert swap["requests"] == 2 * 2 * (3 + 1)  # 2 rounds x 2 swappable x (3 concurrent + the resident)
    for model in ("big", "mid"):
        assert swap["models"][model]["wakes"] >= 2 and swap["models"][model]["failed_wakes"] == 0
    # never both swappable models awake: the plan allows one at a time
    assert {tuple(s[1]) for s in swap["awake_sets_seen"]} <= {(), ("big",), ("mid",)}
    assert all(s["ok"] for s in report["smoke"])
    assert DockerView(connect()).services(f"{name}-rehearsal") == {}


@pytest.mark.usefixtures("built_images")
def test_a_failed_wake_restarts_the_container_and_the_request_is_answered(workdir: Path) -> None:
    name = unique("swapfail")
    # big's first wake fails as a wake into too little memory does on vLLM 0.26 (HTTP 500, stuck for good)
    write(workdir / "s.yaml", SWAP.format(name=name, big_env=", env: {GSC_SIM_FAIL: wake-once}"))
    project = f"{name}-rehearsal"
    try:
        up = run_module(["up", "--rehearsal", "s.yaml", "--load-s", "1", "--json"], workdir)
        assert up.code == 0, up.stderr
        # smoke: one chat per model through the real proxy, big's first: its wake fails, the coordinator
        # restarts its container, the request goes to the fresh server
        smoke = run_module(["smoke", "--rehearsal", "s.yaml", "--json"], workdir)
        assert smoke.code == 0, smoke.stderr
        assert all(r["ok"] for r in json.loads(smoke.stdout)["smoke"])
        state = coordinator_state(connect(), project)["models"]["big"]
        # then smoke went on to mid, which put the fresh big to sleep: a normal sleep this time
        assert (state["failed_wakes"], state["restarts"], state["phase"]) == (1, 1, "asleep")
        assert "out of memory" in state["last_error"]
        containers = DockerView(connect()).services(project)
        assert containers["big"].restart_count == 0  # restarted by the coordinator, not by a crash
        booted = next(e for e in json.loads(up.stdout)["services"] if e["service"] == "big")
        assert containers["big"].started_at is not None
        assert containers["big"].started_at > t(booted["started_at"])  # a fresh process
        status = run_module(["status", "--rehearsal", "s.yaml", "--json"], workdir)
        rows = {r["service"]: r for r in json.loads(status.stdout)["services"]}
        assert rows["big"]["sleep"]["failed_wakes"] == 1
        assert (rows["big"]["sleep"]["phase"], rows["mid"]["sleep"]["phase"]) == ("asleep", "awake")
    finally:
        down = run_module(["down", "--rehearsal", "s.yaml"], workdir)
        assert down.code == 0, down.stderr
