"""The stack file (version 1) as a strict, frozen model.

Unknown keys are errors, types are not coerced (``"8192"`` is not an integer),
and every rule that needs more than one field lives in ``check_stack`` so that
its error can name the exact field path. ``loader`` turns pydantic's errors into
one line each (``models[1].memory: 1.3 is not a fraction in (0, 1)``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    PlainSerializer,
    PlainValidator,
    Tag,
    WithJsonSchema,
    field_validator,
)

from gpustack_compose import versions
from gpustack_compose.catalog import find_gpu, gpu_names
from gpustack_compose.contract import (
    ENV_EXAMPLE,
    HF_TOKEN_ENV,
    MASTER_KEY_ENV,
    MONITORING_SERVICES,
    PROXY_PORT,
    PROXY_SERVICE,
    RENDERED_ENV,
    SWAP_SERVICE,
    first_sleep_service,
    service_name,
)
from gpustack_compose.errors import StackRuleError, format_path
from gpustack_compose.model_facts.record import ModelFacts
from gpustack_compose.units import SIZE_PATTERN, fmt_gib, parse_size
from gpustack_compose.vllm_flags import flag_name, inventory, managed

STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
# Environment names and values that carry secrets (tokens of the Hugging Face
# Hub, OpenAI-style keys, cloud credentials): never rendered into a file.
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)$", re.IGNORECASE)
SECRET_VALUE = re.compile(r"(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{16,}|ghp_[A-Za-z0-9]{20,}|AKIA[A-Z0-9]{16})")
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/:@+-]*$", re.IGNORECASE)
ENGINE_VERSION = re.compile(r"^\d+\.\d+$")
# A model reference is an HF repo id or a path inside the container: printable,
# no whitespace (vLLM takes it as one argv word; compose would split nothing,
# but a space in a repo id is always a typo).
MODEL_REF = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")

# Catalog names, offered by editors that read the JSON Schema.
GPU_EXAMPLES: list[JsonValue] = [*gpu_names()]

# Names the proxy service and compose itself use; a model cannot take them.
RESERVED_SERVICE_NAMES = frozenset({PROXY_SERVICE, SWAP_SERVICE, *MONITORING_SERVICES})


# How a GPU's models boot, and how its KV memory is shared (gpus[].boot, gpus[].memory_mode).
BootMode = Literal["sequential", "parallel"]
MemoryMode = Literal["static", "elastic"]


class SpecValueError(ValueError):
    """A rule broken by one value; the message is shown after the field path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass(frozen=True)
class Memory:
    """A model's VRAM request: a fraction of the card, a size, or ``auto``."""

    kind: Literal["fraction", "size", "auto"]
    fraction: float = 0.0
    size_bytes: int = 0

    def __str__(self) -> str:
        if self.kind == "fraction":
            return repr(self.fraction)
        if self.kind == "size":
            return f"{self.size_bytes} B"
        return "auto"


AUTO = Memory("auto")


def _describe(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def parse_memory(value: object) -> Memory:
    if isinstance(value, Memory):
        return value
    if isinstance(value, bool) or value is None:
        raise SpecValueError(f"{_describe(value)} is not a fraction in (0, 1), a size like '40GiB', or auto")
    if isinstance(value, (int, float)):
        if not 0 < value < 1:
            raise SpecValueError(f"{value!r} is not a fraction in (0, 1)")
        return Memory("fraction", fraction=float(value))
    if isinstance(value, str):
        if value == "auto":
            return AUTO
        size = parse_size(value) if SIZE_PATTERN.fullmatch(value) else None
        if size is None:
            raise SpecValueError(f"{value!r} is not a fraction in (0, 1), a size like '40GiB', or auto")
        if size <= 0:
            raise SpecValueError(f"{value!r} is not a positive size")
        return Memory("size", size_bytes=size)
    raise SpecValueError(f"{_describe(value)} is not a fraction in (0, 1), a size like '40GiB', or auto")


def _memory_out(memory: Memory) -> object:
    if memory.kind == "fraction":
        return memory.fraction
    if memory.kind == "size":
        return f"{memory.size_bytes}B"
    return "auto"


MemoryField = Annotated[
    Memory,
    PlainValidator(parse_memory),
    PlainSerializer(_memory_out),
    WithJsonSchema(
        {
            "description": "Fraction of the GPU's total memory in (0, 1), a size such as '40GiB', or 'auto'.",
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                {"type": "string", "pattern": SIZE_PATTERN.pattern},
                {"const": "auto"},
            ],
        }
    ),
]


def parse_byte_size(value: object) -> int:
    """``'12GiB'`` -> bytes (a KV budget on an elastic GPU)."""
    if isinstance(value, str) and SIZE_PATTERN.fullmatch(value):
        size = parse_size(value)
        if size is not None and size > 0:
            return size
    raise SpecValueError(f"{_describe(value)} is not a size like '12GiB'")


SizeField = Annotated[
    int,
    PlainValidator(parse_byte_size),
    PlainSerializer(lambda size: f"{size}B"),
    WithJsonSchema({"type": "string", "pattern": SIZE_PATTERN.pattern}),
]


class GpuSpec(_Strict):
    """One GPU of the host that the stack may use."""

    index: int = Field(ge=0, le=63, description="CUDA device index (what nvidia-smi shows).")
    type: str | None = Field(
        default=None,
        description="GPU catalog name, case-insensitive, e.g. H100-80GB.",
        json_schema_extra={"examples": GPU_EXAMPLES},
    )
    memory_gib: float | None = Field(
        default=None,
        gt=0,
        le=4096,
        description="Total memory CUDA reports, in GiB; overrides the catalog (needed for unknown types).",
    )
    reserve_gib: float | None = Field(
        default=None,
        ge=0,
        le=4096,
        description="Memory never available to the stack (driver, display, other processes). Default 0.52 GiB.",
    )
    boot: BootMode = Field(
        default="sequential",
        description=(
            "sequential: each model starts once the previous one is healthy. parallel: all start together "
            "(needs exact KV sizes, i.e. every model with kv_cache: exact on vLLM 0.11+)."
        ),
    )
    memory_mode: MemoryMode = Field(
        default="static",
        description=(
            "static: each model's KV cache is a fixed slice. elastic: kvcached -- the models' weights stay "
            "static, their KV caches grow and shrink in one shared pool (kv_min guaranteed, up to kv_max)."
        ),
    )
    awake_max: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Swappable models (sleep:) that may be awake on this GPU at once; the plan proves every "
        "such set fits beside the resident models.",
    )


