"""Worker recycling under load: with MAX_REQUESTS_BEFORE_RESTART set low, a
sustained load through the rendered proxy must lose no request while gunicorn
replaces its workers. Reports requests sent, failed, and recycles observed
(gunicorn's "Autorestarting worker" lines in the proxy's log)."""

from __future__ import annotations

from bench.common import Section, load, running_rehearsal, service_container

MAX_REQUESTS = 100
REQUESTS = 3000
CONCURRENCY = 8
STACK = f"""\
name: bench-recycle
gpus: [{{index: 0, type: H100-80GB}}]
models:
  - {{name: m, model: Qwen/Qwen3-0.6B, memory: 0.3, max_model_len: 4096}}
proxy: {{workers: 2, max_requests_before_restart: {MAX_REQUESTS}}}
"""


def run() -> Section:
    section = Section("Worker recycling under load: no request lost (issue 9)")
    with running_rehearsal("recycle", STACK) as s:
        assert s.report.proxy is not None
        url = f"{s.report.proxy['url']}/v1/chat/completions"
        auth = {"Authorization": f"Bearer {s.key}"}
        bare = load(url, "m", CONCURRENCY, REQUESTS, auth)
        retried = load(url, "m", CONCURRENCY, REQUESTS, auth, retries=2)
        log = service_container(s, "litellm").logs().decode(errors="replace")
    booted = log.count("Booting worker with pid")
    recycles = booted - 2  # every worker booted after the first two replaced a recycled one
    section.add(f"Rendered proxy, 2 gunicorn workers, `max_requests_before_restart: {MAX_REQUESTS}`; {REQUESTS} "
                f"chat completions from {CONCURRENCY} concurrent clients against one simulated model.")  # fmt: skip
    section.add("")
    section.add("| client | requests sent | failed | kinds of failure | throughput |")
    section.add("|:--|--:|--:|:--|--:|")
    for label, result in (
        ("no retry (bare httpx)", bare),
        ("retry connection errors twice (OpenAI SDK default)", retried),
    ):
        kinds = ", ".join(sorted(set(result.failures))) or "-"
        section.add(f"| {label} | {result.sent} | {len(result.failures)} | {kinds} | {result.throughput:.0f} req/s |")
    section.add("")
    section.add(f"Workers recycled during the two runs: {recycles} (gunicorn booted {booted} workers in all).")
    section.data = {"sent": bare.sent + retried.sent, "failed_bare": len(bare.failures),
                    "failed_retried": len(retried.failures), "recycles": recycles}  # fmt: skip
    section.met = not bare.failures and not retried.failures and recycles >= 2
    section.add("")
    section.add(
        "Target: zero failed requests while workers recycle. Before the front door (2026-11-23) the bare "
        "client lost 164 of 3,000 (`RemoteProtocolError`): a recycling Uvicorn worker closed idle kept-alive "
        "connections at once and finished in-flight ones without `Connection: close`, so the client's next POST "
        "met a closing connection. The rendered entrypoint (`litellm/door.py`, mechanism in its docstring) "
        "answers every last response with `Connection: close` and closes only connections idle for a second, so "
        "no client sends into a closing one."
    )
    return section
