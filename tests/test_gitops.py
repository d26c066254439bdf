"""GitOps and editor fit: the JSON Schema, the pre-commit hook (with the real
pre-commit), the example repository, `init`, `diff`, completion and output."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from gpustack_compose.cli import main
from gpustack_compose.commands.init import parse_nvidia_smi
from gpustack_compose.schema import schema_text
from tests.conftest import run_cli, run_module, write

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "gitops"
BIN = Path(sys.executable).parent


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def git(args: list[str], cwd: Path) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def example_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "gitops"
    shutil.copytree(EXAMPLE, repo)
    git(["init", "-q", "-b", "main"], repo)
    git(["add", "-A"], repo)
    git(["commit", "-q", "-m", "adopt gpustack-compose"], repo)
    return repo


# --- schema -------------------------------------------------------------------


def test_committed_schema_is_generated_from_the_spec() -> None:
    """Regenerate with `make schema`."""
    assert (REPO / "schema" / "stack.schema.json").read_text() == schema_text()


def test_schema_command_prints_the_same() -> None:
    result = run_cli(["schema"], REPO)
    assert result.code == 0 and result.stdout == schema_text()


def stack_files() -> list[Path]:
    return [*sorted((REPO / "stacks").glob("*.yaml")), *sorted((EXAMPLE / "stacks").glob("*.yaml"))]


@pytest.mark.parametrize("path", stack_files(), ids=lambda p: p.name)
def test_every_example_stack_names_the_schema_and_passes_it(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    schema = json.loads(schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(text), schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "gpus": [{"index": 0, "type": "L4"}], "models": [{"name": "a", "model": "m", "memry": 0.5}]},
        {"name": "X!", "gpus": [{"index": 0, "type": "L4"}], "models": [{"name": "a", "model": "m"}]},
        {"name": "x", "gpus": [], "models": [{"name": "a", "model": "m"}]},
        {"name": "x", "gpus": {"count": 0, "type": "L4"}, "models": [{"name": "a", "model": "m"}]},
        {"name": "x", "gpus": [{"index": 0, "type": "L4"}], "models": [{"name": "a", "model": "m", "memory": 1.5}]},
        {"name": "x", "gpus": [{"index": 0, "type": "L4"}], "models": [{"name": "a", "model": "m", "gpu": [0, "1"]}]},
    ],
)
def test_schema_rejects_what_the_spec_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(schema_text()), cls=jsonschema.Draft202012Validator)


# --- pre-commit ---------------------------------------------------------------


def pre_commit(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_IDENTITY, "PRE_COMMIT_HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run([str(BIN / "pre-commit"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip


def test_hook_manifest_and_example_config_are_valid(tmp_path: Path) -> None:
    manifest = pre_commit(["validate-manifest", str(REPO / ".pre-commit-hooks.yaml")], REPO, tmp_path)
    assert manifest.returncode == 0, manifest.stdout + manifest.stderr
    config = pre_commit(["validate-config", str(EXAMPLE / ".pre-commit-config.yaml")], REPO, tmp_path)
    assert config.returncode == 0, config.stdout + config.stderr


def test_pre_commit_hook_passes_fresh_output_and_fails_with_the_diff_on_drift(tmp_path: Path) -> None:
    """The real pre-commit installs this repository (as a GitOps repo would
    reference it) and runs the hook on a temporary git repository."""
    repo = example_repo(tmp_path)
    home = tmp_path / "pre-commit-home"
    fresh = pre_commit(["try-repo", str(REPO), "gpustack-compose-check", "--files", "stacks/idp.yaml"], repo, home)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "gpustack-compose check" in fresh.stdout and "Passed" in fresh.stdout
    stack = repo / "stacks" / "idp.yaml"
    stack.write_text(stack.read_text().replace("memory: 0.5", "memory: 0.45"))
    stale = pre_commit(["try-repo", str(REPO), "gpustack-compose-check", "--files", "stacks/idp.yaml"], repo, home)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "Failed" in stale.stdout and "exit code: 3" in stale.stdout
    assert '-      - "0.5"' in stale.stdout and '+      - "0.45"' in stale.stdout
    assert "compose/idp is stale" in stale.stdout
    # the other hook catches a hand edit of compose/ too
    stack.write_text(stack.read_text().replace("memory: 0.45", "memory: 0.5"))
    plan = repo / "compose" / "idp" / "PLAN.md"
    plan.write_text(plan.read_text() + "hand edit\n")
    edited = pre_commit(["try-repo", str(REPO), "gpustack-compose-check-all", "--files", "compose/idp/PLAN.md"], repo,
                        home)  # fmt: skip
    assert edited.returncode == 1 and "-hand edit" in edited.stdout, edited.stdout + edited.stderr


# --- the example repository ------------------------------------------------------


def test_example_repository_is_rendered_and_checks_clean(tmp_path: Path) -> None:
    repo = example_repo(tmp_path)
    result = run_module(["check"], repo)
    assert result.code == 0, result.stderr
    assert "compose/idp is up to date with stacks/idp.yaml" in result.stdout


def ci_commands() -> list[str]:
    """Every `gpustack-compose ...` command the CI snippets run."""
    commands = []
    for path in (EXAMPLE / ".github" / "workflows" / "gpustack-compose.yml", EXAMPLE / ".gitlab-ci.yml"):
        for line in path.read_text().splitlines():
            for part in line.replace("run:", " ").replace("- ", " ", 1).split(";"):
                part = part.strip().split("|")[0].split(">")[0].split("||")[0].strip()
                if "gpustack-compose " in part and "pip install" not in part:
                    commands.append(part[part.index("gpustack-compose ") :].strip())
    return commands


def test_ci_snippets_use_real_commands_and_options() -> None:
    commands = ci_commands()
    assert {c.split()[1] for c in commands} >= {"check", "diff", "images", "rehearse"}
    for command in commands:
        command = command.replace('$(basename "$stack" .yaml)', "idp").replace('"$stack"', "stacks/idp.yaml")
        words = shlex.split(command)[1:]
        # click parses the words as the real CLI would (unknown options raise)
        assert words[0] in main.commands, command
        sub = main.commands[words[0]]
        sub.make_context(words[0], words[1:], resilient_parsing=False)


# --- diff -----------------------------------------------------------------------


def test_diff_summarises_per_service_then_shows_the_diff(tmp_path: Path) -> None:
    repo = example_repo(tmp_path)
    stack = repo / "stacks" / "idp.yaml"
    text = stack.read_text().replace("memory: 0.5", "memory: 0.45")
    text = text.replace("proxy:", "  - {name: qwen3-0.6b, model: Qwen/Qwen3-0.6B, memory: 0.1, max_model_len: 8192}\n"
                        "images:\n  vllm: vllm/vllm-openai:v0.27.0\nproxy:")  # fmt: skip
    stack.write_text(text)
    before = {p: p.read_bytes() for p in (repo / "compose").rglob("*") if p.is_file()}
    result = run_cli(["diff", "stacks/idp.yaml"], repo)
    assert result.code == 0, result.stderr
    summary, _, unified = result.stdout.partition("\n\n")
    assert "compose/idp: a render would change" in summary
    assert "+ qwen3-0-6b: added (Qwen/Qwen3-0.6B, GPU 0, fraction 0.1)" in summary
    assert "~ qwen2-5-14b: image vllm/vllm-openai:v0.26.0 -> vllm/vllm-openai:v0.27.0; fraction 0.5 -> 0.45" in summary
    assert "+ route qwen3-0.6b" in summary
    assert "also changes: .env.example" not in summary and "PLAN.md" in summary
    assert unified.startswith("--- compose/idp/")
    assert {p: p.read_bytes() for p in (repo / "compose").rglob("*") if p.is_file()} == before  # wrote nothing


def test_diff_with_nothing_to_change(tmp_path: Path) -> None:
    repo = example_repo(tmp_path)
    result = run_cli(["diff", "stacks/idp.yaml"], repo)
    assert (result.code, result.stdout) == (0, "compose/idp: no changes\n")


def test_check_without_arguments_checks_every_stack_and_reports_the_worst(tmp_path: Path) -> None:
    repo = example_repo(tmp_path)
    write(repo / "stacks" / "broken.yaml", "name: broken\ngpus: [{index: 0, type: L4}]\nmodels: []\n")
    result = run_cli(["check"], repo)
    assert result.code == 1
    assert "compose/idp is up to date" in result.stdout
    assert "stacks/broken.yaml" in result.stderr and "models: needs at least 1 item" in result.stderr


# --- init -------------------------------------------------------------------------


def test_init_from_flags_writes_a_commented_stack_that_plans(tmp_path: Path) -> None:
    result = run_cli(["init", "--name", "idp", "--gpu", "H100-80GB", "--model", "Qwen/Qwen2.5-14B-Instruct",
                      "--model", "PaddlePaddle/PaddleOCR-VL"], tmp_path)  # fmt: skip
    assert result.code == 0, result.stderr
    text = (tmp_path / "stacks" / "idp.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    data = yaml.safe_load(text)
    assert [m["name"] for m in data["models"]] == ["qwen2.5-14b-instruct", "paddleocr-vl"]
    assert all(0 < m["memory"] < 1 for m in data["models"])
    assert "# weights 27.62 GiB" in text
    planned = run_cli(["plan", "stacks/idp.yaml"], tmp_path)
    assert planned.code == 0, planned.stderr
    again = run_cli(["init", "--name", "idp", "--gpu", "H100-80GB", "--model", "Qwen/Qwen3-8B"], tmp_path)
    assert again.code == 1 and "exists; use --force" in again.stderr


def test_init_on_several_gpus_pins_the_proposed_cards(tmp_path: Path) -> None:
    result = run_cli(["init", "--name", "pair", "--gpu", "2xL40S", "--model", "Qwen/Qwen2.5-14B-Instruct",
                      "--model", "Qwen/Qwen2.5-14B-Instruct", "-o", "s.yaml"], tmp_path)  # fmt: skip
    assert result.code == 0, result.stderr
    data = yaml.safe_load((tmp_path / "s.yaml").read_text())
    assert [m["name"] for m in data["models"]] == ["qwen2.5-14b-instruct", "qwen2.5-14b-instruct-2"]
    assert sorted(m["gpu"] for m in data["models"]) == [0, 1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--gpu", "B300", "--model", "Qwen/Qwen3-8B"], "--gpu 'B300': not a GPU type from the catalog"),
        (["--gpu", "L4", "--model", "org/unknown"], "is not in the model catalog"),
        (["--gpu", "L4"], "give at least one --model"),
        (["--gpu", "L4", "--model", "Qwen/Qwen2.5-32B-Instruct"], "GPU 0 (L4)"),
        (["--name", "Bad_Name", "--gpu", "L4", "--model", "Qwen/Qwen3-0.6B"], "is not a valid stack name"),
    ],
)
def test_init_refusals_write_nothing(tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_cli(["init", *args], tmp_path)
    assert result.code == 1, result.stderr
    assert expected in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "stacks").exists()


def test_init_reads_the_gpus_from_nvidia_smi(tmp_path: Path) -> None:
    rows = r"0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA L40S, 46068\n2, NVIDIA Mystery, 32768\n"
    fake = write(tmp_path / "bin" / "nvidia-smi", f"#!/bin/sh\nprintf '{rows}'\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    result = run_module(["init", "--name", "host", "--model", "Qwen/Qwen3-8B", "-o", "s.yaml"], tmp_path, env=env)
    assert result.code == 0, result.stderr
    gpus = yaml.safe_load((tmp_path / "s.yaml").read_text())["gpus"]
    assert gpus == [{"index": 0, "type": "H100-80GB"}, {"index": 1, "type": "L40S"}, {"index": 2, "memory_gib": 31.53}]


def test_nvidia_smi_parsing() -> None:
    gpus = parse_nvidia_smi("0, NVIDIA L40, 46068\n1, NVIDIA A100-SXM4-80GB, 81920\n")
    assert [(g.index, g.type) for g in gpus] == [(0, "L40"), (1, "A100-80GB")]


def test_init_without_gpus_and_without_nvidia_smi(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    result = run_module(["init", "--model", "Qwen/Qwen3-8B"], tmp_path, env={**env, "PATH": f"{tmp_path}"})
    assert result.code == 1 and "nvidia-smi is not on PATH; give --gpu" in result.stderr


# --- completion, version, help, colour --------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = run_cli(["completion", shell], REPO)
    assert result.code == 0 and "_GPUSTACK_COMPOSE_COMPLETE" in result.stdout


def test_completion_completes_commands_and_options() -> None:
    runner = CliRunner()
    done = runner.invoke(main, [], prog_name="gpustack-compose", env={"_GPUSTACK_COMPOSE_COMPLETE": "bash_complete",
                         "COMP_WORDS": "gpustack-compose pl", "COMP_CWORD": "1"})  # fmt: skip
    assert "plain,plan" in done.output.splitlines()
    done = runner.invoke(main, [], prog_name="gpustack-compose", env={
        "_GPUSTACK_COMPOSE_COMPLETE": "bash_complete", "COMP_WORDS": "gpustack-compose plan x --s",
        "COMP_CWORD": "3"})  # fmt: skip
    assert "plain,--svg" in done.output.splitlines()


def test_version_and_every_help_shows_an_example() -> None:
    version = run_cli(["--version"], REPO)
    assert version.code == 0 and version.stdout.startswith("gpustack-compose, version ")
    for name, command in main.commands.items():
        text = run_cli([name, "--help"], REPO).stdout
        if hasattr(command, "commands"):  # a group: its subcommands carry the examples
            for sub in command.commands:
                assert "Example" in run_cli([name, sub, "--help"], REPO).stdout, f"{name} {sub}"
        else:
            assert "Example" in text, name


def test_colour_only_for_terminals_and_never_with_no_color(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", "name: x\ngpus: [{index: 0, type: L4}]\nmodels: [{name: a, model: nope/nope}]\n")
    plain = run_module(["plan", "s.yaml"], tmp_path)  # a pipe: no escape codes
    assert plain.code == 1 and "\x1b[" not in plain.stderr
    forced = run_module(["plan", "s.yaml"], tmp_path, env={**os.environ, "FORCE_COLOR": "1"})
    assert "\x1b[" in forced.stderr
    no_color = run_module(["plan", "s.yaml"], tmp_path, env={**os.environ, "FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[31" not in no_color.stderr and "\x1b[1;31" not in no_color.stderr
    assert "error:" in no_color.stderr
    # quiet by default: a successful render prints one line per file written and one summary, nothing else
    write(tmp_path / "ok.yaml", "name: ok\ngpus: [{index: 0, type: L4}]\nmodels:\n"
          "  - {name: a, model: Qwen/Qwen3-0.6B, memory: 0.5, max_model_len: 4096}\n")  # fmt: skip
    rendered = run_module(["render", "ok.yaml"], tmp_path)
    assert rendered.code == 0 and rendered.stderr == "" and len(rendered.stdout.splitlines()) == 7
    again = run_module(["render", "ok.yaml"], tmp_path)
    assert again.stdout == "compose/ok: 6 files: 6 unchanged\n"
