"""take_snapshot latency: SnapshotService.take called directly, on the real reactor.

Two sources, each timed over ``--calls`` sequential snapshots (one warm-up call first, not
counted):

- **tier e**: an idle virtual camera (lavfi ``testsrc2``), at ``--size`` (default the stream
  size, 640x480) and at 1280x720 (the shipped virtual camera's size);
- **tier a**: a live RTSP stream: Debian's ``rtsp-server-perl`` on loopback, fed by FFmpeg
  (``testsrc2`` 640x480 at 15 fps, libx264 ``-tune zerolatency -g 15``), read over UDP
  (that server answers 400 to RTSP over TCP). The MediaMTX control API is the OpenAPI-checked
  ``FakeMediaMTX`` behind a real ``MediaMTXService``, reporting the path live. Each call
  does a ``paths/get`` unless the last one is under 1 s old (§4.1), then one FFmpeg read.

Each call is timed from just before ``take()`` to its result (the file renamed and sized).
This excludes the WebSocket round trip; the lead re-measures end to end.

Usage::

    .venv/bin/python bench/snapshot_latency.py [--calls 30] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from twisted.internet import defer, task
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from camera_service.config import load_config
from camera_service.discovery.registry import (
    CONNECTED,
    Camera,
    CameraRegistry,
    VirtualProbe,
)
from camera_service.events import EventBus
from camera_service.health.model import HealthRegistry, Readiness
from camera_service.leases import DeviceLeases
from camera_service.mediamtx.client import MediaMTXClient
from camera_service.mediamtx.service import MediaMTXService
from camera_service.procs import ProcessRunner
from camera_service.snapshots import SnapshotService
from camera_service.storage.files import SNAPSHOTS, FileStore
from camera_service.testing.fake_mediamtx import FakeMediaMTX, FakeMediaMTXServer
from tests.media_servers import RtspServer

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
OPENAPI = REPO.parent / "shared" / "reference" / "mediamtx" / "openapi.yaml"
CAMERA = "camera100"


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(ms: list[float]) -> dict[str, Any]:
    return {"n": len(ms), "p50_ms": round(percentile(ms, 0.50), 1),
            "p95_ms": round(percentile(ms, 0.95), 1), "min_ms": round(min(ms), 1),
            "max_ms": round(max(ms), 1), "mean_ms": round(sum(ms) / len(ms), 1)}


class Monitor:
    def __init__(self, camera: Camera) -> None:
        self.registry = CameraRegistry()
        self.registry.add(camera)
        self.on_camera_connected: list[Any] = []
        self.on_camera_disconnected: list[Any] = []
        self.path_metrics: Any = lambda camera_id: None

    def component_state(self) -> str:
        return "RUNNING"


def config_for(work: Path, size: str, rtsp_port: int, api_port: int) -> Any:
    return load_config(None, {
        "CAMERA_SERVICE_SERVER_STATE_DIR": str(work / "state"),
        "CAMERA_SERVICE_MEDIAMTX_RECORDINGS_PATH": str(work / "recordings"),
        "CAMERA_SERVICE_MEDIAMTX_SNAPSHOTS_PATH": str(work / "snapshots"),
        "CAMERA_SERVICE_SECURITY_JWT_SECRET_KEY": "x" * 40,
        "CAMERA_SERVICE_MEDIAMTX_HOST": "127.0.0.1",
        "CAMERA_SERVICE_MEDIAMTX_API_PORT": str(api_port),
        "CAMERA_SERVICE_MEDIAMTX_RTSP_PORT": str(rtsp_port),
        "CAMERA_SERVICE_MEDIAMTX_RTSP_TRANSPORT": "udp",
        "CAMERA_SERVICE_VIRTUAL_CAMERAS": json.dumps(
            [{"id": CAMERA, "pattern": "testsrc2", "size": size, "rate": 15}]),
    })


def virtual_camera(config: Any) -> Camera:
    vc = config.virtual_cameras[0]
    probe = VirtualProbe(card=vc.name, width=vc.width, height=vc.height, rate=int(vc.rate))
    return Camera(id=vc.id, status=CONNECTED, name=vc.name, identity=None, node=None, last_node=None,
                  probe=probe, mode=probe.modes[0], error=None, last_seen=0.0, virtual=vc)


def snapshot_service(reactor: Any, config: Any, monitor: Monitor, mediamtx: Any) -> SnapshotService:
    return SnapshotService(
        config=config, clock=reactor, monitor=monitor, mediamtx=mediamtx,
        runner=ProcessRunner(reactor), ffmpeg_path=FFMPEG,
        store=FileStore(SNAPSHOTS, config.mediamtx.snapshots_path, deferToThread, reactor, 2.0),
        leases=DeviceLeases(reactor), run_in_thread=deferToThread, bus=EventBus(reactor))


async def measure(service: SnapshotService, calls: int, expect_tier: str) -> dict[str, Any]:
    await service.take(CAMERA)   # warm-up: directory creation, first scan, first paths/get
    times: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await service.take(CAMERA)
        times.append((time.perf_counter() - started) * 1000)
        tier = service.last_tier[CAMERA]
        if tier != expect_tier:
            raise RuntimeError(f"expected tier {expect_tier}, got {tier} ({result['filename']})")
    return summary(times)


async def run(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="snapbench-"))
    results: dict[str, Any] = {
        "bench": "snapshot_latency", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "ffmpeg": args.ffmpeg_version},
        "calls": args.calls, "quality": 85,
    }
    try:
        for size in (args.size, "1280x720"):
            config = config_for(work / f"e-{size}", size, 8554, 9997)
            service = snapshot_service(reactor, config, Monitor(virtual_camera(config)), None)
            results[f"tier_e_{size}"] = await measure(service, args.calls, "e")
            print(f"tier e {size}: {results[f'tier_e_{size}']}", flush=True)

        # The same rtsp-server-perl rig the tests use (its own RTP port range, no probe
        # connections, readable before it returns).
        source = RtspServer(work)
        try:
            source.publish(CAMERA, work, "640x480")
            fake = FakeMediaMTX(OPENAPI, global_conf={"rtspAddress": f":{source.client_port}"})
            server = FakeMediaMTXServer(fake)
            server.start(reactor, port=0)
            assert server.port_number is not None
            config = config_for(work / "a", "640x480", source.client_port, server.port_number)
            monitor = Monitor(virtual_camera(config))
            readiness = Readiness()
            mediamtx = MediaMTXService(
                reactor=reactor, config=config,
                client=MediaMTXClient(reactor, base_url=server.url, auth=None, timeout=1.0),
                monitor=monitor, bus=EventBus(reactor), health=HealthRegistry(reactor),
                readiness=readiness, ffmpeg_path=FFMPEG)
            readiness.mark_started()
            mediamtx.startService()
            while not (mediamtx.state == "up" and mediamtx.first_provisioning_done):
                await deferLater(reactor, 0.05, lambda: None)
            fake.set_live(CAMERA, readers=0)
            service = snapshot_service(reactor, config, monitor, mediamtx)
            results["tier_a_640x480_udp"] = await measure(service, args.calls, "a")
            print(f"tier a 640x480 (RTSP/UDP, GOP 1 s): {results['tier_a_640x480_udp']}", flush=True)
            await defer.maybeDeferred(mediamtx.stopService)
            await server.stop()
        finally:
            source.stop()
    except BaseException:
        print(f"failed; files kept in {work}", flush=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--size", default="640x480", help="virtual camera size for the first tier-e run")
    parser.add_argument("--output", help="write the JSON results here (default bench/results/…)")
    args = parser.parse_args()
    args.ffmpeg_version = subprocess.run([FFMPEG, "-version"], check=True, capture_output=True,
                                         text=True).stdout.split("\n")[0]

    async def entry(reactor: Any) -> None:
        results = await run(reactor, args)
        output = Path(args.output) if args.output else (
            REPO / "bench" / "results" / f"snapshot-latency-{time.strftime('%Y%m%dT%H%M%S')}.json")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {output}")

    task.react(lambda reactor: defer.ensureDeferred(entry(reactor)))


if __name__ == "__main__":
    main()
