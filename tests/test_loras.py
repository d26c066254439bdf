"""Multi-LoRA: stack rules, files on disk, render forms, many adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpustack_compose.contract import COMPOSE_FILE, LITELLM_CONFIG
from gpustack_compose.loader import load_stack
from gpustack_compose.planner import plan_stack
from gpustack_compose.render import render
from tests.conftest import run_cli, tree, write

BASE = """\
name: lora
gpus: [{index: 0, type: L40S}]
models:
  - name: llama
    model: meta-llama/Llama-3.1-8B-Instruct
    memory: 0.6
    max_model_len: 8192
    max_lora_rank: 16
"""


def adapter(folder: Path, rank: int = 8, **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": rank, "target_modules": ["q_proj", "v_proj"], **extra}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def project(workdir: Path) -> Path:
    (workdir / ".git").mkdir()  # the project root adapters must stay inside
    adapter(workdir / "adapters" / "invoices")
    adapter(workdir / "adapters" / "big", rank=32)
    (workdir / "adapters" / "empty").mkdir()
    (workdir / "runtime").mkdir()
    return workdir


CASES = {
    "missing folder": (
        "    loras: [{name: a, path: ./adapters/nope}]\n",
        "s.yaml:9:29: models[0].loras[0].path: ./adapters/nope does not exist (paths are relative to the stack file)",
    ),
    "no adapter config": (
        "    loras: [{name: a, path: ./adapters/empty}]\n",
        "s.yaml:9:29: models[0].loras[0].path: ./adapters/empty holds no adapter_config.json",
    ),
    "rank above max_lora_rank": (
        "    loras: [{name: a, path: ./adapters/big}]\n",
        "s.yaml:9:29: models[0].loras[0].path: ./adapters/big has rank 32 (r in adapter_config.json), above "
        "max_lora_rank 16: raise max_lora_rank (every GPU slot is sized for it)",
    ),
    "path traversal": (
        "    loras: [{name: a, path: ../../etc}]\n",
        "s.yaml:9:29: models[0].loras[0].path: ../../etc leads outside the project folder {root}/ "
        "(adapters must live in it)",
    ),
    "absolute path": (
        "    loras: [{name: a, path: /etc/passwd}]\n",
        "s.yaml:9:29: models[0].loras[0].path: '/etc/passwd' is absolute; give a path relative to the stack file",
    ),
    "path and repo": (
        "    loras: [{name: a, path: ./adapters/invoices, repo: org/x}]\n",
        "s.yaml:9:13: models[0].loras[0]: adapter 'a' needs exactly one of path (a folder) or repo (a Hugging Face "
        "repo id)",
    ),
    "neither path nor repo": (
        "    loras: [{name: a}]\n",
        "s.yaml:9:13: models[0].loras[0]: adapter 'a' needs exactly one of path (a folder) or repo (a Hugging Face "
        "repo id)",
    ),
    "bad repo id": (
        "    loras: [{name: a, repo: 'not a repo'}]\n",
        "s.yaml:9:29: models[0].loras[0].repo: 'not a repo' is not a Hugging Face repo id like org/name",
    ),
    "repo rank above max": (
        "    loras: [{name: a, repo: org/adapter, rank: 64}]\n",
        "s.yaml:9:48: models[0].loras[0].rank: adapter 'a' has rank 64, above max_lora_rank 16",
    ),
    "rank not a vLLM rank": (
        "    loras: [{name: a, repo: org/adapter}]\n",
        "s.yaml:8:20: models[0].max_lora_rank: 24 is not one of 1, 8, 16, 32, 64, 128, 256, 320 or 512",
    ),
    "cpu cache smaller than gpu slots": (
        "    loras: [{name: a, repo: org/adapter}]\n    max_loras: 4\n    max_cpu_loras: 2\n",
        "s.yaml:11:20: models[0].max_cpu_loras: 2 is less than max_loras 4: vLLM keeps every GPU-resident adapter "
        "in host memory too",
    ),
    "limits without adapters": (
        "    max_loras: 4\n",
        "s.yaml:9:16: models[0].max_loras: is set but 'llama' serves no LoRA adapters (no loras, no runtime_loras)",
    ),
    "runtime dir missing": (
        "    runtime_loras: {dir: ./nowhere}\n",
        "s.yaml:9:26: models[0].runtime_loras.dir: ./nowhere is not a folder (paths are relative to the stack file)",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_adapter_problems_are_one_line_exit_1(project: Path, case: str) -> None:
    extra, message = CASES[case]
    base = BASE.replace("max_lora_rank: 16", "max_lora_rank: 24") if case == "rank not a vLLM rank" else BASE
    write(project / "s.yaml", base + extra)
    before = tree(project)
    result = run_cli(["render", "s.yaml"], project)
    assert result.code == 1, result.stdout
    assert result.stderr == "error: " + message.format(dir=project.as_posix(), root=project.name) + "\n"
    assert tree(project) == before


def test_symlink_out_of_the_project_is_refused(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = adapter(tmp_path_factory.mktemp("elsewhere") / "a")
    (project / "adapters" / "sneaky").symlink_to(outside)
    write(project / "s.yaml", BASE + "    loras: [{name: a, path: ./adapters/sneaky}]\n")
    result = run_cli(["plan", "s.yaml"], project)
    assert result.code == 1
    assert "leads outside the project folder" in result.stderr


def test_render_forms_of_adapters(project: Path) -> None:
    adapter(project / "runtime" / "late")
    write(
        project / "s.yaml",
        BASE
        + """\
    loras:
      - {name: invoices, path: ./adapters/invoices}
      - {name: hub, repo: org/hub-adapter, rank: 8}
      - {name: late, path: ./runtime/late}
    runtime_loras: {dir: ./runtime}
