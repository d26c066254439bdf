"""What the planner knows about GPUs and models without asking the network.

GPU totals are what CUDA reports (``cudaMemGetInfo``), because that is the number
vLLM multiplies ``--gpu-memory-utilization`` by. Measured on an H100 80GB HBM3
(docs/facts.md): NVML total 85,520,809,984 B, CUDA total 85,017,493,504 B -- CUDA
sees exactly 480 MiB less than NVML / nvidia-smi. The other cards use their
nvidia-smi total minus the same 480 MiB; the rule reproduces, to 1 MiB, the
``total_gpu_memory: 44.52 GiB`` vLLM logged on an L40S (vllm-project/vllm#14011).
A stack can always override with ``memory_gib``.

Model facts come from each model's public ``config.json``. Text parameter counts
are computed from the shapes (they reproduce the 14.770 B / 7.616 B / 8.03 B /
23.57 B that the H100 measurements report); vision towers are estimated from
their configs the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
    GpuType("H200", 143771, ("H200-141GB", "H200-SXM")),
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


@dataclass(frozen=True, kw_only=True)
class VisionTower:
    """The image encoder of a vision-language model (counted in weights and
    in the profiling peak, because vLLM profiles the encoder too)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    gated_mlp: bool
    # Patches merged into one LLM token (2x2 in Qwen2-VL-style mergers).
    spatial_merge: int = 2

    @property
    def params(self) -> int:
        mlp = (3 if self.gated_mlp else 2) * self.hidden_size * self.intermediate_size
        per_layer = 4 * self.hidden_size * self.hidden_size + mlp
        merged = self.spatial_merge**2 * self.hidden_size
        return self.num_layers * per_layer + merged * merged


