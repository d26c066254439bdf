#!/usr/bin/env python3
"""A swap set on the lent GPU: real vLLM servers behind the real swap coordinator.

  swap_run.py boot INPUT.json --out DIR --deadline T
      the rendered chain as `up` runs it: each server (`vllm serve` + its rendered args, --port
      8001, 8002, ...) starts once the one before it is asleep; after /health 200 the rendered
      first-sleep step (`python3 -m gpustack_compose.swap first-sleep ...`) puts it to sleep; then
      the coordinator (`python3 -m gpustack_compose.swap serve`, the rendered swap/config.json with
      the servers' URLs on 127.0.0.1) on port 8090. Leaves them running for `drive` (the machine
      stays warm 30 s between calls); writes DIR/boot.json.
  swap_run.py drive INPUT.json --out DIR --deadline T
      through the coordinator: time to first byte of a chat to a sleeping model against the same
      model awake (direct and through the coordinator), alternation rounds, concurrent requests to
      one sleeper, two clients alternating for --alternate-s; nvidia-smi per server and the
      servers' host RSS after each swap; the coordinator's own record (/state?history=1). Then
      stops everything and writes DIR/summary.json.

INPUT.json: {"stack": KEY, "services": [make-stacks service entries, in boot order],
             "levels": {service: 1|2}, "swap_config": the rendered swap/config.json}
Stdlib only (the coordinator itself runs on the site's starlette/uvicorn and httpx).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_stack as rs  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
STATE_DIR = "/tmp/swaprun"
COORD_PORT = 8090
PROMPT = "Say hello."


def say(*a):
    rs.say(*a)


def pythonpath():
    parts = [os.environ.get("VLLM_SITE", "/tmp/site"), REPO, os.path.join(REPO, ".gpu", "in", "pylib")]
    return ":".join(p for p in parts if os.path.isdir(p))


def tool_env(**extra):
    env = dict(os.environ)
    env.update({"PYTHONPATH": pythonpath(), "PYTHONUNBUFFERED": "1", **extra})
    return env


def host_mem(pid):
    """VmRSS and RssShmem (GiB) of a server's process tree: level 1 pins host memory as shmem"""
    rss = shm = 0
    for p in rs.descendants(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("RssShmem:"):
                    shm += int(line.split()[1])
        except OSError:
            pass
    avail = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            avail = int(line.split()[1])
    return {"rss_gib": round(rss / 2**20, 3), "shmem_gib": round(shm / 2**20, 3),
            "host_available_gib": round(avail / 2**20, 2)}


def memory(tag, servers):
    apps, table = rs.smi_apps(), rs.proc_children()
    snap = {"t": rs.CLOCK.now(), "tag": tag, "gpu": rs.smi_gpu(),
            "gpu_mib": {s: sum(m for p, m in apps.items() if p in rs.descendants(pid, table))
                        for s, pid in servers.items()},
            "host": {s: host_mem(pid) for s, pid in servers.items()}}
    say("MEM", tag, snap["gpu"], snap["gpu_mib"])
    return snap


def chat(port, path, model, timeout=120.0):
    """A streamed chat: status, time to first byte of content, total time, text"""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16,
                       "temperature": 0, "stream": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    t = time.monotonic()
    first = None
    text = []
    try:
        with urllib.request.urlopen(req, timeout=rs.CLOCK.cap(timeout)) as r:
            for raw in r:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                if first is None:
                    first = time.monotonic() - t
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    for c in json.loads(data).get("choices", []):
                        text.append((c.get("delta") or {}).get("content") or "")
                except ValueError:
                    pass
            total = time.monotonic() - t
            return {"status": r.status, "ttfb_s": round(first if first is not None else total, 3), "total_s": round(total, 3),
                    "text": "".join(text)}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "total_s": round(time.monotonic() - t, 3), "error": e.read().decode()[:300]}
    except Exception as e:  # noqa: BLE001
        return {"status": None, "total_s": round(time.monotonic() - t, 3), "error": repr(e)[:300]}


def coord_state(history=False):
    r = rs.http("GET", COORD_PORT, "/state" + ("?history=1" if history else ""), timeout=10)
    try:
        return json.loads(r.get("body") or "{}")
    except ValueError:
        return {}


