"""LoRA adapters on disk: checked when the stack file is loaded (I/O at the edge).

Each adapter folder must exist, stay inside the project (no ``..`` or symlink
leading out of it: a stack file in a pull request must not mount arbitrary
host paths into a container), and hold a PEFT ``adapter_config.json`` whose
rank ``r`` fits the model's ``max_lora_rank`` -- vLLM refuses larger ranks
when it loads the adapter, minutes into the boot.
"""

from __future__ import annotations

import json
from pathlib import Path

from gpustack_compose.errors import StackRuleError
from gpustack_compose.spec import StackSpec

ADAPTER_CONFIG = "adapter_config.json"


def project_root(stack_dir: Path) -> Path:
    """The repository holding the stack file (nearest ``.git``), else its folder."""
    here = stack_dir.resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def adapter_rank(folder: Path) -> int:
    """``r`` from a PEFT adapter_config.json. Raises ValueError with the reason."""
    config_file = folder / ADAPTER_CONFIG
    if not config_file.is_file():
        raise ValueError(f"holds no {ADAPTER_CONFIG}")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{ADAPTER_CONFIG} cannot be read: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{ADAPTER_CONFIG} is not a JSON object")
    peft_type = config.get("peft_type", "LORA")
    if peft_type != "LORA":
        raise ValueError(f"{ADAPTER_CONFIG} describes a {peft_type} adapter, not LoRA")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"{ADAPTER_CONFIG} has no positive integer rank r")
    return rank


def check_adapters(stack: StackSpec, stack_file: Path) -> None:
    """Raises StackRuleError naming the field for the first adapter problem."""
    stack_dir = stack_file.parent
    root = project_root(stack_dir)
    for position, model in enumerate(stack.models):
        where: tuple[str | int, ...] = ("models", position)
        if model.runtime_loras is not None:
            folder = _folder(stack_dir, model.runtime_loras.dir, root, (*where, "runtime_loras", "dir"))
            if not folder.is_dir():
                raise StackRuleError(
                    (*where, "runtime_loras", "dir"),
                    f"{model.runtime_loras.dir} is not a folder (paths are relative to the stack file)",
                )
            if _inside(stack_dir.resolve(), folder) or folder == root:
                raise StackRuleError(
                    (*where, "runtime_loras", "dir"),
                    f"{model.runtime_loras.dir} holds the stack file (and the rendered compose/ with its .env and "
                    "master key), which would all be mounted into the model container; give a folder of "
                    "adapters only, such as ./adapters",
                )
        for lora_position, lora in enumerate(model.loras):
            if lora.path is None:
                continue
            field = (*where, "loras", lora_position, "path")
            folder = _folder(stack_dir, lora.path, root, field)
            if not folder.is_dir():
                raise StackRuleError(field, f"{lora.path} does not exist (paths are relative to the stack file)")
            try:
                rank = adapter_rank(folder)
            except ValueError as exc:
                raise StackRuleError(field, f"{lora.path} {exc}") from None
            if rank > model.max_lora_rank:
                raise StackRuleError(
                    field,
                    f"{lora.path} has rank {rank} (r in {ADAPTER_CONFIG}), above max_lora_rank "
                    f"{model.max_lora_rank}: raise max_lora_rank (every GPU slot is sized for it)",
                )


def _folder(stack_dir: Path, relative: str, root: Path, field: tuple[str | int, ...]) -> Path:
    try:
        folder = (stack_dir / relative).resolve()
    except (RuntimeError, OSError):  # Path.resolve: "Symlink loop from ..."
        raise StackRuleError(field, f"{relative} is a loop of symbolic links") from None
    if not _inside(folder, root):
        raise StackRuleError(
            field, f"{relative} leads outside the project folder {root.name}/ (adapters must live in it)"
        )
    return folder
