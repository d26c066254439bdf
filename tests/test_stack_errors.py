"""Bad stack files: exit 1, ONE line naming the field path and the bad value,
no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, run_module, tree, write

BASE = """\
name: idp
gpus:
  - index: 0
    type: H100-80GB
models:
  - name: a
    model: Qwen/Qwen2.5-14B-Instruct
    memory: 0.5
    max_model_len: 8192
  - name: b
    model: Qwen/Qwen2.5-7B-Instruct
    memory: 0.3
    max_model_len: 4096
"""


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


CASES = {
    "unknown key": (
        edit("    max_model_len: 8192", "    max_model_length: 8192"),
        "s.yaml:9:5: models[0].max_model_length: unknown key (did you mean max_model_len?)",
    ),
    "wrong type": (
        edit("max_model_len: 4096", 'max_model_len: "4096"'),
        "s.yaml:13:20: models[1].max_model_len: expected an integer, got '4096'",
    ),
    "duplicate model name": (
        edit("  - name: b", "  - name: a"),
        "s.yaml:10:11: models[1].name: 'a' is already used by models[0].name",
    ),
    "name not DNS-safe": (
        edit("  - name: b", "  - name: Qwen_14B"),
        "s.yaml:10:11: models[1].name: 'Qwen_14B' is not a valid name: use [a-z0-9][a-z0-9._-]{0,62}",
    ),
    "names collide as services": (
        edit("  - name: b", "  - name: a.x").replace("  - name: a\n", "  - name: a-x\n"),
        "s.yaml:10:11: models[1].name: 'a.x' and 'a-x' would both be the compose service 'a-x'",
    ),
    "gpu not declared": (
        edit("    memory: 0.3", "    memory: 0.3\n    gpu: 1"),
        "s.yaml:13:10: models[1].gpu: GPU 1 is not declared in gpus (declared: 0)",
    ),
    "fraction above 1": (
        edit("memory: 0.3", "memory: 1.3"),
        "s.yaml:12:13: models[1].memory: 1.3 is not a fraction in (0, 1)",
    ),
    "fraction zero": (
        edit("memory: 0.3", "memory: 0"),
        "s.yaml:12:13: models[1].memory: 0 is not a fraction in (0, 1)",
    ),
    "memory nonsense": (
        edit("memory: 0.3", "memory: lots"),
        "s.yaml:12:13: models[1].memory: 'lots' is not a fraction in (0, 1), a size like '40GiB', or auto",
    ),
    "unknown GPU type": (
        edit("type: H100-80GB", "type: H300"),
        "s.yaml:4:11: gpus[0].type: 'H300' is not in the GPU catalog (H100-80GB, H100-NVL, H200, A100-40GB, "
        "A100-80GB, L40S, L40, L4, A10, RTX-4090, RTX-6000-Ada, RTX-A6000, RTX-PRO-6000); give memory_gib",
    ),
    "GPU without type or memory": (
        edit("    type: H100-80GB\n", ""),
        "s.yaml:3:5: gpus[0]: give type (a catalog GPU such as H100-80GB) or memory_gib",
    ),
    "LoRA name collides with a model": (
        BASE + "    loras:\n      - name: a\n        path: ./adapters/a\n",
        "s.yaml:15:15: models[1].loras[0].name: 'a' is already used by models[0].name "
        "(adapters are model names at the proxy)",
    ),
    "duplicate GPU index": (
        BASE.replace("models:", "  - index: 0\n    type: L4\nmodels:"),
        "s.yaml:5:12: gpus[1].index: GPU 0 is declared twice (also gpus[0])",
    ),
    "duplicate YAML key": (
        edit("    memory: 0.5", "    memory: 0.5\n    memory: 0.4"),
        "s.yaml:9:5: models[0].memory: duplicate key 'memory'",
    ),
    "stack name": (
        edit("name: idp", "name: IDP"),
        "s.yaml:1:7: name: 'IDP' is not a valid stack name: use [a-z][a-z0-9-]{0,39}",
    ),
    "a prefix of a managed flag (vLLM's parser takes abbreviations)": (
        edit("    max_model_len: 4096", "    max_model_len: 4096\n    extra_args: [--kv-cache-memory=5]"),
        "s.yaml:14:18: models[1].extra_args[0]: --kv-cache-memory (vLLM reads it as --kv-cache-memory-bytes) is set "
        "by gpustack-compose from memory; remove it from extra_args",
    ),
    "a short alias of a managed flag": (
        edit("    max_model_len: 4096", "    max_model_len: 4096\n    extra_args: [-tp, '2']"),
        "s.yaml:14:18: models[1].extra_args[0]: -tp (vLLM reads it as --tensor-parallel-size) is set by "
        "gpustack-compose from gpu; remove it from extra_args",
    ),
    "a flag that would contradict the planned KV cache": (
        edit("    max_model_len: 4096", "    max_model_len: 4096\n    extra_args: [--num-gpu-blocks-override, '9']"),
        "s.yaml:14:18: models[1].extra_args[0]: --num-gpu-blocks-override is set by gpustack-compose from memory; "
        "remove it from extra_args",
    ),
    "a flag the image's vLLM release does not have": (
        edit("    max_model_len: 4096", "    max_model_len: 4096\n    extra_args: [--frobnicate]"),
        "s.yaml:14:18: models[1].extra_args[0]: --frobnicate is not a flag of vLLM 0.26.0's `vllm serve` (the "
        "release vllm/vllm-openai:v0.26.0 runs; its parser's flags: gpustack_compose/data/vllm-flags/0.26.0.json)",
    ),
    "a flag of another release than the model's image runs": (
        edit(
            "    max_model_len: 4096",
            "    max_model_len: 4096\n    image: vllm/vllm-openai:v0.32.0\n"
            "    extra_args: [--max-long-partial-prefills, '2']",
        ),
        "s.yaml:15:18: models[1].extra_args[0]: --max-long-partial-prefills is not a flag of vLLM 0.32.0's `vllm "
        "serve` (the release vllm/vllm-openai:v0.32.0 runs; its parser's flags: "
        "gpustack_compose/data/vllm-flags/0.32.0.json)",
    ),
    "managed flag in extra_args": (
        edit("    max_model_len: 4096", "    max_model_len: 4096\n    extra_args: [--max_model_len=9]"),
        "s.yaml:14:18: models[1].extra_args[0]: --max-model-len is set by gpustack-compose from max_model_len; "
        "remove it from extra_args",
    ),
    "missing field": (
        edit("    model: Qwen/Qwen2.5-7B-Instruct\n", ""),
        "s.yaml:10:5: models[1].model: is required",
    ),
    "empty models": (
        BASE.split("models:")[0] + "models: []\n",
        "s.yaml:5:9: models: needs at least 1 item(s)",
    ),
    "top level is a list": ("- a\n- b\n", "s.yaml:1:1: the top level must be a mapping with name, gpus and models"),
    "empty file": ("", "s.yaml: the file is empty; a stack file needs name, gpus and models"),
    "broken YAML": ("name: [unclosed\n", "s.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    "two documents": (BASE + "---\n" + BASE, "s.yaml: holds more than one YAML document; a stack file is one"),
    "boolean as fraction": (
        edit("memory: 0.3", "memory: true"),
        "s.yaml:12:13: models[1].memory: true is not a fraction in (0, 1), a size like '40GiB', or auto",
    ),
    "proxy host not an address": (
        BASE + "proxy:\n  host: localhost\n",
        "s.yaml:15:9: proxy.host: 'localhost' is not an IP address",
    ),
    "port out of range": (BASE + "proxy:\n  port: 70000\n", "s.yaml:15:9: proxy.port: 70000 must be <= 65535"),
    "lone surrogate": (
        edit("    max_model_len: 4096", '    max_model_len: 4096\n    env: {X: "\\ud83d\\ude00"}'),
        "s.yaml:14:14: models[1].env.X: contains U+D83D, half of a UTF-16 surrogate pair; write the character "
        "itself (or \\UXXXXXXXX in double quotes)",
    ),
    "fallback to an unknown route": (
        edit("    max_model_len: 8192", "    max_model_len: 8192\n    fallbacks: [c]"),
        "s.yaml:10:17: models[0].fallbacks[0]: 'c' is not a model or adapter of this stack (it has a, b)",
    ),
    "fallback to itself": (
        edit("    max_model_len: 8192", "    max_model_len: 8192\n    fallbacks: [b, a]"),
        "s.yaml:10:20: models[0].fallbacks[1]: a cannot fall back to itself: the same server answers both",
    ),
    "fallback listed twice": (
        edit("    max_model_len: 8192", "    max_model_len: 8192\n    fallbacks: [b, b]"),
        "s.yaml:10:20: models[0].fallbacks[1]: 'b' is listed twice",
    ),
    "does not fit": (
        edit("memory: 0.3", "memory: 0.6"),
        "s.yaml:3:5: gpus[0]: GPU 0 (H100-80GB, 79.18 GiB as CUDA reports it): the fractions sum to 1.1 (a 0.5 + "
        "b 0.6) = 87.10 GiB; "
        "with the 0.52 GiB reserve that is 8.44 GiB more than the card holds. At most 0.9934 can be shared out "
        "on this GPU",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["render", "plan", "check"])
def test_bad_stack_is_one_line_exit_1_nothing_written(workdir: Path, case: str, command: str) -> None:
    text, message = CASES[case]
    write(workdir / "s.yaml", text)
    before = tree(workdir)
    result = run_cli([command, "s.yaml"], workdir)
    assert result.code == 1, result.stderr
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""
    assert tree(workdir) == before


def test_missing_and_binary_files(workdir: Path) -> None:
    result = run_cli(["render", "nope.yaml"], workdir)
    assert (result.code, result.stderr) == (1, "error: nope.yaml: no such file\n")
    (workdir / "bin.yaml").write_bytes(b"\x00\x01\x02binary")
    result = run_cli(["render", "bin.yaml"], workdir)
    assert (result.code, result.stderr) == (1, "error: bin.yaml: is a binary file, not YAML text\n")
    (workdir / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    result = run_cli(["render", "latin1.yaml"], workdir)
    assert (result.code, result.stderr) == (1, "error: latin1.yaml: is not UTF-8 text (byte 9)\n")
    assert sorted(p.name for p in workdir.iterdir()) == ["bin.yaml", "latin1.yaml"]


def test_alias_bomb_is_bounded(workdir: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    write(workdir / "bomb.yaml", "\n".join(lines) + "\n")
    result = run_cli(["plan", "bomb.yaml"], workdir)
    assert result.code == 1
    assert result.stderr.startswith("error: bomb.yaml:")
    assert "expands to more than 100000 YAML values" in result.stderr


def test_real_process_prints_no_traceback(workdir: Path) -> None:
    write(workdir / "s.yaml", CASES["fraction above 1"][0])
    result = run_module(["render", "s.yaml"], workdir)
    assert result.code == 1
    assert result.stderr == "error: s.yaml:12:13: models[1].memory: 1.3 is not a fraction in (0, 1)\n"
    assert "Traceback" not in result.stdout + result.stderr


def test_usage_errors_exit_2(workdir: Path) -> None:
    assert run_cli(["render"], workdir).code == 2
    assert run_cli(["frobnicate"], workdir).code == 2
    assert run_cli(["plan", "s.yaml", "--nope"], workdir).code == 2
