"""list_recordings latency over a real WebSocket with 10,000 recordings in 4 camera directories.

Everything runs in one process on the real Twisted reactor: the real service (built with
``build_root`` as tests/conftest.py's ServiceFactory does, MediaMTX disabled, no cameras) and
a real WebSocket client (tests/wsclient.py) authenticated with a viewer JWT, calling
``list_recordings`` sequentially with the default ``limit`` (50) and timing each call at the
client.

Two cases:

- **warm**: consecutive calls; the store's scan is reused for ``storage.listing_cache_seconds``
  (default 2 s, media.md §5.2), so most calls are a slice of the cached, sorted listing and a
  few pay for a rescan when the cache expires;
- **ping**: 200 ``ping`` calls on the same connection, the round-trip floor for comparison;
- **cold**: the store's cache is invalidated before every call (what a client sees right after
  a create or delete), so each call scans the 10,000 files in the media thread pool and sorts
  them.

Offsets cycle through the listing (0, 50, 100, ...) so pages differ from call to call.

Usage::

    .venv/bin/python bench/list_recordings.py [--files 10000] [--calls 500] [--cold-calls 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CAMERAS = 4


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
    return {"n": len(ms), "p50_ms": round(percentile(ms, 0.50), 3),
            "p95_ms": round(percentile(ms, 0.95), 3), "p99_ms": round(percentile(ms, 0.99), 3),
            "mean_ms": round(statistics.fmean(ms), 3) if ms else None,
            "max_ms": round(max(ms), 3) if ms else None}


def make_files(root: Path, count: int) -> None:
    """``count`` small recordings named as MediaMTX would, spread over camera0-3, each with
    its own mtime (one per 10 s) so the order is fully determined."""
    base = 1736951400
    for n in range(CAMERAS):
        (root / f"camera{n}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        camera = f"camera{i % CAMERAS}"
        start = base + i * 10
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(start))
        path = root / camera / f"{camera}_{stamp}.mp4"
        with open(path, "wb") as handle:
            handle.write(b"\0" * 64)
        os.utime(path, (start + 10, start + 10))


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    from camera_service.app import build_root
    from camera_service.auth.jwt_tokens import mint_jwt
    from camera_service.config import load_config
    from tests.wsclient import connect

    with tempfile.TemporaryDirectory(prefix="bench-list-") as tmp:
        state = Path(tmp) / "state"
        recordings = state / "recordings"
        made = time.perf_counter()
        make_files(recordings, args.files)
        made = time.perf_counter() - made
        secret = secrets.token_urlsafe(32)
        env = {
            "CAMERA_SERVICE_SERVER_HOST": "127.0.0.1",
            "CAMERA_SERVICE_SERVER_ENDPOINT": "tcp:0:interface=127.0.0.1",
            "CAMERA_SERVICE_SERVER_STATE_DIR": str(state),
            "CAMERA_SERVICE_MEDIAMTX_ENABLED": "false",
            "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(recordings),
            "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(state / "snapshots"),
            "CAMERA_SERVICE_HTTP_HEALTH_HOST": "127.0.0.1",
            "CAMERA_SERVICE_HTTP_HEALTH_PORT": str(free_port()),
            "CAMERA_SERVICE_SECURITY_API_KEYS_FILE": str(state / "api-keys.json"),
            "CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY": secret,
            # Hundreds of sequential calls on one connection; the default is 300 per 60 s.
            "CAMERA_SERVICE_SECURITY_RATE_LIMIT_REQUESTS": "1000000",
            "CAMERA_SERVICE_VIRTUAL_CAMERAS": "[]",
            "CAMERA_SERVICE_CAMERA_USE_UDEV": "false",
            "CAMERA_SERVICE_CAMERA_POLL_INTERVAL": "60",
            # The bench's files are "old": keep retention's floor and age rule away from them.
            "CAMERA_SERVICE_RETENTION_POLICY_ENABLED": "false",
            "CAMERA_SERVICE_LOGGING_LEVEL": "warn",
        }
        config = load_config(None, env)
        root = build_root(config, reactor, env)
        root.startService()
        try:
            api_port = await root.api_endpoint.when_listening()
            await root.health_endpoint.when_listening()
            await root.app.storage.when_started()
            deadline = reactor.seconds() + 15
            from twisted.internet.task import deferLater

            while root.app.readiness.status() != "ready":
                if reactor.seconds() > deadline:
                    raise RuntimeError("service did not become ready")
                await deferLater(reactor, 0.01, lambda: None)
            client = await connect(f"ws://127.0.0.1:{api_port.getHost().port}"
                                   f"{config.server.websocket_path}")
            await client.call("authenticate", {"auth_token": mint_jwt(
                secret, "bench", "viewer", 3600, reactor.seconds())})
            store = root.app.stores["recordings"]
            pages = max(1, args.files // 50)

            first = await client.call("list_recordings")
            assert first["total"] == args.files, first["total"]
            assert len(first["files"]) == 50

            async def timed(offset: int) -> float:
                started = time.perf_counter()
                result = await client.call("list_recordings", {"offset": offset})
                elapsed = (time.perf_counter() - started) * 1000
                assert result["total"] == args.files and len(result["files"]) == 50
                return elapsed

            async def timed_ping() -> float:
                started = time.perf_counter()
                await client.call("ping")
                return (time.perf_counter() - started) * 1000

            for i in range(args.warmup):
                await timed((i % pages) * 50)
            ping = [await timed_ping() for _ in range(200)]
            warm = [await timed((i % pages) * 50) for i in range(args.calls)]
            cold = []
            for i in range(args.cold_calls):
                store.invalidate()
                cold.append(await timed((i % pages) * 50))
            client.drop()
        finally:
            await root.stopService()
    return {"files": args.files, "cameras": CAMERAS, "create_files_s": round(made, 2),
            "ping": summary(ping), "warm": summary(warm), "cold": summary(cold)}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="recordings to create (default 10000)")
    parser.add_argument("--calls", type=int, default=500, help="timed warm calls (default 500)")
    parser.add_argument("--cold-calls", type=int, default=100,
                        help="timed calls with the scan cache invalidated first (default 100)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (default 20)")
    parser.add_argument("--output", help="JSON file (default bench/results/list-recordings-<timestamp>.json)")
    args = parser.parse_args()
    if args.files < 50:
        parser.error("--files must be at least 50 (one full page)")

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
    print(f"list_recordings, limit 50, {results['files']} files in {CAMERAS} camera directories")
    print(f"{'case':<6} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for case in ("ping", "warm", "cold"):
        s = results[case]
        print(f"{case:<6} {s['n']:>5} {s['p50_ms']:>9.2f} {s['p95_ms']:>9.2f} {s['p99_ms']:>9.2f} "
              f"{s['max_ms']:>9.2f}")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(started))
    output = Path(args.output) if args.output else REPO / "bench" / "results" / f"list-recordings-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": "list_recordings", "started": stamp,
                "duration_s": round(time.time() - started, 1), "commit": git_commit(),
                "python": sys.version.split()[0], "platform": platform.platform(),
                "cpus": os.cpu_count(), "calls": args.calls, "cold_calls": args.cold_calls,
                "results": results}
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {output.relative_to(REPO) if output.is_relative_to(REPO) else output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
