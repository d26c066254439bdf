"""(Spec, Plan) -> ``k8s/`` files: a kustomize base that keeps the compose
target's guarantees on a cluster.

Pure like ``render``: the same ``serve_args``, the same planned fractions and
KV bytes, the same LiteLLM config text. What Compose does with ``depends_on``
an init container does here (``wait_for_health.py``, from a ConfigMap); what
``deploy.resources.reservations.devices`` does, the GPU sharing mode of the
cluster does (device-plugin time-slicing or HAMi, see ``rules``).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from gpustack_compose import healthcheck, render_proxy, vllm_metrics
from gpustack_compose.contract import (
    ADAPTER_ROOT,
    BOOT_POSITION_LABEL,
    FRACTION_LABEL,
    GPU_LABEL,
    HF_CACHE,
    K8S_DIR,
    KUSTOMIZATION,
    MODEL_LABEL,
    MODEL_PORT,
    PROXY_CONFIG_DIR,
    PROXY_PORT,
    PROXY_SERVICE,
    ROLE_LABEL,
    ROLE_MODEL,
    ROLE_PROXY,
)
from gpustack_compose.k8s.rules import HAMI_MEMORY_MIB, HAMI_MEMORY_PERCENT, check_kubernetes, hami_memory
from gpustack_compose.monitoring import dashboard
from gpustack_compose.monitoring import render as render_monitoring
from gpustack_compose.planner import ModelPlan, Plan
from gpustack_compose.render import environment, render_litellm_config
from gpustack_compose.spec import ModelSpec, StackSpec
from gpustack_compose.units import GiB, MiB, fmt_fraction
from gpustack_compose.vllm_args import adapter_mounts, runtime_lora_env, serve_args

WAIT_CONFIGMAP = "gsc-wait-for-health"
WAIT_SCRIPT = "wait_for_health.py"
WAIT_MOUNT = "/gsc"
LITELLM_CONFIGMAP = "litellm-config"
MODELS_NETWORK_POLICY = "gsc-models-ingress"
# The wait script needs python3 and the network only: it runs as nobody.
WAIT_USER = 65534
MANAGED_BY = "gpustack-compose"
# HAMi packs pods onto the card that already holds the most (``binpack``), so
# the models of one planned GPU stay together when no UUID pins them.
HAMI_POLICY_ANNOTATION = "hami.io/gpu-scheduler-policy"
HAMI_UUID_ANNOTATION = "nvidia.com/use-gpuuuid"
HAMI_GPU = "nvidia.com/gpu"
# Default size of a rendered HF cache claim: safetensors are about the size of
# the weights in memory; a quarter more for tokenizer, configs and a second
# revision, plus 5 GiB slack.
# Host memory of one vLLM 0.26.0 server, idle after boot: EngineCore 1.803 GiB +
# API server 1.264 GiB VmRSS (Qwen2.5-14B on the H200, docs/h200-sleep-vllm-0.26.0.md).
VLLM_HOST_RESIDENT_BYTES = round((1.803 + 1.264) * GiB)
# The limit leaves as much again as the idle request for what that figure does
# not include (weight loading, torch.compile workers, bursts of requests; not
# measured), plus /dev/shm: a Memory emptyDir counts against the pod's memory.
MEMORY_LIMIT_FACTOR = 2
# Two busy processes per server (the EngineCore's scheduling loop and the API
# server, as ps showed them on the H200); the limit leaves torch's threads room
# and keeps one server from taking a whole node's cores.
MODEL_CPU_REQUEST = "2"
MODEL_CPU_LIMIT = "8"
# LiteLLM 1.106.2 with --run_gunicorn, idle: 381 / 417 / 508 MiB with 1 / 2 / 4
# workers (docs/facts.md, "LiteLLM proxy"): ~335 MiB + ~43 MiB per worker.
PROXY_BASE_BYTES = 335 * MiB
PROXY_WORKER_BYTES = 43 * MiB
PROXY_CPU_REQUEST = "1"
HF_CACHE_WEIGHTS_FACTOR = 1.25
HF_CACHE_SLACK_GIB = 5
# The compose healthcheck's timing, as probes: 2 s while booting (Compose's
# flat interval, healthcheck.FLAT_INTERVAL_S), 10 s once running, three
# misses in a row (healthcheck.RETRIES) mark the container not ready / dead.
STARTUP_PERIOD_S = healthcheck.FLAT_INTERVAL_S
STEADY_PERIOD_S = healthcheck.STEADY_INTERVAL_S


def wait_script() -> str:
    return (Path(__file__).parent / WAIT_SCRIPT).read_text(encoding="utf-8")


def _docker_size_to_quantity(size: str) -> str:
    """Compose's ``shm_size: 2gb`` (Docker's units are binary) -> ``2Gi``."""
    number = size.rstrip("bkmg")
    unit = size[len(number) :]
    suffix = {"": "", "b": "", "k": "Ki", "kb": "Ki", "m": "Mi", "mb": "Mi", "g": "Gi", "gb": "Gi"}[unit]
    return number + suffix


def _chain_budgets(plan: Plan) -> dict[str, int]:
    """Longest a model can take to be healthy counting from the stack's start,
    by service (``after`` names services): its own boot timeout after the
    slowest of its predecessors' budgets."""
    budgets: dict[str, int] = {}
    for model in plan.boot_ordered():
        budgets[model.service] = max((budgets[s] for s in model.after), default=0) + model.boot_timeout_s
    return budgets