class GpuSetSpec(_Strict):
    """``count`` identical GPUs, indexes ``first_index`` .. ``first_index + count - 1``."""

    count: int = Field(ge=1, le=64, description="How many identical GPUs the host has for the stack.")
    first_index: int = Field(default=0, ge=0, le=63, description="CUDA index of the first of them.")
    type: str | None = Field(
        default=None,
        description="GPU catalog name, case-insensitive, e.g. H100-80GB.",
        json_schema_extra={"examples": GPU_EXAMPLES},
    )
    memory_gib: float | None = Field(default=None, gt=0, le=4096, description="Total memory CUDA reports, in GiB.")
    reserve_gib: float | None = Field(default=None, ge=0, le=4096, description="Memory never available, per GPU.")
    boot: BootMode = Field(default="sequential", description="Boot mode of every GPU.")
    memory_mode: MemoryMode = Field(default="static", description="Memory mode of every GPU.")
    awake_max: int = Field(default=1, ge=1, le=64, description="Swappable models awake at once, per GPU.")

    def expand(self) -> list[GpuSpec]:
        return [
            GpuSpec(
                index=self.first_index + offset,
                type=self.type,
                memory_gib=self.memory_gib,
                reserve_gib=self.reserve_gib,
                boot=self.boot,
                memory_mode=self.memory_mode,
                awake_max=self.awake_max,
            )
            for offset in range(self.count)
        ]


# Discriminator tags of the two unions below. The loader drops them from error
# paths, so a message names ``gpus.count``, not ``gpus.gpu-set.count``; they
# contain a hyphen, which no field name does.
UNION_TAGS = frozenset({"gpu-list", "gpu-set", "gpu-index", "gpu-indexes"})

GpusField = Annotated[
    Annotated[list[GpuSpec], Field(min_length=1), Tag("gpu-list")] | Annotated[GpuSetSpec, Tag("gpu-set")],
    Discriminator(lambda value: "gpu-set" if isinstance(value, (dict, GpuSetSpec)) else "gpu-list"),
]
GpuPlacement = Annotated[
    Annotated[int, Field(ge=0, le=63), Tag("gpu-index")]
    | Annotated[list[Annotated[int, Field(ge=0, le=63)]], Field(min_length=1, max_length=64), Tag("gpu-indexes")],
    Discriminator(lambda value: "gpu-indexes" if isinstance(value, (list, tuple)) else "gpu-index"),
]


# The arch: block is the catalog's and the lock's record type: every field a
# config.json gives (model_facts.record.ModelFacts).
ArchSpec = ModelFacts


HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")


def model_directory(model: str) -> str | None:
    """The host directory a ``model:`` value names (``./dir``, ``../dir``,
    ``/abs/dir``; relative to the stack file), or None for a Hub repo id."""
    if model.startswith(("/", "./", "../")) or model in (".", ".."):
        return model
    return None


