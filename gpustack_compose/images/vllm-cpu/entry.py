"""Entrypoint of the vLLM CPU rehearsal image: put a tiny stand-in where the
rendered command expects the real model, then run the real ``vllm serve`` with
the argument list unchanged.

The model argument stays what production uses (``Qwen/Qwen2.5-14B-Instruct``
or ``/models/custom``): for a repo id the stand-in is written into the Hugging
Face cache as a snapshot of that repo (HF_HUB_OFFLINE=1 resolves it there),
for a path it is written to that path. The family (llama, mistral, qwen2,
qwen3) comes from GSC_TINY_FAMILY; the context length from GSC_TINY_CONTEXT so
that ``--max-model-len`` is valid for the stand-in too.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

TINY = Path("/opt/gsc-tiny")
SNAPSHOT = "0" * 40  # the one "revision" of every stand-in


def model_argument(argv: list[str]) -> str | None:
    """The model vllm serve will load: the first argument (where the rendered
    command puts it), else the value of --model. No guessing past flags: which
    of them take a value is vLLM's business."""
    if argv and not argv[0].startswith("-"):
        return argv[0]
    for i, arg in enumerate(argv):
        if arg == "--model" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
    return None


def target_dir(model: str) -> Path:
    if model.startswith(("/", "./", "../")):
        return Path(model)
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "/root/.cache/huggingface")) / "hub")
    repo = hub / ("models--" + model.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return repo / "snapshots" / SNAPSHOT


def materialise(model: str, family: str, context: int) -> Path:
    source = TINY / "models" / family
    target = target_dir(model)
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        shutil.copyfile(item, target / item.name)
    config = json.loads((source / "config.json").read_text())
    config["max_position_embeddings"] = max(context, int(config.get("max_position_embeddings", 0)))
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    family = os.environ.get("GSC_TINY_FAMILY", "llama")
    if not (TINY / "models" / family).is_dir():
        print(f"gpustack-compose: no tiny stand-in for family {family!r}; using llama", flush=True)
        family = "llama"
    context = int(os.environ.get("GSC_TINY_CONTEXT", "4096"))
    model = model_argument(argv)
    if model is not None:
        where = materialise(model, family, context)
        print(f"gpustack-compose: serving a tiny random-weight {family} stand-in for {model} (at {where})", flush=True)
    os.execvp("vllm", ["vllm", "serve", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
