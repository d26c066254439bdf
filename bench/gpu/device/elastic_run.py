#!/usr/bin/env python3
"""An elastic GPU on the lent H200: real vLLM servers sharing one KV pool through kvcached.

  elastic_run.py run STACKS.json KEY --out DIR --deadline T [--fake]
      the rendered chain as `up` runs it: each server (`vllm serve` + its rendered args and
      environment -- ENABLE_KVCACHED, KVCACHED_AUTOPATCH, KVCACHED_GPU_UTILIZATION, its
      KVCACHED_IPC_NAME; --port 8001, 8002, ...) starts once the one before it answers /health;
      then the caps `up` applies (`kvctl limit IPC <kv_max>M`, the plan's kv_max_bytes). Then,
      with kvcached's own segments (`kvctl list --json`) and nvidia-smi per server sampled every
      0.5 s: idle, a full-load burst on each model in turn with idle gaps between (does KV grow
      and shrink? does a cap hold?), both at once (does one starve or crash the other?), one
      chat each after. Writes DIR/summary.json and DIR/trimmed_logs.tgz.

STACKS.json is run_stack.py's input (make-stacks from the rendered compose file and
`plan --json`); each service's plan carries kv_max_bytes. kvcached must be importable by the
device's python3 with its autopatch .pth installed (pip install into that interpreter).
Stdlib only.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_stack as rs  # noqa: E402

MiB = 1 << 20
IDLE_S = 8


def kvctl(*args, timeout=20):
    """kvcached's CLI, in the device's interpreter (its segments live in /dev/shm)"""
    cmd = [sys.executable, "-m", "kvcached.cli.kvctl", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, NO_COLOR="1"))
        return {"rc": r.returncode, "out": r.stdout.strip()[-2000:], "err": r.stderr.strip()[-1000:]}
    except Exception as e:  # noqa: BLE001
        return {"rc": None, "err": repr(e)[:300]}


def segments():
    r = kvctl("list", "--json")
    try:
        return {s["ipc"]: {"limit_mib": round(s["limit_bytes"] / MiB), "used_mib": round(s["used_bytes"] / MiB)}
                for s in json.loads(r["out"])}
    except (KeyError, ValueError, TypeError):
        return {"_error": (r.get("err") or r.get("out") or "")[-300:]}


class Sampler(threading.Thread):
    """nvidia-smi per server and kvcached's segments, every 0.5 s, tagged with the phase"""

    def __init__(self, servers):
        super().__init__(daemon=True)
        self.servers, self.phase, self.samples, self.stopped = servers, "idle", [], threading.Event()

    def run(self):
        while not self.stopped.is_set() and len(self.samples) < 2400:
            apps, table = rs.smi_apps(), rs.proc_children()
            self.samples.append({"t": rs.CLOCK.now(), "phase": self.phase, "gpu": rs.smi_gpu(),
                                 "mib": {s.service: s.gpu_mib(apps, table) for s in self.servers},
                                 "kv": segments()})
            self.stopped.wait(0.5)

    def peaks(self, phase):
        """per server: the most GPU MiB and kvcached used MiB seen in a phase"""
        out = {}
        for sample in (x for x in self.samples if x["phase"] == phase):
            for svc, mib in sample["mib"].items():
                out.setdefault(svc, {}).update(gpu_mib=max(out.get(svc, {}).get("gpu_mib", 0), mib))
            for ipc, seg in sample["kv"].items():
                if isinstance(seg, dict):
                    peak = out.setdefault(ipc, {})
                    peak["kv_used_mib"] = max(peak.get("kv_used_mib", 0), seg["used_mib"])
                    peak["kv_limit_mib"] = seg["limit_mib"]
        return out