class LoraSpec(_Strict):
    """A LoRA adapter served by its base model's server under its own name."""

    name: str = Field(
        description="Model name the adapter is served as.", json_schema_extra={"pattern": MODEL_NAME.pattern}
    )
    path: str | None = Field(default=None, description="Adapter folder on the host, relative to the stack file.")
    repo: str | None = Field(default=None, description="Hugging Face repo id of the adapter (vLLM downloads it).")
    rank: int | None = Field(
        default=None, ge=1, le=512, description="Rank of a repo adapter (checked against max_lora_rank)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MODEL_NAME.fullmatch(value):
            raise SpecValueError(f"{value!r} is not a valid name: use [a-z0-9][a-z0-9._-]{{0,62}}")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return _check_relative_path(value)

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        if value is not None and not HF_REPO.fullmatch(value):
            raise SpecValueError(f"{value!r} is not a Hugging Face repo id like org/name")
        return value


class RuntimeLorasSpec(_Strict):
    """Load and unload adapters while the model serves (vLLM runtime LoRA updating)."""

    dir: str = Field(
        description=(
            "Host folder, relative to the stack file, mounted read-only; an adapter dropped here is loaded by "
            "name on its first request (vLLM's filesystem resolver) or by `gpustack-compose lora add`."
        )
    )

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        checked = _check_relative_path(value)
        assert checked is not None
        return checked


def _check_relative_path(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > 1024 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise SpecValueError(f"{value!r} is not a usable path")
    if value.startswith("/") or value.startswith("~"):
        raise SpecValueError(f"{value!r} is absolute; give a path relative to the stack file")
    return value


class SleepSpec(_Strict):
    """A swappable model: vLLM's sleep mode frees its GPU memory while idle;
    the stack's coordinator wakes it on the next request."""

    level: Literal[1, 2] = Field(
        description=(
            "1: weights kept in pinned host memory (wake ~0.5-0.7 s; ~1.9x the weight bytes of host RAM, held "
            "for the server's life). 2: weights dropped (no host RAM; wake + reload from disk, ~5 s for a 14B)."
        )
    )
    idle_s: int = Field(
        default=300, ge=5, le=86400, description="Seconds without a request before the coordinator puts it to sleep."
    )


class SwapSpec(_Strict):
    """What the stack's swap coordinator may use on the host."""

    host_memory: SizeField | None = Field(
        default=None,
        description="Host RAM the stack may pin for level-1 sleepers (each pins ~1.9x its weight bytes from "
        "its first sleep on); needed when any model sleeps at level 1. `up` checks it against the host.",
    )
    request_timeout_s: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="Longest a request waits for room and a wake before the coordinator answers 503.",
    )


class ModelSpec(_Strict):
    """One vLLM server."""

    name: str = Field(
        description="Served model name: what clients ask the proxy for.",
        json_schema_extra={"pattern": MODEL_NAME.pattern},
    )
    model: str = Field(
        description=(
            "Hugging Face repo id (org/name), or a model directory on the host: ./dir or ../dir (from the stack "
            "file) or /abs/dir, mounted read-only into the container."
        )
    )
    revision: str | None = Field(
        default=None,
        description="Hub branch, tag or commit of a repo id (vLLM --revision); the lock records the commit it read.",
    )
    gpu: GpuPlacement | None = Field(
        default=None,
        description=(
            "GPU index, or a list of indexes for tensor parallelism over those cards; "
            "default: placed automatically (first-fit decreasing by memory need)."
        ),
    )
    memory: MemoryField = Field(default=AUTO, json_schema_extra={"default": "auto"})
    max_model_len: int | None = Field(
        default=None, ge=16, le=100_000_000, description="Longest sequence; defaults to the model's context."
    )
    max_num_seqs: int | None = Field(
        default=None, ge=1, le=65536, description="Concurrent sequences the slice is sized for (default 16)."
    )
    max_num_batched_tokens: int | None = Field(
        default=None, ge=16, le=10_000_000, description="Tokens per scheduler step (default 2048)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    quantization: Literal["awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors"] | None = None
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    enforce_eager: bool = Field(default=False, description="Skip torch.compile and CUDA graphs.")
    kv_cache: Literal["exact", "profiled"] = Field(
        default="exact",
        description=(
            "exact: --kv-cache-memory-bytes fixes the KV cache at the planned size (boot-order and "
            "compile-state independent). profiled: vLLM sizes it from its own profiling run."
        ),
    )
    kv_min: SizeField | None = Field(
        default=None,
        description="Elastic GPUs: KV cache guaranteed to this model (default: one max_model_len sequence).",
    )
    kv_max: SizeField | None = Field(
        default=None,
        description="Elastic GPUs: most KV cache this model may borrow from the pool (default: all of it, or "
        "what memory leaves after the weights).",
    )
    trust_remote_code: bool | None = Field(default=None, description="Default: what the catalog says the model needs.")
    image: str | None = Field(default=None, description="vLLM image for this model; default images.vllm.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    extra_args: list[str] = Field(default_factory=list, description="Extra `vllm serve` arguments, verbatim.")
    loras: list[LoraSpec] = Field(default_factory=list)
    max_loras: int | None = Field(
        default=None, ge=1, le=1024, description="Adapters resident on the GPU at once (default: min(adapters, 4))."
    )
    # vLLM's LoRAConfig accepts these ranks (powers of two, plus 320).
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] = Field(
        default=16, description="Largest adapter rank; every GPU slot is sized for it."
    )
    max_cpu_loras: int | None = Field(
        default=None, ge=1, le=100_000, description="Adapters cached in host memory (default: max_loras)."
    )
    runtime_loras: RuntimeLorasSpec | None = Field(
        default=None, description="Opt in to loading adapters while serving, from a drop-in folder."
    )
    boot_timeout_s: int | None = Field(
        default=None,
        ge=10,
        le=86400,
        description="Seconds the model may take to become healthy (compose start_period); default grows with size.",
    )
    shm_size: str = Field(default="2gb", description="Size of /dev/shm (vLLM and PyTorch share tensors through it).")
    sleep: SleepSpec | None = Field(
        default=None,
        description="Swappable: sleeps when idle and wakes on demand (vLLM sleep mode); default resident.",
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Models or adapters of this stack that answer this model's requests, in order, when its server "
        "is down or keeps failing (after proxy.retries).",
    )
    timeout_s: int | None = Field(
        default=None,
        ge=1,
        le=86400,
        description="Seconds a request to this model may take at the proxy; default proxy.request_timeout_s.",
    )
    arch: ArchSpec | None = None

    @property
    def serves_loras(self) -> bool:
        """Adapters listed, or loadable at run time: vLLM runs with --enable-lora."""
        return bool(self.loras) or self.runtime_loras is not None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MODEL_NAME.fullmatch(value):
            raise SpecValueError(f"{value!r} is not a valid name: use [a-z0-9][a-z0-9._-]{{0,62}}")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not MODEL_REF.fullmatch(value):
            raise SpecValueError(f"{value!r} is not a model reference (an HF repo id or a path, no spaces)")
        if value.startswith("~"):
            raise SpecValueError(f"{value!r} starts with ~, which Compose does not expand; give ./dir or /abs/dir")
        return value

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str | None) -> str | None:
        if value is not None and not REVISION.fullmatch(value):
            raise SpecValueError(f"{value!r} is not a branch, tag or commit name")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return _check_image(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not ENV_NAME.fullmatch(key):
                raise SpecValueError(f"{key!r} is not an environment variable name")
            if "\x00" in item:
                raise SpecValueError(f"the value of {key} contains a NUL byte")
            if key in RENDERED_ENV:
                how = (
                    f"it is read from the .env file next to docker-compose.yml (see {ENV_EXAMPLE})"
                    if key == HF_TOKEN_ENV
                    else "it follows from the stack (hf cache, runtime_loras, memory_mode: elastic)"
                )
                raise SpecValueError(f"{key} is set by gpustack-compose; remove it from env: {how}")
            if SECRET_NAME.search(key) or SECRET_VALUE.match(item):
                raise SpecValueError(
                    f"{key} looks like a secret, and env: values are written into the committed "
                    "docker-compose.yml in plain text; keep it out of the stack file (set it on the host, "
                    "in the container's own image or an env_file you do not commit)"
                )
        return value

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, value: list[str]) -> list[str]:
        for arg in value:
            if "\x00" in arg or "\n" in arg:
                raise SpecValueError(f"{arg!r} contains a control character")
        return value

    @field_validator("shm_size")
    @classmethod
    def _shm_size(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]{0,5}(b|k|m|g|kb|mb|gb)", value):
            raise SpecValueError(f"{value!r} is not a size like '2gb'")
        return value


class ProxySpec(_Strict):
    """The LiteLLM proxy: the stack's single OpenAI-compatible endpoint."""

    port: int = Field(default=PROXY_PORT, ge=1, le=65535, description="Host port the proxy is published on.")
    host: str = Field(default="127.0.0.1", description="Host address the port is bound to.")
    workers: int = Field(default=2, ge=1, le=64, description="Gunicorn workers (LiteLLM --num_workers).")
    max_requests_before_restart: int = Field(
        default=10000, ge=1, le=10_000_000, description="Recycle a worker after this many requests."
    )
    request_timeout_s: int = Field(default=600, ge=1, le=86400, description="LiteLLM request timeout.")
    image: str | None = Field(default=None, description="LiteLLM image; default images.litellm.")
    admin_ui: bool = Field(
        default=False,
        description="Serve LiteLLM's admin UI at /ui (off: DISABLE_ADMIN_UI; its login accepts the master key).",
    )
    keepalive_s: int = Field(
        default=10,
        ge=1,
        le=3600,
        description="Seconds an idle client connection stays open; keep it above the clients' own idle expiry "
        "(httpx and the OpenAI SDKs: 5 s) so the client, not the proxy, closes it.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="error", description="LiteLLM's log level (LITELLM_LOG); info logs several lines per request."
    )
    access_log: bool = Field(default=False, description="One log line per request (off: it costs CPU per request).")
    retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a request whose model server could not be reached or failed (5xx), before its "
        "fallbacks; client errors and timeouts are not retried.",
    )
    allowed_fails: int = Field(
        default=3, ge=1, le=1000, description="Failures in a minute after which a model server is cooled down."
    )
    cooldown_s: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="Seconds a failing model server gets no requests (they go to its fallbacks) before it is tried "
        "again.",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _ip_address(value)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return _check_image(value)


