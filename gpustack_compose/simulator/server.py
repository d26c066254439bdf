"""The simulated vLLM OpenAI server (see the package docstring)."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from gpustack_compose.contract import MODEL_RUNNER_V2_ENV
from gpustack_compose.simulator.args import ServeArgs, UnrecognizedArguments, flags, parse
from gpustack_compose.simulator.kvpool import ElasticKv
from gpustack_compose.simulator.ledger import Cards, GiB, Gpu
from gpustack_compose.simulator.metrics import BLOCK_SIZE, Load, Metrics
from gpustack_compose.simulator.sleep import SleepMode, SleepTimings, WakeFailed

MAX_BODY = 8 * 1024 * 1024
# H100 80GB, as CUDA reports it (docs/facts.md), and its never-free memory.
DEFAULT_TOTAL = 85_017_493_504
DEFAULT_RESERVE = round(0.52 * GiB)


def log(level: str, where: str, message: str) -> None:
    stamp = time.strftime("%m-%d %H:%M:%S", time.gmtime())
    print(f"{level} {stamp} [{where}] {message}", flush=True)


def _gib(value: float) -> float:
    """vLLM prints sizes as round(bytes / GiB, 2)."""
    return round(value / GiB, 2)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Settings:
    load_s: float
    gpus: list[Gpu]  # one, or a tensor-parallel group (GSC_SIM_GPU="4,5")
    weights_bytes: int | None
    profile_bytes: int
    context_bytes: int
    overhead_bytes: int
    kv_bytes_per_token: int
    ledger_dir: Path | None
    instance: str
    fail: str
    runtime_lora: bool
    elastic: bool = False  # kvcached (ENABLE_KVCACHED=true)
    # vLLM 0.26.0 runs its V2 model runner unless VLLM_USE_V2_MODEL_RUNNER=0,
    # and kvcached 0.1.6 refuses it (docs/h200-elastic-2026-12-02.md)
    model_runner_v2: bool = True
    ipc_name: str = ""
    token_s: float = 0.0  # simulated decode time per generated token
    dev_mode: bool = False  # VLLM_SERVER_DEV_MODE: the sleep endpoints
    sleep: SleepTimings = field(default_factory=SleepTimings)

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        weights = env.get("GSC_SIM_WEIGHTS_BYTES")
        ledger = env.get("GSC_SIM_LEDGER_DIR")
        return cls(
            load_s=float(env.get("GSC_SIM_LOAD_S", "2")),
            gpus=[
                Gpu(
                    index=index.strip(),
                    total_bytes=int(env.get("GSC_SIM_GPU_TOTAL_BYTES", DEFAULT_TOTAL)),
                    reserve_bytes=int(env.get("GSC_SIM_GPU_RESERVE_BYTES", DEFAULT_RESERVE)),
                )
                for index in env.get("GSC_SIM_GPU", "0").split(",")
            ],
            weights_bytes=int(weights) if weights else None,
            profile_bytes=int(env.get("GSC_SIM_PROFILE_BYTES", GiB)),
            context_bytes=int(env.get("GSC_SIM_CONTEXT_BYTES", 778 * 1024**2)),
            overhead_bytes=int(env.get("GSC_SIM_OVERHEAD_BYTES", round(1.2 * GiB))),
            kv_bytes_per_token=int(env.get("GSC_SIM_KV_BYTES_PER_TOKEN", "0")),
            ledger_dir=Path(ledger) if ledger else None,
            instance=env.get("GSC_SIM_INSTANCE") or socket.gethostname(),
            fail=env.get("GSC_SIM_FAIL", ""),
            runtime_lora=_truthy(env.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING")),
            elastic=_truthy(env.get("ENABLE_KVCACHED")),
            model_runner_v2=env.get(MODEL_RUNNER_V2_ENV, "1") != "0",
            ipc_name=env.get("KVCACHED_IPC_NAME") or env.get("GSC_SIM_INSTANCE") or socket.gethostname(),
            token_s=float(env.get("GSC_SIM_TOKEN_S", "0")),
            dev_mode=_truthy(env.get("VLLM_SERVER_DEV_MODE")),
            sleep=SleepTimings.from_env(env),
        )

    @property
    def total_bytes(self) -> int:
        """Per card; a tensor-parallel group's cards are identical."""
        return self.gpus[0].total_bytes


