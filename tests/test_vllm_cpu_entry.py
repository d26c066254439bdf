"""The vLLM CPU image's entrypoint: where it puts the tiny stand-in (pure
file work; runs on the host)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO


def entry_module() -> ModuleType:
    path = REPO / "gpustack_compose" / "images" / "vllm-cpu" / "entry.py"
    spec = importlib.util.spec_from_file_location("gsc_vllm_cpu_entry", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_argument_is_what_vllm_serve_loads() -> None:
    entry = entry_module()
    assert entry.model_argument(["Qwen/Qwen2.5-7B-Instruct", "--port", "8000"]) == "Qwen/Qwen2.5-7B-Instruct"
    assert entry.model_argument(["--port", "8000", "--model", "m"]) == "m"
    assert entry.model_argument(["--model=m2", "--enforce-eager"]) == "m2"
    assert entry.model_argument(["--trust-remote-code", "/models/x"]) is None  # not where it is rendered


def test_repo_ids_become_offline_hf_cache_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = entry_module()
    tiny = tmp_path / "tiny" / "models" / "qwen2"
    tiny.mkdir(parents=True)
    (tiny / "config.json").write_text(json.dumps({"max_position_embeddings": 4096, "model_type": "qwen2"}))
    (tiny / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(entry, "TINY", tmp_path / "tiny")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    where = entry.materialise("Qwen/Qwen2.5-14B-Instruct", "qwen2", 32768)
    repo = tmp_path / "hf" / "hub" / "models--Qwen--Qwen2.5-14B-Instruct"
    assert where == repo / "snapshots" / ("0" * 40)
    assert (repo / "refs" / "main").read_text() == "0" * 40
    assert (where / "model.safetensors").read_bytes() == b"weights"
    # the production max_model_len must be valid for the stand-in
    assert json.loads((where / "config.json").read_text())["max_position_embeddings"] == 32768
    path_target = entry.materialise(str(tmp_path / "models" / "custom"), "qwen2", 1024)
    assert path_target == tmp_path / "models" / "custom"
    assert json.loads((path_target / "config.json").read_text())["max_position_embeddings"] == 4096
