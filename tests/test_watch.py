"""The boot watcher's logic, from hand-made engine states (no Docker)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gpustack_compose.runtime.state import Probe, ServiceState, iso, parse_time
from gpustack_compose.runtime.watch import BootWatch, Link, Phase, order_violations

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


CHAIN = [
    Link("a", "a", "0", (), budget_s=60),
    Link("b", "b", "0", ("a",), budget_s=60),
    Link("c", "c", "1", (), budget_s=60),
    Link("litellm", None, None, ("a", "b", "c"), budget_s=80),
]


def state(
    service: str,
    status: str = "running",
    health: str | None = "starting",
    started: float | None = 0,
    probes: tuple[Probe, ...] = (),
    restarts: int = 0,
    exit_code: int = 0,
    cid: str = "",
) -> ServiceState:
    return ServiceState(
        service=service,
        container_id=cid or f"id-{service}",
        status=status,
        health=health,
        exit_code=exit_code,
        started_at=at(started) if started is not None else None,
        finished_at=None,
        restart_count=restarts,
        probes=probes,
    )


def ok_probe(end: float) -> Probe:
    return Probe(at(end - 0.05), at(end), 0)


def failed_probe(end: float) -> Probe:
    return Probe(at(end - 0.05), at(end), 7)


def phase(watch: BootWatch, service: str) -> Phase:
    return watch.tracks[service].phase


def test_phases_from_waiting_to_healthy() -> None:
    watch = BootWatch(CHAIN)
    assert watch.observe({"a": state("a", status="created", started=None)}, at(0)) == []
    assert phase(watch, "a") == Phase.WAITING
    changes = watch.observe({"a": state("a")}, at(0.5))
    assert changes == ["a: starting (0.5 s)"]
    watch.observe({"a": state("a", probes=(failed_probe(2),))}, at(2.1))
    assert phase(watch, "a") == Phase.LOADING
    changes = watch.observe({"a": state("a", health="healthy", probes=(failed_probe(2), ok_probe(4)))}, at(4.3))
    assert changes == ["a: healthy after 4.0 s"]
    # healthy_at is the engine's probe end, not when we looked
    assert watch.tracks["a"].healthy_at == at(4)


def test_timeline_and_gate_latency() -> None:
    watch = BootWatch(CHAIN)
    watch.observe(
        {
            "a": state("a", health="healthy", probes=(ok_probe(4),)),
            "b": state("b", started=4.6, health="healthy", probes=(ok_probe(7.6),)),
            "c": state("c", started=0.1, health="healthy", probes=(ok_probe(3.1),)),
            "litellm": state("litellm", started=8.2, health="healthy", probes=(ok_probe(20.2),)),
        },
        at(21),
    )
    assert watch.all_healthy
    entries = {e.service: e for e in watch.timeline()}
    assert entries["a"].load_s == 4.0 and entries["a"].gate_latency_s is None
    assert round(entries["b"].gate_latency_s or 0, 3) == 0.6  # started 0.6 s after a was healthy
    assert round(entries["b"].load_s or 0, 3) == 3.0
    assert round(entries["litellm"].gate_latency_s or 0, 3) == 0.6  # after the last of a, b, c
    assert entries["b"].as_dict() == {
        "service": "b",
        "model": "b",
        "gpu": "0",
        "after": ["a"],
        "started_at": "2026-11-23T12:00:04.600Z",
        "healthy_at": "2026-11-23T12:00:07.600Z",
        "load_s": 3.0,
        "gate_latency_s": 0.6,
    }
    assert order_violations(watch.timeline()) == []


def test_order_violation_is_reported() -> None:
    watch = BootWatch(CHAIN[:2])
    watch.observe(
        {
            "a": state("a", health="healthy", probes=(ok_probe(4),)),
            "b": state("b", started=2.0, health="healthy", probes=(ok_probe(5),)),
        },
        at(6),
    )
    assert order_violations(watch.timeline()) == [
        "b started at 2026-11-23T12:00:02.000Z, before a was healthy (2026-11-23T12:00:04.000Z)"
    ]


def test_exit_is_a_failure_and_blocks_the_rest_of_its_chain() -> None:
    watch = BootWatch(CHAIN)
    watch.observe(
        {
            "a": state("a", status="exited", health="unhealthy", exit_code=1),
            "b": state("b", status="created", started=None),
            "c": state("c", health="healthy", probes=(ok_probe(3),)),
            "litellm": state("litellm", status="created", started=None),
        },
        at(5),
    )
    assert [t.link.service for t in watch.failed] == ["a"]
    assert watch.tracks["a"].failure == "exited with code 1"
    assert watch.blocked_by("a") == ["b", "litellm"]


def test_restart_after_first_sight_is_a_crash() -> None:
    watch = BootWatch(CHAIN[:1])
    watch.observe({"a": state("a", restarts=2)}, at(1))  # restarts from an earlier life do not count
    assert watch.tracks["a"].phase == Phase.STARTING
    watch.observe({"a": state("a", restarts=3)}, at(3))
    assert watch.tracks["a"].failure == "crashed and is being restarted (restart count 3)"


def test_unhealthy_and_budget() -> None:
    watch = BootWatch([Link("a", "a", "0", (), budget_s=10)])
    watch.observe({"a": state("a", health="unhealthy", probes=(failed_probe(9),))}, at(9))
    assert watch.tracks["a"].failure == "is unhealthy: its healthcheck kept failing after the start period"
    watch = BootWatch([Link("a", "a", "0", (), budget_s=10)])
    watch.observe({"a": state("a", probes=(failed_probe(10.5),))}, at(10.6))
    assert watch.tracks["a"].failure == "is not healthy 10 s after it started (its boot budget)"


def test_docker_time_parsing() -> None:
    assert parse_time("2026-11-23T18:08:11.123456789Z") == datetime(2026, 11, 23, 18, 8, 11, 123456, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("2026-11-23T18:08:11Z") == datetime(2026, 11, 23, 18, 8, 11, tzinfo=UTC)
    assert parse_time("2026-11-23T18:08:11.5+01:00") == datetime(2026, 11, 23, 17, 8, 11, 500000, tzinfo=UTC)
    assert iso(parse_time("2026-11-23T18:08:11.123456789Z")) == "2026-11-23T18:08:11.123Z"


def test_a_container_stopped_before_this_boot_is_waiting_not_failed() -> None:
    """`up` on a stack whose model was stopped by hand: Compose will start it
    again; its old exit is not this boot's failure."""
    watch = BootWatch(CHAIN[:1], since=at(100))
    stopped = replace(state("a", status="exited", health="unhealthy", exit_code=0), finished_at=at(50))
    watch.observe({"a": stopped}, at(101))
    assert phase(watch, "a") == Phase.WAITING and watch.tracks["a"].started_at is None
    watch.observe({"a": state("a", started=102)}, at(103))
    assert phase(watch, "a") == Phase.STARTING and watch.tracks["a"].started_at == at(102)
    # an exit during this boot is a failure
    crashed = replace(state("a", status="exited", exit_code=1, started=102), finished_at=at(104))
    watch.observe({"a": crashed}, at(105))
    assert phase(watch, "a") == Phase.FAILED