def cmd_boot(a):
    spec = json.load(open(a.input))
    os.makedirs(STATE_DIR, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    rs.kill_leftovers()
    stop_coordinator()
    os.makedirs(rs.LOGDIR, exist_ok=True)
    boot = {"stack": spec["stack"], "servers": {}, "memory": [], "first_sleep": {}, "boot_s": {}}
    config = spec["swap_config"]
    by_service = {m["service"]: m for m in config["models"]}
    for i, svc in enumerate(spec["services"]):
        port = 8001 + i
        server = rs.Server(spec["stack"], svc, port, a.fake)
        server.start()
        while server.state() is None:
            time.sleep(1)
        if server.state() != "up":
            boot["failure"] = f"{svc['service']}: {server.outcome()}"
            say("BOOT FAILED", boot["failure"])
            break
        boot["servers"][svc["service"]] = {"pid": server.proc.pid, "port": port, "log": server.log,
                                           "name": rs.arg(server.args, "--served-model-name")}
        boot["boot_s"][svc["service"]] = server.healthy_s
        pids = {s: v["pid"] for s, v in boot["servers"].items()}
        boot["memory"].append(memory(f"{svc['service']} booted", pids))
        model = by_service[svc["service"]]
        t = time.monotonic()
        step = subprocess.run([sys.executable, "-m", "gpustack_compose.swap", "first-sleep", "--url",
                               f"http://127.0.0.1:{port}", "--level", str(model["level"]), "--timeout",
                               str(model["sleep_timeout_s"])], env=tool_env(), capture_output=True, text=True,
                              timeout=rs.CLOCK.cap(model["sleep_timeout_s"] + 10))
        boot["first_sleep"][svc["service"]] = {"rc": step.returncode, "s": round(time.monotonic() - t, 2),
                                               "out": (step.stdout + step.stderr)[-400:]}
        say("first sleep", svc["service"], boot["first_sleep"][svc["service"]])
        boot["memory"].append(memory(f"{svc['service']} asleep", pids))
        if step.returncode != 0:
            boot["failure"] = f"{svc['service']}: first sleep failed"
            break
    if "failure" not in boot:
        for m in config["models"]:
            m["url"] = f"http://127.0.0.1:{boot['servers'][m['service']]['port']}"
        path = os.path.join(STATE_DIR, "config.json")
        json.dump(config, open(path, "w"), indent=1)
        log = open(os.path.join(STATE_DIR, "coordinator.log"), "w")
        proc = subprocess.Popen([sys.executable, "-m", "gpustack_compose.swap", "serve", "--config", path,
                                 "--host", "127.0.0.1", "--port", str(COORD_PORT)],
                                env=tool_env(GSC_SWAP_RESTART="none", **fake_memory(a)), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        open(os.path.join(STATE_DIR, "coordinator.pid"), "w").write(str(proc.pid))
        t = time.monotonic()
        while time.monotonic() - t < 30 and rs.http("GET", COORD_PORT, "/health", timeout=2).get("status") != 200:
            time.sleep(0.5)
        boot["coordinator"] = {"pid": proc.pid, "healthy_s": round(time.monotonic() - t, 2), "state": coord_state()}
        say("coordinator", boot["coordinator"])
    json.dump(boot, open(os.path.join(STATE_DIR, "boot.json"), "w"), indent=1)
    json.dump(boot, open(os.path.join(a.out, "boot.json"), "w"), indent=1)
    return 0 if "failure" not in boot else 1


def fake_memory(a):
    """a dry run has no NVML: an empty ledger (every wake fits)"""
    return {"GSC_SWAP_MEMORY": "ledger", "GSC_SWAP_LEDGER_DIR": os.path.join(STATE_DIR, "ledger")} if a.fake else {}


def stop_coordinator():
    path = os.path.join(STATE_DIR, "coordinator.pid")
    if os.path.exists(path):
        try:
            os.killpg(int(open(path).read()), signal.SIGKILL)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
        os.remove(path)


def summarize(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {"n": len(values), "p50": round(statistics.median(values), 3), "min": values[0], "max": values[-1]}


def wake_times(history):
    """per model: waking -> awake and sleeping -> asleep durations from the coordinator's record"""
    out = {}
    began = {}
    for e in history:
        key = e["model"]
        if e["phase"] in ("waking", "sleeping"):
            began[key] = (e["phase"], e["t"])
        elif key in began:
            phase, t = began.pop(key)
            done = {"waking": "awake", "sleeping": "asleep"}[phase]
            if e["phase"] == done:
                out.setdefault(key, {}).setdefault(phase, []).append(round(e["t"] - t, 3))
    return out


def cmd_drive(a):
    boot = json.load(open(os.path.join(STATE_DIR, "boot.json")))
    servers = boot["servers"]
    pids = {s: v["pid"] for s, v in servers.items()}
    names = {s: v["name"] for s, v in servers.items()}
    order = list(servers)
    res = {"requests": [], "memory": [], "baseline": {}}

    def via(service, tag):
        r = chat(COORD_PORT, f"/{service}/v1/chat/completions", names[service])
        r.update({"service": service, "tag": tag, "t": rs.CLOCK.now()})
        res["requests"].append(r)
        say(tag, service, {k: r.get(k) for k in ("status", "ttfb_s", "total_s", "error")})
        return r

    def direct(service, tag):
        r = chat(servers[service]["port"], "/v1/chat/completions", names[service])
        r.update({"service": service, "tag": tag, "t": rs.CLOCK.now()})
        res["requests"].append(r)
        return r

    # 1. each model: woken by its first request, then awake figures, direct and through the coordinator
    for s in order:
        via(s, "wake (first)")
        res["memory"].append(memory(f"{s} awake", pids))
        for _ in range(3):
            direct(s, "awake direct")
            via(s, "awake via coordinator")
    # 2. alternation: every request finds its model asleep (awake_max 1)
    for i in range(a.rounds):
        for s in order:
            via(s, "wake")
            res["memory"].append(memory(f"round {i + 1}: {s} awake", pids))
    # 3. concurrent requests for one sleeper: one wake
    sleeper = order[0]
    before = coord_state()["models"][names[sleeper]]["wakes"]
    threads = [threading.Thread(target=via, args=(sleeper, "concurrent wake")) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res["concurrent_wakes"] = coord_state()["models"][names[sleeper]]["wakes"] - before
    # 4. two clients, one per model, for alternate_s: the models take turns
    stop_at = time.monotonic() + min(a.alternate_s, max(0, rs.CLOCK.left() - 60))
    started = time.monotonic()

    def loop(s):
        while time.monotonic() < stop_at:
            via(s, "two clients")

    workers = [threading.Thread(target=loop, args=(s,)) for s in order]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    res["two_clients_s"] = round(time.monotonic() - started, 1)
    state = coord_state(history=True)
    res["coordinator"] = {k: v for k, v in state.items() if k != "history"}
    res["history"] = state.get("history", [])
    res["transitions"] = wake_times(res["history"])
    # the verdicts
    reqs = res["requests"]
    res["failed"] = [r for r in reqs if r.get("status") != 200]
    res["ttfb"] = {}
    for s in order:
        mine = [r for r in reqs if r["service"] == s and r.get("status") == 200]
        res["ttfb"][s] = {tag: summarize([r["ttfb_s"] for r in mine if r["tag"] == tag])
                          for tag in ("awake direct", "awake via coordinator", "wake", "two clients")}
        trans = res["transitions"].get(names[s], {})
        res["ttfb"][s]["coordinator wake"] = summarize(trans.get("waking", []))
        res["ttfb"][s]["coordinator sleep"] = summarize(trans.get("sleeping", []))
    two = [r for r in reqs if r["tag"] == "two clients"]
    res["two_clients"] = {"requests": len(two), "ok": sum(r.get("status") == 200 for r in two),
                          "per_s": round(len(two) / max(res["two_clients_s"], 0.1), 3)}
    say("RESULT", json.dumps({"ttfb": res["ttfb"], "failed": len(res["failed"]), "two": res["two_clients"],
                              "concurrent_wakes": res["concurrent_wakes"]}))
    # stop everything
    stop_coordinator()
    for pid in pids.values():
        for fn, target in ((os.killpg, pid),):
            try:
                fn(target, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    time.sleep(8)
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    res["after_kill"] = rs.wait_free("swap")
    res["boot"] = boot
    json.dump(res, open(os.path.join(a.out, "summary.json"), "w"), indent=1)
    pack(boot, a.out)
    return 0 if not res["failed"] else 1


def pack(boot, out):
    """the coordinator's log and the sleep/wake/memory lines of each server's log"""
    lines = []
    for s, v in boot["servers"].items():
        try:
            for line in open(v["log"], errors="replace"):
                if any(k in line for k in ("sleep", "wake", "Sleep", "memory", "OutOfMemory", "ERROR", "took")):
                    lines.append(f"{s}: {line.rstrip()[:400]}")
        except OSError:
            pass
    open(os.path.join(out, "server_lines.log"), "w").write("\n".join(lines[-3000:]) + "\n")
    try:
        coord = open(os.path.join(STATE_DIR, "coordinator.log"), errors="replace").read()
        open(os.path.join(out, "coordinator.log"), "w").write(coord[-400_000:])
    except OSError:
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=("boot", "drive"))
    p.add_argument("input")
    p.add_argument("--out", required=True)
    p.add_argument("--deadline", type=float, default=time.time() + 560)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--alternate-s", type=float, default=40)
    p.add_argument("--fake", action="store_true")
    a = p.parse_args()
    rs.CLOCK = rs.Clock(a.deadline, 15)
    return cmd_boot(a) if a.command == "boot" else cmd_drive(a)


if __name__ == "__main__":
    sys.exit(main())