def _health_url(service: str) -> str:
    return f"http://{service}:{MODEL_PORT}/health"


def _labels(stack: StackSpec, name: str, component: str) -> list[tuple[str, str]]:
    return [
        ("app.kubernetes.io/component", component),
        ("app.kubernetes.io/instance", stack.name),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
        ("app.kubernetes.io/name", name),
        ("app.kubernetes.io/part-of", "gpustack-compose"),
        (ROLE_LABEL, component),
    ]


def _selector(stack: StackSpec, name: str) -> list[tuple[str, str]]:
    return [("app.kubernetes.io/instance", stack.name), ("app.kubernetes.io/name", name)]


def _hf_cache_size(stack: StackSpec, model: ModelPlan) -> str:
    if stack.kubernetes.hf_cache.size is not None:
        return stack.kubernetes.hf_cache.size
    weights_gib = model.weights_bytes * model.tensor_parallel / GiB
    return f"{math.ceil(weights_gib * HF_CACHE_WEIGHTS_FACTOR) + HF_CACHE_SLACK_GIB}Gi"


def _gpu_resources(stack: StackSpec, plan: Plan, model: ModelPlan) -> list[tuple[str, str]]:
    kube = stack.kubernetes
    if kube.gpu_sharing == "hami":
        resource = HAMI_MEMORY_MIB if kube.hami_memory == "mib" else HAMI_MEMORY_PERCENT
        return [(HAMI_GPU, str(model.tensor_parallel)), (resource, str(hami_memory(plan, model, kube.hami_memory)))]
    return [(kube.gpu_resource, "1")]


def _gib_quantity(size: int) -> str:
    return f"{max(1, math.ceil(size / GiB))}Gi"


def _quantity_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "k": 10**3, "M": 10**6, "G": 10**9,
             "T": 10**12, "P": 10**15}  # fmt: skip
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return int(quantity[: -len(unit)]) * factor
    return int(quantity)


def model_memory_request(model: ModelPlan) -> int:
    """Host memory a model server holds: vLLM's resident processes and the
    adapters its CPU cache keeps (max_cpu_loras at max_lora_rank, the GPU
    slots' size each)."""
    per_adapter = model.lora_bytes * model.tensor_parallel // model.max_loras if model.max_loras else 0
    return VLLM_HOST_RESIDENT_BYTES + per_adapter * model.max_cpu_loras


def model_resources(stack: StackSpec, spec: ModelSpec, model: ModelPlan) -> dict[str, list[tuple[str, str]]]:
    """requests and limits of a model container: the stack's, else from the plan."""
    wanted = stack.kubernetes.model_resources
    request = wanted.memory_request or _gib_quantity(model_memory_request(model))
    shm = _quantity_bytes(_docker_size_to_quantity(spec.shm_size))
    limit = wanted.memory_limit or _gib_quantity(_quantity_bytes(request) * MEMORY_LIMIT_FACTOR + shm)
    return {
        "requests": [("cpu", wanted.cpu_request or MODEL_CPU_REQUEST), ("memory", request)],
        "limits": [("cpu", wanted.cpu_limit or MODEL_CPU_LIMIT), ("memory", limit)],
    }


def proxy_resources(stack: StackSpec) -> dict[str, list[tuple[str, str]]]:
    """requests and limits of the proxy container: the stack's, else from its
    worker count (each Gunicorn worker is a process of its own)."""
    wanted = stack.kubernetes.proxy_resources
    idle = PROXY_BASE_BYTES + PROXY_WORKER_BYTES * stack.proxy.workers
    request = wanted.memory_request or f"{math.ceil(idle / MiB / 64) * 64}Mi"
    limit = wanted.memory_limit or f"{math.ceil(_quantity_bytes(request) * MEMORY_LIMIT_FACTOR / MiB / 64) * 64}Mi"
    return {
        "requests": [("cpu", wanted.cpu_request or PROXY_CPU_REQUEST), ("memory", request)],
        "limits": [("cpu", wanted.cpu_limit or str(max(2, stack.proxy.workers))), ("memory", limit)],
    }


