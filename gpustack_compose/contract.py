"""The names the rendered files, the Kubernetes base and the runtime agree on.

A leaf module (standard library only, imports nothing of the package): the
spec, the renderers (compose and Kubernetes), the rehearsal and the runtime
all take these names from here, so a label the renderer writes is the label
``status`` reads, and a file ``render`` writes is the file ``up`` starts.
Changing one changes rendered output: the golden files show it.
"""

from __future__ import annotations

import re

# --- the output folder (compose/<stack>/), relative paths --------------------
COMPOSE_FILE = "docker-compose.yml"
# The proxy's folder: its config and its entrypoint (the front door).
LITELLM_DIR = "litellm"
LITELLM_CONFIG = f"{LITELLM_DIR}/config.yaml"
# The front door (gpustack_compose/proxy_door.py), rendered next to the config.
PROXY_DOOR = f"{LITELLM_DIR}/door.py"
# Where the proxy container sees the litellm/ folder (read-only; a folder, not
# the files, so an atomic rewrite of the config is visible to a reload).
PROXY_CONFIG_DIR = "/etc/gpustack-compose/litellm"
# Seconds the rendered proxy's aiohttp session caches a model server's
# address (AIOHTTP_TTL_DNS_CACHE; LiteLLM's default 300, litellm/constants.py);
# the rehearsal's fallback check waits it out. While cached, a stopped or
# recreated container's old address keeps getting new connections, which
# hang in SYN_SENT (render_proxy.SYN_RETRIES); once the cache lets go, the
# name no longer resolves and LiteLLM retries and falls back at once. Only a new
# connection looks the name up, and Compose's DNS answers from the same host
# (a failing lookup took 3.5 ms in the proxy container; docs/facts.md,
# "The front door"), so 1 s costs nothing measurable.
PROXY_DNS_CACHE_S = 1
ENV_EXAMPLE = ".env.example"
# Where Compose itself reads variables for interpolation, next to the compose file.
ENV_FILE = ".env"
PLAN_FILE = "PLAN.md"
SVG_FILE = "vram.svg"
K8S_DIR = "k8s"
# Monitoring (stacks with monitoring.enabled): Prometheus's config and the
# plan's recording rules, Grafana's provisioning and the dashboard.
MONITORING_DIR = "monitoring"
PROMETHEUS_CONFIG = f"{MONITORING_DIR}/prometheus.yml"
PLAN_RULES = f"{MONITORING_DIR}/plan.rules.yml"
# Grafana's folder: its provisioning (datasource, dashboard provider) and the
# dashboard, mounted as one folder (an atomic rewrite of a file replaces it,
# which a bind mount of the file itself would not see).
GRAFANA_DIR = f"{MONITORING_DIR}/grafana"
GRAFANA_DATASOURCES = f"{GRAFANA_DIR}/provisioning/datasources/gpustack-compose.yaml"
GRAFANA_DASHBOARD_PROVIDER = f"{GRAFANA_DIR}/provisioning/dashboards/gpustack-compose.yaml"
DASHBOARD_FILE = f"{GRAFANA_DIR}/dashboards/gpustack-compose.json"
KUSTOMIZATION = "kustomization.yaml"

# --- services and ports ------------------------------------------------------
PROXY_SERVICE = "litellm"
# The swap coordinator (stacks with sleep: models): the only client of the
# swappable servers' dev-mode endpoints, between the proxy and those servers.
SWAP_SERVICE = "swap"
SWAP_PORT = 8090
# The swappable servers and the coordinator share this network and no other:
# VLLM_SERVER_DEV_MODE opens /sleep, /wake_up and /collective_rpc to anything
# that reaches the port (docs/h200-sleep-vllm-0.26.0.md, E1 and point 6).
SWAP_NETWORK = "sleepers"
# The coordinator's configuration, rendered next to the compose file.
SWAP_CONFIG = "swap/config.json"
# One-shot service after each swappable server: its first sleep, before the
# next server on the GPU starts (<service>-first-sleep).
FIRST_SLEEP_SUFFIX = "-first-sleep"
# vLLM's switch for the sleep endpoints (vllm/entrypoints/openai/api_server.py,
# envs.VLLM_SERVER_DEV_MODE).
SLEEP_ENDPOINTS_ENV = "VLLM_SERVER_DEV_MODE"
# Monitoring services and their ports inside the compose network.
PROMETHEUS_SERVICE = "prometheus"
PROMETHEUS_PORT = 9090
GRAFANA_SERVICE = "grafana"
GRAFANA_PORT = 3000
GPU_EXPORTER_SERVICE = "dcgm-exporter"
MONITORING_SERVICES = (PROMETHEUS_SERVICE, GRAFANA_SERVICE, GPU_EXPORTER_SERVICE)
# Where the Prometheus container reads monitoring/ (prometheus.yml names the
# rules there), and where Grafana reads monitoring/grafana/.
PROMETHEUS_CONFIG_DIR = "/etc/gpustack-compose/monitoring"
GRAFANA_CONFIG_DIR = "/etc/gpustack-compose/grafana"
# The Grafana datasource's uid, which every dashboard panel names.
DATASOURCE_UID = "gpustack-compose-prometheus"
# The port LiteLLM listens on inside its container (and its Kubernetes Service).
PROXY_PORT = 4000
# The port every model server listens on inside the compose network.
MODEL_PORT = 8000

