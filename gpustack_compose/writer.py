"""Write rendered files only where they changed, atomically; or just compare.

Every changed file is first written in full to a temporary file beside its
target and fsynced; only when all of them are written are they renamed into
place (``os.replace`` is atomic on POSIX). A render killed while writing leaves
the previous output untouched; the rename phase is a handful of syscalls.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gpustack_compose.errors import GscError

Status = Literal["create", "update", "identical"]
TEMP_PREFIX = ".gsc-tmp-"


@dataclass(frozen=True)
class FileState:
    path: str  # relative to the output folder, posix
    status: Status
    old: bytes | None
    new: bytes


def compare(out_dir: Path, files: Mapping[str, str]) -> list[FileState]:
    states = []
    for rel in sorted(files):
        new = files[rel].encode("utf-8")
        target = out_dir / rel
        try:
            old: bytes | None = target.read_bytes()
        except FileNotFoundError:
            old = None
        except IsADirectoryError:
            raise GscError(f"{target}: is a directory where a rendered file belongs") from None
        except OSError as exc:
            raise GscError(f"{target}: cannot be read: {exc.strerror or exc}") from None
        status: Status = "create" if old is None else ("identical" if old == new else "update")
        states.append(FileState(rel, status, old, new))
    return states


def write(out_dir: Path, files: Mapping[str, str]) -> list[FileState]:
    """Bring ``out_dir`` to ``files``; returns what happened to each file."""
    states = compare(out_dir, files)
    changed = [s for s in states if s.status != "identical"]
    _remove_stale_temps(out_dir, files)
    staged: list[tuple[str, Path]] = []
    try:
        for state in changed:
            target = out_dir / state.path
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
            staged.append((temp, target))
            with os.fdopen(fd, "wb") as handle:
                handle.write(state.new)
                handle.flush()
                os.fsync(handle.fileno())
            Path(temp).chmod(0o644)
        for temp, target in staged:
            Path(temp).replace(target)
        staged.clear()
    except OSError as exc:
        raise GscError(f"{out_dir}: cannot write the rendered files: {exc.strerror or exc}") from None
    finally:
        for temp, _ in staged:
            Path(temp).unlink(missing_ok=True)
    return states


def _remove_stale_temps(out_dir: Path, files: Mapping[str, str]) -> None:
    """Temporary files of a render that was killed (SIGKILL, power loss)
    before it could clean up: never a target, so safe to delete."""
    for folder in {(out_dir / rel).parent for rel in files}:
        if folder.is_dir():
            for leftover in folder.glob(TEMP_PREFIX + "*"):
                leftover.unlink(missing_ok=True)


def unified_diff(out_dir: Path, states: list[FileState]) -> str:
    """The diff a reviewer reads: committed file -> fresh render."""
    chunks: list[str] = []
    for state in states:
        if state.status == "identical":
            continue
        old_text = (state.old or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
        new_text = state.new.decode("utf-8").splitlines(keepends=True)
        label = (out_dir / state.path).as_posix()
        chunks.extend(
            difflib.unified_diff(
                old_text,
                new_text,
                fromfile=f"{label} (committed)" if state.old is not None else "/dev/null",
                tofile=f"{label} (rendered)",
            )
        )
    text = "".join(chunks)
    return text if not text or text.endswith("\n") else text + "\n"
