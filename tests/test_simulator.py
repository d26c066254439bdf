"""The vLLM simulator as a real process on the host: command line, port closed
while loading, OpenAI endpoints, the GPU ledger, runtime LoRA loading."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gpustack_compose.simulator.args import UnrecognizedArguments, parse
from gpustack_compose.simulator.ledger import Cards, GiB, Gpu, Ledger


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gpustack_compose.simulator", "serve", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_port(port: int, timeout: float = 10) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "adapter_config.json").write_text("{}")
    proc = start(
        ["Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen", "--port", str(port), "--host", "127.0.0.1",
         "--max-model-len", "64", "--enable-lora", "--max-loras", "2", "--lora-modules",
         '{"name":"inv","path":"/adapters/inv","base_model_name":"qwen"}', "--enable-prefix-caching"],
        {"GSC_SIM_LOAD_S": "1.0", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"},
    )  # fmt: skip
    try:
        yield port, proc
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_port_stays_closed_while_loading(server: tuple[int, subprocess.Popen[str]]) -> None:
    port, _ = server
    waited = wait_port(port)
    assert waited >= 0.8  # closed for the simulated load time (1 s)
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200


def test_openai_endpoints(server: tuple[int, subprocess.Popen[str]], tmp_path: Path) -> None:
    port, _ = server
    wait_port(port)
    base = f"http://127.0.0.1:{port}"
    models = httpx.get(f"{base}/v1/models").json()["data"]
    assert [(m["id"], m["parent"]) for m in models] == [("qwen", None), ("inv", "qwen")]
    chat = httpx.post(f"{base}/v1/chat/completions", json={"model": "inv", "messages": [{"role": "user",
                      "content": "hello"}], "max_tokens": 3}).json()  # fmt: skip
    assert chat["model"] == "inv"
    assert chat["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    completion = httpx.post(f"{base}/v1/completions", json={"model": "qwen", "prompt": "a b", "max_tokens": 2})
    assert completion.json()["choices"][0]["text"] == "simulated reply"
    missing = httpx.post(f"{base}/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user",
                         "content": "x"}]})  # fmt: skip
    assert missing.status_code == 404
    assert missing.json()["message"] == "The model `nope` does not exist."
    too_long = httpx.post(f"{base}/v1/completions", json={"model": "qwen", "prompt": "x", "max_tokens": 100})
    assert too_long.status_code == 400
    assert "maximum context length is 64 tokens" in too_long.json()["message"]
    with httpx.stream("POST", f"{base}/v1/chat/completions", json={"model": "qwen", "stream": True,
                      "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}) as stream:  # fmt: skip
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    # runtime LoRA loading (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)
    loaded = httpx.post(f"{base}/v1/load_lora_adapter", json={"lora_name": "new", "lora_path": str(tmp_path / "new")})
    assert (loaded.status_code, loaded.text) == (200, "Success: LoRA adapter 'new' added successfully.")
    assert "new" in [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]]
    again = httpx.post(f"{base}/v1/load_lora_adapter", json={"lora_name": "new", "lora_path": str(tmp_path / "new")})
    assert again.status_code == 400
    gone = httpx.post(f"{base}/v1/unload_lora_adapter", json={"lora_name": "new"})
    assert gone.status_code == 200
    assert httpx.post(f"{base}/v1/unload_lora_adapter", json={"lora_name": "new"}).status_code == 404


def test_unknown_flag_is_refused_like_vllm() -> None:
    proc = start(["m", "--served-model-name", "x", "--frobnicate", "3"], {})
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert "vllm serve: error: unrecognized arguments: --frobnicate 3" in out


def test_every_flag_the_renderer_emits_is_accepted() -> None:
    from gpustack_compose.loaded import load_and_plan
    from gpustack_compose.units import fmt_fraction
    from gpustack_compose.vllm_args import serve_args
    from tests.conftest import REPO

    for stack_file in [*(REPO / "stacks").glob("*.yaml"), *(REPO / "tests" / "golden").glob("*/stack.yaml")]:
        loaded = load_and_plan(stack_file)
        stack, plan = loaded.stack, loaded.plan
        for spec in stack.models:
            args = parse(serve_args(spec, plan.model(spec.name)))
            assert args.served_model_name == spec.name
            # as rendered (fmt_fraction), not the float the planner computed it as
            assert args.gpu_memory_utilization == float(fmt_fraction(plan.model(spec.name).fraction))
            assert set(args.lora_modules) == {lora.name for lora in spec.loras}


def test_vllm_flag_spellings() -> None:
    args = parse(["m", "--max_model_len=128", "-tp", "2", "--served-model-name", "a", "b"])
    assert (args.max_model_len, args.served_model_name, args.extra["tensor_parallel_size"]) == (128, "a", "2")


def test_ledger_is_vllms_startup_check(tmp_path: Path) -> None:
    gpu = Gpu("0", total_bytes=80 * GiB, reserve_bytes=GiB)
    ledger = Ledger(tmp_path, gpu)
    assert ledger.claim_if_free("a", "a", requested=40 * GiB, holds=39 * GiB) == (True, 79 * GiB)
    # b asks for 41 GiB while only 79 - 39 = 40 GiB are free: refused, nothing recorded
    assert ledger.claim_if_free("b", "b", requested=41 * GiB, holds=41 * GiB) == (False, 40 * GiB)
    assert set(ledger.claims()) == {"a"}
    # a restart of a replaces its own claim instead of counting it twice
    assert ledger.claim_if_free("a", "a", requested=40 * GiB, holds=39 * GiB) == (True, 79 * GiB)
    ledger.release("a")
    assert ledger.free_for("b") == 79 * GiB


def test_a_tensor_parallel_server_claims_every_card_or_none(tmp_path: Path) -> None:
    gpus = [Gpu(str(i), total_bytes=80 * GiB, reserve_bytes=GiB) for i in (0, 1)]
    Ledger(tmp_path, gpus[1]).claim_if_free("other", "o", 0, 45 * GiB)
    cards = Cards(tmp_path, gpus)
    # GPU 1 has only 34 GiB free: the worker there refuses, GPU 0 keeps nothing
    assert cards.claim_if_free("tp", "tp", requested=40 * GiB, holds=GiB) == (False, 34 * GiB, gpus[1])
    assert set(Ledger(tmp_path, gpus[0]).claims()) == set()
    # fits both: claimed on both, the tightest card's free memory is reported
    assert cards.claim_if_free("tp", "tp", requested=30 * GiB, holds=GiB) == (True, 34 * GiB, gpus[1])
    assert set(Ledger(tmp_path, gpus[0]).claims()) == {"tp"}
    assert set(Ledger(tmp_path, gpus[1]).claims()) == {"other", "tp"}
    assert cards.others("tp") == 45 * GiB  # the busiest card
    assert cards.set_claim("tp", "tp", 40 * GiB)[0] is False  # GPU 1 cannot grow it
    cards.release("tp")
    assert set(Ledger(tmp_path, gpus[1]).claims()) == {"other"}


def test_refusal_text_and_exit(tmp_path: Path) -> None:
    Ledger(tmp_path, Gpu("0", 85_017_493_504, round(0.52 * GiB))).claim_if_free("other", "o", 0, 47 * GiB)
    proc = start(
        ["m", "--served-model-name", "b", "--gpu-memory-utilization", "0.5", "--port", str(free_port())],
        {"GSC_SIM_LEDGER_DIR": str(tmp_path), "GSC_SIM_LOAD_S": "0"},
    )
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert (
        "ValueError: Free memory on device cuda:0 (31.66/79.18 GiB) on startup is less than desired GPU memory "
        "utilization (0.5, 39.59 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes."
    ) in out
    assert "RuntimeError: Engine core initialization failed. See root cause above." in out


def test_sigterm_releases_the_claim(tmp_path: Path) -> None:
    port = free_port()
    proc = start(["m", "--served-model-name", "a", "--port", str(port), "--host", "127.0.0.1"],
                 {"GSC_SIM_LEDGER_DIR": str(tmp_path), "GSC_SIM_LOAD_S": "0", "GSC_SIM_INSTANCE": "a"})  # fmt: skip
    wait_port(port)
    ledger = Ledger(tmp_path, Gpu("0", 85_017_493_504, round(0.52 * GiB)))
    assert set(ledger.claims()) == {"a"}
    started = time.monotonic()
    proc.terminate()
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert time.monotonic() - started < 3  # handles SIGTERM (a PID 1 that ignored it would wait 10 s)
    assert ledger.claims() == {}


def test_sigterm_during_traffic_still_stops_it() -> None:
    """A stop signal landing while a connection is accepted used to be
    swallowed by socketserver's `except Exception` (the server kept running)."""
    import threading

    port = free_port()
    proc = start(["m", "--served-model-name", "a", "--port", str(port), "--host", "127.0.0.1"], {"GSC_SIM_LOAD_S": "0"})
    wait_port(port)
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    conn.recv(100)
            except OSError:
                time.sleep(0.01)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        proc.terminate()
        proc.communicate(timeout=5)
        assert proc.returncode == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _boot_two_together(tmp_path: Path, exact: bool) -> dict[str, tuple[int, str]]:
    """The H100 experiment 2 / 4 shapes, started at the same instant."""
    gib = 1024**3
    servers = {
        # name: (util, weights GiB, profile GiB, exact KV GiB)
        "a": (0.5, 27.62, 1.36, 8),
        "b": (0.3, 14.30, 1.42, 4),
    }
    procs = {}
    for name, (util, weights, profile, kv) in servers.items():
        args = ["m", "--served-model-name", name, "--gpu-memory-utilization", str(util), "--port",
                str(free_port()), "--host", "127.0.0.1"]  # fmt: skip
        if exact:
            args += ["--kv-cache-memory-bytes", str(kv * gib)]
        procs[name] = start(args, {
            "GSC_SIM_LEDGER_DIR": str(tmp_path), "GSC_SIM_LOAD_S": "2", "GSC_SIM_INSTANCE": name,
            "GSC_SIM_WEIGHTS_BYTES": str(int(weights * gib)), "GSC_SIM_PROFILE_BYTES": str(int(profile * gib)),
        })  # fmt: skip
    results = {}
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=6)  # a refusal exits; a healthy server keeps running
        except subprocess.TimeoutExpired:
            proc.terminate()
            out, _ = proc.communicate(timeout=10)
            results[name] = (0, out)
        else:
            results[name] = (proc.returncode, out)
    return results