# --- environment -------------------------------------------------------------
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
# Grafana's admin password (monitoring.enabled), from .env like the master key.
GRAFANA_PASSWORD_ENV = "GRAFANA_ADMIN_PASSWORD"
HF_TOKEN_ENV = "HF_TOKEN"
HF_HOME_ENV = "HF_HOME"
# What a model container is given for runtime LoRA loading and for kvcached:
# vLLM's runtime LoRA switch and filesystem resolver folder; kvcached's patch
# switches, its per-server IPC segment and the device share it may map.
RUNTIME_LORA_ENV = ("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "VLLM_LORA_RESOLVER_CACHE_DIR")
KVCACHED_ENV = ("ENABLE_KVCACHED", "KVCACHED_AUTOPATCH", "KVCACHED_IPC_NAME", "KVCACHED_GPU_UTILIZATION")
# vLLM's model runner switch: kvcached 0.1.6 refuses vLLM 0.26.0's V2 runner
# (docs/h200-elastic-2026-12-02.md), so elastic servers run V1.
MODEL_RUNNER_V2_ENV = "VLLM_USE_V2_MODEL_RUNNER"
# Every variable the render itself sets in a model container: a stack's env:
# may not set one (a duplicate key Compose refuses, or a silent override).
RENDERED_ENV = frozenset(
    {HF_TOKEN_ENV, HF_HOME_ENV, *RUNTIME_LORA_ENV, *KVCACHED_ENV, MODEL_RUNNER_V2_ENV, SLEEP_ENDPOINTS_ENV}
)
# HF_HOME in every model container: the official vLLM image's cache path.
HF_CACHE = "/root/.cache/huggingface"
# huggingface_hub keeps repos under HF_HOME/hub (its HF_HUB_CACHE default).
HF_HUB_SUBDIR = "hub"
# Where a model directory of the host is mounted in its container: /models/<name>.
MODEL_MOUNT_ROOT = "/models"

# --- paths inside a model container ------------------------------------------
ADAPTER_ROOT = "/adapters"
# Where a model's runtime_loras folder is mounted; vLLM's filesystem resolver
# (VLLM_LORA_RESOLVER_CACHE_DIR) loads an adapter from <dir>/<name> on its
# first request when VLLM_ALLOW_RUNTIME_LORA_UPDATING is on.
RUNTIME_ADAPTERS = f"{ADAPTER_ROOT}/runtime"

# --- labels (compose) and annotations (Kubernetes) ---------------------------
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
LABEL_PREFIX = "gpustack-compose."
ROLE_LABEL = f"{LABEL_PREFIX}role"
MODEL_LABEL = f"{LABEL_PREFIX}model"
GPU_LABEL = f"{LABEL_PREFIX}gpu"
FRACTION_LABEL = f"{LABEL_PREFIX}fraction"
BOOT_POSITION_LABEL = f"{LABEL_PREFIX}boot-position"
KVCACHED_IPC_LABEL = f"{LABEL_PREFIX}kvcached-ipc"
KV_MAX_BYTES_LABEL = f"{LABEL_PREFIX}kv-max-bytes"
# The hash of the proxy's config on its pod template: a changed config rolls it.
CONFIG_HASH_ANNOTATION = f"{LABEL_PREFIX}config-hash"
SLEEP_LEVEL_LABEL = f"{LABEL_PREFIX}sleep-level"
ROLE_MODEL = "model"
ROLE_PROXY = "proxy"
ROLE_SWAP = "swap"
ROLE_FIRST_SLEEP = "first-sleep"
ROLE_MONITORING = "monitoring"

# --- the rehearsal override and the simulator ---------------------------------
REHEARSAL_OVERRIDE_FILE = "docker-compose.rehearsal.yml"
# The vLLM release whose flags the simulator accepts: production's.
SIM_VLLM_RELEASE_ENV = "GSC_SIM_VLLM_RELEASE"


def service_name(model_name: str) -> str:
    """Compose service (and hostname, and Kubernetes object name) of a model:
    dots and underscores become hyphens, because a dot in a hostname is a
    domain separator (``qwen2.5-7b`` -> ``qwen2-5-7b``)."""
    return re.sub(r"[._]", "-", model_name).strip("-")


def first_sleep_service(service: str) -> str:
    return f"{service}{FIRST_SLEEP_SUFFIX}"


def swap_route(service: str) -> str:
    """The coordinator's path prefix for a swappable server: the proxy's
    api_base for its model and adapters is http://swap:8090/<service>/v1."""
    return f"/{service}"


def rehearsal_project(stack_name: str) -> str:
    """Compose project of a rehearsal: never the production project."""
    return f"{stack_name}-rehearsal"


def kvcached_ipc_name(stack_name: str, service: str) -> str:
    """One kvcached IPC segment per server (``KVCACHED_IPC_NAME``): ``kvctl
    limit`` addresses a server by it, and two servers sharing one would
    overwrite each other's accounting. The stack name keeps two stacks on a
    host apart."""
    return f"{stack_name}-{service}"
