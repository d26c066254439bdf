"""The wheel, built the way `make dist` builds it, installed into a fresh venv:
the console script works outside the source tree, with its templates."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from tests.conftest import write

REPO = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def test_wheel_installs_and_renders_the_example_outside_the_source_tree(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], REPO)
    (wheel,) = dist.glob("gpustack_compose-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for packaged in (
        "gpustack_compose/templates/docker-compose.yml.j2",
        "gpustack_compose/templates/vram.svg.j2",
        "gpustack_compose/templates/PLAN.md.j2",
        "gpustack_compose/images/vllm-sim/Dockerfile",
        "gpustack_compose/images/litellm/Dockerfile",
        "gpustack_compose/simulator/vllm_flags.json",
    ):
        assert packaged in names, packaged
    assert not any(n.startswith(("tests/", "stacks/")) for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([str(env_dir / "bin" / "pip"), "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)], tmp_path,
        pip_env)  # fmt: skip

    work = tmp_path / "work"
    write(work / "stacks" / "h100-idp.yaml", (REPO / "stacks" / "h100-idp.yaml").read_text())
    script = env_dir / "bin" / "gpustack-compose"
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    version = run([str(script), "--version"], work, clean_env)
    assert version.stdout.startswith("gpustack-compose, version ")
    run([str(script), "render", "stacks/h100-idp.yaml"], work, clean_env)
    for rendered in (work / "compose" / "idp").rglob("*"):
        if rendered.is_file():
            relative = rendered.relative_to(work)
            assert rendered.read_bytes() == (REPO / relative).read_bytes(), relative
    # the installed package reads its own templates, not this checkout's
    where = run([str(env_dir / "bin" / "python"), "-c",
                 "import gpustack_compose.render as r; print(r.templates_dir())"], work, clean_env)  # fmt: skip
    assert str(env_dir) in where.stdout
