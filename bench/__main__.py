"""`python -m bench [NAME ...]`: run the benchmarks, write bench/RESULTS.md."""

from __future__ import annotations

import sys
import time

from bench import adapters, boot, gates, generator, proxy, recycling, swap
from bench.common import write_results

# Cheapest first; `python -m bench NAME` re-runs one and keeps the others' results.
BENCHMARKS = {
    "generator": generator.run,
    "adapters": adapters.run,
    "gates": gates.run,
    "swap": swap.run,
    "proxy": proxy.run,
    "recycling": recycling.run,
    "boot": boot.run,
}


def main(names: list[str]) -> int:
    chosen = names or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    sections = {name: BENCHMARKS[name]() for name in chosen}
    write_results(sections, list(BENCHMARKS), time.strftime("%Y-%m-%d", time.gmtime()))
    print("wrote bench/RESULTS.md")
    return 0 if all(s.met is not False for s in sections.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
