"""Talk to the stack's LiteLLM proxy: wait until it routes every model, and
smoke-test each model and adapter through it.

``/health/liveliness`` needs no key (LiteLLM); ``/v1/models`` and completions
need the master key. The transport is injectable (``httpx.MockTransport`` in
unit tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from gpustack_compose.errors import BootError

SMOKE_PROMPT = "Reply with one short sentence."
# LiteLLM's router names the model group that answered in this response
# header; after a fallback it is the fallback's (litellm/router.py,
# ``set_response_headers``; docs/facts.md, "The front door").
ANSWERED_BY_HEADER = "x-litellm-model-group"


class NotReady(Exception):
    """The proxy is up but not (yet) routing every model."""


@dataclass(frozen=True)
class SmokeResult:
    model: str
    ok: bool
    status: int | None
    latency_s: float | None
    detail: str
    answered_by: str | None = None  # the route that answered: the model, or one of its fallbacks

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "ok": self.ok,
            "status": self.status,
            "latency_s": None if self.latency_s is None else round(self.latency_s, 3),
            "detail": self.detail,
        }


class ProxyClient:
    def __init__(
        self,
        base_url: str,
        master_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.master_key = master_key
        self.http = httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.master_key}"}

    def routed_models(self) -> set[str]:
        """Model names the proxy lists; raises NotReady while it cannot answer."""
        try:
            live = self.http.get("/health/liveliness")
            if live.status_code != 200:
                raise NotReady(f"/health/liveliness answered {live.status_code}")
            listed = self.http.get("/v1/models", headers=self._auth())
        except httpx.HTTPError as exc:
            raise NotReady(f"{type(exc).__name__}: {exc}") from None
        if listed.status_code != 200:
            raise NotReady(f"/v1/models answered {listed.status_code}: {listed.text[:200]}")
        try:
            return {str(item["id"]) for item in listed.json().get("data", [])}
        except (ValueError, KeyError, TypeError) as exc:
            raise NotReady(f"/v1/models answered something that is not a model list: {exc}") from None

    def wait_ready(
        self, expected: Iterable[str], timeout_s: float, poll_s: float = 0.5, *, gone: Iterable[str] = ()
    ) -> float:
        """Block until the proxy is live, lists every expected model and none
        of the ``gone`` ones; seconds waited."""
        wanted = set(expected)
        unwanted = set(gone)
        started = time.monotonic()

        def attempt() -> None:
            routed = self.routed_models()
            missing = wanted - routed
            if missing:
                raise NotReady(f"the proxy does not list {', '.join(sorted(missing))} yet")
            still = unwanted & routed
            if still:
                raise NotReady(f"the proxy still lists {', '.join(sorted(still))}")

        try:
            for try_ in Retrying(
                stop=stop_after_delay(timeout_s),
                wait=wait_fixed(poll_s),
                retry=retry_if_exception_type(NotReady),
                reraise=False,
            ):
                with try_:
                    attempt()
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise BootError(f"the proxy at {self.base_url} is not ready after {timeout_s:.0f} s: {last}") from None
        return time.monotonic() - started

    def chat(self, model: str, max_tokens: int = 8) -> SmokeResult:
        body = {"model": model, "messages": [{"role": "user", "content": SMOKE_PROMPT}], "max_tokens": max_tokens}
        started = time.monotonic()
        try:
            response = self.http.post("/v1/chat/completions", json=body, headers=self._auth())
        except httpx.HTTPError as exc:
            return SmokeResult(model, False, None, None, f"{type(exc).__name__}: {exc}")
        latency = time.monotonic() - started
        if response.status_code != 200:
            return SmokeResult(model, False, response.status_code, latency, response.text[:300])
        try:
            answer = response.json()
            choices, served = answer["choices"], answer.get("model", "")
        except (ValueError, KeyError, TypeError):
            return SmokeResult(model, False, 200, latency, "the answer is not a chat completion")
        if not choices:
            return SmokeResult(model, False, 200, latency, "the answer has no choices")
        route = response.headers.get(ANSWERED_BY_HEADER)
        return SmokeResult(model, True, 200, latency, f"answered by {served}", answered_by=route)

    def refuses_without_key(self) -> SmokeResult:
        """A request with no key must be refused (401/403), never served."""
        body = {"model": "any", "messages": [{"role": "user", "content": SMOKE_PROMPT}], "max_tokens": 1}
        try:
            response = self.http.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            return SmokeResult("(no key)", False, None, None, f"{type(exc).__name__}: {exc}")
        refused = response.status_code in (401, 403)
        detail = "refused" if refused else f"NOT refused: {response.text[:200]}"
        return SmokeResult("(no key)", refused, response.status_code, None, detail)
