"""vLLM's sleep mode, simulated (vLLM 0.26.0, measured on an H200:
docs/h200-sleep-vllm-0.26.0.md).

- ``POST /sleep?level=1|2`` frees all but the sleeper's residue (956-970 MiB);
  the first sleep of a level-1 process is slow (it pins the host buffers).
- ``POST /wake_up`` maps the memory back. When the card cannot hold it, vLLM
  answers 500 (``CUDA Error: out of memory at .../cumem_allocator.cpp:163``)
  after mapping what it could, and the process is stuck for good: it keeps
  that memory, ``/is_sleeping`` stays true, ``/health`` 200, every request
  hangs; a second wake fails with ``invalid argument at ...:169``.
- After a level-2 wake the weights are gone: requests answer 200 with empty
  text until ``POST /collective_rpc {"method": "reload_weights"}``, which
  leaves the process 1.5 GiB above its pre-sleep figure.
- A request that arrives while asleep is held and answered after the wake.

Timings and sizes come from the environment (the rehearsal sets them from
``calibration``): GSC_SIM_SLEEPER_BYTES, GSC_SIM_FIRST_SLEEP_S,
GSC_SIM_SLEEP_S, GSC_SIM_WAKE_S, GSC_SIM_RELOAD_S, GSC_SIM_RELOAD_EXTRA_BYTES.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from gpustack_compose.simulator.ledger import Cards

MiB = 1024**2
OOM_AT_WAKE = "CUDA Error: out of memory at /workspace/csrc/cumem_allocator.cpp:163"
STUCK_AT_WAKE = "CUDA Error: invalid argument at /workspace/csrc/cumem_allocator.cpp:169"
# A stuck process holds a request until the client gives up.
HANG_S = 3600.0


@dataclass(frozen=True)
class SleepTimings:
    sleeper_bytes: int = 970 * MiB
    first_sleep_s: float = 1.0
    sleep_s: float = 0.6
    wake_s: float = 0.7
    reload_s: float = 5.0
    reload_extra_bytes: int = 1506 * MiB

    @classmethod
    def from_env(cls, env: dict[str, str]) -> SleepTimings:
        d = cls()
        return cls(
            sleeper_bytes=int(env.get("GSC_SIM_SLEEPER_BYTES", d.sleeper_bytes)),
            first_sleep_s=float(env.get("GSC_SIM_FIRST_SLEEP_S", d.first_sleep_s)),
            sleep_s=float(env.get("GSC_SIM_SLEEP_S", d.sleep_s)),
            wake_s=float(env.get("GSC_SIM_WAKE_S", d.wake_s)),
            reload_s=float(env.get("GSC_SIM_RELOAD_S", d.reload_s)),
            reload_extra_bytes=int(env.get("GSC_SIM_RELOAD_EXTRA_BYTES", d.reload_extra_bytes)),
        )


class WakeFailed(Exception):
    """vLLM's 500 from /wake_up; the message is its text."""


@dataclass
class SleepMode:
    cards: Cards | None
    instance: str
    model: str
    awake_bytes: int  # what the booted server holds
    timings: SleepTimings
    level: int = 0  # 0: awake
    stuck: bool = False
    weights_lost: bool = False  # level 2 woken without reload_weights
    slept_before: bool = False
    sleeps: int = 0
    wakes: int = 0
    failed_wakes: int = 0
    fail_first_wake: bool = False  # GSC_SIM_FAIL=wake-once: this process's first wake fails as above
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _awake: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._awake.set()

    @property
    def sleeping(self) -> bool:
        return self.level > 0 or self.stuck

    def _claim(self, holds: int) -> tuple[bool, int]:
        if self.cards is None:
            return True, 0
        ok, free, _gpu = self.cards.set_claim(self.instance, self.model, holds)
        return ok, free

    def sleep(self, level: int) -> None:
        with self._lock:
            if self.stuck or self.level:
                return  # vLLM: "Executor is already sleeping." -- 200, nothing freed
            first = level == 1 and not self.slept_before
            time.sleep(self.timings.first_sleep_s if first else self.timings.sleep_s if level == 1 else 0.05)
            self._claim(self.timings.sleeper_bytes)
            self.level = level
            self.slept_before = self.slept_before or level == 1
            self.sleeps += 1
            self._awake.clear()

    def wake(self) -> None:
        with self._lock:
            if self.stuck:
                self.failed_wakes += 1
                raise WakeFailed(STUCK_AT_WAKE)
            if not self.level:
                return
            time.sleep(self.timings.wake_s if self.level == 1 else 0.08)
            ok, free = self._claim(self.awake_bytes)
            if self.fail_first_wake and not self.wakes and not self.failed_wakes:
                ok, free = False, self.awake_bytes // 2
                self._claim(self.timings.sleeper_bytes)
            if not ok:
                # Mapped what fit, then failed: stuck with that memory, for good.
                self._claim(self.timings.sleeper_bytes + max(0, free))
                self.stuck = True
                self.failed_wakes += 1
                raise WakeFailed(OOM_AT_WAKE)
            self.weights_lost = self.level == 2
            self.level = 0
            self.wakes += 1
            self._awake.set()

    def reload_weights(self) -> bool:
        with self._lock:
            if self.stuck or self.level:
                return False
            time.sleep(self.timings.reload_s)
            if self.weights_lost:
                self.awake_bytes += self.timings.reload_extra_bytes
                self._claim(self.awake_bytes)
            self.weights_lost = False
            return True

    def wait_awake(self) -> bool:
        """Hold a request while asleep (vLLM answers it after the wake); a
        stuck process never answers."""
        if self._awake.is_set() and not self.stuck:
            return True
        if self.stuck:
            time.sleep(HANG_S)
            return False
        self._awake.wait()
        return not self.stuck
