"""The monitoring files of a stack (``monitoring.enabled``): Prometheus's
config, the plan as recording rules, Grafana's provisioning and the
dashboard. Pure: the compose renderer passes its Jinja environment in."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2

from gpustack_compose import vllm_metrics as vm
from gpustack_compose.contract import (
    DASHBOARD_FILE,
    DATASOURCE_UID,
    GPU_EXPORTER_SERVICE,
    GRAFANA_CONFIG_DIR,
    GRAFANA_DASHBOARD_PROVIDER,
    GRAFANA_DATASOURCES,
    MODEL_PORT,
    PLAN_RULES,
    PROMETHEUS_CONFIG,
    PROMETHEUS_CONFIG_DIR,
    PROMETHEUS_PORT,
    PROMETHEUS_SERVICE,
    PROXY_SERVICE,
)
from gpustack_compose.monitoring import dashboard
from gpustack_compose.monitoring.queries import (
    GPU_LABEL,
    PLAN_GPU_TOTAL_BYTES,
    PLAN_KV_TOKENS,
    PLAN_PEAK_BYTES,
    PLAN_RESIDENT_BYTES,
)
from gpustack_compose.planner import Plan
from gpustack_compose.spec import StackSpec

# Where the Grafana container reads its provisioning (GF_PATHS_PROVISIONING)
# and the dashboard (the provider's path): inside monitoring/grafana/.
GRAFANA_PROVISIONING = f"{GRAFANA_CONFIG_DIR}/provisioning"
GRAFANA_DASHBOARDS_IN_CONTAINER = f"{GRAFANA_CONFIG_DIR}/dashboards"


def home_dashboard() -> str:
    return f"{GRAFANA_DASHBOARDS_IN_CONTAINER}/{DASHBOARD_FILE.rsplit('/', 1)[1]}"


@dataclass(frozen=True)
class Rule:
    record: str
    value: int
    labels: tuple[tuple[str, str], ...]


def plan_rules(plan: Plan) -> list[Rule]:
    """One constant series per model and card it runs on, one per card."""
    rules = []
    for model in plan.boot_ordered():
        for gpu in model.gpus:
            labels = ((vm.MODEL_LABEL, model.name), (GPU_LABEL, str(gpu)), ("service", model.service))
            rules += [
                Rule(PLAN_KV_TOKENS, model.kv_tokens, labels),
                Rule(PLAN_RESIDENT_BYTES, model.resident_bytes, labels),
                Rule(PLAN_PEAK_BYTES, model.peak_bytes, labels),
            ]
    rules += [Rule(PLAN_GPU_TOTAL_BYTES, gpu.total_bytes, ((GPU_LABEL, str(gpu.index)),)) for gpu in plan.gpus]
    return rules


def _interval(stack: StackSpec) -> str:
    return f"{stack.monitoring.scrape_interval_s}s"


def files(env: jinja2.Environment, stack: StackSpec, plan: Plan, source: str) -> dict[str, str]:
    monitoring = stack.monitoring
    servers = [
        {"address": f"{m.service}:{MODEL_PORT}", "service": m.service, "gpu": m.gpu_label} for m in plan.boot_ordered()
    ]
    prometheus = env.get_template("monitoring/prometheus.yml.j2").render(
        source=source,
        stack_name=stack.name,
        interval=_interval(stack),
        rules_path=f"{PROMETHEUS_CONFIG_DIR}/{PLAN_RULES.rsplit('/', 1)[1]}",
        servers=servers,
        proxy_target=f"{PROXY_SERVICE}:{vm.PROXY_METRICS_PORT}",
        gpu_exporter=monitoring.gpu_exporter,
        gpu_exporter_target=f"{GPU_EXPORTER_SERVICE}:{vm.DCGM_PORT}",
    )
    return {
        PROMETHEUS_CONFIG: prometheus,
        PLAN_RULES: env.get_template("monitoring/plan.rules.yml.j2").render(source=source, plan_rules=plan_rules(plan)),
        GRAFANA_DATASOURCES: env.get_template("monitoring/grafana-datasources.yaml.j2").render(
            source=source,
            uid=DATASOURCE_UID,
            url=f"http://{PROMETHEUS_SERVICE}:{PROMETHEUS_PORT}",
            interval=_interval(stack),
        ),
        GRAFANA_DASHBOARD_PROVIDER: env.get_template("monitoring/grafana-dashboards.yaml.j2").render(
            source=source, path=GRAFANA_DASHBOARDS_IN_CONTAINER
        ),
        DASHBOARD_FILE: dashboard.render(stack.name),
    }
