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


def _human_size(num_bytes: int) -> str:
    """kvcached 0.1.6's size in its messages (kvcached/cli/utils.py, _format_size):
    powers of 1024 named KB, MB, GB, TB."""
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} TB"


def main(argv: list[str]) -> int:
    if argv[:1] == ["limit"] and len(argv) == 3:
        name, size = argv[1], parse_size(argv[2])
        if size is None:
            print(f"kvctl: {argv[2]!r} is not a size like 512M or 2G", file=sys.stderr)
            return 1
        try:
            segment = read_segment(name)
        except (OSError, ValueError, KeyError):
            # kvcached 0.1.6 (kvcached/cli/kvctl.py, cmd_limit): the message, and exit status 0
            print(f"Error: IPC '{name}' not found.", file=sys.stderr)
            return 0
        write_segment(name, int(segment["total"] or 0), int(segment["used"] or 0), size)
        print(f"Updated kv cache limit for {name} to {_human_size(size)} ({size} bytes)")
        return 0
    if argv[:1] == ["list"]:
        # kvcached's shape: one {ipc, limit_bytes, used_bytes} per segment; a
        # server's limit is its own KV space until kvctl sets another
        segments: list[dict[str, object]] = []
        for path in sorted(SHM_DIR.glob("kvcached-*.json")):
            name = path.name.removeprefix("kvcached-").removesuffix(".json")
            seg = read_segment(name)
            limit = seg["limit"] if seg["limit"] is not None else seg["total"]
            segments.append({"ipc": name, "limit_bytes": limit, "used_bytes": seg["used"]})
        if "--json" in argv:
            print(json.dumps(segments, indent=2))
        else:
            for entry in segments:
                print(f"{entry['ipc']}\tlimit {entry['limit_bytes']}\tused {entry['used_bytes']}")
        return 0
    print("usage: kvctl limit <ipc> <size> | kvctl list [--json]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
