"""The reliability suite: hostile stack files, interrupted writes, and the
security defaults of every rendered stack."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpustack_compose.contract import HF_CACHE
from gpustack_compose.loaded import load_and_plan
from gpustack_compose.loader import load_stack
from gpustack_compose.planner import plan_stack
from gpustack_compose.render import render
from tests.conftest import run_cli, tree, write

REPO = Path(__file__).resolve().parent.parent
GPU = "gpus: [{index: 0, type: H100-80GB}]\n"
GOOD = f"name: s\n{GPU}models:\n  - {{name: a, model: Qwen/Qwen3-8B, memory: 0.5, max_model_len: 8192}}\n"


def model(fields: str) -> str:
    """A one-model stack whose model has ``fields`` (flow-mapping text)."""
    return f"name: s\n{GPU}models:\n  - {{name: a, model: Qwen/Qwen3-8B, memory: 0.5, max_model_len: 8192, {fields}}}\n"


def stack(top: str) -> str:
    """A valid stack with ``top`` appended at the top level."""
    return GOOD + top


def gpus(text: str) -> str:
    return f"name: s\ngpus: {text}\nmodels:\n  - {{name: a, model: Qwen/Qwen3-8B, memory: 0.5, max_model_len: 8192}}\n"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)

# (id, stack file text, what the one error line must say)
CORPUS: list[tuple[str, str, str]] = [
    # types and ranges
    ("huge max_model_len", model("max_model_len: 99999999999999999999"), "models[0].max_model_len"),
    ("negative size", model("memory: -5GiB").replace("memory: 0.5, ", ""), "models[0].memory"),
    ("zero size", model("memory: 0GiB").replace("memory: 0.5, ", ""), "models[0].memory: '0GiB' is not a positive"),
    ("infinite fraction", model("memory: 1e400").replace("memory: 0.5, ", ""), "models[0].memory"),
    ("nan fraction", model("memory: .nan").replace("memory: 0.5, ", ""), "models[0].memory"),
    ("negative max_num_seqs", model("max_num_seqs: -1"), "models[0].max_num_seqs: -1 must be >= 1"),
    ("zero max_num_seqs", model("max_num_seqs: 0"), "models[0].max_num_seqs"),
    ("float max_num_seqs", model("max_num_seqs: 1.5"), "models[0].max_num_seqs: expected an integer"),
    ("string number", model("max_num_batched_tokens: '8192'"), "models[0].max_num_batched_tokens: expected an"),
    ("bool as number", model("max_num_seqs: true"), "models[0].max_num_seqs"),
    ("boot timeout too short", model("boot_timeout_s: 5"), "models[0].boot_timeout_s: 5 must be >= 10"),
    ("string bool", model("enforce_eager: 'yes'"), "models[0].enforce_eager: expected true or false"),
    ("int bool", model("trust_remote_code: 1"), "models[0].trust_remote_code: expected true or false"),
    ("unknown dtype", model("dtype: int4"), "models[0].dtype: 'int4' is not one of"),
    ("unknown quantization", model("quantization: magic"), "models[0].quantization: 'magic' is not one of"),
    ("unknown kv_cache", model("kv_cache: dynamic"), "models[0].kv_cache: 'dynamic' is not one of"),
    ("bad shm size", model("shm_size: 2 tb"), "models[0].shm_size"),
    ("max_lora_rank not allowed", model("max_lora_rank: 7"), "models[0].max_lora_rank: 7 is not one of"),
    ("max_loras without adapters", model("max_loras: 2"), "models[0].max_loras: is set but"),
    # names, references, injection
    ("unicode name", model("").replace("name: a,", "name: モデル,"), "models[0].name"),
    ("shell metacharacters in name", model("").replace("name: a,", "name: 'a;rm -rf /',"), "models[0].name"),
    ("command substitution in name", model("").replace("name: a,", "name: '$(whoami)',"), "models[0].name"),
    ("backtick in name", model("").replace("name: a,", "name: '`id`',"), "models[0].name"),
    ("newline in name", model("").replace("name: a,", 'name: "a\\nb",'), "models[0].name"),
    ("RTL override in name", model("").replace("name: a,", 'name: "a\\u202eb",'), "models[0].name"),
    ("leading dash in name", model("").replace("name: a,", "name: -a,"), "models[0].name"),
    ("name too long", model("").replace("name: a,", f"name: {'a' * 64},"), "models[0].name"),
    ("upper-case name", model("").replace("name: a,", "name: Qwen,"), "models[0].name"),
    ("reserved service name", model("").replace("name: a,", "name: litellm,"), "is reserved for the proxy"),
    ("space in model reference", model("").replace("Qwen/Qwen3-8B", "'Qwen/Qwen3 8B'"), "models[0].model"),
    ("NUL in model reference", model("").replace("Qwen/Qwen3-8B", '"Qwen/\\0x"'), "models[0].model"),
    ("space in image", model("image: 'vllm/vllm openai'"), "models[0].image"),
    ("interpolation in image", model("image: 'vllm/${TAG}'"), "models[0].image"),
    ("env key with dash", model("env: {BAD-KEY: x}"), "models[0].env: 'BAD-KEY' is not an environment variable"),
    ("NUL in env value", model('env: {X: "a\\0b"}'), "models[0].env: the value of X contains a NUL byte"),
    ("newline in extra_args", model('extra_args: ["--x\\n--y"]'), "models[0].extra_args"),
    ("managed flag", model("extra_args: [--port, '9000']"), "models[0].extra_args[0]: --port is set by"),
    ("managed flag with =", model("extra_args: ['--tensor-parallel-size=2']"), "--tensor-parallel-size is set by"),
    ("stack name with capitals", GOOD.replace("name: s", "name: Stack"), "name: 'Stack' is not a valid stack name"),
    ("stack name too long", GOOD.replace("name: s", f"name: {'s' * 41}"), "is not a valid stack name"),
    # LoRA paths
    ("LoRA path traversal", model("loras: [{name: x, path: ../../etc}]"), "models[0].loras[0].path"),
    ("LoRA absolute path", model("loras: [{name: x, path: /etc/passwd}]"), "is absolute"),
    ("LoRA home path", model("loras: [{name: x, path: ~root}]"), "is absolute"),
    ("LoRA path and repo", model("loras: [{name: x, path: a, repo: o/r}]"), "needs exactly one of path"),
    ("LoRA bad repo", model("loras: [{name: x, repo: 'not a repo'}]"), "models[0].loras[0].repo"),
    ("LoRA rank above 512", model("loras: [{name: x, repo: o/r, rank: 1000}]"), "models[0].loras[0].rank"),
    ("runtime dir absolute", model("runtime_loras: {dir: /srv}"), "models[0].runtime_loras.dir"),
    # GPUs
    ("negative gpu", model("gpu: -1"), "models[0].gpu: -1 must be >= 0"),
    ("gpu above 63", model("gpu: 64"), "models[0].gpu: 64 must be <= 63"),
    ("gpu as string", model("gpu: '0'"), "models[0].gpu: expected an integer"),
    ("gpu as bool", model("gpu: true"), "models[0].gpu"),
    ("too many GPUs", gpus("{count: 100, type: L4}"), "gpus.count: 100 must be <= 64"),
    ("unknown key in gpus", gpus("{count: 2, type: L4, colour: red}"), "gpus.colour: unknown key"),
    ("GPU index not a number", gpus("[{index: zero, type: L4}]"), "gpus[0].index: expected an integer"),
    ("negative GPU memory", gpus("[{index: 0, memory_gib: -80}]"), "gpus[0].memory_gib: -80 must be > 0"),
    ("zero GPU memory", gpus("[{index: 0, memory_gib: 0}]"), "gpus[0].memory_gib"),
    ("huge reserve", gpus("[{index: 0, type: L4, reserve_gib: 1.0e+9}]"), "gpus[0].reserve_gib"),
    ("unknown boot mode", gpus("[{index: 0, type: L4, boot: fast}]"), "gpus[0].boot: 'fast' is not one of"),
    # top level and proxy
    ("proxy port zero", stack("proxy: {port: 0}\n"), "proxy.port: 0 must be >= 1"),
    ("proxy host name", stack("proxy: {host: localhost}\n"), "proxy.host: 'localhost' is not an IP address"),
    ("proxy host injection", stack("proxy: {host: '0.0.0.0; rm'}\n"), "proxy.host"),
    ("zero workers", stack("proxy: {workers: 0}\n"), "proxy.workers: 0 must be >= 1"),
    ("version 2", stack("version: 2\n"), "version: 2 is not one of"),
    ("unknown top-level key", stack("servicez: {}\n"), "servicez: unknown key"),
    ("extra compose keys", stack("services: {evil: {image: x}}\n"), "services: unknown key"),
    ("engine version word", stack("docker: {min_engine: latest}\n"), "docker.min_engine: 'latest' is not a version"),
    ("image with space", stack("images: {vllm: 'has space'}\n"), "images.vllm"),
    ("models as mapping", f"name: s\n{GPU}models: {{a: b}}\n", "models: expected a list"),
    ("models null", f"name: s\n{GPU}models:\n", "models: expected a list"),
    (
        "arch negative params",
        model(
            "arch: {params_b: -1, hidden_size: 8, intermediate_size: 8, num_layers: 1, num_attention_heads: 1,"
            " num_kv_heads: 1, head_dim: 8, context_length: 16}"
        ).replace("Qwen/Qwen3-8B", "org/custom"),
        "arch.params_override",
    ),
    ("arch incomplete", model("arch: {params_b: 1}").replace("Qwen/Qwen3-8B", "org/custom"), "models[0].arch"),
    # YAML itself
    ("duplicate top-level key", GOOD + "name: t\n", "duplicate key 'name'"),
    ("python object tag", "!!python/object/apply:os.system ['id']\n", "s.yaml:1:1:"),
    ("custom tag", GOOD.replace("memory: 0.5", "memory: !fraction 0.5"), "s.yaml:"),
    ("alias bomb", BOMB, "s.yaml:"),
    ("merge key", "base: &b {name: s}\n<<: *b\n" + GOOD.split("\n", 1)[1], "s.yaml:"),
    ("tab indentation", GOOD.replace("  - {", "\t- {"), "s.yaml:"),
    ("scalar document", "just a string\n", "the top level must be a mapping"),
]

# Issue 21 item 2: a pattern checked with re.match and `$` let a trailing line
# break through, and the render wrote a docker-compose.yml Compose cannot parse.
# Every pattern-checked field, with each character that ends or breaks a line
# (as YAML double-quoted escapes).
LINE_BREAKS = {"LF": "\\n", "CR": "\\r", "TAB": "\\t", "NUL": "\\0", "LINE SEPARATOR": "\\L", "NEL": "\\N"}
PATTERN_FIELDS: dict[str, tuple[Callable[[str], str], str]] = {
    "model name": (lambda bad: GOOD.replace("name: a,", f'name: "a{bad}",'), "models[0].name"),
    "stack name": (lambda bad: GOOD.replace("name: s\n", f'name: "s{bad}"\n'), "name"),
    "model id": (lambda bad: GOOD.replace("model: Qwen/Qwen3-8B", f'model: "Qwen/Qwen3-8B{bad}"'), "models[0].model"),
    "image": (lambda bad: model(f'image: "vllm/vllm-openai:v0.26.0{bad}"'), "models[0].image"),
    "env key": (lambda bad: model(f'env: {{"KEY{bad}": v}}'), "models[0].env"),
    "shm_size": (lambda bad: model(f'shm_size: "2gb{bad}"'), "models[0].shm_size"),
    "min_engine": (lambda bad: stack(f'docker: {{min_engine: "25.0{bad}"}}\n'), "docker.min_engine"),
    "adapter name": (
        lambda bad: model(f'loras: [{{name: "acme{bad}", repo: org/acme, rank: 8}}]'),
        "models[0].loras[0].name",
    ),
}
CORPUS += [
    (f"{field} ending in {char}", make(escape), where)
    for field, (make, where) in PATTERN_FIELDS.items()
    for char, escape in LINE_BREAKS.items()
]
# Issue 21 item 7: names that resolvers read as IP addresses on the compose network.
CORPUS += [
    (f"model named {name}", GOOD.replace("name: a,", f"name: '{name}',"), "which resolvers read as an IP address")
    for name in ("0", "1234", "0x7f000001", "2130706433")
]


# Issue 21 items 1, 8 and 10: an alias bomb in a key, characters and numbers
# PyYAML cannot read, a symlink loop, and YAML 1.1 merge keys.
KEY_ANCHORS = [f"&{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
KEY_BOMB = "? [" + ", ".join(["&a [x, x, x, x, x, x, x, x, x]", *KEY_ANCHORS]) + "]\n: 1\n"
CORPUS += [
    ("alias bomb inside a mapping key", KEY_BOMB, "s.yaml:1:3: the top level: a key is a list; keys are plain strings"),
    ("a mapping as a key", "? {a: 1}\n: 1\n", "s.yaml:1:3: the top level: a key is a mapping"),
    ("raw control byte", GOOD.replace("name: a,", "name: a\x01,"),
     "s.yaml:4:13: contains the control character U+0001"),
    ("5,000-digit integer", model("max_num_seqs: " + "9" * 5000),
     "models[0].max_num_seqs: an integer of 5000 digits is too large to read"),
]  # fmt: skip


def test_the_corpus_is_large_and_distinct() -> None:
    assert len(CORPUS) >= 60
    assert len({text for _, text, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in CORPUS], ids=[c[0] for c in CORPUS])
def test_hostile_stack_is_one_line_exit_1_and_nothing_changes(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path / "s.yaml", GOOD)
    assert run_cli(["render", "s.yaml"], tmp_path).code == 0
    before = tree(tmp_path / "compose")
    write(tmp_path / "s.yaml", text)
    for command in (["render", "s.yaml"], ["plan", "s.yaml"], ["check", "s.yaml"]):
        result = run_cli(command, tmp_path)
        assert result.code == 1, (command, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert tree(tmp_path / "compose") == before


# --- interrupted writes ----------------------------------------------------------

KILL_AFTER_FSYNCS = """
import os, signal, sys
calls = 0
kill_at = int(sys.argv[1])
real_fsync = os.fsync
def fsync(fd):
    global calls
    calls += 1
    real_fsync(fd)
    if calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # as if the machine lost power here