def test_fraction_only_servers_booted_together_race(tmp_path: Path) -> None:
    """Each profiles while the other loads and charges its weights to itself:
    KV comes out negative (exp. 2 of the H100 report: -12.6 / -20.1 GiB)."""
    results = _boot_two_together(tmp_path, exact=False)
    failed = {name: out for name, (code, out) in results.items() if code != 0}
    assert failed, results
    for out in failed.values():
        assert "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`" in out
        assert "Available KV cache memory: -" in out


def test_exact_kv_servers_booted_together_are_immune(tmp_path: Path) -> None:
    """With --kv-cache-memory-bytes both come up (exp. 4: both healthy, twice)."""
    results = _boot_two_together(tmp_path, exact=True)
    assert {name: code for name, (code, _) in results.items()} == {"a": 0, "b": 0}
    for name, (_, out) in results.items():
        assert "as specified by kv_cache_memory_bytes config and skipped memory profiling" in out, name
        assert "Starting vLLM API server" in out


def test_the_simulator_reads_flags_as_vllm_does_prefixes_and_aliases_included() -> None:
    """The spec lets through a prefix of a flag gpustack-compose does not set
    (vLLM's parser accepts it); the simulator must take it too."""
    parsed = parse(["m", "--served-model-name", "m", "--enable-prefix-cach", "-q", "awq", "--max-model-len=512"])
    assert parsed.extra.get("enable_prefix_caching") is True and parsed.extra.get("quantization") == "awq"
    assert parsed.max_model_len == 512
    with pytest.raises(UnrecognizedArguments, match="unrecognized arguments: --max-num"):
        parse(["m", "--max-num", "4"])  # a prefix of several flags: vLLM refuses it too


