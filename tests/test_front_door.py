"""The front door: what the proxy is rendered with (both targets), the
draining protocol against a real in-process Uvicorn, and the rehearsal
fallback check's verdicts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from uvicorn.protocols.http.h11_impl import H11Protocol

from gpustack_compose import proxy_door
from gpustack_compose.contract import COMPOSE_FILE, LITELLM_CONFIG, PROXY_DNS_CACHE_S
from gpustack_compose.k8s.manifests import render_kubernetes
from gpustack_compose.loader import parse_yaml, validate_stack
from gpustack_compose.planner import plan_stack
from gpustack_compose.render import render
from gpustack_compose.render_proxy import SYN_RETRIES
from gpustack_compose.runtime.fallback_check import FallbackCheck, candidate
from gpustack_compose.runtime.proxy import SmokeResult
from gpustack_compose.spec import StackSpec

STACK: dict[str, Any] = {
    "name": "door",
    "gpus": [{"index": 0, "type": "H100-80GB"}],
    "models": [
        {"name": "big", "model": "Qwen/Qwen2.5-14B-Instruct", "memory": 0.5, "max_model_len": 8192,
         "fallbacks": ["small", "ocr"], "timeout_s": 120,
         "loras": [{"name": "acme", "repo": "acme/lora", "rank": 8}]},
        {"name": "small", "model": "Qwen/Qwen2.5-7B-Instruct", "memory": 0.3, "max_model_len": 4096},
        {"name": "ocr", "model": "Qwen/Qwen3-0.6B", "memory": 0.1, "max_model_len": 4096},
    ],
    "proxy": {"workers": 2, "retries": 3, "cooldown_s": 20, "keepalive_s": 15},
}  # fmt: skip


def stack(data: dict[str, Any] = STACK) -> StackSpec:
    return validate_stack(parse_yaml(yaml.safe_dump(data), "door.yaml"), "door.yaml")


def test_compose_renders_the_door_and_the_router_settings() -> None:
    spec = stack()
    files = render(spec, plan_stack(spec), "door.yaml")
    proxy = yaml.safe_load(files[COMPOSE_FILE])["services"]["litellm"]
    assert proxy["entrypoint"] == ["python3", "/etc/gpustack-compose/litellm/door.py"]
    assert proxy["command"][-1] == "--run_gunicorn"
    env = proxy["environment"]
    assert env["MAX_REQUESTS_BEFORE_RESTART_JITTER"] == str(int(env["MAX_REQUESTS_BEFORE_RESTART"]) // 10)
    assert env[proxy_door.KEEPALIVE_ENV] == "15"
    assert env[proxy_door.ACCESS_LOG_ENV] == "0"
    assert env["AIOHTTP_TTL_DNS_CACHE"] == str(PROXY_DNS_CACHE_S)
    assert env["LITELLM_LOG"] == "ERROR"
    assert proxy["sysctls"] == {"net.ipv4.tcp_syn_retries": str(SYN_RETRIES)}
    assert files["litellm/door.py"] == proxy_door.__loader__.get_source(proxy_door.__name__)  # type: ignore[union-attr]
    litellm = yaml.safe_load(files[LITELLM_CONFIG])
    router = litellm["router_settings"]
    assert router["fallbacks"] == [{"big": ["small", "ocr"]}]
    assert router["num_retries"] == 3
    assert router["retry_policy"]["DefaultRetries"] == 3  # connection errors
    assert router["retry_policy"]["BadRequestErrorRetries"] == 0
    assert router["retry_policy"]["TimeoutErrorRetries"] == 0
    assert router["cooldown_time"] == 20
    assert set(router["allowed_fails_policy"]) >= {"InternalServerErrorAllowedFails", "TimeoutErrorAllowedFails"}
    timeouts = {m["model_name"]: m["litellm_params"].get("timeout") for m in litellm["model_list"]}
    assert timeouts == {"big": 120, "acme": 120, "small": None, "ocr": None}


def test_kubernetes_renders_the_same_door() -> None:
    spec = stack()
    files = render_kubernetes(spec, plan_stack(spec), "../door.yaml")
    deployment = next(
        doc
        for text in files.values()
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict) and doc.get("kind") == "Deployment" and "litellm" in doc["metadata"]["name"]
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python3", "/etc/gpustack-compose/litellm/door.py"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[proxy_door.KEEPALIVE_ENV] == "15"
    assert env["AIOHTTP_TTL_DNS_CACHE"] == str(PROXY_DNS_CACHE_S)


# --- the draining protocol, on a real Uvicorn ---------------------------------


async def app(scope: dict[str, Any], _receive: Any, send: Any) -> None:
    if scope["path"] == "/slow":
        await asyncio.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


@contextmanager
def server(protocol: type[H11Protocol], max_requests: int) -> Iterator[str]:
    """Uvicorn with Gunicorn's recycling (``limit_max_requests``) in a thread."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=protocol,
        limit_max_requests=max_requests,
        lifespan="off",
        log_level="error",
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = instance.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


