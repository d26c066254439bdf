"""The swap coordinator's policy against test doubles of the vLLM servers and
the card (its real-component test is the Docker rehearsal), and its HTTP face
forwarding to an in-process upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from gpustack_compose.swap.app import build_app
from gpustack_compose.swap.backend import BackendError
from gpustack_compose.swap.config import ConfigError, ModelConfig, SwapConfig, parse
from gpustack_compose.swap.coordinator import Coordinator, Unavailable

GiB = 1024**3
T = TypeVar("T")


def config(levels: dict[str, int], awake_max: int = 1, timeout_s: int = 5, idle_s: int = 60) -> SwapConfig:
    data = {
        "stack": "t",
        "request_timeout_s": timeout_s,
        "gpus": [{"index": 0, "nvml_index": 0, "awake_max": awake_max, "total_bytes": 100 * GiB,
                  "reserve_bytes": 0}],
        "models": [
            {"name": name, "service": name, "url": f"http://{name}:8000", "gpu": 0, "level": level,
             "idle_s": idle_s, "wake_bytes": 60 * GiB, "boot_timeout_s": 5, "sleep_timeout_s": 5}
            for name, level in levels.items()
        ],
    }  # fmt: skip
    return parse(data)


@dataclass
class Card:
    """A 100 GiB card: an awake server holds 61 GiB, a sleeper 1 GiB."""

    held: dict[str, int] = field(default_factory=dict)

    def free_bytes(self, gpu: int) -> int:  # noqa: ARG002 -- one card
        return 100 * GiB - sum(self.held.values())


@dataclass
class Servers:
    card: Card
    awake: dict[str, bool]
    calls: list[str] = field(default_factory=list)
    fail_wake: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        for name, up in self.awake.items():
            self.card.held[name] = 61 * GiB if up else GiB

    async def sleep(self, model: ModelConfig, first: bool) -> None:
        self.calls.append(f"sleep {model.name}" + (" (first)" if first else ""))
        await asyncio.sleep(self.delay_s)
        self.awake[model.name] = False
        self.card.held[model.name] = GiB

    async def wake(self, model: ModelConfig) -> None:
        self.calls.append(f"wake {model.name}")
        await asyncio.sleep(self.delay_s)
        if model.name in self.fail_wake or self.card.free_bytes(0) < 60 * GiB:
            self.card.held[model.name] = 40 * GiB  # stuck with what it mapped
            raise BackendError(f"{model.name}: POST /wake_up: HTTP 500 CUDA Error: out of memory")
        self.awake[model.name] = True
        self.card.held[model.name] = 61 * GiB

    async def reload_weights(self, model: ModelConfig) -> None:
        self.calls.append(f"reload {model.name}")

    async def is_sleeping(self, model: ModelConfig) -> bool | None:
        if model.name in self.down:
            return None
        return not self.awake[model.name]

    async def restart(self, model: ModelConfig) -> None:
        self.calls.append(f"restart {model.name}")
        self.fail_wake.discard(model.name)
        self.card.held[model.name] = 0
        self.awake[model.name] = True  # a fresh process boots awake
        self.card.held[model.name] = 61 * GiB


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def coordinator(cfg: SwapConfig, awake: dict[str, bool], clock: Clock | None = None) -> tuple[Coordinator, Servers]:
    servers = Servers(Card(), awake)
    kwargs = {"clock": clock} if clock is not None else {}
    c = Coordinator(cfg, servers, servers.card, servers, **kwargs)
    return c, servers


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_a_request_for_a_sleeper_makes_room_first_then_wakes_it() -> None:
    async def scenario() -> list[str]:
        c, servers = coordinator(config({"a": 1, "b": 1}), {"a": True, "b": False})
        await c.reconcile()
        state = await c.acquire("b")
        assert state.phase == "awake" and state.inflight == 1
        c.release(state)
        return servers.calls

    # a first (its first sleep: slow, its own budget), then b
    assert run(scenario()) == ["sleep a (first)", "wake b"]


def test_concurrent_requests_for_one_sleeper_cause_one_wake() -> None:
    async def scenario() -> list[str]:
        c, servers = coordinator(config({"a": 1, "b": 1}), {"a": False, "b": False})
        servers.delay_s = 0.05
        await c.reconcile()
        held = await asyncio.gather(*(c.acquire("a") for _ in range(5)))
        assert {s.inflight for s in held} == {5}
        return servers.calls

    assert run(scenario()) == ["wake a"]


def test_a_model_with_requests_in_flight_is_never_put_to_sleep() -> None:
    async def scenario() -> list[str]:
        c, servers = coordinator(config({"a": 1, "b": 1}), {"a": True, "b": False})
        await c.reconcile()
        busy = await c.acquire("a")
        waiting = asyncio.create_task(c.acquire("b"))
        await asyncio.sleep(0.3)
        assert not waiting.done() and servers.calls == []  # b waits; a keeps serving
        c.release(busy)
        got = await waiting
        assert got.config.name == "b"
        return servers.calls

    assert run(scenario()) == ["sleep a (first)", "wake b"]


def test_the_least_recently_used_idle_model_steps_aside() -> None:
    async def scenario() -> list[str]:
        clock = Clock()
        c, servers = coordinator(config({"a": 1, "b": 1, "c": 1}, awake_max=2), {"a": True, "b": True, "c": False},
                                 clock)  # fmt: skip
        servers.card.held.update({"a": 30 * GiB, "b": 30 * GiB})  # two slots taken, 39 GiB free
        await c.reconcile()
        for name, at in (("b", 1.0), ("a", 2.0)):  # b used first, a last
            clock.now += at
            c.release(await c.acquire(name))
        state = await c.acquire("c")
        c.release(state)
        return servers.calls

    assert run(scenario()) == ["sleep b (first)", "wake c"]


def test_no_room_and_nothing_idle_is_a_503_not_a_hang() -> None:
    async def scenario() -> str:
        c, _servers = coordinator(config({"a": 1, "b": 1}, timeout_s=1), {"a": True, "b": False})
        await c.reconcile()
        await c.acquire("a")  # never released
        try:
            await c.acquire("b")
        except Unavailable as exc:
            return str(exc)
        raise AssertionError("acquire returned without room")

    message = run(scenario())
    assert message == (
        "b cannot wake on GPU 0 within 1 s: it needs 60.00 GiB free, the card has 38.00 GiB; awake: a (awake, 1 in "
        "flight) (awake_max 1); nothing idle could be put to sleep"
    )


def test_the_card_is_checked_before_every_wake() -> None:
    async def scenario() -> list[str]:
        # a slot is free (awake_max 2) but the card is not: something outside holds 50 GiB
        c, servers = coordinator(config({"a": 1, "b": 1}, awake_max=2, timeout_s=1), {"a": False, "b": False})
        servers.card.held["outsider"] = 50 * GiB
        await c.reconcile()
        with pytest.raises(Unavailable, match=r"it needs 60\.00 GiB free, the card has 48\.00 GiB"):
            await c.acquire("a")
        return servers.calls

    assert run(scenario()) == []  # never woken into memory that is not there


def test_level_two_reloads_the_weights_after_every_wake() -> None:
    async def scenario() -> list[str]:
        c, servers = coordinator(config({"a": 2}), {"a": False})
        await c.reconcile()
        c.release(await c.acquire("a"))
        return servers.calls

    assert run(scenario()) == ["wake a", "reload a"]


def test_a_failed_wake_restarts_the_container_and_the_request_goes_through() -> None:
    async def scenario() -> tuple[list[str], tuple[str, int, int]]:
        c, servers = coordinator(config({"a": 1}), {"a": False})
        servers.fail_wake.add("a")
        await c.reconcile()
        state = await c.acquire("a")
        c.release(state)
        return servers.calls, (state.phase, state.failed_wakes, state.restarts)

    calls, outcome = run(scenario())
    assert calls == ["wake a", "restart a"]
    assert outcome == ("awake", 1, 1)


def test_idle_models_sleep_after_idle_s_and_busy_ones_do_not() -> None:
    async def scenario() -> list[str]:
        clock = Clock()
        c, servers = coordinator(config({"a": 1, "b": 1}, awake_max=2, idle_s=60), {"a": True, "b": True}, clock)
        servers.card.held.update({"a": 30 * GiB, "b": 30 * GiB})
        await c.reconcile()
        c.release(await c.acquire("a"))
        busy = await c.acquire("b")
        clock.now += 59
        await c.sleep_idle()
        assert servers.calls == []
        clock.now += 2
        await c.sleep_idle()
        c.release(busy)
        return servers.calls

    assert run(scenario()) == ["sleep a (first)"]


def test_a_server_put_to_sleep_behind_its_back_is_woken_for_its_held_requests() -> None:
    async def scenario() -> list[str]:
        c, servers = coordinator(config({"a": 1}), {"a": True})
        await c.reconcile()
        held = await c.acquire("a")
        servers.awake["a"] = False  # e.g. `up` ran a first-sleep step again
        servers.card.held["a"] = GiB
        await c.reconcile()
        assert c.models["a"].phase == "asleep"
        await c.heal()
        c.release(held)
        return servers.calls

    assert run(scenario()) == ["wake a"]


def test_a_booting_server_keeps_its_slot() -> None:
    async def scenario() -> list[str]:
        c, servers = coordinator(config({"a": 1, "b": 1}, timeout_s=1), {"a": True, "b": False})
        servers.down.add("a")  # restarted by Docker: down, then up awake
        await c.reconcile()
        assert c.models["a"].phase == "booting"
        waiting = asyncio.create_task(c.acquire("b"))
        await asyncio.sleep(0.2)
        servers.down.discard("a")
        c.release(await waiting)
        return servers.calls

    assert run(scenario()) == ["sleep a (first)", "wake b"]


def test_the_configuration_is_checked() -> None:
    gpu = {"index": 0, "nvml_index": 0, "awake_max": 1, "total_bytes": 1, "reserve_bytes": 0}
    model = {"name": "a", "service": "a", "url": "http://a", "gpu": 0, "level": 3, "idle_s": 1, "wake_bytes": 1,
             "boot_timeout_s": 1, "sleep_timeout_s": 1}  # fmt: skip
    with pytest.raises(ConfigError, match=r"models\[0\]\.level: expected 1 or 2, got 3"):
        parse({"stack": "t", "request_timeout_s": 5, "gpus": [gpu], "models": [model]})
    with pytest.raises(ConfigError, match=r"models\[0\]\.gpu: GPU 1 is not in gpus"):
        parse({"stack": "t", "request_timeout_s": 5, "gpus": [], "models": [{**model, "gpu": 1, "level": 1}]})


# -- the HTTP face: forwarding, streaming, errors --------------------------------


def upstream() -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                for word in ("hello", "there"):
                    yield f"data: {word}\n\n".encode()
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"model": body["model"], "auth": request.headers.get("authorization")})

    async def models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "a"}]})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])


def test_requests_are_forwarded_once_the_model_is_awake_and_streams_pass_through() -> None:
    c, servers = coordinator(config({"a": 1}), {"a": False})
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream()))
    app = build_app(c, client, background=False)
    with TestClient(app) as test:
        assert test.get("/health").status_code == 200
        # reads are passed through and never wake a sleeper (LiteLLM lists its backends' models)
        assert test.get("/a/v1/models").json()["data"] == [{"id": "a"}]
        assert c.models["a"].phase == "asleep" and servers.calls == []
        answer = test.post("/a/v1/chat/completions", json={"model": "a"}, headers={"authorization": "Bearer k"})
        assert answer.status_code == 200
        assert answer.json() == {"model": "a", "auth": "Bearer k"}
        with test.stream("POST", "/a/v1/chat/completions", json={"model": "a", "stream": True}) as streamed:
            assert b"".join(streamed.iter_raw()) == b"data: hello\n\ndata: there\n\ndata: [DONE]\n\n"
        assert c.models["a"].inflight == 0  # released after the last byte
        assert test.post("/nope/v1/chat/completions", json={}).status_code == 404
        state = test.get("/state?history=1").json()
        assert state["models"]["a"]["phase"] == "awake" and state["models"]["a"]["wakes"] == 1
        assert [e["awake"] for e in state["history"]][-1] == ["a"]
    assert servers.calls == ["wake a"]


def test_an_unreachable_server_is_a_502_and_releases_its_slot() -> None:
    c, _servers = coordinator(config({"a": 1}), {"a": True})

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    with TestClient(build_app(c, client, background=False)) as test:
        answer = test.post("/a/v1/chat/completions", json={"model": "a"})
    assert answer.status_code == 502
    assert answer.json()["error"]["message"] == "a: ConnectError: connection refused"
    assert c.models["a"].inflight == 0
