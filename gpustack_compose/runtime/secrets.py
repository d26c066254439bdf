"""Where the stack's secrets come from: the environment, else the ``.env``
next to the rendered docker-compose.yml (where Compose itself reads it)."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

MASTER_KEY = "LITELLM_MASTER_KEY"


def master_key(out_dir: Path) -> str | None:
    value = os.environ.get(MASTER_KEY)
    if value:
        return value
    env_file = out_dir / ".env"
    if env_file.is_file():
        found = dotenv_values(env_file).get(MASTER_KEY)
        return found or None
    return None
