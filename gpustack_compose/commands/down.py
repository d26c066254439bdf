"""``down``: stop and remove the stack's containers (and, asked, its volumes)."""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import output_dir
from gpustack_compose.console import Output
from gpustack_compose.contract import MASTER_KEY_ENV
from gpustack_compose.errors import EngineError
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.runtime import compose, engine
from gpustack_compose.runtime.target import existing_rehearsal, forget_rehearsal, production


def run(*, stack_path: Path, out: Path | None, volumes: bool, rehearsal: bool, output: Output) -> int:
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    engine.connect()
    target = existing_rehearsal(loaded.stack, out_dir) if rehearsal else production(loaded.stack, out_dir)
    # Compose finds a project's containers by its label, so `down` works even
    # when the rendered files are gone.
    files = [f for f in target.files if f.exists()] if all(f.exists() for f in target.files) else []
    # A rehearsal's volumes (simulated GPU ledger, empty HF cache) always go.
    remove_volumes = volumes or rehearsal
    args = ["down", "--remove-orphans", "--timeout", "30"] + (["-v"] if remove_volumes else [])
    if files:
        args = ["--project-directory", str(out_dir), *args]
    # Interpolation needs a key value; `down` never starts anything with it.
    env = {**target.env, MASTER_KEY_ENV: target.master_key or "unused-by-down"}
    result = compose.run(args, project=target.project, files=files, env=env, timeout=600)
    if result.code != 0:
        last = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise EngineError(f"docker compose down failed: {last[0]}")
    if rehearsal:
        forget_rehearsal(loaded.stack)
    output.info(f"{target.project}: down" + (" (volumes removed)" if remove_volumes else ""))
    return 0
