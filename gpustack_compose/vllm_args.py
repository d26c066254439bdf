"""The ``vllm serve`` argument list of a model: computed here and only here.

The render layer: it needs the plan. The compose render, the Kubernetes base
and the rehearsal overrides all take their arguments from ``serve_args`` so
that what is rehearsed is what runs. What the spec needs to know about flags
(managed ones, spellings, each release's inventory) is below it, in
``vllm_flags``.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath

from gpustack_compose import vllm_flags as flags
from gpustack_compose.contract import (
    ADAPTER_ROOT,
    MODEL_MOUNT_ROOT,
    MODEL_PORT,
    RUNTIME_ADAPTERS,
    RUNTIME_LORA_ENV,
    SLEEP_ENDPOINTS_ENV,
)
from gpustack_compose.planner import ModelPlan
from gpustack_compose.spec import LoraSpec, ModelSpec, model_directory
from gpustack_compose.units import fmt_fraction
from gpustack_compose.vllm_flags import flag_name


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
    allow, resolver_dir = RUNTIME_LORA_ENV
    return {allow: "True", resolver_dir: RUNTIME_ADAPTERS}


def sleep_env(plan: ModelPlan) -> dict[str, str]:
    """A swappable server's sleep endpoints exist only in vLLM's dev mode."""
    return {SLEEP_ENDPOINTS_ENV: "1"} if plan.swappable else {}


def model_mount(spec: ModelSpec) -> str | None:
    """Where a model directory of the host is mounted in its container."""
    return f"{MODEL_MOUNT_ROOT}/{spec.name}" if model_directory(spec.model) is not None else None


def serve_args(spec: ModelSpec, plan: ModelPlan) -> list[str]:
    """Arguments after ``vllm serve`` (the official image's entrypoint)."""
    args = [
        model_mount(spec) or spec.model,
        *([flags.REVISION, plan.revision] if plan.revision else []),
        flags.SERVED_MODEL_NAME, spec.name,
        flags.HOST, "0.0.0.0",
        flags.PORT, str(MODEL_PORT),
        flags.GPU_MEMORY_UTILIZATION, fmt_fraction(plan.fraction),
        *([flags.KV_CACHE_MEMORY_BYTES, str(plan.kv_bytes)] if plan.exact_kv else []),
        # vLLM applies both per card: the fraction of each card, and the KV
        # bytes of each worker (its shard of the KV heads).
        *([flags.TENSOR_PARALLEL_SIZE, str(plan.tensor_parallel)] if plan.tensor_parallel > 1 else []),
        flags.MAX_MODEL_LEN, str(plan.max_model_len),
        flags.MAX_NUM_SEQS, str(plan.max_num_seqs),
        flags.MAX_NUM_BATCHED_TOKENS, str(plan.max_num_batched_tokens),
    ]  # fmt: skip
    if spec.dtype != "auto":
        args += [flags.DTYPE, spec.dtype]
    if spec.quantization is not None:
        args += [flags.QUANTIZATION, spec.quantization]
    if spec.kv_cache_dtype != "auto":
        args += [flags.KV_CACHE_DTYPE, spec.kv_cache_dtype]
    if spec.enforce_eager:
        args.append(flags.ENFORCE_EAGER)
    if plan.trust_remote_code:
        args.append(flags.TRUST_REMOTE_CODE)
    if plan.swappable:
        args.append(flags.ENABLE_SLEEP_MODE)
    if spec.serves_loras:
        args += [
            flags.ENABLE_LORA,
            flags.MAX_LORAS, str(plan.max_loras),
            flags.MAX_LORA_RANK, str(plan.max_lora_rank),
            flags.MAX_CPU_LORAS, str(plan.max_cpu_loras),
        ]  # fmt: skip
    if spec.loras:
        modules = [
            json.dumps(
                {"name": lora.name, "path": adapter_location(spec, lora), "base_model_name": spec.name},
                separators=(",", ":"),
            )
            for lora in spec.loras
        ]
        args += [flags.LORA_MODULES, *modules]
    overridden = {flag_name(a) for a in spec.extra_args} - {None}
    recommended = list(plan.recommended_args)
    for i in range(0, len(recommended), 2):
        if recommended[i] not in overridden:
            args += recommended[i : i + 2]
    return args + list(spec.extra_args)


# Families of tiny stand-in models in the vLLM CPU rehearsal image
# (images/vllm-cpu/tiny.py); other families are stood in for by llama.
TINY_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
_NATIVE_FORMAT_FLAGS = (flags.TOKENIZER_MODE, flags.CONFIG_FORMAT, flags.LOAD_FORMAT)


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
        spelled = flag_name(arg)
        # compared by the long name, whichever spelling the list uses (-q, -tp, a prefix)
        flag = next(iter(flags.readings(spelled)), spelled) if spelled is not None else None
        inline = "=" in arg
        value = arg.split("=", 1)[1] if inline else (args[i + 1] if i + 1 < len(args) else "")
        width = 1 if inline else 2
        if flag == flags.QUANTIZATION:
            differences.append(f"dropped {spelled} {value}: the tiny stand-in checkpoint is not quantized")
        elif flag == flags.KV_CACHE_DTYPE and value.startswith("fp8") and not fp8_kv_ok:
            differences.append(
                f"dropped {spelled} {value}: vLLM's CPU backend needs AVX-512 or AMX for an FP8 KV cache, "
                "and this engine's CPU has neither"
            )
        elif flag == flags.REVISION:
            differences.append(f"dropped {spelled} {value}: the tiny stand-in has one local snapshot")
        elif flag in _NATIVE_FORMAT_FLAGS and value == "mistral":
            differences.append(f"dropped {spelled} {value}: the tiny stand-in is in Hugging Face format")
        elif flag in (flags.TENSOR_PARALLEL_SIZE, flags.PIPELINE_PARALLEL_SIZE) and value not in ("1", ""):
            differences.append(f"dropped {spelled} {value}: one CPU process stands in for {value} GPUs")
        else:
            out.append(arg)
            i += 1
            continue
        i += width
    return CpuAdaptation(out, differences)