@dataclass
class State:
    args: ServeArgs
    settings: Settings
    adapters: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: int = 0
    served: int = 0
    created: int = field(default_factory=lambda: int(time.time()))
    pool: ElasticKv | None = None
    sleep: SleepMode | None = None  # --enable-sleep-mode
    metrics: Metrics | None = None
    waiting: int = 0
    tokens_in_flight: int = 0  # prompt + generated tokens of the running requests
    # --max-num-seqs: requests beyond it wait for a slot, as vLLM's scheduler queues them
    slots: threading.BoundedSemaphore | None = None

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = Metrics(self.args.served_model_name, self.args.gpu_memory_utilization,
                                   self.args.kv_cache_memory_bytes, 0)  # fmt: skip
        if self.slots is None and self.args.max_num_seqs:
            self.slots = threading.BoundedSemaphore(self.args.max_num_seqs)

    def load(self) -> Load:
        with self.lock:
            kv_tokens = self.metrics.kv_tokens if self.metrics else 0
            usage = min(1.0, self.tokens_in_flight / kv_tokens) if kv_tokens else 0.0
            running, waiting = self.running, self.waiting
        sleep = self.sleep
        level = sleep.level if sleep is not None else 0
        return Load(running, waiting, usage, ("awake", "weights_offloaded", "discard_all")[min(level, 2)])

    def model_names(self) -> list[str]:
        with self.lock:
            return [self.args.served_model_name, *self.adapters]


