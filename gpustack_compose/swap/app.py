"""The coordinator's HTTP face: ``/<service>/...`` is forwarded to that
server once it is awake (streamed both ways, so a streaming chat's in-flight
count lasts until its last byte); ``/health`` and ``/state`` are its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gpustack_compose.swap.coordinator import Coordinator, Unavailable

log = logging.getLogger("gsc.swap")

# RFC 9110 section 7.6.1: connection-specific fields a proxy must not forward;
# content-length is recomputed for the body as sent.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip


# Requests that read and never generate: passed through as they are, asleep or awake.
READS = frozenset({"GET", "HEAD"})


async def _pass(base: str, request: Request, client: httpx.AsyncClient) -> Response:
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    try:
        answer = await client.request(
            request.method,
            f"{base}/{request.path_params['rest']}",
            params=request.query_params,
            headers=headers,
            timeout=30.0,
        )
    except httpx.HTTPError as exc:
        return _error(502, f"{type(exc).__name__}: {exc}")
    out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
    return Response(answer.content, answer.status_code, out)


def _error(status: int, message: str) -> JSONResponse:
    """OpenAI's error shape, which LiteLLM passes on to the client."""
    return JSONResponse({"error": {"message": message, "type": "ServiceUnavailableError", "code": status}}, status)


def build_app(coordinator: Coordinator, client: httpx.AsyncClient, *, background: bool = True) -> Starlette:
    ready = asyncio.Event()

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True}) if ready.is_set() else _error(503, "reading the servers' state")

    async def state(_request: Request) -> Response:
        body: dict[str, Any] = coordinator.snapshot()
        if _request.query_params.get("history"):
            body["history"] = list(coordinator.history)
        return JSONResponse(body)

    async def forward(request: Request) -> Response:
        service = request.path_params["service"]
        if service not in coordinator.models:
            return _error(404, f"no swappable model is served as {service!r} here")
        if request.method in READS:
            # A sleeping vLLM answers these (/v1/models 200 while asleep: docs/h200-sleep-vllm-0.26.0.md,
            # E2); LiteLLM lists its backends' models, which must not wake a sleeper.
            return await _pass(coordinator.models[service].config.url, request, client)
        try:
            held = await coordinator.acquire(service)
        except Unavailable as exc:
            return _error(503, str(exc))
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                coordinator.release(held)

        try:
            url = f"{held.config.url}/{request.path_params['rest']}"
            headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
            upstream = client.build_request(
                request.method, url, params=request.query_params, headers=headers, content=await request.body()
            )
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            release()
            return _error(502, f"{held.config.name}: {type(exc).__name__}: {exc}")
        except BaseException:
            release()
            raise

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()
                release()

        async def close() -> None:
            await response.aclose()
            release()

        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(body(), response.status_code, out_headers, background=BackgroundTask(close))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        await coordinator.reconcile()
        ready.set()
        log.info("state: %s", json.dumps(coordinator.snapshot()["gpus"]))
        if background:
            tasks.append(asyncio.create_task(coordinator.run_idle_loop()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await client.aclose()

    routes = [
        Route("/health", health),
        Route("/state", state),
        Route("/{service}/{rest:path}", forward, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
