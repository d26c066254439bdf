"""What the engine says about a stack's containers, as plain data.

``DockerView`` reads it through the docker SDK; tests build ``ServiceState``
by hand. Times are the engine's own (container State and healthcheck log), in
UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from docker.errors import DockerException, NotFound

from gpustack_compose.contract import COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL
from gpustack_compose.errors import EngineError

ZERO_TIME = "0001-01-01T00:00:00Z"
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$")


def parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 with nanoseconds -> an aware UTC datetime (us precision)."""
    if not text or text.startswith("0001-01-01"):
        return None
    match = _RFC3339.match(text.strip())
    if match is None:
        return None
    main, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    micro = f".{(fraction or '')[:6].ljust(6, '0')}"
    return datetime.fromisoformat(f"{main}{micro}{zone}").astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds, ``2026-11-23T18:08:11.123Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Probe:
    start: datetime | None
    end: datetime | None
    exit_code: int


@dataclass(frozen=True)
class ServiceState:
    service: str
    container_id: str
    status: str  # created | running | restarting | paused | exited | dead
    health: str | None  # starting | healthy | unhealthy | None (no healthcheck)
    exit_code: int
    started_at: datetime | None
    finished_at: datetime | None
    restart_count: int
    probes: tuple[Probe, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def first_healthy_probe(self) -> datetime | None:
        """End of the first successful probe since this start, when the engine
        turned the container healthy."""
        for probe in self.probes:
            since_start = self.started_at is None or (probe.end is not None and probe.end >= self.started_at)
            if probe.exit_code == 0 and probe.end is not None and since_start:
                return probe.end
        return None


class EngineView(Protocol):
    def services(self, project: str) -> dict[str, ServiceState]: ...

    def logs(self, container_id: str, tail: int) -> str: ...

    def published_port(self, project: str, service: str, port: int) -> tuple[str, int] | None: ...


class DockerView:
    """EngineView over the docker SDK."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def _summaries(self, labels: list[str], all_states: bool = True) -> list[dict[str, Any]]:
        # The low-level list returns summaries without inspecting each
        # container (the high-level one does, and raises NotFound when Compose
        # removes a container between the two calls).
        try:
            found: list[dict[str, Any]] = self.client.api.containers(all=all_states, filters={"label": labels})
        except DockerException as exc:
            raise EngineError(f"cannot list containers ({', '.join(labels)}): {exc}") from None
        return found

    def services(self, project: str) -> dict[str, ServiceState]:
        states: dict[str, ServiceState] = {}
        for summary in self._summaries([f"{COMPOSE_PROJECT_LABEL}={project}"]):
            try:
                attrs = self.client.api.inspect_container(summary["Id"])
            except NotFound:
                continue  # removed between list and inspect
            except DockerException as exc:
                raise EngineError(f"cannot inspect {summary['Id'][:12]}: {exc}") from None
            state = _from_inspect(attrs)
            states[state.service] = state
        return states

    def logs(self, container_id: str, tail: int) -> str:
        try:
            raw = self.client.api.logs(container_id, stdout=True, stderr=True, tail=tail)
        except DockerException as exc:
            return f"(logs unavailable: {exc})"
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)

    def published_port(self, project: str, service: str, port: int) -> tuple[str, int] | None:
        labels = [f"{COMPOSE_PROJECT_LABEL}={project}", f"{COMPOSE_SERVICE_LABEL}={service}"]
        for summary in self._summaries(labels, all_states=False):
            for binding in summary.get("Ports") or []:
                if binding.get("PrivatePort") == port and binding.get("PublicPort"):
                    host = binding.get("IP") or "127.0.0.1"
                    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
                    return host, int(binding["PublicPort"])
        return None


def _from_inspect(attrs: dict[str, Any]) -> ServiceState:
    state = attrs.get("State", {})
    labels = attrs.get("Config", {}).get("Labels") or {}
    health = state.get("Health") or {}
    probes = tuple(
        Probe(parse_time(p.get("Start")), parse_time(p.get("End")), int(p.get("ExitCode", -1)))
        for p in health.get("Log") or []
    )
    return ServiceState(
        service=labels.get(COMPOSE_SERVICE_LABEL, attrs.get("Name", "").lstrip("/")),
        container_id=attrs.get("Id", ""),
        status=state.get("Status", "unknown"),
        health=health.get("Status") if health else None,
        exit_code=int(state.get("ExitCode", 0)),
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")),
        restart_count=int(attrs.get("RestartCount", 0)),
        probes=probes,
        labels=dict(labels),
    )
