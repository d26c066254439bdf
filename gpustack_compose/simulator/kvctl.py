"""``kvctl`` for the simulator: ``limit <ipc> <size>`` and ``list [--json]``,
on the segments ``kvpool`` keeps in /dev/shm (kvcached's kvctl: ``limit``
takes sizes like 512M or 2G)."""

from __future__ import annotations

import json
import re
import sys

from gpustack_compose.simulator.kvpool import SHM_DIR, read_segment, write_segment

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def main(argv: list[str]) -> int:
    if argv[:1] == ["limit"] and len(argv) == 3:
        name, size = argv[1], parse_size(argv[2])
        if size is None:
            print(f"kvctl: {argv[2]!r} is not a size like 512M or 2G", file=sys.stderr)
            return 1
        try:
            segment = read_segment(name)
        except (OSError, ValueError, KeyError):
            print(f"kvctl: no IPC segment {name!r} in {SHM_DIR}", file=sys.stderr)
            return 1
        write_segment(name, int(segment["total"] or 0), int(segment["used"] or 0), size)
        print(f"limit of {name} set to {size} bytes")
        return 0
    if argv[:1] == ["list"]:
        segments = {}
        for path in sorted(SHM_DIR.glob("kvcached-*.json")):
            name = path.name.removeprefix("kvcached-").removesuffix(".json")
            segments[name] = read_segment(name)
        if "--json" in argv:
            print(json.dumps(segments, sort_keys=True))
        else:
            for name, seg in segments.items():
                print(f"{name}\ttotal {seg['total']}\tused {seg['used']}\tlimit {seg['limit']}")
        return 0
    print("usage: kvctl limit <ipc> <size> | kvctl list [--json]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
