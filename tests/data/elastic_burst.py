"""Run inside a simulated model server's container: a burst of long requests
against this server, with its KV pages, its cap and the card's ledger sampled
while it runs and after it. Prints one JSON object."""

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

URL = "http://127.0.0.1:8000"
LEDGER = Path("/var/lib/gpustack-sim/gpu-0.json")
requests, max_tokens = int(sys.argv[1]), int(sys.argv[2])


def metric(name: str) -> int:
    text = urllib.request.urlopen(f"{URL}/metrics", timeout=5).read().decode()
    return next(int(float(line.split()[-1])) for line in text.splitlines() if line.startswith(name))


def claims() -> dict[str, int]:
    return {k: int(v["bytes"]) for k, v in json.loads(LEDGER.read_text())["claims"].items()}


statuses: list[int] = []


def one() -> None:
    body = json.dumps({"model": sys.argv[3], "prompt": "burst", "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(f"{URL}/v1/completions", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            statuses.append(response.status)
    except urllib.error.HTTPError as exc:
        statuses.append(exc.code)


before = {"used": metric("kvcached_kv_used_bytes"), "claims": claims()}
threads = [threading.Thread(target=one) for _ in range(requests)]
for thread in threads:
    thread.start()
peak: dict[str, object] = {"used": 0, "claims": {}}
while any(t.is_alive() for t in threads):
    used = metric("kvcached_kv_used_bytes")
    if used > int(str(peak["used"])):
        peak = {"used": used, "claims": claims()}
    time.sleep(0.1)
time.sleep(0.3)
after = {"used": metric("kvcached_kv_used_bytes"), "claims": claims()}
print(
    json.dumps(
        {
            "before": before,
            "peak": peak,
            "after": after,
            "limit": metric("kvcached_kv_limit_bytes"),
            "statuses": statuses,
        }
    )
)
