"""What the planner knows about GPUs and models without asking the network.

GPU totals are what CUDA reports (``cudaMemGetInfo``), because that is the number
vLLM multiplies ``--gpu-memory-utilization`` by. Measured on an H100 80GB HBM3
(docs/facts.md): NVML total 85,520,809,984 B, CUDA total 85,017,493,504 B -- CUDA
sees exactly 480 MiB less than NVML / nvidia-smi. The other cards use their
nvidia-smi total minus the same 480 MiB; the rule reproduces, to 1 MiB, the
``total_gpu_memory: 44.52 GiB`` vLLM logged on an L40S (vllm-project/vllm#14011).
A stack can always override with ``memory_gib``.

Models are records in ``data/models/catalog.yaml`` (the lock file's format,
``model_facts.record.ModelEntry``): each model's public ``config.json`` facts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from gpustack_compose.model_facts.record import ModelEntry
from gpustack_compose.units import MiB

# nvidia-smi total minus this is what CUDA reports as total (H100 measurement).
CUDA_HIDDEN_BYTES = 480 * MiB


@dataclass(frozen=True)
class GpuType:
    name: str
    nvml_total_mib: int
    aliases: tuple[str, ...] = ()
    measured_cuda_total_bytes: int | None = None

    @property
    def cuda_total_bytes(self) -> int:
        if self.measured_cuda_total_bytes is not None:
            return self.measured_cuda_total_bytes
        return self.nvml_total_mib * MiB - CUDA_HIDDEN_BYTES


GPU_TYPES: tuple[GpuType, ...] = (
    GpuType("H100-80GB", 81559, ("H100", "H100-SXM", "H100-PCIE", "H100-SXM5-80GB"), 85_017_493_504),
    GpuType("H100-NVL", 95830, ("H100-NVL-94GB",)),
    # CUDA's total on the H200 is nvidia-smi's total minus its "Reserved" 616 MiB, not 480:
    # torch.cuda.mem_get_info()[1] = 150,109,880,320 B (docs/h200-vllm-0.26.0.md).
    GpuType("H200", 143771, ("H200-141GB", "H200-SXM"), 150_109_880_320),
    GpuType("A100-40GB", 40960, ("A100-SXM4-40GB", "A100-PCIE-40GB")),
    GpuType("A100-80GB", 81920, ("A100", "A100-SXM4-80GB", "A100-PCIE-80GB")),
    GpuType("L40S", 46068),
    GpuType("L40", 46068),
    GpuType("L4", 23034),
    GpuType("A10", 23028, ("A10G",)),
    GpuType("RTX-4090", 24564, ("RTX4090", "GEFORCE-RTX-4090")),
    GpuType("RTX-6000-Ada", 49140, ("RTX-6000-ADA-GENERATION",)),
    GpuType("RTX-A6000", 49140, ("A6000",)),
    GpuType(
        "RTX-PRO-6000",
        97887,
        ("RTX-PRO-6000-96GB", "RTX-PRO-6000-BLACKWELL", "RTX-PRO-6000-BLACKWELL-96GB"),
    ),
)


def _normalise(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip()).upper()


_GPU_INDEX = {_normalise(key): gpu for gpu in GPU_TYPES for key in (gpu.name, *gpu.aliases)}


def find_gpu(name: str) -> GpuType | None:
    """Catalog entry for a GPU type name, case-insensitive (``h100-80gb``)."""
    return _GPU_INDEX.get(_normalise(name))


def gpu_names() -> list[str]:
    return [gpu.name for gpu in GPU_TYPES]


CATALOG_FILE = Path(__file__).parent / "data" / "models" / "catalog.yaml"


@functools.cache
def models() -> tuple[ModelEntry, ...]:
    """The catalog's records (data/models/catalog.yaml), in its order."""
    loaded = yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8"))
    return tuple(ModelEntry.model_validate(item) for item in loaded)


@functools.cache
def _model_index() -> dict[str, ModelEntry]:
    return {key.lower(): m for m in models() for key in (m.model, *m.aliases)}


# Suffixes of pre-quantized checkpoints and the vLLM quantization they imply.
_QUANTIZED_SUFFIXES = (
    (re.compile(r"-AWQ$", re.I), "awq"),
    (re.compile(r"-GPTQ(-Int4)?$", re.I), "gptq"),
    (re.compile(r"-FP8(-Dynamic)?$", re.I), "fp8"),
)


def find_model(model_id: str) -> tuple[ModelEntry, str | None] | None:
    """Catalog entry for an HF repo id, case-insensitive, and the quantization a
    pre-quantized checkpoint name implies (``Qwen/Qwen2.5-14B-Instruct-AWQ``)."""
    index = _model_index()
    key = model_id.strip().lower()
    if key in index:
        return index[key], None
    for pattern, quantization in _QUANTIZED_SUFFIXES:
        base = pattern.sub("", model_id.strip())
        if base != model_id.strip() and base.lower() in index:
            return index[base.lower()], quantization
    return None