# The releases are pinned in versions.py: the vLLM image the planner's
# constants were measured with, the LiteLLM release the proxy image and tests
# are built from, and vLLM + kvcached, built locally from
# images/vllm-kvcached/Dockerfile (no registry publishes it).
DEFAULT_VLLM_IMAGE = versions.VLLM_IMAGE
DEFAULT_LITELLM_IMAGE = versions.LITELLM_IMAGE
DEFAULT_KVCACHED_IMAGE = versions.VLLM_KVCACHED_IMAGE


class MonitoringSpec(_Strict):
    """Prometheus, Grafana and a GPU exporter beside the stack (off unless enabled)."""

    enabled: bool = Field(default=False, description="Render Prometheus, Grafana and the GPU exporter.")
    host: str = Field(default="127.0.0.1", description="Host address Prometheus's and Grafana's ports are bound to.")
    prometheus_port: int = Field(default=9090, ge=1, le=65535, description="Host port of Prometheus.")
    grafana_port: int = Field(default=3000, ge=1, le=65535, description="Host port of Grafana.")
    scrape_interval_s: int = Field(
        default=5, ge=1, le=300, description="Seconds between scrapes of every server, the proxy and the GPUs."
    )
    retention_days: int = Field(default=15, ge=1, le=3650, description="Days of samples Prometheus keeps.")
    gpu_exporter: bool = Field(
        default=True, description="NVIDIA's DCGM exporter for per-card memory (needs the NVIDIA container toolkit)."
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _ip_address(value)


class ImagesSpec(_Strict):
    """Images, pinned by tag."""

    vllm: str = DEFAULT_VLLM_IMAGE
    litellm: str = DEFAULT_LITELLM_IMAGE
    vllm_kvcached: str = Field(
        default=DEFAULT_KVCACHED_IMAGE,
        description="vLLM with kvcached, for models on elastic GPUs: build it FROM images.vllm with "
        "`pip install kvcached` (gpustack_compose/images/vllm-kvcached/Dockerfile).",
    )

    swap: str = Field(
        default=versions.SWAP_IMAGE,
        description="The swap coordinator (stacks with sleep: models); `gpustack-compose images` builds it.",
    )
    prometheus: str = Field(
        default=versions.PROMETHEUS_IMAGE,
        description="Prometheus (monitoring.enabled): Debian's package; `gpustack-compose images` builds it.",
    )
    grafana: str = Field(default=versions.GRAFANA_IMAGE, description="Grafana (monitoring.enabled).")
    dcgm_exporter: str = Field(
        default=versions.DCGM_EXPORTER_IMAGE,
        description="NVIDIA's DCGM exporter: GPU memory and utilization per card (monitoring.gpu_exporter).",
    )

    @field_validator("vllm", "litellm", "vllm_kvcached", "swap", "prometheus", "grafana", "dcgm_exporter")
    @classmethod
    def _image(cls, value: str) -> str:
        checked = _check_image(value)
        assert checked is not None
        return checked


class DockerSpec(_Strict):
    """The Docker Engine the stack is rendered for."""

    min_engine: str = Field(
        default="20.10",
        description=(
            "Oldest Docker Engine the stack must run on. 25.0 or newer enables "
            "healthcheck.start_interval (faster boot gates); older engines reject it."
        ),
    )

    @field_validator("min_engine")
    @classmethod
    def _min_engine(cls, value: str) -> str:
        if not ENGINE_VERSION.fullmatch(value):
            raise SpecValueError(f"{value!r} is not a version like '25.0'")
        return value


# Kubernetes object names: a Service name is a DNS-1035 label, and Secret,
# PersistentVolumeClaim and node names are DNS-1123 subdomains.
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# A label key (optional DNS prefix + "/" + name) and a label value.
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
ENV_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
# A resource name such as nvidia.com/gpu or nvidia.com/gpu.shared.
RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")
# A Kubernetes quantity of bytes (what a PVC size or emptyDir limit takes).
BYTES_QUANTITY = re.compile(r"^[1-9][0-9]{0,15}(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")


def _matching(pattern: re.Pattern[str], what: str) -> PlainValidator:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise SpecValueError(f"{_describe(value)} is not a string")
        if not pattern.fullmatch(value):
            raise SpecValueError(f"{value!r} is not {what}")
        return value

    return PlainValidator(check)


DnsLabel = Annotated[str, _matching(DNS_LABEL, "a DNS-1035 label ([a-z][-a-z0-9]*, at most 63)"),
                     WithJsonSchema({"type": "string", "pattern": DNS_LABEL.pattern})]  # fmt: skip
DnsName = Annotated[str, _matching(DNS_SUBDOMAIN, "a DNS-1123 name ([a-z0-9][-a-z0-9.]*)"),
                    WithJsonSchema({"type": "string", "pattern": DNS_SUBDOMAIN.pattern})]  # fmt: skip
EnvKey = Annotated[str, _matching(ENV_KEY, "a Secret key ([-._a-zA-Z0-9]+)"),
                   WithJsonSchema({"type": "string", "pattern": ENV_KEY.pattern})]  # fmt: skip
LabelValue = Annotated[str, _matching(LABEL_VALUE, "a label value (at most 63 of [-A-Za-z0-9_.])"),
                       WithJsonSchema({"type": "string", "pattern": LABEL_VALUE.pattern})]  # fmt: skip
BytesQuantity = Annotated[str, _matching(BYTES_QUANTITY, "a size like '200Gi'"),
                          WithJsonSchema({"type": "string", "pattern": BYTES_QUANTITY.pattern})]  # fmt: skip
ResourceName = Annotated[str, _matching(RESOURCE_NAME, "a resource name like 'nvidia.com/gpu'"),
                         WithJsonSchema({"type": "string", "pattern": RESOURCE_NAME.pattern})]  # fmt: skip
GPU_UUID = re.compile(r"^GPU-[0-9a-fA-F-]{8,64}$")
GpuUuid = Annotated[str, _matching(GPU_UUID, "a GPU UUID like 'GPU-0f95da43-eab5-...'"),
                    WithJsonSchema({"type": "string", "pattern": GPU_UUID.pattern})]  # fmt: skip


class SecretRefSpec(_Strict):
    """A key of a Secret that already exists in the namespace (never rendered)."""

    name: DnsName
    key: EnvKey


class HfCacheSpec(_Strict):
    """Where each model server keeps its Hugging Face downloads."""

    claim: DnsName | None = Field(
        default=None,
        description="An existing PersistentVolumeClaim every model mounts (ReadWriteMany when models run on "
        "several nodes). Default: one claim per model, rendered.",
    )
    size: BytesQuantity | None = Field(
        default=None, description="Size of each rendered claim. Default: the model's weights x 1.25 + 5Gi."
    )
    storage_class: DnsName | None = Field(default=None, description="storageClassName of each rendered claim.")


CPU_QUANTITY = re.compile(r"^([1-9][0-9]{0,4}|[0-9]{1,5}\.[0-9]{1,3}|[1-9][0-9]{0,7}m)$")
CpuQuantity = Annotated[str, _matching(CPU_QUANTITY, "a CPU quantity like '2', '1.5' or '500m'"),
                        WithJsonSchema({"type": "string", "pattern": CPU_QUANTITY.pattern})]  # fmt: skip


class PodResourcesSpec(_Strict):
    """CPU and memory of a pod's container; each unset one is derived from the plan."""

    cpu_request: CpuQuantity | None = None
    cpu_limit: CpuQuantity | None = None
    memory_request: BytesQuantity | None = None
    memory_limit: BytesQuantity | None = None


class KubernetesSpec(_Strict):
    """How `render --target kubernetes` maps the plan onto a cluster."""

    gpu_sharing: Literal["time-slicing", "hami"] = Field(
        default="time-slicing",
        description="How the cluster lets several pods share one GPU: the NVIDIA device plugin's time-slicing "
        "(each pod asks for one replica of gpu_resource) or HAMi (each pod asks for its planned memory share).",
    )
    hami_memory: Literal["percent", "mib"] = Field(
        default="percent",
        description="HAMi only: ask for each model's memory as a whole percentage of the card "
        "(nvidia.com/gpumem-percentage, the same manifests fit any card size) or in MiB (nvidia.com/gpumem, "
        "exact; for cards packed so full that rounding up to whole percent would overflow them).",
    )
    gpu_resource: ResourceName = Field(
        default="nvidia.com/gpu",
        description="Extended resource a model pod requests per GPU (time-slicing with renameByDefault: "
        "nvidia.com/gpu.shared).",
    )
    nodes: dict[int, DnsName] = Field(
        default_factory=dict,
        description="Planned GPU index -> the node (kubernetes.io/hostname) its models run on. Time-slicing needs "
        "one node per GPU when the stack has several.",
    )
    gpu_uuids: dict[int, GpuUuid] = Field(
        default_factory=dict,
        description="HAMi only: planned GPU index -> the card's UUID (nvidia.com/use-gpuuuid), pinning every "
        "model of that GPU to the same card.",
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict, description="Labels every model pod's node must have (e.g. nvidia.com/gpu.product)."
    )
    runtime_class: DnsName | None = Field(default=None, description="runtimeClassName of the model pods (e.g. nvidia).")
    hf_cache: HfCacheSpec = Field(default_factory=HfCacheSpec)
    adapters_claim: DnsName | None = Field(
        default=None,
        description="PersistentVolumeClaim holding the LoRA adapters given by path: one folder per adapter name, "
        "runtime adapters under runtime/. Required when a model has such adapters.",
    )
    proxy_replicas: int = Field(default=1, ge=1, le=64, description="LiteLLM replicas (it is stateless).")
    model_resources: PodResourcesSpec = Field(
        default_factory=PodResourcesSpec,
        description="CPU and memory of every model pod (default: 2 CPUs, up to 8; memory from the plan).",
    )
    proxy_resources: PodResourcesSpec = Field(
        default_factory=PodResourcesSpec,
        description="CPU and memory of each proxy pod (default: from the worker count).",
    )
    proxy_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    master_key_secret: SecretRefSpec = Field(
        default_factory=lambda: SecretRefSpec(name="litellm-master-key", key=MASTER_KEY_ENV),
        description="Secret key holding LiteLLM's master key.",
    )
    hf_token_secret: SecretRefSpec = Field(
        default_factory=lambda: SecretRefSpec(name="hf-token", key=HF_TOKEN_ENV),
        description="Secret key holding the Hugging Face token (optional: the pods start without it).",
    )
    namespace: DnsLabel | None = Field(default=None, description="Namespace set by the kustomization.")
    prometheus_namespace: DnsLabel = Field(
        default="monitoring",
        description="Namespace of the cluster's Prometheus (monitoring.enabled): the model pods' NetworkPolicy lets "
        "it scrape their /metrics.",
    )
    monitoring_labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        description="Labels on the ServiceMonitors and the PrometheusRule, for the Prometheus Operator's selectors "
        "(kube-prometheus-stack: release: <its release name>).",
    )

    @field_validator("node_selector", "monitoring_labels")
    @classmethod
    def _node_selector(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not LABEL_KEY.fullmatch(key):
                raise SpecValueError(f"{key!r} is not a label key")
        return value


class StackSpec(_Strict):
    """A gpustack-compose stack file, version 1."""

    version: Literal[1] = 1
    name: str = Field(
        description="Compose project name: [a-z][a-z0-9-]{0,39}.", json_schema_extra={"pattern": STACK_NAME.pattern}
    )
    gpus: GpusField = Field(
        description="The GPUs the stack may use: a list, or {count, type} for identical cards.",
    )
    models: list[ModelSpec] = Field(min_length=1)
    proxy: ProxySpec = Field(default_factory=ProxySpec)
    images: ImagesSpec = Field(default_factory=ImagesSpec)
    docker: DockerSpec = Field(default_factory=DockerSpec)
    kubernetes: KubernetesSpec = Field(default_factory=KubernetesSpec)
    swap: SwapSpec = Field(default_factory=SwapSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    hf_cache: str | None = Field(
        default=None,
        description="Host folder for the models' Hugging Face cache (relative to the stack file, or absolute), "
        "bound instead of the named volume hf-cache; `lock` finds models already downloaded there.",
    )

    @field_validator("hf_cache")
    @classmethod
    def _hf_cache(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or len(value) > 1024 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise SpecValueError(f"{value!r} is not a usable path")
        if value.startswith("~"):
            raise SpecValueError(f"{value!r} starts with ~, which Compose does not expand; give ./dir or /abs/dir")
        return value

    @property
    def cards(self) -> tuple[GpuSpec, ...]:
        """Every GPU, the ``count`` form expanded."""
        return tuple(self.gpus.expand() if isinstance(self.gpus, GpuSetSpec) else self.gpus)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not STACK_NAME.fullmatch(value):
            raise SpecValueError(f"{value!r} is not a valid stack name: use [a-z][a-z0-9-]{{0,39}}")
        return value


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise SpecValueError(f"{value!r} is not an IP address") from None
    return value


def _check_image(value: str | None) -> str | None:
    if value is not None and (not IMAGE_REF.fullmatch(value) or len(value) > 255):
        raise SpecValueError(f"{value!r} is not an image reference")
    return value


def check_stack(stack: StackSpec) -> None:
    """Rules that involve more than one field. Raises StackRuleError."""
    if isinstance(stack.gpus, GpuSetSpec):
        last = stack.gpus.first_index + stack.gpus.count - 1
        if last > 63:
            raise StackRuleError(("gpus", "count"), f"GPUs {stack.gpus.first_index}..{last} go past index 63")
        if stack.gpus.type is None and stack.gpus.memory_gib is None:
            raise StackRuleError(("gpus",), "give type (a catalog GPU such as H100-80GB) or memory_gib")
        if stack.gpus.type is not None and stack.gpus.memory_gib is None and find_gpu(stack.gpus.type) is None:
            raise StackRuleError(
                ("gpus", "type"),
                f"{stack.gpus.type!r} is not in the GPU catalog ({', '.join(gpu_names())}); give memory_gib",
            )
    gpu_indexes: dict[int, int] = {}
    for position, gpu in enumerate(stack.cards):
        if gpu.index in gpu_indexes:
            raise StackRuleError(
                ("gpus", position, "index"),
                f"GPU {gpu.index} is declared twice (also gpus[{gpu_indexes[gpu.index]}])",
            )
        gpu_indexes[gpu.index] = position
        if gpu.type is None and gpu.memory_gib is None:
            raise StackRuleError(("gpus", position), "give type (a catalog GPU such as H100-80GB) or memory_gib")
        if gpu.type is not None and gpu.memory_gib is None and find_gpu(gpu.type) is None:
            raise StackRuleError(
                ("gpus", position, "type"),
                f"{gpu.type!r} is not in the GPU catalog ({', '.join(gpu_names())}); give memory_gib",
            )

    names: dict[str, tuple[str | int, ...]] = {}
    services: dict[str, str] = {}
    for position, model in enumerate(stack.models):
        where: tuple[str | int, ...] = ("models", position)
        if model.name in names:
            used_by = format_path(names[model.name])
            raise StackRuleError((*where, "name"), f"{model.name!r} is already used by {used_by}")
        names[model.name] = (*where, "name")
        service = service_name(model.name)
        if resolves_as_address(service):
            raise StackRuleError(
                (*where, "name"),
                f"{model.name!r} would be the compose service and hostname {service!r}, which resolvers read as an "
                "IP address (so would the Kubernetes target); start the name with a letter",
            )
        if service in RESERVED_SERVICE_NAMES:
            raise StackRuleError((*where, "name"), f"{model.name!r} is reserved for the proxy service")
        if service in services:
            raise StackRuleError(
                (*where, "name"),
                f"{model.name!r} and {services[service]!r} would both be the compose service {service!r}",
            )
        services[service] = model.name
        _check_gpu_placement(model, where, gpu_indexes)
        _check_extra_args(model, where, model_image(stack, model, elastic=False))

    elastic = {gpu.index for gpu in stack.cards if gpu.memory_mode == "elastic"}
    for position, gpu in enumerate(stack.cards):
        if gpu.memory_mode == "elastic" and gpu.boot == "parallel":
            at = ("gpus", "boot") if isinstance(stack.gpus, GpuSetSpec) else ("gpus", position, "boot")
            raise StackRuleError(
                at,
                f"GPU {gpu.index} is elastic: its weights are still loaded one server at a time (boot races "
                "are real with kvcached too), so boot must be sequential",
            )
    for position, model in enumerate(stack.models):
        _check_elastic(model, ("models", position), elastic)
    _check_swap(stack, services)

    for position, model in enumerate(stack.models):
        _check_lora_limits(model, ("models", position))
        for lora_position, lora in enumerate(model.loras):
            if (lora.path is None) == (lora.repo is None):
                raise StackRuleError(
                    ("models", position, "loras", lora_position),
                    f"adapter {lora.name!r} needs exactly one of path (a folder) or repo (a Hugging Face repo id)",
                )
            where = ("models", position, "loras", lora_position, "name")
            if lora.name in names:
                raise StackRuleError(
                    where,
                    f"{lora.name!r} is already used by {format_path(names[lora.name])} "
                    "(adapters are model names at the proxy)",
                )
            names[lora.name] = where
    _check_fallbacks(stack)
    _check_monitoring_ports(stack)


def _check_monitoring_ports(stack: StackSpec) -> None:
    """Every port the stack publishes is its own: two services cannot bind one."""
    monitoring = stack.monitoring
    if not monitoring.enabled:
        return
    taken = {("proxy", "port"): stack.proxy.port}
    for field_name in ("prometheus_port", "grafana_port"):
        port = getattr(monitoring, field_name)
        for where, other in taken.items():
            if port == other:
                raise StackRuleError(("monitoring", field_name), f"port {port} is already {format_path(where)}")
        taken[("monitoring", field_name)] = port


def _check_fallbacks(stack: StackSpec) -> None:
    """A fallback is another server's route: one served by the same server is
    down with it."""
    server_of = {m.name: m.name for m in stack.models}
    server_of.update({lora.name: m.name for m in stack.models for lora in m.loras})
    for position, model in enumerate(stack.models):
        seen: set[str] = set()
        for index, name in enumerate(model.fallbacks):
            where = ("models", position, "fallbacks", index)
            if name not in server_of:
                known = ", ".join(sorted(server_of))
                raise StackRuleError(where, f"{name!r} is not a model or adapter of this stack (it has {known})")
            if server_of[name] == model.name:
                what = "itself" if name == model.name else f"its own adapter {name!r}"
                raise StackRuleError(where, f"{model.name} cannot fall back to {what}: the same server answers both")
            if name in seen:
                raise StackRuleError(where, f"{name!r} is listed twice")
            seen.add(name)


def resolves_as_address(hostname: str) -> bool:
    """Whether a resolver reads ``hostname`` as an IPv4 address rather than a
    name: inet_aton's forms, ``1234``, ``0x7f000001``, ``127.1`` (glibc's
    getaddrinfo accepts them before asking DNS), or an IPv6 literal."""
    try:
        socket.inet_aton(hostname)
    except OSError:
        pass
    else:
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def risky_choices(stack: StackSpec) -> list[str]:
    """What the stack is allowed to ask for but should be told about: one
    line each, with the reason (``render`` and ``plan`` print them)."""
    found = []
    if ipaddress.ip_address(stack.proxy.host).is_unspecified:
        found.append(
            f"proxy.host: {stack.proxy.host} publishes the proxy on every interface of the host; keep 127.0.0.1 "
            "behind a reverse proxy or firewall unless the network is trusted"
        )
    if stack.proxy.admin_ui:
        found.append("proxy.admin_ui: LiteLLM's admin UI accepts the master key as a password; expose it with care")
    images = {"images.vllm": stack.images.vllm, "images.litellm": stack.images.litellm}
    images.update({f"models[{i}].image": m.image for i, m in enumerate(stack.models) if m.image})
    for where, image in images.items():
        name = image.split("@", 1)[0].rsplit("/", 1)[-1]
        if "@" not in image and (":" not in name or name.endswith(":latest")):
            found.append(
                f"{where}: {image} is not pinned (no tag, or :latest): a pull can change what runs; pin a release "
                "tag or a digest"
            )
    return found


def model_image(stack: StackSpec, model: ModelSpec, *, elastic: bool) -> str:
    """The image a model's server runs: its own, else the stack's vLLM image
    (with kvcached on an elastic GPU, built FROM the same vLLM release)."""
    return model.image or (stack.images.vllm_kvcached if elastic else stack.images.vllm)


def _check_extra_args(model: ModelSpec, where: tuple[str | int, ...], image: str) -> None:
    """No managed flag in any spelling; and, when the image names a vLLM
    release whose flag inventory is committed, only flags that release has
    (vLLM would refuse the server at start: "unrecognized arguments")."""
    release = versions.image_vllm_release(image)
    known = inventory(release) if release is not None else None
    for arg_position, arg in enumerate(model.extra_args):
        flag = flag_name(arg)
        if flag is None:
            continue
        taken = managed(flag, known)
        if taken is not None:
            long, field_name = taken
            spelled = flag if long == flag else f"{flag} (vLLM reads it as {long})"
            raise StackRuleError(
                (*where, "extra_args", arg_position),
                f"{spelled} is set by gpustack-compose from {field_name}; remove it from extra_args",
            )
        if known is not None and known.resolve(flag) is None:
            raise StackRuleError(
                (*where, "extra_args", arg_position),
                f"{flag} is not a flag of vLLM {known.release}'s `vllm serve` (the release {image} runs; "
                f"its parser's flags: gpustack_compose/data/vllm-flags/{known.release}.json)",
            )


def gpu_path(stack: StackSpec, position: int) -> tuple[str | int, ...]:
    """The stack field of the card at ``position``: ``gpus[i]``, or ``gpus``
    for the ``{count, type}`` form."""
    return ("gpus",) if isinstance(stack.gpus, GpuSetSpec) else ("gpus", position)


def model_gpus(model: ModelSpec) -> tuple[int, ...]:
    """The GPUs a model is pinned to: one, several (tensor parallel) or none."""
    if model.gpu is None:
        return ()
    if isinstance(model.gpu, int):
        return (model.gpu,)
    return tuple(model.gpu)


def _check_gpu_placement(model: ModelSpec, where: tuple[str | int, ...], gpu_indexes: dict[int, int]) -> None:
    pinned = model_gpus(model)
    declared = ", ".join(str(i) for i in sorted(gpu_indexes))
    for position, index in enumerate(pinned):
        at = (*where, "gpu", position) if isinstance(model.gpu, list) else (*where, "gpu")
        if index not in gpu_indexes:
            raise StackRuleError(at, f"GPU {index} is not declared in gpus (declared: {declared})")
        if index in pinned[:position]:
            raise StackRuleError(at, f"GPU {index} is listed twice; tensor parallelism needs distinct cards")


def _check_elastic(model: ModelSpec, where: tuple[str | int, ...], elastic: set[int]) -> None:
    pinned = model_gpus(model)
    on_elastic = [i for i in pinned if i in elastic]
    for field_name in ("kv_min", "kv_max"):
        if getattr(model, field_name) is not None and not on_elastic:
            raise StackRuleError(
                (*where, field_name),
                "applies only on an elastic GPU: pin the model with gpu: to a GPU with memory_mode: elastic",
            )
    if on_elastic and len(pinned) > 1:
        raise StackRuleError(
            (*where, "gpu"),
            f"tensor parallel over GPUs {', '.join(map(str, pinned))} includes elastic GPU {on_elastic[0]}: "
            "elastic mode is for models on one GPU",
        )
    if model.kv_max is not None and model.memory.kind != "auto":
        raise StackRuleError(
            (*where, "kv_max"), "give kv_max or memory, not both (on an elastic GPU memory sets kv_max)"
        )
    if model.kv_min is not None and model.kv_max is not None and model.kv_min > model.kv_max:
        raise StackRuleError((*where, "kv_min"), f"{fmt_gib(model.kv_min)} is more than kv_max {fmt_gib(model.kv_max)}")


def _check_swap(stack: StackSpec, services: dict[str, str]) -> None:
    """Swappable models: one card each, a static GPU that boots in sequence,
    and a host-memory budget for level-1 sleepers."""
    cards = {gpu.index: (position, gpu) for position, gpu in enumerate(stack.cards)}
    for position, model in enumerate(stack.models):
        if model.sleep is None:
            continue
        where: tuple[str | int, ...] = ("models", position)
        pinned = model_gpus(model)
        if len(pinned) > 1:
            raise StackRuleError(
                (*where, "sleep"),
                "a swappable model runs on one GPU: the coordinator checks and wakes one card at a time",
            )
        if not pinned and len(cards) > 1:
            raise StackRuleError(
                (*where, "gpu"), "a swappable model needs gpu: when the stack has several GPUs (it is not placed)"
            )
        index = pinned[0] if pinned else next(iter(cards))
        card_position, card = cards[index]
        if card.memory_mode == "elastic":
            raise StackRuleError(
                (*where, "sleep"),
                f"GPU {index} is elastic: kvcached maps KV pages itself, which vLLM's sleep mode (its cumem "
                "allocator) cannot free; put swappable models on a static GPU",
            )
        if card.boot == "parallel":
            at = ("gpus", "boot") if isinstance(stack.gpus, GpuSetSpec) else ("gpus", card_position, "boot")
            raise StackRuleError(
                at,
                f"GPU {index} has swappable models: each must boot and take its first sleep before the next "
                "server starts, so boot must be sequential",
            )
        sleeper = first_sleep_service(service_name(model.name))
        if sleeper in services:
            raise StackRuleError(
                (*where, "name"),
                f"{model.name!r} would need the service {sleeper!r} for its first sleep, which "
                f"{services[sleeper]!r} already is",
            )
        if model.sleep.level == 1 and stack.swap.host_memory is None:
            raise StackRuleError(
                (*where, "sleep", "level"),
                "level 1 keeps the weights in pinned host memory: declare swap.host_memory (the host RAM the "
                "stack may pin), or use level 2",
            )


def _check_lora_limits(model: ModelSpec, where: tuple[str | int, ...]) -> None:
    for field_name in ("max_loras", "max_cpu_loras"):
        if getattr(model, field_name) is not None and not model.serves_loras:
            raise StackRuleError(
                (*where, field_name), f"is set but {model.name!r} serves no LoRA adapters (no loras, no runtime_loras)"
            )
    if model.max_loras is not None and model.max_cpu_loras is not None and model.max_cpu_loras < model.max_loras:
        raise StackRuleError(
            (*where, "max_cpu_loras"),
            f"{model.max_cpu_loras} is less than max_loras {model.max_loras}: vLLM keeps every GPU-resident "
            "adapter in host memory too",
        )
    for position, lora in enumerate(model.loras):
        if lora.rank is not None and lora.rank > model.max_lora_rank:
            raise StackRuleError(
                (*where, "loras", position, "rank"),
                f"adapter {lora.name!r} has rank {lora.rank}, above max_lora_rank {model.max_lora_rank}",
            )