@dataclass(frozen=True, kw_only=True)
class ModelArch:
    """Architecture facts the planner needs, in config.json terms."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    dtype: str = "bfloat16"
    vision: VisionTower | None = None
    # Set when the whole-model count is known better than the shapes give it.
    params_override: int | None = None
    trust_remote_code: bool = False
    # Flags the model's own card asks vLLM for (e.g. Mistral's native formats).
    recommended_args: tuple[str, ...] = ()
    # Family of the tiny stand-in model used when rehearsing on vLLM's CPU build.
    family: str = "llama"

    @property
    def embedding_params(self) -> int:
        copies = 1 if self.tie_word_embeddings else 2
        return copies * self.vocab_size * self.hidden_size

    @property
    def text_params(self) -> int:
        q_width = self.num_attention_heads * self.head_dim
        kv_width = self.num_kv_heads * self.head_dim
        attention = 2 * self.hidden_size * q_width + 2 * self.hidden_size * kv_width
        if self.qkv_bias:
            attention += q_width + 2 * kv_width
        mlp = 3 * self.hidden_size * self.intermediate_size
        norms = 2 * self.hidden_size
        return self.num_layers * (attention + mlp + norms) + self.hidden_size + self.embedding_params

    @property
    def params(self) -> int:
        if self.params_override is not None:
            return self.params_override
        return self.text_params + (self.vision.params if self.vision else 0)


@dataclass(frozen=True)
class CatalogModel:
    repo_id: str
    arch: ModelArch
    aliases: tuple[str, ...] = field(default=())


def _qwen25(h: int, i: int, layers: int, heads: int, kv: int, hd: int, vocab: int, tied: bool) -> ModelArch:
    return ModelArch(
        hidden_size=h,
        intermediate_size=i,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv,
        head_dim=hd,
        vocab_size=vocab,
        context_length=32768,
        tie_word_embeddings=tied,
        qkv_bias=True,
        family="qwen2",
    )


def _qwen3(h: int, i: int, layers: int, heads: int, kv: int, tied: bool) -> ModelArch:
    return ModelArch(
        hidden_size=h,
        intermediate_size=i,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv,
        head_dim=128,
        vocab_size=151936,
        context_length=40960,
        tie_word_embeddings=tied,
        family="qwen3",
    )


def _llama3(h: int, i: int, layers: int, heads: int, hd: int, tied: bool, ctx: int = 131072) -> ModelArch:
    return ModelArch(
        hidden_size=h,
        intermediate_size=i,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=8,
        head_dim=hd,
        vocab_size=128256,
        context_length=ctx,
        tie_word_embeddings=tied,
        family="llama",
    )


_GEMMA3_SIGLIP = VisionTower(hidden_size=1152, intermediate_size=4304, num_layers=27, gated_mlp=False, spatial_merge=1)
_PIXTRAL = VisionTower(hidden_size=1024, intermediate_size=4096, num_layers=24, gated_mlp=True)
_MISTRAL_NATIVE = ("--tokenizer-mode", "mistral", "--config-format", "mistral", "--load-format", "mistral")

MODELS: tuple[CatalogModel, ...] = (
    # Qwen2.5 (qkv bias, 32k context)
    CatalogModel("Qwen/Qwen2.5-0.5B-Instruct", _qwen25(896, 4864, 24, 14, 2, 64, 151936, True)),
    CatalogModel("Qwen/Qwen2.5-1.5B-Instruct", _qwen25(1536, 8960, 28, 12, 2, 128, 151936, True)),
    CatalogModel("Qwen/Qwen2.5-3B-Instruct", _qwen25(2048, 11008, 36, 16, 2, 128, 151936, True)),
    CatalogModel(
        "Qwen/Qwen2.5-7B-Instruct",
        _qwen25(3584, 18944, 28, 28, 4, 128, 152064, False),
        ("Qwen/Qwen2.5-Coder-7B-Instruct",),
    ),
    CatalogModel(
        "Qwen/Qwen2.5-14B-Instruct",
        _qwen25(5120, 13824, 48, 40, 8, 128, 152064, False),
        ("Qwen/Qwen2.5-Coder-14B-Instruct",),
    ),
    CatalogModel(
        "Qwen/Qwen2.5-32B-Instruct",
        _qwen25(5120, 27648, 64, 40, 8, 128, 152064, False),
        ("Qwen/Qwen2.5-Coder-32B-Instruct",),
    ),
    CatalogModel("Qwen/Qwen2.5-72B-Instruct", _qwen25(8192, 29568, 80, 64, 8, 128, 152064, False)),
    # Qwen3 dense (no qkv bias, 40k context)
    CatalogModel("Qwen/Qwen3-0.6B", _qwen3(1024, 3072, 28, 16, 8, True)),
    CatalogModel("Qwen/Qwen3-1.7B", _qwen3(2048, 6144, 28, 16, 8, True)),
    CatalogModel("Qwen/Qwen3-4B", _qwen3(2560, 9728, 36, 32, 8, True)),
    CatalogModel("Qwen/Qwen3-8B", _qwen3(4096, 12288, 36, 32, 8, False)),
    CatalogModel("Qwen/Qwen3-14B", _qwen3(5120, 17408, 40, 40, 8, False)),
    CatalogModel("Qwen/Qwen3-32B", _qwen3(5120, 25600, 64, 64, 8, False)),
    # Llama 3.x
    CatalogModel("meta-llama/Llama-3.2-1B-Instruct", _llama3(2048, 8192, 16, 32, 64, True)),
    CatalogModel("meta-llama/Llama-3.2-3B-Instruct", _llama3(3072, 8192, 28, 24, 128, True)),
    CatalogModel(
        "meta-llama/Llama-3.1-8B-Instruct",
        _llama3(4096, 14336, 32, 32, 128, False),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct",),
    ),
    CatalogModel("meta-llama/Meta-Llama-3-8B-Instruct", _llama3(4096, 14336, 32, 32, 128, False, 8192)),
    CatalogModel(
        "meta-llama/Llama-3.3-70B-Instruct",
        _llama3(8192, 28672, 80, 64, 128, False),
        ("meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Meta-Llama-3.1-70B-Instruct"),
    ),
    # Mistral
    CatalogModel(
        "mistralai/Mistral-7B-Instruct-v0.3",
        ModelArch(
            hidden_size=4096,
            intermediate_size=14336,
            num_layers=32,
            num_attention_heads=32,
            num_kv_heads=8,
            head_dim=128,
            vocab_size=32768,
            context_length=32768,
            family="mistral",
        ),
    ),
    CatalogModel(
        "mistralai/Mistral-Nemo-Instruct-2407",
        ModelArch(
            hidden_size=5120,
            intermediate_size=14336,
            num_layers=40,
            num_attention_heads=32,
            num_kv_heads=8,
            head_dim=128,
            vocab_size=131072,
            context_length=1024000,
            family="mistral",
        ),
    ),
    CatalogModel(
        "mistralai/Mistral-Small-24B-Instruct-2501",
        ModelArch(
            hidden_size=5120,
            intermediate_size=32768,
            num_layers=40,
            num_attention_heads=32,
            num_kv_heads=8,
            head_dim=128,
            vocab_size=131072,
            context_length=32768,
            family="mistral",
        ),
    ),
    CatalogModel(
        "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
        ModelArch(
            hidden_size=5120,
            intermediate_size=32768,
            num_layers=40,
            num_attention_heads=32,
            num_kv_heads=8,
            head_dim=128,
            vocab_size=131072,
            context_length=131072,
            vision=_PIXTRAL,
            recommended_args=_MISTRAL_NATIVE,
            family="mistral",
        ),
        ("mistralai/Mistral-Small-3.1-24B-Instruct-2503",),
    ),
    # Gemma (tied embeddings; sliding-window layers are planned as full attention,
    # which over-states their KV need -- the safe side)
    CatalogModel(
        "google/gemma-2-2b-it",
        ModelArch(
            hidden_size=2304,
            intermediate_size=9216,
            num_layers=26,
            num_attention_heads=8,
            num_kv_heads=4,
            head_dim=256,
            vocab_size=256000,
            context_length=8192,
            tie_word_embeddings=True,
            family="gemma2",
        ),
    ),
    CatalogModel(
        "google/gemma-2-9b-it",
        ModelArch(
            hidden_size=3584,
            intermediate_size=14336,
            num_layers=42,
            num_attention_heads=16,
            num_kv_heads=8,
            head_dim=256,
            vocab_size=256000,
            context_length=8192,
            tie_word_embeddings=True,
            family="gemma2",
        ),
    ),
    CatalogModel(
        "google/gemma-2-27b-it",
        ModelArch(
            hidden_size=4608,
            intermediate_size=36864,
            num_layers=46,
            num_attention_heads=32,
            num_kv_heads=16,
            head_dim=128,
            vocab_size=256000,
            context_length=8192,
            tie_word_embeddings=True,
            family="gemma2",
        ),
    ),
    CatalogModel(
        "google/gemma-3-1b-it",
        ModelArch(
            hidden_size=1152,
            intermediate_size=6912,
            num_layers=26,
            num_attention_heads=4,
            num_kv_heads=1,
            head_dim=256,
            vocab_size=262144,
            context_length=32768,
            tie_word_embeddings=True,
            family="gemma3",
        ),
    ),
    CatalogModel(
        "google/gemma-3-4b-it",
        ModelArch(
            hidden_size=2560,
            intermediate_size=10240,
            num_layers=34,
            num_attention_heads=8,
            num_kv_heads=4,
            head_dim=256,
            vocab_size=262208,
            context_length=131072,
            tie_word_embeddings=True,
            vision=_GEMMA3_SIGLIP,
            family="gemma3",
        ),
    ),
    CatalogModel(
        "google/gemma-3-12b-it",
        ModelArch(
            hidden_size=3840,
            intermediate_size=15360,
            num_layers=48,
            num_attention_heads=16,
            num_kv_heads=8,
            head_dim=256,
            vocab_size=262208,
            context_length=131072,
            tie_word_embeddings=True,
            vision=_GEMMA3_SIGLIP,
            family="gemma3",
        ),
    ),
    CatalogModel(
        "google/gemma-3-27b-it",
        ModelArch(
            hidden_size=5376,
            intermediate_size=21504,
            num_layers=62,
            num_attention_heads=32,
            num_kv_heads=16,
            head_dim=128,
            vocab_size=262208,
            context_length=131072,
            tie_word_embeddings=True,
            vision=_GEMMA3_SIGLIP,
            family="gemma3",
        ),
    ),
    # Document OCR vision-language models
    CatalogModel(
        "PaddlePaddle/PaddleOCR-VL",
        ModelArch(
            hidden_size=1024,
            intermediate_size=3072,
            num_layers=18,
            num_attention_heads=16,
            num_kv_heads=2,
            head_dim=128,
            vocab_size=103424,
            context_length=131072,
            tie_word_embeddings=True,
            vision=VisionTower(hidden_size=1152, intermediate_size=4304, num_layers=27, gated_mlp=False),
            params_override=900_000_000,
            trust_remote_code=True,
            family="llama",
        ),
    ),
    CatalogModel(
        "rednote-hilab/dots.ocr",
        ModelArch(
            hidden_size=1536,
            intermediate_size=8960,
            num_layers=28,
            num_attention_heads=12,
            num_kv_heads=2,
            head_dim=128,
            vocab_size=151936,
            context_length=131072,
            tie_word_embeddings=False,
            qkv_bias=True,
            vision=VisionTower(hidden_size=1536, intermediate_size=4224, num_layers=42, gated_mlp=True),
            trust_remote_code=True,
            family="qwen2",
        ),
    ),
)

_MODEL_INDEX = {key.lower(): m for m in MODELS for key in (m.repo_id, *m.aliases)}

# Suffixes of pre-quantized checkpoints and the vLLM quantization they imply.
_QUANTIZED_SUFFIXES = (
    (re.compile(r"-AWQ$", re.I), "awq"),
    (re.compile(r"-GPTQ(-Int4)?$", re.I), "gptq"),
    (re.compile(r"-FP8(-Dynamic)?$", re.I), "fp8"),
)


def find_model(model_id: str) -> tuple[CatalogModel, str | None] | None:
    """Catalog entry for an HF repo id, case-insensitive, and the quantization a
    pre-quantized checkpoint name implies (``Qwen/Qwen2.5-14B-Instruct-AWQ``)."""
    key = model_id.strip().lower()
    if key in _MODEL_INDEX:
        return _MODEL_INDEX[key], None
    for pattern, quantization in _QUANTIZED_SUFFIXES:
        base = pattern.sub("", model_id.strip())
        if base != model_id.strip() and base.lower() in _MODEL_INDEX:
            return _MODEL_INDEX[base.lower()], quantization
    return None
