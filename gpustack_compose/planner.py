"""Spec -> Plan: the VRAM split of every GPU, checked before anything starts.

Pure: no I/O, no Docker, no clock. All memory is integer bytes; the constants and
their sources are in ``calibration``. The checks, in the order a user meets them:

1. the fractions of a GPU plus its reserve must not exceed the card;
2. each model's KV cache must hold one ``max_model_len`` sequence (vLLM's
   "To serve at least one request with the model's max seq len" error);
3. vLLM's startup check: when model k starts, the memory still free on its GPU
   must cover ``ceil(fraction_k x total)`` ("Free memory on device ... is less
   than desired GPU memory utilization");
4. under load, every server's share plus what sits outside it (CUDA context,
   cuBLAS, CUDA graphs) must fit the card.

Models without ``gpu:`` are placed first (see ``placement``); a model on
several GPUs is tensor parallel, planned per card with its shard of the weights
and KV heads, the same fraction on each card.

Swappable models (``sleep:``) may together ask for more than the card: only
``awake_max`` of them are awake at once, the others hold ``SLEEP_RESIDUE``
each. Checks 1 and 4 then hold for every awake set the policy allows (the
heaviest one decides), and check 3 follows the chain as it boots: a swappable
server boots, takes its first sleep, and holds only its residue when the next
one starts. Level-1 sleepers' pinned host memory must fit ``swap.host_memory``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from gpustack_compose import calibration as cal
from gpustack_compose import versions
from gpustack_compose.catalog import find_gpu, find_model
from gpustack_compose.contract import service_name
from gpustack_compose.errors import PlanError
from gpustack_compose.model_facts import architectures
from gpustack_compose.model_facts import params as shapes
from gpustack_compose.model_facts.record import ModelEntry, ModelFacts, revision_drift
from gpustack_compose.placement import Card, Demand, place
from gpustack_compose.spec import BootMode, GpuSpec, MemoryMode, ModelSpec, StackSpec, gpu_path, model_gpus
from gpustack_compose.units import GiB, ceil_to, floor_to, fmt_fraction, fmt_gib, gib

_T = TypeVar("_T")

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
KV_DTYPE_BYTES = {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
# Bits per quantized weight, with group scales: 4-bit formats keep a 16-bit
# scale and a 4-bit zero per group of 128 -> 4 + 20/128 bits. compressed-tensors
# checkpoints are mostly W8A8 / FP8: planned as 8-bit, the safe side for W4.
QUANTIZED_WEIGHT_BITS = {
    "fp8": 8.0,
    "compressed-tensors": 8.0,
    "awq": 4 + 20 / 128,
    "gptq": 4 + 20 / 128,
    "bitsandbytes": 4 + 20 / 128,
}


# Where a model's fraction came from: the stack's fraction or size, the
# planner's auto split, or the elastic pool's cap.
FractionSource = Literal["fraction", "size", "auto", "elastic"]


@dataclass(frozen=True)
class ModelPlan:
    """Everything decided about one model server."""

    name: str
    service: str
    stack_index: int
    gpu: int  # the card this plan describes (its first card, in Plan.models)
    gpus: tuple[int, ...]  # every card it runs on: tensor parallel when more than one
    placed: bool  # chosen by the planner (no gpu: in the stack file)
    boot_position: int  # on this card's chain
    after: tuple[str, ...]  # services it waits for: its predecessor on each of its cards
    fraction: float
    fraction_source: FractionSource
    share_bytes: int  # ceil(fraction x total): what vLLM requests
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    lora_bytes: int
    kv_bytes: int
    kv_bytes_per_token: int
    kv_tokens: int
    max_model_len: int
    max_num_seqs: int
    max_num_seqs_default: bool
    max_num_batched_tokens: int
    min_fraction: float  # holds max_num_seqs full-length sequences
    free_at_start_bytes: int  # what vLLM's startup check will see
    resident_bytes: int  # after boot, idle
    peak_bytes: int  # under load: share + what sits outside it
    boot_timeout_s: int
    max_loras: int
    max_lora_rank: int
    max_cpu_loras: int
    exact_kv: bool  # render --kv-cache-memory-bytes kv_bytes
    kv_note: str | None  # why not exact, or what was assumed
    quantization: str | None
    trust_remote_code: bool
    recommended_args: tuple[str, ...]
    family: str
    params: int
    notes: tuple[str, ...] = ()
    # Where the facts and the weights figure came from, and how they were
    # counted (PLAN.md's model table).
    architecture: str = ""
    facts_source: str = "catalog"
    revision: str | None = None  # the Hub commit vLLM loads (--revision)
    weights_source: str = "computed"
    facts_notes: tuple[str, ...] = ()
    # Elastic GPUs (kvcached): kv_bytes is the guaranteed KV (kv_min); the
    # model may borrow up to kv_max_bytes from the GPU's shared pool.
    elastic: bool = False
    kv_max_bytes: int = 0
    # Swappable (sleep:): vLLM sleep mode, woken by the stack's coordinator.
    # resident_bytes and peak_bytes are its awake figures; asleep it holds
    # sleep_residue_bytes; level 1 pins pinned_host_bytes of host RAM.
    sleep_level: int | None = None
    idle_s: int = 0
    sleep_residue_bytes: int = 0
    pinned_host_bytes: int = 0
    first_sleep_timeout_s: int = 0

    @property
    def non_kv_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes + self.non_torch_bytes + self.lora_bytes

    @property
    def swappable(self) -> bool:
        return self.sleep_level is not None

    @property
    def wake_bytes(self) -> int:
        """Free memory the card must have before this model may wake: its
        awake figure minus what it holds asleep."""
        return self.resident_bytes - self.sleep_residue_bytes

    @property
    def tensor_parallel(self) -> int:
        return len(self.gpus)

    @property
    def gpu_label(self) -> str:
        """``0``, or ``0,1`` for a model tensor parallel over two cards (the
        value of the gpustack-compose.gpu label)."""
        return ",".join(str(i) for i in self.gpus)

    @property
    def outside_share_bytes(self) -> int:
        return self.peak_bytes - self.share_bytes

    @property
    def max_concurrency(self) -> float:
        """Full-length sequences the KV cache holds: vLLM's "Maximum concurrency"."""
        return self.kv_tokens / self.max_model_len


@dataclass(frozen=True)
class GpuPlan:
    index: int
    label: str
    total_bytes: int
    reserve_bytes: int
    models: tuple[ModelPlan, ...]  # in boot order
    boot: BootMode = "sequential"
    memory_mode: MemoryMode = "static"
    pool_bytes: int = 0  # elastic: KV memory the models share (after weights and overheads)
    awake_max: int = 1  # swappable models awake at once

    @property
    def residents(self) -> tuple[ModelPlan, ...]:
        return tuple(m for m in self.models if not m.swappable)

    @property
    def swappables(self) -> tuple[ModelPlan, ...]:
        return tuple(m for m in self.models if m.swappable)

    @property
    def awake_sets(self) -> tuple[tuple[str, ...], ...]:
        """Every largest set of swappable models the policy lets be awake at
        once (smaller sets hold less), in chain order."""
        names = [m.name for m in self.swappables]
        return tuple(itertools.combinations(names, min(self.awake_max, len(names)))) if names else ()

    def set_peak_bytes(self, awake: Sequence[str]) -> int:
        """The card under load with ``awake`` swappable models up and the others asleep."""
        return self.reserve_bytes + sum(
            m.peak_bytes if not m.swappable or m.name in awake else m.sleep_residue_bytes for m in self.models
        )

    @property
    def worst_awake_set(self) -> tuple[str, ...]:
        return max(self.awake_sets, key=self.set_peak_bytes, default=())

    @property
    def guaranteed_kv_bytes(self) -> int:
        return sum(m.kv_bytes for m in self.models) if self.memory_mode == "elastic" else 0

    @property
    def kvcached_gpu_utilization(self) -> float:
        """KVCACHED_GPU_UTILIZATION: kvcached maps KV pages only while the
        device's used memory stays below this fraction of it (default 0.95,
        kvcached's kv_cache_manager) -- here, everything but the reserve."""
        return floor_to((self.total_bytes - self.reserve_bytes) / self.total_bytes, 0.001)

    @property
    def fraction_sum(self) -> float:
        return sum(m.fraction for m in self.models)

    @property
    def chain(self) -> tuple[str, ...]:
        """Model names in boot order on this card."""
        return tuple(m.name for m in self.models)

    @property
    def peak_bytes(self) -> int:
        """Under load; with swappable models, the heaviest awake set's."""
        return self.set_peak_bytes(self.worst_awake_set)

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.peak_bytes