""",
    )
    stack = load_stack(project / "s.yaml")
    plan = plan_stack(stack)
    files = render(stack, plan, "s.yaml")
    service = yaml.safe_load(files[COMPOSE_FILE])["services"]["llama"]
    command = service["command"]
    modules = [json.loads(a) for a in command[command.index("--lora-modules") + 1 :]]
    assert modules == [
        {"name": "invoices", "path": "/adapters/invoices", "base_model_name": "llama"},
        {"name": "hub", "path": "org/hub-adapter", "base_model_name": "llama"},
        {"name": "late", "path": "/adapters/runtime/late", "base_model_name": "llama"},
    ]
    binds = [v for v in service["volumes"] if v["type"] == "bind"]
    assert binds == [
        {"type": "bind", "source": "./adapters/invoices", "target": "/adapters/invoices", "read_only": True},
        {"type": "bind", "source": "./runtime", "target": "/adapters/runtime", "read_only": True},
    ]
    assert service["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert service["environment"]["VLLM_LORA_RESOLVER_CACHE_DIR"] == "/adapters/runtime"
    # runtime loading sizes 4 GPU slots by default; LoRA memory is counted in the plan
    m = plan.model("llama")
    assert (m.max_loras, m.max_cpu_loras) == (4, 4)
    assert m.lora_bytes > 0
    assert "Runtime LoRA loading is on for llama" in files[".env.example"]


def test_a_hundred_adapters_render_and_route(project: Path) -> None:
    lines = [BASE, "    max_loras: 8\n    max_cpu_loras: 128\n    loras:\n"]
    for i in range(100):
        adapter(project / "adapters" / f"tenant-{i:03d}")
        lines.append(f"      - {{name: tenant-{i:03d}, path: ./adapters/tenant-{i:03d}}}\n")
    write(project / "s.yaml", "".join(lines))
    result = run_cli(["render", "s.yaml"], project)
    assert result.code == 0, result.stderr
    config = yaml.safe_load((project / "compose" / "lora" / LITELLM_CONFIG).read_text())
    names = [route["model_name"] for route in config["model_list"]]
    assert names == ["llama", *(f"tenant-{i:03d}" for i in range(100))]
    assert {route["litellm_params"]["api_base"] for route in config["model_list"]} == {"http://llama:8000/v1"}
    plan = plan_stack(load_stack(project / "s.yaml"))
    # 8 GPU slots at rank 16, whatever the number of adapters
    assert plan.model("llama").max_loras == 8
