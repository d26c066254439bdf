"""The command line: thin click wiring around ``commands``.

Every command returns an exit code; ``GscError`` becomes one ``error:`` line on
stderr and its exit code (1 invalid / does not fit, 3 drift, 4 unhealthy);
click's own usage errors exit 2.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from gpustack_compose import __version__
from gpustack_compose.commands import check as check_cmd
from gpustack_compose.commands import plan as plan_cmd
from gpustack_compose.commands import render as render_cmd
from gpustack_compose.console import Output
from gpustack_compose.errors import EXIT_INVALID, GscError

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


def _guard(action: Callable[[Output], int]) -> None:
    output = Output()
    try:
        code = action(output)
    except GscError as exc:
        output.error(exc.message)
        code = exc.exit_code
    except KeyboardInterrupt:
        output.error("interrupted")
        code = 130
    except Exception as exc:  # a bug: one line, traceback on request
        if os.environ.get("GSC_DEBUG"):
            traceback.print_exc()
        output.error(f"internal error: {type(exc).__name__}: {exc} (set GSC_DEBUG=1 for the traceback)")
        code = EXIT_INVALID
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
def render(stack: Path, out: Path | None) -> None:
    """Write docker-compose.yml, litellm/config.yaml, .env.example and PLAN.md.

    \b
    Example:
      gpustack-compose render stacks/h100-idp.yaml   # -> compose/idp/
    """
    _guard(lambda output: render_cmd.run(stack, out, output))


@main.command()
@STACK
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(stack: Path, as_json: bool) -> None:
    """Print the VRAM plan; exit 1 if the stack does not fit.

    \b
    Example:
      gpustack-compose plan stacks/h100-idp.yaml --json
    """
    _guard(lambda output: plan_cmd.run(stack, as_json, output))


@main.command()
@STACK
@OUT
def check(stack: Path, out: Path | None) -> None:
    """Exit 3 with a diff if the rendered files are stale.

    \b
    Example:
      gpustack-compose check stacks/h100-idp.yaml
    """
    _guard(lambda output: check_cmd.run(stack, out, output))
