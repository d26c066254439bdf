"""The rehearsal's monitoring check (stacks with ``monitoring.enabled``):
the stack's real Prometheus has scraped every server and the proxy, and
every query of the dashboard (``monitoring/queries.py``) answers with a series
for every model (or card, or name at the proxy) of the plan.

Order: wait until Prometheus sees every target up; send one chat per model
through the proxy, so rates and latency histograms have something to show
after Prometheus's first scrape; then run the queries until each answers or
the deadline passes (a rate needs two scrapes after the traffic).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from gpustack_compose.contract import GPU_EXPORTER_SERVICE, PROMETHEUS_PORT, PROMETHEUS_SERVICE
from gpustack_compose.errors import CheckError
from gpustack_compose.monitoring.queries import KEY_LABEL, Query, all_queries
from gpustack_compose.planner import Plan
from gpustack_compose.runtime.proxy import ProxyClient
from gpustack_compose.runtime.state import EngineView
from gpustack_compose.spec import StackSpec

# Seconds to wait for every target to be scraped once; then for every query to answer.
TARGETS_TIMEOUT_S = 90.0
QUERIES_TIMEOUT_S = 60.0
POLL_S = 1.0


@dataclass
class QueryResult:
    panel: str
    query: Query
    expected: list[str]
    answered: list[str] = field(default_factory=list)
    skipped: str | None = None  # why it was not asked to answer
    values: dict[str, float | None] = field(default_factory=dict)

    @property
    def expr(self) -> str:
        return self.query.expr

    @property
    def by(self) -> str:
        return KEY_LABEL[self.query.by]

    @property
    def missing(self) -> list[str]:
        return [] if self.skipped else sorted(set(self.expected) - set(self.answered))

    def as_dict(self) -> dict[str, Any]:
        return {"panel": self.panel, "expr": self.expr, "by": self.by, "expected": self.expected,
                "answered": self.answered, "missing": self.missing, "skipped": self.skipped,
                "values": self.values}  # fmt: skip


@dataclass
class MonitoringCheck:
    prometheus: str
    targets: dict[str, str]  # scrape target -> health
    results: list[QueryResult]
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"prometheus": self.prometheus, "targets": self.targets,
                "queries": [r.as_dict() for r in self.results], "problems": self.problems}  # fmt: skip


def expected_keys(query: Query, stack: StackSpec, plan: Plan) -> list[str]:
    if query.by == "gpu":
        return sorted({str(gpu) for m in plan.models for gpu in m.gpus})
    return [m.name for m in stack.models]  # vLLM's model_name and the proxy's requested_model alike


def prometheus_url(view: EngineView, project: str) -> str:
    bound = view.published_port(project, PROMETHEUS_SERVICE, PROMETHEUS_PORT)
    if bound is None:
        raise CheckError(f"the Prometheus of {project} is not running or publishes no port")
    return f"http://{bound[0]}:{bound[1]}"


def _query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/query", params={"query": expr})
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise CheckError(f"Prometheus refused {expr!r}: {body.get('error', response.status_code)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _targets(client: httpx.Client) -> dict[str, str]:
    """Scrape URL -> health, of every target a rehearsal runs (the GPU
    exporter's needs a GPU)."""
    body = client.get("/api/v1/targets", params={"state": "active"}).json()
    return {t["scrapeUrl"]: t["health"] for t in body["data"]["activeTargets"]
            if f"//{GPU_EXPORTER_SERVICE}:" not in t["scrapeUrl"]}  # fmt: skip


def _value(sample: dict[str, Any]) -> float | None:
    number = float(sample["value"][1])
    return None if math.isnan(number) else round(number, 6)


def check(view: EngineView, project: str, proxy: ProxyClient, stack: StackSpec, plan: Plan) -> MonitoringCheck:
    url = prometheus_url(view, project)
    problems: list[str] = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        deadline = time.monotonic() + TARGETS_TIMEOUT_S
        targets = _wait(lambda: _targets(client), lambda t: bool(t) and all(h == "up" for h in t.values()), deadline)
        down = sorted(target for target, health in targets.items() if health != "up")
        if down:
            problems.append(f"targets not scraped: {', '.join(down)}")
        for model in stack.models:  # traffic after the first scrape: the rates have an increase to show
            proxy.chat(model.name)
        results = [QueryResult(panel.title, q, expected_keys(q, stack, plan)) for panel, q in all_queries()]
        for result in results:
            if result.query.needs_gpu:
                result.skipped = "the DCGM exporter needs a GPU: not run in a rehearsal"
            elif result.query.on_event:
                result.skipped = "series appear once a request fails"
        deadline = time.monotonic() + QUERIES_TIMEOUT_S
        while True:
            for result in results:
                if result.skipped is None and result.missing:
                    samples = _query(client, result.expr)
                    result.values = {s["metric"].get(result.by, ""): _value(s) for s in samples}
                    result.answered = sorted(k for k, v in result.values.items() if k and v is not None)
            if all(not r.missing for r in results) or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
    for result in results:
        if result.missing:
            problems.append(f"{result.panel}: {result.expr} has no series for {', '.join(result.missing)}")
    return MonitoringCheck(url, targets, results, problems)


def _wait(read: Any, done: Any, deadline: float) -> Any:
    while True:
        try:
            value = read()
        except httpx.HTTPError:
            value = None
        if (value is not None and done(value)) or time.monotonic() > deadline:
            return value or {}
        time.sleep(POLL_S)
