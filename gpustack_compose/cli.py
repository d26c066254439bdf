"""The command line: thin click wiring around ``commands``.

Each command imports its module when it runs: ``render`` and ``check`` never
load the Docker SDK or httpx, which keeps a pre-commit hook's process short.

Every command returns an exit code; ``GscError`` becomes one ``error:`` line on
stderr and its exit code (1 invalid / does not fit, 3 drift, 4 unhealthy);
click's own usage errors exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from gpustack_compose import __version__
from gpustack_compose.console import Output
from gpustack_compose.errors import EXIT_INVALID, GscError, is_missing_dependency, missing_module_message
from gpustack_compose.stand_in import DEFAULT_TIME_SCALE, STAND_INS, Rehearsal, StandIn

if TYPE_CHECKING:
    from gpustack_compose.commands.common import RenderTarget

T = TypeVar("T")

STACK = click.argument("stack", type=click.Path(path_type=Path, dir_okay=True, exists=False))
OUT = click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Output folder (default: compose/<stack name>/).",
)


TARGET = click.option(
    "--target",
    type=click.Choice(["auto", "compose", "kubernetes", "all"]),
    default="auto",
    show_default=True,
    help="What to render: docker-compose files, the Kubernetes kustomize base in k8s/, or both. "
    "auto: compose, plus k8s/ when it was rendered before.",
)


REHEARSAL = click.option(
    "--rehearsal", is_flag=True, help="Act on the simulated rehearsal of the stack (no GPU needed)."
)
TIME_SCALE = click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIME_SCALE,
    show_default=True,
    help="Rehearsals: simulated load time = the H100 cold-boot estimate of each model x this.",
)
LOAD_S = click.option(
    "--load-s", type=click.FloatRange(min=0), default=None, help="Rehearsals: a fixed simulated load time per model."
)
STAND_IN = click.option(
    "--stand-in",
    "--engine",  # its first name; "engine" is the Docker Engine everywhere else
    "stand_in",
    type=click.Choice(STAND_INS),
    default="simulator",
    show_default=True,
    help="What stands in for vLLM: the simulator, or real vLLM's CPU build with tiny stand-in models.",
)


def _guard(action: Callable[[Output], int]) -> None:
    from gpustack_compose.loaded import forget_locations, located

    output = Output()
    forget_locations()
    try:
        code = action(output)
    except GscError as exc:
        output.error(located(exc).message)
        code = exc.exit_code
    except KeyboardInterrupt:
        output.error("interrupted")
        code = 130
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and is_missing_dependency(exc):
            code = _missing_dependency(exc)  # a dependency imported lazily (rich, docker, httpx)
        else:  # a bug: one line, traceback on request
            if os.environ.get("GSC_DEBUG"):
                import traceback

                traceback.print_exc()
            output.error(f"internal error: {type(exc).__name__}: {exc} (set GSC_DEBUG=1 for the traceback)")
            code = EXIT_INVALID
    sys.exit(code)


def _missing_dependency(exc: ModuleNotFoundError) -> int:
    """Plain text: rich may be the module that is missing."""
    sys.stderr.write(f"error: {missing_module_message(exc.name)}\n")
    return EXIT_INVALID


class _Main(click.Group):
    """The command group; a command module that cannot import its
    dependencies (imported when the command runs) ends in one line."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            if not is_missing_dependency(exc):
                raise
            sys.exit(_missing_dependency(exc))


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpustack-compose")
def main() -> None:
    """Turn a stack file -- "these LLMs share this GPU host" -- into a checked
    VRAM plan and a docker-compose stack: vLLM servers booted one after another
    per GPU, behind one LiteLLM proxy.

    \b
    Example:
      gpustack-compose plan stacks/h100-idp.yaml
      gpustack-compose render stacks/h100-idp.yaml
    """


@main.command()
@STACK
@OUT
@TARGET
def render(stack: Path, out: Path | None, target: RenderTarget) -> None:
    """Write docker-compose.yml, litellm/config.yaml, .env.example, PLAN.md and vram.svg;
    with --target kubernetes, a kustomize base in k8s/ (apply with kubectl apply -k).

    \b
    Example:
      gpustack-compose render stacks/h100-idp.yaml   # -> compose/idp/
      gpustack-compose render stacks/h100-idp.yaml --target kubernetes   # -> compose/idp/k8s/
    """
    from gpustack_compose.commands import render as render_cmd

    _guard(lambda output: render_cmd.run(stack_path=stack, out=out, output=output, target=target))


