"""The README runs as written.

Every fenced command block in README.md carries a marker on the line above it:

    <!-- readme: run -->      run here, on a fresh copy of the repository, in order
    <!-- readme: docker -->   run by the Docker test below; an ``output`` block after it
                              is compared with what the commands printed
    <!-- readme: output -->   output shown for the block before it
    <!-- readme: gpu -->      for a GPU host: its gpustack-compose lines run by the Docker
                              test with ``--rehearsal``, the files it names must exist
    <!-- readme: cluster -->  kubectl against a cluster: the files it names must exist
    <!-- readme: ci -->       what .ci/run runs itself: each line must be in .ci/run
    <!-- readme: excerpt PATH -->  the block or table below is an excerpt of PATH,
                              line for line, after the run blocks ran

``console`` blocks show ``$ command`` lines followed by their output, which
must match exactly; elsewhere only timings, clock times and ports may differ.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
KINDS = ("run", "docker", "output", "gpu", "cluster", "ci", "excerpt")
COMMAND_LANGUAGES = ("sh", "console", "")
MARK = re.compile(r"<!-- readme: (?P<kind>[a-z]+)(?: (?P<arg>[^ ]+))? -->")
# Paths of the repository a block names; each must exist once the run blocks ran.
REPO_PATH = re.compile(r"(?<![\w/.-])((?:stacks|compose|examples)/[\w./-]*[\w/])")
# `make test` is the command running this very test: it is checked against .ci/run, not run again.
SELF = "make test"


@dataclass(frozen=True)
class Block:
    kind: str | None
    arg: str | None
    lang: str | None  # None: a markdown table, not a fenced block
    body: str
    line: int  # 1-based line of the fence (or the table's first row)

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"

    def commands(self) -> list[str]:
        """Shell command lines: comments dropped, continuations joined."""
        joined = self.body.replace("\\\n", " ")
        lines = [_strip_comment(line).strip() for line in joined.splitlines()]
        return [line for line in lines if line]


def _strip_comment(line: str) -> str:
    """The command before a `# comment` (a `#` after blank space, outside quotes)."""
    quote: str | None = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def parse(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    pending: re.Match[str] | None = None
    while i < len(lines):
        line = lines[i]
        mark = MARK.fullmatch(line.strip())
        if mark:
            pending = mark
            i += 1
            continue
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if fence:
            indent, lang = fence.group(1), fence.group(2)
            start = i
            i += 1
            body: list[str] = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
                i += 1
            blocks.append(
                Block(
                    pending.group("kind") if pending else None,
                    pending.group("arg") if pending else None,
                    lang,
                    "\n".join(body) + "\n",
                    start + 1,
                )
            )
            pending = None
        elif pending is not None and line.startswith("|"):
            start = i
            table: list[str] = []
            while i < len(lines) and lines[i].startswith("|"):
                table.append(lines[i])
                i += 1
            blocks.append(Block(pending.group("kind"), pending.group("arg"), None, "\n".join(table) + "\n", start + 1))
            pending = None
            continue
        elif line.strip():
            pending = None
        i += 1
    return blocks


BLOCKS = parse(README.read_text())


def of_kind(kind: str) -> list[Block]:
    return [b for b in BLOCKS if b.kind == kind]


def test_every_command_block_is_marked() -> None:
    unmarked = [b.where for b in BLOCKS if b.kind is None and b.lang in COMMAND_LANGUAGES]
    assert unmarked == [], "command blocks without a <!-- readme: KIND --> marker"
    assert {b.kind for b in BLOCKS} - {None} <= set(KINDS)
    for i, block in enumerate(BLOCKS):
        if block.kind == "output":
            assert i > 0 and BLOCKS[i - 1].kind == "docker", f"{block.where}: output follows no docker block"
        if block.kind == "excerpt":
            assert block.arg, f"{block.where}: excerpt of which file?"
    assert len(of_kind("run")) >= 6 and of_kind("docker") and of_kind("gpu")


def test_ci_blocks_are_what_ci_runs() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    lines = [c for b in of_kind("ci") for c in b.commands()]
    assert lines
    for command in [*lines, SELF]:
        assert re.search(rf"^{re.escape(command)}$", ci, re.M), f".ci/run does not run `{command}`"


# --- the run blocks, on a fresh copy ----------------------------------------


def fresh_copy(target: Path) -> Path:
    """The repository's files as a clone would have them (tracked, plus new
    files not ignored), mtimes kept, with this checkout's .venv linked in."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    venv = REPO / ".venv"
    stamp = venv / ".installed"
    assert stamp.is_file(), "run `make install` first"
    newest = max((REPO / f).stat().st_mtime for f in ("pyproject.toml", "constraints.txt"))
    # the Makefile would otherwise reinstall into the linked venv from the copy
    assert stamp.stat().st_mtime >= newest, "the .venv is older than pyproject.toml: run `make install`"
    (target / ".venv").symlink_to(venv)
    return target


def shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GSC_DEBUG", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def sh(command: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=shell_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def console_steps(block: Block) -> Iterator[tuple[str, list[str]]]:
    """Each `$ command` of a console block with the output lines shown after it."""
    command: str | None = None
    shown: list[str] = []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            if command is not None:
                yield command, shown
            command, shown = line[2:], []
        else:
            shown.append(line)
    if command is not None:
        yield command, shown


def run_block(block: Block, cwd: Path) -> None:
    if block.lang == "console":
        for command, shown in console_steps(block):
            done = sh(command, cwd)
            printed = (done.stdout + done.stderr).rstrip("\n").splitlines()
            assert printed == shown, f"{block.where}: `{command}` printed\n{done.stdout}{done.stderr}"
        return
    # One shell per block, so `. .venv/bin/activate` holds for the lines after it.
    script = "\n".join(c for c in block.commands() if c != SELF)
    done = sh("set -euo pipefail\n" + script, cwd)
    assert done.returncode == 0, f"{block.where} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"


def excerpt_lines(block: Block) -> list[str]:
    return [line.rstrip() for line in block.body.splitlines() if line.strip()]


def shown_lines(block: Block) -> list[str]:
    """An output block's lines that say something once table borders go."""
    return [line for line in excerpt_lines(block) if normalized(line)]


def assert_excerpt(block: Block, root: Path) -> None:
    assert block.arg is not None
    path = root / block.arg
    assert path.is_file(), f"{block.where}: {block.arg} does not exist"
    remaining = iter([line.rstrip() for line in path.read_text().splitlines()])
    for line in excerpt_lines(block):
        assert any(candidate == line for candidate in remaining), f"{block.where}: not in {block.arg}: {line!r}"


def test_the_readme_runs_as_written_on_a_fresh_copy(tmp_path: Path) -> None:
    root = fresh_copy(tmp_path / "repo")
    tracked = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".venv" not in p.parts}
    for block in of_kind("run"):
        run_block(block, root)
    for block in of_kind("excerpt"):
        assert_excerpt(block, root)
    for block in BLOCKS:
        for command in block.commands() if block.lang is not None else []:
            for named in REPO_PATH.findall(command):
                assert (root / named).exists(), f"{block.where}: `{command}` names {named}, which does not exist"
    # make render / schema / golden and lora add + remove leave every file as committed
    changed = sorted(str(p.relative_to(root)) for p, data in tracked.items() if p.read_bytes() != data)
    assert changed == [], "the README's commands changed committed files"


# --- Docker: the rehearsals and the GPU host's commands as rehearsals -------

CLOCK = re.compile(r"\b\d\d:\d\d:\d\d\.\d+Z")
DURATION = re.compile(r"\b\d[\d,]*(?:\.\d+)? ?(s|ms)\b")
PORT = re.compile(r"(127\.0\.0\.1|localhost):\d+")
# rich's table borders: their widths follow the widths of the timings.
BOX = re.compile(r"[\u2500-\u257f]")


def normalized(line: str) -> str:
    """Only timings, clock times and ports may vary."""
    line = BOX.sub(" ", line)
    line = CLOCK.sub("HH:MM:SS.mmmZ", line)
    line = DURATION.sub(r"N \1", line)
    line = PORT.sub(r"\1:PORT", line)
    return " ".join(line.split())


def assert_shows(block: Block, printed: str) -> None:
    """Every line the README shows appears in what ran, in order."""
    remaining = iter(normalized(line) for line in printed.splitlines())
    for line in shown_lines(block):
        want = normalized(line)
        assert any(got == want for got in remaining), f"{block.where}: not printed: {line!r}\n{printed}"


def as_rehearsal(command: str) -> str | None:
    """A GPU host's `gpustack-compose VERB ...` line as its rehearsal twin."""
    words = shlex.split(command)
    if words[:1] != ["gpustack-compose"] or len(words) < 2:
        return None
    return shlex.join([*words, "--rehearsal"])


@pytest.mark.docker
@pytest.mark.usefixtures("built_images")
def test_the_readme_docker_and_gpu_blocks_run_as_rehearsals(tmp_path: Path) -> None:
    root = fresh_copy(tmp_path / "repo")
    for i, block in enumerate(BLOCKS):
        if block.kind == "docker":
            script = "\n".join(block.commands())
            done = sh("set -euo pipefail\n" + script, root, timeout=1500)
            printed = done.stdout + done.stderr
            assert done.returncode == 0, f"{block.where} failed (exit {done.returncode}):\n{printed}"
            if i + 1 < len(BLOCKS) and BLOCKS[i + 1].kind == "output":
                assert_shows(BLOCKS[i + 1], printed)
    twins = [twin for block in of_kind("gpu") for c in block.commands() if (twin := as_rehearsal(c))]
    assert twins and twins[0].startswith("gpustack-compose up ")
    try:
        for twin in twins:
            done = sh(twin, root, timeout=900)
            assert done.returncode == 0, f"`{twin}` failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
    finally:
        sh("gpustack-compose down stacks/h100-idp.yaml --rehearsal", root)