def _pod_annotations(stack: StackSpec, model: ModelPlan) -> list[tuple[str, str]]:
    annotations = [
        (BOOT_POSITION_LABEL, str(model.boot_position)),
        (FRACTION_LABEL, fmt_fraction(model.fraction)),
        (GPU_LABEL, model.gpu_label),
        (MODEL_LABEL, model.name),
    ]
    kube = stack.kubernetes
    if kube.gpu_sharing == "hami":
        annotations.append((HAMI_POLICY_ANNOTATION, "binpack"))
        uuids = [kube.gpu_uuids[i] for i in model.gpus if i in kube.gpu_uuids]
        if uuids:
            annotations.append((HAMI_UUID_ANNOTATION, ",".join(uuids)))
    return sorted(annotations)


def _node_selector(stack: StackSpec, model: ModelPlan) -> list[tuple[str, str]]:
    selector = dict(stack.kubernetes.node_selector)
    node = stack.kubernetes.nodes.get(model.gpu)
    if node is not None:
        selector["kubernetes.io/hostname"] = node
    return sorted(selector.items())


def _model_pod(
    stack: StackSpec, plan: Plan, spec: ModelSpec, model: ModelPlan, budgets: dict[str, int]
) -> dict[str, Any]:
    kube = stack.kubernetes
    mounts = [
        # The adapters claim holds one folder per adapter and runtime/ for the
        # runtime_loras folder: the same paths inside the container as Compose.
        {"sub_path": "runtime" if m.name == "(runtime)" else m.name, "target": m.container_path}
        for m in adapter_mounts(spec)
    ]
    waits_for = sorted(_health_url(s) for s in model.after)
    return {
        "name": model.service,
        "model": model,
        "image": spec.image or stack.images.vllm,
        "args": serve_args(spec, model),
        "env": sorted({**runtime_lora_env(spec), **spec.env}.items()),
        "labels": _labels(stack, model.service, "model"),
        "selector": _selector(stack, model.service),
        "annotations": _pod_annotations(stack, model),
        "node_selector": _node_selector(stack, model),
        "resources": _gpu_resources(stack, plan, model),
        "host_resources": model_resources(stack, spec, model),
        "shm_size": _docker_size_to_quantity(spec.shm_size),
        "hf_claim": kube.hf_cache.claim or f"{model.service}-hf-cache",
        "hf_size": _hf_cache_size(stack, model),
        "adapter_mounts": mounts,
        "waits_for": waits_for,
        "wait_timeout_s": max((budgets[s] for s in model.after), default=0),
        "startup_failures": math.ceil(model.boot_timeout_s / STARTUP_PERIOD_S),
    }


def _monitoring_files(stack: StackSpec, plan: Plan) -> dict[str, tuple[str, dict[str, Any]]]:
    """The Prometheus Operator's objects and the dashboard (monitoring.enabled)."""
    kube = stack.kubernetes
    interval = f"{stack.monitoring.scrape_interval_s}s"
    extra = sorted(kube.monitoring_labels.items())
    monitors = [
        ("models", ROLE_MODEL, "http", "every vLLM server's /metrics"),
        ("proxy", ROLE_PROXY, "metrics", "LiteLLM's metrics process (--prometheus_metrics_port)"),
    ]
    files: dict[str, tuple[str, dict[str, Any]]] = {}
    for suffix, role, port, what in monitors:
        name = f"{stack.name}-{suffix}"
        labels = [*_labels(stack, name, "monitoring"), *extra]
        monitor = {"name": name, "role": role, "port": port, "interval": interval, "what": what, "labels": labels}
        files[_file("servicemonitor", name)] = ("servicemonitor.yaml.j2", {"monitor": monitor})
    rules = f"{stack.name}-plan"
    files[_file("prometheusrule", rules)] = ("prometheusrule.yaml.j2", {
        "rule_name": rules, "plan_rules": render_monitoring.plan_rules(plan),
        "monitoring_labels": [*_labels(stack, rules, "monitoring"), *extra],
    })  # fmt: skip
    board = f"{stack.name}-dashboard"
    files[_file("configmap", board)] = ("dashboard-configmap.yaml.j2", {
        "dashboard_configmap": board, "dashboard_json": dashboard.render(stack.name),
        "monitoring_labels": [*_labels(stack, board, "monitoring"), *extra],
    })  # fmt: skip
    return files


