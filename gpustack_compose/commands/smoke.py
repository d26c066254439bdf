"""``smoke``: one short chat per model and adapter through the running proxy."""

from __future__ import annotations

import json
from pathlib import Path

from gpustack_compose.commands.common import output_dir
from gpustack_compose.console import Output
from gpustack_compose.contract import ENV_EXAMPLE, MASTER_KEY_ENV
from gpustack_compose.errors import ArgumentError, CheckError, SetupError
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.runtime import engine, session
from gpustack_compose.runtime.state import DockerView
from gpustack_compose.runtime.target import existing_rehearsal, production


def run(*, stack_path: Path, out: Path | None, as_json: bool, rehearsal: bool, output: Output) -> int:
    if as_json:
        output.json_mode()
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    target = existing_rehearsal(loaded.stack, out_dir) if rehearsal else production(loaded.stack, out_dir)
    if target.master_key is None:
        if rehearsal:
            raise ArgumentError(f"no rehearsal of {loaded.stack.name} is up (start one: up --rehearsal)")
        raise SetupError(f"{MASTER_KEY_ENV} is not set (export it, or set it in {out_dir / '.env'}; see {ENV_EXAMPLE})")
    view = DockerView(engine.connect())
    names = session.served_names(loaded.stack)
    client = session.proxy_client(view, target.project, target.master_key)
    try:
        results = session.smoke(client, names, output)
    finally:
        client.close()
    if as_json:
        output.raw(json.dumps({"stack": loaded.stack.name, "smoke": [r.as_dict() for r in results]}, indent=2) + "\n")
    failed = [r for r in results if not r.ok]
    if failed:
        raise CheckError("smoke test failed for " + ", ".join(f"{r.model} ({r.status}: {r.detail})" for r in failed))
    return 0