@main.command()
@STACK
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--svg",
    "svg",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the plan as an SVG picture into this file ('-' for stdout).",
)
def plan(stack: Path, as_json: bool, svg: Path | None) -> None:
    """Print the VRAM plan and each GPU's boot chain; exit 1 if the stack does not fit.

    \b
    Example:
      gpustack-compose plan stacks/h100-idp.yaml --json
      gpustack-compose plan stacks/h100-idp.yaml --svg vram.svg
    """
    from gpustack_compose.commands import plan as plan_cmd

    _guard(lambda output: plan_cmd.run(stack_path=stack, as_json=as_json, output=output, svg=svg))


@main.command()
@STACK
@click.option(
    "--offline",
    is_flag=True,
    help="Do not ask the Hub: directories, the Hugging Face cache, then the catalog (also HF_HUB_OFFLINE=1).",
)
def lock(stack: Path, offline: bool) -> None:
    """Resolve every model once and write STACK's lock file (stacks/x.yaml -> stacks/x.lock).

    Reads each model's config.json and safetensors headers -- never the weights -- from its
    directory, the Hugging Face cache, or the Hub (HF_TOKEN for gated repos). render, plan and
    check then read the stack and its lock only; commit both.

    \b
    Example:
      gpustack-compose lock stacks/h100-idp.yaml
      HF_HUB_OFFLINE=1 gpustack-compose lock stacks/local.yaml
    """
    from gpustack_compose.commands import lock as lock_cmd

    _guard(lambda output: lock_cmd.run(stack_path=stack, offline=offline, output=output))


@main.command()
@click.argument("stacks", nargs=-1, type=click.Path(path_type=Path, dir_okay=True, exists=False))
@OUT
@TARGET
def check(stacks: tuple[Path, ...], out: Path | None, target: RenderTarget) -> None:
    """Exit 3 with a diff if the rendered files of STACKS are stale.

    With no STACKS, every stack file in stacks/ is checked (the pre-commit
    hook passes the changed ones).

    \b
    Example:
      gpustack-compose check stacks/h100-idp.yaml
      gpustack-compose check
    """
    from gpustack_compose.commands import check as check_cmd

    _guard(lambda output: check_cmd.run(stack_paths=stacks, out=out, output=output, target=target))


@main.command()
@STACK
@OUT
@TARGET
def diff(stack: Path, out: Path | None, target: RenderTarget) -> None:
    """Show what a render would change: a per-service summary, then the diff.

    Writes nothing and exits 0 (use check to fail on drift); the text is what
    a reviewer wants in a pull-request comment.

    \b
    Example:
      gpustack-compose diff stacks/h100-idp.yaml > pr-comment.md
    """
    from gpustack_compose.commands import diff as diff_cmd

    _guard(lambda output: diff_cmd.run(stack_path=stack, out=out, output=output, target=target))


@main.command()
@click.option(
    "-o", "--output", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="Write the schema to this file instead of stdout.",
)  # fmt: skip
def schema(out: Path | None) -> None:
    """Print the JSON Schema of the stack file (for editors and CI).

    \b
    Example:
      gpustack-compose schema -o schema/stack.schema.json
    Then start a stack file with:
      # yaml-language-server: $schema=../schema/stack.schema.json
    """
    from gpustack_compose.commands import schema as schema_cmd

    _guard(lambda output: schema_cmd.run(out=out, output=output))


@main.command()
@click.option("--name", default="stack", show_default=True, help="Stack (compose project) name.")
@click.option("--gpu", "gpus", multiple=True, help="A GPU type, or NxTYPE (repeatable); default: ask nvidia-smi.")
@click.option("--model", "models", multiple=True, help="Hugging Face repo id from the catalog (repeatable).")
@click.option("--max-model-len", type=click.IntRange(min=16), default=8192, show_default=True,
              help="Longest sequence per model (capped at each model's context).")  # fmt: skip
