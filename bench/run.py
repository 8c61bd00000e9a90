#!/usr/bin/env python3
"""One full benchmark run of camera-service against a bare Autobahn reference server.

Run with the project's venv:   .venv/bin/python bench/run.py --scenario all
Smoke run:                      .venv/bin/python bench/run.py --quick

What it does (see bench/README.md for the why):

1. installs the Node load generator's dependency (``npm ci`` into bench/node_modules)
   when it is missing or out of date;
2. mints an HS256 JWT (role ``viewer``) with a random secret;
3. starts ``bench/bare_server.py`` and the service
   (``twistd -n --pidfile= camera-service --config <tmp.yaml>``), both pinned to the
   server core (``taskset -c 1``), with a raised RLIMIT_NOFILE, and waits until the
   service's ``/health/live`` answers 200 and ``ping``/``get_server_info`` work;
4. runs each scenario with the generator (``bench/loadgen.js``) pinned to the other
   core (``taskset -c 0``), first against the bare server, then against the service,
   sampling the server's CPU and RSS with psutil during each scenario;
5. stops the service with SIGTERM (it must exit within 2 s), prints a table and
   PASS/FAIL lines, and writes ``bench/results/<timestamp>.json``.

Exit status: 0 when every target passed, 1 when one failed, 2 when the run itself
could not be carried out (a server did not start, the generator crashed, ...).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
LOADGEN = BENCH / "loadgen.js"
BARE = BENCH / "bare_server.py"

# The acceptance targets (project requirement), in one place.
OPEN_P95_MS = 5.0
OPEN_P99_MS = 20.0
CLOSED_MIN_RATIO = 0.70
IDLE_MAX_RSS_MB = 150.0
SHUTDOWN_MAX_S = 2.0
GEN_CPU_WARN_PCT = 80.0

FULL = {
    "open": {"connections": 1000, "rate": 1000, "duration": 30, "warmup": 2},
    "closed": {"connections": 100, "duration": 10, "warmup": 2, "rounds": 3},
    "idle": {"connections": 5000, "duration": 35},  # > one 30 s server keep-alive ping
}
QUICK = {
    "open": {"connections": 50, "rate": 200, "duration": 5, "warmup": 1},
    "closed": {"connections": 50, "duration": 5, "warmup": 1, "rounds": 1},
    "idle": {"connections": 50, "duration": 5},
}
GEN_NOFILE = 65536


# ---------------------------------------------------------------- small helpers
def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ORIG_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_nofile(target: int) -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE; the children (generator, servers) inherit it.

    Tries ``target`` for soft and hard (raising the hard limit needs CAP_SYS_RESOURCE,
    e.g. root); otherwise sets the soft limit to the hard limit, which is always allowed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if hard != inf and hard < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, target) if hard == inf else hard
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def with_original_nofile(argv: list[str]) -> list[str]:
    """Run ``argv`` with the RLIMIT_NOFILE the bench was started with (lowering is always allowed)."""
    def lim(v: int) -> str:
        return "unlimited" if v == resource.RLIM_INFINITY else str(v)

    return ["prlimit", f"--nofile={lim(ORIG_NOFILE[0])}:{lim(ORIG_NOFILE[1])}", "--", *argv]


def pinned(core: int | None, argv: list[str]) -> list[str]:
    return argv if core is None else ["taskset", "-c", str(core), *argv]


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def git_describe() -> dict:
    def run(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---------------------------------------------------------------- node side
def ensure_node_deps(skip: bool) -> str:
    node = shutil.which("node")
    if not node:
        raise SystemExit("bench: node is not installed (the load generator is bench/loadgen.js)")
    want = json.loads((BENCH / "package.json").read_text())["dependencies"]["ws"]
    have_file = BENCH / "node_modules" / "ws" / "package.json"
    have = json.loads(have_file.read_text())["version"] if have_file.exists() else None
    if have != want and not skip:
        npm = shutil.which("npm")
        if not npm:
            raise SystemExit("bench: npm is not installed and bench/node_modules is missing")
        cmd = [npm, "ci" if (BENCH / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
        log(f"installing the generator's dependency: {' '.join(cmd[1:])} (in bench/)")
        subprocess.run(cmd, cwd=BENCH, check=True, stdout=sys.stderr)
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- servers
class Server:
    """A server process under test (bare reference or the service)."""

    def __init__(self, name: str, argv: list[str], env: dict, port: int, workdir: Path,
                 health_port: int | None, raised_nofile: bool, core: int | None):
        self.name = name
        self.port = port
        self.health_port = health_port
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.logfile = workdir / f"{name}.log"
        self._log = open(self.logfile, "wb")
        self.cmd = pinned(core, argv if raised_nofile else with_original_nofile(argv))
        self.proc = subprocess.Popen(
            self.cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.ps = psutil.Process(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def nofile(self) -> list[int] | None:
        try:
            return list(self.ps.rlimit(psutil.RLIMIT_NOFILE))
        except (psutil.Error, AttributeError):
            return None

    def affinity(self) -> list[int] | None:
        try:
            return self.ps.cpu_affinity()
        except psutil.Error:
            return None

    def wait_ready(self, token: str, probe_methods: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        # 1) the health endpoint (service) or the TCP port (bare server)
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}:\n{tail(self.logfile)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not come up within {timeout:.0f} s:\n{tail(self.logfile)}")
            try:
                if self.health_port:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/health/live", timeout=1) as r:
                        if r.status == 200:
                            break
                else:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        break
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        # 2) a real WebSocket round trip through the generator (authenticate + methods)
        last = None
        while time.monotonic() < deadline:
            last = run_loadgen(self.url, token, "probe", {"methods": probe_methods}, None, timeout=30)
            if last["report"] and last["report"].get("ok"):
                return last["report"]["run"]["methods"]
            time.sleep(0.3)
        raise RuntimeError(f"{self.name}: probe failed: {json.dumps(last and last['report'])[:2000]}\n"
                           f"{last and last['stderr_tail']}\n{tail(self.logfile)}")

    def stop(self, grace: float) -> dict:
        """SIGTERM, wait up to ``grace`` s; SIGKILL if still running."""
        if not self.alive():
            return {"already_exited": True, "returncode": self.proc.returncode, "seconds": 0.0, "within_grace": False}
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=grace)
            out = {"returncode": rc, "seconds": round(time.monotonic() - t0, 3), "within_grace": True}
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
            out = {"returncode": rc, "seconds": round(time.monotonic() - t0, 3), "within_grace": False, "killed": True}
        self._log.close()
        return out


class Sampler:
    """Samples a process's RSS (and its children's) every ``interval`` s on a thread."""

    def __init__(self, ps: psutil.Process, interval: float = 0.2):
        self.ps = ps
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (monotonic, rss MB)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def rss_mb(self) -> float | None:
        try:
            return self.ps.memory_info().rss / 1048576
        except psutil.Error:
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            v = self.rss_mb()
            if v is not None:
                self.samples.append((time.monotonic(), v))
            self._stop.wait(self.interval)

    def __enter__(self) -> "Sampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def peak(self) -> float | None:
        return max((v for _, v in self.samples), default=None)


def cpu_seconds(ps: psutil.Process | None) -> float | None:
    if ps is None:
        return None
    try:
        t = ps.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None


# ---------------------------------------------------------------- generator
GEN_CORE: int | None = 0
SRV_CORE: int | None = 1


def run_loadgen(url: str, token: str, mode: str, params: dict, server: Server | None,
                timeout: float) -> dict:
    """Run bench/loadgen.js once; return its report plus server/generator samples."""
    argv = [shutil.which("node") or "node", str(LOADGEN), "--url", url, "--token", token, "--mode", mode]
    for k, v in params.items():
        argv += [f"--{k}", str(v)]
    if mode != "probe":
        argv.append("--quiet")
    proc = subprocess.Popen(
        pinned(GEN_CORE, argv), cwd=BENCH, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    gen_ps = psutil.Process(proc.pid)
    srv_ps = server.ps if server else None
    marks: dict[str, dict] = {}
    events: list[dict] = []
    stderr_lines: list[str] = []
    sampler = Sampler(srv_ps) if srv_ps else None

    def mark(name: str) -> None:
        marks[name] = {
            "t": time.monotonic(),
            "cores": psutil.cpu_times(percpu=True),
            "srv_cpu": cpu_seconds(srv_ps),
            "gen_cpu": cpu_seconds(gen_ps),
            "srv_rss_mb": sampler.rss_mb() if sampler else None,
        }

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            try:
                ev = json.loads(line)
            except ValueError:
                stderr_lines.append(line)
                continue
            events.append(ev)
            name = ev.get("event")
            if name in ("ready", "measure_start", "measure_end") or (name == "holding" and "holding" not in marks):
                mark(name)

    reader = threading.Thread(target=read_stderr, daemon=True)
    if sampler:
        sampler.__enter__()
    reader.start()
    killed = threading.Event()

    def _kill() -> None:
        killed.set()
        proc.kill()

    watchdog = threading.Timer(timeout, _kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read()  # stderr belongs to the reader thread
        proc.wait()
    finally:
        watchdog.cancel()
    if killed.is_set():
        stderr_lines.append(f"bench: generator killed after {timeout:.0f} s")
    reader.join(timeout=5)
    if sampler:
        sampler.__exit__(None, None, None)

    report = None
    text = out.decode(errors="replace").strip()
    if text:
        try:
            report = json.loads(text.splitlines()[-1])
        except ValueError:
            stderr_lines.append("bench: could not parse generator output: " + text[:500])

    server_stats: dict = {}
    if sampler:
        server_stats["rss_peak_mb"] = round(sampler.peak() or 0, 1)
        first = sampler.samples[0][1] if sampler.samples else None
        server_stats["rss_start_mb"] = round(first, 1) if first else None
        if "holding" in marks and marks["holding"]["srv_rss_mb"]:
            server_stats["rss_holding_mb"] = round(marks["holding"]["srv_rss_mb"], 1)
        if "measure_end" in marks and marks["measure_end"]["srv_rss_mb"]:
            server_stats["rss_end_mb"] = round(marks["measure_end"]["srv_rss_mb"], 1)
    gen_stats: dict = {}
    a, b = marks.get("measure_start"), marks.get("measure_end")
    if a and b and b["t"] > a["t"]:
        dt = b["t"] - a["t"]
        if a["srv_cpu"] is not None and b["srv_cpu"] is not None:
            server_stats["cpu_pct_of_one_core"] = round((b["srv_cpu"] - a["srv_cpu"]) / dt * 100, 1)
        if a["gen_cpu"] is not None and b["gen_cpu"] is not None:
            gen_stats["psutil_cpu_pct_of_one_core"] = round((b["gen_cpu"] - a["gen_cpu"]) / dt * 100, 1)
        server_stats["window_s"] = round(dt, 3)
        # Whole-core utilisation over the window, all processes and the kernel included:
        # shows whether something else (another job, the other server) used the cores.
        busy = []
        for ca, cb in zip(a["cores"], b["cores"]):
            total = sum(cb) - sum(ca)
            idle = (cb.idle + getattr(cb, "iowait", 0)) - (ca.idle + getattr(ca, "iowait", 0))
            busy.append(round(100 * (total - idle) / total, 1) if total > 0 else None)
        server_stats["core_busy_pct"] = busy
    return {
        "report": report,
        "returncode": proc.returncode,
        "server": server_stats,
        "generator_psutil": gen_stats,
        "stderr_tail": "\n".join(stderr_lines[-20:]),
    }


# ---------------------------------------------------------------- scenarios
def scenario_params(name: str, cfg: dict, target: str) -> dict:
    p: dict = {"connections": cfg["connections"], "duration": cfg["duration"]}
    if name == "open":
        p.update(rate=cfg["rate"], warmup=cfg["warmup"], timeout=5000,
                 # The bare server answers ping only; same request rate, ping for both.
                 methods="ping" if target == "bare" else "ping,get_server_info")
    elif name == "closed":
        p.update(warmup=cfg["warmup"], timeout=10000)
    elif name == "idle":
        # the final ping burst to 5,000 connections can queue for a while; allow it
        p.update(timeout=30000, **{"idle-spread-ms": 1000})
    return p


def gen_timeout(name: str, cfg: dict) -> float:
    setup = cfg["connections"] / 200.0 + 30  # generous: pacing is 1,000/s at most
    return setup + cfg["duration"] + cfg.get("warmup", 0) + 90


def summarize(r: dict) -> dict:
    rep = r["report"] or {}
    run = rep.get("run", {})
    lat = run.get("latency_ms", {})
    return {
        "ok": bool(rep.get("ok")),
        "connections_ready": rep.get("setup", {}).get("ready"),
        "connections_requested": rep.get("setup", {}).get("requested"),
        "setup_failed": rep.get("setup", {}).get("failed"),
        "setup_s": rep.get("setup", {}).get("seconds"),
        "sent": run.get("sent_measured"),
        "completed": run.get("completed_measured"),
        "errors": rep.get("errors_total"),
        "throughput_rps": run.get("throughput_rps"),
        "p50_ms": lat.get("p50"),
        "p95_ms": lat.get("p95"),
        "p99_ms": lat.get("p99"),
        "max_ms": lat.get("max"),
        "server_cpu_pct": r["server"].get("cpu_pct_of_one_core"),
        "server_rss_peak_mb": r["server"].get("rss_peak_mb"),
        "server_rss_start_mb": r["server"].get("rss_start_mb"),
        "gen_cpu_pct": rep.get("generator", {}).get("cpu_pct_of_one_core"),
        "gen_event_loop_p99_ms": (rep.get("generator", {}).get("event_loop_delay_ms") or {}).get("p99"),
        "server_core_busy_pct": _core(r["server"], SRV_CORE),
        "gen_core_busy_pct": _core(r["server"], GEN_CORE),
        "keepalive_pings_received": run.get("keepalive_pings_received"),
    }


def _core(stats: dict, core: int | None):
    busy = stats.get("core_busy_pct")
    if core is None or not busy or core >= len(busy):
        return None
    return busy[core]


def fmt(v, nd=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def print_table(rows: list[tuple[str, str, dict]]) -> None:
    cols = [("scenario", 8), ("server", 8), ("conns", 11), ("sent", 8), ("err", 5), ("req/s", 9),
            ("p50 ms", 8), ("p95 ms", 8), ("p99 ms", 8), ("max ms", 8), ("srv CPU%", 9),
            ("srv RSS MB", 11), ("gen CPU%", 9)]
    head = " ".join(f"{n:>{w}}" for n, w in cols)
    print(head)
    print("-" * len(head))
    for scen, target, s in rows:
        conns = f"{fmt(s['connections_ready'])}/{fmt(s['connections_requested'])}"
        rps = None if scen == "idle" else s["throughput_rps"]  # idle: one ping each, not a rate
        vals = [scen, target, conns, fmt(s["sent"]), fmt(s["errors"]), fmt(rps),
                fmt(s["p50_ms"], 2), fmt(s["p95_ms"], 2), fmt(s["p99_ms"], 2), fmt(s["max_ms"], 2),
                fmt(s["server_cpu_pct"]), fmt(s["server_rss_peak_mb"]), fmt(s["gen_cpu_pct"])]
        print(" ".join(f"{v:>{w}}" for v, (_, w) in zip(vals, cols)))


# ---------------------------------------------------------------- config / token
def write_config(workdir: Path, port: int, health_port: int) -> Path:
    state = workdir / "state"
    for sub in ("", "recordings", "snapshots"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    cfg = f"""\
