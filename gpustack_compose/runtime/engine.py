"""The Docker engine, through the docker SDK: connect, check its version.

The only module that creates a docker client; everything else receives one, so
unit tests can hand in a fake.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import docker
from docker.errors import DockerException

from gpustack_compose.errors import EngineError
from gpustack_compose.healthcheck import parse_engine_version

# What the docker SDK connects to when DOCKER_HOST is unset.
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def _no_engine(reason: str) -> EngineError:
    return EngineError(f"no Docker engine answers ({reason}); start dockerd or set DOCKER_HOST")


def _probe_unix_socket(path: str) -> None:
    """Connect to the engine's socket once and close it. The docker SDK's own
    unix connection (docker/transport/unixconn.py) leaves its socket open
    when ``connect`` fails, which Python reports as a ResourceWarning at
    garbage collection -- into the user's stderr, or as a test failure."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(path)
        except OSError as exc:
            raise _no_engine(f"{path}: {exc.strerror or type(exc).__name__}") from None


def connect(timeout: int = 120) -> Any:
    """A docker SDK client for the engine DOCKER_HOST (or the default socket) names."""
    host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if host.startswith("unix://"):
        _probe_unix_socket(host.removeprefix("unix://"))
    try:
        client = docker.from_env(timeout=timeout)
    except DockerException as exc:
        raise _no_engine(_first_line(exc)) from None
    try:
        client.ping()
    except DockerException as exc:
        client.close()
        raise _no_engine(_first_line(exc)) from None
    return client


def server_version(client: Any) -> str:
    try:
        version = client.version()
    except DockerException as exc:
        raise EngineError(f"the Docker engine did not report its version: {_first_line(exc)}") from None
    return str(version.get("Version", "0.0"))


def require_engine(client: Any, min_engine: str) -> str:
    """The engine's version, or EngineError when it is older than the stack's
    ``docker.min_engine`` -- checked before anything is started."""
    version = server_version(client)
    if parse_engine_version(version) < parse_engine_version(min_engine):
        raise EngineError(
            f"Docker Engine {version} is older than {min_engine}, the minimum this stack is rendered for "
            f"(docker.min_engine); Engine 25.0+ is needed for healthcheck.start_interval. Set docker.min_engine "
            f'to "{".".join(str(p) for p in parse_engine_version(version))}" and re-render, or upgrade the engine'
        )
    return version


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def cpu_flags(client: Any, image: str) -> frozenset[str]:
    """The engine host's CPU flags (/proc/cpuinfo), read from inside a
    container so that a remote engine (DOCKER_HOST) reports its own CPU."""
    try:
        raw = client.containers.run(image, ["grep", "-m1", "^flags", "/proc/cpuinfo"], remove=True)
    except DockerException as exc:
        raise EngineError(f"cannot read the engine host's CPU flags: {_first_line(exc)}") from None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return frozenset(text.split(":", 1)[-1].split())
