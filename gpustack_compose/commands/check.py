"""``check``: exit 3 with a diff when the committed output is stale.

Several stack files may be given (a pre-commit hook passes the changed ones);
none means every stack file in ``stacks/``. All are checked before the exit
code is decided: 1 when any is invalid, else 3 when any is stale.
"""

from __future__ import annotations

from pathlib import Path

from gpustack_compose.commands.common import RenderTarget, compare_rendered, output_dir
from gpustack_compose.console import Output
from gpustack_compose.errors import EXIT_DRIFT, ArgumentError, DriftError, GscError
from gpustack_compose.loaded import load_and_plan, load_with_lock, located
from gpustack_compose.model_facts.lock import Stale, lock_path, stale_entries
from gpustack_compose.model_facts.record import ModelEntry
from gpustack_compose.model_facts.sources import CONFIG_FILE, config_digest, directory_of
from gpustack_compose.spec import StackSpec
from gpustack_compose.writer import unified_diff

STACKS_DIR = Path("stacks")


def stack_files(paths: tuple[Path, ...]) -> list[Path]:
    if paths:
        return list(paths)
    found = sorted(p for p in STACKS_DIR.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not found:
        raise ArgumentError(f"no stack file given and none in {STACKS_DIR.as_posix()}/")
    return found


def changed_directories(stack: StackSpec, stack_path: Path, locked: dict[str, ModelEntry] | None) -> list[Stale]:
    """Model directories present on this host whose config.json is no longer
    the one the lock read."""
    found = []
    for position, model in enumerate(stack.models):
        entry = (locked or {}).get(model.model)
        directory = directory_of(model, stack_path.parent)
        config = directory / CONFIG_FILE if directory is not None else None
        if entry is None or config is None or not config.is_file() or model.arch is not None:
            continue
        try:
            digest = config_digest(config.read_bytes())
        except OSError:
            continue
        if digest != entry.config_sha256:
            found.append(Stale(("models", position, "model"), f"{config} changed since the lock read it"))
    return found


def check_lock(stack_path: Path, output: Output) -> None:
    """Exit 3 when the lock file is missing an entry or disagrees with the
    stack: one line per problem, each naming the model's field."""
    stack, locked = load_with_lock(stack_path)
    name = lock_path(stack_path).as_posix()
    stale = stale_entries(stack, locked, name) + changed_directories(stack, stack_path, locked)
    hint = f"run: python -m gpustack_compose lock {stack_path.as_posix()}"
    problems = [located(DriftError(p.detail, path=p.path, hint=hint)) for p in stale]
    for problem in problems[:-1]:
        output.error(problem.message)
    if problems:
        raise problems[-1]


def check_one(stack_path: Path, out: Path | None, output: Output, target: RenderTarget = "auto") -> None:
    check_lock(stack_path, output)
    loaded = load_and_plan(stack_path)
    out_dir = output_dir(loaded, out)
    states = compare_rendered(loaded, out_dir, target)
    stale = [s for s in states if s.status != "identical"]
    if not stale:
        output.info(f"{out_dir.as_posix()} is up to date with {stack_path.as_posix()}")
        return
    output.raw(unified_diff(out_dir, stale))
    names = ", ".join(s.path for s in stale)
    raise DriftError(
        f"{out_dir.as_posix()} is stale ({names}); run: gpustack-compose render {stack_path.as_posix()}"
        + (f" -o {out.as_posix()}" if out is not None else "")
        + (f" --target {target}" if target != "auto" else "")
    )


def run(*, stack_paths: tuple[Path, ...], out: Path | None, output: Output, target: RenderTarget = "auto") -> int:
    paths = stack_files(stack_paths)
    if out is not None and len(paths) != 1:
        raise ArgumentError("-o/--output needs exactly one stack file")
    if len(paths) == 1:
        check_one(paths[0], out, output, target)
        return 0
    worst = 0
    for path in paths:
        try:
            check_one(path, None, output, target)
        except GscError as exc:
            output.error(exc.message)
            worst = exc.exit_code if worst in (0, EXIT_DRIFT) else worst
    return worst
