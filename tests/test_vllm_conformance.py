"""Real vLLM in the loop.

1. No container: every committed stack's `vllm serve` arguments are parsed by
   vLLM's own argument parser (vLLM 0.32, CPU build, in a host virtualenv), so
   GPU-only stacks are checked too; the simulator's flag list is vLLM's.
2. On Docker: a 2-model stack with one LoRA adapter, rendered by the product,
   boots on real `vllm serve` (CPU build, tiny stand-in models) behind the real
   LiteLLM proxy with the rendered healthchecks and chain.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gpustack_compose.loader import load_stack
from gpustack_compose.planner import plan_stack
from gpustack_compose.runtime import vllm_env
from gpustack_compose.runtime.state import DockerView, parse_time
from gpustack_compose.vllm_args import serve_args
from tests.conftest import REPO, run_module, unique, write


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    return vllm_env.ensure_python(lambda message: print(message, file=sys.stderr))


def every_committed_argument_list() -> dict[str, list[str]]:
    lists = {}
    for stack_file in sorted([*(REPO / "stacks").glob("*.yaml"), *(REPO / "tests" / "golden").glob("*/stack.yaml")]):
        stack = load_stack(stack_file)
        plan = plan_stack(stack)
        for spec in stack.models:
            lists[f"{stack_file.relative_to(REPO)}:{spec.name}"] = serve_args(spec, plan.model(spec.name))
    return lists


def test_vllm_parses_every_committed_argument_list(vllm_python: Path) -> None:
    lists = every_committed_argument_list()
    assert len(lists) >= 10
    results = vllm_env.parse_with_vllm(vllm_python, lists)
    assert {name: error for name, error in results.items() if error} == {}


def test_vllm_parser_refuses_what_vllm_would(vllm_python: Path) -> None:
    results = vllm_env.parse_with_vllm(
        vllm_python,
        {
            "typo": ["m", "--max-model-length", "8192"],
            "type": ["m", "--max-num-seqs", "many"],
        },
    )
    assert results["typo"] == "unrecognized arguments: --max-model-length 8192"
    assert results["type"] == "argument --max-num-seqs: invalid int value: 'many'"


def test_simulator_flags_are_vllms(vllm_python: Path) -> None:
    committed = json.loads((REPO / "gpustack_compose" / "simulator" / "vllm_flags.json").read_text())
    assert vllm_env.inventory(vllm_python) == committed


# --- on Docker ----------------------------------------------------------------


@pytest.fixture(scope="session")
def vllm_cpu_images(engine: Any) -> Any:
    from gpustack_compose.runtime.images import ensure

    return ensure(engine, lambda message: print(message, file=sys.stderr), vllm_cpu=True)


def adapter_from_image(engine: Any, image: str, family: str, target: Path) -> None:
    """The tiny LoRA adapter made offline in the image (peft, rank 8)."""
    container = engine.containers.create(image, entrypoint=["true"])
    try:
        stream, _ = container.get_archive(f"/opt/gsc-tiny/adapters/{family}")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            archive.extractall(target.parent, filter="data")
        (target.parent / family).rename(target)
    finally:
        container.remove()


@pytest.mark.docker
def test_real_vllm_conformance(workdir: Path, engine: Any, vllm_cpu_images: Any) -> None:
    name = unique("vllm")
    adapter_from_image(engine, vllm_cpu_images.vllm_cpu, "qwen2", workdir / "adapters" / "invoices")
    config = json.loads((workdir / "adapters" / "invoices" / "adapter_config.json").read_text())
    assert config["r"] <= 8 and set(config["target_modules"]) >= {"q_proj", "v_proj"}
    write(
        workdir / "s.yaml",
        f"""\
name: {name}
gpus: [{{index: 0, type: L40S}}]
models:
  - name: qwen2.5-1.5b
    model: Qwen/Qwen2.5-1.5B-Instruct
    memory: 0.3
    max_model_len: 2048
    max_lora_rank: 8
    loras:
      - name: invoices
        path: ./adapters/invoices
  - name: llama-3.2-1b
    model: meta-llama/Llama-3.2-1B-Instruct
    memory: 0.2
    max_model_len: 2048
proxy:
  workers: 1
""",
    )
    try:
        # real vLLM takes ~1 minute per server on 2 cores
        up = run_module(["up", "--rehearsal", "--engine", "vllm-cpu", "s.yaml", "--json"], workdir, timeout=900)
        assert up.code == 0, up.stderr[-3000:]
        report = json.loads(up.stdout)
        assert report["rehearsal"]["engine"] == "vllm-cpu"
        by = {s["service"]: s for s in report["services"]}
        # real vLLM booted in chain order, per the engine's timestamps
        first, second = by["qwen2-5-1-5b"], by["llama-3-2-1b"]
        assert parse_time(second["started_at"]) >= parse_time(first["healthy_at"])  # type: ignore[operator]
        assert parse_time(by["litellm"]["started_at"]) >= parse_time(second["healthy_at"])  # type: ignore[operator]
        # each server's own /v1/models lists what the plan says it serves
        states = DockerView(engine).services(f"{name}-rehearsal")
        served = {}
        for service in ("qwen2-5-1-5b", "llama-3-2-1b"):
            out = subprocess.run(
                ["docker", "exec", states[service].container_id, "curl", "-fsS", "http://127.0.0.1:8000/v1/models"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            served[service] = sorted(m["id"] for m in json.loads(out.stdout)["data"])
        assert served == {"qwen2-5-1-5b": ["invoices", "qwen2.5-1.5b"], "llama-3-2-1b": ["llama-3.2-1b"]}
        # the exact rendered argument list reached real vLLM (nothing to adapt here)
        assert report["rehearsal"]["service_differences"]["qwen2-5-1-5b"][1:] == []
        logs = run_module(["logs", "--rehearsal", "s.yaml", "qwen2.5-1.5b"], workdir)
        assert "'served_model_name': ['qwen2.5-1.5b']" in logs.stdout
        assert (
            "LoRAModulePath(name='invoices', path='/adapters/invoices', base_model_name='qwen2.5-1.5b'" in logs.stdout
        )
        # through the real LiteLLM proxy: both models and the adapter; no key is refused
        smoke = run_module(["smoke", "--rehearsal", "s.yaml", "--json"], workdir)
        assert smoke.code == 0, smoke.stderr
        results = {r["model"]: r for r in json.loads(smoke.stdout)["smoke"]}
        assert {m: r["ok"] for m, r in results.items()} == {
            "qwen2.5-1.5b": True, "invoices": True, "llama-3.2-1b": True, "(no key)": True,
        }  # fmt: skip
        assert results["invoices"]["detail"] == "answered by invoices"
        assert results["(no key)"]["status"] == 401
    finally:
        down = run_module(["down", "--rehearsal", "s.yaml"], workdir)
        assert down.code == 0, down.stderr
