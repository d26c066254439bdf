"""Healthcheck timing: what makes a boot gate open quickly, per Docker Engine.

Compose starts a dependent once its dependency's container is ``healthy``; the
engine only re-runs a check every ``interval``, so the interval bounds the gate
latency. ``start_interval`` (checks during ``start_period`` only) lets a stack
poll fast while booting and relax afterwards, but Docker Engine before 25.0
refuses it at container creation ("can't set healthcheck.start_interval as
feature require Docker Engine v25 or later", seen on Engine 20.10, lab notes).
So the render depends on the stack's declared minimum engine.
"""

from __future__ import annotations

from dataclasses import dataclass

START_INTERVAL_ENGINE = (25, 0)

# Older engines: one interval for boot and steady state. 2 s keeps the median
# gate latency near 1 s (half an interval) at the cost of one curl every 2 s.
FLAT_INTERVAL_S = 2
# Engine 25+: poll every second while booting, every 10 s once healthy.
START_INTERVAL_S = 1
STEADY_INTERVAL_S = 10
# vLLM's /health answers from the API server's event loop; a loaded server may
# take a few seconds. Three misses in a row mark the container unhealthy.
TIMEOUT_S = 10
RETRIES = 3
# LiteLLM was ready 7-9 s after start, 14 s under Gunicorn with 2 workers and
# 31 s with uvicorn workers (lab notes): a minute of grace.
PROXY_START_PERIOD_S = 60


@dataclass(frozen=True)
class Timing:
    interval_s: int
    timeout_s: int
    retries: int
    start_period_s: int
    start_interval_s: int | None

    def budget_s(self) -> int:
        """Longest a failing container can take to be marked unhealthy."""
        return self.start_period_s + self.retries * (self.interval_s + self.timeout_s)


def parse_engine_version(text: str) -> tuple[int, int]:
    """``20.10.24+dfsg1`` -> (20, 10)."""
    parts = text.split(".")
    digits = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts[:2]]
    while len(digits) < 2:
        digits.append(0)
    return digits[0], digits[1]


def supports_start_interval(min_engine: str) -> bool:
    return parse_engine_version(min_engine) >= START_INTERVAL_ENGINE


def timing(min_engine: str, start_period_s: int) -> Timing:
    if supports_start_interval(min_engine):
        return Timing(STEADY_INTERVAL_S, TIMEOUT_S, RETRIES, start_period_s, START_INTERVAL_S)
    return Timing(FLAT_INTERVAL_S, TIMEOUT_S, RETRIES, start_period_s, None)