# generated by bench/run.py for one benchmark run
server:
  host: 127.0.0.1
  port: {port}
  max_connections: 6000
  state_dir: {state}
security:
  # The default (300 messages / 60 s per connection) is a per-client abuse guard;
  # the benchmark measures throughput, so it is raised out of the way.
  rate_limit_requests: 1000000
  rate_limit_window: 60
  api_keys:
    enabled: "false"
    file: {state}/api-keys.json
http_health:
  host: 127.0.0.1
  port: {health_port}
mediamtx:
  enabled: false
  recordings_path: {state}/recordings
  snapshots_path: {state}/snapshots
logging:
  level: warn
virtual_cameras: []
"""
    path = workdir / "camera-service.yaml"
    path.write_text(cfg)
    return path


def mint_token(secret: str) -> str:
    now = int(time.time())
    return jwt.encode({"user_id": "bench", "role": "viewer", "iat": now, "exp": now + 6 * 3600},
                      secret, algorithm="HS256")


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    global GEN_CORE, SRV_CORE
    ap = argparse.ArgumentParser(description="camera-service benchmark (see bench/README.md)")
    ap.add_argument("--scenario", choices=["open", "closed", "idle", "all"], default="all")
    ap.add_argument("--connections", type=int, help="override the connection count of the chosen scenario(s)")
    ap.add_argument("--rate", type=float, help="open loop: total requests per second")
    ap.add_argument("--duration", type=float, help="seconds measured (idle: seconds held)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 50 connections, 5 s, 200 req/s")
    ap.add_argument("--rounds", type=int, help="closed loop: interleaved bare/service rounds (default 3, quick 1)")
    ap.add_argument("--gen-core", type=int, default=0, help="CPU core for the generator (default 0)")
    ap.add_argument("--server-core", type=int, default=1, help="CPU core for the servers (default 1)")
    ap.add_argument("--no-pin", action="store_true", help="do not use taskset (not comparable!)")
    ap.add_argument("--no-child-rlimit", action="store_true",
                    help="do not raise the service's RLIMIT_NOFILE: exercise its own limit handling")
    ap.add_argument("--no-bare-idle", action="store_true", help="skip the idle scenario against the bare server")
    ap.add_argument("--stand-in-service", action="store_true",
                    help="testing aid: a second bare server (with get_server_info and /health/live) "
                         "stands in for the service")
    ap.add_argument("--startup-timeout", type=float, default=60.0)
    ap.add_argument("--skip-npm", action="store_true", help="never run npm (node_modules must exist)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (config, logs)")
    ap.add_argument("--output", type=Path, help="result file (default bench/results/<timestamp>.json)")
    args = ap.parse_args(argv)

    scenarios = ["open", "closed", "idle"] if args.scenario == "all" else [args.scenario]
    base = QUICK if args.quick else FULL
    cfgs = {s: dict(base[s]) for s in scenarios}
    for s in scenarios:
        if args.connections:
            cfgs[s]["connections"] = args.connections
        if args.duration:
            cfgs[s]["duration"] = args.duration
        if args.rate and s == "open":
            cfgs[s]["rate"] = args.rate
        if args.rounds and s == "closed":
            cfgs[s]["rounds"] = max(1, args.rounds)

    ncpu = len(os.sched_getaffinity(0))
    if args.no_pin:
        gen_core = srv_core = None
    elif ncpu < 2:
        log("WARNING: fewer than 2 usable cores: generator and servers share a core")
        gen_core = srv_core = None
    else:
        gen_core, srv_core = args.gen_core, args.server_core
        if not shutil.which("taskset"):
            raise SystemExit("bench: taskset not found (util-linux)")
    GEN_CORE, SRV_CORE = gen_core, srv_core
    if gen_core is not None:
        os.sched_setaffinity(0, {gen_core})  # keep this orchestrator off the server core

    node_version = ensure_node_deps(args.skip_npm)
    bench_nofile = raise_nofile(GEN_NOFILE)  # inherited by the generator and the servers
    need = max(c["connections"] for c in cfgs.values()) + 256
    if bench_nofile[0] != resource.RLIM_INFINITY and bench_nofile[0] < need:
        log(f"WARNING: RLIMIT_NOFILE is {bench_nofile[0]} (hard limit, could not be raised) but the run needs "
            f"about {need} descriptors per process: raise the hard limit (ulimit -Hn, LimitNOFILE=) first")
    RESULTS.mkdir(exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_path = args.output or RESULTS / f"{stamp}.json"

    workdir = Path(tempfile.mkdtemp(prefix="camera-bench-"))
    secret = secrets.token_urlsafe(32)
    token = mint_token(secret)
    py = sys.executable
    twistd = str(Path(py).parent / "twistd")
    if not os.path.exists(twistd):
        twistd = shutil.which("twistd") or twistd

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CAMERA_SERVICE_")}
    base_env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [base_env.get("PYTHONPATH")])])
    base_env["PYTHONUNBUFFERED"] = "1"

    result: dict = {
        "timestamp": stamp,
        "argv": sys.argv[1:],
        "quick": args.quick,
        "scenarios": {},
        "targets": [],
        "environment": {
            "cpu": cpu_model(), "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "node": node_version,
            "ws": json.loads((BENCH / "node_modules/ws/package.json").read_text())["version"],
            "twisted": _version("twisted"), "autobahn": _version("autobahn"),
            "generator_core": gen_core, "server_core": srv_core,
            "nofile_at_start": list(ORIG_NOFILE),
            "nofile_raised_to": list(bench_nofile),
            "git": git_describe(),
        },
    }

    servers: dict[str, Server] = {}
    rc = 0
    try:
        # ---- start the servers
        bport = free_port()
        servers["bare"] = Server("bare", [py, str(BARE), "--port", str(bport)], base_env, bport,
                                 workdir, None, True, srv_core)
        sport, hport = free_port(), free_port()
        if args.stand_in_service:
            argv_s = [py, str(BARE), "--port", str(sport), "--server-info", "--health-port", str(hport)]
            env_s = dict(base_env)
        else:
            conf = write_config(workdir, sport, hport)
            argv_s = [twistd, "-n", "--pidfile=", "camera-service", "--config", str(conf)]
            env_s = dict(base_env, CAMERA_SERVICE_JWT_SECRET=secret)
        servers["service"] = Server("service", argv_s, env_s, sport, workdir, hport,
                                    not args.no_child_rlimit, srv_core)

        log(f"waiting for the bare server on :{bport} and the service on :{sport} (health :{hport})")
        result["bare_probe"] = servers["bare"].wait_ready(token, "ping", args.startup_timeout)
        result["service_probe"] = servers["service"].wait_ready(token, "ping,get_server_info", args.startup_timeout)
        result["service"] = {
            "command": servers["service"].cmd,
            "stand_in": args.stand_in_service,
            "rlimit_nofile": servers["service"].nofile(),
            "rlimit_raised_by_bench": not args.no_child_rlimit,
            "cpu_affinity": servers["service"].affinity(),
            "rss_idle_mb": round(servers["service"].ps.memory_info().rss / 1048576, 1),
        }
        result["bare"] = {"rlimit_nofile": servers["bare"].nofile(), "cpu_affinity": servers["bare"].affinity(),
                          "rss_idle_mb": round(servers["bare"].ps.memory_info().rss / 1048576, 1)}
        log(f"service up: RLIMIT_NOFILE {result['service']['rlimit_nofile']}, "
            f"RSS {result['service']['rss_idle_mb']} MB, affinity {result['service']['cpu_affinity']}")

        # ---- scenarios: bare first, then the service, under the same load
        rows = []
        for name in scenarios:
            cfg = cfgs[name]
            result["scenarios"][name] = {"config": cfg}
            targets = ["bare", "service"]
            if name == "idle" and args.no_bare_idle:
                targets = ["service"]
            rounds = cfg.get("rounds", 1)
            runs: dict[str, list[dict]] = {t: [] for t in targets}
            for rnd in range(rounds):
                for target in targets:  # interleaved, so drift hits both alike
                    srv = servers[target]
                    params = scenario_params(name, cfg, target)
                    label = name if rounds == 1 else f"{name}#{rnd + 1}"
                    log(f"{label} against {target}: {params}")
                    r = run_loadgen(srv.url, token, name, params, srv, gen_timeout(name, cfg))
                    if r["report"] is None:
                        raise RuntimeError(f"generator failed (exit {r['returncode']}):\n{r['stderr_tail']}\n"
                                           f"{target} log:\n{tail(srv.logfile)}")
                    if not srv.alive():
                        raise RuntimeError(f"{target} died during {name}:\n{tail(srv.logfile)}")
                    s = summarize(r)
                    runs[target].append({"summary": s, "server": r["server"],
                                         "generator_psutil": r["generator_psutil"], "loadgen": r["report"]})
                    rows.append((label, target, s))
                    log(f"  -> {json.dumps(s)}")
                    time.sleep(1.0)
            for target in targets:
                # the representative run: the median by throughput (the only one when rounds == 1)
                ordered = sorted(runs[target], key=lambda x: x["summary"]["throughput_rps"] or 0)
                rep = dict(ordered[len(ordered) // 2])
                if rounds > 1:
                    rep["rounds"] = [x["summary"] for x in runs[target]]
                    # errors count across all rounds, not just the median one
                    rep["summary"] = dict(rep["summary"], errors=sum(x["summary"]["errors"] or 0 for x in runs[target]))
                result["scenarios"][name][target] = rep
            if rounds > 1 and "bare" in runs and "service" in runs:
                ratios = [sv["summary"]["throughput_rps"] / b["summary"]["throughput_rps"]
                          for b, sv in zip(runs["bare"], runs["service"]) if b["summary"]["throughput_rps"]]
                result["scenarios"][name]["round_ratios"] = [round(x, 4) for x in ratios]

        # ---- shutdown
        result["service_shutdown"] = servers["service"].stop(SHUTDOWN_MAX_S)
        result["service_log_tail"] = tail(servers["service"].logfile, 60)
        result["service_log_problems"] = scan_log(servers["service"].logfile)
        servers["bare"].stop(5)

        # ---- report
        print()
        print(f"camera-service benchmark {stamp}{'  (QUICK smoke run: not the target load)' if args.quick else ''}"
              f"{'  (STAND-IN service: bare server)' if args.stand_in_service else ''}")
        print(f"generator: Node {node_version} ws {result['environment']['ws']} on core {gen_core}; "
              f"servers on core {srv_core}; cpu {result['environment']['cpu']}")
        print()
        print_table(rows)
        print()
        result["targets"] = evaluate(result, scenarios, cfgs, args.quick)
        for t in result["targets"]:
            print(f"{t['status']:<4} {t['name']}: {t['detail']}")
        if any(t["status"] == "FAIL" for t in result["targets"]):
            rc = 1
    except Exception as exc:  # noqa: BLE001 - report and clean up
        log(f"ERROR: {exc}")
        result["error"] = str(exc)
        rc = 2
    finally:
        for srv in servers.values():
            if srv.alive():
                srv.stop(5)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nresults: {out_path}")
        if args.keep_tmp:
            print(f"temporary files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rc


def scan_log(path: Path) -> dict:
    """Count the service's warn/error/critical log events (Twisted's ``[ns#level]`` format)."""
    import re

    pat = re.compile(r"^\S+ \[([^\]#]+)#(warn|error|critical)\] (.*)$")
    counts: dict[str, int] = {}
    total = {"warn": 0, "error": 0, "critical": 0}
    shut_down_cleanly = False
    try:
        with open(path, errors="replace") as fh:
            for line in fh:
                if "Server Shut Down." in line:
                    shut_down_cleanly = True
                m = pat.match(line.rstrip("\n"))
                if not m:
                    continue
                total[m.group(2)] += 1
                key = f"{m.group(2)} {m.group(1)}: {m.group(3)[:160]}"
                counts[key] = counts.get(key, 0) + 1
    except OSError:
        pass
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:10]
    return {"totals": total, "top": [{"count": c, "event": k} for k, c in top],
            "orderly_shutdown_logged": shut_down_cleanly}


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def evaluate(result: dict, scenarios: list[str], cfgs: dict, quick: bool) -> list[dict]:
    out: list[dict] = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        out.append({"name": name, "status": "INFO" if ok is None else ("PASS" if ok else "FAIL"), "detail": detail})

    sc = result["scenarios"]
    note = " [quick run: below the target load]" if quick else ""
    if "open" in scenarios:
        svc, bare = sc["open"]["service"]["summary"], sc["open"]["bare"]["summary"]
        cfg = cfgs["open"]
        p95, p99 = svc["p95_ms"], svc["p99_ms"]
        add(f"open loop {cfg['connections']} conns {cfg['rate']:g} req/s p95 < {OPEN_P95_MS:g} ms",
            p95 is not None and p95 < OPEN_P95_MS,
            f"p95 {fmt(p95, 2)} ms (bare server {fmt(bare['p95_ms'], 2)} ms, "
            f"ratio {_ratio(p95, bare['p95_ms'])}){note}")
        add(f"open loop p99 < {OPEN_P99_MS:g} ms", p99 is not None and p99 < OPEN_P99_MS,
            f"p99 {fmt(p99, 2)} ms (bare server {fmt(bare['p99_ms'], 2)} ms){note}")
        add("open loop: no errors, every connection authenticated",
            svc["errors"] == 0 and svc["connections_ready"] == svc["connections_requested"]
            and svc["completed"] == svc["sent"],
            f"errors {svc['errors']}, connections {svc['connections_ready']}/{svc['connections_requested']}, "
            f"answered {svc['completed']}/{svc['sent']}")
    if "closed" in scenarios:
        svc, bare = sc["closed"]["service"]["summary"], sc["closed"]["bare"]["summary"]
        rr = sc["closed"].get("round_ratios")
        if rr:  # median of the per-round (interleaved) ratios
            ratio = sorted(rr)[len(rr) // 2]
            how = f"median of {len(rr)} interleaved rounds {', '.join(f'{x:.1%}' for x in rr)}"
        else:
            ratio = (svc["throughput_rps"] / bare["throughput_rps"]) if bare["throughput_rps"] else 0.0
            how = "one round"
        add(f"closed loop {cfgs['closed']['connections']} conns ping throughput >= {CLOSED_MIN_RATIO:.0%} of bare",
            ratio >= CLOSED_MIN_RATIO and svc["errors"] == 0,
            f"service {fmt(svc['throughput_rps'])} req/s vs bare {fmt(bare['throughput_rps'])} req/s = "
            f"{ratio:.1%} ({how}); errors {svc['errors']}; server CPU service {fmt(svc['server_cpu_pct'])}% / "
            f"bare {fmt(bare['server_cpu_pct'])}%{note}")
    if "idle" in scenarios:
        svc = sc["idle"]["service"]["summary"]
        n = cfgs["idle"]["connections"]
        peak = svc["server_rss_peak_mb"]
        bare_idle = sc["idle"].get("bare", {}).get("summary", {})
        add(f"idle {n} authenticated connections: RSS < {IDLE_MAX_RSS_MB:g} MB",
            peak is not None and peak < IDLE_MAX_RSS_MB,
            f"service peak RSS {fmt(peak)} MB (at start {fmt(svc['server_rss_start_mb'])} MB; "
            f"bare server peak {fmt(bare_idle.get('server_rss_peak_mb'))} MB){note}")
        add(f"idle: every one of {n} connections still answers",
            svc["ok"] and svc["completed"] == n and svc["connections_ready"] == n,
            f"answered {svc['completed']}/{n}, connections {svc['connections_ready']}/{n}, errors {svc['errors']}")
    sd = result.get("service_shutdown", {})
    probs = result.get("service_log_problems", {})
    rc = sd.get("returncode")
    add(f"service exits within {SHUTDOWN_MAX_S:g} s of SIGTERM", bool(sd.get("within_grace")),
        f"{sd.get('seconds')} s, exit status {rc}"
        + (" (twistd re-raises SIGTERM after its orderly shutdown)" if rc == -signal.SIGTERM else "")
        + ("; 'Server Shut Down.' logged" if probs.get("orderly_shutdown_logged") else "; no orderly shutdown logged"))
    totals = probs.get("totals") or {}
    if totals.get("error") or totals.get("critical"):
        first = probs["top"][0] if probs.get("top") else {}
        out.append({"name": "service log", "status": "WARN",
                    "detail": f"{totals.get('critical', 0)} critical / {totals.get('error', 0)} error / "
                              f"{totals.get('warn', 0)} warn events logged during the run; most frequent "
                              f"({first.get('count')}x): {first.get('event')}"})
    # anything else on the server core distorts the comparison
    for name in scenarios:
        for target in ("bare", "service"):
            s = sc[name].get(target, {}).get("summary")
            if not s or s["server_core_busy_pct"] is None or s["server_cpu_pct"] is None or name == "idle":
                continue
            extra = s["server_core_busy_pct"] - s["server_cpu_pct"]
            if extra > 25:
                out.append({"name": f"server core shared ({name}/{target})", "status": "WARN",
                            "detail": f"core {SRV_CORE} was {s['server_core_busy_pct']}% busy but the server used "
                                      f"{s['server_cpu_pct']}%: another process or interrupt load shared the core; "
                                      f"re-run on a quiet machine"})
    # generator health: informational, WARN-like FAIL only if it was saturated
    for name in scenarios:
        for target in ("bare", "service"):
            s = sc[name].get(target, {}).get("summary")
            if not s or s["gen_cpu_pct"] is None:
                continue
            busy = s["gen_cpu_pct"] >= GEN_CPU_WARN_PCT
            out.append({"name": f"generator not the bottleneck ({name}/{target})",
                        "status": "WARN" if busy else "INFO",
                        "detail": f"generator CPU {s['gen_cpu_pct']}% of one core, server CPU "
                                  f"{fmt(s['server_cpu_pct'])}% (core busy: generator core "
                                  f"{fmt(s['gen_core_busy_pct'])}%, server core {fmt(s['server_core_busy_pct'])}%), "
                                  f"generator event-loop p99 delay {fmt(s['gen_event_loop_p99_ms'], 2)} ms"})
    return out


def _ratio(a, b) -> str:
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
