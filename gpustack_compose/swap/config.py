"""The coordinator's configuration: ``swap/config.json``, rendered from the plan."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """swap/config.json is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class GpuConfig:
    index: int  # CUDA index on the host (what the stack file names)
    nvml_index: int  # the same card as NVML numbers it where the coordinator runs
    awake_max: int
    total_bytes: int
    reserve_bytes: int


@dataclass(frozen=True)
class ModelConfig:
    name: str
    service: str
    url: str  # http://<service>:8000
    gpu: int
    level: int
    idle_s: int
    wake_bytes: int  # free memory the card must have before the wake
    boot_timeout_s: int
    sleep_timeout_s: int  # the first sleep of a process pins host memory: slow


@dataclass(frozen=True)
class SwapConfig:
    stack: str
    request_timeout_s: int
    gpus: dict[int, GpuConfig]
    models: dict[str, ModelConfig]  # by service
    memory_source: str = "nvml"  # nvml | ledger
    ledger_dir: str = ""
    restart: str = "docker"  # docker | none
    extra: dict[str, Any] = field(default_factory=dict)


def _int(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}.{key}: expected a non-negative integer, got {value!r}")
    return value


def _str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def parse(data: object, env: dict[str, str] | None = None) -> SwapConfig:
    """The configuration, with the rehearsal's overrides from ``env``
    (GSC_SWAP_MEMORY=ledger, GSC_SWAP_LEDGER_DIR, GSC_SWAP_RESTART)."""
    env = env or {}
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a JSON object")
    gpus: dict[int, GpuConfig] = {}
    for position, raw in enumerate(data.get("gpus") or []):
        where = f"gpus[{position}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected an object")
        gpu = GpuConfig(
            _int(raw, "index", where), _int(raw, "nvml_index", where), max(1, _int(raw, "awake_max", where)),
            _int(raw, "total_bytes", where), _int(raw, "reserve_bytes", where),
        )  # fmt: skip
        gpus[gpu.index] = gpu
    models: dict[str, ModelConfig] = {}
    for position, raw in enumerate(data.get("models") or []):
        where = f"models[{position}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected an object")
        model = ModelConfig(
            name=_str(raw, "name", where),
            service=_str(raw, "service", where),
            url=_str(raw, "url", where).rstrip("/"),
            gpu=_int(raw, "gpu", where),
            level=_int(raw, "level", where),
            idle_s=_int(raw, "idle_s", where),
            wake_bytes=_int(raw, "wake_bytes", where),
            boot_timeout_s=_int(raw, "boot_timeout_s", where),
            sleep_timeout_s=_int(raw, "sleep_timeout_s", where),
        )
        if model.gpu not in gpus:
            raise ConfigError(f"{where}.gpu: GPU {model.gpu} is not in gpus")
        if model.level not in (1, 2):
            raise ConfigError(f"{where}.level: expected 1 or 2, got {model.level}")
        models[model.service] = model
    if not models:
        raise ConfigError("models: the coordinator has no swappable model to serve")
    memory = env.get("GSC_SWAP_MEMORY") or str(data.get("memory_source") or "nvml")
    if memory not in ("nvml", "ledger"):
        raise ConfigError(f"memory_source: expected nvml or ledger, got {memory!r}")
    restart = env.get("GSC_SWAP_RESTART") or str(data.get("restart") or "docker")
    if restart not in ("docker", "none"):
        raise ConfigError(f"restart: expected docker or none, got {restart!r}")
    return SwapConfig(
        stack=_str(data, "stack", "config"),
        request_timeout_s=max(1, _int(data, "request_timeout_s", "config")),
        gpus=gpus,
        models=models,
        memory_source=memory,
        ledger_dir=env.get("GSC_SWAP_LEDGER_DIR", ""),
        restart=restart,
    )


def load(path: Path, env: dict[str, str] | None = None) -> SwapConfig:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
    try:
        return parse(data, env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