def error_body(message: str, kind: str, code: int) -> dict[str, Any]:
    """vLLM's OpenAI-style error object."""
    return {"object": "error", "message": message, "type": kind, "param": None, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    # Headers and body go out in two writes; with Nagle on, the second waits
    # for the client's delayed ACK (40 ms on Linux) on every keep-alive
    # request -- a latency uvicorn does not have (it sets TCP_NODELAY).
    disable_nagle_algorithm = True
    sys_version = ""
    state: State  # set on the subclass made per server

    def log_request(self, code: int | str = "-", _size: int | str = "-") -> None:
        """uvicorn-style access log; healthchecks are not logged (one every 2 s)."""
        if "/health" not in self.path:
            print(f'INFO:     {self.client_address[0]} - "{self.requestline}" {code}', flush=True)

    # -- plumbing ------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode())

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            self._json(413, error_body("request body too large", "BadRequestError", 413))
            return None
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._json(400, error_body(f"Invalid JSON: {exc}", "BadRequestError", 400))
            return None
        if not isinstance(data, dict):
            self._json(400, error_body("The request body must be a JSON object", "BadRequestError", 400))
            return None
        return data

    # -- routes --------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            if self.state.settings.fail == "unhealthy":
                self._send(503, b"")
            else:
                self._send(200, b"")
        elif path == "/ping":
            self._send(200, b"")
        elif path == "/version":
            self._json(200, {"version": f"{flags().release}+gpustack-compose-simulator"})
        elif path == "/v1/models":
            self._json(200, self._models())
        elif path == "/metrics":
            self._send(200, self._metrics().encode(), "text/plain; version=0.0.4")
        elif path == "/is_sleeping" and self.state.settings.dev_mode:
            sleep = self.state.sleep
            self._json(200, {"is_sleeping": sleep is not None and sleep.sleeping})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completion,
        }
        if self.state.settings.runtime_lora:
            routes["/v1/load_lora_adapter"] = self._load_lora
            routes["/v1/unload_lora_adapter"] = self._unload_lora
        if self.state.settings.dev_mode:
            routes["/sleep"] = self._sleep
            routes["/wake_up"] = self._wake_up
            routes["/collective_rpc"] = self._collective_rpc
        handler = routes.get(path)
        if handler is None:
            self._json(404, {"detail": "Not Found"})
            return
        body = self._body()
        if body is not None:
            handler(body)

    def _models(self) -> dict[str, Any]:
        args = self.state.args
        base = {
            "id": args.served_model_name,
            "object": "model",
            "created": self.state.created,
            "owned_by": "vllm",
            "root": args.model,
            "parent": None,
            "max_model_len": args.max_model_len,
        }
        with self.state.lock:
            adapters = [
                {"id": name, "object": "model", "created": self.state.created, "owned_by": "vllm",
                 "root": path, "parent": args.served_model_name, "max_model_len": None}
                for name, path in self.state.adapters.items()
            ]  # fmt: skip
        return {"object": "list", "data": [base, *adapters]}

    def _check_model(self, body: dict[str, Any]) -> str | None:
        model = body.get("model", self.state.args.served_model_name)
        if model not in self.state.model_names():
            self._json(404, error_body(f"The model `{model}` does not exist.", "NotFoundError", 404))
            return None
        return str(model)

    def _generate(self, model: str, prompt_words: int, body: dict[str, Any]) -> tuple[str, int, str]:
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 16
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError("max_tokens must be a positive integer")
        limit = self.state.args.max_model_len
        if limit is not None and prompt_words + max_tokens > limit:
            raise ValueError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_words + max_tokens} tokens ({prompt_words} in the messages, {max_tokens} in the completion)."
            )
        words = list(itertools.islice(itertools.cycle(["simulated", "reply", "from", model]), max_tokens))
        return " ".join(words), len(words), "length"

    # -- sleep mode (dev-mode endpoints) --------------------------------------
    def _sleep_mode(self) -> SleepMode | None:
        sleep = self.state.sleep
        if sleep is None:
            self._json(400, error_body("Sleep mode is not enabled (--enable-sleep-mode)", "BadRequestError", 400))
        return sleep

    def _sleep(self, body: dict[str, Any]) -> None:  # noqa: ARG002 -- the routes share one signature
        sleep = self._sleep_mode()
        if sleep is None:
            return
        query = dict(p.partition("=")[::2] for p in self.path.partition("?")[2].split("&") if p)
        level = int(query.get("level", "1") or 1)
        started = time.monotonic()
        sleep.sleep(level)
        log("INFO", "core.py", f"It took {time.monotonic() - started:.6f} seconds to fall asleep.")
        self._send(200, b"")

    def _wake_up(self, body: dict[str, Any]) -> None:  # noqa: ARG002
        sleep = self._sleep_mode()
        if sleep is None:
            return
        started = time.monotonic()
        try:
            sleep.wake()
        except WakeFailed as exc:
            print(f"{_pid_prefix()} RuntimeError: {exc}", flush=True)
            message = f"Call to wake_up method failed: {exc}"
            self._json(500, {"error": {"message": message, "type": "InternalServerError", "param": None,
                                       "code": 500}})  # fmt: skip
            return
        log("INFO", "core.py", f"It took {time.monotonic() - started:.6f} seconds to wake up.")
        self._send(200, b"")

    def _collective_rpc(self, body: dict[str, Any]) -> None:
        sleep = self._sleep_mode()
        if sleep is None:
            return
        if body.get("method") != "reload_weights":
            self._json(400, error_body(f"method {body.get('method')!r} is not simulated", "BadRequestError", 400))
            return
        started = time.monotonic()
        if not sleep.reload_weights():
            self._json(500, {"error": {"message": "reload_weights failed: the executor is sleeping",
                                       "type": "InternalServerError", "param": None, "code": 500}})  # fmt: skip
            return
        log("INFO", "gpu_model_runner.py", f"Reloading and processing weights took {time.monotonic() - started:.2f} "
            "seconds")  # fmt: skip
        self._json(200, {"results": [None]})

    def _serve_generation(self, body: dict[str, Any], chat: bool) -> None:
        model = self._check_model(body)
        if model is None:
            return
        sleep = self.state.sleep
        if sleep is not None and not sleep.wait_awake():
            self.close_connection = True
            return
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                self._json(400, error_body("messages must be a non-empty list", "BadRequestError", 400))
                return
            prompt = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            prompt = str(body.get("prompt", ""))
        try:
            text, tokens, finish = self._generate(model, max(1, len(prompt.split())), body)
        except ValueError as exc:
            self._json(400, error_body(str(exc), "BadRequestError", 400))
            return
        if sleep is not None and sleep.weights_lost:
            text = ""  # level 2 woken without reload_weights: 200 with wrong output
        prompt_tokens = max(1, len(prompt.split()))
        pool = self.state.pool
        mapped = pool.acquire(prompt_tokens + tokens) if pool is not None else 0
        if mapped is None:
            blocks = math.ceil((prompt_tokens + tokens) / 16)
            self._json(503, error_body(f"Cannot get {blocks} free blocks from the pool", "ServiceUnavailable", 503))
            return
        arrived = time.monotonic()
        with self.state.lock:
            self.state.waiting += 1
        slots = self.state.slots
        if slots is not None:
            slots.acquire()
        started = time.monotonic()
        with self.state.lock:
            self.state.waiting -= 1
            self.state.running += 1
            self.state.tokens_in_flight += prompt_tokens + tokens
        try:
            if self.state.settings.token_s:
                time.sleep(tokens * self.state.settings.token_s)
            finished = time.monotonic()
            assert self.state.metrics is not None
            # the first token comes after the prefill, about one decode step in
            first_token_s = started - arrived + min(finished - started, self.state.settings.token_s or 0.0)
            self.state.metrics.finish(prompt=prompt_tokens, generated=tokens, reason=finish,
                                      queued_s=started - arrived, ttft_s=first_token_s,
                                      e2e_s=finished - arrived)  # fmt: skip
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                     "total_tokens": prompt_tokens + tokens}  # fmt: skip
            ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
            created = int(time.time())
            if body.get("stream"):
                self._stream(ident, created, model, text, finish, usage, chat)
                return
            if chat:
                choice: dict[str, Any] = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "tool_calls": []},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            self._json(200, {"id": ident, "object": "chat.completion" if chat else "text_completion",
                             "created": created, "model": model, "choices": [choice], "usage": usage})  # fmt: skip
        finally:
            if pool is not None and mapped:
                pool.release(mapped)
            with self.state.lock:
                self.state.running -= 1
                self.state.served += 1
                self.state.tokens_in_flight -= prompt_tokens + tokens
            if slots is not None:
                slots.release()

    def _stream(self, ident: str, created: int, model: str, text: str, finish: str,
                usage: dict[str, int], chat: bool) -> None:  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(payload: object) -> None:
            data = f"data: {json.dumps(payload) if not isinstance(payload, str) else payload}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            last = i == len(words) - 1
            if chat:
                delta = {"content": piece} | ({"role": "assistant"} if i == 0 else {})
                choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish if last else None}  # fmt: skip
            else:
                choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish if last else None}
            event({"id": ident, "object": kind, "created": created, "model": model, "choices": [choice]})
        event({"id": ident, "object": kind, "created": created, "model": model, "choices": [], "usage": usage})
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def _chat(self, body: dict[str, Any]) -> None:
        self._serve_generation(body, chat=True)

    def _completion(self, body: dict[str, Any]) -> None:
        self._serve_generation(body, chat=False)

    def _load_lora(self, body: dict[str, Any]) -> None:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not isinstance(path, str):
            self._json(400, error_body("Both 'lora_name' and 'lora_path' must be provided.", "BadRequestError", 400))
            return
        with self.state.lock:
            if name in self.state.adapters:
                message = f"The lora adapter '{name}' has already been loaded."
                self._json(400, error_body(message, "InvalidUserInput", 400))
                return
            if not (Path(path) / "adapter_config.json").is_file():
                message = f"Loading lora {name} failed: No adapter found for {path}"
                self._json(404, error_body(message, "NotFoundError", 404))
                return
            self.state.adapters[name] = path
        self._send(200, f"Success: LoRA adapter '{name}' added successfully.".encode(), "text/plain")

    def _unload_lora(self, body: dict[str, Any]) -> None:
        name = body.get("lora_name")
        with self.state.lock:
            if not isinstance(name, str) or name not in self.state.adapters:
                message = f"The lora adapter '{name}' cannot be found."
                self._json(404, error_body(message, "NotFoundError", 404))
                return
            del self.state.adapters[name]
        self._send(200, f"Success: LoRA adapter '{name}' removed successfully.".encode(), "text/plain")

    def _metrics(self) -> str:
        name = self.state.args.served_model_name
        assert self.state.metrics is not None
        text = self.state.metrics.page(self.state.load())
        pool = self.state.pool
        if pool is not None:
            text += (
                f'kvcached_kv_used_bytes{{model_name="{name}"}} {pool.used_bytes}\n'
                f'kvcached_kv_limit_bytes{{model_name="{name}"}} {pool.limit_bytes()}\n'
            )
        return text