@dataclass(frozen=True)
class Plan:
    name: str
    gpus: tuple[GpuPlan, ...]
    models: tuple[ModelPlan, ...] = field(default=())  # in stack order
    # Checks that failed, when planned with enforce=False (rehearsal's
    # test-only escape hatch); always empty otherwise.
    violations: tuple[str, ...] = ()
    host_memory_bytes: int | None = None  # swap.host_memory: what level-1 sleepers may pin

    @property
    def swappables(self) -> tuple[ModelPlan, ...]:
        return tuple(m for m in self.models if m.swappable)

    @property
    def pinned_host_bytes(self) -> int:
        return sum(m.pinned_host_bytes for m in self.models)

    def model(self, name: str) -> ModelPlan:
        return next(m for m in self.models if m.name == name)

    def by_service(self, service: str) -> ModelPlan:
        return next(m for m in self.models if m.service == service)

    def gpu(self, index: int) -> GpuPlan:
        return next(g for g in self.gpus if g.index == index)

    def boot_ordered(self) -> tuple[ModelPlan, ...]:
        """Every model once, GPU by GPU in chain order; a tensor-parallel model
        where it first appears."""
        seen: dict[str, ModelPlan] = {}
        for gpu in self.gpus:
            for m in gpu.models:
                seen.setdefault(m.name, self.model(m.name))
        return tuple(seen.values())


@dataclass(frozen=True)
class _Need:
    """A model's memory needs before its fraction is known."""

    spec: ModelSpec
    stack_index: int
    arch: ModelFacts
    facts_source: str
    revision: str | None
    weights_source: str
    facts_notes: tuple[str, ...]
    quantization: str | None
    tensor_parallel: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    weights_bytes: int
    activation_bytes: int
    lora_bytes: int
    kv_bytes_per_token: int
    outside_share_bytes: int
    max_loras: int
    max_cpu_loras: int
    exact_kv: bool
    kv_note: str | None

    @property
    def non_torch_bytes(self) -> int:
        return cal.NON_TORCH_INCREASE + (cal.TENSOR_PARALLEL_NON_TORCH if self.tensor_parallel > 1 else 0)

    @property
    def non_kv_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes + self.non_torch_bytes + self.lora_bytes

    @property
    def block_bytes(self) -> int:
        """One KV cache block (cal.KV_BLOCK_TOKENS tokens)."""
        return cal.KV_BLOCK_TOKENS * self.kv_bytes_per_token

    def kv_bytes_for(self, tokens: int) -> int:
        return math.ceil(tokens / cal.KV_BLOCK_TOKENS) * self.block_bytes

    @property
    def floor_bytes(self) -> int:
        """Smallest share vLLM accepts: one max_model_len sequence of KV."""
        return self.non_kv_bytes + self.kv_bytes_for(self.max_model_len)

    @property
    def target_bytes(self) -> int:
        """Share that holds max_num_seqs full-length sequences."""
        return self.non_kv_bytes + self.kv_bytes_for(self.max_model_len * self.max_num_seqs)


def model_label(need: _Need) -> str:
    """How a refusal names the model after its path (``models[3]: 'qwen-7b' ...``)."""
    return repr(need.spec.name)


def model_path(need: _Need, *field: str) -> tuple[str | int, ...]:
    return ("models", need.stack_index, *field)


# Where a model's facts came from, as PLAN.md names it.
FACTS_SOURCES = {
    "hub": "the Hub (lock)",
    "directory": "its directory (lock)",
    "hf-cache": "the Hugging Face cache (lock)",
    "catalog": "the built-in catalog",
}


def facts_of(model: ModelSpec, locked: Mapping[str, ModelEntry]) -> tuple[ModelFacts, str, str | None, str | None]:
    """A model's facts, where they came from, the quantization its name
    implies and the Hub commit to serve: the stack's arch: block, else its
    lock entry, else the catalog."""
    if model.arch is not None:
        return model.arch, "the stack's arch: block", None, model.revision
    entry = locked.get(model.model)
    if entry is not None:
        if revision_drift(entry, model):
            raise PlanError(
                f"the lock file was written for revision {entry.ref or 'main'!r}, the stack asks for "
                f"{model.revision or 'main'!r}",
                path=("models", -1, "revision"),
                hint="run `python -m gpustack_compose lock` on the stack file again",
            )
        pinned = entry.revision if entry.pins_commit else model.revision
        return entry.facts, FACTS_SOURCES[entry.source], None, pinned
    found = find_model(model.model)
    if found is None:
        raise PlanError(
            f"{model.model!r} is neither in the model catalog nor in the stack's lock file",
            path=("models", -1, "model"),
            hint="run `python -m gpustack_compose lock` on the stack file (it reads config.json and the safetensors "
            "headers from the directory, the Hugging Face cache or the Hub), or describe the model in an arch: block",
        )
    entry, implied_quantization = found
    return entry.facts, FACTS_SOURCES["catalog"], implied_quantization, model.revision


def weights_bytes(arch: ModelFacts, dtype_bytes: int, quantization: str | None, tensor_parallel: int = 1) -> int:
    """Weights as vLLM's "Model loading took" reports them, per card.

    The checkpoint's own safetensors bytes when the lock has them (unless
    the stack asks for a wider dtype than the checkpoint's); else from the
    shapes: quantized layers at their bits per weight, embeddings, LM head and
    vision tower in 16 bits (model_facts.params). Tensor parallelism shards
    every linear layer, the vocabulary embedding and the LM head (vLLM's
    Column/RowParallelLinear, VocabParallelEmbedding), so a card holds 1/tp of
    them; norms are replicated but negligible."""
    full = _checkpoint_bytes(arch, dtype_bytes, quantization)
    return math.ceil(full / tensor_parallel) + cal.WEIGHTS_LOAD_OVERHEAD


def _stored_bytes(arch: ModelFacts, dtype_bytes: int) -> int | None:
    """The safetensors bytes when they are what vLLM loads: a quantized
    checkpoint, or one served no wider than 16 bits."""
    stored = arch.weights
    if stored is not None and stored.bytes and (arch.quantization is not None or dtype_bytes <= 2):
        return stored.bytes
    return None


def _checkpoint_bytes(arch: ModelFacts, dtype_bytes: int, quantization: str | None) -> int:
    stored = _stored_bytes(arch, dtype_bytes)
    if stored is not None:
        return stored
    if arch.quantization is not None:
        q = arch.quantization
        return shapes.computed_weights_bytes(arch, dtype_bytes, q.bits, q.scope)
    if quantization is not None:
        return shapes.computed_weights_bytes(arch, dtype_bytes, QUANTIZED_WEIGHT_BITS[quantization], "linear")
    return shapes.total_params(arch) * dtype_bytes