os.fsync = fsync
from gpustack_compose.cli import main
sys.argv = ["gpustack-compose", "render", "s.yaml"]
main()
"""


@pytest.mark.parametrize("killed_after", [1, 2, 3])  # 3: every temp file written, none renamed yet
def test_a_render_killed_midway_leaves_the_previous_output_intact(tmp_path: Path, killed_after: int) -> None:
    write(tmp_path / "s.yaml", GOOD)
    assert run_cli(["render", "s.yaml"], tmp_path).code == 0
    before = tree(tmp_path / "compose")
    # three rendered files change with the fraction and the model
    write(tmp_path / "s.yaml", GOOD.replace("memory: 0.5", "memory: 0.4").replace("Qwen3-8B", "Qwen3-4B"))
    script = write(tmp_path / "kill.py", KILL_AFTER_FSYNCS)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script), str(killed_after)], cwd=tmp_path, env=env,
                          capture_output=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == -signal.SIGKILL
    after = tree(tmp_path / "compose")
    rendered = {k: v for k, v in after.items() if ".gsc-tmp-" not in k}
    assert rendered == before  # no target touched: the temp files were still being written
    assert any(".gsc-tmp-" in k for k in after)  # what the killed process left behind
    # the next render cleans up and completes
    assert run_cli(["render", "s.yaml"], tmp_path).code == 0
    final = tree(tmp_path / "compose")
    assert not any(".gsc-tmp-" in k for k in final)
    assert run_cli(["check", "s.yaml"], tmp_path).code == 0


# --- security defaults, on every rendered stack ------------------------------------


def every_stack() -> list[Path]:
    return [*sorted((REPO / "tests" / "golden").glob("*/stack.yaml")), *sorted((REPO / "stacks").glob("*.yaml"))]


@pytest.mark.parametrize("path", every_stack(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_security_defaults(path: Path) -> None:
    loaded = load_and_plan(path)
    spec, plan = loaded.stack, loaded.plan
    files = render(spec, plan, "stack.yaml")
    compose: dict[str, Any] = yaml.safe_load(files["docker-compose.yml"])
    for name, service in compose["services"].items():
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert "privileged" not in service and "cap_add" not in service and "network_mode" not in service
        assert "pid" not in service
        if "ipc" in service:
            # only an elastic GPU's servers share an IPC namespace (kvcached's
            # /dev/shm segments), the first one's -- never the host's
            model = plan.by_service(name)
            head = plan.gpu(model.gpu).models[0].service
            assert model.elastic and service["ipc"] in ("shareable", f"service:{head}"), name
        if service["labels"]["gpustack-compose.role"] == "model":
            assert "ports" not in service, f"{name}: a model port is published"
            # every host folder is read-only, bar the stack's own hf_cache folder vLLM downloads into
            writable = [v for v in service["volumes"] if v["type"] == "bind" and not v.get("read_only")]
            assert all(spec.hf_cache and v["target"] == HF_CACHE for v in writable), name
            assert service["environment"]["HF_TOKEN"] == "${HF_TOKEN:-}"
    proxy = compose["services"]["litellm"]
    (port,) = proxy["ports"]
    assert port["host_ip"] == spec.proxy.host
    if "host" not in spec.proxy.model_fields_set:
        assert port["host_ip"] == "127.0.0.1"  # only on the network when the stack file says so
    assert proxy["environment"]["LITELLM_MASTER_KEY"].startswith("${LITELLM_MASTER_KEY:?")
    litellm = yaml.safe_load(files["litellm/config.yaml"])
    assert litellm["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    # no secret-looking value in any rendered file, only variable names
    for name, text in files.items():
        for secret in (r"sk-[A-Za-z0-9_-]{8,}", r"hf_[A-Za-z0-9]{8,}", "BEGIN [A-Z ]*PRIVATE KEY", r"password\s*[:=]"):
            assert not re.search(secret, text), (name, secret)
    env_example = files[".env.example"]
    assert all(line.startswith("#") or line.endswith("=") or not line for line in env_example.splitlines())


# Issue 21 item 5: env: keys the render sets itself, and secrets in plain text.
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("{HF_TOKEN: hf_abc}", "HF_TOKEN is set by gpustack-compose; remove it from env: it is read from the .env file "
         "next to docker-compose.yml (see .env.example)"),
        ("{HF_HOME: /x}", "HF_HOME is set by gpustack-compose; remove it from env: it follows from the stack"),
        ("{KVCACHED_IPC_NAME: other}", "KVCACHED_IPC_NAME is set by gpustack-compose"),
        ("{VLLM_LORA_RESOLVER_CACHE_DIR: /x}", "VLLM_LORA_RESOLVER_CACHE_DIR is set by gpustack-compose"),
        ("{WANDB_API_KEY: abc}", "WANDB_API_KEY looks like a secret, and env: values are written into the committed "
         "docker-compose.yml in plain text"),
        ("{GITHUB_TOKEN: x}", "GITHUB_TOKEN looks like a secret"),
        ("{NOTE: hf_aaaaaaaaaaaaaaaaaaaaaaaaaaaa}", "NOTE looks like a secret"),
    ],
)  # fmt: skip
def test_env_refuses_rendered_keys_and_secrets(tmp_path: Path, env: str, message: str) -> None:
    write(tmp_path / "s.yaml", model(f"env: {env}"))
    result = run_cli(["render", "s.yaml"], tmp_path)
    assert result.code == 1
    assert result.stderr.startswith("error: s.yaml:4:") and "models[0].env: " in result.stderr, result.stderr
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "compose").exists()


# Issue 21 item 12: risky choices are refused or told, each with the reason.
def test_a_runtime_folder_that_holds_the_project_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    for folder in (".", "./"):
        write(tmp_path / "s.yaml", model(f"runtime_loras: {{dir: '{folder}'}}"))
        result = run_cli(["render", "s.yaml"], tmp_path)
        assert result.code == 1
        assert result.stderr.startswith("error: s.yaml:4:"), result.stderr
        assert f"models[0].runtime_loras.dir: {folder} holds the stack file (and the rendered compose/" in result.stderr
    assert not (tmp_path / "compose").exists()


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        (stack("proxy: {host: 0.0.0.0}\n"), "warning: proxy.host: 0.0.0.0 publishes the proxy on every interface"),
        (stack("proxy: {host: '::'}\n"), "warning: proxy.host: :: publishes the proxy on every interface"),
        (stack("images: {vllm: 'vllm/vllm-openai:latest'}\n"), "warning: images.vllm: vllm/vllm-openai:latest is not "
         "pinned (no tag, or :latest)"),
        (model("image: registry:5000/vllm"), "warning: models[0].image: registry:5000/vllm is not pinned"),
        (stack("proxy: {admin_ui: true}\n"), "warning: proxy.admin_ui: LiteLLM's admin UI accepts the master key"),
    ],
)  # fmt: skip
def test_risky_choices_are_told_and_still_rendered(tmp_path: Path, text: str, warning: str) -> None:
    write(tmp_path / "s.yaml", text)
    for command in ("render", "plan"):
        result = run_cli([command, "s.yaml"], tmp_path)
        assert result.code == 0, result.stderr
        assert warning in result.stderr, (command, result.stderr)


def test_pinned_images_and_loopback_tell_nothing(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", model("image: 'vllm/vllm-openai@sha256:" + "a" * 64 + "'"))
    assert run_cli(["render", "s.yaml"], tmp_path).stderr == ""


def test_litellm_admin_ui_is_off_unless_asked(tmp_path: Path) -> None:
    for admin_ui, present in ((None, True), ("true", False)):
        text = stack(f"proxy: {{admin_ui: {admin_ui}}}\n") if admin_ui else GOOD
        stack_spec_path = write(tmp_path / "s.yaml", text)
        loaded = load_stack(stack_spec_path)
        compose = yaml.safe_load(render(loaded, plan_stack(loaded), "../s.yaml")["docker-compose.yml"])
        env = compose["services"]["litellm"]["environment"]
        assert (env.get("DISABLE_ADMIN_UI") == "True") is present


def test_merge_keys_merge_and_the_mapping_own_keys_win(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", (
        f"name: s\n{GPU}models:\n"
        "  - &base {name: a, model: Qwen/Qwen3-8B, memory: 0.3, max_model_len: 8192}\n"
        "  - <<: *base\n    name: b\n    memory: 0.4\n"
    ))  # fmt: skip
    stack_spec = load_stack(tmp_path / "s.yaml")
    assert [(m.name, m.model, m.memory.fraction) for m in stack_spec.models] == [
        ("a", "Qwen/Qwen3-8B", 0.3),
        ("b", "Qwen/Qwen3-8B", 0.4),
    ]
    write(tmp_path / "d.yaml", f"name: s\n{GPU}name: t\n")
    result = run_cli(["plan", "d.yaml"], tmp_path)
    assert (result.code, result.stderr) == (1, "error: d.yaml:3:1: name: duplicate key 'name'\n")


def test_a_symlink_loop_in_an_adapter_path_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    write(tmp_path / "s.yaml", model("loras: [{name: x, path: ./loop1}]"))
    result = run_cli(["render", "s.yaml"], tmp_path)
    assert result.code == 1
    assert result.stderr.endswith("models[0].loras[0].path: ./loop1 is a loop of symbolic links\n"), result.stderr


# Issue 21 item 4: symbolic links below the output folder are never followed.
@pytest.mark.parametrize("link", ["litellm", "k8s", "PLAN.md", "k8s/a-deployment.yaml"])
def test_a_link_below_the_output_folder_is_refused_by_every_command(tmp_path: Path, link: str) -> None:
    write(tmp_path / "s.yaml", GOOD)
    assert run_cli(["render", "s.yaml", "--target", "all"], tmp_path).code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = write(outside / "secret.txt", "TOKEN=hf_do_not_print\n")
    placed = tmp_path / "compose" / "s" / link
    original = placed.read_bytes() if placed.is_file() else None
    if placed.is_dir():
        for child in placed.iterdir():
            write(outside / child.name, child.read_text())
    shutil.rmtree(placed) if placed.is_dir() else placed.unlink()
    placed.symlink_to(outside if original is None else secret)
    before = tree(outside)
    write(tmp_path / "s.yaml", GOOD.replace("memory: 0.5", "memory: 0.4"))  # a change to write
    for command in (["render", "s.yaml"], ["check", "s.yaml"], ["diff", "s.yaml"]):
        result = run_cli(command, tmp_path)
        assert result.code == 1, (command, result.stdout, result.stderr)
        assert result.stderr == (
            f"error: compose/s/{link}: is a symbolic link; gpustack-compose never follows links below the output "
            "folder: replace it with the file or folder itself\n"
        ), (command, result.stderr)
        assert "hf_do_not_print" not in result.stdout
    assert tree(outside) == before  # nothing written or deleted through the link
    assert placed.is_symlink()


def test_a_link_in_an_owned_folder_is_never_deleted(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", GOOD)
    assert run_cli(["render", "s.yaml", "--target", "all"], tmp_path).code == 0
    target = write(tmp_path / "keep.yaml", "# Generated by gpustack-compose, but not here\n")
    (tmp_path / "compose" / "s" / "k8s" / "stray.yaml").symlink_to(target)
    assert run_cli(["render", "s.yaml"], tmp_path).code == 0
    assert (tmp_path / "compose" / "s" / "k8s" / "stray.yaml").is_symlink() and target.exists()


# Issue 21 item 9: two renders of one stack at once.
def test_renders_of_one_stack_at_once_all_succeed(tmp_path: Path) -> None:
    write(tmp_path / "s.yaml", GOOD)
    command = [sys.executable, "-m", "gpustack_compose", "render", "s.yaml", "--target", "all"]
    for round_ in range(3):
        write(tmp_path / "s.yaml", GOOD.replace("memory: 0.5", f"memory: 0.{5 - round_}"))
        procs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]  # fmt: skip
        results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
        for proc in procs:
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        assert [code for code, _ in results] == [0, 0, 0, 0], results
        assert not list((tmp_path / "compose").rglob(".gsc-tmp-*"))
        assert run_cli(["check", "s.yaml"], tmp_path).code == 0
