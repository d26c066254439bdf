"""The simulated GPUs: one JSON ledger per GPU on a volume the servers share.

Each server claims bytes under its identity; "free" is total - reserve - the
sum of the other servers' claims, which is what ``cudaMemGetInfo`` reports to
a process on a real card. Every read-modify-write holds an exclusive
``fcntl.flock`` on a lock file next to the ledger, so servers booting together
see each other's claims in a definite order. A tensor-parallel server has a
worker on each of its cards: ``Cards`` makes the same claim on every ledger,
all or nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

GiB = 1024**3


@dataclass(frozen=True)
class Gpu:
    index: str
    total_bytes: int
    reserve_bytes: int


class Ledger:
    def __init__(self, directory: Path, gpu: Gpu) -> None:
        self.gpu = gpu
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"gpu-{gpu.index}.json"
        self.lock_path = directory / f"gpu-{gpu.index}.lock"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, object]]]:
        with self.lock_path.open("a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                claims = self._read()
                yield claims
                self._write(claims)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        claims = data.get("claims", {})
        return claims if isinstance(claims, dict) else {}

    def _write(self, claims: dict[str, dict[str, object]]) -> None:
        temp = self.path.with_suffix(f".tmp{os.getpid()}")
        temp.write_text(json.dumps({"gpu": self.gpu.index, "total_bytes": self.gpu.total_bytes, "claims": claims}))
        temp.replace(self.path)

    def free_for(self, instance: str) -> int:
        """Free memory as ``instance`` would see it (its own old claim, e.g.
        from before a restart, is gone with the old process)."""
        with self._locked() as claims:
            claims.pop(instance, None)
            return self._free(claims)

    def _free(self, claims: dict[str, dict[str, object]]) -> int:
        held = sum(int(str(c.get("bytes", 0))) for c in claims.values())
        return self.gpu.total_bytes - self.gpu.reserve_bytes - held

    def claim_if_free(self, instance: str, model: str, requested: int, holds: int) -> tuple[bool, int]:
        """vLLM's startup check and the allocation after it, atomically:
        refuse when free < requested, else record ``holds`` bytes."""
        with self._locked() as claims:
            claims.pop(instance, None)
            free = self._free(claims)
            if free < requested:
                return False, free
            claims[instance] = {"bytes": holds, "model": model, "since": time.time()}
            return True, free

    def others(self, instance: str) -> int:
        """Bytes every other server holds right now (what a device-wide
        memory reading includes besides this process)."""
        with self._locked() as claims:
            return sum(int(str(c.get("bytes", 0))) for name, c in claims.items() if name != instance)

    def set_claim(self, instance: str, model: str, holds: int) -> tuple[bool, int]:
        """Grow or shrink this server's memory; refused (CUDA out of memory)
        when the growth does not fit. Returns (ok, free before the change)."""
        with self._locked() as claims:
            mine = int(str(claims.get(instance, {}).get("bytes", 0)))
            free = self._free(claims)
            if holds - mine > free:
                return False, free
            claims[instance] = {"bytes": holds, "model": model, "since": time.time()}
            return True, free

    def release(self, instance: str) -> None:
        with self._locked() as claims:
            claims.pop(instance, None)

    def claims(self) -> dict[str, dict[str, object]]:
        with self._locked() as claims:
            return dict(claims)


class Cards:
    """The ledgers of every card a server runs on (one, or its tensor-parallel
    group), claimed together; the reported free memory is the tightest card's."""

    def __init__(self, directory: Path, gpus: list[Gpu]) -> None:
        self.ledgers = [Ledger(directory, gpu) for gpu in gpus]

    def claim_if_free(self, instance: str, model: str, requested: int, holds: int) -> tuple[bool, int, Gpu]:
        """vLLM's startup check on every card (each worker checks its own)."""
        seen: list[tuple[int, Ledger]] = []
        for ledger in self.ledgers:
            ok, free = ledger.claim_if_free(instance, model, requested, holds)
            if not ok:
                for _, claimed in seen:
                    claimed.release(instance)
                return False, free, ledger.gpu
            seen.append((free, ledger))
        free, tightest = min(seen, key=lambda item: item[0])
        return True, free, tightest.gpu

    def set_claim(self, instance: str, model: str, holds: int) -> tuple[bool, int, Gpu]:
        for ledger in self.ledgers:
            ok, free = ledger.set_claim(instance, model, holds)
            if not ok:
                return False, free, ledger.gpu
        return True, 0, self.ledgers[0].gpu

    def others(self, instance: str) -> int:
        """What the other servers hold on the busiest of this server's cards."""
        return max(ledger.others(instance) for ledger in self.ledgers)

    def release(self, instance: str) -> None:
        for ledger in self.ledgers:
            ledger.release(instance)
