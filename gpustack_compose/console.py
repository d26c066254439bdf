"""Terminal output: rich for people, plain text when piped.

rich honours ``NO_COLOR`` and drops colour and markup styling when stdout is
not a terminal, so pipelines get plain, stable text.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

_STATUS_STYLE = {"create": "green", "update": "yellow", "identical": "dim"}


class Output:
    def __init__(self, stdout: Any = None, stderr: Any = None) -> None:
        self.stdout = stdout or sys.stdout
        self.out = self._console(self.stdout)
        self.err = self._console(stderr or sys.stderr)

    def json_mode(self) -> None:
        """Keep stdout for the JSON document: everything for people goes to stderr."""
        self.out = self.err

    @staticmethod
    def _console(file: Any) -> Console:
        console = Console(file=file, highlight=False, soft_wrap=True)
        if not console.is_terminal:
            # Piped: rich would assume 80 columns and wrap tables; logs and CI
            # consoles are wider, and unwrapped rows grep better.
            console = Console(file=file, highlight=False, soft_wrap=True, width=160)
        return console

    def info(self, text: str) -> None:
        self.out.print(escape(text))

    def raw(self, text: str) -> None:
        """Text written to stdout exactly as is (diffs, JSON)."""
        self.stdout.write(text)
        self.stdout.flush()

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]error:[/] {escape(text)}")

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(text)}")

    def note(self, text: str) -> None:
        self.err.print(f"[cyan]note:[/] {escape(text)}")

    def file_status(self, status: str, path: str) -> None:
        style = _STATUS_STYLE.get(status, "")
        self.out.print(f"[{style}]{status:<9}[/] {escape(path)}")

    def render(self, renderable: Any) -> None:
        self.out.print(renderable)
