"""``lora add|remove``: change a model's adapters without editing by hand.

Edits the stack file (validated in full before it is written), re-renders,
and when the stack is running and the model has runtime loading on, loads or
unloads the adapter in the running vLLM server (``/v1/load_lora_adapter``)
and reloads the proxy's routes in place (Gunicorn's SIGHUP: fresh workers read
the new config while the old ones finish): no model and no client request
waits for a proxy restart.

Why a reload and not the alternatives: LiteLLM's model management API
(``/model/new``) refuses to work without a database (``STORE_MODEL_IN_DB``,
litellm/proxy/management_endpoints/model_management_endpoints.py), and a
wildcard route to the base server would forward any name: ``/v1/models``
would no longer list the adapters, and a mistyped name would travel to the
model server instead of being refused at the door.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpustack_compose.commands.common import output_dir, write_rendered
from gpustack_compose.console import Output
from gpustack_compose.contract import PROXY_SERVICE, RUNTIME_ADAPTERS
from gpustack_compose.errors import CheckError, EngineError
from gpustack_compose.loaded import Loaded
from gpustack_compose.loader import parse_yaml, read_stack_text, validate_stack
from gpustack_compose.planner import plan_stack
from gpustack_compose.runtime import engine, model_server, session
from gpustack_compose.runtime.state import DockerView
from gpustack_compose.runtime.target import existing_rehearsal, production
from gpustack_compose.spec import ModelSpec, StackSpec
from gpustack_compose.stack_edit import add_lora, remove_lora
from gpustack_compose.vllm_args import adapter_location
from gpustack_compose.writer import write


def _relative_to_stack(stack_file: Path, path: Path) -> str:
    relative = Path(os.path.relpath(path.resolve(), stack_file.resolve().parent)).as_posix()
    return relative if relative.startswith("..") else f"./{relative}"


def _apply(stack_file: Path, new_text: str, change: str, out: Path | None, output: Output) -> Loaded:
    """Validate the edited stack as `render` would; only then write it and
    render. Errors name the edited version (their lines are in it)."""
    source = f"{stack_file} with {change}"
    stack = validate_stack(parse_yaml(new_text, source), source, stack_file=stack_file)
    loaded = Loaded(stack_file, stack, plan_stack(stack))
    write(stack_file.parent, {stack_file.name: new_text})
    output.file_status("update", stack_file.as_posix())
    out_dir = output_dir(loaded, out)
    for state in write_rendered(loaded, out_dir):
        if state.status != "identical":
            output.file_status(state.status, (out_dir / state.path).as_posix())
    return loaded


def _spec(stack: StackSpec, model: str) -> ModelSpec:
    return next(m for m in stack.models if m.name == model)


def run_add(
    *, stack_file: Path, model: str, name: str, path: Path, out: Path | None, rehearsal: bool, output: Output
) -> int:
    text = read_stack_text(stack_file)
    edited = add_lora(text, str(stack_file), model, name, _relative_to_stack(stack_file, path))
    loaded = _apply(stack_file, edited, f"adapter {name!r} added", out, output)
    spec = _spec(loaded.stack, model)
    lora = next(lora for lora in spec.loras if lora.name == name)
    body = {"lora_name": name, "lora_path": adapter_location(spec, lora)}
    _live(loaded, out, rehearsal, model, name, "/v1/load_lora_adapter", body, output, adding=True)
    return 0


def run_remove(*, stack_file: Path, model: str, name: str, out: Path | None, rehearsal: bool, output: Output) -> int:
    text = read_stack_text(stack_file)
    loaded = _apply(
        stack_file, remove_lora(text, str(stack_file), model, name), f"adapter {name!r} removed", out, output
    )
    _live(loaded, out, rehearsal, model, name, "/v1/unload_lora_adapter", {"lora_name": name}, output, adding=False)
    return 0


def _live(
    loaded: Loaded,
    out: Path | None,
    rehearsal: bool,
    model: str,
    name: str,
    endpoint: str,
    body: dict[str, str],
    output: Output,
    *,
    adding: bool,
) -> None:
    """Apply the change to the running stack, if it runs."""
    out_dir = output_dir(loaded, out)
    target = existing_rehearsal(loaded.stack, out_dir) if rehearsal else production(loaded.stack, out_dir)
    try:
        client = engine.connect()
    except EngineError as exc:
        output.info(f"{exc.message}: the change takes effect at the next `up`")
        return
    view = DockerView(client)
    states = view.services(target.project)
    service = loaded.plan.model(model).service
    state = states.get(service)
    if state is None or state.status != "running":
        output.info(f"{target.project} is not running: the change takes effect at its next `up`")
        return
    spec = _spec(loaded.stack, model)
    if spec.runtime_loras is None:
        output.info(
            f"{model} has no runtime loading (runtime_loras): `gpustack-compose up` restarts it with the change"
        )
        return
    if adding and not body["lora_path"].startswith(f"{RUNTIME_ADAPTERS}/"):
        output.info(
            f"{name} is not inside {spec.runtime_loras.dir}, the folder the running server can see: "
            f"`gpustack-compose up` restarts {model} with it"
        )
        return
    status, reply = model_server.post(client, state.container_id, endpoint, body)
    if status != 200:
        raise CheckError(f"{model} refused {endpoint} for {name} (HTTP {status}): {reply.strip()[:300]}")
    output.info(f"{model}: {reply.strip()}")
    proxy_state = states.get(PROXY_SERVICE)
    if proxy_state is None or proxy_state.status != "running":
        output.info(f"the proxy of {target.project} is not running: it routes {name} when it starts")
        return
    gone = [] if adding else [name]
    waited = model_server.reload_proxy(view, proxy_state.container_id, target, session.served_names(loaded.stack), gone)
    if waited is None:
        output.info("proxy reloading its routes (no master key here to check them)")
        return
    what = f"routes {name}" if adding else f"no longer routes {name}"
    output.info(f"proxy reloaded in place and {what} ({waited:.1f} s); every model kept serving")
