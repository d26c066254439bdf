"""Proxy overhead: chat completions through the rendered LiteLLM proxy versus
straight to the (simulated) vLLM server, at concurrency 1 and 32; and through
a second LiteLLM container from the same image and config but LiteLLM's
default settings (one uvicorn worker, no gunicorn, cost map fetched at start),
to show what the rendered settings buy. Everything on one rehearsal."""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench.common import Load, Section, load, running_rehearsal, service_container
from gpustack_compose.contract import PROXY_PORT
from gpustack_compose.runtime import lifecycle

COUNTS = {1: 300, 32: 1600}
STACK = """\
name: bench-proxy
gpus: [{index: 0, type: H100-80GB}]
models:
  - {name: m, model: Qwen/Qwen3-0.6B, memory: 0.3, max_model_len: 4096}
proxy: {workers: 2}
"""


def _default_litellm(s: lifecycle.Run, image: str) -> Any:
    proxy = service_container(s, "litellm")
    network = next(iter(proxy.attrs["NetworkSettings"]["Networks"]))
    config = str((s.out_dir / "litellm" / "config.yaml").resolve())
    return s.view.client.containers.run(
        image,
        ["--config", "/app/config.yaml", "--port", str(PROXY_PORT)],  # LiteLLM's defaults otherwise
        detach=True,
        environment={"LITELLM_MASTER_KEY": s.key},
        network=network,
        volumes={config: {"bind": "/app/config.yaml", "mode": "ro"}},
        ports={f"{PROXY_PORT}/tcp": ("127.0.0.1", None)},
        labels={"gpustack-compose.bench": "proxy-defaults"},
    )


def _wait_routes(url: str, key: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
            r = httpx.post(
                f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=10, json=body
            )
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not serve within {timeout_s} s")


def _published(container: Any) -> str:
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"][f"{PROXY_PORT}/tcp"][0]["HostPort"]
    return f"http://127.0.0.1:{port}"


def run() -> Section:
    section = Section("Proxy overhead: through the rendered LiteLLM proxy vs straight to the engine (issue 9)")
    results: dict[tuple[str, int], Load] = {}
    with running_rehearsal("proxy", STACK) as s:
        model = service_container(s, "m")
        ip = next(iter(model.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        defaults = _default_litellm(s, service_container(s, "litellm").image.tags[0])
        try:
            targets = {
                "straight to the engine": (f"http://{ip}:8000", None),
                "rendered proxy (2 gunicorn workers)": (_published(service_container(s, "litellm")), s.key),
                "LiteLLM defaults (1 uvicorn worker)": (_published(defaults), s.key),
            }
            for url, key in targets.values():
                if key:
                    _wait_routes(url, key)
            for label, (url, key) in targets.items():
                headers = {"Authorization": f"Bearer {key}"} if key else None
                load(f"{url}/v1/chat/completions", "m", 4, 40, headers)  # warm-up
                for concurrency, count in COUNTS.items():
                    results[(label, concurrency)] = load(f"{url}/v1/chat/completions", "m", concurrency, count,
                                                         headers)  # fmt: skip
        finally:
            defaults.remove(force=True)
    section.add("One simulated vLLM server (answers at once, so the numbers are the proxy's own cost); "
                "the load generator runs on the same 2-core host, from 127.0.0.1.")  # fmt: skip
    section.add("")
    section.add("| path | concurrency | requests | failed | p50 | p99 | throughput |")
    section.add("|:--|--:|--:|--:|--:|--:|--:|")
    for (label, concurrency), r in results.items():
        section.add(f"| {label} | {concurrency} | {r.sent} | {len(r.failures)} | {r.percentile(0.5) * 1000:.1f} ms "
                    f"| {r.percentile(0.99) * 1000:.1f} ms | {r.throughput:.0f} req/s |")  # fmt: skip
    direct = results[("straight to the engine", 1)]
    rendered = results[("rendered proxy (2 gunicorn workers)", 1)]
    added = (rendered.percentile(0.5) - direct.percentile(0.5)) * 1000
    r32 = results[("rendered proxy (2 gunicorn workers)", 32)]
    d32 = results[("LiteLLM defaults (1 uvicorn worker)", 32)]
    section.add("")
    section.add(f"The proxy adds {added:.1f} ms at p50 to a single request. At concurrency 32 the rendered "
                f"settings serve {r32.throughput:.0f} req/s against {d32.throughput:.0f} req/s with LiteLLM's "
                "defaults.")  # fmt: skip
    section.data = {"added_p50_ms": added, "rendered_32_rps": r32.throughput, "defaults_32_rps": d32.throughput}
    failures = sum(len(r.failures) for r in results.values())
    section.met = failures == 0
    section.add(f"Target: no failed request ({failures} failed); overhead reported, not gated.")
    return section
