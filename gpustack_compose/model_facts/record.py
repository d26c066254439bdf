"""The facts the planner needs about one model, in config.json terms.

One record type serves the built-in catalog (``data/models.yaml``), the lock
file next to a stack and the stack's ``arch:`` block, so adding a model is
adding a record. Every field is read from the model's ``config.json`` by
``config.facts_from_config``; ``weights`` comes from its safetensors headers
when they are there (``safetensors``).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

Dtype = Literal["bfloat16", "float16", "float32"]
WeightsSource = Literal["safetensors", "computed"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MoeFacts(_Record):
    """A mixture-of-experts MLP (Mixtral, Qwen2/3-MoE, DeepSeek-V2/V3, gpt-oss)."""

    num_experts: int = Field(gt=0, le=100_000, description="Routed experts per MoE layer.")
    experts_per_token: int = Field(gt=0, le=100_000)
    expert_intermediate_size: int = Field(gt=0, le=10_000_000, description="Width of one routed expert.")
    shared_intermediate_size: int = Field(
        default=0, ge=0, le=10_000_000, description="Total width of the always-on shared expert(s), 0 for none."
    )
    shared_expert_gate: bool = Field(default=False, description="A sigmoid gate on the shared expert (Qwen2-MoE).")
    dense_layers: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="Layers with a dense MLP of intermediate_size instead (DeepSeek's first_k_dense_replace).",
    )
    expert_bias: bool = Field(default=False, description="Biases on every expert projection and the router (gpt-oss).")


class MlaFacts(_Record):
    """Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds one
    compressed latent of kv_lora_rank plus the rope key per token and layer."""

    kv_lora_rank: int = Field(gt=0, le=100_000)
    qk_rope_head_dim: int = Field(gt=0, le=100_000)
    qk_nope_head_dim: int = Field(gt=0, le=100_000)
    v_head_dim: int = Field(gt=0, le=100_000)
    q_lora_rank: int | None = Field(default=None, gt=0, le=100_000)


class VisionFacts(_Record):
    """The image encoder of a vision-language model: counted in the weights and
    in the profiling peak (vLLM profiles the encoder too)."""

    hidden_size: int = Field(gt=0, le=1_000_000)
    intermediate_size: int = Field(gt=0, le=10_000_000)
    num_layers: int = Field(gt=0, le=10_000)
    gated_mlp: bool = False
    spatial_merge: int = Field(default=1, ge=1, le=16, description="Patches merged into one LLM token per side.")
    params: int = Field(gt=0, description="Encoder plus projector parameters.")


class QuantFacts(_Record):
    """A pre-quantized checkpoint (config.json's quantization_config)."""

    method: str = Field(description="vLLM's name for it: awq, gptq, fp8, compressed-tensors, bitsandbytes, mxfp4.")
    bits: float = Field(gt=0, le=32, description="Bits per quantized weight, its scales and zeros included.")
    scope: Literal["linear", "experts"] = Field(
        default="linear", description="What is quantized: every decoder linear layer, or the MoE experts only."
    )


class WeightsFacts(_Record):
    """The checkpoint's tensors as its safetensors headers list them."""

    source: WeightsSource = "safetensors"
    bytes: int = Field(ge=0, description="Sum of every tensor's bytes.")
    params: int = Field(ge=0, description="Sum of every tensor's elements (packed quantized ints count as stored).")
    by_dtype: dict[str, int] = Field(default_factory=dict, description="Elements per safetensors dtype.")
    files: int = Field(default=1, ge=1)


class ModelFacts(_Record):
    """Architecture facts of one model, from its config.json."""

    architecture: str = Field(default="", description="config.json architectures[0] (empty: not known).")
    model_type: str = Field(default="", description="config.json model_type.")
    hidden_size: int = Field(gt=0, le=1_000_000)
    intermediate_size: int = Field(gt=0, le=10_000_000)
    num_layers: int = Field(gt=0, le=10_000, description="num_hidden_layers")
    num_attention_heads: int = Field(gt=0, le=10_000)
    num_kv_heads: int = Field(gt=0, le=10_000, description="num_key_value_heads")
    head_dim: int = Field(gt=0, le=100_000)
    vocab_size: int = Field(default=0, ge=0, le=10_000_000)
    context_length: int = Field(
        gt=0, le=100_000_000, description="The longest max_model_len vLLM accepts (its derived max_model_len)."
    )
    context_key: str = Field(default="max_position_embeddings", description="The config.json key it derives from.")
    rope_factor: float = Field(default=1.0, gt=0, description="RoPE scaling factor vLLM multiplies it by.")
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    attention_out_bias: bool = False
    gated_mlp: bool = Field(default=True, description="gate+up+down (SwiGLU); false: up+down.")
    mlp_bias: bool = False
    learned_positions: int = Field(default=0, ge=0, description="Rows of a learned position embedding (BERT).")
    lm_head: bool = Field(default=True, description="A vocabulary head (false for embedding and reranker models).")
    dtype: Dtype = "bfloat16"
    sliding_window: int | None = Field(default=None, gt=0, description="Tokens of the sliding attention window.")
    sliding_layers: int = Field(default=0, ge=0, description="Layers that use the sliding window.")
    moe: MoeFacts | None = None
    mla: MlaFacts | None = None
    vision: VisionFacts | None = None
    quantization: QuantFacts | None = None
    weights: WeightsFacts | None = None
    params_override: int | None = Field(
        default=None, gt=0, description="The whole model's parameter count where it is known better than the shapes."
    )
    trust_remote_code: bool = Field(default=False, description="config.json's auto_map names code of its own.")
    recommended_args: tuple[str, ...] = Field(default=(), description="Flags the model's card asks vLLM for.")
    family: str = Field(default="llama", description="Tiny stand-in family for rehearsals on vLLM's CPU build.")

    @model_validator(mode="before")
    @classmethod
    def _params_b(cls, value: Any) -> Any:
        """``params_b: 7.6`` (billions, what a model card says) in an arch:
        block stands for ``params_override: 7600000000``."""
        if isinstance(value, dict) and "params_b" in value and "params_override" not in value:
            value = dict(value)
            billions = value.pop("params_b")
            if isinstance(billions, (int, float)) and not isinstance(billions, bool) and 0 < billions <= 100_000:
                value["params_override"] = round(billions * 1e9)
            else:
                value["params_override"] = billions  # refused there, with the field named
        return value


EntrySource = Literal["hub", "directory", "hf-cache", "catalog"]


class ModelEntry(_Record):
    """One model's record as the catalog and the lock file hold it: what was
    resolved, from where, and exactly the facts the planner uses."""

    model: str = Field(description="The stack's model: value (a repo id or a directory).")
    source: EntrySource
    revision: str | None = Field(default=None, description="The Hub commit the facts were read at.")
    ref: str | None = Field(default=None, description="The stack's revision: when the lock was written.")
    config_sha256: str | None = Field(default=None, description="sha256 of the config.json read.")
    url: str | None = Field(default=None, description="Where the facts come from (the catalog's citation).")
    aliases: tuple[str, ...] = ()
    facts: ModelFacts

    @property
    def pins_commit(self) -> bool:
        """Read from the Hub or its cache at a commit, which vLLM is then told to load."""
        return self.source in ("hub", "hf-cache")


class _AsksForRevision(Protocol):
    @property
    def revision(self) -> str | None: ...


def revision_drift(entry: ModelEntry, model: _AsksForRevision) -> bool:
    """The entry was written for another revision than the stack's model asks
    for (``model``: a spec.ModelSpec; the record module sits below the spec)."""
    return entry.pins_commit and entry.ref != model.revision
