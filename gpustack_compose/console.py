"""Terminal output: rich for people, plain text when piped.

rich honours ``NO_COLOR``; when a stream is not a terminal (and FORCE_COLOR is
not set) lines are written as plain text without loading rich at all, so
pipelines get plain, stable text and a short process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_STATUS_STYLE = {"create": "green", "update": "yellow", "delete": "red", "identical": "dim"}


def _styled(stream: Any) -> bool:
    """Whether rich would style this stream: a terminal, or FORCE_COLOR."""
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Output:
    """Lines for people. Plain text goes straight to a pipe; rich (imported
    only then, it costs a tenth of a render's time) styles a terminal."""

    def __init__(self, stdout: Any = None, stderr: Any = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self._people = self.stdout  # where info and file lines go
        self._consoles: dict[int, Console] = {}

    def json_mode(self) -> None:
        """Keep stdout for the JSON document: everything for people goes to stderr."""
        self._people = self.stderr

    @property
    def out(self) -> Console:
        return self._console(self._people)

    @property
    def err(self) -> Console:
        return self._console(self.stderr)

    def _console(self, file: Any) -> Console:
        key = id(file)
        if key not in self._consoles:
            from rich.console import Console

            console = Console(file=file, highlight=False, soft_wrap=True)
            if not console.is_terminal:
                # Piped: rich would assume 80 columns and wrap tables; logs and
                # CI consoles are wider, and unwrapped rows grep better.
                console = Console(file=file, highlight=False, soft_wrap=True, width=160)
            self._consoles[key] = console
        return self._consoles[key]

    def _line(self, stream: Any, markup: Callable[[], str], plain: str) -> None:
        if _styled(stream):
            self._console(stream).print(markup())
        else:
            stream.write(plain + "\n")
            stream.flush()

    def info(self, text: str) -> None:
        self._line(self._people, lambda: _escape(text), text)

    def raw(self, text: str) -> None:
        """Text written to stdout exactly as is (diffs, JSON)."""
        self.stdout.write(text)
        self.stdout.flush()

    def error(self, text: str) -> None:
        self._line(self.stderr, lambda: f"[bold red]error:[/] {_escape(text)}", f"error: {text}")

    def warn(self, text: str) -> None:
        self._line(self.stderr, lambda: f"[yellow]warning:[/] {_escape(text)}", f"warning: {text}")

    def note(self, text: str) -> None:
        self._line(self.stderr, lambda: f"[cyan]note:[/] {_escape(text)}", f"note: {text}")

    def file_status(self, status: str, path: str) -> None:
        style = _STATUS_STYLE.get(status, "")
        self._line(self._people, lambda: f"[{style}]{status:<9}[/] {_escape(path)}", f"{status:<9} {path}")

    def render(self, renderable: Any) -> None:
        self.out.print(renderable)

    def clear(self) -> None:
        """A fresh screen for the next refresh (``status --watch``); a pipe
        gets a blank line between refreshes instead."""
        if _styled(self._people):
            self.out.clear()
        else:
            self._people.write("\n")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
