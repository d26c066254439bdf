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
