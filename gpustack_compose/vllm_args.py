"""The ``vllm serve`` argument list of a model: computed here and only here.

The compose render, the rehearsal overrides and (later) other targets all take
their arguments from ``serve_args`` so that what is rehearsed is what runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpustack_compose.units import fmt_fraction

if TYPE_CHECKING:
    from gpustack_compose.planner import ModelPlan
    from gpustack_compose.spec import ModelSpec

# The port every model server listens on inside the compose network.
MODEL_PORT = 8000
ADAPTER_ROOT = "/adapters"

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


def adapter_mounts(spec: ModelSpec) -> list[AdapterMount]:
    return [AdapterMount(lora.name, lora.path, f"{ADAPTER_ROOT}/{lora.name}") for lora in spec.loras]


def serve_args(spec: ModelSpec, plan: ModelPlan) -> list[str]:
    """Arguments after ``vllm serve`` (the official image's entrypoint)."""
    args = [
        spec.model,
        "--served-model-name", spec.name,
        "--host", "0.0.0.0",
        "--port", str(MODEL_PORT),
        "--gpu-memory-utilization", fmt_fraction(plan.fraction),
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
    if spec.loras:
        modules = [
            json.dumps(
                {"name": m.name, "path": m.container_path, "base_model_name": spec.name},
                separators=(",", ":"),
            )
            for m in adapter_mounts(spec)
        ]
        args += [
            "--enable-lora",
            "--max-loras", str(plan.max_loras),
            "--max-lora-rank", str(plan.max_lora_rank),
            "--max-cpu-loras", str(plan.max_cpu_loras),
            "--lora-modules", *modules,
        ]  # fmt: skip
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
