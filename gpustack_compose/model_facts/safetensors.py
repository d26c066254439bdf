"""Exact tensor bytes from safetensors headers: a single file, shards, or an index.

A safetensors file starts with an 8-byte little-endian header length and a
JSON header mapping each tensor name to its dtype, shape and data offsets
(docs/facts.md, "Reading a model's files"). Only the header is read, never
the data: a local file is opened and its first bytes parsed; a Hub file is
read with huggingface_hub's ranged GET (``HfApi.get_safetensors_metadata``),
whose per-file ``TensorInfo`` the same summing code takes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gpustack_compose.errors import ModelFileError
from gpustack_compose.model_facts.record import WeightsFacts

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Largest header gpustack-compose reads (the format allows 100 MB; real
# checkpoints stay below 1 MB even for 2,000-tensor shards).
MAX_HEADER_BYTES = 100_000_000

# Bytes per element of every safetensors dtype (safetensors' Dtype enum);
# sub-byte types are counted by their bits.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip

# One tensor as a header lists it: (dtype, shape).
Tensor = tuple[str, tuple[int, ...]]


def _tensor(name: str, entry: Any, source: str) -> Tensor:
    if not isinstance(entry, dict):
        raise ModelFileError(f"header entry {name!r}: not an object", where=source)
    dtype, shape = entry.get("dtype"), entry.get("shape")
    if dtype not in DTYPE_BITS:
        raise ModelFileError(f"header entry {name!r}: dtype {dtype!r} is not a safetensors dtype", where=source)
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ModelFileError(f"header entry {name!r}: shape {shape!r} is not a list of sizes", where=source)
    return str(dtype), tuple(shape)


def read_header(path: Path) -> dict[str, Tensor]:
    """The tensors a local safetensors file declares (its data is not read)."""
    source = str(path)
    try:
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ModelFileError("shorter than the 8-byte header length: not a safetensors file", where=source)
            (length,) = struct.unpack("<Q", prefix)
            if length == 0 or length > MAX_HEADER_BYTES:
                raise ModelFileError(
                    f"header length {length} is not a safetensors header (at most {MAX_HEADER_BYTES})", where=source
                )
            raw = f.read(length)
    except OSError as exc:
        raise ModelFileError(f"cannot be read ({exc.strerror or exc})", where=source) from None
    if len(raw) < length:
        raise ModelFileError(f"header says {length} bytes, the file holds {len(raw)} after it: truncated", where=source)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError("header is not JSON: not a safetensors file", where=source) from None
    if not isinstance(header, dict):
        raise ModelFileError("header is not an object: not a safetensors file", where=source)
    return {name: _tensor(name, entry, source) for name, entry in header.items() if name != "__metadata__"}


def summed(files: Iterable[Mapping[str, Tensor]]) -> WeightsFacts:
    """Bytes and elements of every tensor of a checkpoint's files."""
    by_dtype: dict[str, int] = {}
    bits = 0
    count = 0
    for tensors in files:
        count += 1
        for dtype, shape in tensors.values():
            elements = math.prod(shape)
            by_dtype[dtype] = by_dtype.get(dtype, 0) + elements
            bits += elements * DTYPE_BITS[dtype]
    return WeightsFacts(
        bytes=math.ceil(bits / 8), params=sum(by_dtype.values()), by_dtype=dict(sorted(by_dtype.items())), files=count
    )


def local_weights(directory: Path) -> WeightsFacts | None:
    """The checkpoint in ``directory``: its index's shards, else
    model.safetensors, else every *.safetensors file; None when it has none."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            loaded = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"cannot be read as JSON ({exc})", where=str(index)) from None
        weight_map = loaded.get("weight_map") if isinstance(loaded, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFileError("weight_map: missing or empty", where=str(index))
        shards = sorted({str(v) for v in weight_map.values()})
        for shard in shards:
            if "/" in shard or shard.startswith("."):
                raise ModelFileError(f"weight_map names {shard!r}, not a file beside the index", where=str(index))
            if not (directory / shard).is_file():
                raise ModelFileError(f"weight_map names {shard}, which is not in {directory}", where=str(index))
        return summed(read_header(directory / shard) for shard in shards)
    single = directory / SINGLE_FILE
    if single.is_file():
        return summed([read_header(single)])
    files = sorted(p for p in directory.glob("*.safetensors") if p.is_file())
    if not files:
        return None
    return summed(read_header(p) for p in files)


def hub_weights(metadata: Any) -> WeightsFacts:
    """``huggingface_hub.SafetensorsRepoMetadata`` -> the same sums."""
    files = []
    for name, file_metadata in sorted(metadata.files_metadata.items()):
        files.append(
            {t: (str(info.dtype), tuple(int(d) for d in info.shape)) for t, info in file_metadata.tensors.items()}
        )
        for _tensor_name, (dtype, _shape) in files[-1].items():
            if dtype not in DTYPE_BITS:
                raise ModelFileError(f"dtype {dtype!r} is not a safetensors dtype", where=name)
    return summed(files)