@click.option(
    "-o", "--output", "out", type=click.Path(path_type=Path, dir_okay=False), default=None,
    help="Stack file to write (default: stacks/<name>.yaml).",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing file.")
def init(
    name: str, gpus: tuple[str, ...], models: tuple[str, ...], max_model_len: int, out: Path | None, force: bool
) -> None:
    """Start a stack file: the planner proposes the split, written with comments.

    \b
    Example:
      gpustack-compose init --name idp --gpu H100-80GB \\
        --model Qwen/Qwen2.5-14B-Instruct --model PaddlePaddle/PaddleOCR-VL
      gpustack-compose init --name fleet --model meta-llama/Llama-3.1-8B-Instruct   # GPUs from nvidia-smi
    """
    from gpustack_compose.commands import init as init_cmd

    _guard(
        lambda output: init_cmd.run(
            name=name, gpu_flags=gpus, repos=models, out=out, max_model_len=max_model_len, force=force, output=output
        )
    )


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (click's own).

    \b
    Example:
      eval "$(gpustack-compose completion bash)"        # in ~/.bashrc
      gpustack-compose completion fish > ~/.config/fish/completions/gpustack-compose.fish
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the three choices are click's built-ins
    click.echo(completer(main, {}, "gpustack-compose", "_GPUSTACK_COMPOSE_COMPLETE").source(), nl=False)


@main.command()
@STACK
@OUT
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="Write the JSON report here.")
@TIME_SCALE
@LOAD_S
@click.option("--port", "proxy_port", type=click.IntRange(0, 65535), default=0, help="Proxy port (default: ephemeral).")
@click.option("--keep", is_flag=True, help="Leave the rehearsal running.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=None, help="Give up after this many s.")
@click.option("--unsafe-skip-fit-check", is_flag=True, hidden=True, help="Rehearse a split the planner refuses.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@STAND_IN
def rehearse(
    stack: Path,
    out: Path | None,
    report: Path | None,
    time_scale: float,
    load_s: float | None,
    proxy_port: int,
    keep: bool,
    timeout_s: float | None,
    unsafe_skip_fit_check: bool,
    as_json: bool,
    stand_in: StandIn,
) -> None:
    """Boot the stack on Docker without a GPU and check it.

    vLLM is replaced by a simulator that takes the same command line and plays
    the planned GPU; the real LiteLLM proxy runs in front. Checks the boot
    order from the engine's timestamps, smoke-tests every model and adapter
    through the proxy, then tears everything down. Exit 4 if a service fails
    to become healthy.

    \b
    Example:
      gpustack-compose rehearse stacks/h100-idp.yaml --report rehearsal.json
    """
    from gpustack_compose.commands import rehearse as rehearse_cmd

    asked = Rehearsal(stand_in=stand_in, time_scale=time_scale, load_s=load_s, proxy_port=proxy_port)
    _guard(
        lambda output: rehearse_cmd.run(
            stack_path=stack,
            out=out,
            rehearsal=asked,
            report=report,
            keep=keep,
            timeout_s=timeout_s,
            skip_fit_check=unsafe_skip_fit_check,
            as_json=as_json,
            output=output,
        )
    )


@main.command()
@STACK
@OUT
@click.option("--json", "as_json", is_flag=True, help="Print the boot report as JSON on stdout.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=None, help="Give up after this many s.")
@REHEARSAL
@TIME_SCALE
@LOAD_S
@STAND_IN
def up(
    stack: Path,
    out: Path | None,
    as_json: bool,
    timeout_s: float | None,
    rehearsal: bool,
    time_scale: float,
    load_s: float | None,
    stand_in: StandIn,
) -> None:
    """Render if needed, start the stack and follow its boot.

    Shows each model waiting / starting / loading / healthy / failed, waits
    until the proxy routes every model, then prints the boot timeline. Exit 4
    with the failing service's log if one does not become healthy.

    \b
    Example:
      gpustack-compose up stacks/h100-idp.yaml
    """
    from gpustack_compose.commands import up as up_cmd

    asked = Rehearsal(stand_in=stand_in, time_scale=time_scale, load_s=load_s) if rehearsal else None
    _guard(
        lambda output: up_cmd.run(
            stack_path=stack, out=out, as_json=as_json, timeout_s=timeout_s, rehearsal=asked, output=output
        )
    )


@main.command()
@STACK
@click.option("--json", "as_json", is_flag=True, help="Print the tables as JSON (one document per refresh).")
@click.option(
    "--watch",
    "watch_s",
    type=click.FloatRange(min=0.5),
    default=None,
    metavar="SECONDS",
    help="Refresh every SECONDS until Ctrl-C.",
)
@REHEARSAL
def status(stack: Path, as_json: bool, watch_s: float | None, rehearsal: bool) -> None:
    """The stack's services (health, uptime, restarts, GPU, fraction), and the
    plan against reality: per model, the planned KV tokens against what the
    server reports, its KV usage and queue, its container's GPU memory against
    the planned resident and peak (flagged when over).

    \b
    Examples:
      gpustack-compose status stacks/h100-idp.yaml
      gpustack-compose status --watch 2 stacks/h100-idp.yaml
    """
    from gpustack_compose.commands import status as status_cmd

    _guard(
        lambda output: status_cmd.run(
            stack_path=stack, as_json=as_json, rehearsal=rehearsal, output=output, watch_s=watch_s
        )
    )


@main.command()
@STACK
@OUT
@click.option("-v", "--volumes", is_flag=True, help="Also remove the stack's volumes (the HF cache).")
@REHEARSAL
def down(stack: Path, out: Path | None, volumes: bool, rehearsal: bool) -> None:
    """Stop and remove the stack's containers.

    \b
    Example:
      gpustack-compose down stacks/h100-idp.yaml
    """
    from gpustack_compose.commands import down as down_cmd

    _guard(lambda output: down_cmd.run(stack_path=stack, out=out, volumes=volumes, rehearsal=rehearsal, output=output))


@main.command()
@STACK
@click.argument("model", required=False)
@OUT
@click.option("-f", "--follow", is_flag=True, help="Keep following.")
@click.option("--tail", type=click.IntRange(min=1), default=None, help="Only the last N lines.")
@REHEARSAL
def logs(stack: Path, model: str | None, out: Path | None, follow: bool, tail: int | None, rehearsal: bool) -> None:
    """Logs of the stack, or of one MODEL (its name or service name).

    \b
    Example:
      gpustack-compose logs stacks/h100-idp.yaml qwen2.5-14b --tail 50
    """
    from gpustack_compose.commands import logs as logs_cmd

    _guard(
        lambda output: logs_cmd.run(
            stack_path=stack, out=out, model=model, follow=follow, tail=tail, rehearsal=rehearsal, _output=output
        )
    )


@main.command()
@STACK
@OUT
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@REHEARSAL
def smoke(stack: Path, out: Path | None, as_json: bool, rehearsal: bool) -> None:
    """One short chat completion per model and adapter through the proxy.

    Uses LITELLM_MASTER_KEY (environment or the rendered folder's .env); also
    checks that a request without the key is refused.

    \b
    Example:
      gpustack-compose smoke stacks/h100-idp.yaml
    """
    from gpustack_compose.commands import smoke as smoke_cmd

    _guard(lambda output: smoke_cmd.run(stack_path=stack, out=out, as_json=as_json, rehearsal=rehearsal, output=output))


@main.command()
@click.option("--force", is_flag=True, help="Rebuild even when the tags exist.")
@click.option("--vllm-cpu", is_flag=True, help="Also build the real vLLM CPU image (3.75 GB).")
@click.option(
    "--kvcached",
    is_flag=True,
    help="Also build vLLM + kvcached for elastic GPUs, FROM the official vLLM image (a GPU host that can pull it).",
)
def images(force: bool, vllm_cpu: bool, kvcached: bool) -> None:
    """Build the local images: the simulator, LiteLLM, the swap coordinator,
    Prometheus (cached by content hash).

    \b
    Examples:
      gpustack-compose images
      gpustack-compose images --kvcached     # on the GPU host, for elastic GPUs
    """
    from gpustack_compose.commands import images as images_cmd

    _guard(lambda output: images_cmd.run(force=force, vllm_cpu=vllm_cpu, kvcached=kvcached, output=output))


@main.group()
def lora() -> None:
    """Add or remove a model's LoRA adapters (stack file, render, running server).

    \b
    Example:
      gpustack-compose lora add stacks/idp.yaml qwen2.5-14b invoices adapters/runtime/invoices
    """


@lora.command("add")
@STACK
@click.argument("model")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False))
@OUT
@REHEARSAL
def lora_add(stack: Path, model: str, name: str, path: Path, out: Path | None, rehearsal: bool) -> None:
    """Serve the adapter at PATH as NAME from MODEL.

    Updates the stack file and the rendered files; if the stack is running and
    MODEL has runtime_loras with PATH inside its folder, loads the adapter into
    the running server and restarts only the proxy.

    \b
    Example:
      gpustack-compose lora add stacks/h100-idp.yaml qwen2.5-14b invoices adapters/invoices
    """
    from gpustack_compose.commands import lora as lora_cmd

    _guard(
        lambda output: lora_cmd.run_add(
            stack_file=stack, model=model, name=name, path=path, out=out, rehearsal=rehearsal, output=output
        )
    )


@lora.command("remove")
@STACK
@click.argument("model")
@click.argument("name")
@OUT
@REHEARSAL
def lora_remove(stack: Path, model: str, name: str, out: Path | None, rehearsal: bool) -> None:
    """Stop serving adapter NAME from MODEL (unloads it from a running server).

    \b
    Example:
      gpustack-compose lora remove stacks/h100-idp.yaml qwen2.5-14b invoices
    """
    from gpustack_compose.commands import lora as lora_cmd

    _guard(
        lambda output: lora_cmd.run_remove(
            stack_file=stack, model=model, name=name, out=out, rehearsal=rehearsal, output=output
        )
    )
