"""An elastic (kvcached) GPU rehearsed on real Docker and Compose with the real
LiteLLM proxy: the simulator maps KV pages per request from the card's shared
ledger, `rehearse` (like `up`) caps each server with kvctl, and a burst on one
model borrows pages the idle one does not use, then gives them back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest

from gpustack_compose import calibration as cal
from gpustack_compose.loader import load_stack
from gpustack_compose.planner import plan_stack
from tests.conftest import run_module, unique, write

pytestmark = pytest.mark.docker

BURST = Path(__file__).parent / "data" / "elastic_burst.py"
STACK = """\
name: {name}
gpus:
  - {{index: 0, type: L4, memory_mode: elastic}}
models:
  - {{name: a, model: Qwen/Qwen3-1.7B, gpu: 0, max_model_len: 8192, kv_max: 6GiB,
     env: {{GSC_SIM_LOAD_S: "2", GSC_SIM_TOKEN_S: "0.002"}}}}
  - {{name: b, model: Qwen/Qwen3-1.7B, gpu: 0, max_model_len: 8192,
     env: {{GSC_SIM_LOAD_S: "2", GSC_SIM_TOKEN_S: "0.002"}}}}
proxy:
  workers: 1
"""


def burst(container: Any, model: str, requests: int, max_tokens: int) -> dict[str, Any]:
    """Runs tests/data/elastic_burst.py inside the model's own container."""
    result = container.exec_run(["python3", "-c", BURST.read_text(), str(requests), str(max_tokens), model])
    assert result.exit_code == 0, result.output.decode()
    report: dict[str, Any] = json.loads(result.output.decode().strip().splitlines()[-1])
    return report


@pytest.mark.usefixtures("built_images")
def test_a_burst_borrows_idle_pages_within_its_cap_and_gives_them_back(workdir: Path) -> None:
    name = unique("elastic")
    write(workdir / "s.yaml", STACK.format(name=name))
    plan = plan_stack(load_stack(workdir / "s.yaml"))
    a, b = plan.model("a"), plan.model("b")
    result = run_module(["rehearse", "s.yaml", "--keep", "--report", "r.json"], workdir)
    try:
        assert result.code == 0, result.stderr
        client = docker.from_env()
        project = f"{name}-rehearsal"
        containers = {
            c.labels["com.docker.compose.service"]: c
            for c in client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
        }
        # once both servers were healthy, each was capped at its kv_max (in MiB)
        caps = json.loads((workdir / "r.json").read_text())["kvcached_limits"]
        assert [(c["model"], c["ipc"]) for c in caps] == [("a", f"{name}-a"), ("b", f"{name}-b")]
        assert caps[0]["limit_bytes"] == a.kv_max_bytes // 2**20 * 2**20
        segments = json.loads(containers["b"].exec_run(["kvctl", "list", "--json"]).output)
        assert {s["ipc"]: s["limit_bytes"] for s in segments} == {c["ipc"]: c["limit_bytes"] for c in caps}
        # a cap only lowers a server's own KV space
        assert all(c["limit_bytes"] <= c["own_kv_bytes"] for c in caps)

        # 24 requests of ~3,000 tokens want ~8 GiB of KV: far more than a's
        # guaranteed kv_min, more than its 6 GiB cap
        first = burst(containers["a"], "a", 24, 3000)
        base = first["before"]["claims"]
        assert first["before"]["used"] == 0
        peak_a = first["peak"]["used"]
        assert peak_a > 4 * a.kv_bytes  # borrowed well beyond its guarantee
        assert peak_a <= first["limit"] <= a.kv_max_bytes  # within its cap
        # the borrowed pages were claims on the shared card, b's untouched
        assert first["peak"]["claims"]["a"] == base["a"] + peak_a
        assert first["peak"]["claims"]["b"] == base["b"]
        # and all of them came back when the burst ended
        assert first["after"] == {"used": 0, "claims": base}
        assert set(first["statuses"]) == {200}

        # the pages a gave back now serve b: more than a's whole cap
        second = burst(containers["b"], "b", 24, 3000)
        assert second["peak"]["used"] > a.kv_max_bytes
        assert second["peak"]["claims"]["a"] == base["a"]
        assert second["after"] == {"used": 0, "claims": base}
        assert set(second["statuses"]) == {200}
        # the card never went past its total minus the reserve
        gpu = plan.gpu(0)
        assert sum(second["peak"]["claims"].values()) <= gpu.total_bytes - gpu.reserve_bytes
        assert b.kv_max_bytes >= second["peak"]["used"]
        # what a server holds when idle: its weights and overheads, no KV pages
        assert base["a"] == a.weights_bytes + cal.resident_overhead(a.weights_bytes)
    finally:
        run_module(["down", "s.yaml", "--rehearsal"], workdir)