def test_a_recycling_worker_says_connection_close_on_an_idle_connections_next_response() -> None:
    # the race behind the lost requests: the worker reached its count while
    # the client's connection sat idle between two requests
    with server(proxy_door.draining_protocol(), max_requests=3) as url, httpx.Client(base_url=url) as client:
        for _ in range(3):
            assert client.get("/").headers.get("connection") != "close"
        time.sleep(0.3)  # Uvicorn checks the count every 0.1 s: the worker is draining now
        last = client.get("/")
        assert last.status_code == 200
        assert last.headers["connection"] == "close"


def test_a_request_in_flight_when_draining_starts_is_the_connections_last() -> None:
    # Uvicorn counts a request when its response completes: another
    # connection's answer reaches the count while this one is still working
    with server(proxy_door.draining_protocol(), max_requests=1) as url, httpx.Client(base_url=url) as slow:
        answers: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: answers.append(slow.get("/slow")))
        thread.start()
        time.sleep(0.1)
        assert httpx.get(url).status_code == 200
        thread.join(timeout=10)
        assert answers[0].status_code == 200
        assert answers[0].headers["connection"] == "close"


def test_stock_uvicorn_drops_the_idle_connection_the_client_reuses() -> None:
    # the same sequence without the door: the fourth request is lost
    with server(H11Protocol, max_requests=3) as url, httpx.Client(base_url=url) as client:
        for _ in range(3):
            assert client.get("/").status_code == 200
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            client.get("/")


def test_a_draining_worker_closes_a_connection_left_idle() -> None:
    with server(proxy_door.draining_protocol(), max_requests=1) as url, httpx.Client(base_url=url) as client:
        assert client.get("/").status_code == 200
        started = time.monotonic()
        while client.get("/").headers.get("connection") != "close":  # until this connection's last
            assert time.monotonic() - started < 5
        # the worker exits once its connections are closed: well before a keep-alive would expire
        time.sleep(proxy_door.DRAIN_IDLE_S + 0.5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=2)


# --- the rehearsal's fallback check --------------------------------------------


def answered(by: str | None, ok: bool = True) -> SmokeResult:
    return SmokeResult("big", ok, 200 if ok else 500, 4.2, "x" if ok else "boom", answered_by=by)


@pytest.mark.parametrize(
    ("result", "back", "problem"),
    [
        (answered("small"), 3.0, None),
        (answered("big"), 3.0, "answered by 'big', not by one of its fallbacks (small, ocr)"),
        (answered(None, ok=False), 3.0, "a request to it failed (500: boom) instead of reaching small, ocr"),
        (answered("ocr"), None, "big did not become healthy again within 180 s"),
    ],
)
def test_fallback_verdicts(result: SmokeResult, back: float | None, problem: str | None) -> None:
    check = FallbackCheck("big", ("small", "ocr"), result, back)
    if problem is None:
        assert check.problems == []
        assert check.as_dict()["ok"] is True
    else:
        assert len(check.problems) == 1
        assert problem in check.problems[0]
        assert check.as_dict()["ok"] is False


def test_the_check_stops_the_first_model_with_fallbacks() -> None:
    spec = stack()
    assert candidate(spec, plan_stack(spec)) == "big"
    plain = stack({**STACK, "models": [{**m, "fallbacks": []} for m in STACK["models"]]})
    assert candidate(plain, plan_stack(plain)) is None
