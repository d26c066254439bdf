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
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gpustack_compose import versions, vllm_flags
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.runtime import server_metrics, vllm_env
from gpustack_compose.runtime.state import DockerView, parse_time
from gpustack_compose.spec import model_image
from gpustack_compose.vllm_args import serve_args
from tests.conftest import REPO, SKIP_VLLM_PARSE, in_ci, run_module, unique, write
from tests.test_monitoring import families, shape, simulated_page


@pytest.fixture(scope="session")
def vllm_pythons() -> dict[str, Path]:
    """A vLLM CPU virtualenv per inventoried release (built once; ``make
    test`` says so up front). ``GSC_SKIP_VLLM_PARSE=1`` skips what needs
    them, except in CI."""
    if os.environ.get(SKIP_VLLM_PARSE) == "1" and not in_ci():
        pytest.skip(f"{SKIP_VLLM_PARSE}=1: vLLM's own parser is not run (CI always runs it)")
    progress = lambda message: print(message, file=sys.stderr)  # noqa: E731
    return {release: vllm_env.ensure_python(progress, release) for release in versions.INVENTORIED_VLLM}


def parser_release(image: str) -> str:
    """The release whose parser checks a model: its image's, when that one
    has a parser here, else the default image's."""
    release = versions.image_vllm_release(image)
    return release if release in versions.INVENTORIED_VLLM else versions.VLLM


def every_committed_argument_list() -> dict[str, dict[str, list[str]]]:
    """release -> {stack:model -> its rendered `vllm serve` arguments}."""
    lists: dict[str, dict[str, list[str]]] = {}
    for stack_file in sorted([*(REPO / "stacks").glob("*.yaml"), *(REPO / "tests" / "golden").glob("*/stack.yaml")]):
        loaded = load_and_plan(stack_file)  # with the stack's lock file, where it has one
        stack, plan = loaded.stack, loaded.plan
        for spec in stack.models:
            model = plan.model(spec.name)
            release = parser_release(model_image(stack, spec, elastic=model.elastic))
            lists.setdefault(release, {})[f"{stack_file.relative_to(REPO)}:{spec.name}"] = serve_args(spec, model)
    return lists


def test_vllm_parses_every_committed_argument_list(vllm_pythons: dict[str, Path]) -> None:
    """Each list by the parser of the release its image runs: the default
    image's 0.26.0 for almost all of them."""
    by_release = every_committed_argument_list()
    assert sum(len(lists) for lists in by_release.values()) >= 10
    assert len(by_release[versions.VLLM]) >= 10
    for release, lists in by_release.items():
        results = vllm_env.parse_with_vllm(vllm_pythons[release], lists)
        assert {name: error for name, error in results.items() if error} == {}, release


@pytest.mark.parametrize("release", versions.INVENTORIED_VLLM)
def test_vllm_parser_refuses_what_vllm_would(vllm_pythons: dict[str, Path], release: str) -> None:
    results = vllm_env.parse_with_vllm(
        vllm_pythons[release],
        {
            "typo": ["m", "--max-model-length", "8192"],
            "type": ["m", "--max-num-seqs", "many"],
            "prefix": ["m", "--kv-cache-memory", "5"],
        },
    )
    assert results["typo"] == "unrecognized arguments: --max-model-length 8192"
    assert results["type"] == "argument --max-num-seqs: invalid int value: 'many'"
    # argparse's abbreviations: why the spec refuses prefixes of managed flags
    assert results["prefix"] is None


@pytest.mark.parametrize("release", versions.INVENTORIED_VLLM)
def test_committed_flag_inventories_are_each_releases_parser(vllm_pythons: dict[str, Path], release: str) -> None:
    """data/vllm-flags/<release>.json, which the spec, the CPU adaptation and
    the simulator read, is what that release's own parser reports."""
    committed = json.loads(vllm_flags.inventory_path(release).read_text())
    assert vllm_env.inventory(vllm_pythons[release]) == committed


@pytest.mark.parametrize("release", versions.INVENTORIED_VLLM)
def test_committed_architecture_registries_are_each_releases(vllm_pythons: dict[str, Path], release: str) -> None:
    """data/models/vllm-architectures-<release>.json (the planner's "vLLM does
    not serve it") and config-defaults.json are what that venv's vLLM model
    registry and transformers configuration classes give (``make model-data``)."""
    from gpustack_compose.model_facts import architectures, config

    generated = vllm_env.model_data(vllm_pythons[release], "architectures")
    assert json.loads(generated) == json.loads(architectures.registry_path(release).read_text())
    if release == versions.VLLM:
        defaults = vllm_env.model_data(vllm_pythons[release], "defaults")
        assert json.loads(defaults) == json.loads((config.DATA_DIR / "config-defaults.json").read_text())


def test_the_default_image_release_has_an_inventory() -> None:
    assert versions.image_vllm_release(versions.VLLM_IMAGE) == versions.VLLM
    assert vllm_flags.inventory(versions.VLLM) is not None
    assert versions.VLLM in versions.INVENTORIED_VLLM


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
        up = run_module(["up", "--rehearsal", "--stand-in", "vllm-cpu", "s.yaml", "--json"], workdir, timeout=900)
        assert up.code == 0, up.stderr[-3000:]
        report = json.loads(up.stdout)
        assert report["rehearsal"]["stand_in"] == "vllm-cpu"
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
        # the simulator's /metrics is real vLLM's: every family it serves, with its type, labels and buckets
        page = subprocess.run(
            ["docker", "exec", states["llama-3-2-1b"].container_id, "curl", "-fsS", "http://127.0.0.1:8000/metrics"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        real = families(page)
        for family_name, family in families(simulated_page()).items():
            assert family_name in real, family_name
            sim_type, sim_labels, sim_bounds = shape(family)
            real_type, real_labels, real_bounds = shape(real[family_name])
            assert (sim_type, sim_bounds) == (real_type, real_bounds), family_name
            assert sim_labels <= real_labels, family_name
        # and status reads its real KV cache from it
        assert server_metrics.parse(page).kv_tokens
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
