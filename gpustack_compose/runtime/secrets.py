"""Where the stack's secrets come from: the environment, else the ``.env``
next to the rendered docker-compose.yml (where Compose itself reads it)."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

from gpustack_compose.contract import ENV_FILE, MASTER_KEY_ENV


def master_key(out_dir: Path) -> str | None:
    return secret(out_dir, MASTER_KEY_ENV)


def secret(out_dir: Path, name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    env_file = out_dir / ENV_FILE
    if env_file.is_file():
        found = dotenv_values(env_file).get(name)
        return found or None
    return None
