"""The ``vllm serve`` argument list of a model: computed here and only here.

The compose render, the rehearsal overrides and (later) other targets all take
their arguments from ``serve_args`` so that what is rehearsed is what runs.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from gpustack_compose.units import fmt_fraction

if TYPE_CHECKING:
    from gpustack_compose.planner import ModelPlan
    from gpustack_compose.spec import LoraSpec, ModelSpec

# The port every model server listens on inside the compose network.
MODEL_PORT = 8000
ADAPTER_ROOT = "/adapters"
# Where a model's runtime_loras folder is mounted; vLLM's filesystem resolver
# (VLLM_LORA_RESOLVER_CACHE_DIR) loads an adapter from <dir>/<name> on its
# first request when VLLM_ALLOW_RUNTIME_LORA_UPDATING is on.
RUNTIME_ADAPTERS = f"{ADAPTER_ROOT}/runtime"

# Flags gpustack-compose sets itself, and the stack field that controls each.
# vLLM's FlexibleArgumentParser accepts ``--max_model_len`` for
# ``--max-model-len``, so names are compared with underscores as dashes.
MANAGED_FLAGS: dict[str, str] = {
    "--model": "model",
    "--served-model-name": "name",
    "--host": "(fixed: 0.0.0.0)",
    "--port": f"(fixed: {MODEL_PORT})",
    "--gpu-memory-utilization": "memory",
    "--kv-cache-memory-bytes": "memory",
    "--kv-cache-memory": "memory",
    "--max-model-len": "max_model_len",
    "--max-num-seqs": "max_num_seqs",
    "--max-num-batched-tokens": "max_num_batched_tokens",
    "--dtype": "dtype",
    "--quantization": "quantization",
    "-q": "quantization",
    "--kv-cache-dtype": "kv_cache_dtype",
    "--enforce-eager": "enforce_eager",
    "--trust-remote-code": "trust_remote_code",
    "--enable-lora": "loras",
    "--lora-modules": "loras",
    "--max-loras": "max_loras",
    "--max-lora-rank": "max_lora_rank",
    "--max-cpu-loras": "max_cpu_loras",
    "--tensor-parallel-size": "gpu",
    "-tp": "gpu",
}


def flag_name(arg: str) -> str | None:
    """``--max_model_len=8`` -> ``--max-model-len``; None for a value."""
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


@dataclass(frozen=True)
class AdapterMount:
    name: str
    host_path: str  # as written in the stack file (relative to it)
    container_path: str


def within(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` when it lies inside it (both relative to
    the stack file, compared after normalising), else None."""
    inner = PurePosixPath(posixpath.normpath(path))
    try:
        relative = inner.relative_to(PurePosixPath(posixpath.normpath(folder)))
    except ValueError:
        return None
    return relative.as_posix() if relative.parts else None


def adapter_location(spec: ModelSpec, lora: LoraSpec) -> str:
    """What vLLM is told to load: a repo id, a file in the runtime folder's
    mount, or the adapter's own mount."""
    if lora.repo is not None:
        return lora.repo
    assert lora.path is not None
    if spec.runtime_loras is not None:
        inside = within(lora.path, spec.runtime_loras.dir)
        if inside is not None:
            return f"{RUNTIME_ADAPTERS}/{inside}"
    return f"{ADAPTER_ROOT}/{lora.name}"


def adapter_mounts(spec: ModelSpec) -> list[AdapterMount]:
    """Read-only bind mounts: each path adapter outside the runtime folder, and
    the runtime folder itself."""
    mounts = [
        AdapterMount(lora.name, lora.path, adapter_location(spec, lora))
        for lora in spec.loras
        if lora.path is not None and adapter_location(spec, lora) == f"{ADAPTER_ROOT}/{lora.name}"
    ]
    if spec.runtime_loras is not None:
        mounts.append(AdapterMount("(runtime)", spec.runtime_loras.dir, RUNTIME_ADAPTERS))
    return mounts