def weights_source(arch: ModelFacts, dtype_bytes: int) -> str:
    stored = arch.weights
    if stored is not None and _stored_bytes(arch, dtype_bytes) is not None:
        return f"safetensors headers ({stored.files} file{'s' if stored.files != 1 else ''}, exact)"
    if arch.quantization is not None:
        return f"computed: {arch.quantization.method} at {arch.quantization.bits:.3g} bits per weight"
    return "computed from the shapes"


def facts_notes(arch: ModelFacts, runner: str) -> tuple[str, ...]:
    """How the planner counted what it does not model exactly."""
    notes = []
    if arch.sliding_layers:
        notes.append(
            f"{arch.sliding_layers} of {arch.num_layers} layers attend over a {arch.sliding_window}-token sliding "
            "window: planned as full attention (vLLM gives them less KV cache, so the plan errs on the safe side)"
        )
    if arch.mla is not None:
        notes.append(
            f"multi-head latent attention: KV per token and layer is kv_lora_rank {arch.mla.kv_lora_rank} + "
            f"qk_rope_head_dim {arch.mla.qk_rope_head_dim}, one latent replicated on every card"
        )
    if arch.moe is not None:
        m = arch.moe
        notes.append(
            f"mixture of experts: {m.num_experts} experts of width {m.expert_intermediate_size}, "
            f"{m.experts_per_token} per token"
            + (f", {m.dense_layers} dense layers" if m.dense_layers else "")
            + (f", shared width {m.shared_intermediate_size}" if m.shared_intermediate_size else "")
        )
    if runner == "pooling":
        notes.append("a pooling model (embeddings or scores): no sampler; its KV cache is planned as a decoder's")
    return tuple(notes)


def activation_peak(
    arch: ModelFacts,
    tokens: int,
    max_num_seqs: int,
    act_bytes: int,
    eager: bool,
    tensor_parallel: int = 1,
    sampler_rows: int | None = None,
) -> int:
    """Peak of vLLM's profiling run, the memory it keeps out of the KV cache.

    A forward pass of ``tokens`` tokens holds, per token, the MLP's gate+up
    output (2 x intermediate), the activation output (intermediate) and about
    four hidden-size buffers (residual, norm, attention in/out): (3I + 4H) x
    dtype bytes. Vision models also profile their encoder, on merge^2 patches per
    LLM token. The sampler's dummy run adds float32 logits for max_num_seqs
    sequences. See calibration.COLD_COMPILE_EXTRA for the cold-boot term.

    Under tensor parallelism each card computes 1/tp of the MLP; the hidden
    size buffers and the gathered logits are full size on every card. A
    mixture-of-experts layer holds, per token and chosen expert, the fused
    gate+up output, the activation and the expert's output (vLLM's fused_moe
    intermediate caches): experts_per_token x (3 x expert width + H).
    """
    mlp = math.ceil(3 * arch.intermediate_size / tensor_parallel)
    text = tokens * (mlp + 4 * arch.hidden_size) * act_bytes
    if arch.moe is not None:
        m = arch.moe
        routed = m.experts_per_token * (math.ceil(3 * m.expert_intermediate_size / tensor_parallel) + arch.hidden_size)
        text = max(text, tokens * (routed + 4 * arch.hidden_size) * act_bytes)
    vision = 0
    if arch.vision is not None:
        v = arch.vision
        patches = tokens * v.spatial_merge**2
        vision = patches * (math.ceil(3 * v.intermediate_size / tensor_parallel) + 4 * v.hidden_size) * act_bytes
    rows = max_num_seqs if sampler_rows is None else sampler_rows
    sampler = rows * arch.vocab_size * cal.SAMPLER_LOGIT_BYTES
    cold = 0 if eager else cal.COLD_COMPILE_EXTRA
    return max(text, vision) + sampler + cold


def lora_slot_bytes(arch: ModelFacts, max_loras: int, max_rank: int, dtype_bytes: int, tensor_parallel: int = 1) -> int:
    """GPU memory vLLM preallocates for LoRA slots when the server starts.

    Every wrapped linear layer holds A (rank x in) and B (out x rank) for each of
    max_loras slots at max_lora_rank, in the model dtype (vLLM
    ``lora/layers``: ``create_lora_weights``), whatever the adapters' own
    ranks. Per decoder layer the wrapped projections are q, k, v, o, gate, up
    and down, so the in+out sum is 7H + 2q + 2kv + 3I.

    Under tensor parallelism the A matrices of column-parallel layers (q, k, v,
    gate, up: 5H) and the B matrices of row-parallel ones (o, down: 2H) are
    whole on every card; the rest (2q + 2kv + 3I) is sharded.

    vLLM also wraps the token embedding (A: vocab x rank, B: H x rank) and the
    LM head (A: rank x H, B: vocab x rank), whole on every card (docs/facts.md,
    "vLLM"): on the H200 Llama-3.1-8B with 4 slots of rank 16 took 0.36 +- 0.01
    GiB, 0.344 planned (docs/h200-truth-2026-12-02.md).
    """
    q = arch.num_attention_heads * arch.head_dim
    kv = arch.num_kv_heads * arch.head_dim
    h, i = arch.hidden_size, arch.intermediate_size
    per_layer = 7 * h + math.ceil((2 * q + 2 * kv + 3 * i) / tensor_parallel)
    vocabulary = 2 * (arch.vocab_size + h) if arch.vocab_size else 0
    return (arch.num_layers * per_layer + vocabulary) * max_loras * max_rank * dtype_bytes


