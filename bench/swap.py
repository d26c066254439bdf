"""Swap sets (issue 19): time to first byte of a chat to a sleeping model
against the same model awake and against a cold boot, and throughput while
two models alternate.

Two parts, side by side: the committed H200 run (real vLLM 0.26.0 behind the
real coordinator, docs/h200-swap-2026-12-02.md; its target: p50 <= 1 s added
for a level-1 wake of a 14B), and a run here of the same coordinator in front
of two simulator processes replaying the H200's measured sleep/wake times
(what the coordinator itself adds, on this machine)."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import REPO, Section
from gpustack_compose import calibration as cal
from gpustack_compose.catalog import find_gpu
from gpustack_compose.units import GiB

H200_RUN = REPO / "docs" / "h200-swap-2026-12-02" / "summary.json"
TARGET_ADDED_S = 1.0
ROUNDS = 6
ALTERNATE_S = 20.0
# The simulated pair: the H200 run's 14B (level 1, 0.5) and 7B (level 2, 0.6), by weights.
_H200 = find_gpu("H200")
assert _H200 is not None
H200_TOTAL = _H200.cuda_total_bytes
PAIR = (("big", 1, "0.5", 27.57), ("small", 2, "0.6", 14.29))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 30) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def ttfb(url: str, model: str) -> float:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True}
    started = time.monotonic()
    first = None
    with httpx.stream("POST", url, json=body, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if first is None and line.startswith("data:"):
                first = time.monotonic() - started
    if first is None:
        raise RuntimeError(f"{url}: no data")
    return first


def local_run() -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="gsc-bench-swap-") as tmp:
        ledger = Path(tmp) / "ledger"
        models, ports = [], {}
        try:
            for name, level, fraction, weights_gib in PAIR:
                port = ports[name] = _port()
                sim_env = {**env, "GSC_SIM_LOAD_S": "0.5", "GSC_SIM_LEDGER_DIR": str(ledger), "GSC_SIM_INSTANCE": name,
                           "GSC_SIM_GPU_TOTAL_BYTES": str(H200_TOTAL),
                           "GSC_SIM_GPU_RESERVE_BYTES": str(cal.DEFAULT_RESERVE),
                           "GSC_SIM_WEIGHTS_BYTES": str(int(weights_gib * GiB)), "VLLM_SERVER_DEV_MODE": "1",
                           "GSC_SIM_FIRST_SLEEP_S": "0.5",
                           "GSC_SIM_SLEEP_S": f"{cal.LEVEL1_SLEEP_S_PER_GIB * weights_gib:.3f}",
                           "GSC_SIM_WAKE_S": f"{cal.LEVEL1_WAKE_S_PER_GIB * weights_gib:.3f}",
                           "GSC_SIM_RELOAD_S": f"{cal.LEVEL2_RELOAD_S_PER_GIB * weights_gib:.3f}"}  # fmt: skip
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "gpustack_compose.simulator", "serve", name, "--served-model-name", name,
                     "--host", "127.0.0.1", "--port", str(port), "--gpu-memory-utilization", fraction,
                     "--enable-sleep-mode"],
                    env=sim_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
                _wait(f"http://127.0.0.1:{port}/health")
                httpx.post(f"http://127.0.0.1:{port}/sleep?level={level}", timeout=30).raise_for_status()
                models.append({"name": name, "service": name, "url": f"http://127.0.0.1:{port}", "gpu": 0,
                               "level": level, "idle_s": 600, "wake_bytes": int(60 * GiB), "boot_timeout_s": 60,
                               "sleep_timeout_s": 60})  # fmt: skip
            config = {"stack": "bench", "request_timeout_s": 60, "memory_source": "ledger", "restart": "docker",
                      "gpus": [{"index": 0, "nvml_index": 0, "awake_max": 1, "total_bytes": H200_TOTAL,
                                "reserve_bytes": cal.DEFAULT_RESERVE}], "models": models}  # fmt: skip
            (Path(tmp) / "swap.json").write_text(json.dumps(config))
            coord = _port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gpustack_compose.swap", "serve", "--config", str(Path(tmp) / "swap.json"),
                 "--host", "127.0.0.1", "--port", str(coord)],
                env={**env, "GSC_SWAP_LEDGER_DIR": str(ledger), "GSC_SWAP_RESTART": "none"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            _wait(f"http://127.0.0.1:{coord}/health")
            return _measure(coord, ports)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)


def _measure(coord: int, ports: dict[str, int]) -> dict[str, Any]:
    via = {n: f"http://127.0.0.1:{coord}/{n}/v1/chat/completions" for n in ports}
    direct = {n: f"http://127.0.0.1:{p}/v1/chat/completions" for n, p in ports.items()}
    out: dict[str, Any] = {}
    for name in ports:
        ttfb(via[name], name)  # woken
        out[name] = {
            "awake direct": [ttfb(direct[name], name) for _ in range(5)],
            "awake via coordinator": [ttfb(via[name], name) for _ in range(5)],
            "wake": [],
        }
    for _ in range(ROUNDS):
        for name in ports:
            out[name]["wake"].append(ttfb(via[name], name))
    stop = time.monotonic() + ALTERNATE_S
    done: list[float] = []

    def client(name: str) -> None:
        while time.monotonic() < stop:
            ttfb(via[name], name)
            done.append(time.monotonic())

    workers = [threading.Thread(target=client, args=(n,)) for n in ports]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out["two_clients_per_s"] = len(done) / ALTERNATE_S
    state = httpx.get(f"http://127.0.0.1:{coord}/state").json()
    out["failed_wakes"] = sum(m["failed_wakes"] for m in state["models"].values())
    return out


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def run() -> Section:
    section = Section("Swap sets: a request to a sleeping model (issue 19)")
    h200 = json.loads(H200_RUN.read_text())
    big, small = "qwen2-5-14b", "qwen2-5-7b"
    t = h200["ttfb"]
    added_big = t[big]["wake"]["p50"] - t[big]["awake direct"]["p50"]
    added_small = t[small]["wake"]["p50"] - t[small]["awake direct"]["p50"]
    boots = h200["boot"]["boot_s"]
    section.add("**H200, real vLLM 0.26.0** (the committed run, docs/h200-swap-2026-12-02.md; re-run with its "
                "device commands). Time to first byte of a streamed chat through the coordinator; every `wake` "
                "request found its model asleep (awake_max 1: the other model went to sleep first).")  # fmt: skip
    section.add("")
    section.add("| model | awake, direct | awake, via coordinator | asleep (wake) | added by the wake | cold boot | "
                "target |")  # fmt: skip
    section.add("|:--|--:|--:|--:|--:|--:|--:|")
    section.add(f"| Qwen2.5-14B, level 1 | {t[big]['awake direct']['p50']:.3f} s | "
                f"{t[big]['awake via coordinator']['p50']:.3f} s | {t[big]['wake']['p50']:.3f} s | "
                f"{added_big:.3f} s | {boots[big]:.1f} s | <= {TARGET_ADDED_S:.0f} s |")  # fmt: skip
    section.add(f"| Qwen2.5-7B, level 2 | {t[small]['awake direct']['p50']:.3f} s | "
                f"{t[small]['awake via coordinator']['p50']:.3f} s | {t[small]['wake']['p50']:.3f} s | "
                f"{added_small:.3f} s | {boots[small]:.1f} s | |")  # fmt: skip
    section.add("")
    two = h200["two_clients"]
    section.add(f"Two clients, one per model, for {h200['two_clients_s']:.0f} s (every request a swap): "
                f"{two['requests']} requests, {two['ok']} answered, {two['per_s']:.2f} requests/s; "
                f"{len(h200['failed'])} failed requests, "
                f"{sum(m['failed_wakes'] for m in h200['coordinator']['models'].values())} failed wakes; "
                f"4 concurrent requests to a sleeper caused {h200['concurrent_wakes']} wake.")  # fmt: skip
    section.add("")
    local = local_run()
    section.add("**Here, the coordinator in front of two simulator processes** replaying the H200's sleep and "
                f"wake times (calibration.py), p50 of {ROUNDS} wakes and 5 awake requests each:")  # fmt: skip
    section.add("")
    section.add("| model | awake, direct | awake, via coordinator | asleep (wake) |")
    section.add("|:--|--:|--:|--:|")
    for name, level, _fraction, _weights in PAIR:
        m = local[name]
        section.add(f"| {name} (level {level}) | {_p50(m['awake direct']):.4f} s | "
                    f"{_p50(m['awake via coordinator']):.4f} s | {_p50(m['wake']):.3f} s |")  # fmt: skip
    section.add("")
    section.add(f"Two clients alternating for {ALTERNATE_S:.0f} s: {local['two_clients_per_s']:.2f} requests/s, "
                f"{local['failed_wakes']} failed wakes.")  # fmt: skip
    section.data = {"h200_added_level1_14b_s": added_big, "h200_added_level2_7b_s": added_small, "local": local}
    section.met = added_big <= TARGET_ADDED_S and not h200["failed"]
    return section