def runtime_lora_env(spec: ModelSpec) -> dict[str, str]:
    if spec.runtime_loras is None:
        return {}
    return {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_LORA_RESOLVER_CACHE_DIR": RUNTIME_ADAPTERS}


def serve_args(spec: ModelSpec, plan: ModelPlan) -> list[str]:
    """Arguments after ``vllm serve`` (the official image's entrypoint)."""
    args = [
        spec.model,
        "--served-model-name", spec.name,
        "--host", "0.0.0.0",
        "--port", str(MODEL_PORT),
        "--gpu-memory-utilization", fmt_fraction(plan.fraction),
        *(["--kv-cache-memory-bytes", str(plan.kv_bytes)] if plan.exact_kv else []),
        # vLLM applies both per card: the fraction of each card, and the KV
        # bytes of each worker (its shard of the KV heads).
        *(["--tensor-parallel-size", str(plan.tensor_parallel)] if plan.tensor_parallel > 1 else []),
        "--max-model-len", str(plan.max_model_len),
        "--max-num-seqs", str(plan.max_num_seqs),
        "--max-num-batched-tokens", str(plan.max_num_batched_tokens),
    ]  # fmt: skip
    if spec.dtype != "auto":
        args += ["--dtype", spec.dtype]
    if spec.quantization is not None:
        args += ["--quantization", spec.quantization]
    if spec.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", spec.kv_cache_dtype]
    if spec.enforce_eager:
        args.append("--enforce-eager")
    if plan.trust_remote_code:
        args.append("--trust-remote-code")
    if spec.loras or spec.runtime_loras is not None:
        args += [
            "--enable-lora",
            "--max-loras", str(plan.max_loras),
            "--max-lora-rank", str(plan.max_lora_rank),
            "--max-cpu-loras", str(plan.max_cpu_loras),
        ]  # fmt: skip
    if spec.loras:
        modules = [
            json.dumps(
                {"name": lora.name, "path": adapter_location(spec, lora), "base_model_name": spec.name},
                separators=(",", ":"),
            )
            for lora in spec.loras
        ]
        args += ["--lora-modules", *modules]
    overridden = {flag_name(a) for a in spec.extra_args} - {None}
    recommended = list(plan.recommended_args)
    for i in range(0, len(recommended), 2):
        if recommended[i] not in overridden:
            args += recommended[i : i + 2]
    return args + list(spec.extra_args)


# Families of tiny stand-in models in the vLLM CPU rehearsal image
# (images/vllm-cpu/tiny.py); other families are stood in for by llama.
TINY_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
_NATIVE_FORMAT_FLAGS = ("--tokenizer-mode", "--config-format", "--load-format")
_PARALLEL_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size", "-tp", "-pp")


@dataclass(frozen=True)
class CpuAdaptation:
    args: list[str]
    differences: list[str]  # one line per change, for the rehearsal report


def cpu_adaptation(args: list[str], cpu_flags: frozenset[str]) -> CpuAdaptation:
    """The rendered argument list as vLLM's CPU build with a tiny stand-in can
    run it: every flag passed unchanged except those it cannot take, each
    with the reason. ``cpu_flags`` are the engine host's /proc/cpuinfo flags."""
    out: list[str] = []
    differences: list[str] = []
    i = 0
    fp8_kv_ok = "avx512f" in cpu_flags or "amx_tile" in cpu_flags
    while i < len(args):
        arg = args[i]
        flag = flag_name(arg)
        inline = "=" in arg
        value = arg.split("=", 1)[1] if inline else (args[i + 1] if i + 1 < len(args) else "")
        width = 1 if inline else 2
        if flag in ("--quantization", "-q"):
            differences.append(f"dropped {flag} {value}: the tiny stand-in checkpoint is not quantized")
        elif flag == "--kv-cache-dtype" and value.startswith("fp8") and not fp8_kv_ok:
            differences.append(
                f"dropped {flag} {value}: vLLM's CPU backend needs AVX-512 or AMX for an FP8 KV cache, "
                "and this engine's CPU has neither"
            )
        elif flag in _NATIVE_FORMAT_FLAGS and value == "mistral":
            differences.append(f"dropped {flag} {value}: the tiny stand-in is in Hugging Face format")
        elif flag in _PARALLEL_FLAGS and value not in ("1", ""):
            differences.append(f"dropped {flag} {value}: one CPU process stands in for {value} GPUs")
        else:
            out.append(arg)
            i += 1
            continue
        i += width
    return CpuAdaptation(out, differences)
