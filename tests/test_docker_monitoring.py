"""Monitoring for real (issue 22): the stack's own Prometheus (Debian's
package, built locally) scrapes a rehearsal; every dashboard query answers
for every model; ``status`` sets the plan against what the servers report;
promtool accepts the rendered config and rules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gpustack_compose import versions
from gpustack_compose.contract import PROMETHEUS_CONFIG_DIR
from gpustack_compose.monitoring.queries import all_queries
from gpustack_compose.runtime.state import DockerView
from tests.conftest import run_module, unique, write

pytestmark = pytest.mark.docker


@pytest.mark.usefixtures("built_images")
def test_a_monitored_rehearsal_answers_every_dashboard_query_for_every_model(workdir: Path) -> None:
    name = unique("watch")
    write(
        workdir / "s.yaml",
        f"""\
name: {name}
gpus: [{{index: 0, type: H100-80GB}}]
models:
  - {{name: qwen2.5-7b, model: Qwen/Qwen2.5-7B-Instruct, memory: 0.45, max_model_len: 8192}}
  - {{name: llama-3.2-1b, model: meta-llama/Llama-3.2-1B-Instruct, memory: 0.2, max_model_len: 4096}}
monitoring:
  enabled: true
""",
    )
    try:
        rehearsal = run_module(["rehearse", "s.yaml", "--load-s", "1", "--keep", "--json"], workdir, timeout=600)
        assert rehearsal.code == 0, rehearsal.stderr[-3000:]
        report = json.loads(rehearsal.stdout)
        monitoring = report["monitoring"]
        assert monitoring["problems"] == []
        # both servers and the proxy's metrics process, all scraped
        assert sorted(monitoring["targets"].values()) == ["up", "up", "up"]
        asked = [q for q in monitoring["queries"] if q["skipped"] is None]
        assert [q["expr"] for q in monitoring["queries"]] == [q.expr for _, q in all_queries()]
        for query in asked:
            assert set(query["answered"]) >= set(query["expected"]), query
        per_model = [q for q in asked if q["by"] == "model_name"]
        assert per_model and all(q["expected"] == ["qwen2.5-7b", "llama-3.2-1b"] for q in per_model)
        ttft = next(q for q in asked if "time_to_first_token" in q["expr"])
        assert all(v is not None and v > 0 for v in ttft["values"].values())  # real latencies, not NaN
        skipped = [q["expr"] for q in monitoring["queries"] if q["skipped"]]
        assert len(skipped) == 2 and "DCGM_FI_DEV_FB_USED" in skipped[0] and "failed_requests" in skipped[1]

        status = run_module(["status", "--rehearsal", "s.yaml", "--json"], workdir)
        assert status.code == 0, status.stderr
        versus = json.loads(status.stdout)["plan_vs_reality"]
        assert versus["gpu_memory_source"] == "simulated ledger"
        for model in versus["models"]:
            assert model["reported"]["kv_tokens"] == model["planned_kv_tokens"], model
            assert model["gpu_bytes"] == model["planned_resident_bytes"], model
            assert model["flags"] == []
        table = run_module(["status", "--rehearsal", "s.yaml"], workdir)
        assert "plan vs reality (GPU memory: simulated ledger)" in table.stdout
        assert "prometheus" in table.stdout and "monitoring" in table.stdout

        # promtool, from the same image, accepts the rendered config and the plan's rules
        monitoring_dir = workdir / "compose" / name / "monitoring"
        checked = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "promtool", "-v",
             f"{monitoring_dir}:{PROMETHEUS_CONFIG_DIR}:ro", versions.PROMETHEUS_IMAGE, "check", "config",
             f"{PROMETHEUS_CONFIG_DIR}/prometheus.yml"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "SUCCESS" in checked.stdout and "rules found" in checked.stdout
    finally:
        down = run_module(["down", "--rehearsal", "s.yaml"], workdir)
        assert down.code == 0, down.stderr


def test_up_of_a_monitored_stack_without_grafanas_password_starts_nothing(workdir: Path, engine: object) -> None:
    name = unique("nopass")
    write(
        workdir / "s.yaml",
        f"name: {name}\ngpus: [{{index: 0, type: H100-80GB}}]\n"
        "models:\n  - {name: a, model: Qwen/Qwen3-0.6B, memory: 0.3}\nmonitoring: {enabled: true}\n",
    )
    result = run_module(["up", "s.yaml"], workdir, env={"LITELLM_MASTER_KEY": "sk-x", "GRAFANA_ADMIN_PASSWORD": ""})
    assert result.code == 1
    assert result.stderr == (
        f"error: GRAFANA_ADMIN_PASSWORD is not set (monitoring.enabled): set it in compose/{name}/.env (or export "
        "it); Grafana's admin password is never written into the rendered files\n"
    )
    assert DockerView(engine).services(name) == {}
