"""The proxy client against httpx.MockTransport: readiness, smoke, no-key refusal."""

from __future__ import annotations

import json

import httpx
import pytest

from gpustack_compose.errors import BootError
from gpustack_compose.runtime.proxy import ProxyClient

KEY = "sk-test"


def fake_litellm(models: list[str], ready_after: int = 0) -> httpx.MockTransport:
    calls = {"models": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization")
        if request.url.path == "/health/liveliness":
            return httpx.Response(200, text='"I\'m alive!"')
        if auth != f"Bearer {KEY}":
            return httpx.Response(401, json={"error": {"message": "No api key passed in."}})
        if request.url.path == "/v1/models":
            calls["models"] += 1
            listed = models if calls["models"] > ready_after else models[:1]
            return httpx.Response(200, json={"data": [{"id": m} for m in listed], "object": "list"})
        if request.url.path == "/v1/chat/completions":
            body = json.loads(request.content)
            if body["model"] not in models:
                return httpx.Response(400, json={"error": {"message": f"Invalid model name {body['model']}"}})
            return httpx.Response(200, json={"model": body["model"], "choices": [{"message": {"content": "hi"}}]})
        return httpx.Response(404)

    return httpx.MockTransport(handler)


def test_waits_until_every_model_is_listed() -> None:
    client = ProxyClient("http://proxy", KEY, transport=fake_litellm(["a", "b", "inv"], ready_after=2))
    assert client.wait_ready(["a", "b", "inv"], timeout_s=5, poll_s=0.01) < 5


def test_gives_up_with_what_is_missing() -> None:
    client = ProxyClient("http://proxy", KEY, transport=fake_litellm(["a"]))
    with pytest.raises(BootError, match=r"not ready after 0 s: the proxy does not list b yet"):
        client.wait_ready(["a", "b"], timeout_s=0.2, poll_s=0.05)


def test_waits_until_a_removed_name_is_gone() -> None:
    # old workers (still listing the adapter) answer the first polls after a reload
    listings = iter([["a", "x"], ["a", "x"], ["a"]])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health/liveliness":
            return httpx.Response(200)
        return httpx.Response(200, json={"data": [{"id": m} for m in next(listings)]})

    client = ProxyClient("http://proxy", KEY, transport=httpx.MockTransport(handler))
    assert client.wait_ready(["a"], timeout_s=5, poll_s=0.01, gone=["x"]) < 5
    stuck = ProxyClient("http://proxy", KEY, transport=fake_litellm(["a", "x"]))
    with pytest.raises(BootError, match=r"the proxy still lists x"):
        stuck.wait_ready(["a"], timeout_s=0.2, poll_s=0.05, gone=["x"])


def test_smoke_per_model_and_key_refusal() -> None:
    client = ProxyClient("http://proxy", KEY, transport=fake_litellm(["a", "inv"]))
    assert client.chat("a").ok
    assert client.chat("inv").detail == "answered by inv"
    unknown = client.chat("zzz")
    assert (unknown.ok, unknown.status) == (False, 400)
    refusal = client.refuses_without_key()
    assert (refusal.ok, refusal.status, refusal.detail) == (True, 401, "refused")


def test_a_proxy_that_serves_without_a_key_fails_the_check() -> None:
    open_proxy = httpx.MockTransport(lambda _request: httpx.Response(200, json={"choices": [{}]}))
    result = ProxyClient("http://proxy", KEY, transport=open_proxy).refuses_without_key()
    assert (result.ok, result.status) == (False, 200)