class _Stop(BaseException):
    """Raised by the SIGTERM/SIGINT handler. A BaseException, like SystemExit:
    socketserver catches Exception around each request, and a stop signal that
    lands while a connection is being accepted must not be swallowed (the
    container would then wait out Compose's whole stop timeout)."""


class _Server(ThreadingHTTPServer):
    """A client that hangs up mid-answer is not the server's error: Uvicorn
    (vLLM's server) logs nothing for it. socketserver prints a traceback per
    request instead -- 15,000 lines in half a second under a client that
    resets its connections, enough to keep the threads busy past a stop
    signal (tests/test_simulator.py, the SIGTERM-during-traffic test)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Refused(Exception):
    """vLLM would exit here; the message is already printed."""


def _pid_prefix() -> str:
    return f"(EngineCore_DP0 pid={os.getpid()})"


@dataclass
class Boot:
    """vLLM's startup against the simulated GPU: the phases that touch memory."""

    args: ServeArgs
    settings: Settings
    cards: Cards
    started: float = field(default_factory=time.monotonic)
    snapshot_others: int = 0
    base_bytes: int = 0  # held once booted (weights and overheads; all of it but KV pages when elastic)
    held_bytes: int = 0  # everything a static server holds once booted
    virtual_kv_bytes: int = 0
    kv_tokens: int = 0  # what vLLM reports as its KV cache (blocks x block size)

    @property
    def requested(self) -> float:
        return self.settings.total_bytes * self.args.gpu_memory_utilization

    def at(self, fraction: float) -> None:
        """Sleep until ``fraction`` of the load time has passed."""
        time.sleep(max(0.0, self.started + fraction * self.settings.load_s - time.monotonic()))

    def claim(self, holds: int) -> None:
        ok, free, gpu = self.cards.set_claim(self.settings.instance, self.args.served_model_name, holds)
        if not ok:
            print(
                f"{_pid_prefix()} torch.OutOfMemoryError: CUDA out of memory. GPU {gpu.index} has a "
                f"total capacity of {_gib(gpu.total_bytes)} GiB of which {_gib(max(0, free))} GiB is "
                "free.",
                flush=True,
            )
            raise _Refused

    def startup_check(self) -> None:
        """vLLM V1, v1/worker/gpu_worker.py init_device(): the memory snapshot."""
        s = self.settings
        ok, free, gpu = self.cards.claim_if_free(s.instance, self.args.served_model_name, int(self.requested),
                                                 s.context_bytes)  # fmt: skip
        if not ok:
            print(
                f"{_pid_prefix()} ValueError: Free memory on device cuda:{gpu.index} "
                f"({_gib(free)}/{_gib(gpu.total_bytes)} GiB) on startup is less than desired GPU memory "
                f"utilization ({self.args.gpu_memory_utilization}, {_gib(self.requested)} GiB). Decrease GPU memory "
                "utilization or reduce GPU memory used by other processes.",
                flush=True,
            )
            raise _Refused
        self.snapshot_others = self.cards.others(s.instance)
        log("INFO", "gpu_worker.py", f"Free memory on device ({_gib(free)}/{_gib(gpu.total_bytes)} GiB) on startup")

    def kv_cache(self, weights: int) -> int:
        """KV cache size: fixed by --kv-cache-memory-bytes, else vLLM's profile."""
        s = self.settings
        if self.args.kv_cache_memory_bytes is not None:
            kv = self.args.kv_cache_memory_bytes
            log("INFO", "gpu_worker.py", f"Reserved {_gib(kv)} GiB memory for KV Cache as specified by "
                "kv_cache_memory_bytes config and skipped memory profiling.")  # fmt: skip
            return kv
        # vLLM charges every change of device memory since its snapshot to itself.
        others_growth = self.cards.others(s.instance) - self.snapshot_others
        kv = int(self.requested - weights - s.profile_bytes - others_growth)
        log("INFO", "gpu_worker.py", f"Memory profiling: weights memory {_gib(weights)} GiB; torch peak and "
            f"non-torch {_gib(s.profile_bytes)} GiB; non-torch forward increase memory {_gib(others_growth)} GiB "
            "(other processes on the device)")  # fmt: skip
        log("INFO", "gpu_worker.py", f"Available KV cache memory: {_gib(kv)} GiB")
        if kv <= 0:
            print(
                f"{_pid_prefix()} ValueError: No available memory for the cache blocks. Try increasing "
                "`gpu_memory_utilization` when initializing the engine.",
                flush=True,
            )
            raise _Refused
        return kv

    def run(self) -> None:
        s = self.settings
        weights = s.weights_bytes if s.weights_bytes is not None else int(self.requested * 0.6)
        if s.elastic and s.model_runner_v2:
            print(f"{_pid_prefix()} ERROR [v1/engine/core.py] EngineCore failed to start.", flush=True)
            print(f"kvcached.utils.KVCachedConfigError: kvcached does not support the vLLM {flags().release} Model "
                  f"Runner V2 yet; set {MODEL_RUNNER_V2_ENV}=0 to use the V1 model runner, or disable kvcached",
                  flush=True)  # fmt: skip
            raise _Refused
        self.at(0.3)
        if s.elastic:
            # kvcached's patched worker skips vLLM's free-memory check: the KV
            # cache is virtual, so only what the server really maps must fit.
            self.claim(s.context_bytes)
        else:
            self.startup_check()
        for step in range(1, 6):  # weights arrive over a sixth of the boot
            self.at(0.3 + 0.03 * step)
            self.claim(s.context_bytes + weights * step // 5)
        self.at(0.5)
        self.claim(s.context_bytes + weights + s.profile_bytes)  # the profile/warm-up peak
        if s.elastic:
            # kvcached: KV space = total x utilization - this process's own usage.
            self.virtual_kv_bytes = int(self.requested - weights - s.profile_bytes)
            self.base_bytes = weights + s.overhead_bytes
            self.kv_tokens = kv_tokens(self.virtual_kv_bytes, s.kv_bytes_per_token)
            self.at(0.55)
            self.claim(self.base_bytes)
            log("INFO", "kvcached", f"kvcached enabled: {_gib(self.virtual_kv_bytes)} GiB of virtual KV space "
                f"(IPC {s.ipc_name}); pages are mapped on demand")  # fmt: skip
            self.at(1.0)
            return
        kv = self.kv_cache(weights)
        self.at(0.55)
        self.held_bytes = weights + kv + s.overhead_bytes
        self.claim(self.held_bytes)
        self.kv_tokens = kv_tokens(kv, s.kv_bytes_per_token)
        if s.kv_bytes_per_token:
            log("INFO", "kv_cache_utils.py", f"GPU KV cache size: {self.kv_tokens:,} tokens")
        self.at(1.0)


def kv_tokens(kv_bytes: int, bytes_per_token: int) -> int:
    """Tokens a KV cache of this size holds, in whole blocks; 0 when the
    bytes per token are not known."""
    if bytes_per_token <= 0:
        return 0
    return kv_bytes // (BLOCK_SIZE * bytes_per_token) * BLOCK_SIZE


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    try:
        args = parse(argv)
    except UnrecognizedArguments as exc:
        print("usage: vllm serve [model_tag] [options]", file=sys.stderr)
        print(exc, file=sys.stderr, flush=True)
        return 2
    settings = Settings.from_env(dict(os.environ))
    log(
        "INFO",
        "api_server.py",
        f"vLLM API server version {flags().release} (gpustack-compose simulator) for {args.model}",
    )
    log("INFO", "utils.py", f"non-default args: {' '.join(argv)}")

    ledger = Cards(settings.ledger_dir, settings.gpus) if settings.ledger_dir else None

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        log("INFO", "gpu_model_runner.py", f"Loading model {args.model} (simulated, {settings.load_s:.1f} s)")
        if ledger is not None:
            boot = Boot(args, settings, ledger)
            try:
                boot.run()
            except _Refused:
                print("RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
                      flush=True)  # fmt: skip
                return 1
        else:
            time.sleep(settings.load_s)
        if settings.fail == "crash":
            print("RuntimeError: simulated engine crash (GSC_SIM_FAIL=crash)", flush=True)
            return 1
        if settings.fail == "hang":
            log("WARNING", "core.py", "simulated hang: the API server never starts (GSC_SIM_FAIL=hang)")
            while True:
                time.sleep(3600)
        state = State(args, settings, dict(args.lora_modules))
        booted_kv = boot.kv_tokens if ledger is not None else kv_tokens(args.kv_cache_memory_bytes or 0,
                                                                         settings.kv_bytes_per_token)  # fmt: skip
        assert state.metrics is not None
        state.metrics.kv_tokens = booted_kv
        if args.extra.get("enable_sleep_mode"):
            state.sleep = SleepMode(ledger, settings.instance, args.served_model_name,
                                    boot.held_bytes if ledger is not None else 0, settings.sleep,
                                    fail_first_wake=settings.fail == "wake-once")  # fmt: skip
        if settings.elastic and ledger is not None:
            state.pool = ElasticKv(ledger, settings.instance, args.served_model_name, settings.ipc_name,
                                   boot.base_bytes, boot.virtual_kv_bytes, settings.kv_bytes_per_token)  # fmt: skip
        handler = type("BoundHandler", (Handler,), {"state": state})
        server = _Server((args.host, args.port), handler)
        log("INFO", "launcher.py", f"Starting vLLM API server on http://{args.host}:{args.port}")
        log("INFO", "api_server.py", f"Available models: {', '.join(state.model_names())}")
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
    except _Stop:
        log("INFO", "launcher.py", "Shutting down")
    finally:
        if ledger is not None:
            ledger.release(settings.instance)
    return 0
