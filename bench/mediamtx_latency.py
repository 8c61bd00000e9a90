"""MediaMTX latency benchmark: camera-plugged-to-path-created and get_streams, 16 cameras.

Everything runs in one process on the real Twisted reactor:

- real udev hotplug through umockdev (the script re-executes itself under
  ``umockdev-wrapper`` when it is not already there, as tests/test_udev.py does);
- ``FakeMediaMTXServer(FakeMediaMTX())`` on a loopback port (the OpenAPI-checked fake);
- the real service, built with ``build_root`` as tests/conftest.py's ServiceFactory does,
  with the V4L2 prober replaced by the parsed ELP 4K ``v4l2-ctl`` fixture (the fake
  ``/dev/videoN`` nodes are ptys, V4L2 ioctls fail on them).

Plug latency: ``testbed.add_camera(n)`` → the service publishes ``mediamtx.path
{exists: true}`` on its bus (primary figure). The moment the fake's path configuration
exists (the fake's ``render`` returned for the ``replace`` request) is recorded as well.
Cameras are plugged one at a time; after each round every camera is unplugged (waiting for
``mediamtx.path {exists: false}``) and the next round plugs them again.

get_streams latency: with 16 camera paths present and ``fake.set_live`` on all of them, a
real WebSocket client (tests/wsclient.py) authenticated with a viewer JWT calls
``get_streams`` sequentially; each call is timed at the client.

The fake validates every request body and every response against MediaMTX's
``openapi.yaml``; it has no switch for that. ``--validation both`` (the default) measures
with validation on and then with it patched out in this process only (``spec.check_response``
and ``fake._check_body`` replaced by no-ops on the bench's fake). Path-level rule checks
(``_validate_all``) stay on in both modes.

Usage::

    .venv/bin/python bench/mediamtx_latency.py [--rounds 4] [--calls 500] [--validation both|on|off]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from camera_service.testing.umockdev import in_umockdev_wrapper

FIXTURE = REPO / "tests" / "fixtures" / "v4l2" / "elp-4k-usb-camera.txt"
CAMERAS = 16
EVENT_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(ms: list[float]) -> dict[str, Any]:
    return {
        "n": len(ms),
        "min_ms": round(min(ms), 3),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p95_ms": round(percentile(ms, 0.95), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


class FixtureProber:
    def __init__(self) -> None:
        from camera_service.discovery.v4l2 import parse_v4l2_ctl

        self.result = parse_v4l2_ctl(FIXTURE.read_text())

    async def probe(self, node: str, timeout: float) -> Any:
        return self.result


def disable_validation(fake: Any) -> None:
    # Bench-local only: the fake has no switch. Instance attributes shadow the methods.
    fake.spec.check_response = lambda *args, **kwargs: None
    fake._check_body = lambda *args, **kwargs: None


def enable_validation(fake: Any) -> None:
    fake.spec.__dict__.pop("check_response", None)
    fake.__dict__.pop("_check_body", None)


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import deferLater

    from camera_service.app import build_root
    from camera_service.auth.jwt_tokens import mint_jwt
    from camera_service.config import load_config
    from camera_service.testing.fake_mediamtx import FakeMediaMTX, FakeMediaMTXServer
    from camera_service.testing.umockdev import Testbed
    from tests.wsclient import connect

    async def sleep(seconds: float) -> None:
        await deferLater(reactor, seconds, lambda: None)

    async def until(condition: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await sleep(0.01)

    tmp = Path(tempfile.mkdtemp(prefix="mediamtx-latency-"))
    fake = FakeMediaMTX()
    server = FakeMediaMTXServer(fake)
    server.start(reactor, 0)

    # The fake-side moment a camera path's configuration exists (after render returned).
    fake_times: dict[str, float] = {}
    original_render = fake.render

    def timed_render(request: Any) -> Any:
        result = original_render(request)
        uri = request.uri.decode("utf-8", "replace")
        if request.method == b"POST" and uri.startswith("/v3/config/paths/replace/"):
            name = uri.rsplit("/", 1)[-1]
            if fake.path_config(name) is not None:
                fake_times[name] = time.perf_counter()
        return result

    fake.render = timed_render  # type: ignore[method-assign]

    bed = Testbed()  # before the service: udev monitors opened earlier see nothing
    root = None
    client = None
    try:
        state = tmp / "state"
        env = {
            "CAMERA_SERVICE_SERVER_HOST": "127.0.0.1",
            "CAMERA_SERVICE_SERVER_ENDPOINT": "tcp:0:interface=127.0.0.1",
            "CAMERA_SERVICE_SERVER_STATE_DIR": str(state),
            "CAMERA_SERVICE_MEDIAMTX_ENABLED": "true",
            "CAMERA_SERVICE_MEDIAMTX_HOST": "127.0.0.1",
            "CAMERA_SERVICE_MEDIAMTX_API_PORT": str(server.port_number),
            "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(state / "recordings"),
            "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(state / "snapshots"),
            "CAMERA_SERVICE_HTTP_HEALTH_HOST": "127.0.0.1",
            "CAMERA_SERVICE_HTTP_HEALTH_PORT": str(free_port()),
            "CAMERA_SERVICE_SECURITY_API_KEYS_FILE": str(state / "api-keys.json"),
            "CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY": secrets.token_urlsafe(32),
            # 500+ sequential calls on one connection; the default is 300 per 60 s.
            "CAMERA_SERVICE_SECURITY_RATE_LIMIT_REQUESTS": "1000000",
            "CAMERA_SERVICE_VIRTUAL_CAMERAS": "[]",
            "CAMERA_SERVICE_CAMERA_MAX_CAMERAS": str(CAMERAS),
            "CAMERA_SERVICE_CAMERA_DEVICE_RANGE": "[0, 31]",
            # udev drives discovery; keep reconciliation scans out of the measurement.
            "CAMERA_SERVICE_CAMERA_POLL_INTERVAL": "30",
            "CAMERA_SERVICE_LOGGING_LEVEL": "warn",
        }
        config = load_config(None, env)
        os.makedirs(config.server.state_dir, exist_ok=True)
        root = build_root(config, reactor, env, camera_prober=FixtureProber())
        root.startService()
        api_port = await root.api_endpoint.when_listening()
        await root.health_endpoint.when_listening()
        mediamtx = root.getServiceNamed("mediamtx")
        await until(lambda: mediamtx.state == "up" and mediamtx.first_provisioning_done, 15.0,
                    "MediaMTX UP and provisioning done")
        await until(lambda: root.app.readiness.status() == "ready", 15.0, "readiness")

        # mediamtx.path events -> waiters
        waiters: list[tuple[bool, Deferred[tuple[str, float]]]] = []

        def listener(name: str, event: dict[str, Any]) -> None:
            if name != "mediamtx.path":
                return
            now = time.perf_counter()
            for item in list(waiters):
                exists, waiter = item
                if exists == bool(event.get("exists")):
                    waiters.remove(item)
                    waiter.callback((str(event.get("device")), now))
                    return

        root.app.bus.add_listener(listener)

        def expect(exists: bool) -> Deferred[tuple[str, float]]:
            waiter: Deferred[tuple[str, float]] = Deferred()
            waiters.append((exists, waiter))
            waiter.addTimeout(EVENT_TIMEOUT, reactor)
            return waiter

        present: dict[int, str] = {}  # node -> syspath
        device_of: dict[int, str] = {}

        async def plug_round() -> tuple[list[float], list[float]]:
            event_ms: list[float] = []
            fake_ms: list[float] = []
            for node in range(CAMERAS):
                waiter = expect(True)
                t0 = time.perf_counter()
                present[node] = bed.add_camera(node, serial=f"BENCH{node:04d}", card="HD USB CAMERA")
                device, t_event = await waiter
                device_of[node] = device
                event_ms.append((t_event - t0) * 1000)
                t_fake = fake_times.get(device)
                if t_fake is not None and t_fake >= t0:
                    fake_ms.append((t_fake - t0) * 1000)
                await sleep(0.005)  # reactor turns: let the udev reader drain
            return event_ms, fake_ms

        async def unplug_all() -> None:
            for node in sorted(present):
                waiter = expect(False)
                bed.unplug(present.pop(node))
                await waiter
                await sleep(0.005)

        modes = {"both": ["on", "off"], "on": ["on"], "off": ["off"]}[args.validation]
        results: dict[str, Any] = {}
        for mode in modes:
            (enable_validation if mode == "on" else disable_validation)(fake)
            validated_before = fake.responses_validated
            requests_before = len(fake.requests)
            all_event: list[float] = []
            all_fake: list[float] = []
            rounds: list[dict[str, Any]] = []
            get_streams: dict[str, Any] = {}
            for number in range(args.rounds):
                event_ms, fake_ms = await plug_round()
                all_event += event_ms
                all_fake += fake_ms
                rounds.append({"round": number, **summary(event_ms)})
                if number == args.rounds - 1:
                    names = [device_of[n] for n in range(CAMERAS)]
                    missing = [n for n in names if fake.path_config(n) is None]
                    if missing:
                        raise RuntimeError(f"paths missing in the fake: {missing}")
                    for name in names:
                        fake.set_live(name)
                    secret = env["CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY"]
                    client = await connect(f"ws://127.0.0.1:{api_port.getHost().port}"
                                           f"{config.server.websocket_path}")
                    await client.call("authenticate", {"auth_token": mint_jwt(
                        secret, "bench", "viewer", 3600, reactor.seconds())})
                    for _ in range(args.warmup):
                        await client.call("get_streams")
                    call_ms: list[float] = []
                    streams: Any = None
                    for _ in range(args.calls):
                        t0 = time.perf_counter()
                        streams = await client.call("get_streams")
                        call_ms.append((time.perf_counter() - t0) * 1000)
                    live = [s for s in streams if s.get("ready")]
                    if len(live) < CAMERAS:
                        raise RuntimeError(f"get_streams returned {len(live)} live paths: {streams}")
                    get_streams = {**summary(call_ms), "streams_returned": len(streams),
                                   "warmup_calls_excluded": args.warmup}
                    client.close()
                    await sleep(0.05)
                    client = None
                await unplug_all()
            results[mode] = {
                "plug_to_path_event": summary(all_event),
                "plug_to_path_in_fake": summary(all_fake) if all_fake else None,
                "plug_rounds": rounds,
                "get_streams": get_streams,
                "fake_responses_validated": fake.responses_validated - validated_before,
                "fake_requests": dict(Counter(
                    f"{r.method} {r.path.split('?')[0].rsplit('/', 1)[0] if '/paths/' in r.path else r.path.split('?')[0]}"
                    for r in fake.requests[requests_before:])),
            }
            if fake.fake_bugs or fake.violations:
                raise RuntimeError(f"fake reported problems: {fake.fake_bugs} {fake.violations}")
        enable_validation(fake)
        return results
    finally:
        if client is not None:
            client.drop()
        if root is not None and root.running:
            await root.stopService()
        await server.stop()
        bed.close()
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(results: dict[str, Any]) -> None:
    header = f"{'measure':<34} {'valid.':<6} {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}  (ms)"
    print(header)
    print("-" * len(header))
    for mode, data in results.items():
        for label, key in (("plug -> mediamtx.path event", "plug_to_path_event"),
                           ("plug -> path config in fake", "plug_to_path_in_fake"),
                           ("get_streams (16 live paths)", "get_streams")):
            s = data.get(key)
            if not s:
                continue
            print(f"{label:<34} {mode:<6} {s['n']:>5} {s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f} "
                  f"{s['p99_ms']:>8.2f} {s['max_ms']:>8.2f}")


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4,
                        help="plug rounds of 16 cameras per validation mode (default 4 = 64 samples)")
    parser.add_argument("--calls", type=int, default=500, help="timed get_streams calls (default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed get_streams calls first (default 20)")
    parser.add_argument("--validation", choices=("both", "on", "off"), default="both",
                        help="fake's OpenAPI validation on, off (bench-local patch) or both (default)")
    parser.add_argument("--output", help="JSON file (default bench/results/mediamtx-latency-<timestamp>.json)")
    args = parser.parse_args()

    if not in_umockdev_wrapper():
        wrapper = shutil.which("umockdev-wrapper")
        if wrapper is None:
            print("umockdev-wrapper not found (Debian packages umockdev, libumockdev0)", file=sys.stderr)
            return 2
        os.execv(wrapper, [wrapper, sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])

    from twisted.internet import defer, task

    outcome: dict[str, Any] = {}

    def go(reactor: Any) -> Any:
        async def body() -> None:
            outcome["results"] = await run(reactor, args)
        return defer.ensureDeferred(body())

    started = time.time()
    try:
        task.react(go)
    except SystemExit as exit_:
        if exit_.code not in (0, None) or "results" not in outcome:
            return 2
    results = outcome["results"]
    print_table(results)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(started))
    output = Path(args.output) if args.output else REPO / "bench" / "results" / f"mediamtx-latency-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "mediamtx_latency",
        "started": stamp,
        "duration_s": round(time.time() - started, 1),
        "commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cameras": CAMERAS,
        "rounds": args.rounds,
        "calls": args.calls,
        "notes": ("plug latency: add_camera() -> mediamtx.path{exists:true} on the service bus "
                  "(listener runs one reactor turn after publish); 'in fake': the fake's render "
                  "returned for the path replace. Validation 'off' is a bench-local patch of the "
                  "fake's request/response OpenAPI checks; there is no switch in the fake."),
        "results": results,
    }
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