def kv_bytes_per_token(arch: ModelFacts, model_dtype_bytes: int, kv_cache_dtype: str, tensor_parallel: int = 1) -> int:
    """2 (K and V) x layers x KV heads x head dim x dtype bytes (docs/facts.md, "vLLM"), per
    card: tensor parallelism gives each card kv_heads / tp heads, or one
    replicated head when tp exceeds them (vLLM's QKVParallelLinear).

    Multi-head latent attention caches one latent of kv_lora_rank +
    qk_rope_head_dim per token and layer, the same on every card (docs/facts.md,
    "Reading a model's files")."""
    dtype_bytes = KV_DTYPE_BYTES.get(kv_cache_dtype, model_dtype_bytes)
    if arch.mla is not None:
        return arch.num_layers * (arch.mla.kv_lora_rank + arch.mla.qk_rope_head_dim) * dtype_bytes
    heads = max(1, arch.num_kv_heads // tensor_parallel)
    return 2 * arch.num_layers * heads * arch.head_dim * dtype_bytes


def check_tensor_parallel(arch: ModelFacts, tensor_parallel: int) -> str | None:
    """vLLM's own refusals for a TP size, as one message; None when it is fine."""
    if arch.num_attention_heads % tensor_parallel:
        # vLLM: "Total number of attention heads (28) must be divisible by
        # tensor parallel size (3)."
        return (
            f"total number of attention heads ({arch.num_attention_heads}) must be divisible by tensor parallel "
            f"size ({tensor_parallel}), as vLLM requires"
        )
    kv = arch.num_kv_heads
    if arch.mla is None and kv % tensor_parallel and tensor_parallel % kv:
        return f"its {kv} KV heads cannot be split over {tensor_parallel} cards (vLLM needs one to divide the other)"
    return None


def _model_impl_transformers(model: ModelSpec) -> bool:
    args = model.extra_args
    return any(
        (a == "--model-impl" and i + 1 < len(args) and args[i + 1] == "transformers")
        or a == "--model-impl=transformers"
        for i, a in enumerate(args)
    )


def _kv_mode(model: ModelSpec, image: str) -> tuple[bool, str | None]:
    """Whether the KV size is rendered exactly, and the reason when not."""
    if model.kv_cache == "profiled":
        return False, "kv_cache: profiled -- vLLM sizes the KV cache from its own profiling run at boot"
    version = versions.image_vllm_version(image)
    since = ".".join(str(p) for p in cal.KV_CACHE_BYTES_SINCE)
    if version is None:
        return True, f"the vLLM release of {image} is not in its tag: assumed {since} or newer"
    if version < cal.KV_CACHE_BYTES_SINCE:
        found = ".".join(str(p) for p in version)
        return False, (
            f"{image} is vLLM {found}, older than {since} which introduced --kv-cache-memory-bytes: "
            "the KV size comes from vLLM's profiling and depends on boot timing"
        )
    return True, None


def _resolve(model: ModelSpec, stack_index: int, image: str, locked: Mapping[str, ModelEntry]) -> _Need:
    try:
        arch, facts_source, implied_quantization, revision = facts_of(model, locked)
    except PlanError as exc:
        raise PlanError(exc.detail, path=("models", stack_index, exc.path[-1]), hint=exc.hint) from None
    release = versions.image_vllm_release(image)
    registry = architectures.registry(release) if release else architectures.registry()
    remote = model.trust_remote_code if model.trust_remote_code is not None else arch.trust_remote_code
    refusal = registry.refusal(arch.architecture) if registry is not None and not remote else None
    if refusal and not _model_impl_transformers(model):
        raise PlanError(
            f"{model.model}: {refusal}",
            path=("models", stack_index, "model"),
            hint="a model its Transformers backend can run takes extra_args: [--model-impl, transformers]",
        )
    runner = architectures.runner(arch.architecture, release)
    tensor_parallel = max(1, len(model_gpus(model)))
    if tensor_parallel > 1:
        refusal = check_tensor_parallel(arch, tensor_parallel)
        if refusal:
            raise PlanError(f"{model.name} over {tensor_parallel} GPUs: {refusal}", path=("models", stack_index, "gpu"))
    quantization = model.quantization or implied_quantization
    dtype = arch.dtype if model.dtype == "auto" else model.dtype
    dtype_bytes = DTYPE_BYTES[dtype]
    max_model_len = model.max_model_len or arch.context_length
    if max_model_len > arch.context_length:
        scaled = f" x rope factor {arch.rope_factor:g}" if arch.rope_factor != 1 else ""
        raise PlanError(
            f"{max_model_len} is greater than {model.model}'s derived max_model_len {arch.context_length} "
            f"({arch.context_key}{scaled} in its config.json); vLLM refuses it",
            path=("models", stack_index, "max_model_len"),
        )
    max_num_seqs = model.max_num_seqs or cal.DEFAULT_MAX_NUM_SEQS
    batched = model.max_num_batched_tokens or max(cal.DEFAULT_MAX_NUM_BATCHED_TOKENS, max_num_seqs)
    if batched < max_num_seqs:
        raise PlanError(
            f"{batched} is below max_num_seqs {max_num_seqs}; vLLM requires at least one token per sequence per step",
            path=("models", stack_index, "max_num_batched_tokens"),
        )
    act_bytes = 4 if dtype == "float32" else 2
    # vLLM's defaults are max_loras 1 and max_cpu_loras = max_loras; a shared
    # base model usually serves several adapters in one batch, so up to 4.
    serves_loras = model.serves_loras
    default_slots = 4 if model.runtime_loras is not None else min(len(model.loras), 4)
    max_loras = (model.max_loras or default_slots) if serves_loras else 0
    max_cpu_loras = (model.max_cpu_loras or max_loras) if serves_loras else 0
    lora = lora_slot_bytes(arch, max_loras, model.max_lora_rank, dtype_bytes, tensor_parallel) if serves_loras else 0
    exact_kv, kv_note = _kv_mode(model, image)
    return _Need(
        spec=model,
        stack_index=stack_index,
        arch=arch,
        facts_source=facts_source,
        revision=revision,
        weights_source=weights_source(arch, dtype_bytes),
        facts_notes=facts_notes(arch, runner),
        quantization=quantization,
        tensor_parallel=tensor_parallel,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=batched,
        weights_bytes=weights_bytes(arch, dtype_bytes, quantization, tensor_parallel),
        activation_bytes=activation_peak(
            arch,
            batched,
            max_num_seqs,
            act_bytes,
            model.enforce_eager,
            tensor_parallel,
            sampler_rows=0 if runner == "pooling" else None,
        ),
        lora_bytes=lora,
        max_loras=max_loras,
        max_cpu_loras=max_cpu_loras,
        exact_kv=exact_kv,
        kv_note=kv_note,
        kv_bytes_per_token=kv_bytes_per_token(arch, dtype_bytes, model.kv_cache_dtype, tensor_parallel),
        outside_share_bytes=cal.CUDA_CONTEXT + (0 if model.enforce_eager else cal.CUDA_GRAPHS),
    )


def gpu_total(gpu: GpuSpec) -> tuple[int, str]:
    """CUDA's total for a GPU and a label for reports (``H100-80GB``)."""
    if gpu.memory_gib is not None:
        label = gpu.type or f"{gpu.memory_gib:g} GiB"
        return gib(gpu.memory_gib), label
    assert gpu.type is not None
    gpu_type = find_gpu(gpu.type)
    if gpu_type is None:  # spec.check_stack rejects this first
        raise PlanError(f"GPU {gpu.index}: unknown type {gpu.type!r}", path=("gpus",))
    return gpu_type.cuda_total_bytes, gpu_type.name


@dataclass(frozen=True)
class _Card:
    index: int
    label: str
    total: int
    reserve: int
    boot: BootMode
    memory_mode: MemoryMode = "static"
    path: tuple[str | int, ...] = ("gpus",)  # its stack field, for refusals
    awake_max: int = 1


def _cards(stack: StackSpec) -> list[_Card]:
    cards = []
    for position, gpu in enumerate(stack.cards):
        path = gpu_path(stack, position)
        total, label = gpu_total(gpu)
        if total < cal.MIN_GPU_BYTES:
            raise PlanError(f"GPU {gpu.index}: {fmt_gib(total)} is too small to serve a model", path=path)
        reserve = gib(gpu.reserve_gib) if gpu.reserve_gib is not None else cal.DEFAULT_RESERVE
        if reserve >= total:
            raise PlanError(
                f"GPU {gpu.index}: the reserve {fmt_gib(reserve)} leaves nothing of {fmt_gib(total)}", path=path
            )
        cards.append(_Card(gpu.index, label, total, reserve, gpu.boot, gpu.memory_mode, path, gpu.awake_max))
    return cards


def _demand(need: _Need) -> Demand:
    memory = need.spec.memory
    return Demand(
        name=need.spec.name,
        path=model_path(need),
        pinned=model_gpus(need.spec),
        outside_bytes=need.outside_share_bytes,
        fraction=memory.fraction if memory.kind == "fraction" else None,
        size_bytes=memory.size_bytes if memory.kind == "size" else None,
        target_bytes=need.target_bytes,
        floor_bytes=need.floor_bytes,
    )


def _check_identical_cards(need: _Need, gpus: tuple[int, ...], cards: dict[int, _Card]) -> None:
    if len({cards[i].total for i in gpus}) > 1:
        listed = ", ".join(f"{i} ({cards[i].label}, {fmt_gib(cards[i].total)})" for i in gpus)
        raise PlanError(
            f"{need.spec.name} is tensor parallel over GPUs {listed}: vLLM gives "
            "every card the same fraction and the same shard, so the cards must be identical",
            path=model_path(need, "gpu"),
        )


def plan_stack(stack: StackSpec, *, locked: Mapping[str, ModelEntry] | None = None, enforce: bool = True) -> Plan:
    """The checked VRAM plan of a stack. Raises PlanError when it does not fit,
    unless ``enforce`` is off: then the plan records the violations and goes on
    (only for rehearsing what the engine does with a split that does not fit)."""
    violations: list[str] | None = None if enforce else []
    cards = _cards(stack)
    by_index = {c.index: c for c in cards}
    entries = locked or {}
    needs = [
        _resolve(model, index, model.image or stack.images.vllm, entries) for index, model in enumerate(stack.models)
    ]
    residents = [n for n in needs if n.spec.sleep is None]
    placement = place(
        [_demand(n) for n in residents] + _swap_set_demands(needs, cards),
        [Card(c.index, c.total, c.reserve) for c in cards],
    )
    for need in needs:
        if need.spec.sleep is not None:  # never placed (spec.check_stack): pinned, or the only card
            placement[need.spec.name] = model_gpus(need.spec) or (cards[0].index,)
    for need in needs:
        _check_identical_cards(need, placement[need.spec.name], by_index)
    on_card = {c.index: [n for n in needs if c.index in placement[n.spec.name]] for c in cards}

    # A tensor-parallel model has one fraction on all its cards: the smallest
    # auto split any of them gives it, fixed before the others are split again.
    fixed: dict[str, tuple[float, FractionSource]] = {}
    for need in needs:
        gpus = placement[need.spec.name]
        if len(gpus) > 1 and need.spec.memory.kind == "auto":
            fixed[need.spec.name] = min(
                (_fractions(by_index[i], on_card[i], {})[need.spec.name] for i in gpus), key=lambda f: f[0]
            )

    per_card: dict[int, list[ModelPlan]] = {}
    pools: dict[int, int] = {}
    for card in cards:
        if card.memory_mode == "elastic":
            per_card[card.index], pools[card.index] = _plan_elastic_gpu(card, on_card[card.index], placement)
            continue
        fractions = _fractions(card, on_card[card.index], fixed)
        per_card[card.index] = _plan_gpu(card, on_card[card.index], fractions, placement, violations)

    # Each model waits for its predecessor on every card it runs on.
    after: dict[str, list[str]] = {n.spec.name: [] for n in needs}
    for card_models in per_card.values():
        for m in card_models:
            after[m.name] += [a for a in m.after if a not in after[m.name]]
    gpu_plans = []
    first_card: dict[str, ModelPlan] = {}
    for card in cards:
        models = tuple(dataclasses.replace(m, after=tuple(after[m.name])) for m in per_card[card.index])
        gpu_plans.append(
            GpuPlan(
                card.index, card.label, card.total, card.reserve, models, card.boot, card.memory_mode,
                pools.get(card.index, 0), card.awake_max,
            )
        )  # fmt: skip
        first_card.update({m.name: m for m in models if m.gpu == m.gpus[0]})
    ordered = tuple(first_card[m.name] for m in stack.models)
    _check_host_pinned(stack, ordered, violations)
    return Plan(stack.name, tuple(gpu_plans), ordered, tuple(violations or ()), stack.swap.host_memory)


def _swap_set_demands(needs: Sequence[_Need], cards: Sequence[_Card]) -> list[Demand]:
    """What each card's swappable models take from placement: the heaviest
    awake set at its wants, the others at their residue -- so resident models
    without gpu: are placed beside the set, not beside the sum of its shares."""
    demands = []
    for card in cards:
        sleepers = [n for n in needs if n.spec.sleep is not None and (model_gpus(n.spec) or (cards[0].index,))[0]
                    == card.index]  # fmt: skip
        if not sleepers:
            continue
        size = _set_bytes(card, sleepers, functools.partial(_awake_wants, total=card.total))
        demands.append(Demand(f"(swap set of GPU {card.index})", card.path, (card.index,), 0, size_bytes=size))
    return demands


def _awake_wants(need: _Need, total: int) -> int:
    """What an awake swappable model asks of placement on a card of ``total`` bytes."""
    return _demand(need).wants(total) + _reload_extra(need)


def _reload_extra(need: _Need) -> int:
    """A level-2 server comes back from reload_weights above its pre-sleep figure."""
    return cal.LEVEL2_RELOAD_EXTRA if need.spec.sleep is not None and need.spec.sleep.level == 2 else 0


def _check_host_pinned(stack: StackSpec, models: Sequence[ModelPlan], violations: list[str] | None) -> None:
    """Level-1 sleepers pin host memory from their first sleep on, for their life."""
    pinned = [m for m in models if m.pinned_host_bytes]
    budget = stack.swap.host_memory
    if not pinned or budget is None or sum(m.pinned_host_bytes for m in pinned) <= budget:
        return
    parts = " + ".join(f"{m.name} {fmt_gib(m.pinned_host_bytes)}" for m in pinned)
    total = sum(m.pinned_host_bytes for m in pinned)
    _fail(
        violations,
        f"level-1 sleepers pin {fmt_gib(total)} of host memory ({parts}: {cal.LEVEL1_HOST_PIN_FACTOR:g}x their "
        f"weights, held from the first sleep on), {fmt_gib(total - budget)} more than swap.host_memory "
        f"{fmt_gib(budget)}; raise it, or move a model to level 2 (no host memory, wake ~5 s)",
        path=("swap", "host_memory"),
    )


def _fail(violations: list[str] | None, detail: str, *, path: tuple[str | int, ...]) -> None:
    """Refuse the stack, or -- rehearsing a split the planner refuses -- record why."""
    error = PlanError(detail, path=path)
    if violations is None:
        raise error
    violations.append(error.message)


def _fractions(
    card: _Card, needs: Sequence[_Need], fixed: dict[str, tuple[float, FractionSource]]
) -> dict[str, tuple[float, FractionSource]]:
    """The fraction of every model on a GPU: given, from a size, fixed by a
    tensor-parallel model's other cards, or auto."""
    gpu, label, total, reserve = card.index, card.label, card.total, card.reserve
    chosen: dict[str, tuple[float, FractionSource]] = {}
    for need in needs:
        memory = need.spec.memory
        if need.spec.name in fixed:
            chosen[need.spec.name] = fixed[need.spec.name]
        elif memory.kind == "fraction":
            chosen[need.spec.name] = (memory.fraction, "fraction")
        elif memory.kind == "size":
            fraction = ceil_to(memory.size_bytes / total, cal.FRACTION_STEP)
            if fraction >= 1:
                raise PlanError(
                    f"{model_label(need)}: memory {fmt_gib(memory.size_bytes)} is not less than GPU {gpu}'s "
                    f"{fmt_gib(total)} ({label})",
                    path=model_path(need, "memory"),
                )
            chosen[need.spec.name] = (fraction, "size")

    sleepers = [n for n in needs if n.spec.sleep is not None]
    most = floor_to((total - reserve) / total, cal.FRACTION_STEP)
    for need in sleepers:
        # Auto on a swappable model: the share that holds max_num_seqs
        # full-length sequences (it has the card to itself while its set is awake).
        chosen.setdefault(need.spec.name, (min(most, ceil_to(need.target_bytes / total, cal.FRACTION_STEP)), "auto"))
    auto = [n for n in needs if n.spec.name not in chosen]
    if not auto:
        return chosen
    taken = sum(cal.requested_bytes(chosen[n.spec.name][0], total) for n in needs if n.spec.sleep is None
                and n.spec.name in chosen)  # fmt: skip
    outside = sum(n.outside_share_bytes for n in needs if n.spec.sleep is None)
    taken += _awake_set_bytes(card, sleepers, {n.spec.name: cal.requested_bytes(chosen[n.spec.name][0], total)
                                               for n in sleepers})  # fmt: skip
    room = total - reserve - outside - taken
    floors = [n.floor_bytes for n in auto]
    if room < sum(floors):
        detail = ", ".join(f"{n.spec.name} {fmt_gib(f)}" for n, f in zip(auto, floors, strict=True))
        raise PlanError(
            f"GPU {gpu} ({label}): the auto models need at least {fmt_gib(sum(floors))} ({detail}: weights, "
            f"overheads and one max_model_len sequence each) but only {fmt_gib(room)} is left after "
            f"{fmt_gib(taken)} of fixed shares, {fmt_gib(outside)} outside the shares and the "
            f"{fmt_gib(reserve)} reserve",
            path=card.path,
        )
    spare = room - sum(floors)
    wants = [max(0, n.target_bytes - f) for n, f in zip(auto, floors, strict=True)]
    if sum(wants) >= spare and sum(wants) > 0:
        # Not enough for every target: everyone gets the same share of what it wants.
        shares = [f + spare * w / sum(wants) for f, w in zip(floors, wants, strict=True)]
    else:
        # Every target fits: what is left over is split equally.
        bonus = (spare - sum(wants)) / len(auto)
        shares = [n.target_bytes + bonus for n in auto]
    for need, share in zip(auto, shares, strict=True):
        chosen[need.spec.name] = (floor_to(share / total, cal.FRACTION_STEP), "auto")
    return chosen


def _awake_set_bytes(card: _Card, sleepers: Sequence[_Need], shares: Mapping[str, int]) -> int:
    """The swappable models of a card at their heaviest: the awake_max largest
    awake (share, what sits outside it, a level-2 reload's extra), the rest asleep."""
    return _set_bytes(card, sleepers, lambda n: shares[n.spec.name] + n.outside_share_bytes + _reload_extra(n))


def _heaviest(items: Sequence[_T], cost: Callable[[_T], int], awake_max: int) -> tuple[list[_T], list[_T]]:
    """The awake_max swappable models that cost most awake (ties: chain order)
    and the rest of them, asleep -- each in chain order. Every sleeper holds the
    same residue, so the heaviest set is simply the costliest members."""
    ranked = sorted(range(len(items)), key=lambda i: -cost(items[i]))
    chosen = set(ranked[:awake_max])
    return [x for i, x in enumerate(items) if i in chosen], [x for i, x in enumerate(items) if i not in chosen]


def _set_bytes(card: _Card, sleepers: Sequence[_Need], cost: Callable[[_Need], int]) -> int:
    awake, asleep = _heaviest(sleepers, cost, card.awake_max)
    return sum(cost(n) for n in awake) + cal.SLEEP_RESIDUE * len(asleep)


def _from_need(need: _Need, gpus: tuple[int, ...]) -> dict[str, Any]:
    """The ModelPlan fields that follow from the model alone, whatever the
    GPU's mode: identity, sizes, limits, boot budget, catalog facts."""
    return {
        "name": need.spec.name,
        "service": service_name(need.spec.name),
        "stack_index": need.stack_index,
        "gpus": gpus,
        "placed": need.spec.gpu is None,
        "weights_bytes": need.weights_bytes,
        "activation_bytes": need.activation_bytes,
        "non_torch_bytes": need.non_torch_bytes,
        "lora_bytes": need.lora_bytes,
        "kv_bytes_per_token": need.kv_bytes_per_token,
        "max_model_len": need.max_model_len,
        "max_num_seqs": need.max_num_seqs,
        "max_num_seqs_default": need.spec.max_num_seqs is None,
        "max_num_batched_tokens": need.max_num_batched_tokens,
        "boot_timeout_s": need.spec.boot_timeout_s or _boot_timeout(need.weights_bytes),
        "max_loras": need.max_loras,
        "max_lora_rank": need.spec.max_lora_rank,
        "max_cpu_loras": need.max_cpu_loras,
        "quantization": need.quantization,
        "trust_remote_code": (
            need.spec.trust_remote_code if need.spec.trust_remote_code is not None else need.arch.trust_remote_code
        ),
        "recommended_args": need.arch.recommended_args,
        "family": need.arch.family,
        "params": shapes.total_params(need.arch),
        "architecture": need.arch.architecture,
        "facts_source": need.facts_source,
        "revision": need.revision,
        "weights_source": need.weights_source,
        "facts_notes": need.facts_notes,
    }


def _plan_gpu(
    card: _Card,
    needs: list[_Need],
    fractions: dict[str, tuple[float, FractionSource]],
    placement: dict[str, tuple[int, ...]],
    violations: list[str] | None,
) -> list[ModelPlan]:
    """A static GPU: each model's share, KV cache and boot position, through
    the four checks (numbered as PLAN.md and the README list them)."""
    if not needs:
        return []
    parallel = card.boot == "parallel"
    if parallel:
        _check_parallel_needs_exact_kv(card, needs, violations)
    shares = {name: cal.requested_bytes(f, card.total) for name, (f, _) in fractions.items()}
    _check_fractions_fit(card, needs, fractions, shares, violations)  # check 1

    plans: list[ModelPlan] = []
    held = 0  # resident bytes of the servers already up on this GPU
    previous: str | None = None
    for position, need in enumerate(needs, start=1):
        name = need.spec.name
        fraction, source = fractions[name]
        share = shares[name]
        room = share - need.non_kv_bytes
        kv_tokens = max(0, room) // need.block_bytes * cal.KV_BLOCK_TOKENS
        # Exact KV is rendered in whole blocks, so the token count vLLM logs
        # ("GPU KV cache size") is exactly the plan's; profiled KV is whatever
        # the share leaves, as vLLM computes it.
        kv = kv_tokens * need.kv_bytes_per_token if need.exact_kv else room
        _check_one_sequence(card, need, fraction, share, room, kv_tokens, violations)  # check 2
        free_at_start = card.total - card.reserve - held
        if not parallel:  # a parallel boot's worst case is checked once all are planned
            _check_free_at_start(card, need, position, fraction, share, free_at_start, plans, violations)  # check 3
        # What it holds once up, never past its own peak: no server on the H100 or the
        # H200 ever did (docs/h200-vllm-0.26.0.md, "No server ever exceeded the plan's peak").
        extra = _reload_extra(need)
        resident = (
            min(
                need.weights_bytes + need.lora_bytes + max(0, kv) + cal.resident_overhead(need.weights_bytes),
                share + need.outside_share_bytes,
            )
            + extra
        )
        sleep = need.spec.sleep
        # A swappable server takes its first sleep before the next one starts.
        held += resident if sleep is None else cal.SLEEP_RESIDUE
        plans.append(
            ModelPlan(
                **_from_need(need, placement[name]),
                gpu=card.index,
                boot_position=1 if parallel else position,
                after=() if parallel or previous is None else (previous,),
                fraction=fraction,
                fraction_source=source,
                share_bytes=share,
                kv_bytes=kv,
                kv_tokens=kv_tokens,
                min_fraction=ceil_to(need.target_bytes / card.total, cal.FRACTION_STEP),
                free_at_start_bytes=free_at_start,
                resident_bytes=resident,
                peak_bytes=share + need.outside_share_bytes + extra,
                exact_kv=need.exact_kv,
                kv_note=need.kv_note,
                notes=_notes(need, kv_tokens),
                **_sleep_fields(need),
            )
        )
        previous = service_name(name)

    if parallel:
        # Booting together is the under-load check, met from the first second.
        return _check_parallel_start(card, plans, violations)
    _check_under_load(card, plans, violations)  # check 4
    return plans


def _sleep_fields(need: _Need) -> dict[str, Any]:
    sleep = need.spec.sleep
    if sleep is None:
        return {}
    return {
        "sleep_level": sleep.level,
        "idle_s": sleep.idle_s,
        "sleep_residue_bytes": cal.SLEEP_RESIDUE,
        "pinned_host_bytes": cal.pinned_host_bytes(need.weights_bytes) if sleep.level == 1 else 0,
        "first_sleep_timeout_s": cal.first_sleep_timeout_s(need.weights_bytes),
    }


def _check_parallel_needs_exact_kv(card: _Card, needs: list[_Need], violations: list[str] | None) -> None:
    profiled = [n for n in needs if not n.exact_kv]
    if profiled:
        reasons = "; ".join(f"{n.spec.name}: {n.kv_note}" for n in profiled)
        _fail(
            violations,
            f"GPU {card.index} ({card.label}) boots in parallel, which needs an exact KV size for every model: "
            f"servers that profile together charge each other's memory to themselves (one dies with negative KV "
            f"or another takes too much). {reasons}. Use kv_cache: exact with vLLM 0.11+, or boot: sequential",
            path=card.path,
        )


def _check_fractions_fit(
    card: _Card,
    needs: list[_Need],
    fractions: dict[str, tuple[float, FractionSource]],
    shares: dict[str, int],
    violations: list[str] | None,
) -> None:
    """Check 1: the shares vLLM will request and the reserve fit the card
    (with swappable models: the heaviest awake set's shares, the others' residue)."""
    total, reserve = card.total, card.reserve
    awake, asleep = _heaviest_set(card, needs, lambda n: shares[n.spec.name] + _reload_extra(n))
    counted = [n for n in needs if n.spec.sleep is None or n in awake]
    committed = sum(shares[n.spec.name] + _reload_extra(n) for n in counted) + cal.SLEEP_RESIDUE * len(asleep)
    if committed + reserve <= total:
        return
    fraction_sum = sum(fractions[n.spec.name][0] for n in counted)
    parts = " + ".join(f"{n.spec.name} {fmt_fraction(fractions[n.spec.name][0])}" for n in counted)
    most = floor_to((total - reserve) / total, cal.FRACTION_STEP)
    over = committed + reserve - total
    extras = [f"{n.spec.name}'s level-2 reload {fmt_gib(_reload_extra(n))}" for n in counted if _reload_extra(n)]
    extras += [f"{n.spec.name} asleep {fmt_gib(cal.SLEEP_RESIDUE)}" for n in asleep]
    beyond = f", plus {', '.join(extras)}: {fmt_gib(committed)}" if extras else ""
    _fail(
        violations,
        f"GPU {card.index} ({card.label}, {fmt_gib(total)} as CUDA reports it): "
        + _awake_clause(card, awake, asleep)
        + f"the fractions sum to {fmt_fraction(fraction_sum)} ({parts}) = "
        f"{fmt_gib(sum(shares[n.spec.name] for n in counted))}{beyond}; with the "
        f"{fmt_gib(reserve)} reserve that is {fmt_gib(over)} more than the card holds. "
        f"At most {fmt_fraction(most)} can be shared out on this GPU",
        path=card.path,
    )


def _heaviest_set(card: _Card, needs: Sequence[_Need], cost: Callable[[_Need], int]) -> tuple[list[_Need], list[_Need]]:
    """The awake_max swappable models that cost most awake (ties: chain order),
    and the rest of them, asleep."""
    return _heaviest([n for n in needs if n.spec.sleep is not None], cost, card.awake_max)


def _awake_clause(card: _Card, awake: Sequence[_Need | ModelPlan], asleep: Sequence[_Need | ModelPlan]) -> str:
    """How a refusal names the awake set it failed for."""
    if not awake and not asleep:
        return ""
    names = ", ".join(_name(m) for m in awake)
    sleeping = f"; asleep: {', '.join(_name(m) for m in asleep)} at {fmt_gib(cal.SLEEP_RESIDUE)} each" if asleep else ""
    return f"with {names} awake (awake_max {card.awake_max}{sleeping}), "


def _name(model: _Need | ModelPlan) -> str:
    return model.spec.name if isinstance(model, _Need) else model.name


def _check_one_sequence(
    card: _Card,
    need: _Need,
    fraction: float,
    share: int,
    room: int,
    kv_tokens: int,
    violations: list[str] | None,
) -> None:
    """Check 2: one full-length sequence fits the KV cache, as vLLM demands at
    start. The hint is one the stack can follow: a fraction below 1, or a
    shorter max_model_len."""
    if kv_tokens >= need.max_model_len:
        return
    needed = need.kv_bytes_for(need.max_model_len)
    min_fraction = ceil_to(need.floor_bytes / card.total, cal.FRACTION_STEP)
    most = floor_to((card.total - card.reserve) / card.total, cal.FRACTION_STEP)
    fixes = []
    if min_fraction <= most:
        fixes.append(f"raise memory to at least {fmt_fraction(min_fraction)}")
    if kv_tokens >= cal.KV_BLOCK_TOKENS:
        fixes.append(f"lower max_model_len to {kv_tokens}")
    hint = " or ".join(fixes) or (
        f"the {card.label} cannot hold it even at memory {fmt_fraction(most)}: use tensor parallelism "
        "(gpu: [i, j, ...]), a larger GPU or a quantized model"
    )
    if min_fraction > most and fixes:
        hint += f" (even memory {fmt_fraction(most)}, the most this GPU can share out, is too little)"
    _fail(
        violations,
        f"{model_label(need)} on GPU {card.index}: to serve one request of max_model_len "
        f"{need.max_model_len}, {fmt_gib(needed)} of KV cache is needed, but fraction "
        f"{fmt_fraction(fraction)} leaves {fmt_gib(max(0, room))} ({fmt_gib(share)} share - "
        f"{fmt_gib(need.weights_bytes)} weights - {fmt_gib(need.activation_bytes)} activation peak - "
        f"{fmt_gib(need.non_torch_bytes)} non-torch"
        + (f" - {fmt_gib(need.lora_bytes)} LoRA slots" if need.lora_bytes else "")
        + f"); {hint}",
        path=model_path(need, "memory"),
    )


def _check_free_at_start(
    card: _Card,
    need: _Need,
    position: int,
    fraction: float,
    share: int,
    free_at_start: int,
    started: list[ModelPlan],
    violations: list[str] | None,
) -> None:
    """Check 3: vLLM's free-memory check when this server starts."""
    if free_at_start >= share:
        return
    total, reserve, held = card.total, card.reserve, card.total - card.reserve - free_at_start
    _fail(
        violations,
        f"GPU {card.index} ({card.label}): when {need.spec.name} (boot position {position}) starts, vLLM needs "
        f"{fraction} x {fmt_gib(total)} = {fmt_gib(share)} free, but only {fmt_gib(free_at_start)} "
        f"will be ({fmt_gib(total)} - {fmt_gib(reserve)} reserve - {fmt_gib(held)} held by "
        f"{', '.join(p.name for p in started)}); lower a fraction",
        path=model_path(need, "memory"),
    )


def _check_under_load(card: _Card, plans: list[ModelPlan], violations: list[str] | None) -> None:
    """Check 4: under load every server may hold its whole share plus what sits
    outside it (CUDA context, cuBLAS, CUDA graphs); with swappable models, in
    every awake set the policy allows (the heaviest decides)."""
    awake, asleep = _heaviest([p for p in plans if p.swappable], lambda p: p.peak_bytes, card.awake_max)
    counted = [p for p in plans if not p.swappable or p in awake]
    peak = card.reserve + sum(p.peak_bytes for p in counted) + sum(p.sleep_residue_bytes for p in asleep)
    if peak <= card.total:
        return
    outside = sum(p.outside_share_bytes for p in counted)
    cut = fmt_fraction(ceil_to((peak - card.total) / card.total, cal.FRACTION_STEP))
    _fail(
        violations,
        f"GPU {card.index} ({card.label}): "
        + _awake_clause(card, awake, asleep)
        + f"the fractions fit, but under load the servers also hold "
        f"{fmt_gib(outside)} outside their fractions (CUDA context, cuBLAS and CUDA graphs, "
        f"~{fmt_gib(cal.CUDA_CONTEXT + cal.CUDA_GRAPHS)} each): {fmt_gib(peak)} against "
        f"{fmt_gib(card.total)}; lower the fractions by {cut} in all",
        path=card.path,
    )


def _notes(need: _Need, kv_tokens: int) -> tuple[str, ...]:
    if need.spec.max_num_seqs is not None and kv_tokens < need.max_model_len * need.max_num_seqs:
        return (
            f"holds {kv_tokens / need.max_model_len:.2f} full-length sequences, fewer than "
            f"max_num_seqs {need.max_num_seqs}: long requests may be preempted",
        )
    return ()


def _plan_elastic_gpu(
    card: _Card, needs: list[_Need], placement: dict[str, tuple[int, ...]]
) -> tuple[list[ModelPlan], int]:
    """An elastic (kvcached) GPU: every server's weights and overheads are
    static; what is left is one KV pool the servers map 2 MiB pages from on
    demand. Each model is guaranteed its kv_min (default one max_model_len
    sequence: what vLLM needs to accept a request) and may borrow up to its
    kv_max. kvcached sizes a server's virtual KV space as total x
    --gpu-memory-utilization - the process's own usage (weights, activations),
    so the fraction rendered is the one that makes that space kv_max."""
    # One GPU per model here: only a pinned gpu: [i, j] is tensor parallel, and
    # spec.check_stack refuses one that includes an elastic GPU.
    gpu, label, total, reserve = card.index, card.label, card.total, card.reserve
    static = sum(n.non_kv_bytes + n.outside_share_bytes for n in needs)
    pool = total - reserve - static
    if pool <= 0:
        raise PlanError(
            f"GPU {gpu} ({label}, elastic): the weights and overheads of {', '.join(n.spec.name for n in needs)} "
            f"take {fmt_gib(static)}, more than the {fmt_gib(total - reserve)} the card has after its reserve",
            path=card.path,
        )
    minimums: dict[str, int] = {}
    maximums: dict[str, int] = {}
    for need in needs:
        block = need.block_bytes
        one_sequence = need.kv_bytes_for(need.max_model_len)
        kv_min = math.ceil(need.spec.kv_min / block) * block if need.spec.kv_min is not None else one_sequence
        if kv_min < one_sequence:
            raise PlanError(
                f"{model_label(need)}: kv_min {fmt_gib(kv_min)} holds fewer tokens than one max_model_len "
                f"{need.max_model_len} sequence ({fmt_gib(one_sequence)}), which vLLM needs to accept a request",
                path=model_path(need, "kv_min"),
            )
        memory = need.spec.memory
        if need.spec.kv_max is not None:
            kv_max = need.spec.kv_max
        elif memory.kind == "fraction":
            kv_max = cal.requested_bytes(memory.fraction, total) - need.non_kv_bytes
        elif memory.kind == "size":
            kv_max = memory.size_bytes - need.non_kv_bytes
        else:
            kv_max = pool
        kv_max = kv_max // block * block
        if kv_max > pool:
            raise PlanError(
                f"{model_label(need)} on GPU {gpu}: may borrow up to {fmt_gib(kv_max)} of KV cache, more than "
                f"the GPU's whole pool of {fmt_gib(pool)}; lower kv_max (or memory)",
                path=model_path(need, "kv_max"),
            )
        if kv_max < kv_min:
            raise PlanError(
                f"{model_label(need)} on GPU {gpu}: its cap {fmt_gib(kv_max)} is below its guaranteed "
                f"{fmt_gib(kv_min)} of KV cache; raise kv_max (or memory) or lower kv_min",
                path=model_path(need, "kv_max"),
            )
        minimums[need.spec.name], maximums[need.spec.name] = kv_min, kv_max
    if sum(minimums.values()) > pool:
        listed = ", ".join(f"{name} {fmt_gib(b)}" for name, b in minimums.items())
        raise PlanError(
            f"GPU {gpu} ({label}, elastic): the guaranteed KV caches need {fmt_gib(sum(minimums.values()))} "
            f"({listed}) but the shared pool is {fmt_gib(pool)} ({fmt_gib(total)} - {fmt_gib(reserve)} reserve "
            f"- {fmt_gib(static)} of weights and overheads); lower kv_min or max_model_len",
            path=card.path,
        )
    plans: list[ModelPlan] = []
    previous: str | None = None
    held = 0  # what the servers booted before this one hold at idle: kvcached maps KV only for requests
    for position, need in enumerate(needs, start=1):
        name = need.spec.name
        kv_min, kv_max = minimums[name], maximums[name]
        resident = need.weights_bytes + need.lora_bytes + cal.resident_overhead(need.weights_bytes)
        # rounded: ceil_to leaves float noise (0.7260000000000001) that vLLM would print back
        fraction = round(ceil_to((need.non_kv_bytes + kv_max) / total, cal.FRACTION_STEP), 4)
        plans.append(
            ModelPlan(
                **_from_need(need, placement[name]),
                gpu=gpu,
                boot_position=position,
                after=() if previous is None else (previous,),
                fraction=fraction,
                fraction_source="elastic",
                share_bytes=cal.requested_bytes(fraction, total),
                kv_bytes=kv_min,
                kv_tokens=kv_min // need.kv_bytes_per_token,
                min_fraction=ceil_to((need.non_kv_bytes + kv_min) / total, cal.FRACTION_STEP),
                # What vLLM's startup snapshot sees: the card less what the
                # servers before it hold at idle (their weights; kvcached
                # maps KV pages only as requests need them). Measured on the
                # H200: the 7B after the 14B saw 110.06 GiB free, planned
                # 109.96 (docs/h200-elastic-2026-12-02.md).
                free_at_start_bytes=pool + static - held,
                resident_bytes=resident,
                # Guaranteed footprint; what it borrows beyond kv_min is the pool's.
                peak_bytes=need.non_kv_bytes + need.outside_share_bytes + kv_min,
                exact_kv=False,
                kv_note=None,  # PLAN.md explains the elastic pool once per GPU
                elastic=True,
                kv_max_bytes=kv_max,
            )
        )
        previous = service_name(name)
        held += resident
    return plans, pool


def _check_parallel_start(card: _Card, plans: list[ModelPlan], violations: list[str] | None) -> list[ModelPlan]:
    """Booting together, every server holds its weights, KV cache and activation
    peak (its share) plus what sits outside it at the same time; and a server
    may take vLLM's startup snapshot after all the others did: its free memory
    is then total - reserve - their peaks."""
    gpu, label, total, reserve = card.index, card.label, card.total, card.reserve
    needed = reserve + sum(p.peak_bytes for p in plans)
    if needed > total:
        _fail(
            violations,
            f"GPU {gpu} ({label}): boot: parallel needs room for every server's weights, KV cache and activation "
            f"peak at the same time: {fmt_gib(needed)} with the reserve and CUDA contexts, "
            f"{fmt_gib(needed - total)} more than the card's {fmt_gib(total)}; lower the fractions or boot: "
            "sequential",
            path=card.path,
        )
    return [
        dataclasses.replace(p, free_at_start_bytes=total - reserve - sum(o.peak_bytes for o in plans if o is not p))
        for p in plans
    ]


def _boot_timeout(weights: int) -> int:
    seconds = cal.BOOT_BASE_S + cal.BOOT_S_PER_WEIGHT_GIB * weights / GiB
    return int(ceil_to(seconds, cal.BOOT_ROUND_S))
