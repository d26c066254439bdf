#!/usr/bin/env python3
"""Wait until every URL answers HTTP 200, or give up after a bounded time.

Runs as the init container of a model pod (waiting for its predecessor on the
GPU) and of the proxy pod (waiting for every model): Kubernetes has no
``depends_on``, so this is what keeps the boot of one GPU sequential.

A Kubernetes Service only routes to *ready* pods, so a predecessor answers
through its Service once its readiness probe on ``/health`` passes -- the same
gate as Compose's ``condition: service_healthy``.

Exit 0 when all answered; exit 1 after ``--timeout`` seconds with one line per
URL still failing -- the kubelet then restarts the init container with its
back-off, so the pod keeps waiting but the log says why.

Standard library only: it runs inside the vLLM and LiteLLM images (both ship
python3), mounted from a ConfigMap -- no extra image to pull.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request

# Connections go straight to the Service: a cluster-wide HTTP_PROXY setting
# must not send in-cluster health probes through a proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe(url: str, timeout_s: float) -> str | None:
    """None when ``url`` answers 200, else why not, in a few words."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return str(exc.reason)
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None if status == 200 else f"HTTP {status}"


def wait(urls: list[str], timeout_s: float, interval_s: float, report_every_s: float) -> int:
    start = time.monotonic()
    deadline = start + timeout_s
    last_report = start
    pending = dict.fromkeys(urls, "not probed yet")
    print(f"waiting up to {timeout_s:.0f} s for {', '.join(urls)} to answer 200", flush=True)
    while True:
        for url in list(pending):
            remaining = max(0.1, deadline - time.monotonic())
            reason = probe(url, min(5.0, remaining))
            if reason is None:
                del pending[url]
                print(f"{url} is healthy after {time.monotonic() - start:.0f} s", flush=True)
            else:
                pending[url] = reason
        if not pending:
            return 0
        now = time.monotonic()
        if now >= deadline:
            for url, reason in pending.items():
                print(
                    f"gave up after {timeout_s:.0f} s: {url} is not healthy (last: {reason}); "
                    "exiting 1 so the kubelet retries this init container",
                    file=sys.stderr,
                    flush=True,
                )
            return 1
        if now - last_report >= report_every_s:
            last_report = now
            still = "; ".join(f"{url} ({reason})" for url, reason in pending.items())
            print(f"still waiting after {now - start:.0f} s for {still}", flush=True)
        time.sleep(min(interval_s, max(0.0, deadline - now)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--timeout", type=float, required=True, help="give up after this many seconds")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between rounds of probes")
    parser.add_argument("--report-every", type=float, default=30.0, help="seconds between progress lines")
    parser.add_argument("urls", nargs="+", metavar="URL")
    args = parser.parse_args(argv)
    return wait(args.urls, args.timeout, args.interval, args.report_every)


if __name__ == "__main__":
    sys.exit(main())
