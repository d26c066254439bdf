"""Every failure a user can cause, and the exit code it maps to.

The command line turns these into one line on stderr and an exit code; nothing
else in the package prints errors or calls ``sys.exit``.

    GscError                      base: message + exit code
     +-- SpecError        (1)     the stack file is unreadable or invalid
     +-- PlanError        (1)     the stack is valid but does not fit its GPUs
     +-- DriftError       (3)     committed output differs from a fresh render
     +-- EngineError      (1)     Docker / Compose missing, too old, or refusing
     +-- BootError        (4)     a service failed to become healthy

Exit code 2 (command-line usage) comes from click itself.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
EXIT_UNHEALTHY = 4


class GscError(Exception):
    """A failure with a message meant for the user, and its exit code."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(GscError):
    """The stack file cannot be read, parsed or validated."""


class PlanError(GscError):
    """The stack is well-formed but its models do not fit their GPUs."""


class DriftError(GscError):
    """Committed rendered files differ from what the stack file renders to."""

    exit_code = EXIT_DRIFT


class EngineError(GscError):
    """The container engine is missing, too old, or refused an operation."""


class BootError(GscError):
    """A service of the stack exited or stayed unhealthy past its budget."""

    exit_code = EXIT_UNHEALTHY


def is_missing_dependency(exc: ModuleNotFoundError) -> bool:
    """A third-party module is missing (click, rich, docker...): not one of
    the package's own, which would be a broken install or a bug."""
    return exc.name is not None and exc.name.split(".")[0] != "gpustack_compose"


def missing_module_message(module: str | None) -> str:
    """One line for a Python that lacks the tool's dependencies (a system
    Python running ``python -m gpustack_compose`` from a checkout)."""
    import sys

    top = (module or "?").split(".")[0]
    return (
        f"this Python ({sys.executable}) lacks gpustack-compose's dependencies (no module {top!r}): "
        "run `make install`, then `. .venv/bin/activate` (or use the `make` targets), or `pip install .`"
    )