def test_the_cpu_adaptation_reads_a_prefix_as_its_flag() -> None:
    from gpustack_compose.vllm_args import cpu_adaptation

    adapted = cpu_adaptation(["m", "--tensor-parallel", "2", "--max-num-seqs", "8"], frozenset())
    assert adapted.args == ["m", "--max-num-seqs", "8"]
    assert adapted.differences == ["dropped --tensor-parallel 2: one CPU process stands in for 2 GPUs"]


def test_the_simulators_memory_phases_against_the_h200_run() -> None:
    """Issue 18: what the simulator holds once each server is up (weights + its
    --kv-cache-memory-bytes + the residency it is given) and what the next
    server's free-memory check then finds (LoRA slots load with the weights), against nvidia-smi and vLLM's own
    startup snapshot on the H200 (docs/h200-truth-2026-12-02.md): never less
    than vLLM used nor more free than vLLM saw, and within 0.8 GiB of both."""
    from gpustack_compose.loaded import load_and_plan
    from gpustack_compose.rehearsal import sim_environment
    from gpustack_compose.simulator.server import Settings
    from gpustack_compose.stand_in import RehearsalOptions
    from gpustack_compose.units import GiB
    from tests.conftest import REPO

    runs = REPO / "docs" / "h200-truth-2026-12-02"
    measured = {}
    for summary in sorted(runs.glob("*.summary.json")):
        for key, stack in json.loads(summary.read_text()).items():
            if key != "env":
                measured.update({(key, s["service"]): s for s in stack["servers"]})
    options = RehearsalOptions(model_image="sim", proxy_image="litellm")
    checked = 0
    for key in ("seq", "auto", "lora"):
        loaded = load_and_plan(REPO / "bench" / "gpu" / "stacks" / f"h200-{key}.yaml")
        held = 0
        for model in loaded.plan.boot_ordered():
            settings = Settings.from_env(sim_environment(loaded.stack, loaded.plan, model, options))
            gpu = settings.gpus[0]
            seen = measured[(key, model.service)]
            assert settings.weights_bytes is not None
            # "Model loading took", LoRA slots included
            assert settings.weights_bytes / GiB == pytest.approx(seen["weights_gib"], abs=0.35)
            free_at_start = (gpu.total_bytes - gpu.reserve_bytes - held) / GiB
            assert 0 <= seen["free_at_start_gib"] - free_at_start < 0.8, (key, model.name)
            idle = (settings.weights_bytes + model.kv_bytes + settings.overhead_bytes) / GiB
            assert 0 <= idle - seen["gpu_mib"]["idle"] / 1024 < 0.8, (key, model.name)
            held += settings.weights_bytes + model.kv_bytes + settings.overhead_bytes
            checked += 1
    assert checked == 6


