"""Any model from its own files: config.json and safetensors headers, locked (issue 17).

The configs in tests/data/model-configs are public config.json files (sources
in its README.md); their exact parameter counts were measured with
transformers (``_exact-params.json``). Safetensors files are real headers of
the real tensor shapes with the data left sparse (nothing is downloaded).
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpustack_compose.loaded import load_and_plan
from gpustack_compose.model_facts import params
from gpustack_compose.model_facts.config import facts_from_config
from gpustack_compose.model_facts.lock import read_lock
from gpustack_compose.planner import kv_bytes_per_token
from tests.conftest import REPO, run_cli, run_module, tree, write
from tests.hub_standin import Repo, serving

CONFIGS = REPO / "tests" / "data" / "model-configs"
SHAPES = REPO / "tests" / "data" / "safetensors-shapes"
EXACT: dict[str, Any] = json.loads((CONFIGS / "_exact-params.json").read_text())["params"]
NAMES = sorted(p.stem for p in CONFIGS.glob("*.json") if not p.name.startswith("_"))


def config(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return loaded


def facts(name: str) -> Any:
    return facts_from_config(config(name), source=f"{name}.json")


# --- the test data -----------------------------------------------------------------


def test_the_configs_cover_25_architectures_and_every_family_the_issue_names() -> None:
    architectures = {config(n)["architectures"][0] for n in NAMES}
    assert len(architectures) >= 25, sorted(architectures)
    parsed = {n: facts(n) for n in NAMES}
    assert {f.model_type for f in parsed.values() if f.moe} >= {"mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2",
                                                               "deepseek_v3", "gpt_oss"}  # fmt: skip
    assert {f.model_type for f in parsed.values() if f.mla} == {"deepseek_v2", "deepseek_v3"}
    assert {f.model_type for f in parsed.values() if f.sliding_layers} >= {"gemma2", "gemma3", "gpt_oss"}
    assert {f.quantization.method for f in parsed.values() if f.quantization} >= {
        "awq", "gptq", "fp8", "compressed-tensors", "bitsandbytes", "mxfp4"}  # fmt: skip
    assert {f.model_type for f in parsed.values() if f.vision} >= {"qwen2_5_vl", "gemma3", "llava"}
    headless = {f.architecture for f in parsed.values() if not f.lm_head}
    assert headless >= {"BertModel", "XLMRobertaModel", "XLMRobertaForSequenceClassification", "MistralModel"}


def test_every_config_names_its_source() -> None:
    readme = (CONFIGS / "README.md").read_text()
    for name in NAMES:
        org, repo = name.split("--", 1)
        assert f"huggingface.co/{org}/{repo}" in readme, name


@pytest.mark.parametrize("name", NAMES)
def test_computed_parameters_within_1_5_percent_of_the_exact_count(name: str) -> None:
    exact = EXACT[name]["params"]
    computed = params.total_params(facts(name))
    assert abs(computed - exact) / exact < 0.015, (computed, exact)


# --- what the planner reads --------------------------------------------------------


def test_the_real_head_counts_and_kv_layouts() -> None:
    qwen3 = facts("Qwen--Qwen3-32B")
    assert (qwen3.num_attention_heads, qwen3.num_kv_heads, qwen3.head_dim) == (64, 8, 128)  # not 5120 // 128 = 40
    # MLA: one latent of kv_lora_rank + qk_rope_head_dim per token and layer, not 2 x heads x head_dim
    v3 = facts("deepseek-ai--DeepSeek-V3")
    assert kv_bytes_per_token(v3, 2, "auto") == 61 * (512 + 64) * 2
    assert kv_bytes_per_token(v3, 2, "auto", tensor_parallel=8) == 61 * (512 + 64) * 2  # replicated per card
    assert kv_bytes_per_token(facts("tiiuae--falcon-7b"), 2, "auto") == 2 * 32 * 1 * 64 * 2  # multi-query
    moe = facts("deepseek-ai--DeepSeek-V3").moe
    assert moe is not None and (moe.num_experts, moe.dense_layers, moe.shared_intermediate_size) == (256, 3, 2048)
    gpt_oss = facts("openai--gpt-oss-20b")
    assert (gpt_oss.sliding_window, gpt_oss.sliding_layers) == (128, 12)
    assert facts("google--gemma-3-1b-it").sliding_layers == 22  # 5 local layers of every 6
    assert facts("Qwen--Qwen2.5-7B-Instruct").sliding_window is None  # use_sliding_window: false


@pytest.mark.parametrize(
    ("name", "length", "key"),
    [
        ("meta-llama--Llama-3.1-8B-Instruct", 131072, "max_position_embeddings"),  # llama3 rope: not scaled again
        ("deepseek-ai--DeepSeek-V2-Lite-Chat", 4096 * 40, "original_max_position_embeddings"),  # yarn
        ("openai--gpt-oss-20b", 4096 * 32, "original_max_position_embeddings"),
        ("CohereForAI--c4ai-command-r-v01", 131072, "model_max_length"),  # wins over max_position_embeddings
        ("google--gemma-3-27b-it", 131072, "max_position_embeddings"),  # Gemma 3's is already scaled
        ("mistralai--Mistral-7B-Instruct-v0.3", 32768, "max_position_embeddings"),
        ("BAAI--bge-large-en-v1.5", 512, "max_position_embeddings"),
    ],
)
def test_context_length_is_vllm_s_derived_max_model_len(name: str, length: int, key: str) -> None:
    f = facts(name)
    assert (f.context_length, f.context_key) == (length, key)


def test_the_catalog_agrees_with_the_configs_it_was_taken_from() -> None:
    from gpustack_compose.catalog import find_model

    shared = 0
    for name in NAMES:
        found = find_model(name.replace("--", "/", 1))
        if found is None or config(name).get("quantization_config"):
            continue
        shared += 1
        record, parsed = found[0].facts, facts(name)
        for key in ("hidden_size", "num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size"):
            assert getattr(record, key) == getattr(parsed, key), (name, key)
        assert params.total_params(record) == pytest.approx(params.total_params(parsed), rel=0.005), name
    assert shared >= 6


# --- a model directory, locked offline -----------------------------------------------


def stack_for(model: str, *, extra: str = "", gpu: str = "{index: 0, memory_gib: 2048}") -> str:
    return f"name: local\ngpus: [{gpu}]\nmodels:\n  - {{name: m, model: {model}, max_model_len: 512{extra}}}\n"


@pytest.mark.parametrize("name", NAMES)
def test_a_directory_with_only_config_json_plans_and_renders(tmp_path: Path, name: str) -> None:
    """The issue's done-when, for every test architecture: lock reads the
    directory offline, the plan's parameters are within 1.5 % of the exact
    count, and the container sees the directory at /models/<name>."""
    shutil.copy(CONFIGS / f"{name}.json", write(tmp_path / "models" / "ft" / "x", "").parent / "config.json")
    (tmp_path / "models" / "ft" / "x").unlink()
    write(tmp_path / "s.yaml", stack_for("./models/ft"))
    locked = run_cli(["lock", "s.yaml", "--offline"], tmp_path)
    assert locked.code == 0, locked.stderr
    assert "+ ./models/ft:" in locked.stdout
    plan = load_and_plan(tmp_path / "s.yaml").plan.model("m")
    exact = EXACT[name]["params"]
    assert abs(plan.params - exact) / exact < 0.015
    assert run_cli(["render", "s.yaml", "-o", "out"], tmp_path).code == 0
    service = yaml.safe_load((tmp_path / "out" / "docker-compose.yml").read_text())["services"]["m"]
    assert service["command"][0] == "/models/m"
    assert {"type": "bind", "source": "../models/ft", "target": "/models/m", "read_only": True} in service["volumes"]
    assert run_cli(["check", "s.yaml", "-o", "out"], tmp_path).code == 0


def test_lock_from_a_fresh_process_and_plan_offline(tmp_path: Path) -> None:
    """The README's path, as a user runs it: python -m, no network."""
    (tmp_path / "ft").mkdir()
    shutil.copy(CONFIGS / "Qwen--Qwen3-30B-A3B.json", tmp_path / "ft" / "config.json")
    write(tmp_path / "s.yaml", stack_for("./ft"))
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    assert run_module(["lock", "s.yaml"], tmp_path, env).code == 0
    planned = run_module(["plan", "s.yaml", "--json"], tmp_path, env)
    assert planned.code == 0, planned.stderr
    model = json.loads(planned.stdout)["gpus"][0]["models"][0]
    assert model["weights_gib"] == pytest.approx(30_532_122_624 * 2 / 2**30, rel=0.01)


