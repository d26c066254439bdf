"""``python -m gpustack_compose.swap serve --config swap/config.json`` runs the
coordinator; ``first-sleep --url URL --level N --timeout S`` is the one-shot
step after a swappable server's boot: its first sleep, before the next server
on its GPU starts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import httpx

from gpustack_compose.contract import SWAP_PORT
from gpustack_compose.swap.backend import BackendError, DockerRestarter, HttpBackend, NoRestarter, Restarter
from gpustack_compose.swap.config import ConfigError, load
from gpustack_compose.swap.coordinator import Coordinator
from gpustack_compose.swap.memory import CardMemoryError, open_memory


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gpustack_compose.swap.app import build_app

    try:
        config = load(Path(args.config), dict(os.environ))
        memory = open_memory(config)
        restarter: Restarter = DockerRestarter(set(config.models)) if config.restart == "docker" else NoRestarter()
    except (ConfigError, CardMemoryError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the docker SDK's errors: no socket, no permission
        print(f"error: cannot reach the Docker engine to restart containers: {exc}", file=sys.stderr)
        return 2
    # Streams of any length: only the connect is bounded here; a request's
    # own deadline is the proxy's (proxy.request_timeout_s).
    client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0), limits=httpx.Limits(max_connections=None))
    coordinator = Coordinator(config, HttpBackend(client), memory, restarter)
    uvicorn.run(build_app(coordinator, client), host=args.host, port=args.port, log_level="info",
                access_log=False, timeout_keep_alive=75)  # fmt: skip
    return 0


def _first_sleep(args: argparse.Namespace) -> int:
    """Put a freshly booted server to sleep, and wait until it says so."""
    started = time.monotonic()
    url = args.url.rstrip("/")

    async def run() -> str | None:
        async with httpx.AsyncClient(timeout=args.timeout) as client:
            try:
                response = await client.post(f"{url}/sleep?level={args.level}")
                if response.status_code != 200:
                    return f"POST /sleep?level={args.level}: HTTP {response.status_code} {response.text[:200]}"
                while time.monotonic() - started < args.timeout:
                    state = await client.get(f"{url}/is_sleeping")
                    if state.status_code == 200 and state.json().get("is_sleeping") is True:
                        return None
                    await asyncio.sleep(0.2)
            except (httpx.HTTPError, ValueError) as exc:
                return f"{type(exc).__name__}: {exc}"
        return f"not asleep after {args.timeout} s"

    problem = asyncio.run(run())
    if problem:
        print(f"first sleep of {url} failed: {problem}", file=sys.stderr, flush=True)
        return 1
    print(f"{url} asleep (level {args.level}) after {time.monotonic() - started:.1f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(asctime)s [swap] %(message)s")
    parser = argparse.ArgumentParser(prog="python -m gpustack_compose.swap")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=SWAP_PORT)
    first = sub.add_parser("first-sleep")
    first.add_argument("--url", required=True)
    first.add_argument("--level", type=int, choices=(1, 2), required=True)
    first.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args(argv)
    return _serve(args) if args.command == "serve" else _first_sleep(args)


if __name__ == "__main__":
    sys.exit(main())