# -- sleep mode (vLLM 0.26.0's dev-mode endpoints, docs/h200-sleep-vllm-0.26.0.md) --


def sleeper(tmp_path: Path, name: str, port: int, fraction: str, extra_env: dict[str, str]) -> subprocess.Popen[str]:
    return start(
        ["Qwen/Qwen2.5-7B-Instruct", "--served-model-name", name, "--port", str(port), "--host", "127.0.0.1",
         "--gpu-memory-utilization", fraction, "--enable-sleep-mode"],
        {"GSC_SIM_LOAD_S": "0.5", "GSC_SIM_LEDGER_DIR": str(tmp_path / "ledger"), "GSC_SIM_INSTANCE": name,
         "GSC_SIM_GPU_TOTAL_BYTES": str(100 * GiB), "GSC_SIM_GPU_RESERVE_BYTES": "0",
         "GSC_SIM_WEIGHTS_BYTES": str(20 * GiB), "GSC_SIM_SLEEP_S": "0.05", "GSC_SIM_WAKE_S": "0.05",
         "GSC_SIM_FIRST_SLEEP_S": "0.3", "GSC_SIM_RELOAD_S": "0.2", "VLLM_SERVER_DEV_MODE": "1", **extra_env},
    )  # fmt: skip


def chat(port: int, name: str, timeout: float = 10) -> httpx.Response:
    body = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=timeout)


