"""`lora add|remove`: stack edits that keep the file's comments, validated
before anything is written; live loading on a running rehearsal."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import docker
import httpx
import pytest

from gpustack_compose.contract import PROXY_PORT, PROXY_SERVICE
from gpustack_compose.loader import load_stack
from gpustack_compose.runtime.state import DockerView
from gpustack_compose.runtime.target import existing_rehearsal
from gpustack_compose.stack_edit import add_lora, remove_lora
from tests.conftest import run_cli, run_module, tree, unique, write

STACK = """\
# Extraction stack -- reviewed by the platform team.
name: {name}
gpus: [{{index: 0, type: L40S}}]
models:
  # The shared base model; one adapter per customer.
  - name: llama
    model: meta-llama/Llama-3.1-8B-Instruct
    memory: 0.6   # leaves room for the OCR model
    max_model_len: 8192
    max_lora_rank: 8
    loras:
      - name: acme
        path: ./adapters/acme
    runtime_loras: {{dir: ./adapters}}
proxy: {{workers: 1}}
"""


def adapter(folder: Path, rank: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank}))


@pytest.fixture
def project(workdir: Path) -> Path:
    (workdir / ".git").mkdir()
    adapter(workdir / "adapters" / "acme")
    adapter(workdir / "adapters" / "globex")
    write(workdir / "s.yaml", STACK.format(name="loras"))
    return workdir


def test_edits_keep_comments_and_layout() -> None:
    text = STACK.format(name="x")
    added = add_lora(text, "s.yaml", "llama", "globex", "./adapters/globex")
    assert added == text.replace(
        "        path: ./adapters/acme\n",
        "        path: ./adapters/acme\n      - name: globex\n        path: ./adapters/globex\n",
    )
    assert remove_lora(added, "s.yaml", "llama", "globex") == text
    assert "\n    loras:" not in remove_lora(text, "s.yaml", "llama", "acme")


def test_add_then_remove_through_the_cli(project: Path) -> None:
    result = run_cli(["lora", "add", "s.yaml", "llama", "globex", "adapters/globex"], project)
    assert result.code == 0, result.stderr  # with no engine: edited, rendered, effective at the next `up`
    text = (project / "s.yaml").read_text()
    assert "      - name: globex\n        path: ./adapters/globex\n" in text
    assert "# The shared base model; one adapter per customer." in text
    config = (project / "compose" / "loras" / "litellm" / "config.yaml").read_text()
    assert 'model_name: "globex"' in config
    run_cli(["lora", "remove", "s.yaml", "llama", "globex"], project)
    assert (project / "s.yaml").read_text() == STACK.format(name="loras")


def test_with_no_engine_the_change_waits_for_the_next_up(project: Path) -> None:
    no_engine = {"DOCKER_HOST": f"unix://{project}/no-engine.sock"}
    result = run_module(["lora", "add", "s.yaml", "llama", "globex", "adapters/globex"], project, env=no_engine)
    assert result.code == 0, result.stderr
    assert "the change takes effect at the next `up`" in result.stdout + result.stderr
    assert "name: globex" in (project / "s.yaml").read_text()
    removed = run_module(["lora", "remove", "s.yaml", "llama", "globex"], project, env=no_engine)
    assert removed.code == 0, removed.stderr
    assert "the change takes effect at the next `up`" in removed.stdout + removed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["llama", "acme", "adapters/acme"], "error: s.yaml: 'llama' already serves an adapter named 'acme'\n"),
        (["nope", "x", "adapters/globex"], "error: s.yaml: no model named 'nope' (models: llama)\n"),
        (["llama", "llama", "adapters/globex"],
         "error: s.yaml with adapter 'llama' added:14:15: models[0].loras[1].name: 'llama' is already used by "
         "models[0].name "
         "(adapters are model names at the proxy)\n"),
        (["llama", "ghost", "adapters/ghost"],
         "error: s.yaml with adapter 'ghost' added:15:15: models[0].loras[1].path: ./adapters/ghost does not exist "
         "(paths are relative to the stack file)\n"),
    ],
)  # fmt: skip
def test_a_bad_add_writes_nothing(project: Path, args: list[str], message: str) -> None:
    before = tree(project)
    result = run_cli(["lora", "add", "s.yaml", *args], project)
    assert (result.code, result.stderr) == (1, message)
    assert tree(project) == before


class BaseModelClient:
    """A client of the base model that keeps sending while adapters change: a
    plain keep-alive connection, no retries, so any request the proxy drops
    is counted."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=60, headers={"Authorization": f"Bearer {key}"})
        self.sent = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        body = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        while not self.stop.is_set():
            self.sent += 1
            try:
                response = self.http.post(f"{self.url}/v1/chat/completions", json=body)
                if response.status_code != 200:
                    self.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.02)

    def __enter__(self) -> BaseModelClient:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=90)
        self.http.close()


@pytest.mark.docker
@pytest.mark.usefixtures("built_images")
def test_lora_add_on_a_running_rehearsal(workdir: Path) -> None:
    (workdir / ".git").mkdir()
    adapter(workdir / "adapters" / "acme")
    name = unique("lora")
    write(workdir / "s.yaml", STACK.format(name=name))
    try:
        up = run_module(["up", "--rehearsal", "s.yaml", "--load-s", "1"], workdir)
        assert up.code == 0, up.stderr
        before = run_module(["status", "--rehearsal", "s.yaml", "--json"], workdir)
        started = {r["service"]: r["started_at"] for r in json.loads(before.stdout)["services"]}
        target = existing_rehearsal(load_stack(workdir / "s.yaml"), workdir / "compose" / name)
        assert target.master_key is not None
        bound = DockerView(docker.from_env()).published_port(target.project, PROXY_SERVICE, PROXY_PORT)
        assert bound is not None
        with BaseModelClient(f"http://{bound[0]}:{bound[1]}", target.master_key) as base:
            # a new customer's adapter lands in the runtime folder; one command routes it
            adapter(workdir / "adapters" / "globex")
            added = run_module(["lora", "add", "--rehearsal", "s.yaml", "llama", "globex", "adapters/globex"], workdir)
            assert added.code == 0, added.stderr
            assert "llama: Success: LoRA adapter 'globex' added successfully." in added.stdout
            assert "proxy reloaded in place and routes globex" in added.stdout
            smoke = run_module(["smoke", "--rehearsal", "s.yaml", "--json"], workdir)
            results = {r["model"]: r["ok"] for r in json.loads(smoke.stdout)["smoke"]}
            assert results == {"llama": True, "acme": True, "globex": True, "(no key)": True}
            removed = run_module(["lora", "remove", "--rehearsal", "s.yaml", "llama", "globex"], workdir)
            assert removed.code == 0, removed.stderr
            assert "removed successfully" in removed.stdout
            assert "no longer routes globex" in removed.stdout
            time.sleep(3)  # the old workers' drain, with the client still sending
        # no request to the base model failed, and neither it nor the proxy restarted
        assert base.failures == []
        assert base.sent > 20
        after = run_module(["status", "--rehearsal", "s.yaml", "--json"], workdir)
        now = {r["service"]: r["started_at"] for r in json.loads(after.stdout)["services"]}
        assert now == started
        smoke = run_module(["smoke", "--rehearsal", "s.yaml", "--json"], workdir)
        assert "globex" not in {r["model"] for r in json.loads(smoke.stdout)["smoke"]}
    finally:
        run_module(["down", "--rehearsal", "s.yaml"], workdir)