def cmd_run(a):
    rs.CLOCK = rs.Clock(a.deadline, a.reserve)
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(rs.LOGDIR, exist_ok=True)
    rs.kill_leftovers()
    spec = rs.load_stacks(a.stacks)[a.key]
    servers = [rs.Server(a.key, svc, a.port_base + i, a.fake) for i, svc in enumerate(spec["services"])]
    by = {s.service: s for s in servers}
    res = {"stack": a.key, "baseline": rs.snapshot("baseline"), "kvcached": kvctl("--help")["rc"] == 0}
    sampler = Sampler(servers)
    try:
        while rs.CLOCK.left() > rs.CLOCK.reserve:
            for s in servers:
                if s.proc is None and all(by[d].healthy_s is not None for d in s.svc["depends_on"]):
                    res.setdefault("free_before_start", {})[s.service] = rs.smi_gpu()
                    s.start()
            states = [s.state() for s in servers]
            if any(x in ("dead", "timeout") for x in states) or all(x == "up" for x in states):
                break
            time.sleep(1)
        res["boot"] = {s.service: s.outcome() for s in servers}
        if not all(s.healthy_s is not None for s in servers):
            return res
        res["segments_at_boot"] = segments()
        res["caps"] = {}
        own = {ipc: seg["limit_mib"] * MiB for ipc, seg in res["segments_at_boot"].items() if isinstance(seg, dict)}
        for s in servers:
            ipc, cap = (s.svc.get("env") or {}).get("KVCACHED_IPC_NAME"), s.plan.get("kv_max_bytes")
            # `up` only lowers a limit; --raise-limits is what it did before
            # docs/h200-elastic-contention-2026-12-02.md
            if ipc and cap and (a.raise_limits or cap < own.get(ipc, 0)):
                res["caps"][s.service] = {"ipc": ipc, "mib": cap // MiB, "kvctl": kvctl("limit", ipc, f"{cap // MiB}M")}
            elif ipc and cap:
                res["caps"][s.service] = {"ipc": ipc, "kept_mib": own.get(ipc, 0) // MiB}
        res["segments_capped"] = segments()
        sampler.start()
        res["all_up"] = rs.snapshot("all up", servers)
        time.sleep(IDLE_S)
        res["bursts"] = {}
        for s in servers:
            if rs.CLOCK.left() < rs.CLOCK.reserve + 60:
                break
            sampler.phase = f"burst {s.service}"
            res["bursts"][s.service] = s.burst(servers)
            sampler.phase = f"idle after {s.service}"
            time.sleep(IDLE_S)
        for round_ in range(a.rounds):
            if rs.CLOCK.left() < rs.CLOCK.reserve + 60:
                break
            sampler.phase = "burst all" if round_ == 0 else f"burst all {round_ + 1}"
            out = {}
            threads = [threading.Thread(target=lambda s=s: out.__setitem__(s.service, s.burst(servers)), daemon=True)
                       for s in servers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=max(1.0, rs.CLOCK.left() - rs.CLOCK.reserve))
            res["burst_all" if round_ == 0 else f"burst_all_{round_ + 1}"] = out
            sampler.phase = "idle after all" if round_ == 0 else f"idle after all {round_ + 1}"
            time.sleep(IDLE_S)
        res["health_after"] = {s.service: s.health() for s in servers}
        res["chats_after"] = {s.service: s.chats() for s in servers}
    finally:
        sampler.stopped.set()
        res["peaks"] = {phase: sampler.peaks(phase) for phase in dict.fromkeys(x["phase"] for x in sampler.samples)}
        res["samples"] = sampler.samples[:: max(1, len(sampler.samples) // 400)]
        res["servers"] = [s.result() for s in servers]
        rs.stop_all(list(reversed(servers)))
        res["freed"] = rs.wait_free("elastic")
        with open(os.path.join(a.out, "summary.json"), "w") as f:
            json.dump(res, f, indent=1)
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
    r.add_argument("--raise-limits", action="store_true", help="cap at kv_max even above a server's own KV space")
    r.add_argument("--rounds", type=int, default=1, help="bursts of both servers at once (default 1)")
    a = p.parse_args()
    cmd_run(a)


if __name__ == "__main__":
    main()
