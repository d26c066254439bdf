"""Several GPUs on a real Docker engine with real Compose and the real LiteLLM
proxy (the simulator stands in for vLLM, one ledger per simulated card): the
GPUs' chains boot in parallel, and a tensor-parallel model waits for its
predecessor on each of its cards. Timings come from the engine's timestamps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_module, unique, write
from tests.test_docker_rehearsal import report_of, services, t

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parent.parent

TP_STACK = """\
name: {name}
gpus: {{count: 4, type: H100-80GB}}
models:
  - {{name: a, model: Qwen/Qwen3-1.7B, gpu: 0, memory: 0.2, max_model_len: 8192, env: {{GSC_SIM_LOAD_S: "3"}}}}
  - {{name: b, model: Qwen/Qwen3-1.7B, gpu: 1, memory: 0.2, max_model_len: 8192, env: {{GSC_SIM_LOAD_S: "9"}}}}
  - {{name: big, model: Qwen/Qwen2.5-14B-Instruct, gpu: [0, 1], memory: 0.5, max_model_len: 8192,
     env: {{GSC_SIM_LOAD_S: "3"}}}}
  - {{name: c, model: Qwen/Qwen3-1.7B, gpu: 1, memory: 0.2, max_model_len: 8192, env: {{GSC_SIM_LOAD_S: "2"}}}}
  - {{name: d, model: Qwen/Qwen3-1.7B, gpu: 2, memory: 0.2, max_model_len: 8192, env: {{GSC_SIM_LOAD_S: "4"}}}}
  - {{name: e, model: Qwen/Qwen3-1.7B, gpu: 3, memory: 0.2, max_model_len: 8192, env: {{GSC_SIM_LOAD_S: "4"}}}}
proxy:
  workers: 1
"""


@pytest.mark.usefixtures("built_images")
def test_chains_boot_in_parallel_and_the_tensor_parallel_model_waits_for_both(workdir: Path) -> None:
    name = unique("tp")
    write(workdir / "s.yaml", TP_STACK.format(name=name))
    result = run_module(["rehearse", "s.yaml", "--report", "r.json", "--keep"], workdir)
    try:
        assert result.code == 0, result.stderr
        by = services(report_of(workdir / "r.json"))
        # the first model of every GPU's chain started at once
        firsts = [t(by[s]["started_at"]) for s in ("a", "b", "d", "e")]
        assert (max(firsts) - min(firsts)).total_seconds() < 2
        # the model over GPUs 0 and 1 started only when both a (3 s) and b (9 s) were healthy ...
        assert by["big"]["gpu"] == "0,1"
        assert sorted(by["big"]["after"]) == ["a", "b"]
        assert t(by["big"]["started_at"]) >= t(by["b"]["healthy_at"]) > t(by["a"]["healthy_at"])
        # ... and c, after it on GPU 1, waited for it
        assert t(by["c"]["started_at"]) >= t(by["big"]["healthy_at"])
        # d and e (GPUs 2 and 3) were healthy long before b's chain finished
        assert max(t(by[s]["healthy_at"]) for s in ("d", "e")) < t(by["c"]["healthy_at"])
        assert t(by["litellm"]["started_at"]) >= max(t(by[s]["healthy_at"]) for s in ("a", "b", "big", "c", "d", "e"))
        # the simulated cards: big's worker on each card saw the other model there
        logs = run_module(["logs", "s.yaml", "--rehearsal", "--tail", "200", "big"], workdir)
        assert logs.code == 0, logs.stderr
        assert "Free memory on device" in logs.stdout
        status = run_module(["status", "s.yaml", "--rehearsal", "--json"], workdir)
        rows = {row["service"]: row for row in yaml.safe_load(status.stdout)["services"]}
        assert rows["big"]["gpu"] == "0,1" and rows["big"]["state"].startswith("running")
    finally:
        run_module(["down", "s.yaml", "--rehearsal"], workdir)


@pytest.mark.usefixtures("built_images")
def test_the_eight_gpu_fleet_rehearses_with_parallel_chains(workdir: Path) -> None:
    fleet = (REPO / "stacks" / "h100x8-fleet.yaml").read_text()
    write(workdir / "fleet.yaml", fleet.replace("name: fleet", f"name: {unique('fleet')}"))
    render = run_module(["plan", "fleet.yaml", "--svg", "vram.svg"], workdir)
    assert render.code == 0, render.stderr
    assert (workdir / "vram.svg").read_text().startswith("<svg")
    result = run_module(["rehearse", "fleet.yaml", "--load-s", "3", "--report", "r.json"], workdir, timeout=600)
    assert result.code == 0, result.stderr
    report = report_of(workdir / "r.json")
    by = services(report)
    models = [s for s in by if s != "litellm"]
    assert len(models) == 12
    assert all(by[s]["healthy_at"] for s in by)
    # eight chains, one per GPU, started together: every chain head within 2 s
    heads = [s for s in models if not by[s]["after"]]
    assert len(heads) == 5  # GPUs 0-3 each start with their own model; 4-7 with the 70B over all four
    starts = [t(by[s]["started_at"]) for s in heads]
    assert (max(starts) - min(starts)).total_seconds() < 2
    assert by["llama-3-3-70b"]["gpu"] == "4,5,6,7"
    # the longest chain is three models long: the stack was up in about three
    # load times, not twelve
    first = min(t(by[s]["started_at"]) for s in models)
    ready = max(t(by[s]["healthy_at"]) for s in models)
    assert (ready - first).total_seconds() < 12 * 3 * 0.5