def test_sleep_frees_the_card_and_a_held_request_is_answered_after_the_wake(tmp_path: Path) -> None:
    port = free_port()
    proc = sleeper(tmp_path, "a", port, "0.5", {})
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        ledger = Ledger(tmp_path / "ledger", Gpu("0", 100 * GiB, 0))
        awake = int(str(ledger.claims()["a"]["bytes"]))
        assert httpx.get(f"{base}/is_sleeping").json() == {"is_sleeping": False}
        started = time.monotonic()
        assert httpx.post(f"{base}/sleep?level=1", timeout=10).status_code == 200
        assert time.monotonic() - started >= 0.3  # the first level-1 sleep pins the host buffers: slow
        assert int(str(ledger.claims()["a"]["bytes"])) == 970 * 1024**2
        assert httpx.get(f"{base}/is_sleeping").json() == {"is_sleeping": True}
        assert httpx.get(f"{base}/health").status_code == 200  # /health cannot tell
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(chat, port, "a")
            time.sleep(0.5)
            assert not held.done()  # held, not refused
            assert httpx.post(f"{base}/wake_up", timeout=10).status_code == 200
            answer = held.result(timeout=10)
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        assert int(str(ledger.claims()["a"]["bytes"])) == awake
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_level_two_answers_wrong_until_the_weights_are_reloaded(tmp_path: Path) -> None:
    port = free_port()
    proc = sleeper(tmp_path, "a", port, "0.5", {})
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}/sleep?level=2").status_code == 200
        assert httpx.post(f"{base}/wake_up").status_code == 200
        assert chat(port, "a").json()["choices"][0]["message"]["content"] == ""
        reload = httpx.post(f"{base}/collective_rpc", json={"method": "reload_weights"}, timeout=10)
        assert (reload.status_code, reload.json()) == (200, {"results": [None]})
        assert chat(port, "a").json()["choices"][0]["message"]["content"] != ""
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_a_wake_that_does_not_fit_fails_and_leaves_the_server_stuck(tmp_path: Path) -> None:
    """vLLM enforces nothing: b boots beside the sleeping a (their shares sum
    past the card), then a's wake fails with vLLM's 500 and a is stuck."""
    port_a, port_b = free_port(), free_port()
    a = sleeper(tmp_path, "a", port_a, "0.5", {})
    b = None
    try:
        wait_port(port_a)
        assert httpx.post(f"http://127.0.0.1:{port_a}/sleep?level=1", timeout=10).status_code == 200
        b = sleeper(tmp_path, "b", port_b, "0.6", {})
        wait_port(port_b)
        failed = httpx.post(f"http://127.0.0.1:{port_a}/wake_up", timeout=10)
        assert failed.status_code == 500
        assert failed.json()["error"]["message"] == (
            "Call to wake_up method failed: CUDA Error: out of memory at /workspace/csrc/cumem_allocator.cpp:163"
        )
        assert httpx.get(f"http://127.0.0.1:{port_a}/is_sleeping").json() == {"is_sleeping": True}
        assert httpx.get(f"http://127.0.0.1:{port_a}/health").status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            chat(port_a, "a", timeout=1)  # stuck: every request hangs
        again = httpx.post(f"http://127.0.0.1:{port_a}/wake_up", timeout=10)
        assert "invalid argument at /workspace/csrc/cumem_allocator.cpp:169" in again.json()["error"]["message"]
        assert chat(port_b, "b").status_code == 200  # the other server is unaffected
    finally:
        for proc in (a, b):
            if proc is not None:
                proc.terminate()
                proc.communicate(timeout=10)


def test_the_sleep_endpoints_need_dev_mode(tmp_path: Path) -> None:
    port = free_port()
    proc = sleeper(tmp_path, "a", port, "0.5", {"VLLM_SERVER_DEV_MODE": "0"})
    try:
        wait_port(port)
        assert httpx.post(f"http://127.0.0.1:{port}/sleep?level=1").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{port}/is_sleeping").status_code == 404
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
