"""Free memory on a card, read where the coordinator runs.

On a GPU host, NVML (nvidia-ml-py, NVIDIA's binding): nvmlDeviceGetMemoryInfo's
``free`` is the card's, every process included -- what a wake can map. In a
rehearsal, the simulator's ledger of the same card (``simulator.ledger``):
total - reserve - every server's claim, exactly what a simulated wake is
checked against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from gpustack_compose.simulator.ledger import Gpu, Ledger
from gpustack_compose.swap.config import GpuConfig, SwapConfig


class CardMemoryError(RuntimeError):
    """The card's free memory cannot be read."""


class FreeMemory(Protocol):
    def free_bytes(self, gpu: int) -> int: ...


class NvmlMemory:
    def __init__(self, gpus: dict[int, GpuConfig]) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise CardMemoryError(f"nvidia-ml-py is not installed: {exc}") from None
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
            self._handles = {i: pynvml.nvmlDeviceGetHandleByIndex(g.nvml_index) for i, g in gpus.items()}
        except pynvml.NVMLError as exc:
            raise CardMemoryError(f"NVML: {exc}") from None

    def free_bytes(self, gpu: int) -> int:
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handles[gpu]).free)
        except self._nvml.NVMLError as exc:
            raise CardMemoryError(f"NVML, GPU {gpu}: {exc}") from None


class LedgerMemory:
    def __init__(self, directory: Path, gpus: dict[int, GpuConfig]) -> None:
        self._ledgers = {i: Ledger(directory, Gpu(str(i), g.total_bytes, g.reserve_bytes)) for i, g in gpus.items()}

    def free_bytes(self, gpu: int) -> int:
        return self._ledgers[gpu].free_for("(swap coordinator)")


def open_memory(config: SwapConfig) -> FreeMemory:
    if config.memory_source == "ledger":
        if not config.ledger_dir:
            raise CardMemoryError("memory_source ledger needs GSC_SWAP_LEDGER_DIR")
        return LedgerMemory(Path(config.ledger_dir), config.gpus)
    return NvmlMemory(config.gpus)
