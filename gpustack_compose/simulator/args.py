"""The ``vllm serve`` command line, as vLLM's FlexibleArgumentParser reads it.

Flags vLLM accepts and the simulator does not model are accepted and ignored;
flags vLLM does not have are refused the way vLLM refuses them
("vllm serve: error: unrecognized arguments: --frobnicate", exit 2).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from dataclasses import dataclass, field

from gpustack_compose import versions
from gpustack_compose.contract import SIM_VLLM_RELEASE_ENV
from gpustack_compose.vllm_flags import Inventory, inventory


def flags() -> Inventory:
    """The flags of the release production runs (the rehearsal override sets
    it); vLLM's own parser generated each inventory (data/vllm-flags/)."""
    release = os.environ.get(SIM_VLLM_RELEASE_ENV) or versions.VLLM
    found = inventory(release) or inventory(versions.VLLM)
    assert found is not None, "the default vLLM release has a committed inventory (tests/test_vllm_flags.py)"
    return found


class UnrecognizedArguments(Exception):
    pass


@dataclass
class ServeArgs:
    model: str
    served_model_name: str
    host: str = "0.0.0.0"
    port: int = 8000
    gpu_memory_utilization: float = 0.92  # vLLM's default
    kv_cache_memory_bytes: int | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    enable_lora: bool = False
    max_loras: int = 1
    lora_modules: dict[str, str] = field(default_factory=dict)  # adapter name -> path
    extra: dict[str, object] = field(default_factory=dict)


def _normalise(argv: list[str], known: Inventory) -> list[str]:
    """vLLM accepts --max_model_len for --max-model-len, --flag=value, short
    aliases and unambiguous prefixes (its parser's allow_abbrev)."""
    out: list[str] = []
    for arg in argv:
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            name = "--" + name[2:].replace("_", "-")
            # a prefix vLLM's parser takes (allow_abbrev) is the flag it names
            name = known.resolve(name) or name
            out += [name, value] if eq else [name]
        else:
            out.append(known.resolve(arg) or arg)  # -q, -tp: the long flag; values stay
    return out


@functools.cache
def _parser(known: Inventory) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm serve", add_help=False, allow_abbrev=False)
    parser.add_argument("model_tag", nargs="?")
    for flag, nargs in known.valued.items():
        parser.add_argument(flag, nargs="+" if nargs == "+" else None)
    for flag in sorted(known.switches):
        parser.add_argument(flag, action="store_true")
    return parser


def parse(argv: list[str]) -> ServeArgs:
    """Raises UnrecognizedArguments with vLLM's message for flags vLLM lacks."""
    known = flags()
    namespace, unknown = _parser(known).parse_known_args(_normalise(argv, known))
    if unknown:
        raise UnrecognizedArguments(f"vllm serve: error: unrecognized arguments: {' '.join(unknown)}")
    values = vars(namespace)
    model = values.pop("model_tag") or values.pop("model", None) or "facebook/opt-125m"
    values.pop("model", None)
    served = values.pop("served_model_name") or [model]
    loras: dict[str, str] = {}
    for module in values.pop("lora_modules") or []:
        if module.startswith("{"):
            spec = json.loads(module)
            loras[spec["name"]] = spec["path"]
        else:
            name, _, path = module.partition("=")
            loras[name] = path
    util = float(values.pop("gpu_memory_utilization") or 0.92)
    kv_bytes = values.pop("kv_cache_memory_bytes") or values.pop("kv_cache_memory", None)
    values.pop("kv_cache_memory", None)
    max_len = values.pop("max_model_len")
    max_seqs = values.pop("max_num_seqs")
    port = int(values.pop("port") or 8000)
    host = values.pop("host") or "0.0.0.0"
    enable_lora = bool(values.pop("enable_lora"))
    max_loras = int(values.pop("max_loras") or 1)
    return ServeArgs(
        model=model,
        served_model_name=served[0],
        host=host,
        port=port,
        gpu_memory_utilization=util,
        kv_cache_memory_bytes=int(kv_bytes) if kv_bytes else None,
        max_model_len=int(max_len) if max_len else None,
        max_num_seqs=int(max_seqs) if max_seqs else None,
        enable_lora=enable_lora,
        max_loras=max_loras,
        lora_modules=loras,
        extra={k: v for k, v in values.items() if v not in (None, False)},
    )
