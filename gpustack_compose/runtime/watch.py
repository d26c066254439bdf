"""Follow a health-gated boot from engine snapshots: who is waiting, starting,
loading, healthy or failed, and the timeline once it is over.

Pure logic: ``observe`` takes what the engine reported and the current time;
nothing here talks to Docker or sleeps.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from gpustack_compose.runtime.state import ServiceState, iso


class Phase(enum.Enum):
    WAITING = "waiting"  # created, held back by depends_on (or not created yet)
    STARTING = "starting"  # running, no healthcheck result yet
    LOADING = "loading"  # running, healthcheck not passing yet (port closed while vLLM loads)
    HEALTHY = "healthy"
    FAILED = "failed"


@dataclass(frozen=True)
class Link:
    """A service of the boot graph."""

    service: str
    model: str | None  # None for the proxy
    gpu: str | None
    after: tuple[str, ...]  # services it waits for (healthy)
    budget_s: float  # time to become healthy before it counts as failed
    # A step that runs once and exits (a swappable model's first sleep): done,
    # shown as healthy, when it exits 0.
    one_shot: bool = False


@dataclass
class Track:
    link: Link
    phase: Phase = Phase.WAITING
    started_at: datetime | None = None
    healthy_at: datetime | None = None
    failure: str | None = None
    container_id: str | None = None
    restarts_at_first_sight: int | None = None
    phase_since: datetime | None = None


@dataclass(frozen=True)
class TimelineEntry:
    service: str
    model: str | None
    gpu: str | None
    started_at: datetime | None
    healthy_at: datetime | None
    after: tuple[str, ...]
    gate_opened_at: datetime | None  # when the last service it waited for became healthy

    @property
    def load_s(self) -> float | None:
        if self.started_at is None or self.healthy_at is None:
            return None
        return (self.healthy_at - self.started_at).total_seconds()

    @property
    def gate_latency_s(self) -> float | None:
        if self.started_at is None or self.gate_opened_at is None:
            return None
        return (self.started_at - self.gate_opened_at).total_seconds()

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.service,
            "model": self.model,
            "gpu": self.gpu,
            "after": list(self.after),
            "started_at": iso(self.started_at),
            "healthy_at": iso(self.healthy_at),
            "load_s": _round(self.load_s),
            "gate_latency_s": _round(self.gate_latency_s),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class BootWatch:
    links: list[Link]
    # When this boot began: a container that exited before it (stopped by
    # hand, or from an earlier run) is about to be started by Compose, not failed.
    since: datetime | None = None
    tracks: dict[str, Track] = field(init=False)

    def __post_init__(self) -> None:
        self.tracks = {link.service: Track(link) for link in self.links}

    def observe(self, states: dict[str, ServiceState], now: datetime) -> list[str]:
        """Update from a snapshot; returns one line per phase change."""
        changes = []
        for service, track in self.tracks.items():
            if track.phase in (Phase.HEALTHY, Phase.FAILED):
                continue
            before = track.phase
            self._update(track, states.get(service), now)
            if track.phase != before:
                track.phase_since = now
                changes.append(self.describe(service, now))
        return changes

    def _update(self, track: Track, state: ServiceState | None, now: datetime) -> None:
        if state is None or state.status == "created" or self._exited_before_this_boot(state):
            track.phase = Phase.WAITING
            return
        if track.container_id != state.container_id:
            track.container_id = state.container_id
            track.restarts_at_first_sight = state.restart_count
        if track.started_at is None and state.started_at is not None:
            track.started_at = state.started_at
        if track.link.one_shot:
            self._update_one_shot(track, state, now)
            return
        if state.health == "healthy" or (state.health is None and state.status == "running"):
            track.phase = Phase.HEALTHY
            track.healthy_at = state.first_healthy_probe or now
            return
        baseline = track.restarts_at_first_sight or 0
        if state.status in ("exited", "dead"):
            track.phase, track.failure = Phase.FAILED, f"exited with code {state.exit_code}"
        elif state.status == "restarting" or state.restart_count > baseline:
            track.phase = Phase.FAILED
            track.failure = f"crashed and is being restarted (restart count {state.restart_count})"
        elif state.health == "unhealthy":
            track.phase = Phase.FAILED
            track.failure = "is unhealthy: its healthcheck kept failing after the start period"
        elif track.started_at is not None and (now - track.started_at).total_seconds() > track.link.budget_s:
            track.phase = Phase.FAILED
            track.failure = f"is not healthy {track.link.budget_s:.0f} s after it started (its boot budget)"
        elif any(p.exit_code != 0 for p in state.probes):
            track.phase = Phase.LOADING
        else:
            track.phase = Phase.STARTING

    @staticmethod
    def _update_one_shot(track: Track, state: ServiceState, now: datetime) -> None:
        """Done (shown healthy, at its exit) once it exits 0; running until then."""
        if state.status in ("exited", "dead"):
            if state.exit_code == 0:
                track.phase, track.healthy_at = Phase.HEALTHY, state.finished_at or now
            else:
                track.phase, track.failure = Phase.FAILED, f"exited with code {state.exit_code}"
        elif track.started_at is not None and (now - track.started_at).total_seconds() > track.link.budget_s:
            track.phase = Phase.FAILED
            track.failure = f"did not finish {track.link.budget_s:.0f} s after it started (its budget)"
        else:
            track.phase = Phase.STARTING

    def _exited_before_this_boot(self, state: ServiceState) -> bool:
        return (
            self.since is not None
            and state.status in ("exited", "dead")
            and state.finished_at is not None
            and state.finished_at < self.since
        )

    def describe(self, service: str, now: datetime) -> str:
        track = self.tracks[service]
        if track.phase == Phase.HEALTHY and track.started_at and track.healthy_at:
            seconds = (track.healthy_at - track.started_at).total_seconds()
            return f"{service}: healthy after {seconds:.1f} s"
        if track.phase == Phase.FAILED:
            return f"{service}: failed: {track.failure}"
        if track.started_at is not None:
            # Engine and host clocks may differ by a few ms: never print "-0.1 s".
            elapsed = max(0.0, (now - track.started_at).total_seconds())
            return f"{service}: {track.phase.value} ({elapsed:.1f} s)"
        return f"{service}: {track.phase.value}"

    @property
    def failed(self) -> list[Track]:
        return [t for t in self.tracks.values() if t.phase == Phase.FAILED]

    @property
    def all_healthy(self) -> bool:
        return all(t.phase == Phase.HEALTHY for t in self.tracks.values())

    def blocked_by(self, service: str) -> list[str]:
        """Services that never start because ``service`` failed (transitively)."""
        blocked: list[str] = []
        frontier = {service}
        changed = True
        while changed:
            changed = False
            for link in self.links:
                if link.service in blocked or link.service == service:
                    continue
                if frontier.intersection(link.after) and self.tracks[link.service].started_at is None:
                    blocked.append(link.service)
                    frontier.add(link.service)
                    changed = True
        return blocked

    def timeline(self) -> list[TimelineEntry]:
        entries = []
        for link in self.links:
            track = self.tracks[link.service]
            gates = [self.tracks[s].healthy_at for s in link.after if s in self.tracks]
            opened = max((g for g in gates if g is not None), default=None) if gates and all(gates) else None
            entries.append(
                TimelineEntry(
                    link.service, link.model, link.gpu, track.started_at, track.healthy_at, link.after, opened
                )
            )
        return entries


def order_violations(entries: Iterable[TimelineEntry]) -> list[str]:
    """Every service that started before what it waits for was healthy."""
    by_service = {e.service: e for e in entries}
    problems = []
    for entry in by_service.values():
        for before in entry.after:
            gate = by_service.get(before)
            if entry.started_at is None or gate is None:
                continue
            if gate.healthy_at is None or entry.started_at < gate.healthy_at:
                problems.append(
                    f"{entry.service} started at {iso(entry.started_at)}, before {before} was healthy "
                    f"({iso(gate.healthy_at) or 'never'})"
                )
    return problems
