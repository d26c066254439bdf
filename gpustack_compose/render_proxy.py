"""How the proxy container starts and what LiteLLM's router is told: the one
place both targets (compose and Kubernetes) take them from. Pure.

The entrypoint is the front door (``proxy_door.py``, rendered next to the
config): LiteLLM's own CLI with workers that drain kept-alive connections
when they recycle. The router settings carry the stack file's resilience:
retries, fallbacks, cooldowns, per-model timeouts (docs/facts.md,
"The front door").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpustack_compose import proxy_door, vllm_metrics
from gpustack_compose.contract import PROXY_CONFIG_DIR, PROXY_DNS_CACHE_S, PROXY_PORT
from gpustack_compose.spec import StackSpec

CONFIG_IN_CONTAINER = f"{PROXY_CONFIG_DIR}/config.yaml"
DOOR_IN_CONTAINER = f"{PROXY_CONFIG_DIR}/door.py"

# Gunicorn's max_requests_jitter as a share of max_requests: workers booted
# together would otherwise reach the count together and drain at once.
RECYCLE_JITTER_SHARE = 10


# LiteLLM's exception types (litellm.types.router.RetryPolicy) split by
# whether another attempt can help. A server that could not be reached or
# failed (connection errors fall under DefaultRetries) may answer the next
# try; a bad request, a missing model or a timeout that already took its
# time would fail the same way again.
RETRIED = ("DefaultRetries", "InternalServerErrorRetries", "ServiceUnavailableErrorRetries")
NOT_RETRIED = (
    "BadRequestErrorRetries",
    "AuthenticationErrorRetries",
    "NotFoundErrorRetries",
    "ContentPolicyViolationErrorRetries",
    "TimeoutErrorRetries",
    "RateLimitErrorRetries",
)
# LiteLLM never cools down the only deployment of a model group unless an
# allowed-fails policy names the exception type (litellm/router_utils/
# cooldown_handlers.py, "single deployment" base case); every model here is
# one deployment, so the policy names the server-side failures.
COOLED_DOWN = (
    "InternalServerErrorAllowedFails",
    "ServiceUnavailableErrorAllowedFails",
    "BadGatewayErrorAllowedFails",
    "TimeoutErrorAllowedFails",
)


# TCP SYN retries of the proxy's network namespace (Linux default 6: a
# connect to an address nobody holds fails after ~127 s). A model server on
# the same host answers a SYN in well under a millisecond; a SYN goes
# unanswered when the container behind a still-cached address is gone, and
# then the request waits for every retry before LiteLLM may retry or fall back
# (measured: 76 s and 139 s with the default; docs/facts.md, "The front door").
# Two retries fail such a connect after 7 s (RTO 1 s, doubling) and still
# ride out two lost SYNs.
SYN_RETRIES = 2


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str
    why: str


def door_source() -> str:
    """The rendered ``litellm/door.py``: the module's own text."""
    return Path(proxy_door.__file__).read_text(encoding="utf-8")  # the module imports only os and typing


def entrypoint() -> list[str]:
    return ["python3", DOOR_IN_CONTAINER]


def command(stack: StackSpec) -> list[str]:
    """LiteLLM's CLI arguments, passed through the door unchanged."""
    args = [
        "--config", CONFIG_IN_CONTAINER, "--host", "0.0.0.0", "--port", str(PROXY_PORT),
        "--num_workers", str(stack.proxy.workers), "--run_gunicorn",
    ]  # fmt: skip
    if stack.monitoring.enabled:
        # LiteLLM's own metrics process: every worker's samples on one page,
        # outside the master key's auth (litellm/proxy/prometheus_metrics_server.py)
        args += ["--prometheus_metrics_port", str(vllm_metrics.PROXY_METRICS_PORT)]
    return args


def callbacks(stack: StackSpec) -> list[str]:
    """LiteLLM's ``litellm_settings.callbacks``: its Prometheus metrics when
    the stack is monitored (they cost CPU per request otherwise spared)."""
    return ["prometheus"] if stack.monitoring.enabled else []


def environment(stack: StackSpec) -> list[EnvVar]:
    """The proxy's environment, the master key aside (each target has its own
    way to pass a secret)."""
    proxy = stack.proxy
    env = [
        EnvVar("MAX_REQUESTS_BEFORE_RESTART", str(proxy.max_requests_before_restart),
               "Gunicorn recycles a worker after this many requests (its memory grows)."),
        EnvVar("MAX_REQUESTS_BEFORE_RESTART_JITTER", str(proxy.max_requests_before_restart // RECYCLE_JITTER_SHARE),
               "Workers booted together recycle at different counts, not at once."),
        EnvVar(proxy_door.KEEPALIVE_ENV, str(proxy.keepalive_s),
               "Idle client connections stay open this long (proxy.keepalive_s)."),
        EnvVar(proxy_door.ACCESS_LOG_ENV, "1" if proxy.access_log else "0",
               "One log line per request (proxy.access_log)."),
        EnvVar("LITELLM_LOG", proxy.log_level.upper(), "LiteLLM's log level (proxy.log_level)."),
        EnvVar("AIOHTTP_TTL_DNS_CACHE", str(PROXY_DNS_CACHE_S),
               "A model server's address is looked up again after this long (LiteLLM's default, 300 s, keeps "
               "connecting to a stopped or recreated container's old address)."),
        EnvVar("LITELLM_LOCAL_MODEL_COST_MAP", "True",
               "The model cost map shipped in the image: no fetch from GitHub at every start."),
    ]  # fmt: skip
    if not proxy.admin_ui:
        env.append(EnvVar("DISABLE_ADMIN_UI", "True", "No admin UI at /ui: its login accepts the master key."))
    return env


def sysctls() -> list[EnvVar]:
    """Kernel settings of the proxy's own network namespace (compose; a
    Kubernetes pod may set only the kubelet's safe sysctls, and this is not
    one)."""
    return [
        EnvVar("net.ipv4.tcp_syn_retries", str(SYN_RETRIES),
               "A connect to a model server that is gone fails after 7 s, not ~2 min (SYN_RETRIES)."),
    ]  # fmt: skip


def router_settings(stack: StackSpec) -> dict[str, Any]:
    """LiteLLM's ``router_settings``: retries, cooldowns, fallbacks."""
    proxy = stack.proxy
    settings: dict[str, Any] = {
        "num_retries": proxy.retries,
        "retry_policy": {**dict.fromkeys(RETRIED, proxy.retries), **dict.fromkeys(NOT_RETRIED, 0)},
        "allowed_fails": proxy.allowed_fails,
        "allowed_fails_policy": dict.fromkeys(COOLED_DOWN, proxy.allowed_fails),
        "cooldown_time": proxy.cooldown_s,
        "fallbacks": [{m.name: list(m.fallbacks)} for m in stack.models if m.fallbacks],
    }
    return settings


def route_timeouts(stack: StackSpec) -> dict[str, int]:
    """Per route (a model and its adapters): the request timeout, where the
    model sets its own."""
    timeouts: dict[str, int] = {}
    for model in stack.models:
        if model.timeout_s is not None:
            timeouts[model.name] = model.timeout_s
            timeouts.update({lora.name: model.timeout_s for lora in model.loras})
    return timeouts
