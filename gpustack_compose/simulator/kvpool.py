"""kvcached's elastic KV cache, simulated: pages claimed per request from the
GPU's ledger and given back when the request ends.

kvcached reserves a server's KV space as *virtual* memory and maps physical
2 MiB pages only as blocks are allocated, unmapping them when freed; a
per-server segment in /dev/shm (named by KVCACHED_IPC_NAME) carries its total,
used and limit, and ``kvctl limit`` rewrites the limit, which the engine polls
(kvcached: page_allocator resize watcher, every 100 ms). Here the segment is a
JSON file with the same three numbers, the physical pages are claims on the
simulated card's ledger, and a request that finds no free page waits, as
vLLM's scheduler keeps a request waiting when the KV cache is full.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gpustack_compose.simulator.ledger import Cards

PAGE_BYTES = 2 * 1024 * 1024  # kvcached's default page size (KVCACHED_PAGE_SIZE_MB=2)
SHM_DIR = Path(os.environ.get("GSC_SIM_SHM_DIR", "/dev/shm"))
# How long a request waits for pages before it is refused like kvcached does
# ("Cannot get N free blocks from the pool").
WAIT_S = 30.0


def segment_path(ipc_name: str) -> Path:
    return SHM_DIR / f"kvcached-{ipc_name}.json"


def read_segment(ipc_name: str) -> dict[str, int | None]:
    data = json.loads(segment_path(ipc_name).read_text())
    return {"total": int(data["total"]), "used": int(data["used"]),
            "limit": None if data.get("limit") is None else int(data["limit"])}  # fmt: skip


def write_segment(ipc_name: str, total: int, used: int, limit: int | None) -> None:
    path = segment_path(ipc_name)
    temp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    temp.write_text(json.dumps({"total": total, "used": used, "limit": limit}))
    temp.replace(path)


@dataclass
class ElasticKv:
    """One server's KV space: ``virtual_bytes`` reserved, pages mapped on demand."""

    cards: Cards
    instance: str
    model: str
    ipc_name: str
    base_bytes: int  # weights and overheads, held all along
    virtual_bytes: int
    kv_bytes_per_token: int
    used_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        write_segment(self.ipc_name, self.virtual_bytes, 0, None)

    def limit_bytes(self) -> int:
        """The cap kvctl set, else the whole virtual space."""
        try:
            limit = read_segment(self.ipc_name)["limit"]
        except (OSError, ValueError, KeyError):
            limit = None
        return min(self.virtual_bytes, limit) if limit is not None else self.virtual_bytes

    def pages_for(self, tokens: int) -> int:
        return math.ceil(tokens * self.kv_bytes_per_token / PAGE_BYTES) * PAGE_BYTES

    def _publish(self) -> None:
        try:
            limit = read_segment(self.ipc_name)["limit"]
        except (OSError, ValueError, KeyError):
            limit = None
        write_segment(self.ipc_name, self.virtual_bytes, self.used_bytes, limit)

    def acquire(self, tokens: int) -> int | None:
        """Map pages for ``tokens``; waits while the pool or the cap is full.
        Returns the bytes mapped, or None when none came within WAIT_S."""
        need = self.pages_for(tokens)
        deadline = time.monotonic() + WAIT_S
        while True:
            with self.lock:
                if self.used_bytes + need <= self.limit_bytes():
                    ok, _, _ = self.cards.set_claim(self.instance, self.model, self.base_bytes + self.used_bytes + need)
                    if ok:
                        self.used_bytes += need
                        self._publish()
                        return need
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def release(self, mapped: int) -> None:
        """Unmap a finished request's pages: the card gets them back at once."""
        with self.lock:
            self.used_bytes -= mapped
            self.cards.set_claim(self.instance, self.model, self.base_bytes + self.used_bytes)
            self._publish()