# --- safetensors headers -------------------------------------------------------------


def write_safetensors(path: Path, tensors: dict[str, list[int]], dtype: str = "BF16") -> int:
    """A real safetensors file: the header, then the data region extended
    sparsely to its full size. Returns the data bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in sorted(tensors.items()):
        size = math.prod(shape) * 2
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return offset


def shards(name: str, count: int) -> list[dict[str, list[int]]]:
    tensors: dict[str, list[int]] = json.loads((SHAPES / f"{name}.json").read_text())["tensors"]
    names = sorted(tensors)
    return [{n: tensors[n] for n in names[i::count]} for i in range(count)]


def model_dir(root: Path, name: str, count: int, *, index: bool) -> tuple[Path, int]:
    root.mkdir(parents=True)
    shutil.copy(CONFIGS / f"{name}.json", root / "config.json")
    total = 0
    weight_map = {}
    for i, part in enumerate(shards(name, count)):
        file = "model.safetensors" if count == 1 else f"model-{i + 1:05d}-of-{count:05d}.safetensors"
        total += write_safetensors(root / file, part)
        weight_map.update(dict.fromkeys(part, file))
    if index:
        (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return root, total


@pytest.mark.parametrize(
    ("name", "count", "index"),
    [
        ("google--gemma-3-1b-it", 1, False),
        ("Qwen--Qwen2.5-7B-Instruct", 4, True),
        ("Qwen--Qwen2.5-7B-Instruct", 3, False),
    ],
)
def test_exact_safetensors_bytes_win_over_the_computed_figure(
    tmp_path: Path, name: str, count: int, index: bool
) -> None:
    _, total = model_dir(tmp_path / "m", name, count, index=index)
    assert total == EXACT[name]["params"] * 2  # the shapes are the model's own
    write(tmp_path / "s.yaml", stack_for("./m"))
    assert run_cli(["lock", "s.yaml", "--offline"], tmp_path).code == 0
    weights = (read_lock(tmp_path / "s.lock") or {})["./m"].facts.weights
    assert weights is not None and (weights.bytes, weights.files) == (total, count)
    plan = load_and_plan(tmp_path / "s.yaml").plan.model("m")
    from gpustack_compose.calibration import WEIGHTS_LOAD_OVERHEAD

    assert plan.weights_bytes == total + WEIGHTS_LOAD_OVERHEAD
    assert plan.weights_source == f"safetensors headers ({count} file{'s' if count > 1 else ''}, exact)"
    assert run_cli(["render", "s.yaml", "-o", "out"], tmp_path).code == 0
    assert plan.weights_source in (tmp_path / "out" / "PLAN.md").read_text()


# --- refusals, word for word ---------------------------------------------------------


def refused(tmp_path: Path, command: list[str]) -> str:
    before = tree(tmp_path)
    result = run_cli(command, tmp_path)
    assert result.code == 1, result.stderr
    assert result.stdout == ""
    assert tree(tmp_path) == before  # nothing written, no lock
    return result.stderr


def test_model_file_refusals_name_the_file_and_the_field(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", stack_for("./m"))
    (tmp_path / "m").mkdir()
    lock = ["lock", "s.yaml", "--offline"]
    assert refused(tmp_path, lock) == (
        "error: m/config.json: missing: a model directory holds its config.json (the weights may be elsewhere)\n"
    )
    write(tmp_path / "m" / "config.json", '{"model_type": "llama",\n  "hidden_size": 4096,,}')
    assert refused(tmp_path, lock) == (
        "error: m/config.json: line 2 column 23: not JSON (Expecting property name enclosed in double quotes)\n"
    )
    write(tmp_path / "m" / "config.json", '{"model_type": "acme", "hidden_size": 64, "num_attention_heads": 4}')
    assert refused(tmp_path, lock) == (
        "error: m/config.json: num_hidden_layers: missing (num_hidden_layers / n_layer / num_layers); model_type "
        "'acme' is not one transformers knows, so nothing supplies a default\n"
    )
    write(tmp_path / "m" / "config.json", '{"hidden_size": 64}')
    assert (
        refused(tmp_path, lock)
        == "error: m/config.json: model_type: missing (every transformers config.json names one)\n"
    )
    shutil.copy(CONFIGS / "Qwen--Qwen2.5-7B-Instruct.json", tmp_path / "m" / "config.json")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 8 + b"{}")
    assert refused(tmp_path, lock) == (
        "error: m/model.safetensors: header length 0 is not a safetensors header (at most 100000000)\n"
    )
    (tmp_path / "m" / "model.safetensors").write_bytes(struct.pack("<Q", 40) + b'{"w": {"dtype": "BF16"')
    assert refused(tmp_path, lock) == (
        "error: m/model.safetensors: header says 40 bytes, the file holds 22 after it: truncated\n"
    )
    (tmp_path / "m" / "model.safetensors").write_bytes(struct.pack("<Q", 24) + b'{"w": {"dtype": "Q9"}}  ')
    assert (
        refused(tmp_path, lock)
        == "error: m/model.safetensors: header entry 'w': dtype 'Q9' is not a safetensors dtype\n"
    )


def test_a_model_without_facts_is_refused_by_render_and_plan_and_check_says_stale(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", stack_for("acme/secret-7b"))
    hint = (
        "error: s.yaml:4:22: models[0].model: 'acme/secret-7b' is neither in the model catalog nor in the stack's "
        "lock file; run `python -m gpustack_compose lock` on the stack file (it reads config.json and the "
        "safetensors headers from the directory, the Hugging Face cache or the Hub), or describe the model in an "
        "arch: block\n"
    )
    assert refused(tmp_path, ["plan", "s.yaml"]) == hint
    assert refused(tmp_path, ["render", "s.yaml"]) == hint
    result = run_cli(["check", "s.yaml"], tmp_path)
    assert (result.code, result.stderr) == (
        3,
        "error: s.yaml:4:22: models[0].model: 'acme/secret-7b' needs an entry in s.lock, which does not exist; "
        "run: python -m gpustack_compose lock s.yaml\n",
    )


def test_a_stale_lock_is_drift_naming_the_model(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    shutil.copy(CONFIGS / "mistralai--Mistral-7B-Instruct-v0.3.json", tmp_path / "m" / "config.json")
    write(tmp_path / "s.yaml", stack_for("./m"))
    assert run_cli(["lock", "s.yaml", "--offline"], tmp_path).code == 0
    assert run_cli(["render", "s.yaml"], tmp_path).code == 0
    assert run_cli(["check", "s.yaml"], tmp_path).code == 0
    # the directory's config.json changes under the lock
    changed = {**config("mistralai--Mistral-7B-Instruct-v0.3"), "num_hidden_layers": 30}
    (tmp_path / "m" / "config.json").write_text(json.dumps(changed))
    result = run_cli(["check", "s.yaml"], tmp_path)
    assert (result.code, result.stderr) == (
        3,
        "error: s.yaml:4:22: models[0].model: m/config.json changed since the lock read it; "
        "run: python -m gpustack_compose lock s.yaml\n",
    )
    relocked = run_cli(["lock", "s.yaml", "--offline"], tmp_path)
    assert relocked.stdout.startswith("  ~ ./m: config.json changed; facts: num_layers\n")
    # an entry no model uses any more
    write(tmp_path / "s.yaml", stack_for("Qwen/Qwen2.5-7B-Instruct"))
    result = run_cli(["check", "s.yaml"], tmp_path)
    assert result.code == 3
    assert result.stderr == (
        "error: s.yaml:4:3: models: s.lock locks './m', which no model of the stack names; "
        "run: python -m gpustack_compose lock s.yaml\n"
    )


def test_a_broken_lock_file_is_one_line_naming_the_file_and_field(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", stack_for("acme/x"))
    write(tmp_path / "s.lock", "version: 1\nmodels:\n- {model: acme/x, source: hub, facts: {hidden_size: 8}}\n")
    for command in (["plan", "s.yaml"], ["render", "s.yaml"], ["check", "s.yaml"]):
        assert refused(tmp_path, command) == (
            "error: s.lock: models.0.facts.intermediate_size: Field required; write it again with "
            "`python -m gpustack_compose lock`\n"
        )
    write(tmp_path / "s.lock", "version: 1\nmodels: [\n")
    assert refused(tmp_path, ["plan", "s.yaml"]).startswith("error: s.lock:3:1: not YAML (")


def test_the_arch_block_is_the_record_and_needs_the_real_head_count(tmp_path: Path) -> None:
    arch = (
        "arch: {hidden_size: 5120, intermediate_size: 25600, num_layers: 64, num_kv_heads: 8, head_dim: 128,"
        " context_length: 40960}"
    )
    write(tmp_path / "s.yaml", stack_for("acme/x", extra=f", {arch}"))
    assert "models[0].arch.num_attention_heads: is required" in refused(tmp_path, ["plan", "s.yaml"])


@pytest.mark.parametrize(
    ("name", "extra", "message"),
    [
        (
            "Qwen--Qwen3-32B",
            ", gpu: [0, 1, 2]",
            "models[0].gpu: m over 3 GPUs: total number of attention heads (64) must be divisible by tensor parallel "
            "size (3), as vLLM requires",
        ),
        (
            "mistralai--Mistral-7B-Instruct-v0.3",
            ", max_model_len: 65536",
            "models[0].max_model_len: 65536 is greater than ./m's derived max_model_len 32768 "
            "(max_position_embeddings in its config.json); vLLM refuses it",
        ),
        (
            "deepseek-ai--DeepSeek-V2-Lite-Chat",
            ", max_model_len: 200000",
            "models[0].max_model_len: 200000 is greater than ./m's derived max_model_len 163840 "
            "(original_max_position_embeddings x rope factor 40 in its config.json); vLLM refuses it",
        ),
    ],
)
def test_vllm_s_own_refusals_from_the_real_config(tmp_path: Path, name: str, extra: str, message: str) -> None:
    (tmp_path / "m").mkdir()
    shutil.copy(CONFIGS / f"{name}.json", tmp_path / "m" / "config.json")
    gpus = "{count: 3, memory_gib: 2048}" if "gpu:" in extra else "[{index: 0, memory_gib: 2048}]"
    length = "" if "max_model_len" in extra else ", max_model_len: 512"
    write(tmp_path / "s.yaml", f"name: local\ngpus: {gpus}\nmodels:\n  - {{name: m, model: ./m{extra}{length}}}\n")
    assert run_cli(["lock", "s.yaml", "--offline"], tmp_path).code == 0
    stderr = refused(tmp_path, ["plan", "s.yaml"])
    assert stderr.startswith("error: s.yaml:") and stderr.endswith(f"{message}\n"), stderr


def test_an_architecture_vllm_does_not_serve(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    odd = {**config("meta-llama--Llama-3.1-8B-Instruct"), "architectures": ["T5ForConditionalGeneration"]}
    (tmp_path / "m" / "config.json").write_text(json.dumps(odd))
    write(tmp_path / "s.yaml", stack_for("./m"))
    assert run_cli(["lock", "s.yaml", "--offline"], tmp_path).code == 0
    assert refused(tmp_path, ["plan", "s.yaml"]).endswith(
        "models[0].model: ./m: vLLM 0.26.0 does not serve T5ForConditionalGeneration (not in its model registry); "
        "a model its Transformers backend can run takes extra_args: [--model-impl, transformers]\n"
    )
    odd["architectures"] = ["AquilaForCausalLM"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(odd))
    assert run_cli(["lock", "s.yaml", "--offline"], tmp_path).code == 0
    assert "vLLM 0.26.0 no longer serves AquilaForCausalLM (the last release that did is 0.24.0)" in refused(
        tmp_path, ["plan", "s.yaml"]
    )
    write(tmp_path / "s.yaml", stack_for("./m", extra=", extra_args: [--model-impl, transformers]"))
    assert run_cli(["plan", "s.yaml"], tmp_path).code == 0


def test_a_host_directory_is_refused_for_kubernetes(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    shutil.copy(CONFIGS / "Qwen--Qwen2.5-7B-Instruct.json", tmp_path / "m" / "config.json")
    write(tmp_path / "s.yaml", stack_for("./m"))
    assert run_cli(["lock", "s.yaml", "--offline"], tmp_path).code == 0
    assert refused(tmp_path, ["render", "s.yaml", "--target", "kubernetes"]).endswith(
        "models[0].model: './m' is a directory of this host, which a cluster's nodes do not have: name the Hub "
        "repo (pods download it into the hf-cache claim) for the Kubernetes target\n"
    )


# --- the Hub, over HTTP (a local stand-in for the network only) ----------------------


def test_lock_reads_config_and_headers_from_the_hub_then_renders_offline(tmp_path: Path) -> None:
    files_dir, total = model_dir(tmp_path / "hubfiles", "Qwen--Qwen2.5-7B-Instruct", 4, index=True)
    files = {p.name: p for p in files_dir.iterdir()}
    write(tmp_path / "s.yaml", stack_for("acme/qwen-ft", gpu="{index: 0, type: H100-80GB}"))
    with serving({"acme/qwen-ft": Repo(files, token="hf_test_token")}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}
        gated = run_module(["lock", "s.yaml"], tmp_path, env)
        assert (gated.code, gated.stderr) == (
            1,
            f"error: {hub.url}/acme/qwen-ft: gated: the Hub wants a token that may read it; set HF_TOKEN and run "
            "lock again\n",
        )
        assert not (tmp_path / "s.lock").exists()
        hub.requests.clear()
        ok = run_module(["lock", "s.yaml"], tmp_path, {**env, "HF_TOKEN": "hf_test_token"})
        assert ok.code == 0, ok.stderr
    assert "+ acme/qwen-ft: Qwen2ForCausalLM, 14.19 GiB in 4 safetensors file(s), from hub at 0123456789ab" in ok.stdout
    # only headers were read: every GET of a .safetensors file is a ranged read of its first bytes
    reads = [(path, rng) for method, path, rng in hub.requests if method == "GET" and path.endswith(".safetensors")]
    assert len(reads) >= 4
    assert all(rng is not None and int(rng.split("-")[1] or 0) < 200_000 for _, rng in reads), reads
    entry = (read_lock(tmp_path / "s.lock") or {})["acme/qwen-ft"]
    assert (entry.source, entry.revision, entry.facts.weights and entry.facts.weights.bytes) == (
        "hub", "0123456789abcdef0123456789abcdef01234567", total)  # fmt: skip
    # the Hub is gone: render, plan and check read the stack and its lock only
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    assert run_module(["render", "s.yaml"], tmp_path, offline).code == 0
    command = yaml.safe_load((tmp_path / "compose" / "local" / "docker-compose.yml").read_text())["services"]["m"]
    assert command["command"][:3] == ["acme/qwen-ft", "--revision", "0123456789abcdef0123456789abcdef01234567"]
    assert run_module(["check", "s.yaml"], tmp_path, offline).code == 0
    # the stack asks for another revision than the lock read: stale
    write(tmp_path / "s.yaml", stack_for("acme/qwen-ft", extra=", revision: v2", gpu="{index: 0, type: H100-80GB}"))
    stale = run_module(["check", "s.yaml"], tmp_path, offline)
    assert stale.code == 3
    assert "models[0].revision: s.lock was written for revision 'main', the stack asks for 'v2'" in stale.stderr


def test_an_unreachable_hub_is_one_line(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", stack_for("acme/x"))
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    result = run_module(["lock", "s.yaml"], tmp_path, env, timeout=120)
    assert result.code == 1
    assert result.stderr.startswith("error: http://127.0.0.1:9/acme/x: cannot ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "s.lock").exists()


def test_a_model_in_the_hf_cache_is_locked_without_the_hub(tmp_path: Path) -> None:
    snapshot = tmp_path / "cache" / "hub" / "models--acme--ft" / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    shutil.copy(CONFIGS / "google--gemma-2-9b-it.json", snapshot / "config.json")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("ab" * 20)
    write(tmp_path / "s.yaml", "hf_cache: ./cache\n" + stack_for("acme/ft"))
    result = run_cli(["lock", "s.yaml", "--offline"], tmp_path)
    assert result.code == 0, result.stderr
    entry = (read_lock(tmp_path / "s.lock") or {})["acme/ft"]
    assert (entry.source, entry.revision, entry.facts.architecture) == ("hf-cache", "ab" * 20, "Gemma2ForCausalLM")
    assert run_cli(["render", "s.yaml", "-o", "out"], tmp_path).code == 0
    service = yaml.safe_load((tmp_path / "out" / "docker-compose.yml").read_text())["services"]["m"]
    assert {"type": "bind", "source": "../cache", "target": "/root/.cache/huggingface"} in service["volumes"]
