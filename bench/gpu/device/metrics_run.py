#!/usr/bin/env python3
"""Real vLLM's /metrics on the lent H200: what `status` and the dashboard read (issue 22).

  metrics_run.py run STACKS.json KEY --out DIR --deadline T [--fake]
      the rendered chain as `up` runs it (each server once the one before it answers /health);
      then, per server: its /metrics page idle, GPU memory per process from NVML
      (nvmlDeviceGetComputeRunningProcesses, as `status` reads it; nvidia-ml-py on PYTHONPATH)
      and from nvidia-smi; then a burst of twice --max-num-seqs long requests on the first
      server, its /metrics sampled every 0.5 s meanwhile (running, waiting, KV usage: do they
      follow the load?), its busiest page kept; then every page again. Writes DIR/summary.json
      and DIR/pages.tgz (the raw pages).

STACKS.json is run_stack.py's input (make-stacks). Stdlib only, bar nvidia-ml-py.
"""
import argparse
import io
import json
import os
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_stack as rs  # noqa: E402

GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")


def page(server):
    r = rs.http("GET", server.port, "/metrics", timeout=10)
    return r.get("body") or "" if r.get("status") == 200 else ""


def gauges(text):
    """the three gauges of a page, summed over its series"""
    out = dict.fromkeys(GAUGES, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def nvml_processes():
    """(pid, bytes) of every compute process on every card, as status reads them"""
    try:
        import pynvml
    except ImportError as e:
        return {"error": f"no nvidia-ml-py: {e}"}
    pynvml.nvmlInit()
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            out += [(p.pid, int(p.usedGpuMemory or 0)) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]
        return {"processes": out}
    finally:
        pynvml.nvmlShutdown()


def per_server_nvml(servers):
    found = nvml_processes()
    if "error" in found:
        return found
    table = rs.proc_children()
    out = {}
    for s in servers:
        pids = rs.descendants(s.proc.pid, table) if s.proc else set()
        out[s.service] = sum(b for pid, b in found["processes"] if pid in pids)
    return {"bytes": out, "processes": found["processes"]}


def cmd_run(a):
    rs.CLOCK = rs.Clock(a.deadline, a.reserve)
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(rs.LOGDIR, exist_ok=True)
    rs.kill_leftovers()
    spec = rs.load_stacks(a.stacks)[a.key]
    servers = [rs.Server(a.key, svc, a.port_base + i, a.fake) for i, svc in enumerate(spec["services"])]
    by = {s.service: s for s in servers}
    res = {"stack": a.key, "baseline": rs.snapshot("baseline")}
    pages = {}
    try:
        while rs.CLOCK.left() > rs.CLOCK.reserve:
            for s in servers:
                if s.proc is None and all(by[d].healthy_s is not None for d in s.svc["depends_on"]):
                    s.start()
            states = [s.state() for s in servers]
            if any(x in ("dead", "timeout") for x in states) or all(x == "up" for x in states):
                break
            time.sleep(1)
        res["boot"] = {s.service: s.outcome() for s in servers}
        if not all(s.healthy_s is not None for s in servers):
            return res
        res["chats"] = {s.service: s.chats() for s in servers}
        time.sleep(3)
        for s in servers:
            pages[f"{s.service}-idle.prom"] = page(s)
        res["idle"] = {"nvml": per_server_nvml(servers), "smi_mib": {s.service: s.gpu_mib() for s in servers},
                       "gauges": {s.service: gauges(pages[f"{s.service}-idle.prom"]) for s in servers}}
        first = servers[0]
        seqs = int(rs.arg(first.args, "--max-num-seqs") or 16)
        samples, busiest, stop = [], {"waiting": -1.0, "text": ""}, threading.Event()

        def sample():
            t0 = time.time()
            while not stop.is_set() and len(samples) < 1200:
                text = page(first)
                g = gauges(text)
                samples.append((round(time.time() - t0, 1), g))
                if g["vllm:num_requests_waiting"] > busiest["waiting"]:
                    busiest.update(waiting=g["vllm:num_requests_waiting"], text=text)
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        res["burst"] = first.burst(servers, requests=2 * seqs)
        res["burst_nvml"] = per_server_nvml(servers)
        stop.set()
        sampler.join(timeout=5)
        res["burst_samples"] = samples[:: max(1, len(samples) // 200)]
        res["burst_max"] = {g: max((x[1][g] for x in samples), default=None) for g in GAUGES}
        pages[f"{first.service}-busiest.prom"] = busiest["text"]
        for s in servers:
            pages[f"{s.service}-after.prom"] = page(s)
        res["after"] = {"nvml": per_server_nvml(servers), "smi_mib": {s.service: s.gpu_mib() for s in servers}}
    finally:
        res["servers"] = [s.result() for s in servers]
        rs.stop_all(list(reversed(servers)))
        with open(os.path.join(a.out, "summary.json"), "w") as f:
            json.dump(res, f, indent=1)
        with tarfile.open(os.path.join(a.out, "pages.tgz"), "w:gz") as tar:
            for name, text in pages.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        rs.pack_logs(servers, a.out)
        rs.say("wrote", os.path.join(a.out, "summary.json"))
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("stacks")
    r.add_argument("key")
    r.add_argument("--out", required=True)
    r.add_argument("--deadline", type=float, default=time.time() + 560)
    r.add_argument("--reserve", type=float, default=45)
    r.add_argument("--port-base", type=int, default=8001)
    r.add_argument("--fake", action="store_true")
    cmd_run(p.parse_args())


if __name__ == "__main__":
    main()
