"""Every failure a user can cause, and the exit code it maps to.

The command line turns these into one line on stderr and an exit code; nothing
else in the package prints errors or calls ``sys.exit``.

    GscError                      base: detail, path, hint, where; exit code
     +-- SpecError        (1)     the stack file is unreadable or invalid
     |    +-- StackRuleError      a rule across fields (also a ValueError)
     +-- PlanError        (1)     the stack is valid but does not fit its GPUs
     +-- DriftError       (3)     committed output differs from a fresh render
     +-- EngineError      (1)     Docker / Compose missing, too old, or refusing
     +-- BootError        (4)     a service failed to become healthy
     +-- CheckError       (1)     a running stack failed a check (smoke, boot
     |                            order, an adapter the server refused)
     +-- SetupError       (1)     what the host must provide is missing or
     |                            failed (the master key, nvidia-smi)
     +-- ArgumentError    (1)     an argument names what is not there, or
     |                            asks for what cannot be done
     +-- OutputError      (1)     the output folder cannot be read or written
     +-- ModelFileError   (1)     a model's config.json, safetensors header or
                                  the stack's lock file is unreadable or wrong
                                  (also a ValueError)

Exit code 2 (command-line usage) comes from click itself.

Every refusal reads the same way: ``FILE:LINE:COL: PATH: detail; hint`` --
``where`` (the stack file and the position of ``path`` in it) is attached once,
by the loader for the spec's errors and by the command line for the others
(``located``), from the loader's marks.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
EXIT_UNHEALTHY = 4

FieldPath = tuple[str | int, ...]


def format_path(path: FieldPath | tuple[Any, ...]) -> str:
    """``('models', 1, 'memory')`` -> ``models[1].memory``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class GscError(Exception):
    """A failure with a message meant for the user, and its exit code.

    ``detail`` says what is wrong, ``path`` which field of the stack file it is
    about, ``hint`` what to do; ``where`` is ``FILE:LINE:COL`` (or ``FILE``)."""

    exit_code = EXIT_INVALID

    def __init__(self, detail: str, *, path: FieldPath = (), hint: str | None = None, where: str | None = None):
        self.detail = detail
        self.path = path
        self.hint = hint
        self.where = where
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.detail + (f"; {self.hint}" if self.hint else "")
        if self.path:
            text = f"{format_path(self.path)}: {text}"
        return f"{self.where}: {text}" if self.where else text

    def __str__(self) -> str:
        return self.message

    def located(self, where: str) -> GscError:
        """The same error at ``where``, unless it already names a place."""
        if self.where is not None:
            return self
        moved = type(self).__new__(type(self))
        moved.__dict__.update(self.__dict__)
        moved.where = where
        Exception.__init__(moved, moved.message)
        return moved


class SpecError(GscError):
    """The stack file cannot be read, parsed or validated."""


class StackRuleError(SpecError, ValueError):
    """A cross-field rule of the stack broken; ``path`` names the field."""

    def __init__(self, path: FieldPath, detail: str, *, hint: str | None = None) -> None:
        super().__init__(detail, path=path, hint=hint)


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


class CheckError(GscError):
    """A running stack failed a check: a smoke request, the boot order, an
    adapter its server refused."""


class SetupError(GscError):
    """What the host must provide before anything starts is missing or failed."""


class ArgumentError(GscError):
    """A command-line argument names what is not there, or asks for what
    cannot be done."""


class OutputError(GscError):
    """The output folder (or a file in it) cannot be read or written."""


class ModelFileError(GscError, ValueError):
    """A model file (config.json, a safetensors header, the lock) cannot be
    read, or says what cannot be; ``where`` names the file."""


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