def _file(kind: str, name: str) -> str:
    return f"{name}-{kind}.yaml"


def render_kubernetes(stack: StackSpec, plan: Plan, source: str) -> dict[str, str]:
    """Every file of ``k8s/``, keyed by its path relative to the output
    folder. ``source`` is the stack file relative to ``k8s/`` itself."""
    check_kubernetes(stack, plan)
    env = environment()
    specs = {m.name: m for m in stack.models}
    budgets = _chain_budgets(plan)
    pods = [_model_pod(stack, plan, specs[m.name], m, budgets) for m in plan.boot_ordered()]
    litellm_config = render_litellm_config(stack, plan, source)
    door = render_proxy.door_source()
    proxy_timing = healthcheck.PROXY_START_PERIOD_S
    context: dict[str, Any] = {
        "stack": stack,
        "kube": stack.kubernetes,
        "source": source,
        "pods": pods,
        "model_port": MODEL_PORT,
        "hf_cache": HF_CACHE,
        "adapter_root": ADAPTER_ROOT,
        "proxy_name": PROXY_SERVICE,
        "proxy_port": PROXY_PORT,
        "proxy_image": stack.proxy.image or stack.images.litellm,
        "proxy_labels": _labels(stack, PROXY_SERVICE, "proxy"),
        "proxy_resources": proxy_resources(stack),
        "proxy_selector": _selector(stack, PROXY_SERVICE),
        "proxy_waits_for": sorted(_health_url(p["name"]) for p in pods),
        "proxy_wait_timeout_s": max(budgets.values()),
        "proxy_startup_failures": math.ceil(proxy_timing / STARTUP_PERIOD_S),
        # LiteLLM reads its config when a worker starts: a changed config (or
        # door) changes this annotation, which rolls the proxy.
        "config_hash": hashlib.sha256((litellm_config + door).encode()).hexdigest()[:16],
        "litellm_config": litellm_config,
        "door_source": door,
        "proxy_entrypoint": render_proxy.entrypoint(),
        "proxy_command": render_proxy.command(stack),
        "proxy_env": render_proxy.environment(stack),
        "proxy_config_dir": PROXY_CONFIG_DIR,
        "litellm_configmap": LITELLM_CONFIGMAP,
        "wait_configmap": WAIT_CONFIGMAP,
        "wait_script_name": WAIT_SCRIPT,
        "wait_script": wait_script(),
        "wait_mount": WAIT_MOUNT,
        "startup_period_s": STARTUP_PERIOD_S,
        "steady_period_s": STEADY_PERIOD_S,
        "probe_timeout_s": healthcheck.TIMEOUT_S,
        "probe_failures": healthcheck.RETRIES,
        "hami": stack.kubernetes.gpu_sharing == "hami",
        "policy_name": MODELS_NETWORK_POLICY,
        "managed_by": MANAGED_BY,
        # What the wait script runs as: any image's numeric nobody, no root.
        "wait_user": WAIT_USER,
        "monitoring": stack.monitoring.enabled,
        "proxy_metrics_port": vllm_metrics.PROXY_METRICS_PORT,
    }
    files: dict[str, tuple[str, dict[str, Any]]] = {
        _file("configmap", WAIT_CONFIGMAP): ("wait-configmap.yaml.j2", {}),
        _file("configmap", LITELLM_CONFIGMAP): ("litellm-configmap.yaml.j2", {}),
    }
    for pod in pods:
        if stack.kubernetes.hf_cache.claim is None:
            files[_file("pvc", pod["hf_claim"])] = ("hf-cache-pvc.yaml.j2", {"pod": pod})
        files[_file("service", pod["name"])] = ("model-service.yaml.j2", {"pod": pod})
        files[_file("deployment", pod["name"])] = ("model-deployment.yaml.j2", {"pod": pod})
    files[_file("networkpolicy", MODELS_NETWORK_POLICY)] = ("model-networkpolicy.yaml.j2", {})
    files[_file("service", PROXY_SERVICE)] = ("proxy-service.yaml.j2", {})
    files[_file("deployment", PROXY_SERVICE)] = ("proxy-deployment.yaml.j2", {})
    if stack.monitoring.enabled:
        files.update(_monitoring_files(stack, plan))
    out = {
        f"{K8S_DIR}/{name}": env.get_template(f"k8s/{template}").render({**context, **extra})
        for name, (template, extra) in files.items()
    }
    kustomization = env.get_template("k8s/kustomization.yaml.j2").render({**context, "resources": list(files)})
    out[f"{K8S_DIR}/{KUSTOMIZATION}"] = kustomization
    return out
