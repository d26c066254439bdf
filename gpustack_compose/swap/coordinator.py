"""Who is awake: the policy, with the server calls, the card's memory and the
clock passed in (so its rules are tested without a GPU or a network).

Per GPU one lock: wakes, sleeps to make room and restarts happen one at a
time on a card. A request for an awake model only counts itself in (no lock,
no await between the check and the count, so nothing can put the model to
sleep in between); a request for a sleeping one takes the lock, makes room,
checks the card, wakes the model and counts itself in before letting go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gpustack_compose.swap.backend import Backend, BackendError, Restarter
from gpustack_compose.swap.config import ModelConfig, SwapConfig
from gpustack_compose.swap.memory import FreeMemory

log = logging.getLogger("gsc.swap")

Phase = Literal["booting", "awake", "asleep", "waking", "sleeping", "failed"]
# What holds (or is about to hold) a model's awake memory: counted against awake_max.
HOLDING: frozenset[Phase] = frozenset({"booting", "awake", "waking"})
# How often a wait re-reads the card and the servers when nothing announces a change.
POLL_S = 0.2
HISTORY = 2000


def _awake(state: ModelState) -> bool:
    return state.phase == "awake"


class Unavailable(RuntimeError):
    """The request cannot be served in time: answered 503 with this message."""


@dataclass
class ModelState:
    config: ModelConfig
    phase: Phase = "booting"
    inflight: int = 0
    last_used: float = 0.0
    slept_once: bool = False  # this process took its (slow) first sleep
    wakes: int = 0
    sleeps: int = 0
    failed_wakes: int = 0
    restarts: int = 0
    last_wake_at: float | None = None  # wall clock
    last_wake_s: float | None = None
    last_error: str | None = None


@dataclass
class Coordinator:
    config: SwapConfig
    backend: Backend
    memory: FreeMemory
    restarter: Restarter
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    models: dict[str, ModelState] = field(init=False)
    history: deque[dict[str, object]] = field(init=False)

    def __post_init__(self) -> None:
        self.models = {s: ModelState(m) for s, m in self.config.models.items()}
        self._locks = {g: asyncio.Lock() for g in self.config.gpus}
        self._changed = {g: asyncio.Event() for g in self.config.gpus}
        self.history = deque(maxlen=HISTORY)

    # -- reading the servers -------------------------------------------------
    async def reconcile(self) -> None:
        """Align each model's phase with what its server says, where no
        transition of ours is under way: a container Docker restarted after a
        crash boots awake; one that is down is booting (it will claim its
        memory when it comes up, so it keeps its slot)."""
        for state in self.models.values():
            before = state.phase
            if before in ("waking", "sleeping", "failed"):
                continue
            sleeping = await self.backend.is_sleeping(state.config)
            if state.phase != before:
                continue  # a transition of ours began meanwhile: it knows better
            phase: Phase = "booting" if sleeping is None else "asleep" if sleeping else "awake"
            if phase != before:
                if before == "asleep" and phase == "awake":
                    state.slept_once = False  # a fresh process: its next sleep is a first one
                self._set(state, phase)

    async def heal(self) -> None:
        """Requests held by a server that went to sleep behind our back (a
        first-sleep step run again by a later `up`): wake it, and vLLM answers
        them right after (docs/h200-sleep-vllm-0.26.0.md, E3b)."""
        for state in self.models.values():
            if state.phase != "asleep" or not state.inflight:
                continue
            lock = self._locks[state.config.gpu]
            async with lock:
                if state.phase == "asleep" and state.inflight:
                    deadline = self.clock() + self.config.request_timeout_s
                    await self._make_room(state, deadline)
                    await self._wake(state, deadline)

    # -- the request path ----------------------------------------------------
    async def acquire(self, service: str) -> ModelState:
        """Wait until the model is awake and count one request in; release()
        must follow. Raises Unavailable when that does not happen in time."""
        state = self.models[service]
        deadline = self.clock() + self.config.request_timeout_s
        while True:
            if state.phase == "awake":
                state.inflight += 1
                state.last_used = self.clock()
                return state
            lock = self._locks[state.config.gpu]
            try:
                await asyncio.wait_for(lock.acquire(), timeout=max(0.0, deadline - self.clock()))
            except TimeoutError:
                raise Unavailable(self._timeout_message(state)) from None
            try:
                if _awake(state):  # woken while this request waited for the lock
                    continue
                if state.phase == "booting":
                    await self._wait_booted(state, deadline)
                    continue
                await self._make_room(state, deadline)
                await self._wake(state, deadline)
                state.inflight += 1
                state.last_used = self.clock()
                return state
            finally:
                lock.release()

    def release(self, state: ModelState) -> None:
        state.inflight -= 1
        state.last_used = self.clock()
        self._changed[state.config.gpu].set()

    # -- making room and waking ----------------------------------------------
    def _on_gpu(self, gpu: int) -> list[ModelState]:
        return [s for s in self.models.values() if s.config.gpu == gpu]

    async def _make_room(self, wanted: ModelState, deadline: float) -> None:
        gpu = self.config.gpus[wanted.config.gpu]
        while True:
            holding = [s for s in self._on_gpu(gpu.index) if s.phase in HOLDING and s is not wanted]
            free = self.memory.free_bytes(gpu.index)
            if len(holding) < gpu.awake_max and free >= wanted.config.wake_bytes:
                return
            idle = sorted((s for s in holding if s.phase == "awake" and s.inflight == 0), key=lambda s: s.last_used)
            if idle:
                await self._sleep(idle[0])
                continue
            if self.clock() >= deadline:
                raise Unavailable(self._no_room_message(wanted, holding, free))
            await self._wait_change(gpu.index, deadline)

    async def _wake(self, state: ModelState, deadline: float) -> None:
        """Wake (and for level 2 reload the weights). A failed wake leaves
        vLLM's process stuck holding memory (docs/h200-sleep-vllm-0.26.0.md,
        E5): restart the container and wait for the fresh, awake server."""
        self._set(state, "waking")
        started = self.clock()
        try:
            await self.backend.wake(state.config)
            if state.config.level == 2:
                await self.backend.reload_weights(state.config)
        except BackendError as exc:
            state.failed_wakes += 1
            state.last_error = str(exc)
            log.error("wake of %s failed, restarting its container: %s", state.config.name, exc)
            await self._restart(state, deadline)
            return
        state.wakes += 1
        state.last_wake_s = self.clock() - started
        state.last_wake_at = self.wall()
        self._set(state, "awake")
        log.info("woke %s in %.3f s", state.config.name, state.last_wake_s)

    async def _sleep(self, state: ModelState) -> None:
        self._set(state, "sleeping")
        started = self.clock()
        try:
            await self.backend.sleep(state.config, first=not state.slept_once)
        except BackendError as exc:
            state.last_error = str(exc)
            log.error("sleep of %s failed, restarting its container: %s", state.config.name, exc)
            # Its memory is in an unknown state; a fresh process is a known one.
            await self._restart(state, self.clock() + state.config.boot_timeout_s)
            return
        state.sleeps += 1
        state.slept_once = True
        self._set(state, "asleep")
        log.info("put %s to sleep in %.3f s", state.config.name, self.clock() - started)

    async def _restart(self, state: ModelState, deadline: float) -> None:
        self._set(state, "failed")
        try:
            await self.restarter.restart(state.config)
        except BackendError as exc:
            state.last_error = str(exc)
            raise Unavailable(f"{state.config.name}: its wake failed and the restart failed too: {exc}") from None
        state.restarts += 1
        state.slept_once = False
        self._set(state, "booting")
        await self._wait_booted(state, max(deadline, self.clock() + state.config.boot_timeout_s))

    async def _wait_booted(self, state: ModelState, deadline: float) -> None:
        """A (re)started server comes up awake; until then it keeps its slot."""
        while True:
            sleeping = await self.backend.is_sleeping(state.config)
            if sleeping is not None:
                self._set(state, "asleep" if sleeping else "awake")
                return
            if self.clock() >= deadline:
                raise Unavailable(f"{state.config.name} is starting and did not come up in time")
            await asyncio.sleep(POLL_S)

    async def _wait_change(self, gpu: int, deadline: float) -> None:
        event = self._changed[gpu]
        event.clear()
        try:
            await asyncio.wait_for(event.wait(), timeout=min(POLL_S * 5, max(0.0, deadline - self.clock())))
        except TimeoutError:
            await self.reconcile()

    # -- idle models go to sleep ---------------------------------------------
    async def sleep_idle(self) -> None:
        """One pass: every awake model idle for its idle_s goes to sleep."""
        now = self.clock()
        for state in list(self.models.values()):
            if state.phase != "awake" or state.inflight or now - state.last_used < state.config.idle_s:
                continue
            lock = self._locks[state.config.gpu]
            if lock.locked():
                continue  # a wake is under way on this card; the next pass will see it
            async with lock:
                if (
                    state.phase == "awake"
                    and not state.inflight
                    and self.clock() - state.last_used >= state.config.idle_s
                ):
                    await self._sleep(state)

    async def run_idle_loop(self, period_s: float = 1.0) -> None:
        """Every period: read the servers, wake any holding requests, put idle ones to sleep."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.reconcile()
                await self.heal()
                await self.sleep_idle()
            except Unavailable as exc:  # a failed sleep or wake whose restart failed: said in /state
                log.error("%s", exc)

    # -- what status and the rehearsal read ----------------------------------
    def _set(self, state: ModelState, phase: Phase) -> None:
        state.phase = phase
        gpu = state.config.gpu
        awake = sorted(s.config.name for s in self._on_gpu(gpu) if s.phase in HOLDING)
        self.history.append({"t": round(self.wall(), 3), "gpu": gpu, "model": state.config.name, "phase": phase,
                             "awake": awake})  # fmt: skip
        self._changed[gpu].set()

    def snapshot(self) -> dict[str, object]:
        models = {
            s.config.name: {
                "service": s.config.service,
                "gpu": s.config.gpu,
                "level": s.config.level,
                "phase": s.phase,
                "inflight": s.inflight,
                "wakes": s.wakes,
                "sleeps": s.sleeps,
                "failed_wakes": s.failed_wakes,
                "restarts": s.restarts,
                "last_wake_at": s.last_wake_at,
                "last_wake_s": s.last_wake_s,
                "last_error": s.last_error,
            }
            for s in self.models.values()
        }
        gpus = {
            str(g.index): {"awake_max": g.awake_max,
                           "awake": sorted(s.config.name for s in self._on_gpu(g.index) if s.phase in HOLDING)}
            for g in self.config.gpus.values()
        }  # fmt: skip
        return {"stack": self.config.stack, "models": models, "gpus": gpus}

    def _timeout_message(self, state: ModelState) -> str:
        return (
            f"{state.config.name} is asleep and GPU {state.config.gpu} stayed busy with other wakes for "
            f"{self.config.request_timeout_s} s (swap.request_timeout_s)"
        )

    def _no_room_message(self, wanted: ModelState, holding: list[ModelState], free: int) -> str:
        gpu = self.config.gpus[wanted.config.gpu]
        busy = ", ".join(f"{s.config.name} ({s.phase}, {s.inflight} in flight)" for s in holding) or "none"
        return (
            f"{wanted.config.name} cannot wake on GPU {gpu.index} within {self.config.request_timeout_s} s: it needs "
            f"{wanted.config.wake_bytes / 2**30:.2f} GiB free, the card has {free / 2**30:.2f} GiB; awake: {busy} "
            f"(awake_max {gpu.awake_max}); nothing idle could be put to sleep"
        )
