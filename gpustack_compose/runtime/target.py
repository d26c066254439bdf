"""Which Compose project a runtime command acts on: production, or its rehearsal.

The production project is the stack's name and its rendered files. A rehearsal
is ``<name>-rehearsal``: the same rendered files plus the override from
``rehearsal.py``. Its override and its generated master key live in the cache
folder (``$GSC_CACHE_DIR/rehearsals/<project>/``), never next to the committed
output, so ``up --rehearsal`` / ``status --rehearsal`` / ``down --rehearsal``
can follow one rehearsal across commands.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from gpustack_compose.contract import (
    COMPOSE_FILE,
    GRAFANA_PASSWORD_ENV,
    HF_TOKEN_ENV,
    MASTER_KEY_ENV,
    REHEARSAL_OVERRIDE_FILE,
    rehearsal_project,
)
from gpustack_compose.runtime.images import cache_dir
from gpustack_compose.runtime.secrets import master_key
from gpustack_compose.spec import StackSpec

KEY_FILE = "master-key"


@dataclass(frozen=True)
class ComposeProject:
    project: str
    files: tuple[Path, ...]
    project_dir: Path
    env: dict[str, str]  # extra environment for docker compose
    master_key: str | None
    rehearsal: bool


def production(stack: StackSpec, out_dir: Path) -> ComposeProject:
    return ComposeProject(stack.name, (out_dir / COMPOSE_FILE,), out_dir, {}, master_key(out_dir), False)


def rehearsal_dir(stack: StackSpec) -> Path:
    return cache_dir() / "rehearsals" / rehearsal_project(stack.name)


def _rehearsal_env(key: str) -> dict[str, str]:
    # The rehearsal's own key; no host secret (HF token) reaches its containers.
    # Grafana does not run in a rehearsal (no image here), but Compose
    # interpolates its required password all the same.
    return {MASTER_KEY_ENV: key, HF_TOKEN_ENV: "", GRAFANA_PASSWORD_ENV: "unused-in-a-rehearsal"}


def prepare_rehearsal(stack: StackSpec, out_dir: Path, override_text: str) -> ComposeProject:
    """Write the override (rendered by ``rehearsal.override``) and, once, the
    key of a rehearsal; its target."""
    state = rehearsal_dir(stack)
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    (state / REHEARSAL_OVERRIDE_FILE).write_text(override_text)
    key_file = state / KEY_FILE
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"sk-rehearsal-{secrets.token_hex(16)}")
    key = key_file.read_text().strip()
    return ComposeProject(
        rehearsal_project(stack.name),
        (out_dir / COMPOSE_FILE, state / REHEARSAL_OVERRIDE_FILE),
        out_dir,
        _rehearsal_env(key),
        key,
        True,
    )


def existing_rehearsal(stack: StackSpec, out_dir: Path) -> ComposeProject:
    """The rehearsal a previous ``up --rehearsal`` / ``rehearse --keep`` left."""
    state = rehearsal_dir(stack)
    key_file = state / KEY_FILE
    key = key_file.read_text().strip() if key_file.exists() else None
    files = (out_dir / COMPOSE_FILE, state / REHEARSAL_OVERRIDE_FILE)
    present = tuple(f for f in files if f.exists()) if all(f.exists() for f in files) else ()
    return ComposeProject(rehearsal_project(stack.name), present, out_dir, _rehearsal_env(key or "unset"), key, True)


def forget_rehearsal(stack: StackSpec) -> None:
    shutil.rmtree(rehearsal_dir(stack), ignore_errors=True)
