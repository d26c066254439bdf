"""What the tool knows about `vllm serve` flags, below the spec.

The flags gpustack-compose sets itself (and the stack field behind each), the
way vLLM's FlexibleArgumentParser spells them, and each supported release's
flag inventory -- generated from that release's own parser
(``images/vllm-cpu/check_args.py --inventory``) into
``data/vllm-flags/<release>.json``. Imports only ``versions``: the spec, the
renderer, ``diff`` and the simulator all read flags from here.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from gpustack_compose import versions
from gpustack_compose.contract import MODEL_PORT

INVENTORY_DIR = Path(__file__).parent / "data" / "vllm-flags"

MODEL = "--model"
SERVED_MODEL_NAME = "--served-model-name"
HOST = "--host"
PORT = "--port"
GPU_MEMORY_UTILIZATION = "--gpu-memory-utilization"
KV_CACHE_MEMORY_BYTES = "--kv-cache-memory-bytes"
MAX_MODEL_LEN = "--max-model-len"
MAX_NUM_SEQS = "--max-num-seqs"
MAX_NUM_BATCHED_TOKENS = "--max-num-batched-tokens"
DTYPE = "--dtype"
QUANTIZATION = "--quantization"
KV_CACHE_DTYPE = "--kv-cache-dtype"
ENFORCE_EAGER = "--enforce-eager"
TRUST_REMOTE_CODE = "--trust-remote-code"
ENABLE_LORA = "--enable-lora"
LORA_MODULES = "--lora-modules"
MAX_LORAS = "--max-loras"
MAX_LORA_RANK = "--max-lora-rank"
MAX_CPU_LORAS = "--max-cpu-loras"
TENSOR_PARALLEL_SIZE = "--tensor-parallel-size"
PIPELINE_PARALLEL_SIZE = "--pipeline-parallel-size"
NUM_GPU_BLOCKS_OVERRIDE = "--num-gpu-blocks-override"
TOKENIZER_MODE = "--tokenizer-mode"
CONFIG_FORMAT = "--config-format"
LOAD_FORMAT = "--load-format"
REVISION = "--revision"
# Sleep mode (vLLM's cumem allocator): swappable models only.
ENABLE_SLEEP_MODE = "--enable-sleep-mode"

# Flags gpustack-compose sets itself, and the stack field that controls each;
# the short spellings of each release's parser (``-q``, ``-tp``) are added
# from its inventory by ``managed_flags``. ``--num-gpu-blocks-override`` and
# ``--pipeline-parallel-size`` are not rendered, but either would contradict
# the planned KV cache or GPUs.
_MANAGED: dict[str, str] = {
    MODEL: "model",
    REVISION: "revision",
    SERVED_MODEL_NAME: "name",
    HOST: "(fixed: 0.0.0.0)",
    PORT: f"(fixed: {MODEL_PORT})",
    GPU_MEMORY_UTILIZATION: "memory",
    KV_CACHE_MEMORY_BYTES: "memory",
    NUM_GPU_BLOCKS_OVERRIDE: "memory",
    MAX_MODEL_LEN: "max_model_len",
    MAX_NUM_SEQS: "max_num_seqs",
    MAX_NUM_BATCHED_TOKENS: "max_num_batched_tokens",
    DTYPE: "dtype",
    QUANTIZATION: "quantization",
    KV_CACHE_DTYPE: "kv_cache_dtype",
    ENFORCE_EAGER: "enforce_eager",
    TRUST_REMOTE_CODE: "trust_remote_code",
    ENABLE_LORA: "loras",
    LORA_MODULES: "loras",
    MAX_LORAS: "max_loras",
    MAX_LORA_RANK: "max_lora_rank",
    MAX_CPU_LORAS: "max_cpu_loras",
    TENSOR_PARALLEL_SIZE: "gpu",
    PIPELINE_PARALLEL_SIZE: "gpu",
    ENABLE_SLEEP_MODE: "sleep",
}


@dataclass(frozen=True, eq=False)  # one object per release (cached): hashed by identity
class Inventory:
    """Every flag of one release's `vllm serve`."""

    release: str
    valued: dict[str, str]  # long flag -> "1" (one value) or "+" (one or more)
    switches: frozenset[str]  # flags that take no value (--x and --no-x)
    aliases: dict[str, str]  # short spelling -> long flag
    # argparse's allow_abbrev, True in vLLM 0.26 and 0.32: `--kv-cache-memory`
    # is read as --kv-cache-memory-bytes, `--gpu-memory` as --gpu-memory-utilization.
    allow_abbrev: bool

    def resolve(self, flag: str) -> str | None:
        """The flag vLLM reads ``flag`` as (a name from ``flag_name``): itself,
        the long flag of a short alias or of an unambiguous prefix; None when
        vLLM would refuse it (unrecognized, or a prefix of several)."""
        if flag in self.valued or flag in self.switches:
            return flag
        if flag in self.aliases:
            return self.aliases[flag]
        if self.allow_abbrev and flag.startswith("--"):
            matches = [f for f in (*self.valued, *self.switches) if f.startswith(flag)]
            if len(matches) == 1:
                return matches[0]
        return None


def inventory_path(release: str) -> Path:
    return INVENTORY_DIR / f"{release}.json"


@functools.cache
def inventory(release: str = versions.VLLM) -> Inventory | None:
    """The committed inventory of ``release``, or None when there is none."""
    path = inventory_path(release)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return Inventory(
        release,
        dict(data["valued"]),
        frozenset(data["switches"]),
        dict(data["aliases"]),
        bool(data["allow_abbrev"]),
    )


def readings(flag: str, known: Inventory | None = None) -> list[str]:
    """The long flags vLLM reads ``flag`` as (an alias, an unambiguous
    prefix, or itself): in ``known``'s parser, or -- for an image without an
    inventory -- in each inventoried release's."""
    candidates = [known] if known is not None else [inventory(r) for r in versions.INVENTORIED_VLLM]
    found = (c.resolve(flag) for c in candidates if c is not None)
    return [long for long in found if long is not None]


def managed(flag: str, known: Inventory | None) -> tuple[str, str] | None:
    """``(long flag, stack field)`` when vLLM would read ``flag`` as a flag
    gpustack-compose sets itself, in any spelling a release accepts."""
    for long in [*readings(flag, known), flag]:
        if long in _MANAGED:
            return long, _MANAGED[long]
    return None


def flag_name(arg: str) -> str | None:
    """``--max_model_len=8`` -> ``--max-model-len``; None for a value.
    vLLM's FlexibleArgumentParser accepts underscores for dashes."""
    if not arg.startswith("-") or arg == "-" or _is_number(arg) or arg.startswith("{"):
        return None
    name = arg.split("=", 1)[0]
    if name.startswith("--"):
        return "--" + name[2:].replace("_", "-")
    return name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
